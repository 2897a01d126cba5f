//! Polymarket binary options: the L2 book of an outcome token, the venue's taker fee, and
//! fee-aware arbitrage across the books of a market (or of a neg-risk event).

pub mod arbitrage;
pub mod book;
pub mod fees;
