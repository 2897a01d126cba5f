//! tapeflow-feed: market-data feeders writing ticks and quotes into PostgreSQL.
//!
//! `tapeflow-feed demo` runs the synthetic market (no account needed).

mod demo;
mod demo_feed;
mod ingest_side;
mod shutdown;

fn usage() -> ! {
    eprintln!("usage: tapeflow-feed demo\n\nConfiguration is by environment variables; see README.md.");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tapeflow_db::init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo_feed::run(demo_feed::DemoConfig::from_env()?).await,
        _ => usage(),
    }
}
