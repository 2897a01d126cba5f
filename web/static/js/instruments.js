// Instruments (tick size, calendar) by symbol, read once per page load and
// again on demand: prices are written to their instrument's tick.
import { fetchInstruments } from './symbol-api.js';
import { fmtAtTick } from './format.js';

let pending = null;
let known = new Map();

/** Map symbol → instrument; `refresh` re-reads the list (a new symbol appeared). */
export function loadInstruments(refresh = false) {
  if (refresh || !pending) {
    pending = fetchInstruments().then((list) => {
      known = new Map(list.map((i) => [i.symbol, i]));
      return known;
    }).catch((err) => {
      pending = null;
      throw err;
    });
  }
  return pending;
}

/** The tick of a symbol once loaded, else the cent. */
export const tickOf = (symbol) => Number(known.get(symbol)?.tick_size) || 0.01;

/** A price of `symbol` written to its tick. */
export const fmtSymbolPrice = (symbol, v) => fmtAtTick(v, tickOf(symbol));
