'use strict';
// Twin queries through Registry.createQuery, page by page with nextAsTwin.
const { test } = require('node:test');
const hub = require('../lib/hub');

const { assert, uniqueId, withTimeout, OP_TIMEOUT_MS } = hub;
const T = { timeout: 60000 };

test('createQuery pages twins with nextAsTwin and ends without an endless continuation', T, async (t) => {
  const reg = hub.registry();
  const run = uniqueId('run').replace(/-/g, '_');
  const ids = [uniqueId('q'), uniqueId('q'), uniqueId('q')];
  const outsider = uniqueId('q-out');
  try {
    for (const id of [...ids, outsider]) await hub.createDevice(reg, id);
    for (const [i, id] of ids.entries()) {
      await withTimeout(reg.updateTwin(id, { tags: { e2erun: run, index: i } }, '*'), OP_TIMEOUT_MS, `tag ${id}`);
    }

    const q = reg.createQuery(`SELECT * FROM devices WHERE tags.e2erun = '${run}'`, 2);
    const pages = [];
    for (let page = 0; q.hasMoreResults && page < 10; page++) {
      const { result } = await withTimeout(q.nextAsTwin(), OP_TIMEOUT_MS, `query page ${page}`);
      pages.push(result);
    }
    assert.equal(q.hasMoreResults, false, 'the last page has no continuation token');
    assert.deepEqual(pages.map((p) => p.length), [2, 1], 'page size 2 over 3 matches');
    const twins = pages.flat();
    assert.deepEqual(twins.map((tw) => tw.deviceId).sort(), [...ids].sort());
    for (const tw of twins) {
      assert.equal(tw.tags.e2erun, run);
      assert.equal(typeof tw.update, 'function', 'nextAsTwin builds service Twin objects');
      assert.ok(tw.etag, 'query twins carry an etag');
    }

    // A queried Twin can be updated directly.
    const first = twins.find((tw) => tw.deviceId === ids[0]);
    await withTimeout(first.update({ properties: { desired: { fromQuery: true } } }), OP_TIMEOUT_MS, 'Twin.update from query');
    const { responseBody } = await withTimeout(reg.getTwin(ids[0]), OP_TIMEOUT_MS, 'getTwin');
    assert.equal(responseBody.properties.desired.fromQuery, true);
  } finally {
    for (const id of [...ids, outsider]) await hub.deleteQuietly(reg, id);
  }
});

test('createQuery with a projection returns plain rows through next()', T, async (t) => {
  const reg = hub.registry();
  const id = uniqueId('q-proj');
  try {
    await hub.createDevice(reg, id);
    const q = reg.createQuery(`SELECT deviceId, status FROM devices WHERE deviceId = '${id}'`);
    const { result } = await withTimeout(q.next(), OP_TIMEOUT_MS, 'projection query');
    assert.deepEqual(result, [{ deviceId: id, status: 'enabled' }]);
    assert.equal(q.hasMoreResults, false);
  } finally {
    await hub.deleteQuietly(reg, id);
  }
});
