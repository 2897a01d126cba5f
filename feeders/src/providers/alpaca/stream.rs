//! The live stream: one WebSocket session after another (backoff and jitter between them),
//! subscriptions following the routed symbols, and a gap worker that loads from the REST
//! history whatever the stream did not cover.
//!
//! Coverage, per symbol: `covered` is the time up to which the stream or a queued gap load
//! accounts for every trade. When a subscription is confirmed at time C, the gap
//! `[covered, C]` is queued (on the first confirmation of a symbol in this process, from its
//! newest stored trade) and `covered` becomes C; each live trade moves it on. After a
//! disconnect the next confirmation queues `[covered, C']`, which holds everything missed.
//! Gap loads re-read their first instant and overlap the stream at their end: the writer
//! stores each trade once, since both ways give it the same id and time.

use super::frames::{self, error_reaction, ErrorReaction, StreamMessage};
use super::rest::{self, Rest, RestError, Window, WindowLoad};
use super::store::{self, Store};
use super::{AlpacaDataConfig, NAME};
use crate::ingest_side::IngestClassifier;
use crate::provider::{FeedCtx, Instrument, Record};
use crate::status::{ConnStatus, FeedState};
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tapeflow_db::backoff::Backoff;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Where a gap starts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum GapFrom {
    At(DateTime<Utc>),
    /// The symbol's newest stored trade (nothing stored: no gap), looked up by the worker.
    NewestStored,
}

#[derive(Debug, Clone)]
struct GapJob {
    symbol: String,
    provider_ref: String,
    from: GapFrom,
    to: DateTime<Utc>,
    /// The watermark hold the job releases when it is over (loads an earlier run left
    /// unfinished hold nothing).
    hold: Option<u64>,
}

/// Pending gap loads per symbol, each holding the symbol's watermark at its start (None: the
/// start is not known yet, and no watermark is sent) until the load is over.
#[derive(Clone, Default)]
struct Holds(Arc<std::sync::Mutex<(u64, HoldMap)>>);

/// Per symbol, the pending gaps by hold id and their starts.
type HoldMap = HashMap<String, BTreeMap<u64, Option<DateTime<Utc>>>>;

impl Holds {
    fn add(&self, symbol: &str, start: Option<DateTime<Utc>>) -> u64 {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += 1;
        let id = g.0;
        g.1.entry(symbol.to_string()).or_default().insert(id, start);
        id
    }

    fn set_start(&self, symbol: &str, id: u64, start: DateTime<Utc>) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = g.1.get_mut(symbol).and_then(|m| m.get_mut(&id)) {
            *h = Some(start);
        }
    }

    fn release(&self, symbol: &str, id: u64) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = g.1.get_mut(symbol) {
            m.remove(&id);
            if m.is_empty() {
                g.1.remove(symbol);
            }
        }
    }

    /// The symbol's watermark given what the stream has delivered up to `streamed`: the
    /// earliest pending gap start if that is before it; None while a gap's start is unknown.
    fn watermark(&self, symbol: &str, streamed: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(m) = g.1.get(symbol) else { return Some(streamed) };
        m.values().try_fold(streamed, |w, h| h.map(|h| w.min(h)))
    }
}

/// Releases a gap job's hold however the job ends.
struct HoldGuard<'a> {
    holds: &'a Holds,
    symbol: String,
    id: Option<u64>,
}

impl HoldGuard<'_> {
    fn set_start(&self, start: DateTime<Utc>) {
        if let Some(id) = self.id {
            self.holds.set_start(&self.symbol, id, start);
        }
    }
}

impl Drop for HoldGuard<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.holds.release(&self.symbol, id);
        }
    }
}

/// How far behind the time the stream was last heard from its watermark stays: trades reach
/// the stream about in time order, a little late at most.
const WATERMARK_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

/// How a session ended.
enum SessionEnd {
    Shutdown,
    /// Lost or closed; `subscribed` says whether it got as far as a subscription.
    Closed {
        subscribed: bool,
        reason: String,
    },
    /// "connection limit exceeded".
    ConnectionLimit(String),
    /// A refusal retrying cannot fix.
    Stop(String),
}

/// What survives from one session to the next.
struct Coverage {
    covered: HashMap<String, DateTime<Utc>>,
    /// The earliest live trade of each symbol this process streamed: the newest stored trade
    /// *before* it is where the previous run (or the symbol's previous activation) stopped.
    live_since: LiveSince,
    holds: Holds,
    /// The newest trade or quote time received per symbol.
    seen: HashMap<String, DateTime<Utc>>,
}

type LiveSince = Arc<std::sync::Mutex<HashMap<String, DateTime<Utc>>>>;

fn live_since_of(live: &LiveSince, symbol: &str) -> Option<DateTime<Utc>> {
    live.lock().unwrap_or_else(|p| p.into_inner()).get(symbol).copied()
}

pub async fn run(
    cfg: Arc<AlpacaDataConfig>,
    rest: Rest,
    ctx: FeedCtx,
    mut instruments: watch::Receiver<Vec<Instrument>>,
) -> anyhow::Result<()> {
    let status = ctx.status.connection(NAME, "stream");
    let (gap_tx, gap_rx) = mpsc::unbounded_channel();
    let live_since: LiveSince = Default::default();
    let holds = Holds::default();
    let worker = tokio::spawn(gap_worker(rest, ctx.clone(), gap_rx, live_since.clone(), holds.clone()));
    let bars = cfg.bars.then(|| store::spawn_bar_writer(ctx.database_url.clone(), ctx.shutdown.clone()));
    let mut coverage = Coverage { covered: HashMap::new(), live_since, holds, seen: HashMap::new() };
    let mut backoff = Backoff::new(cfg.reconnect_min, cfg.reconnect_max);
    let mut limit_backoff = Backoff::new(cfg.limit_min, cfg.limit_max);
    let mut first = true;
    loop {
        if ctx.shutdown.is_cancelled() {
            break;
        }
        if first {
            status.set_state(FeedState::Connecting);
        } else {
            status.set_state(FeedState::Reconnecting);
            status.reconnect();
        }
        first = false;
        let end = session(&cfg, &ctx, &status, &mut instruments, &mut coverage, &gap_tx, bars.as_ref()).await;
        let wait = match end {
            SessionEnd::Shutdown => break,
            SessionEnd::Closed { subscribed, reason } => {
                if subscribed {
                    backoff.reset();
                    limit_backoff.reset();
                }
                let wait = backoff.next_delay();
                tracing::warn!(provider = NAME, url = %cfg.ws_url, %reason, retry_in_ms = wait.as_millis() as u64,
                    "alpaca stream: disconnected; reconnecting (the gap will be loaded from the history)");
                status.error(format!("disconnected: {reason}"));
                status.set_state(FeedState::Reconnecting);
                wait
            }
            SessionEnd::ConnectionLimit(msg) => {
                let wait = limit_backoff.next_delay();
                tracing::error!(provider = NAME, %msg, retry_in_ms = wait.as_millis() as u64,
                    "alpaca stream: connection limit exceeded: another client (or a half-closed earlier \
                     connection of this one) holds the account's market-data connection; backing off");
                status.error(format!("406 connection limit exceeded: {msg}; another client uses this account's data connection"));
                status.set_state(FeedState::Throttled);
                wait
            }
            SessionEnd::Stop(msg) => {
                tracing::error!(provider = NAME, %msg, retry_in_ms = cfg.stop_pause.as_millis() as u64,
                    "alpaca stream: refused; not retrying before the pause");
                status.error(&msg);
                status.set_state(FeedState::Failed);
                cfg.stop_pause
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.shutdown.cancelled() => break,
        }
    }
    status.set_state(FeedState::Stopped);
    drop(gap_tx);
    // The worker stops at its next page on shutdown; an unfinished gap resumes at the next start.
    let _ = tokio::time::timeout(Duration::from_secs(5), worker).await;
    Ok(())
}

/// The routed instruments by provider id.
fn wanted(instruments: &watch::Receiver<Vec<Instrument>>) -> BTreeMap<String, Instrument> {
    let mut out = BTreeMap::new();
    for i in instruments.borrow().iter() {
        if let Some(prev) = out.insert(i.provider_ref.clone(), i.clone()) {
            tracing::warn!(provider = NAME, provider_ref = %i.provider_ref, first = %prev.symbol, second = %i.symbol,
                "alpaca: two symbols share one provider_ref; the second is fed");
        }
    }
    out
}

fn subscribe_message(action: &str, cfg: &AlpacaDataConfig, refs: &[String]) -> String {
    let none: &[String] = &[];
    json!({
        "action": action,
        "trades": refs,
        "quotes": if cfg.quotes { refs } else { none },
        "bars": if cfg.bars { refs } else { none },
    })
    .to_string()
}

/// Text of a data frame; None for control frames.
fn frame_text(msg: &Message) -> Option<std::borrow::Cow<'_, str>> {
    match msg {
        Message::Text(t) => Some(std::borrow::Cow::Borrowed(t.as_str())),
        Message::Binary(b) => Some(String::from_utf8_lossy(b)),
        _ => None,
    }
}

/// Waits for the next data frame within `timeout`.
async fn next_text(ws: &mut Ws, timeout: Duration) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Err(format!("no answer within {timeout:?}")),
            Ok(None) => return Err("closed by the server".into()),
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(Some(Ok(Message::Close(frame)))) => return Err(format!("closed by the server: {frame:?}")),
            Ok(Some(Ok(msg))) => {
                if let Some(t) = frame_text(&msg) {
                    return Ok(t.into_owned());
                }
            }
        }
    }
}

/// The end a stream error code calls for, or None to go on.
fn on_error(
    code: i64,
    msg: &str,
    subscribed: bool,
    cfg: &AlpacaDataConfig,
    status: &ConnStatus,
    wanted: usize,
) -> Option<SessionEnd> {
    match error_reaction(code) {
        ErrorReaction::Stop => Some(SessionEnd::Stop(match code {
            402 => "402 auth failed: the keys were refused; check APCA_API_KEY_ID / APCA_API_SECRET_KEY".to_string(),
            409 => format!(
                "409 insufficient subscription: the account's plan does not include the {} feed (TAPEFLOW_ALPACA_FEED=iex is free)",
                cfg.feed
            ),
            _ => format!("{code} {msg}"),
        })),
        ErrorReaction::BackOffLong => Some(SessionEnd::ConnectionLimit(format!("{code} {msg}"))),
        ErrorReaction::Reconnect => Some(SessionEnd::Closed { subscribed, reason: format!("stream error {code} {msg}") }),
        ErrorReaction::Continue => {
            let detail = match code {
                405 => format!(
                    "405 symbol limit exceeded: {wanted} symbols asked for, more than the plan allows (the free iex plan \
                     allows 30); the symbols confirmed before go on, the rest are not streamed"
                ),
                400 => format!("400 invalid syntax: the server could not read a message this feeder sent ({msg})"),
                _ => format!("{code} {msg}"),
            };
            tracing::error!(provider = NAME, code, %msg, "alpaca stream: {detail}");
            status.error(detail);
            None
        }
    }
}

async fn session(
    cfg: &AlpacaDataConfig,
    ctx: &FeedCtx,
    status: &ConnStatus,
    instruments: &mut watch::Receiver<Vec<Instrument>>,
    coverage: &mut Coverage,
    gaps: &mpsc::UnboundedSender<GapJob>,
    bars: Option<&mpsc::Sender<(String, frames::Bar)>>,
) -> SessionEnd {
    let closed = |reason: String| SessionEnd::Closed { subscribed: false, reason };
    let ws_config =
        WebSocketConfig::default().max_message_size(Some(64 << 20)).max_frame_size(Some(64 << 20));
    let connect = tokio_tungstenite::connect_async_with_config(cfg.ws_url.as_str(), Some(ws_config), false);
    let mut ws = tokio::select! {
        r = tokio::time::timeout(cfg.timeout, connect) => match r {
            Err(_) => return closed(format!("connect: no answer within {:?}", cfg.timeout)),
            Ok(Err(e)) => return closed(format!("connect: {e}")),
            Ok(Ok((ws, _))) => ws,
        },
        _ = ctx.shutdown.cancelled() => return SessionEnd::Shutdown,
    };

    // Handshake: connected, then auth → authenticated.
    let mut sent_auth = false;
    loop {
        let text = tokio::select! {
            t = next_text(&mut ws, cfg.timeout) => match t {
                Ok(t) => t,
                Err(e) => return closed(format!("{}: {e}", if sent_auth { "waiting for authentication" } else { "waiting for the welcome" })),
            },
            _ = ctx.shutdown.cancelled() => return SessionEnd::Shutdown,
        };
        let msgs = match frames::parse_stream_frame(&text) {
            Ok((msgs, bad)) => {
                for (e, item) in bad {
                    status.parse_error(&e, &item);
                }
                msgs
            }
            Err(e) => {
                status.parse_error(&e, &text);
                continue;
            }
        };
        let mut authenticated = false;
        for m in msgs {
            match m {
                StreamMessage::Connected if !sent_auth => {
                    let auth =
                        json!({"action": "auth", "key": cfg.key_id, "secret": cfg.secret_key}).to_string();
                    if let Err(e) = ws.send(Message::text(auth)).await {
                        return closed(format!("sending auth: {e}"));
                    }
                    sent_auth = true;
                }
                StreamMessage::Authenticated => authenticated = true,
                StreamMessage::Error { code, msg } => {
                    if let Some(end) = on_error(code, &msg, false, cfg, status, 0) {
                        let _ = ws.close(None).await;
                        return end;
                    }
                }
                other => {
                    tracing::debug!(provider = NAME, ?other, "alpaca stream: ignored during the handshake")
                }
            }
        }
        if authenticated {
            break;
        }
    }
    status.set_state(FeedState::Connected);
    tracing::info!(provider = NAME, url = %cfg.ws_url, "alpaca stream: authenticated");

    let mut refs = wanted(instruments);
    instruments.mark_unchanged();
    // Provider ids asked for (and not withdrawn), and those the server confirmed.
    let mut requested: BTreeSet<String> = BTreeSet::new();
    let mut confirmed: HashSet<String> = HashSet::new();
    let mut subscribed = false;
    let mut warned_missing: HashSet<String> = HashSet::new();
    let mut classifier = IngestClassifier::default();
    status.set_symbols(0);
    if !refs.is_empty() {
        let list: Vec<String> = refs.keys().cloned().collect();
        if let Err(e) = ws.send(Message::text(subscribe_message("subscribe", cfg, &list))).await {
            return closed(format!("sending subscribe: {e}"));
        }
        requested.extend(list);
    }

    let mut ping = tokio::time::interval(cfg.ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut last_heard = Instant::now();
    let mut last_heard_at = Utc::now();
    // Each second: the watermarks of the confirmed symbols, and a ping if the stream is quiet,
    // so that its answer shows the connection alive and the watermark moves on.
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            changed = instruments.changed() => {
                if changed.is_err() {
                    // Routing dropped this provider: it is being stopped.
                    let _ = ws.close(None).await;
                    return SessionEnd::Shutdown;
                }
                refs = wanted(instruments);
                let now_wanted: BTreeSet<String> = refs.keys().cloned().collect();
                let added: Vec<String> = now_wanted.difference(&requested).cloned().collect();
                let removed: Vec<String> = requested.difference(&now_wanted).cloned().collect();
                if !removed.is_empty() {
                    tracing::info!(provider = NAME, symbols = ?removed, "alpaca stream: unsubscribing");
                    if let Err(e) = ws.send(Message::text(subscribe_message("unsubscribe", cfg, &removed))).await {
                        return SessionEnd::Closed { subscribed, reason: format!("sending unsubscribe: {e}") };
                    }
                    for r in &removed {
                        requested.remove(r);
                        confirmed.remove(r);
                    }
                    // A symbol added again later starts from its newest stored trade.
                    coverage.covered.retain(|s, _| refs.values().any(|i| &i.symbol == s));
                    coverage
                        .live_since
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .retain(|s, _| refs.values().any(|i| &i.symbol == s));
                }
                if !added.is_empty() {
                    tracing::info!(provider = NAME, symbols = ?added, "alpaca stream: subscribing");
                    if let Err(e) = ws.send(Message::text(subscribe_message("subscribe", cfg, &added))).await {
                        return SessionEnd::Closed { subscribed, reason: format!("sending subscribe: {e}") };
                    }
                    requested.extend(added);
                }
                status.set_symbols(confirmed.len());
                continue;
            }
            _ = heartbeat.tick(), if subscribed => {
                let streamed = last_heard_at - WATERMARK_MARGIN;
                for inst in confirmed.iter().filter_map(|r| refs.get(r)) {
                    let streamed = coverage.seen.get(&inst.symbol).map_or(streamed, |t| streamed.max(*t));
                    let Some(complete_until) = coverage.holds.watermark(&inst.symbol, streamed) else { continue };
                    let mark = Record::Watermark { symbol: inst.symbol.clone(), complete_until };
                    if ctx.sink.send(mark).await.is_err() {
                        return SessionEnd::Shutdown;
                    }
                }
                if last_heard.elapsed() >= Duration::from_secs(1) {
                    if let Err(e) = ws.send(Message::Ping(Default::default())).await {
                        return SessionEnd::Closed { subscribed, reason: format!("ping: {e}") };
                    }
                }
                continue;
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > cfg.ping_every * 3 {
                    return SessionEnd::Closed { subscribed, reason: format!("silent for {:?}", last_heard.elapsed()) };
                }
                if let Err(e) = ws.send(Message::Ping(Default::default())).await {
                    return SessionEnd::Closed { subscribed, reason: format!("ping: {e}") };
                }
                continue;
            }
            _ = ctx.shutdown.cancelled() => {
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                return SessionEnd::Shutdown;
            }
        };
        let msg = match msg {
            None => return SessionEnd::Closed { subscribed, reason: "closed by the server".into() },
            Some(Err(e)) => return SessionEnd::Closed { subscribed, reason: e.to_string() },
            Some(Ok(m)) => m,
        };
        last_heard = Instant::now();
        last_heard_at = Utc::now();
        if let Message::Close(frame) = &msg {
            return SessionEnd::Closed { subscribed, reason: format!("closed by the server: {frame:?}") };
        }
        let Some(text) = frame_text(&msg) else { continue };
        if text.len() > cfg.max_frame_bytes {
            status.parse_error(
                &format!(
                    "a frame of {} bytes, more than TAPEFLOW_ALPACA_MAX_FRAME_BYTES ({})",
                    text.len(),
                    cfg.max_frame_bytes
                ),
                &text,
            );
            continue;
        }
        let msgs = match frames::parse_stream_frame(&text) {
            Ok((msgs, bad)) => {
                for (e, item) in bad {
                    status.parse_error(&e, &item);
                }
                msgs
            }
            Err(e) => {
                status.parse_error(&e, &text);
                continue;
            }
        };
        for m in msgs {
            match m {
                StreamMessage::Trade(t) => {
                    status.message(Some(t.time));
                    let Some(inst) = refs.get(&t.symbol) else {
                        tracing::debug!(provider = NAME, symbol = %t.symbol, "alpaca stream: trade of a symbol no longer routed; skipped");
                        continue;
                    };
                    let (side, source) = classifier.classify(&inst.symbol, t.price, None);
                    let c = coverage.covered.entry(inst.symbol.clone()).or_insert(t.time);
                    *c = (*c).max(t.time);
                    let seen = coverage.seen.entry(inst.symbol.clone()).or_insert(t.time);
                    *seen = (*seen).max(t.time);
                    {
                        let mut live = coverage.live_since.lock().unwrap_or_else(|p| p.into_inner());
                        let first = live.entry(inst.symbol.clone()).or_insert(t.time);
                        *first = (*first).min(t.time);
                    }
                    let row = rest::tick_row(&inst.symbol, &t, side, source.as_str());
                    if ctx.sink.send(Record::Tick(row)).await.is_err() {
                        return SessionEnd::Shutdown;
                    }
                }
                StreamMessage::Quote(q) => {
                    status.message(Some(q.time));
                    let Some(inst) = refs.get(&q.symbol) else { continue };
                    classifier.on_quote(&inst.symbol, q.bid, q.ask);
                    let seen = coverage.seen.entry(inst.symbol.clone()).or_insert(q.time);
                    *seen = (*seen).max(q.time);
                    if ctx.sink.send(Record::Quote(rest::quote_row(&inst.symbol, &q))).await.is_err() {
                        return SessionEnd::Shutdown;
                    }
                }
                StreamMessage::Amend(a) => {
                    status.message(Some(a.time()));
                    let Some(inst) = refs.get(a.symbol()) else { continue };
                    let amend = rest::tick_amend(&inst.symbol, &a);
                    tracing::info!(provider = NAME, ?amend, "alpaca stream: a trade cancelled or corrected");
                    if ctx.sink.send(Record::Amend(amend)).await.is_err() {
                        return SessionEnd::Shutdown;
                    }
                }
                StreamMessage::Bar(b) => {
                    status.message(Some(b.time));
                    let Some(inst) = refs.get(&b.symbol) else { continue };
                    if let Some(tx) = bars {
                        if tx.try_send((inst.symbol.clone(), b)).is_err() {
                            tracing::warn!(provider = NAME, symbol = %inst.symbol, "alpaca stream: vendor bar queue full; bar dropped");
                        }
                    }
                }
                StreamMessage::Subscription(s) => {
                    status.message(None);
                    subscribed = true;
                    let now = Utc::now();
                    let now_confirmed: HashSet<String> = s.trades.iter().cloned().collect();
                    for r in now_confirmed.difference(&confirmed) {
                        let Some(inst) = refs.get(r) else { continue };
                        let from = match coverage.covered.get(&inst.symbol) {
                            Some(t) => GapFrom::At(*t),
                            None => GapFrom::NewestStored,
                        };
                        let start = match from {
                            GapFrom::At(t) => Some(t),
                            GapFrom::NewestStored => None,
                        };
                        let hold = coverage.holds.add(&inst.symbol, start);
                        let _ = gaps.send(GapJob {
                            symbol: inst.symbol.clone(),
                            provider_ref: r.clone(),
                            from,
                            to: now,
                            hold: Some(hold),
                        });
                        let c = coverage.covered.entry(inst.symbol.clone()).or_insert(now);
                        *c = (*c).max(now);
                    }
                    confirmed = now_confirmed;
                    for r in requested.iter().filter(|r| !confirmed.contains(*r)) {
                        if warned_missing.insert(r.clone()) {
                            tracing::warn!(provider = NAME, provider_ref = %r,
                                "alpaca stream: the server did not confirm this symbol's trades (unknown symbol, or over the plan's limit)");
                        }
                    }
                    status.set_symbols(confirmed.len());
                    tracing::info!(
                        provider = NAME,
                        trades = s.trades.len(),
                        quotes = s.quotes.len(),
                        bars = s.bars.len(),
                        "alpaca stream: subscription confirmed"
                    );
                }
                StreamMessage::Error { code, msg } => {
                    status.message(None);
                    if let Some(end) = on_error(code, &msg, subscribed, cfg, status, requested.len()) {
                        let _ = ws.close(None).await;
                        return end;
                    }
                    if code == 405 {
                        // The refused subscription did not take: those symbols are not asked for.
                        requested.retain(|r| confirmed.contains(r));
                    }
                }
                StreamMessage::Connected | StreamMessage::Authenticated | StreamMessage::Success(_) => {
                    status.message(None);
                }
                StreamMessage::Ignored(t) => {
                    status.message(None);
                    tracing::trace!(provider = NAME, kind = %t, "alpaca stream: message type not stored");
                }
            }
        }
    }
}

/// Loads the queued gaps one after another (so a burst of reconnects does not multiply the
/// REST load), each recorded in `tapeflow.backfill_progress` so that a restart finishes it.
async fn gap_worker(
    rest: Rest,
    ctx: FeedCtx,
    mut jobs: mpsc::UnboundedReceiver<GapJob>,
    live_since: LiveSince,
    holds: Holds,
) {
    let status = ctx.status.connection(NAME, "backfill");
    status.set_state(FeedState::Connected);
    let cfg = rest.cfg().clone();
    let mut store = Store::new(&ctx.database_url);
    let mut queue: std::collections::VecDeque<(GapJob, Option<i64>)> = Default::default();
    loop {
        let (job, resume_id) = match queue.pop_front() {
            Some(j) => j,
            None => {
                status.set_state(FeedState::Connected);
                let job = tokio::select! {
                    j = jobs.recv() => j,
                    _ = ctx.shutdown.cancelled() => None,
                };
                match job {
                    Some(j) => (j, None),
                    None => return,
                }
            }
        };
        tracing::debug!(provider = NAME, symbol = %job.symbol, from = ?job.from, to = %job.to, "alpaca: gap job");
        let hold = HoldGuard { holds: &holds, symbol: job.symbol.clone(), id: job.hold };
        // The history lags the stream a little: wait before reading the newest part.
        let lag = chrono::Duration::from_std(cfg.gap_delay).unwrap_or_default();
        let wait = (job.to + lag - Utc::now()).to_std().unwrap_or_default();
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = ctx.shutdown.cancelled() => return,
            }
        }
        let from = match job.from {
            GapFrom::At(t) => t,
            GapFrom::NewestStored => {
                let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
                // Not the newest stored trade now: this process's own live trades are stored
                // meanwhile, and the gap lies before them.
                let before = live_since_of(&live_since, &job.symbol).map_or(job.to, |t| t.min(job.to));
                let newest = loop {
                    match store.newest_tick(&job.symbol, before).await {
                        Ok(t) => break t,
                        Err(e) => {
                            let wait = backoff.next_delay();
                            tracing::warn!(provider = NAME, symbol = %job.symbol, error = %format!("{e:#}"),
                                "alpaca: cannot read the newest stored trade; retrying");
                            tokio::select! {
                                _ = tokio::time::sleep(wait) => {}
                                _ = ctx.shutdown.cancelled() => return,
                            }
                        }
                    }
                };
                // Gaps an earlier run left unfinished go first.
                match store.open_loads(&job.symbol, "gap").await {
                    Ok(open) => {
                        let horizon =
                            Utc::now() - chrono::Duration::from_std(cfg.gap_max).unwrap_or_default();
                        for l in open.into_iter().filter(|l| l.to > horizon) {
                            let from = l.done_until.unwrap_or(l.from);
                            tracing::info!(provider = NAME, symbol = %job.symbol, %from, to = %l.to,
                                "alpaca: resuming a gap load an earlier run left unfinished");
                            queue.push_back((
                                GapJob { from: GapFrom::At(from), to: l.to, hold: None, ..job.clone() },
                                Some(l.id),
                            ));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(provider = NAME, error = %format!("{e:#}"), "alpaca: cannot read unfinished gap loads")
                    }
                }
                match newest {
                    Some(t) => t,
                    None => {
                        tracing::info!(provider = NAME, symbol = %job.symbol,
                            "alpaca: no stored trades for this symbol; streaming from now (older history: tapeflow-feed backfill)");
                        continue;
                    }
                }
            }
        };
        let horizon = job.to - chrono::Duration::from_std(cfg.gap_max).unwrap_or_default();
        let from = if from < horizon {
            tracing::warn!(provider = NAME, symbol = %job.symbol, gap_from = %from, loaded_from = %horizon,
                "alpaca: gap longer than TAPEFLOW_ALPACA_GAP_MAX_HOURS; loading only its end (the rest: tapeflow-feed backfill)");
            horizon
        } else {
            from
        };
        tracing::debug!(provider = NAME, symbol = %job.symbol, %from, "alpaca: gap start resolved");
        hold.set_start(from);
        if from >= job.to {
            if let Some(id) = resume_id {
                let _ = store.finish(id, 0).await;
            }
            continue;
        }
        let id = match resume_id {
            Some(id) => Some(id),
            None => match store.begin(&job.symbol, "gap", from, job.to).await {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::warn!(provider = NAME, error = %format!("{e:#}"), "alpaca: gap load not recorded (it still runs)");
                    None
                }
            },
        };
        status.set_state(FeedState::Backfilling);
        tracing::info!(provider = NAME, symbol = %job.symbol, %from, to = %job.to, "alpaca: loading a gap from the history");
        let window =
            Window { symbol: job.symbol.clone(), provider_ref: job.provider_ref.clone(), from, to: job.to };
        let mut load = WindowLoad::new(&rest, &ctx, &status, window);
        let mut trades = 0u64;
        let outcome = loop {
            match load.step().await {
                Ok(Some(step)) => {
                    trades = step.trades;
                    if let Some(id) = id {
                        if let Err(e) = store.checkpoint(id, step.done_until, trades as i64).await {
                            tracing::debug!(error = %format!("{e:#}"), "alpaca: gap resume point not recorded");
                        }
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        match outcome {
            Ok(()) => {
                tracing::info!(provider = NAME, symbol = %job.symbol, trades, "alpaca: gap loaded");
                if let Some(id) = id {
                    if let Err(e) = store.finish(id, trades as i64).await {
                        tracing::warn!(error = %format!("{e:#}"), "alpaca: finished gap load not recorded");
                    }
                }
            }
            Err(RestError::Cancelled | RestError::SinkClosed) => return,
            Err(e) => {
                let msg = format!("gap of {} not loaded: {e}", job.symbol);
                tracing::error!(provider = NAME, symbol = %job.symbol, error = %e,
                    "alpaca: gap load failed; it is retried at the next start");
                status.error(&msg);
                status.set_state(FeedState::Failed);
                if let Some(id) = id {
                    let _ = store.failed(id, &msg).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod watermark_tests {
    use super::*;

    fn t(s: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(1_714_989_600 + s as i64, 0).unwrap()
    }

    #[test]
    fn pending_gaps_hold_the_watermark_at_their_start() {
        let holds = Holds::default();
        assert_eq!(holds.watermark("AAPL", t(100)), Some(t(100)), "no gap: what was streamed");
        // A gap whose start is still being looked up: no watermark at all.
        let lookup = holds.add("AAPL", None);
        assert_eq!(holds.watermark("AAPL", t(100)), None);
        assert_eq!(holds.watermark("MSFT", t(100)), Some(t(100)), "other symbols are not held");
        {
            let guard = HoldGuard { holds: &holds, symbol: "AAPL".into(), id: Some(lookup) };
            guard.set_start(t(40));
            assert_eq!(holds.watermark("AAPL", t(100)), Some(t(40)));
            let later = holds.add("AAPL", Some(t(70)));
            assert_eq!(holds.watermark("AAPL", t(100)), Some(t(40)), "the earliest pending start");
            holds.release("AAPL", later);
            // A start after what was streamed does not move the watermark on.
            assert_eq!(holds.watermark("AAPL", t(30)), Some(t(30)));
        } // the job is over, however it ended
        assert_eq!(holds.watermark("AAPL", t(100)), Some(t(100)));
    }
}
