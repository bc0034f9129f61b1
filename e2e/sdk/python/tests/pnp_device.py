"""A small IoT Plug and Play temperature controller for the digital-twin
tests, written here after the flow of Microsoft's pnp_temperature_controller
sample: it announces its model id, reports a root property and component
properties (marked "__t": "c"), acknowledges writable targetTemperature
updates with {value, ac, av, ad}, and answers reboot and
<component>*getMaxMinReport.
"""
from azure.iot.device import IoTHubDeviceClient, MethodResponse

from conftest import CA_PEM, device_connection_string

MODEL_ID = "dtmi:com:example:TemperatureController;2"
COMPONENTS = ("thermostat1", "thermostat2")


class TemperatureController:
    def __init__(self, device_id, key):
        self.max_temp = {"thermostat1": 31.5, "thermostat2": 27}
        self.reboots = []
        self.client = IoTHubDeviceClient.create_from_connection_string(
            device_connection_string(device_id, key), server_verification_cert=CA_PEM,
            product_info=MODEL_ID, connection_retry=False)
        self.client.on_method_request_received = self._on_method
        self.client.on_twin_desired_properties_patch_received = self._on_desired
        self.client.connect()
        self.client.patch_twin_reported_properties({
            "serialNumber": "SN-PNP-PY-1",
            "thermostat1": {"__t": "c", "maxTempSinceLastReboot": self.max_temp["thermostat1"]},
            "thermostat2": {"__t": "c", "maxTempSinceLastReboot": self.max_temp["thermostat2"]},
        })

    def _on_method(self, request):
        if request.name == "reboot":
            self.reboots.append(request.payload)
            payload, status = {"rebooting": True}, 200
        elif "*" in request.name and request.name.split("*", 1)[0] in COMPONENTS:
            component = request.name.split("*", 1)[0]
            payload, status = {"maxTemp": self.max_temp[component], "minTemp": 12, "since": request.payload}, 200
        else:
            payload, status = {"error": f"no command {request.name}"}, 404
        self.client.send_method_response(MethodResponse.create_from_method_request(request, status, payload))

    def _on_desired(self, patch):
        for component in COMPONENTS:
            target = (patch.get(component) or {}).get("targetTemperature")
            if target is not None:
                self.client.patch_twin_reported_properties({component: {
                    "__t": "c",
                    "targetTemperature": {"value": target, "ac": 200, "av": patch["$version"], "ad": "Successfully executed patch"},
                }})

    def shutdown(self):
        self.client.shutdown()
