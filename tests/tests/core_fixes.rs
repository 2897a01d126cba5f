//! Fixes of the core (bars, sessions, classification, ingest, rollups, the watchlist) against
//! the project cluster: each test shows a defect's behaviour fixed.

use std::time::Duration;
use tapeflow_tests::*;
use tokio_postgres::Client;

async fn connect(db: &TestDb) -> Client {
    db.client().await
}

/// The SQLSTATE of an error, if it came from the server.
fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().map(|d| d.code().code().to_string())
}

/// Two writers insert trades of overlapping symbols into the same minutes, one walking the
/// symbols up and the other down, with different row counts per statement: every rollup row
/// both touch is locked by both, so without one locking order they deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_do_not_deadlock_on_the_rollup() {
    let db = TestDb::create("deadlock", false).await;
    let c = connect(&db).await;
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size) SELECT 'D' || lpad(i::text, 2, '0'), 0.01 FROM generate_series(1, 40) i",
    )
    .await
    .unwrap();
    let sql = "INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
               SELECT timestamptz '2024-01-02 15:00+00' + m * interval '1 minute' + r * interval '1 ms',
                      'D' || lpad(s::text, 2, '0'), 100 + m * 0.01, 1, 'B', $1 || '-' || s || '-' || m || '-' || r
               FROM generate_series($2::int, $3::int, $4::int) WITH ORDINALITY g(s, o), generate_series(0, 4) m,
                    generate_series(1, $5::int) r
               ORDER BY o, m, r";
    let iterations = 150;
    let mut tasks = Vec::new();
    for writer in 0..2 {
        let c = connect(&db).await;
        tasks.push(tokio::spawn(async move {
            let (mut deadlocks, mut other) = (0, Vec::new());
            for n in 0..iterations {
                let id = format!("w{writer}-{n}");
                let (from, to, step) = if writer == 0 { (1, 30, 1) } else { (40, 11, -1) };
                let rows = 1 + (n + writer) % 3;
                match c.execute(sql, &[&id, &from, &to, &step, &rows]).await {
                    Ok(_) => {}
                    Err(e) if sqlstate(&e).as_deref() == Some("40P01") => deadlocks += 1,
                    Err(e) => other.push(e.to_string()),
                }
            }
            (deadlocks, other)
        }));
    }
    let mut deadlocks = 0;
    for t in tasks {
        let (d, other) = t.await.unwrap();
        assert!(other.is_empty(), "{other:?}");
        deadlocks += d;
    }
    assert_eq!(deadlocks, 0, "deadlocks between the two writers");
    // Every trade is in the rollup exactly once.
    let (ticks, rolled): (f64, f64) = {
        let r = c
            .query_one(
                "SELECT (SELECT sum(size) FROM tapeflow.ticks), (SELECT sum(tapeflow.volume(candle)) FROM tapeflow.bars_1m)",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(ticks, rolled);
    // Corrections recompute the minutes they touch (locked in the same order).
    c.batch_execute(
        "UPDATE tapeflow.ticks SET size = 3 WHERE trade_id LIKE 'w0-1-%';
         DELETE FROM tapeflow.ticks WHERE trade_id LIKE 'w1-2-%';",
    )
    .await
    .unwrap();
    let same: bool = c
        .query_one(
            "SELECT (SELECT sum(size) FROM tapeflow.ticks) = (SELECT sum(tapeflow.volume(candle)) FROM tapeflow.bars_1m)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(same);
}

/// Rows of a query as text, one per row (for comparing whole rows).
async fn texts(c: &Client, sql: &str) -> Vec<String> {
    c.query(sql, &[]).await.unwrap().iter().map(|r| r.get::<_, String>(0)).collect()
}

async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(c: &Client, sql: &str) -> T {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// Daily bars are trading sessions: a Euro FX future trading 17:00–16:00 New York has one
/// daily bar per session, starting at its 17:00 open and labelled with its own session, in
/// candles, order flow, footprints, developing profiles, market state and the watchlist; a US
/// stock's daily bar starts at its 09:30 open.
#[tokio::test]
async fn daily_bars_are_trading_sessions() {
    let db = TestDb::create("daily", false).await;
    let c = connect(&db).await;
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, asset_class, tick_size, timezone, session_open, session_close)
         VALUES ('6E', 'future', 0.00005, 'America/New_York', '17:00', '16:00'),
                ('XYZ', 'us_equity', 0.01, 'America/New_York', '09:30', '16:00');
         -- 6E: Monday's session opens 2024-01-08 17:00 EST (22:00Z) and runs to Tuesday's open.
         INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id) VALUES
             ('2024-01-08 23:00+00', '6E', 1.0950, 10, 'B', 'a'),   -- Mon 18:00: session 2024-01-08
             ('2024-01-08 23:30+00', '6E', 1.0955, 3, 'B', 'a2'),
             ('2024-01-09 15:00+00', '6E', 1.0960, 20, 'S', 'b'),   -- Tue 10:00: still session 2024-01-08
             ('2024-01-09 22:30+00', '6E', 1.0970, 5, 'B', 'c'),    -- Tue 17:30: session 2024-01-09
             ('2024-01-10 14:00+00', '6E', 1.0980, 7, 'B', 'd'),    -- Wed 09:00: session 2024-01-09
             ('2024-01-09 13:00+00', 'XYZ', 50.00, 100, 'B', 'x1'), -- 08:00 before the open: session 2024-01-08
             ('2024-01-09 15:00+00', 'XYZ', 51.00, 200, 'S', 'x2'); -- 10:00: session 2024-01-09",
    )
    .await
    .unwrap();
    let candles = texts(
        &c,
        "SELECT format('%s %s %s %s', to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), open, close, volume)
         FROM tapeflow.candles('6E', '1d', '2024-01-08 00:00+00', '2024-01-11 00:00+00')",
    )
    .await;
    assert_eq!(candles, ["2024-01-08 22:00 1.095 1.096 33", "2024-01-09 22:00 1.097 1.098 12"]);
    let stock = texts(
        &c,
        "SELECT format('%s %s', to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), volume)
         FROM tapeflow.candles('XYZ', '1d', '2024-01-08 00:00+00', '2024-01-11 00:00+00')",
    )
    .await;
    assert_eq!(stock, ["2024-01-08 14:30 100", "2024-01-09 14:30 200"]);

    // Each daily bar is labelled with its own session; the CVD restarts with each.
    let flow = texts(
        &c,
        "SELECT format('%s %s %s %s', to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), session, delta, cvd)
         FROM tapeflow.order_flow('6E', '1d', '2024-01-08 00:00+00', '2024-01-11 00:00+00')",
    )
    .await;
    assert_eq!(flow, ["2024-01-08 22:00 2024-01-08 -7 -7", "2024-01-09 22:00 2024-01-09 12 12"]);
    // A range starting mid-session starts with that session's bar.
    let flow = texts(
        &c,
        "SELECT format('%s %s', session, volume) FROM tapeflow.order_flow('6E', '1d', '2024-01-09 12:00+00', '2024-01-11 00:00+00')",
    )
    .await;
    assert_eq!(flow, ["2024-01-08 33", "2024-01-09 12"]);

    let footprint = texts(
        &c,
        "SELECT format('%s %s', to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), sum(volume))
         FROM tapeflow.footprint('6E', '1d', '2024-01-08 00:00+00', '2024-01-11 00:00+00') GROUP BY time ORDER BY time",
    )
    .await;
    assert_eq!(footprint, ["2024-01-08 22:00 33", "2024-01-09 22:00 12"]);
    let imbalance_bars = texts(
        &c,
        "SELECT DISTINCT to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')
         FROM tapeflow.footprint_imbalances('6E', '1d', '2024-01-08 00:00+00', '2024-01-11 00:00+00', min_rows => 1)
         ORDER BY 1",
    )
    .await;
    assert_eq!(imbalance_bars, ["2024-01-08 22:00", "2024-01-09 22:00"]);
    let developing = texts(
        &c,
        "SELECT format('%s %s', to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), volume)
         FROM tapeflow.developing_profile('6E', '2024-01-08', '1d')",
    )
    .await;
    assert_eq!(developing, ["2024-01-08 22:00 33"]);
    let state = texts(
        &c,
        "SELECT format('%s %s %s', to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), delta, cvd)
         FROM tapeflow.market_state_history('6E', '2024-01-08 22:00+00', '2024-01-11 00:00+00', '{}', '1d')",
    )
    .await;
    assert_eq!(state, ["2024-01-08 22:00 -7 -7", "2024-01-09 22:00 12 12"]);

    // The watchlist's trading day is the session: its volume, and the change against the
    // previous session's last price.
    let watch = texts(
        &c,
        "SELECT format('%s %s %s', symbol, volume, change_pct) FROM tapeflow.watchlist ORDER BY symbol",
    )
    .await;
    let change = ((1.098f64 / 1.096 - 1.0) * 100.0 * 100.0).round() / 100.0;
    assert_eq!(watch, [format!("6E 12 {change}"), "XYZ 200 2".to_string()]);
}

const ROLLING: &str = r#"{"state": {"profile_scope": "rolling", "rolling_bars": 60}}"#;

/// The rolling profile spans session boundaries: the first bars of a session take their value
/// area from the previous session's last bars too, and live evaluation (from the session
/// open, with the bars before it loaded for the window) equals a run through both sessions.
#[tokio::test]
async fn rolling_profile_rolls_across_sessions_live_equals_history() {
    let db = TestDb::create("rolling", false).await;
    let c = connect(&db).await;
    // 90 one-minute bars around 100 late in the 2024-03-05 session, then 30 around 110 from
    // the 2024-03-06 open (14:30Z).
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('ROLL', 0.01);
         INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
         SELECT timestamptz '2024-03-05 19:00+00' + i * interval '1 minute' + k * interval '10 seconds', 'ROLL',
                100 + (i % 5) * 0.01 + k * 0.01, 10, CASE WHEN (i + k) % 2 = 0 THEN 'B' ELSE 'S' END, 'a' || i || '-' || k
         FROM generate_series(0, 89) i, generate_series(0, 2) k;
         INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
         SELECT timestamptz '2024-03-06 14:30+00' + i * interval '1 minute' + k * interval '10 seconds', 'ROLL',
                110 + (i % 5) * 0.01 + k * 0.01, 10, CASE WHEN (i + k) % 2 = 0 THEN 'B' ELSE 'S' END, 'b' || i || '-' || k
         FROM generate_series(0, 29) i, generate_series(0, 2) k;",
    )
    .await
    .unwrap();
    let cols = "format('%s %s %s %s %s %s %s %s', to_char(time AT TIME ZONE 'UTC', 'HH24:MI'), state, confidence, poc, vah, val, cvd, aggression)";
    let session_only = texts(
        &c,
        &format!(
            "SELECT {cols} FROM tapeflow.market_state_history('ROLL', '2024-03-06 14:30+00', '2024-03-06 15:00+00', '{ROLLING}') ORDER BY time"
        ),
    )
    .await;
    assert_eq!(session_only.len(), 30);
    // The first bar's 60-bar window holds 59 bars at 100 and one at 110.
    let (poc, val): (f64, f64) = {
        let r = c
            .query_one(
                &format!(
                    "SELECT poc, val FROM tapeflow.market_state_history('ROLL', '2024-03-06 14:30+00', '2024-03-06 14:31+00', '{ROLLING}')"
                ),
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(
        poc < 101.0 && val < 101.0,
        "the rolling value area left out the previous session: poc {poc}, val {val}"
    );

    // The same bars read by a run through both sessions.
    let through = texts(
        &c,
        &format!(
            "SELECT {cols} FROM tapeflow.market_state_history('ROLL', '2024-03-05 19:00+00', '2024-03-06 15:00+00', '{ROLLING}')
             WHERE time >= '2024-03-06 14:30+00' ORDER BY time"
        ),
    )
    .await;
    assert_eq!(through, session_only);

    // Live: the scheduler's first cycle evaluates the session so far, and logs the same.
    c.execute(
        "INSERT INTO tapeflow.strategy_configs (symbol, params) VALUES ('ROLL', $1::text::jsonb)",
        &[&ROLLING],
    )
    .await
    .unwrap();
    let bars: i32 =
        one(&c, "SELECT bars FROM tapeflow.run_cycle('2024-03-06 15:00:05+00') WHERE symbol = 'ROLL'").await;
    assert_eq!(bars, 30);
    let live = texts(
        &c,
        &format!("SELECT {} FROM tapeflow.market_state_log ORDER BY bar", cols.replace("(time", "(bar")),
    )
    .await;
    assert_eq!(live, session_only);
    // The bars before the session were read for the window only, not logged.
    let before: i64 =
        one(&c, "SELECT count(*) FROM tapeflow.market_state_log WHERE bar < '2024-03-06 14:30+00'").await;
    assert_eq!(before, 0);
    // market_state() at the session's first minute reads its first bar, not an earlier one.
    let first: String = one(
        &c,
        &format!(
            "SELECT to_char(time AT TIME ZONE 'UTC', 'HH24:MI') FROM tapeflow.market_state('ROLL', '2024-03-06 14:31+00', '{ROLLING}')"
        ),
    )
    .await;
    assert_eq!(first, "14:30");
    let none: i64 = one(
        &c,
        &format!("SELECT count(*) FROM tapeflow.market_state('ROLL', '2024-03-06 14:30+00', '{ROLLING}')"),
    )
    .await;
    assert_eq!(none, 0, "no bar of the session has closed yet");
}

/// NaN (and infinite) arguments of the classification functions are errors naming them.
#[tokio::test]
async fn classification_refuses_nan_naming_the_argument() {
    let db = TestDb::create("classnan", false).await;
    let c = connect(&db).await;
    let cases = [
        ("SELECT tapeflow.classify_trade('lee_ready', 'NaN', 100, 100.02, 'B')", "price"),
        ("SELECT tapeflow.classify_trade('quote', 'Infinity', 100, 100.02, 'B')", "price"),
        ("SELECT tapeflow.classify_trade('emo', -1, 100, 100.02, 'B')", "price"),
        ("SELECT tapeflow.classify_trade('lee_ready', 100.01, 'NaN', 100.02, 'B')", "bid"),
        ("SELECT tapeflow.classify_trade('clnv', 100.01, 100, 'NaN', 'B')", "ask"),
        ("SELECT tapeflow.classify_trade('tick', 'NaN', NULL, NULL, 'B')", "price"),
        (
            "SELECT * FROM tapeflow.bvc_split(volume => 100, price_change => 'NaN', sigma => 0.04)",
            "price_change",
        ),
        ("SELECT * FROM tapeflow.bvc_split(volume => 100, price_change => 0.05, sigma => 'NaN')", "sigma"),
        ("SELECT * FROM tapeflow.bvc_split(volume => 'NaN', price_change => 0.05, sigma => 0.04)", "volume"),
        (
            "SELECT * FROM tapeflow.bvc_split(volume => 100, price_change => 'Infinity', sigma => 0.04)",
            "price_change",
        ),
    ];
    for (sql, arg) in cases {
        let e = c.query(sql, &[]).await.err().unwrap_or_else(|| panic!("accepted: {sql}"));
        let msg = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
        assert!(msg.contains(&format!("{arg} must be")), "{sql}: {msg}");
    }
    // Good input is classified as before; a missing quote falls back to the tick side.
    let side: String =
        one(&c, "SELECT tapeflow.classify_trade('emo', 100.02, 100.00, 100.02, 'S')::text").await;
    assert_eq!(side, "B");
    let side: String =
        one(&c, "SELECT tapeflow.classify_trade('lee_ready', 100.01, NULL, NULL, 'S')::text").await;
    assert_eq!(side, "S");
    let total: f64 =
        one(&c, "SELECT buy_volume + sell_volume FROM tapeflow.bvc_split(10000, 0.05, 0.04)").await;
    assert_eq!(total, 10000.0);
    let even: f64 = one(&c, "SELECT buy_volume FROM tapeflow.bvc_split(10000, 0.05, 0)").await;
    assert_eq!(even, 5000.0);
}

fn quote(at_ms: i64, bid: f64, ask: f64, exchange: Option<&str>) -> tapeflow_db::copy::QuoteRow {
    let base =
        chrono::DateTime::parse_from_rfc3339("2024-01-02T15:00:00Z").unwrap().with_timezone(&chrono::Utc);
    tapeflow_db::copy::QuoteRow {
        time: base + chrono::Duration::milliseconds(at_ms),
        symbol: "Q".into(),
        bid,
        ask,
        bid_size: 300.0,
        ask_size: 200.0,
        exchange: exchange.map(str::to_string),
    }
}

/// A replayed batch of quotes (a feed retrying after a lost connection, or restarting)
/// stores nothing twice; distinct quotes of one instant are all kept.
#[tokio::test]
async fn replayed_quotes_are_stored_once() {
    let db = TestDb::create("quotes", false).await;
    let mut c = connect(&db).await;
    c.batch_execute("INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('Q', 0.01)").await.unwrap();
    let batch = vec![
        quote(0, 10.00, 10.01, Some("DEMO")),
        // The same instant and venue, another book: a different quote.
        quote(0, 10.00, 10.02, Some("DEMO")),
        quote(0, 10.00, 10.01, Some("ARCA")),
        quote(1, 10.01, 10.02, None),
        // Twice in one batch: one quote.
        quote(2, 10.02, 10.03, None),
        quote(2, 10.02, 10.03, None),
    ];
    let first = tapeflow_db::copy::write_quotes(&mut c, &batch).await.unwrap();
    assert_eq!(first, 5);
    let again = tapeflow_db::copy::write_quotes(&mut c, &batch).await.unwrap();
    assert_eq!(again, 0, "a replayed batch is a no-op");
    // A batch overlapping the stored one adds only what is new.
    let overlap = tapeflow_db::copy::write_quotes(&mut c, &[batch[3].clone(), quote(3, 10.03, 10.04, None)])
        .await
        .unwrap();
    assert_eq!(overlap, 1);
    let stored: i64 = one(&c, "SELECT count(*) FROM tapeflow.quotes").await;
    assert_eq!(stored, 6);
}

/// A database migrated before quotes had a key, holding duplicates: the migration keeps one
/// of each and adds the key.
#[tokio::test]
async fn migration_removes_stored_duplicate_quotes() {
    // Migrations 001–009 only, from a copy of the migration script and those files.
    let dir = std::env::temp_dir().join(format!("tapeflow-pre010-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    std::fs::create_dir_all(dir.join("sql")).unwrap();
    std::fs::copy(repo_root().join("scripts/migrate.sh"), dir.join("scripts/migrate.sh")).unwrap();
    for f in std::fs::read_dir(repo_root().join("sql")).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".sql") && name.as_str() < "010" {
            std::fs::copy(&f, dir.join("sql").join(&name)).unwrap();
        }
    }
    let name = format!("t_predup_{}", std::process::id());
    let admin = tapeflow_db::connect(&cluster_url("postgres"), Duration::from_secs(10)).await.unwrap();
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let db = TestDb { name: name.clone(), url: cluster_url(&name) };
    let migrate = |root: std::path::PathBuf, url: String| {
        let status = std::process::Command::new("bash")
            .arg(root.join("scripts/migrate.sh"))
            .arg(url)
            .env("TAPEFLOW_TIMESCALEDB", "off")
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    };
    migrate(dir.clone(), db.url.clone());
    let _ = std::fs::remove_dir_all(&dir);
    let c = connect(&db).await;
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('Q', 0.01);
         INSERT INTO tapeflow.quotes (time, symbol, bid, ask, bid_size, ask_size, exchange) VALUES
             ('2024-01-02 15:00+00', 'Q', 10.00, 10.01, 300, 200, 'DEMO'),
             ('2024-01-02 15:00+00', 'Q', 10.00, 10.01, 300, 200, 'DEMO'),
             ('2024-01-02 15:00+00', 'Q', 10.00, 10.01, 300, 200, 'DEMO'),
             ('2024-01-02 15:00+00', 'Q', 10.00, 10.02, 300, 200, 'DEMO'),
             ('2024-01-02 15:00:01+00', 'Q', 10.00, 10.01, 300, 200, NULL),
             ('2024-01-02 15:00:01+00', 'Q', 10.00, 10.01, 300, 200, NULL);",
    )
    .await
    .unwrap();
    migrate(repo_root(), db.url.clone());
    let stored: i64 = one(&c, "SELECT count(*) FROM tapeflow.quotes").await;
    assert_eq!(stored, 3);
    let dup = c
        .execute(
            "INSERT INTO tapeflow.quotes (time, symbol, bid, ask, bid_size, ask_size, exchange)
             VALUES ('2024-01-02 15:00:01+00', 'Q', 10.00, 10.01, 300, 200, NULL)",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&dup).as_deref(), Some("23505"), "{dup}");
}

/// The tick size of a symbol cannot change while another transaction writes its first ticks:
/// the change waits for the writer and is then refused; a writer that comes second waits for
/// the change and bins its ticks on the new grid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tick_size_cannot_change_under_uncommitted_ticks() {
    let db = TestDb::create("ticksize", false).await;
    let setup = connect(&db).await;
    setup
        .batch_execute("INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('TS1', 0.01), ('TS2', 0.01), ('TS3', 0.01)")
        .await
        .unwrap();
    let message =
        |e: tokio_postgres::Error| e.as_db_error().map(|d| d.message().to_string()).unwrap_or(e.to_string());

    // The writer first: its ticks are not committed when the change arrives.
    let writer = connect(&db).await;
    writer
        .batch_execute(
            "BEGIN; INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
                    VALUES ('2024-01-02 15:00:10+00', 'TS1', 100.02, 1, 'B', '1');",
        )
        .await
        .unwrap();
    let admin = connect(&db).await;
    let change = tokio::spawn(async move {
        admin
            .execute("UPDATE tapeflow.symbols SET tick_size = 0.05 WHERE symbol = 'TS1'", &[])
            .await
            .map_err(message)
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!change.is_finished(), "the tick size changed under uncommitted ticks: {:?}", change.await);
    writer.batch_execute("COMMIT").await.unwrap();
    let refused = change.await.unwrap().unwrap_err();
    assert!(refused.contains("tick_size cannot change"), "{refused}");
    let size: f64 = one(&setup, "SELECT tick_size FROM tapeflow.symbols WHERE symbol = 'TS1'").await;
    assert_eq!(size, 0.01);

    // The change first: the writer waits for it and bins on the new grid.
    let admin = connect(&db).await;
    admin
        .batch_execute("BEGIN; UPDATE tapeflow.symbols SET tick_size = 0.05 WHERE symbol = 'TS2';")
        .await
        .unwrap();
    let writer = connect(&db).await;
    let write = tokio::spawn(async move {
        writer
            .batch_execute(
                "INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
                 VALUES ('2024-01-02 15:00:10+00', 'TS2', 100.02, 1, 'B', '1')",
            )
            .await
            .map_err(message)
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!write.is_finished(), "ticks were binned while their tick size was changing: {:?}", write.await);
    admin.batch_execute("COMMIT").await.unwrap();
    write.await.unwrap().unwrap();
    // More trades of the same minute merge with the stored one: one grid.
    setup
        .batch_execute(
            "INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
             VALUES ('2024-01-02 15:00:20+00', 'TS2', 100.04, 2, 'S', '2')",
        )
        .await
        .unwrap();
    let levels = texts(
        &setup,
        "SELECT format('%s %s', l.price, l.total) FROM tapeflow.bars_1m b, tapeflow.levels(b.profile) l
         WHERE b.symbol = 'TS2' ORDER BY l.price",
    )
    .await;
    assert_eq!(levels, ["100 1", "100.05 2"]);

    // At REPEATABLE READ the change could not see ticks committed while it waited: refused.
    let admin = connect(&db).await;
    let e = admin
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; UPDATE tapeflow.symbols SET tick_size = 0.05 WHERE symbol = 'TS3';",
        )
        .await
        .unwrap_err();
    assert!(message(e).contains("READ COMMITTED"));
}

/// The watchlist reads each symbol's newest market state by an index probe, however long the
/// log; the developing profile reads each bar's profile once.
#[tokio::test]
async fn watchlist_probes_and_developing_profile_decodes_once() {
    let db = TestDb::create("watch", false).await;
    let c = connect(&db).await;
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('W1', 0.01), ('W2', 0.01);
         INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
         SELECT timestamptz '2024-01-02 14:30+00' + i * interval '1 minute', s, 100 + (i % 7) * 0.01, 10, 'B', i::text
         FROM generate_series(0, 119) i, (VALUES ('W1'), ('W2')) v(s);
         INSERT INTO tapeflow.market_state_log (symbol, strategy, bar, state, confidence, aggression, direction,
                                                buy_pressure, sell_pressure, delta, cvd)
         SELECT s, 'amt', timestamptz '2023-01-01 00:00+00' + i * interval '1 minute', 'balance', 0, i % 100, 'neutral', 50, 50, 0, 0
         FROM generate_series(1, 20000) i, (VALUES ('W1'), ('W2')) v(s);
         ANALYZE tapeflow.market_state_log;",
    )
    .await
    .unwrap();
    let aggression: Vec<f64> = c
        .query("SELECT aggression FROM tapeflow.watchlist ORDER BY symbol", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(aggression, [0.0, 0.0], "the newest state (bar 20000)");
    let plan: serde_json::Value =
        one(&c, "EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM tapeflow.watchlist").await;
    let mut scans = Vec::new();
    fn walk(node: &serde_json::Value, out: &mut Vec<(String, f64)>) {
        if node["Relation Name"] == "market_state_log" {
            out.push((
                node["Node Type"].as_str().unwrap_or_default().to_string(),
                node["Actual Rows"].as_f64().unwrap(),
            ));
        }
        for child in node["Plans"].as_array().into_iter().flatten() {
            walk(child, out);
        }
    }
    walk(&plan[0]["Plan"], &mut scans);
    assert!(!scans.is_empty(), "{plan}");
    assert!(
        scans.iter().all(|(_, rows)| *rows <= 1.0),
        "the state log is read beyond its newest row: {scans:?}"
    );

    // Calls of functions reading a profile, per developing-profile row: one.
    c.batch_execute("BEGIN; SET LOCAL track_functions = 'all'").await.unwrap();
    let rows: i64 =
        one(&c, "SELECT count(*) FROM tapeflow.developing_profile('W1', '2024-01-02', '5m')").await;
    assert_eq!(rows, 24);
    let calls: i64 = one(
        &c,
        "SELECT coalesce(sum(f.calls), 0)::bigint FROM pg_stat_xact_user_functions f JOIN pg_proc p ON p.oid = f.funcid
         WHERE p.pronargs > 0 AND p.proargtypes[0] = 'tapeflow.profile'::regtype",
    )
    .await;
    c.batch_execute("COMMIT").await.unwrap();
    assert_eq!(calls, rows, "profile reads per row: {}", calls as f64 / rows as f64);
    // The same figures as the separate accessors.
    let same: bool = one(
        &c,
        "SELECT bool_and(d.poc = tapeflow.poc(p.p) AND d.vah = tapeflow.vah(p.p) AND d.val = tapeflow.val(p.p)
                         AND d.volume = tapeflow.total_volume(p.p))
         FROM tapeflow.developing_profile('W1', '2024-01-02', '5m') d,
              LATERAL (SELECT tapeflow.rollup(profile) AS p FROM tapeflow.bars_1m
                       WHERE symbol = 'W1' AND bucket >= '2024-01-02 14:30+00' AND bucket < d.time + interval '5 minutes') p",
    )
    .await;
    assert!(same);
}

/// Two feeds writing the same trades at once (a replay racing the original), in opposite
/// orders within equal timestamps: the staged rows go in in one key order, so one writer
/// waits for the other on each trade instead of deadlocking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replays_of_a_tick_batch_do_not_deadlock() {
    let db = TestDb::create("replay", false).await;
    let c = connect(&db).await;
    c.batch_execute("INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('R1', 0.01), ('R2', 0.01)")
        .await
        .unwrap();
    let base =
        chrono::DateTime::parse_from_rfc3339("2024-01-02T15:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let rounds = 300;
    let batch = move |round: usize| -> Vec<tapeflow_db::copy::TickRow> {
        (0..200)
            .map(|i| tapeflow_db::copy::TickRow {
                // Four instants per round: many trades share a timestamp.
                time: base + chrono::Duration::seconds((round * 4 + i % 4) as i64),
                symbol: if i % 2 == 0 { "R1" } else { "R2" }.into(),
                price: 100.0 + (i % 10) as f64 * 0.01,
                size: 1.0,
                side: b'B',
                side_source: "venue",
                trade_id: format!("{round}-{i}"),
                exchange: None,
                conditions: None,
            })
            .collect()
    };
    let mut tasks = Vec::new();
    for writer in 0..2 {
        let mut c = connect(&db).await;
        tasks.push(tokio::spawn(async move {
            let mut deadlocks = 0;
            for round in 0..rounds {
                let mut rows = batch(round);
                if writer == 1 {
                    rows.reverse();
                }
                if let Err(e) = tapeflow_db::copy::write_ticks(&mut c, &rows).await {
                    let state = e.downcast_ref::<tokio_postgres::Error>().and_then(sqlstate);
                    assert_eq!(state.as_deref(), Some("40P01"), "{e:#}");
                    deadlocks += 1;
                }
            }
            deadlocks
        }));
    }
    let mut deadlocks = 0;
    for t in tasks {
        deadlocks += t.await.unwrap();
    }
    assert_eq!(deadlocks, 0, "deadlocks between two writers of the same trades");
    let stored: i64 = one(&c, "SELECT count(*) FROM tapeflow.ticks").await;
    assert_eq!(stored, 200 * rounds as i64);
    let rolled: f64 = one(&c, "SELECT sum(tapeflow.volume(candle)) FROM tapeflow.bars_1m").await;
    assert_eq!(rolled, 200.0 * rounds as f64);
}
