// Unit tests of shaping the account page's data for display (no browser needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fillMarker, fmtDecimal, fmtMoney, fmtPriceText, fmtQty, fmtRatioPct, orderPrice, orderRows, rejectionText,
  signOf, toneOf } from '../static/js/account-data.js';

test('decimal strings are formatted exactly, without floating point', () => {
  // 1.005 is 1.00499999999999989... as a double: a float formatter shows 1.00.
  assert.equal(fmtMoney('1.005'), '1.01');
  assert.equal(fmtMoney('-1.005'), '-1.01');
  assert.equal(fmtMoney('999999.995'), '1,000,000.00');
  assert.equal(fmtMoney('12345678901234567.89'), '12,345,678,901,234,567.89');
  assert.equal(fmtMoney('-0.004'), '0.00', 'no negative zero');
  assert.equal(fmtMoney('250.5', true), '+250.50');
  assert.equal(fmtMoney('0', true), '0.00');
  assert.equal(fmtMoney(12.5), '12.50', 'numbers are accepted too');
  assert.equal(fmtDecimal('-1.5', { decimals: 0 }), '-2', 'half away from zero');
  assert.equal(fmtDecimal('.5', { decimals: 2 }), '0.50');
});

test('quantities and prices keep the digits they have', () => {
  assert.equal(fmtQty('10'), '10');
  assert.equal(fmtQty('1500'), '1,500');
  assert.equal(fmtQty('0.00012345'), '0.00012345');
  assert.equal(fmtQty('0.000123456789'), '0.00012346', 'at most 8 decimals');
  assert.equal(fmtPriceText('189.1'), '189.10');
  assert.equal(fmtPriceText('1.08535'), '1.08535');
  assert.equal(fmtPriceText('100.1000000000000000'), '100.10');
});

test('missing or malformed values show a dash', () => {
  for (const v of [null, undefined, '', 'abc', '1.2.3', '1e5', NaN]) assert.equal(fmtMoney(v), '—', String(v));
  assert.equal(signOf(null), null);
  assert.equal(toneOf(null), '');
});

test('signs and tones', () => {
  assert.equal(signOf('-0.00'), 0);
  assert.equal(signOf('-0.01'), -1);
  assert.equal(signOf('3'), 1);
  assert.equal(toneOf('3.56'), 'up');
  assert.equal(toneOf('-2'), 'down');
  assert.equal(toneOf('0'), '');
  assert.equal(fmtRatioPct('250', '100000'), '+0.25%');
  assert.equal(fmtRatioPct('-1000', '100000'), '-1.00%');
  assert.equal(fmtRatioPct('5', '0'), '');
});

test('orders become rows with their legs after them', () => {
  const orders = [
    { id: 9, leg: 'market', legs: [] },
    { id: 4, leg: 'entry', legs: [{ id: 5, leg: 'take_profit' }, { id: 6, leg: 'stop_loss' }] },
  ];
  assert.deepEqual(orderRows(orders).map((r) => [r.order.id, r.leg]), [[9, false], [4, false], [5, true], [6, true]]);
  assert.deepEqual(orderRows(null), []);
  assert.equal(orderPrice({ limit_price: '101', stop_price: null }), 'limit 101.00');
  assert.equal(orderPrice({ limit_price: '98.9', stop_price: '99' }), 'stop 99.00 / limit 98.90');
  assert.equal(orderPrice({ limit_price: null, stop_price: null }), 'market');
});

test('fills as chart markers: buys below the bar, sells above, qty@price', () => {
  assert.deepEqual(fillMarker({ side: 'buy', qty: '50', price: '184.5' }, 100),
    { time: 100, position: 'belowBar', shape: 'arrowUp', color: '#3fb950', text: '50@184.50' });
  const sell = fillMarker({ side: 'sell', qty: '0.5', price: '97250' }, 200);
  assert.equal(sell.position, 'aboveBar');
  assert.equal(sell.shape, 'arrowDown');
  assert.equal(sell.text, '0.5@97,250.00');
});

test('why a signal was refused', () => {
  assert.equal(rejectionText({ status: 'rejected', reject_code: 'price_band', error: 'entry 120 is 18% away' }),
    'price band: entry 120 is 18% away');
  assert.equal(rejectionText({ status: 'expired', reject_code: null, error: null }), 'not claimed before it expired');
  assert.equal(rejectionText({ status: 'rejected' }), '—');
});
