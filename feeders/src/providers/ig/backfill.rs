//! History from `GET /prices/{epic}` (version 3, one-minute resolution) into
//! `tapeflow.bars_1m_imported`: mid of bid and ask for open, high, low and close
//! ([`rest::bar_of`]).
//!
//! The range is walked a day at a time, each day page by page. IG reads `from` and `to` in the
//! account's local time, so they are written in `TAPEFLOW_IG_TIME_ZONE`; bars are kept by
//! their UTC start (`snapshotTimeUTC`) inside the asked range, so an hour of difference
//! between the two never stores a bar outside it. An allowance refusal waits and retries (the
//! connection shows `throttled`).
//!
//! Each symbol's load is a row of `tapeflow.backfill_progress` (provider `ig`, kind `range`).
//! Its `done_until` moves to the end of a day once the database holds every bar sent for that
//! day, so a run that stopped resumes there when the same command is run again, and a range
//! already loaded is skipped: IG's historical allowance is counted in bars.

use super::rest::{self, Failure, RestError};
use super::Inner;
use crate::progress::Progress;
use crate::provider::{FeedCtx, Instrument, Record};
use crate::status::{ConnStatus, FeedState};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::sync::Arc;
use std::time::Duration;
use tapeflow_db::backoff::Backoff;
use tokio_postgres::Client;

/// Attempts of one page after allowance or server refusals before the run gives up.
const ATTEMPTS: u32 = 8;
/// How long a day's bars may take to reach the database before its resume point is left
/// where it was (the load goes on; a re-run reads that day again).
const CONFIRM_WITHIN: Duration = Duration::from_secs(30);

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
    if let Err(e) = inner.session().await {
        if e.kind == Failure::Refused {
            status.set_state(FeedState::Failed);
            status.error(&e);
            anyhow::bail!("{e}");
        }
        tracing::warn!(error = %e, "cannot log in to IG yet; the first request retries");
    }
    let per_symbol = u64::try_from((to - from).num_minutes().max(1)).unwrap_or(1);
    let progress = Progress::new("ig backfill", per_symbol * instruments.len() as u64, "minutes of history");
    let mut loads = Loads { url: ctx.database_url.clone(), client: None };
    let mut failed: Vec<String> = Vec::new();
    let mut total = 0u64;
    for (k, inst) in instruments.iter().enumerate() {
        let base = per_symbol * k as u64;
        progress.set_position(base);
        progress.set_message(inst.symbol.clone());
        let (id, start) = match loads.start(&inst.symbol, from, to).await {
            Ok(Start::Done) => {
                tracing::info!(symbol = %inst.symbol, %from, %to, "IG backfill: this range is already loaded (tapeflow.backfill_progress); skipped");
                continue;
            }
            Ok(Start::Load { id, from: start }) => (Some(id), start),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "IG backfill: resume points not available; loading the whole range");
                (None, from)
            }
        };
        if start > from {
            tracing::info!(symbol = %inst.symbol, resume_at = %start, "IG backfill: resuming an interrupted load");
        }
        let mut run =
            SymbolRun { inner: &inner, ctx: &ctx, status: &status, loads: &mut loads, id, written: 0 };
        let result = run.load(inst, start, to, |done_until, written| {
            progress.set_position(base + u64::try_from((done_until - from).num_minutes()).unwrap_or(0));
            progress.set_message(format!(
                "{} {} · {written} bars",
                inst.symbol,
                done_until.format("%Y-%m-%d %H:%M")
            ));
        });
        let result = result.await;
        let written = run.written;
        total += written;
        match result {
            Ok(Some(false)) => {
                let msg = "bars sent but not seen in the database in time; run again to load the rest";
                if let Some(id) = id {
                    let _ = loads.failed(id, msg).await;
                }
                tracing::warn!(symbol = %inst.symbol, bars = written, "IG backfill: {msg}");
            }
            Ok(Some(true)) => {
                if let Some(id) = id {
                    if let Err(e) = loads.finish(id).await {
                        tracing::warn!(error = %format!("{e:#}"), "IG backfill: the finished load is not recorded");
                    }
                }
                tracing::info!(symbol = %inst.symbol, bars = written, "IG backfill: range loaded");
            }
            Ok(None) => {
                progress.finish("interrupted; run the same command again to resume");
                return Ok(());
            }
            Err(e) => {
                if let Some(id) = id {
                    let _ = loads.failed(id, &e.message).await;
                }
                if e.kind == Failure::Refused && e.message.starts_with("IG refused the login") {
                    // Nothing else can work without a session.
                    status.set_state(FeedState::Failed);
                    status.error(&e);
                    progress.finish("stopped: the login was refused");
                    anyhow::bail!("{e}");
                }
                tracing::error!(symbol = %inst.symbol, error = %e, "IG backfill of a symbol failed; run again to resume");
                status.error(&e);
                failed.push(format!("{}: {e}", inst.symbol));
            }
        }
    }
    progress.set_position(per_symbol * instruments.len() as u64);
    progress.finish(format!("{total} bars read"));
    status.set_state(if failed.is_empty() { FeedState::Stopped } else { FeedState::Failed });
    anyhow::ensure!(failed.is_empty(), "IG backfill incomplete:\n  {}", failed.join("\n  "));
    Ok(())
}

struct SymbolRun<'a> {
    inner: &'a Inner,
    ctx: &'a FeedCtx,
    status: &'a ConnStatus,
    loads: &'a mut Loads,
    id: Option<i64>,
    written: u64,
}

impl SymbolRun<'_> {
    /// Loads `[from, to)` day by day: `Ok(None)` when stopped by a shutdown, else whether every
    /// day's bars were seen in the database (so that the load may be recorded as finished).
    async fn load(
        &mut self,
        inst: &Instrument,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        on_day: impl Fn(DateTime<Utc>, u64),
    ) -> Result<Option<bool>, RestError> {
        let epic = inst.provider_ref.trim();
        let zone = self.inner.cfg.time_zone;
        let local = |t: DateTime<Utc>| t.with_timezone(&zone).format("%Y-%m-%dT%H:%M:%S").to_string();
        let mut day_start = from;
        // Whether every day so far reached the database (the resume point may follow).
        let mut confirmed = true;
        while day_start < to {
            let day_end = (day_start + ChronoDuration::days(1)).min(to);
            let mut sent = 0u64;
            let mut page_number = 1u32;
            loop {
                let path = format!(
                    "/prices/{}?resolution=MINUTE&from={}&to={}&pageSize={}&pageNumber={page_number}",
                    super::tlcp::encode_value(epic),
                    local(day_start),
                    local(day_end),
                    self.inner.cfg.page_size
                );
                let Some(body) = self.fetch(&path, &format!("the prices of {epic}")).await? else {
                    return Ok(None);
                };
                let page = rest::parse_prices(&body, zone).map_err(|e| {
                    RestError::new(Failure::Transient, format!("IG's prices of {epic} are unreadable: {e}"))
                })?;
                for why in &page.skipped {
                    self.status.parse_error(&format!("price entry skipped: {why}"), "");
                }
                if let Some(a) = page.allowance {
                    tracing::debug!(
                        remaining = a.remaining,
                        total = a.total,
                        resets_in_secs = a.expiry_secs,
                        "IG history allowance"
                    );
                }
                for p in page.points.iter().filter(|p| p.time >= day_start && p.time < day_end) {
                    match rest::bar_of(&inst.symbol, p) {
                        Ok(b) => {
                            self.status.message(Some(b.bucket));
                            self.ctx.sink.send(Record::Bar(b)).await.map_err(|_| {
                                RestError::new(Failure::Transient, "the feed writer stopped".to_string())
                            })?;
                            sent += 1;
                            self.written += 1;
                        }
                        Err(why) => {
                            tracing::warn!(symbol = %inst.symbol, %why, "IG bar skipped");
                            self.status.parse_error(&why, "");
                        }
                    }
                }
                let more = match page.total_pages {
                    Some(total) => page_number < total,
                    // Without page data a full page may have a successor.
                    None => page.points.len() >= self.inner.cfg.page_size as usize,
                };
                if !more || page.points.is_empty() {
                    break;
                }
                page_number += 1;
            }
            if let Some(id) = self.id {
                if confirmed {
                    confirmed = self.loads.stored(&inst.symbol, day_start, day_end, sent).await;
                    if confirmed {
                        if let Err(e) = self.loads.checkpoint(id, day_end, self.written).await {
                            tracing::warn!(error = %format!("{e:#}"), "IG backfill: resume point not recorded");
                        }
                    } else {
                        tracing::warn!(symbol = %inst.symbol, day = %day_start,
                            "IG backfill: the day's bars are not all in the database yet; the resume point stays before it");
                    }
                }
            }
            on_day(day_end, self.written);
            tracing::info!(symbol = %inst.symbol, until = %day_end, bars = self.written, "IG backfill progress");
            day_start = day_end;
            if self.ctx.shutdown.is_cancelled() {
                return Ok(None);
            }
        }
        Ok(Some(confirmed || self.id.is_none()))
    }

    /// One page, waiting out allowance refusals and server errors. `None` on shutdown.
    async fn fetch(&self, path: &str, what: &str) -> Result<Option<Vec<u8>>, RestError> {
        let mut throttle = Backoff::new(self.inner.cfg.throttle_wait, Duration::from_secs(300));
        let mut transient = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let wait = match self.inner.get(path, "3", what).await {
                Ok(body) => {
                    self.status.set_state(FeedState::Backfilling);
                    return Ok(Some(body));
                }
                Err(e) if attempt >= ATTEMPTS || e.kind == Failure::Refused => return Err(e),
                Err(e) if e.kind == Failure::Throttled => {
                    self.status.set_state(FeedState::Throttled);
                    self.status.error(&e);
                    let wait = throttle.next_delay();
                    tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "IG allowance used up; waiting");
                    wait
                }
                Err(e) => {
                    let wait = transient.next_delay();
                    tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "IG request failed; retrying");
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.ctx.shutdown.cancelled() => return Ok(None),
            }
        }
    }
}

enum Start {
    /// A finished load covers the range.
    Done,
    /// Load from `from` (the range's start, or an interrupted load's resume point).
    Load { id: i64, from: DateTime<Utc> },
}

/// The provider's rows of `tapeflow.backfill_progress`, on a connection of its own.
struct Loads {
    url: String,
    client: Option<Client>,
}

impl Loads {
    async fn client(&mut self) -> anyhow::Result<&Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
            self.client = Some(tapeflow_db::connect(&self.url, Duration::ZERO).await?);
        }
        Ok(self.client.as_ref().expect("connected above"))
    }

    async fn start(&mut self, symbol: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> anyhow::Result<Start> {
        let c = self.client().await?;
        let done: bool = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM tapeflow.backfill_progress WHERE provider = 'ig' AND symbol = $1
                 AND kind = 'range' AND finished_at IS NOT NULL AND range_from <= $2 AND range_to >= $3)",
                &[&symbol, &from, &to],
            )
            .await?
            .get(0);
        if done {
            return Ok(Start::Done);
        }
        let open = c
            .query_opt(
                "SELECT id, coalesce(done_until, range_from) FROM tapeflow.backfill_progress
                 WHERE provider = 'ig' AND symbol = $1 AND kind = 'range' AND finished_at IS NULL
                   AND range_from = $2 AND range_to = $3
                 ORDER BY id DESC LIMIT 1",
                &[&symbol, &from, &to],
            )
            .await?;
        if let Some(row) = open {
            return Ok(Start::Load { id: row.get(0), from: row.get(1) });
        }
        let row = c
            .query_one(
                "INSERT INTO tapeflow.backfill_progress (provider, symbol, kind, range_from, range_to)
                 VALUES ('ig', $1, 'range', $2, $3) RETURNING id",
                &[&symbol, &from, &to],
            )
            .await?;
        Ok(Start::Load { id: row.get(0), from })
    }

    /// Whether the database holds at least `sent` bars of `symbol` in `[from, to)`: the day's
    /// bars went through the writer. Waits up to [`CONFIRM_WITHIN`].
    async fn stored(&mut self, symbol: &str, from: DateTime<Utc>, to: DateTime<Utc>, sent: u64) -> bool {
        if sent == 0 {
            return true;
        }
        let deadline = tokio::time::Instant::now() + CONFIRM_WITHIN;
        while tokio::time::Instant::now() < deadline {
            let n: anyhow::Result<i64> = async {
                let c = self.client().await?;
                Ok(c.query_one(
                    "SELECT count(*) FROM tapeflow.bars_1m_imported WHERE symbol = $1 AND bucket >= $2 AND bucket < $3",
                    &[&symbol, &from, &to],
                )
                .await?
                .get(0))
            }
            .await;
            match n {
                Ok(n) if n as u64 >= sent => return true,
                Ok(_) => {}
                Err(_) => self.client = None,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    async fn checkpoint(&mut self, id: i64, done_until: DateTime<Utc>, bars: u64) -> anyhow::Result<()> {
        let bars = i64::try_from(bars).unwrap_or(i64::MAX);
        self.client()
            .await?
            .execute(
                "UPDATE tapeflow.backfill_progress SET done_until = greatest(done_until, $2), updated_at = now(),
                     last_error = NULL WHERE id = $1",
                &[&id, &done_until],
            )
            .await?;
        tracing::debug!(id, %done_until, bars, "IG backfill resume point");
        Ok(())
    }

    async fn finish(&mut self, id: i64) -> anyhow::Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE tapeflow.backfill_progress SET done_until = range_to, finished_at = now(), updated_at = now(),
                     last_error = NULL WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(())
    }

    async fn failed(&mut self, id: i64, error: &str) -> anyhow::Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE tapeflow.backfill_progress SET last_error = $2, updated_at = now() WHERE id = $1",
                &[&id, &error],
            )
            .await?;
        Ok(())
    }
}
