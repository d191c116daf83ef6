// Calls to Strata's HTTP API, same origin. The token the user typed is kept in
// sessionStorage (gone when the tab closes, never in a cookie, so no other site can make the
// browser send it) and sent as `Authorization: Token ...` on every call.

const TOKEN_KEY = 'strata.token';

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set token(t) {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

/** A refused or failed call: `status` is the HTTP status (0: no answer). */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
  /** For display: "403 Forbidden: token ... may not administer the server". */
  get text() {
    const what = { 0: 'no answer', 401: 'not signed in', 403: 'refused' }[this.status];
    return this.status ? `${this.status}${what ? ` (${what})` : ''}: ${this.message}` : this.message;
  }
}

/** The error text of a Strata or InfluxDB error body (`{"message"}` or `{"error"}`). */
function errorText(body) {
  try {
    const j = JSON.parse(body);
    return j.message || j.error || body;
  } catch {
    return body.trim() || 'no details';
  }
}

/** `fetch` with the token; throws [`ApiError`] unless 2xx. A 401 tells the app to sign in. */
export async function call(path, { method = 'GET', body, accept, signal } = {}) {
  const headers = {};
  const t = session.token;
  if (t) headers.Authorization = `Token ${t}`;
  if (accept) headers.Accept = accept;
  let resp;
  try {
    resp = await fetch(path, { method, body, headers, signal, credentials: 'omit', cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, `the server did not answer (${e.message})`);
  }
  if (!resp.ok) {
    const err = new ApiError(resp.status, errorText(await resp.text()));
    if (resp.status === 401) window.dispatchEvent(new CustomEvent('strata:unauthorized', { detail: err }));
    throw err;
  }
  return resp;
}

export async function getJson(path, opts) {
  return (await call(path, opts)).json();
}

/**
 * Runs InfluxQL. Returns the `results` array (one per statement, each `{series, error}`);
 * throws on a request-level error. Times are Unix milliseconds (`epoch=ms`).
 */
export async function query(q, { db, signal } = {}) {
  const body = new URLSearchParams({ q, epoch: 'ms' });
  if (db) body.set('db', db);
  const j = await (await call('/query', { method: 'POST', body, signal })).json();
  if (j.error) throw new ApiError(400, j.error);
  const results = j.results || [];
  // A series with no rows may come without `values` (SHOW CONTINUOUS QUERIES of a database
  // without any): every page can then read `values` as an array.
  for (const r of results) for (const s of r.series || []) s.values = s.values || [];
  return results;
}

/** The same query answered as CSV (`Accept: application/csv`). */
export async function queryCsv(q, { db } = {}) {
  const body = new URLSearchParams({ q });
  if (db) body.set('db', db);
  return (await call('/query', { method: 'POST', body, accept: 'application/csv' })).text();
}

/** The first statement's series, throwing its error if it failed. */
export async function series(q, opts) {
  const [r] = await query(q, opts);
  if (r && r.error) throw new ApiError(400, r.error);
  return (r && r.series) || [];
}

/** `/metrics`, as text (no token needed, sent anyway). */
export async function metricsText() {
  return (await call('/metrics')).text();
}
