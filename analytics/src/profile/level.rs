//! One price row's volume by aggressor side: the exact sums a profile accumulates
//! ([`RowSums`]) and the doubles readers see ([`Level`]).

use crate::exact::ExactSum;
use crate::side::Side;
use serde::Serialize;

/// Volume traded at one price row, by aggressor side: each value the correctly rounded double
/// of the row's exact sum, so equal rows read the same bits however they were built.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Level {
    pub buy: f64,
    pub sell: f64,
    pub unknown: f64,
    pub trades: i64,
    total: f64,
    delta: f64,
}

impl Level {
    /// All volume at the row, classified or not (the rounded exact total, not the sum of the
    /// three rounded parts).
    pub fn total(&self) -> f64 {
        self.total
    }

    /// Buy volume minus sell volume (the rounded exact difference).
    pub fn delta(&self) -> f64 {
        self.delta
    }
}

/// A row's exact sums. The total is kept rather than the unknown-side volume: it is what the
/// readings need, and bounding it bounds every part (see [`super::Profile::add`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct RowSums {
    pub(super) buy: ExactSum,
    pub(super) sell: ExactSum,
    pub(super) total: ExactSum,
    pub(super) trades: i64,
}

impl RowSums {
    /// Sums from parts read back from storage; `None` when a part is negative, the count is
    /// negative or the total leaves the exact range.
    pub(super) fn from_parts(
        buy: ExactSum,
        sell: ExactSum,
        unknown: ExactSum,
        trades: i64,
    ) -> Option<RowSums> {
        if buy.is_negative() || sell.is_negative() || unknown.is_negative() || trades < 0 {
            return None;
        }
        let total = buy.checked_add(sell).ok()?.checked_add(unknown).ok()?;
        Some(RowSums { buy, sell, total, trades })
    }

    /// Volume of unknown side.
    pub(super) fn unknown(&self) -> ExactSum {
        self.total.sub_in_range(self.buy).sub_in_range(self.sell)
    }

    /// Adds one trade of `size`; the caller has checked the profile's total, which bounds this.
    pub(super) fn add(&mut self, size: ExactSum, side: Side) {
        match side {
            Side::Buy => self.buy.add_in_range(size),
            Side::Sell => self.sell.add_in_range(size),
            Side::Unknown => {}
        }
        self.total.add_in_range(size);
        self.trades = self.trades.saturating_add(1);
    }

    /// Adds another row's sums; the caller has checked the profile's total.
    pub(super) fn merge(&mut self, o: &RowSums) {
        self.buy.add_in_range(o.buy);
        self.sell.add_in_range(o.sell);
        self.total.add_in_range(o.total);
        // Decoded counts can be anything up to i64::MAX: saturate, never overflow.
        self.trades = self.trades.saturating_add(o.trades);
    }

    /// The doubles readers see.
    pub(super) fn level(&self) -> Level {
        Level {
            buy: self.buy.to_f64(),
            sell: self.sell.to_f64(),
            unknown: self.unknown().to_f64(),
            trades: self.trades,
            total: self.total.to_f64(),
            delta: self.buy.sub_in_range(self.sell).to_f64(),
        }
    }
}

#[cfg(test)]
impl Level {
    /// A level from its parts, for tests that spell out expected rows.
    pub(super) fn of(buy: f64, sell: f64, unknown: f64, trades: i64) -> Level {
        let e = |x| ExactSum::from_f64(x).unwrap();
        RowSums::from_parts(e(buy), e(sell), e(unknown), trades).unwrap().level()
    }
}
