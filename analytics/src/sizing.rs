//! Position sizing: how many whole shares an entry signal trades. One function, used by the
//! backtest simulator, the live signal writer (`run_cycle`) and the executor, so a backtest
//! sizes exactly as live trading does.
//!
//! # The formula
//!
//! ```text
//! distance = |entry − stop|
//! by_risk  = ⌊ equity × (risk_pct / 100) / distance ⌋        f64, as written, left to right
//! by_cash  = ⌊ available / cost_per_share ⌋                  Decimal
//! qty      = min(by_risk, by_cash)
//! qty      = min(qty, ⌊ max_notional / entry ⌋)               Decimal, only with a cap
//! ```
//!
//! checked in that order:
//!
//! * [`SizeBlock::Risk`]: the entry price is not a finite number > 0, the stop is missing, at
//!   the price or not finite, or the risk budget buys less than one share (including a NaN
//!   budget from a NaN percentage or a non-positive equity);
//! * [`SizeBlock::Cash`]: `cost_per_share` or `available` is ≤ 0, or `available` does not pay
//!   for one share;
//! * [`SizeBlock::Notional`]: `max_notional` is less than one share's notional.
//!
//! The risk part is `f64` (the equity converted with `to_f64`, NaN when out of range) and
//! converts to an integer with `as u64`, which saturates: a huge risk quantity is then cut by
//! cash. The cash and notional parts are exact `Decimal` divisions floored to whole shares; a
//! quotient beyond `u64` (or beyond `Decimal`'s range) saturates to `u64::MAX`, and when the
//! division's rounding to 28 digits lands on the next integer the quantity is lowered until
//! `qty × cost_per_share ≤ available` and `qty × entry ≤ max_notional` hold exactly. The entry
//! of the notional cap is `Decimal::from_f64(entry)` (the float's shortest decimal form).

use crate::backtest::to_f64;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use std::fmt;

/// What sizing an entry signal needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeInputs {
    /// Account equity now.
    pub equity: Decimal,
    /// % of equity risked per trade (`strategy.risk_per_trade_pct`).
    pub risk_pct: f64,
    /// The signal price.
    pub entry: f64,
    /// The stop price.
    pub stop: Option<f64>,
    /// Estimated cost of one share including adverse slippage and commission (≥ entry).
    pub cost_per_share: Decimal,
    /// Buying power: cash not reserved by other orders.
    pub available: Decimal,
    /// Cap on `qty × entry` (`risk_limits.max_order_notional`); `None`: no cap.
    pub max_notional: Option<Decimal>,
}

/// Why no whole share can be traded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeBlock {
    /// No stop, a stop at the price, or a risk budget under one share.
    Risk,
    /// Not enough buying power for one share.
    Cash,
    /// `max_notional` is under one share's notional.
    Notional,
}

impl SizeBlock {
    /// `"size"`, `"buying_power"` or `"max_notional"` (the executor's reject codes).
    pub fn code(self) -> &'static str {
        match self {
            SizeBlock::Risk => "size",
            SizeBlock::Cash => "buying_power",
            SizeBlock::Notional => "max_notional",
        }
    }
}

impl fmt::Display for SizeBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SizeBlock::Risk => "the risk budget is under one share, or the stop is missing or at the price",
            SizeBlock::Cash => "the buying power is under one share",
            SizeBlock::Notional => "the maximum order notional is under one share",
        })
    }
}

/// The number of whole shares (≥ 1) an entry trades, or why none; see the [module
/// documentation](self) for the formula.
pub fn position_size(i: &SizeInputs) -> Result<u64, SizeBlock> {
    if !(i.entry.is_finite() && i.entry > 0.0) {
        return Err(SizeBlock::Risk);
    }
    let distance = i.stop.map(|stop| (i.entry - stop).abs()).unwrap_or(f64::NAN);
    let risk_frac = i.risk_pct / 100.0;
    let by_risk = (to_f64(i.equity) * risk_frac / distance).floor();
    // A missing stop, or one at the price, leaves the risk undefined: no size.
    if !(distance.is_finite() && distance > 0.0) || by_risk.is_nan() || by_risk < 1.0 {
        return Err(SizeBlock::Risk);
    }
    let by_cash = whole_units(i.available, i.cost_per_share);
    if by_cash == 0 {
        return Err(SizeBlock::Cash);
    }
    // `as` saturates: a huge risk quantity is then cut by cash.
    let qty = (by_risk as u64).min(by_cash);
    let Some(max) = i.max_notional else { return Ok(qty) };
    let cap = match Decimal::from_f64(i.entry) {
        Some(entry) => whole_units(max, entry),
        None => 0, // one share's notional is beyond any Decimal
    };
    if cap == 0 {
        return Err(SizeBlock::Notional);
    }
    Ok(qty.min(cap))
}

/// ⌊budget / price⌋ whole units with `units × price ≤ budget`; 0 unless both are > 0.
fn whole_units(budget: Decimal, price: Decimal) -> u64 {
    if !(budget > Decimal::ZERO && price > Decimal::ZERO) {
        return 0;
    }
    let Some(q) = budget.checked_div(price) else { return u64::MAX };
    let mut n = q.floor().to_u64().unwrap_or(u64::MAX);
    // The quotient is rounded to 28 digits; it may have rounded up to the next integer.
    while n > 0 && !matches!(Decimal::from(n).checked_mul(price), Some(cost) if cost <= budget) {
        n -= 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn inputs() -> SizeInputs {
        SizeInputs {
            equity: dec("100000"),
            risk_pct: 1.0,
            entry: 100.0,
            stop: Some(95.0),
            cost_per_share: dec("100"),
            available: dec("100000"),
            max_notional: None,
        }
    }

    #[test]
    fn risk_budget_over_stop_distance() {
        // 1 % of 100000 = 1000 at risk, 5 per share: 200 shares.
        assert_eq!(position_size(&inputs()), Ok(200));
        // A short's stop is above the price: the distance is the same.
        assert_eq!(position_size(&SizeInputs { stop: Some(105.0), ..inputs() }), Ok(200));
        // Floored: 1000 / 3 = 333.3.
        assert_eq!(position_size(&SizeInputs { stop: Some(97.0), ..inputs() }), Ok(333));
    }

    #[test]
    fn cash_caps_the_risk_quantity() {
        let i = SizeInputs { available: dec("10050"), ..inputs() };
        assert_eq!(position_size(&i), Ok(100));
        let i = SizeInputs { cost_per_share: dec("100.5"), available: dec("10050"), ..inputs() };
        assert_eq!(position_size(&i), Ok(100));
        let i = SizeInputs { cost_per_share: dec("100.51"), available: dec("10050"), ..inputs() };
        assert_eq!(position_size(&i), Ok(99));
    }

    #[test]
    fn notional_cap_comes_last() {
        let i = SizeInputs { max_notional: Some(dec("25000")), ..inputs() };
        assert_eq!(position_size(&i), Ok(200));
        let i = SizeInputs { max_notional: Some(dec("15050")), ..inputs() };
        assert_eq!(position_size(&i), Ok(150));
        let i = SizeInputs { max_notional: Some(dec("99.99")), ..inputs() };
        assert_eq!(position_size(&i), Err(SizeBlock::Notional));
        let i = SizeInputs { max_notional: Some(Decimal::ZERO), ..inputs() };
        assert_eq!(position_size(&i), Err(SizeBlock::Notional));
        // Risk and cash are checked first.
        let i = SizeInputs { max_notional: Some(dec("1")), stop: None, ..inputs() };
        assert_eq!(position_size(&i), Err(SizeBlock::Risk));
        let i = SizeInputs { max_notional: Some(dec("1")), available: dec("1"), ..inputs() };
        assert_eq!(position_size(&i), Err(SizeBlock::Cash));
    }

    #[test]
    fn blocks() {
        let risk = |i: SizeInputs| assert_eq!(position_size(&i), Err(SizeBlock::Risk), "{i:?}");
        risk(SizeInputs { stop: None, ..inputs() });
        risk(SizeInputs { stop: Some(100.0), ..inputs() });
        risk(SizeInputs { stop: Some(f64::NAN), ..inputs() });
        risk(SizeInputs { stop: Some(f64::INFINITY), ..inputs() });
        risk(SizeInputs { entry: f64::NAN, ..inputs() });
        risk(SizeInputs { entry: 0.0, stop: Some(-5.0), ..inputs() });
        risk(SizeInputs { entry: -100.0, stop: Some(-95.0), ..inputs() });
        risk(SizeInputs { risk_pct: f64::NAN, ..inputs() });
        risk(SizeInputs { risk_pct: 0.0, ..inputs() });
        risk(SizeInputs { equity: dec("-100000"), ..inputs() });
        // 1 % of 400 = 4 < one share's risk of 5.
        risk(SizeInputs { equity: dec("400"), ..inputs() });
        assert_eq!(position_size(&SizeInputs { equity: dec("500"), ..inputs() }), Ok(1));

        let cash = |i: SizeInputs| assert_eq!(position_size(&i), Err(SizeBlock::Cash), "{i:?}");
        cash(SizeInputs { available: dec("99.99"), ..inputs() });
        cash(SizeInputs { available: Decimal::ZERO, ..inputs() });
        cash(SizeInputs { available: dec("-5"), ..inputs() });
        cash(SizeInputs { cost_per_share: Decimal::ZERO, ..inputs() });
        assert_eq!(position_size(&SizeInputs { available: dec("100"), ..inputs() }), Ok(1));
    }

    #[test]
    fn codes() {
        assert_eq!(SizeBlock::Risk.code(), "size");
        assert_eq!(SizeBlock::Cash.code(), "buying_power");
        assert_eq!(SizeBlock::Notional.code(), "max_notional");
    }

    #[test]
    fn huge_quantities_saturate() {
        // The risk quantity (7.9e26 shares) saturates and is cut by cash.
        let i = SizeInputs { equity: Decimal::MAX, ..inputs() };
        assert_eq!(position_size(&i), Ok(1000));
        // A cash quotient beyond u64 (and beyond Decimal) saturates too.
        let big = SizeInputs {
            equity: Decimal::MAX,
            risk_pct: 100.0,
            entry: 1e-9,
            stop: Some(0.5e-9),
            cost_per_share: dec("0.000000001"),
            available: Decimal::MAX,
            max_notional: None,
        };
        assert_eq!(position_size(&big), Ok(u64::MAX));
        let capped = SizeInputs { max_notional: Some(dec("1")), ..big };
        assert_eq!(position_size(&capped), Ok(1_000_000_000));
    }

    #[test]
    fn a_quotient_rounded_up_is_lowered() {
        // (3e18 − 1e-10) / 3 = 999999999999999999.99999999996…, which 28 digits round up to 1e18.
        let budget = Decimal::from(3_000_000_000_000_000_000u64) - Decimal::new(1, 10);
        let price = Decimal::from(3);
        assert_eq!((budget / price).floor(), Decimal::from(1_000_000_000_000_000_000u64));
        assert_eq!(whole_units(budget, price), 999_999_999_999_999_999);
        // Exact quotients are kept.
        assert_eq!(whole_units(Decimal::from(300), price), 100);
        assert_eq!(whole_units(Decimal::ONE, Decimal::ONE / price), 3);
    }

    /// The simulator sizes with [`position_size`], `max_order_notional` included.
    #[test]
    fn backtests_cap_the_notional() {
        use crate::backtest::{run_with, BacktestBar, BacktestData, BacktestParams, BarContext};
        use crate::backtest::{SignalSource, SymbolSeries};
        use crate::candle::Candle;
        use crate::engine::{BarInput, EngineError};
        use crate::state::{FlowDirection, MarketState};
        use crate::strategy::{Signal, SignalKind};
        use crate::Side;

        struct LongAtFirstBar;
        impl SignalSource for LongAtFirstBar {
            fn on_bar(
                &mut self,
                _: usize,
                _: &BarInput,
                ctx: &BarContext,
            ) -> Result<Option<Signal>, EngineError> {
                Ok((ctx.bar_index == 0).then(|| Signal {
                    kind: SignalKind::Entry,
                    side: Side::Buy,
                    price: 100.0,
                    stop: Some(95.0),
                    target: None,
                    atr: Some(1.0),
                    reason: "test".into(),
                    aggression: 80.0,
                    direction: FlowDirection::Neutral,
                    state: MarketState::Balance,
                    confidence: 50.0,
                }))
            }
        }
        let run = |max_order_notional: Option<&str>| {
            let bars = (0..3)
                .map(|i| {
                    let candle = Candle::from_ohlcv(0, 100.0, 100.0, 100.0, 100.0, 1000.0);
                    let input =
                        BarInput { time: i * 60_000_000, session: 1, candle, profile: None, position: None };
                    BacktestBar::new(input, true)
                })
                .collect();
            let series = SymbolSeries { symbol: "A".into(), tick_size: 0.01, bars };
            let mut data = BacktestData::new(vec![series]).unwrap();
            let params =
                BacktestParams { max_order_notional: max_order_notional.map(dec), ..Default::default() };
            run_with(&mut data, &params, &mut LongAtFirstBar, &mut |_| true).unwrap()
        };
        // 1 % of 100000 over a 5 stop: 200 shares; a 15050 cap leaves 150; a 50 cap none.
        assert_eq!(run(None).trades[0].qty, 200);
        assert_eq!(run(Some("15050")).trades[0].qty, 150);
        let blocked = run(Some("50"));
        assert!(blocked.trades.is_empty());
        assert_eq!(blocked.signals_blocked.size, 1);

        let zero = BacktestParams { max_order_notional: Some(Decimal::ZERO), ..Default::default() };
        assert_eq!(zero.validate().unwrap_err().field, "max_order_notional");
    }

    fn money() -> impl Strategy<Value = Decimal> {
        // Up to 1e10 with 8 decimal places, as the simulator's money.
        (0i64..1_000_000_000_000_000_000).prop_map(|n| Decimal::new(n, 8))
    }

    fn any_inputs() -> impl Strategy<Value = SizeInputs> {
        (
            money(),
            0.0f64..100.0,
            1e-4f64..1e6,
            prop::option::of(1e-4f64..1e6),
            money(),
            money(),
            prop::option::of(money()),
        )
            .prop_map(|(equity, risk_pct, entry, stop, extra, available, max_notional)| SizeInputs {
                equity,
                risk_pct,
                entry,
                stop,
                cost_per_share: Decimal::from_f64(entry).unwrap() + extra / Decimal::from(1_000_000),
                available,
                max_notional,
            })
    }

    proptest! {
        #[test]
        fn never_more_than_cash_or_cap(i in any_inputs()) {
            if let Ok(q) = position_size(&i) {
                prop_assert!(q >= 1);
                prop_assert!(Decimal::from(q) * i.cost_per_share <= i.available);
                if let Some(max) = i.max_notional {
                    prop_assert!(Decimal::from(q) * Decimal::from_f64(i.entry).unwrap() <= max);
                }
                let stop = i.stop.unwrap();
                let risked = q as f64 * (i.entry - stop).abs();
                prop_assert!(risked <= to_f64(i.equity) * i.risk_pct / 100.0 * (1.0 + 1e-12));
            }
        }

        #[test]
        fn monotone_in_equity(i in any_inputs(), more in money()) {
            let richer = SizeInputs { equity: i.equity + more, ..i };
            match (position_size(&i), position_size(&richer)) {
                (Ok(q), Ok(r)) => prop_assert!(r >= q, "{q} shares with less equity, {r} with more"),
                (Ok(q), Err(b)) => prop_assert!(false, "{q} shares with less equity, {b:?} with more"),
                // More equity can only lift a risk block.
                (Err(a), Ok(_)) => prop_assert_eq!(a, SizeBlock::Risk),
                (Err(a), Err(b)) => prop_assert!(a == b || a == SizeBlock::Risk, "{a:?} then {b:?}"),
            }
        }
    }
}
