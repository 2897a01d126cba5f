//! Fan-out of database notifications to browsers: one LISTEN connection feeds a broadcast
//! channel, each `/events` request subscribes to it as an SSE stream.

use crate::AppState;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::Stream;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tapeflow_db::ListenEvent;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

/// The channels the database announces on, with the SSE event name each is sent as.
pub const CHANNELS: [(&str, &str); 6] = [
    ("tapeflow_candles", "candle"),
    ("tapeflow_signals", "signal"),
    ("tapeflow_state", "state"),
    ("tapeflow_backtests", "backtest"),
    ("tapeflow_orders", "order"),
    ("tapeflow_risk", "risk"),
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
}

impl Hub {
    pub fn start(url: String) -> Hub {
        let (tx, _) = broadcast::channel(1024);
        let listening = Arc::new(AtomicBool::new(false));
        let hub = Hub { tx: tx.clone(), listening: listening.clone() };
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
}

pub async fn sse(State(state): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = BroadcastStream::new(state.hub.subscribe()).map(|m| {
        Ok(match m {
            Ok(m) => Event::default().event(m.event).data(m.data),
            // A slow browser fell behind the broadcast buffer: make it re-fetch.
            Err(_) => Event::default().event("resync").data("{}"),
        })
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Ready once notifications can flow: until then a browser would miss updates.
pub async fn healthz(State(state): State<AppState>) -> (axum::http::StatusCode, &'static str) {
    if state.hub.is_listening() {
        (axum::http::StatusCode::OK, "ok")
    } else {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "waiting for LISTEN connection")
    }
}
