//! The demo feed against a real database: backfill, live streaming, restart without
//! duplicates, graceful shutdown, and the dashboard in headless Chromium.

use std::process::Command;
use std::time::Duration;
use tapeflow_tests::*;

fn feed_env(db: &TestDb) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.url.clone()),
        ("TAPEFLOW_DEMO_SYMBOLS", "AAPL,MSFT,NVDA".into()),
        ("TAPEFLOW_DEMO_BACKFILL_DAYS", "1".into()),
        ("TAPEFLOW_DEMO_INTERVAL_MS", "200".into()),
    ]
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

async fn wait_until(client: &tokio_postgres::Client, sql: &str, min: i64, timeout: Duration) -> i64 {
    let start = std::time::Instant::now();
    loop {
        let n = count(client, sql).await;
        if n >= min || start.elapsed() > timeout {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn demo_feed_backfills_streams_and_restarts_without_duplicates() {
    let db = TestDb::create("demo", false).await;
    let client = db.client().await;
    let mut feed = Proc::spawn("tapeflow-feed", &["demo"], &feed_env(&db));

    // Backfill: at least one full previous session of trades, with the true side recorded.
    let backfilled =
        wait_until(&client, "SELECT count(*) FROM tapeflow.ticks", 5_000, Duration::from_secs(120)).await;
    assert!(backfilled >= 5_000, "backfill wrote only {backfilled} ticks");
    let sides = count(
        &client,
        "SELECT count(*) FROM tapeflow.ticks WHERE side NOT IN ('B','S') OR side_source <> 'simulated'",
    )
    .await;
    assert_eq!(sides, 0);

    // Live: new ticks keep arriving close to now.
    let recent = wait_until(
        &client,
        "SELECT count(*) FROM tapeflow.ticks WHERE time > now() - interval '10 seconds'",
        1,
        Duration::from_secs(60),
    )
    .await;
    assert!(recent >= 1, "no live ticks");
    // Buys print at the ask and sells at the bid of the quote in force.
    let quotes = count(&client, "SELECT count(*) FROM tapeflow.quotes").await;
    assert!(quotes > 0);
    let off_quote = count(
        &client,
        "SELECT count(*) FROM (SELECT t.side, t.price, q.bid, q.ask FROM tapeflow.ticks t
           CROSS JOIN LATERAL (SELECT bid, ask FROM tapeflow.quotes q WHERE q.symbol = t.symbol AND q.time <= t.time
                               ORDER BY q.time DESC LIMIT 1) q
           WHERE t.symbol = 'MSFT' ORDER BY t.time DESC LIMIT 500) x
         WHERE (side = 'B' AND price <> ask) OR (side = 'S' AND price <> bid)",
    )
    .await;
    assert!(off_quote < 25, "{off_quote} of 500 trades not at the touch");
    let bars = count(
        &client,
        "SELECT count(*) FROM tapeflow.candles('AAPL', '5m', now() - interval '4 days', now())",
    )
    .await;
    assert!(bars > 10, "only {bars} 5m bars");

    assert!(feed.terminate(Duration::from_secs(10)), "feed did not stop gracefully on SIGTERM");
    let before = count(&client, "SELECT count(*) FROM tapeflow.ticks").await;

    // Restart: resumes from the newest tick; replayed trades are skipped, none duplicated.
    let mut feed = Proc::spawn("tapeflow-feed", &["demo"], &feed_env(&db));
    let resumed =
        wait_until(&client, "SELECT count(*) FROM tapeflow.ticks", before + 1, Duration::from_secs(30)).await;
    assert!(resumed > before, "the restarted feed wrote nothing new");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(feed.terminate(Duration::from_secs(10)));
    let dups = count(
        &client,
        "SELECT count(*) FROM (SELECT symbol, trade_id FROM tapeflow.ticks GROUP BY 1, 2 HAVING count(*) > 1) d",
    )
    .await;
    assert_eq!(dups, 0);
    // Minute summaries agree with the ticks they summarise.
    let mismatch = count(
        &client,
        "SELECT count(*) FROM (SELECT symbol, tapeflow.minute(time) b, sum(size) v FROM tapeflow.ticks GROUP BY 1, 2) t
         FULL JOIN tapeflow.bars_1m m ON m.symbol = t.symbol AND m.bucket = t.b
         WHERE t.v IS DISTINCT FROM tapeflow.volume(m.candle)",
    )
    .await;
    assert_eq!(mismatch, 0);
}

#[tokio::test]
async fn dashboard_updates_live_in_headless_chromium() {
    let db = TestDb::create("browser", false).await;
    let client = db.client().await;
    let _feed = Proc::spawn("tapeflow-feed", &["demo"], &feed_env(&db));
    wait_until(&client, "SELECT count(*) FROM tapeflow.bars_1m", 100, Duration::from_secs(120)).await;
    let (_web, base, _http) = start_web(&db).await;
    let screenshot = repo_root().join("target/dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let status = Command::new("node")
        .args(["--test", "browser-test/dashboard.test.mjs"])
        .current_dir(repo_root().join("web"))
        .env("TAPEFLOW_WEB_URL", &base)
        .env("TAPEFLOW_WEB_USER", TEST_USER)
        .env("TAPEFLOW_WEB_PASSWORD", TEST_PASSWORD)
        .env("TAPEFLOW_SCREENSHOT", &screenshot)
        .status()
        .expect("run node");
    assert!(status.success(), "browser test failed");
    assert!(screenshot.exists(), "no screenshot at {}", screenshot.display());
}

/// A feed without aggressor flags: the demo withholds its true sides and the feeder classifies
/// at ingest (Lee-Ready on the quotes it sees); compared with the truth of the same simulation.
#[tokio::test]
async fn sides_inferred_at_ingest_match_the_simulated_truth() {
    let truth_db = TestDb::create("truth", false).await;
    let inferred_db = TestDb::create("inferred", false).await;
    let truth = demo_session(&truth_db, "JPM").await;
    let inferred =
        demo_session_with(&inferred_db, "JPM", &[("TAPEFLOW_DEMO_INFER_SIDES", "true".into())]).await;
    let sides = |rows: Vec<tokio_postgres::Row>| -> std::collections::HashMap<String, (i8, String)> {
        rows.iter().map(|r| (r.get(0), (r.get(1), r.get(2)))).collect()
    };
    let q = "SELECT trade_id, side, side_source FROM tapeflow.ticks";
    let t = sides(truth.query(q, &[]).await.unwrap());
    let i = sides(inferred.query(q, &[]).await.unwrap());
    assert_eq!(t.len(), i.len(), "the same simulated trades");
    assert!(t.values().all(|(_, src)| src == "simulated"));
    assert!(i.values().all(|(_, src)| src == "inferred" || src == "none"));
    let agree = t.iter().filter(|(id, (side, _))| i.get(*id).map(|x| x.0) == Some(*side)).count();
    let accuracy = agree as f64 / t.len() as f64;
    // Trades print at the touch of the quote in force, so Lee-Ready is almost always right.
    assert!(accuracy > 0.98, "ingest classification accuracy {accuracy:.4} on {} trades", t.len());
}
