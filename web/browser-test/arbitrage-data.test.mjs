// Unit tests of the arbitrage page's data shaping (no browser needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  compareDecimal, fmtAmount, fmtRate, groupState, hadLegRisk, kindLabel, oppLegText, pnlBars, shiftDecimal,
  sortOpportunities, sumDecimals, sumState, tradeLegText, yesNo,
} from '../static/js/arbitrage-data.js';

test('decimal comparisons are exact where floating point is not', () => {
  // 0.1 + 0.2 as doubles is 0.30000000000000004: the strings compare as written.
  assert.equal(compareDecimal('0.3', String(0.1 + 0.2)), -1);
  assert.equal(compareDecimal('0.30', '0.3'), 0);
  assert.equal(compareDecimal('0.99999999999999999999', '1'), -1);
  assert.equal(compareDecimal('1.00000000000000000001', '1'), 1);
  assert.equal(compareDecimal('-0.5', '0.25'), -1);
  assert.equal(compareDecimal('.5', '0.5'), 0);
  assert.equal(compareDecimal(null, '1'), null);
  assert.equal(compareDecimal('abc', '1'), null);
});

test('sums and shifts of decimal strings are exact', () => {
  assert.equal(sumDecimals(['2.21064', '-0.78048']), '1.43016');
  assert.equal(sumDecimals(['0.1', '0.2']), '0.3');
  assert.equal(sumDecimals([]), '0');
  assert.equal(sumDecimals(['-1.5', '0.25', null]), '-1.25');
  assert.equal(shiftDecimal('0.8333', 2), '83.33');
  assert.equal(shiftDecimal('1', 2), '100');
  assert.equal(shiftDecimal('5', -3), '0.005');
  assert.equal(shiftDecimal('-0.0001', 2), '-0.01');
  assert.equal(fmtRate('0.8333'), '83.33%');
  assert.equal(fmtRate('1'), '100%');
  assert.equal(fmtRate(null), '—');
});

test('a market is highlighted when the sums pay after fees, not before', () => {
  // Asks 0.45 + 0.50 = 0.95; fees 0.0099 + 0.01: 0.9699 < 1 pays.
  assert.equal(sumState({ ask_sum: '0.95', ask_sum_after_fees: '0.9699', bid_sum: '0.93', bid_sum_after_fees: '0.91' }), 'buy');
  // Below 1 before fees, but the fees take it to 1 or more: close, not an opportunity.
  assert.equal(sumState({ ask_sum: '0.98', ask_sum_after_fees: '1', bid_sum: '0.9', bid_sum_after_fees: '0.88' }), 'close');
  assert.equal(sumState({ ask_sum: '1.05', ask_sum_after_fees: '1.0699', bid_sum: '1.04', bid_sum_after_fees: '1.0201' }), 'sell');
  assert.equal(sumState({ ask_sum: '1.02', ask_sum_after_fees: '1.04', bid_sum: '0.97', bid_sum_after_fees: '0.95' }), '');
  // A one-sided book has no sums.
  assert.equal(sumState({ ask_sum: null, ask_sum_after_fees: null, bid_sum: null, bid_sum_after_fees: null }), '');
  assert.equal(groupState({ augmented: false, yes_ask_sum_after_fees: '0.97' }), 'buy');
  assert.equal(groupState({ augmented: true, yes_ask_sum_after_fees: '0.97' }), '', 'an augmented event is not riskless');
  assert.equal(groupState({ augmented: false, yes_ask_sum_after_fees: null }), '', 'a market without an ask');
});

test('YES and NO are found by outcome index, whatever the order', () => {
  const m = { tokens: [{ token_id: 'b', outcome_index: 1 }, { token_id: 'a', outcome_index: 0 }] };
  assert.deepEqual([yesNo(m).yes.token_id, yesNo(m).no.token_id], ['a', 'b']);
  assert.deepEqual(yesNo({ tokens: [] }), { yes: null, no: null });
});

test('labels of legs, trades and kinds', () => {
  assert.equal(oppLegText({ side: 'buy', outcome: 'No', shares: '100', avg_price: '0.508', worst_price: '0.52', fee: '0.99936' }),
    'buy No 100 @ 0.508 (to 0.52), fee 0.99936');
  assert.equal(oppLegText({ side: 'buy', outcome: 'Yes', shares: '100', avg_price: '0.45', worst_price: '0.450', fee: '0.99' }),
    'buy Yes 100 @ 0.45, fee 0.99');
  assert.equal(tradeLegText({ purpose: 'unwind', side: 'sell', outcome: 'Yes', size: '20', filled_size: '20', avg_price: '0.38',
    fee: '0.18848', status: 'filled' }), 'unwind sell Yes 20/20 @ 0.38 fee 0.18848 filled');
  assert.equal(tradeLegText({ purpose: 'entry', side: 'buy', outcome: 'No', size: '20', filled_size: '0', avg_price: null,
    limit_price: '0.55', fee: '0', status: 'canceled' }), 'entry buy No 0/20 ≤ 0.55 fee 0.00 canceled');
  assert.equal(hadLegRisk({ leg_risk_loss: '0.78048' }), true);
  assert.equal(hadLegRisk({ leg_risk_loss: '0' }), false);
  assert.equal(kindLabel('buy_all_yes'), 'buy every YES');
  assert.equal(fmtAmount('-0.78048', true), '-0.78048');
  assert.equal(fmtAmount('2.5', true), '+2.50');
});

test('opportunities: open first, each newest first', () => {
  const list = [
    { id: 1, open: false, last_seen: '2026-12-01T10:00:00Z', closed_at: '2026-12-01T10:05:00Z' },
    { id: 2, open: true, last_seen: '2026-12-01T09:00:00Z', closed_at: null },
    { id: 3, open: false, last_seen: '2026-12-01T11:00:00Z', closed_at: '2026-12-01T11:01:00Z' },
    { id: 4, open: true, last_seen: '2026-12-01T12:00:00Z', closed_at: null },
  ];
  assert.deepEqual(sortOpportunities(list).map((o) => o.id), [4, 2, 3, 1]);
});

test('daily P&L bars: up from the zero line for gains, down for losses, one scale', () => {
  const days = [
    { day: '2026-11-29', paper_pnl: '3', leg_risk_losses: '0' },
    { day: '2026-11-30', paper_pnl: '-1', leg_risk_losses: '1' },
    { day: '2026-12-01', paper_pnl: '0', leg_risk_losses: '0' },
  ];
  const { zero, bars } = pnlBars(days, { width: 300, height: 100, pad: 0, gap: 0, maxBar: Infinity });
  // Range -1…3 over 100 px: zero at 75.
  assert.equal(zero, 75);
  assert.deepEqual(bars.map((b) => [b.x, b.w, b.y, b.h, b.tone]), [
    [0, 100, 0, 75, 'up'], [100, 100, 75, 25, 'down'], [200, 100, 75, 0, 'flat']]);
  assert.deepEqual(bars[1].loss, { y: 75, h: 25 });
  assert.equal(bars[0].loss, null);
  assert.equal(bars[0].value, '3', 'the label is the exact string');
  // Losses deeper than any P&L widen the scale.
  const deep = pnlBars([{ day: 'd', paper_pnl: '1', leg_risk_losses: '3' }], { width: 10, height: 40, pad: 0 });
  assert.equal(deep.zero, 10);
  assert.deepEqual(pnlBars([], { width: 10, height: 10 }).bars, []);
  // One day in a wide box: a bar of at most maxBar, centred.
  const [one] = pnlBars([{ day: 'd', paper_pnl: '2', leg_risk_losses: '0' }], { width: 400, height: 50, pad: 0, maxBar: 40 }).bars;
  assert.deepEqual([one.x, one.w], [180, 40]);
});
