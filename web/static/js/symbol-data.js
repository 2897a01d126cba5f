// Shaping the symbol page's data for drawing: bars merged by time, the profile's
// rows as price bands, footprint cells with their imbalances, market states and
// markers placed on bars. Every number comes from the server as the extension
// computed it; nothing here derives a price, a volume or a level. No DOM, so the
// module can be unit-tested with plain node.
import { toSec } from './bars.js';

const num = (v) => (v == null || v === '' ? null : Number(v));

/** `/api/candles` rows → `{ time, open, high, low, close, volume, buy, sell, trades }`. */
export function normalizeBar(c) {
  return { time: toSec(c.time), open: num(c.open), high: num(c.high), low: num(c.low), close: num(c.close),
    volume: num(c.volume) ?? 0, buy: num(c.buy_volume), sell: num(c.sell_volume), trades: num(c.trades) };
}

/** `/flow` rows → `{ time, session, volume, buy, sell, delta, buyPressure, sellPressure, cvd }`. */
export function normalizeFlow(f) {
  return { time: toSec(f.time), session: f.session, volume: num(f.volume), buy: num(f.buy_volume),
    sell: num(f.sell_volume), delta: num(f.delta), buyPressure: num(f.buy_pressure),
    sellPressure: num(f.sell_pressure), cvd: num(f.cvd) };
}

/** `fresh` rows replace `old` rows of the same time; the result is sorted by time. */
export function mergeByTime(old, fresh) {
  const byTime = new Map(old.map((r) => [r.time, r]));
  for (const r of fresh) byTime.set(r.time, r);
  return [...byTime.values()].sort((a, b) => a.time - b.time);
}

/** Index of the last row whose time is at or before `t` in rows sorted by time, or -1. */
export function indexAt(rows, t) {
  let [lo, hi] = [0, rows.length - 1];
  if (hi < 0 || t < rows[0].time) return -1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (rows[mid].time <= t) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** The bar holding time `t` (a bar covers [time, time + step)), or undefined. */
export function barOf(bars, t, step) {
  const i = indexAt(bars, t);
  return i >= 0 && t < bars[i].time + step ? bars[i] : undefined;
}

/**
 * The profile's rows as price bands for drawing: a row of `ticks_per_row` ticks is priced at
 * its lowest tick and spans from half a tick below it to half a tick below the next row.
 * Each: `{ price, lo, hi, total, buy, sell, other, inValue, poc }`.
 */
export function profileRows(profile) {
  if (!profile?.levels?.length) return [];
  const tick = Number(profile.tick_size);
  const size = Number(profile.row_size ?? tick);
  const va = profile.value_area;
  return profile.levels.map((l) => {
    const price = Number(l.price);
    const total = Number(l.total);
    const buy = Number(l.buy);
    const sell = Number(l.sell);
    return { price, lo: price - tick / 2, hi: price + size - tick / 2, total, buy, sell,
      other: Math.max(0, total - buy - sell),
      inValue: va != null && price >= Number(va.val) && price <= Number(va.vah),
      poc: profile.poc != null && price === Number(profile.poc) };
  });
}

/** The row holding `price`, or undefined. */
export function rowAt(rows, price) {
  return rows.find((r) => price >= r.lo && price < r.hi);
}

/**
 * Footprint cells by bar: Map time → { time, cells: Map price → cell }, each cell
 * `{ time, price, bid, ask, delta, volume, trades, buyImbalance, sellImbalance, stacked }`.
 * A buy imbalance at a price marks its ask (bought) volume, a sell imbalance its bid (sold)
 * volume, as `tapeflow.footprint_imbalances` reports them.
 */
export function footprintBars({ cells = [], imbalances = [] } = {}) {
  const bars = new Map();
  for (const c of cells) {
    const time = toSec(c.time);
    let bar = bars.get(time);
    if (!bar) bars.set(time, (bar = { time, cells: new Map(), maxVolume: 0 }));
    const cell = { time, price: Number(c.price), bid: Number(c.bid), ask: Number(c.ask), delta: Number(c.delta),
      volume: Number(c.volume), trades: num(c.trades), buyImbalance: null, sellImbalance: null, stacked: false };
    bar.cells.set(cell.price, cell);
    bar.maxVolume = Math.max(bar.maxVolume, cell.volume);
  }
  for (const i of imbalances) {
    const cell = bars.get(toSec(i.time))?.cells.get(Number(i.price));
    if (!cell) continue;
    const mark = { ratio: num(i.ratio), opposite: num(i.opposite), stacked: Boolean(i.stacked) };
    if (i.side === 'buy') cell.buyImbalance = mark;
    else if (i.side === 'sell') cell.sellImbalance = mark;
    cell.stacked ||= mark.stacked;
  }
  return bars;
}

/** The footprint cell of bar `time` whose tick holds `price` (cells are one tick high). */
export function cellAt(bars, time, price, tick) {
  const bar = bars.get(time);
  if (!bar) return undefined;
  for (const cell of bar.cells.values()) if (Math.abs(cell.price - price) <= tick / 2 + 1e-9) return cell;
  return undefined;
}

/** Colours of the market states, and their names for people. */
export const STATE_STYLE = {
  balance: { rgb: [88, 166, 255], label: 'Balance' },
  imbalance_up: { rgb: [38, 166, 154], label: 'Imbalance up' },
  imbalance_down: { rgb: [239, 83, 80], label: 'Imbalance down' },
};

/** Fill colour of a state band cell: the state's colour, more opaque with more confidence. */
export function stateFill(state, confidence) {
  const { rgb } = STATE_STYLE[state] ?? { rgb: [125, 133, 144] };
  const c = Math.max(0, Math.min(100, Number(confidence) || 0));
  return `rgba(${rgb.join(',')},${(0.2 + 0.8 * (c / 100)).toFixed(3)})`;
}

/** `/states` rows → `{ time, state, confidence, aggression, direction, signal, reason, … }`. */
export function normalizeState(s) {
  return { ...s, time: toSec(s.time), confidence: num(s.confidence), aggression: num(s.aggression) };
}

/** Where a time falls across the drawn bars, in bar units: the index of the bar holding it
 *  plus the fraction of the bar elapsed; null outside every bar. */
export function barPosition(bars, t, step) {
  const i = indexAt(bars, t);
  if (i < 0 || t >= bars[i].time + step) return null;
  return i + (t - bars[i].time) / step;
}

/**
 * Chart markers of signals, orders and fills on the bars holding them, sorted as the chart
 * wants, and what each bar's markers are about (for the hover): `{ markers, notes }` where
 * notes is Map bar time → [{ kind, text, reason }].
 */
export function markerData({ bars, step, signals = [], orders = [], fills = [], fmtPrice }) {
  const notes = new Map();
  const markers = [];
  const bySignal = new Map(signals.map((s) => [s.id, s]));
  const note = (time, item) => {
    if (!notes.has(time)) notes.set(time, []);
    notes.get(time).push(item);
  };
  const place = (t) => barOf(bars, t, step)?.time;
  for (const s of signals) {
    const time = place(toSec(s.bar ?? s.time));
    if (time === undefined) continue;
    const buy = s.side === 'buy';
    const exit = s.kind === 'exit';
    markers.push({ order: [time, 0, s.id ?? 0], marker: exit
      ? { time, position: buy ? 'belowBar' : 'aboveBar', shape: 'circle', color: '#d2a8ff', text: 'EXIT' }
      : { time, position: buy ? 'belowBar' : 'aboveBar', shape: buy ? 'arrowUp' : 'arrowDown',
        color: buy ? '#26a69a' : '#ef5350', text: buy ? 'BUY' : 'SELL' } });
    const levels = [['entry', s.entry], ['stop', s.stop], ['target', s.target]]
      .filter(([, v]) => v != null).map(([k, v]) => `${k} ${fmtPrice(v)}`).join(' · ');
    note(time, { kind: 'signal', id: s.id, text: `Signal #${s.id} ${s.kind} ${s.side} (${s.status}) ${levels}`,
      reason: s.reason ?? '' });
  }
  for (const o of orders) {
    const time = place(toSec(o.created_at));
    if (time === undefined) continue;
    markers.push({ order: [time, 1, o.id ?? 0], marker: { time, position: o.side === 'buy' ? 'belowBar' : 'aboveBar',
      shape: 'square', color: '#8b949e', text: '' } });
    const price = o.limit_price ?? o.stop_price;
    note(time, { kind: 'order', id: o.id,
      text: `Order #${o.id} ${o.leg ?? o.purpose ?? ''} ${o.side} ${o.qty}${price == null ? '' : ` @ ${fmtPrice(price)}`} (${o.status})`,
      reason: bySignal.get(o.signal_id)?.reason ?? '' });
  }
  for (const f of fills) {
    const time = place(toSec(f.time));
    if (time === undefined) continue;
    const buy = f.side === 'buy';
    markers.push({ order: [time, 2, f.id ?? 0], marker: { time, position: buy ? 'belowBar' : 'aboveBar',
      shape: buy ? 'arrowUp' : 'arrowDown', color: buy ? '#3fb950' : '#ff7b72', text: `${f.qty}@${fmtPrice(f.price)}` } });
    note(time, { kind: 'fill', id: f.id, text: `Fill ${f.side} ${f.qty} @ ${fmtPrice(f.price)} (${f.leg ?? f.purpose ?? ''})`,
      reason: bySignal.get(f.signal_id)?.reason ?? '' });
  }
  const cmp = (a, b) => a.order.reduce((c, v, i) => c || v - b.order[i], 0);
  return { markers: markers.sort(cmp).map((m) => m.marker), notes };
}

/** Orders (each with `legs`) of one symbol, legs included, as one list. */
export function ordersOf(orders, symbol) {
  const out = [];
  for (const o of orders ?? []) {
    if (o.symbol !== symbol) continue;
    out.push(o);
    for (const l of o.legs ?? []) out.push(l);
  }
  return out;
}

/** Developing rows → one series of points per session and line: Map session →
 *  `{ poc: [{time, value}], vah: [...], val: [...] }` (a session's lines never join the next's). */
export function developingLines(rows) {
  const sessions = new Map();
  for (const r of rows) {
    let s = sessions.get(r.session);
    if (!s) sessions.set(r.session, (s = { poc: [], vah: [], val: [] }));
    const time = toSec(r.time);
    for (const k of ['poc', 'vah', 'val']) if (r[k] != null) s[k].push({ time, value: Number(r[k]) });
  }
  return sessions;
}
