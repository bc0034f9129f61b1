'use strict';
// A small IoT Plug and Play temperature controller, written for these tests
// after the flow of Microsoft's pnp_temperature_controller sample: it
// announces its model id, reports a root property and per-component
// properties (marked "__t": "c"), acknowledges writable targetTemperature
// updates with {value, ac, av, ad}, and serves the reboot and
// <component>*getMaxMinReport commands.
const hub = require('./hub');

const MODEL_ID = 'dtmi:com:example:TemperatureController;2';
const COMPONENTS = ['thermostat1', 'thermostat2'];

async function startTemperatureController(deviceId, key) {
  const { Client } = require('azure-iot-device');
  const client = Client.fromConnectionString(hub.deviceConnectionString(deviceId, key), hub.Mqtt);
  await hub.withTimeout(client.setOptions({ ca: hub.caPem, modelId: MODEL_ID }), hub.OP_TIMEOUT_MS, 'setOptions');
  await hub.withTimeout(client.open(), hub.OP_TIMEOUT_MS, 'open');
  const state = { reboots: [], maxTemp: { thermostat1: 31.5, thermostat2: 27 } };

  client.onDeviceMethod('reboot', (req, res) => {
    state.reboots.push(req.payload);
    res.send(200, { rebooting: true, delay: req.payload && req.payload.delay }, () => {});
  });
  for (const c of COMPONENTS) {
    client.onDeviceMethod(`${c}*getMaxMinReport`, (req, res) => {
      res.send(200, { maxTemp: state.maxTemp[c], minTemp: 12, since: req.payload }, () => {});
    });
  }
  await hub.methodsEnabled(client);

  const twin = await hub.withTimeout(client.getTwin(), hub.OP_TIMEOUT_MS, 'getTwin');
  await hub.updateReported(twin, {
    serialNumber: 'SN-PNP-0001',
    thermostat1: { __t: 'c', maxTempSinceLastReboot: state.maxTemp.thermostat1 },
    thermostat2: { __t: 'c', maxTempSinceLastReboot: state.maxTemp.thermostat2 },
  });
  // Writable properties: acknowledge each component's targetTemperature.
  twin.on('properties.desired', (delta) => {
    for (const c of COMPONENTS) {
      const comp = delta[c];
      if (comp && comp.targetTemperature !== undefined) {
        twin.properties.reported.update({
          [c]: { __t: 'c', targetTemperature: { value: comp.targetTemperature, ac: 200, av: delta.$version, ad: 'Successfully executed patch' } },
        }, () => {});
      }
    }
  });
  await hub.desiredUpdatesEnabled(twin);
  return { client, twin, state };
}

module.exports = { MODEL_ID, startTemperatureController };
