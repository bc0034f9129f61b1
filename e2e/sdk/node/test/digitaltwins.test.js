'use strict';
// IoT Plug and Play through azure-iothub's DigitalTwinClient against the
// temperature controller in lib/pnp.js: getDigitalTwin, updateDigitalTwin
// (root and component properties, acknowledged by the device),
// invokeComponentCommand and invokeCommand.
const { test } = require('node:test');
const { DigitalTwinClient, IoTHubTokenCredentials } = require('azure-iothub');
const hub = require('../lib/hub');
const { MODEL_ID, startTemperatureController } = require('../lib/pnp');

const { assert, uniqueId, withTimeout, rejectionOf, OP_TIMEOUT_MS } = hub;
const T = { timeout: 90000 };

test('DigitalTwinClient reads, updates and commands a PnP temperature controller', T, async () => {
  const reg = hub.registry();
  const deviceId = uniqueId('pnp');
  let device;
  try {
    const dev = await hub.createDevice(reg, deviceId);
    device = await startTemperatureController(deviceId, dev.authentication.symmetricKey.primaryKey);
    const dt = new DigitalTwinClient(new IoTHubTokenCredentials(hub.connectionString));

    const twin = await withTimeout(dt.getDigitalTwin(deviceId), OP_TIMEOUT_MS, 'getDigitalTwin');
    assert.equal(twin.$dtId, deviceId);
    assert.equal(twin.$metadata.$model, MODEL_ID);
    assert.equal(twin.serialNumber, 'SN-PNP-0001');
    assert.equal(twin.thermostat1.maxTempSinceLastReboot, 31.5);
    assert.ok(twin.thermostat1.$metadata.maxTempSinceLastReboot.lastUpdateTime, 'component metadata');
    assert.ok(twin.$metadata.serialNumber.lastUpdateTime, 'root metadata');

    // A component's writable property: the device acknowledges it.
    const etag = twin._response.headers.get('etag');
    // The SDK resolves a 202 without a body to undefined.
    await withTimeout(dt.updateDigitalTwin(deviceId,
      [{ op: 'add', path: '/thermostat1/targetTemperature', value: 22.5 }], etag), OP_TIMEOUT_MS, 'updateDigitalTwin');
    const acked = await hub.pollUntil(async () => {
      const t = await dt.getDigitalTwin(deviceId);
      const m = t.thermostat1.$metadata.targetTemperature;
      return m && m.ackCode === 200 ? t : undefined;
    }, 20000, 'the device acknowledges targetTemperature');
    assert.equal(acked.thermostat1.targetTemperature, 22.5);
    assert.equal(acked.thermostat1.$metadata.targetTemperature.desiredValue, 22.5);
    assert.equal(acked.thermostat1.$metadata.targetTemperature.ackVersion,
      acked.thermostat1.$metadata.targetTemperature.desiredVersion);

    // A root property, without an etag; then a stale etag fails.
    await withTimeout(dt.updateDigitalTwin(deviceId, [{ op: 'add', path: '/displayName', value: 'lab controller' }]),
      OP_TIMEOUT_MS, 'updateDigitalTwin root');
    const { responseBody: deviceTwin } = await withTimeout(reg.getTwin(deviceId), OP_TIMEOUT_MS, 'getTwin');
    assert.equal(deviceTwin.properties.desired.displayName, 'lab controller');
    assert.equal(deviceTwin.properties.desired.thermostat1.__t, 'c');
    const stale = await rejectionOf(dt.updateDigitalTwin(deviceId, [{ op: 'add', path: '/x', value: 1 }], etag), 'stale etag');
    assert.equal(stale.statusCode, 412);

    // Commands: component*command and a root command.
    const report = await withTimeout(dt.invokeComponentCommand(deviceId, 'thermostat2', 'getMaxMinReport', '2026-01-01T00:00:00Z',
      { connectTimeoutInSeconds: 5, responseTimeoutInSeconds: 10 }), OP_TIMEOUT_MS, 'invokeComponentCommand');
    // The SDK returns the device's payload as body and its status as xMsCommandStatuscode.
    assert.equal(report.xMsCommandStatuscode, 200);
    assert.ok(report.xMsRequestId, 'x-ms-request-id');
    assert.deepEqual(report.body, { maxTemp: 27, minTemp: 12, since: '2026-01-01T00:00:00Z' });
    const reboot = await withTimeout(dt.invokeCommand(deviceId, 'reboot', { delay: 3 }), OP_TIMEOUT_MS, 'invokeCommand');
    assert.equal(reboot.xMsCommandStatuscode, 200);
    assert.deepEqual(reboot.body, { rebooting: true, delay: 3 });
    assert.deepEqual(device.state.reboots, [{ delay: 3 }]);
  } finally {
    if (device) await hub.closeQuietly(device.client);
    await hub.deleteQuietly(reg, deviceId);
  }
});
