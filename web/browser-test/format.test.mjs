// Unit tests of display formatting (no browser needed): the time axis's marks on the
// display zone's calendar, and prices at an instrument's tick.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fillZoneWeights, fmtAtTick, fmtTick, setZone, tickDecimals, tickWeight } from '../static/js/format.js';

const sec = (iso) => Date.parse(iso) / 1000;
// lightweight-charts' TickMarkType of a weight with the time visible (weightToTickMarkType).
const markType = (w) => (w >= 70 ? 0 : w >= 60 ? 1 : w >= 50 ? 2 : 3);
// What the library does by itself: the same weights on the UTC calendar.
function utcWeights(points) {
  setZone('UTC');
  fillZoneWeights(points);
  setZone('ET');
}

// 5m bars of a market trading through the night, from Nov 30 17:00 ET to Dec 1 03:00 ET.
const bars = () => Array.from({ length: 121 }, (_, i) => ({ originalTime: sec('2026-11-30T22:00:00Z') + 300 * i,
  timeWeight: 0 }));

test('the first of December is labelled Dec, at midnight in the display zone', () => {
  setZone('ET');
  const points = bars();
  fillZoneWeights(points);
  const months = points.filter((p) => markType(p.timeWeight) === 1);
  assert.equal(months.length, 1, 'one new month in the range');
  assert.equal(new Date(months[0].originalTime * 1000).toISOString(), '2026-12-01T05:00:00.000Z');
  assert.equal(fmtTick(months[0].originalTime, 1), 'Dec');
  // 00:00 UTC is 19:00 ET the evening before: an hour like any other.
  const utcMidnight = points.find((p) => p.originalTime === sec('2026-12-01T00:00:00Z'));
  assert.equal(utcMidnight.timeWeight, 30);
  assert.equal(fmtTick(utcMidnight.originalTime, markType(utcMidnight.timeWeight)), '19:00');
});

test('on the UTC calendar the month mark fell on 19:00 ET and read "Nov" (the defect)', () => {
  const points = bars();
  utcWeights(points);
  const month = points.find((p) => markType(p.timeWeight) === 1);
  assert.equal(new Date(month.originalTime * 1000).toISOString(), '2026-12-01T00:00:00.000Z');
  assert.equal(fmtTick(month.originalTime, 1), 'Nov');
});

test('every mark names what starts there in the display zone', () => {
  setZone('ET');
  // Daily bars at the 09:30 ET session open across a year end, and hourly bars across a DST change.
  const daily = Array.from({ length: 40 }, (_, i) => ({ originalTime: sec('2026-12-15T14:30:00Z') + 86400 * i }));
  fillZoneWeights(daily);
  const year = daily.find((p) => p.timeWeight === 70);
  assert.equal(fmtTick(year.originalTime, 0), '2027');
  assert.equal(new Date(year.originalTime * 1000).toISOString().slice(0, 10), '2027-01-01');
  const hourly = Array.from({ length: 48 }, (_, i) => ({ originalTime: sec('2026-11-01T00:00:00Z') + 3600 * i }));
  fillZoneWeights(hourly);
  for (const p of hourly.filter((q) => q.timeWeight === 50)) assert.equal(fmtTick(p.originalTime, 3), '00:00');
  assert.equal(tickWeight(sec('2026-11-02T05:00:00Z'), sec('2026-11-02T04:00:00Z')), 50, 'midnight EST');
});

test('the first point is weighed against the average spacing, as the library does', () => {
  setZone('ET');
  const points = [{ originalTime: sec('2026-12-01T05:00:00Z') }, { originalTime: sec('2026-12-01T05:05:00Z') }];
  fillZoneWeights(points);
  assert.equal(points[0].timeWeight, 60);
  assert.equal(points[1].timeWeight, 21);
  const more = [...points, { originalTime: sec('2026-12-01T05:10:00Z'), timeWeight: 99 }];
  fillZoneWeights(more, 2);
  assert.equal(more[2].timeWeight, 21, 'only points from startIndex on are weighed');
});

test('prices are written to the tick of their instrument', () => {
  assert.deepEqual([0.01, 0.25, 0.005, 1, 0.0001, 5].map(tickDecimals), [2, 2, 3, 0, 4, 0]);
  assert.equal(fmtAtTick(231.466851, 0.01), '231.47');
  assert.equal(fmtAtTick(4512.25, 0.25), '4,512.25');
  assert.equal(fmtAtTick(0.53, 0.001), '0.530');
  assert.equal(fmtAtTick(null, 0.01), '—');
});
