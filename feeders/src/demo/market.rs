//! A deterministic synthetic US stock market: the pure simulation behind the demo feed.
//!
//! # Calendar
//!
//! Trading days are Monday to Friday; exchange holidays are deliberately ignored (a demo does
//! not need a holiday table, and a missing holiday only means one more simulated day). The
//! regular session is 09:30–16:00 America/New_York, converted to UTC with the tz database so
//! daylight-saving changes move the UTC times. Times are unix-epoch microseconds (UTC).
//!
//! In *always-open* mode ([`DemoMarket::with_always_open`]) the gap between one regular
//! close and the next regular open (nights and weekends) is filled by an extra "overnight"
//! segment with thinner trading and wider spreads, so a demo started in the evening still
//! moves. Regular sessions are identical in both modes, so switching modes never rewrites a
//! session already stored.
//!
//! # Model
//!
//! Each segment (one regular session, or one overnight gap) of each symbol is simulated as a
//! whole from its own RNG, seeded from `(seed, symbol name, date, segment kind)`. A segment
//! never depends on wall-clock time or on which ranges were asked for before, which is what
//! makes any chunking of a time range produce the same events, and a restart regenerate the
//! same trades with the same `seq`.
//!
//! * **Day-to-day path.** A daily *anchor* follows a mean-reverting walk in log price around
//!   the watchlist price (half-life about six months, daily steps of the symbol's daily
//!   volatility), computed in closed form from hashed normals so any day is available without
//!   simulating the days before it. A session opens at the previous day's anchor plus a small
//!   overnight gap, and its value centre is pulled towards the day's anchor by the close.
//! * **Arrivals.** Trades arrive as a Poisson process whose intensity follows a U-shaped
//!   intraday curve (about 2.3× the midday rate in the first half hour, 2× in the last).
//!   Volatility is tied to trade count, so the open and close are also the most volatile.
//! * **Fair value** is a real number of ticks that moves at every trade by Gaussian noise
//!   (scaled so a day's variance matches `annual_vol`), a small price impact of the trade's
//!   side, and the regime's term:
//!   * **Balance** (rotation): Ornstein–Uhlenbeck reversion towards a value centre; flow is
//!     responsive (buyers below value, sellers above), so buys stay near 50 %. The value
//!     centre is reset to the price when a trend ends, so each balance area forms where the
//!     last imbalance stopped; price and centre are bridged towards the segment's target
//!     (the day's anchor, or the next open overnight), more firmly as the end nears.
//!   * **Trend up / down** (imbalance): no reversion; 66–76 % of aggressive trades are on the
//!     trend side and their impact gives the drift, about 0.6 daily standard deviations per
//!     average hour. Trends more often point towards the target.
//!
//!   Regimes alternate balance / trend with random lengths of 20–90 minutes.
//! * **Quotes.** Bid and ask sit on the tick grid around the fair value with a spread of the
//!   symbol's typical ticks plus occasional extra ticks (more often near the open, and always
//!   wider overnight). A quote event is emitted whenever bid or ask changes, shortly after
//!   the trade that moved it. Book sizes lean towards the side the flow favours.
//! * **Trades.** A buyer-initiated trade prints at the ask ([`Side::Buy`]), a seller-initiated
//!   one at the bid ([`Side::Sell`]); the side is the simulated truth. Sizes are heavy tailed:
//!   about a fifth are odd lots, the rest are round lots with a Pareto(α = 1.5) number of
//!   100-share lots (median 100 shares, rare blocks up to 100 000), some with an odd
//!   remainder.
//!
//! # Sequence numbers
//!
//! `seq` is `yyyymmdd × 10⁷ + n` for the n-th trade of a regular session and
//! `yyyymmdd × 10⁷ + 5·10⁶ + n` for the overnight segment that starts at that day's close, so
//! it is unique per symbol, stable across restarts and increasing in time.

use super::watchlist::{session_close, session_open, DemoSymbol, TIMEZONE};
use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveTime, TimeZone, Weekday};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Exp1, Pareto, StandardNormal};
use std::sync::Arc;
use tapeflow_analytics::{Side, MINUTE};

/// Multiplier of the date in a sequence number.
pub const SEQ_DAY_FACTOR: i64 = 10_000_000;
/// Offset of overnight-segment sequence numbers within a day; also the per-segment trade cap.
pub const SEQ_OVERNIGHT_OFFSET: i64 = 5_000_000;

/// U-shaped intensity `1 + A·e^(−x/W) + B·e^(−(1−x)/W)` over the session fraction `x`.
const OPEN_BOOST: f64 = 2.5;
const CLOSE_BOOST: f64 = 2.0;
const BOOST_WIDTH: f64 = 0.05;
/// Overnight trade rate relative to the regular midday rate.
const OVERNIGHT_RATE: f64 = 0.3;

/// Width of a balance area (stationary s.d. of the reversion) in daily standard deviations.
const BALANCE_WIDTH: f64 = 0.25;
/// Strength of responsive flow in balance: buy probability change per balance s.d.
const RESPONSIVE_FLOW: f64 = 0.1;
/// Trend drift in daily standard deviations per average hour of trading.
const TREND_RATE: f64 = 0.6;
/// Range of the aggressive-buy probability in an up trend (mirrored for down trends).
const TREND_BUY_SHARE: (f64, f64) = (0.66, 0.76);
/// Regime lengths in minutes.
const REGIME_MINUTES: (i64, i64) = (20, 90);

/// Half-life of the day-to-day anchor's reversion to the watchlist price, in trading days.
const ANCHOR_HALF_LIFE: f64 = 120.0;
/// Trading days summed for an anchor; older terms weigh less than 0.1 %.
const ANCHOR_LOOKBACK: i64 = 1_200;
/// Overnight gap s.d. in daily standard deviations.
const GAP_SIZE: f64 = 0.25;
const TRADING_DAYS_PER_YEAR: f64 = 252.0;

/// One simulated market-data event for the symbol at `symbol_idx` in the market's symbols.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DemoEvent {
    /// A trade, with its true aggressor side.
    Trade {
        symbol_idx: usize,
        /// Unix-epoch microseconds (UTC).
        time_us: i64,
        price: f64,
        /// Shares, always positive.
        size: u32,
        /// [`Side::Buy`] (printed at the ask) or [`Side::Sell`] (printed at the bid).
        side: Side,
        /// Per-symbol sequence number, unique and stable (see the module docs).
        seq: i64,
    },
    /// A change of the top of book.
    Quote { symbol_idx: usize, time_us: i64, bid: f64, ask: f64, bid_size: u32, ask_size: u32 },
}

impl DemoEvent {
    /// Event time in unix-epoch microseconds.
    pub fn time_us(&self) -> i64 {
        match *self {
            DemoEvent::Trade { time_us, .. } | DemoEvent::Quote { time_us, .. } => time_us,
        }
    }
}

/// The market regime the simulation is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Regime {
    /// Rotation around a value centre with two-sided flow.
    Balance,
    /// Imbalance with buyers in control.
    TrendUp,
    /// Imbalance with sellers in control.
    TrendDown,
}

/// A regime over `[start_us, end_us)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegimeSpan {
    pub start_us: i64,
    pub end_us: i64,
    pub regime: Regime,
}

// ---------------------------------------------------------------------------------------------
// Calendar

/// Whether `day` is a trading day (Monday to Friday; holidays are not modelled).
pub fn is_trading_day(day: NaiveDate) -> bool {
    !matches!(day.weekday(), Weekday::Sat | Weekday::Sun)
}

/// The first trading day after `day`.
pub fn next_trading_day(day: NaiveDate) -> NaiveDate {
    let mut d = day.succ_opt().expect("date in range");
    while !is_trading_day(d) {
        d = d.succ_opt().expect("date in range");
    }
    d
}

/// The last trading day before `day`.
pub fn prev_trading_day(day: NaiveDate) -> NaiveDate {
    let mut d = day.pred_opt().expect("date in range");
    while !is_trading_day(d) {
        d = d.pred_opt().expect("date in range");
    }
    d
}

/// Unix microseconds of a local wall-clock time in the demo timezone. A time skipped by a
/// daylight-saving jump is taken one hour later; an ambiguous one at its first occurrence.
fn local_us(day: NaiveDate, time: NaiveTime) -> i64 {
    let naive = day.and_time(time);
    let at = match TIMEZONE.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t,
        LocalResult::None => TIMEZONE
            .from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
            .expect("a valid local time one hour after a DST gap"),
    };
    at.timestamp_micros()
}

/// The local (America/New_York) calendar date of a unix-microsecond time.
pub fn local_date(time_us: i64) -> NaiveDate {
    DateTime::from_timestamp_micros(time_us)
        .expect("timestamp in range")
        .with_timezone(&TIMEZONE)
        .date_naive()
}

/// Local midnight at the start of `day` as unix microseconds.
pub fn day_start(day: NaiveDate) -> i64 {
    local_us(day, NaiveTime::MIN)
}

/// Regular session of `day` as unix microseconds `[open, close)`, DST-correct. The day is not
/// checked to be a trading day.
pub fn session_bounds(day: NaiveDate) -> (i64, i64) {
    (local_us(day, session_open()), local_us(day, session_close()))
}

/// Length of the regular session in hours.
fn session_hours() -> f64 {
    (session_close() - session_open()).num_seconds() as f64 / 3600.0
}

/// Whether `time_us` falls inside a regular session.
#[allow(dead_code)] // calendar helper for callers; the simulation itself works per segment
pub fn in_session(time_us: i64) -> bool {
    let day = local_date(time_us);
    let (open, close) = session_bounds(day);
    is_trading_day(day) && (open..close).contains(&time_us)
}

/// The `n` trading days before the local date of `now_us` (today excluded), oldest first:
/// complete past sessions to backfill. Today's session up to `now` belongs to the live range.
pub fn trading_days_before(now_us: i64, n: usize) -> Vec<NaiveDate> {
    let mut days = Vec::with_capacity(n);
    let mut d = local_date(now_us);
    for _ in 0..n {
        d = prev_trading_day(d);
        days.push(d);
    }
    days.reverse();
    days
}

/// `yyyymmdd × 10⁷`: the first sequence number of `day`'s regular session.
pub fn seq_base(day: NaiveDate) -> i64 {
    (day.year() as i64 * 10_000 + day.month() as i64 * 100 + day.day() as i64) * SEQ_DAY_FACTOR
}

/// Trading days since Monday 1970-01-05: the index of the day-to-day anchor walk.
fn trading_day_index(day: NaiveDate) -> i64 {
    let days = (day - NaiveDate::from_ymd_opt(1970, 1, 5).expect("valid date")).num_days();
    days.div_euclid(7) * 5 + days.rem_euclid(7).min(5)
}

// ---------------------------------------------------------------------------------------------
// Hashing: stable seeds and the hashed normals of the anchor walk

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hash(parts: &[u64]) -> u64 {
    parts.iter().fold(0x5EED_0F7A_9EF1_0E17, |h, &p| splitmix(h ^ p))
}

/// FNV-1a of the symbol name, so a symbol's path does not depend on its watchlist position.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01B3))
}

/// A standard normal derived from a hash (Box–Muller).
fn hashed_normal(h: u64) -> f64 {
    let u1 = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = (splitmix(h) >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

const TAG_ANCHOR: u64 = 1;
const TAG_GAP: u64 = 2;
const TAG_REGULAR: u64 = 3;
const TAG_OVERNIGHT: u64 = 4;

// ---------------------------------------------------------------------------------------------
// Intensity

/// Trade arrival intensity of one segment, in expected trades per microsecond.
#[derive(Debug, Clone, Copy)]
enum Intensity {
    /// The regular-session U curve; `scale` = expected trades per unit of session fraction
    /// at the midday level.
    UShape { start: i64, len: i64, scale: f64 },
    /// A constant rate.
    Flat { rate: f64, end: i64 },
}

impl Intensity {
    /// The U curve's shape at session fraction `x`.
    fn shape(x: f64) -> f64 {
        1.0 + OPEN_BOOST * (-x / BOOST_WIDTH).exp() + CLOSE_BOOST * (-(1.0 - x) / BOOST_WIDTH).exp()
    }

    /// Integral of [`Intensity::shape`] from 0 to `x`.
    fn cumulative(x: f64) -> f64 {
        let w = BOOST_WIDTH;
        x + OPEN_BOOST * w * (1.0 - (-x / w).exp())
            + CLOSE_BOOST * w * ((-(1.0 - x) / w).exp() - (-1.0 / w).exp())
    }

    fn rate(&self, t: i64) -> f64 {
        match *self {
            Intensity::UShape { start, len, scale } => {
                scale * Self::shape((t - start) as f64 / len as f64) / len as f64
            }
            Intensity::Flat { rate, .. } => rate,
        }
    }

    fn max_rate(&self) -> f64 {
        match *self {
            Intensity::UShape { len, scale, .. } => scale * (1.0 + OPEN_BOOST + CLOSE_BOOST) / len as f64,
            Intensity::Flat { rate, .. } => rate,
        }
    }

    /// Expected number of trades from `t` to the segment end.
    fn remaining(&self, t: i64) -> f64 {
        match *self {
            Intensity::UShape { start, len, scale } => {
                let x = ((t - start) as f64 / len as f64).clamp(0.0, 1.0);
                scale * (Self::cumulative(1.0) - Self::cumulative(x))
            }
            Intensity::Flat { rate, end } => rate * (end - t).max(0) as f64,
        }
    }

    /// How much the open's excitement remains at `t` (1 at the open, 0 overnight).
    fn open_heat(&self, t: i64) -> f64 {
        match *self {
            Intensity::UShape { start, len, .. } => (-((t - start) as f64 / len as f64) / BOOST_WIDTH).exp(),
            Intensity::Flat { .. } => 0.0,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Segments

/// A simulated stretch of one symbol's market.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SegmentKey {
    /// The regular session of a trading day.
    Regular(NaiveDate),
    /// From the close of this trading day to the next trading day's open (always-open mode).
    Overnight(NaiveDate),
}

/// The inputs of one segment simulation.
struct SegmentSpec {
    start: i64,
    end: i64,
    seed: u64,
    seq_base: i64,
    intensity: Intensity,
    /// Fair value (ticks) at the start and the value centre's target at the end.
    open_ticks: f64,
    target_ticks: f64,
    /// Extra spread ticks always added (wider books overnight).
    spread_extra: u32,
}

/// A simulated segment: its events in time order, its regimes and its final fair value.
#[derive(Debug)]
struct Segment {
    events: Vec<DemoEvent>,
    regimes: Vec<RegimeSpan>,
    close_ticks: f64,
}

/// Per-symbol constants derived from the watchlist entry and the trade budget.
#[derive(Debug, Clone)]
struct SymbolModel {
    key: u64,
    tick: f64,
    /// Decimal places of the tick size, for rounding prices exactly onto the grid.
    decimals: i32,
    log_price: f64,
    daily_sigma: f64,
    /// Expected trades in a regular session.
    trades: f64,
    spread_ticks: u32,
}

impl SymbolModel {
    fn price(&self, ticks: i64) -> f64 {
        let scale = 10f64.powi(self.decimals);
        (ticks as f64 * self.tick * scale).round() / scale
    }
}

fn tick_decimals(tick: f64) -> i32 {
    (0..=8)
        .find(|&k| {
            let scaled = tick * 10f64.powi(k);
            (scaled - scaled.round()).abs() < 1e-9 * scaled.max(1.0)
        })
        .unwrap_or(8)
}

/// Entries kept per symbol in the segment cache: the current segment and its predecessor
/// (an overnight segment needs the regular session it follows).
const CACHE_PER_SYMBOL: usize = 2;

/// The simulated market: a watchlist, a seed and a trade budget. See the module docs.
#[derive(Debug)]
pub struct DemoMarket {
    seed: u64,
    symbols: Vec<DemoSymbol>,
    models: Vec<SymbolModel>,
    trades_per_day: u32,
    always_open: bool,
    cache: Vec<Vec<(SegmentKey, Arc<Segment>)>>,
}

impl DemoMarket {
    /// Default regular-session trades per day across the whole watchlist.
    pub const DEFAULT_TRADES_PER_DAY: u32 = 150_000;

    /// A market over `symbols`, fully determined by `seed`, with
    /// [`DemoMarket::DEFAULT_TRADES_PER_DAY`] and regular sessions only.
    pub fn new(seed: u64, symbols: Vec<DemoSymbol>) -> DemoMarket {
        let mut market = DemoMarket {
            seed,
            symbols,
            models: Vec::new(),
            trades_per_day: Self::DEFAULT_TRADES_PER_DAY,
            always_open: false,
            cache: Vec::new(),
        };
        market.rebuild();
        market
    }

    /// Sets the expected number of regular-session trades per day summed over all symbols.
    /// It is shared in proportion to the square root of each symbol's daily volume, so the
    /// busiest name trades a few times more often than the quietest rather than 25× more.
    pub fn with_trades_per_day(mut self, trades_per_day: u32) -> DemoMarket {
        self.trades_per_day = trades_per_day.max(1);
        self.rebuild();
        self
    }

    /// Enables always-open mode: nights and weekends are filled by overnight segments in
    /// [`DemoMarket::events`]. Regular sessions are unchanged.
    pub fn with_always_open(mut self, always_open: bool) -> DemoMarket {
        self.always_open = always_open;
        self
    }

    /// The simulated symbols; event `symbol_idx` values index this slice.
    pub fn symbols(&self) -> &[DemoSymbol] {
        &self.symbols
    }

    /// Expected trades in one regular session of the symbol at `symbol_idx`.
    #[allow(dead_code)] // for reports and tests; the feed only needs the events
    pub fn expected_trades(&self, symbol_idx: usize) -> f64 {
        self.models[symbol_idx].trades
    }

    /// Drops cached segments (they are regenerated identically on demand).
    pub fn clear_cache(&mut self) {
        self.cache.iter_mut().for_each(Vec::clear);
    }

    fn rebuild(&mut self) {
        let weights: Vec<f64> = self.symbols.iter().map(|s| (s.daily_volume.max(1) as f64).sqrt()).collect();
        let total: f64 = weights.iter().sum();
        self.models = self
            .symbols
            .iter()
            .zip(&weights)
            .map(|(s, w)| SymbolModel {
                key: name_hash(&s.symbol),
                tick: s.tick_size,
                decimals: tick_decimals(s.tick_size),
                log_price: s.price.ln(),
                daily_sigma: s.annual_vol / TRADING_DAYS_PER_YEAR.sqrt(),
                trades: (self.trades_per_day as f64 * w / total).max(1.0),
                spread_ticks: s.spread_ticks.max(1),
            })
            .collect();
        self.cache = vec![Vec::new(); self.symbols.len()];
    }

    /// The true regimes of the regular session of `day` (empty on a weekend), covering the
    /// session: what market-state detection should find.
    ///
    /// Panics if `symbol_idx` is out of range.
    #[allow(dead_code)] // ground truth for tests and for checking market-state detection
    pub fn regimes(&mut self, symbol_idx: usize, day: NaiveDate) -> Vec<RegimeSpan> {
        if !is_trading_day(day) {
            return Vec::new();
        }
        self.segment(symbol_idx, SegmentKey::Regular(day)).regimes.clone()
    }

    /// Every event of one symbol with `from_us <= time < to_us`, in time order: regular
    /// sessions, plus overnight segments in always-open mode. Any split of a range into
    /// consecutive chunks yields the same events as the whole range.
    ///
    /// Panics if `symbol_idx` is out of range.
    pub fn events(&mut self, symbol_idx: usize, from_us: i64, to_us: i64) -> Vec<DemoEvent> {
        let mut out = Vec::new();
        for key in self.segments_between(from_us, to_us) {
            let seg = self.segment(symbol_idx, key);
            let lo = seg.events.partition_point(|e| e.time_us() < from_us);
            let hi = seg.events.partition_point(|e| e.time_us() < to_us);
            out.extend_from_slice(&seg.events[lo..hi]);
        }
        out
    }

    /// The segments overlapping `[from, to)`, in time order.
    fn segments_between(&self, from: i64, to: i64) -> Vec<SegmentKey> {
        let mut keys = Vec::new();
        if from >= to {
            return keys;
        }
        // Start one trading day early: an overnight segment from that close may reach `from`.
        let mut day = prev_trading_day(local_date(from));
        loop {
            let (open, close) = session_bounds(day);
            if open >= to {
                break;
            }
            if close > from {
                keys.push(SegmentKey::Regular(day));
            }
            let next = next_trading_day(day);
            if self.always_open && close < to && session_bounds(next).0 > from {
                keys.push(SegmentKey::Overnight(day));
            }
            day = next;
        }
        keys
    }

    /// A segment from the cache, or simulated and cached.
    fn segment(&mut self, idx: usize, key: SegmentKey) -> Arc<Segment> {
        if let Some((_, seg)) = self.cache[idx].iter().find(|(k, _)| *k == key) {
            return Arc::clone(seg);
        }
        let spec = match key {
            SegmentKey::Regular(day) => self.regular_spec(idx, day),
            SegmentKey::Overnight(day) => {
                let before = self.segment(idx, SegmentKey::Regular(day));
                self.overnight_spec(idx, day, before.close_ticks)
            }
        };
        let seg = Arc::new(simulate(&self.models[idx], idx, &spec));
        let slot = &mut self.cache[idx];
        if slot.len() >= CACHE_PER_SYMBOL {
            slot.remove(0);
        }
        slot.push((key, Arc::clone(&seg)));
        seg
    }

    /// Log anchor offset of trading day `index`: a truncated sum of the AR(1) walk
    /// `a_k = φ·a_(k−1) + σ·z_k`, so each day's value needs no earlier simulation.
    fn anchor(&self, m: &SymbolModel, index: i64) -> f64 {
        let phi = 0.5f64.powf(1.0 / ANCHOR_HALF_LIFE);
        let sigma = 0.9 * m.daily_sigma;
        let mut weight = sigma;
        let mut sum = 0.0;
        for lag in 0..ANCHOR_LOOKBACK {
            sum += weight * hashed_normal(hash(&[self.seed, m.key, TAG_ANCHOR, (index - lag) as u64]));
            weight *= phi;
        }
        sum
    }

    /// Opening fair value of a trading day: yesterday's anchor plus an overnight gap.
    fn open_ticks(&self, m: &SymbolModel, day: NaiveDate) -> f64 {
        let index = trading_day_index(day);
        let gap = GAP_SIZE * m.daily_sigma * hashed_normal(hash(&[self.seed, m.key, TAG_GAP, index as u64]));
        (m.log_price + self.anchor(m, index - 1) + gap).exp() / m.tick
    }

    fn regular_spec(&self, idx: usize, day: NaiveDate) -> SegmentSpec {
        let m = &self.models[idx];
        let (start, end) = session_bounds(day);
        let index = trading_day_index(day);
        SegmentSpec {
            start,
            end,
            seed: hash(&[self.seed, m.key, TAG_REGULAR, index as u64]),
            seq_base: seq_base(day),
            intensity: Intensity::UShape {
                start,
                len: end - start,
                scale: m.trades / Intensity::cumulative(1.0),
            },
            open_ticks: self.open_ticks(m, day),
            target_ticks: (m.log_price + self.anchor(m, index)).exp() / m.tick,
            spread_extra: 0,
        }
    }

    fn overnight_spec(&self, idx: usize, day: NaiveDate, close_ticks: f64) -> SegmentSpec {
        let m = &self.models[idx];
        let (open, close) = session_bounds(day);
        let next = next_trading_day(day);
        let end = session_bounds(next).0;
        // The midday rate of a regular session, per microsecond.
        let midday = m.trades / Intensity::cumulative(1.0) / (close - open) as f64;
        SegmentSpec {
            start: close,
            end,
            seed: hash(&[self.seed, m.key, TAG_OVERNIGHT, trading_day_index(day) as u64]),
            seq_base: seq_base(day) + SEQ_OVERNIGHT_OFFSET,
            intensity: Intensity::Flat { rate: OVERNIGHT_RATE * midday, end },
            open_ticks: close_ticks,
            target_ticks: self.open_ticks(m, next),
            spread_extra: m.spread_ticks,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Simulation

/// Poisson arrival times by thinning, at least 2 µs apart so a quote fits between trades,
/// strictly inside `(start, end − 1)`.
fn arrivals(spec: &SegmentSpec, rng: &mut ChaCha8Rng) -> Vec<i64> {
    let max_rate = spec.intensity.max_rate();
    let mut times = Vec::with_capacity(spec.intensity.remaining(spec.start) as usize + 16);
    if max_rate <= 0.0 {
        return times;
    }
    let mut t = spec.start as f64;
    let mut last = spec.start;
    let cap = SEQ_OVERNIGHT_OFFSET as usize;
    loop {
        t += rng.sample::<f64, _>(Exp1) / max_rate;
        if t >= (spec.end - 1) as f64 || times.len() >= cap {
            break;
        }
        if rng.gen::<f64>() * max_rate < spec.intensity.rate(t as i64) {
            let at = (t as i64).max(last + 2);
            if at >= spec.end - 1 {
                break;
            }
            times.push(at);
            last = at;
        }
    }
    times
}

/// Alternating balance / trend periods of 20–90 minutes covering the segment; `true` = trend.
fn regime_schedule(spec: &SegmentSpec, rng: &mut ChaCha8Rng) -> Vec<(i64, i64, bool)> {
    let mut out = Vec::new();
    let mut trend = rng.gen_bool(0.5);
    let mut t = spec.start;
    while t < spec.end {
        let len = rng.gen_range(REGIME_MINUTES.0 * MINUTE..=REGIME_MINUTES.1 * MINUTE);
        let end = (t + len).min(spec.end);
        out.push((t, end, trend));
        t = end;
        trend = !trend;
    }
    out
}

/// A heavy-tailed trade size: odd lots, round lots with a Pareto lot count, mixed lots.
fn trade_size(rng: &mut ChaCha8Rng) -> u32 {
    let u: f64 = rng.gen();
    if u < 0.2 {
        // Odd lots lean small: retail orders and algorithm child orders.
        return 1 + (99.0 * rng.gen::<f64>().powi(2)) as u32;
    }
    let pareto = Pareto::new(1.0, 1.5).expect("valid Pareto parameters");
    let lots = rng.sample::<f64, _>(pareto).floor().min(1000.0) as u32;
    let odd = if u > 0.92 { rng.gen_range(1..100) } else { 0 };
    lots.max(1) * 100 + odd
}

/// Displayed size of one side of the book: whole lots, exponential with mean `1 + mean_lots`.
fn book_size(rng: &mut ChaCha8Rng, mean_lots: f64) -> u32 {
    100 * (1 + (rng.sample::<f64, _>(Exp1) * mean_lots).min(500.0) as u32)
}

/// Bid and ask ticks for fair value `f` and a spread of `spread` ticks.
fn quote_ticks(f: f64, spread: u32) -> (i64, i64) {
    let bid = ((f - spread as f64 / 2.0 + 0.5).floor() as i64).max(1);
    (bid, bid + spread as i64)
}

struct RegimeState {
    regime: Regime,
    /// Aggressive-buy probability in a trend.
    buy_share: f64,
}

fn simulate(m: &SymbolModel, idx: usize, spec: &SegmentSpec) -> Segment {
    let mut rng_time = ChaCha8Rng::seed_from_u64(splitmix(spec.seed ^ 1));
    let mut rng_regime = ChaCha8Rng::seed_from_u64(splitmix(spec.seed ^ 2));
    let mut rng = ChaCha8Rng::seed_from_u64(splitmix(spec.seed ^ 3));
    let times = arrivals(spec, &mut rng_time);
    let schedule = regime_schedule(spec, &mut rng_regime);

    // Per-trade parameters, all scaled by the regular session's expected trade count so the
    // same dynamics hold in event time whatever the trade budget.
    let n = m.trades;
    let day_sd = spec.open_ticks * m.daily_sigma; // one daily s.d. in ticks
    let noise = day_sd / n.sqrt();
    let balance_sd = BALANCE_WIDTH * day_sd;
    let reversion = (noise / balance_sd).powi(2) / 2.0;
    let drift = TREND_RATE * day_sd * session_hours() / n;
    let mid_share = (TREND_BUY_SHARE.0 + TREND_BUY_SHARE.1) / 2.0;
    let impact = drift / (2.0 * mid_share - 1.0);
    let floor_ticks = 2.0 * (m.spread_ticks + spec.spread_extra + 2) as f64;

    let mut f = spec.open_ticks;
    let mut centre = f;
    let mut events = Vec::with_capacity(times.len() * 2 + 1);
    let mut regimes = Vec::with_capacity(schedule.len());

    let start_regime = |i: usize, f: f64, rng: &mut ChaCha8Rng, regimes: &mut Vec<RegimeSpan>| {
        let (start_us, end_us, trend) = schedule[i];
        let state = if trend {
            // Imbalance more often heads where the day's value is going.
            let p_up = 0.5 + 0.3 * ((spec.target_ticks - f) / day_sd).tanh();
            let up = rng.gen_bool(p_up.clamp(0.0, 1.0));
            let share = rng.gen_range(TREND_BUY_SHARE.0..TREND_BUY_SHARE.1);
            if up {
                RegimeState { regime: Regime::TrendUp, buy_share: share }
            } else {
                RegimeState { regime: Regime::TrendDown, buy_share: 1.0 - share }
            }
        } else {
            RegimeState { regime: Regime::Balance, buy_share: 0.5 }
        };
        regimes.push(RegimeSpan { start_us, end_us, regime: state.regime });
        state
    };

    let mut ri = 0;
    let mut state = start_regime(0, f, &mut rng, &mut regimes);
    let mut spread = m.spread_ticks + spec.spread_extra;
    let (mut bid, mut ask) = quote_ticks(f, spread);
    let quote = |time_us: i64, bid: i64, ask: i64, buy_share: f64, rng: &mut ChaCha8Rng| DemoEvent::Quote {
        symbol_idx: idx,
        time_us,
        bid: m.price(bid),
        ask: m.price(ask),
        bid_size: book_size(rng, 1.0 + 8.0 * buy_share),
        ask_size: book_size(rng, 1.0 + 8.0 * (1.0 - buy_share)),
    };
    events.push(quote(spec.start, bid, ask, state.buy_share, &mut rng));

    for (k, &t) in times.iter().enumerate() {
        while t >= schedule[ri].1 {
            ri += 1;
            let was_trend = state.regime != Regime::Balance;
            state = start_regime(ri, f, &mut rng, &mut regimes);
            if was_trend && state.regime == Regime::Balance {
                centre = f;
            }
        }
        let balance = state.regime == Regime::Balance;
        let buy_share = if balance {
            (0.5 - RESPONSIVE_FLOW * (f - centre) / balance_sd).clamp(0.4, 0.6)
        } else {
            state.buy_share
        };
        let buy = rng.gen::<f64>() < buy_share;
        let (price, side) = if buy { (ask, Side::Buy) } else { (bid, Side::Sell) };
        events.push(DemoEvent::Trade {
            symbol_idx: idx,
            time_us: t,
            price: m.price(price),
            size: trade_size(&mut rng),
            side,
            seq: spec.seq_base + k as i64,
        });

        let sign = if buy { 1.0 } else { -1.0 };
        let z: f64 = rng.sample(StandardNormal);
        let pull = if balance { -reversion * (f - centre) } else { 0.0 };
        f = (f + pull + impact * sign + noise * z).max(floor_ticks);
        if balance {
            // Bridge price and value centre to the target so the segment ends near it, even
            // when trades are too sparse for the reversion alone to get there in time.
            let left = spec.intensity.remaining(t).max(1.0);
            f += (spec.target_ticks - f) / left;
            centre += (spec.target_ticks - centre) / left;
        }

        if rng.gen_bool(0.15) {
            let heat = spec.intensity.open_heat(t);
            let extra = if rng.gen_bool(0.15 + 0.35 * heat) { rng.gen_range(1..=2) } else { 0 };
            spread = m.spread_ticks + spec.spread_extra + extra;
        }
        let (new_bid, new_ask) = quote_ticks(f, spread);
        if (new_bid, new_ask) != (bid, ask) {
            (bid, ask) = (new_bid, new_ask);
            let next = times.get(k + 1).copied().unwrap_or(spec.end);
            let at = (t + rng.gen_range(20..=800)).min(next - 1);
            events.push(quote(at, bid, ask, buy_share, &mut rng));
        }
    }
    while ri + 1 < schedule.len() {
        ri += 1;
        start_regime(ri, f, &mut rng, &mut regimes);
    }
    Segment { events, regimes, close_ticks: f }
}

#[cfg(test)]
mod tests {
    use super::super::watchlist::watchlist;
    use super::*;
    use std::collections::HashMap;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn utc_us(y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
        day(y, m, d).and_hms_opt(h, min, 0).unwrap().and_utc().timestamp_micros()
    }

    /// A small trade budget keeps debug-build tests quick; the dynamics scale with it.
    fn market() -> DemoMarket {
        DemoMarket::new(7, watchlist()).with_trades_per_day(30_000)
    }

    /// The regular session of `day`.
    fn session(m: &mut DemoMarket, idx: usize, day: NaiveDate) -> Vec<DemoEvent> {
        let (open, close) = session_bounds(day);
        m.events(idx, open, close)
    }

    fn trades(events: &[DemoEvent]) -> Vec<(i64, f64, u32, Side, i64)> {
        events
            .iter()
            .filter_map(|e| match *e {
                DemoEvent::Trade { time_us, price, size, side, seq, .. } => {
                    Some((time_us, price, size, side, seq))
                }
                DemoEvent::Quote { .. } => None,
            })
            .collect()
    }

    #[test]
    fn calendar_follows_new_york_time_and_weekdays() {
        // Summer (EDT, UTC−4) and winter (EST, UTC−5).
        assert_eq!(session_bounds(day(2025, 7, 1)), (utc_us(2025, 7, 1, 13, 30), utc_us(2025, 7, 1, 20, 0)));
        assert_eq!(session_bounds(day(2025, 1, 6)), (utc_us(2025, 1, 6, 14, 30), utc_us(2025, 1, 6, 21, 0)));
        assert!(in_session(utc_us(2025, 7, 1, 13, 30)));
        assert!(!in_session(utc_us(2025, 7, 1, 20, 0)));
        assert!(!in_session(utc_us(2025, 7, 5, 15, 0)), "Saturday");
        assert!(in_session(utc_us(2025, 1, 6, 15, 0)));
        // Tuesday evening: the five trading days before Tuesday.
        let days = trading_days_before(utc_us(2025, 7, 2, 1, 0), 5);
        assert_eq!(
            days,
            vec![day(2025, 6, 24), day(2025, 6, 25), day(2025, 6, 26), day(2025, 6, 27), day(2025, 6, 30)]
        );
        assert_eq!(next_trading_day(day(2025, 7, 4)), day(2025, 7, 7));
        assert_eq!(prev_trading_day(day(2025, 7, 7)), day(2025, 7, 4));
        assert_eq!(seq_base(day(2025, 7, 1)), 20250701 * SEQ_DAY_FACTOR);
        assert_eq!(trading_day_index(day(1970, 1, 5)), 0);
        assert_eq!(trading_day_index(day(1970, 1, 12)), 5);
        assert_eq!(trading_day_index(day(1970, 1, 9)) + 1, trading_day_index(day(1970, 1, 12)));
    }

    #[test]
    fn same_seed_same_events_other_seed_other_events() {
        let d = day(2025, 3, 12);
        let a = session(&mut market(), 0, d);
        let b = session(&mut market(), 0, d);
        assert!(!a.is_empty());
        assert_eq!(a, b);
        let c = session(&mut DemoMarket::new(8, watchlist()).with_trades_per_day(30_000), 0, d);
        assert_ne!(trades(&a)[..50], trades(&c)[..50]);
        // A symbol's path does not depend on its position in the watchlist.
        let mut reversed = watchlist();
        reversed.reverse();
        let r = session(&mut DemoMarket::new(7, reversed).with_trades_per_day(30_000), 9, d);
        assert_eq!(trades(&a), trades(&r));
    }

    #[test]
    fn chunked_generation_equals_whole_range() {
        for always_open in [false, true] {
            let mut whole = market().with_always_open(always_open);
            // Thursday morning to Tuesday noon, across a weekend.
            let (from, to) = (utc_us(2025, 3, 13, 12, 0), utc_us(2025, 3, 18, 16, 0));
            let all = whole.events(3, from, to);
            assert!(!all.is_empty());
            let mut chunked = market().with_always_open(always_open);
            let mut pieces = Vec::new();
            let mut t = from;
            let mut step = 1_234_567;
            while t < to {
                let next = (t + step).min(to);
                pieces.extend(chunked.events(3, t, next));
                t = next;
                step = step * 7 % 3_600_000_000 + 999;
            }
            assert_eq!(all, pieces, "always_open = {always_open}");
            assert!(all.windows(2).all(|w| w[0].time_us() <= w[1].time_us()));
            assert!(all.iter().all(|e| (from..to).contains(&e.time_us())));
        }
    }

    #[test]
    fn regular_sessions_do_not_depend_on_mode_or_cache() {
        let d = day(2025, 3, 14);
        let mut open = market().with_always_open(true);
        // Warm the cache with the overnight segment first.
        let (_, close) = session_bounds(d);
        assert!(!open.events(2, close, close + 3_600_000_000).is_empty());
        let (start, end) = session_bounds(d);
        assert_eq!(open.events(2, start, end), session(&mut market(), 2, d));
        assert_eq!(session(&mut open, 2, d), session(&mut market(), 2, d));
    }

    #[test]
    fn trades_print_at_the_quote_with_their_true_side() {
        let mut m = market();
        for idx in 0..m.symbols().len() {
            let mut quote: Option<(f64, f64)> = None;
            for e in session(&mut m, idx, day(2025, 3, 12)) {
                match e {
                    DemoEvent::Quote { bid, ask, bid_size, ask_size, .. } => {
                        assert!(bid > 0.0 && bid < ask && bid_size > 0 && ask_size > 0);
                        quote = Some((bid, ask));
                    }
                    DemoEvent::Trade { price, side, .. } => {
                        let (bid, ask) = quote.expect("a quote precedes the first trade");
                        match side {
                            Side::Buy => assert_eq!(price, ask),
                            Side::Sell => assert_eq!(price, bid),
                            Side::Unknown => panic!("demo trades always know their side"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn prices_are_positive_on_the_grid_and_seq_increases() {
        let mut m = market().with_always_open(true);
        let (from, to) = (utc_us(2025, 3, 10, 0, 0), utc_us(2025, 3, 18, 0, 0));
        for idx in 0..m.symbols().len() {
            let tr = trades(&m.events(idx, from, to));
            assert!(tr.len() > 5_000);
            assert!(tr.windows(2).all(|w| w[0].4 < w[1].4 && w[0].0 < w[1].0), "seq and time increase");
            for &(_, price, ..) in &tr {
                assert!(price > 0.0);
                let cents = price * 100.0;
                assert!((cents - cents.round()).abs() < 1e-6, "{price} is on the cent grid");
            }
        }
    }

    #[test]
    fn sizes_are_positive_and_heavy_tailed() {
        let mut sizes: Vec<u32> =
            trades(&session(&mut market(), 0, day(2025, 3, 12))).iter().map(|t| t.2).collect();
        assert!(sizes.iter().all(|&s| s > 0));
        let round = sizes.iter().filter(|&&s| s % 100 == 0).count() as f64 / sizes.len() as f64;
        assert!((0.6..0.85).contains(&round), "round-lot share {round}");
        assert!(sizes.iter().any(|&s| s < 100), "odd lots");
        sizes.sort_unstable();
        let median = sizes[sizes.len() / 2];
        let max = *sizes.last().unwrap();
        assert!(max >= 50 * median, "max {max} median {median}");
    }

    #[test]
    fn trade_counts_follow_the_budget() {
        let mut m = market();
        let d = day(2025, 3, 12);
        let mut total = 0;
        for idx in 0..m.symbols().len() {
            let n = trades(&session(&mut m, idx, d)).len() as f64;
            let expected = m.expected_trades(idx);
            assert!((n / expected - 1.0).abs() < 0.05, "{n} vs {expected}");
            total += n as usize;
        }
        let budget = 30_000.0;
        assert!((total as f64 / budget - 1.0).abs() < 0.02, "{total}");
        let small = DemoMarket::new(7, watchlist()).with_trades_per_day(10_000);
        assert!((small.expected_trades(0) * 3.0 - m.expected_trades(0)).abs() < 1e-6);
    }

    #[test]
    fn volume_follows_a_u_curve() {
        let mut m = market();
        // Volume per 30-minute bucket of the session, summed over symbols and days.
        let mut buckets = [0u64; 13];
        for d in [day(2025, 3, 10), day(2025, 3, 11), day(2025, 3, 12)] {
            let (open, _) = session_bounds(d);
            for idx in 0..m.symbols().len() {
                for (t, _, size, ..) in trades(&session(&mut m, idx, d)) {
                    buckets[((t - open) / (30 * MINUTE)) as usize] += size as u64;
                }
            }
        }
        let midday = buckets[4..9].iter().sum::<u64>() / 5;
        assert!(buckets[0] > 3 * midday / 2, "{buckets:?}");
        assert!(buckets[12] > 3 * midday / 2, "{buckets:?}");
    }

    #[test]
    fn regimes_shape_the_order_flow() {
        let mut m = market();
        let mut counts: HashMap<Regime, (usize, usize)> = HashMap::new();
        for d in [day(2025, 3, 10), day(2025, 3, 11), day(2025, 3, 12), day(2025, 3, 13)] {
            for idx in 0..m.symbols().len() {
                let spans = m.regimes(idx, d);
                let (open, close) = session_bounds(d);
                assert_eq!((spans[0].start_us, spans.last().unwrap().end_us), (open, close));
                assert!(spans.windows(2).all(|w| w[0].end_us == w[1].start_us
                    && (w[0].regime == Regime::Balance) != (w[1].regime == Regime::Balance)));
                for (t, _, _, side, _) in trades(&session(&mut m, idx, d)) {
                    let span = spans.iter().find(|s| (s.start_us..s.end_us).contains(&t)).unwrap();
                    let c = counts.entry(span.regime).or_default();
                    c.0 += (side == Side::Buy) as usize;
                    c.1 += 1;
                }
            }
        }
        let share = |r: Regime| {
            let (buys, all) = counts[&r];
            assert!(all > 1000, "{r:?} has {all} trades");
            buys as f64 / all as f64
        };
        assert!(share(Regime::TrendUp) > 0.65, "up {}", share(Regime::TrendUp));
        assert!(share(Regime::TrendDown) < 0.35, "down {}", share(Regime::TrendDown));
        let balance = share(Regime::Balance);
        assert!((0.45..0.55).contains(&balance), "balance {balance}");
    }

    #[test]
    fn prices_stay_realistic() {
        let mut m = market();
        let mut ranges = Vec::new();
        let days: Vec<NaiveDate> = trading_days_before(utc_us(2025, 4, 1, 12, 0), 10);
        for idx in 0..m.symbols().len() {
            let reference = m.symbols()[idx].price;
            let mut last_close = None;
            for &d in &days {
                let tr = trades(&session(&mut m, idx, d));
                let (lo, hi) = tr.iter().fold((f64::MAX, f64::MIN), |(lo, hi), t| (lo.min(t.1), hi.max(t.1)));
                let open = tr[0].1;
                ranges.push((hi - lo) / open);
                assert!(
                    (open / reference).ln().abs() < 0.7,
                    "{} wandered to {open}",
                    m.symbols()[idx].symbol
                );
                if let Some(close) = last_close {
                    let gap: f64 = open / close - 1.0;
                    assert!(gap.abs() < 0.08, "overnight gap {gap}");
                }
                last_close = Some(tr.last().unwrap().1);
            }
        }
        ranges.sort_by(f64::total_cmp);
        let median = ranges[ranges.len() / 2];
        assert!((0.008..0.05).contains(&median), "median daily range {median}");
        assert!(*ranges.last().unwrap() < 0.15, "max daily range {}", ranges.last().unwrap());
    }

    #[test]
    fn always_open_fills_nights_and_weekends() {
        let sat = (utc_us(2025, 3, 15, 18, 0), utc_us(2025, 3, 15, 19, 0));
        let mut regular = market();
        assert!(regular.events(0, sat.0, sat.1).is_empty());
        let mut open = market().with_always_open(true);
        let ev = open.events(0, sat.0, sat.1);
        let n = trades(&ev).len();
        assert!(n > 50, "{n} trades in a Saturday hour");
        // Overnight sequence numbers follow Friday's session and precede Monday's.
        let seq = trades(&ev)[0].4;
        assert_eq!(seq / SEQ_DAY_FACTOR, 20250314);
        assert!(seq % SEQ_DAY_FACTOR >= SEQ_OVERNIGHT_OFFSET);
        // The weekend hands over to Monday's open without a large jump.
        let monday = session_bounds(day(2025, 3, 17)).0;
        let before = trades(&open.events(0, monday - 600_000_000, monday));
        let after = trades(&open.events(0, monday, monday + 600_000_000));
        let jump = after[0].1 / before.last().unwrap().1 - 1.0;
        assert!(jump.abs() < 0.03, "jump at the open {jump}");
    }

    /// Generation speed; run with `cargo test --release -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn generation_speed() {
        let mut m = DemoMarket::new(7, watchlist());
        let days = trading_days_before(utc_us(2025, 4, 1, 12, 0), 5);
        let started = std::time::Instant::now();
        let (mut n, mut events) = (0, 0);
        for &d in &days {
            for idx in 0..m.symbols().len() {
                let ev = session(&mut m, idx, d);
                events += ev.len();
                n += trades(&ev).len();
            }
        }
        let secs = started.elapsed().as_secs_f64();
        for idx in 0..m.symbols().len() {
            println!("{} {:.0} trades/day", m.symbols()[idx].symbol, m.expected_trades(idx));
        }
        println!(
            "{n} trades ({events} events) over {} symbol-days in {secs:.3} s: {:.0} trades/s",
            days.len() * m.symbols().len(),
            n as f64 / secs
        );
    }
}
