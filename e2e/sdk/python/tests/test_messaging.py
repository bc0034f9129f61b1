"""Telemetry and cloud-to-device messages with IoTHubDeviceClient over MQTT (8883).

The hub hands telemetry to back ends over AMQP (the Event Hub-compatible
endpoint) and azure-iot-hub sends C2D over AMQP; the emulator has neither yet,
so these tests read telemetry at GET /_emulator/messages and send C2D through
POST /_emulator/devices/{id}/messages/devicebound, both emulator only.
"""
import json
import queue

from azure.iot.device import Message

from conftest import emulator_api, poll_until, unique_id


def messages_of(device_id, n):
    """The device's telemetry, oldest first, once there are at least n messages."""
    def fetch():
        msgs = emulator_api("GET", "/_emulator/messages", params={"deviceId": device_id})
        return msgs if len(msgs) >= n else None
    return poll_until(fetch, f"{n} message(s) from {device_id} in /_emulator/messages")


def test_send_message_lands_in_the_log(make_device, connect_device):
    device_id, key = make_device("py-d2c")
    client = connect_device(device_id, key)

    msg = Message(json.dumps({"temp": 21.5, "unit": "C"}), message_id=unique_id("mid"),
                  content_encoding="utf-8", content_type="application/json")
    msg.correlation_id = unique_id("cid")
    # Characters the property bag encoding must carry through; str() of a number.
    msg.custom_properties["alert"] = "hi there/&=%+"
    msg.custom_properties["level"] = 3
    client.send_message(msg)  # returns after the PUBACK, when the message is stored
    client.send_message("plain text")

    first, second = messages_of(device_id, 2)
    assert first["deviceId"] == device_id
    assert first["transport"] == "mqtt"
    assert json.loads(first["body"]) == {"temp": 21.5, "unit": "C"}
    assert first["properties"] == {"alert": "hi there/&=%+", "level": "3"}
    sys = first["systemProperties"]
    assert sys["message-id"] == msg.message_id
    assert sys["correlation-id"] == msg.correlation_id
    assert sys["content-type"] == "application/json"
    assert sys["content-encoding"] == "utf-8"
    assert sys["iothub-connection-device-id"] == device_id
    assert sys["iothub-message-source"] == "Telemetry"

    assert second["sequenceNumber"] > first["sequenceNumber"]
    assert second["body"] == "plain text"
    assert second["properties"] == {}
    assert "message-id" not in second["systemProperties"]
    assert "content-type" not in second["systemProperties"]


def test_c2d_reaches_on_message_received(make_device, connect_device):
    device_id, key = make_device("py-c2d")
    client = connect_device(device_id, key)
    received = queue.Queue()
    # Setting the handler subscribes and returns once the hub acknowledged it.
    client.on_message_received = received.put

    message_id, correlation_id = unique_id("c2d"), unique_id("corr")
    queued = emulator_api("POST", f"/_emulator/devices/{device_id}/messages/devicebound", {
        "body": '{"command":"reboot"}', "messageId": message_id, "correlationId": correlation_id,
        "contentType": "application/json", "contentEncoding": "utf-8",
        "properties": {"level": "high", "prop 1": "val/1&x=y"}, "ack": "full",
    })
    assert queued["messageId"] == message_id

    msg = received.get(timeout=15)
    assert json.loads(msg.data) == {"command": "reboot"}
    assert msg.message_id == message_id
    assert msg.correlation_id == correlation_id
    assert msg.content_type == "application/json"
    assert msg.content_encoding == "utf-8"
    assert msg.ack == "full"
    assert msg.custom_properties == {"level": "high", "prop 1": "val/1&x=y"}

    # The SDK's PUBACK completes the message: the queue empties, and the
    # sender asked for full feedback.
    poll_until(lambda: emulator_api("GET", f"/_emulator/devices/{device_id}/messages/devicebound") == [],
               f"the C2D queue of {device_id} to be empty")
    fb = poll_until(lambda: [f for f in emulator_api("GET", "/_emulator/feedback", params={"deviceId": device_id})
                             if f["originalMessageId"] == message_id], f"feedback for {message_id}")
    assert fb[0]["statusCode"] == "Success"
    assert received.empty(), "delivered once"
