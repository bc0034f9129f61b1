'use strict';
// Automatic device management through azure-iothub's Registry:
// addConfiguration, getConfiguration(s), updateConfiguration (with an etag
// and forced), removeConfiguration, applyConfigurationContentOnDevice, and
// a configuration's content reaching a device that listens over MQTT.
const { test } = require('node:test');
const hub = require('../lib/hub');

const { assert, uniqueId, withTimeout, rejectionOf, waitForEvent, OP_TIMEOUT_MS } = hub;
const T = { timeout: 90000 };

/** Configuration ids must be lower case. */
function configId(prefix) {
  return uniqueId(prefix).toLowerCase();
}

async function removeQuietly(reg, id) {
  try {
    await reg.removeConfiguration(id);
  } catch (_) {
    // already gone
  }
}

/** Polls getConfiguration until check(config) holds. */
async function waitForConfiguration(reg, id, check, what) {
  let last;
  await hub.pollUntil(async () => {
    const { responseBody } = await withTimeout(reg.getConfiguration(id), OP_TIMEOUT_MS, 'getConfiguration');
    last = responseBody;
    return check(responseBody);
  }, 30000, what);
  return last;
}

for (const entity of ['device', 'module']) {
  test(`${entity} configuration: add, get, list, update with etag, force update, remove`, T, async () => {
    const reg = hub.registry();
    const id = configId(`cfg-${entity}`);
    const config = {
      id,
      content: { [`${entity}Content`]: { 'properties.desired': { prop1: 'foo' } } },
      targetCondition: '',
      priority: 20,
    };
    try {
      await withTimeout(reg.addConfiguration(config), OP_TIMEOUT_MS, 'addConfiguration');

      const { responseBody: found } = await withTimeout(reg.getConfiguration(id), OP_TIMEOUT_MS, 'getConfiguration');
      assert.equal(found.id, id);
      assert.deepEqual(found.content, config.content, 'content comes back exactly as given');
      assert.equal(found.schemaVersion, '1.0');
      assert.equal(found.priority, 20);
      assert.equal(typeof found.etag, 'string');
      assert.ok(found.createdTimeUtc, 'createdTimeUtc is set');
      assert.deepEqual(found.systemMetrics.results, { targetedCount: 0, appliedCount: 0 });

      const { responseBody: all } = await withTimeout(reg.getConfigurations(), OP_TIMEOUT_MS, 'getConfigurations');
      assert.ok(all.some((c) => c.id === id && JSON.stringify(c.content) === JSON.stringify(config.content)), 'listed');

      // Update with the etag from get.
      found.priority = 99;
      const { responseBody: updated } = await withTimeout(reg.updateConfiguration(found), OP_TIMEOUT_MS, 'updateConfiguration');
      assert.equal(updated.priority, 99);
      assert.notEqual(updated.etag, found.etag, 'the etag changes on update');

      // The old etag is stale now: 412 PreconditionFailed.
      const stale = await rejectionOf(reg.updateConfiguration(found), 'update with a stale etag');
      assert.equal(hub.hubErrorOf(stale).status, 412);
      assert.equal(hub.hubErrorOf(stale).errorCode, 'PreconditionFailed');

      // A forced update sends If-Match: *.
      config.priority = 7;
      await withTimeout(reg.updateConfiguration(config, true), OP_TIMEOUT_MS, 'forced updateConfiguration');
      const { responseBody: forced } = await withTimeout(reg.getConfiguration(id), OP_TIMEOUT_MS, 'getConfiguration 2');
      assert.equal(forced.priority, 7);

      // The content cannot change.
      forced.content = { [`${entity}Content`]: { 'properties.desired.other': 1 } };
      const immutable = await rejectionOf(reg.updateConfiguration(forced), 'update of the content');
      assert.equal(hub.hubErrorOf(immutable).errorCode, 'CannotModifyImmutableConfigurationContent');

      await withTimeout(reg.removeConfiguration(id), OP_TIMEOUT_MS, 'removeConfiguration');
      const gone = await rejectionOf(reg.getConfiguration(id), 'getConfiguration after remove');
      assert.equal(hub.hubErrorOf(gone).status, 404);
      assert.equal(hub.hubErrorOf(gone).errorCode, 'ConfigurationNotFound');
    } finally {
      await removeQuietly(reg, id);
    }
  });
}

test('a configuration reaches its targeted device, counts it, and leaves when removed', T, async () => {
  const reg = hub.registry();
  const deviceId = uniqueId('cfg-target');
  const id = configId('cfg-fw');
  let client;
  try {
    const dev = await hub.createDevice(reg, deviceId);
    await withTimeout(reg.updateTwin(deviceId, { tags: { rollout: id } }, '*'), OP_TIMEOUT_MS, 'tag the device');
    client = await hub.openClient(hub.deviceConnectionString(deviceId, dev.authentication.symmetricKey.primaryKey));
    const twin = await withTimeout(client.getTwin(), OP_TIMEOUT_MS, 'getTwin');
    await hub.desiredUpdatesEnabled(twin);
    const arrived = waitForEvent(twin, 'properties.desired', (d) => d.firmware && d.firmware.version === '3.1', 30000,
      'the configuration content on the device');

    await withTimeout(reg.addConfiguration({
      id,
      labels: { purpose: 'sdk-e2e' },
      content: { deviceContent: { 'properties.desired.firmware': { version: '3.1' } } },
      targetCondition: `tags.rollout='${id}'`,
      priority: 10,
      metrics: { queries: { reportedV31: `SELECT deviceId FROM devices WHERE properties.reported.firmware = '3.1' AND tags.rollout = '${id}'` } },
    }), OP_TIMEOUT_MS, 'addConfiguration');
    await arrived;

    // The device reports the new firmware; the custom metric counts it.
    await hub.updateReported(twin, { firmware: '3.1' });
    const cfg = await waitForConfiguration(reg, id,
      (c) => c.systemMetrics.results.appliedCount === 1 && c.metrics.results.reportedV31 === 1, 'applied and reported');
    assert.equal(cfg.systemMetrics.results.targetedCount, 1);
    assert.match(cfg.systemMetrics.queries.targetedCount, /tags\.rollout='/);

    // Removing the configuration takes its content off the twin.
    const removed = waitForEvent(twin, 'properties.desired', (d) => d.firmware === null,
      30000, 'the content removal on the device');
    await withTimeout(reg.removeConfiguration(id), OP_TIMEOUT_MS, 'removeConfiguration');
    await removed;
    const { responseBody: after } = await withTimeout(reg.getTwin(deviceId), OP_TIMEOUT_MS, 'getTwin after remove');
    assert.equal(after.properties.desired.firmware, undefined);
  } finally {
    await hub.closeQuietly(client);
    await removeQuietly(reg, id);
    await hub.deleteQuietly(reg, deviceId);
  }
});

test('applyConfigurationContentOnDevice writes module twins of the device at once', T, async () => {
  const reg = hub.registry();
  const deviceId = uniqueId('cfg-edge');
  try {
    await hub.createDevice(reg, deviceId);
    await withTimeout(reg.addModule({ deviceId, moduleId: 'filter' }), OP_TIMEOUT_MS, 'addModule');
    await withTimeout(reg.applyConfigurationContentOnDevice(deviceId, {
      modulesContent: { filter: { 'properties.desired': { threshold: 42 } } },
    }), OP_TIMEOUT_MS, 'applyConfigurationContentOnDevice');
    const { responseBody: mt } = await withTimeout(reg.getModuleTwin(deviceId, 'filter'), OP_TIMEOUT_MS, 'getModuleTwin');
    assert.equal(mt.properties.desired.threshold, 42);
  } finally {
    await hub.deleteQuietly(reg, deviceId);
  }
});
