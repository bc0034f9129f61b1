// The dashboard's pages (Preact components written with htm, no build
// step). Every call goes through lib.js's Hub with the signed-in policy.
import { html, render, useState, useEffect, useRef, useCallback } from './vendor/htm-preact-standalone.module.js';
import { Hub, HubError, quote, ago } from './lib.js';

const WELL_KNOWN = 'HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=P2ja1D+Ckn3UtCuHYDTO8mnTDonBDe4tGpQE5JTLVhM=';
const LOOPBACK = ['localhost', '127.0.0.1', '[::1]', '::1'].includes(location.hostname);
const PAGE = 50;

// ---- small pieces -----------------------------------------------------------

function useRoute() {
  const [hash, setHash] = useState(location.hash || '#/devices');
  useEffect(() => {
    const on = () => setHash(location.hash || '#/devices');
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  const parts = hash.slice(2).split('/').map(decodeURIComponent);
  return parts;
}

function ErrorText({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${error instanceof HubError ? error.toString() : String(error.message || error)}</p>`;
}

function State({ state }) {
  const cls = state === 'Connected' ? 'ok' : 'off';
  return html`<span class="badge ${cls}">${state || '—'}</span>`;
}

function Status({ status }) {
  return html`<span class="badge ${status === 'enabled' ? 'ok' : 'bad'}">${status}</span>`;
}

function Copy({ text, label }) {
  const [done, setDone] = useState(false);
  const copy = async () => {
    try { await navigator.clipboard.writeText(text); } catch { prompt('Copy:', text); }
    setDone(true); setTimeout(() => setDone(false), 1500);
  };
  return html`<button type="button" class="secondary outline small" onClick=${copy} aria-label=${'Copy ' + label}>${done ? 'Copied' : 'Copy'}</button>`;
}

// useStream follows an SSE path while the component is shown.
function useStream(hub, path, onEvent, deps) {
  const [state, setState] = useState('connecting');
  const cb = useRef(onEvent); cb.current = onEvent;
  useEffect(() => {
    if (!path) return undefined;
    const ac = new AbortController();
    hub.stream(path, (n, d) => cb.current(n, d), ac.signal, setState);
    return () => ac.abort();
  }, [path, ...(deps || [])]);
  return state;
}

function LiveBadge({ state }) {
  const label = state === 'open' ? 'live' : state;
  return html`<span class="badge ${state === 'open' ? 'ok' : 'off'}" aria-live="polite">${label}</span>`;
}

function Json({ value }) {
  return html`<pre>${JSON.stringify(value, null, 2)}</pre>`;
}

// ---- sign in ------------------------------------------------------------------

function SignIn({ onSignIn }) {
  const [cs, setCs] = useState(LOOPBACK ? WELL_KNOWN : '');
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault(); setErr(null); setBusy(true);
    try {
      const hub = new Hub(cs);
      await hub.get('/statistics/service').catch(async (e2) => {
        // A policy without ServiceConnect may still read the registry.
        if (e2 instanceof HubError && e2.status === 401) await hub.get('/statistics/devices'); else throw e2;
      });
      sessionStorage.setItem('iothub-cs', cs);
      onSignIn(hub);
    } catch (e2) { setErr(e2); } finally { setBusy(false); }
  };
  return html`<main class="container">
    <article>
      <header><h1>IoT Hub emulator</h1><p>Sign in with a service connection string. The dashboard acts with that policy's rights only.</p></header>
      <form onSubmit=${submit}>
        <label for="cs">Connection string</label>
        <input id="cs" name="cs" class="code" autocomplete="off" spellcheck="false" required value=${cs} onInput=${(e) => setCs(e.target.value)}
          placeholder="HostName=…;SharedAccessKeyName=…;SharedAccessKey=…" />
        ${LOOPBACK && html`<small class="muted">Pre-filled with the emulator's well-known iothubowner string (loopback only).</small>`}
        <${ErrorText} error=${err} />
        <button type="submit" aria-busy=${busy}>Sign in</button>
      </form>
    </article>
  </main>`;
}

// ---- devices -------------------------------------------------------------------

function Devices({ hub }) {
  const [where, setWhere] = useState('');
  const [applied, setApplied] = useState('');
  const [pages, setPages] = useState(['']); // continuation tokens of the pages seen
  const [page, setPage] = useState(0);
  const [rows, setRows] = useState(null);
  const [next, setNext] = useState('');
  const [err, setErr] = useState(null);
  const [stats, setStats] = useState(null);
  const [newId, setNewId] = useState('');
  const [reload, setReload] = useState(0);

  const q = `SELECT deviceId, status, connectionState, lastActivityTime, cloudToDeviceMessageCount, authenticationType FROM devices${applied.trim() ? ' WHERE ' + applied : ''}`;
  useEffect(() => {
    let live = true;
    setErr(null);
    hub.query(q, PAGE, pages[page]).then((r) => { if (live) { setRows(r.items); setNext(r.next); } }).catch((e) => live && setErr(e));
    hub.get('/statistics/devices').then((s) => live && setStats(s)).catch(() => {});
    return () => { live = false; };
  }, [q, page, reload]);

  const conn = useStream(hub, '/_emulator/connections/stream', (name, ev) => {
    if (name === 'reset') { setReload((n) => n + 1); return; }
    setRows((rs) => rs && rs.map((r) => (r.deviceId === ev.deviceId && !ev.moduleId ? { ...r, connectionState: ev.connectionState, lastActivityTime: ev.connectionStateUpdatedTime } : r)));
  });

  const search = (e) => { e.preventDefault(); setApplied(where); setPages(['']); setPage(0); };
  const create = async (e) => {
    e.preventDefault(); setErr(null);
    try { await hub.call('PUT', '/devices/' + encodeURIComponent(newId), { deviceId: newId }); location.hash = '#/device/' + encodeURIComponent(newId); } catch (e2) { setErr(e2); }
  };
  const act = async (id, what) => {
    setErr(null);
    try {
      if (what === 'delete') {
        if (!confirm(`Delete ${id}?`)) return;
        await hub.call('DELETE', '/devices/' + encodeURIComponent(id), undefined, { 'If-Match': '*' });
      } else {
        const d = await hub.get('/devices/' + encodeURIComponent(id));
        d.status = what === 'disable' ? 'disabled' : 'enabled';
        await hub.call('PUT', '/devices/' + encodeURIComponent(id), d, { 'If-Match': '"' + d.etag + '"' });
      }
      setReload((n) => n + 1);
    } catch (e2) { setErr(e2); }
  };

  return html`<section>
    <h2>Devices <${LiveBadge} state=${conn} /></h2>
    ${stats && html`<div class="stats" aria-label="Device statistics">
      <div><strong>${stats.totalDeviceCount}</strong>devices</div>
      <div><strong>${stats.enabledDeviceCount}</strong>enabled</div>
      <div><strong>${stats.disabledDeviceCount}</strong>disabled</div></div>`}
    <div class="grid-2">
      <form onSubmit=${search} class="row" aria-label="Search devices">
        <label>WHERE clause (query language)
          <input class="code" name="where" value=${where} onInput=${(e) => setWhere(e.target.value)} placeholder="connectionState = 'Connected' AND tags.site = 'lab'" /></label>
        <button type="submit">Search</button>
      </form>
      <form onSubmit=${create} class="row">
        <label>New device id <input name="newDeviceId" value=${newId} onInput=${(e) => setNewId(e.target.value)} required /></label>
        <button type="submit">Create device</button>
      </form>
    </div>
    <${ErrorText} error=${err} />
    ${rows === null ? html`<p aria-busy="true">Loading…</p>` : html`
    <table class="striped">
      <thead><tr><th scope="col">Device</th><th scope="col">Status</th><th scope="col">Connection</th><th scope="col">Last activity</th><th scope="col">Pending C2D</th><th scope="col">Auth</th><th scope="col">Actions</th></tr></thead>
      <tbody>${rows.map((r) => html`<tr key=${r.deviceId}>
        <td><a href=${'#/device/' + encodeURIComponent(r.deviceId)}>${r.deviceId}</a></td>
        <td><${Status} status=${r.status} /></td>
        <td><${State} state=${r.connectionState} /></td>
        <td title=${r.lastActivityTime}>${ago(r.lastActivityTime)}</td>
        <td>${r.cloudToDeviceMessageCount}</td>
        <td>${r.authenticationType}</td>
        <td><button class="secondary outline small" onClick=${() => act(r.deviceId, r.status === 'enabled' ? 'disable' : 'enable')}>${r.status === 'enabled' ? 'Disable' : 'Enable'}</button>
          ${' '}<button class="secondary outline small" onClick=${() => act(r.deviceId, 'delete')} aria-label=${'Delete ' + r.deviceId}>Delete</button></td>
      </tr>`)}</tbody>
    </table>
    ${rows.length === 0 && html`<p class="muted">No device matches.</p>`}
    <nav class="row" aria-label="Pages">
      <button class="secondary" disabled=${page === 0} onClick=${() => setPage(page - 1)}>Previous</button>
      <span class="muted">Page ${page + 1}</span>
      <button class="secondary" disabled=${!next} onClick=${() => { setPages([...pages.slice(0, page + 1), next]); setPage(page + 1); }}>Next</button>
    </nav>`}
  </section>`;
}

// ---- one device ----------------------------------------------------------------

function Device({ hub, id }) {
  const enc = encodeURIComponent(id);
  const [dev, setDev] = useState(null);
  const [twin, setTwin] = useState(null);
  const [modules, setModules] = useState([]);
  const [err, setErr] = useState(null);
  const [reload, setReload] = useState(0);
  useEffect(() => {
    setErr(null);
    hub.get('/devices/' + enc).then(setDev).catch(setErr);
    hub.get('/twins/' + enc).then(setTwin).catch(setErr);
    hub.get('/devices/' + enc + '/modules').then(setModules).catch(() => setModules([]));
  }, [id, reload]);
  useStream(hub, '/_emulator/connections/stream?deviceId=' + enc, (name, ev) => {
    if (name === 'connection' && !ev.moduleId) setDev((d) => d && { ...d, connectionState: ev.connectionState, connectionStateUpdatedTime: ev.connectionStateUpdatedTime });
  }, [id]);

  if (err && !dev) return html`<section><h2>${id}</h2><${ErrorText} error=${err} /></section>`;
  if (!dev) return html`<p aria-busy="true">Loading ${id}…</p>`;
  const keys = dev.authentication?.symmetricKey || {};
  const cs = (k) => `HostName=${hub.cred.host};DeviceId=${id};SharedAccessKey=${k}`;
  return html`<section>
    <nav aria-label="breadcrumb"><ul><li><a href="#/devices">Devices</a></li><li>${id}</li></ul></nav>
    <h2>${id} <${State} state=${dev.connectionState} /> <${Status} status=${dev.status} /></h2>
    <p class="muted small">Last activity ${ago(dev.lastActivityTime)} · ${dev.cloudToDeviceMessageCount} C2D pending · etag ${dev.etag} · auth ${dev.authentication?.type}</p>
    ${keys.primaryKey && html`<details>
      <summary>Keys and connection strings</summary>
      <table><tbody>
        <tr><th scope="row">Primary key</th><td class="mono">${keys.primaryKey}</td><td><${Copy} text=${keys.primaryKey} label="primary key" /></td></tr>
        <tr><th scope="row">Secondary key</th><td class="mono">${keys.secondaryKey}</td><td><${Copy} text=${keys.secondaryKey} label="secondary key" /></td></tr>
        <tr><th scope="row">Primary connection string</th><td class="mono">${cs(keys.primaryKey)}</td><td><${Copy} text=${cs(keys.primaryKey)} label="primary connection string" /></td></tr>
        <tr><th scope="row">Secondary connection string</th><td class="mono">${cs(keys.secondaryKey)}</td><td><${Copy} text=${cs(keys.secondaryKey)} label="secondary connection string" /></td></tr>
      </tbody></table>
    </details>`}
    <div class="grid-2">
      <${TwinEditor} hub=${hub} id=${id} twin=${twin} onSaved=${setTwin} onReload=${() => setReload((n) => n + 1)} />
      <div>
        <${MethodInvoker} hub=${hub} id=${id} />
        <${C2DSender} hub=${hub} id=${id} />
      </div>
    </div>
    <h3>Modules</h3>
    ${modules.length === 0 ? html`<p class="muted">No modules.</p>` : html`<table><thead><tr><th scope="col">Module</th><th scope="col">Connection</th><th scope="col">Managed by</th></tr></thead>
      <tbody>${modules.map((m) => html`<tr key=${m.moduleId}><td>${m.moduleId}</td><td><${State} state=${m.connectionState} /></td><td>${m.managedBy || '—'}</td></tr>`)}</tbody></table>`}
    <h3>Telemetry of ${id}</h3>
    <${TelemetryFeed} hub=${hub} deviceId=${id} />
  </section>`;
}

function TwinEditor({ hub, id, twin, onSaved, onReload }) {
  const [tags, setTags] = useState('');
  const [desired, setDesired] = useState('');
  const [err, setErr] = useState(null);
  const [msg, setMsg] = useState('');
  const [conflict, setConflict] = useState(false);
  useEffect(() => {
    if (!twin) return;
    setConflict(false); setErr(null); // a fresh twin: an old conflict no longer applies
    setTags(JSON.stringify(twin.tags || {}, null, 2));
    const d = { ...(twin.properties?.desired || {}) }; delete d.$metadata; delete d.$version;
    setDesired(JSON.stringify(d, null, 2));
  }, [twin && twin.etag, twin && twin.properties?.reported?.$version]);
  if (!twin) return html`<p aria-busy="true">Loading the twin…</p>`;
  const save = async (e) => {
    e.preventDefault(); setErr(null); setMsg(''); setConflict(false);
    let t, d;
    try { t = JSON.parse(tags || '{}'); d = JSON.parse(desired || '{}'); } catch (e2) { setErr(new Error('Not valid JSON: ' + e2.message)); return; }
    // A patch replaces what it names; properties removed here become null.
    const old = twin.properties?.desired || {};
    for (const k of Object.keys(old)) if (!k.startsWith('$') && !(k in d)) d[k] = null;
    for (const k of Object.keys(twin.tags || {})) if (!(k in t)) t[k] = null;
    try {
      const r = await hub.call('PATCH', '/twins/' + encodeURIComponent(id), { tags: t, properties: { desired: d } }, { 'If-Match': '"' + twin.etag + '"' });
      onSaved(r.body); setMsg(`Saved: desired version ${r.body.properties.desired.$version}.`);
    } catch (e2) {
      if (e2.status === 412) setConflict(true);
      setErr(e2);
    }
  };
  const reported = { ...(twin.properties?.reported || {}) }; const meta = reported.$metadata; delete reported.$metadata;
  return html`<form onSubmit=${save} aria-label="Twin">
    <h3>Twin <small class="muted">etag ${twin.etag} · version ${twin.version}</small></h3>
    <label>Tags (JSON)<textarea class="code" name="tags" rows="4" value=${tags} onInput=${(e) => setTags(e.target.value)}></textarea></label>
    <label>Desired properties (JSON)<textarea class="code" name="desired" rows="6" value=${desired} onInput=${(e) => setDesired(e.target.value)}></textarea></label>
    <div class="row"><button type="submit">Save twin</button><button type="button" class="secondary" onClick=${onReload}>Reload</button></div>
    ${conflict && html`<p class="error" role="alert">Someone changed the twin since it was loaded (etag conflict). Reload to see their change, then edit again.</p>`}
    <${ErrorText} error=${err} />
    ${msg && html`<p role="status">${msg}</p>`}
    <h4>Reported properties</h4>
    <div data-testid="reported"><${Json} value=${reported} /></div>
    <details><summary>$metadata of reported properties</summary><${Json} value=${meta} /></details>
  </form>`;
}

function MethodInvoker({ hub, id }) {
  const [name, setName] = useState('lockDoor');
  const [payload, setPayload] = useState('{"lockTime": "10m"}');
  const [timeout, setTimeoutS] = useState(30);
  const [res, setRes] = useState(null);
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  const invoke = async (e) => {
    e.preventDefault(); setErr(null); setRes(null); setBusy(true);
    try {
      let p = null;
      if (payload.trim()) p = JSON.parse(payload);
      const r = await hub.call('POST', '/twins/' + encodeURIComponent(id) + '/methods', { methodName: name, payload: p, responseTimeoutInSeconds: Number(timeout), connectTimeoutInSeconds: 0 });
      setRes(r.body);
    } catch (e2) { setErr(e2); } finally { setBusy(false); }
  };
  return html`<form onSubmit=${invoke} aria-label="Direct method">
    <h3>Direct method</h3>
    <div class="row">
      <label>Method name<input name="methodName" value=${name} onInput=${(e) => setName(e.target.value)} required /></label>
      <label>Timeout (s)<input name="timeout" type="number" min="5" max="300" value=${timeout} onInput=${(e) => setTimeoutS(e.target.value)} /></label>
    </div>
    <label>Payload (JSON)<textarea class="code" name="payload" rows="2" value=${payload} onInput=${(e) => setPayload(e.target.value)}></textarea></label>
    <button type="submit" aria-busy=${busy}>Invoke method</button>
    <${ErrorText} error=${err} />
    ${res && html`<div role="status" data-testid="method-result"><p>Status <strong>${res.status}</strong></p><${Json} value=${res.payload} /></div>`}
  </form>`;
}

function C2DSender({ hub, id }) {
  const enc = encodeURIComponent(id);
  const [body, setBody] = useState('hello');
  const [ack, setAck] = useState('full');
  const [err, setErr] = useState(null);
  const [sent, setSent] = useState([]);
  const [feedback, setFeedback] = useState([]);
  const loadFeedback = () => hub.get('/_emulator/feedback?deviceId=' + enc).then((f) => setFeedback(f || [])).catch(() => {});
  useEffect(() => { loadFeedback(); }, [id]);
  const send = async (e) => {
    e.preventDefault(); setErr(null);
    try {
      const r = await hub.call('POST', '/_emulator/devices/' + enc + '/messages/devicebound', { body, ack });
      setSent([r.body, ...sent].slice(0, 10));
      // Feedback arrives when the device settles the message: look a few times.
      for (const ms of [1000, 3000, 10000]) setTimeout(loadFeedback, ms);
    } catch (e2) { setErr(e2); }
  };
  return html`<form onSubmit=${send} aria-label="Cloud-to-device message">
    <h3>Cloud-to-device message</h3>
    <div class="row">
      <label>Body<input name="c2dBody" value=${body} onInput=${(e) => setBody(e.target.value)} /></label>
      <label>Feedback<select name="ack" value=${ack} onChange=${(e) => setAck(e.target.value)}>
        ${['none', 'positive', 'negative', 'full'].map((a) => html`<option value=${a}>${a}</option>`)}</select></label>
      <button type="submit">Send</button>
    </div>
    <${ErrorText} error=${err} />
    ${sent.length > 0 && html`<p class="small">Sent: ${sent.map((m) => html`<span class="mono">${m.messageId} </span>`)}</p>`}
    <details open=${feedback.length > 0}><summary>Feedback (${feedback.length}) <button type="button" class="secondary outline small" onClick=${loadFeedback}>Refresh</button></summary>
      <${Json} value=${feedback.slice(-10)} /></details>
  </form>`;
}

// ---- telemetry -----------------------------------------------------------------

const MAX_MESSAGES = 500;

function TelemetryFeed({ hub, deviceId }) {
  const [msgs, setMsgs] = useState([]);
  const [paused, setPaused] = useState(false);
  const [filter, setFilter] = useState('');
  const pausedRef = useRef(false); pausedRef.current = paused;
  // The most recent stored messages first, then the stream from the next one on.
  const [from, setFrom] = useState(null);
  const dev = deviceId ? 'deviceId=' + encodeURIComponent(deviceId) + '&' : '';
  useEffect(() => {
    let live = true;
    setFrom(null); setMsgs([]);
    hub.get('/_emulator/messages?' + dev + 'limit=50').then((recent) => {
      if (!live) return;
      const list = recent || [];
      setMsgs(list.slice().reverse());
      setFrom(list.length ? list[list.length - 1].sequenceNumber + 1 : 0);
    }).catch(() => live && setFrom(0));
    return () => { live = false; };
  }, [deviceId]);
  const path = from === null ? null : '/_emulator/messages/stream?' + dev + (from > 0 ? 'from=' + from : '');
  // Messages arriving between two frames are added in one render, so a
  // thousand devices sending every second do not re-render the table a
  // thousand times a second.
  const pending = useRef([]);
  const timer = useRef(null);
  useEffect(() => () => clearTimeout(timer.current), []);
  const flush = () => {
    clearTimeout(timer.current); timer.current = null;
    const batch = pending.current.reverse(); pending.current = [];
    if (!batch.length) return;
    setMsgs((ms) => {
      const top = ms.length ? ms[0].sequenceNumber : -1;
      return [...batch.filter((x) => x.sequenceNumber > top), ...ms].slice(0, MAX_MESSAGES);
    });
  };
  const state = useStream(hub, path, (name, m) => {
    if (name !== 'message' || pausedRef.current) return;
    pending.current.push(m);
    if (!timer.current) timer.current = setTimeout(flush, 200);
  }, [deviceId]);
  // Pausing shows what already arrived, then nothing more.
  const togglePause = () => { if (!paused) flush(); pausedRef.current = !paused; setPaused(!paused); };
  const shown = filter ? msgs.filter((m) => m.deviceId.includes(filter) || m.body.includes(filter)) : msgs;
  return html`<div>
    <div class="row">
      ${!deviceId && html`<label>Filter by device or body<input name="filter" value=${filter} onInput=${(e) => setFilter(e.target.value)} /></label>`}
      <button type="button" class="secondary" onClick=${togglePause} aria-pressed=${paused}>${paused ? 'Resume' : 'Pause'}</button>
      <button type="button" class="secondary outline" onClick=${() => setMsgs([])}>Clear</button>
      <${LiveBadge} state=${paused ? 'paused' : state} />
      <span class="muted small">${shown.length} message${shown.length === 1 ? '' : 's'} (newest first, last ${MAX_MESSAGES} kept)</span>
    </div>
    <div class="feed" data-testid="telemetry">
      <table class="striped"><thead><tr><th scope="col">#</th><th scope="col">Enqueued</th><th scope="col">Device</th><th scope="col">Body</th><th scope="col">Properties</th></tr></thead>
      <tbody>${shown.map((m) => html`<tr key=${m.sequenceNumber}>
        <td>${m.sequenceNumber}</td><td class="small">${new Date(m.enqueuedTimeUtc).toLocaleTimeString()}</td>
        <td><a href=${'#/device/' + encodeURIComponent(m.deviceId)}>${m.deviceId}</a>${m.moduleId ? '/' + m.moduleId : ''}</td>
        <td class="mono">${m.bodyEncoding === 'base64' ? '(binary) ' + m.body : m.body}</td>
        <td class="mono small">${Object.entries(m.properties || {}).map(([k, v]) => `${k}=${v}`).join(' ')}</td></tr>`)}</tbody></table>
    </div>
  </div>`;
}

// ---- jobs ------------------------------------------------------------------------

function progressOf(j) {
  const s = j.deviceJobStatistics || {};
  return { done: (s.succeededCount || 0) + (s.failedCount || 0), total: s.deviceCount || 0, s };
}

function Jobs({ hub, selected }) {
  const [jobs, setJobs] = useState(null);
  const [err, setErr] = useState(null);
  const [reload, setReload] = useState(0);
  useEffect(() => {
    hub.call('GET', '/jobs/v2/query', undefined, { 'x-ms-max-item-count': '100' }).then((r) => setJobs(r.body || [])).catch(setErr);
  }, [reload]);
  const state = useStream(hub, '/_emulator/jobs/stream', (name, j) => {
    if (name === 'reset') { setReload((n) => n + 1); return; }
    setJobs((js) => {
      const list = js || [];
      const i = list.findIndex((x) => x.jobId === j.jobId);
      if (i < 0) return [j, ...list];
      const copy = list.slice(); copy[i] = j; return copy;
    });
  });
  const cancel = async (id) => { try { await hub.call('POST', '/jobs/v2/' + encodeURIComponent(id) + '/cancel'); } catch (e) { setErr(e); } };
  const sorted = (jobs || []).slice().sort((a, b) => (b.createdTime || '').localeCompare(a.createdTime || ''));
  return html`<section>
    <h2>Jobs <${LiveBadge} state=${state} /></h2>
    <${ScheduleJob} hub=${hub} />
    <${ErrorText} error=${err} />
    ${jobs === null ? html`<p aria-busy="true">Loading…</p>` : html`<table class="striped" data-testid="jobs">
      <thead><tr><th scope="col">Job</th><th scope="col">Type</th><th scope="col">Query</th><th scope="col">Status</th><th scope="col">Progress</th><th scope="col">Created</th><th scope="col"></th></tr></thead>
      <tbody>${sorted.map((j) => { const p = progressOf(j); return html`<tr key=${j.jobId}>
        <td><a href=${'#/jobs/' + encodeURIComponent(j.jobId)}>${j.jobId}</a></td><td>${j.type}</td><td class="mono small">${j.queryCondition}</td>
        <td><span class="badge ${j.status === 'completed' ? 'ok' : j.status === 'failed' ? 'bad' : 'off'}" data-testid="job-status">${j.status}</span></td>
        <td><progress value=${p.done} max=${p.total || 1} aria-label=${`${p.done} of ${p.total} devices done`}></progress>
          <span class="small"> ${p.s.succeededCount || 0}✓ ${p.s.failedCount || 0}✗ / ${p.total}</span></td>
        <td class="small">${ago(j.createdTime)}</td>
        <td>${['queued', 'scheduled', 'running'].includes(j.status) && html`<button class="secondary outline small" onClick=${() => cancel(j.jobId)}>Cancel</button>`}</td>
      </tr>`; })}</tbody></table>`}
    ${selected && html`<${JobDevices} hub=${hub} id=${selected} job=${(jobs || []).find((j) => j.jobId === selected)} />`}
  </section>`;
}

function ScheduleJob({ hub }) {
  const [type, setType] = useState('scheduleDeviceMethod');
  const [cond, setCond] = useState("deviceId IN ['myDeviceId']");
  const [count, setCount] = useState(null);
  const [method, setMethod] = useState('lockDoor');
  const [payload, setPayload] = useState('{"lockTime": "10m"}');
  const [patch, setPatch] = useState('{"building": 43, "floor": 3}');
  const [tagPatch, setTagPatch] = useState('');
  const [err, setErr] = useState(null);
  const [msg, setMsg] = useState('');
  useEffect(() => {
    setCount(null);
    if (!cond.trim()) return undefined;
    const t = setTimeout(() => {
      hub.query('SELECT COUNT() AS n FROM devices WHERE ' + cond, 1).then((r) => setCount(r.items[0]?.n ?? 0)).catch((e) => setCount(e));
    }, 300);
    return () => clearTimeout(t);
  }, [cond]);
  const submit = async (e) => {
    e.preventDefault(); setErr(null); setMsg('');
    const id = 'job-' + new Date().toISOString().replace(/[-:.TZ]/g, '').slice(0, 14) + '-' + Math.random().toString(36).slice(2, 6);
    const body = { jobId: id, type, queryCondition: cond, startTime: new Date().toISOString(), maxExecutionTimeInSeconds: 3600 };
    try {
      if (type === 'scheduleDeviceMethod') body.cloudToDeviceMethod = { methodName: method, payload: payload.trim() ? JSON.parse(payload) : null, responseTimeoutInSeconds: 30 };
      else {
        body.updateTwin = { etag: '*' };
        if (patch.trim()) body.updateTwin.properties = { desired: JSON.parse(patch) };
        if (tagPatch.trim()) body.updateTwin.tags = JSON.parse(tagPatch);
      }
      await hub.call('PUT', '/jobs/v2/' + id, body);
      setMsg(`Scheduled ${id}.`);
    } catch (e2) { setErr(e2); }
  };
  return html`<details><summary role="button" class="outline">Schedule a job</summary>
    <form onSubmit=${submit} aria-label="Schedule a job">
      <div class="row">
        <label>Type<select name="jobType" value=${type} onChange=${(e) => setType(e.target.value)}>
          <option value="scheduleDeviceMethod">Direct method</option><option value="scheduleUpdateTwin">Twin update (desired)</option></select></label>
        <label style="flex: 3 1 20rem">Query condition<input class="code" name="queryCondition" value=${cond} onInput=${(e) => setCond(e.target.value)} required /></label>
      </div>
      <p class="small" role="status" data-testid="preview-count">${count === null ? 'Counting matched devices…' : count instanceof Error ? 'The condition is not valid: ' + count.message : `${count} device${count === 1 ? '' : 's'} match now.`}</p>
      ${type === 'scheduleDeviceMethod' ? html`<div class="row">
        <label>Method name<input name="jobMethod" value=${method} onInput=${(e) => setMethod(e.target.value)} required /></label>
        <label style="flex: 3 1 20rem">Payload (JSON)<input class="code" name="jobPayload" value=${payload} onInput=${(e) => setPayload(e.target.value)} /></label></div>`
      : html`<div class="row">
        <label>Desired properties patch (JSON)<input class="code" name="jobPatch" value=${patch} onInput=${(e) => setPatch(e.target.value)} /></label>
        <label>Tags patch (JSON, optional)<input class="code" name="jobTags" value=${tagPatch} onInput=${(e) => setTagPatch(e.target.value)} /></label></div>`}
      <button type="submit">Schedule job</button>
      <${ErrorText} error=${err} />${msg && html`<p role="status">${msg}</p>`}
    </form></details>`;
}

function JobDevices({ hub, id, job }) {
  const [rows, setRows] = useState(null);
  const [err, setErr] = useState(null);
  const key = job ? `${job.status}/${progressOf(job).done}` : '';
  useEffect(() => {
    hub.query(`SELECT * FROM devices.jobs WHERE devices.jobs.jobId = ${quote(id)}`, 100).then((r) => setRows(r.items)).catch(setErr);
  }, [id, key]);
  return html`<article>
    <header><h3>Devices of ${id}</h3></header>
    <${ErrorText} error=${err} />
    ${rows && html`<table><thead><tr><th scope="col">Device</th><th scope="col">Status</th><th scope="col">Outcome</th><th scope="col">Error</th></tr></thead>
      <tbody>${rows.map((r) => html`<tr key=${r.deviceId}><td>${r.deviceId}</td><td>${r.status}</td>
        <td class="mono small">${r.outcome ? JSON.stringify(r.outcome) : ''}</td><td class="small">${r.error ? r.error.code + ': ' + r.error.description : ''}</td></tr>`)}</tbody></table>
      <p class="muted small">First 100 devices; use the query console for more.</p>`}
  </article>`;
}

// ---- query console ---------------------------------------------------------------

function QueryConsole({ hub }) {
  const [q, setQ] = useState('SELECT * FROM devices');
  const [ran, setRan] = useState(null);
  const [pages, setPages] = useState(['']);
  const [page, setPage] = useState(0);
  const [res, setRes] = useState(null);
  const [err, setErr] = useState(null);
  const [view, setView] = useState('table');
  useEffect(() => {
    if (ran === null) return;
    setErr(null);
    hub.query(ran, PAGE, pages[page]).then(setRes).catch((e) => { setRes(null); setErr(e); });
  }, [ran, page]);
  const run = (e) => { e.preventDefault(); setPages(['']); setPage(0); setRan(q + ''); setRes(null); if (ran === q) hub.query(q, PAGE).then(setRes).catch(setErr); };
  const items = res?.items || [];
  const cols = [...new Set(items.flatMap((it) => (it && typeof it === 'object' ? Object.keys(it) : ['value'])))];
  const cell = (v) => (v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v));
  return html`<section>
    <h2>Query console</h2>
    <form onSubmit=${run}>
      <label for="query">Query (devices, devices.modules, devices.jobs)</label>
      <textarea id="query" name="query" class="code" rows="3" value=${q} onInput=${(e) => setQ(e.target.value)}
        onKeyDown=${(e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) run(e); }}></textarea>
      <div class="row"><button type="submit">Run query</button>
        <fieldset role="group" aria-label="Result view">
          <button type="button" class=${view === 'table' ? '' : 'secondary'} aria-pressed=${view === 'table'} onClick=${() => setView('table')}>Table</button>
          <button type="button" class=${view === 'json' ? '' : 'secondary'} aria-pressed=${view === 'json'} onClick=${() => setView('json')}>JSON</button></fieldset></div>
    </form>
    <${ErrorText} error=${err} />
    ${res && html`<p class="muted small" role="status">${items.length} item${items.length === 1 ? '' : 's'} on page ${page + 1}${res.next ? ' (more on the next page)' : ''}.</p>
      ${view === 'table' ? html`<div class="feed" data-testid="query-table"><table class="striped"><thead><tr>${cols.map((c) => html`<th scope="col">${c}</th>`)}</tr></thead>
        <tbody>${items.map((it, i) => html`<tr key=${i}>${cols.map((c) => html`<td class="small">${cell(it && typeof it === 'object' ? it[c] : it)}</td>`)}</tr>`)}</tbody></table></div>`
      : html`<${Json} value=${items} />`}
      <nav class="row" aria-label="Pages">
        <button class="secondary" disabled=${page === 0} onClick=${() => setPage(page - 1)}>Previous</button>
        <button class="secondary" disabled=${!res.next} onClick=${() => { setPages([...pages.slice(0, page + 1), res.next]); setPage(page + 1); }}>Next</button></nav>`}
  </section>`;
}

// ---- simulations -----------------------------------------------------------------

const SIM_EXAMPLE = JSON.stringify({
  id: 'thermostat', count: 3, echoDesired: true,
  telemetry: { interval: '5s', fields: { temperature: { min: 18, max: 26, walk: 0.3 }, humidity: { min: 30, max: 60 } }, properties: { source: 'simulator' } },
  methods: [{ name: 'lockDoor' }, { name: 'reboot', status: 202, payload: { rebooting: true }, delay: '2s' }],
}, null, 2);

function Simulations({ hub }) {
  const [list, setList] = useState(null);
  const [spec, setSpec] = useState(SIM_EXAMPLE);
  const [err, setErr] = useState(null);
  const [reload, setReload] = useState(0);
  useEffect(() => { hub.get('/_emulator/simulations').then(setList).catch(setErr); }, [reload]);
  // Connection changes refresh the counts, at most once a second.
  const pending = useRef(null);
  useEffect(() => () => clearTimeout(pending.current), []);
  useStream(hub, '/_emulator/connections/stream', () => {
    if (!pending.current) pending.current = setTimeout(() => { pending.current = null; setReload((n) => n + 1); }, 1000);
  });
  const start = async (e) => {
    e.preventDefault(); setErr(null);
    try { await hub.call('POST', '/_emulator/simulations', JSON.parse(spec)); setReload((n) => n + 1); } catch (e2) { setErr(e2); }
  };
  const stop = async (id) => { try { await hub.call('DELETE', '/_emulator/simulations/' + encodeURIComponent(id)); setReload((n) => n + 1); } catch (e2) { setErr(e2); } };
  return html`<section>
    <h2>Simulated devices</h2>
    <p class="muted">Devices the emulator runs itself over its own MQTT listener, with SAS tokens of their own keys. Those of the seed file start with every start; those started here run until stopped or until the emulator stops.</p>
    <${ErrorText} error=${err} />
    ${list && html`<table class="striped" data-testid="simulations"><thead><tr><th scope="col">Simulation</th><th scope="col">Origin</th><th scope="col">Devices</th><th scope="col">Connected</th><th scope="col">Messages</th><th scope="col">Method calls</th><th scope="col"></th></tr></thead>
      <tbody>${list.map((s) => html`<tr key=${s.id}><td>${s.id}</td><td>${s.origin}</td>
        <td>${s.deviceCount === 1 ? html`<a href=${'#/device/' + encodeURIComponent(s.id)}>${s.id}</a>` : html`<a href=${'#/devices'}>${s.id}-1 … ${s.id}-${s.deviceCount}</a>`}</td>
        <td>${s.connectedCount}</td><td>${s.messagesSent}</td><td>${s.methodCalls}</td>
        <td><button class="secondary outline small" onClick=${() => stop(s.id)}>Stop</button></td></tr>`)}</tbody></table>`}
    ${list && list.length === 0 && html`<p class="muted">None running.</p>`}
    <form onSubmit=${start}>
      <label>Simulation (JSON, the seed file's "simulations" entry format)<textarea class="code" name="spec" rows="12" value=${spec} onInput=${(e) => setSpec(e.target.value)}></textarea></label>
      <button type="submit">Start simulation</button>
    </form>
  </section>`;
}

// ---- shell -----------------------------------------------------------------------

const NAV = [['devices', 'Devices'], ['telemetry', 'Telemetry'], ['jobs', 'Jobs'], ['query', 'Query'], ['simulations', 'Simulated devices']];

function App() {
  const [hub, setHub] = useState(() => { const cs = sessionStorage.getItem('iothub-cs'); try { return cs ? new Hub(cs) : null; } catch { return null; } });
  const route = useRoute();
  const main = useRef(null);
  useEffect(() => { document.title = `${NAV.find(([k]) => k === route[0])?.[1] || route[1] || 'Dashboard'} · IoT Hub emulator`; }, [route.join('/')]);
  const signOut = useCallback(() => { sessionStorage.removeItem('iothub-cs'); setHub(null); }, []);
  if (!hub) return html`<${SignIn} onSignIn=${setHub} />`;
  let page;
  switch (route[0]) {
    case 'device': page = html`<${Device} hub=${hub} id=${route[1]} key=${route[1]} />`; break;
    case 'telemetry': page = html`<section><h2>Live telemetry</h2><${TelemetryFeed} hub=${hub} /></section>`; break;
    case 'jobs': page = html`<${Jobs} hub=${hub} selected=${route[1]} />`; break;
    case 'query': page = html`<${QueryConsole} hub=${hub} />`; break;
    case 'simulations': page = html`<${Simulations} hub=${hub} />`; break;
    default: page = html`<${Devices} hub=${hub} />`;
  }
  const current = route[0] === 'device' ? 'devices' : route[0];
  return html`<a href="#main" class="skip" onClick=${(e) => { e.preventDefault(); main.current?.focus(); }}>Skip to content</a>
    <header><nav aria-label="Main">
      <ul><li><a href="#/devices" class="brand">IoT Hub emulator</a></li></ul>
      <ul>${NAV.map(([k, label]) => html`<li><a href=${'#/' + k} aria-current=${current === k ? 'page' : undefined}>${label}</a></li>`)}</ul>
      <ul><li class="muted small" title="Signed-in policy">${hub.cred.keyName}@${hub.cred.host}</li><li><button class="secondary outline small" onClick=${signOut}>Sign out</button></li></ul>
    </nav></header>
    <main id="main" class="container-fluid" tabindex="-1" ref=${main}>${page}</main>`;
}

render(html`<${App} />`, document.getElementById('app'));
