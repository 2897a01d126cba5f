//! A volume profile kept ready for a value area after every bar.
//!
//! The bar engine needs the POC and value area of the session profile after each bar. Sorting
//! the rows, summing them and scanning for the POC every bar made that the dominant cost of a
//! backtest. A [`RowLadder`] keeps the volumes in a dense array indexed by row, the total
//! running and the POC up to date as bars add volume, so a bar costs its own rows plus the
//! walk out from the POC over contiguous memory.

use crate::profile::{
    poc_beats, poc_row, value_area_around, RowVolumes, VaMethod, ValueAreaRows, MAX_NODE_ROWS,
};

/// Widest range of rows kept dense; a session whose prices span more (a far-off bad print on a
/// fine grid) switches to sorted pairs until it is cleared.
const MAX_DENSE_ROWS: i64 = MAX_NODE_ROWS;

/// Row volumes with a running total and POC; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct RowLadder {
    rows: Rows,
    total: f64,
    /// The POC as of the last [`RowLadder::value_area`] (`None`: scan again).
    poc: Option<i64>,
    /// The best row (under the POC order, with its volume now) of those that gained volume since
    /// then: volumes only grow, so comparing each row as it is added keeps this exact.
    challenger: Option<(i64, f64)>,
}

#[derive(Debug, Clone)]
enum Rows {
    Dense(DenseRows),
    /// Ascending `(row, volume)` pairs with volume.
    Sparse(Vec<(i64, f64)>),
}

/// `volumes[i]` is row `base + i`; `lo..=hi` are the lowest and highest rows with volume
/// (`lo > hi` when empty).
#[derive(Debug, Clone)]
struct DenseRows {
    base: i64,
    volumes: Vec<f64>,
    lo: i64,
    hi: i64,
}

impl Default for Rows {
    fn default() -> Self {
        Rows::Dense(DenseRows { base: 0, volumes: Vec::new(), lo: 1, hi: 0 })
    }
}

/// Calls `$f` with the rows as their concrete type, so the value area walk is compiled (and
/// inlined) for each storage.
macro_rules! with_rows {
    ($rows:expr, $r:ident => $f:expr) => {
        match $rows {
            Rows::Dense($r) => $f,
            Rows::Sparse(pairs) => {
                let $r = pairs.as_slice();
                $f
            }
        }
    };
}

impl RowLadder {
    /// Empties the ladder, keeping its memory.
    pub fn clear(&mut self) {
        match &mut self.rows {
            Rows::Dense(DenseRows { base, volumes, lo, hi }) => {
                if lo <= hi {
                    volumes[(*lo - *base) as usize..=(*hi - *base) as usize].fill(0.0);
                }
                (*lo, *hi) = (1, 0);
            }
            Rows::Sparse(_) => self.rows = Rows::default(),
        }
        self.total = 0.0;
        self.poc = None;
        self.challenger = None;
    }

    /// Adds `volume` at `row`; volumes that are not > 0 are ignored.
    pub fn add(&mut self, row: i64, volume: f64) {
        self.add_ascending(&[(row, volume)]);
    }

    /// Adds `(row, volume)` pairs in ascending row order (what a bar brings); volumes that are
    /// not > 0 are ignored.
    pub fn add_ascending(&mut self, rows: &[(i64, f64)]) {
        debug_assert!(rows.windows(2).all(|w| w[0].0 <= w[1].0), "rows must be ascending");
        let traded = |e: &&(i64, f64)| e.1 > 0.0;
        let (Some(&(min, _)), Some(&(max, _))) = (rows.iter().find(traded), rows.iter().rfind(traded)) else {
            return;
        };
        // A new lowest or highest row moves the centre that breaks POC ties.
        if self.is_empty() || min < self.bounds().0 || max > self.bounds().1 {
            self.poc = None;
        }
        self.make_room(min, max);
        // Only while the POC is kept (the range, and so the centre, did not change).
        let centre2 = self.poc.map(|_| self.bounds().0 + self.bounds().1);
        let challenger = &mut self.challenger;
        let mut challenge = |e: (i64, f64)| {
            if let Some(centre2) = centre2 {
                if challenger.is_none_or(|c| poc_beats(e, c, centre2)) {
                    *challenger = Some(e);
                }
            }
        };
        match &mut self.rows {
            Rows::Dense(d) => {
                for &(row, volume) in rows.iter().filter(traded) {
                    let v = &mut d.volumes[(row - d.base) as usize];
                    *v += volume;
                    self.total += volume;
                    challenge((row, *v));
                }
                (d.lo, d.hi) = if d.lo > d.hi { (min, max) } else { (d.lo.min(min), d.hi.max(max)) };
            }
            Rows::Sparse(pairs) => {
                for &(row, volume) in rows.iter().filter(traded) {
                    let i = match pairs.binary_search_by_key(&row, |e| e.0) {
                        Ok(i) => {
                            pairs[i].1 += volume;
                            i
                        }
                        Err(i) => {
                            pairs.insert(i, (row, volume));
                            i
                        }
                    };
                    self.total += volume;
                    challenge(pairs[i]);
                }
            }
        }
    }

    /// Grows the dense array to cover `min..=max`, or turns sparse when that would be too wide.
    fn make_room(&mut self, min: i64, max: i64) {
        let Rows::Dense(DenseRows { base, volumes, lo, hi }) = &mut self.rows else {
            return;
        };
        let (want_lo, want_hi) = if lo > hi { (min, max) } else { ((*lo).min(min), (*hi).max(max)) };
        if want_lo >= *base && want_hi < *base + volumes.len() as i64 {
            return;
        }
        let span = want_hi - want_lo + 1;
        if span > MAX_DENSE_ROWS {
            let pairs = (*lo..=*hi)
                .map(|r| (r, volumes[(r - *base) as usize]))
                .filter(|e| e.1 > 0.0)
                .collect::<Vec<_>>();
            self.rows = Rows::Sparse(pairs);
            return;
        }
        // Room on both sides for the prices still to come, so growing is rare.
        let margin = (span / 2).max(64);
        let new_base = want_lo - margin;
        let mut grown = vec![0.0; (span + 2 * margin) as usize];
        if lo <= hi {
            let from = (*lo - *base) as usize..=(*hi - *base) as usize;
            let to = (*lo - new_base) as usize;
            grown[to..=to + (*hi - *lo) as usize].copy_from_slice(&volumes[from]);
        }
        (*base, *volumes) = (new_base, grown);
    }

    fn is_empty(&self) -> bool {
        match &self.rows {
            Rows::Dense(d) => d.lo > d.hi,
            Rows::Sparse(pairs) => pairs.is_empty(),
        }
    }

    fn volume_at(&self, row: i64) -> f64 {
        with_rows!(&self.rows, r => r.sum(row, row))
    }

    /// `(row, volume)` of the rows with volume, ascending.
    pub fn rows(&self) -> Vec<(i64, f64)> {
        with_rows!(&self.rows, r => r.traded().collect())
    }

    /// Total volume, summed in the order it was added.
    pub fn total(&self) -> f64 {
        self.total
    }

    /// The value area holding `pct` (in (0, 1]) of the volume; `None` when empty. The rules are
    /// those of [`crate::profile::Profile::try_value_area`].
    pub fn value_area(&mut self, pct: f64, method: VaMethod) -> Option<ValueAreaRows> {
        let poc = self.settle_poc()?;
        let total = self.total;
        Some(with_rows!(&self.rows, r => value_area_around(r, poc, total, pct, method)))
    }

    /// The POC. Only rows that gained volume can overtake it while the range keeps its ends, so
    /// it is the better of the previous POC and the challenger under the order a full scan
    /// uses; a new end of the range rescans.
    fn settle_poc(&mut self) -> Option<(i64, f64)> {
        if self.is_empty() {
            return None;
        }
        let (lo, hi) = self.bounds();
        let best = match self.poc {
            Some(row) => {
                let held = (row, self.volume_at(row));
                match self.challenger {
                    Some(c) if poc_beats(c, held, lo + hi) => c,
                    _ => held,
                }
            }
            None => with_rows!(&self.rows, r => poc_row(r))?,
        };
        self.challenger = None;
        self.poc = Some(best.0);
        Some(best)
    }

    fn bounds(&self) -> (i64, i64) {
        with_rows!(&self.rows, r => r.bounds())
    }
}

impl RowVolumes for DenseRows {
    fn bounds(&self) -> (i64, i64) {
        (self.lo, self.hi)
    }

    #[inline]
    fn sum(&self, lo: i64, hi: i64) -> f64 {
        self.volumes[(lo - self.base) as usize..=(hi - self.base) as usize].iter().sum()
    }

    fn traded_above(&self, row: i64) -> i64 {
        let from = (row + 1 - self.base) as usize;
        let offset = self.volumes[from..].iter().position(|&v| v > 0.0).expect("a row above");
        row + 1 + offset as i64
    }

    fn traded_below(&self, row: i64) -> i64 {
        let to = (row - self.base) as usize;
        self.base + self.volumes[..to].iter().rposition(|&v| v > 0.0).expect("a row below") as i64
    }

    fn traded(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        let range = if self.lo <= self.hi {
            (self.lo - self.base) as usize..(self.hi - self.base + 1) as usize
        } else {
            0..0
        };
        let lo = self.lo;
        self.volumes[range].iter().enumerate().map(move |(i, &v)| (lo + i as i64, v)).filter(|e| e.1 > 0.0)
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
            bars in prop::collection::vec(prop::collection::vec((-200i64..200, 1u32..50), 1..12), 1..40),
            single in any::<bool>(),
        ) {
            let method = if single { VaMethod::Single } else { VaMethod::Dalton };
            let mut ladder = RowLadder::default();
            for (i, bar) in bars.iter().enumerate() {
                let mut rows: Vec<(i64, f64)> = bar.iter().map(|&(r, v)| (r, f64::from(v))).collect();
                rows.sort_by_key(|e| e.0);
                if i % 2 == 0 {
                    ladder.add_ascending(&rows);
                } else {
                    rows.iter().for_each(|&(r, v)| ladder.add(r, v));
                }
                let got = ladder.value_area(0.7, method).unwrap();
                let want = value_area_rows(&ladder.rows(), 0.7, method).unwrap();
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
        assert!(l.rows().is_empty());
        l.add(3, 0.0);
        assert!(l.rows().is_empty());
    }

    #[test]
    fn a_far_off_print_turns_the_ladder_sparse_with_the_same_answers() {
        let mut l = RowLadder::default();
        let far = 3 * MAX_DENSE_ROWS;
        let bars: [&[(i64, f64)]; 3] =
            [&[(100, 5.0), (101, 7.0), (102, 5.0)], &[(far, 1.0)], &[(99, 2.0), (101, 1.0)]];
        for bar in bars {
            l.add_ascending(bar);
            let want = value_area_rows(&l.rows(), 0.7, VaMethod::Dalton).unwrap();
            assert_eq!(l.value_area(0.7, VaMethod::Dalton), Some(want));
        }
        assert!(matches!(l.rows, Rows::Sparse(_)));
        assert_eq!(l.rows(), vec![(99, 2.0), (100, 5.0), (101, 8.0), (102, 5.0), (far, 1.0)]);
        assert_eq!(l.total(), 21.0);
        l.clear();
        l.add(7, 1.0);
        assert_eq!(l.rows(), vec![(7, 1.0)]);
    }
}
