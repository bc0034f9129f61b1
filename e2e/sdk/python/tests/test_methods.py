"""Direct methods: IoTHubRegistryManager.invoke_device_method to a device that
answers through on_method_request_received.
"""
import pytest
from azure.iot.device import MethodResponse
from azure.iot.hub.models import CloudToDeviceMethod
from msrest.exceptions import HttpOperationError



def test_invoke_device_method_round_trip(registry, make_device, connect_device):
    device_id, key = make_device("py-m")
    client = connect_device(device_id, key)
    seen = []

    def on_method(request):
        seen.append((request.name, request.payload))
        client.send_method_response(MethodResponse.create_from_method_request(
            request, 200, {"restarted": True, "in": request.payload["delay"]}))

    client.on_method_request_received = on_method  # returns once subscribed

    result = registry.invoke_device_method(device_id, CloudToDeviceMethod(
        method_name="restart", payload={"delay": 3}, response_timeout_in_seconds=10))
    assert result.status == 200
    assert result.payload == {"restarted": True, "in": 3}
    assert seen == [("restart", {"delay": 3})]


def test_invoke_on_offline_device_is_404_device_not_online(registry, make_device):
    device_id, _ = make_device("py-m-off")
    with pytest.raises(HttpOperationError) as info:
        registry.invoke_device_method(device_id, CloudToDeviceMethod(
            method_name="restart", payload={}, response_timeout_in_seconds=5, connect_timeout_in_seconds=0))
    assert info.value.response.status_code == 404
    assert "404103" in info.value.response.text
