"""Device Provisioning Service with the official Python device SDK.

ProvisioningDeviceClient.create_from_symmetric_key registers over MQTT on the
hub's own port 8883; the device then connects to the hub with what it was
assigned. Python has no maintained provisioning service SDK, so enrollments
are made through the service REST API that the other languages' SDKs call.
"""
import base64
import hashlib
import hmac
import subprocess
import time
import urllib.parse

import pytest
import requests
from azure.iot.device import X509, IoTHubDeviceClient, ProvisioningDeviceClient
from azure.iot.device.exceptions import ClientError, CredentialError, ServiceError

from conftest import CA_FILE, CA_PEM, HOST_NAME, emulator_api, unique_id

API = {"api-version": "2021-10-01"}


@pytest.fixture(scope="module")
def dps():
    return emulator_api("GET", "/_emulator/dps")


def _sign(resource, key, key_name):
    sr = urllib.parse.quote_plus(resource)
    se = int(time.time()) + 3600
    sig = base64.b64encode(hmac.new(base64.b64decode(key), f"{sr}\n{se}".encode(), hashlib.sha256).digest()).decode()
    return f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}&se={se}&skn={key_name}"


def _service(dps, method, path, body=None):
    fields = dict(p.split("=", 1) for p in dps["serviceConnectionString"].split(";"))
    token = _sign(fields["HostName"], fields["SharedAccessKey"], fields["SharedAccessKeyName"])
    r = requests.request(method, f"https://{HOST_NAME}{path}", params=API, json=body,
                         headers={"Authorization": token}, verify=CA_FILE, timeout=15)
    assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
    return r.json() if r.content else None


@pytest.fixture
def enrollments(dps):
    """Creates individual enrollments and groups; deletes them after the test."""
    made = []

    def put(kind, body):
        key = "registrationId" if kind == "enrollments" else "enrollmentGroupId"
        made.append(f"/{kind}/{body[key]}")
        return _service(dps, "PUT", made[-1], body)

    yield put
    for path in made:
        requests.delete(f"https://{HOST_NAME}{path}", params=API, verify=CA_FILE, timeout=15,
                        headers={"Authorization": _sign(HOST_NAME, dict(p.split("=", 1) for p in dps["serviceConnectionString"].split(";"))["SharedAccessKey"], "provisioningserviceowner")})


def _register(dps, registration_id, key, id_scope=None):
    client = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=HOST_NAME, registration_id=registration_id, id_scope=id_scope or dps["idScope"],
        symmetric_key=key, server_verification_cert=CA_PEM)
    # register() disconnects when it is done; the client has no shutdown().
    return client.register()


def _twin_of(result, key):
    state = result.registration_state
    client = IoTHubDeviceClient.create_from_symmetric_key(
        symmetric_key=key, hostname=state.assigned_hub, device_id=state.device_id, server_verification_cert=CA_PEM)
    try:
        client.connect()
        return client.get_twin()
    finally:
        client.shutdown()


def test_individual_enrollment_symmetric_key(dps, enrollments, registry):
    reg_id = unique_id("py-prov")
    e = enrollments("enrollments", {
        "registrationId": reg_id, "attestation": {"type": "symmetricKey"},
        "initialTwin": {"tags": {"room": "a1"}, "properties": {"desired": {"rate": 3}}},
    })
    key = e["attestation"]["symmetricKey"]["primaryKey"]
    try:
        result = _register(dps, reg_id, key)
        assert result.status == "assigned"
        assert result.registration_state.device_id == reg_id
        assert result.registration_state.assigned_hub == HOST_NAME
        twin = _twin_of(result, key)
        assert twin["desired"]["rate"] == 3
        assert registry.get_twin(reg_id).tags["room"] == "a1"
    finally:
        try:
            registry.delete_device(reg_id)
        except Exception:  # cleanup only
            pass


def test_group_enrollment_derived_key(dps, enrollments, registry):
    group_id = unique_id("py-group")
    g = enrollments("enrollmentGroups", {"enrollmentGroupId": group_id, "attestation": {"type": "symmetricKey"},
                                         "initialTwin": {"properties": {"desired": {"mode": "eco"}}}})
    reg_id = unique_id("py-member")
    key = base64.b64encode(hmac.new(base64.b64decode(g["attestation"]["symmetricKey"]["primaryKey"]),
                                    reg_id.encode(), hashlib.sha256).digest()).decode()
    try:
        result = _register(dps, reg_id, key)
        assert result.status == "assigned"
        assert _twin_of(result, key)["desired"]["mode"] == "eco"
    finally:
        try:
            registry.delete_device(reg_id)
        except Exception:  # cleanup only
            pass


def test_refusals(dps, enrollments, registry):
    reg_id = unique_id("py-refused")
    e = enrollments("enrollments", {"registrationId": reg_id, "attestation": {"type": "symmetricKey"}})
    off_id = unique_id("py-off")
    off = enrollments("enrollments", {"registrationId": off_id, "provisioningStatus": "disabled",
                                      "attestation": {"type": "symmetricKey"}})
    other_key = off["attestation"]["symmetricKey"]["primaryKey"]

    # DPS refuses the MQTT CONNECT of a wrong key or an unknown scope.
    with pytest.raises(CredentialError):
        _register(dps, reg_id, other_key)
    with pytest.raises(CredentialError):
        _register(dps, reg_id, e["attestation"]["symmetricKey"]["primaryKey"], id_scope="0ne99999999")
    # A disabled enrollment ends in the status "disabled", which the SDK
    # reports as an error; no device is created.
    with pytest.raises((ClientError, ServiceError)):
        _register(dps, off_id, other_key)
    assert _service(dps, "GET", f"/registrations/{off_id}")["status"] == "disabled"
    with pytest.raises(Exception):
        registry.get_device(off_id)


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def test_x509_device_through_a_ca_group(dps, enrollments, registry, tmp_path):
    """A device certificate (CN = registration id) signed by the group's CA."""
    reg_id = unique_id("py-x509")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=py-dps-root", "-days", "1",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,digitalSignature",
             cwd=tmp_path)
    _openssl("req", *ec, "-keyout", "dev.key", "-out", "dev.csr", "-subj", f"/CN={reg_id}", cwd=tmp_path)
    (tmp_path / "ext.cnf").write_text("extendedKeyUsage=clientAuth\n")
    _openssl("x509", "-req", "-in", "dev.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "dev.pem", "-days", "1", "-extfile", "ext.cnf", cwd=tmp_path)
    enrollments("enrollmentGroups", {
        "enrollmentGroupId": unique_id("py-x509-group"),
        "attestation": {"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": (tmp_path / "ca.pem").read_text()}}}},
        "initialTwin": {"properties": {"desired": {"cert": "ok"}}},
    })
    x509 = X509(cert_file=str(tmp_path / "dev.pem"), key_file=str(tmp_path / "dev.key"))
    try:
        client = ProvisioningDeviceClient.create_from_x509_certificate(
            provisioning_host=HOST_NAME, registration_id=reg_id, id_scope=dps["idScope"], x509=x509,
            server_verification_cert=CA_PEM)
        result = client.register()
        assert result.status == "assigned"
        assert result.registration_state.device_id == reg_id

        device = IoTHubDeviceClient.create_from_x509_certificate(
            x509=x509, hostname=result.registration_state.assigned_hub, device_id=reg_id, server_verification_cert=CA_PEM)
        try:
            device.connect()
            assert device.get_twin()["desired"]["cert"] == "ok"
        finally:
            device.shutdown()
    finally:
        try:
            registry.delete_device(reg_id)
        except Exception:  # cleanup only
            pass
