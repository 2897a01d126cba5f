//! Per-bar market reading: order-flow aggression, Auction Market Theory (AMT) state, LVN
//! proximity and time spent in each state.
//!
//! Everything here is a pure function of numbers the caller (normally
//! [`crate::engine::BarEngine`]) has already gathered, so live trading and backtests share it.
//! All volume-based quantities are ratios to the symbol's own average bar volume, so a thin
//! feed (IEX) and a consolidated one (SIP) give the same readings.
//!
//! | module | what |
//! |---|---|
//! | `aggression` | [`aggression`]: how aggressive recent order flow is, and to which side |
//! | `market` | [`classify`]: the AMT market state from location, momentum and pressure |
//! | `lvn` | [`nearest_lvn`]: the low-volume node near the price |
//! | `durations` | [`time_in_states`]: time spent in each state |

mod aggression;
mod durations;
mod lvn;
mod market;
#[cfg(test)]
mod tests;

pub use aggression::{
    aggression, Aggression, AggressionParams, FlowBar, FlowDirection, DELTA_WEIGHT, PRESSURE_WEIGHT,
    SPIKE_WEIGHT,
};
pub use durations::{time_in_states, StateDurations};
pub use lvn::{nearest_lvn, LvnProximity};
pub use market::{
    classify, momentum_pct, MarketState, ProfileScope, StateInput, StateParams, StateReading, ValueLevels,
    Votes, IMBALANCE_SCORE, LOCATION_VOTE_WEIGHT, MOMENTUM_VOTE_WEIGHT, PRESSURE_VOTE_WEIGHT,
};
