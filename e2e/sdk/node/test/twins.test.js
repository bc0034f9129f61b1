'use strict';
// Device twins from both ends: the device over MQTT (azure-iot-device +
// azure-iot-device-mqtt) and the service over REST (azure-iothub Registry).
const { test } = require('node:test');
const hub = require('../lib/hub');

const { assert, serviceErrors, uniqueId, withTimeout, rejectionOf, waitForEvent, OP_TIMEOUT_MS } = hub;
const T = { timeout: 60000 };

/** Creates a device and opens its MQTT client; returns { reg, id, client }. */
async function onlineDevice(prefix, transport) {
  const reg = hub.registry();
  const id = uniqueId(prefix);
  const dev = await hub.createDevice(reg, id);
  const client = await hub.openClient(hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey), { transport });
  return { reg, id, client };
}

test('device reports properties over MQTT and the service reads them', T, async () => {
  const { reg, id, client } = await onlineDevice('twin-rep');
  try {
    const twin = await withTimeout(client.getTwin(), OP_TIMEOUT_MS, 'getTwin');
    assert.equal(typeof twin.properties.desired.$version, 'number', 'desired carries $version');
    assert.equal(typeof twin.properties.reported.$version, 'number', 'reported carries $version');
    const before = twin.properties.reported.$version;

    await hub.updateReported(twin, { firmware: '1.2.3', battery: { level: 87, charging: false } });
    // The SDK merges a successful patch into its local copy.
    assert.equal(twin.properties.reported.firmware, '1.2.3');

    const { responseBody: svc } = await withTimeout(reg.getTwin(id), OP_TIMEOUT_MS, 'service getTwin');
    assert.equal(svc.deviceId, id);
    assert.equal(svc.properties.reported.firmware, '1.2.3');
    assert.deepEqual(svc.properties.reported.battery, { level: 87, charging: false });
    assert.equal(svc.properties.reported.$version, before + 1);

    // A null removes a reported property.
    await hub.updateReported(twin, { battery: null });
    const { responseBody: svc2 } = await withTimeout(reg.getTwin(id), OP_TIMEOUT_MS, 'service getTwin 2');
    assert.equal(svc2.properties.reported.battery, undefined);
    assert.equal(svc2.properties.reported.firmware, '1.2.3');

    // A fresh GET from the device sees what it reported.
    const twin2 = await withTimeout(client.getTwin(), OP_TIMEOUT_MS, 'second getTwin');
    assert.equal(twin2.properties.reported.firmware, '1.2.3');
  } finally {
    await hub.closeQuietly(client);
    await hub.deleteQuietly(reg, id);
  }
});

test('Registry.updateTwin with the etag reaches the device as a properties.desired event', T, async () => {
  const { reg, id, client } = await onlineDevice('twin-des');
  try {
    const twin = await withTimeout(client.getTwin(), OP_TIMEOUT_MS, 'getTwin');
    await hub.desiredUpdatesEnabled(twin);

    const { responseBody: current } = await withTimeout(reg.getTwin(id), OP_TIMEOUT_MS, 'service getTwin');
    assert.ok(current.etag, 'the service twin carries an etag');
    const got = waitForEvent(twin, 'properties.desired', (d) => d && d.telemetryInterval === 30, OP_TIMEOUT_MS,
      'desired patch on the device');
    const { responseBody: updated } = await withTimeout(
      reg.updateTwin(id, { tags: { site: 'lab-1' }, properties: { desired: { telemetryInterval: 30, mode: { eco: true } } } }, current.etag),
      OP_TIMEOUT_MS, 'updateTwin');
    assert.equal(updated.deviceId, id);
    assert.equal(updated.tags.site, 'lab-1');
    assert.equal(updated.properties.desired.telemetryInterval, 30);
    assert.notEqual(updated.etag, current.etag, 'a twin update changes the etag');

    const [patch] = await got;
    assert.deepEqual(patch.mode, { eco: true });
    assert.equal(patch.$version, updated.properties.desired.$version, 'the notification carries the new desired $version');
    // The SDK merged the patch into its local desired properties.
    assert.equal(twin.properties.desired.telemetryInterval, 30);
  } finally {
    await hub.closeQuietly(client);
    await hub.deleteQuietly(reg, id);
  }
});

test('Twin.update from the service SDK reaches the device', T, async () => {
  const { reg, id, client } = await onlineDevice('twin-upd');
  try {
    const deviceTwin = await withTimeout(client.getTwin(), OP_TIMEOUT_MS, 'getTwin');
    await hub.desiredUpdatesEnabled(deviceTwin);
    const got = waitForEvent(deviceTwin, 'properties.desired', (d) => d && d.color === 'blue', OP_TIMEOUT_MS,
      'desired patch on the device');

    const { responseBody: serviceTwin } = await withTimeout(reg.getTwin(id), OP_TIMEOUT_MS, 'service getTwin');
    const etagBefore = serviceTwin.etag;
    // Twin.update resolves with { result: <the same Twin, refreshed>, message }.
    const { result: after } = await withTimeout(serviceTwin.update({ properties: { desired: { color: 'blue' } } }),
      OP_TIMEOUT_MS, 'Twin.update');
    assert.equal(after.properties.desired.color, 'blue');
    assert.notEqual(after.etag, etagBefore, 'Twin.update refreshes the etag');
    const [patch] = await got;
    assert.equal(patch.color, 'blue');

    // A per-property event fires too (properties.desired.<name>).
    const again = waitForEvent(deviceTwin, 'properties.desired.color', (v) => v === 'green', OP_TIMEOUT_MS, 'color event');
    await withTimeout(reg.updateTwin(id, { properties: { desired: { color: 'green' } } }, '*'), OP_TIMEOUT_MS, 'updateTwin *');
    await again;
  } finally {
    await hub.closeQuietly(client);
    await hub.deleteQuietly(reg, id);
  }
});

test('updateTwin with a stale etag fails with InvalidEtagError and changes nothing', T, async () => {
  const reg = hub.registry();
  const id = uniqueId('twin-etag');
  try {
    await hub.createDevice(reg, id);
    const { responseBody: t0 } = await withTimeout(reg.getTwin(id), OP_TIMEOUT_MS, 'getTwin');
    await withTimeout(reg.updateTwin(id, { tags: { owner: 'first' } }, t0.etag), OP_TIMEOUT_MS, 'first update');
    const err = await rejectionOf(reg.updateTwin(id, { tags: { owner: 'second' } }, t0.etag), 'stale update');
    assert.ok(err instanceof serviceErrors.InvalidEtagError, `expected InvalidEtagError, got ${err.name}: ${err.message}`);
    assert.equal(err.response.statusCode, 412);
    const { responseBody: t1 } = await withTimeout(reg.getTwin(id), OP_TIMEOUT_MS, 'getTwin after');
    assert.equal(t1.tags.owner, 'first');
  } finally {
    await hub.deleteQuietly(reg, id);
  }
});

test('module twin: module reports over MQTT, service reads and patches it', T, async () => {
  const reg = hub.registry();
  const id = uniqueId('twin-mod');
  const moduleId = 'edge-filter';
  let client;
  try {
    await hub.createDevice(reg, id);
    const { responseBody: mod } = await withTimeout(reg.addModule({ deviceId: id, moduleId }), OP_TIMEOUT_MS, 'addModule');
    client = await hub.openClient(hub.deviceConnectionString(id, mod.authentication.symmetricKey.primaryKey, moduleId), { module: true });
    const twin = await withTimeout(client.getTwin(), OP_TIMEOUT_MS, 'module getTwin');
    await hub.updateReported(twin, { threshold: 7 });
    await hub.desiredUpdatesEnabled(twin);

    const { responseBody: svc } = await withTimeout(reg.getModuleTwin(id, moduleId), OP_TIMEOUT_MS, 'getModuleTwin');
    assert.equal(svc.deviceId, id);
    assert.equal(svc.moduleId, moduleId);
    assert.equal(svc.properties.reported.threshold, 7);

    const got = waitForEvent(twin, 'properties.desired', (d) => d && d.threshold === 9, OP_TIMEOUT_MS, 'module desired patch');
    await withTimeout(reg.updateModuleTwin(id, moduleId, { properties: { desired: { threshold: 9 } } }, svc.etag),
      OP_TIMEOUT_MS, 'updateModuleTwin');
    await got;
    // The device twin is a different document: the module's properties are not in it.
    const { responseBody: devTwin } = await withTimeout(reg.getTwin(id), OP_TIMEOUT_MS, 'device getTwin');
    assert.equal(devTwin.properties.desired.threshold, undefined);
    assert.equal(devTwin.properties.reported.threshold, undefined);
  } finally {
    await hub.closeQuietly(client);
    await hub.deleteQuietly(reg, id);
  }
});
