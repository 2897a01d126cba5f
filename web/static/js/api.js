// The JSON API of tapeflow-web.

// RFC 3339 without milliseconds: the plainest form for any server parser.
const rfc3339 = (date) => date.toISOString().replace(/\.\d{3}Z$/, 'Z');

async function getJSON(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) if (v != null) url.searchParams.set(k, v);
  const res = await fetch(url, { headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`${url.pathname}: HTTP ${res.status}`);
  return res.json();
}

export const fetchSymbols = () => getJSON('/api/symbols');

export const fetchCandles = (symbol, tf, from, to) =>
  getJSON('/api/candles', { symbol, tf, from: rfc3339(from), to: rfc3339(to) });

/** Recent signals of one symbol, or of all symbols when `symbol` is null. */
export const fetchSignals = (symbol, limit = 200) => getJSON('/api/signals', { symbol, limit });
