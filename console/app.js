// The console's entry point: finds out whether the server wants a token, shows the login
// when it does, and switches pages on the URL's hash (`#/explore`, `#/devices/dev42`, ...), so
// the server serves one page and every view has a link of its own.

import { ApiError, query, session } from './api.js';
import { message, replace } from './dom.js';
import * as login from './pages/login.js';
import * as explore from './pages/explore.js';
import * as ingest from './pages/ingest.js';
import * as databases from './pages/databases.js';
import * as devices from './pages/devices.js';

// Later pages (alerts, rules) add themselves here and to the nav in index.html.
const PAGES = { explore, ingest, databases, devices };
const DEFAULT_PAGE = 'explore';

const view = document.getElementById('view');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const logoutButton = document.getElementById('logout');

/** `open` (auth off), `admin`, `limited` (a token that may not administer), or null. */
let access = null;
let cleanup = null;
/** Bumped by every navigation, so a slow probe cannot render over a later page. */
let generation = 0;

/** Asks the server who we are: SHOW DATABASES needs an admin token when auth is on. */
async function probe() {
  try {
    await query('SHOW DATABASES');
    return session.token ? 'admin' : 'open';
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    if (e instanceof ApiError && e.status === 403) return 'limited';
    throw e;
  }
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, qs] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { page: parts[0] || DEFAULT_PAGE, rest: parts.slice(1), params: new URLSearchParams(qs || '') };
}

function showChrome() {
  const signedIn = access !== null;
  nav.hidden = !signedIn;
  logoutButton.hidden = !(signedIn && session.token);
  who.textContent = {
    open: 'authentication off',
    admin: 'signed in: admin token',
    limited: 'signed in: limited token',
  }[access] || '';
}

async function route(loginNote) {
  const mine = ++generation;
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  if (access === null) {
    let a;
    try {
      a = await probe();
    } catch (e) {
      if (mine === generation) replace(view, message('error', `Cannot reach the server: ${e.text || e.message}`));
      return;
    }
    if (mine !== generation) return;
    access = a;
  }
  showChrome();
  if (access === null) {
    document.title = 'Sign in · Strata';
    login.render(view, { note: loginNote, onToken: signIn });
    return;
  }
  const { page, rest, params } = parseHash();
  const mod = PAGES[page];
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!mod) {
    replace(view, message('error', `No page ${page}.`));
    return;
  }
  document.title = `${mod.TITLE} · Strata`;
  replace(view);
  cleanup = mod.render(view, { rest, params, access }) || null;
  // Keyboard and screen-reader users land on the new page, not on the link they left.
  if (document.activeElement && nav.contains(document.activeElement)) view.focus({ preventScroll: true });
}

/** Tries a token: keeps it when the server takes it, else says why. */
async function signIn(token) {
  session.token = token;
  let a;
  try {
    a = await probe();
  } catch (e) {
    session.token = null;
    return e.text || e.message;
  }
  if (a === null) {
    session.token = null;
    return 'The server refused this token (401): it is not a valid token.';
  }
  access = a;
  route();
  return null;
}

logoutButton.addEventListener('click', () => {
  session.token = null;
  access = null;
  // Clearing the hash fires hashchange, which routes; an empty one does not.
  if (location.hash.length > 1) location.hash = '';
  else route();
});

// A token revoked or expired while the console is open: back to the login.
window.addEventListener('strata:unauthorized', () => {
  if (access === null || access === 'open') return;
  session.token = null;
  access = null;
  route('The server no longer accepts the token: sign in again.');
});

window.addEventListener('hashchange', () => route());
route();
