// Tally dashboard: reads the Countly read API (/o) of the Tally that serves it, with
// fetch (default) or JSONP (#transport=jsonp), and draws with uPlot. Keys stay in the URL
// fragment and local storage; data is always inserted as text, never as HTML.
(function () {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const DAY = 86400000;
  const state = { appKey: '', apiKey: '', period: '7days', transport: 'fetch', event: '', segment: '', app: null };
  const PERIODS = ['today', '7days', '30days', '12months'];
  const BREAKDOWNS = [
    ['Countries', 'locations', 'countries'],
    ['Devices', 'devices', 'devices'],
    ['Carriers', 'carriers', 'carriers'],
    ['Operating systems', 'device_details', 'os'],
    ['OS versions', 'device_details', 'os_versions'],
    ['Resolutions', 'device_details', 'resolutions'],
    ['App versions', 'app_versions', 'app_versions'],
  ];
  let redraw = [];

  class HttpError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  // ---- keys and URL ----
  function readFragment() {
    const h = new URLSearchParams(location.hash.slice(1));
    let stored = {};
    try { stored = JSON.parse(localStorage.getItem('tally-keys') || '{}'); } catch (e) { stored = {}; }
    state.appKey = h.get('app_key') || stored.app_key || '';
    state.apiKey = h.get('api_key') || stored.api_key || '';
    state.period = PERIODS.includes(h.get('period')) ? h.get('period') : state.period;
    state.transport = h.get('transport') === 'jsonp' ? 'jsonp' : 'fetch';
  }

  function writeFragment() {
    const h = new URLSearchParams({ app_key: state.appKey, api_key: state.apiKey, period: state.period });
    if (state.transport === 'jsonp') h.set('transport', 'jsonp');
    history.replaceState(null, '', '#' + h.toString());
    localStorage.setItem('tally-keys', JSON.stringify({ app_key: state.appKey, api_key: state.apiKey }));
  }

  // ---- the read API ----
  let jsonpSeq = 0;
  function jsonp(url) {
    return new Promise((resolve, reject) => {
      const name = '__tallyCb' + (++jsonpSeq);
      const script = document.createElement('script');
      const cleanup = () => { delete window[name]; script.remove(); };
      window[name] = (data) => { cleanup(); resolve(data); };
      script.onerror = () => { cleanup(); reject(new HttpError(0, 'The request failed: a wrong key, or Tally is unavailable.')); };
      script.src = url + '&callback=' + name;
      document.head.appendChild(script);
    });
  }

  async function o(params) {
    const q = new URLSearchParams({ app_key: state.appKey, api_key: state.apiKey, noescape: '1', ...params });
    const url = '/o?' + q.toString();
    if (state.transport === 'jsonp') return jsonp(url);
    const r = await fetch(url, { cache: 'no-store' });
    let body = {};
    try { body = await r.json(); } catch (e) { body = {}; }
    if (!r.ok) throw new HttpError(r.status, body.result || r.statusText);
    return body;
  }

  // ---- calendar dates (UTC arithmetic on dates of the app's timezone) ----
  function parseDay(s) { const [y, m, d] = s.split('-').map(Number); return Date.UTC(y, m - 1, d); }
  function parts(ms) { const d = new Date(ms); return [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate()]; }
  function monthStart(ms, back) { const [y, m] = parts(ms); return Date.UTC(y, m - 1 - back, 1); }
  // An instant on a local day of the app: its noon.
  function instant(dayMs) { return dayMs + 12 * 3600000 - state.app.utc_offset_minutes * 60000; }
  function range(from, to) { return JSON.stringify([instant(from), instant(to)]); }

  // What each period reads and how it buckets: `kind` is the chart's bucket.
  function periodSpec(period, today) {
    if (period === 'today') {
      return { kind: 'hour', cur: { param: 'hour', from: today, to: today }, prev: { param: 'yesterday', from: today - DAY, to: today - DAY } };
    }
    if (period === '12months') {
      const from = monthStart(today, 11);
      const pfrom = monthStart(today, 23);
      const pto = from - DAY;
      return { kind: 'month', cur: { param: range(from, today), from, to: today }, prev: { param: range(pfrom, pto), from: pfrom, to: pto } };
    }
    const n = parseInt(period, 10);
    const from = today - (n - 1) * DAY;
    const pfrom = from - n * DAY;
    const pto = from - DAY;
    return { kind: 'day', cur: { param: period, from, to: today }, prev: { param: range(pfrom, pto), from: pfrom, to: pto } };
  }

  // The buckets of a range: x (seconds) and the path of its node in the answer.
  function buckets(kind, r) {
    const out = [];
    if (kind === 'hour') {
      const [y, m, d] = parts(r.from);
      for (let h = 0; h < 24; h++) out.push({ x: (r.from + h * 3600000) / 1000, path: [y, m, d, h] });
    } else if (kind === 'day') {
      for (let t = r.from; t <= r.to; t += DAY) { const [y, m, d] = parts(t); out.push({ x: t / 1000, path: [y, m, d] }); }
    } else {
      for (let t = r.from; t <= r.to; t = monthStart(t, -1)) { const [y, m] = parts(t); out.push({ x: t / 1000, path: [y, m] }); }
    }
    return out;
  }

  // The nodes totals are summed over: days (or months); for one day, that day.
  function totalNodes(kind, r) {
    if (kind === 'hour') { const [y, m, d] = parts(r.from); return [[y, m, d]]; }
    return buckets(kind, r).map((b) => b.path);
  }

  function at(obj, path) {
    let node = obj;
    for (const p of path) {
      if (!node || typeof node !== 'object') return undefined;
      node = node[String(p)];
    }
    return node;
  }
  const num = (v) => (typeof v === 'number' ? v : 0);
  const isEmpty = (v) => !v || Object.keys(v).length === 0;

  function sessionTotals(answer, spec, r) {
    const nodes = totalNodes(spec.kind, r).map((p) => at(answer, p) || {});
    const sum = (f) => nodes.reduce((a, n) => a + num(n[f]), 0);
    const peak = nodes.reduce((a, n) => Math.max(a, num(n.u)), 0);
    return { t: sum('t'), n: sum('n'), d: sum('d'), u: peak };
  }

  // ---- formatting ----
  const fmt = (n) => (Math.round(n * 100) / 100).toLocaleString('en-US');
  function duration(secs) {
    if (!isFinite(secs) || secs <= 0) return '0s';
    const m = Math.floor(secs / 60);
    const s = Math.round(secs % 60);
    return m > 0 ? m + 'm ' + s + 's' : s + 's';
  }
  function change(el, cur, prev) {
    el.className = 'change';
    if (prev === 0 && cur === 0) { el.textContent = 'no change'; return; }
    if (prev === 0) { el.textContent = 'new vs previous period'; el.classList.add('up'); return; }
    const pct = Math.round(((cur - prev) / prev) * 100);
    el.textContent = (pct > 0 ? '+' : '') + pct + '% vs previous period';
    if (pct !== 0) el.classList.add(pct > 0 ? 'up' : 'down');
  }

  // ---- charts ----
  function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  // Tick labels in the app's calendar (the x values are its dates at UTC midnight).
  function label(kind, ts) {
    if (kind === 'minute') {
      // Minutes are UTC instants: show them on the app's clock.
      const local = new Date(ts * 1000 + state.app.utc_offset_minutes * 60000);
      return String(local.getUTCHours()).padStart(2, '0') + ':' + String(local.getUTCMinutes()).padStart(2, '0');
    }
    const d = new Date(ts * 1000);
    if (kind === 'hour') return String(d.getUTCHours()).padStart(2, '0') + ':00';
    if (kind === 'day') return (d.getUTCMonth() + 1) + '/' + d.getUTCDate();
    return MONTHS[d.getUTCMonth()] + ' ' + String(d.getUTCFullYear()).slice(2);
  }

  function chart(el, kind, xs, defs) {
    const draw = () => {
      el.textContent = '';
      const axis = { stroke: cssVar('--muted'), grid: { stroke: cssVar('--line') }, ticks: { stroke: cssVar('--line') } };
      // One tick per bucket, thinned to at most 8.
      const step = Math.max(1, Math.ceil(xs.length / 8));
      const xAxis = {
        ...axis,
        splits: () => xs.filter((_, i) => i % step === 0),
        values: (u, splits) => splits.map((ts) => label(kind, ts)),
      };
      const opts = {
        width: Math.max(el.clientWidth, 280),
        height: 240,
        scales: { x: { time: false } },
        axes: [xAxis, axis],
        series: [{}].concat(defs.map((d) => ({ label: d.label, stroke: cssVar(d.color), width: 2, points: { show: xs.length < 40 } }))),
      };
      new uPlot(opts, [xs].concat(defs.map((d) => d.data)), el);
    };
    draw();
    redraw.push(draw);
  }

  function table(el, rows, total) {
    const body = el.querySelector('tbody');
    body.textContent = '';
    for (const [value, count] of rows) {
      const tr = document.createElement('tr');
      tr.dataset.value = value;
      tr.dataset.count = String(count);
      const name = document.createElement('td');
      name.textContent = value;
      const bar = document.createElement('span');
      bar.className = 'bar';
      bar.style.width = (total ? (100 * count) / total : 0) + '%';
      name.appendChild(bar);
      const c = document.createElement('td');
      c.textContent = fmt(count);
      const share = document.createElement('td');
      share.textContent = total ? Math.round((1000 * count) / total) / 10 + '%' : '–';
      tr.append(name, c, share);
      body.appendChild(tr);
    }
  }

  // Per-value counts of `field` over the period's nodes, largest first.
  function valueCounts(answer, values, spec, r, field) {
    const nodes = totalNodes(spec.kind, r).map((p) => at(answer, p) || {});
    const rows = values.map((v) => [v, nodes.reduce((a, n) => a + num((n[v] || {})[field]), 0)]).filter((x) => x[1] > 0);
    rows.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    return rows;
  }

  // ---- sections ----
  async function renderSessions(spec) {
    const [cur, prev] = await Promise.all([o({ method: 'sessions', period: spec.cur.param }), o({ method: 'sessions', period: spec.prev.param })]);
    const a = sessionTotals(cur, spec, spec.cur);
    const b = sessionTotals(prev, spec, spec.prev);
    $('total-sessions').textContent = fmt(a.t);
    $('total-new').textContent = fmt(a.n);
    $('total-unique').textContent = fmt(a.u);
    $('unique-label').textContent = spec.kind === 'hour' ? 'Unique users' : spec.kind === 'day' ? 'Unique users (busiest day)' : 'Unique users (busiest month)';
    $('avg-duration').textContent = duration(a.t ? a.d / a.t : 0);
    change($('change-sessions'), a.t, b.t);
    change($('change-new'), a.n, b.n);
    change($('change-unique'), a.u, b.u);
    change($('change-duration'), a.t ? a.d / a.t : 0, b.t ? b.d / b.t : 0);
    const bs = buckets(spec.kind, spec.cur);
    const series = (f) => bs.map((x) => num((at(cur, x.path) || {})[f]));
    chart($('sessions-chart'), spec.kind, bs.map((x) => x.x), [
      { label: 'Sessions', color: '--s1', data: series('t') },
      { label: 'New users', color: '--s2', data: series('n') },
      { label: 'Unique users', color: '--s3', data: series('u') },
    ]);
    return { cur, totals: a };
  }

  async function renderEvents(spec) {
    const info = await o({ method: 'get_events' });
    const list = info.list || [];
    const select = $('event-select');
    $('no-events').hidden = list.length > 0;
    $('events-chart').hidden = list.length === 0;
    if (!list.length) { $('event-count').textContent = '0'; $('event-sum').textContent = '0'; return; }
    if (!list.includes(state.event)) state.event = list[0];
    select.textContent = '';
    for (const e of list) { const opt = document.createElement('option'); opt.value = e; opt.textContent = e; select.appendChild(opt); }
    select.value = state.event;
    const segments = ((info.segments || {})[state.event]) || [];
    const segSelect = $('segment-select');
    segSelect.textContent = '';
    const none = document.createElement('option'); none.value = ''; none.textContent = '—'; segSelect.appendChild(none);
    for (const s of segments) { const opt = document.createElement('option'); opt.value = s; opt.textContent = s; segSelect.appendChild(opt); }
    if (!segments.includes(state.segment)) state.segment = '';
    segSelect.value = state.segment;

    const answer = await o({ method: 'events', event: state.event, period: spec.cur.param });
    const nodes = totalNodes(spec.kind, spec.cur).map((p) => at(answer, p) || {});
    const count = nodes.reduce((a, n) => a + num(n.c), 0);
    const sum = nodes.reduce((a, n) => a + num(n.s), 0);
    $('event-count').textContent = fmt(count);
    $('event-sum').textContent = fmt(sum);
    const bs = buckets(spec.kind, spec.cur);
    const series = (f) => bs.map((x) => num((at(answer, x.path) || {})[f]));
    chart($('events-chart'), spec.kind, bs.map((x) => x.x), [
      { label: 'Count', color: '--s1', data: series('c') },
      { label: 'Sum', color: '--s2', data: series('s') },
    ]);
    const tableEl = $('segment-table');
    tableEl.hidden = !state.segment;
    if (state.segment) {
      const seg = await o({ method: 'events', event: state.event, segmentation: state.segment, period: spec.cur.param });
      const values = ((seg.meta || {})[state.segment]) || [];
      const rows = valueCounts(seg, values, spec, spec.cur, 'c');
      table(tableEl, rows.slice(0, 20), rows.reduce((a, r) => a + r[1], 0));
    }
  }

  // The minute rollups: session starts, event occurrences, active devices.
  async function renderLive() {
    const live = await o({ method: 'live' });
    const points = live.points || [];
    $('live-sessions').textContent = fmt(live.sessions || 0);
    $('live-events').textContent = fmt(live.events || 0);
    $('live-devices').textContent = fmt(points.reduce((a, p) => Math.max(a, p[3]), 0));
    chart($('live-chart'), 'minute', points.map((p) => p[0] / 1000), [
      { label: 'Sessions', color: '--s1', data: points.map((p) => p[1]) },
      { label: 'Events', color: '--s2', data: points.map((p) => p[2]) },
      { label: 'Active devices (est.)', color: '--s3', data: points.map((p) => p[3]) },
    ]);
  }

  async function renderBreakdowns(spec) {
    const methods = [...new Set(BREAKDOWNS.map((b) => b[1]))];
    const answers = {};
    await Promise.all(methods.map(async (m) => { answers[m] = await o({ method: m, period: spec.cur.param }); }));
    const box = $('breakdowns');
    box.textContent = '';
    for (const [title, method, list] of BREAKDOWNS) {
      const answer = answers[method];
      const values = ((answer.meta || {})[list]) || [];
      const rows = valueCounts(answer, values, spec, spec.cur, 't');
      if (!rows.length) continue;
      const div = document.createElement('div');
      div.dataset.breakdown = list;
      const h = document.createElement('h2');
      h.textContent = title;
      const t = document.createElement('table');
      t.className = 'breakdown';
      t.innerHTML = '<thead><tr><th>Value</th><th>Sessions</th><th>Share</th></tr></thead><tbody></tbody>';
      div.append(h, t);
      box.appendChild(div);
      table(t, rows.slice(0, 10), rows.reduce((a, r) => a + r[1], 0));
    }
  }

  // ---- states ----
  function showError(e) {
    const el = $('error');
    let msg = e.message || String(e);
    if (e.status === 401 || e.status === 400) msg = 'The app key or read key is not right (' + msg + '). Check them and open the app again.';
    else if (e.status === 503) msg = 'Tally cannot reach its database right now (' + msg + '). The numbers come back when it does.';
    else if (e.status === 429) msg = 'Too many requests; try again in a moment.';
    el.textContent = msg;
    el.hidden = false;
    document.body.dataset.state = 'error';
    if (e.status === 401 || e.status === 400 || e.status === 0) $('keys').hidden = false;
  }

  function showEmpty() {
    const origin = location.origin;
    const curl = 'curl "' + origin + '/i?app_key=' + encodeURIComponent(state.appKey) + '&device_id=first-device&begin_session=1"';
    $('curl').textContent = curl;
    $('empty').hidden = false;
    document.body.dataset.state = 'empty';
  }

  async function load() {
    document.body.dataset.ready = '0';
    redraw = [];
    for (const id of ['error', 'empty', 'content', 'keys']) $(id).hidden = true;
    for (const b of document.querySelectorAll('#periods button')) b.setAttribute('aria-pressed', String(b.dataset.period === state.period));
    if (!state.appKey || !state.apiKey) {
      $('keys').hidden = false;
      document.body.dataset.state = 'keys';
      document.body.dataset.ready = '1';
      return;
    }
    try {
      state.app = await o({ method: 'app' });
      $('app-name').textContent = state.app.name;
      const today = parseDay(state.app.today);
      const spec = periodSpec(state.period, today);
      const everything = await o({ method: 'sessions', period: range(monthStart(today, 23), today) });
      const events = await o({ method: 'get_events' });
      if (isEmpty(everything) && !(events.list || []).length) {
        showEmpty();
      } else {
        $('content').hidden = false;
        await renderLive();
        await renderSessions(spec);
        await renderEvents(spec);
        await renderBreakdowns(spec);
        document.body.dataset.state = 'content';
      }
    } catch (e) {
      showError(e);
    }
    document.body.dataset.ready = '1';
  }

  // ---- wiring ----
  for (const b of document.querySelectorAll('#periods button')) {
    b.addEventListener('click', () => { state.period = b.dataset.period; writeFragment(); load(); });
  }
  $('event-select').addEventListener('change', async (e) => {
    state.event = e.target.value;
    state.segment = '';
    document.body.dataset.ready = '0';
    try { await renderEvents(periodSpec(state.period, parseDay(state.app.today))); } catch (err) { showError(err); }
    document.body.dataset.ready = '1';
  });
  $('segment-select').addEventListener('change', async (e) => {
    state.segment = e.target.value;
    document.body.dataset.ready = '0';
    try { await renderEvents(periodSpec(state.period, parseDay(state.app.today))); } catch (err) { showError(err); }
    document.body.dataset.ready = '1';
  });
  $('keys').addEventListener('submit', (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    state.appKey = String(f.get('app_key') || '').trim();
    state.apiKey = String(f.get('api_key') || '').trim();
    writeFragment();
    load();
  });
  $('copy-curl').addEventListener('click', () => { if (navigator.clipboard) navigator.clipboard.writeText($('curl').textContent); });
  let resizeTimer = 0;
  window.addEventListener('resize', () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => redraw.forEach((d) => d()), 150); });
  window.addEventListener('hashchange', () => { readFragment(); load(); });
  // Light or dark: the charts take their colours from the page, so draw them again.
  window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => redraw.forEach((d) => d()));

  readFragment();
  if (state.appKey && state.apiKey) writeFragment();
  load();
})();
