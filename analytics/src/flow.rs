//! Order flow per bar: delta, buy/sell pressure, cumulative delta, and an estimate of the
//! buy/sell split for bars that come without classified trades.
//!
//! Formulas (volumes are aggressor volumes: buys lifted the offer, sells hit the bid):
//!
//! * delta = buy − sell
//! * buy pressure = 100 × buy / (buy + sell), sell pressure = 100 × sell / (buy + sell), in
//!   percent of the *classified* volume (unknown-side volume is left out); 50 / 50 when there is
//!   no classified volume
//! * cumulative delta (CVD) = running sum of deltas; the session variant restarts from the bar's
//!   own delta whenever the session key differs from the previous bar's
//! * close-location estimate for a bar without trades: buy = V × (C − L) / (H − L),
//!   sell = V − buy; a flat bar (H = L) splits in half.

use crate::candle::Candle;
use std::fmt;

/// Buy volume minus sell volume.
pub fn delta(buy: f64, sell: f64) -> f64 {
    buy - sell
}

/// `(buy %, sell %)` of the classified volume `buy + sell`; `(50, 50)` when it is not positive.
pub fn pressure(buy: f64, sell: f64) -> (f64, f64) {
    let total = buy + sell;
    if total > 0.0 {
        (100.0 * buy / total, 100.0 * sell / total)
    } else {
        (50.0, 50.0)
    }
}

/// Why a bar could not be split.
#[derive(Debug, Clone, PartialEq)]
pub enum FlowError {
    NonFinite { what: &'static str, value: f64 },
    BadVolume(f64),
    HighBelowLow { high: f64, low: f64 },
    CloseOutsideRange { close: f64, low: f64, high: f64 },
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowError::NonFinite { what, value } => write!(f, "{what} must be a finite number, got {value}"),
            FlowError::BadVolume(v) => write!(f, "volume must be a finite number >= 0, got {v}"),
            FlowError::HighBelowLow { high, low } => write!(f, "high {high} is below low {low}"),
            FlowError::CloseOutsideRange { close, low, high } => {
                write!(f, "close {close} is outside the bar's range {low}..{high}")
            }
        }
    }
}

impl std::error::Error for FlowError {}

/// Splits a bar's volume into `(buy, sell)` by where it closed in its range (close location
/// value): buy = V × (C − L) / (H − L), sell = V − buy; a flat bar gives V / 2 each. The parts
/// add up to exactly `volume`, in floating point too.
///
/// This is a crude proxy for bars from providers that give no trades; it ignores the open and
/// says nothing about the order of prints inside the bar.
pub fn clv_split(high: f64, low: f64, close: f64, volume: f64) -> Result<(f64, f64), FlowError> {
    for (what, value) in [("high", high), ("low", low), ("close", close)] {
        if !value.is_finite() {
            return Err(FlowError::NonFinite { what, value });
        }
    }
    if !(volume.is_finite() && volume >= 0.0) {
        return Err(FlowError::BadVolume(volume));
    }
    if high < low {
        return Err(FlowError::HighBelowLow { high, low });
    }
    if close < low || close > high {
        return Err(FlowError::CloseOutsideRange { close, low, high });
    }
    let raw_buy = if high > low { volume * ((close - low) / (high - low)) } else { volume / 2.0 };
    // `volume - raw_buy` alone can round so that buy + sell misses the volume by an ulp. Taking
    // the difference twice cannot: whichever of the two parts is at least half the volume makes
    // the other subtraction exact (Sterbenz), so buy + sell == volume holds exactly.
    let sell = volume - raw_buy;
    Ok((volume - sell, sell))
}

/// The order flow of one bar.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BarFlow {
    pub buy: f64,
    pub sell: f64,
    /// True when the split was estimated from the bar's shape rather than counted from trades.
    pub estimated: bool,
}

impl BarFlow {
    /// Counted volumes.
    pub fn new(buy: f64, sell: f64) -> BarFlow {
        BarFlow { buy, sell, estimated: false }
    }

    /// The classified volumes the candle recorded (unknown-side volume is left out).
    pub fn from_candle(c: &Candle) -> BarFlow {
        BarFlow::new(c.buy_volume, c.sell_volume)
    }

    /// The close-location estimate of the candle's whole volume; see [`clv_split`].
    pub fn estimate(c: &Candle) -> Result<BarFlow, FlowError> {
        let (buy, sell) = clv_split(c.high, c.low, c.close, c.volume)?;
        Ok(BarFlow { buy, sell, estimated: true })
    }

    /// The recorded split when the candle has any classified volume, else the estimate.
    pub fn from_candle_or_estimate(c: &Candle) -> Result<BarFlow, FlowError> {
        if c.buy_volume + c.sell_volume > 0.0 {
            Ok(BarFlow::from_candle(c))
        } else {
            BarFlow::estimate(c)
        }
    }

    pub fn delta(&self) -> f64 {
        delta(self.buy, self.sell)
    }

    /// buy + sell.
    pub fn classified(&self) -> f64 {
        self.buy + self.sell
    }

    /// Buy pressure in percent; see [`pressure`].
    pub fn buy_pct(&self) -> f64 {
        pressure(self.buy, self.sell).0
    }

    /// Sell pressure in percent; see [`pressure`].
    pub fn sell_pct(&self) -> f64 {
        pressure(self.buy, self.sell).1
    }

    /// Adds another bar (for rolling bars up); the result is estimated if either part was.
    pub fn merge(&mut self, o: &BarFlow) {
        self.buy += o.buy;
        self.sell += o.sell;
        self.estimated |= o.estimated;
    }
}

/// Running cumulative delta over a whole series, never reset.
pub fn cumulative_delta(deltas: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut cvd = 0.0;
    deltas
        .into_iter()
        .map(|d| {
            cvd += d;
            cvd
        })
        .collect()
}

/// Running cumulative delta of `(session, delta)` bars in time order, restarting whenever the
/// session key differs from the previous bar's (so sessions A, B, A restart twice).
pub fn session_cumulative_delta<K: PartialEq>(bars: impl IntoIterator<Item = (K, f64)>) -> Vec<f64> {
    let mut cvd = SessionCvd::new();
    bars.into_iter().map(|(k, d)| cvd.push(k, d)).collect()
}

/// Streaming form of [`session_cumulative_delta`], for callers that see one bar at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionCvd<K> {
    session: Option<K>,
    cvd: f64,
}

impl<K: PartialEq> Default for SessionCvd<K> {
    fn default() -> Self {
        SessionCvd { session: None, cvd: 0.0 }
    }
}

impl<K: PartialEq> SessionCvd<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next bar and returns the CVD including it.
    pub fn push(&mut self, session: K, delta: f64) -> f64 {
        if self.session.as_ref() != Some(&session) {
            self.session = Some(session);
            self.cvd = 0.0;
        }
        self.cvd += delta;
        self.cvd
    }

    /// The CVD after the last bar (0 before any).
    pub fn value(&self) -> f64 {
        self.cvd
    }

    pub fn session(&self) -> Option<&K> {
        self.session.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::side::Side;
    use proptest::prelude::*;

    #[test]
    fn delta_and_pressure() {
        assert_eq!(delta(70.0, 30.0), 40.0);
        assert_eq!(pressure(70.0, 30.0), (70.0, 30.0));
        assert_eq!(pressure(0.0, 5.0), (0.0, 100.0));
        assert_eq!(pressure(0.0, 0.0), (50.0, 50.0));
        let f = BarFlow::new(122.0, 86.0);
        assert_eq!(f.delta(), 36.0);
        assert!((f.buy_pct() - 58.653_846_153_846_15).abs() < 1e-12);
        assert!((f.buy_pct() + f.sell_pct() - 100.0).abs() < 1e-12);
    }

    #[test]
    fn close_location_split() {
        assert_eq!(clv_split(11.0, 9.0, 10.5, 1000.0), Ok((750.0, 250.0)));
        assert_eq!(clv_split(11.0, 9.0, 9.5, 1000.0), Ok((250.0, 750.0)));
        assert_eq!(clv_split(11.0, 9.0, 10.0, 1000.0), Ok((500.0, 500.0)));
        assert_eq!(clv_split(11.0, 9.0, 11.0, 1000.0), Ok((1000.0, 0.0)));
        assert_eq!(clv_split(11.0, 9.0, 9.0, 1000.0), Ok((0.0, 1000.0)));
        // A flat bar splits in half, odd volumes included.
        assert_eq!(clv_split(10.0, 10.0, 10.0, 1001.0), Ok((500.5, 500.5)));
        assert_eq!(clv_split(10.0, 10.0, 10.0, 0.0), Ok((0.0, 0.0)));
    }

    #[test]
    fn bad_bars_are_refused_naming_the_value() {
        assert_eq!(clv_split(9.0, 11.0, 10.0, 1.0).unwrap_err().to_string(), "high 9 is below low 11");
        assert!(clv_split(11.0, 9.0, 12.0, 1.0).unwrap_err().to_string().contains("close 12 is outside"));
        assert!(clv_split(f64::NAN, 9.0, 10.0, 1.0).unwrap_err().to_string().contains("high must be"));
        assert_eq!(clv_split(11.0, 9.0, 10.0, -1.0), Err(FlowError::BadVolume(-1.0)));
    }

    #[test]
    fn candles_use_counted_volume_when_they_have_it() {
        let mut c = Candle::from_trade(0, 10.0, 100.0, Side::Buy).unwrap();
        c.add(1, 11.0, 60.0, Side::Sell).unwrap();
        c.add(2, 10.5, 40.0, Side::Unknown).unwrap();
        assert_eq!(BarFlow::from_candle_or_estimate(&c), Ok(BarFlow::new(100.0, 60.0)));
        // No classified trades: the close-location estimate of all 200 (close 10.5 in 10..11).
        let c = Candle::from_trade(0, 10.0, 100.0, Side::Unknown).unwrap();
        let mut c2 = c;
        c2.merge(&Candle::from_trade(1, 11.0, 50.0, Side::Unknown).unwrap()).unwrap();
        c2.merge(&Candle::from_trade(2, 10.5, 50.0, Side::Unknown).unwrap()).unwrap();
        let f = BarFlow::from_candle_or_estimate(&c2).unwrap();
        assert_eq!(f, BarFlow { buy: 100.0, sell: 100.0, estimated: true });
        let mut total = BarFlow::new(1.0, 2.0);
        total.merge(&f);
        assert_eq!(total, BarFlow { buy: 101.0, sell: 102.0, estimated: true });
    }

    #[test]
    fn cvd_resets_when_the_session_changes() {
        let bars = [("mon", 10.0), ("mon", -4.0), ("mon", 5.0), ("tue", 3.0), ("tue", -1.0), ("mon", 2.0)];
        assert_eq!(session_cumulative_delta(bars), vec![10.0, 6.0, 11.0, 3.0, 2.0, 2.0]);
        assert_eq!(cumulative_delta(bars.map(|b| b.1)), vec![10.0, 6.0, 11.0, 14.0, 13.0, 15.0]);
        let mut s = SessionCvd::new();
        assert_eq!(s.value(), 0.0);
        assert_eq!(s.push(1, 5.0), 5.0);
        assert_eq!(s.push(1, 5.0), 10.0);
        assert_eq!(s.push(2, -1.0), -1.0);
        assert_eq!((s.value(), s.session()), (-1.0, Some(&2)));
    }

    proptest! {
        #[test]
        fn split_conserves_volume(
            (low, range, at) in (1u32..100_000, 0u32..10_000, 0u32..=1000),
            volume in 0u64..1_000_000_000_000,
            frac in 0.0f64..1.0,
        ) {
            let (low, high) = (low as f64 / 100.0, (low + range) as f64 / 100.0);
            let close = (low + (high - low) * at as f64 / 1000.0).clamp(low, high);
            let v = volume as f64;
            let (b, s) = clv_split(high, low, close, v).unwrap();
            prop_assert_eq!(b + s, v);
            prop_assert!(b >= 0.0 && s >= 0.0);
            // Fractional volumes (crypto sizes) too.
            let v = volume as f64 * frac / 1e4;
            let (b, s) = clv_split(high, low, close, v).unwrap();
            prop_assert_eq!(b + s, v);
        }

        #[test]
        fn session_cvd_sums_each_session_run(bars in prop::collection::vec((0u8..3, -100i32..100), 0..50)) {
            let cvd = session_cumulative_delta(bars.iter().map(|&(k, d)| (k, d as f64)));
            let mut run = 0.0;
            for (i, &(k, d)) in bars.iter().enumerate() {
                run = if i > 0 && bars[i - 1].0 == k { run + d as f64 } else { d as f64 };
                prop_assert_eq!(cvd[i], run);
            }
        }
    }
}
