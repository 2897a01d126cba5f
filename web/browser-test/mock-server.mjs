// A stand-in for tapeflow-web, for developing and testing the browser side
// without a database: serves web/static, the chart library and the JSON API
// with generated data (backtests included: a new run completes in ~2 s; the
// account page's positions, orders and fills too), and an SSE stream with a
// candle event every 500 ms.
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
const prng = (seed) => () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const rand = prng(20261124);

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

// ---- backtests ----
// A toy simulator, so that the numbers shown for a run hang together: random
// entries, exits at a stop, a target, after a while, at a gap in the data
// (a session's end) or at the end of the data.
const CAPITAL = 100000;
const r4 = (v) => (Number.isFinite(v) ? Number(v.toFixed(4)) : null);
const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
const stdev = (xs) => Math.sqrt(mean(xs.map((x) => (x - mean(xs)) ** 2)));
// Durations as PostgreSQL prints intervals: "2 days 03:04:00".
function interval(sec) {
  const d = Math.floor(sec / 86400);
  const hms = [3600, 60, 1].map((u, i) => String(Math.floor(sec / u) % (i ? 60 : 24)).padStart(2, '0')).join(':');
  return d ? `${d} day${d === 1 ? '' : 's'} ${hms}` : hms;
}

/** `paths`: symbol → [{ t, close }] ascending. Returns equity points and trades. */
function simulate(paths, rng) {
  const times = [...new Set(Object.values(paths).flatMap((p) => p.map((c) => c.t)))].sort((a, b) => a - b);
  const at = Object.fromEntries(Object.entries(paths).map(([s, p]) => [s, new Map(p.map((c, i) => [c.t, i]))]));
  const open = new Map();
  const last = new Map();
  const trades = [];
  const equity = [];
  let realized = 0;
  let peak = CAPITAL;
  for (const t of times) {
    for (const [symbol, path] of Object.entries(paths)) {
      const i = at[symbol].get(t);
      if (i === undefined) continue;
      const { close } = path[i];
      const next = path[i + 1];
      last.set(symbol, close);
      const pos = open.get(symbol);
      if (pos) {
        const move = pos.sign * (close - pos.entry);
        pos.mae = Math.min(pos.mae, move);
        pos.mfe = Math.max(pos.mfe, move);
        const reason = move <= -pos.risk ? 'stop' : move >= 2 * pos.risk ? 'target' : !next ? 'end_of_data'
          : next.t - t > 1800 ? 'session_end' : t - pos.t >= pos.hold ? 'signal' : null;
        if (!reason) continue;
        const fees = Math.max(1, 0.0001 * pos.qty * (pos.entry + close));
        const pnl = move * pos.qty - fees;
        realized += pnl;
        open.delete(symbol);
        const d = close < 10 ? 5 : 2;
        trades.push({ symbol, side: pos.sign > 0 ? 'long' : 'short', quantity: pos.qty, entry_time: iso(pos.t),
          entry_price: pos.entry.toFixed(d), exit_time: iso(t), exit_price: close.toFixed(d), pnl: pnl.toFixed(2),
          return_pct: r4((pnl / (pos.qty * pos.entry)) * 100), fees: fees.toFixed(2), exit_reason: reason,
          mae: r4(pos.mae), mfe: r4(pos.mfe) });
      } else if (next && next.t - t <= 60 && rng() < 10 / path.length) {
        open.set(symbol, { t, entry: close, sign: rng() < 0.55 ? 1 : -1, risk: close * 0.004, mae: 0, mfe: 0,
          qty: Math.max(1, Math.floor((CAPITAL * 0.25) / close)), hold: 1200 + Math.floor(rng() * 6000) });
      }
    }
    let value = CAPITAL + realized;
    for (const [symbol, pos] of open) value += pos.sign * (last.get(symbol) - pos.entry) * pos.qty;
    peak = Math.max(peak, value);
    equity.push({ time: iso(t), equity: Number(value.toFixed(2)), drawdown_pct: r4((value / peak - 1) * 100),
      exposed: open.size > 0 });
  }
  return { equity, trades };
}

// Statistics in the shape of the real server's: the names tapeflow.backtest_stats
// gives them (durations in days, times as text), in a JSON object whose keys come
// sorted, as serde_json sends them (a subset computed for real).
function statsOf({ equity, trades }, paths) {
  if (!equity.length) return null;
  const values = equity.map((p) => p.equity);
  const rets = values.slice(1).map((v, i) => v / values[i] - 1);
  const days = new Set(equity.map((p) => p.time.slice(0, 10))).size;
  const perYear = (rets.length / days) * 252;
  const total = values.at(-1) / CAPITAL - 1;
  const span = (Date.parse(equity.at(-1).time) - Date.parse(equity[0].time)) / 1000;
  const annual = (1 + total) ** (252 / days) - 1;
  const vol = stdev(rets) * Math.sqrt(perYear);
  const downside = Math.sqrt(mean(rets.map((r) => Math.min(0, r) ** 2)));
  // Drawdown episodes: from leaving a peak to regaining it.
  const episodes = [];
  let ep = null;
  for (const p of equity) {
    if (p.drawdown_pct < 0) {
      ep ??= { start: Date.parse(p.time), depth: 0 };
      ep.depth = Math.min(ep.depth, p.drawdown_pct);
      ep.end = Date.parse(p.time);
    } else if (ep) {
      episodes.push(ep);
      ep = null;
    }
  }
  if (ep) episodes.push(ep);
  const maxDD = Math.min(0, ...episodes.map((e) => e.depth));
  const ddSecs = episodes.map((e) => (e.end - e.start) / 1000);
  const pnls = trades.map((t) => Number(t.pnl));
  const pcts = trades.map((t) => t.return_pct);
  const held = trades.map((t) => (Date.parse(t.exit_time) - Date.parse(t.entry_time)) / 1000);
  const won = pnls.filter((x) => x > 0);
  const lost = pnls.filter((x) => x <= 0);
  const winRate = trades.length ? won.length / trades.length : null;
  const payoff = won.length && lost.length ? mean(won) / Math.abs(mean(lost)) : null;
  const holds = Object.values(paths).map((p) => p.at(-1).close / p[0].close - 1);
  const inDays = (secs) => secs / 86400;
  const stats = {
    'Start': equity[0].time, 'End': equity.at(-1).time, 'Duration': inDays(span),
    'Exposure Time [%]': r4((equity.filter((p) => p.exposed).length / equity.length) * 100),
    'Equity Final [$]': values.at(-1), 'Equity Peak [$]': Math.max(...values),
    'Return [%]': r4(total * 100), 'Buy & Hold Return [%]': r4(mean(holds) * 100),
    'Return (Ann.) [%]': r4(annual * 100), 'Volatility (Ann.) [%]': r4(vol * 100),
    'CAGR [%]': r4(((1 + total) ** (365 * 86400 / Math.max(span, 86400)) - 1) * 100),
    'Sharpe Ratio': r4((mean(rets) / stdev(rets)) * Math.sqrt(perYear)),
    'Sortino Ratio': downside ? r4((mean(rets) / downside) * Math.sqrt(perYear)) : null,
    'Calmar Ratio': maxDD ? r4(annual / Math.abs(maxDD / 100)) : null,
    'Max. Drawdown [%]': r4(maxDD), 'Avg. Drawdown [%]': episodes.length ? r4(mean(episodes.map((e) => e.depth))) : null,
    'Max. Drawdown Duration': ddSecs.length ? inDays(Math.max(...ddSecs)) : null,
    'Avg. Drawdown Duration': ddSecs.length ? inDays(Math.round(mean(ddSecs))) : null,
    '# Trades': trades.length, 'Win Rate [%]': winRate == null ? null : r4(winRate * 100),
    'Best Trade [%]': trades.length ? Math.max(...pcts) : null, 'Worst Trade [%]': trades.length ? Math.min(...pcts) : null,
    'Avg. Trade [%]': trades.length ? r4(mean(pcts)) : null,
    'Max. Trade Duration': held.length ? inDays(Math.max(...held)) : null,
    'Avg. Trade Duration': held.length ? inDays(Math.round(mean(held))) : null,
    'Profit Factor': lost.length ? r4(won.reduce((a, b) => a + b, 0) / Math.abs(lost.reduce((a, b) => a + b, 0))) : null,
    'Expectancy [%]': trades.length ? r4(mean(pcts)) : null,
    'SQN': trades.length > 1 ? r4((Math.sqrt(trades.length) * mean(pnls)) / stdev(pnls)) : null,
    'Kelly Criterion': payoff ? r4(winRate - (1 - winRate) / payoff) : null,
    'Total Fees [$]': Number(trades.reduce((a, t) => a + Number(t.fees), 0).toFixed(2)),
  };
  return Object.fromEntries(Object.entries(stats).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

const runs = []; // newest last
const results = new Map(); // id → { stats, equity, trades }

function finish(run, result, paths) {
  const stats = statsOf(result, paths);
  results.set(run.id, { stats, equity: result.equity.map(({ exposed, ...p }) => p), trades: result.trades });
  Object.assign(run, { status: 'completed', progress: 1, trades: stats?.['# Trades'] ?? 0,
    return_pct: stats?.['Return [%]'] ?? null, sharpe: stats?.['Sharpe Ratio'] ?? null,
    max_drawdown_pct: stats?.['Max. Drawdown [%]'] ?? null });
}

// Fixed runs: a cancelled and a failed one, and one completed over five
// sessions of made-up minutes (~2000 equity points, ~20 trades).
{
  const base = { params: {}, error: null, trades: null, return_pct: null, sharpe: null, max_drawdown_pct: null };
  runs.push({ ...base, id: 1, name: 'MSFT 2026-11-09..2026-11-13', symbols: ['MSFT'], from: '2026-11-09T14:30:00Z',
    to: '2026-11-13T21:00:00Z', status: 'cancelled', progress: 0.62, created_at: '2026-11-20T22:14:05Z',
    started_at: '2026-11-20T22:14:05Z', finished_at: '2026-11-20T22:14:41Z' });
  runs.push({ ...base, id: 2, name: 'TSLA 2026-11-16..2026-11-18', symbols: ['TSLA'], from: '2026-11-16T14:30:00Z',
    to: '2026-11-18T21:00:00Z', params: { strategy: { min_aggression_score: 80 } }, status: 'failed', progress: 0.35,
    error: 'no ticks for TSLA between 2026-11-17T14:30:00Z and 2026-11-17T21:00:00Z: gap in the tick store',
    created_at: '2026-11-21T15:02:10Z', started_at: '2026-11-21T15:02:10Z', finished_at: '2026-11-21T15:02:13Z' });
  const rng = prng(11);
  const paths = {};
  for (const [symbol, start] of [['AAPL', 186.4], ['MSFT', 421.7]]) {
    let close = start;
    paths[symbol] = [];
    for (let day = 16; day <= 20; day++) {
      const open = Date.parse(`2026-11-${day}T14:30:00Z`) / 1000;
      for (let m = 0; m < 390; m++) {
        close = round(close * (1 + (rng() - 0.49) * 0.0022), 0.01);
        paths[symbol].push({ t: open + 60 * m, close });
      }
    }
  }
  const run = { ...base, id: 3, name: 'AAPL,MSFT 2026-11-16..2026-11-20', symbols: ['AAPL', 'MSFT'],
    from: '2026-11-16T14:30:00Z', to: '2026-11-20T21:00:00Z', params: { strategy: { min_aggression_score: 60 } },
    created_at: '2026-11-21T16:40:00Z', started_at: '2026-11-21T16:40:00Z', finished_at: '2026-11-21T16:40:07Z' };
  runs.push(run);
  finish(run, simulate(paths, rng), paths);
}

/** POST /api/backtests: validate like the server, then run for ~2 s,
 *  announcing progress as `backtest` events. */
function startBacktest(body) {
  const bad = (error) => ({ error });
  if (!body || typeof body !== 'object') return bad('expected a JSON object');
  const { symbols, params = {} } = body;
  if (!Array.isArray(symbols) || !symbols.length) return bad('symbols: expected a non-empty array');
  const unknown = symbols.find((x) => !SYMBOLS.some((s) => s.symbol === x));
  if (unknown !== undefined) return bad(`unknown symbol ${unknown}`);
  const from = Date.parse(body.from);
  const to = Date.parse(body.to);
  if (!Number.isFinite(from) || !Number.isFinite(to)) return bad('from/to: expected RFC 3339 timestamps');
  if (from >= to) return bad('from must be before to');
  if (params === null || typeof params !== 'object' || Array.isArray(params)) return bad('params: expected an object');
  const now = iso(nowSec());
  const run = { id: runs.at(-1).id + 1, name: `${symbols.join(',')} ${body.from.slice(0, 10)}..${body.to.slice(0, 10)}`,
    symbols, from: iso(from / 1000), to: iso(to / 1000), params, status: 'running', error: null, progress: 0,
    created_at: now, started_at: now, finished_at: null, trades: null, return_pct: null, sharpe: null,
    max_drawdown_pct: null };
  runs.push(run);
  const timer = setInterval(() => {
    run.progress = r4(Math.min(1, run.progress + 0.1));
    if (run.progress < 1) {
      broadcast('backtest', { id: run.id, status: 'running', progress: run.progress });
      return;
    }
    clearInterval(timer);
    run.finished_at = iso(nowSec());
    const paths = Object.fromEntries(run.symbols.map((x) => [x, SYMBOLS.find((s) => s.symbol === x).minutes
      .filter((c) => c.t * 1000 >= from && c.t * 1000 < to).map((c) => ({ t: c.t, close: c.close }))]));
    const empty = Object.keys(paths).find((x) => !paths[x].length);
    if (empty) {
      Object.assign(run, { status: 'failed', error: `no candles for ${empty} between ${run.from} and ${run.to}` });
      broadcast('backtest', { id: run.id, status: 'failed', error: run.error });
      return;
    }
    finish(run, simulate(paths, prng(run.id)), paths);
    broadcast('backtest', { id: run.id, status: 'completed' });
  }, 200);
  return { id: run.id };
}

async function backtests(req, res, id, part) {
  if (id === undefined) {
    if (req.method === 'GET') return json(res, 200, [...runs].reverse());
    if (req.method !== 'POST') return json(res, 405, { error: 'method not allowed' });
    let body;
    try {
      let text = '';
      for await (const chunk of req) text += chunk;
      body = JSON.parse(text);
    } catch {
      return json(res, 400, { error: 'expected a JSON body' });
    }
    const started = startBacktest(body);
    return json(res, started.error ? 400 : 202, started);
  }
  const run = runs.find((r) => r.id === Number(id));
  if (!run) return json(res, 404, { error: `no backtest ${id}` });
  const result = results.get(run.id);
  if (part === 'equity') return json(res, 200, result?.equity ?? []);
  if (part === 'trades') return json(res, 200, result?.trades ?? []);
  return json(res, 200, { run, stats: result?.stats ?? null });
}

// ---- account: what the executor records ----
// Two open bracket positions (AAPL long, NVDA short) and a closed MSFT round
// trip, with their orders and fills at prices of the generated minutes, two
// refused signals, and a paper account. Money is sent as decimal strings, as
// the real server does. "Flatten all" writes exit signals, then plays the
// executor: a second later each position is closed by a market fill,
// announced as `order` events.
const dec = (v, d = 8) => String(Number(Number(v).toFixed(d)));
const risk = { trading_enabled: true };
const orders = []; // top-level orders, each with legs
const fills = [];
const book = new Map(); // symbol → { symbol, strategy, qty (signed), avg, realised, fees, stop, target, opened, entry_signal }
const rejections = [];
let nextOrderId = 1;
let nextFillId = 1;
const START_EQUITY = 100000;

const priceAt = (s, t) => s.minutes.findLast((c) => c.t <= t)?.close ?? s.price;
const bySymbol = (symbol) => SYMBOLS.find((s) => s.symbol === symbol);

function addOrder({ signal, parent = null, symbol, purpose, leg, side, qty, limit = null, stop = null, status,
  filled = 0, avg = null, t }) {
  const id = nextOrderId++;
  const suffix = { entry: 'entry', take_profit: 'tp', stop_loss: 'sl', market: 'exit' }[leg];
  const o = { id, signal_id: signal, parent_id: parent?.id ?? null, broker: 'paper',
    client_order_id: `tf-${signal}-${suffix}`, broker_order_id: `pb-${1000 + id}`, symbol, strategy: 'amt', purpose,
    leg, side, qty: dec(qty), limit_price: limit == null ? null : dec(limit), stop_price: stop == null ? null : dec(stop),
    status, open: !['filled', 'canceled', 'expired', 'rejected', 'replaced', 'done_for_day'].includes(status),
    filled_qty: dec(filled), filled_avg_price: avg == null ? null : dec(avg), error: null, created_at: iso(t),
    updated_at: iso(t), legs: [] };
  if (parent) parent.legs.push(o);
  else orders.push(o);
  return o;
}

/** A fill, applied to the book like the database's trigger does. */
function addFill(order, qty, price, t, fee = Math.max(0.01, Number((qty * 0.005).toFixed(2)))) {
  const p = book.get(order.symbol) ?? { symbol: order.symbol, strategy: 'amt', qty: 0, avg: 0, realised: 0, fees: 0 };
  book.set(order.symbol, p);
  const signedQty = order.side === 'buy' ? qty : -qty;
  let realised = 0;
  if (p.qty !== 0 && Math.sign(p.qty) !== Math.sign(signedQty)) {
    const closing = Math.min(Math.abs(p.qty), qty);
    const carried = (p.fees * closing) / Math.abs(p.qty);
    realised = (price - p.avg) * closing * Math.sign(p.qty) - carried - (fee * closing) / qty;
    p.fees -= carried;
    p.qty += Math.sign(signedQty) * closing;
    p.realised += realised;
    if (p.qty === 0) Object.assign(p, { avg: 0, stop: null, target: null, opened: null, entry_signal: null });
  } else {
    if (p.qty === 0) Object.assign(p, { opened: t, entry_signal: order.signal_id });
    p.avg = (p.avg * Math.abs(p.qty) + price * qty) / (Math.abs(p.qty) + qty);
    p.qty += signedQty;
    p.fees += fee;
  }
  fills.push({ id: nextFillId++, order_id: order.id, broker: 'paper', execution_id: `px-${nextFillId}`,
    symbol: order.symbol, strategy: 'amt', side: order.side, qty: dec(qty), price: dec(price), fee: dec(fee),
    realised_pnl: dec(realised), time: iso(t), client_order_id: order.client_order_id, purpose: order.purpose,
    leg: order.leg, signal_id: order.signal_id });
}

/** An entry with its bracket: filled at `t`, legs working (or closed by `exitAt`). */
function bracket(symbol, side, qty, t, exitAt) {
  const s = bySymbol(symbol);
  const price = priceAt(s, t);
  const sign = side === 'buy' ? 1 : -1;
  const signal = nextSignalId++;
  const exitSide = side === 'buy' ? 'sell' : 'buy';
  const stop = round(price * (1 - sign * 0.006), s.tick);
  const target = round(price * (1 + sign * 0.012), s.tick);
  const entry = addOrder({ signal, symbol, purpose: 'entry', leg: 'entry', side, qty, limit: price, status: 'filled',
    filled: qty, avg: price, t });
  addFill(entry, qty, price, t);
  Object.assign(book.get(symbol), { stop, target });
  const tp = addOrder({ signal, parent: entry, symbol, purpose: 'exit', leg: 'take_profit', side: exitSide, qty,
    limit: target, status: 'new', t });
  const sl = addOrder({ signal, parent: entry, symbol, purpose: 'exit', leg: 'stop_loss', side: exitSide, qty, stop,
    status: 'new', t });
  if (exitAt) {
    const exit = priceAt(s, exitAt);
    Object.assign(tp, { status: 'filled', open: false, filled_qty: dec(qty), filled_avg_price: dec(exit),
      limit_price: dec(exit), updated_at: iso(exitAt) });
    Object.assign(sl, { status: 'canceled', open: false, updated_at: iso(exitAt) });
    addFill(tp, qty, exit, exitAt);
  }
}

{
  const now = floor(nowSec(), 60);
  bracket('MSFT', 'buy', 20, now - 6 * 3600, now - 5 * 3600);
  bracket('AAPL', 'buy', 50, now - 2 * 3600 - 600);
  bracket('NVDA', 'sell', 30, now - 3600 - 300);
  rejections.push(
    { id: nextSignalId++, time: iso(now - 1500), bar: iso(now - 1560), symbol: 'TSLA', strategy: 'amt', kind: 'entry',
      side: 'buy', entry: dec(priceAt(bySymbol('TSLA'), now - 1560)), stop: null, target: null, quantity: '70',
      reason: 'Upward imbalance, aggression 81', status: 'rejected', reject_code: 'max_positions',
      error: '2 positions open, the limit is 2', origin: 'strategy', closed_at: iso(now - 1499) },
    { id: nextSignalId++, time: iso(now - 700), bar: iso(now - 720), symbol: 'SPY', strategy: 'amt', kind: 'entry',
      side: 'sell', entry: '612.4', stop: null, target: null, quantity: '40', reason: 'Downward imbalance, aggression 77',
      status: 'rejected', reject_code: 'price_band', error: 'entry 612.40 is 2.37% from the last trade 598.20 (band 1%)',
      origin: 'strategy', closed_at: iso(now - 699) },
  );
}

const openPositions = () => [...book.values()].filter((p) => p.qty !== 0);

function positionsJSON() {
  return openPositions().map((p) => {
    const last = bySymbol(p.symbol).price;
    return { symbol: p.symbol, strategy: p.strategy, side: p.qty > 0 ? 'long' : 'short', quantity: dec(Math.abs(p.qty)),
      avg_price: dec(p.avg), stop: p.stop == null ? null : dec(p.stop), target: p.target == null ? null : dec(p.target),
      opened_at: iso(p.opened), entry_signal: p.entry_signal, last_price: dec(last),
      unrealised_pnl: dec((last - p.avg) * p.qty), realised_pnl: dec(p.realised), open_fees: dec(p.fees) };
  });
}

function accountJSON() {
  const unrealised = openPositions().reduce((a, p) => a + (bySymbol(p.symbol).price - p.avg) * p.qty, 0);
  const realised = [...book.values()].reduce((a, p) => a + p.realised, 0);
  const dayStart = floor(nowSec(), 86400);
  const today = fills.filter((f) => Date.parse(f.time) / 1000 >= dayStart)
    .reduce((a, f) => a + Number(f.realised_pnl), 0);
  const exposure = openPositions().reduce((a, p) => a + bySymbol(p.symbol).price * p.qty, 0);
  const equity = START_EQUITY + realised + unrealised;
  const snapshot = { start_equity: dec(START_EQUITY), equity: dec(equity, 2), cash: dec(equity - exposure, 2),
    buying_power: dec(2 * equity - Math.abs(exposure), 2), day_pnl: dec(equity - START_EQUITY, 2),
    updated_at: iso(nowSec()) };
  return {
    trading_enabled: risk.trading_enabled,
    accounts: [{ broker: 'paper', day: iso(dayStart).slice(0, 10), ...snapshot, realised_pnl: dec(realised, 2),
      unrealised_pnl: dec(unrealised, 2) }],
    total: snapshot,
    realised_pnl: dec(realised), realised_pnl_today: dec(today), unrealised_pnl: dec(unrealised),
    open_positions: openPositions().length,
    open_orders: orders.flatMap((o) => [o, ...o.legs]).filter((o) => o.open).length,
    orders: orders.flatMap((o) => [o, ...o.legs]).length, fills: fills.length,
  };
}

/** POST /api/flatten: exit signals, then the "executor" closes each position. */
function flatten() {
  const t = nowSec();
  const written = openPositions().filter((p) => !p.exiting).map((p) => {
    p.exiting = true;
    const side = p.qty > 0 ? 'sell' : 'buy';
    const s = { id: nextSignalId++, symbol: p.symbol, strategy: p.strategy, kind: 'exit', side,
      quantity: dec(Math.abs(p.qty)), entry: dec(bySymbol(p.symbol).price), origin: 'flatten', status: 'new' };
    signals.push({ ...s, time: iso(t), bar: iso(floor(t, 60)), reason: 'flatten_all' });
    broadcast('signal', { id: s.id, symbol: s.symbol, kind: 'exit', side, status: 'new' });
    return s;
  });
  setTimeout(() => {
    for (const s of written) {
      const p = book.get(s.symbol);
      const entry = orders.findLast((o) => o.symbol === s.symbol && o.purpose === 'entry');
      for (const leg of entry?.legs ?? []) {
        if (!leg.open) continue;
        Object.assign(leg, { status: 'canceled', open: false, updated_at: iso(nowSec()) });
        broadcast('order', { order_id: leg.id, symbol: leg.symbol, leg: leg.leg, event: 'canceled', status: 'canceled' });
      }
      const exit = addOrder({ signal: s.id, symbol: s.symbol, purpose: 'exit', leg: 'market', side: s.side,
        qty: Math.abs(p.qty), status: 'filled', filled: Math.abs(p.qty), avg: bySymbol(s.symbol).price, t: nowSec() });
      addFill(exit, Math.abs(p.qty), bySymbol(s.symbol).price, nowSec());
      delete p.exiting;
      broadcast('order', { order_id: exit.id, symbol: s.symbol, leg: 'market', event: 'fill', status: 'filled' });
    }
  }, 1000).unref();
  return { signals: written, count: written.length };
}

/** `limit` like the server: absent → `def`, else a whole number in 1..max. */
function limitOf(q, def, max) {
  if (q.limit === undefined) return def;
  const n = Number(q.limit);
  return Number.isInteger(n) && n >= 1 && n <= max ? n : { error: `limit: expected a whole number from 1 to ${max}, got "${q.limit}"` };
}

async function readJSON(req) {
  let text = '';
  for await (const chunk of req) text += chunk;
  return JSON.parse(text);
}

async function accountApi(req, res, pathname, q) {
  const post = req.method === 'POST';
  switch (pathname) {
    case '/api/account':
      return json(res, 200, accountJSON());
    case '/api/positions':
      return json(res, 200, positionsJSON());
    case '/api/orders': {
      const status = q.status ?? 'open';
      if (!['open', 'all'].includes(status)) return json(res, 400, { error: `status: expected open or all, got "${status}"` });
      const limit = limitOf(q, 100, 1000);
      if (limit.error) return json(res, 400, limit);
      const list = orders.filter((o) => status === 'all' || o.open || o.legs.some((l) => l.open));
      return json(res, 200, list.slice(-limit).reverse());
    }
    case '/api/fills': {
      if (q.symbol && !bySymbol(q.symbol)) return json(res, 400, { error: `unknown symbol ${q.symbol}` });
      const limit = limitOf(q, 200, 5000);
      if (limit.error) return json(res, 400, limit);
      return json(res, 200, fills.filter((f) => !q.symbol || f.symbol === q.symbol).slice(-limit).reverse());
    }
    case '/api/rejections': {
      const limit = limitOf(q, 100, 1000);
      if (limit.error) return json(res, 400, limit);
      return json(res, 200, rejections.slice(-limit).reverse());
    }
    case '/api/kill-switch': {
      if (!post) return json(res, 405, { error: 'method not allowed' });
      let body;
      try {
        body = await readJSON(req);
      } catch {
        return json(res, 400, { error: 'expected a JSON body' });
      }
      if (typeof body?.enabled !== 'boolean') return json(res, 400, { error: 'enabled: expected true or false' });
      risk.trading_enabled = body.enabled;
      broadcast('risk', { trading_enabled: risk.trading_enabled });
      return json(res, 200, { trading_enabled: risk.trading_enabled });
    }
    case '/api/flatten':
      if (!post) return json(res, 405, { error: 'method not allowed' });
      return json(res, 200, flatten());
    default:
      return undefined;
  }
}
const ACCOUNT_PATHS = new Set(['/api/account', '/api/positions', '/api/orders', '/api/fills', '/api/rejections',
  '/api/kill-switch', '/api/flatten']);

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
  const bt = url.pathname.match(/^\/api\/backtests(?:\/(\d+)(?:\/(equity|trades))?)?$/);
  if (bt) return backtests(req, res, bt[1], bt[2]);
  if (ACCOUNT_PATHS.has(url.pathname)) return accountApi(req, res, url.pathname, q);
  switch (url.pathname) {
    case '/api/symbols':
      return json(res, 200, symbolsJSON());
    case '/api/instruments':
      return json(res, 200, SYMBOLS.map((x) => ({ symbol: x.symbol, name: x.name, tick_size: x.tick,
        timezone: 'America/New_York', session_open: '09:30', session_close: '16:00', active: true })));
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
    // The session: the mock needs no login, but answers the page's session calls.
    case '/api/session':
      return json(res, 200, { name: 'mock', role: 'admin', csrf: 'mock-csrf' });
    case '/login':
      if (req.method === 'POST') {
        res.setHeader('set-cookie', 'tapeflow_session=mock; Path=/; HttpOnly; SameSite=Strict');
        return json(res, 200, { name: 'mock', role: 'admin', csrf: 'mock-csrf' });
      }
      return serveFile(res, '/login.html');
    case '/logout':
      return json(res, 200, { logged_out: true });
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
