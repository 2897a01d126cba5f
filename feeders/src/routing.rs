//! `tapeflow-feed run`: every provider named in `tapeflow.symbols` runs for its active
//! symbols, and follows the table as it changes, without a restart.
//!
//! The table is re-read when a change is announced on `tapeflow_symbols` and every
//! `TAPEFLOW_FEED_RELOAD_SECS` besides (a notification is lost while the listener
//! reconnects). Each provider runs in its own task: one that fails or panics is started again
//! after a pause and never stops the others. Symbols of providers that are not streamed here
//! (`demo`, which `tapeflow-feed demo` runs, and `file`, for imported data) are left alone.

use crate::provider::{FeedCtx, Instrument, Provider};
use crate::providers;
use crate::sink::{self, SinkConfig};
use crate::status::{self, FeedState, StatusRegistry};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tapeflow_db::backoff::Backoff;
use tapeflow_db::config::env_parse;
use tapeflow_db::ListenEvent;
use tokio::sync::watch;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

/// Providers whose symbols `run` does not stream.
const NOT_STREAMED: &[&str] = &["demo", "file"];

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub database_url: String,
    /// `TAPEFLOW_FEED_RELOAD_SECS`: re-read `tapeflow.symbols` at least this often (default 30).
    pub reload_every: Duration,
    /// `TAPEFLOW_FEED_STATUS_MS`: how often `tapeflow.feed_status` is written (default 1000).
    pub status_every: Duration,
    /// `TAPEFLOW_FEED_RESTART_SECS`: pause before a provider that failed is started again (default 30).
    pub restart_after: Duration,
    pub sink: SinkConfig,
}

impl RunConfig {
    pub fn from_env() -> anyhow::Result<RunConfig> {
        Ok(RunConfig {
            database_url: tapeflow_db::database_url(),
            reload_every: Duration::from_secs(env_parse("TAPEFLOW_FEED_RELOAD_SECS")?.unwrap_or(30)),
            status_every: Duration::from_millis(env_parse("TAPEFLOW_FEED_STATUS_MS")?.unwrap_or(1000)),
            restart_after: Duration::from_secs(env_parse("TAPEFLOW_FEED_RESTART_SECS")?.unwrap_or(30)),
            sink: SinkConfig::from_env()?,
        })
    }
}

/// The shared machinery of a feeder process: writer, health and shutdown.
pub struct Feeder {
    pub ctx: FeedCtx,
    writer: tokio::task::JoinHandle<sink::Written>,
    status: tokio::task::JoinHandle<()>,
}

impl Feeder {
    pub fn start(database_url: &str, sink: SinkConfig, status_every: Duration) -> Feeder {
        let shutdown = CancellationToken::new();
        let (sink, writer) = sink::spawn(database_url.to_string(), sink, shutdown.clone());
        let registry = StatusRegistry::default();
        let status = tokio::spawn(status::write_loop(
            database_url.to_string(),
            registry.clone(),
            status_every,
            shutdown.clone(),
        ));
        let ctx = FeedCtx { sink, status: registry, shutdown, database_url: database_url.to_string() };
        Feeder { ctx, writer, status }
    }

    /// Stops: providers see the cancellation, the queue is written (within the grace period),
    /// the last health is recorded.
    pub async fn finish(self) -> sink::Written {
        self.ctx.shutdown.cancel();
        let Feeder { ctx, writer, status } = self;
        drop(ctx);
        let written = writer.await.unwrap_or_default();
        let _ = status.await;
        tracing::info!(?written, "feed writer finished");
        written
    }
}

struct Running {
    instruments: watch::Sender<Vec<Instrument>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

pub async fn run(cfg: RunConfig) -> anyhow::Result<()> {
    let feeder = Feeder::start(&cfg.database_url, cfg.sink.clone(), cfg.status_every);
    let shutdown = feeder.ctx.shutdown.clone();
    tokio::spawn({
        let s = shutdown.clone();
        async move {
            tapeflow_db::shutdown_signal().await;
            s.cancel();
        }
    });
    let mut events = tapeflow_db::listen(cfg.database_url.clone(), vec!["tapeflow_symbols".into()]);
    let mut reload = tokio::time::interval(cfg.reload_every);
    let mut client: Option<Client> = None;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut warned: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = reload.tick() => {}
            ev = events.recv() => match ev {
                Some(ListenEvent::Disconnected) => continue,
                Some(ListenEvent::Connected | ListenEvent::Notification { .. }) => {}
                None => {}
            },
        }
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = match tapeflow_db::connect(&cfg.database_url, Duration::ZERO).await {
                Ok(c) => Some(c),
                Err(e) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(error = %e, "routing: cannot read tapeflow.symbols; providers keep their symbols");
                    tokio::select! { _ = tokio::time::sleep(wait) => {}, _ = shutdown.cancelled() => break }
                    continue;
                }
            };
        }
        let wanted = match load_routes(client.as_ref().expect("connected")).await {
            Ok(w) => {
                backoff.reset();
                w
            }
            Err(e) => {
                tracing::warn!(error = %e, "routing: cannot read tapeflow.symbols; providers keep their symbols");
                client = None;
                continue;
            }
        };
        apply_routes(&feeder.ctx, &cfg, wanted, &mut running, &mut warned);
    }
    for (_, r) in running.drain() {
        r.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), r.task).await;
    }
    feeder.finish().await;
    Ok(())
}

/// Active symbols by provider, skipping the providers `run` does not stream.
async fn load_routes(client: &Client) -> anyhow::Result<BTreeMap<String, Vec<Instrument>>> {
    let rows = client
        .query(
            "SELECT provider, symbol, coalesce(nullif(provider_ref, ''), symbol), tick_size, timezone, asset_class
             FROM tapeflow.symbols WHERE active ORDER BY provider, symbol",
            &[],
        )
        .await?;
    let mut out: BTreeMap<String, Vec<Instrument>> = BTreeMap::new();
    for r in rows {
        let provider: String = r.get(0);
        if NOT_STREAMED.contains(&provider.as_str()) {
            continue;
        }
        out.entry(provider).or_default().push(Instrument {
            symbol: r.get(1),
            provider_ref: r.get(2),
            tick_size: r.get(3),
            timezone: r.get(4),
            asset_class: r.get(5),
        });
    }
    // A provider that discovers its own symbols runs before it has any: it is what adds them.
    for name in providers::discovering() {
        out.entry(name.to_string()).or_default();
    }
    Ok(out)
}

fn apply_routes(
    ctx: &FeedCtx,
    cfg: &RunConfig,
    mut wanted: BTreeMap<String, Vec<Instrument>>,
    running: &mut HashMap<String, Running>,
    warned: &mut HashSet<String>,
) {
    // Providers with no active symbol left stop.
    running.retain(|name, r| {
        if wanted.contains_key(name) {
            return true;
        }
        tracing::info!(provider = %name, "no active symbols left; stopping the provider");
        r.stop.cancel();
        false
    });
    for (name, instruments) in std::mem::take(&mut wanted) {
        if let Some(r) = running.get(&name) {
            r.instruments.send_if_modified(|current| {
                let changed = *current != instruments;
                if changed {
                    tracing::info!(provider = %name, symbols = instruments.len(), "symbols changed");
                    *current = instruments.clone();
                }
                changed
            });
            continue;
        }
        let provider = match providers::build(&name) {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                if warned.insert(name.clone()) {
                    tracing::error!(provider = %name, error = %format!("{e:#}"), "provider not configured; its symbols are not fed");
                    let st = ctx.status.connection(&name, "config");
                    st.set_state(FeedState::Failed);
                    st.error(format!("{e:#}"));
                }
                continue;
            }
            None => {
                if warned.insert(name.clone()) {
                    tracing::warn!(provider = %name, known = ?providers::NAMES, "unknown provider in tapeflow.symbols; its symbols are not fed");
                }
                continue;
            }
        };
        tracing::info!(provider = %name, symbols = instruments.len(), "starting provider");
        let (tx, rx) = watch::channel(instruments);
        let stop = ctx.shutdown.child_token();
        let provider_ctx = FeedCtx { shutdown: stop.clone(), ..ctx.clone() };
        let task = tokio::spawn(supervise(provider, provider_ctx, rx, cfg.restart_after));
        running.insert(name, Running { instruments: tx, stop, task });
    }
}

/// Runs a provider until its stop, starting it again after a failure or a panic.
async fn supervise(
    provider: Arc<dyn Provider>,
    ctx: FeedCtx,
    instruments: watch::Receiver<Vec<Instrument>>,
    restart_after: Duration,
) {
    let name = provider.name();
    loop {
        let attempt = tokio::spawn({
            let (p, c, i) = (provider.clone(), ctx.clone(), instruments.clone());
            async move { p.stream(c, i).await }
        });
        let outcome = attempt.await;
        if ctx.shutdown.is_cancelled() {
            return;
        }
        let status = ctx.status.connection(name, "supervisor");
        match outcome {
            Ok(Ok(())) => tracing::warn!(provider = name, "provider stream ended; starting it again"),
            Ok(Err(e)) => {
                tracing::error!(provider = name, error = %format!("{e:#}"), retry_in = ?restart_after, "provider failed");
                status.set_state(FeedState::Failed);
                status.error(format!("{e:#}"));
            }
            Err(panic) => {
                tracing::error!(provider = name, error = %panic, retry_in = ?restart_after, "provider panicked");
                status.set_state(FeedState::Failed);
                status.error(format!("panicked: {panic}"));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(restart_after) => {}
            _ = ctx.shutdown.cancelled() => return,
        }
        status.set_state(FeedState::Starting);
    }
}
