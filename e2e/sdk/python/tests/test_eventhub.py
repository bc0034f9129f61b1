"""The Event Hub-compatible endpoint read with the unmodified azure-eventhub
EventHubConsumerClient (its pure-Python AMQP stack), over TLS (5671, the CA
given as connection_verify) and over the development connection string
(plain 5672, UseDevelopmentEmulator=true), with telemetry sent by an MQTT
device. e2e/sdk/run.sh takes both connection strings from the emulator's
banner.
"""
import json
import os
import threading

import pytest
from azure.eventhub import EventHubConsumerClient
from azure.iot.device import Message

from conftest import CA_FILE

CONNECTION_STRINGS = {
    "tls": os.environ.get("EVENTHUB_CONNECTION_STRING"),
    "development": os.environ.get("EVENTHUB_DEV_CONNECTION_STRING"),
}


def consumer(name):
    cs = CONNECTION_STRINGS[name]
    if not cs:
        pytest.fail(f"the {name} Event Hub connection string is not set: run the suite through e2e/sdk/run.sh")
    kwargs = {"connection_verify": CA_FILE} if name == "tls" else {}
    return EventHubConsumerClient.from_connection_string(cs, consumer_group="$Default", **kwargs)


def receive(client, device_id, n, partition_id, starting_position="-1", timeout=30):
    """The first n events of device_id on the partition, read from starting_position."""
    events, done = [], threading.Event()

    def on_event(_ctx, event):
        if event is None:
            return
        if event.system_properties.get(b"iothub-connection-device-id") == device_id.encode():
            events.append(event)
            if len(events) >= n:
                done.set()

    worker = threading.Thread(target=client.receive, kwargs={
        "on_event": on_event, "partition_id": partition_id, "starting_position": starting_position,
        "max_wait_time": 1}, daemon=True)
    worker.start()
    done.wait(timeout)
    client.close()
    worker.join(10)
    assert len(events) >= n, f"{len(events)} of {n} events of {device_id} within {timeout}s"
    return events[:n]


@pytest.mark.parametrize("name", ["tls", "development"])
def test_consumer_reads_device_telemetry(name, make_device, connect_device):
    device_id, key = make_device(f"py-eh-{name}")
    device = connect_device(device_id, key)
    for i in range(2):
        msg = Message(json.dumps({"id": device_id, "i": i}), message_id=f"{device_id}-{i}",
                      content_encoding="utf-8", content_type="application/json")
        msg.custom_properties["seq"] = str(i)
        device.send_message(msg)  # returns after the PUBACK, when the message is stored

    client = consumer(name)
    props = client.get_eventhub_properties()
    assert props["eventhub_name"] == "localhost"
    assert props["partition_ids"] == ["0", "1", "2", "3"]
    # The device's partition is the one whose last event is the device's.
    partitions = [client.get_partition_properties(p) for p in props["partition_ids"]]
    non_empty = [p for p in partitions if not p["is_empty"]]
    assert non_empty, partitions
    for p in non_empty:
        assert p["beginning_sequence_number"] <= p["last_enqueued_sequence_number"]
        assert p["last_enqueued_offset"] == str(p["last_enqueued_sequence_number"])

    # The suite runs one test at a time, so the newest event of all is the
    # device's second: its partition is the one that holds it.
    newest = max(non_empty, key=lambda p: p["last_enqueued_sequence_number"])
    client.close()
    found = receive(consumer(name), device_id, 2, newest["id"])
    for i, e in enumerate(found):
        assert json.loads(e.body_as_str()) == {"id": device_id, "i": i}
        assert e.properties[b"seq"] == str(i).encode()
        assert e.message_id == f"{device_id}-{i}"
        assert e.content_type == "application/json"
        assert e.system_properties[b"iothub-message-source"] == b"Telemetry"
        assert e.offset == str(e.sequence_number)
    assert found[1].sequence_number > found[0].sequence_number
