// Events: browse stream EVENTS by topic and position (pages of decoded
// events, envelopes undone by the server), filter by subject and text,
// follow a live tail over server-sent events, and open one event.
import { api, h, rows, replace, num, time, clock, errorBox, setParams, routeParams, status } from './lib.js';

const TAIL_MAX = 500; // rows kept in the live tail

export default function events(root, { params }) {
  const st = {
    topic: params.get('topic') || '',
    q: params.get('q') || '',
    after: params.get('after') || '',
    before: params.get('before') || '',
    seq: params.get('seq') || '',
    index: params.get('index') || '0',
    tail: params.get('tail') === '1',
  };
  const topic = h('input', { id: 'ev-topic', placeholder: 'topic, e.g. orders or orders.* or >', value: st.topic, size: 28 });
  const q = h('input', { id: 'ev-q', placeholder: 'text in subject, headers or body', value: st.q, size: 28 });
  const tailBox = h('input', { type: 'checkbox', id: 'ev-tail', checked: st.tail });
  const form = h('form', { class: 'bar' },
    h('label', null, 'Topic ', topic), h('label', null, 'Contains ', q),
    h('button', { type: 'submit' }, 'Apply'),
    h('label', { class: 'toggle' }, tailBox, ' Live tail'));
  const pager = h('div', { class: 'bar pager', id: 'ev-pager' });
  const list = h('div', { class: 'ev-list', id: 'ev-list' });
  const detail = h('aside', { class: 'ev-detail panel', id: 'ev-detail' }, h('p', { class: 'muted' }, 'Select an event to see its headers and body.'));
  root.append(form, pager, h('div', { class: 'split' }, list, detail));

  let es = null;
  let tailRows = [];
  let skipped = 0;
  let reqId = 0;

  const sync = () => setParams({ topic: st.topic, q: st.q, after: st.after, before: st.before, seq: st.seq, index: st.seq ? st.index : '', tail: st.tail ? '1' : '' });

  const load = async () => {
    const id = ++reqId;
    const p = new URLSearchParams();
    if (st.topic) p.set('topic', st.topic);
    if (st.q) p.set('q', st.q);
    if (st.after) p.set('after', st.after);
    else if (st.before) p.set('before', st.before);
    p.set('limit', '100');
    try {
      const page = await api('events?' + p);
      if (id !== reqId || st.tail) return;
      renderPage(page);
      status.ok();
    } catch (e) {
      if (id !== reqId) return;
      replace(list, errorBox(e));
      replace(pager);
      status.error(e);
    }
  };

  const renderPage = (page) => {
    const s = page.stream || {};
    const evs = page.events || [];
    const btn = (label, target, id) => h('button', { id, disabled: !target, onclick: () => {
      st.after = target && target.after != null ? String(target.after) : '';
      st.before = target && target.before != null ? String(target.before) : '';
      sync(); load();
    } }, label);
    replace(pager,
      btn('« Oldest', s.first_seq ? { after: s.first_seq - 1 } : null, 'ev-oldest'),
      btn('‹ Older', page.prev, 'ev-older'),
      btn('Newer ›', page.next, 'ev-newer'),
      btn('Newest »', (st.after || st.before) ? { } : null, 'ev-newest'),
      h('span', { class: 'muted' }, `stream holds ${num(s.messages)} messages, seq ${num(s.first_seq)}–${num(s.last_seq)}` +
        (evs.length ? ` · showing seq ${num(evs[0].seq)}–${num(evs[evs.length - 1].seq)}` : '') +
        (st.q ? ` · scanned ${num(page.scanned)}` : '')));
    if (!evs.length) { replace(list, h('p', { class: 'notice' }, 'No events here' + (st.q || st.topic ? ' matching the filter.' : '.'))); return; }
    replace(list, table(evs.slice().reverse(), openEvent, st));
  };

  const openEvent = async (seq, index) => {
    st.seq = String(seq); st.index = String(index || 0);
    sync();
    for (const tr of root.querySelectorAll('tr.sel')) tr.classList.remove('sel');
    const tr = root.querySelector(`tr[data-seq="${seq}"][data-index="${index || 0}"]`);
    if (tr) tr.classList.add('sel');
    replace(detail, h('p', { class: 'muted' }, 'Loading ' + seq + '…'));
    try {
      const ev = await api(`events/${encodeURIComponent(seq)}?index=${encodeURIComponent(index || 0)}`);
      renderDetail(detail, ev);
    } catch (e) {
      replace(detail, errorBox(e));
    }
  };

  const startTail = () => {
    stopTail();
    tailRows = []; skipped = 0;
    const p = new URLSearchParams();
    if (st.topic) p.set('topic', st.topic);
    if (st.q) p.set('q', st.q);
    replace(pager, h('span', { class: 'live-dot' }), h('span', { id: 'tail-state' }, 'connecting…'));
    replace(list, h('p', { class: 'muted' }, 'Waiting for events stored from now on…'));
    es = new EventSource('/console/api/events/tail?' + p);
    let pending = false;
    const draw = () => {
      pending = false;
      if (!tailRows.length) return;
      replace(list, table(tailRows, openEvent, st, 'tail'));
    };
    es.addEventListener('open', () => { replace(pager, h('span', { class: 'live-dot on' }), h('span', { id: 'tail-state' }, 'live: newest first, the last ' + TAIL_MAX + ' kept'), skipped ? h('span', { class: 'warn' }, ` · ${num(skipped)} skipped (over 200/s)`) : null); status.ok(); });
    es.addEventListener('event', (m) => {
      const ev = JSON.parse(m.data);
      tailRows.unshift(ev);
      if (tailRows.length > TAIL_MAX) tailRows.length = TAIL_MAX;
      if (!pending) { pending = true; requestAnimationFrame(draw); }
    });
    es.addEventListener('skipped', (m) => {
      skipped += JSON.parse(m.data).skipped || 0;
      const s = root.querySelector('#tail-state');
      if (s) s.textContent = `live: ${num(skipped)} events skipped (over 200/s)`;
    });
    es.addEventListener('error', () => {
      const s = root.querySelector('#tail-state');
      if (s) s.textContent = es && es.readyState === EventSource.CLOSED ? 'closed by the server (too many tails open, or not allowed)' : 'reconnecting…';
    });
  };
  const stopTail = () => { if (es) { es.close(); es = null; } };

  const apply = () => {
    st.topic = topic.value.trim(); st.q = q.value; st.after = ''; st.before = '';
    st.tail = tailBox.checked;
    sync();
    if (st.tail) startTail(); else { stopTail(); load(); }
  };
  form.addEventListener('submit', (ev) => { ev.preventDefault(); apply(); });
  tailBox.addEventListener('change', apply);

  if (st.tail) startTail(); else load();
  if (st.seq) openEvent(st.seq, st.index);

  const onHash = () => {
    const { params: p } = routeParams();
    if ((p.get('topic') || '') !== st.topic || (p.get('q') || '') !== st.q) {
      topic.value = p.get('topic') || ''; q.value = p.get('q') || '';
      tailBox.checked = p.get('tail') === '1';
      apply();
    }
  };
  window.addEventListener('hashchange', onHash);
  return () => { stopTail(); window.removeEventListener('hashchange', onHash); reqId++; };
}

function table(evs, open, st, id) {
  return h('table', { class: 'tbl events', id: id === 'tail' ? 'tail-table' : 'ev-table' },
    h('thead', null, h('tr', null, h('th', { class: 'num' }, 'seq'), h('th', null, 'time'), h('th', null, 'subject'), h('th', { class: 'num' }, 'size'), h('th', null, 'body'))),
    rows(evs, (e) => h('tr', {
      'data-seq': e.seq, 'data-index': e.index || 0, 'data-id': e.id || '',
      class: String(e.seq) === st.seq && String(e.index || 0) === st.index ? 'sel clickable' : 'clickable',
      onclick: () => open(e.seq, e.index),
    },
    h('td', { class: 'num mono' }, e.count > 1 ? `${e.seq}·${e.index}` : String(e.seq)),
    h('td', { class: 'mono', title: time(e.time) }, clock(e.time)),
    h('td', { class: 'mono' }, e.subject),
    h('td', { class: 'num' }, num(e.size)),
    h('td', { class: 'mono preview' + (e.binary ? ' bin' : '') }, e.preview))));
}

function renderDetail(el, ev) {
  const hdrs = (obj) => {
    const rows = Object.entries(obj || {}).sort(([a], [b]) => a.localeCompare(b));
    if (!rows.length) return h('p', { class: 'muted' }, 'none');
    return h('table', { class: 'tbl kvtbl' }, h('tbody', null, rows.map(([k, vs]) => h('tr', null, h('th', null, k), h('td', { class: 'mono' }, (vs || []).join(', '))))));
  };
  replace(el,
    h('h2', null, 'Event ', h('span', { class: 'mono' }, ev.count > 1 ? `${ev.seq}·${ev.index} of ${ev.count}` : String(ev.seq))),
    h('div', { class: 'kv' },
      h('span', null, 'Subject'), h('b', { class: 'mono', id: 'ev-subject' }, ev.subject),
      h('span', null, 'Topic'), h('span', null, ev.topic),
      h('span', null, 'Stored'), h('span', null, time(ev.time)),
      h('span', null, 'Id'), h('span', { class: 'mono' }, ev.id || '–'),
      h('span', null, 'Size'), h('span', null, num(ev.size) + ' bytes'),
      h('span', null, 'Body'), h('span', null, ev.encoding + (ev.truncated ? ' (cut at 1 MiB)' : ''))),
    h('h3', null, 'Headers'), hdrs(ev.headers),
    h('h3', null, 'Stored message headers'), hdrs(ev.stored_headers),
    h('h3', null, 'Body'),
    h('pre', { class: 'body ' + ev.encoding, id: 'ev-body' }, ev.body));
}
