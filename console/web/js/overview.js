// Overview: readiness and its problems, nodes and the meta leader, every
// stream and bucket, the service instances, and 15 minutes of ingest rate,
// drops and acknowledgement latency by level.
import { api, h, replace, poll, num, bytes, badge, errorBox, fixed } from './lib.js';
import { Chart } from './chart.js';

const WINDOW = 15 * 60 * 1000;
const LEVELS = [['async', '#4e9af1'], ['quorum', '#38b27a'], ['all', '#e0a030']];

export default function overview(root) {
  const health = h('section', { class: 'panel', id: 'health' });
  const nodes = h('section', { class: 'panel', id: 'nodes' });
  const streams = h('section', { class: 'panel wide', id: 'streams' });
  const services = h('section', { class: 'panel wide', id: 'services' });
  const ingest = new Chart({ title: 'Ingest, events/s', height: 130 });
  const drops = new Chart({ title: 'Dropped and failed, events/s', height: 130 });
  const ack = new Chart({ title: 'Acknowledgement latency by level (p50 dashed, p99 solid)', height: 130, yFormat: (v) => (v < 10 ? v.toPrecision(2) : v.toFixed(0)) + 'ms' });
  const charts = h('section', { class: 'charts', id: 'charts' }, ingest.el, drops.el, ack.el);
  root.append(h('div', { class: 'grid-top' }, health, nodes), charts, streams, services);

  const series = { times: [], ingest: [], dropped: [], errors: [], ack: {} };
  for (const [l] of LEVELS) series.ack[l] = { p50: [], p99: [] };
  let since = 0;

  const drawCharts = () => {
    const now = series.times.length ? series.times[series.times.length - 1] : Date.now();
    const xMin = now - WINDOW;
    const xs = series.times;
    ingest.update({ xMin, xMax: now, series: [{ name: 'stored', color: '#4e9af1', xs, ys: series.ingest }] });
    drops.update({ xMin, xMax: now, series: [
      { name: 'dropped', color: '#e5534b', xs, ys: series.dropped },
      { name: 'errors', color: '#e0a030', xs, ys: series.errors },
    ] });
    const ackSeries = [];
    for (const [l, c] of LEVELS) {
      ackSeries.push({ name: l + ' p99', color: c, xs, ys: series.ack[l].p99 });
      ackSeries.push({ name: l + ' p50', color: c, xs, ys: series.ack[l].p50, dash: '4 3' });
    }
    ack.update({ xMin, xMax: now, series: ackSeries });
  };

  const pollSeries = async (signal) => {
    const s = await api('series?since=' + since, { signal });
    const n = (s.times || []).length;
    if (!n) { drawCharts(); return; }
    since = s.times[n - 1];
    series.times.push(...s.times);
    series.ingest.push(...s.ingest_per_s);
    series.dropped.push(...s.dropped_per_s);
    series.errors.push(...(s.errors_per_s || s.times.map(() => null)));
    for (const [l] of LEVELS) {
      const a = (s.ack_ms || {})[l] || {};
      series.ack[l].p50.push(...(a.p50 || s.times.map(() => null)));
      series.ack[l].p99.push(...(a.p99 || s.times.map(() => null)));
    }
    // Keep 15 minutes.
    const cut = since - WINDOW;
    let drop = 0;
    while (drop < series.times.length && series.times[drop] < cut) drop++;
    if (drop) {
      series.times.splice(0, drop);
      series.ingest.splice(0, drop);
      series.dropped.splice(0, drop);
      series.errors.splice(0, drop);
      for (const [l] of LEVELS) { series.ack[l].p50.splice(0, drop); series.ack[l].p99.splice(0, drop); }
    }
    drawCharts();
  };

  // The overview gathers every stream's state through JetStream, which
  // takes seconds when the cluster has just lost its quorum: exactly when
  // an operator looks. So when it is slow or fails, readiness comes from
  // /readyz itself meanwhile (it answers at once when a node has lost its
  // peers), and the rest of the page waits. /readyz is asked 100ms into
  // an overview that has not answered, then every half second until it
  // does, without waiting for the last answer: one asked as the quorum
  // went may wait for stream look-ups to time out, and a later one may
  // already know.
  let degraded = false;
  const pollOverview = async (signal) => {
    let o;
    let settled = false;
    let slow;
    const fallback = async (err) => {
      try {
        const r = await fetch('/readyz', { cache: 'no-store', signal });
        const text = await r.text();
        // Ready: nothing the last overview did not say. Not ready: say
        // so now, with /readyz's reasons.
        if ((settled && !err) || (r.ok && !err)) return;
        const problems = r.ok ? [] : text.replace(/^not ready: /, '').split('\n').map((l) => l.trim()).filter(Boolean);
        renderHealth(health, { ready: r.ok, problems, time: new Date().toISOString(), partial: err ? err.message : 'the overview is waiting for JetStream' });
      } catch { /* the next poll retries */ }
    };
    const check = () => {
      if (settled) return;
      fallback(null);
      slow = setTimeout(check, 500);
    };
    slow = setTimeout(check, 100);
    try {
      o = await api('overview', { signal });
    } catch (e) {
      clearTimeout(slow);
      degraded = true;
      if (e.name !== 'AbortError') await fallback(e);
      throw e;
    } finally {
      settled = true;
      clearTimeout(slow);
    }
    degraded = !o.ready || (o.nodes || []).some((n) => !n.running);
    renderHealth(health, o);
    renderNodes(nodes, o);
    renderStreams(streams, o);
  };

  const pollServices = async (signal) => {
    try {
      const s = await api('services', { signal });
      renderServices(services, s.services || []);
    } catch (e) {
      if (e.name !== 'AbortError') replace(services, h('h2', null, 'Service instances'), errorBox(e));
      throw e;
    }
  };

  // While something is wrong (not ready, a node stopped) the overview is
  // asked twice as often: an operator watching an incident sees it move.
  const polls = [poll(pollOverview, () => (degraded ? 500 : 1000)), poll(pollSeries, 1000), poll(pollServices, 5000)];
  return () => polls.forEach((p) => p.stop());
}

function renderHealth(el, o) {
  const probs = o.problems || [];
  replace(el,
    h('h2', null, 'Health'),
    h('div', { class: 'big ' + (o.ready ? 'good' : 'bad'), id: 'ready', 'data-ready': String(!!o.ready) }, o.ready ? 'Ready' : 'Not ready'),
    o.partial ? h('div', { class: 'error', id: 'overview-partial' }, 'From /readyz; stream and node details delayed: ' + o.partial) : null,
    o.partial ? null : h('div', { class: 'kv' },
      h('span', null, 'Meta leader'), h('b', { id: 'meta-leader' }, o.meta_leader || '–'),
      o.meta_leader_note ? [h('span', null, ''), h('span', { class: 'muted' }, o.meta_leader_note)] : null,
      h('span', null, 'Cluster'), h('span', null, o.embedded ? 'embedded in this process' : 'external'),
      h('span', null, 'As of'), h('span', null, o.time ? new Date(o.time).toISOString().slice(11, 19) + 'Z' : '–')),
    probs.length
      ? h('ul', { class: 'problems', id: 'problems' }, probs.map((p) => h('li', null, p)))
      : h('p', { class: 'muted', id: 'problems' }, '/readyz lists no problems.'));
}

function renderNodes(el, o) {
  const rows = (o.nodes || []).map((n) => h('tr', { 'data-node': n.name, 'data-running': String(!!n.running) },
    h('td', null, n.name, n.meta_leader ? h('span', { class: 'star', title: 'meta leader' }, ' ★') : null),
    h('td', null, n.running ? badge('running', 'alive') : badge('stopped', 'dead')),
    h('td', { class: 'mono' }, n.url || '')));
  replace(el, h('h2', null, 'Nodes ', h('span', { class: 'count' }, String((o.nodes || []).length))),
    h('table', { class: 'tbl' }, h('thead', null, h('tr', null, h('th', null, 'node'), h('th', null, 'state'), h('th', null, 'client URL'))),
      h('tbody', null, rows)));
}

function renderStreams(el, o) {
  const rows = (o.streams || []).map((s) => {
    const peers = s.peers || [];
    const current = peers.filter((p) => p.current).length + (s.leader ? 1 : 0);
    const lag = peers.reduce((m, p) => Math.max(m, p.lag || 0), 0);
    return h('tr', { 'data-stream': s.name, class: s.problem ? 'row-bad' : null },
      h('td', null, s.kind === 'kv' ? h('span', null, s.bucket, h('span', { class: 'muted' }, ' KV')) : s.name),
      h('td', { 'data-k': 'leader' }, s.leader || badge('none', 'dead')),
      h('td', { class: 'num', 'data-k': 'replicas' }, s.replicas),
      h('td', { class: 'num' }, s.leader ? current + '/' + s.replicas : '–'),
      h('td', null, peers.map((p) => h('span', { class: 'peer ' + (p.current ? 'ok' : 'behind'), title: `lag ${p.lag}, active ${fixed(p.active_ms, 1)} ms ago` }, p.name))),
      h('td', { class: 'num', 'data-k': 'lag' }, num(lag)),
      h('td', { class: 'num', 'data-k': 'messages' }, num(s.messages)),
      h('td', { class: 'num', 'data-k': 'bytes' }, bytes(s.bytes)),
      h('td', { class: 'problem' }, s.problem || ''));
  });
  replace(el, h('h2', null, 'Streams and buckets ', h('span', { class: 'count' }, String(rows.length))),
    h('table', { class: 'tbl' },
      h('thead', null, h('tr', null, ['name', 'leader', 'R', 'current', 'followers', 'max lag', 'messages', 'bytes', 'problem'].map((c, i) =>
        h('th', { class: i === 2 || (i >= 3 && i <= 7 && i !== 4) ? 'num' : null }, c)))),
      h('tbody', null, rows)));
}

function renderServices(el, list) {
  const sorted = [...list].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  replace(el, h('h2', null, 'Service instances ', h('span', { class: 'count' }, String(list.length))),
    h('table', { class: 'tbl' },
      h('thead', null, h('tr', null, h('th', null, 'service'), h('th', null, 'instance'), h('th', null, 'version'), h('th', { class: 'num' }, 'weight'), h('th', null, 'weight reason'))),
      h('tbody', null, sorted.map((s) => h('tr', { 'data-instance': s.id },
        h('td', null, s.name), h('td', { class: 'mono' }, h('a', { href: `#/members/${s.name}/${s.id}` }, s.id)), h('td', null, s.version || ''),
        h('td', { class: 'num' }, s.weight == null ? '–' : num(s.weight)), h('td', null, s.weight_reason || ''))))));
}


