//! Scale-out on Citus: the same real trades written through the feeders' write path into one
//! server (a TestDb on the project cluster) and into a private Citus cluster (a coordinator
//! and two workers), and every analytics query of the README's SQL API compared exactly, as
//! text (doubles printed in their shortest exact form). Also: a cross-symbol profile_agg,
//! candle_agg or rollup() is aggregated partially on the workers and combined on the
//! coordinator (EXPLAIN shows worker_partial_agg / coord_combine_agg), a LISTEN client of the
//! coordinator receives the candle announcements of a write, and the coordinator's scheduler
//! evaluates a strategy over the distributed bars.
//!
//! Without Citus installed the test prints "SKIPPED: Citus is not installed" and passes.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use tapeflow_db::amend::{amend_ticks, TickAmend, TickReplacement};
use tapeflow_db::copy::{write_ticks, TickRow};
use tapeflow_tests::citus_cluster::{citus_installed, CitusCluster};
use tapeflow_tests::ground_truth::{data_dir, GroundTruthSet};
use tapeflow_tests::TestDb;
use tokio_postgres::{AsyncMessage, Client, SimpleQueryMessage};

/// Microseconds between the Unix epoch and the PostgreSQL epoch, from which trades are counted.
const UNIX_TO_PG_EPOCH_US: i64 = 946_684_800 * 1_000_000;

/// The symbols the data sets become: name, tick size, asset class, timezone, session.
fn symbol_of(
    set: GroundTruthSet,
) -> (&'static str, f64, &'static str, &'static str, &'static str, &'static str) {
    match set {
        GroundTruthSet::TardisBinanceFutures => ("BTCUSDT-PERP", 0.01, "crypto", "UTC", "00:00", "00:00"),
        GroundTruthSet::BinanceSpot => ("BTCUSDT", 0.01, "crypto", "UTC", "00:00", "00:00"),
        GroundTruthSet::CmeEs => ("ESH4", 0.25, "future", "America/Chicago", "17:00", "16:00"),
    }
}

fn ticks_of(set: GroundTruthSet) -> Vec<TickRow> {
    let (symbol, ..) = symbol_of(set);
    let trades = set.load(&data_dir()).unwrap_or_else(|e| panic!("loading {}: {e}", set.name()));
    trades
        .iter()
        .enumerate()
        .map(|(i, t)| TickRow {
            time: DateTime::<Utc>::from_timestamp_micros(t.time + UNIX_TO_PG_EPOCH_US)
                .expect("trade time in range"),
            symbol: symbol.to_string(),
            price: t.price,
            size: t.size,
            side: t.side.code(),
            side_source: "venue",
            trade_id: format!("{i}"),
            exchange: None,
            conditions: None,
        })
        .collect()
}

async fn add_symbols(c: &Client) {
    for set in GroundTruthSet::ALL {
        let (symbol, tick, class, tz, open, close) = symbol_of(set);
        c.execute(
            "INSERT INTO tapeflow.symbols (symbol, tick_size, asset_class, timezone, session_open, session_close)
             VALUES ($1, $2, $3, $4, $5::text::time, $6::text::time)",
            &[&symbol, &tick, &class, &tz, &open, &close],
        )
        .await
        .unwrap_or_else(|e| panic!("adding {symbol}: {e}"));
    }
}

/// Writes the rows as the feeders' writer does, in batches of its size.
async fn load(c: &mut Client, rows: &[TickRow]) -> u64 {
    let mut n = 0;
    for batch in rows.chunks(2_000) {
        n += write_ticks(c, batch).await.expect("write_ticks");
    }
    n
}

/// One query's whole answer as text: every row in the query's order, each value as the server
/// prints it (doubles in their shortest exact form).
async fn answer(c: &Client, sql: &str) -> String {
    let messages = c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    let mut out = String::new();
    for m in messages {
        if let SimpleQueryMessage::Row(row) = m {
            let values: Vec<&str> = (0..row.len()).map(|i| row.get(i).unwrap_or("NULL")).collect();
            out.push_str(&values.join("|"));
            out.push('\n');
        }
    }
    out
}

/// The day range [first, last + 1 day) of a symbol's trades, as literals.
async fn range(c: &Client, symbol: &str) -> (String, String) {
    let row = c
        .query_one(
            "SELECT date_trunc('day', min(time))::text, (date_trunc('day', max(time)) + interval '1 day')::text
             FROM tapeflow.ticks WHERE symbol = $1",
            &[&symbol],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Every analytics query of the README's SQL API, per symbol over its trades' days, and the
/// cross-symbol aggregates.
async fn queries(single: &Client) -> Vec<String> {
    let mut out = Vec::new();
    let mut symbols = Vec::new();
    for set in GroundTruthSet::ALL {
        let (s, ..) = symbol_of(set);
        symbols.push(format!("'{s}'"));
        let (from, to) = range(single, s).await;
        let (f, t) = (format!("'{from}'::timestamptz"), format!("'{to}'::timestamptz"));
        let day = format!("'{from}'::date");
        for tf in ["1m", "5m", "15m", "30m", "1h", "1d"] {
            out.push(format!("SELECT * FROM tapeflow.candles('{s}', '{tf}', {f}, {t})"));
            out.push(format!("SELECT * FROM tapeflow.order_flow('{s}', '{tf}', {f}, {t})"));
        }
        out.push(format!(
            "SELECT c.time, c.session, c.cvd FROM tapeflow.order_flow('{s}', '1h', {f}, {t}, session_reset => false) c"
        ));
        for day_sql in [day.clone(), format!("({day} + 1)")] {
            out.push(format!("SELECT tapeflow.session_profile('{s}', {day_sql})::text"));
            out.push(format!(
                "SELECT tapeflow.poc(p), v.*, tapeflow.total_volume(p), tapeflow.delta(p)
                 FROM tapeflow.session_profile('{s}', {day_sql}) p, tapeflow.value_area(p, pct => 0.70, method => 'dalton') v"
            ));
            out.push(format!(
                "SELECT v.* FROM tapeflow.session_profile('{s}', {day_sql}) p, tapeflow.value_area(p, pct => 0.68, method => 'single') v"
            ));
            out.push(format!("SELECT * FROM tapeflow.levels(tapeflow.session_profile('{s}', {day_sql}))"));
            out.push(format!(
                "SELECT tapeflow.hvns(p, smooth_rows => 15), tapeflow.lvns(p, smooth_rows => 15) FROM tapeflow.session_profile('{s}', {day_sql}) p"
            ));
            out.push(format!(
                "SELECT * FROM tapeflow.profile_summary(tapeflow.session_profile('{s}', {day_sql}))"
            ));
            out.push(format!("SELECT * FROM tapeflow.developing_profile('{s}', {day_sql}, '1h')"));
            out.push(format!("SELECT * FROM tapeflow.developing_profile('{s}', {day_sql}, '5m')"));
        }
        out.push(format!("SELECT tapeflow.composite_profile('{s}', {f}, {t})::text"));
        out.push(format!(
            "SELECT * FROM tapeflow.profile_summary(tapeflow.composite_profile('{s}', {f}, {t}))"
        ));
        out.push(format!("SELECT * FROM tapeflow.footprint('{s}', '1m', {f}, {t})"));
        out.push(format!("SELECT * FROM tapeflow.footprint('{s}', '15m', {f}, {t})"));
        out.push(format!(
            "SELECT * FROM tapeflow.footprint_imbalances('{s}', '1m', {f}, {t}, ratio => 1.5, min_volume => 0, min_rows => 3)"
        ));
        out.push(format!("SELECT * FROM tapeflow.market_state_history('{s}', {f}, {t}, '{{}}', '1m')"));
        out.push(format!("SELECT * FROM tapeflow.market_state_history('{s}', {f}, {t}, '{{}}', '5m')"));
        out.push(format!("SELECT * FROM tapeflow.time_in_state('{s}', {f}, {t})"));
        out.push(format!("SELECT * FROM tapeflow.atr('{s}', '5m', {f}, {t}, period => 14)"));
        out.push(format!(
            "SELECT * FROM tapeflow.classify_ticks('{s}', {f}, {f} + interval '2 hours', rule => 'tick')"
        ));
        out.push(format!(
            "SELECT * FROM tapeflow.backtest(ARRAY['{s}'], {f}, {t}, '{{\"engine\": {{\"strategy\": {{\"min_aggression_score\": 50}}}}}}')"
        ));
        out.push(format!(
            "SELECT b.bucket, tapeflow.candle_agg(k.time, k.price, k.size, k.side)::text
             FROM tapeflow.ticks k JOIN tapeflow.bars_1m b ON b.symbol = k.symbol AND b.bucket = tapeflow.minute(k.time)
             WHERE k.symbol = '{s}' GROUP BY b.bucket ORDER BY b.bucket"
        ));
        out.push(format!(
            "SELECT bucket, candle::text, profile::text FROM tapeflow.bars_1m WHERE symbol = '{s}' ORDER BY bucket"
        ));
    }
    let all = symbols.join(", ");
    // Across symbols.
    out.push(format!(
        "SELECT symbol, tapeflow.profile_agg(price, size, side, 0.25)::text, tapeflow.candle_agg(time, price, size, side)::text
         FROM tapeflow.ticks WHERE symbol IN ({all}) GROUP BY symbol ORDER BY symbol"
    ));
    out.push("SELECT tapeflow.profile_agg(price, size, side, 0.25)::text FROM tapeflow.ticks".into());
    out.push("SELECT tapeflow.candle_agg(time, price, size, side)::text FROM tapeflow.ticks".into());
    out.push("SELECT tapeflow.rollup(profile)::text FROM tapeflow.bars_1m WHERE symbol <> 'ESH4'".into());
    out.push("SELECT tapeflow.rollup(candle)::text FROM tapeflow.bars_1m".into());
    out.push(
        "SELECT date_trunc('hour', bucket), tapeflow.rollup(candle)::text FROM tapeflow.bars_1m GROUP BY 1 ORDER BY 1".into(),
    );
    // Not sum(size): a double sum depends on the order of its terms, which differs between one
    // server and a distributed plan (the last digits do); the aggregates' sums are exact.
    out.push("SELECT count(*), sum(size::numeric), min(time), max(time) FROM tapeflow.ticks".into());
    out.push(format!("SELECT * FROM tapeflow.backtest(ARRAY[{all}], '2020-02-22', '2023-12-27', '{{}}')"));
    out
}

/// The plan, one line per row of EXPLAIN (VERBOSE, COSTS OFF).
async fn explain(c: &Client, sql: &str) -> String {
    let rows = c.query(&format!("EXPLAIN (VERBOSE, COSTS OFF) {sql}"), &[]).await.unwrap();
    rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join("\n")
}

/// A persisted backtest run of two symbols; its id.
async fn backtest_run(c: &Client) -> i64 {
    c.query_one(
        "SELECT tapeflow.backtest_run(ARRAY['BTCUSDT-PERP', 'ESH4'], '2020-02-22', '2023-12-27')",
        &[],
    )
    .await
    .expect("backtest_run")
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citus_cluster_gives_the_single_server_answers() {
    if !citus_installed() {
        println!("SKIPPED: Citus is not installed");
        return;
    }
    let started = Instant::now();
    let cluster = CitusCluster::start("equal");
    let db = TestDb::create("citus_single", false).await;
    let mut single = db.client().await;
    let mut coord = cluster.client().await;
    println!("Citus cluster (coordinator :{} + 2 workers) up in {:?}", cluster.port, started.elapsed());

    // The layout: distributed by symbol and co-located, reference tables, shards on both workers.
    let layout: Vec<(String, String)> = coord
        .query(
            "SELECT logicalrelid::regclass::text, CASE WHEN partmethod = 'h' THEN 'distributed:' || colocationid
                                                       WHEN repmodel = 't' THEN 'reference' ELSE 'citus local' END
             FROM pg_dist_partition WHERE logicalrelid::regclass::text IN
                 ('tapeflow.ticks', 'tapeflow.quotes', 'tapeflow.bars_1m', 'tapeflow.bars_1m_imported',
                  'tapeflow.symbols', 'tapeflow.strategy_configs', 'tapeflow.risk_limits')
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(layout.len(), 7, "every table is in Citus metadata: {layout:?}");
    let ticks_group = &layout.iter().find(|(t, _)| t == "tapeflow.ticks").unwrap().1;
    for (t, kind) in &layout {
        let expected = if ["tapeflow.symbols", "tapeflow.strategy_configs", "tapeflow.risk_limits"]
            .contains(&t.as_str())
        {
            "reference"
        } else {
            ticks_group.as_str()
        };
        assert_eq!(kind, expected, "{t}");
    }

    // The same trades through the feeders' write path, into both.
    add_symbols(&single).await;
    add_symbols(&coord).await;
    let mut total = 0;
    for set in GroundTruthSet::ALL {
        let rows = ticks_of(set);
        let a = load(&mut single, &rows).await;
        let b = load(&mut coord, &rows).await;
        assert_eq!(a, b, "{}: new trades", set.name());
        total += a;
    }
    println!("loaded {total} trades of {} symbols into both", GroundTruthSet::ALL.len());
    // A replay adds nothing: the statement of write_ticks' merge path, on the coordinator.
    // (write_ticks itself falls back to it on SQLSTATE 23505, which Citus's COPY does not keep:
    // it reports a shard's duplicate key as XX000. And an INSERT ... SELECT through the
    // coordinator reports the rows it sent, not those stored, so the table is counted.)
    let count = "SELECT count(*) FROM tapeflow.ticks";
    let before: i64 = coord.query_one(count, &[]).await.unwrap().get(0);
    coord
        .execute(
            "WITH again AS (SELECT * FROM tapeflow.ticks WHERE symbol = 'BTCUSDT' ORDER BY time LIMIT 500)
             INSERT INTO tapeflow.ticks SELECT * FROM again ON CONFLICT DO NOTHING",
            &[],
        )
        .await
        .unwrap();
    let after: i64 = coord.query_one(count, &[]).await.unwrap().get(0);
    assert_eq!((before, after), (total as i64, total as i64));
    let per_worker: Vec<(i32, i64)> = coord
        .query(
            "SELECT nodeport, count(*) FROM citus_shards WHERE table_name = 'tapeflow.ticks'::regclass
             GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(per_worker.len(), 2, "ticks shards on both workers: {per_worker:?}");
    let symbol_nodes: i64 = coord
        .query_one(
            "SELECT count(DISTINCT nodeport) FROM tapeflow.symbols s, citus_shards c
             WHERE c.shardid = get_shard_id_for_distribution_column('tapeflow.ticks', s.symbol)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    println!("ticks shards per worker {per_worker:?}; the 3 symbols live on {symbol_nodes} worker(s)");

    // A provider's cancel and correction (tapeflow_db::amend::amend_ticks) through the
    // coordinator: the side-by-side answers below include them.
    let first: Vec<(String, chrono::DateTime<chrono::Utc>, f64)> = single
        .query("SELECT trade_id, time, price FROM tapeflow.ticks WHERE symbol = 'BTCUSDT' ORDER BY time, trade_id LIMIT 2", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let amends = [
        TickAmend {
            symbol: "BTCUSDT".into(),
            trade_id: first[0].0.clone(),
            at: first[0].1,
            replacement: None,
        },
        TickAmend {
            symbol: "BTCUSDT".into(),
            trade_id: first[1].0.clone(),
            at: first[1].1,
            replacement: Some(TickReplacement {
                trade_id: format!("{}-fixed", first[1].0),
                price: first[1].2 + 1.0,
                size: 0.5,
                conditions: None,
            }),
        },
    ];
    for c in [&mut single, &mut coord] {
        let done = amend_ticks(c, &amends).await.unwrap();
        assert_eq!((done.removed, done.replaced, done.held.len()), (2, 1, 0));
    }

    // Side by side, exactly.
    let qs = queries(&single).await;
    let mut rows = 0usize;
    for q in &qs {
        let a = answer(&single, q).await;
        let b = answer(&coord, q).await;
        assert!(a == b, "the Citus cluster answers differently:\n{q}\n--- one server:\n{a}\n--- Citus:\n{b}");
        rows += a.lines().count();
    }
    let (ra, rb) = (backtest_run(&single).await, backtest_run(&coord).await);
    for q in [
        "SELECT statistic, value FROM tapeflow.backtest_stats({run})",
        "SELECT day, end_equity, pnl, entries, trades FROM tapeflow.backtest_daily WHERE run_id = {run} ORDER BY day",
        "SELECT symbol, side, entry_time, entry_price, exit_time, exit_price, pnl FROM tapeflow.backtest_trades WHERE run_id = {run} ORDER BY entry_time, symbol",
    ] {
        let a = answer(&single, &q.replace("{run}", &ra.to_string())).await;
        let b = answer(&coord, &q.replace("{run}", &rb.to_string())).await;
        assert!(a == b, "persisted backtest differs:\n{q}\n--- one server:\n{a}\n--- Citus:\n{b}");
        rows += a.lines().count();
    }
    println!(
        "EQUAL: {} queries, {rows} rows, bit for bit (one server vs coordinator + 2 workers)",
        qs.len() + 3
    );

    // Across symbols: per-symbol summaries built on the workers (the GROUP BY on the
    // distribution column is pushed down whole) and rolled up there, partially, per shard; the
    // coordinator combines the partial rollups. Only the summaries cross the network, and the
    // answer is the one server's single aggregate.
    let two_step = "SELECT tapeflow.rollup(p)::text FROM (SELECT symbol, tapeflow.profile_agg(price, size, side, 0.25) AS p
                    FROM tapeflow.ticks GROUP BY symbol) s";
    let plan = explain(&coord, two_step).await;
    println!("EXPLAIN of a cross-symbol profile, per-symbol summaries rolled up:\n{plan}");
    assert!(
        plan.contains("GROUP BY ticks.symbol") && plan.contains("tapeflow.profile_agg(ticks.price"),
        "the workers build the per-symbol profiles:\n{plan}"
    );
    assert!(
        plan.contains("worker_partial_agg('tapeflow.rollup(tapeflow.profile)'")
            && plan.contains("coord_combine_agg("),
        "each worker rolls its shards' profiles up, the coordinator combines those:\n{plan}"
    );
    let whole = "SELECT tapeflow.profile_agg(price, size, side, 0.25)::text FROM tapeflow.ticks";
    assert_eq!(answer(&coord, two_step).await, answer(&single, whole).await, "rollup of parts = the whole");
    // A single aggregate over every shard: the workers aggregate their shards partially
    // (worker_partial_agg, which ships each state in its text form) and the coordinator combines
    // the states (coord_combine_agg) and finishes, so one state per shard crosses the network
    // instead of every row; the answer is still the one server's.
    let ticks = "tapeflow.ticks";
    for (agg, from) in [
        ("tapeflow.profile_agg(price, size, side, 0.25)", ticks),
        ("tapeflow.profile_agg(price, size, side, 0.25, 4)", ticks),
        ("tapeflow.candle_agg(time, price, size, side)", ticks),
        ("tapeflow.candle_agg(time, price, size)", ticks),
        ("tapeflow.rollup(profile)", "tapeflow.bars_1m WHERE symbol <> 'ESH4'"),
        ("tapeflow.rollup(candle)", "tapeflow.bars_1m"),
    ] {
        let q = format!("SELECT {agg}::text FROM {from}");
        let plan = explain(&coord, &q).await;
        assert!(
            plan.contains("coord_combine_agg(") && plan.contains("worker_partial_agg("),
            "{agg} is not split into partial aggregates and a combine:\n{plan}"
        );
        let worker_query = plan.lines().find(|l| l.trim_start().starts_with("Query:")).unwrap_or_default();
        assert!(
            worker_query.contains("worker_partial_agg(") && !worker_query.contains("GROUP BY"),
            "the workers return one partial state per shard:\n{plan}"
        );
        assert_eq!(answer(&coord, &q).await, answer(&single, &q).await, "{q}");
        if agg == "tapeflow.profile_agg(price, size, side, 0.25)" {
            println!("EXPLAIN of a cross-symbol profile_agg, partial on the workers:\n{plan}");
        }
    }
    println!("profile_agg, candle_agg and rollup() across shards: partial on the workers, combined on the coordinator, equal");

    // Announcements reach a LISTEN client of the coordinator, after the write committed.
    let (listener, mut conn) = tokio_postgres::connect(&cluster.url(), tokio_postgres::NoTls).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = stream.next().await {
            if let AsyncMessage::Notification(n) = m {
                let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
            }
        }
    });
    listener.batch_execute("LISTEN tapeflow_candles").await.unwrap();
    let now = Utc::now();
    let fresh: Vec<TickRow> = ["BTCUSDT", "ESH4", "BTCUSDT-PERP"]
        .iter()
        .enumerate()
        .flat_map(|(k, s)| {
            (0..3).map(move |i| TickRow {
                time: now - ChronoDuration::seconds(10 - i),
                symbol: s.to_string(),
                price: 100.0 + k as f64 + i as f64,
                size: 1.0 + i as f64,
                side: b'B',
                side_source: "venue",
                trade_id: format!("live-{k}-{i}"),
                exchange: None,
                conditions: None,
            })
        })
        .collect();
    let sent = Instant::now();
    assert_eq!(write_ticks(&mut coord, &fresh).await.unwrap(), 9);
    let mut got = std::collections::BTreeMap::new();
    while got.len() < 3 {
        let (channel, payload) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an announcement within 5 s")
            .expect("listener alive");
        assert_eq!(channel, "tapeflow_candles");
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
        got.insert(v["symbol"].as_str().unwrap().to_string(), v);
    }
    let latency = sent.elapsed();
    for (symbol, v) in &got {
        let volume: f64 = coord
            .query_one(
                "SELECT tapeflow.volume(candle) FROM tapeflow.bars_1m WHERE symbol = $1 ORDER BY bucket DESC LIMIT 1",
                &[symbol],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(v["volume"].as_f64(), Some(volume), "{symbol}: the announced candle is the stored one");
    }
    println!("LISTEN on the coordinator: 3 announcements (one per symbol) {latency:?} after the write");

    // The scheduler on the coordinator evaluates a live strategy over the distributed bars.
    let minutes: Vec<TickRow> = (0..40)
        .flat_map(|m| {
            (0..5).map(move |i| TickRow {
                time: now - ChronoDuration::minutes(40 - m) + ChronoDuration::seconds(i * 10),
                symbol: "BTCUSDT".into(),
                price: 30_000.0 + (m * 7 % 13) as f64 + i as f64 * 0.5,
                size: 0.1 + i as f64 * 0.01,
                side: if (m + i) % 3 == 0 { b'S' } else { b'B' },
                side_source: "venue",
                trade_id: format!("sched-{m}-{i}"),
                exchange: None,
                conditions: None,
            })
        })
        .collect();
    write_ticks(&mut coord, &minutes).await.unwrap();
    coord
        .execute("INSERT INTO tapeflow.strategy_configs (symbol, params) VALUES ('BTCUSDT', '{}')", &[])
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let evaluated = loop {
        let n: i64 = coord
            .query_one("SELECT count(*) FROM tapeflow.market_state_log WHERE symbol = 'BTCUSDT'", &[])
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "the coordinator's scheduler evaluated nothing in 60 s (log: {})",
            cluster.coordinator_log().display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let error: Option<String> = coord
        .query_one("SELECT last_error FROM tapeflow.strategy_configs WHERE symbol = 'BTCUSDT'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(error, None);
    println!("scheduler on the coordinator: {evaluated} bars of BTCUSDT evaluated");
    println!("done in {:?}", started.elapsed());
}
