//! A volume profile kept ready for a value area after every bar.
//!
//! The bar engine needs the POC and value area of the session profile after each bar. Sorting
//! the rows, summing them and scanning for the POC every bar made that the dominant cost of a
//! backtest; a [`RowLadder`] keeps the rows sorted, the total running and the POC up to date
//! as bars add volume, so a bar costs its own rows plus the walk out from the POC.

use crate::profile::{poc_beats, poc_index, value_area_around, VaMethod, ValueAreaRows};

/// Ascending `(row, volume)` pairs with volume > 0, their total and their POC.
#[derive(Debug, Clone, Default)]
pub struct RowLadder {
    rows: Vec<(i64, f64)>,
    total: f64,
    /// The POC row as of the last [`RowLadder::value_area`] (`None`: scan again).
    poc: Option<i64>,
    /// Rows that gained volume since then.
    touched: Vec<i64>,
}

impl RowLadder {
    /// Empties the ladder, keeping its memory.
    pub fn clear(&mut self) {
        self.rows.clear();
        self.total = 0.0;
        self.poc = None;
        self.touched.clear();
    }

    /// Adds `volume` at `row`; volumes that are not > 0 are ignored.
    pub fn add(&mut self, row: i64, volume: f64) {
        self.add_ascending(&[(row, volume)]);
    }

    /// Adds `(row, volume)` pairs in ascending row order (what a bar brings): one search, then
    /// a walk, instead of a search per row.
    pub fn add_ascending(&mut self, rows: &[(i64, f64)]) {
        let Some(&(first, _)) = rows.first() else {
            return;
        };
        let mut i = self.rows.partition_point(|e| e.0 < first);
        for &(row, volume) in rows {
            if volume.is_nan() || volume <= 0.0 {
                continue;
            }
            while i < self.rows.len() && self.rows[i].0 < row {
                i += 1;
            }
            if i < self.rows.len() && self.rows[i].0 == row {
                self.rows[i].1 += volume;
            } else {
                // A new lowest or highest row moves the centre that breaks POC ties.
                if i == 0 || i == self.rows.len() {
                    self.poc = None;
                }
                self.rows.insert(i, (row, volume));
            }
            self.total += volume;
            if self.poc.is_some() {
                self.touched.push(row);
            }
        }
    }

    /// The rows with volume, ascending.
    pub fn rows(&self) -> &[(i64, f64)] {
        &self.rows
    }

    /// Total volume, summed in the order it was added.
    pub fn total(&self) -> f64 {
        self.total
    }

    /// The value area holding `pct` (in (0, 1]) of the volume; `None` when empty. The rules are
    /// those of [`crate::profile::Profile::try_value_area`].
    pub fn value_area(&mut self, pct: f64, method: VaMethod) -> Option<ValueAreaRows> {
        let poc = self.settle_poc()?;
        Some(value_area_around(&self.rows, poc, self.total, pct, method))
    }

    /// Index of the POC. Only touched rows gained volume and the range kept its ends, so the
    /// POC is the best of the previous POC and the touched rows under the same total order a
    /// full scan uses; a new end of the range rescans.
    fn settle_poc(&mut self) -> Option<usize> {
        let index = |rows: &[(i64, f64)], r: i64| rows.binary_search_by_key(&r, |e| e.0).ok();
        let (first, last) = (self.rows.first()?.0, self.rows.last()?.0);
        let best = match self.poc.and_then(|r| index(&self.rows, r)) {
            Some(mut best) => {
                for &r in &self.touched {
                    let i = index(&self.rows, r).expect("touched rows hold volume");
                    if poc_beats(self.rows[i], self.rows[best], first + last) {
                        best = i;
                    }
                }
                best
            }
            None => poc_index(&self.rows)?,
        };
        self.touched.clear();
        self.poc = Some(self.rows[best].0);
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::value_area_rows;
    use proptest::prelude::*;

    proptest! {
        /// Bar after bar, the ladder's POC and value area are those of the same rows computed
        /// from scratch (the total is compared with a tolerance: it is summed in another order).
        #[test]
        fn matches_a_full_recomputation(
            bars in prop::collection::vec(prop::collection::vec((0i64..60, 1u32..50), 1..12), 1..40),
            single in any::<bool>(),
        ) {
            let method = if single { VaMethod::Single } else { VaMethod::Dalton };
            let mut ladder = RowLadder::default();
            for bar in &bars {
                for &(r, v) in bar {
                    ladder.add(r, f64::from(v));
                }
                let got = ladder.value_area(0.7, method).unwrap();
                let want = value_area_rows(ladder.rows(), 0.7, method).unwrap();
                prop_assert_eq!((got.poc, got.lo, got.hi), (want.poc, want.lo, want.hi));
                prop_assert!((got.total - want.total).abs() < 1e-9 * want.total);
            }
        }
    }

    #[test]
    fn ties_follow_the_centre_as_the_range_grows() {
        let mut l = RowLadder::default();
        for r in 10..=12 {
            l.add(r, 5.0);
        }
        assert_eq!(l.value_area(0.1, VaMethod::Single).unwrap().poc, 11);
        // Two new rows above move the centre to 12, where an equal row already is.
        l.add(13, 1.0);
        l.add(14, 1.0);
        assert_eq!(l.value_area(0.1, VaMethod::Single).unwrap().poc, 12);
        // A touched row that overtakes the POC wins without a rescan.
        l.add(10, 1.0);
        assert_eq!(l.value_area(0.1, VaMethod::Single).unwrap().poc, 10);
        l.clear();
        assert!(l.value_area(0.7, VaMethod::Dalton).is_none());
        l.add(3, 0.0);
        assert!(l.rows().is_empty());
    }
}
