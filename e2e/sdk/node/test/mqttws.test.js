'use strict';
// MQTT over WebSockets (azure-iot-device-mqtt's MqttWs): wss://<host>:443/$iothub/websocket.
const { test } = require('node:test');
const hub = require('../lib/hub');

const { assert, uniqueId, withTimeout, waitForEvent, OP_TIMEOUT_MS } = hub;
const T = { timeout: 60000 };

test('device over MqttWs: twin GET, reported patch and desired notification', T, async () => {
  const reg = hub.registry();
  const id = uniqueId('ws-twin');
  let client;
  try {
    const dev = await hub.createDevice(reg, id);
    client = await hub.openClient(hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey),
      { transport: hub.MqttWs });
    const twin = await withTimeout(client.getTwin(), OP_TIMEOUT_MS, 'getTwin over wss');
    assert.equal(typeof twin.properties.desired.$version, 'number');

    await hub.updateReported(twin, { transport: 'wss', uptime: 12 });
    const { responseBody: svc } = await withTimeout(reg.getTwin(id), OP_TIMEOUT_MS, 'service getTwin');
    assert.equal(svc.properties.reported.transport, 'wss');
    assert.equal(svc.properties.reported.uptime, 12);

    await hub.desiredUpdatesEnabled(twin);
    const got = waitForEvent(twin, 'properties.desired', (d) => d && d.sampleRate === 5, OP_TIMEOUT_MS, 'desired over wss');
    await withTimeout(reg.updateTwin(id, { properties: { desired: { sampleRate: 5 } } }, svc.etag), OP_TIMEOUT_MS, 'updateTwin');
    const [patch] = await got;
    assert.equal(typeof patch.$version, 'number');

    // The connection is a real session: the service sees the device connected.
    const { responseBody: d } = await withTimeout(reg.get(id), OP_TIMEOUT_MS, 'get device');
    assert.equal(d.connectionState, 'Connected');
  } finally {
    await hub.closeQuietly(client);
    await hub.deleteQuietly(reg, id);
  }
});
