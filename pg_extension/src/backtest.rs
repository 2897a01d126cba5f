//! Backtests in SQL: the simulator of `tapeflow_analytics::backtest` (the live strategy's bar
//! engine, a fill model without look-ahead, decimal money) over stored one-minute bars.

use crate::bars;
use crate::candle::{micros, timestamptz};
use crate::live::in_subtransaction;
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::{AnyNumeric, JsonB};
use rust_decimal::Decimal;
use std::panic::AssertUnwindSafe;
use tapeflow_analytics::backtest::grid::{
    grid_search, params_from_json, summary, walk_forward, walk_forward_windows, Grid, Metric, SweepRun,
};
use tapeflow_analytics::backtest::{
    default_threads, evaluate_all, mark_session_ends, run, run_with, BacktestData, BacktestError,
    BacktestParams, BacktestResult, Progress, Stage, SymbolSeries,
};
use tapeflow_analytics::stats::{annual_trading_days, Calendar, Convention, Stats};
use tapeflow_analytics::Micros;

/// Backtest parameters from jsonb over the documented defaults; errors name the key.
fn params_from(params: &JsonB) -> Result<BacktestParams, String> {
    params_from_json(&params.0)
}

/// Checks backtest parameters (jsonb): raises an error naming an unknown key or an
/// out-of-range value.
#[pg_extern(immutable, parallel_safe)]
fn validate_backtest_params(params: JsonB) -> bool {
    params_from(&params).unwrap_or_else(|e| error!("{e}"));
    true
}

fn session_complete(symbol: &str, last_bar: Micros, to: TimestampWithTimeZone) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT (tapeflow.session_bounds(s.symbol, tapeflow.session_date($2, s.timezone, s.session_open))).session_end <= $3
         FROM tapeflow.symbol_row($1) s",
        &[symbol.into(), timestamptz(last_bar).into(), to.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

static THREADS: GucSetting<i32> = GucSetting::<i32>::new(0);

/// Registers `tapeflow.backtest_threads`.
pub fn init() {
    GucRegistry::define_int_guc(
        c"tapeflow.backtest_threads",
        c"Threads that evaluate a backtest's symbols (0: one per CPU core).",
        c"The bar engine reads each symbol on its own thread while the backend loads the next; results do not depend on it.",
        &THREADS,
        0,
        1024,
        GucContext::Userset,
        GucFlags::default(),
    );
}

fn threads() -> usize {
    match THREADS.get() {
        n if n > 0 => n as usize,
        _ => default_threads(),
    }
}

/// The one-minute bars of `symbol` in [from, to), their profiles on rows of `ticks_per_row`
/// ticks (the engine's grid; stored profiles are re-binned).
fn load_series(
    symbol: &str,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
    ticks_per_row: u32,
) -> SymbolSeries {
    let mut series = bars::load_on_grid(symbol, "1m", from, to, ticks_per_row);
    let complete = series.bars.last().map(|b| session_complete(symbol, b.input.time, to)).unwrap_or(true);
    mark_session_ends(&mut series.bars, complete);
    series
}

/// Loads the one-minute bars of every symbol in [from, to) (priority = order given), profiles
/// on rows of `ticks_per_row` ticks, for runs that reuse them (sweeps).
fn load_data(
    symbols: &[String],
    from: Micros,
    to: Micros,
    ticks_per_row: u32,
) -> Result<BacktestData, BacktestError> {
    let (from, to) = (timestamptz(from), timestamptz(to));
    let series = symbols.iter().map(|s| load_series(s, from, to, ticks_per_row)).collect();
    Ok(BacktestData::new(series)?.with_threads(threads()))
}

/// Progress as a NOTICE (`label: 42% (…)`, which the web app relays) after checking for
/// cancel requests (Ctrl-C, pg_cancel_backend). Reports come at least every 100 ms; a NOTICE
/// is sent when the whole percentage grows (or the run ends), so a run prints at most ~100.
struct Reporter<'a> {
    label: &'a str,
    last_pct: Option<i64>,
}

impl<'a> Reporter<'a> {
    fn new(label: &'a str) -> Reporter<'a> {
        Reporter { label, last_pct: None }
    }

    fn report(&mut self, p: Progress) -> bool {
        pgrx::check_for_interrupts!();
        let pct = (100.0 * p.fraction()).floor() as i64;
        let done = p.stage == Stage::Simulating && p.bars_processed == p.bars_total;
        if self.last_pct.is_some_and(|last| pct <= last) && !done {
            return true;
        }
        self.last_pct = Some(pct);
        let label = self.label;
        match p.stage {
            Stage::Evaluating => notice!(
                "{label}: {pct}% (evaluating: {} of {} symbols, {} bars)",
                p.symbols_done,
                p.symbols,
                p.bars_processed
            ),
            Stage::Simulating => notice!(
                "{label}: {pct}% (simulating: {} of {} bars, {} trades)",
                p.bars_processed,
                p.bars_total,
                p.trades
            ),
        }
        true
    }
}

/// Runs the simulator over loaded data (sweeps run the same data many times), reporting
/// progress under the run's name.
fn simulate(
    data: &mut BacktestData,
    params: &BacktestParams,
    run_name: SweepRun,
) -> Result<BacktestResult, BacktestError> {
    let label = run_name.to_string();
    let mut reporter = Reporter::new(&label);
    run(data, params, &mut |p| reporter.report(p))
}

/// Loads and runs one backtest (`params` already validated, as `params_from` does): each
/// symbol's engine runs on a worker thread while the next symbol loads.
fn load_and_simulate(
    symbols: &[String],
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
    params: &BacktestParams,
    label: &str,
) -> Result<BacktestResult, BacktestError> {
    let mut reporter = Reporter::new(label);
    let mut progress = |p: Progress| reporter.report(p);
    let mut produce = |i: usize| Ok(load_series(&symbols[i], from, to, params.engine.ticks_per_row));
    let (mut data, mut readings) =
        evaluate_all(&params.engine, threads(), symbols.len(), &mut produce, &mut progress)?;
    run_with(&mut data, params, &mut readings, &mut progress)
}

/// Raises an error naming both ends when `from` is after `to` (`from` = `to` is an empty range:
/// no bars).
fn check_range(function: &str, from: TimestampWithTimeZone, to: TimestampWithTimeZone) {
    if micros(from) > micros(to) {
        error!("{function}: from ({from}) is after to ({to})");
    }
}

/// Daily returns a year for a run over `symbols`: by their calendars in `tapeflow.symbols`
/// (365 when one of them trades every day, else 252; see `stats::annual_trading_days`). Every
/// statistic the database computes or restates is annualised by this.
fn annual_days(symbols: &[String]) -> f64 {
    let (open, class) = Spi::get_two_with_args::<Vec<bool>, Vec<String>>(
        "SELECT array_agg(session_open = session_close), array_agg(asset_class)
         FROM tapeflow.symbols WHERE symbol = ANY ($1)",
        &[symbols.to_vec().into()],
    )
    .unwrap_or_else(|e| error!("reading the symbols' calendars: {e}"));
    let (open, class) = (open.unwrap_or_default(), class.unwrap_or_default());
    annual_trading_days(open.iter().zip(&class).map(|(&o, c)| Calendar { always_open: o, asset_class: c }))
}

fn numeric(d: Decimal) -> AnyNumeric {
    AnyNumeric::try_from(d.to_string().as_str()).expect("decimals are valid numerics")
}

/// Runs the AMT strategy over the one-minute bars of `symbols` in [from, to) and returns the
/// trades: side, quantity, entry and exit (time, price), P&L after fees, fees, exit reason
/// (stop, target, signal, session_end, end_of_data), and the maximum adverse / favourable
/// excursion in money. Nothing is stored; see backtest_run for persisted runs.
///
/// Memory: the run's bars (about 230 bytes each once evaluated; at most one symbol per thread
/// keeps its bar profiles while it waits to be evaluated), its equity curve (one point per bar
/// time) and its trades (at most one per bar); rows are made from the trades one at a time.
#[pg_extern(volatile)]
fn backtest(
    symbols: Vec<String>,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
    params: default!(JsonB, "'{}'"),
) -> TableIterator<
    'static,
    (
        name!(symbol, String),
        name!(side, String),
        name!(quantity, i64),
        name!(entry_time, TimestampWithTimeZone),
        name!(entry_price, AnyNumeric),
        name!(exit_time, TimestampWithTimeZone),
        name!(exit_price, AnyNumeric),
        name!(pnl, AnyNumeric),
        name!(return_pct, f64),
        name!(fees, AnyNumeric),
        name!(exit_reason, String),
        name!(mae, AnyNumeric),
        name!(mfe, AnyNumeric),
        name!(bars, i32),
    ),
> {
    check_range("backtest", from, to);
    let p = params_from(&params).unwrap_or_else(|e| error!("{e}"));
    let result =
        load_and_simulate(&symbols, from, to, &p, "backtest").unwrap_or_else(|e| error!("backtest: {e}"));
    let rows = result.trades.into_iter().map(|t| {
        (
            t.symbol,
            t.direction.as_str().to_string(),
            t.qty as i64,
            timestamptz(t.entry_time),
            numeric(t.entry_price),
            timestamptz(t.exit_time),
            numeric(t.exit_price),
            numeric(t.pnl),
            t.return_pct,
            numeric(t.entry_fee + t.exit_fee),
            t.exit_reason.to_string(),
            numeric(t.mae),
            numeric(t.mfe),
            t.bars as i32,
        )
    });
    TableIterator::new(rows)
}

fn set_status(id: i64, status: &str, error: Option<String>) {
    Spi::run_with_args(
        "UPDATE tapeflow.backtest_runs SET status = $2, error = $3, finished_at = clock_timestamp() WHERE id = $1",
        &[id.into(), status.into(), error.into()],
    )
    .unwrap_or_else(|e| error!("{e}"));
}

fn store(id: i64, result: &BacktestResult, stats: &Stats) {
    let t = &result.trades;
    Spi::run_with_args(
        "INSERT INTO tapeflow.backtest_trades (run_id, n, symbol, side, quantity, entry_time, entry_price, exit_time,
             exit_price, pnl, return_pct, fees, exit_reason, mae, mfe, bars, entry_reason)
         SELECT $1, n, symbol, side, quantity, entry_time, entry_price::numeric, exit_time, exit_price::numeric,
                pnl::numeric, return_pct, fees::numeric, exit_reason, mae::numeric, mfe::numeric, bars, entry_reason
         FROM unnest($2::text[], $3::text[], $4::bigint[], $5::timestamptz[], $6::text[], $7::timestamptz[], $8::text[],
                     $9::text[], $10::float8[], $11::text[], $12::text[], $13::text[], $14::text[], $15::int[], $16::text[])
              WITH ORDINALITY AS x(symbol, side, quantity, entry_time, entry_price, exit_time, exit_price, pnl,
                                   return_pct, fees, exit_reason, mae, mfe, bars, entry_reason, n)",
        &[
            id.into(),
            t.iter().map(|x| x.symbol.clone()).collect::<Vec<_>>().into(),
            t.iter().map(|x| x.direction.as_str().to_string()).collect::<Vec<_>>().into(),
            t.iter().map(|x| x.qty as i64).collect::<Vec<_>>().into(),
            t.iter().map(|x| timestamptz(x.entry_time)).collect::<Vec<_>>().into(),
            t.iter().map(|x| x.entry_price.to_string()).collect::<Vec<_>>().into(),
            t.iter().map(|x| timestamptz(x.exit_time)).collect::<Vec<_>>().into(),
            t.iter().map(|x| x.exit_price.to_string()).collect::<Vec<_>>().into(),
            t.iter().map(|x| x.pnl.to_string()).collect::<Vec<_>>().into(),
            t.iter().map(|x| x.return_pct).collect::<Vec<_>>().into(),
            t.iter().map(|x| (x.entry_fee + x.exit_fee).to_string()).collect::<Vec<_>>().into(),
            t.iter().map(|x| x.exit_reason.to_string()).collect::<Vec<_>>().into(),
            t.iter().map(|x| x.mae.to_string()).collect::<Vec<_>>().into(),
            t.iter().map(|x| x.mfe.to_string()).collect::<Vec<_>>().into(),
            t.iter().map(|x| x.bars as i32).collect::<Vec<_>>().into(),
            t.iter().map(|x| x.entry_reason.clone()).collect::<Vec<_>>().into(),
        ],
    )
    .unwrap_or_else(|e| error!("storing trades: {e}"));
    let e = &result.equity;
    Spi::run_with_args(
        "INSERT INTO tapeflow.backtest_equity (run_id, time, equity, cash, drawdown, drawdown_pct, open_positions)
         SELECT $1, time, equity::numeric, cash::numeric, drawdown::numeric, drawdown_pct, open_positions
         FROM unnest($2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::int[])
              AS x(time, equity, cash, drawdown, drawdown_pct, open_positions)",
        &[
            id.into(),
            e.iter().map(|x| timestamptz(x.time)).collect::<Vec<_>>().into(),
            e.iter().map(|x| x.equity.to_string()).collect::<Vec<_>>().into(),
            e.iter().map(|x| x.cash.to_string()).collect::<Vec<_>>().into(),
            e.iter().map(|x| x.drawdown.to_string()).collect::<Vec<_>>().into(),
            e.iter().map(|x| x.drawdown_pct).collect::<Vec<_>>().into(),
            e.iter().map(|x| x.open_positions as i32).collect::<Vec<_>>().into(),
        ],
    )
    .unwrap_or_else(|e| error!("storing the equity curve: {e}"));
    let d = &result.daily;
    Spi::run_with_args(
        "INSERT INTO tapeflow.backtest_daily (run_id, day, start_equity, end_equity, pnl, return_pct, entries, trades)
         SELECT $1, date '2000-01-01' + day, start_equity::numeric, end_equity::numeric, pnl::numeric, return_pct, entries, trades
         FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::int[], $8::int[])
              AS x(day, start_equity, end_equity, pnl, return_pct, entries, trades)",
        &[
            id.into(),
            d.iter().map(|x| x.day as i32).collect::<Vec<_>>().into(),
            d.iter().map(|x| x.start_equity.to_string()).collect::<Vec<_>>().into(),
            d.iter().map(|x| x.end_equity.to_string()).collect::<Vec<_>>().into(),
            d.iter().map(|x| x.pnl.to_string()).collect::<Vec<_>>().into(),
            d.iter().map(|x| x.return_pct).collect::<Vec<_>>().into(),
            d.iter().map(|x| x.entries as i32).collect::<Vec<_>>().into(),
            d.iter().map(|x| x.trades as i32).collect::<Vec<_>>().into(),
        ],
    )
    .unwrap_or_else(|e| error!("storing daily statistics: {e}"));
    Spi::run_with_args(
        "UPDATE tapeflow.backtest_runs SET stats = $2, bars = $3, progress = 1 WHERE id = $1",
        &[
            id.into(),
            JsonB(serde_json::to_value(stats).unwrap_or_default()).into(),
            (result.bars_processed as i64).into(),
        ],
    )
    .unwrap_or_else(|e| error!("{e}"));
}

/// How an executed run ended, once its subtransaction is over.
enum Ended {
    Completed,
    Failed(String),
    Cancelled(String),
}

impl Ended {
    fn status(&self) -> (&'static str, Option<String>) {
        match self {
            Ended::Completed => ("completed", None),
            Ended::Failed(e) => ("failed", Some(e.clone())),
            Ended::Cancelled(e) => ("cancelled", Some(e.clone())),
        }
    }
}

/// The message of a caught PostgreSQL error or panic.
fn caught_message(e: &CaughtError) -> String {
    match e {
        CaughtError::PostgresError(r)
        | CaughtError::ErrorReport(r)
        | CaughtError::RustPanic { ereport: r, .. } => r.message().to_string(),
    }
}

/// The run proper: loads its bars, simulates and stores the results (in the caller's
/// subtransaction); how it ended, unless a PostgreSQL error ends it.
fn run_and_store(
    run_id: i64,
    symbols: &[String],
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
    params: &JsonB,
) -> Ended {
    let p = match params_from(params) {
        Ok(p) => p,
        Err(e) => return Ended::Failed(e),
    };
    match load_and_simulate(symbols, from, to, &p, &format!("backtest {run_id}")) {
        Ok(result) => {
            let stats = summary(&result, &p, micros(from), micros(to), annual_days(symbols));
            store(run_id, &result, &stats);
            Ended::Completed
        }
        Err(e @ BacktestError::Cancelled { .. }) => Ended::Cancelled(e.to_string()),
        Err(e) => Ended::Failed(e.to_string()),
    }
}

/// Executes a registered run (see backtest_create) that is pending, or failed or cancelled
/// before: loads its bars, simulates, and stores the trades, the equity curve (one point per
/// bar time), daily and summary statistics. Progress is reported as NOTICEs.
///
/// The run itself executes in a subtransaction. Whatever ends it (bad data or parameters, a
/// PostgreSQL error, a cancel: Ctrl-C, pg_cancel_backend, statement_timeout) rolls back what
/// it wrote; then its status, completed, failed or cancelled with the error, is written in
/// the caller's transaction and announced on `tapeflow_backtests`, and the run id is
/// returned (a cancelled run also raises a WARNING). Only errors outside the run (an unknown
/// run, one that is running or completed) are raised.
#[pg_extern(volatile)]
fn backtest_execute(run_id: i64) -> i64 {
    let row = Spi::get_three_with_args::<Vec<String>, TimestampWithTimeZone, TimestampWithTimeZone>(
        "UPDATE tapeflow.backtest_runs SET status = 'running', started_at = clock_timestamp(), error = NULL,
                finished_at = NULL
         WHERE id = $1 AND status IN ('pending', 'failed', 'cancelled') RETURNING symbols, \"from\", \"to\"",
        &[run_id.into()],
    );
    let Ok((Some(symbols), Some(from), Some(to))) = row else {
        error!("backtest run {run_id} does not exist or is not pending, failed or cancelled");
    };
    let params: JsonB =
        Spi::get_one_with_args("SELECT params FROM tapeflow.backtest_runs WHERE id = $1", &[run_id.into()])
            .ok()
            .flatten()
            .unwrap_or(JsonB(serde_json::json!({})));
    // A cancel rolls the subtransaction back and comes out of it as itself: caught here, after.
    let ended = PgTryBuilder::new(AssertUnwindSafe(|| {
        in_subtransaction(|| run_and_store(run_id, &symbols, from, to, &params)).unwrap_or_else(Ended::Failed)
    }))
    .catch_when(PgSqlErrorCode::ERRCODE_QUERY_CANCELED, |e| Ended::Cancelled(caught_message(&e)))
    .execute();
    let (status, error) = ended.status();
    set_status(run_id, status, error);
    Spi::run_with_args(
        "SELECT pg_notify('tapeflow_backtests', json_build_object('id', id, 'status', status, 'error', error)::text)
         FROM tapeflow.backtest_runs WHERE id = $1",
        &[run_id.into()],
    )
    .unwrap_or_else(|e| error!("{e}"));
    if let Ended::Cancelled(e) = &ended {
        warning!("backtest {run_id} cancelled: {}", e);
    }
    run_id
}

fn duration_text(us: Option<Micros>) -> Option<String> {
    us.map(|us| {
        let secs = us / 1_000_000;
        let (d, h, m) = (secs / 86_400, (secs % 86_400) / 3_600, (secs % 3_600) / 60);
        if d > 0 {
            format!("{d} days {h:02}:{m:02}")
        } else {
            format!("{h:02}:{m:02}:{:02}", secs % 60)
        }
    })
}

fn f(x: Option<f64>) -> Option<String> {
    x.map(|v| format!("{v:.4}"))
}

/// The run's statistics, one row each, in backtesting.py's order: statistic, value as text,
/// and the number where there is one. `convention => 'tapeflow'` (the default): daily returns
/// of the equity curve annualised by the run's symbols' calendars (365 days a year when one
/// trades every day, else 252), risk-free rate 0; CAGR over calendar time (365.25 days).
/// `convention => 'backtesting.py'`: annualised values, drawdown, profit factor and average
/// trade as backtesting.py defines them (see `Stats::backtesting_py`).
///
/// Memory: the run's stored statistics and a fixed list of 30 rows; with backtesting.py's
/// convention also the equity curve (16 bytes a point) and the trade returns.
#[pg_extern(stable)]
fn backtest_stats(
    run_id: i64,
    convention: default!(&str, "'tapeflow'"),
) -> TableIterator<
    'static,
    (name!(statistic, String), name!(value, Option<String>), name!(number, Option<f64>)),
> {
    let stats: JsonB =
        Spi::get_one_with_args("SELECT stats FROM tapeflow.backtest_runs WHERE id = $1", &[run_id.into()])
            .unwrap_or_else(|e| error!("{e}"))
            .unwrap_or_else(|| {
                error!("backtest run {run_id} has no statistics (unknown, not run, or failed)")
            });
    let s: Stats =
        serde_json::from_value(stats.0).unwrap_or_else(|e| error!("stored statistics unreadable: {e}"));
    let s = in_convention(run_id, &s, convention.parse().unwrap_or_else(|e: String| error!("{e}")));
    let dec = |d: Decimal| d.to_string().parse::<f64>().ok();
    let rows: Vec<(&str, Option<String>, Option<f64>)> = vec![
        ("Start", Some(timestamptz(s.start).to_iso_string()), None),
        ("End", Some(timestamptz(s.end).to_iso_string()), None),
        ("Duration", duration_text(Some(s.duration)), Some(s.duration as f64 / 86_400e6)),
        ("Exposure Time [%]", f(s.exposure_time_pct), s.exposure_time_pct),
        ("Equity Final [$]", Some(s.equity_final.round_dp(2).to_string()), dec(s.equity_final)),
        ("Equity Peak [$]", Some(s.equity_peak.round_dp(2).to_string()), dec(s.equity_peak)),
        ("Return [%]", f(Some(s.return_pct)), Some(s.return_pct)),
        ("Buy & Hold Return [%]", f(s.buy_and_hold_return_pct), s.buy_and_hold_return_pct),
        ("Return (Ann.) [%]", f(s.annual_return_pct), s.annual_return_pct),
        ("Volatility (Ann.) [%]", f(s.annual_volatility_pct), s.annual_volatility_pct),
        ("CAGR [%]", f(s.cagr_pct), s.cagr_pct),
        ("Sharpe Ratio", f(s.sharpe), s.sharpe),
        ("Sortino Ratio", f(s.sortino), s.sortino),
        ("Calmar Ratio", f(s.calmar), s.calmar),
        ("Max. Drawdown [%]", f(Some(s.max_drawdown_pct)), Some(s.max_drawdown_pct)),
        ("Avg. Drawdown [%]", f(s.avg_drawdown_pct), s.avg_drawdown_pct),
        (
            "Max. Drawdown Duration",
            duration_text(s.max_drawdown_duration),
            s.max_drawdown_duration.map(|d| d as f64 / 86_400e6),
        ),
        (
            "Avg. Drawdown Duration",
            duration_text(s.avg_drawdown_duration),
            s.avg_drawdown_duration.map(|d| d as f64 / 86_400e6),
        ),
        ("# Trades", Some(s.trades.to_string()), Some(s.trades as f64)),
        ("Win Rate [%]", f(s.win_rate_pct), s.win_rate_pct),
        ("Best Trade [%]", f(s.best_trade_pct), s.best_trade_pct),
        ("Worst Trade [%]", f(s.worst_trade_pct), s.worst_trade_pct),
        ("Avg. Trade [%]", f(s.avg_trade_pct), s.avg_trade_pct),
        (
            "Max. Trade Duration",
            duration_text(s.max_trade_duration),
            s.max_trade_duration.map(|d| d as f64 / 86_400e6),
        ),
        (
            "Avg. Trade Duration",
            duration_text(s.avg_trade_duration),
            s.avg_trade_duration.map(|d| d as f64 / 86_400e6),
        ),
        ("Profit Factor", f(s.profit_factor), s.profit_factor),
        ("Expectancy [%]", f(s.expectancy_pct), s.expectancy_pct),
        ("SQN", f(s.sqn), s.sqn),
        ("Kelly Criterion", f(s.kelly_criterion), s.kelly_criterion),
        ("Total Fees [$]", Some(s.total_fees.round_dp(2).to_string()), dec(s.total_fees)),
    ];
    TableIterator::new(rows.into_iter().map(|(k, v, n)| (k.to_string(), v, n)).collect::<Vec<_>>())
}

/// A run's stored statistics in `convention`, from its symbols' calendars or its stored equity
/// curve and trades. Runs stored since statistics are annualised when stored already are on
/// their calendars; older ones (252 days) are restated.
fn in_convention(run_id: i64, s: &Stats, convention: Convention) -> Stats {
    let id = [run_id.into()];
    match convention {
        Convention::Tapeflow => {
            let symbols = Spi::get_one_with_args::<Vec<String>>(
                "SELECT symbols FROM tapeflow.backtest_runs WHERE id = $1",
                &id,
            )
            .unwrap_or_else(|e| error!("{e}"))
            .unwrap_or_default();
            s.annualised(annual_days(&symbols))
        }
        Convention::BacktestingPy => {
            let (times, equity) = Spi::get_two_with_args::<Vec<TimestampWithTimeZone>, Vec<f64>>(
                "SELECT array_agg(time ORDER BY time), array_agg(equity::float8 ORDER BY time)
                 FROM tapeflow.backtest_equity WHERE run_id = $1",
                &id,
            )
            .unwrap_or_else(|e| error!("{e}"));
            let curve: Vec<(Micros, f64)> =
                times.unwrap_or_default().into_iter().map(micros).zip(equity.unwrap_or_default()).collect();
            let returns = Spi::get_one_with_args::<Vec<f64>>(
                "SELECT array_agg(return_pct ORDER BY n) FROM tapeflow.backtest_trades WHERE run_id = $1",
                &id,
            )
            .unwrap_or_else(|e| error!("{e}"));
            s.backtesting_py(&curve, &returns.unwrap_or_default())
        }
    }
}

/// One simulation per parameter combination over bars loaded once; returns the statistics
/// of each, annualised by the symbols' calendars as `backtest_stats` does. NOTICEs report
/// progress; Ctrl-C cancels.
///
/// Memory: at most `grid::MAX_COMBINATIONS` (10,000) combinations, counted from the grid's value
/// counts before any is built (more is an error); the bars (as `backtest`) once per profile
/// grid the combinations use (`engine.ticks_per_row`), one grid's at a time; one run's result
/// at a time, and per combination its parameters and statistics (hundreds of bytes
/// each). A row's params object is built when the row is returned.
#[pg_extern(volatile)]
fn backtest_grid(
    symbols: Vec<String>,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
    grid: JsonB,
    base: default!(JsonB, "'{}'"),
) -> TableIterator<
    'static,
    (
        name!(combination, i32),
        name!(params, JsonB),
        name!(trades, i64),
        name!(return_pct, f64),
        name!(sharpe, Option<f64>),
        name!(sortino, Option<f64>),
        name!(max_drawdown_pct, f64),
        name!(win_rate_pct, Option<f64>),
        name!(profit_factor, Option<f64>),
        name!(sqn, Option<f64>),
        name!(final_equity, AnyNumeric),
    ),
> {
    check_range("backtest_grid", from, to);
    let grid = Grid::new(base.0, grid.0).unwrap_or_else(|e| error!("{e}"));
    let params = grid.params().unwrap_or_else(|e| error!("{e}"));
    let mut load = |from, to, ticks_per_row| load_data(&symbols, from, to, ticks_per_row);
    let stats =
        grid_search(&params, micros(from), micros(to), annual_days(&symbols), &mut load, &mut simulate)
            .unwrap_or_else(|e| error!("backtest_grid: {e}"));
    let rows = stats.into_iter().enumerate().map(move |(i, s)| {
        (
            i as i32 + 1,
            JsonB(grid.combination(i).unwrap_or_else(|e| error!("{e}"))),
            s.trades as i64,
            s.return_pct,
            s.sharpe,
            s.sortino,
            s.max_drawdown_pct,
            s.win_rate_pct,
            s.profit_factor,
            s.sqn,
            numeric(s.equity_final),
        )
    });
    TableIterator::new(rows)
}

/// Walk-forward analysis: rolling windows of `in_sample` followed by `out_of_sample`; in each,
/// the grid combination with the best in-sample `metric` is chosen and then tested on the
/// out-of-sample window that follows. Windows step by `out_of_sample`. Statistics (the metric
/// too) are annualised by the symbols' calendars, as `backtest_stats` does.
///
/// Memory: at most `grid::MAX_WINDOWS` (10,000) windows, counted before any runs (more is an
/// error), and a grid as `backtest_grid` allows; one window's bars and one run's result at a
/// time, the combinations' parameters, and per window its statistics.
#[pg_extern(volatile)]
#[allow(clippy::too_many_arguments)]
fn backtest_walk_forward(
    symbols: Vec<String>,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
    grid: JsonB,
    in_sample: Interval,
    out_of_sample: Interval,
    metric_name: default!(&str, "'sharpe'"),
    base: default!(JsonB, "'{}'"),
) -> TableIterator<
    'static,
    (
        name!(window_no, i32),
        name!(in_from, TimestampWithTimeZone),
        name!(out_from, TimestampWithTimeZone),
        name!(out_to, TimestampWithTimeZone),
        name!(best_params, JsonB),
        name!(in_sample_metric, Option<f64>),
        name!(out_trades, i64),
        name!(out_return_pct, f64),
        name!(out_sharpe, Option<f64>),
        name!(out_max_drawdown_pct, f64),
    ),
> {
    let span = |i: &Interval| -> i64 {
        if i.months() != 0 {
            error!("walk-forward windows must be given in days or smaller units, e.g. '30 days'");
        }
        (i.days() as i64)
            .checked_mul(86_400_000_000)
            .and_then(|d| d.checked_add(i.micros()))
            .unwrap_or_else(|| error!("walk-forward window of {i} is too long"))
    };
    check_range("backtest_walk_forward", from, to);
    let windows = walk_forward_windows(micros(from), micros(to), span(&in_sample), span(&out_of_sample))
        .unwrap_or_else(|e| error!("{e}"));
    let metric: Metric = metric_name.parse().unwrap_or_else(|e: String| error!("{e}"));
    let grid = Grid::new(base.0, grid.0).unwrap_or_else(|e| error!("{e}"));
    let params = grid.params().unwrap_or_else(|e| error!("{e}"));
    let mut load = |from, to, ticks_per_row| load_data(&symbols, from, to, ticks_per_row);
    let results = walk_forward(&params, &windows, metric, annual_days(&symbols), &mut load, &mut simulate)
        .unwrap_or_else(|e| error!("walk-forward: {e}"));
    let rows = results.into_iter().map(move |r| {
        let (w, s) = (r.window, r.out_of_sample);
        (
            w.number as i32,
            timestamptz(w.in_from),
            timestamptz(w.out_from),
            timestamptz(w.out_to),
            JsonB(grid.combination(r.best).unwrap_or_else(|e| error!("{e}"))),
            r.in_sample_metric,
            s.trades as i64,
            s.return_pct,
            s.sharpe,
            s.max_drawdown_pct,
        )
    });
    TableIterator::new(rows)
}
