'use strict';
// Device file upload with azure-iot-device against Azurite (started by
// e2e/sdk/run.sh, see azurite.sh): uploadToBlob end to end, and the
// getBlobSharedAccessSignature + notifyBlobUploadStatus steps one by one.
// The blob is read back from Azurite with the account key, and the file
// notification from the emulator's stand-in for the AMQP
// filenotifications node (GET /_emulator/filenotifications).
const { test } = require('node:test');
const { Readable } = require('node:stream');
// The storage library azure-iot-device itself uploads with.
const { BlobServiceClient } = require('@azure/storage-blob');
const hub = require('../lib/hub');

const { assert, uniqueId, withTimeout, OP_TIMEOUT_MS } = hub;
const T = { timeout: 90000 };

function storage() {
  const cs = process.env.STORAGE_CONNECTION_STRING;
  assert.ok(cs, 'STORAGE_CONNECTION_STRING is not set: run the suite through e2e/sdk/run.sh, which starts Azurite');
  return BlobServiceClient.fromConnectionString(cs);
}

async function notificationsFor(deviceId) {
  return hub.emulatorApi('GET', `/_emulator/filenotifications?deviceId=${encodeURIComponent(deviceId)}`);
}

test('uploadToBlob stores the blob in Azurite and notifies the back end', T, async () => {
  const reg = hub.registry();
  const id = uniqueId('upload');
  let client;
  try {
    const dev = await hub.createDevice(reg, id);
    client = await hub.openClient(hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey));
    const content = Buffer.from(`telemetry archive of ${id}\n`.repeat(100));
    await withTimeout(client.uploadToBlob('archives/day1.log', Readable.from([content]), content.length), 60000, 'uploadToBlob');

    const blob = storage().getContainerClient('fileupload').getBlobClient(`${id}/archives/day1.log`);
    const stored = await withTimeout(blob.downloadToBuffer(), OP_TIMEOUT_MS, 'download from Azurite');
    assert.deepEqual(stored, content);

    const notes = await notificationsFor(id);
    assert.equal(notes.length, 1, JSON.stringify(notes));
    assert.equal(notes[0].deviceId, id);
    assert.equal(notes[0].blobName, `${id}/archives/day1.log`);
    assert.equal(notes[0].blobSizeInBytes, content.length);
    assert.match(notes[0].blobUri, new RegExp(`/fileupload/${id}/archives/day1\\.log$`));
    assert.ok(notes[0].enqueuedTimeUtc);
  } finally {
    await hub.closeQuietly(client);
    await hub.deleteQuietly(reg, id);
  }
});

test('getBlobSharedAccessSignature and notifyBlobUploadStatus, success and failure', T, async () => {
  const reg = hub.registry();
  const id = uniqueId('upload-sas');
  let client;
  try {
    const dev = await hub.createDevice(reg, id);
    client = await hub.openClient(hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey));
    const sas = await withTimeout(client.getBlobSharedAccessSignature('photo.jpg'), OP_TIMEOUT_MS, 'getBlobSharedAccessSignature');
    assert.equal(sas.containerName, 'fileupload');
    assert.equal(sas.blobName, `${id}/photo.jpg`);
    assert.match(sas.hostName, /^127\.0\.0\.1:\d+\/devstoreaccount1$/);
    assert.match(sas.sasToken, /^\?.*sig=/);
    assert.ok(sas.correlationId);

    // A failed upload is reported but makes no notification.
    await withTimeout(client.notifyBlobUploadStatus(sas.correlationId, false, 500, 'disk full'), OP_TIMEOUT_MS, 'notify failure');
    assert.deepEqual(await notificationsFor(id), []);
    // The correlation id is settled now.
    await assert.rejects(client.notifyBlobUploadStatus(sas.correlationId, true, 200, 'again'));

    // A second SAS, uploaded with the storage library as a device would.
    const sas2 = await withTimeout(client.getBlobSharedAccessSignature('photo.jpg'), OP_TIMEOUT_MS, 'second SAS');
    const { BlockBlobClient } = require('@azure/storage-blob');
    const url = `https://${sas2.hostName}/${sas2.containerName}/${sas2.blobName}${sas2.sasToken}`;
    await withTimeout(new BlockBlobClient(url).upload('jpeg bytes', 10), OP_TIMEOUT_MS, 'upload with the SAS');
    await withTimeout(client.notifyBlobUploadStatus(sas2.correlationId, true, 200, 'done'), OP_TIMEOUT_MS, 'notify success');
    const notes = await notificationsFor(id);
    assert.equal(notes.length, 1);
    assert.equal(notes[0].blobSizeInBytes, 10);
  } finally {
    await hub.closeQuietly(client);
    await hub.deleteQuietly(reg, id);
  }
});
