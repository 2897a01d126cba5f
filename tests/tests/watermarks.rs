//! Feed watermarks and the scheduler: a closed bar whose symbol has a fresh watermark behind
//! its end waits for it, and is evaluated once, on all of its trades, when the watermark
//! passes it; a stale watermark (its feeder gone) or none leaves the wall-clock rule
//! (`bar_grace`) alone.

use tapeflow_tests::*;

/// Three symbols with the same tape, 10:00:00 to 10:02:59, one trade a second.
const SETUP: &str = "
    INSERT INTO tapeflow.symbols (symbol, tick_size, timezone, session_open, session_close)
    SELECT s, 0.01, 'UTC', '00:00', '00:00' FROM unnest(ARRAY['HELD', 'STALE', 'NONE']) s;
    INSERT INTO tapeflow.strategy_configs (symbol, params)
    SELECT s, '{\"warmup_bars\": 1, \"atr_period\": 1}' FROM unnest(ARRAY['HELD', 'STALE', 'NONE']) s;
    INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
    SELECT timestamptz '2024-05-06 10:00+00' + i * interval '1 second', s, 50 + (i % 7) * 0.01, 10 + i % 3,
           CASE WHEN i % 3 = 0 THEN 'S' ELSE 'B' END, i::text
    FROM generate_series(0, 179) i, unnest(ARRAY['HELD', 'STALE', 'NONE']) s;";

/// Bars evaluated per symbol by one cycle at `at`.
async fn cycle(c: &tokio_postgres::Client, at: &str) -> Vec<(String, i32)> {
    c.query(
        "SELECT symbol, bars FROM tapeflow.run_cycle($1::text::timestamptz) WHERE error IS NULL ORDER BY symbol",
        &[&at],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn bars(counts: &[(&str, i32)]) -> Vec<(String, i32)> {
    counts.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

async fn mark(c: &tokio_postgres::Client, symbol: &str, complete_until: &str, updated_at: &str) {
    c.execute(
        "INSERT INTO tapeflow.feed_watermarks (symbol, complete_until, updated_at)
         VALUES ($1, $2::text::timestamptz, $3::text::timestamptz)
         ON CONFLICT (symbol) DO UPDATE SET complete_until = EXCLUDED.complete_until, updated_at = EXCLUDED.updated_at",
        &[&symbol, &complete_until, &updated_at],
    )
    .await
    .unwrap();
}

/// The logged bars of a symbol, as minutes past 10:00.
async fn logged(c: &tokio_postgres::Client, symbol: &str) -> Vec<i32> {
    c.query(
        "SELECT (extract(epoch FROM bar - '2024-05-06 10:00+00') / 60)::int FROM tapeflow.market_state_log
         WHERE symbol = $1 ORDER BY bar",
        &[&symbol],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn bars_wait_for_a_fresh_watermark_and_only_for_it() {
    let db = TestDb::create("watermark", false).await;
    let c = db.client().await;
    c.batch_execute(SETUP).await.unwrap();
    // HELD's feed is alive and has stored everything before 10:01:30; STALE's last said so
    // 35 s before the cycle (its feeder is gone); NONE's feed declares nothing.
    mark(&c, "HELD", "2024-05-06 10:01:30+00", "2024-05-06 10:03:00+00").await;
    mark(&c, "STALE", "2024-05-06 10:00:30+00", "2024-05-06 10:02:30+00").await;

    // By the wall clock the three bars are closed (10:03:05 - bar_grace is past 10:03).
    assert_eq!(
        cycle(&c, "2024-05-06 10:03:05+00").await,
        bars(&[("HELD", 1), ("NONE", 3), ("STALE", 3)]),
        "HELD waits for its watermark; STALE and NONE close by the wall clock"
    );
    assert_eq!(logged(&c, "HELD").await, [0]);

    // HELD's feed catches up: a trade of 10:01 stored late, then the watermark passes 10:02.
    c.batch_execute(
        "INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
         VALUES ('2024-05-06 10:01:45.5+00', 'HELD', 50.30, 5000, 'S', 'late')",
    )
    .await
    .unwrap();
    // Not before the watermark says so: still at 10:01:30, refreshed.
    mark(&c, "HELD", "2024-05-06 10:01:30+00", "2024-05-06 10:03:07+00").await;
    assert_eq!(cycle(&c, "2024-05-06 10:03:07+00").await, bars(&[("HELD", 0), ("NONE", 0), ("STALE", 0)]));
    mark(&c, "HELD", "2024-05-06 10:02:10+00", "2024-05-06 10:03:08+00").await;
    assert_eq!(cycle(&c, "2024-05-06 10:03:08+00").await, bars(&[("HELD", 1), ("NONE", 0), ("STALE", 0)]));
    // Exactly at the end of 10:02: every trade before it is stored, so 10:02 is closed too.
    mark(&c, "HELD", "2024-05-06 10:03:00+00", "2024-05-06 10:03:10+00").await;
    assert_eq!(cycle(&c, "2024-05-06 10:03:10+00").await, bars(&[("HELD", 1), ("NONE", 0), ("STALE", 0)]));
    // A watermark ahead of the wall clock closes nothing early: 10:03 is not over.
    mark(&c, "HELD", "2024-05-06 10:05:00+00", "2024-05-06 10:03:11+00").await;
    assert_eq!(cycle(&c, "2024-05-06 10:03:11+00").await, bars(&[("HELD", 0), ("NONE", 0), ("STALE", 0)]));
    assert_eq!(logged(&c, "HELD").await, [0, 1, 2]);

    // Each held bar was evaluated on all of its trades: the log equals the history of the
    // stored bars, the late trade's bar included (its delta holds the 5000 sold).
    let diff: Vec<String> = c
        .query(
            "WITH h AS (SELECT * FROM tapeflow.market_state_history('HELD', '2024-05-06 10:00+00', '2024-05-06 10:03+00',
                          (SELECT params FROM tapeflow.strategy_configs WHERE symbol = 'HELD'))),
                  l AS (SELECT * FROM tapeflow.market_state_log WHERE symbol = 'HELD')
             SELECT format('bar %s/%s: history %s %s %s %s, live %s %s %s %s', h.time, l.bar, h.state, h.aggression,
                           h.delta, h.signal, l.state, l.aggression, l.delta, l.signal)
             FROM h FULL JOIN l ON l.bar = h.time
             WHERE h.state IS DISTINCT FROM l.state OR h.confidence IS DISTINCT FROM l.confidence
                OR h.aggression IS DISTINCT FROM l.aggression OR h.atr IS DISTINCT FROM l.atr
                OR h.delta IS DISTINCT FROM l.delta OR h.signal IS DISTINCT FROM l.signal",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(diff.is_empty(), "live evaluations and history disagree: {diff:#?}");
    let late_delta: f64 = c
        .query_one(
            "SELECT delta FROM tapeflow.market_state_log WHERE symbol = 'HELD' AND bar = '2024-05-06 10:01+00'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let untouched_delta: f64 = c
        .query_one(
            "SELECT delta FROM tapeflow.market_state_log WHERE symbol = 'NONE' AND bar = '2024-05-06 10:01+00'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(late_delta, untouched_delta - 5000.0, "the late trade is in its bar's evaluation");
}

#[tokio::test]
async fn bar_max_wait_decides_when_a_watermark_is_stale() {
    let db = TestDb::create("watermark_wait", false).await;
    let c = db.client().await;
    c.batch_execute(SETUP).await.unwrap();
    c.batch_execute("UPDATE tapeflow.strategy_configs SET enabled = symbol = 'HELD'").await.unwrap();
    c.batch_execute("UPDATE tapeflow.risk_limits SET bar_max_wait = '10 seconds'").await.unwrap();
    mark(&c, "HELD", "2024-05-06 10:00:30+00", "2024-05-06 10:02:55+00").await;
    // Updated 10 s before: still fresh, 10:00 waits.
    assert_eq!(cycle(&c, "2024-05-06 10:03:05+00").await, bars(&[("HELD", 0)]));
    // 11 s: stale, the feeder is taken for gone and the wall clock closes all three.
    assert_eq!(cycle(&c, "2024-05-06 10:03:06+00").await, bars(&[("HELD", 3)]));
    assert_eq!(cycle(&c, "2024-05-06 10:03:07+00").await, bars(&[("HELD", 0)]), "each bar once");

    for bad in ["'-1 second'", "'2 hours'"] {
        let e = c
            .batch_execute(&format!("UPDATE tapeflow.risk_limits SET bar_max_wait = {bad}"))
            .await
            .expect_err("out of range");
        let msg = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
        assert!(msg.contains("bar_max_wait") || msg.contains("check constraint"), "{bad}: {msg}");
    }
    // A symbol that is deleted takes its watermark with it.
    c.batch_execute("INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('GONE', 0.01)").await.unwrap();
    mark(&c, "GONE", "2024-05-06 10:00:30+00", "2024-05-06 10:02:55+00").await;
    c.batch_execute("DELETE FROM tapeflow.symbols WHERE symbol = 'GONE'").await.unwrap();
    let left: Vec<String> = c
        .query("SELECT symbol FROM tapeflow.feed_watermarks", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, ["HELD"]);
}
