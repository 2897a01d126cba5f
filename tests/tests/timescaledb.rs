//! The TimescaleDB path (hypertables with compression, a continuous aggregate for the minutes)
//! gives the same answers as the plain-PostgreSQL path through the same functions and views,
//! and announces candles the same way. Runs only when the cluster has TimescaleDB installed and
//! preloaded; otherwise each test says it was skipped.

use chrono::{TimeZone, Utc};
use std::time::Duration;
use tapeflow_db::amend::{TickAmend, TickReplacement};
use tapeflow_db::copy::TickRow;
use tapeflow_db::ListenEvent;
use tapeflow_tests::*;
use tokio::sync::mpsc::Receiver;

const REFRESH: &str = "CALL refresh_continuous_aggregate('tapeflow.bars_1m', NULL, NULL)";

/// Both databases, or None (after saying so) when TimescaleDB is not there.
async fn databases(prefix: &str) -> Option<(TestDb, TestDb)> {
    if !timescaledb_available().await {
        println!("skipped: timescaledb is not installed (or not preloaded) in the cluster");
        return None;
    }
    let tsdb = TestDb::create(&format!("{prefix}_ts"), true).await;
    let plain = TestDb::create(&format!("{prefix}_pg"), false).await;
    Some((tsdb, plain))
}

/// Three calendars and tick sizes, two sessions of trades each: buys, sells and unclassified
/// trades.
const MARKET: &str = "
    INSERT INTO tapeflow.symbols (symbol, tick_size, asset_class, timezone, session_open, session_close) VALUES
        ('AAPL', 0.01, 'us_equity', 'America/New_York', '09:30', '16:00'),
        ('ESH4', 0.25, 'future', 'America/Chicago', '08:30', '15:15'),
        ('BTCUSD', 0.5, 'crypto', 'UTC', '00:00', '00:00');
    INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
    SELECT timestamptz '2024-03-04 14:30+00' + d * interval '1 day' + i * interval '47 seconds', s.symbol,
           s.base + (((i * 37) % 23) + 3 * d) * s.step, 1 + (i * 13) % 9,
           CASE WHEN i % 3 = 0 THEN 'S' WHEN i % 7 = 0 THEN 'N' ELSE 'B' END, format('%s-%s', d, i)
    FROM generate_series(0, 1) d, generate_series(0, 499) i,
         (VALUES ('AAPL', 171.0, 0.01), ('ESH4', 5120.0, 0.25), ('BTCUSD', 65000.0, 0.5)) s(symbol, base, step);";

/// Everything the two paths must agree on, one text line per row, by query. VWAP is rounded:
/// its notional is a float sum whose last bits depend on the order the trades were added in.
const VIEWS: &[(&str, &str)] = &[
    (
        "candles",
        "SELECT format('%s %s %s', s, tf, (c.time, c.open, c.high, c.low, c.close, c.volume, c.buy_volume,
                                            c.sell_volume, c.trades, round(c.vwap::numeric, 9)))
         FROM unnest(ARRAY['AAPL', 'ESH4', 'BTCUSD']) s, unnest(ARRAY['1m', '5m', '15m', '30m', '1h', '1d']) tf,
              tapeflow.candles(s, tf, '2024-03-01', '2024-03-08') c
         ORDER BY s, tf, c.time",
    ),
    (
        "session_profile",
        "SELECT format('%s %s poc %s vah %s val %s volume %s rows %s', s, day, tapeflow.poc(p),
                       tapeflow.vah(p, 0.7, 'dalton'), tapeflow.val(p, 0.7, 'dalton'), tapeflow.total_volume(p),
                       (SELECT count(*) FROM tapeflow.levels(p)))
         FROM unnest(ARRAY['AAPL', 'ESH4', 'BTCUSD']) s, unnest(ARRAY[date '2024-03-04', date '2024-03-05']) day,
              tapeflow.session_profile(s, day) p
         ORDER BY s, day",
    ),
    (
        "order_flow",
        "SELECT format('%s %s', s, o)
         FROM unnest(ARRAY['AAPL', 'ESH4', 'BTCUSD']) s, tapeflow.order_flow(s, '5m', '2024-03-04', '2024-03-07') o
         ORDER BY s, o.time",
    ),
    (
        "watchlist",
        "SELECT format('%s %s %s %s %s', symbol, last, change_pct, volume, updated)
         FROM tapeflow.watchlist ORDER BY symbol",
    ),
    ("minutes", "SELECT count(*)::text FROM tapeflow.bars_1m"),
];

async fn lines(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client.query(sql, &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
}

async fn assert_same_answers(tsdb: &tokio_postgres::Client, plain: &tokio_postgres::Client, when: &str) {
    for (name, sql) in VIEWS {
        let (a, b) = (lines(tsdb, sql).await, lines(plain, sql).await);
        assert!(!a.is_empty(), "{name} {when}: no rows");
        assert_eq!(a, b, "{name} {when}: TimescaleDB (left) and plain PostgreSQL (right) differ");
    }
}

#[tokio::test]
async fn timescaledb_path_answers_like_plain_path() {
    let Some((tsdb, plain)) = databases("tsq").await else { return };
    let (mut ts, mut pg) = (tsdb.client().await, plain.client().await);
    ts.batch_execute(MARKET).await.unwrap();
    pg.batch_execute(MARKET).await.unwrap();

    // The schema took the TimescaleDB path on one side only.
    let hypertables = lines(
        &ts,
        "SELECT format('%s compression %s', hypertable_name, compression_enabled::text)
         FROM timescaledb_information.hypertables WHERE hypertable_schema = 'tapeflow' ORDER BY 1",
    )
    .await;
    assert_eq!(hypertables, ["quotes compression true", "ticks compression true"]);
    let caggs = lines(
        &ts,
        "SELECT view_name::text FROM timescaledb_information.continuous_aggregates WHERE view_schema = 'tapeflow'",
    )
    .await;
    assert_eq!(caggs, ["bars_1m"]);
    let plain_kind = lines(
        &pg,
        "SELECT format('%s %s', (SELECT relkind FROM pg_class WHERE oid = 'tapeflow.bars_1m'::regclass),
                       EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')::text)",
    )
    .await;
    assert_eq!(plain_kind, ["r false"], "the plain path keeps a table and no TimescaleDB");

    // Nothing materialized yet: real-time aggregation answers from ticks.
    assert_same_answers(&ts, &pg, "before any refresh").await;
    ts.batch_execute(REFRESH).await.unwrap();
    assert_same_answers(&ts, &pg, "after a refresh").await;

    // Late trades into minutes already materialized, with the chunks compressed: the next
    // refresh applies them, as the plain path's trigger does at once.
    let compressed: i64 = ts
        .query_one("SELECT count(compress_chunk(c)) FROM show_chunks('tapeflow.ticks') c", &[])
        .await
        .unwrap()
        .get(0);
    assert!(compressed > 0);
    let late = "INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id) VALUES
                    ('2024-03-04 14:31:05+00', 'AAPL', 170.5, 40, 'S', 'late-1'),
                    ('2024-03-05 15:00:01+00', 'ESH4', 5131.25, 25, 'B', 'late-2')";
    ts.batch_execute(late).await.unwrap();
    pg.batch_execute(late).await.unwrap();
    ts.batch_execute(REFRESH).await.unwrap();
    assert_same_answers(&ts, &pg, "after late trades").await;

    // A provider's cancel and correction (tapeflow_db::amend::amend_ticks), into those
    // compressed chunks: the refresh applies them as the plain path's triggers do.
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    let amends = [
        TickAmend {
            symbol: "AAPL".into(),
            trade_id: "0-5".into(),
            at: at("2024-03-04T14:33:55Z"),
            replacement: None,
        },
        TickAmend {
            symbol: "ESH4".into(),
            trade_id: "1-7".into(),
            at: at("2024-03-05T14:35:29Z"),
            replacement: Some(TickReplacement {
                trade_id: "fix-1".into(),
                price: 5125.0,
                size: 3.0,
                conditions: None,
            }),
        },
    ];
    for c in [&mut ts, &mut pg] {
        let done = tapeflow_db::amend::amend_ticks(c, &amends).await.unwrap();
        assert_eq!((done.removed, done.replaced, done.held.len()), (2, 1, 0));
    }
    ts.batch_execute(REFRESH).await.unwrap();
    assert_same_answers(&ts, &pg, "after a cancel and a correction").await;
    let fixed: i64 = ts
        .query_one(
            "SELECT count(*) FROM tapeflow.ticks
             WHERE (symbol, trade_id) IN (('AAPL', '0-5'), ('ESH4', '1-7'), ('ESH4', 'fix-1'))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(fixed, 1, "the cancelled and the corrected trade gone, the correction stored");

    // rebuild_rollups() works on both paths and leaves the same minutes.
    let rebuilt_ts: i64 = ts.query_one("SELECT tapeflow.rebuild_rollups()", &[]).await.unwrap().get(0);
    let rebuilt_pg: i64 = pg.query_one("SELECT tapeflow.rebuild_rollups()", &[]).await.unwrap().get(0);
    assert_eq!(rebuilt_ts, rebuilt_pg);
    assert!(rebuilt_ts > 1000, "{rebuilt_ts} minutes");
    assert_same_answers(&ts, &pg, "after rebuild_rollups()").await;
}

/// Candle announcements until none arrives for `quiet`.
async fn announced(events: &mut Receiver<ListenEvent>, quiet: Duration) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(quiet, events.recv()).await {
        if let ListenEvent::Notification { payload, .. } = event {
            out.push(serde_json::from_str(&payload).unwrap());
        }
    }
    out
}

/// Two symbols, three minutes each, 20 trades a minute.
fn batch() -> Vec<TickRow> {
    let start = Utc.with_ymd_and_hms(2024, 3, 4, 15, 0, 0).unwrap();
    let mut rows = Vec::new();
    for symbol in ["AAA", "BBB"] {
        for i in 0..60 {
            rows.push(TickRow {
                time: start + chrono::Duration::seconds(3 * i),
                symbol: symbol.to_string(),
                price: 50.0 + (i % 7) as f64 * 0.01,
                size: (1 + i % 4) as f64,
                side: if i % 2 == 0 { b'B' } else { b'S' },
                side_source: "venue",
                trade_id: i.to_string(),
                exchange: None,
                conditions: None,
            });
        }
    }
    rows
}

/// Runs one scenario and returns the announcements of each step.
async fn announcements(db: &TestDb, timescaledb: bool) -> Vec<Vec<serde_json::Value>> {
    let mut client = db.client().await;
    client
        .batch_execute("INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('AAA', 0.01), ('BBB', 0.01)")
        .await
        .unwrap();
    let mut events = tapeflow_db::listen(db.url.clone(), vec!["tapeflow_candles".into()]);
    assert!(matches!(events.recv().await, Some(ListenEvent::Connected)));
    let quiet = Duration::from_millis(1500);
    let mut steps = Vec::new();

    // The feeder's write: binary COPY to a staging table, then one INSERT into ticks.
    let rows = batch();
    assert_eq!(tapeflow_db::copy::write_ticks(&mut client, &rows).await.unwrap(), 120);
    steps.push(announced(&mut events, quiet).await);
    // A replayed batch inserts nothing and announces nothing.
    assert_eq!(tapeflow_db::copy::write_ticks(&mut client, &rows).await.unwrap(), 0);
    steps.push(announced(&mut events, quiet).await);

    // A late trade into the first minute. With TimescaleDB that minute is materialized and
    // its chunk compressed first, the hardest case for reading the minute back.
    if timescaledb {
        client.batch_execute(REFRESH).await.unwrap();
        client.batch_execute("SELECT compress_chunk(c) FROM show_chunks('tapeflow.ticks') c").await.unwrap();
    }
    client
        .batch_execute(
            "INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
             VALUES ('2024-03-04 15:00:30.5+00', 'AAA', 49.5, 10, 'S', 'late')",
        )
        .await
        .unwrap();
    steps.push(announced(&mut events, quiet).await);
    steps
}

/// Each step's announcements in one order (within a statement they come in any).
fn sorted(steps: Vec<Vec<serde_json::Value>>) -> Vec<Vec<serde_json::Value>> {
    steps
        .into_iter()
        .map(|mut s| {
            s.sort_by_key(|c| c.to_string());
            s
        })
        .collect()
}

#[tokio::test]
async fn tick_inserts_announce_candles_on_both_paths() {
    let Some((tsdb, plain)) = databases("tsn").await else { return };
    let ts = announcements(&tsdb, true).await;
    let pg = announcements(&plain, false).await;

    // One announcement per symbol per statement: the newest changed minute, complete.
    let mut first = ts[0].clone();
    first.sort_by_key(|c| c["symbol"].as_str().unwrap().to_string());
    assert_eq!(first.len(), 2, "{first:?}");
    for (c, symbol) in first.iter().zip(["AAA", "BBB"]) {
        assert_eq!(c["symbol"], symbol);
        assert_eq!(c["bucket"], "2024-03-04T15:02:00+00:00");
        assert_eq!(c["trades"], 20);
        assert_eq!(c["volume"], 50.0);
        assert_eq!(c["buy_volume"], 20.0);
        assert_eq!(c["sell_volume"], 30.0);
    }
    assert!(ts[1].is_empty(), "a replay announces nothing: {:?}", ts[1]);
    // The late trade is in its (older) minute's candle.
    assert_eq!(ts[2].len(), 1, "{:?}", ts[2]);
    let late = &ts[2][0];
    assert_eq!(late["symbol"], "AAA");
    assert_eq!(late["bucket"], "2024-03-04T15:00:00+00:00");
    assert_eq!(late["trades"], 21);
    assert_eq!(late["low"], 49.5);
    assert_eq!(late["sell_volume"], 40.0);

    // The plain path announced exactly the same candles.
    assert_eq!(sorted(ts), sorted(pg));
}

/// (symbol, minute, trades) of each announcement of a step, sorted.
fn minute_counts(step: &[serde_json::Value]) -> Vec<(String, String, i64)> {
    let mut v: Vec<(String, String, i64)> = step
        .iter()
        .map(|c| {
            (
                c["symbol"].as_str().unwrap().into(),
                c["bucket"].as_str().unwrap().into(),
                c["trades"].as_i64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// `n` trades of `symbol` from `at` (UTC, within one minute), ids `tag-0`, `tag-1`, ...
fn trades(symbol: &str, at: &str, n: usize, tag: &str) -> String {
    format!(
        "INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
         SELECT timestamptz '{at}+00' + i * interval '100 ms', '{symbol}', 50 + (i % 5) * 0.01, 1 + i % 3,
                CASE WHEN i % 2 = 0 THEN 'B' ELSE 'S' END, '{tag}-' || i
         FROM generate_series(0, {}) i",
        n - 1
    )
}

/// Statements into one minute, corrections between them and two writers at once; returns
/// the announcements of each step.
async fn newest_minute_steps(db: &TestDb) -> Vec<Vec<serde_json::Value>> {
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('AAA', 0.01), ('BBB', 0.01), ('CCC', 0.01)",
    )
    .await
    .unwrap();
    let mut events = tapeflow_db::listen(db.url.clone(), vec!["tapeflow_candles".into()]);
    assert!(matches!(events.recv().await, Some(ListenEvent::Connected)));
    let quiet = Duration::from_millis(1200);
    let mut steps = Vec::new();
    let step = |sql: String| {
        let c = &c;
        async move {
            c.batch_execute(&sql).await.unwrap();
        }
    };
    // Three statements into 15:00 (the first reads the minute, the others merge into it).
    step(format!(
        "{}; {}",
        trades("AAA", "2024-03-04 15:00:00", 10, "a"),
        trades("BBB", "2024-03-04 15:00:00", 10, "b")
    ))
    .await;
    steps.push(announced(&mut events, quiet).await);
    step(trades("AAA", "2024-03-04 15:00:10", 10, "c")).await;
    steps.push(announced(&mut events, quiet).await);
    step(trades("AAA", "2024-03-04 15:00:20", 5, "d")).await;
    steps.push(announced(&mut events, quiet).await);
    // A new minute, then a delete and an update in it: the next statement's candle follows them.
    step(trades("AAA", "2024-03-04 15:01:00", 10, "e")).await;
    steps.push(announced(&mut events, quiet).await);
    step("DELETE FROM tapeflow.ticks WHERE symbol = 'AAA' AND trade_id IN ('e-0', 'e-1')".into()).await;
    steps.push(announced(&mut events, quiet).await);
    step(trades("AAA", "2024-03-04 15:01:10", 2, "f")).await;
    steps.push(announced(&mut events, quiet).await);
    step("UPDATE tapeflow.ticks SET size = 100 WHERE symbol = 'AAA' AND trade_id = 'e-5'".into()).await;
    step(trades("AAA", "2024-03-04 15:01:20", 1, "g")).await;
    steps.push(announced(&mut events, quiet).await);

    // Writers into a new minute at once. The first holds its transaction open; then one writes
    // CCC, which has no row yet (it meets the first's on the key), and one AAA, which has a row
    // of an older minute (it waits on that row's lock). Each candle holds the first's trades.
    // (A writer that starts after the commit merely takes the common path: the same candles.)
    let first = db.client().await;
    first
        .batch_execute(&format!(
            "BEGIN; {}; {}",
            trades("AAA", "2024-03-04 15:02:00", 4, "h"),
            trades("CCC", "2024-03-04 15:02:00", 4, "h")
        ))
        .await
        .unwrap();
    let mut writers = Vec::new();
    for symbol in ["CCC", "AAA"] {
        let other = db.client().await;
        writers.push(tokio::spawn(async move {
            other.batch_execute(&trades(symbol, "2024-03-04 15:02:10", 3, "i")).await.unwrap();
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.batch_execute("COMMIT").await.unwrap();
    for w in writers {
        w.await.unwrap();
    }
    steps.push(announced(&mut events, quiet).await);
    step(format!(
        "{}; {}",
        trades("AAA", "2024-03-04 15:02:20", 1, "j"),
        trades("CCC", "2024-03-04 15:02:20", 1, "j")
    ))
    .await;
    steps.push(announced(&mut events, quiet).await);
    steps
}

#[tokio::test]
async fn newest_minute_announcements_follow_every_statement_correction_and_concurrent_writer() {
    let Some((tsdb, plain)) = databases("tsm").await else { return };
    let ts = newest_minute_steps(&tsdb).await;
    let pg = newest_minute_steps(&plain).await;
    let at = |m: u32| format!("2024-03-04T15:0{m}:00+00:00");
    let one = |s: &str, m: u32, n: i64| (s.to_string(), at(m), n);
    assert_eq!(minute_counts(&ts[0]), vec![one("AAA", 0, 10), one("BBB", 0, 10)]);
    assert_eq!(minute_counts(&ts[1]), vec![one("AAA", 0, 20)]);
    assert_eq!(minute_counts(&ts[2]), vec![one("AAA", 0, 25)]);
    assert_eq!(minute_counts(&ts[3]), vec![one("AAA", 1, 10)]);
    assert!(ts[4].is_empty(), "a delete announces nothing: {:?}", ts[4]);
    assert_eq!(minute_counts(&ts[5]), vec![one("AAA", 1, 10)], "two deleted, two added");
    assert_eq!(minute_counts(&ts[6]), vec![one("AAA", 1, 11)]);
    // e-5 (size 1 + 5 % 3 = 3) was updated to 100: the minute's volume shows it.
    let volume: f64 = tsdb
        .client()
        .await
        .query_one(
            "SELECT sum(size) FROM tapeflow.ticks WHERE symbol = 'AAA' AND time >= '2024-03-04 15:01+00' AND time < '2024-03-04 15:02+00'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ts[6][0]["volume"].as_f64().unwrap(), volume);
    assert!(volume > 100.0);
    assert_eq!(
        minute_counts(&ts[7]),
        vec![one("AAA", 2, 4), one("AAA", 2, 7), one("CCC", 2, 4), one("CCC", 2, 7)]
    );
    assert_eq!(minute_counts(&ts[8]), vec![one("AAA", 2, 8), one("CCC", 2, 8)]);

    // The plain path, whose rollup stores every minute, announced the same candles.
    assert_eq!(sorted(ts), sorted(pg));
}

/// A statement inside another and a failed one inside a savepoint; returns the announcements of
/// each step. On the TimescaleDB path each statement's row triggers gather into a frame of its
/// own (sql/026): an inner statement's rows are not the outer's, and the rows a failed statement
/// had gathered are dropped with its subtransaction.
async fn nested_statement_steps(db: &TestDb) -> Vec<Vec<serde_json::Value>> {
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('AAA', 0.01), ('BBB', 0.01);
         -- Refuses a trade marked bad, after the rows before it were stored and gathered.
         CREATE FUNCTION public.refuse_bad() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.trade_id LIKE 'bad%' THEN RAISE EXCEPTION 'refused %', NEW.trade_id; END IF;
             RETURN NULL;
         END $$;
         CREATE TRIGGER zz_refuse_bad AFTER INSERT ON tapeflow.ticks FOR EACH ROW EXECUTE FUNCTION public.refuse_bad();
         -- Inserts `n` trades of `symbol` at 15:00:30, the last marked bad when `fail`; a failure
         -- is caught (a subtransaction rolled back).
         CREATE FUNCTION public.inner_trades(symbol text, n int, fail boolean) RETURNS int LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
             SELECT timestamptz '2024-03-04 15:00:30+00' + i * interval '1 ms', symbol, 60, 1, 'B',
                    CASE WHEN fail AND i = n - 1 THEN 'bad-' ELSE 'in-' END || i
             FROM generate_series(0, n - 1) i ORDER BY i;
             RETURN n;
         EXCEPTION WHEN raise_exception THEN
             RETURN 0;
         END $$;",
    )
    .await
    .unwrap();
    let mut events = tapeflow_db::listen(db.url.clone(), vec!["tapeflow_candles".into()]);
    assert!(matches!(events.recv().await, Some(ListenEvent::Connected)));
    let quiet = Duration::from_millis(1200);
    let outer = |inner: &str| {
        format!(
            "INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
             SELECT timestamptz '2024-03-04 15:00:00+00' + i * interval '1 s', 'AAA', 50, 2, 'S', 'out-' || i
             FROM generate_series(0, 4) i, (SELECT {inner}) f"
        )
    };
    let mut steps = Vec::new();
    // An insert inside an insert: BBB's three trades and AAA's five, each announced alone.
    c.batch_execute(&outer("public.inner_trades('BBB', 3, false)")).await.unwrap();
    steps.push(announced(&mut events, quiet).await);
    // The inner insert fails on its third trade after two were gathered: AAA's next five only.
    c.batch_execute(&outer("public.inner_trades('AAA', 3, true)").replace("'out-'", "'out2-'"))
        .await
        .unwrap();
    steps.push(announced(&mut events, quiet).await);
    // A failed statement, rolled back to a savepoint, then one more trade in the transaction.
    c.batch_execute("BEGIN; SAVEPOINT s").await.unwrap();
    let failed = c
        .batch_execute(
            "INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id) VALUES
                 ('2024-03-04 15:00:40+00', 'BBB', 61, 1, 'B', 'ok-1'), ('2024-03-04 15:00:41+00', 'BBB', 61, 1, 'B', 'bad-2')",
        )
        .await;
    assert!(failed.is_err());
    c.batch_execute(
        "ROLLBACK TO SAVEPOINT s;
         INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id) VALUES ('2024-03-04 15:00:50+00', 'BBB', 62, 1, 'B', 'last');
         COMMIT",
    )
    .await
    .unwrap();
    steps.push(announced(&mut events, quiet).await);
    steps
}

#[tokio::test]
async fn gathered_minutes_belong_to_their_own_statement() {
    let Some((tsdb, plain)) = databases("tsf").await else { return };
    let ts = nested_statement_steps(&tsdb).await;
    let pg = nested_statement_steps(&plain).await;
    let one = |s: &str, n: i64| (s.to_string(), "2024-03-04T15:00:00+00:00".to_string(), n);
    assert_eq!(minute_counts(&ts[0]), vec![one("AAA", 5), one("BBB", 3)]);
    assert_eq!(
        minute_counts(&ts[1]),
        vec![one("AAA", 10)],
        "the failed inner insert's trades are not announced"
    );
    // Nor the insert rolled back to the savepoint: BBB's minute holds its first three and the last.
    assert_eq!(minute_counts(&ts[2]), vec![one("BBB", 4)]);
    assert_eq!(sorted(ts), sorted(pg));
}
