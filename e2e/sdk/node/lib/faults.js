'use strict';
// What the disconnect scenarios over MQTT (test/disconnect.test.js) and
// over AMQP (resilience/) share: the fault message a device sends, the wait
// for the emulator to act on it, and a device client opened for one test.
const { Message } = require('azure-iot-device');
const { NoRetry } = require('azure-iot-common');
const hub = require('./hub');

const { uniqueId, withTimeout, pollUntil, emulatorApi, OP_TIMEOUT_MS } = hub;
const POLL_MS = 30000;

/** A telemetry message asking the hub for a fault one second later, as Microsoft's suites send it. */
function faultMessage(operation, durationInSecs) {
  const m = new Message('');
  m.properties.add('AzIoTHub_FaultOperationType', operation);
  m.properties.add('AzIoTHub_FaultOperationCloseReason', 'boom');
  m.properties.add('AzIoTHub_FaultOperationDelayInSecs', '1');
  if (durationInSecs) m.properties.add('AzIoTHub_FaultOperationDurationInSecs', String(durationInSecs));
  return m;
}

/** Waits until the emulator has acted on the fault the device asked for. */
function faulted(deviceId) {
  return pollUntil(async () => {
    const faults = await emulatorApi('GET', '/_emulator/faults');
    return faults.some((f) => f.deviceId === deviceId && f.source === 'message' && f.hits > 0);
  }, POLL_MS, `the fault of ${deviceId}`);
}

/** Runs fn(client, deviceId, registry) with a new device's open client; removes both after. */
async function withDevice(prefix, transport, fn, { retry = true } = {}) {
  const reg = hub.registry();
  const id = uniqueId(prefix);
  let client;
  try {
    const dev = await hub.createDevice(reg, id);
    client = hub.DeviceClient.fromConnectionString(
      hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey), transport);
    if (!retry) client.setRetryPolicy(new NoRetry());
    await withTimeout(client.setOptions({ ca: hub.caPem }), OP_TIMEOUT_MS, 'setOptions');
    await withTimeout(client.open(), OP_TIMEOUT_MS, 'open');
    await fn(client, id, reg);
  } finally {
    await hub.closeQuietly(client);
    await hub.deleteQuietly(reg, id);
  }
}

module.exports = { faultMessage, faulted, withDevice };
