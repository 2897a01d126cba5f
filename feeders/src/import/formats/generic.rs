//! Any CSV of trades and/or quotes, its columns named by `--columns`:
//! `time=<col>` and at least `price=<col>,size=<col>` (trades) or `bid=<col>,ask=<col>`
//! (quotes), optionally `symbol`, `side`, `buyer_maker`, `id`, `exchange`, `conditions`,
//! `bid_size`, `ask_size`. A row with a price is a trade; one with a bid or an ask is a quote
//! (a file may mix both, as captures of several streams do).
//!
//! `side` accepts buy/b/1 and sell/s/-1 (any case), and none/n/unknown/0 or empty for no side;
//! `buyer_maker` true means a sell. Without `id`, ids are content hashes. `conditions` is
//! split at spaces, `;` and `|`.

use super::{parse_bool, Col, Header, IdKind, Options, Parsed, Quote, RowParser, TimeOptions, Trade};
use csv::ByteRecord;
use tapeflow_analytics::Side;

const KEYS: [&str; 13] = [
    "time",
    "symbol",
    "price",
    "size",
    "side",
    "buyer_maker",
    "id",
    "exchange",
    "conditions",
    "bid",
    "ask",
    "bid_size",
    "ask_size",
];

/// `key=column` pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnMap {
    pub pairs: Vec<(String, String)>,
}

impl ColumnMap {
    /// `time=ts,price=px,...`. Errors: a pair without `=`, an unknown or repeated key.
    pub fn parse(s: &str) -> Result<ColumnMap, String> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) =
                part.split_once('=').ok_or_else(|| format!("--columns: '{part}' is not key=column"))?;
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if !KEYS.contains(&k.as_str()) {
                return Err(format!("--columns: unknown key '{k}' (keys: {})", KEYS.join(", ")));
            }
            if v.is_empty() {
                return Err(format!("--columns: no column for '{k}'"));
            }
            if pairs.iter().any(|(have, _)| *have == k) {
                return Err(format!("--columns: '{k}' given twice"));
            }
            pairs.push((k, v));
        }
        Ok(ColumnMap { pairs })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

pub struct Parser {
    time_opts: TimeOptions,
    time: Col,
    symbol: Option<Col>,
    trade: Option<(Col, Col)>,
    side: Option<Col>,
    buyer_maker: Option<Col>,
    id: Option<Col>,
    exchange: Option<Col>,
    conditions: Option<Col>,
    quote: Option<(Col, Col)>,
    bid_size: Option<Col>,
    ask_size: Option<Col>,
}

/// A side as generic files write it.
pub fn parse_side(col: &Col, s: &str) -> Result<Side, String> {
    match s.to_ascii_lowercase().as_str() {
        "buy" | "b" | "1" => Ok(Side::Buy),
        "sell" | "s" | "-1" => Ok(Side::Sell),
        "" | "none" | "n" | "unknown" | "0" => Ok(Side::Unknown),
        _ => Err(format!("{}: '{s}' is not a side (buy/b/1, sell/s/-1, none/n/0 or empty)", col.name)),
    }
}

impl Parser {
    pub fn new(header: &Header, opts: &Options) -> Result<Parser, String> {
        let map = opts.columns.as_ref().ok_or("--format csv needs --columns time=...,price=...,size=...")?;
        let col = |key: &str| -> Result<Option<Col>, String> {
            match map.get(key) {
                None => Ok(None),
                Some(name) => match header.find(name) {
                    Some(idx) => Ok(Some(Col { idx, name: header.names[idx].clone() })),
                    None => Err(format!(
                        "--columns {key}={name}: no such column in the header ({})",
                        header.names.join(",")
                    )),
                },
            }
        };
        let time = col("time")?.ok_or("--columns needs time=<column>")?;
        let trade = match (col("price")?, col("size")?) {
            (Some(p), Some(s)) => Some((p, s)),
            (None, None) => None,
            _ => return Err("--columns: price and size go together".into()),
        };
        let quote = match (col("bid")?, col("ask")?) {
            (Some(b), Some(a)) => Some((b, a)),
            (None, None) => None,
            _ => return Err("--columns: bid and ask go together".into()),
        };
        if trade.is_none() && quote.is_none() {
            return Err("--columns needs price=,size= (trades) or bid=,ask= (quotes)".into());
        }
        Ok(Parser {
            time_opts: opts.time,
            time,
            symbol: col("symbol")?,
            trade,
            side: col("side")?,
            buyer_maker: col("buyer_maker")?,
            id: col("id")?,
            exchange: col("exchange")?,
            conditions: col("conditions")?,
            quote,
            bid_size: col("bid_size")?,
            ask_size: col("ask_size")?,
        })
    }
}

fn opt_text(col: &Option<Col>, row: &ByteRecord) -> Result<Option<String>, String> {
    match col {
        Some(c) => c.text(row),
        None => Ok(None),
    }
}

impl RowParser for Parser {
    fn parse(&mut self, row: &ByteRecord) -> Result<Parsed, String> {
        let time_us = self.time.time(row, self.time_opts)?;
        let symbol = match &self.symbol {
            Some(c) => c.required_text(row)?,
            None => String::new(),
        };
        let exchange = opt_text(&self.exchange, row)?;
        let mut parsed = Parsed::default();
        if let Some((price, size)) = &self.trade {
            if !price.get(row)?.is_empty() {
                let mut side = match &self.side {
                    Some(c) => parse_side(c, c.get(row)?)?,
                    None => Side::Unknown,
                };
                if let Some(c) = &self.buyer_maker {
                    let maker_side = if parse_bool(c, c.get(row)?)? { Side::Sell } else { Side::Buy };
                    if side != Side::Unknown && side != maker_side {
                        return Err(format!("{}: contradicts the side column", c.name));
                    }
                    side = maker_side;
                }
                let (trade_id, id_kind) = match opt_text(&self.id, row)? {
                    Some(id) => (id, IdKind::Venue),
                    None => (String::new(), IdKind::Content),
                };
                let conditions = match opt_text(&self.conditions, row)? {
                    Some(c) => {
                        let codes: Vec<String> = c
                            .split(|ch: char| ch.is_whitespace() || ch == ';' || ch == '|')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect();
                        (!codes.is_empty()).then_some(codes)
                    }
                    None => None,
                };
                parsed.trade = Some(Trade {
                    time_us,
                    symbol: symbol.clone(),
                    price: price.price(row)?,
                    size: size.size(row)?,
                    side,
                    trade_id,
                    id_kind,
                    exchange: exchange.clone(),
                    conditions,
                });
            }
        }
        if let Some((bid, ask)) = &self.quote {
            if !bid.get(row)?.is_empty() || !ask.get(row)?.is_empty() {
                let size = |c: &Option<Col>| match c {
                    Some(c) => c.quote_size(row),
                    None => Ok(0.0),
                };
                parsed.quote = Some(Quote {
                    time_us,
                    symbol,
                    bid: bid.quote_price(row)?,
                    ask: ask.quote_price(row)?,
                    bid_size: size(&self.bid_size)?,
                    ask_size: size(&self.ask_size)?,
                    exchange,
                });
            }
        }
        if parsed.trade.is_none() && parsed.quote.is_none() {
            return Err("neither a price nor a bid or ask".into());
        }
        Ok(parsed)
    }
}
