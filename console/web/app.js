// The console's shell: session and login, hash routes, one page mounted
// at a time (each page returns a function that stops its polling).
import { api, session, refreshSession, setUnauthorizedHook, h, replace, routeParams, errorBox, status, dropEarly } from './js/lib.js';
import overview from './js/overview.js';
import events from './js/events.js';
import members from './js/members.js';
import balancer from './js/balancer.js';
import alerts from './js/alerts.js';
import state from './js/state.js';
import groups from './js/groups.js';

const pages = { overview, events, members, balancer, alerts, state, groups };

const main = document.getElementById('main');
let unmount = null;
let mountedKey = '';

function needsLogin() { return session.auth && !session.user; }

function route(force) {
  const { path, params } = routeParams();
  const parts = path.split('/').filter(Boolean);
  const name = parts[0] || 'overview';
  // A page handles its own query changes; only a new page or sub-path remounts.
  const key = parts.join('/');
  if (!force && key === mountedKey && unmount) return;
  if (unmount) { unmount(); unmount = null; }
  mountedKey = key;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === name);
  if (needsLogin()) { showLogin(); return; }
  const page = pages[name];
  if (!page) { replace(main, h('div', { class: 'notice' }, 'No page ' + name + '.')); return; }
  main.replaceChildren();
  document.title = name + ' · platform console';
  unmount = page(main, { parts: parts.slice(1), params }) || null;
}

function showWho() {
  const who = document.getElementById('who');
  if (!session.auth) {
    replace(who, h('span', { class: 'muted', title: 'the platform runs without --auth: anyone who reaches this loopback address may change it' }, 'no auth · ' + session.role));
    return;
  }
  if (!session.user) { replace(who); return; }
  replace(who, h('span', { 'data-role': session.role }, session.user + ' · ' + session.role), ' ',
    h('button', { class: 'link', onclick: logout }, 'log out'));
}

function showLogin(message) {
  if (unmount) { unmount(); unmount = null; }
  mountedKey = '';
  const user = h('input', { name: 'user', autocomplete: 'username', required: true, autofocus: true });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const msg = h('div', { class: 'login-msg' }, message || '');
  const form = h('form', { class: 'login', id: 'login' },
    h('h1', null, 'Log in'),
    h('p', { class: 'muted' }, 'A user of the platform\'s users file (--auth).'),
    h('label', null, 'User', user), h('label', null, 'Password', pass),
    h('button', { type: 'submit' }, 'Log in'), msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const s = await api('login', { method: 'POST', body: { user: user.value, password: pass.value } });
      Object.assign(session, s);
      showWho();
      route(true);
    } catch (e) {
      replace(msg, errorBox(e));
    }
  });
  replace(main, form);
  showWho();
}

async function logout() {
  try { await api('logout', { method: 'POST' }); } catch (e) { status.error(e); }
  await refreshSession().catch(() => {});
  showWho();
  showLogin();
}

setUnauthorizedHook(async () => {
  await refreshSession().catch(() => {});
  if (needsLogin()) showLogin('Your session ended; log in again.');
});

// bootSession reads the session the server put in the page (what GET
// session answers), else asks for it.
async function bootSession() {
  const el = document.getElementById('console-session');
  if (el && el.textContent) {
    Object.assign(session, JSON.parse(el.textContent));
    el.remove(); // the CSRF token stays in session only
    return;
  }
  await refreshSession();
}

async function start() {
  try {
    await bootSession();
  } catch (e) {
    replace(main, errorBox(e));
    return;
  }
  showWho();
  window.addEventListener('hashchange', () => route(false));
  route(true);
  dropEarly(); // the page took what first.js asked for on its behalf
}

start();
