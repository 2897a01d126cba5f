//! Each symbol's newest minute among a statement's trades: its start, its candle and the keys of
//! its trades. The TimescaleDB path's insert triggers gather it row by row (sql/026) to
//! announce every symbol's newest minute, so that the statement needs no transition table,
//! which would make TimescaleDB copy row by row and record no continuous-aggregate
//! invalidation.

pub use crate::candle::{minute_of, MINUTE};
use crate::{Candle, Micros, Side, TradeError};
use std::collections::HashMap;

/// A symbol's newest minute among the trades added.
#[derive(Debug, Clone, PartialEq)]
pub struct NewestMinute {
    pub symbol: String,
    /// The minute's start.
    pub bucket: Micros,
    /// The added trades of that minute.
    pub candle: Candle,
    /// `(time, trade_id)` of each of those trades, in the order they were added.
    pub keys: Vec<(Micros, String)>,
}

/// Gathers [`NewestMinute`]s trade by trade; trades of older minutes are left out.
#[derive(Debug, Default)]
pub struct NewestMinutes {
    minutes: Vec<NewestMinute>,
    by_symbol: HashMap<String, usize>,
    /// The previous trade's symbol: statements mostly come in key order, a symbol's rows together.
    last: Option<usize>,
}

impl NewestMinutes {
    /// Adds one trade. `Err` (and nothing changed) for a trade a candle refuses.
    pub fn add(
        &mut self,
        symbol: &str,
        time: Micros,
        price: f64,
        size: f64,
        side: Side,
        trade_id: &str,
    ) -> Result<(), TradeError> {
        let bucket = minute_of(time);
        let found = match self.last {
            Some(i) if self.minutes[i].symbol == symbol => Some(i),
            _ => self.by_symbol.get(symbol).copied(),
        };
        let Some(i) = found else {
            let candle = Candle::from_trade(time, price, size, side)?;
            self.by_symbol.insert(symbol.to_owned(), self.minutes.len());
            self.last = Some(self.minutes.len());
            self.minutes.push(NewestMinute {
                symbol: symbol.to_owned(),
                bucket,
                candle,
                keys: vec![(time, trade_id.to_owned())],
            });
            return Ok(());
        };
        self.last = Some(i);
        let m = &mut self.minutes[i];
        if bucket > m.bucket {
            m.candle = Candle::from_trade(time, price, size, side)?;
            m.bucket = bucket;
            m.keys.clear();
        } else if bucket == m.bucket {
            m.candle.add(time, price, size, side)?;
        } else {
            return Ok(());
        }
        m.keys.push((time, trade_id.to_owned()));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.minutes.is_empty()
    }

    /// The minutes, in symbol order (as bytes).
    pub fn into_sorted(mut self) -> Vec<NewestMinute> {
        self.minutes.sort_unstable_by(|a, b| a.symbol.cmp(&b.symbol));
        self.minutes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn minutes_start_on_the_minute_before_and_after_the_epoch() {
        assert_eq!(minute_of(0), 0);
        assert_eq!(minute_of(MINUTE - 1), 0);
        assert_eq!(minute_of(MINUTE), MINUTE);
        assert_eq!(minute_of(-1), -MINUTE);
        assert_eq!(minute_of(-MINUTE), -MINUTE);
    }

    #[test]
    fn a_newer_minute_replaces_an_older_one_and_late_trades_are_left_out() {
        let mut m = NewestMinutes::default();
        m.add("B", 10, 5.0, 1.0, Side::Buy, "1").unwrap();
        m.add("A", MINUTE + 5, 2.0, 3.0, Side::Sell, "7").unwrap();
        m.add("B", MINUTE + 1, 6.0, 2.0, Side::Sell, "2").unwrap();
        m.add("B", 20, 9.0, 4.0, Side::Buy, "3").unwrap(); // late: B's newest is the second minute
        m.add("B", MINUTE + 2, 4.0, 1.0, Side::Buy, "4").unwrap();
        let out = m.into_sorted();
        assert_eq!(out.iter().map(|m| m.symbol.as_str()).collect::<Vec<_>>(), ["A", "B"]);
        let b = &out[1];
        assert_eq!(b.bucket, MINUTE);
        assert_eq!(b.keys, [(MINUTE + 1, "2".to_owned()), (MINUTE + 2, "4".to_owned())]);
        assert_eq!((b.candle.trades, b.candle.volume, b.candle.open, b.candle.close), (2, 3.0, 6.0, 4.0));
        assert_eq!((b.candle.buy_volume, b.candle.sell_volume), (1.0, 2.0));
    }

    #[test]
    fn a_refused_trade_changes_nothing() {
        let mut m = NewestMinutes::default();
        assert!(m.add("A", 0, -1.0, 1.0, Side::Buy, "1").is_err());
        assert!(m.is_empty());
        m.add("A", 0, 1.0, 1.0, Side::Buy, "1").unwrap();
        assert!(m.add("A", MINUTE, f64::NAN, 1.0, Side::Buy, "2").is_err());
        let out = m.into_sorted();
        assert_eq!((out[0].bucket, out[0].keys.len(), out[0].candle.trades), (0, 1, 1));
    }

    proptest! {
        /// Against the definition: per symbol, the candle of the trades in its latest minute.
        #[test]
        fn equals_each_symbols_latest_minute_aggregated_at_once(
            trades in prop::collection::vec((0u8..4, -3 * MINUTE..3 * MINUTE, 1u32..500, 1u32..50, 0u8..3), 1..200)
        ) {
            let side = |s: u8| [Side::Buy, Side::Sell, Side::Unknown][s as usize];
            let mut m = NewestMinutes::default();
            for (i, &(sym, t, p, s, sd)) in trades.iter().enumerate() {
                m.add(&format!("S{sym}"), t, p as f64 / 4.0, s as f64, side(sd), &i.to_string()).unwrap();
            }
            let out = m.into_sorted();
            let mut symbols: Vec<u8> = trades.iter().map(|t| t.0).collect();
            symbols.sort_unstable();
            symbols.dedup();
            prop_assert_eq!(out.len(), symbols.len());
            for (got, sym) in out.iter().zip(symbols) {
                let bucket = trades.iter().filter(|t| t.0 == sym).map(|t| minute_of(t.1)).max().unwrap();
                let mine: Vec<_> = trades.iter().enumerate().filter(|(_, t)| t.0 == sym && minute_of(t.1) == bucket).collect();
                let mut want: Option<Candle> = None;
                for (_, &(_, t, p, s, sd)) in &mine {
                    let c = Candle::from_trade(t, p as f64 / 4.0, s as f64, side(sd)).unwrap();
                    want = Candle::merge_opt(want, Some(&c)).unwrap();
                }
                prop_assert_eq!(&got.symbol, &format!("S{sym}"));
                prop_assert_eq!(got.bucket, bucket);
                prop_assert_eq!(got.candle, want.unwrap());
                let keys: Vec<_> = mine.iter().map(|(i, t)| (t.1, i.to_string())).collect();
                prop_assert_eq!(&got.keys, &keys);
            }
        }
    }
}
