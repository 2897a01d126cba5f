//! Performance statistics of a backtest: the usual list of a bar-based backtester (start, end,
//! exposure, returns, risk-adjusted ratios, drawdowns, trade statistics), each with its formula.
//!
//! Conventions:
//!
//! * **Daily returns** `r_d` are [`crate::backtest::DailyStat::return_pct`] / 100: the equity
//!   curve resampled to one value per day (the equity at the day's last bar; the first day is
//!   measured from the initial cash). Days without bars do not exist in the series.
//! * **Annualisation** uses [`TRADING_DAYS`] = 252 daily returns a year; the risk-free rate is 0.
//!   CAGR instead uses calendar time: [`DAYS_PER_YEAR`] = 365.25 days a year.
//! * **Drawdowns** are ≤ 0, in %, against the running peak of the equity curve, which starts at
//!   the initial cash. A drawdown period runs from the last point at the peak (the first point
//!   when the curve starts below the initial cash) to the first point back at or above it, or to
//!   the last point when it never recovers.
//! * A value that is undefined for the run (no trades, no losing trade, a single day, zero
//!   variance...) is `None`, never NaN or infinity, so a zero-trade run has well-defined stats.
//! * Durations are in microseconds.

use crate::backtest::{BacktestResult, Direction};
use crate::candle::Micros;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Daily returns per year for annualisation.
pub const TRADING_DAYS: f64 = 252.0;
/// Calendar days per year for CAGR.
pub const DAYS_PER_YEAR: f64 = 365.25;
/// Microseconds in a day.
const DAY: f64 = 86_400_000_000.0;

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
    /// Geometric mean daily return, annualised: `(∏(1 + r_d))^(252 / n) − 1`, in %. Needs a day
    /// and every `1 + r_d > 0`.
    pub annual_return_pct: Option<f64>,
    /// `stdev(r_d) × √252`, in %, with the sample standard deviation (n − 1). Needs 2 days.
    pub annual_volatility_pct: Option<f64>,
    /// `(equity_final / initial_cash)^(365.25 days / duration) − 1`, in %.
    pub cagr_pct: Option<f64>,
    /// `mean(r_d) / stdev(r_d) × √252` (risk-free 0). Needs a non-zero deviation.
    pub sharpe: Option<f64>,
    /// `mean(r_d) / √(mean(min(r_d, 0)²)) × √252`; the downside deviation is over all days.
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
}

/// The statistics of `result` for the tested period `[start, end)`; see [`Stats`] for every
/// formula. `initial_cash` is the run's starting cash.
pub fn statistics(
    result: &BacktestResult,
    initial_cash: Decimal,
    buy_and_hold: &BuyAndHold,
    start: Micros,
    end: Micros,
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
        finite((r.iter().map(|x| (1.0 + x).ln()).sum::<f64>() * TRADING_DAYS / n).exp() - 1.0)
    } else {
        None
    };
    let sd = stdev(&r);
    let annual_volatility = sd.map(|s| s * TRADING_DAYS.sqrt());
    let sharpe = match (mean(&r), sd) {
        (Some(m), Some(s)) if s > 0.0 => finite(m / s * TRADING_DAYS.sqrt()),
        _ => None,
    };
    let downside = mean(&r.iter().map(|x| x.min(0.0).powi(2)).collect::<Vec<_>>()).map(f64::sqrt);
    let sortino = match (mean(&r), downside) {
        (Some(m), Some(d)) if d > 0.0 => finite(m / d * TRADING_DAYS.sqrt()),
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
    let calmar = match annual_return {
        Some(a) if max_drawdown_pct < 0.0 => finite(a / (-max_drawdown_pct / 100.0)),
        _ => None,
    };

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
    }
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
