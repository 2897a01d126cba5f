// Unit tests of shaping the symbol page's data for drawing (no browser needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { barOf, barPosition, cellAt, developingLines, footprintBars, indexAt, markerData, mergeByTime, ordersOf,
  profileRows, rowAt, stateFill } from '../static/js/symbol-data.js';

const T0 = Date.parse('2026-11-30T14:30:00Z') / 1000;
const iso = (sec) => new Date(sec * 1000).toISOString();
const bars = [0, 1, 2, 4].map((i) => ({ time: T0 + 300 * i, close: 100 + i }));

test('bars: merged by time, found by time, positions within a bar', () => {
  const merged = mergeByTime(bars, [{ time: T0 + 600, close: 7 }, { time: T0 + 1500, close: 8 }]);
  assert.deepEqual(merged.map((b) => [b.time - T0, b.close]), [[0, 100], [300, 101], [600, 7], [1200, 104], [1500, 8]]);
  assert.equal(indexAt(bars, T0 - 1), -1);
  assert.equal(indexAt(bars, T0 + 899), 2);
  assert.equal(barOf(bars, T0 + 899, 300).time, T0 + 600);
  assert.equal(barOf(bars, T0 + 900, 300), undefined, 'in the gap after a bar: none');
  assert.equal(barPosition(bars, T0 + 360, 300), 1.2);
  assert.equal(barPosition(bars, T0 + 1000, 300), null);
});

test('profile rows span half a tick below their price to half a tick below the next row', () => {
  const profile = { tick_size: 0.01, row_size: 0.05, poc: 100.05, value_area: { vah: 100.05, val: 100 },
    levels: [{ price: 100, total: 10, buy: 6, sell: 3 }, { price: 100.05, total: 20, buy: 5, sell: 15 },
      { price: 100.1, total: 4, buy: 4, sell: 0 }] };
  const rows = profileRows(profile);
  assert.deepEqual(rows.map((r) => [r.lo.toFixed(3), r.hi.toFixed(3), r.other, r.inValue, r.poc]),
    [['99.995', '100.045', 1, true, false], ['100.045', '100.095', 0, true, true], ['100.095', '100.145', 0, false, false]]);
  assert.equal(rowAt(rows, 100.07).price, 100.05);
  assert.equal(rowAt(rows, 99.99), undefined);
  assert.deepEqual(profileRows(null), []);
});

test('footprint cells carry the imbalances reported for them', () => {
  const t = iso(T0);
  const fp = footprintBars({
    cells: [{ time: t, price: 100, bid: 50, ask: 10, delta: -40, volume: 60, trades: 3 },
      { time: t, price: 100.01, bid: 5, ask: 300, delta: 295, volume: 305, trades: 9 }],
    imbalances: [{ time: t, side: 'buy', price: 100.01, volume: 300, opposite: 50, ratio: 6, stacked: false },
      { time: t, side: 'sell', price: 100, volume: 50, opposite: 300, ratio: 'Infinity', stacked: true },
      { time: iso(T0 + 300), side: 'buy', price: 1, volume: 1, opposite: 0, ratio: 2, stacked: false }],
  });
  const bar = fp.get(T0);
  assert.equal(bar.maxVolume, 305);
  assert.deepEqual(bar.cells.get(100.01).buyImbalance, { ratio: 6, opposite: 50, stacked: false });
  assert.equal(bar.cells.get(100).sellImbalance.ratio, Infinity);
  assert.equal(bar.cells.get(100).stacked, true);
  assert.equal(cellAt(fp, T0, 100.0049, 0.01).price, 100);
  assert.equal(cellAt(fp, T0, 100.02, 0.01), undefined);
});

test('markers sit on the bars holding them, in time order, with what they are about', () => {
  const signals = [{ id: 7, bar: iso(T0 + 300), kind: 'entry', side: 'buy', status: 'filled', entry: 101.004, stop: 100,
    target: 103, reason: 'imbalance up with aggressive buy flow' }];
  const orders = ordersOf([{ id: 3, symbol: 'AAPL', signal_id: 7, created_at: iso(T0 + 400), side: 'buy', qty: '10',
    status: 'filled', purpose: 'entry', leg: 'entry', legs: [{ id: 4, symbol: 'AAPL', signal_id: 7,
      created_at: iso(T0 + 401), side: 'sell', qty: '10', status: 'new', leg: 'take_profit', limit_price: '103' }] },
  { id: 9, symbol: 'MSFT', created_at: iso(T0), side: 'buy', qty: '1', status: 'new', legs: [] }], 'AAPL');
  assert.deepEqual(orders.map((o) => o.id), [3, 4]);
  const fills = [{ id: 1, time: iso(T0 + 650), side: 'buy', qty: '10', price: '101.02', signal_id: 7, leg: 'entry' },
    { id: 2, time: iso(T0 - 60), side: 'sell', qty: '1', price: '99', signal_id: null }];
  const { markers, notes } = markerData({ bars, step: 300, signals, orders, fills, fmtPrice: (v) => Number(v).toFixed(2) });
  assert.deepEqual(markers.map((m) => [m.time - T0, m.shape, m.text]),
    [[300, 'arrowUp', 'BUY'], [300, 'square', ''], [300, 'square', ''], [600, 'arrowUp', '10@101.02']]);
  const at = notes.get(T0 + 300);
  assert.equal(at[0].text, 'Signal #7 entry buy (filled) entry 101.00 · stop 100.00 · target 103.00');
  assert.equal(at[0].reason, 'imbalance up with aggressive buy flow');
  assert.equal(at[2].text, 'Order #4 take_profit sell 10 @ 103.00 (new)');
  assert.equal(notes.get(T0 + 600)[0].reason, 'imbalance up with aggressive buy flow', 'a fill tells its signal\'s reason');
  assert.equal(notes.has(T0 - 300), false, 'a fill before the drawn bars is not placed');
});

test('developing lines: one set per session, never joined across sessions', () => {
  const rows = [{ session: '2026-11-27', time: iso(T0), poc: 1, vah: 2, val: 0.5 },
    { session: '2026-11-30', time: iso(T0 + 300), poc: 3, vah: 4, val: null }];
  const lines = developingLines(rows);
  assert.deepEqual([...lines.keys()], ['2026-11-27', '2026-11-30']);
  assert.deepEqual(lines.get('2026-11-30'), { poc: [{ time: T0 + 300, value: 3 }], vah: [{ time: T0 + 300, value: 4 }],
    val: [] });
});

test('market states are coloured by state, more opaque with confidence', () => {
  assert.equal(stateFill('imbalance_up', 100), 'rgba(38,166,154,1.000)');
  assert.equal(stateFill('balance', 0), 'rgba(88,166,255,0.200)');
  assert.equal(stateFill('imbalance_down', 250), 'rgba(239,83,80,1.000)');
  assert.equal(stateFill('unknown', 50), 'rgba(125,133,144,0.600)');
});
