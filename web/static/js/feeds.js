// The feed health page (#/feeds): one row per feeder connection as the feeders report it
// in tapeflow.feed_status (state, last message, lag, rate, reconnects, errors), what the
// database refused from them, and the newest stored trade of each symbol, which tells
// whether data is arriving at all.
import { fmtDateTime, fmtSpan, setText } from './format.js';
import { fetchFeeds } from './symbol-api.js';

const $ = (sel) => document.querySelector(sel);
const POLL_MS = 2000;
// A symbol whose newest trade is older than this is flagged.
const STALE_SECONDS = 300;
const GOOD_STATES = new Set(['connected', 'backfilling']);
const num = (v, digits = 0) => (v == null ? '—' : Number(v).toLocaleString('en-US', { maximumFractionDigits: digits }));

/** The state shown for a connection: a feeder that stopped reporting is not "connected". */
export function shownState(f) {
  if (f.stale && f.state !== 'stopped') return { text: `no report for ${fmtSpan(f.report_age_seconds)}`, cls: 'down' };
  return { text: f.state, cls: GOOD_STATES.has(f.state) ? 'up' : f.state === 'stopped' ? 'status' : 'down' };
}

function cell(tr, field, text, cls) {
  const td = tr.insertCell();
  td.dataset.field = field;
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

export class Feeds {
  constructor() {
    this.shown = false;
    this.data = null;
    setInterval(() => {
      if (this.shown && document.visibilityState === 'visible') this.load();
    }, POLL_MS);
  }

  show() {
    this.shown = true;
    this.load();
  }

  hide() {
    this.shown = false;
  }

  resync() {
    if (this.shown) this.load();
  }

  refreshTimeFormat() {
    if (this.data) this.#render();
  }

  async load() {
    try {
      this.data = await fetchFeeds();
      this.error = null;
    } catch (err) {
      this.error = err.message;
    }
    this.#render();
  }

  #render() {
    const empty = $('#feeds-empty');
    const table = $('#feeds-table');
    if (this.error) {
      empty.textContent = `Could not read the feed status: ${this.error}`;
      empty.hidden = false;
      table.hidden = true;
      return;
    }
    const { feeds, rejects, symbols } = this.data;
    setText($('#feeds-updated'), `read ${fmtDateTime(Date.now() / 1000, true)}`);
    empty.hidden = feeds.length > 0;
    table.hidden = feeds.length === 0;
    empty.textContent = 'No feeder has reported yet. Start one with tapeflow-feed run (or demo); '
      + 'the stored data below shows what has arrived.';
    table.tBodies[0].replaceChildren(...feeds.map((f) => {
      const tr = document.createElement('tr');
      tr.dataset.key = `${f.provider}/${f.connection}`;
      const state = shownState(f);
      cell(tr, 'provider', f.provider);
      cell(tr, 'connection', f.connection);
      const st = cell(tr, 'state', '');
      const badge = document.createElement('span');
      badge.className = `badge ${state.cls}`;
      badge.textContent = state.text;
      st.append(badge);
      cell(tr, 'symbols', num(f.symbols), 'num');
      cell(tr, 'last_message', f.message_age_seconds == null ? 'none yet' : `${fmtSpan(Math.max(0, f.message_age_seconds))} ago`, 'num');
      cell(tr, 'lag_ms', f.lag_ms == null ? '—' : `${num(f.lag_ms, 1)} ms`, 'num');
      cell(tr, 'messages_per_sec', num(f.messages_per_sec, 1), 'num');
      cell(tr, 'messages', num(f.messages), 'num');
      cell(tr, 'reconnects', num(f.reconnects), f.reconnects > 0 ? 'num down' : 'num');
      cell(tr, 'parse_errors', num(f.parse_errors), f.parse_errors > 0 ? 'num down' : 'num');
      const err = f.last_error ? `${f.last_error} (${fmtDateTime(Date.parse(f.last_error_at) / 1000, true)})` : '—';
      cell(tr, 'last_error', err, f.last_error ? 'down' : '');
      return tr;
    }));
    const rj = $('#feeds-rejects');
    rj.textContent = rejects.last_day === 0
      ? 'The database refused no record in the last day.'
      : `${rejects.last_day} record(s) refused in the last day (kept in tapeflow.feed_rejects); newest: `
        + rejects.recent.map((r) => `${r.reason}`).join('; ');
    rj.className = rejects.last_day === 0 ? 'muted' : 'down';
    $('#feeds-symbols').tBodies[0].replaceChildren(...symbols.map((s) => {
      const tr = document.createElement('tr');
      tr.dataset.symbol = s.symbol;
      const age = s.age_seconds == null ? null : Math.max(0, s.age_seconds);
      cell(tr, 'symbol', s.symbol);
      cell(tr, 'provider', s.provider ?? '—');
      cell(tr, 'last_trade', s.last_trade ? fmtDateTime(Date.parse(s.last_trade) / 1000, true) : 'no trades');
      cell(tr, 'age', age == null ? '—' : fmtSpan(age), `num ${age == null || age > STALE_SECONDS ? 'down' : 'up'}`);
      return tr;
    }));
  }
}
