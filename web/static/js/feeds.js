// The feed health page (#/feeds): what the feeders report in
// tapeflow.feed_status (until that table has rows, it says so plainly), and the
// newest stored trade of each symbol, which tells whether data is arriving.
import { fmtDateTime, fmtSpan, setText } from './format.js';
import { fetchFeeds } from './symbol-api.js';

const $ = (sel) => document.querySelector(sel);
const POLL_MS = 5000;
// A symbol whose newest trade is older than this is flagged.
const STALE_SECONDS = 300;
const TIMESTAMP = /^\d{4}-\d\d-\d\d[T ]\d\d:\d\d/;

/** A feed_status value for display: times in the display zone, objects as JSON. */
export function feedValue(v) {
  if (v == null) return '—';
  if (typeof v === 'string' && TIMESTAMP.test(v) && Number.isFinite(Date.parse(v))) {
    return fmtDateTime(Date.parse(v) / 1000, true);
  }
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
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
    const { table: exists, feeds, symbols } = this.data;
    setText($('#feeds-updated'), `read ${fmtDateTime(Date.now() / 1000, true)}`);
    if (!feeds.length) {
      empty.textContent = exists
        ? 'No feed reports yet: tapeflow.feed_status has no rows. The stored data below shows what has arrived.'
        : 'No feed reports yet: the feeders do not write tapeflow.feed_status yet (the table does not exist). '
          + 'The stored data below shows what has arrived.';
      empty.hidden = false;
      table.hidden = true;
    } else {
      empty.hidden = true;
      table.hidden = false;
      const columns = [...new Set(feeds.flatMap((f) => Object.keys(f)))];
      table.tHead.rows[0].replaceChildren(...columns.map((c) => {
        const th = document.createElement('th');
        th.textContent = c.replace(/_/g, ' ');
        return th;
      }));
      table.tBodies[0].replaceChildren(...feeds.map((f) => {
        const tr = document.createElement('tr');
        for (const c of columns) {
          const td = tr.insertCell();
          td.dataset.field = c;
          td.textContent = feedValue(f[c]);
          if (/status|state/i.test(c)) td.className = /ok|up|running|connected/i.test(String(f[c])) ? 'up' : 'down';
        }
        return tr;
      }));
    }
    $('#feeds-symbols').tBodies[0].replaceChildren(...symbols.map((s) => {
      const tr = document.createElement('tr');
      tr.dataset.symbol = s.symbol;
      const age = s.age_seconds == null ? null : Math.max(0, s.age_seconds);
      const cells = [
        ['symbol', s.symbol],
        ['provider', s.provider ?? '—'],
        ['last_trade', s.last_trade ? fmtDateTime(Date.parse(s.last_trade) / 1000, true) : 'no trades'],
        ['age', age == null ? '—' : fmtSpan(age)],
      ];
      for (const [field, text] of cells) {
        const td = tr.insertCell();
        td.dataset.field = field;
        td.textContent = text;
      }
      tr.cells[3].className = `num ${age == null || age > STALE_SECONDS ? 'down' : 'up'}`;
      return tr;
    }));
  }
}
