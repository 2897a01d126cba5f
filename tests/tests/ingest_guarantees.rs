//! The tick write path after `sql/013_ingest.sql` (COPY straight into ticks, one key, symbols
//! checked per statement) keeps the guarantees of the old one: a replayed trade is skipped,
//! a tick of an unknown symbol is refused with its whole statement, concurrent writers of the
//! same trades store each once without deadlocking, and the rollups equal the ticks whatever
//! the order batches arrive in. Each scenario runs on the plain-PostgreSQL path and, when the
//! cluster has it, on the TimescaleDB path (otherwise that half says it was skipped).

use chrono::{DateTime, TimeZone, Utc};
use std::process::{Command, Stdio};
use std::time::Duration;
use tapeflow_db::copy::{write_ticks, TickRow};
use tapeflow_tests::*;
use tokio_postgres::Client;

const REFRESH: &str = "CALL refresh_continuous_aggregate('tapeflow.bars_1m', NULL, NULL)";

async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(c: &Client, sql: &str) -> T {
    c.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

async fn texts(c: &Client, sql: &str) -> Vec<String> {
    c.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).iter().map(|r| r.get(0)).collect()
}

/// The database error behind a failed write: (SQLSTATE, message).
fn db_error(e: &anyhow::Error) -> (String, String) {
    let pg =
        e.downcast_ref::<tokio_postgres::Error>().unwrap_or_else(|| panic!("not a database error: {e:#}"));
    let d = pg.as_db_error().unwrap_or_else(|| panic!("not a server error: {pg}"));
    (d.code().code().to_string(), d.message().to_string())
}

/// A database for the path, or None (after saying so) when TimescaleDB is wanted and absent.
async fn database(prefix: &str, timescaledb: bool) -> Option<TestDb> {
    if timescaledb && !timescaledb_available().await {
        println!("skipped: timescaledb is not installed (or not preloaded) in the cluster");
        return None;
    }
    let db =
        TestDb::create(&format!("{prefix}_{}", if timescaledb { "ts" } else { "pg" }), timescaledb).await;
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('AAA', 0.01), ('BBB', 0.01), ('CCC', 0.05)",
    )
    .await
    .unwrap();
    if timescaledb {
        // Only what the refreshes stored: every check then depends on each write having
        // recorded its invalidation, not on the view aggregating the ticks at query time.
        c.batch_execute(
            "ALTER MATERIALIZED VIEW tapeflow.bars_1m SET (timescaledb.materialized_only = true)",
        )
        .await
        .unwrap();
    }
    Some(db)
}

fn at(second: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 4, 15, 0, 0).unwrap() + chrono::Duration::seconds(second)
}

fn tick(symbol: &str, second: i64, trade_id: &str, price: f64, size: f64) -> TickRow {
    TickRow {
        time: at(second),
        symbol: symbol.into(),
        price,
        size,
        side: [b'B', b'S', b'N'][(size as usize) % 3],
        side_source: "venue",
        trade_id: trade_id.into(),
        exchange: None,
        conditions: None,
    }
}

/// `n` trades of AAA, BBB and CCC over `n / 3` seconds, several sharing a timestamp.
fn trades(n: usize) -> Vec<TickRow> {
    (0..n)
        .map(|i| {
            let symbol = ["AAA", "BBB", "CCC"][i % 3];
            let step = if symbol == "CCC" { 0.05 } else { 0.01 };
            tick(
                symbol,
                (i / 6) as i64,
                &format!("t{i}"),
                100.0 + ((i * 7) % 13) as f64 * step,
                (1 + i % 9) as f64,
            )
        })
        .collect()
}

/// A seeded permutation (xorshift), for deterministic "random" orders.
fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut v = items.to_vec();
    let mut s = seed | 1;
    for i in (1..v.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.swap(i, (s % (i as u64 + 1)) as usize);
    }
    v
}

/// Rows of the stored minutes that differ from the same minutes aggregated from the ticks now
/// (both ways), as text for the failure message. VWAP is rounded: its float sum depends on
/// the order the trades were added in. With TimescaleDB the view is refreshed first.
async fn rollups_differ_from_ticks(c: &Client, timescaledb: bool) -> Vec<String> {
    if timescaledb {
        c.batch_execute(REFRESH).await.unwrap();
    }
    let fields = "symbol, bucket, tapeflow.open(candle) o, tapeflow.high(candle) h, tapeflow.low(candle) l,
                  tapeflow.close(candle) c, tapeflow.volume(candle) v, tapeflow.buy_volume(candle) bv,
                  tapeflow.sell_volume(candle) sv, tapeflow.trades(candle) n,
                  round(tapeflow.vwap(candle)::numeric, 9) vwap, profile::text p";
    let stored = format!("SELECT {fields} FROM tapeflow.bars_1m");
    let fresh = format!(
        "SELECT {fields} FROM (
             SELECT k.symbol, tapeflow.minute(k.time) AS bucket,
                    tapeflow.candle_agg(k.time, k.price, k.size, k.side) AS candle,
                    tapeflow.profile_agg(k.price, k.size, k.side, s.tick_size) AS profile
             FROM tapeflow.ticks k JOIN tapeflow.symbols s USING (symbol) GROUP BY 1, 2) f"
    );
    texts(
        c,
        &format!(
            "SELECT format('%s %s', side, d) FROM (
                 SELECT 'stored only' side, x::text d FROM (({stored}) EXCEPT ({fresh})) x
                 UNION ALL SELECT 'ticks only', y::text FROM (({fresh}) EXCEPT ({stored})) y) z"
        ),
    )
    .await
}

async fn replays_are_skipped(timescaledb: bool) {
    let Some(db) = database("ingrep", timescaledb).await else { return };
    let mut c = db.client().await;
    let rows = trades(600);
    assert_eq!(write_ticks(&mut c, &rows[..400]).await.unwrap(), 400);
    // The same batch again: nothing new.
    assert_eq!(write_ticks(&mut c, &rows[..400]).await.unwrap(), 0);
    // Overlapping the stored ones: only the new ones count and are stored.
    assert_eq!(write_ticks(&mut c, &rows[300..]).await.unwrap(), 200);
    // A trade repeated within one batch, with another price: stored once, the first seen.
    let mut twice = vec![tick("AAA", 500, "dup", 101.0, 5.0), tick("BBB", 500, "solo", 99.0, 1.0)];
    twice.push(tick("AAA", 500, "dup", 150.0, 7.0));
    assert_eq!(write_ticks(&mut c, &twice).await.unwrap(), 2);
    let dup: Vec<String> =
        texts(&c, "SELECT format('%s %s', price, size) FROM tapeflow.ticks WHERE trade_id = 'dup'").await;
    assert_eq!(dup, ["101 5"]);
    // The same trade id at another instant, or of another symbol, is another trade.
    let others = [tick("AAA", 501, "dup", 101.0, 1.0), tick("BBB", 500, "dup", 99.5, 1.0)];
    assert_eq!(write_ticks(&mut c, &others).await.unwrap(), 2);

    assert_eq!(one::<i64>(&c, "SELECT count(*) FROM tapeflow.ticks").await, 604);
    let distinct: i64 = one(&c, "SELECT count(DISTINCT (symbol, time, trade_id)) FROM tapeflow.ticks").await;
    assert_eq!(distinct, 604);
    // Plain SQL replays are no-ops too, with or without naming the key.
    c.batch_execute(
        "INSERT INTO tapeflow.ticks SELECT * FROM tapeflow.ticks ON CONFLICT DO NOTHING;
         INSERT INTO tapeflow.ticks SELECT * FROM tapeflow.ticks ON CONFLICT (symbol, trade_id, time) DO NOTHING;
         INSERT INTO tapeflow.ticks SELECT * FROM tapeflow.ticks ON CONFLICT ON CONSTRAINT ticks_trade_unique DO NOTHING;",
    )
    .await
    .unwrap();
    let refused = c
        .batch_execute("INSERT INTO tapeflow.ticks SELECT * FROM tapeflow.ticks WHERE trade_id = 'solo'")
        .await
        .unwrap_err();
    assert_eq!(refused.code().map(|s| s.code()), Some("23505"));
    assert_eq!(one::<i64>(&c, "SELECT count(*) FROM tapeflow.ticks").await, 604);
    assert_eq!(rollups_differ_from_ticks(&c, timescaledb).await, Vec::<String>::new());
}

#[tokio::test]
async fn replayed_trades_are_skipped_plain() {
    replays_are_skipped(false).await;
}

#[tokio::test]
async fn replayed_trades_are_skipped_timescaledb() {
    replays_are_skipped(true).await;
}

async fn unknown_symbols_are_refused(timescaledb: bool) {
    let Some(db) = database("ingunk", timescaledb).await else { return };
    let mut c = db.client().await;
    let rows = trades(90);
    assert_eq!(write_ticks(&mut c, &rows[..30]).await.unwrap(), 30);
    let before_ticks: i64 = one(&c, "SELECT count(*) FROM tapeflow.ticks").await;
    let minutes =
        "SELECT format('%s %s %s', symbol, bucket, tapeflow.trades(candle)) FROM tapeflow.bars_1m ORDER BY 1";
    if timescaledb {
        c.batch_execute(REFRESH).await.unwrap();
    }
    let before_bars = texts(&c, minutes).await;
    assert!(!before_bars.is_empty());

    // New trades of known symbols with two of unknown ones: refused, naming both, nothing stored.
    let mut batch = rows[30..].to_vec();
    batch.insert(7, tick("ZZZ", 20, "z1", 10.0, 1.0));
    batch.push(tick("NOPE", 21, "n1", 10.0, 1.0));
    let e = write_ticks(&mut c, &batch).await.unwrap_err();
    let (state, message) = db_error(&e);
    assert_eq!(state, "23503", "{message}");
    assert_eq!(message, "unknown symbols: NOPE, ZZZ");
    assert_eq!(one::<i64>(&c, "SELECT count(*) FROM tapeflow.ticks").await, before_ticks);

    // The same with a stored trade in the batch (the merge path): still refused as a whole.
    let mut replay = rows[..40].to_vec();
    replay.push(tick("ZZZ", 22, "z2", 10.0, 1.0));
    let e = write_ticks(&mut c, &replay).await.unwrap_err();
    assert_eq!(db_error(&e), ("23503".into(), "unknown symbol: ZZZ".into()));
    assert_eq!(one::<i64>(&c, "SELECT count(*) FROM tapeflow.ticks").await, before_ticks);
    if timescaledb {
        c.batch_execute(REFRESH).await.unwrap();
    }
    assert_eq!(texts(&c, minutes).await, before_bars, "a refused batch changed the rollups");

    // Plain SQL, and a correction moving trades to an unknown symbol, are refused alike.
    let e = c
        .batch_execute(
            "INSERT INTO tapeflow.ticks (time, symbol, price, size, trade_id)
             VALUES ('2024-03-04 15:10:00+00', 'AAA', 100, 1, 'ok'), ('2024-03-04 15:10:00+00', 'QQQ', 100, 1, 'q')",
        )
        .await
        .unwrap_err();
    assert_eq!(e.as_db_error().unwrap().message(), "unknown symbol: QQQ");
    let e =
        c.batch_execute("UPDATE tapeflow.ticks SET symbol = 'QQQ' WHERE trade_id = 't0'").await.unwrap_err();
    assert_eq!(e.code().map(|s| s.code()), Some("23503"));
    assert!(e.as_db_error().unwrap().message().contains("QQQ"));
    // Once the symbol exists its ticks go in.
    c.batch_execute("INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('ZZZ', 0.01)").await.unwrap();
    assert_eq!(write_ticks(&mut c, &batch[..8]).await.unwrap(), 8);

    // A symbol with ticks cannot be deleted, renamed or truncated away; without ticks it can.
    let e = c.batch_execute("DELETE FROM tapeflow.symbols WHERE symbol = 'AAA'").await.unwrap_err();
    assert!(e.as_db_error().unwrap().message().contains("AAA cannot be deleted"), "{e}");
    let e = c
        .batch_execute("UPDATE tapeflow.symbols SET symbol = 'AAA2' WHERE symbol = 'AAA'")
        .await
        .unwrap_err();
    assert!(e.as_db_error().unwrap().message().contains("cannot be renamed"), "{e}");
    let e = c.batch_execute("TRUNCATE tapeflow.symbols CASCADE").await.unwrap_err();
    assert!(e.as_db_error().unwrap().message().contains("cannot be truncated"), "{e}");
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('GONE', 0.01);
         UPDATE tapeflow.symbols SET symbol = 'GONE2' WHERE symbol = 'GONE';
         DELETE FROM tapeflow.symbols WHERE symbol = 'GONE2';",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn unknown_symbols_are_refused_plain() {
    unknown_symbols_are_refused(false).await;
}

#[tokio::test]
async fn unknown_symbols_are_refused_timescaledb() {
    unknown_symbols_are_refused(true).await;
}

/// A delete of a symbol racing a writer of its first ticks: whichever comes first wins, as
/// with the foreign key, and no tick is left without its symbol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_symbol_races_its_writer_safely() {
    let Some(db) = database("ingdel", false).await else { return };
    let setup = db.client().await;
    setup
        .batch_execute("INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('D1', 0.01), ('D2', 0.01)")
        .await
        .unwrap();
    let message =
        |e: tokio_postgres::Error| e.as_db_error().map(|d| d.message().to_string()).unwrap_or(e.to_string());

    // The writer first: the delete waits for its commit, then sees the ticks and is refused.
    let writer = db.client().await;
    writer
        .batch_execute(
            "BEGIN; INSERT INTO tapeflow.ticks (time, symbol, price, size, trade_id)
                    VALUES ('2024-03-04 15:00:00+00', 'D1', 10, 1, '1');",
        )
        .await
        .unwrap();
    let admin = db.client().await;
    let delete = tokio::spawn(async move {
        admin.batch_execute("DELETE FROM tapeflow.symbols WHERE symbol = 'D1'").await.map_err(message)
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!delete.is_finished(), "the symbol was deleted under uncommitted ticks: {:?}", delete.await);
    writer.batch_execute("COMMIT").await.unwrap();
    let refused = delete.await.unwrap().unwrap_err();
    assert!(refused.contains("D1 cannot be deleted"), "{refused}");

    // The delete first: the writer waits for it, then finds the symbol gone and is refused.
    let admin = db.client().await;
    admin.batch_execute("BEGIN; DELETE FROM tapeflow.symbols WHERE symbol = 'D2';").await.unwrap();
    let mut writer = db.client().await;
    let write = tokio::spawn(async move { write_ticks(&mut writer, &[tick("D2", 1, "1", 10.0, 1.0)]).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!write.is_finished(), "ticks were written while their symbol was being deleted");
    admin.batch_execute("COMMIT").await.unwrap();
    let e = write.await.unwrap().unwrap_err();
    assert_eq!(db_error(&e), ("23503".into(), "unknown symbol: D2".into()));
    let orphans: i64 = one(
        &setup,
        "SELECT count(*) FROM tapeflow.ticks k WHERE NOT EXISTS (SELECT 1 FROM tapeflow.symbols s WHERE s.symbol = k.symbol)",
    )
    .await;
    assert_eq!(orphans, 0);

    // At REPEATABLE READ the delete's check could miss ticks committed while it waited: refused.
    let e = setup
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; DELETE FROM tapeflow.symbols WHERE symbol = 'D1'",
        )
        .await
        .unwrap_err();
    assert!(message(e).contains("READ COMMITTED"));
}

async fn concurrent_writers(timescaledb: bool) {
    let Some(db) = database("ingcon", timescaledb).await else { return };
    let all = trades(6000);
    // Three feeds of the same trades: in order, in reverse with other batch bounds, and
    // shuffled; each writes everything, racing the others.
    let plans: Vec<Vec<Vec<TickRow>>> = vec![
        all.chunks(400).map(|b| b.to_vec()).collect(),
        all.iter().rev().cloned().collect::<Vec<_>>().chunks(250).map(|b| b.to_vec()).collect(),
        shuffled(&all, 7).chunks(700).map(|b| b.to_vec()).collect(),
    ];
    let mut tasks = Vec::new();
    for plan in plans {
        let mut c = db.client().await;
        tasks.push(tokio::spawn(async move {
            let mut stored = 0u64;
            for b in plan {
                stored += write_ticks(&mut c, &b).await.unwrap_or_else(|e| panic!("{e:#}"));
            }
            stored
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += t.await.unwrap();
    }
    let c = db.client().await;
    // Each trade was new to exactly one writer.
    assert_eq!(stored, 6000, "the writers' counts of new trades add up to every trade once");
    assert_eq!(one::<i64>(&c, "SELECT count(*) FROM tapeflow.ticks").await, 6000);
    assert_eq!(rollups_differ_from_ticks(&c, timescaledb).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_of_the_same_trades_plain() {
    concurrent_writers(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_of_the_same_trades_timescaledb() {
    concurrent_writers(true).await;
}

async fn out_of_order_batches(timescaledb: bool) {
    let Some(db) = database("ingooo", timescaledb).await else { return };
    let mut c = db.client().await;
    // Ten minutes of trades in 38 batches written in a shuffled order (late trades land in
    // minutes already rolled up), some batches twice, each batch itself shuffled.
    let all = trades(3600);
    let batches: Vec<Vec<TickRow>> = all.chunks(97).map(|b| shuffled(b, b.len() as u64)).collect();
    let mut order: Vec<usize> = shuffled(&(0..batches.len()).collect::<Vec<_>>(), 11);
    order.extend([3, 17, 0]);
    let mut stored = 0;
    for (n, &i) in order.iter().enumerate() {
        stored += write_ticks(&mut c, &batches[i]).await.unwrap();
        if n == 20 {
            // Half-way: the rollups already equal the ticks stored so far.
            assert_eq!(rollups_differ_from_ticks(&c, timescaledb).await, Vec::<String>::new());
        }
    }
    assert_eq!(stored, 3600);
    if timescaledb {
        c.batch_execute(REFRESH).await.unwrap();
    }
    let minutes: i64 = one(&c, "SELECT count(*) FROM tapeflow.bars_1m").await;
    assert_eq!(minutes, 3 * 10, "three symbols, ten minutes");
    assert_eq!(rollups_differ_from_ticks(&c, timescaledb).await, Vec::<String>::new());
    // The profile is binned on each symbol's own tick size.
    let on_grid: bool = one(
        &c,
        "SELECT bool_and(abs(l.price / 0.05 - round(l.price / 0.05)) < 1e-6)
         FROM tapeflow.bars_1m b, tapeflow.levels(b.profile) l WHERE b.symbol = 'CCC'",
    )
    .await;
    assert!(on_grid, "CCC's profile rows are on its 0.05 grid");
}

#[tokio::test]
async fn rollups_equal_ticks_after_out_of_order_batches_plain() {
    out_of_order_batches(false).await;
}

#[tokio::test]
async fn rollups_equal_ticks_after_out_of_order_batches_timescaledb() {
    out_of_order_batches(true).await;
}

/// The migration transforms a database that has ticks: the foreign key and the two indexes give
/// way to one key, the stored ticks and rollups are kept, and a replay of them adds nothing.
#[tokio::test]
async fn migration_013_transforms_a_stored_schema() {
    // A database migrated up to 012 only: migrate.sh applies the files of the sql/ beside it.
    let root = repo_root();
    let tmp = std::env::temp_dir().join(format!("tapeflow-before-013-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("scripts")).unwrap();
    std::fs::create_dir_all(tmp.join("sql")).unwrap();
    std::os::unix::fs::symlink(root.join("scripts/migrate.sh"), tmp.join("scripts/migrate.sh")).unwrap();
    for f in std::fs::read_dir(root.join("sql")).unwrap() {
        let f = f.unwrap();
        let name = f.file_name().to_string_lossy().to_string();
        if name.ends_with(".sql") && name.as_str() < "013" {
            std::os::unix::fs::symlink(f.path(), tmp.join("sql").join(&name)).unwrap();
        }
    }
    let name = format!("t_ingmig_{}", std::process::id());
    let admin = tapeflow_db::connect(&cluster_url("postgres"), Duration::from_secs(10)).await.unwrap();
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let db = TestDb { name: name.clone(), url: cluster_url(&name) };
    let migrate = |script: &std::path::Path| {
        let ok = Command::new("bash")
            .arg(script)
            .arg(&db.url)
            .env("TAPEFLOW_TIMESCALEDB", "off")
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "{} failed", script.display());
    };
    migrate(&tmp.join("scripts/migrate.sh"));
    std::fs::remove_dir_all(&tmp).unwrap();

    let c = db.client().await;
    let schema = "SELECT format('%s %s', contype, pg_get_constraintdef(oid)) FROM pg_constraint
                  WHERE conrelid = 'tapeflow.ticks'::regclass AND contype IN ('f', 'u') ORDER BY 1";
    assert_eq!(
        texts(&c, schema).await,
        [
            "f FOREIGN KEY (symbol) REFERENCES tapeflow.symbols(symbol)",
            "u UNIQUE (symbol, trade_id, \"time\")"
        ]
    );
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('AAA', 0.01), ('BBB', 0.01), ('CCC', 0.05);
         INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
         SELECT timestamptz '2024-03-04 15:00+00' + (i / 3) * interval '1 second', (ARRAY['AAA', 'BBB', 'CCC'])[i % 3 + 1],
                100 + (i % 13) * 0.05, 1 + i % 9, 'B', 't' || i
         FROM generate_series(0, 2999) i;",
    )
    .await
    .unwrap();
    let minutes =
        "SELECT format('%s %s %s %s', symbol, bucket, tapeflow.trades(candle), tapeflow.volume(candle))
                   FROM tapeflow.bars_1m ORDER BY 1";
    let bars = texts(&c, minutes).await;
    assert_eq!(bars.len(), 3 * 17);

    migrate(&root.join("scripts/migrate.sh"));
    assert_eq!(texts(&c, schema).await, ["u UNIQUE (symbol, \"time\", trade_id)"]);
    let indexes =
        texts(&c, "SELECT indexdef FROM pg_indexes WHERE schemaname = 'tapeflow' AND tablename = 'ticks'")
            .await;
    assert_eq!(
        indexes,
        ["CREATE UNIQUE INDEX ticks_trade_unique ON tapeflow.ticks USING btree (symbol, \"time\", trade_id)"]
    );
    assert_eq!(one::<i64>(&c, "SELECT count(*) FROM tapeflow.ticks").await, 3000);
    assert_eq!(texts(&c, minutes).await, bars);
    // Reads of a symbol's trades by time use the key.
    let plan = texts(
        &c,
        "EXPLAIN SELECT price FROM tapeflow.ticks WHERE symbol = 'AAA' AND time >= '2024-03-04 15:05+00' ORDER BY time DESC LIMIT 1",
    )
    .await
    .join("\n");
    assert!(plan.contains("ticks_trade_unique"), "{plan}");
    let mut w = db.client().await;
    let stored: Vec<TickRow> = w
        .query("SELECT time, symbol, price, size, trade_id FROM tapeflow.ticks", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| TickRow {
            time: r.get(0),
            symbol: r.get(1),
            price: r.get(2),
            size: r.get(3),
            side: b'B',
            side_source: "none",
            trade_id: r.get(4),
            exchange: None,
            conditions: None,
        })
        .collect();
    assert_eq!(write_ticks(&mut w, &stored).await.unwrap(), 0);
    assert_eq!(texts(&c, minutes).await, bars);
    // Applying the migration again changes nothing.
    c.batch_execute(&std::fs::read_to_string(root.join("sql/013_ingest.sql")).unwrap()).await.unwrap();
    assert_eq!(texts(&c, schema).await, ["u UNIQUE (symbol, \"time\", trade_id)"]);
}
