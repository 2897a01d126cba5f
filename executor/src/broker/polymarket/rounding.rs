//! The venue's price, size and amount rules.
//!
//! * Sizes (shares) are rounded **down** to 2 decimals.
//! * Prices are multiples of the market's tick (0.1, 0.01, 0.001, 0.0001, also 0.0025), inside
//!   `[tick, 1 − tick]`. A leg's limit is rounded away from filling never: a buy limit up to
//!   the tick, a sell limit down. The tick changes at run time: pass the current one.
//! * Amounts are 6-decimal base units of collateral and shares. A resting (GTC/GTD) order is
//!   exact: shares × price has at most 2 + price decimals. A marketable (FOK/FAK) order is
//!   held to coarser grids by the venue: a buy's maker amount (collateral) at most 2 decimals
//!   and taker amount (shares) at most 4; a sell's maker amount (shares) 2 and taker amount
//!   (collateral) 4. A buy of N shares at limit p therefore offers ⌈N·p⌉ (2 dp) collateral
//!   for at least ⌊⌈N·p⌉/p⌋ (4 dp) ≥ N shares; a sell offers N shares for at least ⌊N·p⌋
//!   (4 dp). Either way the implied price never crosses the limit against us by more than the
//!   grid, and the order still fills against the levels the limit was taken from.

use rust_decimal::{Decimal, RoundingStrategy};

use super::sign::Side;

/// Decimals of the venue's token amounts (collateral and outcome shares alike).
pub const TOKEN_DECIMALS: u32 = 6;
/// Decimals of an order's size in shares.
pub const SIZE_DECIMALS: u32 = 2;
/// Marketable orders: decimals of the maker amount and of the taker amount.
pub const MARKET_MAKER_DECIMALS: u32 = 2;
pub const MARKET_TAKER_DECIMALS: u32 = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoundingError {
    #[error("tick size {0} must be inside (0, 1) with at most 4 decimals")]
    Tick(Decimal),
    #[error("price {price} is outside [{tick}, 1 - {tick}] once on the tick")]
    Price { price: Decimal, tick: Decimal },
    #[error("size {0} is under 0.01 share once rounded down to 2 decimals")]
    Size(Decimal),
}

/// A market's order tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    tick: Decimal,
    price_decimals: u32,
}

impl Tick {
    pub fn new(tick: Decimal) -> Result<Tick, RoundingError> {
        let t = tick.normalize();
        if t <= Decimal::ZERO || t >= Decimal::ONE || t.scale() > 4 {
            return Err(RoundingError::Tick(tick));
        }
        Ok(Tick { tick: t, price_decimals: t.scale() })
    }

    pub fn size(&self) -> Decimal {
        self.tick
    }

    /// Decimals of a price on this tick.
    pub fn price_decimals(&self) -> u32 {
        self.price_decimals
    }

    /// Decimals of a resting order's collateral amount: size decimals + price decimals.
    pub fn amount_decimals(&self) -> u32 {
        SIZE_DECIMALS + self.price_decimals
    }

    /// `price` on the tick, rounded toward `strategy`, and checked inside [tick, 1 − tick].
    fn on_tick(&self, price: Decimal, up: bool) -> Result<Decimal, RoundingError> {
        let steps = price / self.tick;
        let steps = if up { steps.ceil() } else { steps.floor() };
        let p = (steps * self.tick).normalize();
        if p < self.tick || p > Decimal::ONE - self.tick {
            return Err(RoundingError::Price { price, tick: self.tick });
        }
        Ok(p)
    }

    /// The limit price of an order that must fill at `price` or better: a buy rounds up to
    /// the tick, a sell down.
    pub fn limit_price(&self, side: Side, price: Decimal) -> Result<Decimal, RoundingError> {
        self.on_tick(price, side == Side::Buy)
    }
}

/// Shares rounded down to 2 decimals (the venue's size grid).
pub fn round_size(shares: Decimal) -> Decimal {
    shares.round_dp_with_strategy(SIZE_DECIMALS, RoundingStrategy::ToZero)
}

fn floor_dp(x: Decimal, dp: u32) -> Decimal {
    x.round_dp_with_strategy(dp, RoundingStrategy::ToNegativeInfinity)
}

fn ceil_dp(x: Decimal, dp: u32) -> Decimal {
    x.round_dp_with_strategy(dp, RoundingStrategy::ToPositiveInfinity)
}

/// An order's amounts in whole units (collateral and shares); [`Amounts::base_units`] gives
/// the integers that are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amounts {
    /// What the maker gives: collateral when buying, shares when selling.
    pub maker: Decimal,
    /// What the maker asks at least: shares when buying, collateral when selling.
    pub taker: Decimal,
    /// The size in shares the order stands for (rounded down to 2 decimals).
    pub shares: Decimal,
    /// The price on the tick.
    pub price: Decimal,
}

impl Amounts {
    /// (maker, taker) in 6-decimal base units.
    pub fn base_units(&self) -> (u128, u128) {
        let scale = Decimal::from(10u64.pow(TOKEN_DECIMALS));
        let units = |x: Decimal| {
            let v = (x * scale).normalize();
            debug_assert!(v.scale() == 0, "{x} has more than 6 decimals");
            u128::try_from(v.trunc()).expect("amounts are positive and small")
        };
        (units(self.maker), units(self.taker))
    }
}

fn checked_size(shares: Decimal) -> Result<Decimal, RoundingError> {
    let s = round_size(shares);
    if s <= Decimal::ZERO {
        return Err(RoundingError::Size(shares));
    }
    Ok(s)
}

/// Amounts of a resting (GTC/GTD) order of `shares` at `price` (rounded to the tick toward
/// the side's limit).
pub fn limit_amounts(
    side: Side,
    shares: Decimal,
    price: Decimal,
    tick: Tick,
) -> Result<Amounts, RoundingError> {
    let shares = checked_size(shares)?;
    let price = tick.limit_price(side, price)?;
    // Exact: 2 size decimals times the tick's decimals fit the amount grid.
    let collateral = shares * price;
    Ok(match side {
        Side::Buy => Amounts { maker: collateral, taker: shares, shares, price },
        Side::Sell => Amounts { maker: shares, taker: collateral, shares, price },
    })
}

/// Amounts of a marketable (FOK/FAK) order of `shares` that may fill up to `price` (a buy) or
/// down to it (a sell), on the coarser grids the venue imposes on marketable orders.
pub fn marketable_amounts(
    side: Side,
    shares: Decimal,
    price: Decimal,
    tick: Tick,
) -> Result<Amounts, RoundingError> {
    let shares = checked_size(shares)?;
    let price = tick.limit_price(side, price)?;
    Ok(match side {
        Side::Buy => {
            let maker = ceil_dp(shares * price, MARKET_MAKER_DECIMALS);
            let taker = floor_dp(maker / price, MARKET_TAKER_DECIMALS);
            Amounts { maker, taker, shares, price }
        }
        Side::Sell => {
            let taker = floor_dp(shares * price, MARKET_TAKER_DECIMALS);
            Amounts { maker: shares, taker, shares, price }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn ticks_and_limits() {
        let t = Tick::new(d("0.010")).unwrap();
        assert_eq!((t.size(), t.price_decimals(), t.amount_decimals()), (d("0.01"), 2, 4));
        assert_eq!(Tick::new(d("0.0025")).unwrap().price_decimals(), 4);
        assert!(Tick::new(d("0.00001")).is_err() && Tick::new(d("1")).is_err() && Tick::new(d("0")).is_err());
        // A buy limit never rounds down, a sell limit never up.
        assert_eq!(t.limit_price(Side::Buy, d("0.523")).unwrap(), d("0.53"));
        assert_eq!(t.limit_price(Side::Sell, d("0.527")).unwrap(), d("0.52"));
        assert_eq!(t.limit_price(Side::Buy, d("0.52")).unwrap(), d("0.52"));
        let q = Tick::new(d("0.0025")).unwrap();
        assert_eq!(q.limit_price(Side::Buy, d("0.5001")).unwrap(), d("0.5025"));
        assert_eq!(q.limit_price(Side::Sell, d("0.5049")).unwrap(), d("0.5025"));
        // Outside [tick, 1 − tick].
        assert!(t.limit_price(Side::Buy, d("0.995")).is_err());
        assert!(t.limit_price(Side::Sell, d("0.009")).is_err());
        assert_eq!(round_size(d("12.3456")), d("12.34"));
        assert_eq!(round_size(d("0.009")), d("0"));
    }

    #[test]
    fn hand_worked_amounts() {
        let t = Tick::new(d("0.01")).unwrap();
        // Resting buy of 100 at 0.5: 50 collateral for 100 shares (the test order's amounts).
        let a = limit_amounts(Side::Buy, d("100"), d("0.5"), t).unwrap();
        assert_eq!(a.base_units(), (50_000_000, 100_000_000));
        // Resting sell of 12.345 (→ 12.34) at 0.37: 12.34 shares for 4.5658.
        let a = limit_amounts(Side::Sell, d("12.345"), d("0.37"), t).unwrap();
        assert_eq!(a.base_units(), (12_340_000, 4_565_800));
        // Marketable buy of 12.34 at 0.37: 4.5658 → 4.57 collateral (2 dp), at least
        // 4.57 / 0.37 = 12.351351… → 12.3513 shares (4 dp).
        let a = marketable_amounts(Side::Buy, d("12.34"), d("0.37"), t).unwrap();
        assert_eq!((a.maker, a.taker), (d("4.57"), d("12.3513")));
        assert_eq!(a.base_units(), (4_570_000, 12_351_300));
        // Marketable sell of 12.34 at 0.37 on a 0.001 tick at 0.371: 4.57814 → 4.5781.
        let m = Tick::new(d("0.001")).unwrap();
        let a = marketable_amounts(Side::Sell, d("12.34"), d("0.371"), m).unwrap();
        assert_eq!((a.maker, a.taker), (d("12.34"), d("4.5781")));
        assert_eq!(limit_amounts(Side::Buy, d("0.001"), d("0.5"), t), Err(RoundingError::Size(d("0.001"))));
    }

    proptest! {
        #[test]
        fn marketable_amounts_respect_the_grids_and_the_limit(
            n in 1u64..1_000_000, k in 1u64..100, tick_ix in 0usize..4, side_buy: bool,
        ) {
            let tick = [d("0.1"), d("0.01"), d("0.001"), d("0.0001")][tick_ix];
            let t = Tick::new(tick).unwrap();
            let shares = Decimal::new(n as i64, 2);
            let price = t.limit_price(Side::Buy, Decimal::new(k as i64, 2)).unwrap_or(tick);
            prop_assume!(price <= Decimal::ONE - tick);
            let side = if side_buy { Side::Buy } else { Side::Sell };
            let a = marketable_amounts(side, shares, price, t).unwrap();
            let (maker_dp, taker_dp) = (a.maker.normalize().scale(), a.taker.normalize().scale());
            prop_assert!(maker_dp <= MARKET_MAKER_DECIMALS && taker_dp <= MARKET_TAKER_DECIMALS);
            match side {
                // At least the shares asked for, never more than one maker grid step of
                // collateral over their cost at the limit.
                Side::Buy => {
                    prop_assert!(a.taker >= shares);
                    prop_assert!(a.maker >= shares * price && a.maker - shares * price < d("0.01"));
                }
                // The shares offered, for at least their value at the limit less one taker step.
                Side::Sell => {
                    prop_assert_eq!(a.maker, shares);
                    prop_assert!(a.taker <= shares * price && shares * price - a.taker < d("0.0001"));
                }
            }
            // A resting order is exact.
            let l = limit_amounts(side, shares, price, t).unwrap();
            let (collateral, got) = if side_buy { (l.maker, l.taker) } else { (l.taker, l.maker) };
            prop_assert_eq!(collateral, shares * price);
            prop_assert_eq!(got, shares);
            let _ = l.base_units();
        }
    }
}
