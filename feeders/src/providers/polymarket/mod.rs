//! The `polymarket` provider: Polymarket's binary markets and their live books.
//!
//! Discovery ([`discovery`]): the Gamma REST API's active, open markets matching the configured
//! tags, slugs and end dates, page by page, every `TAPEFLOW_POLYMARKET_REFRESH_SECS`, into
//! `tapeflow.polymarket_markets` and `tapeflow.polymarket_tokens`; each outcome token becomes a
//! `tapeflow.symbols` row (asset_class `prediction`, 24/7 in UTC, provider `polymarket`,
//! provider_ref = the token id), which routing then hands to the stream. `new_market` and
//! `market_resolved` messages keep the tables current between refreshes.
//!
//! Live ([`stream`]): the CLOB market channel, the tokens spread over several WebSockets
//! (`TAPEFLOW_POLYMARKET_ASSETS_PER_CONNECTION` each). Each keeps a full book per token
//! (`tapeflow_analytics::polymarket::book`), checks it against the venue's hash and top of book,
//! and re-snapshots a token whose book it can no longer trust; top of book goes to
//! `tapeflow.quotes`, trades (`last_trade_price`, with the taker's side as the venue states it)
//! to `tapeflow.ticks`, and the depth, throttled, to `tapeflow.polymarket_books`.
//!
//! Binning: the venue's order tick changes at run time (`tick_size_change`), but a symbol's
//! `tick_size` bins its profiles and candles and must never change once ticks are stored. So
//! every token is created with the fixed `TAPEFLOW_POLYMARKET_SYMBOL_TICK` (0.001: exact for
//! the 0.1, 0.01 and 0.001 ticks) and the venue's current tick is kept beside it, in
//! `polymarket_markets.tick_size` and `polymarket_books.tick_size`.

pub mod discovery;
pub mod frames;
pub mod gamma;
pub mod store;
pub mod stream;

use crate::provider::{FeedCtx, Instrument, Provider};
use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const NAME: &str = "polymarket";

const DEFAULT_GAMMA_URL: &str = "https://gamma-api.polymarket.com";
const DEFAULT_WS_URL: &str = "wss://ws-subscriptions-clob.polymarket.com/ws/market";

/// An end-date bound: a fixed time, or a span from now (re-evaluated at each refresh).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndBound {
    #[default]
    None,
    At(DateTime<Utc>),
    FromNow(chrono::Duration),
}

impl EndBound {
    pub fn resolve(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            EndBound::None => None,
            EndBound::At(t) => Some(t),
            EndBound::FromNow(d) => Some(now + d),
        }
    }

    /// An RFC 3339 time, a date (UTC midnight), or a span from now: `36h`, `7d`, `-1d`.
    pub fn parse(name: &str, s: &str) -> anyhow::Result<EndBound> {
        if let Ok(t) = crate::backfill::parse_time(s) {
            return Ok(EndBound::At(t));
        }
        let (num, unit) = s.split_at(s.len().saturating_sub(1));
        let n: i64 = num.parse().with_context(|| {
            format!("{name}={s:?}: expected an RFC 3339 time, a date, or a span such as 36h or 7d")
        })?;
        let span = match unit {
            "m" => chrono::Duration::minutes(n),
            "h" => chrono::Duration::hours(n),
            "d" => chrono::Duration::days(n),
            _ => anyhow::bail!("{name}={s:?}: a span ends in m, h or d"),
        };
        Ok(EndBound::FromNow(span))
    }
}

/// The provider's settings (see the README's configuration table).
#[derive(Debug, Clone)]
pub struct PolymarketConfig {
    pub gamma_url: String,
    pub ws_url: String,
    /// Run discovery (default: when tags or slugs are configured).
    pub discover: bool,
    /// Gamma tag ids or slugs; markets of any of them are discovered.
    pub tags: Vec<String>,
    /// Market slugs discovered in any case.
    pub slugs: Vec<String>,
    pub end_before: EndBound,
    pub end_after: EndBound,
    pub refresh_every: Duration,
    pub page_limit: usize,
    pub max_markets: usize,
    pub assets_per_connection: usize,
    pub ping_every: Duration,
    /// Each token's depth is written at most this often.
    pub book_every: Duration,
    pub timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// A token waiting for its snapshot longer than this gets its connection re-made.
    pub snapshot_timeout: Duration,
    /// How long a `best_bid_ask` may disagree with our book before it is re-snapshotted.
    pub divergence_grace: Duration,
    /// Check the hash of every `book` snapshot.
    pub verify_hash: bool,
    /// A frame longer than this is skipped as unreadable.
    pub max_frame_bytes: usize,
    /// The fixed tick that bins a token's profiles and candles.
    pub symbol_tick: f64,
}

impl PolymarketConfig {
    pub fn from_env() -> anyhow::Result<PolymarketConfig> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`PolymarketConfig::from_env`] reading variables through `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<PolymarketConfig> {
        let vars = tapeflow_db::config::Vars(var);
        let get = |name: &str| vars.get(name);
        let parse = |name: &str, default: u64| vars.u64(name, default);
        let flag = |name: &str, default: bool| vars.flag(name, default);
        let list = |name: &str| -> Vec<String> {
            get(name)
                .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                .unwrap_or_default()
        };
        let ms = |name: &str, default: u64| parse(name, default).map(Duration::from_millis);
        let gamma_url = get("TAPEFLOW_POLYMARKET_GAMMA_URL").unwrap_or_else(|| DEFAULT_GAMMA_URL.into());
        let ws_url = get("TAPEFLOW_POLYMARKET_WS_URL").unwrap_or_else(|| DEFAULT_WS_URL.into());
        for (name, url) in
            [("TAPEFLOW_POLYMARKET_GAMMA_URL", &gamma_url), ("TAPEFLOW_POLYMARKET_WS_URL", &ws_url)]
        {
            url::Url::parse(url).with_context(|| format!("{name}={url:?} is not a URL"))?;
        }
        let tags = list("TAPEFLOW_POLYMARKET_TAGS");
        let slugs = list("TAPEFLOW_POLYMARKET_SLUGS");
        let bound = |name: &str| match get(name) {
            None => Ok(EndBound::None),
            Some(v) => EndBound::parse(name, &v),
        };
        let end_before = bound("TAPEFLOW_POLYMARKET_END_BEFORE")?;
        let end_after = bound("TAPEFLOW_POLYMARKET_END_AFTER")?;
        let filtered = !tags.is_empty() || !slugs.is_empty() || end_before != EndBound::None;
        let page_limit = parse("TAPEFLOW_POLYMARKET_PAGE_LIMIT", 100)?;
        anyhow::ensure!(
            (1..=500).contains(&page_limit),
            "TAPEFLOW_POLYMARKET_PAGE_LIMIT={page_limit}: Gamma pages hold 1 to 500 markets"
        );
        let per_connection = parse("TAPEFLOW_POLYMARKET_ASSETS_PER_CONNECTION", 200)?;
        anyhow::ensure!(
            (1..=500).contains(&per_connection),
            "TAPEFLOW_POLYMARKET_ASSETS_PER_CONNECTION={per_connection}: 1 to 500 (the venue's reported limit)"
        );
        let symbol_tick = match get("TAPEFLOW_POLYMARKET_SYMBOL_TICK") {
            None => 0.001,
            Some(v) => v.parse::<f64>().ok().filter(|t| *t > 0.0 && *t < 1.0).with_context(|| {
                format!("TAPEFLOW_POLYMARKET_SYMBOL_TICK={v:?}: expected a tick inside (0, 1) such as 0.001")
            })?,
        };
        Ok(PolymarketConfig {
            gamma_url: gamma_url.trim_end_matches('/').to_string(),
            ws_url,
            discover: flag("TAPEFLOW_POLYMARKET_DISCOVER", filtered)?,
            tags,
            slugs,
            end_before,
            end_after,
            refresh_every: Duration::from_secs(parse("TAPEFLOW_POLYMARKET_REFRESH_SECS", 300)?.max(1)),
            page_limit: page_limit as usize,
            max_markets: parse("TAPEFLOW_POLYMARKET_MAX_MARKETS", 500)?.max(1) as usize,
            assets_per_connection: per_connection as usize,
            ping_every: ms("TAPEFLOW_POLYMARKET_PING_MS", 10_000)?.max(Duration::from_millis(10)),
            book_every: ms("TAPEFLOW_POLYMARKET_BOOK_MS", 100)?,
            timeout: ms("TAPEFLOW_POLYMARKET_TIMEOUT_MS", 10_000)?.max(Duration::from_millis(1)),
            reconnect_min: ms("TAPEFLOW_POLYMARKET_RECONNECT_MIN_MS", 500)?,
            reconnect_max: ms("TAPEFLOW_POLYMARKET_RECONNECT_MAX_MS", 30_000)?,
            snapshot_timeout: ms("TAPEFLOW_POLYMARKET_SNAPSHOT_TIMEOUT_MS", 15_000)?
                .max(Duration::from_millis(10)),
            divergence_grace: ms("TAPEFLOW_POLYMARKET_DIVERGENCE_GRACE_MS", 2_000)?,
            verify_hash: flag("TAPEFLOW_POLYMARKET_VERIFY_HASH", true)?,
            max_frame_bytes: parse("TAPEFLOW_POLYMARKET_MAX_FRAME_BYTES", 32 << 20)? as usize,
            symbol_tick,
        })
    }
}

/// Whether the environment asks for discovery, so that routing runs this provider while it
/// has no symbols yet (discovery is what creates them).
pub fn discovery_enabled() -> bool {
    match PolymarketConfig::from_env() {
        Ok(c) => c.discover,
        // Misconfigured discovery runs into from_env's error, which routing reports.
        Err(_) => ["TAPEFLOW_POLYMARKET_DISCOVER", "TAPEFLOW_POLYMARKET_TAGS", "TAPEFLOW_POLYMARKET_SLUGS"]
            .iter()
            .any(|v| tapeflow_db::config::env_string(v).is_some()),
    }
}

pub struct Polymarket {
    pub cfg: Arc<PolymarketConfig>,
}

pub fn from_env() -> anyhow::Result<Arc<dyn Provider>> {
    Ok(Arc::new(Polymarket { cfg: Arc::new(PolymarketConfig::from_env()?) }))
}

#[async_trait]
impl Provider for Polymarket {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn stream(
        &self,
        ctx: FeedCtx,
        instruments: watch::Receiver<Vec<Instrument>>,
    ) -> anyhow::Result<()> {
        stream::run(self.cfg.clone(), ctx, instruments).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tapeflow_db::config::lookup as vars;

    #[test]
    fn defaults_and_refusals() {
        let c = PolymarketConfig::from_vars(vars(&[])).unwrap();
        assert_eq!(c.gamma_url, "https://gamma-api.polymarket.com");
        assert_eq!(c.ws_url, "wss://ws-subscriptions-clob.polymarket.com/ws/market");
        assert!(!c.discover, "no filter: discovery is off unless asked for");
        assert_eq!((c.ping_every, c.book_every), (Duration::from_secs(10), Duration::from_millis(100)));
        assert_eq!((c.assets_per_connection, c.symbol_tick, c.verify_hash), (200, 0.001, true));

        let c = PolymarketConfig::from_vars(vars(&[
            ("TAPEFLOW_POLYMARKET_TAGS", "politics, 21 ,"),
            ("TAPEFLOW_POLYMARKET_END_BEFORE", "7d"),
        ]))
        .unwrap();
        assert!(c.discover);
        assert_eq!(c.tags, vec!["politics", "21"]);
        let now = Utc::now();
        assert_eq!(c.end_before.resolve(now), Some(now + chrono::Duration::days(7)));
        let c =
            PolymarketConfig::from_vars(vars(&[("TAPEFLOW_POLYMARKET_END_BEFORE", "2026-01-31")])).unwrap();
        assert_eq!(c.end_before.resolve(now).unwrap().to_rfc3339(), "2026-01-31T00:00:00+00:00");
        let c = PolymarketConfig::from_vars(vars(&[
            ("TAPEFLOW_POLYMARKET_SLUGS", "a"),
            ("TAPEFLOW_POLYMARKET_DISCOVER", "off"),
        ]))
        .unwrap();
        assert!(!c.discover);

        for (k, v, says) in [
            ("TAPEFLOW_POLYMARKET_END_BEFORE", "soon", "36h"),
            ("TAPEFLOW_POLYMARKET_ASSETS_PER_CONNECTION", "0", "1 to 500"),
            ("TAPEFLOW_POLYMARKET_PAGE_LIMIT", "1000", "1 to 500"),
            ("TAPEFLOW_POLYMARKET_WS_URL", "not a url", "TAPEFLOW_POLYMARKET_WS_URL"),
            ("TAPEFLOW_POLYMARKET_SYMBOL_TICK", "1", "inside (0, 1)"),
            ("TAPEFLOW_POLYMARKET_VERIFY_HASH", "maybe", "on or off"),
        ] {
            let e = PolymarketConfig::from_vars(vars(&[(k, v)])).unwrap_err();
            assert!(format!("{e:#}").contains(says), "{k}={v}: {e:#}");
        }
    }
}
