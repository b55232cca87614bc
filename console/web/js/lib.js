// Shared pieces of the console's pages: the API client (session, CSRF),
// a small DOM builder, formatting, and the polling loop every live view uses.

// session is what GET /console/api/session last said.
export const session = { auth: false, user: '', role: '', can_write: false, csrf: '' };

// APIError carries the server's status and stable error code.
export class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// api calls /console/api/<path>. GET without a body; anything else is a
// JSON POST carrying the session's CSRF token, as the API asks.
export async function api(path, { method = 'GET', body, signal } = {}) {
  const opts = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin', signal };
  if (method !== 'GET') {
    opts.headers['Content-Type'] = 'application/json';
    opts.headers['X-CSRF-Token'] = session.csrf;
    opts.body = JSON.stringify(body ?? {});
  }
  let r;
  try {
    const early = method === 'GET' ? takeEarly(path) : null;
    r = await (early || fetch('/console/api/' + path, opts));
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new APIError(0, 'network', 'the platform does not answer (' + e.message + ')');
  }
  let data = null;
  try { data = await r.json(); } catch { /* empty or not JSON */ }
  if (!r.ok) {
    const err = data && data.error ? data.error : {};
    if (r.status === 401 && path !== 'login') onUnauthorized();
    throw new APIError(r.status, err.code || 'http_' + r.status, err.message || r.statusText || 'HTTP ' + r.status);
  }
  return data;
}

// takeEarly hands out, once, the answer first.js asked for at the top of
// the document when it is the same request as path.
function takeEarly(path) {
  return globalThis.consoleEarly ? globalThis.consoleEarly.take(path) : null;
}

// dropEarly forgets what first.js asked for and no page took: the shell
// calls it once the first page asked for its data.
export function dropEarly() {
  if (globalThis.consoleEarly) globalThis.consoleEarly.drop();
}

let unauthorizedHook = () => {};
export function setUnauthorizedHook(f) { unauthorizedHook = f; }
function onUnauthorized() { unauthorizedHook(); }

// refreshSession reloads the session object.
export async function refreshSession() {
  const s = await api('session');
  Object.assign(session, s);
  return session;
}

// h builds an element: h('td', {class: 'num', onclick: f}, 'text', child...).
// Children may be strings, numbers, nodes, arrays, or null/false (skipped).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'value') el.value = v;
      else if (k === 'checked' || k === 'disabled' || k === 'hidden' || k === 'selected') el[k] = !!v;
      else el.setAttribute(k, v === true ? '' : v);
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// rows builds a tbody with one row per item. A page holds up to 100
// rows, more than a window shows: the rows the window can show are built
// now, the rest once the browser is idle after the frame that paints
// them (within half a second), so the first frame with data lays out only
// what is seen and nothing competes with its paint.
export function rows(items, row, attrs) {
  const now = Math.ceil(window.innerHeight / 20); // rows are at least 20 px high
  const tbody = h('tbody', attrs, items.slice(0, now).map(row));
  if (items.length > now) later(() => append(tbody, items.slice(now).map(row)));
  return tbody;
}

// later runs f when the browser is idle, within half a second.
function later(f) {
  if (window.requestIdleCallback) requestIdleCallback(f, { timeout: 500 });
  else setTimeout(f, 50);
}

// svg builds an SVG element.
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, v);
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// replace swaps el's children for the given ones.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

// Formatting.
const nf = new Intl.NumberFormat('en-US');
export function num(n) { return n == null ? '–' : nf.format(n); }
export function fixed(n, d = 2) { return n == null || Number.isNaN(n) ? '–' : Number(n).toFixed(d); }
export function pct(x) { return x == null ? '–' : (x * 100).toFixed(1) + '%'; }
export function bytes(n) {
  if (n == null) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)) + ' ' + u[i];
}
export function ms(x) {
  if (x == null) return '–';
  if (x < 1) return x.toFixed(3) + ' ms';
  if (x < 1000) return x.toFixed(1) + ' ms';
  return (x / 1000).toFixed(2) + ' s';
}
// ago says how long before now an RFC 3339 time was.
export function ago(t, now = Date.now()) {
  if (!t || t.startsWith('0001-')) return 'never';
  const d = (now - Date.parse(t)) / 1000;
  if (d < 0) return 'in ' + dur(-d);
  return dur(d) + ' ago';
}
export function dur(s) {
  if (s < 1) return (s * 1000).toFixed(0) + 'ms';
  if (s < 60) return s.toFixed(1) + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm' + String(Math.floor(s % 60)).padStart(2, '0') + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h' + String(Math.floor((s % 3600) / 60)).padStart(2, '0') + 'm';
  return Math.floor(s / 86400) + 'd' + Math.floor((s % 86400) / 3600) + 'h';
}
export function time(t) {
  if (!t || t.startsWith('0001-')) return '–';
  const d = new Date(t);
  return d.toISOString().replace('T', ' ').replace('Z', '').slice(0, 23);
}
export function clock(t) {
  if (!t) return '–';
  return new Date(t).toISOString().slice(11, 23);
}

// badge is a coloured label for a state word.
export function badge(word, kind) {
  return h('span', { class: 'badge ' + (kind || word || 'none') }, word || '–');
}

// labelList shows a label set as name=value chips.
export function labelList(labels, skip = []) {
  return Object.entries(labels || {})
    .filter(([k]) => !skip.includes(k))
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => h('span', { class: 'label' }, h('b', null, k), '=', v));
}

// poll calls f now and then every interval ms after each call ends, until
// stop is called. A failed call shows in the status line; the next retries.
// interval may be a function, asked after each call.
export function poll(f, interval) {
  let timer = null;
  let stopped = false;
  const ctl = new AbortController();
  const run = async () => {
    if (stopped) return;
    try {
      await f(ctl.signal);
      status.ok();
    } catch (e) {
      if (e.name === 'AbortError' || stopped) return;
      status.error(e);
    }
    if (!stopped) timer = setTimeout(run, typeof interval === 'function' ? interval() : interval);
  };
  run();
  return {
    stop() { stopped = true; clearTimeout(timer); ctl.abort(); },
    now() { clearTimeout(timer); run(); },
  };
}

// status is the header's line: when the shown data was last refreshed and
// the last error.
export const status = {
  last: 0,
  err: null,
  ok() { this.last = Date.now(); this.err = null; this.show(); painted(); },
  error(e) { this.err = e; this.show(); },
  show() {
    const el = document.getElementById('status');
    if (!el) return;
    if (this.err) {
      el.className = 'status bad';
      el.textContent = (this.err.code ? this.err.code + ': ' : '') + this.err.message;
    } else {
      el.className = 'status';
      el.textContent = this.last ? 'live · ' + new Date(this.last).toISOString().slice(11, 19) + 'Z' : '';
    }
  },
};

// painted marks, once per page load, the first frame painted with data
// from the API (performance mark "console:painted"), which the browser
// tests read to hold first paint under its budget.
let marked = false;
function painted() {
  if (marked) return;
  marked = true;
  requestAnimationFrame(() => setTimeout(() => performance.mark('console:painted'), 0));
}

// errorBox shows an API error in a page.
export function errorBox(e) {
  if (e.status === 404 && e.code === 'not_found') return h('div', { class: 'notice' }, e.message);
  return h('div', { class: 'error', role: 'alert' }, (e.code ? e.code + ': ' : '') + e.message);
}

// qs reads and writes the hash route's query.
export function routeParams() {
  const hash = location.hash.slice(1) || '/overview';
  const i = hash.indexOf('?');
  const path = i < 0 ? hash : hash.slice(0, i);
  const params = new URLSearchParams(i < 0 ? '' : hash.slice(i + 1));
  return { path, params };
}
export function go(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v != null && v !== '') q.set(k, v);
  const s = q.toString();
  location.hash = path + (s ? '?' + s : '');
}
// listParams is a paged list's state as its route and its request carry
// it: the filters given and the sort, order and offset that differ from
// the server's defaults (by key, ascending, from 0). first.js asks for the
// same on a page's first load.
export function listParams(st, filters) {
  const out = {};
  for (const k of filters) if (st[k]) out[k] = st[k];
  if (st.sort !== 'key') out.sort = st.sort;
  if (st.order !== 'asc') out.order = st.order;
  if (st.offset) out.offset = String(st.offset);
  return out;
}
// setParams rewrites the query of the current route without a new page.
export function setParams(params) {
  const { path } = routeParams();
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v != null && v !== '') q.set(k, v);
  const s = q.toString();
  history.replaceState(null, '', '#' + path + (s ? '?' + s : ''));
}
