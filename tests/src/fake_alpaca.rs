//! A fake Alpaca Trading API (REST v2 and the `trade_updates` WebSocket) for tests, speaking
//! the real protocol: the message shapes come from the captures in
//! `shared/data/c_protocol/alpaca/` (see `fake_alpaca.md` beside this file for which shape
//! came from where, and what is assumed).
//!
//! It keeps an order book in memory (brackets with their two legs), checks the key headers,
//! refuses duplicate client order ids, and pushes trade updates as binary frames (as the paper
//! stream does) or text frames. Tests drive fills with [`FakeAlpaca::fill`] and
//! [`FakeAlpaca::fill_leg`] and switch on hostile behaviour at run time: rate limits, server
//! errors, accepted-then-timed-out orders, dropped streams, out-of-order and duplicated events,
//! raw malformed frames.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tapeflow_executor::broker::Leg;
use tokio::sync::broadcast;

/// How the fake starts.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    pub key_id: String,
    pub secret_key: String,
    /// Trade updates (and handshake answers) as binary frames, like the paper stream.
    pub binary_frames: bool,
    pub equity: Decimal,
    pub cash: Decimal,
    pub buying_power: Decimal,
    pub last_equity: Decimal,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            key_id: "PKFAKEKEY0000000000".into(),
            secret_key: "fake-secret-0000000000000000000000000000".into(),
            binary_frames: true,
            equity: Decimal::new(10_000_000, 2),
            cash: Decimal::new(10_000_000, 2),
            buying_power: Decimal::new(40_000_000, 2),
            last_equity: Decimal::new(10_000_000, 2),
        }
    }
}

/// What the next `POST /v2/orders` does instead of (or besides) the normal answer.
#[derive(Debug, Clone)]
pub enum OrderFault {
    /// 429 with `X-Ratelimit-*` headers; nothing is stored.
    RateLimited,
    /// 500; nothing is stored.
    ServerError,
    /// Refused with this status and Alpaca error body; nothing is stored.
    Reject { status: u16, code: u64, message: String },
    /// The order is stored (and its `new` event sent), the answer comes after this delay.
    AcceptThenDelay(Duration),
}

/// The running fake. Dropping it stops the server and closes its streams.
pub struct FakeAlpaca {
    /// `http://127.0.0.1:<port>` (the trading base URL, without `/v2`).
    pub base_url: String,
    /// `ws://127.0.0.1:<port>/stream`.
    pub stream_url: String,
    pub key_id: String,
    pub secret_key: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    key_id: String,
    secret_key: String,
    state: Mutex<BookState>,
    push: broadcast::Sender<Push>,
    binary: AtomicBool,
    /// WebSocket connections accepted, ever.
    connections: AtomicUsize,
    /// Connections currently listening to trade_updates.
    listening: AtomicUsize,
    /// Woken at every accepted order.
    accepted_notify: tokio::sync::Notify,
}

#[derive(Debug, Clone)]
enum Push {
    Event(Value),
    Raw {
        bytes: Vec<u8>,
        binary: bool,
    },
    /// Close every listening socket abruptly (no close frame).
    Drop,
}

#[derive(Debug, Clone)]
struct Order {
    id: String,
    client_order_id: String,
    symbol: String,
    asset_id: String,
    side: String,
    qty: Decimal,
    filled_qty: Decimal,
    filled_avg_price: Option<Decimal>,
    order_class: String,
    kind: String,
    time_in_force: String,
    limit_price: Option<Decimal>,
    stop_price: Option<Decimal>,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    filled_at: Option<DateTime<Utc>>,
    canceled_at: Option<DateTime<Utc>>,
    parent: Option<usize>,
    legs: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Position {
    qty: Decimal,
    avg_entry_price: Decimal,
    current_price: Decimal,
}

struct BookState {
    orders: Vec<Order>,
    accepted: HashMap<String, usize>,
    /// When each client order id was first accepted (the order stored).
    accepted_at: HashMap<String, Instant>,
    order_requests: Vec<Value>,
    requests: Vec<String>,
    events: Vec<Value>,
    positions: BTreeMap<String, Position>,
    faults: VecDeque<OrderFault>,
    next_id: u64,
    next_exec: u64,
    equity: Decimal,
    cash: Decimal,
    buying_power: Decimal,
    last_equity: Decimal,
    account_blocked: bool,
    trading_blocked: bool,
    out_of_order: bool,
    duplicate_events: bool,
    drop_after: Option<String>,
    held: Vec<(String, Value)>,
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "filled" | "canceled" | "expired" | "rejected" | "replaced" | "done_for_day")
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn dec_str(d: Decimal) -> String {
    d.normalize().to_string()
}

fn opt_dec(d: Option<Decimal>) -> Value {
    d.map(|d| Value::String(dec_str(d))).unwrap_or(Value::Null)
}

fn opt_ts(t: Option<DateTime<Utc>>) -> Value {
    t.map(|t| Value::String(ts(t))).unwrap_or(Value::Null)
}

/// A decimal from a JSON string or number.
fn decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::String(s) => Decimal::from_str(s.trim()).ok(),
        Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
        _ => None,
    }
}

/// An Alpaca error answer: `{"code": …, "message": …}` with its status.
struct ApiError {
    status: StatusCode,
    code: u64,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "code": self.code, "message": self.message }))).into_response()
    }
}

fn alpaca_error(status: StatusCode, code: u64, message: &str) -> ApiError {
    ApiError { status, code, message: message.to_string() }
}

fn error_response(status: StatusCode, code: u64, message: &str) -> Response {
    alpaca_error(status, code, message).into_response()
}

impl BookState {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("0f7a1c2e-{:04x}-4{:03x}-8{:03x}-{:012x}", self.next_id % 0xffff, 0xa1, 0x5c, self.next_id)
    }

    fn new_exec_id(&mut self) -> String {
        self.next_exec += 1;
        format!(
            "e1c7d9a0-{:04x}-4{:03x}-9{:03x}-{:012x}",
            self.next_exec % 0xffff,
            0x3e,
            0x0d,
            self.next_exec
        )
    }

    fn find(&self, client_order_id: &str) -> Option<usize> {
        self.orders.iter().position(|o| o.client_order_id == client_order_id)
    }

    fn find_id(&self, id: &str) -> Option<usize> {
        self.orders.iter().position(|o| o.id == id)
    }

    /// An order as the REST API and the stream show it (field set of alpaca-py's
    /// `test_market_order` mock and the docs' trade_updates example). With `nested`, a
    /// bracket's legs are included under `legs`.
    fn order_json(&self, i: usize, nested: bool) -> Value {
        let o = &self.orders[i];
        let legs = if nested && !o.legs.is_empty() {
            Value::Array(o.legs.iter().map(|&l| self.order_json(l, false)).collect())
        } else {
            Value::Null
        };
        json!({
            "id": o.id,
            "client_order_id": o.client_order_id,
            "created_at": ts(o.created_at),
            "updated_at": ts(o.updated_at),
            "submitted_at": ts(o.created_at),
            "filled_at": opt_ts(o.filled_at),
            "expired_at": null,
            "canceled_at": opt_ts(o.canceled_at),
            "failed_at": null,
            "replaced_at": null,
            "replaced_by": null,
            "replaces": null,
            "asset_id": o.asset_id,
            "symbol": o.symbol,
            "asset_class": "us_equity",
            "notional": null,
            "qty": dec_str(o.qty),
            "filled_qty": dec_str(o.filled_qty),
            "filled_avg_price": opt_dec(o.filled_avg_price),
            "order_class": o.order_class,
            "order_type": o.kind,
            "type": o.kind,
            "side": o.side,
            "time_in_force": o.time_in_force,
            "limit_price": opt_dec(o.limit_price),
            "stop_price": opt_dec(o.stop_price),
            "status": o.status,
            "extended_hours": false,
            "legs": legs,
            "trail_percent": null,
            "trail_price": null,
            "hwm": null,
            "position_intent": null,
            "subtag": null,
            "source": null,
        })
    }

    /// A trade_updates message (shape of the docs' example): fills carry `execution_id`,
    /// `price`, `qty`, `position_qty` and `timestamp`; `new` carries no timestamp.
    fn update_json(&self, i: usize, event: &str, fill: Option<(&str, Decimal, Decimal)>) -> Value {
        let top = self.orders[i].parent.unwrap_or(i);
        let mut data = json!({ "event": event, "order": self.order_json(i, i == top) });
        let obj = data.as_object_mut().unwrap();
        if event != "new" {
            obj.insert("timestamp".into(), json!(ts(self.orders[i].updated_at)));
        }
        if let Some((exec, qty, price)) = fill {
            let pos = self.positions.get(&self.orders[i].symbol).map(|p| p.qty).unwrap_or_default();
            obj.insert("execution_id".into(), json!(exec));
            obj.insert("price".into(), json!(dec_str(price)));
            obj.insert("qty".into(), json!(dec_str(qty)));
            obj.insert("position_qty".into(), json!(dec_str(pos)));
        }
        json!({ "stream": "trade_updates", "data": data })
    }

    /// Records and pushes an update, applying the hostile switches.
    fn emit(&mut self, push: &broadcast::Sender<Push>, order_id: &str, msg: Value) {
        self.events.push(msg.clone());
        let event = msg["data"]["event"].as_str().unwrap_or("").to_string();
        if self.out_of_order && event == "new" {
            self.held.push((order_id.to_string(), msg));
            return;
        }
        let copies = if self.duplicate_events { 2 } else { 1 };
        for _ in 0..copies {
            let _ = push.send(Push::Event(msg.clone()));
        }
        let (release, keep): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.held).into_iter().partition(|(id, _)| id == order_id);
        self.held = keep;
        for (_, m) in release {
            for _ in 0..copies {
                let _ = push.send(Push::Event(m.clone()));
            }
        }
        if self.drop_after.as_deref() == Some(event.as_str()) {
            self.drop_after = None;
            let _ = push.send(Push::Drop);
        }
    }

    fn apply_position(&mut self, symbol: &str, side: &str, qty: Decimal, price: Decimal) {
        let signed = if side == "buy" { qty } else { -qty };
        let p = self.positions.entry(symbol.to_string()).or_insert(Position {
            qty: Decimal::ZERO,
            avg_entry_price: price,
            current_price: price,
        });
        let new_qty = p.qty + signed;
        let sign = |d: Decimal| d.cmp(&Decimal::ZERO);
        if p.qty.is_zero() || (sign(new_qty) != sign(p.qty) && !new_qty.is_zero()) {
            p.avg_entry_price = price; // opened or flipped
        } else if sign(p.qty) == sign(signed) {
            p.avg_entry_price = (p.avg_entry_price * p.qty.abs() + price * qty) / new_qty.abs();
        }
        p.qty = new_qty;
        p.current_price = price;
        if new_qty.is_zero() {
            self.positions.remove(symbol);
        }
    }

    /// Fills `qty` of order `i` at `price`; returns the execution id.
    fn fill(
        &mut self,
        push: &broadcast::Sender<Push>,
        i: usize,
        qty: Decimal,
        price: Decimal,
    ) -> Result<String, String> {
        let o = &self.orders[i];
        if is_terminal(&o.status) || o.status == "held" {
            return Err(format!("order {} is {}: it cannot fill", o.client_order_id, o.status));
        }
        if qty <= Decimal::ZERO || o.filled_qty + qty > o.qty {
            return Err(format!(
                "order {}: cannot fill {qty} of {} ({} filled)",
                o.client_order_id, o.qty, o.filled_qty
            ));
        }
        let now = Utc::now();
        let exec = self.new_exec_id();
        let o = &mut self.orders[i];
        let filled = o.filled_qty + qty;
        let avg = (o.filled_avg_price.unwrap_or_default() * o.filled_qty + price * qty) / filled;
        o.filled_qty = filled;
        o.filled_avg_price = Some(avg);
        o.updated_at = now;
        let full = filled == o.qty;
        o.status = if full { "filled" } else { "partially_filled" }.into();
        if full {
            o.filled_at = Some(now);
        }
        let (symbol, side, id, parent, legs) =
            (o.symbol.clone(), o.side.clone(), o.id.clone(), o.parent, o.legs.clone());
        self.apply_position(&symbol, &side, qty, price);
        if full {
            // The entry filled: its exit legs become active.
            for &l in &legs {
                if self.orders[l].status == "held" {
                    self.orders[l].status = "new".into();
                    self.orders[l].updated_at = now;
                }
            }
        }
        let msg = self.update_json(i, if full { "fill" } else { "partial_fill" }, Some((&exec, qty, price)));
        self.emit(push, &id, msg);
        if let (true, Some(p)) = (full, parent) {
            // One leg filled: the other is canceled (one-cancels-other).
            let siblings: Vec<usize> = self.orders[p].legs.iter().copied().filter(|&l| l != i).collect();
            for s in siblings {
                self.cancel_one(push, s, now);
            }
        }
        Ok(exec)
    }

    fn cancel_one(&mut self, push: &broadcast::Sender<Push>, i: usize, now: DateTime<Utc>) {
        if is_terminal(&self.orders[i].status) {
            return;
        }
        let o = &mut self.orders[i];
        o.status = "canceled".into();
        o.canceled_at = Some(now);
        o.updated_at = now;
        let id = o.id.clone();
        let msg = self.update_json(i, "canceled", None);
        self.emit(push, &id, msg);
    }

    /// `DELETE /v2/orders/{id}`: the order and the rest of its group.
    fn cancel_group(&mut self, push: &broadcast::Sender<Push>, i: usize) -> Result<(), ApiError> {
        let status = self.orders[i].status.clone();
        if is_terminal(&status) {
            return Err(alpaca_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                42210000,
                &format!("order is already in \"{status}\" state"),
            ));
        }
        let now = Utc::now();
        let top = self.orders[i].parent.unwrap_or(i);
        let mut group = vec![i];
        if top == i {
            group.extend(self.orders[i].legs.iter().copied());
        } else {
            group.extend(self.orders[top].legs.iter().copied().filter(|&l| l != i));
        }
        for g in group {
            self.cancel_one(push, g, now);
        }
        Ok(())
    }

    fn account_json(&self) -> Value {
        // Field set of alpaca-py's test_get_account mock.
        let long: Decimal =
            self.positions.values().filter(|p| p.qty > Decimal::ZERO).map(|p| p.qty * p.current_price).sum();
        let short: Decimal =
            self.positions.values().filter(|p| p.qty < Decimal::ZERO).map(|p| p.qty * p.current_price).sum();
        json!({
            "account_blocked": self.account_blocked,
            "accrued_fees": "0",
            "account_number": "010203ABCD",
            "buying_power": dec_str(self.buying_power),
            "cash": dec_str(self.cash),
            "created_at": "2019-06-12T22:47:07.99658Z",
            "currency": "USD",
            "daytrade_count": 0,
            "daytrading_buying_power": dec_str(self.buying_power),
            "equity": dec_str(self.equity),
            "id": "e6fe16f3-64a4-4921-8928-cadf02f92f98",
            "initial_margin": "0",
            "last_equity": dec_str(self.last_equity),
            "last_maintenance_margin": "0",
            "non_marginable_buying_power": dec_str(self.cash),
            "long_market_value": dec_str(long),
            "maintenance_margin": "0",
            "multiplier": "4",
            "pattern_day_trader": false,
            "portfolio_value": dec_str(self.equity),
            "regt_buying_power": dec_str(self.buying_power),
            "short_market_value": dec_str(short),
            "shorting_enabled": true,
            "sma": "0",
            "status": "ACTIVE",
            "trade_suspended_by_user": false,
            "trading_blocked": self.trading_blocked,
            "transfers_blocked": false,
        })
    }

    fn positions_json(&self) -> Value {
        // Field set of alpaca-py's test_get_all_positions mock; a short has a negative qty.
        Value::Array(
            self.positions
                .iter()
                .map(|(symbol, p)| {
                    let market_value = p.qty * p.current_price;
                    let cost_basis = p.qty * p.avg_entry_price;
                    let pl = market_value - cost_basis;
                    json!({
                        "asset_id": asset_id(symbol),
                        "symbol": symbol,
                        "exchange": "NASDAQ",
                        "asset_class": "us_equity",
                        "avg_entry_price": dec_str(p.avg_entry_price),
                        "qty": dec_str(p.qty),
                        "side": if p.qty < Decimal::ZERO { "short" } else { "long" },
                        "market_value": dec_str(market_value),
                        "cost_basis": dec_str(cost_basis),
                        "unrealized_pl": dec_str(pl),
                        "unrealized_plpc": if cost_basis.is_zero() { "0".to_string() } else { dec_str((pl / cost_basis.abs()).round_dp(4)) },
                        "unrealized_intraday_pl": dec_str(pl),
                        "unrealized_intraday_plpc": "0",
                        "current_price": dec_str(p.current_price),
                        "lastday_price": dec_str(p.current_price),
                        "change_today": "0",
                    })
                })
                .collect(),
        )
    }
}

/// A stable asset id per symbol.
fn asset_id(symbol: &str) -> String {
    let h = symbol.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h >> 4) & 0xfff,
        h & 0xffff_ffff_ffff
    )
}

impl FakeAlpaca {
    /// Binds `127.0.0.1:0` and serves until dropped.
    pub async fn start(opts: FakeOptions) -> FakeAlpaca {
        let (push, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            key_id: opts.key_id.clone(),
            secret_key: opts.secret_key.clone(),
            state: Mutex::new(BookState {
                orders: Vec::new(),
                accepted: HashMap::new(),
                accepted_at: HashMap::new(),
                order_requests: Vec::new(),
                requests: Vec::new(),
                events: Vec::new(),
                positions: BTreeMap::new(),
                faults: VecDeque::new(),
                next_id: 0,
                next_exec: 0,
                equity: opts.equity,
                cash: opts.cash,
                buying_power: opts.buying_power,
                last_equity: opts.last_equity,
                account_blocked: false,
                trading_blocked: false,
                out_of_order: false,
                duplicate_events: false,
                drop_after: None,
                held: Vec::new(),
            }),
            push,
            binary: AtomicBool::new(opts.binary_frames),
            connections: AtomicUsize::new(0),
            listening: AtomicUsize::new(0),
            accepted_notify: tokio::sync::Notify::new(),
        });
        let app = Router::new().route("/stream", get(stream)).fallback(rest).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeAlpaca {
            base_url: format!("http://{addr}"),
            stream_url: format!("ws://{addr}/stream"),
            key_id: opts.key_id,
            secret_key: opts.secret_key,
            shared,
            server,
        }
    }

    fn state(&self) -> MutexGuard<'_, BookState> {
        lock(&self.shared)
    }

    // --- driving the book ---------------------------------------------------------------

    /// Fills `qty` of the order with this client order id (an entry, an exit, or a leg by its
    /// own id) at `price`: emits `partial_fill` or `fill` with an execution id and the
    /// position after it. A full entry fill activates its legs (`held` → `new`); a full leg
    /// fill cancels the other leg. Returns the execution id; panics on a fill the order cannot
    /// take (unknown id, held leg, more than its quantity).
    pub fn fill(&self, client_order_id: &str, qty: Decimal, price: Decimal) -> String {
        let mut st = self.state();
        let i = st.find(client_order_id).unwrap_or_else(|| panic!("fake alpaca: no order {client_order_id}"));
        st.fill(&self.shared.push, i, qty, price).unwrap_or_else(|e| panic!("fake alpaca: {e}"))
    }

    /// Fills the take-profit or stop-loss leg of a bracket completely at `price` and cancels
    /// the other leg. Returns the execution id.
    pub fn fill_leg(&self, parent_client_order_id: &str, leg: Leg, price: Decimal) -> String {
        let mut st = self.state();
        let p = st
            .find(parent_client_order_id)
            .unwrap_or_else(|| panic!("fake alpaca: no order {parent_client_order_id}"));
        let kind = match leg {
            Leg::TakeProfit => "limit",
            Leg::StopLoss => "stop",
            other => panic!("fake alpaca: fill_leg takes a bracket leg, not {other:?}"),
        };
        let l = st.orders[p]
            .legs
            .iter()
            .copied()
            .find(|&l| st.orders[l].kind == kind)
            .unwrap_or_else(|| panic!("fake alpaca: {parent_client_order_id} has no {kind} leg"));
        let left = st.orders[l].qty - st.orders[l].filled_qty;
        st.fill(&self.shared.push, l, left, price).unwrap_or_else(|e| panic!("fake alpaca: {e}"))
    }

    /// Every order (entries with their legs nested), oldest first, as `GET /v2/orders` shows it.
    pub fn orders(&self) -> Vec<Value> {
        let st = self.state();
        (0..st.orders.len())
            .filter(|&i| st.orders[i].parent.is_none())
            .map(|i| st.order_json(i, true))
            .collect()
    }

    /// One order (or leg) by client order id, legs nested.
    pub fn order(&self, client_order_id: &str) -> Option<Value> {
        let st = self.state();
        st.find(client_order_id).map(|i| st.order_json(i, true))
    }

    /// How many `POST /v2/orders` were accepted per client order id (an order accepted and
    /// then timed out counts; refusals and injected failures do not).
    pub fn count_by_client_id(&self) -> HashMap<String, usize> {
        self.state().accepted.clone()
    }

    /// The instant (this process's clock) each client order id was first accepted: the order
    /// stored, before the answer is written. For latency measurements.
    pub fn accepted_at(&self) -> HashMap<String, Instant> {
        self.state().accepted_at.clone()
    }

    /// Waits until an order with this client order id is accepted; the instant it was, or
    /// None after `timeout`.
    pub async fn wait_accepted(&self, client_order_id: &str, timeout: Duration) -> Option<Instant> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.accepted_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(t) = self.state().accepted_at.get(client_order_id) {
                return Some(*t);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Every `POST /v2/orders` body received, in order (refused ones included).
    pub fn order_requests(&self) -> Vec<Value> {
        self.state().order_requests.clone()
    }

    /// Every REST request as `METHOD /path?query`, in order.
    pub fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }

    /// Every trade_updates message emitted, in order (also those nobody was listening to).
    pub fn events(&self) -> Vec<Value> {
        self.state().events.clone()
    }

    /// Sets a position directly (qty negative for a short).
    pub fn set_position(&self, symbol: &str, qty: Decimal, avg_entry_price: Decimal) {
        let mut st = self.state();
        if qty.is_zero() {
            st.positions.remove(symbol);
        } else {
            st.positions
                .insert(symbol.into(), Position { qty, avg_entry_price, current_price: avg_entry_price });
        }
    }

    pub fn set_account_blocked(&self, blocked: bool) {
        self.state().account_blocked = blocked;
    }

    pub fn set_trading_blocked(&self, blocked: bool) {
        self.state().trading_blocked = blocked;
    }

    // --- hostile behaviour --------------------------------------------------------------

    /// The next `n` order POSTs answer 429 with `X-Ratelimit-*` headers.
    pub fn rate_limit_next_orders(&self, n: usize) {
        let mut st = self.state();
        for _ in 0..n {
            st.faults.push_back(OrderFault::RateLimited);
        }
    }

    /// The next `n` order POSTs answer 500.
    pub fn fail_next_orders(&self, n: usize) {
        let mut st = self.state();
        for _ in 0..n {
            st.faults.push_back(OrderFault::ServerError);
        }
    }

    /// The next order POST is refused with `status` and `{"code", "message"}`.
    pub fn reject_next_order(&self, status: u16, code: u64, message: &str) {
        self.state().faults.push_back(OrderFault::Reject { status, code, message: message.into() });
    }

    /// The next order POST is stored, but answered only after `delay` (beyond the client's
    /// timeout: the client sees a timeout although the order exists).
    pub fn accept_then_delay_next_order(&self, delay: Duration) {
        self.state().faults.push_back(OrderFault::AcceptThenDelay(delay));
    }

    /// Queues any fault for the next order POST.
    pub fn push_fault(&self, fault: OrderFault) {
        self.state().faults.push_back(fault);
    }

    /// Trade updates as binary (true, the paper stream's way) or text frames from now on.
    pub fn set_binary_frames(&self, binary: bool) {
        self.shared.binary.store(binary, Ordering::SeqCst);
    }

    /// Closes every listening stream abruptly now.
    pub fn drop_stream(&self) {
        let _ = self.shared.push.send(Push::Drop);
    }

    /// Closes every listening stream right after the next update named `event` is sent
    /// (e.g. `"partial_fill"`: what follows is only seen after a reconnect, or over REST).
    pub fn drop_stream_after(&self, event: &str) {
        self.state().drop_after = Some(event.into());
    }

    /// Holds each `new` update back until the next update of the same order has been sent
    /// (so a fill arrives before its `new`). Switching it off releases what is held.
    pub fn deliver_out_of_order(&self, on: bool) {
        let mut st = self.state();
        st.out_of_order = on;
        if !on {
            for (_, m) in std::mem::take(&mut st.held) {
                let _ = self.shared.push.send(Push::Event(m));
            }
        }
    }

    /// Sends every update twice.
    pub fn duplicate_events(&self, on: bool) {
        self.state().duplicate_events = on;
    }

    /// Sends these bytes as one frame to every listening stream.
    pub fn send_raw_frame(&self, bytes: &[u8], binary: bool) {
        let _ = self.shared.push.send(Push::Raw { bytes: bytes.to_vec(), binary });
    }

    /// WebSocket connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Streams listening to trade_updates now.
    pub fn listening(&self) -> usize {
        self.shared.listening.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` streams are listening; false on timeout.
    pub async fn wait_listening(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.listening() < n {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

impl Drop for FakeAlpaca {
    fn drop(&mut self) {
        let _ = self.shared.push.send(Push::Drop);
        self.server.abort();
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, BookState> {
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

// --- REST ------------------------------------------------------------------------------------

async fn rest(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    lock(&shared)
        .requests
        .push(format!("{method} {}", uri.path_and_query().map(|p| p.as_str()).unwrap_or("")));
    let key = headers.get("APCA-API-KEY-ID").and_then(|v| v.to_str().ok());
    let secret = headers.get("APCA-API-SECRET-KEY").and_then(|v| v.to_str().ok());
    if key != Some(shared.key_id.as_str()) || secret != Some(shared.secret_key.as_str()) {
        // alpaca-py tests/broker/.../test_accounts_routes.py, test_get_account_account_not_found.
        return error_response(StatusCode::UNAUTHORIZED, 40110000, "request is not authorized");
    }
    let nested = query.get("nested").map(|v| v == "true").unwrap_or(false);
    match (method.clone(), path.as_str()) {
        (Method::GET, "/v2/account") => Json(lock(&shared).account_json()).into_response(),
        (Method::GET, "/v2/positions") => Json(lock(&shared).positions_json()).into_response(),
        (Method::POST, "/v2/orders") => post_order(&shared, &body).await,
        (Method::GET, "/v2/orders") => {
            let st = lock(&shared);
            let status = query.get("status").map(String::as_str).unwrap_or("open");
            let limit: usize = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(50).min(500);
            let wanted = |i: usize| {
                let s = &st.orders[i].status;
                match status {
                    "open" => !is_terminal(s),
                    "closed" => is_terminal(s),
                    _ => true,
                }
            };
            let list: Vec<Value> = if nested {
                // Entries with their legs; an entry is listed while it or a leg is wanted.
                (0..st.orders.len())
                    .rev()
                    .filter(|&i| st.orders[i].parent.is_none())
                    .filter(|&i| wanted(i) || st.orders[i].legs.iter().any(|&l| wanted(l)))
                    .map(|i| st.order_json(i, true))
                    .take(limit)
                    .collect()
            } else {
                (0..st.orders.len())
                    .rev()
                    .filter(|&i| wanted(i))
                    .map(|i| st.order_json(i, false))
                    .take(limit)
                    .collect()
            };
            Json(Value::Array(list)).into_response()
        }
        (Method::GET, "/v2/orders:by_client_order_id") => {
            let st = lock(&shared);
            let Some(coid) = query.get("client_order_id") else {
                return error_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    40010000,
                    "client_order_id is required",
                );
            };
            match st.find(coid) {
                Some(i) => Json(st.order_json(i, true)).into_response(),
                None => error_response(StatusCode::NOT_FOUND, 40410000, "order not found"),
            }
        }
        (m, p) if p.starts_with("/v2/orders/") => {
            let id = &p["/v2/orders/".len()..];
            let mut st = lock(&shared);
            let Some(i) = st.find_id(id) else {
                // alpaca-py test_cancel_orders: {"code": 40410000, "message": "order not found"}.
                return error_response(StatusCode::NOT_FOUND, 40410000, "order not found");
            };
            match m {
                Method::GET => Json(st.order_json(i, nested)).into_response(),
                Method::DELETE => match st.cancel_group(&shared.push, i) {
                    Ok(()) => StatusCode::NO_CONTENT.into_response(),
                    Err(e) => e.into_response(),
                },
                _ => error_response(StatusCode::METHOD_NOT_ALLOWED, 40510000, "method not allowed"),
            }
        }
        _ => error_response(StatusCode::NOT_FOUND, 40410000, "endpoint not found"),
    }
}

fn rate_limited() -> Response {
    let reset = (Utc::now().timestamp() + 60).to_string();
    let mut resp = error_response(StatusCode::TOO_MANY_REQUESTS, 42910000, "rate limit exceeded");
    let h = resp.headers_mut();
    h.insert("X-Ratelimit-Limit", HeaderValue::from_static("200"));
    h.insert("X-Ratelimit-Remaining", HeaderValue::from_static("0"));
    h.insert("X-Ratelimit-Reset", HeaderValue::from_str(&reset).unwrap());
    resp
}

/// Checks a price's increment: 2 decimals at 1 and above, 4 below (the docs' 42210000 text).
fn check_price(name: &str, v: &Value) -> Result<Decimal, ApiError> {
    let Some(p) = decimal(v) else {
        return Err(alpaca_error(StatusCode::UNPROCESSABLE_ENTITY, 40010001, &format!("invalid {name}")));
    };
    let max_dp = if p >= Decimal::ONE { 2 } else { 4 };
    if p <= Decimal::ZERO || p.normalize().scale() > max_dp {
        return Err(alpaca_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42210000,
            &format!(
                "invalid {name} {v}. sub-penny increment does not fulfill minimum pricing criteria",
                v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
            ),
        ));
    }
    Ok(p)
}

async fn post_order(shared: &Arc<Shared>, body: &[u8]) -> Response {
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    let fault = {
        let mut st = lock(shared);
        st.order_requests
            .push(parsed.as_ref().cloned().unwrap_or_else(|_| json!(String::from_utf8_lossy(body))));
        st.faults.pop_front()
    };
    let mut delay = None;
    match fault {
        Some(OrderFault::RateLimited) => return rate_limited(),
        Some(OrderFault::ServerError) => {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                50010000,
                "internal server error occurred",
            )
        }
        Some(OrderFault::Reject { status, code, message }) => {
            return error_response(
                StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
                code,
                &message,
            )
        }
        Some(OrderFault::AcceptThenDelay(d)) => delay = Some(d),
        None => {}
    }
    let Ok(req) = parsed else {
        return error_response(StatusCode::BAD_REQUEST, 40010000, "request body format is invalid");
    };
    let resp = match create_order(shared, &req) {
        Ok(v) => Json(v).into_response(),
        Err(e) => return e.into_response(),
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    resp
}

fn create_order(shared: &Arc<Shared>, req: &Value) -> Result<Value, ApiError> {
    let invalid = |m: &str| alpaca_error(StatusCode::UNPROCESSABLE_ENTITY, 40010001, m);
    let symbol = req
        .get("symbol")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("symbol is required"))?;
    let qty = req.get("qty").and_then(decimal).ok_or_else(|| invalid("qty is required"))?;
    if qty <= Decimal::ZERO {
        return Err(invalid("qty must be > 0"));
    }
    let side = req
        .get("side")
        .and_then(Value::as_str)
        .filter(|s| matches!(*s, "buy" | "sell"))
        .ok_or_else(|| invalid("invalid side"))?;
    let kind = req.get("type").and_then(Value::as_str).ok_or_else(|| invalid("type is required"))?;
    if !matches!(kind, "market" | "limit" | "stop" | "stop_limit") {
        return Err(invalid(&format!("invalid order type {kind}")));
    }
    let tif = req
        .get("time_in_force")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("time_in_force is required"))?;
    if !matches!(tif, "day" | "gtc" | "opg" | "cls" | "ioc" | "fok") {
        return Err(invalid(&format!("invalid time_in_force {tif}")));
    }
    let class = req.get("order_class").and_then(Value::as_str).unwrap_or("simple");
    let limit_price = match req.get("limit_price") {
        Some(v) if !v.is_null() => Some(check_price("limit_price", v)?),
        _ => None,
    };
    let stop_price = match req.get("stop_price") {
        Some(v) if !v.is_null() => Some(check_price("stop_price", v)?),
        _ => None,
    };
    let (tp, sl) = match class {
        "simple" | "" => (None, None),
        "bracket" | "oto" => {
            if !matches!(tif, "day" | "gtc") {
                return Err(invalid("time_in_force must be day or gtc for advanced orders"));
            }
            let tp = match req.pointer("/take_profit/limit_price") {
                Some(v) => Some(check_price("limit_price", v)?),
                None => None,
            };
            let sl = match req.pointer("/stop_loss/stop_price") {
                Some(v) => Some(check_price("stop_price", v)?),
                None => None,
            };
            if class == "bracket" && (tp.is_none() || sl.is_none()) {
                return Err(invalid(
                    "bracket orders require take_profit.limit_price and stop_loss.stop_price",
                ));
            }
            if class == "oto" && tp.is_none() && sl.is_none() {
                return Err(invalid("oto orders require take_profit or stop_loss"));
            }
            if let (Some(tp), Some(sl)) = (tp, sl) {
                let ordered = if side == "buy" { tp > sl } else { tp < sl };
                if !ordered {
                    return Err(alpaca_error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        42210000,
                        "take_profit.limit_price must be on the profit side of stop_loss.stop_price",
                    ));
                }
            }
            (tp, sl)
        }
        other => return Err(invalid(&format!("unsupported order_class {other}"))),
    };
    let mut st = lock(shared);
    let coid = match req.get("client_order_id").and_then(Value::as_str) {
        Some(c) if c.chars().count() > 48 => {
            return Err(invalid("client_order_id must be no more than 48 characters"))
        }
        Some(c) if !c.is_empty() => c.to_string(),
        _ => st.new_id(),
    };
    if st.find(&coid).is_some() {
        return Err(alpaca_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            40010001,
            "client_order_id must be unique",
        ));
    }
    if st.account_blocked || st.trading_blocked {
        return Err(alpaca_error(StatusCode::FORBIDDEN, 40310000, "account is not authorized to trade"));
    }
    let now = Utc::now();
    let parent = st.orders.len();
    let base = Order {
        id: st.new_id(),
        client_order_id: coid.clone(),
        symbol: symbol.to_string(),
        asset_id: asset_id(symbol),
        side: side.to_string(),
        qty,
        filled_qty: Decimal::ZERO,
        filled_avg_price: None,
        order_class: if class.is_empty() { "simple".into() } else { class.to_string() },
        kind: kind.to_string(),
        time_in_force: tif.to_string(),
        limit_price,
        stop_price,
        status: "accepted".into(),
        created_at: now,
        updated_at: now,
        filled_at: None,
        canceled_at: None,
        parent: None,
        legs: Vec::new(),
    };
    st.orders.push(base.clone());
    let exit_side = if side == "buy" { "sell" } else { "buy" };
    for (kind, price) in [("limit", tp), ("stop", sl)] {
        let Some(price) = price else { continue };
        let leg = Order {
            id: st.new_id(),
            // Alpaca gives legs client order ids of its own.
            client_order_id: st.new_id(),
            side: exit_side.to_string(),
            kind: kind.to_string(),
            limit_price: (kind == "limit").then_some(price),
            stop_price: (kind == "stop").then_some(price),
            status: "held".into(),
            parent: Some(parent),
            ..base.clone()
        };
        let l = st.orders.len();
        st.orders.push(leg);
        st.orders[parent].legs.push(l);
    }
    st.accepted_at.entry(coid.clone()).or_insert_with(Instant::now);
    *st.accepted.entry(coid).or_insert(0) += 1;
    shared.accepted_notify.notify_waiters();
    let answer = st.order_json(parent, true);
    st.orders[parent].status = "new".into();
    let id = st.orders[parent].id.clone();
    let msg = st.update_json(parent, "new", None);
    st.emit(&shared.push, &id, msg);
    Ok(answer)
}

// --- stream ----------------------------------------------------------------------------------

async fn stream(State(shared): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| socket_task(socket, shared))
}

fn frame(shared: &Shared, v: &Value) -> Message {
    if shared.binary.load(Ordering::SeqCst) {
        Message::Binary(v.to_string().into_bytes())
    } else {
        Message::Text(v.to_string())
    }
}

struct ListeningGuard(Arc<Shared>);

impl Drop for ListeningGuard {
    fn drop(&mut self) {
        self.0.listening.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn socket_task(mut ws: WebSocket, shared: Arc<Shared>) {
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let mut authorized = false;
    // Handshake: authenticate, then listen (alpaca-docs streaming.md).
    let (mut rx, _guard) = loop {
        let payload = match ws.recv().await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
            Some(Ok(Message::Text(t))) => t.into_bytes(),
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(_)) => continue,
        };
        let Ok(msg) = serde_json::from_slice::<Value>(&payload) else { continue };
        match msg.get("action").and_then(Value::as_str) {
            Some("authenticate") => {
                let key = msg.pointer("/data/key_id").and_then(Value::as_str);
                let secret = msg.pointer("/data/secret_key").and_then(Value::as_str);
                authorized =
                    key == Some(shared.key_id.as_str()) && secret == Some(shared.secret_key.as_str());
                let status = if authorized { "authorized" } else { "unauthorized" };
                let answer =
                    json!({"stream": "authorization", "data": {"status": status, "action": "authenticate"}});
                if ws.send(frame(&shared, &answer)).await.is_err() || !authorized {
                    let _ = ws.close().await;
                    return;
                }
            }
            Some("listen") if !authorized => {
                let answer = json!({"stream": "authorization", "data": {"status": "unauthorized", "action": "listen"}});
                if ws.send(frame(&shared, &answer)).await.is_err() {
                    return;
                }
            }
            Some("listen") => {
                let streams: Vec<Value> = msg
                    .pointer("/data/streams")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter(|s| s.as_str() == Some("trade_updates")).cloned().collect())
                    .unwrap_or_default();
                // Subscribe before confirming, so that nothing sent after the confirmation is missed.
                let rx = shared.push.subscribe();
                shared.listening.fetch_add(1, Ordering::SeqCst);
                let guard = ListeningGuard(shared.clone());
                let answer = json!({"stream": "listening", "data": {"streams": streams}});
                if ws.send(frame(&shared, &answer)).await.is_err() {
                    return;
                }
                break (rx, guard);
            }
            _ => {}
        }
    };
    loop {
        tokio::select! {
            push = rx.recv() => {
                let msg = match push {
                    Ok(Push::Event(v)) => frame(&shared, &v),
                    Ok(Push::Raw { bytes, binary: true }) => Message::Binary(bytes),
                    Ok(Push::Raw { bytes, binary: false }) => Message::Text(String::from_utf8_lossy(&bytes).into_owned()),
                    Ok(Push::Drop) | Err(broadcast::error::RecvError::Closed) => return,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                };
                if ws.send(msg).await.is_err() {
                    return;
                }
            }
            incoming = ws.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                _ => {}
            }
        }
    }
}
