// Unit tests of shaping backtest results for display (no browser needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { downsample, normalizeEquity, normalizeTrade, parseTime, sortTrades, statRows }
  from '../static/js/backtest-data.js';
import { setZone } from '../static/js/format.js';

const T0 = Date.parse('2026-11-24T14:30:00Z') / 1000;
const iso = (sec) => new Date(sec * 1000).toISOString();

test('times in RFC 3339 and in PostgreSQL text form', () => {
  assert.equal(parseTime('2026-11-24T14:30:00Z'), T0);
  assert.equal(parseTime('2026-11-24T09:30:00-05:00'), T0);
  assert.equal(parseTime('2026-11-24 14:30:00+00'), T0);
  assert.equal(parseTime('2026-11-24 14:30:00.25+00'), T0);
  assert.ok(Number.isNaN(parseTime('soon')));
});

test('equity points are sorted, unique in time and parsed', () => {
  const points = normalizeEquity([
    { time: iso(T0 + 60), equity: '101000.50', drawdown_pct: '0' },
    { time: iso(T0), equity: 100000, drawdown_pct: 0 },
    { time: iso(T0 + 60), equity: 99000, drawdown_pct: -1 }, // the later copy of an instant wins
    { time: null, equity: 1 },
  ]);
  assert.deepEqual(points, [{ time: T0, equity: 100000, dd: 0 }, { time: T0 + 60, equity: 99000, dd: -1 }]);
});

test('a missing drawdown is derived from the running peak', () => {
  const points = normalizeEquity([100, 120, 90, 130].map((equity, i) => ({ time: iso(T0 + 60 * i), equity })));
  assert.deepEqual(points.map((p) => p.dd), [0, 0, -25, 0]);
});

test('downsampling keeps the extremes, the ends and the order', () => {
  const points = Array.from({ length: 100_000 }, (_, i) => ({ time: T0 + i, equity: Math.sin(i / 500) * 1000,
    dd: -Math.abs(Math.cos(i / 700)) }));
  points[54_321].equity = 5000; // a spike must survive
  points[77_777].dd = -50;
  const kept = downsample(points, 5000, [(p) => p.equity, (p) => p.dd]);
  assert.ok(kept.length <= 5000 && kept.length > 1000, `${kept.length} points kept`);
  assert.equal(kept[0], points[0]);
  assert.equal(kept.at(-1), points.at(-1));
  assert.ok(kept.includes(points[54_321]) && kept.includes(points[77_777]));
  assert.ok(kept.every((p, i) => i === 0 || p.time > kept[i - 1].time), 'strictly ascending');
  const few = points.slice(0, 10);
  assert.equal(downsample(few, 5000, [(p) => p.equity]), few);
});

test('trades: money strings become numbers, missing values sort last', () => {
  const trades = [
    { symbol: 'AAPL', side: 'long', quantity: 100, entry_time: iso(T0), entry_price: '189.10',
      exit_time: iso(T0 + 1500), exit_price: '190.00', pnl: '88.50', return_pct: 0.47, fees: '1.50',
      exit_reason: 'target', mae: -0.2, mfe: 1.1 },
    { symbol: 'MSFT', side: 'short', quantity: 10, entry_time: iso(T0), entry_price: '415', exit_time: null,
      exit_price: null, pnl: null, return_pct: null, fees: '1', exit_reason: null, mae: null, mfe: null },
    { symbol: 'NVDA', side: 'long', quantity: 50, entry_time: iso(T0), entry_price: '140', exit_time: iso(T0 + 60),
      exit_price: '139', pnl: '-51', return_pct: -0.71, fees: '1', exit_reason: 'stop', mae: -1, mfe: 0 },
  ].map(normalizeTrade);
  assert.equal(trades[0].pnl, 88.5);
  assert.equal(trades[0].held, 1500);
  assert.equal(trades[1].held, null);
  assert.deepEqual(sortTrades(trades, 'pnl', 1).map((t) => t.n), [3, 1, 2]);
  assert.deepEqual(sortTrades(trades, 'pnl', -1).map((t) => t.n), [1, 3, 2]);
  assert.deepEqual(sortTrades(trades, 'symbol', -1).map((t) => t.symbol), ['NVDA', 'MSFT', 'AAPL']);
});

test('statistics: known keys in order with labels, others appended, null as a dash', () => {
  setZone('UTC');
  const rows = statRows({ fees_total: 12.5, sharpe: 0.8123, start: '2026-11-20 14:30:00+00', return_pct: 1.234,
    max_drawdown_pct: -2.1, sortino: null, trades: 12, final_equity: '101234.5', note: 'warm-up skipped',
    custom_pct: 3 });
  const byKey = Object.fromEntries(rows.map((r) => [r.key, r]));
  assert.deepEqual(rows.map((r) => r.key),
    ['start', 'final_equity', 'return_pct', 'sharpe', 'sortino', 'max_drawdown_pct', 'trades', 'fees_total', 'note',
      'custom_pct']);
  assert.equal(byKey.start.text, 'Nov 20 14:30');
  assert.deepEqual([byKey.return_pct.label, byKey.return_pct.text, byKey.return_pct.tone], ['Return', '+1.23%', 'up']);
  assert.deepEqual([byKey.max_drawdown_pct.text, byKey.max_drawdown_pct.tone], ['-2.10%', 'down']);
  assert.equal(byKey.sortino.text, '—');
  assert.equal(byKey.sharpe.text, '0.81');
  assert.equal(byKey.trades.text, '12');
  assert.equal(byKey.final_equity.text, '101,234.50');
  assert.deepEqual([byKey.fees_total.label, byKey.fees_total.text], ['Fees total', '12.50']);
  assert.deepEqual([byKey.note.label, byKey.note.text], ['Note', 'warm-up skipped']);
  assert.deepEqual([byKey.custom_pct.label, byKey.custom_pct.text], ['Custom', '3.00%']);
  assert.deepEqual(statRows(null), []);
});

test('statistics under other names get units and kinds from their labels', () => {
  const rows = statRows({ 'Return [%]': -1.5, 'Max. Drawdown [%]': -3, 'Win Rate [%]': 55, 'Equity Final [$]': 99000,
    'Avg. Trade Duration': 0.25, SQN: 1.234 });
  assert.deepEqual(rows.map((r) => [r.label, r.text, r.tone]), [
    ['Return', '-1.50%', 'down'], ['Max. Drawdown', '-3.00%', 'down'], ['Win Rate', '55.00%', ''],
    ['Equity Final', '99,000.00', ''], ['Avg. Trade Duration', '6h 00m', ''], ['SQN', '1.234', '']]);
});
