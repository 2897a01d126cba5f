//! [`BarProfile`]: a profile reduced to what the bar engine reads from one bar.

use super::grid::same_grid;
use super::{Profile, ProfileError};

/// A profile reduced to what the bar engine reads from one bar: its grid, each row's volume
/// (ascending) and the classified buy and sell volume. A [`Profile`] keeps a hash map per bar;
/// this keeps a short array, which matters when a backtest holds millions of bars. Its values
/// are the correctly rounded exact sums, as the profile reads them; [`BarProfile::merge`] adds
/// those doubles (commutative, not associative: the engine merges in time order).
#[derive(Debug, Clone, PartialEq)]
pub struct BarProfile {
    tick_size: f64,
    ticks_per_row: u32,
    rows: Box<[(i64, f64)]>,
    buy: f64,
    sell: f64,
}

impl BarProfile {
    /// Decodes [`Profile::to_bytes`] output with the same checks as [`Profile::from_bytes`],
    /// without building the profile.
    pub fn from_bytes(b: &[u8]) -> Result<BarProfile, ProfileError> {
        let d = Profile::decode(b)?;
        Ok(BarProfile {
            tick_size: d.grid.tick_size,
            ticks_per_row: d.grid.ticks_per_row,
            rows: d.rows.iter().map(|(r, s)| (*r, s.total.to_f64())).collect(),
            buy: d.totals.buy.to_f64(),
            sell: d.totals.sell.to_f64(),
        })
    }

    /// Errors unless this profile is on the grid `tick_size` × `ticks_per_row`.
    pub fn check_grid(&self, tick_size: f64, ticks_per_row: u32) -> Result<(), ProfileError> {
        same_grid((self.tick_size, self.ticks_per_row), (tick_size, ticks_per_row))
    }

    /// `(row, volume)` of every row, ascending.
    pub fn rows(&self) -> &[(i64, f64)] {
        &self.rows
    }

    pub fn buy_volume(&self) -> f64 {
        self.buy
    }

    pub fn sell_volume(&self) -> f64 {
        self.sell
    }

    /// Adds another bar profile on the same grid (row volumes and buy/sell add).
    pub fn merge(&mut self, other: &BarProfile) -> Result<(), ProfileError> {
        self.check_grid(other.tick_size, other.ticks_per_row)?;
        let mut rows: Vec<(i64, f64)> = self.rows.iter().chain(other.rows.iter()).copied().collect();
        rows.sort_by_key(|e| e.0);
        rows.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 += later.1;
            }
            same
        });
        self.rows = rows.into();
        self.buy += other.buy;
        self.sell += other.sell;
        Ok(())
    }
}

impl From<&Profile> for BarProfile {
    /// The same rows, totals and sums as [`BarProfile::from_bytes`] of the profile's bytes.
    fn from(p: &Profile) -> BarProfile {
        BarProfile {
            tick_size: p.tick_size,
            ticks_per_row: p.ticks_per_row,
            rows: p.sorted_sums().iter().map(|(r, s)| (*r, s.total.to_f64())).collect(),
            buy: p.buy_volume(),
            sell: p.sell_volume(),
        }
    }
}
