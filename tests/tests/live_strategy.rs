//! The live strategy inside PostgreSQL: configuration validation, the scheduler's bar closing,
//! idempotent cycles, NOTIFY payloads, and live ≡ history (the same engine evaluated through
//! run_cycle while ticks arrive, and over the stored session afterwards).

use std::time::Duration;
use tapeflow_db::ListenEvent;
use tapeflow_tests::*;

async fn db_error(client: &tokio_postgres::Client, sql: &str) -> String {
    let e = client.batch_execute(sql).await.expect_err("statement should fail");
    e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())
}

#[tokio::test]
async fn strategy_config_validation_names_the_key() {
    let db = TestDb::create("cfg", false).await;
    let c = db.client().await;
    c.batch_execute("INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('CFG', 0.01)").await.unwrap();
    let unknown = db_error(&c, r#"INSERT INTO tapeflow.strategy_configs (symbol, params) VALUES ('CFG', '{"strategy": {"min_agression_score": 60}}')"#).await;
    assert!(unknown.contains("min_agression_score"), "{unknown}");
    let range = db_error(&c, r#"INSERT INTO tapeflow.strategy_configs (symbol, params) VALUES ('CFG', '{"strategy": {"min_aggression_score": 150}}')"#).await;
    assert!(range.contains("min_aggression_score") && range.contains("150"), "{range}");
    let top = db_error(
        &c,
        r#"INSERT INTO tapeflow.strategy_configs (symbol, params) VALUES ('CFG', '{"atr_period": 0}')"#,
    )
    .await;
    assert!(top.contains("atr_period"), "{top}");
    c.batch_execute(r#"INSERT INTO tapeflow.strategy_configs (symbol, params) VALUES ('CFG', '{"strategy": {"min_aggression_score": 60}}')"#)
        .await
        .unwrap();
    let bad_update = db_error(&c, r#"UPDATE tapeflow.strategy_configs SET params = '{"nope": 1}'"#).await;
    assert!(bad_update.contains("nope"), "{bad_update}");
    let limits = db_error(&c, "UPDATE tapeflow.risk_limits SET bar_grace = '5 minutes'").await;
    assert!(limits.contains("bar_grace"), "{limits}");
}

#[tokio::test]
async fn scheduler_closes_quiet_bars_once() {
    let db = TestDb::create("quiet", false).await;
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size, timezone, session_open, session_close) VALUES ('QT', 0.01, 'UTC', '00:00', '00:00');
         INSERT INTO tapeflow.strategy_configs (symbol) VALUES ('QT');
         INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
         SELECT timestamptz '2024-05-06 10:00+00' + i * interval '1 second', 'QT', 50 + (i % 5) * 0.01, 10, 'B', i::text
         FROM generate_series(0, 179) i;",
    )
    .await
    .unwrap();
    let cycle = |at: &'static str| {
        let c = &c;
        async move {
            let row = c
                .query_one(
                    &format!("SELECT coalesce(sum(bars), 0)::int FROM tapeflow.run_cycle('{at}')"),
                    &[],
                )
                .await
                .unwrap();
            row.get::<_, i32>(0)
        }
    };
    // 10:02:30: minutes 10:00 and 10:01 are closed; 10:02 is still open.
    assert_eq!(cycle("2024-05-06 10:02:30+00").await, 2);
    // No tick after 10:02:59 — the bar still closes once 10:03 + grace has passed.
    assert_eq!(cycle("2024-05-06 10:03:01+00").await, 0, "inside the grace period");
    assert_eq!(cycle("2024-05-06 10:03:05+00").await, 1);
    // Repeating a cycle changes nothing.
    assert_eq!(cycle("2024-05-06 10:03:05+00").await, 0);
    assert_eq!(cycle("2024-05-06 10:10:00+00").await, 0);
    let n: i64 = c.query_one("SELECT count(*) FROM tapeflow.market_state_log", &[]).await.unwrap().get(0);
    assert_eq!(n, 3);
}

/// Replays one demo session minute by minute through the live path (ticks inserted, then a
/// scheduler cycle at each minute's close) while a LISTEN client watches, then evaluates the
/// same stored session in one call: the live log must equal the history bar for bar.
#[tokio::test]
async fn live_replay_equals_history_and_notifies() {
    let db = TestDb::create("replay", false).await;
    // One regular session of the demo market for AAPL.
    let c = demo_session(&db, "AAPL").await;

    // Move the session aside and replay it.
    c.batch_execute(
        "CREATE TABLE recorded AS SELECT * FROM tapeflow.ticks;
         DELETE FROM tapeflow.ticks;
         INSERT INTO tapeflow.strategy_configs (symbol, params) VALUES ('AAPL', '{\"strategy\": {\"min_aggression_score\": 50}}')
           ON CONFLICT (symbol, strategy) DO UPDATE SET params = EXCLUDED.params;
         UPDATE tapeflow.risk_limits SET signal_ttl = '3 minutes';",
    )
    .await
    .unwrap();
    let bars_left: i64 = c.query_one("SELECT count(*) FROM tapeflow.bars_1m", &[]).await.unwrap().get(0);
    assert_eq!(bars_left, 0, "deleting ticks removes their minutes");
    let mut events =
        tapeflow_db::listen(db.url.clone(), vec!["tapeflow_signals".into(), "tapeflow_state".into()]);
    assert!(matches!(events.recv().await, Some(ListenEvent::Connected)));

    let minutes: Vec<chrono::DateTime<chrono::Utc>> = c
        .query("SELECT DISTINCT tapeflow.minute(time) m FROM recorded ORDER BY m", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(minutes.len() > 300, "a session has ~390 minutes, got {}", minutes.len());
    for m in &minutes {
        c.execute(
            "INSERT INTO tapeflow.ticks SELECT * FROM recorded WHERE time >= $1 AND time < $1::timestamptz + interval '1 minute'",
            &[m],
        )
        .await
        .unwrap();
        c.execute("SELECT count(*) FROM tapeflow.run_cycle($1::timestamptz + interval '62 seconds')", &[m])
            .await
            .unwrap();
    }

    // Live log == one evaluation of the stored session, bar for bar.
    let diff: Vec<String> = c
        .query(
            "WITH h AS (SELECT * FROM tapeflow.market_state_history('AAPL', (SELECT tapeflow.minute(min(time)) FROM recorded),
                                   (SELECT max(time) FROM recorded) + interval '2 minutes',
                                   '{\"strategy\": {\"min_aggression_score\": 50}}'))
             SELECT format('bar %s/%s: history %s %s %s %s, live %s %s %s %s', h.time, l.bar, h.state, h.aggression,
                           h.atr, h.signal, l.state, l.aggression, l.atr, l.signal)
             FROM h FULL JOIN tapeflow.market_state_log l ON l.bar = h.time
             WHERE h.state IS DISTINCT FROM l.state OR h.confidence IS DISTINCT FROM l.confidence
                OR h.aggression IS DISTINCT FROM l.aggression OR h.atr IS DISTINCT FROM l.atr
                OR (h.signal IS NULL) <> (l.signal IS NULL)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(diff.is_empty(), "live and history disagree: {diff:#?}");
    let (logged, states, signalled): (i64, i64, i64) = {
        let r = c
            .query_one(
                "SELECT count(*), count(DISTINCT state), count(signal) FROM tapeflow.market_state_log",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(logged as usize, minutes.len());
    assert!(states >= 2, "the demo's regimes should show more than one state");
    assert!(signalled > 0, "the demo's imbalance regimes should produce signals");

    // Signals: each written one sits on a bar where the engine signalled; at most one open entry.
    let signals: Vec<(i64, String, String)> = c
        .query("SELECT id, kind, side FROM tapeflow.signals ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(!signals.is_empty());
    let orphan: i64 = c
        .query_one(
            "SELECT count(*) FROM tapeflow.signals s LEFT JOIN tapeflow.market_state_log l
               ON l.symbol = s.symbol AND l.bar = s.bar AND l.signal = s.kind || '_' || s.side
             WHERE l.bar IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orphan, 0);
    let open: i64 = c
        .query_one(
            "SELECT count(*) FROM tapeflow.signals WHERE status IN ('new', 'claimed', 'submitted')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(open <= 1);

    // NOTIFY payloads reached a real LISTEN client.
    let mut got_signals = Vec::new();
    let mut got_states = 0;
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(2), events.recv()).await {
        if let ListenEvent::Notification { channel, payload } = ev {
            let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
            assert_eq!(v["symbol"], "AAPL");
            if channel == "tapeflow_signals" {
                got_signals.push((
                    v["id"].as_i64().unwrap(),
                    v["kind"].as_str().unwrap().to_string(),
                    v["side"].as_str().unwrap().to_string(),
                ));
            } else {
                assert!(["balance", "imbalance_up", "imbalance_down"].contains(&v["state"].as_str().unwrap()));
                got_states += 1;
            }
        }
    }
    assert_eq!(got_signals, signals);
    assert!(got_states >= 2);

    // Running every cycle again changes nothing.
    for m in minutes.iter().step_by(50) {
        c.execute("SELECT count(*) FROM tapeflow.run_cycle($1::timestamptz + interval '62 seconds')", &[m])
            .await
            .unwrap();
    }
    let again: i64 = c.query_one("SELECT count(*) FROM tapeflow.signals", &[]).await.unwrap().get(0);
    assert_eq!(again as usize, signals.len());
}

/// A config whose evaluation fails does not stop the cycle: it is rolled back (none of its
/// bars is logged), its error is recorded on the config and returned by run_cycle, the other
/// configs are evaluated as usual, and once the cause is gone the next cycle evaluates it and
/// clears the error. Two ways to fail: bars the engine refuses (an error raised in Rust) and a
/// statement that fails half-way through a config's bars (an error raised by PostgreSQL).
#[tokio::test]
async fn a_failing_config_is_skipped_and_recorded() {
    let db = TestDb::create("cfgerr", false).await;
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size, timezone, session_open, session_close) VALUES
           ('OK', 0.01, 'UTC', '00:00', '00:00'), ('BAD', 1e-9, 'UTC', '00:00', '00:00'),
           ('TRG', 0.01, 'UTC', '00:00', '00:00');
         INSERT INTO tapeflow.strategy_configs (symbol) VALUES ('OK'), ('BAD'), ('TRG');
         INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
         SELECT timestamptz '2024-05-06 10:00+00' + i * interval '1 second', s, 50 + (i % 5) * 0.01, 10, 'B', i::text
         FROM generate_series(0, 179) i, (VALUES ('OK'), ('TRG')) v (s);
         -- A high more than 2^53 ticks of 1e-9 from zero: the engine cannot spread the bar's volume.
         INSERT INTO tapeflow.bars_1m_imported (symbol, bucket, open, high, low, close, volume) VALUES
           ('BAD', '2024-05-06 10:00+00', 100, 1e8, 100, 100, 1000),
           ('BAD', '2024-05-06 10:01+00', 100, 101, 99, 100, 1000);
         -- TRG's second minute cannot be logged: its first is written, then the statement fails.
         CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.symbol = 'TRG' AND NEW.bar = '2024-05-06 10:01+00' THEN
             RAISE EXCEPTION 'refused by the test';
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON tapeflow.market_state_log FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .await
    .unwrap();
    type Outcome = (String, i32, Option<String>);
    let cycle = |at: &'static str| {
        let c = &c;
        async move {
            c.query(
                &format!("SELECT symbol, bars, error FROM tapeflow.run_cycle('{at}') ORDER BY symbol"),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect::<Vec<Outcome>>()
        }
    };
    type Recorded = (String, Option<String>, bool, chrono::DateTime<chrono::Utc>);
    let recorded = || async {
        c.query(
            "SELECT symbol, last_error, last_error_at IS NOT NULL, updated_at FROM tapeflow.strategy_configs ORDER BY symbol",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect::<Vec<Recorded>>()
    };
    let logged = || async {
        c.query("SELECT symbol, count(*) FROM tapeflow.market_state_log GROUP BY 1 ORDER BY 1", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect::<Vec<(String, i64)>>()
    };
    let before = recorded().await;
    assert!(before.iter().all(|r| r.1.is_none() && !r.2));

    // 10:02:30: minutes 10:00 and 10:01 are closed.
    let out = cycle("2024-05-06 10:02:30+00").await;
    assert_eq!((out[1].0.as_str(), out[1].1, &out[1].2), ("OK", 2, &None), "{out:?}");
    let (bad, trg) = (&out[0], &out[2]);
    assert_eq!((bad.0.as_str(), bad.1, trg.0.as_str(), trg.1), ("BAD", 0, "TRG", 0), "{out:?}");
    let bad_error = bad.2.clone().expect("BAD failed");
    let trg_error = trg.2.clone().expect("TRG failed");
    assert!(bad_error.contains("2^53 ticks"), "{bad_error}");
    assert!(trg_error.contains("refused by the test"), "{trg_error}");
    // TRG's first minute, and whatever came with it, was rolled back with the rest.
    assert_eq!(logged().await, [("OK".to_string(), 2)]);
    let trg_alerts: i64 =
        c.query_one("SELECT count(*) FROM tapeflow.alerts WHERE symbol = 'TRG'", &[]).await.unwrap().get(0);
    assert_eq!(trg_alerts, 0);
    let after = recorded().await;
    assert_eq!(
        after.iter().map(|r| (r.0.as_str(), r.1.as_deref(), r.2)).collect::<Vec<_>>(),
        [
            ("BAD", Some(bad_error.as_str()), true),
            ("OK", None, false),
            ("TRG", Some(trg_error.as_str()), true)
        ]
    );
    // Recording an error is not a configuration change.
    assert_eq!(after.iter().map(|r| r.3).collect::<Vec<_>>(), before.iter().map(|r| r.3).collect::<Vec<_>>());

    // The next cycles go on: the healthy config advances, the failing ones fail again.
    let out = cycle("2024-05-06 10:03:05+00").await;
    assert_eq!(
        out,
        [
            ("BAD".to_string(), 0, Some(bad_error.clone())),
            ("OK".to_string(), 1, None),
            ("TRG".to_string(), 0, Some(trg_error.clone()))
        ]
    );
    // What the scheduler runs succeeds.
    c.execute("SELECT count(*) FROM tapeflow.run_cycle('2024-05-06 10:03:06+00')", &[]).await.unwrap();

    // The causes gone, both are evaluated and their errors cleared.
    c.batch_execute(
        "DROP TRIGGER refuse ON tapeflow.market_state_log;
         DELETE FROM tapeflow.bars_1m_imported WHERE symbol = 'BAD' AND high > 1000;",
    )
    .await
    .unwrap();
    let out = cycle("2024-05-06 10:03:07+00").await;
    assert_eq!(
        out,
        [("BAD".to_string(), 1, None), ("OK".to_string(), 0, None), ("TRG".to_string(), 3, None)]
    );
    assert!(recorded().await.iter().all(|r| r.1.is_none() && !r.2));
    assert_eq!(logged().await, [("BAD".to_string(), 1), ("OK".to_string(), 3), ("TRG".to_string(), 3)]);
}
