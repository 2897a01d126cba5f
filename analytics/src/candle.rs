//! OHLCV candle summaries: built trade by trade, merged in any order.
//!
//! A `Candle` is the state of `tapeflow.candle_agg` and the value stored in one-minute
//! summaries. `merge` is associative and commutative (up to ties on identical timestamps,
//! which are broken by price so that serial and parallel plans agree), which is what lets
//! `rollup()` turn minute candles into any larger timeframe.

use crate::side::Side;
use serde::{Deserialize, Serialize};

/// Timestamps are microseconds since the PostgreSQL epoch (2000-01-01 UTC), as stored by
/// `timestamptz`; the analytics never need calendar arithmetic on them.
pub type Micros = i64;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Candle {
    pub open: f64,
    pub open_time: Micros,
    pub high: f64,
    pub high_time: Micros,
    pub low: f64,
    pub low_time: Micros,
    pub close: f64,
    pub close_time: Micros,
    pub volume: f64,
    pub buy_volume: f64,
    pub sell_volume: f64,
    /// Trades merged in (≥ 0; the text and binary forms refuse a negative count).
    #[serde(deserialize_with = "trade_count")]
    pub trades: i64,
    /// Sum of price × size, for VWAP.
    pub notional: f64,
}

/// Why a trade was refused by `Candle::add`.
#[derive(Debug, Clone, PartialEq)]
pub enum TradeError {
    NonFinitePrice(f64),
    NonPositivePrice(f64),
    BadSize(f64),
}

impl std::fmt::Display for TradeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TradeError::NonFinitePrice(p) => write!(f, "price must be a finite number, got {p}"),
            TradeError::NonPositivePrice(p) => write!(f, "price must be positive, got {p}"),
            TradeError::BadSize(s) => write!(f, "size must be a finite number >= 0, got {s}"),
        }
    }
}

impl std::error::Error for TradeError {}

/// Checks one trade's price and size; every aggregate uses this so errors read the same.
pub fn validate_trade(price: f64, size: f64) -> Result<(), TradeError> {
    if !price.is_finite() {
        return Err(TradeError::NonFinitePrice(price));
    }
    if price <= 0.0 {
        return Err(TradeError::NonPositivePrice(price));
    }
    if !size.is_finite() || size < 0.0 {
        return Err(TradeError::BadSize(size));
    }
    Ok(())
}

impl Candle {
    /// A candle holding one trade.
    pub fn from_trade(time: Micros, price: f64, size: f64, side: Side) -> Result<Candle, TradeError> {
        validate_trade(price, size)?;
        Ok(Candle {
            open: price,
            open_time: time,
            high: price,
            high_time: time,
            low: price,
            low_time: time,
            close: price,
            close_time: time,
            volume: size,
            buy_volume: if side == Side::Buy { size } else { 0.0 },
            sell_volume: if side == Side::Sell { size } else { 0.0 },
            trades: 1,
            notional: price * size,
        })
    }

    /// A candle from a ready-made OHLCV bar: no trades are known, so the aggressor split is
    /// unknown (zero buy and sell volume), open and close share the bar's time, and the
    /// notional uses the typical price (H+L+C)/3 for VWAP. The caller checks the prices.
    pub fn from_ohlcv(time: Micros, open: f64, high: f64, low: f64, close: f64, volume: f64) -> Candle {
        Candle {
            open,
            open_time: time,
            high,
            high_time: time,
            low,
            low_time: time,
            close,
            close_time: time,
            volume,
            buy_volume: 0.0,
            sell_volume: 0.0,
            trades: 0,
            notional: (high + low + close) / 3.0 * volume,
        }
    }

    /// [`Candle::from_ohlcv`] after checking the bar: finite positive prices, a finite volume
    /// ≥ 0, open and close within low..high. The error names the problem.
    pub fn checked_ohlcv(
        time: Micros,
        open: f64,
        high: f64,
        low: f64,
        close: f64,
        volume: f64,
    ) -> Result<Candle, String> {
        for p in [open, high, low, close] {
            validate_trade(p, volume).map_err(|e| e.to_string())?;
        }
        if low > open.min(close) || high < open.max(close) {
            return Err(format!("open {open} and close {close} must lie within low {low} .. high {high}"));
        }
        Ok(Candle::from_ohlcv(time, open, high, low, close, volume))
    }

    /// Adds one trade.
    pub fn add(&mut self, time: Micros, price: f64, size: f64, side: Side) -> Result<(), TradeError> {
        let other = Candle::from_trade(time, price, size, side)?;
        self.merge(&other);
        Ok(())
    }

    /// Merges another candle covering any (possibly overlapping) span of time.
    ///
    /// Ties: at equal open times the lower price opens, at equal close times the higher price
    /// closes; the high keeps its earliest time and the low too. These rules make the result
    /// independent of the order in which trades arrive.
    pub fn merge(&mut self, o: &Candle) {
        if (o.open_time, o.open) < (self.open_time, self.open) {
            self.open = o.open;
            self.open_time = o.open_time;
        }
        if (o.close_time, o.close) > (self.close_time, self.close) {
            self.close = o.close;
            self.close_time = o.close_time;
        }
        if o.high > self.high || (o.high == self.high && o.high_time < self.high_time) {
            self.high = o.high;
            self.high_time = o.high_time;
        }
        if o.low < self.low || (o.low == self.low && o.low_time < self.low_time) {
            self.low = o.low;
            self.low_time = o.low_time;
        }
        self.volume += o.volume;
        self.buy_volume += o.buy_volume;
        self.sell_volume += o.sell_volume;
        // Counts from decoded values can be anything up to i64::MAX: saturate, never overflow.
        self.trades = self.trades.saturating_add(o.trades);
        self.notional += o.notional;
    }

    /// Merges an optional candle into an optional accumulator (the shape aggregates need).
    pub fn merge_opt(acc: Option<Candle>, o: Option<&Candle>) -> Option<Candle> {
        match (acc, o) {
            (None, None) => None,
            (Some(a), None) => Some(a),
            (None, Some(b)) => Some(*b),
            (Some(mut a), Some(b)) => {
                a.merge(b);
                Some(a)
            }
        }
    }

    /// Volume-weighted average price; `None` when the candle has no volume.
    pub fn vwap(&self) -> Option<f64> {
        (self.volume > 0.0).then(|| self.notional / self.volume)
    }

    /// Buy volume minus sell volume.
    pub fn delta(&self) -> f64 {
        self.buy_volume - self.sell_volume
    }

    /// Serialized size in bytes of `to_bytes` (version byte included).
    pub const ENCODED_LEN: usize = 1 + 13 * 8;
    /// Version of the binary form; bump when the layout changes.
    pub const VERSION: u8 = 1;

    /// Binary form: a version byte, then the fields little-endian in declaration order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::ENCODED_LEN);
        out.push(Self::VERSION);
        for v in [
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.buy_volume,
            self.sell_volume,
            self.notional,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for t in [self.open_time, self.high_time, self.low_time, self.close_time, self.trades] {
            out.extend_from_slice(&t.to_le_bytes());
        }
        out
    }

    /// Reads `to_bytes` output; errors name the problem (a wrong length or version, a negative
    /// trade count).
    pub fn from_bytes(b: &[u8]) -> Result<Candle, String> {
        if b.len() != Self::ENCODED_LEN {
            return Err(format!("candle: expected {} bytes, got {}", Self::ENCODED_LEN, b.len()));
        }
        if b[0] != Self::VERSION {
            return Err(format!("candle: unsupported version {} (this build reads {})", b[0], Self::VERSION));
        }
        let f = |i: usize| f64::from_le_bytes(b[1 + i * 8..9 + i * 8].try_into().unwrap());
        let n = |i: usize| i64::from_le_bytes(b[1 + i * 8..9 + i * 8].try_into().unwrap());
        if n(12) < 0 {
            return Err(format!("candle: trade count must be >= 0, got {}", n(12)));
        }
        Ok(Candle {
            open: f(0),
            high: f(1),
            low: f(2),
            close: f(3),
            volume: f(4),
            buy_volume: f(5),
            sell_volume: f(6),
            notional: f(7),
            open_time: n(8),
            high_time: n(9),
            low_time: n(10),
            close_time: n(11),
            trades: n(12),
        })
    }
}

/// A candle's trade count from JSON: an integer ≥ 0.
fn trade_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = i64::deserialize(d)?;
    if n < 0 {
        return Err(serde::de::Error::custom(format!("trades must be >= 0, got {n}")));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(trades: &[(i64, f64, f64, Side)]) -> Option<Candle> {
        trades.iter().fold(None, |acc, &(t, p, s, side)| {
            Candle::merge_opt(acc, Some(&Candle::from_trade(t, p, s, side).unwrap()))
        })
    }

    #[test]
    fn ohlc_follows_time_not_arrival_order() {
        let c = build(&[
            (3, 10.0, 1.0, Side::Buy),
            (1, 11.0, 2.0, Side::Sell),
            (2, 9.0, 3.0, Side::Buy),
            (4, 10.5, 4.0, Side::Unknown),
        ])
        .unwrap();
        assert_eq!((c.open, c.open_time), (11.0, 1));
        assert_eq!((c.high, c.high_time), (11.0, 1));
        assert_eq!((c.low, c.low_time), (9.0, 2));
        assert_eq!((c.close, c.close_time), (10.5, 4));
        assert_eq!(c.volume, 10.0);
        assert_eq!(c.buy_volume, 4.0);
        assert_eq!(c.sell_volume, 2.0);
        assert_eq!(c.trades, 4);
        assert_eq!(c.delta(), 2.0);
        let vwap = (10.0 + 22.0 + 27.0 + 42.0) / 10.0;
        assert!((c.vwap().unwrap() - vwap).abs() < 1e-12);
    }

    #[test]
    fn bad_trades_are_refused_with_the_value() {
        assert!(Candle::from_trade(0, f64::NAN, 1.0, Side::Buy).unwrap_err().to_string().contains("NaN"));
        assert!(matches!(Candle::from_trade(0, -1.0, 1.0, Side::Buy), Err(TradeError::NonPositivePrice(_))));
        assert!(matches!(Candle::from_trade(0, 1.0, -5.0, Side::Buy), Err(TradeError::BadSize(_))));
        assert!(matches!(Candle::from_trade(0, 1.0, f64::INFINITY, Side::Buy), Err(TradeError::BadSize(_))));
    }

    #[test]
    fn zero_volume_has_no_vwap() {
        let c = Candle::from_trade(0, 5.0, 0.0, Side::Buy).unwrap();
        assert_eq!(c.vwap(), None);
    }

    #[test]
    fn bytes_round_trip_and_version_is_checked() {
        let c = build(&[(1, 10.0, 1.0, Side::Buy), (2, 12.0, 2.0, Side::Sell)]).unwrap();
        let b = c.to_bytes();
        assert_eq!(b.len(), Candle::ENCODED_LEN);
        assert_eq!(Candle::from_bytes(&b).unwrap(), c);
        let mut bad = b.clone();
        bad[0] = 99;
        assert!(Candle::from_bytes(&bad).unwrap_err().contains("version 99"));
        assert!(Candle::from_bytes(&b[..10]).is_err());
    }

    /// Found by the `candle_binary` and `candle_text` fuzz targets: decoded trade counts near
    /// the limits overflowed when merged (a panic in debug builds, a wrapped count in release).
    #[test]
    fn decoded_trade_counts_are_checked_and_merges_saturate() {
        let c = build(&[(1, 10.0, 1.0, Side::Buy)]).unwrap();
        let mut b = c.to_bytes();
        b[97..105].copy_from_slice(&(-3_074_457_345_618_258_603i64).to_le_bytes());
        assert!(Candle::from_bytes(&b).unwrap_err().contains("trade count must be >= 0"), "{b:?}");
        let json =
            serde_json::to_string(&c).unwrap().replace("\"trades\":1", "\"trades\":-3074457345618258603");
        assert!(serde_json::from_str::<Candle>(&json)
            .unwrap_err()
            .to_string()
            .contains("trades must be >= 0"));

        b[97..105].copy_from_slice(&i64::MAX.to_le_bytes());
        let mut max = Candle::from_bytes(&b).unwrap();
        max.merge(&max.clone());
        assert_eq!(max.trades, i64::MAX);
        assert_eq!(Candle::merge_opt(Some(max), Some(&c)).unwrap().trades, i64::MAX);
    }

    fn trade() -> impl Strategy<Value = (i64, f64, f64, Side)> {
        (
            0i64..1000,
            1u32..5000,
            0u32..1000,
            prop_oneof![Just(Side::Buy), Just(Side::Sell), Just(Side::Unknown)],
        )
            .prop_map(|(t, p, s, side)| (t, p as f64 / 100.0, s as f64, side))
    }

    proptest! {
        #[test]
        fn merge_of_parts_equals_whole(trades in prop::collection::vec(trade(), 1..60), split in 0usize..60) {
            let split = split.min(trades.len());
            let whole = build(&trades);
            let merged = Candle::merge_opt(build(&trades[..split]), build(&trades[split..]).as_ref());
            let (w, m) = (whole.unwrap(), merged.unwrap());
            prop_assert_eq!((w.open, w.open_time, w.close, w.close_time), (m.open, m.open_time, m.close, m.close_time));
            prop_assert_eq!((w.high, w.high_time, w.low, w.low_time, w.trades), (m.high, m.high_time, m.low, m.low_time, m.trades));
            prop_assert!((w.volume - m.volume).abs() < 1e-6);
            prop_assert!((w.notional - m.notional).abs() < 1e-6 * w.notional.max(1.0));
        }

        #[test]
        fn merge_is_commutative(a in prop::collection::vec(trade(), 1..20), b in prop::collection::vec(trade(), 1..20)) {
            let (ca, cb) = (build(&a).unwrap(), build(&b).unwrap());
            let mut ab = ca; ab.merge(&cb);
            let mut ba = cb; ba.merge(&ca);
            prop_assert_eq!((ab.open, ab.open_time, ab.close, ab.close_time, ab.high, ab.low), (ba.open, ba.open_time, ba.close, ba.close_time, ba.high, ba.low));
            prop_assert_eq!(ab.trades, ba.trades);
        }

        #[test]
        fn volume_is_split_into_sides(trades in prop::collection::vec(trade(), 1..60)) {
            let c = build(&trades).unwrap();
            let unknown: f64 = trades.iter().filter(|t| t.3 == Side::Unknown).map(|t| t.2).sum();
            prop_assert!((c.buy_volume + c.sell_volume + unknown - c.volume).abs() < 1e-6);
            prop_assert!(c.low <= c.open && c.open <= c.high && c.low <= c.close && c.close <= c.high);
        }
    }
}
