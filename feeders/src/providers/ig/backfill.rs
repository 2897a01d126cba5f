//! History from `GET /prices/{epic}` (version 3, one-minute resolution) into
//! `tapeflow.bars_1m_imported`: mid of bid and ask for open, high, low and close
//! ([`rest::bar_of`]).
//!
//! The range is walked a day at a time, each day page by page. IG reads `from` and `to` in the
//! account's local time, so they are written in `TAPEFLOW_IG_TIME_ZONE`; bars are kept by
//! their UTC start (`snapshotTimeUTC`) inside the asked range, so an hour of difference
//! between the two never stores a bar outside it. An allowance refusal waits and retries (the
//! connection shows `throttled`). Writes are idempotent, so a run that stopped is resumed by
//! running it again from the last minute it stored, which the error names.

use super::rest::{self, Failure, RestError};
use super::Inner;
use crate::provider::{FeedCtx, Instrument, Record};
use crate::status::{ConnStatus, FeedState};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;
use tapeflow_db::backoff::Backoff;

/// Attempts of one page after allowance or server refusals before the run gives up.
const ATTEMPTS: u32 = 8;

pub(super) async fn run(
    inner: Arc<Inner>,
    ctx: FeedCtx,
    instruments: Vec<Instrument>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<()> {
    let status = ctx.status.connection("ig", "backfill");
    status.set_state(FeedState::Backfilling);
    status.set_symbols(instruments.len());
    let minutes = u64::try_from((to - from).num_minutes().max(1)).unwrap_or(1);
    let bar = progress(minutes * instruments.len() as u64);
    if let Err(e) = inner.session().await {
        if e.kind == Failure::Refused {
            status.set_state(FeedState::Failed);
            status.error(&e);
            anyhow::bail!("{e}");
        }
        tracing::warn!(error = %e, "cannot log in to IG yet; the first request retries");
    }
    let mut failed: Vec<String> = Vec::new();
    for inst in &instruments {
        let epic = inst.provider_ref.trim();
        bar.set_message(inst.symbol.clone());
        match symbol(&inner, &ctx, &status, inst, epic, from, to, &bar).await {
            Ok(n) => tracing::info!(symbol = %inst.symbol, epic, bars = n, "IG backfill done"),
            Err(e) => {
                if e.kind == Failure::Refused && e.message.starts_with("IG refused the login") {
                    // Nothing else can work without a session.
                    status.set_state(FeedState::Failed);
                    status.error(&e);
                    bar.abandon();
                    anyhow::bail!("{e}");
                }
                tracing::error!(symbol = %inst.symbol, epic, error = %e, "IG backfill of a symbol failed");
                status.error(&e);
                failed.push(format!("{}: {e}", inst.symbol));
            }
        }
        if ctx.shutdown.is_cancelled() {
            break;
        }
    }
    bar.finish_and_clear();
    status.set_state(if failed.is_empty() { FeedState::Stopped } else { FeedState::Failed });
    anyhow::ensure!(failed.is_empty(), "IG backfill incomplete:\n  {}", failed.join("\n  "));
    Ok(())
}

/// A progress bar on a terminal; hidden otherwise (the logs report each day).
fn progress(total: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} minutes ({eta} left)")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

#[allow(clippy::too_many_arguments)]
async fn symbol(
    inner: &Inner,
    ctx: &FeedCtx,
    status: &ConnStatus,
    inst: &Instrument,
    epic: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bar: &indicatif::ProgressBar,
) -> Result<u64, RestError> {
    let zone = inner.cfg.time_zone;
    let mut written = 0u64;
    let mut last: Option<DateTime<Utc>> = None;
    let mut day_start = from;
    let resume = |last: Option<DateTime<Utc>>, e: RestError| {
        let at = last.map(|t| t.to_rfc3339()).unwrap_or_else(|| from.to_rfc3339());
        RestError::new(e.kind, format!("{} (resume with --from {at})", e.message))
    };
    while day_start < to {
        if ctx.shutdown.is_cancelled() {
            return Ok(written);
        }
        let day_end = (day_start + ChronoDuration::days(1)).min(to);
        let local = |t: DateTime<Utc>| t.with_timezone(&zone).format("%Y-%m-%dT%H:%M:%S").to_string();
        let mut page_number = 1u32;
        loop {
            let path = format!(
                "/prices/{}?resolution=MINUTE&from={}&to={}&pageSize={}&pageNumber={page_number}",
                url_path(epic),
                local(day_start),
                local(day_end),
                inner.cfg.page_size
            );
            let body = fetch(inner, ctx, status, &path, &format!("the prices of {epic}"))
                .await
                .map_err(|e| resume(last, e))?;
            let Some(body) = body else { return Ok(written) };
            let page = rest::parse_prices(&body, zone).map_err(|e| {
                resume(
                    last,
                    RestError::new(Failure::Transient, format!("IG's prices of {epic} are unreadable: {e}")),
                )
            })?;
            for why in &page.skipped {
                status.parse_error(&format!("price entry skipped: {why}"), "");
            }
            if let Some(a) = page.allowance {
                tracing::debug!(
                    remaining = a.remaining,
                    total = a.total,
                    resets_in_secs = a.expiry_secs,
                    "IG history allowance"
                );
            }
            let count = page.points.len();
            for p in page.points.iter().filter(|p| p.time >= day_start && p.time < day_end) {
                match rest::bar_of(&inst.symbol, p) {
                    Ok(b) => {
                        last = Some(b.bucket);
                        status.message(Some(b.bucket));
                        ctx.sink.send(Record::Bar(b)).await.map_err(|_| {
                            RestError::new(Failure::Transient, "the feed writer stopped".to_string())
                        })?;
                        written += 1;
                    }
                    Err(why) => {
                        tracing::warn!(symbol = %inst.symbol, %why, "IG bar skipped");
                        status.parse_error(&why, "");
                    }
                }
            }
            let more = match page.total_pages {
                Some(total) => page_number < total,
                // Without page data a full page may have a successor.
                None => count >= inner.cfg.page_size as usize,
            };
            if !more || count == 0 {
                break;
            }
            page_number += 1;
        }
        let done = u64::try_from((day_end - day_start).num_minutes()).unwrap_or(0);
        bar.inc(done);
        tracing::info!(symbol = %inst.symbol, until = %day_end, bars = written, "IG backfill progress");
        day_start = day_end;
    }
    Ok(written)
}

/// An epic as a path segment (epics are letters, digits and dots; anything else is escaped).
fn url_path(epic: &str) -> String {
    super::tlcp::encode_value(epic)
}

/// One page, waiting out allowance refusals and server errors. `None` on shutdown.
async fn fetch(
    inner: &Inner,
    ctx: &FeedCtx,
    status: &ConnStatus,
    path: &str,
    what: &str,
) -> Result<Option<Vec<u8>>, RestError> {
    let mut throttle = Backoff::new(inner.cfg.throttle_wait, Duration::from_secs(300));
    let mut transient = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let wait = match inner.get(path, "3", what).await {
            Ok(body) => {
                status.set_state(FeedState::Backfilling);
                return Ok(Some(body));
            }
            Err(e) if attempt == ATTEMPTS => return Err(e),
            Err(e) => match e.kind {
                Failure::Throttled => {
                    status.set_state(FeedState::Throttled);
                    status.error(&e);
                    let wait = throttle.next_delay();
                    tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "IG allowance used up; waiting");
                    wait
                }
                Failure::Transient | Failure::TokenInvalid => {
                    let wait = transient.next_delay();
                    tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "IG request failed; retrying");
                    wait
                }
                Failure::Refused => return Err(e),
            },
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.shutdown.cancelled() => return Ok(None),
        }
    }
}
