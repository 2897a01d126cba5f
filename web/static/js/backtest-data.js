// Shaping backtest results for display: equity points, trades, statistics.
// No DOM here, so the module can be unit-tested with plain node.
import { decimalsFor, fmtDateTime, fmtPrice, fmtSpan } from './format.js';

/** Statuses after which a run never changes again. */
export const FINAL = new Set(['completed', 'failed', 'cancelled']);

// Money and price fields may arrive as JSON strings (NUMERIC columns).
const num = (v) => (v == null || v === '' ? null : Number(v));

const TIMESTAMP = /^\d{4}-\d\d-\d\d[T ]\d\d:\d\d/;

/** Unix seconds of an RFC 3339 time or of PostgreSQL's text form of one
 *  ("2026-11-20 14:30:00+00"), or NaN. */
export function parseTime(v) {
  const text = String(v).replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00');
  return Math.floor(Date.parse(text) / 1000);
}

/** API equity points → `{ time, equity, dd }`, time in Unix seconds,
 *  ascending with unique times (what the chart requires). A missing
 *  drawdown is derived from the running peak. */
export function normalizeEquity(points) {
  const byTime = new Map();
  for (const p of points) byTime.set(parseTime(p.time), p); // the last one of an instant wins
  let peak = -Infinity;
  const known = [...byTime].filter(([time]) => Number.isFinite(time));
  return known.sort((a, b) => a[0] - b[0]).map(([time, p]) => {
    const equity = num(p.equity);
    peak = Math.max(peak, equity);
    const dd = num(p.drawdown_pct) ?? (peak > 0 ? (equity / peak - 1) * 100 : 0);
    return { time, equity, dd };
  });
}

/**
 * At most `max` of `points` (in order), keeping the shape: the points are cut
 * into buckets and each keeps the lowest and highest point of every value in
 * `values` (functions of a point), plus the very first and last points. All
 * values share one subset, so charts of different values stay aligned.
 */
export function downsample(points, max, values) {
  if (points.length <= max) return points;
  const buckets = Math.max(1, Math.floor((max - 2) / (2 * values.length)));
  const size = points.length / buckets;
  const keep = [0];
  for (let b = 0; b < buckets; b++) {
    const lo = Math.floor(b * size);
    const hi = Math.floor((b + 1) * size);
    const picked = new Set();
    for (const value of values) {
      let [iMin, iMax] = [lo, lo];
      for (let i = lo + 1; i < hi; i++) {
        const v = value(points[i]);
        if (v < value(points[iMin])) iMin = i;
        if (v > value(points[iMax])) iMax = i;
      }
      picked.add(iMin).add(iMax);
    }
    keep.push(...[...picked].sort((x, y) => x - y));
  }
  keep.push(points.length - 1);
  return keep.filter((i, k) => i !== keep[k - 1]).map((i) => points[i]);
}

/** API trade → display shape: numbers parsed, times in Unix seconds. */
export function normalizeTrade(t, index) {
  const entry = t.entry_time ? parseTime(t.entry_time) : null;
  const exit = t.exit_time ? parseTime(t.exit_time) : null;
  return {
    n: index + 1,
    symbol: t.symbol,
    side: t.side,
    quantity: num(t.quantity),
    entry_time: entry,
    entry_price: num(t.entry_price),
    exit_time: exit,
    exit_price: num(t.exit_price),
    pnl: num(t.pnl),
    return_pct: num(t.return_pct),
    fees: num(t.fees),
    exit_reason: t.exit_reason ?? null,
    mae: num(t.mae),
    mfe: num(t.mfe),
    held: entry != null && exit != null ? exit - entry : null,
  };
}

/** Trades ordered by one field; missing values last either way. */
export function sortTrades(trades, key, dir = 1) {
  return [...trades].sort((a, b) => {
    const [x, y] = [a[key], b[key]];
    if (x == null || y == null) return (x == null) - (y == null);
    return (typeof x === 'string' ? x.localeCompare(y) : x - y) * dir || a.n - b.n;
  });
}

// The statistics `tapeflow.backtest_stats` reports, by the names it gives them,
// in backtesting.py's order (the server's JSON object arrives with its keys
// sorted, so the order is this list's), with a label and how to show each.
// Any other key is shown after these, with a label and kind guessed from it.
const STATS = [
  ['Start', 'Start', 'time'],
  ['End', 'End', 'time'],
  ['Duration', 'Duration', 'days'],
  ['Exposure Time [%]', 'Exposure time', 'pct'],
  ['Equity Final [$]', 'Equity final', 'money'],
  ['Equity Peak [$]', 'Equity peak', 'money'],
  ['Return [%]', 'Return', 'signed'],
  ['Buy & Hold Return [%]', 'Buy & hold return', 'signed'],
  ['Return (Ann.) [%]', 'Return (ann.)', 'signed'],
  ['Volatility (Ann.) [%]', 'Volatility (ann.)', 'pct'],
  ['CAGR [%]', 'CAGR', 'signed'],
  ['Sharpe Ratio', 'Sharpe ratio', 'ratio'],
  ['Sortino Ratio', 'Sortino ratio', 'ratio'],
  ['Calmar Ratio', 'Calmar ratio', 'ratio'],
  ['Max. Drawdown [%]', 'Max. drawdown', 'drawdown'],
  ['Avg. Drawdown [%]', 'Avg. drawdown', 'drawdown'],
  ['Max. Drawdown Duration', 'Max. drawdown duration', 'days'],
  ['Avg. Drawdown Duration', 'Avg. drawdown duration', 'days'],
  ['# Trades', 'Trades', 'number'],
  ['Win Rate [%]', 'Win rate', 'pct'],
  ['Best Trade [%]', 'Best trade', 'signed'],
  ['Worst Trade [%]', 'Worst trade', 'signed'],
  ['Avg. Trade [%]', 'Avg. trade', 'signed'],
  ['Max. Trade Duration', 'Max. trade duration', 'days'],
  ['Avg. Trade Duration', 'Avg. trade duration', 'days'],
  ['Profit Factor', 'Profit factor', 'ratio'],
  ['Expectancy [%]', 'Expectancy', 'signed'],
  ['SQN', 'SQN', 'ratio'],
  ['Kelly Criterion', 'Kelly criterion', 'ratio'],
  ['Total Fees [$]', 'Total fees', 'money'],
];
const KNOWN = new Map(STATS.map(([key, label, kind]) => [key, { label, kind }]));

// Other keys may be snake_case ("fees_total") or labels with a unit ("Total
// Fees [$]"); the unit shows in the value instead.
const UNIT = /_pct$|\s*\[[%$]\]$/;
const labelOf = (key) => {
  const words = key.replace(UNIT, '').replace(/_/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
};

function guessKind(key, v) {
  if (/_pct$|\[%\]$/.test(key)) {
    if (/drawdown/i.test(key)) return 'drawdown';
    return /return|trade|expectancy/i.test(key) ? 'signed' : 'pct';
  }
  if (/\[\$\]$/.test(key)) return 'money';
  if (/duration/i.test(key) && typeof v === 'number') return 'days'; // a duration as a number counts days
  if (typeof v === 'string' && TIMESTAMP.test(v)) return 'time';
  const numeric = typeof v === 'number' || (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v)));
  return numeric ? 'number' : 'text';
}

const fixed = (v, digits) =>
  v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

/** Text and colour tone ('up' | 'down' | '') of one statistic. */
export function fmtStat(kind, v) {
  if (v == null) return { text: '—', tone: '' };
  if (kind === 'text') return { text: typeof v === 'object' ? JSON.stringify(v) : String(v), tone: '' };
  if (kind === 'time') {
    const sec = parseTime(v);
    return { text: Number.isFinite(sec) ? fmtDateTime(sec) : String(v), tone: '' };
  }
  const n = Number(v);
  if (!Number.isFinite(n)) return { text: String(v), tone: '' };
  switch (kind) {
    case 'signed': return { text: `${n > 0 ? '+' : ''}${fixed(n, 2)}%`, tone: n > 0 ? 'up' : n < 0 ? 'down' : '' };
    case 'drawdown': return { text: `${fixed(n, 2)}%`, tone: n < 0 ? 'down' : '' };
    case 'pct': return { text: `${fixed(n, 2)}%`, tone: '' };
    case 'money': return { text: fmtPrice(n, 2), tone: '' };
    case 'ratio': return { text: fixed(n, 2), tone: '' };
    case 'days': return { text: fmtSpan(n * 86400), tone: '' };
    default: return { text: Number.isInteger(n) ? fixed(n, 0) : fixed(n, Math.min(4, decimalsFor([n]))), tone: '' };
  }
}

/** The statistics object → `[{ key, label, text, tone }]`, known keys first. */
export function statRows(stats) {
  if (!stats || typeof stats !== 'object') return [];
  const known = STATS.map(([key]) => key).filter((key) => key in stats);
  const other = Object.keys(stats).filter((key) => !KNOWN.has(key));
  return [...known, ...other].map((key) => {
    const { label, kind } = KNOWN.get(key) ?? { label: labelOf(key), kind: guessKind(key, stats[key]) };
    return { key, label, ...fmtStat(kind, stats[key]) };
  });
}
