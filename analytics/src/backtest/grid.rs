//! Parameter sweeps over the simulator: a grid of parameter values expanded into combinations,
//! each run over the same bars, and walk-forward analysis (optimise on an in-sample window,
//! test the best combination on the out-of-sample window after it).
//!
//! The database loads the bars and reports progress; everything else (the expansion, the
//! windows, the choice of the best combination) is here, so it is tested without a database.

use super::{BacktestData, BacktestError, BacktestParams, BacktestResult};
use crate::candle::Micros;
use crate::stats::{statistics_annualised, BuyAndHold, Stats};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// Backtest parameters from JSON over the documented defaults, validated; errors name the key.
pub fn params_from_json(params: &Value) -> Result<BacktestParams, String> {
    let p = <BacktestParams as serde::Deserialize>::deserialize(params)
        .map_err(|e| format!("invalid backtest params: {e}"))?;
    p.validate().map_err(|e| format!("invalid backtest params: {e}"))?;
    Ok(p)
}

/// The summary statistics of a run over `[from, to)`, annualised over `annual_days` daily
/// returns a year (the run's symbols' calendars: [`crate::stats::annual_trading_days`]): the
/// tested period is the equity curve's first to last point (the range's ends without one), the
/// benchmark is buy and hold of the run's symbols.
pub fn summary(
    result: &BacktestResult,
    params: &BacktestParams,
    from: Micros,
    to: Micros,
    annual_days: f64,
) -> Stats {
    let start = result.equity.first().map(|e| e.time).unwrap_or(from);
    let end = result.equity.last().map(|e| e.time).unwrap_or(to);
    statistics_annualised(
        result,
        params.initial_cash,
        &BuyAndHold::from_result(result),
        start,
        end,
        annual_days,
    )
}

/// Most combinations a grid may have.
pub const MAX_COMBINATIONS: usize = 10_000;

/// Most windows a walk-forward analysis may have.
pub const MAX_WINDOWS: usize = 10_000;

/// A parameter grid like `{"engine.strategy.min_aggression_score": [50, 60], "slippage_bps":
/// [0, 2]}` over base parameters: every combination of one value per key, each applied over
/// the base (dotted keys are paths into the params object). Combination `i` is built when
/// asked for, so a grid holds only the JSON it was given, whatever its size; combinations are
/// numbered with the last key varying fastest.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    base: Value,
    keys: Vec<(String, Vec<Value>)>,
    len: usize,
}

impl Grid {
    /// Checks the grid's shape (an object of non-empty arrays) and its number of combinations
    /// (the product of the value counts, at most [`MAX_COMBINATIONS`]) before anything is
    /// built. Paths are checked by [`Grid::combination`] (every one by [`Grid::params`]).
    pub fn new(base: Value, grid: Value) -> Result<Grid, String> {
        let Value::Object(obj) = grid else {
            return Err("grid must be a json object of \"path\": [values]".into());
        };
        let mut keys = Vec::with_capacity(obj.len());
        let mut len = Some(1usize);
        for (path, values) in obj {
            let Value::Array(values) = values else {
                return Err(format!("grid: {path} must map to an array of values"));
            };
            if values.is_empty() {
                return Err(format!("grid: {path} has no values"));
            }
            len = len.and_then(|n| n.checked_mul(values.len()));
            keys.push((path, values));
        }
        match len {
            Some(len) if len <= MAX_COMBINATIONS => Ok(Grid { base, keys, len }),
            _ => {
                let counts: Vec<String> = keys.iter().map(|(_, v)| v.len().to_string()).collect();
                let total = len.map_or_else(|| format!("more than {}", usize::MAX), |n| n.to_string());
                Err(format!(
                    "grid: {total} combinations ({} values), more than the {MAX_COMBINATIONS} allowed",
                    counts.join(" × ")
                ))
            }
        }
    }

    /// Number of combinations (≥ 1; the base alone for an empty grid).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never: a grid has at least one combination.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The parameter object of combination `i` (0-based, below [`Grid::len`]).
    pub fn combination(&self, i: usize) -> Result<Value, String> {
        assert!(i < self.len, "combination {i} of a grid of {}", self.len);
        let mut c = self.base.clone();
        let mut rest = i;
        for (path, values) in self.keys.iter().rev() {
            set_path(&mut c, path, values[rest % values.len()].clone())?;
            rest /= values.len();
        }
        Ok(c)
    }

    /// Every combination as validated backtest parameters, in order; the error names the
    /// combination. Each parameter object is built, read and dropped in turn.
    pub fn params(&self) -> Result<Vec<BacktestParams>, String> {
        (0..self.len)
            .map(|i| {
                let c = self.combination(i)?;
                params_from_json(&c).map_err(|e| format!("{e} in {c}"))
            })
            .collect()
    }
}

/// Sets the value at a dotted `path` of `target`, creating the objects on the way.
fn set_path(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let mut node = target;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let map = node.as_object_mut().ok_or_else(|| format!("grid: {path} goes through a non-object"))?;
        if parts.peek().is_none() {
            map.insert(part.to_string(), value);
            return Ok(());
        }
        node = map.entry(part.to_string()).or_insert_with(|| Value::Object(Default::default()));
    }
    Ok(())
}

/// The statistic a walk-forward analysis maximises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Sharpe,
    Sortino,
    Calmar,
    ReturnPct,
    ProfitFactor,
    Sqn,
    WinRatePct,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::Sharpe,
        Metric::Sortino,
        Metric::Calmar,
        Metric::ReturnPct,
        Metric::ProfitFactor,
        Metric::Sqn,
        Metric::WinRatePct,
    ];

    /// Its name in SQL: `sharpe`, `sortino`, `calmar`, `return_pct`, `profit_factor`, `sqn` or
    /// `win_rate_pct`.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Sharpe => "sharpe",
            Metric::Sortino => "sortino",
            Metric::Calmar => "calmar",
            Metric::ReturnPct => "return_pct",
            Metric::ProfitFactor => "profit_factor",
            Metric::Sqn => "sqn",
            Metric::WinRatePct => "win_rate_pct",
        }
    }

    /// The statistic's value in `s`; `None` where it is undefined (no trades, no loser...).
    pub fn of(self, s: &Stats) -> Option<f64> {
        match self {
            Metric::Sharpe => s.sharpe,
            Metric::Sortino => s.sortino,
            Metric::Calmar => s.calmar,
            Metric::ReturnPct => Some(s.return_pct),
            Metric::ProfitFactor => s.profit_factor,
            Metric::Sqn => s.sqn,
            Metric::WinRatePct => s.win_rate_pct,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Metric {
    type Err = String;

    fn from_str(s: &str) -> Result<Metric, String> {
        Metric::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| {
            format!(
                "unknown metric {s}: use sharpe, sortino, calmar, return_pct, profit_factor, sqn or win_rate_pct"
            )
        })
    }
}

/// The index of the best value (the first of equals); an undefined value ranks below every
/// defined one. `None` for no values.
pub fn best_of(values: impl IntoIterator<Item = Option<f64>>) -> Option<(usize, Option<f64>)> {
    let rank = |m: Option<f64>| m.unwrap_or(f64::NEG_INFINITY);
    let mut best: Option<(usize, Option<f64>)> = None;
    for (i, m) in values.into_iter().enumerate() {
        if best.is_none_or(|(_, b)| rank(m) > rank(b)) {
            best = Some((i, m));
        }
    }
    best
}

/// One walk-forward window: in-sample `[in_from, out_from)`, out-of-sample `[out_from, out_to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// 1, 2, …
    pub number: u32,
    pub in_from: Micros,
    pub out_from: Micros,
    pub out_to: Micros,
}

/// The windows of a walk-forward analysis over `[from, to)`: `in_sample` then `out_of_sample`
/// long (both > 0), stepping by `out_of_sample`, each wholly inside the range; at most
/// [`MAX_WINDOWS`] (counted before any is built). A range whose `from` is after its `to` is
/// an error naming both.
pub fn walk_forward_windows(
    from: Micros,
    to: Micros,
    in_sample: Micros,
    out_of_sample: Micros,
) -> Result<Vec<Window>, String> {
    if from > to {
        return Err(format!("walk-forward: from ({from}) is after to ({to})"));
    }
    if in_sample <= 0 || out_of_sample <= 0 {
        return Err("in_sample and out_of_sample must be positive".into());
    }
    // In i128: the sums of two lengths and a time cannot overflow.
    let (from, to, ins, outs) =
        (i128::from(from), i128::from(to), i128::from(in_sample), i128::from(out_of_sample));
    let count = if from + ins + outs <= to { (to - from - ins - outs) / outs + 1 } else { 0 };
    if count > MAX_WINDOWS as i128 {
        return Err(format!(
            "walk-forward: {count} windows, more than the {MAX_WINDOWS} allowed: use longer windows or a shorter range"
        ));
    }
    // Every window ends at or before `to`, so its times fit in Micros.
    Ok((0..count)
        .map(|k| {
            let start = from + k * outs;
            Window {
                number: k as u32 + 1,
                in_from: start as Micros,
                out_from: (start + ins) as Micros,
                out_to: (start + ins + outs) as Micros,
            }
        })
        .collect())
}

/// Which simulation of a sweep is running (for progress reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepRun {
    /// Combination `combination` (1-based) of `of`, of a grid.
    Grid { combination: usize, of: usize },
    /// Combination `combination` (1-based) over the in-sample part of walk-forward `window`.
    InSample { window: u32, combination: usize },
    /// The chosen combination over the out-of-sample part of `window`.
    OutOfSample { window: u32 },
}

impl fmt::Display for SweepRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SweepRun::Grid { combination, of } => write!(f, "backtest_grid {combination}/{of}"),
            SweepRun::InSample { window, combination } => {
                write!(f, "walk-forward window {window} in-sample {combination}")
            }
            SweepRun::OutOfSample { window } => write!(f, "walk-forward window {window} out-of-sample"),
        }
    }
}

/// Runs one simulation of a sweep over loaded data (the caller reports its progress).
pub type Simulate<'a> =
    dyn FnMut(&mut BacktestData, &BacktestParams, SweepRun) -> Result<BacktestResult, BacktestError> + 'a;

/// Loads the bars of `[from, to)` with their profiles on rows of `ticks_per_row` ticks (the
/// combination's `engine.ticks_per_row`; see [`super::bar_profile_on_grid`]).
pub type Load<'a> = dyn FnMut(Micros, Micros, u32) -> Result<BacktestData, BacktestError> + 'a;

/// Every combination of `params` over the bars of `[from, to)`, loaded once per profile grid
/// (`engine.ticks_per_row`) the combinations use, one grid's bars at a time; the statistics of
/// each combination (annualised over `annual_days`), in order. `name(i)` names the run of
/// combination `i`.
fn run_each(
    params: &[BacktestParams],
    (from, to): (Micros, Micros),
    annual_days: f64,
    load: &mut Load,
    simulate: &mut Simulate,
    name: impl Fn(usize) -> SweepRun,
) -> Result<Vec<Stats>, BacktestError> {
    let mut grids: Vec<u32> = Vec::new();
    for p in params {
        if !grids.contains(&p.engine.ticks_per_row) {
            grids.push(p.engine.ticks_per_row);
        }
    }
    let mut out: Vec<Option<Stats>> = vec![None; params.len()];
    for ticks_per_row in grids {
        let mut data = load(from, to, ticks_per_row)?;
        for (i, p) in params.iter().enumerate().filter(|(_, p)| p.engine.ticks_per_row == ticks_per_row) {
            let result = simulate(&mut data, p, name(i))?;
            out[i] = Some(summary(&result, p, from, to, annual_days));
        }
    }
    Ok(out.into_iter().map(|s| s.expect("every combination ran")).collect())
}

/// Every combination of `params` over the bars of `[from, to)` (loaded once per profile grid
/// the combinations use); the statistics of each, annualised over `annual_days` (see
/// [`summary`]), in order.
pub fn grid_search(
    params: &[BacktestParams],
    from: Micros,
    to: Micros,
    annual_days: f64,
    load: &mut Load,
    simulate: &mut Simulate,
) -> Result<Vec<Stats>, BacktestError> {
    let of = params.len();
    run_each(params, (from, to), annual_days, load, simulate, |i| SweepRun::Grid { combination: i + 1, of })
}

/// The outcome of one walk-forward window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult {
    pub window: Window,
    /// Index in the combinations of the one with the best in-sample metric.
    pub best: usize,
    /// Its in-sample metric (`None`: undefined for every combination).
    pub in_sample_metric: Option<f64>,
    /// Its statistics over the out-of-sample part.
    pub out_of_sample: Stats,
}

/// Walk-forward analysis: in each window, every combination of `params` runs over the
/// in-sample bars (as [`grid_search`] runs them), the best by `metric` ([`best_of`]) then runs
/// over the out-of-sample bars. Statistics in and out of sample are annualised over
/// `annual_days` (see [`summary`]).
pub fn walk_forward(
    params: &[BacktestParams],
    windows: &[Window],
    metric: Metric,
    annual_days: f64,
    load: &mut Load,
    simulate: &mut Simulate,
) -> Result<Vec<WindowResult>, BacktestError> {
    let mut out = Vec::with_capacity(windows.len());
    for w in windows {
        let in_sample = run_each(params, (w.in_from, w.out_from), annual_days, load, simulate, |i| {
            SweepRun::InSample { window: w.number, combination: i + 1 }
        })?;
        let Some((best, in_sample_metric)) = best_of(in_sample.iter().map(|s| metric.of(s))) else {
            return Err(BacktestError::Data("walk-forward: the grid has no combinations".into()));
        };
        let p = &params[best];
        let mut out_data = load(w.out_from, w.out_to, p.engine.ticks_per_row)?;
        let r = simulate(&mut out_data, p, SweepRun::OutOfSample { window: w.number })?;
        let out_of_sample = summary(&r, p, w.out_from, w.out_to, annual_days);
        out.push(WindowResult { window: *w, best, in_sample_metric, out_of_sample });
    }
    Ok(out)
}
