// The dashboard's client of the hub: connection strings, SAS tokens, REST
// calls with the hub's errors, and Server-Sent Event streams read with
// fetch (EventSource cannot send the Authorization header).

export const API_VERSION = '2021-04-12';

export function parseConnectionString(cs) {
  const f = {};
  for (const part of cs.trim().split(';')) {
    const i = part.indexOf('=');
    if (i > 0) f[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  if (!f.HostName || !f.SharedAccessKeyName || !f.SharedAccessKey) {
    throw new Error('A service connection string has HostName, SharedAccessKeyName and SharedAccessKey.');
  }
  return { host: f.HostName, keyName: f.SharedAccessKeyName, key: f.SharedAccessKey };
}

function b64decode(s) { return Uint8Array.from(atob(s), (c) => c.charCodeAt(0)); }
function b64encode(bytes) { let s = ''; for (const b of bytes) s += String.fromCharCode(b); return btoa(s); }

// HMAC-SHA256: WebCrypto where the page is a secure context (https, or
// http on localhost), a small implementation elsewhere (plain http on a LAN).
async function hmacSHA256(key, msg) {
  const data = new TextEncoder().encode(msg);
  if (globalThis.crypto && crypto.subtle) {
    const k = await crypto.subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    return new Uint8Array(await crypto.subtle.sign('HMAC', k, data));
  }
  const block = 64;
  let k = key.length > block ? sha256(key) : key;
  const pad = new Uint8Array(block); pad.set(k);
  const ipad = pad.map((b) => b ^ 0x36), opad = pad.map((b) => b ^ 0x5c);
  const inner = sha256(concat(ipad, data));
  return sha256(concat(opad, inner));
}
function concat(a, b) { const o = new Uint8Array(a.length + b.length); o.set(a); o.set(b, a.length); return o; }
const K = new Uint32Array([0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,0x59f111f1,0x923f82a4,0xab1c5ed5,0xd807aa98,0x12835b01,0x243185be,0x550c7dc3,0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,0xe49b69c1,0xefbe4786,0x0fc19dc6,0x240ca1cc,0x2de92c6f,0x4a7484aa,0x5cb0a9dc,0x76f988da,0x983e5152,0xa831c66d,0xb00327c8,0xbf597fc7,0xc6e00bf3,0xd5a79147,0x06ca6351,0x14292967,0x27b70a85,0x2e1b2138,0x4d2c6dfc,0x53380d13,0x650a7354,0x766a0abb,0x81c2c92e,0x92722c85,0xa2bfe8a1,0xa81a664b,0xc24b8b70,0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,0x106aa070,0x19a4c116,0x1e376c08,0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,0x5b9cca4f,0x682e6ff3,0x748f82ee,0x78a5636f,0x84c87814,0x8cc70208,0x90befffa,0xa4506ceb,0xbef9a3f7,0xc67178f2]);
export function sha256(msg) {
  const l = msg.length, n = ((l + 9 + 63) >> 6) << 6;
  const m = new Uint8Array(n); m.set(msg); m[l] = 0x80;
  const dv = new DataView(m.buffer); dv.setUint32(n - 4, l * 8); dv.setUint32(n - 8, Math.floor(l / 0x20000000));
  const H = new Uint32Array([0x6a09e667,0xbb67ae85,0x3c6ef372,0xa54ff53a,0x510e527f,0x9b05688c,0x1f83d9ab,0x5be0cd19]);
  const W = new Uint32Array(64);
  const r = (x, s) => (x >>> s) | (x << (32 - s));
  for (let o = 0; o < n; o += 64) {
    for (let i = 0; i < 16; i++) W[i] = dv.getUint32(o + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = r(W[i-15], 7) ^ r(W[i-15], 18) ^ (W[i-15] >>> 3), s1 = r(W[i-2], 17) ^ r(W[i-2], 19) ^ (W[i-2] >>> 10);
      W[i] = (W[i-16] + s0 + W[i-7] + s1) | 0;
    }
    let [a, b, c, d, e, f, g, h] = H;
    for (let i = 0; i < 64; i++) {
      const t1 = (h + (r(e, 6) ^ r(e, 11) ^ r(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
      const t2 = ((r(a, 2) ^ r(a, 13) ^ r(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    H[0] += a; H[1] += b; H[2] += c; H[3] += d; H[4] += e; H[5] += f; H[6] += g; H[7] += h;
  }
  const out = new Uint8Array(32); const ov = new DataView(out.buffer);
  H.forEach((v, i) => ov.setUint32(i * 4, v));
  return out;
}

// A SAS token for the hub, as the service SDKs sign it.
export async function signToken(cred, ttlSeconds = 3600) {
  const sr = encodeURIComponent(cred.host);
  const se = Math.floor(Date.now() / 1000) + ttlSeconds;
  const sig = b64encode(await hmacSHA256(b64decode(cred.key), sr + '\n' + se));
  return `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${se}&skn=${encodeURIComponent(cred.keyName)}`;
}

// HubError carries the hub's error code and message.
export class HubError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  toString() { return `${this.status}${this.code ? ' ' + this.code : ''}: ${this.message}`; }
}

function hubError(status, headers, text) {
  let code = headers.get('iothub-errorcode') || '', msg = text;
  try {
    const b = JSON.parse(text);
    msg = b.Message || b.message || text;
    // Direct-method errors nest a JSON document in Message.
    try { const inner = JSON.parse(msg); msg = inner.message || inner.Message || msg; code = code || inner.errorCode; } catch { /* plain text */ }
    const m = /^ErrorCode:([^;]+);(.*)$/s.exec(msg);
    if (m) { code = code || m[1]; msg = m[2]; }
  } catch { /* not JSON */ }
  return new HubError(status, code, msg || `HTTP ${status}`);
}

export class Hub {
  constructor(cs) { this.cs = cs; this.cred = parseConnectionString(cs); this.tok = null; this.tokExp = 0; }
  async token() {
    if (!this.tok || Date.now() > this.tokExp) {
      this.tok = await signToken(this.cred);
      this.tokExp = Date.now() + 30 * 60 * 1000;
    }
    return this.tok;
  }
  url(path) {
    if (path.startsWith('/_emulator/')) return path;
    return path + (path.includes('?') ? '&' : '?') + 'api-version=' + API_VERSION;
  }
  // call returns {body, headers, status}; hub errors are thrown as HubError.
  async call(method, path, body, headers = {}) {
    const h = { Authorization: await this.token(), ...headers };
    if (body !== undefined) h['Content-Type'] = 'application/json; charset=utf-8';
    const resp = await fetch(this.url(path), { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await resp.text();
    if (!resp.ok) throw hubError(resp.status, resp.headers, text);
    let parsed = null;
    if (text) { try { parsed = JSON.parse(text); } catch { parsed = text; } }
    return { body: parsed, headers: resp.headers, status: resp.status };
  }
  async get(path) { return (await this.call('GET', path)).body; }
  // query runs one page of a query; returns {items, next}.
  async query(q, pageSize = 50, continuation = '') {
    const headers = { 'x-ms-max-item-count': String(pageSize) };
    if (continuation) headers['x-ms-continuation'] = continuation;
    const r = await this.call('POST', '/devices/query', { query: q }, headers);
    return { items: r.body || [], next: r.headers.get('x-ms-continuation') || '' };
  }
  // stream follows an SSE endpoint until signal aborts, calling
  // onEvent(name, data) and onState('open'|'retrying'). It reconnects with
  // back-off (and Last-Event-ID) when the stream ends.
  async stream(path, onEvent, signal, onState = () => {}) {
    let lastId = '', delay = 500;
    while (!signal.aborted) {
      try {
        const headers = { Authorization: await this.token(), Accept: 'text/event-stream' };
        if (lastId) headers['Last-Event-ID'] = lastId;
        const resp = await fetch(path, { headers, signal });
        if (!resp.ok) throw hubError(resp.status, resp.headers, await resp.text());
        onState('open'); delay = 500;
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i); buf = buf.slice(i + 2);
            let name = 'message', data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) name = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
              else if (line.startsWith('id: ')) lastId = line.slice(4);
            }
            if (data) { try { onEvent(name, JSON.parse(data)); } catch (e) { console.error(e); } }
          }
        }
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof HubError && (e.status === 401 || e.status === 403)) { onState('error', e); return; }
      }
      onState('retrying');
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }
}

// Strings for the query language: 'it''s'.
export function quote(s) { return "'" + String(s).replace(/'/g, "''") + "'"; }

export function ago(iso) {
  if (!iso || iso.startsWith('0001-')) return '—';
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleString();
}
