//! A cluster restart (its own test binary: it stops the server every other test uses).

use std::process::Command;
use std::time::Duration;
use tapeflow_tests::*;

#[tokio::test]
async fn no_duplicate_signals_or_bars_across_a_cluster_restart() {
    let db = TestDb::create("restart", false).await;
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size, timezone, session_open, session_close) VALUES ('RS', 0.01, 'UTC', '00:00', '00:00');
         INSERT INTO tapeflow.strategy_configs (symbol) VALUES ('RS');
         INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
         SELECT timestamptz '2024-05-06 10:00+00' + i * interval '1 second', 'RS', 50 + (i % 50) * 0.01, 10 + i % 7,
                CASE WHEN i % 3 = 0 THEN 'S' ELSE 'B' END, i::text
         FROM generate_series(0, 3599) i;",
    )
    .await
    .unwrap();
    let counts = |c: tokio_postgres::Client| async move {
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM tapeflow.market_state_log), (SELECT count(*) FROM tapeflow.signals),
                        (SELECT count(*) FROM tapeflow.bars_1m), (SELECT count(*) FROM tapeflow.ticks)",
                &[],
            )
            .await
            .unwrap();
        (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2), r.get::<_, i64>(3))
    };
    c.execute("SELECT count(*) FROM tapeflow.run_cycle('2024-05-06 11:00:05+00')", &[]).await.unwrap();
    let before = counts(c).await;
    assert_eq!(before.0, 60);

    let status =
        Command::new("bash").arg(repo_root().join("scripts/cluster.sh")).arg("restart").status().unwrap();
    assert!(status.success());

    let c = db.client().await;
    // The scheduler worker is back (it serves the project database).
    let mut workers = 0i64;
    for _ in 0..50 {
        workers = c
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'tapeflow scheduler'", &[])
            .await
            .unwrap()
            .get(0);
        if workers > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(workers, 1, "scheduler background worker not running after restart");
    // Replaying the same ticks and cycles after the restart adds nothing.
    c.batch_execute(
        "INSERT INTO tapeflow.ticks SELECT * FROM tapeflow.ticks ON CONFLICT DO NOTHING;
         SELECT count(*) FROM tapeflow.run_cycle('2024-05-06 11:00:05+00');
         SELECT count(*) FROM tapeflow.run_cycle('2024-05-06 11:00:30+00');",
    )
    .await
    .unwrap();
    let after = counts(db.client().await).await;
    assert_eq!(before, after);
}
