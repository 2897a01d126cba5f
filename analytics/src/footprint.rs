//! Footprint of a bar and its bid/ask imbalances.
//!
//! A footprint is the volume profile of one bar, so it is a [`Profile`]: per row, the ask
//! volume (aggressive buys, `Level::buy`) and the bid volume (aggressive sells, `Level::sell`).
//!
//! Imbalances are *diagonal*, as traders read a footprint: a buyer lifting the offer at row `p`
//! competes with the seller hitting the bid one row lower, at `p − 1`, because at any moment the
//! best bid sits one tick under the best ask.
//!
//! * **Buy imbalance** at `p`: ask(p) ≥ ratio × bid(p − 1) and ask(p) ≥ min_volume.
//! * **Sell imbalance** at `p`: bid(p) ≥ ratio × ask(p + 1) and bid(p) ≥ min_volume.
//!
//! A zero opposite volume counts as an imbalance as soon as the volume is ≥ `min_volume` (and
//! above zero). The opposite row must lie inside the bar's range (empty rows inside it count as
//! zero): the lowest row has no buy imbalance and the highest no sell imbalance, since price
//! never traded beyond them and there is nothing to compare with.
//!
//! **Stacked imbalances** are runs of at least `stack_rows` consecutive rows carrying an
//! imbalance of the same side.

use crate::profile::{Profile, ProfileError};
use crate::side::Side;
use serde::{Deserialize, Serialize};

/// The footprint of one bar.
pub type Footprint = Profile;

/// Imbalance detection parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ImbalanceParams {
    /// Volume must be at least this multiple of the diagonal opposite volume. Default 1.5 (150%).
    pub ratio: f64,
    /// Volume must also be at least this. Default 0 (any volume above zero).
    pub min_volume: f64,
    /// Consecutive rows making a stack. Default 3.
    pub stack_rows: u32,
}

impl Default for ImbalanceParams {
    fn default() -> Self {
        ImbalanceParams { ratio: 1.5, min_volume: 0.0, stack_rows: 3 }
    }
}

impl ImbalanceParams {
    pub fn validate(&self) -> Result<(), ProfileError> {
        let bad = |name, value, rule| Err(ProfileError::BadParameter { name, value, rule });
        if !(self.ratio.is_finite() && self.ratio >= 1.0) {
            return bad("imbalance ratio", self.ratio, "a finite number >= 1 (1.5 means 150%)");
        }
        if !(self.min_volume.is_finite() && self.min_volume >= 0.0) {
            return bad("imbalance min_volume", self.min_volume, "a finite number >= 0");
        }
        if self.stack_rows == 0 {
            return bad("stack_rows", 0.0, "an integer >= 1");
        }
        Ok(())
    }
}

/// One row's imbalance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RowImbalance {
    /// `Buy` (ask side dominates) or `Sell` (bid side dominates).
    pub side: Side,
    pub row: i64,
    pub price: f64,
    /// The dominating volume at this row: ask for a buy imbalance, bid for a sell imbalance.
    pub volume: f64,
    /// The diagonal opposite: bid one row below, or ask one row above.
    pub opposite: f64,
}

impl RowImbalance {
    /// volume / opposite; infinite when the opposite is zero.
    pub fn ratio(&self) -> f64 {
        self.volume / self.opposite
    }
}

/// A run of same-side imbalances on consecutive rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StackedImbalance {
    pub side: Side,
    /// Price of the lowest row of the run.
    pub low: f64,
    /// Price of the highest row of the run (its lowest tick, as every row price).
    pub high: f64,
    pub rows: u32,
}

/// Every imbalance of the footprint, ascending by price, a row's buy imbalance before its sell.
pub fn imbalances(fp: &Footprint, p: &ImbalanceParams) -> Result<Vec<RowImbalance>, ProfileError> {
    p.validate()?;
    // Rows without volume are outside the range or count as zero anyway.
    let rows: Vec<_> = fp.rows().into_iter().filter(|(_, l)| l.total() > 0.0).collect();
    let hits = |v: f64, opposite: f64| v > 0.0 && v >= p.min_volume && v >= p.ratio * opposite;
    let mut out = Vec::new();
    for (i, &(row, level)) in rows.iter().enumerate() {
        let mut push = |side, volume, opposite| {
            out.push(RowImbalance { side, row, price: fp.row_price(row), volume, opposite })
        };
        if i > 0 {
            let below = rows[i - 1];
            let bid = if below.0 == row - 1 { below.1.sell } else { 0.0 };
            if hits(level.buy, bid) {
                push(Side::Buy, level.buy, bid);
            }
        }
        if let Some(&above) = rows.get(i + 1) {
            let ask = if above.0 == row + 1 { above.1.buy } else { 0.0 };
            if hits(level.sell, ask) {
                push(Side::Sell, level.sell, ask);
            }
        }
    }
    Ok(out)
}

/// Runs of at least `min_rows` consecutive rows with same-side imbalances, ascending by low
/// price (buy runs first at equal prices). `imbalances` must be ascending by row, as
/// [`imbalances`] returns them.
pub fn stack(imbalances: &[RowImbalance], min_rows: u32) -> Vec<StackedImbalance> {
    let mut out = Vec::new();
    for side in [Side::Buy, Side::Sell] {
        let rows: Vec<&RowImbalance> = imbalances.iter().filter(|x| x.side == side).collect();
        let mut start = 0;
        for end in 1..=rows.len() {
            if end == rows.len() || rows[end].row != rows[end - 1].row + 1 {
                let n = (end - start) as u32;
                if n >= min_rows.max(1) {
                    out.push(StackedImbalance {
                        side,
                        low: rows[start].price,
                        high: rows[end - 1].price,
                        rows: n,
                    });
                }
                start = end;
            }
        }
    }
    out.sort_by(|a, b| a.low.total_cmp(&b.low).then((a.side == Side::Sell).cmp(&(b.side == Side::Sell))));
    out
}

/// The footprint's stacked imbalances under `p`.
pub fn stacked_imbalances(
    fp: &Footprint,
    p: &ImbalanceParams,
) -> Result<Vec<StackedImbalance>, ProfileError> {
    Ok(stack(&imbalances(fp, p)?, p.stack_rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A footprint from `(price, bid, ask)` rows on a 0.25 tick.
    fn fp(rows: &[(f64, f64, f64)]) -> Footprint {
        let mut p = Profile::new(0.25, 1).unwrap();
        for &(price, bid, ask) in rows {
            p.add(price, bid, Side::Sell).unwrap();
            p.add(price, ask, Side::Buy).unwrap();
        }
        p
    }

    fn summary(v: &[RowImbalance]) -> Vec<(Side, f64)> {
        v.iter().map(|x| (x.side, x.price)).collect()
    }

    #[test]
    fn diagonal_imbalances_and_a_three_row_stack() {
        //  price   bid × ask    buy: ask(p) vs 1.5 × bid(p-1)   sell: bid(p) vs 1.5 × ask(p+1)
        // 101.25     4 × 10     10 vs 75: no                    top row: not compared
        // 101.00    50 × 20     20 vs 30: no                    50 vs 15: SELL
        // 100.75    20 × 45     45 vs 18: BUY                   20 vs 30: no
        // 100.50    12 × 40     40 vs 12: BUY                   12 vs 67.5: no
        // 100.25     8 × 30     30 vs 15: BUY                   8 vs 60: no
        // 100.00    10 ×  5     bottom row: not compared        10 vs 45: no
        let f = fp(&[
            (100.0, 10.0, 5.0),
            (100.25, 8.0, 30.0),
            (100.5, 12.0, 40.0),
            (100.75, 20.0, 45.0),
            (101.0, 50.0, 20.0),
            (101.25, 4.0, 10.0),
        ]);
        let p = ImbalanceParams::default();
        let imb = imbalances(&f, &p).unwrap();
        assert_eq!(
            summary(&imb),
            vec![(Side::Buy, 100.25), (Side::Buy, 100.5), (Side::Buy, 100.75), (Side::Sell, 101.0)]
        );
        assert_eq!((imb[0].volume, imb[0].opposite, imb[0].ratio()), (30.0, 10.0, 3.0));
        assert_eq!((imb[3].volume, imb[3].opposite), (50.0, 10.0));
        assert_eq!(
            stacked_imbalances(&f, &p).unwrap(),
            vec![StackedImbalance { side: Side::Buy, low: 100.25, high: 100.75, rows: 3 }]
        );
        // Asking for four rows finds no stack; one row makes every imbalance a stack.
        assert!(stacked_imbalances(&f, &ImbalanceParams { stack_rows: 4, ..p }).unwrap().is_empty());
        assert_eq!(stacked_imbalances(&f, &ImbalanceParams { stack_rows: 1, ..p }).unwrap().len(), 2);
    }

    #[test]
    fn ratio_is_inclusive_and_min_volume_filters() {
        // ask 15 at 100.25 against bid 10 at 100.00: exactly 150%.
        let f = fp(&[(100.0, 10.0, 0.0), (100.25, 0.0, 15.0)]);
        let p = ImbalanceParams::default();
        assert_eq!(summary(&imbalances(&f, &p).unwrap()), vec![(Side::Buy, 100.25)]);
        assert!(imbalances(&f, &ImbalanceParams { ratio: 1.6, ..p }).unwrap().is_empty());
        assert!(imbalances(&f, &ImbalanceParams { min_volume: 16.0, ..p }).unwrap().is_empty());
    }

    #[test]
    fn zero_opposite_counts_inside_the_range_only() {
        // Row 100.25 is empty, so the ask at 100.50 faces a zero bid and the bid at 100.00 a
        // zero ask: both are imbalances once they reach min_volume.
        let f = fp(&[(100.0, 3.0, 1.0), (100.5, 1.0, 3.0)]);
        let p = ImbalanceParams { min_volume: 2.0, ..ImbalanceParams::default() };
        let imb = imbalances(&f, &p).unwrap();
        assert_eq!(summary(&imb), vec![(Side::Sell, 100.0), (Side::Buy, 100.5)]);
        assert_eq!(imb[0].ratio(), f64::INFINITY);
        assert!(imbalances(&f, &ImbalanceParams { min_volume: 4.0, ..p }).unwrap().is_empty());
        // A single row has nothing to compare with.
        assert!(imbalances(&fp(&[(100.0, 0.0, 9.0)]), &p).unwrap().is_empty());
        // Zero volume is never an imbalance, even against zero.
        let f = fp(&[(100.0, 0.0, 5.0), (100.25, 0.0, 5.0)]);
        assert_eq!(summary(&imbalances(&f, &ImbalanceParams::default()).unwrap()), vec![(Side::Buy, 100.25)]);
    }

    #[test]
    fn sell_stack_and_ordering() {
        // Sellers dominate diagonally on 100.00..=100.50; a buy run of one row at 101.00.
        let f = fp(&[
            (100.0, 40.0, 1.0),
            (100.25, 30.0, 2.0),
            (100.5, 20.0, 3.0),
            (100.75, 1.0, 10.0),
            (101.0, 1.0, 10.0),
        ]);
        let stacks = stacked_imbalances(&f, &ImbalanceParams::default()).unwrap();
        assert_eq!(stacks, vec![StackedImbalance { side: Side::Sell, low: 100.0, high: 100.5, rows: 3 }]);
        // Both sides can stack on overlapping rows; buys come first at the same low.
        let mixed = [Side::Buy, Side::Sell, Side::Buy, Side::Sell]
            .iter()
            .enumerate()
            .map(|(i, &side)| RowImbalance {
                side,
                row: (i / 2) as i64,
                price: (i / 2) as f64,
                volume: 1.0,
                opposite: 0.0,
            })
            .collect::<Vec<_>>();
        let s = stack(&mixed, 2);
        assert_eq!(
            s.iter().map(|x| (x.side, x.low, x.high, x.rows)).collect::<Vec<_>>(),
            vec![(Side::Buy, 0.0, 1.0, 2), (Side::Sell, 0.0, 1.0, 2)]
        );
    }

    #[test]
    fn params_are_checked() {
        let f = fp(&[(100.0, 1.0, 1.0)]);
        for bad in [
            ImbalanceParams { ratio: 0.5, ..ImbalanceParams::default() },
            ImbalanceParams { ratio: f64::NAN, ..ImbalanceParams::default() },
            ImbalanceParams { min_volume: -1.0, ..ImbalanceParams::default() },
            ImbalanceParams { stack_rows: 0, ..ImbalanceParams::default() },
        ] {
            assert!(matches!(imbalances(&f, &bad), Err(ProfileError::BadParameter { .. })), "{bad:?}");
        }
        let e = imbalances(&f, &ImbalanceParams { ratio: 0.5, ..ImbalanceParams::default() }).unwrap_err();
        assert_eq!(e.to_string(), "imbalance ratio must be a finite number >= 1 (1.5 means 150%), got 0.5");
    }
}
