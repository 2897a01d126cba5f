// Timeframe arithmetic and client-side bar building. No DOM here, so the
// module can be unit-tested with plain node.

/** Timeframes the API accepts, with their length in seconds. */
export const TIMEFRAMES = { '1m': 60, '5m': 300, '15m': 900, '30m': 1800, '1h': 3600, '1d': 86400 };

export const toSec = (iso) => Math.floor(Date.parse(iso) / 1000);

/** Start of the bucket of length `step` holding `sec`, on the grid of
 *  buckets through `origin` (by default the Unix epoch). */
export const floorTo = (sec, step, origin = 0) => sec - ((((sec - origin) % step) + step) % step);

const num = (v) => (v == null ? null : Number(v));

/** API candle (`time`) or SSE candle (`bucket`) → the chart's shape, time in
 *  Unix seconds. */
export function normalizeCandle(c) {
  return {
    time: toSec(c.time ?? c.bucket),
    open: num(c.open),
    high: num(c.high),
    low: num(c.low),
    close: num(c.close),
    volume: num(c.volume) ?? 0,
    buy: num(c.buy_volume),
    sell: num(c.sell_volume),
    trades: num(c.trades),
  };
}

/** Which of two versions of the same minute is more complete. A minute
 *  candle only ever gains trades, so the one with more trades (then more
 *  volume) is the newer; on a tie the incoming one wins. */
function fresher(old, incoming) {
  if (!old) return incoming;
  const a = old.trades ?? old.volume;
  const b = incoming.trades ?? incoming.volume;
  if (a !== b) return b > a ? incoming : old;
  return incoming.volume >= old.volume ? incoming : old;
}

const addNullable = (a, b) => (a == null && b == null ? null : (a ?? 0) + (b ?? 0));

/** One bar starting at `time` from minute candles (a Map keyed by minute). */
export function combine(time, minutes) {
  const sorted = [...minutes.values()].sort((x, y) => x.time - y.time);
  const bar = { time, open: sorted[0].open, high: -Infinity, low: Infinity,
    close: sorted[sorted.length - 1].close, volume: 0, buy: null, sell: null, trades: null };
  for (const m of sorted) {
    bar.high = Math.max(bar.high, m.high);
    bar.low = Math.min(bar.low, m.low);
    bar.volume += m.volume;
    bar.buy = addNullable(bar.buy, m.buy);
    bar.sell = addNullable(bar.sell, m.sell);
    bar.trades = addNullable(bar.trades, m.trades);
  }
  return bar;
}

/**
 * The bars of one symbol at one timeframe, kept current from live 1-minute
 * candles. The server re-sends the whole minute candle on every change, so a
 * bar is always recomputed from the latest version of each of its minutes;
 * adding each update on top of the bar would count the same trades again.
 */
export class BarSeries {
  constructor(tf, bars = []) {
    this.step = TIMEFRAMES[tf];
    if (!this.step) throw new Error(`unknown timeframe ${tf}`);
    this.bars = [...bars].sort((a, b) => a.time - b.time);
    this.index = new Map(this.bars.map((b, i) => [b.time, i]));
    this.minutes = new Map(); // bar start → Map(minute start → minute candle)
    // The server aligns bars to the symbol's session (1h bars of a US stock
    // start at :30 ET, daily bars at midnight ET), so new bars follow the
    // grid of the newest loaded bar rather than assuming UTC.
    this.origin = this.last?.time ?? 0;
  }

  /** Start of the bar that a live minute at `sec` belongs to. */
  startOf(sec) {
    return floorTo(sec, this.step, this.origin);
  }

  /** The drawn bar holding the time `sec` (the last one starting at or
   *  before it), or undefined. */
  barAt(sec) {
    let [lo, hi] = [0, this.bars.length - 1];
    if (hi < 0 || sec < this.bars[0].time) return undefined;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.bars[mid].time <= sec) lo = mid;
      else hi = mid - 1;
    }
    return this.bars[lo];
  }

  get last() {
    return this.bars[this.bars.length - 1];
  }

  at(time) {
    const i = this.index.get(time);
    return i === undefined ? undefined : this.bars[i];
  }

  /**
   * Give the minutes behind the newest loaded bar (fetched at 1m), so live
   * updates to that bar can be recomputed without losing its earlier minutes.
   * Minutes outside it are ignored. With none at all, the loaded bar stands
   * in as one pseudo-minute so it is not shrunk to the first live minute.
   */
  seed(minuteCandles) {
    const last = this.last;
    if (!last) return;
    const mine = minuteCandles.filter((m) => this.startOf(m.time) === last.time);
    const map = this.#minutesOf(last.time);
    if (mine.length === 0 && map.size === 0) map.set(last.time, { ...last });
    for (const m of mine) map.set(m.time, fresher(map.get(m.time), m));
  }

  /**
   * Apply one live minute candle. Returns what changed for the chart:
   * `{ op: 'update', bar }` (last bar changed or a new one appended — what a
   * chart's series.update accepts), `{ op: 'replace', bar }` (an older bar
   * changed; the whole data set must be re-set), or null when the minute
   * belongs to an older bar whose minutes are unknown here.
   */
  apply(minute) {
    const start = this.startOf(minute.time);
    let map = this.minutes.get(start);
    if (!map) {
      const existing = this.at(start);
      const last = this.last;
      // At 1m a bar is its own minute, so a loaded bar can take updates.
      if (this.step === 60 && existing) map = new Map([[start, existing]]);
      // An older bar (or a hole in the history) whose minutes are unknown.
      else if (existing || (last && start < last.time)) return null;
      else map = new Map();
      this.minutes.set(start, map);
    }
    map.set(minute.time, fresher(map.get(minute.time), minute));
    const bar = combine(start, map);
    const i = this.index.get(start);
    if (i === undefined) {
      this.index.set(start, this.bars.length);
      this.bars.push(bar);
      this.#prune();
      return { op: 'update', bar };
    }
    this.bars[i] = bar;
    return { op: i === this.bars.length - 1 ? 'update' : 'replace', bar };
  }

  #minutesOf(start) {
    let map = this.minutes.get(start);
    if (!map) this.minutes.set(start, (map = new Map()));
    return map;
  }

  // Keep minute detail for the last few bars only: late trades can touch the
  // bar before the current one, hardly ever older.
  #prune() {
    const keepFrom = this.bars[Math.max(0, this.bars.length - 3)].time;
    for (const start of this.minutes.keys()) if (start < keepFrom) this.minutes.delete(start);
  }
}
