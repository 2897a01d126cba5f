//! One price row's volume by aggressor side.

use crate::side::Side;
use serde::{Deserialize, Serialize};

/// Volume traded at one price row, by aggressor side.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Level {
    pub buy: f64,
    pub sell: f64,
    pub unknown: f64,
    pub trades: i64,
}

impl Level {
    /// All volume at the row, classified or not.
    pub fn total(&self) -> f64 {
        self.buy + self.sell + self.unknown
    }

    /// Buy volume minus sell volume.
    pub fn delta(&self) -> f64 {
        self.buy - self.sell
    }

    /// Adds one trade (already validated).
    pub fn add(&mut self, size: f64, side: Side) {
        match side {
            Side::Buy => self.buy += size,
            Side::Sell => self.sell += size,
            Side::Unknown => self.unknown += size,
        }
        self.trades = self.trades.saturating_add(1);
    }

    pub fn merge(&mut self, o: &Level) {
        self.buy += o.buy;
        self.sell += o.sell;
        self.unknown += o.unknown;
        // Decoded counts can be anything up to i64::MAX: saturate, never overflow.
        self.trades = self.trades.saturating_add(o.trades);
    }

    pub(super) fn is_valid(&self) -> bool {
        [self.buy, self.sell, self.unknown].iter().all(|v| v.is_finite() && *v >= 0.0) && self.trades >= 0
    }
}
