//! The Polymarket taker fee (CLOB V2): charged at match, in collateral, by takers only:
//! `fee = shares × rate × (p × (1 − p))^exponent`, with `rate` and `exponent` per market (the
//! exponent is 1 on every published schedule: crypto 0.072, sports 0.03, politics 0.04...).
//! The fee peaks at p = 0.5 and is symmetric in p ↔ 1 − p, so buying YES at p costs the same fee
//! as buying NO at 1 − p.
//!
//! [`FeeSchedule::taker_fee`] is exact (Decimal, no rounding). The venue is reported to floor
//! each fill's fee to 5 decimals ([`FeeSchedule::venue_charge`]); an arbitrage that walks
//! several levels or meets several makers pays one floor per fill, which we cannot know in
//! advance, so the arbitrage maths uses the exact fee: it never understates a cost.

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};

/// Decimals of the venue's fee charge.
pub const FEE_DECIMALS: u32 = 5;

/// Which side of a match: takers pay the fee, makers pay nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liquidity {
    Taker,
    Maker,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeeError {
    /// The rate must be in [0, 1).
    Rate(Decimal),
    /// The exponent must be in 0..=8.
    Exponent(u32),
    /// A price outside [0, 1].
    Price(Decimal),
    /// A negative share count.
    Shares(Decimal),
}

impl fmt::Display for FeeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeeError::Rate(r) => write!(f, "fee rate {r} is outside [0, 1) (a fraction: 0.04 is 4 %)"),
            FeeError::Exponent(e) => write!(f, "fee exponent {e} is outside 0..=8"),
            FeeError::Price(p) => write!(f, "price {p} is outside [0, 1]"),
            FeeError::Shares(s) => write!(f, "share count {s} is negative"),
        }
    }
}

impl std::error::Error for FeeError {}

/// A market's taker fee parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeeSchedule {
    rate: Decimal,
    exponent: u32,
}

impl Default for FeeSchedule {
    fn default() -> Self {
        FeeSchedule::FREE
    }
}

impl FeeSchedule {
    /// No fee (a market with fees disabled).
    pub const FREE: FeeSchedule = FeeSchedule { rate: Decimal::ZERO, exponent: 1 };

    /// `rate` is a fraction (0.04 = 4 %), `exponent` a whole number (usually 1).
    pub fn new(rate: Decimal, exponent: u32) -> Result<FeeSchedule, FeeError> {
        if rate < Decimal::ZERO || rate >= Decimal::ONE {
            return Err(FeeError::Rate(rate));
        }
        if exponent > 8 {
            return Err(FeeError::Exponent(exponent));
        }
        Ok(FeeSchedule { rate, exponent })
    }

    pub fn rate(&self) -> Decimal {
        self.rate
    }

    pub fn exponent(&self) -> u32 {
        self.exponent
    }

    pub fn is_free(&self) -> bool {
        self.rate.is_zero()
    }

    /// The taker fee of one share at `price`: rate × (p(1 − p))^exponent.
    pub fn per_share(&self, price: Decimal) -> Result<Decimal, FeeError> {
        if price < Decimal::ZERO || price > Decimal::ONE {
            return Err(FeeError::Price(price));
        }
        let base = price * (Decimal::ONE - price);
        let mut curve = Decimal::ONE;
        for _ in 0..self.exponent {
            curve *= base;
        }
        Ok(self.rate * curve)
    }

    /// The exact taker fee of `shares` at `price`, in collateral.
    pub fn taker_fee(&self, shares: Decimal, price: Decimal) -> Result<Decimal, FeeError> {
        if shares < Decimal::ZERO {
            return Err(FeeError::Shares(shares));
        }
        Ok(shares * self.per_share(price)?)
    }

    /// The fee of one fill by liquidity side, exact.
    pub fn fee(&self, shares: Decimal, price: Decimal, liquidity: Liquidity) -> Result<Decimal, FeeError> {
        match liquidity {
            Liquidity::Taker => self.taker_fee(shares, price),
            Liquidity::Maker => {
                self.taker_fee(shares, price)?;
                Ok(Decimal::ZERO)
            }
        }
    }

    /// What the venue charges a taker for one fill: the exact fee floored to 5 decimals.
    pub fn venue_charge(&self, shares: Decimal, price: Decimal) -> Result<Decimal, FeeError> {
        Ok(self.taker_fee(shares, price)?.round_dp_with_strategy(FEE_DECIMALS, RoundingStrategy::ToZero))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn hand_worked_fees() {
        // Politics, 4 %: 100 shares at 0.40 pay 100 × 0.04 × 0.40 × 0.60 = 0.96.
        let politics = FeeSchedule::new(d("0.04"), 1).unwrap();
        assert_eq!(politics.taker_fee(d("100"), d("0.40")).unwrap(), d("0.96"));
        // The same at 0.60 (symmetry), and makers pay nothing.
        assert_eq!(politics.taker_fee(d("100"), d("0.60")).unwrap(), d("0.96"));
        assert_eq!(politics.fee(d("100"), d("0.40"), Liquidity::Maker).unwrap(), Decimal::ZERO);
        // Crypto, 7.2 %, at the peak p = 0.5: 0.072 × 0.5 × 0.5 = 0.018 per share.
        let crypto = FeeSchedule::new(d("0.072"), 1).unwrap();
        assert_eq!(crypto.per_share(d("0.5")).unwrap(), d("0.018"));
        // 12.34 shares at 0.37: 0.37 × 0.63 = 0.2331, × 0.072 = 0.0167832 per share,
        // × 12.34 = 0.207104688 exactly, which the venue floors to 0.20710.
        assert_eq!(crypto.taker_fee(d("12.34"), d("0.37")).unwrap(), d("0.207104688"));
        assert_eq!(crypto.venue_charge(d("12.34"), d("0.37")).unwrap(), d("0.20710"));
        // Exponent 2: 0.04 × (0.5 × 0.5)² = 0.0025 per share.
        assert_eq!(FeeSchedule::new(d("0.04"), 2).unwrap().per_share(d("0.5")).unwrap(), d("0.0025"));
        // At the extremes the fee vanishes.
        assert_eq!(crypto.per_share(Decimal::ONE).unwrap(), Decimal::ZERO);
        assert!(FeeSchedule::FREE.is_free());
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert_eq!(FeeSchedule::new(d("1"), 1), Err(FeeError::Rate(d("1"))));
        assert_eq!(FeeSchedule::new(d("-0.01"), 1), Err(FeeError::Rate(d("-0.01"))));
        assert_eq!(FeeSchedule::new(d("0.04"), 9), Err(FeeError::Exponent(9)));
        let f = FeeSchedule::new(d("0.04"), 1).unwrap();
        assert_eq!(f.taker_fee(d("1"), d("1.01")), Err(FeeError::Price(d("1.01"))));
        assert_eq!(f.taker_fee(d("-1"), d("0.5")), Err(FeeError::Shares(d("-1"))));
        assert_eq!(f.fee(d("1"), d("-0.5"), Liquidity::Maker), Err(FeeError::Price(d("-0.5"))));
    }

    fn price() -> impl Strategy<Value = Decimal> {
        (0u32..=1000).prop_map(|p| Decimal::new(p as i64, 3))
    }

    fn shares() -> impl Strategy<Value = Decimal> {
        (0u64..10_000_000).prop_map(|s| Decimal::new(s as i64, 2))
    }

    fn schedule() -> impl Strategy<Value = FeeSchedule> {
        ((0u32..1000), 1u32..=3).prop_map(|(r, e)| FeeSchedule::new(Decimal::new(r as i64, 4), e).unwrap())
    }

    proptest! {
        #[test]
        fn fees_are_monotone_symmetric_and_peak_at_half(
            f in schedule(), p in price(), a in shares(), b in shares(), r2 in 0u32..1000,
        ) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            // Monotone in shares, for the exact fee and for the venue's floored charge.
            prop_assert!(f.taker_fee(lo, p).unwrap() <= f.taker_fee(hi, p).unwrap());
            prop_assert!(f.venue_charge(lo, p).unwrap() <= f.venue_charge(hi, p).unwrap());
            // Never negative; the charge is the exact fee floored.
            let exact = f.taker_fee(hi, p).unwrap();
            let charge = f.venue_charge(hi, p).unwrap();
            prop_assert!(charge >= Decimal::ZERO && charge <= exact && exact - charge < d("0.00001"));
            // Symmetric in p ↔ 1 − p and at most the fee at 0.5.
            prop_assert_eq!(f.per_share(p).unwrap(), f.per_share(Decimal::ONE - p).unwrap());
            prop_assert!(f.per_share(p).unwrap() <= f.per_share(d("0.5")).unwrap());
            // Monotone in the rate.
            let g = FeeSchedule::new(Decimal::new(r2 as i64, 4), f.exponent()).unwrap();
            if f.rate() <= g.rate() {
                prop_assert!(f.taker_fee(hi, p).unwrap() <= g.taker_fee(hi, p).unwrap());
            }
            // Additive in shares (the exact fee): splitting a fill changes nothing.
            prop_assert_eq!(f.taker_fee(lo + hi, p).unwrap(), f.taker_fee(lo, p).unwrap() + f.taker_fee(hi, p).unwrap());
        }
    }
}
