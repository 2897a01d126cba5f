//! Databento CSV (as its transcoder writes it): the `trades` schema, `mbp-1` (trades and the
//! top of book after each event) and `mbo` (whose trades are read; its order events are not a
//! quote until a book is rebuilt, so they are passed over).
//!
//! - Time is `ts_event`, the venue's matching-engine time (nanoseconds, truncated to µs).
//! - On a `T` (trade) row `side` is the aggressor: `B` buy, `A` sell, `N` none.
//! - The trade id is `sequence`, the venue's message sequence number; trades of one message
//!   share it and are told apart by their order (`#1`, `#2`, …), which is what makes the
//!   `trades` and `mbp-1` files of the same data give the same ids.
//! - Prices are decimals (`pretty_px`) or, without a decimal point, fixed-point integers in
//!   units of 1e-9; the undefined price (i64::MAX) and an empty field are no price.
//! - `mbp-1` quotes: a row's `bid_px_00`… after the event, taken when the row ends the event
//!   (`flags` has F_LAST, 0x80: before that the book is half-updated) and the book changed.
//! - `exchange` is `publisher_id`; the symbol is `symbol` when the file maps symbols, else
//!   the `instrument_id`.

use super::{Col, Header, IdKind, Options, Parsed, Quote, RowParser, TimeOptions, Trade};
use csv::ByteRecord;
use std::collections::HashMap;
use tapeflow_analytics::Side;

const F_LAST: u64 = 0x80;

pub struct Parser {
    time: TimeOptions,
    ts_event: Col,
    action: Col,
    side: Col,
    price: Col,
    size: Col,
    sequence: Col,
    publisher: Option<Col>,
    symbol: Col,
    flags: Option<Col>,
    book: Option<Book>,
    last_book: HashMap<String, [f64; 4]>,
}

struct Book {
    bid: Col,
    ask: Col,
    bid_size: Col,
    ask_size: Col,
}

impl Parser {
    pub fn new(header: &Header, opts: &Options) -> Result<Parser, String> {
        let f = "Databento";
        let book = match header.optional(&["bid_px_00"]) {
            Some(bid) => Some(Book {
                bid,
                ask: header.require(f, &["ask_px_00"])?,
                bid_size: header.require(f, &["bid_sz_00"])?,
                ask_size: header.require(f, &["ask_sz_00"])?,
            }),
            None => None,
        };
        Ok(Parser {
            time: opts.time,
            ts_event: header.require(f, &["ts_event"])?,
            action: header.require(f, &["action"])?,
            side: header.require(f, &["side"])?,
            price: header.require(f, &["price"])?,
            size: header.require(f, &["size"])?,
            sequence: header.require(f, &["sequence"])?,
            publisher: header.optional(&["publisher_id"]),
            symbol: header.require(f, &["symbol", "instrument_id"])?,
            flags: header.optional(&["flags"]),
            book,
            last_book: HashMap::new(),
        })
    }
}

/// A price as Databento writes it; `None` for no price.
fn price(col: &Col, row: &ByteRecord) -> Result<Option<f64>, String> {
    let s = col.get(row)?;
    if s.is_empty() {
        return Ok(None);
    }
    if s.contains('.') {
        let v = col.f64(row)?;
        // pretty_px writes the undefined price as i64::MAX × 1e-9.
        return Ok((v < 9.2e9).then_some(v));
    }
    let fixed: i64 = s.parse().map_err(|_| format!("{}: '{s}' is not a price", col.name))?;
    Ok((fixed != i64::MAX).then_some(fixed as f64 / 1e9))
}

fn nonneg(col: &Col, v: Option<f64>) -> Result<f64, String> {
    match v {
        None => Ok(0.0),
        Some(v) if v >= 0.0 => Ok(v),
        Some(v) => Err(format!("{}: price must not be negative, got {v}", col.name)),
    }
}

impl RowParser for Parser {
    fn parse(&mut self, row: &ByteRecord) -> Result<Parsed, String> {
        let action = self.action.get(row)?;
        if !matches!(action, "A" | "C" | "M" | "R" | "T" | "F" | "N") {
            return Err(format!("action: '{action}' is not a Databento action (A, C, M, R, T, F, N)"));
        }
        let time_us = self.ts_event.time(row, self.time)?;
        let symbol = self.symbol.required_text(row)?;
        let exchange = match &self.publisher {
            Some(p) => p.text(row)?,
            None => None,
        };
        let mut parsed = Parsed::default();
        if action == "T" {
            let side = match self.side.get(row)? {
                "B" => Side::Buy,
                "A" => Side::Sell,
                "N" | "" => Side::Unknown,
                s => return Err(format!("side: '{s}' is not B, A or N")),
            };
            let px = match price(&self.price, row)? {
                Some(p) if p > 0.0 => p,
                Some(p) => return Err(format!("{}: price must be positive, got {p}", self.price.name)),
                None => return Err(format!("{}: a trade without a price", self.price.name)),
            };
            let sequence = self.sequence.required_text(row)?;
            if !sequence.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{}: '{sequence}' is not a sequence number", self.sequence.name));
            }
            parsed.trade = Some(Trade {
                time_us,
                symbol: symbol.clone(),
                price: px,
                size: self.size.size(row)?,
                side,
                trade_id: sequence,
                id_kind: IdKind::Sequence,
                exchange: exchange.clone(),
                conditions: None,
            });
        }
        if let Some(book) = &self.book {
            let last_of_event = match &self.flags {
                Some(f) => {
                    let s = f.get(row)?;
                    let flags: u64 = s.parse().map_err(|_| format!("{}: '{s}' is not a number", f.name))?;
                    flags & F_LAST != 0
                }
                None => true,
            };
            if last_of_event {
                let bbo = [
                    nonneg(&book.bid, price(&book.bid, row)?)?,
                    nonneg(&book.ask, price(&book.ask, row)?)?,
                    book.bid_size.quote_size(row)?,
                    book.ask_size.quote_size(row)?,
                ];
                if self.last_book.get(&symbol) != Some(&bbo) {
                    self.last_book.insert(symbol.clone(), bbo);
                    let [bid, ask, bid_size, ask_size] = bbo;
                    parsed.quote = Some(Quote { time_us, symbol, bid, ask, bid_size, ask_size, exchange });
                }
            }
        }
        Ok(parsed)
    }
}
