//! Upgrading the extension: a database created at release 0.1.0 (its install script is kept in
//! pg_extension/sql/), holding candles and profiles that the 0.1.0 library wrote (captured in
//! pg_extension/fixtures/stored-0.1.0.json from real Binance trades), is upgraded with
//! ALTER EXTENSION tapeflow UPDATE. The stored values read back as 0.1.0 read them, roll up with
//! new ones exactly, and the upgraded database has the objects of a fresh install. A database
//! at release 0.2.0 (aggregates with `internal` states, run by this library's functions kept for
//! it) upgrades to aggregates with SQL-typed states that give the same answers.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tapeflow_tests::*;

const OLD: &str = "0.1.0";
/// The previous release, whose aggregates keep `internal` states.
const PREVIOUS: &str = "0.2.0";
/// The version this build installs.
const CURRENT: &str = "0.4.0";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// An empty database (no migrations), dropped with the returned value.
async fn empty_db(prefix: &str) -> TestDb {
    let name = format!("t_{prefix}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    let admin = tapeflow_db::connect(&cluster_url("postgres"), Duration::from_secs(10))
        .await
        .expect("the project cluster is running (make db starts it)");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    TestDb { url: cluster_url(&name), name }
}

fn migrate(db: &TestDb) {
    let status = Command::new("bash")
        .arg(repo_root().join("scripts/migrate.sh"))
        .arg(&db.url)
        .env("TAPEFLOW_TIMESCALEDB", "off")
        .stdout(Stdio::null())
        .status()
        .expect("run migrate.sh");
    assert!(status.success(), "migrations failed for {}", db.name);
}

fn fixture() -> serde_json::Value {
    let path = repo_root().join("pg_extension/fixtures/stored-0.1.0.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn s(v: &serde_json::Value) -> &str {
    v.as_str().expect("a string")
}

async fn lines(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    c.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e:?}")).iter().map(|r| r.get(0)).collect()
}

/// What 0.1.0 read from each stored minute, and how the fixture spells it.
const CANDLE_READINGS: &str = "format('%s', (tapeflow.open(candle), tapeflow.high(candle), tapeflow.low(candle),
    tapeflow.close(candle), tapeflow.open_time(candle), tapeflow.high_time(candle), tapeflow.low_time(candle),
    tapeflow.close_time(candle), tapeflow.volume(candle), tapeflow.buy_volume(candle), tapeflow.sell_volume(candle),
    tapeflow.trades(candle), tapeflow.vwap(candle), tapeflow.delta(candle)))";
/// The profile readings that do not sum across rows (those are checked against exact sums).
const PROFILE_READINGS: &str =
    "format('%s', (tapeflow.poc(profile), tapeflow.vah(profile), tapeflow.val(profile),
    tapeflow.vah(profile, 0.7, 'single'), tapeflow.val(profile, 0.7, 'single'), tapeflow.trades(profile),
    tapeflow.hvns(profile), tapeflow.lvns(profile)))";

/// The fixture's profile readings without total_volume and delta (fields 6 and 7).
fn non_summed(readings: &str) -> String {
    let inner = readings.trim_start_matches('(').trim_end_matches(')');
    let fields: Vec<&str> = inner.splitn(9, ',').collect();
    format!("({})", [&fields[..5], &fields[7..]].concat().join(","))
}

async fn version(c: &tokio_postgres::Client) -> Vec<String> {
    lines(c, "SELECT extversion FROM pg_extension WHERE extname = 'tapeflow'").await
}

/// 2^70: the doubles summed here (sizes of 0.001 and more, and their sums) are whole multiples
/// of 2^-70, so integers in units of 2^-70 sum them exactly: an independent check of the
/// extension's exact sums.
const SCALE: f64 = 1_180_591_620_717_411_303_424.0;

fn units(x: f64) -> i128 {
    let n = x * SCALE;
    assert!(n.fract() == 0.0 && n.abs() < 2f64.powi(120), "{x} is not on the 2^-70 grid");
    n as i128
}

/// The correctly rounded double of an exact sum in units of 2^-70 (the integer conversion
/// rounds to nearest, ties to even; dividing by a power of two is exact).
fn rounded(n: i128) -> f64 {
    n as f64 / SCALE
}

fn exact_sum(xs: &[f64]) -> f64 {
    rounded(xs.iter().map(|&x| units(x)).sum())
}

/// One record's fields, as text (the readings hold no commas inside a field but the arrays).
fn field(record: &str, i: usize) -> f64 {
    record.trim_matches(|c| c == '(' || c == ')').split(',').nth(i).unwrap().parse().unwrap()
}

/// Every member of the extension with what defines it, one line each.
const CATALOG: &str = "
    SELECT format('%s | %s | %s', pg_describe_object(d.classid, d.objid, 0),
        CASE d.classid
            WHEN 'pg_proc'::regclass THEN (
                SELECT format('%s %s %s %s %s %s (%s) -> %s agg %s', p.prokind, p.provolatile, p.proparallel, p.proisstrict,
                              p.prosrc, p.probin, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
                              (SELECT format('%s %s %s %s %s %s %s', a.aggtransfn, a.aggfinalfn, a.aggcombinefn, a.aggserialfn,
                                             a.aggdeserialfn, a.aggfinalmodify, a.aggtranstype::regtype)
                               FROM pg_aggregate a WHERE a.aggfnoid = p.oid))
                FROM pg_proc p WHERE p.oid = d.objid)
            WHEN 'pg_type'::regclass THEN (
                SELECT format('%s %s %s %s %s', t.typinput, t.typoutput, t.typlen, t.typalign, t.typstorage)
                FROM pg_type t WHERE t.oid = d.objid)
            ELSE '' END,
        obj_description(d.objid, (SELECT relname FROM pg_class WHERE oid = d.classid)))
    FROM pg_depend d
    WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
      AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'tapeflow')
    ORDER BY 1";

#[tokio::test]
async fn data_written_by_the_previous_release_reads_back_after_update() {
    let fx = fixture();
    assert_eq!(s(&fx["release"]), OLD);
    let minutes = fx["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 5);

    let db = empty_db("upgrade").await;
    let c = db.client().await;
    c.batch_execute("CREATE SCHEMA tapeflow").await.unwrap();
    c.batch_execute(&format!("CREATE EXTENSION tapeflow VERSION '{OLD}'")).await.unwrap_or_else(|e| {
        panic!("release {OLD}'s install script is not installed (make db installs pg_extension/sql/): {e:?}")
    });
    assert_eq!(version(&c).await, [OLD]);

    // The bytes 0.1.0 stored, as they were: a binary-compatible cast puts them in the columns
    // of a table of the user's, and a view of the user's reads them through the extension.
    c.batch_execute(
        "CREATE CAST (bytea AS tapeflow.candle) WITHOUT FUNCTION;
         CREATE CAST (bytea AS tapeflow.profile) WITHOUT FUNCTION;
         CREATE CAST (tapeflow.candle AS bytea) WITHOUT FUNCTION;
         CREATE SCHEMA mine;
         CREATE TABLE mine.minutes (bucket timestamptz PRIMARY KEY, candle tapeflow.candle, profile tapeflow.profile);
         CREATE VIEW mine.volumes AS SELECT bucket, tapeflow.volume(candle), tapeflow.poc(profile) FROM mine.minutes;",
    )
    .await
    .unwrap();
    for m in minutes {
        c.execute(
            "INSERT INTO mine.minutes VALUES ($1::text::timestamptz, decode($2, 'hex')::tapeflow.candle,
                                             decode($3, 'hex')::tapeflow.profile)",
            &[&s(&m["bucket"]), &s(&m["candle"]), &s(&m["profile"])],
        )
        .await
        .unwrap();
    }
    let stored = lines(&c, "SELECT encode(candle::bytea, 'hex') FROM mine.minutes ORDER BY bucket").await;
    assert!(stored.iter().all(|h| h.starts_with("01")), "version 1 bytes are stored: {stored:?}");

    let readings =
        format!("SELECT {CANDLE_READINGS} || ' ' || {PROFILE_READINGS} FROM mine.minutes ORDER BY bucket");
    let levels =
        "SELECT format('%s', l) FROM mine.minutes b, tapeflow.levels(b.profile) l ORDER BY b.bucket, l.price";
    let expected: Vec<String> = minutes
        .iter()
        .map(|m| format!("{} {}", s(&m["candle_readings"]), non_summed(s(&m["profile_readings"]))))
        .collect();
    let expected_levels: Vec<String> = minutes
        .iter()
        .flat_map(|m| m["levels"].as_array().unwrap().iter().map(|l| s(l).to_string()))
        .collect();
    let before = (lines(&c, &readings).await, lines(&c, levels).await);
    assert_eq!(before.0, expected, "this library reads 0.1.0's values as 0.1.0 did");
    assert_eq!(before.1, expected_levels);

    c.batch_execute("ALTER EXTENSION tapeflow UPDATE").await.unwrap();
    assert_eq!(version(&c).await, [CURRENT]);
    let after = (lines(&c, &readings).await, lines(&c, levels).await);
    assert_eq!(after, before, "the same readings after the update");
    assert_eq!(lines(&c, "SELECT count(*)::text FROM mine.volumes").await, ["5"]);

    // Sums across rows are the correctly rounded exact sums of the stored rows; 0.1.0 added
    // them as doubles (the fixture keeps what it read).
    let summed = lines(
        &c,
        "SELECT format('%s %s', tapeflow.total_volume(profile), tapeflow.delta(profile)) FROM mine.minutes ORDER BY bucket",
    )
    .await;
    for (line, m) in summed.iter().zip(minutes) {
        let rows: Vec<&str> = m["levels"].as_array().unwrap().iter().map(s).collect();
        let total = exact_sum(&rows.iter().map(|l| field(l, 1)).collect::<Vec<_>>());
        let delta = rounded(rows.iter().map(|l| units(field(l, 2)) - units(field(l, 3))).sum());
        let old_total = field(s(&m["profile_readings"]), 5);
        assert!((total - old_total).abs() <= 1e-12, "{total} vs 0.1.0's {old_total}");
        let got: Vec<f64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!(got, [total, delta], "{line}");
    }

    // The old text form is still accepted, as the same values.
    for m in minutes {
        let same: bool = c
            .query_one(
                "SELECT $1::text::tapeflow.candle::text = candle::text AND $2::text::tapeflow.profile::text = profile::text
                 FROM mine.minutes WHERE bucket = $3::text::timestamptz",
                &[&s(&m["candle_text"]), &s(&m["profile_text"]), &s(&m["bucket"])],
            )
            .await
            .unwrap()
            .get(0);
        assert!(same, "{}", s(&m["bucket"]));
    }

    // A release is installed extension first, then the schema's migrations, which may use what
    // the new version adds. The stored minutes go, bytes as they are, to the table the SQL
    // functions read.
    migrate(&db);
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size, asset_class, timezone, session_open, session_close)
         VALUES ('BTCUSDT', 0.01, 'crypto', 'UTC', '00:00', '00:00');
         INSERT INTO tapeflow.bars_1m (symbol, bucket, candle, profile) SELECT 'BTCUSDT', * FROM mine.minutes;",
    )
    .await
    .unwrap();
    let versions =
        lines(&c, "SELECT DISTINCT substr(encode(candle::bytea, 'hex'), 1, 2) FROM tapeflow.bars_1m").await;
    assert_eq!(versions, ["01"]);

    // The five stored minutes roll up into the 00:05 bar exactly: each stored double counts
    // as itself, however the rollup groups them.
    let bar = lines(
        &c,
        "SELECT format('%s %s %s', volume, buy_volume, sell_volume)
         FROM tapeflow.candles('BTCUSDT', '5m', '2020-02-22 00:05+00', '2020-02-22 00:10+00')",
    )
    .await;
    let col = |i| exact_sum(&minutes.iter().map(|m| field(s(&m["candle_readings"]), i)).collect::<Vec<_>>());
    assert_eq!(bar.len(), 1);
    let got: Vec<f64> = bar[0].split(' ').map(|x| x.parse().unwrap()).collect();
    assert_eq!(got, [col(8), col(9), col(10)], "{bar:?}");

    // New writes after the update: a late trade merged into a stored minute by the insert
    // trigger, which stores the minute in the new form.
    c.batch_execute(
        "INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
         VALUES ('2020-02-22 00:05:30+00', 'BTCUSDT', 9672.5, 0.001, 'B', 'late')",
    )
    .await
    .unwrap();
    let merged = lines(
        &c,
        "SELECT format('%s %s %s', substr(encode(candle::bytea, 'hex'), 1, 2), tapeflow.buy_volume(candle),
                       tapeflow.trades(candle))
         FROM tapeflow.bars_1m WHERE bucket = '2020-02-22 00:05+00'",
    )
    .await;
    let first = &minutes[0];
    let old_buy = field(s(&first["candle_readings"]), 9);
    let old_trades = field(s(&first["candle_readings"]), 11);
    let parts: Vec<&str> = merged[0].split(' ').collect();
    assert_eq!(parts[0], "02", "written again in version 2: {merged:?}");
    assert_eq!(parts[1].parse::<f64>().unwrap(), exact_sum(&[old_buy, 0.001]), "{merged:?}");
    assert_eq!(parts[2].parse::<f64>().unwrap(), old_trades + 1.0, "{merged:?}");

    // The upgraded extension is a fresh install, object for object.
    same_objects_as_a_fresh_install(&c, OLD).await;
}

/// The extension's objects in `c` (upgraded from `from`) are those of a fresh install.
async fn same_objects_as_a_fresh_install(c: &tokio_postgres::Client, from: &str) {
    let fresh = empty_db("fresh").await;
    let f = fresh.client().await;
    f.batch_execute("CREATE SCHEMA tapeflow; CREATE EXTENSION tapeflow").await.unwrap();
    assert_eq!(version(&f).await, [CURRENT]);
    let (upgraded, installed) = (lines(c, CATALOG).await, lines(&f, CATALOG).await);
    let only = |a: &[String], b: &[String]| a.iter().filter(|x| !b.contains(x)).cloned().collect::<Vec<_>>();
    assert!(
        upgraded == installed,
        "the upgrade scripts from {from} to {CURRENT} (pg_extension/sql/) do not give a fresh install's objects.\n\
         only after the upgrade:\n{}\nonly in a fresh install:\n{}",
        only(&upgraded, &installed).join("\n"),
        only(&installed, &upgraded).join("\n")
    );
}

/// Every aggregate of `profile_state`/`candle_state` states, over the same trades, as text;
/// serial and parallel plans, grouped and whole, and rollups of the groups.
const AGGREGATES: [&str; 8] = [
    "SELECT tapeflow.profile_agg(p, s, d, 0.01)::text FROM mine.trades",
    "SELECT tapeflow.profile_agg(p, s, d, 0.01, 5)::text FROM mine.trades",
    "SELECT tapeflow.candle_agg(t, p, s, d)::text FROM mine.trades",
    "SELECT tapeflow.candle_agg(t, p, s)::text FROM mine.trades",
    "SELECT string_agg(x, ' ' ORDER BY m) FROM (SELECT m, tapeflow.profile_agg(p, s, d, 0.01)::text || tapeflow.candle_agg(t, p, s, d)::text x
     FROM mine.trades GROUP BY m) g",
    "SELECT tapeflow.rollup(pr)::text || tapeflow.rollup(ca)::text FROM mine.minutes",
    "SELECT (tapeflow.profile_agg(p, s, d, 0.01) IS NULL AND tapeflow.candle_agg(t, p, s) IS NULL)::text FROM mine.trades
     WHERE false",
    "SELECT tapeflow.poc(tapeflow.profile_agg(p, s, d, 0.01))::text FROM mine.trades",
];

async fn aggregate_answers(c: &tokio_postgres::Client) -> Vec<String> {
    let mut out = Vec::new();
    for parallel in [false, true] {
        c.batch_execute(if parallel {
            "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
             SET min_parallel_table_scan_size = 0"
        } else {
            "SET max_parallel_workers_per_gather = 0"
        })
        .await
        .unwrap();
        let plan = lines(c, &format!("EXPLAIN (COSTS OFF) {}", AGGREGATES[0])).await.join("\n");
        assert_eq!(plan.contains("Partial Aggregate"), parallel, "{plan}");
        for q in AGGREGATES {
            out.extend(lines(c, q).await);
        }
    }
    out
}

#[tokio::test]
async fn aggregates_of_the_previous_release_become_sql_typed_with_the_same_answers() {
    let db = empty_db("upgrade_prev").await;
    let c = db.client().await;
    c.batch_execute(&format!("CREATE SCHEMA tapeflow; CREATE EXTENSION tapeflow VERSION '{PREVIOUS}'"))
        .await
        .unwrap_or_else(|e| panic!("release {PREVIOUS}'s install script is not installed: {e:?}"));
    // Decimal sizes: exact sums give the same bits in any plan, so serial and parallel answers,
    // before and after, must all agree to the last digit.
    c.batch_execute(
        "CREATE SCHEMA mine;
         CREATE TABLE mine.trades AS SELECT timestamptz '2024-03-04 14:30+00' + i * interval '13 ms' AS t,
                50 + ((i::bigint * 7919) % 400) / 100.0 AS p, ((1 + i % 13) / 1000.0)::float8 AS s,
                (CASE WHEN i % 3 = 0 THEN 'B' WHEN i % 3 = 1 THEN 'S' ELSE 'N' END)::\"char\" AS d, i / 5000 AS m
         FROM generate_series(1, 100000) i;
         INSERT INTO mine.trades VALUES (now(), NULL, 1, 'B', 0), (NULL, 10, 1, 'B', 0);
         ANALYZE mine.trades;
         CREATE TABLE mine.minutes AS SELECT m, tapeflow.profile_agg(p, s, d, 0.01) pr, tapeflow.candle_agg(t, p, s, d) ca
         FROM mine.trades GROUP BY m;",
    )
    .await
    .unwrap();
    let stypes = "SELECT string_agg(DISTINCT aggtranstype::regtype::text, ' ') FROM pg_aggregate
                  WHERE aggfnoid::regproc::text IN ('tapeflow.profile_agg', 'tapeflow.candle_agg', 'tapeflow.rollup')";
    assert_eq!(lines(&c, stypes).await, ["internal"]);
    let before = aggregate_answers(&c).await;
    assert_eq!(before.len(), 2 * AGGREGATES.len());
    assert_eq!(before[..AGGREGATES.len()], before[AGGREGATES.len()..], "serial = parallel at {PREVIOUS}");

    c.batch_execute("ALTER EXTENSION tapeflow UPDATE").await.unwrap();
    assert_eq!(version(&c).await, [CURRENT]);
    assert_eq!(lines(&c, stypes).await, ["tapeflow.candle_state tapeflow.profile_state"]);
    let after = aggregate_answers(&c).await;
    assert_eq!(after, before, "the same answers after the update, serial and parallel");
    same_objects_as_a_fresh_install(&c, PREVIOUS).await;
}

/// The development refresh upgrades an older version in place, keeping the data.
#[tokio::test]
async fn db_refresh_upgrades_in_place() {
    let db = empty_db("refresh").await;
    let c = db.client().await;
    c.batch_execute(&format!(
        "CREATE SCHEMA tapeflow; CREATE EXTENSION tapeflow VERSION '{OLD}';
         CREATE TABLE tapeflow.kept AS SELECT tapeflow.candle_agg(t, p, s, 'B') AS candle
         FROM (VALUES (timestamptz '2024-03-04 15:00:00+00', 10.0, 0.1), ('2024-03-04 15:00:01+00', 10.0, 0.2)) v(t, p, s)"
    ))
    .await
    .unwrap();
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/db-refresh-extension.sh"))
        .arg(&db.url)
        .output()
        .expect("run db-refresh-extension.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("upgraded from {OLD} to {CURRENT}")), "{stdout}");
    let v = lines(
        &c,
        "SELECT format('%s %s %s', e.extversion, obj_description(e.oid, 'pg_extension') LIKE 'build %',
                       (SELECT tapeflow.buy_volume(candle) FROM tapeflow.kept))
         FROM pg_extension e WHERE e.extname = 'tapeflow'",
    )
    .await;
    // The candle was written before the update (by this build's library): 0.1 + 0.2 exactly.
    assert_eq!(v, [format!("{CURRENT} t 0.30000000000000004")]);
}
