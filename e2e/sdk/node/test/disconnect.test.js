'use strict';
// Resilience: the scenarios of Microsoft's Node SDK disconnect tests
// (d2c_disconnect, c2d_disconnect, twin_disconnect, method_disconnect), in
// this repository's words. A device asks for a fault with the
// AzIoTHub_FaultOperation* properties on a telemetry message, as those suites
// do; the emulator closes its connection after DelayInSecs. Without a retry
// policy the client reports the disconnect; with the SDK's default policy it
// reconnects and the next operation completes.
//
// The fault's delay is 1 s: the hub acts on it by itself, the test only
// waits for the outcome (bounded, never measured).
const { test } = require('node:test');
const { Message } = require('azure-iot-device');
const hub = require('../lib/hub');
const { faultMessage, faulted: dropped, withDevice } = require('../lib/faults');

const { assert, withTimeout, waitForEvent, pollUntil, emulatorApi, OP_TIMEOUT_MS } = hub;
const T = { timeout: 90000 };
const POLL_MS = 30000;
const enc = encodeURIComponent;

const transports = [['Mqtt', hub.Mqtt], ['MqttWs', hub.MqttWs]];
const operations = ['KillTcp', 'ShutDownMqtt'];

for (const [name, transport] of transports) {
  for (const op of operations) {
    test(`d2c over ${name}: ${op} is seen by a client without retries`, T, () =>
      withDevice('dc-d2c', transport, async (client, id) => {
        const disconnected = waitForEvent(client, 'disconnect', () => true, POLL_MS, 'the disconnect event');
        await withTimeout(client.sendEvent(new Message('before')), OP_TIMEOUT_MS, 'send before the fault');
        await withTimeout(client.sendEvent(faultMessage(op)), OP_TIMEOUT_MS, 'send the fault message');
        await disconnected;
      }, { retry: false }));

    test(`d2c over ${name}: after ${op} the client reconnects and its messages arrive`, T, () =>
      withDevice('dc-d2c', transport, async (client, id) => {
        await withTimeout(client.sendEvent(faultMessage(op)), OP_TIMEOUT_MS, 'send the fault message');
        await dropped(id);
        for (const body of ['m1', 'm2', 'm3']) {
          await withTimeout(client.sendEvent(new Message(body)), OP_TIMEOUT_MS, `send ${body} after the fault`);
        }
        const msgs = await pollUntil(async () => {
          const all = await emulatorApi('GET', `/_emulator/messages?deviceId=${enc(id)}`);
          return all.length >= 4 && all;
        }, POLL_MS, 'the messages sent after the fault');
        assert.deepEqual(msgs.slice(-3).map((m) => Buffer.from(m.body, m.bodyEncoding === 'base64' ? 'base64' : 'utf8').toString()), ['m1', 'm2', 'm3']);
      }));

    test(`c2d over ${name}: after ${op} the client reconnects and receives`, T, () =>
      withDevice('dc-c2d', transport, async (client, id) => {
        const received = [];
        client.on('message', (msg) => {
          received.push(msg.data.toString());
          client.complete(msg, () => {});
        });
        await hub.c2dEnabled(client);
        await withTimeout(client.sendEvent(faultMessage(op)), OP_TIMEOUT_MS, 'send the fault message');
        await dropped(id);
        // A send reconnects the client if nothing else has.
        await withTimeout(client.sendEvent(new Message('wake')), OP_TIMEOUT_MS, 'send after the fault');
        await emulatorApi('POST', `/_emulator/devices/${enc(id)}/messages/devicebound`, { body: 'after the fault', ack: 'full' });
        await pollUntil(async () => received.includes('after the fault'), POLL_MS, 'the C2D message sent after the fault');
      }));

    test(`twin over ${name}: after ${op} desired updates and reported properties flow again`, T, () =>
      withDevice('dc-twin', transport, async (client, id) => {
        const twin = await withTimeout(client.getTwin(), OP_TIMEOUT_MS, 'getTwin');
        const desired = [];
        twin.on('properties.desired', (patch) => desired.push(patch));
        await hub.desiredUpdatesEnabled(twin);
        await withTimeout(client.sendEvent(faultMessage(op)), OP_TIMEOUT_MS, 'send the fault message');
        await dropped(id);
        const reg = hub.registry();
        // The SDK re-subscribes on its own; the service patch reaches it once it has.
        await pollUntil(async () => {
          await reg.updateTwin(id, { properties: { desired: { rate: desired.length + 1 } } }, '*');
          await new Promise((r) => setTimeout(r, 200)); // poll interval
          return desired.some((p) => p.rate !== undefined);
        }, POLL_MS, 'a desired-property patch after the fault');
        await hub.updateReported(twin, { afterFault: op });
        const { responseBody: t } = await reg.getTwin(id);
        assert.equal(t.properties.reported.afterFault, op);
      }));

    test(`method over ${name}: after ${op} the client reconnects and answers`, T, () =>
      withDevice('dc-meth', transport, async (client, id) => {
        client.onDeviceMethod('ping', (req, res) => res.send(200, { pong: req.payload }, () => {}));
        await hub.methodsEnabled(client);
        await withTimeout(client.sendEvent(faultMessage(op)), OP_TIMEOUT_MS, 'send the fault message');
        await dropped(id);
        // connectTimeoutInSeconds lets the call wait for the SDK to reconnect.
        const { result } = await withTimeout(hub.serviceClient().invokeDeviceMethod(id, {
          methodName: 'ping', payload: 7, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 30,
        }), 45000, 'invokeDeviceMethod after the fault');
        assert.equal(result.status, 200);
        assert.deepEqual(result.payload, { pong: 7 });
      }));
  }
}
