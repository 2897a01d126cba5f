// Shaping the account page's data for display: exact decimal strings from the
// server formatted without passing through floating point, orders flattened
// into rows with their bracket legs, and fills as chart markers. No DOM here,
// so the module can be unit-tested with plain node.

const DECIMAL = /^([+-])?(\d*)(?:\.(\d*))?$/;

/** Digits of a decimal string (or a number), or null when it is none. */
function parse(v) {
  if (v == null || v === '') return null;
  const text = typeof v === 'number' ? (Number.isFinite(v) ? v.toFixed(12) : '') : String(v).trim();
  const m = DECIMAL.exec(text);
  if (!m || (!m[2] && !m[3])) return null;
  return { negative: m[1] === '-', int: (m[2] || '0').replace(/^0+(?=\d)/, ''), frac: m[3] ?? '' };
}

/** Rounds the digits to `decimals`, half away from zero, on the digit strings. */
function roundDigits({ negative, int, frac }, decimals) {
  if (frac.length <= decimals) return { negative, int, frac: frac.padEnd(decimals, '0') };
  const up = frac[decimals] >= '5';
  let digits = (int + frac.slice(0, decimals)).split('');
  if (up) {
    let i = digits.length - 1;
    while (i >= 0 && digits[i] === '9') digits[i--] = '0';
    if (i < 0) digits.unshift('1');
    else digits[i] = String(Number(digits[i]) + 1);
  }
  digits = digits.join('');
  const cut = digits.length - decimals;
  return { negative, int: digits.slice(0, cut) || '0', frac: digits.slice(cut) };
}

const isZero = ({ int, frac }) => !/[1-9]/.test(int + frac);

/** -1, 0 or 1: the sign of a decimal string or number; null when none. */
export function signOf(v) {
  const d = parse(v);
  if (!d) return null;
  if (isZero(d)) return 0;
  return d.negative ? -1 : 1;
}

/** 'up' for a gain, 'down' for a loss, '' otherwise. */
export const toneOf = (v) => ({ 1: 'up', [-1]: 'down' })[signOf(v)] ?? '';

/**
 * A decimal string (or number) for display, exactly: with thousands
 * separators and `decimals` fixed decimals (rounded half away from zero), or,
 * without `decimals`, every decimal it has but at least `min` and at most
 * `max`. `sign` prefixes a '+' to values above zero. '—' for no value.
 */
export function fmtDecimal(v, { decimals, min = 0, max = 8, sign = false } = {}) {
  let d = parse(v);
  if (!d) return '—';
  const places = decimals ?? Math.min(max, Math.max(min, d.frac.replace(/0+$/, '').length));
  d = roundDigits(d, places);
  const zero = isZero(d);
  const int = d.int.replace(/\B(?=(\d{3})+$)/g, ',');
  const prefix = zero ? '' : d.negative ? '-' : sign ? '+' : '';
  return `${prefix}${int}${places ? `.${d.frac}` : ''}`;
}

/** Money: two decimals. */
export const fmtMoney = (v, sign = false) => fmtDecimal(v, { decimals: 2, sign });

/** Quantities: as many decimals as they have (shares are whole, crypto is not). */
export const fmtQty = (v) => fmtDecimal(v, { max: 8 });

/** Prices: at least two decimals, more when the price has them. */
export const fmtPriceText = (v) => fmtDecimal(v, { min: 2, max: 8 });

/** `part` as a percentage of `whole` (both decimal strings): "+0.25%". */
export function fmtRatioPct(part, whole) {
  const p = Number(part);
  const w = Number(whole);
  if (part == null || whole == null || !Number.isFinite(p) || !Number.isFinite(w) || w === 0) return '';
  const pct = (p / w) * 100;
  return `${pct > 0 ? '+' : pct < 0 ? '-' : ''}${Math.abs(pct).toFixed(2)}%`;
}

/** Whether an order (or a bracket leg) still works at the broker. */
export const FINAL_ORDER = new Set(['filled', 'canceled', 'cancelled', 'expired', 'rejected', 'replaced',
  'done_for_day']);
export const isOpenOrder = (o) => o.open ?? !FINAL_ORDER.has(o.status);

/** Orders (each with `legs`) as table rows: a parent, then its legs marked `leg: true`. */
export function orderRows(orders) {
  const rows = [];
  for (const o of orders ?? []) {
    rows.push({ order: o, leg: false });
    for (const l of o.legs ?? []) rows.push({ order: l, leg: true });
  }
  return rows;
}

/** The price an order works at: "limit 189.50", "stop 188", "stop 188 / limit 187.9", "market". */
export function orderPrice(o) {
  const parts = [];
  if (o.stop_price != null) parts.push(`stop ${fmtPriceText(o.stop_price)}`);
  if (o.limit_price != null) parts.push(`limit ${fmtPriceText(o.limit_price)}`);
  return parts.length ? parts.join(' / ') : 'market';
}

const LEG_NAMES = { entry: 'entry', take_profit: 'take profit', stop_loss: 'stop loss', market: 'market' };
export const legName = (leg) => LEG_NAMES[leg] ?? leg ?? '—';

const BUY = '#3fb950';
const SELL = '#ff7b72';

/** A fill as a chart marker at bar time `time`: buys below the bar, sells above. */
export function fillMarker(f, time) {
  const text = `${fmtQty(f.qty)}@${fmtPriceText(f.price)}`;
  return f.side === 'buy'
    ? { time, position: 'belowBar', shape: 'arrowUp', color: BUY, text }
    : { time, position: 'aboveBar', shape: 'arrowDown', color: SELL, text };
}

/** A reason a signal was refused, for people: the gate's code and its message. */
export function rejectionText(s) {
  const code = s.reject_code?.replace(/_/g, ' ');
  const message = s.error ?? (s.status === 'expired' ? 'not claimed before it expired' : '');
  return [code, message].filter(Boolean).join(': ') || '—';
}
