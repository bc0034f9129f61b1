'use strict';
// Device Provisioning Service with the official provisioning SDKs: the
// service SDK (azure-iot-provisioning-service) creates enrollments, the device
// SDK (azure-iot-provisioning-device with its -mqtt and -http transports and
// azure-iot-security-symmetric-key) registers, and the device then connects
// to the hub with what it was assigned and reads its initial twin. The
// emulator serves DPS on the hub's own ports; the CA is trusted through
// NODE_EXTRA_CA_CERTS (run.sh).
const { test } = require('node:test');
const crypto = require('node:crypto');
const hub = require('../lib/hub');

const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt: ProvMqtt } = require('azure-iot-provisioning-device-mqtt');
const { Http: ProvHttp } = require('azure-iot-provisioning-device-http');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');

const { assert, uniqueId, withTimeout, rejectionOf, OP_TIMEOUT_MS } = hub;
const T = { timeout: 90000 };

let info;
/** The emulator's DPS settings (GET /_emulator/dps). */
async function dps() {
  if (!info) info = await hub.emulatorApi('GET', '/_emulator/dps');
  return info;
}

async function serviceClient() {
  return ProvisioningServiceClient.fromConnectionString((await dps()).serviceConnectionString);
}

/** Registers with the device SDK; resolves to the registration result. */
async function register(regId, key, Transport, { scope } = {}) {
  const { idScope } = await dps();
  const security = new SymmetricKeySecurityClient(regId, key);
  const client = ProvisioningDeviceClient.create(hub.hostName, scope || idScope, new Transport(), security);
  return withTimeout(client.register(), 30000, `register ${regId}`);
}

/** Opens the hub device client with the assigned credentials and reads its twin. */
async function twinAfterProvisioning(result, key) {
  assert.equal(result.assignedHub, hub.hostName);
  const client = await hub.openClient(`HostName=${result.assignedHub};DeviceId=${result.deviceId};SharedAccessKey=${key}`);
  try {
    return await withTimeout(client.getTwin(), OP_TIMEOUT_MS, 'getTwin');
  } finally {
    await hub.closeQuietly(client);
  }
}

function groupKey(groupPrimaryKey, regId) {
  return crypto.createHmac('sha256', Buffer.from(groupPrimaryKey, 'base64')).update(regId, 'utf8').digest('base64');
}

for (const [name, Transport] of [['mqtt', ProvMqtt], ['http', ProvHttp]]) {
  test(`individual symmetric-key enrollment over ${name}: assigned, then on the hub with its initial twin`, T, async () => {
    const svc = await serviceClient();
    const regId = uniqueId(`prov-ind-${name}`);
    const deviceId = `${regId}-dev`;
    const { responseBody: enrollment } = await svc.createOrUpdateIndividualEnrollment({
      registrationId: regId,
      deviceId,
      attestation: { type: 'symmetricKey', symmetricKey: {} },
      initialTwin: { tags: { site: 'lab' }, properties: { desired: { interval: 7 } } },
    });
    const key = enrollment.attestation.symmetricKey.primaryKey;
    assert.ok(key, 'the service generated a key');
    assert.equal(enrollment.provisioningStatus, 'enabled');
    try {
      const result = await register(regId, key, Transport);
      assert.equal(result.deviceId, deviceId);
      assert.equal(result.status, 'assigned');
      assert.equal(result.substatus, 'initialAssignment');

      const twin = await twinAfterProvisioning(result, key);
      assert.equal(twin.properties.desired.interval, 7);
      const { responseBody: hubTwin } = await hub.registry().getTwin(deviceId);
      assert.equal(hubTwin.tags.site, 'lab');

      const { responseBody: state } = await svc.getDeviceRegistrationState(regId);
      assert.equal(state.status, 'assigned');
      assert.equal(state.deviceId, deviceId);
    } finally {
      await svc.deleteIndividualEnrollment(regId).catch(() => {});
      await hub.deleteQuietly(hub.registry(), deviceId);
    }
  });
}

test('enrollment group with a symmetric key: a device with the derived key provisions itself', T, async () => {
  const svc = await serviceClient();
  const groupId = uniqueId('prov-group');
  const { responseBody: group } = await svc.createOrUpdateEnrollmentGroup({
    enrollmentGroupId: groupId,
    attestation: { type: 'symmetricKey', symmetricKey: {} },
    initialTwin: { properties: { desired: { firmware: '2.0' } } },
  });
  const regId = uniqueId('prov-member');
  const key = groupKey(group.attestation.symmetricKey.primaryKey, regId);
  try {
    const result = await register(regId, key, ProvMqtt);
    assert.equal(result.deviceId, regId, 'a group device is named by its registration id');
    const twin = await twinAfterProvisioning(result, key);
    assert.equal(twin.properties.desired.firmware, '2.0');

    // The group's registrations are listed by the service.
    const query = svc.createEnrollmentGroupDeviceRegistrationStateQuery({ query: '*' }, groupId);
    const { responseBody: page } = await query.next();
    assert.ok(page.some((r) => r.registrationId === regId), JSON.stringify(page));
  } finally {
    await svc.deleteEnrollmentGroup(groupId).catch(() => {});
    await hub.deleteQuietly(hub.registry(), regId);
  }
});

test('etags, bulk operations and the enrollment query', T, async () => {
  const svc = await serviceClient();
  const a = uniqueId('prov-bulk-a');
  const b = uniqueId('prov-bulk-b');
  // runBulkEnrollmentOperation's promise never settles in this SDK
  // version (it answers only a callback), so it is called with one.
  const bulkOp = (op) => new Promise((resolve, reject) => {
    svc.runBulkEnrollmentOperation(op, (err, result) => (err ? reject(err) : resolve(result)));
  });
  const mk = (registrationId) => ({ registrationId, attestation: { type: 'symmetricKey', symmetricKey: {} } });
  try {
    const bulk = await bulkOp({ mode: 'create', enrollments: [mk(a), mk(b)] });
    assert.equal(bulk.isSuccessful, true, JSON.stringify(bulk));
    const again = await bulkOp({ mode: 'create', enrollments: [mk(a)] });
    assert.equal(again.isSuccessful, false);
    assert.equal(again.errors[0].registrationId, a);

    const { responseBody: got } = await svc.getIndividualEnrollment(a);
    // A stale etag is refused; the current one is accepted.
    const stale = Object.assign({}, got, { etag: Buffer.from('"stale"').toString('base64'), provisioningStatus: 'disabled' });
    const err = await rejectionOf(svc.createOrUpdateIndividualEnrollment(stale));
    assert.equal(err.response && err.response.statusCode, 412, String(err));
    const { responseBody: updated } = await svc.createOrUpdateIndividualEnrollment(Object.assign({}, got, { provisioningStatus: 'disabled' }));
    assert.equal(updated.provisioningStatus, 'disabled');
    assert.notEqual(updated.etag, got.etag);

    const query = svc.createIndividualEnrollmentQuery({ query: '*' }, 1);
    const seen = new Set();
    for (let i = 0; i < 1000; i++) {
      // next() without an argument drops the continuation token; pass it.
      const { responseBody: page } = await query.next(query.continuationToken);
      page.forEach((e) => seen.add(e.registrationId));
      if (!query.hasMoreResults) break;
    }
    assert.ok(seen.has(a) && seen.has(b), 'the query pages through every enrollment: ' + JSON.stringify([...seen]));
  } finally {
    await svc.deleteIndividualEnrollment(a).catch(() => {});
    await svc.deleteIndividualEnrollment(b).catch(() => {});
  }
});

test('a wrong key, a disabled enrollment and an unknown scope are refused', T, async () => {
  const svc = await serviceClient();
  const regId = uniqueId('prov-refused');
  const offId = uniqueId('prov-off');
  const { responseBody: enrollment } = await svc.createOrUpdateIndividualEnrollment({
    registrationId: regId, attestation: { type: 'symmetricKey', symmetricKey: {} },
  });
  const { responseBody: off } = await svc.createOrUpdateIndividualEnrollment({
    registrationId: offId, provisioningStatus: 'disabled', attestation: { type: 'symmetricKey', symmetricKey: {} },
  });
  const wrongKey = off.attestation.symmetricKey.primaryKey;
  try {
    // Over HTTPS DPS answers 401; the SDK turns it into UnauthorizedError
    // (of the azure-iot-common copy bundled with the provisioning packages,
    // so it is checked by name).
    const httpErr = await rejectionOf(register(regId, wrongKey, ProvHttp));
    assert.equal(httpErr.name, 'UnauthorizedError', String(httpErr));
    // Over MQTT DPS refuses the CONNECT.
    const mqttErr = await rejectionOf(register(regId, wrongKey, ProvMqtt));
    assert.ok(mqttErr, 'a wrong key over MQTT is refused');
    assert.match(String(mqttErr), /authori[sz]ed|Connection refused|Unauthorized/i);

    const scopeErr = await rejectionOf(register(regId, enrollment.attestation.symmetricKey.primaryKey, ProvHttp, { scope: '0ne99999999' }));
    assert.equal(scopeErr.name, 'UnauthorizedError', String(scopeErr));

    // A disabled enrollment ends the operation with the status "disabled",
    // which the SDK reports as an error; no device is created.
    const disabledErr = await rejectionOf(register(offId, wrongKey, ProvHttp));
    assert.match(String(disabledErr), /disabled/);
    const { responseBody: state } = await svc.getDeviceRegistrationState(offId);
    assert.equal(state.status, 'disabled');
    const missing = await rejectionOf(hub.registry().get(offId));
    assert.ok(missing, 'no device for a disabled enrollment');
  } finally {
    await svc.deleteIndividualEnrollment(regId).catch(() => {});
    await svc.deleteIndividualEnrollment(offId).catch(() => {});
  }
});

test('examples/provisioning: the device provisions itself, then serves the tutorial\'s lockDoor method', T, async () => {
  const path = require('node:path');
  const { spawn } = require('node:child_process');
  const svc = await serviceClient();
  const groupId = uniqueId('prov-example');
  const { responseBody: group } = await svc.createOrUpdateEnrollmentGroup({
    enrollmentGroupId: groupId, attestation: { type: 'symmetricKey', symmetricKey: {} },
  });
  const regId = uniqueId('prov-example-dev');
  const root = path.resolve(__dirname, '../../../..');
  // The example's dependencies are this suite's (same versions), found through NODE_PATH.
  const child = spawn(process.execPath, [path.join(root, 'examples/provisioning/provisionedDevice.js')], {
    env: Object.assign({}, process.env, {
      NODE_PATH: path.resolve(__dirname, '../node_modules'),
      PROVISIONING_HOST: hub.hostName,
      PROVISIONING_IDSCOPE: (await dps()).idScope,
      PROVISIONING_REGISTRATION_ID: regId,
      PROVISIONING_GROUP_KEY: group.attestation.symmetricKey.primaryKey,
      IOTHUB_CA_FILE: hub.caFile,
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c) => { output += c; });
  child.stderr.on('data', (c) => { output += c; });
  try {
    await hub.pollUntil(() => output.includes('waiting for commands') || child.exitCode !== null, 30000, 'the example device to start');
    assert.match(output, new RegExp(`Provisioned: registration ${regId} assigned to ${hub.hostName} as device ${regId}`), output);
    const { result } = await withTimeout(hub.serviceClient().invokeDeviceMethod(regId,
      { methodName: 'lockDoor', payload: { lockTime: '10m' }, responseTimeoutInSeconds: 10 }), OP_TIMEOUT_MS, 'lockDoor');
    assert.equal(result.status, 200);
    await hub.pollUntil(() => output.includes('Locking Door!'), 10000, 'the method output');
  } finally {
    child.kill('SIGINT');
    await svc.deleteEnrollmentGroup(groupId).catch(() => {});
    await hub.deleteQuietly(hub.registry(), regId);
  }
});
