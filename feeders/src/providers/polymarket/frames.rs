//! The CLOB market channel's messages, read into typed events.
//!
//! A frame is one JSON object or a JSON array of them (the server batches, notably the book
//! snapshots answering a subscription), or the text `PONG` answering our `PING`. Every element
//! is read on its own: one that cannot be read is returned with its error and its text, beside
//! the events of the others, so that a bad element never hides good ones.
//!
//! Shapes (see tests/src/fake_polymarket.md for the captures behind each):
//! - `book`: `market`, `asset_id`, `bids`/`asks` `[{price, size}]` (any order), `timestamp`
//!   (ms, a string), `hash`, newer feeds also `tick_size`.
//! - `price_change` v2: `market`, `timestamp`, `price_changes[{asset_id, price, size, side,
//!   hash, best_bid, best_ask}]`; v1 (before the batched form): `asset_id`, `market`, `price`,
//!   `size`, `side`, `hash`, `timestamp` at the top level, or a `changes[{price, side, size}]`
//!   list with `asset_id` at the top.
//! - `last_trade_price`: `asset_id`, `market`, `price`, `size`, `side` (the taker's),
//!   `fee_rate_bps`, `timestamp`, newer feeds also `transaction_hash`.
//! - `tick_size_change`, `best_bid_ask`, `new_market`, `market_resolved`.
//!
//! Decimal strings are read exactly (`rust_decimal`), never through a float, so that levels
//! compare exactly and the venue's book hash can be recomputed.

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use std::fmt;
use tapeflow_analytics::polymarket::book::{BookSide, Level, PriceChange};

/// Why an element of a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub String);

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FrameError {}

fn err(msg: impl Into<String>) -> FrameError {
    FrameError(msg.into())
}

/// A `book` message: the whole depth of one token.
#[derive(Debug, Clone, PartialEq)]
pub struct BookMsg {
    pub market: String,
    pub asset_id: String,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    pub timestamp_ms: i64,
    pub hash: Option<String>,
    pub tick_size: Option<Decimal>,
}

/// One entry of a `price_change`: the new size of one level of one token.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEntry {
    pub asset_id: String,
    pub change: PriceChange,
    pub hash: Option<String>,
    /// The venue's top after the change (v2 only); `None` when not sent.
    pub best_bid: Option<Decimal>,
    pub best_ask: Option<Decimal>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PriceChangeMsg {
    pub market: String,
    pub timestamp_ms: i64,
    pub changes: Vec<ChangeEntry>,
}

/// The taker's side of a trade, as the venue states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakerSide {
    Buy,
    Sell,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LastTrade {
    pub market: String,
    pub asset_id: String,
    pub price: Decimal,
    pub size: Decimal,
    pub side: Option<TakerSide>,
    pub timestamp_ms: i64,
    pub fee_rate_bps: Option<Decimal>,
    pub transaction_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TickSizeChange {
    pub market: String,
    pub asset_id: String,
    pub old_tick_size: Option<Decimal>,
    pub new_tick_size: Decimal,
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BestBidAsk {
    pub market: String,
    pub asset_id: String,
    pub best_bid: Option<Decimal>,
    pub best_ask: Option<Decimal>,
    pub timestamp_ms: i64,
}

/// A market listed while we are connected (`custom_feature_enabled` only).
#[derive(Debug, Clone, PartialEq)]
pub struct NewMarket {
    pub condition_id: String,
    pub gamma_id: Option<String>,
    pub slug: Option<String>,
    pub question: Option<String>,
    pub asset_ids: Vec<String>,
    pub outcomes: Vec<String>,
    pub tags: Vec<String>,
    pub timestamp_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MarketResolved {
    pub condition_id: String,
    pub asset_ids: Vec<String>,
    pub winning_asset_id: String,
    pub winning_outcome: Option<String>,
    pub timestamp_ms: i64,
}

/// One message of the market channel.
#[derive(Debug, Clone, PartialEq)]
pub enum MarketEvent {
    Book(BookMsg),
    PriceChange(PriceChangeMsg),
    LastTrade(LastTrade),
    TickSize(TickSizeChange),
    BestBidAsk(BestBidAsk),
    NewMarket(NewMarket),
    Resolved(MarketResolved),
    /// The server's answer to `PING`.
    Pong,
}

/// The longest id (condition id, token id, hash) accepted: real ones are 66 (0x + 64 hex) or 77
/// to 78 decimal digits.
const MAX_ID: usize = 100;

/// Reads a frame: its events, and the elements that could not be read (error, element text).
/// `Err` when the frame as a whole is not JSON (nor `PONG`).
#[allow(clippy::type_complexity)]
pub fn parse_frame(text: &str) -> Result<(Vec<MarketEvent>, Vec<(FrameError, String)>), FrameError> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("PONG") {
        return Ok((vec![MarketEvent::Pong], Vec::new()));
    }
    let value: Value = serde_json::from_str(trimmed).map_err(|e| err(format!("not JSON: {e}")))?;
    let elements = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut events = Vec::with_capacity(elements.len());
    let mut bad = Vec::new();
    for item in elements {
        match parse_event(&item) {
            Ok(e) => events.push(e),
            Err(e) => bad.push((e, item.to_string())),
        }
    }
    Ok((events, bad))
}

/// Reads one message object.
pub fn parse_event(v: &Value) -> Result<MarketEvent, FrameError> {
    let obj =
        v.as_object().ok_or_else(|| err(format!("a {} where a message object was expected", kind(v))))?;
    let event_type = match obj.get("event_type") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(err(format!("event_type is a {}", kind(other)))),
        // The nested and older captures omit event_type: recognise them by their fields.
        None if obj.contains_key("price_changes") => "price_change",
        None if obj.contains_key("bids") && obj.contains_key("asks") => "book",
        None if obj.contains_key("new_tick_size") => "tick_size_change",
        None => return Err(err("no event_type")),
    };
    Ok(match event_type {
        "book" => MarketEvent::Book(book(v)?),
        "price_change" => MarketEvent::PriceChange(price_change(v)?),
        "last_trade_price" => MarketEvent::LastTrade(last_trade(v)?),
        "tick_size_change" => MarketEvent::TickSize(TickSizeChange {
            market: id(v, "market")?,
            asset_id: id(v, "asset_id")?,
            old_tick_size: opt_decimal(v, "old_tick_size")?,
            new_tick_size: tick(v, "new_tick_size")?,
            timestamp_ms: timestamp(v, "timestamp")?,
        }),
        "best_bid_ask" => MarketEvent::BestBidAsk(BestBidAsk {
            market: id(v, "market")?,
            asset_id: id(v, "asset_id")?,
            best_bid: opt_decimal(v, "best_bid")?,
            best_ask: opt_decimal(v, "best_ask")?,
            timestamp_ms: timestamp(v, "timestamp")?,
        }),
        "new_market" => MarketEvent::NewMarket(new_market(v)?),
        "market_resolved" => MarketEvent::Resolved(MarketResolved {
            condition_id: match opt_id(v, "condition_id")? {
                Some(c) => c,
                None => id(v, "market")?,
            },
            asset_ids: id_list(v, "assets_ids")?,
            winning_asset_id: id(v, "winning_asset_id")?,
            winning_outcome: opt_text(v, "winning_outcome")?,
            timestamp_ms: timestamp(v, "timestamp")?,
        }),
        other => return Err(err(format!("unknown event_type {:?}", truncate(other)))),
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A required id: a non-empty string without control characters, at most [`MAX_ID`] long.
fn id(v: &Value, key: &str) -> Result<String, FrameError> {
    opt_id(v, key)?.ok_or_else(|| err(format!("{key} is missing")))
}

/// An id as the venue writes them (token, condition, market): at most `MAX_ID` bytes, no
/// whitespace or control characters (a list's elements are held to the same rule as a field).
fn is_id(s: &str) -> bool {
    s.len() <= MAX_ID && !s.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn opt_id(v: &Value, key: &str) -> Result<Option<String>, FrameError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => {
            if is_id(s) {
                Ok(Some(s.clone()))
            } else {
                Err(err(format!("{key} {:?} is not an id", truncate(s))))
            }
        }
        Some(other) => Err(err(format!("{key} is a {}", kind(other)))),
    }
}

fn opt_text(v: &Value, key: &str) -> Result<Option<String>, FrameError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.chars().take(2000).collect())),
        Some(other) => Err(err(format!("{key} is a {}", kind(other)))),
    }
}

fn id_list(v: &Value, key: &str) -> Result<Vec<String>, FrameError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) if !s.is_empty() && is_id(s) => Ok(s.clone()),
                other => {
                    Err(err(format!("an element of {key} is not an id: {}", truncate(&other.to_string()))))
                }
            })
            .collect(),
        Some(other) => Err(err(format!("{key} is a {}", kind(other)))),
    }
}

fn text_list(v: &Value, key: &str) -> Result<Vec<String>, FrameError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.chars().take(200).collect()),
                other => Err(err(format!("an element of {key} is a {}", kind(other)))),
            })
            .collect(),
        Some(other) => Err(err(format!("{key} is a {}", kind(other)))),
    }
}

/// A decimal written as the venue writes them: digits with at most one point (".48" too).
/// Exponents, signs other than a leading minus, and more than 28 significant digits are refused.
pub fn decimal_text(s: &str) -> Result<Decimal, FrameError> {
    let body = s.strip_prefix('-').unwrap_or(s);
    let digits_ok = !body.is_empty()
        && body.len() <= 40
        && body.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && body.bytes().filter(|b| *b == b'.').count() <= 1
        && body.bytes().any(|b| b.is_ascii_digit());
    if !digits_ok {
        return Err(err(format!("{:?} is not a decimal", truncate(s))));
    }
    let padded;
    let text = if let Some(rest) = s.strip_prefix('.') {
        padded = format!("0.{rest}");
        padded.as_str()
    } else if let Some(rest) = s.strip_prefix("-.") {
        padded = format!("-0.{rest}");
        padded.as_str()
    } else {
        s
    };
    let text = text.strip_suffix('.').unwrap_or(text);
    Decimal::from_str_exact(text).map_err(|e| err(format!("{:?} is not a decimal: {e}", truncate(s))))
}

/// A decimal given as a string (the venue's form) or a JSON number.
fn decimal_value(v: &Value, what: &str) -> Result<Decimal, FrameError> {
    match v {
        Value::String(s) => decimal_text(s.trim()),
        Value::Number(n) => decimal_text(&n.to_string()),
        other => Err(err(format!("{what} is a {}", kind(other)))),
    }
}

fn opt_decimal(v: &Value, key: &str) -> Result<Option<Decimal>, FrameError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(x) => decimal_value(x, key).map(Some),
    }
}

fn decimal(v: &Value, key: &str) -> Result<Decimal, FrameError> {
    opt_decimal(v, key)?.ok_or_else(|| err(format!("{key} is missing")))
}

/// A tick size: a price step inside (0, 1).
fn tick(v: &Value, key: &str) -> Result<Decimal, FrameError> {
    let t = decimal(v, key)?;
    if t <= Decimal::ZERO || t >= Decimal::ONE {
        return Err(err(format!("{key} {t} is not a tick size")));
    }
    Ok(t)
}

/// The latest time accepted (year 2200), so every timestamp converts to a `timestamptz`.
const MAX_MS: i64 = 7_258_118_400_000;

/// Milliseconds since the epoch, a string (the venue's form) or a number.
fn timestamp(v: &Value, key: &str) -> Result<i64, FrameError> {
    let ms = match v.get(key) {
        None | Some(Value::Null) => return Err(err(format!("{key} is missing"))),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| err(format!("{key} {:?} is not a count of ms", truncate(s))))?,
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| err(format!("{key} {n} is not a count of ms")))?,
        Some(other) => return Err(err(format!("{key} is a {}", kind(other)))),
    };
    if !(0..=MAX_MS).contains(&ms) {
        return Err(err(format!("{key} {ms} is outside 1970..2200")));
    }
    Ok(ms)
}

/// The time of a venue timestamp.
pub fn time_of(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

fn side(v: &Value, key: &str) -> Result<Option<BookSide>, FrameError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match s.to_ascii_uppercase().as_str() {
            "BUY" | "BID" => Ok(Some(BookSide::Bid)),
            "SELL" | "ASK" => Ok(Some(BookSide::Ask)),
            "" => Ok(None),
            _ => Err(err(format!("{key} {:?} is neither BUY nor SELL", truncate(s)))),
        },
        Some(other) => Err(err(format!("{key} is a {}", kind(other)))),
    }
}

fn levels(v: &Value, key: &str) -> Result<Vec<Level>, FrameError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            if items.len() > 100_000 {
                return Err(err(format!("{key}: {} levels", items.len())));
            }
            items
                .iter()
                .map(|l| {
                    let (price, size) = match l {
                        Value::Object(_) => (decimal(l, "price")?, decimal(l, "size")?),
                        // The [price, size] pair form some clients document.
                        Value::Array(pair) if pair.len() == 2 => {
                            (decimal_value(&pair[0], "price")?, decimal_value(&pair[1], "size")?)
                        }
                        other => return Err(err(format!("a level of {key} is a {}", kind(other)))),
                    };
                    Ok(Level::new(price, size))
                })
                .collect()
        }
        Some(other) => Err(err(format!("{key} is a {}", kind(other)))),
    }
}

fn book(v: &Value) -> Result<BookMsg, FrameError> {
    let tick_size = match opt_decimal(v, "tick_size")? {
        Some(t) if t > Decimal::ZERO && t < Decimal::ONE => Some(t),
        Some(t) => return Err(err(format!("tick_size {t} is not a tick size"))),
        None => None,
    };
    Ok(BookMsg {
        market: id(v, "market")?,
        asset_id: id(v, "asset_id")?,
        bids: levels(v, "bids")?,
        asks: levels(v, "asks")?,
        timestamp_ms: timestamp(v, "timestamp")?,
        hash: opt_id(v, "hash")?,
        tick_size,
    })
}

fn change(v: &Value, side_key: &str) -> Result<PriceChange, FrameError> {
    let side = side(v, side_key)?.ok_or_else(|| err(format!("{side_key} is missing")))?;
    Ok(PriceChange { side, price: decimal(v, "price")?, size: decimal(v, "size")? })
}

fn price_change(v: &Value) -> Result<PriceChangeMsg, FrameError> {
    let market = id(v, "market")?;
    let timestamp_ms = timestamp(v, "timestamp")?;
    let changes = match (v.get("price_changes"), v.get("changes")) {
        // v2: one entry per level, each naming its token and the top after it.
        (Some(Value::Array(items)), _) => items
            .iter()
            .map(|e| {
                Ok(ChangeEntry {
                    asset_id: id(e, "asset_id")?,
                    change: change(e, "side")?,
                    hash: opt_id(e, "hash")?,
                    best_bid: opt_decimal(e, "best_bid")?,
                    best_ask: opt_decimal(e, "best_ask")?,
                })
            })
            .collect::<Result<Vec<_>, FrameError>>()?,
        (Some(other), _) => return Err(err(format!("price_changes is a {}", kind(other)))),
        // v1 with a list of changes for the one token named at the top.
        (None, Some(Value::Array(items))) => {
            let asset_id = id(v, "asset_id")?;
            let hash = opt_id(v, "hash")?;
            items
                .iter()
                .map(|e| {
                    Ok(ChangeEntry {
                        asset_id: asset_id.clone(),
                        change: change(e, "side")?,
                        hash: hash.clone(),
                        best_bid: None,
                        best_ask: None,
                    })
                })
                .collect::<Result<Vec<_>, FrameError>>()?
        }
        (None, Some(other)) => return Err(err(format!("changes is a {}", kind(other)))),
        // v1 flat: one change at the top level.
        (None, None) => vec![ChangeEntry {
            asset_id: id(v, "asset_id")?,
            change: change(v, "side")?,
            hash: opt_id(v, "hash")?,
            best_bid: opt_decimal(v, "best_bid")?,
            best_ask: opt_decimal(v, "best_ask")?,
        }],
    };
    if changes.len() > 100_000 {
        return Err(err(format!("{} changes in one message", changes.len())));
    }
    Ok(PriceChangeMsg { market, timestamp_ms, changes })
}

fn last_trade(v: &Value) -> Result<LastTrade, FrameError> {
    let price = decimal(v, "price")?;
    if price <= Decimal::ZERO || price >= Decimal::ONE {
        return Err(err(format!("trade price {price} is outside (0, 1)")));
    }
    let size = decimal(v, "size")?;
    if size <= Decimal::ZERO {
        return Err(err(format!("trade size {size} is not positive")));
    }
    let side = side(v, "side")?.map(|s| match s {
        BookSide::Bid => TakerSide::Buy,
        BookSide::Ask => TakerSide::Sell,
    });
    Ok(LastTrade {
        market: id(v, "market")?,
        asset_id: id(v, "asset_id")?,
        price,
        size,
        side,
        timestamp_ms: timestamp(v, "timestamp")?,
        fee_rate_bps: opt_decimal(v, "fee_rate_bps")?,
        transaction_hash: opt_id(v, "transaction_hash")?,
    })
}

fn new_market(v: &Value) -> Result<NewMarket, FrameError> {
    let condition_id = match opt_id(v, "condition_id")? {
        Some(c) => c,
        None => id(v, "market")?,
    };
    let mut asset_ids = id_list(v, "clob_token_ids")?;
    if asset_ids.is_empty() {
        asset_ids = id_list(v, "assets_ids")?;
    }
    let timestamp_ms = match v.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(_) => Some(timestamp(v, "timestamp")?),
    };
    Ok(NewMarket {
        condition_id,
        gamma_id: opt_id(v, "id")?,
        slug: opt_id(v, "slug")?,
        question: opt_text(v, "question")?,
        asset_ids,
        outcomes: text_list(v, "outcomes")?,
        tags: text_list(v, "tags")?,
        timestamp_ms,
    })
}

/// The trade id of a `last_trade_price`. The message carries no id of its own, so the id is
/// made of what it does carry, the same way every time: a replay of the message (after a
/// reconnect, say) gets the same id and time and the writer stores it once. `occurrence`
/// tells apart trades identical in every field within one session (1 for the first).
pub fn trade_id(t: &LastTrade, occurrence: u32) -> String {
    let side = match t.side {
        Some(TakerSide::Buy) => "B",
        Some(TakerSide::Sell) => "S",
        None => "N",
    };
    let mut id = match &t.transaction_hash {
        Some(h) => format!("{h}-{side}-{}-{}", t.price.normalize(), t.size.normalize()),
        None => format!("{}-{side}-{}-{}", t.timestamp_ms, t.price.normalize(), t.size.normalize()),
    };
    if occurrence > 1 {
        id.push_str(&format!("-{occurrence}"));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn capture(rel: &str) -> String {
        let data = std::env::var_os("TAPEFLOW_SHARED_DATA")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
        let path = data.join("c_protocol/polymarket").join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    fn one(text: &str) -> MarketEvent {
        let (events, bad) = parse_frame(text).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(events.len(), 1);
        events.into_iter().next().unwrap()
    }

    #[test]
    fn listed_token_ids_are_held_to_the_id_rule() {
        let frame = |ids: &str| {
            format!(
                r#"{{"event_type":"new_market","id":"1","market":"0xab","condition_id":"0xab","question":"q","slug":"s",
                    "outcomes":["Yes","No"],"clob_token_ids":{ids},"timestamp":"1766790415550"}}"#
            )
        };
        let (events, bad) = parse_frame(&frame(r#"[" ","1"]"#)).unwrap();
        assert!(events.is_empty() && bad.len() == 1, "{events:?} {bad:?}");
        let (events, bad) = parse_frame(&frame(r#"["12","34"]"#)).unwrap();
        assert!(bad.is_empty() && events.len() == 1, "{bad:?}");
    }

    #[test]
    fn real_book_message() {
        let MarketEvent::Book(b) = one(&capture("nautilus_py_tests_ws_messages/book.json")) else { panic!() };
        assert_eq!(b.market, "0xdd22472e552920b8438158ea7238bfadfa4f736aa4cee91a6b86c39ead110917");
        assert_eq!((b.bids.len(), b.asks.len()), (76, 86));
        assert_eq!(b.timestamp_ms, 1_728_799_418_260);
        assert_eq!(b.hash.as_deref(), Some("655a38d4977427b086c25b985993691b753ed166"));
        // Levels as sent (the book puts them in order): bids ascending, asks descending.
        assert_eq!(b.bids.last().unwrap().price, d("0.511"));
        assert_eq!(b.asks.last().unwrap().price, d("0.514"));
        // The docs' example writes prices without the leading zero.
        let docs: Value =
            serde_json::from_str(&capture("rs-clob-client_docs_example_payloads.json")).unwrap();
        let MarketEvent::Book(b) = one(&docs["book"].to_string()) else { panic!() };
        assert_eq!(b.bids[0].price, d("0.48"));
    }

    #[test]
    fn price_change_v1_and_v2() {
        let MarketEvent::PriceChange(v1) = one(&capture("nautilus_py_tests_ws_messages/price_change.json"))
        else {
            panic!()
        };
        assert_eq!(v1.changes.len(), 1);
        let e = &v1.changes[0];
        assert_eq!(e.change, PriceChange { side: BookSide::Ask, price: d("0.514"), size: d("21574.08") });
        assert_eq!((e.best_bid, e.best_ask), (None, None));
        let MarketEvent::PriceChange(v2) =
            one(&capture("nautilus_py_tests_ws_messages/price_change_v2.json"))
        else {
            panic!()
        };
        assert_eq!(v2.timestamp_ms, 1_729_084_877_448);
        assert_eq!(v2.changes.len(), 3);
        assert!(v2.changes.iter().all(|c| c.change.side == BookSide::Bid && c.best_ask == Some(d("0.7"))));
        // The nested form without event_type (ws_quotes.json) is recognised by its fields.
        let MarketEvent::PriceChange(q) = one(&capture("nautilus_crates_test_data/ws_quotes.json")) else {
            panic!()
        };
        assert_eq!(q.changes[1].change.side, BookSide::Ask);
        // v1 with a changes list.
        let MarketEvent::PriceChange(l) = one(
            r#"{"event_type":"price_change","asset_id":"1","market":"0xm","timestamp":"5","hash":"h",
                "changes":[{"price":"0.4","side":"BUY","size":"0"},{"price":"0.6","side":"SELL","size":"3"}]}"#,
        ) else {
            panic!()
        };
        assert_eq!(l.changes.len(), 2);
        assert!(l.changes.iter().all(|c| c.asset_id == "1" && c.hash.as_deref() == Some("h")));
    }

    #[test]
    fn trades_ticks_and_custom_events() {
        let MarketEvent::LastTrade(t) = one(&capture("nautilus_py_tests_ws_messages/last_trade_price.json"))
        else {
            panic!()
        };
        assert_eq!((t.price, t.size, t.side), (d("0.491"), d("85.36"), Some(TakerSide::Sell)));
        assert_eq!(trade_id(&t, 1), "1724564136087-S-0.491-85.36");
        assert_eq!(trade_id(&t, 2), "1724564136087-S-0.491-85.36-2");
        let with_tx = LastTrade { transaction_hash: Some("0xabc".into()), ..t.clone() };
        assert_eq!(trade_id(&with_tx, 1), "0xabc-S-0.491-85.36");
        // Trailing zeros do not change the id ("25.0" and "25" are one size).
        let a = LastTrade { size: d("25.0"), ..t.clone() };
        let b = LastTrade { size: d("25"), ..t };
        assert_eq!(trade_id(&a, 1), trade_id(&b, 1));

        let MarketEvent::TickSize(ts) = one(&capture("nautilus_py_tests_ws_messages/tick_size_change.json"))
        else {
            panic!()
        };
        assert_eq!((ts.old_tick_size, ts.new_tick_size), (Some(d("0.01")), d("0.001")));
        let MarketEvent::BestBidAsk(bba) =
            one(&capture("nautilus_crates_test_data/ws_market_best_bid_ask_msg.json"))
        else {
            panic!()
        };
        assert_eq!((bba.best_bid, bba.best_ask), (Some(d("0.73")), Some(d("0.77"))));
        let MarketEvent::NewMarket(nm) =
            one(&capture("nautilus_crates_test_data/ws_market_new_market_msg.json"))
        else {
            panic!()
        };
        assert_eq!(nm.slug.as_deref(), Some("nvda-above-240-on-january-30-2026"));
        assert_eq!(
            (nm.asset_ids.len(), nm.outcomes.len(), nm.tags.clone()),
            (2, 2, vec!["stocks".to_string()])
        );
        let MarketEvent::Resolved(r) = one(&capture("nautilus_crates_test_data/ws_market_resolved_msg.json"))
        else {
            panic!()
        };
        assert_eq!(r.winning_outcome.as_deref(), Some("Yes"));
        assert_eq!(r.winning_asset_id, r.asset_ids[0]);
    }

    #[test]
    fn arrays_pong_and_bad_elements() {
        let book = capture("nautilus_crates_test_data/ws_market_book_msg.json");
        let frame = format!(r#"[{book}, {{"event_type":"surprise"}}, 7, {book}]"#);
        let (events, bad) = parse_frame(&frame).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(bad.len(), 2);
        assert!(bad[0].0.to_string().contains("unknown event_type"), "{:?}", bad[0]);
        assert_eq!(parse_frame("PONG").unwrap().0, vec![MarketEvent::Pong]);
        assert!(parse_frame("{not json").is_err());
        assert!(parse_frame("").is_err());
        for bad_element in [
            r#"{"event_type":"last_trade_price","market":"m","asset_id":"a","price":"1.5","size":"1","timestamp":"1"}"#,
            r#"{"event_type":"last_trade_price","market":"m","asset_id":"a","price":"0.5","size":"1e3","timestamp":"1"}"#,
            r#"{"event_type":"book","market":"m","asset_id":"a","bids":[],"asks":[],"timestamp":"-4"}"#,
            r#"{"event_type":"book","market":"m","asset_id":"a","bids":{},"asks":[],"timestamp":"4"}"#,
            r#"{"event_type":"tick_size_change","market":"m","asset_id":"a","new_tick_size":"0","timestamp":"4"}"#,
            r#"{"event_type":"price_change","market":"m","timestamp":"4","price_changes":[{"asset_id":"a","price":"0.5","size":"1","side":"HOLD"}]}"#,
        ] {
            let (events, bad) = parse_frame(bad_element).unwrap();
            assert!(events.is_empty() && bad.len() == 1, "{bad_element}: {events:?}");
        }
    }

    #[test]
    fn decimals_are_exact_and_strict() {
        assert_eq!(decimal_text(".48").unwrap(), d("0.48"));
        assert_eq!(decimal_text("0.50").unwrap().normalize(), d("0.5"));
        assert_eq!(decimal_text("219.217767").unwrap(), d("219.217767"));
        for bad in ["", ".", "-", "1e3", "0x10", "1.2.3", "NaN", "1_000", " 1", "+1"] {
            assert!(decimal_text(bad).is_err(), "{bad:?}");
        }
    }
}
