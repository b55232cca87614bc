// first.js asks for the data of the page the address names while the rest
// of the document is still arriving and being parsed, so the answer is
// there, or on its way, when the page asks for it (api() in js/lib.js
// takes it from consoleEarly). It is a classic script at the top of the
// document: it runs where it stands, before the style sheet and the
// modules are parsed. The queries below are the ones the pages send on
// their first load; one that differs is only asked again by the page.
(() => {
  // The list pages' query keys, as the route and the page's request
  // both carry them: only values that are not the server's defaults.
  const lists = {
    members: ['service', 'state', 'q', 'sort', 'order', 'offset'],
    balancer: ['service', 'reason', 'q', 'sort', 'order', 'offset'],
    events: ['topic', 'q', 'after', 'before'],
  };
  const hash = location.hash.slice(1) || '/overview';
  const i = hash.indexOf('?');
  const parts = (i < 0 ? hash : hash.slice(0, i)).split('/').filter(Boolean);
  const params = new URLSearchParams(i < 0 ? '' : hash.slice(i + 1));
  const name = parts[0] || 'overview';
  const paths = [];
  if (name === 'overview') {
    paths.push('overview', 'services', 'series?since=0');
  } else if (lists[name] && parts.length === 1 && params.get('tail') !== '1') {
    const q = new URLSearchParams();
    for (const k of lists[name]) {
      if (params.get(k) && !(k === 'before' && params.get('after'))) q.set(k, params.get(k));
    }
    q.set('limit', '100');
    paths.push(name + '?' + q);
  }
  const early = new Map();
  for (const p of paths) {
    const r = fetch('/console/api/' + p, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
    r.catch(() => {}); // the page that takes it sees the failure
    early.set(canonicalPath(p), r);
  }
  // consoleEarly is what api() in js/lib.js asks: take hands out, once,
  // the answer to the same request as path; drop forgets what no page
  // took, so that no later page gets an old answer.
  globalThis.consoleEarly = {
    take(path) {
      const key = canonicalPath(path);
      const r = early.get(key);
      early.delete(key);
      return r || null;
    },
    drop() { early.clear(); },
  };

  // canonicalPath orders a path's query, so that two spellings of the
  // same request match.
  function canonicalPath(p) {
    const j = p.indexOf('?');
    if (j < 0) return p;
    const q = new URLSearchParams(p.slice(j + 1));
    q.sort();
    return p.slice(0, j) + '?' + q;
  }
})();
