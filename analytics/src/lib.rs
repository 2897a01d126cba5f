//! Tapeflow's analytics: pure Rust, no database, no async. The PostgreSQL extension, the
//! feeders and the backtests all call into this crate so that each formula exists once.

pub mod atr;
pub mod backtest;
pub mod candle;
pub mod classify;
pub mod engine;
pub mod exact;
pub mod flow;
pub mod footprint;
pub mod ladder;
pub mod newest_minute;
pub mod polymarket;
pub mod profile;
pub mod risk;
pub mod side;
pub mod sizing;
pub mod state;
pub mod stats;
pub mod strategy;

pub use candle::{minute_of, Candle, Micros, TradeError, MINUTE};
pub use side::{Side, SideSource};
