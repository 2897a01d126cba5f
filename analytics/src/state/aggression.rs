//! Order-flow aggression: volume spike, delta momentum and buy/sell pressure.

use crate::flow::pressure;
use crate::strategy::{check_range, ParamError};
use serde::{Deserialize, Serialize};
use std::fmt;

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
