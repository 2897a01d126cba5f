//! A fake Alpaca market data API v2 for tests: the stock stream (`/v2/{feed}` WebSocket) and
//! the REST history of trades and quotes (`GET /v2/stocks/trades`, `/v2/stocks/quotes`),
//! speaking the real protocol (message shapes from the captures in
//! `shared/data/c_protocol/alpaca/`; see `fake_alpaca_data.md` beside this file for which
//! fact came from where and what is assumed).
//!
//! Everything the test publishes (trades, quotes, bars) is kept as history, served over REST
//! with pagination, and pushed to the stream sessions subscribed to it at that moment; what is
//! published while no session is connected is therefore only in the history, as with the real
//! service. Like Alpaca it allows one stream connection per account (a second one gets 406).
//! Hostile switches: refused keys (402), a plan without the feed (409), the account's
//! connection held by "another client" (406), a symbol limit (405), connections refused,
//! streams dropped abruptly, raw frames, REST 500s, 429s and unreadable pages.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// How the fake starts.
#[derive(Debug, Clone)]
pub struct FakeDataOptions {
    pub key_id: String,
    pub secret_key: String,
    /// The feed the plan includes (`iex`); a stream or history request for another gets 409 / 403.
    pub feed: String,
    /// Items per REST page at most, whatever `limit` asks (small values force pagination).
    pub max_page: usize,
    /// A stream that has not authenticated by then gets 404 auth timeout.
    pub auth_timeout: Duration,
}

impl Default for FakeDataOptions {
    fn default() -> Self {
        FakeDataOptions {
            key_id: "PKFAKEDATA000000000".into(),
            secret_key: "fake-data-secret-00000000000000000000000".into(),
            feed: "iex".into(),
            max_page: 10_000,
            auth_timeout: Duration::from_secs(10),
        }
    }
}

/// A trade as the fake publishes it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeTrade {
    pub symbol: String,
    pub id: u64,
    pub exchange: String,
    pub price: f64,
    pub size: f64,
    pub time: DateTime<Utc>,
    pub conditions: Vec<String>,
}

#[derive(Debug, Clone)]
struct Item {
    time: DateTime<Utc>,
    /// The REST form (no `T`, no `S`).
    body: Value,
}

struct Session {
    id: usize,
    authenticated: bool,
    trades: BTreeSet<String>,
    quotes: BTreeSet<String>,
    bars: BTreeSet<String>,
    tx: mpsc::UnboundedSender<Out>,
}

enum Out {
    Text(String),
    Binary(Vec<u8>),
    /// Close the socket abruptly (no close frame).
    Drop,
}

#[derive(Default)]
struct State_ {
    trades: BTreeMap<String, Vec<Item>>,
    quotes: BTreeMap<String, Vec<Item>>,
    published: Vec<FakeTrade>,
    sessions: Vec<Session>,
    next_session: usize,
    next_trade_id: BTreeMap<String, u64>,
    last_time: Option<DateTime<Utc>>,
    /// Every client message of every session, in order.
    client_messages: Vec<Value>,
    /// Every REST request: `path?query`.
    requests: Vec<String>,
    rest_faults: Vec<RestFault>,
    /// After this many more history requests, every one fails with 500.
    rest_fail_after: Option<usize>,
    /// Every REST request waits this long before answering.
    rest_delay: Duration,
}

/// What the next REST request gets instead of its answer.
#[derive(Debug, Clone)]
pub enum RestFault {
    ServerError,
    RateLimited,
    /// 200 with a body that is not JSON.
    Garbage,
}

struct Shared {
    opts: FakeDataOptions,
    state: Mutex<State_>,
    connections: AtomicUsize,
    auth_attempts: AtomicUsize,
    refuse_connections: AtomicBool,
    auth_fail: AtomicBool,
    insufficient_subscription: AtomicBool,
    /// "Another client" holds the account's stream connection: every auth gets 406.
    slot_taken: AtomicBool,
    symbol_limit: AtomicUsize,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn lock(s: &Shared) -> MutexGuard<'_, State_> {
    s.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running fake; dropping it stops the server.
pub struct FakeAlpacaData {
    /// `ws://127.0.0.1:<port>/v2/<feed>`.
    pub ws_url: String,
    /// `http://127.0.0.1:<port>` (the data base URL, without `/v2`).
    pub rest_url: String,
    pub key_id: String,
    pub secret_key: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAlpacaData {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeAlpacaData {
    pub async fn start(opts: FakeDataOptions) -> FakeAlpacaData {
        let shared = Arc::new(Shared {
            opts: opts.clone(),
            state: Mutex::new(State_::default()),
            connections: AtomicUsize::new(0),
            auth_attempts: AtomicUsize::new(0),
            refuse_connections: AtomicBool::new(false),
            auth_fail: AtomicBool::new(false),
            insufficient_subscription: AtomicBool::new(false),
            slot_taken: AtomicBool::new(false),
            symbol_limit: AtomicUsize::new(usize::MAX),
        });
        let app = Router::new()
            .route("/v2/:feed", get(stream))
            .route("/v2/stocks/:kind", get(history))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeAlpacaData {
            ws_url: format!("ws://{addr}/v2/{}", opts.feed),
            rest_url: format!("http://{addr}"),
            key_id: opts.key_id,
            secret_key: opts.secret_key,
            shared,
            server,
        }
    }

    fn state(&self) -> MutexGuard<'_, State_> {
        lock(&self.shared)
    }

    /// The next event time: now, strictly after the previous one, so history order is
    /// publication order.
    fn next_time(st: &mut State_) -> DateTime<Utc> {
        let mut t = Utc::now();
        if let Some(last) = st.last_time {
            if t <= last {
                t = last + chrono::Duration::microseconds(1);
            }
        }
        st.last_time = Some(t);
        t
    }

    fn push(st: &State_, symbol: &str, channel: fn(&Session) -> &BTreeSet<String>, msg: &Value) {
        let frame = Value::Array(vec![msg.clone()]).to_string();
        for s in st.sessions.iter().filter(|s| s.authenticated && channel(s).contains(symbol)) {
            let _ = s.tx.send(Out::Text(frame.clone()));
        }
    }

    /// Publishes a trade now (history and subscribed streams); returns it.
    pub fn trade(
        &self,
        symbol: &str,
        price: f64,
        size: f64,
        exchange: &str,
        conditions: &[&str],
    ) -> FakeTrade {
        let mut st = self.state();
        let time = Self::next_time(&mut st);
        let id = Self::next_trade_id(&mut st, symbol);
        let body =
            json!({"t": ts(time), "x": exchange, "p": price, "s": size, "c": conditions, "i": id, "z": "C"});
        let mut msg = body.clone();
        msg["T"] = json!("t");
        msg["S"] = json!(symbol);
        st.trades.entry(symbol.to_string()).or_default().push(Item { time, body });
        Self::push(&st, symbol, |s| &s.trades, &msg);
        let t = FakeTrade {
            symbol: symbol.into(),
            id,
            exchange: exchange.into(),
            price,
            size,
            time,
            conditions: conditions.iter().map(|c| c.to_string()).collect(),
        };
        st.published.push(t.clone());
        t
    }

    /// Cancels a published trade: a cancel message (`T: "x"`, action `C`, the trade's own time)
    /// to the sessions subscribed to its trades, and `"u": "canceled"` on it in the history.
    pub fn cancel(&self, t: &FakeTrade) {
        let mut st = self.state();
        Self::mark(&mut st, t, "canceled");
        let msg = json!({"T": "x", "S": t.symbol, "i": t.id, "x": t.exchange, "p": t.price, "s": t.size,
                         "a": "C", "z": "C", "t": ts(t.time)});
        Self::push(&st, &t.symbol, |s| &s.trades, &msg);
    }

    /// Corrects a published trade to `price` and `size` under a new id: a correction message
    /// (`T: "c"`) to the trades' sessions; in the history the original is marked
    /// `"u": "incorrect"` and the corrected trade listed after it, `"u": "corrected"`, at the
    /// original's time. Returns the corrected trade.
    pub fn correct(&self, t: &FakeTrade, price: f64, size: f64, conditions: &[&str]) -> FakeTrade {
        let mut st = self.state();
        let id = Self::next_trade_id(&mut st, &t.symbol);
        let at = Self::mark(&mut st, t, "incorrect");
        let body = json!({"t": ts(t.time), "x": t.exchange, "p": price, "s": size, "c": conditions, "i": id,
                          "z": "C", "u": "corrected"});
        st.trades.get_mut(&t.symbol).expect("a published trade").insert(at + 1, Item { time: t.time, body });
        let msg = json!({"T": "c", "S": t.symbol, "x": t.exchange, "oi": t.id, "op": t.price, "os": t.size,
                         "oc": t.conditions, "ci": id, "cp": price, "cs": size, "cc": conditions, "z": "C",
                         "t": ts(t.time)});
        Self::push(&st, &t.symbol, |s| &s.trades, &msg);
        FakeTrade {
            id,
            price,
            size,
            conditions: conditions.iter().map(|c| c.to_string()).collect(),
            ..t.clone()
        }
    }

    /// The next trade id of `symbol` (ids count per symbol from 1001).
    fn next_trade_id(st: &mut State_, symbol: &str) -> u64 {
        let n = st.next_trade_id.entry(symbol.to_string()).or_insert(1000);
        *n += 1;
        *n
    }

    /// Sets `u` on a trade in the history; returns its index there.
    fn mark(st: &mut State_, t: &FakeTrade, update: &str) -> usize {
        let items = st.trades.get_mut(&t.symbol).expect("a published trade");
        let at = items
            .iter()
            .position(|i| i.body["i"] == json!(t.id) && i.body["x"] == json!(t.exchange))
            .expect("a published trade");
        items[at].body["u"] = json!(update);
        at
    }

    /// Publishes a quote now.
    pub fn quote(&self, symbol: &str, bid: f64, ask: f64) {
        let mut st = self.state();
        let time = Self::next_time(&mut st);
        let body = json!({"t": ts(time), "bx": "K", "bp": bid, "bs": 3, "ax": "Q", "ap": ask, "as": 4, "c": ["R"], "z": "C"});
        let mut msg = body.clone();
        msg["T"] = json!("q");
        msg["S"] = json!(symbol);
        st.quotes.entry(symbol.to_string()).or_default().push(Item { time, body });
        Self::push(&st, symbol, |s| &s.quotes, &msg);
    }

    /// Publishes a minute bar (stream only).
    pub fn bar(&self, symbol: &str, minute: DateTime<Utc>, ohlc: [f64; 4], volume: f64, trades: i64) {
        let st = self.state();
        let msg = json!({"T": "b", "S": symbol, "o": ohlc[0], "h": ohlc[1], "l": ohlc[2], "c": ohlc[3],
                         "v": volume, "t": ts(minute), "n": trades, "vw": (ohlc[1] + ohlc[2]) / 2.0});
        Self::push(&st, symbol, |s| &s.bars, &msg);
    }

    /// `n` rounds of a quote and a trade at its ask (even rounds, a buy) or bid (odd, a sell)
    /// for `symbol`; returns the trades with the side Lee-Ready must give them.
    pub fn script(&self, symbol: &str, n: usize, base: f64) -> Vec<(FakeTrade, char)> {
        (0..n)
            .map(|k| {
                let bid = base + (k % 7) as f64 * 0.01;
                let ask = bid + 0.02;
                self.quote(symbol, bid, ask);
                if k % 2 == 0 {
                    (self.trade(symbol, ask, 100.0 + k as f64, "V", &["@"]), 'B')
                } else {
                    (self.trade(symbol, bid, 50.0, "D", &["@", "I"]), 'S')
                }
            })
            .collect()
    }

    /// Every trade published, in order.
    pub fn published(&self) -> Vec<FakeTrade> {
        self.state().published.clone()
    }

    /// Sends a raw text frame to every authenticated session.
    pub fn send_raw(&self, text: &str) {
        for s in self.state().sessions.iter().filter(|s| s.authenticated) {
            let _ = s.tx.send(Out::Text(text.to_string()));
        }
    }

    /// Sends a raw binary frame to every authenticated session.
    pub fn send_raw_binary(&self, bytes: &[u8]) {
        for s in self.state().sessions.iter().filter(|s| s.authenticated) {
            let _ = s.tx.send(Out::Binary(bytes.to_vec()));
        }
    }

    /// Closes every stream abruptly (no close frame), as a network cut does.
    pub fn drop_streams(&self) {
        for s in self.state().sessions.iter() {
            let _ = s.tx.send(Out::Drop);
        }
    }

    /// Refuses (503, no upgrade) every stream connection while on.
    pub fn refuse_connections(&self, on: bool) {
        self.shared.refuse_connections.store(on, Ordering::SeqCst);
    }

    /// Answers every auth with 402 auth failed while on.
    pub fn fail_auth(&self, on: bool) {
        self.shared.auth_fail.store(on, Ordering::SeqCst);
    }

    /// Answers every auth with 409 insufficient subscription while on.
    pub fn insufficient_subscription(&self, on: bool) {
        self.shared.insufficient_subscription.store(on, Ordering::SeqCst);
    }

    /// While on, "another client" holds the account's connection: every auth gets 406.
    pub fn take_slot(&self, on: bool) {
        self.shared.slot_taken.store(on, Ordering::SeqCst);
    }

    /// A subscription to more than `n` symbols (of one channel) is refused with 405.
    pub fn set_symbol_limit(&self, n: usize) {
        self.shared.symbol_limit.store(n, Ordering::SeqCst);
    }

    pub fn push_rest_fault(&self, f: RestFault) {
        self.state().rest_faults.push(f);
    }

    /// After `n` more history requests every request fails with 500 (`None`: never).
    pub fn rest_fail_after(&self, n: Option<usize>) {
        self.state().rest_fail_after = n;
    }

    pub fn set_rest_delay(&self, d: Duration) {
        self.state().rest_delay = d;
    }

    /// Stream connection attempts (upgrades asked for), ever.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    pub fn auth_attempts(&self) -> usize {
        self.shared.auth_attempts.load(Ordering::SeqCst)
    }

    /// Sessions connected now, and of those authenticated.
    pub fn sessions(&self) -> (usize, usize) {
        let st = self.state();
        (st.sessions.len(), st.sessions.iter().filter(|s| s.authenticated).count())
    }

    /// The symbols whose trades the authenticated sessions are subscribed to.
    pub fn subscribed_trades(&self) -> BTreeSet<String> {
        self.state()
            .sessions
            .iter()
            .filter(|s| s.authenticated)
            .flat_map(|s| s.trades.iter().cloned())
            .collect()
    }

    pub fn client_messages(&self) -> Vec<Value> {
        self.state().client_messages.clone()
    }

    pub fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }

    /// Waits until `pred` holds, panicking after `timeout` with `what`.
    pub async fn wait(&self, what: &str, timeout: Duration, pred: impl Fn(&FakeAlpacaData) -> bool) {
        let start = Instant::now();
        while !pred(self) {
            assert!(
                start.elapsed() < timeout,
                "fake alpaca data: timed out after {timeout:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn error_frame(code: u16, msg: &str) -> String {
    json!([{"T": "error", "code": code, "msg": msg}]).to_string()
}

async fn stream(
    State(shared): State<Arc<Shared>>,
    Path(feed): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    shared.connections.fetch_add(1, Ordering::SeqCst);
    if shared.refuse_connections.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "unavailable").into_response();
    }
    ws.on_upgrade(move |socket| session(socket, shared, feed))
}

fn subscription_frame(s: &Session) -> String {
    let list = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>();
    json!([{"T": "subscription", "trades": list(&s.trades), "quotes": list(&s.quotes), "bars": list(&s.bars),
            "updatedBars": [], "dailyBars": [], "statuses": [], "lulds": [], "corrections": list(&s.trades),
            "cancelErrors": list(&s.trades)}])
    .to_string()
}

async fn session(mut ws: WebSocket, shared: Arc<Shared>, feed: String) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = {
        let mut st = lock(&shared);
        st.next_session += 1;
        let id = st.next_session;
        st.sessions.push(Session {
            id,
            authenticated: false,
            trades: BTreeSet::new(),
            quotes: BTreeSet::new(),
            bars: BTreeSet::new(),
            tx,
        });
        id
    };
    struct Gone(Arc<Shared>, usize);
    impl Drop for Gone {
        fn drop(&mut self) {
            lock(&self.0).sessions.retain(|s| s.id != self.1);
        }
    }
    let _gone = Gone(shared.clone(), id);
    let text = |s: String| Message::Text(s);
    if ws.send(text(json!([{"T": "success", "msg": "connected"}]).to_string())).await.is_err() {
        return;
    }
    let auth_deadline = tokio::time::Instant::now() + shared.opts.auth_timeout;
    loop {
        let authenticated = lock(&shared).sessions.iter().any(|s| s.id == id && s.authenticated);
        let incoming = tokio::select! {
            m = ws.recv() => m,
            out = rx.recv() => {
                match out {
                    Some(Out::Text(t)) => if ws.send(text(t)).await.is_err() { return },
                    Some(Out::Binary(b)) => if ws.send(Message::Binary(b)).await.is_err() { return },
                    Some(Out::Drop) | None => return,
                }
                continue;
            }
            _ = tokio::time::sleep_until(auth_deadline), if !authenticated => {
                let _ = ws.send(text(error_frame(404, "auth timeout"))).await;
                let _ = ws.close().await;
                return;
            }
        };
        let payload = match incoming {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
            Some(Ok(_)) => continue,
        };
        let Ok(msg) = serde_json::from_str::<Value>(&payload) else {
            if ws.send(text(error_frame(400, "invalid syntax"))).await.is_err() {
                return;
            }
            continue;
        };
        lock(&shared).client_messages.push(msg.clone());
        match msg["action"].as_str() {
            Some("auth") => {
                shared.auth_attempts.fetch_add(1, Ordering::SeqCst);
                if authenticated {
                    let _ = ws.send(text(error_frame(403, "already authenticated"))).await;
                    continue;
                }
                let keys_ok = msg["key"].as_str() == Some(shared.opts.key_id.as_str())
                    && msg["secret"].as_str() == Some(shared.opts.secret_key.as_str());
                let refusal = if !keys_ok || shared.auth_fail.load(Ordering::SeqCst) {
                    Some((402, "auth failed"))
                } else if feed != shared.opts.feed || shared.insufficient_subscription.load(Ordering::SeqCst)
                {
                    Some((409, "insufficient subscription"))
                } else if shared.slot_taken.load(Ordering::SeqCst)
                    || lock(&shared).sessions.iter().any(|s| s.id != id && s.authenticated)
                {
                    Some((406, "connection limit exceeded"))
                } else {
                    None
                };
                if let Some((code, m)) = refusal {
                    let _ = ws.send(text(error_frame(code, m))).await;
                    let _ = ws.close().await;
                    return;
                }
                {
                    let mut st = lock(&shared);
                    if let Some(s) = st.sessions.iter_mut().find(|s| s.id == id) {
                        s.authenticated = true;
                    }
                }
                if ws.send(text(json!([{"T": "success", "msg": "authenticated"}]).to_string())).await.is_err()
                {
                    return;
                }
            }
            Some(action @ ("subscribe" | "unsubscribe")) => {
                if !authenticated {
                    let _ = ws.send(text(error_frame(401, "not authenticated"))).await;
                    continue;
                }
                let list = |key: &str| -> Option<Vec<String>> {
                    match &msg[key] {
                        Value::Null => Some(Vec::new()),
                        Value::Array(a) => a.iter().map(|v| v.as_str().map(str::to_string)).collect(),
                        _ => None,
                    }
                };
                let (Some(trades), Some(quotes), Some(bars)) = (list("trades"), list("quotes"), list("bars"))
                else {
                    let _ = ws.send(text(error_frame(400, "invalid syntax"))).await;
                    continue;
                };
                let reply = {
                    let limit = shared.symbol_limit.load(Ordering::SeqCst);
                    let mut st = lock(&shared);
                    let s = st.sessions.iter_mut().find(|s| s.id == id).expect("this session");
                    let apply = |set: &mut BTreeSet<String>, add: &[String]| {
                        let mut next = set.clone();
                        for sym in add {
                            if action == "subscribe" {
                                next.insert(sym.clone());
                            } else {
                                next.remove(sym);
                            }
                        }
                        next
                    };
                    let (t, q, b) = (
                        apply(&mut s.trades, &trades),
                        apply(&mut s.quotes, &quotes),
                        apply(&mut s.bars, &bars),
                    );
                    if t.len().max(q.len()) > limit {
                        error_frame(405, "symbol limit exceeded")
                    } else {
                        (s.trades, s.quotes, s.bars) = (t, q, b);
                        subscription_frame(s)
                    }
                };
                if ws.send(text(reply)).await.is_err() {
                    return;
                }
            }
            _ => {
                if ws.send(text(error_frame(400, "invalid syntax"))).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn api_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

/// The history as it stands when asked, answered after the REST delay (a slow link: what
/// changes meanwhile is not in the answer).
async fn history(
    State(shared): State<Arc<Shared>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let delay = {
        let mut st = lock(&shared);
        st.requests.push(uri.path_and_query().map(|p| p.to_string()).unwrap_or_default());
        st.rest_delay
    };
    let answer = history_now(&shared, &kind, &headers, &q);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    answer
}

fn history_now(shared: &Shared, kind: &str, headers: &HeaderMap, q: &BTreeMap<String, String>) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    if header("apca-api-key-id") != shared.opts.key_id
        || header("apca-api-secret-key") != shared.opts.secret_key
    {
        return api_error(StatusCode::UNAUTHORIZED, "unauthorized.");
    }
    {
        let mut st = lock(shared);
        if let Some(n) = st.rest_fail_after.as_mut() {
            if *n == 0 {
                return api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal server error");
            }
            *n -= 1;
        }
        if !st.rest_faults.is_empty() {
            match st.rest_faults.remove(0) {
                RestFault::ServerError => {
                    return api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
                }
                RestFault::RateLimited => {
                    let reset = Utc::now().timestamp() + 1;
                    let mut r = api_error(StatusCode::TOO_MANY_REQUESTS, "too many requests.");
                    let h = r.headers_mut();
                    h.insert("X-Ratelimit-Limit", "200".parse().unwrap());
                    h.insert("X-Ratelimit-Remaining", "0".parse().unwrap());
                    h.insert("X-Ratelimit-Reset", reset.to_string().parse().unwrap());
                    return r;
                }
                RestFault::Garbage => return (StatusCode::OK, "<html>upstream error</html>").into_response(),
            }
        }
    }
    if kind != "trades" && kind != "quotes" {
        return api_error(StatusCode::NOT_FOUND, "endpoint not found.");
    }
    let feed = q.get("feed").map(String::as_str).unwrap_or("iex");
    if feed != shared.opts.feed {
        return api_error(StatusCode::FORBIDDEN, "subscription does not permit querying recent SIP data");
    }
    // The name of a time parameter that does not parse.
    let parse_time = |key: &'static str| -> Result<Option<DateTime<Utc>>, &'static str> {
        match q.get(key) {
            None => Ok(None),
            Some(s) => DateTime::parse_from_rfc3339(s).map(|t| Some(t.with_timezone(&Utc))).map_err(|_| key),
        }
    };
    let (start, end) = match (parse_time("start"), parse_time("end")) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(k), _) | (_, Err(k)) => return api_error(StatusCode::BAD_REQUEST, &format!("invalid {k}")),
    };
    let Some(symbols) = q.get("symbols").filter(|s| !s.is_empty()) else {
        return api_error(StatusCode::BAD_REQUEST, "missing symbols");
    };
    let limit: usize = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 1000,
        Some(Ok(l)) if (1..=10_000).contains(&l) => l,
        Some(_) => return api_error(StatusCode::BAD_REQUEST, "invalid limit: must be between 1 and 10000"),
    };
    let limit = limit.min(shared.opts.max_page);
    let offset = match q.get("page_token") {
        None => 0,
        Some(t) => match t.strip_prefix("tfp-").and_then(|h| usize::from_str_radix(h, 16).ok()) {
            Some(o) => o,
            None => return api_error(StatusCode::BAD_REQUEST, "invalid page token"),
        },
    };
    let st = lock(shared);
    let source = if kind == "trades" { &st.trades } else { &st.quotes };
    let mut wanted: Vec<&str> = symbols.split(',').collect();
    wanted.sort_unstable();
    // Symbol by symbol, each in time order, as Alpaca pages a multi-symbol request.
    let all: Vec<(&str, &Item)> = wanted
        .iter()
        .flat_map(|s| source.get(*s).into_iter().flatten().map(move |i| (*s, i)))
        .filter(|(_, i)| start.is_none_or(|s| i.time >= s) && end.is_none_or(|e| i.time <= e))
        .collect();
    let page: Vec<&(&str, &Item)> = all.iter().skip(offset).take(limit).collect();
    let mut by_symbol = serde_json::Map::new();
    for (s, i) in &page {
        by_symbol
            .entry(s.to_string())
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .unwrap()
            .push(i.body.clone());
    }
    let next = (offset + page.len() < all.len()).then(|| format!("tfp-{:x}", offset + page.len()));
    Json(json!({ kind: by_symbol, "next_page_token": next })).into_response()
}
