//! Fan-out of database notifications to browsers: one LISTEN connection feeds a broadcast
//! channel, each `/events` request subscribes to it as an SSE stream.

use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tapeflow_db::ListenEvent;
use tokio::sync::broadcast;

/// The channels the database announces on, with the SSE event name each is sent as.
pub const CHANNELS: [(&str, &str); 8] = [
    ("tapeflow_candles", "candle"),
    ("tapeflow_signals", "signal"),
    ("tapeflow_state", "state"),
    ("tapeflow_backtests", "backtest"),
    ("tapeflow_orders", "order"),
    ("tapeflow_risk", "risk"),
    ("tapeflow_arbitrage", "arbitrage"),
    // Books, arbitrage trades and settlements (sql/023): the arbitrage page re-reads on both.
    ("tapeflow_polymarket", "arbitrage"),
];

fn event_name(channel: &str) -> &str {
    CHANNELS.iter().find(|(c, _)| *c == channel).map(|(_, e)| *e).unwrap_or(channel)
}

#[derive(Debug, Clone)]
pub struct Message {
    pub event: String,
    pub data: String,
}

#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Message>,
    listening: Arc<AtomicBool>,
    shutdown: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Hub {
    pub fn start(url: String) -> Hub {
        let (tx, _) = broadcast::channel(1024);
        let listening = Arc::new(AtomicBool::new(false));
        let hub = Hub {
            tx: tx.clone(),
            listening: listening.clone(),
            shutdown: Arc::new(tokio::sync::watch::channel(false).0),
        };
        let mut rx = tapeflow_db::listen(url, CHANNELS.iter().map(|(c, _)| c.to_string()).collect());
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let msg = match ev {
                    // Browsers may have missed updates: tell them to re-fetch.
                    ListenEvent::Connected => {
                        listening.store(true, Ordering::SeqCst);
                        Message { event: "resync".into(), data: "{}".into() }
                    }
                    ListenEvent::Notification { channel, payload } => {
                        Message { event: event_name(&channel).to_string(), data: payload }
                    }
                    // Until it is back, /healthz says so; browsers get the resync after it.
                    ListenEvent::Disconnected => {
                        listening.store(false, Ordering::SeqCst);
                        continue;
                    }
                };
                // No subscribers is fine: nobody is watching.
                let _ = tx.send(msg);
            }
        });
        hub
    }

    /// Whether the LISTEN connection has been established (it is re-established on loss).
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    /// Sends an event from the web app itself (e.g. backtest progress) to every browser.
    pub fn publish(&self, event: &str, data: String) {
        let _ = self.tx.send(Message { event: event.to_string(), data });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Message> {
        self.tx.subscribe()
    }

    /// Ends every SSE stream (at shutdown: they would otherwise keep their connections open).
    pub fn close_streams(&self) {
        self.shutdown.send_replace(true);
    }

    fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

/// One `/events` client: holds its place among `TAPEFLOW_WEB_MAX_SSE` and counts itself in
/// `tapeflow_web_sse_clients` while connected.
struct SseClient {
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl SseClient {
    fn new(slot: tokio::sync::OwnedSemaphorePermit) -> SseClient {
        metrics::gauge!("tapeflow_web_sse_clients").increment(1.0);
        SseClient { _slot: slot }
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        metrics::gauge!("tapeflow_web_sse_clients").decrement(1.0);
    }
}

/// `GET /events`: the fan-out as Server-Sent Events. Each client reads the shared broadcast
/// at its own pace; publishing never waits for anybody. A client that falls more than the
/// broadcast buffer behind is sent `resync` and disconnected (its browser reconnects and
/// re-reads), and one that stops reading altogether is closed by the connection's write
/// timeout (see `server.rs`), so neither holds up the others.
pub async fn sse(State(state): State<AppState>) -> Response {
    let Ok(slot) = state.sse_slots.clone().try_acquire_owned() else {
        metrics::counter!("tapeflow_web_sse_refused_total").increment(1);
        let mut r = crate::auth::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many live streams (TAPEFLOW_WEB_MAX_SSE = {})", state.limits.max_sse),
        );
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("10"));
        return r;
    };
    let client = SseClient::new(slot);
    let rx = state.hub.subscribe();
    let shutdown = state.hub.shutdown_signal();
    let stream = futures_util::stream::unfold(
        (rx, shutdown, client, false),
        |(mut rx, mut shutdown, client, done)| async move {
            if done || *shutdown.borrow() {
                return None;
            }
            let next = tokio::select! {
                m = rx.recv() => m,
                _ = shutdown.changed() => return None,
            };
            match next {
                Ok(m) => Some((
                    Ok::<_, Infallible>(Event::default().event(m.event).data(m.data)),
                    (rx, shutdown, client, false),
                )),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    metrics::counter!("tapeflow_web_slow_clients_dropped_total", "reason" => "lagged")
                        .increment(1);
                    tracing::info!(missed, "dropping an SSE client that fell behind");
                    Some((Ok(Event::default().event("resync").data("{}")), (rx, shutdown, client, true)))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

/// Ready once notifications can flow: until then a browser would miss updates.
pub async fn healthz(State(state): State<AppState>) -> (axum::http::StatusCode, &'static str) {
    if state.hub.is_listening() {
        (axum::http::StatusCode::OK, "ok")
    } else {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "waiting for LISTEN connection")
    }
}
