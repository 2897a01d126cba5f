//! High and low volume nodes; see [`super::Profile::nodes`].

use super::ProfileError;
use serde::{Deserialize, Serialize};

/// Node detection works on a dense copy of the range. A range wider than this (a stray print
/// far from the market, a tick size far too small for the instrument) yields no nodes instead of
/// allocating gigabytes; coarsen such profiles with `ticks_per_row`.
pub const MAX_NODE_ROWS: i64 = 1 << 20;

/// Parameters of high and low volume node detection; see [`Profile::nodes`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NodeParams {
    /// Width in rows of the centred moving average applied before looking for peaks (1 = no
    /// smoothing; an even width is widened by one row to stay centred). Default 3.
    pub smooth_rows: u32,
    /// An HVN's smoothed volume is at least this multiple of the mean row volume. Default 1.25.
    pub hvn_ratio: f64,
    /// An LVN's smoothed volume is at most this fraction of the lower of the two HVNs around it.
    /// Default 0.5.
    pub lvn_ratio: f64,
    /// A peak counts only if its prominence is at least this fraction of its own smoothed
    /// volume; this is what ignores row-to-row noise. Default 0.25.
    pub min_prominence: f64,
}

impl Default for NodeParams {
    fn default() -> Self {
        NodeParams { smooth_rows: 3, hvn_ratio: 1.25, lvn_ratio: 0.5, min_prominence: 0.25 }
    }
}

impl NodeParams {
    pub fn validate(&self) -> Result<(), ProfileError> {
        let bad = |name, value, rule| Err(ProfileError::BadParameter { name, value, rule });
        if !(1..=999).contains(&self.smooth_rows) {
            return bad("smooth_rows", self.smooth_rows as f64, "an integer in 1..=999");
        }
        if !(self.hvn_ratio.is_finite() && self.hvn_ratio >= 0.0) {
            return bad("hvn_ratio", self.hvn_ratio, "a finite number >= 0");
        }
        if !(0.0..=1.0).contains(&self.lvn_ratio) {
            return bad("lvn_ratio", self.lvn_ratio, "a fraction in [0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_prominence) {
            return bad("min_prominence", self.min_prominence, "a fraction in [0, 1]");
        }
        Ok(())
    }
}

/// High and low volume node prices, ascending.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Nodes {
    pub hvns: Vec<f64>,
    pub lvns: Vec<f64>,
}

/// Index in `vols` (ascending, volume rows only) of the POC under the documented tie rules.
/// HVN and LVN rows (see [`Profile::nodes`]) of ascending `(row, volume)` pairs with volume > 0;
/// `p` must already be validated.
pub fn node_rows(vols: &[(i64, f64)], p: &NodeParams) -> (Vec<i64>, Vec<i64>) {
    let (Some(&(first, _)), Some(&(last, _))) = (vols.first(), vols.last()) else {
        return (Vec::new(), Vec::new());
    };
    let span = last - first + 1;
    if span > MAX_NODE_ROWS {
        return (Vec::new(), Vec::new());
    }
    let mut v = vec![0.0; span as usize];
    for &(r, x) in vols {
        v[(r - first) as usize] = x;
    }
    let mean = vols.iter().map(|e| e.1).sum::<f64>() / span as f64;
    let s = smooth(&v, (p.smooth_rows / 2) as usize);
    let hvns: Vec<usize> =
        peaks(&s, p.min_prominence).into_iter().filter(|&i| s[i] >= p.hvn_ratio * mean).collect();
    let lvns: Vec<usize> = hvns.windows(2).filter_map(|w| valley(&s, w[0], w[1], p.lvn_ratio)).collect();
    let row = |i: &usize| first + *i as i64;
    (hvns.iter().map(row).collect(), lvns.iter().map(row).collect())
}

/// Centred moving average over `2 × half + 1` rows, truncated at the edges so that the first
/// and last rows are not dragged towards zero.
fn smooth(v: &[f64], half: usize) -> Vec<f64> {
    (0..v.len())
        .map(|i| {
            let (a, b) = (i.saturating_sub(half), (i + half + 1).min(v.len()));
            v[a..b].iter().sum::<f64>() / (b - a) as f64
        })
        .collect()
}

/// Peaks of `s` with prominence >= `min_prominence` × height; see [`Profile::nodes`].
fn peaks(s: &[f64], min_prominence: f64) -> Vec<usize> {
    let left = bases(s.iter().copied());
    let mut right = bases(s.iter().rev().copied());
    right.reverse();
    let mut out = Vec::new();
    let mut a = 0;
    while a < s.len() {
        let mut b = a;
        while b + 1 < s.len() && s[b + 1] == s[a] {
            b += 1;
        }
        let before = if a == 0 { 0.0 } else { s[a - 1] };
        let after = if b + 1 == s.len() { 0.0 } else { s[b + 1] };
        if s[a] > before && s[a] > after {
            let prominence = s[a] - left[a].max(right[b]);
            if prominence >= min_prominence * s[a] {
                out.push((a + b) / 2);
            }
        }
        a = b + 1;
    }
    out
}

/// For each point, the lowest value between it and the nearest strictly higher point before it
/// (itself included), or 0 when there is none: the edge of the profile is zero volume.
/// A stack of decreasing values, each holding the minimum since the entry under it, makes this
/// linear.
fn bases(s: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut stack: Vec<(f64, f64)> = Vec::new();
    let mut out = Vec::new();
    for x in s {
        let mut low = x;
        while let Some(&(top, seg_low)) = stack.last() {
            if top > x {
                break;
            }
            low = low.min(seg_low);
            stack.pop();
        }
        out.push(if stack.is_empty() { 0.0 } else { low });
        stack.push((x, low));
    }
    out
}

/// The LVN between neighbouring HVNs at `a < b`, if the trough is deep enough.
fn valley(s: &[f64], a: usize, b: usize, lvn_ratio: f64) -> Option<usize> {
    let low = s[a + 1..b].iter().copied().fold(f64::INFINITY, f64::min);
    if low > lvn_ratio * s[a].min(s[b]) {
        return None;
    }
    (a + 1..b).filter(|&i| s[i] == low).min_by_key(|&i| ((2 * i).abs_diff(a + b), i))
}
