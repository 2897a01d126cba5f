//! The binary form (a version byte first) and the serde form of a profile.
//!
//! | version | rows |
//! |---|---|
//! | 1 | row (i64), buy, sell, unknown (f64), trades (i64): 40 bytes |
//! | 2 | row (i64), trades (i64), then the exact buy, sell and unknown sums in [`ExactSum::write`]'s compact form |
//!
//! Both start with the same header: the version byte, tick_size (f64), ticks_per_row (u32) and
//! the row count (u64), little-endian. This build writes version 2 and reads both; a version 1
//! value reads as the exact values of its doubles, so every stored row reads back as it was.

use super::grid::MAX_TICK;
use super::level::RowSums;
use super::{Level, Profile, ProfileError, Totals};
use crate::candle::{exact_from_text, exact_text};
use crate::exact::ExactSum;
use serde::{Deserialize, Serialize};

/// A decoded profile's grid and rows, checked.
pub(super) struct Decoded {
    /// Empty, on the decoded grid.
    pub(super) grid: Profile,
    /// Ascending.
    pub(super) rows: Vec<(i64, RowSums)>,
    pub(super) totals: Totals,
}

impl Profile {
    /// Version of the binary form; bump when the layout changes (and keep reading the old one).
    pub const VERSION: u8 = 2;
    /// version, tick_size, ticks_per_row, row count.
    pub(super) const HEADER_LEN: usize = 1 + 8 + 4 + 8;
    /// A version 1 row: row, buy, sell, unknown, trades.
    pub(super) const V1_ROW_LEN: usize = 5 * 8;
    /// The shortest version 2 row: row, trades and three zero sums.
    const V2_MIN_ROW_LEN: usize = 2 * 8 + 3;

    /// Binary form, version 2; see the module documentation.
    pub fn to_bytes(&self) -> Vec<u8> {
        let rows = self.sorted_sums();
        let mut out = Vec::with_capacity(Self::HEADER_LEN + rows.len() * 32);
        out.push(Self::VERSION);
        out.extend_from_slice(&self.tick_size.to_le_bytes());
        out.extend_from_slice(&self.ticks_per_row.to_le_bytes());
        out.extend_from_slice(&(rows.len() as u64).to_le_bytes());
        for (r, s) in rows {
            out.extend_from_slice(&r.to_le_bytes());
            out.extend_from_slice(&s.trades.to_le_bytes());
            for v in [s.buy, s.sell, s.unknown()] {
                v.write(&mut out);
            }
        }
        out
    }

    /// Reads `to_bytes` output of this version or version 1, checking the version, the length
    /// and every value.
    pub fn from_bytes(b: &[u8]) -> Result<Profile, ProfileError> {
        Self::decode(b).map(Decoded::into_profile)
    }

    /// The grid and rows of `to_bytes` output (either version), checked as [`Profile::from_bytes`]
    /// documents.
    pub(super) fn decode(b: &[u8]) -> Result<Decoded, ProfileError> {
        let Some(&version) = b.first() else {
            return Err(ProfileError::Decode("empty input".into()));
        };
        if version != 1 && version != Self::VERSION {
            return Err(ProfileError::UnsupportedVersion { found: version, supported: Self::VERSION });
        }
        if b.len() < Self::HEADER_LEN {
            return Err(ProfileError::Decode(format!(
                "expected at least {} bytes, got {}",
                Self::HEADER_LEN,
                b.len()
            )));
        }
        let word = |at: usize| -> [u8; 8] { b[at..at + 8].try_into().expect("8 bytes") };
        let tick_size = f64::from_le_bytes(word(1));
        let ticks_per_row = u32::from_le_bytes(b[9..13].try_into().expect("4 bytes"));
        let n = u64::from_le_bytes(word(13));
        let announced =
            || ProfileError::Decode(format!("{} bytes do not hold the {n} rows announced", b.len()));
        let row_len = if version == 1 { Self::V1_ROW_LEN } else { Self::V2_MIN_ROW_LEN };
        let least = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(row_len))
            .and_then(|len| len.checked_add(Self::HEADER_LEN))
            .ok_or_else(announced)?;
        if least > b.len() || (version == 1 && least != b.len()) {
            return Err(announced());
        }
        let grid = Profile::new(tick_size, ticks_per_row)?;
        let mut rows = Vec::with_capacity(n as usize);
        let mut at = Self::HEADER_LEN;
        for _ in 0..n {
            let (row, sums) = if version == 1 {
                let row = i64::from_le_bytes(word(at));
                let f = |j: usize| f64::from_le_bytes(word(at + 8 * j));
                let (buy, sell, unknown, trades) = (f(1), f(2), f(3), i64::from_le_bytes(word(at + 32)));
                at += Self::V1_ROW_LEN;
                let bad = || {
                    ProfileError::Decode(format!(
                        "row {row}: volumes must be finite and >= 0 and trades >= 0, got buy {buy}, sell {sell}, \
                         unknown {unknown}, trades {trades}"
                    ))
                };
                let exact =
                    |x: f64| if x >= 0.0 { ExactSum::from_f64(x).map_err(|_| bad()) } else { Err(bad()) };
                let sums = RowSums::from_parts(exact(buy)?, exact(sell)?, exact(unknown)?, trades)
                    .ok_or_else(bad)?;
                (row, sums)
            } else {
                if at + 16 > b.len() {
                    return Err(announced());
                }
                let (row, trades) = (i64::from_le_bytes(word(at)), i64::from_le_bytes(word(at + 8)));
                at += 16;
                let mut next = || {
                    ExactSum::read(b, &mut at).map_err(|e| ProfileError::Decode(format!("row {row}: {e}")))
                };
                let (buy, sell, unknown) = (next()?, next()?, next()?);
                let sums = RowSums::from_parts(buy, sell, unknown, trades).ok_or_else(|| {
                    ProfileError::Decode(format!(
                        "row {row}: volumes must be >= 0 and trades >= 0, got buy {buy}, sell {sell}, unknown \
                         {unknown}, trades {trades}"
                    ))
                })?;
                (row, sums)
            };
            rows.push((row, sums));
        }
        if at != b.len() {
            return Err(announced());
        }
        let totals = check_rows(ticks_per_row, &rows)?;
        Ok(Decoded { grid, rows, totals })
    }
}

impl Decoded {
    pub(super) fn into_profile(self) -> Profile {
        let mut p = self.grid;
        p.rows.extend(self.rows);
        p.sums = self.totals;
        p
    }
}

/// Checks that rows are strictly ascending and on the grid, and that their total stays in the
/// exact range; returns the profile's totals.
fn check_rows(ticks_per_row: u32, rows: &[(i64, RowSums)]) -> Result<Totals, ProfileError> {
    let max_row = (MAX_TICK as i64) / i64::from(ticks_per_row) + 1;
    let mut prev: Option<i64> = None;
    let mut totals = Totals::default();
    for &(row, sums) in rows {
        if prev.is_some_and(|p| p >= row) {
            return Err(ProfileError::Decode(format!("rows must be strictly ascending; row {row} is not")));
        }
        if row.unsigned_abs() > max_row as u64 {
            return Err(ProfileError::Decode(format!("row {row} is outside the grid")));
        }
        totals.total = totals
            .total
            .checked_add(sums.total)
            .map_err(|_| ProfileError::SumOutOfRange { what: "total volume" })?;
        totals.buy.add_in_range(sums.buy);
        totals.sell.add_in_range(sums.sell);
        prev = Some(row);
    }
    Ok(totals)
}

/// The serde form: the grid and ascending rows, so serialized output is deterministic. A row
/// shows its volumes as numbers, and in `exact` (hexadecimal fixed point) those whose number is
/// not the exact sum; input without `exact` takes the numbers as exact.
#[derive(Serialize, Deserialize)]
pub(super) struct ProfileRepr {
    tick_size: f64,
    ticks_per_row: u32,
    rows: Vec<(i64, LevelRepr)>,
}

#[derive(Serialize, Deserialize)]
struct LevelRepr {
    buy: f64,
    sell: f64,
    unknown: f64,
    trades: i64,
    #[serde(default, skip_serializing_if = "ExactLevel::is_empty")]
    exact: ExactLevel,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExactLevel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    buy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sell: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unknown: Option<String>,
}

impl ExactLevel {
    fn is_empty(&self) -> bool {
        self.buy.is_none() && self.sell.is_none() && self.unknown.is_none()
    }
}

impl From<Profile> for ProfileRepr {
    fn from(p: Profile) -> Self {
        let rows = p
            .sorted_sums()
            .into_iter()
            .map(|(r, s)| {
                let l: Level = s.level();
                let exact = ExactLevel {
                    buy: exact_text(s.buy),
                    sell: exact_text(s.sell),
                    unknown: exact_text(s.unknown()),
                };
                (r, LevelRepr { buy: l.buy, sell: l.sell, unknown: l.unknown, trades: l.trades, exact })
            })
            .collect();
        ProfileRepr { tick_size: p.tick_size, ticks_per_row: p.ticks_per_row, rows }
    }
}

impl TryFrom<ProfileRepr> for Profile {
    type Error = ProfileError;

    fn try_from(r: ProfileRepr) -> Result<Self, Self::Error> {
        let grid = Profile::new(r.tick_size, r.ticks_per_row)?;
        let mut rows = Vec::with_capacity(r.rows.len());
        for (row, l) in r.rows {
            let bad = |e: String| ProfileError::Decode(format!("row {row}: {e}"));
            let sums = RowSums::from_parts(
                exact_from_text("buy", l.buy, l.exact.buy.as_deref()).map_err(bad)?,
                exact_from_text("sell", l.sell, l.exact.sell.as_deref()).map_err(bad)?,
                exact_from_text("unknown", l.unknown, l.exact.unknown.as_deref()).map_err(bad)?,
                l.trades,
            )
            .ok_or_else(|| {
                bad(format!(
                    "volumes must be finite and >= 0 and trades >= 0, got buy {}, sell {}, unknown {}, trades {}",
                    l.buy, l.sell, l.unknown, l.trades
                ))
            })?;
            rows.push((row, sums));
        }
        let totals = check_rows(r.ticks_per_row, &rows)?;
        Ok(Decoded { grid, rows, totals }.into_profile())
    }
}
