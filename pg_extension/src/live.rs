//! The live strategy: `run_cycle()` evaluates every newly closed bar of each enabled
//! (symbol, strategy) exactly once with the bar engine — the same code backtests run — and
//! records the market-state history, alerts and signals. Idempotent: the evaluated-bar log
//! and the signals table are keyed by bar, so a repeated or concurrent cycle changes nothing.
//! Each config is evaluated in its own subtransaction: one that fails is rolled back, its
//! error recorded on the config, and the cycle goes on with the next.

use crate::bars;
use crate::candle::{micros, timestamptz};
use crate::state::{engine_params, engine_start, run_engine, session_start};
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::JsonB;
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use tapeflow_analytics::engine::BarOutput;
use tapeflow_analytics::sizing::{position_size, SizeInputs};
use tapeflow_analytics::strategy::SignalKind;
use tapeflow_analytics::{Side, MINUTE};

/// Checks strategy parameters (jsonb) against the engine's: raises an error naming an unknown
/// key or an out-of-range value. Used by the strategy_configs trigger.
#[pg_extern(immutable, parallel_safe)]
fn validate_params(params: JsonB) -> bool {
    engine_params(&params);
    true
}

struct Config {
    symbol: String,
    strategy: String,
    params: JsonB,
    /// The error of its last evaluation, if that failed.
    last_error: Option<String>,
}

fn configs() -> Vec<Config> {
    Spi::connect(|c| {
        c.select(
            "SELECT c.symbol, c.strategy, c.params, c.last_error FROM tapeflow.strategy_configs c
             JOIN tapeflow.symbols s USING (symbol) WHERE c.enabled AND s.active ORDER BY c.symbol, c.strategy",
            None,
            &[],
        )
        .unwrap_or_else(|e| error!("reading strategy_configs: {e}"))
        .map(|r| Config {
            symbol: r.get(1).ok().flatten().expect("symbol"),
            strategy: r.get(2).ok().flatten().expect("strategy"),
            params: r.get(3).ok().flatten().expect("params"),
            last_error: r.get(4).ok().flatten(),
        })
        .collect()
    })
}

/// What a cycle reads once from `tapeflow.risk_limits` and `tapeflow.feed_watermarks`.
struct Limits {
    /// By the wall clock, bars starting before this minute are closed.
    horizon: TimestampWithTimeZone,
    /// Symbols with a fresh watermark: their bars are closed before this minute instead (never
    /// later than `horizon`), so that a bar waits for the trades its feed has yet to store.
    watermarked: HashMap<String, TimestampWithTimeZone>,
    ttl_us: i64,
    /// Sizes entry signals (`account_equity`, `max_order_notional`).
    equity: Decimal,
    max_notional: Decimal,
}

fn limits(at: TimestampWithTimeZone) -> Limits {
    let row = Spi::connect(|c| {
        let mut rows = c
            .select(
                "SELECT tapeflow.minute($1 - bar_grace), (extract(epoch FROM signal_ttl) * 1e6)::bigint,
                        account_equity::text, max_order_notional::text
                 FROM tapeflow.risk_limits",
                Some(1),
                &[at.into()],
            )
            .unwrap_or_else(|e| error!("reading risk_limits: {e}"));
        let r = rows.next()?;
        Some((
            r.get::<TimestampWithTimeZone>(1).ok().flatten(),
            r.get::<i64>(2).ok().flatten(),
            r.get::<String>(3).ok().flatten().unwrap_or_default(),
            r.get::<String>(4).ok().flatten().unwrap_or_default(),
        ))
    });
    let Some((Some(horizon), ttl_us, equity, max_notional)) = row else {
        error!("tapeflow.risk_limits has no row")
    };
    let money = |name: &str, text: &str| {
        text.parse::<Decimal>().unwrap_or_else(|e| error!("risk_limits.{name} = {text}: {e}"))
    };
    // A watermark not refreshed within bar_max_wait is its gone feeder's: ignored, so the
    // symbol's bars close by the wall clock as they do without one.
    let watermarked = Spi::connect(|c| {
        c.select(
            "SELECT w.symbol, least(tapeflow.minute($1 - r.bar_grace), tapeflow.minute(w.complete_until))
             FROM tapeflow.feed_watermarks w, tapeflow.risk_limits r
             WHERE w.updated_at >= $1 - r.bar_max_wait",
            None,
            &[at.into()],
        )
        .unwrap_or_else(|e| error!("reading feed_watermarks: {e}"))
        .filter_map(|r| {
            Some((r.get::<String>(1).ok().flatten()?, r.get::<TimestampWithTimeZone>(2).ok().flatten()?))
        })
        .collect()
    });
    Limits {
        horizon,
        watermarked,
        ttl_us: ttl_us.unwrap_or(2 * MINUTE),
        equity: money("account_equity", &equity),
        max_notional: money("max_order_notional", &max_notional),
    }
}

impl Limits {
    /// The symbol's bars starting before this minute are closed.
    fn horizon_of(&self, symbol: &str) -> TimestampWithTimeZone {
        self.watermarked.get(symbol).copied().unwrap_or(self.horizon)
    }
}

/// Runs `f` in a subtransaction, as a PL/pgSQL block with an EXCEPTION clause does: what `f`
/// wrote is kept when it returns; when it raises an error (or panics) its writes are rolled
/// back and the error's message is returned. A query cancel (or statement timeout) is not
/// caught: it rolls back and propagates.
pub(crate) fn in_subtransaction<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    // The steps of PL/pgSQL's exec_stmt_block: run in the caller's memory context, and come
    // back to its memory context and resource owner once the subtransaction is over.
    // SAFETY: backend globals, read and set on the backend's only thread.
    let (cxt, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    let restore = move || unsafe {
        pg_sys::MemoryContextSwitchTo(cxt);
        pg_sys::CurrentResourceOwner = owner;
    };
    let rollback = move || {
        // SAFETY: the subtransaction begun below is the current one; its error was flushed.
        unsafe {
            pg_sys::MemoryContextSwitchTo(cxt);
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        restore();
    };
    // SAFETY: as above; a subtransaction may begin inside any transaction.
    unsafe {
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(cxt);
    }
    PgTryBuilder::new(AssertUnwindSafe(move || {
        let r = f();
        // SAFETY: `f` returned, so the subtransaction begun above is still the current one.
        unsafe { pg_sys::ReleaseCurrentSubTransaction() };
        restore();
        Ok(r)
    }))
    .catch_when(PgSqlErrorCode::ERRCODE_QUERY_CANCELED, move |e| {
        rollback();
        e.rethrow()
    })
    .catch_others(move |e| {
        rollback();
        Err(error_message(&e))
    })
    .execute()
}

fn error_message(e: &CaughtError) -> String {
    match e {
        CaughtError::PostgresError(r)
        | CaughtError::ErrorReport(r)
        | CaughtError::RustPanic { ereport: r, .. } => r.message().to_string(),
    }
}

fn position(symbol: &str, strategy: &str) -> Option<Side> {
    let side = Spi::get_one_with_args::<String>(
        "SELECT side FROM tapeflow.positions WHERE symbol = $1 AND strategy = $2",
        &[symbol.into(), strategy.into()],
    )
    .ok()
    .flatten()?;
    Some(if side == "long" { Side::Buy } else { Side::Sell })
}

fn order_side(kind: SignalKind, position_side: Side) -> &'static str {
    match (kind, position_side) {
        (SignalKind::Entry, Side::Buy) | (SignalKind::Exit, Side::Sell) => "buy",
        _ => "sell",
    }
}

/// The suggested quantity of an entry signal: [`position_size`] with the account equity of
/// `risk_limits` as the buying power, one share costing the signal price, and its
/// `max_order_notional` as the cap; 0 when no whole share passes. The executor sizes again
/// with the broker's figures.
fn entry_quantity(limits: &Limits, risk_pct: f64, price: f64, stop: Option<f64>) -> u64 {
    let inputs = SizeInputs {
        equity: limits.equity,
        risk_pct,
        entry: price,
        stop,
        cost_per_share: Decimal::from_f64(price).unwrap_or(Decimal::ZERO),
        available: limits.equity,
        max_notional: Some(limits.max_notional),
    };
    position_size(&inputs).unwrap_or(0)
}

/// Records one evaluated bar; returns the number of signals written (0 or 1).
fn record(
    cfg: &Config,
    o: &BarOutput,
    at: TimestampWithTimeZone,
    fresh: bool,
    risk_pct: f64,
    limits: &Limits,
) -> i32 {
    let bar = timestamptz(o.time);
    let va = o.value_area;
    let signal_text = o.signal.as_ref().map(|s| {
        format!(
            "{}_{}",
            if s.kind == SignalKind::Entry { "entry" } else { "exit" },
            order_side(s.kind, s.side)
        )
    });
    let inserted = Spi::get_one_with_args::<bool>(
        "INSERT INTO tapeflow.market_state_log (symbol, strategy, bar, state, confidence, aggression, direction,
             momentum_pct, atr, buy_pressure, sell_pressure, delta, cvd, poc, vah, val, lvn, lvn_distance_pct, signal,
             evaluated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
                 clock_timestamp())
         ON CONFLICT DO NOTHING RETURNING true",
        &[
            cfg.symbol.as_str().into(),
            cfg.strategy.as_str().into(),
            bar.into(),
            o.state.as_str().into(),
            o.confidence.into(),
            o.aggression.into(),
            o.direction.as_str().into(),
            o.momentum_pct.into(),
            o.atr.into(),
            o.buy_pressure.into(),
            o.sell_pressure.into(),
            o.delta.into(),
            o.cvd.into(),
            va.map(|v| v.poc).into(),
            va.map(|v| v.vah).into(),
            va.map(|v| v.val).into(),
            o.lvn.map(|l| l.lvn).into(),
            o.lvn.map(|l| l.distance_pct).into(),
            signal_text.into(),
        ],
    )
    .unwrap_or_else(|e| error!("recording market state of {}: {e}", cfg.symbol))
    .unwrap_or(false);
    if !inserted {
        return 0; // another cycle got here first
    }
    if o.state_changed {
        let payload = serde_json::json!({
            "symbol": cfg.symbol, "strategy": cfg.strategy, "bar": bar.to_iso_string(), "state": o.state.as_str(),
            "confidence": o.confidence, "aggression": o.aggression, "direction": o.direction.as_str(),
        });
        Spi::run_with_args(
            "SELECT pg_notify('tapeflow_state', $1);
             INSERT INTO tapeflow.alerts (bar, symbol, kind, message, data)
             VALUES ($2, $3, 'state_change', $4, $5) ON CONFLICT DO NOTHING",
            &[
                payload.to_string().into(),
                bar.into(),
                cfg.symbol.as_str().into(),
                format!("{} is now {} (confidence {:.0})", cfg.symbol, o.state.as_str(), o.confidence).into(),
                JsonB(payload).into(),
            ],
        )
        .unwrap_or_else(|e| error!("announcing state of {}: {e}", cfg.symbol));
    }
    if let Some(l) = o.lvn {
        Spi::run_with_args(
            "INSERT INTO tapeflow.alerts (bar, symbol, kind, message, data)
             VALUES ($1, $2, 'lvn_proximity', $3, $4) ON CONFLICT DO NOTHING",
            &[
                bar.into(),
                cfg.symbol.as_str().into(),
                format!("{} within {:.3}% of LVN {}", cfg.symbol, l.distance_pct, l.lvn).into(),
                JsonB(serde_json::json!({ "lvn": l.lvn, "distance_pct": l.distance_pct, "above": l.above }))
                    .into(),
            ],
        )
        .unwrap_or_else(|e| error!("recording LVN alert of {}: {e}", cfg.symbol));
    }
    // Bars evaluated late (catching up after downtime) are logged but not traded on.
    let (Some(sig), true) = (&o.signal, fresh) else { return 0 };
    let side = order_side(sig.kind, sig.side);
    let kind = if sig.kind == SignalKind::Entry { "entry" } else { "exit" };
    let inputs = serde_json::to_value(o).unwrap_or_default();
    // Exits close the position's quantity (read in the statement).
    let quantity = (sig.kind == SignalKind::Entry)
        .then(|| entry_quantity(limits, risk_pct, sig.price, sig.stop).to_string());
    let written = Spi::get_one_with_args::<i64>(
        "WITH l AS (SELECT * FROM tapeflow.risk_limits),
         p AS (SELECT quantity FROM tapeflow.positions WHERE symbol = $1 AND strategy = $2),
         ins AS (
            INSERT INTO tapeflow.signals (bar, symbol, strategy, kind, side, entry, stop, target, quantity, reason,
                                          inputs, expires_at)
            SELECT $3, $1, $2, $4, $5, round($6::numeric, 8), round($7::numeric, 8), round($8::numeric, 8),
                   CASE WHEN $4 = 'exit' THEN coalesce((SELECT quantity FROM p), 0) ELSE $9::numeric END,
                   $10, $11, $12::timestamptz + l.signal_ttl
            FROM l
            ON CONFLICT DO NOTHING RETURNING 1)
         SELECT count(*) FROM ins",
        &[
            cfg.symbol.as_str().into(),
            cfg.strategy.as_str().into(),
            bar.into(),
            kind.into(),
            side.into(),
            sig.price.into(),
            sig.stop.into(),
            sig.target.into(),
            quantity.into(),
            sig.reason.as_str().into(),
            JsonB(inputs).into(),
            at.into(),
        ],
    )
    .unwrap_or_else(|e| error!("writing signal of {}: {e}", cfg.symbol))
    .unwrap_or(0);
    written as i32
}

/// One scheduler cycle at time `at`: expires stale signals, then for each enabled strategy
/// config evaluates the one-minute bars closed since the last cycle. A bar is closed once its
/// minute ended `risk_limits.bar_grace` ago, whether or not a later tick arrived; when its
/// symbol has a fresh watermark (`tapeflow.feed_watermarks` updated within
/// `risk_limits.bar_max_wait`), also not before the watermark's `complete_until` has passed
/// its end, so that a feed catching up after an outage has stored all of its trades. A stale
/// watermark (its feeder gone) or none (imported data, feeds that do not report one) leaves
/// the wall-clock rule alone.
/// Returns per config the bars evaluated and signals written, and the error when its
/// evaluation failed. A failing config is rolled back (nothing of it is written), its error
/// recorded in `strategy_configs.last_error` / `last_error_at` (cleared by its next success)
/// and logged as a WARNING when it first occurs or changes; the other configs are evaluated
/// as usual, and the failed one is tried again at the next cycle. Safe to run repeatedly or
/// concurrently; the background worker runs it about every second.
#[pg_extern(volatile)]
fn run_cycle(
    at: default!(TimestampWithTimeZone, "now()"),
) -> TableIterator<
    'static,
    (
        name!(symbol, String),
        name!(strategy, String),
        name!(bars, i32),
        name!(signals, i32),
        name!(error, Option<String>),
    ),
> {
    Spi::run_with_args(
        "UPDATE tapeflow.signals SET status = 'expired' WHERE status = 'new' AND expires_at < $1",
        &[at.into()],
    )
    .unwrap_or_else(|e| error!("expiring signals: {e}"));
    let limits = limits(at);
    let mut out = Vec::new();
    for cfg in configs() {
        let (bars, signals, error) = match in_subtransaction(|| evaluate(&cfg, at, &limits)) {
            Ok((bars, signals)) => {
                if cfg.last_error.is_some() {
                    set_error(&cfg, None);
                }
                (bars, signals, None)
            }
            Err(message) => {
                if cfg.last_error.as_deref() == Some(message.as_str()) {
                    debug1!("strategy config {}/{} still fails: {message}", cfg.symbol, cfg.strategy);
                } else {
                    warning!(
                        "strategy config {}/{}: evaluation failed, retried at the next cycle: {message}",
                        cfg.symbol,
                        cfg.strategy
                    );
                }
                set_error(&cfg, Some(&message));
                (0, 0, Some(message))
            }
        };
        out.push((cfg.symbol, cfg.strategy, bars, signals, error));
    }
    TableIterator::new(out)
}

/// Records (or clears) the config's evaluation error.
fn set_error(cfg: &Config, error: Option<&str>) {
    Spi::run_with_args(
        "UPDATE tapeflow.strategy_configs SET last_error = $3, last_error_at = CASE WHEN $3 IS NOT NULL THEN now() END
         WHERE symbol = $1 AND strategy = $2",
        &[cfg.symbol.as_str().into(), cfg.strategy.as_str().into(), error.into()],
    )
    .unwrap_or_else(|e| error!("recording the error of {}/{}: {e}", cfg.symbol, cfg.strategy));
}

/// Evaluates one config's bars closed since its last evaluated bar; returns the bars evaluated
/// and the signals written.
fn evaluate(cfg: &Config, at: TimestampWithTimeZone, limits: &Limits) -> (i32, i32) {
    let params = engine_params(&cfg.params);
    let risk_pct = params.strategy.risk_per_trade_pct;
    let horizon = limits.horizon_of(&cfg.symbol);
    let last = Spi::get_one_with_args::<TimestampWithTimeZone>(
        "SELECT max(bar) FROM tapeflow.market_state_log WHERE symbol = $1 AND strategy = $2",
        &[cfg.symbol.as_str().into(), cfg.strategy.as_str().into()],
    )
    .unwrap_or_else(|e| error!("{e}"));
    let last_us = last.map(micros).unwrap_or(i64::MIN);
    let first_new =
        last.map(|l| timestamptz(micros(l) + MINUTE)).unwrap_or_else(|| timestamptz(micros(horizon) - 1));
    // Nothing closed since the last evaluated bar (a quiet or stopped feed): the session
    // is not evaluated again, so an idle cycle costs one index probe per config.
    let fresh = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM tapeflow.minute_bars
                        WHERE symbol = $1 AND bucket > coalesce($2, '-infinity') AND bucket < $3)",
        &[cfg.symbol.as_str().into(), last.into(), horizon.into()],
    )
    .unwrap_or_else(|e| error!("{e}"))
    .unwrap_or(false);
    if micros(first_new) >= micros(horizon) || !fresh {
        return (0, 0);
    }
    // From the session's open, after the bars a rolling profile carries into it (read, not logged).
    let start = session_start(&cfg.symbol, first_new);
    let last_us = last_us.max(micros(start) - 1);
    let mut series = bars::load(&cfg.symbol, "1m", engine_start(&cfg.symbol, "1m", start, &params), horizon);
    let pos = position(&cfg.symbol, &cfg.strategy);
    for b in series.bars.iter_mut().filter(|b| b.input.time > last_us) {
        b.input.position = pos;
    }
    let outputs = run_engine(params, &series);
    let (mut n, mut s) = (0, 0);
    for o in outputs.iter().filter(|o| o.time > last_us) {
        let fresh = micros(at) - (o.time + MINUTE) <= limits.ttl_us;
        s += record(cfg, o, at, fresh, risk_pct, limits);
        n += 1;
    }
    (n, s)
}
