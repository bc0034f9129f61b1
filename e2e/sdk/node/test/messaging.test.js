'use strict';
// Telemetry and cloud-to-device messages with the device SDK's own
// transports: Mqtt (8883), MqttWs (wss on 443) and Http (443).
//
// The hub hands telemetry to back ends over its Event Hub-compatible AMQP
// endpoint and the service SDK sends C2D over AMQP; the emulator has neither
// yet, so the tests read telemetry at GET /_emulator/messages and send C2D
// through POST /_emulator/devices/{id}/messages/devicebound, both emulator
// only. Everything on the device side is the unmodified SDK.
const { test } = require('node:test');
const { Message } = require('azure-iot-device');
const hub = require('../lib/hub');

const { assert, uniqueId, withTimeout, waitForEvent, pollUntil, emulatorApi, OP_TIMEOUT_MS } = hub;
const T = { timeout: 60000 };
const POLL_MS = 10000;

const enc = encodeURIComponent;

/** Telemetry of one device, oldest first, once there are at least n messages. */
function messagesOf(deviceId, n) {
  return pollUntil(async () => {
    const msgs = await emulatorApi('GET', `/_emulator/messages?deviceId=${enc(deviceId)}`);
    return msgs.length >= n && msgs;
  }, POLL_MS, `${n} message(s) from ${deviceId} in /_emulator/messages`);
}

/** The device's C2D queue (emulator API). */
function queueOf(deviceId) {
  return emulatorApi('GET', `/_emulator/devices/${enc(deviceId)}/messages/devicebound`);
}

/** Waits until the device's C2D queue is empty; a completed message leaves it. */
function queueDrained(deviceId) {
  return pollUntil(async () => (await queueOf(deviceId)).length === 0, POLL_MS, `the C2D queue of ${deviceId} to be empty`);
}

/** Waits for the feedback record of one C2D message. */
function feedbackFor(deviceId, messageId) {
  return pollUntil(async () => {
    const fb = await emulatorApi('GET', `/_emulator/feedback?deviceId=${enc(deviceId)}`);
    return fb.find((f) => f.originalMessageId === messageId);
  }, POLL_MS, `a feedback record for C2D message ${messageId}`);
}

const TRANSPORTS = [
  { name: 'Mqtt', transport: hub.Mqtt, wire: 'mqtt' },
  { name: 'MqttWs', transport: hub.MqttWs, wire: 'mqtt-ws' },
  { name: 'Http', transport: hub.Http, wire: 'https' },
];

for (const { name, transport, wire } of TRANSPORTS) {
  test(`sendEvent over ${name} lands in /_emulator/messages with its properties`, T, async () => {
    const reg = hub.registry();
    const id = uniqueId(`msg-${name.toLowerCase()}`);
    let client;
    try {
      const dev = await hub.createDevice(reg, id);
      client = await hub.openClient(hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey), { transport });

      const rich = new Message(JSON.stringify({ temp: 21.5, unit: 'C' }));
      rich.messageId = uniqueId('mid');
      rich.correlationId = uniqueId('cid');
      rich.contentType = 'application/json';
      rich.contentEncoding = 'utf-8';
      // Characters every encoding of the property bag must carry through.
      rich.properties.add('alert', 'hi there/&=%+');
      rich.properties.add('level', '3');
      await withTimeout(client.sendEvent(rich), OP_TIMEOUT_MS, `sendEvent over ${name}`);

      const binary = new Message(Buffer.from([0x00, 0xff, 0x10, 0x80]));
      await withTimeout(client.sendEvent(binary), OP_TIMEOUT_MS, `sendEvent (binary) over ${name}`);

      const [first, second] = await messagesOf(id, 2);
      const show = JSON.stringify(first);
      assert.equal(first.deviceId, id);
      assert.equal(first.transport, wire, show);
      assert.deepEqual(JSON.parse(first.body), { temp: 21.5, unit: 'C' });
      assert.equal(first.bodyEncoding, 'utf-8');
      assert.deepEqual(first.properties, { alert: 'hi there/&=%+', level: '3' }, show);
      const sys = first.systemProperties;
      assert.equal(sys['message-id'], rich.messageId, show);
      assert.equal(sys['correlation-id'], rich.correlationId, show);
      assert.equal(sys['content-type'], 'application/json', show);
      assert.equal(sys['content-encoding'], 'utf-8', show);
      assert.equal(sys['iothub-connection-device-id'], id, show);
      assert.equal(sys['iothub-message-source'], 'Telemetry', show);
      assert.equal(sys['iothub-connection-auth-generation-id'], dev.generationId, show);
      assert.ok(sys['iothub-enqueuedtime'], show);

      // A message without properties, in the order sent, its bytes intact.
      assert.ok(second.sequenceNumber > first.sequenceNumber);
      assert.equal(second.bodyEncoding, 'base64');
      assert.equal(second.body, Buffer.from([0x00, 0xff, 0x10, 0x80]).toString('base64'));
      assert.deepEqual(second.properties, {});
      assert.equal(second.systemProperties['message-id'], undefined, JSON.stringify(second));
      assert.equal(second.systemProperties['iothub-connection-device-id'], id);
    } finally {
      await hub.closeQuietly(client);
      await hub.deleteQuietly(reg, id);
    }
  });
}

/** Sends a C2D message through the emulator's endpoint; returns the queued message. */
async function sendC2D(deviceId, req) {
  const queued = await emulatorApi('POST', `/_emulator/devices/${enc(deviceId)}/messages/devicebound`, req);
  assert.equal(queued.deviceId, deviceId);
  if (req.messageId) assert.equal(queued.messageId, req.messageId);
  return queued;
}

test('C2D over Mqtt reaches on(\'message\') with its properties; the PUBACK completes it', T, async () => {
  const reg = hub.registry();
  const id = uniqueId('c2d-mqtt');
  let client;
  try {
    const dev = await hub.createDevice(reg, id);
    client = await hub.openClient(hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey));
    const received = [];
    client.on('message', (msg) => received.push(msg));
    await hub.c2dEnabled(client);

    const messageId = uniqueId('c2d');
    const correlationId = uniqueId('corr');
    const got = waitForEvent(client, 'message', (m) => m.messageId === messageId, OP_TIMEOUT_MS, 'C2D over Mqtt');
    await sendC2D(id, {
      body: '{"command":"reboot","delay":5}', messageId, correlationId, contentType: 'application/json',
      contentEncoding: 'utf-8', properties: { level: 'high', 'prop 1': 'val/1&x=y' }, ack: 'full',
    });
    const [msg] = await got;
    assert.deepEqual(JSON.parse(msg.data.toString()), { command: 'reboot', delay: 5 });
    assert.equal(msg.messageId, messageId);
    assert.equal(msg.correlationId, correlationId);
    assert.equal(msg.contentType, 'application/json');
    assert.equal(msg.contentEncoding, 'utf-8');
    assert.equal(msg.to, `/devices/${id}/messages/devicebound`);
    assert.equal(msg.properties.getValue('level'), 'high');
    assert.equal(msg.properties.getValue('prop 1'), 'val/1&x=y');

    // complete() is a no-op over MQTT (the SDK has already sent PUBACK).
    await withTimeout(client.complete(msg), OP_TIMEOUT_MS, 'complete over Mqtt');
    await queueDrained(id);
    const fb = await feedbackFor(id, messageId);
    assert.equal(fb.statusCode, 'Success', JSON.stringify(fb));
    assert.equal(fb.deviceId, id);
    assert.equal(received.filter((m) => m.messageId === messageId).length, 1, 'delivered once');
  } finally {
    await hub.closeQuietly(client);
    await hub.deleteQuietly(reg, id);
  }
});

test('C2D queued while the device is offline arrives when it subscribes over Mqtt', T, async () => {
  const reg = hub.registry();
  const id = uniqueId('c2d-offline');
  let client;
  try {
    const dev = await hub.createDevice(reg, id);
    const { messageId } = await sendC2D(id, { body: 'while you were away', properties: { n: '1' } });
    assert.ok(messageId, 'the emulator assigns a message id');
    assert.equal((await queueOf(id)).length, 1);

    client = await hub.openClient(hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey));
    const got = waitForEvent(client, 'message', (m) => m.messageId === messageId, OP_TIMEOUT_MS, 'queued C2D over Mqtt');
    client.on('message', () => {});
    const [msg] = await got;
    assert.equal(msg.data.toString(), 'while you were away');
    assert.equal(msg.properties.getValue('n'), '1');
    await queueDrained(id);
  } finally {
    await hub.closeQuietly(client);
    await hub.deleteQuietly(reg, id);
  }
});

test('C2D over Http: the SDK\'s poller receives it and complete() removes it, with Success feedback', T, async () => {
  const reg = hub.registry();
  const id = uniqueId('c2d-http');
  let client;
  try {
    const dev = await hub.createDevice(reg, id);
    client = await hub.openClient(hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey),
      { transport: hub.Http });
    const messageId = uniqueId('c2d');
    const correlationId = uniqueId('corr');
    await sendC2D(id, {
      body: '{"command":"open"}', messageId, correlationId, contentType: 'application/json',
      properties: { level: 'low', zone: 'b 2' }, ack: 'full',
    });

    // on('message') starts the Http receiver: GET …/messages/devicebound once a second.
    const got = waitForEvent(client, 'message', (m) => m.messageId === messageId, OP_TIMEOUT_MS, 'C2D over Http');
    client.on('message', () => {});
    const [msg] = await got;
    assert.deepEqual(JSON.parse(msg.data.toString()), { command: 'open' });
    assert.equal(msg.messageId, messageId);
    assert.equal(msg.correlationId, correlationId);
    assert.equal(msg.to, `/devices/${id}/messages/devicebound`);
    assert.ok(msg.lockToken, 'the ETag gives the lock token');
    // azure-iot-http-base keeps application properties under their header
    // names (iothub-app-*), for the real hub as well.
    assert.equal(msg.properties.getValue('iothub-app-level'), 'low');
    assert.equal(msg.properties.getValue('iothub-app-zone'), 'b 2');

    // Locked, not gone, until the device settles it.
    const [locked] = await queueOf(id);
    assert.equal(locked.messageId, messageId);
    assert.equal(locked.state, 'Invisible');

    await withTimeout(client.complete(msg), OP_TIMEOUT_MS, 'complete over Http');
    assert.deepEqual(await queueOf(id), []);
    const fb = await feedbackFor(id, messageId);
    assert.equal(fb.statusCode, 'Success', JSON.stringify(fb));
    assert.equal(fb.deviceId, id);
  } finally {
    await hub.closeQuietly(client);
    await hub.deleteQuietly(reg, id);
  }
});

test('C2D over Http: reject() removes the message with Rejected feedback', T, async () => {
  const reg = hub.registry();
  const id = uniqueId('c2d-http-rej');
  let client;
  try {
    const dev = await hub.createDevice(reg, id);
    client = await hub.openClient(hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey),
      { transport: hub.Http });
    const messageId = uniqueId('c2d');
    await sendC2D(id, { body: 'unwanted', messageId, ack: 'negative' });
    const got = waitForEvent(client, 'message', (m) => m.messageId === messageId, OP_TIMEOUT_MS, 'C2D over Http');
    client.on('message', () => {});
    const [msg] = await got;
    await withTimeout(client.reject(msg), OP_TIMEOUT_MS, 'reject over Http');
    assert.deepEqual(await queueOf(id), []);
    const fb = await feedbackFor(id, messageId);
    assert.equal(fb.statusCode, 'Rejected', JSON.stringify(fb));
  } finally {
    await hub.closeQuietly(client);
    await hub.deleteQuietly(reg, id);
  }
});
