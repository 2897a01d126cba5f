// The backtests page: a form to start runs, the list of runs kept current by
// live `backtest` events, and one run's results (#/backtests/<id>).
import * as api from './api.js';
import { FINAL, normalizeEquity, normalizeTrade, parseTime, sortTrades, statRows } from './backtest-data.js';
import { EquityChart } from './equity-chart.js';
import { fmtCents, fmtDateTime, fmtPct, fmtSpan, fmtYMD, setText, startOfDay } from './format.js';
import { fmtSymbolPrice, loadInstruments } from './instruments.js';

const $ = (sel) => document.querySelector(sel);
const DAY = 86400;
// Badge colours by status; unknown statuses (queued, …) stay grey.
const TONES = { running: 'info', completed: 'up', failed: 'down', cancelled: 'none' };
// Live events should keep a running run moving; should some be lost, the
// runs are re-read this often while any is still running.
const POLL_MS = 5000;
// Beyond this many trades the table shows only the first of the sort order:
// a longer DOM slows everything down and nobody scrolls that far.
const MAX_TRADE_ROWS = 2000;

const RUN_COLUMNS = ['id', 'name', 'status', 'trades', 'return', 'sharpe', 'drawdown', 'created'];
const TRADE_COLUMNS = [
  ['n', '#', 'num'], ['symbol', 'Symbol'], ['side', 'Side'], ['quantity', 'Qty', 'num'],
  ['entry_time', 'Entry time'], ['entry_price', 'Entry', 'num'], ['exit_time', 'Exit time'],
  ['exit_price', 'Exit', 'num'], ['pnl', 'P&L', 'num'], ['return_pct', 'Return', 'num'], ['fees', 'Fees', 'num'],
  ['exit_reason', 'Exit reason'], ['mae', 'MAE', 'num'], ['mfe', 'MFE', 'num'], ['held', 'Held', 'num'],
];

const when = (iso) => (iso ? fmtDateTime(parseTime(iso)) : '—');
const ratio = (v) => (v == null || !Number.isFinite(Number(v)) ? '—' : Number(v).toFixed(2));
const pctOf = (progress) => `${Math.round(Math.max(0, Math.min(1, Number(progress) || 0)) * 100)}%`;
// "2026-11-24" moved by whole days (calendar arithmetic, zone-free).
const addDays = (ymd, n) => new Date(Date.parse(`${ymd}T00:00:00Z`) + n * DAY * 1000).toISOString().slice(0, 10);

function badge(status) {
  const el = document.createElement('span');
  el.className = `badge ${TONES[status] ?? 'none'}`;
  el.textContent = status ?? '—';
  return el;
}

function progressBar(progress) {
  const bar = document.createElement('span');
  bar.className = 'progress';
  bar.style.setProperty('--p', pctOf(progress));
  bar.title = pctOf(progress);
  return bar;
}

export class Backtests {
  constructor() {
    this.runs = new Map(); // id → run, merged from the list, run reads and events
    this.rows = new Map(); // id → tr
    this.listed = false; // whether the list was read at least once
    this.shown = false;
    this.detail = null; // { id, stats, trades, sort: { key, dir } } while a run is shown
    this.loadSeq = 0;
    this.chart = null; // created when first shown: a hidden chart has no size

    this.form = $('#backtests-form');
    this.table = $('#backtests-table');
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.#submit();
    });
    this.table.tBodies[0].addEventListener('click', (e) => {
      const tr = e.target.closest('tr[data-run-id]');
      if (tr && !e.target.closest('a')) location.hash = `#/backtests/${tr.dataset.runId}`;
    });
    this.table.tBodies[0].addEventListener('keydown', (e) => {
      const tr = e.target.closest('tr[data-run-id]');
      if (tr && e.key === 'Enter') location.hash = `#/backtests/${tr.dataset.runId}`;
    });
    $('#trades-table thead').addEventListener('click', (e) => {
      const key = e.target.closest('th[data-sort]')?.dataset.sort;
      if (!key || !this.detail) return;
      const { sort } = this.detail;
      this.detail.sort = { key, dir: sort.key === key ? -sort.dir : 1 };
      this.#renderTrades();
    });
    this.#buildTradeHead();
    this.#defaultDates();
    setInterval(() => this.#poll(), POLL_MS);
  }

  // ---- routing ----

  /** Show the list (`id` null) or one run. */
  show(id) {
    this.shown = true;
    if (id != null && !/^\d+$/.test(id)) id = null; // a mistyped link: the list
    $('#bt-list').hidden = id != null;
    $('#bt-detail').hidden = id == null;
    if (id == null) {
      this.detail = null;
      this.loadSeq += 1;
      if (!this.listed) this.refreshList();
    } else if (this.detail?.id !== Number(id)) {
      this.#openRun(Number(id));
    }
  }

  hide() {
    this.shown = false;
  }

  /** After the live stream reconnected: events may have been lost. */
  resync() {
    if (this.listed) this.refreshList();
    if (this.detail) this.#openRun(this.detail.id);
  }

  refreshTimeFormat() {
    for (const run of this.runs.values()) this.#renderRow(run);
    if (this.detail) {
      const run = this.runs.get(this.detail.id);
      if (run) this.#renderHeader(run);
      this.#renderStats(this.detail.stats);
      this.#renderTrades();
    }
    this.chart?.refreshTimeFormat();
  }

  // ---- the form ----

  /** The symbols one can backtest; the ones ticked survive a refresh. */
  setSymbols(symbols, preferred) {
    const box = $('#bt-symbols');
    const current = [...box.querySelectorAll('input')].map((i) => i.value);
    if (current.join('\n') === symbols.join('\n')) return;
    const ticked = new Set([...box.querySelectorAll('input:checked')].map((i) => i.value));
    // At first, the symbol the dashboard shows (or the first one) is ticked.
    if (!current.length && symbols.length) ticked.add(symbols.includes(preferred) ? preferred : symbols[0]);
    box.replaceChildren(...symbols.map((symbol) => {
      const label = document.createElement('label');
      label.className = 'check';
      const input = document.createElement('input');
      Object.assign(input, { type: 'checkbox', name: 'symbols', value: symbol, checked: ticked.has(symbol) });
      label.append(input, symbol);
      return label;
    }));
    $('#bt-symbols-empty').hidden = symbols.length > 0;
  }

  // The last three days and today.
  #defaultDates() {
    const today = fmtYMD(Date.now() / 1000);
    $('#bt-from').value = addDays(today, -3);
    $('#bt-to').value = today;
  }

  /** The form as a request body, or an error message for the user. */
  #request() {
    const symbols = [...this.form.querySelectorAll('input[name="symbols"]:checked')].map((i) => i.value);
    if (!symbols.length) return { error: 'Pick at least one symbol.' };
    const fromDay = $('#bt-from').value;
    const toDay = $('#bt-to').value;
    if (!fromDay || !toDay) return { error: 'Pick both dates.' };
    // Whole days in the display zone; `to` is the end of its day, but not
    // later than now: there is no data in the future.
    const from = startOfDay(fromDay);
    const to = Math.min(startOfDay(addDays(toDay, 1)), Math.ceil(Date.now() / 60e3) * 60);
    if (from >= to) return { error: '“From” must be before “To”.' };
    let params;
    try {
      params = JSON.parse($('#bt-params').value.trim() || '{}');
    } catch (err) {
      return { error: `Params are not valid JSON: ${err.message}` };
    }
    if (params === null || typeof params !== 'object' || Array.isArray(params)) {
      return { error: 'Params must be a JSON object, e.g. {}.' };
    }
    const iso = (sec) => api.rfc3339(new Date(sec * 1000));
    return { body: { symbols, from: iso(from), to: iso(to), params } };
  }

  async #submit() {
    const { body, error } = this.#request();
    if (error) {
      this.#say(error, true);
      return;
    }
    const button = $('#backtest-run');
    button.disabled = true;
    this.#say('Starting…');
    delete this.form.dataset.runId;
    try {
      const { id } = await api.createBacktest(body);
      this.form.dataset.runId = String(id); // hook for tests
      this.#say(`Run #${id} started.`);
      // Show it at once; the list fills in its name and dates.
      this.#merge({ id, name: `${body.symbols.join(',')} ${body.from.slice(0, 10)}..${body.to.slice(0, 10)}`,
        symbols: body.symbols, from: body.from, to: body.to, params: body.params, status: 'running', progress: 0,
        created_at: new Date().toISOString() });
      this.rows.get(id)?.classList.add('fresh');
      await this.refreshList();
    } catch (err) {
      this.#say(err.message, true);
    } finally {
      button.disabled = false;
    }
  }

  #say(text, error = false) {
    const el = $('#backtest-message');
    el.textContent = text;
    el.classList.toggle('error', error);
  }

  // ---- the runs ----

  async refreshList() {
    try {
      const list = await api.fetchBacktests();
      this.listed = true;
      for (const run of list) this.#merge(run);
      const empty = $('#backtests-empty');
      empty.textContent = 'No backtests yet. Start one with the form.';
      empty.hidden = this.runs.size > 0;
      setText($('#backtests-count'), this.runs.size ? String(this.runs.size) : '');
    } catch (err) {
      const empty = $('#backtests-empty');
      empty.textContent = `Could not load backtests: ${err.message}`;
      empty.hidden = false;
    }
  }

  /** Re-read one run, e.g. when it finished, for its trades and returns. */
  async #refreshRun(id) {
    try {
      const { run } = await api.fetchBacktest(id);
      this.#merge(run);
    } catch (err) {
      console.warn(`backtest ${id}:`, err.message);
    }
  }

  /** A live `backtest` event: {id, status, progress?, error?}. */
  applyEvent(ev) {
    const id = Number(ev?.id);
    if (!Number.isFinite(id)) return;
    const known = this.runs.has(id);
    const { finished } = this.#merge({ ...ev, id });
    // A run started elsewhere: the list has its name and dates.
    if (!known && this.listed) this.#refreshListSoon();
    if (!finished) return;
    if (this.detail?.id === id) this.#openRun(id); // its results are ready now
    else this.#refreshRun(id);
  }

  #refreshListSoon() {
    clearTimeout(this.listTimer);
    this.listTimer = setTimeout(() => this.refreshList(), 300);
  }

  // The safety net under live events while something is running.
  #poll() {
    if (!this.shown || document.visibilityState !== 'visible') return;
    const running = [...this.runs.values()].some((r) => !FINAL.has(r.status));
    if (running && this.listed) this.refreshList();
    const shown = this.detail && this.runs.get(this.detail.id);
    if (shown && !FINAL.has(shown.status)) this.#refreshRun(shown.id);
  }

  /**
   * Fold a run (whole, or the few fields of an event) into what is known and
   * show it. A finished run never changes again, so an older read that still
   * says "running" (a list fetched just before the run ended) is ignored.
   * Returns whether this update is the one that finished the run.
   */
  #merge(update) {
    const old = this.runs.get(update.id);
    let run;
    if (old && FINAL.has(old.status) && !FINAL.has(update.status)) run = { ...update, ...old };
    else run = { ...old, ...update };
    if (run.status === 'running' && old?.status === 'running') {
      run.progress = Math.max(Number(old.progress) || 0, Number(run.progress) || 0);
    }
    this.runs.set(run.id, run);
    this.#renderRow(run);
    if (this.detail?.id === run.id) this.#renderHeader(run);
    return { run, finished: Boolean(old) && !FINAL.has(old.status) && FINAL.has(run.status) };
  }

  #renderRow(run) {
    let tr = this.rows.get(run.id);
    if (!tr) {
      tr = document.createElement('tr');
      tr.dataset.runId = String(run.id);
      tr.tabIndex = 0;
      for (const c of RUN_COLUMNS) tr.insertCell().dataset.field = c;
      for (const c of ['id', 'trades', 'return', 'sharpe', 'drawdown']) {
        tr.cells[RUN_COLUMNS.indexOf(c)].classList.add('num');
      }
      this.rows.set(run.id, tr);
      // Newest (highest id) first.
      const body = this.table.tBodies[0];
      const next = [...body.rows].find((r) => Number(r.dataset.runId) < run.id);
      body.insertBefore(tr, next ?? null);
      $('#backtests-empty').hidden = true;
    }
    tr.dataset.status = run.status ?? '';
    const cell = Object.fromEntries(RUN_COLUMNS.map((c, i) => [c, tr.cells[i]]));
    setText(cell.id, String(run.id));

    const link = document.createElement('a');
    link.href = `#/backtests/${run.id}`;
    link.textContent = run.name ?? `Run #${run.id}`;
    const name = [link];
    if (run.error) {
      const error = document.createElement('span');
      error.className = 'error';
      error.textContent = run.error;
      error.title = run.error;
      name.push(error);
    }
    cell.name.replaceChildren(...name);
    cell.name.title = run.params ? `params ${JSON.stringify(run.params)}` : '';

    const status = document.createElement('span');
    status.className = 'run-state';
    status.append(badge(run.status));
    if (run.status === 'running') status.append(progressBar(run.progress), pctOf(run.progress));
    cell.status.replaceChildren(status);

    setText(cell.trades, run.trades == null ? '—' : String(run.trades));
    setText(cell.return, fmtPct(run.return_pct));
    cell.return.className = `num ${Number(run.return_pct) > 0 ? 'up' : Number(run.return_pct) < 0 ? 'down' : ''}`;
    setText(cell.sharpe, ratio(run.sharpe));
    setText(cell.drawdown, run.max_drawdown_pct == null ? '—' : `${Number(run.max_drawdown_pct).toFixed(2)}%`);
    cell.drawdown.classList.toggle('down', Number(run.max_drawdown_pct) < 0);
    setText(cell.created, when(run.created_at));
  }

  // ---- one run ----

  async #openRun(id) {
    const seq = ++this.loadSeq;
    const same = this.detail?.id === id;
    this.detail = { id, trades: same ? this.detail.trades : null, stats: same ? this.detail.stats : null,
      sort: same ? this.detail.sort : { key: 'n', dir: 1 } };
    // Created on first use: a chart made in a hidden element has no size.
    this.chart ??= new EquityChart({ equity: $('#equity-chart'), drawdown: $('#drawdown-chart'),
      legend: $('#equity-legend') });
    if (!same) {
      this.#renderHeader(this.runs.get(id) ?? { id, status: null });
      this.chart.clear();
      this.#renderStats(null);
      this.#renderTrades();
    }
    this.#chartMessage('Loading…');
    try {
      const { run, stats } = await api.fetchBacktest(id);
      if (seq !== this.loadSeq) return;
      this.#merge(run);
      this.#renderHeader(this.runs.get(id));
      this.detail.stats = stats;
      this.#renderStats(stats);
      if (!FINAL.has(run.status)) {
        // The results arrive with the event that finishes the run.
        this.#chartMessage('Running — results appear when the run completes.');
        return;
      }
      // Prices are written to their instrument's tick: the instruments come along.
      const [equity, trades] = await Promise.all([api.fetchEquity(id), api.fetchTrades(id),
        loadInstruments().catch(() => null)]);
      if (seq !== this.loadSeq) return;
      const points = normalizeEquity(equity);
      this.chart.load(points);
      this.detail.trades = trades.map(normalizeTrade);
      this.#renderTrades();
      this.#chartMessage(points.length ? '' : run.status === 'completed' ? 'No equity points.'
        : `No results: the run ${run.status === 'failed' ? 'failed' : 'was cancelled'}.`);
    } catch (err) {
      if (seq !== this.loadSeq) return;
      this.#chartMessage(`Could not load backtest ${id}: ${err.message}`);
    }
  }

  #chartMessage(text) {
    const el = $('#equity-message');
    el.textContent = text;
    el.hidden = !text;
  }

  #renderHeader(run) {
    setText($('#run-name'), run.name ?? `Run #${run.id}`);
    const status = $('#run-status');
    status.className = `badge ${TONES[run.status] ?? 'none'}`;
    status.dataset.status = run.status ?? '';
    setText(status, run.status ?? '…');
    const progress = $('#run-progress');
    progress.hidden = run.status !== 'running';
    progress.style.setProperty('--p', pctOf(run.progress));
    setText($('#run-progress-text'), run.status === 'running' ? pctOf(run.progress) : '');

    const took = run.started_at && run.finished_at ? parseTime(run.finished_at) - parseTime(run.started_at) : null;
    const meta = [
      ['Run', `#${run.id}`],
      ['Symbols', run.symbols?.join(', ')],
      ['Range', run.from && run.to ? `${when(run.from)} → ${when(run.to)}` : null],
      ['Created', run.created_at && when(run.created_at)],
      ['Finished', run.finished_at && `${when(run.finished_at)}${took == null ? '' : ` (${fmtSpan(took)})`}`],
    ].filter(([, v]) => v);
    const dl = $('#run-meta');
    dl.replaceChildren(...meta.map(([k, v]) => {
      // A div per pair keeps each label with its value when the line wraps.
      const pair = document.createElement('div');
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v;
      pair.append(dt, dd);
      return pair;
    }));
    const params = $('#run-params');
    params.textContent = JSON.stringify(run.params ?? {});
    params.title = JSON.stringify(run.params ?? {}, null, 2);
    const error = $('#run-error');
    error.textContent = run.error ?? '';
    error.hidden = !run.error;
  }

  #renderStats(stats) {
    const rows = statRows(stats).map(({ key, label, text, tone }) => {
      const tr = document.createElement('tr');
      tr.dataset.key = key;
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = label;
      const td = document.createElement('td');
      td.className = `num ${tone}`;
      td.textContent = text;
      tr.append(th, td);
      return tr;
    });
    $('#stats-table').tBodies[0].replaceChildren(...rows);
    const empty = $('#stats-empty');
    empty.hidden = rows.length > 0;
    const run = this.detail && this.runs.get(this.detail.id);
    empty.textContent = run && !FINAL.has(run.status) ? 'Statistics appear when the run completes.'
      : 'No statistics for this run.';
  }

  #buildTradeHead() {
    const tr = $('#trades-table thead tr');
    tr.replaceChildren(...TRADE_COLUMNS.map(([key, label, cls]) => {
      const th = document.createElement('th');
      th.dataset.sort = key;
      th.textContent = label;
      th.title = 'Sort';
      if (cls) th.className = cls;
      return th;
    }));
  }

  #renderTrades() {
    // `trades` is null until loaded: no "No trades" note meanwhile.
    const { trades, sort = { key: 'n', dir: 1 } } = this.detail ?? {};
    for (const th of $('#trades-table thead tr').cells) {
      th.setAttribute('aria-sort', th.dataset.sort !== sort.key ? 'none' : sort.dir > 0 ? 'ascending' : 'descending');
    }
    const all = trades ?? [];
    const shown = sortTrades(all, sort.key, sort.dir).slice(0, MAX_TRADE_ROWS);
    $('#trades-table').tBodies[0].replaceChildren(...shown.map(tradeRow));
    $('#trades-empty').hidden = trades == null || trades.length > 0;
    const wins = all.filter((t) => t.pnl > 0).length;
    setText($('#trades-count'), !all.length ? ''
      : `${all.length} trades · ${wins} won${all.length > shown.length ? ` · first ${shown.length} shown` : ''}`);
  }
}

function tradeRow(t) {
  const tr = document.createElement('tr');
  const price = (v) => fmtSymbolPrice(t.symbol, v);
  const signed = (v, text) => ({ text, tone: v > 0 ? 'up' : v < 0 ? 'down' : '' });
  const cells = {
    n: { text: String(t.n) },
    symbol: { text: t.symbol ?? '—' },
    side: { text: t.side ?? '—' },
    quantity: { text: t.quantity == null ? '—' : t.quantity.toLocaleString('en-US') },
    entry_time: { text: t.entry_time == null ? '—' : fmtDateTime(t.entry_time, true) },
    entry_price: { text: price(t.entry_price) },
    exit_time: { text: t.exit_time == null ? '—' : fmtDateTime(t.exit_time, true) },
    exit_price: { text: price(t.exit_price) },
    pnl: signed(t.pnl, t.pnl == null ? '—' : `${t.pnl > 0 ? '+' : ''}${fmtCents(t.pnl)}`),
    return_pct: signed(t.return_pct, fmtPct(t.return_pct)),
    fees: { text: fmtCents(t.fees) },
    exit_reason: { text: t.exit_reason?.replace(/_/g, ' ') ?? '—' },
    // Excursions are money: the worst (adverse) and best (favourable) open P&L of the trade.
    mae: { text: fmtCents(t.mae), tone: t.mae > 0 ? 'down' : '' },
    mfe: { text: fmtCents(t.mfe), tone: t.mfe > 0 ? 'up' : '' },
    held: { text: fmtSpan(t.held) },
  };
  for (const [key, , cls] of TRADE_COLUMNS) {
    const td = tr.insertCell();
    td.dataset.field = key;
    const { text, tone } = cells[key];
    if (key === 'side') {
      const b = document.createElement('span');
      b.className = `badge ${t.side === 'long' ? 'up' : t.side === 'short' ? 'down' : 'none'}`;
      b.textContent = text;
      td.append(b);
    } else {
      td.textContent = text;
    }
    td.className = [cls, tone].filter(Boolean).join(' ');
  }
  return tr;
}
