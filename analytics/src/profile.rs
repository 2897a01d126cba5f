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

use crate::candle::{validate_trade, TradeError};
use crate::side::Side;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;

/// Largest tick index accepted: beyond 2^53 neighbouring ticks are no longer distinct doubles.
const MAX_TICK: f64 = 9_007_199_254_740_992.0;

/// Exact powers of ten for decimal tick sizes down to 1e-10.
const POW10: [f64; 11] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];

/// Node detection works on a dense copy of the range. A range wider than this (a stray print
/// far from the market, a tick size far too small for the instrument) yields no nodes instead of
/// allocating gigabytes; coarsen such profiles with `ticks_per_row`.
pub const MAX_NODE_ROWS: i64 = 1 << 20;

/// Volume traded at one price row, by aggressor side.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Level {
    pub buy: f64,
    pub sell: f64,
    pub unknown: f64,
    pub trades: i64,
}

impl Level {
    /// All volume at the row, classified or not.
    pub fn total(&self) -> f64 {
        self.buy + self.sell + self.unknown
    }

    /// Buy volume minus sell volume.
    pub fn delta(&self) -> f64 {
        self.buy - self.sell
    }

    /// Adds one trade (already validated).
    pub fn add(&mut self, size: f64, side: Side) {
        match side {
            Side::Buy => self.buy += size,
            Side::Sell => self.sell += size,
            Side::Unknown => self.unknown += size,
        }
        self.trades = self.trades.saturating_add(1);
    }

    pub fn merge(&mut self, o: &Level) {
        self.buy += o.buy;
        self.sell += o.sell;
        self.unknown += o.unknown;
        // Decoded counts can be anything up to i64::MAX: saturate, never overflow.
        self.trades = self.trades.saturating_add(o.trades);
    }

    fn is_valid(&self) -> bool {
        [self.buy, self.sell, self.unknown].iter().all(|v| v.is_finite() && *v >= 0.0) && self.trades >= 0
    }
}

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
    fn step(self) -> i64 {
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

/// Why a profile operation was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ProfileError {
    /// A parameter outside its domain; `rule` says what is accepted.
    BadParameter {
        name: &'static str,
        value: f64,
        rule: &'static str,
    },
    Trade(TradeError),
    /// The price's tick index does not fit the grid (|price / tick_size| > 2^53).
    PriceOutOfRange {
        price: f64,
        tick_size: f64,
    },
    /// Two profiles on different grids cannot be merged.
    GridMismatch {
        tick_size: f64,
        ticks_per_row: u32,
        other_tick_size: f64,
        other_ticks_per_row: u32,
    },
    UnknownMethod(String),
    UnsupportedVersion {
        found: u8,
        supported: u8,
    },
    /// Malformed binary or serialized input.
    Decode(String),
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileError::BadParameter { name, value, rule } => {
                write!(f, "{name} must be {rule}, got {value}")
            }
            ProfileError::Trade(e) => e.fmt(f),
            ProfileError::PriceOutOfRange { price, tick_size } => {
                write!(f, "price {price} is too far from zero for tick size {tick_size} (more than 2^53 ticks)")
            }
            ProfileError::GridMismatch { tick_size, ticks_per_row, other_tick_size, other_ticks_per_row } => write!(
                f,
                "cannot merge profiles on different grids: tick_size {tick_size} × {ticks_per_row} ticks per row \
                 vs tick_size {other_tick_size} × {other_ticks_per_row}"
            ),
            ProfileError::UnknownMethod(s) => {
                let valid: Vec<_> = VaMethod::ALL.iter().map(|m| m.as_str()).collect();
                write!(f, "unknown value-area method '{s}' (valid: {})", valid.join(", "))
            }
            ProfileError::UnsupportedVersion { found, supported } => {
                write!(f, "profile: unsupported version {found} (this build reads {supported})")
            }
            ProfileError::Decode(s) => write!(f, "profile: {s}"),
        }
    }
}

impl std::error::Error for ProfileError {}

impl From<TradeError> for ProfileError {
    fn from(e: TradeError) -> Self {
        ProfileError::Trade(e)
    }
}

/// Volume by price row on a fixed grid; see the module documentation for the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ProfileRepr", into = "ProfileRepr")]
pub struct Profile {
    tick_size: f64,
    ticks_per_row: u32,
    /// `tick_size == m / 10^k` as `(m, k)`, when the tick is a short decimal.
    decimal: Option<(i64, usize)>,
    rows: HashMap<i64, Level, RowHash>,
}

impl Profile {
    /// Version of the binary form; bump when the layout changes.
    pub const VERSION: u8 = 1;
    /// version, tick_size, ticks_per_row, row count.
    const HEADER_LEN: usize = 1 + 8 + 4 + 8;
    /// row, buy, sell, unknown, trades.
    const ROW_LEN: usize = 5 * 8;

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
    fn decode(
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
    fn from_rows(
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

/// Errors unless grids `a` and `b` (tick size, ticks per row) are the same.
fn same_grid(a: (f64, u32), b: (f64, u32)) -> Result<(), ProfileError> {
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

/// Hands each row to `keep` after checking that rows are strictly ascending, on the grid, and
/// hold what `add` could have produced.
fn check_rows(
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

/// A profile reduced to what the bar engine reads from one bar: its grid, each row's volume
/// (ascending) and the classified buy and sell volume. A [`Profile`] keeps a hash map per bar;
/// this keeps a short array, which matters when a backtest holds millions of bars.
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
        let (tick_size, ticks_per_row, rows) = Profile::decode(b)?;
        Profile::new(tick_size, ticks_per_row)?;
        let mut kept = Vec::with_capacity(rows.len());
        let (mut buy, mut sell) = (0.0, 0.0);
        check_rows(ticks_per_row, rows, |row, level| {
            kept.push((row, level.total()));
            buy += level.buy;
            sell += level.sell;
        })?;
        Ok(BarProfile { tick_size, ticks_per_row, rows: kept.into(), buy, sell })
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
        let rows: Vec<(i64, Level)> = p.rows();
        let (buy, sell) = rows.iter().fold((0.0, 0.0), |(b, s), (_, l)| (b + l.buy, s + l.sell));
        BarProfile {
            tick_size: p.tick_size,
            ticks_per_row: p.ticks_per_row,
            rows: rows.iter().map(|(r, l)| (*r, l.total())).collect(),
            buy,
            sell,
        }
    }
}

/// The serde form: the grid and ascending rows, so serialized output is deterministic.
#[derive(Serialize, Deserialize)]
struct ProfileRepr {
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

/// `(m, k)` with `m / 10^k == tick` exactly, for the smallest such `k`.
fn decimal_tick(tick: f64) -> Option<(i64, usize)> {
    POW10.iter().enumerate().find_map(|(k, &p)| {
        let m = (tick * p).round();
        ((1.0..=MAX_TICK).contains(&m) && m / p == tick).then_some((m as i64, k))
    })
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

/// Hashes row numbers for the accumulation map. Rows are small integers picked by the market,
/// not by an adversary, so SipHash's flooding resistance buys nothing and would cost a large
/// share of the per-trade time of a 10-million-row aggregate.
#[derive(Debug, Clone, Copy, Default)]
struct RowHash;

impl BuildHasher for RowHash {
    type Hasher = RowHasher;

    fn build_hasher(&self) -> RowHasher {
        RowHasher(0)
    }
}

struct RowHasher(u64);

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn prof(tick: f64, trades: &[(f64, f64)]) -> Profile {
        Profile::from_trades(tick, 1, trades.iter().map(|&(p, s)| (p, s, Side::Unknown))).unwrap()
    }

    /// The predecessor's fixture.
    fn bell() -> Profile {
        prof(0.01, &[(1.00, 10.0), (1.01, 20.0), (1.02, 30.0), (1.03, 20.0), (1.04, 10.0)])
    }

    fn va(p: &Profile, pct: f64, m: VaMethod) -> (f64, f64, f64) {
        let v = p.value_area(pct, m).unwrap();
        (v.val, v.vah, v.volume)
    }

    #[test]
    fn grid_bins_on_integer_ticks_and_prices_rows_by_their_lowest_tick() {
        let p = Profile::new(0.25, 4).unwrap();
        assert_eq!([100.0, 100.25, 100.5, 100.75, 100.85].map(|x| p.row_of(x)), [100; 5]);
        assert_eq!(p.row_of(101.0), 101);
        assert_eq!(p.row_price(101), 101.0);
        // Euclidean: tick -1 is in row -1 whose lowest tick is -4.
        assert_eq!(p.row_of(-0.3), -1);
        assert_eq!(p.row_price(-1), -1.0);
        assert_eq!(p.row_of(-0.1), 0);

        let p = Profile::new(0.1, 1).unwrap();
        assert_eq!(p.row_price(3), 0.3);
        assert_ne!(3.0 * 0.1, 0.3);
        let p = Profile::new(0.01, 5).unwrap();
        assert_eq!(p.row_of(1.0249), 20);
        assert_eq!(p.row_price(20), 1.0);
        // A tick with no short decimal form falls back to multiplication.
        let third = Profile::new(1.0 / 3.0, 1).unwrap();
        assert_eq!(third.row_of(third.row_price(7)), 7);
    }

    #[test]
    fn bad_grid_and_bad_trades_are_refused_naming_the_value() {
        assert!(Profile::new(0.0, 1).unwrap_err().to_string().contains("tick_size must be"));
        assert!(Profile::new(f64::NAN, 1).unwrap_err().to_string().contains("NaN"));
        assert!(Profile::new(0.01, 0).unwrap_err().to_string().contains("ticks_per_row"));
        let mut p = Profile::new(0.01, 1).unwrap();
        assert!(matches!(
            p.add(-1.0, 1.0, Side::Buy),
            Err(ProfileError::Trade(TradeError::NonPositivePrice(_)))
        ));
        assert!(p.add(1.0, -2.0, Side::Buy).unwrap_err().to_string().contains("-2"));
        let e = p.add(1e300, 1.0, Side::Buy).unwrap_err();
        assert!(matches!(e, ProfileError::PriceOutOfRange { .. }), "{e}");
        assert!(p.is_empty());
    }

    #[test]
    fn levels_split_volume_by_side() {
        let mut p = Profile::new(0.01, 1).unwrap();
        for (price, size, side) in [
            (1.0, 5.0, Side::Buy),
            (1.0, 3.0, Side::Sell),
            (1.0, 2.0, Side::Unknown),
            (1.01, 7.0, Side::Sell),
        ] {
            p.add(price, size, side).unwrap();
        }
        let l = p.levels();
        assert_eq!(l[0], (1.0, Level { buy: 5.0, sell: 3.0, unknown: 2.0, trades: 3 }));
        assert_eq!(l[1], (1.01, Level { buy: 0.0, sell: 7.0, unknown: 0.0, trades: 1 }));
        assert_eq!((p.total_volume(), p.delta(), p.trades()), (17.0, -5.0, 4));
        assert_eq!((p.buy_volume(), p.sell_volume()), (5.0, 10.0));
        assert_eq!(p.level_at(1.0).unwrap().total(), 10.0);
        assert_eq!(p.range(), Some((1.0, 1.01)));
    }

    #[test]
    fn predecessor_fixture() {
        let p = bell();
        assert_eq!(p.poc(), Some(1.02));
        // One row at a time: 30; above 20 = below 20, a tie goes up: 50 (1.02-1.03); above 10 <
        // below 20: 70 >= 63 = 0.7 × 90.
        assert_eq!(va(&p, 0.7, VaMethod::Single), (1.01, 1.03, 70.0));
        // By pairs: 30; above 20+10 = below 20+10, a tie goes up: 60 < 63; only the pair below
        // is left: 90. Adding whole pairs is why the Dalton area is wider on so few rows.
        assert_eq!(va(&p, 0.7, VaMethod::Dalton), (1.00, 1.04, 90.0));
        assert_eq!(p.hvns(&NodeParams::default()), vec![1.02]);
        assert!(p.lvns(&NodeParams::default()).is_empty());
    }

    #[test]
    fn value_area_tie_goes_up() {
        // {1.00:20, 1.01:30, 1.02:20}: 30, then 20 above = 20 below, up: 50 >= 49.
        let p = prof(0.01, &[(1.00, 20.0), (1.01, 30.0), (1.02, 20.0)]);
        for m in VaMethod::ALL {
            assert_eq!(va(&p, 0.7, m), (1.01, 1.02, 50.0));
        }
    }

    #[test]
    fn dalton_value_area_worked_step_by_step() {
        // row:  100 101 102 103 104 105 106 107 108 109 110    (tick 1, price = row)
        // volume: 4   6  10  25  30  45  50  10  20  12   8    total 220, 70% = 154
        //
        // Dalton: start at the POC, row 106: 50.
        //   above 107+108 = 30, below 105+104 = 75 -> below:  125, rows 104..=106
        //   above 107+108 = 30, below 103+102 = 35 -> below:  160 >= 154, rows 102..=106. Stop.
        // Single: start at 106: 50.
        //   107 (10) < 105 (45) -> 95; 107 (10) < 104 (30) -> 125; 107 (10) < 103 (25) -> 150;
        //   107 (10) = 102 (10) -> tie, up: 160 >= 154, rows 103..=107.
        let vols = [4.0, 6.0, 10.0, 25.0, 30.0, 45.0, 50.0, 10.0, 20.0, 12.0, 8.0];
        let trades: Vec<(f64, f64)> = vols.iter().enumerate().map(|(i, &v)| (100.0 + i as f64, v)).collect();
        let p = prof(1.0, &trades);
        assert_eq!(p.poc(), Some(106.0));
        let d = p.value_area(0.7, VaMethod::Dalton).unwrap();
        assert_eq!((d.val, d.vah, d.volume), (102.0, 106.0, 160.0));
        assert_eq!(d.pct_of_total, 160.0 / 220.0);
        assert_eq!(va(&p, 0.7, VaMethod::Single), (103.0, 107.0, 160.0));
        // The whole range at 100%.
        assert_eq!(va(&p, 1.0, VaMethod::Dalton), (100.0, 110.0, 220.0));
    }

    #[test]
    fn poc_ties_go_to_the_centre_then_down() {
        // Rows 100..=105, centre 102.5: of the 30s, 102 (0.5 away) beats 100 and 105 (2.5).
        let p =
            prof(0.01, &[(1.0, 30.0), (1.01, 10.0), (1.02, 30.0), (1.03, 10.0), (1.04, 10.0), (1.05, 30.0)]);
        assert_eq!(p.poc(), Some(1.02));
        // Rows 100..=102, centre 101: 100 and 102 are equidistant, the lower wins.
        let p = prof(0.01, &[(1.0, 30.0), (1.01, 10.0), (1.02, 30.0)]);
        assert_eq!(p.poc(), Some(1.0));
        // Zero-size prints do not move the centre.
        let mut p = prof(0.01, &[(1.0, 30.0), (1.01, 10.0), (1.02, 30.0), (1.03, 30.0)]);
        assert_eq!(p.poc(), Some(1.02));
        p.add(5.0, 0.0, Side::Buy).unwrap();
        assert_eq!(p.poc(), Some(1.02));
        assert_eq!(p.range(), Some((1.0, 1.03)));
    }

    #[test]
    fn value_area_walks_over_empty_rows() {
        // A stray print a million rows away: the walk jumps the gap instead of crawling it.
        // At 80%: 50; above 1.02+1.03 = 10 = below 1.00 (the edge), up: 60 >= 56.8. The pair
        // ends on the empty row 1.03, so VAH is the last traded row, 1.02.
        let p = prof(0.01, &[(1.0, 10.0), (1.01, 50.0), (1.02, 10.0), (10_001.0, 1.0)]);
        assert_eq!(va(&p, 0.8, VaMethod::Dalton), (1.01, 1.02, 60.0));
        for m in VaMethod::ALL {
            assert_eq!(va(&p, 1.0, m), (1.0, 10_001.0, 71.0));
        }
        // Empty rows count as zero: {1:40, 2:-, 3:-, 4:100, 5:10, 6:10}, Dalton 80% of 160 = 128:
        // 100; above 5+6 = 20 > below 3+2 = 0 -> 120; nothing above, below 3+2 = 0 is skipped,
        // then below only row 1 is left: 40 -> 160.
        let p = prof(1.0, &[(1.0, 40.0), (4.0, 100.0), (5.0, 10.0), (6.0, 10.0)]);
        assert_eq!(va(&p, 0.8, VaMethod::Dalton), (1.0, 6.0, 160.0));
        // Single: 100; 10 > 0 -> 110; 10 > 0 -> 120; down through rows 3, 2 (zero), then 1: 160.
        assert_eq!(va(&p, 0.8, VaMethod::Single), (1.0, 6.0, 160.0));
    }

    #[test]
    fn value_area_rejects_bad_pct_and_empty_profiles() {
        let p = bell();
        for pct in [0.0, -0.1, 1.5, 70.0, f64::NAN] {
            assert!(p.value_area(pct, VaMethod::Dalton).is_none());
            assert!(matches!(
                p.try_value_area(pct, VaMethod::Dalton),
                Err(ProfileError::BadParameter { .. })
            ));
        }
        assert!(p.try_value_area(70.0, VaMethod::Single).unwrap_err().to_string().contains("0.7 means 70%"));
        let empty = Profile::new(0.01, 1).unwrap();
        assert_eq!(empty.try_value_area(0.7, VaMethod::Dalton), Ok(None));
        assert_eq!((empty.poc(), empty.total_volume()), (None, 0.0));
        let zero = prof(0.01, &[(1.0, 0.0)]);
        assert_eq!((zero.poc(), zero.value_area(0.7, VaMethod::Dalton)), (None, None));
    }

    #[test]
    fn method_names_parse_and_errors_list_the_valid_ones() {
        assert_eq!("dalton".parse::<VaMethod>(), Ok(VaMethod::Dalton));
        assert_eq!(" Single ".parse::<VaMethod>(), Ok(VaMethod::Single));
        let e = "cbot".parse::<VaMethod>().unwrap_err().to_string();
        assert_eq!(e, "unknown value-area method 'cbot' (valid: dalton, single)");
        assert_eq!(VaMethod::Single.to_string(), "single");
    }

    #[test]
    fn merge_refuses_other_grids() {
        let mut a = Profile::new(0.01, 1).unwrap();
        let e = a.merge(&Profile::new(0.05, 2).unwrap()).unwrap_err().to_string();
        assert!(e.contains("0.01 × 1") && e.contains("0.05 × 2"), "{e}");
        assert!(a.check_grid(0.01, 1).is_ok());
    }

    /// Gaussian bumps (modes at row c, height h) on rows priced 1..=60, with optional
    /// deterministic jitter of ± jitter / 2.
    fn bumps(modes: &[(f64, f64)], jitter: f64) -> Profile {
        let mut seed = 12345u64;
        let trades: Vec<(f64, f64)> = (0..60)
            .map(|r| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let noise = 1.0 + jitter * (((seed >> 33) as f64 / (1u64 << 31) as f64) - 0.5);
                let v: f64 =
                    modes.iter().map(|&(c, h)| h * (-((r as f64 - c) / 5.0).powi(2) / 2.0).exp()).sum();
                (1.0 + r as f64, ((5.0 + v) * noise).round())
            })
            .collect();
        prof(1.0, &trades)
    }

    #[test]
    fn bimodal_profile_has_two_hvns_and_one_lvn_between() {
        let np = NodeParams::default();
        for jitter in [0.0, 0.3] {
            let p = bumps(&[(15.0, 400.0), (42.0, 300.0)], jitter);
            let n = p.nodes(&np).unwrap();
            assert_eq!(n.hvns.len(), 2, "jitter {jitter}: {n:?}");
            assert!((n.hvns[0] - 16.0).abs() <= 2.0 && (n.hvns[1] - 43.0).abs() <= 2.0, "{n:?}");
            assert_eq!(n.lvns.len(), 1, "{n:?}");
            assert!((26.0..=34.0).contains(&n.lvns[0]), "{n:?}");
        }
        // A single bell, or a flat profile, has no LVN; the flat one not even an HVN.
        let p = bumps(&[(30.0, 400.0)], 0.3);
        assert_eq!((p.hvns(&np).len(), p.lvns(&np).len()), (1, 0));
        let flat = prof(1.0, &(1..40).map(|r| (r as f64, 100.0)).collect::<Vec<_>>());
        assert_eq!(flat.nodes(&np).unwrap(), Nodes::default());
    }

    #[test]
    fn lvn_in_an_empty_gap_is_its_middle_row() {
        // Two bells on rows 1..=5 and 26..=30 with nothing between: the trough is flat at zero,
        // so the LVN is the empty row nearest the midpoint 15.5 of the HVNs, the lower of 15, 16.
        let mut t = Vec::new();
        for base in [1, 26] {
            for (i, v) in [10.0, 30.0, 60.0, 30.0, 10.0].into_iter().enumerate() {
                t.push(((base + i) as f64, v));
            }
        }
        let p = prof(1.0, &t);
        let n = p.nodes(&NodeParams { smooth_rows: 1, ..NodeParams::default() }).unwrap();
        assert_eq!(n.hvns, vec![3.0, 28.0]);
        assert_eq!(n.lvns, vec![15.0]);
    }

    #[test]
    fn node_params_are_checked() {
        let p = bell();
        for bad in [
            NodeParams { smooth_rows: 0, ..NodeParams::default() },
            NodeParams { lvn_ratio: 2.0, ..NodeParams::default() },
            NodeParams { hvn_ratio: f64::NAN, ..NodeParams::default() },
            NodeParams { min_prominence: -0.1, ..NodeParams::default() },
        ] {
            assert!(matches!(p.nodes(&bad), Err(ProfileError::BadParameter { .. })));
            assert!(p.hvns(&bad).is_empty());
        }
    }

    #[test]
    fn bytes_round_trip_and_version_is_checked() {
        let mut p = bell();
        p.add(0.99, 3.0, Side::Buy).unwrap();
        p.add(1.05, 2.0, Side::Sell).unwrap();
        let b = p.to_bytes();
        assert_eq!(b[0], Profile::VERSION);
        assert_eq!(Profile::from_bytes(&b).unwrap(), p);
        assert_eq!(
            Profile::from_bytes(&Profile::new(0.5, 3).unwrap().to_bytes()).unwrap(),
            Profile::new(0.5, 3).unwrap()
        );

        let mut bad = b.clone();
        bad[0] = 9;
        assert_eq!(
            Profile::from_bytes(&bad).unwrap_err().to_string(),
            "profile: unsupported version 9 (this build reads 1)"
        );
        assert!(Profile::from_bytes(&[]).is_err());
        assert!(Profile::from_bytes(&b[..b.len() - 1]).unwrap_err().to_string().contains("rows announced"));
        // Swap the first two rows: out of order.
        let mut swapped = b.clone();
        let (h, r) = (Profile::HEADER_LEN, Profile::ROW_LEN);
        let first: Vec<u8> = swapped[h..h + r].to_vec();
        swapped.copy_within(h + r..h + 2 * r, h);
        swapped[h + r..h + 2 * r].copy_from_slice(&first);
        assert!(Profile::from_bytes(&swapped).unwrap_err().to_string().contains("ascending"));
        assert_eq!(BarProfile::from_bytes(&swapped).unwrap_err(), Profile::from_bytes(&swapped).unwrap_err());
        assert_eq!(BarProfile::from_bytes(&bad).unwrap_err(), Profile::from_bytes(&bad).unwrap_err());
        let other_grid = BarProfile::from(&Profile::new(0.05, 1).unwrap());
        assert!(BarProfile::from(&p).merge(&other_grid).unwrap_err().to_string().contains("different grids"));
        // A negative volume.
        let mut neg = b.clone();
        neg[h + 8..h + 16].copy_from_slice(&(-1.0f64).to_le_bytes());
        assert!(Profile::from_bytes(&neg).unwrap_err().to_string().contains("finite and >= 0"));
        // A bad grid.
        let mut grid = b;
        grid[1..9].copy_from_slice(&0.0f64.to_le_bytes());
        assert!(Profile::from_bytes(&grid).unwrap_err().to_string().contains("tick_size"));
    }

    /// Found by the `profile_binary` and `profile_text` fuzz targets: stored trade counts near
    /// i64::MAX overflowed when summed or merged (a panic in debug builds, a wrapped count in
    /// release).
    #[test]
    fn decoded_trade_counts_saturate() {
        let p = bell();
        let mut b = p.to_bytes();
        let (h, r) = (Profile::HEADER_LEN, Profile::ROW_LEN);
        for row in 0..p.row_count() {
            b[h + row * r + 32..h + row * r + 40].copy_from_slice(&i64::MAX.to_le_bytes());
        }
        let mut big = Profile::from_bytes(&b).unwrap();
        assert_eq!(big.trades(), i64::MAX);
        big.merge(&big.clone()).unwrap();
        big.add(1.0, 1.0, Side::Buy).unwrap();
        assert_eq!(big.trades(), i64::MAX);
        assert!(big.levels().iter().all(|(_, l)| l.trades == i64::MAX));
        let json = serde_json::to_string(&big).unwrap();
        assert_eq!(serde_json::from_str::<Profile>(&json).unwrap().trades(), i64::MAX);
    }

    fn side() -> impl Strategy<Value = Side> {
        prop_oneof![Just(Side::Buy), Just(Side::Sell), Just(Side::Unknown)]
    }

    /// Trades on a 0.01 grid, mostly near 1.00-1.60 with the odd print far away.
    fn trade() -> impl Strategy<Value = (f64, f64, Side)> {
        (prop_oneof![9 => 100i64..160, 1 => 1i64..100_000], 0u32..100, side())
            .prop_map(|(t, s, side)| (t as f64 / 100.0, s as f64, side))
    }

    fn build(trades: &[(f64, f64, Side)]) -> Profile {
        Profile::from_trades(0.01, 1, trades.iter().copied()).unwrap()
    }

    /// The value area the slow way: a dense array and one step per loop.
    fn reference_va(p: &Profile, pct: f64, step: i64) -> Option<(i64, i64)> {
        let vols = p.volume_rows();
        let (min, max) = (vols.first()?.0, vols.last()?.0);
        let mut dense = vec![0.0; (max - min + 1) as usize];
        for (r, v) in &vols {
            dense[(r - min) as usize] = *v;
        }
        let at = |r: i64| dense[(r - min) as usize];
        let target = pct * vols.iter().map(|e| e.1).sum::<f64>();
        let (mut lo, mut hi) = (p.poc_row()?, p.poc_row()?);
        let mut vol = at(lo);
        while vol < target && (lo > min || hi < max) {
            let up: Vec<i64> = (hi + 1..=(hi + step).min(max)).collect();
            let down: Vec<i64> = ((lo - step).max(min)..lo).collect();
            let (us, ds) = (up.iter().map(|&r| at(r)).sum::<f64>(), down.iter().map(|&r| at(r)).sum::<f64>());
            if down.is_empty() || (!up.is_empty() && us >= ds) {
                hi += up.len() as i64;
                vol += us;
            } else {
                lo -= down.len() as i64;
                vol += ds;
            }
        }
        while at(lo) == 0.0 {
            lo += 1;
        }
        while at(hi) == 0.0 {
            hi -= 1;
        }
        Some((lo, hi))
    }

    proptest! {
        #[test]
        fn volume_is_conserved_across_levels(trades in prop::collection::vec(trade(), 0..80)) {
            let p = build(&trades);
            let sum = |side: Side| trades.iter().filter(|t| t.2 == side).map(|t| t.1).sum::<f64>();
            let levels = p.levels();
            prop_assert_eq!(levels.iter().map(|l| l.1.buy).sum::<f64>(), sum(Side::Buy));
            prop_assert_eq!(levels.iter().map(|l| l.1.sell).sum::<f64>(), sum(Side::Sell));
            prop_assert_eq!(levels.iter().map(|l| l.1.unknown).sum::<f64>(), sum(Side::Unknown));
            prop_assert_eq!(p.total_volume(), trades.iter().map(|t| t.1).sum::<f64>());
            prop_assert_eq!(p.trades(), trades.len() as i64);
            prop_assert!(levels.windows(2).all(|w| w[0].0 < w[1].0));
        }

        #[test]
        fn merge_of_parts_equals_whole(trades in prop::collection::vec(trade(), 0..80), cut in 0usize..80) {
            let cut = cut.min(trades.len());
            let mut merged = build(&trades[..cut]);
            merged.merge(&build(&trades[cut..])).unwrap();
            prop_assert_eq!(merged, build(&trades));
        }

        #[test]
        fn merge_is_associative_and_commutative(
            a in prop::collection::vec(trade(), 0..30),
            b in prop::collection::vec(trade(), 0..30),
            c in prop::collection::vec(trade(), 0..30),
        ) {
            let (pa, pb, pc) = (build(&a), build(&b), build(&c));
            let mut ab = pa.clone();
            ab.merge(&pb).unwrap();
            let mut ba = pb.clone();
            ba.merge(&pa).unwrap();
            prop_assert_eq!(&ab, &ba);
            let mut ab_c = ab;
            ab_c.merge(&pc).unwrap();
            let mut bc = pb;
            bc.merge(&pc).unwrap();
            let mut a_bc = pa;
            a_bc.merge(&bc).unwrap();
            prop_assert_eq!(ab_c, a_bc);
        }

        #[test]
        fn value_area_contains_poc_and_enough_volume(
            trades in prop::collection::vec(trade(), 1..80),
            pct in 0.05f64..=1.0,
            single in any::<bool>(),
        ) {
            let p = build(&trades);
            let m = if single { VaMethod::Single } else { VaMethod::Dalton };
            let Some(v) = p.value_area(pct, m) else {
                prop_assert_eq!(p.total_volume(), 0.0);
                return Ok(());
            };
            prop_assert!(v.val <= v.poc && v.poc <= v.vah);
            prop_assert_eq!(Some(v.poc), p.poc());
            let inside: f64 = p.levels().iter().filter(|l| l.0 >= v.val && l.0 <= v.vah).map(|l| l.1.total()).sum();
            prop_assert_eq!(inside, v.volume);
            prop_assert!(v.volume >= pct * p.total_volume());
            let (lo, hi) = reference_va(&p, pct, m.step()).unwrap();
            prop_assert_eq!((v.val, v.vah), (p.row_price(lo), p.row_price(hi)));
        }

        #[test]
        fn bytes_round_trip(trades in prop::collection::vec(trade(), 0..80), tpr in 1u32..7) {
            let p = Profile::from_trades(0.01, tpr, trades.iter().copied()).unwrap();
            prop_assert_eq!(Profile::from_bytes(&p.to_bytes()).unwrap(), p.clone());
            // A bar profile decoded from the bytes is the profile's reduction: row totals,
            // buy and sell volume.
            let bar = BarProfile::from_bytes(&p.to_bytes()).unwrap();
            prop_assert_eq!(&bar, &BarProfile::from(&p));
            let totals: Vec<(i64, f64)> = p.rows().iter().map(|(r, l)| (*r, l.total())).collect();
            prop_assert_eq!(bar.rows(), totals.as_slice());
            prop_assert_eq!((bar.buy_volume(), bar.sell_volume()), (p.buy_volume(), p.sell_volume()));
            // Merging two halves gives the rows of the whole (integer sizes: exact sums).
            let (a, b) = trades.split_at(trades.len() / 2);
            let mut merged = BarProfile::from(&Profile::from_trades(0.01, tpr, a.iter().copied()).unwrap());
            merged.merge(&BarProfile::from(&Profile::from_trades(0.01, tpr, b.iter().copied()).unwrap())).unwrap();
            prop_assert_eq!(merged.rows(), totals.as_slice());
        }

        #[test]
        fn a_row_price_bins_back_to_its_row(
            row in -1_000_000i64..1_000_000,
            tick in prop::sample::select(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 0.0001, 1e-8, 1.0 / 3.0, 0.3]),
            tpr in 1u32..10,
        ) {
            let p = Profile::new(tick, tpr).unwrap();
            prop_assert_eq!(p.row_of(p.row_price(row)), row);
        }
    }
}
