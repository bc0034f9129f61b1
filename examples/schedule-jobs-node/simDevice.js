// Microsoft's "Schedule and broadcast jobs (Node)" tutorial, device side, on
// azure-iot-device 1.18 over MQTT, with the desired-properties handler of the
// Python tutorial added. The only changes from a cloud run: the connection
// string comes from IOTHUB_DEVICE_CONNECTION_STRING, and when IOTHUB_CA_FILE
// is set (the emulator's CA) the client trusts it through setOptions({ ca }).
// IOTHUB_DEVICE_TRANSPORT=amqp runs the device over AMQP (azure-iot-device-amqp)
// instead of MQTT; the emulator's tutorial test runs it both ways.
'use strict';

var fs = require('fs');
var Client = require('azure-iot-device').Client;
var Protocol = process.env.IOTHUB_DEVICE_TRANSPORT === 'amqp'
    ? require('azure-iot-device-amqp').Amqp
    : require('azure-iot-device-mqtt').Mqtt;

var connectionString = process.env.IOTHUB_DEVICE_CONNECTION_STRING || '{yourDeviceConnectionString}';
var caFile = process.env.IOTHUB_CA_FILE; // emulator only; leave unset for a real hub
var client = Client.fromConnectionString(connectionString, Protocol);

var onLockDoor = function(request, response) {
    console.log('Received method [' + request.methodName + ']');
    console.log('    payload: ' + JSON.stringify(request.payload));

    // Respond the cloud app for the direct method
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

function open(callback) {
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
}

open(function(err) {
    if (err) {
        console.error('Could not connect to IotHub client: ' + err.message);
        process.exit(1);
    } else {
        console.log('Client connected to IoT Hub. Register handler for lockDoor direct method.');
        client.onDeviceMethod('lockDoor', onLockDoor);

        client.getTwin(function(err, twin) {
            if (err) {
                console.error('Could not get the device twin: ' + err.message);
                process.exit(1);
            }
            console.log('Beginning to listen for updates to the Twin desired properties...');
            twin.on('properties.desired', onDesiredPatch);
            console.log('Device client waiting for commands, press Ctrl-C to exit');
        });
    }
});

process.on('SIGINT', function() {
    console.log('Shutting down IoT Hub Client');
    client.close(function() { process.exit(0); });
});
