//! Tardis.dev CSV: `trades` (exchange, symbol, timestamp, local_timestamp, id, side, price,
//! amount; side is the taker's: buy, sell or unknown) and `quotes` (… ask_amount, ask_price,
//! bid_price, bid_amount). `timestamp` is the exchange's time in µs since the epoch (the
//! collector's `local_timestamp` is not used).

use super::{Col, Header, IdKind, Options, Parsed, Quote, RowParser, TimeOptions, Trade};
use csv::ByteRecord;
use tapeflow_analytics::Side;

pub struct Parser {
    time: TimeOptions,
    exchange: Col,
    symbol: Col,
    timestamp: Col,
    kind: Kind,
}

enum Kind {
    Trades { id: Col, side: Col, price: Col, amount: Col },
    Quotes { bid: Col, bid_amount: Col, ask: Col, ask_amount: Col },
}

impl Parser {
    pub fn new(header: &Header, opts: &Options) -> Result<Parser, String> {
        let f = "Tardis";
        let kind = if header.find("bid_price").is_some() {
            Kind::Quotes {
                bid: header.require(f, &["bid_price"])?,
                bid_amount: header.require(f, &["bid_amount"])?,
                ask: header.require(f, &["ask_price"])?,
                ask_amount: header.require(f, &["ask_amount"])?,
            }
        } else {
            Kind::Trades {
                id: header.require(f, &["id"])?,
                side: header.require(f, &["side"])?,
                price: header.require(f, &["price"])?,
                amount: header.require(f, &["amount"])?,
            }
        };
        Ok(Parser {
            time: opts.time,
            exchange: header.require(f, &["exchange"])?,
            symbol: header.require(f, &["symbol"])?,
            timestamp: header.require(f, &["timestamp"])?,
            kind,
        })
    }
}

impl RowParser for Parser {
    fn parse(&mut self, row: &ByteRecord) -> Result<Parsed, String> {
        let time_us = self.timestamp.time(row, self.time)?;
        let symbol = self.symbol.required_text(row)?;
        let exchange = self.exchange.text(row)?;
        match &self.kind {
            Kind::Trades { id, side, price, amount } => {
                let side = match side.get(row)? {
                    "buy" => Side::Buy,
                    "sell" => Side::Sell,
                    "unknown" | "" => Side::Unknown,
                    s => return Err(format!("side: '{s}' is not buy, sell or unknown")),
                };
                let (trade_id, id_kind) = match id.text(row)? {
                    Some(id) => (id, IdKind::Venue),
                    None => (String::new(), IdKind::Content),
                };
                Ok(Parsed {
                    trade: Some(Trade {
                        time_us,
                        symbol,
                        price: price.price(row)?,
                        size: amount.size(row)?,
                        side,
                        trade_id,
                        id_kind,
                        exchange,
                        conditions: None,
                    }),
                    ..Parsed::default()
                })
            }
            Kind::Quotes { bid, bid_amount, ask, ask_amount } => {
                let (bid, bid_size) = (bid.quote_price(row)?, bid_amount.quote_size(row)?);
                let (ask, ask_size) = (ask.quote_price(row)?, ask_amount.quote_size(row)?);
                Ok(Parsed {
                    quote: Some(Quote { time_us, symbol, bid, ask, bid_size, ask_size, exchange }),
                    ..Parsed::default()
                })
            }
        }
    }
}
