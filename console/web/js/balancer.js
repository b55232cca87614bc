// Balancer: KV WEIGHTS per instance — weight, target, why, the inputs the
// policy read, and the share routing aims at next to the share served.
// Filtered, sorted and paged by the server, as the members table is, so
// 10,000 instances page as fast as 10.
import { api, h, replace, poll, num, fixed, pct, ms, ago, time, badge, errorBox, setParams, listParams } from './lib.js';

const PAGE = 100;
// FILTERS are the list's filters in its route and its request.
const FILTERS = ['service', 'reason', 'q'];
const REASONS = ['policy', 'blackout', 'expired', 'unhealthy', 'leaving'];
// Columns: label, sort key (every column sorts), numeric.
const COLS = [
  ['service', 'service'], ['instance', 'instance'], ['weight', 'weight', true], ['target', 'target', true],
  ['reason', 'reason'], ['state', 'state'], ['latency', 'latency_ms', true], ['p99', 'p99_ms', true],
  ['errors', 'error_rate', true], ['cpu', 'cpu', true], ['in flight', 'in_flight', true], ['rps', 'rps', true],
  ['failure p', 'failure_probability', true], ['weight share', 'weight_share'], ['served share', 'served_share'],
  ['reported', 'last_report'],
];
// Sorting by a figure starts with the largest.
const DESC_FIRST = new Set(['weight', 'target', 'latency_ms', 'p99_ms', 'error_rate', 'cpu', 'in_flight', 'rps', 'failure_probability', 'weight_share', 'served_share']);

export default function balancer(root, { params }) {
  const st = {
    service: params.get('service') || '', reason: params.get('reason') || '', q: params.get('q') || '',
    sort: params.get('sort') || 'key', order: params.get('order') || 'asc', offset: +params.get('offset') || 0,
  };
  const service = h('input', { id: 'b-service', placeholder: 'service', value: st.service, size: 16 });
  const q = h('input', { id: 'b-q', placeholder: 'service.instance contains', value: st.q, size: 22 });
  const reason = h('select', { id: 'b-reason' }, ['', ...REASONS].map((s) => h('option', { value: s, selected: s === st.reason }, s || 'any reason')));
  const form = h('form', { class: 'bar' }, h('label', null, 'Service ', service), h('label', null, 'Find ', q), reason, h('button', { type: 'submit' }, 'Apply'));
  const counts = h('div', { class: 'bar counts', id: 'b-counts' });
  const box = h('div', { id: 'balancer' });
  const pager = h('div', { class: 'bar pager', id: 'b-pager' });
  root.append(form, counts, box, pager);

  const sync = () => setParams(listParams(st, FILTERS));
  const apply = () => { st.service = service.value.trim(); st.q = q.value; st.reason = reason.value; st.offset = 0; sync(); p.now(); };
  form.addEventListener('submit', (ev) => { ev.preventDefault(); apply(); });
  reason.addEventListener('change', apply);

  const load = async (signal) => {
    const qp = new URLSearchParams(listParams(st, FILTERS));
    qp.set('limit', PAGE);
    let r;
    try {
      r = await api('balancer?' + qp, { signal });
    } catch (e) {
      if (e.name !== 'AbortError') replace(box, errorBox(e));
      throw e;
    }
    const c = r.counts || {};
    replace(counts, h('span', null, h('b', { id: 'b-total' }, num(r.total)), ' instances of ', h('b', { id: 'b-services' }, num(r.services)), ' services'),
      REASONS.map((s) => h('span', null, badge(s), ' ', h('b', { 'data-count': s }, num(c[s] || 0)))),
      h('span', { class: 'muted' }, `${num(r.matched)} match`));
    if (!r.total) {
      replace(box, h('p', { class: 'notice' }, 'KV WEIGHTS holds no instance yet: the balancer writes one row per service instance it hears from.'));
      replace(pager);
      return;
    }
    const now = Date.now();
    const head = h('tr', null, COLS.map(([label, key, isNum]) => h('th', {
      class: 'sortable' + (st.sort === key ? ' sorted ' + st.order : '') + (isNum ? ' num' : ''),
      onclick: () => { if (st.sort === key) st.order = st.order === 'asc' ? 'desc' : 'asc'; else { st.sort = key; st.order = DESC_FIRST.has(key) ? 'desc' : 'asc'; } st.offset = 0; sync(); p.now(); },
    }, label)));
    replace(box, h('table', { class: 'tbl', id: 'balancer-table' }, h('thead', null, head),
      h('tbody', null, (r.instances || []).map((i) => {
        const n = i.inputs || {};
        return h('tr', { 'data-service': i.service, 'data-instance': i.instance },
          h('td', null, i.service),
          h('td', { class: 'mono' }, h('a', { href: `#/members/${i.service}/${i.instance}` }, i.instance)),
          h('td', { class: 'num', 'data-k': 'weight' }, h('b', null, num(i.weight))),
          h('td', { class: 'num', 'data-k': 'target' }, num(i.target)),
          h('td', { 'data-k': 'reason' }, i.reason || ''),
          h('td', null, n.state ? badge(n.state) : '–'),
          h('td', { class: 'num' }, ms(n.latency_ms)),
          h('td', { class: 'num' }, ms(n.p99_ms)),
          h('td', { class: 'num' }, pct(n.error_rate)),
          h('td', { class: 'num' }, pct(n.cpu)),
          h('td', { class: 'num' }, num(n.in_flight)),
          h('td', { class: 'num' }, fixed(n.rps, 1)),
          h('td', { class: 'num' }, pct(n.failure_probability)),
          h('td', { 'data-k': 'weight_share' }, share(i.weight_share, 'w')),
          h('td', { 'data-k': 'served_share' }, share(i.served_share, 's')),
          h('td', { title: time(i.last_report) }, ago(i.last_report, now)));
      }))));
    const last = Math.min(st.offset + PAGE, r.matched);
    replace(pager,
      h('button', { id: 'b-prev', disabled: st.offset === 0, onclick: () => { st.offset = Math.max(0, st.offset - PAGE); sync(); p.now(); } }, '‹ Previous'),
      h('button', { id: 'b-next', disabled: last >= r.matched, onclick: () => { st.offset += PAGE; sync(); p.now(); } }, 'Next ›'),
      h('span', { class: 'muted' }, r.matched ? `${num(st.offset + 1)}–${num(last)} of ${num(r.matched)}` : 'none'));
  };
  const p = poll(load, 1000);
  return () => p.stop();
}

function share(x, kind) {
  const v = Math.max(0, Math.min(1, x || 0));
  return h('span', { class: 'share' }, h('span', { class: 'sharebar ' + kind }, h('i', { style: `width:${(v * 100).toFixed(1)}%` })), ' ', pct(x));
}
