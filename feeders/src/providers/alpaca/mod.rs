//! The `alpaca` provider: Alpaca's market data v2 for US stocks.
//!
//! Live ([`stream`]): one WebSocket per feeder (Alpaca allows one per account and feed), trades,
//! quotes and minute bars for every routed symbol, subscriptions following `tapeflow.symbols`
//! as it changes. Trades carry no aggressor side: each is classified at ingest by Lee-Ready on
//! the stream's own quotes (`side_source = 'inferred'`), with its exchange and conditions kept.
//! After every (re)connect, and for each symbol on start, the time the stream did not cover is
//! loaded from the REST history ([`rest`]), so that no trade is lost; trades carry the same id
//! and time both ways, so the writer stores each once.
//!
//! History ([`Provider::backfill`]): the REST trades (and quotes, to classify them) of a
//! window, page by page, with a progress bar, resuming where an interrupted run stopped
//! (`tapeflow.backfill_progress`).
//!
//! Minute bars go to `tapeflow.vendor_bars_1m`, a completeness check of the stored ticks, not
//! to `tapeflow.bars_1m_imported` (which would count each minute's volume twice).

pub mod frames;
pub mod rest;
mod store;
mod stream;

use crate::provider::{FeedCtx, Instrument, Provider};
use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const NAME: &str = "alpaca";

const DEFAULT_WS_BASE: &str = "wss://stream.data.alpaca.markets/v2";
const DEFAULT_REST_URL: &str = "https://data.alpaca.markets";

/// What the history loads do with the quotes they read to classify trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryQuotes {
    /// Read them for Lee-Ready and store them in `tapeflow.quotes`.
    Store,
    /// Read them for Lee-Ready only.
    Classify,
    /// Do not read them: trades are classified by the tick rule alone.
    Off,
}

/// The provider's settings (see the README's configuration table).
#[derive(Clone)]
pub struct AlpacaDataConfig {
    pub key_id: String,
    pub secret_key: String,
    /// `iex` or `sip`.
    pub feed: String,
    pub ws_url: String,
    pub rest_url: String,
    /// Subscribe to (and store) quotes; without them Lee-Ready falls back to the tick rule.
    pub quotes: bool,
    /// Subscribe to minute bars (kept in `tapeflow.vendor_bars_1m`).
    pub bars: bool,
    /// Connect, handshake and REST request timeout.
    pub timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Backoff after "connection limit exceeded" (another client holds the account's slot).
    pub limit_min: Duration,
    pub limit_max: Duration,
    /// Pause after a refusal that retrying cannot fix (keys, plan), before trying again.
    pub stop_pause: Duration,
    pub ping_every: Duration,
    /// Items per REST page (Alpaca allows up to 10,000).
    pub page_limit: u32,
    /// Wait before loading a gap, so that the history has caught up with the stream.
    pub gap_delay: Duration,
    /// The longest gap the live feed loads by itself (older history: `tapeflow-feed backfill`).
    pub gap_max: Duration,
    pub history_quotes: HistoryQuotes,
    /// Quotes read before a history window, so its first trades have a quote in force.
    pub quote_lookback: Duration,
    /// A stream frame longer than this is skipped as unreadable.
    pub max_frame_bytes: usize,
    /// REST attempts for one page before a load gives up (429 waits do not count).
    pub rest_attempts: u32,
}

impl std::fmt::Debug for AlpacaDataConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlpacaDataConfig")
            .field("key_id", &self.key_id)
            .field("secret_key", &"<redacted>")
            .field("feed", &self.feed)
            .field("ws_url", &self.ws_url)
            .field("rest_url", &self.rest_url)
            .field("quotes", &self.quotes)
            .field("bars", &self.bars)
            .finish_non_exhaustive()
    }
}

impl AlpacaDataConfig {
    pub fn from_env() -> anyhow::Result<AlpacaDataConfig> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`AlpacaDataConfig::from_env`] reading variables through `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<AlpacaDataConfig> {
        let vars = tapeflow_db::config::Vars(var);
        let get = |name: &str| vars.get(name);
        let parse = |name: &str, default: u64| vars.u64(name, default);
        let flag = |name: &str, default: bool| vars.flag(name, default);
        let key_id =
            get("APCA_API_KEY_ID").context("APCA_API_KEY_ID is not set (required by the alpaca provider)")?;
        let secret_key = get("APCA_API_SECRET_KEY")
            .context("APCA_API_SECRET_KEY is not set (required by the alpaca provider)")?;
        let feed = get("TAPEFLOW_ALPACA_FEED").unwrap_or_else(|| "iex".into()).to_ascii_lowercase();
        anyhow::ensure!(
            feed == "iex" || feed == "sip",
            "TAPEFLOW_ALPACA_FEED={feed:?}: expected iex (free) or sip (paid plans)"
        );
        let ws_url =
            get("TAPEFLOW_ALPACA_DATA_WS_URL").unwrap_or_else(|| format!("{DEFAULT_WS_BASE}/{feed}"));
        let rest_url = get("TAPEFLOW_ALPACA_DATA_URL").unwrap_or_else(|| DEFAULT_REST_URL.into());
        for (name, url) in [("TAPEFLOW_ALPACA_DATA_WS_URL", &ws_url), ("TAPEFLOW_ALPACA_DATA_URL", &rest_url)]
        {
            url::Url::parse(url).with_context(|| format!("{name}={url:?} is not a URL"))?;
        }
        let history_quotes = match get("TAPEFLOW_ALPACA_HISTORY_QUOTES").as_deref() {
            None | Some("store") => HistoryQuotes::Store,
            Some("classify") => HistoryQuotes::Classify,
            Some("off") => HistoryQuotes::Off,
            Some(other) => {
                anyhow::bail!("TAPEFLOW_ALPACA_HISTORY_QUOTES={other:?}: expected store, classify or off")
            }
        };
        let page_limit = parse("TAPEFLOW_ALPACA_PAGE_LIMIT", 10_000)?;
        anyhow::ensure!(
            (1..=10_000).contains(&page_limit),
            "TAPEFLOW_ALPACA_PAGE_LIMIT={page_limit}: Alpaca pages hold 1 to 10,000 items"
        );
        let ms = |name: &str, default: u64| parse(name, default).map(Duration::from_millis);
        let cfg = AlpacaDataConfig {
            key_id,
            secret_key,
            feed,
            ws_url: ws_url.trim_end_matches('/').to_string(),
            rest_url: rest_url.trim_end_matches('/').to_string(),
            quotes: flag("TAPEFLOW_ALPACA_QUOTES", true)?,
            bars: flag("TAPEFLOW_ALPACA_BARS", true)?,
            timeout: ms("TAPEFLOW_ALPACA_TIMEOUT_MS", 10_000)?.max(Duration::from_millis(1)),
            reconnect_min: ms("TAPEFLOW_ALPACA_RECONNECT_MIN_MS", 500)?,
            reconnect_max: ms("TAPEFLOW_ALPACA_RECONNECT_MAX_MS", 30_000)?,
            limit_min: ms("TAPEFLOW_ALPACA_LIMIT_BACKOFF_MIN_MS", 30_000)?,
            limit_max: ms("TAPEFLOW_ALPACA_LIMIT_BACKOFF_MAX_MS", 300_000)?,
            stop_pause: ms("TAPEFLOW_ALPACA_STOP_PAUSE_MS", 600_000)?,
            ping_every: ms("TAPEFLOW_ALPACA_PING_MS", 20_000)?.max(Duration::from_millis(10)),
            page_limit: page_limit as u32,
            gap_delay: ms("TAPEFLOW_ALPACA_GAP_DELAY_MS", 2_000)?,
            gap_max: Duration::from_secs(parse("TAPEFLOW_ALPACA_GAP_MAX_HOURS", 72)? * 3600),
            history_quotes,
            quote_lookback: Duration::from_secs(parse("TAPEFLOW_ALPACA_QUOTE_LOOKBACK_SECS", 60)?),
            max_frame_bytes: parse("TAPEFLOW_ALPACA_MAX_FRAME_BYTES", 16 << 20)? as usize,
            rest_attempts: parse("TAPEFLOW_ALPACA_REST_ATTEMPTS", 8)?.max(1) as u32,
        };
        Ok(cfg)
    }
}

/// The provider: its settings and one HTTP client for the REST history.
pub struct AlpacaData {
    pub cfg: Arc<AlpacaDataConfig>,
    rest: rest::Rest,
}

impl AlpacaData {
    pub fn new(cfg: AlpacaDataConfig) -> anyhow::Result<AlpacaData> {
        let cfg = Arc::new(cfg);
        let rest = rest::Rest::new(cfg.clone())?;
        Ok(AlpacaData { cfg, rest })
    }
}

pub fn from_env() -> anyhow::Result<Arc<dyn Provider>> {
    Ok(Arc::new(AlpacaData::new(AlpacaDataConfig::from_env()?)?))
}

#[async_trait]
impl Provider for AlpacaData {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn stream(
        &self,
        ctx: FeedCtx,
        instruments: watch::Receiver<Vec<Instrument>>,
    ) -> anyhow::Result<()> {
        stream::run(self.cfg.clone(), self.rest.clone(), ctx, instruments).await
    }

    async fn backfill(
        &self,
        ctx: FeedCtx,
        instruments: Vec<Instrument>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        rest::backfill_command(&self.rest, &ctx, instruments, from, to).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tapeflow_db::config::lookup as vars;

    #[test]
    fn defaults_and_refusals() {
        let keys = [("APCA_API_KEY_ID", "PKTEST"), ("APCA_API_SECRET_KEY", "very-secret")];
        let c = AlpacaDataConfig::from_vars(vars(&keys)).unwrap();
        assert_eq!(c.ws_url, "wss://stream.data.alpaca.markets/v2/iex");
        assert_eq!(c.rest_url, "https://data.alpaca.markets");
        assert_eq!((c.quotes, c.bars, c.page_limit), (true, true, 10_000));
        assert_eq!(c.history_quotes, HistoryQuotes::Store);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("very-secret") && dbg.contains("<redacted>"), "{dbg}");

        let sip =
            AlpacaDataConfig::from_vars(vars(&[keys[0], keys[1], ("TAPEFLOW_ALPACA_FEED", "SIP")])).unwrap();
        assert_eq!(sip.ws_url, "wss://stream.data.alpaca.markets/v2/sip");
        let e = AlpacaDataConfig::from_vars(vars(&[keys[0], keys[1], ("TAPEFLOW_ALPACA_FEED", "otc")]))
            .unwrap_err();
        assert!(e.to_string().contains("TAPEFLOW_ALPACA_FEED"), "{e}");
        let e = AlpacaDataConfig::from_vars(vars(&[keys[0]])).unwrap_err();
        assert!(e.to_string().contains("APCA_API_SECRET_KEY"), "{e}");
        let e =
            AlpacaDataConfig::from_vars(vars(&[keys[0], keys[1], ("TAPEFLOW_ALPACA_PAGE_LIMIT", "20000")]))
                .unwrap_err();
        assert!(e.to_string().contains("10,000"), "{e}");
        let e =
            AlpacaDataConfig::from_vars(vars(&[keys[0], keys[1], ("TAPEFLOW_ALPACA_DATA_URL", "not a url")]))
                .unwrap_err();
        assert!(e.to_string().contains("TAPEFLOW_ALPACA_DATA_URL"), "{e}");
    }
}
