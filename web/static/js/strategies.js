// The strategies page (#/strategies[/<SYM>]): the live strategy's configuration
// per symbol — enabled, extended hours, its parameters as fields, the last
// evaluation error — and a backtest of the parameters being edited. The server
// validates parameters with tapeflow.validate_params and names the field it
// refuses; the message is shown beside that field.
import * as api from './api.js';
import { fmtDateTime, fmtYMD, setText, startOfDay } from './format.js';
import { fetchStrategies, saveStrategy } from './symbol-api.js';

const $ = (sel) => document.querySelector(sel);
const DAY = 86400;
// Evaluation errors appear without any event: re-read this often while shown.
const POLL_MS = 10000;
const GROUPS = [['', 'Engine'], ['state', 'Market state'], ['aggression', 'Aggression'], ['strategy', 'Strategy']];
const addDays = (ymd, n) => new Date(Date.parse(`${ymd}T00:00:00Z`) + n * DAY * 1000).toISOString().slice(0, 10);
const keyOf = (c) => `${c.symbol}/${c.strategy}`;
const parseTime = (iso) => Date.parse(iso) / 1000;

/** The value at dotted `key` of a nested object, or undefined. */
export function getPath(obj, key) {
  return key.split('.').reduce((o, k) => (o && typeof o === 'object' ? o[k] : undefined), obj);
}

/** A copy of `obj` with dotted `key` set to `value` (objects on the way created). */
export function setPath(obj, key, value) {
  const out = structuredClone(obj ?? {});
  const parts = key.split('.');
  let o = out;
  for (const k of parts.slice(0, -1)) {
    if (!o[k] || typeof o[k] !== 'object' || Array.isArray(o[k])) o[k] = {};
    o = o[k];
  }
  o[parts[parts.length - 1]] = value;
  return out;
}

/** A copy of `obj` without dotted `key`; groups left empty are dropped. */
export function deletePath(obj, key) {
  const out = structuredClone(obj ?? {});
  const parts = key.split('.');
  const walk = (o, i) => {
    if (!o || typeof o !== 'object') return;
    if (i === parts.length - 1) {
      delete o[parts[i]];
      return;
    }
    walk(o[parts[i]], i + 1);
    if (o[parts[i]] && typeof o[parts[i]] === 'object' && !Object.keys(o[parts[i]]).length) delete o[parts[i]];
  };
  walk(out, 0);
  return out;
}

/** What a field's input holds, as JSON: a number when it reads as one (for number fields),
 *  true/false for booleans, otherwise the text itself for the server to judge; undefined
 *  when empty (the engine's default). */
export function fieldValue(kind, text) {
  const t = String(text ?? '').trim();
  if (t === '') return undefined;
  if (kind === 'boolean') return t === 'true' ? true : t === 'false' ? false : t;
  if (kind === 'integer' || kind === 'number') return Number.isFinite(Number(t)) ? Number(t) : t;
  return t;
}

export class Strategies {
  constructor() {
    this.shown = false;
    this.data = null; // { configs, schema, strategies }
    this.selected = null; // "SYM/strategy"
    this.wanted = null; // a symbol asked for by the URL before the list arrived
    this.loading = null;
    $('#strategies-table').tBodies[0].addEventListener('click', (e) => {
      const button = e.target.closest('button[data-toggle]');
      const tr = e.target.closest('tr[data-key]');
      if (!tr) return;
      if (button) this.#toggle(tr.dataset.key, button.dataset.toggle);
      else this.#select(tr.dataset.key);
    });
    $('#strategy-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.#save();
    });
    $('#st-reset').addEventListener('click', () => this.#renderForm());
    $('#st-bt-run').addEventListener('click', () => this.#backtest());
    const today = fmtYMD(Date.now() / 1000);
    $('#st-bt-from').value = addDays(today, -3);
    $('#st-bt-to').value = today;
    setInterval(() => {
      if (this.shown && document.visibilityState === 'visible') this.load(true);
    }, POLL_MS);
  }

  /** Show the page, with `symbol`'s configuration open when given. */
  show(symbol) {
    this.shown = true;
    if (symbol) this.wanted = symbol;
    this.load();
  }

  hide() {
    this.shown = false;
  }

  resync() {
    if (this.shown) this.load();
  }

  refreshTimeFormat() {
    if (this.data) this.#renderTable();
  }

  /** Read the configurations; `quiet` keeps the open form's edits (a poll). */
  async load(quiet = false) {
    this.loading ??= fetchStrategies().finally(() => {
      this.loading = null;
    });
    try {
      this.data = await this.loading;
    } catch (err) {
      const empty = $('#strategies-empty');
      empty.textContent = `Could not load the strategies: ${err.message}`;
      empty.hidden = false;
      return;
    }
    this.#renderTable();
    const wanted = this.wanted && this.data.configs.find((c) => c.symbol === this.wanted);
    if (wanted) {
      this.wanted = null;
      this.#select(keyOf(wanted));
    } else if (!this.selected && this.data.configs.length) {
      this.#select(keyOf(this.data.configs[0]));
    } else if (!quiet) {
      this.#renderForm();
    } else {
      this.#renderStatus();
    }
  }

  #config(key = this.selected) {
    return this.data?.configs.find((c) => keyOf(c) === key);
  }

  // ---- the list ----

  #renderTable() {
    const { configs } = this.data;
    const body = $('#strategies-table').tBodies[0];
    body.replaceChildren(...configs.map((c) => {
      const tr = document.createElement('tr');
      tr.dataset.key = keyOf(c);
      tr.dataset.symbol = c.symbol;
      tr.tabIndex = 0;
      tr.classList.toggle('selected', keyOf(c) === this.selected);
      const cell = (field, ...nodes) => {
        const td = tr.insertCell();
        td.dataset.field = field;
        td.append(...nodes);
        return td;
      };
      const sym = document.createElement('a');
      sym.href = `#/symbol/${encodeURIComponent(c.symbol)}`;
      sym.textContent = c.symbol;
      sym.title = `${c.name ?? c.symbol}: the symbol page`;
      cell('symbol', sym);
      cell('strategy', c.strategy);
      cell('enabled', this.#switch('enabled', c.enabled, c.enabled ? 'On' : 'Off'));
      cell('extended_hours', this.#switch('extended_hours', c.extended_hours, c.extended_hours ? 'Yes' : 'No'));
      const overrides = [];
      const walk = (o, prefix) => {
        for (const [k, v] of Object.entries(o ?? {})) {
          const key = prefix ? `${prefix}.${k}` : k;
          if (v && typeof v === 'object' && !Array.isArray(v)) walk(v, key);
          else overrides.push(`${key}=${JSON.stringify(v)}`);
        }
      };
      walk(c.params, '');
      const params = cell('params', !c.configured ? 'not configured' : overrides.length ? `${overrides.length} set` : 'defaults');
      params.title = overrides.join('\n');
      params.className = 'muted';
      const error = cell('last_error', c.last_error ?? '');
      error.className = c.last_error ? 'error' : '';
      error.title = c.last_error ? `${c.last_error} (${fmtDateTime(parseTime(c.last_error_at), true)})` : '';
      cell('updated_at', c.updated_at ? fmtDateTime(parseTime(c.updated_at)) : '—');
      return tr;
    }));
    setText($('#strategies-count'), `${configs.filter((c) => c.enabled).length} of ${configs.length} enabled`);
    $('#strategies-empty').hidden = configs.length > 0;
    $('#strategies-empty').textContent = 'No symbols yet.';
  }

  #switch(what, on, label) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = `switch small${on ? '' : ' off'}`;
    b.dataset.toggle = what;
    b.setAttribute('role', 'switch');
    b.setAttribute('aria-checked', String(on));
    b.innerHTML = '<span class="knob"></span><span class="label"></span>';
    b.lastChild.textContent = label;
    return b;
  }

  async #toggle(key, what) {
    const c = this.#config(key);
    if (!c) return;
    const change = { [what]: !c[what] };
    try {
      const saved = await saveStrategy(c.symbol, c.strategy, change);
      Object.assign(c, saved);
      this.#renderTable();
      if (key === this.selected) this.#renderStatus();
    } catch (err) {
      this.#select(key);
      this.#say(`${c.symbol}: ${err.message}`, true);
    }
  }

  #select(key) {
    this.selected = key;
    for (const tr of $('#strategies-table').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.key === key);
    this.#renderForm();
  }

  // ---- the form ----

  #renderForm() {
    const c = this.#config();
    const form = $('#strategy-form');
    form.hidden = !c;
    if (!c) return;
    form.dataset.symbol = c.symbol;
    setText($('#st-title'), `${c.symbol} · ${c.strategy}`);
    this.#say('');
    $('#st-bt-message').replaceChildren();
    const box = $('#st-fields');
    const schemaKeys = new Set(this.data.schema.map((f) => f.key));
    box.replaceChildren(...GROUPS.map(([prefix, title]) => {
      const set = document.createElement('fieldset');
      set.className = 'st-group';
      const legend = document.createElement('legend');
      legend.textContent = title;
      set.append(legend);
      const fields = this.data.schema.filter((f) => (f.key.includes('.') ? f.key.split('.')[0] : '') === prefix);
      for (const f of fields) set.append(this.#field(f, getPath(c.params, f.key)));
      return set;
    }));
    // Keys the form does not know are kept as they are.
    const extra = Object.keys(c.params ?? {}).length ? this.#extras(c.params, schemaKeys) : {};
    const other = $('#st-other');
    other.value = Object.keys(extra).length ? JSON.stringify(extra) : '';
    other.closest('label').hidden = !Object.keys(extra).length;
    this.#renderStatus();
  }

  #extras(params, known) {
    let out = structuredClone(params);
    for (const key of known) out = deletePath(out, key);
    return out;
  }

  #field(f, value) {
    const label = document.createElement('label');
    label.className = 'field st-field';
    label.dataset.key = f.key;
    const name = document.createElement('span');
    name.className = 'st-name';
    name.textContent = f.key.split('.').pop();
    name.title = `${f.help} (${f.key})`;
    const hint = document.createElement('span');
    hint.className = 'muted';
    hint.textContent = ` default ${JSON.stringify(f.default)} · ${f.range}`;
    name.append(hint);
    let input;
    if (f.kind === 'boolean' || f.kind === 'choice') {
      input = document.createElement('select');
      const choices = f.kind === 'boolean' ? ['true', 'false'] : f.choices;
      const options = [['', `default (${f.default})`], ...choices.map((v) => [v, v])];
      input.append(...options.map(([v, text]) => Object.assign(document.createElement('option'), { value: v, textContent: text })));
      input.value = value === undefined ? '' : String(value);
    } else {
      input = document.createElement('input');
      input.type = 'text';
      input.inputMode = 'decimal';
      input.placeholder = String(f.default);
      input.value = value === undefined ? '' : typeof value === 'string' ? value : JSON.stringify(value);
    }
    input.name = f.key;
    input.dataset.kind = f.kind;
    input.title = f.help;
    const error = document.createElement('span');
    error.className = 'field-error';
    error.dataset.errorFor = f.key;
    error.hidden = true;
    label.append(name, input, error);
    return label;
  }

  #renderStatus() {
    const c = this.#config();
    if (!c) return;
    setText($('#st-updated'), c.configured ? `${c.enabled ? 'enabled' : 'disabled'} · saved ${c.updated_at
      ? fmtDateTime(parseTime(c.updated_at)) : '—'}` : 'not configured: saving creates it, disabled');
    const error = $('#st-error');
    error.textContent = c.last_error ? `Last evaluation failed (${fmtDateTime(parseTime(c.last_error_at), true)}): ${c.last_error}` : '';
    error.hidden = !c.last_error;
  }

  /** The parameters the form holds: the known fields that are set, over any other keys. */
  #params() {
    let params = {};
    const other = $('#st-other').value.trim();
    if (other) {
      try {
        params = JSON.parse(other);
      } catch (err) {
        throw Object.assign(new Error(`Other parameters are not valid JSON: ${err.message}`), { field: 'other' });
      }
    }
    for (const input of $('#st-fields').querySelectorAll('[name]')) {
      const v = fieldValue(input.dataset.kind, input.value);
      if (v !== undefined) params = setPath(params, input.name, v);
    }
    return params;
  }

  #clearErrors() {
    for (const el of $('#st-fields').querySelectorAll('.field-error')) {
      el.textContent = '';
      el.hidden = true;
    }
    for (const el of $('#st-fields').querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  }

  /** Shows a refusal beside its field; the message line when it names none of them. */
  #showError(err) {
    const slot = err.field && $('#st-fields').querySelector(`[data-error-for="${CSS.escape(err.field)}"]`);
    if (slot) {
      slot.textContent = err.message;
      slot.hidden = false;
      $('#st-fields').querySelector(`[name="${CSS.escape(err.field)}"]`)?.setAttribute('aria-invalid', 'true');
      this.#say(`Not saved: ${err.field} was refused.`, true);
    } else {
      this.#say(err.message, true);
    }
  }

  async #save() {
    const c = this.#config();
    if (!c) return;
    this.#clearErrors();
    let params;
    try {
      params = this.#params();
    } catch (err) {
      this.#say(err.message, true);
      return;
    }
    const button = $('#st-save');
    button.disabled = true;
    this.#say('Saving…');
    try {
      const saved = await saveStrategy(c.symbol, c.strategy, { params });
      Object.assign(c, saved, { configured: true });
      this.#renderTable();
      this.#renderForm();
      this.#say('Saved: the scheduler uses them from its next cycle.');
    } catch (err) {
      this.#showError(err);
    } finally {
      button.disabled = false;
    }
  }

  async #backtest() {
    const c = this.#config();
    if (!c) return;
    const out = $('#st-bt-message');
    out.classList.remove('error');
    let params;
    try {
      params = this.#params();
    } catch (err) {
      out.textContent = err.message;
      out.classList.add('error');
      return;
    }
    const [a, b] = [$('#st-bt-from').value, $('#st-bt-to').value];
    if (!a || !b) {
      out.textContent = 'Pick both dates.';
      out.classList.add('error');
      return;
    }
    // Whole days in the display zone, "To" inclusive, and not beyond now.
    const from = startOfDay(a);
    const to = Math.min(startOfDay(addDays(b, 1)), Math.ceil(Date.now() / 60e3) * 60);
    const iso = (sec) => api.rfc3339(new Date(sec * 1000));
    const button = $('#st-bt-run');
    button.disabled = true;
    out.textContent = 'Starting…';
    try {
      const { id } = await api.createBacktest({ symbols: [c.symbol], from: iso(from), to: iso(to),
        params: { engine: params } });
      const link = document.createElement('a');
      link.href = `#/backtests/${id}`;
      link.id = 'st-bt-link';
      link.textContent = `Run #${id}`;
      out.replaceChildren(link, ` started: ${c.symbol}, ${a} → ${b}, these parameters.`);
    } catch (err) {
      out.textContent = err.message;
      out.classList.add('error');
    } finally {
      button.disabled = false;
    }
  }

  #say(text, error = false) {
    const el = $('#st-message');
    el.textContent = text;
    el.classList.toggle('error', error);
  }
}
