//! The Auction Market Theory (AMT) market state of a bar.

use crate::profile::VaMethod;
use crate::strategy::{check_range, ParamError};
use serde::{Deserialize, Serialize};
use std::fmt;

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
