// Microsoft's "Schedule and broadcast jobs (Node)" tutorial, service side, on
// azure-iothub 1.16 (JobClient). The only changes from a cloud run: the
// connection string and device id come from IOTHUB_CONNECTION_STRING and
// DEVICE_ID, and the emulator's CA is trusted through NODE_EXTRA_CA_CERTS (an
// environment variable; the service SDK has no CA option). The method payload
// and twin patch are the Python tutorial's ({"lockTime":"10m"}, building 43,
// floor 3). monitorJob gives up after MAX_POLLS, and the process exits
// non-zero unless both jobs completed.
'use strict';

var uuid = require('uuid');
var JobClient = require('azure-iothub').JobClient;

var connectionString = process.env.IOTHUB_CONNECTION_STRING || '{iothubconnectionstring}';
var deviceId = process.env.DEVICE_ID || 'myDeviceId';
var queryCondition = "deviceId IN ['" + deviceId + "']";
var startTime = new Date();
var maxExecutionTimeInSeconds =  300;
var jobClient = JobClient.fromConnectionString(connectionString);

var MAX_POLLS = 24; // 24 polls 5 s apart: two minutes
var results = {};

function monitorJob (jobId, callback) {
    var polls = 0;
    var jobMonitorInterval = setInterval(function() {
        jobClient.getJob(jobId, function(err, result) {
        if (err) {
            console.error('Could not get job status: ' + err.message);
        } else {
            console.log('Job: ' + jobId + ' - status: ' + result.status);
            if (result.status === 'completed' || result.status === 'failed' || result.status === 'cancelled') {
            clearInterval(jobMonitorInterval);
            callback(null, result);
            return;
            }
        }
        if (++polls >= MAX_POLLS) {
            clearInterval(jobMonitorInterval);
            callback(new Error('job ' + jobId + ' did not finish after ' + polls + ' polls'));
        }
        });
    }, 5000);
}

// Exits once both jobs have an outcome: 0 only if both completed.
function done(name, err, result) {
    results[name] = err ? 'error: ' + err.message : result.status;
    if (Object.keys(results).length < 2) return;
    console.log('');
    console.log('Device method job: ' + results.method);
    console.log('Twin update job: ' + results.twin);
    process.exit(results.method === 'completed' && results.twin === 'completed' ? 0 : 1);
}

var methodParams = {
    methodName: 'lockDoor',
    payload: { lockTime: '10m' },
    responseTimeoutInSeconds: 15 // Timeout after 15 seconds if device is unable to process method
};

var methodJobId = uuid.v4();
console.log('scheduling Device Method job with id: ' + methodJobId);
jobClient.scheduleDeviceMethod(methodJobId,
                            queryCondition,
                            methodParams,
                            startTime,
                            maxExecutionTimeInSeconds,
                            function(err) {
    if (err) {
        console.error('Could not schedule device method job: ' + err.message);
        done('method', err);
    } else {
        monitorJob(methodJobId, function(err, result) {
            if (err) {
                console.error('Could not monitor device method job: ' + err.message);
            } else {
                console.log(JSON.stringify(result, null, 2));
            }
            done('method', err, result);
        });
    }
});

var twinPatch = {
   etag: '*',
   properties: {
       desired: {
           building: 43,
           floor: 3
       }
   }
};

var twinJobId = uuid.v4();

console.log('scheduling Twin Update job with id: ' + twinJobId);
jobClient.scheduleTwinUpdate(twinJobId,
                            queryCondition,
                            twinPatch,
                            startTime,
                            maxExecutionTimeInSeconds,
                            function(err) {
    if (err) {
        console.error('Could not schedule twin update job: ' + err.message);
        done('twin', err);
    } else {
        monitorJob(twinJobId, function(err, result) {
            if (err) {
                console.error('Could not monitor twin update job: ' + err.message);
            } else {
                console.log(JSON.stringify(result, null, 2));
            }
            done('twin', err, result);
        });
    }
});
