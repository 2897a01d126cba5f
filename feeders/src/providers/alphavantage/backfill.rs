//! `tapeflow-feed backfill alphavantage`: history, one request per symbol and month
//! (`month=YYYY-MM`, `outputsize=full`, `extended_hours=true`), oldest month first, with a
//! progress bar.
//!
//! Resume: each symbol's load is a row of `tapeflow.backfill_progress` (provider
//! `alphavantage`, kind `range`). After a month's bars are sent, the writer is flushed (every
//! bar confirmed stored) and only then does `done_until` move to the month's end, so a run
//! that stopped (a crash, a kill, a lost database) resumes after the last confirmed month when
//! the same command is run again. A month inside what any earlier load of the symbol confirmed
//! is not asked again, so a re-run of a finished window makes no request at all (the free tier
//! allows 25 a day), and bars, written idempotently, are never stored twice. The month still
//! going on when the run started counts as done only up to its newest bar: a re-run asks for
//! it again.

use super::answer::{Answer, Refusal};
use super::client::{FetchError, Query, Size};
use super::stream::{report_bad, send_bars};
use super::{fatal_text, AlphaVantage, NAME};
use crate::progress::Progress;
use crate::provider::{FeedCtx, Instrument};
use crate::status::{ConnStatus, FeedState};
use anyhow::Context;
use chrono::{DateTime, Datelike, Duration as Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use std::time::Duration;
use tapeflow_db::backoff::Backoff;
use tokio::time::Instant;
use tokio_postgres::Client;

/// The first month the service has.
const FIRST_MONTH: (i32, u32) = (2000, 1);
/// Attempts at a month whose requests fail (throttle answers do not count: they always wait).
const ATTEMPTS: u32 = 6;

/// A calendar month of a zone, as the instants it spans.
#[derive(Debug, Clone, PartialEq)]
pub struct Month {
    pub year: i32,
    pub month: u32,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Month {
    pub fn label(&self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }
}

fn midnight(zone: Tz, day: NaiveDate) -> DateTime<Utc> {
    let naive = day.and_hms_opt(0, 0, 0).expect("midnight");
    // A zone that skips midnight on that day starts it at the first instant after.
    zone.from_local_datetime(&naive)
        .earliest()
        .or_else(|| zone.from_local_datetime(&(naive + Days::hours(1))).earliest())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| naive.and_utc())
}

/// The months of `zone` that [from, to) touches, from the service's first month on.
pub fn months(from: DateTime<Utc>, to: DateTime<Utc>, zone: Tz) -> Vec<Month> {
    let mut out = Vec::new();
    if from >= to {
        return out;
    }
    let first = from.with_timezone(&zone).date_naive();
    let last = (to - Days::microseconds(1)).with_timezone(&zone).date_naive();
    let (mut y, mut m) = (first.year(), first.month());
    if (y, m) < FIRST_MONTH {
        (y, m) = FIRST_MONTH;
    }
    while (y, m) <= (last.year(), last.month()) {
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        let start = midnight(zone, NaiveDate::from_ymd_opt(y, m, 1).expect("a month's first day"));
        let end = midnight(zone, NaiveDate::from_ymd_opt(ny, nm, 1).expect("a month's first day"));
        out.push(Month { year: y, month: m, start, end });
        (y, m) = (ny, nm);
    }
    out
}

/// The provider's rows of `tapeflow.backfill_progress`.
struct Loads {
    db: Client,
}

impl Loads {
    /// Spans of the symbol's history that earlier loads confirmed stored.
    async fn confirmed(&self, symbol: &str) -> anyhow::Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
        let rows = self
            .db
            .query(
                "SELECT range_from, CASE WHEN finished_at IS NOT NULL THEN range_to ELSE done_until END
                 FROM tapeflow.backfill_progress
                 WHERE provider = $1 AND symbol = $2 AND kind = 'range' AND (finished_at IS NOT NULL OR done_until IS NOT NULL)",
                &[&NAME, &symbol],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The unfinished load of exactly this range (an interrupted run), or a new one.
    async fn open(
        &self,
        symbol: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> anyhow::Result<(i64, DateTime<Utc>)> {
        let open = self
            .db
            .query_opt(
                "SELECT id, coalesce(done_until, range_from) FROM tapeflow.backfill_progress
                 WHERE provider = $1 AND symbol = $2 AND kind = 'range' AND finished_at IS NULL
                   AND range_from = $3 AND range_to = $4
                 ORDER BY id DESC LIMIT 1",
                &[&NAME, &symbol, &from, &to],
            )
            .await?;
        if let Some(r) = open {
            return Ok((r.get(0), r.get(1)));
        }
        let r = self
            .db
            .query_one(
                "INSERT INTO tapeflow.backfill_progress (provider, symbol, kind, range_from, range_to)
                 VALUES ($1, $2, 'range', $3, $4) RETURNING id",
                &[&NAME, &symbol, &from, &to],
            )
            .await?;
        Ok((r.get(0), from))
    }

    async fn checkpoint(&self, id: i64, until: DateTime<Utc>, bars: u64) -> anyhow::Result<()> {
        self.db
            .execute(
                "UPDATE tapeflow.backfill_progress SET done_until = greatest(done_until, $2), trades = trades + $3,
                     updated_at = now(), last_error = NULL WHERE id = $1",
                &[&id, &until, &(bars as i64)],
            )
            .await?;
        Ok(())
    }

    async fn finish(&self, id: i64) -> anyhow::Result<()> {
        self.db
            .execute(
                "UPDATE tapeflow.backfill_progress SET done_until = range_to, finished_at = now(), updated_at = now(),
                     last_error = NULL WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(())
    }

    async fn failed(&self, id: i64, error: &str) -> anyhow::Result<()> {
        self.db
            .execute(
                "UPDATE tapeflow.backfill_progress SET last_error = $2, updated_at = now() WHERE id = $1",
                &[&id, &error],
            )
            .await?;
        Ok(())
    }
}

/// How one month ended.
enum Outcome {
    /// Stored (the writer confirmed it): how many bars, and the end of the newest.
    Done {
        bars: u64,
        newest_end: Option<DateTime<Utc>>,
    },
    /// Refused as an invalid call.
    Refused(String),
    /// Could not be read after every attempt.
    Failed(String),
    Stopped,
}

pub(super) async fn run(
    p: &AlphaVantage,
    ctx: FeedCtx,
    instruments: Vec<Instrument>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<()> {
    let st = ctx.status.connection(NAME, "backfill");
    st.set_state(FeedState::Backfilling);
    st.set_symbols(instruments.len());
    let db = tapeflow_db::connect(&ctx.database_url, Duration::from_secs(10)).await?;
    let loads = Loads { db };
    let started = Utc::now();
    let plan: Vec<(Instrument, Tz, Vec<Month>)> = instruments
        .into_iter()
        .map(|i| {
            // Months are the series' own (New York for US listings); the symbol's zone says which.
            let zone = i.timezone.parse::<Tz>().unwrap_or(chrono_tz::America::New_York);
            let ms = months(from, to, zone).into_iter().filter(|m| m.start <= started).collect();
            (i, zone, ms)
        })
        .collect();
    let total: usize = plan.iter().map(|(_, _, m)| m.len()).sum();
    let progress = Progress::new("alphavantage backfill", total as u64, "months");
    let (mut fetched, mut skipped, mut written) = (0usize, 0usize, 0u64);
    let mut problems = Vec::new();
    for (inst, zone, months) in plan {
        let confirmed = loads.confirmed(&inst.symbol).await.context("reading tapeflow.backfill_progress")?;
        let (id, resume) =
            loads.open(&inst.symbol, from, to).await.context("writing tapeflow.backfill_progress")?;
        if resume > from {
            tracing::info!(provider = NAME, symbol = %inst.symbol, resume_at = %resume, "resuming an interrupted load");
        }
        // Everything before `frontier` is confirmed stored; it moves only over months in order.
        let mut frontier = resume;
        let mut contiguous = true;
        let mut known = false; // the service has answered this symbol with data
        let mut left = months.len() as u64;
        for m in months {
            let (a, b) = (m.start.max(from), m.end.min(to));
            progress.set_message(format!("{} {}", inst.symbol, m.label()));
            if b <= frontier || confirmed.iter().any(|(s, e)| *s <= a && *e >= b) {
                tracing::info!(provider = NAME, symbol = %inst.symbol, month = %m.label(), "already stored; skipped");
                skipped += 1;
                left -= 1;
                progress.inc(1);
                if contiguous {
                    frontier = frontier.max(b);
                }
                continue;
            }
            let outcome = month(p, &ctx, &st, &progress, &inst, zone, &m, from, to).await?;
            left -= 1;
            progress.inc(1);
            match outcome {
                Outcome::Done { bars, newest_end } => {
                    fetched += 1;
                    written += bars;
                    known = true;
                    // A month that was still going on is done up to its newest bar only.
                    let until = if b <= started { Some(b) } else { newest_end.map(|t| t.min(b)) };
                    if let (true, Some(until)) = (contiguous, until) {
                        frontier = frontier.max(until);
                        if let Err(e) = loads.checkpoint(id, frontier, bars).await {
                            tracing::warn!(provider = NAME, error = %e, "resume point not recorded");
                        }
                    }
                    contiguous &= b <= started;
                }
                Outcome::Stopped => {
                    progress.finish("stopped; run the same command again to resume");
                    return Ok(());
                }
                Outcome::Failed(e) => {
                    contiguous = false;
                    let msg = format!("{} {}: {e}", inst.symbol, m.label());
                    let _ = loads.failed(id, &msg).await;
                    problems.push(msg);
                }
                Outcome::Refused(text) => {
                    contiguous = false;
                    // A month before the listing is refused too: the latest bars tell an unknown
                    // symbol from a missing month, for one more request.
                    if !known && !probe(p, &ctx, &inst, zone).await? {
                        let msg = format!(
                            "{}: Alpha Vantage refused symbol {:?} (unknown symbol?): {text}",
                            inst.symbol, inst.provider_ref
                        );
                        tracing::error!(provider = NAME, symbol = %inst.symbol, answer = %text, "unknown symbol; its other months are skipped");
                        st.error(&msg);
                        let _ = loads.failed(id, &msg).await;
                        problems.push(msg);
                        progress.inc(left);
                        break;
                    }
                    known = true;
                    tracing::warn!(provider = NAME, symbol = %inst.symbol, month = %m.label(), answer = %text, "month refused");
                    let msg = format!("{} {}: refused: {text}", inst.symbol, m.label());
                    let _ = loads.failed(id, &msg).await;
                    problems.push(msg);
                }
            }
        }
        if contiguous && frontier >= to {
            if let Err(e) = loads.finish(id).await {
                tracing::warn!(provider = NAME, error = %e, "the finished load is not recorded");
            }
        }
    }
    progress.finish(format!("{fetched} months fetched ({written} bars), {skipped} already stored"));
    st.set_state(if problems.is_empty() { FeedState::Stopped } else { FeedState::Failed });
    anyhow::ensure!(problems.is_empty(), "backfill incomplete:\n  {}", problems.join("\n  "));
    Ok(())
}

/// Fetches one month and sends its bars in [from, to), waiting out throttles.
#[allow(clippy::too_many_arguments)]
async fn month(
    p: &AlphaVantage,
    ctx: &FeedCtx,
    st: &ConnStatus,
    progress: &Progress,
    inst: &Instrument,
    zone: Tz,
    m: &Month,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Outcome> {
    let floor = p.pacer.interval().max(Duration::from_millis(100));
    let mut throttle = Backoff::new(floor, p.cfg.throttle_max.max(floor));
    let mut net = Backoff::new(floor, Duration::from_secs(120).max(floor));
    let mut attempts = 0;
    let label = m.label();
    loop {
        if !p.pacer.turn(&ctx.shutdown).await {
            return Ok(Outcome::Stopped);
        }
        let q = Query {
            symbol: &inst.provider_ref,
            size: Size::Full,
            month: Some(label.clone()),
            csv: p.cfg.backfill_csv,
            csv_zone: zone,
        };
        let result = tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(Outcome::Stopped),
            r = p.client.fetch(&q) => r,
        };
        let now = Instant::now();
        let failure = match result {
            Ok(Answer::Series(series)) => {
                st.set_state(FeedState::Backfilling);
                report_bad(st, &inst.symbol, &series);
                let bars: Vec<_> =
                    series.bars.into_iter().filter(|b| b.bucket >= from && b.bucket < to).collect();
                st.message(bars.last().map(|b| b.bucket + chrono::Duration::minutes(1)));
                tracing::info!(provider = NAME, symbol = %inst.symbol, month = %label, bars = bars.len(), "month fetched");
                let (n, newest_end) =
                    (bars.len() as u64, bars.last().map(|b| b.bucket + chrono::Duration::minutes(1)));
                if !send_bars(ctx, &inst.symbol, bars).await? {
                    return Ok(Outcome::Stopped);
                }
                // Stored, not only queued, before the resume point may pass this month.
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(Outcome::Stopped),
                    r = ctx.sink.flush() => r.map_err(|_| anyhow::anyhow!("the feed writer stopped"))?,
                }
                return Ok(Outcome::Done { bars: n, newest_end });
            }
            Ok(Answer::Refused(Refusal::Throttled(text))) => {
                let wait = throttle.next_delay();
                st.set_state(FeedState::Throttled);
                st.error(format!("throttled: {text}"));
                progress.set_message(format!(
                    "{} {label}: throttled, waiting {:.0} s",
                    inst.symbol,
                    wait.as_secs_f64()
                ));
                tracing::warn!(provider = NAME, symbol = %inst.symbol, month = %label, retry_in_ms = wait.as_millis() as u64,
                    answer = %text, "Alpha Vantage throttled the request; waiting");
                p.pacer.hold(now + wait);
                continue;
            }
            Ok(Answer::Refused(Refusal::InvalidCall(text))) => return Ok(Outcome::Refused(text)),
            Ok(Answer::Refused(r)) => {
                let msg = fatal_text(&r).expect("the other refusals are handled above");
                st.set_state(FeedState::Failed);
                st.error(&msg);
                progress.finish("stopped: refused");
                anyhow::bail!(msg);
            }
            Err(FetchError::Transport(e)) => {
                st.reconnect();
                let wait = net.next_delay();
                p.pacer.hold(now + wait);
                tracing::warn!(provider = NAME, symbol = %inst.symbol, month = %label, error = %e,
                    retry_in_ms = wait.as_millis() as u64, "request failed; retrying");
                e
            }
            Err(e @ FetchError::TooLarge(_)) => {
                st.parse_error(&format!("{} {label}: {e}", inst.symbol), "");
                e.to_string()
            }
            Err(FetchError::Unreadable { error, body }) => {
                st.parse_error(&format!("{} {label}: {error}", inst.symbol), &body);
                error.to_string()
            }
        };
        st.error(format!("{} {label}: {failure}", inst.symbol));
        attempts += 1;
        if attempts >= ATTEMPTS {
            return Ok(Outcome::Failed(format!("{failure} (after {attempts} attempts)")));
        }
    }
}

/// Whether the service knows the symbol: its latest bars, asked once.
async fn probe(p: &AlphaVantage, ctx: &FeedCtx, inst: &Instrument, zone: Tz) -> anyhow::Result<bool> {
    loop {
        if !p.pacer.turn(&ctx.shutdown).await {
            return Ok(true);
        }
        let q = Query {
            symbol: &inst.provider_ref,
            size: Size::Compact,
            month: None,
            csv: false,
            csv_zone: zone,
        };
        match p.client.fetch(&q).await {
            Ok(Answer::Refused(Refusal::InvalidCall(_))) => return Ok(false),
            Ok(Answer::Refused(Refusal::Throttled(_))) => {
                p.pacer.hold(Instant::now() + p.pacer.interval().max(Duration::from_secs(1)));
            }
            Ok(Answer::Refused(r)) => anyhow::bail!(fatal_text(&r).expect("fatal")),
            // Data, or no clear answer: not evidence of an unknown symbol.
            _ => return Ok(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn months_are_the_zones_calendar_months() {
        let ny = chrono_tz::America::New_York;
        // 2024-03-01 00:00 UTC is still February in New York.
        let m = months(utc("2024-03-01T00:00:00Z"), utc("2024-04-15T00:00:00Z"), ny);
        assert_eq!(m.iter().map(Month::label).collect::<Vec<_>>(), ["2024-02", "2024-03", "2024-04"]);
        assert_eq!(m[1].start, utc("2024-03-01T05:00:00Z")); // EST
        assert_eq!(m[1].end, utc("2024-04-01T04:00:00Z")); // EDT
                                                           // An end at a month's first instant does not touch that month.
        let m = months(utc("2024-03-01T05:00:00Z"), utc("2024-04-01T04:00:00Z"), ny);
        assert_eq!(m.iter().map(Month::label).collect::<Vec<_>>(), ["2024-03"]);
        // Across a year, and never before the first month the service has.
        let m = months(utc("1999-11-15T00:00:00Z"), utc("2000-02-02T00:00:00Z"), ny);
        assert_eq!(m.iter().map(Month::label).collect::<Vec<_>>(), ["2000-01", "2000-02"]);
        let m = months(utc("2023-12-20T00:00:00Z"), utc("2024-01-02T00:00:00Z"), ny);
        assert_eq!(m.iter().map(Month::label).collect::<Vec<_>>(), ["2023-12", "2024-01"]);
        assert!(months(utc("2024-01-02T00:00:00Z"), utc("2024-01-02T00:00:00Z"), ny).is_empty());
    }
}
