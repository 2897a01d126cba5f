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
//! # Exact sums
//!
//! Every volume is an exact sum ([`crate::exact::ExactSum`]) and every reading the correctly
//! rounded double of one, so a profile's levels, totals and delta are the same bits however its
//! trades were grouped and merged; POC, value area and nodes, which read those, follow.
//!
//! # Where things are
//!
//! | module | what |
//! |---|---|
//! | this one | [`Profile`]: accumulation, merging and the readings (POC, value area, nodes) |
//! | `level` | [`Level`], one row's volume by side, and the exact sums behind it |
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
use crate::exact::ExactSum;
use crate::side::Side;
use grid::{decimal_tick, same_grid, RowHash};
use level::RowSums;
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
    rows: HashMap<i64, RowSums, RowHash>,
    /// The sums of every row: the profile's totals, and the bound that keeps every row's sums
    /// in the exact range.
    sums: Totals,
}

/// Buy, sell and total volume of a whole profile, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Totals {
    buy: ExactSum,
    sell: ExactSum,
    total: ExactSum,
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
        Ok(Profile {
            tick_size,
            ticks_per_row,
            decimal: decimal_tick(tick_size),
            rows: HashMap::default(),
            sums: Totals::default(),
        })
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

    /// Adds one trade; price and size are checked as for candles. `Err` (nothing added) when
    /// the profile's total volume would leave the exact range; every row's and side's sum is
    /// part of that total, so they cannot.
    pub fn add(&mut self, price: f64, size: f64, side: Side) -> Result<(), ProfileError> {
        validate_trade(price, size)?;
        let row = self.checked_row_of(price)?;
        let out_of_range = |_| ProfileError::SumOutOfRange { what: "total volume" };
        let exact = ExactSum::from_f64(size).map_err(out_of_range)?;
        self.sums.total = self.sums.total.checked_add(exact).map_err(out_of_range)?;
        match side {
            Side::Buy => self.sums.buy.add_in_range(exact),
            Side::Sell => self.sums.sell.add_in_range(exact),
            Side::Unknown => {}
        }
        self.rows.entry(row).or_default().add(exact, side);
        Ok(())
    }

    /// Errors unless this profile is on the grid `tick_size` × `ticks_per_row`; aggregates call
    /// it when the grid arrives with every row.
    pub fn check_grid(&self, tick_size: f64, ticks_per_row: u32) -> Result<(), ProfileError> {
        same_grid((self.tick_size, self.ticks_per_row), (tick_size, ticks_per_row))
    }

    /// Adds another profile on the same grid. Exactly commutative and associative: any
    /// grouping of the same trades gives the same profile. `Err` (nothing merged) on another
    /// grid or when the total volume would leave the exact range.
    pub fn merge(&mut self, other: &Profile) -> Result<(), ProfileError> {
        self.check_grid(other.tick_size, other.ticks_per_row)?;
        let total = self
            .sums
            .total
            .checked_add(other.sums.total)
            .map_err(|_| ProfileError::SumOutOfRange { what: "total volume" })?;
        self.sums.total = total;
        self.sums.buy.add_in_range(other.sums.buy);
        self.sums.sell.add_in_range(other.sums.sell);
        for (&row, sums) in &other.rows {
            self.rows.entry(row).or_default().merge(sums);
        }
        Ok(())
    }

    /// The same trades on rows of `ticks_per_row` ticks, a multiple of this profile's: every
    /// row's exact sums go to the coarser row holding its lowest tick, so the result is the
    /// profile `add` builds from the trades on that grid, to the last bit.
    pub fn rebinned(&self, ticks_per_row: u32) -> Result<Profile, ProfileError> {
        let own = self.ticks_per_row;
        if ticks_per_row == 0 || !ticks_per_row.is_multiple_of(own) {
            return Err(ProfileError::BadParameter {
                name: "ticks_per_row",
                value: f64::from(ticks_per_row),
                rule: "a multiple of the profile's own ticks per row",
            });
        }
        let mut out = Profile::new(self.tick_size, ticks_per_row)?;
        let factor = i64::from(ticks_per_row / own);
        for (&row, sums) in &self.rows {
            out.rows.entry(row.div_euclid(factor)).or_default().merge(sums);
        }
        out.sums = self.sums;
        Ok(out)
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
        self.checked_row_of(price).ok().and_then(|r| self.rows.get(&r)).map(RowSums::level)
    }

    /// `(row, level)` for every row holding a trade, ascending.
    pub fn rows(&self) -> Vec<(i64, Level)> {
        self.sorted_sums().into_iter().map(|(r, s)| (r, s.level())).collect()
    }

    /// `(row, exact sums)` for every row holding a trade, ascending.
    fn sorted_sums(&self) -> Vec<(i64, RowSums)> {
        let mut v: Vec<(i64, RowSums)> = self.rows.iter().map(|(&r, &s)| (r, s)).collect();
        v.sort_unstable_by_key(|e| e.0);
        v
    }

    /// `(row price, level)` for every row holding a trade, ascending.
    pub fn levels(&self) -> Vec<(f64, Level)> {
        self.rows().into_iter().map(|(r, l)| (self.row_price(r), l)).collect()
    }

    /// All volume, correctly rounded from the exact sum.
    pub fn total_volume(&self) -> f64 {
        self.sums.total.to_f64()
    }

    pub fn buy_volume(&self) -> f64 {
        self.sums.buy.to_f64()
    }

    pub fn sell_volume(&self) -> f64 {
        self.sums.sell.to_f64()
    }

    /// Buy volume minus sell volume, correctly rounded from the exact difference.
    pub fn delta(&self) -> f64 {
        self.sums.buy.sub_in_range(self.sums.sell).to_f64()
    }

    /// Trades added (saturating at `i64::MAX`, which only decoded counts reach).
    pub fn trades(&self) -> i64 {
        self.rows.values().fold(0i64, |n, l| n.saturating_add(l.trades))
    }

    /// `(row, total volume)` of the rows holding volume, ascending.
    fn volume_rows(&self) -> Vec<(i64, f64)> {
        let mut v: Vec<(i64, f64)> =
            self.rows.iter().map(|(&r, s)| (r, s.total.to_f64())).filter(|e| e.1 > 0.0).collect();
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
        self.rows.iter().map(|(&r, s)| (r, s.total.to_f64()))
    }
}
