'use strict';
// Resilience over AMQP: the AMQP scenarios of Microsoft's Node SDK
// disconnect tests (d2c_, c2d_, twin_ and method_disconnect.js), in this
// repository's words, over Amqp (amqps, 5671) and AmqpWs (wss, 443). A
// device asks for a fault with the AzIoTHub_FaultOperation* properties on a
// telemetry message; one second later the emulator ends what the fault
// names: the TCP connection (KillTcp), the AMQP connection with an error
// (KillAmqpConnection) or cleanly (ShutDownAmqp), the session
// (KillAmqpSession) or one link (KillAmqp…Link). The device SDK, with its
// default retry policy, reconnects where it has to and completes the
// operation.
//
// A link fault recovers too: azure-iot-device-amqp treats a link detached
// with amqp:link:detach-forced as a lost connection, and reconnects. The
// emulator's side of every fault is checked with a raw AMQP client in
// e2e/amqp_faults_test.go.
//
// The suite runs apart from the node suite (run.sh: nodefaults), one file
// per transport (faults_amqp.js, faults_amqpws.js) so that the two run at
// once: its faults wait on real time.
const { test } = require('node:test');
const { Message } = require('azure-iot-device');
const { Amqp, AmqpWs } = require('azure-iot-device-amqp');
const hub = require('../lib/hub');
const { faultMessage, faulted, withDevice } = require('../lib/faults');

const { assert, withTimeout, waitForEvent, pollUntil, emulatorApi, OP_TIMEOUT_MS } = hub;
const T = { timeout: 60000 };
const POLL_MS = 30000;
const enc = encodeURIComponent;

const transports = { Amqp, AmqpWs };

// The faults each feature's scenarios inject, as Microsoft's suites list
// them (their CBS link faults apply to every feature; here to telemetry).
//
// KillAmqpConnection and ShutDownAmqp close the AMQP connection with a close
// frame. rhea answers a close at once and sends nothing after it, while
// azure-iot-device-amqp then detaches its links one by one and waits for
// answers that cannot come: it notices the close only when its 45-second
// rundown timer fires, then reconnects. Those two run once, over Amqp (the
// rundown does not depend on the socket), on telemetry, with room for that
// timer (slowFaults); the other features would only wait for the same timer.
const connectionFaults = ['KillTcp', 'KillAmqpSession'];
const slowFaults = ['KillAmqpConnection', 'ShutDownAmqp'];
const SLOW = { timeout: 120000 };
const RUNDOWN_MS = 90000;
// The faults after which azure-iot-device-amqp drops and remakes its
// connection (a link detached with an error included).
const disconnectsTransport = new Set(['KillTcp', 'KillAmqpSession', 'KillAmqpD2CLink']);
const scenarios = {
  d2c: [...connectionFaults, 'KillAmqpCBSLinkReq', 'KillAmqpCBSLinkResp', 'KillAmqpD2CLink'],
  c2d: [...connectionFaults, 'KillAmqpC2DLink'],
  twin: [...connectionFaults, 'KillAmqpTwinLinkReq', 'KillAmqpTwinLinkResp'],
  method: [...connectionFaults, 'KillAmqpMethodReqLink', 'KillAmqpMethodRespLink'],
};

async function injectFault(client, id, op, durationInSecs) {
  await withTimeout(client.sendEvent(faultMessage(op, durationInSecs)), OP_TIMEOUT_MS, `send the ${op} fault message`);
  await faulted(id);
}

const bodyOf = (m) => Buffer.from(m.body, m.bodyEncoding === 'base64' ? 'base64' : 'utf8').toString();

/** Defines the scenarios over the transport named name (Amqp or AmqpWs). */
module.exports = function scenariosOver(name) {
  const transport = transports[name];
  for (const op of connectionFaults) {
    test(`AMQP d2c over ${name}: ${op} is seen by a client without retries`, T, () =>
      withDevice('dca-seen', transport, async (client) => {
        const disconnected = waitForEvent(client, 'disconnect', () => true, POLL_MS, 'the disconnect event');
        await withTimeout(client.sendEvent(faultMessage(op)), OP_TIMEOUT_MS, 'send the fault message');
        await disconnected;
      }, { retry: false }));
  }

  // The rundown does not depend on the socket: once, over Amqp.
  for (const op of name === 'Amqp' ? slowFaults : []) {
    test(`AMQP d2c over ${name}: after ${op} and the SDK's rundown its messages arrive`, SLOW, () =>
      withDevice('dca-slow', transport, async (client, id) => {
        const rundown = waitForEvent(client._transport, 'disconnect', () => true, RUNDOWN_MS, 'the transport\'s disconnect');
        await injectFault(client, id, op);
        await rundown; // sends before it could be lost (see the d2c scenarios below)
        await withTimeout(client.sendEvent(new Message('after')), OP_TIMEOUT_MS, `send after ${op}`);
        const msgs = await emulatorApi('GET', `/_emulator/messages?deviceId=${enc(id)}`);
        assert.equal(bodyOf(msgs[msgs.length - 1]), 'after');
      }));
  }

  // Reconnects refused for a while (as c2d_disconnect.js asks after
  // KillTcp): the hub refuses the device's link attaches with
  // amqp:link:detach-forced, the SDK backs off and attaches again.
  test(`AMQP d2c over ${name}: after KillTcp and 3 s of refused reconnects the client's messages arrive`, T, () =>
    withDevice('dca-refused', transport, async (client, id) => {
      const dropped = waitForEvent(client._transport, 'disconnect', () => true, POLL_MS, 'the transport\'s disconnect');
      await injectFault(client, id, 'KillTcp', 3);
      await dropped;
      await withTimeout(client.sendEvent(new Message('after')), 30000, 'send after the refusal');
      const [fault] = (await emulatorApi('GET', '/_emulator/faults')).filter((f) => f.deviceId === id);
      assert.ok(fault.hits >= 2, `the reconnect was never refused: ${JSON.stringify(fault)}`);
      const msgs = await emulatorApi('GET', `/_emulator/messages?deviceId=${enc(id)}`);
      assert.equal(bodyOf(msgs[msgs.length - 1]), 'after');
    }));

  for (const op of scenarios.d2c) {
    test(`AMQP d2c over ${name}: after ${op} the client's messages arrive`, T, () =>
      withDevice('dca-d2c', transport, async (client, id) => {
        // A sendEvent made between the hub's end of the session (or link)
        // and the transport's own disconnect never completes: the
        // transport's disconnecting step drops the callbacks that wait for
        // a D2C link (removeAllListeners('senderLinkAttached')), an SDK
        // bug (docs/resilience.md). So the sends wait for that disconnect.
        const settled = disconnectsTransport.has(op)
          ? waitForEvent(client._transport, 'disconnect', () => true, POLL_MS, 'the transport\'s disconnect')
          : Promise.resolve();
        await injectFault(client, id, op);
        await settled;
        for (const body of ['m1', 'm2', 'm3']) {
          await withTimeout(client.sendEvent(new Message(body)), OP_TIMEOUT_MS, `send ${body} after ${op}`);
        }
        const msgs = await pollUntil(async () => {
          const all = await emulatorApi('GET', `/_emulator/messages?deviceId=${enc(id)}`);
          return all.length >= 4 && all;
        }, POLL_MS, 'the messages sent after the fault');
        assert.deepEqual(msgs.slice(-3).map(bodyOf), ['m1', 'm2', 'm3']);
      }));
  }

  for (const op of scenarios.c2d) {
    test(`AMQP c2d over ${name}: after ${op} the client receives`, T, () =>
      withDevice('dca-c2d', transport, async (client, id) => {
        const received = [];
        client.on('message', (msg) => {
          received.push(msg.data.toString());
          client.complete(msg, () => {});
        });
        await hub.c2dEnabled(client);
        await injectFault(client, id, op);
        // The SDK re-enables C2D on its own after the fault.
        await emulatorApi('POST', `/_emulator/devices/${enc(id)}/messages/devicebound`, { body: 'after the fault', ack: 'full' });
        await pollUntil(async () => received.includes('after the fault'), POLL_MS, 'the C2D message sent after the fault');
        await withTimeout(client.sendEvent(new Message('then a send')), OP_TIMEOUT_MS, 'send after the C2D message');
      }));
  }

  for (const op of scenarios.twin) {
    test(`AMQP twin over ${name}: after ${op} desired and reported properties flow again`, T, () =>
      withDevice('dca-twin', transport, async (client, id, reg) => {
        const twin = await withTimeout(client.getTwin(), OP_TIMEOUT_MS, 'getTwin');
        const desired = [];
        twin.on('properties.desired', (patch) => desired.push(patch));
        await hub.desiredUpdatesEnabled(twin);
        await injectFault(client, id, op);
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
  }

  for (const op of scenarios.method) {
    test(`AMQP method over ${name}: after ${op} the client answers`, T, () =>
      withDevice('dca-meth', transport, async (client, id) => {
        // Enabled before onDeviceMethod starts its own, as in device_amqp.test.js.
        await hub.methodsEnabled(client);
        client.onDeviceMethod('ping', (req, res) => res.send(200, { pong: req.payload }, () => {}));
        await injectFault(client, id, op);
        const invoke = () => hub.serviceClient().invokeDeviceMethod(id, {
          methodName: 'ping', payload: 7, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 20,
        });
        // connectTimeoutInSeconds lets the call wait for the SDK to reconnect.
        const { result } = await withTimeout(invoke(), 45000, 'invokeDeviceMethod after the fault');
        assert.equal(result.status, 200);
        assert.deepEqual(result.payload, { pong: 7 });
      }));
  }
};
