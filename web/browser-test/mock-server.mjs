// A stand-in for tapeflow-web, for developing and testing the browser side
// without a database: serves web/static, the chart library and the JSON API
// with generated data, and an SSE stream with a candle event every 500 ms.
//
//   node browser-test/mock-server.mjs        (PORT=0 or unset: a free port)
// Prints "mock listening on http://127.0.0.1:PORT" once ready.
import http from 'node:http';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const webDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ROOTS = {
  '/vendor/lightweight-charts/': path.join(webDir, 'node_modules/lightweight-charts/dist'),
  '/static/': path.join(webDir, 'static'),
  '/': path.join(webDir, 'static'),
};
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.css': 'text/css', '.json': 'application/json', '.png': 'image/png', '.svg': 'image/svg+xml' };
const TF = { '1m': 60, '5m': 300, '15m': 900, '30m': 1800, '1h': 3600, '1d': 86400 };

// Deterministic pseudo-random numbers, so screenshots look alike run to run.
let seed = 20261124;
const rand = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const SYMBOLS = [
  ['AAPL', 'Apple Inc.', 189.12, 0.01], ['MSFT', 'Microsoft Corp.', 415.3, 0.01],
  ['NVDA', 'NVIDIA Corp.', 142.55, 0.01], ['SPY', 'SPDR S&P 500 ETF', 598.2, 0.01],
  ['TSLA', 'Tesla Inc.', 338.9, 0.01], ['BTC-USD', 'Bitcoin', 97250, 0.5],
  ['EURUSD', 'Euro / US Dollar', 1.0853, 0.0001],
].map(([symbol, name, price, tick]) => ({ symbol, name, price, tick, minutes: [], state: null, aggression: null }));
const STATES = ['balance', 'imbalance_up', 'imbalance_down'];

const nowSec = () => Math.floor(Date.now() / 1000);
const floor = (sec, step) => sec - (sec % step);
// Bars aligned like the real server's for a New York stock in winter:
// intraday bars on the 09:30 ET (14:30 UTC) grid, daily bars at midnight ET.
const barStart = (sec, step) => {
  const origin = step === 86400 ? 5 * 3600 : 14.5 * 3600;
  return sec - ((((sec - origin) % step) + step) % step);
};
const iso = (sec) => new Date(sec * 1000).toISOString().replace('.000Z', 'Z');
const round = (v, tick) => Number((Math.round(v / tick) * tick).toFixed(6)); // no float noise

// One trade into the symbol's current minute (a new minute starts a candle).
function trade(s, t) {
  const drift = (rand() - 0.5) * s.price * 0.0009;
  s.price = Math.max(s.tick, round(s.price + drift, s.tick));
  const size = Math.round(10 + rand() * 400) * (s.price > 10000 ? 0.01 : 1);
  const minute = floor(t, 60);
  let c = s.minutes[s.minutes.length - 1];
  if (!c || c.t !== minute) {
    c = { t: minute, open: s.price, high: s.price, low: s.price, close: s.price, volume: 0, buy: 0, sell: 0, trades: 0 };
    s.minutes.push(c);
  }
  Object.assign(c, { high: Math.max(c.high, s.price), low: Math.min(c.low, s.price), close: s.price });
  c.volume += size;
  if (drift >= 0) c.buy += size;
  else c.sell += size;
  c.trades += 1;
  return c;
}

// Three days of history, a few trades a minute.
const start = floor(nowSec(), 60) - 3 * 86400;
for (const s of SYMBOLS) {
  for (let t = start; t < nowSec(); t += 60) for (let i = 0, n = 2 + Math.floor(rand() * 6); i < n; i++) trade(s, t + i);
  s.state = STATES[Math.floor(rand() * 3)];
  s.aggression = Math.round(rand() * 100);
}

const signals = [];
let nextSignalId = 1;
function addSignal(s, t) {
  const price = s.minutes.findLast((c) => c.t <= t)?.close ?? s.price;
  const side = rand() < 0.5 ? 'buy' : 'sell';
  const kind = signals.filter((x) => x.symbol === s.symbol).at(-1)?.kind === 'entry' ? 'exit' : 'entry';
  const risk = price * 0.004;
  const sign = side === 'buy' ? 1 : -1;
  const sig = { id: nextSignalId++, time: iso(t), bar: iso(floor(t, 60)), symbol: s.symbol, kind, side,
    entry: price, stop: round(price - sign * risk, s.tick), target: round(price + sign * 2 * risk, s.tick),
    reason: kind === 'entry' ? `${side === 'buy' ? 'Upward' : 'Downward'} imbalance, aggression ${s.aggression}`
      : 'Back inside value area', status: 'new' };
  signals.push(sig);
  return sig;
}
for (const s of SYMBOLS.slice(0, 4)) for (let k = 8; k > 0; k--) addSignal(s, nowSec() - k * 1700 - Math.floor(rand() * 600));

const candleJSON = (symbol, c, key = 'time') => ({ symbol, [key]: iso(c.t), open: c.open, high: c.high, low: c.low,
  close: c.close, volume: c.volume, buy_volume: c.buy, sell_volume: c.sell, trades: c.trades });

function candles(s, step, from, to) {
  const out = new Map();
  for (const c of s.minutes) {
    if (c.t < from || c.t >= to) continue;
    const b = barStart(c.t, step);
    const bar = out.get(b);
    if (!bar) out.set(b, { ...c, t: b });
    else Object.assign(bar, { high: Math.max(bar.high, c.high), low: Math.min(bar.low, c.low), close: c.close,
      volume: bar.volume + c.volume, buy: bar.buy + c.buy, sell: bar.sell + c.sell, trades: bar.trades + c.trades });
  }
  return [...out.values()].map((c) => { const { symbol, ...rest } = candleJSON(s.symbol, c); return rest; });
}

function symbolsJSON() {
  const dayStart = floor(nowSec(), 86400);
  return SYMBOLS.map((s) => {
    const today = s.minutes.filter((c) => c.t >= dayStart);
    const prev = s.minutes.filter((c) => c.t < dayStart).at(-1)?.close ?? s.minutes[0].open;
    return { symbol: s.symbol, name: s.name, last: s.price, change_pct: +((s.price / prev - 1) * 100).toFixed(3),
      volume: today.reduce((v, c) => v + c.volume, 0), state: s.state, aggression: s.aggression,
      updated: iso(s.minutes.at(-1).t) };
  });
}

// ---- live stream ----
const clients = new Set();
function broadcast(event, data) {
  const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
  for (const res of clients) res.write(frame);
}
let beat = 0;
setInterval(() => {
  // AAPL every other tick (it is the default selection), the rest in turn.
  const s = beat % 2 === 0 ? SYMBOLS[0] : SYMBOLS[1 + ((beat >> 1) % (SYMBOLS.length - 1))];
  beat += 1;
  broadcast('candle', candleJSON(s.symbol, trade(s, nowSec()), 'bucket'));
  if (beat % 8 === 0) {
    const x = SYMBOLS[Math.floor(rand() * SYMBOLS.length)];
    x.state = STATES[Math.floor(rand() * 3)];
    x.aggression = Math.round(rand() * 100);
    broadcast('state', { symbol: x.symbol, state: x.state, confidence: Math.round(50 + rand() * 50), aggression: x.aggression });
  }
  if (beat % 20 === 0) {
    const sig = addSignal(SYMBOLS[Math.floor(rand() * 4)], nowSec());
    broadcast('signal', { id: sig.id, symbol: sig.symbol, kind: sig.kind, side: sig.side });
  }
}, 500).unref();
setInterval(() => { for (const res of clients) res.write(': keep-alive\n\n'); }, 15000).unref();

// ---- HTTP ----
function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function serveFile(res, pathname) {
  for (const [prefix, root] of Object.entries(ROOTS)) {
    if (!pathname.startsWith(prefix)) continue;
    const rel = pathname.slice(prefix.length) || 'index.html';
    const file = path.resolve(root, decodeURIComponent(rel));
    if (!file.startsWith(root + path.sep)) break; // no escaping the root
    try {
      if (!(await stat(file)).isFile()) break;
    } catch {
      break;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
    createReadStream(file).pipe(res);
    return;
  }
  json(res, 404, { error: 'not found' });
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const q = Object.fromEntries(url.searchParams);
  const find = () => SYMBOLS.find((s) => s.symbol === q.symbol);
  switch (url.pathname) {
    case '/api/symbols':
      return json(res, 200, symbolsJSON());
    case '/api/candles': {
      const s = find();
      if (!s) return json(res, 404, { error: `unknown symbol ${q.symbol}` });
      if (!TF[q.tf]) return json(res, 400, { error: `bad tf ${q.tf}` });
      const from = Date.parse(q.from) / 1000;
      const to = Date.parse(q.to) / 1000;
      if (!Number.isFinite(from) || !Number.isFinite(to)) return json(res, 400, { error: 'bad from/to' });
      return json(res, 200, candles(s, TF[q.tf], from, to));
    }
    case '/api/signals': {
      const limit = Math.max(1, Math.min(1000, Number(q.limit) || 200));
      const list = signals.filter((x) => !q.symbol || x.symbol === q.symbol);
      return json(res, 200, list.slice(-limit).reverse());
    }
    case '/events':
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      res.write(': connected\n\n');
      clients.add(res);
      req.on('close', () => clients.delete(res));
      return undefined;
    default:
      return serveFile(res, url.pathname);
  }
});

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(`mock listening on http://127.0.0.1:${server.address().port}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
