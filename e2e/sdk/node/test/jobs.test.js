'use strict';
// Jobs through azure-iothub's JobClient: scheduled direct methods, scheduled
// twin updates, getJob, cancelJob and the jobs query.
const { test } = require('node:test');
const hub = require('../lib/hub');

const { assert, uniqueId, withTimeout, OP_TIMEOUT_MS } = hub;
const T = { timeout: 90000 };
const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

/** Polls getJob until the job reaches a terminal state (bounded). */
async function waitForJob(jobs, jobId, ms = 30000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    const { jobStatus } = await withTimeout(jobs.getJob(jobId), OP_TIMEOUT_MS, `getJob ${jobId}`);
    last = jobStatus;
    if (TERMINAL.has(jobStatus.status)) return jobStatus;
    await new Promise((r) => setTimeout(r, 200)); // poll interval
  }
  assert.fail(`job ${jobId} did not finish within ${ms} ms; last: ${JSON.stringify(last)}`);
}

test('scheduleDeviceMethod runs the method on the matching device', T, async (t) => {
  // A method job calls the device through the direct-method invoker.
  const reg = hub.registry();
  const id = uniqueId('job-m');
  const jobId = uniqueId('job-method');
  let client;
  try {
    const dev = await hub.createDevice(reg, id);
    client = await hub.openClient(hub.deviceConnectionString(id, dev.authentication.symmetricKey.primaryKey));
    const calls = [];
    client.onDeviceMethod('firmwareUpdate', (request, response) => {
      calls.push(request.payload);
      response.send(200, { accepted: true }, () => {});
    });
    await hub.methodsEnabled(client);

    const jobs = hub.jobClient();
    const { jobStatus: scheduled } = await withTimeout(jobs.scheduleDeviceMethod(jobId, `deviceId = '${id}'`,
      { methodName: 'firmwareUpdate', payload: { version: '2.0.1' }, responseTimeoutInSeconds: 10 },
      new Date(), 300), OP_TIMEOUT_MS, 'scheduleDeviceMethod');
    assert.equal(scheduled.jobId, jobId);
    assert.equal(scheduled.type, 'scheduleDeviceMethod');

    const done = await waitForJob(jobs, jobId);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.deepEqual(calls, [{ version: '2.0.1' }]);
    assert.equal(done.deviceJobStatistics.deviceCount, 1, JSON.stringify(done));
    assert.equal(done.deviceJobStatistics.succeededCount, 1, JSON.stringify(done));
    assert.equal(done.deviceJobStatistics.failedCount, 0, JSON.stringify(done));
  } finally {
    await hub.closeQuietly(client);
    await hub.deleteQuietly(reg, id);
  }
});

test('scheduleTwinUpdate patches the desired properties of the matching devices', T, async (t) => {
  const reg = hub.registry();
  const run = uniqueId('run');
  const ids = [uniqueId('job-t'), uniqueId('job-t')];
  const other = uniqueId('job-t-other');
  const jobId = uniqueId('job-twin');
  try {
    for (const id of [...ids, other]) await hub.createDevice(reg, id);
    for (const id of ids) {
      await withTimeout(reg.updateTwin(id, { tags: { e2erun: run } }, '*'), OP_TIMEOUT_MS, `tag ${id}`);
    }
    const jobs = hub.jobClient();
    await withTimeout(jobs.scheduleTwinUpdate(jobId, `tags.e2erun = '${run}'`,
      { etag: '*', properties: { desired: { reportingInterval: 60 } } }, new Date(), 300), OP_TIMEOUT_MS, 'scheduleTwinUpdate');

    const done = await waitForJob(jobs, jobId);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.equal(done.type, 'scheduleUpdateTwin');
    for (const id of ids) {
      const { responseBody: twin } = await withTimeout(reg.getTwin(id), OP_TIMEOUT_MS, `getTwin ${id}`);
      assert.equal(twin.properties.desired.reportingInterval, 60, `${id} was patched`);
    }
    const { responseBody: untouched } = await withTimeout(reg.getTwin(other), OP_TIMEOUT_MS, 'getTwin other');
    assert.equal(untouched.properties.desired.reportingInterval, undefined, 'a device outside the query is not patched');
  } finally {
    for (const id of [...ids, other]) await hub.deleteQuietly(reg, id);
  }
});

test('cancelJob cancels a job scheduled for later; getJob and createQuery see it', T, async (t) => {
  const jobs = hub.jobClient();
  const jobId = uniqueId('job-cancel');
  const later = new Date(Date.now() + 3600 * 1000);
  const { jobStatus: scheduled } = await withTimeout(jobs.scheduleDeviceMethod(jobId, "deviceId = 'nobody'",
    { methodName: 'noop', payload: null, responseTimeoutInSeconds: 5 }, later, 600), OP_TIMEOUT_MS, 'schedule for later');
  assert.ok(!TERMINAL.has(scheduled.status), `a job an hour out is not finished: ${scheduled.status}`);

  const { jobStatus: got } = await withTimeout(jobs.getJob(jobId), OP_TIMEOUT_MS, 'getJob');
  assert.equal(got.jobId, jobId);
  assert.equal(new Date(got.startTime).getTime(), later.getTime(), 'the start time round-trips');

  // The jobs query lists it (paging through every page, bounded).
  const q = jobs.createQuery('scheduleDeviceMethod', undefined, 50);
  const seen = [];
  for (let page = 0; q.hasMoreResults && page < 50; page++) {
    const { result } = await withTimeout(q.next(), OP_TIMEOUT_MS, 'jobs query page');
    assert.ok(Array.isArray(result), 'a jobs query page is an array');
    seen.push(...result.map((j) => j.jobId));
  }
  assert.equal(q.hasMoreResults, false, 'the query ends (no endless continuation)');
  assert.ok(seen.includes(jobId), `the jobs query lists ${jobId}`);

  const { jobStatus: cancelled } = await withTimeout(jobs.cancelJob(jobId), OP_TIMEOUT_MS, 'cancelJob');
  assert.equal(cancelled.jobId, jobId);
  assert.equal(cancelled.status, 'cancelled');
  const { jobStatus: after } = await withTimeout(jobs.getJob(jobId), OP_TIMEOUT_MS, 'getJob after cancel');
  assert.equal(after.status, 'cancelled');
});

test('getJob of an unknown job fails with 404 JobNotFound', T, async (t) => {
  const jobs = hub.jobClient();
  const err = await hub.rejectionOf(jobs.getJob(uniqueId('job-none')), 'getJob unknown');
  assert.equal(err.response && err.response.statusCode, 404, `${err.name}: ${err.message}`);
  assert.equal(hub.hubErrorOf(err).errorCode, 'JobNotFound');
});
