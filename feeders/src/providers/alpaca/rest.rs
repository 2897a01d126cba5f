//! Alpaca's REST history (`GET /v2/stocks/trades`, `/v2/stocks/quotes`): paginated reads of a
//! window, trades classified by Lee-Ready on the window's quotes, written through the sink page
//! by page with a resume point after each; and the `tapeflow-feed backfill alpaca` command.

use super::frames::{self, stored_trade_id, Amendment, Page, Quote, Trade};
use super::store::Store;
use super::{AlpacaDataConfig, HistoryQuotes, NAME};
use crate::ingest_side::IngestClassifier;
use crate::progress::Progress;
use crate::provider::{FeedCtx, Instrument, QuoteRow, Record, TickAmend, TickReplacement, TickRow};
use crate::status::{ConnStatus, FeedState};
use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::{HeaderMap, HeaderValue};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tapeflow_analytics::Side;
use tapeflow_db::backoff::Backoff;
use tokio_util::sync::CancellationToken;

/// Why a history read stopped.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// Retrying cannot help (refused keys, a plan without this data, a refused request).
    #[error("{0}")]
    Refused(String),
    /// Failed every attempt (the server or the network).
    #[error("{0}")]
    GaveUp(String),
    #[error("stopped")]
    Cancelled,
    #[error("the feed writer has stopped")]
    SinkClosed,
}

#[derive(Clone)]
pub struct Rest {
    cfg: Arc<AlpacaDataConfig>,
    http: reqwest::Client,
}

impl Rest {
    pub fn new(cfg: Arc<AlpacaDataConfig>) -> anyhow::Result<Rest> {
        let mut headers = HeaderMap::new();
        let header = |name: &str, v: &str| {
            let mut h = HeaderValue::from_str(v)
                .with_context(|| format!("{name} holds characters a header cannot"))?;
            h.set_sensitive(true);
            anyhow::Ok(h)
        };
        headers.insert("APCA-API-KEY-ID", header("APCA_API_KEY_ID", &cfg.key_id)?);
        headers.insert("APCA-API-SECRET-KEY", header("APCA_API_SECRET_KEY", &cfg.secret_key)?);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(cfg.timeout)
            .build()
            .context("building the HTTP client")?;
        Ok(Rest { cfg, http })
    }

    pub fn cfg(&self) -> &AlpacaDataConfig {
        &self.cfg
    }

    /// One page of `kind` (trades, quotes) for `symbol`, retried through throttling and
    /// server or network failures.
    #[allow(clippy::too_many_arguments)]
    async fn get_page(
        &self,
        kind: &str,
        symbol: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        token: Option<&str>,
        status: &ConnStatus,
        shutdown: &CancellationToken,
    ) -> Result<Vec<u8>, RestError> {
        let url = format!("{}/v2/stocks/{kind}", self.cfg.rest_url);
        let mut query: Vec<(&str, String)> = vec![
            ("symbols", symbol.to_string()),
            ("start", start.to_rfc3339_opts(SecondsFormat::Nanos, true)),
            ("end", end.to_rfc3339_opts(SecondsFormat::Nanos, true)),
            ("limit", self.cfg.page_limit.to_string()),
            ("feed", self.cfg.feed.clone()),
            ("sort", "asc".into()),
        ];
        if let Some(t) = token {
            query.push(("page_token", t.to_string()));
        }
        let mut backoff =
            Backoff::new(self.cfg.reconnect_min.max(Duration::from_millis(100)), self.cfg.reconnect_max);
        let mut failures = 0u32;
        loop {
            let attempt = self.http.get(&url).query(&query).send();
            let outcome = tokio::select! {
                r = attempt => r,
                _ = shutdown.cancelled() => return Err(RestError::Cancelled),
            };
            let wait = match outcome {
                Ok(resp) => {
                    let code = resp.status().as_u16();
                    let reset = resp
                        .headers()
                        .get("x-ratelimit-reset")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i64>().ok());
                    let body = tokio::select! {
                        b = resp.bytes() => b,
                        _ = shutdown.cancelled() => return Err(RestError::Cancelled),
                    };
                    match (code, body) {
                        (200, Ok(b)) => {
                            if status.state() == FeedState::Throttled {
                                status.set_state(FeedState::Backfilling);
                            }
                            return Ok(b.to_vec());
                        }
                        (429, _) => {
                            // Throttling is expected on long loads: wait as told, without
                            // counting it as a failure.
                            let until_reset = reset
                                .map(|r| (r - Utc::now().timestamp()).clamp(1, 60) as u64)
                                .map(Duration::from_secs)
                                .unwrap_or_else(|| backoff.next_delay());
                            status.set_state(FeedState::Throttled);
                            tracing::warn!(provider = NAME, %symbol, kind, wait_ms = until_reset.as_millis() as u64,
                                "alpaca history: rate limited (429); waiting");
                            until_reset
                        }
                        (401 | 403, body) => {
                            let msg = body.map(|b| frames::error_message(&b)).unwrap_or_default();
                            return Err(RestError::Refused(format!(
                                "GET {kind} {symbol}: {code} {msg} (check APCA_API_KEY_ID / APCA_API_SECRET_KEY, \
                                 and that the plan allows the {} feed for this period)",
                                self.cfg.feed
                            )));
                        }
                        (400 | 404 | 422, body) => {
                            let msg = body.map(|b| frames::error_message(&b)).unwrap_or_default();
                            return Err(RestError::Refused(format!("GET {kind} {symbol}: {code} {msg}")));
                        }
                        (code, body) => {
                            failures += 1;
                            let msg =
                                body.map(|b| frames::error_message(&b)).unwrap_or_else(|e| e.to_string());
                            if failures >= self.cfg.rest_attempts {
                                return Err(RestError::GaveUp(format!(
                                    "GET {kind} {symbol}: {code} {msg} after {failures} attempts"
                                )));
                            }
                            let wait = backoff.next_delay();
                            tracing::warn!(provider = NAME, %symbol, kind, status = code, message = %msg,
                                retry_in_ms = wait.as_millis() as u64, "alpaca history: request failed; retrying");
                            wait
                        }
                    }
                }
                Err(e) => {
                    failures += 1;
                    // reqwest's message names the URL, which holds no secret (keys go in headers).
                    if failures >= self.cfg.rest_attempts {
                        return Err(RestError::GaveUp(format!(
                            "GET {kind} {symbol}: {e} after {failures} attempts"
                        )));
                    }
                    let wait = backoff.next_delay();
                    tracing::warn!(provider = NAME, %symbol, kind, error = %e, retry_in_ms = wait.as_millis() as u64,
                        "alpaca history: request failed; retrying");
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return Err(RestError::Cancelled),
            }
        }
    }
}

/// A paginated read of one kind for one symbol over `[start, end]`.
struct Cursor<T> {
    kind: &'static str,
    symbol: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    token: Option<String>,
    done: bool,
    buf: VecDeque<T>,
}

impl<T> Cursor<T> {
    fn new(kind: &'static str, symbol: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Cursor<T> {
        Cursor {
            kind,
            symbol: symbol.to_string(),
            start,
            end,
            token: None,
            done: false,
            buf: VecDeque::new(),
        }
    }

    /// Reads the next page into the buffer; false when there is none.
    async fn fill(
        &mut self,
        rest: &Rest,
        status: &ConnStatus,
        shutdown: &CancellationToken,
        parse: fn(&[u8]) -> Result<Page<T>, String>,
        time_of: fn(&T) -> DateTime<Utc>,
    ) -> Result<bool, RestError> {
        const UNREADABLE_TRIES: u32 = 3;
        if self.done {
            return Ok(false);
        }
        let mut tries = 0;
        let page = loop {
            let body = rest
                .get_page(
                    self.kind,
                    &self.symbol,
                    self.start,
                    self.end,
                    self.token.as_deref(),
                    status,
                    shutdown,
                )
                .await?;
            match parse(&body) {
                Ok(p) => break p,
                Err(e) => {
                    status.parse_error(
                        &format!("{} page of {}: {e}", self.kind, self.symbol),
                        &String::from_utf8_lossy(&body),
                    );
                    tries += 1;
                    if tries >= UNREADABLE_TRIES {
                        return Err(RestError::GaveUp(format!(
                            "GET {} {}: unreadable page {tries} times: {e}",
                            self.kind, self.symbol
                        )));
                    }
                }
            }
        };
        for (e, item) in &page.bad {
            status.parse_error(&format!("{} of {}: {e}", self.kind, self.symbol), item);
        }
        let mut items = page.items;
        // Sorted in case a server does not; stable, so equal times keep the server's order.
        items.sort_by_key(time_of);
        self.buf.extend(items);
        // A token that does not move on would loop for ever: treat it as the end.
        match page.next_page_token {
            Some(t) if Some(&t) != self.token.as_ref() => self.token = Some(t),
            _ => self.done = true,
        }
        Ok(true)
    }
}

/// A history window of one instrument.
#[derive(Debug, Clone)]
pub struct Window {
    pub symbol: String,
    pub provider_ref: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// What one page of a window load did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Every trade up to here is stored (the writer confirmed it).
    pub done_until: DateTime<Utc>,
    /// Trades read so far in this load.
    pub trades: u64,
    pub quotes: u64,
    pub finished: bool,
}

/// Reads a window page by page: trades in time order, each classified by Lee-Ready on the
/// quote in force (read from the quotes history alongside), sent to the sink; after each page
/// the sink is flushed, so [`Step::done_until`] is a safe resume point.
pub struct WindowLoad<'a> {
    rest: &'a Rest,
    ctx: &'a FeedCtx,
    status: &'a ConnStatus,
    w: Window,
    trades: Cursor<Trade>,
    quotes: Option<Cursor<Quote>>,
    classifier: IngestClassifier,
    read_trades: u64,
    read_quotes: u64,
    finished: bool,
}

impl<'a> WindowLoad<'a> {
    pub fn new(rest: &'a Rest, ctx: &'a FeedCtx, status: &'a ConnStatus, w: Window) -> WindowLoad<'a> {
        let trades = Cursor::new("trades", &w.provider_ref, w.from, w.to);
        let lookback = chrono::Duration::from_std(rest.cfg.quote_lookback).unwrap_or_default();
        let quotes = (rest.cfg.history_quotes != HistoryQuotes::Off)
            .then(|| Cursor::new("quotes", &w.provider_ref, w.from - lookback, w.to));
        WindowLoad {
            rest,
            ctx,
            status,
            w,
            trades,
            quotes,
            classifier: IngestClassifier::default(),
            read_trades: 0,
            read_quotes: 0,
            finished: false,
        }
    }

    /// Applies (and, when stored, sends) the quotes up to `until`, reading pages as needed.
    async fn quotes_until(&mut self, until: DateTime<Utc>) -> Result<(), RestError> {
        let Some(q) = self.quotes.as_mut() else { return Ok(()) };
        let store = self.rest.cfg.history_quotes == HistoryQuotes::Store;
        loop {
            while let Some(head) = q.buf.front() {
                if head.time > until {
                    return Ok(());
                }
                let quote = q.buf.pop_front().expect("front exists");
                self.classifier.on_quote(&self.w.symbol, quote.bid, quote.ask);
                if store && quote.time >= self.w.from {
                    self.read_quotes += 1;
                    self.ctx
                        .sink
                        .send(Record::Quote(quote_row(&self.w.symbol, &quote)))
                        .await
                        .map_err(|_| RestError::SinkClosed)?;
                }
            }
            if !q
                .fill(self.rest, self.status, &self.ctx.shutdown, frames::parse_quotes_page, |q| q.time)
                .await?
            {
                return Ok(());
            }
        }
    }

    /// Loads the next page; `None` once the window is done.
    pub async fn step(&mut self) -> Result<Option<Step>, RestError> {
        if self.finished {
            return Ok(None);
        }
        let more = self
            .trades
            .fill(self.rest, self.status, &self.ctx.shutdown, frames::parse_trades_page, |t| t.time)
            .await?;
        let page: Vec<Trade> = self.trades.buf.drain(..).collect();
        for t in &page {
            self.quotes_until(t.time).await?;
            let (side, source) = self.classifier.classify(&self.w.symbol, t.price, None);
            self.read_trades += 1;
            self.ctx
                .sink
                .send(Record::Tick(tick_row(&self.w.symbol, t, side, source.as_str())))
                .await
                .map_err(|_| RestError::SinkClosed)?;
        }
        let last = !more || self.trades.done;
        if last {
            // The window's remaining quotes, for the quotes table.
            self.quotes_until(self.w.to).await?;
        }
        self.ctx.sink.flush().await.map_err(|_| RestError::SinkClosed)?;
        self.finished = last;
        let done_until = if last { self.w.to } else { page.last().map(|t| t.time).unwrap_or(self.w.from) };
        Ok(Some(Step { done_until, trades: self.read_trades, quotes: self.read_quotes, finished: last }))
    }
}

/// The tick row of an Alpaca trade.
pub fn tick_row(symbol: &str, t: &Trade, side: Side, side_source: &'static str) -> TickRow {
    TickRow {
        time: t.time,
        symbol: symbol.to_string(),
        price: t.price,
        size: t.size,
        side: side.code(),
        side_source,
        trade_id: t.trade_id(),
        exchange: (!t.exchange.is_empty()).then(|| t.exchange.clone()),
        conditions: (!t.conditions.is_empty()).then(|| t.conditions.clone()),
    }
}

/// What an amendment does to the stored ticks: a cancel (or error) removes the trade; a
/// correction replaces it by the corrected one.
pub fn tick_amend(symbol: &str, a: &Amendment) -> TickAmend {
    let (trade_id, replacement) = match a {
        Amendment::Cancel(x) => (stored_trade_id(&x.exchange, x.id), None),
        Amendment::Correction(c) => (
            stored_trade_id(&c.exchange, c.original_id),
            Some(TickReplacement {
                trade_id: stored_trade_id(&c.exchange, c.corrected_id),
                price: c.price,
                size: c.size,
                conditions: (!c.conditions.is_empty()).then(|| c.conditions.clone()),
            }),
        ),
    };
    TickAmend { symbol: symbol.to_string(), trade_id, at: a.time(), replacement }
}

/// The quote row of an Alpaca quote; the exchange column holds `bid/ask` exchanges when they
/// differ.
pub fn quote_row(symbol: &str, q: &Quote) -> QuoteRow {
    let exchange = match (&q.bid_exchange, &q.ask_exchange) {
        (Some(b), Some(a)) if a == b => Some(b.clone()),
        (Some(b), Some(a)) => Some(format!("{b}/{a}")),
        (b, a) => b.clone().or_else(|| a.clone()),
    };
    QuoteRow {
        time: q.time,
        symbol: symbol.to_string(),
        bid: q.bid,
        ask: q.ask,
        bid_size: q.bid_size,
        ask_size: q.ask_size,
        exchange,
    }
}

fn span_secs(from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    (to - from).num_seconds().max(0) as u64
}

/// `tapeflow-feed backfill alpaca --symbols … --from … --to …`: each symbol's window, resumed
/// from its unfinished load of the same window if there is one, skipped if a finished load
/// covers it.
pub async fn backfill_command(
    rest: &Rest,
    ctx: &FeedCtx,
    instruments: Vec<Instrument>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<()> {
    // To the microsecond, as stored: a rerun with the same arguments finds its rows.
    let micros = |t: DateTime<Utc>| DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t);
    let (from, to) = (micros(from), micros(to));
    let status = ctx.status.connection(NAME, "backfill");
    status.set_state(FeedState::Backfilling);
    status.set_symbols(instruments.len());
    let mut store = Store::new(&ctx.database_url);
    let per_symbol = span_secs(from, to).max(1);
    let progress = Progress::new("alpaca backfill", per_symbol * instruments.len() as u64, "s of history");
    let mut failures = Vec::new();
    let mut total_trades = 0u64;
    for (k, inst) in instruments.iter().enumerate() {
        let base = per_symbol * k as u64;
        progress.set_position(base);
        if store.range_done(&inst.symbol, from, to).await.context("reading tapeflow.backfill_progress")? {
            tracing::info!(symbol = %inst.symbol, %from, %to,
                "alpaca backfill: this window is already loaded (a finished row in tapeflow.backfill_progress); skipped");
            continue;
        }
        let open =
            store.open_loads(&inst.symbol, "range").await.context("reading tapeflow.backfill_progress")?;
        let (id, start, mut trades) = match open.into_iter().find(|l| l.from == from && l.to == to) {
            Some(l) => {
                let start = l.done_until.unwrap_or(l.from);
                tracing::info!(symbol = %inst.symbol, resume_at = %start, "alpaca backfill: resuming an interrupted load");
                (l.id, start, l.trades.max(0) as u64)
            }
            None => {
                (store.begin(&inst.symbol, "range", from, to).await.context("recording the load")?, from, 0)
            }
        };
        let window =
            Window { symbol: inst.symbol.clone(), provider_ref: inst.provider_ref.clone(), from: start, to };
        let mut load = WindowLoad::new(rest, ctx, &status, window);
        let before = trades;
        let result = loop {
            match load.step().await {
                Ok(Some(step)) => {
                    trades = before + step.trades;
                    progress.set_position(base + span_secs(from, step.done_until));
                    progress.set_message(format!(
                        "{} {} · {} trades",
                        inst.symbol,
                        step.done_until.format("%Y-%m-%d %H:%M"),
                        total_trades + trades
                    ));
                    if let Err(e) = store.checkpoint(id, step.done_until, trades as i64).await {
                        tracing::warn!(error = %format!("{e:#}"), "alpaca backfill: resume point not recorded");
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(()) => {
                total_trades += trades;
                store.finish(id, trades as i64).await.context("recording the finished load")?;
                tracing::info!(symbol = %inst.symbol, trades, "alpaca backfill: window loaded");
            }
            Err(RestError::Cancelled) => {
                progress.finish("interrupted; run the same command again to resume");
                return Ok(());
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(symbol = %inst.symbol, error = %msg, "alpaca backfill: window not loaded; run again to resume");
                status.error(&msg);
                let _ = store.failed(id, &msg).await;
                failures.push(format!("{}: {msg}", inst.symbol));
                if matches!(e, RestError::SinkClosed) {
                    break;
                }
            }
        }
    }
    progress.set_position(per_symbol * instruments.len() as u64);
    progress.finish(format!("{total_trades} trades read"));
    status.set_state(if failures.is_empty() { FeedState::Stopped } else { FeedState::Failed });
    anyhow::ensure!(failures.is_empty(), "alpaca backfill incomplete:\n  {}", failures.join("\n  "));
    Ok(())
}
