"""IoT Plug and Play through azure-iot-hub's DigitalTwinClient against the
temperature controller in pnp_device.py: get_digital_twin,
update_digital_twin (root and component properties, acknowledged by the
device), invoke_component_command and invoke_command.
"""
import pytest
from azure.iot.hub import DigitalTwinClient
from msrest.exceptions import HttpOperationError

from conftest import CONNECTION_STRING, poll_until
from pnp_device import MODEL_ID, TemperatureController


@pytest.fixture
def controller(make_device):
    device_id, key = make_device("py-pnp")
    device = TemperatureController(device_id, key)
    yield device_id, device
    device.shutdown()


def test_digital_twin_client_against_a_pnp_device(controller, registry):
    device_id, device = controller
    dt = DigitalTwinClient.from_connection_string(CONNECTION_STRING)

    twin = dt.get_digital_twin(device_id)
    assert twin["$dtId"] == device_id
    assert twin["$metadata"]["$model"] == MODEL_ID
    assert twin["serialNumber"] == "SN-PNP-PY-1"
    assert twin["thermostat2"]["maxTempSinceLastReboot"] == 27
    assert twin["thermostat2"]["$metadata"]["maxTempSinceLastReboot"]["lastUpdateTime"]

    dt.update_digital_twin(device_id, [{"op": "add", "path": "/thermostat2/targetTemperature", "value": 19}])

    def acknowledged():
        t = dt.get_digital_twin(device_id)
        meta = t["thermostat2"]["$metadata"].get("targetTemperature", {})
        return t if meta.get("ackCode") == 200 else None

    acked = poll_until(acknowledged, "the device acknowledges targetTemperature", timeout=20)
    assert acked["thermostat2"]["targetTemperature"] == 19
    meta = acked["thermostat2"]["$metadata"]["targetTemperature"]
    assert meta["desiredValue"] == 19 and meta["ackVersion"] == meta["desiredVersion"]

    dt.update_digital_twin(device_id, [{"op": "replace", "path": "/displayName", "value": "bench"}])
    assert registry.get_twin(device_id).properties.desired["displayName"] == "bench"
    with pytest.raises(HttpOperationError) as stale:
        dt.update_digital_twin(device_id, [{"op": "add", "path": "/x", "value": 1}], etag='"AAAAAAAAAAE="')
    assert stale.value.response.status_code == 412

    report = dt.invoke_component_command(device_id, "thermostat1", "getMaxMinReport", "2026-01-01T00:00:00Z",
                                         connect_timeout_in_seconds=5, response_timeout_in_seconds=10)
    assert report == {"maxTemp": 31.5, "minTemp": 12, "since": "2026-01-01T00:00:00Z"}
    assert dt.invoke_command(device_id, "reboot", {"delay": 2}) == {"rebooting": True}
    assert device.reboots == [{"delay": 2}]
