// The dashboard's JSON API (docs/dashboard.md) against the single-node Brume that run.sh started:
// every endpoint unauthenticated (401) and signed in, the login's refusals, figures that follow
// invocations made through the CLI (synchronous and queued events), and answers that name a
// daemon that is down (counting, placement, NATS) instead of failing. Run by
// tests/dashboard/run.sh with `node --test`; the tests run in order and share the cluster.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { brume, waitFor, stopDaemon, restartDaemons } from './lib.mjs';

const base = process.env.BRUME_DASH_URL;
const adminKey = readFileSync(process.env.BRUME_ADMIN_KEY_FILE, 'utf8').trim();
const hostId = process.env.BRUME_HOST_ID;
const endpoints = ['session', 'summary', 'hosts', 'functions', 'accounts', 'invocations',
  'throttles', 'series', 'events'];
let cookie = '';

async function get(path, headers = {}) {
  const res = await fetch(base + path, { headers });
  const text = await res.text();
  let body = null;
  try { body = JSON.parse(text); } catch { /* not JSON: the assertions say so */ }
  return { status: res.status, headers: res.headers, body, text };
}

const api = (path) => get(path, { Cookie: cookie });

async function login(key, contentType = 'application/json', raw = undefined) {
  return fetch(base + '/api/login', {
    method: 'POST',
    headers: { 'Content-Type': contentType },
    body: raw ?? JSON.stringify({ api_key: key }),
  });
}

test('every endpoint refuses a caller without a session or key', async () => {
  for (const e of endpoints) {
    const r = await get('/api/' + e);
    assert.equal(r.status, 401, `/api/${e} answered ${r.status}`);
    assert.match(r.headers.get('www-authenticate') ?? '', /Bearer/);
    assert.equal(typeof r.body.error, 'string');
    const forged = await get('/api/' + e, { Cookie: 'brume_session=' + 'a'.repeat(64) });
    assert.equal(forged.status, 401, `/api/${e} took a forged session`);
    const badBearer = await get('/api/' + e, { Authorization: 'Bearer brume_nope' });
    assert.equal(badBearer.status, 401);
  }
});

test('the login refuses wrong keys, keys without admin and malformed requests', async () => {
  const wrong = await login(adminKey.slice(0, -4) + '0000');
  assert.equal(wrong.status, 401);
  assert.match((await wrong.json()).error, /invalid|Unrecognized/i);
  assert.equal(wrong.headers.get('set-cookie'), null);
  assert.equal((await login(adminKey, 'application/x-www-form-urlencoded',
    'api_key=' + adminKey)).status, 415);
  assert.equal((await login(adminKey, 'application/json', '{"api_key": 5}')).status, 400);
  assert.equal((await login(adminKey, 'application/json', 'not json')).status, 400);
  // An invoke-only key of the same account: authenticated, but not an operator.
  const invokeKey = JSON.parse(brume(['keys', 'create', 'admin', '--scopes', 'invoke',
    '--json'])).api_key;
  assert.ok(invokeKey, 'keys create printed no key');
  const r = await login(invokeKey);
  assert.equal(r.status, 403);
  assert.match((await r.json()).error, /admin/);
  assert.equal((await get('/api/summary', { Authorization: 'Bearer ' + invokeKey })).status, 401);
});

test('an admin key signs in with a strict, HttpOnly session cookie', async () => {
  const r = await login(adminKey);
  assert.equal(r.status, 200);
  const body = await r.json();
  assert.equal(body.account_id, 'admin');
  assert.ok(body.expires_unix_ms > Date.now());
  const setCookie = r.headers.get('set-cookie');
  assert.match(setCookie, /^brume_session=[0-9a-f]{64};/);
  assert.match(setCookie, /HttpOnly/);
  assert.match(setCookie, /SameSite=Strict/);
  cookie = setCookie.split(';')[0];
  const s = await api('/api/session');
  assert.equal(s.status, 200);
  assert.equal(s.body.key_id, body.key_id);
  // Scripts may send the key instead.
  assert.equal((await get('/api/session', { Authorization: 'Bearer ' + adminKey })).status, 200);
  // Reading only: POST elsewhere is not allowed, an unknown endpoint is 404.
  assert.equal((await fetch(base + '/api/summary', { method: 'POST', headers: { Cookie: cookie } }))
    .status, 405);
  assert.equal((await api('/api/nothing-here')).status, 404);
});

test('logout ends the session', async () => {
  const r = await login(adminKey);
  const other = r.headers.get('set-cookie').split(';')[0];
  assert.equal((await get('/api/session', { Cookie: other })).status, 200);
  const out = await fetch(base + '/api/logout', { method: 'POST', headers: { Cookie: other } });
  assert.equal(out.status, 204);
  assert.match(out.headers.get('set-cookie'), /Max-Age=0/);
  assert.equal((await get('/api/session', { Cookie: other })).status, 401);
  assert.equal((await api('/api/session')).status, 200, 'the other session ended too');
});

test('summary names the registered daemons and counts hosts and functions', async () => {
  const r = await api('/api/summary');
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('cache-control'), 'no-store');
  const s = r.body;
  assert.deepEqual(s.down, []);
  const kinds = new Set(s.daemons.map((d) => d.kind));
  for (const k of ['counting', 'placement', 'worker', 'frontend']) assert.ok(kinds.has(k), k);
  assert.ok(s.daemons.every((d) => typeof d.addr === 'string' && d.addr.includes(':')));
  assert.equal(s.hosts, 1);
  assert.ok(s.functions >= 2);
  assert.ok(s.accounts >= 1);
  assert.ok(s.invocations.total >= 1, 'the quickstart invoked hello-c');
  assert.ok(Math.abs(s.generated_unix_ms - Date.now()) < 60000);
});

test('hosts shows the worker with its accelerator, memory and sandboxes', async () => {
  const r = await api('/api/hosts');
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.down, []);
  const h = r.body.hosts.find((x) => x.host_id === hostId);
  assert.ok(h, `host ${hostId} missing`);
  assert.ok(['kvm', 'tcg'].includes(h.accelerator), h.accelerator);
  assert.ok(h.memory_mib > 0 && h.free_memory_mib <= h.memory_mib);
  assert.ok(h.vcpus >= 1);
  assert.ok(h.sandboxes >= 1, 'the quickstart left a sandbox');
  const counted = Object.values(h.sandboxes_by_state).reduce((a, b) => a + b, 0);
  assert.equal(counted, h.sandboxes);
});

test('functions shows versions, aliases, reserved concurrency and invocation figures', async () => {
  brume(['version', 'publish', 'hello-c']);
  brume(['alias', 'create', 'hello-c', 'live', '--version', '1']);
  brume(['concurrency', 'put', 'hello-shell', '3']);
  const before = (await api('/api/functions')).body.functions
    .find((f) => f.function_name === 'hello-c').invocations.total;
  for (let i = 0; i < 3; i++) {
    brume(['invoke', 'hello-c', '--payload', '{"name":"api"}', '--request-id', `api-inv-${i}`]);
  }
  brume(['invoke', 'hello-c', '--qualifier', 'live', '--payload', '{}']);
  const r = await api('/api/functions');
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.down, []);
  const c = r.body.functions.find((f) => f.function_name === 'hello-c');
  assert.equal(c.account_id, 'admin');
  assert.deepEqual(c.versions, ['1']);
  assert.deepEqual(c.aliases, [{ name: 'live', function_version: '1', additional_version: null,
    additional_weight: 0 }]);
  assert.equal(c.invocations.total, before + 4);
  assert.ok(c.invocations.warm >= 3);
  assert.equal(c.invocations.warm + c.invocations.cold, c.invocations.total);
  assert.ok(c.duration_ms.p50 > 0 && c.duration_ms.p99 >= c.duration_ms.p50);
  assert.equal(c.concurrency.reserved, false);
  const sh = r.body.functions.find((f) => f.function_name === 'hello-shell');
  assert.equal(sh.concurrency.reserved, true);
  assert.equal(sh.concurrency.reserved_concurrency, 3);
  assert.equal(sh.memory_mib, 128);
});

test('invocations lists the newest first, with request ids; limit bounds it', async () => {
  const r = await api('/api/invocations?limit=3');
  assert.equal(r.status, 200);
  assert.equal(r.body.recent.length, 3);
  const ids = r.body.recent.map((x) => x.request_id);
  assert.ok(ids.includes('api-inv-2'), JSON.stringify(ids));
  const newest = r.body.recent[0];
  assert.equal(newest.function_name, 'hello-c');
  assert.equal(newest.outcome, 'ok');
  assert.equal(newest.error, null);
  assert.ok(['warm', 'cold'].includes(newest.start));
  assert.ok(newest.duration_ms > 0);
});

test('a throttle shows in throttles, errors and the function', async () => {
  brume(['concurrency', 'put', 'hello-shell', '0']);
  assert.throws(() => brume(['invoke', 'hello-shell', '--no-retry', '--payload', '{}']),
    /Reserved|throttl|RESOURCE/i);
  const t = await api('/api/throttles');
  assert.equal(t.status, 200);
  const row = t.body.throttles.find((x) => x.function_name === 'hello-shell');
  assert.ok(row, JSON.stringify(t.body));
  assert.equal(row.reason, 'ReservedFunctionConcurrentInvocationLimitExceeded');
  assert.ok(row.count >= 1);
  const inv = await api('/api/invocations');
  const err = inv.body.errors[0];
  assert.equal(err.outcome, 'throttled');
  assert.equal(err.start, 'none');
  assert.match(err.error, /^ReservedFunctionConcurrentInvocationLimitExceeded/);
  const f = (await api('/api/functions')).body.functions
    .find((x) => x.function_name === 'hello-shell');
  assert.ok(f.invocations.throttled >= 1);
  assert.ok(f.throttles_by_reason.ReservedFunctionConcurrentInvocationLimitExceeded >= 1);
  brume(['concurrency', 'delete', 'hello-shell']);
});

test('accounts shows the limit and the scaling bucket', async () => {
  const r = await api('/api/accounts');
  assert.equal(r.status, 200);
  const a = r.body.accounts.find((x) => x.account_id === 'admin');
  assert.ok(a);
  assert.ok(a.functions >= 2);
  assert.ok(a.concurrency.concurrency_limit > 0);
  assert.equal(a.concurrency.unreserved_limit + a.concurrency.reserved_total,
    a.concurrency.concurrency_limit);
  assert.ok(a.concurrency.scaling.capacity > 0);
  assert.ok(a.concurrency.scaling.level <= a.concurrency.scaling.capacity);
});

test('series has a point a second with the limit and the scaling ceiling', async () => {
  // The sampler closes a second after it ends.
  await new Promise((r) => setTimeout(r, 2100));
  const r = await api('/api/series?seconds=120');
  assert.equal(r.status, 200);
  assert.equal(r.body.interval_ms, 1000);
  const a = r.body.accounts.find((x) => x.account_id === 'admin');
  assert.ok(a, 'no series for the admin account');
  assert.equal(a.concurrency.length, 120);
  assert.equal(a.limit.length, 120);
  assert.ok(Math.max(...a.concurrency) >= 1);
  const limits = a.limit.filter((x) => x !== null);
  assert.ok(limits.length > 0 && limits.every((x) => x > 0));
  a.scaling_ceiling.forEach((c, i) => {
    if (c !== null && a.limit[i] !== null) assert.ok(c <= a.limit[i]);
  });
  const f = r.body.functions.find((x) => x.function_name === 'hello-c');
  assert.ok(f && Math.max(...f.concurrency) >= 1);
  assert.equal((await api('/api/series?seconds=5')).body.accounts[0].concurrency.length, 5);
});

test('events shows the queue, the tries, the endings and the records sent', async () => {
  // hello-c answers a JSON object and fails anything else (HelloC.BadEvent): one event of each,
  // with no retry, and both records in named queues.
  brume(['function', 'event-config', 'put', 'hello-c', '--max-retries', '0',
    '--on-success', 'queue:dash-ok', '--on-failure', 'queue:dash-failed']);
  const before = (await api('/api/events')).body;
  assert.equal(before.enabled, true);
  assert.deepEqual(before.down, []);
  const count = (b, kind, condition) => b.delivery.destinations
    .filter((x) => x.kind === kind && x.condition === condition && x.result === 'sent')
    .reduce((a, x) => a + x.count, 0);
  const records = (b, name) => b.named_queues
    .filter((q) => q.account_id === 'admin' && q.name === name).reduce((a, q) => a + q.records, 0);
  brume(['invoke', 'hello-c', '--async', '--payload', '{"name":"event"}']);
  brume(['invoke', 'hello-c', '--async', '--payload', '[1]']);
  let b;
  await waitFor(async () => {
    b = (await api('/api/events')).body;
    return b.delivery.ended.succeeded === before.delivery.ended.succeeded + 1 &&
      b.delivery.ended.RetriesExhausted === before.delivery.ended.RetriesExhausted + 1;
  }, 60000, 'the two events did not end as succeeded and RetriesExhausted');
  assert.deepEqual(b.down, []);
  assert.equal(b.accepted.queued, before.accepted.queued + 2);
  assert.equal(b.delivery.tries.succeeded, before.delivery.tries.succeeded + 1);
  assert.equal(b.delivery.tries.function_error, before.delivery.tries.function_error + 1);
  assert.equal(count(b, 'queue', 'Success'), count(before, 'queue', 'Success') + 1);
  assert.equal(count(b, 'queue', 'RetriesExhausted'), count(before, 'queue', 'RetriesExhausted') + 1);
  assert.equal(records(b, 'dash-ok'), records(before, 'dash-ok') + 1);
  assert.equal(records(b, 'dash-failed'), records(before, 'dash-failed') + 1);
  assert.ok(b.delivery.workers >= 1 && b.delivery.running >= 0);
  assert.ok(Number.isInteger(b.queue.depth) && b.queue.depth >= 0);
  assert.ok(b.queue.oldest_age_ms >= 0 && (b.queue.depth > 0 || b.queue.oldest_age_ms === 0));
  brume(['function', 'event-config', 'delete', 'hello-c']);
});

test('with counting down the answers say so and keep the rest', async () => {
  await stopDaemon('counting');
  try {
    for (const e of ['accounts', 'functions', 'summary', 'hosts', 'invocations', 'series']) {
      const r = await api('/api/' + e);
      assert.equal(r.status, 200, `/api/${e} answered ${r.status}`);
    }
    const acc = (await api('/api/accounts')).body;
    assert.equal(acc.down[0].daemon, 'counting');
    assert.match(acc.down[0].error, /UNAVAILABLE|DEADLINE/);
    assert.equal(acc.accounts.find((x) => x.account_id === 'admin').concurrency, null);
    const fns = (await api('/api/functions')).body;
    assert.equal(fns.down[0].daemon, 'counting');
    assert.ok(fns.functions.length >= 2);
    assert.ok(fns.functions.every((f) => f.concurrency === null));
    assert.ok(fns.functions.find((f) => f.function_name === 'hello-c').invocations.total >= 4);
    // The registration leaves etcd with the lease: the summary stops listing counting.
    await waitFor(async () => !(await api('/api/summary')).body.daemons
      .some((d) => d.kind === 'counting'), 30000, 'counting still registered');
  } finally {
    await restartDaemons();
  }
  await waitFor(async () => {
    const acc = (await api('/api/accounts')).body;
    return acc.down.length === 0 && acc.accounts[0].concurrency !== null;
  }, 30000, 'counting did not come back in /api/accounts');
});

test('with placement down hosts says so; the summary still answers', async () => {
  await stopDaemon('placement');
  try {
    const h = (await api('/api/hosts')).body;
    assert.equal(h.hosts, null);
    assert.equal(h.down[0].daemon, 'placement');
    const s = (await api('/api/summary')).body;
    assert.equal(s.hosts, null);
    assert.equal(s.sandboxes, null);
    assert.ok(s.down.some((d) => d.daemon === 'placement'));
    assert.ok(s.functions >= 2);
  } finally {
    await restartDaemons();
  }
  await waitFor(async () => (await api('/api/hosts')).body.hosts?.length === 1, 30000,
    'placement did not come back in /api/hosts');
});

test('with NATS down events says so, keeps this frontend\'s figures, and comes back', async () => {
  await stopDaemon('nats');
  try {
    const r = await api('/api/events');
    assert.equal(r.status, 200);
    assert.equal(r.body.down[0].daemon, 'nats');
    assert.match(r.body.down[0].error, /UNAVAILABLE/);
    assert.equal(r.body.queue, null);
    assert.equal(r.body.named_queues, null);
    assert.ok(r.body.delivery.ended.succeeded >= 1, 'the figures counted so far are gone');
    assert.ok(r.body.accepted.queued >= 2);
    assert.deepEqual((await api('/api/summary')).body.down, []);
  } finally {
    await restartDaemons();
  }
  await waitFor(async () => {
    const b = (await api('/api/events')).body;
    return b.down.length === 0 && b.queue !== null;
  }, 30000, 'NATS did not come back in /api/events');
});
