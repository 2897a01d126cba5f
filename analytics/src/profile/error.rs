//! Why a profile operation was refused.

use super::VaMethod;
use crate::candle::TradeError;
use crate::exact::SumOverflow;
use std::fmt;

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
    /// A volume sum that would leave the exact range (see [`crate::exact`]).
    SumOutOfRange {
        what: &'static str,
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
                write!(f, "profile: unsupported version {found} (this build reads 1 to {supported})")
            }
            ProfileError::SumOutOfRange { what } => write!(f, "profile: {what} out of range: {SumOverflow}"),
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
