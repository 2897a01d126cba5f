//! Faults with exact counts. The demo feed streams a market that is a pure function of its
//! seed, so every trade it should have stored is known: the tests compute them with the
//! feeder's own simulation (tapeflow_feeders::demo) and compare the database with them
//! after each fault:
//!
//! * the feeder killed (SIGKILL) in the middle of a batch, then started again;
//! * PostgreSQL stopped with `-m immediate` while the feeder writes, then started;
//! * the network to PostgreSQL cut for 30 s, connections reset and refused;
//! * the network to PostgreSQL cut for 30 s, packets silently dropped, then healed.
//!
//! After each: no trade lost, none duplicated, none altered; every minute rollup equal to its
//! trades; the scheduler evaluated every closed bar exactly once, each on all of its trades,
//! also the bars whose close fell while the feed was cut off: the demo feed's watermark
//! (`tapeflow.feed_watermarks`) holds them until the feed has stored their trades, and no bar
//! is evaluated before its last trade was committed (told by commit timestamps); the web app's event stream carries on, with a
//! `resync` whenever its LISTEN connection was lost, and its API answers as the database.
//!
//! Each test runs on a private cluster (the crash would stop every other test's server),
//! the network tests with a proxy in front of it for the feeder and the web app. Bars are
//! real minutes, so each fault begins within some seconds of a minute's end: the bar it begins
//! in closes soon after the feeder's restart, or during the outage of the server or network.
//! `risk_limits.bar_max_wait` is raised to 2 minutes: an outage of 30 s and the reconnect after
//! it last longer than the default 30 s, after which a silent feed's bars close by the wall
//! clock again (tests/tests/watermarks.rs covers that fallback).

use chrono::{DateTime, Duration as ChronoDuration, DurationRound, Utc};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tapeflow_feeders::demo::market::{DemoEvent, DemoMarket};
use tapeflow_feeders::demo::watchlist;
use tapeflow_tests::private_cluster::PrivateCluster;
use tapeflow_tests::tcp_proxy::{Fault, TcpProxy};
use tapeflow_tests::*;

const SYMBOLS: [&str; 2] = ["AAPL", "MSFT"];
const SEED: u64 = 42;
/// About 3 trades a second over the two symbols at night and at weekends, 10 to 40 in the
/// regular session.
const TRADES_PER_DAY: u32 = 300_000;
/// The feeder's `application_name`, by which its server session is found.
const FEED_APP: &str = "faults-feed";

/// One simulated or stored trade.
#[derive(Debug, Clone, PartialEq)]
struct Trade {
    time_us: i64,
    price: f64,
    size: f64,
    side: i8,
}

type TradeKey = (String, String);

/// The demo market as the feed configured by [`Rig::spawn_feed`] simulates it.
fn demo_market() -> DemoMarket {
    let all = watchlist::watchlist();
    let symbols: Vec<_> = SYMBOLS
        .iter()
        .map(|s| all.iter().find(|w| w.symbol == *s).expect("in the watchlist").clone())
        .collect();
    DemoMarket::new(SEED, symbols).with_trades_per_day(TRADES_PER_DAY).with_always_open(true)
}

/// The market with the stretch of the next minutes already simulated (a test build takes
/// seconds to simulate a night), in the background.
fn simulate_ahead() -> tokio::task::JoinHandle<DemoMarket> {
    tokio::task::spawn_blocking(|| {
        let mut market = demo_market();
        let now = Utc::now().timestamp_micros();
        for idx in 0..SYMBOLS.len() {
            market.events(idx, now - 180_000_000, now + 1);
        }
        market
    })
}

/// The market's trades with `from <= time < to`, keyed by (symbol, trade id).
fn simulated_trades(
    market: &mut DemoMarket,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> BTreeMap<TradeKey, Trade> {
    let mut out = BTreeMap::new();
    for (idx, symbol) in SYMBOLS.iter().enumerate() {
        for e in market.events(idx, from.timestamp_micros(), to.timestamp_micros()) {
            if let DemoEvent::Trade { time_us, price, size, side, seq, .. } = e {
                let trade = Trade { time_us, price, size: size as f64, side: side.code() as i8 };
                out.insert((symbol.to_string(), seq.to_string()), trade);
            }
        }
    }
    out
}

fn minute(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(ChronoDuration::minutes(1)).expect("in range")
}

/// Returns when the wall clock shows between `from` and `to` seconds past a minute: at once
/// if it does, else at the next `from`.
async fn within_seconds(from: u32, to: u32) {
    let now = Utc::now();
    let second = (now - minute(now)).num_seconds() as u32;
    if (from..to).contains(&second) {
        return;
    }
    let mut target = minute(now) + ChronoDuration::seconds(from as i64);
    if target <= now {
        target += ChronoDuration::minutes(1);
    }
    tokio::time::sleep((target - now).to_std().expect("future")).await;
}

/// An SSE event: when it arrived, its name and its data.
type Received = (DateTime<Utc>, String, serde_json::Value);

/// What the SSE stream of the web app delivered, with the time each event arrived.
#[derive(Clone, Default)]
struct SseLog {
    events: Arc<Mutex<Vec<Received>>>,
    ended: Arc<AtomicBool>,
}

impl SseLog {
    /// Reads `/events` in the background for as long as the test runs, so the stream never
    /// falls behind (a client that does is sent `resync` and dropped by the server).
    async fn record(http: &reqwest::Client, base: &str) -> SseLog {
        let mut reader = SseReader::connect_with(http, &format!("{base}/events")).await;
        let log = SseLog::default();
        let out = log.clone();
        tokio::spawn(async move {
            loop {
                let asked = Instant::now();
                match reader.next(Duration::from_secs(1)).await {
                    Some((event, data)) => {
                        let v = serde_json::from_str(&data).unwrap_or(serde_json::Value::Null);
                        out.events.lock().unwrap().push((Utc::now(), event, v));
                    }
                    // Nothing within the second is a quiet stream; nothing at once, its end.
                    None if asked.elapsed() < Duration::from_millis(900) => {
                        out.ended.store(true, Ordering::SeqCst);
                        return;
                    }
                    None => {}
                }
            }
        });
        log
    }

    fn since(&self, t: DateTime<Utc>) -> Vec<Received> {
        self.events.lock().unwrap().iter().filter(|(at, ..)| *at >= t).cloned().collect()
    }

    /// The first `candle` event for `symbol` after `t` whose bar starts at or after `bucket`.
    fn candle_after(&self, t: DateTime<Utc>, symbol: &str, bucket: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.since(t).into_iter().find_map(|(at, event, v)| {
            let b = v["bucket"].as_str().and_then(|b| DateTime::parse_from_rfc3339(b).ok())?;
            (event == "candle" && v["symbol"] == symbol && b >= bucket).then_some(at)
        })
    }
}

/// A private cluster with the demo feed and the web app on it (through a proxy, optionally),
/// and a direct connection for the test.
struct Rig {
    cluster: PrivateCluster,
    proxy: Option<TcpProxy>,
    c: tokio_postgres::Client,
    feed: Option<Proc>,
    _web: Proc,
    base: String,
    http: reqwest::Client,
    sse: SseLog,
    market: DemoMarket,
    /// The first stored trade.
    start: DateTime<Utc>,
}

impl Rig {
    /// Starts everything and the feed from a trade of two minutes ago, so that bars are
    /// closed and evaluated before any fault: the demo registers its symbols (a first run
    /// that trades almost nothing), one simulated trade is stored as if the feed had written
    /// it, and the feed, started again, resumes after it by writing those two minutes at once.
    async fn start(label: &str, proxied: bool) -> Rig {
        let market = simulate_ahead();
        let cluster = PrivateCluster::start(label);
        let proxy = if proxied { Some(TcpProxy::start(cluster.port).await) } else { None };
        let c = cluster.client().await;
        let db = cluster.test_db(cluster.url_on(proxy.as_ref().map_or(cluster.port, |p| p.port)));
        let (web, base, http) = start_web(&db).await;
        let sse = SseLog::record(&http, &base).await;
        let market = market.await.unwrap();
        let mut rig =
            Rig { cluster, proxy, c, feed: None, _web: web, base, http, sse, market, start: Utc::now() };

        rig.spawn_feed(1);
        wait_until(
            &rig.c,
            &format!("SELECT count(*) = {} FROM tapeflow.strategy_configs", SYMBOLS.len()),
            Duration::from_secs(30),
            None,
        )
        .await;
        assert!(rig.feed.take().unwrap().terminate(Duration::from_secs(10)), "the feed did not stop");
        // The scheduler waits until the two minutes are stored: it would evaluate the bar of
        // the lone trade at once.
        rig.c
            .batch_execute(
                "UPDATE tapeflow.strategy_configs SET enabled = false;
                 DELETE FROM tapeflow.ticks; DELETE FROM tapeflow.quotes; DELETE FROM tapeflow.market_state_log;
                 DELETE FROM tapeflow.feed_watermarks;
                 UPDATE tapeflow.risk_limits SET bar_max_wait = '2 minutes'",
            )
            .await
            .unwrap();
        let since = minute(Utc::now()) - ChronoDuration::minutes(2);
        let first = simulated_trades(&mut rig.market, since, since + ChronoDuration::minutes(1));
        let ((symbol, trade_id), t) =
            first.iter().min_by_key(|(_, t)| t.time_us).expect("a trade in a minute");
        let time = DateTime::from_timestamp_micros(t.time_us).unwrap();
        rig.c
            .execute(
                "INSERT INTO tapeflow.ticks (time, symbol, price, size, side, side_source, trade_id, exchange)
                 VALUES ($1, $2, $3, $4, $5, 'simulated', $6, 'DEMO')",
                &[&time, symbol, &t.price, &t.size, &t.side, trade_id],
            )
            .await
            .unwrap();
        rig.start = time;
        rig.spawn_feed(TRADES_PER_DAY);
        // Caught up, and declaring its watermark: a fault before the feed's first declaration
        // would leave its bars to the wall-clock rule (the case of a feed that reports none).
        wait_until(
            &rig.c,
            &format!(
                "SELECT max(time) > now() - interval '2 seconds'
                        AND (SELECT count(*) FROM tapeflow.feed_watermarks WHERE updated_at > now() - interval '2 seconds') = {}
                 FROM tapeflow.ticks",
                SYMBOLS.len()
            ),
            Duration::from_secs(60),
            None,
        )
        .await;
        rig.c.batch_execute("UPDATE tapeflow.strategy_configs SET enabled = true").await.unwrap();
        rig
    }

    fn daemon_port(&self) -> u16 {
        self.proxy.as_ref().map_or(self.cluster.port, |p| p.port)
    }

    fn spawn_feed(&mut self, trades_per_day: u32) {
        let url = format!("{}?application_name={FEED_APP}", self.cluster.url_on(self.daemon_port()));
        let env = [
            ("DATABASE_URL", url),
            ("TAPEFLOW_DEMO_SYMBOLS", SYMBOLS.join(",")),
            ("TAPEFLOW_DEMO_SEED", SEED.to_string()),
            ("TAPEFLOW_DEMO_TRADES_PER_DAY", trades_per_day.to_string()),
            ("TAPEFLOW_DEMO_ALWAYS_OPEN", "true".into()),
            ("TAPEFLOW_DEMO_BACKFILL_DAYS", "0".into()),
            ("TAPEFLOW_DEMO_INTERVAL_MS", "200".into()),
            ("TAPEFLOW_FEED_METRICS_ADDR", "off".into()),
        ];
        self.feed = Some(Proc::spawn("tapeflow-feed", &["demo"], &env));
    }

    /// Holds the feeder in the middle of a batch: with `bars_1m` locked, the ticks trigger
    /// waits, so the feeder has sent its batch, the server has inserted it into ticks and not
    /// committed it, and the feeder waits to hear how it went. Returns the connection holding
    /// the lock (COMMIT releases it).
    async fn hold_feeder_mid_batch(&self) -> tokio_postgres::Client {
        let locker = self.cluster.client().await;
        locker.batch_execute("BEGIN; LOCK TABLE tapeflow.bars_1m IN EXCLUSIVE MODE").await.unwrap();
        wait_until(
            &self.c,
            &format!(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = '{FEED_APP}'
                   AND state = 'active' AND wait_event_type = 'Lock' AND backend_xid IS NOT NULL)"
            ),
            Duration::from_secs(30),
            Some(&format!(
                "SELECT format('%s %s %s %s %s', pid, state, wait_event_type, wait_event, left(query, 50)) FROM pg_stat_activity
                 WHERE application_name = '{FEED_APP}'
                 UNION ALL SELECT format('%s ticks, newest %s', count(*), max(time)) FROM tapeflow.ticks"
            )),
        )
        .await;
        locker
    }

    /// Waits until the feed has stored a trade at or after `at` and after a second from now,
    /// so that every trade before that time is due in the database; returns the time.
    async fn caught_up(&self, at: DateTime<Utc>, timeout: Duration) -> DateTime<Utc> {
        let due = at.max(Utc::now() + ChronoDuration::seconds(1));
        let started = Instant::now();
        loop {
            let newest: Option<DateTime<Utc>> =
                self.c.query_one("SELECT max(time) FROM tapeflow.ticks", &[]).await.unwrap().get(0);
            if newest.is_some_and(|n| n >= due) {
                return due;
            }
            assert!(
                started.elapsed() < timeout,
                "the feed did not catch up within {timeout:?} (newest {newest:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One fault: when it began and when it was over (the feeder started again, the server up,
/// the network back).
struct Outage {
    began: DateTime<Utc>,
    ended: DateTime<Utc>,
}

/// How the web app's LISTEN connection lived through the fault.
#[derive(PartialEq)]
enum Listen {
    /// Never lost: no `resync`, only the events that follow.
    Kept,
    /// Lost and made again: a `resync`, then the events.
    Remade,
}

/// The checks every fault ends with; prints what they counted and returns how many bars closed
/// during the outage.
async fn verify(rig: &mut Rig, label: &str, outage: &Outage, listen: Listen, test_started: Instant) -> i64 {
    // Due: every trade up to the end of the minute the fault began in, and a second ago.
    let due =
        rig.caught_up(minute(outage.began) + ChronoDuration::seconds(61), Duration::from_secs(90)).await;
    let expected = simulated_trades(&mut rig.market, rig.start, due);
    let c = &rig.c;

    // Trades: exactly the simulation's, between the first stored one and `due`.
    let rows = c
        .query(
            "SELECT symbol, trade_id, time, price, size, side, side_source, exchange FROM tapeflow.ticks
             WHERE time >= $1 AND time < $2",
            &[&rig.start, &due],
        )
        .await
        .unwrap();
    let mut stored = BTreeMap::new();
    for r in &rows {
        assert_eq!((r.get::<_, &str>(6), r.get::<_, Option<&str>>(7)), ("simulated", Some("DEMO")));
        let time: DateTime<Utc> = r.get(2);
        let trade =
            Trade { time_us: time.timestamp_micros(), price: r.get(3), size: r.get(4), side: r.get(5) };
        stored.insert((r.get::<_, String>(0), r.get::<_, String>(1)), trade);
    }
    let duplicated = rows.len() - stored.len();
    let lost: Vec<_> = expected.keys().filter(|k| !stored.contains_key(*k)).collect();
    let extra: Vec<_> = stored.keys().filter(|k| !expected.contains_key(*k)).collect();
    let altered: Vec<_> = expected.iter().filter(|(k, t)| stored.get(*k).is_some_and(|s| s != *t)).collect();
    assert!(expected.len() > 20, "only {} simulated trades to compare", expected.len());
    assert_eq!(duplicated, 0, "duplicated trades");
    assert!(
        lost.is_empty(),
        "{} of {} trades lost: {:?}",
        lost.len(),
        expected.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(
        extra.is_empty(),
        "{} trades the simulation does not have: {:?}",
        extra.len(),
        &extra[..extra.len().min(10)]
    );
    assert!(altered.is_empty(), "{} trades differ: {:?}", altered.len(), &altered[..altered.len().min(5)]);
    let after_fault = expected.values().filter(|t| t.time_us >= outage.began.timestamp_micros()).count();

    // Minute rollups: each closed minute's candle equals the simulated trades of that minute.
    let mut minutes: BTreeMap<(String, i64), Vec<&Trade>> = BTreeMap::new();
    for ((symbol, _), t) in &expected {
        minutes.entry((symbol.clone(), t.time_us.div_euclid(60_000_000) * 60_000_000)).or_default().push(t);
    }
    let bars = c
        .query(
            "SELECT symbol, bucket, tapeflow.trades(candle), tapeflow.volume(candle), tapeflow.buy_volume(candle),
                    tapeflow.sell_volume(candle), tapeflow.open(candle), tapeflow.high(candle),
                    tapeflow.low(candle), tapeflow.close(candle)
             FROM tapeflow.bars_1m WHERE bucket >= tapeflow.minute($1) AND bucket < tapeflow.minute($2)",
            &[&rig.start, &due],
        )
        .await
        .unwrap();
    let last_minute = minute(due).timestamp_micros();
    minutes.retain(|(_, m), _| *m < last_minute);
    assert_eq!(bars.len(), minutes.len(), "one bar per symbol and minute with trades");
    for b in &bars {
        let (symbol, bucket): (String, DateTime<Utc>) = (b.get(0), b.get(1));
        let trades = &minutes[&(symbol.clone(), bucket.timestamp_micros())];
        let volume = |side: Option<i8>| {
            trades.iter().filter(|t| side.is_none_or(|s| t.side == s)).map(|t| t.size).sum::<f64>()
        };
        let first = trades.iter().map(|t| t.time_us).min().unwrap();
        let last = trades.iter().map(|t| t.time_us).max().unwrap();
        // Trades printed in the same microsecond may open or close the bar in either order.
        let at =
            |time: i64| trades.iter().filter(move |t| t.time_us == time).map(|t| t.price).collect::<Vec<_>>();
        let what = format!("bar {symbol} {bucket}");
        assert_eq!(b.get::<_, i64>(2), trades.len() as i64, "{what}: trades");
        assert_eq!(b.get::<_, f64>(3), volume(None), "{what}: volume");
        assert_eq!(b.get::<_, f64>(4), volume(Some(b'B' as i8)), "{what}: buy volume");
        assert_eq!(b.get::<_, f64>(5), volume(Some(b'S' as i8)), "{what}: sell volume");
        assert!(at(first).contains(&b.get::<_, f64>(6)), "{what}: open");
        assert_eq!(
            b.get::<_, f64>(7),
            trades.iter().map(|t| t.price).fold(f64::MIN, f64::max),
            "{what}: high"
        );
        assert_eq!(
            b.get::<_, f64>(8),
            trades.iter().map(|t| t.price).fold(f64::MAX, f64::min),
            "{what}: low"
        );
        assert!(at(last).contains(&b.get::<_, f64>(9)), "{what}: close");
    }

    // The scheduler: the bar the fault began in must be closed and evaluated first.
    wait_until(
        c,
        &format!(
            "SELECT count(DISTINCT symbol) = {n} FROM tapeflow.market_state_log WHERE bar >= tapeflow.minute('{began}')",
            n = SYMBOLS.len(),
            began = outage.began.to_rfc3339()
        ),
        Duration::from_secs(90),
        Some("SELECT format('%s %s %s', symbol, max(bar), max(evaluated_at)) FROM tapeflow.market_state_log GROUP BY symbol"),
    )
    .await;
    // Every bar closed by now, from the feed's first minute, is evaluated (the scheduler
    // evaluates what closed about a second ago), exactly once (the log's key allows no more).
    let horizon: DateTime<Utc> = c
        .query_one(
            "SELECT tapeflow.minute(now() - bar_grace - interval '2 seconds') FROM tapeflow.risk_limits",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // With the bar of the fault, evaluated as waited for above.
    let horizon = horizon.max(minute(outage.began) + ChronoDuration::minutes(1));
    let range = format!(
        "b.bucket >= tapeflow.minute('{}') AND b.bucket < '{}'",
        rig.start.to_rfc3339(),
        horizon.to_rfc3339()
    );
    wait_until(
        c,
        &format!(
            "SELECT NOT EXISTS (SELECT 1 FROM tapeflow.bars_1m b WHERE {range} AND NOT EXISTS
               (SELECT 1 FROM tapeflow.market_state_log l WHERE l.symbol = b.symbol AND l.bar = b.bucket))"
        ),
        Duration::from_secs(10),
        Some(&format!(
            "SELECT format('not evaluated: %s %s', b.symbol, b.bucket) FROM tapeflow.bars_1m b WHERE {range}
               AND NOT EXISTS (SELECT 1 FROM tapeflow.market_state_log l WHERE l.symbol = b.symbol AND l.bar = b.bucket)"
        )),
    )
    .await;
    let counts = c
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM tapeflow.bars_1m b WHERE {range}),
                        (SELECT count(*) FROM tapeflow.market_state_log b WHERE {r}),
                        (SELECT count(*) FROM (SELECT DISTINCT symbol, bar FROM tapeflow.market_state_log b WHERE {r}) d),
                        (SELECT count(*) FROM tapeflow.market_state_log b WHERE {r}
                           AND NOT EXISTS (SELECT 1 FROM tapeflow.bars_1m m WHERE m.symbol = b.symbol AND m.bucket = b.bar))",
                r = range.replace("b.bucket", "b.bar")
            ),
            &[],
        )
        .await
        .unwrap();
    let (bar_count, evaluations, distinct, phantom): (i64, i64, i64, i64) =
        (counts.get(0), counts.get(1), counts.get(2), counts.get(3));
    assert_eq!((evaluations, distinct, phantom), (bar_count, bar_count, 0), "one evaluation per closed bar");
    // Bars that closed during the outage: the scheduler held them for the feed's watermark (or
    // did not run); each was evaluated once when it could.
    let missed: i64 = c
        .query_one(
            "SELECT count(*) FROM tapeflow.market_state_log l, tapeflow.risk_limits r
             WHERE l.bar + interval '1 minute' + r.bar_grace BETWEEN $1 AND $2",
            &[&outage.began, &outage.ended],
        )
        .await
        .unwrap()
        .get(0);

    // No bar was evaluated before its last trade was committed (told by commit timestamps;
    // evaluated_at is the clock when its state was logged, after the snapshot it was read in),
    // and each bar's evaluation equals an evaluation of the stored bars afterwards.
    let mut early_total = 0;
    for symbol in SYMBOLS {
        let early: Vec<(DateTime<Utc>, DateTime<Utc>, DateTime<Utc>)> = c
            .query(
                &format!(
                    "WITH done AS (SELECT tapeflow.minute(time) AS bar, max(pg_xact_commit_timestamp(xmin)) AS complete_at
                                   FROM tapeflow.ticks b WHERE symbol = $1 AND {range} GROUP BY 1)
                     SELECT l.bar, l.evaluated_at, d.complete_at FROM tapeflow.market_state_log l JOIN done d USING (bar)
                     WHERE l.symbol = $1 AND l.evaluated_at < d.complete_at ORDER BY l.bar",
                    range = range.replace("b.bucket", "b.time")
                ),
                &[&symbol],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        for (bar, evaluated, complete) in &early {
            eprintln!("{label}: {symbol} bar {bar} evaluated at {evaluated}, its last trade committed at {complete}");
        }
        early_total += early.len();
        let diff: Vec<String> = c
            .query(
                "WITH h AS (SELECT * FROM tapeflow.market_state_history($1, tapeflow.minute($2), $3,
                              (SELECT params FROM tapeflow.strategy_configs WHERE symbol = $1 AND strategy = 'amt'))),
                      l AS (SELECT * FROM tapeflow.market_state_log WHERE symbol = $1 AND bar >= tapeflow.minute($2) AND bar < $3)
                 SELECT format('bar %s/%s: history %s %s %s %s, live %s %s %s %s', h.time, l.bar, h.state, h.aggression,
                               h.atr, h.signal, l.state, l.aggression, l.atr, l.signal)
                 FROM h FULL JOIN l ON l.bar = h.time
                 WHERE h.state IS DISTINCT FROM l.state OR h.confidence IS DISTINCT FROM l.confidence
                    OR h.aggression IS DISTINCT FROM l.aggression OR h.atr IS DISTINCT FROM l.atr
                    OR h.delta IS DISTINCT FROM l.delta OR (h.signal IS NULL) <> (l.signal IS NULL)",
                &[&symbol, &rig.start, &horizon],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(diff.is_empty(), "{symbol}: live evaluations and history disagree: {diff:#?}");
    }
    assert_eq!(early_total, 0, "bars evaluated before all their trades were stored");

    // The web app: the stream carried on, with a resync if its LISTEN connection was lost,
    // and after it a re-read of the API gives what the database holds.
    assert!(!rig.sse.ended.load(Ordering::SeqCst), "the event stream ended");
    let resyncs = || -> Vec<DateTime<Utc>> {
        rig.sse.since(outage.began).into_iter().filter(|(_, e, _)| e == "resync").map(|(at, ..)| at).collect()
    };
    let resumed_from = match listen {
        Listen::Kept => {
            assert!(resyncs().is_empty(), "resync without a lost connection at {:?}", resyncs());
            outage.began
        }
        Listen::Remade => {
            // The web app retries its LISTEN connection every 5 s at most.
            let deadline = Instant::now() + Duration::from_secs(20);
            while resyncs().is_empty() {
                assert!(Instant::now() < deadline, "no resync after the LISTEN connection was lost");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            resyncs()[0]
        }
    };
    for symbol in SYMBOLS {
        let deadline = Instant::now() + Duration::from_secs(20);
        while rig.sse.candle_after(resumed_from, symbol, minute(outage.began)).is_none() {
            assert!(Instant::now() < deadline, "no candle event for {symbol} after the fault");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let from = rig.start - ChronoDuration::minutes(1);
        let to = Utc::now() + ChronoDuration::minutes(1);
        let (from_s, to_s) = (from.to_rfc3339(), to.to_rfc3339());
        let query = [("symbol", symbol), ("tf", "1m"), ("from", &from_s), ("to", &to_s)];
        let r = rig.http.get(format!("{}/api/candles", rig.base)).query(&query).send().await.unwrap();
        assert!(r.status().is_success(), "/api/candles: {}", r.status());
        let web: serde_json::Value = r.json().await.unwrap();
        let db: serde_json::Value = c
            .query_one(
                "SELECT json_agg(c ORDER BY c.time) FROM tapeflow.candles($1, '1m', $2, $3) c",
                &[&symbol, &from, &to],
            )
            .await
            .unwrap()
            .get(0);
        // The newest bar may have moved on between the two reads; every closed one may not.
        let closed = |v: &serde_json::Value| {
            v.as_array().map(|a| a[..a.len().saturating_sub(1)].to_vec()).unwrap_or_default()
        };
        assert_eq!(closed(&web), closed(&db), "/api/candles for {symbol} after the fault");
    }

    eprintln!(
        "{label}: {} trades compared ({after_fault} after the fault began), 0 lost, 0 duplicated, 0 altered; \
         {} one-minute bars equal to their trades; {evaluations} closed bars evaluated once each, {missed} of them \
         closing during the outage, none before its last trade was stored; {} resync(s); \
         outage {:.1} s; test {:.1} s",
        expected.len(),
        bars.len(),
        resyncs().len(),
        (outage.ended - outage.began).num_milliseconds() as f64 / 1000.0,
        test_started.elapsed().as_secs_f64()
    );
    missed
}

/// The feeder killed with SIGKILL while a batch is inserted but not committed, then started
/// again: it resumes from the newest stored trade, so the batch is stored once whether the
/// server committed it for the dead feeder or rolled it back.
#[tokio::test]
async fn feeder_killed_mid_batch_loses_and_duplicates_nothing() {
    let started = Instant::now();
    let mut rig = Rig::start("kill", false).await;
    // The bar of the kill closes a few seconds after the restart.
    within_seconds(35, 57).await;
    let locker = rig.hold_feeder_mid_batch().await;
    // What is committed; the batch held is not.
    let newest_before: DateTime<Utc> =
        rig.c.query_one("SELECT max(time) FROM tapeflow.ticks", &[]).await.unwrap().get(0);
    let began = Utc::now();
    let mut feed = rig.feed.take().unwrap();
    feed.child.kill().unwrap();
    feed.child.wait().unwrap();
    locker.batch_execute("COMMIT").await.unwrap();
    let restarted = Utc::now();
    rig.spawn_feed(TRADES_PER_DAY);
    // Down until the restarted feed has written.
    let written = format!("SELECT max(time) > '{}' FROM tapeflow.ticks", began.to_rfc3339());
    wait_until(&rig.c, &written, Duration::from_secs(30), None).await;
    let ended = Utc::now();
    verify(&mut rig, "kill", &Outage { began, ended }, Listen::Kept, started).await;
    // The trades of the batch in flight and of the time until the kill, each stored once:
    // either the server finished the batch for the dead feeder (a COPY committed on its own)
    // or rolled it back and the restarted feeder wrote it again.
    let r = rig
        .c
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_xact_commit_timestamp(xmin) < $3), count(*)
             FROM tapeflow.ticks WHERE time > $1 AND time < $2",
            &[&newest_before, &began, &restarted],
        )
        .await
        .unwrap();
    let (finished_for_the_dead, in_flight): (i64, i64) = (r.get(0), r.get(1));
    eprintln!(
        "kill: {in_flight} trades were in flight at the kill: {finished_for_the_dead} committed by the server \
         after the feeder died, {} written by the restarted feeder",
        in_flight - finished_for_the_dead
    );
    assert!(in_flight > 0, "the batch held at the kill had no trades");
}

/// PostgreSQL stopped with `-m immediate` while the feeder's batch is inserted but not
/// committed, kept down past a bar's close, then started: the feeder reconnects and writes
/// the batch again, the scheduler comes back with the server and evaluates the bar it missed.
#[tokio::test]
async fn server_crash_while_the_feeder_writes_loses_and_duplicates_nothing() {
    let started = Instant::now();
    let mut rig = Rig::start("crash", false).await;
    within_seconds(40, 57).await;
    let _locker = rig.hold_feeder_mid_batch().await;
    let began = Utc::now();
    rig.cluster.stop_immediate();
    // Down across the minute's close, so the scheduler misses it.
    tokio::time::sleep((minute(began) + ChronoDuration::seconds(64) - Utc::now()).to_std().unwrap()).await;
    let ended = Utc::now();
    rig.cluster.start_server();
    rig.c = rig.cluster.client().await;
    let missed = verify(&mut rig, "crash", &Outage { began, ended }, Listen::Remade, started).await;
    assert!(missed >= SYMBOLS.len() as i64, "no bar closed while the server was down");
    let after_restart: i64 = rig
        .c
        .query_one(
            "SELECT count(*) FROM tapeflow.market_state_log WHERE bar = tapeflow.minute($1) AND evaluated_at >= $2",
            &[&began, &ended],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        after_restart,
        SYMBOLS.len() as i64,
        "the bar that closed while the server was down, evaluated after"
    );
}

/// The network to PostgreSQL cut for 30 s across the close of a bar, for the feeder and the
/// web app, then restored.
async fn network_cut(label: &str, fault: Fault, listen: Listen) {
    let started = Instant::now();
    let mut rig = Rig::start(label, true).await;
    // Across the close of the minute it began in.
    within_seconds(33, 59).await;
    let proxy = rig.proxy.as_ref().unwrap();
    let began = Utc::now();
    let opened = proxy.connections_opened();
    proxy.set(fault);
    tokio::time::sleep(Duration::from_secs(30)).await;
    proxy.set(Fault::None);
    let ended = Utc::now();
    let missed = verify(&mut rig, label, &Outage { began, ended }, listen, started).await;
    assert!(missed >= SYMBOLS.len() as i64, "no bar closed while the network was cut");
    let reconnected = rig.proxy.as_ref().unwrap().connections_opened() - opened;
    eprintln!("{label}: {reconnected} connections made through the proxy after the cut began");
}

#[tokio::test]
async fn network_cut_with_connections_refused_loses_and_duplicates_nothing() {
    network_cut("refuse", Fault::Refuse, Listen::Remade).await;
}

#[tokio::test]
async fn network_blackhole_loses_and_duplicates_nothing() {
    network_cut("blackhole", Fault::Blackhole, Listen::Kept).await;
}
