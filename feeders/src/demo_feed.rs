//! The demo feed's IO: registers the watchlist, backfills previous sessions, then streams
//! the simulated market in real time.
//!
//! Restarts never duplicate: the simulation is a pure function of (seed, symbol, day), each
//! trade carries a stable sequence number as its trade id, and writes skip ids already stored.
//! On start the feed resumes from the newest stored demo tick.

use crate::demo::market::{
    day_start, local_date, session_bounds, trading_days_before, DemoEvent, DemoMarket,
};
use crate::demo::watchlist::{self, DemoSymbol};
use crate::ingest_side::IngestClassifier;
use anyhow::Context;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tapeflow_analytics::SideSource;
use tapeflow_db::config::env_parse;
use tapeflow_db::copy::{write_quotes, write_ticks, QuoteRow, TickRow};
use tokio_postgres::Client;

/// Unix-epoch microseconds.
type UnixMicros = i64;

#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub database_url: String,
    /// `TAPEFLOW_DEMO_SEED` (default 42).
    pub seed: u64,
    /// `TAPEFLOW_DEMO_BACKFILL_DAYS`: trading days written before today on first start (default 2).
    pub backfill_days: usize,
    /// `TAPEFLOW_DEMO_ALWAYS_OPEN`: trade around the clock live, so the demo moves at any hour (default true).
    pub always_open: bool,
    /// `TAPEFLOW_DEMO_TRADES_PER_DAY`: simulated trades per symbol-session scale (default: the market's).
    pub trades_per_day: Option<u32>,
    /// `TAPEFLOW_DEMO_SYMBOLS`: comma-separated subset of the watchlist (default all).
    pub symbols: Option<Vec<String>>,
    /// `TAPEFLOW_DEMO_INTERVAL_MS`: how often live events are written (default 250).
    pub interval: Duration,
    /// `TAPEFLOW_DEMO_QUOTES`: also store quotes (default true).
    pub quotes: bool,
    /// `TAPEFLOW_DEMO_INFER_SIDES`: withhold the true aggressor and classify trades at ingest
    /// with Lee-Ready, as for a feed without aggressor flags (default false).
    pub infer_sides: bool,
    /// `TAPEFLOW_DEMO_LIVE`: stream in real time after the backfill (default true). With
    /// `false` the feed writes the backfill days (whole sessions, nothing of today) and exits:
    /// the same rows at any hour, for seeding a database or a reproducible test.
    pub live: bool,
}

impl DemoConfig {
    pub fn from_env() -> anyhow::Result<DemoConfig> {
        Ok(DemoConfig {
            database_url: tapeflow_db::database_url(),
            seed: env_parse("TAPEFLOW_DEMO_SEED")?.unwrap_or(42),
            backfill_days: env_parse("TAPEFLOW_DEMO_BACKFILL_DAYS")?.unwrap_or(2),
            always_open: env_parse("TAPEFLOW_DEMO_ALWAYS_OPEN")?.unwrap_or(true),
            trades_per_day: env_parse("TAPEFLOW_DEMO_TRADES_PER_DAY")?,
            symbols: std::env::var("TAPEFLOW_DEMO_SYMBOLS")
                .ok()
                .filter(|s| !s.is_empty())
                .map(|s| s.split(',').map(|x| x.trim().to_uppercase()).collect()),
            interval: Duration::from_millis(env_parse("TAPEFLOW_DEMO_INTERVAL_MS")?.unwrap_or(250)),
            quotes: env_parse("TAPEFLOW_DEMO_QUOTES")?.unwrap_or(true),
            infer_sides: env_parse("TAPEFLOW_DEMO_INFER_SIDES")?.unwrap_or(false),
            live: env_parse("TAPEFLOW_DEMO_LIVE")?.unwrap_or(true),
        })
    }
}

fn selected_symbols(config: &DemoConfig) -> anyhow::Result<Vec<DemoSymbol>> {
    let all = watchlist::watchlist();
    let Some(wanted) = &config.symbols else { return Ok(all) };
    let mut out = Vec::new();
    for w in wanted {
        let s = all.iter().find(|s| &s.symbol == w).with_context(|| {
            let names: Vec<_> = all.iter().map(|s| s.symbol.as_str()).collect();
            format!("TAPEFLOW_DEMO_SYMBOLS: {w} is not in the demo watchlist ({})", names.join(", "))
        })?;
        out.push(s.clone());
    }
    Ok(out)
}

/// Strategy parameters the demo writes for its watchlist (`tapeflow.strategy_configs.params`),
/// tuned so that a demo shows a signal, an order, a fill and an open position within minutes of
/// its start, at any hour. The production defaults (analytics) are not changed; these only
/// apply to the demo's own configs. Against the defaults:
///
/// * the value area comes from the last 20 bars (`state.profile_scope` rolling) rather than the
///   session: a US session runs from one 09:30 open to the next, so overnight the session's
///   value area spans the whole day and the engine would read balance for hours;
/// * short lookbacks (ATR 3, warm-up 3 bars, momentum over 3 bars at 0.05 %, volume average
///   over 5 bars), so the engine is ready 3 bars after the 09:30 reset and follows the thin
///   overnight tape, whose volume drops at the 16:00 close;
/// * entries from aggression 40 in an imbalance, and in balance from aggression 70 in the
///   flow's direction (`allow_balance_trades`): the simulated trends are 20–90 minute regimes,
///   and imbalance entries alone (with the same lookbacks) leave up to 14 minutes without an
///   entry anywhere on the watchlist;
/// * stops and targets at 2 and 4 ATRs (defaults 1.5 and 3), so a position stays open long
///   enough to be watched (a median of 14 minutes in a backtest of the demo's sessions, 8 at
///   1.5 and 3).
///
/// Measured with `market_state_history` over the demo market (seeds 42, 7 and 1234, 17
/// simulated days of regular sessions, nights and weekends), the longest stretch without an
/// entry signal on the ten-symbol watchlist is 5 minutes, the median 1 minute (the longest
/// follow the 09:30 reset and the 16:00 close); with the defaults it is 96–203 minutes at
/// night and 47–132 minutes in the regular session. On start the feed backfills (about 15 s
/// for two days), the bars closed within `signal_ttl` before are still traded, and the sim
/// broker fills an entry at the open of the next closed bar: modelled for a start every 7 s
/// over those days, the first fill comes after a median of 17 s, at most 256 s, at night as in
/// the regular session (with the defaults, and even with `extended_hours`, more than half of
/// the night starts and a quarter of the regular-session ones wait over five minutes).
///
/// Measured for real, `make demo` on a freshly reset database at 04:20 New York time (night,
/// binaries already built): first signal, order, fill and open position after 18, 18, 20 and
/// 20 s; again at 04:26, all four 19 s after the processes started. `tests/tests/demo_loop.rs`
/// (one day of backfill) sees them after about 7 s.
const DEMO_PARAMS: &str = r#"{"warmup_bars": 3, "atr_period": 3,
 "state": {"profile_scope": "rolling", "rolling_bars": 20, "momentum_lookback": 3, "momentum_threshold_pct": 0.05},
 "aggression": {"volume_lookback": 5},
 "strategy": {"min_aggression_score": 40, "allow_balance_trades": true, "balance_min_aggression": 70,
              "atr_stop_multiplier": 2, "atr_target_multiplier": 4}}"#;

/// Parameters earlier versions of the demo wrote for their configs: `'{}'` (the defaults).
const EARLIER_DEMO_PARAMS: &[&str] = &["{}"];

async fn register_symbols(client: &Client, symbols: &[DemoSymbol], always_open: bool) -> anyhow::Result<()> {
    // A config holding what a demo wrote (these parameters or an earlier demo's, the defaults
    // `{}` among them) is the demo's own: a re-run brings it up to date, parameters and
    // `extended_hours`. A config of a demo symbol whose parameters were changed by hand, or of
    // a symbol another provider registered, is left as it is (and `enabled` always is). To
    // keep the production defaults on a demo symbol, write one out, e.g. `{"warmup_bars": 20}`.
    let demo_written: Vec<&str> = EARLIER_DEMO_PARAMS.iter().copied().chain([DEMO_PARAMS]).collect();
    for s in symbols {
        client
            .execute(
                "INSERT INTO tapeflow.symbols (symbol, name, asset_class, exchange, tick_size, currency, timezone,
                                               session_open, session_close, provider, provider_ref)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'demo', $1)
                 ON CONFLICT (symbol) DO NOTHING",
                &[
                    &s.symbol,
                    &s.name,
                    &s.asset_class,
                    &watchlist::EXCHANGE,
                    &s.tick_size,
                    &watchlist::CURRENCY,
                    &watchlist::TIMEZONE_NAME,
                    &watchlist::session_open(),
                    &watchlist::session_close(),
                ],
            )
            .await
            .with_context(|| format!("registering {}", s.symbol))?;
        // The demo trades its whole watchlist live with [`DEMO_PARAMS`]. Always open, it trades
        // around the clock, but its symbols keep their US regular session (09:30–16:00 New
        // York): without `extended_hours` the executor would reject every entry whose bar is
        // outside that session and the sim broker would cancel every entry filling outside it,
        // so a demo started at night would never trade. With regular sessions only it stays off.
        client
            .execute(
                "INSERT INTO tapeflow.strategy_configs AS c (symbol, params, extended_hours)
                 VALUES ($1, $2::text::jsonb, $3)
                 ON CONFLICT (symbol, strategy) DO UPDATE
                   SET params = EXCLUDED.params, extended_hours = EXCLUDED.extended_hours
                   WHERE c.params = ANY ($4::text[]::jsonb[])
                     AND (c.params, c.extended_hours) IS DISTINCT FROM (EXCLUDED.params, EXCLUDED.extended_hours)
                     AND EXISTS (SELECT 1 FROM tapeflow.symbols y WHERE y.symbol = c.symbol AND y.provider = 'demo')",
                &[&s.symbol, &DEMO_PARAMS, &always_open, &demo_written],
            )
            .await
            .with_context(|| format!("enabling the live strategy for {}", s.symbol))?;
    }
    Ok(())
}

fn to_utc(us: UnixMicros) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).expect("simulated times are in range")
}

fn now_us() -> UnixMicros {
    Utc::now().timestamp_micros()
}

/// Converts simulated events to rows. With a classifier the true side is withheld and the
/// side is inferred at ingest from the quotes and prices, as for a feed without aggressor flags.
fn rows(
    market: &DemoMarket,
    events: &[DemoEvent],
    quotes: bool,
    mut infer: Option<&mut IngestClassifier>,
) -> (Vec<TickRow>, Vec<QuoteRow>) {
    let mut ticks = Vec::new();
    let mut qs = Vec::new();
    for e in events {
        match *e {
            DemoEvent::Trade { symbol_idx, time_us, price, size, side, seq } => {
                let symbol = &market.symbols()[symbol_idx].symbol;
                let (side, source) = match infer.as_deref_mut() {
                    Some(c) => c.classify(symbol, price, None),
                    None => (side, SideSource::Simulated),
                };
                ticks.push(TickRow {
                    time: to_utc(time_us),
                    symbol: symbol.clone(),
                    price,
                    size: size as f64,
                    side: side.code(),
                    side_source: source.as_str(),
                    trade_id: seq.to_string(),
                    exchange: Some(watchlist::EXCHANGE.to_string()),
                    conditions: None,
                })
            }
            DemoEvent::Quote { symbol_idx, time_us, bid, ask, bid_size, ask_size } => {
                let symbol = &market.symbols()[symbol_idx].symbol;
                if let Some(c) = infer.as_deref_mut() {
                    c.on_quote(symbol, bid, ask);
                }
                if quotes {
                    qs.push(QuoteRow {
                        time: to_utc(time_us),
                        symbol: symbol.clone(),
                        bid,
                        ask,
                        bid_size: bid_size as f64,
                        ask_size: ask_size as f64,
                        exchange: Some(watchlist::EXCHANGE.to_string()),
                    })
                }
            }
        }
    }
    (ticks, qs)
}

/// Writes events, reconnecting and retrying (writes are idempotent) until they are stored
/// or shutdown is requested. Quotes of a retried batch may repeat; trades never do.
/// `events` are all of the market's events before `complete_until`: once they are stored, the
/// symbols' watermark (`tapeflow.feed_watermarks`) moves there, and the scheduler evaluates
/// their bars up to it.
async fn write_events(
    client: &mut Client,
    config: &DemoConfig,
    market: &DemoMarket,
    events: &[DemoEvent],
    complete_until: UnixMicros,
    infer: Option<&mut IngestClassifier>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    let (ticks, quotes) = rows(market, events, config.quotes, infer);
    let symbols: Vec<&str> = market.symbols().iter().map(|s| s.symbol.as_str()).collect();
    let until = to_utc(complete_until);
    let mut delay = Duration::from_millis(200);
    loop {
        let result = async {
            // Quotes first: a reader that sees a trade also sees the quote in force when it
            // printed (a big batch's trades would otherwise show beside stale quotes).
            write_quotes(client, &quotes).await?;
            let n = write_ticks(client, &ticks).await?;
            // After the ticks' commit: the watermark never claims a trade not yet visible.
            client
                .execute(
                    "INSERT INTO tapeflow.feed_watermarks AS w (symbol, complete_until)
                     SELECT unnest($1::text[]), $2
                     ON CONFLICT (symbol) DO UPDATE SET complete_until = EXCLUDED.complete_until, updated_at = now()",
                    &[&symbols, &until],
                )
                .await
                .context("moving the demo symbols' watermark")?;
            anyhow::Ok(n)
        }
        .await;
        match result {
            Ok(n) => return Ok(n),
            Err(e) if *stop.borrow() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "write failed; reconnecting");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                if let Ok(c) = tapeflow_db::connect(&config.database_url, Duration::from_secs(5)).await {
                    *client = c;
                }
            }
        }
    }
}

/// Where to resume: just after the newest stored demo tick, else the backfill start.
async fn resume_point(
    client: &Client,
    config: &DemoConfig,
    symbols: &[DemoSymbol],
) -> anyhow::Result<UnixMicros> {
    let names: Vec<&str> = symbols.iter().map(|s| s.symbol.as_str()).collect();
    let row = client
        .query_one(
            "SELECT max(time) FROM tapeflow.ticks WHERE symbol = ANY($1) AND exchange = 'DEMO'",
            &[&names],
        )
        .await?;
    let newest: Option<DateTime<Utc>> = row.get(0);
    Ok(match newest {
        // Equal-time events are re-sent and skipped by the unique trade id.
        Some(t) => t.timestamp_micros(),
        None => {
            let days = trading_days_before(now_us(), config.backfill_days);
            days.first().map(|d| session_bounds(*d).0).unwrap_or_else(now_us)
        }
    })
}

pub async fn run(config: DemoConfig) -> anyhow::Result<()> {
    let stop = crate::shutdown::on_signal();
    let symbols = selected_symbols(&config)?;
    let mut market = DemoMarket::new(config.seed, symbols.clone()).with_always_open(config.always_open);
    if let Some(n) = config.trades_per_day {
        market = market.with_trades_per_day(n);
    }
    let mut client = tapeflow_db::connect(&config.database_url, Duration::from_secs(60)).await?;
    register_symbols(&client, &symbols, config.always_open).await?;
    let mut cursor = resume_point(&client, &config, &symbols).await?;
    let mut classifier = config.infer_sides.then(IngestClassifier::default);

    // Backfill in one-hour steps up to now (or, without the live stream, to today's start),
    // reporting progress.
    let backfill_end = if config.live { now_us() } else { day_start(local_date(now_us())) };
    if backfill_end - cursor > tapeflow_analytics::MINUTE {
        tracing::info!(from = %to_utc(cursor), to = %to_utc(backfill_end), "backfilling demo market");
        let mut written = 0u64;
        while cursor < backfill_end && !*stop.borrow() {
            let next = (cursor + 3_600_000_000).min(backfill_end);
            let events = events_between(&mut market, cursor, next);
            written += write_events(&mut client, &config, &market, &events, next, classifier.as_mut(), &stop)
                .await?;
            cursor = next;
            tracing::info!(upto = %to_utc(cursor), trades = written, "backfill progress");
        }
        market.clear_cache();
    }
    if !config.live {
        tracing::info!("backfill done; TAPEFLOW_DEMO_LIVE=false, not streaming");
        return Ok(());
    }

    tracing::info!(symbols = symbols.len(), "streaming demo market");
    let mut ticker = tokio::time::interval(config.interval);
    let mut stop_rx = stop.clone();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop_rx.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        let now = now_us();
        let events = events_between(&mut market, cursor, now);
        write_events(&mut client, &config, &market, &events, now, classifier.as_mut(), &stop).await?;
        cursor = now;
    }
    tracing::info!("demo feed stopped");
    Ok(())
}

/// All symbols' events in `[from, to)`, merged in time order.
fn events_between(market: &mut DemoMarket, from: UnixMicros, to: UnixMicros) -> Vec<DemoEvent> {
    let mut all: Vec<DemoEvent> =
        (0..market.symbols().len()).flat_map(|i| market.events(i, from, to)).collect();
    all.sort_by_key(|e| e.time_us());
    all
}
