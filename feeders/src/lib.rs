//! Tapeflow's market-data feeders: the providers, the routing that runs them for the symbols
//! of `tapeflow.symbols`, the one writer they share, and their health reports.
//! The `tapeflow-feed` binary (main.rs) is the command line over this library.

pub mod backfill;
pub mod demo;
pub mod demo_feed;
pub mod ingest_side;
pub mod progress;
pub mod provider;
pub mod providers;
pub mod routing;
pub mod shutdown;
pub mod sink;
pub mod status;
