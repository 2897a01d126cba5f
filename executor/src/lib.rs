//! tapeflow-exec as a library: the executor core, its records, and the brokers.

pub mod arbitrage;
pub mod broker;
pub mod config;
pub mod exec;
pub mod records;
