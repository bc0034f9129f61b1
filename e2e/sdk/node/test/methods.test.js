'use strict';
// Direct methods: azure-iothub Client.invokeDeviceMethod (REST) to a device or
// module that answers through onDeviceMethod (MQTT).
const { test } = require('node:test');
const hub = require('../lib/hub');

const { assert, serviceErrors, uniqueId, withTimeout, rejectionOf, OP_TIMEOUT_MS } = hub;
const T = { timeout: 60000 };

test('invokeDeviceMethod reaches onDeviceMethod and returns its status and payload', T, async (t) => {
  const reg = hub.registry();
  const id = uniqueId('m-dev');
  let client;
  try {
    const dev = await hub.createDevice(reg, id);
    client = await hub.openClient(hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey));
    const seen = [];
    client.onDeviceMethod('reboot', (request, response) => {
      seen.push({ methodName: request.methodName, payload: request.payload });
      response.send(200, { rebooting: true, delay: request.payload.delay }, () => {});
    });
    client.onDeviceMethod('fail', (request, response) => {
      response.send(500, { reason: 'sensor offline' }, () => {});
    });
    await hub.methodsEnabled(client);

    const svc = hub.serviceClient();
    const { result } = await withTimeout(svc.invokeDeviceMethod(id, {
      methodName: 'reboot', payload: { delay: 5, note: 'e2e' }, responseTimeoutInSeconds: 10,
    }), OP_TIMEOUT_MS, 'invokeDeviceMethod reboot');
    assert.equal(result.status, 200);
    assert.deepEqual(result.payload, { rebooting: true, delay: 5 });
    assert.deepEqual(seen, [{ methodName: 'reboot', payload: { delay: 5, note: 'e2e' } }]);

    // The device's status is passed through, even when it reports a failure.
    const { result: failed } = await withTimeout(svc.invokeDeviceMethod(id, {
      methodName: 'fail', payload: null, responseTimeoutInSeconds: 10,
    }), OP_TIMEOUT_MS, 'invokeDeviceMethod fail');
    assert.equal(failed.status, 500);
    assert.deepEqual(failed.payload, { reason: 'sensor offline' });
  } finally {
    await hub.closeQuietly(client);
    await hub.deleteQuietly(reg, id);
  }
});

test('invokeDeviceMethod on a module reaches the module client', T, async (t) => {
  const reg = hub.registry();
  const id = uniqueId('m-mod');
  const moduleId = 'actuator';
  let client;
  try {
    await hub.createDevice(reg, id);
    const { responseBody: mod } = await withTimeout(reg.addModule({ deviceId: id, moduleId }), OP_TIMEOUT_MS, 'addModule');
    client = await hub.openClient(hub.deviceConnectionString(id, mod.authentication.symmetricKey.primaryKey, moduleId), { module: true });
    client.onMethod('setSpeed', (request, response) => {
      response.send(200, { speed: request.payload.speed * 2 }, () => {});
    });
    await hub.methodsEnabled(client);

    const svc = hub.serviceClient();
    const { result } = await withTimeout(svc.invokeDeviceMethod(id, moduleId, {
      methodName: 'setSpeed', payload: { speed: 21 }, responseTimeoutInSeconds: 10,
    }), OP_TIMEOUT_MS, 'invoke module method');
    assert.equal(result.status, 200);
    assert.deepEqual(result.payload, { speed: 42 });
  } finally {
    await hub.closeQuietly(client);
    await hub.deleteQuietly(reg, id);
  }
});

test('invokeDeviceMethod on an offline device fails with 404 DeviceNotOnline (404103)', T, async (t) => {
  const reg = hub.registry();
  const id = uniqueId('m-offline');
  try {
    await hub.createDevice(reg, id); // registered, never connected
    const svc = hub.serviceClient();
    const err = await rejectionOf(svc.invokeDeviceMethod(id, {
      methodName: 'reboot', payload: {}, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 0,
    }), 'invoke on an offline device');
    // azure-iothub maps a 404 to a typed error only for DeviceNotFound; for
    // DeviceNotOnline it gives a plain Error('Not found') with the response,
    // so users check the status and the hub's errorCode.
    assert.equal(err.response && err.response.statusCode, 404, `expected 404, got ${err.name}: ${err.message}`);
    assert.ok(!(err instanceof serviceErrors.DeviceNotFoundError), 'the device exists: not DeviceNotFoundError');
    assert.equal(hub.hubErrorOf(err).errorCode, 404103, `DeviceNotOnline errorCode in ${err.responseBody}`);
  } finally {
    await hub.deleteQuietly(reg, id);
  }
});

test('invokeDeviceMethod on a device that never answers fails with GatewayTimeoutError', T, async (t) => {
  const reg = hub.registry();
  const id = uniqueId('m-timeout');
  let client;
  try {
    const dev = await hub.createDevice(reg, id);
    client = await hub.openClient(hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey));
    let called = false;
    client.onDeviceMethod('hang', () => { called = true; }); // never responds
    await hub.methodsEnabled(client);

    const svc = hub.serviceClient();
    const started = Date.now();
    // 5 s is the hub's smallest response timeout. The SDK's socket timeout is
    // (response + connect) timeout; the connect timeout keeps it past the
    // hub's answer.
    const err = await rejectionOf(svc.invokeDeviceMethod(id, {
      methodName: 'hang', payload: {}, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 5,
    }), 'invoke of a hanging method');
    assert.ok(err instanceof serviceErrors.GatewayTimeoutError, `expected GatewayTimeoutError, got ${err.name}: ${err.message}`);
    assert.equal(hub.hubErrorOf(err).errorCode, 504101);
    assert.ok(called, 'the device received the request');
    assert.ok(Date.now() - started >= 4900, 'the hub waited for the response timeout');
  } finally {
    await hub.closeQuietly(client);
    await hub.deleteQuietly(reg, id);
  }
});
