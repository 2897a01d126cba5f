//! The CLOB market channel: routed tokens spread over shards of at most
//! `TAPEFLOW_POLYMARKET_ASSETS_PER_CONNECTION`, one WebSocket session after another per shard
//! (backoff with jitter between them), a full book per token.
//!
//! A session subscribes its tokens (`{"assets_ids": [...], "type": "market",
//! "custom_feature_enabled": true}`), follows routing with `"operation": "subscribe" |
//! "unsubscribe"` messages, sends the text `PING` every `TAPEFLOW_POLYMARKET_PING_MS`, and gives
//! up on a connection silent for three of those. Each token waits for its `book` snapshot before
//! anything of it is used; after a reconnect every token waits for a fresh one.
//!
//! A book is re-snapshotted (unsubscribed and subscribed again, its row in
//! `tapeflow.polymarket_books` deleted meanwhile) instead of being used when it cannot be
//! trusted: a snapshot whose hash is not the hash of its levels, a `price_change` whose
//! `best_bid`/`best_ask` differ from our top after applying it, a `best_bid_ask` that disagrees
//! for longer than `TAPEFLOW_POLYMARKET_DIVERGENCE_GRACE_MS`, a message older than the last one
//! applied (out-of-order delivery: what it changed may be missing), or an entry that cannot be
//! applied. Repeated failures of one token back off (1 s doubling to 60 s).
//!
//! Trades: `last_trade_price` carries no trade id, so the id is made of its timestamp, taker
//! side, price and size (and the transaction hash when sent), with an occurrence count for
//! identical trades between two snapshots of the token: a message sent again after a
//! (re)subscription (a replay after a reconnect or a re-snapshot) gets the same id and time, so
//! the writer stores it once. Trades made while disconnected are not
//! recovered: the market channel offers no replay.

use super::frames::{self, BookMsg, LastTrade, MarketEvent, NewMarket, PriceChangeMsg, TakerSide};
use super::store::{self, BookRow, DbOp};
use super::{discovery, PolymarketConfig, NAME};
use crate::provider::{FeedCtx, Instrument, QuoteRow, Record, TickRow};
use crate::status::{ConnStatus, FeedState};
use futures_util::{SinkExt, StreamExt};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tapeflow_analytics::polymarket::book::{Applied, Book, BookSide, PriceChange};
use tapeflow_db::backoff::Backoff;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A shard's tokens: token id → symbol.
pub type Assets = BTreeMap<String, String>;

pub async fn run(
    cfg: Arc<PolymarketConfig>,
    ctx: FeedCtx,
    mut instruments: watch::Receiver<Vec<Instrument>>,
) -> anyhow::Result<()> {
    let stop = ctx.shutdown.child_token();
    let (db, writer) = store::spawn_writer(ctx.database_url.clone(), cfg.book_every, stop.clone());
    let (new_tx, new_rx) = mpsc::unbounded_channel::<NewMarket>();
    let discovery = cfg.discover.then(|| tokio::spawn(discovery::run(cfg.clone(), ctx.clone(), new_rx)));
    let mut assignment: Vec<Assets> = Vec::new();
    let mut shards: Vec<(watch::Sender<Assets>, tokio::task::JoinHandle<()>)> = Vec::new();
    loop {
        let wanted = wanted(&instruments.borrow_and_update());
        rebalance(&mut assignment, &wanted, cfg.assets_per_connection);
        for (i, set) in assignment.iter().enumerate() {
            match shards.get(i) {
                Some((tx, _)) => {
                    tx.send_if_modified(|cur| {
                        let changed = cur != set;
                        if changed {
                            cur.clone_from(set);
                        }
                        changed
                    });
                }
                None => {
                    let (tx, rx) = watch::channel(set.clone());
                    let shard = Shard {
                        index: i,
                        cfg: cfg.clone(),
                        ctx: ctx.clone(),
                        stop: stop.clone(),
                        db: db.clone(),
                        new_markets: new_tx.clone(),
                    };
                    shards.push((tx, tokio::spawn(shard.run(rx))));
                }
            }
        }
        tracing::debug!(
            provider = NAME,
            tokens = wanted.len(),
            shards = shards.len(),
            "polymarket: tokens assigned"
        );
        tokio::select! {
            changed = instruments.changed() => if changed.is_err() { break },
            _ = ctx.shutdown.cancelled() => break,
        }
    }
    stop.cancel();
    for (_, task) in shards {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    if let Some(d) = discovery {
        let _ = tokio::time::timeout(Duration::from_secs(5), d).await;
    }
    drop(db);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    Ok(())
}

/// The routed tokens: provider_ref (the token id) → symbol.
fn wanted(instruments: &[Instrument]) -> Assets {
    let mut out = Assets::new();
    for i in instruments {
        if let Some(prev) = out.insert(i.provider_ref.clone(), i.symbol.clone()) {
            tracing::warn!(provider = NAME, token = %i.provider_ref, first = %prev, second = %i.symbol,
                "polymarket: two symbols share one token id; the second is fed");
        }
    }
    out
}

/// Spreads `wanted` over shards of at most `cap` tokens, moving no token that stays: gone
/// tokens leave their shard, new ones fill the first shard with room, else a new shard.
pub fn rebalance(shards: &mut Vec<Assets>, wanted: &Assets, cap: usize) {
    let cap = cap.max(1);
    for s in shards.iter_mut() {
        s.retain(|token, _| wanted.contains_key(token));
        for (token, symbol) in s.iter_mut() {
            symbol.clone_from(&wanted[token]);
        }
    }
    let placed: BTreeSet<String> = shards.iter().flat_map(|s| s.keys().cloned()).collect();
    for (token, symbol) in wanted.iter().filter(|(t, _)| !placed.contains(*t)) {
        match shards.iter_mut().find(|s| s.len() < cap) {
            Some(s) => {
                s.insert(token.clone(), symbol.clone());
            }
            None => shards.push(Assets::from([(token.clone(), symbol.clone())])),
        }
    }
}

/// One shard: its sessions, one after another.
struct Shard {
    index: usize,
    cfg: Arc<PolymarketConfig>,
    ctx: FeedCtx,
    stop: CancellationToken,
    db: mpsc::UnboundedSender<DbOp>,
    new_markets: mpsc::UnboundedSender<NewMarket>,
}

/// How a session ended.
enum End {
    Shutdown,
    /// Lost or closed; `snapshots` says whether any book arrived (the connection worked).
    Closed {
        reason: String,
        snapshots: bool,
    },
    /// No tokens left.
    Idle,
}

impl Shard {
    async fn run(self, mut assets: watch::Receiver<Assets>) {
        let status = self.ctx.status.connection(NAME, &format!("stream-{}", self.index));
        let mut backoff = Backoff::new(self.cfg.reconnect_min, self.cfg.reconnect_max);
        let mut reconnecting = false;
        loop {
            if self.stop.is_cancelled() {
                break;
            }
            if assets.borrow().is_empty() {
                status.set_state(FeedState::Stopped);
                status.set_symbols(0);
                tokio::select! {
                    c = assets.changed() => if c.is_err() { break },
                    _ = self.stop.cancelled() => break,
                }
                reconnecting = false;
                continue;
            }
            if reconnecting {
                status.set_state(FeedState::Reconnecting);
                status.reconnect();
            } else {
                status.set_state(FeedState::Connecting);
            }
            let end = Session::new(&self, &status).run(&mut assets).await;
            let wait = match end {
                End::Shutdown => break,
                End::Idle => {
                    reconnecting = false;
                    continue;
                }
                End::Closed { reason, snapshots } => {
                    if snapshots {
                        backoff.reset();
                    }
                    let wait = backoff.next_delay();
                    tracing::warn!(provider = NAME, shard = self.index, url = %self.cfg.ws_url, %reason,
                        retry_in_ms = wait.as_millis() as u64, "polymarket: disconnected; reconnecting (books re-snapshotted)");
                    status.error(format!("disconnected: {reason}"));
                    status.set_state(FeedState::Reconnecting);
                    wait
                }
            };
            reconnecting = true;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.cancelled() => break,
            }
        }
        status.set_state(FeedState::Stopped);
    }
}

/// What one token's book looks like to us.
struct Token {
    symbol: String,
    book: Book,
    /// A snapshot arrived and nothing since made the book doubtful.
    ready: bool,
    /// A (re)subscription was sent at this time and its snapshot has not come.
    awaiting_since: Option<Instant>,
    /// A re-snapshot is to be asked for at this time.
    resubscribe_at: Option<Instant>,
    /// Consecutive failures (mismatches, divergences, timeouts), for the backoff.
    failures: u32,
    /// The top last sent to `tapeflow.quotes`.
    last_top: Option<(Decimal, Decimal, Decimal, Decimal)>,
    /// A `best_bid_ask` disagreed with our top at this time, not yet confirmed either way.
    suspect_since: Option<Instant>,
    /// Occurrences of each trade id at the newest trade time (see [`frames::trade_id`]).
    trade_ms: i64,
    trade_seen: HashMap<String, u32>,
}

impl Token {
    fn new(symbol: String) -> Token {
        Token {
            symbol,
            book: Book::new(),
            ready: false,
            awaiting_since: Some(Instant::now()),
            resubscribe_at: None,
            failures: 0,
            last_top: None,
            suspect_since: None,
            trade_ms: i64::MIN,
            trade_seen: HashMap::new(),
        }
    }
}

/// The delay before the n-th consecutive re-snapshot of a token: none for the first, then 1 s
/// doubling up to 60 s.
fn resubscribe_delay(failures: u32) -> Duration {
    if failures <= 1 {
        Duration::ZERO
    } else {
        Duration::from_secs((1u64 << (failures - 2).min(6)).min(60))
    }
}

struct Session<'a> {
    shard: &'a Shard,
    status: &'a ConnStatus,
    tokens: HashMap<String, Token>,
    snapshots: bool,
}

fn subscribe_message(tokens: &[String], initial: bool) -> String {
    if initial {
        json!({"assets_ids": tokens, "type": "market", "custom_feature_enabled": true}).to_string()
    } else {
        json!({"assets_ids": tokens, "operation": "subscribe", "custom_feature_enabled": true}).to_string()
    }
}

fn unsubscribe_message(tokens: &[String]) -> String {
    json!({"assets_ids": tokens, "operation": "unsubscribe"}).to_string()
}

impl<'a> Session<'a> {
    fn new(shard: &'a Shard, status: &'a ConnStatus) -> Session<'a> {
        Session { shard, status, tokens: HashMap::new(), snapshots: false }
    }

    fn cfg(&self) -> &PolymarketConfig {
        &self.shard.cfg
    }

    fn closed(&self, reason: impl Into<String>) -> End {
        End::Closed { reason: reason.into(), snapshots: self.snapshots }
    }

    async fn run(mut self, assets: &mut watch::Receiver<Assets>) -> End {
        let cfg = self.shard.cfg.clone();
        let limit = cfg.max_frame_bytes.saturating_mul(2).max(64 << 20);
        let ws_config = WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
        let connect =
            tokio_tungstenite::connect_async_with_config(cfg.ws_url.as_str(), Some(ws_config), false);
        let mut ws: Ws = tokio::select! {
            r = tokio::time::timeout(cfg.timeout, connect) => match r {
                Err(_) => return self.closed(format!("connect: no answer within {:?}", cfg.timeout)),
                Ok(Err(e)) => return self.closed(format!("connect: {e}")),
                Ok(Ok((ws, _))) => ws,
            },
            _ = self.shard.stop.cancelled() => return End::Shutdown,
        };
        let initial: Vec<String> = assets.borrow_and_update().keys().cloned().collect();
        for t in &initial {
            let symbol = assets.borrow()[t].clone();
            self.tokens.insert(t.clone(), Token::new(symbol));
        }
        if let Err(e) = ws.send(Message::text(subscribe_message(&initial, true))).await {
            return self.closed(format!("sending the subscription: {e}"));
        }
        self.status.set_state(FeedState::Connected);
        self.status.set_symbols(0);
        tracing::info!(provider = NAME, shard = self.shard.index, tokens = initial.len(), url = %cfg.ws_url,
            "polymarket: connected and subscribed");

        let mut ping = tokio::time::interval(cfg.ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let mut house = tokio::time::interval(Duration::from_millis(100));
        house.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        loop {
            let msg = tokio::select! {
                m = ws.next() => m,
                changed = assets.changed() => {
                    if changed.is_err() {
                        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                        return End::Shutdown;
                    }
                    let now: Assets = assets.borrow_and_update().clone();
                    match self.follow(&mut ws, &now).await {
                        Ok(true) => continue,
                        Ok(false) => {
                            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                            return End::Idle;
                        }
                        Err(e) => return self.closed(e),
                    }
                }
                _ = ping.tick() => {
                    let silent = last_heard.elapsed();
                    if silent > cfg.ping_every * 3 {
                        return self.closed(format!("silent for {silent:?}"));
                    }
                    if let Err(e) = ws.send(Message::text("PING")).await {
                        return self.closed(format!("sending PING: {e}"));
                    }
                    continue;
                }
                _ = house.tick() => {
                    if let Err(e) = self.housekeeping(&mut ws).await {
                        return self.closed(e);
                    }
                    continue;
                }
                _ = self.shard.stop.cancelled() => {
                    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                    return End::Shutdown;
                }
            };
            let msg = match msg {
                None => return self.closed("closed by the server"),
                Some(Err(e)) => return self.closed(e.to_string()),
                Some(Ok(m)) => m,
            };
            last_heard = Instant::now();
            let text = match &msg {
                Message::Text(t) => t.as_str().to_string(),
                Message::Binary(b) => String::from_utf8_lossy(b).into_owned(),
                Message::Close(frame) => return self.closed(format!("closed by the server: {frame:?}")),
                _ => continue,
            };
            if text.len() > cfg.max_frame_bytes {
                self.status.parse_error(
                    &format!(
                        "a frame of {} bytes, more than TAPEFLOW_POLYMARKET_MAX_FRAME_BYTES ({})",
                        text.len(),
                        cfg.max_frame_bytes
                    ),
                    &text,
                );
                continue;
            }
            let events = match frames::parse_frame(&text) {
                Ok((events, bad)) => {
                    for (e, item) in bad {
                        self.status.parse_error(&e, &item);
                    }
                    events
                }
                Err(e) => {
                    self.status.parse_error(&e, &text);
                    continue;
                }
            };
            let mut records = Vec::new();
            for ev in events {
                self.event(ev, &text, &mut records);
            }
            if !records.is_empty() && self.shard.ctx.sink.send_all(records).await.is_err() {
                return End::Shutdown;
            }
        }
    }

    /// Follows routing: unsubscribes gone tokens, subscribes new ones. `Ok(false)` when none is left.
    async fn follow(&mut self, ws: &mut Ws, now: &Assets) -> Result<bool, String> {
        let removed: Vec<String> = self.tokens.keys().filter(|t| !now.contains_key(*t)).cloned().collect();
        let added: Vec<String> = now.keys().filter(|t| !self.tokens.contains_key(*t)).cloned().collect();
        for (t, symbol) in now {
            if let Some(tok) = self.tokens.get_mut(t) {
                tok.symbol.clone_from(symbol);
            }
        }
        if !removed.is_empty() {
            tracing::info!(provider = NAME, shard = self.shard.index, tokens = ?removed, "polymarket: unsubscribing");
            ws.send(Message::text(unsubscribe_message(&removed)))
                .await
                .map_err(|e| format!("sending unsubscribe: {e}"))?;
            for t in &removed {
                self.tokens.remove(t);
            }
        }
        if now.is_empty() {
            return Ok(false);
        }
        if !added.is_empty() {
            tracing::info!(provider = NAME, shard = self.shard.index, tokens = ?added, "polymarket: subscribing");
            ws.send(Message::text(subscribe_message(&added, false)))
                .await
                .map_err(|e| format!("sending subscribe: {e}"))?;
            for t in added {
                let symbol = now[&t].clone();
                self.tokens.insert(t, Token::new(symbol));
            }
        }
        self.update_symbols();
        Ok(true)
    }

    fn update_symbols(&self) {
        self.status.set_symbols(self.tokens.values().filter(|t| t.ready).count());
    }

    /// Re-snapshots what is due, gives up waiting for snapshots that do not come, and turns a
    /// lasting `best_bid_ask` disagreement into a re-snapshot.
    async fn housekeeping(&mut self, ws: &mut Ws) -> Result<(), String> {
        let now = Instant::now();
        let grace = self.cfg().divergence_grace;
        let timeout = self.cfg().snapshot_timeout;
        let mut timed_out = Vec::new();
        for (t, tok) in self.tokens.iter_mut() {
            if tok.suspect_since.is_some_and(|s| now.duration_since(s) >= grace) && tok.ready {
                tracing::warn!(provider = NAME, symbol = %tok.symbol, "polymarket: best_bid_ask kept disagreeing with the book; re-snapshotting");
                tok.suspect_since = None;
                tok.ready = false;
                tok.failures += 1;
                tok.resubscribe_at = Some(now + resubscribe_delay(tok.failures));
                let _ = self.shard.db.send(DbOp::Clear(t.clone()));
            }
            if tok.awaiting_since.is_some_and(|s| now.duration_since(s) >= timeout) {
                tok.awaiting_since = None;
                tok.failures += 1;
                tok.resubscribe_at = Some(now + resubscribe_delay(tok.failures).max(Duration::from_secs(1)));
                timed_out.push(tok.symbol.clone());
            }
        }
        if !timed_out.is_empty() {
            tracing::warn!(provider = NAME, shard = self.shard.index, symbols = ?timed_out, wait = ?timeout,
                "polymarket: no book snapshot arrived; asking again");
            self.status.error(format!("no book snapshot within {timeout:?} for {}", timed_out.join(", ")));
        }
        let due: Vec<String> = self
            .tokens
            .iter()
            .filter(|(_, tok)| tok.resubscribe_at.is_some_and(|at| at <= now))
            .map(|(t, _)| t.clone())
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        metrics::counter!("tapeflow_polymarket_resnapshots_total").increment(due.len() as u64);
        ws.send(Message::text(unsubscribe_message(&due)))
            .await
            .map_err(|e| format!("sending unsubscribe: {e}"))?;
        ws.send(Message::text(subscribe_message(&due, false)))
            .await
            .map_err(|e| format!("sending subscribe: {e}"))?;
        for t in &due {
            if let Some(tok) = self.tokens.get_mut(t) {
                tok.resubscribe_at = None;
                tok.awaiting_since = Some(now);
            }
        }
        tracing::info!(provider = NAME, shard = self.shard.index, tokens = ?due, "polymarket: re-snapshot asked for");
        self.update_symbols();
        Ok(())
    }

    /// Stops trusting a token's book: its row is deleted and a re-snapshot is scheduled.
    fn distrust(&mut self, token: &str, why: &str) {
        let Some(tok) = self.tokens.get_mut(token) else { return };
        tok.ready = false;
        tok.suspect_since = None;
        tok.failures += 1;
        tok.resubscribe_at = Some(Instant::now() + resubscribe_delay(tok.failures));
        tracing::warn!(provider = NAME, symbol = %tok.symbol, token, %why, failures = tok.failures,
            "polymarket: book not trusted; re-snapshotting");
        self.status.error(format!("{}: {why}; re-snapshotting", tok.symbol));
        metrics::counter!("tapeflow_polymarket_book_distrusted_total").increment(1);
        let _ = self.shard.db.send(DbOp::Clear(token.to_string()));
        self.update_symbols();
    }

    fn event(&mut self, ev: MarketEvent, frame: &str, out: &mut Vec<Record>) {
        let time = match &ev {
            MarketEvent::Book(b) => Some(b.timestamp_ms),
            MarketEvent::PriceChange(p) => Some(p.timestamp_ms),
            MarketEvent::LastTrade(t) => Some(t.timestamp_ms),
            MarketEvent::TickSize(t) => Some(t.timestamp_ms),
            MarketEvent::BestBidAsk(b) => Some(b.timestamp_ms),
            MarketEvent::Resolved(r) => Some(r.timestamp_ms),
            MarketEvent::NewMarket(m) => m.timestamp_ms,
            MarketEvent::Pong => None,
        };
        self.status.message(time.map(frames::time_of));
        match ev {
            MarketEvent::Book(b) => self.book(b, frame, out),
            MarketEvent::PriceChange(p) => self.price_change(p, frame, out),
            MarketEvent::LastTrade(t) => self.trade(t, out),
            MarketEvent::TickSize(t) => {
                let _ = self
                    .shard
                    .db
                    .send(DbOp::TickSize { condition_id: t.market.clone(), tick: t.new_tick_size });
                if let Some(tok) = self.tokens.get_mut(&t.asset_id) {
                    tracing::info!(provider = NAME, symbol = %tok.symbol, old = ?t.old_tick_size, new = %t.new_tick_size,
                        "polymarket: the venue's tick size changed");
                    tok.book.tick_size = Some(t.new_tick_size);
                    if tok.ready {
                        let row = book_row(&t.asset_id, tok);
                        let _ = self.shard.db.send(DbOp::Book(row));
                    }
                }
            }
            MarketEvent::BestBidAsk(b) => {
                let Some(tok) = self.tokens.get_mut(&b.asset_id) else { return };
                if !tok.ready || tok.book.timestamp_ms.is_some_and(|t| b.timestamp_ms < t) {
                    return;
                }
                match tok.book.check_top(b.best_bid, b.best_ask) {
                    Ok(()) => tok.suspect_since = None,
                    Err(d) => {
                        tracing::debug!(provider = NAME, symbol = %tok.symbol, divergence = %d, "polymarket: best_bid_ask disagrees");
                        tok.suspect_since.get_or_insert_with(Instant::now);
                    }
                }
            }
            MarketEvent::NewMarket(m) => {
                tracing::info!(provider = NAME, market = %m.condition_id, slug = ?m.slug, "polymarket: new market listed");
                let _ = self.shard.new_markets.send(m);
            }
            MarketEvent::Resolved(r) => {
                let _ = self.shard.db.send(DbOp::Resolved(r));
            }
            MarketEvent::Pong => {}
        }
    }

    fn book(&mut self, b: BookMsg, frame: &str, out: &mut Vec<Record>) {
        let verify = self.cfg().verify_hash;
        let Some(tok) = self.tokens.get_mut(&b.asset_id) else {
            tracing::debug!(provider = NAME, token = %b.asset_id, "polymarket: book of a token this connection does not hold");
            return;
        };
        let snapshot = match Book::from_snapshot(b.bids, b.asks) {
            Ok(s) => s,
            Err(e) => {
                self.status.parse_error(&format!("book of {}: {e}", tok.symbol), frame);
                self.distrust(&b.asset_id, "unreadable book snapshot");
                return;
            }
        };
        if verify {
            if let Some(h) = &b.hash {
                if let Err(e) = snapshot.verify_hash(&b.market, &b.asset_id, h) {
                    metrics::counter!("tapeflow_polymarket_hash_mismatches_total").increment(1);
                    self.distrust(&b.asset_id, &e.to_string());
                    return;
                }
            }
        }
        if tok.ready && tok.book.timestamp_ms.is_some_and(|t| b.timestamp_ms < t) {
            // An older snapshot than what the book already holds: what followed it is applied.
            tracing::debug!(provider = NAME, symbol = %tok.symbol, "polymarket: stale book snapshot ignored");
            return;
        }
        tok.book.replace(snapshot);
        tok.book.timestamp_ms = Some(b.timestamp_ms);
        tok.book.hash = b.hash;
        if let Some(t) = b.tick_size {
            tok.book.tick_size = Some(t);
        }
        let was_ready = tok.ready;
        tok.ready = true;
        tok.awaiting_since = None;
        tok.resubscribe_at = None;
        tok.suspect_since = None;
        tok.failures = 0;
        // A (re)subscription may send the last trade again: counted afresh, it gets its id again.
        tok.trade_ms = i64::MIN;
        tok.trade_seen.clear();
        self.snapshots = true;
        let row = book_row(&b.asset_id, tok);
        let _ = self.shard.db.send(DbOp::Book(row));
        quote(tok, out);
        if !was_ready {
            self.update_symbols();
        }
    }

    fn price_change(&mut self, p: PriceChangeMsg, frame: &str, out: &mut Vec<Record>) {
        // The entries by token, in order; the top each token's last entry reports.
        type Group = (Vec<PriceChange>, Option<String>, Option<(Option<Decimal>, Option<Decimal>)>);
        let mut groups: Vec<(String, Group)> = Vec::new();
        for e in p.changes {
            let idx = match groups.iter().position(|(t, _)| *t == e.asset_id) {
                Some(i) => i,
                None => {
                    groups.push((e.asset_id.clone(), (Vec::new(), None, None)));
                    groups.len() - 1
                }
            };
            let g = &mut groups[idx].1;
            g.0.push(e.change);
            if e.hash.is_some() {
                g.1 = e.hash;
            }
            if e.best_bid.is_some() || e.best_ask.is_some() {
                g.2 = Some((e.best_bid, e.best_ask));
            }
        }
        for (token, (changes, hash, top)) in groups {
            let Some(tok) = self.tokens.get_mut(&token) else { continue };
            if !tok.ready {
                continue;
            }
            let before = tok.book.clone();
            match tok.book.apply_message(p.timestamp_ms, &changes, hash.as_deref()) {
                Err(e) => {
                    self.status.parse_error(&format!("price_change for {}: {e}", tok.symbol), frame);
                    self.distrust(&token, "a price_change that cannot be applied");
                    continue;
                }
                Ok(Applied::Stale) => {
                    metrics::counter!("tapeflow_polymarket_stale_updates_total").increment(1);
                    self.distrust(&token, "a price_change older than the book (out-of-order delivery)");
                    continue;
                }
                Ok(Applied::Applied) => {}
            }
            if let Some((bid, ask)) = top {
                if let Err(d) = tok.book.check_top(bid, ask) {
                    self.distrust(&token, &format!("diverged from the venue's top ({d})"));
                    continue;
                }
                tok.suspect_since = None;
            }
            if !tok.book.same_levels(&before) || tok.book.hash != before.hash {
                let row = book_row(&token, tok);
                let _ = self.shard.db.send(DbOp::Book(row));
            }
            quote(tok, out);
        }
    }

    fn trade(&mut self, t: LastTrade, out: &mut Vec<Record>) {
        let Some(tok) = self.tokens.get_mut(&t.asset_id) else { return };
        let key = frames::trade_id(&t, 1);
        let occurrence = if t.timestamp_ms > tok.trade_ms {
            tok.trade_ms = t.timestamp_ms;
            tok.trade_seen.clear();
            tok.trade_seen.insert(key, 1);
            1
        } else if t.timestamp_ms == tok.trade_ms {
            let n = tok.trade_seen.entry(key).or_insert(0);
            *n += 1;
            *n
        } else {
            1
        };
        let (side, source) = match t.side {
            Some(TakerSide::Buy) => (b'B', "venue"),
            Some(TakerSide::Sell) => (b'S', "venue"),
            None => (b'N', "none"),
        };
        out.push(Record::Tick(TickRow {
            time: frames::time_of(t.timestamp_ms),
            symbol: tok.symbol.clone(),
            price: t.price.to_f64().unwrap_or(f64::NAN),
            size: t.size.to_f64().unwrap_or(f64::NAN),
            side,
            side_source: source,
            trade_id: frames::trade_id(&t, occurrence),
            exchange: None,
            conditions: None,
        }));
    }
}

fn book_row(token: &str, tok: &Token) -> BookRow {
    let (bid_prices, bid_sizes) = tok.book.columns(BookSide::Bid);
    let (ask_prices, ask_sizes) = tok.book.columns(BookSide::Ask);
    BookRow {
        token_id: token.to_string(),
        bid_prices,
        bid_sizes,
        ask_prices,
        ask_sizes,
        hash: tok.book.hash.clone(),
        tick_size: tok.book.tick_size,
        venue_time: tok.book.timestamp_ms.map(frames::time_of).unwrap_or_else(chrono::Utc::now),
    }
}

/// Queues the token's top of book when it changed. An empty side is written as the venue
/// shows it: bid 0, ask 1, size 0.
fn quote(tok: &mut Token, out: &mut Vec<Record>) {
    let bid = tok.book.best_bid();
    let ask = tok.book.best_ask();
    if bid.is_none() && ask.is_none() {
        tok.last_top = None;
        return;
    }
    let top = (
        bid.map_or(Decimal::ZERO, |l| l.price),
        bid.map_or(Decimal::ZERO, |l| l.size),
        ask.map_or(Decimal::ONE, |l| l.price),
        ask.map_or(Decimal::ZERO, |l| l.size),
    );
    if tok.last_top == Some(top) {
        return;
    }
    tok.last_top = Some(top);
    let f = |d: Decimal| d.to_f64().unwrap_or(0.0);
    out.push(Record::Quote(QuoteRow {
        time: tok.book.timestamp_ms.map(frames::time_of).unwrap_or_else(chrono::Utc::now),
        symbol: tok.symbol.clone(),
        bid: f(top.0),
        bid_size: f(top.1),
        ask: f(top.2),
        ask_size: f(top.3),
        exchange: None,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assets(ids: &[&str]) -> Assets {
        ids.iter().map(|i| (i.to_string(), format!("sym-{i}"))).collect()
    }

    #[test]
    fn shards_fill_up_and_keep_their_tokens() {
        let mut shards = Vec::new();
        rebalance(&mut shards, &assets(&["a", "b", "c", "d", "e"]), 2);
        assert_eq!(shards.len(), 3);
        assert_eq!(shards.iter().map(|s| s.len()).collect::<Vec<_>>(), vec![2, 2, 1]);
        let before = shards.clone();
        // Removing one and adding two: the others stay where they are, the new fill the holes.
        rebalance(&mut shards, &assets(&["a", "c", "d", "e", "f", "g"]), 2);
        for (i, s) in before.iter().enumerate() {
            for t in s.keys().filter(|t| *t != "b") {
                assert!(shards[i].contains_key(t), "{t} moved");
            }
        }
        assert!(shards.iter().all(|s| s.len() <= 2));
        let all: BTreeSet<&String> = shards.iter().flat_map(|s| s.keys()).collect();
        assert_eq!(all.len(), 6);
        // Everything gone: empty shards, none removed.
        rebalance(&mut shards, &Assets::new(), 2);
        assert!(shards.iter().all(|s| s.is_empty()));
        // A renamed symbol follows.
        let mut renamed = assets(&["a"]);
        renamed.insert("a".into(), "new-name".into());
        rebalance(&mut shards, &renamed, 2);
        assert_eq!(shards[0]["a"], "new-name");
    }

    #[test]
    fn resubscribe_backoff() {
        let secs: Vec<u64> = (1..=10).map(|f| resubscribe_delay(f).as_secs()).collect();
        assert_eq!(secs, vec![0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn subscription_messages() {
        let v: serde_json::Value = serde_json::from_str(&subscribe_message(&["1".into()], true)).unwrap();
        assert_eq!(v, json!({"assets_ids": ["1"], "type": "market", "custom_feature_enabled": true}));
        let v: serde_json::Value = serde_json::from_str(&subscribe_message(&["1".into()], false)).unwrap();
        assert_eq!(v["operation"], "subscribe");
        let v: serde_json::Value = serde_json::from_str(&unsubscribe_message(&["1".into()])).unwrap();
        assert_eq!(v, json!({"assets_ids": ["1"], "operation": "unsubscribe"}));
    }

    #[test]
    fn quotes_only_on_top_changes() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let mut tok = Token::new("s".into());
        let mut out = Vec::new();
        quote(&mut tok, &mut out);
        assert!(out.is_empty(), "an empty book has no quote");
        tok.book =
            Book::from_snapshot([tapeflow_analytics::polymarket::book::Level::new(d("0.4"), d("10"))], [])
                .unwrap();
        tok.book.timestamp_ms = Some(1_700_000_000_000);
        quote(&mut tok, &mut out);
        quote(&mut tok, &mut out);
        assert_eq!(out.len(), 1);
        let Record::Quote(q) = &out[0] else { panic!() };
        assert_eq!((q.bid, q.bid_size, q.ask, q.ask_size), (0.4, 10.0, 1.0, 0.0));
        assert_eq!(q.time.timestamp_millis(), 1_700_000_000_000);
    }
}
