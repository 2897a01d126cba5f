//! A fake IG Markets for tests: the REST gateway (session, markets, historic prices) and a
//! Lightstreamer server speaking TLCP over a WebSocket, close enough to the real ones that the
//! feeder's IG provider runs against it unchanged with its URLs pointed at `127.0.0.1`.
//!
//! Shapes come from `shared/data/c_protocol/ig/` (REST captures and the TLCP transcripts); see
//! `fake_ig.md` beside this file for which fact came from where and what is assumed. The TLCP
//! side is written independently of the client's code (its own encoder and request parser),
//! so that the two check each other.
//!
//! Tests drive prices with [`FakeIg::market`] and [`FakeIg::tick`] and switch on hostile
//! behaviour at run time: refused logins, expired tokens, throttled history, raw lines, huge
//! frames, dropped or stalled sockets, `LOOP`, `END`, `CONERR`, refused items.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, NaiveDateTime, Offset, TimeZone, Utc};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// The WebSocket subprotocols the fake accepts (IG's server takes 2.4.0; 2.5.0 is the current
/// specification).
pub const SUBPROTOCOLS: [&str; 2] = ["TLCP-2.4.0.lightstreamer.com", "TLCP-2.5.0.lightstreamer.com"];

/// IG's documented `MARKET:<epic>` fields; any other name is refused with `REQERR …,23`.
pub const MARKET_FIELDS: &[&str] = &[
    "MID_OPEN",
    "HIGH",
    "LOW",
    "CHANGE",
    "CHANGE_PCT",
    "UPDATE_TIME",
    "MARKET_DELAY",
    "MARKET_STATE",
    "BID",
    "OFFER",
    "STRIKE_PRICE",
    "ODDS",
];

/// IG's documented `CHART:<epic>:TICK` fields.
pub const TICK_FIELDS: &[&str] = &[
    "BID",
    "OFR",
    "LTP",
    "LTV",
    "TTV",
    "UTM",
    "DAY_OPEN_MID",
    "DAY_NET_CHG_MID",
    "DAY_PERC_CHG_MID",
    "DAY_HIGH",
    "DAY_LOW",
];

/// How the fake starts.
#[derive(Debug, Clone)]
pub struct FakeIgOptions {
    pub api_key: String,
    pub username: String,
    pub password: String,
    pub account_id: String,
    /// `CONOK`'s keep-alive: a socket idle this long gets a `PROBE`.
    pub keepalive_ms: u64,
    /// Events of a `CHART:<epic>:TICK` item kept for the snapshot of a new subscription.
    pub snapshot_len: usize,
    /// Tokens older than this are refused (REST 401, stream `CONERR,1`); `None`: never.
    pub token_ttl: Option<Duration>,
}

impl Default for FakeIgOptions {
    fn default() -> Self {
        FakeIgOptions {
            api_key: "fake-ig-api-key-0123456789abcdef".into(),
            username: "fake-user".into(),
            password: "fake-password-1".into(),
            account_id: "ABC123".into(),
            keepalive_ms: 1000,
            snapshot_len: 10,
            token_ttl: None,
        }
    }
}

/// Field values: `None` is null (`#` on the wire), `Some("")` the empty string (`$`).
pub type Values = Vec<(&'static str, Option<String>)>;

/// `("BID", Some("1.1"))` from `("BID", "1.1")`, and `None` for `"#"`.
pub fn values(pairs: &[(&'static str, &str)]) -> Values {
    pairs.iter().map(|(k, v)| (*k, if *v == "#" { None } else { Some(v.to_string()) })).collect()
}

#[derive(Debug)]
enum Out {
    /// Lines sent as one WebSocket message (CRLF-joined).
    Lines(Vec<String>),
    /// One WebSocket message as it is.
    Raw(String),
    /// Close the socket abruptly (no close frame).
    Drop,
    /// Stop sending anything on this socket, PROBEs included.
    Stall,
}

#[derive(Debug, Clone, PartialEq)]
enum ItemKind {
    Market(String),
    Tick(String),
}

#[derive(Debug)]
struct FakeSub {
    group: String,
    item: ItemKind,
    fields: Vec<String>,
    /// The values last sent, for compaction (`None` before the first update).
    last: Option<Vec<Option<String>>>,
}

#[derive(Debug, Default)]
struct LsSession {
    subs: BTreeMap<u64, FakeSub>,
    /// The socket bound to it, if any.
    conn: Option<u64>,
    /// Lines waiting for a socket (between LOOP and the rebind).
    outbox: Vec<String>,
}

#[derive(Debug)]
struct Token {
    cst: String,
    xst: String,
    issued: Instant,
    valid: bool,
}

/// One subscription request as the fake received it.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeRequest {
    pub group: String,
    pub schema: String,
    pub mode: String,
    pub snapshot: String,
}

#[derive(Default)]
struct St {
    tokens: Vec<Token>,
    logins: usize,
    refused_logins: usize,
    refuse_logins: bool,
    requests: Vec<String>,
    prices: HashMap<String, Vec<Value>>,
    throttle_prices: usize,
    unauthorize_prices: usize,
    /// Price requests answered before the fake starts refusing them (404), if set.
    prices_before_refusal: Option<usize>,
    sessions: HashMap<String, LsSession>,
    sessions_created: usize,
    binds: usize,
    conerrs: Vec<String>,
    conerr_next: Option<(i64, String)>,
    subscribe_requests: Vec<SubscribeRequest>,
    unsubscribes: usize,
    markets: HashMap<String, HashMap<String, Option<String>>>,
    tapes: HashMap<String, VecDeque<HashMap<String, Option<String>>>>,
    rejected_epics: HashSet<String>,
    conns: HashMap<u64, mpsc::UnboundedSender<Out>>,
    protocols: Vec<String>,
    next_token: u64,
}

struct Shared {
    opts: FakeIgOptions,
    state: Mutex<St>,
    next_id: AtomicU64,
    base: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, St> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running fake. Dropping it stops the server.
pub struct FakeIg {
    /// `http://127.0.0.1:<port>`: the REST gateway (`TAPEFLOW_IG_URL`) and the
    /// `lightstreamerEndpoint` the session answer names (the client adds `/lightstreamer`).
    pub base_url: String,
    pub opts: FakeIgOptions,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIg {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeIg {
    pub async fn start(opts: FakeIgOptions) -> FakeIg {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let shared = Arc::new(Shared {
            opts: opts.clone(),
            state: Mutex::new(St::default()),
            next_id: AtomicU64::new(1),
            base: base.clone(),
        });
        let app =
            Router::new().route("/lightstreamer", get(ws_upgrade)).fallback(rest).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeIg { base_url: base, opts, shared, server }
    }

    /// The environment of a feeder using this fake (credentials and URLs).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("IG_API_KEY", self.opts.api_key.clone()),
            ("IG_USERNAME", self.opts.username.clone()),
            ("IG_PASSWORD", self.opts.password.clone()),
            ("TAPEFLOW_IG_URL", self.base_url.clone()),
        ]
    }

    // --- prices -----------------------------------------------------------------------------

    /// Merges `values` into `MARKET:<epic>` and sends the update to its subscribers.
    pub fn market(&self, epic: &str, values: &Values) {
        let mut st = self.shared.lock();
        let m = st.markets.entry(epic.to_string()).or_default();
        for (k, v) in values {
            m.insert(k.to_string(), v.clone());
        }
        let current = m.clone();
        let item = ItemKind::Market(epic.to_string());
        send_to_item(&mut st, &item, &current);
    }

    /// Records a `CHART:<epic>:TICK` event (kept for snapshots) and sends it to subscribers.
    pub fn tick(&self, epic: &str, values: &Values) {
        let mut st = self.shared.lock();
        let event: HashMap<String, Option<String>> =
            values.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let tape = st.tapes.entry(epic.to_string()).or_default();
        tape.push_back(event.clone());
        while tape.len() > self.opts.snapshot_len {
            tape.pop_front();
        }
        let item = ItemKind::Tick(epic.to_string());
        send_to_item(&mut st, &item, &event);
    }

    /// Records a tick event for snapshots without sending it (as if it happened while the
    /// client was away).
    pub fn tick_unsent(&self, epic: &str, values: &Values) {
        let mut st = self.shared.lock();
        let event: HashMap<String, Option<String>> =
            values.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let tape = st.tapes.entry(epic.to_string()).or_default();
        tape.push_back(event);
        while tape.len() > self.opts.snapshot_len {
            tape.pop_front();
        }
    }

    /// Historic prices of an epic: entries in the shape of `historic_prices.json` (version 3,
    /// with `snapshotTimeUTC`).
    pub fn set_prices(&self, epic: &str, entries: Vec<Value>) {
        self.shared.lock().prices.insert(epic.to_string(), entries);
    }

    // --- hostile switches -------------------------------------------------------------------

    /// Refuse logins (401 `error.security.invalid-details`) from now on, or stop refusing.
    pub fn refuse_logins(&self, on: bool) {
        self.shared.lock().refuse_logins = on;
    }

    /// Every token issued so far stops working (REST 401, stream `CONERR,1`).
    pub fn expire_tokens(&self) {
        self.shared.lock().tokens.iter_mut().for_each(|t| t.valid = false);
    }

    /// The next `n` price requests are refused with the historical-data allowance error.
    pub fn throttle_prices(&self, n: usize) {
        self.shared.lock().throttle_prices = n;
    }

    /// The next `n` price requests are refused with 401 `error.security.client-token-invalid`.
    pub fn unauthorize_prices(&self, n: usize) {
        self.shared.lock().unauthorize_prices = n;
    }

    /// After `n` more answered price requests, refuse every other one with 404
    /// `error.error.instrument.epic.unavailable`; `None` stops refusing.
    pub fn refuse_prices_after(&self, n: Option<usize>) {
        self.shared.lock().prices_before_refusal = n;
    }

    /// The next `create_session` is answered `CONERR,<code>,<message>`.
    pub fn conerr_next(&self, code: i64, message: &str) {
        self.shared.lock().conerr_next = Some((code, message.to_string()));
    }

    /// Subscriptions to this epic's items are refused (`REQERR,<req>,21,…`).
    pub fn reject_epic(&self, epic: &str) {
        self.shared.lock().rejected_epics.insert(epic.to_string());
    }

    /// Sends one WebSocket message as it is to every open socket.
    pub fn send_raw(&self, message: &str) {
        self.broadcast(|| Out::Raw(message.to_string()));
    }

    /// Sends `U,<sub>,1,<encoded>` with these (raw, possibly malformed) values on every
    /// subscription of `group`.
    pub fn send_update_raw(&self, group: &str, encoded: &str) {
        let mut st = self.shared.lock();
        let mut lines: Vec<(String, String)> = Vec::new();
        for (sid, s) in &st.sessions {
            for (id, sub) in &s.subs {
                if sub.group == group {
                    lines.push((sid.clone(), format!("U,{id},1,{encoded}")));
                }
            }
        }
        for (sid, line) in lines {
            send_session(&mut st, &sid, line);
        }
    }

    /// Closes every socket abruptly; sessions stay (as after a network cut).
    pub fn drop_streams(&self) {
        self.broadcast(|| Out::Drop);
    }

    /// Every open socket stops sending, PROBEs included; sockets opened later work.
    pub fn stall_streams(&self) {
        self.broadcast(|| Out::Stall);
    }

    /// `LOOP,0` on every socket, which is then closed; the session waits for a rebind.
    pub fn send_loop(&self) {
        let mut st = self.shared.lock();
        let conns: Vec<u64> = st.sessions.values_mut().filter_map(|s| s.conn.take()).collect();
        for c in conns {
            if let Some(tx) = st.conns.get(&c) {
                let _ = tx.send(Out::Lines(vec!["LOOP,0".into()]));
                let _ = tx.send(Out::Drop);
            }
        }
    }

    /// `END,<code>,<message>` on every session, which is then forgotten.
    pub fn end_sessions(&self, code: i64, message: &str) {
        let mut st = self.shared.lock();
        let sessions: Vec<LsSession> = st.sessions.drain().map(|(_, s)| s).collect();
        for s in sessions {
            if let Some(tx) = s.conn.and_then(|c| st.conns.get(&c)) {
                let _ = tx.send(Out::Lines(vec![format!("END,{code},{}", encode_arg(message))]));
                let _ = tx.send(Out::Drop);
            }
        }
    }

    fn broadcast(&self, out: impl Fn() -> Out) {
        let st = self.shared.lock();
        for tx in st.conns.values() {
            let _ = tx.send(out());
        }
    }

    // --- observations -----------------------------------------------------------------------

    /// `POST /session` answered with tokens.
    pub fn logins(&self) -> usize {
        self.shared.lock().logins
    }

    /// `POST /session` refused.
    pub fn refused_logins(&self) -> usize {
        self.shared.lock().refused_logins
    }

    pub fn sessions_created(&self) -> usize {
        self.shared.lock().sessions_created
    }

    pub fn binds(&self) -> usize {
        self.shared.lock().binds
    }

    /// Every `CONERR` sent, as `code,message`.
    pub fn conerrs(&self) -> Vec<String> {
        self.shared.lock().conerrs.clone()
    }

    /// Every `REST` request, as `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }

    /// Every subscription request, in order.
    pub fn subscribe_requests(&self) -> Vec<SubscribeRequest> {
        self.shared.lock().subscribe_requests.clone()
    }

    pub fn unsubscribes(&self) -> usize {
        self.shared.lock().unsubscribes
    }

    /// The subprotocol of each socket opened.
    pub fn protocols(&self) -> Vec<String> {
        self.shared.lock().protocols.clone()
    }

    /// Groups subscribed now, over every session with a socket.
    pub fn subscribed(&self) -> Vec<String> {
        let st = self.shared.lock();
        let mut out: Vec<String> = st
            .sessions
            .values()
            .filter(|s| s.conn.is_some())
            .flat_map(|s| s.subs.values().map(|x| x.group.clone()))
            .collect();
        out.sort();
        out
    }

    /// Waits until `pred` holds for the fake; false after `timeout`.
    pub async fn wait(&self, timeout: Duration, pred: impl Fn(&FakeIg) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if pred(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        pred(self)
    }

    /// Waits until every group in `groups` is subscribed on a live socket.
    pub async fn wait_subscribed(&self, groups: &[&str], timeout: Duration) -> bool {
        self.wait(timeout, |f| {
            let now = f.subscribed();
            groups.iter().all(|g| now.iter().any(|s| s == g))
        })
        .await
    }
}

// --- TLCP encoding (server side) ---------------------------------------------------------------

/// Percent-encodes a notification argument (commas and non-printing characters).
fn encode_arg(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        if matches!(ch, ',' | '\r' | '\n' | '%') {
            let mut buf = [0u8; 4];
            for b in ch.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// One field value in an update (`#` null, `$` empty; `|`, CR, LF and `%` always encoded,
/// `#`, `$` and `^` when leading).
fn encode_field(v: &Option<String>) -> String {
    match v {
        None => "#".into(),
        Some(s) if s.is_empty() => "$".into(),
        Some(s) => {
            let mut out = String::new();
            for (i, ch) in s.chars().enumerate() {
                if matches!(ch, '|' | '\r' | '\n' | '%') || (i == 0 && matches!(ch, '#' | '$' | '^')) {
                    let mut buf = [0u8; 4];
                    for b in ch.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("%{b:02X}"));
                    }
                } else {
                    out.push(ch);
                }
            }
            out
        }
    }
}

/// The value list of an update: full the first time, then unchanged fields empty and runs of
/// three or more unchanged fields as `^N`, as a Lightstreamer server compacts them.
fn encode_update(last: Option<&Vec<Option<String>>>, now: &[Option<String>]) -> String {
    let Some(last) = last else {
        return now.iter().map(encode_field).collect::<Vec<_>>().join("|");
    };
    let mut tokens: Vec<String> = Vec::new();
    let mut i = 0;
    while i < now.len() {
        if last.get(i) == Some(&now[i]) {
            let mut j = i;
            while j < now.len() && last.get(j) == Some(&now[j]) {
                j += 1;
            }
            if j - i >= 3 {
                tokens.push(format!("^{}", j - i));
            } else {
                tokens.extend((i..j).map(|_| String::new()));
            }
            i = j;
        } else {
            tokens.push(encode_field(&now[i]));
            i += 1;
        }
    }
    tokens.join("|")
}

fn field_values(sub: &FakeSub, values: &HashMap<String, Option<String>>) -> Vec<Option<String>> {
    sub.fields.iter().map(|f| values.get(f).cloned().unwrap_or(None)).collect()
}

fn send_to_item(st: &mut St, item: &ItemKind, values: &HashMap<String, Option<String>>) {
    let mut lines: Vec<(String, String)> = Vec::new();
    for (sid, s) in st.sessions.iter_mut() {
        for (id, sub) in s.subs.iter_mut() {
            if &sub.item == item {
                let now = field_values(sub, values);
                lines.push((sid.clone(), format!("U,{id},1,{}", encode_update(sub.last.as_ref(), &now))));
                sub.last = Some(now);
            }
        }
    }
    for (sid, line) in lines {
        send_session(st, &sid, line);
    }
}

fn send_session(st: &mut St, sid: &str, line: String) {
    let Some(s) = st.sessions.get_mut(sid) else { return };
    match s.conn.and_then(|c| st.conns.get(&c)) {
        Some(tx) => {
            let _ = tx.send(Out::Lines(vec![line]));
        }
        None => s.outbox.push(line),
    }
}

// --- TLCP requests (client side, parsed here) ---------------------------------------------------

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `k=v&k=v` with every value percent-decoded (unknown parameters are kept, and ignored).
fn params(line: &str) -> Option<HashMap<String, String>> {
    let mut out = HashMap::new();
    if line.is_empty() {
        return Some(out);
    }
    for pair in line.split('&') {
        let (k, v) = pair.split_once('=')?;
        out.insert(k.to_string(), percent_decode(v)?);
    }
    Some(out)
}

// --- REST --------------------------------------------------------------------------------------

fn error(status: StatusCode, code: &str) -> Response {
    (status, [("content-type", "application/json")], json!({ "errorCode": code }).to_string()).into_response()
}

fn ok_json(v: Value) -> Response {
    (StatusCode::OK, [("content-type", "application/json")], v.to_string()).into_response()
}

fn capture(name: &str) -> Value {
    let path = crate::ground_truth::data_dir().join("c_protocol/ig").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The account's offset from UTC now, in hours (IG reports the account's zone; ours is London).
fn london_offset_hours() -> i64 {
    i64::from(Utc::now().with_timezone(&chrono_tz::Europe::London).offset().fix().local_minus_utc() / 3600)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Whether the request carries a valid session's tokens.
fn authorized(shared: &Shared, st: &St, h: &HeaderMap) -> bool {
    let (Some(cst), Some(xst)) = (header(h, "CST"), header(h, "X-SECURITY-TOKEN")) else { return false };
    token_valid(shared, st, cst, xst)
}

fn token_valid(shared: &Shared, st: &St, cst: &str, xst: &str) -> bool {
    st.tokens.iter().any(|t| {
        t.cst == cst
            && t.xst == xst
            && t.valid
            && shared.opts.token_ttl.is_none_or(|ttl| t.issued.elapsed() < ttl)
    })
}

async fn rest(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let path = uri.path().to_string();
    let mut st = shared.lock();
    st.requests.push(format!("{method} {}", uri.path_and_query().map(|p| p.as_str()).unwrap_or("")));
    if header(&headers, "X-IG-API-KEY") != Some(shared.opts.api_key.as_str()) {
        return error(StatusCode::FORBIDDEN, "error.security.api-key-invalid");
    }
    match (method.as_str(), path.as_str()) {
        ("POST", "/session") => {
            let creds: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let good = creds.get("identifier").and_then(Value::as_str) == Some(shared.opts.username.as_str())
                && creds.get("password").and_then(Value::as_str) == Some(shared.opts.password.as_str());
            if st.refuse_logins || !good {
                st.refused_logins += 1;
                return error(StatusCode::UNAUTHORIZED, "error.security.invalid-details");
            }
            if header(&headers, "Version") != Some("2") {
                // Version 1 answers carry no tokens in this fake: the client must ask for 2.
                return error(StatusCode::BAD_REQUEST, "error.request.version-2-expected-by-this-fake");
            }
            st.logins += 1;
            st.next_token += 1;
            let n = st.next_token;
            let (cst, xst) =
                (format!("cst-{n:04}-{}", "c".repeat(20)), format!("xst-{n:04}-{}", "x".repeat(20)));
            st.tokens.push(Token { cst: cst.clone(), xst: xst.clone(), issued: Instant::now(), valid: true });
            let acct = shared.opts.account_id.clone();
            let session = capture("session.json");
            let answer = json!({
                "accountType": "CFD",
                "accountInfo": {"balance": 10000.0, "deposit": 0.0, "profitLoss": 0.0, "available": 10000.0},
                "currencyIsoCode": session["currency"],
                "currencySymbol": "£",
                "currentAccountId": acct,
                "lightstreamerEndpoint": shared.base,
                "accounts": [
                    {"accountId": acct, "accountName": "CFD", "preferred": true, "accountType": "CFD"},
                    {"accountId": "XYZ789", "accountName": "Spread bet", "preferred": false, "accountType": "SPREADBET"}
                ],
                "clientId": session["clientId"],
                "timezoneOffset": london_offset_hours(),
                "hasActiveDemoAccounts": true,
                "hasActiveLiveAccounts": true,
                "trailingStopsEnabled": false,
                "reroutingEnvironment": null,
                "dealingEnabled": true
            });
            (
                StatusCode::OK,
                [
                    ("content-type", "application/json"),
                    ("CST", cst.as_str()),
                    ("X-SECURITY-TOKEN", xst.as_str()),
                ],
                answer.to_string(),
            )
                .into_response()
        }
        _ if !authorized(&shared, &st, &headers) => {
            error(StatusCode::UNAUTHORIZED, "error.security.client-token-invalid")
        }
        ("GET", "/session") => {
            let mut s = capture("session.json");
            s["accountId"] = json!(shared.opts.account_id);
            s["lightstreamerEndpoint"] = json!(shared.base);
            ok_json(s)
        }
        ("PUT", "/session") => {
            let wanted: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match wanted.get("accountId").and_then(Value::as_str) {
                Some("XYZ789") => ok_json(capture("switch.json")),
                Some(a) if a == shared.opts.account_id => {
                    error(StatusCode::PRECONDITION_FAILED, "error.switch.accountId-must-be-different")
                }
                _ => error(StatusCode::PRECONDITION_FAILED, "error.switch.accountId-invalid"),
            }
        }
        ("GET", p) if p.starts_with("/markets/") => {
            let mut m = capture("markets_epic.json");
            m["instrument"]["epic"] = json!(&p["/markets/".len()..]);
            ok_json(m)
        }
        ("GET", p) if p.starts_with("/prices/") => {
            let epic = percent_decode(&p["/prices/".len()..]).unwrap_or_default();
            if st.throttle_prices > 0 {
                st.throttle_prices -= 1;
                return error(
                    StatusCode::FORBIDDEN,
                    "error.public-api.exceeded-account-historical-data-allowance",
                );
            }
            if st.unauthorize_prices > 0 {
                st.unauthorize_prices -= 1;
                return error(StatusCode::UNAUTHORIZED, "error.security.client-token-invalid");
            }
            if header(&headers, "Version") != Some("3") {
                return error(StatusCode::BAD_REQUEST, "error.request.version-3-expected-by-this-fake");
            }
            match st.prices_before_refusal.as_mut() {
                Some(0) => return error(StatusCode::NOT_FOUND, "error.error.instrument.epic.unavailable"),
                Some(n) => *n -= 1,
                None => {}
            }
            prices(&st, &epic, &query)
        }
        _ => error(StatusCode::NOT_FOUND, "error.not-found"),
    }
}

/// `GET /prices/{epic}` (version 3): `from`/`to` are the account's local time (London here),
/// both ends included; pages of `pageSize` from `pageNumber` 1.
fn prices(st: &St, epic: &str, q: &HashMap<String, String>) -> Response {
    let Some(all) = st.prices.get(epic) else {
        return error(StatusCode::NOT_FOUND, "error.error.instrument.epic.unavailable");
    };
    if q.get("resolution").map(String::as_str) != Some("MINUTE") {
        return error(StatusCode::BAD_REQUEST, "error.request.invalid.resolution");
    }
    let local = |k: &str| -> Option<DateTime<Utc>> {
        let t = NaiveDateTime::parse_from_str(q.get(k)?, "%Y-%m-%dT%H:%M:%S").ok()?;
        chrono_tz::Europe::London.from_local_datetime(&t).earliest().map(|t| t.with_timezone(&Utc))
    };
    let (Some(from), Some(to)) = (local("from"), local("to")) else {
        return error(StatusCode::BAD_REQUEST, "error.request.invalid.date-range");
    };
    let size: usize = q.get("pageSize").and_then(|s| s.parse().ok()).unwrap_or(20);
    let number: usize = q.get("pageNumber").and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    let picked: Vec<&Value> = all
        .iter()
        .filter(|p| {
            p["snapshotTimeUTC"]
                .as_str()
                .and_then(|s| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").ok())
                .is_some_and(|t| t.and_utc() >= from && t.and_utc() <= to)
        })
        .collect();
    let (page, total_pages): (Vec<&Value>, usize) = if size == 0 {
        (picked.clone(), 1)
    } else {
        (
            picked.iter().skip((number - 1) * size).take(size).copied().collect(),
            picked.len().div_ceil(size).max(1),
        )
    };
    ok_json(json!({
        "prices": page,
        "instrumentType": "COMMODITIES",
        "metadata": {
            "allowance": {"remainingAllowance": 9644, "totalAllowance": 10000, "allowanceExpiry": 69976},
            "size": page.len(),
            "pageData": {"pageSize": size, "pageNumber": number, "totalPages": total_pages}
        }
    }))
}

// --- the stream --------------------------------------------------------------------------------

async fn ws_upgrade(State(shared): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    ws.protocols(SUBPROTOCOLS).max_message_size(1 << 20).on_upgrade(move |socket| socket_task(socket, shared))
}

struct ConnGuard(Arc<Shared>, u64);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.conns.remove(&self.1);
        for s in st.sessions.values_mut() {
            if s.conn == Some(self.1) {
                s.conn = None;
            }
        }
    }
}

async fn socket_task(mut ws: WebSocket, shared: Arc<Shared>) {
    let Some(protocol) = ws.protocol().and_then(|p| p.to_str().ok()).map(str::to_string) else {
        // A Lightstreamer server requires the TLCP subprotocol.
        let _ = ws.close().await;
        return;
    };
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    {
        let mut st = shared.lock();
        st.protocols.push(protocol);
        st.conns.insert(id, tx.clone());
    }
    let _guard = ConnGuard(shared.clone(), id);
    let keepalive = Duration::from_millis(shared.opts.keepalive_ms);
    let mut stalled = false;
    let mut session: Option<String> = None;
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(out) = out else { return };
                if stalled { continue; }
                let msg = match out {
                    Out::Lines(lines) => lines.iter().map(|l| format!("{l}\r\n")).collect::<String>(),
                    Out::Raw(text) => text,
                    Out::Drop => return,
                    Out::Stall => { stalled = true; continue; }
                };
                if ws.send(Message::Text(msg)).await.is_err() {
                    return;
                }
            }
            incoming = ws.recv() => {
                let text = match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(_)) => continue,
                };
                if !request(&shared, id, &tx, &text, &mut session) {
                    // The answer (CONERR, END) goes out before the socket closes.
                    while let Ok(Out::Lines(lines)) = rx.try_recv() {
                        let msg = lines.iter().map(|l| format!("{l}\r\n")).collect::<String>();
                        if ws.send(Message::Text(msg)).await.is_err() {
                            return;
                        }
                    }
                    let _ = ws.close().await;
                    return;
                }
            }
            _ = tokio::time::sleep(keepalive), if !stalled => {
                if ws.send(Message::Text("PROBE\r\n".into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Handles one client request; false closes the socket.
fn request(
    shared: &Shared,
    conn: u64,
    tx: &mpsc::UnboundedSender<Out>,
    text: &str,
    session: &mut Option<String>,
) -> bool {
    let mut lines = text.split("\r\n");
    let name = lines.next().unwrap_or("");
    let send = |lines: Vec<String>| {
        let _ = tx.send(Out::Lines(lines));
    };
    match name {
        "wsok" => send(vec!["WSOK".into()]),
        "create_session" => {
            let Some(p) = lines.next().and_then(params) else {
                send(vec!["CONERR,67,Malformed request".into()]);
                return false;
            };
            let mut st = shared.lock();
            if let Some((code, msg)) = st.conerr_next.take() {
                st.conerrs.push(format!("{code},{msg}"));
                send(vec![format!("CONERR,{code},{}", encode_arg(&msg))]);
                return false;
            }
            let password = p.get("LS_password").map(String::as_str).unwrap_or("");
            let tokens = password
                .split_once('|')
                .and_then(|(c, x)| Some((c.strip_prefix("CST-")?, x.strip_prefix("XST-")?)));
            let good = p.get("LS_user") == Some(&shared.opts.account_id)
                && tokens.is_some_and(|(c, x)| token_valid(shared, &st, c, x));
            if !good {
                st.conerrs.push("1,User/password check failed".into());
                send(vec!["CONERR,1,User/password check failed".into()]);
                return false;
            }
            st.sessions_created += 1;
            let sid = format!("S{:016x}T{}", rand_id(), st.sessions_created);
            st.sessions.insert(sid.clone(), LsSession { conn: Some(conn), ..LsSession::default() });
            *session = Some(sid.clone());
            send(vec![
                format!("CONOK,{sid},50000,{},*", shared.opts.keepalive_ms),
                "SERVNAME,Lightstreamer HTTP Server".into(),
                "CLIENTIP,127.0.0.1".into(),
                "CONS,unlimited".into(),
            ]);
        }
        "bind_session" => {
            let p = lines.next().and_then(params).unwrap_or_default();
            let mut st = shared.lock();
            let sid = p.get("LS_session").cloned().unwrap_or_default();
            let Some(s) = st.sessions.get_mut(&sid) else {
                st.conerrs.push("20,Specified session not found".into());
                send(vec!["CONERR,20,Specified session not found".into()]);
                return false;
            };
            s.conn = Some(conn);
            let outbox = std::mem::take(&mut s.outbox);
            st.binds += 1;
            *session = Some(sid.clone());
            let mut out =
                vec![format!("CONOK,{sid},50000,{},*", shared.opts.keepalive_ms), "CONS,unlimited".into()];
            out.extend(outbox);
            send(out);
        }
        "control" => {
            let Some(sid) = session.clone() else {
                send(vec!["ERROR,20,Specified (or implied) session not found".into()]);
                return true;
            };
            for line in lines.filter(|l| !l.is_empty()) {
                let Some(p) = params(line) else {
                    send(vec!["ERROR,67,Malformed request".into()]);
                    continue;
                };
                if !control(shared, &sid, &p, &send) {
                    return false;
                }
            }
        }
        "heartbeat" => send(vec!["REQOK".into()]),
        _ => send(vec!["ERROR,67,Malformed request".into()]),
    }
    true
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64);
    h.finish()
}

/// One control request; false closes the socket.
fn control(shared: &Shared, sid: &str, p: &HashMap<String, String>, send: &dyn Fn(Vec<String>)) -> bool {
    let req = p.get("LS_reqId").cloned().unwrap_or_default();
    let ack = p.get("LS_ack").map(String::as_str) != Some("false");
    let mut st = shared.lock();
    match p.get("LS_op").map(String::as_str) {
        Some("add") => {
            let sub_id: u64 = match p.get("LS_subId").and_then(|s| s.parse().ok()) {
                Some(s) => s,
                None => {
                    send(vec![format!("REQERR,{req},65,Missing or invalid LS_subId")]);
                    return true;
                }
            };
            let group = p.get("LS_group").cloned().unwrap_or_default();
            let schema = p.get("LS_schema").cloned().unwrap_or_default();
            let mode = p.get("LS_mode").cloned().unwrap_or_default();
            let snapshot = p.get("LS_snapshot").cloned().unwrap_or_else(|| "false".into());
            st.subscribe_requests.push(SubscribeRequest {
                group: group.clone(),
                schema: schema.clone(),
                mode: mode.clone(),
                snapshot: snapshot.clone(),
            });
            let fields: Vec<String> =
                schema.split(' ').filter(|f| !f.is_empty()).map(str::to_string).collect();
            let (item, allowed, mode_ok) = if let Some(epic) = group.strip_prefix("MARKET:") {
                (ItemKind::Market(epic.to_string()), MARKET_FIELDS, mode == "MERGE")
            } else if let Some(epic) = group.strip_prefix("CHART:").and_then(|g| g.strip_suffix(":TICK")) {
                (ItemKind::Tick(epic.to_string()), TICK_FIELDS, mode == "DISTINCT")
            } else {
                send(vec![format!("REQERR,{req},21,Invalid group")]);
                return true;
            };
            let epic = match &item {
                ItemKind::Market(e) | ItemKind::Tick(e) => e.clone(),
            };
            if st.rejected_epics.contains(&epic) || group.contains(' ') {
                send(vec![format!("REQERR,{req},21,Invalid group")]);
                return true;
            }
            if fields.is_empty() || fields.iter().any(|f| !allowed.contains(&f.as_str())) {
                send(vec![format!("REQERR,{req},23,Invalid field schema")]);
                return true;
            }
            if !mode_ok {
                send(vec![format!("REQERR,{req},24,Subscription mode not allowed for this item")]);
                return true;
            }
            let n = fields.len();
            let mut sub = FakeSub { group, item: item.clone(), fields, last: None };
            let mut lines = Vec::new();
            if ack {
                lines.push(format!("REQOK,{req}"));
            }
            lines.push(format!("SUBOK,{sub_id},1,{n}"));
            lines.push(format!("CONF,{sub_id},unlimited,filtered"));
            if snapshot == "true" {
                match &item {
                    ItemKind::Market(e) => {
                        if let Some(m) = st.markets.get(e) {
                            let now = field_values(&sub, m);
                            lines.push(format!("U,{sub_id},1,{}", encode_update(None, &now)));
                            sub.last = Some(now);
                        }
                    }
                    ItemKind::Tick(e) => {
                        for event in st.tapes.get(e).into_iter().flatten() {
                            let now = field_values(&sub, event);
                            lines.push(format!("U,{sub_id},1,{}", encode_update(sub.last.as_ref(), &now)));
                            sub.last = Some(now);
                        }
                        lines.push(format!("EOS,{sub_id},1"));
                    }
                }
            }
            if let Some(s) = st.sessions.get_mut(sid) {
                s.subs.insert(sub_id, sub);
            }
            send(lines);
        }
        Some("delete") => {
            let sub_id: Option<u64> = p.get("LS_subId").and_then(|s| s.parse().ok());
            let removed = sub_id.and_then(|id| st.sessions.get_mut(sid)?.subs.remove(&id));
            match (removed, sub_id) {
                (Some(_), Some(id)) => {
                    st.unsubscribes += 1;
                    let mut lines = Vec::new();
                    if ack {
                        lines.push(format!("REQOK,{req}"));
                    }
                    lines.push(format!("UNSUB,{id}"));
                    send(lines);
                }
                _ => send(vec![format!("REQERR,{req},19,Specified subscription not found")]),
            }
        }
        Some("destroy") => {
            st.sessions.remove(sid);
            send(vec![format!("REQOK,{req}"), "END,31,Destroy invoked by client".into()]);
            return false;
        }
        _ => send(vec![format!("REQERR,{req},65,Invalid LS_op")]),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_compacted_like_a_server() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(encode_update(None, &[s("1.1"), None, s(""), s("#x")]), "1.1|#|$|%23x");
        let last = vec![s("a"), s("b"), s("c"), s("d"), s("e")];
        assert_eq!(encode_update(Some(&last), &[s("A"), s("b"), s("c"), s("d"), s("E")]), "A|^3|E");
        assert_eq!(encode_update(Some(&last), &[s("a"), s("b"), s("X"), s("d"), s("e")]), "||X||");
        assert_eq!(encode_update(Some(&last), &[s("a|b"), None, s("c"), s("d"), s("e")]), "a%7Cb|#|^3");
        assert_eq!(percent_decode("CST-a%7CXST-b").as_deref(), Some("CST-a|XST-b"));
        assert_eq!(params("a=1&b=x%20y").unwrap()["b"], "x y");
        assert_eq!(encode_arg("a,b"), "a%2Cb");
    }
}
