"""Device file upload with azure-iot-device against Azurite (started by
e2e/sdk/run.sh, see azurite.sh): get_storage_info_for_blob, an upload with
the SAS URI through azure-storage-blob (as the SDK's upload sample does),
notify_blob_upload_status; the blob read back from Azurite with the account
key, and the file notification from GET /_emulator/filenotifications (the
emulator's stand-in for the AMQP filenotifications node).
"""
import os

import pytest
from azure.storage.blob import BlobClient, BlobServiceClient

from conftest import emulator_api


def storage():
    cs = os.environ.get("STORAGE_CONNECTION_STRING")
    assert cs, "STORAGE_CONNECTION_STRING is not set: run the suite through e2e/sdk/run.sh, which starts Azurite"
    return BlobServiceClient.from_connection_string(cs)


def test_upload_flow_stores_the_blob_and_notifies(make_device, connect_device):
    device_id, key = make_device("py-upload")
    client = connect_device(device_id, key)

    info = client.get_storage_info_for_blob("logs/boot.txt")
    assert info["containerName"] == "fileupload"
    assert info["blobName"] == f"{device_id}/logs/boot.txt"
    assert info["correlationId"]
    sas_url = f"https://{info['hostName']}/{info['containerName']}/{info['blobName']}{info['sasToken']}"
    data = b"boot log line\n" * 64
    BlobClient.from_blob_url(sas_url).upload_blob(data)
    client.notify_blob_upload_status(info["correlationId"], True, 200, f"uploaded {len(data)} bytes")

    stored = storage().get_blob_client("fileupload", f"{device_id}/logs/boot.txt").download_blob().readall()
    assert stored == data

    notes = emulator_api("GET", "/_emulator/filenotifications", params={"deviceId": device_id})
    assert len(notes) == 1
    assert notes[0]["blobName"] == f"{device_id}/logs/boot.txt"
    assert notes[0]["blobSizeInBytes"] == len(data)
    assert notes[0]["blobUri"].endswith(f"/fileupload/{device_id}/logs/boot.txt")


def test_failed_upload_makes_no_notification(make_device, connect_device):
    device_id, key = make_device("py-upload-fail")
    client = connect_device(device_id, key)
    info = client.get_storage_info_for_blob("never.bin")
    client.notify_blob_upload_status(info["correlationId"], False, 500, "gave up")
    assert emulator_api("GET", "/_emulator/filenotifications", params={"deviceId": device_id}) == []
    # The correlation id is settled: a second notification is refused.
    with pytest.raises(Exception):
        client.notify_blob_upload_status(info["correlationId"], True, 200, "again")
