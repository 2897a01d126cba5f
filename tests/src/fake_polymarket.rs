//! A fake Polymarket for tests: the Gamma REST API's market listing (`GET /markets`, paginated
//! and filtered, `GET /tags/slug/{slug}`) and the CLOB market channel (`/ws/market` WebSocket),
//! close enough to the real ones that the feeder's `polymarket` provider runs against it
//! unchanged with its URLs pointed at `127.0.0.1`.
//!
//! Message shapes come from `shared/data/c_protocol/polymarket/` (see `fake_polymarket.md`
//! beside this file for which fact came from where and what is assumed): Gamma markets are the
//! captured `gamma_market.json` with the test's fields laid over it, the first snapshot of a
//! book seeded from a capture is the captured message itself (its real hash), later messages
//! are built in the captured shapes. The fake keeps its own book per token (hashing it as the
//! venue does) so `best_bid`/`best_ask` and hashes are always those of the fake's book.
//!
//! Hostile switches, at run time: frames as JSON arrays or single objects, unknown event
//! types, raw and huge frames, wrong book hashes, frames held back and released out of order, a
//! replayed trade, dropped and refused connections, Gamma errors.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tapeflow_analytics::polymarket::book::{Book, Level};
use tokio::sync::mpsc;

fn capture_text(rel: &str) -> String {
    let path = crate::ground_truth::data_dir().join("c_protocol/polymarket").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A captured message, parsed.
pub fn capture(rel: &str) -> Value {
    serde_json::from_str(&capture_text(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn d(s: &str) -> Decimal {
    let s = if let Some(rest) = s.strip_prefix('.') { format!("0.{rest}") } else { s.to_string() };
    Decimal::from_str(&s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A market the fake lists.
#[derive(Debug, Clone)]
pub struct FakeMarket {
    pub gamma_id: String,
    pub condition_id: String,
    pub question: String,
    pub slug: String,
    pub outcomes: [String; 2],
    pub tokens: [String; 2],
    /// (Gamma tag id, tag slug).
    pub tags: Vec<(String, String)>,
    pub end_date: DateTime<Utc>,
    pub neg_risk: bool,
    pub neg_risk_market_id: Option<String>,
    /// `feeSchedule` {rate, exponent}; `None` with `fees_enabled` leaves only the fee type.
    pub fee_schedule: Option<(String, u32)>,
    pub fees_enabled: bool,
    pub fee_type: Option<String>,
    pub tick_size: String,
    pub min_order_size: u32,
    pub active: bool,
    pub closed: bool,
}

/// The market of the captured book and trade messages: 0xdd22…0917, "Will Donald Trump win the
/// 2024 US Presidential Election?", YES 2174…6455 and NO 4833…5732 (CLOB `market.json`).
pub const TRUMP_CONDITION: &str = "0xdd22472e552920b8438158ea7238bfadfa4f736aa4cee91a6b86c39ead110917";
pub const TRUMP_YES: &str = "21742633143463906290569050155826241533067272736897614950488156847949938836455";
pub const TRUMP_NO: &str = "48331043336612883890938759509493159234755048973500640148014422747788308965732";

impl FakeMarket {
    /// The captured market (see [`TRUMP_CONDITION`]), tagged politics (Gamma tag 2).
    pub fn captured() -> FakeMarket {
        let clob = capture("nautilus_py_tests_http_responses/market.json");
        FakeMarket {
            gamma_id: "253591".into(),
            condition_id: clob["condition_id"].as_str().unwrap().into(),
            question: clob["question"].as_str().unwrap().into(),
            slug: clob["market_slug"].as_str().unwrap().into(),
            outcomes: ["Yes".into(), "No".into()],
            tokens: [
                clob["tokens"][0]["token_id"].as_str().unwrap().into(),
                clob["tokens"][1]["token_id"].as_str().unwrap().into(),
            ],
            tags: vec![("2".into(), "politics".into()), ("1101".into(), "us-presidential-election".into())],
            end_date: Utc::now() + chrono::Duration::days(30),
            neg_risk: true,
            neg_risk_market_id: clob["neg_risk_market_id"].as_str().map(String::from),
            fee_schedule: Some(("0.04".into(), 1)),
            fees_enabled: true,
            fee_type: None,
            tick_size: "0.001".into(),
            min_order_size: 5,
            active: true,
            closed: false,
        }
    }

    /// A synthetic market number `n`: condition `0x…n`, tokens `9…n1` / `9…n2`, tag `tag`.
    pub fn synthetic(n: u32, tag: (&str, &str)) -> FakeMarket {
        FakeMarket {
            gamma_id: format!("{}", 900_000 + n),
            condition_id: format!("0x{:064x}", 0xabc0_0000_u64 + u64::from(n)),
            question: format!("Will synthetic event {n} happen?"),
            slug: format!("synthetic-event-{n}"),
            outcomes: ["Yes".into(), "No".into()],
            tokens: [format!("9{n:075}1"), format!("9{n:075}2")],
            tags: vec![(tag.0.into(), tag.1.into())],
            end_date: Utc::now() + chrono::Duration::days(i64::from(n % 60) + 1),
            neg_risk: false,
            neg_risk_market_id: None,
            fee_schedule: None,
            fees_enabled: false,
            fee_type: None,
            tick_size: "0.01".into(),
            min_order_size: 5,
            active: true,
            closed: false,
        }
    }

    /// The Gamma object: the captured `gamma_market.json` with this market's fields.
    fn gamma_json(&self, include_tag: bool) -> Value {
        let mut v = capture("nautilus_crates_test_data/gamma_market.json");
        let end = self.end_date.to_rfc3339_opts(SecondsFormat::Secs, true);
        v["id"] = json!(self.gamma_id);
        v["conditionId"] = json!(self.condition_id);
        v["question"] = json!(self.question);
        v["slug"] = json!(self.slug);
        v["description"] = json!(format!("This market resolves to Yes if {}", self.question));
        v["outcomes"] = json!(serde_json::to_string(&self.outcomes).unwrap());
        v["clobTokenIds"] = json!(serde_json::to_string(&self.tokens).unwrap());
        v["endDate"] = json!(end);
        v["endDateIso"] = json!(self.end_date.format("%Y-%m-%d").to_string());
        v["negRisk"] = json!(self.neg_risk);
        v["negRiskMarketID"] = json!(self.neg_risk_market_id);
        v["feesEnabled"] = json!(self.fees_enabled);
        v["feeType"] = json!(self.fee_type);
        v["feeSchedule"] = match &self.fee_schedule {
            Some((rate, exp)) => {
                json!({"exponent": exp, "rate": rate.parse::<f64>().unwrap(), "rebateRate": 0.25, "takerOnly": true})
            }
            None => Value::Null,
        };
        v["orderPriceMinTickSize"] = json!(self.tick_size.parse::<f64>().unwrap());
        v["orderMinSize"] = json!(self.min_order_size);
        v["active"] = json!(self.active);
        v["closed"] = json!(self.closed);
        v["acceptingOrders"] = json!(!self.closed);
        if let Some(e) = v["events"].get_mut(0) {
            e["id"] = json!(format!("e{}", self.gamma_id));
            e["slug"] = json!(format!("event-{}", self.slug));
            e["negRisk"] = json!(self.neg_risk);
            e["endDate"] = json!(end);
        }
        if include_tag {
            v["tags"] = Value::Array(
                self.tags
                    .iter()
                    .map(|(id, slug)| json!({"id": id, "label": slug.replace('-', " "), "slug": slug}))
                    .collect(),
            );
        }
        v
    }
}

/// How the fake frames its market-channel messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Each message in a one-element JSON array (and a subscription's books in one array).
    Array,
    /// Each message a JSON object of its own frame.
    Object,
}

/// What the next Gamma request gets instead of its answer.
#[derive(Debug, Clone)]
pub enum GammaFault {
    ServerError,
    /// 200 with a body that is not JSON.
    Garbage,
}

#[derive(Debug, Clone)]
struct FakeBook {
    market: String,
    bids: BTreeMap<Decimal, Decimal>,
    asks: BTreeMap<Decimal, Decimal>,
    ts: i64,
    /// The captured message to send as long as the book is unchanged.
    verbatim: Option<String>,
}

impl FakeBook {
    fn book(&self) -> Book {
        let lv =
            |m: &BTreeMap<Decimal, Decimal>| m.iter().map(|(p, s)| Level::new(*p, *s)).collect::<Vec<_>>();
        Book::from_snapshot(lv(&self.bids), lv(&self.asks)).expect("the fake's book is valid")
    }

    fn top(&self) -> (Option<Decimal>, Option<Decimal>) {
        (self.bids.keys().next_back().copied(), self.asks.keys().next().copied())
    }
}

fn dec(x: &Decimal) -> String {
    x.normalize().to_string()
}

enum Out {
    Text(String),
    /// Close the socket abruptly (no close frame).
    Drop,
}

struct Session {
    id: usize,
    assets: BTreeSet<String>,
    custom: bool,
    tx: mpsc::UnboundedSender<Out>,
}

#[derive(Default)]
struct State_ {
    markets: Vec<FakeMarket>,
    books: HashMap<String, FakeBook>,
    sessions: Vec<Session>,
    next_session: usize,
    last_ms: i64,
    client_messages: Vec<String>,
    gamma_requests: Vec<String>,
    gamma_faults: Vec<GammaFault>,
    /// Market-data messages held back (see [`FakePolymarket::hold`]), with their tokens.
    held: Vec<(Vec<String>, String)>,
    holding: bool,
    corrupt_hashes: usize,
    last_trade: HashMap<String, String>,
    pings: usize,
}

struct Shared {
    state: Mutex<State_>,
    connections: AtomicUsize,
    refuse: AtomicBool,
    array: AtomicBool,
}

fn lock(s: &Shared) -> MutexGuard<'_, State_> {
    s.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running fake; dropping it stops the server.
pub struct FakePolymarket {
    /// `http://127.0.0.1:<port>` (Gamma's base URL).
    pub gamma_url: String,
    /// `ws://127.0.0.1:<port>/ws/market`.
    pub ws_url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakePolymarket {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakePolymarket {
    pub async fn start() -> FakePolymarket {
        let shared = Arc::new(Shared {
            state: Mutex::new(State_::default()),
            connections: AtomicUsize::new(0),
            refuse: AtomicBool::new(false),
            array: AtomicBool::new(true),
        });
        let app = Router::new()
            .route("/markets", get(markets))
            .route("/tags/slug/:slug", get(tag_by_slug))
            .route("/ws/market", get(ws_upgrade))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakePolymarket {
            gamma_url: format!("http://{addr}"),
            ws_url: format!("ws://{addr}/ws/market"),
            shared,
            server,
        }
    }

    fn state(&self) -> MutexGuard<'_, State_> {
        lock(&self.shared)
    }

    /// Lists a market on Gamma; its tokens' books start empty.
    pub fn add_market(&self, m: FakeMarket) {
        let mut st = self.state();
        for t in &m.tokens {
            st.books.entry(t.clone()).or_insert_with(|| FakeBook {
                market: m.condition_id.clone(),
                bids: BTreeMap::new(),
                asks: BTreeMap::new(),
                ts: 0,
                verbatim: None,
            });
        }
        st.markets.retain(|x| x.condition_id != m.condition_id);
        st.markets.push(m);
    }

    /// Seeds a token's book from a captured `book` message (sent verbatim, real hash, as long as
    /// the book is unchanged).
    pub fn seed_book_from_capture(&self, rel: &str) {
        let text = capture_text(rel);
        let v: Value = serde_json::from_str(&text).unwrap();
        let side = |key: &str| -> BTreeMap<Decimal, Decimal> {
            v[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| (d(l["price"].as_str().unwrap()), d(l["size"].as_str().unwrap())))
                .collect()
        };
        let compact = serde_json::to_string(&v).unwrap();
        let book = FakeBook {
            market: v["market"].as_str().unwrap().into(),
            bids: side("bids"),
            asks: side("asks"),
            ts: v["timestamp"].as_str().unwrap().parse().unwrap(),
            verbatim: Some(compact),
        };
        self.state().books.insert(v["asset_id"].as_str().unwrap().into(), book);
    }

    /// Replaces a token's book (not announced: the next snapshot shows it).
    pub fn set_book(&self, token: &str, bids: &[(&str, &str)], asks: &[(&str, &str)]) {
        let mut st = self.state();
        let ts = Self::next_ms(&mut st);
        let b = st.books.get_mut(token).expect("a token of a listed market");
        b.bids = bids.iter().map(|(p, s)| (d(p), d(s))).collect();
        b.asks = asks.iter().map(|(p, s)| (d(p), d(s))).collect();
        b.ts = ts;
        b.verbatim = None;
    }

    fn next_ms(st: &mut State_) -> i64 {
        let now = Utc::now().timestamp_millis();
        st.last_ms = now.max(st.last_ms + 1);
        st.last_ms
    }

    /// The fake's top of a token's book (best bid, best ask).
    pub fn top(&self, token: &str) -> (Option<Decimal>, Option<Decimal>) {
        self.state().books[token].top()
    }

    /// The fake's whole book of a token, best first: (bid prices, ask prices).
    pub fn depth(&self, token: &str) -> (Vec<Decimal>, Vec<Decimal>) {
        let st = self.state();
        let b = &st.books[token];
        (b.bids.keys().rev().copied().collect(), b.asks.keys().copied().collect())
    }

    fn book_message(st: &mut State_, token: &str) -> String {
        let corrupt = st.corrupt_hashes > 0;
        if corrupt {
            st.corrupt_hashes -= 1;
        }
        let b = &st.books[token];
        if let (Some(v), false) = (&b.verbatim, corrupt) {
            return v.clone();
        }
        let mut hash = b.book().venue_hash(&b.market, token);
        if corrupt {
            hash = format!("{:0>40}", "badc0ffee");
        }
        // As the venue lists them: bids ascending, asks descending (best last).
        let bids: Vec<Value> = b.bids.iter().map(|(p, s)| json!({"price": dec(p), "size": dec(s)})).collect();
        let asks: Vec<Value> =
            b.asks.iter().rev().map(|(p, s)| json!({"price": dec(p), "size": dec(s)})).collect();
        json!({"event_type": "book", "asset_id": token, "market": b.market, "bids": bids, "asks": asks,
               "timestamp": b.ts.max(1).to_string(), "hash": hash})
        .to_string()
    }

    /// Sends `msg` (one message object as text) to the sessions subscribed to any of `tokens`
    /// (every session with the custom features when there are none), framed as configured, or
    /// holds it back.
    fn publish(shared: &Shared, st: &mut State_, tokens: &[String], msg: String) {
        if st.holding {
            st.held.push((tokens.to_vec(), msg));
            return;
        }
        let frame = if shared.array.load(Ordering::SeqCst) { format!("[{msg}]") } else { msg };
        for s in &st.sessions {
            let to = if tokens.is_empty() { s.custom } else { tokens.iter().any(|t| s.assets.contains(t)) };
            if to {
                let _ = s.tx.send(Out::Text(frame.clone()));
            }
        }
    }

    /// A `price_change` (v2, batched) of one market: each (token, side BUY|SELL, price, size)
    /// sets a level of the fake's book; every entry carries the top and hash after it.
    pub fn price_change(&self, entries: &[(&str, &str, &str, &str)]) -> i64 {
        let mut st = self.state();
        let ts = Self::next_ms(&mut st);
        let mut out = Vec::new();
        let mut market = String::new();
        for (token, side, price, size) in entries {
            let b = st.books.get_mut(*token).expect("a listed token");
            market.clone_from(&b.market);
            let levels = if *side == "BUY" { &mut b.bids } else { &mut b.asks };
            let (p, s) = (d(price), d(size));
            if s.is_zero() {
                levels.remove(&p);
            } else {
                levels.insert(p, s);
            }
            b.ts = ts;
            b.verbatim = None;
            let (bb, ba) = b.top();
            out.push(json!({"asset_id": token, "price": price, "size": size, "side": side,
                "hash": b.book().venue_hash(&b.market, token),
                "best_bid": bb.map_or("0".to_string(), |x| dec(&x)), "best_ask": ba.map_or("1".to_string(), |x| dec(&x))}));
        }
        let msg = json!({"market": market, "price_changes": out, "timestamp": ts.to_string(), "event_type": "price_change"})
            .to_string();
        let tokens: Vec<String> = entries.iter().map(|e| e.0.to_string()).collect();
        Self::publish(&self.shared, &mut st, &tokens, msg);
        ts
    }

    /// A `price_change` in the v1 (flat, one level) shape of `price_change.json`.
    pub fn price_change_v1(&self, token: &str, side: &str, price: &str, size: &str) -> i64 {
        let mut st = self.state();
        let ts = Self::next_ms(&mut st);
        let b = st.books.get_mut(token).expect("a listed token");
        let levels = if side == "BUY" { &mut b.bids } else { &mut b.asks };
        if d(size).is_zero() {
            levels.remove(&d(price));
        } else {
            levels.insert(d(price), d(size));
        }
        b.ts = ts;
        b.verbatim = None;
        let mut v = capture("nautilus_py_tests_ws_messages/price_change.json");
        v["asset_id"] = json!(token);
        v["market"] = json!(b.market);
        v["price"] = json!(price);
        v["side"] = json!(side);
        v["size"] = json!(size);
        v["hash"] = json!(b.book().venue_hash(&b.market, token));
        v["timestamp"] = json!(ts.to_string());
        Self::publish(&self.shared, &mut st, &[token.to_string()], v.to_string());
        ts
    }

    /// A `last_trade_price` (the captured message's shape): the taker's side BUY|SELL. Returns
    /// the trade's timestamp (ms).
    pub fn trade(&self, token: &str, side: &str, price: &str, size: &str) -> i64 {
        let mut st = self.state();
        let ts = Self::next_ms(&mut st);
        let mut v = capture("nautilus_py_tests_ws_messages/last_trade_price.json");
        v["asset_id"] = json!(token);
        v["market"] = json!(st.books[token].market);
        v["price"] = json!(price);
        v["side"] = json!(side);
        v["size"] = json!(size);
        v["timestamp"] = json!(ts.to_string());
        let msg = v.to_string();
        st.last_trade.insert(token.to_string(), msg.clone());
        Self::publish(&self.shared, &mut st, &[token.to_string()], msg);
        ts
    }

    /// Sends the token's last trade message again, unchanged (as a server replaying it would).
    pub fn replay_last_trade(&self, token: &str) {
        let mut st = self.state();
        let msg = st.last_trade[token].clone();
        Self::publish(&self.shared, &mut st, &[token.to_string()], msg);
    }

    pub fn tick_size_change(&self, token: &str, old: &str, new: &str) {
        let mut st = self.state();
        let ts = Self::next_ms(&mut st);
        let mut v = capture("nautilus_py_tests_ws_messages/tick_size_change.json");
        v["asset_id"] = json!(token);
        v["market"] = json!(st.books[token].market);
        v["old_tick_size"] = json!(old);
        v["new_tick_size"] = json!(new);
        v["timestamp"] = json!(ts.to_string());
        Self::publish(&self.shared, &mut st, &[token.to_string()], v.to_string());
    }

    /// A `best_bid_ask` of the fake's book, or with the given prices (a disagreement).
    pub fn best_bid_ask(&self, token: &str, forced: Option<(&str, &str)>) {
        let mut st = self.state();
        let ts = Self::next_ms(&mut st);
        let b = &st.books[token];
        let (bid, ask) = match forced {
            Some((bid, ask)) => (bid.to_string(), ask.to_string()),
            None => {
                let (bb, ba) = b.top();
                (bb.map_or("0".into(), |x| dec(&x)), ba.map_or("1".into(), |x| dec(&x)))
            }
        };
        let mut v = capture("nautilus_crates_test_data/ws_market_best_bid_ask_msg.json");
        v["asset_id"] = json!(token);
        v["market"] = json!(b.market);
        v["best_bid"] = json!(bid);
        v["best_ask"] = json!(ask);
        v["spread"] = json!(dec(&(d(&ask) - d(&bid))));
        v["timestamp"] = json!(ts.to_string());
        Self::publish(&self.shared, &mut st, &[token.to_string()], v.to_string());
    }

    /// Lists a market and announces it with `new_market` (to sessions with the custom features).
    pub fn new_market(&self, m: FakeMarket) {
        self.add_market(m.clone());
        let mut st = self.state();
        let ts = Self::next_ms(&mut st);
        let mut v = capture("nautilus_crates_test_data/ws_market_new_market_msg.json");
        v["id"] = json!(m.gamma_id);
        v["question"] = json!(m.question);
        v["market"] = json!(m.condition_id);
        v["condition_id"] = json!(m.condition_id);
        v["slug"] = json!(m.slug);
        v["assets_ids"] = json!(m.tokens);
        v["clob_token_ids"] = json!(m.tokens);
        v["outcomes"] = json!(m.outcomes);
        v["tags"] = json!(m.tags.iter().map(|t| t.1.clone()).collect::<Vec<_>>());
        v["order_price_min_tick_size"] = json!(m.tick_size);
        v["timestamp"] = json!(ts.to_string());
        Self::publish(&self.shared, &mut st, &[], v.to_string());
    }

    /// Resolves a market: closed on Gamma, announced with `market_resolved`.
    pub fn resolve(&self, condition_id: &str, winner: usize) -> i64 {
        let mut st = self.state();
        let ts = Self::next_ms(&mut st);
        let m = st.markets.iter_mut().find(|m| m.condition_id == condition_id).expect("a listed market");
        m.closed = true;
        let m = m.clone();
        let mut v = capture("nautilus_crates_test_data/ws_market_resolved_msg.json");
        v["id"] = json!(m.gamma_id);
        v["market"] = json!(m.condition_id);
        v["assets_ids"] = json!(m.tokens);
        v["winning_asset_id"] = json!(m.tokens[winner]);
        v["winning_outcome"] = json!(m.outcomes[winner]);
        v["tags"] = json!(m.tags.iter().map(|t| t.1.clone()).collect::<Vec<_>>());
        v["timestamp"] = json!(ts.to_string());
        Self::publish(&self.shared, &mut st, &[], v.to_string());
        ts
    }

    /// Frames as arrays (the default) or single objects.
    pub fn set_framing(&self, f: Framing) {
        self.shared.array.store(f == Framing::Array, Ordering::SeqCst);
    }

    /// The next `n` book snapshots carry a hash that is not their levels'.
    pub fn corrupt_hashes(&self, n: usize) {
        self.state().corrupt_hashes = n;
    }

    /// While on, market-data messages are held back instead of sent.
    pub fn hold(&self, on: bool) {
        self.state().holding = on;
    }

    /// Sends the held messages in the reverse order (out-of-order delivery).
    pub fn release_reversed(&self) {
        let mut st = self.state();
        st.holding = false;
        let held = std::mem::take(&mut st.held);
        for (tokens, msg) in held.into_iter().rev() {
            Self::publish(&self.shared, &mut st, &tokens, msg);
        }
    }

    /// Sends a raw text frame to every session.
    pub fn send_raw(&self, text: &str) {
        for s in self.state().sessions.iter() {
            let _ = s.tx.send(Out::Text(text.to_string()));
        }
    }

    /// An event type the client does not know, in the market channel's shape.
    pub fn send_unknown_event(&self) {
        let mut st = self.state();
        let ts = Self::next_ms(&mut st);
        let msg =
            json!({"event_type": "volume_surge", "market": TRUMP_CONDITION, "timestamp": ts.to_string()})
                .to_string();
        drop(st);
        let array = self.shared.array.load(Ordering::SeqCst);
        self.send_raw(&if array { format!("[{msg}]") } else { msg });
    }

    /// Closes every session abruptly (no close frame).
    pub fn drop_connections(&self) {
        for s in self.state().sessions.iter() {
            let _ = s.tx.send(Out::Drop);
        }
    }

    /// Refuses (503, no upgrade) every connection while on.
    pub fn refuse_connections(&self, on: bool) {
        self.shared.refuse.store(on, Ordering::SeqCst);
    }

    pub fn push_gamma_fault(&self, f: GammaFault) {
        self.state().gamma_faults.push(f);
    }

    /// WebSocket upgrades asked for, ever.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Sessions connected now.
    pub fn sessions(&self) -> usize {
        self.state().sessions.len()
    }

    /// The tokens of every session, per session.
    pub fn session_assets(&self) -> Vec<BTreeSet<String>> {
        self.state().sessions.iter().map(|s| s.assets.clone()).collect()
    }

    /// Every token some session is subscribed to.
    pub fn subscribed(&self) -> BTreeSet<String> {
        self.state().sessions.iter().flat_map(|s| s.assets.iter().cloned()).collect()
    }

    /// Every client text frame, in order (`PING` included).
    pub fn client_messages(&self) -> Vec<String> {
        self.state().client_messages.clone()
    }

    pub fn pings(&self) -> usize {
        self.state().pings
    }

    /// Every Gamma request, `path?query`.
    pub fn gamma_requests(&self) -> Vec<String> {
        self.state().gamma_requests.clone()
    }

    /// Waits until `pred` holds, panicking after `timeout` with `what`.
    pub async fn wait(&self, what: &str, timeout: Duration, pred: impl Fn(&FakePolymarket) -> bool) {
        let start = Instant::now();
        while !pred(self) {
            assert!(
                start.elapsed() < timeout,
                "fake polymarket: timed out after {timeout:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn markets(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let fault = {
        let mut st = lock(&shared);
        st.gamma_requests.push(uri.path_and_query().map(|p| p.to_string()).unwrap_or_default());
        (!st.gamma_faults.is_empty()).then(|| st.gamma_faults.remove(0))
    };
    match fault {
        Some(GammaFault::ServerError) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "internal error"})))
                .into_response()
        }
        Some(GammaFault::Garbage) => return (StatusCode::OK, "<html>bad gateway</html>").into_response(),
        None => {}
    }
    let all = |k: &str| q.iter().filter(|(key, _)| key == k).map(|(_, v)| v.clone()).collect::<Vec<_>>();
    let one = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let bool_of = |k: &str| one(k).map(|v| v == "true");
    let time_of = |k: &str| one(k).and_then(|v| DateTime::parse_from_rfc3339(&v).ok()).map(|t| t.to_utc());
    // Gamma's defaults: 20 per page, 500 at most.
    let limit: usize = one("limit").and_then(|l| l.parse().ok()).unwrap_or(20).min(500);
    let offset: usize = one("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
    let (tags, slugs, conditions) = (all("tag_id"), all("slug"), all("condition_ids"));
    let (active, closed) = (bool_of("active"), bool_of("closed"));
    let (end_max, end_min) = (time_of("end_date_max"), time_of("end_date_min"));
    let include_tag = bool_of("include_tag").unwrap_or(false);
    let st = lock(&shared);
    let page: Vec<Value> = st
        .markets
        .iter()
        .filter(|m| active.is_none_or(|a| m.active == a))
        .filter(|m| closed.is_none_or(|c| m.closed == c))
        .filter(|m| tags.is_empty() || m.tags.iter().any(|(id, _)| tags.contains(id)))
        .filter(|m| slugs.is_empty() || slugs.contains(&m.slug))
        .filter(|m| conditions.is_empty() || conditions.contains(&m.condition_id))
        .filter(|m| end_max.is_none_or(|e| m.end_date <= e))
        .filter(|m| end_min.is_none_or(|e| m.end_date >= e))
        .skip(offset)
        .take(limit)
        .map(|m| m.gamma_json(include_tag))
        .collect();
    Json(Value::Array(page)).into_response()
}

async fn tag_by_slug(State(shared): State<Arc<Shared>>, Path(slug): Path<String>) -> Response {
    let mut st = lock(&shared);
    st.gamma_requests.push(format!("/tags/slug/{slug}"));
    match st.markets.iter().flat_map(|m| m.tags.iter()).find(|(_, s)| *s == slug) {
        Some((id, s)) => Json(json!({"id": id, "label": s.replace('-', " "), "slug": s})).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"type": "not found error", "error": "tag not found"})))
            .into_response(),
    }
}

async fn ws_upgrade(State(shared): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    shared.connections.fetch_add(1, Ordering::SeqCst);
    if shared.refuse.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "unavailable").into_response();
    }
    ws.max_message_size(64 << 20).on_upgrade(move |socket| session(socket, shared))
}

/// The books answering a subscription of `tokens`: one array frame (array framing) or one
/// frame per book.
fn snapshot_frames(shared: &Shared, st: &mut State_, tokens: &[String]) -> Vec<String> {
    let known: Vec<&String> = tokens.iter().filter(|t| st.books.contains_key(*t)).collect();
    let msgs: Vec<String> = known.into_iter().map(|t| FakePolymarket::book_message(st, t)).collect();
    if msgs.is_empty() {
        return Vec::new();
    }
    if shared.array.load(Ordering::SeqCst) {
        vec![format!("[{}]", msgs.join(","))]
    } else {
        msgs
    }
}

async fn session(mut ws: WebSocket, shared: Arc<Shared>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = {
        let mut st = lock(&shared);
        st.next_session += 1;
        let id = st.next_session;
        st.sessions.push(Session { id, assets: BTreeSet::new(), custom: false, tx });
        id
    };
    struct Gone(Arc<Shared>, usize);
    impl Drop for Gone {
        fn drop(&mut self) {
            lock(&self.0).sessions.retain(|s| s.id != self.1);
        }
    }
    let _gone = Gone(shared.clone(), id);
    loop {
        let incoming = tokio::select! {
            m = ws.recv() => m,
            out = rx.recv() => {
                match out {
                    Some(Out::Text(t)) => if ws.send(Message::Text(t)).await.is_err() { return },
                    Some(Out::Drop) | None => return,
                }
                continue;
            }
        };
        let text = match incoming {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
            Some(Ok(_)) => continue,
        };
        let replies = {
            let mut st = lock(&shared);
            st.client_messages.push(text.clone());
            if text == "PING" {
                st.pings += 1;
                vec!["PONG".to_string()]
            } else {
                match serde_json::from_str::<Value>(&text) {
                    Err(_) => vec!["INVALID OPERATION".to_string()],
                    Ok(msg) => {
                        let tokens: Vec<String> = msg["assets_ids"]
                            .as_array()
                            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                            .unwrap_or_default();
                        let custom = msg["custom_feature_enabled"].as_bool() == Some(true);
                        let s = st.sessions.iter_mut().find(|s| s.id == id).expect("this session");
                        match (msg["type"].as_str(), msg["operation"].as_str()) {
                            (Some("market" | "MARKET"), _) => {
                                // The initial subscription replaces the set.
                                s.assets = tokens.iter().cloned().collect();
                                s.custom = custom;
                                snapshot_frames(&shared, &mut st, &tokens)
                            }
                            (_, Some("subscribe")) => {
                                s.assets.extend(tokens.iter().cloned());
                                s.custom |= custom;
                                snapshot_frames(&shared, &mut st, &tokens)
                            }
                            (_, Some("unsubscribe")) => {
                                for t in &tokens {
                                    s.assets.remove(t);
                                }
                                Vec::new()
                            }
                            _ => vec!["INVALID OPERATION".to_string()],
                        }
                    }
                }
            }
        };
        for r in replies {
            if ws.send(Message::Text(r)).await.is_err() {
                return;
            }
        }
    }
}
