//! NYSE TAQ trades and quotes as CSV (the column names of TAQ and its R and WRDS exports):
//! trades `DT, [EX], SYMBOL, [COND], SIZE, PRICE, [CORR]`, quotes `DT, [EX], SYMBOL, BID,
//! BIDSIZ, OFR, OFRSIZ`, any order, other columns ignored.
//!
//! TAQ gives no aggressor side and no trade id: ids are content hashes (see
//! [`super::content_id`]). `COND` is split into its one-letter sale conditions. A trade whose
//! correction indicator `CORR` is not 0 (later corrected, cancelled or in error) is left out,
//! as the usual TAQ cleaning does. Quote sizes are stored as the file gives them (round lots
//! of 100 shares in TAQ); a 0 bid or offer is no price on that side.

use super::{Col, Header, IdKind, Options, Parsed, Quote, RowParser, TimeOptions, Trade};
use csv::ByteRecord;
use tapeflow_analytics::Side;

pub struct Parser {
    time_opts: TimeOptions,
    dt: Col,
    ex: Option<Col>,
    symbol: Option<Col>,
    kind: Kind,
}

enum Kind {
    Trades { price: Col, size: Col, cond: Option<Col>, corr: Option<Col> },
    Quotes { bid: Col, bid_size: Col, ask: Col, ask_size: Col },
}

impl Parser {
    pub fn new(header: &Header, opts: &Options) -> Result<Parser, String> {
        let f = "TAQ";
        let kind = if header.find("price").is_some() {
            Kind::Trades {
                price: header.require(f, &["price"])?,
                size: header.require(f, &["size"])?,
                cond: header.optional(&["cond"]),
                corr: header.optional(&["corr"]),
            }
        } else {
            Kind::Quotes {
                bid: header.require(f, &["bid"])?,
                bid_size: header.require(f, &["bidsiz"])?,
                ask: header.require(f, &["ofr"])?,
                ask_size: header.require(f, &["ofrsiz"])?,
            }
        };
        Ok(Parser {
            time_opts: opts.time,
            dt: header.require(f, &["dt"])?,
            ex: header.optional(&["ex"]),
            symbol: header.optional(&["symbol", "sym_root"]),
            kind,
        })
    }
}

impl RowParser for Parser {
    fn parse(&mut self, row: &ByteRecord) -> Result<Parsed, String> {
        let time_us = self.dt.time(row, self.time_opts)?;
        let symbol = match &self.symbol {
            Some(c) => c.required_text(row)?,
            None => String::new(),
        };
        let exchange = match &self.ex {
            Some(c) => c.text(row)?,
            None => None,
        };
        match &self.kind {
            Kind::Trades { price, size, cond, corr } => {
                if let Some(c) = corr {
                    let s = c.get(row)?;
                    match s.parse::<u32>() {
                        Ok(0) => {}
                        Ok(_) => {
                            return Ok(Parsed {
                                filtered: Some("corrected or cancelled (CORR not 0)"),
                                ..Parsed::default()
                            })
                        }
                        Err(_) => return Err(format!("{}: '{s}' is not a correction code", c.name)),
                    }
                }
                let conditions = match cond {
                    Some(c) => {
                        let codes: Vec<String> =
                            c.get(row)?.chars().filter(|ch| !ch.is_whitespace()).map(String::from).collect();
                        (!codes.is_empty()).then_some(codes)
                    }
                    None => None,
                };
                Ok(Parsed {
                    trade: Some(Trade {
                        time_us,
                        symbol,
                        price: price.price(row)?,
                        size: size.size(row)?,
                        side: Side::Unknown,
                        trade_id: String::new(),
                        id_kind: IdKind::Content,
                        exchange,
                        conditions,
                    }),
                    ..Parsed::default()
                })
            }
            Kind::Quotes { bid, bid_size, ask, ask_size } => Ok(Parsed {
                quote: Some(Quote {
                    time_us,
                    symbol,
                    bid: bid.quote_price(row)?,
                    ask: ask.quote_price(row)?,
                    bid_size: bid_size.quote_size(row)?,
                    ask_size: ask_size.quote_size(row)?,
                    exchange,
                }),
                ..Parsed::default()
            }),
        }
    }
}
