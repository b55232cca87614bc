// Consumer groups: lag per partition and owners, when the server serves
// them; until then the page says so rather than showing anything made up.
import { api, h, replace, poll, num, errorBox } from './lib.js';

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
        replace(box, h('div', { class: 'notice', id: 'groups-unavailable' }, 'Consumer groups are not available: this platform\'s console API does not serve them yet.'));
        return; // not an error of the page; keep asking in case it lands
      }
      replace(box, errorBox(e));
      throw e;
    }
    const gs = r.groups || [];
    if (!gs.length) { replace(box, h('p', { class: 'notice' }, 'No consumer groups.')); return; }
    replace(box, gs.map((g) => h('section', { class: 'panel wide', 'data-group': g.name || g.group },
      h('h2', null, g.name || g.group, ' ', h('span', { class: 'muted' }, `${num((g.partitions || []).length)} partitions, lag ${num(g.lag)}`)),
      h('table', { class: 'tbl' },
        h('thead', null, h('tr', null, h('th', { class: 'num' }, 'partition'), h('th', null, 'owner'), h('th', { class: 'num' }, 'position'), h('th', { class: 'num' }, 'lag'))),
        h('tbody', null, (g.partitions || []).map((p) => h('tr', null,
          h('td', { class: 'num' }, p.partition), h('td', { class: 'mono' }, p.owner || '–'),
          h('td', { class: 'num' }, num(p.position)), h('td', { class: 'num' }, num(p.lag)))))))));
  };
  const p = poll(load, 2000);
  return () => p.stop();
}
