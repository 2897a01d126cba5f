// The symbol page (#/symbol/<SYM>[/<TF>]): candles and volume with the volume
// profile beside the price axis (session or composite, buy and sell split), its
// POC, VAH and VAL and the developing POC and value area through each session,
// LVNs and HVNs; a cumulative-delta pane with per-bar delta; a footprint of the
// visible bars with their diagonal and stacked imbalances; the market-state band;
// signals, orders and fills as markers with their reasons on hover. Kept current
// over SSE by re-reading what changed: every number drawn is the extension's.
import * as api from './api.js';
import { TIMEFRAMES } from './bars.js';
import { createZonedChart, reweighTimeAxis } from './chart.js';
import { fmtAtTick, fmtDate, fmtDateTime, fmtPct, fmtTick, fmtVolume, fmtYMD, renderLegend, setText, startOfDay,
  tickDecimals } from './format.js';
import * as sapi from './symbol-api.js';
import { barOf, barPosition, cellAt, developingLines, footprintBars, indexAt, markerData, mergeByTime, normalizeBar,
  normalizeFlow, normalizeState, ordersOf, profileRows, rowAt, STATE_STYLE, stateFill } from './symbol-data.js';

const $ = (sel) => document.querySelector(sel);
const HOUR = 3600;
const DAY = 86400;
const UP = '#26a69a';
const DOWN = '#ef5350';
const POC = '#e3b341';
const VA = '#58a6ff';
// Live candles arrive several times a second: re-read at most this often.
const REFRESH_MS = 800;
// The footprint is read for the visible bars when there are at most this many.
const FOOTPRINT_BARS = 80;
// Widest the profile histogram gets, as a share of the plot and in pixels.
const PROFILE_SHARE = 0.24;
const PROFILE_MAX_PX = 260;
// Form fields by the query parameter the server names when it refuses one.
const PARAM_FIELDS = { ticks_per_row: '#sym-tpr', va_pct: '#sym-va', va_method: '#sym-method', day: '#sym-day',
  from: '#sym-from', to: '#sym-to', ratio: '#sym-ratio', min_volume: '#sym-minvol' };
const iso = (sec) => api.rfc3339(new Date(sec * 1000));
const addDays = (ymd, n) => new Date(Date.parse(`${ymd}T00:00:00Z`) + n * DAY * 1000).toISOString().slice(0, 10);
// A number typed in percent as the fraction the server takes; anything else as typed, for
// the server's parser to refuse with its own words.
const fraction = (text) => {
  const t = String(text ?? '').trim();
  return t !== '' && Number.isFinite(Number(t)) ? String(Number(t) / 100) : t;
};

export class SymbolPage {
  constructor() {
    this.shown = false;
    this.symbol = null;
    this.info = null;
    this.tf = TIMEFRAMES[localStorage.getItem('tapeflow.symbol.tf')] ? localStorage.getItem('tapeflow.symbol.tf') : '5m';
    this.mode = 'candles';
    this.seq = 0;
    this.charts = null; // created when first shown: a chart made hidden has no size
    this.reset();
    this.#bindControls();
  }

  reset() {
    this.bars = [];
    this.flow = new Map();
    this.developing = [];
    this.profile = null;
    this.rows = [];
    this.states = [];
    this.stateSource = null;
    this.fp = null; // { from, to, ticksPerRow, bars: Map }
    this.signals = [];
    this.fills = [];
    this.orders = [];
    this.notes = new Map();
    this.dirty = true;
  }

  get tick() {
    return Number(this.info?.tick_size) || 0.01;
  }

  get step() {
    return TIMEFRAMES[this.tf];
  }

  price(v) {
    return fmtAtTick(v, this.tick);
  }

  // ---- routing ----

  /** Show `symbol` at `tf` (or the last timeframe used here). */
  show(symbol, tf) {
    this.shown = true;
    this.#ensureCharts();
    const tfChanged = tf && TIMEFRAMES[tf] && tf !== this.tf;
    if (tfChanged) this.#setTf(tf, false);
    if (symbol !== this.symbol || tfChanged || !this.info) this.open(symbol);
    this.#loop();
  }

  hide() {
    this.shown = false;
  }

  /** After the stream reconnected: anything may have changed. */
  resync() {
    if (this.shown && this.symbol) this.open(this.symbol);
  }

  refreshTimeFormat() {
    if (!this.charts) return;
    this.#applyTimeFormat();
    const bars = this.#candleData();
    reweighTimeAxis(this.charts.price, [[this.charts.candles, bars], [this.charts.volume, this.#volumeData()]]);
    reweighTimeAxis(this.charts.delta, [[this.charts.deltaBars, this.#deltaData()], [this.charts.cvd, this.#cvdData()]]);
    this.#renderDeveloping();
    this.#renderMarkers();
    this.#renderSide();
    this.#legend();
    this.dirty = true;
  }

  // ---- live events ----

  applyEvent(name, data) {
    if (!this.shown || !this.symbol || data?.symbol !== this.symbol) return;
    if (name === 'candle') this.#refreshSoon();
    else if (name === 'state') this.#refreshStatesSoon();
    else if (name === 'signal' || name === 'order') this.#refreshTradingSoon();
  }

  // ---- loading ----

  /** Load everything shown for `symbol`. */
  async open(symbol) {
    const seq = ++this.seq;
    const changed = symbol !== this.symbol;
    this.symbol = symbol;
    if (changed) {
      this.reset();
      this.info = null;
      this.#clearCharts();
      setText($('#sym-symbol'), symbol);
      setText($('#sym-name'), '');
      setText($('#sym-last'), '');
    }
    this.#message('Loading…');
    try {
      const info = await sapi.fetchSymbol(symbol);
      if (seq !== this.seq) return;
      this.info = info;
      setText($('#sym-name'), info.name ?? '');
      this.#fillSessions();
      await this.#loadAll(seq);
    } catch (err) {
      if (seq !== this.seq) return;
      this.#message(`Could not load ${symbol}: ${err.message}`);
    }
  }

  // The span loaded: two days of intraday bars before the newest one (the session before
  // it included), half a year of daily bars.
  #span() {
    const last = this.info?.last_bar ? Date.parse(this.info.last_bar) / 1000 : Date.now() / 1000;
    const to = Math.max(last, Date.now() / 1000) + HOUR;
    const from = last - (this.tf === '1d' ? 180 : 2) * DAY;
    return { from, to, last };
  }

  async #loadAll(seq) {
    const { from, to, last } = this.#span();
    const symbol = this.symbol;
    const tf = this.tf;
    // States are one-minute readings: the last two days at most, whatever the timeframe.
    const statesFrom = Math.max(from, last - 2 * DAY);
    const trading = Promise.all([
      api.fetchSignals(symbol, 500).catch(() => []),
      api.fetchFills(symbol, 500).catch(() => []),
      api.fetchOrders('all', 1000).catch(() => []),
    ]);
    const [candles, flow, states] = await Promise.all([
      api.fetchCandles(symbol, tf, new Date(from * 1000), new Date(to * 1000)),
      sapi.fetchFlow(symbol, tf, iso(from), iso(to)),
      sapi.fetchStates(symbol, iso(statesFrom), iso(to)).catch(() => ({ source: null, states: [] })),
    ]);
    if (seq !== this.seq) return;
    this.bars = candles.map(normalizeBar);
    this.flow = new Map(flow.map(normalizeFlow).map((f) => [f.time, f]));
    this.states = states.states.map(normalizeState);
    this.stateSource = states.source;
    this.#renderBars(true);
    this.#message(this.bars.length ? '' : `No ${tf} bars for ${symbol} yet — waiting for live data.`);
    const [signals, fills, orders] = await trading;
    if (seq !== this.seq) return;
    Object.assign(this, { signals, fills, orders: ordersOf(orders, symbol) });
    this.#renderMarkers();
    this.#renderSide();
    await Promise.all([this.#loadProfile(seq), this.#loadDeveloping(seq)]);
    if (this.mode === 'footprint') this.#footprintSoon(0);
  }

  /** Ticks per row as typed, or, left empty, a round number giving about 100 rows over the
   *  loaded bars' range (a display setting: the profile itself is the server's). */
  #ticksPerRow() {
    const typed = $('#sym-tpr').value.trim();
    if (typed) return typed;
    const lows = this.bars.map((b) => b.low);
    const highs = this.bars.map((b) => b.high);
    const ticks = this.bars.length ? (Math.max(...highs) - Math.min(...lows)) / this.tick : 0;
    const auto = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000].find((n) => ticks / n <= 120) ?? 1000;
    $('#sym-tpr').placeholder = `auto (${auto})`;
    return String(auto);
  }

  /** The profile settings as query parameters (values as typed: the server parses them). */
  #profileQuery() {
    const q = { ticks_per_row: this.#ticksPerRow(), va_pct: fraction($('#sym-va').value),
      va_method: $('#sym-method').value };
    if ($('#sym-scope').value === 'composite') {
      // Whole days in the display zone, "To" inclusive.
      const [a, b] = [$('#sym-from').value, $('#sym-to').value];
      if (!a || !b) return { missing: a ? 'to' : 'from' };
      q.from = iso(startOfDay(a));
      q.to = iso(startOfDay(addDays(b, 1)));
    } else if ($('#sym-day').value) {
      q.day = $('#sym-day').value;
    }
    return q;
  }

  async #loadProfile(seq = this.seq) {
    const query = this.#profileQuery();
    this.#fieldErrors(['ticks_per_row', 'va_pct', 'va_method', 'day', 'from', 'to']);
    if (query.missing) {
      this.#fieldError({ param: query.missing, message: 'Pick a date.' });
      return;
    }
    try {
      const profile = await sapi.fetchProfile(this.symbol, query);
      if (seq !== this.seq) return;
      this.profile = profile;
      this.rows = profileRows(profile);
    } catch (err) {
      if (seq !== this.seq) return;
      if (!this.#fieldError(err)) this.#say(`Profile: ${err.message}`, true);
      return;
    }
    this.#renderProfile();
  }

  async #loadDeveloping(seq = this.seq) {
    const { from, to } = this.#span();
    // Daily bars: the developing value area of the last month's sessions.
    const start = this.tf === '1d' ? Math.max(from, to - 30 * DAY) : from;
    try {
      const rows = await sapi.fetchDeveloping(this.symbol, { tf: this.tf, from: iso(start), to: iso(to),
        va_pct: fraction($('#sym-va').value), va_method: $('#sym-method').value });
      if (seq !== this.seq) return;
      this.developing = rows;
    } catch (err) {
      if (seq !== this.seq) return;
      if (!this.#fieldError(err)) this.#say(`Developing profile: ${err.message}`, true);
      return;
    }
    this.#renderDeveloping();
  }

  // ---- live refresh: re-read the newest bars, the profile and what depends on them ----

  #refreshSoon() {
    if (this.refreshTimer) {
      this.refreshAgain = true;
      return;
    }
    this.refreshTimer = setTimeout(async () => {
      try {
        await this.#refresh();
      } finally {
        this.refreshTimer = null;
        if (this.refreshAgain) {
          this.refreshAgain = false;
          this.#refreshSoon();
        }
      }
    }, REFRESH_MS);
  }

  async #refresh() {
    const seq = this.seq;
    if (!this.info) return;
    const last = this.bars[this.bars.length - 1];
    // From the newest bar on: it is the one growing, and new ones follow it.
    const from = last ? last.time : Date.now() / 1000 - HOUR;
    const to = Date.now() / 1000 + HOUR;
    try {
      const [candles, flow] = await Promise.all([
        api.fetchCandles(this.symbol, this.tf, new Date(from * 1000), new Date(to * 1000)),
        sapi.fetchFlow(this.symbol, this.tf, iso(from), iso(to)),
      ]);
      if (seq !== this.seq) return;
      const count = this.bars.length;
      this.bars = mergeByTime(this.bars, candles.map(normalizeBar));
      for (const f of flow.map(normalizeFlow)) this.flow.set(f.time, f);
      const newest = this.bars[this.bars.length - 1];
      if (newest) this.info.last_bar = new Date(newest.time * 1000).toISOString();
      this.#renderBars(false, count);
      this.#message('');
    } catch (err) {
      console.warn('symbol refresh:', err.message);
      return;
    }
    // A new session: the picker learns it, and "latest" moves on to it.
    const session = this.flow.get(this.bars[this.bars.length - 1]?.time)?.session;
    if (session && session !== this.info.last_session) {
      this.info.last_session = session;
      this.info.sessions = [session, ...(this.info.sessions ?? []).filter((s) => s !== session)];
      this.#fillSessions();
    }
    const live = $('#sym-scope').value === 'session' ? !$('#sym-day').value || $('#sym-day').value === session
      : ($('#sym-to').value || '') >= fmtYMD(Date.now() / 1000);
    await Promise.all([live ? this.#loadProfile(seq) : null, this.#refreshDeveloping(seq)]);
    if (this.mode === 'footprint' && this.fp) this.#footprintSoon(0, true);
  }

  async #refreshDeveloping(seq) {
    const last = this.bars[this.bars.length - 1];
    if (!last) return;
    try {
      const rows = await sapi.fetchDeveloping(this.symbol, { tf: this.tf, from: iso(last.time), to: iso(last.time + 1),
        va_pct: fraction($('#sym-va').value), va_method: $('#sym-method').value });
      if (seq !== this.seq) return;
      const sessions = new Set(rows.map((r) => r.session));
      this.developing = [...this.developing.filter((r) => !sessions.has(r.session)), ...rows];
      this.#renderDeveloping();
    } catch (err) {
      console.warn('developing:', err.message);
    }
  }

  #refreshStatesSoon() {
    clearTimeout(this.statesTimer);
    this.statesTimer = setTimeout(async () => {
      const seq = this.seq;
      const last = this.states[this.states.length - 1];
      const from = last ? last.time : Date.now() / 1000 - HOUR;
      try {
        const { source, states } = await sapi.fetchStates(this.symbol, iso(from), iso(Date.now() / 1000 + HOUR));
        if (seq !== this.seq) return;
        this.states = mergeByTime(this.states, states.map(normalizeState));
        this.stateSource = source;
        this.#renderSide();
        this.dirty = true;
      } catch (err) {
        console.warn('states:', err.message);
      }
    }, 300);
  }

  #refreshTradingSoon() {
    clearTimeout(this.tradingTimer);
    this.tradingTimer = setTimeout(async () => {
      const seq = this.seq;
      const [signals, fills, orders] = await Promise.all([
        api.fetchSignals(this.symbol, 500).catch(() => this.signals),
        api.fetchFills(this.symbol, 500).catch(() => this.fills),
        api.fetchOrders('all', 1000).then((o) => ordersOf(o, this.symbol)).catch(() => this.orders),
      ]);
      if (seq !== this.seq) return;
      Object.assign(this, { signals, fills, orders });
      this.#renderMarkers();
      this.#renderSide();
    }, 300);
  }

  // ---- the footprint of the visible bars ----

  #visibleBars() {
    const range = this.charts?.price.timeScale().getVisibleLogicalRange();
    if (!range || !this.bars.length) return null;
    const i0 = Math.max(0, Math.floor(range.from));
    const i1 = Math.min(this.bars.length - 1, Math.ceil(range.to));
    return i1 >= i0 ? { i0, i1, count: i1 - i0 + 1 } : null;
  }

  #footprintSoon(delay = 250, force = false) {
    clearTimeout(this.fpTimer);
    this.fpTimer = setTimeout(() => this.#loadFootprint(force), delay);
  }

  async #loadFootprint(force) {
    if (this.mode !== 'footprint') return;
    const seen = this.#visibleBars();
    if (!seen) return;
    if (seen.count > FOOTPRINT_BARS) {
      this.#say(`Zoom in to see the footprint: ${seen.count} bars are visible, it is drawn for at most ${FOOTPRINT_BARS}.`);
      this.fp = null;
      this.dirty = true;
      return;
    }
    const from = this.bars[seen.i0].time;
    const to = this.bars[seen.i1].time + this.step;
    const q = { tf: this.tf, from: iso(from), to: iso(to), ticks_per_row: this.#ticksPerRow(),
      ratio: fraction($('#sym-ratio').value), min_volume: $('#sym-minvol').value.trim() };
    const key = JSON.stringify(q);
    if (!force && this.fp?.key === key) return;
    this.#fieldErrors(['ratio', 'min_volume', 'ticks_per_row']);
    const seq = this.seq;
    try {
      const data = await sapi.fetchFootprint(this.symbol, q);
      if (seq !== this.seq || this.mode !== 'footprint') return;
      this.fp = { key, from, to, ticksPerRow: Number(data.ticks_per_row) || 1, bars: footprintBars(data) };
      const cells = [...this.fp.bars.values()].reduce((n, b) => n + b.cells.size, 0);
      Object.assign(this.el.chart.dataset, { footprintBars: String(this.fp.bars.size), footprintCells: String(cells) });
      this.#say('');
      this.dirty = true;
    } catch (err) {
      if (seq !== this.seq) return;
      if (!this.#fieldError(err)) this.#say(`Footprint: ${err.message}`, true);
    }
  }

  // ---- charts ----

  #ensureCharts() {
    if (this.charts) return;
    const LC = window.LightweightCharts;
    this.el = { chart: $('#sym-chart'), overlay: $('#sym-overlay'), band: $('#sym-band'), delta: $('#sym-delta'),
      tooltip: $('#sym-tooltip'), legend: $('#sym-legend'), deltaLegend: $('#sym-delta-legend') };
    const options = (bottom) => ({
      autoSize: true,
      layout: { background: { type: 'solid', color: '#0f131a' }, textColor: '#8b949e', fontSize: 11,
        attributionLogo: bottom },
      grid: { vertLines: { color: '#161b23' }, horzLines: { color: '#161b23' } },
      crosshair: { mode: LC.CrosshairMode.Normal },
      rightPriceScale: { borderColor: '#222a35' },
      timeScale: { borderColor: '#222a35', visible: bottom, rightOffset: 6, secondsVisible: false },
    });
    const price = createZonedChart(this.el.chart, options(false));
    const delta = createZonedChart(this.el.delta, options(true));
    price.priceScale('right').applyOptions({ scaleMargins: { top: 0.06, bottom: 0.2 } });
    const candles = price.addCandlestickSeries({ upColor: UP, downColor: DOWN, borderVisible: false, wickUpColor: UP,
      wickDownColor: DOWN, priceLineVisible: true });
    const volume = price.addHistogramSeries({ priceScaleId: 'volume', priceFormat: { type: 'volume' },
      lastValueVisible: false, priceLineVisible: false });
    price.priceScale('volume').applyOptions({ scaleMargins: { top: 0.86, bottom: 0 } });
    const deltaBars = delta.addHistogramSeries({ priceScaleId: 'delta', lastValueVisible: false, priceLineVisible: false,
      priceFormat: { type: 'volume' } });
    delta.priceScale('delta').applyOptions({ scaleMargins: { top: 0.1, bottom: 0.1 } });
    const cvd = delta.addLineSeries({ color: '#d2a8ff', lineWidth: 2, priceLineVisible: false, title: 'CVD',
      priceFormat: { type: 'volume' } });
    this.charts = { price, delta, candles, volume, deltaBars, cvd, devSeries: new Map(), priceLines: [] };
    this.#applyTimeFormat();

    // The two charts scroll and zoom together: both hold one point per bar.
    let linking = false;
    const link = (from, to) => from.timeScale().subscribeVisibleLogicalRangeChange((range) => {
      if (linking || !range) return;
      linking = true;
      to.timeScale().setVisibleLogicalRange(range);
      linking = false;
      this.dirty = true;
      if (this.mode === 'footprint') this.#footprintSoon();
    });
    link(price, delta);
    link(delta, price);
    price.subscribeCrosshairMove((p) => this.#hover(p));
    delta.subscribeCrosshairMove((p) => {
      if (!p.sourceEvent) return;
      if (p.time === undefined) price.clearCrosshairPosition();
      else {
        const bar = this.bars[indexAt(this.bars, p.time)];
        if (bar) price.setCrosshairPosition(bar.close, p.time, candles);
      }
      this.#legend(p.time);
    });
    this.el.band.addEventListener('mousemove', (e) => this.#hoverBand(e));
    this.el.band.addEventListener('mouseleave', () => this.#tooltip(null));
  }

  #applyTimeFormat() {
    const daily = this.tf === '1d';
    for (const chart of [this.charts.price, this.charts.delta]) {
      chart.applyOptions({
        localization: { timeFormatter: (t) => (daily ? fmtDate(t) : fmtDateTime(t)) },
        timeScale: { tickMarkFormatter: (t, type) => fmtTick(t, type), timeVisible: !daily },
      });
    }
  }

  #clearCharts() {
    if (!this.charts) return;
    for (const s of [this.charts.candles, this.charts.volume, this.charts.deltaBars, this.charts.cvd]) s.setData([]);
    this.charts.candles.setMarkers([]);
    for (const line of this.charts.priceLines) this.charts.candles.removePriceLine(line);
    this.charts.priceLines = [];
    for (const set of this.charts.devSeries.values()) for (const s of Object.values(set)) this.charts.price.removeSeries(s);
    this.charts.devSeries.clear();
    this.dirty = true;
  }

  #candleData() {
    return this.bars.map(({ time, open, high, low, close }) => ({ time, open, high, low, close }));
  }

  #volumeData() {
    return this.bars.map((b) => ({ time: b.time, value: b.volume,
      color: (b.buy ?? 0) >= (b.sell ?? 0) ? 'rgba(38,166,154,.45)' : 'rgba(239,83,80,.45)' }));
  }

  // One point per bar, so that both charts share their logical indices; a bar without
  // order flow is whitespace.
  #deltaData() {
    return this.bars.map((b) => {
      const f = this.flow.get(b.time);
      return f?.delta == null ? { time: b.time }
        : { time: b.time, value: f.delta, color: f.delta >= 0 ? 'rgba(38,166,154,.7)' : 'rgba(239,83,80,.7)' };
    });
  }

  #cvdData() {
    return this.bars.map((b) => {
      const f = this.flow.get(b.time);
      return f?.cvd == null ? { time: b.time } : { time: b.time, value: f.cvd };
    });
  }

  /** Draw the bars; `fresh` fits the view (a new symbol or timeframe), otherwise the newest
   *  bars are updated in place (`count` bars were drawn before). */
  #renderBars(fresh, count = 0) {
    const c = this.charts;
    const tickFormat = { type: 'price', precision: tickDecimals(this.tick), minMove: this.tick };
    c.candles.applyOptions({ priceFormat: tickFormat });
    const grew = this.bars.length - count;
    if (fresh || grew < 0 || grew > 1) {
      c.candles.setData(this.#candleData());
      c.volume.setData(this.#volumeData());
      c.deltaBars.setData(this.#deltaData());
      c.cvd.setData(this.#cvdData());
    } else {
      // The last bar (and a new one, if any): updates keep the view where the user left it.
      for (const b of this.bars.slice(-1 - grew)) {
        const f = this.flow.get(b.time);
        c.candles.update({ time: b.time, open: b.open, high: b.high, low: b.low, close: b.close });
        c.volume.update({ time: b.time, value: b.volume,
          color: (b.buy ?? 0) >= (b.sell ?? 0) ? 'rgba(38,166,154,.45)' : 'rgba(239,83,80,.45)' });
        c.deltaBars.update(f?.delta == null ? { time: b.time }
          : { time: b.time, value: f.delta, color: f.delta >= 0 ? 'rgba(38,166,154,.7)' : 'rgba(239,83,80,.7)' });
        c.cvd.update(f?.cvd == null ? { time: b.time } : { time: b.time, value: f.cvd });
      }
      if (grew > 0) this.#renderMarkers();
    }
    if (fresh) {
      const n = this.bars.length;
      const time = c.price.timeScale();
      if (n > 160) time.setVisibleLogicalRange({ from: n - 160, to: n + 6 });
      else time.fitContent();
    }
    const last = this.bars[this.bars.length - 1];
    const lastFlow = last && this.flow.get(last.time);
    // Hooks for tests: what is drawn.
    Object.assign(this.el.chart.dataset, { bars: String(this.bars.length), lastTime: last ? iso(last.time) : '',
      lastClose: last ? String(last.close) : '' });
    Object.assign(this.el.delta.dataset, { cvdLast: lastFlow?.cvd == null ? '' : String(lastFlow.cvd),
      cvdTime: last ? iso(last.time) : '' });
    setText($('#sym-last'), last ? this.price(last.close) : '');
    this.#legend();
    this.dirty = true;
  }

  #renderProfile() {
    const c = this.charts;
    const p = this.profile;
    for (const line of c.priceLines) c.candles.removePriceLine(line);
    c.priceLines = [];
    const va = p?.value_area;
    const lines = [['POC', p?.poc, POC, 0], ['VAH', va?.vah, VA, 2], ['VAL', va?.val, VA, 2]];
    for (const [title, price, color, lineStyle] of lines) {
      if (price == null) continue;
      c.priceLines.push(c.candles.createPriceLine({ price: Number(price), color, lineWidth: 1, lineStyle,
        axisLabelVisible: true, title }));
    }
    Object.assign(this.el.overlay.dataset, { rows: String(this.rows.length), poc: p?.poc ?? '', vah: va?.vah ?? '',
      val: va?.val ?? '', scope: p?.scope ?? '', day: p?.day ?? '' });
    this.#renderSide();
    this.dirty = true;
  }

  #renderDeveloping() {
    const c = this.charts;
    const lines = developingLines(this.developing);
    for (const [session, set] of c.devSeries) {
      if (lines.has(session)) continue;
      for (const s of Object.values(set)) c.price.removeSeries(s);
      c.devSeries.delete(session);
    }
    // The candles set the price scale; these lines are drawn where they fall.
    const style = { lineWidth: 1, lineType: 1, priceLineVisible: false, lastValueVisible: false,
      crosshairMarkerVisible: false, autoscaleInfoProvider: () => null };
    // Only at drawn bars: a point elsewhere (a session's bars before the loaded range) would
    // add a slot to the time scale and shift this chart against the delta pane.
    const drawn = new Set(this.bars.map((b) => b.time));
    for (const set of lines.values()) for (const k of ['poc', 'vah', 'val']) set[k] = set[k].filter((p) => drawn.has(p.time));
    for (const [session, data] of lines) {
      let set = c.devSeries.get(session);
      if (!set) {
        set = { poc: c.price.addLineSeries({ ...style, color: 'rgba(227,179,65,.85)' }),
          vah: c.price.addLineSeries({ ...style, color: 'rgba(88,166,255,.7)' }),
          val: c.price.addLineSeries({ ...style, color: 'rgba(88,166,255,.7)' }) };
        c.devSeries.set(session, set);
      }
      for (const k of ['poc', 'vah', 'val']) set[k].setData(data[k]);
    }
    this.el.chart.dataset.developing = String(this.developing.length);
  }

  #renderMarkers() {
    if (!this.charts) return;
    const { markers, notes } = markerData({ bars: this.bars, step: this.step, signals: this.signals,
      orders: this.orders, fills: this.fills, fmtPrice: (v) => this.price(v) });
    this.notes = notes;
    this.charts.candles.setMarkers(markers);
    this.el.chart.dataset.markers = String(markers.length);
  }

  // ---- the side panel ----

  #renderSide() {
    const p = this.profile;
    const va = p?.value_area;
    const scope = !p ? '' : p.scope === 'session' ? `session ${p.day ?? ''}`
      : `composite ${fmtDateTime(Date.parse(p.from) / 1000)} → ${fmtDateTime(Date.parse(p.to) / 1000)}`;
    setText($('#sym-profile-scope'), scope);
    const kv = (el, items) => el.replaceChildren(...items.map(([k, v, cls]) => {
      const pair = document.createElement('div');
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v;
      if (cls) dd.className = cls;
      dd.dataset.key = k;
      pair.append(dt, dd);
      return pair;
    }));
    kv($('#sym-profile'), p ? [
      ['POC', this.price(p.poc), 'poc'],
      ['VAH', this.price(va?.vah), 'va'],
      ['VAL', this.price(va?.val), 'va'],
      ['Value area', va ? `${fmtVolume(va.volume)} · ${fmtPct(va.pct_of_total * 100).replace('+', '')}` : '—'],
      ['Volume', fmtVolume(p.total_volume)],
      ['Delta', `${p.delta > 0 ? '+' : ''}${fmtVolume(p.delta)}`, p.delta > 0 ? 'up' : p.delta < 0 ? 'down' : ''],
      ['Rows', `${p.levels.length} × ${this.price(p.row_size)}`],
    ] : []);
    const nodes = (el, list) => {
      el.replaceChildren(...(list ?? []).map((v) => {
        const s = document.createElement('span');
        s.textContent = this.price(v);
        return s;
      }));
      if (!list?.length) el.textContent = '—';
    };
    nodes($('#sym-hvns'), p?.hvns);
    nodes($('#sym-lvns'), p?.lvns);

    const s = this.states[this.states.length - 1];
    const badge = $('#sym-state');
    const style = STATE_STYLE[s?.state];
    badge.className = `badge ${s?.state === 'imbalance_up' ? 'up' : s?.state === 'imbalance_down' ? 'down' : s ? 'balance' : 'none'}`;
    badge.textContent = s ? `${style?.label ?? s.state} ${Math.round(s.confidence)}` : '—';
    kv($('#sym-market'), s ? [
      ['State', style?.label ?? s.state],
      ['Confidence', String(Math.round(s.confidence))],
      ['Aggression', `${Math.round(s.aggression)} ${s.direction ?? ''}`],
      ['Bar', fmtDateTime(s.time)],
      ['From', this.stateSource === 'log' ? 'live log' : 'market_state_history'],
    ] : [['State', 'no readings yet']]);
    this.el.band.dataset.states = String(this.states.length);
    this.el.band.dataset.source = this.stateSource ?? '';

    const list = $('#sym-signals');
    const recent = [...this.signals].sort((a, b) => (b.id ?? 0) - (a.id ?? 0)).slice(0, 12);
    list.replaceChildren(...recent.map((sig) => {
      const li = document.createElement('li');
      const head = document.createElement('span');
      head.className = sig.side === 'buy' ? 'up' : 'down';
      head.textContent = `${fmtDateTime(Date.parse(sig.bar ?? sig.time) / 1000)} ${sig.kind} ${sig.side} ${this.price(sig.entry)}`;
      const why = document.createElement('span');
      why.className = 'muted';
      why.textContent = ` ${sig.status} — ${sig.reason ?? ''}`;
      li.append(head, why);
      return li;
    }));
    if (!recent.length) list.innerHTML = '<li class="muted">No signals for this symbol.</li>';
  }

  // ---- drawing the overlay (profile, nodes, footprint) and the state band ----

  // Redraws whenever what the overlay depends on moved: the plot's size, the visible range,
  // the price scale (no event tells of a price-scale drag, so two prices are probed).
  #loop() {
    if (this.looping) return;
    this.looping = true;
    const frame = () => {
      if (!this.shown) {
        this.looping = false;
        return;
      }
      this.#alignScales();
      const sig = this.#signature();
      if (this.dirty || sig !== this.lastSig) {
        this.dirty = false;
        this.lastSig = sig;
        this.#draw();
      }
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  }

  #signature() {
    const c = this.charts;
    const pane = c.price.paneSize();
    const range = c.price.timeScale().getVisibleLogicalRange();
    const ref = this.bars[this.bars.length - 1]?.close ?? 0;
    return [pane.width, pane.height, range?.from, range?.to, c.candles.priceToCoordinate(ref),
      c.candles.priceToCoordinate(ref + 100 * this.tick), this.el.band.clientWidth].join('|');
  }

  // Both price scales as wide as the wider one, so the plots (and the band) line up.
  #alignScales() {
    const c = this.charts;
    const a = c.price.priceScale('right').width();
    const b = c.delta.priceScale('right').width();
    const width = Math.max(a, b, 60);
    if (a !== width || b !== width) {
      for (const chart of [c.price, c.delta]) chart.applyOptions({ rightPriceScale: { minimumWidth: width } });
    }
  }

  #canvas(canvas, width, height) {
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
      canvas.style.width = `${width}px`;
      canvas.style.height = `${height}px`;
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    return ctx;
  }

  // Pixels per bar and the x of a bar index.
  #geometry() {
    const ts = this.charts.price.timeScale();
    const x0 = ts.logicalToCoordinate(0);
    const x1 = ts.logicalToCoordinate(1);
    return { spacing: x0 == null || x1 == null ? 6 : x1 - x0 };
  }

  #draw() {
    const c = this.charts;
    const pane = c.price.paneSize();
    const ctx = this.#canvas(this.el.overlay, pane.width, pane.height);
    if (this.mode === 'footprint') this.#drawFootprint(ctx, pane);
    this.#drawProfile(ctx, pane);
    this.#drawBand();
  }

  #profileWidth(pane) {
    return Math.min(PROFILE_MAX_PX, pane.width * PROFILE_SHARE);
  }

  #drawProfile(ctx, pane) {
    const rows = this.rows;
    if (!rows.length) return;
    const y = (v) => this.charts.candles.priceToCoordinate(v);
    const width = this.#profileWidth(pane);
    const max = Math.max(...rows.map((r) => r.total));
    if (!(max > 0)) return;
    for (const r of rows) {
      const top = y(r.hi);
      const bottom = y(r.lo);
      if (top == null || bottom == null || bottom < 0 || top > pane.height) continue;
      let h = Math.abs(bottom - top);
      const y0 = Math.min(top, bottom) + (h > 3 ? 0.5 : 0);
      h = Math.max(1, h > 3 ? h - 1 : h);
      const w = (r.total / max) * width;
      const alpha = r.inValue ? 0.6 : 0.28;
      let x = pane.width - w;
      for (const [v, rgb] of [[r.buy, '38,166,154'], [r.sell, '239,83,80'], [r.other, '139,148,158']]) {
        const part = (v / r.total) * w;
        if (part <= 0) continue;
        ctx.fillStyle = `rgba(${rgb},${alpha})`;
        ctx.fillRect(x, y0, part, h);
        x += part;
      }
      if (r.poc) {
        ctx.strokeStyle = POC;
        ctx.lineWidth = 1;
        ctx.strokeRect(pane.width - w + 0.5, y0 + 0.5, w - 1, Math.max(1, h - 1));
      }
    }
    // Nodes: a mark at the histogram's edge, labelled where there is room.
    ctx.font = '9px ui-monospace, monospace';
    ctx.textBaseline = 'middle';
    const edge = pane.width - width - 4;
    for (const [list, color, label] of [[this.profile.hvns, 'rgba(227,179,65,.9)', 'HVN'],
      [this.profile.lvns, 'rgba(210,168,255,.9)', 'LVN']]) {
      let lastY = -100;
      for (const price of list ?? []) {
        const py = y(Number(price));
        if (py == null || py < 0 || py > pane.height) continue;
        ctx.strokeStyle = color;
        ctx.beginPath();
        ctx.moveTo(edge - 10, Math.round(py) + 0.5);
        ctx.lineTo(pane.width, Math.round(py) + 0.5);
        ctx.setLineDash(label === 'LVN' ? [2, 3] : [6, 3]);
        ctx.stroke();
        ctx.setLineDash([]);
        if (Math.abs(py - lastY) >= 11) {
          ctx.fillStyle = color;
          ctx.textAlign = 'right';
          ctx.fillText(label, edge - 12, py);
          lastY = py;
        }
      }
    }
  }

  #drawFootprint(ctx, pane) {
    const fp = this.fp;
    if (!fp) return;
    const ts = this.charts.price.timeScale();
    const y = (v) => this.charts.candles.priceToCoordinate(v);
    const { spacing } = this.#geometry();
    const w = Math.max(3, spacing * 0.88);
    const row = this.tick * fp.ticksPerRow;
    ctx.font = '10px ui-monospace, monospace';
    ctx.textBaseline = 'middle';
    for (const bar of fp.bars.values()) {
      const x = ts.timeToCoordinate(bar.time);
      if (x == null || x < -w || x > pane.width + w) continue;
      const left = x - w / 2;
      for (const cell of bar.cells.values()) {
        const top = y(cell.price + row - this.tick / 2);
        const bottom = y(cell.price - this.tick / 2);
        if (top == null || bottom == null || bottom < 0 || top > pane.height) continue;
        const h = Math.max(1, bottom - top - (bottom - top > 4 ? 1 : 0));
        const strength = 0.1 + 0.45 * (bar.maxVolume ? cell.volume / bar.maxVolume : 0);
        ctx.fillStyle = cell.delta >= 0 ? `rgba(38,166,154,${strength})` : `rgba(239,83,80,${strength})`;
        ctx.fillRect(left, top, w, h);
        if (cell.sellImbalance) {
          ctx.fillStyle = cell.sellImbalance.stacked ? 'rgba(255,80,80,.95)' : 'rgba(239,83,80,.6)';
          ctx.fillRect(left, top, Math.max(2, w * (cell.sellImbalance.stacked ? 0.12 : 0.06)), h);
        }
        if (cell.buyImbalance) {
          const bw = Math.max(2, w * (cell.buyImbalance.stacked ? 0.12 : 0.06));
          ctx.fillStyle = cell.buyImbalance.stacked ? 'rgba(60,220,190,.95)' : 'rgba(38,166,154,.6)';
          ctx.fillRect(left + w - bw, top, bw, h);
        }
        if (h >= 10 && w >= 46) {
          const mid = top + h / 2;
          ctx.textAlign = 'right';
          ctx.fillStyle = cell.sellImbalance ? '#ff8a80' : '#c9d1d9';
          ctx.font = `${cell.sellImbalance ? 'bold ' : ''}10px ui-monospace, monospace`;
          ctx.fillText(fmtVolume(cell.bid), x - 3, mid);
          ctx.textAlign = 'left';
          ctx.fillStyle = cell.buyImbalance ? '#7ee2d0' : '#c9d1d9';
          ctx.font = `${cell.buyImbalance ? 'bold ' : ''}10px ui-monospace, monospace`;
          ctx.fillText(fmtVolume(cell.ask), x + 3, mid);
        }
      }
    }
  }

  #drawBand() {
    const band = this.el.band;
    const width = band.clientWidth;
    const height = band.clientHeight;
    const ctx = this.#canvas(band, width, height);
    const pane = this.charts.price.paneSize();
    if (!this.states.length || !this.bars.length) return;
    const { spacing } = this.#geometry();
    const ts = this.charts.price.timeScale();
    for (const s of this.states) {
      const pos = barPosition(this.bars, s.time, this.step);
      if (pos == null) continue;
      const i = Math.floor(pos);
      const xi = ts.timeToCoordinate(this.bars[i].time);
      if (xi == null) continue;
      // The reading's minute within its bar, as a slice of the bar's width.
      const x0 = xi + (pos - i - 0.5) * spacing;
      const x1 = Math.min(pane.width, xi + (Math.min(pos - i + 60 / this.step, 1) - 0.5) * spacing);
      if (x0 > pane.width || x1 < 0) continue;
      ctx.fillStyle = stateFill(s.state, s.confidence);
      ctx.fillRect(x0, 0, Math.max(1, x1 - x0), height);
    }
  }

  // ---- hover ----

  #hover(p) {
    this.#legend(p.time);
    if (p.sourceEvent && p.time !== undefined) {
      const f = this.flow.get(p.time);
      if (f?.cvd != null) this.charts.delta.setCrosshairPosition(f.cvd, p.time, this.charts.cvd);
    } else if (p.sourceEvent) {
      this.charts.delta.clearCrosshairPosition();
    }
    if (!p.point || p.time === undefined) {
      this.#tooltip(null);
      return;
    }
    const price = this.charts.candles.coordinateToPrice(p.point.y);
    const lines = [];
    const pane = this.charts.price.paneSize();
    if (this.mode === 'footprint' && this.fp && price != null) {
      const bar = this.fp.bars.get(p.time);
      const row = this.tick * this.fp.ticksPerRow;
      const cell = bar && [...bar.cells.values()].find((c) => price >= c.price - this.tick / 2
        && price < c.price + row - this.tick / 2);
      if (cell) {
        lines.push({ cls: 'head', text: `${this.price(cell.price)} · bid ${cell.bid.toLocaleString('en-US')} × ask ${cell.ask.toLocaleString('en-US')}` });
        lines.push({ text: `delta ${cell.delta > 0 ? '+' : ''}${cell.delta.toLocaleString('en-US')} · volume ${cell.volume.toLocaleString('en-US')}${cell.trades == null ? '' : ` · ${cell.trades} trades`}` });
        for (const [side, m] of [['buy', cell.buyImbalance], ['sell', cell.sellImbalance]]) {
          if (m) lines.push({ cls: side === 'buy' ? 'up' : 'down', text: `${side} imbalance ${Number.isFinite(m.ratio) ? `${(m.ratio * 100).toFixed(0)}%` : '∞'} vs ${m.opposite}${m.stacked ? ' · stacked' : ''}` });
        }
        this.el.tooltip.dataset.cell = `${p.time}|${cell.price}|${cell.bid}|${cell.ask}`;
      }
    }
    if (!lines.length && price != null && p.point.x >= pane.width - this.#profileWidth(pane)) {
      const r = rowAt(this.rows, price);
      if (r) {
        lines.push({ cls: 'head', text: `${this.price(r.price)}${r.poc ? ' · POC' : ''}${r.inValue ? ' · value area' : ''}` });
        lines.push({ text: `volume ${r.total.toLocaleString('en-US')} · buy ${r.buy.toLocaleString('en-US')} · sell ${r.sell.toLocaleString('en-US')}` });
      }
    }
    for (const n of this.notes.get(p.time) ?? []) {
      lines.push({ cls: n.kind, text: n.text });
      if (n.reason) lines.push({ cls: 'reason', text: n.reason });
    }
    this.#tooltip(lines.length ? { lines, x: p.point.x, y: p.point.y, within: this.el.chart } : null);
  }

  #hoverBand(e) {
    if (!this.bars.length) return;
    const rect = this.el.band.getBoundingClientRect();
    const xPix = e.clientX - rect.left;
    const ts = this.charts.price.timeScale();
    const time = ts.coordinateToTime(xPix);
    const bar = time == null ? undefined : this.bars[indexAt(this.bars, time)];
    if (!bar) return this.#tooltip(null);
    const { spacing } = this.#geometry();
    const frac = (xPix - ts.timeToCoordinate(bar.time)) / spacing + 0.5;
    const t = bar.time + Math.max(0, Math.min(0.999, frac)) * this.step;
    const k = indexAt(this.states, t);
    const s = k >= 0 && t < this.states[k].time + 60 ? this.states[k] : null;
    if (!s) return this.#tooltip(null);
    const lines = [
      { cls: 'head', text: `${STATE_STYLE[s.state]?.label ?? s.state} · confidence ${Math.round(s.confidence)}` },
      { text: `${fmtDateTime(s.time)} · aggression ${Math.round(s.aggression)} ${s.direction ?? ''}` },
    ];
    if (s.reason) lines.push({ cls: 'reason', text: s.reason });
    this.#tooltip({ lines, x: xPix, y: 0, within: this.el.band, above: true });
  }

  #tooltip(t) {
    const el = this.el.tooltip;
    if (!t) {
      el.hidden = true;
      return;
    }
    el.replaceChildren(...t.lines.map(({ cls, text }) => {
      const div = document.createElement('div');
      if (cls) div.className = cls;
      div.textContent = text;
      return div;
    }));
    el.hidden = false;
    const host = el.offsetParent?.getBoundingClientRect() ?? { left: 0, top: 0, width: 0, height: 0 };
    const base = t.within.getBoundingClientRect();
    let left = base.left - host.left + t.x + 14;
    let top = base.top - host.top + t.y + (t.above ? -el.offsetHeight - 6 : 14);
    if (left + el.offsetWidth > host.width - 8) left = base.left - host.left + t.x - el.offsetWidth - 14;
    top = Math.max(4, Math.min(top, host.height - el.offsetHeight - 4));
    el.style.left = `${Math.max(4, left)}px`;
    el.style.top = `${top}px`;
  }

  #legend(time) {
    const i = time === undefined ? this.bars.length - 1 : indexAt(this.bars, time);
    const bar = this.bars[i];
    if (!bar) {
      this.el.legend.replaceChildren();
      this.el.deltaLegend.replaceChildren();
      return;
    }
    const f = this.flow.get(bar.time);
    const tone = bar.close >= bar.open ? 'up' : 'down';
    renderLegend(this.el.legend, [
      ['', this.tf === '1d' ? fmtDate(bar.time) : fmtDateTime(bar.time)],
      ['O', this.price(bar.open)], ['H', this.price(bar.high)], ['L', this.price(bar.low)], ['C', this.price(bar.close)],
      ['V', fmtVolume(bar.volume)],
    ], (k) => (['O', 'H', 'L', 'C'].includes(k) ? tone : ''));
    renderLegend(this.el.deltaLegend, f ? [
      ['Δ', `${f.delta > 0 ? '+' : ''}${fmtVolume(f.delta)}`], ['CVD', `${f.cvd > 0 ? '+' : ''}${fmtVolume(f.cvd)}`],
      ['Buy', `${f.buyPressure?.toFixed(1)}%`], ['Session', f.session ?? ''],
    ] : [['', 'no order flow']], (k) => (k === 'Δ' ? (f.delta >= 0 ? 'up' : 'down') : k === 'CVD'
      ? (f.cvd >= 0 ? 'up' : 'down') : ''));
  }

  // ---- controls ----

  #bindControls() {
    $('#sym-tf').addEventListener('click', (e) => {
      const tf = e.target.closest('button[data-tf]')?.dataset.tf;
      if (tf && tf !== this.tf && this.symbol) {
        this.#setTf(tf, true);
        this.open(this.symbol);
      }
    });
    $('#sym-mode').addEventListener('click', (e) => {
      const mode = e.target.closest('button[data-mode]')?.dataset.mode;
      if (mode && mode !== this.mode) this.#setMode(mode);
    });
    const settings = $('#sym-settings');
    settings.addEventListener('submit', (e) => {
      e.preventDefault();
      this.#applySettings();
    });
    settings.addEventListener('change', (e) => {
      if (e.target.id === 'sym-scope') this.#showScope();
      this.#applySettings();
    });
    this.#showScope();
    this.#markTf();
    this.#markMode();
  }

  #applySettings() {
    if (!this.symbol || !this.info) return;
    this.#say('');
    this.#loadProfile();
    this.#loadDeveloping();
    if (this.mode === 'footprint') this.#footprintSoon(0, true);
  }

  #setTf(tf, writeHash) {
    this.tf = tf;
    localStorage.setItem('tapeflow.symbol.tf', tf);
    this.#markTf();
    if (this.charts) this.#applyTimeFormat();
    this.fp = null;
    if (writeHash && this.symbol) {
      history.replaceState(null, '', `#/symbol/${encodeURIComponent(this.symbol)}/${tf}`);
    }
  }

  #markTf() {
    for (const b of document.querySelectorAll('#sym-tf button')) b.setAttribute('aria-pressed', String(b.dataset.tf === this.tf));
  }

  #setMode(mode) {
    this.mode = mode;
    this.#markMode();
    const c = this.charts;
    document.querySelector('#view-symbol').dataset.mode = mode;
    if (mode === 'footprint') {
      // Candles become outlines around their footprint.
      c?.candles.applyOptions({ upColor: 'rgba(0,0,0,0)', downColor: 'rgba(0,0,0,0)', borderVisible: true,
        borderUpColor: UP, borderDownColor: DOWN });
      const n = this.bars.length;
      if (c && n) c.price.timeScale().setVisibleLogicalRange({ from: Math.max(-0.5, n - 10.5), to: n + 1.5 });
      this.#footprintSoon(0, true);
    } else {
      c?.candles.applyOptions({ upColor: UP, downColor: DOWN, borderVisible: false });
      this.fp = null;
      this.#say('');
    }
    this.dirty = true;
  }

  #markMode() {
    for (const b of document.querySelectorAll('#sym-mode button')) {
      b.setAttribute('aria-pressed', String(b.dataset.mode === this.mode));
    }
  }

  #showScope() {
    const composite = $('#sym-scope').value === 'composite';
    for (const el of document.querySelectorAll('#sym-settings [data-scope]')) {
      el.hidden = el.dataset.scope !== (composite ? 'composite' : 'session');
    }
    if (composite && !$('#sym-from').value) {
      const today = fmtYMD(Date.now() / 1000);
      $('#sym-from').value = addDays(today, -4);
      $('#sym-to').value = today;
    }
  }

  #fillSessions() {
    const select = $('#sym-day');
    const current = select.value;
    const sessions = this.info?.sessions ?? [];
    const options = [['', `Latest${this.info?.last_session ? ` (${this.info.last_session})` : ''}`],
      ...sessions.map((d) => [d, d])];
    select.replaceChildren(...options.map(([value, label]) => {
      const o = document.createElement('option');
      o.value = value;
      o.textContent = label;
      return o;
    }));
    select.value = sessions.includes(current) ? current : '';
  }

  // ---- messages ----

  #message(text) {
    const el = $('#sym-chart-message');
    el.textContent = text;
    el.hidden = !text;
  }

  #say(text, error = false) {
    const el = $('#sym-message');
    el.textContent = text;
    el.classList.toggle('error', error);
  }

  /** Shows a refusal beside the field it names; false when it names none shown here. */
  #fieldError(err) {
    const sel = PARAM_FIELDS[err.param];
    if (!sel) return false;
    const slot = document.querySelector(`#sym-settings [data-error-for="${err.param}"]`);
    if (!slot) return false;
    slot.textContent = err.message;
    slot.hidden = false;
    document.querySelector(sel)?.setAttribute('aria-invalid', 'true');
    return true;
  }

  #fieldErrors(params) {
    for (const p of params) {
      const slot = document.querySelector(`#sym-settings [data-error-for="${p}"]`);
      if (slot) {
        slot.textContent = '';
        slot.hidden = true;
      }
      document.querySelector(PARAM_FIELDS[p])?.removeAttribute('aria-invalid');
    }
  }

  // ---- hooks for tests: what is drawn, and where ----

  /** The price lines drawn: `[{ title, price }]`. */
  priceLines() {
    return (this.charts?.priceLines ?? []).map((l) => ({ title: l.options().title, price: l.options().price }));
  }

  /** Page coordinates of a price at a bar time, for hovering there. */
  pointOf(time, price) {
    const x = this.charts.price.timeScale().timeToCoordinate(time);
    const y = this.charts.candles.priceToCoordinate(price);
    if (x == null || y == null) return null;
    const rect = this.el.chart.getBoundingClientRect();
    return { x: rect.left + x, y: rect.top + y };
  }

  /** The last value the CVD series holds. */
  cvdDrawn() {
    const data = this.charts?.cvd.data() ?? [];
    for (let i = data.length - 1; i >= 0; i--) if (data[i].value !== undefined) return data[i];
    return null;
  }

  /** The footprint cell drawn at (bar time, price), if any. */
  footprintCell(time, price) {
    return this.fp ? cellAt(this.fp.bars, time, price, this.tick) ?? null : null;
  }

  barOf(t) {
    return barOf(this.bars, t, this.step);
  }

  /** The last point of each developing line drawn for `session`. */
  developingDrawn(session) {
    const set = this.charts?.devSeries.get(session);
    if (!set) return null;
    return Object.fromEntries(['poc', 'vah', 'val'].map((k) => [k, set[k].data().at(-1) ?? null]));
  }

  /** The imbalances the footprint highlights: `[{ time, price, side, stacked }]`. */
  footprintImbalances() {
    const out = [];
    for (const bar of this.fp?.bars.values() ?? []) {
      for (const c of bar.cells.values()) {
        if (c.buyImbalance) out.push({ time: c.time, price: c.price, side: 'buy', stacked: c.buyImbalance.stacked });
        if (c.sellImbalance) out.push({ time: c.time, price: c.price, side: 'sell', stacked: c.sellImbalance.stacked });
      }
    }
    return out;
  }
}
