//! `tapeflow-feed run` for Alpha Vantage: each routed symbol is polled for its latest 100 bars
//! (`outputsize=compact`) every poll interval, through the process's one pacer.
//!
//! A bar is sent to the writer when it is new or has changed since it was last sent (the
//! minute still forming is revised by the next poll, and `write_bars` replaces it). Catch-up:
//! when the 100 bars of an answer do not reach back to the newest bar already known for the
//! symbol (this process's, or on its first poll the newest stored), bars may have been missed,
//! so the next request asks for `outputsize=full`, the trailing 30 days.

use super::answer::{Answer, Bar, Refusal, Series};
use super::client::{FetchError, Query, Size};
use super::{fatal_text, AlphaVantage, NAME};
use crate::provider::{BarRow, FeedCtx, Instrument, Record};
use crate::status::{ConnStatus, FeedState};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::Duration;
use tapeflow_db::backoff::Backoff;
use tokio::sync::watch;
use tokio::time::Instant;

/// An unknown symbol is asked again after this at most (its backoff starts at the poll interval).
const REFUSED_RETRY_MAX: Duration = Duration::from_secs(3600);
/// The longest pause after a connection failure.
const NET_RETRY_MAX: Duration = Duration::from_secs(300);
/// Bad bars logged one by one per answer; the rest are counted in one more report.
const BAD_BARS_LOGGED: usize = 10;

struct Sym {
    inst: Instrument,
    next_due: Instant,
    /// The newest bar known stored or sent (None until looked up, then maybe still None).
    newest: Option<DateTime<Utc>>,
    looked_up: bool,
    full: bool,
    /// The plan refused `outputsize=full`: never asked again.
    no_full: bool,
    /// What was last sent per minute, for the minutes of the latest answer.
    sent: BTreeMap<DateTime<Utc>, [f64; 5]>,
    refused: Backoff,
}

pub(super) async fn run(
    p: &AlphaVantage,
    ctx: FeedCtx,
    mut instruments: watch::Receiver<Vec<Instrument>>,
) -> anyhow::Result<()> {
    let st = ctx.status.connection(NAME, "stream");
    st.set_state(FeedState::Connecting);
    let floor = p.pacer.interval().max(Duration::from_millis(100));
    let mut net = Backoff::new(floor, NET_RETRY_MAX.max(floor));
    let mut throttle = Backoff::new(floor, p.cfg.throttle_max.max(floor));
    let mut syms: BTreeMap<String, Sym> = BTreeMap::new();
    loop {
        follow(&mut syms, &instruments.borrow_and_update(), p.cfg.poll);
        st.set_symbols(syms.len());
        let due = syms.iter().min_by_key(|(_, s)| s.next_due).map(|(k, s)| (k.clone(), s.next_due));
        let symbol = match due {
            Some((symbol, at)) if at <= Instant::now() => symbol,
            other => {
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    r = instruments.changed() => if r.is_err() { return Ok(()) },
                    _ = sleep_until(other.map(|d| d.1)) => {}
                }
                continue;
            }
        };
        let sym = syms.get_mut(&symbol).expect("chosen above");
        if !sym.looked_up {
            sym.newest = newest_stored(&ctx.database_url, &sym.inst.symbol).await;
            sym.looked_up = true;
        }
        if !p.pacer.turn(&ctx.shutdown).await {
            return Ok(());
        }
        let size = if sym.full { Size::Full } else { Size::Compact };
        let q =
            Query { symbol: &sym.inst.provider_ref, size, month: None, csv: false, csv_zone: chrono_tz::UTC };
        let result = tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            r = p.client.fetch(&q) => r,
        };
        let now = Instant::now();
        match result {
            Ok(Answer::Series(series)) => {
                st.set_state(FeedState::Connected);
                net.reset();
                throttle.reset();
                sym.refused.reset();
                sym.next_due = now + p.cfg.poll;
                if !take(&ctx, &st, sym, series, size).await? {
                    return Ok(());
                }
            }
            Ok(Answer::Refused(Refusal::Throttled(text))) => {
                let wait = throttle.next_delay();
                st.set_state(FeedState::Throttled);
                st.error(format!("throttled: {text}"));
                tracing::warn!(provider = NAME, symbol = %symbol, retry_in_ms = wait.as_millis() as u64, answer = %text,
                    "Alpha Vantage throttled the request; waiting");
                p.pacer.hold(now + wait);
            }
            Ok(Answer::Refused(Refusal::InvalidCall(text))) => {
                st.set_state(FeedState::Connected);
                let wait = sym.refused.next_delay();
                sym.next_due = now + wait;
                let msg = format!(
                    "{symbol}: Alpha Vantage refused symbol {:?} (unknown symbol?): {text}",
                    sym.inst.provider_ref
                );
                tracing::error!(provider = NAME, symbol = %symbol, provider_ref = %sym.inst.provider_ref,
                    retry_in_s = wait.as_secs(), answer = %text, "Alpha Vantage refused the symbol; the others go on");
                st.error(msg);
            }
            Ok(Answer::Refused(Refusal::NotEntitled(text))) if size == Size::Full => {
                // The plan lacks the 30 days: poll on without catching up.
                sym.full = false;
                sym.no_full = true;
                let msg =
                    format!("{symbol}: cannot catch up on a gap, the plan refuses outputsize=full: {text}");
                tracing::warn!(provider = NAME, symbol = %symbol, answer = %text,
                    "the plan refuses outputsize=full; bars missed since the newest stored are not fetched (backfill them)");
                st.error(msg);
            }
            Ok(Answer::Refused(r)) => {
                let msg = fatal_text(&r).expect("the other refusals are handled above");
                tracing::error!(provider = NAME, error = %msg, "Alpha Vantage provider cannot go on");
                st.set_state(FeedState::Failed);
                st.error(&msg);
                anyhow::bail!(msg);
            }
            Err(FetchError::Transport(e)) => {
                let wait = net.next_delay();
                st.set_state(FeedState::Reconnecting);
                st.reconnect();
                st.error(format!("{symbol}: {e}"));
                tracing::warn!(provider = NAME, symbol = %symbol, error = %e, retry_in_ms = wait.as_millis() as u64,
                    "Alpha Vantage request failed; retrying");
                p.pacer.hold(now + wait);
            }
            Err(e @ FetchError::TooLarge(_)) => {
                st.parse_error(&format!("{symbol}: {e}"), "");
                sym.next_due = now + p.cfg.poll;
            }
            Err(FetchError::Unreadable { error, body }) => {
                st.parse_error(&format!("{symbol}: {error}"), &body);
                sym.next_due = now + p.cfg.poll;
            }
        }
    }
}

/// Follows the routed set: new symbols are due at once, gone ones are dropped.
fn follow(syms: &mut BTreeMap<String, Sym>, wanted: &[Instrument], poll: Duration) {
    syms.retain(|k, s| wanted.iter().any(|i| &i.symbol == k && i == &s.inst));
    for i in wanted {
        syms.entry(i.symbol.clone()).or_insert_with(|| Sym {
            inst: i.clone(),
            next_due: Instant::now(),
            newest: None,
            looked_up: false,
            full: false,
            no_full: false,
            sent: BTreeMap::new(),
            refused: Backoff::new(poll, REFUSED_RETRY_MAX.max(poll)),
        });
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The newest bar stored for a symbol, to tell whether the first answer leaves a gap; None
/// when there is none or the database cannot say.
async fn newest_stored(url: &str, symbol: &str) -> Option<DateTime<Utc>> {
    let client = tapeflow_db::connect(url, Duration::ZERO).await.ok()?;
    let row = client
        .query_one("SELECT max(bucket) FROM tapeflow.bars_1m_imported WHERE symbol = $1", &[&symbol])
        .await
        .map_err(|e| tracing::debug!(error = %e, "newest stored bar unknown"))
        .ok()?;
    row.get(0)
}

/// Sends the answer's new and changed bars; false if the writer stopped.
async fn take(
    ctx: &FeedCtx,
    st: &ConnStatus,
    sym: &mut Sym,
    series: Series,
    size: Size,
) -> anyhow::Result<bool> {
    let symbol = sym.inst.symbol.clone();
    if let Some(s) = &series.symbol {
        if !s.eq_ignore_ascii_case(&sym.inst.provider_ref) {
            st.parse_error(
                &format!("{symbol}: an answer for {s:?} where {:?} was asked for", sym.inst.provider_ref),
                "",
            );
            return Ok(true);
        }
    }
    report_bad(st, &symbol, &series);
    let (Some(oldest), Some(newest)) = (series.bars.first(), series.bars.last()) else {
        st.message(None);
        return Ok(true);
    };
    let (oldest, newest) = (oldest.bucket, newest.bucket);
    st.message(Some(newest + chrono::Duration::minutes(1)));
    // More than one answer's worth of bars since the newest one known: ask for 30 days once.
    let gap = sym.newest.is_some_and(|known| known < oldest);
    if gap && size == Size::Compact && !sym.no_full {
        tracing::info!(provider = NAME, symbol = %symbol, newest_known = ?sym.newest, oldest_answered = %oldest,
            "bars may be missing since the newest known; asking for the last 30 days");
        sym.full = true;
        sym.next_due = Instant::now();
    } else {
        if gap {
            tracing::warn!(provider = NAME, symbol = %symbol, newest_known = ?sym.newest, oldest_answered = %oldest,
                "bars may be missing before the oldest answered; run `tapeflow-feed backfill alphavantage` for the gap");
        }
        sym.full = false;
    }
    let mut changed = Vec::new();
    for b in &series.bars {
        let v = [b.open, b.high, b.low, b.close, b.volume];
        if sym.sent.get(&b.bucket) != Some(&v) {
            sym.sent.insert(b.bucket, v);
            changed.push(b.clone());
        }
    }
    // Only the latest answer's minutes can still change.
    sym.sent = sym.sent.split_off(&oldest);
    sym.newest = Some(sym.newest.map_or(newest, |n| n.max(newest)));
    tracing::debug!(provider = NAME, symbol = %symbol, bars = series.bars.len(), sent = changed.len(), "polled");
    send_bars(ctx, &symbol, changed).await
}

/// Sends bars to the writer; false if it stopped or the provider is stopping.
pub(super) async fn send_bars(ctx: &FeedCtx, symbol: &str, bars: Vec<Bar>) -> anyhow::Result<bool> {
    for b in bars {
        let row = BarRow {
            symbol: symbol.to_string(),
            bucket: b.bucket,
            open: b.open,
            high: b.high,
            low: b.low,
            close: b.close,
            volume: b.volume,
        };
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(false),
            r = ctx.sink.send(Record::Bar(row)) => if r.is_err() { anyhow::bail!("the feed writer stopped") },
        }
    }
    Ok(true)
}

/// Reports an answer's unreadable bars: each of the first few, then how many more.
pub(super) fn report_bad(st: &ConnStatus, symbol: &str, series: &Series) {
    for b in series.bad.iter().take(BAD_BARS_LOGGED) {
        st.parse_error(&format!("{symbol}: bar {}: {}", b.key, b.reason), &b.key);
    }
    if series.bad.len() > BAD_BARS_LOGGED {
        let rest = series.bad.len() - BAD_BARS_LOGGED;
        st.parse_error(&format!("{symbol}: {rest} more unreadable bars in the same answer"), "");
    }
}
