'use strict';
// The error paths users hit first, with the typed errors the SDKs document.
const { test } = require('node:test');
const { Registry } = require('azure-iothub');
const hub = require('../lib/hub');

const { assert, serviceErrors, deviceErrors, uniqueId, withTimeout, rejectionOf, OP_TIMEOUT_MS } = hub;
const T = { timeout: 60000 };

test('Registry.get of an unknown device fails with DeviceNotFoundError', T, async () => {
  const reg = hub.registry();
  const id = uniqueId('err-missing');
  const err = await rejectionOf(reg.get(id), 'get unknown');
  assert.ok(err instanceof serviceErrors.DeviceNotFoundError, `expected DeviceNotFoundError, got ${err.name}: ${err.message}`);
  assert.equal(err.response.statusCode, 404);
  assert.match(err.message, new RegExp(id), 'the message names the device');
});

test('Registry.getTwin of an unknown device fails with DeviceNotFoundError', T, async () => {
  const reg = hub.registry();
  const err = await rejectionOf(reg.getTwin(uniqueId('err-notwin')), 'getTwin unknown');
  assert.ok(err instanceof serviceErrors.DeviceNotFoundError, `expected DeviceNotFoundError, got ${err.name}: ${err.message}`);
});

test('a service connection string with a wrong key fails with UnauthorizedError', T, async () => {
  const wrongKey = Buffer.alloc(32, 1).toString('base64');
  const cs = hub.connectionString.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${wrongKey}`);
  const reg = Registry.fromConnectionString(cs);
  const err = await rejectionOf(reg.list(), 'list with a wrong key');
  assert.ok(err instanceof serviceErrors.UnauthorizedError, `expected UnauthorizedError, got ${err.name}: ${err.message}`);
  assert.equal(err.response.statusCode, 401);
});

test('a device with a wrong key fails to open with UnauthorizedError', T, async () => {
  const reg = hub.registry();
  const id = uniqueId('err-key');
  let client;
  try {
    await hub.createDevice(reg, id);
    const wrongKey = Buffer.alloc(32, 3).toString('base64');
    client = hub.DeviceClient.fromConnectionString(hub.deviceConnectionString(id, wrongKey), hub.Mqtt);
    await withTimeout(client.setOptions({ ca: hub.caPem }), OP_TIMEOUT_MS, 'setOptions');
    const err = await rejectionOf(client.open(), 'open with a wrong key');
    assert.ok(err instanceof deviceErrors.UnauthorizedError, `expected UnauthorizedError, got ${err.name}: ${err.message}`);
  } finally {
    await hub.closeQuietly(client);
    await hub.deleteQuietly(reg, id);
  }
});

test('an unregistered device fails to open with UnauthorizedError', T, async () => {
  const id = uniqueId('err-unregistered');
  const key = Buffer.alloc(32, 5).toString('base64');
  const client = hub.DeviceClient.fromConnectionString(hub.deviceConnectionString(id, key), hub.Mqtt);
  try {
    await withTimeout(client.setOptions({ ca: hub.caPem }), OP_TIMEOUT_MS, 'setOptions');
    const err = await rejectionOf(client.open(), 'open of an unregistered device');
    assert.ok(err instanceof deviceErrors.UnauthorizedError, `expected UnauthorizedError, got ${err.name}: ${err.message}`);
  } finally {
    await hub.closeQuietly(client);
  }
});

test('a disabled device fails to open with UnauthorizedError', T, async () => {
  const reg = hub.registry();
  const id = uniqueId('err-disabled');
  let client;
  try {
    const { responseBody: dev } = await withTimeout(reg.create({ deviceId: id, status: 'disabled' }), OP_TIMEOUT_MS, 'create disabled');
    client = hub.DeviceClient.fromConnectionString(
      hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey), hub.Mqtt);
    await withTimeout(client.setOptions({ ca: hub.caPem }), OP_TIMEOUT_MS, 'setOptions');
    const err = await rejectionOf(client.open(), 'open of a disabled device');
    assert.ok(err instanceof deviceErrors.UnauthorizedError, `expected UnauthorizedError, got ${err.name}: ${err.message}`);
  } finally {
    await hub.closeQuietly(client);
    await hub.deleteQuietly(reg, id);
  }
});
