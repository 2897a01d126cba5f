//! Market state in SQL: the bar engine (`tapeflow_analytics::engine`, the same code the live
//! scheduler and backtests run) over stored bars.

use crate::bars;
use crate::candle::{micros, timestamptz};
use pgrx::prelude::*;
use pgrx::JsonB;
use tapeflow_analytics::backtest::SymbolSeries;
use tapeflow_analytics::engine::{BarEngine, BarOutput, EngineParams};
use tapeflow_analytics::state::{time_in_states, MarketState, ProfileScope};
use tapeflow_analytics::strategy::SignalKind;
use tapeflow_analytics::Side;

/// Engine parameters from jsonb over the documented defaults; unknown keys and out-of-range
/// values are errors that name them.
pub fn engine_params(params: &JsonB) -> EngineParams {
    let p: EngineParams =
        serde_json::from_value(params.0.clone()).unwrap_or_else(|e| error!("invalid strategy params: {e}"));
    p.validate().unwrap_or_else(|e| error!("invalid strategy params: {e}"));
    p
}

/// Start of the session containing `at` for `symbol`.
pub fn session_start(symbol: &str, at: TimestampWithTimeZone) -> TimestampWithTimeZone {
    Spi::get_one_with_args::<TimestampWithTimeZone>(
        "SELECT (tapeflow.session_bounds(s.symbol, tapeflow.session_date($2, s.timezone, s.session_open))).session_start
         FROM tapeflow.symbol_row($1) s",
        &[symbol.into(), at.into()],
    )
    .unwrap_or_else(|e| error!("{e}"))
    .expect("symbol_row raises for unknown symbols")
}

/// Where the engine starts reading `timeframe` bars of `symbol` to evaluate the session
/// beginning at `session_start` as a run through all history would: the session start itself,
/// except for a rolling profile, which carries the last `state.rolling_bars` bars across the
/// session boundary — then the start of the `rolling_bars`-th bar before the session (or the
/// session start when there are none). The readings of those earlier bars are not the
/// session's and are discarded by the callers.
pub fn engine_start(
    symbol: &str,
    timeframe: &str,
    session_start: TimestampWithTimeZone,
    params: &EngineParams,
) -> TimestampWithTimeZone {
    if params.state.profile_scope != ProfileScope::Rolling {
        return session_start;
    }
    // The newest `rolling_bars` bars before the session lie within its newest bars × (minutes
    // per bar) minutes, each of which appears at most twice in minute_bars (built and imported):
    // a bounded backward scan of the index, not of the symbol's history.
    Spi::get_one_with_args::<TimestampWithTimeZone>(
        "SELECT coalesce(min(t), $3) FROM (
             SELECT DISTINCT tapeflow.bar_start(m.bucket, $2, s.timezone, s.session_open) AS t
             FROM tapeflow.symbol_row($1) s,
                  LATERAL (SELECT b.bucket FROM tapeflow.minute_bars b WHERE b.symbol = $1 AND b.bucket < $3
                           ORDER BY b.bucket DESC
                           LIMIT 2 * $4 * CASE WHEN $2 = '1d' THEN 25 * 60
                                               ELSE extract(epoch FROM tapeflow.timeframe_interval($2))::bigint / 60 END) m
             ORDER BY t DESC LIMIT $4) w",
        &[symbol.into(), timeframe.into(), session_start.into(), i64::from(params.state.rolling_bars).into()],
    )
    .unwrap_or_else(|e| error!("{e}"))
    .unwrap_or(session_start)
}

/// Runs the engine over bars (each session restarts the engine's state, so starting at a
/// session open loses nothing; see [`engine_start`] for the rolling profile).
pub fn run_engine(params: EngineParams, series: &SymbolSeries) -> Vec<BarOutput> {
    let mut engine = BarEngine::new(params, series.tick_size).unwrap_or_else(|e| error!("{e}"));
    series
        .bars
        .iter()
        .map(|b| engine.on_bar(&b.input).unwrap_or_else(|e| error!("bar engine: {e}")))
        .collect()
}

/// Closed bars of [session start of `from`, start of the bar containing `to`).
fn history(
    symbol: &str,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
    timeframe: &str,
    params: &JsonB,
) -> Vec<BarOutput> {
    let params = engine_params(params);
    let start = session_start(symbol, from);
    let first = engine_start(symbol, timeframe, start, &params);
    let mut out = run_engine(params, &bars::load(symbol, timeframe, first, to));
    let start_us = micros(start);
    out.retain(|o| o.time >= start_us);
    out
}

type HistoryRow = (
    name!(time, TimestampWithTimeZone),
    name!(state, String),
    name!(confidence, f64),
    name!(momentum_pct, Option<f64>),
    name!(atr, Option<f64>),
    name!(aggression, f64),
    name!(direction, String),
    name!(buy_pressure, f64),
    name!(sell_pressure, f64),
    name!(delta, f64),
    name!(cvd, f64),
    name!(poc, Option<f64>),
    name!(vah, Option<f64>),
    name!(val, Option<f64>),
    name!(lvn, Option<f64>),
    name!(lvn_distance_pct, Option<f64>),
    name!(signal, Option<String>),
    name!(reason, Option<String>),
);

fn row(o: &BarOutput) -> HistoryRow {
    let va = o.value_area;
    let signal = o.signal.as_ref().map(|s| {
        let kind = if s.kind == SignalKind::Entry { "entry" } else { "exit" };
        format!("{kind}_{}", if s.side == Side::Buy { "long" } else { "short" })
    });
    (
        timestamptz(o.time),
        o.state.as_str().to_string(),
        o.confidence,
        o.momentum_pct,
        o.atr,
        o.aggression,
        o.direction.as_str().to_string(),
        o.buy_pressure,
        o.sell_pressure,
        o.delta,
        o.cvd,
        va.map(|v| v.poc),
        va.map(|v| v.vah),
        va.map(|v| v.val),
        o.lvn.map(|l| l.lvn),
        o.lvn.map(|l| l.distance_pct),
        signal,
        o.signal.as_ref().map(|s| s.reason.clone()),
    )
}

/// AMT market state per closed bar of [from, to): state (balance / imbalance_up /
/// imbalance_down) with confidence, momentum, ATR, aggression and flow direction, pressures,
/// delta and session CVD, the value area in use, the nearest session LVN within reach, and the
/// strategy's signal for a flat book. `params` overrides EngineParams defaults (see README).
#[pg_extern(stable)]
fn market_state_history(
    symbol: &str,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
    params: default!(JsonB, "'{}'"),
    timeframe: default!(&str, "'1m'"),
) -> TableIterator<
    'static,
    (
        name!(time, TimestampWithTimeZone),
        name!(state, String),
        name!(confidence, f64),
        name!(momentum_pct, Option<f64>),
        name!(atr, Option<f64>),
        name!(aggression, f64),
        name!(direction, String),
        name!(buy_pressure, f64),
        name!(sell_pressure, f64),
        name!(delta, f64),
        name!(cvd, f64),
        name!(poc, Option<f64>),
        name!(vah, Option<f64>),
        name!(val, Option<f64>),
        name!(lvn, Option<f64>),
        name!(lvn_distance_pct, Option<f64>),
        name!(signal, Option<String>),
        name!(reason, Option<String>),
    ),
> {
    let out = history(symbol, from, to, timeframe, &params);
    let from_us = micros(from);
    TableIterator::new(out.iter().filter(|o| o.time >= from_us).map(row).collect::<Vec<_>>())
}

/// The market state after the last closed bar before `at` (one row; none before the session's first bar).
#[pg_extern(stable)]
fn market_state(
    symbol: &str,
    at: default!(TimestampWithTimeZone, "now()"),
    params: default!(JsonB, "'{}'"),
    timeframe: default!(&str, "'1m'"),
) -> TableIterator<
    'static,
    (
        name!(time, TimestampWithTimeZone),
        name!(state, String),
        name!(confidence, f64),
        name!(momentum_pct, Option<f64>),
        name!(atr, Option<f64>),
        name!(aggression, f64),
        name!(direction, String),
        name!(buy_pressure, f64),
        name!(sell_pressure, f64),
        name!(delta, f64),
        name!(cvd, f64),
        name!(poc, Option<f64>),
        name!(vah, Option<f64>),
        name!(val, Option<f64>),
        name!(lvn, Option<f64>),
        name!(lvn_distance_pct, Option<f64>),
        name!(signal, Option<String>),
        name!(reason, Option<String>),
    ),
> {
    let out = history(symbol, at, at, timeframe, &params);
    TableIterator::new(out.last().map(row))
}

/// Time spent in each market state over the closed bars of [from, to), counting each bar's
/// state until the next bar (the last one until `to`).
#[pg_extern(stable)]
fn time_in_state(
    symbol: &str,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
    params: default!(JsonB, "'{}'"),
    timeframe: default!(&str, "'1m'"),
) -> TableIterator<'static, (name!(state, String), name!(duration, Interval), name!(share_pct, f64))> {
    let from_us = micros(from);
    let points: Vec<_> = history(symbol, from, to, timeframe, &params)
        .iter()
        .filter(|o| o.time >= from_us)
        .map(|o| (o.time, o.state))
        .collect();
    let d = time_in_states(&points, Some(micros(to)));
    let total = (d.balance + d.imbalance_up + d.imbalance_down).max(1) as f64;
    let rows = [
        (MarketState::Balance, d.balance),
        (MarketState::ImbalanceUp, d.imbalance_up),
        (MarketState::ImbalanceDown, d.imbalance_down),
    ]
    .map(|(s, us)| {
        (s.as_str().to_string(), Interval::new(0, 0, us).expect("interval"), 100.0 * us as f64 / total)
    });
    TableIterator::new(rows)
}

/// Wilder's average true range over the bars of [from, to) (period 14 by default; NULL until
/// `period` bars are seen).
#[pg_extern(stable)]
fn atr(
    symbol: &str,
    timeframe: &str,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
    period: default!(i32, 14),
) -> TableIterator<'static, (name!(time, TimestampWithTimeZone), name!(atr, Option<f64>))> {
    if period < 1 {
        error!("atr: period must be >= 1, got {period}");
    }
    let bars = bars::load(symbol, timeframe, from, to).bars;
    let candles: Vec<_> = bars.iter().map(|b| b.input.candle).collect();
    let series = tapeflow_analytics::atr::atr_series(&candles, period as usize);
    TableIterator::new(
        bars.iter().zip(series).map(|(b, a)| (timestamptz(b.input.time), a)).collect::<Vec<_>>(),
    )
}
