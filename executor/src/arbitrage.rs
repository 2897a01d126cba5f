//! The arbitrage loop of tapeflow-exec: trades the opportunities that the database keeps in
//! `tapeflow.arbitrage_opportunities` (announced on `tapeflow_arbitrage`) as paired Polymarket
//! legs — on paper always (the measurement), live as well when configured explicitly.
//!
//! For each new opportunity and mode, under an advisory lock on the opportunity:
//! 1. the risk limits (`tapeflow.arbitrage_limits`, the kill switch of `tapeflow.risk_limits`)
//!    decide: refused (recorded with its code) or a size that fits the capital and exposure
//!    limits;
//! 2. the trade and its legs are recorded BEFORE anything is sent (client order id
//!    `arb-<opportunity>-<mode>-<leg>-entry`; live legs with their signed order and its hash,
//!    the venue's order id);
//! 3. the legs are sent together (paper: walked through the current books in one transaction);
//! 4. legs that filled unequally leave unmatched shares: sold back into the bids (FAK at any
//!    price, `-unwind` legs recorded before sending) or held by configuration; the loss is
//!    recorded (`paper::pnl`);
//! 5. positions are kept per token from the fills and settled when the market resolves.
//!
//! A restart resumes every trade not finished: a live leg recorded but not known to be
//! answered is looked up by its hash, and when the venue has no such order the very same
//! signed order is sent (one hash per leg, so never a second order for a leg). Legs recorded
//! longer ago than `max_age` and never sent are not sent any more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use futures_util::stream::{FuturesUnordered, StreamExt};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tapeflow_analytics::polymarket::arbitrage::Action;
use tapeflow_analytics::polymarket::book::Level;
use tapeflow_analytics::polymarket::fees::FeeSchedule;
use tokio_postgres::{Client, GenericClient, Row};

use crate::broker::polymarket::clob::{sign_leg, Clob, LegSpec, LiveConfig, Posted, SignedOrder};
use crate::broker::polymarket::paper::{self, Filled, OrderType, Taken};
use crate::broker::polymarket::rounding::round_size;
use crate::broker::polymarket::sign::Side;
use crate::broker::BrokerError;
use crate::config::{ExecConfig, Fault};

/// Settings of the loop (the limits themselves are in the database).
#[derive(Debug, Clone)]
pub struct ArbConfig {
    pub database_url: String,
    /// `TAPEFLOW_ARBITRAGE`: run the loop (default on).
    pub enabled: bool,
    pub sweep: Duration,
    /// Live trading (None: paper only).
    pub live: Option<LiveConfig>,
    pub fault: Option<Fault>,
    /// Only fault on this opportunity (`TAPEFLOW_EXEC_FAULT_SIGNAL`).
    pub fault_id: Option<i64>,
}

impl ArbConfig {
    pub fn from_env(exec: &ExecConfig) -> anyhow::Result<ArbConfig> {
        let enabled = match std::env::var("TAPEFLOW_ARBITRAGE").ok().as_deref().map(str::trim) {
            None | Some("") | Some("on") | Some("true") => true,
            Some("off") | Some("false") => false,
            Some(other) => anyhow::bail!("TAPEFLOW_ARBITRAGE={other:?}: on or off"),
        };
        Ok(ArbConfig {
            database_url: exec.database_url.clone(),
            enabled,
            sweep: exec.sweep,
            live: LiveConfig::from_env()?,
            fault: exec.fault,
            fault_id: exec.fault_signal,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Paper,
    Live,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Paper => "paper",
            Mode::Live => "live",
        }
    }
}

/// `tapeflow.arbitrage_limits` with the kill switch.
#[derive(Debug, Clone)]
struct Limits {
    trading_enabled: bool,
    paper_enabled: bool,
    live_enabled: bool,
    min_edge: Decimal,
    max_trade_capital: Decimal,
    max_market_exposure: Decimal,
    max_total_exposure: Decimal,
    hold: bool,
    order_type: OrderType,
    max_age_secs: f64,
}

/// One leg of an opportunity as detected.
#[derive(Debug, Clone)]
struct OppLeg {
    token_id: String,
    side: Action,
    worst_price: Decimal,
}

#[derive(Debug, Clone)]
struct Opp {
    id: i64,
    kind: String,
    market_key: String,
    size: Decimal,
    edge: Decimal,
    notional: Decimal,
    fees: Decimal,
    legs: Vec<OppLeg>,
}

/// What a token's market says about trading it.
#[derive(Debug, Clone)]
struct TokenInfo {
    condition_id: String,
    fees: FeeSchedule,
    tick: Decimal,
    neg_risk: bool,
    min_order: Decimal,
    tradable: bool,
}

#[derive(Debug, Clone)]
struct Trade {
    id: i64,
    opportunity_id: i64,
    mode: Mode,
    kind: String,
    status: String,
    age_secs: f64,
}

#[derive(Debug, Clone)]
struct LegRow {
    id: i64,
    purpose: String,
    leg_index: i16,
    token_id: String,
    condition_id: String,
    side: Action,
    order_type: String,
    limit_price: Option<Decimal>,
    size: Decimal,
    client_order_id: String,
    broker_order_id: Option<String>,
    status: String,
    filled_size: Decimal,
    notional: Decimal,
    fee: Decimal,
    order_hash: Option<String>,
    signed_order: Option<Value>,
    age_secs: f64,
}

const LEG_COLUMNS: &str =
    "id, purpose, leg_index, token_id, coalesce(condition_id, ''), side, order_type, limit_price, size,
    client_order_id, broker_order_id, status, filled_size, notional, fee, order_hash, signed_order,
    extract(epoch FROM now() - created_at)::float8";

impl LegRow {
    fn from_row(r: &Row) -> LegRow {
        LegRow {
            id: r.get(0),
            purpose: r.get(1),
            leg_index: r.get(2),
            token_id: r.get(3),
            condition_id: r.get(4),
            side: if r.get::<_, &str>(5) == "sell" { Action::Sell } else { Action::Buy },
            order_type: r.get(6),
            limit_price: r.get(7),
            size: r.get(8),
            client_order_id: r.get(9),
            broker_order_id: r.get(10),
            status: r.get(11),
            filled_size: r.get(12),
            notional: r.get(13),
            fee: r.get(14),
            order_hash: r.get(15),
            signed_order: r.get(16),
            age_secs: r.get(17),
        }
    }

    fn is_final(&self) -> bool {
        is_final(&self.status)
    }

    fn filled(&self) -> Filled {
        Filled { shares: self.filled_size, notional: self.notional, fee: self.fee, levels: vec![] }
    }
}

/// Leg states after which nothing more can fill.
fn is_final(status: &str) -> bool {
    matches!(status, "filled" | "partially_filled" | "killed" | "rejected" | "expired" | "canceled")
}

fn side_of(a: Action) -> Side {
    match a {
        Action::Buy => Side::Buy,
        Action::Sell => Side::Sell,
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

/// A fill's status from its size.
fn fill_status(filled: Decimal, size: Decimal) -> &'static str {
    if filled <= Decimal::ZERO {
        "killed"
    } else if filled >= size {
        "filled"
    } else {
        "partially_filled"
    }
}

/// A refusal: its code and message.
struct Refusal(&'static str, String);

pub struct Arbitrage {
    cfg: ArbConfig,
    db: Client,
    clob: Option<Arc<Clob>>,
    /// Depth taken by paper fills, per token and book version (its updated_at).
    taken: HashMap<String, (DateTime<Utc>, Taken)>,
    /// Legs re-signed after an order_version_mismatch (once each).
    resigned: std::collections::HashSet<i64>,
    faulted: AtomicBool,
}

impl Arbitrage {
    pub async fn connect(cfg: ArbConfig) -> anyhow::Result<Arbitrage> {
        let clob = match cfg.live.clone() {
            Some(live) => Some(Clob::connect(live).await?),
            None => None,
        };
        let db = tapeflow_db::connect(&cfg.database_url, Duration::from_secs(60)).await?;
        Ok(Arbitrage {
            cfg,
            db,
            clob,
            taken: HashMap::new(),
            resigned: Default::default(),
            faulted: AtomicBool::new(false),
        })
    }

    fn fault(&self, at: Fault, opportunity: i64) {
        if self.cfg.fault == Some(at)
            && self.cfg.fault_id.is_none_or(|id| id == opportunity)
            && !self.faulted.swap(true, Ordering::SeqCst)
        {
            tracing::warn!(?at, opportunity, "fault injection: killing the executor");
            // SIGKILL: nothing is flushed or cleaned up, as in a real crash.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
    }

    /// Runs until `shutdown` resolves: announcements wake it, the sweep catches the rest.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut listen = tapeflow_db::listen(
            self.cfg.database_url.clone(),
            vec!["tapeflow_arbitrage".into(), "tapeflow_risk".into()],
        );
        let mut sweep = tokio::time::interval(self.cfg.sweep);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(
            live = self.clob.is_some(),
            "arbitrage loop running (paper{})",
            if self.clob.is_some() { " and live" } else { "" }
        );
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                ev = listen.recv() => {
                    if ev.is_none() { break }
                    while listen.try_recv().is_ok() {}
                }
                _ = sweep.tick() => {}
            }
            if let Err(e) = self.pass().await {
                metrics::counter!("tapeflow_exec_arbitrage_errors_total").increment(1);
                tracing::warn!(error = %format!("{e:#}"), "arbitrage step failed; retrying at the next sweep");
                if self.db.is_closed() {
                    self.db = tapeflow_db::connect(&self.cfg.database_url, Duration::from_secs(3600)).await?;
                }
            }
        }
        tracing::info!("arbitrage loop stopped");
        Ok(())
    }

    async fn limits(&self) -> anyhow::Result<Limits> {
        let r = self
            .db
            .query_one(
                "SELECT r.trading_enabled, l.paper_enabled, l.live_enabled, l.min_edge, l.max_trade_capital,
                        l.max_market_exposure, l.max_total_exposure, l.leg_risk, l.order_type,
                        extract(epoch FROM l.max_age)::float8
                 FROM tapeflow.arbitrage_limits l, tapeflow.risk_limits r",
                &[],
            )
            .await?;
        Ok(Limits {
            trading_enabled: r.get(0),
            paper_enabled: r.get(1),
            live_enabled: r.get(2),
            min_edge: r.get(3),
            max_trade_capital: r.get(4),
            max_market_exposure: r.get(5),
            max_total_exposure: r.get(6),
            hold: r.get::<_, &str>(7) == "hold",
            order_type: OrderType::parse(r.get(8)).unwrap_or(OrderType::Fok),
            max_age_secs: r.get(9),
        })
    }

    /// One pass: unfinished trades, new opportunities, settlements.
    pub async fn pass(&mut self) -> anyhow::Result<()> {
        let limits = self.limits().await?;
        let mut modes = vec![Mode::Paper];
        if self.clob.is_some() {
            modes.push(Mode::Live);
        }
        for mode in modes {
            let open: Vec<i64> = self
                .db
                .query(
                    "SELECT opportunity_id FROM tapeflow.arbitrage_trades
                     WHERE mode = $1 AND status IN ('pending', 'submitted', 'partial') ORDER BY id",
                    &[&mode.as_str()],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for id in open {
                self.opportunity(id, mode, &limits, false).await?;
            }
            let enabled = match mode {
                Mode::Paper => limits.paper_enabled,
                Mode::Live => limits.live_enabled,
            };
            if !enabled {
                continue;
            }
            let new: Vec<i64> = self
                .db
                .query(
                    "SELECT o.id FROM tapeflow.arbitrage_opportunities o, tapeflow.arbitrage_limits l
                     WHERE o.first_seen >= now() - l.max_age
                       AND NOT EXISTS (SELECT 1 FROM tapeflow.arbitrage_trades t WHERE t.opportunity_id = o.id AND t.mode = $1)
                     ORDER BY o.id LIMIT 100",
                    &[&mode.as_str()],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if new.is_empty() {
                continue;
            }
            // Limits read after the opportunities: a kill switch or limit set before an
            // opportunity appeared is always the one it is gated by.
            let limits = self.limits().await?;
            for id in new {
                self.opportunity(id, mode, &limits, true).await?;
            }
        }
        self.settle().await
    }

    /// Works one opportunity in one mode under its advisory lock.
    async fn opportunity(&mut self, id: i64, mode: Mode, limits: &Limits, fresh: bool) -> anyhow::Result<()> {
        let key = (id % i32::MAX as i64) as i32;
        let locked: bool = self
            .db
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext('tapeflow-arbitrage-' || $1), $2)",
                &[&mode.as_str(), &key],
            )
            .await?
            .get(0);
        if !locked {
            return Ok(());
        }
        let result = self.opportunity_locked(id, mode, limits, fresh).await;
        self.db
            .execute(
                "SELECT pg_advisory_unlock(hashtext('tapeflow-arbitrage-' || $1), $2)",
                &[&mode.as_str(), &key],
            )
            .await?;
        result
    }

    async fn opportunity_locked(
        &mut self,
        id: i64,
        mode: Mode,
        limits: &Limits,
        fresh: bool,
    ) -> anyhow::Result<()> {
        let existing = self.trade_of(id, mode).await?;
        let is_new = existing.is_none();
        let trade = match existing {
            Some(t) => t,
            None => {
                let Some(opp) = self.load_opportunity(id).await? else { return Ok(()) };
                match self.record(&opp, mode, limits).await? {
                    Some(t) => t,
                    None => return Ok(()),
                }
            }
        };
        self.progress(trade, limits, fresh && is_new).await
    }

    async fn trade_of(&self, opportunity: i64, mode: Mode) -> anyhow::Result<Option<Trade>> {
        let r = self
            .db
            .query_opt(
                "SELECT id, opportunity_id, kind, status, extract(epoch FROM now() - created_at)::float8
                 FROM tapeflow.arbitrage_trades WHERE opportunity_id = $1 AND mode = $2",
                &[&opportunity, &mode.as_str()],
            )
            .await?;
        Ok(r.map(|r| Trade {
            id: r.get(0),
            opportunity_id: r.get(1),
            mode,
            kind: r.get(2),
            status: r.get(3),
            age_secs: r.get(4),
        }))
    }

    async fn load_opportunity(&self, id: i64) -> anyhow::Result<Option<Opp>> {
        let Some(r) = self
            .db
            .query_opt(
                "SELECT id, kind, market_key, size, edge, notional, fees, legs FROM tapeflow.arbitrage_opportunities WHERE id = $1",
                &[&id],
            )
            .await?
        else {
            return Ok(None);
        };
        let legs: Value = r.get(7);
        let legs = legs
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| {
                        Some(OppLeg {
                            token_id: l.get("token_id")?.as_str()?.to_string(),
                            side: if l.get("side")?.as_str()? == "sell" { Action::Sell } else { Action::Buy },
                            worst_price: l.get("worst_price")?.as_str()?.parse().ok()?,
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        Ok(Some(Opp {
            id: r.get(0),
            kind: r.get(1),
            market_key: r.get(2),
            size: r.get(3),
            edge: r.get(4),
            notional: r.get(5),
            fees: r.get(6),
            legs,
        }))
    }

    async fn tokens(&self, ids: &[String]) -> anyhow::Result<HashMap<String, TokenInfo>> {
        let rows = self
            .db
            .query(
                "SELECT t.token_id, t.condition_id, m.fee_rate, m.fee_exponent, coalesce(b.tick_size, m.tick_size, 0.01),
                        m.neg_risk, m.min_order_size,
                        m.active AND NOT m.closed AND m.accepting_orders AND m.resolved_at IS NULL
                 FROM tapeflow.polymarket_tokens t
                 JOIN tapeflow.polymarket_markets m ON m.condition_id = t.condition_id
                 LEFT JOIN tapeflow.polymarket_books b ON b.token_id = t.token_id
                 WHERE t.token_id = ANY ($1)",
                &[&ids],
            )
            .await?;
        let mut out = HashMap::new();
        for r in rows {
            let fees = FeeSchedule::new(r.get(2), r.get::<_, i32>(3).max(0) as u32)
                .map_err(|e| anyhow::anyhow!("market {}: {e}", r.get::<_, String>(1)))?;
            out.insert(
                r.get(0),
                TokenInfo {
                    condition_id: r.get(1),
                    fees,
                    tick: r.get(4),
                    neg_risk: r.get(5),
                    min_order: r.get(6),
                    tradable: r.get(7),
                },
            );
        }
        Ok(out)
    }

    /// The risk gates; Ok(size) to trade.
    async fn decide(
        &self,
        opp: &Opp,
        mode: Mode,
        limits: &Limits,
        tokens: &HashMap<String, TokenInfo>,
    ) -> anyhow::Result<Result<Decimal, Refusal>> {
        if !limits.trading_enabled {
            return Ok(Err(Refusal(
                "kill_switch",
                "trading is disabled (risk_limits.trading_enabled)".into(),
            )));
        }
        if opp.legs.len() < 2 {
            return Ok(Err(Refusal("bad_opportunity", format!("{} legs", opp.legs.len()))));
        }
        if mode == Mode::Live && opp.kind == "sell_both" {
            return Ok(Err(Refusal(
                "unsupported",
                "live sell_both needs pairs minted on chain; only paper trading simulates the minting".into(),
            )));
        }
        for l in &opp.legs {
            match tokens.get(&l.token_id) {
                None => {
                    return Ok(Err(Refusal("market_closed", format!("token {} is not known", l.token_id))))
                }
                Some(t) if !t.tradable => {
                    return Ok(Err(Refusal(
                        "market_closed",
                        format!("market {} is closed, resolved or not accepting orders", t.condition_id),
                    )))
                }
                _ => {}
            }
        }
        // Live: the venue's fee parameters must be the ones the edge was computed with.
        if let (Mode::Live, Some(clob)) = (mode, &self.clob) {
            let mut seen = std::collections::HashSet::new();
            for l in &opp.legs {
                let t = &tokens[&l.token_id];
                if !seen.insert(t.condition_id.clone()) {
                    continue;
                }
                if let Some((rate, exponent)) = clob.fee_params(&t.condition_id).await? {
                    if rate != t.fees.rate() || exponent != t.fees.exponent() {
                        return Ok(Err(Refusal(
                            "fee_changed",
                            format!(
                                "market {}: the venue charges rate {rate} exponent {exponent}, the edge was computed with {} and {}",
                                t.condition_id,
                                t.fees.rate(),
                                t.fees.exponent()
                            ),
                        )));
                    }
                }
            }
        }
        if opp.edge < limits.min_edge {
            return Ok(Err(Refusal(
                "min_edge",
                format!("edge {} per share after fees is under the minimum {}", opp.edge, limits.min_edge),
            )));
        }
        // Collateral committed per share: the buy legs' cost and fees, or 1 minted per pair.
        let per_share =
            if opp.kind == "sell_both" { Decimal::ONE } else { (opp.notional + opp.fees) / opp.size };
        let markets: Vec<String> = {
            let mut m: Vec<String> =
                opp.legs.iter().map(|l| tokens[&l.token_id].condition_id.clone()).collect();
            m.sort();
            m.dedup();
            m
        };
        let exposure = |markets: Option<&Vec<String>>| {
            let db = &self.db;
            let mode = mode.as_str();
            let all: Vec<String> = Vec::new();
            let filter = markets.is_some();
            let list = markets.cloned().unwrap_or(all);
            async move {
                let r = db
                    .query_one(
                        "SELECT (SELECT coalesce(sum(cost + fees), 0) FROM tapeflow.polymarket_positions
                                 WHERE mode = $1 AND shares > 0 AND (NOT $2 OR condition_id = ANY ($3)))
                              + (SELECT coalesce(sum(l.size * coalesce(l.limit_price, 1)), 0)
                                 FROM tapeflow.arbitrage_legs l JOIN tapeflow.arbitrage_trades t ON t.id = l.trade_id
                                 WHERE t.mode = $1 AND t.status IN ('pending', 'submitted') AND l.purpose = 'entry'
                                   AND l.side = 'buy' AND l.status = 'pending_submit'
                                   AND (NOT $2 OR l.condition_id = ANY ($3)))",
                        &[&mode, &filter, &list],
                    )
                    .await?;
                anyhow::Ok(r.get::<_, Decimal>(0))
            }
        };
        let market_room = limits.max_market_exposure - exposure(Some(&markets)).await?;
        let total_room = limits.max_total_exposure - exposure(None).await?;
        let caps = [
            ("capital", limits.max_trade_capital),
            ("market_exposure", market_room),
            ("total_exposure", total_room),
        ];
        let mut size = opp.size;
        let mut bound = "";
        for (code, room) in caps {
            let fit = if per_share > Decimal::ZERO {
                round_size(room.max(Decimal::ZERO) / per_share)
            } else {
                size
            };
            if fit < size {
                size = fit;
                bound = code;
            }
        }
        let min =
            opp.legs.iter().map(|l| tokens[&l.token_id].min_order).fold(Decimal::new(1, 2), Decimal::max);
        if size < min {
            let code: &'static str = if bound.is_empty() { "min_size" } else { bound };
            return Ok(Err(Refusal(
                code,
                format!(
                    "{size} shares fit the {code} limit; the market's minimum is {min} (opportunity {})",
                    opp.size
                ),
            )));
        }
        Ok(Ok(size))
    }

    /// Records the trade (refused, or pending with its legs) in one transaction.
    async fn record(&mut self, opp: &Opp, mode: Mode, limits: &Limits) -> anyhow::Result<Option<Trade>> {
        let ids: Vec<String> = opp.legs.iter().map(|l| l.token_id.clone()).collect();
        let tokens = self.tokens(&ids).await?;
        let decision = self.decide(opp, mode, limits, &tokens).await?;
        let version = self.clob.as_ref().map(|c| c.version()).unwrap_or_default();
        let tx = self.db.transaction().await?;
        let (size, status, code, error) = match &decision {
            Ok(size) => (*size, "pending", None, None),
            Err(Refusal(code, msg)) => (opp.size, "rejected", Some(*code), Some(msg.clone())),
        };
        let r = tx
            .query_opt(
                "INSERT INTO tapeflow.arbitrage_trades (opportunity_id, mode, kind, market_key, status, planned_size,
                                                        planned_edge, planned_profit, reject_code, error, closed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7::numeric * $6::numeric, $8, $9, CASE WHEN $5::text = 'rejected' THEN now() END)
                 ON CONFLICT (opportunity_id, mode) DO NOTHING RETURNING id",
                &[&opp.id, &mode.as_str(), &opp.kind, &opp.market_key, &status, &size, &opp.edge, &code, &error],
            )
            .await?;
        let Some(r) = r else {
            return Ok(None); // another executor recorded it
        };
        let trade_id: i64 = r.get(0);
        if let Err(Refusal(code, msg)) = &decision {
            tx.commit().await?;
            metrics::counter!("tapeflow_exec_arbitrage_trades_total", "mode" => mode.as_str(), "outcome" => "rejected").increment(1);
            tracing::info!(opportunity = opp.id, mode = mode.as_str(), code, reason = %msg, "arbitrage refused");
            return Ok(None);
        }
        let timestamp = now_ms();
        for (i, leg) in opp.legs.iter().enumerate() {
            let t = &tokens[&leg.token_id];
            let coid = format!("arb-{}-{}-{i}-entry", opp.id, mode.as_str());
            let signed = match (mode, &self.clob) {
                (Mode::Live, Some(clob)) => Some(sign_leg(
                    clob.config(),
                    &LegSpec {
                        client_order_id: &coid,
                        token_id: &leg.token_id,
                        side: side_of(leg.side),
                        shares: size,
                        limit: leg.worst_price,
                        tick: t.tick,
                        neg_risk: t.neg_risk,
                    },
                    &version,
                    timestamp,
                )?),
                _ => None,
            };
            insert_leg(
                &tx,
                trade_id,
                "entry",
                i as i16,
                &leg.token_id,
                &t.condition_id,
                leg.side,
                limits.order_type.as_str(),
                Some(leg.worst_price),
                size,
                &coid,
                signed.as_ref(),
            )
            .await?;
        }
        tx.commit().await?;
        metrics::counter!("tapeflow_exec_arbitrage_trades_total", "mode" => mode.as_str(), "outcome" => "recorded").increment(1);
        tracing::info!(opportunity = opp.id, trade = trade_id, mode = mode.as_str(), kind = %opp.kind, %size, "arbitrage recorded");
        self.fault(Fault::ArbAfterRecord, opp.id);
        Ok(Some(Trade {
            id: trade_id,
            opportunity_id: opp.id,
            mode,
            kind: opp.kind.clone(),
            status: "pending".into(),
            age_secs: 0.0,
        }))
    }

    async fn legs(&self, trade: i64) -> anyhow::Result<Vec<LegRow>> {
        let sql = format!("SELECT {LEG_COLUMNS} FROM tapeflow.arbitrage_legs WHERE trade_id = $1 ORDER BY purpose, leg_index");
        Ok(self.db.query(&sql, &[&trade]).await?.iter().map(LegRow::from_row).collect())
    }

    /// Moves a trade on until it waits for the venue or is done.
    async fn progress(&mut self, mut trade: Trade, limits: &Limits, fresh: bool) -> anyhow::Result<()> {
        for _ in 0..4 {
            let legs = self.legs(trade.id).await?;
            let (entries, unwinds): (Vec<LegRow>, Vec<LegRow>) =
                legs.into_iter().partition(|l| l.purpose == "entry");
            match trade.status.as_str() {
                "pending" | "submitted" => {
                    let open: Vec<LegRow> = entries.iter().filter(|l| !l.is_final()).cloned().collect();
                    if !open.is_empty() {
                        let done = self.run_legs(&trade, open, limits, fresh).await?;
                        if !done {
                            return Ok(()); // the venue has yet to answer
                        }
                    } else {
                        self.after_entries(&trade, &entries, limits).await?;
                    }
                }
                "partial" => {
                    let open: Vec<LegRow> = unwinds.iter().filter(|l| !l.is_final()).cloned().collect();
                    if !open.is_empty() {
                        if !self.run_legs(&trade, open, limits, fresh).await? {
                            return Ok(());
                        }
                    } else {
                        self.finalize(&trade, &entries, &unwinds).await?;
                    }
                }
                _ => return Ok(()),
            }
            match self.trade_of(trade.opportunity_id, trade.mode).await? {
                Some(t) => trade = t,
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// Every entry has its outcome: unwind unmatched shares (or hold them), else finish.
    async fn after_entries(
        &mut self,
        trade: &Trade,
        entries: &[LegRow],
        limits: &Limits,
    ) -> anyhow::Result<()> {
        let action = if trade.kind == "sell_both" { Action::Sell } else { Action::Buy };
        let shares: Vec<Decimal> = entries.iter().map(|l| l.filled_size).collect();
        let (_, excess) = paper::unmatched(action, &shares);
        let sellable: Vec<(usize, Decimal)> = excess
            .iter()
            .enumerate()
            .map(|(i, &x)| (i, round_size(x)))
            .filter(|(_, x)| *x > Decimal::ZERO)
            .collect();
        let nothing_filled = shares.iter().all(|s| s.is_zero());
        if limits.hold || sellable.is_empty() || nothing_filled {
            return self.finalize(trade, entries, &[]).await;
        }
        let ids: Vec<String> = entries.iter().map(|l| l.token_id.clone()).collect();
        let tokens = self.tokens(&ids).await?;
        let tx = self.db.transaction().await?;
        for (i, x) in sellable {
            let e = &entries[i];
            let coid = format!("arb-{}-{}-{}-unwind", trade.opportunity_id, trade.mode.as_str(), e.leg_index);
            let tick = tokens.get(&e.token_id).map(|t| t.tick).unwrap_or(Decimal::new(1, 2));
            let signed = match (trade.mode, &self.clob) {
                (Mode::Live, Some(clob)) => Some(sign_leg(
                    clob.config(),
                    &LegSpec {
                        client_order_id: &coid,
                        token_id: &e.token_id,
                        side: Side::Sell,
                        shares: x,
                        // Any price: the lowest the venue takes.
                        limit: tick,
                        tick,
                        neg_risk: tokens.get(&e.token_id).is_some_and(|t| t.neg_risk),
                    },
                    &clob.version(),
                    now_ms(),
                )?),
                _ => None,
            };
            let limit = (trade.mode == Mode::Live).then_some(tick);
            insert_leg(
                &tx,
                trade.id,
                "unwind",
                e.leg_index,
                &e.token_id,
                &e.condition_id,
                Action::Sell,
                "FAK",
                limit,
                x,
                &coid,
                signed.as_ref(),
            )
            .await?;
        }
        tx.execute(
            "UPDATE tapeflow.arbitrage_trades SET status = 'partial', updated_at = now() WHERE id = $1",
            &[&trade.id],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            trade = trade.id,
            mode = trade.mode.as_str(),
            "one-legged fill: unwinding the unmatched shares"
        );
        Ok(())
    }

    /// Runs legs not yet final; true when all of them are final afterwards.
    async fn run_legs(
        &mut self,
        trade: &Trade,
        legs: Vec<LegRow>,
        limits: &Limits,
        fresh: bool,
    ) -> anyhow::Result<bool> {
        match trade.mode {
            Mode::Paper => {
                self.paper_legs(trade, &legs, limits).await?;
                Ok(true)
            }
            Mode::Live => self.live_legs(trade, legs, limits, fresh).await,
        }
    }

    /// Paper: every leg walks the current book now, in one transaction.
    async fn paper_legs(&mut self, trade: &Trade, legs: &[LegRow], limits: &Limits) -> anyhow::Result<()> {
        let ids: Vec<String> = legs.iter().map(|l| l.token_id.clone()).collect();
        let tokens = self.tokens(&ids).await?;
        let stale = trade.age_secs > limits.max_age_secs;
        let tx = self.db.transaction().await?;
        for leg in legs {
            if stale && leg.purpose == "entry" {
                tx.execute(
                    "UPDATE tapeflow.arbitrage_legs SET status = 'expired', error = 'recorded but not sent within max_age', updated_at = now() WHERE id = $1",
                    &[&leg.id],
                )
                .await?;
                continue;
            }
            let fees = tokens.get(&leg.token_id).map(|t| t.fees).unwrap_or_default();
            let book = tx
                .query_opt(
                    "SELECT bid_prices, bid_sizes, ask_prices, ask_sizes, updated_at FROM tapeflow.polymarket_books WHERE token_id = $1",
                    &[&leg.token_id],
                )
                .await?;
            let (levels, version) = match &book {
                Some(r) => {
                    let (p, s) = if leg.side == Action::Buy { (2, 3) } else { (0, 1) };
                    let prices: Vec<Decimal> = r.get(p);
                    let sizes: Vec<Decimal> = r.get(s);
                    (
                        prices.into_iter().zip(sizes).map(|(p, s)| Level::new(p, s)).collect::<Vec<_>>(),
                        r.get::<_, DateTime<Utc>>(4),
                    )
                }
                None => (Vec::new(), Utc::now()),
            };
            let slot = self.taken.entry(leg.token_id.clone()).or_insert_with(|| (version, Taken::new()));
            if slot.0 != version {
                *slot = (version, Taken::new());
            }
            let order_type = OrderType::parse(&leg.order_type).unwrap_or(OrderType::Fok);
            let f = paper::walk(leg.side, &levels, &mut slot.1, leg.size, leg.limit_price, order_type, fees)?;
            let status = fill_status(f.shares, leg.size);
            let raw = json!({ "paper": true, "levels": f.levels.iter().map(|l| json!({"price": l.price.to_string(), "size": l.size.to_string()})).collect::<Vec<_>>() });
            record_fill(&tx, leg, status, &f, None, &raw).await?;
            apply_position(&tx, trade, leg, &f).await?;
        }
        tx.execute(
            "UPDATE tapeflow.arbitrage_trades SET status = CASE WHEN status = 'pending' THEN 'submitted' ELSE status END, updated_at = now() WHERE id = $1",
            &[&trade.id],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Live: look up what may have been sent, send the rest together, record the answers,
    /// then the fills. True when every leg is final.
    async fn live_legs(
        &mut self,
        trade: &Trade,
        legs: Vec<LegRow>,
        limits: &Limits,
        fresh: bool,
    ) -> anyhow::Result<bool> {
        let Some(clob) = self.clob.clone() else {
            tracing::warn!(trade = trade.id, "a live trade is unfinished but live trading is not configured");
            return Ok(false);
        };
        let mut to_send = Vec::new();
        for leg in legs {
            let hash = leg.order_hash.clone().unwrap_or_default();
            // Answered before (or maybe sent before a crash): the venue's word first.
            if leg.broker_order_id.is_some() || !fresh {
                match clob.order(leg.broker_order_id.as_deref().unwrap_or(&hash)).await {
                    Ok(Some(o)) => {
                        let shares = o.size_matched;
                        let price = if o.price > Decimal::ZERO {
                            o.price
                        } else {
                            leg.limit_price.unwrap_or_default()
                        };
                        let final_state = matches!(
                            o.status.as_str(),
                            "matched" | "filled" | "canceled" | "cancelled" | "unmatched"
                        );
                        if final_state {
                            self.record_live_fill(trade, &leg, shares, shares * price, Some(&o.id), &o.raw)
                                .await?;
                        }
                        continue;
                    }
                    Ok(None) if leg.broker_order_id.is_some() => {
                        // Answered as accepted, now unknown: nothing more will fill.
                        self.record_live_fill(
                            trade,
                            &leg,
                            leg.filled_size,
                            leg.notional,
                            None,
                            &json!({"lookup": "not found"}),
                        )
                        .await?;
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(leg = %leg.client_order_id, error = %e, "order lookup failed; the leg waits");
                        continue;
                    }
                }
            }
            if leg.age_secs > limits.max_age_secs && leg.purpose == "entry" {
                self.db
                    .execute(
                        "UPDATE tapeflow.arbitrage_legs SET status = 'expired', error = 'not at the venue and older than max_age: not sent', updated_at = now() WHERE id = $1",
                        &[&leg.id],
                    )
                    .await?;
                continue;
            }
            to_send.push(leg);
        }
        if !to_send.is_empty() {
            self.send_together(trade, &clob, to_send).await?;
        }
        let legs = self.legs(trade.id).await?;
        Ok(legs.iter().all(|l| l.is_final()))
    }

    /// Posts legs concurrently (heartbeats running), then records the answers, then the fills.
    async fn send_together(
        &mut self,
        trade: &Trade,
        clob: &Arc<Clob>,
        legs: Vec<LegRow>,
    ) -> anyhow::Result<()> {
        let _open = clob.open_orders();
        let mut pending: Vec<(LegRow, SignedOrder)> = Vec::new();
        for leg in legs {
            let Some(signed) =
                leg.signed_order.clone().and_then(|v| serde_json::from_value::<SignedOrder>(v).ok())
            else {
                anyhow::bail!("live leg {} has no signed order", leg.client_order_id);
            };
            pending.push((leg, signed));
        }
        for round in 0..2 {
            let mut futs = FuturesUnordered::new();
            for (i, (leg, signed)) in pending.iter().enumerate() {
                let clob = clob.clone();
                let signed = signed.clone();
                let order_type = leg.order_type.clone();
                futs.push(async move { (i, clob.post(&signed, &order_type).await) });
            }
            let mut answers = Vec::new();
            while let Some(a) = futs.next().await {
                if answers.is_empty() && round == 0 {
                    self.fault(Fault::ArbAfterLeg1, trade.opportunity_id);
                }
                answers.push(a);
            }
            drop(futs);
            self.fault(Fault::ArbAfterSend, trade.opportunity_id);
            let mut again = Vec::new();
            let mut fills = Vec::new();
            for (i, answer) in answers {
                let (leg, signed) = &pending[i];
                match answer {
                    Ok(Posted::Accepted { order_id, status, making, taking, raw }) => {
                        self.db
                            .execute(
                                "UPDATE tapeflow.arbitrage_legs SET broker_order_id = $2, status = 'submitted', sent_at = now(), raw = $3, updated_at = now() WHERE id = $1",
                                &[&leg.id, &order_id, &raw],
                            )
                            .await?;
                        let (shares, notional) =
                            if leg.side == Action::Buy { (taking, making) } else { (making, taking) };
                        if status != "live" && status != "delayed" {
                            fills.push((leg.clone(), shares, notional, order_id, raw));
                        }
                    }
                    Ok(Posted::Killed { message, raw }) => {
                        fills.push((
                            leg.clone(),
                            Decimal::ZERO,
                            Decimal::ZERO,
                            signed.hash.clone(),
                            json!({"killed": message, "answer": raw}),
                        ));
                    }
                    Ok(Posted::VersionMismatch { message }) if round == 0 && self.resigned.insert(leg.id) => {
                        tracing::info!(leg = %leg.client_order_id, %message, "order_version_mismatch: re-signing once");
                        let version = clob.refresh_version().await?;
                        let tokens = self.tokens(std::slice::from_ref(&leg.token_id)).await?;
                        let t = tokens.get(&leg.token_id);
                        let tick = t.map(|t| t.tick).unwrap_or(Decimal::new(1, 2));
                        let v = sign_leg(
                            clob.config(),
                            &LegSpec {
                                client_order_id: &leg.client_order_id,
                                token_id: &leg.token_id,
                                side: side_of(leg.side),
                                shares: leg.size,
                                limit: leg.limit_price.unwrap_or(tick),
                                tick,
                                neg_risk: t.is_some_and(|t| t.neg_risk),
                            },
                            &version,
                            now_ms(),
                        )?;
                        // The new hash is recorded before the order goes out.
                        self.db
                            .execute(
                                "UPDATE tapeflow.arbitrage_legs SET signed_order = $2, order_hash = $3, updated_at = now() WHERE id = $1",
                                &[&leg.id, &serde_json::to_value(&v)?, &v.hash],
                            )
                            .await?;
                        again.push((leg.clone(), v));
                    }
                    Ok(Posted::VersionMismatch { message }) => {
                        self.reject_leg(leg, &format!("order_version_mismatch after re-signing: {message}"))
                            .await?;
                    }
                    Err(BrokerError::Rejected { status, message }) => {
                        self.reject_leg(leg, &format!("venue refused the order ({status}): {message}"))
                            .await?;
                    }
                    Err(BrokerError::Duplicate(m)) => {
                        tracing::info!(leg = %leg.client_order_id, %m, "venue holds the order already; it is looked up");
                    }
                    Err(BrokerError::Transient(e)) => {
                        tracing::warn!(leg = %leg.client_order_id, error = %e, "order post failed; the leg is looked up before it is sent again");
                    }
                }
            }
            self.fault(Fault::ArbBeforeFills, trade.opportunity_id);
            for (leg, shares, notional, id, raw) in fills {
                self.record_live_fill(trade, &leg, shares, notional, Some(&id), &raw).await?;
            }
            if again.is_empty() {
                break;
            }
            pending = again;
        }
        Ok(())
    }

    async fn reject_leg(&self, leg: &LegRow, message: &str) -> anyhow::Result<()> {
        tracing::warn!(leg = %leg.client_order_id, %message, "leg refused");
        self.db
            .execute(
                "UPDATE tapeflow.arbitrage_legs SET status = 'rejected', error = $2, updated_at = now() WHERE id = $1",
                &[&leg.id, &message],
            )
            .await?;
        Ok(())
    }

    /// A live leg's final fill, with the market's taker fee, and its position.
    async fn record_live_fill(
        &mut self,
        trade: &Trade,
        leg: &LegRow,
        shares: Decimal,
        notional: Decimal,
        order_id: Option<&str>,
        raw: &Value,
    ) -> anyhow::Result<()> {
        let tokens = self.tokens(std::slice::from_ref(&leg.token_id)).await?;
        let fees = tokens.get(&leg.token_id).map(|t| t.fees).unwrap_or_default();
        // The fee of the fill at its average price: never under the sum over the levels
        // it met (p(1 − p) is concave).
        let fee =
            if shares > Decimal::ZERO { fees.taker_fee(shares, notional / shares)? } else { Decimal::ZERO };
        let f = Filled { shares, notional, fee, levels: vec![] };
        let tx = self.db.transaction().await?;
        // Recorded once: a leg already final keeps its figures.
        let current: String = tx
            .query_one("SELECT status FROM tapeflow.arbitrage_legs WHERE id = $1 FOR UPDATE", &[&leg.id])
            .await?
            .get(0);
        if is_final(&current) {
            return Ok(());
        }
        record_fill(&tx, leg, fill_status(shares, leg.size), &f, order_id, raw).await?;
        apply_position(&tx, trade, leg, &f).await?;
        tx.execute(
            "UPDATE tapeflow.arbitrage_trades SET status = CASE WHEN status = 'pending' THEN 'submitted' ELSE status END, updated_at = now() WHERE id = $1",
            &[&trade.id],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The trade's figures from its legs (and what the held shares would fetch now).
    async fn finalize(
        &mut self,
        trade: &Trade,
        entries: &[LegRow],
        unwinds: &[LegRow],
    ) -> anyhow::Result<()> {
        let action = if trade.kind == "sell_both" { Action::Sell } else { Action::Buy };
        let fills: Vec<Filled> = entries.iter().map(LegRow::filled).collect();
        let sold: Vec<(Decimal, Decimal)> = entries
            .iter()
            .map(|e| {
                unwinds
                    .iter()
                    .filter(|u| u.leg_index == e.leg_index)
                    .fold((Decimal::ZERO, Decimal::ZERO), |(s, p), u| {
                        (s + u.filled_size, p + u.notional - u.fee)
                    })
            })
            .collect();
        let shares: Vec<Decimal> = fills.iter().map(|f| f.shares).collect();
        let (_, excess) = paper::unmatched(action, &shares);
        let ids: Vec<String> = entries.iter().map(|l| l.token_id.clone()).collect();
        let tokens = self.tokens(&ids).await?;
        let mut marks = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let left = excess[i] - sold[i].0;
            marks.push(if left > Decimal::ZERO {
                self.mark(&e.token_id, left, tokens.get(&e.token_id)).await?
            } else {
                Decimal::ZERO
            });
        }
        let (p, held_shares, held_costs) = paper::pnl(action, &fills, &sold, &marks);
        let held: Vec<Value> = entries
            .iter()
            .enumerate()
            .filter(|(i, _)| held_shares[*i] > Decimal::ZERO)
            .map(|(i, e)| {
                json!({ "token_id": e.token_id, "condition_id": e.condition_id,
                        "shares": held_shares[i].normalize().to_string(), "cost": held_costs[i].normalize().to_string() })
            })
            .collect();
        let nothing = shares.iter().all(|s| s.is_zero());
        let status = if nothing {
            "failed"
        } else if !held.is_empty() {
            "held"
        } else if excess.iter().any(|x| !x.is_zero()) {
            "unwound"
        } else {
            "filled"
        };
        let notional: Decimal = fills.iter().map(|f| f.notional).sum();
        let fees: Decimal = fills.iter().map(|f| f.fee).sum();
        let tx = self.db.transaction().await?;
        if action == Action::Sell {
            // Minted shares left unsold are held as positions at their cost.
            for (i, e) in entries.iter().enumerate() {
                if held_shares[i] > Decimal::ZERO {
                    add_position(
                        &tx,
                        trade.mode,
                        &e.token_id,
                        &e.condition_id,
                        held_shares[i],
                        held_costs[i],
                        Decimal::ZERO,
                    )
                    .await?;
                }
            }
        }
        let (pnl, matched_pnl) =
            if nothing { (Decimal::ZERO, Decimal::ZERO) } else { (p.pnl, p.matched_pnl) };
        tx.execute(
            "UPDATE tapeflow.arbitrage_trades SET status = $2, matched_size = $3, notional = $4, fees = $5, leg_risk_loss = $6,
                    pnl = $7, matched_pnl = $8, unwind_pnl = $9, held_cost = $10, held = $11,
                    filled_at = CASE WHEN $3::numeric > 0 OR $10::numeric > 0 THEN now() END,
                    closed_at = CASE WHEN $2::text IN ('failed', 'filled', 'unwound') AND $12::boolean THEN now() END, updated_at = now()
             WHERE id = $1",
            &[
                &trade.id,
                &status,
                &p.matched,
                &notional,
                &fees,
                &p.leg_risk_loss,
                &pnl,
                &matched_pnl,
                &p.unwind_pnl,
                &p.held_cost,
                &Value::Array(held),
                // Sell-both trades hold nothing once done; buy trades wait for resolution.
                &(action == Action::Sell || nothing),
            ],
        )
        .await?;
        tx.commit().await?;
        metrics::counter!("tapeflow_exec_arbitrage_trades_total", "mode" => trade.mode.as_str(), "outcome" => status).increment(1);
        tracing::info!(trade = trade.id, mode = trade.mode.as_str(), status, matched = %p.matched, pnl = %pnl,
            leg_risk_loss = %p.leg_risk_loss, "arbitrage trade done");
        Ok(())
    }

    /// What `shares` of a token would fetch sold into its bids now, net of fees.
    async fn mark(&self, token: &str, shares: Decimal, info: Option<&TokenInfo>) -> anyhow::Result<Decimal> {
        let Some(r) = self
            .db
            .query_opt(
                "SELECT bid_prices, bid_sizes FROM tapeflow.polymarket_books WHERE token_id = $1",
                &[&token],
            )
            .await?
        else {
            return Ok(Decimal::ZERO);
        };
        let prices: Vec<Decimal> = r.get(0);
        let sizes: Vec<Decimal> = r.get(1);
        let levels: Vec<Level> = prices.into_iter().zip(sizes).map(|(p, s)| Level::new(p, s)).collect();
        let fees = info.map(|t| t.fees).unwrap_or_default();
        let f = paper::walk(Action::Sell, &levels, &mut Taken::new(), shares, None, OrderType::Fak, fees)?;
        Ok(f.notional - f.fee)
    }

    /// Markets resolved: positions pay 1 per winning share; trades holding shares settle.
    async fn settle(&mut self) -> anyhow::Result<()> {
        let tx = self.db.transaction().await?;
        let n = tx
            .execute(
                "WITH resolved AS (
                     SELECT p.mode, p.condition_id, m.winning_token_id,
                            sum(CASE WHEN p.token_id = m.winning_token_id THEN p.shares ELSE 0 END) AS payout,
                            sum(p.cost + p.fees) AS cost
                     FROM tapeflow.polymarket_positions p
                     JOIN tapeflow.polymarket_markets m ON m.condition_id = p.condition_id
                     WHERE m.winning_token_id IS NOT NULL AND p.shares > 0
                       AND NOT EXISTS (SELECT 1 FROM tapeflow.polymarket_settlements s
                                       WHERE s.mode = p.mode AND s.condition_id = p.condition_id)
                     GROUP BY 1, 2, 3
                 ), ins AS (
                     INSERT INTO tapeflow.polymarket_settlements (mode, condition_id, winning_token_id, payout, cost, pnl)
                     SELECT mode, condition_id, winning_token_id, payout, cost, payout - cost FROM resolved
                     RETURNING mode, condition_id, winning_token_id
                 )
                 UPDATE tapeflow.polymarket_positions p
                 SET realised_pnl = p.realised_pnl + CASE WHEN p.token_id = i.winning_token_id THEN p.shares ELSE 0 END - p.cost - p.fees,
                     shares = 0, cost = 0, fees = 0, updated_at = now()
                 FROM ins i WHERE p.mode = i.mode AND p.condition_id = i.condition_id",
                &[],
            )
            .await?;
        let trades = tx
            .execute(
                "WITH done AS (
                     SELECT t.id,
                            coalesce(sum(CASE WHEN x->>'token_id' = m.winning_token_id THEN (x->>'shares')::numeric ELSE 0 END), 0) AS payout
                     FROM tapeflow.arbitrage_trades t
                     LEFT JOIN LATERAL jsonb_array_elements(t.held) x ON true
                     LEFT JOIN tapeflow.polymarket_markets m ON m.condition_id = x->>'condition_id'
                     WHERE t.status IN ('filled', 'unwound', 'held')
                       AND ((t.kind <> 'sell_both' AND t.matched_size > 0) OR jsonb_array_length(t.held) > 0)
                       AND NOT EXISTS (SELECT 1 FROM tapeflow.arbitrage_legs l
                                       JOIN tapeflow.polymarket_markets k ON k.condition_id = l.condition_id
                                       WHERE l.trade_id = t.id AND l.purpose = 'entry' AND k.winning_token_id IS NULL)
                     GROUP BY t.id
                 )
                 UPDATE tapeflow.arbitrage_trades t
                 SET status = 'settled', settled_at = now(), closed_at = coalesce(t.closed_at, now()), updated_at = now(),
                     pnl = coalesce(t.matched_pnl, 0) + t.unwind_pnl + d.payout - t.held_cost,
                     leg_risk_loss = greatest(0, -t.unwind_pnl) + greatest(0, t.held_cost - d.payout)
                 FROM done d WHERE t.id = d.id",
                &[],
            )
            .await?;
        tx.commit().await?;
        if n > 0 || trades > 0 {
            tracing::info!(positions = n, trades, "settled resolved markets");
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
async fn insert_leg(
    db: &impl GenericClient,
    trade: i64,
    purpose: &str,
    index: i16,
    token: &str,
    condition: &str,
    side: Action,
    order_type: &str,
    limit: Option<Decimal>,
    size: Decimal,
    coid: &str,
    signed: Option<&SignedOrder>,
) -> anyhow::Result<()> {
    let signed_json = signed.map(serde_json::to_value).transpose()?;
    db.execute(
        "INSERT INTO tapeflow.arbitrage_legs (trade_id, purpose, leg_index, token_id, condition_id, side, order_type,
                                              limit_price, size, client_order_id, order_hash, signed_order)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (client_order_id) DO NOTHING",
        &[
            &trade,
            &purpose,
            &index,
            &token,
            &condition,
            &side.as_str(),
            &order_type,
            &limit,
            &size,
            &coid,
            &signed.map(|s| s.hash.clone()),
            &signed_json,
        ],
    )
    .await?;
    Ok(())
}

async fn record_fill(
    db: &impl GenericClient,
    leg: &LegRow,
    status: &str,
    f: &Filled,
    order_id: Option<&str>,
    raw: &Value,
) -> anyhow::Result<()> {
    db.execute(
        "UPDATE tapeflow.arbitrage_legs SET status = $2, filled_size = $3, notional = $4, fee = $5, avg_price = $6,
                broker_order_id = coalesce(broker_order_id, $7), raw = $8, sent_at = coalesce(sent_at, now()), updated_at = now()
         WHERE id = $1",
        &[&leg.id, &status, &f.shares, &f.notional, &f.fee, &f.avg_price(), &order_id, raw],
    )
    .await?;
    Ok(())
}

async fn add_position(
    db: &impl GenericClient,
    mode: Mode,
    token: &str,
    condition: &str,
    shares: Decimal,
    cost: Decimal,
    fees: Decimal,
) -> anyhow::Result<()> {
    db.execute(
        "INSERT INTO tapeflow.polymarket_positions AS p (mode, token_id, condition_id, shares, cost, fees)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (mode, token_id) DO UPDATE SET shares = p.shares + EXCLUDED.shares, cost = p.cost + EXCLUDED.cost,
                fees = p.fees + EXCLUDED.fees, updated_at = now()",
        &[&mode.as_str(), &token, &condition, &shares, &cost, &fees],
    )
    .await?;
    Ok(())
}

/// A buy adds to the token's position; selling back bought shares (an unwind of a buy trade)
/// takes from it at its average cost, realising the difference. Sell-both legs sell minted
/// pairs and touch no position.
async fn apply_position(
    db: &impl GenericClient,
    trade: &Trade,
    leg: &LegRow,
    f: &Filled,
) -> anyhow::Result<()> {
    if f.shares <= Decimal::ZERO {
        return Ok(());
    }
    match leg.side {
        Action::Buy => {
            add_position(db, trade.mode, &leg.token_id, &leg.condition_id, f.shares, f.notional, f.fee).await
        }
        Action::Sell if trade.kind != "sell_both" => {
            db.execute(
                "UPDATE tapeflow.polymarket_positions
                 SET realised_pnl = realised_pnl + $3 - $4 - (cost + fees) * $5 / shares,
                     cost = cost - cost * $5 / shares, fees = fees - fees * $5 / shares,
                     shares = shares - $5, updated_at = now()
                 WHERE mode = $1 AND token_id = $2 AND shares >= $5",
                &[&trade.mode.as_str(), &leg.token_id, &f.notional, &f.fee, &f.shares],
            )
            .await?;
            Ok(())
        }
        Action::Sell => Ok(()),
    }
}
