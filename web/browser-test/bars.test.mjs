// Unit tests of the client-side bar building (no browser needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BarSeries, floorTo, normalizeCandle } from '../static/js/bars.js';

const T0 = Date.parse('2026-11-24T15:00:00Z') / 1000;
const minute = (i, o) => ({ time: T0 + 60 * i, open: 10, high: 11, low: 9, close: 10, volume: 100,
  buy: 60, sell: 40, trades: 5, ...o });

test('floorTo aligns to the epoch', () => {
  assert.equal(floorTo(T0 + 299, 300), T0);
  assert.equal(floorTo(T0 + 300, 300), T0 + 300);
  assert.equal(floorTo(T0 + 3599, 86400), Date.parse('2026-11-24T00:00:00Z') / 1000);
});

test('normalizeCandle accepts API and SSE shapes', () => {
  const c = normalizeCandle({ bucket: '2026-11-24T15:01:00Z', open: 1, high: 2, low: 0.5, close: 1.5,
    volume: 10, buy_volume: 6, sell_volume: 4, trades: 3 });
  assert.equal(c.time, T0 + 60);
  assert.equal(c.buy, 6);
  assert.equal(normalizeCandle({ time: '2026-11-24T15:00:00+00:00', open: 1, high: 1, low: 1, close: 1,
    volume: 0 }).buy, null);
});

test('repeated updates of one minute are not double counted', () => {
  const s = new BarSeries('5m');
  s.apply(minute(0, { volume: 100, trades: 5 }));
  s.apply(minute(0, { volume: 150, trades: 7, close: 10.5 }));
  const r = s.apply(minute(1, { volume: 20, trades: 1, high: 12, close: 11.5 }));
  assert.equal(r.op, 'update');
  assert.deepEqual([r.bar.time, r.bar.volume, r.bar.trades, r.bar.high, r.bar.close], [T0, 170, 8, 12, 11.5]);
  assert.equal(s.bars.length, 1);
});

test('a stale version of a minute does not overwrite a newer one', () => {
  const s = new BarSeries('5m');
  s.apply(minute(0, { volume: 150, trades: 7 }));
  const r = s.apply(minute(0, { volume: 100, trades: 5 }));
  assert.equal(r.bar.volume, 150);
});

test('the seeded last bar keeps its earlier minutes', () => {
  const loaded = { ...minute(0), volume: 300, trades: 15 };
  const s = new BarSeries('5m', [{ ...loaded, time: T0 - 300 }, loaded]);
  s.seed([minute(0), minute(1), minute(2)]);
  const r = s.apply(minute(2, { volume: 130, trades: 6 }));
  assert.equal(r.op, 'update');
  assert.equal(r.bar.volume, 330);
  assert.equal(s.apply(minute(5)).bar.time, T0 + 300); // next bar starts
  assert.equal(s.bars.length, 3);
});

test('late minutes of the previous bar replace it; unknown older bars are left alone', () => {
  const s = new BarSeries('5m', [{ ...minute(0), time: T0 - 600 }]);
  s.apply(minute(4));
  s.apply(minute(5));
  const r = s.apply(minute(4, { volume: 500, trades: 50 }));
  assert.equal(r.op, 'replace');
  assert.equal(s.at(T0).volume, 500);
  assert.equal(s.apply(minute(-10)), null);
});

test('at 1m a loaded bar takes updates directly', () => {
  const s = new BarSeries('1m', [minute(0), minute(1)]);
  assert.equal(s.apply(minute(0, { volume: 999, trades: 99 })).op, 'replace');
  assert.equal(s.apply(minute(1, { trades: 1 })).bar.trades, 5); // stale, ignored
  assert.equal(s.apply(minute(2)).op, 'update');
});

test('new bars follow the grid of the loaded ones (session-aligned, not UTC)', () => {
  // 1h bars at :30 (a 09:30 ET session open), daily bars at midnight ET.
  const h = new BarSeries('1h', [{ ...minute(-30), time: T0 - 1800 }]);
  h.seed([minute(-30)]);
  assert.equal(h.apply(minute(29)).bar.time, T0 - 1800);
  assert.equal(h.apply(minute(30)).bar.time, T0 + 1800);
  assert.equal(h.bars.length, 2);
  const midnightET = Date.parse('2026-11-24T05:00:00Z') / 1000;
  const d = new BarSeries('1d', [{ ...minute(0), time: midnightET - 86400 }]);
  assert.equal(d.startOf(T0), midnightET);
  assert.equal(d.startOf(midnightET - 1), midnightET - 86400);
});

test('barAt finds the bar holding a time', () => {
  const s = new BarSeries('5m', [minute(0), { ...minute(0), time: T0 + 600 }]);
  assert.equal(s.barAt(T0 - 1), undefined);
  assert.equal(s.barAt(T0 + 299).time, T0);
  assert.equal(s.barAt(T0 + 450).time, T0); // in a gap: the bar before it
  assert.equal(s.barAt(T0 + 9999).time, T0 + 600);
});
