// The arbitrage page (#/arbitrage): the watched Polymarket markets with their YES + NO sums
// (highlighted when buying or selling both pays after fees), the opportunities the database
// keeps from the books (open first), the paper and live trades with their legs, positions by
// market, and the measurement report with a bar chart of the daily paper P&L. Read-only.
// Re-read on every `arbitrage` event: opportunities opened, updated or closed
// (tapeflow_arbitrage), and book writes, trades and settlements (tapeflow_polymarket).
import { toLogin } from './api.js';
import { toneOf } from './account-data.js';
import {
  OPEN_TRADE, fmtAmount, fmtPrice, fmtRate, fmtShares, groupState, hadLegRisk, kindLabel, oppLegText, pnlBars,
  sortOpportunities, sumDecimals, sumState, tradeLegText, yesNo,
} from './arbitrage-data.js';
import { fmtDateTime, setText } from './format.js';

const $ = (sel) => document.querySelector(sel);
// After an event: read once a burst has passed (a book write, a trade and its legs come as
// several announcements within a few milliseconds).
const EVENT_READ_MS = 150;
const SVG = 'http://www.w3.org/2000/svg';

async function get(path) {
  const res = await fetch(path, { headers: { accept: 'application/json' } });
  if (res.status === 401) toLogin();
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new Error(`${path}: ${body.error ?? `HTTP ${res.status}`}`);
  }
  return res.json();
}

const when = (iso) => (iso ? fmtDateTime(Date.parse(iso) / 1000, true) : '—');

/** A cell showing `text`, with the exact value it was made from in data-value. */
function cell(tr, field, text, { cls = '', value, title } = {}) {
  const td = tr.insertCell();
  td.dataset.field = field;
  td.textContent = text;
  if (cls) td.className = cls;
  if (value != null) td.dataset.value = String(value);
  if (title) td.title = title;
  return td;
}

function legsCell(tr, field, lines) {
  const td = cell(tr, field, '', { cls: 'legs' });
  for (const line of lines) {
    const div = document.createElement('div');
    div.textContent = line;
    td.append(div);
  }
  return td;
}

export class Arbitrage {
  constructor() {
    this.shown = false;
    this.data = null;
    this.events = 0;
    this.reads = 0;
    this.timer = null;
  }

  show() {
    this.shown = true;
    this.load('show');
  }

  hide() {
    this.shown = false;
  }

  resync() {
    if (this.shown) this.load('resync');
  }

  refreshTimeFormat() {
    if (this.data) this.#render();
  }

  /** An `arbitrage` event: re-read what is shown (the event only names what changed). */
  applyEvent(data) {
    this.events += 1;
    this.lastEvent = data;
    $('#view-arbitrage').dataset.events = String(this.events);
    if (!this.shown) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load('event'), EVENT_READ_MS);
  }

  async load(reason) {
    const seq = (this.seq = (this.seq ?? 0) + 1);
    try {
      const [markets, opportunities, trades, positions, report] = await Promise.all([
        get('/api/arbitrage/markets'), get('/api/arbitrage/opportunities'), get('/api/arbitrage/trades'),
        get('/api/arbitrage/positions'), get('/api/arbitrage/report')]);
      if (seq !== this.seq) return; // a newer read is under way
      this.data = { markets, opportunities, trades, positions, report };
      this.error = null;
    } catch (err) {
      if (seq !== this.seq) return;
      this.error = err.message;
    }
    this.reads += 1;
    const view = $('#view-arbitrage');
    view.dataset.reads = String(this.reads);
    view.dataset.reason = reason;
    this.#render();
  }

  #render() {
    setText($('#arb-updated'), this.error ? `could not read: ${this.error}` : `read ${fmtDateTime(Date.now() / 1000, true)}`);
    $('#arb-updated').className = this.error ? 'down' : 'muted';
    if (!this.data) return;
    this.#markets();
    this.#opportunities();
    this.#trades();
    this.#positions();
    this.#report();
  }

  #markets() {
    const { markets, groups } = this.data.markets;
    $('#arb-markets-empty').hidden = markets.length > 0;
    $('#arb-markets').tBodies[0].replaceChildren(...markets.map((m) => {
      const tr = document.createElement('tr');
      tr.dataset.condition = m.condition_id;
      const { yes, no } = yesNo(m);
      const state = sumState(m);
      tr.dataset.state = state;
      cell(tr, 'question', m.question, { title: m.condition_id });
      cell(tr, 'end_date', when(m.end_date));
      cell(tr, 'yes_ask', fmtPrice(yes?.best_ask), { cls: 'num', value: yes?.best_ask, title: `${fmtShares(yes?.ask_size)} shares` });
      cell(tr, 'no_ask', fmtPrice(no?.best_ask), { cls: 'num', value: no?.best_ask, title: `${fmtShares(no?.ask_size)} shares` });
      cell(tr, 'ask_sum', fmtPrice(m.ask_sum), { cls: 'num', value: m.ask_sum });
      cell(tr, 'ask_sum_after_fees', fmtPrice(m.ask_sum_after_fees),
        { cls: `num ${state === 'buy' ? 'sum-buy' : state === 'close' ? 'sum-close' : ''}`, value: m.ask_sum_after_fees });
      cell(tr, 'yes_bid', fmtPrice(yes?.best_bid), { cls: 'num', value: yes?.best_bid });
      cell(tr, 'no_bid', fmtPrice(no?.best_bid), { cls: 'num', value: no?.best_bid });
      cell(tr, 'bid_sum', fmtPrice(m.bid_sum), { cls: 'num', value: m.bid_sum });
      cell(tr, 'bid_sum_after_fees', fmtPrice(m.bid_sum_after_fees),
        { cls: `num ${state === 'sell' ? 'sum-sell' : ''}`, value: m.bid_sum_after_fees });
      cell(tr, 'fee_rate', `${fmtRate(m.fee_rate)}`, { cls: 'num', value: m.fee_rate });
      return tr;
    }));
    const gt = $('#arb-groups');
    gt.hidden = groups.length === 0;
    gt.tBodies[0].replaceChildren(...groups.map((g) => {
      const tr = document.createElement('tr');
      tr.dataset.group = g.neg_risk_market_id;
      cell(tr, 'event', g.event_slug ?? g.neg_risk_market_id);
      cell(tr, 'markets', String(g.markets), { cls: 'num' });
      cell(tr, 'markets_with_ask', String(g.markets_with_ask), { cls: 'num' });
      cell(tr, 'yes_ask_sum', fmtPrice(g.yes_ask_sum), { cls: 'num', value: g.yes_ask_sum });
      cell(tr, 'yes_ask_sum_after_fees', fmtPrice(g.yes_ask_sum_after_fees),
        { cls: `num ${groupState(g) === 'buy' ? 'sum-buy' : ''}`, value: g.yes_ask_sum_after_fees,
          title: g.augmented ? 'augmented: more outcomes may be added, not riskless' : '' });
      return tr;
    }));
  }

  #opportunities() {
    const list = sortOpportunities(this.data.opportunities);
    const open = list.filter((o) => o.open).length;
    setText($('#arb-opps-count'), `${open} open, ${list.length - open} closed`);
    $('#arb-opps-empty').hidden = list.length > 0;
    $('#arb-opps').tBodies[0].replaceChildren(...list.map((o) => {
      const tr = document.createElement('tr');
      tr.dataset.id = String(o.id);
      tr.dataset.open = String(o.open);
      if (!o.open) tr.className = 'closed';
      const st = cell(tr, 'status', '');
      const badge = document.createElement('span');
      badge.className = `badge ${o.open ? 'up' : 'status'}`;
      badge.textContent = o.open ? 'open' : 'closed';
      st.append(badge);
      cell(tr, 'market', o.label, { title: o.market_key });
      cell(tr, 'kind', kindLabel(o.kind), { value: o.kind });
      cell(tr, 'size', fmtShares(o.size), { cls: 'num', value: o.size });
      cell(tr, 'edge', fmtAmount(o.edge), { cls: 'num up', value: o.edge });
      cell(tr, 'profit', fmtAmount(o.profit), { cls: `num ${toneOf(o.profit)}`, value: o.profit,
        title: `best seen ${fmtAmount(o.max_profit)}, ${o.updates} update(s)` });
      cell(tr, 'fees', fmtAmount(o.fees), { cls: 'num', value: o.fees });
      legsCell(tr, 'legs', (o.legs ?? []).map(oppLegText));
      cell(tr, 'first_seen', when(o.first_seen), { value: o.first_seen });
      cell(tr, 'last_seen', when(o.last_seen), { value: o.last_seen });
      cell(tr, 'closed_at', o.closed_at ? when(o.closed_at) : '—', { value: o.closed_at });
      return tr;
    }));
  }

  #trades() {
    const list = this.data.trades;
    const paper = list.filter((t) => t.mode === 'paper').length;
    setText($('#arb-trades-count'), `${paper} paper, ${list.length - paper} live`);
    $('#arb-trades-empty').hidden = list.length > 0;
    $('#arb-trades').tBodies[0].replaceChildren(...list.map((t) => {
      const tr = document.createElement('tr');
      tr.dataset.id = String(t.id);
      tr.dataset.opportunity = String(t.opportunity_id);
      tr.dataset.mode = t.mode;
      if (hadLegRisk(t)) tr.className = 'leg-risk';
      cell(tr, 'created_at', when(t.created_at));
      const mode = cell(tr, 'mode', '');
      const badge = document.createElement('span');
      badge.className = `badge ${t.mode === 'live' ? 'down' : 'info'}`;
      badge.textContent = t.mode;
      mode.append(badge);
      cell(tr, 'market', t.label, { title: `${kindLabel(t.kind)} · ${t.market_key}` });
      const why = [t.reject_code, t.error].filter(Boolean).join(': ');
      cell(tr, 'status', t.status, { cls: OPEN_TRADE.has(t.status) ? 'warn' : t.status === 'rejected' || t.status === 'failed' ? 'down' : '',
        value: t.status, title: why });
      cell(tr, 'planned_size', fmtShares(t.planned_size), { cls: 'num', value: t.planned_size,
        title: `planned profit ${fmtAmount(t.planned_profit)}` });
      cell(tr, 'matched_size', fmtShares(t.matched_size), { cls: 'num', value: t.matched_size });
      cell(tr, 'notional', fmtAmount(t.notional), { cls: 'num', value: t.notional });
      cell(tr, 'fees', fmtAmount(t.fees), { cls: 'num', value: t.fees });
      cell(tr, 'leg_risk_loss', hadLegRisk(t) ? `−${fmtAmount(t.leg_risk_loss)}` : fmtAmount(t.leg_risk_loss),
        { cls: 'num', value: t.leg_risk_loss, title: hadLegRisk(t) ? 'a one-legged fill was unwound or held' : '' });
      cell(tr, 'pnl', t.pnl == null ? '—' : fmtAmount(t.pnl, true), { cls: `num ${toneOf(t.pnl)}`, value: t.pnl });
      legsCell(tr, 'legs', (t.legs ?? []).map(tradeLegText));
      return tr;
    }));
  }

  #positions() {
    const list = this.data.positions;
    $('#arb-positions-empty').hidden = list.length > 0;
    $('#arb-positions').tBodies[0].replaceChildren(...list.map((p) => {
      const tr = document.createElement('tr');
      tr.dataset.condition = p.condition_id;
      tr.dataset.mode = p.mode;
      cell(tr, 'mode', p.mode);
      cell(tr, 'market', p.question, { title: p.condition_id });
      legsCell(tr, 'holding', p.tokens.filter((t) => Number(t.shares) > 0 || p.open)
        .map((t) => `${t.outcome} ${fmtShares(t.shares)} @ ${fmtPrice(t.avg_price)}`));
      cell(tr, 'cost', fmtAmount(p.cost), { cls: 'num', value: p.cost });
      cell(tr, 'fees', fmtAmount(p.fees), { cls: 'num', value: p.fees });
      cell(tr, 'bid_value', fmtAmount(p.bid_value), { cls: 'num', value: p.bid_value });
      cell(tr, 'realised_pnl', fmtAmount(p.realised_pnl, true), { cls: `num ${toneOf(p.realised_pnl)}`, value: p.realised_pnl });
      const s = p.settlement;
      cell(tr, 'settlement', s ? `${p.winning_outcome ?? s.winning_token_id} won: paid ${fmtAmount(s.payout)}, P&L ${fmtAmount(s.pnl, true)}`
        : p.open ? 'held to resolution' : '—', { value: s?.pnl });
      return tr;
    }));
  }

  #report() {
    const { rows, days } = this.data.report;
    $('#arb-report-empty').hidden = rows.length > 0;
    $('#arb-report').tBodies[0].replaceChildren(...rows.map((r) => {
      const tr = document.createElement('tr');
      tr.dataset.day = r.day;
      tr.dataset.market = r.market_key;
      tr.dataset.kind = r.kind;
      cell(tr, 'day', r.day);
      cell(tr, 'market', r.label, { title: r.market_key });
      cell(tr, 'kind', kindLabel(r.kind));
      cell(tr, 'opportunities', String(r.opportunities), { cls: 'num', value: r.opportunities });
      cell(tr, 'detected_profit', fmtAmount(r.detected_profit), { cls: 'num', value: r.detected_profit });
      cell(tr, 'paper_trades', `${r.paper_filled}/${r.paper_trades}`, { cls: 'num', value: r.paper_trades,
        title: 'trades with a matched set / paper trades' });
      cell(tr, 'fill_rate', fmtRate(r.fill_rate), { cls: 'num', value: r.fill_rate });
      cell(tr, 'paper_pnl', fmtAmount(r.paper_pnl, true), { cls: `num ${toneOf(r.paper_pnl)}`, value: r.paper_pnl });
      cell(tr, 'paper_fees', fmtAmount(r.paper_fees), { cls: 'num', value: r.paper_fees });
      cell(tr, 'leg_risk_losses', fmtAmount(r.leg_risk_losses),
        { cls: `num ${toneOf(r.leg_risk_losses) === 'up' ? 'down' : ''}`, value: r.leg_risk_losses });
      cell(tr, 'live_trades', String(r.live_trades), { cls: 'num', value: r.live_trades });
      cell(tr, 'live_pnl', fmtAmount(r.live_pnl, true), { cls: `num ${toneOf(r.live_pnl)}`, value: r.live_pnl });
      return tr;
    }));
    this.#chart(days);
  }

  /** The daily paper P&L after fees as bars, leg-risk losses as a paler bar under the line. */
  #chart(days) {
    const svg = $('#arb-chart');
    const width = svg.clientWidth || 600;
    const height = svg.clientHeight || 140;
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    const labelH = 14;
    const { zero, bars } = pnlBars(days, { width, height: height - labelH, pad: 6 });
    const el = (name, attrs, text) => {
      const e = document.createElementNS(SVG, name);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
      if (text != null) e.textContent = text;
      return e;
    };
    const nodes = [el('line', { class: 'zero', x1: 0, x2: width, y1: zero, y2: zero })];
    const every = Math.max(1, Math.ceil(bars.length / 10));
    bars.forEach((b, i) => {
      const d = days[i];
      const bar = el('rect', { class: `bar ${b.tone}`, x: b.x, y: b.y, width: b.w, height: Math.max(b.h, 1),
        'data-day': b.day, 'data-value': b.value });
      bar.append(el('title', {}, `${b.day}: paper P&L ${fmtAmount(d.paper_pnl, true)} after fees ${fmtAmount(d.paper_fees)}, `
        + `leg-risk losses ${fmtAmount(d.leg_risk_losses)}, ${d.opportunities} opportunit${Number(d.opportunities) === 1 ? 'y' : 'ies'}`));
      nodes.push(bar);
      if (b.loss) nodes.push(el('rect', { class: 'loss', x: b.x + b.w * 0.3, y: b.loss.y, width: b.w * 0.4, height: Math.max(b.loss.h, 1) }));
      if (i % every === 0) nodes.push(el('text', { x: b.x + b.w / 2, y: height - 3, 'text-anchor': 'middle' }, b.day.slice(5)));
    });
    svg.replaceChildren(...nodes);
    svg.dataset.bars = String(bars.length);
    const total = sumDecimals(days.map((d) => d.paper_pnl));
    setText($('#arb-chart-caption'), days.length
      ? `${days.length} day(s); bars: paper P&L after fees per UTC day (total ${fmtAmount(total, true)}), pale: leg-risk losses`
      : 'No days to draw yet.');
  }
}
