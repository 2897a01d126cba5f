//! Per-bar market reading: order-flow aggression, Auction Market Theory (AMT) state, LVN
//! proximity and time spent in each state.
//!
//! Everything here is a pure function of numbers the caller (normally
//! [`crate::engine::BarEngine`]) has already gathered, so live trading and backtests share it.
//! All volume-based quantities are ratios to the symbol's own average bar volume, so a thin
//! feed (IEX) and a consolidated one (SIP) give the same readings.

use crate::candle::Micros;
use crate::flow::pressure;
use crate::profile::VaMethod;
use crate::strategy::{check_range, ParamError};
use serde::{Deserialize, Serialize};
use std::fmt;

// ---------------------------------------------------------------------------------------------
// Aggression
// ---------------------------------------------------------------------------------------------

/// The side order flow is leaning to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FlowDirection {
    Buy,
    Sell,
    #[default]
    Neutral,
}

impl FlowDirection {
    /// `"buy"`, `"sell"` or `"neutral"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowDirection::Buy => "buy",
            FlowDirection::Sell => "sell",
            FlowDirection::Neutral => "neutral",
        }
    }
}

impl fmt::Display for FlowDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Volume of one closed bar split by aggressor side (measured or estimated).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct FlowBar {
    /// Total volume, including volume of unknown side.
    pub volume: f64,
    /// Buyer-initiated volume.
    pub buy: f64,
    /// Seller-initiated volume.
    pub sell: f64,
}

/// Parameters of [`aggression`]. Defaults are given with each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggressionParams {
    /// Bars before the current one whose mean volume is the "average bar volume" (default `20`).
    pub volume_lookback: u32,
    /// Bars (current included, current session only) over which delta and pressure are
    /// summed (default `5`).
    pub flow_lookback: u32,
    /// Volume ratio (bar / average) at which the spike component is full (default `3.0`); must be > 1.
    pub spike_full_ratio: f64,
    /// Net delta over the flow window, in average bars of volume, at which the delta
    /// component is full (default `2.0`).
    pub delta_full_bars: f64,
    /// Buy (or sell) share of the window's sided volume, in %, at which the pressure
    /// component is full (default `80.0`); must be in (50, 100].
    pub pressure_full_pct: f64,
    /// |bias| needed for a buy or sell direction, bias in [−1, 1] (default `0.25`).
    pub direction_threshold: f64,
}

impl Default for AggressionParams {
    fn default() -> Self {
        AggressionParams {
            volume_lookback: 20,
            flow_lookback: 5,
            spike_full_ratio: 3.0,
            delta_full_bars: 2.0,
            pressure_full_pct: 80.0,
            direction_threshold: 0.25,
        }
    }
}

impl AggressionParams {
    /// Checks every field's range; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("volume_lookback", self.volume_lookback as f64, 1.0, 10_000.0, "1 to 10000")?;
        check_range("flow_lookback", self.flow_lookback as f64, 1.0, 1_000.0, "1 to 1000")?;
        if !(self.spike_full_ratio > 1.0 && self.spike_full_ratio <= 100.0) {
            return Err(ParamError::out_of_range(
                "spike_full_ratio",
                self.spike_full_ratio,
                "above 1 up to 100",
            ));
        }
        if !(self.delta_full_bars > 0.0 && self.delta_full_bars <= 1_000.0) {
            return Err(ParamError::out_of_range(
                "delta_full_bars",
                self.delta_full_bars,
                "above 0 up to 1000",
            ));
        }
        if !(self.pressure_full_pct > 50.0 && self.pressure_full_pct <= 100.0) {
            return Err(ParamError::out_of_range(
                "pressure_full_pct",
                self.pressure_full_pct,
                "above 50 up to 100",
            ));
        }
        check_range("direction_threshold", self.direction_threshold, 0.0, 1.0, "0 to 1")
    }
}

/// How aggressive the recent order flow is, and to which side.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Aggression {
    /// 0–100, see [`aggression`].
    pub score: f64,
    /// Buy, sell or neutral, see [`aggression`].
    pub direction: FlowDirection,
    /// Signed lean in [−1, 1] behind `direction`.
    pub bias: f64,
    /// Current bar volume / average bar volume.
    pub volume_ratio: f64,
    /// Net delta (buy − sell) over the flow window, in average bars of volume.
    pub delta_momentum: f64,
    /// Buy share of the window's sided volume, % (50 when there is none).
    pub buy_pressure: f64,
    /// Sell share of the window's sided volume, % (50 when there is none).
    pub sell_pressure: f64,
}

/// Weight of the volume-spike component in the aggression score.
pub const SPIKE_WEIGHT: f64 = 0.2;
/// Weight of the normalised delta-momentum component.
pub const DELTA_WEIGHT: f64 = 0.4;
/// Weight of the buy/sell pressure component.
pub const PRESSURE_WEIGHT: f64 = 0.4;

/// Scores the aggression of the order flow ending at the last bar of `window`.
///
/// `window` holds the last `flow_lookback` bars of the session, current bar last;
/// `avg_volume` is the mean volume of the `volume_lookback` bars *before* the current one
/// (`None` without history). When it is missing or zero, the window's own mean volume is the
/// base, which makes the spike ratio 1 on a first bar.
///
/// With `base` the average bar volume, `B`/`S` the window's buy/sell sums and `cur` the
/// current bar:
///
/// | quantity | formula |
/// |---|---|
/// | volume ratio `r` | `cur.volume / base` |
/// | delta momentum `m` | `(B − S) / base` (average bars of net delta) |
/// | buy/sell pressure | `100·B/(B+S)`, `100·S/(B+S)` (50/50 when `B+S = 0`) |
/// | spike part `v` | `clamp((r − 1) / (spike_full_ratio − 1), 0, 1)` |
/// | delta part `d` | `clamp(abs(m) / delta_full_bars, 0, 1)` |
/// | pressure part `p` | `clamp((max(buy%, sell%) − 50) / (pressure_full_pct − 50), 0, 1)` |
/// | **score** | `100 · (0.2·v + 0.4·d + 0.4·p)` |
/// | bias | `0.5·clamp(m / delta_full_bars, −1, 1) + 0.5·clamp((buy% − sell%) / (2·(pressure_full_pct − 50)), −1, 1)` |
/// | **direction** | buy if `bias ≥ direction_threshold`, sell if `bias ≤ −direction_threshold`, else neutral |
///
/// Every term is a ratio of volumes, so multiplying all volumes by a constant leaves the
/// result unchanged, and swapping buy and sell volumes negates the bias exactly, so the
/// direction has no side preference. The volume spike adds to the score but carries no
/// direction.
pub fn aggression(window: &[FlowBar], avg_volume: Option<f64>, p: &AggressionParams) -> Aggression {
    let Some(cur) = window.last() else {
        return Aggression { buy_pressure: 50.0, sell_pressure: 50.0, ..Aggression::default() };
    };
    let window_mean = window.iter().map(|b| b.volume).sum::<f64>() / window.len() as f64;
    let base = match avg_volume {
        Some(a) if a > 0.0 => a,
        _ => window_mean,
    };
    let (buy, sell) = window.iter().fold((0.0, 0.0), |(b, s), x| (b + x.buy, s + x.sell));
    let (volume_ratio, delta_momentum) =
        if base > 0.0 { (cur.volume / base, (buy - sell) / base) } else { (0.0, 0.0) };
    let (buy_pressure, sell_pressure) = pressure(buy, sell);

    let spike = ((volume_ratio - 1.0) / (p.spike_full_ratio - 1.0)).clamp(0.0, 1.0);
    let delta = (delta_momentum.abs() / p.delta_full_bars).clamp(0.0, 1.0);
    let half_span = p.pressure_full_pct - 50.0;
    let press = ((buy_pressure.max(sell_pressure) - 50.0) / half_span).clamp(0.0, 1.0);
    let score = 100.0 * (SPIKE_WEIGHT * spike + DELTA_WEIGHT * delta + PRESSURE_WEIGHT * press);

    let bias = 0.5 * (delta_momentum / p.delta_full_bars).clamp(-1.0, 1.0)
        + 0.5 * ((buy_pressure - sell_pressure) / (2.0 * half_span)).clamp(-1.0, 1.0);
    let direction = if bias >= p.direction_threshold && bias > 0.0 {
        FlowDirection::Buy
    } else if bias <= -p.direction_threshold && bias < 0.0 {
        FlowDirection::Sell
    } else {
        FlowDirection::Neutral
    };
    Aggression { score, direction, bias, volume_ratio, delta_momentum, buy_pressure, sell_pressure }
}

// ---------------------------------------------------------------------------------------------
// Market state
// ---------------------------------------------------------------------------------------------

/// AMT market state of one bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MarketState {
    /// Price rotating in or around value: two-sided trade.
    #[default]
    Balance,
    /// Price accepted above value with upward initiative.
    ImbalanceUp,
    /// Price accepted below value with downward initiative.
    ImbalanceDown,
}

impl MarketState {
    /// All states, in the order used by reports.
    pub const ALL: [MarketState; 3] =
        [MarketState::Balance, MarketState::ImbalanceUp, MarketState::ImbalanceDown];

    /// `"balance"`, `"imbalance_up"` or `"imbalance_down"` (the SQL spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            MarketState::Balance => "balance",
            MarketState::ImbalanceUp => "imbalance_up",
            MarketState::ImbalanceDown => "imbalance_down",
        }
    }

    /// Parses [`MarketState::as_str`] output, case-insensitively.
    pub fn parse(s: &str) -> Option<MarketState> {
        MarketState::ALL.into_iter().find(|m| m.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for MarketState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which volume profile the value area comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProfileScope {
    /// Every bar of the current session (the developing session profile, reset per session).
    #[default]
    Session,
    /// The last `rolling_bars` bars, across session boundaries.
    Rolling,
}

/// Parameters of the market-state reading. Defaults are given with each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateParams {
    /// Share of the profile's volume in the value area, as a fraction (default `0.70`).
    pub value_area_pct: f64,
    /// How the value area grows from the POC: `"dalton"` (two rows a step) or `"single"`
    /// (default `dalton`).
    #[serde(with = "va_method_text")]
    pub va_method: VaMethod,
    /// Profile the value area is taken from: `"session"` or `"rolling"` (default `session`).
    pub profile_scope: ProfileScope,
    /// Bars in the rolling profile when `profile_scope` is `"rolling"` (default `60`).
    pub rolling_bars: u32,
    /// Momentum compares the close with the close this many bars earlier in the session (default `20`).
    pub momentum_lookback: u32,
    /// |momentum| in percent that counts as directional (default `0.2`).
    pub momentum_threshold_pct: f64,
    /// |buy% − sell%| over the flow window, in percentage points, that counts as
    /// directional (default `20.0`).
    pub pressure_threshold: f64,
    /// An LVN of the session profile within this many percent of the price is reported (default `0.1`).
    pub lvn_proximity_pct: f64,
}

impl Default for StateParams {
    fn default() -> Self {
        StateParams {
            value_area_pct: 0.70,
            va_method: VaMethod::Dalton,
            profile_scope: ProfileScope::Session,
            rolling_bars: 60,
            momentum_lookback: 20,
            momentum_threshold_pct: 0.2,
            pressure_threshold: 20.0,
            lvn_proximity_pct: 0.1,
        }
    }
}

impl StateParams {
    /// Checks every field's range; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), ParamError> {
        if !(self.value_area_pct > 0.0 && self.value_area_pct <= 1.0) {
            return Err(ParamError::out_of_range("value_area_pct", self.value_area_pct, "above 0 up to 1"));
        }
        check_range("rolling_bars", self.rolling_bars as f64, 1.0, 10_000.0, "1 to 10000")?;
        check_range("momentum_lookback", self.momentum_lookback as f64, 1.0, 10_000.0, "1 to 10000")?;
        if !(self.momentum_threshold_pct > 0.0 && self.momentum_threshold_pct <= 100.0) {
            return Err(ParamError::out_of_range(
                "momentum_threshold_pct",
                self.momentum_threshold_pct,
                "above 0 up to 100",
            ));
        }
        if !(self.pressure_threshold > 0.0 && self.pressure_threshold <= 100.0) {
            return Err(ParamError::out_of_range(
                "pressure_threshold",
                self.pressure_threshold,
                "above 0 up to 100",
            ));
        }
        check_range("lvn_proximity_pct", self.lvn_proximity_pct, 0.0, 100.0, "0 to 100")
    }
}

/// `VaMethod` as its lower-case name (`"dalton"`, `"single"`), the spelling SQL users type.
mod va_method_text {
    use crate::profile::VaMethod;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &VaMethod, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(m.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<VaMethod, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|e| D::Error::custom(format!("va_method: {e}")))
    }
}

/// Point of control and value-area bounds of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValueLevels {
    pub poc: f64,
    /// Value-area high.
    pub vah: f64,
    /// Value-area low.
    pub val: f64,
}

/// What the state reading looks at for one bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StateInput {
    /// The bar's close.
    pub price: f64,
    /// Value area of the configured profile; `None` while the profile is empty.
    pub value_area: Option<ValueLevels>,
    /// Momentum in percent (see [`momentum_pct`]); `None` until the lookback is filled.
    pub momentum_pct: Option<f64>,
    /// Buy pressure minus sell pressure over the flow window, in percentage points (−100..100).
    pub pressure: f64,
}

/// The three votes behind a state: +1 up, 0 flat, −1 down; `None` when the input is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Votes {
    pub location: Option<i8>,
    pub momentum: Option<i8>,
    pub pressure: i8,
}

/// Result of [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StateReading {
    pub state: MarketState,
    /// 0–100: the share of the vote weight supporting `state`.
    pub confidence: f64,
    /// Weighted sum of the votes, −5..5.
    pub score: i8,
    pub votes: Votes,
}

/// Vote weight of the price's location against the value area.
pub const LOCATION_VOTE_WEIGHT: i8 = 2;
/// Vote weight of momentum.
pub const MOMENTUM_VOTE_WEIGHT: i8 = 2;
/// Vote weight of order-flow pressure.
pub const PRESSURE_VOTE_WEIGHT: i8 = 1;
/// |score| at which the state is an imbalance.
pub const IMBALANCE_SCORE: i8 = 4;
const TOTAL_WEIGHT: i8 = LOCATION_VOTE_WEIGHT + MOMENTUM_VOTE_WEIGHT + PRESSURE_VOTE_WEIGHT;

/// Reads the AMT market state from price location, momentum and order-flow pressure.
///
/// Three votes, each +1 (up), 0 (flat) or −1 (down), weighted and summed into a score; no
/// vote overrides another.
///
/// | vote | weight | +1 when | 0 when | −1 when |
/// |---|---|---|---|---|
/// | location | 2 | `price > VAH` | `VAL ≤ price ≤ VAH` | `price < VAL` |
/// | momentum | 2 | `momentum% ≥ +momentum_threshold_pct` | in between | `momentum% ≤ −momentum_threshold_pct` |
/// | pressure | 1 | `buy% − sell% ≥ +pressure_threshold` | in between | `buy% − sell% ≤ −pressure_threshold` |
///
/// A missing momentum (lookback not yet filled) casts no vote. The decision is taken by the
/// first matching row:
///
/// | # | condition | state | confidence |
/// |---|---|---|---|
/// | 1 | no value area (empty profile) | Balance | 0 |
/// | 2 | score ≥ +4 | ImbalanceUp | 20 × weight of the +1 votes |
/// | 3 | score ≤ −4 | ImbalanceDown | 20 × weight of the −1 votes |
/// | 4 | otherwise | Balance | 20 × weight of the 0 votes |
///
/// So an imbalance needs price outside value *and* momentum away from value, with pressure
/// not pushing back (pressure agreeing lifts confidence from 80 to 100). Inside value the
/// state is always balance, whatever the flow; outside value without momentum it is balance
/// too (a probe not yet accepted). Rows 2 and 3 cannot both hold, so the order only matters
/// for row 1.
pub fn classify(input: &StateInput, p: &StateParams) -> StateReading {
    let sign = |up: bool, down: bool| -> i8 {
        if up {
            1
        } else if down {
            -1
        } else {
            0
        }
    };
    let location = input.value_area.map(|va| sign(input.price > va.vah, input.price < va.val));
    let momentum =
        input.momentum_pct.map(|m| sign(m >= p.momentum_threshold_pct, m <= -p.momentum_threshold_pct));
    let pressure = sign(input.pressure >= p.pressure_threshold, input.pressure <= -p.pressure_threshold);
    let votes = Votes { location, momentum, pressure };

    let weighted = [
        (location, LOCATION_VOTE_WEIGHT),
        (momentum, MOMENTUM_VOTE_WEIGHT),
        (Some(pressure), PRESSURE_VOTE_WEIGHT),
    ];
    let score: i8 = weighted.iter().map(|&(v, w)| v.unwrap_or(0) * w).sum();
    let weight_of =
        |target: i8| -> i8 { weighted.iter().filter(|(v, _)| *v == Some(target)).map(|(_, w)| w).sum() };
    let pct = |w: i8| 100.0 * f64::from(w) / f64::from(TOTAL_WEIGHT);

    let (state, confidence) = if location.is_none() {
        (MarketState::Balance, 0.0)
    } else if score >= IMBALANCE_SCORE {
        (MarketState::ImbalanceUp, pct(weight_of(1)))
    } else if score <= -IMBALANCE_SCORE {
        (MarketState::ImbalanceDown, pct(weight_of(-1)))
    } else {
        (MarketState::Balance, pct(weight_of(0)))
    };
    StateReading { state, confidence, score, votes }
}

/// Percentage change from `base` to `price`; `None` unless `base` is positive and both are
/// finite.
pub fn momentum_pct(base: f64, price: f64) -> Option<f64> {
    (base > 0.0 && base.is_finite() && price.is_finite()).then(|| (price - base) / base * 100.0)
}

// ---------------------------------------------------------------------------------------------
// LVN proximity
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Time in state
// ---------------------------------------------------------------------------------------------

/// Time spent in each state, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StateDurations {
    pub balance: Micros,
    pub imbalance_up: Micros,
    pub imbalance_down: Micros,
}

impl StateDurations {
    /// Time spent in `state`.
    pub fn get(&self, state: MarketState) -> Micros {
        match state {
            MarketState::Balance => self.balance,
            MarketState::ImbalanceUp => self.imbalance_up,
            MarketState::ImbalanceDown => self.imbalance_down,
        }
    }

    /// Total time covered.
    pub fn total(&self) -> Micros {
        self.balance + self.imbalance_up + self.imbalance_down
    }

    fn add(&mut self, state: MarketState, d: Micros) {
        match state {
            MarketState::Balance => self.balance += d,
            MarketState::ImbalanceUp => self.imbalance_up += d,
            MarketState::ImbalanceDown => self.imbalance_down += d,
        }
    }
}

/// Sums how long each state lasted in a per-bar series of `(time, state)` points.
///
/// Each point's state holds from its time until the next point's time; the last one holds
/// until `end` (nothing when `end` is `None` or not after it). Points are taken in time
/// order (a stable sort, so equal times keep their order and the earlier one lasts zero).
pub fn time_in_states(points: &[(Micros, MarketState)], end: Option<Micros>) -> StateDurations {
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|&(t, _)| t);
    let mut out = StateDurations::default();
    for (i, &(t, state)) in sorted.iter().enumerate() {
        let until = match sorted.get(i + 1) {
            Some(&(next, _)) => next,
            None => end.unwrap_or(t).max(t),
        };
        out.add(state, until - t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn va() -> Option<ValueLevels> {
        Some(ValueLevels { poc: 100.0, vah: 101.0, val: 99.0 })
    }

    fn read(price: f64, mom: Option<f64>, pressure: f64) -> StateReading {
        classify(
            &StateInput { price, value_area: va(), momentum_pct: mom, pressure },
            &StateParams::default(),
        )
    }

    #[test]
    fn momentum_is_in_percent() {
        assert_eq!(momentum_pct(100.0, 100.3).map(|m| (m * 1e9).round() / 1e9), Some(0.3));
        assert_eq!(momentum_pct(100.0, 100.0), Some(0.0));
        assert_eq!(momentum_pct(0.0, 1.0), None);
        assert_eq!(momentum_pct(f64::NAN, 1.0), None);
        // 0.15% is below the default 0.2% threshold (the predecessor's "1.5" meant 0.15%).
        assert_eq!(read(102.0, momentum_pct(100.0, 100.15), 0.0).votes.momentum, Some(0));
        assert_eq!(read(102.0, momentum_pct(100.0, 100.25), 0.0).votes.momentum, Some(1));
    }

    #[test]
    fn row1_no_value_area_is_balance_without_confidence() {
        let r = classify(
            &StateInput { price: 105.0, value_area: None, momentum_pct: Some(5.0), pressure: 90.0 },
            &StateParams::default(),
        );
        assert_eq!((r.state, r.confidence), (MarketState::Balance, 0.0));
        assert_eq!(r.votes.location, None);
    }

    #[test]
    fn row2_imbalance_up_needs_location_and_momentum() {
        let r = read(102.0, Some(0.5), 0.0);
        assert_eq!((r.state, r.confidence, r.score), (MarketState::ImbalanceUp, 80.0, 4));
        let r = read(102.0, Some(0.5), 30.0);
        assert_eq!((r.state, r.confidence, r.score), (MarketState::ImbalanceUp, 100.0, 5));
    }

    #[test]
    fn row3_imbalance_down_mirrors_row2() {
        let r = read(98.0, Some(-0.5), 0.0);
        assert_eq!((r.state, r.confidence, r.score), (MarketState::ImbalanceDown, 80.0, -4));
        let r = read(98.0, Some(-0.5), -30.0);
        assert_eq!((r.state, r.confidence), (MarketState::ImbalanceDown, 100.0));
    }

    #[test]
    fn row4_everything_else_is_balance() {
        // Inside value, everything up: still balance, only the location vote is flat.
        let r = read(100.5, Some(1.0), 50.0);
        assert_eq!((r.state, r.confidence, r.score), (MarketState::Balance, 40.0, 3));
        // Inside value and quiet: full confidence.
        let r = read(100.0, Some(0.0), 0.0);
        assert_eq!((r.state, r.confidence), (MarketState::Balance, 100.0));
        // Outside value but no momentum: a probe, not acceptance.
        let r = read(102.0, Some(0.1), 40.0);
        assert_eq!((r.state, r.score), (MarketState::Balance, 3));
        // Outside value with momentum but pressure pushing back: the pressure vote is not
        // overridden, it cancels.
        let r = read(102.0, Some(0.5), -30.0);
        assert_eq!((r.state, r.confidence, r.score), (MarketState::Balance, 0.0, 3));
        // Missing momentum casts no vote: location and pressure alone cannot make an imbalance.
        let r = read(102.0, None, 90.0);
        assert_eq!((r.state, r.score), (MarketState::Balance, 3));
        // The VA bounds are inside value.
        assert_eq!(read(101.0, Some(1.0), 50.0).votes.location, Some(0));
        assert_eq!(read(99.0, Some(-1.0), -50.0).votes.location, Some(0));
    }

    #[test]
    fn thresholds_are_inclusive() {
        let p = StateParams::default();
        assert_eq!(read(102.0, Some(p.momentum_threshold_pct), p.pressure_threshold).score, 5);
        assert_eq!(read(98.0, Some(-p.momentum_threshold_pct), -p.pressure_threshold).score, -5);
    }

    #[test]
    fn state_names_round_trip() {
        for s in MarketState::ALL {
            assert_eq!(MarketState::parse(s.as_str()), Some(s));
        }
        assert_eq!(MarketState::parse("IMBALANCE_UP"), Some(MarketState::ImbalanceUp));
        assert_eq!(MarketState::parse("unknown"), None);
    }

    fn bar(volume: f64, buy: f64, sell: f64) -> FlowBar {
        FlowBar { volume, buy, sell }
    }

    #[test]
    fn aggression_formula_by_hand() {
        let p = AggressionParams::default();
        // Average 100; current bar 200 (ratio 2 → spike 0.5); window buy 300, sell 100:
        // m = 2 avg bars (full), buy% 75 → pressure part 25/30.
        let w = [bar(100.0, 50.0, 50.0), bar(100.0, 50.0, 50.0), bar(200.0, 200.0, 0.0)];
        let a = aggression(&w, Some(100.0), &p);
        assert!((a.volume_ratio - 2.0).abs() < 1e-12);
        assert!((a.delta_momentum - 2.0).abs() < 1e-12);
        assert!((a.buy_pressure - 75.0).abs() < 1e-12);
        let want = 100.0 * (0.2 * 0.5 + 0.4 * 1.0 + 0.4 * (25.0 / 30.0));
        assert!((a.score - want).abs() < 1e-9, "{} vs {want}", a.score);
        assert_eq!(a.direction, FlowDirection::Buy);
    }

    #[test]
    fn aggression_of_nothing_is_neutral() {
        let p = AggressionParams::default();
        let a = aggression(&[], None, &p);
        assert_eq!((a.score, a.direction, a.buy_pressure), (0.0, FlowDirection::Neutral, 50.0));
        let a = aggression(&[bar(0.0, 0.0, 0.0)], Some(0.0), &p);
        assert_eq!((a.score, a.direction), (0.0, FlowDirection::Neutral));
        // A first bar has no history: ratio 1, no spike.
        let a = aggression(&[bar(500.0, 250.0, 250.0)], None, &p);
        assert_eq!((a.volume_ratio, a.score), (1.0, 0.0));
    }

    #[test]
    fn balanced_flow_is_neutral() {
        // Pressure and delta come from the same sided sums, so they cannot disagree in sign;
        // the predecessor's "80% buy but CVD −1500 → BUY" case cannot arise.
        let p = AggressionParams::default();
        let a = aggression(&[bar(100.0, 50.0, 50.0)], Some(100.0), &p);
        assert_eq!((a.direction, a.bias, a.score), (FlowDirection::Neutral, 0.0, 0.0));
        let a = aggression(&[bar(100.0, 45.0, 55.0)], Some(100.0), &p);
        assert_eq!(a.direction, FlowDirection::Neutral);
        let a = aggression(&[bar(100.0, 30.0, 70.0)], Some(100.0), &p);
        assert_eq!(a.direction, FlowDirection::Sell);
    }

    fn flow_bar() -> impl Strategy<Value = FlowBar> {
        (0u32..10_000, 0u32..=100, 0u32..=100).prop_map(|(v, b, s)| {
            let v = v as f64;
            let b = v * b as f64 / 100.0;
            let s = (v - b) * s as f64 / 100.0;
            FlowBar { volume: v, buy: b, sell: s }
        })
    }

    proptest! {
        #[test]
        fn aggression_is_scale_free(w in prop::collection::vec(flow_bar(), 1..10), avg in 1u32..10_000) {
            let p = AggressionParams::default();
            let a = aggression(&w, Some(avg as f64), &p);
            let scaled: Vec<FlowBar> =
                w.iter().map(|b| bar(b.volume * 100.0, b.buy * 100.0, b.sell * 100.0)).collect();
            let b = aggression(&scaled, Some(avg as f64 * 100.0), &p);
            prop_assert!((a.score - b.score).abs() < 1e-9);
            prop_assert!((a.bias - b.bias).abs() < 1e-9);
            prop_assert!((0.0..=100.0).contains(&a.score));
            prop_assert!((-1.0..=1.0).contains(&a.bias));
        }

        #[test]
        fn direction_is_symmetric(
            w in prop::collection::vec(flow_bar(), 1..10),
            avg in prop::option::of(0u32..10_000),
        ) {
            let p = AggressionParams::default();
            let avg = avg.map(f64::from);
            let a = aggression(&w, avg, &p);
            let mirrored: Vec<FlowBar> = w.iter().map(|b| bar(b.volume, b.sell, b.buy)).collect();
            let b = aggression(&mirrored, avg, &p);
            prop_assert_eq!(a.score, b.score);
            prop_assert_eq!(a.bias, -b.bias);
            let flipped = match a.direction {
                FlowDirection::Buy => FlowDirection::Sell,
                FlowDirection::Sell => FlowDirection::Buy,
                FlowDirection::Neutral => FlowDirection::Neutral,
            };
            prop_assert_eq!(b.direction, flipped);
        }

        #[test]
        fn state_is_symmetric(
            price in 95.0f64..105.0,
            mom in prop::option::of(-2.0f64..2.0),
            pr in -100.0f64..100.0,
        ) {
            let p = StateParams::default();
            let up = classify(&StateInput { price, value_area: va(), momentum_pct: mom, pressure: pr }, &p);
            let down = classify(
                &StateInput {
                    price: 200.0 - price,
                    value_area: va(),
                    momentum_pct: mom.map(|m| -m),
                    pressure: -pr,
                },
                &p,
            );
            let mirrored = match up.state {
                MarketState::ImbalanceUp => MarketState::ImbalanceDown,
                MarketState::ImbalanceDown => MarketState::ImbalanceUp,
                MarketState::Balance => MarketState::Balance,
            };
            prop_assert_eq!(down.state, mirrored);
            prop_assert_eq!(down.confidence, up.confidence);
            prop_assert!((0.0..=100.0).contains(&up.confidence));
        }
    }

    #[test]
    fn lvn_proximity_reports_the_nearest_within_range() {
        let lvns = [99.0, 100.05, 99.95, 101.0];
        let n = nearest_lvn(100.0, &lvns, 0.1).unwrap();
        assert_eq!(n.lvn, 99.95); // tie with 100.05 goes to the lower
        assert!(!n.above);
        assert!((n.distance_pct - 0.05).abs() < 1e-9);
        let n = nearest_lvn(100.02, &lvns, 0.1).unwrap();
        assert_eq!((n.lvn, n.above), (100.05, true));
        assert_eq!(nearest_lvn(100.0, &[99.0, 101.0], 0.1), None);
        assert_eq!(nearest_lvn(100.0, &[], 0.1), None);
    }

    #[test]
    fn durations_per_state() {
        use MarketState::*;
        let pts = [
            (0, Balance),
            (60, Balance),
            (120, ImbalanceUp),
            (180, ImbalanceUp),
            (240, Balance),
            (300, ImbalanceDown),
        ];
        let d = time_in_states(&pts, Some(360));
        assert_eq!((d.balance, d.imbalance_up, d.imbalance_down), (180, 120, 60));
        assert_eq!(d.total(), 360);
        assert_eq!(d.get(ImbalanceUp), 120);
        // Without an end the last point lasts nothing; order of input does not matter.
        let mut shuffled = pts;
        shuffled.reverse();
        let d = time_in_states(&shuffled, None);
        assert_eq!((d.balance, d.imbalance_up, d.imbalance_down), (180, 120, 0));
        assert_eq!(time_in_states(&[], Some(10)), StateDurations::default());
    }
}
