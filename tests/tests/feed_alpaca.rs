//! `tapeflow-feed run` and `tapeflow-feed backfill alpaca` against the fake Alpaca market data
//! server: authentication, trades and quotes stored with exchange, conditions and Lee-Ready
//! sides, symbols added and deactivated while running, a forced disconnect whose gap is loaded
//! from the history with exact counts, a restart that loses nothing, refused keys, the
//! connection limit, unreadable frames, a database that goes away, a backfill that resumes
//! where it was interrupted, and cancelled and corrected trades, live, in a gap, and whose
//! notices overtake the gap's history page.

use std::time::{Duration, Instant};
use tapeflow_tests::fake_alpaca_data::{FakeAlpacaData, FakeDataOptions, RestFault};
use tapeflow_tests::tcp_proxy::{Fault, TcpProxy};
use tapeflow_tests::*;

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

async fn setup(symbols: &[&str]) -> (TestDb, tokio_postgres::Client) {
    let db = TestDb::create("alpaca", false).await;
    let c = db.client().await;
    for s in symbols {
        c.execute(
            "INSERT INTO tapeflow.symbols (symbol, tick_size, provider) VALUES ($1, 0.01, 'alpaca')",
            &[s],
        )
        .await
        .unwrap();
    }
    (db, c)
}

fn feed_env(url: &str, fake: &FakeAlpacaData, extra: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = vec![
        ("DATABASE_URL", url.to_string()),
        ("APCA_API_KEY_ID", fake.key_id.clone()),
        ("APCA_API_SECRET_KEY", fake.secret_key.clone()),
        ("TAPEFLOW_ALPACA_DATA_WS_URL", fake.ws_url.clone()),
        ("TAPEFLOW_ALPACA_DATA_URL", fake.rest_url.clone()),
        ("TAPEFLOW_FEED_RELOAD_SECS", "1".into()),
        ("TAPEFLOW_FEED_STATUS_MS", "100".into()),
        ("TAPEFLOW_FEED_RESTART_SECS", "1".into()),
        ("TAPEFLOW_ALPACA_RECONNECT_MIN_MS", "100".into()),
        ("TAPEFLOW_ALPACA_RECONNECT_MAX_MS", "500".into()),
        ("TAPEFLOW_ALPACA_GAP_DELAY_MS", "100".into()),
        ("TAPEFLOW_ALPACA_TIMEOUT_MS", "3000".into()),
        ("TAPEFLOW_ALPACA_PAGE_LIMIT", "7".into()),
        ("RUST_LOG", "info,tapeflow_feeders=debug".into()),
    ];
    for (k, v) in extra {
        let k: &'static str = Box::leak(k.to_string().into_boxed_str());
        env.retain(|(e, _)| *e != k);
        env.push((k, v.to_string()));
    }
    env
}

fn run_feed(db_url: &str, fake: &FakeAlpacaData, extra: &[(&str, &str)]) -> Proc {
    Proc::spawn("tapeflow-feed", &["run"], &feed_env(db_url, fake, extra))
}

const STATUS: &str = "SELECT provider || '/' || connection || ' ' || state || ' ' || coalesce(last_error, '') \
                      || ' parse_errors=' || parse_errors || ' reconnects=' || reconnects FROM tapeflow.feed_status";

/// Waits for a process to end; whether it succeeded.
async fn exit_ok(mut p: Proc) -> bool {
    let start = Instant::now();
    loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            return s.success();
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{} did not end", p.name);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The stream cut: connections refused and the session dropped, until `refuse_connections(false)`.
async fn cut_stream(fake: &FakeAlpacaData) {
    fake.refuse_connections(true);
    fake.drop_streams();
    fake.wait("the session gone", Duration::from_secs(10), |f| f.sessions().0 == 0).await;
}

/// Waits until at least `n` gap loads are recorded and all of them finished.
async fn wait_gaps_loaded(c: &tokio_postgres::Client, n: i64, timeout: Duration) {
    wait_until(
        c,
        &format!(
            "SELECT count(*) >= {n} AND bool_and(finished_at IS NOT NULL) FROM tapeflow.backfill_progress WHERE kind = 'gap'"
        ),
        timeout,
        Some("SELECT row_to_json(p)::text FROM tapeflow.backfill_progress p"),
    )
    .await;
}

/// A fake trade's id as the feeder stores it.
fn stored_id(t: &tapeflow_tests::fake_alpaca_data::FakeTrade) -> String {
    format!("{}-{}", t.exchange, t.id)
}

async fn wait_subscribed(fake: &FakeAlpacaData, symbols: &[&str]) {
    let want: std::collections::BTreeSet<String> = symbols.iter().map(|s| s.to_string()).collect();
    fake.wait(&format!("a session subscribed to {want:?}"), Duration::from_secs(30), |f| {
        f.subscribed_trades() == want
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trades_and_quotes_are_stored_with_lee_ready_sides_and_symbols_follow_the_table() {
    let (db, c) = setup(&["AAPL", "MSFT"]).await;
    let fake = FakeAlpacaData::start(FakeDataOptions::default()).await;
    let _feed = run_feed(&db.url, &fake, &[]);
    wait_subscribed(&fake, &["AAPL", "MSFT"]).await;
    // One connection, authenticated with the configured keys, subscribed to all three channels.
    assert_eq!(fake.sessions(), (1, 1));
    let msgs = fake.client_messages();
    assert_eq!(msgs[0]["action"], "auth");
    assert_eq!(msgs[0]["key"], fake.key_id.as_str());
    let sub = msgs.iter().find(|m| m["action"] == "subscribe").unwrap();
    for ch in ["trades", "quotes", "bars"] {
        assert_eq!(sub[ch].as_array().unwrap().len(), 2, "{sub}");
    }
    wait_until(
        &c,
        "SELECT count(*) = 1 FROM tapeflow.feed_status WHERE provider = 'alpaca' AND connection = 'stream'
           AND state = 'connected' AND symbols = 2",
        Duration::from_secs(10),
        Some(STATUS),
    )
    .await;

    let script = fake.script("AAPL", 30, 150.0);
    fake.script("MSFT", 10, 400.0);
    wait_until(&c, "SELECT count(*) = 40 FROM tapeflow.ticks", Duration::from_secs(20), None).await;
    for (t, side) in &script {
        let r = c
            .query_one(
                "SELECT side::text, side_source, exchange, conditions, price, size, time FROM tapeflow.ticks
                 WHERE symbol = 'AAPL' AND trade_id = $1",
                &[&format!("{}-{}", t.exchange, t.id)],
            )
            .await
            .unwrap();
        assert_eq!(r.get::<_, String>(0), side.to_string(), "trade {t:?}");
        assert_eq!(r.get::<_, String>(1), "inferred");
        assert_eq!(r.get::<_, Option<String>>(2).as_deref(), Some(t.exchange.as_str()));
        assert_eq!(r.get::<_, Option<Vec<String>>>(3), Some(t.conditions.clone()));
        assert_eq!((r.get::<_, f64>(4), r.get::<_, f64>(5)), (t.price, t.size));
        let stored: chrono::DateTime<chrono::Utc> = r.get(6);
        assert!((stored - t.time).num_microseconds().unwrap().abs() < 1, "{stored} vs {}", t.time);
    }
    wait_until(&c, "SELECT count(*) = 40 FROM tapeflow.quotes", Duration::from_secs(10), None).await;
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM tapeflow.quotes WHERE symbol = 'AAPL' AND exchange = 'K/Q' AND ask > bid"
        )
        .await,
        30
    );

    // Minute bars go to the vendor table (a check of the ticks), not into the candles.
    let minute = chrono::DateTime::parse_from_rfc3339("2024-03-01T15:30:00Z").unwrap().to_utc();
    fake.bar("AAPL", minute, [150.0, 150.5, 149.9, 150.2], 12_345.0, 17);
    wait_until(
        &c,
        "SELECT count(*) = 1 FROM tapeflow.feed_completeness WHERE symbol = 'AAPL' AND vendor_volume = 12345
           AND vendor_trades = 17 AND stored_trades = 0 AND missing_ticks",
        Duration::from_secs(10),
        None,
    )
    .await;
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.bars_1m_imported").await, 0);

    // A symbol added while running is subscribed without a restart...
    c.execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size, provider) VALUES ('NVDA', 0.01, 'alpaca')",
        &[],
    )
    .await
    .unwrap();
    wait_subscribed(&fake, &["AAPL", "MSFT", "NVDA"]).await;
    fake.script("NVDA", 5, 800.0);
    wait_until(
        &c,
        "SELECT count(*) = 5 FROM tapeflow.ticks WHERE symbol = 'NVDA'",
        Duration::from_secs(10),
        None,
    )
    .await;
    // ... and one deactivated is unsubscribed: its later trades are not stored.
    c.execute("UPDATE tapeflow.symbols SET active = false WHERE symbol = 'MSFT'", &[]).await.unwrap();
    wait_subscribed(&fake, &["AAPL", "NVDA"]).await;
    assert!(fake.client_messages().iter().any(|m| m["action"] == "unsubscribe" && m["trades"][0] == "MSFT"));
    fake.trade("MSFT", 401.0, 10.0, "V", &[]);
    let marker = fake.trade("AAPL", 150.0, 1.0, "V", &[]);
    wait_until(
        &c,
        &format!(
            "SELECT count(*) = 1 FROM tapeflow.ticks WHERE trade_id = 'V-{}' AND symbol = 'AAPL'",
            marker.id
        ),
        Duration::from_secs(10),
        None,
    )
    .await;
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.ticks WHERE symbol = 'MSFT'").await, 10);
    // Still one connection: subscriptions changed on it.
    assert_eq!(fake.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_disconnect_and_a_restart_lose_no_trade_and_duplicate_none() {
    let (db, c) = setup(&["AAPL", "TSLA"]).await;
    let fake = FakeAlpacaData::start(FakeDataOptions { max_page: 5, ..FakeDataOptions::default() }).await;
    let mut feed = run_feed(&db.url, &fake, &[]);
    wait_subscribed(&fake, &["AAPL", "TSLA"]).await;
    fake.script("AAPL", 12, 150.0);
    fake.script("TSLA", 4, 700.0);
    wait_until(&c, "SELECT count(*) = 16 FROM tapeflow.ticks", Duration::from_secs(20), None).await;

    // Cut: the stream drops and reconnects are refused while trades go on.
    cut_stream(&fake).await;
    let missed_aapl = fake.script("AAPL", 23, 151.0);
    fake.script("TSLA", 9, 701.0);
    // The history answers badly at first: a server error, throttling, an unreadable page.
    fake.push_rest_fault(RestFault::ServerError);
    fake.push_rest_fault(RestFault::RateLimited);
    fake.push_rest_fault(RestFault::Garbage);
    tokio::time::sleep(Duration::from_millis(700)).await;
    fake.refuse_connections(false);
    wait_subscribed(&fake, &["AAPL", "TSLA"]).await;
    fake.script("AAPL", 6, 152.0);
    let published = fake.published().len() as i64;
    assert_eq!(published, 12 + 4 + 23 + 9 + 6);
    wait_until(
        &c,
        &format!("SELECT count(*) = {published} FROM tapeflow.ticks"),
        Duration::from_secs(30),
        Some(STATUS),
    )
    .await;
    // The gap's trades came from the history, paginated (pages of 5), with their sides.
    for (t, side) in &missed_aapl {
        let s: String = c
            .query_one(
                "SELECT side::text FROM tapeflow.ticks WHERE symbol = 'AAPL' AND trade_id = $1",
                &[&format!("{}-{}", t.exchange, t.id)],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(&s, &side.to_string(), "{t:?}");
    }
    let history_pages = fake.requests().iter().filter(|r| r.starts_with("/v2/stocks/trades")).count();
    assert!(history_pages >= 5, "{history_pages} trade pages read");
    wait_until(
        &c,
        "SELECT count(*) = 1 FROM tapeflow.feed_status WHERE provider = 'alpaca' AND connection = 'stream'
           AND reconnects >= 1 AND state = 'connected'",
        Duration::from_secs(10),
        Some(STATUS),
    )
    .await;
    wait_gaps_loaded(&c, 2, Duration::from_secs(20)).await;

    // A restart: trades published while the feeder is down are loaded from the newest stored
    // trade of each symbol on start.
    assert!(feed.terminate(Duration::from_secs(15)), "feed did not stop on SIGTERM");
    fake.script("AAPL", 8, 153.0);
    fake.script("TSLA", 3, 702.0);
    let _feed = run_feed(&db.url, &fake, &[]);
    wait_subscribed(&fake, &["AAPL", "TSLA"]).await;
    fake.script("TSLA", 2, 703.0);
    let published = fake.published().len() as i64;
    wait_until(
        &c,
        &format!("SELECT count(*) = {published} FROM tapeflow.ticks"),
        Duration::from_secs(30),
        Some(STATUS),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.ticks").await, published);
    assert_eq!(count(&c, "SELECT count(DISTINCT (symbol, trade_id)) FROM tapeflow.ticks").await, published);
    for t in fake.published() {
        let n = count(
            &c,
            &format!(
                "SELECT count(*) FROM tapeflow.ticks WHERE symbol = '{}' AND trade_id = '{}-{}'",
                t.symbol, t.exchange, t.id
            ),
        )
        .await;
        assert_eq!(n, 1, "{t:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_keys_fail_clearly_without_hammering() {
    let (db, c) = setup(&["AAPL"]).await;
    let fake = FakeAlpacaData::start(FakeDataOptions::default()).await;
    let mut env = feed_env(&db.url, &fake, &[]);
    env.retain(|(k, _)| *k != "APCA_API_SECRET_KEY");
    env.push(("APCA_API_SECRET_KEY", "the-wrong-secret".into()));
    let feed = Proc::spawn("tapeflow-feed", &["run"], &env);
    wait_until(
        &c,
        "SELECT count(*) = 1 FROM tapeflow.feed_status WHERE provider = 'alpaca' AND connection = 'stream'
           AND state = 'failed' AND last_error LIKE '402 auth failed%APCA_API_KEY_ID%'",
        Duration::from_secs(20),
        Some(STATUS),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.auth_attempts(), 1, "retried refused keys");
    assert_eq!(fake.connections(), 1);
    // The secret never reaches the log.
    drop(feed);
    let logs = std::fs::read_dir(repo_root().join("target")).unwrap();
    for e in logs.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with(&format!("tapeflow-feed-{}-", std::process::id())) {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            assert!(!text.contains("the-wrong-secret"), "secret in {name}");
        }
    }

    // A plan without the feed is a refusal too.
    let (db2, c2) = setup(&["AAPL"]).await;
    fake.insufficient_subscription(true);
    let before = fake.auth_attempts();
    let _feed = run_feed(&db2.url, &fake, &[]);
    wait_until(
        &c2,
        "SELECT count(*) = 1 FROM tapeflow.feed_status WHERE connection = 'stream' AND state = 'failed'
           AND last_error LIKE '409 insufficient subscription%iex%'",
        Duration::from_secs(20),
        Some(STATUS),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.auth_attempts() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_backs_off_then_streams() {
    let (db, c) = setup(&["AAPL"]).await;
    let fake = FakeAlpacaData::start(FakeDataOptions::default()).await;
    fake.take_slot(true);
    let _feed = run_feed(
        &db.url,
        &fake,
        &[("TAPEFLOW_ALPACA_LIMIT_BACKOFF_MIN_MS", "400"), ("TAPEFLOW_ALPACA_LIMIT_BACKOFF_MAX_MS", "3200")],
    );
    wait_until(
        &c,
        "SELECT count(*) = 1 FROM tapeflow.feed_status WHERE connection = 'stream' AND state = 'throttled'
           AND last_error LIKE '406 connection limit exceeded%'",
        Duration::from_secs(20),
        Some(STATUS),
    )
    .await;
    // Attempts spaced by a doubling delay (0.4, 0.8, 1.6, 3.2 s, each with jitter down to half):
    // within 4 s at most 5 attempts, where a fixed 100 ms retry would make 40.
    let start = Instant::now();
    let first = fake.auth_attempts();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let n = fake.auth_attempts() - first;
    assert!((1..=5).contains(&n), "{n} attempts in {:?}", start.elapsed());
    fake.take_slot(false);
    wait_subscribed(&fake, &["AAPL"]).await;
    fake.script("AAPL", 3, 10.0);
    wait_until(&c, "SELECT count(*) = 3 FROM tapeflow.ticks", Duration::from_secs(20), None).await;
    wait_until(
        &c,
        "SELECT count(*) = 1 FROM tapeflow.feed_status WHERE connection = 'stream' AND state = 'connected'",
        Duration::from_secs(10),
        Some(STATUS),
    )
    .await;
}

/// The trades' ids, in time order.
async fn trade_ids(c: &tokio_postgres::Client) -> Vec<String> {
    c.query("SELECT trade_id FROM tapeflow.ticks WHERE symbol = 'AAPL' ORDER BY time, trade_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The rollups' trade count and volume over all minutes.
async fn rolled_up(c: &tokio_postgres::Client) -> (i64, f64) {
    let r = c
        .query_one(
            "SELECT coalesce(sum(tapeflow.trades(candle)), 0)::bigint, coalesce(sum(tapeflow.volume(candle)), 0)
             FROM tapeflow.bars_1m WHERE symbol = 'AAPL'",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_and_corrected_trades_leave_the_ticks_and_their_rollups_live_and_in_a_gap() {
    let (db, c) = setup(&["AAPL"]).await;
    let fake = FakeAlpacaData::start(FakeDataOptions { max_page: 4, ..FakeDataOptions::default() }).await;
    let _feed = run_feed(&db.url, &fake, &[]);
    wait_subscribed(&fake, &["AAPL"]).await;
    let live: Vec<_> =
        (0..4).map(|k| fake.trade("AAPL", 150.0 + k as f64, 10.0 + k as f64, "V", &["@"])).collect();
    wait_until(&c, "SELECT count(*) = 4 FROM tapeflow.ticks", Duration::from_secs(20), Some(STATUS)).await;
    let side: String = c
        .query_one("SELECT side::text FROM tapeflow.ticks WHERE trade_id = $1", &[&stored_id(&live[1])])
        .await
        .unwrap()
        .get(0);

    // On the stream: the first trade cancelled, the second corrected.
    fake.cancel(&live[0]);
    let fixed = fake.correct(&live[1], 149.5, 7.0, &["@", "I"]);
    wait_until(
        &c,
        &format!("SELECT count(*) = 1 FROM tapeflow.ticks WHERE trade_id = '{}'", stored_id(&fixed)),
        Duration::from_secs(20),
        Some(STATUS),
    )
    .await;
    assert_eq!(trade_ids(&c).await, [stored_id(&fixed), stored_id(&live[2]), stored_id(&live[3])]);
    let r = c
        .query_one(
            "SELECT price, size, conditions, time, side::text, side_source, exchange FROM tapeflow.ticks WHERE trade_id = $1",
            &[&stored_id(&fixed)],
        )
        .await
        .unwrap();
    assert_eq!((r.get::<_, f64>(0), r.get::<_, f64>(1)), (149.5, 7.0));
    assert_eq!(r.get::<_, Option<Vec<String>>>(2), Some(vec!["@".to_string(), "I".to_string()]));
    let at: chrono::DateTime<chrono::Utc> = r.get(3);
    assert!((at - live[1].time).num_microseconds().unwrap().abs() < 1, "the original's time: {at}");
    assert_eq!((r.get::<_, String>(4), r.get::<_, String>(5)), (side, "inferred".to_string()));
    assert_eq!(r.get::<_, Option<String>>(6).as_deref(), Some("V"));
    assert_eq!(rolled_up(&c).await, (3, 7.0 + 12.0 + 13.0));

    // The same notices again (as after a reconnect) change nothing.
    fake.cancel(&live[0]);
    let marker = fake.trade("AAPL", 151.0, 1.0, "V", &[]);
    wait_until(
        &c,
        &format!("SELECT count(*) = 1 FROM tapeflow.ticks WHERE trade_id = '{}'", stored_id(&marker)),
        Duration::from_secs(20),
        Some(STATUS),
    )
    .await;
    assert_eq!(trade_ids(&c).await.len(), 4);

    // In a gap: the history marks what did not stand, and the backfill leaves it out.
    cut_stream(&fake).await;
    let gap: Vec<_> = (0..3).map(|k| fake.trade("AAPL", 152.0 + k as f64, 20.0, "D", &["@"])).collect();
    fake.cancel(&gap[0]);
    let gap_fixed = fake.correct(&gap[1], 152.5, 21.0, &["@"]);
    fake.refuse_connections(false);
    wait_subscribed(&fake, &["AAPL"]).await;
    let after = fake.trade("AAPL", 153.0, 2.0, "V", &[]);
    wait_until(
        &c,
        &format!(
            "SELECT count(*) = 2 FROM tapeflow.ticks WHERE trade_id IN ('{}', '{}')",
            stored_id(&after),
            stored_id(&gap[2])
        ),
        Duration::from_secs(30),
        Some(STATUS),
    )
    .await;
    wait_gaps_loaded(&c, 1, Duration::from_secs(20)).await;
    let ids = trade_ids(&c).await;
    assert_eq!(
        ids,
        [
            stored_id(&fixed),
            stored_id(&live[2]),
            stored_id(&live[3]),
            stored_id(&marker),
            stored_id(&gap_fixed),
            stored_id(&gap[2]),
            stored_id(&after)
        ],
        "neither the cancelled nor the incorrect gap trade is stored"
    );
    assert_eq!(rolled_up(&c).await, (7, 7.0 + 12.0 + 13.0 + 1.0 + 21.0 + 20.0 + 2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_that_overtake_a_gap_page_still_cancel_and_correct_its_trades() {
    let (db, c) = setup(&["AAPL"]).await;
    let fake = FakeAlpacaData::start(FakeDataOptions::default()).await;
    // A request timeout longer than the slow page below, so that it is not asked again.
    let _feed = run_feed(&db.url, &fake, &[("TAPEFLOW_ALPACA_TIMEOUT_MS", "15000")]);
    wait_subscribed(&fake, &["AAPL"]).await;
    let first = fake.trade("AAPL", 150.0, 10.0, "V", &["@"]);
    wait_until(&c, "SELECT count(*) = 1 FROM tapeflow.ticks", Duration::from_secs(20), Some(STATUS)).await;

    // A gap, then a slow history: its page is formed when asked and arrives seconds later.
    cut_stream(&fake).await;
    let gap: Vec<_> = (0..3).map(|k| fake.trade("AAPL", 151.0 + k as f64, 20.0, "D", &["@"])).collect();
    fake.set_rest_delay(Duration::from_secs(4));
    let asked = fake.requests().len();
    fake.refuse_connections(false);
    wait_subscribed(&fake, &["AAPL"]).await;
    fake.wait("the gap's page asked for", Duration::from_secs(20), |f| {
        f.requests()[asked..].iter().any(|r| r.contains("/trades"))
    })
    .await;
    // Meanwhile the stream cancels one of its trades and corrects another: the notices reach
    // the feeder before the trades, and are held.
    fake.cancel(&gap[0]);
    let fixed = fake.correct(&gap[1], 152.5, 21.0, &["@"]);
    wait_until(&c, "SELECT count(*) = 2 FROM tapeflow.held_amendments", Duration::from_secs(3), Some(STATUS))
        .await;
    assert_eq!(trade_ids(&c).await, [stored_id(&first)], "the page has not arrived yet");
    fake.set_rest_delay(Duration::ZERO);
    wait_gaps_loaded(&c, 1, Duration::from_secs(30)).await;
    assert_eq!(
        trade_ids(&c).await,
        [stored_id(&first), stored_id(&fixed), stored_id(&gap[2])],
        "the page's cancelled trade is gone and its incorrect one replaced"
    );
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.held_amendments").await, 0);
    assert_eq!(rolled_up(&c).await, (3, 10.0 + 21.0 + 20.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_unknown_and_huge_frames_are_counted_and_the_feed_goes_on() {
    let (db, c) = setup(&["AAPL"]).await;
    let fake = FakeAlpacaData::start(FakeDataOptions::default()).await;
    let _feed = run_feed(&db.url, &fake, &[("TAPEFLOW_ALPACA_MAX_FRAME_BYTES", "1048576")]);
    wait_subscribed(&fake, &["AAPL"]).await;
    fake.send_raw("{not json");
    fake.send_raw("null");
    fake.send_raw(r#"[{"T":"zz","S":"AAPL"}]"#);
    // One bad element among good ones: only it is lost.
    fake.send_raw(
        r#"[{"T":"t","S":"AAPL","i":1,"x":"V","p":null,"s":1,"t":"2024-01-02T15:00:00Z"},
            {"T":"t","S":"AAPL","i":2,"x":"V","p":10.5,"s":1,"t":"2024-01-02T15:00:00Z"}]"#,
    );
    fake.send_raw(&format!(r#"[{{"T":"t","S":"AAPL","junk":"{}"}}]"#, "x".repeat(2 << 20)));
    fake.send_raw_binary(&[0xff, 0xfe, 0x00, 0x01]);
    fake.send_raw(r#"[{"T":"d","S":"AAPL","o":1,"h":1,"l":1,"c":1,"v":1,"t":"2024-01-02T05:00:00Z"}]"#);
    fake.script("AAPL", 4, 10.0);
    wait_until(&c, "SELECT count(*) = 5 FROM tapeflow.ticks", Duration::from_secs(20), Some(STATUS)).await;
    wait_until(
        &c,
        "SELECT count(*) = 1 FROM tapeflow.feed_status WHERE connection = 'stream' AND parse_errors = 6
           AND state = 'connected' AND reconnects = 0",
        Duration::from_secs(10),
        Some(STATUS),
    )
    .await;
    assert_eq!(fake.connections(), 1, "a bad frame must not cost the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_loses_no_trade() {
    let (db, c) = setup(&["AAPL"]).await;
    let pg_port: u16 =
        tapeflow_db::database_url().rsplit(':').next().unwrap().split('/').next().unwrap().parse().unwrap();
    let proxy = TcpProxy::start(pg_port).await;
    let url = format!("postgresql://postgres@127.0.0.1:{}/{}?connect_timeout=2", proxy.port, db.name);
    let fake = FakeAlpacaData::start(FakeDataOptions::default()).await;
    let _feed = run_feed(&url, &fake, &[]);
    wait_subscribed(&fake, &["AAPL"]).await;
    fake.script("AAPL", 10, 20.0);
    wait_until(&c, "SELECT count(*) = 10 FROM tapeflow.ticks", Duration::from_secs(20), None).await;
    proxy.set(Fault::Refuse);
    fake.script("AAPL", 25, 20.5);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.ticks").await, 10);
    proxy.set(Fault::None);
    fake.script("AAPL", 5, 21.0);
    wait_until(&c, "SELECT count(*) = 40 FROM tapeflow.ticks", Duration::from_secs(30), Some(STATUS)).await;
    assert_eq!(fake.connections(), 1, "the stream does not depend on the database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_loads_a_window_with_pagination_and_resumes_where_it_stopped() {
    let (db, c) = setup(&["AAPL", "TSLA"]).await;
    let fake = FakeAlpacaData::start(FakeDataOptions { max_page: 10, ..FakeDataOptions::default() }).await;
    let from = chrono::Utc::now() - chrono::Duration::seconds(5);
    fake.script("AAPL", 60, 150.0);
    fake.script("TSLA", 15, 700.0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let to = chrono::Utc::now();
    let (f, t) = (from.to_rfc3339(), to.to_rfc3339());
    let args = ["backfill", "alpaca", "--symbols", "AAPL,TSLA", "--from", f.as_str(), "--to", t.as_str()];
    let run = |extra: &'static [(&'static str, &'static str)]| {
        Proc::spawn("tapeflow-feed", &args, &feed_env(&db.url, &fake, extra))
    };
    // The history fails after 6 more requests (pages of 10 trades, with the quotes pages
    // between): the run stops with an error and a resume point.
    fake.rest_fail_after(Some(6));
    assert!(
        !exit_ok(run(&[("TAPEFLOW_ALPACA_REST_ATTEMPTS", "2"), ("TAPEFLOW_ALPACA_PAGE_LIMIT", "10")])).await
    );
    let stored = count(&c, "SELECT count(*) FROM tapeflow.ticks WHERE symbol = 'AAPL'").await;
    let r = c
        .query_one(
            "SELECT done_until, finished_at IS NULL, last_error FROM tapeflow.backfill_progress
             WHERE symbol = 'AAPL' AND kind = 'range'",
            &[],
        )
        .await
        .unwrap();
    let done_until: chrono::DateTime<chrono::Utc> = r.get(0);
    assert!(r.get::<_, bool>(1));
    assert!(r.get::<_, Option<String>>(2).unwrap().contains("500"));
    assert!(stored > 0 && stored < 60, "{stored} of 60 before the failure");
    // Everything up to the resume point is stored.
    let upto = count(
        &c,
        &format!(
            "SELECT count(*) FROM tapeflow.ticks WHERE symbol = 'AAPL' AND time <= '{}'",
            done_until.to_rfc3339()
        ),
    )
    .await;
    let expected_upto = fake
        .published()
        .iter()
        .filter(|t| t.symbol == "AAPL" && t.time.timestamp_micros() <= done_until.timestamp_micros())
        .count() as i64;
    assert_eq!(upto, expected_upto);

    // Run again: it resumes at the resume point, not at --from, and ends complete.
    fake.rest_fail_after(None);
    let before = fake.requests().len();
    assert!(exit_ok(run(&[("TAPEFLOW_ALPACA_PAGE_LIMIT", "10")])).await);
    let first_trades =
        fake.requests()[before..].iter().find(|r| r.starts_with("/v2/stocks/trades")).cloned().unwrap();
    let resume = done_until.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true).replace(':', "%3A");
    assert!(first_trades.contains(&format!("start={resume}")), "{first_trades} does not start at {resume}");
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.ticks WHERE symbol = 'AAPL'").await, 60);
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.ticks WHERE symbol = 'TSLA'").await, 15);
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.ticks WHERE side_source = 'inferred'").await, 75);
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.quotes").await, 75);
    assert_eq!(
        count(&c, "SELECT count(*) FROM tapeflow.backfill_progress WHERE kind = 'range' AND finished_at IS NOT NULL").await,
        2
    );
    // A third run finds the window loaded and reads nothing.
    let before = fake.requests().len();
    assert!(exit_ok(run(&[])).await);
    assert_eq!(fake.requests().len(), before);
}

/// The history load's rate: `cargo test -p tapeflow-tests --test feed_alpaca -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn backfill_throughput() {
    let (db, c) = setup(&["AAPL"]).await;
    let fake = FakeAlpacaData::start(FakeDataOptions::default()).await;
    let from = chrono::Utc::now() - chrono::Duration::seconds(1);
    let n = 50_000;
    fake.script("AAPL", n, 150.0);
    let to = chrono::Utc::now() + chrono::Duration::seconds(1);
    let (f, t) = (from.to_rfc3339(), to.to_rfc3339());
    let args = ["backfill", "alpaca", "--symbols", "AAPL", "--from", f.as_str(), "--to", t.as_str()];
    let start = Instant::now();
    assert!(
        exit_ok(Proc::spawn(
            "tapeflow-feed",
            &args,
            &feed_env(&db.url, &fake, &[("TAPEFLOW_ALPACA_PAGE_LIMIT", "10000")])
        ))
        .await
    );
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.ticks").await, n as i64);
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.quotes").await, n as i64);
    println!(
        "backfill: {n} trades and {n} quotes in {secs:.2} s ({:.0} trades/s with their quotes)",
        n as f64 / secs
    );
}
