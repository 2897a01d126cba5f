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

test('statistics: in backtesting.py\'s order whatever order the keys arrive in, others appended', () => {
  setZone('UTC');
  // As the real server sends them: the names of tapeflow.backtest_stats, keys sorted.
  const server = { '# Trades': 12, 'Avg. Trade Duration': 0.25, 'Duration': 3.8020833333333335,
    'End': '2026-12-01T09:45:00+00:00', 'Equity Final [$]': 101234.5, 'Max. Drawdown [%]': -2.1, 'Note': 'warm-up',
    'Return [%]': 1.234, 'Sharpe Ratio': 0.8123, 'Sortino Ratio': null, 'Start': '2026-11-20 14:30:00+00',
    'Total Fees [$]': 12.5, 'fees_custom_pct': 3 };
  const rows = statRows(server);
  const byKey = Object.fromEntries(rows.map((r) => [r.key, r]));
  assert.deepEqual(rows.map((r) => r.key),
    ['Start', 'End', 'Duration', 'Equity Final [$]', 'Return [%]', 'Sharpe Ratio', 'Sortino Ratio', 'Max. Drawdown [%]',
      '# Trades', 'Avg. Trade Duration', 'Total Fees [$]', 'Note', 'fees_custom_pct']);
  assert.equal(byKey.Start.text, 'Nov 20 14:30');
  assert.equal(byKey.End.text, 'Dec 01 09:45');
  assert.equal(byKey.Duration.text, '3d 19h');
  assert.deepEqual([byKey['Return [%]'].label, byKey['Return [%]'].text, byKey['Return [%]'].tone],
    ['Return', '+1.23%', 'up']);
  assert.deepEqual([byKey['Max. Drawdown [%]'].text, byKey['Max. Drawdown [%]'].tone], ['-2.10%', 'down']);
  assert.equal(byKey['Sortino Ratio'].text, '—');
  assert.equal(byKey['Sharpe Ratio'].text, '0.81');
  assert.deepEqual([byKey['# Trades'].label, byKey['# Trades'].text], ['Trades', '12']);
  assert.equal(byKey['Equity Final [$]'].text, '101,234.50');
  assert.equal(byKey['Avg. Trade Duration'].text, '6h 00m');
  assert.deepEqual([byKey['Total Fees [$]'].label, byKey['Total Fees [$]'].text], ['Total fees', '12.50']);
  assert.deepEqual([byKey.Note.label, byKey.Note.text], ['Note', 'warm-up']);
  assert.deepEqual([byKey.fees_custom_pct.label, byKey.fees_custom_pct.text], ['Fees custom', '3.00%']);
  assert.deepEqual(statRows(null), []);
});

test('other statistics get units and kinds from their labels', () => {
  const rows = statRows({ 'Profit [%]': -1.5, 'Worst Run [%]': -3, 'Hit Rate [%]': 55, 'Cash [$]': 99000,
    'Avg. Hold Duration': 0.25, Z: 1.234 });
  assert.deepEqual(rows.map((r) => [r.label, r.text, r.tone]), [
    ['Profit', '-1.50%', ''], ['Worst Run', '-3.00%', ''], ['Hit Rate', '55.00%', ''],
    ['Cash', '99,000.00', ''], ['Avg. Hold Duration', '6h 00m', ''], ['Z', '1.234', '']]);
});
