// Equity curve of a backtest over its drawdown, as two stacked charts that
// scroll, zoom and hover together.
import { downsample } from './backtest-data.js';
import { createZonedChart, reweighTimeAxis } from './chart.js';
import { fmtDateTime, fmtPrice, fmtTick, renderLegend } from './format.js';

// Drawing more points than the chart is wide only costs time; min/max
// buckets keep every spike visible.
const MAX_POINTS = 5000;
const LINE = '#58a6ff';
const DOWN = '#ef5350';

export class EquityChart {
  constructor({ equity, drawdown, legend }) {
    this.container = equity;
    this.legend = legend;
    this.points = [];
    this.byTime = new Map();
    const LC = window.LightweightCharts;
    const options = (bottom) => ({
      autoSize: true,
      // One attribution logo is enough (the footer links it as well).
      layout: { background: { type: 'solid', color: '#0f131a' }, textColor: '#8b949e', fontSize: 11,
        attributionLogo: !bottom },
      grid: { vertLines: { color: '#161b23' }, horzLines: { color: '#161b23' } },
      crosshair: { mode: LC.CrosshairMode.Normal },
      rightPriceScale: { borderColor: '#222a35' },
      // Bars may get much thinner than a pixel, so that a whole run fits.
      timeScale: { borderColor: '#222a35', visible: bottom, timeVisible: true, secondsVisible: false,
        minBarSpacing: 0.02 },
    });
    this.top = createZonedChart(equity, options(false));
    this.bottom = createZonedChart(drawdown, options(true));
    this.#applyTimeFormat();
    this.equity = this.top.addLineSeries({ color: LINE, lineWidth: 2, priceLineVisible: false,
      priceFormat: { type: 'custom', formatter: (v) => fmtPrice(v, 2), minMove: 0.01 } });
    this.drawdown = this.bottom.addAreaSeries({
      lineColor: DOWN, lineWidth: 1, priceLineVisible: false,
      // Filled from the line up to zero at the top: the depth under water.
      invertFilledArea: true, topColor: 'rgba(239,83,80,.08)', bottomColor: 'rgba(239,83,80,.45)',
      priceFormat: { type: 'custom', formatter: (v) => `${v.toFixed(2)}%`, minMove: 0.01 },
      // Zero stays the top edge even when the run never sank.
      autoscaleInfoProvider: (base) => {
        const r = base();
        if (r) r.priceRange.maxValue = 0;
        return r;
      },
    });
    this.bottom.priceScale('right').applyOptions({ scaleMargins: { top: 0.04, bottom: 0.08 } });
    this.startLine = null;
    this.aligning = 0;
    this.fitPending = false;

    // Both series hold the same times, so logical ranges correspond.
    const link = (from, to) => from.timeScale().subscribeVisibleLogicalRangeChange((range) => {
      if (range) to.timeScale().setVisibleLogicalRange(range);
      this.#alignScales();
    });
    link(this.top, this.bottom);
    link(this.bottom, this.top);
    this.#linkCrosshair(this.top, this.bottom, this.drawdown, (p) => p.dd);
    this.#linkCrosshair(this.bottom, this.top, this.equity, (p) => p.equity);
  }

  /** Show normalized equity points (see normalizeEquity). */
  load(points) {
    this.points = downsample(points, MAX_POINTS, [(p) => p.equity, (p) => p.dd]);
    this.byTime = new Map(this.points.map((p) => [p.time, p]));
    this.equity.setData(this.points.map((p) => ({ time: p.time, value: p.equity })));
    this.drawdown.setData(this.points.map((p) => ({ time: p.time, value: p.dd })));
    if (this.startLine) this.equity.removePriceLine(this.startLine);
    this.startLine = this.points.length
      ? this.equity.createPriceLine({ price: this.points[0].equity, color: '#7d8590', lineWidth: 1, lineStyle: 2,
        axisLabelVisible: false, title: 'start' })
      : null;
    // Scales of the new data may be narrower: measure afresh, and fit the
    // whole run once both plots have their final width.
    for (const chart of [this.top, this.bottom]) chart.applyOptions({ rightPriceScale: { minimumWidth: 0 } });
    this.fitPending = true;
    this.#alignScales();
    // Hooks for tests: points received and drawn.
    this.container.dataset.points = String(points.length);
    this.container.dataset.drawn = String(this.points.length);
    this.#showLegend();
  }

  // Both price scales as wide as the wider one, so the plots line up. Widths
  // are known once drawn, and change with the labels as the view moves.
  #alignScales() {
    if (this.aligning) return;
    this.aligning = requestAnimationFrame(() => {
      this.aligning = 0;
      const width = Math.max(this.top.priceScale('right').width(), this.bottom.priceScale('right').width());
      for (const chart of [this.top, this.bottom]) chart.applyOptions({ rightPriceScale: { minimumWidth: width } });
      if (this.fitPending) {
        this.fitPending = false;
        for (const chart of [this.top, this.bottom]) chart.timeScale().fitContent();
      }
    });
  }

  clear() {
    this.load([]);
  }

  /** Re-render time labels after the display zone changed. */
  refreshTimeFormat() {
    this.#applyTimeFormat();
    if (this.points.length) {
      reweighTimeAxis(this.top, [[this.equity, this.points.map((p) => ({ time: p.time, value: p.equity }))]]);
      reweighTimeAxis(this.bottom, [[this.drawdown, this.points.map((p) => ({ time: p.time, value: p.dd }))]]);
    }
    this.#showLegend();
  }

  #applyTimeFormat() {
    // Fresh closures so the charts redraw their labels with the new zone.
    for (const chart of [this.top, this.bottom]) {
      chart.applyOptions({
        localization: { timeFormatter: (t) => fmtDateTime(t) },
        timeScale: { tickMarkFormatter: (t, type) => fmtTick(t, type) },
      });
    }
  }

  // Hovering one chart puts the crosshair on the same time in the other.
  #linkCrosshair(from, to, series, value) {
    from.subscribeCrosshairMove((param) => {
      // Moves set from here come back without a source event: not the user's.
      if (!param.sourceEvent) return;
      const p = param.time === undefined ? undefined : this.byTime.get(param.time);
      if (p) to.setCrosshairPosition(value(p), p.time, series);
      else to.clearCrosshairPosition();
      this.#showLegend(p);
    });
  }

  #showLegend(p = this.points[this.points.length - 1]) {
    if (!p) {
      this.legend.replaceChildren();
      return;
    }
    const items = [['', fmtDateTime(p.time)], ['Equity', fmtPrice(p.equity, 2)], ['DD', `${p.dd.toFixed(2)}%`]];
    renderLegend(this.legend, items, (k) => (k === 'DD' && p.dd < 0 ? 'down' : ''));
  }
}
