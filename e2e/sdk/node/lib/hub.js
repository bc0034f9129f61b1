'use strict';
// Shared helpers for the Node SDK end-to-end tests.
//
// The tests talk to a running emulator through the unmodified official SDKs.
// They read two variables (e2e/sdk/run.sh sets both):
//   IOTHUB_CONNECTION_STRING  the iothubowner connection string (HostName=localhost;...)
//   IOTHUB_CA_FILE            the emulator's CA certificate (PEM file)
// The service SDK trusts the CA only through NODE_EXTRA_CA_CERTS, which must
// be in the environment when Node starts; run.sh sets it too.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const https = require('node:https');

const { Registry, Client: ServiceClient, JobClient, SharedAccessSignature } = require('azure-iothub');
const { Client: DeviceClient, ModuleClient } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { Http } = require('azure-iot-device-http');
// The service SDK throws the error classes of its bundled common-core; the
// device SDK throws those of azure-iot-common. Tests check both with instanceof.
const serviceErrors = require('azure-iothub/dist/common-core/errors');
const deviceErrors = require('azure-iot-common').errors;

function requiredEnv(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: run the suite through e2e/sdk/run.sh, or export it yourself`);
  }
  return v;
}

const connectionString = requiredEnv('IOTHUB_CONNECTION_STRING');
const caFile = requiredEnv('IOTHUB_CA_FILE');
const caPem = fs.readFileSync(caFile, 'utf8');

function csField(cs, key) {
  for (const part of cs.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i) === key) return part.slice(i + 1);
  }
  return undefined;
}

const hostName = csField(connectionString, 'HostName');
const policyName = csField(connectionString, 'SharedAccessKeyName');
const policyKey = csField(connectionString, 'SharedAccessKey');

// Default bound for one SDK operation; each test also carries its own timeout.
const OP_TIMEOUT_MS = 15000;

/** A device or module id that no other test (or earlier run) uses. */
function uniqueId(prefix) {
  return `${prefix}-${Date.now().toString(36)}-${crypto.randomBytes(4).toString('hex')}`;
}

/** Rejects if promise has not settled within ms. */
function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves with the first event (args array) that satisfies predicate. */
function waitForEvent(emitter, event, predicate, ms, what) {
  let handler;
  const p = new Promise((resolve) => {
    handler = (...args) => {
      if (predicate(...args)) resolve(args);
    };
    emitter.on(event, handler);
  });
  return withTimeout(p, ms, what || `event ${event}`).finally(() => emitter.removeListener(event, handler));
}

/**
 * Runs an async call and returns the error it rejects with; fails if it
 * resolves instead.
 */
async function rejectionOf(promise, what) {
  try {
    await withTimeout(promise, OP_TIMEOUT_MS, what);
  } catch (err) {
    return err;
  }
  assert.fail(`${what}: expected an error, but the call succeeded`);
}

function registry() {
  return Registry.fromConnectionString(connectionString);
}

function serviceClient() {
  const client = ServiceClient.fromConnectionString(connectionString);
  return client;
}

function jobClient() {
  return JobClient.fromConnectionString(connectionString);
}

/** Registers a device with hub-generated SAS keys and returns its description. */
async function createDevice(reg, deviceId) {
  const { responseBody } = await withTimeout(reg.create({ deviceId }), OP_TIMEOUT_MS, `create ${deviceId}`);
  assert.equal(responseBody.deviceId, deviceId);
  const key = responseBody.authentication && responseBody.authentication.symmetricKey &&
    responseBody.authentication.symmetricKey.primaryKey;
  assert.ok(key, `the hub generated no primary key for ${deviceId}: ${JSON.stringify(responseBody)}`);
  return responseBody;
}

/** Deletes a device, ignoring errors (cleanup only). */
async function deleteQuietly(reg, deviceId) {
  try {
    await withTimeout(reg.delete(deviceId), OP_TIMEOUT_MS, `delete ${deviceId}`);
  } catch (_) {
    // the test's own assertions matter, not the cleanup
  }
}

function deviceConnectionString(deviceId, key, moduleId) {
  let cs = `HostName=${hostName};DeviceId=${deviceId}`;
  if (moduleId) cs += `;ModuleId=${moduleId}`;
  return `${cs};SharedAccessKey=${key}`;
}

/**
 * Opens a device (or module) client that trusts the emulator's CA through
 * setOptions({ca}), as the SDK documents for a private CA.
 *
 * azure-iot-device-http 1.14.4's Http.setOptions calls back only when the
 * options also hold receiver options (http.receivePolicy, interval, ...);
 * with {ca} alone the promise never settles. So Http clients also get the
 * default receive policy (poll once a second, drain the queue).
 */
async function openClient(cs, { transport = Mqtt, module = false } = {}) {
  const Ctor = module ? ModuleClient : DeviceClient;
  const client = Ctor.fromConnectionString(cs, transport);
  const options = { ca: caPem };
  if (transport === Http) options.http = { receivePolicy: { interval: 1, drain: true } };
  await withTimeout(client.setOptions(options), OP_TIMEOUT_MS, 'setOptions');
  await withTimeout(client.open(), OP_TIMEOUT_MS, 'open');
  return client;
}

async function closeQuietly(client) {
  if (!client) return;
  try {
    await withTimeout(client.close(), 5000, 'close');
  } catch (_) {
    // cleanup only
  }
}

/**
 * Waits until the device's SUBSCRIBE to $iothub/methods/POST/# has been
 * acknowledged. onDeviceMethod() starts that subscription but offers no way to
 * await it; this is the same internal call it makes, idempotent once the topic
 * is subscribed. Without it a service call could reach the hub before the
 * device listens.
 */
function methodsEnabled(client) {
  return withTimeout(new Promise((resolve, reject) => {
    client._enableMethods((err) => (err ? reject(err) : resolve()));
  }), OP_TIMEOUT_MS, 'enable methods');
}

/** The Twin's own, public, enableTwinDesiredPropertiesUpdates, awaited. */
function desiredUpdatesEnabled(twin) {
  return withTimeout(new Promise((resolve, reject) => {
    twin.enableTwinDesiredPropertiesUpdates((err) => (err ? reject(err) : resolve()));
  }), OP_TIMEOUT_MS, 'enable desired property updates');
}

/** properties.reported.update is callback-only in this SDK version. */
function updateReported(twin, patch) {
  return withTimeout(new Promise((resolve, reject) => {
    twin.properties.reported.update(patch, (err) => (err ? reject(err) : resolve()));
  }), OP_TIMEOUT_MS, 'update reported properties');
}

/**
 * One raw HTTPS request to the hub's REST API with an iothubowner token, to
 * learn whether a route exists at all. Returns { status, errorCode, body }.
 */
function rawRequest(method, path, body, { apiVersion = true } = {}) {
  const sas = SharedAccessSignature.create(hostName, policyName, policyKey,
    Math.floor(Date.now() / 1000) + 3600).toString();
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const sep = path.includes('?') ? '&' : '?';
  return withTimeout(new Promise((resolve, reject) => {
    const req = https.request({
      host: hostName,
      port: 443,
      method,
      path: apiVersion ? `${path}${sep}api-version=2021-04-12` : path,
      ca: caPem,
      headers: Object.assign({ Authorization: sas },
        payload === undefined ? {} : { 'Content-Type': 'application/json; charset=utf-8' }),
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, errorCode: res.headers['iothub-errorcode'], body: text }));
    });
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  }), OP_TIMEOUT_MS, `${method} ${path}`);
}

/**
 * A call to the emulator's own API under /_emulator (same SAS, no
 * api-version): the JSON answer, or a failed assertion naming the status.
 */
async function emulatorApi(method, path, body) {
  const r = await rawRequest(method, path, body, { apiVersion: false });
  assert.ok(r.status >= 200 && r.status < 300, `${method} ${path}: ${r.status} ${r.errorCode || ''} ${r.body}`);
  return r.body ? JSON.parse(r.body) : undefined;
}

/**
 * Polls fn (async) every intervalMs until it returns a truthy value, which
 * it returns; fails after ms with the last value it saw.
 */
async function pollUntil(fn, ms, what, intervalMs = 100) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() >= deadline) assert.fail(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs)); // poll interval
  }
}

/**
 * Waits until the device's C2D receiver is on: over MQTT the SUBSCRIBE to
 * devices/{id}/messages/devicebound/# acknowledged, over HTTP the poller
 * started. on('message') starts it but offers no way to await it; this is
 * the same internal call, idempotent once enabled.
 */
function c2dEnabled(client) {
  return withTimeout(new Promise((resolve, reject) => {
    client._enableC2D((err) => (err ? reject(err) : resolve()));
  }), OP_TIMEOUT_MS, 'enable C2D');
}

/** Parses the hub's error body, including the JSON-in-Message form used for methods. */
function hubErrorOf(err) {
  const out = { status: err.response && err.response.statusCode };
  try {
    const body = JSON.parse(err.responseBody);
    out.message = body.Message;
    try {
      const inner = JSON.parse(body.Message);
      out.errorCode = inner.errorCode;
      out.message = inner.message;
    } catch (_) {
      const m = /^ErrorCode:([^;]+);/.exec(body.Message || '');
      if (m) out.errorCode = m[1];
    }
  } catch (_) {
    // not JSON
  }
  return out;
}

module.exports = {
  assert,
  connectionString,
  caFile,
  caPem,
  hostName,
  OP_TIMEOUT_MS,
  Mqtt,
  MqttWs,
  Http,
  DeviceClient,
  ModuleClient,
  serviceErrors,
  deviceErrors,
  uniqueId,
  withTimeout,
  waitForEvent,
  rejectionOf,
  registry,
  serviceClient,
  jobClient,
  createDevice,
  deleteQuietly,
  deviceConnectionString,
  openClient,
  closeQuietly,
  methodsEnabled,
  desiredUpdatesEnabled,
  updateReported,
  rawRequest,
  emulatorApi,
  pollUntil,
  c2dEnabled,
  hubErrorOf,
};
