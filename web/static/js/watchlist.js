// The watchlist table: one row per symbol, kept current by live events.
import { decimalsFor, fmtDateTime, fmtPct, fmtPrice, fmtVolume, setText } from './format.js';
import { floorTo, toSec } from './bars.js';

const STATES = {
  balance: ['BAL', 'balance'],
  imbalance_up: ['IMB ▲', 'up'],
  imbalance_down: ['IMB ▼', 'down'],
};
const FIELDS = ['symbol', 'last', 'change', 'volume', 'state', 'aggression'];

export class Watchlist {
  /** `onSelect(symbol)` runs when the user picks a row. */
  constructor(table, onSelect) {
    this.body = table.tBodies[0];
    this.rows = new Map(); // symbol → { tr, cells, info, live }
    this.selected = null;
    this.onSelect = onSelect;
    this.body.addEventListener('click', (e) => {
      const tr = e.target.closest('tr[data-symbol]');
      if (tr) this.onSelect(tr.dataset.symbol);
    });
    // Arrow keys walk the list, as in any trading terminal.
    this.body.addEventListener('keydown', (e) => {
      const tr = e.target.closest('tr[data-symbol]');
      if (!tr) return;
      const next = { ArrowDown: tr.nextElementSibling, ArrowUp: tr.previousElementSibling, Enter: tr }[e.key];
      if (!next) return;
      e.preventDefault();
      next.focus();
      this.onSelect(next.dataset.symbol);
    });
  }

  get symbols() {
    return [...this.rows.keys()];
  }

  info(symbol) {
    return this.rows.get(symbol)?.info;
  }

  /** Show a fresh /api/symbols snapshot: rows are updated in place when the
   *  symbols are unchanged, rebuilt otherwise. */
  setSymbols(list) {
    const same = list.length === this.rows.size && list.every((info) => this.rows.has(info.symbol));
    if (!same) this.#build(list);
    for (const info of list) {
      const row = this.rows.get(info.symbol);
      this.#reset(row, info);
      this.#render(row);
      this.#renderState(row, info);
    }
  }

  #build(list) {
    const focused = document.activeElement?.closest?.('tr[data-symbol]')?.dataset.symbol;
    this.rows.clear();
    this.body.replaceChildren();
    for (const info of list) {
      const tr = document.createElement('tr');
      tr.dataset.symbol = info.symbol;
      tr.tabIndex = 0;
      const cells = {};
      for (const f of FIELDS) {
        const td = tr.insertCell();
        td.dataset.field = f;
        cells[f] = td;
      }
      cells.symbol.innerHTML = '<span class="sym"></span><a class="open" title="Symbol page: profile, order flow, footprint">↗</a><span class="name"></span>';
      cells.symbol.firstChild.textContent = info.symbol;
      cells.symbol.querySelector('a.open').href = `#/symbol/${encodeURIComponent(info.symbol)}`;
      for (const f of ['last', 'change', 'volume', 'aggression']) cells[f].classList.add('num');
      this.rows.set(info.symbol, { tr, cells });
      this.body.append(tr);
    }
    if (this.selected) this.select(this.selected);
    if (focused) this.rows.get(focused)?.tr.focus();
  }

  #reset(row, info) {
    const last = info.last == null ? null : Number(info.last);
    const change = info.change_pct == null ? null : Number(info.change_pct);
    const updated = info.updated ? toSec(info.updated) : Math.floor(Date.now() / 1000);
    row.cells.symbol.lastChild.textContent = info.name ?? '';
    Object.assign(row, {
      info: { ...info },
      decimals: decimalsFor([last]),
      last,
      change,
      // Reference price the change % is measured from, so live prices can
      // move it without another request.
      ref: last != null && change != null ? last / (1 + change / 100) : null,
      volume: info.volume == null ? null : Number(info.volume),
      // Minutes up to the snapshot are already in `volume`; see applyCandle.
      snapshotMinute: floorTo(updated, 60),
      minuteVolumes: new Map(),
      lastMinute: floorTo(updated, 60),
    });
  }

  select(symbol) {
    this.selected = symbol;
    for (const [s, { tr }] of this.rows) {
      tr.classList.toggle('selected', s === symbol);
      tr.setAttribute('aria-selected', String(s === symbol));
    }
  }

  /** A live 1-minute candle (normalized). The server re-sends the whole
   *  minute on each change, so volume grows by the difference from the last
   *  version seen of that minute, never by the full minute again. */
  applyCandle(symbol, c) {
    const row = this.rows.get(symbol);
    if (!row) return;
    const seen = row.minuteVolumes.get(c.time);
    if (seen === undefined) {
      // The first sight of a minute already covered by the snapshot only
      // sets the baseline; it is (at least partly) counted there.
      if (c.time > row.snapshotMinute && row.volume != null) row.volume += c.volume;
    } else if (c.volume > seen && row.volume != null) {
      row.volume += c.volume - seen;
    }
    row.minuteVolumes.set(c.time, Math.max(c.volume, seen ?? 0));
    if (row.minuteVolumes.size > 120) row.minuteVolumes.delete(row.minuteVolumes.keys().next().value);

    // A late update of an earlier minute must not roll the last price back.
    if (c.time >= row.lastMinute && c.close != null) {
      const before = row.last;
      row.lastMinute = c.time;
      row.last = c.close;
      if (row.ref) row.change = (c.close / row.ref - 1) * 100;
      row.decimals = Math.max(row.decimals, decimalsFor([c.close]));
      if (before != null && c.close !== before) flash(row.cells.last, c.close > before);
    }
    row.info.updated = new Date(c.time * 1000).toISOString();
    this.#render(row);
  }

  /** A live market-state event. */
  applyState(s) {
    const row = this.rows.get(s.symbol);
    if (!row) return;
    Object.assign(row.info, {
      state: s.state ?? null,
      aggression: s.aggression ?? row.info.aggression,
      confidence: s.confidence ?? row.info.confidence,
    });
    this.#renderState(row, row.info);
  }

  #render(row) {
    const { cells } = row;
    setText(cells.last, fmtPrice(row.last, row.decimals));
    setText(cells.change, fmtPct(row.change));
    cells.change.classList.toggle('up', row.change > 0);
    cells.change.classList.toggle('down', row.change < 0);
    setText(cells.volume, fmtVolume(row.volume));
    if (row.info.updated) row.tr.title = `Updated ${fmtDateTime(toSec(row.info.updated), true)}`;
  }

  #renderState(row, info) {
    const [label, tone] = STATES[info.state] ?? ['—', 'none'];
    const badge = document.createElement('span');
    badge.className = `badge ${tone}`;
    badge.textContent = label;
    if (info.confidence != null) badge.title = `${info.state} · confidence ${info.confidence}`;
    row.cells.state.replaceChildren(badge);

    const a = info.aggression == null ? null : Math.max(0, Math.min(100, Number(info.aggression)));
    if (a == null) {
      row.cells.aggression.replaceChildren('—');
      return;
    }
    const meter = document.createElement('span');
    meter.className = `meter${a >= 70 ? ' hot' : ''}`;
    meter.style.setProperty('--v', `${a}%`);
    meter.textContent = String(Math.round(a));
    row.cells.aggression.replaceChildren(meter);
  }
}

function flash(el, up) {
  el.animate(
    [{ backgroundColor: up ? 'rgba(38,166,154,.45)' : 'rgba(239,83,80,.45)' }, { backgroundColor: 'transparent' }],
    { duration: 700, easing: 'ease-out' },
  );
}
