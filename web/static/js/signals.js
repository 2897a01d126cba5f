// The signals log: recent signals of every symbol, newest first.
import { decimalsFor, fmtDateTime, fmtPrice, setText } from './format.js';
import { toSec } from './bars.js';

const MAX_ROWS = 500;
const COLUMNS = ['time', 'symbol', 'kind', 'side', 'entry', 'stop', 'target', 'rr', 'reason', 'status'];

// Newest first; the id breaks ties between signals of the same instant.
const newestFirst = (a, b) => toSec(b.time) - toSec(a.time) || (b.id ?? 0) - (a.id ?? 0);

export class SignalLog {
  constructor({ table, filter, empty, count }) {
    this.body = table.tBodies[0];
    this.filter = filter;
    this.empty = empty;
    this.count = count;
    this.signals = [];
    filter.addEventListener('change', () => this.render());
  }

  setSymbols(symbols) {
    // Rebuilding the options would close the list under the user's pointer.
    const current = [...this.filter.options].slice(1).map((o) => o.value);
    if (current.join('\n') === symbols.join('\n')) return;
    const keep = this.filter.value;
    const all = new Option('All symbols', '');
    this.filter.replaceChildren(all, ...symbols.map((s) => new Option(s, s)));
    this.filter.value = symbols.includes(keep) ? keep : '';
  }

  setAll(list) {
    this.signals = dedupe(list).sort(newestFirst).slice(0, MAX_ROWS);
    this.render();
  }

  /** A signal that arrived live: prepended and highlighted. */
  add(signal) {
    this.signals = dedupe([signal, ...this.signals]).sort(newestFirst).slice(0, MAX_ROWS);
    this.render(signal.id);
  }

  render(freshId) {
    const symbol = this.filter.value;
    const shown = symbol ? this.signals.filter((s) => s.symbol === symbol) : this.signals;
    this.body.replaceChildren(...shown.map((s) => row(s, s.id === freshId)));
    this.empty.hidden = shown.length > 0;
    setText(this.count, `${shown.length} shown`);
  }
}

// By id, keeping the first (the caller puts the freshest first).
function dedupe(list) {
  const seen = new Set();
  return list.filter((s) => {
    if (s.id == null) return true;
    if (seen.has(s.id)) return false;
    seen.add(s.id);
    return true;
  });
}

function row(s, fresh) {
  const tr = document.createElement('tr');
  if (s.id != null) tr.dataset.id = String(s.id);
  if (fresh) tr.className = 'fresh';
  const d = decimalsFor([s.entry, s.stop, s.target].map(Number));
  const risk = Math.abs(s.entry - s.stop);
  const rr = s.entry != null && s.stop != null && s.target != null && risk > 0
    ? (Math.abs(s.target - s.entry) / risk).toFixed(2) : '—';
  const text = {
    time: s.time ? fmtDateTime(toSec(s.time), true) : '—',
    symbol: s.symbol,
    kind: s.kind ?? '—',
    side: s.side ?? '—',
    entry: fmtPrice(s.entry, d),
    stop: fmtPrice(s.stop, d),
    target: fmtPrice(s.target, d),
    rr,
    reason: s.reason ?? '',
    status: s.status ?? '',
  };
  for (const c of COLUMNS) {
    const td = tr.insertCell();
    td.dataset.field = c;
    if (c === 'symbol') {
      const a = document.createElement('a');
      a.href = `#/${encodeURIComponent(s.symbol)}`;
      a.textContent = s.symbol;
      td.append(a);
    } else if (c === 'side' || c === 'kind' || c === 'status') {
      const badge = document.createElement('span');
      badge.className = `badge ${c === 'side' ? (s.side === 'buy' ? 'up' : 'down') : c === 'kind' ? 'none' : 'status'}`;
      badge.textContent = text[c];
      td.append(badge);
    } else {
      td.textContent = text[c];
    }
    if (['entry', 'stop', 'target', 'rr'].includes(c)) td.classList.add('num');
    if (c === 'reason') td.title = text.reason;
  }
  return tr;
}
