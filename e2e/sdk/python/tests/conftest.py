"""Shared fixtures for the Python SDK end-to-end tests.

The tests use the unmodified official SDKs (azure-iot-hub, azure-iot-device)
against a running emulator. e2e/sdk/run.sh starts one and sets:
  IOTHUB_CONNECTION_STRING  the iothubowner connection string (HostName=localhost;...)
  IOTHUB_CA_FILE            the emulator's CA certificate (PEM)
  REQUESTS_CA_BUNDLE        the same CA, which is how azure-iot-hub (requests) trusts it
"""
import base64
import hashlib
import hmac
import os
import time
import urllib.parse
import uuid

import pytest
import requests
from azure.iot.device import IoTHubDeviceClient
from azure.iot.hub import IoTHubJobManager, IoTHubRegistryManager


def _required(name):
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run the suite through e2e/sdk/run.sh, or export it yourself", returncode=2)
    return value


CONNECTION_STRING = _required("IOTHUB_CONNECTION_STRING")
CA_FILE = _required("IOTHUB_CA_FILE")
with open(CA_FILE, encoding="utf-8") as f:
    CA_PEM = f.read()
_FIELDS = dict(part.split("=", 1) for part in CONNECTION_STRING.split(";") if "=" in part)
HOST_NAME = _FIELDS["HostName"]


def unique_id(prefix):
    """An id no other test (or earlier run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def random_key():
    return base64.b64encode(os.urandom(32)).decode()


def device_connection_string(device_id, key, module_id=None):
    cs = f"HostName={HOST_NAME};DeviceId={device_id}"
    if module_id:
        cs += f";ModuleId={module_id}"
    return cs + f";SharedAccessKey={key}"


def _service_token():
    sr = urllib.parse.quote_plus(HOST_NAME)
    se = int(time.time()) + 3600
    sig = base64.b64encode(hmac.new(base64.b64decode(_FIELDS["SharedAccessKey"]),
                                    f"{sr}\n{se}".encode(), hashlib.sha256).digest()).decode()
    return (f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}"
            f"&se={se}&skn={_FIELDS['SharedAccessKeyName']}")


def emulator_api(method, path, body=None, params=None):
    """A call to the emulator's own API under /_emulator (same SAS, no api-version): the JSON answer."""
    r = requests.request(method, f"https://{HOST_NAME}{path}", params=params, headers={"Authorization": _service_token()},
                         json=body, verify=CA_FILE, timeout=15)
    assert 200 <= r.status_code < 300, f"{method} {path}: {r.status_code} {r.headers.get('iothub-errorcode')} {r.text}"
    return r.json() if r.content else None


def poll_until(fn, what, timeout=10.0, interval=0.1):
    """Calls fn until it returns something truthy, which it returns; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s: {what}")
        time.sleep(interval)  # poll interval


@pytest.fixture(scope="session")
def registry():
    return IoTHubRegistryManager.from_connection_string(CONNECTION_STRING)


@pytest.fixture(scope="session")
def job_manager():
    return IoTHubJobManager.from_connection_string(CONNECTION_STRING)


@pytest.fixture
def make_device(registry):
    """Creates devices with SAS keys; deletes them after the test."""
    created = []

    def make(prefix="py", status="enabled"):
        device_id = unique_id(prefix)
        primary, secondary = random_key(), random_key()
        device = registry.create_device_with_sas(device_id, primary, secondary, status)
        created.append(device_id)
        return device_id, primary

    yield make
    for device_id in created:
        try:
            registry.delete_device(device_id)
        except Exception:  # cleanup only; the test's assertions matter
            pass


@pytest.fixture
def connect_device():
    """Opens IoTHubDeviceClient instances over MQTT; shuts them down after the test."""
    clients = []

    def connect(device_id, key, **kwargs):
        client = IoTHubDeviceClient.create_from_connection_string(
            device_connection_string(device_id, key), server_verification_cert=CA_PEM,
            connection_retry=False, **kwargs)
        clients.append(client)
        client.connect()
        return client

    yield connect
    for client in clients:
        try:
            client.shutdown()
        except Exception:
            pass
