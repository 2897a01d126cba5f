// The account page (#/account): the broker account's equity, cash, buying
// power and day P&L, open positions marked to the last trade, orders with
// their bracket legs, recent fills and refused signals, as the executor
// records them; the kill switch and "flatten all". Kept current by `order`
// and `risk` events (re-read, debounced) and by candles of held symbols
// (new marks, throttled).
import * as api from './api.js';
import { fmtDecimal, fmtMoney, fmtPriceText, fmtQty, fmtRatioPct, legName, orderPrice, orderRows, rejectionText,
  toneOf } from './account-data.js';
import { parseTime } from './backtest-data.js';
import { fmtDateTime, setText } from './format.js';

const $ = (sel) => document.querySelector(sel);
// Order events come in bursts (an order, its legs, its fills): one re-read after the burst.
const SETTLE_MS = 250;
// Candles of a held symbol arrive several times a second: new marks at most this often.
const MARK_MS = 1000;
const FILLS_SHOWN = 100;
// How long the outcome of a button press stays in the message line.
const NOTICE_MS = 10000;

const PARTS = ['account', 'positions', 'orders', 'fills', 'rejections'];
const MARKS = ['account', 'positions'];
const ORDER_TONES = { filled: 'up', partially_filled: 'info', canceled: 'none', cancelled: 'none', expired: 'none',
  rejected: 'down', replaced: 'none', done_for_day: 'none' };

const when = (iso, seconds = false) => (iso ? fmtDateTime(parseTime(iso), seconds) : '—');

function badge(text, tone) {
  const el = document.createElement('span');
  el.className = `badge ${tone}`;
  el.textContent = text ?? '—';
  return el;
}

/** A table row from cells: strings, or `{ text, cls, node, title }`. */
function row(cells, attrs = {}) {
  const tr = document.createElement('tr');
  for (const [k, v] of Object.entries(attrs)) if (v != null) tr.dataset[k] = String(v);
  for (const [field, cell] of Object.entries(cells)) {
    const td = tr.insertCell();
    td.dataset.field = field;
    const c = typeof cell === 'object' && cell !== null ? cell : { text: cell };
    if (c.node) td.append(c.node);
    else td.textContent = c.text ?? '';
    if (c.cls) td.className = c.cls;
    if (c.title) td.title = c.title;
  }
  return tr;
}

function symbolLink(symbol) {
  const a = document.createElement('a');
  a.href = `#/${encodeURIComponent(symbol)}`;
  a.textContent = symbol;
  return a;
}

const sideBadge = (side) => badge(side, side === 'buy' || side === 'long' ? 'up' : 'down');
const signed = (v) => ({ text: fmtMoney(v, true), cls: `num ${toneOf(v)}` });

export class Account {
  constructor() {
    this.shown = false;
    this.stale = true; // something may have changed while the page was not shown
    this.data = { account: null, positions: null, orders: null, fills: null, rejections: null };
    this.errors = {};
    this.seq = Object.fromEntries(PARTS.map((p) => [p, 0]));
    this.ordersStatus = 'open';
    this.timer = null;
    this.due = new Set(); // parts a pending timer will re-read
    this.lastMarks = 0;
    this.notice = null; // { text, error } of the last action

    $('#kill-switch').addEventListener('click', () => this.#toggleTrading());
    $('#flatten-all').addEventListener('click', () => this.#flatten());
    $('#orders-filter').addEventListener('click', (e) => {
      const status = e.target.closest('button[data-status]')?.dataset.status;
      if (!status || status === this.ordersStatus) return;
      this.ordersStatus = status;
      for (const b of $('#orders-filter').querySelectorAll('button')) {
        b.setAttribute('aria-pressed', String(b.dataset.status === status));
      }
      this.refresh(['orders']);
    });
  }

  // ---- showing ----

  show() {
    this.shown = true;
    if (this.stale) this.refresh();
  }

  hide() {
    this.shown = false;
  }

  /** After the live stream reconnected: events may have been lost. */
  resync() {
    this.stale = true;
    if (this.shown) this.refresh();
  }

  refreshTimeFormat() {
    this.#render();
  }

  // ---- live events ----

  /** An `order` event: an order or a leg changed, maybe filled. */
  applyOrder() {
    this.#soon(PARTS, SETTLE_MS);
  }

  /** A `risk` event: `{ trading_enabled }` changed (here or elsewhere). */
  applyRisk(ev) {
    if (typeof ev?.trading_enabled === 'boolean') {
      this.data.account = { ...(this.data.account ?? {}), trading_enabled: ev.trading_enabled };
      this.#renderSwitch();
    }
    this.#soon(['account'], SETTLE_MS);
  }

  /** A live candle of `symbol`: held positions are marked to the last trade. */
  applyCandle(symbol) {
    if (!this.shown || !this.data.positions?.some((p) => p.symbol === symbol)) return;
    const wait = Math.max(0, this.lastMarks + MARK_MS - Date.now());
    this.#soon(MARKS, wait);
  }

  #soon(parts, wait) {
    if (!this.shown) {
      this.stale = true;
      return;
    }
    for (const p of parts) this.due.add(p);
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      const due = [...this.due];
      this.due.clear();
      this.refresh(due);
    }, wait);
  }

  // ---- loading ----

  /** Re-read `parts` of the page (all by default). */
  async refresh(parts = PARTS) {
    if (parts.length === PARTS.length) this.stale = false;
    if (parts.includes('positions')) this.lastMarks = Date.now();
    const load = {
      account: () => api.fetchAccount(),
      positions: () => api.fetchPositions(),
      orders: () => api.fetchOrders(this.ordersStatus, 200),
      fills: () => api.fetchFills(null, FILLS_SHOWN),
      rejections: () => api.fetchRejections(50),
    };
    await Promise.all(parts.map(async (part) => {
      const seq = ++this.seq[part];
      try {
        const value = await load[part]();
        if (seq !== this.seq[part]) return; // a newer read is under way
        this.data[part] = value;
        delete this.errors[part];
      } catch (err) {
        if (seq !== this.seq[part]) return;
        this.errors[part] = err.message;
      }
    }));
    this.#render();
  }

  // ---- controls ----

  async #toggleTrading() {
    const button = $('#kill-switch');
    const enabled = this.data.account?.trading_enabled;
    if (typeof enabled !== 'boolean' || button.disabled) return;
    button.disabled = true;
    try {
      const { trading_enabled: now } = await api.setTrading(!enabled);
      this.data.account = { ...this.data.account, trading_enabled: now };
      this.#say(now ? 'Trading enabled: new entries are taken again.'
        : 'Kill switch on: new entries are refused and open entry orders cancelled.');
    } catch (err) {
      this.#say(`Could not switch trading ${enabled ? 'off' : 'on'}: ${err.message}`, true);
    } finally {
      button.disabled = false;
    }
    this.#render();
  }

  async #flatten() {
    const n = this.data.positions?.length ?? 0;
    const what = n ? `all ${n} open position${n === 1 ? '' : 's'}` : 'every open position';
    if (!window.confirm(`Flatten all: close ${what} at market?\n\nThe executor cancels their bracket legs and `
      + 'sends a market order for each.')) return;
    const button = $('#flatten-all');
    button.disabled = true;
    try {
      const { count } = await api.flattenAll();
      this.#say(count ? `Flatten all: ${count} exit signal${count === 1 ? '' : 's'} written; the executor `
        + 'closes the positions.' : 'Nothing to flatten: no open position without a pending exit.');
      $('#account-message').dataset.flattened = String(count); // hook for tests
    } catch (err) {
      this.#say(`Could not flatten: ${err.message}`, true);
    } finally {
      button.disabled = false;
    }
    this.#render();
    this.#soon(PARTS, SETTLE_MS);
  }

  /** The outcome of a button press, shown for a while. */
  #say(text, error = false) {
    this.notice = { text, error };
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => {
      this.notice = null;
      this.#renderMessage();
    }, NOTICE_MS);
  }

  // ---- rendering ----

  #render() {
    this.#renderSwitch();
    this.#renderTiles();
    this.#renderMessage();
    this.#renderPositions();
    this.#renderOrders();
    this.#renderFills();
    this.#renderRejections();
  }

  #renderSwitch() {
    const enabled = this.data.account?.trading_enabled;
    const button = $('#kill-switch');
    const known = typeof enabled === 'boolean';
    button.setAttribute('aria-checked', String(enabled !== false));
    button.dataset.enabled = known ? String(enabled) : '';
    button.classList.toggle('off', enabled === false);
    setText(button.querySelector('.label'), !known ? 'Trading …' : enabled ? 'Trading on' : 'Trading off');
  }

  #renderTiles() {
    const a = this.data.account;
    const total = a?.total;
    const accounts = a?.accounts ?? [];
    setText($('#account-broker'), accounts.map((x) => x.broker).join(', '));
    setText($('#account-updated'), total?.updated_at ? `snapshot ${when(total.updated_at, true)}` : '');
    const tile = (id, text, tone = '', sub = '') => {
      const el = $(`#tile-${id}`);
      setText(el, text);
      el.className = `v ${tone}`;
      const subEl = $(`#tile-${id}-sub`);
      if (subEl) setText(subEl, sub);
    };
    const noSnapshot = a && !total ? 'no snapshot yet' : '';
    tile('equity', total ? fmtMoney(total.equity) : '—', '',
      total ? `day start ${fmtMoney(total.start_equity)}` : noSnapshot);
    tile('cash', total ? fmtMoney(total.cash) : '—');
    tile('buying-power', total ? fmtMoney(total.buying_power) : '—');
    tile('day-pnl', total ? fmtMoney(total.day_pnl, true) : '—', toneOf(total?.day_pnl),
      total ? fmtRatioPct(total.day_pnl, total.start_equity) : '');
    const open = a?.open_positions;
    tile('unrealised', a ? fmtMoney(a.unrealised_pnl, true) : '—', toneOf(a?.unrealised_pnl),
      open == null ? '' : `${open} open position${open === 1 ? '' : 's'}`);
    tile('realised', a ? fmtMoney(a.realised_pnl_today, true) : '—', toneOf(a?.realised_pnl_today),
      a ? `today · ${fmtMoney(a.realised_pnl, true)} all time` : '');
  }

  #renderMessage() {
    const el = $('#account-message');
    const errors = Object.entries(this.errors).map(([part, e]) => `${part}: ${e}`);
    const a = this.data.account;
    let text = '';
    let cls = 'acct-message';
    if (errors.length) {
      text = `Could not load ${errors.join('; ')}`;
      cls += ' error';
    } else if (this.notice) {
      text = this.notice.text;
      if (this.notice.error) cls += ' error';
    } else if (a && !a.orders && !a.fills) {
      text = 'No orders yet — the executor has not traded.';
      cls += ' info';
    }
    el.className = cls;
    el.dataset.state = !a ? 'loading' : a.orders || a.fills ? 'traded' : 'empty';
    setText(el, text);
    el.hidden = !text;
  }

  #table(name, list, rows, emptyText) {
    const body = $(`#${name}-table`).tBodies[0];
    body.replaceChildren(...rows);
    const empty = $(`#${name}-empty`);
    empty.hidden = list == null || list.length > 0;
    if (emptyText) setText(empty, emptyText);
    setText($(`#${name}-count`), list?.length ? String(list.length) : '');
  }

  #renderPositions() {
    const list = this.data.positions;
    this.#table('positions', list, (list ?? []).map((p) => row({
      symbol: { node: symbolLink(p.symbol), title: p.strategy },
      side: { node: sideBadge(p.side) },
      quantity: { text: fmtQty(p.quantity), cls: 'num' },
      avg_price: { text: fmtPriceText(p.avg_price), cls: 'num' },
      last_price: { text: fmtPriceText(p.last_price), cls: 'num' },
      unrealised_pnl: signed(p.unrealised_pnl),
      realised_pnl: signed(p.realised_pnl),
      stop: { text: fmtPriceText(p.stop), cls: 'num' },
      target: { text: fmtPriceText(p.target), cls: 'num' },
      opened_at: when(p.opened_at),
    }, { symbol: p.symbol, strategy: p.strategy })));
  }

  #renderOrders() {
    const list = this.data.orders;
    const rows = orderRows(list).map(({ order: o, leg }) => {
      const filled = Number(o.filled_qty) > 0
        ? `${fmtQty(o.filled_qty)} @ ${fmtPriceText(o.filled_avg_price)}` : '—';
      const tr = row({
        created_at: leg ? '' : { text: when(o.created_at), title: when(o.created_at, true) },
        symbol: leg ? '' : { node: symbolLink(o.symbol), title: o.strategy },
        leg: { text: `${leg ? '↳ ' : ''}${legName(o.leg)}`, title: o.purpose },
        side: { node: sideBadge(o.side) },
        qty: { text: fmtQty(o.qty), cls: 'num' },
        price: orderPrice(o),
        filled: { text: filled, cls: 'num' },
        status: { node: badge(o.status?.replace(/_/g, ' '), ORDER_TONES[o.status] ?? 'info'), title: o.error ?? '' },
        client_order_id: { text: o.client_order_id, title: o.broker_order_id ? `broker ${o.broker_order_id}` : '' },
      }, { id: o.id, status: o.status });
      if (leg) tr.className = 'leg';
      return tr;
    });
    const none = this.data.account?.orders === 0 ? 'No orders yet — the executor has not traded.' : null;
    this.#table('orders', list, rows, none ?? (this.ordersStatus === 'open' ? 'No open orders.' : 'No orders.'));
  }

  #renderFills() {
    const list = this.data.fills;
    this.#table('fills', list, (list ?? []).map((f) => row({
      time: when(f.time, true),
      symbol: { node: symbolLink(f.symbol), title: f.strategy },
      side: { node: sideBadge(f.side) },
      qty: { text: fmtQty(f.qty), cls: 'num' },
      price: { text: fmtPriceText(f.price), cls: 'num' },
      fee: { text: fmtDecimal(f.fee, { min: 2, max: 8 }), cls: 'num' },
      realised_pnl: Number(f.realised_pnl) ? signed(f.realised_pnl) : { text: '—', cls: 'num' },
      leg: legName(f.leg),
      order: { text: f.client_order_id ?? String(f.order_id), title: `execution ${f.execution_id}` },
    }, { id: f.id, symbol: f.symbol })));
  }

  #renderRejections() {
    const list = this.data.rejections;
    this.#table('rejections', list, (list ?? []).map((s) => row({
      time: when(s.time, true),
      symbol: { node: symbolLink(s.symbol) },
      kind: { node: badge(s.kind, 'none') },
      side: { node: sideBadge(s.side) },
      entry: { text: fmtPriceText(s.entry), cls: 'num' },
      status: { node: badge(s.status, s.status === 'rejected' ? 'down' : 'none') },
      why: { text: rejectionText(s), title: s.reason ? `signal: ${s.reason}` : '' },
    }, { id: s.id, code: s.reject_code })));
  }
}
