//! Fan-out of database notifications to browsers: one LISTEN connection feeds a broadcast
//! channel, each `/events` request subscribes to it as an SSE stream.

use crate::AppState;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::Stream;
use std::convert::Infallible;
use std::time::Duration;
use tapeflow_db::ListenEvent;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

/// The channels the database announces on; the SSE event name drops the `tapeflow_` prefix.
pub const CHANNELS: [&str; 4] = ["tapeflow_candles", "tapeflow_signals", "tapeflow_state", "tapeflow_backtests"];

#[derive(Debug, Clone)]
pub struct Message {
    pub event: String,
    pub data: String,
}

#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Message>,
}

impl Hub {
    pub fn start(url: String) -> Hub {
        let (tx, _) = broadcast::channel(1024);
        let hub = Hub { tx: tx.clone() };
        let mut rx = tapeflow_db::listen(url, CHANNELS.iter().map(|c| c.to_string()).collect());
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let msg = match ev {
                    // Browsers may have missed updates: tell them to re-fetch.
                    ListenEvent::Connected => Message { event: "resync".into(), data: "{}".into() },
                    ListenEvent::Notification { channel, payload } => Message {
                        event: channel.trim_start_matches("tapeflow_").to_string(),
                        data: payload,
                    },
                };
                // No subscribers is fine: nobody is watching.
                let _ = tx.send(msg);
            }
        });
        hub
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
