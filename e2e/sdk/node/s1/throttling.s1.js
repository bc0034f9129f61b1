'use strict';
// The Node SDKs against an S1 hub (run.sh's s1 suite: --sku S1
// --fake-clock). The tier's budgets refill only when a test moves the hub's
// clock (POST /_emulator/clock), so the counts are exact and no test waits
// for the time it checks. Each test starts by refilling every budget.
//
// What the SDKs do with 429 (their sources): azure-iothub's Registry has no
// retry policy at all (RestApiClient turns 429 into a ThrottlingError and
// hands it to the caller), so the application backs off; its Client retries
// ThrottlingError (invokeDeviceMethod, send, open) with
// ExponentialBackOffWithJitter's throttled back-off. The device client
// retries a refused connection (CONNACK 3, ServiceUnavailableError) with its
// default policy, and a shaped send simply takes longer (one connection's
// sends are handled in order, so a single device never fills the hub's
// shaping backlog).
const { test } = require('node:test');
const { Message } = require('azure-iot-device');
const { NoRetry, ExponentialBackOffWithJitter } = require('azure-iot-common');
const hub = require('../lib/hub');

const { assert, uniqueId, withTimeout, pollUntil, emulatorApi, hubErrorOf } = hub;
const T = { timeout: 110000 };
const enc = encodeURIComponent;

const advance = (seconds) => emulatorApi('POST', '/_emulator/clock', { advanceSeconds: seconds });
// A minute refills every budget (the per-minute ones are the slowest).
const refill = () => advance(60);
const stored = async (id) => (await emulatorApi('GET', `/_emulator/messages?deviceId=${enc(id)}`)) || [];

test('the s1 emulator runs on a fake clock', async () => {
  const c = await emulatorApi('GET', '/_emulator/clock');
  assert.equal(c.fake, true, 'start the emulator with --fake-clock');
});

test('registry: a loop of calls gets 429 ThrottlingException in the hub body; the app backs off and recovers', T, async () => {
  await refill();
  const reg = hub.registry();
  const id = uniqueId('s1reg');
  await hub.createDevice(reg, id); // one of S1's 100 per minute
  try {
    let passed = 1;
    let err;
    for (let i = 0; i < 150 && !err; i++) {
      try {
        await withTimeout(reg.get(id), 15000, `get ${i}`);
        passed++;
      } catch (e) {
        err = e;
      }
    }
    assert.equal(passed, 100, 'S1 allows 100 registry operations a minute');
    assert.ok(err instanceof hub.serviceErrors.ThrottlingError, `a ThrottlingError, got ${err && err.name}: ${err && err.message}`);
    assert.equal(err.response.statusCode, 429);
    assert.equal(err.response.headers['iothub-errorcode'], 'ThrottlingException');
    const body = hubErrorOf(err);
    assert.equal(body.errorCode, 'ThrottlingException', `the hub's body: ${err.responseBody}`);
    assert.match(JSON.parse(err.responseBody).ExceptionMessage, /Tracking ID:/);
    // The Registry does not retry: the next call fails the same way...
    await assert.rejects(withTimeout(reg.get(id), 15000, 'get while throttled'), hub.serviceErrors.ThrottlingError);
    // ...until the budget refills on the hub's clock (1.67 a second).
    await advance(1);
    const { responseBody } = await withTimeout(reg.get(id), 15000, 'get after backing off');
    assert.equal(responseBody.deviceId, id);
  } finally {
    await refill();
    await hub.deleteQuietly(reg, id);
  }
});

test('d2c over MQTT: 101 messages in a second are shaped, not refused: all arrive, the last when the budget allows', T, async () => {
  await refill();
  const reg = hub.registry();
  const id = uniqueId('s1d2c');
  let client;
  try {
    const dev = await hub.createDevice(reg, id);
    client = await hub.openClient(hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey));
    let acked = 0;
    const sends = [];
    for (let i = 0; i < 101; i++) {
      sends.push(client.sendEvent(new Message(`m${i}`)).then(() => { acked++; }));
    }
    await pollUntil(async () => (await stored(id)).length >= 100, 30000, 'the first 100 messages stored');
    // The hub's clock stands still: the 101st is held, neither stored nor
    // refused (and not acknowledged: the SDK's promise for it is pending).
    assert.equal((await stored(id)).length, 100);
    assert.ok(acked <= 100, `${acked} sends acknowledged`);
    await advance(1);
    await withTimeout(Promise.all(sends), 30000, 'the shaped send');
    const all = await stored(id);
    assert.equal(all.length, 101);
  } finally {
    await hub.closeQuietly(client);
    await hub.deleteQuietly(reg, id);
  }
});

test('new connections: past 100 a second the hub refuses CONNECT (CONNACK 3); the device client retries and opens once the budget refills', T, async () => {
  await refill();
  const reg = hub.registry();
  const id = uniqueId('s1conn');
  const clients = [];
  try {
    const dev = await hub.createDevice(reg, id);
    const cs = hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey);
    // S1's 100 new connections of the second (one device reconnecting
    // counts as much as many devices connecting).
    for (let i = 0; i < 100; i++) {
      const c = hub.DeviceClient.fromConnectionString(cs, hub.Mqtt);
      await withTimeout(c.open(), 15000, `connection ${i + 1}`);
      await withTimeout(c.close(), 15000, `close ${i + 1}`);
    }
    // Without retries the SDK shows the refusal: CONNACK 3, server unavailable.
    const probe = hub.DeviceClient.fromConnectionString(cs, hub.Mqtt);
    probe.setRetryPolicy(new NoRetry());
    clients.push(probe);
    const err = await hub.rejectionOf(probe.open(), 'the 101st connection');
    assert.match(`${err.name} ${err.message} ${err.transportError && err.transportError.message}`, /unavailable/i);
    // With its default policy the SDK retries (ServiceUnavailableError is
    // retryable). The policy is wrapped only to see the refusals it retries;
    // the decisions and delays are the SDK's own.
    const client = hub.DeviceClient.fromConnectionString(cs, hub.Mqtt);
    clients.push(client);
    const policy = new ExponentialBackOffWithJitter();
    const retried = [];
    client.setRetryPolicy({
      shouldRetry: (e) => { retried.push(e); return policy.shouldRetry(e); },
      nextRetryTimeout: (n, throttled) => policy.nextRetryTimeout(n, throttled),
    });
    let opened = false;
    const open = client.open().then(() => { opened = true; });
    open.catch(() => {});
    await pollUntil(async () => retried.length > 0, 30000, 'the SDK to meet a refused connection');
    assert.equal(opened, false);
    assert.ok(policy.shouldRetry(retried[0]), `the SDK retries ${retried[0].name}`);
    // The hub's clock refills the budget; the next retry gets through.
    await advance(1);
    await pollUntil(async () => opened, 60000, 'the device client opened after retrying');
    await open;
    await withTimeout(client.sendEvent(new Message('connected at last')), 15000, 'send after the retried open');
  } finally {
    for (const c of clients) await hub.closeQuietly(c);
    await refill();
    await hub.deleteQuietly(reg, id);
  }
});

test('direct methods: S1 meters 160 KB a second in 4 KB blocks; the service Client retries the 429 and gets through once the budget refills', T, async () => {
  await refill();
  const reg = hub.registry();
  const id = uniqueId('s1meth');
  let device;
  try {
    const dev = await hub.createDevice(reg, id);
    device = await hub.openClient(hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey));
    let calls = 0;
    device.onDeviceMethod('ping', (request, response) => {
      calls++;
      response.send(200, { pong: request.payload }, () => {});
    });
    await hub.methodsEnabled(device);
    // Without retries: 40 small calls (4 KB each to the meter) pass, the
    // 41st gets 429 ThrottlingException in the hub's body.
    const plain = hub.serviceClient();
    plain.setRetryPolicy(new NoRetry());
    for (let i = 0; i < 40; i++) {
      const { result } = await withTimeout(plain.invokeDeviceMethod(id, { methodName: 'ping', payload: i, responseTimeoutInSeconds: 10 }),
        15000, `call ${i + 1}`);
      assert.equal(result.status, 200);
    }
    const err = await hub.rejectionOf(plain.invokeDeviceMethod(id, { methodName: 'ping', payload: 41, responseTimeoutInSeconds: 10 }),
      'the 41st call of the second');
    assert.ok(err instanceof hub.serviceErrors.ThrottlingError, `a ThrottlingError, got ${err.name}: ${err.message}`);
    assert.equal(hubErrorOf(err).errorCode, 'ThrottlingException', `the hub's body: ${err.responseBody}`);
    assert.equal(calls, 40, 'the refused call never reached the device');
    // The Client's default policy (ExponentialBackOffWithJitter, which
    // retries ThrottlingError after its throttled back-off of about 10 s)
    // recovers once the hub's clock has refilled the budget. Wrapped only to
    // see the retry.
    const svc = hub.serviceClient();
    const policy = new ExponentialBackOffWithJitter();
    const retried = [];
    svc.setRetryPolicy({
      shouldRetry: (e) => { retried.push(e); return policy.shouldRetry(e); },
      nextRetryTimeout: (n, throttled) => policy.nextRetryTimeout(n, throttled),
    });
    const call = svc.invokeDeviceMethod(id, { methodName: 'ping', payload: 'retried', responseTimeoutInSeconds: 10 });
    call.catch(() => {});
    await pollUntil(async () => retried.length > 0, 30000, 'the Client to meet the 429');
    assert.ok(retried[0] instanceof hub.serviceErrors.ThrottlingError, `retried ${retried[0].name}`);
    await advance(1);
    const { result } = await withTimeout(call, 90000, 'the retried call');
    assert.deepEqual(result, { status: 200, payload: { pong: 'retried' } });
  } finally {
    await hub.closeQuietly(device);
    await refill();
    await hub.deleteQuietly(reg, id);
  }
});
