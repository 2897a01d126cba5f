//! Alpaca (paper or live) over the Trading API v2 and its `trade_updates` WebSocket stream.
//!
//! REST: `https://paper-api.alpaca.markets` (paper, the default) or `https://api.alpaca.markets`
//! (live, only with `TAPEFLOW_ALPACA_LIVE=true`); every request carries the
//! `APCA-API-KEY-ID` / `APCA-API-SECRET-KEY` headers and a timeout. Entries are bracket
//! orders (market entry, take-profit limit leg, stop-loss stop leg); exits are plain market
//! orders. The client order id is the idempotency key: a duplicate is refused by the venue and
//! reported as [`BrokerError::Duplicate`].
//!
//! Stream: `wss://…/stream`, `authenticate` then `listen` to `trade_updates`; the paper stream
//! sends binary frames holding JSON, so both binary and text frames are read. The stream
//! reconnects on its own with exponential backoff and jitter; each time it is listening again
//! it announces [`BrokerEvent::Connected`] (updates sent while it was down are lost: the
//! executor reconciles over REST). A frame that cannot be understood is logged and skipped.
//!
//! Parsing is done by the small pure functions at the bottom ([`parse_order`],
//! [`parse_frame`], [`parse_account`], [`parse_position`]); numbers are accepted both as the
//! strings Alpaca sends and as JSON numbers.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use super::{
    Account, Broker, BrokerError, BrokerEvent, BrokerOrder, BrokerPosition, Fill, Leg, OrderRequest,
    OrderSide, OrderUpdate, Purpose,
};

/// The paper trading endpoint (the default).
pub const PAPER_TRADING_URL: &str = "https://paper-api.alpaca.markets";
/// The live trading endpoint: used only when live trading is asked for explicitly.
pub const LIVE_TRADING_URL: &str = "https://api.alpaca.markets";

/// How to reach Alpaca. Build it with [`AlpacaConfig::from_env`] or [`AlpacaConfig::new`];
/// the secrets never appear in `Debug` output.
#[derive(Clone)]
pub struct AlpacaConfig {
    pub key_id: String,
    pub secret_key: String,
    /// REST base, e.g. `https://paper-api.alpaca.markets` (no `/v2`).
    pub trading_base_url: String,
    /// The `trade_updates` WebSocket, e.g. `wss://paper-api.alpaca.markets/stream`.
    pub stream_url: String,
    /// Whether this is real money (true only when asked for explicitly).
    pub live: bool,
    /// Timeout of every REST request, and of each step of the stream handshake.
    pub request_timeout: Duration,
    /// First reconnect delay of the stream; doubles on each failed attempt.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Delay before trying again after the stream refused the keys.
    pub unauthorized_backoff: Duration,
    /// The stream is pinged this often; a connection silent for three intervals is dropped.
    pub ping_interval: Duration,
}

impl std::fmt::Debug for AlpacaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlpacaConfig")
            .field("key_id", &redact(&self.key_id))
            .field("secret_key", &"<redacted>")
            .field("trading_base_url", &self.trading_base_url)
            .field("stream_url", &self.stream_url)
            .field("live", &self.live)
            .field("request_timeout", &self.request_timeout)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("unauthorized_backoff", &self.unauthorized_backoff)
            .field("ping_interval", &self.ping_interval)
            .finish()
    }
}

/// A key id shown as its first four characters only.
fn redact(key: &str) -> String {
    let head: String = key.chars().take(4).collect();
    if key.chars().count() > 4 {
        format!("{head}…")
    } else {
        "<redacted>".into()
    }
}

/// A configuration error, naming the variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set (required by the alpaca broker)")]
    Missing(&'static str),
    #[error("{var}: {message}")]
    Invalid { var: &'static str, message: String },
}

impl AlpacaConfig {
    /// A paper configuration for `trading_base_url` with the stream URL derived from it and
    /// default timeouts.
    pub fn new(key_id: impl Into<String>, secret_key: impl Into<String>, trading_base_url: &str) -> Self {
        let trading_base_url = trading_base_url.trim_end_matches('/').to_string();
        AlpacaConfig {
            key_id: key_id.into(),
            secret_key: secret_key.into(),
            stream_url: derive_stream_url(&trading_base_url),
            trading_base_url,
            live: false,
            request_timeout: Duration::from_secs(10),
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            unauthorized_backoff: Duration::from_secs(300),
            ping_interval: Duration::from_secs(20),
        }
    }

    /// From the environment:
    ///
    /// | variable | default |
    /// |---|---|
    /// | `APCA_API_KEY_ID`, `APCA_API_SECRET_KEY` | required |
    /// | `TAPEFLOW_ALPACA_LIVE` | `false`; `true` trades real money |
    /// | `TAPEFLOW_ALPACA_TRADING_URL` | paper `https://paper-api.alpaca.markets`, live `https://api.alpaca.markets` |
    /// | `TAPEFLOW_ALPACA_STREAM_URL` | the trading URL with `wss://` and `/stream` |
    /// | `TAPEFLOW_ALPACA_TIMEOUT_MS` | `10000` |
    ///
    /// Pointing the trading URL at the live endpoint without `TAPEFLOW_ALPACA_LIVE=true` is
    /// an error: paper unless live is asked for explicitly.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`AlpacaConfig::from_env`] reading variables through `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let key_id = get("APCA_API_KEY_ID").ok_or(ConfigError::Missing("APCA_API_KEY_ID"))?;
        let secret_key = get("APCA_API_SECRET_KEY").ok_or(ConfigError::Missing("APCA_API_SECRET_KEY"))?;
        let live = match get("TAPEFLOW_ALPACA_LIVE").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("false") | Some("0") | Some("no") | Some("off") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "TAPEFLOW_ALPACA_LIVE",
                    message: format!("expected true or false, got {other:?}"),
                })
            }
        };
        let trading = get("TAPEFLOW_ALPACA_TRADING_URL")
            .unwrap_or_else(|| if live { LIVE_TRADING_URL } else { PAPER_TRADING_URL }.to_string());
        let parsed = Url::parse(&trading).map_err(|e| ConfigError::Invalid {
            var: "TAPEFLOW_ALPACA_TRADING_URL",
            message: format!("{trading:?} is not a URL: {e}"),
        })?;
        if !live && parsed.host_str() == Some("api.alpaca.markets") {
            return Err(ConfigError::Invalid {
                var: "TAPEFLOW_ALPACA_TRADING_URL",
                message: "points at the live endpoint; set TAPEFLOW_ALPACA_LIVE=true to trade real money"
                    .into(),
            });
        }
        let mut cfg = AlpacaConfig::new(key_id, secret_key, &trading);
        cfg.live = live;
        if let Some(stream) = get("TAPEFLOW_ALPACA_STREAM_URL") {
            Url::parse(&stream).map_err(|e| ConfigError::Invalid {
                var: "TAPEFLOW_ALPACA_STREAM_URL",
                message: format!("{stream:?} is not a URL: {e}"),
            })?;
            cfg.stream_url = stream;
        }
        if let Some(ms) = get("TAPEFLOW_ALPACA_TIMEOUT_MS") {
            let ms: u64 = ms.parse().ok().filter(|&ms| ms > 0).ok_or_else(|| ConfigError::Invalid {
                var: "TAPEFLOW_ALPACA_TIMEOUT_MS",
                message: format!("expected a positive number of milliseconds, got {ms:?}"),
            })?;
            cfg.request_timeout = Duration::from_millis(ms);
        }
        Ok(cfg)
    }
}

/// `https://host[/path]` → `wss://host[/path]/stream` (`http` → `ws`).
pub fn derive_stream_url(trading_base_url: &str) -> String {
    let base = trading_base_url.trim_end_matches('/');
    let rest = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    };
    format!("{rest}/stream")
}

/// The Alpaca venue. Cheap to clone internally (`Arc`); safe to call concurrently.
pub struct AlpacaBroker {
    cfg: Arc<AlpacaConfig>,
    base: Url,
    http: reqwest::Client,
}

impl std::fmt::Debug for AlpacaBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlpacaBroker").field("cfg", &self.cfg).finish()
    }
}

impl AlpacaBroker {
    /// Checks the URLs and builds the HTTP client (keys as default headers, marked sensitive).
    pub fn new(cfg: AlpacaConfig) -> Result<Self, ConfigError> {
        let base = Url::parse(&cfg.trading_base_url).map_err(|e| ConfigError::Invalid {
            var: "TAPEFLOW_ALPACA_TRADING_URL",
            message: format!("{:?} is not a URL: {e}", cfg.trading_base_url),
        })?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(ConfigError::Invalid {
                var: "TAPEFLOW_ALPACA_TRADING_URL",
                message: format!("{:?} is not an http(s) base URL", cfg.trading_base_url),
            });
        }
        let stream = Url::parse(&cfg.stream_url).map_err(|e| ConfigError::Invalid {
            var: "TAPEFLOW_ALPACA_STREAM_URL",
            message: format!("{:?} is not a URL: {e}", cfg.stream_url),
        })?;
        if !matches!(stream.scheme(), "ws" | "wss") {
            return Err(ConfigError::Invalid {
                var: "TAPEFLOW_ALPACA_STREAM_URL",
                message: format!("{:?} is not a ws(s) URL", cfg.stream_url),
            });
        }
        let header = |var: &'static str, v: &str| {
            let mut h = HeaderValue::from_str(v)
                .map_err(|_| ConfigError::Invalid { var, message: "not a valid header value".into() })?;
            h.set_sensitive(true);
            Ok::<_, ConfigError>(h)
        };
        let mut headers = HeaderMap::new();
        headers.insert("APCA-API-KEY-ID", header("APCA_API_KEY_ID", &cfg.key_id)?);
        headers.insert("APCA-API-SECRET-KEY", header("APCA_API_SECRET_KEY", &cfg.secret_key)?);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("tapeflow-exec/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Invalid {
                var: "TAPEFLOW_ALPACA_TRADING_URL",
                message: e.to_string(),
            })?;
        if cfg.live {
            tracing::warn!(url = %cfg.trading_base_url, "alpaca broker: LIVE trading, real money");
        } else {
            tracing::info!(url = %cfg.trading_base_url, "alpaca broker: paper trading");
        }
        Ok(AlpacaBroker { cfg: Arc::new(cfg), base, http })
    }

    /// [`AlpacaConfig::from_env`] then [`AlpacaBroker::new`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::new(AlpacaConfig::from_env()?)
    }

    pub fn config(&self) -> &AlpacaConfig {
        &self.cfg
    }

    /// `base/v2/<segments…>` (segments are percent-encoded as path segments).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("checked in new").pop_if_empty().push("v2").extend(segments);
        url
    }

    /// Sends a request; returns the status and body, or a transient error when no answer came.
    async fn call(
        &self,
        method: Method,
        url: Url,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(StatusCode, Vec<u8>), BrokerError> {
        let what = format!("{method} {}", url.path());
        let mut req = self.http.request(method, url).timeout(self.cfg.request_timeout);
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp =
            req.send().await.map_err(|e| BrokerError::Transient(format!("{what}: {}", describe(&e))))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| BrokerError::Transient(format!("{what}: reading the answer: {}", describe(&e))))?;
        Ok((status, bytes.to_vec()))
    }

    /// A 2xx body as JSON, or the error its status means.
    async fn call_json(
        &self,
        method: Method,
        url: Url,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, BrokerError> {
        let what = format!("{method} {}", url.path());
        let (status, bytes) = self.call(method, url, query, body).await?;
        if !status.is_success() {
            return Err(status_error(status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| BrokerError::Transient(format!("{what}: answer is not JSON: {e}")))
    }
}

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // The URL in reqwest's message holds no secret (keys travel in headers).
    format!("{kind}: {e}")
}

/// The error an HTTP status means (for a non-2xx answer with `body`).
///
/// 422 whose message is about `client_order_id` being unique (Alpaca's code 40010001) is a
/// duplicate; 429, 408 and 5xx may succeed later; every other 4xx is a refusal for good.
pub fn status_error(status: u16, body: &[u8]) -> BrokerError {
    let (code, message) = error_body(body);
    let message = if message.is_empty() { format!("HTTP {status}") } else { message };
    match status {
        408 | 429 | 500..=599 => BrokerError::Transient(match code {
            Some(code) => format!("HTTP {status} (code {code}): {message}"),
            None => format!("HTTP {status}: {message}"),
        }),
        422 if is_duplicate_message(&message) => BrokerError::Duplicate(message),
        400..=499 => BrokerError::Rejected { status, message },
        // 1xx/3xx: nothing usable came back; the request may have been applied.
        _ => BrokerError::Transient(format!("unexpected HTTP {status}: {message}")),
    }
}

/// `{"code": 40010001, "message": "…"}` → its parts; any other body → its text.
fn error_body(body: &[u8]) -> (Option<i64>, String) {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => (
            v.get("code").and_then(Value::as_i64),
            v.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| {
                if v.is_object() {
                    v.to_string()
                } else {
                    String::new()
                }
            }),
        ),
        Err(_) => (None, String::from_utf8_lossy(body).chars().take(300).collect()),
    }
}

/// Alpaca words a duplicate as "client_order_id must be unique" (code 40010001, which it also
/// uses for other invalid requests: the message decides).
fn is_duplicate_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("client_order_id")
        && (m.contains("unique") || m.contains("duplicate") || m.contains("already"))
}

/// A price as Alpaca accepts it: 2 decimals at 1 and above, 4 below (sub-penny increments are
/// refused with 42210000), rounded half away from zero, trailing zeros dropped.
pub fn format_price(price: Decimal) -> String {
    let dp = if price.abs() >= Decimal::ONE { 2 } else { 4 };
    price.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero).normalize().to_string()
}

/// The JSON body of `POST /v2/orders` for a request: a bracket for an entry with both exits,
/// a one-triggers-other for an entry with one, a plain market order otherwise (exits).
pub fn order_body(req: &OrderRequest) -> Value {
    let mut body = json!({
        "symbol": req.symbol,
        "qty": req.qty.normalize().to_string(),
        "side": req.side.as_str(),
        "type": "market",
        "time_in_force": "day",
        "client_order_id": req.client_order_id,
    });
    if req.purpose == Purpose::Entry {
        let obj = body.as_object_mut().expect("object");
        match (req.take_profit, req.stop_loss) {
            (None, None) => {}
            (tp, sl) => {
                let class = if tp.is_some() && sl.is_some() { "bracket" } else { "oto" };
                obj.insert("order_class".into(), json!(class));
                if let Some(tp) = tp {
                    obj.insert("take_profit".into(), json!({ "limit_price": format_price(tp) }));
                }
                if let Some(sl) = sl {
                    obj.insert("stop_loss".into(), json!({ "stop_price": format_price(sl) }));
                }
            }
        }
    }
    body
}

#[async_trait]
impl Broker for AlpacaBroker {
    fn name(&self) -> &'static str {
        "alpaca"
    }

    async fn account(&self) -> Result<Account, BrokerError> {
        let v = self.call_json(Method::GET, self.url(&["account"]), &[], None).await?;
        parse_account(&v).map_err(|e| BrokerError::Transient(format!("GET /v2/account: {e}")))
    }

    async fn submit(&self, req: &OrderRequest) -> Result<BrokerOrder, BrokerError> {
        let body = order_body(req);
        let url = self.url(&["orders"]);
        let (status, bytes) = self.call(Method::POST, url, &[], Some(&body)).await?;
        if !status.is_success() {
            let err = status_error(status.as_u16(), &bytes);
            return Err(match err {
                BrokerError::Duplicate(_) => BrokerError::Duplicate(req.client_order_id.clone()),
                other => other,
            });
        }
        // Accepted: an answer we cannot read is transient, so that the caller looks the order
        // up by its client order id instead of sending it again.
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            BrokerError::Transient(format!("POST /v2/orders: accepted, answer not JSON: {e}"))
        })?;
        parse_order(&v).map_err(|e| BrokerError::Transient(format!("POST /v2/orders: accepted, answer: {e}")))
    }

    async fn order_by_client_id(&self, client_order_id: &str) -> Result<Option<BrokerOrder>, BrokerError> {
        let url = self.url(&["orders:by_client_order_id"]);
        let query = [("client_order_id", client_order_id), ("nested", "true")];
        let (status, bytes) = self.call(Method::GET, url, &query, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(status_error(status.as_u16(), &bytes));
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            BrokerError::Transient(format!("GET /v2/orders:by_client_order_id: not JSON: {e}"))
        })?;
        parse_order(&v)
            .map(Some)
            .map_err(|e| BrokerError::Transient(format!("GET /v2/orders:by_client_order_id: {e}")))
    }

    async fn open_orders(&self) -> Result<Vec<BrokerOrder>, BrokerError> {
        let query = [("status", "open"), ("nested", "true"), ("limit", "500")];
        let v = self.call_json(Method::GET, self.url(&["orders"]), &query, None).await?;
        let list = v.as_array().ok_or_else(|| BrokerError::Transient("GET /v2/orders: not a list".into()))?;
        // One order we cannot read fails the whole call: silently leaving out an open order
        // would mislead reconciliation.
        list.iter()
            .map(|o| parse_order(o).map_err(|e| BrokerError::Transient(format!("GET /v2/orders: {e}"))))
            .collect()
    }

    async fn positions(&self) -> Result<Vec<BrokerPosition>, BrokerError> {
        let v = self.call_json(Method::GET, self.url(&["positions"]), &[], None).await?;
        let list =
            v.as_array().ok_or_else(|| BrokerError::Transient("GET /v2/positions: not a list".into()))?;
        list.iter()
            .map(|p| parse_position(p).map_err(|e| BrokerError::Transient(format!("GET /v2/positions: {e}"))))
            .collect()
    }

    /// 200/204: requested. 422 (the order is already filled, canceled or otherwise not
    /// cancelable): Ok, its final state reaches the caller as an update or on reconcile.
    /// 404: the venue does not know the id, `Rejected`.
    async fn cancel(&self, broker_id: &str) -> Result<(), BrokerError> {
        let (status, bytes) = self.call(Method::DELETE, self.url(&["orders", broker_id]), &[], None).await?;
        match status.as_u16() {
            200..=299 => Ok(()),
            422 => {
                let (_, message) = error_body(&bytes);
                tracing::info!(broker_id, %message, "alpaca: order not cancelable (already final)");
                Ok(())
            }
            s => Err(status_error(s, &bytes)),
        }
    }

    /// Spawns the stream task on the current tokio runtime (call it inside one); the task
    /// ends when the receiver is dropped.
    fn events(&self) -> mpsc::Receiver<BrokerEvent> {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run_stream(self.cfg.clone(), tx));
        rx
    }
}

// ---------------------------------------------------------------------------------------------
// The trade_updates stream

enum SessionEnd {
    /// The connection ended; `listened` says whether it got as far as listening.
    Closed { listened: bool, reason: String },
    /// The keys were refused.
    Unauthorized(String),
    /// Nobody reads the events any more.
    ReceiverGone,
}

/// Connects, listens and forwards until the receiver is dropped; reconnects with exponential
/// backoff and jitter.
async fn run_stream(cfg: Arc<AlpacaConfig>, tx: mpsc::Sender<BrokerEvent>) {
    let mut backoff = tapeflow_db::backoff::Backoff::new(cfg.reconnect_min, cfg.reconnect_max);
    loop {
        let wait = match stream_session(&cfg, &tx).await {
            SessionEnd::ReceiverGone => return,
            SessionEnd::Unauthorized(detail) => {
                tracing::error!(
                    url = %cfg.stream_url,
                    %detail,
                    retry_in = ?cfg.unauthorized_backoff,
                    "alpaca trade_updates: the keys were refused (check APCA_API_KEY_ID / \
                     APCA_API_SECRET_KEY and paper vs live)"
                );
                cfg.unauthorized_backoff
            }
            SessionEnd::Closed { listened, reason } => {
                if listened {
                    backoff.reset();
                }
                let wait = backoff.next_delay();
                tracing::warn!(url = %cfg.stream_url, %reason, retry_in = ?wait, "alpaca trade_updates: disconnected");
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = tx.closed() => return,
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The JSON of a text or binary frame; None for control frames.
fn frame_payload(msg: &Message) -> Option<&[u8]> {
    match msg {
        Message::Text(t) => Some(t.as_bytes()),
        Message::Binary(b) => Some(b),
        _ => None,
    }
}

/// A frame shortened for a log line.
fn preview(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    if bytes.len() > 300 {
        format!("{s}… ({} bytes)", bytes.len())
    } else {
        s
    }
}

/// Waits for the next data frame within `timeout`, skipping control frames.
async fn next_data(ws: &mut Ws, timeout: Duration) -> Result<Vec<u8>, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Err(format!("no answer within {timeout:?}")),
            Ok(None) => return Err("closed by the server".into()),
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(Some(Ok(Message::Close(frame)))) => return Err(format!("closed by the server: {frame:?}")),
            Ok(Some(Ok(msg))) => {
                if let Some(p) = frame_payload(&msg) {
                    return Ok(p.to_vec());
                }
            }
        }
    }
}

async fn stream_session(cfg: &AlpacaConfig, tx: &mpsc::Sender<BrokerEvent>) -> SessionEnd {
    let closed = |reason: String| SessionEnd::Closed { listened: false, reason };
    let connect = tokio_tungstenite::connect_async(cfg.stream_url.as_str());
    let mut ws = match tokio::time::timeout(cfg.request_timeout, connect).await {
        Err(_) => return closed(format!("connect: no answer within {:?}", cfg.request_timeout)),
        Ok(Err(e)) => return closed(format!("connect: {e}")),
        Ok(Ok((ws, _))) => ws,
    };

    // authenticate
    let auth =
        json!({"action": "authenticate", "data": {"key_id": cfg.key_id, "secret_key": cfg.secret_key}});
    if let Err(e) = ws.send(Message::text(auth.to_string())).await {
        return closed(format!("sending authenticate: {e}"));
    }
    loop {
        let frame = match next_data(&mut ws, cfg.request_timeout).await {
            Ok(f) => f,
            Err(e) => return closed(format!("waiting for authorization: {e}")),
        };
        match parse_frame(&frame) {
            Ok(StreamMessage::Authorization { authorized: true, .. }) => break,
            Ok(StreamMessage::Authorization { authorized: false, .. }) => {
                let _ = ws.close(None).await;
                return SessionEnd::Unauthorized(preview(&frame));
            }
            Ok(other) => tracing::debug!(?other, "alpaca trade_updates: ignored before authorization"),
            Err(e) => {
                tracing::warn!(error = %e, frame = %preview(&frame), "alpaca trade_updates: skipping malformed frame")
            }
        }
    }

    // listen
    let listen = json!({"action": "listen", "data": {"streams": ["trade_updates"]}});
    if let Err(e) = ws.send(Message::text(listen.to_string())).await {
        return closed(format!("sending listen: {e}"));
    }
    let mut early = Vec::new();
    loop {
        let frame = match next_data(&mut ws, cfg.request_timeout).await {
            Ok(f) => f,
            Err(e) => return closed(format!("waiting for listening: {e}")),
        };
        match parse_frame(&frame) {
            Ok(StreamMessage::Listening { streams }) if streams.iter().any(|s| s == "trade_updates") => break,
            Ok(StreamMessage::Listening { streams }) => {
                return closed(format!("listening to {streams:?}, not trade_updates"));
            }
            Ok(StreamMessage::Authorization { authorized: false, .. }) => {
                let _ = ws.close(None).await;
                return SessionEnd::Unauthorized(preview(&frame));
            }
            // An update before the confirmation means we are listening.
            Ok(StreamMessage::TradeUpdate(u)) => {
                early.push(u);
                break;
            }
            Ok(other) => tracing::debug!(?other, "alpaca trade_updates: ignored before listening"),
            Err(e) => {
                tracing::warn!(error = %e, frame = %preview(&frame), "alpaca trade_updates: skipping malformed frame")
            }
        }
    }
    tracing::info!(url = %cfg.stream_url, "alpaca trade_updates: listening");
    if tx.send(BrokerEvent::Connected).await.is_err() {
        return SessionEnd::ReceiverGone;
    }
    for u in early {
        if tx.send(BrokerEvent::Update(u)).await.is_err() {
            return SessionEnd::ReceiverGone;
        }
    }

    let end = |reason: String| SessionEnd::Closed { listened: true, reason };
    let mut ping = tokio::time::interval(cfg.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await; // the first tick is immediate
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            msg = ws.next() => {
                let msg = match msg {
                    None => return end("closed by the server".into()),
                    Some(Err(e)) => return end(e.to_string()),
                    Some(Ok(m)) => m,
                };
                last_heard = Instant::now();
                if let Message::Close(frame) = &msg {
                    return end(format!("closed by the server: {frame:?}"));
                }
                // Pings are answered by tungstenite itself.
                let Some(payload) = frame_payload(&msg) else { continue };
                match parse_frame(payload) {
                    Ok(StreamMessage::TradeUpdate(u)) => {
                        if tx.send(BrokerEvent::Update(u)).await.is_err() {
                            return SessionEnd::ReceiverGone;
                        }
                    }
                    Ok(StreamMessage::Authorization { authorized: false, .. }) => {
                        let _ = ws.close(None).await;
                        return SessionEnd::Unauthorized(preview(payload));
                    }
                    Ok(other) => tracing::debug!(?other, "alpaca trade_updates: ignored"),
                    Err(e) => tracing::warn!(
                        error = %e,
                        frame = %preview(payload),
                        "alpaca trade_updates: skipping malformed frame"
                    ),
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > cfg.ping_interval * 3 {
                    return end(format!("silent for {:?}", last_heard.elapsed()));
                }
                if let Err(e) = ws.send(Message::Ping(Default::default())).await {
                    return end(format!("ping: {e}"));
                }
            }
            _ = tx.closed() => {
                let _ = ws.close(None).await;
                return SessionEnd::ReceiverGone;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing (pure)

/// Why a message could not be understood.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn field_err(name: &str, v: &Value) -> ParseError {
    let got = v.get(name).map(|g| g.to_string()).unwrap_or_else(|| "nothing".into());
    let got: String = got.chars().take(80).collect();
    ParseError(format!("field `{name}`: missing or invalid (got {got})"))
}

/// A decimal from a JSON string (`"103.5"`, also `"1e-3"`) or number.
pub fn decimal(v: &Value) -> Option<Decimal> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    if s.is_empty() {
        return None;
    }
    Decimal::from_str(&s).or_else(|_| Decimal::from_scientific(&s)).ok()
}

fn req_str<'a>(v: &'a Value, name: &str) -> Result<&'a str, ParseError> {
    v.get(name).and_then(Value::as_str).ok_or_else(|| field_err(name, v))
}

fn opt_str<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

fn req_dec(v: &Value, name: &str) -> Result<Decimal, ParseError> {
    v.get(name).and_then(decimal).ok_or_else(|| field_err(name, v))
}

/// A decimal that may be absent or null; present but unreadable is an error.
fn opt_dec(v: &Value, name: &str) -> Result<Option<Decimal>, ParseError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(x) => decimal(x).map(Some).ok_or_else(|| field_err(name, v)),
    }
}

fn opt_time(v: &Value, name: &str) -> Option<DateTime<Utc>> {
    opt_str(v, name).and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

/// What part of a bracket an order is, from its class and type. Alpaca reports a bracket's
/// entry and legs all with `order_class: "bracket"`; the legs are `limit` (take-profit) and
/// `stop`/`stop_limit` (stop-loss), the entry is ours (`market`).
fn classify(v: &Value, has_legs: bool, is_leg: bool) -> Leg {
    let class = opt_str(v, "order_class").unwrap_or("");
    let kind = opt_str(v, "type").or_else(|| opt_str(v, "order_type")).unwrap_or("");
    let in_group = matches!(class, "bracket" | "oto" | "oco");
    match kind {
        "limit" if is_leg || (in_group && !has_legs) => Leg::TakeProfit,
        "stop" | "stop_limit" if is_leg || (in_group && !has_legs) => Leg::StopLoss,
        _ if is_leg => Leg::Market,
        _ if has_legs || in_group => Leg::Entry,
        _ => Leg::Market,
    }
}

/// An order object of the REST API or the stream (with its `legs` when nested).
pub fn parse_order(v: &Value) -> Result<BrokerOrder, ParseError> {
    parse_order_inner(v, None)
}

fn parse_order_inner(v: &Value, parent_coid: Option<&str>) -> Result<BrokerOrder, ParseError> {
    if !v.is_object() {
        return Err(ParseError(format!("an order must be an object, got {}", kind_of(v))));
    }
    let broker_id = req_str(v, "id")?.to_string();
    let symbol = req_str(v, "symbol")?.to_string();
    let side = OrderSide::parse(req_str(v, "side")?).ok_or_else(|| field_err("side", v))?;
    let status = req_str(v, "status")?.to_string();
    let qty = opt_dec(v, "qty")?.unwrap_or_default();
    let filled_qty = opt_dec(v, "filled_qty")?.unwrap_or_default();
    let filled_avg_price = opt_dec(v, "filled_avg_price")?;
    let limit_price = opt_dec(v, "limit_price")?;
    let stop_price = opt_dec(v, "stop_price")?;
    let legs_json = match v.get("legs") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => return Err(field_err("legs", v)),
    };
    let leg = classify(v, !legs_json.is_empty(), parent_coid.is_some());
    let client_order_id = match opt_str(v, "client_order_id").filter(|s| !s.is_empty()) {
        Some(c) => c.to_string(),
        None => match (parent_coid, leg) {
            (Some(p), Leg::TakeProfit) => format!("{p}-tp"),
            (Some(p), Leg::StopLoss) => format!("{p}-sl"),
            (Some(p), _) => format!("{p}-leg"),
            (None, _) => return Err(field_err("client_order_id", v)),
        },
    };
    let legs = legs_json
        .iter()
        .map(|l| parse_order_inner(l, Some(&client_order_id)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ParseError(format!("leg of {client_order_id}: {e}")))?;
    Ok(BrokerOrder {
        broker_id,
        client_order_id,
        symbol,
        side,
        leg,
        qty,
        filled_qty,
        filled_avg_price,
        limit_price,
        stop_price,
        status,
        legs,
        raw: v.clone(),
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// One message of the trade_updates stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamMessage {
    /// `{"stream":"authorization","data":{"status":"authorized"|"unauthorized","action":…}}`
    Authorization { authorized: bool, action: Option<String> },
    /// `{"stream":"listening","data":{"streams":[…]}}`
    Listening { streams: Vec<String> },
    /// `{"stream":"trade_updates","data":{"event":…,"order":{…},…}}`
    TradeUpdate(Box<OrderUpdate>),
    /// A stream this client does not use.
    Other { stream: String },
}

/// A text or binary frame's payload → a message.
pub fn parse_frame(bytes: &[u8]) -> Result<StreamMessage, ParseError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| ParseError(format!("not JSON: {e}")))?;
    parse_message(&v)
}

/// A decoded frame → a message.
pub fn parse_message(v: &Value) -> Result<StreamMessage, ParseError> {
    if !v.is_object() {
        return Err(ParseError(format!("a message must be an object, got {}", kind_of(v))));
    }
    let stream = req_str(v, "stream")?;
    let data = v.get("data").unwrap_or(&Value::Null);
    match stream {
        "authorization" => Ok(StreamMessage::Authorization {
            authorized: opt_str(data, "status") == Some("authorized"),
            action: opt_str(data, "action").map(str::to_string),
        }),
        "listening" => {
            let streams = data
                .get("streams")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            Ok(StreamMessage::Listening { streams })
        }
        "trade_updates" => parse_update(data, v).map(|u| StreamMessage::TradeUpdate(Box::new(u))),
        other => Ok(StreamMessage::Other { stream: other.to_string() }),
    }
}

/// The `data` of a trade_updates message; `raw` is the whole message.
pub fn parse_update(data: &Value, raw: &Value) -> Result<OrderUpdate, ParseError> {
    if !data.is_object() {
        return Err(ParseError(format!("trade update data must be an object, got {}", kind_of(data))));
    }
    let event = req_str(data, "event")?.to_string();
    let order_json = data.get("order").ok_or_else(|| field_err("order", data))?;
    let order = parse_order(order_json).map_err(|e| ParseError(format!("{event} update: order: {e}")))?;
    let time = opt_time(data, "timestamp")
        .or_else(|| opt_time(order_json, "updated_at"))
        .or_else(|| opt_time(order_json, "submitted_at"))
        .unwrap_or_else(Utc::now);
    let fill = if matches!(event.as_str(), "fill" | "partial_fill") {
        let qty = req_dec(data, "qty").map_err(|e| ParseError(format!("{event} update: {e}")))?;
        let price = req_dec(data, "price").map_err(|e| ParseError(format!("{event} update: {e}")))?;
        let fill_time = opt_time(data, "timestamp").unwrap_or(time);
        // Alpaca sends an execution id with every fill; should one be missing, a stable id
        // made of the order, the time and the size keeps a redelivered fill from counting twice.
        let execution_id = match opt_str(data, "execution_id").filter(|s| !s.is_empty()) {
            Some(id) => id.to_string(),
            None => format!("{}:{}:{}", order.broker_id, fill_time.to_rfc3339(), qty.normalize()),
        };
        Some(Fill { execution_id, qty, price, fee: Decimal::ZERO, time: fill_time })
    } else {
        None
    };
    Ok(OrderUpdate { event, order, fill, time, raw: raw.clone() })
}

/// `GET /v2/account`. Blocked when the account, its trading or the user suspended trading.
pub fn parse_account(v: &Value) -> Result<Account, ParseError> {
    let flag = |name: &str| v.get(name).and_then(Value::as_bool).unwrap_or(false);
    Ok(Account {
        equity: req_dec(v, "equity")?,
        cash: req_dec(v, "cash")?,
        buying_power: req_dec(v, "buying_power")?,
        last_equity: opt_dec(v, "last_equity")?,
        blocked: flag("account_blocked") || flag("trading_blocked") || flag("trade_suspended_by_user"),
    })
}

/// One element of `GET /v2/positions`; a `short` position has a negative quantity.
pub fn parse_position(v: &Value) -> Result<BrokerPosition, ParseError> {
    let qty = req_dec(v, "qty")?;
    let qty = if opt_str(v, "side") == Some("short") { -qty.abs() } else { qty };
    Ok(BrokerPosition {
        symbol: req_str(v, "symbol")?.to_string(),
        qty,
        avg_entry_price: req_dec(v, "avg_entry_price")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decimal literals without the macro crate.
    macro_rules! dec {
        ($s:literal) => {
            Decimal::from_str(stringify!($s)).unwrap()
        };
    }

    /// The fill example of alpaca-docs `content/api-references/trading-api/streaming.md`.
    const DOCS_FILL: &str = r#"{"stream":"trade_updates","data":{"event":"fill","execution_id":"2f63ea93-423d-4169-b3f6-3fdafc10c418","order":{"asset_class":"crypto","asset_id":"1cf35270-99ee-44e2-a77f-6fab902c7f80","cancel_requested_at":null,"canceled_at":null,"client_order_id":"4642fd68-d59a-47d7-a9ac-e22f536828d1","created_at":"2022-04-19T13:45:04.981350886-04:00","expired_at":null,"extended_hours":false,"failed_at":null,"filled_at":"2022-04-19T17:45:05.024916716Z","filled_avg_price":"105.8988475","filled_qty":"1790.86","hwm":null,"id":"a5be8f5e-fdfa-41f5-a644-7a74fe947a8f","legs":null,"limit_price":null,"notional":null,"order_class":"","order_type":"market","qty":"1790.86","replaced_at":null,"replaced_by":null,"replaces":null,"side":"sell","status":"filled","stop_price":null,"submitted_at":"2022-04-19T13:45:04.980944666-04:00","symbol":"SOLUSD","time_in_force":"gtc","trail_percent":null,"trail_price":null,"type":"market","updated_at":"2022-04-19T13:45:05.027690731-04:00"},"position_qty":"0","price":"105.8988475","qty":"1790.86","timestamp":"2022-04-19T17:45:05.024916716Z"}}"#;

    fn bracket_json() -> Value {
        json!({
            "id": "p-1", "client_order_id": "tf-7-entry", "symbol": "AAPL", "side": "buy",
            "qty": "10", "filled_qty": "0", "filled_avg_price": null, "order_class": "bracket",
            "type": "market", "order_type": "market", "status": "accepted", "limit_price": null,
            "stop_price": null,
            "legs": [
                {"id": "l-1", "client_order_id": "c1f0…", "symbol": "AAPL", "side": "sell", "qty": "10",
                 "filled_qty": "0", "order_class": "bracket", "type": "limit", "limit_price": "110.5",
                 "stop_price": null, "status": "held", "legs": null},
                {"id": "l-2", "client_order_id": "", "symbol": "AAPL", "side": "sell", "qty": "10",
                 "filled_qty": "0", "order_class": "bracket", "type": "stop", "limit_price": null,
                 "stop_price": "95", "status": "held", "legs": null}
            ]
        })
    }

    #[test]
    fn parses_the_docs_fill_event() {
        let m = parse_frame(DOCS_FILL.as_bytes()).unwrap();
        let StreamMessage::TradeUpdate(u) = m else { panic!("{m:?}") };
        assert_eq!(u.event, "fill");
        assert_eq!(u.order.broker_id, "a5be8f5e-fdfa-41f5-a644-7a74fe947a8f");
        assert_eq!(u.order.side, OrderSide::Sell);
        assert_eq!(u.order.leg, Leg::Market);
        assert_eq!(u.order.status, "filled");
        assert_eq!(u.order.filled_avg_price, Some(dec!(105.8988475)));
        let f = u.fill.unwrap();
        assert_eq!(f.execution_id, "2f63ea93-423d-4169-b3f6-3fdafc10c418");
        assert_eq!(f.qty, dec!(1790.86));
        assert_eq!(f.price, dec!(105.8988475));
        assert_eq!(f.fee, Decimal::ZERO);
        assert_eq!(f.time.to_rfc3339(), "2022-04-19T17:45:05.024916716+00:00");
        assert_eq!(u.raw["stream"], "trade_updates");
    }

    #[test]
    fn parses_the_handshake_messages() {
        let ok = br#"{"stream":"authorization","data":{"status":"authorized","action":"authenticate"}}"#;
        assert_eq!(
            parse_frame(ok).unwrap(),
            StreamMessage::Authorization { authorized: true, action: Some("authenticate".into()) }
        );
        let no = br#"{"stream":"authorization","data":{"status":"unauthorized","action":"listen"}}"#;
        assert_eq!(
            parse_frame(no).unwrap(),
            StreamMessage::Authorization { authorized: false, action: Some("listen".into()) }
        );
        let l = br#"{"stream":"listening","data":{"streams":["trade_updates"]}}"#;
        assert_eq!(
            parse_frame(l).unwrap(),
            StreamMessage::Listening { streams: vec!["trade_updates".into()] }
        );
        assert_eq!(
            parse_frame(br#"{"stream":"account_updates","data":{}}"#).unwrap(),
            StreamMessage::Other { stream: "account_updates".into() }
        );
    }

    #[test]
    fn malformed_frames_are_errors() {
        for bad in [
            &b""[..],
            b"not json",
            b"[]",
            b"{}",
            b"{\"stream\":3}",
            b"{\"stream\":\"trade_updates\"}",
            b"{\"stream\":\"trade_updates\",\"data\":{\"event\":\"fill\"}}",
            b"{\"stream\":\"trade_updates\",\"data\":{\"event\":\"new\",\"order\":{\"id\":\"x\"}}}",
            b"\xff\xfe",
        ] {
            assert!(parse_frame(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        // A fill without its price cannot be recorded.
        let mut v: Value = serde_json::from_str(DOCS_FILL).unwrap();
        v["data"].as_object_mut().unwrap().remove("price");
        assert!(parse_message(&v).is_err());
    }

    #[test]
    fn new_event_without_timestamp_takes_the_order_time() {
        let mut order = bracket_json();
        order["updated_at"] = json!("2024-01-02T15:00:00.5Z");
        let v = json!({"stream": "trade_updates", "data": {"event": "new", "order": order}});
        let StreamMessage::TradeUpdate(u) = parse_message(&v).unwrap() else { panic!() };
        assert_eq!(u.fill, None);
        assert_eq!(u.time.to_rfc3339(), "2024-01-02T15:00:00.500+00:00");
        assert_eq!(u.order.legs.len(), 2);
    }

    #[test]
    fn a_fill_without_execution_id_gets_a_stable_one() {
        let mut v: Value = serde_json::from_str(DOCS_FILL).unwrap();
        v["data"].as_object_mut().unwrap().remove("execution_id");
        let a = parse_message(&v).unwrap();
        let b = parse_message(&v).unwrap();
        let (StreamMessage::TradeUpdate(a), StreamMessage::TradeUpdate(b)) = (a, b) else { panic!() };
        assert_eq!(a.fill.as_ref().unwrap().execution_id, b.fill.as_ref().unwrap().execution_id);
        assert!(a.fill.unwrap().execution_id.starts_with("a5be8f5e-"));
    }

    #[test]
    fn parses_a_nested_bracket() {
        let o = parse_order(&bracket_json()).unwrap();
        assert_eq!(o.leg, Leg::Entry);
        assert_eq!(o.qty, dec!(10));
        assert_eq!(o.legs.len(), 2);
        assert_eq!(o.legs[0].leg, Leg::TakeProfit);
        assert_eq!(o.legs[0].client_order_id, "c1f0…");
        assert_eq!(o.legs[0].limit_price, Some(dec!(110.5)));
        assert_eq!(o.legs[1].leg, Leg::StopLoss);
        assert_eq!(o.legs[1].client_order_id, "tf-7-entry-sl", "a leg without its own id");
        assert_eq!(o.legs[1].stop_price, Some(dec!(95)));
        assert_eq!(o.legs[1].status, "held");
        // A leg alone (as the stream reports it) is still recognised.
        let leg = parse_order(&bracket_json()["legs"][0]).unwrap();
        assert_eq!(leg.leg, Leg::TakeProfit);
    }

    #[test]
    fn parses_the_alpaca_py_mock_shapes() {
        // test_order_routes.py test_market_order: qty as a JSON number.
        let v = json!({"id": "61e69015-8549-4bfd-b9c3-01e75843f47d",
            "client_order_id": "eb9e2aaa-f71a-4f51-b5b4-52a6c565dad4", "symbol": "AAPL", "qty": 1,
            "filled_qty": "0", "filled_avg_price": null, "order_class": "simple", "order_type": "market",
            "type": "market", "side": "buy", "status": "accepted", "legs": null, "commission": 1.25});
        let o = parse_order(&v).unwrap();
        assert_eq!((o.qty, o.leg, o.status.as_str()), (dec!(1), Leg::Market, "accepted"));
        // test_account_routes.py test_get_account.
        let a = parse_account(&json!({"account_blocked": false, "buying_power": "262113.632",
            "cash": "-23140.2", "equity": "103820.56", "last_equity": "103529.24",
            "trading_blocked": false, "trade_suspended_by_user": false}))
        .unwrap();
        assert_eq!(a.equity, dec!(103820.56));
        assert_eq!(a.cash, dec!(-23140.2));
        assert_eq!(a.buying_power, dec!(262113.632));
        assert_eq!(a.last_equity, Some(dec!(103529.24)));
        assert!(!a.blocked);
        let blocked =
            parse_account(&json!({"equity": 1, "cash": 1, "buying_power": 0, "trading_blocked": true}));
        assert!(blocked.unwrap().blocked);
        assert!(parse_account(&json!({"cash": "1"})).is_err());
        // test_position_routes.py test_get_all_positions, and a short.
        let p = parse_position(
            &json!({"symbol": "AAPL", "qty": "5", "side": "long", "avg_entry_price": "100.0"}),
        )
        .unwrap();
        assert_eq!((p.qty, p.avg_entry_price), (dec!(5), dec!(100.0)));
        let s =
            parse_position(&json!({"symbol": "AAPL", "qty": "5", "side": "short", "avg_entry_price": "1"}));
        assert_eq!(s.unwrap().qty, dec!(-5));
        let s =
            parse_position(&json!({"symbol": "AAPL", "qty": "-5", "side": "short", "avg_entry_price": "1"}));
        assert_eq!(s.unwrap().qty, dec!(-5));
    }

    #[test]
    fn decimals_from_strings_and_numbers() {
        assert_eq!(decimal(&json!("1.50")), Some(dec!(1.50)));
        assert_eq!(decimal(&json!(2)), Some(dec!(2)));
        assert_eq!(decimal(&json!(1.25)), Some(dec!(1.25)));
        assert_eq!(decimal(&json!("1e-3")), Some(dec!(0.001)));
        assert_eq!(decimal(&json!("")), None);
        assert_eq!(decimal(&json!("abc")), None);
        assert_eq!(decimal(&json!(null)), None);
    }

    #[test]
    fn prices_are_rounded_to_accepted_increments() {
        assert_eq!(format_price(dec!(290.123)), "290.12");
        assert_eq!(format_price(dec!(290.125)), "290.13");
        assert_eq!(format_price(dec!(301)), "301");
        assert_eq!(format_price(dec!(301.50)), "301.5");
        assert_eq!(format_price(dec!(1.00001)), "1");
        assert_eq!(format_price(dec!(0.123456)), "0.1235");
        assert_eq!(format_price(dec!(0.99999)), "1");
    }

    fn request(purpose: Purpose) -> OrderRequest {
        OrderRequest {
            client_order_id: super::super::client_order_id(42, purpose),
            symbol: "SPY".into(),
            side: OrderSide::Buy,
            qty: dec!(100),
            purpose,
            take_profit: Some(dec!(301.004)),
            stop_loss: Some(dec!(298.999)),
            signal_bar: Utc::now(),
        }
    }

    #[test]
    fn entry_bodies_are_brackets_and_exits_plain() {
        let b = order_body(&request(Purpose::Entry));
        assert_eq!(
            b,
            json!({"symbol": "SPY", "qty": "100", "side": "buy", "type": "market", "time_in_force": "day",
                   "order_class": "bracket", "client_order_id": "tf-42-entry",
                   "take_profit": {"limit_price": "301"}, "stop_loss": {"stop_price": "299"}})
        );
        let mut exit = request(Purpose::Exit);
        exit.side = OrderSide::Sell;
        let b = order_body(&exit);
        assert_eq!(
            b,
            json!({"symbol": "SPY", "qty": "100", "side": "sell", "type": "market", "time_in_force": "day",
                   "client_order_id": "tf-42-exit"})
        );
        let mut oto = request(Purpose::Entry);
        oto.take_profit = None;
        assert_eq!(order_body(&oto)["order_class"], "oto");
        assert!(order_body(&oto).get("take_profit").is_none());
    }

    #[test]
    fn statuses_map_to_errors() {
        let dup = br#"{"code":40010001,"message":"client_order_id must be unique"}"#;
        assert!(matches!(status_error(422, dup), BrokerError::Duplicate(_)));
        let invalid = br#"{"code":40010001,"message":"qty must be > 0"}"#;
        assert!(matches!(status_error(422, invalid), BrokerError::Rejected { status: 422, .. }));
        let bp = br#"{"code":40310000,"message":"insufficient buying power"}"#;
        match status_error(403, bp) {
            BrokerError::Rejected { status, message } => {
                assert_eq!(status, 403);
                assert_eq!(message, "insufficient buying power");
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            status_error(429, b"{\"message\":\"too many requests\"}"),
            BrokerError::Transient(_)
        ));
        assert!(matches!(status_error(500, b"oops"), BrokerError::Transient(_)));
        assert!(matches!(status_error(503, b""), BrokerError::Transient(_)));
        assert!(matches!(status_error(401, b""), BrokerError::Rejected { status: 401, .. }));
    }

    use tapeflow_db::config::lookup as vars;

    #[test]
    fn config_from_env() {
        let keys = [("APCA_API_KEY_ID", "PKTEST1234"), ("APCA_API_SECRET_KEY", "s3cr3t-value")];
        let c = AlpacaConfig::from_vars(vars(&keys)).unwrap();
        assert!(!c.live);
        assert_eq!(c.trading_base_url, PAPER_TRADING_URL);
        assert_eq!(c.stream_url, "wss://paper-api.alpaca.markets/stream");
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cr3t-value") && !debug.contains("PKTEST1234"), "{debug}");

        let e = AlpacaConfig::from_vars(vars(&keys[..1])).unwrap_err();
        assert!(e.to_string().contains("APCA_API_SECRET_KEY"), "{e}");
        let e = AlpacaConfig::from_vars(vars(&[])).unwrap_err();
        assert!(e.to_string().contains("APCA_API_KEY_ID"), "{e}");

        let mut live = keys.to_vec();
        live.push(("TAPEFLOW_ALPACA_LIVE", "true"));
        let c = AlpacaConfig::from_vars(vars(&live)).unwrap();
        assert!(c.live);
        assert_eq!(c.trading_base_url, LIVE_TRADING_URL);
        assert_eq!(c.stream_url, "wss://api.alpaca.markets/stream");

        let mut sneaky = keys.to_vec();
        sneaky.push(("TAPEFLOW_ALPACA_TRADING_URL", "https://api.alpaca.markets"));
        assert!(AlpacaConfig::from_vars(vars(&sneaky)).is_err(), "live URL without the live flag");

        let mut typo = keys.to_vec();
        typo.push(("TAPEFLOW_ALPACA_LIVE", "ture"));
        assert!(AlpacaConfig::from_vars(vars(&typo)).is_err());

        let mut local = keys.to_vec();
        local.push(("TAPEFLOW_ALPACA_TRADING_URL", "http://127.0.0.1:9000/"));
        local.push(("TAPEFLOW_ALPACA_TIMEOUT_MS", "250"));
        let c = AlpacaConfig::from_vars(vars(&local)).unwrap();
        assert_eq!(c.trading_base_url, "http://127.0.0.1:9000");
        assert_eq!(c.stream_url, "ws://127.0.0.1:9000/stream");
        assert_eq!(c.request_timeout, Duration::from_millis(250));
    }

    #[test]
    fn urls_keep_the_colon_segment() {
        let b = AlpacaBroker::new(AlpacaConfig::new("k", "s", "http://127.0.0.1:1")).unwrap();
        assert_eq!(
            b.url(&["orders:by_client_order_id"]).as_str(),
            "http://127.0.0.1:1/v2/orders:by_client_order_id"
        );
        assert_eq!(b.url(&["orders", "a/b"]).as_str(), "http://127.0.0.1:1/v2/orders/a%2Fb");
        assert!(AlpacaBroker::new(AlpacaConfig::new("k", "s", "not a url")).is_err());
    }

    /// The wss path builds its TLS configuration (a crypto provider must be available) and fails
    /// cleanly against a peer that does not speak TLS.
    #[tokio::test]
    async fn wss_connect_fails_cleanly() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                drop(s);
            }
        });
        let r = tokio_tungstenite::connect_async(format!("wss://127.0.0.1:{port}/stream")).await;
        assert!(r.is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_frame(&bytes);
        }

        #[test]
        fn arbitrary_json_never_panics(s in "\\{\"stream\":\"(trade_updates|authorization|listening)\",\"data\":\\{\"event\":\"(fill|new)\",\"qty\":\"[0-9.e-]{0,6}\",\"price\":[0-9]{0,4},\"order\":\\{\"id\":\"a\",\"symbol\":\"X\",\"side\":\"(buy|sell|x)\",\"status\":\"new\",\"client_order_id\":\"c\",\"qty\":\"[0-9.]{0,5}\",\"legs\":(null|\\[\\]|\\[\\{\\}\\]|3)\\}\\}\\}") {
            let _ = parse_frame(s.as_bytes());
        }

        #[test]
        fn mutated_docs_frames_never_panic(cut in 0usize..1500, byte in any::<u8>()) {
            let mut b = DOCS_FILL.as_bytes().to_vec();
            let i = cut.min(b.len() - 1);
            b[i] = byte;
            let _ = parse_frame(&b);
            let _ = parse_frame(&b[..i]);
        }
    }
}
