'use strict';
// The device SDK's retry policy against the hub's throttling and busy
// answers: the emulator's fault API (/_emulator/faults) makes the next sends
// of one device fail, and the unmodified SDK backs off, retries and delivers.
// Over MQTT a throttled send closes the connection (429001); over HTTPS the
// SDK retries 503 but not 429 (its Http transport maps 429 to a plain Error,
// which no retry filter names), so the HTTPS case uses 503001.
const { test } = require('node:test');
const { Message } = require('azure-iot-device');
const hub = require('../lib/hub');

const { assert, uniqueId, withTimeout, pollUntil, emulatorApi } = hub;
const T = { timeout: 90000 };
const enc = encodeURIComponent;

for (const [name, transport, errorCode, count] of [['Mqtt', hub.Mqtt, 429001, 1], ['Http', hub.Http, 503001, 2]]) {
  test(`d2c over ${name}: sends refused with ${errorCode} are retried by the SDK until they get through`, T, async () => {
    const reg = hub.registry();
    const id = uniqueId('thr');
    let client;
    try {
      const dev = await hub.createDevice(reg, id);
      client = await hub.openClient(hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey), { transport });
      const fault = await emulatorApi('POST', '/_emulator/faults', {
        action: 'error', route: 'POST /devices/{id}/messages/events', deviceId: id, errorCode, count,
      });
      await withTimeout(client.sendEvent(new Message('through at last')), 60000, 'sendEvent under throttling');
      const msgs = await pollUntil(async () => {
        const all = await emulatorApi('GET', `/_emulator/messages?deviceId=${enc(id)}`);
        return all.length >= 1 && all;
      }, 30000, 'the throttled message');
      assert.equal(msgs.length, 1);
      // Every throttled attempt was answered by the fault, which is then used up.
      const left = await emulatorApi('GET', '/_emulator/faults');
      assert.ok(!left.some((f) => f.id === fault.id), 'the fault is used up');
    } finally {
      await hub.closeQuietly(client);
      await hub.deleteQuietly(reg, id);
    }
  });
}
