//! `tapeflow-feed run` and `tapeflow-feed backfill ig` against the fake IG (REST gateway and
//! Lightstreamer TLCP server): quotes and ticks stored at the right instants with honest sides,
//! nulls and hostile lines that never stop the feed, reconnects that resubscribe and replay
//! nothing twice (a dropped socket, LOOP, END, a stalled server), session renewal and expired
//! tokens, a refused login reported as failed, a session error that stops the provider until
//! routing restarts it, and a backfill from historic prices that waits out the allowance and
//! resumes where it stopped.

use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use serde_json::Value;
use std::time::{Duration, Instant};
use tapeflow_tests::fake_ig::{values, FakeIg, FakeIgOptions};
use tapeflow_tests::*;

const EURUSD: &str = "CS.D.EURUSD.CFD.IP";
const FTSE: &str = "IX.D.FTSE.IFE.IP";
const GOLD: &str = "CS.D.CFDGOLD.CFDGC.IP";

const STATUS: &str = "SELECT provider || '/' || connection || ' ' || state || ' ' || coalesce(last_error, '') \
                      || ' parse_errors=' || parse_errors || ' reconnects=' || reconnects FROM tapeflow.feed_status";

/// A stored tick: symbol, time, price, size, side, side source, conditions.
type Tick = (String, DateTime<Utc>, f64, f64, String, String, Option<Vec<String>>);

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// A database with IG symbols: `(symbol, epic, asset_class, tick_size)`.
async fn setup(symbols: &[(&str, &str, &str, f64)]) -> (TestDb, tokio_postgres::Client) {
    let db = TestDb::create("ig", false).await;
    let c = db.client().await;
    for (s, epic, class, tick) in symbols {
        c.execute(
            "INSERT INTO tapeflow.symbols (symbol, tick_size, provider, provider_ref, asset_class, timezone,
                                           session_open, session_close)
             VALUES ($1, $2, 'ig', $3, $4, 'Europe/London', '00:00', '00:00')",
            &[s, tick, epic, class],
        )
        .await
        .unwrap();
    }
    (db, c)
}

fn env(db: &TestDb, fake: &FakeIg, extra: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = fake.env();
    env.extend([
        ("DATABASE_URL", db.url.clone()),
        ("TAPEFLOW_FEED_METRICS_ADDR", "off".into()),
        ("TAPEFLOW_FEED_RELOAD_SECS", "1".into()),
        ("TAPEFLOW_FEED_STATUS_MS", "100".into()),
        ("TAPEFLOW_FEED_RESTART_SECS", "1".into()),
        ("TAPEFLOW_IG_STALL_GRACE_MS", "500".into()),
        ("TAPEFLOW_IG_THROTTLE_MS", "100".into()),
        ("RUST_LOG", "info".into()),
    ]);
    for (k, v) in extra {
        let k: &'static str = Box::leak(k.to_string().into_boxed_str());
        env.retain(|(e, _)| *e != k);
        env.push((k, v.to_string()));
    }
    env
}

fn run_feed(db: &TestDb, fake: &FakeIg, extra: &[(&str, &str)]) -> Proc {
    Proc::spawn("tapeflow-feed", &["run"], &env(db, fake, extra))
}

fn ms(t: DateTime<Utc>) -> String {
    t.timestamp_millis().to_string()
}

fn market_groups(epics: &[&str]) -> Vec<String> {
    epics.iter().flat_map(|e| [format!("MARKET:{e}"), format!("CHART:{e}:TICK")]).collect()
}

async fn subscribed(fake: &FakeIg, epics: &[&str]) {
    let groups = market_groups(epics);
    let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    assert!(
        fake.wait_subscribed(&refs, Duration::from_secs(30)).await,
        "not subscribed to {refs:?}; subscribed: {:?}",
        fake.subscribed()
    );
}

/// A tick of `epic` with a traded price.
fn traded(fake: &FakeIg, epic: &str, at: DateTime<Utc>, bid: &str, ofr: &str, ltp: &str, ltv: &str) {
    fake.tick(epic, &values(&[("BID", bid), ("OFR", ofr), ("LTP", ltp), ("LTV", ltv), ("UTM", &ms(at))]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_and_ticks_are_stored_at_their_times_with_honest_sides() {
    let fake = FakeIg::start(FakeIgOptions::default()).await;
    fake.reject_epic("XX.D.NOSUCH.IP");
    let (db, c) = setup(&[
        ("EURUSD", EURUSD, "fx", 0.00001),
        ("FTSE", FTSE, "future", 0.5),
        ("NOSUCH", "XX.D.NOSUCH.IP", "index", 1.0),
    ])
    .await;
    let mut feed = run_feed(&db, &fake, &[]);
    subscribed(&fake, &[EURUSD, FTSE]).await;

    // What was asked for: documented fields, the modes IG serves them in, snapshots, the 2.4.0
    // subprotocol, the account and tokens of the login.
    let reqs = fake.subscribe_requests();
    let market = reqs.iter().find(|r| r.group == format!("MARKET:{EURUSD}")).unwrap();
    assert_eq!(
        (market.schema.as_str(), market.mode.as_str(), market.snapshot.as_str()),
        ("UPDATE_TIME BID OFFER MARKET_STATE MARKET_DELAY", "MERGE", "true")
    );
    let tick = reqs.iter().find(|r| r.group == format!("CHART:{EURUSD}:TICK")).unwrap();
    assert_eq!((tick.schema.as_str(), tick.mode.as_str()), ("BID OFR LTP LTV UTM", "DISTINCT"));
    assert_eq!(fake.protocols()[0], "TLCP-2.4.0.lightstreamer.com");
    assert_eq!(fake.logins(), 1);
    // The refused epic is reported; the others are fed.
    wait_until(
        &c,
        "SELECT EXISTS (SELECT 1 FROM tapeflow.feed_status WHERE provider = 'ig' AND connection = 'stream'
           AND state = 'connected' AND last_error LIKE '%refused the subscription%XX.D.NOSUCH.IP%')",
        Duration::from_secs(10),
        Some(STATUS),
    )
    .await;

    // A quote: UPDATE_TIME is UK local time of day; stored at that instant, UTC.
    let at = (Utc::now() - chrono::Duration::seconds(3)).trunc_subsecs(0);
    let hms = at.with_timezone(&chrono_tz::Europe::London).format("%H:%M:%S").to_string();
    fake.market(
        EURUSD,
        &values(&[
            ("UPDATE_TIME", &hms),
            ("BID", "1.08512"),
            ("OFFER", "1.08524"),
            ("MARKET_STATE", "TRADEABLE"),
            ("MARKET_DELAY", "0"),
        ]),
    );
    wait_until(
        &c,
        "SELECT count(*) = 1 FROM tapeflow.quotes WHERE symbol = 'EURUSD'",
        Duration::from_secs(10),
        Some(STATUS),
    )
    .await;
    let q = c
        .query_one("SELECT time, bid, ask, exchange FROM tapeflow.quotes WHERE symbol = 'EURUSD'", &[])
        .await
        .unwrap();
    assert_eq!(q.get::<_, DateTime<Utc>>(0), at, "UPDATE_TIME {hms} read as UK time");
    assert_eq!(
        (q.get::<_, f64>(1), q.get::<_, f64>(2), q.get::<_, String>(3)),
        (1.08512, 1.08524, "IG".to_string())
    );
    // A change of state alone is no new quote.
    fake.market(EURUSD, &values(&[("MARKET_STATE", "EDIT")]));

    // Traded prices (a future): stored at UTM to the millisecond, sides by Lee-Ready on the
    // event's own bid and offer.
    let t0 = Utc.timestamp_millis_opt(Utc::now().timestamp_millis() - 5_000).unwrap();
    traded(&fake, FTSE, t0, "7612.0", "7612.5", "7612.5", "3");
    traded(&fake, FTSE, t0 + chrono::Duration::milliseconds(7), "7612.0", "7612.5", "7612.0", "2");
    // A CFD without traded price or volume: the midpoint, size 0, marked `mid`; the first has
    // nothing to compare with (side none), the second is an uptick (inferred).
    fake.tick(
        EURUSD,
        &values(&[("BID", "1.08510"), ("OFR", "1.08522"), ("LTP", "#"), ("LTV", "#"), ("UTM", &ms(t0))]),
    );
    fake.tick(
        EURUSD,
        &values(&[
            ("BID", "1.08514"),
            ("OFR", "1.08526"),
            ("LTP", "#"),
            ("LTV", "#"),
            ("UTM", &ms(t0 + chrono::Duration::milliseconds(250))),
        ]),
    );
    wait_until(&c, "SELECT count(*) = 4 FROM tapeflow.ticks", Duration::from_secs(10), Some(STATUS)).await;
    let rows = c
        .query(
            "SELECT symbol, time, price, size, side::text, side_source, exchange, conditions FROM tapeflow.ticks
             ORDER BY symbol, time",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<Tick> = rows
        .iter()
        .map(|r| {
            assert_eq!(r.get::<_, String>(6), "IG");
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(7))
        })
        .collect();
    let mid = Some(vec!["mid".to_string()]);
    assert_eq!(
        got,
        vec![
            ("EURUSD".into(), t0, 1.08516, 0.0, "N".into(), "none".into(), mid.clone()),
            (
                "EURUSD".into(),
                t0 + chrono::Duration::milliseconds(250),
                1.0852,
                0.0,
                "B".into(),
                "inferred".into(),
                mid
            ),
            ("FTSE".into(), t0, 7612.5, 3.0, "B".into(), "inferred".into(), None),
            (
                "FTSE".into(),
                t0 + chrono::Duration::milliseconds(7),
                7612.0,
                2.0,
                "S".into(),
                "inferred".into(),
                None
            ),
        ]
    );
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.quotes").await, 1);

    // Symbols follow tapeflow.symbols without a restart.
    c.execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size, provider, provider_ref, asset_class) VALUES ('GOLD', 0.1, 'ig', $1, 'future')",
        &[&GOLD],
    )
    .await
    .unwrap();
    subscribed(&fake, &[EURUSD, FTSE, GOLD]).await;
    c.execute("UPDATE tapeflow.symbols SET active = false WHERE symbol = 'FTSE'", &[]).await.unwrap();
    assert!(
        fake.wait(Duration::from_secs(10), |f| !f.subscribed().iter().any(|g| g.contains(FTSE))).await,
        "FTSE still subscribed: {:?}",
        fake.subscribed()
    );
    assert!(fake.unsubscribes() >= 2);
    assert_eq!(fake.sessions_created(), 1, "symbol changes reuse the session");
    wait_until(
        &c,
        "SELECT symbols = 3 AND state = 'connected' AND reconnects = 0 AND parse_errors = 0
         FROM tapeflow.feed_status WHERE provider = 'ig' AND connection = 'stream'",
        Duration::from_secs(10),
        Some(STATUS),
    )
    .await;
    assert!(feed.terminate(Duration::from_secs(10)), "feed did not stop on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nulls_and_hostile_lines_never_stop_the_feed() {
    let fake = FakeIg::start(FakeIgOptions::default()).await;
    let (db, c) = setup(&[("FTSE", FTSE, "future", 0.5)]).await;
    let mut feed = run_feed(&db, &fake, &[]);
    subscribed(&fake, &[FTSE]).await;
    let t0 = Utc.timestamp_millis_opt(Utc::now().timestamp_millis() - 10_000).unwrap();
    traded(&fake, FTSE, t0, "7600.0", "7601.0", "7600.5", "1");
    wait_until(&c, "SELECT count(*) = 1 FROM tapeflow.ticks", Duration::from_secs(10), Some(STATUS)).await;

    // Nulls where prices were (a closed market), and fields never sent at all.
    fake.market(
        FTSE,
        &values(&[("UPDATE_TIME", "#"), ("BID", "#"), ("OFFER", "#"), ("MARKET_STATE", "CLOSED")]),
    );
    fake.tick(FTSE, &values(&[("BID", "#"), ("OFR", "#"), ("LTP", "#"), ("LTV", "#"), ("UTM", &ms(t0))]));
    fake.tick(FTSE, &values(&[("UTM", &ms(t0))]));
    fake.market(FTSE, &values(&[("BID", "7600.0")]));
    // Updates that cannot be read: too few or too many values, a diff never asked for, a bad
    // escape, numbers that are not numbers, a price with no time.
    let group = format!("CHART:{FTSE}:TICK");
    let broken = ["1|2", "1|2|3|4|5|6", "^P[]||||", "%zz||||", "abc|def|ghi|jkl|mno", "1|2|3|4|#"];
    for b in broken {
        fake.send_update_raw(&group, b);
    }
    // Lines that are not TLCP, or not for us, or out of place; a 2 MiB line.
    for raw in [
        "FOO,1,2\r\n",
        "U,999,1,a|b\r\n",
        "U,1,x\r\n",
        "CONOK,S1,1,1,*\r\n",
        "SUBOK,77,1,5\r\n",
        "\u{1}\u{2}\r\n",
    ] {
        fake.send_raw(raw);
    }
    fake.send_raw(&format!("U,1,1,{}\r\n", "7".repeat(2 << 20)));
    // A good tick after all that (every field new: the item's old values were forgotten).
    let t1 = t0 + chrono::Duration::seconds(1);
    traded(&fake, FTSE, t1, "7602.0", "7603.0", "7603.0", "4");
    wait_until(
        &c,
        &format!(
            "SELECT count(*) = 1 FROM tapeflow.ticks WHERE time = '{}' AND price = 7603 AND size = 4",
            t1.to_rfc3339()
        ),
        Duration::from_secs(10),
        Some(STATUS),
    )
    .await;
    let expected_errors = broken.len() + 6 + 1;
    wait_until(
        &c,
        &format!(
            "SELECT parse_errors >= {expected_errors} AND state = 'connected' AND reconnects = 0
             FROM tapeflow.feed_status WHERE provider = 'ig' AND connection = 'stream'"
        ),
        Duration::from_secs(10),
        Some(STATUS),
    )
    .await;
    assert!(feed.child.try_wait().unwrap().is_none(), "the feeder exited");
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.ticks").await, 2);
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.quotes").await, 0, "a quote from half a book");
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.feed_rejects").await, 0);
    assert_eq!(fake.sessions_created(), 1);
    assert!(feed.terminate(Duration::from_secs(10)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_resubscribe_and_replay_nothing_twice() {
    let fake = FakeIg::start(FakeIgOptions::default()).await;
    let (db, c) = setup(&[("FTSE", FTSE, "future", 0.5)]).await;
    let mut feed = run_feed(&db, &fake, &[]);
    subscribed(&fake, &[FTSE]).await;
    let t0 = Utc.timestamp_millis_opt(Utc::now().timestamp_millis() - 60_000).unwrap();
    let at = |i: i64| t0 + chrono::Duration::milliseconds(i * 100);
    let price = |i: i64| format!("{}", 7600 + i);
    // Two identical trades in one millisecond are two trades.
    for i in 0..5 {
        traded(&fake, FTSE, at(i.min(3)), "7599", "7700", &price(i.min(3)), "1");
    }
    wait_until(&c, "SELECT count(*) = 5 FROM tapeflow.ticks", Duration::from_secs(10), Some(STATUS)).await;

    // Three trades happen while the socket is lost; the new subscription's snapshot (the last
    // ten events) brings them, with the five already stored.
    for i in 5..8 {
        fake.tick_unsent(
            FTSE,
            &values(&[
                ("BID", "7599"),
                ("OFR", "7700"),
                ("LTP", &price(i)),
                ("LTV", "1"),
                ("UTM", &ms(at(i))),
            ]),
        );
    }
    fake.drop_streams();
    assert!(fake.wait(Duration::from_secs(10), |f| f.sessions_created() == 2).await);
    subscribed(&fake, &[FTSE]).await;
    wait_until(&c, "SELECT count(*) = 8 FROM tapeflow.ticks", Duration::from_secs(10), Some(STATUS)).await;

    // LOOP: the same session on a new socket, no new subscription.
    let subscribes = fake.subscribe_requests().len();
    fake.send_loop();
    assert!(fake.wait(Duration::from_secs(10), |f| f.binds() == 1).await, "no rebind after LOOP");
    traded(&fake, FTSE, at(8), "7599", "7700", &price(8), "1");
    wait_until(&c, "SELECT count(*) = 9 FROM tapeflow.ticks", Duration::from_secs(10), Some(STATUS)).await;
    assert_eq!(fake.subscribe_requests().len(), subscribes, "a rebind keeps the subscriptions");
    assert_eq!(fake.sessions_created(), 2);

    // END,48 (maximum duration): a new session at once.
    fake.end_sessions(48, "Maximum session duration reached");
    assert!(fake.wait(Duration::from_secs(10), |f| f.sessions_created() == 3).await);
    subscribed(&fake, &[FTSE]).await;
    traded(&fake, FTSE, at(9), "7599", "7700", &price(9), "1");
    wait_until(&c, "SELECT count(*) = 10 FROM tapeflow.ticks", Duration::from_secs(10), Some(STATUS)).await;

    // A server that goes silent (not even PROBE) is given up after keep-alive + grace.
    let stalled = Instant::now();
    fake.stall_streams();
    assert!(
        fake.wait(Duration::from_secs(10), |f| f.sessions_created() == 4).await,
        "no reconnect after a stall"
    );
    assert!(stalled.elapsed() >= Duration::from_millis(400), "reconnected before the keep-alive ran out");
    subscribed(&fake, &[FTSE]).await;
    traded(&fake, FTSE, at(10), "7599", "7700", &price(10), "1");
    wait_until(&c, "SELECT count(*) = 11 FROM tapeflow.ticks", Duration::from_secs(10), Some(STATUS)).await;

    // Every replay (three snapshots of up to ten events) added nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.ticks").await, 11);
    assert_eq!(count(&c, "SELECT count(DISTINCT trade_id) FROM tapeflow.ticks").await, 11);
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.ticks WHERE time = (SELECT min(time) FROM tapeflow.ticks WHERE price = 7603)").await, 2);
    wait_until(
        &c,
        "SELECT reconnects >= 3 AND state = 'connected' FROM tapeflow.feed_status WHERE provider = 'ig' AND connection = 'stream'",
        Duration::from_secs(10),
        Some(STATUS),
    )
    .await;
    assert_eq!(fake.logins(), 1, "reconnecting needs no new login");
    assert!(feed.terminate(Duration::from_secs(10)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_renewed_before_their_tokens_expire() {
    let fake =
        FakeIg::start(FakeIgOptions { token_ttl: Some(Duration::from_secs(3)), ..FakeIgOptions::default() })
            .await;
    let (db, c) = setup(&[("FTSE", FTSE, "future", 0.5)]).await;
    let mut feed = run_feed(&db, &fake, &[("TAPEFLOW_IG_SESSION_RENEW_SECS", "1")]);
    subscribed(&fake, &[FTSE]).await;
    // Renewed about every second while streaming; the stream is not disturbed.
    assert!(fake.wait(Duration::from_secs(15), |f| f.logins() >= 4).await, "logins: {}", fake.logins());
    assert_eq!(fake.sessions_created(), 1);
    // Five seconds after the first login its tokens are long dead: a new session must use the
    // renewed ones, and is accepted at once.
    fake.drop_streams();
    assert!(fake.wait(Duration::from_secs(10), |f| f.sessions_created() == 2).await);
    assert!(fake.conerrs().is_empty(), "stream refused stale tokens: {:?}", fake.conerrs());
    subscribed(&fake, &[FTSE]).await;
    let t = Utc.timestamp_millis_opt(Utc::now().timestamp_millis()).unwrap();
    traded(&fake, FTSE, t, "1", "3", "2", "1");
    wait_until(&c, "SELECT count(*) = 1 FROM tapeflow.ticks", Duration::from_secs(10), Some(STATUS)).await;
    assert!(feed.terminate(Duration::from_secs(10)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_log_in_again() {
    let fake = FakeIg::start(FakeIgOptions::default()).await;
    let (db, c) = setup(&[("FTSE", FTSE, "future", 0.5)]).await;
    let mut feed = run_feed(&db, &fake, &[]);
    subscribed(&fake, &[FTSE]).await;
    fake.expire_tokens();
    fake.drop_streams();
    // create_session with the dead tokens gets CONERR,1; the provider logs in and comes back.
    assert!(
        fake.wait(Duration::from_secs(15), |f| f.sessions_created() == 2).await,
        "conerrs {:?}",
        fake.conerrs()
    );
    assert_eq!(fake.conerrs(), vec!["1,User/password check failed".to_string()]);
    assert_eq!(fake.logins(), 2);
    subscribed(&fake, &[FTSE]).await;
    let t = Utc.timestamp_millis_opt(Utc::now().timestamp_millis()).unwrap();
    traded(&fake, FTSE, t, "1", "3", "2", "1");
    wait_until(&c, "SELECT count(*) = 1 FROM tapeflow.ticks", Duration::from_secs(10), Some(STATUS)).await;
    assert!(feed.terminate(Duration::from_secs(10)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_fails_with_igs_reason_and_is_not_hammered() {
    let fake = FakeIg::start(FakeIgOptions::default()).await;
    fake.refuse_logins(true);
    let (db, c) = setup(&[("FTSE", FTSE, "future", 0.5)]).await;
    let mut feed = run_feed(&db, &fake, &[("TAPEFLOW_IG_LOGIN_RETRY_SECS", "5")]);
    wait_until(
        &c,
        "SELECT EXISTS (SELECT 1 FROM tapeflow.feed_status WHERE provider = 'ig' AND connection = 'stream'
           AND state = 'failed' AND last_error LIKE '%error.security.invalid-details%IG_PASSWORD%')",
        Duration::from_secs(15),
        Some(STATUS),
    )
    .await;
    let first = Instant::now();
    // Routing restarts the provider after a second; it waits out the refusal instead of logging in.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(fake.refused_logins(), 1, "a refused login was retried within its cooldown");
    let last_error: String = c
        .query_one(
            "SELECT last_error FROM tapeflow.feed_status WHERE provider = 'ig' AND connection = 'stream'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!last_error.contains(&fake.opts.password), "the password is shown: {last_error}");
    assert!(feed.child.try_wait().unwrap().is_none(), "the feeder exited");
    // Once IG accepts the login again, the provider comes back by itself.
    fake.refuse_logins(false);
    subscribed(&fake, &[FTSE]).await;
    assert!(first.elapsed() >= Duration::from_millis(2500));
    wait_until(
        &c,
        "SELECT state = 'connected' FROM tapeflow.feed_status WHERE provider = 'ig' AND connection = 'stream'",
        Duration::from_secs(10),
        Some(STATUS),
    )
    .await;
    assert!(feed.terminate(Duration::from_secs(10)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_error_that_retrying_cannot_fix_stops_the_provider() {
    let fake = FakeIg::start(FakeIgOptions::default()).await;
    fake.conerr_next(65, "Unsupported protocol version: 2.5.0");
    let (db, c) = setup(&[("FTSE", FTSE, "future", 0.5)]).await;
    let mut feed = run_feed(&db, &fake, &[]);
    wait_until(
        &c,
        "SELECT EXISTS (SELECT 1 FROM tapeflow.feed_status WHERE provider = 'ig' AND state = 'failed'
           AND last_error LIKE '%CONERR,65,Unsupported protocol version%')",
        Duration::from_secs(15),
        Some(STATUS),
    )
    .await;
    // Routing starts it again after TAPEFLOW_FEED_RESTART_SECS; this time the server accepts.
    subscribed(&fake, &[FTSE]).await;
    assert_eq!(fake.sessions_created(), 1);
    assert!(feed.terminate(Duration::from_secs(10)));
}

/// The captured minute bars (2020-10-12 20:50-20:59 UTC), and the same ten a day later.
fn two_days_of_prices() -> Vec<Value> {
    let path = ground_truth::data_dir().join("c_protocol/ig/historic_prices.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let day1 = v["prices"].as_array().unwrap().clone();
    let mut day2 = day1.clone();
    for p in &mut day2 {
        let utc = p["snapshotTimeUTC"].as_str().unwrap().replace("2020-10-12", "2020-10-13");
        let local = p["snapshotTime"].as_str().unwrap().replace("2020/10/12", "2020/10/13");
        p["snapshotTimeUTC"] = Value::String(utc);
        p["snapshotTime"] = Value::String(local);
    }
    day1.into_iter().chain(day2).collect()
}

fn backfill(db: &TestDb, fake: &FakeIg, from: &str, to: &str) -> std::process::Output {
    let mut cmd = std::process::Command::new(binary("tapeflow-feed"));
    cmd.args(["backfill", "ig", "--symbols", "GOLD", "--from", from, "--to", to]);
    for (k, v) in env(db, fake, &[("TAPEFLOW_IG_PAGE_SIZE", "3")]) {
        cmd.env(k, v);
    }
    cmd.output().expect("run tapeflow-feed backfill")
}

fn price_requests(fake: &FakeIg) -> Vec<String> {
    fake.requests().into_iter().filter(|r| r.starts_with("GET /prices/")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_loads_mid_bars_waits_out_the_allowance_and_resumes() {
    let fake = FakeIg::start(FakeIgOptions::default()).await;
    fake.set_prices(GOLD, two_days_of_prices());
    let (db, c) = setup(&[("GOLD", GOLD, "future", 0.1)]).await;
    // The first request is over the allowance, the second finds the tokens expired, then two
    // days of four pages each; the second day's are refused (an epic gone for a while).
    fake.throttle_prices(1);
    fake.unauthorize_prices(1);
    fake.refuse_prices_after(Some(4));
    let out = backfill(&db, &fake, "2020-10-12T20:50:00Z", "2020-10-14T20:50:00Z");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the refused day should fail the run: {stderr}");
    assert!(stderr.contains("error.error.instrument.epic.unavailable"), "{stderr}");
    assert_eq!(fake.logins(), 2, "one login, and one after the 401");
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.bars_1m_imported").await, 10);
    // The resume point is the end of the first day, whose bars are all stored.
    let done: DateTime<Utc> = c
        .query_one(
            "SELECT done_until FROM tapeflow.backfill_progress WHERE provider = 'ig' AND finished_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(done, Utc.with_ymd_and_hms(2020, 10, 13, 20, 50, 0).unwrap());
    let first_run = price_requests(&fake);
    // IG reads from and to in the account's local time (BST here): 20:50 UTC is 21:50.
    assert!(
        first_run[0].contains(
            "resolution=MINUTE&from=2020-10-12T21:50:00&to=2020-10-13T21:50:00&pageSize=3&pageNumber=1"
        ),
        "{first_run:?}"
    );
    assert!(first_run.iter().any(|r| r.ends_with("pageNumber=4")), "{first_run:?}");

    // Run again: only the second day is read.
    fake.refuse_prices_after(None);
    let out = backfill(&db, &fake, "2020-10-12T20:50:00Z", "2020-10-14T20:50:00Z");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let second_run: Vec<String> = price_requests(&fake).split_off(first_run.len());
    assert!(second_run.iter().all(|r| r.contains("from=2020-10-13T21:50:00")), "{second_run:?}");
    assert_eq!(second_run.len(), 4, "{second_run:?}");
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.bars_1m_imported").await, 20);
    // Bars are the midpoint of bid and ask, at their UTC minute.
    let b = c
        .query_one(
            "SELECT bucket, open, high, low, close, volume FROM tapeflow.bars_1m_imported ORDER BY bucket LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(b.get::<_, DateTime<Utc>>(0), Utc.with_ymd_and_hms(2020, 10, 12, 20, 50, 0).unwrap());
    let ohlcv: (f64, f64, f64, f64, f64) = (b.get(1), b.get(2), b.get(3), b.get(4), b.get(5));
    assert_eq!(ohlcv, (1926.7, 1928.0, 1926.7, 1927.6, 60.0));
    let last: DateTime<Utc> =
        c.query_one("SELECT max(bucket) FROM tapeflow.bars_1m_imported", &[]).await.unwrap().get(0);
    assert_eq!(last, Utc.with_ymd_and_hms(2020, 10, 13, 20, 59, 0).unwrap());
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.backfill_progress WHERE provider = 'ig' AND finished_at IS NOT NULL").await, 1);

    // A third run of the same range is skipped: IG's allowance is counted in bars.
    let before = price_requests(&fake).len();
    let out = backfill(&db, &fake, "2020-10-12T20:50:00Z", "2020-10-14T20:50:00Z");
    assert!(out.status.success());
    assert_eq!(price_requests(&fake).len(), before);
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.feed_rejects").await, 0);
}
