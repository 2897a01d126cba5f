// Dashboard entry point: routing, selection, and wiring the live stream to
// the watchlist, the chart, the signals log, the backtests and account pages.
import { Account } from './account.js';
import { Arbitrage } from './arbitrage.js';
import * as api from './api.js';
import { Backtests } from './backtests.js';
import { TIMEFRAMES, normalizeCandle } from './bars.js';
import { ChartView } from './chart.js';
import { decimalsFor, fmtClock, getZone, setZone, ZONES } from './format.js';
import { connectLive } from './live.js';
import { SignalLog } from './signals.js';
import { showSession } from './session.js';
import { Watchlist } from './watchlist.js';
import { Feeds } from './feeds.js';
import { Strategies } from './strategies.js';
import { SymbolPage } from './symbol.js';

const $ = (sel) => document.querySelector(sel);
const DAY = 86400e3;
const HOUR = 3600e3;
// The executor's most recent fills of the shown symbol drawn on its chart.
const FILLS_ON_CHART = 500;

const sel = { symbol: null, tf: localStorage.getItem('tapeflow.tf') ?? '5m' };
if (!TIMEFRAMES[sel.tf]) sel.tf = '5m';
setZone(localStorage.getItem('tapeflow.zone') ?? 'ET');

const watchlist = new Watchlist($('#watchlist'), (symbol) => selectSymbol(symbol));
const chart = new ChartView($('#chart'), $('#legend'));
const log = new SignalLog({ table: $('#signals-table'), filter: $('#signals-filter'), empty: $('#signals-empty'),
  count: $('#signals-count') });
const backtests = new Backtests();
const account = new Account();
const symbolPage = new SymbolPage();
const strategies = new Strategies();
const feeds = new Feeds();
const arbitrage = new Arbitrage();

// ---- routing: #/signals, #/backtests[/ID], #/account, or #/SYMBOL[/TF] for the dashboard ----

const PAGES = ['dashboard', 'signals', 'backtests', 'account', 'symbol', 'strategies', 'feeds', 'arbitrage'];
const hashParts = () => location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
// Any first part other than a page's name is a symbol of the dashboard.
const pageOf = (view) => (PAGES.includes(view) ? view : 'dashboard');

function route() {
  const [view, arg] = hashParts();
  const page = pageOf(view);
  for (const p of PAGES) $(`#view-${p}`).hidden = p !== page;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.route === page);
  if (page === 'backtests') backtests.show(arg || null);
  else backtests.hide();
  if (page === 'account') account.show();
  else account.hide();
  // #/symbol/SYM[/TF], #/strategies[/SYM], #/feeds
  if (page === 'symbol' && arg) symbolPage.show(arg, hashParts()[2]);
  else symbolPage.hide();
  if (page === 'strategies') strategies.show(arg || null);
  else strategies.hide();
  if (page === 'feeds') feeds.show();
  else feeds.hide();
  if (page === 'arbitrage') arbitrage.show();
  else arbitrage.hide();
  if (page === 'symbol' && !arg) location.hash = sel.symbol ? `#/symbol/${encodeURIComponent(sel.symbol)}` : '#/';
  if (page !== 'dashboard') return;
  // Before the watchlist is known, loadSymbols picks the hash's symbol up.
  if (view && watchlist.symbols.length) select(view, TIMEFRAMES[arg] ? arg : sel.tf);
  else if (!view && sel.symbol) writeHash();
}

function writeHash() {
  // replaceState: switching symbols should not flood the back button.
  history.replaceState(null, '', `#/${encodeURIComponent(sel.symbol)}/${sel.tf}`);
}

function selectSymbol(symbol) {
  select(symbol, sel.tf);
}

function select(symbol, tf) {
  if (symbol === sel.symbol && tf === sel.tf) return;
  if (!watchlist.symbols.includes(symbol)) return; // e.g. a stale link
  sel.symbol = symbol;
  sel.tf = tf;
  localStorage.setItem('tapeflow.tf', tf);
  localStorage.setItem('tapeflow.symbol', symbol);
  watchlist.select(symbol);
  for (const b of document.querySelectorAll('#tf-buttons button')) {
    b.setAttribute('aria-pressed', String(b.dataset.tf === tf));
  }
  $('#chart-symbol').textContent = symbol;
  $('#chart-name').textContent = watchlist.info(symbol)?.name ?? '';
  $('#chart-details').href = `#/symbol/${encodeURIComponent(symbol)}/${tf}`;
  if (pageOf(hashParts()[0]) === 'dashboard') writeHash();
  loadChart();
}

// ---- data loading ----

let loadSeq = 0;
let pending = null; // live minutes of the selected symbol that arrive while loading

async function loadChart() {
  const seq = ++loadSeq;
  const { symbol, tf } = sel;
  pending = [];
  showMessage('Loading…');
  try {
    const now = Date.now();
    // `to` is a little in the future to tolerate clock skew with the server.
    const to = new Date(now + HOUR);
    const signalsReq = api.fetchSignals(symbol, 200).catch(() => []);
    const fillsReq = api.fetchFills(symbol, FILLS_ON_CHART).catch(() => []);
    let bars = await api.fetchCandles(symbol, tf, new Date(now - (tf === '1d' ? 90 : 1) * DAY), to);
    // After a weekend or a holiday the last day is empty: look further back.
    if (!bars.length && tf !== '1d') bars = await api.fetchCandles(symbol, tf, new Date(now - 7 * DAY), to);
    bars = bars.map(normalizeCandle);
    // The 1m candles of the newest bar let live minutes update it exactly.
    const last = bars[bars.length - 1];
    const minutes = last && tf !== '1m'
      ? (await api.fetchCandles(symbol, '1m', new Date(last.time * 1000), to)).map(normalizeCandle)
      : [];
    const [signals, fills] = await Promise.all([signalsReq, fillsReq]);
    if (seq !== loadSeq) return; // the user moved on meanwhile
    const decimals = Math.max(decimalsFor(bars.slice(-200).map((b) => b.close)),
      decimalsFor([watchlist.info(symbol)?.last].map(Number)));
    chart.load({ symbol, tf, bars, minutes, signals, fills, decimals });
    for (const c of pending) chart.applyMinute(c);
    showMessage(bars.length ? '' : `No ${tf} candles for ${symbol} yet — waiting for live data.`);
  } catch (err) {
    if (seq !== loadSeq) return;
    chart.clear();
    showMessage(`Could not load ${symbol}: ${err.message}`);
  } finally {
    if (seq === loadSeq) pending = null;
  }
}

function showMessage(text) {
  const el = $('#chart-message');
  el.textContent = text;
  el.hidden = !text;
}

async function loadSymbols() {
  const list = await api.fetchSymbols();
  watchlist.setSymbols(list);
  log.setSymbols(list.map((s) => s.symbol));
  backtests.setSymbols(list.map((s) => s.symbol), sel.symbol ?? localStorage.getItem('tapeflow.symbol'));
  $('#watchlist-count').textContent = String(list.length);
  if (!list.length) {
    showMessage('No symbols yet. Start a feeder to add some.');
    return;
  }
  const [hashSymbol, hashTf] = hashParts();
  const wanted = [sel.symbol, hashSymbol, localStorage.getItem('tapeflow.symbol')]
    .find((s) => s && list.some((i) => i.symbol === s)) ?? list[0].symbol;
  if (wanted !== sel.symbol) select(wanted, TIMEFRAMES[hashTf] ? hashTf : sel.tf);
  else $('#chart-name').textContent = watchlist.info(wanted)?.name ?? '';
}

async function loadSignals() {
  let list;
  try {
    list = await api.fetchSignals(null, 200);
  } catch {
    // A server that insists on a symbol: ask for each one.
    const each = await Promise.all(watchlist.symbols.map((s) => api.fetchSignals(s, 50).catch(() => [])));
    list = each.flat();
  }
  log.setAll(list);
}

/** Re-read everything shown: at start, and after the stream reconnects. */
async function resync() {
  const seq = loadSeq;
  try {
    await loadSymbols();
  } catch (err) {
    showMessage(`Could not load symbols: ${err.message}`);
    return;
  }
  // Reload the chart unless selecting a symbol just did.
  if (sel.symbol && seq === loadSeq) loadChart();
  loadSignals().catch((err) => console.warn('signals:', err.message));
}

/** After the stream was down or the tab asleep, when events may have been
 *  lost: the backtests page re-reads what it shows as well. */
function catchUp() {
  resync();
  backtests.resync();
  account.resync();
  symbolPage.resync();
  strategies.resync();
  feeds.resync();
  arbitrage.resync();
}

// ---- live events ----

let liveCount = 0;

function onEvent(name, data) {
  symbolPage.applyEvent(name, data);
  liveCount += 1;
  $('#live-count').textContent = String(liveCount);
  if (name === 'candle') {
    const c = normalizeCandle(data);
    watchlist.applyCandle(data.symbol, c);
    account.applyCandle(data.symbol);
    if (data.symbol === sel.symbol) {
      if (pending) pending.push(c);
      else chart.applyMinute(c);
    }
  } else if (name === 'state') {
    watchlist.applyState(data);
  } else if (name === 'signal') {
    onSignal(data);
  } else if (name === 'backtest') {
    backtests.applyEvent(data);
  } else if (name === 'order') {
    account.applyOrder(data);
    if (data.symbol === sel.symbol) reloadFillsSoon();
  } else if (name === 'risk') {
    account.applyRisk(data);
  } else if (name === 'arbitrage') {
    arbitrage.applyEvent(data);
  }
}

// An order event of the shown symbol may be a fill: re-read its fills for the
// chart's markers, once a burst of events (order, legs, fills) has passed.
let fillsTimer = null;
function reloadFillsSoon() {
  clearTimeout(fillsTimer);
  fillsTimer = setTimeout(async () => {
    const symbol = sel.symbol;
    try {
      const fills = await api.fetchFills(symbol, FILLS_ON_CHART);
      if (chart.symbol === symbol && sel.symbol === symbol) chart.setFills(fills);
    } catch (err) {
      console.warn('fills:', err.message);
    }
  }, 300);
}

/** The event only names the signal; fetch its full row (levels, reason). */
async function onSignal(ev) {
  let signal;
  try {
    signal = (await api.fetchSignals(ev.symbol, 20)).find((s) => s.id === ev.id);
  } catch {
    // fall through to the event's own fields
  }
  signal ??= { ...ev, time: ev.time ?? new Date().toISOString(), status: ev.status ?? 'new' };
  log.add(signal);
  if (signal.symbol === sel.symbol && chart.symbol === sel.symbol) {
    chart.setSignals([...(chart.signals ?? []).filter((s) => s.id !== signal.id), signal]);
  }
}

function onStatus(state) {
  const el = $('#status');
  el.dataset.state = state;
  el.textContent = state;
}

// ---- chrome: timeframe buttons, zone toggle, clock ----

$('#tf-buttons').addEventListener('click', (e) => {
  const tf = e.target.closest('button[data-tf]')?.dataset.tf;
  if (tf && sel.symbol) select(sel.symbol, tf);
});

function showZone() {
  $('#tz-toggle').textContent = getZone();
  $('#tz-label').textContent = getZone() === 'ET' ? `ET (${ZONES.ET})` : 'UTC';
}

$('#tz-toggle').addEventListener('click', () => {
  setZone(getZone() === 'ET' ? 'UTC' : 'ET');
  localStorage.setItem('tapeflow.zone', getZone());
  showZone();
  chart.refreshTimeFormat();
  log.render();
  backtests.refreshTimeFormat();
  account.refreshTimeFormat();
  symbolPage.refreshTimeFormat();
  strategies.refreshTimeFormat();
  feeds.refreshTimeFormat();
  arbitrage.refreshTimeFormat();
  tick();
});

function tick() {
  $('#clock').textContent = `${fmtClock(Date.now() / 1000)} ${getZone()}`;
}

// Returning to a backgrounded tab: browsers may have throttled or dropped
// the stream, so refresh what is shown.
let hiddenSince = 0;
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && hiddenSince && Date.now() - hiddenSince > 60e3) catchUp();
  hiddenSince = document.visibilityState === 'hidden' ? Date.now() : 0;
});

// The snapshot is re-read now and then: live candles cannot tell the volume
// of the minute in progress when it was taken, nor when a new session resets
// the day's volume and change. Live events still drive all updates between.
setInterval(() => {
  if (document.visibilityState === 'visible') loadSymbols().catch(() => {});
}, 60e3);

showZone();
tick();
setInterval(tick, 1000);
window.addEventListener('hashchange', route);
route();
// Connect before the first load, so nothing published meanwhile is missed.
connectLive({ onEvent, onStatus, onResync: catchUp });
resync();
showSession();

// For poking at the state from the browser console.
window.tapeflow = { sel, chart, watchlist, log, backtests, account, symbol: symbolPage, strategies, feeds, arbitrage };
