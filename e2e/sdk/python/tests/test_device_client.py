"""IoTHubDeviceClient over MQTT (port 8883, TLS 1.2) against the emulator."""
import queue

import pytest
from azure.iot.device import IoTHubDeviceClient, exceptions
from azure.iot.hub.models import Twin, TwinProperties

from conftest import CA_PEM, device_connection_string, random_key, unique_id


def test_connect_get_twin_and_report(registry, make_device, connect_device):
    device_id, key = make_device("py-dev")
    client = connect_device(device_id, key)
    assert client.connected
    assert registry.get_device(device_id).connection_state == "Connected"

    twin = client.get_twin()
    assert set(twin) >= {"desired", "reported"}
    assert twin["desired"]["$version"] == 1

    client.patch_twin_reported_properties({"firmware": "3.1.4", "sensors": {"temp": True, "hum": False}})
    reported = registry.get_twin(device_id).properties.reported
    assert reported["firmware"] == "3.1.4"
    assert reported["sensors"] == {"temp": True, "hum": False}

    # The device reads back its own report.
    assert client.get_twin()["reported"]["firmware"] == "3.1.4"


def test_desired_patch_reaches_the_device(registry, make_device, connect_device):
    device_id, key = make_device("py-des")
    client = connect_device(device_id, key)
    patches = queue.Queue()
    # Setting the handler subscribes and returns once the hub acknowledged it.
    client.on_twin_desired_properties_patch_received = patches.put

    etag = registry.get_twin(device_id).etag
    updated = registry.update_twin(device_id, Twin(properties=TwinProperties(desired={"targetTemp": 21.5})), etag)
    patch = patches.get(timeout=15)
    assert patch["targetTemp"] == 21.5
    assert patch["$version"] == updated.properties.desired["$version"]

    # And the next GET shows the merged desired state.
    assert client.get_twin()["desired"]["targetTemp"] == 21.5


def test_wrong_key_is_refused(make_device):
    device_id, _ = make_device("py-badkey")
    client = IoTHubDeviceClient.create_from_connection_string(
        device_connection_string(device_id, random_key()), server_verification_cert=CA_PEM, connection_retry=False)
    try:
        with pytest.raises(exceptions.CredentialError):
            client.connect()
        assert not client.connected
    finally:
        client.shutdown()


def test_mqtt_over_websockets(registry, make_device, connect_device):
    """websockets=True: MQTT over wss://localhost:443/$iothub/websocket."""
    device_id, key = make_device("py-ws")
    client = connect_device(device_id, key, websockets=True)
    assert client.connected
    assert registry.get_device(device_id).connection_state == "Connected"
    client.patch_twin_reported_properties({"transport": "websockets"})
    assert registry.get_twin(device_id).properties.reported["transport"] == "websockets"
    assert client.get_twin()["reported"]["transport"] == "websockets"
