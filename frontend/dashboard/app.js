/* Brume operator dashboard: polls the frontend's JSON API (docs/dashboard.md) and renders it.
 *
 * No libraries and no build step. The page runs under `Content-Security-Policy: default-src
 * 'self'`, so everything is wired up here (no inline handlers) and every text that comes from the
 * API goes through textContent. */
'use strict';

(() => {
  const DASH = '\u2014';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const SERIES_SECONDS = 300;
  const RECENT_LIMIT = 50;
  const FETCH_TIMEOUT_MS = 10000;

  const ENDPOINTS = [
    { name: 'summary', path: '/api/summary' },
    { name: 'hosts', path: '/api/hosts' },
    { name: 'functions', path: '/api/functions' },
    { name: 'accounts', path: '/api/accounts' },
    { name: 'throttles', path: '/api/throttles' },
    { name: 'invocations', path: '/api/invocations?limit=' + RECENT_LIMIT },
    { name: 'series', path: '/api/series?seconds=' + SERIES_SECONDS },
    { name: 'events', path: '/api/events' },
  ];

  const HOST_STATES = ['provisioning', 'idle', 'invoking', 'terminating'];

  const state = {
    refreshMs: refreshFromUrl(),
    // Bumped whenever polling stops or restarts, so that answers of an older loop are dropped.
    generation: 0,
    timer: null,
    unreachableSince: null,
    lastSeries: null,
    // The series the user picked in the select; null until they pick one.
    chartChoice: null,
    // Mouse position over the chart (px from the svg's left), kept across redraws.
    hoverX: null,
    chartGeometry: null,
    hostViews: new Map(),
  };

  const $ = (id) => document.getElementById(id);

  /* ---------- small helpers ---------- */

  function refreshFromUrl() {
    const raw = new URLSearchParams(window.location.search).get('refresh');
    const ms = Number.parseInt(raw, 10);
    return Number.isFinite(ms) && ms >= 100 ? ms : 1000;
  }

  function isNum(v) {
    return typeof v === 'number' && Number.isFinite(v);
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  // Writes only on change: rewriting identical text every second would drop the user's selection.
  function setText(node, text) {
    const t = String(text);
    if (node.textContent !== t) node.textContent = t;
  }

  function setTitle(node, title) {
    if (title) {
      if (node.title !== title) node.title = title;
    } else if (node.hasAttribute('title')) {
      node.removeAttribute('title');
    }
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function fmtInt(v) {
    return isNum(v) ? String(Math.round(v)) : DASH;
  }

  function fmtMs(v) {
    if (!isNum(v)) return DASH;
    if (v < 1) return v.toFixed(2) + ' ms';
    if (v < 100) return v.toFixed(1) + ' ms';
    return Math.round(v) + ' ms';
  }

  function fmtPercent(fraction) {
    return String(Number((fraction * 100).toFixed(1))) + '%';
  }

  function fmtMib(mib) {
    if (!isNum(mib)) return DASH;
    if (Math.abs(mib) < 1024) return Math.round(mib) + ' MiB';
    return String(Number((mib / 1024).toFixed(1))) + ' GiB';
  }

  function pad2(n) {
    return String(n).padStart(2, '0');
  }

  function fmtClock(ms) {
    if (!isNum(ms)) return DASH;
    const d = new Date(ms);
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
  }

  function fmtAgo(ms, now) {
    if (!isNum(ms) || !isNum(now)) return '';
    const s = Math.max(0, Math.round((now - ms) / 1000));
    if (s < 60) return s + ' s ago';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ago';
    return Math.floor(s / 86400) + ' d ago';
  }

  function fmtDateTime(ms) {
    return isNum(ms) ? new Date(ms).toLocaleString() : '';
  }

  function nowOf(body) {
    return body && isNum(body.generated_unix_ms) ? body.generated_unix_ms : Date.now();
  }

  function asArray(v) {
    return Array.isArray(v) ? v : [];
  }

  function str(v) {
    return v === null || v === undefined ? DASH : String(v);
  }

  /* ---------- the API ---------- */

  class AuthError extends Error {}
  class NetError extends Error {}
  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // One request; resolves to {status, body} whatever the status, rejects with NetError when
  // nothing came back.
  async function request(method, path, jsonBody) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
    const init = {
      method,
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json' },
      signal: controller.signal,
    };
    if (jsonBody !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(jsonBody);
    }
    let response;
    let text;
    try {
      response = await fetch(path, init);
      text = await response.text();
    } catch (err) {
      const why = err && err.name === 'AbortError' ? 'no answer in ' + FETCH_TIMEOUT_MS / 1000 + ' s'
        : (err && err.message) || 'network error';
      throw new NetError(why);
    } finally {
      clearTimeout(timer);
    }
    let body = null;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch (err) {
        body = null;
      }
    }
    return { status: response.status, body };
  }

  function errorText(res) {
    if (res.body && typeof res.body.error === 'string' && res.body.error) return res.body.error;
    return 'HTTP ' + res.status;
  }

  async function getJson(path) {
    const res = await request('GET', path);
    if (res.status === 401) throw new AuthError(errorText(res));
    if (res.status !== 200) throw new HttpError(res.status, errorText(res));
    if (!res.body || typeof res.body !== 'object') throw new HttpError(res.status, 'answer is not JSON');
    return res.body;
  }

  /* ---------- session and views ---------- */

  function showLogin(notice) {
    stopPolling();
    const dash = $('dashboard');
    dash.removeAttribute('data-updated');
    show(dash, false);
    show($('boot-message'), false);
    show($('logout-button'), false);
    setText($('session-info'), '');
    setText($('frontend-info'), '');
    show($('login-view'), true);
    show($('login-form'), true);
    const noticeEl = $('login-notice');
    setText(noticeEl, notice || '');
    show(noticeEl, Boolean(notice));
    setLoginError('');
    $('login-button').disabled = false;
    $('api-key').focus();
  }

  function setLoginError(text) {
    const errEl = $('login-error');
    setText(errEl, text || '');
    show(errEl, Boolean(text));
  }

  function showDashboard(session) {
    show($('boot-message'), false);
    show($('login-view'), false);
    show($('login-form'), false);
    show($('dashboard'), true);
    show($('logout-button'), true);
    renderSession(session);
    startPolling();
  }

  function renderSession(session) {
    const info = $('session-info');
    if (!session || typeof session !== 'object') {
      setText(info, '');
      return;
    }
    const who = str(session.account_id) + ' \u00b7 key ' + str(session.key_id);
    setText(info, who);
    setTitle(info, isNum(session.expires_unix_ms)
      ? 'Session until ' + fmtDateTime(session.expires_unix_ms) : '');
  }

  async function checkSession() {
    try {
      const res = await request('GET', '/api/session');
      if (res.status === 200) {
        showDashboard(res.body);
      } else if (res.status === 401) {
        showLogin('');
      } else {
        showLogin('The frontend answered ' + errorText(res) + ' when asked for the session.');
      }
    } catch (err) {
      showLogin('frontend unreachable (' + err.message + '); log in once it is back.');
    }
  }

  async function onLoginSubmit(event) {
    event.preventDefault();
    const input = $('api-key');
    const key = input.value.trim();
    if (!key) {
      setLoginError('Enter an API key.');
      return;
    }
    const button = $('login-button');
    button.disabled = true;
    setLoginError('');
    try {
      const res = await request('POST', '/api/login', { api_key: key });
      if (res.status === 200) {
        input.value = '';
        show($('login-notice'), false);
        showDashboard(res.body);
      } else {
        setLoginError(errorText(res));
        input.select();
      }
    } catch (err) {
      setLoginError('Cannot reach the frontend: ' + err.message);
    } finally {
      button.disabled = false;
    }
  }

  async function onLogout() {
    stopPolling();
    let notice = '';
    try {
      const res = await request('POST', '/api/logout');
      if (res.status !== 204 && res.status !== 200 && res.status !== 401) {
        notice = 'Logout answered ' + errorText(res) + '.';
      }
    } catch (err) {
      notice = 'Could not reach the frontend to end the session (' + err.message + ').';
    }
    showLogin(notice);
  }

  /* ---------- polling ---------- */

  function stopPolling() {
    state.generation += 1;
    if (state.timer !== null) clearTimeout(state.timer);
    state.timer = null;
  }

  function startPolling() {
    stopPolling();
    state.unreachableSince = null;
    const generation = state.generation;
    poll(generation);
  }

  async function poll(generation) {
    const started = performance.now();
    const results = await Promise.allSettled(ENDPOINTS.map((e) => getJson(e.path)));
    if (generation !== state.generation) return;

    if (results.some((r) => r.status === 'rejected' && r.reason instanceof AuthError)) {
      showLogin('Session ended; log in again');
      return;
    }

    const data = {};
    const problems = [];
    let netFailures = 0;
    let netMessage = '';
    results.forEach((r, i) => {
      const ep = ENDPOINTS[i];
      if (r.status === 'fulfilled') {
        data[ep.name] = r.value;
      } else if (r.reason instanceof NetError) {
        netFailures += 1;
        netMessage = r.reason.message;
        problems.push(ep.path.split('?')[0] + ': ' + r.reason.message);
      } else {
        const msg = r.reason && r.reason.message ? r.reason.message : String(r.reason);
        problems.push(ep.path.split('?')[0] + ': ' + msg);
      }
    });

    if (netFailures === ENDPOINTS.length) {
      if (state.unreachableSince === null) state.unreachableSince = Date.now();
      renderUnreachable(netMessage);
    } else {
      state.unreachableSince = null;
      const renderErrors = renderAll(data);
      problems.push(...renderErrors);
      renderStatus(collectDown(data), problems);
      if (problems.length === 0) {
        $('dashboard').setAttribute('data-updated', String(Date.now()));
        setText($('updated'), 'Updated ' + fmtClock(Date.now()));
      }
    }

    const wait = Math.max(0, state.refreshMs - (performance.now() - started));
    state.timer = setTimeout(() => poll(generation), wait);
  }

  // Each section renders on its own, so a bug in one leaves the others (and polling) alive.
  function renderAll(data) {
    const errors = [];
    const sections = [
      ['summary', renderSummary],
      ['hosts', renderHosts],
      ['functions', renderFunctions],
      ['accounts', renderAccounts],
      ['throttles', renderThrottles],
      ['invocations', renderInvocations],
      ['series', renderChartData],
      ['events', renderEvents],
    ];
    for (const [name, render] of sections) {
      if (!(name in data)) continue;
      try {
        render(data[name]);
      } catch (err) {
        console.error('dashboard: rendering ' + name + ' failed', err);
        errors.push('page could not show ' + name + ': ' + (err && err.message));
      }
    }
    return errors;
  }

  // Every daemon named in some answer's `down`, once, with the first error given for it.
  function collectDown(data) {
    const seen = new Map();
    for (const body of Object.values(data)) {
      for (const d of asArray(body && body.down)) {
        if (!d || typeof d !== 'object') continue;
        const daemon = typeof d.daemon === 'string' ? d.daemon : 'unknown';
        if (!seen.has(daemon)) seen.set(daemon, typeof d.error === 'string' ? d.error : '');
      }
    }
    return [...seen].map(([daemon, error]) => ({ daemon, error }));
  }

  /* ---------- status line ---------- */

  function renderStatus(down, problems) {
    const node = $('status');
    // Rebuilt only on change, so that the text can be selected and copied.
    const sig = JSON.stringify([down, problems]);
    if (node.dataset.sig === sig) return;
    node.dataset.sig = sig;
    node.classList.remove('ok', 'degraded');
    node.replaceChildren();
    if (down.length === 0 && problems.length === 0) {
      node.classList.add('ok');
      node.append(el('span', 'status-text', 'All daemons answer'));
      return;
    }
    node.classList.add('degraded');
    if (down.length > 0) {
      node.append(el('span', 'status-text', 'Not answering:'));
      for (const d of down) {
        const span = el('span', 'down-daemon', d.daemon + ': ' + (d.error || 'no answer'));
        span.setAttribute('data-daemon', d.daemon);
        node.append(span);
      }
    }
    if (problems.length > 0) {
      node.append(el('span', 'status-text', 'Frontend errors:'));
      for (const p of problems) node.append(el('span', 'problem', p));
    }
  }

  function renderUnreachable(message) {
    const node = $('status');
    node.classList.remove('ok');
    node.classList.add('degraded');
    node.replaceChildren();
    delete node.dataset.sig;
    const since = fmtClock(state.unreachableSince);
    node.append(el('span', 'status-text unreachable',
      'Brume frontend unreachable since ' + since + ' (' + message + '); retrying. ' +
      'The figures below are the last ones received.'));
  }

  /* ---------- summary ---------- */

  function renderSummary(s) {
    const inv = s.invocations && typeof s.invocations === 'object' ? s.invocations : {};
    setText($('summary-invocations'), fmtInt(inv.total));
    const failed = isNum(inv.function_errors) && isNum(inv.errors) ? inv.function_errors + inv.errors : null;
    const detail = $('summary-invocations-detail');
    setText(detail, fmtInt(inv.ok) + ' ok \u00b7 ' + fmtInt(failed) + ' failed');
    setTitle(detail, 'ok ' + fmtInt(inv.ok) + ', function errors ' + fmtInt(inv.function_errors) +
      ', errors ' + fmtInt(inv.errors) + ', warm starts ' + fmtInt(inv.warm) + ', cold starts ' +
      fmtInt(inv.cold));
    setText($('summary-in-flight'), fmtInt(s.in_flight));
    setText($('summary-hosts'), fmtInt(s.hosts));
    setText($('summary-sandboxes'), fmtInt(s.sandboxes));
    setText($('summary-functions'), fmtInt(s.functions));
    setText($('summary-accounts'), fmtInt(s.accounts));
    setText($('summary-throttled'), fmtInt(inv.throttled));
    $('summary-throttled').classList.toggle('figure-alert', isNum(inv.throttled) && inv.throttled > 0);

    const info = [];
    if (s.frontend_id !== undefined) info.push('frontend ' + str(s.frontend_id));
    if (s.region !== undefined) info.push('region ' + str(s.region));
    setText($('frontend-info'), info.join(' \u00b7 '));

    renderDaemons(s.daemons);
  }

  function renderDaemons(daemons) {
    const node = $('daemons');
    if (!Array.isArray(daemons)) {
      delete node.dataset.signature;
      setText(node, 'unavailable');
      return;
    }
    // Grouped by kind, in a fixed order, so the line does not jump between refreshes.
    const order = ['frontend', 'counting', 'placement', 'worker'];
    const byKind = new Map();
    for (const d of daemons) {
      if (!d || typeof d !== 'object') continue;
      const kind = typeof d.kind === 'string' ? d.kind : 'unknown';
      if (!byKind.has(kind)) byKind.set(kind, []);
      byKind.get(kind).push(d);
    }
    const kinds = [...byKind.keys()].sort((a, b) => {
      const ia = order.indexOf(a) < 0 ? order.length : order.indexOf(a);
      const ib = order.indexOf(b) < 0 ? order.length : order.indexOf(b);
      return ia - ib || a.localeCompare(b);
    });
    const signature = JSON.stringify(kinds.map((k) => [k, byKind.get(k).map((d) => [d.id, d.addr])]));
    if (node.dataset.signature === signature) return;
    node.dataset.signature = signature;
    node.replaceChildren();
    if (kinds.length === 0) {
      node.append(el('span', 'muted', 'none registered'));
      return;
    }
    for (const kind of kinds) {
      const group = el('span', 'daemon-group');
      group.append(el('span', 'daemon-kind', kind));
      for (const d of byKind.get(kind).sort((a, b) => String(a.id).localeCompare(String(b.id)))) {
        const chip = el('span', 'daemon', str(d.id));
        chip.title = kind + ' ' + str(d.id) + ' at ' + str(d.addr);
        group.append(chip);
      }
      node.append(group);
    }
  }

  /* ---------- hosts ---------- */

  function renderHosts(body) {
    const container = $('hosts');
    const hosts = body.hosts;
    if (!Array.isArray(hosts)) {
      container.replaceChildren(el('p', 'panel-empty', 'Hosts unavailable: placement does not answer.'));
      state.hostViews.clear();
      return;
    }
    if (hosts.length === 0) {
      container.replaceChildren(el('p', 'panel-empty', 'No hosts registered.'));
      state.hostViews.clear();
      return;
    }
    const now = nowOf(body);
    const keep = new Set();
    const ordered = [];
    for (const h of hosts) {
      if (!h || typeof h !== 'object') continue;
      const id = str(h.host_id);
      if (keep.has(id)) continue;
      keep.add(id);
      let view = state.hostViews.get(id);
      if (!view) {
        view = buildHostView(id);
        state.hostViews.set(id, view);
      }
      updateHostView(view, h, now);
      ordered.push(view.root);
    }
    for (const id of [...state.hostViews.keys()]) {
      if (!keep.has(id)) state.hostViews.delete(id);
    }
    syncChildren(container, ordered);
  }

  // Makes container's children exactly `nodes`, in order, moving only what is out of place.
  function syncChildren(container, nodes) {
    nodes.forEach((node, i) => {
      if (container.children[i] !== node) container.insertBefore(node, container.children[i] || null);
    });
    while (container.children.length > nodes.length) container.lastElementChild.remove();
  }

  function buildHostView(id) {
    const root = el('article', 'host');
    root.setAttribute('data-host-id', id);

    const head = el('div', 'host-head');
    const name = el('span', 'host-name', id);
    const address = el('span', 'host-address');
    const badges = el('span', 'host-badges');
    const accelerator = el('span', 'badge accelerator');
    const draining = el('span', 'badge badge-warn draining', 'draining');
    badges.append(accelerator, draining);
    head.append(name, address, badges);

    const memRow = el('div', 'host-row');
    const memLabel = el('span', 'host-label', 'Memory');
    const memBar = el('div', 'bar mem-bar');
    const memFill = el('div', 'bar-fill mem-fill');
    memBar.append(memFill);
    const memText = el('span', 'host-value mem-text');
    memRow.append(memLabel, memBar, memText);

    const cpuRow = el('div', 'host-row');
    const cpuLabel = el('span', 'host-label', 'vCPUs');
    const cpuBar = el('div', 'bar cpu-bar');
    const cpuFill = el('div', 'bar-fill cpu-fill');
    cpuBar.append(cpuFill);
    const cpuText = el('span', 'host-value vcpus');
    cpuRow.append(cpuLabel, cpuBar, cpuText);

    const sandRow = el('div', 'host-facts');
    const sandboxes = el('span', 'sandboxes');
    const states = el('span', 'states');
    sandRow.append(sandboxes, states);

    const footRow = el('div', 'host-foot');
    const pool = el('span', 'pool');
    const foot = el('span', 'muted');
    footRow.append(pool, foot);

    root.append(head, memRow, cpuRow, sandRow, footRow);
    return { root, address, accelerator, draining, memBar, memFill, memText, cpuFill, cpuBar,
      cpuText, sandboxes, states, pool, foot, statesSig: null };
  }

  function updateHostView(v, h, now) {
    setText(v.address, str(h.address));

    const acc = h.accelerator === 'kvm' ? 'KVM' : h.accelerator === 'tcg' ? 'TCG' : 'unknown';
    setText(v.accelerator, acc);
    v.accelerator.classList.toggle('badge-good', acc === 'KVM');
    v.accelerator.classList.toggle('badge-warn', acc === 'TCG');
    setTitle(v.accelerator, acc === 'KVM' ? 'hardware virtualization (KVM)'
      : acc === 'TCG' ? 'software emulation (TCG): slow' : 'accelerator unknown');
    show(v.draining, h.draining === true);

    const total = h.memory_mib;
    const free = h.free_memory_mib;
    if (isNum(total) && total > 0 && isNum(free)) {
      const used = Math.max(0, total - free);
      const frac = Math.min(1, used / total);
      v.memFill.style.width = (frac * 100).toFixed(1) + '%';
      v.memFill.classList.toggle('bar-hot', frac >= 0.9);
      v.memFill.classList.toggle('bar-warm', frac >= 0.75 && frac < 0.9);
      setText(v.memText, fmtMib(used) + ' / ' + fmtMib(total) + ' (' + Math.round(frac * 100) + '%)');
      v.memBar.setAttribute('data-used-percent', (frac * 100).toFixed(1));
    } else {
      v.memFill.style.width = '0%';
      setText(v.memText, DASH);
      v.memBar.removeAttribute('data-used-percent');
    }
    setTitle(v.memBar, 'memory_mib ' + fmtInt(total) + ', free ' + fmtInt(free) + ' MiB');

    if (isNum(h.vcpus) && h.vcpus > 0 && isNum(h.vcpu_milli_committed)) {
      const committed = h.vcpu_milli_committed / 1000;
      const frac = Math.min(1, committed / h.vcpus);
      v.cpuFill.style.width = (frac * 100).toFixed(1) + '%';
      v.cpuFill.classList.toggle('bar-hot', committed / h.vcpus >= 1);
      setText(v.cpuText, String(Number(committed.toFixed(2))) + ' / ' + h.vcpus + ' committed');
    } else {
      v.cpuFill.style.width = '0%';
      setText(v.cpuText, (isNum(h.vcpus) ? h.vcpus + ' vCPUs' : DASH));
    }

    setText(v.sandboxes, 'Sandboxes ' + fmtInt(h.sandboxes));
    renderHostStates(v, h.sandboxes_by_state);
    setText(v.pool, 'Pool ready ' + fmtInt(h.pool_ready));

    const parts = [];
    if (isNum(h.host_memory_available_mib)) {
      parts.push('host RAM available ' + fmtMib(h.host_memory_available_mib));
    }
    if (isNum(h.updated_unix_ms)) parts.push('reported ' + fmtAgo(h.updated_unix_ms, now));
    setText(v.foot, parts.join(' \u00b7 '));
    // A host whose report is much older than the refresh cadence is probably gone.
    v.root.classList.toggle('host-stale', isNum(h.updated_unix_ms) && now - h.updated_unix_ms > 30000);
  }

  function renderHostStates(v, byState) {
    const entries = [];
    if (byState && typeof byState === 'object') {
      const names = Object.keys(byState).sort((a, b) => {
        const ia = HOST_STATES.indexOf(a) < 0 ? 99 : HOST_STATES.indexOf(a);
        const ib = HOST_STATES.indexOf(b) < 0 ? 99 : HOST_STATES.indexOf(b);
        return ia - ib || a.localeCompare(b);
      });
      for (const n of names) entries.push([n, byState[n]]);
    }
    const sig = JSON.stringify(entries);
    if (v.statesSig === sig) return;
    v.statesSig = sig;
    v.states.replaceChildren();
    if (byState === null || byState === undefined) {
      v.states.append(el('span', 'muted', DASH));
      return;
    }
    for (const [name, count] of entries) {
      const chip = el('span', 'state-chip state-' + (HOST_STATES.includes(name) ? name : 'other'));
      chip.setAttribute('data-state', name);
      chip.append(el('span', 'state-name', name), el('span', 'state-count', fmtInt(count)));
      v.states.append(chip);
    }
  }

  /* ---------- tables ---------- */

  /* Brings a table's body in line with `rows` ({key, cells: [{cls, text, title, tone, bar}]}),
   * reusing the row of each key so that a refresh does not flash or lose the user's selection. */
  function syncTable(table, keyAttr, rows) {
    const tbody = table.tBodies[0];
    const existing = new Map();
    for (const tr of tbody.rows) existing.set(tr.getAttribute(keyAttr), tr);
    const ordered = [];
    const used = new Set();
    for (const row of rows) {
      if (used.has(row.key)) continue;
      used.add(row.key);
      let tr = existing.get(row.key);
      if (!tr || tr.cells.length !== row.cells.length) {
        tr = document.createElement('tr');
        tr.setAttribute(keyAttr, row.key);
        for (let i = 0; i < row.cells.length; i++) tr.append(document.createElement('td'));
      }
      row.cells.forEach((cell, i) => updateCell(tr.cells[i], cell));
      tr.className = row.cls || '';
      setTitle(tr, row.title || '');
      ordered.push(tr);
    }
    syncChildren(tbody, ordered);
    const empty = table.parentElement.querySelector('.table-empty');
    if (empty) show(empty, ordered.length === 0);
  }

  function updateCell(td, cell) {
    const cls = cell.cls + (cell.num ? ' num' : '') + (cell.muted ? ' muted' : '');
    if (td.className !== cls) td.className = cls;
    setTitle(td, cell.title || '');
    const sig = JSON.stringify([cell.text, cell.tone || '', isNum(cell.bar) ? cell.bar : null,
      cell.lines && cell.lines.length > 1]);
    if (td.dataset.sig === sig) return;
    td.dataset.sig = sig;
    td.replaceChildren();
    if (cell.lines && cell.lines.length > 1) {
      // One line each, with the separators kept in the text for copying and for textContent.
      cell.lines.forEach((line, i) => {
        if (i > 0) td.append(el('span', 'line-sep', ', '));
        td.append(el('span', 'line', line));
      });
    } else if (cell.tone) {
      td.append(el('span', 'badge badge-' + cell.tone, cell.text));
    } else {
      td.append(document.createTextNode(cell.text));
    }
    if (isNum(cell.bar)) {
      const bar = el('span', 'minibar');
      const fill = el('span', 'minibar-fill');
      fill.style.width = (Math.max(0, Math.min(1, cell.bar)) * 100).toFixed(1) + '%';
      bar.append(fill);
      td.append(bar);
    }
  }

  function aliasText(a) {
    if (!a || typeof a !== 'object') return '';
    let t = str(a.name) + '\u2192' + str(a.function_version);
    if (a.additional_version !== null && a.additional_version !== undefined) {
      const w = isNum(a.additional_weight) ? Math.min(1, Math.max(0, a.additional_weight)) : null;
      if (w === null) {
        t += ' + ' + str(a.additional_version);
      } else {
        t = str(a.name) + '\u2192' + str(a.function_version) + ' (' + fmtPercent(1 - w) + ') + ' +
          str(a.additional_version) + ' (' + fmtPercent(w) + ')';
      }
    }
    return t;
  }

  function renderFunctions(body) {
    const table = $('functions');
    const fns = body.functions;
    table.classList.toggle('unavailable', !Array.isArray(fns));
    const rows = [];
    for (const f of asArray(fns)) {
      if (!f || typeof f !== 'object') continue;
      const c = f.concurrency && typeof f.concurrency === 'object' ? f.concurrency : null;
      const inv = f.invocations && typeof f.invocations === 'object' ? f.invocations : {};
      const dur = f.duration_ms && typeof f.duration_ms === 'object' ? f.duration_ms : {};
      const versions = asArray(f.versions);
      const aliases = asArray(f.aliases).map(aliasText).filter(Boolean);

      let reserved = DASH;
      if (c) reserved = c.reserved === true ? fmtInt(c.reserved_concurrency) : 'unreserved';

      const throttleTitle = f.throttles_by_reason && typeof f.throttles_by_reason === 'object'
        ? Object.entries(f.throttles_by_reason).map(([r, n]) => r + ': ' + fmtInt(n)).join('\n') : '';
      const samples = isNum(dur.samples) ? dur.samples + ' samples' : '';

      rows.push({
        key: str(f.account_id) + '/' + str(f.function_name),
        cells: [
          { cls: 'account', text: str(f.account_id), muted: true },
          {
            cls: 'name', text: str(f.function_name),
            title: 'memory ' + fmtMib(f.memory_mib) + ', timeout ' + fmtInt(f.timeout_ms) + ' ms',
          },
          { cls: 'versions', text: versions.length ? versions.join(', ') : DASH },
          { cls: 'aliases', text: aliases.length ? aliases.join(', ') : DASH, lines: aliases },
          { cls: 'reserved', text: reserved, num: true, muted: reserved === 'unreserved' },
          { cls: 'provisioned', text: c ? fmtInt(c.provisioned) : DASH, num: true },
          {
            cls: 'in-use', text: c ? fmtInt(c.in_use) : DASH, num: true,
            title: c ? 'held by all counting daemons: ' + fmtInt(c.cluster_held) +
              '; in flight here: ' + fmtInt(f.in_flight) : 'counting does not answer',
          },
          {
            cls: 'invocations', text: fmtInt(inv.total), num: true,
            title: 'ok ' + fmtInt(inv.ok) + ', function errors ' + fmtInt(inv.function_errors) +
              ', errors ' + fmtInt(inv.errors),
          },
          { cls: 'warm', text: fmtInt(inv.warm), num: true },
          { cls: 'cold', text: fmtInt(inv.cold), num: true },
          {
            cls: 'throttles' + (isNum(inv.throttled) && inv.throttled > 0 ? ' alert' : ''),
            text: fmtInt(inv.throttled), num: true, title: throttleTitle,
          },
          { cls: 'p50', text: fmtMs(dur.p50), num: true, title: samples },
          { cls: 'p99', text: fmtMs(dur.p99), num: true, title: samples },
        ],
      });
    }
    syncTable(table, 'data-function', rows);
  }

  function renderAccounts(body) {
    const table = $('accounts');
    const rows = [];
    for (const a of asArray(body.accounts)) {
      if (!a || typeof a !== 'object') continue;
      const c = a.concurrency && typeof a.concurrency === 'object' ? a.concurrency : null;
      const sc = c && c.scaling && typeof c.scaling === 'object' ? c.scaling : null;
      let bucket = DASH;
      let bar = null;
      let bucketTitle = c ? 'scaling is per function' : 'counting does not answer';
      if (sc) {
        bucket = fmtInt(sc.level) + '/' + fmtInt(sc.capacity);
        if (isNum(sc.level) && isNum(sc.capacity) && sc.capacity > 0) bar = sc.level / sc.capacity;
        bucketTitle = 'refills ' + fmtInt(sc.refill_tokens) + ' every ' +
          (isNum(sc.refill_interval_ms) ? Number((sc.refill_interval_ms / 1000).toFixed(1)) + ' s' : DASH);
      }
      rows.push({
        key: str(a.account_id),
        cells: [
          { cls: 'account', text: str(a.account_id) },
          { cls: 'limit', text: c ? fmtInt(c.concurrency_limit) : DASH, num: true },
          { cls: 'unreserved', text: c ? fmtInt(c.unreserved_limit) : DASH, num: true },
          {
            cls: 'reserved-total', text: c ? fmtInt(c.reserved_total) : DASH, num: true,
            title: c ? 'provisioned ' + fmtInt(c.provisioned_total) : '',
          },
          {
            cls: 'in-use', text: c ? fmtInt(c.in_use) : DASH, num: true,
            title: (c ? 'held by all counting daemons: ' + fmtInt(c.cluster_held) + '; ' : '') +
              'in flight here: ' + fmtInt(a.in_flight),
          },
          { cls: 'bucket', text: bucket, bar, title: bucketTitle },
          { cls: 'functions', text: fmtInt(a.functions), num: true },
        ],
      });
    }
    syncTable(table, 'data-account', rows);
  }

  function renderThrottles(body) {
    const now = nowOf(body);
    const rows = [];
    for (const t of asArray(body.throttles)) {
      if (!t || typeof t !== 'object') continue;
      rows.push({
        key: str(t.account_id) + '/' + str(t.function_name) + '/' + str(t.reason),
        cells: [
          { cls: 'function', text: str(t.account_id) + '/' + str(t.function_name) },
          { cls: 'reason', text: str(t.reason) },
          { cls: 'count', text: fmtInt(t.count), num: true },
          {
            cls: 'last', text: fmtClock(t.last_unix_ms),
            title: fmtDateTime(t.last_unix_ms) + ' (' + fmtAgo(t.last_unix_ms, now) + ')',
          },
        ],
      });
    }
    syncTable($('throttles'), 'data-throttle', rows);
  }

  function fmtAge(ms) {
    if (!isNum(ms)) return DASH;
    const s = ms / 1000;
    if (s < 60) return (s < 10 ? s.toFixed(1) : String(Math.round(s))) + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + pad2(Math.round(s % 60)) + ' s';
    return Math.floor(s / 3600) + ' h ' + pad2(Math.floor((s % 3600) / 60)) + ' min';
  }

  const TRY_TONES = { succeeded: 'good', function_error: 'warn', throttled: 'throttle',
    platform_error: 'bad' };

  // The event queue: JetStream's figures (null while NATS does not answer: the status line names
  // it), this frontend's tries and endings, the records sent, the named queues.
  function renderEvents(body) {
    const enabled = body.enabled !== false;
    show($('events-disabled'), !enabled);
    const q = body.queue && typeof body.queue === 'object' ? body.queue : null;
    setText($('events-depth'), q ? fmtInt(q.depth) : DASH);
    setText($('events-oldest'), !q ? DASH : q.depth === 0 ? 'none' : fmtAge(q.oldest_age_ms));
    const dl = body.delivery && typeof body.delivery === 'object' ? body.delivery : null;
    setText($('events-running'), dl ? fmtInt(dl.running) : DASH);
    setText($('events-running-detail'), dl ? 'on this frontend, of ' + fmtInt(dl.workers) : 'on this frontend');
    const acc = body.accepted && typeof body.accepted === 'object' ? body.accepted : null;
    setText($('events-accepted'), acc ? fmtInt(acc.queued) : DASH);
    setText($('events-accepted-detail'), acc ? 'by this frontend \u00b7 ' +
      fmtInt((acc.refused || 0) + (acc.unavailable || 0)) + ' refused' : 'by this frontend');
    setTitle($('events-accepted-detail'), acc ? 'queued ' + fmtInt(acc.queued) + ', duplicates ' +
      fmtInt(acc.duplicate) + ', refused (bad request, queue full) ' + fmtInt(acc.refused) +
      ', refused (queue unavailable) ' + fmtInt(acc.unavailable) : '');

    const counts = [];
    const tries = dl && dl.tries && typeof dl.tries === 'object' ? dl.tries : {};
    for (const [outcome, n] of Object.entries(tries)) {
      counts.push({ key: 'try/' + outcome, cells: [
        { cls: 'what', text: 'tries' },
        { cls: 'how', text: outcome, tone: TRY_TONES[outcome] || 'bad' },
        { cls: 'count', text: fmtInt(n), num: true },
      ] });
    }
    const ended = dl && dl.ended && typeof dl.ended === 'object' ? dl.ended : {};
    for (const [how, n] of Object.entries(ended)) {
      counts.push({ key: 'ended/' + how, cells: [
        { cls: 'what', text: 'ended' },
        { cls: 'how', text: how, tone: how === 'succeeded' ? 'good' : 'bad' },
        { cls: 'count', text: fmtInt(n), num: true },
      ] });
    }
    syncTable($('event-counts'), 'data-event-count', counts);

    const dests = [];
    for (const x of asArray(dl && dl.destinations)) {
      if (!x || typeof x !== 'object') continue;
      dests.push({ key: str(x.kind) + '/' + str(x.condition) + '/' + str(x.result), cells: [
        { cls: 'kind', text: str(x.kind) },
        { cls: 'condition', text: str(x.condition) },
        { cls: 'result', text: str(x.result), tone: x.result === 'sent' ? 'good' : 'bad' },
        { cls: 'count', text: fmtInt(x.count), num: true },
      ] });
    }
    syncTable($('event-destinations'), 'data-destination', dests);

    const queues = [];
    for (const x of asArray(body.named_queues)) {
      if (!x || typeof x !== 'object') continue;
      queues.push({ key: str(x.account_id) + '/' + str(x.name), cells: [
        { cls: 'queue', text: str(x.account_id) + '/' + str(x.name) },
        { cls: 'records', text: fmtInt(x.records), num: true },
      ] });
    }
    syncTable($('named-queues'), 'data-queue', queues);
  }

  const OUTCOME_TONES = { ok: 'good', function_error: 'warn', throttled: 'throttle', error: 'bad' };
  const START_TONES = { warm: 'warm', cold: 'cold', none: 'none' };

  function invocationRow(r, withError) {
    const cells = [
      { cls: 'finished', text: fmtClock(r.finished_unix_ms), title: fmtDateTime(r.finished_unix_ms) },
      { cls: 'function', text: str(r.account_id) + '/' + str(r.function_name) },
      { cls: 'version', text: str(r.version) },
      { cls: 'start', text: str(r.start), tone: START_TONES[r.start] || 'none' },
      { cls: 'outcome', text: str(r.outcome), tone: OUTCOME_TONES[r.outcome] || 'bad' },
      { cls: 'duration', text: fmtMs(r.duration_ms), num: true },
    ];
    if (withError) {
      cells.push({ cls: 'error', text: r.error === null || r.error === undefined ? DASH : String(r.error),
        title: r.error ? String(r.error) : '' });
    } else {
      const id = str(r.request_id);
      cells.push({ cls: 'request', text: id.length > 12 ? id.slice(0, 12) + '\u2026' : id, title: id });
    }
    return { key: str(r.request_id), title: withError ? 'request ' + str(r.request_id) : '', cells };
  }

  function renderInvocations(body) {
    const valid = (r) => r && typeof r === 'object';
    syncTable($('recent'), 'data-request-id',
      asArray(body.recent).filter(valid).map((r) => invocationRow(r, false)));
    syncTable($('errors'), 'data-request-id',
      asArray(body.errors).filter(valid).map((r) => invocationRow(r, true)));
  }

  /* ---------- chart ---------- */

  function seriesOptions(body) {
    const accounts = [];
    const functions = [];
    for (const a of asArray(body.accounts)) {
      if (a && typeof a === 'object') {
        accounts.push({ value: 'account:' + str(a.account_id), label: str(a.account_id), data: a });
      }
    }
    for (const f of asArray(body.functions)) {
      if (f && typeof f === 'object') {
        functions.push({
          value: 'function:' + str(f.account_id) + '/' + str(f.function_name),
          label: str(f.account_id) + ' / ' + str(f.function_name),
          data: f,
        });
      }
    }
    return { accounts, functions };
  }

  function syncSelect(select, opts) {
    const all = [...opts.accounts, ...opts.functions];
    const sig = JSON.stringify(all.map((o) => o.value));
    if (select.dataset.sig === sig) return;
    select.dataset.sig = sig;
    select.replaceChildren();
    const groups = [['Accounts', opts.accounts], ['Functions', opts.functions]];
    for (const [label, list] of groups) {
      if (list.length === 0) continue;
      const group = document.createElement('optgroup');
      group.label = label;
      for (const o of list) {
        const option = document.createElement('option');
        option.value = o.value;
        option.textContent = o.label;
        group.append(option);
      }
      select.append(group);
    }
    select.disabled = all.length === 0;
  }

  function renderChartData(body) {
    state.lastSeries = body;
    drawChart();
  }

  // The lines to draw for the selected option: concurrency, a limit and (accounts only) the
  // scaling ceiling, each with a legend label.
  function chartLines(selected, opts) {
    const d = selected.data;
    if (selected.value.startsWith('account:')) {
      return {
        concurrency: asArray(d.concurrency),
        limit: asArray(d.limit),
        limitLabel: 'Account limit',
        limitShort: 'limit',
        ceiling: asArray(d.scaling_ceiling),
        ceilingLabel: 'Scaling ceiling',
      };
    }
    const reserved = asArray(d.reserved);
    if (reserved.some(isNum)) {
      return {
        concurrency: asArray(d.concurrency),
        limit: reserved,
        limitLabel: 'Reserved concurrency',
        limitShort: 'reserved',
        ceiling: null,
      };
    }
    const account = opts.accounts.find((o) => o.data.account_id === d.account_id);
    return {
      concurrency: asArray(d.concurrency),
      limit: account ? asArray(account.data.limit) : null,
      limitLabel: 'Account limit (no reserved concurrency)',
      limitShort: 'account limit',
      ceiling: null,
    };
  }

  function maxOf(values) {
    let m = null;
    for (const v of values || []) if (isNum(v) && (m === null || v > m)) m = v;
    return m;
  }

  function lastOf(values) {
    for (let i = (values || []).length - 1; i >= 0; i--) if (isNum(values[i])) return values[i];
    return null;
  }

  // The smallest 1-2-5 step (2.5 from 25 up) that covers `top` in at most `ticks` steps.
  function niceStep(top, ticks) {
    for (let mag = 1; ; mag *= 10) {
      for (const f of mag >= 10 ? [1, 2, 2.5, 5] : [1, 2, 5]) {
        if (Math.ceil(top / (f * mag)) <= ticks) return f * mag;
      }
    }
  }

  /* The y range follows the concurrency; a limit or ceiling widens it only when it is within a
   * few times the peak, so that a limit of 1000 does not flatten a curve of 5. Lines beyond the
   * range are clipped and their values given in the legend. */
  function yScale(peak, refs) {
    const base = Math.max(peak, 1);
    const reach = Math.max(base * 4, 10);
    let top = base;
    for (const r of refs) {
      const m = maxOf(r);
      if (m !== null && m <= reach) top = Math.max(top, m);
    }
    top = Math.max(top * 1.1, 4);
    const step = niceStep(top, 5);
    return { max: Math.ceil(top / step) * step, step };
  }

  function drawChart() {
    const body = state.lastSeries;
    const svg = $('chart-svg');
    const select = $('chart-select');
    const opts = body ? seriesOptions(body) : { accounts: [], functions: [] };
    syncSelect(select, opts);

    const all = [...opts.accounts, ...opts.functions];
    let selected = all.find((o) => o.value === state.chartChoice) || opts.accounts[0] || all[0] || null;
    if (selected && select.value !== selected.value) select.value = selected.value;

    const box = $('chart-box');
    const width = Math.max(320, Math.floor(box.clientWidth));
    const height = Math.max(180, Math.floor(box.clientHeight));
    svg.setAttribute('width', String(width));
    svg.setAttribute('height', String(height));
    svg.setAttribute('viewBox', '0 0 ' + width + ' ' + height);

    const empty = $('chart-empty');
    if (!selected) {
      svg.setAttribute('data-series', '');
      svg.setAttribute('data-peak', '0');
      clearChart();
      setText(empty, 'No concurrency in the last ' + SERIES_SECONDS / 60 +
        ' minutes: a series appears once this frontend has an invocation in flight.');
      show(empty, true);
      renderLegend(null);
      return;
    }
    show(empty, false);

    const lines = chartLines(selected, opts);
    const conc = lines.concurrency;
    const n = Math.max(conc.length, 1);
    const peak = Math.round(maxOf(conc) || 0);
    svg.setAttribute('data-series', selected.value);
    svg.setAttribute('data-peak', String(peak));

    const m = { left: 46, right: 14, top: 12, bottom: 26 };
    const plotW = width - m.left - m.right;
    const plotH = height - m.top - m.bottom;
    const y = yScale(peak, [lines.limit, lines.ceiling].filter(Boolean));
    const xAt = (i) => m.left + (n > 1 ? (i / (n - 1)) * plotW : plotW);
    const yAt = (v) => m.top + plotH - (v / y.max) * plotH;
    const interval = isNum(body.interval_ms) && body.interval_ms > 0 ? body.interval_ms : 1000;
    const endMs = isNum(body.start_unix_ms) ? body.start_unix_ms + (n - 1) * interval : nowOf(body);
    state.chartGeometry = { m, plotW, plotH, n, xAt, yAt, interval, endMs, lines, yMax: y.max };

    drawGrid(y, n, interval, m, plotW, plotH, xAt, yAt);
    drawLine('concurrency', conc, xAt, yAt, m, plotH, true);
    drawLine('limit', lines.limit || [], xAt, yAt, m, plotH, false);
    drawLine('ceiling', lines.ceiling || [], xAt, yAt, m, plotH, false);
    drawDots([['concurrency', conc], ['limit', lines.limit || []], ['ceiling', lines.ceiling || []]],
      xAt, yAt, y.max);
    renderLegend({ lines, peak, yMax: y.max });
    drawHover();
  }

  function clearChart() {
    for (const id of ['chart-line-concurrency', 'chart-line-limit', 'chart-line-ceiling',
      'chart-area-concurrency']) {
      $(id).setAttribute('points', '');
    }
    for (const id of ['chart-clip-concurrency', 'chart-clip-limit', 'chart-clip-ceiling',
      'chart-grid', 'chart-dots', 'chart-axes', 'chart-hover']) {
      $(id).replaceChildren();
    }
    state.chartGeometry = null;
  }

  function drawGrid(y, n, interval, m, plotW, plotH, xAt, yAt) {
    const grid = $('chart-grid');
    const axes = $('chart-axes');
    grid.replaceChildren();
    axes.replaceChildren();
    const bottom = m.top + plotH;

    for (let v = 0; v <= y.max + 1e-9; v += y.step) {
      const py = yAt(v);
      grid.append(svgEl('line', { x1: m.left, x2: m.left + plotW, y1: py, y2: py,
        class: v === 0 ? 'grid-base' : 'grid-line' }));
      const label = svgEl('text', { x: m.left - 8, y: py + 4, class: 'tick tick-y' });
      label.textContent = String(v);
      axes.append(label);
    }

    // X ticks in whole seconds ago, at a step that gives four to six labels across the window.
    const spanS = ((n - 1) * interval) / 1000;
    const steps = [5, 10, 15, 30, 60, 120, 300, 600];
    const stepS = steps.find((s) => spanS / s <= 6) || 600;
    for (let ago = 0; ago <= spanS + 1e-9; ago += stepS) {
      const i = n - 1 - (ago * 1000) / interval;
      const px = xAt(i);
      if (ago > 0) {
        grid.append(svgEl('line', { x1: px, x2: px, y1: m.top, y2: bottom, class: 'grid-line grid-x' }));
      }
      const label = svgEl('text', { x: px, y: bottom + 17, class: 'tick tick-x' });
      if (ago === 0) label.textContent = 'now';
      else if (ago % 60 === 0) label.textContent = '\u2212' + ago / 60 + ' min';
      else label.textContent = '\u2212' + ago + ' s';
      if (ago === 0) label.setAttribute('text-anchor', 'end');
      else if (Math.abs(px - m.left) < 20) label.setAttribute('text-anchor', 'start');
      axes.append(label);
    }
  }

  // Index ranges [a, b] of consecutive non-null values.
  function runsOf(values) {
    const runs = [];
    let start = -1;
    for (let i = 0; i <= values.length; i++) {
      const ok = i < values.length && isNum(values[i]);
      if (ok && start < 0) start = i;
      if (!ok && start >= 0) {
        runs.push([start, i - 1]);
        start = -1;
      }
    }
    return runs;
  }

  /* A polyline cannot break, so it carries every non-null point and a clip path made of one
   * rectangle per run of non-null values hides the segments that bridge a gap. The same clip keeps
   * lines above the y range out of the picture. */
  function drawLine(name, values, xAt, yAt, m, plotH, withArea) {
    const line = $('chart-line-' + name);
    const clip = $('chart-clip-' + name);
    clip.replaceChildren();
    const pts = [];
    for (let i = 0; i < values.length; i++) {
      if (isNum(values[i])) pts.push(xAt(i).toFixed(1) + ',' + yAt(values[i]).toFixed(1));
    }
    line.setAttribute('points', pts.join(' '));
    const runs = runsOf(values);
    const top = m.top - 2;
    const h = plotH + 4;
    for (const [a, b] of runs) {
      if (a === b) continue;
      const x = xAt(a);
      clip.append(svgEl('rect', { x: x.toFixed(1), y: top, width: (xAt(b) - x).toFixed(1), height: h }));
    }
    if (withArea) {
      const area = $('chart-area-' + name);
      if (pts.length === 0) {
        area.setAttribute('points', '');
      } else {
        const base = (m.top + plotH).toFixed(1);
        const first = runs[0][0];
        const last = runs[runs.length - 1][1];
        area.setAttribute('points', xAt(first).toFixed(1) + ',' + base + ' ' + pts.join(' ') + ' ' +
          xAt(last).toFixed(1) + ',' + base);
      }
    }
  }

  // A lone value between two gaps has no segment to show; it gets a dot instead.
  function drawDots(series, xAt, yAt, yMax) {
    const dots = $('chart-dots');
    dots.replaceChildren();
    for (const [name, values] of series) {
      for (const [a, b] of runsOf(values)) {
        if (a !== b || values[a] > yMax) continue;
        dots.append(svgEl('circle', { cx: xAt(a).toFixed(1), cy: yAt(values[a]).toFixed(1), r: 2.5,
          class: 'chart-dot dot-' + name }));
      }
    }
  }

  function legendItem(kind, label, value, note) {
    const item = el('span', 'legend-item legend-' + kind);
    item.append(el('span', 'swatch swatch-' + kind));
    item.append(el('span', 'legend-label', label));
    item.append(el('span', 'legend-value', value));
    if (note) item.append(el('span', 'legend-note', note));
    return item;
  }

  function renderLegend(info) {
    const legend = $('chart-legend');
    legend.replaceChildren();
    if (!info) return;
    const { lines, peak, yMax } = info;
    legend.append(legendItem('concurrency', 'Concurrency', 'now ' + fmtInt(lastOf(lines.concurrency)) +
      ', peak ' + peak));
    const refs = [['limit', lines.limit, lines.limitLabel]];
    if (lines.ceiling) refs.push(['ceiling', lines.ceiling, lines.ceilingLabel]);
    for (const [kind, values, label] of refs) {
      if (!values) {
        legend.append(legendItem(kind, label, DASH, 'no series'));
        continue;
      }
      const now = lastOf(values);
      const current = values.length > 0 && isNum(values[values.length - 1]);
      let note = '';
      if (now === null) note = values.length ? 'counting did not answer' : '';
      else if (!current) note = 'last known; counting does not answer';
      else if (now > yMax) note = 'above the scale';
      legend.append(legendItem(kind, label, now === null ? DASH : fmtInt(now), note));
    }
  }

  function onChartMove(event) {
    const svg = $('chart-svg');
    const rect = svg.getBoundingClientRect();
    state.hoverX = event.clientX - rect.left;
    drawHover();
  }

  function onChartLeave() {
    state.hoverX = null;
    drawHover();
  }

  function drawHover() {
    const layer = $('chart-hover');
    layer.replaceChildren();
    const readout = $('chart-readout');
    show(readout, false);
    const g = state.chartGeometry;
    if (!g || state.hoverX === null || g.n < 1) return;
    const { m, plotW, plotH, n, xAt, yAt, lines } = g;
    if (state.hoverX < m.left - 4 || state.hoverX > m.left + plotW + 4) return;
    const i = Math.round(n > 1 ? ((state.hoverX - m.left) / plotW) * (n - 1) : 0);
    const idx = Math.max(0, Math.min(n - 1, i));
    const px = xAt(idx);
    layer.append(svgEl('line', { x1: px, x2: px, y1: m.top, y2: m.top + plotH, class: 'hover-line' }));
    const c = lines.concurrency[idx];
    if (isNum(c)) layer.append(svgEl('circle', { cx: px, cy: yAt(c), r: 3.5, class: 'hover-dot' }));
    const at = g.endMs - (n - 1 - idx) * g.interval;
    const parts = [fmtClock(at) + ' (' + fmtAgo(at, g.endMs) + ')', 'concurrency ' + fmtInt(c)];
    if (lines.limit) parts.push(lines.limitShort + ' ' + fmtInt(lines.limit[idx]));
    if (lines.ceiling) parts.push('ceiling ' + fmtInt(lines.ceiling[idx]));
    setText(readout, parts.join(' \u00b7 '));
    show(readout, true);
  }

  function onChartSelect() {
    state.chartChoice = $('chart-select').value;
    drawChart();
  }

  /* ---------- start ---------- */

  function init() {
    $('login-form').addEventListener('submit', onLoginSubmit);
    $('logout-button').addEventListener('click', onLogout);
    $('chart-select').addEventListener('change', onChartSelect);
    const svg = $('chart-svg');
    svg.addEventListener('mousemove', onChartMove);
    svg.addEventListener('mouseleave', onChartLeave);
    let resizeTimer = null;
    window.addEventListener('resize', () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        if (state.lastSeries) drawChart();
      }, 100);
    });
    checkSession();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
