//! The Alpha Vantage provider: one-minute bars of `TIME_SERIES_INTRADAY` (extended hours) into
//! `tapeflow.bars_1m_imported`, polled live and walked month by month for history.
//!
//! Alpha Vantage is polled REST, not a stream: `stream` asks each symbol for its latest 100
//! bars every `TAPEFLOW_ALPHAVANTAGE_POLL_SECS`, `backfill` asks for whole months
//! (`month=YYYY-MM`, `outputsize=full`). Every request of the process waits its turn at one
//! pacer (`TAPEFLOW_ALPHAVANTAGE_RPM`, the key's limit). Times are converted from the zone the
//! answer's meta data names ([`answer`]).
//!
//! Answers the service gives with HTTP 200 instead of data decide what happens next: a
//! throttle (`Note`, `Information`) waits and asks again, however long it lasts; a refused key
//! or plan stops the provider with that text as its error; an invalid call (an unknown symbol)
//! is reported for that symbol while the others go on.

pub mod answer;
mod backfill;
pub mod client;
mod stream;

use crate::provider::{FeedCtx, Instrument, Provider};
use answer::BarTime;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use client::{Client, Pacer};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tapeflow_db::config::{env_parse, env_string};
use tokio::sync::watch;

pub const NAME: &str = "alphavantage";

/// The free tier's limit: 5 requests a minute (and 25 a day).
pub const DEFAULT_RPM: f64 = 5.0;

#[derive(Clone)]
pub struct Config {
    /// `ALPHAVANTAGE_API_KEY` (required).
    pub api_key: String,
    /// `TAPEFLOW_ALPHAVANTAGE_URL` (default `https://www.alphavantage.co`); requests go to `/query`.
    pub url: String,
    /// `TAPEFLOW_ALPHAVANTAGE_POLL_SECS`: each symbol is asked this often (default 60).
    pub poll: Duration,
    /// `TAPEFLOW_ALPHAVANTAGE_RPM`: requests a minute at most, all symbols together (default 5).
    pub rpm: f64,
    /// `TAPEFLOW_ALPHAVANTAGE_TIMEOUT_SECS`: one request, connection to last byte (default 60).
    pub timeout: Duration,
    /// `TAPEFLOW_ALPHAVANTAGE_THROTTLE_MAX_SECS`: the longest wait after throttle answers (default 900).
    pub throttle_max: Duration,
    /// `TAPEFLOW_ALPHAVANTAGE_BAR_TIME`: `start` (default) or `end`, which minute a time stamp names.
    pub bar_time: BarTime,
    /// `TAPEFLOW_ALPHAVANTAGE_ADJUSTED`: split/dividend-adjusted prices (default false: as traded).
    pub adjusted: bool,
    /// `TAPEFLOW_ALPHAVANTAGE_ENTITLEMENT`: `realtime` or `delayed` for plans that include them.
    pub entitlement: Option<String>,
    /// `TAPEFLOW_ALPHAVANTAGE_BACKFILL_DATATYPE`: `json` (default) or `csv` for history.
    pub backfill_csv: bool,
    /// `TAPEFLOW_ALPHAVANTAGE_MAX_BYTES`: the largest answer read (default 64 MiB).
    pub max_bytes: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("api_key", &"<redacted>")
            .field("url", &self.url)
            .field("poll", &self.poll)
            .field("rpm", &self.rpm)
            .field("timeout", &self.timeout)
            .field("throttle_max", &self.throttle_max)
            .field("bar_time", &self.bar_time)
            .field("adjusted", &self.adjusted)
            .field("entitlement", &self.entitlement)
            .field("backfill_csv", &self.backfill_csv)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

fn secs(name: &str, default: f64) -> anyhow::Result<Duration> {
    let v: f64 = env_parse(name)?.unwrap_or(default);
    anyhow::ensure!(v.is_finite() && v > 0.0 && v < 1e9, "{name}={v} must be a positive number of seconds");
    Ok(Duration::from_secs_f64(v))
}

impl Config {
    pub fn from_env() -> anyhow::Result<Config> {
        let api_key = env_string("ALPHAVANTAGE_API_KEY").ok_or_else(|| {
            anyhow::anyhow!(
                "ALPHAVANTAGE_API_KEY is not set (a free key: https://www.alphavantage.co/support/#api-key)"
            )
        })?;
        let rpm: f64 = env_parse("TAPEFLOW_ALPHAVANTAGE_RPM")?.unwrap_or(DEFAULT_RPM);
        anyhow::ensure!(
            rpm.is_finite() && rpm >= 0.01,
            "TAPEFLOW_ALPHAVANTAGE_RPM={rpm} must be at least 0.01 (a request every 100 minutes)"
        );
        let entitlement = env_string("TAPEFLOW_ALPHAVANTAGE_ENTITLEMENT");
        if let Some(e) = &entitlement {
            anyhow::ensure!(
                e == "realtime" || e == "delayed",
                "TAPEFLOW_ALPHAVANTAGE_ENTITLEMENT={e:?} is neither realtime nor delayed"
            );
        }
        let backfill_csv = match env_string("TAPEFLOW_ALPHAVANTAGE_BACKFILL_DATATYPE").as_deref() {
            None | Some("json") => false,
            Some("csv") => true,
            Some(other) => {
                anyhow::bail!("TAPEFLOW_ALPHAVANTAGE_BACKFILL_DATATYPE={other:?} is neither json nor csv")
            }
        };
        let max_bytes: usize = env_parse("TAPEFLOW_ALPHAVANTAGE_MAX_BYTES")?.unwrap_or(64 << 20);
        Ok(Config {
            api_key,
            url: env_string("TAPEFLOW_ALPHAVANTAGE_URL")
                .unwrap_or_else(|| "https://www.alphavantage.co".into()),
            poll: secs("TAPEFLOW_ALPHAVANTAGE_POLL_SECS", 60.0)?,
            rpm,
            timeout: secs("TAPEFLOW_ALPHAVANTAGE_TIMEOUT_SECS", 60.0)?,
            throttle_max: secs("TAPEFLOW_ALPHAVANTAGE_THROTTLE_MAX_SECS", 900.0)?,
            bar_time: env_parse("TAPEFLOW_ALPHAVANTAGE_BAR_TIME")?.unwrap_or(BarTime::Start),
            adjusted: env_parse("TAPEFLOW_ALPHAVANTAGE_ADJUSTED")?.unwrap_or(false),
            entitlement,
            backfill_csv,
            max_bytes: max_bytes.max(1024),
        })
    }
}

/// One pacer per process: the limit belongs to the key, not to a provider instance (routing
/// builds a new one after a restart).
fn pacer(rpm: f64) -> Arc<Pacer> {
    static PACER: OnceLock<Arc<Pacer>> = OnceLock::new();
    PACER.get_or_init(|| Arc::new(Pacer::new(rpm))).clone()
}

pub struct AlphaVantage {
    cfg: Config,
    client: Client,
    pacer: Arc<Pacer>,
}

impl std::fmt::Debug for AlphaVantage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlphaVantage").field("cfg", &self.cfg).finish()
    }
}

impl AlphaVantage {
    pub fn new(cfg: Config) -> anyhow::Result<AlphaVantage> {
        let client = Client::new(&cfg)?;
        let pacer = pacer(cfg.rpm);
        Ok(AlphaVantage { cfg, client, pacer })
    }
}

pub fn from_env() -> anyhow::Result<Arc<dyn Provider>> {
    Ok(Arc::new(AlphaVantage::new(Config::from_env()?)?))
}

#[async_trait]
impl Provider for AlphaVantage {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn stream(
        &self,
        ctx: FeedCtx,
        instruments: watch::Receiver<Vec<Instrument>>,
    ) -> anyhow::Result<()> {
        stream::run(self, ctx, instruments).await
    }

    async fn backfill(
        &self,
        ctx: FeedCtx,
        instruments: Vec<Instrument>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        backfill::run(self, ctx, instruments, from, to).await
    }
}

/// The text of a refusal that stops the provider.
fn fatal_text(r: &answer::Refusal) -> Option<String> {
    match r {
        answer::Refusal::BadKey(t) => {
            Some(format!("Alpha Vantage refused the key (ALPHAVANTAGE_API_KEY): {t}"))
        }
        answer::Refusal::NotEntitled(t) => Some(format!(
            "Alpha Vantage refused the request for this key's plan (outputsize=full, month= and \
             TAPEFLOW_ALPHAVANTAGE_ENTITLEMENT need a plan that includes them): {t}"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_key() {
        let cfg = Config {
            api_key: "SECRET-KEY-123".into(),
            url: "http://127.0.0.1:1".into(),
            poll: Duration::from_secs(60),
            rpm: 5.0,
            timeout: Duration::from_secs(60),
            throttle_max: Duration::from_secs(900),
            bar_time: BarTime::Start,
            adjusted: false,
            entitlement: None,
            backfill_csv: false,
            max_bytes: 1 << 20,
        };
        let p = AlphaVantage::new(cfg.clone()).unwrap();
        for text in [format!("{cfg:?}"), format!("{p:?}"), format!("{:?}", p.client)] {
            assert!(!text.contains("SECRET"), "{text}");
            assert!(text.contains("redacted"), "{text}");
        }
    }
}
