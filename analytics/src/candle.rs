//! OHLCV candle summaries: built trade by trade, merged in any order.
//!
//! A `Candle` is the state of `tapeflow.candle_agg` and the value stored in one-minute
//! summaries. `merge` is associative and commutative (ties on identical timestamps are broken
//! by price), which is what lets `rollup()` turn minute candles into any larger timeframe.
//!
//! Volumes and the notional are exact sums ([`ExactSum`]): the fields a reader sees are their
//! correctly rounded doubles, so a candle's numbers are the same bits however its trades were
//! grouped and merged (serial or parallel plans, rollups, either storage path).

use crate::exact::{ExactSum, SumOverflow};
use crate::side::Side;
use serde::{Deserialize, Serialize};

/// Timestamps are microseconds since the PostgreSQL epoch (2000-01-01 UTC), as stored by
/// `timestamptz`; the analytics never need calendar arithmetic on them.
pub type Micros = i64;

/// One minute in [`Micros`].
pub const MINUTE: Micros = 60_000_000;

/// The start of the minute holding `t`, as `tapeflow.minute` (`date_bin('1 minute', t,
/// '2000-01-01 00:00+00')`; that origin is the epoch of [`Micros`]).
pub fn minute_of(t: Micros) -> Micros {
    t - t.rem_euclid(MINUTE)
}

/// One bar's OHLC with times, volume by aggressor side, trade count and notional.
///
/// `volume`, `buy_volume`, `sell_volume` and `notional` are the correctly rounded values of
/// exact sums kept beside them ([`Candle::sums`]); every constructor and `merge` keeps the two
/// in step, and merging reads the exact sums only. Writing those fields directly changes what
/// readers of this value see, not what it contributes to a merge.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CandleRepr", into = "CandleRepr")]
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
    pub trades: i64,
    /// Sum of price × size, for VWAP.
    pub notional: f64,
    sums: CandleSums,
}

/// The exact sums behind a candle's volume and notional fields. Each trade adds its size and
/// the double `price × size`; the sums of those are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CandleSums {
    pub volume: ExactSum,
    pub buy: ExactSum,
    pub sell: ExactSum,
    pub notional: ExactSum,
}

impl CandleSums {
    /// Adds `o`; `Err` (and nothing changed) when a sum would leave the exact range. Volume
    /// bounds buy and sell, so checking volume and notional checks all four.
    fn merge(&mut self, o: &CandleSums) -> Result<(), SumOverflow> {
        let volume = self.volume.checked_add(o.volume)?;
        let notional = self.notional.checked_add(o.notional)?;
        let buy = self.buy.checked_add(o.buy)?;
        let sell = self.sell.checked_add(o.sell)?;
        *self = CandleSums { volume, buy, sell, notional };
        Ok(())
    }
}

/// Why a trade was refused by `Candle::add`.
#[derive(Debug, Clone, PartialEq)]
pub enum TradeError {
    NonFinitePrice(f64),
    NonPositivePrice(f64),
    BadSize(f64),
    /// A size, notional or their sum beyond the exact-sum range (see [`crate::exact`]).
    OutOfRange {
        what: &'static str,
        value: f64,
    },
}

impl std::fmt::Display for TradeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TradeError::NonFinitePrice(p) => write!(f, "price must be a finite number, got {p}"),
            TradeError::NonPositivePrice(p) => write!(f, "price must be positive, got {p}"),
            TradeError::BadSize(s) => write!(f, "size must be a finite number >= 0, got {s}"),
            TradeError::OutOfRange { what, value } => {
                write!(f, "{what} {value} is out of range: {SumOverflow}")
            }
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
        let exact =
            |what, value| ExactSum::from_f64(value).map_err(|_| TradeError::OutOfRange { what, value });
        let volume = exact("size", size)?;
        let notional = exact("notional (price × size)", price * size)?;
        let sums = CandleSums {
            volume,
            buy: if side == Side::Buy { volume } else { ExactSum::ZERO },
            sell: if side == Side::Sell { volume } else { ExactSum::ZERO },
            notional,
        };
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
            sums,
        })
    }

    /// A candle from a ready-made OHLCV bar: no trades are known, so the aggressor split is
    /// unknown (zero buy and sell volume), open and close share the bar's time, and the
    /// notional uses the typical price (H+L+C)/3 for VWAP. The caller checks the prices; a
    /// volume or notional the exact sums cannot hold (not finite, or beyond 2^79) is kept in the
    /// field but adds nothing when merged ([`Candle::checked_ohlcv`] refuses such bars).
    pub fn from_ohlcv(time: Micros, open: f64, high: f64, low: f64, close: f64, volume: f64) -> Candle {
        let notional = (high + low + close) / 3.0 * volume;
        let exact = |x: f64| ExactSum::from_f64(x).unwrap_or_default();
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
            notional,
            sums: CandleSums {
                volume: exact(volume),
                buy: ExactSum::ZERO,
                sell: ExactSum::ZERO,
                notional: exact(notional),
            },
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
        let c = Candle::from_ohlcv(time, open, high, low, close, volume);
        for (what, value) in [("volume", c.volume), ("notional", c.notional)] {
            ExactSum::from_f64(value).map_err(|_| TradeError::OutOfRange { what, value }.to_string())?;
        }
        Ok(c)
    }

    /// Adds one trade.
    /// Adds one trade: the same as merging [`Candle::from_trade`], in place (the aggregates
    /// call this once per row). `Err` (and the candle unchanged) for a refused trade or a sum
    /// that would leave the exact range.
    pub fn add(&mut self, time: Micros, price: f64, size: f64, side: Side) -> Result<(), TradeError> {
        validate_trade(price, size)?;
        let out_of_range = |what, value| move |_| TradeError::OutOfRange { what, value };
        let exact_size = ExactSum::from_f64(size).map_err(out_of_range("size", size))?;
        let exact_notional = ExactSum::from_f64(price * size)
            .map_err(out_of_range("notional (price × size)", price * size))?;
        let volume = self
            .sums
            .volume
            .checked_add(exact_size)
            .map_err(out_of_range("candle volume with size", size))?;
        let notional = self
            .sums
            .notional
            .checked_add(exact_notional)
            .map_err(out_of_range("candle notional with size", size))?;
        self.sums.volume = volume;
        self.sums.notional = notional;
        self.volume = volume.to_f64();
        self.notional = notional.to_f64();
        match side {
            Side::Buy => {
                self.sums.buy.add_in_range(exact_size);
                self.buy_volume = self.sums.buy.to_f64();
            }
            Side::Sell => {
                self.sums.sell.add_in_range(exact_size);
                self.sell_volume = self.sums.sell.to_f64();
            }
            Side::Unknown => {}
        }
        // As `merge` with a one-trade candle whose open, high, low and close are `price`.
        if (time, price) < (self.open_time, self.open) {
            (self.open, self.open_time) = (price, time);
        }
        if (time, price) > (self.close_time, self.close) {
            (self.close, self.close_time) = (price, time);
        }
        if price > self.high || (price == self.high && time < self.high_time) {
            (self.high, self.high_time) = (price, time);
        }
        if price < self.low || (price == self.low && time < self.low_time) {
            (self.low, self.low_time) = (price, time);
        }
        self.trades = self.trades.saturating_add(1);
        Ok(())
    }

    /// Merges another candle covering any (possibly overlapping) span of time.
    ///
    /// Ties: at equal open times the lower price opens, at equal close times the higher price
    /// closes; the high keeps its earliest time and the low too. These rules make the result
    /// independent of the order in which trades arrive. Volumes and notional add exactly; `Err`
    /// (and the candle unchanged) when a sum would leave the exact range.
    pub fn merge(&mut self, o: &Candle) -> Result<(), SumOverflow> {
        self.sums.merge(&o.sums)?;
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
        // Counts from decoded values can be anything up to i64::MAX: saturate, never overflow.
        self.trades = self.trades.saturating_add(o.trades);
        // Only the sums that changed need rounding again (a one-sided candle leaves the other side).
        let changed = |s: ExactSum| !s.is_zero();
        if changed(o.sums.volume) {
            self.volume = self.sums.volume.to_f64();
        }
        if changed(o.sums.buy) {
            self.buy_volume = self.sums.buy.to_f64();
        }
        if changed(o.sums.sell) {
            self.sell_volume = self.sums.sell.to_f64();
        }
        if changed(o.sums.notional) {
            self.notional = self.sums.notional.to_f64();
        }
        Ok(())
    }

    /// Sets the volume and notional fields to the correctly rounded sums.
    fn round_sums(&mut self) {
        self.volume = self.sums.volume.to_f64();
        self.buy_volume = self.sums.buy.to_f64();
        self.sell_volume = self.sums.sell.to_f64();
        self.notional = self.sums.notional.to_f64();
    }

    /// The exact sums behind `volume`, `buy_volume`, `sell_volume` and `notional`.
    pub fn sums(&self) -> &CandleSums {
        &self.sums
    }

    /// Merges an optional candle into an optional accumulator (the shape aggregates need).
    pub fn merge_opt(acc: Option<Candle>, o: Option<&Candle>) -> Result<Option<Candle>, SumOverflow> {
        Ok(match (acc, o) {
            (None, None) => None,
            (Some(a), None) => Some(a),
            (None, Some(b)) => Some(*b),
            (Some(mut a), Some(b)) => {
                a.merge(b)?;
                Some(a)
            }
        })
    }

    /// Volume-weighted average price; `None` when the candle has no volume.
    pub fn vwap(&self) -> Option<f64> {
        (self.volume > 0.0).then(|| self.notional / self.volume)
    }

    /// Buy volume minus sell volume: the correctly rounded difference of the exact sums.
    pub fn delta(&self) -> f64 {
        self.sums.buy.sub_in_range(self.sums.sell).to_f64()
    }

    /// Version of the binary form; bump when the layout changes. [`Candle::from_bytes`] also
    /// reads every earlier version.
    pub const VERSION: u8 = 2;
    /// Length of the fixed part of version 2: the version byte, four prices, four times and
    /// the trade count.
    const FIXED_LEN: usize = 1 + 9 * 8;
    /// Length of version 1, whose sums were doubles.
    const V1_LEN: usize = 1 + 13 * 8;

    /// Binary form (version 2): the version byte; open, high, low, close (f64); open, high,
    /// low and close times and the trade count (i64), little-endian; then the exact sums of
    /// volume, buy volume, sell volume and notional in [`ExactSum::write`]'s compact form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::FIXED_LEN + 4 * 12);
        out.push(Self::VERSION);
        for v in [self.open, self.high, self.low, self.close] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for t in [self.open_time, self.high_time, self.low_time, self.close_time, self.trades] {
            out.extend_from_slice(&t.to_le_bytes());
        }
        for s in [self.sums.volume, self.sums.buy, self.sums.sell, self.sums.notional] {
            s.write(&mut out);
        }
        out
    }

    /// Reads `to_bytes` output of this version or an earlier one (version 1 stored the sums as
    /// doubles; they are read as the exact values of those doubles, so every field reads back
    /// as it was stored). Errors name the problem: a wrong length or version, a negative trade
    /// count, a sum that is malformed or out of range.
    pub fn from_bytes(b: &[u8]) -> Result<Candle, String> {
        let version = *b.first().ok_or("candle: empty input")?;
        let word = |i: usize| -> Result<[u8; 8], String> {
            b.get(1 + i * 8..9 + i * 8)
                .and_then(|w| w.try_into().ok())
                .ok_or_else(|| format!("candle: {} bytes end before field {i}", b.len()))
        };
        let f = |i: usize| word(i).map(f64::from_le_bytes);
        let n = |i: usize| word(i).map(i64::from_le_bytes);
        let (sums, times_at) = match version {
            1 => {
                if b.len() != Self::V1_LEN {
                    return Err(format!("candle: expected {} bytes, got {}", Self::V1_LEN, b.len()));
                }
                let exact = |i: usize, what: &str| {
                    let x = f(i)?;
                    ExactSum::from_f64(x).map_err(|e| format!("candle: {what} {x}: {e}"))
                };
                let sums = CandleSums {
                    volume: exact(4, "volume")?,
                    buy: exact(5, "buy volume")?,
                    sell: exact(6, "sell volume")?,
                    notional: exact(7, "notional")?,
                };
                (sums, 8)
            }
            Self::VERSION => {
                if b.len() < Self::FIXED_LEN {
                    return Err(format!(
                        "candle: expected at least {} bytes, got {}",
                        Self::FIXED_LEN,
                        b.len()
                    ));
                }
                let mut at = Self::FIXED_LEN;
                let mut next = || ExactSum::read(b, &mut at).map_err(|e| format!("candle: {e}"));
                let sums = CandleSums { volume: next()?, buy: next()?, sell: next()?, notional: next()? };
                if at != b.len() {
                    return Err(format!("candle: {} bytes after the sums", b.len() - at));
                }
                (sums, 4)
            }
            v => {
                return Err(format!(
                    "candle: unsupported version {v} (this build reads 1 to {})",
                    Self::VERSION
                ))
            }
        };
        let trades = n(times_at + 4)?;
        if trades < 0 {
            return Err(format!("candle: trade count must be >= 0, got {trades}"));
        }
        let mut c = Candle {
            open: f(0)?,
            high: f(1)?,
            low: f(2)?,
            close: f(3)?,
            open_time: n(times_at)?,
            high_time: n(times_at + 1)?,
            low_time: n(times_at + 2)?,
            close_time: n(times_at + 3)?,
            trades,
            volume: 0.0,
            buy_volume: 0.0,
            sell_volume: 0.0,
            notional: 0.0,
            sums,
        };
        c.round_sums();
        Ok(c)
    }
}

/// The JSON form: every field as a number, plus `exact` holding, in hexadecimal fixed point
/// ([`ExactSum`]'s text form), each sum whose number is not its exact value. Output lists
/// only those, so one candle has one spelling; input without `exact` takes the numbers as
/// exact (what people type, and what older versions wrote).
#[derive(Serialize, Deserialize)]
struct CandleRepr {
    open: f64,
    open_time: Micros,
    high: f64,
    high_time: Micros,
    low: f64,
    low_time: Micros,
    close: f64,
    close_time: Micros,
    volume: f64,
    buy_volume: f64,
    sell_volume: f64,
    trades: i64,
    notional: f64,
    #[serde(default, skip_serializing_if = "ExactText::is_empty")]
    exact: ExactText,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExactText {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    volume: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    buy_volume: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sell_volume: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notional: Option<String>,
}

impl ExactText {
    fn is_empty(&self) -> bool {
        [&self.volume, &self.buy_volume, &self.sell_volume, &self.notional].iter().all(|s| s.is_none())
    }
}

/// `Some(text)` when the double does not show the sum exactly.
pub(crate) fn exact_text(s: ExactSum) -> Option<String> {
    (!s.is_exact_f64()).then(|| s.to_string())
}

/// The exact sum named `what`: `text` when given (which must round to `shown`), else `shown`.
pub(crate) fn exact_from_text(what: &str, shown: f64, text: Option<&str>) -> Result<ExactSum, String> {
    match text {
        None => ExactSum::from_f64(shown).map_err(|e| format!("{what} {shown}: {e}")),
        Some(t) => {
            let s: ExactSum = t.parse().map_err(|e| format!("{what}: {e}"))?;
            if s.to_f64() != shown {
                return Err(format!("{what} {shown} is not its exact value {t} rounded ({})", s.to_f64()));
            }
            Ok(s)
        }
    }
}

impl From<Candle> for CandleRepr {
    fn from(c: Candle) -> CandleRepr {
        let s = c.sums;
        CandleRepr {
            open: c.open,
            open_time: c.open_time,
            high: c.high,
            high_time: c.high_time,
            low: c.low,
            low_time: c.low_time,
            close: c.close,
            close_time: c.close_time,
            volume: c.volume,
            buy_volume: c.buy_volume,
            sell_volume: c.sell_volume,
            trades: c.trades,
            notional: c.notional,
            exact: ExactText {
                volume: exact_text(s.volume),
                buy_volume: exact_text(s.buy),
                sell_volume: exact_text(s.sell),
                notional: exact_text(s.notional),
            },
        }
    }
}

impl TryFrom<CandleRepr> for Candle {
    type Error = String;

    fn try_from(r: CandleRepr) -> Result<Candle, String> {
        if r.trades < 0 {
            return Err(format!("trades must be >= 0, got {}", r.trades));
        }
        let e = &r.exact;
        let sums = CandleSums {
            volume: exact_from_text("volume", r.volume, e.volume.as_deref())?,
            buy: exact_from_text("buy_volume", r.buy_volume, e.buy_volume.as_deref())?,
            sell: exact_from_text("sell_volume", r.sell_volume, e.sell_volume.as_deref())?,
            notional: exact_from_text("notional", r.notional, e.notional.as_deref())?,
        };
        let mut c = Candle {
            open: r.open,
            open_time: r.open_time,
            high: r.high,
            high_time: r.high_time,
            low: r.low,
            low_time: r.low_time,
            close: r.close,
            close_time: r.close_time,
            volume: 0.0,
            buy_volume: 0.0,
            sell_volume: 0.0,
            trades: r.trades,
            notional: 0.0,
            sums,
        };
        c.round_sums();
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(trades: &[(i64, f64, f64, Side)]) -> Option<Candle> {
        trades.iter().fold(None, |acc, &(t, p, s, side)| {
            Candle::merge_opt(acc, Some(&Candle::from_trade(t, p, s, side).unwrap())).unwrap()
        })
    }

    /// The version 1 form (sums as doubles), as the previous release wrote it.
    fn v1_bytes(c: &Candle) -> Vec<u8> {
        let mut out = vec![1];
        for v in [c.open, c.high, c.low, c.close, c.volume, c.buy_volume, c.sell_volume, c.notional] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for t in [c.open_time, c.high_time, c.low_time, c.close_time, c.trades] {
            out.extend_from_slice(&t.to_le_bytes());
        }
        out
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
    fn decimal_sizes_sum_exactly_in_any_order() {
        // Sizes of 0.1, 0.2 and 0.3 add up to 0.6 whichever way round; float addition gives
        // 0.6000000000000001 one way and 0.6 the other.
        let trades = [(1, 10.0, 0.1, Side::Buy), (2, 10.0, 0.2, Side::Buy), (3, 10.0, 0.3, Side::Buy)];
        let mut reversed = trades;
        reversed.reverse();
        let (a, b) = (build(&trades).unwrap(), build(&reversed).unwrap());
        assert_eq!(a, b);
        assert_eq!((a.volume, a.buy_volume, a.delta()), (0.6, 0.6, 0.6));
        // The notional of 10 × 0.1 + 10 × 0.2 + 10 × 0.3 is the exact sum of those doubles.
        assert_eq!(a.notional, 6.0);
        assert_eq!(a.vwap(), Some(10.0));
        // Delta is the rounded difference of the exact sums, not of the rounded ones.
        let mut c = build(&[(1, 1.0, 0.1, Side::Buy), (2, 1.0, 0.2, Side::Buy)]).unwrap();
        c.merge(&Candle::from_trade(3, 1.0, 0.3, Side::Sell).unwrap()).unwrap();
        assert_eq!(
            c.delta(),
            (ExactSum::from_f64(0.1).unwrap().checked_add(ExactSum::from_f64(0.2).unwrap()))
                .unwrap()
                .checked_sub(ExactSum::from_f64(0.3).unwrap())
                .unwrap()
                .to_f64()
        );
        assert_ne!(c.delta(), 0.0, "0.1 + 0.2 - 0.3 in doubles is 2^-54 + ... exactly, not zero");
    }

    #[test]
    fn sums_out_of_range_are_refused() {
        let e = Candle::from_trade(0, 1e300, 1.0, Side::Buy).unwrap_err();
        assert!(matches!(e, TradeError::OutOfRange { what: "notional (price × size)", .. }), "{e}");
        assert!(e.to_string().contains("2^79"), "{e}");
        let big = Candle::from_trade(0, 1.0, 4e23, Side::Buy).unwrap();
        let mut c = big;
        assert_eq!(c.merge(&big), Err(SumOverflow));
        assert_eq!(c, big, "a refused merge changes nothing");
        assert!(c.add(1, 1.0, 4e23, Side::Sell).is_err());
        assert!(Candle::checked_ohlcv(0, 1.0, 1.0, 1.0, 1.0, 1e24).unwrap_err().contains("out of range"));
    }

    #[test]
    fn bytes_round_trip_and_version_is_checked() {
        let c =
            build(&[(1, 10.0, 1.0, Side::Buy), (2, 12.0, 2.0, Side::Sell), (3, 11.0, 0.1, Side::Unknown)])
                .unwrap();
        let b = c.to_bytes();
        assert_eq!(b[0], Candle::VERSION);
        assert_eq!(Candle::from_bytes(&b).unwrap(), c);
        let mut bad = b.clone();
        bad[0] = 99;
        assert_eq!(
            Candle::from_bytes(&bad).unwrap_err(),
            "candle: unsupported version 99 (this build reads 1 to 2)"
        );
        assert!(Candle::from_bytes(&b[..10]).is_err());
        assert!(Candle::from_bytes(&b[..b.len() - 1]).is_err());
        let mut long = b.clone();
        long.push(0);
        assert!(Candle::from_bytes(&long).unwrap_err().contains("after the sums"));
        assert!(Candle::from_bytes(&[]).is_err());
    }

    #[test]
    fn version_1_bytes_read_back_as_stored() {
        // Sums of 0.1 + 0.2 + 0.3 added as doubles, as version 1 stored them: every field reads
        // back as it was, and merging goes on exactly from those values.
        let mut old = build(&[(1, 10.0, 0.3, Side::Buy)]).unwrap();
        old.volume = 0.1 + 0.2 + 0.3;
        old.buy_volume = 0.1 + 0.2 + 0.3;
        old.notional = 10.0 * 0.1 + 10.0 * 0.2 + 10.0 * 0.3;
        let b = v1_bytes(&old);
        assert_eq!(b.len(), 105);
        let c = Candle::from_bytes(&b).unwrap();
        assert_eq!(
            (c.volume, c.buy_volume, c.sell_volume, c.notional),
            (old.volume, old.buy_volume, 0.0, old.notional)
        );
        assert_eq!(
            (c.open, c.open_time, c.close_time, c.trades),
            (old.open, old.open_time, old.close_time, old.trades)
        );
        assert_eq!(c.sums().volume, ExactSum::from_f64(0.6000000000000001).unwrap());
        // Written back, it is version 2 and the same candle.
        assert_eq!(Candle::from_bytes(&c.to_bytes()).unwrap(), c);
        let mut short = b.clone();
        short.pop();
        assert!(Candle::from_bytes(&short).unwrap_err().contains("expected 105 bytes"));
    }

    #[test]
    fn text_form_carries_the_exact_sums() {
        let c = build(&[(1, 10.0, 0.1, Side::Buy), (2, 10.0, 0.2, Side::Sell)]).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"volume\":0.30000000000000004"), "{json}");
        assert!(json.contains("\"exact\":{\"volume\":\"0x0.4cccccccccccce\"}"), "{json}");
        assert_eq!(serde_json::from_str::<Candle>(&json).unwrap(), c);
        // Integer volumes need no exact part; input without it takes the numbers as exact.
        let whole = build(&[(1, 10.0, 2.0, Side::Buy)]).unwrap();
        let json = serde_json::to_string(&whole).unwrap();
        assert!(!json.contains("exact"), "{json}");
        assert_eq!(serde_json::from_str::<Candle>(&json).unwrap(), whole);
        let wrong =
            serde_json::to_string(&c).unwrap().replace("\"volume\":0.30000000000000004", "\"volume\":0.3");
        let e = serde_json::from_str::<Candle>(&wrong).unwrap_err().to_string();
        assert!(e.contains("volume 0.3 is not its exact value 0x0.4cccccccccccce rounded"), "{e}");
    }

    /// Found by the `candle_binary` and `candle_text` fuzz targets: decoded trade counts near
    /// the limits overflowed when merged (a panic in debug builds, a wrapped count in release).
    #[test]
    fn decoded_trade_counts_are_checked_and_merges_saturate() {
        let c = build(&[(1, 10.0, 1.0, Side::Buy)]).unwrap();
        let mut b = c.to_bytes();
        let at = 1 + 8 * 8;
        b[at..at + 8].copy_from_slice(&(-3_074_457_345_618_258_603i64).to_le_bytes());
        assert!(Candle::from_bytes(&b).unwrap_err().contains("trade count must be >= 0"), "{b:?}");
        let mut old = v1_bytes(&c);
        old[97..105].copy_from_slice(&(-1i64).to_le_bytes());
        assert!(Candle::from_bytes(&old).unwrap_err().contains("trade count must be >= 0"));
        let json =
            serde_json::to_string(&c).unwrap().replace("\"trades\":1", "\"trades\":-3074457345618258603");
        assert!(serde_json::from_str::<Candle>(&json)
            .unwrap_err()
            .to_string()
            .contains("trades must be >= 0"));

        b[at..at + 8].copy_from_slice(&i64::MAX.to_le_bytes());
        let mut max = Candle::from_bytes(&b).unwrap();
        max.merge(&max.clone()).unwrap();
        assert_eq!(max.trades, i64::MAX);
        assert_eq!(Candle::merge_opt(Some(max), Some(&c)).unwrap().unwrap().trades, i64::MAX);
    }

    type Trade = (i64, f64, f64, Side);

    /// Trades with decimal sizes (crypto-like, three decimals) and prices on a cent grid.
    fn trade() -> impl Strategy<Value = Trade> {
        (
            0i64..1000,
            1u32..5000,
            0u32..100_000,
            prop_oneof![Just(Side::Buy), Just(Side::Sell), Just(Side::Unknown)],
        )
            .prop_map(|(t, p, s, side)| (t, p as f64 / 100.0, s as f64 / 1000.0, side))
    }

    /// `trades` shuffled by `seed` and cut at `cuts`, each part built on its own and the parts
    /// merged back to front: any order and any grouping.
    fn regrouped(trades: &[(i64, f64, f64, Side)], seed: u64, cuts: &[prop::sample::Index]) -> Candle {
        let mut v = trades.to_vec();
        let mut s = seed;
        for i in (1..v.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            v.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(v.len() + 1)).collect();
        bounds.extend([0, v.len()]);
        bounds.sort_unstable();
        bounds
            .windows(2)
            .rev()
            .fold(None, |acc, w| Candle::merge_opt(acc, build(&v[w[0]..w[1]]).as_ref()).unwrap())
            .unwrap()
    }

    proptest! {
        #[test]
        fn any_order_and_grouping_gives_the_same_candle(
            trades in prop::collection::vec(trade(), 1..60),
            seed in any::<u64>(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
        ) {
            let whole = build(&trades).unwrap();
            let other = regrouped(&trades, seed, &cuts);
            prop_assert_eq!(other, whole);
            let bits = |c: &Candle| [c.volume, c.buy_volume, c.sell_volume, c.notional, c.delta()].map(f64::to_bits);
            prop_assert_eq!(bits(&other), bits(&whole));
            prop_assert_eq!(other.to_bytes(), whole.to_bytes());
            // Adding trade by trade in place is the same as merging one-trade candles.
            let mut added = Candle::from_trade(trades[0].0, trades[0].1, trades[0].2, trades[0].3).unwrap();
            for &(t, p, s, side) in &trades[1..] {
                added.add(t, p, s, side).unwrap();
            }
            prop_assert_eq!(added, whole);
            prop_assert_eq!(serde_json::to_string(&other).unwrap(), serde_json::to_string(&whole).unwrap());
        }

        #[test]
        fn sums_are_the_rounded_exact_sums(trades in prop::collection::vec(trade(), 1..60)) {
            let c = build(&trades).unwrap();
            let exact = |f: &dyn Fn(&Trade) -> f64| {
                trades.iter().fold(ExactSum::ZERO, |a, t| a.checked_add(ExactSum::from_f64(f(t)).unwrap()).unwrap())
            };
            prop_assert_eq!(c.volume, exact(&|t| t.2).to_f64());
            prop_assert_eq!(c.buy_volume, exact(&|t| if t.3 == Side::Buy { t.2 } else { 0.0 }).to_f64());
            prop_assert_eq!(c.notional, exact(&|t| t.1 * t.2).to_f64());
            prop_assert!(c.low <= c.open && c.open <= c.high && c.low <= c.close && c.close <= c.high);
            prop_assert_eq!(Candle::from_bytes(&c.to_bytes()).unwrap(), c);
            prop_assert_eq!(serde_json::from_str::<Candle>(&serde_json::to_string(&c).unwrap()).unwrap(), c);
        }

        #[test]
        fn version_1_values_merge_like_their_doubles(a in prop::collection::vec(trade(), 1..20), b in prop::collection::vec(trade(), 1..20)) {
            let (ca, cb) = (build(&a).unwrap(), build(&b).unwrap());
            let old = Candle::from_bytes(&v1_bytes(&ca)).unwrap();
            prop_assert_eq!((old.volume, old.notional), (ca.volume, ca.notional));
            let mut m = old;
            m.merge(&cb).unwrap();
            let want = ExactSum::from_f64(ca.volume).unwrap().checked_add(cb.sums().volume).unwrap();
            prop_assert_eq!(m.sums().volume, want);
        }
    }
}
