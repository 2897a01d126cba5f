//! Backtests from SQL and from the web API, over a demo session stored through the real
//! ingest path.

use std::time::Duration;
use tapeflow_tests::*;

async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(c: &tokio_postgres::Client, sql: &str) -> T {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| {
            panic!("{sql}: {}", e.as_db_error().map_or_else(|| e.to_string(), |d| d.to_string()))
        })
        .get(0)
}

/// A run's status and one more column of `tapeflow.backtest_runs`.
async fn status_and<T: for<'a> tokio_postgres::types::FromSql<'a>>(
    c: &tokio_postgres::Client,
    id: i64,
    column: &str,
) -> (String, T) {
    let sql = format!("SELECT status, {column} FROM tapeflow.backtest_runs WHERE id = {id}");
    let r = c.query_one(&sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    (r.get(0), r.get(1))
}

const RANGE: &str =
    "(SELECT min(time) FROM tapeflow.ticks), (SELECT max(time) FROM tapeflow.ticks) + interval '1 minute'";

#[tokio::test]
async fn backtest_runs_persist_trades_equity_and_statistics() {
    let db = TestDb::create("bt", false).await;
    let c = demo_session(&db, "AAPL,NVDA").await;
    let params = r#"{"engine": {"strategy": {"min_aggression_score": 50}}, "commission_per_share": 0.005, "slippage_bps": 1}"#;

    // The set-returning form and the persisted form give the same trades.
    let direct: i64 = one(
        &c,
        &format!("SELECT count(*) FROM tapeflow.backtest(ARRAY['AAPL','NVDA'], {RANGE}, '{params}')"),
    )
    .await;
    let id: i64 =
        one(&c, &format!("SELECT tapeflow.backtest_run(ARRAY['AAPL','NVDA'], {RANGE}, '{params}')")).await;
    let status: String = one(&c, &format!("SELECT status FROM tapeflow.backtest_runs WHERE id = {id}")).await;
    assert_eq!(status, "completed");
    let stored: i64 =
        one(&c, &format!("SELECT count(*) FROM tapeflow.backtest_trades WHERE run_id = {id}")).await;
    assert_eq!(direct, stored);
    assert!(stored > 0, "the demo session should trade with a 50 aggression threshold");

    // Every trade's P&L is exactly (exit - entry) x qty for longs, the reverse for shorts, minus fees.
    let wrong: i64 = one(
        &c,
        &format!(
            "SELECT count(*) FROM tapeflow.backtest_trades WHERE run_id = {id} AND pnl <>
               CASE side WHEN 'long' THEN (exit_price - entry_price) ELSE (entry_price - exit_price) END * quantity - fees"
        ),
    )
    .await;
    assert_eq!(wrong, 0);
    let order: i64 = one(
        &c,
        &format!("SELECT count(*) FROM tapeflow.backtest_trades WHERE run_id = {id} AND (exit_time < entry_time OR fees <= 0)"),
    )
    .await;
    assert_eq!(order, 0);
    // No look-ahead: an entry fills at the open of a bar after the one that signalled.
    let same_bar: i64 = one(
        &c,
        &format!(
            "SELECT count(*) FROM tapeflow.backtest_trades t JOIN tapeflow.bars_1m b
               ON b.symbol = t.symbol AND b.bucket = tapeflow.minute(t.entry_time)
             WHERE t.run_id = {id} AND t.entry_price NOT BETWEEN tapeflow.low(b.candle) * 0.99 AND tapeflow.high(b.candle) * 1.01"
        ),
    )
    .await;
    assert_eq!(same_bar, 0);
    // The equity curve has one point per bar time and ends at initial cash + total P&L.
    let points: i64 =
        one(&c, &format!("SELECT count(*) FROM tapeflow.backtest_equity WHERE run_id = {id}")).await;
    let times: i64 = one(&c, "SELECT count(DISTINCT bucket) FROM tapeflow.bars_1m").await;
    assert_eq!(points, times);
    let balanced: bool = one(
        &c,
        &format!(
            "SELECT (SELECT equity FROM tapeflow.backtest_equity WHERE run_id = {id} ORDER BY time DESC LIMIT 1)
                  = 100000 + (SELECT sum(pnl) FROM tapeflow.backtest_trades WHERE run_id = {id})"
        ),
    )
    .await;
    assert!(balanced);
    let stats: i64 = one(
        &c,
        &format!("SELECT count(*) FROM tapeflow.backtest_stats({id}) WHERE statistic IN ('Sharpe Ratio', 'Max. Drawdown [%]', 'SQN', '# Trades')"),
    )
    .await;
    assert_eq!(stats, 4);
    let n_trades: f64 =
        one(&c, &format!("SELECT number FROM tapeflow.backtest_stats({id}) WHERE statistic = '# Trades'"))
            .await;
    assert_eq!(n_trades as i64, stored);

    // Live == backtest: each entry was signalled by the same engine on the bar before its fill.
    let unsignalled: i64 = one(
        &c,
        &format!(
            "SELECT count(*) FROM tapeflow.backtest_trades t
             WHERE t.run_id = {id} AND NOT EXISTS (
                 SELECT 1 FROM tapeflow.market_state_history(t.symbol, (SELECT min(time) FROM tapeflow.ticks), t.entry_time,
                                                            '{{\"strategy\": {{\"min_aggression_score\": 50}}}}') h
                 WHERE h.time < t.entry_time AND h.signal LIKE 'entry%' AND h.time >= t.entry_time - interval '2 minutes')"
        ),
    )
    .await;
    assert_eq!(unsignalled, 0);

    // A grid runs every combination over the same bars.
    let combos: Vec<tokio_postgres::Row> = c
        .query(
            &format!(
                "SELECT combination, params, trades FROM tapeflow.backtest_grid(ARRAY['AAPL','NVDA'], {RANGE},
                   '{{\"engine.strategy.min_aggression_score\": [50, 90], \"slippage_bps\": [0, 5]}}')"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(combos.len(), 4);
    let strict: Vec<i64> = combos
        .iter()
        .filter(|r| r.get::<_, serde_json::Value>(1)["engine"]["strategy"]["min_aggression_score"] == 90)
        .map(|r| r.get(2))
        .collect();
    let loose: Vec<i64> = combos
        .iter()
        .filter(|r| r.get::<_, serde_json::Value>(1)["engine"]["strategy"]["min_aggression_score"] == 50)
        .map(|r| r.get(2))
        .collect();
    assert!(strict.iter().sum::<i64>() <= loose.iter().sum::<i64>());
}

#[tokio::test]
async fn zero_trades_and_failures_are_recorded() {
    let db = TestDb::create("bt0", false).await;
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('FLAT', 0.01);
         INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
         SELECT timestamptz '2024-03-04 14:30+00' + i * interval '20 seconds', 'FLAT', 20, 100, 'N', i::text
         FROM generate_series(0, 1169) i;",
    )
    .await
    .unwrap();
    let id: i64 =
        one(&c, "SELECT tapeflow.backtest_run(ARRAY['FLAT'], '2024-03-04 14:30+00', '2024-03-04 21:00+00')")
            .await;
    let (status, trades): (String, i64) = {
        let r = c
            .query_one(
                &format!(
                    "SELECT status, (stats ->> 'trades')::bigint FROM tapeflow.backtest_runs WHERE id = {id}"
                ),
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((status.as_str(), trades), ("completed", 0));
    let ret: f64 =
        one(&c, &format!("SELECT number FROM tapeflow.backtest_stats({id}) WHERE statistic = 'Return [%]'"))
            .await;
    assert_eq!(ret, 0.0);
    let sharpe: Option<String> =
        one(&c, &format!("SELECT value FROM tapeflow.backtest_stats({id}) WHERE statistic = 'Win Rate [%]'"))
            .await;
    assert_eq!(sharpe, None, "undefined without trades");

    // Bad parameters are refused up front, naming the key.
    let e = c
        .query_one(
            "SELECT tapeflow.backtest_run(ARRAY['FLAT'], '2024-03-04', '2024-03-05', '{\"slipage_bps\": 1}')",
            &[],
        )
        .await
        .unwrap_err();
    assert!(e.as_db_error().unwrap().message().contains("slipage_bps"));
    let e = c
        .query_one("SELECT tapeflow.backtest_run(ARRAY['NOPE'], '2024-03-04', '2024-03-05')", &[])
        .await
        .unwrap_err();
    assert!(e.as_db_error().unwrap().message().contains("unknown symbol(s) NOPE"));
    // A run that fails while executing is kept, with its error.
    let id: i64 = one(&c, "SELECT tapeflow.backtest_create(ARRAY['FLAT'], '2024-03-04', '2024-03-05')").await;
    c.batch_execute(&format!(
        "UPDATE tapeflow.backtest_runs SET params = '{{\"initial_cash\": -5}}' WHERE id = {id}"
    ))
    .await
    .unwrap();
    one::<i64>(&c, &format!("SELECT tapeflow.backtest_execute({id})")).await;
    let (status, error): (String, Option<String>) = status_and(&c, id, "error").await;
    assert_eq!(status, "failed");
    assert!(error.unwrap_or_default().contains("initial_cash"));
}

/// An engine on rows of several ticks (`ticks_per_row` > 1) reads the stored one-tick bar
/// profiles re-binned to its grid: backtests, persisted runs and grids over tick-built bars run.
#[tokio::test]
async fn backtests_on_coarser_profile_rows_rebin_the_stored_bar_profiles() {
    let db = TestDb::create("bttpr", false).await;
    let c = demo_session(&db, "AAPL").await;
    let minutes: i64 = one(&c, "SELECT count(*) FROM tapeflow.bars_1m WHERE profile IS NOT NULL").await;
    assert!(minutes > 100, "{minutes}");
    let params = r#"{"engine": {"ticks_per_row": 5, "strategy": {"min_aggression_score": 50}}}"#;
    let direct: i64 =
        one(&c, &format!("SELECT count(*) FROM tapeflow.backtest(ARRAY['AAPL'], {RANGE}, '{params}')")).await;
    let id: i64 = one(&c, &format!("SELECT tapeflow.backtest_run(ARRAY['AAPL'], {RANGE}, '{params}')")).await;
    let (status, error): (String, Option<String>) = status_and(&c, id, "error").await;
    assert_eq!((status.as_str(), error), ("completed", None));
    let (_, bars): (String, i64) = status_and(&c, id, "bars").await;
    assert_eq!(bars, minutes);
    let stored: i64 =
        one(&c, &format!("SELECT count(*) FROM tapeflow.backtest_trades WHERE run_id = {id}")).await;
    assert_eq!(stored, direct);
    // A grid may vary the grid itself: each combination reads the bars on its own rows.
    let rows = c
        .query(
            &format!(
                "SELECT params, trades FROM tapeflow.backtest_grid(ARRAY['AAPL'], {RANGE},
                   '{{\"engine.ticks_per_row\": [1, 5, 20]}}', '{{\"engine\": {{\"strategy\": {{\"min_aggression_score\": 50}}}}}}')"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let five =
        rows.iter().find(|r| r.get::<_, serde_json::Value>(0)["engine"]["ticks_per_row"] == 5).unwrap();
    assert_eq!(five.get::<_, i64>(1), direct);
}

/// The database error of a statement that must fail.
async fn error_of(c: &tokio_postgres::Client, sql: &str) -> String {
    match c.batch_execute(sql).await {
        Ok(()) => panic!("{sql}: succeeded"),
        Err(e) => e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string()),
    }
}

#[tokio::test]
async fn a_range_that_ends_before_it_starts_is_an_error_naming_both_ends() {
    let db = TestDb::create("btrange", false).await;
    let c = db.client().await;
    c.batch_execute(
        "SET TimeZone = 'UTC'; INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('FLAT', 0.01)",
    )
    .await
    .unwrap();
    let range = "ARRAY['FLAT'], '2024-03-05 00:00+00', '2024-03-04 12:00+00'";
    let grid = r#"'{"slippage_bps": [0, 1]}'"#;
    for (function, sql) in [
        ("backtest", format!("SELECT * FROM tapeflow.backtest({range})")),
        ("backtest_grid", format!("SELECT * FROM tapeflow.backtest_grid({range}, {grid})")),
        (
            "backtest_walk_forward",
            format!("SELECT * FROM tapeflow.backtest_walk_forward({range}, {grid}, '1 hour', '1 hour')"),
        ),
    ] {
        assert_eq!(
            error_of(&c, &sql).await,
            format!("{function}: from (2024-03-05 00:00:00+00) is after to (2024-03-04 12:00:00+00)")
        );
    }
    let e = error_of(&c, &format!("SELECT tapeflow.backtest_run({range})")).await;
    assert!(e.contains("2024-03-05 00:00:00+00") && e.contains("2024-03-04 12:00:00+00"), "{e}");
    let runs: i64 = one(&c, "SELECT count(*) FROM tapeflow.backtest_runs").await;
    assert_eq!(runs, 0);
    // An empty range (from = to) has no bars, hence no trades.
    let trades: i64 =
        one(&c, "SELECT count(*) FROM tapeflow.backtest(ARRAY['FLAT'], '2024-03-05', '2024-03-05')").await;
    assert_eq!(trades, 0);
}

/// Holds an exclusive lock on the imported bars (the first table a run reads) in an open
/// transaction, so that a run waits inside its bar loading until the lock is released.
async fn lock_bars(db: &TestDb) -> tokio_postgres::Client {
    let locker = db.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE tapeflow.bars_1m_imported IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    locker
}

/// Cancels (pg_cancel_backend) the backend running `backtest_execute` once it waits for a lock.
async fn cancel_waiting_run(db: &TestDb) {
    let watcher = db.client().await;
    let waiting = "SELECT pid FROM pg_stat_activity
                   WHERE query LIKE '%tapeflow.backtest_execute(%' AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()";
    wait_until(&watcher, &format!("SELECT EXISTS ({waiting})"), Duration::from_secs(30), None).await;
    let pid: i32 = one(&watcher, waiting).await;
    let cancelled: bool = watcher.query_one("SELECT pg_cancel_backend($1)", &[&pid]).await.unwrap().get(0);
    assert!(cancelled);
}

/// A run that a PostgreSQL error or a cancel ends is recorded as failed or cancelled with the
/// error: the run executes in a subtransaction and its status is written after it, so it
/// stays; backtest_execute returns the run id. Such a run can be executed again.
#[tokio::test]
async fn runs_ended_by_a_database_error_or_a_cancel_are_recorded() {
    let db = TestDb::create("btcancel", false).await;
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('FLAT', 0.01);
         INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
         SELECT timestamptz '2024-03-04 14:30+00' + i * interval '20 seconds', 'FLAT', 20, 100, 'N', i::text
         FROM generate_series(0, 1169) i;",
    )
    .await
    .unwrap();
    let id: i64 = one(
        &c,
        "SELECT tapeflow.backtest_create(ARRAY['FLAT'], '2024-03-04 14:30+00', '2024-03-04 21:00+00')",
    )
    .await;

    // A lock timeout while loading the bars (a PostgreSQL error): failed, with its message.
    let locker = lock_bars(&db).await;
    c.batch_execute("SET lock_timeout = '200ms'").await.unwrap();
    let returned: i64 = one(&c, &format!("SELECT tapeflow.backtest_execute({id})")).await;
    assert_eq!(returned, id);
    let (status, error): (String, Option<String>) = status_and(&c, id, "error").await;
    assert_eq!(status, "failed");
    assert!(error.as_deref().unwrap_or_default().contains("lock timeout"), "{error:?}");
    c.batch_execute("RESET lock_timeout").await.unwrap();

    // Cancelled while it waits (pg_cancel_backend, as Ctrl-C): cancelled, with the reason.
    let runner = db.client().await;
    let run = tokio::spawn(async move {
        runner
            .query_one(&format!("SELECT tapeflow.backtest_execute({id})"), &[])
            .await
            .map(|r| r.get::<_, i64>(0))
    });
    cancel_waiting_run(&db).await;
    let returned = run.await.unwrap().map_err(|e| e.as_db_error().map(|d| d.message().to_string()));
    assert_eq!(returned, Ok(id));
    let (status, error): (String, Option<String>) = status_and(&c, id, "error").await;
    assert_eq!(status, "cancelled");
    assert_eq!(error.as_deref(), Some("canceling statement due to user request"));
    let finished: bool = one(
        &c,
        &format!(
            "SELECT finished_at IS NOT NULL AND progress < 1 FROM tapeflow.backtest_runs WHERE id = {id}"
        ),
    )
    .await;
    assert!(finished);
    // A statement timeout is a cancel too.
    c.batch_execute("SET statement_timeout = '300ms'").await.unwrap();
    one::<i64>(&c, &format!("SELECT tapeflow.backtest_execute({id})")).await;
    c.batch_execute("RESET statement_timeout").await.unwrap();
    let (status, error): (String, Option<String>) = status_and(&c, id, "error").await;
    assert_eq!(
        (status.as_str(), error.as_deref()),
        ("cancelled", Some("canceling statement due to statement timeout"))
    );
    locker.batch_execute("ROLLBACK").await.unwrap();

    // Nothing of the ended runs was kept; executed again, the run completes.
    let kept: i64 = one(
        &c,
        &format!(
            "SELECT (SELECT count(*) FROM tapeflow.backtest_equity WHERE run_id = {id})
                  + (SELECT count(*) FROM tapeflow.backtest_daily WHERE run_id = {id})"
        ),
    )
    .await;
    assert_eq!(kept, 0);
    one::<i64>(&c, &format!("SELECT tapeflow.backtest_execute({id})")).await;
    let (status, error): (String, Option<String>) = status_and(&c, id, "error").await;
    assert_eq!((status.as_str(), error), ("completed", None));
    // A completed run is not executed again.
    let e = error_of(&c, &format!("SELECT tapeflow.backtest_execute({id})")).await;
    assert!(e.contains("is not pending, failed or cancelled"), "{e}");
}

#[tokio::test]
async fn backtest_from_the_web_api_streams_progress() {
    let db = TestDb::create("btweb", false).await;
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size, timezone, session_open, session_close) VALUES ('WEB', 0.01, 'UTC', '00:00', '00:00');
         INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
         SELECT timestamptz '2024-03-04 00:00+00' + i * interval '30 seconds', 'WEB', 50 + 5 * sin(i / 300.0), 100,
                CASE WHEN i % 3 = 0 THEN 'S' ELSE 'B' END, i::text
         FROM generate_series(0, 5759) i;",
    )
    .await
    .unwrap();
    let (_web, base, http) = start_web(&db).await;
    let mut sse = SseReader::connect_with(&http, &format!("{base}/events")).await;
    let bad = http
        .post(format!("{base}/api/backtests"))
        .json(&serde_json::json!({"symbols": ["WEB"], "from": "2024-03-04T00:00:00Z", "to": "2024-03-06T00:00:00Z", "params": {"nope": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let resp: serde_json::Value = http
        .post(format!("{base}/api/backtests"))
        .json(&serde_json::json!({"symbols": ["WEB"], "from": "2024-03-04T00:00:00Z", "to": "2024-03-06T00:00:00Z"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = resp["id"].as_i64().expect("run id");
    let done = sse
        .wait_for("backtest", Duration::from_secs(60), |v| v["id"] == id && v["status"] != "running")
        .await
        .expect("a final backtest event");
    assert_eq!(done["status"], "completed", "{done}");
    let detail: serde_json::Value =
        http.get(format!("{base}/api/backtests/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(detail["run"]["status"], "completed");
    assert!(detail["stats"]["Sharpe Ratio"].is_number() || detail["stats"]["Sharpe Ratio"].is_null());
    let equity: serde_json::Value =
        http.get(format!("{base}/api/backtests/{id}/equity")).send().await.unwrap().json().await.unwrap();
    assert_eq!(equity.as_array().unwrap().len(), 5760 / 2);
    let list: serde_json::Value =
        http.get(format!("{base}/api/backtests")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list[0]["id"], id);
}

/// A run started from the web API and cancelled in the database ends as cancelled (recorded
/// by the database), not as the failure the web app would otherwise write.
#[tokio::test]
async fn a_web_run_cancelled_in_the_database_stays_cancelled() {
    let db = TestDb::create("btwebcancel", false).await;
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size, timezone, session_open, session_close) VALUES ('WEB', 0.01, 'UTC', '00:00', '00:00');
         INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
         SELECT timestamptz '2024-03-04 00:00+00' + i * interval '30 seconds', 'WEB', 50, 100, 'B', i::text
         FROM generate_series(0, 599) i;",
    )
    .await
    .unwrap();
    let (_web, base, http) = start_web(&db).await;
    let mut sse = SseReader::connect_with(&http, &format!("{base}/events")).await;
    let locker = lock_bars(&db).await;
    let resp: serde_json::Value = http
        .post(format!("{base}/api/backtests"))
        .json(&serde_json::json!({"symbols": ["WEB"], "from": "2024-03-04T00:00:00Z", "to": "2024-03-05T00:00:00Z"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = resp["id"].as_i64().expect("run id");
    cancel_waiting_run(&db).await;
    let done = sse
        .wait_for("backtest", Duration::from_secs(30), |v| v["id"] == id && v["status"] != "running")
        .await
        .expect("a final backtest event");
    assert_eq!(done["status"], "cancelled", "{done}");
    locker.batch_execute("ROLLBACK").await.unwrap();
    // Whatever the web app does after the call, the run stays cancelled.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, error): (String, Option<String>) = status_and(&c, id, "error").await;
    assert_eq!(
        (status.as_str(), error.as_deref()),
        ("cancelled", Some("canceling statement due to user request"))
    );

    // A call that fails outside the run (here: the run was already claimed by another
    // session, as a trigger pretends) leaves the run's status to whoever holds it.
    c.batch_execute(
        "CREATE FUNCTION claimed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.status := 'running'; RETURN NEW; END $$;
         CREATE TRIGGER claimed BEFORE INSERT ON tapeflow.backtest_runs FOR EACH ROW EXECUTE FUNCTION claimed();",
    )
    .await
    .unwrap();
    let resp: serde_json::Value = http
        .post(format!("{base}/api/backtests"))
        .json(&serde_json::json!({"symbols": ["WEB"], "from": "2024-03-04T00:00:00Z", "to": "2024-03-05T00:00:00Z"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let other = resp["id"].as_i64().expect("run id");
    let failed = sse
        .wait_for("backtest", Duration::from_secs(3), |v| v["id"] == other && v["status"] != "running")
        .await;
    assert_eq!(failed, None, "no final event for a run the web app did not run");
    let (status, error): (String, Option<String>) = status_and(&c, other, "error").await;
    assert_eq!((status.as_str(), error), ("running", None));
}

/// Real one-minute bars (CME Euro FX futures, January 2024) imported without ticks: the engine
/// estimates the order flow from the bars, and the run completes with statistics.
#[tokio::test]
async fn backtest_on_imported_real_minute_bars() {
    let db = TestDb::create("bt6e", false).await;
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, asset_class, tick_size, timezone, session_open, session_close)
         VALUES ('6EH4', 'future', 0.00005, 'America/Chicago', '17:00', '16:00');
         CREATE TABLE raw_bars (ts timestamp, open float8, high float8, low float8, close float8, volume float8);",
    )
    .await
    .unwrap();
    let file = repo_root().join("../shared/data/b_bars/cme_6EH4_eurofx_futures_1min_2024-01.csv.gz");
    assert!(file.exists(), "shared data missing: {}", file.display());
    let status = std::process::Command::new("psql")
        .arg(&db.url)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!("\\copy raw_bars FROM PROGRAM 'zcat {}' CSV HEADER", file.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let imported = c
        .execute(
            "INSERT INTO tapeflow.bars_1m_imported (symbol, bucket, open, high, low, close, volume)
             SELECT '6EH4', ts AT TIME ZONE 'UTC', open, high, low, close, volume FROM raw_bars",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(imported, 29_996);
    let id: i64 = one(
        &c,
        "SELECT tapeflow.backtest_run(ARRAY['6EH4'], '2024-01-01', '2024-02-01',
                '{\"engine\": {\"strategy\": {\"min_aggression_score\": 40}}, \"initial_cash\": 1000000}')",
    )
    .await;
    let (status, bars): (String, i64) = status_and(&c, id, "bars").await;
    assert_eq!(status, "completed");
    assert_eq!(bars, 29_996);
    let bh: Option<f64> = one(
        &c,
        &format!(
            "SELECT number FROM tapeflow.backtest_stats({id}) WHERE statistic = 'Buy & Hold Return [%]'"
        ),
    )
    .await;
    // The contract went from 1.1078 (first close) to about 1.086 at the end of January.
    assert!(bh.unwrap() < 0.0, "buy & hold of 6EH4 in January 2024 lost: {bh:?}");
    let daily: i64 =
        one(&c, &format!("SELECT count(*) FROM tapeflow.backtest_daily WHERE run_id = {id}")).await;
    assert!(daily >= 20, "about 22 trading sessions, got {daily}");
    // The loader's calendar puts every bar in the session tapeflow.session_date names (a
    // session through midnight: 17:00-16:00 Chicago), so the run's days are exactly those.
    let mismatched: i64 = one(
        &c,
        &format!(
            "SELECT count(*) FROM (
                 (SELECT day FROM tapeflow.backtest_daily WHERE run_id = {id}
                  EXCEPT SELECT DISTINCT tapeflow.session_date(bucket, 'America/Chicago', '17:00') FROM tapeflow.bars_1m_imported)
                 UNION ALL
                 (SELECT DISTINCT tapeflow.session_date(bucket, 'America/Chicago', '17:00') FROM tapeflow.bars_1m_imported
                  EXCEPT SELECT day FROM tapeflow.backtest_daily WHERE run_id = {id})) x"
        ),
    )
    .await;
    assert_eq!(mismatched, 0);

    // Walk-forward: 10 days in sample, 5 out, stepping by 5 -> windows starting Jan 1, 6, 11, 16.
    let windows = c
        .query(
            "SELECT window_no, out_from, best_params, out_trades FROM tapeflow.backtest_walk_forward(ARRAY['6EH4'],
                 '2024-01-01', '2024-01-31', '{\"engine.strategy.min_aggression_score\": [40, 95]}',
                 in_sample => '10 days', out_of_sample => '5 days', metric_name => 'return_pct',
                 base => '{\"initial_cash\": 1000000}')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(windows.len(), 4);
    for (i, w) in windows.iter().enumerate() {
        assert_eq!(w.get::<_, i32>(0), i as i32 + 1);
        let best: serde_json::Value = w.get(2);
        assert!([40, 95].contains(&best["engine"]["strategy"]["min_aggression_score"].as_i64().unwrap()));
    }
}

#[tokio::test]
async fn bars_are_read_as_minute_bars_holds_them_on_any_thread_count() {
    let db = TestDb::create("btload", false).await;
    let c = demo_session(&db, "AAPL,NVDA").await;
    // Imported bars for the first three tick-built minutes (the view rolls such a minute up from
    // both) and for five minutes after the last one.
    c.batch_execute(
        "INSERT INTO tapeflow.bars_1m_imported (symbol, bucket, open, high, low, close, volume)
         SELECT 'AAPL', m, close, close + 0.05, close - 0.05, close, 1000
         FROM (SELECT min(bucket) AS first, max(bucket) AS last FROM tapeflow.bars_1m WHERE symbol = 'AAPL') r,
              LATERAL generate_series(r.first, r.last + interval '5 minutes', interval '1 minute') m,
              LATERAL (SELECT tapeflow.close(candle) AS close FROM tapeflow.bars_1m WHERE symbol = 'AAPL'
                       ORDER BY bucket DESC LIMIT 1) c
         WHERE m < r.first + interval '3 minutes' OR m > r.last",
    )
    .await
    .unwrap();
    let range = "(SELECT min(bucket) FROM tapeflow.minute_bars), (SELECT max(bucket) FROM tapeflow.minute_bars) + interval '1 minute'";
    // The engine reads one bar per minute of the view, merged where both tables have it: the
    // same minutes, and the same volume per minute (the engine's volume ratio is relative, so
    // compare the summed delta of tick-built minutes instead, where the flow is counted).
    let same_minutes: bool = one(
        &c,
        &format!(
            "SELECT (SELECT array_agg(time ORDER BY time) FROM tapeflow.market_state_history('AAPL', {range}))
                  = (SELECT array_agg(time ORDER BY time) FROM tapeflow.candles('AAPL', '1m', {range}))"
        ),
    )
    .await;
    assert!(same_minutes);
    let delta_diff: f64 = one(
        &c,
        &format!(
            "SELECT coalesce(sum(abs(h.delta - (c.buy_volume - c.sell_volume))), 0)
             FROM tapeflow.market_state_history('AAPL', {range}) h
             JOIN tapeflow.candles('AAPL', '1m', {range}) c USING (time)
             WHERE c.buy_volume + c.sell_volume > 0"
        ),
    )
    .await;
    assert!(delta_diff < 1e-6, "{delta_diff}");
    let merged: i64 = one(
        &c,
        &format!("SELECT count(*) FROM tapeflow.candles('AAPL', '1m', {range}) WHERE trades > 0 AND volume > 0
                  AND time < (SELECT min(bucket) FROM tapeflow.bars_1m WHERE symbol = 'AAPL') + interval '3 minutes'"),
    )
    .await;
    assert_eq!(merged, 3);

    // The number of threads that evaluate the symbols changes nothing.
    let params = r#"{"engine": {"strategy": {"min_aggression_score": 40}}}"#;
    let run = |threads: u32| {
        let c = &c;
        async move {
            c.batch_execute(&format!("SET tapeflow.backtest_threads = {threads}")).await.unwrap();
            one::<String>(
                c,
                &format!(
                    "SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t.exit_time, t.symbol, t.entry_time)), 'none')
                     FROM tapeflow.backtest(ARRAY['AAPL','NVDA'], {range}, '{params}') t"
                ),
            )
            .await
        }
    };
    let one_thread = run(1).await;
    assert_ne!(one_thread, "none", "the demo session should trade with a 40 aggression threshold");
    assert_eq!(run(3).await, one_thread);
}
