// Shaping the arbitrage page's data for display: exact comparisons of the server's decimal
// strings (a YES + NO sum below 1 after fees is the highlighted case; floating point would
// call 0.9999999999 and 1 equal or not at random), labels, and the geometry of the daily
// paper P&L bars. No DOM here, so the module can be unit-tested with plain node.
import { fmtDecimal, fmtMoney, signOf } from './account-data.js';

const DECIMAL = /^([+-])?(\d*)(?:\.(\d*))?$/;

/** A decimal string (or a finite number) as [BigInt digits, scale]; null when it is none. */
function scaled(v) {
  if (v == null || v === '') return null;
  const text = typeof v === 'number' ? (Number.isFinite(v) ? String(v) : '') : String(v).trim();
  if (/e/i.test(text)) return scaled(Number(text).toFixed(20));
  const m = DECIMAL.exec(text);
  if (!m || (!m[2] && !m[3])) return null;
  const frac = m[3] ?? '';
  const digits = BigInt(`${m[2] || '0'}${frac}`);
  return [m[1] === '-' ? -digits : digits, frac.length];
}

/** The exact sum of decimal strings, as a decimal string ('0' for none). */
export function sumDecimals(values) {
  let acc = [0n, 0];
  for (const v of values ?? []) {
    const x = scaled(v);
    if (!x) continue;
    const scale = Math.max(acc[1], x[1]);
    acc = [acc[0] * 10n ** BigInt(scale - acc[1]) + x[0] * 10n ** BigInt(scale - x[1]), scale];
  }
  return shiftDecimal(`${acc[0] < 0n ? '-' : ''}${(acc[0] < 0n ? -acc[0] : acc[0]).toString()}`, -acc[1]);
}

/** -1, 0 or 1 as decimal `a` is below, equal to or above `b`, exactly; null if either is none. */
export function compareDecimal(a, b) {
  const x = scaled(a);
  const y = scaled(b);
  if (!x || !y) return null;
  const scale = Math.max(x[1], y[1]);
  const l = x[0] * 10n ** BigInt(scale - x[1]);
  const r = y[0] * 10n ** BigInt(scale - y[1]);
  return l < r ? -1 : l > r ? 1 : 0;
}

/** `v` × 10^`places` as a decimal string, exactly (a fraction as a percentage: places = 2). */
export function shiftDecimal(v, places) {
  const s = scaled(v);
  if (!s) return null;
  let [digits, scale] = s;
  scale -= places;
  if (scale < 0) {
    digits *= 10n ** BigInt(-scale);
    scale = 0;
  }
  const negative = digits < 0n;
  const text = (negative ? -digits : digits).toString().padStart(scale + 1, '0');
  const int = text.slice(0, text.length - scale);
  const frac = text.slice(text.length - scale).replace(/0+$/, '');
  return `${negative ? '-' : ''}${int}${frac ? `.${frac}` : ''}`;
}

/**
 * How a market's sums read: `buy` when YES ask + NO ask plus the taker fees of one share each
 * is below 1 (buying the pair pays), `sell` when the bids less fees are above 1, `close` when
 * the asks alone are below 1 but the fees eat the edge, else ''.
 */
export function sumState(m) {
  if (compareDecimal(m.ask_sum_after_fees, '1') === -1) return 'buy';
  if (compareDecimal(m.bid_sum_after_fees, '1') === 1) return 'sell';
  if (compareDecimal(m.ask_sum, '1') === -1) return 'close';
  return '';
}

/** The YES (outcome_index 0) and NO (1) tokens of a market's `tokens`. */
export function yesNo(m) {
  const by = (i) => (m.tokens ?? []).find((t) => t.outcome_index === i) ?? null;
  return { yes: by(0), no: by(1) };
}

/** Whether a neg-risk group's YES asks (plus fees) sum below 1 with every market quoted. */
export const groupState = (g) => (g.augmented ? '' : compareDecimal(g.yes_ask_sum_after_fees, '1') === -1 ? 'buy' : '');

const KINDS = { buy_both: 'buy YES + NO', sell_both: 'sell YES + NO', buy_all_yes: 'buy every YES' };
export const kindLabel = (kind) => KINDS[kind] ?? kind;

/** Prices and per-share edges: every decimal they have, up to 6. */
export const fmtPrice = (v) => fmtDecimal(v, { min: 2, max: 6 });
export const fmtShares = (v) => fmtDecimal(v, { max: 6 });
/** Fees and P&L: to the cent is too coarse for fees of a few shares; up to 6 decimals. */
export const fmtAmount = (v, sign = false) => fmtDecimal(v, { min: 2, max: 6, sign });
export { fmtMoney };

/** A fill rate (a fraction as decimal text) as a percentage, exactly: "83.33%"; '—' if none. */
export function fmtRate(v) {
  const pct = shiftDecimal(v, 2);
  return pct == null ? '—' : `${fmtDecimal(pct, { max: 2 })}%`;
}

/** One opportunity leg for people: "buy No 100 @ 0.508 (to 0.52), fee 0.99936". */
export function oppLegText(l) {
  const worst = l.worst_price != null && compareDecimal(l.worst_price, l.avg_price) !== 0
    ? ` (to ${fmtPrice(l.worst_price)})` : '';
  return `${l.side} ${l.outcome ?? l.token_id} ${fmtShares(l.shares)} @ ${fmtPrice(l.avg_price)}${worst}, fee ${fmtAmount(l.fee)}`;
}

/** One order of a trade: "entry buy Yes 100/100 @ 0.45 fee 0.99 filled". */
export function tradeLegText(l) {
  const price = l.avg_price != null ? ` @ ${fmtPrice(l.avg_price)}` : l.limit_price != null ? ` ≤ ${fmtPrice(l.limit_price)}` : '';
  return `${l.purpose} ${l.side} ${l.outcome ?? l.token_id} ${fmtShares(l.filled_size)}/${fmtShares(l.size)}${price}`
    + ` fee ${fmtAmount(l.fee)} ${l.status}`;
}

/** Whether a trade lost money to leg risk (a one-legged fill unwound or held). */
export const hadLegRisk = (t) => signOf(t.leg_risk_loss) === 1;

/** Trades still waiting on the venue or an unwind. */
export const OPEN_TRADE = new Set(['pending', 'submitted', 'partial']);

/** Opportunities open first, each group newest first (the server's order, kept if already so). */
export function sortOpportunities(list) {
  const key = (o) => Date.parse(o.closed_at ?? o.last_seen) || 0;
  return [...(list ?? [])].sort((a, b) => (a.open === b.open ? key(b) - key(a) || b.id - a.id : a.open ? -1 : 1));
}

/**
 * The bars of the daily paper P&L chart in a `width` × `height` box with `pad` on every side:
 * one bar per day (oldest left), up from the zero line for a gain and down for a loss, scaled
 * to the largest magnitude (the P&L and the leg-risk losses drawn under it share the scale).
 * Bars are at most `maxBar` wide (a single day is not a wall). Returns {zero (y of the line), bars: [{day, x, w, y, h, tone, value, loss: {y, h} | null}]}.
 * Heights are geometry only: labels come from the exact strings.
 */
export function pnlBars(days, { width, height, pad = 4, gap = 0.25, maxBar = 40 } = {}) {
  const list = days ?? [];
  const vals = list.map((d) => Number(d.paper_pnl) || 0);
  const losses = list.map((d) => Number(d.leg_risk_losses) || 0);
  const top = Math.max(0, ...vals);
  const bottom = Math.min(0, ...vals, ...losses.map((l) => -l));
  const span = top - bottom || 1;
  const innerH = height - 2 * pad;
  const zero = pad + (top / span) * innerH;
  const step = list.length ? (width - 2 * pad) / list.length : 0;
  const w = Math.min(step * (1 - gap), maxBar);
  const bars = list.map((d, i) => {
    const v = vals[i];
    const h = (Math.abs(v) / span) * innerH;
    const lossH = (losses[i] / span) * innerH;
    return {
      day: d.day,
      x: pad + i * step + (step - w) / 2,
      w,
      y: v >= 0 ? zero - h : zero,
      h,
      tone: signOf(d.paper_pnl) === 1 ? 'up' : signOf(d.paper_pnl) === -1 ? 'down' : 'flat',
      value: d.paper_pnl,
      loss: losses[i] > 0 ? { y: zero, h: lossH } : null,
    };
  });
  return { zero, bars };
}
