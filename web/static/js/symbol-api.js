// The JSON API of the symbol, strategies and feeds pages. A refusal throws an
// Error whose `param` (symbol page) or `field` (strategies) names what the
// server refused, so the page can show the message beside it.
import { fetchSession, rfc3339, toLogin } from './api.js';

async function refusal(res, path) {
  const text = (await res.text().catch(() => '')).trim();
  let body = {};
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  const message = body.error ?? (text && text.length < 500 && !text.startsWith('<') ? text : `HTTP ${res.status}`);
  return Object.assign(new Error(message), { status: res.status, param: body.param ?? null,
    field: body.field ?? null, path });
}

async function getJSON(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) if (v != null && v !== '') url.searchParams.set(k, v);
  const res = await fetch(url, { headers: { accept: 'application/json' } });
  if (res.status === 401) toLogin();
  if (!res.ok) throw await refusal(res, url.pathname);
  return res.json();
}

const iso = (t) => (t == null ? null : t instanceof Date ? rfc3339(t) : String(t));
const sym = (s) => `/api/symbol/${encodeURIComponent(s)}`;

/** Every instrument: symbol, tick_size, timezone, session times. */
export const fetchInstruments = () => getJSON('/api/instruments');

/** One instrument with `last_bar`, `last_session` and `sessions` (newest first). */
export const fetchSymbol = (symbol) => getJSON(sym(symbol));

/** The session (`day`, default the newest) or composite (`from`, `to`) profile;
 *  `ticks_per_row`, `va_pct` (a fraction), `va_method`. Values go as typed:
 *  the server parses them. */
export const fetchProfile = (symbol, q) => getJSON(`${sym(symbol)}/profile`, { ...q, from: iso(q.from), to: iso(q.to) });

/** Developing POC / VAH / VAL after each bar of the sessions in [from, to). */
export const fetchDeveloping = (symbol, q) =>
  getJSON(`${sym(symbol)}/developing`, { ...q, from: iso(q.from), to: iso(q.to) });

/** `tapeflow.order_flow` rows: delta, pressures, session CVD. */
export const fetchFlow = (symbol, tf, from, to) => getJSON(`${sym(symbol)}/flow`, { tf, from: iso(from), to: iso(to) });

/** `{ cells, imbalances }` of the bars in [from, to). */
export const fetchFootprint = (symbol, q) =>
  getJSON(`${sym(symbol)}/footprint`, { ...q, from: iso(q.from), to: iso(q.to) });

/** `{ source: 'log' | 'history', states }` of [from, to). */
export const fetchStates = (symbol, from, to) => getJSON(`${sym(symbol)}/states`, { from: iso(from), to: iso(to) });

/** `{ configs, schema, strategies }`. */
export const fetchStrategies = () => getJSON('/api/strategies');

/** Change `{ enabled?, extended_hours?, params? }` of a strategy on a symbol;
 *  a refused parameter throws with `field` set. */
export async function saveStrategy(symbol, strategy, change) {
  const path = `/api/strategies/${encodeURIComponent(symbol)}/${encodeURIComponent(strategy)}`;
  const { csrf } = await fetchSession();
  const res = await fetch(path, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': csrf },
    body: JSON.stringify(change),
  });
  if (res.status === 401) toLogin();
  if (!res.ok) throw await refusal(res, path);
  return res.json();
}

/** `{ table, feeds, symbols }`. */
export const fetchFeeds = () => getJSON('/api/feeds');
