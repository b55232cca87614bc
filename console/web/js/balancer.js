// Balancer: KV WEIGHTS per instance — weight, target, why, the inputs the
// policy read, and the share routing aims at next to the share served.
import { api, h, replace, poll, num, fixed, pct, ms, ago, time, badge, errorBox } from './lib.js';

export default function balancer(root) {
  const box = h('div', { id: 'balancer' });
  root.append(box);
  const load = async (signal) => {
    let r;
    try {
      r = await api('balancer', { signal });
    } catch (e) {
      if (e.name !== 'AbortError') replace(box, errorBox(e));
      throw e;
    }
    const by = new Map();
    for (const i of r.instances || []) {
      if (!by.has(i.service)) by.set(i.service, []);
      by.get(i.service).push(i);
    }
    if (!by.size) { replace(box, h('p', { class: 'notice' }, 'KV WEIGHTS holds no instance yet: the balancer writes one row per service instance it hears from.')); return; }
    const now = Date.now();
    replace(box, [...by.keys()].sort().map((svc) => {
      const rows = by.get(svc).sort((a, b) => a.instance.localeCompare(b.instance));
      return h('section', { class: 'panel wide', 'data-service': svc },
        h('h2', null, svc, ' ', h('span', { class: 'count' }, String(rows.length))),
        h('table', { class: 'tbl' },
          h('thead', null, h('tr', null, ['instance', 'weight', 'target', 'reason', 'state', 'latency', 'p99', 'errors', 'cpu', 'in flight', 'rps', 'failure p', 'weight share', 'served share', 'reported'].map((c, i) =>
            h('th', { class: [1, 2, 5, 6, 7, 8, 9, 10, 11].includes(i) ? 'num' : null }, c)))),
          h('tbody', null, rows.map((i) => {
            const n = i.inputs || {};
            return h('tr', { 'data-instance': i.instance },
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
              h('td', null, share(i.weight_share, 'w')),
              h('td', null, share(i.served_share, 's')),
              h('td', { title: time(i.last_report) }, ago(i.last_report, now)));
          }))));
    }));
  };
  const p = poll(load, 1000);
  return () => p.stop();
}

function share(x, kind) {
  const v = Math.max(0, Math.min(1, x || 0));
  return h('span', { class: 'share' }, h('span', { class: 'sharebar ' + kind }, h('i', { style: `width:${(v * 100).toFixed(1)}%` })), ' ', pct(x));
}
