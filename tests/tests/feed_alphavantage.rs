//! The Alpha Vantage provider end to end: the real `tapeflow-feed run` and `tapeflow-feed
//! backfill alphavantage` against the fake server (tests/src/fake_alphavantage.rs), into a
//! throw-away database.
//!
//! Times are checked against offsets written out here (EST = UTC−5 before 2024-03-10 and in
//! December, EDT = UTC−4 after), not against the provider's own conversion.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};
use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tapeflow_tests::fake_alphavantage::{FakeAlphaVantage, Fault, Labels, LocalBar, Request, BAD_KEY};
use tapeflow_tests::{binary, repo_root, wait_until, Proc, TestDb};
use tokio_postgres::Client;

const KEY: &str = "FAKEAVKEY0123456";

/// A month and day.
type MonthDay = (u32, u32);

/// New York's daylight-saving periods of the years these tests use: (year, first day, first
/// day back on standard time).
const NY_DST: &[(i32, MonthDay, MonthDay)] =
    &[(2017, (3, 12), (11, 5)), (2020, (3, 8), (11, 1)), (2024, (3, 10), (11, 3))];

/// New York's offset from UTC in hours on a local date (the changes happen at 02:00 on a
/// Sunday, when no bar of these tests falls).
fn ny_offset_hours(local: NaiveDateTime) -> i64 {
    let d = local.date();
    let &(y, (m1, d1), (m2, d2)) = NY_DST
        .iter()
        .find(|p| p.0 == d.year())
        .unwrap_or_else(|| panic!("{d}: no offset written out for its year"));
    let summer =
        d >= NaiveDate::from_ymd_opt(y, m1, d1).unwrap() && d < NaiveDate::from_ymd_opt(y, m2, d2).unwrap();
    if summer {
        4
    } else {
        5
    }
}

type Stored = BTreeMap<DateTime<Utc>, [f64; 5]>;

/// The fake's bars as they must be stored: each at the UTC start of its minute.
fn expected(bars: &[LocalBar], from: DateTime<Utc>, to: DateTime<Utc>) -> Stored {
    bars.iter()
        .map(|b| ((b.start + chrono::Duration::hours(ny_offset_hours(b.start))).and_utc(), b.ohlcv))
        .filter(|(t, _)| *t >= from && *t < to)
        .collect()
}

async fn stored(c: &Client, symbol: &str) -> Stored {
    c.query(
        "SELECT bucket, open, high, low, close, volume FROM tapeflow.bars_1m_imported WHERE symbol = $1",
        &[&symbol],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), [r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)]))
    .collect()
}

/// Compares stored bars with the expected ones, naming the first difference.
fn assert_same(got: &Stored, want: &Stored, what: &str) {
    if got == want {
        return;
    }
    let missing = want.iter().find(|(t, v)| got.get(*t) != Some(*v));
    let extra = got.iter().find(|(t, _)| !want.contains_key(*t));
    panic!(
        "{what}: {} stored, {} expected; first expected bar not stored as such: {missing:?} (stored: {:?}); first extra: {extra:?}",
        got.len(),
        want.len(),
        missing.and_then(|(t, _)| got.get(t))
    );
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(c: &Client, sql: &str) -> T {
    c.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

/// A database with these (symbol, provider_ref) rows fed by Alpha Vantage.
async fn database(prefix: &str, symbols: &[(&str, &str)]) -> (TestDb, Client) {
    let db = TestDb::create(prefix, false).await;
    let c = db.client().await;
    for (s, r) in symbols {
        c.execute(
            "INSERT INTO tapeflow.symbols (symbol, tick_size, provider, provider_ref) VALUES ($1, 0.01, 'alphavantage', $2)",
            &[s, r],
        )
        .await
        .unwrap();
    }
    (db, c)
}

fn feed_env(
    db: &TestDb,
    fake: &FakeAlphaVantage,
    key: &str,
    extra: &[(&str, &str)],
) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = vec![
        ("DATABASE_URL", db.url.clone()),
        ("ALPHAVANTAGE_API_KEY", key.into()),
        ("TAPEFLOW_ALPHAVANTAGE_URL", fake.base_url.clone()),
        ("TAPEFLOW_ALPHAVANTAGE_POLL_SECS", "1".into()),
        ("TAPEFLOW_ALPHAVANTAGE_RPM", "600".into()),
        ("TAPEFLOW_FEED_STATUS_MS", "100".into()),
        ("TAPEFLOW_FEED_RELOAD_SECS", "1".into()),
        ("TAPEFLOW_FEED_RESTART_SECS", "1".into()),
        ("TAPEFLOW_FEED_METRICS_ADDR", "off".into()),
    ];
    for (k, v) in extra {
        let k: &'static str = Box::leak(k.to_string().into_boxed_str());
        env.retain(|(e, _)| *e != k);
        env.push((k, v.to_string()));
    }
    env
}

/// `tapeflow-feed backfill alphavantage …`, to completion (without blocking the runtime the
/// fake server runs on).
async fn backfill(env: &[(&'static str, String)], args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(binary("tapeflow-feed"));
    cmd.arg("backfill").arg("alphavantage").args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("backfill finished within 2 minutes")
        .expect("run tapeflow-feed backfill")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The "N bars written" count of a backfill's summary line.
fn bars_written(o: &Output) -> u64 {
    let text = stderr(o);
    let line =
        text.lines().find(|l| l.contains("bars written")).unwrap_or_else(|| panic!("no summary:\n{text}"));
    let before = &line[..line.find(" bars written").unwrap()];
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

fn months_asked(reqs: &[Request], symbol: &str) -> Vec<String> {
    reqs.iter().filter(|r| r.symbol == symbol).filter_map(|r| r.month.clone()).collect()
}

const STATUS: &str = "SELECT state || ' ' || coalesce(last_error, '') || ' parse_errors=' || parse_errors || ' reconnects=' || reconnects
                      FROM tapeflow.feed_status WHERE provider = 'alphavantage'";

#[tokio::test]
async fn polled_bars_land_on_their_new_york_minutes_and_are_never_rewritten() {
    let (db, c) = database("av_live", &[("MSFT", "MSFT"), ("MSFT_B", "IBM")]).await;
    let fake = FakeAlphaVantage::start(KEY, &["MSFT", "IBM"], Labels::Start).await;
    let mut feed = Proc::spawn("tapeflow-feed", &["run"], &feed_env(&db, &fake, KEY, &[]));
    wait_until(
        &c,
        "SELECT count(*) = 200 FROM tapeflow.bars_1m_imported",
        Duration::from_secs(30),
        Some(STATUS),
    )
    .await;
    // 2017-12-18 is winter: 13:16 … 14:55 EST are 18:16 … 19:55 UTC. The predecessor stored
    // them at 13:16 … 14:55 UTC.
    let want = expected(&fake.latest_bars(), utc("2017-12-18T00:00:00Z"), utc("2017-12-19T00:00:00Z"));
    assert_eq!(want.keys().next(), Some(&utc("2017-12-18T18:16:00Z")));
    assert_eq!(want.keys().last(), Some(&utc("2017-12-18T19:55:00Z")));
    assert_same(&stored(&c, "MSFT").await, &want, "MSFT");
    // provider_ref is what is asked for; the bars are stored under Tapeflow's name.
    assert_same(&stored(&c, "MSFT_B").await, &want, "MSFT_B (IBM at Alpha Vantage)");
    let reqs = fake.requests();
    assert!(reqs.iter().any(|r| r.symbol == "IBM") && !reqs.iter().any(|r| r.symbol == "MSFT_B"));
    for r in &reqs {
        assert_eq!(
            (r.function.as_str(), r.interval.as_str(), r.outputsize.as_deref(), r.extended_hours.as_deref()),
            ("TIME_SERIES_INTRADAY", "1min", Some("compact"), Some("true")),
            "{r:?}"
        );
        assert_eq!(
            (r.adjusted.as_deref(), r.datatype.as_deref(), r.month.as_deref()),
            (Some("false"), Some("json"), None)
        );
        assert!(r.key_ok);
    }

    // Later polls answer the same bars: nothing is written again (no row version changes).
    let versions: Vec<String> = c
        .query("SELECT xmin::text FROM tapeflow.bars_1m_imported ORDER BY symbol, bucket", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let polls = fake.requests().len();
    let start = Instant::now();
    while fake.requests().len() < polls + 4 {
        assert!(start.elapsed() < Duration::from_secs(20), "the feed stopped polling");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again: Vec<String> = c
        .query("SELECT xmin::text FROM tapeflow.bars_1m_imported ORDER BY symbol, bucket", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, again, "bars were rewritten by identical polls");
    wait_until(
        &c,
        "SELECT state = 'connected' AND parse_errors = 0 AND messages >= 4 AND symbols = 2
         FROM tapeflow.feed_status WHERE provider = 'alphavantage' AND connection = 'stream'",
        Duration::from_secs(10),
        Some(STATUS),
    )
    .await;

    // What reads bars_1m_imported sees them: candles (5-minute bars aligned to the 09:30 open).
    let r = c
        .query_one(
            "SELECT count(*), min(time), max(time), sum(volume), (array_agg(open ORDER BY time))[1],
                    (array_agg(close ORDER BY time DESC))[1]
             FROM tapeflow.candles('MSFT', '5m', '2017-12-18', '2017-12-19')",
            &[],
        )
        .await
        .unwrap();
    let first = want.values().next().unwrap();
    let last = want.values().last().unwrap();
    let volume: f64 = want.values().map(|v| v[4]).sum();
    assert_eq!(r.get::<_, i64>(0), 21); // 13:15 … 14:55
    assert_eq!(r.get::<_, DateTime<Utc>>(1), utc("2017-12-18T18:15:00Z"));
    assert_eq!(r.get::<_, DateTime<Utc>>(2), utc("2017-12-18T19:55:00Z"));
    assert_eq!((r.get::<_, f64>(3), r.get::<_, f64>(4), r.get::<_, f64>(5)), (volume, first[0], last[3]));
    assert!(feed.terminate(Duration::from_secs(10)), "the feed did not stop on SIGTERM");
    let state: String = one(
        &c,
        "SELECT state FROM tapeflow.feed_status WHERE provider = 'alphavantage' AND connection = 'stream'",
    )
    .await;
    assert_eq!(state, "stopped");
}

#[tokio::test]
async fn throttle_answers_wait_then_the_bars_arrive_at_the_pacers_rate() {
    let (db, c) = database("av_throttle", &[("MSFT", "MSFT")]).await;
    let fake = FakeAlphaVantage::start(KEY, &["MSFT"], Labels::Start).await;
    for f in
        [Fault::ThrottleInformation, Fault::ThrottleNote, Fault::ThrottleInformation, Fault::ThrottleNote]
    {
        fake.push_fault(None, f);
    }
    let env = feed_env(&db, &fake, KEY, &[("TAPEFLOW_ALPHAVANTAGE_RPM", "60")]);
    let mut feed = Proc::spawn("tapeflow-feed", &["run"], &env);
    let (_, information) = fake.throttle_texts();
    wait_until(
        &c,
        &format!(
            "SELECT coalesce(bool_or(state = 'throttled' AND last_error = 'throttled: {}'), false)
             FROM tapeflow.feed_status WHERE provider = 'alphavantage' AND connection = 'stream'",
            information.replace('\'', "''")
        ),
        Duration::from_secs(15),
        Some(STATUS),
    )
    .await;
    wait_until(
        &c,
        "SELECT count(*) = 100 FROM tapeflow.bars_1m_imported",
        Duration::from_secs(60),
        Some(STATUS),
    )
    .await;
    wait_until(
        &c,
        "SELECT state = 'connected' FROM tapeflow.feed_status WHERE provider = 'alphavantage' AND connection = 'stream'",
        Duration::from_secs(10),
        Some(STATUS),
    )
    .await;
    assert_eq!(fake.faults_left(), 0);
    assert!(feed.child.try_wait().unwrap().is_none(), "the feed exited on a throttle");
    // One request a second at most (60 a minute), throttled ones included; the waits after
    // throttle answers grow.
    let reqs = fake.requests();
    assert!(reqs.len() >= 5);
    let gaps: Vec<Duration> = reqs.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps.iter().all(|g| *g >= Duration::from_millis(950)), "requests closer than the pace: {gaps:?}");
    let thrown: Duration = gaps[..4].iter().sum();
    assert!(thrown >= Duration::from_secs(4), "waits after four throttles: {gaps:?}");
    assert_same(
        &stored(&c, "MSFT").await,
        &expected(&fake.latest_bars(), utc("2017-01-01T00:00:00Z"), utc("2018-01-01T00:00:00Z")),
        "after throttling",
    );
}

#[tokio::test]
async fn a_refused_key_fails_the_provider_with_a_clear_error_and_is_never_logged() {
    const WRONG: &str = "WRONGKEY7F3A9C21";
    let (db, c) = database("av_badkey", &[("MSFT", "MSFT")]).await;
    let fake = FakeAlphaVantage::start(KEY, &["MSFT"], Labels::Start).await;
    let log_path = repo_root().join(format!("target/feed_alphavantage-badkey-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = Command::new(binary("tapeflow-feed"));
    cmd.arg("run").stdout(log.try_clone().unwrap()).stderr(log);
    for (k, v) in feed_env(&db, &fake, WRONG, &[("RUST_LOG", "debug")]) {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let mut feed = Proc { child, name: "tapeflow-feed".into() };
    wait_until(
        &c,
        &format!(
            "SELECT coalesce(bool_or(state = 'failed' AND last_error = 'Alpha Vantage refused the key (ALPHAVANTAGE_API_KEY): {BAD_KEY}'), false)
             FROM tapeflow.feed_status WHERE provider = 'alphavantage' AND connection = 'stream'"
        ),
        Duration::from_secs(20),
        Some(STATUS),
    )
    .await;
    // Routing starts it again after TAPEFLOW_FEED_RESTART_SECS: refused each time, nothing stored.
    let start = Instant::now();
    while fake.requests().len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(20), "not started again after the failure");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fake.requests().iter().all(|r| !r.key_ok));
    assert_eq!(one::<i64>(&c, "SELECT count(*) FROM tapeflow.bars_1m_imported").await, 0);
    assert!(feed.terminate(Duration::from_secs(10)));
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("refused the key"), "{text}");
    assert!(!text.contains(WRONG), "the key is in the log");

    // The same key refused in a backfill: a clear error, exit status 1, the key not printed.
    let out = backfill(
        &feed_env(&db, &fake, WRONG, &[]),
        &["--symbols", "MSFT", "--from", "2024-01-02", "--to", "2024-01-05"],
    )
    .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("Alpha Vantage refused the key (ALPHAVANTAGE_API_KEY)")
            && err.contains("apikey is invalid"),
        "{err}"
    );
    assert!(!err.contains(WRONG) && !String::from_utf8_lossy(&out.stdout).contains(WRONG), "{err}");
    let _ = std::fs::remove_file(log_path);
}

#[tokio::test]
async fn an_unknown_symbol_is_reported_while_the_others_go_on_and_the_set_is_followed_live() {
    let (db, c) = database("av_unknown", &[("MSFT", "MSFT"), ("NOSUCH", "NOSUCH")]).await;
    let fake = FakeAlphaVantage::start(KEY, &["MSFT", "IBM"], Labels::Start).await;
    let mut feed = Proc::spawn("tapeflow-feed", &["run"], &feed_env(&db, &fake, KEY, &[]));
    wait_until(
        &c,
        "SELECT count(*) = 100 FROM tapeflow.bars_1m_imported WHERE symbol = 'MSFT'",
        Duration::from_secs(30),
        Some(STATUS),
    )
    .await;
    wait_until(
        &c,
        "SELECT coalesce(bool_or(state = 'connected' AND last_error LIKE 'NOSUCH: Alpha Vantage refused symbol \"NOSUCH\" (unknown symbol?): Invalid API call.%'), false)
         FROM tapeflow.feed_status WHERE provider = 'alphavantage' AND connection = 'stream'",
        Duration::from_secs(10),
        Some(STATUS),
    )
    .await;
    // The refused symbol is asked less and less often; the good one every poll.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let count = |s: &str| fake.requests().iter().filter(|r| r.symbol == s).count();
    let (bad, good) = (count("NOSUCH"), count("MSFT"));
    assert!(bad <= 5 && bad < good && good >= 5, "NOSUCH asked {bad} times, MSFT {good}");

    // Routing changes are followed without a restart: a new symbol is fed, a deactivated one
    // is no longer asked for.
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size, provider, provider_ref) VALUES ('IBM', 0.01, 'alphavantage', NULL);
         UPDATE tapeflow.symbols SET active = false WHERE symbol = 'NOSUCH';",
    )
    .await
    .unwrap();
    wait_until(
        &c,
        "SELECT count(*) = 100 FROM tapeflow.bars_1m_imported WHERE symbol = 'IBM'",
        Duration::from_secs(20),
        Some(STATUS),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = count("NOSUCH");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count("NOSUCH"), before, "a deactivated symbol is still polled");
    assert!(feed.child.try_wait().unwrap().is_none());
    let restarts: i64 = one(&c, "SELECT count(*) FROM tapeflow.feed_status WHERE provider = 'alphavantage' AND connection = 'supervisor'").await;
    assert_eq!(restarts, 0, "the provider was restarted");
    assert!(feed.terminate(Duration::from_secs(10)));
}

#[tokio::test]
async fn hostile_answers_are_counted_and_survived() {
    let (db, c) = database("av_hostile", &[("MSFT", "MSFT")]).await;
    let fake = FakeAlphaVantage::start(KEY, &["MSFT"], Labels::Start).await;
    for f in [
        Fault::Malformed,
        Fault::Nulls,
        Fault::Huge(3_000_000),
        Fault::Stall(Duration::from_secs(20)),
        Fault::Status(503),
        Fault::Malformed,
    ] {
        fake.push_fault(None, f);
    }
    let env = feed_env(
        &db,
        &fake,
        KEY,
        &[("TAPEFLOW_ALPHAVANTAGE_MAX_BYTES", "1000000"), ("TAPEFLOW_ALPHAVANTAGE_TIMEOUT_SECS", "1")],
    );
    let mut feed = Proc::spawn("tapeflow-feed", &["run"], &env);
    // The null bars are skipped from their answer and stored from the next good one.
    wait_until(
        &c,
        "SELECT count(*) = 100 FROM tapeflow.bars_1m_imported",
        Duration::from_secs(60),
        Some(STATUS),
    )
    .await;
    assert_eq!(fake.faults_left(), 0);
    // Two malformed answers, two bad bars, one answer too large: 5; the stall and the 503 are
    // failed requests, retried.
    wait_until(
        &c,
        "SELECT state = 'connected' AND parse_errors = 5 AND reconnects = 2
         FROM tapeflow.feed_status WHERE provider = 'alphavantage' AND connection = 'stream'",
        Duration::from_secs(10),
        Some(STATUS),
    )
    .await;
    assert_same(
        &stored(&c, "MSFT").await,
        &expected(&fake.latest_bars(), utc("2017-01-01T00:00:00Z"), utc("2018-01-01T00:00:00Z")),
        "after hostile answers",
    );
    assert!(feed.child.try_wait().unwrap().is_none());
    assert!(feed.terminate(Duration::from_secs(10)));
}

/// Bars of the fake's months in [from, to).
fn months_expected(
    fake: &FakeAlphaVantage,
    months: &[&str],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Stored {
    let mut all = Vec::new();
    for m in months {
        all.extend(fake.month_bars(m));
    }
    expected(&all, from, to)
}

#[tokio::test]
async fn backfill_walks_months_across_daylight_saving_exactly_and_resumes_where_it_was_killed() {
    let (db, c) = database("av_backfill", &[("AAPL", "AAPL"), ("MSFT", "MSFT")]).await;
    let fake = FakeAlphaVantage::start(KEY, &["AAPL", "MSFT"], Labels::Start).await;
    fake.push_fault(None, Fault::ThrottleNote);
    let env = feed_env(&db, &fake, KEY, &[]);
    let (from, to) = (utc("2024-02-20T00:00:00Z"), utc("2024-04-05T00:00:00Z"));
    let args = ["--symbols", "AAPL", "--from", "2024-02-20", "--to", "2024-04-05"];
    let out = backfill(&env, &args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let want = months_expected(&fake, &["2024-02", "2024-03", "2024-04"], from, to);
    assert_same(&stored(&c, "AAPL").await, &want, "backfill");
    assert_eq!(bars_written(&out), want.len() as u64);
    // Either side of the change on Sunday 2024-03-10: 09:30 in New York is 14:30 UTC on
    // Friday the 8th and 13:30 UTC on Monday the 11th.
    let open = |local: &str| {
        let t = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M").unwrap();
        fake.month_bars("2024-03").into_iter().find(|b| b.start == t).unwrap().ohlcv
    };
    assert_eq!(want.get(&utc("2024-03-08T14:30:00Z")), Some(&open("2024-03-08 09:30")));
    assert_eq!(want.get(&utc("2024-03-11T13:30:00Z")), Some(&open("2024-03-11 09:30")));
    let reqs = fake.requests();
    // The throttled first request was asked again; each month once besides.
    assert_eq!(months_asked(&reqs, "AAPL"), ["2024-02", "2024-02", "2024-03", "2024-04"]);
    assert!(reqs[0].fault.as_deref() == Some("ThrottleNote"));
    for r in &reqs {
        assert_eq!(
            (r.outputsize.as_deref(), r.extended_hours.as_deref(), r.datatype.as_deref()),
            (Some("full"), Some("true"), Some("json"))
        );
    }

    // The load is recorded finished: a re-run, or any window inside it, asks for nothing and
    // writes nothing.
    let (finished, done_until): (bool, DateTime<Utc>) = {
        let r = c
            .query_one(
                "SELECT finished_at IS NOT NULL, done_until FROM tapeflow.backfill_progress
                 WHERE provider = 'alphavantage' AND symbol = 'AAPL' AND range_from = $1 AND range_to = $2",
                &[&from, &to],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(finished && done_until == to);
    for args in [&args[..], &["--symbols", "AAPL", "--from", "2024-03-01", "--to", "2024-03-20"]] {
        let out = backfill(&env, args).await;
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(bars_written(&out), 0);
    }
    assert_eq!(fake.requests().len(), reqs.len(), "a loaded window was asked for again");

    // A run killed while it waits for March: February is confirmed stored (its resume point
    // passed it), March and April are not; the same command again asks for those two only.
    fake.push_month_fault("2024-03", Fault::Stall(Duration::from_secs(120)));
    let msft = ["--symbols", "MSFT", "--from", "2024-02-20", "--to", "2024-04-05"];
    let mut cmd = tokio::process::Command::new(binary("tapeflow-feed"));
    cmd.args(["backfill", "alphavantage"]).args(msft).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    while !fake.requests().iter().any(|r| r.symbol == "MSFT" && r.month.as_deref() == Some("2024-03")) {
        assert!(start.elapsed() < Duration::from_secs(60), "March was never asked for");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().await.unwrap();
    let feb_end = utc("2024-03-01T05:00:00Z"); // midnight EST
    let r = c
        .query_one(
            "SELECT finished_at IS NULL, done_until FROM tapeflow.backfill_progress WHERE provider = 'alphavantage' AND symbol = 'MSFT'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((r.get::<_, bool>(0), r.get::<_, Option<DateTime<Utc>>>(1)), (true, Some(feb_end)));
    let want_msft = months_expected(&fake, &["2024-02", "2024-03", "2024-04"], from, to);
    let february: Stored = want_msft.range(..feb_end).map(|(t, v)| (*t, *v)).collect();
    assert_same(&stored(&c, "MSFT").await, &february, "MSFT when killed");
    let asked = fake.requests().len();
    let out = backfill(&env, &msft).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(months_asked(&fake.requests()[asked..], "MSFT"), ["2024-03", "2024-04"]);
    assert_eq!(bars_written(&out), (want_msft.len() - february.len()) as u64);
    assert_same(&stored(&c, "MSFT").await, &want_msft, "MSFT resumed");

    // candles() and a backtest run on the imported bars.
    let (n, volume): (i64, f64) = {
        let r = c
            .query_one("SELECT count(*), sum(volume) FROM tapeflow.candles('AAPL', '1m', '2024-02-20', '2024-04-05')", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(n as usize, want.len());
    assert_eq!(volume, want.values().map(|v| v[4]).sum::<f64>());
    let hourly: f64 =
        one(&c, "SELECT sum(volume) FROM tapeflow.candles('AAPL', '1h', '2024-02-20', '2024-04-05')").await;
    assert_eq!(hourly, volume);
    let id: i64 = one(&c, "SELECT tapeflow.backtest_run(ARRAY['AAPL'], '2024-02-20', '2024-04-05')").await;
    let r = c
        .query_one("SELECT status, bars, error FROM tapeflow.backtest_runs WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!((r.get::<_, String>(0), r.get::<_, Option<String>>(2)), ("completed".to_string(), None));
    assert_eq!(r.get::<_, i64>(1) as usize, want.len());
    let days: i64 =
        one(&c, &format!("SELECT count(*) FROM tapeflow.backtest_daily WHERE run_id = {id}")).await;
    assert!(days >= 30, "{days} backtest days over six and a half weeks of sessions");
}

#[tokio::test]
async fn backfill_of_end_stamped_csv_months_and_an_unknown_symbol() {
    let (db, c) = database("av_csv", &[("AAPL", "AAPL"), ("NOSUCH", "NOSUCH")]).await;
    let fake = FakeAlphaVantage::start(KEY, &["AAPL"], Labels::End).await;
    let env = feed_env(
        &db,
        &fake,
        KEY,
        &[("TAPEFLOW_ALPHAVANTAGE_BAR_TIME", "end"), ("TAPEFLOW_ALPHAVANTAGE_BACKFILL_DATATYPE", "csv")],
    );
    // From midnight UTC, which is 19:00 the day before in New York: November is asked for
    // too, and its last evening stored.
    let (from, to) = (utc("2020-12-01T00:00:00Z"), utc("2021-01-01T00:00:00Z"));
    let out =
        backfill(&env, &["--symbols", "NOSUCH,AAPL", "--from", "2020-12-01", "--to", "2021-01-01"]).await;
    assert!(!out.status.success(), "an unknown symbol is an error");
    let err = stderr(&out);
    assert!(
        err.contains("NOSUCH: Alpha Vantage refused symbol \"NOSUCH\" (unknown symbol?): Invalid API call."),
        "{err}"
    );
    // The unknown symbol cost its first month and one probe; the other symbol was fetched whole.
    let reqs = fake.requests();
    assert_eq!(reqs.iter().filter(|r| r.symbol == "NOSUCH").count(), 2);
    assert_eq!(months_asked(&reqs, "AAPL"), ["2020-11", "2020-12"]);
    assert!(reqs.iter().filter(|r| r.month.is_some()).all(|r| r.datatype.as_deref() == Some("csv")));
    // Stamped with their end (20:00 names the 19:59 minute), read in New York winter time.
    let want = months_expected(&fake, &["2020-11", "2020-12"], from, to);
    let evening = want.range(from..utc("2020-12-01T01:00:00Z")).count();
    assert!(evening > 0 && evening <= 60, "{evening} bars of 30 November's evening");
    assert_same(&stored(&c, "AAPL").await, &want, "CSV backfill");
    assert_eq!(
        one::<i64>(&c, "SELECT count(*) FROM tapeflow.bars_1m_imported WHERE symbol = 'NOSUCH'").await,
        0
    );
}
