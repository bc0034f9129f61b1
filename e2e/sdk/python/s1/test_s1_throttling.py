"""The Python SDKs against an S1 hub (run.sh's s1 suite: --sku S1
--fake-clock). The tier's budgets refill only when a test moves the hub's
clock (POST /_emulator/clock), so the counts are exact and no test waits for
the time it checks. Each test starts by refilling every budget.

What the SDKs do with 429 (their sources): azure-iot-hub's msrest client
retries only 408 and 5xx (ClientRetryPolicy.safe_codes holds every status
below 500 but 408), so a throttled registry call raises HttpOperationError
with the hub's response at once and the application backs off;
azure-iot-device's MQTT send_message waits for the PUBACK, which a shaped
send gets late; after a dropped connection the client reconnects by itself
(at once, then every connection_retry_interval while the hub refuses it with
CONNACK 3), but a send_message meanwhile fails with ConnectionFailedError
(its own connect attempt is refused) and so does a connect() the
application calls: those the application retries.
"""
import base64
import hashlib
import hmac
import socket
import ssl
import threading
import time
import urllib.parse

from azure.iot.device import IoTHubDeviceClient, Message
from msrest.exceptions import HttpOperationError

from conftest import common


def advance(seconds):
    return common.emulator_api("POST", "/_emulator/clock", {"advanceSeconds": seconds})


def refill():
    """A minute refills every budget (the per-minute ones are the slowest)."""
    advance(60)


def stored(device_id):
    return common.emulator_api("GET", "/_emulator/messages", params={"deviceId": device_id}) or []


def test_the_s1_emulator_runs_on_a_fake_clock():
    assert common.emulator_api("GET", "/_emulator/clock")["fake"] is True, "start the emulator with --fake-clock"


def test_registry_loop_gets_429_with_the_hubs_body_and_recovers_after_backing_off(registry, make_device):
    refill()
    try:
        device_id, _ = make_device("s1reg")  # one of S1's 100 per minute
        passed, err = 1, None
        for _ in range(150):
            try:
                registry.get_device(device_id)
                passed += 1
            except HttpOperationError as e:
                err = e
                break
        assert passed == 100, "S1 allows 100 registry operations a minute"
        assert err is not None and err.response.status_code == 429
        assert err.response.headers["iothub-errorcode"] == "ThrottlingException"
        body = err.response.json()
        assert body["Message"].startswith("ErrorCode:ThrottlingException;"), body
        assert body["ExceptionMessage"].startswith("Tracking ID:"), body
        # No retry in the SDK: the next call fails the same way...
        try:
            registry.get_device(device_id)
            raise AssertionError("a registry call passed while the budget was spent")
        except HttpOperationError as e:
            assert e.response.status_code == 429
        # ...until the budget refills on the hub's clock (1.67 a second).
        advance(1)
        assert registry.get_device(device_id).device_id == device_id
    finally:
        refill()  # for make_device's cleanup and the next test


def test_d2c_101_messages_in_a_second_are_shaped_and_all_arrive(make_device, connect_device):
    refill()
    device_id, key = make_device("s1d2c")
    client = connect_device(device_id, key)
    sent, failure = [], []

    def send_all():
        try:
            for i in range(101):
                client.send_message(Message(f"m{i}"))  # returns on the PUBACK
                sent.append(i)
        except Exception as e:  # reported by the main thread
            failure.append(e)

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    common.poll_until(lambda: len(sent) == 100, "the first 100 sends acknowledged", timeout=30)
    # The hub's clock stands still: the 101st send is held, neither stored
    # nor acknowledged nor refused.
    assert len(stored(device_id)) == 100
    assert sender.is_alive() and len(sent) == 100 and not failure
    advance(1)
    sender.join(timeout=30)
    assert not sender.is_alive() and not failure, failure
    assert len(sent) == 101
    assert len(stored(device_id)) == 101


def device_token(device_id, key):
    sr = urllib.parse.quote_plus(f"{common.HOST_NAME}/devices/{device_id}")
    se = int(time.time()) + 3600
    sig = base64.b64encode(hmac.new(base64.b64decode(key), f"{sr}\n{se}".encode(), hashlib.sha256).digest()).decode()
    return f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}&se={se}"


def raw_connect(device_id, key):
    """One MQTT 3.1.1 CONNECT over TLS on 8883, as a device; returns the CONNACK's return code."""
    def field(b):
        return len(b).to_bytes(2, "big") + b

    user = f"{common.HOST_NAME}/{device_id}/?api-version=2021-04-12"
    body = (field(b"MQTT") + bytes([4, 0xC2]) + (60).to_bytes(2, "big")  # user name, password, clean session
            + field(device_id.encode()) + field(user.encode()) + field(device_token(device_id, key).encode()))
    length, n = b"", len(body)
    while True:
        n, digit = divmod(n, 128)
        length += bytes([digit | (0x80 if n else 0)])
        if not n:
            break
    ctx = ssl.create_default_context(cafile=common.CA_FILE)
    with socket.create_connection((common.HOST_NAME, 8883), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=common.HOST_NAME) as tls:
            tls.sendall(bytes([0x10]) + length + body)
            ack = b""
            while len(ack) < 4:
                chunk = tls.recv(4 - len(ack))
                if not chunk:
                    break
                ack += chunk
            assert ack[:2] == b"\x20\x02", f"no CONNACK: {ack!r}"
            return ack[3]


def test_dropped_device_reconnects_once_the_connection_budget_refills(make_device):
    refill()
    device_id, key = make_device("s1py")
    flood_id, flood_key = make_device("s1pyflood")
    client = IoTHubDeviceClient.create_from_connection_string(
        common.device_connection_string(device_id, key), server_verification_cert=common.CA_PEM,
        connection_retry=True, connection_retry_interval=1)
    refused = []
    client.on_background_exception = refused.append
    try:
        client.connect()
        # Spend the second's 100 new connections (the device's own was one).
        for i in range(99):
            assert raw_connect(flood_id, flood_key) == 0, f"connection {i + 2} refused"
        assert raw_connect(flood_id, flood_key) == 3, "the 101st connection of the second was accepted"
        # Drop the device: the SDK reconnects, and the hub refuses it.
        common.emulator_api("POST", "/_emulator/faults", {"action": "dropConnection", "deviceId": device_id})
        common.poll_until(lambda: refused, "the SDK's reconnect refused", timeout=30)
        assert not client.connected
        # The hub's clock refills the budget; the SDK's next attempt (every
        # connection_retry_interval) connects, and sending works again.
        advance(1)
        common.poll_until(lambda: client.connected, "the SDK reconnected by itself", timeout=30)
        client.send_message(Message("after the reconnect"))
        assert [m["body"] for m in stored(device_id)] == ["after the reconnect"]
    finally:
        client.shutdown()
        refill()
