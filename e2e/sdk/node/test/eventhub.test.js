'use strict';
// The Event Hub-compatible endpoint read with the unmodified @azure/event-hubs
// EventHubConsumerClient, over TLS (5671, the CA from NODE_EXTRA_CA_CERTS) and
// over the development connection string (plain 5672,
// UseDevelopmentEmulator=true), with telemetry sent by an MQTT device.
// e2e/sdk/run.sh takes both connection strings from the emulator's banner.
const { test } = require('node:test');
const { EventHubConsumerClient, earliestEventPosition, latestEventPosition } = require('@azure/event-hubs');
const { Message } = require('azure-iot-device');
const hub = require('../lib/hub');

const { assert, uniqueId, withTimeout, OP_TIMEOUT_MS } = hub;
const T = { timeout: 60000 };

const CONNECTION_STRINGS = {
  tls: process.env.EVENTHUB_CONNECTION_STRING,
  development: process.env.EVENTHUB_DEV_CONNECTION_STRING,
};
for (const [name, cs] of Object.entries(CONNECTION_STRINGS)) {
  if (!cs) throw new Error(`the ${name} Event Hub connection string is not set: run the suite through e2e/sdk/run.sh`);
}

/** A device that sends n messages with properties, over MQTT. */
async function sendFrom(id, from, n) {
  const reg = hub.registry();
  let dev;
  try {
    dev = await hub.createDevice(reg, id);
  } catch (_) {
    dev = (await reg.get(id)).responseBody;
  }
  const client = await hub.openClient(hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey), { transport: hub.Mqtt });
  try {
    for (let i = from; i < from + n; i++) {
      const m = new Message(JSON.stringify({ id, i }));
      m.messageId = `${id}-${i}`;
      m.contentType = 'application/json';
      m.contentEncoding = 'utf-8';
      m.properties.add('seq', String(i));
      await withTimeout(client.sendEvent(m), OP_TIMEOUT_MS, `sendEvent ${i}`);
    }
  } finally {
    await hub.closeQuietly(client);
  }
}

/** Subscribes to every partition from startPosition and resolves with the first n events of device id. */
function collect(client, id, n, startPosition) {
  const events = [];
  let sub;
  const done = new Promise((resolve, reject) => {
    sub = client.subscribe({
      processEvents: async (batch) => {
        for (const e of batch) {
          if (e.systemProperties['iothub-connection-device-id'] === id) events.push(e);
        }
        if (events.length >= n) resolve(events.slice(0, n));
      },
      processError: async (err) => { if (err.name !== 'AbortError') reject(err); },
    }, { startPosition, maxBatchSize: 50, maxWaitTimeInSeconds: 1 });
  });
  return withTimeout(done, 30000, `${n} event(s) of ${id}`).finally(() => sub.close());
}

function bodyOf(e) {
  return Buffer.isBuffer(e.body) ? JSON.parse(e.body.toString('utf8')) : e.body;
}

for (const [name, cs] of Object.entries(CONNECTION_STRINGS)) {
  test(`EventHubConsumerClient over ${name}: properties, earliest and latest`, T, async () => {
    const id = uniqueId(`eh-${name}`);
    await sendFrom(id, 0, 2);
    const client = new EventHubConsumerClient('$Default', cs);
    try {
      const props = await client.getEventHubProperties();
      assert.equal(props.name, 'localhost');
      assert.deepEqual(props.partitionIds, ['0', '1', '2', '3']);
      assert.ok(props.createdOn instanceof Date);

      const earliest = await collect(client, id, 2, earliestEventPosition);
      earliest.forEach((e, i) => {
        const show = JSON.stringify(e);
        assert.deepEqual(bodyOf(e), { id, i }, show);
        assert.equal(e.properties.seq, String(i), show);
        assert.equal(e.messageId, `${id}-${i}`, show);
        assert.equal(e.contentType, 'application/json', show);
        assert.equal(e.systemProperties['iothub-connection-device-id'], id, show);
        assert.equal(e.systemProperties['iothub-message-source'], 'Telemetry', show);
        assert.ok(e.systemProperties['iothub-enqueuedtime'], show);
        assert.equal(String(e.offset), String(e.sequenceNumber), show);
      });
      assert.ok(earliest[1].sequenceNumber > earliest[0].sequenceNumber);

      // The partition the device's events are on says where they are.
      const ppAll = await Promise.all(props.partitionIds.map((p) => client.getPartitionProperties(p)));
      const pp = ppAll.find((p) => p.lastEnqueuedSequenceNumber === earliest[1].sequenceNumber);
      assert.ok(pp, JSON.stringify(ppAll));
      assert.equal(pp.isEmpty, false);
      assert.ok(pp.beginningSequenceNumber <= earliest[0].sequenceNumber);
      assert.ok(pp.lastEnqueuedOnUtc instanceof Date);

      // From latest: nothing sent before, and what is sent once the
      // receivers are attached. The device sends until one event arrives, as
      // the subscription attaches its links in the background.
      let got = false;
      const latest = collect(client, id, 1, latestEventPosition).finally(() => { got = true; });
      for (let i = 2; !got && i < 60; i++) {
        await sendFrom(id, i, 1);
        await Promise.race([latest.catch(() => {}), new Promise((r) => setTimeout(r, 500))]);
      }
      const [e] = await latest;
      assert.ok(Number(e.properties.seq) >= 2, JSON.stringify(e));
    } finally {
      await client.close();
    }
  });
}

// The official sample that turns an IoT Hub connection string into an Event
// Hubs one (event-hubs samples-dev/iothubConnectionString.ts), step by step:
// SASL PLAIN as "<policy>@sas.root.<hub>" with a SAS for
// "<host>/messages/events", a receiver on messages/events/$management, and
// the amqp:link:redirect that names the Event Hub-compatible address.
const crypto = require('node:crypto');
const { Connection, ReceiverEvents } = require('rhea-promise');

function sampleSasToken(resourceUri, signingKey, policyName, expiresInMins) {
  resourceUri = encodeURIComponent(resourceUri);
  const expiresInSeconds = Math.ceil(Date.now() / 1000 + expiresInMins * 60);
  const hmac = crypto.createHmac('sha256', Buffer.from(signingKey, 'base64'));
  hmac.update(resourceUri + '\n' + expiresInSeconds);
  return `SharedAccessSignature sr=${resourceUri}&sig=${encodeURIComponent(hmac.digest('base64'))}&se=${expiresInSeconds}&skn=${policyName}`;
}

async function convertIotHubToEventHubsConnectionString(connectionString) {
  const fields = Object.fromEntries(connectionString.split(';').map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]));
  const { HostName, SharedAccessKeyName, SharedAccessKey } = fields;
  const [iotHubName] = HostName.split('.');
  const token = sampleSasToken(`${HostName}/messages/events`, SharedAccessKey, SharedAccessKeyName, 5);
  const connection = new Connection({
    transport: 'tls', host: HostName, hostname: HostName, username: `${SharedAccessKeyName}@sas.root.${iotHubName}`,
    port: 5671, reconnect: false, password: token, ca: hub.caPem,
  });
  await connection.open();
  try {
    const redirectOf = (error) => {
      if (!error || error.condition !== 'amqp:link:redirect') throw error || new Error('no redirect');
      const hostname = error.info && error.info.hostname;
      const parsed = error.info.address.match(/5671\/(.*)\/\$management/i);
      assert.ok(hostname && parsed, JSON.stringify(error));
      return `Endpoint=sb://${hostname}/;EntityPath=${parsed[1]};SharedAccessKeyName=${SharedAccessKeyName};SharedAccessKey=${SharedAccessKey}`;
    };
    return await new Promise((resolve, reject) => {
      connection.createReceiver({ source: { address: `amqps://${HostName}/messages/events/$management` } }).then((receiver) => {
        // The hub answers the attach and detaches at once: the error may
        // already be there when createReceiver resolves.
        if (receiver.error) {
          try { resolve(redirectOf(receiver.error)); } catch (e) { reject(e); }
          return;
        }
        receiver.on(ReceiverEvents.receiverError, (ctx) => {
          try { resolve(redirectOf(ctx.receiver && ctx.receiver.error)); } catch (e) { reject(e); }
        });
      }, (err) => {
        try { resolve(redirectOf(err)); } catch (e) { reject(e); }
      });
    });
  } finally {
    await connection.close().catch(() => {});
  }
}

test('the IoT Hub connection string sample follows the redirect of messages/events', T, async () => {
  const cs = await withTimeout(convertIotHubToEventHubsConnectionString(hub.connectionString), 20000, 'the redirect');
  assert.match(cs, /^Endpoint=sb:\/\/localhost\/;EntityPath=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=/);
  const id = uniqueId('eh-redirect');
  await sendFrom(id, 0, 1);
  const client = new EventHubConsumerClient('$Default', cs);
  try {
    const [e] = await collect(client, id, 1, earliestEventPosition);
    assert.deepEqual(bodyOf(e), { id, i: 0 });
  } finally {
    await client.close();
  }
});
