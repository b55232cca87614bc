// Alerts: firing and pending alerts, notification groups, silences; an
// admin creates silences with amtool's matcher syntax and expires them.
// Other roles see the same page without the buttons; the server refuses
// their POSTs in any case.
import { api, session, h, replace, poll, num, ago, time, badge, labelList, errorBox, status } from './lib.js';

export default function alerts(root, { params }) {
  const summary = h('div', { class: 'bar counts', id: 'a-status' });
  const firing = h('section', { class: 'panel wide', id: 'a-firing' });
  const pending = h('section', { class: 'panel wide', id: 'a-pending' });
  const groups = h('section', { class: 'panel wide', id: 'a-groups' });
  const silences = h('section', { class: 'panel wide', id: 'a-silences' });

  const matchers = h('input', { id: 's-matchers', name: 'matchers', size: 60, placeholder: 'alertname="InstanceDead", service=~"platform-.*"', value: params.get('matchers') || '' });
  const duration = h('input', { id: 's-duration', name: 'duration', size: 6, value: '2h', title: 'e.g. 30m, 2h, 1d, 1w' });
  const comment = h('input', { id: 's-comment', name: 'comment', size: 40, placeholder: 'why (required)' });
  const msg = h('div', { id: 's-msg', class: 'form-msg' });
  const form = h('form', { class: 'panel wide silence-form', id: 'silence-form', hidden: !session.can_write },
    h('h2', null, 'New silence'),
    h('div', { class: 'bar' }, h('label', null, 'Matchers ', matchers), h('label', null, 'For ', duration), h('label', null, 'Comment ', comment),
      h('button', { type: 'submit', id: 's-create' }, 'Silence')),
    h('p', { class: 'muted' }, 'amtool\'s syntax: name="value", name!="value", name=~"regex", name!~"regex", separated by commas; braces optional.'),
    msg);
  root.append(summary, form, firing, pending, silences, groups);

  let data = null;
  const load = async (signal) => {
    try {
      data = await api('alerts', { signal });
    } catch (e) {
      if (e.name !== 'AbortError') replace(firing, errorBox(e));
      throw e;
    }
    render();
  };
  const p = poll(load, 1000);

  const prefill = (labels) => {
    matchers.value = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ');
    form.hidden = !session.can_write;
    matchers.focus();
    form.scrollIntoView({ block: 'nearest' });
  };

  const expire = async (id) => {
    try {
      await api(`silences/${encodeURIComponent(id)}/expire`, { method: 'POST' });
      replace(msg, h('span', { class: 'good' }, 'Silence ' + id + ' expired.'));
      p.now();
    } catch (e) {
      replace(msg, errorBox(e));
      status.error(e);
    }
  };

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const d = parseDuration(duration.value);
    if (d == null) { replace(msg, h('div', { class: 'error' }, 'duration: want a number with s, m, h, d or w, e.g. 2h')); return; }
    try {
      const r = await api('silences', { method: 'POST', body: { matchers: matchers.value, duration_ms: d, comment: comment.value } });
      replace(msg, h('span', { class: 'good', id: 's-created', 'data-id': r.silenceID }, 'Silence ' + r.silenceID + ' created.'));
      comment.value = '';
      p.now();
    } catch (e) {
      replace(msg, errorBox(e));
    }
  });

  const render = () => {
    const s = data.status || {};
    replace(summary,
      h('span', null, 'firing ', h('b', { id: 'a-n-firing' }, num(s.firing))),
      h('span', null, 'pending ', h('b', { id: 'a-n-pending' }, num(s.pending))),
      h('span', null, 'groups ', h('b', null, num(s.groups))),
      h('span', null, 'silences ', h('b', null, num(s.silences))),
      h('span', null, 'rules ', h('b', null, num(s.rules))));
    const as = (data.alerts || []).slice().sort((a, b) => (a.labels.alertname || '').localeCompare(b.labels.alertname || '') || a.startsAt.localeCompare(b.startsAt));
    const now = Date.now();
    replace(firing, h('h2', null, 'Firing ', h('span', { class: 'count' }, String(as.length))),
      as.length ? h('table', { class: 'tbl', id: 'alerts-table' },
        h('thead', null, h('tr', null, h('th', null, 'alert'), h('th', null, 'state'), h('th', null, 'labels'), h('th', null, 'summary'), h('th', null, 'since'), h('th', null, ''))),
        h('tbody', null, as.map((a) => {
          const st = (a.status && a.status.state) || 'active';
          return h('tr', { 'data-fingerprint': a.fingerprint, 'data-alertname': a.labels.alertname, 'data-state': st },
            h('td', null, h('b', null, a.labels.alertname)),
            h('td', null, badge(st === 'suppressed' ? ((a.status.silencedBy || []).length ? 'silenced' : 'inhibited') : 'firing', st === 'suppressed' ? 'muted' : 'dead')),
            h('td', null, labelList(a.labels, ['alertname'])),
            h('td', null, (a.annotations || {}).summary || ''),
            h('td', { title: time(a.startsAt) }, ago(a.startsAt, now)),
            h('td', null, session.can_write ? h('button', { class: 'small', onclick: () => prefill(a.labels) }, 'Silence…') : null));
        }))) : h('p', { class: 'muted' }, 'Nothing is firing.'));
    const pe = data.pending || [];
    replace(pending, h('h2', null, 'Pending ', h('span', { class: 'count' }, String(pe.length)), h('span', { class: 'muted' }, ' (true, waiting for their rule\'s for:)')),
      pe.length ? h('table', { class: 'tbl', id: 'pending-table' },
        h('thead', null, h('tr', null, h('th', null, 'alert'), h('th', null, 'labels'), h('th', null, 'true since'))),
        h('tbody', null, pe.map((a) => h('tr', null, h('td', null, h('b', null, a.labels.alertname)), h('td', null, labelList(a.labels, ['alertname'])), h('td', { title: time(a.startsAt) }, ago(a.startsAt, now))))))
        : h('p', { class: 'muted' }, 'None.'));
    const sl = (data.silences || []).slice().sort((a, b) => rank(a) - rank(b) || b.endsAt.localeCompare(a.endsAt));
    replace(silences, h('h2', null, 'Silences ', h('span', { class: 'count' }, String(sl.length))),
      sl.length ? h('table', { class: 'tbl', id: 'silences-table' },
        h('thead', null, h('tr', null, h('th', null, 'state'), h('th', null, 'matchers'), h('th', null, 'comment'), h('th', null, 'by'), h('th', null, 'starts'), h('th', null, 'ends'), h('th', null, ''))),
        h('tbody', null, sl.map((x) => {
          const state = (x.status && x.status.state) || '';
          return h('tr', { 'data-silence': x.id, 'data-state': state, class: state === 'expired' ? 'faded' : null },
            h('td', null, badge(state, state === 'active' ? 'muted' : state)),
            h('td', { class: 'mono' }, (x.matchers || []).map((m) => h('span', { class: 'label' }, m.name + (m.isEqual === false ? '!' : '') + (m.isRegex ? '=~' : '=') + JSON.stringify(m.value)))),
            h('td', null, x.comment), h('td', null, x.createdBy),
            h('td', { title: time(x.startsAt) }, ago(x.startsAt, now)), h('td', { title: time(x.endsAt) }, ago(x.endsAt, now)),
            h('td', null, session.can_write && state !== 'expired' ? h('button', { class: 'small', 'data-expire': x.id, onclick: () => expire(x.id) }, 'Expire') : null));
        }))) : h('p', { class: 'muted' }, 'No silences.'));
    const gs = data.groups || [];
    replace(groups, h('h2', null, 'Notification groups ', h('span', { class: 'count' }, String(gs.length))),
      gs.length ? gs.map((g) => h('div', { class: 'group' },
        h('div', null, labelList(g.labels), h('span', { class: 'muted' }, ' → ' + ((g.receiver || {}).name || '')), ' ', h('b', null, num((g.alerts || []).length)), ' alerts'),
        h('ul', null, (g.alerts || []).map((a) => h('li', null, labelList(a.labels, Object.keys(g.labels || {})), ' ', badge((a.status || {}).state || 'active', (a.status || {}).state === 'suppressed' ? 'muted' : 'dead'))))))
        : h('p', { class: 'muted' }, 'None.'));
  };

  return () => p.stop();
}

function rank(s) {
  return { active: 0, pending: 1, expired: 2 }[(s.status || {}).state] ?? 3;
}

// parseDuration reads 90s, 30m, 2h, 1d, 1w, or a sum such as 1h30m, in ms.
export function parseDuration(s) {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g;
  const unit = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 };
  let total = 0, used = 0, m;
  s = s.trim();
  while ((m = re.exec(s))) { total += parseFloat(m[1]) * unit[m[2]]; used += m[0].length; }
  return used === s.length && total > 0 ? Math.round(total) : null;
}
