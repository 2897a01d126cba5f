//! `tapeflow-feed backfill alphavantage`: history, one request per symbol and month
//! (`month=YYYY-MM`, `outputsize=full`, `extended_hours=true`), oldest month first, with a
//! progress bar.
//!
//! Resume: bars are written idempotently, so re-running a window never stores anything twice;
//! what resuming saves is requests (the free tier allows 25 a day). A month is skipped when its
//! bars are already complete in `tapeflow.bars_1m_imported`, judged from the stored bars alone:
//! - something is stored after the month (the writer is one queue, written in order, and months
//!   are sent oldest first, so an interrupted run's last month has nothing after it), and
//! - the stored days cover the month: the first within 3 days of its start, the last within 3
//!   days of its end, no two consecutive days more than 4 days apart (a weekend with a holiday
//!   beside it is 4), which tells a month written by the live feed's last days or by a run over
//!   another window from a complete one.
//!
//! So the last month of a window is always asked again (one request per symbol) and a month
//! with a long closure is asked again harmlessly.

use super::answer::{Answer, Refusal};
use super::client::{FetchError, Query, Size};
use super::stream::{report_bad, send_bars};
use super::{fatal_text, AlphaVantage, NAME};
use crate::provider::{FeedCtx, Instrument};
use crate::status::{ConnStatus, FeedState};
use anyhow::Context;
use chrono::{DateTime, Datelike, Duration as Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use indicatif::{ProgressBar, ProgressStyle};
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

/// Whether the stored bars of `symbol` in [from, to) are complete (see the module's comment).
async fn complete(
    db: &Client,
    symbol: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    zone: &str,
) -> anyhow::Result<bool> {
    let row = db
        .query_one(
            "WITH d AS (SELECT DISTINCT (bucket AT TIME ZONE $4)::date AS day FROM tapeflow.bars_1m_imported
                        WHERE symbol = $1 AND bucket >= $2 AND bucket < $3),
                  g AS (SELECT day, day - lag(day) OVER (ORDER BY day) AS gap FROM d)
             SELECT count(*) > 0
                    AND min(day) - ($2 AT TIME ZONE $4)::date <= 3
                    AND (($3 - interval '1 microsecond') AT TIME ZONE $4)::date - max(day) <= 3
                    AND coalesce(max(gap), 0) <= 4
                    AND EXISTS (SELECT 1 FROM tapeflow.bars_1m_imported WHERE symbol = $1 AND bucket >= $3)
             FROM g",
            &[&symbol, &from, &to, &zone],
        )
        .await
        .with_context(|| format!("reading the stored bars of {symbol}"))?;
    Ok(row.get(0))
}

/// How one month ended.
enum Outcome {
    Done,
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
    let now = Utc::now();
    let plan: Vec<(Instrument, Tz, Vec<Month>)> = instruments
        .into_iter()
        .map(|i| {
            // Months are the series' own (New York for US listings); the symbol's zone says which.
            let zone = i.timezone.parse::<Tz>().unwrap_or(chrono_tz::America::New_York);
            let ms = months(from, to, zone).into_iter().filter(|m| m.start <= now).collect();
            (i, zone, ms)
        })
        .collect();
    let total: usize = plan.iter().map(|(_, _, m)| m.len()).sum();
    let bar = progress(total as u64);
    let (mut fetched, mut skipped) = (0usize, 0usize);
    let mut problems = Vec::new();
    for (inst, zone, months) in plan {
        let mut known = false; // the service has answered this symbol with data
        let mut left = months.len() as u64;
        for m in months {
            let (a, b) = (m.start.max(from), m.end.min(to));
            bar.set_message(format!("{} {}", inst.symbol, m.label()));
            if complete(&db, &inst.symbol, a, b, zone.name()).await? {
                tracing::info!(provider = NAME, symbol = %inst.symbol, month = %m.label(), "already stored; skipped");
                skipped += 1;
                left -= 1;
                bar.inc(1);
                continue;
            }
            let outcome = month(p, &ctx, &st, &bar, &inst, zone, &m, from, to).await?;
            left -= 1;
            bar.inc(1);
            match outcome {
                Outcome::Done => {
                    fetched += 1;
                    known = true;
                }
                Outcome::Stopped => {
                    bar.abandon_with_message("stopped");
                    return Ok(());
                }
                Outcome::Failed(e) => problems.push(format!("{} {}: {e}", inst.symbol, m.label())),
                Outcome::Refused(text) => {
                    // A month before the listing is refused too: the latest bars tell an unknown
                    // symbol from a missing month, for one more request.
                    if !known && !probe(p, &ctx, &inst, zone).await? {
                        let msg = format!(
                            "{}: Alpha Vantage refused symbol {:?} (unknown symbol?): {text}",
                            inst.symbol, inst.provider_ref
                        );
                        tracing::error!(provider = NAME, symbol = %inst.symbol, answer = %text, "unknown symbol; its other months are skipped");
                        st.error(&msg);
                        problems.push(msg);
                        bar.inc(left);
                        break;
                    }
                    known = true;
                    tracing::warn!(provider = NAME, symbol = %inst.symbol, month = %m.label(), answer = %text, "month refused");
                    problems.push(format!("{} {}: refused: {text}", inst.symbol, m.label()));
                }
            }
        }
    }
    bar.finish_with_message(format!("{fetched} months fetched, {skipped} already stored"));
    tracing::info!(provider = NAME, fetched, skipped, problems = problems.len(), "backfill done");
    st.set_state(FeedState::Stopped);
    anyhow::ensure!(problems.is_empty(), "backfill incomplete:\n  {}", problems.join("\n  "));
    Ok(())
}

/// Fetches one month and sends its bars in [from, to), waiting out throttles.
#[allow(clippy::too_many_arguments)]
async fn month(
    p: &AlphaVantage,
    ctx: &FeedCtx,
    st: &ConnStatus,
    bar: &ProgressBar,
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
                if !send_bars(ctx, &inst.symbol, bars).await? {
                    return Ok(Outcome::Stopped);
                }
                return Ok(Outcome::Done);
            }
            Ok(Answer::Refused(Refusal::Throttled(text))) => {
                let wait = throttle.next_delay();
                st.set_state(FeedState::Throttled);
                st.error(format!("throttled: {text}"));
                bar.set_message(format!(
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
                bar.abandon_with_message("refused");
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

/// The progress bar on stderr (drawn only on a terminal; the log has a line per month).
fn progress(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "alphavantage [{bar:30}] {pos}/{len} months  {msg}  ({elapsed}, about {eta} left)",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
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
