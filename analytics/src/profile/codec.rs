//! The binary form (a version byte first) and the serde form of a profile.

use super::grid::MAX_TICK;
use super::{Level, Profile, ProfileError};
use serde::{Deserialize, Serialize};

impl Profile {
    /// Version of the binary form; bump when the layout changes.
    pub const VERSION: u8 = 1;
    /// version, tick_size, ticks_per_row, row count.
    pub(super) const HEADER_LEN: usize = 1 + 8 + 4 + 8;
    /// row, buy, sell, unknown, trades.
    pub(super) const ROW_LEN: usize = 5 * 8;

    /// Binary form: a version byte, tick_size (f64), ticks_per_row (u32), the row count (u64),
    /// then per row ascending: row (i64), buy, sell, unknown (f64), trades (i64); little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let rows = self.rows();
        let mut out = Vec::with_capacity(Self::HEADER_LEN + rows.len() * Self::ROW_LEN);
        out.push(Self::VERSION);
        out.extend_from_slice(&self.tick_size.to_le_bytes());
        out.extend_from_slice(&self.ticks_per_row.to_le_bytes());
        out.extend_from_slice(&(rows.len() as u64).to_le_bytes());
        for (r, l) in rows {
            out.extend_from_slice(&r.to_le_bytes());
            for v in [l.buy, l.sell, l.unknown] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&l.trades.to_le_bytes());
        }
        out
    }

    /// Reads `to_bytes` output, checking the version, the length and every value.
    pub fn from_bytes(b: &[u8]) -> Result<Profile, ProfileError> {
        let (tick_size, ticks_per_row, rows) = Self::decode(b)?;
        Profile::from_rows(tick_size, ticks_per_row, rows)
    }

    /// The grid and the rows of `to_bytes` output, after checking its version and length (the
    /// values are checked by [`check_rows`]).
    pub(super) fn decode(
        b: &[u8],
    ) -> Result<(f64, u32, impl ExactSizeIterator<Item = (i64, Level)> + '_), ProfileError> {
        let Some(&version) = b.first() else {
            return Err(ProfileError::Decode("empty input".into()));
        };
        if version != Self::VERSION {
            return Err(ProfileError::UnsupportedVersion { found: version, supported: Self::VERSION });
        }
        if b.len() < Self::HEADER_LEN {
            return Err(ProfileError::Decode(format!(
                "expected at least {} bytes, got {}",
                Self::HEADER_LEN,
                b.len()
            )));
        }
        let word = |at: usize| -> [u8; 8] { b[at..at + 8].try_into().unwrap() };
        let tick_size = f64::from_le_bytes(word(1));
        let ticks_per_row = u32::from_le_bytes(b[9..13].try_into().unwrap());
        let n = u64::from_le_bytes(word(13));
        let expected = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(Self::ROW_LEN))
            .and_then(|len| len.checked_add(Self::HEADER_LEN));
        if expected != Some(b.len()) {
            return Err(ProfileError::Decode(format!(
                "{} bytes do not hold the {n} rows announced",
                b.len()
            )));
        }
        let rows = (0..n as usize).map(move |i| {
            let at = Self::HEADER_LEN + i * Self::ROW_LEN;
            let f = |j: usize| f64::from_le_bytes(word(at + 8 * j));
            let level =
                Level { buy: f(1), sell: f(2), unknown: f(3), trades: i64::from_le_bytes(word(at + 32)) };
            (i64::from_le_bytes(word(at)), level)
        });
        Ok((tick_size, ticks_per_row, rows))
    }

    /// Rebuilds a profile from ascending rows, refusing anything `add` could not have produced.
    pub(super) fn from_rows(
        tick_size: f64,
        ticks_per_row: u32,
        rows: impl IntoIterator<Item = (i64, Level)>,
    ) -> Result<Profile, ProfileError> {
        let mut p = Profile::new(tick_size, ticks_per_row)?;
        check_rows(ticks_per_row, rows, |row, level| {
            p.rows.insert(row, level);
        })?;
        Ok(p)
    }
}

/// Hands each row to `keep` after checking that rows are strictly ascending, on the grid, and
/// hold what `add` could have produced.
pub(super) fn check_rows(
    ticks_per_row: u32,
    rows: impl IntoIterator<Item = (i64, Level)>,
    mut keep: impl FnMut(i64, Level),
) -> Result<(), ProfileError> {
    let max_row = (MAX_TICK as i64) / i64::from(ticks_per_row) + 1;
    let mut prev: Option<i64> = None;
    for (row, level) in rows {
        if prev.is_some_and(|p| p >= row) {
            return Err(ProfileError::Decode(format!("rows must be strictly ascending; row {row} is not")));
        }
        if row.unsigned_abs() > max_row as u64 {
            return Err(ProfileError::Decode(format!("row {row} is outside the grid")));
        }
        if !level.is_valid() {
            return Err(ProfileError::Decode(format!(
                "row {row}: volumes must be finite and >= 0 and trades >= 0, got {level:?}"
            )));
        }
        keep(row, level);
        prev = Some(row);
    }
    Ok(())
}

/// The serde form: the grid and ascending rows, so serialized output is deterministic.
#[derive(Serialize, Deserialize)]
pub(super) struct ProfileRepr {
    tick_size: f64,
    ticks_per_row: u32,
    rows: Vec<(i64, Level)>,
}

impl From<Profile> for ProfileRepr {
    fn from(p: Profile) -> Self {
        ProfileRepr { tick_size: p.tick_size, ticks_per_row: p.ticks_per_row, rows: p.rows() }
    }
}

impl TryFrom<ProfileRepr> for Profile {
    type Error = ProfileError;

    fn try_from(r: ProfileRepr) -> Result<Self, Self::Error> {
        Profile::from_rows(r.tick_size, r.ticks_per_row, r.rows)
    }
}
