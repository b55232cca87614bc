// Transactions: KV STATE, where txn commits. Look a key up with its
// revisions, or list the keys under a prefix, paged by key.
import { api, h, replace, num, time, errorBox, setParams, status } from './lib.js';

export default function state(root, { params }) {
  const key = h('input', { id: 'st-key', placeholder: 'key, e.g. acct.alice', value: params.get('key') || '', size: 36 });
  const prefix = h('input', { id: 'st-prefix', placeholder: 'prefix, e.g. acct. (empty: every key)', value: params.get('prefix') || '', size: 36 });
  const keyForm = h('form', { class: 'bar' }, h('label', null, 'Key ', key), h('button', { type: 'submit' }, 'Look up'));
  const prefixForm = h('form', { class: 'bar' }, h('label', null, 'Prefix ', prefix), h('button', { type: 'submit' }, 'List'));
  const one = h('section', { class: 'panel', id: 'st-entry' });
  const list = h('section', { class: 'panel', id: 'st-list' });
  root.append(h('div', { class: 'bar' }, keyForm, prefixForm), h('div', { class: 'split even' }, list, one));
  let afters = [];

  const lookup = async (k) => {
    key.value = k;
    setParams({ key: k, prefix: prefix.value });
    replace(one, h('p', { class: 'muted' }, 'Reading ' + k + '…'));
    try {
      const r = await api('state?key=' + encodeURIComponent(k));
      status.ok();
      replace(one,
        h('h2', null, h('span', { class: 'mono' }, r.key)),
        h('div', { class: 'kv' },
          h('span', null, 'Revision'), h('b', { id: 'st-revision' }, num(r.revision)),
          h('span', null, 'Written'), h('span', null, time(r.created)),
          h('span', null, 'Operation'), h('span', null, r.operation),
          h('span', null, 'Encoding'), h('span', null, r.encoding)),
        h('pre', { class: 'body ' + r.encoding, id: 'st-value' }, r.value),
        h('h3', null, 'History'),
        h('table', { class: 'tbl', id: 'st-history' },
          h('thead', null, h('tr', null, h('th', { class: 'num' }, 'revision'), h('th', null, 'written'), h('th', null, 'operation'), h('th', { class: 'num' }, 'size'))),
          h('tbody', null, (r.history || []).slice().reverse().map((x) => h('tr', null,
            h('td', { class: 'num' }, num(x.revision)), h('td', { class: 'mono' }, time(x.created)), h('td', null, x.operation), h('td', { class: 'num' }, num(x.size)))))));
    } catch (e) {
      replace(one, errorBox(e));
    }
  };

  const listPage = async (after) => {
    setParams({ key: key.value, prefix: prefix.value });
    const p = new URLSearchParams({ prefix: prefix.value, limit: '100' });
    if (after) p.set('after', after);
    try {
      const r = await api('state?' + p);
      status.ok();
      const es = r.entries || [];
      replace(list,
        h('h2', null, 'Keys under ', h('span', { class: 'mono' }, prefix.value || '(all)')),
        h('div', { class: 'bar pager' },
          h('button', { disabled: !afters.length, onclick: () => { afters.pop(); listPage(afters[afters.length - 1] || ''); } }, '‹ Previous'),
          h('button', { disabled: !r.next, onclick: () => { afters.push(r.next.after); listPage(r.next.after); } }, 'Next ›'),
          r.truncated ? h('span', { class: 'warn' }, 'over 100,000 keys under this prefix: narrow it') : null),
        es.length ? h('table', { class: 'tbl', id: 'st-keys' },
          h('thead', null, h('tr', null, h('th', null, 'key'), h('th', { class: 'num' }, 'revision'), h('th', null, 'value'))),
          h('tbody', null, es.map((x) => h('tr', { class: 'clickable', 'data-key': x.key, onclick: () => lookup(x.key) },
            h('td', { class: 'mono' }, x.key), h('td', { class: 'num' }, num(x.revision)), h('td', { class: 'mono preview' }, x.operation === 'PUT' ? x.preview : x.operation)))))
          : h('p', { class: 'muted' }, 'No keys.'));
    } catch (e) {
      replace(list, errorBox(e));
    }
  };

  keyForm.addEventListener('submit', (ev) => { ev.preventDefault(); if (key.value.trim()) lookup(key.value.trim()); });
  prefixForm.addEventListener('submit', (ev) => { ev.preventDefault(); afters = []; listPage(''); });
  if (params.get('key')) lookup(params.get('key'));
  listPage('');
  return null;
}
