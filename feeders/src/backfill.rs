//! `tapeflow-feed backfill <provider> --symbols A,B --from <time> --to <time>`: loads a
//! provider's history for symbols already in `tapeflow.symbols`, through the same writer as
//! the live feed (so a re-run or an overlap with the live feed stores nothing twice).

use crate::provider::Instrument;
use crate::providers;
use crate::routing::Feeder;
use crate::sink::SinkConfig;
use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use clap::Parser;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "tapeflow-feed backfill", about = "Load a provider's history into Tapeflow")]
struct Args {
    /// The provider (alpaca, alphavantage, ig).
    provider: String,
    /// Comma-separated symbols, as named in tapeflow.symbols.
    #[arg(long, value_delimiter = ',', required = true)]
    symbols: Vec<String>,
    /// Start: an RFC 3339 time or a date (UTC midnight).
    #[arg(long, value_parser = parse_time)]
    from: DateTime<Utc>,
    /// End (exclusive); default now.
    #[arg(long, value_parser = parse_time)]
    to: Option<DateTime<Utc>>,
}

pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        .map_err(|_| {
            format!("{s:?} is neither an RFC 3339 time (2024-01-02T14:30:00Z) nor a date (2024-01-02)")
        })
}

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let args = Args::try_parse_from(std::iter::once("backfill".to_string()).chain(args.iter().cloned()))
        .unwrap_or_else(|e| e.exit());
    let to = args.to.unwrap_or_else(Utc::now);
    anyhow::ensure!(args.from < to, "--from {} is not before --to {}", args.from, to);
    let provider = providers::build(&args.provider).with_context(|| {
        format!("unknown provider {:?} (known: {})", args.provider, providers::NAMES.join(", "))
    })??;
    let url = tapeflow_db::database_url();
    let client = tapeflow_db::connect(&url, Duration::from_secs(10)).await?;
    let mut instruments = Vec::new();
    for s in &args.symbols {
        let row = client
            .query_opt(
                "SELECT symbol, coalesce(nullif(provider_ref, ''), symbol), tick_size, timezone, asset_class
                 FROM tapeflow.symbols WHERE symbol = $1",
                &[s],
            )
            .await?
            .with_context(|| {
                format!("symbol {s} is not in tapeflow.symbols; insert it first (with its tick_size and provider)")
            })?;
        instruments.push(Instrument {
            symbol: row.get(0),
            provider_ref: row.get(1),
            tick_size: row.get(2),
            timezone: row.get(3),
            asset_class: row.get(4),
        });
    }
    let feeder = Feeder::start(&url, SinkConfig::from_env()?, Duration::from_secs(1));
    let result = provider.backfill(feeder.ctx.clone(), instruments, args.from, to).await;
    let written = feeder.finish().await;
    eprintln!(
        "backfill {}: {} ticks, {} quotes, {} bars written ({} refused, see tapeflow.feed_rejects)",
        args.provider, written.ticks, written.quotes, written.bars, written.rejected
    );
    anyhow::ensure!(
        written.abandoned == 0,
        "{} records were not written: the database went away",
        written.abandoned
    );
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_and_dates_parse() {
        assert_eq!(super::parse_time("2024-01-02").unwrap().to_rfc3339(), "2024-01-02T00:00:00+00:00");
        assert_eq!(
            super::parse_time("2024-01-02T09:30:00-05:00").unwrap().to_rfc3339(),
            "2024-01-02T14:30:00+00:00"
        );
        assert!(super::parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
