//! Volume profile: traded volume by price row, with point of control (POC), value area and
//! high/low volume nodes.
//!
//! A `Profile` is the state of `tapeflow.profile_agg`. It is accumulated trade by trade in a
//! hash map keyed by integer row and merged in any order, so the aggregate is parallel safe and
//! `rollup()` can combine stored profiles into any larger one. Readers (POC, value area, nodes)
//! sort the rows when they need them; a profile has thousands of rows, not millions of trades.
//!
//! # The price grid
//!
//! A trade at `price` falls on the integer tick `t = round(price / tick_size)` (halves away from
//! zero, as `f64::round`) and on the row `r = floor(t / ticks_per_row)` (Euclidean division, so
//! negative ticks floor too). A row's price is its *lowest* tick, `r × ticks_per_row ×
//! tick_size`: with a 0.25 tick and 4 ticks per row, trades at 100.00, 100.25, 100.50 and
//! 100.75 all land on the row priced 100.00. The whole size of a trade goes to one row, so the
//! levels always add up to exactly the volume that was added.
//!
//! When the tick size is a short decimal (0.01, 0.25, 0.0001, ...) row prices are computed as
//! `integer / 10^k`, which is the double nearest to the decimal price: the row of 0.3 on a 0.1
//! tick is priced `0.3`, not `3.0 × 0.1 = 0.30000000000000004`.
//!
//! # Range
//!
//! The profile's range runs from the lowest to the highest row holding volume. Rows inside the
//! range that saw no volume are part of it as zero rows; rows holding only zero-size trades are
//! kept in `levels()` but do not widen the range.
//!
//! # Where things are
//!
//! | module | what |
//! |---|---|
//! | this one | [`Profile`]: accumulation, merging and the readings (POC, value area, nodes) |
//! | `level` | [`Level`], one row's volume by side |
//! | `grid` | the price grid: ticks, rows, row prices |
//! | `value_area` | [`VaMethod`], the POC and value-area walk |
//! | `nodes` | high and low volume node detection |
//! | `codec` | the binary form (with its version byte) and the serde form |
//! | `bar` | [`BarProfile`], the compact form the bar engine reads |
//! | `error` | [`ProfileError`] |

mod bar;
mod codec;
mod error;
mod grid;
mod level;
mod nodes;
#[cfg(test)]
mod tests;
mod value_area;

pub use bar::BarProfile;
pub use error::ProfileError;
pub use level::Level;
pub use nodes::{node_rows, NodeParams, Nodes, MAX_NODE_ROWS};
pub(crate) use value_area::{poc_beats, poc_row, value_area_around, RowVolumes};
pub use value_area::{value_area_rows, VaMethod, ValueArea, ValueAreaRows};

use crate::candle::validate_trade;
use crate::side::Side;
use grid::{decimal_tick, same_grid, RowHash};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Volume by price row on a fixed grid; see the module documentation for the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "codec::ProfileRepr", into = "codec::ProfileRepr")]
pub struct Profile {
    tick_size: f64,
    ticks_per_row: u32,
    /// `tick_size == m / 10^k` as `(m, k)`, when the tick is a short decimal.
    decimal: Option<(i64, usize)>,
    rows: HashMap<i64, Level, RowHash>,
}

impl Profile {
    /// An empty profile. `tick_size` must be finite and > 0, `ticks_per_row` >= 1.
    pub fn new(tick_size: f64, ticks_per_row: u32) -> Result<Profile, ProfileError> {
        if !(tick_size.is_finite() && tick_size > 0.0) {
            return Err(ProfileError::BadParameter {
                name: "tick_size",
                value: tick_size,
                rule: "a finite number > 0",
            });
        }
        if ticks_per_row == 0 {
            return Err(ProfileError::BadParameter {
                name: "ticks_per_row",
                value: 0.0,
                rule: "an integer >= 1",
            });
        }
        Ok(Profile { tick_size, ticks_per_row, decimal: decimal_tick(tick_size), rows: HashMap::default() })
    }

    /// A profile of `(price, size, side)` trades.
    pub fn from_trades<I>(tick_size: f64, ticks_per_row: u32, trades: I) -> Result<Profile, ProfileError>
    where
        I: IntoIterator<Item = (f64, f64, Side)>,
    {
        let mut p = Profile::new(tick_size, ticks_per_row)?;
        for (price, size, side) in trades {
            p.add(price, size, side)?;
        }
        Ok(p)
    }

    pub fn tick_size(&self) -> f64 {
        self.tick_size
    }

    pub fn ticks_per_row(&self) -> u32 {
        self.ticks_per_row
    }

    /// Adds one trade; price and size are checked as for candles.
    pub fn add(&mut self, price: f64, size: f64, side: Side) -> Result<(), ProfileError> {
        validate_trade(price, size)?;
        let row = self.checked_row_of(price)?;
        self.rows.entry(row).or_default().add(size, side);
        Ok(())
    }

    /// Errors unless this profile is on the grid `tick_size` × `ticks_per_row`; aggregates call
    /// it when the grid arrives with every row.
    pub fn check_grid(&self, tick_size: f64, ticks_per_row: u32) -> Result<(), ProfileError> {
        same_grid((self.tick_size, self.ticks_per_row), (tick_size, ticks_per_row))
    }

    /// Adds another profile on the same grid. Commutative and associative (exactly so while
    /// the volumes are integers below 2^53; otherwise up to floating-point rounding).
    pub fn merge(&mut self, other: &Profile) -> Result<(), ProfileError> {
        self.check_grid(other.tick_size, other.ticks_per_row)?;
        for (&row, level) in &other.rows {
            self.rows.entry(row).or_default().merge(level);
        }
        Ok(())
    }

    /// True when no trade was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Number of rows holding at least one trade.
    pub fn row_count(&self) -> usize {
        self.rows.len()
    }

    /// The level at `price`'s row, if any trade landed there.
    pub fn level_at(&self, price: f64) -> Option<Level> {
        self.checked_row_of(price).ok().and_then(|r| self.rows.get(&r).copied())
    }

    /// `(row, level)` for every row holding a trade, ascending.
    pub fn rows(&self) -> Vec<(i64, Level)> {
        let mut v: Vec<(i64, Level)> = self.rows.iter().map(|(&r, &l)| (r, l)).collect();
        v.sort_unstable_by_key(|e| e.0);
        v
    }

    /// `(row price, level)` for every row holding a trade, ascending.
    pub fn levels(&self) -> Vec<(f64, Level)> {
        self.rows().into_iter().map(|(r, l)| (self.row_price(r), l)).collect()
    }

    /// Sums in row order, so equal profiles give bit-identical sums however they were built.
    fn sum_by(&self, f: impl Fn(&Level) -> f64) -> f64 {
        self.rows().iter().map(|(_, l)| f(l)).sum()
    }

    pub fn total_volume(&self) -> f64 {
        self.sum_by(Level::total)
    }

    pub fn buy_volume(&self) -> f64 {
        self.sum_by(|l| l.buy)
    }

    pub fn sell_volume(&self) -> f64 {
        self.sum_by(|l| l.sell)
    }

    /// Buy volume minus sell volume.
    pub fn delta(&self) -> f64 {
        self.sum_by(Level::delta)
    }

    /// Trades added (saturating at `i64::MAX`, which only decoded counts reach).
    pub fn trades(&self) -> i64 {
        self.rows.values().fold(0i64, |n, l| n.saturating_add(l.trades))
    }

    /// `(row, total volume)` of the rows holding volume, ascending.
    fn volume_rows(&self) -> Vec<(i64, f64)> {
        let mut v: Vec<(i64, f64)> =
            self.rows.iter().map(|(&r, l)| (r, l.total())).filter(|e| e.1 > 0.0).collect();
        v.sort_unstable_by_key(|e| e.0);
        v
    }

    /// Prices of the lowest and highest rows holding volume.
    pub fn range(&self) -> Option<(f64, f64)> {
        let v = self.volume_rows();
        Some((self.row_price(v.first()?.0), self.row_price(v.last()?.0)))
    }

    /// Row of the point of control; see [`Profile::poc`].
    pub fn poc_row(&self) -> Option<i64> {
        poc_row(self.volume_rows().as_slice()).map(|p| p.0)
    }

    /// Price of the row with the most volume. Ties go to the row nearest the centre of the
    /// range, `(lowest row + highest row) / 2`, and equidistant rows to the lower price.
    /// `None` when the profile holds no volume.
    pub fn poc(&self) -> Option<f64> {
        self.poc_row().map(|r| self.row_price(r))
    }

    /// The value area holding `pct` of the volume, or `None` when `pct` is not in (0, 1] or the
    /// profile holds no volume. See [`Profile::try_value_area`].
    pub fn value_area(&self, pct: f64, method: VaMethod) -> Option<ValueArea> {
        self.try_value_area(pct, method).ok().flatten()
    }

    /// The value area holding at least `pct` (a fraction in (0, 1]; 0.7 for 70%) of the volume.
    ///
    /// It starts at the POC and grows by whole steps until it holds `pct × total`: one row per
    /// step with [`VaMethod::Single`], two with [`VaMethod::Dalton`] (fewer at an edge of the
    /// range). Each step compares the volume of the next step above with the next step below
    /// and takes the larger; **a tie goes up**; a side with no rows left is never taken. Empty
    /// rows inside the range count as zero; VAH and VAL are the highest and lowest rows *with
    /// volume* in the area (a step can end on empty rows). Because steps add whole rows the area
    /// usually holds more than `pct`; with `pct = 1` it is the whole range.
    ///
    /// `Ok(None)` when the profile holds no volume; `Err` when `pct` is out of range.
    pub fn try_value_area(&self, pct: f64, method: VaMethod) -> Result<Option<ValueArea>, ProfileError> {
        if !(pct > 0.0 && pct <= 1.0) {
            return Err(ProfileError::BadParameter {
                name: "value area pct",
                value: pct,
                rule: "a fraction in (0, 1] (0.7 means 70%)",
            });
        }
        let vols = self.volume_rows();
        Ok(value_area_rows(&vols, pct, method).map(|r| ValueArea {
            poc: self.row_price(r.poc),
            vah: self.row_price(r.hi),
            val: self.row_price(r.lo),
            volume: r.volume,
            pct_of_total: r.volume / r.total,
        }))
    }

    /// High volume node prices; empty when `p` is invalid. See [`Profile::nodes`].
    pub fn hvns(&self, p: &NodeParams) -> Vec<f64> {
        self.nodes(p).map(|n| n.hvns).unwrap_or_default()
    }

    /// Low volume node prices; empty when `p` is invalid. See [`Profile::nodes`].
    pub fn lvns(&self, p: &NodeParams) -> Vec<f64> {
        self.nodes(p).map(|n| n.lvns).unwrap_or_default()
    }

    /// High and low volume nodes.
    ///
    /// 1. The range's row volumes (empty rows are zero) are smoothed by a centred moving average
    ///    of `smooth_rows` rows, truncated at the edges of the range.
    /// 2. A *peak* is a row, or a run of equal rows, strictly above both neighbours; the rows
    ///    outside the range count as zero. Its *prominence* is its height minus the higher of
    ///    its two bases, a base being the lowest point between the peak and the nearest strictly
    ///    higher row on that side (zero, when there is none). Peaks whose prominence is below
    ///    `min_prominence ×` their height are noise and are dropped.
    /// 3. An **HVN** is a remaining peak whose smoothed volume is at least `hvn_ratio ×` the mean
    ///    row volume of the range (total / rows in the range). A run reports its middle row (the
    ///    lower middle for an even run).
    /// 4. Between each two neighbouring HVNs, the lowest smoothed row is an **LVN** when it is at
    ///    most `lvn_ratio ×` the lower of the two HVNs. Among equal lowest rows the one nearest
    ///    the midpoint of the two HVNs is taken, the lower on a tie.
    ///
    /// So a single bell has one HVN and no LVN, and a bimodal profile has two HVNs with one LVN
    /// in the trough between them. Ranges wider than [`MAX_NODE_ROWS`] rows have no nodes.
    pub fn nodes(&self, p: &NodeParams) -> Result<Nodes, ProfileError> {
        p.validate()?;
        let (hvns, lvns) = node_rows(&self.volume_rows(), p);
        let price = |r: &i64| self.row_price(*r);
        Ok(Nodes { hvns: hvns.iter().map(price).collect(), lvns: lvns.iter().map(price).collect() })
    }

    /// Row volumes, unsorted (with zero-volume rows), for callers that keep their own order.
    pub fn row_totals(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.rows.iter().map(|(&r, l)| (r, l.total()))
    }
}
