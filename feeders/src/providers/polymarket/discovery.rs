//! The discovery loop: a Gamma round every `TAPEFLOW_POLYMARKET_REFRESH_SECS` (sooner again
//! after a failure, with backoff), storing what it finds (markets, tokens, symbols: routing
//! then streams the new symbols), and a look-up of each `new_market` the stream reports, so
//! that a market listed between rounds is traded at once when it matches the filters.

use super::frames::NewMarket;
use super::gamma::{self, Gamma};
use super::store::{self, Db};
use super::{PolymarketConfig, NAME};
use crate::provider::FeedCtx;
use crate::status::{ConnStatus, FeedState};
use chrono::Utc;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tapeflow_db::backoff::Backoff;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Look-ups of a new market Gamma does not know yet are tried again this many times.
const NEW_MARKET_ATTEMPTS: u32 = 4;

struct State {
    cfg: Arc<PolymarketConfig>,
    gamma: Gamma,
    db: Db,
    status: Arc<ConnStatus>,
    /// Configured tag (id or slug) → Gamma's tag id.
    tag_ids: BTreeMap<String, String>,
    /// Condition ids stored (loaded once from the database).
    known: Option<HashSet<String>>,
}

pub async fn run(
    cfg: Arc<PolymarketConfig>,
    ctx: FeedCtx,
    mut new_markets: mpsc::UnboundedReceiver<NewMarket>,
) {
    let status = ctx.status.connection(NAME, "gamma");
    status.set_state(FeedState::Connecting);
    let gamma = match Gamma::new(&cfg) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(provider = NAME, error = %format!("{e:#}"), "polymarket: discovery cannot start");
            status.error(format!("{e:#}"));
            status.set_state(FeedState::Failed);
            return;
        }
    };
    let mut st = State {
        cfg: cfg.clone(),
        gamma,
        db: Db::new(&ctx.database_url),
        status,
        tag_ids: BTreeMap::new(),
        known: None,
    };
    let mut backoff = Backoff::new(Duration::from_secs(1), cfg.refresh_every.min(Duration::from_secs(60)));
    let mut next_round = Instant::now();
    let mut retries: VecDeque<(NewMarket, u32, Instant)> = VecDeque::new();
    let mut open = true;
    loop {
        let retry_due = retries.front().map(|r| r.2);
        tokio::select! {
            _ = tokio::time::sleep_until(next_round) => {
                match round(&mut st).await {
                    Ok(()) => {
                        backoff.reset();
                        next_round = Instant::now() + cfg.refresh_every;
                    }
                    Err(e) => {
                        let wait = backoff.next_delay();
                        tracing::warn!(provider = NAME, error = %format!("{e:#}"), retry_in_ms = wait.as_millis() as u64,
                            "polymarket: discovery round failed; trying again");
                        st.status.error(format!("discovery: {e:#}"));
                        st.status.set_state(FeedState::Reconnecting);
                        next_round = Instant::now() + wait;
                    }
                }
            }
            m = new_markets.recv(), if open => match m {
                Some(m) => {
                    if let Some(attempts) = new_market(&mut st, &m, 0).await {
                        retries.push_back((m, attempts, Instant::now() + retry_delay(attempts)));
                    }
                }
                None => open = false,
            },
            _ = tokio::time::sleep_until(retry_due.unwrap_or_else(Instant::now)), if retry_due.is_some() => {
                let (m, attempts, _) = retries.pop_front().expect("due");
                if let Some(attempts) = new_market(&mut st, &m, attempts).await {
                    retries.push_back((m, attempts, Instant::now() + retry_delay(attempts)));
                }
            }
            _ = ctx.shutdown.cancelled() => break,
        }
    }
    st.status.set_state(FeedState::Stopped);
}

fn retry_delay(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << (2 * attempts.min(4)))
}

async fn known(st: &mut State) -> anyhow::Result<&mut HashSet<String>> {
    if st.known.is_none() {
        let client = st.db.client().await?;
        let list = match store::known_markets(client).await {
            Ok(l) => l,
            Err(e) => {
                st.db.reset();
                return Err(e);
            }
        };
        st.known = Some(list.into_iter().collect());
    }
    Ok(st.known.as_mut().expect("loaded above"))
}

async fn round(st: &mut State) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    for tag in st.cfg.tags.clone() {
        if st.tag_ids.contains_key(&tag) {
            continue;
        }
        match st.gamma.tag_id(&tag).await {
            Ok(id) => {
                tracing::info!(provider = NAME, %tag, %id, "polymarket: tag resolved");
                st.tag_ids.insert(tag, id);
            }
            Err(e) => {
                // The other filters still work; this tag is looked up again next round.
                tracing::error!(provider = NAME, %tag, error = %format!("{e:#}"), "polymarket: unknown tag");
                st.status.error(format!("tag {tag}: {e:#}"));
            }
        }
    }
    let tag_ids: Vec<String> = st.tag_ids.values().cloned().collect();
    if !st.cfg.tags.is_empty() && tag_ids.is_empty() && st.cfg.slugs.is_empty() {
        anyhow::bail!("none of the tags {:?} could be resolved", st.cfg.tags);
    }
    let mut skipped = Vec::new();
    let (found, capped) = gamma::discover(&st.gamma, &st.cfg, &tag_ids, &mut skipped).await?;
    if !skipped.is_empty() {
        metrics::counter!("tapeflow_polymarket_gamma_skipped_total").increment(skipped.len() as u64);
        for (why, item) in skipped.iter().take(5) {
            tracing::debug!(provider = NAME, %why, item = %item, "polymarket: Gamma market not stored");
        }
    }
    if capped {
        tracing::warn!(provider = NAME, max = st.cfg.max_markets,
            "polymarket: more markets match than TAPEFLOW_POLYMARKET_MAX_MARKETS; the rest are not discovered");
    }
    let (mut new_markets, mut new_tokens, mut changed) = (0, 0, 0);
    for m in found.values() {
        let stored = store_one(st, m).await?;
        new_markets += usize::from(stored.new_market);
        changed += usize::from(stored.changed && !stored.new_market);
        new_tokens += stored.new_tokens;
    }
    st.status.set_state(FeedState::Connected);
    st.status.message(None);
    st.status.set_symbols(found.len());
    tracing::info!(
        provider = NAME,
        markets = found.len(),
        new_markets,
        changed,
        new_tokens,
        skipped = skipped.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "polymarket: discovery round"
    );
    Ok(())
}

async fn store_one(st: &mut State, m: &gamma::GammaMarket) -> anyhow::Result<store::Stored> {
    if m.fees == gamma::Fees::Unknown {
        tracing::warn!(provider = NAME, market = %m.condition_id,
            "polymarket: fees enabled without a schedule or a known fee type; stored unwatched (the arbitrage scan skips it)");
    }
    let cfg = st.cfg.clone();
    let client = st.db.client().await?;
    match store::store_market(client, m, &cfg).await {
        Ok(s) => {
            known(st).await?.insert(m.condition_id.clone());
            Ok(s)
        }
        Err(e) => {
            st.db.reset();
            Err(e)
        }
    }
}

/// Whether a `new_market` may match the filters, before asking Gamma (which decides).
fn may_match(cfg: &PolymarketConfig, m: &NewMarket) -> bool {
    if cfg.tags.is_empty() && cfg.slugs.is_empty() {
        return true;
    }
    if m.slug.as_ref().is_some_and(|s| cfg.slugs.contains(s)) {
        return true;
    }
    // The message names tags by slug or label; a tag configured by id can only be checked by Gamma.
    cfg.tags
        .iter()
        .any(|t| t.bytes().all(|b| b.is_ascii_digit()) || m.tags.iter().any(|mt| mt.eq_ignore_ascii_case(t)))
}

/// Handles a `new_market`: `Some(attempts)` to try again later (Gamma does not know it yet,
/// or a failure).
async fn new_market(st: &mut State, m: &NewMarket, attempts: u32) -> Option<u32> {
    match known(st).await {
        Ok(k) if k.contains(&m.condition_id) => return None,
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(provider = NAME, error = %format!("{e:#}"), "polymarket: cannot read stored markets");
            return (attempts + 1 < NEW_MARKET_ATTEMPTS).then_some(attempts + 1);
        }
    }
    if !may_match(&st.cfg, m) {
        tracing::debug!(provider = NAME, market = %m.condition_id, slug = ?m.slug, "polymarket: new market outside the filters");
        return None;
    }
    let found = match st.gamma.lookup(m.slug.as_deref(), &m.condition_id).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(provider = NAME, market = %m.condition_id, error = %format!("{e:#}"), "polymarket: new market look-up failed");
            return (attempts + 1 < NEW_MARKET_ATTEMPTS).then_some(attempts + 1);
        }
    };
    let Some(market) = found.into_iter().next() else {
        tracing::info!(provider = NAME, market = %m.condition_id, attempts = attempts + 1, "polymarket: Gamma does not list the new market yet");
        return (attempts + 1 < NEW_MARKET_ATTEMPTS).then_some(attempts + 1);
    };
    let tag_ids: Vec<String> = st.tag_ids.values().cloned().collect();
    if let Err(why) = gamma::keep(&market, &st.cfg, &tag_ids, Utc::now()) {
        tracing::debug!(provider = NAME, market = %m.condition_id, %why, "polymarket: new market not kept");
        return None;
    }
    match store_one(st, &market).await {
        Ok(s) => {
            tracing::info!(provider = NAME, market = %m.condition_id, slug = ?market.slug, new_tokens = s.new_tokens,
                "polymarket: new market stored");
            None
        }
        Err(e) => {
            tracing::warn!(provider = NAME, market = %m.condition_id, error = %format!("{e:#}"), "polymarket: new market not stored");
            (attempts + 1 < NEW_MARKET_ATTEMPTS).then_some(attempts + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nm(slug: &str, tags: &[&str]) -> NewMarket {
        NewMarket {
            condition_id: "0x1".into(),
            gamma_id: None,
            slug: Some(slug.into()),
            question: None,
            asset_ids: vec![],
            outcomes: vec![],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            timestamp_ms: None,
        }
    }

    #[test]
    fn new_markets_prefiltered() {
        let mut cfg = PolymarketConfig::from_vars(|_| None).unwrap();
        assert!(may_match(&cfg, &nm("anything", &[])));
        cfg.slugs = vec!["wanted".into()];
        assert!(may_match(&cfg, &nm("wanted", &[])));
        assert!(!may_match(&cfg, &nm("other", &["stocks"])));
        cfg.tags = vec!["Stocks".into()];
        assert!(may_match(&cfg, &nm("other", &["stocks"])));
        assert!(!may_match(&cfg, &nm("other", &["sports"])));
        cfg.tags = vec!["604".into()];
        assert!(may_match(&cfg, &nm("other", &["sports"])), "an id can only be checked by Gamma");
    }
}
