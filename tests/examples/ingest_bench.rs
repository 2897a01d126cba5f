//! `bench/run.sh ingest`: the tick write path against a plain COPY, before and after
//! `sql/013_ingest.sql`, in one run; then tick → browser latency through the release
//! `tapeflow-web`.
//!
//! The rows: `BENCH_INGEST_TICKS` (1,000,000) trades of `BENCH_INGEST_SYMBOLS` (10) symbols in
//! `BENCH_INGEST_BATCH` (10,000)-row batches, in time order across symbols as a feed delivers
//! them. With `BENCH_INGEST_TRADES` (a TAQ trades CSV, `DT,EX,SYMBOL,COND,SIZE,PRICE,CORR`)
//! every symbol replays those real trades (times, sizes, venues, sale conditions; prices scaled
//! to the symbol), shifted by two days per pass until it has its share; without it the trades
//! are a seeded random walk.
//!
//! For each database given (`BENCH_INGEST_URL`: the plain-PostgreSQL path; `BENCH_INGEST_TS_URL`:
//! TimescaleDB, when installed), migrated up to 012 by the caller:
//!   1. baseline: the same batches COPYed into an unindexed table with the ticks' columns;
//!   2. before: the old write path (COPY → staging → INSERT … ON CONFLICT) on the old schema;
//!   3. the migrations from 013 on, applied over those stored ticks;
//!   4. after: `tapeflow_db::copy::write_ticks` on the new schema, from empty tables, and (plain
//!      path) the same batches into tables with only the unique key, in three layouts, and
//!      the same rows by `INSERT … SELECT` into keys with a text and with an int4 symbol;
//!   5. the feeder's path: the same ticks sent one by one through `tapeflow_feeders::sink`
//!      (the bounded queue, batches of `BENCH_INGEST_BATCH`, watermark and reject handling),
//!      with one writer and with `TAPEFLOW_FEED_WRITERS` (one per core, at most 4), each from
//!      empty tables; timed from the first send to the answer of a flush after the last;
//!   6. a replay of the first batches (every trade stored already);
//!   7. the baseline again;
//!   8. the goal's figure: the baseline and the feeder's path with its default writer count in
//!      turn, `BENCH_INGEST_ROUNDS` (5) times, the ratio taken pair by pair; the median is
//!      what is compared with 0.5x.
//!
//! Each batch is one transaction. Times are wall-clock from the first batch to the last commit;
//! the server backend's CPU time and the WAL written are shown beside them. The rollups of
//! before and after must agree, and every tick must be stored once.
//!
//! Latency (`BENCH_LATENCY_RATE` ticks/s, 10,000, written every `BENCH_LATENCY_INTERVAL_MS`,
//! 100, for `BENCH_LATENCY_SECS`, 30): a fresh database on the new schema, tapeflow-web and one
//! logged-in `/events` client. Each batch announces the newest minute of each symbol; an event
//! is matched to its batch by (symbol, minute, trade count). Measured on this process's
//! monotonic clock from the moment `write_ticks` returned (the commit acknowledged) and from the
//! moment it was called, to the moment the client parsed the event.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tapeflow_db::copy::{write_ticks, TickRow};
use tapeflow_tests::{add_user, free_port, login, repo_root, spawn_web, SseReader, TestDb};
use tokio_postgres::Client;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

const SYMBOLS: [(&str, f64); 10] = [
    ("AAPL", 185.0),
    ("MSFT", 370.0),
    ("NVDA", 480.0),
    ("AMZN", 150.0),
    ("GOOGL", 140.0),
    ("META", 350.0),
    ("TSLA", 240.0),
    ("AMD", 140.0),
    ("JPM", 170.0),
    ("SPY", 470.0),
];

/// One trade of the source tape.
struct Trade {
    time: DateTime<Utc>,
    exchange: String,
    conditions: Option<Vec<String>>,
    size: f64,
    price: f64,
}

fn read_taq(path: &str) -> Vec<Trade> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 6 {
            continue;
        }
        let Ok(time) = DateTime::parse_from_rfc3339(f[0]) else { continue };
        let (Ok(size), Ok(price)) = (f[4].parse::<f64>(), f[5].parse::<f64>()) else { continue };
        // TAQ's sale condition field is up to four one-letter codes.
        let codes: Vec<String> = f[3].chars().filter(|c| !c.is_whitespace()).map(String::from).collect();
        out.push(Trade {
            time: time.with_timezone(&Utc),
            exchange: f[1].to_string(),
            conditions: (!codes.is_empty()).then_some(codes),
            size,
            price,
        });
    }
    assert!(!out.is_empty(), "no trades in {path}");
    out
}

/// A seeded random walk, for when no real tape is given.
fn synthetic(n: usize) -> Vec<Trade> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let start = DateTime::parse_from_rfc3339("2024-03-04T14:30:00Z").unwrap().with_timezone(&Utc);
    let (mut t, mut p) = (start, 100.0f64);
    (0..n)
        .map(|_| {
            t += ChronoDuration::microseconds((next() % 400_000) as i64);
            p = (p + ((next() % 5) as f64 - 2.0) * 0.01).max(1.0);
            Trade {
                time: t,
                exchange: "Q".into(),
                conditions: None,
                size: (1 + next() % 300) as f64,
                price: p,
            }
        })
        .collect()
}

/// `n` ticks over `symbols` symbols from the tape, merged in time order as a feed delivers them.
fn build_rows(tape: &[Trade], n: usize, symbols: usize) -> Vec<TickRow> {
    let per_symbol = n / symbols;
    let first = tape[0].price;
    let mut rows = Vec::with_capacity(n);
    for (k, (sym, base)) in SYMBOLS.iter().cycle().take(symbols).enumerate() {
        let sym = if k < SYMBOLS.len() { sym.to_string() } else { format!("{sym}{k}") };
        for j in 0..per_symbol {
            let (pass, i) = (j / tape.len(), j % tape.len());
            let t = &tape[i];
            rows.push(TickRow {
                // Each pass two days later; symbols a few milliseconds apart.
                time: t.time
                    + ChronoDuration::days(2 * pass as i64)
                    + ChronoDuration::milliseconds(37 * k as i64),
                symbol: sym.clone(),
                price: (t.price * base / first * 100.0).round() / 100.0,
                size: t.size,
                side: b'N',
                side_source: "none",
                trade_id: (pass * 1_000_000 + i).to_string(),
                exchange: Some(t.exchange.clone()),
                conditions: t.conditions.clone(),
            });
        }
    }
    rows.sort_by(|a, b| (a.time, &a.symbol).cmp(&(b.time, &b.symbol)));
    rows
}

const COLUMNS: &str = tapeflow_db::copy::TICK_COLUMNS;

/// Binary COPY of `rows` with `statement` (a `COPY … FROM STDIN BINARY` of [`COLUMNS`]), by
/// the feeder's own encoder.
async fn copy_rows<R: std::borrow::Borrow<TickRow> + Sync>(c: &Client, statement: &str, rows: &[R]) -> u64 {
    let sink = c.copy_in(statement).await.unwrap();
    tapeflow_db::copy::copy_ticks(sink, rows).await.unwrap()
}

/// The write path before 013 (`write_ticks` as it was): staging, then the ordered upsert, in
/// one transaction.
async fn old_write_ticks(c: &Client, rows: &[TickRow]) -> u64 {
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute(
        "SET LOCAL client_min_messages = warning;
         CREATE TEMP TABLE IF NOT EXISTS staging_ticks (LIKE tapeflow.ticks INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
    )
    .await
    .unwrap();
    copy_rows(c, &format!("COPY staging_ticks ({COLUMNS}) FROM STDIN BINARY"), rows).await;
    let n = c
        .execute(
            &format!(
                "INSERT INTO tapeflow.ticks ({COLUMNS}) SELECT {COLUMNS} FROM staging_ticks
                 ORDER BY time, symbol, trade_id ON CONFLICT DO NOTHING"
            ),
            &[],
        )
        .await
        .unwrap();
    c.batch_execute("COMMIT").await.unwrap();
    n
}

/// How a phase writes its batches.
#[derive(Clone, Copy)]
enum Path {
    /// COPY into `bench_copy`, an unindexed table with the ticks' columns.
    PlainCopy,
    /// The old write path.
    Before,
    /// `tapeflow_db::copy::write_ticks`.
    After,
    /// COPY into tables with the ticks' columns and one unique key, nothing else.
    KeyOnly(KeyLayout),
}

/// The key-only tables of [`key_alone`].
#[derive(Clone, Copy)]
enum KeyLayout {
    /// `bench_key`, unique `(symbol, time, trade_id)` as the ticks.
    SymbolFirst,
    /// `bench_key_time`, unique `(time, symbol, trade_id)`.
    TimeFirst,
    /// `bench_key_<i>` for the i-th symbol, keyed as the ticks.
    TablePerSymbol,
}

/// The feeder's path: every row sent through a sink of `writers` writers, then a flush.
///
/// Its CPU is its backends'; the CPU this process used (the feeder's side) is returned beside.
async fn sink_phase(
    c: &Client,
    url: &str,
    rows: &[TickRow],
    batch: usize,
    writers: usize,
) -> (Phase, Option<f64>) {
    use tapeflow_feeders::provider::Record;
    use tapeflow_feeders::sink::{spawn, SinkConfig};
    let records: Vec<Record> = rows.iter().cloned().map(Record::Tick).collect();
    c.batch_execute("CHECKPOINT").await.unwrap();
    let lsn: String = one(c, "SELECT pg_current_wal_lsn()::text").await;
    let cfg =
        SinkConfig { capacity: 200_000, batch_rows: batch, shutdown_grace: Duration::from_secs(10), writers };
    // Its connections are told apart by their name, to add up their backends' CPU.
    let app = "tapeflow_bench_sink";
    let sep = if url.contains('?') { '&' } else { '?' };
    let (sink, done) =
        spawn(format!("{url}{sep}application_name={app}"), cfg, tokio_util::sync::CancellationToken::new());
    // Every writer connected before the clock starts, as in a running feed: a watermark of
    // each symbol (long past) makes each write once.
    let mut symbols: Vec<&str> = rows.iter().map(|r| r.symbol.as_str()).collect();
    symbols.sort();
    symbols.dedup();
    let past = DateTime::parse_from_rfc3339("2000-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
    for s in &symbols {
        sink.send(Record::Watermark { symbol: s.to_string(), complete_until: past }).await.unwrap();
    }
    sink.flush().await.unwrap();
    let pids: Vec<i32> = c
        .query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
            &[&app],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(pids.len(), writers.min(symbols.len()), "one connection a writer");
    let cpu_of = |pids: &[i32]| pids.iter().map(|&p| backend_cpu(p)).sum::<Option<f64>>();
    let cpu0 = cpu_of(&pids);
    let client0 = backend_cpu(std::process::id() as i32);
    let start = Instant::now();
    sink.send_all(records).await.unwrap();
    sink.flush().await.unwrap();
    let wall = start.elapsed();
    let cpu = cpu0.zip(cpu_of(&pids)).map(|(a, b)| b - a);
    let client = client0.zip(backend_cpu(std::process::id() as i32)).map(|(a, b)| b - a);
    drop(sink);
    let written = done.await.unwrap();
    assert_eq!((written.rejected, written.abandoned), (0, 0), "{written:?}");
    let wal: f64 = c
        .query_one("SELECT (pg_current_wal_lsn() - $1::text::pg_lsn)::float8", &[&lsn])
        .await
        .unwrap()
        .get(0);
    (Phase { wall, cpu, wal_mb: wal / 1e6, stored: written.ticks }, client)
}

/// What one phase took.
struct Phase {
    wall: Duration,
    cpu: Option<f64>,
    wal_mb: f64,
    stored: u64,
}

/// CPU seconds the process `pid` (a backend, or this one) has used (Linux; None elsewhere or when unreadable).
fn backend_cpu(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(c: &Client, sql: &str) -> T {
    c.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

/// Writes every batch along `path`, after a checkpoint so that each phase starts alike.
async fn phase(c: &mut Client, batches: &[&[TickRow]], path: Path) -> Phase {
    c.batch_execute("CHECKPOINT").await.unwrap();
    let pid: i32 = one(c, "SELECT pg_backend_pid()").await;
    let lsn: String = one(c, "SELECT pg_current_wal_lsn()::text").await;
    let cpu0 = backend_cpu(pid);
    let copy = format!("COPY bench_copy ({COLUMNS}) FROM STDIN BINARY");
    let symbols = if matches!(path, Path::KeyOnly(_)) { symbols_of(batches) } else { Vec::new() };
    let start = Instant::now();
    let mut stored = 0;
    for b in batches {
        stored += match path {
            Path::PlainCopy => copy_rows(c, &copy, b).await,
            Path::Before => old_write_ticks(c, b).await,
            Path::After => write_ticks(c, b).await.unwrap(),
            Path::KeyOnly(layout) => key_copy(c, b, layout, &symbols).await,
        };
    }
    let wall = start.elapsed();
    let cpu = cpu0.zip(backend_cpu(pid)).map(|(a, b)| b - a);
    let wal: f64 = c
        .query_one("SELECT (pg_current_wal_lsn() - $1::text::pg_lsn)::float8", &[&lsn])
        .await
        .unwrap()
        .get(0);
    Phase { wall, cpu, wal_mb: wal / 1e6, stored }
}

fn show(what: &str, p: &Phase, n: usize, baseline: Option<Duration>) {
    let rate = n as f64 / p.wall.as_secs_f64();
    let cpu = p.cpu.map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".into());
    let ratio =
        baseline.map(|b| format!("{:.2}x", b.as_secs_f64() / p.wall.as_secs_f64())).unwrap_or_default();
    println!(
        "  {what:<44} {:>8.2} {:>8} {:>10.0} {:>8.0} {:>9}",
        p.wall.as_secs_f64(),
        cpu,
        rate,
        p.wal_mb,
        ratio
    );
}

/// The unique key's share, and what its insertion point costs: the batches COPYed into tables
/// with the ticks' columns and only one unique key (no trigger, no checks), each batch in its
/// key's order: the ticks' own `(symbol, time, trade_id)`; the same with the time first; and
/// each symbol's rows into a table of its own keyed like the ticks. With the symbol first, a
/// symbol's trades go in at the right edge of its own key range, in the middle of the index,
/// where PostgreSQL splits a full leaf page in half (its 90/10 split is for the index's right
/// edge, or for narrow fixed-width keys); the two others put every row at an index's right
/// edge, the time-led key at the price of reads of one symbol scanning every symbol's trades,
/// the tables per symbol at the price of a COPY per symbol a batch. Leaf density from
/// pgstattuple, when it is installed.
async fn key_alone(c: &mut Client, batches: &[&[TickRow]], n: usize, base: Duration) {
    let symbols = symbols_of(batches).len();
    let mut ddl = "CREATE TABLE bench_key (LIKE bench_copy, UNIQUE (symbol, time, trade_id));
         CREATE TABLE bench_key_time (LIKE bench_copy, UNIQUE (time, symbol, trade_id));"
        .to_string();
    for i in 0..symbols {
        ddl += &format!("CREATE TABLE bench_key_{i} (LIKE bench_copy, UNIQUE (symbol, time, trade_id));");
    }
    c.batch_execute(&ddl).await.unwrap();
    let stattuple = c.batch_execute("CREATE EXTENSION IF NOT EXISTS pgstattuple").await.is_ok();
    println!("  the key alone: COPY into tables with the ticks' columns and one unique key, no trigger");
    for (layout, what, table) in [
        (KeyLayout::SymbolFirst, "  unique (symbol, time, trade_id)", "bench_key"),
        (KeyLayout::TimeFirst, "  unique (time, symbol, trade_id)", "bench_key_time"),
        (KeyLayout::TablePerSymbol, "  the same, a table per symbol", "bench_key_0"),
    ] {
        let p = phase(c, batches, Path::KeyOnly(layout)).await;
        assert_eq!(p.stored as usize, n, "{what}: every tick stored");
        show(what, &p, n, Some(base));
        let density = if stattuple {
            let d: i32 = one(
                c,
                &format!(
                    "SELECT round(avg_leaf_density)::int FROM pg_index i, pgstatindex(i.indexrelid::regclass)
                     WHERE i.indrelid = '{table}'::regclass"
                ),
            )
            .await;
            format!("leaf pages {d} % full")
        } else {
            "leaf density: pgstattuple is not installed".into()
        };
        println!("      ({density})");
    }
    let mut drop = "DROP TABLE bench_key; DROP TABLE bench_key_time;".to_string();
    for i in 0..symbols {
        drop += &format!("DROP TABLE bench_key_{i};");
    }
    c.batch_execute(&drop).await.unwrap();
}

/// What an integer symbol id in the key would save: the rows of `bench_copy` inserted by one
/// `INSERT … SELECT` in time order (the feed's order, each row at its own symbol's edge) into
/// a heap with no index, and into tables keyed `(symbol, time, trade_id)` with the text symbol
/// and with an `int4` id in its place. The key's cost is the keyed insert's backend CPU minus
/// the unindexed one's, from the same statement shape.
async fn key_types(c: &Client) {
    c.batch_execute(
        "CREATE TABLE bench_ids AS SELECT symbol, (row_number() OVER (ORDER BY symbol))::int4 AS id
             FROM (SELECT DISTINCT symbol FROM bench_copy) s;
         CREATE TABLE bench_src_id AS SELECT b.time, i.id AS symbol, b.price, b.size, b.side, b.side_source,
             b.trade_id, b.exchange, b.conditions FROM bench_copy b JOIN bench_ids i USING (symbol);",
    )
    .await
    .unwrap();
    println!("  the key's symbol type: INSERT … SELECT of the same rows in time order");
    let pid: i32 = one(c, "SELECT pg_backend_pid()").await;
    let mut unindexed = None;
    for (what, source, key) in [
        ("  no index", "bench_copy", ""),
        ("  unique (symbol text, time, trade_id)", "bench_copy", ", UNIQUE (symbol, time, trade_id)"),
        ("  unique (symbol int4, time, trade_id)", "bench_src_id", ", UNIQUE (symbol, time, trade_id)"),
    ] {
        c.batch_execute(&format!("CREATE TABLE bench_typed (LIKE {source}{key}); CHECKPOINT")).await.unwrap();
        let cpu0 = backend_cpu(pid);
        let start = Instant::now();
        let n = c
            .execute(
                &format!("INSERT INTO bench_typed SELECT * FROM {source} ORDER BY time, symbol, trade_id"),
                &[],
            )
            .await
            .unwrap();
        let wall = start.elapsed().as_secs_f64();
        let cpu = cpu0.zip(backend_cpu(pid)).map(|(a, b)| b - a);
        c.batch_execute("DROP TABLE bench_typed").await.unwrap();
        let shown = cpu.map(|c| format!("{c:.2} CPU-s")).unwrap_or_else(|| "- CPU-s".into());
        let over = match (unindexed, cpu) {
            (Some(h), Some(c)) if !key.is_empty() => format!(", the key {:.2} CPU-s", c - h),
            _ => String::new(),
        };
        println!("  {what:<44} {n} rows, {wall:.2} s, {shown}{over}");
        if key.is_empty() {
            unindexed = cpu;
        }
    }
    c.batch_execute("DROP TABLE bench_ids; DROP TABLE bench_src_id").await.unwrap();
}

/// The symbols of the batches, sorted.
fn symbols_of<'a>(batches: &[&'a [TickRow]]) -> Vec<&'a str> {
    let mut symbols: Vec<&str> = batches.iter().flat_map(|b| b.iter().map(|r| r.symbol.as_str())).collect();
    symbols.sort_unstable();
    symbols.dedup();
    symbols
}

/// One batch into the key-only tables of [`key_alone`], in one transaction, in the order of
/// the table's key; `symbols` numbers the tables per symbol.
async fn key_copy(c: &mut Client, batch: &[TickRow], layout: KeyLayout, symbols: &[&str]) -> u64 {
    // In the ticks' key order, by the function write_ticks uses.
    let rows = tapeflow_db::copy::in_key_order(batch);
    let parts: Vec<(String, Vec<&TickRow>)> = match layout {
        KeyLayout::SymbolFirst => vec![("bench_key".into(), rows)],
        KeyLayout::TimeFirst => {
            let mut rows = rows;
            rows.sort_by(|a, b| {
                (a.time, a.symbol.as_bytes(), a.trade_id.as_bytes()).cmp(&(
                    b.time,
                    b.symbol.as_bytes(),
                    b.trade_id.as_bytes(),
                ))
            });
            vec![("bench_key_time".into(), rows)]
        }
        KeyLayout::TablePerSymbol => rows
            .chunk_by(|a, b| a.symbol == b.symbol)
            .map(|mine| {
                let i = symbols.binary_search(&mine[0].symbol.as_str()).expect("a symbol of the batches");
                (format!("bench_key_{i}"), mine.to_vec())
            })
            .collect(),
    };
    let tx = c.transaction().await.unwrap();
    let mut stored = 0;
    for (table, mine) in parts {
        let sink = tx.copy_in(&format!("COPY {table} ({COLUMNS}) FROM STDIN BINARY")).await.unwrap();
        stored += tapeflow_db::copy::copy_ticks(sink, &mine).await.unwrap();
    }
    tx.commit().await.unwrap();
    stored
}

/// The rollups in a form two runs can compare (VWAP rounded: its float sum depends on the order
/// trades were added in).
const BARS: &str = "SELECT symbol, bucket, tapeflow.open(candle) o, tapeflow.high(candle) h, tapeflow.low(candle) l,
        tapeflow.close(candle) c, tapeflow.volume(candle) v, tapeflow.buy_volume(candle) bv,
        tapeflow.sell_volume(candle) sv, tapeflow.trades(candle) n, round(tapeflow.vwap(candle)::numeric, 6) vwap,
        profile::text AS profile
    FROM tapeflow.bars_1m";

async fn ingest(label: &str, url: &str, timescaledb: bool, rows: &[TickRow], batch: usize) {
    let n = rows.len();
    let batches: Vec<&[TickRow]> = rows.chunks(batch).collect();
    let mut c = tapeflow_db::connect(url, Duration::from_secs(10)).await.unwrap();
    let old_schema: bool = one(
        &c,
        "SELECT to_regclass('tapeflow.bars_1m') IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM tapeflow.schema_migrations WHERE version >= '013')
            AND EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'tapeflow.ticks'::regclass AND contype = 'f')",
    )
    .await;
    assert!(old_schema, "{label}: the database must be migrated up to 012 exactly (bench/run.sh does that)");
    let symbols: Vec<String> = {
        let mut s: Vec<String> = rows.iter().map(|r| r.symbol.clone()).collect();
        s.sort();
        s.dedup();
        s
    };
    c.execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size) SELECT unnest($1::text[]), 0.01 ON CONFLICT DO NOTHING",
        &[&symbols],
    )
    .await
    .unwrap();
    c.batch_execute("DROP TABLE IF EXISTS bench_copy; CREATE TABLE bench_copy (LIKE tapeflow.ticks)")
        .await
        .unwrap();

    println!();
    println!(
        "{label}: {n} ticks of {} symbols in {}-row batches, one transaction each",
        symbols.len(),
        batch
    );
    println!(
        "  {:<44} {:>8} {:>8} {:>10} {:>8} {:>9}",
        "", "wall s", "cpu s", "ticks/s", "WAL MB", "vs COPY"
    );

    let base1 = phase(&mut c, &batches, Path::PlainCopy).await;
    assert_eq!(base1.stored as usize, n);
    show("plain COPY into an unindexed table", &base1, n, None);

    let before = phase(&mut c, &batches, Path::Before).await;
    assert_eq!(before.stored as usize, n, "the old path stored every tick once");
    show("before (schema up to 012, staging + upsert)", &before, n, Some(base1.wall));
    if !timescaledb {
        c.batch_execute(&format!(
            "DROP TABLE IF EXISTS bench_bars_before; CREATE TABLE bench_bars_before AS {BARS}"
        ))
        .await
        .unwrap();
    }

    // The migration itself, over the stored ticks.
    let started = Instant::now();
    let status = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/migrate.sh"))
        .arg(url)
        .env("TAPEFLOW_TIMESCALEDB", if timescaledb { "on" } else { "off" })
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run migrate.sh");
    assert!(status.success(), "migrations from 013 on failed");
    let migrated = started.elapsed();
    let kept: i64 = one(&c, "SELECT count(*) FROM tapeflow.ticks").await;
    assert_eq!(kept as usize, n, "the migration kept every tick");
    let indexes: Vec<String> = c
        .query("SELECT indexdef FROM pg_indexes WHERE schemaname = 'tapeflow' AND tablename = 'ticks' ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    println!("  migrations from 013 on over the {n} stored ticks: {:.2} s", migrated.as_secs_f64());
    for i in &indexes {
        println!("    {i}");
    }

    // Emptied before each write (on TimescaleDB bars_1m is the aggregate over ticks).
    let empty =
        if timescaledb { "TRUNCATE tapeflow.ticks" } else { "TRUNCATE tapeflow.ticks, tapeflow.bars_1m" };
    c.batch_execute(empty).await.unwrap();
    let after = phase(&mut c, &batches, Path::After).await;
    assert_eq!(after.stored as usize, n, "the new path stored every tick once");
    let how = if timescaledb {
        "after (013, 026: COPY into ticks, row triggers)"
    } else {
        "after (013: COPY into ticks, one key)"
    };
    show(how, &after, n, Some(base1.wall));
    if !timescaledb {
        key_alone(&mut c, &batches, n, base1.wall).await;
        key_types(&c).await;
    }

    // The feeder's path, with one writer and with its default count.
    let writers = tapeflow_feeders::sink::SinkConfig::from_env().unwrap().writers;
    let mut fed = Vec::new();
    for w in if writers > 1 { vec![1, writers] } else { vec![1] } {
        c.batch_execute(empty).await.unwrap();
        let (p, client) = sink_phase(&c, url, rows, batch, w).await;
        assert_eq!(p.stored as usize, n, "the feeder stored every tick once ({w} writers)");
        let stored: i64 = one(&c, "SELECT count(*) FROM tapeflow.ticks").await;
        assert_eq!(stored as usize, n);
        show(&format!("feeder: sink, {w} writer{}", if w > 1 { "s" } else { "" }), &p, n, Some(base1.wall));
        if let Some(client) = client {
            println!("    (the feeder's own process: {client:.2} CPU-s)");
        }
        fed.push((w, p.wall));
    }

    let replayed: Vec<&[TickRow]> = batches.iter().take(10).copied().collect();
    let replay = phase(&mut c, &replayed, Path::After).await;
    assert_eq!(replay.stored, 0, "a replay stores nothing");
    // What the feeder stored is the rows themselves, every column: the same multiset as the
    // plain COPY's.
    let differ: i64 = one(
        &c,
        "SELECT count(*) FROM ((TABLE bench_copy EXCEPT ALL SELECT * FROM tapeflow.ticks)
            UNION ALL (SELECT * FROM tapeflow.ticks EXCEPT ALL TABLE bench_copy)) d",
    )
    .await;
    assert_eq!(differ, 0, "{label}: the stored ticks differ from the rows sent");

    c.batch_execute("TRUNCATE bench_copy").await.unwrap();
    let base2 = phase(&mut c, &batches, Path::PlainCopy).await;
    show("plain COPY again", &base2, n, None);
    let base = (base1.wall + base2.wall) / 2;
    println!(
        "  replay of {} batches already stored: {:.1} ms per batch (nothing stored)",
        replayed.len(),
        replay.wall.as_secs_f64() * 1e3 / replayed.len() as f64
    );

    let stored: i64 = one(&c, "SELECT count(*) FROM tapeflow.ticks").await;
    assert_eq!(stored as usize, n);
    if !timescaledb {
        let rolled: i64 = one(&c, "SELECT sum(tapeflow.trades(candle))::bigint FROM tapeflow.bars_1m").await;
        assert_eq!(rolled as usize, n, "the rollups count every tick once");
        let differ: i64 = one(
            &c,
            &format!(
                "SELECT count(*) FROM ((TABLE bench_bars_before EXCEPT {BARS}) UNION ALL ({BARS} EXCEPT TABLE bench_bars_before)) d"
            ),
        )
        .await;
        assert_eq!(differ, 0, "the rollups of before and after differ");
        println!(
            "  rollups: the same {} minutes before and after (the feeder's, with its writers)",
            one::<i64>(&c, "SELECT count(*) FROM tapeflow.bars_1m").await
        );
    }
    let ratio = |d: Duration| base.as_secs_f64() / d.as_secs_f64();
    let feeder: Vec<String> = fed.iter().map(|(w, d)| format!("{w} writer(s) {:.2}x", ratio(*d))).collect();
    println!(
        "  {label}: before {:.2}x, after {:.2}x the plain COPY (mean of the two COPY runs, {:.2} s); after is {:.1}x faster than before; feeder {}",
        ratio(before.wall),
        ratio(after.wall),
        base.as_secs_f64(),
        before.wall.as_secs_f64() / after.wall.as_secs_f64(),
        feeder.join(", "),
    );

    // The goal's figure: the plain COPY and the feeder's path as it runs (its default writer
    // count) in turn, BENCH_INGEST_ROUNDS times, the ratio taken pair by pair and its median
    // kept. The same COPY has taken from 1.0 to 2.0 s on this kind of machine from one run to
    // the next; a pair runs seconds apart, so a drift of the machine's speed moves both sides.
    let rounds = env_usize("BENCH_INGEST_ROUNDS", 5).max(1);
    let mut pairs = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        c.batch_execute("TRUNCATE bench_copy").await.unwrap();
        let copy = phase(&mut c, &batches, Path::PlainCopy).await;
        c.batch_execute(empty).await.unwrap();
        let (p, _) = sink_phase(&c, url, rows, batch, writers).await;
        assert_eq!(p.stored as usize, n, "the feeder stored every tick once ({writers} writers)");
        pairs.push((copy.wall, p.wall));
    }
    let mut ratios: Vec<f64> =
        pairs.iter().map(|(copy, fed)| copy.as_secs_f64() / fed.as_secs_f64()).collect();
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let shown: Vec<String> = pairs
        .iter()
        .map(|(copy, fed)| format!("{:.2}/{:.2} s", copy.as_secs_f64(), fed.as_secs_f64()))
        .collect();
    println!(
        "  {label}, {rounds} pairs (plain COPY / feeder with {writers} writers): {}; ratios {:.2}x to {:.2}x, median {median:.2}x; goal 0.5x: {}",
        shown.join(", "),
        ratios[0],
        ratios[ratios.len() - 1],
        if median >= 0.5 { "met" } else { "not met" }
    );
    c.batch_execute("DROP TABLE bench_copy; DROP TABLE IF EXISTS bench_bars_before").await.unwrap();
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// An announcement's identity: symbol, minute (µs since the epoch), trade count.
type Key = (String, i64, i64);

async fn latency(timescaledb: bool, tape: &[Trade]) {
    let rate = env_usize("BENCH_LATENCY_RATE", 10_000);
    let interval = Duration::from_millis(env_usize("BENCH_LATENCY_INTERVAL_MS", 100) as u64);
    let secs = env_usize("BENCH_LATENCY_SECS", 30);
    let per_batch = (rate as f64 * interval.as_secs_f64()).round() as usize;
    let batches = (secs as f64 / interval.as_secs_f64()).round() as usize;
    let symbols: Vec<&str> = SYMBOLS.iter().map(|(s, _)| *s).collect();

    let db = TestDb::create("ingestlat", timescaledb).await;
    let mut c = db.client().await;
    c.execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size) SELECT unnest($1::text[]), 0.01",
        &[&symbols],
    )
    .await
    .unwrap();
    add_user(&db, "bench", "viewer", "bench-password");
    let (_web, base) = spawn_web(&db, free_port(), &[("RUST_LOG", "warn".into())]).await;
    let http = login(&base, "bench", "bench-password").await;
    let mut sse = SseReader::connect_with(&http, &format!("{base}/events")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Which batch each announcement belongs to, and when that batch was written.
    let expected: Arc<Mutex<HashMap<Key, usize>>> = Arc::default();
    let mut written: Vec<Option<(Instant, Instant)>> = vec![None; batches];
    let reader = {
        let expected = expected.clone();
        tokio::spawn(async move {
            let mut got: Vec<(Key, Instant)> = Vec::new();
            while let Some((event, data)) = sse.next(Duration::from_secs(5)).await {
                let at = Instant::now();
                if event != "candle" {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_str(&data).unwrap();
                let bucket =
                    DateTime::parse_from_rfc3339(v["bucket"].as_str().unwrap()).unwrap().timestamp_micros();
                let key = (v["symbol"].as_str().unwrap().to_string(), bucket, v["trades"].as_i64().unwrap());
                got.push((key, at));
                if got.len() == expected.lock().unwrap().len() && got.len() >= batches * 10 {
                    break;
                }
            }
            got
        })
    };

    let mut counts: HashMap<(String, i64), i64> = HashMap::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    for k in 0..batches {
        tick.tick().await;
        let now = Utc::now();
        let step = interval.as_micros() as i64 / per_batch as i64;
        let rows: Vec<TickRow> = (0..per_batch)
            .map(|i| {
                let t = &tape[(k * per_batch + i) % tape.len()];
                let (sym, base) = SYMBOLS[i % SYMBOLS.len()];
                TickRow {
                    time: now - ChronoDuration::microseconds(step * (per_batch - i) as i64),
                    symbol: sym.into(),
                    price: (t.price * base / tape[0].price * 100.0).round() / 100.0,
                    size: t.size,
                    side: b'N',
                    side_source: "none",
                    trade_id: format!("live-{k}-{i}"),
                    exchange: Some(t.exchange.clone()),
                    conditions: t.conditions.clone(),
                }
            })
            .collect();
        {
            let mut newest: HashMap<&str, i64> = HashMap::new();
            for r in &rows {
                let minute = r.time.timestamp_micros().div_euclid(60_000_000) * 60_000_000;
                *counts.entry((r.symbol.clone(), minute)).or_default() += 1;
                let e = newest.entry(r.symbol.as_str()).or_insert(minute);
                *e = (*e).max(minute);
            }
            let mut exp = expected.lock().unwrap();
            for (sym, minute) in newest {
                exp.insert((sym.to_string(), minute, counts[&(sym.to_string(), minute)]), k);
            }
        }
        let called = Instant::now();
        write_ticks(&mut c, &rows).await.unwrap();
        written[k] = Some((called, Instant::now()));
    }
    let elapsed = started.elapsed();
    let got = reader.await.unwrap();

    let expected = expected.lock().unwrap();
    let (mut from_commit, mut from_call) = (Vec::new(), Vec::new());
    for (key, at) in &got {
        if let Some(&k) = expected.get(key) {
            let (called, committed) = written[k].unwrap();
            from_commit.push(at.saturating_duration_since(committed).as_secs_f64() * 1e3);
            from_call.push((*at - called).as_secs_f64() * 1e3);
        }
    }
    let missing = expected.len() - from_commit.len();
    from_commit.sort_by(|a, b| a.total_cmp(b));
    from_call.sort_by(|a, b| a.total_cmp(b));
    assert!(!from_commit.is_empty(), "no announcement reached the client");
    println!();
    println!(
        "tick -> browser ({}): {} ticks/s for {:.1} s ({} batches of {per_batch}, one every {} ms), {} announcements, {missing} missing",
        if timescaledb { "TimescaleDB" } else { "plain PostgreSQL" },
        (batches * per_batch) as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        batches,
        interval.as_millis(),
        from_commit.len()
    );
    println!(
        "  commit acknowledged -> SSE event parsed:  p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (goal p99 < 50 ms: {})",
        pct(&from_commit, 0.5),
        pct(&from_commit, 0.99),
        from_commit.last().unwrap(),
        if pct(&from_commit, 0.99) < 50.0 { "met" } else { "not met" }
    );
    println!(
        "  write_ticks called   -> SSE event parsed:  p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(&from_call, 0.5),
        pct(&from_call, 0.99),
        from_call.last().unwrap()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_usize("BENCH_INGEST_TICKS", 1_000_000);
    let symbols = env_usize("BENCH_INGEST_SYMBOLS", 10);
    let batch = env_usize("BENCH_INGEST_BATCH", 10_000);
    let tape = match std::env::var("BENCH_INGEST_TRADES") {
        Ok(path) if !path.is_empty() => {
            let t = read_taq(&path);
            println!("rows: {} real TAQ trades replayed per symbol ({path})", t.len());
            t
        }
        _ => {
            println!("rows: a seeded random walk (no BENCH_INGEST_TRADES given)");
            synthetic(n / symbols)
        }
    };
    let rows = build_rows(&tape, n, symbols);

    let plain = std::env::var("BENCH_INGEST_URL").expect("BENCH_INGEST_URL: a database migrated up to 012");
    ingest("plain PostgreSQL", &plain, false, &rows, batch).await;
    match std::env::var("BENCH_INGEST_TS_URL") {
        Ok(url) if !url.is_empty() => ingest("TimescaleDB", &url, true, &rows, batch).await,
        _ => println!("\nTimescaleDB: skipped (not installed or not preloaded in the cluster)"),
    }
    drop(rows);
    latency(false, &tape).await;
    if std::env::var("BENCH_INGEST_TS_URL").is_ok_and(|u| !u.is_empty()) {
        latency(true, &tape).await;
    }
}
