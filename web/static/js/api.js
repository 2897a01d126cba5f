// The JSON API of tapeflow-web.

// RFC 3339 without milliseconds: the plainest form for any server parser.
export const rfc3339 = (date) => date.toISOString().replace(/\.\d{3}Z$/, 'Z');

// The server explains refusals as {"error": "..."} (or, when the request
// could not even be parsed, as plain text); either beats a bare status.
async function failure(res) {
  const text = (await res.text().catch(() => '')).trim();
  let message = text.length > 0 && text.length < 500 && !text.startsWith('<') ? text : `HTTP ${res.status}`;
  try {
    message = JSON.parse(text).error ?? message;
  } catch {
    // not JSON: keep the text
  }
  return new Error(message);
}

// ---- the session: every API call needs one; mutations carry its CSRF token ----

/** Off to the login page, coming back here afterwards. */
export function toLogin() {
  const next = `${location.pathname}${location.hash}`;
  location.assign(`/login?next=${encodeURIComponent(next)}`);
}

let session = null;

/** `{ name, role, csrf }` of the logged-in user (read once, then cached). */
export function fetchSession() {
  session ??= getJSON('/api/session').catch((err) => {
    session = null;
    throw err;
  });
  return session;
}

/** Ends the session; the caller goes to the login page. */
export async function logout() {
  const res = await sendJSON('POST', '/logout', {}).catch(() => null);
  session = null;
  return res;
}

async function getJSON(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) if (v != null) url.searchParams.set(k, v);
  const res = await fetch(url, { headers: { accept: 'application/json' } });
  if (res.status === 401) toLogin();
  if (!res.ok) throw new Error(`${url.pathname}: ${(await failure(res)).message}`);
  return res.json();
}

/** A mutating request (POST, PUT, PATCH, DELETE) with a JSON body and the
 *  session's CSRF token; a refusal throws with the server's explanation. */
export async function sendJSON(method, path, body) {
  const { csrf } = await fetchSession();
  const res = await fetch(path, {
    method,
    headers: { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': csrf },
    body: JSON.stringify(body ?? {}),
  });
  if (res.status === 401) toLogin();
  if (!res.ok) throw await failure(res);
  return res.json();
}

export const fetchSymbols = () => getJSON('/api/symbols');

export const fetchCandles = (symbol, tf, from, to) =>
  getJSON('/api/candles', { symbol, tf, from: rfc3339(from), to: rfc3339(to) });

/** Recent signals of one symbol, or of all symbols when `symbol` is null. */
export const fetchSignals = (symbol, limit = 200) => getJSON('/api/signals', { symbol, limit });

/** Backtest runs, newest first. */
export const fetchBacktests = () => getJSON('/api/backtests');

/** One run: `{ run, stats }`. */
export const fetchBacktest = (id) => getJSON(`/api/backtests/${encodeURIComponent(id)}`);

export const fetchEquity = (id) => getJSON(`/api/backtests/${encodeURIComponent(id)}/equity`);

export const fetchTrades = (id) => getJSON(`/api/backtests/${encodeURIComponent(id)}/trades`);

/** Start a run: `{ symbols, from, to, params }` → `{ id }`. A refusal throws
 *  with the server's explanation, meant for the user. */
export const createBacktest = (body) => postJSON('/api/backtests', body);

// ---- the account: what the executor recorded ----

/** `{ trading_enabled, accounts, total, realised_pnl, unrealised_pnl, … }`;
 *  money as decimal strings. */
export const fetchAccount = () => getJSON('/api/account');

export const fetchPositions = () => getJSON('/api/positions');

/** Orders newest first, each with its bracket `legs`; `status` 'open' or 'all'. */
export const fetchOrders = (status = 'open', limit = 100) => getJSON('/api/orders', { status, limit });

/** Recent fills of one symbol, or of all when `symbol` is null. */
export const fetchFills = (symbol, limit = 200) => getJSON('/api/fills', { symbol, limit });

/** Signals the executor refused or that expired. */
export const fetchRejections = (limit = 100) => getJSON('/api/rejections', { limit });

const postJSON = (path, body) => sendJSON('POST', path, body);

/** The kill switch: `enabled` false stops new entries. → `{ trading_enabled }` */
export const setTrading = (enabled) => postJSON('/api/kill-switch', { enabled });

/** One exit signal per open position. → `{ signals, count }` */
export const flattenAll = () => postJSON('/api/flatten', {});
