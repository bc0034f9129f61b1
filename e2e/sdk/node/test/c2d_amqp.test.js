'use strict';
// Cloud-to-device messages sent the way back ends send them: the service
// SDK's Client.send over AMQP (TLS on 5671) and AMQP over WebSockets (443,
// /$iothub/websocket, subprotocol AMQPWSB10), received by a device on MQTT,
// and the feedback receiver (/messages/serviceBound/feedback). Everything is
// the unmodified SDK; nothing goes through the emulator's own endpoints.
const { test } = require('node:test');
const { Message } = require('azure-iot-common');
const { Client: ServiceClient, Amqp, AmqpWs } = require('azure-iothub');
const hub = require('../lib/hub');

const { assert, uniqueId, withTimeout, waitForEvent, OP_TIMEOUT_MS, serviceErrors } = hub;
const T = { timeout: 60000 };

/** A service client on the given AMQP transport, opened. */
async function openService(transport) {
  const client = ServiceClient.fromConnectionString(hub.connectionString, transport);
  await withTimeout(client.open(), OP_TIMEOUT_MS, 'open the service client');
  return client;
}

async function closeService(client) {
  if (!client) return;
  try {
    await withTimeout(client.close(), 5000, 'close the service client');
  } catch (_) {
    // cleanup only
  }
}

/** The feedback receiver, through the SDK's callback form. */
function feedbackReceiver(client) {
  return withTimeout(new Promise((resolve, reject) => {
    client.getFeedbackReceiver((err, receiver) => (err ? reject(err) : resolve(receiver)));
  }), OP_TIMEOUT_MS, 'getFeedbackReceiver');
}

/** A device on MQTT, subscribed to its C2D topic. */
async function openDevice(reg, id) {
  const dev = await hub.createDevice(reg, id);
  const device = await hub.openClient(hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey));
  device.on('message', () => {});
  await hub.c2dEnabled(device);
  return device;
}

for (const { name, transport } of [{ name: 'Amqp', transport: Amqp }, { name: 'AmqpWs', transport: AmqpWs }]) {
  test(`Client.send over ${name} reaches an MQTT device, which completes it`, T, async () => {
    const reg = hub.registry();
    const id = uniqueId(`c2d-${name.toLowerCase()}`);
    let device;
    let service;
    try {
      device = await openDevice(reg, id);
      service = await openService(transport);

      const msg = new Message(JSON.stringify({ command: 'reboot', delay: 5 }));
      msg.messageId = uniqueId('mid');
      msg.correlationId = uniqueId('cid');
      msg.contentType = 'application/json';
      msg.contentEncoding = 'utf-8';
      msg.properties.add('level', 'high');
      msg.properties.add('prop 1', 'val/1&x=y');
      const got = waitForEvent(device, 'message', (m) => m.messageId === msg.messageId, OP_TIMEOUT_MS, `C2D sent over ${name}`);
      await withTimeout(service.send(id, msg), OP_TIMEOUT_MS, `send over ${name}`);

      const [received] = await got;
      assert.deepEqual(JSON.parse(received.data.toString()), { command: 'reboot', delay: 5 });
      assert.equal(received.messageId, msg.messageId);
      assert.equal(received.correlationId, msg.correlationId);
      assert.equal(received.contentType, 'application/json');
      assert.equal(received.contentEncoding, 'utf-8');
      assert.equal(received.to, `/devices/${id}/messages/devicebound`);
      assert.equal(received.properties.getValue('level'), 'high');
      assert.equal(received.properties.getValue('prop 1'), 'val/1&x=y');
      await withTimeout(device.complete(received), OP_TIMEOUT_MS, 'complete');
    } finally {
      await closeService(service);
      await hub.closeQuietly(device);
      await hub.deleteQuietly(reg, id);
    }
  });
}

test('getFeedbackReceiver gets the positive feedback of a completed message, and complete() settles it', T, async () => {
  const reg = hub.registry();
  const id = uniqueId('c2d-feedback');
  let device;
  let service;
  try {
    device = await openDevice(reg, id);
    service = await openService(Amqp);
    const receiver = await feedbackReceiver(service);
    const records = [];
    receiver.on('message', (m) => {
      for (const r of JSON.parse(m.data.toString())) records.push(r);
      receiver.complete(m, () => {});
    });

    const msg = new Message('ack me');
    msg.messageId = uniqueId('mid');
    msg.ack = 'positive';
    await withTimeout(service.send(id, msg), OP_TIMEOUT_MS, 'send with ack=positive');

    const deadline = Date.now() + OP_TIMEOUT_MS;
    while (!records.some((r) => r.originalMessageId === msg.messageId)) {
      assert.ok(Date.now() < deadline, `no feedback for ${msg.messageId}; got ${JSON.stringify(records)}`);
      await new Promise((r) => setTimeout(r, 100)); // poll the records the handler collects
    }
    const fb = records.find((r) => r.originalMessageId === msg.messageId);
    assert.equal(fb.statusCode, 'Success', JSON.stringify(fb));
    assert.equal(fb.deviceId, id);
    assert.ok(fb.deviceGenerationId, JSON.stringify(fb));
    assert.match(fb.enqueuedTimeUtc, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    assert.equal(typeof fb.description, 'string');
  } finally {
    await closeService(service);
    await hub.closeQuietly(device);
    await hub.deleteQuietly(reg, id);
  }
});

test('Client.send to an unknown device fails with DeviceNotFoundError', T, async () => {
  let service;
  try {
    service = await openService(Amqp);
    const err = await hub.rejectionOf(service.send(uniqueId('nobody'), new Message('lost')), 'send to an unknown device');
    assert.ok(err instanceof serviceErrors.DeviceNotFoundError, `${err.constructor.name}: ${err.message}`);
  } finally {
    await closeService(service);
  }
});

test('Client.send beyond 50 pending messages fails with DeviceMaximumQueueDepthExceededError', T, async () => {
  const reg = hub.registry();
  const id = uniqueId('c2d-full');
  let service;
  try {
    await hub.createDevice(reg, id); // never connects, so its queue fills
    service = await openService(Amqp);
    for (let i = 0; i < 50; i++) {
      await withTimeout(service.send(id, new Message(`m${i}`)), OP_TIMEOUT_MS, `send ${i}`);
    }
    const err = await hub.rejectionOf(service.send(id, new Message('one too many')), 'send the 51st message');
    assert.ok(err instanceof serviceErrors.DeviceMaximumQueueDepthExceededError, `${err.constructor.name}: ${err.message}`);
  } finally {
    await closeService(service);
    await hub.deleteQuietly(reg, id);
  }
});

test('getFileNotificationReceiver gets the notification of a device\'s uploadToBlob (Azurite)', T, async () => {
  const { Readable } = require('node:stream');
  const reg = hub.registry();
  const id = uniqueId('c2d-upload');
  let device;
  let service;
  try {
    const dev = await hub.createDevice(reg, id);
    device = await hub.openClient(hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey));
    service = await openService(Amqp);
    const receiver = await withTimeout(new Promise((resolve, reject) => {
      service.getFileNotificationReceiver((err, r) => (err ? reject(err) : resolve(r)));
    }), OP_TIMEOUT_MS, 'getFileNotificationReceiver');
    const notes = [];
    receiver.on('message', (m) => {
      notes.push(JSON.parse(m.data.toString()));
      receiver.complete(m, () => {});
    });

    const content = Buffer.from(`archive of ${id}\n`.repeat(10));
    await withTimeout(device.uploadToBlob('logs/a.log', Readable.from([content]), content.length), 60000, 'uploadToBlob');

    const deadline = Date.now() + OP_TIMEOUT_MS;
    while (!notes.some((n) => n.deviceId === id)) {
      assert.ok(Date.now() < deadline, `no file notification for ${id}; got ${JSON.stringify(notes)}`);
      await new Promise((r) => setTimeout(r, 100)); // poll what the handler collects
    }
    const note = notes.find((n) => n.deviceId === id);
    assert.equal(note.blobName, `${id}/logs/a.log`);
    assert.equal(note.blobSizeInBytes, content.length);
    assert.match(note.blobUri, new RegExp(`/fileupload/${id}/logs/a\\.log$`));
    assert.match(note.enqueuedTimeUtc, /Z$/);
    assert.match(note.lastUpdatedTime, /Z$/);
  } finally {
    await closeService(service);
    await hub.closeQuietly(device);
    await hub.deleteQuietly(reg, id);
  }
});
