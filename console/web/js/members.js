// Members: the detector's table, filtered, sorted and paged by the server
// (10,000 instances page as fast as 10), and one instance's heartbeat
// intervals, phi and transitions.
import { api, h, rows, replace, poll, num, fixed, pct, ago, time, badge, errorBox, setParams, listParams, go } from './lib.js';
import { Chart } from './chart.js';

const PAGE = 100;
// FILTERS are the list's filters in its route and its request.
const FILTERS = ['service', 'state', 'q'];
const COLS = [
  ['service', 'service'], ['instance', 'key'], ['state', 'state'], ['phi', 'phi'],
  ['quality', 'quality'], ['failure p', 'failure_probability'], ['last seen', 'last_seen'],
];

export default function members(root, { parts, params }) {
  if (parts.length >= 2) return one(root, parts[0], parts.slice(1).join('/'));
  const st = {
    service: params.get('service') || '', state: params.get('state') || '', q: params.get('q') || '',
    sort: params.get('sort') || 'key', order: params.get('order') || 'asc', offset: +params.get('offset') || 0,
  };
  const service = h('input', { id: 'm-service', placeholder: 'service', value: st.service, size: 16 });
  const q = h('input', { id: 'm-q', placeholder: 'service.instance contains', value: st.q, size: 22 });
  const state = h('select', { id: 'm-state' }, ['', 'alive', 'suspect', 'dead', 'left'].map((s) => h('option', { value: s, selected: s === st.state }, s || 'any state')));
  const form = h('form', { class: 'bar' }, h('label', null, 'Service ', service), h('label', null, 'Find ', q), state, h('button', { type: 'submit' }, 'Apply'));
  const counts = h('div', { class: 'bar counts', id: 'm-counts' });
  const tableBox = h('div', { id: 'm-table' });
  const pager = h('div', { class: 'bar pager', id: 'm-pager' });
  root.append(form, counts, tableBox, pager);

  const sync = () => setParams(listParams(st, FILTERS));
  const apply = () => { st.service = service.value.trim(); st.q = q.value; st.state = state.value; st.offset = 0; sync(); p.now(); };
  form.addEventListener('submit', (ev) => { ev.preventDefault(); apply(); });
  state.addEventListener('change', apply);

  const load = async (signal) => {
    const qp = new URLSearchParams(listParams(st, FILTERS));
    qp.set('limit', PAGE);
    let r;
    try {
      r = await api('members?' + qp, { signal });
    } catch (e) {
      if (e.name !== 'AbortError') replace(tableBox, errorBox(e));
      throw e;
    }
    const c = r.counts || {};
    replace(counts, h('span', null, h('b', { id: 'm-total' }, num(r.total)), ' instances'),
      ['alive', 'suspect', 'dead', 'left'].map((s) => h('span', { class: 'count-' + s }, badge(s), ' ', h('b', { 'data-count': s }, num(c[s] || 0)))),
      h('span', { class: 'muted' }, `${num(r.matched)} match`));
    const now = Date.now();
    const head = h('tr', null, COLS.map(([label, key]) => h('th', {
      class: 'sortable' + (st.sort === key ? ' sorted ' + st.order : '') + (['phi', 'failure_probability'].includes(key) ? ' num' : ''),
      onclick: () => { if (st.sort === key) st.order = st.order === 'asc' ? 'desc' : 'asc'; else { st.sort = key; st.order = key === 'phi' || key === 'failure_probability' ? 'desc' : 'asc'; } st.offset = 0; sync(); p.now(); },
    }, label)));
    replace(tableBox, h('table', { class: 'tbl', id: 'members-table' }, h('thead', null, head),
      rows(r.members || [], (m) => h('tr', { class: 'clickable', 'data-key': m.service + '.' + m.instance, onclick: () => go(`/members/${m.service}/${m.instance}`) },
        h('td', null, m.service),
        h('td', { class: 'mono' }, h('a', { href: `#/members/${m.service}/${m.instance}` }, m.instance)),
        h('td', { 'data-k': 'state' }, badge(m.state)),
        h('td', { class: 'num', 'data-k': 'phi' }, fixed(m.phi, 2)),
        h('td', { 'data-k': 'quality' }, badge(m.quality, 'q-' + m.quality)),
        h('td', { class: 'num', 'data-k': 'failure_probability' }, pct(m.failure_probability)),
        h('td', { title: time(m.last_seen) }, ago(m.last_seen, now))))));
    const last = Math.min(st.offset + PAGE, r.matched);
    replace(pager,
      h('button', { id: 'm-prev', disabled: st.offset === 0, onclick: () => { st.offset = Math.max(0, st.offset - PAGE); sync(); p.now(); } }, '‹ Previous'),
      h('button', { id: 'm-next', disabled: last >= r.matched, onclick: () => { st.offset += PAGE; sync(); p.now(); } }, 'Next ›'),
      h('span', { class: 'muted' }, r.matched ? `${num(st.offset + 1)}–${num(last)} of ${num(r.matched)}` : 'none'));
  };
  const p = poll(load, 1000);
  return () => p.stop();
}

// one shows one instance: its record, heartbeat intervals, phi over time
// and transitions.
function one(root, service, instance) {
  const head = h('section', { class: 'panel', id: 'member' });
  const intervals = new Chart({ title: 'Heartbeat inter-arrival times (detector window), ms', height: 140, xFormat: (i) => '#' + Math.round(i), xStep: (span) => Math.max(1, Math.ceil(span / 8)) });
  const phi = new Chart({ title: 'Phi (MEMBERS records seen by the console)', height: 140 });
  const trans = h('section', { class: 'panel wide', id: 'transitions' });
  root.append(h('div', { class: 'bar' }, h('a', { href: '#/members' }, '‹ all members')), head, h('section', { class: 'charts two' }, intervals.el, phi.el), trans);

  const load = async (signal) => {
    let r;
    try {
      r = await api(`members/${encodeURIComponent(service)}/${encodeURIComponent(instance)}`, { signal });
    } catch (e) {
      if (e.name !== 'AbortError') replace(head, errorBox(e));
      throw e;
    }
    const m = r.member || {};
    replace(head, h('h2', null, m.service, ' ', h('span', { class: 'mono' }, m.instance), ' ', badge(m.state)),
      h('div', { class: 'kv' },
        h('span', null, 'Phi'), h('b', { 'data-k': 'phi' }, fixed(m.phi, 3)),
        h('span', null, 'Network quality'), h('span', null, badge(m.quality, 'q-' + m.quality)),
        h('span', null, 'Failure probability'), h('span', null, pct(m.failure_probability)),
        h('span', null, 'Last heartbeat'), h('span', null, time(m.last_seen) + ' (' + ago(m.last_seen) + ')'),
        h('span', null, 'Intervals from'), h('span', null, r.intervals_source === 'none' ? 'no detector answered' : r.intervals_source)));
    const iv = r.intervals_ms || [];
    intervals.update({ xMin: 0, xMax: Math.max(1, iv.length - 1), series: [{ name: 'interval', color: '#4e9af1', xs: iv.map((_, i) => i), ys: iv, dots: true }] });
    const ph = r.phi_history || [];
    const pxs = ph.map((p) => Date.parse(p.at));
    const now = Date.now();
    phi.update({ xMin: pxs.length ? Math.min(pxs[0], now - 60000) : now - 60000, xMax: now, series: [{ name: 'phi', color: '#e0a030', xs: pxs, ys: ph.map((p) => p.phi), dots: true }] });
    renderTransitions(trans, r.transitions || []);
  };
  const p = poll(load, 1000);
  return () => p.stop();
}

function renderTransitions(el, ts) {
  const now = Date.now();
  let bar = null;
  if (ts.length) {
    const t0 = Date.parse(ts[0].at);
    const span = Math.max(1, now - t0);
    bar = h('div', { class: 'timeline' }, ts.map((t, i) => {
      const a = Date.parse(t.at);
      const b = i + 1 < ts.length ? Date.parse(ts[i + 1].at) : now;
      return h('span', { class: 'seg ' + t.state, style: `left:${((a - t0) / span) * 100}%;width:${Math.max(0.3, ((b - a) / span) * 100)}%`, title: `${t.state} from ${time(t.at)}` });
    }));
  }
  replace(el, h('h2', null, 'Transitions ', h('span', { class: 'count' }, String(ts.length))), bar,
    ts.length ? h('table', { class: 'tbl' }, h('thead', null, h('tr', null, h('th', null, 'at'), h('th', null, 'from'), h('th', null, 'to'), h('th', { class: 'num' }, 'phi'), h('th', { class: 'num' }, 'DETECTOR seq'))),
      h('tbody', null, ts.slice().reverse().map((t) => h('tr', null, h('td', { class: 'mono' }, time(t.at)), h('td', null, t.previous ? badge(t.previous) : '–'), h('td', null, badge(t.state)), h('td', { class: 'num' }, fixed(t.phi, 2)), h('td', { class: 'num' }, num(t.seq))))))
      : h('p', { class: 'muted' }, 'No transitions in stream DETECTOR.'));
}
