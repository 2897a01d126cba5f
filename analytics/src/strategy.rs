//! The Auction Market Theory strategy: when a bar's reading becomes an entry or an exit.
//!
//! This module decides *whether* to trade and where the protective levels go. Sizing
//! (`risk_per_trade_pct`), slot limits (`max_positions`) and the daily loss gate
//! (`max_daily_loss_pct`) are carried in [`StrategyParams`] so one parameter document
//! configures a run, but they are applied by the backtest simulator and the executor, which see
//! the whole portfolio. Stops and targets are enforced there too (bracket orders, fill model);
//! the only exit decided here is the reversal exit.

use crate::side::Side;
use crate::state::{FlowDirection, MarketState};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A parameter outside its allowed range.
///
/// Unknown keys never reach this type: every parameter struct is
/// `#[serde(deny_unknown_fields)]`, so the deserializer (serde_json for jsonb) rejects them
/// with a message naming the key, e.g. ``unknown field `min_agression`, expected one of …``.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// The field, dotted when nested (`strategy.atr_stop_multiplier`).
    pub field: String,
    /// The rejected value as given.
    pub value: String,
    /// The allowed range, in words.
    pub allowed: String,
}

impl ParamError {
    /// An error for `field` holding `value`, which lies outside `allowed`.
    pub fn out_of_range(field: &str, value: impl fmt::Display, allowed: &str) -> ParamError {
        ParamError { field: field.to_string(), value: value.to_string(), allowed: allowed.to_string() }
    }

    /// The same error with the field prefixed by the enclosing parameter group.
    pub fn within(mut self, group: &str) -> ParamError {
        self.field = format!("{group}.{}", self.field);
        self
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parameter {} = {} is out of range (allowed: {})", self.field, self.value, self.allowed)
    }
}

impl std::error::Error for ParamError {}

/// `Ok` when `lo ≤ value ≤ hi` (NaN is always out of range).
pub(crate) fn check_range(
    field: &str,
    value: f64,
    lo: f64,
    hi: f64,
    allowed: &str,
) -> Result<(), ParamError> {
    if (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(ParamError::out_of_range(field, value, allowed))
    }
}

/// `Ok` when `0 < value ≤ hi`.
fn check_positive(field: &str, value: f64, hi: f64, allowed: &str) -> Result<(), ParamError> {
    if value > 0.0 && value <= hi {
        Ok(())
    } else {
        Err(ParamError::out_of_range(field, value, allowed))
    }
}

/// Strategy parameters. Missing keys take the defaults given with each field; unknown keys are errors.
/// Call [`StrategyParams::validate`] after deserializing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrategyParams {
    /// Minimum aggression score (0–100) for an entry (default `70`).
    pub min_aggression_score: f64,
    /// Stop distance in ATRs from the entry price (default `1.5`, range (0, 20]).
    pub atr_stop_multiplier: f64,
    /// Target distance in ATRs from the entry price (default `3.0`, range (0, 50]).
    pub atr_target_multiplier: f64,
    /// Whether balance-state bars may produce entries in the flow's direction (default `false`).
    pub allow_balance_trades: bool,
    /// Minimum aggression for a balance-state entry; the effective threshold is the larger of
    /// this and `min_aggression_score` (default `80`).
    pub balance_min_aggression: f64,
    /// Whether an open position gets an exit signal on an opposite imbalance with opposite
    /// flow (default `true`).
    pub exit_on_reversal: bool,
    /// Equity risked per trade, % (default `1.0`, range (0, 10]); applied by the simulator and
    /// the executor.
    pub risk_per_trade_pct: f64,
    /// Maximum simultaneous positions (default `3`, range 1–100); applied by the simulator and
    /// the executor.
    pub max_positions: u32,
    /// Daily loss, % of the day's starting equity, that blocks new entries (default `3.0`,
    /// range (0, 100]); applied by the simulator and the executor.
    pub max_daily_loss_pct: f64,
}

impl Default for StrategyParams {
    fn default() -> Self {
        StrategyParams {
            min_aggression_score: 70.0,
            atr_stop_multiplier: 1.5,
            atr_target_multiplier: 3.0,
            allow_balance_trades: false,
            balance_min_aggression: 80.0,
            exit_on_reversal: true,
            risk_per_trade_pct: 1.0,
            max_positions: 3,
            max_daily_loss_pct: 3.0,
        }
    }
}

impl StrategyParams {
    /// Checks every field's range; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("min_aggression_score", self.min_aggression_score, 0.0, 100.0, "0 to 100")?;
        check_positive("atr_stop_multiplier", self.atr_stop_multiplier, 20.0, "above 0 up to 20")?;
        check_positive("atr_target_multiplier", self.atr_target_multiplier, 50.0, "above 0 up to 50")?;
        check_range("balance_min_aggression", self.balance_min_aggression, 0.0, 100.0, "0 to 100")?;
        check_positive("risk_per_trade_pct", self.risk_per_trade_pct, 10.0, "above 0 up to 10")?;
        check_range("max_positions", f64::from(self.max_positions), 1.0, 100.0, "1 to 100")?;
        check_positive("max_daily_loss_pct", self.max_daily_loss_pct, 100.0, "above 0 up to 100")
    }
}

/// Whether a signal opens or closes a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalKind {
    Entry,
    Exit,
}

impl SignalKind {
    /// `"entry"` or `"exit"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Entry => "entry",
            SignalKind::Exit => "exit",
        }
    }
}

/// A trading signal produced at the close of a bar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub kind: SignalKind,
    /// The position's side: the side to open for an entry, the side being closed for an exit.
    pub side: Side,
    /// The bar's close; the fill model or broker decides the actual fill.
    pub price: f64,
    /// Protective stop for an entry (`price ∓ ATR × atr_stop_multiplier`); `None` for an exit.
    pub stop: Option<f64>,
    /// Profit target for an entry (`price ± ATR × atr_target_multiplier`); `None` for an exit.
    pub target: Option<f64>,
    /// ATR at the bar, when known.
    pub atr: Option<f64>,
    /// Why, in words.
    pub reason: String,
    /// Aggression score at the bar.
    pub aggression: f64,
    /// Flow direction at the bar.
    pub direction: FlowDirection,
    /// Market state at the bar.
    pub state: MarketState,
    /// Confidence of the state, 0–100.
    pub confidence: f64,
}

/// The reading of one closed bar that the strategy decides on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StrategyInput {
    /// The bar's close.
    pub price: f64,
    pub state: MarketState,
    /// State confidence, 0–100 (reported, not gated on).
    pub confidence: f64,
    /// Aggression score, 0–100.
    pub aggression: f64,
    pub direction: FlowDirection,
    /// ATR at the bar; `None` during its warm-up.
    pub atr: Option<f64>,
}

/// The entry signal for a flat book, if any. Rules, in order:
///
/// | # | condition | result |
/// |---|---|---|
/// | 1 | price not finite and positive, or ATR missing, not finite or ≤ 0 | none |
/// | 2 | ImbalanceUp, direction buy, aggression ≥ `min_aggression_score` | long |
/// | 3 | ImbalanceDown, direction sell, aggression ≥ `min_aggression_score` | short |
/// | 4 | Balance, `allow_balance_trades`, direction not neutral, aggression ≥ max(`min_aggression_score`, `balance_min_aggression`) | the flow's side |
/// | 5 | otherwise | none |
///
/// Long: stop = price − ATR × `atr_stop_multiplier`, target = price + ATR × `atr_target_multiplier`;
/// short mirrors it.
pub fn entry_signal(input: &StrategyInput, p: &StrategyParams) -> Option<Signal> {
    let atr = input.atr.filter(|a| a.is_finite() && *a > 0.0)?;
    if !(input.price.is_finite() && input.price > 0.0) {
        return None;
    }
    let dir_side = match input.direction {
        FlowDirection::Buy => Some(Side::Buy),
        FlowDirection::Sell => Some(Side::Sell),
        FlowDirection::Neutral => None,
    };
    let (side, threshold) = match (input.state, dir_side) {
        (MarketState::ImbalanceUp, Some(Side::Buy)) => (Side::Buy, p.min_aggression_score),
        (MarketState::ImbalanceDown, Some(Side::Sell)) => (Side::Sell, p.min_aggression_score),
        (MarketState::Balance, Some(side)) if p.allow_balance_trades => {
            (side, p.min_aggression_score.max(p.balance_min_aggression))
        }
        _ => return None,
    };
    if input.aggression < threshold {
        return None;
    }
    let sign = side.sign();
    let reason = format!(
        "{} (confidence {:.0}) with aggressive {} flow (aggression {:.1} >= {:.1}): {} at {}, \
         stop {} ATR, target {} ATR",
        input.state,
        input.confidence,
        input.direction,
        input.aggression,
        threshold,
        if side == Side::Buy { "long" } else { "short" },
        input.price,
        p.atr_stop_multiplier,
        p.atr_target_multiplier,
    );
    Some(Signal {
        kind: SignalKind::Entry,
        side,
        price: input.price,
        stop: Some(input.price - sign * atr * p.atr_stop_multiplier),
        target: Some(input.price + sign * atr * p.atr_target_multiplier),
        atr: Some(atr),
        reason,
        aggression: input.aggression,
        direction: input.direction,
        state: input.state,
        confidence: input.confidence,
    })
}

/// The reversal exit for an open position on `position`'s side, if any: a long exits on
/// ImbalanceDown with sell flow, a short on ImbalanceUp with buy flow (when
/// `exit_on_reversal`). Stops and targets are not checked here.
pub fn exit_signal(input: &StrategyInput, position: Side, p: &StrategyParams) -> Option<Signal> {
    if !p.exit_on_reversal {
        return None;
    }
    let reverses = match position {
        Side::Buy => input.state == MarketState::ImbalanceDown && input.direction == FlowDirection::Sell,
        Side::Sell => input.state == MarketState::ImbalanceUp && input.direction == FlowDirection::Buy,
        Side::Unknown => false,
    };
    if !reverses {
        return None;
    }
    let reason = format!(
        "{} (confidence {:.0}) with aggressive {} flow (aggression {:.1}) against the {} position: \
         exit at {}",
        input.state,
        input.confidence,
        input.direction,
        input.aggression,
        if position == Side::Buy { "long" } else { "short" },
        input.price,
    );
    Some(Signal {
        kind: SignalKind::Exit,
        side: position,
        price: input.price,
        stop: None,
        target: None,
        atr: input.atr,
        reason,
        aggression: input.aggression,
        direction: input.direction,
        state: input.state,
        confidence: input.confidence,
    })
}

/// The signal for a bar given the current position: [`entry_signal`] when flat (`None`),
/// [`exit_signal`] when long or short. A position of unknown side gets no signal.
pub fn evaluate(input: &StrategyInput, position: Option<Side>, p: &StrategyParams) -> Option<Signal> {
    match position {
        None => entry_signal(input, p),
        Some(side) => exit_signal(input, side, p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::value::{Error as DeError, MapDeserializer};

    fn input(state: MarketState, direction: FlowDirection, aggression: f64) -> StrategyInput {
        StrategyInput { price: 100.0, state, confidence: 80.0, aggression, direction, atr: Some(0.5) }
    }

    #[test]
    fn long_entry_with_atr_levels() {
        let s = entry_signal(
            &input(MarketState::ImbalanceUp, FlowDirection::Buy, 75.0),
            &StrategyParams::default(),
        )
        .unwrap();
        assert_eq!((s.kind, s.side, s.price), (SignalKind::Entry, Side::Buy, 100.0));
        assert_eq!((s.stop, s.target), (Some(99.25), Some(101.5)));
        assert_eq!(
            s.reason,
            "imbalance_up (confidence 80) with aggressive buy flow (aggression 75.0 >= 70.0): long at 100, \
             stop 1.5 ATR, target 3 ATR"
        );
    }

    #[test]
    fn short_entry_mirrors() {
        let s = entry_signal(
            &input(MarketState::ImbalanceDown, FlowDirection::Sell, 70.0),
            &StrategyParams::default(),
        )
        .unwrap();
        assert_eq!(s.side, Side::Sell);
        assert_eq!((s.stop, s.target), (Some(100.75), Some(98.5)));
    }

    #[test]
    fn no_entry_without_agreement_score_or_atr() {
        let p = StrategyParams::default();
        // State and flow disagree.
        assert!(entry_signal(&input(MarketState::ImbalanceDown, FlowDirection::Buy, 100.0), &p).is_none());
        assert!(entry_signal(&input(MarketState::ImbalanceUp, FlowDirection::Sell, 100.0), &p).is_none());
        assert!(entry_signal(&input(MarketState::ImbalanceUp, FlowDirection::Neutral, 100.0), &p).is_none());
        // Aggression below the threshold.
        assert!(entry_signal(&input(MarketState::ImbalanceUp, FlowDirection::Buy, 69.9), &p).is_none());
        // ATR missing or zero.
        for atr in [None, Some(0.0), Some(f64::NAN)] {
            let i = StrategyInput { atr, ..input(MarketState::ImbalanceUp, FlowDirection::Buy, 90.0) };
            assert!(entry_signal(&i, &p).is_none());
        }
        // Balance trades are off by default.
        assert!(entry_signal(&input(MarketState::Balance, FlowDirection::Buy, 100.0), &p).is_none());
    }

    #[test]
    fn balance_entries_when_allowed_follow_flow_above_the_higher_threshold() {
        let p = StrategyParams { allow_balance_trades: true, ..StrategyParams::default() };
        let s = entry_signal(&input(MarketState::Balance, FlowDirection::Sell, 85.0), &p).unwrap();
        assert_eq!(s.side, Side::Sell);
        assert!(entry_signal(&input(MarketState::Balance, FlowDirection::Sell, 75.0), &p).is_none());
        assert!(entry_signal(&input(MarketState::Balance, FlowDirection::Neutral, 100.0), &p).is_none());
    }

    #[test]
    fn reversal_exits_only_against_the_position() {
        let p = StrategyParams::default();
        let down = input(MarketState::ImbalanceDown, FlowDirection::Sell, 40.0);
        let s = evaluate(&down, Some(Side::Buy), &p).unwrap();
        assert_eq!((s.kind, s.side, s.stop), (SignalKind::Exit, Side::Buy, None));
        assert!(s.reason.contains("against the long position"));
        assert!(evaluate(&down, Some(Side::Sell), &p).is_none());
        assert!(evaluate(&down, Some(Side::Unknown), &p).is_none());
        let up = input(MarketState::ImbalanceUp, FlowDirection::Buy, 40.0);
        assert_eq!(evaluate(&up, Some(Side::Sell), &p).unwrap().side, Side::Sell);
        // Opposite state without opposite flow is not enough.
        assert!(evaluate(
            &input(MarketState::ImbalanceDown, FlowDirection::Neutral, 90.0),
            Some(Side::Buy),
            &p
        )
        .is_none());
        let off = StrategyParams { exit_on_reversal: false, ..p };
        assert!(evaluate(&down, Some(Side::Buy), &off).is_none());
        // An open position never gets an entry.
        assert!(evaluate(&input(MarketState::ImbalanceUp, FlowDirection::Buy, 100.0), Some(Side::Buy), &p)
            .is_none());
    }

    #[test]
    fn validation_names_the_field_and_range() {
        assert_eq!(StrategyParams::default().validate(), Ok(()));
        let e = StrategyParams { min_aggression_score: 150.0, ..StrategyParams::default() }
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "min_aggression_score");
        assert_eq!(e.to_string(), "parameter min_aggression_score = 150 is out of range (allowed: 0 to 100)");
        let e =
            StrategyParams { atr_stop_multiplier: 0.0, ..StrategyParams::default() }.validate().unwrap_err();
        assert_eq!(e.field, "atr_stop_multiplier");
        let e = StrategyParams { max_positions: 0, ..StrategyParams::default() }.validate().unwrap_err();
        assert_eq!((e.field.as_str(), e.allowed.as_str()), ("max_positions", "1 to 100"));
        let e = StrategyParams { risk_per_trade_pct: f64::NAN, ..StrategyParams::default() }
            .validate()
            .unwrap_err();
        assert_eq!(e.within("strategy").field, "strategy.risk_per_trade_pct");
    }

    #[test]
    fn deserializing_fills_defaults_and_rejects_unknown_keys() {
        let d: MapDeserializer<_, DeError> =
            MapDeserializer::new(vec![("min_aggression_score", 55.0)].into_iter());
        let p = StrategyParams::deserialize(d).unwrap();
        assert_eq!(p, StrategyParams { min_aggression_score: 55.0, ..StrategyParams::default() });

        let d: MapDeserializer<_, DeError> =
            MapDeserializer::new(vec![("min_agression_score", 55.0)].into_iter());
        let e = StrategyParams::deserialize(d).unwrap_err().to_string();
        assert!(e.contains("unknown field `min_agression_score`"), "{e}");
    }
}
