//! Polymarket (CLOB V2): order signing and authentication ([`sign`], [`auth`]), the venue's
//! rounding rules ([`rounding`]). Paired arbitrage legs are sent by the arbitrage loop
//! (`crate::arbitrage`), which trades on paper unless live trading is configured explicitly.

pub mod auth;
pub mod clob;
pub mod paper;
pub mod rounding;
pub mod sign;
