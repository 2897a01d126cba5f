//! Alpaca market data v2 messages, parsed (pure: no I/O, so the fuzz targets call it).
//!
//! The stream sends text frames holding a JSON array of `{"T": type, ...}` messages. Each
//! element is parsed on its own: one bad element is reported and the rest of its frame kept.
//! The REST history answers `{"trades": {SYMBOL: [...]}, "next_page_token": ...}` (the
//! multi-symbol form) or `{"trades": [...], "symbol": ..., ...}` (the single-symbol form); both
//! are read, the same for quotes.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// A trade as both the stream (`T: "t"`) and the REST history send it.
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    pub symbol: String,
    /// `i`: the trade id (unique per exchange; see [`Trade::trade_id`]).
    pub id: u64,
    /// `x`: the exchange code.
    pub exchange: String,
    pub price: f64,
    pub size: f64,
    pub time: DateTime<Utc>,
    /// `c`: trade conditions.
    pub conditions: Vec<String>,
    /// `z`: the tape (A, B, C).
    pub tape: Option<String>,
}

impl Trade {
    /// The id stored in `tapeflow.ticks.trade_id`: exchange and id, so that two exchanges'
    /// equal ids stay apart. The stream and the REST history give the same for a trade, which
    /// is what lets the writer drop the second copy after a gap backfill.
    pub fn trade_id(&self) -> String {
        stored_trade_id(&self.exchange, self.id)
    }
}

/// `T: "x"`: a trade cancelled (`a` = `C`) or reported in error (`E`); either way it did not
/// happen. Field names as alpaca-py's `TRADE_CANCEL_MAPPING`.
#[derive(Debug, Clone, PartialEq)]
pub struct TradeCancel {
    pub symbol: String,
    /// `i`, `x`: the trade's id and exchange.
    pub id: u64,
    pub exchange: String,
    pub price: f64,
    pub size: f64,
    pub time: DateTime<Utc>,
    /// `a`: `C` cancel, `E` error.
    pub action: String,
}

/// `T: "c"`: a trade corrected: the original's id (`oi`) and the corrected trade (`ci`, `cp`,
/// `cs`, `cc`), on one exchange (`x`). Field names as alpaca-py's `TRADE_CORRECTION_MAPPING`.
#[derive(Debug, Clone, PartialEq)]
pub struct TradeCorrection {
    pub symbol: String,
    pub exchange: String,
    pub original_id: u64,
    pub corrected_id: u64,
    pub price: f64,
    pub size: f64,
    pub conditions: Vec<String>,
    pub time: DateTime<Utc>,
}

/// A trade sent before and amended: cancelled or corrected.
#[derive(Debug, Clone, PartialEq)]
pub enum Amendment {
    Cancel(TradeCancel),
    Correction(TradeCorrection),
}

impl Amendment {
    pub fn symbol(&self) -> &str {
        match self {
            Amendment::Cancel(x) => &x.symbol,
            Amendment::Correction(c) => &c.symbol,
        }
    }

    pub fn time(&self) -> DateTime<Utc> {
        match self {
            Amendment::Cancel(x) => x.time,
            Amendment::Correction(c) => c.time,
        }
    }
}

/// The stored id of trade `id` on `exchange` (see [`Trade::trade_id`]).
pub fn stored_trade_id(exchange: &str, id: u64) -> String {
    format!("{exchange}-{id}")
}

/// A top-of-book quote (`T: "q"` on the stream).
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub symbol: String,
    pub bid_exchange: Option<String>,
    pub bid: f64,
    pub bid_size: f64,
    pub ask_exchange: Option<String>,
    pub ask: f64,
    pub ask_size: f64,
    pub time: DateTime<Utc>,
}

/// A one-minute bar (`T: "b"`, or `"u"` for a bar revised by late trades).
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub symbol: String,
    /// The minute's start.
    pub time: DateTime<Utc>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    /// `n`: trades in the bar.
    pub trades: Option<i64>,
    /// `vw`: volume-weighted average price.
    pub vwap: Option<f64>,
    pub updated: bool,
}

/// The symbols a `subscription` message confirms.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Subscription {
    pub trades: Vec<String>,
    pub quotes: Vec<String>,
    pub bars: Vec<String>,
}

/// One message of a stream frame.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamMessage {
    /// `{"T":"success","msg":"connected"}`.
    Connected,
    /// `{"T":"success","msg":"authenticated"}`.
    Authenticated,
    /// Another success message.
    Success(String),
    /// `{"T":"error","code":…,"msg":…}`.
    Error {
        code: i64,
        msg: String,
    },
    Subscription(Subscription),
    Trade(Trade),
    Quote(Quote),
    Bar(Bar),
    /// `T: "x"` or `T: "c"`.
    Amend(Amendment),
    /// A known type this feeder does not use (daily bars, statuses, LULD bands, imbalances):
    /// its `T`.
    Ignored(String),
}

/// Types of the v2 stock stream that are understood but not stored.
const IGNORED_TYPES: &[&str] = &["d", "s", "l", "i"];

/// What the stream's error codes mean for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReaction {
    /// Cannot work as configured (refused keys, a feed the plan lacks): stop and say why;
    /// try again only after a long pause.
    Stop,
    /// Another connection holds the account's only slot: wait long, with backoff.
    BackOffLong,
    /// Reconnect with the usual backoff (and backfill the gap).
    Reconnect,
    /// The server refused one request (a subscription, a message): log it; the session goes on.
    Continue,
}

/// The reaction to a stream error code.
///
/// | code | message | reaction |
/// |---|---|---|
/// | 400 | invalid syntax | continue: our message was refused; the session keeps its subscription |
/// | 401 | not authenticated | reconnect (a message went before the authentication) |
/// | 402 | auth failed | stop: the keys are wrong |
/// | 403 | already authenticated | continue |
/// | 404 | auth timeout | reconnect |
/// | 405 | symbol limit exceeded | continue with the symbols the server kept; logged with the count |
/// | 406 | connection limit exceeded | back off long: another client uses the account's connection |
/// | 407 | slow client | reconnect (the server drops a client that reads too slowly) |
/// | 408 | v2 not enabled | stop |
/// | 409 | insufficient subscription | stop: the plan lacks this feed (sip needs a paid plan) |
/// | 410 | invalid subscribe action for this feed | continue |
/// | 500 | internal error | reconnect with backoff |
/// | other | | reconnect with backoff |
pub fn error_reaction(code: i64) -> ErrorReaction {
    match code {
        402 | 408 | 409 => ErrorReaction::Stop,
        406 => ErrorReaction::BackOffLong,
        400 | 403 | 405 | 410 => ErrorReaction::Continue,
        _ => ErrorReaction::Reconnect,
    }
}

/// Elements that could not be read: the reason and the element's text.
pub type Unreadable = Vec<(String, String)>;

/// Parses a stream frame: the messages read and the elements that could not be.
pub fn parse_stream_frame(text: &str) -> Result<(Vec<StreamMessage>, Unreadable), String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let items = match v {
        Value::Array(items) => items,
        // The protocol always sends arrays; a lone object is read the same.
        obj @ Value::Object(_) => vec![obj],
        other => return Err(format!("a frame is a JSON array, got {}", kind(&other))),
    };
    let mut out = Vec::with_capacity(items.len());
    let mut bad = Vec::new();
    for item in &items {
        match parse_stream_message(item) {
            Ok(m) => out.push(m),
            Err(e) => bad.push((e, item.to_string())),
        }
    }
    Ok((out, bad))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One element of a stream frame.
pub fn parse_stream_message(v: &Value) -> Result<StreamMessage, String> {
    let o = v.as_object().ok_or_else(|| format!("a message is an object, got {}", kind(v)))?;
    let t = o.get("T").and_then(Value::as_str).ok_or("no message type \"T\"")?;
    match t {
        "success" => Ok(match o.get("msg").and_then(Value::as_str).unwrap_or("") {
            "connected" => StreamMessage::Connected,
            "authenticated" => StreamMessage::Authenticated,
            other => StreamMessage::Success(other.to_string()),
        }),
        "error" => {
            let code = o.get("code").and_then(Value::as_i64).ok_or("error without a numeric \"code\"")?;
            let msg = o.get("msg").and_then(Value::as_str).unwrap_or("").to_string();
            Ok(StreamMessage::Error { code, msg })
        }
        "subscription" => {
            let list = |key: &str| -> Result<Vec<String>, String> {
                match o.get(key) {
                    None | Some(Value::Null) => Ok(Vec::new()),
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|s| {
                            s.as_str().map(str::to_string).ok_or(format!("\"{key}\" holds a non-string"))
                        })
                        .collect(),
                    Some(other) => Err(format!("\"{key}\" is {}, not a list", kind(other))),
                }
            };
            Ok(StreamMessage::Subscription(Subscription {
                trades: list("trades")?,
                quotes: list("quotes")?,
                bars: list("bars")?,
            }))
        }
        "t" => Ok(StreamMessage::Trade(trade_from(o, None)?)),
        "q" => Ok(StreamMessage::Quote(quote_from(o, None)?)),
        "b" | "u" => Ok(StreamMessage::Bar(bar_from(o, None, t == "u")?)),
        "x" => Ok(StreamMessage::Amend(Amendment::Cancel(TradeCancel {
            symbol: symbol_of(o, None)?,
            id: whole(o, "i")?,
            exchange: opt_string(o, "x")?.unwrap_or_default(),
            price: number(o, "p")?,
            size: non_negative(o, "s")?,
            time: time(o, "t")?,
            action: opt_string(o, "a")?.unwrap_or_default(),
        }))),
        "c" => Ok(StreamMessage::Amend(Amendment::Correction(TradeCorrection {
            symbol: symbol_of(o, None)?,
            exchange: opt_string(o, "x")?.unwrap_or_default(),
            original_id: whole(o, "oi")?,
            corrected_id: whole(o, "ci")?,
            price: positive_price(o, "cp")?,
            size: non_negative(o, "cs")?,
            conditions: conditions(o, "cc")?,
            time: time(o, "t")?,
        }))),
        other if IGNORED_TYPES.contains(&other) => Ok(StreamMessage::Ignored(other.to_string())),
        other => Err(format!("unknown message type {:?}", truncate(other, 40))),
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The item's own `S`, else the page's symbol (its `symbol` field or the key it is listed
/// under), each held to the same rule: 1 to 64 bytes.
fn symbol_of(o: &Map<String, Value>, fallback: Option<&str>) -> Result<String, String> {
    let valid = |s: &str| !s.is_empty() && s.len() <= 64;
    match o.get("S") {
        Some(Value::String(s)) if valid(s) => Ok(s.clone()),
        Some(Value::String(_)) => Err("symbol \"S\" is empty or too long".into()),
        Some(other) => Err(format!("symbol \"S\" is {}", kind(other))),
        None => match fallback {
            Some(s) if valid(s) => Ok(s.to_string()),
            Some(_) => Err("the page's symbol is empty or too long".into()),
            None => Err("no symbol \"S\"".into()),
        },
    }
}

fn number(o: &Map<String, Value>, key: &str) -> Result<f64, String> {
    match o.get(key) {
        Some(Value::Number(n)) => {
            let x = n.as_f64().ok_or_else(|| format!("\"{key}\" is not a number"))?;
            if x.is_finite() {
                Ok(x)
            } else {
                Err(format!("\"{key}\" is not finite"))
            }
        }
        Some(other) => Err(format!("\"{key}\" is {}, not a number", kind(other))),
        None => Err(format!("no \"{key}\"")),
    }
}

/// A trade's price: a number above 0.
fn positive_price(o: &Map<String, Value>, key: &str) -> Result<f64, String> {
    let price = number(o, key)?;
    if price <= 0.0 {
        return Err(format!("price \"{key}\" is not positive ({price})"));
    }
    Ok(price)
}

/// A trade id: a whole number ≥ 0.
fn whole(o: &Map<String, Value>, key: &str) -> Result<u64, String> {
    match o.get(key) {
        Some(Value::Number(n)) => {
            n.as_u64().ok_or_else(|| format!("trade id \"{key}\" is not a whole number ≥ 0"))
        }
        Some(other) => Err(format!("trade id \"{key}\" is {}", kind(other))),
        None => Err(format!("no trade id \"{key}\"")),
    }
}

fn non_negative(o: &Map<String, Value>, key: &str) -> Result<f64, String> {
    let x = number(o, key)?;
    if x < 0.0 {
        return Err(format!("\"{key}\" is negative ({x})"));
    }
    Ok(x)
}

fn time(o: &Map<String, Value>, key: &str) -> Result<DateTime<Utc>, String> {
    let s = o.get(key).and_then(Value::as_str).ok_or_else(|| format!("no time \"{key}\""))?;
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("time \"{key}\" {:?} is not RFC 3339: {e}", truncate(s, 40)))
}

fn opt_string(o: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 16 => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(format!("\"{key}\" is too long")),
        Some(other) => Err(format!("\"{key}\" is {}, not a string", kind(other))),
    }
}

/// Trade conditions: a list of codes (stocks) or one string (options); at most 32 codes of at
/// most 8 characters, so a hostile frame cannot store a novel per trade.
fn conditions(o: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    let codes: Vec<String> = match o.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|c| {
                c.as_str().map(str::to_string).ok_or_else(|| format!("a condition \"{key}\" is not a string"))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("conditions \"{key}\" are {}", kind(other))),
    };
    if codes.len() > 32 || codes.iter().any(|c| c.len() > 8) {
        return Err(format!("conditions \"{key}\" are too many or too long"));
    }
    Ok(codes)
}

/// A trade from a stream message or a REST item (whose symbol is the key it is listed under).
pub fn trade_from(o: &Map<String, Value>, symbol: Option<&str>) -> Result<Trade, String> {
    let symbol = symbol_of(o, symbol)?;
    let id = whole(o, "i")?;
    let price = positive_price(o, "p")?;
    let exchange = opt_string(o, "x")?.unwrap_or_default();
    Ok(Trade {
        symbol,
        id,
        exchange,
        price,
        size: non_negative(o, "s")?,
        time: time(o, "t")?,
        conditions: conditions(o, "c")?,
        tape: opt_string(o, "z")?,
    })
}

/// A quote from a stream message or a REST item.
pub fn quote_from(o: &Map<String, Value>, symbol: Option<&str>) -> Result<Quote, String> {
    Ok(Quote {
        symbol: symbol_of(o, symbol)?,
        bid_exchange: opt_string(o, "bx")?,
        bid: non_negative(o, "bp")?,
        bid_size: non_negative(o, "bs")?,
        ask_exchange: opt_string(o, "ax")?,
        ask: non_negative(o, "ap")?,
        ask_size: non_negative(o, "as")?,
        time: time(o, "t")?,
    })
}

/// A bar from a stream message or a REST item.
pub fn bar_from(o: &Map<String, Value>, symbol: Option<&str>, updated: bool) -> Result<Bar, String> {
    let (open, high, low, close) = (number(o, "o")?, number(o, "h")?, number(o, "l")?, number(o, "c")?);
    if !(low > 0.0 && low <= open.min(close) && high >= open.max(close)) {
        return Err(format!("bar prices are inconsistent (o {open} h {high} l {low} c {close})"));
    }
    let trades = match o.get("n") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().filter(|n| *n >= 0).ok_or("trade count \"n\" is not a whole number ≥ 0")?),
    };
    let vwap = match o.get("vw") {
        None | Some(Value::Null) => None,
        Some(_) => Some(number(o, "vw")?),
    };
    let t = time(o, "t")?;
    if t.timestamp().rem_euclid(60) != 0 || t.timestamp_subsec_nanos() != 0 {
        return Err(format!("bar time {t} is not the start of a minute"));
    }
    Ok(Bar {
        symbol: symbol_of(o, symbol)?,
        time: t,
        open,
        high,
        low,
        close,
        volume: non_negative(o, "v")?,
        trades,
        vwap,
        updated,
    })
}

/// One page of a REST history answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Items that could not be read.
    pub bad: Unreadable,
    pub next_page_token: Option<String>,
}

/// A page of `GET /v2/stocks/trades` (either form), without the trades that did not stand.
pub fn parse_trades_page(body: &[u8]) -> Result<Page<Trade>, String> {
    parse_page(body, "trades", |o, s| if superseded(o) { Ok(None) } else { trade_from(o, s).map(Some) })
}

/// Whether a history trade did not stand: its update `u` (Alpaca's `stock_trade_update`:
/// `canceled`, `incorrect`, `corrected`) says it was cancelled, or was the incorrect original
/// of a correction, whose corrected trade (`corrected`) is listed as a trade of its own.
fn superseded(o: &Map<String, Value>) -> bool {
    matches!(o.get("u").and_then(Value::as_str), Some("canceled" | "incorrect"))
}

/// A page of `GET /v2/stocks/quotes` (either form).
pub fn parse_quotes_page(body: &[u8]) -> Result<Page<Quote>, String> {
    parse_page(body, "quotes", |o, s| quote_from(o, s).map(Some))
}

/// A page of `GET /v2/stocks/bars` (either form).
pub fn parse_bars_page(body: &[u8]) -> Result<Page<Bar>, String> {
    parse_page(body, "bars", |o, s| bar_from(o, s, false).map(Some))
}

/// `item` reads one item: `None` for one to leave out.
fn parse_page<T>(
    body: &[u8],
    key: &str,
    item: impl Fn(&Map<String, Value>, Option<&str>) -> Result<Option<T>, String>,
) -> Result<Page<T>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let o = v.as_object().ok_or_else(|| format!("the answer is {}, not an object", kind(&v)))?;
    let next_page_token = match o.get("next_page_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if s.len() <= 4096 => Some(s.clone()),
        Some(_) => return Err("\"next_page_token\" is not a short string".into()),
    };
    let mut page = Page { items: Vec::new(), bad: Vec::new(), next_page_token };
    let mut read = |list: &Value, symbol: Option<&str>| -> Result<(), String> {
        let list = match list {
            Value::Null => return Ok(()),
            Value::Array(a) => a,
            other => return Err(format!("\"{key}\" holds {}, not a list", kind(other))),
        };
        for it in list {
            match it.as_object() {
                Some(obj) => match item(obj, symbol) {
                    Ok(Some(t)) => page.items.push(t),
                    Ok(None) => {}
                    Err(e) => page.bad.push((e, it.to_string())),
                },
                None => page.bad.push((format!("an item is {}", kind(it)), it.to_string())),
            }
        }
        Ok(())
    };
    match o.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::Object(by_symbol)) => {
            for (symbol, list) in by_symbol {
                read(list, Some(symbol))?;
            }
        }
        Some(list @ Value::Array(_)) => {
            let symbol = o.get("symbol").and_then(Value::as_str);
            read(list, symbol)?;
        }
        Some(other) => return Err(format!("\"{key}\" is {}", kind(other))),
    }
    Ok(page)
}

/// The body of an Alpaca data API error (`{"message": …}`, sometimes with a `code`).
pub fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => v.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or(text),
        Err(_) => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_page_symbol_is_held_to_the_item_rule() {
        let item = r#"{"t":"2021-02-22T15:51:44Z","x":"V","p":1,"s":5,"c":[],"i":7,"z":"C"}"#;
        for body in
            [format!(r#"{{"trades":{{"":[{item}]}}}}"#), format!(r#"{{"trades":[{item}],"symbol":""}}"#)]
        {
            let page = parse_trades_page(body.as_bytes()).unwrap();
            assert!(page.items.is_empty(), "{body}");
            assert_eq!(page.bad.len(), 1, "{body}");
            assert!(page.bad[0].0.contains("page's symbol"), "{:?}", page.bad);
        }
        let page = parse_trades_page(format!(r#"{{"trades":{{"AAPL":[{item}]}}}}"#).as_bytes()).unwrap();
        assert_eq!(page.items[0].symbol, "AAPL");
    }

    #[test]
    fn control_messages_of_the_docs() {
        let (m, bad) = parse_stream_frame(r#"[{"T":"success","msg":"connected"}]"#).unwrap();
        assert_eq!((m, bad.len()), (vec![StreamMessage::Connected], 0));
        let (m, _) = parse_stream_frame(r#"[{"T":"success","msg":"authenticated"}]"#).unwrap();
        assert_eq!(m, vec![StreamMessage::Authenticated]);
        let (m, _) =
            parse_stream_frame(r#"[{"T":"error","code":406,"msg":"connection limit exceeded"}]"#).unwrap();
        assert_eq!(m, vec![StreamMessage::Error { code: 406, msg: "connection limit exceeded".into() }]);
        let (m, _) = parse_stream_frame(
            r#"[{"T":"subscription","trades":["AAPL"],"quotes":["AMD","CLDR"],"bars":["IBM","AAPL","VOO"],
                 "updatedBars":[],"dailyBars":[],"statuses":[],"lulds":[],"corrections":["AAPL"],"cancelErrors":["AAPL"]}]"#,
        )
        .unwrap();
        assert_eq!(
            m,
            vec![StreamMessage::Subscription(Subscription {
                trades: vec!["AAPL".into()],
                quotes: vec!["AMD".into(), "CLDR".into()],
                bars: vec!["IBM".into(), "AAPL".into(), "VOO".into()],
            })]
        );
    }

    #[test]
    fn data_messages_of_the_docs() {
        let frame = r#"[{"T":"t","i":96921,"S":"AAPL","x":"D","p":126.55,"s":1,"t":"2021-02-22T15:51:44.208Z","c":["@","I"],"z":"C"},
            {"T":"q","S":"AMD","bx":"U","bp":87.66,"bs":1,"ax":"Q","ap":87.68,"as":4,"t":"2021-02-22T15:51:45.335689322Z","c":["R"],"z":"C"},
            {"T":"b","S":"SPY","o":388.985,"h":389.13,"l":388.975,"c":389.12,"v":49378,"t":"2021-02-22T19:15:00Z"},
            {"T":"d","S":"SPY","o":388.985,"h":389.13,"l":388.975,"c":389.12,"v":749378,"t":"2021-02-16T04:00:00Z"},
            {"T":"s","S":"AAPL","sc":"H","sm":"Trading Halt","rc":"T12","rm":"Trading Halted","t":"2021-02-22T19:15:00Z","z":"C"}]"#;
        let (m, bad) = parse_stream_frame(frame).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        let StreamMessage::Trade(t) = &m[0] else { panic!("{m:?}") };
        assert_eq!(
            (t.symbol.as_str(), t.id, t.exchange.as_str(), t.price, t.size),
            ("AAPL", 96921, "D", 126.55, 1.0)
        );
        assert_eq!(t.conditions, vec!["@", "I"]);
        assert_eq!(t.time.to_rfc3339(), "2021-02-22T15:51:44.208+00:00");
        assert_eq!(t.trade_id(), "D-96921");
        let StreamMessage::Quote(q) = &m[1] else { panic!() };
        assert_eq!((q.bid, q.ask, q.bid_size, q.ask_size), (87.66, 87.68, 1.0, 4.0));
        assert_eq!(q.time.timestamp_subsec_nanos(), 335_689_322);
        let StreamMessage::Bar(b) = &m[2] else { panic!() };
        assert_eq!((b.volume, b.trades, b.updated), (49378.0, None, false));
        assert_eq!(m[3], StreamMessage::Ignored("d".into()));
        assert_eq!(m[4], StreamMessage::Ignored("s".into()));
    }

    /// Field names as alpaca-py maps them (`TRADE_CANCEL_MAPPING`, `TRADE_CORRECTION_MAPPING`).
    #[test]
    fn cancels_and_corrections_name_the_trade_they_amend() {
        let frame = r#"[{"T":"x","S":"AAPL","i":96921,"x":"D","p":126.55,"s":1,"a":"C","z":"C","t":"2021-02-22T15:51:44.208Z"},
            {"T":"c","S":"AAPL","x":"D","oi":96922,"op":126.55,"os":1,"oc":["@"],"ci":96930,"cp":126.5,"cs":3,"cc":["@","I"],"z":"C","t":"2021-02-22T15:51:45Z"}]"#;
        let (m, bad) = parse_stream_frame(frame).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        let StreamMessage::Amend(Amendment::Cancel(x)) = &m[0] else { panic!("{m:?}") };
        assert_eq!(
            (x.symbol.as_str(), x.id, x.exchange.as_str(), x.action.as_str()),
            ("AAPL", 96921, "D", "C")
        );
        assert_eq!(stored_trade_id(&x.exchange, x.id), "D-96921");
        let StreamMessage::Amend(Amendment::Correction(c)) = &m[1] else { panic!("{m:?}") };
        assert_eq!((c.original_id, c.corrected_id, c.price, c.size), (96922, 96930, 126.5, 3.0));
        assert_eq!(c.conditions, vec!["@", "I"]);
        for broken in [
            json!({"T":"x","S":"AAPL","x":"D","p":1,"s":1,"a":"C","t":"2021-02-22T15:51:44Z"}),
            json!({"T":"x","S":"AAPL","i":-4,"x":"D","p":1,"s":1,"a":"C","t":"2021-02-22T15:51:44Z"}),
            json!({"T":"c","S":"AAPL","x":"D","oi":1,"ci":2,"cp":0,"cs":1,"t":"2021-02-22T15:51:44Z"}),
            json!({"T":"c","S":"AAPL","x":"D","oi":1,"cp":1,"cs":1,"t":"2021-02-22T15:51:44Z"}),
            json!({"T":"c","S":"AAPL","x":"D","oi":1,"ci":2,"cp":1,"cs":-1,"t":"2021-02-22T15:51:44Z"}),
            json!({"T":"c","S":"AAPL","x":"D","oi":1,"ci":2,"cp":1,"cs":1,"cc":[7],"t":"2021-02-22T15:51:44Z"}),
        ] {
            assert!(parse_stream_message(&broken).is_err(), "{broken}");
        }
    }

    #[test]
    fn history_trades_that_did_not_stand_are_left_out() {
        let page = br#"{"trades":{"AAPL":[{"t":"2022-03-09T05:00:02Z","x":"D","p":159.07,"s":1,"i":151,"u":"canceled"},
                         {"t":"2022-03-09T05:00:03Z","x":"D","p":159.07,"s":2,"i":152,"u":"incorrect"},
                         {"t":"2022-03-09T05:00:03Z","x":"D","p":159.01,"s":2,"i":160,"u":"corrected"},
                         {"t":"2022-03-09T05:00:04Z","x":"D","p":159.02,"s":5,"i":153}]},"next_page_token":null}"#;
        let p = parse_trades_page(page).unwrap();
        let ids: Vec<u64> = p.items.iter().map(|t| t.id).collect();
        assert_eq!(ids, [160, 153]);
        assert!(p.bad.is_empty());
    }

    #[test]
    fn a_bad_element_does_not_spoil_its_frame() {
        let frame = r#"[{"T":"t","S":"AAPL","x":"D","p":-1,"s":1,"i":1,"t":"2021-02-22T15:51:44Z"},
                        {"T":"zz"}, 7, {"no":"type"},
                        {"T":"t","S":"AAPL","x":"D","p":1.5,"s":1,"i":2,"t":"2021-02-22T15:51:44Z"}]"#;
        let (m, bad) = parse_stream_frame(frame).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(bad.len(), 4);
        assert!(bad[0].0.contains("price"), "{bad:?}");
        assert!(bad[1].0.contains("unknown message type"), "{bad:?}");
        assert!(parse_stream_frame("{not json").unwrap_err().contains("not JSON"));
        assert!(parse_stream_frame("42").unwrap_err().contains("array"));
        for broken in [
            json!({"T":"t","S":"A","x":"D","p":1,"s":1,"i":1.5,"t":"2021-02-22T15:51:44Z"}),
            json!({"T":"t","S":"A","x":"D","p":1,"s":1,"t":"2021-02-22T15:51:44Z"}),
            json!({"T":"t","S":"A","x":"D","p":1,"s":1,"i":1,"t":"yesterday"}),
            json!({"T":"t","S":"","x":"D","p":1,"s":1,"i":1,"t":"2021-02-22T15:51:44Z"}),
            json!({"T":"q","S":"A","bp":null,"bs":1,"ap":1,"as":1,"t":"2021-02-22T15:51:44Z"}),
            json!({"T":"b","S":"A","o":2,"h":1,"l":1,"c":1,"v":1,"t":"2021-02-22T15:51:00Z"}),
            json!({"T":"b","S":"A","o":1,"h":1,"l":1,"c":1,"v":1,"t":"2021-02-22T15:51:30Z"}),
            json!({"T":"error","msg":"no code"}),
        ] {
            assert!(parse_stream_message(&broken).is_err(), "{broken}");
        }
    }

    #[test]
    fn rest_pages_in_both_forms() {
        let multi = br#"{"trades":{"AAPL":[{"t":"2022-03-09T05:00:02.183Z","x":"D","p":159.07,"s":1,"c":["@","T","I"],"i":151,"z":"C"},
                          {"t":"2022-03-09T05:00:16.91Z","x":"D","p":159.07,"s":2,"c":["@","T","I"],"i":168,"z":"C"}]},
                         "next_page_token":"QUFQTHwyMDIy"}"#;
        let p = parse_trades_page(multi).unwrap();
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.items[1].symbol, "AAPL");
        assert_eq!(p.items[1].trade_id(), "D-168");
        assert_eq!(p.next_page_token.as_deref(), Some("QUFQTHwyMDIy"));
        let single = br#"{"trades":[{"t":"2022-04-11T12:00:36.002951946Z","x":"V","p":168.04,"s":50,"c":["@","T","I"],"i":1,"z":"C"}],
                          "symbol":"AAPL","next_page_token":null}"#;
        let p = parse_trades_page(single).unwrap();
        assert_eq!((p.items[0].symbol.as_str(), p.next_page_token), ("AAPL", None));
        let empty = br#"{"next_page_token": null, "trades": {}}"#;
        assert!(parse_trades_page(empty).unwrap().items.is_empty());
        let quotes = br#"{"quotes":{"AAPL":[{"t":"2022-03-09T09:00:00.000059Z","ax":"K","ap":158.65,"as":1,"bx":"Q","bp":159.52,"bs":4,"c":["R"],"z":"C"}]},"next_page_token":null}"#;
        let q = parse_quotes_page(quotes).unwrap();
        assert_eq!((q.items[0].bid, q.items[0].ask), (159.52, 158.65));
        let bars = br#"{"bars":[{"t":"2022-04-11T08:00:00Z","o":168.99,"h":169.81,"l":168.99,"c":169,"v":7170,"n":206,"vw":169.233976}],"symbol":"AAPL","next_page_token":"x"}"#;
        let b = parse_bars_page(bars).unwrap();
        assert_eq!((b.items[0].trades, b.items[0].vwap), (Some(206), Some(169.233976)));
        let one_bad = br#"{"trades":{"AAPL":[{"t":"2022-03-09T05:00:02Z","x":"D","p":"159","s":1,"i":1}]}}"#;
        assert_eq!(parse_trades_page(one_bad).unwrap().bad.len(), 1);
        assert!(parse_trades_page(b"[]").is_err());
        assert_eq!(error_message(br#"{"message":"forbidden."}"#), "forbidden.");
    }

    #[test]
    fn error_codes_map_to_reactions() {
        assert_eq!(error_reaction(402), ErrorReaction::Stop);
        assert_eq!(error_reaction(409), ErrorReaction::Stop);
        assert_eq!(error_reaction(406), ErrorReaction::BackOffLong);
        assert_eq!(error_reaction(405), ErrorReaction::Continue);
        assert_eq!(error_reaction(400), ErrorReaction::Continue);
        assert_eq!(error_reaction(404), ErrorReaction::Reconnect);
        assert_eq!(error_reaction(500), ErrorReaction::Reconnect);
        assert_eq!(error_reaction(407), ErrorReaction::Reconnect);
    }
}
