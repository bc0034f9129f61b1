// A device app that starts the way production devices do: it has no hub
// connection string, only a Device Provisioning Service ID scope and a
// symmetric key. It registers (azure-iot-provisioning-device over MQTT),
// connects to the hub it was assigned with the credentials it attested, and
// then runs the device of Microsoft's "Schedule and broadcast jobs" tutorial
// (examples/schedule-jobs-node/simDevice.js): a lockDoor direct method and a
// desired-properties listener.
//
// The same code runs against Azure and against the emulator; only the
// environment differs:
//   PROVISIONING_HOST        global.azure-devices-provisioning.net (Azure, the default) or localhost
//   PROVISIONING_IDSCOPE     the DPS ID scope (the emulator's is printed in its banner)
//   PROVISIONING_REGISTRATION_ID   this device's registration id
//   PROVISIONING_SYMMETRIC_KEY     the individual enrollment's key, or
//   PROVISIONING_GROUP_KEY         an enrollment group's key (the device key is derived from it)
//   IOTHUB_CA_FILE           emulator only: its CA certificate, trusted for the hub connection;
//                            DPS trusts it through NODE_EXTRA_CA_CERTS=the same file
'use strict';

var crypto = require('crypto');
var fs = require('fs');
var ProvisioningDeviceClient = require('azure-iot-provisioning-device').ProvisioningDeviceClient;
var ProvisioningTransport = require('azure-iot-provisioning-device-mqtt').Mqtt;
var SymmetricKeySecurityClient = require('azure-iot-security-symmetric-key').SymmetricKeySecurityClient;
var Client = require('azure-iot-device').Client;
var Protocol = require('azure-iot-device-mqtt').Mqtt;

var provisioningHost = process.env.PROVISIONING_HOST || 'global.azure-devices-provisioning.net';
var idScope = process.env.PROVISIONING_IDSCOPE;
var registrationId = process.env.PROVISIONING_REGISTRATION_ID;
var symmetricKey = process.env.PROVISIONING_SYMMETRIC_KEY;
var caFile = process.env.IOTHUB_CA_FILE; // emulator only; leave unset for Azure

if (!symmetricKey && process.env.PROVISIONING_GROUP_KEY) {
    // A device of an enrollment group signs with HMAC-SHA256(registrationId) keyed by the group key.
    symmetricKey = crypto.createHmac('sha256', Buffer.from(process.env.PROVISIONING_GROUP_KEY, 'base64'))
        .update(registrationId, 'utf8').digest('base64');
}
if (!idScope || !registrationId || !symmetricKey) {
    console.error('Set PROVISIONING_IDSCOPE, PROVISIONING_REGISTRATION_ID and PROVISIONING_SYMMETRIC_KEY (or PROVISIONING_GROUP_KEY).');
    process.exit(2);
}

var security = new SymmetricKeySecurityClient(registrationId, symmetricKey);
var provisioningClient = ProvisioningDeviceClient.create(provisioningHost, idScope, new ProvisioningTransport(), security);

provisioningClient.register(function(err, result) {
    if (err) {
        console.error('Provisioning failed: ' + err);
        process.exit(1);
    }
    console.log('Provisioned: registration ' + result.registrationId + ' assigned to ' + result.assignedHub + ' as device ' + result.deviceId);
    var connectionString = 'HostName=' + result.assignedHub + ';DeviceId=' + result.deviceId + ';SharedAccessKey=' + symmetricKey;
    runTutorialDevice(Client.fromConnectionString(connectionString, Protocol));
});

// The tutorial device, as in examples/schedule-jobs-node/simDevice.js.
function runTutorialDevice(client) {
    var onLockDoor = function(request, response) {
        console.log('Received method [' + request.methodName + ']');
        console.log('    payload: ' + JSON.stringify(request.payload));
        response.send(200, function(err) {
            if (err) {
                console.error('An error occurred when sending a method response:\n' + err.toString());
            } else {
                console.log('Response to method \'' + request.methodName + '\' sent successfully.');
            }
        });
        console.log('Locking Door!');
    };

    var onDesiredPatch = function(delta) {
        console.log('');
        console.log('Twin desired properties patch received:');
        console.log(JSON.stringify(delta));
    };

    var open = function(callback) {
        if (!caFile) {
            client.open(callback);
            return;
        }
        client.setOptions({ ca: fs.readFileSync(caFile, 'utf8') }, function(err) {
            if (err) {
                callback(err);
            } else {
                client.open(callback);
            }
        });
    };

    open(function(err) {
        if (err) {
            console.error('Could not connect to IotHub client: ' + err.message);
            process.exit(1);
        }
        console.log('Client connected to IoT Hub. Register handler for lockDoor direct method.');
        client.onDeviceMethod('lockDoor', onLockDoor);
        client.getTwin(function(err, twin) {
            if (err) {
                console.error('Could not get the device twin: ' + err.message);
                process.exit(1);
            }
            console.log('Initial desired properties: ' + JSON.stringify(twin.properties.desired));
            console.log('Beginning to listen for updates to the Twin desired properties...');
            twin.on('properties.desired', onDesiredPatch);
            console.log('Device client waiting for commands, press Ctrl-C to exit');
        });
    });

    process.on('SIGINT', function() {
        console.log('Shutting down IoT Hub Client');
        client.close(function() { process.exit(0); });
    });
}
