//! Binance trades: the data dumps' `trades` (id, price, qty, quote_qty, time,
//! is_buyer_maker[, is_best_match]) and `aggTrades` (agg_trade_id, price, quantity,
//! first_trade_id, last_trade_id, transact_time, is_buyer_maker[, is_best_match]), with or
//! without a header line, and the same trades with the names timestamp, trade_id, price,
//! quantity, buyer_maker[, aggressor_side].
//!
//! A maker buyer means the taker sold, so `buyer_maker = true` is a sell; an `aggressor_side`
//! column must agree with it. Times are ms (µs in newer spot dumps: told apart by size) or
//! ISO 8601. The files name no symbol: `--symbol` gives it.

use super::{parse_bool, Col, Header, IdKind, Options, Parsed, RowParser, TimeOptions, Trade};
use csv::ByteRecord;
use tapeflow_analytics::Side;

pub struct Parser {
    time_opts: TimeOptions,
    time: Col,
    id: Col,
    price: Col,
    qty: Col,
    maker: Col,
    aggressor: Option<Col>,
}

const TRADES: [&str; 7] = ["id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match"];
const AGG_TRADES: [&str; 8] = [
    "agg_trade_id",
    "price",
    "quantity",
    "first_trade_id",
    "last_trade_id",
    "transact_time",
    "is_buyer_maker",
    "is_best_match",
];

fn is_int(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_num(s: &str) -> bool {
    s.parse::<f64>().is_ok_and(f64::is_finite)
}

fn is_bool(s: &str) -> bool {
    matches!(s, "True" | "False" | "true" | "false")
}

/// The column names of a dump whose first line is already data, or `None`.
fn layout(first: &Header) -> Option<&'static [&'static str]> {
    let f: Vec<&str> = first.names.iter().map(String::as_str).collect();
    match f.len() {
        6 | 7
            if is_int(f[0])
                && is_num(f[1])
                && is_num(f[2])
                && is_num(f[3])
                && is_int(f[4])
                && is_bool(f[5]) =>
        {
            Some(&TRADES[..f.len()])
        }
        7 | 8
            if is_int(f[0])
                && is_num(f[1])
                && is_num(f[2])
                && is_int(f[3])
                && is_int(f[4])
                && is_int(f[5])
                && is_bool(f[6]) =>
        {
            Some(&AGG_TRADES[..f.len()])
        }
        _ => None,
    }
}

/// Whether the "header" is a data row of a dump written without one.
pub fn is_headerless(first: &Header) -> bool {
    layout(first).is_some()
}

/// The header a headerless dump would have had.
pub fn dump_header(first: &Header) -> Header {
    let names = layout(first).unwrap_or(&TRADES[..]);
    Header::new(names.iter().map(|s| s.to_string()).collect())
}

impl Parser {
    pub fn new(header: &Header, opts: &Options) -> Result<Parser, String> {
        let f = "Binance trades";
        Ok(Parser {
            time_opts: opts.time,
            time: header.require(f, &["timestamp", "time", "transact_time"])?,
            id: header.require(f, &["trade_id", "id", "agg_trade_id"])?,
            price: header.require(f, &["price"])?,
            qty: header.require(f, &["quantity", "qty"])?,
            maker: header.require(f, &["buyer_maker", "is_buyer_maker"])?,
            aggressor: header.optional(&["aggressor_side"]),
        })
    }
}

impl RowParser for Parser {
    fn parse(&mut self, row: &ByteRecord) -> Result<Parsed, String> {
        let buyer_maker = parse_bool(&self.maker, self.maker.get(row)?)?;
        let side = if buyer_maker { Side::Sell } else { Side::Buy };
        if let Some(a) = &self.aggressor {
            let given = match a.get(row)? {
                "buy" => Side::Buy,
                "sell" => Side::Sell,
                s => return Err(format!("{}: '{s}' is not buy or sell", a.name)),
            };
            if given != side {
                return Err(format!("{}: {given:?} contradicts {} = {buyer_maker}", a.name, self.maker.name));
            }
        }
        let trade_id = self.id.required_text(row)?;
        Ok(Parsed {
            trade: Some(Trade {
                time_us: self.time.time(row, self.time_opts)?,
                symbol: String::new(),
                price: self.price.price(row)?,
                size: self.qty.size(row)?,
                side,
                trade_id,
                id_kind: IdKind::Venue,
                exchange: None,
                conditions: None,
            }),
            ..Parsed::default()
        })
    }
}
