//! Average True Range with Wilder's smoothing.
//!
//! The true range of a bar is the largest of its high − low, |high − previous close| and
//! |low − previous close|; a bar without a previous close (the first one, or the first after
//! [`Atr::forget_previous_close`]) uses high − low. The ATR is `None` until `period` true
//! ranges have been seen; it is then seeded with their simple mean and smoothed afterwards as
//! `atr = (atr × (period − 1) + tr) / period` (Wilder, 1978). The predecessor averaged 13
//! ranges of the last 14 bars with no smoothing; this is the textbook definition instead.

use crate::candle::Candle;
use serde::{Deserialize, Serialize};

/// The conventional ATR period.
pub const DEFAULT_ATR_PERIOD: usize = 14;

/// True range of `c` given the previous bar's close, if any.
pub fn true_range(c: &Candle, prev_close: Option<f64>) -> f64 {
    let range = c.high - c.low;
    match prev_close {
        Some(p) => range.max((c.high - p).abs()).max((c.low - p).abs()),
        None => range,
    }
}

/// Streaming Wilder ATR: feed closed bars in time order with [`Atr::update`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Atr {
    period: usize,
    prev_close: Option<f64>,
    /// True ranges seen so far, saturating at `period` (only the seed needs the count).
    seen: usize,
    /// Sum of the first `period` true ranges, used for the seed.
    seed_sum: f64,
    value: Option<f64>,
}

impl Atr {
    /// A new ATR over `period` bars.
    ///
    /// # Panics
    /// When `period` is 0; callers taking the period from user input validate it first
    /// (see `EngineParams::validate`).
    pub fn new(period: usize) -> Atr {
        assert!(period > 0, "ATR period must be at least 1");
        Atr { period, prev_close: None, seen: 0, seed_sum: 0.0, value: None }
    }

    /// The smoothing period.
    pub fn period(&self) -> usize {
        self.period
    }

    /// The current ATR, `None` during the first `period − 1` bars.
    pub fn value(&self) -> Option<f64> {
        self.value
    }

    /// Adds one closed bar and returns the ATR after it.
    pub fn update(&mut self, c: &Candle) -> Option<f64> {
        let tr = true_range(c, self.prev_close);
        self.prev_close = Some(c.close);
        match self.value {
            Some(prev) => {
                let n = self.period as f64;
                self.value = Some((prev * (n - 1.0) + tr) / n);
            }
            None => {
                self.seed_sum += tr;
                self.seen += 1;
                if self.seen == self.period {
                    self.value = Some(self.seed_sum / self.period as f64);
                }
            }
        }
        self.value
    }

    /// Makes the next bar's true range ignore the last close, so that a gap between sessions
    /// does not inflate an intraday ATR. The smoothed value itself is kept.
    pub fn forget_previous_close(&mut self) {
        self.prev_close = None;
    }
}

/// ATR after each candle of `candles` (in time order): `None` for the first `period − 1`.
///
/// # Panics
/// When `period` is 0.
pub fn atr_series(candles: &[Candle], period: usize) -> Vec<Option<f64>> {
    let mut atr = Atr::new(period);
    candles.iter().map(|c| atr.update(c)).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A candle with only the fields the ATR reads set.
    pub(crate) fn hlc(high: f64, low: f64, close: f64) -> Candle {
        Candle::from_ohlcv(0, close, high, low, close, 0.0)
    }

    #[test]
    fn true_range_uses_the_previous_close() {
        let c = hlc(11.0, 10.0, 10.5);
        assert_eq!(true_range(&c, None), 1.0);
        assert_eq!(true_range(&c, Some(10.5)), 1.0);
        assert_eq!(true_range(&c, Some(8.0)), 3.0); // gap up: high − previous close
        assert_eq!(true_range(&c, Some(13.0)), 3.0); // gap down: previous close − low
    }

    #[test]
    fn wilder_matches_a_hand_computed_series() {
        // Period 3. True ranges: 2 (H−L, no previous close), 2, 4 (|14 − 10|), 1, 3 (|9 − 12|).
        let bars = [
            hlc(11.0, 9.0, 10.0),
            hlc(11.0, 9.0, 10.0),
            hlc(14.0, 12.0, 13.0),
            hlc(13.0, 12.0, 12.0),
            hlc(11.0, 9.0, 10.0),
        ];
        let got = atr_series(&bars, 3);
        // Seed = (2 + 2 + 4) / 3 = 8/3; then (8/3 × 2 + 1) / 3 = 19/9; then (19/9 × 2 + 3) / 3 = 65/27.
        let want = [None, None, Some(8.0 / 3.0), Some(19.0 / 9.0), Some(65.0 / 27.0)];
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            match (g, w) {
                (None, None) => {}
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-12, "{g} vs {w}"),
                _ => panic!("{got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn period_one_is_the_true_range() {
        let mut atr = Atr::new(1);
        assert_eq!(atr.update(&hlc(11.0, 9.0, 10.0)), Some(2.0));
        assert_eq!(atr.update(&hlc(10.5, 10.0, 10.2)), Some(0.5));
    }

    #[test]
    fn forgetting_the_close_drops_the_gap() {
        let mut a = Atr::new(1);
        a.update(&hlc(11.0, 9.0, 10.0));
        a.forget_previous_close();
        assert_eq!(a.update(&hlc(21.0, 20.0, 20.5)), Some(1.0));
    }

    proptest! {
        #[test]
        fn streaming_equals_slice_and_stays_within_tr_bounds(
            raw in prop::collection::vec((1u32..10_000, 0u32..500, 0u32..=100), 1..80),
            period in 1usize..20,
        ) {
            let bars: Vec<Candle> = raw.iter().map(|&(lo, span, at)| {
                let low = lo as f64 / 100.0;
                let high = low + span as f64 / 100.0;
                hlc(high, low, low + (high - low) * at as f64 / 100.0)
            }).collect();
            let series = atr_series(&bars, period);
            let mut atr = Atr::new(period);
            let mut prev = None;
            let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
            for (i, b) in bars.iter().enumerate() {
                let tr = true_range(b, prev);
                prev = Some(b.close);
                lo = lo.min(tr);
                hi = hi.max(tr);
                let v = atr.update(b);
                prop_assert_eq!(v, series[i]);
                prop_assert_eq!(v.is_some(), i + 1 >= period);
                if let Some(v) = v {
                    // A weighted mean of true ranges lies between the smallest and the largest.
                    prop_assert!(v >= lo - 1e-9 && v <= hi + 1e-9);
                }
            }
        }
    }
}
