//! `tapeflow-feed run` with all three providers at once, against their fakes: Alpaca trades
//! and quotes, IG quotes and ticks, Alpha Vantage minute bars, each symbol routed from
//! `tapeflow.symbols`; their health in `tapeflow.feed_status`, on the feeder's `/metrics` and
//! on the dashboard's feed API; and one provider's outage leaves the others feeding.

use chrono::Utc;
use std::time::Duration;
use tapeflow_tests::fake_alpaca_data::{FakeAlpacaData, FakeDataOptions};
use tapeflow_tests::fake_alphavantage::{FakeAlphaVantage, Labels};
use tapeflow_tests::fake_ig::{values, FakeIg, FakeIgOptions};
use tapeflow_tests::*;

const AV_KEY: &str = "FAKEAVKEY0123456";
const EPIC: &str = "CS.D.EURUSD.CFD.IP";
const STATUS: &str = "SELECT string_agg(provider || '/' || connection || ' ' || state || ' ' || coalesce(last_error, ''), '; ')
                      FROM tapeflow.feed_status";

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

fn ig_tick(fake: &FakeIg, at_ms: i64, bid: &str, ofr: &str) {
    fake.tick(
        EPIC,
        &values(&[("BID", bid), ("OFR", ofr), ("LTP", "#"), ("LTV", "#"), ("UTM", &at_ms.to_string())]),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_providers_at_once_with_their_health_and_independent_outages() {
    let db = TestDb::create("feedall", false).await;
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size, provider) VALUES ('AAPL', 0.01, 'alpaca');
         INSERT INTO tapeflow.symbols (symbol, tick_size, provider, provider_ref) VALUES ('MSFT', 0.01, 'alphavantage', 'MSFT');
         INSERT INTO tapeflow.symbols (symbol, tick_size, provider, provider_ref, asset_class, timezone, session_open, session_close)
         VALUES ('EURUSD', 0.00001, 'ig', 'CS.D.EURUSD.CFD.IP', 'fx', 'Europe/London', '00:00', '00:00');",
    )
    .await
    .unwrap();
    let alpaca = FakeAlpacaData::start(FakeDataOptions::default()).await;
    let av = FakeAlphaVantage::start(AV_KEY, &["MSFT"], Labels::Start).await;
    let ig = FakeIg::start(FakeIgOptions::default()).await;
    let metrics_port = free_port();
    let mut env = ig.env();
    env.extend([
        ("DATABASE_URL", db.url.clone()),
        ("APCA_API_KEY_ID", alpaca.key_id.clone()),
        ("APCA_API_SECRET_KEY", alpaca.secret_key.clone()),
        ("TAPEFLOW_ALPACA_DATA_WS_URL", alpaca.ws_url.clone()),
        ("TAPEFLOW_ALPACA_DATA_URL", alpaca.rest_url.clone()),
        ("TAPEFLOW_ALPACA_RECONNECT_MIN_MS", "100".into()),
        ("TAPEFLOW_ALPACA_RECONNECT_MAX_MS", "500".into()),
        ("TAPEFLOW_ALPACA_GAP_DELAY_MS", "100".into()),
        ("ALPHAVANTAGE_API_KEY", AV_KEY.into()),
        ("TAPEFLOW_ALPHAVANTAGE_URL", av.base_url.clone()),
        ("TAPEFLOW_ALPHAVANTAGE_POLL_SECS", "1".into()),
        ("TAPEFLOW_ALPHAVANTAGE_RPM", "600".into()),
        ("TAPEFLOW_IG_THROTTLE_MS", "100".into()),
        ("TAPEFLOW_FEED_RELOAD_SECS", "1".into()),
        ("TAPEFLOW_FEED_STATUS_MS", "200".into()),
        ("TAPEFLOW_FEED_RESTART_SECS", "1".into()),
        ("TAPEFLOW_FEED_METRICS_ADDR", format!("127.0.0.1:{metrics_port}")),
    ]);
    let mut feed = Proc::spawn("tapeflow-feed", &["run"], &env);

    // Each provider connects and reports.
    wait_until(
        &c,
        "SELECT count(DISTINCT provider) = 3 FROM tapeflow.feed_status
         WHERE connection = 'stream' AND state = 'connected' AND provider IN ('alpaca', 'ig')
            OR provider = 'alphavantage' AND last_message_at IS NOT NULL",
        Duration::from_secs(30),
        Some(STATUS),
    )
    .await;

    // Data from all three.
    alpaca.script("AAPL", 25, 190.0);
    let t0 = Utc::now().timestamp_millis() - 2_000;
    for i in 0..5 {
        ig_tick(&ig, t0 + i * 100, &format!("1.0851{i}"), &format!("1.0852{i}"));
    }
    wait_until(
        &c,
        "SELECT count(*) = 25 FROM tapeflow.ticks WHERE symbol = 'AAPL'",
        Duration::from_secs(20),
        Some(STATUS),
    )
    .await;
    wait_until(
        &c,
        "SELECT count(*) = 5 FROM tapeflow.ticks WHERE symbol = 'EURUSD'",
        Duration::from_secs(20),
        Some(STATUS),
    )
    .await;
    wait_until(
        &c,
        "SELECT count(*) > 0 FROM tapeflow.bars_1m_imported WHERE symbol = 'MSFT'",
        Duration::from_secs(20),
        Some(STATUS),
    )
    .await;
    // Each symbol's data went only where its provider put it.
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.ticks WHERE symbol = 'MSFT'").await, 0);
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.bars_1m_imported WHERE symbol <> 'MSFT'").await, 0);

    // The feeder's /metrics counts every provider's messages and the rows it wrote (counted
    // once the whole batch is written, so read until it settles).
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let ticks_written = |m: &str| -> Option<f64> {
        m.lines()
            .find(|l| l.starts_with("tapeflow_feed_rows_written_total") && l.contains("kind=\"tick\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    let started = std::time::Instant::now();
    let metrics = loop {
        let m = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
        if ticks_written(&m) == Some(30.0) || started.elapsed() > Duration::from_secs(10) {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ticks_written(&metrics), Some(30.0), "25 Alpaca and 5 IG ticks written:\n{metrics}");
    for p in ["alpaca", "ig", "alphavantage"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("tapeflow_feed_messages_total")
                    && l.contains(&format!("provider=\"{p}\""))),
            "no message count for {p} in\n{metrics}"
        );
    }

    // The dashboard's feed page reads the same health.
    let (_web, base, http) = start_web(&db).await;
    let feeds: serde_json::Value =
        http.get(format!("{base}/api/feeds")).send().await.unwrap().json().await.unwrap();
    let rows = feeds["feeds"].as_array().unwrap();
    for p in ["alpaca", "ig", "alphavantage"] {
        let mine: Vec<_> = rows.iter().filter(|r| r["provider"] == p).collect();
        assert!(!mine.is_empty(), "{p} missing: {feeds}");
        assert!(mine.iter().all(|r| r["stale"] == false), "{mine:?}");
        assert!(mine.iter().map(|r| r["messages"].as_i64().unwrap()).sum::<i64>() > 0, "{mine:?}");
    }

    // Alpaca goes away: it reconnects on its own, and IG keeps feeding meanwhile.
    alpaca.refuse_connections(true);
    alpaca.drop_streams();
    wait_until(
        &c,
        "SELECT state <> 'connected' FROM tapeflow.feed_status WHERE provider = 'alpaca' AND connection = 'stream'",
        Duration::from_secs(10),
        Some(STATUS),
    )
    .await;
    let t1 = Utc::now().timestamp_millis() - 1_000;
    for i in 0..3 {
        ig_tick(&ig, t1 + i * 100, "1.08600", "1.08610");
    }
    wait_until(
        &c,
        "SELECT count(*) = 8 FROM tapeflow.ticks WHERE symbol = 'EURUSD'",
        Duration::from_secs(20),
        Some(STATUS),
    )
    .await;
    alpaca.refuse_connections(false);
    wait_until(
        &c,
        "SELECT state = 'connected' AND reconnects > 0 FROM tapeflow.feed_status WHERE provider = 'alpaca' AND connection = 'stream'",
        Duration::from_secs(20),
        Some(STATUS),
    )
    .await;
    assert_eq!(
        count(&c, "SELECT count(*) FROM tapeflow.ticks WHERE symbol = 'AAPL'").await,
        25,
        "no trade twice"
    );
    assert!(feed.terminate(Duration::from_secs(15)), "the feeder did not stop on SIGTERM");
    // A graceful stop is recorded.
    assert_eq!(
        count(&c, "SELECT count(*) FROM tapeflow.feed_status WHERE state <> 'stopped'").await,
        0,
        "every connection shows as stopped"
    );
}
