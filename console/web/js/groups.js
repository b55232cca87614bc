// Consumer groups: per group its members, lag in events and seconds, and
// per partition the assigned member, the owner with its fencing epoch,
// the committed position and the lag, as consume.Status reads them.
import { api, h, replace, poll, num, fixed, ago, errorBox } from './lib.js';

export default function groups(root) {
  const box = h('div', { id: 'groups' });
  root.append(box);
  const load = async (signal) => {
    let r;
    try {
      r = await api('groups', { signal });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      if (e.status === 404) {
        replace(box, h('div', { class: 'notice', id: 'groups-unavailable' }, 'Consumer groups are not available: this platform\'s console API does not serve them.'));
        return;
      }
      replace(box, errorBox(e));
      throw e;
    }
    const gs = r.groups || [];
    if (!gs.length) { replace(box, h('p', { class: 'notice', id: 'groups-none' }, 'No consumer groups: a group appears once a member of it runs (platform consume, or the consume library).')); return; }
    replace(box, r.truncated ? h('div', { class: 'notice' }, 'Only the first 50 groups are shown.') : null, gs.map((g) => h('section', { class: 'panel wide', 'data-group': g.group },
      h('h2', null, g.group, ' ', h('span', { class: 'count' }, String(g.partitions || 0)), ' ',
        h('span', { class: 'muted' }, `partitions · ${(g.members || []).length} members · lag ${num(g.lag_events)} events${g.exact ? '' : '+'}, ${fixed(g.lag_seconds, 1)} s · filter ${(g.filter || []).join(' ')} · as of ${ago(g.at)}`)),
      g.error ? h('div', { class: 'error' }, g.error) : null,
      h('table', { class: 'tbl' },
        h('thead', null, h('tr', null, ['partition', 'assigned', 'owner', 'epoch', 'position', 'read', 'lag messages', 'lag events', 'lag s'].map((c, i) =>
          h('th', { class: [0, 3, 4, 5, 6, 7, 8].includes(i) ? 'num' : null }, c)))),
        h('tbody', null, (g.per_partition || []).map((p) => h('tr', { 'data-partition': p.partition, class: p.assigned && p.owner && p.assigned !== p.owner ? 'row-bad' : null },
          h('td', { class: 'num' }, p.partition),
          h('td', { class: 'mono' }, p.assigned || '–'),
          h('td', { class: 'mono' }, p.owner || '–'),
          h('td', { class: 'num' }, num(p.epoch)),
          h('td', { class: 'num mono', title: 'next event to apply' }, p.index ? `${p.seq}·${p.index}` : String(p.seq)),
          h('td', { class: 'num' }, num(p.read)),
          h('td', { class: 'num' }, num(p.lag_messages)),
          h('td', { class: 'num', 'data-k': 'lag' }, num(p.lag_events)),
          h('td', { class: 'num' }, fixed(p.lag_seconds, 1)))))))));
  };
  const p = poll(load, 1000);
  return () => p.stop();
}
