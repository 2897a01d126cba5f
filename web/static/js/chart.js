// Candlestick + volume chart of one symbol, on TradingView lightweight-charts
// (loaded as a classic script: window.LightweightCharts).
import { fillMarker } from './account-data.js';
import { BarSeries, toSec } from './bars.js';
import { fillZoneWeights, fmtDate, fmtDateTime, fmtPrice, fmtTick, fmtVolume, renderLegend } from './format.js';

const UP = '#26a69a';
const DOWN = '#ef5350';
const UP_VOL = 'rgba(38,166,154,.5)';
const DOWN_VOL = 'rgba(239,83,80,.5)';
// Signal statuses after which its entry/stop/target levels are no longer drawn.
const CLOSED = new Set(['closed', 'cancelled', 'canceled', 'rejected', 'expired', 'failed']);

// Volume is coloured by who was aggressive: buyers (buy volume ≥ sell
// volume) or sellers. Without a buy/sell split, by the candle's direction.
const volumeBar = (b) => ({
  time: b.time,
  value: b.volume,
  color: (b.buy != null || b.sell != null ? (b.buy ?? 0) >= (b.sell ?? 0) : b.close >= b.open) ? UP_VOL : DOWN_VOL,
});

/**
 * A lightweight-charts chart whose time axis follows the display zone's calendar: the
 * library's time scale with its tick-mark weights (new year, month, day, hour…) computed in
 * that zone (see fillZoneWeights in format.js), so a "Dec" mark sits on the first bar of
 * December there, not on the bar of midnight UTC.
 */
export function createZonedChart(container, options) {
  const LC = window.LightweightCharts;
  const Time = LC.defaultHorzScaleBehavior();
  class ZonedTime extends Time {
    fillWeightsForPoints(points, startIndex) {
      fillZoneWeights(points, startIndex);
    }
  }
  return LC.createChartEx(container, new ZonedTime(), options);
}

/**
 * Re-weigh a chart's time axis after the display zone changed: weights are computed when
 * points arrive, so the series are emptied and refilled, keeping the visible range.
 * `series` is a list of [series, data].
 */
export function reweighTimeAxis(chart, series) {
  const range = chart.timeScale().getVisibleLogicalRange();
  for (const [s] of series) s.setData([]);
  for (const [s, data] of series) s.setData(data);
  if (range) chart.timeScale().setVisibleLogicalRange(range);
}

export class ChartView {
  constructor(container, legend) {
    this.container = container;
    this.legend = legend;
    this.series = null; // BarSeries
    this.decimals = 2;
    this.priceLines = [];
    const LC = window.LightweightCharts;
    this.chart = createZonedChart(container, {
      autoSize: true,
      layout: { background: { type: 'solid', color: '#0f131a' }, textColor: '#8b949e', fontSize: 11 },
      grid: { vertLines: { color: '#161b23' }, horzLines: { color: '#161b23' } },
      crosshair: { mode: LC.CrosshairMode.Normal },
      rightPriceScale: { borderColor: '#222a35', scaleMargins: { top: 0.08, bottom: 0.26 } },
      timeScale: { borderColor: '#222a35', rightOffset: 4 },
    });
    this.#applyTimeFormat();
    this.candles = this.chart.addCandlestickSeries({
      upColor: UP, downColor: DOWN, borderVisible: false, wickUpColor: UP, wickDownColor: DOWN,
    });
    this.volume = this.chart.addHistogramSeries({
      priceScaleId: 'volume', priceFormat: { type: 'volume' }, lastValueVisible: false, priceLineVisible: false,
    });
    this.chart.priceScale('volume').applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    this.chart.subscribeCrosshairMove((p) => this.#showLegend(p.time));
  }

  /** Show a freshly loaded history. `minutes` are the 1m candles of its
   *  newest bar (unused at 1m), `signals` the symbol's recent signals,
   *  `fills` the executor's recent fills of it. */
  load({ symbol, tf, bars, minutes, signals, fills = [], decimals }) {
    this.symbol = symbol;
    this.tf = tf;
    this.series = new BarSeries(tf, bars);
    if (tf !== '1m') this.series.seed(minutes);
    this.decimals = decimals;
    this.candles.applyOptions({ priceFormat: { type: 'price', precision: decimals, minMove: 10 ** -decimals } });
    this.#setAll();
    this.chart.timeScale().applyOptions({ timeVisible: tf !== '1d', secondsVisible: false });
    // The most recent ~150 bars rather than a whole day squeezed in; a short
    // history at a readable width rather than stretched across the pane.
    const n = this.series.bars.length;
    const time = this.chart.timeScale();
    if (n > 150) time.setVisibleLogicalRange({ from: n - 150, to: n + 4 });
    else if (n > 40) time.fitContent();
    else {
      time.applyOptions({ barSpacing: 14 });
      time.scrollToRealTime();
    }
    this.fills = fills;
    this.setSignals(signals);
  }

  clear() {
    this.series = null;
    this.candles.setData([]);
    this.volume.setData([]);
    this.fills = [];
    this.setSignals([]);
    this.#mark();
    this.#showLegend();
  }

  /** Apply one live 1-minute candle (normalized) of the shown symbol. */
  applyMinute(c) {
    if (!this.series) return;
    const count = this.series.bars.length;
    const change = this.series.apply(c);
    if (!change) return;
    if (change.op === 'update') {
      this.candles.update(change.bar);
      this.volume.update(volumeBar(change.bar));
    } else {
      this.#setAll();
    }
    // A new bar can make a signal's marker placeable.
    if (this.series.bars.length !== count) this.#drawMarkers();
    this.#mark();
    if (!this.hovering) this.#showLegend();
  }

  /** Draw signals as markers, and the levels of the latest open entry. */
  setSignals(signals = []) {
    this.signals = signals;
    this.#drawMarkers();
    this.#clearPriceLines();
    const latest = [...signals].sort((a, b) => toSec(b.time) - toSec(a.time) || b.id - a.id)[0];
    if (latest?.kind !== 'entry' || CLOSED.has(latest.status)) return;
    const levels = [['entry', latest.entry, '#58a6ff', 0], ['stop', latest.stop, DOWN, 2], ['target', latest.target, UP, 2]];
    for (const [title, price, color, lineStyle] of levels) {
      if (price == null) continue;
      this.priceLines.push(this.candles.createPriceLine({ price: Number(price), color, lineStyle, lineWidth: 1, title }));
    }
  }

  /** Draw the executor's fills of the shown symbol as markers (qty@price). */
  setFills(fills = []) {
    this.fills = fills;
    this.#drawMarkers();
  }

  // The bar holding `at` (Unix seconds), if it is drawn: something newer than
  // the last bar appears when its bar does.
  #barTime(at) {
    const bar = this.series.barAt(at);
    return bar && at < bar.time + this.series.step ? bar.time : undefined;
  }

  #drawMarkers() {
    if (!this.series?.bars.length) {
      this.container.dataset.fillMarkers = '0';
      return this.candles.setMarkers([]);
    }
    const signals = (this.signals ?? [])
      .map((s) => ({ time: this.#barTime(toSec(s.bar ?? s.time)), order: [0, s.id ?? 0], s }))
      .filter(({ time }) => time !== undefined)
      .map(({ s, time, order }) => {
        const buy = s.side === 'buy';
        if (s.kind === 'exit') {
          return { order, marker: { time, position: buy ? 'belowBar' : 'aboveBar', shape: 'circle', color: '#d2a8ff',
            text: 'EXIT' } };
        }
        return { order, marker: buy
          ? { time, position: 'belowBar', shape: 'arrowUp', color: UP, text: 'BUY' }
          : { time, position: 'aboveBar', shape: 'arrowDown', color: DOWN, text: 'SELL' } };
      });
    const fills = (this.fills ?? [])
      .map((f) => ({ time: this.#barTime(toSec(f.time)), f }))
      .filter(({ time }) => time !== undefined)
      .map(({ f, time }) => ({ order: [1, toSec(f.time), f.id ?? 0], marker: fillMarker(f, time) }));
    // The chart wants markers in time order; on one bar, signals before fills.
    const byOrder = (a, b) => a.marker.time - b.marker.time
      || a.order.reduce((c, v, i) => c || v - (b.order[i] ?? 0), 0);
    this.candles.setMarkers([...signals, ...fills].sort(byOrder).map((m) => m.marker));
    this.container.dataset.fillMarkers = String(fills.length); // hook for tests
  }

  /** Re-render time labels after the display zone changed. */
  refreshTimeFormat() {
    this.#applyTimeFormat();
    if (this.series) {
      reweighTimeAxis(this.chart, [[this.candles, this.series.bars], [this.volume, this.series.bars.map(volumeBar)]]);
      this.#drawMarkers();
    }
    this.#showLegend();
  }

  #applyTimeFormat() {
    // Fresh closures so the chart redraws its labels with the new zone.
    this.chart.applyOptions({
      localization: { timeFormatter: (t) => (this.tf === '1d' ? fmtDate(t) : fmtDateTime(t)) },
      timeScale: { tickMarkFormatter: (t, type) => fmtTick(t, type) },
    });
  }

  #setAll() {
    this.candles.setData(this.series.bars);
    this.volume.setData(this.series.bars.map(volumeBar));
    this.#mark();
    this.#showLegend();
  }

  #clearPriceLines() {
    for (const line of this.priceLines) this.candles.removePriceLine(line);
    this.priceLines = [];
  }

  // Hooks for tests and debugging: how many bars are drawn, and the last one.
  #mark() {
    const bars = this.series?.bars ?? [];
    this.container.dataset.bars = String(bars.length);
    this.container.dataset.lastBar = bars.length ? new Date(bars[bars.length - 1].time * 1000).toISOString() : '';
  }

  #showLegend(time) {
    this.hovering = time !== undefined;
    const bar = (time !== undefined && this.series?.at(time)) || this.series?.last;
    if (!bar) {
      this.legend.replaceChildren();
      return;
    }
    const p = (v) => fmtPrice(v, this.decimals);
    const delta = bar.buy != null && bar.sell != null ? bar.buy - bar.sell : null;
    const items = [
      ['', this.tf === '1d' ? fmtDate(bar.time) : fmtDateTime(bar.time)],
      ['O', p(bar.open)], ['H', p(bar.high)], ['L', p(bar.low)], ['C', p(bar.close)],
      ['V', fmtVolume(bar.volume)],
      ...(delta == null ? [] : [['Δ', `${delta > 0 ? '+' : ''}${fmtVolume(delta)}`]]),
      ...(bar.trades == null ? [] : [['T', fmtVolume(bar.trades)]]),
    ];
    const tone = bar.close >= bar.open ? 'up' : 'down';
    renderLegend(this.legend, items, (k) => {
      if (!k || k === 'V' || k === 'T') return '';
      return k === 'Δ' ? (delta >= 0 ? 'up' : 'down') : tone;
    });
  }
}
