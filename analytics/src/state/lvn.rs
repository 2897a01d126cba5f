//! Proximity of the price to a low-volume node.

use serde::{Deserialize, Serialize};

/// The low-volume node nearest to the price, when it is close enough to matter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LvnProximity {
    /// Price of the LVN.
    pub lvn: f64,
    /// |price − lvn| / price × 100.
    pub distance_pct: f64,
    /// True when the LVN is above the price (price would move up into it).
    pub above: bool,
}

/// The LVN of `lvns` nearest to `price` if it lies within `within_pct` percent of the price.
/// Equidistant LVNs resolve to the lower one, so the answer never depends on list order.
pub fn nearest_lvn(price: f64, lvns: &[f64], within_pct: f64) -> Option<LvnProximity> {
    if !(price > 0.0 && price.is_finite()) {
        return None;
    }
    lvns.iter()
        .filter(|l| l.is_finite())
        .map(|&lvn| LvnProximity {
            lvn,
            distance_pct: (price - lvn).abs() / price * 100.0,
            above: lvn > price,
        })
        .filter(|x| x.distance_pct <= within_pct)
        .min_by(|a, b| a.distance_pct.total_cmp(&b.distance_pct).then(a.lvn.total_cmp(&b.lvn)))
}
