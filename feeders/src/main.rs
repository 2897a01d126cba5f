//! tapeflow-feed: market-data feeders writing ticks, quotes and bars into PostgreSQL.
//!
//! `tapeflow-feed demo` runs the synthetic market (no account needed); `run` feeds every
//! active symbol of `tapeflow.symbols` from its provider; `backfill` loads a provider's history.

mod import;

use tapeflow_feeders::{backfill, demo_feed, routing};

const USAGE: &str = "usage:
  tapeflow-feed demo                      the simulated market (no account needed)
  tapeflow-feed run                       every active symbol of tapeflow.symbols, from its provider
  tapeflow-feed backfill <provider> --symbols A,B --from <time> [--to <time>]
  tapeflow-feed import [options] FILE...  trade and quote files (tapeflow-feed import --help)

Configuration is by environment variables; see README.md.";

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tapeflow_db::init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let metrics = tapeflow_db::telemetry::metrics_addr("TAPEFLOW_FEED_METRICS_ADDR", "127.0.0.1:9101");
    match args.first().map(String::as_str) {
        Some("demo") => {
            tapeflow_db::telemetry::serve_metrics("TAPEFLOW_FEED_METRICS_ADDR", metrics.as_deref())?;
            demo_feed::run(demo_feed::DemoConfig::from_env()?).await
        }
        Some("run") => {
            tapeflow_db::telemetry::serve_metrics("TAPEFLOW_FEED_METRICS_ADDR", metrics.as_deref())?;
            routing::run(routing::RunConfig::from_env()?).await
        }
        Some("backfill") => backfill::run(&args[1..]).await,
        Some("import") => import::run(&args[1..]).await,
        _ => usage(),
    }
}
