//! The fill model, shared by the backtest simulator and the executor's simulated broker so
//! that a live session traded by the sim broker gives the backtest's trades: market-like fills
//! slip against the trade, targets are limits, commission per leg, and the bracket check of
//! one bar (an open beyond a level fills at the open; a bar touching both uses
//! `same_bar_stop_first`).

use super::{money, round_money, BacktestParams, ExitReason};
use crate::candle::Candle;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

/// Costs and the same-bar rule of [`BacktestParams`].
#[derive(Debug, Clone, PartialEq)]
pub struct FillModel {
    /// Adverse slippage in ticks on market-like fills.
    pub slippage_ticks: f64,
    /// Adverse slippage in basis points of the price; adds to the ticks.
    pub slippage_bps: f64,
    /// Commission per share on each leg.
    pub commission_per_share: Decimal,
    /// Commission in % of a leg's notional.
    pub commission_pct: f64,
    /// A bar touching both stop and target fills the stop.
    pub same_bar_stop_first: bool,
}

impl Default for FillModel {
    fn default() -> Self {
        FillModel::from_params(&BacktestParams::default())
    }
}

/// A stop or target exit found in a bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BracketFill {
    /// The market price that triggered it: the open, the stop or the target.
    pub price: f64,
    /// Market-like (slippage applies): stops; targets are limits.
    pub slipped: bool,
    pub reason: ExitReason,
}

impl FillModel {
    pub fn from_params(p: &BacktestParams) -> FillModel {
        FillModel {
            slippage_ticks: p.slippage_ticks,
            slippage_bps: p.slippage_bps,
            commission_per_share: p.commission_per_share,
            commission_pct: p.commission_pct,
            same_bar_stop_first: p.same_bar_stop_first,
        }
    }

    /// `slippage_ticks × tick_size`, in money.
    pub fn slip_abs(&self, tick_size: f64) -> Decimal {
        round_money(money(self.slippage_ticks) * money(tick_size))
    }

    /// `slippage_bps / 10000`.
    pub fn slip_frac(&self) -> Decimal {
        money(self.slippage_bps) / Decimal::new(10_000, 0)
    }

    /// `commission_pct / 100`.
    pub fn fee_frac(&self) -> Decimal {
        money(self.commission_pct) / Decimal::ONE_HUNDRED
    }

    /// `price` moved against an order on `buy`'s side: `slip_abs + price × slip_frac`.
    pub fn slipped(slip_abs: Decimal, slip_frac: Decimal, price: Decimal, buy: bool) -> Decimal {
        let slip = slip_abs + round_money(price * slip_frac);
        if buy {
            price + slip
        } else {
            price - slip
        }
    }

    /// A market-like fill price for a symbol of `tick_size`.
    pub fn market_fill(&self, tick_size: f64, price: f64, buy: bool) -> Decimal {
        FillModel::slipped(self.slip_abs(tick_size), self.slip_frac(), money(price), buy)
    }

    /// Commission of one leg: `qty × commission_per_share + qty × price × commission_pct / 100`.
    pub fn fee(&self, qty: u64, price: Decimal) -> Decimal {
        FillModel::fee_with(self.commission_per_share, self.fee_frac(), qty, price)
    }

    pub(crate) fn fee_with(per_share: Decimal, fee_frac: Decimal, qty: u64, price: Decimal) -> Decimal {
        let q = Decimal::from(qty);
        round_money(q * per_share + q * price * fee_frac)
    }

    /// The entry quantity, at most `qty`, that `cash` covers at `price` with commission: the
    /// cut a broker's buying-power check makes when the open gapped against the estimate.
    pub fn affordable(&self, qty: u64, price: Decimal, cash: Decimal) -> u64 {
        FillModel::affordable_with(self.commission_per_share, self.fee_frac(), qty, price, cash)
    }

    pub(crate) fn affordable_with(
        per_share: Decimal,
        fee_frac: Decimal,
        qty: u64,
        price: Decimal,
        cash: Decimal,
    ) -> u64 {
        let cost = |q: u64| Decimal::from(q) * price + FillModel::fee_with(per_share, fee_frac, q, price);
        if cost(qty) <= cash {
            return qty;
        }
        let unit = price * (Decimal::ONE + fee_frac) + per_share;
        let mut q = if cash > Decimal::ZERO && unit > Decimal::ZERO {
            (cash / unit).floor().to_u64().unwrap_or(0).min(qty)
        } else {
            0
        };
        while q > 0 && cost(q) > cash {
            q -= 1;
        }
        q
    }

    /// What one share costs to buy (or to collateralise short) at `fill_price`, commission
    /// included: the sizing estimate.
    pub fn cost_per_share(&self, fill_price: Decimal) -> Decimal {
        fill_price * (Decimal::ONE + self.fee_frac()) + self.commission_per_share
    }

    /// The stop or target exit of a position in bar `c`, if any (see the module docs).
    pub fn bracket(&self, long: bool, stop: f64, target: Option<f64>, c: &Candle) -> Option<BracketFill> {
        bracket_exit(long, stop, target, c, self.same_bar_stop_first)
    }
}

/// The stop or target exit in bar `c` of a position `long` or short with these levels.
pub fn bracket_exit(
    long: bool,
    stop: f64,
    target: Option<f64>,
    c: &Candle,
    same_bar_stop_first: bool,
) -> Option<BracketFill> {
    let beyond_stop = |x: f64| if long { x <= stop } else { x >= stop };
    let beyond_target = |x: f64| target.is_some_and(|t| if long { x >= t } else { x <= t });
    let exit = |price: f64, slipped: bool, reason: ExitReason| Some(BracketFill { price, slipped, reason });
    if beyond_stop(c.open) {
        return exit(c.open, true, ExitReason::Stop);
    }
    if beyond_target(c.open) {
        return exit(c.open, false, ExitReason::Target);
    }
    let (adverse, favourable) = if long { (c.low, c.high) } else { (c.high, c.low) };
    match (beyond_stop(adverse), beyond_target(favourable)) {
        (true, true) if same_bar_stop_first => exit(stop, true, ExitReason::Stop),
        (true, false) => exit(stop, true, ExitReason::Stop),
        (_, true) => exit(target.unwrap_or(c.open), false, ExitReason::Target),
        (false, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(open: f64, high: f64, low: f64, close: f64) -> Candle {
        Candle::from_ohlcv(0, open, high, low, close, 100.0)
    }

    #[test]
    fn stop_first_when_both_touched() {
        let c = bar(100.0, 103.0, 97.0, 101.0);
        let f = bracket_exit(true, 98.0, Some(102.0), &c, true).unwrap();
        assert_eq!((f.price, f.reason), (98.0, ExitReason::Stop));
        let f = bracket_exit(true, 98.0, Some(102.0), &c, false).unwrap();
        assert_eq!((f.price, f.reason, f.slipped), (102.0, ExitReason::Target, false));
    }

    #[test]
    fn gap_beyond_a_level_fills_at_the_open() {
        let f = bracket_exit(true, 98.0, Some(102.0), &bar(97.0, 99.0, 96.0, 98.5), true).unwrap();
        assert_eq!((f.price, f.reason), (97.0, ExitReason::Stop));
        let f = bracket_exit(false, 102.0, Some(98.0), &bar(97.0, 99.0, 96.0, 98.5), true).unwrap();
        assert_eq!((f.price, f.reason), (97.0, ExitReason::Target));
        assert_eq!(bracket_exit(true, 98.0, Some(102.0), &bar(100.0, 101.0, 99.0, 100.0), true), None);
    }

    #[test]
    fn slippage_and_fees() {
        let m = FillModel {
            slippage_ticks: 2.0,
            slippage_bps: 10.0,
            commission_per_share: Decimal::new(5, 3),
            commission_pct: 0.1,
            same_bar_stop_first: true,
        };
        // 2 × 0.01 + 100 × 0.001 = 0.12 against the trade.
        assert_eq!(m.market_fill(0.01, 100.0, true), Decimal::new(10012, 2));
        assert_eq!(m.market_fill(0.01, 100.0, false), Decimal::new(9988, 2));
        // 10 × 0.005 + 10 × 100 × 0.001 = 1.05
        assert_eq!(m.fee(10, Decimal::ONE_HUNDRED), Decimal::new(105, 2));
    }
}
