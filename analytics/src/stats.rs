//! Performance statistics of a backtest: the usual list of a bar-based backtester (start, end,
//! exposure, returns, risk-adjusted ratios, drawdowns, trade statistics), each with its formula.
//!
//! Conventions ([`Convention::Tapeflow`], the default):
//!
//! * **Daily returns** `r_d` are [`crate::backtest::DailyStat::return_pct`] / 100: the equity
//!   curve resampled to one value per day (the equity at the day's last bar; the first day is
//!   measured from the initial cash). Days without bars do not exist in the series.
//! * **Annualisation** uses `A` daily returns a year ([`Stats::annual_trading_days`]): by the
//!   run's symbols' calendars ([`annual_trading_days`]), [`CALENDAR_DAYS`] = 365 when a symbol
//!   trades every day, else [`TRADING_DAYS`] = 252. [`statistics`] itself uses 252; the
//!   database restates its result for the calendars with [`Stats::annualised`]. The risk-free
//!   rate is 0. CAGR instead uses calendar time: [`DAYS_PER_YEAR`] = 365.25 days a year.
//! * **Drawdowns** are ≤ 0, in %, against the running peak of the equity curve, which starts at
//!   the initial cash. A drawdown period runs from the last point at the peak (the first point
//!   when the curve starts below the initial cash) to the first point back at or above it, or to
//!   the last point when it never recovers.
//! * A value that is undefined for the run (no trades, no losing trade, a single day, zero
//!   variance...) is `None`, never NaN or infinity, so a zero-trade run has well-defined stats.
//! * Durations are in microseconds.
//!
//! [`Convention::BacktestingPy`] ([`Stats::backtesting_py`]) restates the statistics whose
//! definitions differ in backtesting.py (`backtesting/_stats.py`, `compute_stats`) from the
//! equity curve and the trade returns, with backtesting.py's formulas; see that method.

use crate::backtest::{BacktestResult, Direction};
use crate::candle::Micros;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Daily returns per year of markets closed at weekends.
pub const TRADING_DAYS: f64 = 252.0;
/// Daily returns per year of markets that trade every day (crypto, prediction markets).
pub const CALENDAR_DAYS: f64 = 365.0;
/// Calendar days per year for CAGR.
pub const DAYS_PER_YEAR: f64 = 365.25;
/// Microseconds in a day.
const DAY: f64 = 86_400_000_000.0;
/// Microseconds in a day, as an integer.
const DAY_US: Micros = 86_400_000_000;

/// Which definitions the annualised statistics and the profit factor follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Convention {
    /// This module's formulas (see [`Stats`]), annualised by the symbols' calendars.
    #[default]
    #[serde(rename = "tapeflow")]
    Tapeflow,
    /// backtesting.py's (`compute_stats` in `backtesting/_stats.py`); see [`Stats::backtesting_py`].
    #[serde(rename = "backtesting.py")]
    BacktestingPy,
}

impl Convention {
    pub const ALL: [Convention; 2] = [Convention::Tapeflow, Convention::BacktestingPy];

    pub fn as_str(self) -> &'static str {
        match self {
            Convention::Tapeflow => "tapeflow",
            Convention::BacktestingPy => "backtesting.py",
        }
    }
}

impl fmt::Display for Convention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Convention {
    type Err = String;

    /// `tapeflow` or `backtesting.py`, in any case.
    fn from_str(s: &str) -> Result<Convention, String> {
        Convention::ALL.into_iter().find(|c| c.as_str().eq_ignore_ascii_case(s.trim())).ok_or_else(|| {
            let valid: Vec<&str> = Convention::ALL.iter().map(|c| c.as_str()).collect();
            format!("unknown statistics convention '{s}' (valid: {})", valid.join(", "))
        })
    }
}

/// What annualisation needs of a symbol's trading calendar (a row of `tapeflow.symbols`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar<'a> {
    /// `session_open = session_close`: a 24-hour market.
    pub always_open: bool,
    /// `asset_class`: `crypto` and `prediction` markets trade every day.
    pub asset_class: &'a str,
}

impl Calendar<'_> {
    /// True when the symbol trades every day of the week: a 24-hour session, or a crypto or
    /// prediction-market asset class.
    pub fn trades_every_day(&self) -> bool {
        self.always_open || matches!(self.asset_class, "crypto" | "prediction")
    }
}

/// Daily returns per year for a run over symbols with these calendars: [`CALENDAR_DAYS`] (365)
/// when any symbol trades every day, since the run's equity curve then moves, and its daily
/// series has days, on weekends too; [`TRADING_DAYS`] (252) otherwise, also without symbols.
pub fn annual_trading_days<'a>(calendars: impl IntoIterator<Item = Calendar<'a>>) -> f64 {
    if calendars.into_iter().any(|c| c.trades_every_day()) {
        CALENDAR_DAYS
    } else {
        TRADING_DAYS
    }
}

/// The benchmark: holding the symbols over the run.
#[derive(Debug, Clone, PartialEq)]
pub enum BuyAndHold {
    /// Per symbol `(first price, last price)`; the benchmark holds them in equal weights:
    /// the mean of `(last / first − 1) × 100`. Pairs with a non-positive or non-finite price
    /// are skipped.
    Prices(Vec<(f64, f64)>),
    /// A return in % computed elsewhere.
    ReturnPct(f64),
    /// No benchmark.
    None,
}

impl BuyAndHold {
    /// First and last close of every symbol that had bars.
    pub fn from_result(result: &BacktestResult) -> BuyAndHold {
        BuyAndHold::Prices(
            result.symbols.iter().filter_map(|s| Some((s.first_close?, s.last_close?))).collect(),
        )
    }

    /// The benchmark's return in %, when defined.
    pub fn return_pct(&self) -> Option<f64> {
        match self {
            BuyAndHold::Prices(pairs) => {
                let returns: Vec<f64> = pairs
                    .iter()
                    .filter(|(a, b)| a.is_finite() && b.is_finite() && *a > 0.0 && *b > 0.0)
                    .map(|(a, b)| (b / a - 1.0) * 100.0)
                    .collect();
                finite(mean(&returns)?)
            }
            BuyAndHold::ReturnPct(r) => finite(*r),
            BuyAndHold::None => None,
        }
    }
}

/// The statistics of one run; see the module documentation for the conventions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Start of the period tested (as given).
    pub start: Micros,
    /// End of the period tested (as given).
    pub end: Micros,
    /// `end − start`.
    pub duration: Micros,
    /// Share of equity points (bar times) at which a position was held at some moment, %.
    pub exposure_time_pct: Option<f64>,
    /// Equity after the last bar, all positions closed.
    pub equity_final: Decimal,
    /// Highest equity: the largest of the initial cash and every equity point.
    pub equity_peak: Decimal,
    /// `(equity_final / initial_cash − 1) × 100`.
    pub return_pct: f64,
    /// See [`BuyAndHold`].
    pub buy_and_hold_return_pct: Option<f64>,
    /// Geometric mean daily return, annualised: `(∏(1 + r_d))^(A / n) − 1`, in %, with `A` =
    /// [`Stats::annual_trading_days`]. Needs a day and every `1 + r_d > 0`.
    pub annual_return_pct: Option<f64>,
    /// `stdev(r_d) × √A`, in %, with the sample standard deviation (n − 1). Needs 2 days.
    pub annual_volatility_pct: Option<f64>,
    /// `(equity_final / initial_cash)^(365.25 days / duration) − 1`, in %.
    pub cagr_pct: Option<f64>,
    /// `mean(r_d) / stdev(r_d) × √A` (risk-free 0). Needs a non-zero deviation.
    pub sharpe: Option<f64>,
    /// `mean(r_d) / √(mean(min(r_d, 0)²)) × √A`; the downside deviation is over all days.
    pub sortino: Option<f64>,
    /// `annual_return / |max_drawdown|` (both as fractions). Needs a drawdown.
    pub calmar: Option<f64>,
    /// Deepest drawdown, % (≤ 0; 0 when the curve never fell below its peak).
    pub max_drawdown_pct: f64,
    /// Mean depth of the drawdown periods, % (≤ 0).
    pub avg_drawdown_pct: Option<f64>,
    /// Longest drawdown period.
    pub max_drawdown_duration: Option<Micros>,
    /// Mean length of the drawdown periods.
    pub avg_drawdown_duration: Option<Micros>,
    /// Closed trades.
    pub trades: u64,
    pub long_trades: u64,
    pub short_trades: u64,
    /// Trades with `pnl > 0`.
    pub winning_trades: u64,
    /// Trades with `pnl < 0` (a zero P&L trade is neither).
    pub losing_trades: u64,
    /// `winning_trades / trades × 100`.
    pub win_rate_pct: Option<f64>,
    /// Largest [`crate::backtest::Trade::return_pct`].
    pub best_trade_pct: Option<f64>,
    /// Smallest trade return, %.
    pub worst_trade_pct: Option<f64>,
    /// Geometric mean trade return: `exp(mean(ln(1 + r/100))) − 1`, in %.
    pub avg_trade_pct: Option<f64>,
    /// Longest `exit_time − entry_time`.
    pub max_trade_duration: Option<Micros>,
    /// Mean `exit_time − entry_time`.
    pub avg_trade_duration: Option<Micros>,
    /// `Σ pnl of winners / |Σ pnl of losers|`; `None` without a losing trade.
    pub profit_factor: Option<f64>,
    /// Arithmetic mean trade return, %.
    pub expectancy_pct: Option<f64>,
    /// Mean trade P&L in money.
    pub expectancy: Option<Decimal>,
    /// System Quality Number: `√n × mean(pnl) / stdev(pnl)` (sample deviation). Needs 2 trades.
    pub sqn: Option<f64>,
    /// Kelly fraction `W − (1 − W) / R`, W = win rate as a fraction, R = mean winning pnl /
    /// |mean losing pnl|. Needs a winner and a loser.
    pub kelly_criterion: Option<f64>,
    /// `Σ pnl` (net of fees).
    pub total_pnl: Decimal,
    /// Σ entry and exit fees.
    pub total_fees: Decimal,
    pub gross_profit: Decimal,
    /// Σ pnl of losing trades (≤ 0).
    pub gross_loss: Decimal,
    /// Days in the daily series.
    pub trading_days: u64,
    /// `A`, the daily returns a year the annualised values use (252 in statistics stored
    /// before this field existed).
    #[serde(default = "default_annual_trading_days")]
    pub annual_trading_days: f64,
    /// The definitions the annualised values and the profit factor follow.
    #[serde(default)]
    pub convention: Convention,
}

fn default_annual_trading_days() -> f64 {
    TRADING_DAYS
}

/// The statistics of `result` for the tested period `[start, end)`, annualised over
/// [`TRADING_DAYS`] (252) days a year; see [`Stats`] for every formula. `initial_cash` is the
/// run's starting cash.
pub fn statistics(
    result: &BacktestResult,
    initial_cash: Decimal,
    buy_and_hold: &BuyAndHold,
    start: Micros,
    end: Micros,
) -> Stats {
    statistics_annualised(result, initial_cash, buy_and_hold, start, end, TRADING_DAYS)
}

/// [`statistics`] annualised over `annual_days` daily returns a year (see
/// [`annual_trading_days`]).
pub fn statistics_annualised(
    result: &BacktestResult,
    initial_cash: Decimal,
    buy_and_hold: &BuyAndHold,
    start: Micros,
    end: Micros,
    annual_days: f64,
) -> Stats {
    let initial = f(initial_cash);
    let equity_final = result.equity.last().map_or(result.final_equity, |p| p.equity);
    let equity_peak = result.equity.iter().map(|p| p.equity).fold(initial_cash, Decimal::max);
    let duration = end - start;

    let exposure_time_pct = (!result.equity.is_empty()).then(|| {
        result.equity.iter().filter(|p| p.in_market).count() as f64 / result.equity.len() as f64 * 100.0
    });

    // Daily returns.
    let r: Vec<f64> = result.daily.iter().map(|d| d.return_pct / 100.0).collect();
    let n = r.len() as f64;
    let annual_return = if !r.is_empty() && r.iter().all(|x| 1.0 + x > 0.0) {
        finite((r.iter().map(|x| (1.0 + x).ln()).sum::<f64>() * annual_days / n).exp() - 1.0)
    } else {
        None
    };
    let sd = stdev(&r);
    let annual_volatility = sd.map(|s| s * annual_days.sqrt());
    let sharpe = match (mean(&r), sd) {
        (Some(m), Some(s)) if s > 0.0 => finite(m / s * annual_days.sqrt()),
        _ => None,
    };
    let downside = mean(&r.iter().map(|x| x.min(0.0).powi(2)).collect::<Vec<_>>()).map(f64::sqrt);
    let sortino = match (mean(&r), downside) {
        (Some(m), Some(d)) if d > 0.0 => finite(m / d * annual_days.sqrt()),
        _ => None,
    };
    let growth = f(equity_final) / initial;
    let cagr = if duration > 0 && growth >= 0.0 {
        finite(growth.powf(DAYS_PER_YEAR * DAY / duration as f64) - 1.0)
    } else {
        None
    };

    // Drawdown periods: (depth %, duration).
    let mut periods: Vec<(f64, Micros)> = Vec::new();
    let mut peak = initial_cash;
    let mut peak_time = result.equity.first().map_or(start, |p| p.time);
    let mut depth: Option<f64> = None;
    for p in &result.equity {
        if p.equity >= peak {
            if let Some(d) = depth.take() {
                periods.push((d, p.time - peak_time));
            }
            peak = p.equity;
            peak_time = p.time;
        } else {
            let dd = (f(p.equity) / f(peak) - 1.0) * 100.0;
            depth = Some(depth.map_or(dd, |d| d.min(dd)));
        }
    }
    if let (Some(d), Some(last)) = (depth, result.equity.last()) {
        periods.push((d, last.time - peak_time));
    }
    let depths: Vec<f64> = periods.iter().map(|p| p.0).collect();
    let max_drawdown_pct = depths.iter().copied().fold(0.0, f64::min);
    let dd_durations: Vec<Micros> = periods.iter().map(|p| p.1).collect();
    let calmar = calmar(annual_return, max_drawdown_pct);

    // Trades.
    let trades = &result.trades;
    let pnl: Vec<f64> = trades.iter().map(|t| f(t.pnl)).collect();
    let ret: Vec<f64> = trades.iter().map(|t| t.return_pct).collect();
    let durations: Vec<Micros> = trades.iter().map(|t| t.exit_time - t.entry_time).collect();
    let winners = trades.iter().filter(|t| t.pnl > Decimal::ZERO).count() as u64;
    let losers = trades.iter().filter(|t| t.pnl < Decimal::ZERO).count() as u64;
    let gross_profit: Decimal = trades.iter().map(|t| t.pnl).filter(|p| *p > Decimal::ZERO).sum();
    let gross_loss: Decimal = trades.iter().map(|t| t.pnl).filter(|p| *p < Decimal::ZERO).sum();
    let total_pnl: Decimal = trades.iter().map(|t| t.pnl).sum();
    let total_fees: Decimal = trades.iter().map(|t| t.entry_fee + t.exit_fee).sum();
    let count = trades.len() as u64;
    let win_rate = (count > 0).then(|| winners as f64 / count as f64);
    let avg_trade = if !ret.is_empty() && ret.iter().all(|x| 1.0 + x / 100.0 > 0.0) {
        let m = ret.iter().map(|x| (1.0 + x / 100.0).ln()).sum::<f64>() / ret.len() as f64;
        finite((m.exp() - 1.0) * 100.0)
    } else {
        None
    };
    let profit_factor =
        (gross_loss < Decimal::ZERO).then(|| finite(f(gross_profit) / -f(gross_loss))).flatten();
    let sqn = match (mean(&pnl), stdev(&pnl)) {
        (Some(m), Some(s)) if s > 0.0 => finite((count as f64).sqrt() * m / s),
        _ => None,
    };
    let kelly = if winners > 0 && losers > 0 {
        let avg_win = f(gross_profit) / winners as f64;
        let avg_loss = -f(gross_loss) / losers as f64;
        let w = winners as f64 / count as f64;
        finite(w - (1.0 - w) / (avg_win / avg_loss))
    } else {
        None
    };

    Stats {
        start,
        end,
        duration,
        exposure_time_pct,
        equity_final,
        equity_peak,
        return_pct: (f(equity_final) / initial - 1.0) * 100.0,
        buy_and_hold_return_pct: buy_and_hold.return_pct(),
        annual_return_pct: annual_return.map(|a| a * 100.0),
        annual_volatility_pct: annual_volatility.map(|v| v * 100.0),
        cagr_pct: cagr.map(|c| c * 100.0),
        sharpe,
        sortino,
        calmar,
        max_drawdown_pct,
        avg_drawdown_pct: mean(&depths),
        max_drawdown_duration: dd_durations.iter().copied().max(),
        avg_drawdown_duration: mean_micros(&dd_durations),
        trades: count,
        long_trades: trades.iter().filter(|t| t.direction == Direction::Long).count() as u64,
        short_trades: trades.iter().filter(|t| t.direction == Direction::Short).count() as u64,
        winning_trades: winners,
        losing_trades: losers,
        win_rate_pct: win_rate.map(|w| w * 100.0),
        best_trade_pct: ret.iter().copied().reduce(f64::max),
        worst_trade_pct: ret.iter().copied().reduce(f64::min),
        avg_trade_pct: avg_trade,
        max_trade_duration: durations.iter().copied().max(),
        avg_trade_duration: mean_micros(&durations),
        profit_factor,
        expectancy_pct: mean(&ret),
        expectancy: (count > 0).then(|| total_pnl / Decimal::from(count)),
        sqn,
        kelly_criterion: kelly,
        total_pnl,
        total_fees,
        gross_profit,
        gross_loss,
        trading_days: result.daily.len() as u64,
        annual_trading_days: annual_days,
        convention: Convention::Tapeflow,
    }
}

/// `annual_return / |max_drawdown|` (fractions); needs a drawdown.
fn calmar(annual_return: Option<f64>, max_drawdown_pct: f64) -> Option<f64> {
    match annual_return {
        Some(a) if max_drawdown_pct < 0.0 => finite(a / (-max_drawdown_pct / 100.0)),
        _ => None,
    }
}

impl Stats {
    /// These statistics (Tapeflow's convention) annualised over `annual_days` instead of
    /// [`Stats::annual_trading_days`]: with `k = annual_days / A`, the annual return becomes
    /// `(1 + annual_return)^k − 1` (the same geometric mean daily return compounded over the new
    /// year), volatility, Sharpe and Sortino are multiplied by `√k`, and Calmar follows the
    /// annual return. This is exactly [`statistics_annualised`] over `annual_days`, up to
    /// floating-point rounding. Statistics in another convention are returned unchanged.
    pub fn annualised(&self, annual_days: f64) -> Stats {
        let mut s = self.clone();
        if s.convention != Convention::Tapeflow || !(annual_days > 0.0 && annual_days.is_finite()) {
            return s;
        }
        let k = annual_days / s.annual_trading_days;
        let root = k.sqrt();
        s.annual_return_pct =
            s.annual_return_pct.and_then(|a| finite(((1.0 + a / 100.0).powf(k) - 1.0) * 100.0));
        s.annual_volatility_pct = s.annual_volatility_pct.and_then(|v| finite(v * root));
        s.sharpe = s.sharpe.and_then(|x| finite(x * root));
        s.sortino = s.sortino.and_then(|x| finite(x * root));
        s.calmar = calmar(s.annual_return_pct.map(|a| a / 100.0), s.max_drawdown_pct);
        s.annual_trading_days = annual_days;
        s
    }

    /// These statistics with backtesting.py's definitions where they differ from Tapeflow's,
    /// from the run's equity curve (`(time, equity)` per bar, ascending) and its trades'
    /// returns in % ([`crate::backtest::Trade::return_pct`], which is backtesting.py's
    /// `Trade.pl_pct`: the return on the entry notional net of both commissions). The risk-free
    /// rate is 0 (backtesting.py's default). As `compute_stats` in `backtesting/_stats.py`:
    ///
    /// * **Year** `A`: from the median spacing of the last 100 points (`_data_period`), whole
    ///   days: 7 → 52 (weekly), 31 → 12 (monthly), 365 → 1 (yearly); otherwise (one-minute bars)
    ///   365 when more than `0.6 × 2/7` of the points fall on a Saturday or Sunday, else 252.
    ///   Days are UTC calendar days.
    /// * **Period returns** `r`: the equity at the last point of each day (week ending Sunday,
    ///   month, year), then the change from one period to the next (`pct_change`); the first
    ///   period has no return, so its P&L against the initial cash is not in the series.
    /// * `g` = geometric mean of `r`: `exp(mean(ln(1 + r))) − 1`, or 0 when some `1 + r ≤ 0`.
    /// * **Return (Ann.)** `R = (1 + g)^A − 1`.
    /// * **Volatility (Ann.)** `√((var(r) + (1 + g)²)^A − (1 + g)^(2A))`, with the sample
    ///   variance (n − 1).
    /// * **Sharpe** `R / volatility`; **Sortino** `R / (√mean(min(r, 0)²) × √A)`.
    /// * **Max. Drawdown** `−max(1 − equity / running max of equity)` over the curve (the peak
    ///   starts at the first point, not at the initial cash); **Calmar** `R / |max drawdown|`.
    /// * **Profit Factor** over trade returns: `Σ positive returns / |Σ negative returns|`.
    /// * **Avg. Trade** the geometric mean of the trade returns, 0 when a trade lost 100 % or
    ///   more.
    ///
    /// Values backtesting.py reports as NaN or infinite (one period, zero volatility, no losing
    /// period or trade) are `None`. Everything else is unchanged.
    pub fn backtesting_py(&self, equity: &[(Micros, f64)], trade_returns_pct: &[f64]) -> Stats {
        let mut s = self.clone();
        let (annual, period) = backtesting_py_year(equity.iter().map(|p| p.0));
        let r = period_returns(equity, period);
        let g = geometric_mean(&r);
        let annual_return = (1.0 + g).powf(annual) - 1.0;
        let var = sample_variance(&r);
        let volatility = ((var + (1.0 + g).powi(2)).powf(annual) - (1.0 + g).powf(2.0 * annual)).sqrt();
        let downside = (r.iter().map(|x| x.min(0.0).powi(2)).sum::<f64>() / r.len() as f64).sqrt();
        let mut running_max = f64::NEG_INFINITY;
        let max_dd = equity.iter().fold(0.0f64, |dd, &(_, e)| {
            running_max = running_max.max(e);
            let d = 1.0 - e / running_max;
            if d > dd {
                d
            } else {
                dd
            }
        });
        let returns: Vec<f64> = trade_returns_pct.iter().map(|x| x / 100.0).collect();
        let wins: f64 = returns.iter().filter(|x| **x > 0.0).sum();
        let losses: f64 = returns.iter().filter(|x| **x < 0.0).sum();

        s.annual_trading_days = annual;
        s.annual_return_pct = finite(annual_return * 100.0);
        s.annual_volatility_pct = finite(volatility * 100.0);
        s.sharpe = finite(annual_return / volatility).filter(|_| volatility != 0.0);
        s.sortino = finite(annual_return / (downside * annual.sqrt()));
        s.max_drawdown_pct = if max_dd > 0.0 { -max_dd * 100.0 } else { 0.0 };
        s.calmar = finite(annual_return / max_dd).filter(|_| max_dd != 0.0);
        s.profit_factor = finite(wins / losses.abs()).filter(|_| losses != 0.0);
        s.avg_trade_pct = finite(geometric_mean(&returns) * 100.0);
        s.convention = Convention::BacktestingPy;
        s
    }
}

/// The periods backtesting.py resamples the equity curve to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Day,
    /// Weeks ending on Sunday (pandas `W`).
    Week,
    Month,
    Year,
}

impl Period {
    /// The period holding `t`, as a number that grows with time.
    fn key(self, t: Micros) -> i64 {
        let day = t.div_euclid(DAY_US);
        match self {
            Period::Day => day,
            // 2000-01-01, day 0, was a Saturday: day + 5 counts from a Monday.
            Period::Week => (day + 5).div_euclid(7),
            Period::Month => {
                let (y, m, _) = civil_from_days(day);
                y * 12 + m as i64
            }
            Period::Year => civil_from_days(day).0,
        }
    }
}

/// backtesting.py's year (periods per year) and period for points at `times` (ascending).
fn backtesting_py_year(times: impl ExactSizeIterator<Item = Micros> + Clone) -> (f64, Period) {
    let n = times.len();
    // Median of the gaps between the last 100 points, in whole days (floored, as
    // `Timedelta.days`); none with fewer than two points.
    let last: Vec<Micros> = times.clone().skip(n.saturating_sub(100)).collect();
    let mut gaps: Vec<i128> = last.windows(2).map(|w| i128::from(w[1]) - i128::from(w[0])).collect();
    gaps.sort_unstable();
    let freq_days = match gaps.len() {
        0 => None,
        g if g % 2 == 1 => Some(gaps[g / 2]),
        g => Some((gaps[g / 2 - 1] + gaps[g / 2]) / 2),
    }
    .map(|us| us.div_euclid(i128::from(DAY_US)));
    let weekend = times.filter(|&t| (t.div_euclid(DAY_US) + 5).rem_euclid(7) >= 5).count();
    let have_weekends = n > 0 && weekend as f64 / n as f64 > 2.0 / 7.0 * 0.6;
    match freq_days {
        Some(7) => (52.0, Period::Week),
        Some(31) => (12.0, Period::Month),
        Some(365) => (1.0, Period::Year),
        _ if have_weekends => (CALENDAR_DAYS, Period::Day),
        _ => (TRADING_DAYS, Period::Day),
    }
}

/// The change of the equity at each period's last point from the previous period's; changes
/// that are not a number (0 / 0) are dropped, as pandas' `dropna`.
fn period_returns(equity: &[(Micros, f64)], period: Period) -> Vec<f64> {
    let mut last: Vec<f64> = Vec::new();
    let mut current: Option<i64> = None;
    for &(t, e) in equity {
        if e.is_nan() {
            continue;
        }
        let key = period.key(t);
        if current == Some(key) {
            *last.last_mut().expect("a period was started") = e;
        } else {
            last.push(e);
            current = Some(key);
        }
    }
    last.windows(2).map(|w| w[1] / w[0] - 1.0).filter(|r| !r.is_nan()).collect()
}

/// backtesting.py's `geometric_mean`: `exp(Σ ln(1 + r) / n) − 1`; 0 when some `1 + r ≤ 0`; NaN
/// without values.
fn geometric_mean(r: &[f64]) -> f64 {
    if r.iter().any(|x| 1.0 + x <= 0.0) {
        return 0.0;
    }
    (r.iter().map(|x| (1.0 + x).ln()).sum::<f64>() / r.len() as f64).exp() - 1.0
}

/// Sample variance (n − 1); NaN with fewer than two values.
fn sample_variance(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return f64::NAN;
    }
    let m = xs.iter().sum::<f64>() / xs.len() as f64;
    xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64
}

/// (year, month 1–12, day 1–31) of `day` days after 2000-01-01 (proleptic Gregorian).
fn civil_from_days(day: i64) -> (i64, u32, u32) {
    // Shift to days since 0000-03-01, so a leap day ends each 4-, 100- and 400-year cycle.
    let z = day + 730_425;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64).and_then(finite)
}

/// Sample standard deviation (n − 1); needs two values.
fn stdev(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let m = mean(xs)?;
    finite((xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt())
}

fn mean_micros(xs: &[Micros]) -> Option<Micros> {
    (!xs.is_empty()).then(|| (xs.iter().map(|&x| i128::from(x)).sum::<i128>() / xs.len() as i128) as Micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest::{DailyStat, EquityPoint, ExitReason, Trade};
    use crate::state::MarketState;

    const DAY_US: Micros = 86_400_000_000;

    fn d(x: f64) -> Decimal {
        crate::backtest::money(x)
    }

    fn point(day: i64, equity: f64, in_market: bool) -> EquityPoint {
        EquityPoint {
            time: day * DAY_US,
            equity: d(equity),
            cash: d(equity),
            drawdown: Decimal::ZERO,
            drawdown_pct: 0.0,
            open_positions: 0,
            exposure: Decimal::ZERO,
            in_market,
        }
    }

    fn trade(pnl: f64, return_pct: f64, entry_day: i64, exit_day: i64, direction: Direction) -> Trade {
        Trade {
            symbol: "X".into(),
            direction,
            qty: 10,
            signal_time: 0,
            signal_price: 100.0,
            entry_time: entry_day * DAY_US,
            entry_price: d(100.0),
            entry_fee: d(1.0),
            exit_time: exit_day * DAY_US,
            exit_price: d(100.0),
            exit_fee: d(0.5),
            exit_reason: ExitReason::Signal,
            stop: 90.0,
            target: None,
            pnl: d(pnl),
            return_pct,
            mae_price: 0.0,
            mfe_price: 0.0,
            mae: Decimal::ZERO,
            mfe: Decimal::ZERO,
            bars: 1,
            entry_reason: String::new(),
            state: MarketState::Balance,
            aggression: 0.0,
            atr: None,
        }
    }

    fn day(day: i64, start: f64, end: f64) -> DailyStat {
        DailyStat {
            day,
            start_equity: d(start),
            end_equity: d(end),
            pnl: d(end - start),
            return_pct: (end / start - 1.0) * 100.0,
            entries: 0,
            trades: 0,
        }
    }

    fn result() -> BacktestResult {
        BacktestResult {
            initial_cash: d(1000.0),
            final_equity: d(1170.0),
            trades: vec![
                trade(100.0, 10.0, 0, 1, Direction::Long),
                trade(-50.0, -5.0, 1, 2, Direction::Short),
                trade(200.0, 20.0, 2, 4, Direction::Long),
                trade(-25.0, -2.5, 4, 6, Direction::Long),
            ],
            equity: vec![
                point(0, 1000.0, false),
                point(1, 1100.0, true),
                point(2, 990.0, true),
                point(3, 1045.0, true),
                point(4, 1200.0, false),
                point(5, 1140.0, false),
                point(6, 1170.0, false),
            ],
            daily: vec![day(0, 1000.0, 1100.0), day(1, 1100.0, 1045.0), day(2, 1045.0, 1170.0)],
            signals_seen: 4,
            signals_blocked: Default::default(),
            bars_processed: 7,
            symbols: vec![],
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn hand_computed_statistics() {
        let r = result();
        let bh = BuyAndHold::Prices(vec![(100.0, 110.0), (50.0, 60.0)]);
        // One calendar year (365.25 days) from 1000 to 1170: CAGR 17 %.
        let s = statistics(&r, d(1000.0), &bh, 0, (365.25 * DAY) as Micros);
        assert_eq!(s.equity_final, d(1170.0));
        assert_eq!(s.equity_peak, d(1200.0));
        assert!(close(s.return_pct, 17.0));
        assert!(close(s.cagr_pct.unwrap(), 17.0));
        // Mean of +10 % and +20 %.
        assert!(close(s.buy_and_hold_return_pct.unwrap(), 15.0));
        // 3 of 7 points in the market.
        assert!(close(s.exposure_time_pct.unwrap(), 300.0 / 7.0));

        // Drawdowns: 1100 → 990 is −10 % (days 1..4 until 1200 recovers it, 3 days);
        // 1200 → 1140 is −5 %, never recovered (days 4..6, 2 days).
        assert!(close(s.max_drawdown_pct, -10.0));
        assert!(close(s.avg_drawdown_pct.unwrap(), -7.5));
        assert_eq!(s.max_drawdown_duration, Some(3 * DAY_US));
        assert_eq!(s.avg_drawdown_duration, Some(5 * DAY_US / 2));

        // Trades: pnl +100, −50, +200, −25.
        assert_eq!((s.trades, s.winning_trades, s.losing_trades), (4, 2, 2));
        assert_eq!((s.long_trades, s.short_trades), (3, 1));
        assert!(close(s.win_rate_pct.unwrap(), 50.0));
        // 300 / 75.
        assert!(close(s.profit_factor.unwrap(), 4.0));
        // Average win 150, average loss 37.5: R = 4, Kelly = 0.5 − 0.5 / 4.
        assert!(close(s.kelly_criterion.unwrap(), 0.375));
        // Mean 56.25; squared deviations 1914.0625 + 11289.0625 + 20664.0625 + 6601.5625 =
        // 40468.75; sample variance / 3; SQN = √4 × 56.25 / √(40468.75 / 3) ≈ 0.9686.
        assert!(close(s.sqn.unwrap(), 2.0 * 56.25 / (40468.75f64 / 3.0).sqrt()));
        assert!((s.sqn.unwrap() - 0.9686).abs() < 1e-4);
        assert_eq!(s.total_pnl, d(225.0));
        assert_eq!(s.expectancy, Some(d(56.25)));
        assert_eq!(s.total_fees, d(6.0));
        assert_eq!((s.gross_profit, s.gross_loss), (d(300.0), d(-75.0)));
        assert!(close(s.best_trade_pct.unwrap(), 20.0));
        assert!(close(s.worst_trade_pct.unwrap(), -5.0));
        assert!(close(s.expectancy_pct.unwrap(), 5.625));
        let geo = (1.10f64 * 0.95 * 1.20 * 0.975).powf(0.25) - 1.0;
        assert!(close(s.avg_trade_pct.unwrap(), geo * 100.0));
        assert_eq!(s.max_trade_duration, Some(2 * DAY_US));
        // (1 + 1 + 2 + 2) / 4 days.
        assert_eq!(s.avg_trade_duration, Some(3 * DAY_US / 2));

        // Daily returns +10 %, −5 %, 1170/1045 − 1.
        let days = [0.10, -0.05, 1170.0 / 1045.0 - 1.0];
        let m = days.iter().sum::<f64>() / 3.0;
        let sd = (days.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 2.0).sqrt();
        assert!(close(s.annual_volatility_pct.unwrap(), sd * 252f64.sqrt() * 100.0));
        assert!(close(s.sharpe.unwrap(), m / sd * 252f64.sqrt()));
        let downside = (0.05f64 * 0.05 / 3.0).sqrt();
        assert!(close(s.sortino.unwrap(), m / downside * 252f64.sqrt()));
        let annual = (1170.0f64 / 1000.0).powf(252.0 / 3.0) - 1.0;
        assert!(close(s.annual_return_pct.unwrap(), annual * 100.0));
        assert!(close(s.calmar.unwrap(), annual / 0.10));
        assert_eq!(s.trading_days, 3);
    }

    #[test]
    fn annualised_over_365_days() {
        let r = result();
        let direct = statistics_annualised(&r, d(1000.0), &BuyAndHold::None, 0, DAY_US, 365.0);
        let days = [0.10, -0.05, 1170.0 / 1045.0 - 1.0];
        let m = days.iter().sum::<f64>() / 3.0;
        let sd = (days.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 2.0).sqrt();
        let annual = (1170.0f64 / 1000.0).powf(365.0 / 3.0) - 1.0;
        assert!(close(direct.annual_return_pct.unwrap(), annual * 100.0));
        assert!(close(direct.annual_volatility_pct.unwrap(), sd * 365f64.sqrt() * 100.0));
        assert!(close(direct.sharpe.unwrap(), m / sd * 365f64.sqrt()));
        assert!(close(direct.sortino.unwrap(), m / (0.05f64 * 0.05 / 3.0).sqrt() * 365f64.sqrt()));
        assert!(close(direct.calmar.unwrap(), annual / 0.10));
        assert_eq!((direct.annual_trading_days, direct.convention), (365.0, Convention::Tapeflow));

        // Restating stored 252-day statistics gives the same values.
        let stored = statistics(&r, d(1000.0), &BuyAndHold::None, 0, DAY_US);
        assert_eq!(stored.annual_trading_days, 252.0);
        let restated = stored.annualised(365.0);
        for (a, b) in [
            (restated.annual_return_pct, direct.annual_return_pct),
            (restated.annual_volatility_pct, direct.annual_volatility_pct),
            (restated.sharpe, direct.sharpe),
            (restated.sortino, direct.sortino),
            (restated.calmar, direct.calmar),
        ] {
            assert!(close(a.unwrap(), b.unwrap()), "{a:?} vs {b:?}");
        }
        assert_eq!(restated.annual_trading_days, 365.0);
        // Everything else is untouched, and 252 → 252 is the identity.
        assert_eq!(
            (restated.profit_factor, restated.sqn, restated.trades),
            (stored.profit_factor, stored.sqn, 4)
        );
        assert_eq!(stored.annualised(252.0), stored);
    }

    #[test]
    fn calendars_choose_the_year() {
        let equity = Calendar { always_open: false, asset_class: "us_equity" };
        let fx_24h = Calendar { always_open: true, asset_class: "fx" };
        let crypto = Calendar { always_open: false, asset_class: "crypto" };
        let prediction = Calendar { always_open: false, asset_class: "prediction" };
        assert_eq!(annual_trading_days([equity]), 252.0);
        assert_eq!(annual_trading_days([equity, equity]), 252.0);
        assert_eq!(annual_trading_days([fx_24h]), 365.0);
        assert_eq!(annual_trading_days([crypto]), 365.0);
        assert_eq!(annual_trading_days([prediction]), 365.0);
        // Mixed: any symbol trading every day puts weekend days in the equity curve.
        assert_eq!(annual_trading_days([equity, crypto]), 365.0);
        assert_eq!(annual_trading_days([]), 252.0);
    }

    #[test]
    fn conventions_parse_and_old_statistics_read_as_252_days() {
        assert_eq!("backtesting.py".parse::<Convention>(), Ok(Convention::BacktestingPy));
        assert_eq!(" Tapeflow ".parse::<Convention>(), Ok(Convention::Tapeflow));
        let e = "empyrical".parse::<Convention>().unwrap_err();
        assert!(e.contains("'empyrical'") && e.contains("tapeflow, backtesting.py"), "{e}");
        let s = statistics(&result(), d(1000.0), &BuyAndHold::None, 0, DAY_US);
        let mut json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["convention"], "tapeflow");
        let obj = json.as_object_mut().unwrap();
        obj.remove("convention");
        obj.remove("annual_trading_days");
        let old: Stats = serde_json::from_value(json).unwrap();
        assert_eq!(old, s);
    }

    /// Points at `hours` after midnight UTC of `day` (days after 2000-01-01, a Saturday).
    fn at(day: i64, hours: i64) -> Micros {
        day * DAY_US + hours * 3_600_000_000
    }

    #[test]
    fn backtesting_py_definitions_by_hand() {
        // Monday 2000-01-03 (day 2) to Friday (day 6), two points a day. Each day's last equity:
        // 1000, 1020, 1009.8, 1060.29, 1049.6871, so the day returns (the first day has none)
        // are +2 %, −1 %, +5 %, −1 %. No point on a weekend: A = 252.
        let equity = [
            (at(2, 14), 1000.0),
            (at(2, 20), 1000.0),
            (at(3, 14), 1030.0),
            (at(3, 20), 1020.0),
            (at(4, 14), 950.0), // 70 below the 1030 peak: the deepest drawdown
            (at(4, 20), 1009.8),
            (at(5, 14), 1040.0),
            (at(5, 20), 1060.29),
            (at(6, 14), 1070.0),
            (at(6, 20), 1049.6871),
        ];
        let trade_returns = [10.0, -4.0, 6.0, -1.0];
        let s = statistics(&result(), d(1000.0), &BuyAndHold::None, 0, DAY_US)
            .backtesting_py(&equity, &trade_returns);
        assert_eq!((s.convention, s.annual_trading_days), (Convention::BacktestingPy, 252.0));

        // gmean: (1.02 × 0.99 × 1.05 × 0.99)^(1/4) − 1 = 1.0496871^(1/4) − 1.
        let g = 1.0496871f64.powf(0.25) - 1.0;
        let annual = (1.0 + g).powf(252.0) - 1.0; // = 1.0496871^63 − 1
        assert!(close(annual, 1.0496871f64.powi(63) - 1.0));
        assert!(close(s.annual_return_pct.unwrap(), annual * 100.0));
        // Mean 0.0125; squared deviations 5.625e-5 + 5.0625e-4 + 1.40625e-3 + 5.0625e-4 =
        // 2.475e-3; sample variance 8.25e-4.
        let var = 8.25e-4f64;
        let vol = ((var + (1.0 + g).powi(2)).powf(252.0) - (1.0 + g).powf(504.0)).sqrt();
        assert!(close(s.annual_volatility_pct.unwrap(), vol * 100.0));
        assert!(close(s.sharpe.unwrap(), annual / vol));
        // Downside: √((0.01² + 0.01²) / 4) = √5e-5.
        assert!(close(s.sortino.unwrap(), annual / (5e-5f64.sqrt() * 252f64.sqrt())));
        // Deepest drawdown 1 − 950 / 1030.
        let dd = 1.0 - 950.0 / 1030.0;
        assert!(close(s.max_drawdown_pct, -dd * 100.0));
        assert!(close(s.calmar.unwrap(), annual / dd));
        // Over trade returns: (10 + 6) / (4 + 1), where Tapeflow's P&L ratio is 300 / 75.
        assert!(close(s.profit_factor.unwrap(), 3.2));
        let avg = (1.10f64 * 0.96 * 1.06 * 0.99).powf(0.25) - 1.0;
        assert!(close(s.avg_trade_pct.unwrap(), avg * 100.0));
        // The rest is Tapeflow's.
        assert_eq!(
            (s.trades, s.sqn, s.kelly_criterion),
            (4, statistics(&result(), d(1000.0), &BuyAndHold::None, 0, DAY_US).sqn, Some(0.375))
        );

        // A trade that lost everything makes the geometric mean 0; no losing trade or period
        // makes profit factor and Sortino NaN in backtesting.py, None here.
        let rising = [(at(2, 20), 1000.0), (at(3, 20), 1010.0), (at(4, 20), 1030.0)];
        let s2 = s.backtesting_py(&rising, &[5.0, -100.0]);
        assert_eq!(s2.avg_trade_pct, Some(0.0));
        let s3 = s.backtesting_py(&rising, &[5.0]);
        assert_eq!((s3.profit_factor, s3.sortino, s3.calmar, s3.max_drawdown_pct), (None, None, None, 0.0));
        // Two day returns: +1 %, 1030 / 1010 − 1.
        let g = (1.03f64).sqrt() - 1.0;
        assert!(close(s3.annual_return_pct.unwrap(), ((1.0 + g).powf(252.0) - 1.0) * 100.0));
        // A single day has no return: everything annualised is undefined.
        let s4 = s.backtesting_py(&rising[..1], &[]);
        assert_eq!((s4.annual_return_pct, s4.annual_volatility_pct, s4.sharpe), (None, None, None));
        assert_eq!((s4.profit_factor, s4.avg_trade_pct), (None, None));
    }

    #[test]
    fn backtesting_py_year_from_weekend_share_and_spacing() {
        // Every day of a week, one point a day: 2 of 7 on a weekend (> 0.6 × 2/7): 365.
        let week: Vec<(Micros, f64)> = (2..9).map(|d| (at(d, 12), 1000.0 + d as f64)).collect();
        let s = statistics(&result(), d(1000.0), &BuyAndHold::None, 0, DAY_US);
        assert_eq!(s.backtesting_py(&week, &[]).annual_trading_days, 365.0);
        // One weekend point in ten (0.1 ≤ 0.6 × 2/7 ≈ 0.171): weekends present, still 252.
        let mut mostly_weekdays: Vec<(Micros, f64)> = (0..9).map(|h| (at(2, h), 1000.0)).collect();
        mostly_weekdays.insert(0, (at(1, 12), 1000.0));
        assert_eq!(s.backtesting_py(&mostly_weekdays, &[]).annual_trading_days, 252.0);
        // Points a week apart: 52 periods of weeks ending on Sunday; returns +1 %, +2 %.
        let weekly = [(at(6, 12), 100.0), (at(13, 12), 101.0), (at(20, 12), 103.02)];
        let w = s.backtesting_py(&weekly, &[]);
        assert_eq!(w.annual_trading_days, 52.0);
        let g = (1.01f64 * 1.02).sqrt() - 1.0;
        assert!(close(w.annual_return_pct.unwrap(), ((1.0 + g).powf(52.0) - 1.0) * 100.0));
        // Points 31 days apart from 2001-01-01 (day 366): Jan 1, Feb 1, Mar 4, months: 12.
        let monthly = [(at(366, 0), 100.0), (at(397, 0), 110.0), (at(428, 0), 121.0)];
        let mo = s.backtesting_py(&monthly, &[]);
        assert_eq!(mo.annual_trading_days, 12.0);
        assert!(close(mo.annual_return_pct.unwrap(), (1.1f64.powi(12) - 1.0) * 100.0));
        // Gaps 31, 31, 27 days (median 31): two March points are one month, the later counts.
        let same_month = [(at(366, 0), 100.0), (at(397, 0), 110.0), (at(428, 0), 999.0), (at(455, 0), 121.0)];
        assert_eq!(civil_from_days(455), (2001, 3, 31));
        let sm = s.backtesting_py(&same_month, &[]);
        assert_eq!(sm.annual_trading_days, 12.0);
        assert!(close(sm.annual_return_pct.unwrap(), (1.1f64.powi(12) - 1.0) * 100.0));
        // Gaps 31 and 58 days: the median of two is their mean, 44 days, so daily periods; one
        // point of three (2001-03-31) is on a Saturday: 365.
        let two_gaps = [same_month[0], same_month[1], same_month[3]];
        assert_eq!(s.backtesting_py(&two_gaps, &[]).annual_trading_days, 365.0);
    }

    /// The same curves through backtesting.py 0.6.6's own `compute_stats` (pandas 3.1, numpy
    /// 2.4, risk-free rate 0, the times as a naive index), values as it printed them: Return
    /// (Ann.), Volatility (Ann.), Sharpe, Sortino, Calmar, Max. Drawdown, Profit Factor, Avg.
    /// Trade; its NaN and inf are `None` here.
    #[test]
    fn agrees_with_backtesting_py_0_6_6() {
        type Row = [Option<f64>; 8];
        type Case = (Vec<(Micros, f64)>, Vec<f64>, Row);
        let cases: [Case; 4] = [
            (
                [(2, 14, 1000.0), (2, 20, 1000.0), (3, 14, 1030.0), (3, 20, 1020.0), (4, 14, 950.0)]
                    .into_iter()
                    .chain([
                        (4, 20, 1009.8),
                        (5, 14, 1040.0),
                        (5, 20, 1060.29),
                        (6, 14, 1070.0),
                        (6, 20, 1049.6871),
                    ])
                    .map(|(d, h, e)| (at(d, h), e))
                    .collect(),
                vec![10.0, -4.0, 6.0, -1.0],
                [
                    Some(2022.1260751741945),
                    Some(1006.3315086443744),
                    Some(2.0094035194209443),
                    Some(180.1453087181847),
                    Some(260.34873217867766),
                    Some(-7.7669902912621325),
                    Some(3.1999999999999997),
                    Some(2.60091751897249),
                ],
            ),
            (
                (2..9).map(|d| (at(d, 12), 1000.0 + d as f64)).collect(),
                vec![],
                [
                    Some(43.7902074163766),
                    Some(0.005088394187398289),
                    Some(8605.89919012675),
                    None,
                    None,
                    Some(0.0),
                    None,
                    None,
                ],
            ),
            (
                vec![(at(6, 12), 100.0), (at(13, 12), 101.0), (at(20, 12), 103.02)],
                vec![],
                [
                    Some(116.75053801978974),
                    Some(10.895693629708893),
                    Some(10.715291929781348),
                    None,
                    None,
                    Some(0.0),
                    None,
                    None,
                ],
            ),
            (
                vec![(at(366, 0), 100.0), (at(397, 0), 110.0), (at(428, 0), 999.0), (at(455, 0), 121.0)],
                vec![],
                [
                    Some(213.8428376721003),
                    Some(0.0),
                    None,
                    None,
                    Some(2.4331320596176336),
                    Some(-87.88788788788789),
                    None,
                    None,
                ],
            ),
        ];
        let s = statistics(&result(), d(1000.0), &BuyAndHold::None, 0, DAY_US);
        for (i, (equity, trades, want)) in cases.iter().enumerate() {
            let b = s.backtesting_py(equity, trades);
            let got = [
                b.annual_return_pct,
                b.annual_volatility_pct,
                b.sharpe,
                b.sortino,
                b.calmar,
                Some(b.max_drawdown_pct),
                b.profit_factor,
                b.avg_trade_pct,
            ];
            for (g, w) in got.iter().zip(want) {
                match (g, w) {
                    (Some(g), Some(w)) => assert!(close(*g, *w), "case {i}: {got:?} vs {want:?}"),
                    _ => assert_eq!(g, w, "case {i}: {got:?} vs {want:?}"),
                }
            }
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (2000, 1, 1));
        assert_eq!(civil_from_days(59), (2000, 2, 29));
        assert_eq!(civil_from_days(60), (2000, 3, 1));
        assert_eq!(civil_from_days(366), (2001, 1, 1));
        assert_eq!(civil_from_days(-1), (1999, 12, 31));
        assert_eq!(civil_from_days(-10_957), (1970, 1, 1));
        assert_eq!(civil_from_days(36_525), (2100, 1, 1));
    }

    #[test]
    fn empty_runs_are_well_defined() {
        // No bars at all.
        let empty = BacktestResult {
            initial_cash: d(1000.0),
            final_equity: d(1000.0),
            trades: vec![],
            equity: vec![],
            daily: vec![],
            signals_seen: 0,
            signals_blocked: Default::default(),
            bars_processed: 0,
            symbols: vec![],
        };
        let s = statistics(&empty, d(1000.0), &BuyAndHold::None, 0, DAY_US);
        assert_eq!(s.return_pct, 0.0);
        assert_eq!(s.cagr_pct, Some(0.0));
        assert_eq!(s.max_drawdown_pct, 0.0);
        assert_eq!(
            (s.exposure_time_pct, s.sharpe, s.win_rate_pct, s.profit_factor, s.sqn),
            (None, None, None, None, None)
        );
        // Flat bars and no trades.
        let mut flat = empty.clone();
        flat.equity = vec![point(0, 1000.0, false), point(1, 1000.0, false)];
        flat.daily = vec![day(0, 1000.0, 1000.0), day(1, 1000.0, 1000.0)];
        let s = statistics(&flat, d(1000.0), &BuyAndHold::ReturnPct(3.0), 0, 0);
        assert_eq!(s.exposure_time_pct, Some(0.0));
        assert_eq!((s.annual_return_pct, s.annual_volatility_pct), (Some(0.0), Some(0.0)));
        assert_eq!((s.sharpe, s.sortino, s.calmar, s.cagr_pct), (None, None, None, None));
        assert_eq!((s.avg_drawdown_pct, s.max_drawdown_duration), (None, None));
        assert_eq!(s.buy_and_hold_return_pct, Some(3.0));
        assert_eq!((s.trades, s.expectancy, s.kelly_criterion, s.avg_trade_pct), (0, None, None, None));
        // Serializes without NaN: Option fields are null.
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("NaN") && !dbg.contains("inf"), "{dbg}");
    }

    #[test]
    fn winners_only_have_no_profit_factor_or_kelly() {
        let mut r = result();
        r.trades.retain(|t| t.pnl > Decimal::ZERO);
        let s = statistics(&r, d(1000.0), &BuyAndHold::None, 0, DAY_US);
        assert_eq!((s.profit_factor, s.kelly_criterion), (None, None));
        assert_eq!(s.win_rate_pct, Some(100.0));
        assert!(s.sqn.is_some());
    }
}
