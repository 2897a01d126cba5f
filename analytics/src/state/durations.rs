//! Time spent in each market state.

use super::MarketState;
use crate::candle::Micros;
use serde::{Deserialize, Serialize};

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
