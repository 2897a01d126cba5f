//! The price grid: a price's integer tick, its row, and a row's price (see the module
//! documentation of [`super`]).

use super::{Profile, ProfileError};
use std::hash::{BuildHasher, Hasher};

/// Largest tick index accepted: beyond 2^53 neighbouring ticks are no longer distinct doubles.
pub(super) const MAX_TICK: f64 = 9_007_199_254_740_992.0;

/// Exact powers of ten for decimal tick sizes down to 1e-10.
pub(super) const POW10: [f64; 11] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];

impl Profile {
    /// The row of `price`; `Err` when the tick index is not finite or beyond 2^53.
    pub fn checked_row_of(&self, price: f64) -> Result<i64, ProfileError> {
        let tick = (price / self.tick_size).round();
        if tick.is_nan() || tick.abs() > MAX_TICK {
            return Err(ProfileError::PriceOutOfRange { price, tick_size: self.tick_size });
        }
        Ok((tick as i64).div_euclid(i64::from(self.ticks_per_row)))
    }

    /// The row of `price`. For prices `add` accepts this is exact; other inputs follow Rust's
    /// saturating float-to-integer conversion (NaN lands on row 0).
    pub fn row_of(&self, price: f64) -> i64 {
        (((price / self.tick_size).round()) as i64).div_euclid(i64::from(self.ticks_per_row))
    }

    /// The price of a row: its lowest tick.
    pub fn row_price(&self, row: i64) -> f64 {
        let tick = i128::from(row) * i128::from(self.ticks_per_row);
        if let Some((m, k)) = self.decimal {
            let n = tick * i128::from(m);
            if n.unsigned_abs() <= 1 << 53 {
                return n as f64 / POW10[k];
            }
        }
        tick as f64 * self.tick_size
    }
}

/// Errors unless grids `a` and `b` (tick size, ticks per row) are the same.
pub(super) fn same_grid(a: (f64, u32), b: (f64, u32)) -> Result<(), ProfileError> {
    if a.0.to_bits() == b.0.to_bits() && a.1 == b.1 {
        return Ok(());
    }
    Err(ProfileError::GridMismatch {
        tick_size: a.0,
        ticks_per_row: a.1,
        other_tick_size: b.0,
        other_ticks_per_row: b.1,
    })
}

/// `(m, k)` with `m / 10^k == tick` exactly, for the smallest such `k`.
pub(super) fn decimal_tick(tick: f64) -> Option<(i64, usize)> {
    POW10.iter().enumerate().find_map(|(k, &p)| {
        let m = (tick * p).round();
        ((1.0..=MAX_TICK).contains(&m) && m / p == tick).then_some((m as i64, k))
    })
}

/// Hashes row numbers for the accumulation map. Rows are small integers picked by the market,
/// not by an adversary, so SipHash's flooding resistance buys nothing and would cost a large
/// share of the per-trade time of a 10-million-row aggregate.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RowHash;

impl BuildHasher for RowHash {
    type Hasher = RowHasher;

    fn build_hasher(&self) -> RowHasher {
        RowHasher(0)
    }
}

pub(super) struct RowHasher(u64);

impl Hasher for RowHasher {
    fn finish(&self) -> u64 {
        // Multiply to spread the bits upwards, then fold the high half down: the table indexes
        // with the low bits, which must not all be equal for rows that are multiples of 2^k.
        let h = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_i64(&mut self, n: i64) {
        self.0 = self.0.rotate_left(32) ^ n as u64;
    }
}
