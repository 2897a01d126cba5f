//! The providers `tapeflow-feed run` and `tapeflow-feed backfill` know, by their name in
//! `tapeflow.symbols.provider`. Each is configured from its own environment variables.

pub mod alpaca;
pub mod alphavantage;
pub mod ig;
pub mod polymarket;

use crate::provider::Provider;
use std::sync::Arc;

pub const NAMES: &[&str] = &["alpaca", "alphavantage", "ig", "polymarket"];

/// The provider of that name, configured from the environment; `None` for a name no provider has.
pub fn build(name: &str) -> Option<anyhow::Result<Arc<dyn Provider>>> {
    Some(match name {
        "alpaca" => alpaca::from_env(),
        "alphavantage" => alphavantage::from_env(),
        "ig" => ig::from_env(),
        "polymarket" => polymarket::from_env(),
        _ => return None,
    })
}

/// Providers that create their own symbols (market discovery) and are configured to: routing
/// runs them even while `tapeflow.symbols` names none of theirs yet.
pub fn discovering() -> Vec<&'static str> {
    let mut out = Vec::new();
    if polymarket::discovery_enabled() {
        out.push(polymarket::NAME);
    }
    out
}
