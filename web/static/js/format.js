// Display formatting. Times are stored as UTC seconds everywhere and only
// converted for display, in the exchange's zone (ET) or UTC.

export const ZONES = { ET: 'America/New_York', UTC: 'UTC' };
let zoneLabel = 'ET';

export const getZone = () => zoneLabel;
export function setZone(label) {
  if (ZONES[label]) zoneLabel = label;
}

const formatters = new Map();
function dtf(options) {
  const key = zoneLabel + JSON.stringify(options);
  let f = formatters.get(key);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: ZONES[zoneLabel], hourCycle: 'h23', ...options });
    formatters.set(key, f);
  }
  return f;
}

const parts = (sec, options) =>
  Object.fromEntries(dtf(options).formatToParts(new Date(sec * 1000)).map((p) => [p.type, p.value]));

/** "15:04:05" */
export function fmtClock(sec, seconds = true) {
  const p = parts(sec, { hour: '2-digit', minute: '2-digit', ...(seconds && { second: '2-digit' }) });
  return seconds ? `${p.hour}:${p.minute}:${p.second}` : `${p.hour}:${p.minute}`;
}

/** "Nov 24 15:04" — dates are unambiguous across locales this way. */
export function fmtDateTime(sec, seconds = false) {
  const p = parts(sec, { month: 'short', day: '2-digit' });
  return `${p.month} ${p.day} ${fmtClock(sec, seconds)}`;
}

export function fmtDate(sec) {
  const p = parts(sec, { year: 'numeric', month: 'short', day: '2-digit' });
  return `${p.month} ${p.day}, ${p.year}`;
}

/** "2026-11-24": the day holding `sec` in the display zone, as date inputs
 *  spell it. */
export function fmtYMD(sec) {
  const p = parts(sec, { year: 'numeric', month: '2-digit', day: '2-digit' });
  return `${p.year}-${p.month}-${p.day}`;
}

/** Unix seconds of the midnight starting day "YYYY-MM-DD" in the display zone. */
export function startOfDay(ymd) {
  const [y, m, d] = ymd.split('-').map(Number);
  const wall = Date.UTC(y, m - 1, d) / 1000;
  // Correct by the zone's offset, then once more with the offset at the
  // corrected instant, in case a DST change lies between the two.
  let sec = wall;
  for (let i = 0; i < 2; i++) sec = wall - zoneOffset(sec);
  return sec;
}

// How many seconds the display zone is ahead of UTC at `sec`.
function zoneOffset(sec) {
  const p = parts(sec, { year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric',
    second: 'numeric' });
  return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) / 1000 - sec;
}

/** "3d 4h", "1h 05m", "12m", "40s": a span of seconds, to two units. */
export function fmtSpan(sec) {
  if (sec == null || !Number.isFinite(sec)) return '—';
  const s = Math.round(Math.abs(sec));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor(s / 3600) % 24}h`;
}

/** Tick labels of the chart's time axis; `type` is lightweight-charts' TickMarkType. */
export function fmtTick(sec, type) {
  switch (type) {
    case 0: return parts(sec, { year: 'numeric' }).year;
    case 1: return parts(sec, { month: 'short' }).month;
    case 2: { const p = parts(sec, { month: 'short', day: 'numeric' }); return `${p.month} ${p.day}`; }
    case 4: return fmtClock(sec, true);
    default: return fmtClock(sec, false);
  }
}

/** Decimals needed to show every value exactly (2 to 6): equities need 2,
 *  FX 4–5, prediction-market prices 2–3. */
export function decimalsFor(values) {
  let d = 2;
  for (const v of values) {
    if (!Number.isFinite(v)) continue;
    while (d < 6 && Math.abs(v * 10 ** d - Math.round(v * 10 ** d)) > 1e-6 * Math.max(1, Math.abs(v))) d++;
  }
  return d;
}

export function fmtPrice(v, decimals = 2) {
  if (v == null || !Number.isFinite(Number(v))) return '—';
  return Number(v).toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

const compact = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 2 });
export function fmtVolume(v) {
  if (v == null || !Number.isFinite(Number(v))) return '—';
  return Math.abs(v) < 10000 ? Math.round(v).toLocaleString('en-US') : compact.format(v);
}

export function fmtPct(v) {
  if (v == null || !Number.isFinite(Number(v))) return '—';
  return `${v > 0 ? '+' : ''}${Number(v).toFixed(2)}%`;
}

/** Set text only when it changed, so live updates do not churn the DOM. */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/**
 * Fill a chart legend with [key, value] items: the key in bold (omitted when empty), the value
 * in a span whose class `classOf(key)` gives (e.g. 'up' or 'down').
 */
export function renderLegend(el, items, classOf = () => '') {
  el.replaceChildren(...items.map(([k, v]) => {
    const span = document.createElement('span');
    if (k) {
      const key = document.createElement('b');
      key.textContent = k;
      span.append(key, ' ');
    }
    const val = document.createElement('span');
    val.textContent = v;
    const cls = classOf(k);
    if (cls) val.className = cls;
    span.append(val);
    return span;
  }));
}

// ---- the time axis on the display zone's calendar ----
//
// lightweight-charts places its tick marks (and decides which is a new year, month or day)
// on the UTC calendar, while every label here is written in the display zone. An intraday
// chart of a market that trades overnight then put its "month" mark on the bar of 00:00 UTC,
// 19:00 ET the evening before, and labelled the first of December "Nov". The weights below
// are the library's (TickMarkWeight), computed on the display zone's calendar instead, so
// marks and labels agree (chart.js installs them through a horizontal-scale behaviour).

/** Seconds since the epoch of the display zone's wall clock at `sec`, as if that wall clock
 *  were UTC: `new Date(wallSeconds(sec) * 1000).getUTCMonth()` is the month in the zone. */
export function wallSeconds(sec) {
  return sec + zoneOffset(sec);
}

// Intraday weights of lightweight-charts, coarsest first: [seconds, TickMarkWeight].
const INTRADAY_WEIGHTS = [[43200, 33], [21600, 32], [10800, 31], [3600, 30], [1800, 22], [300, 21], [60, 20],
  [1, 10]];

/** The tick-mark weight of a point at `sec` following one at `prev` (Unix seconds): 70 a new
 *  year, 60 a new month, 50 a new day in the display zone, then the hour and minute grids of
 *  its wall clock. */
export function tickWeight(sec, prev) {
  const [a, b] = [wallSeconds(prev), wallSeconds(sec)];
  const [da, db] = [new Date(a * 1000), new Date(b * 1000)];
  if (da.getUTCFullYear() !== db.getUTCFullYear()) return 70;
  if (da.getUTCMonth() !== db.getUTCMonth()) return 60;
  if (da.getUTCDate() !== db.getUTCDate()) return 50;
  for (const [step, weight] of INTRADAY_WEIGHTS) if (Math.floor(a / step) !== Math.floor(b / step)) return weight;
  return 0;
}

/** Sets `timeWeight` of lightweight-charts' sorted time points from `startIndex` on (the
 *  horizontal-scale behaviour's fillWeightsForPoints); the first point's weight is guessed
 *  from the average spacing, as the library does. */
export function fillZoneWeights(points, startIndex = 0) {
  const time = (i) => Number(points[i].originalTime);
  for (let i = Math.max(1, startIndex); i < points.length; i++) points[i].timeWeight = tickWeight(time(i), time(i - 1));
  if (startIndex === 0 && points.length > 1) {
    const average = Math.ceil((time(points.length - 1) - time(0)) / (points.length - 1));
    points[0].timeWeight = tickWeight(time(0), time(0) - average);
  }
}

// ---- prices at the instrument's tick ----

/** Decimals a tick size is written with: 0.01 → 2, 0.25 → 2, 0.005 → 3, 1 → 0. */
export function tickDecimals(tick) {
  const t = Number(tick);
  if (!(t > 0) || !Number.isFinite(t)) return 2;
  for (let d = 0; d < 10; d++) {
    const scaled = t * 10 ** d;
    if (Math.abs(scaled - Math.round(scaled)) < 1e-9 * Math.max(1, scaled)) return d;
  }
  return 10;
}

/** A price written to the instrument's tick ("231.47" at 0.01, "4,512.25" at 0.25). */
export const fmtAtTick = (v, tick) => fmtPrice(v, tickDecimals(tick));

/** Money: to the cent. */
export const fmtCents = (v) => fmtPrice(v, 2);
