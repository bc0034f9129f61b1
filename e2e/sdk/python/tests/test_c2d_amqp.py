"""Cloud-to-device messages sent by the service SDK, as back ends send them.

IoTHubRegistryManager.send_c2d_message goes over AMQP (uamqp, TLS on 5671,
SASL MSSBCBS, a CBS put-token, a sender link to
amqps://{host}/messages/devicebound). A device on MQTT receives the message.

uamqp trusts certificates from certifi.where() only (it ignores
REQUESTS_CA_BUNDLE and SSL_CERT_FILE) and reads it when the registry manager
is built, so the test points that at the emulator's CA first, as a user
would add the CA to the bundle.
"""
import json
import queue
import uuid

import pytest
import uamqp.authentication.common

from azure.iot.hub import IoTHubRegistryManager

from conftest import CA_FILE, CONNECTION_STRING, emulator_api, poll_until, unique_id


@pytest.fixture
def c2d_sender(monkeypatch):
    """A registry manager whose AMQP client trusts the emulator's CA."""
    monkeypatch.setattr(uamqp.authentication.common.certifi, "where", lambda: CA_FILE)
    return IoTHubRegistryManager.from_connection_string(CONNECTION_STRING)


def test_send_c2d_message_reaches_an_mqtt_device(c2d_sender, make_device, connect_device):
    device_id, key = make_device("py-amqp-c2d")
    client = connect_device(device_id, key)
    received = queue.Queue()
    client.on_message_received = received.put  # subscribes; returns once the hub acknowledged

    message_id, correlation_id = unique_id("c2d"), unique_id("corr")
    c2d_sender.send_c2d_message(device_id, '{"command":"reboot"}', properties={
        "messageId": message_id, "correlationId": correlation_id, "contentType": "application/json",
        "contentEncoding": "utf-8", "level": "high", "iothub-ack": "full",
    })

    msg = received.get(timeout=15)
    assert json.loads(msg.data) == {"command": "reboot"}
    assert msg.message_id == message_id
    assert msg.correlation_id == correlation_id
    assert msg.content_type == "application/json"
    assert msg.content_encoding == "utf-8"
    assert msg.custom_properties == {"level": "high"}
    assert msg.ack == "full"

    # The PUBACK completed it; the sender asked for full feedback.
    fb = poll_until(lambda: [f for f in emulator_api("GET", "/_emulator/feedback", params={"deviceId": device_id})
                             if f["originalMessageId"] == message_id], f"feedback for {message_id}")
    assert fb[0]["statusCode"] == "Success"


def test_send_c2d_message_to_an_unknown_device_fails(c2d_sender):
    # azure-iot-hub turns every rejected send into a bare Exception.
    with pytest.raises(Exception, match="C2D message send failure"):
        c2d_sender.send_c2d_message(f"nobody-{uuid.uuid4().hex[:8]}", "lost")
