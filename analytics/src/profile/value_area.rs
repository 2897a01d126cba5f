//! The point of control and the value area: the walk outwards from the POC, shared by
//! [`super::Profile`] and the bar engine's ladder.

use super::ProfileError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How the value area grows from the POC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum VaMethod {
    /// CBOT / Dalton ("Mind Over Markets", appendix 1): compare the sum of the next two rows
    /// above with the next two below (fewer at an edge) and add the larger pair.
    #[default]
    Dalton,
    /// Compare the single next row above with the one below and add the larger.
    Single,
}

impl VaMethod {
    pub const ALL: [VaMethod; 2] = [VaMethod::Dalton, VaMethod::Single];

    pub fn as_str(self) -> &'static str {
        match self {
            VaMethod::Dalton => "dalton",
            VaMethod::Single => "single",
        }
    }

    /// Rows added per expansion step.
    pub(super) fn step(self) -> i64 {
        match self {
            VaMethod::Dalton => 2,
            VaMethod::Single => 1,
        }
    }
}

impl fmt::Display for VaMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VaMethod {
    type Err = ProfileError;

    /// Accepts `dalton` or `single`, in any case.
    fn from_str(s: &str) -> Result<VaMethod, ProfileError> {
        let wanted = s.trim();
        VaMethod::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| ProfileError::UnknownMethod(s.to_string()))
    }
}

/// The value area: the contiguous rows around the POC holding at least the requested share of
/// the volume. Prices are row prices (each row's lowest tick).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValueArea {
    pub poc: f64,
    pub vah: f64,
    pub val: f64,
    /// Volume inside `val..=vah`.
    pub volume: f64,
    /// `volume / total_volume`, a fraction in (0, 1].
    pub pct_of_total: f64,
}

/// A value area in rows: the POC row, the lowest and highest rows, the volume inside and the total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueAreaRows {
    pub poc: i64,
    pub lo: i64,
    pub hi: i64,
    pub volume: f64,
    pub total: f64,
}

/// The value area of ascending `(row, volume)` pairs with volume > 0 (what
/// [`Profile::value_area`] computes). `pct` must already be checked to lie in (0, 1].
pub fn value_area_rows(vols: &[(i64, f64)], pct: f64, method: VaMethod) -> Option<ValueAreaRows> {
    let poc = poc_row(vols)?;
    let total: f64 = vols.iter().map(|e| e.1).sum();
    Some(value_area_around(vols, poc, total, pct, method))
}

/// Row volumes as the value area walk reads them: empty rows inside the range count as zero.
/// Implemented by sorted `(row, volume)` pairs and by the bar engine's dense ladder
/// ([`crate::ladder::RowLadder`]), so both walk by the same code.
pub(crate) trait RowVolumes {
    /// The lowest and highest rows with volume; the rows must not be empty.
    fn bounds(&self) -> (i64, i64);
    /// Volume of rows `lo..=hi`, summed upwards.
    fn sum(&self, lo: i64, hi: i64) -> f64;
    /// The nearest row with volume above `row` (which lies below the highest such row).
    fn traded_above(&self, row: i64) -> i64;
    /// The nearest row with volume below `row` (which lies above the lowest such row).
    fn traded_below(&self, row: i64) -> i64;
    /// `(row, volume)` of the rows with volume, ascending.
    fn traded(&self) -> impl Iterator<Item = (i64, f64)> + '_;
}

impl RowVolumes for [(i64, f64)] {
    fn bounds(&self) -> (i64, i64) {
        (self[0].0, self[self.len() - 1].0)
    }

    fn sum(&self, lo: i64, hi: i64) -> f64 {
        let i = self.partition_point(|e| e.0 < lo);
        self[i..].iter().take_while(|e| e.0 <= hi).map(|e| e.1).sum()
    }

    fn traded_above(&self, row: i64) -> i64 {
        self[self.partition_point(|e| e.0 <= row)].0
    }

    fn traded_below(&self, row: i64) -> i64 {
        self[self.partition_point(|e| e.0 < row) - 1].0
    }

    fn traded(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.iter().copied()
    }
}

/// The value area of `vols` (as for [`value_area_rows`]) given its POC row and total volume.
pub(crate) fn value_area_around<R: RowVolumes + ?Sized>(
    vols: &R,
    poc: (i64, f64),
    total: f64,
    pct: f64,
    method: VaMethod,
) -> ValueAreaRows {
    let (lo, hi, volume) = expand(vols, poc, pct * total, method.step());
    ValueAreaRows { poc: poc.0, lo, hi, volume, total }
}

/// The POC `(row, volume)` under [`poc_beats`]; `None` when there is no volume.
pub(crate) fn poc_row<R: RowVolumes + ?Sized>(vols: &R) -> Option<(i64, f64)> {
    let mut traded = vols.traded();
    let first = traded.next()?;
    let (lo, hi) = vols.bounds();
    Some(traded.fold(first, |best, e| if poc_beats(e, best, lo + hi) { e } else { best }))
}

/// The POC order: more volume wins, then the row nearer the centre of the range (`centre2` is
/// lowest + highest row), then the lower row. A total order, so the POC can also be kept up to
/// date row by row.
pub(crate) fn poc_beats((r, v): (i64, f64), (br, bv): (i64, f64), centre2: i64) -> bool {
    let dist = |r: i64| (2 * r - centre2).unsigned_abs();
    v > bv || (v == bv && (dist(r), r) < (dist(br), br))
}

/// Grows the value area from the POC by steps of `step` rows until it holds `target`; returns
/// `(low row, high row, volume)`.
fn expand<R: RowVolumes + ?Sized>(
    vols: &R,
    (poc, poc_volume): (i64, f64),
    target: f64,
    step: i64,
) -> (i64, i64, f64) {
    let (min_row, max_row) = vols.bounds();
    let (mut lo, mut hi) = (poc, poc);
    let mut volume = poc_volume;
    // The next step on each side: its rows (fewer at an edge of the range) and their volume.
    // Only the side taken moves, so only its next step is summed again.
    let up_step = |hi: i64| {
        let n = step.min(max_row - hi);
        (n, if n > 0 { vols.sum(hi + 1, hi + n) } else { 0.0 })
    };
    let down_step = |lo: i64| {
        let n = step.min(lo - min_row);
        (n, if n > 0 { vols.sum(lo - n, lo - 1) } else { 0.0 })
    };
    let (mut up, mut down) = (up_step(hi), down_step(lo));
    while volume < target {
        let ((up_n, up_sum), (down_n, down_sum)) = (up, down);
        if up_n == 0 && down_n == 0 {
            break;
        }
        // Volumes are > 0, so a zero sum means the whole step is empty rows. Then take every
        // empty step at once: nothing changes on the other side and this side stays at zero, so
        // the same choice would be made step after step (a stray print far away must not cost
        // one iteration per empty row).
        if down_n == 0 || (up_n > 0 && up_sum >= down_sum) {
            if up_sum == 0.0 {
                hi += (vols.traded_above(hi) - 1 - hi) / step * step;
            } else {
                hi += up_n;
                volume += up_sum;
            }
            up = up_step(hi);
        } else {
            if down_sum == 0.0 {
                lo -= (lo - 1 - vols.traded_below(lo)) / step * step;
            } else {
                lo -= down_n;
                volume += down_sum;
            }
            down = down_step(lo);
        }
    }
    // A pair or a jump can end on empty rows; the area's edges are its outermost traded rows.
    let edge_lo = if vols.sum(lo, lo) > 0.0 { lo } else { vols.traded_above(lo) };
    let edge_hi = if vols.sum(hi, hi) > 0.0 { hi } else { vols.traded_below(hi) };
    (edge_lo, edge_hi, volume)
}
