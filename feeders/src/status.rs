//! Feed health: each provider connection reports here as it works, and a background task
//! writes the picture to `tapeflow.feed_status` about once a second (and to `/metrics` as it
//! happens).

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedState {
    Starting,
    Connecting,
    Connected,
    Backfilling,
    Reconnecting,
    /// The provider asked us to slow down; waiting.
    Throttled,
    Stopped,
    /// Cannot go on as configured (refused credentials, say); see `last_error`.
    Failed,
}

impl FeedState {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedState::Starting => "starting",
            FeedState::Connecting => "connecting",
            FeedState::Connected => "connected",
            FeedState::Backfilling => "backfilling",
            FeedState::Reconnecting => "reconnecting",
            FeedState::Throttled => "throttled",
            FeedState::Stopped => "stopped",
            FeedState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
struct Snapshot {
    state: FeedState,
    symbols: i32,
    last_message_at: Option<DateTime<Utc>>,
    lag_ms: Option<f64>,
    messages: u64,
    reconnects: u64,
    parse_errors: u64,
    last_error: Option<String>,
    last_error_at: Option<DateTime<Utc>>,
    started_at: DateTime<Utc>,
}

/// One provider connection's health.
#[derive(Debug)]
pub struct ConnStatus {
    pub provider: String,
    pub connection: String,
    inner: Mutex<Snapshot>,
}

impl ConnStatus {
    fn lock(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_state(&self, state: FeedState) {
        let mut s = self.lock();
        if s.state != state {
            tracing::info!(provider = %self.provider, connection = %self.connection, state = state.as_str(), "feed state");
        }
        s.state = state;
    }

    pub fn state(&self) -> FeedState {
        self.lock().state
    }

    pub fn set_symbols(&self, n: usize) {
        self.lock().symbols = n as i32;
    }

    /// A message arrived; `event_time` is the provider's own time stamp when it has one.
    pub fn message(&self, event_time: Option<DateTime<Utc>>) {
        let now = Utc::now();
        let mut s = self.lock();
        s.messages += 1;
        s.last_message_at = Some(now);
        if let Some(t) = event_time {
            s.lag_ms = Some((now - t).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0);
        }
        metrics::counter!("tapeflow_feed_messages_total", "provider" => self.provider.clone(), "connection" => self.connection.clone())
            .increment(1);
    }

    pub fn reconnect(&self) {
        self.lock().reconnects += 1;
        metrics::counter!("tapeflow_feed_reconnects_total", "provider" => self.provider.clone(), "connection" => self.connection.clone())
            .increment(1);
    }

    /// A frame that could not be understood: logged with context, counted, never fatal.
    pub fn parse_error(&self, error: &dyn std::fmt::Display, frame: &str) {
        const SHOWN: usize = 300;
        let shown: String = frame.chars().take(SHOWN).collect();
        tracing::warn!(provider = %self.provider, connection = %self.connection, %error, frame = %shown,
            frame_len = frame.len(), "unreadable message skipped");
        let mut s = self.lock();
        s.parse_errors += 1;
        s.last_error = Some(format!("unreadable message: {error}"));
        s.last_error_at = Some(Utc::now());
        drop(s);
        metrics::counter!("tapeflow_feed_parse_errors_total", "provider" => self.provider.clone(), "connection" => self.connection.clone())
            .increment(1);
    }

    /// An error worth showing (a refused login, a lost connection), already logged by the caller.
    pub fn error(&self, error: impl std::fmt::Display) {
        let mut s = self.lock();
        s.last_error = Some(error.to_string());
        s.last_error_at = Some(Utc::now());
    }

    pub fn parse_errors(&self) -> u64 {
        self.lock().parse_errors
    }
}

/// Every connection of this feeder process.
#[derive(Debug, Clone, Default)]
pub struct StatusRegistry {
    conns: Arc<Mutex<Vec<Arc<ConnStatus>>>>,
}

impl StatusRegistry {
    /// The status of a connection, created on first use.
    pub fn connection(&self, provider: &str, connection: &str) -> Arc<ConnStatus> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = conns.iter().find(|c| c.provider == provider && c.connection == connection) {
            return c.clone();
        }
        let c = Arc::new(ConnStatus {
            provider: provider.to_string(),
            connection: connection.to_string(),
            inner: Mutex::new(Snapshot {
                state: FeedState::Starting,
                symbols: 0,
                last_message_at: None,
                lag_ms: None,
                messages: 0,
                reconnects: 0,
                parse_errors: 0,
                last_error: None,
                last_error_at: None,
                started_at: Utc::now(),
            }),
        });
        conns.push(c.clone());
        c
    }

    fn snapshot(&self) -> Vec<(Arc<ConnStatus>, Snapshot)> {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.iter().map(|c| (c.clone(), c.lock().clone())).collect()
    }

    /// Marks every connection stopped (a graceful shutdown).
    pub fn stop_all(&self) {
        for (c, _) in self.snapshot() {
            c.set_state(FeedState::Stopped);
        }
    }
}

/// Writes the registry to `tapeflow.feed_status` every `every` until `shutdown`, then once more
/// (so a stopped feeder shows as stopped). While the database is away it skips rounds.
pub async fn write_loop(url: String, registry: StatusRegistry, every: Duration, shutdown: CancellationToken) {
    let mut client: Option<Client> = None;
    let mut previous: Vec<(String, String, u64, std::time::Instant)> = Vec::new();
    let mut tick = tokio::time::interval(every);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = shutdown.cancelled() => true,
        };
        if last {
            registry.stop_all();
        }
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = tapeflow_db::connect(&url, Duration::ZERO).await.ok();
        }
        if let Some(c) = &client {
            if let Err(e) = write_once(c, &registry, &mut previous).await {
                tracing::debug!(error = %e, "feed_status not written this round");
                client = None;
            }
        }
        if last {
            return;
        }
    }
}

async fn write_once(
    client: &Client,
    registry: &StatusRegistry,
    previous: &mut Vec<(String, String, u64, std::time::Instant)>,
) -> anyhow::Result<()> {
    let snap = registry.snapshot();
    if snap.is_empty() {
        return Ok(());
    }
    let now = std::time::Instant::now();
    let pid = std::process::id() as i32;
    for (c, s) in &snap {
        // Messages per second over the last interval.
        let rate = match previous.iter_mut().find(|p| p.0 == c.provider && p.1 == c.connection) {
            Some(p) => {
                let secs = now.duration_since(p.3).as_secs_f64().max(1e-3);
                let r = (s.messages.saturating_sub(p.2)) as f64 / secs;
                p.2 = s.messages;
                p.3 = now;
                r
            }
            None => {
                previous.push((c.provider.clone(), c.connection.clone(), s.messages, now));
                0.0
            }
        };
        client
            .execute(
                "INSERT INTO tapeflow.feed_status AS f (provider, connection, state, symbols, last_message_at, lag_ms,
                     messages_per_sec, messages, reconnects, parse_errors, last_error, last_error_at, feeder_pid,
                     started_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, now())
                 ON CONFLICT (provider, connection) DO UPDATE SET state = excluded.state, symbols = excluded.symbols,
                     last_message_at = excluded.last_message_at, lag_ms = excluded.lag_ms,
                     messages_per_sec = excluded.messages_per_sec, messages = excluded.messages,
                     reconnects = excluded.reconnects, parse_errors = excluded.parse_errors,
                     last_error = excluded.last_error, last_error_at = excluded.last_error_at,
                     feeder_pid = excluded.feeder_pid, started_at = excluded.started_at, updated_at = now()",
                &[
                    &c.provider,
                    &c.connection,
                    &s.state.as_str(),
                    &s.symbols,
                    &s.last_message_at,
                    &s.lag_ms,
                    &rate,
                    &(s.messages as i64),
                    &(s.reconnects as i64),
                    &(s.parse_errors as i64),
                    &s.last_error,
                    &s.last_error_at,
                    &pid,
                    &s.started_at,
                ],
            )
            .await?;
    }
    Ok(())
}
