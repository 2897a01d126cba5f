//! The executor core: claims signals, passes them through the risk gates, sends orders
//! through a [`Broker`] exactly once, and records what the broker reports.
//!
//! Exactly once, across crashes and concurrent executors:
//! * a `new` signal is claimed with `FOR UPDATE SKIP LOCKED` (one executor gets it);
//! * a claimed signal is worked on under a session advisory lock on its id, released when
//!   the executor's connection ends, so a crashed executor's signal is picked up by whoever
//!   runs next and never by two at once;
//! * before sending, the order is recorded `pending_submit`; before sending anything for a
//!   claimed signal the broker is asked for the order's client order id (derived from the
//!   signal), and an order found there is adopted instead of sent again;
//! * fills are recorded up to the venue's cumulative filled quantity, so a fill reported by
//!   the stream and again by reconciliation is stored once.

use crate::broker::{
    client_order_id, is_terminal, Broker, BrokerError, BrokerEvent, BrokerOrder, OrderRequest, OrderSide,
    OrderUpdate, Purpose, TERMINAL_SQL,
};
use crate::config::{ExecConfig, Fault};
use crate::records::{self, OrderRow};
use chrono::{DateTime, Utc};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tapeflow_analytics::engine::EngineParams;
use tapeflow_analytics::risk::{check_entry, EntryCheck, Limits, Rejection};
use tapeflow_analytics::sizing::{position_size, SizeInputs};
use tapeflow_db::ListenEvent;
use tokio_postgres::Client;

/// A signal as the executor reads it.
#[derive(Debug, Clone)]
struct Signal {
    id: i64,
    bar: DateTime<Utc>,
    symbol: String,
    strategy: String,
    kind: String,
    side: OrderSide,
    entry: Decimal,
    stop: Option<Decimal>,
    target: Option<Decimal>,
    status: String,
}

const SIGNAL_COLUMNS: &str = "id, bar, symbol, strategy, kind, side, entry, stop, target, status";

impl Signal {
    fn from_row(r: &tokio_postgres::Row) -> Signal {
        Signal {
            id: r.get(0),
            bar: r.get(1),
            symbol: r.get(2),
            strategy: r.get(3),
            kind: r.get(4),
            side: OrderSide::parse(r.get(5)).unwrap_or(OrderSide::Buy),
            entry: r.get(6),
            stop: r.get(7),
            target: r.get(8),
            status: r.get(9),
        }
    }
    fn purpose(&self) -> Purpose {
        if self.kind == "entry" {
            Purpose::Entry
        } else {
            Purpose::Exit
        }
    }
}

/// Open orders are also reconciled this often, and at once after the database came back: an
/// update the executor failed to record is not lost.
const RECONCILE_EVERY: Duration = Duration::from_secs(60);

pub struct Executor<B: Broker> {
    cfg: ExecConfig,
    broker: Arc<B>,
    db: Client,
    faulted: std::sync::atomic::AtomicBool,
}

fn f64_of(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

impl<B: Broker> Executor<B> {
    pub async fn connect(cfg: ExecConfig, broker: Arc<B>) -> anyhow::Result<Executor<B>> {
        let db = tapeflow_db::connect(&cfg.database_url, Duration::from_secs(60)).await?;
        Ok(Executor { cfg, broker, db, faulted: Default::default() })
    }

    /// Runs until `shutdown` resolves: LISTEN wakes it, a sweep every `TAPEFLOW_EXEC_SWEEP_MS`
    /// catches what notifications missed, broker updates are recorded as they arrive.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut listen = tapeflow_db::listen(
            self.cfg.database_url.clone(),
            vec!["tapeflow_signals".into(), "tapeflow_risk".into()],
        );
        let mut updates = self.broker.events();
        let mut sweep = tokio::time::interval(self.cfg.sweep);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_reconcile = Instant::now();
        tracing::info!(broker = self.broker.name(), id = %self.cfg.id, "tapeflow-exec running");
        loop {
            let result = tokio::select! {
                _ = &mut shutdown => break,
                ev = listen.recv() => match ev {
                    Some(ListenEvent::Connected) => self.work().await,
                    Some(ListenEvent::Disconnected) => Ok(()),
                    Some(ListenEvent::Notification { channel, .. }) if channel == "tapeflow_risk" => self.enforce_kill_switch().await,
                    Some(ListenEvent::Notification { .. }) => {
                        // One pass serves every notification already queued (a burst of
                        // signals is one statement's worth of notifications).
                        let mut risk = false;
                        while let Ok(ev) = listen.try_recv() {
                            risk |= matches!(ev, ListenEvent::Notification { ref channel, .. } if channel == "tapeflow_risk");
                        }
                        if risk {
                            self.enforce_kill_switch().await?;
                        }
                        self.work().await
                    }
                    None => break,
                },
                ev = updates.recv() => match ev {
                    Some(BrokerEvent::Connected) => self.reconcile().await,
                    Some(BrokerEvent::Update(u)) => self.on_update(&u).await,
                    None => { updates = self.broker.events(); Ok(()) }
                },
                _ = sweep.tick() => {
                    if last_reconcile.elapsed() >= RECONCILE_EVERY {
                        last_reconcile = Instant::now();
                        self.reconcile().await
                    } else {
                        self.sweep().await
                    }
                }
            };
            if let Err(e) = result {
                metrics::counter!("tapeflow_exec_errors_total").increment(1);
                tracing::warn!(error = %format!("{e:#}"), "executor step failed; retrying at the next sweep");
                if self.db.is_closed() {
                    self.db = tapeflow_db::connect(&self.cfg.database_url, Duration::from_secs(3600)).await?;
                    // Updates that failed to record while the database was away are the
                    // broker's to tell again.
                    last_reconcile = Instant::now() - RECONCILE_EVERY;
                }
            }
        }
        tracing::info!("tapeflow-exec stopped");
        Ok(())
    }

    fn fault(&self, at: Fault, signal: i64) {
        fault_point(&self.cfg, &self.faulted, at, signal);
    }

    /// Periodic work: everything notifications may have missed, the kill switch, the account.
    async fn sweep(&mut self) -> anyhow::Result<()> {
        self.enforce_kill_switch().await?;
        self.flatten_at_session_end().await?;
        self.work().await?;
        self.snapshot_account().await
    }

    /// With `risk_limits.flat_at_session_end`, positions opened in a regular session get an
    /// exit signal (origin `session_end`) once that session's last minute has begun, so the
    /// market order goes out before the close.
    async fn flatten_at_session_end(&mut self) -> anyhow::Result<()> {
        let n = self
            .db
            .execute(
                "INSERT INTO tapeflow.signals (bar, symbol, strategy, kind, side, entry, quantity, reason, origin, expires_at)
                 SELECT tapeflow.minute(now()) - interval '1 minute', p.symbol, p.strategy, 'exit',
                        CASE p.side WHEN 'long' THEN 'sell' ELSE 'buy' END, coalesce(p.last_price, p.avg_price),
                        p.quantity, 'flat at session end', 'session_end', now() + interval '1 hour'
                 FROM tapeflow.positions p, tapeflow.risk_limits l
                 WHERE l.flat_at_session_end
                   AND tapeflow.in_regular_session(p.symbol, p.opened_at)
                   AND NOT tapeflow.in_regular_session(p.symbol, now() + interval '1 minute')
                   AND NOT EXISTS (SELECT 1 FROM tapeflow.signals x WHERE x.symbol = p.symbol AND x.strategy = p.strategy
                                   AND x.kind = 'exit' AND x.status IN ('new', 'claimed', 'submitted'))
                 ON CONFLICT DO NOTHING",
                &[],
            )
            .await?;
        if n > 0 {
            tracing::info!(positions = n, "session end: closing positions");
        }
        Ok(())
    }

    /// Expires stale `new` signals, claims the rest, and works every claimed signal.
    pub async fn work(&mut self) -> anyhow::Result<()> {
        let expired = self
            .db
            .execute(
                "UPDATE tapeflow.signals SET status = 'expired', error = 'not claimed before expires_at'
                 WHERE status = 'new' AND expires_at < now()",
                &[],
            )
            .await?;
        if expired > 0 {
            metrics::counter!("tapeflow_exec_signals_total", "outcome" => "expired").increment(expired);
        }
        loop {
            let claimed: Vec<i64> = self
                .db
                .query(
                    "UPDATE tapeflow.signals s SET status = 'claimed', claimed_by = $1
                     FROM (SELECT id FROM tapeflow.signals WHERE status = 'new' ORDER BY id
                           FOR UPDATE SKIP LOCKED LIMIT 50) c
                     WHERE s.id = c.id RETURNING s.id",
                    &[&self.cfg.id],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if claimed.is_empty() {
                break;
            }
            let mut claimed = claimed;
            claimed.sort_unstable();
            for id in claimed {
                metrics::counter!("tapeflow_exec_signals_total", "outcome" => "claimed").increment(1);
                self.fault(Fault::AfterClaim, id);
                self.handle(id, true).await?;
            }
        }
        // Claimed but unfinished: ours from a failed step, or a crashed executor's.
        let pending: Vec<i64> = self
            .db
            .query("SELECT id FROM tapeflow.signals WHERE status = 'claimed' ORDER BY id", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for id in pending {
            self.handle(id, false).await?;
        }
        Ok(())
    }

    /// Works one claimed signal under its advisory lock; `fresh` when this executor has just
    /// claimed it from `new` (nothing can have been sent for it yet).
    async fn handle(&mut self, id: i64, fresh: bool) -> anyhow::Result<()> {
        let locked: bool = self.db.query_one("SELECT pg_try_advisory_lock($1)", &[&id]).await?.get(0);
        if !locked {
            return Ok(()); // another executor is on it
        }
        let started = Instant::now();
        let result = self.handle_locked(id, fresh).await;
        self.db.execute("SELECT pg_advisory_unlock($1)", &[&id]).await?;
        metrics::histogram!("tapeflow_exec_signal_seconds").record(started.elapsed().as_secs_f64());
        result
    }

    async fn handle_locked(&mut self, id: i64, fresh: bool) -> anyhow::Result<()> {
        let sql = format!("SELECT {SIGNAL_COLUMNS} FROM tapeflow.signals WHERE id = $1");
        let Some(sig) = self.db.query_opt(&sql, &[&id]).await?.as_ref().map(Signal::from_row) else {
            return Ok(());
        };
        if sig.status != "claimed" {
            return Ok(());
        }
        let coid = client_order_id(sig.id, sig.purpose());
        // Whatever was sent before a crash is at the broker under its client order id.
        let recorded = records::order_by_client_id(&self.db, &coid).await?;
        let found = if fresh && recorded.is_none() { None } else { self.lookup(&coid).await? };
        if let Some(found) = found {
            tracing::info!(signal = sig.id, %coid, "order found at the broker; adopting it");
            return self.record_ack(&sig, &found, "reconciled").await;
        }
        let req = match recorded {
            // Recorded, never acknowledged: the gates were passed; send the same order.
            Some(row) => request_of(&row, &sig),
            None => match self.decide(&sig).await? {
                Ok(req) => {
                    let tx = self.db.transaction().await?;
                    records::insert_pending(&tx, self.broker.name(), sig.id, &sig.strategy, &req).await?;
                    tx.commit().await?;
                    req
                }
                Err(r) => {
                    tracing::info!(signal = sig.id, symbol = %sig.symbol, code = r.code, reason = %r.message, "signal rejected");
                    metrics::counter!("tapeflow_exec_signals_total", "outcome" => "rejected", "code" => r.code).increment(1);
                    return records::reject_signal(&self.db, sig.id, r.code, &r.message).await;
                }
            },
        };
        self.fault(Fault::BeforeSend, sig.id);
        self.send(&sig, &req).await
    }

    /// Sends with retries; a transient failure is followed by a lookup, since the order may
    /// have reached the venue.
    async fn send(&mut self, sig: &Signal, req: &OrderRequest) -> anyhow::Result<()> {
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=self.cfg.retries {
            let started = Instant::now();
            match self.broker.submit(req).await {
                Ok(order) => {
                    metrics::histogram!("tapeflow_exec_submit_seconds")
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!("tapeflow_exec_orders_submitted_total").increment(1);
                    self.fault(Fault::AfterSend, sig.id);
                    return self.record_ack(sig, &order, "submitted").await;
                }
                Err(BrokerError::Duplicate(_)) => {
                    if let Some(found) = self.lookup(&req.client_order_id).await? {
                        return self.record_ack(sig, &found, "reconciled").await;
                    }
                    anyhow::bail!(
                        "broker refused {} as a duplicate but does not show it",
                        req.client_order_id
                    );
                }
                Err(BrokerError::Rejected { status, message }) => {
                    metrics::counter!("tapeflow_exec_broker_errors_total", "kind" => "rejected").increment(1);
                    let tx = self.db.transaction().await?;
                    if let Some(row) = records::order_by_client_id(&tx, &req.client_order_id).await? {
                        tx.execute(
                            "UPDATE tapeflow.orders SET status = 'rejected', error = $2 WHERE id = $1",
                            &[&row.id, &message],
                        )
                        .await?;
                        let raw = serde_json::json!({ "status": status, "message": message });
                        records::event(&tx, row.id, "rejected", "rejected", &raw).await?;
                    }
                    records::reject_signal(
                        &tx,
                        sig.id,
                        "broker",
                        &format!("broker refused the order ({status}): {message}"),
                    )
                    .await?;
                    tx.commit().await?;
                    return Ok(());
                }
                Err(BrokerError::Transient(e)) => {
                    metrics::counter!("tapeflow_exec_broker_errors_total", "kind" => "transient")
                        .increment(1);
                    tracing::warn!(signal = sig.id, attempt, error = %e, "broker unavailable; looking the order up before retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    if let Ok(Some(found)) = self.broker.order_by_client_id(&req.client_order_id).await {
                        return self.record_ack(sig, &found, "reconciled").await;
                    }
                }
            }
        }
        tracing::warn!(
            signal = sig.id,
            "broker still unavailable; the signal stays claimed for the next sweep"
        );
        Ok(())
    }

    /// The broker's order for a client order id, retrying transient errors; an error after
    /// the retries leaves the signal for the next sweep (nothing may be sent without it).
    async fn lookup(&self, coid: &str) -> anyhow::Result<Option<BrokerOrder>> {
        let mut delay = Duration::from_millis(200);
        for _ in 0..self.cfg.retries {
            match self.broker.order_by_client_id(coid).await {
                Ok(o) => return Ok(o),
                Err(BrokerError::Transient(e)) => {
                    tracing::warn!(%coid, error = %e, "order lookup failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("cannot look up {coid} at the broker")
    }

    /// Records an acknowledged (or found) order, its legs and any fills it already has, and
    /// moves the signal to `submitted` (or further).
    async fn record_ack(&mut self, sig: &Signal, o: &BrokerOrder, how: &str) -> anyhow::Result<()> {
        let broker = self.broker.name();
        let tx = self.db.transaction().await?;
        let row = match records::order_by_client_id(&tx, &o.client_order_id).await? {
            Some(row) => row,
            None => {
                let req = OrderRequest {
                    client_order_id: o.client_order_id.clone(),
                    symbol: sig.symbol.clone(),
                    side: o.side,
                    qty: o.qty,
                    purpose: sig.purpose(),
                    take_profit: sig.target,
                    stop_loss: sig.stop,
                    signal_bar: sig.bar,
                };
                records::insert_pending(&tx, broker, sig.id, &sig.strategy, &req).await?
            }
        };
        let status = records::sync_order(&tx, broker, &row, o, how, &o.raw, None).await?;
        for (leg_row, leg) in records::upsert_legs(&tx, broker, &row, &o.legs).await? {
            records::sync_order(&tx, broker, &leg_row, &leg, how, &leg.raw, None).await?;
        }
        fault_point(&self.cfg, &self.faulted, Fault::AfterRecord, sig.id);
        tx.execute(
            "UPDATE tapeflow.signals SET status = 'submitted' WHERE id = $1 AND status = 'claimed'",
            &[&sig.id],
        )
        .await?;
        records::advance_signal(&tx, &row, &status).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The gates and the size of a signal's order, or why not.
    async fn decide(&mut self, sig: &Signal) -> anyhow::Result<Result<OrderRequest, Rejection>> {
        let coid = client_order_id(sig.id, sig.purpose());
        if sig.purpose() == Purpose::Exit {
            return self.decide_exit(sig, coid).await;
        }
        let r = self
            .db
            .query_one(
                "SELECT l.trading_enabled, l.max_positions, l.max_daily_loss_pct, l.max_order_notional, l.price_band_pct,
                        l.allow_short, (extract(epoch FROM l.signal_ttl) * 1e6)::bigint,
                        coalesce(c.params, '{}'), coalesce(c.extended_hours, false),
                        tapeflow.in_regular_session($1, $3), tapeflow.last_price($1), s.tick_size,
                        (SELECT count(*) FROM tapeflow.position_book WHERE qty <> 0)
                          + (SELECT count(*) FROM tapeflow.signals WHERE kind = 'entry' AND status = 'submitted' AND id <> $4)
                          + (SELECT count(*) FROM tapeflow.orders o JOIN tapeflow.signals g ON g.id = o.signal_id
                             WHERE o.leg = 'entry' AND g.status = 'claimed' AND o.signal_id <> $4),
                        (extract(epoch FROM now()) * 1e6)::bigint,
                        EXISTS (SELECT 1 FROM tapeflow.position_book WHERE symbol = $1 AND strategy = $2 AND qty <> 0)
                 FROM tapeflow.risk_limits l
                 JOIN tapeflow.symbols s ON s.symbol = $1
                 LEFT JOIN tapeflow.strategy_configs c ON c.symbol = $1 AND c.strategy = $2",
                &[&sig.symbol, &sig.strategy, &sig.bar, &sig.id],
            )
            .await?;
        let params: EngineParams =
            serde_json::from_value(r.get::<_, serde_json::Value>(7)).unwrap_or_default();
        let st = &params.strategy;
        if r.get::<_, bool>(14) {
            return Ok(Err(Rejection::new(
                "position_open",
                format!("{} already holds a position for {}", sig.symbol, sig.strategy),
            )));
        }
        let account = match self.broker.account().await {
            Ok(a) => a,
            Err(BrokerError::Transient(e)) => anyhow::bail!("broker account unavailable: {e}"),
            Err(e) => return Ok(Err(Rejection::new("broker", format!("account: {e}")))),
        };
        let day_start = self.day_start_equity(account.equity).await?;
        let max_loss = Decimal::from_f64(st.max_daily_loss_pct).unwrap_or(Decimal::ONE_HUNDRED);
        let limits = Limits {
            trading_enabled: r.get(0),
            max_positions: (r.get::<_, i32>(1) as u32).min(st.max_positions),
            max_daily_loss_pct: r.get::<_, Decimal>(2).min(max_loss),
            price_band_pct: r.get(4),
            allow_short: r.get(5),
            signal_ttl_us: r.get(6),
        };
        let entry = f64_of(sig.entry);
        let check = EntryCheck {
            now: r.get(13),
            signal_bar: sig.bar.timestamp_micros(),
            short: sig.side == OrderSide::Sell,
            in_session: r.get::<_, Option<bool>>(9).unwrap_or(false),
            extended_hours: r.get(8),
            open_positions: r.get::<_, i64>(12) as u32,
            day_start_equity: day_start,
            equity: account.equity,
            entry,
            last_trade: r.get(10),
            account_blocked: account.blocked,
        };
        if let Err(rej) = check_entry(&limits, &check) {
            return Ok(Err(rej));
        }
        let tick_size: f64 = r.get(11);
        let size = SizeInputs {
            equity: account.equity,
            risk_pct: st.risk_per_trade_pct,
            entry,
            stop: sig.stop.map(f64_of),
            cost_per_share: self.broker.cost_per_share(entry, tick_size, sig.side == OrderSide::Buy),
            available: account.buying_power,
            max_notional: Some(r.get(3)),
        };
        let qty = match position_size(&size) {
            Ok(q) => q,
            Err(b) => {
                let msg = format!(
                    "no whole share within the limits: equity {}, risk {}%, entry {entry}, stop {:?}, buying power {}, max notional {}",
                    account.equity.round_dp(2), st.risk_per_trade_pct, sig.stop, account.buying_power.round_dp(2),
                    size.max_notional.unwrap_or_default()
                );
                return Ok(Err(Rejection::new(b.code(), msg)));
            }
        };
        Ok(Ok(OrderRequest {
            client_order_id: coid,
            symbol: sig.symbol.clone(),
            side: sig.side,
            qty: Decimal::from(qty),
            purpose: Purpose::Entry,
            take_profit: sig.target,
            stop_loss: sig.stop,
            signal_bar: sig.bar,
        }))
    }

    /// An exit closes the position it refers to: its open bracket legs are cancelled first
    /// (they hold the shares at the venue), then a market order for the whole quantity.
    async fn decide_exit(
        &mut self,
        sig: &Signal,
        coid: String,
    ) -> anyhow::Result<Result<OrderRequest, Rejection>> {
        let pos = self
            .db
            .query_opt(
                "SELECT qty, entry_signal FROM tapeflow.position_book WHERE symbol = $1 AND strategy = $2 AND qty <> 0",
                &[&sig.symbol, &sig.strategy],
            )
            .await?;
        let Some(pos) = pos else {
            return Ok(Err(Rejection::new(
                "no_position",
                format!("{} holds no position for {}", sig.symbol, sig.strategy),
            )));
        };
        let (qty, entry_signal): (Decimal, Option<i64>) = (pos.get(0), pos.get(1));
        let side = if qty > Decimal::ZERO { OrderSide::Sell } else { OrderSide::Buy };
        if side != sig.side {
            return Ok(Err(Rejection::new(
                "no_position",
                format!("the {} position cannot be closed by a {}", sig.symbol, sig.side.as_str()),
            )));
        }
        if let Some(entry_signal) = entry_signal {
            self.cancel_open_legs(entry_signal).await?;
        }
        Ok(Ok(OrderRequest {
            client_order_id: coid,
            symbol: sig.symbol.clone(),
            side,
            qty: qty.abs(),
            purpose: Purpose::Exit,
            take_profit: None,
            stop_loss: None,
            signal_bar: sig.bar,
        }))
    }

    /// Cancels the bracket legs of an entry and waits (up to 10 s) until the broker shows
    /// them ended.
    async fn cancel_open_legs(&mut self, entry_signal: i64) -> anyhow::Result<()> {
        let sql = format!(
            "SELECT {} FROM tapeflow.orders WHERE signal_id = $1 AND leg IN ('take_profit', 'stop_loss')
               AND status NOT IN {TERMINAL_SQL}",
            records::ORDER_COLUMNS
        );
        let legs: Vec<OrderRow> =
            self.db.query(&sql, &[&entry_signal]).await?.iter().map(OrderRow::from_row).collect();
        for leg in &legs {
            if let Some(bid) = &leg.broker_order_id {
                self.broker.cancel(bid).await?;
                records::event(
                    &self.db,
                    leg.id,
                    "cancel_requested",
                    &leg.status,
                    &serde_json::json!({ "reason": "exit" }),
                )
                .await?;
            }
        }
        let parent = client_order_id(entry_signal, Purpose::Entry);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !legs.is_empty() && Instant::now() < deadline {
            if let Some(p) = self.broker.order_by_client_id(&parent).await? {
                if p.legs.iter().all(|l| is_terminal(&l.status)) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Records one broker update: an event row, the order's state, and any fill.
    async fn on_update(&mut self, u: &OrderUpdate) -> anyhow::Result<()> {
        let broker = self.broker.name();
        let row = records::find_order(&self.db, broker, &u.order).await?;
        let Some(row) = row else {
            metrics::counter!("tapeflow_exec_unknown_updates_total").increment(1);
            tracing::warn!(broker_id = %u.order.broker_id, coid = %u.order.client_order_id, event = %u.event,
                "update for an order we have no record of; reconciliation will pick it up");
            return Ok(());
        };
        if u.fill.is_some() {
            self.fault(Fault::OnFill, row.signal_id);
            metrics::counter!("tapeflow_exec_fills_total").increment(1);
        }
        let tx = self.db.transaction().await?;
        let status =
            records::sync_order(&tx, broker, &row, &u.order, &u.event, &u.raw, u.fill.as_ref()).await?;
        records::advance_signal(&tx, &row, &status).await?;
        tx.commit().await?;
        Ok(())
    }

    /// After a (re)connect of the broker's stream: every order we hold open is looked up and
    /// brought up to date (fills missed while away are recorded), positions are compared,
    /// and claimed signals are worked.
    pub async fn reconcile(&mut self) -> anyhow::Result<()> {
        metrics::counter!("tapeflow_exec_reconciliations_total").increment(1);
        let broker = self.broker.name();
        let sql = format!(
            "SELECT {} FROM tapeflow.orders WHERE broker = $1 AND parent_id IS NULL
               AND (status NOT IN {TERMINAL_SQL}
                    OR id IN (SELECT parent_id FROM tapeflow.orders WHERE broker = $1 AND parent_id IS NOT NULL
                              AND status NOT IN {TERMINAL_SQL}))
             ORDER BY id",
            records::ORDER_COLUMNS
        );
        let open: Vec<OrderRow> =
            self.db.query(&sql, &[&broker]).await?.iter().map(OrderRow::from_row).collect();
        for row in open {
            let Some(o) = self.lookup(&row.client_order_id).await? else { continue };
            let tx = self.db.transaction().await?;
            let status = records::sync_order(&tx, broker, &row, &o, "reconciled", &o.raw, None).await?;
            records::advance_signal(&tx, &row, &status).await?;
            for (leg_row, leg) in records::upsert_legs(&tx, broker, &row, &o.legs).await? {
                let s =
                    records::sync_order(&tx, broker, &leg_row, &leg, "reconciled", &leg.raw, None).await?;
                records::advance_signal(&tx, &leg_row, &s).await?;
            }
            tx.commit().await?;
        }
        self.compare_positions().await?;
        // Open orders at the broker that we hold no record of (placed by hand, or by an
        // executor whose database was lost) are reported, never touched.
        let unknown = {
            let mut n = 0u64;
            for o in self.broker.open_orders().await? {
                if records::order_by_client_id(&self.db, &o.client_order_id).await?.is_none() {
                    n += 1;
                    tracing::warn!(coid = %o.client_order_id, symbol = %o.symbol, "open broker order unknown to tapeflow");
                }
            }
            n
        };
        metrics::gauge!("tapeflow_exec_unknown_broker_orders").set(unknown as f64);
        self.sweep().await
    }

    async fn compare_positions(&mut self) -> anyhow::Result<()> {
        let venue = self.broker.positions().await?;
        let ours = self
            .db
            .query(
                "SELECT symbol, sum(qty) FROM tapeflow.position_book GROUP BY symbol HAVING sum(qty) <> 0",
                &[],
            )
            .await?;
        let mut mismatches = 0u64;
        for r in &ours {
            let (symbol, qty): (String, Decimal) = (r.get(0), r.get(1));
            let theirs = venue.iter().find(|p| p.symbol == symbol).map(|p| p.qty).unwrap_or_default();
            if theirs != qty {
                mismatches += 1;
                tracing::warn!(%symbol, ours = %qty, broker = %theirs, "position differs from the broker's");
            }
        }
        for p in venue.iter().filter(|p| !ours.iter().any(|r| r.get::<_, String>(0) == p.symbol)) {
            mismatches += 1;
            tracing::warn!(symbol = %p.symbol, broker = %p.qty, "the broker holds a position we have no fills for");
        }
        metrics::gauge!("tapeflow_exec_position_mismatches").set(mismatches as f64);
        Ok(())
    }

    /// With the kill switch off, open entry orders are cancelled (filled entries keep their
    /// bracket legs: the stops stay in force).
    async fn enforce_kill_switch(&mut self) -> anyhow::Result<()> {
        let enabled: bool =
            self.db.query_one("SELECT trading_enabled FROM tapeflow.risk_limits", &[]).await?.get(0);
        if enabled {
            return Ok(());
        }
        let sql = format!(
            "SELECT {} FROM tapeflow.orders WHERE broker = $1 AND leg = 'entry' AND broker_order_id IS NOT NULL
               AND status NOT IN {TERMINAL_SQL}
               AND NOT EXISTS (SELECT 1 FROM tapeflow.order_events e WHERE e.order_id = orders.id AND e.event = 'cancel_requested')",
            records::ORDER_COLUMNS
        );
        let open: Vec<OrderRow> =
            self.db.query(&sql, &[&self.broker.name()]).await?.iter().map(OrderRow::from_row).collect();
        for row in open {
            let bid = row.broker_order_id.clone().unwrap_or_default();
            tracing::info!(coid = %row.client_order_id, "kill switch: cancelling the open entry");
            self.broker.cancel(&bid).await?;
            records::event(
                &self.db,
                row.id,
                "cancel_requested",
                &row.status,
                &serde_json::json!({ "reason": "kill_switch" }),
            )
            .await?;
        }
        Ok(())
    }

    /// The day's starting equity: the first snapshot of the UTC day.
    async fn day_start_equity(&mut self, equity: Decimal) -> anyhow::Result<Decimal> {
        let day = "(now() AT TIME ZONE 'UTC')::date";
        let sql =
            format!("SELECT start_equity FROM tapeflow.account_snapshots WHERE broker = $1 AND day = {day}");
        if let Some(r) = self.db.query_opt(&sql, &[&self.broker.name()]).await? {
            return Ok(r.get(0));
        }
        let r = self
            .db
            .query_one(
                &format!(
                    "INSERT INTO tapeflow.account_snapshots (broker, day, start_equity, equity, cash, buying_power)
                     VALUES ($1, {day}, $2, $2, 0, 0)
                     ON CONFLICT (broker, day) DO UPDATE SET broker = EXCLUDED.broker RETURNING start_equity"
                ),
                &[&self.broker.name(), &equity],
            )
            .await?;
        Ok(r.get(0))
    }

    async fn snapshot_account(&mut self) -> anyhow::Result<()> {
        let a = match self.broker.account().await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "account snapshot skipped");
                return Ok(());
            }
        };
        self.db
            .execute(
                "INSERT INTO tapeflow.account_snapshots (broker, day, start_equity, equity, cash, buying_power, realised_pnl, unrealised_pnl)
                 SELECT $1, (now() AT TIME ZONE 'UTC')::date, $2, $2, $3, $4,
                        (SELECT coalesce(sum(realised_pnl), 0) FROM tapeflow.position_book),
                        (SELECT coalesce(sum(unrealised_pnl), 0) FROM tapeflow.positions)
                 ON CONFLICT (broker, day) DO UPDATE SET equity = EXCLUDED.equity, cash = EXCLUDED.cash,
                        buying_power = EXCLUDED.buying_power, realised_pnl = EXCLUDED.realised_pnl,
                        unrealised_pnl = EXCLUDED.unrealised_pnl, updated_at = now()",
                &[&self.broker.name(), &a.equity, &a.cash, &a.buying_power],
            )
            .await?;
        metrics::gauge!("tapeflow_exec_equity").set(f64_of(a.equity));
        Ok(())
    }
}

/// The request of an order recorded before a crash (the same order, the same client id).
fn request_of(row: &OrderRow, sig: &Signal) -> OrderRequest {
    OrderRequest {
        client_order_id: row.client_order_id.clone(),
        symbol: row.symbol.clone(),
        side: OrderSide::parse(&row.side).unwrap_or(sig.side),
        qty: row.qty,
        purpose: if row.purpose == "entry" { Purpose::Entry } else { Purpose::Exit },
        take_profit: row.limit_price,
        stop_loss: row.stop_price,
        signal_bar: sig.bar,
    }
}

/// Kills the process with SIGKILL at `at` when `TAPEFLOW_EXEC_FAULT` names it (once).
fn fault_point(cfg: &ExecConfig, faulted: &std::sync::atomic::AtomicBool, at: Fault, signal: i64) {
    use std::sync::atomic::Ordering;
    if cfg.fault == Some(at)
        && cfg.fault_signal.is_none_or(|s| s == signal)
        && !faulted.swap(true, Ordering::SeqCst)
    {
        tracing::warn!(?at, signal, "fault injection: killing the executor");
        // SIGKILL: nothing is flushed or cleaned up, as in a real crash.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}
