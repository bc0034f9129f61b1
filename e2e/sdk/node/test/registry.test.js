'use strict';
// Identity registry through azure-iothub's Registry: devices, modules,
// statistics, bulk operations and the typed errors users catch.
const { test } = require('node:test');
const hub = require('../lib/hub');

const { assert, serviceErrors, uniqueId, withTimeout, rejectionOf, OP_TIMEOUT_MS } = hub;
const T = { timeout: 60000 };

test('device create, get, update, list and delete round-trip', T, async () => {
  const reg = hub.registry();
  const id = uniqueId('reg-crud');
  try {
    const created = await hub.createDevice(reg, id);
    assert.equal(created.status, 'enabled');
    assert.ok(created.etag, 'a created device carries an etag');
    const key = created.authentication.symmetricKey.primaryKey;
    assert.equal(Buffer.from(key, 'base64').length, 32, 'a generated key is 32 random bytes, base64');
    assert.notEqual(created.authentication.symmetricKey.secondaryKey, key);

    const { responseBody: got } = await withTimeout(reg.get(id), OP_TIMEOUT_MS, 'get');
    assert.equal(got.deviceId, id);
    assert.equal(got.authentication.symmetricKey.primaryKey, key);

    got.status = 'disabled';
    got.statusReason = 'maintenance window';
    const { responseBody: updated } = await withTimeout(reg.update(got), OP_TIMEOUT_MS, 'update');
    assert.equal(updated.status, 'disabled');
    assert.notEqual(updated.etag, created.etag, 'an update changes the etag');

    const { responseBody: again } = await withTimeout(reg.get(id), OP_TIMEOUT_MS, 'get after update');
    assert.equal(again.status, 'disabled');
    assert.equal(again.statusReason, 'maintenance window');
    assert.equal(again.authentication.symmetricKey.primaryKey, key, 'an update that resends the keys keeps them');

    const { responseBody: list } = await withTimeout(reg.list(), OP_TIMEOUT_MS, 'list');
    assert.ok(Array.isArray(list), 'list returns an array');
    const listed = list.find((d) => d.deviceId === id);
    assert.ok(listed, `list contains ${id}`);
    assert.equal(listed.status, 'disabled');

    await withTimeout(reg.delete(id), OP_TIMEOUT_MS, 'delete');
    const err = await rejectionOf(reg.get(id), 'get after delete');
    assert.ok(err instanceof serviceErrors.DeviceNotFoundError, `expected DeviceNotFoundError, got ${err.name}: ${err.message}`);
  } finally {
    await hub.deleteQuietly(reg, id);
  }
});

test('create with caller-chosen keys keeps them', T, async () => {
  const reg = hub.registry();
  const id = uniqueId('reg-keys');
  const primaryKey = Buffer.alloc(32, 7).toString('base64');
  const secondaryKey = Buffer.alloc(32, 9).toString('base64');
  try {
    const { responseBody } = await withTimeout(reg.create({
      deviceId: id,
      authentication: { symmetricKey: { primaryKey, secondaryKey } },
    }), OP_TIMEOUT_MS, 'create');
    assert.equal(responseBody.authentication.symmetricKey.primaryKey, primaryKey);
    assert.equal(responseBody.authentication.symmetricKey.secondaryKey, secondaryKey);
    // And the keys work: a device connects with the secondary one.
    const client = await hub.openClient(hub.deviceConnectionString(id, secondaryKey));
    await hub.closeQuietly(client);
  } finally {
    await hub.deleteQuietly(reg, id);
  }
});

test('creating an existing device fails with DeviceAlreadyExistsError', T, async () => {
  const reg = hub.registry();
  const id = uniqueId('reg-dup');
  try {
    await hub.createDevice(reg, id);
    const err = await rejectionOf(reg.create({ deviceId: id }), 'second create');
    assert.ok(err instanceof serviceErrors.DeviceAlreadyExistsError, `expected DeviceAlreadyExistsError, got ${err.name}: ${err.message}`);
    assert.equal(err.response.statusCode, 409);
  } finally {
    await hub.deleteQuietly(reg, id);
  }
});

test('deleting an unknown device fails with DeviceNotFoundError', T, async () => {
  const reg = hub.registry();
  const err = await rejectionOf(reg.delete(uniqueId('reg-nobody')), 'delete unknown');
  assert.ok(err instanceof serviceErrors.DeviceNotFoundError, `expected DeviceNotFoundError, got ${err.name}: ${err.message}`);
});

test('modules: addModule, getModule, getModulesOnDevice, stale etag, removeModule', T, async () => {
  const reg = hub.registry();
  const id = uniqueId('reg-mod');
  const moduleId = 'sensor-module';
  try {
    await hub.createDevice(reg, id);
    const { responseBody: added } = await withTimeout(reg.addModule({ deviceId: id, moduleId }), OP_TIMEOUT_MS, 'addModule');
    assert.equal(added.deviceId, id);
    assert.equal(added.moduleId, moduleId);
    const moduleKey = added.authentication.symmetricKey.primaryKey;
    assert.ok(moduleKey, 'the hub generated a module key');

    const { responseBody: got } = await withTimeout(reg.getModule(id, moduleId), OP_TIMEOUT_MS, 'getModule');
    assert.equal(got.moduleId, moduleId);
    assert.equal(got.authentication.symmetricKey.primaryKey, moduleKey);

    const { responseBody: mods } = await withTimeout(reg.getModulesOnDevice(id), OP_TIMEOUT_MS, 'getModulesOnDevice');
    assert.deepEqual(mods.map((m) => m.moduleId), [moduleId]);

    // An update that carries the current etag succeeds; replaying it with the
    // now stale etag fails with InvalidEtagError.
    const { responseBody: updated } = await withTimeout(reg.updateModule(Object.assign({}, got, { managedBy: 'e2e' }), false),
      OP_TIMEOUT_MS, 'updateModule');
    assert.equal(updated.managedBy, 'e2e');
    assert.notEqual(updated.etag, got.etag);
    const stale = await rejectionOf(reg.updateModule(Object.assign({}, got, { managedBy: 'stale' }), false), 'stale updateModule');
    assert.ok(stale instanceof serviceErrors.InvalidEtagError, `expected InvalidEtagError, got ${stale.name}: ${stale.message}`);

    // A module identity connects with its own key.
    const mc = await hub.openClient(hub.deviceConnectionString(id, moduleKey, moduleId), { module: true });
    await hub.closeQuietly(mc);

    await withTimeout(reg.removeModule(id, moduleId), OP_TIMEOUT_MS, 'removeModule');
    const gone = await rejectionOf(reg.getModule(id, moduleId), 'getModule after remove');
    assert.equal(gone.response && gone.response.statusCode, 404, `expected 404, got ${gone.message}`);
    assert.equal(hub.hubErrorOf(gone).errorCode, 'ModuleNotFound');
  } finally {
    await hub.deleteQuietly(reg, id);
  }
});

test('getRegistryStatistics counts enabled and disabled devices', T, async () => {
  // This file's tests run one after another and the runner runs one file at a
  // time (--test-concurrency=1), so the deltas below are exact.
  const reg = hub.registry();
  const on = uniqueId('reg-stat-on');
  const off = uniqueId('reg-stat-off');
  try {
    const { responseBody: before } = await withTimeout(reg.getRegistryStatistics(), OP_TIMEOUT_MS, 'stats before');
    for (const k of ['totalDeviceCount', 'enabledDeviceCount', 'disabledDeviceCount']) {
      assert.equal(typeof before[k], 'number', `${k} is a number in ${JSON.stringify(before)}`);
    }
    await hub.createDevice(reg, on);
    await withTimeout(reg.create({ deviceId: off, status: 'disabled' }), OP_TIMEOUT_MS, 'create disabled');
    const { responseBody: after } = await withTimeout(reg.getRegistryStatistics(), OP_TIMEOUT_MS, 'stats after');
    assert.equal(after.totalDeviceCount, before.totalDeviceCount + 2);
    assert.equal(after.enabledDeviceCount, before.enabledDeviceCount + 1);
    assert.equal(after.disabledDeviceCount, before.disabledDeviceCount + 1);
    assert.equal(after.totalDeviceCount, after.enabledDeviceCount + after.disabledDeviceCount);
  } finally {
    await hub.deleteQuietly(reg, on);
    await hub.deleteQuietly(reg, off);
  }
});

test('bulk addDevices, updateDevices, removeDevices', T, async (t) => {
  const reg = hub.registry();
  const ids = [uniqueId('reg-bulk'), uniqueId('reg-bulk'), uniqueId('reg-bulk')];
  try {
    const { responseBody: add } = await withTimeout(reg.addDevices(ids.map((deviceId) => ({ deviceId }))), OP_TIMEOUT_MS, 'addDevices');
    assert.equal(add.isSuccessful, true, JSON.stringify(add));
    for (const id of ids) {
      const { responseBody } = await withTimeout(reg.get(id), OP_TIMEOUT_MS, `get ${id}`);
      assert.equal(responseBody.status, 'enabled');
    }
    const { responseBody: upd } = await withTimeout(
      reg.updateDevices(ids.map((deviceId) => ({ deviceId, status: 'disabled' })), true), OP_TIMEOUT_MS, 'updateDevices');
    assert.equal(upd.isSuccessful, true, JSON.stringify(upd));
    for (const id of ids) {
      const { responseBody } = await withTimeout(reg.get(id), OP_TIMEOUT_MS, `get ${id}`);
      assert.equal(responseBody.status, 'disabled');
    }
    // Adding an existing id reports it per device instead of failing the batch.
    const dup = await withTimeout(reg.addDevices([{ deviceId: ids[0] }]), OP_TIMEOUT_MS, 'addDevices duplicate')
      .then((r) => r.responseBody, (e) => ({ thrown: e }));
    if (dup.thrown) {
      assert.ok(dup.thrown.response.statusCode >= 400);
    } else {
      assert.equal(dup.isSuccessful, false);
      assert.equal(dup.errors[0].deviceId, ids[0]);
    }
    const { responseBody: rm } = await withTimeout(reg.removeDevices(ids.map((deviceId) => ({ deviceId })), true), OP_TIMEOUT_MS, 'removeDevices');
    assert.equal(rm.isSuccessful, true, JSON.stringify(rm));
    for (const id of ids) {
      const err = await rejectionOf(reg.get(id), `get ${id} after removeDevices`);
      assert.ok(err instanceof serviceErrors.DeviceNotFoundError);
    }
  } finally {
    for (const id of ids) await hub.deleteQuietly(reg, id);
  }
});
