//! Exact sums on real trades (Binance USDT-M futures BTCUSDT, 2020-02-22, from the shared data
//! directory): the same trades give the same bits however they are grouped and merged — in
//! Rust, loaded in one statement or in shuffled batches on the plain path, rebuilt from ticks,
//! and on the TimescaleDB path when the cluster has it (skipped with a message otherwise).
//!
//! With floating-point sums the 5-minute bar of 00:05 had a buy volume of 91.56899999999999 on
//! one path and 91.569 on the other; every answer compared here is text of doubles in their
//! shortest exact form, so equal text is equal bits.

use chrono::{TimeZone, Utc};
use std::collections::BTreeMap;
use tapeflow_analytics::candle::{Candle, Micros};
use tapeflow_analytics::profile::Profile;
use tapeflow_analytics::side::Side;
use tapeflow_db::copy::TickRow;
use tapeflow_tests::ground_truth::{data_dir, GroundTruthSet, GroundTruthTrade};
use tapeflow_tests::*;

/// Microseconds from the Unix epoch to the PostgreSQL epoch, from which `Micros` count.
const PG_EPOCH_US: i64 = 946_684_800 * 1_000_000;
/// 2020-02-22 00:05 and 00:10 UTC in `Micros`.
const BAR_START: Micros = 1_582_329_900 * 1_000_000 - PG_EPOCH_US;
const BAR_END: Micros = BAR_START + 300 * 1_000_000;

fn trades() -> Vec<GroundTruthTrade> {
    let set = GroundTruthSet::TardisBinanceFutures;
    let trades = set.load(&data_dir()).unwrap_or_else(|e| panic!("{}: {e}", set.name()));
    assert_eq!(trades.len(), 9_999, "the file the data README describes");
    trades
}

/// A deterministic shuffle (a linear congruential generator), so failures reproduce.
fn shuffled<T: Clone>(v: &[T], seed: u64) -> Vec<T> {
    let mut v = v.to_vec();
    let mut s = seed;
    for i in (1..v.len()).rev() {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        v.swap(i, (s >> 33) as usize % (i + 1));
    }
    v
}

fn candle_of(trades: &[GroundTruthTrade]) -> Option<Candle> {
    trades.iter().fold(None, |acc, t| {
        let one = Candle::from_trade(t.time, t.price, t.size, t.side).unwrap();
        Candle::merge_opt(acc, Some(&one)).unwrap()
    })
}

fn profile_of(trades: &[GroundTruthTrade]) -> Profile {
    Profile::from_trades(0.01, 1, trades.iter().map(|t| (t.price, t.size, t.side))).unwrap()
}

/// The 00:05 bar built in many orders and groupings: as one run of trades, from per-minute
/// candles merged forwards and backwards, from shuffled trades in chunks of every size from 1
/// to 97, and from a tree of pairwise merges.
#[test]
fn the_00_05_bar_buys_exactly_91_569_however_it_is_merged() {
    let all = trades();
    let bar: Vec<GroundTruthTrade> =
        all.iter().copied().filter(|t| (BAR_START..BAR_END).contains(&t.time)).collect();
    assert_eq!(bar.len(), 351);
    let whole = candle_of(&bar).unwrap();
    assert_eq!(whole.buy_volume, 91.569);
    // What floating-point sums gave, in file order and backwards: neither is 91.569.
    let buys = bar.iter().filter(|t| t.side == Side::Buy).map(|t| t.size);
    assert_ne!(buys.clone().sum::<f64>(), 91.569);
    assert_ne!(buys.rev().sum::<f64>(), 91.569);

    let mut groupings: Vec<Candle> = Vec::new();
    let minutes: BTreeMap<Micros, Vec<GroundTruthTrade>> = bar.iter().fold(BTreeMap::new(), |mut m, t| {
        m.entry(t.time.div_euclid(60_000_000)).or_insert_with(Vec::new).push(*t);
        m
    });
    let per_minute: Vec<Candle> = minutes.values().map(|v| candle_of(v).unwrap()).collect();
    for order in [per_minute.clone(), per_minute.iter().rev().copied().collect()] {
        groupings.push(order.iter().fold(None, |acc, c| Candle::merge_opt(acc, Some(c)).unwrap()).unwrap());
    }
    for (seed, chunk) in (1..=97).map(|k| (k as u64, k)) {
        let v = shuffled(&bar, seed);
        let parts: Vec<Candle> = v.chunks(chunk).map(|c| candle_of(c).unwrap()).collect();
        groupings
            .push(parts.iter().rev().fold(None, |acc, c| Candle::merge_opt(acc, Some(c)).unwrap()).unwrap());
    }
    let mut level: Vec<Candle> = shuffled(&bar, 7).iter().map(|t| candle_of(&[*t]).unwrap()).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| p.iter().fold(None, |a, c| Candle::merge_opt(a, Some(c)).unwrap()).unwrap())
            .collect();
    }
    groupings.push(level[0]);
    for c in &groupings {
        assert_eq!(c.buy_volume.to_bits(), 91.569f64.to_bits());
        assert_eq!(c.to_bytes(), whole.to_bytes(), "every grouping is the same candle, to the byte");
    }

    // The footprint of the bar, likewise.
    let fp = profile_of(&bar);
    assert_eq!(fp.buy_volume(), 91.569);
    for seed in 1..20 {
        let v = shuffled(&bar, seed);
        let mut merged = Profile::new(0.01, 1).unwrap();
        for part in v.chunks(seed as usize * 3) {
            merged.merge(&profile_of(part)).unwrap();
        }
        assert_eq!(merged.to_bytes(), fp.to_bytes());
    }
    assert_eq!(fp.total_volume(), whole.volume);
    assert_eq!(fp.delta(), whole.delta());
}

/// Loads trades through the feeder's write path (binary COPY to staging, one INSERT).
async fn load(db: &TestDb, trades: &[(usize, GroundTruthTrade)], batches: usize) {
    let mut client = db.client().await;
    let rows: Vec<TickRow> = trades
        .iter()
        .map(|(i, t)| TickRow {
            time: Utc.timestamp_micros(t.time + PG_EPOCH_US).single().expect("a valid time"),
            symbol: "BTCUSDT".into(),
            price: t.price,
            size: t.size,
            side: t.side.code(),
            side_source: "venue",
            trade_id: i.to_string(),
            exchange: None,
            conditions: None,
        })
        .collect();
    let per = rows.len().div_ceil(batches);
    for chunk in rows.chunks(per) {
        tapeflow_db::copy::write_ticks(&mut client, chunk).await.unwrap();
    }
}

async fn market(db: &TestDb) {
    db.client()
        .await
        .batch_execute(
            "INSERT INTO tapeflow.symbols (symbol, tick_size, asset_class, timezone, session_open, session_close)
             VALUES ('BTCUSDT', 0.01, 'crypto', 'UTC', '00:00', '00:00')",
        )
        .await
        .unwrap();
}

/// Everything compared across paths, one text line per row, by name. No rounding anywhere.
const ANSWERS: &[(&str, &str)] = &[
    (
        "minutes",
        "SELECT format('%s %s %s', bucket, candle, profile) FROM tapeflow.bars_1m WHERE symbol = 'BTCUSDT' ORDER BY bucket",
    ),
    (
        "candles",
        "SELECT format('%s %s', tf, c) FROM unnest(ARRAY['1m', '5m', '15m', '30m', '1h', '1d']) tf,
                tapeflow.candles('BTCUSDT', tf, '2020-02-22', '2020-02-23') c ORDER BY tf, c.time",
    ),
    (
        "order_flow",
        "SELECT format('%s', o) FROM tapeflow.order_flow('BTCUSDT', '5m', '2020-02-22', '2020-02-23') o ORDER BY o.time",
    ),
    (
        "footprint",
        "SELECT format('%s', f) FROM tapeflow.footprint('BTCUSDT', '5m', '2020-02-22', '2020-02-23') f
         ORDER BY f.time, f.price",
    ),
    (
        "session_profile",
        "SELECT format('%s %s %s %s %s %s %s', p, tapeflow.poc(p), va, s, tapeflow.total_volume(p), tapeflow.delta(p),
                       tapeflow.hvns(p))
         FROM tapeflow.session_profile('BTCUSDT', '2020-02-22') p, tapeflow.value_area(p) va,
              tapeflow.value_area(p, 0.7, 'single') s",
    ),
    (
        "levels",
        "SELECT format('%s', l) FROM tapeflow.levels(tapeflow.session_profile('BTCUSDT', '2020-02-22')) l ORDER BY l.price",
    ),
    (
        "developing_profile",
        "SELECT format('%s', d) FROM tapeflow.developing_profile('BTCUSDT', '2020-02-22', '5m') d ORDER BY d.time",
    ),
    (
        "market_states",
        "SELECT format('%s', h) FROM tapeflow.market_state_history('BTCUSDT', '2020-02-22', '2020-02-23',
                                                                    '{}'::jsonb, '5m') h ORDER BY h.time",
    ),
];

async fn answers(db: &TestDb) -> Vec<(&'static str, Vec<String>)> {
    let client = db.client().await;
    let mut out = Vec::new();
    for (name, sql) in ANSWERS {
        let rows = client.query(*sql, &[]).await.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let lines: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        assert!(!lines.is_empty(), "{name}: no rows");
        out.push((*name, lines));
    }
    out
}

fn assert_same(a: &[(&str, Vec<String>)], b: &[(&str, Vec<String>)], what: &str) {
    for ((name, x), (_, y)) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len(), "{name}: {what}: row counts differ");
        for (l, r) in x.iter().zip(y) {
            assert_eq!(l, r, "{name}: {what}");
        }
    }
}

/// The 00:05 five-minute bar's buy volume on a database.
async fn buy_volume_00_05(db: &TestDb) -> f64 {
    db.client()
        .await
        .query_one(
            "SELECT buy_volume FROM tapeflow.candles('BTCUSDT', '5m', '2020-02-22 00:05+00', '2020-02-22 00:10+00')",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn plain_and_timescaledb_paths_agree_to_the_bit() {
    let all: Vec<(usize, GroundTruthTrade)> = trades().into_iter().enumerate().collect();

    // Plain PostgreSQL, all trades in one statement in file order.
    let one = TestDb::create("exact_one", false).await;
    market(&one).await;
    load(&one, &all, 1).await;
    let reference = answers(&one).await;
    assert_eq!(buy_volume_00_05(&one).await, 91.569);

    // Plain PostgreSQL, shuffled and in 13 statements: every minute is merged from several
    // partial candles and profiles by the insert trigger, in another order.
    let batches = TestDb::create("exact_batches", false).await;
    market(&batches).await;
    load(&batches, &shuffled(&all, 2020), 13).await;
    assert_same(&reference, &answers(&batches).await, "one statement vs 13 shuffled batches");
    // Rebuilt from ticks in one aggregate, with a parallel plan forced.
    batches
        .client()
        .await
        .batch_execute(
            "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
             SET min_parallel_table_scan_size = 0; SELECT tapeflow.rebuild_rollups();",
        )
        .await
        .unwrap();
    assert_same(&reference, &answers(&batches).await, "one statement vs rebuild_rollups()");

    // The aggregates straight over ticks, serial and parallel, and a rollup of the minutes.
    let client = one.client().await;
    let q = "SELECT format('%s %s', tapeflow.candle_agg(time, price, size, side), tapeflow.profile_agg(price, size, side, 0.01))
             FROM tapeflow.ticks WHERE time >= '2020-02-22 00:05+00' AND time < '2020-02-22 00:10+00'";
    client.batch_execute("SET max_parallel_workers_per_gather = 0").await.unwrap();
    let serial: String = client.query_one(q, &[]).await.unwrap().get(0);
    client
        .batch_execute(
            "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
             SET min_parallel_table_scan_size = 0",
        )
        .await
        .unwrap();
    let parallel: String = client.query_one(q, &[]).await.unwrap().get(0);
    assert_eq!(serial, parallel);
    let rolled: String = client
        .query_one(
            "SELECT format('%s %s', tapeflow.rollup(candle), tapeflow.rollup(profile)) FROM tapeflow.bars_1m
             WHERE bucket >= '2020-02-22 00:05+00' AND bucket < '2020-02-22 00:10+00'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(serial, rolled);
    assert!(serial.contains("\"buy_volume\":91.569,"), "{serial}");

    if !timescaledb_available().await {
        println!(
            "skipped the TimescaleDB path: timescaledb is not installed (or not preloaded) in the cluster"
        );
        return;
    }
    let ts = TestDb::create("exact_ts", true).await;
    market(&ts).await;
    load(&ts, &shuffled(&all, 7), 5).await;
    // Real-time aggregation from ticks, then the materialized minutes.
    assert_same(&reference, &answers(&ts).await, "plain vs TimescaleDB before a refresh");
    ts.client()
        .await
        .batch_execute("CALL refresh_continuous_aggregate('tapeflow.bars_1m', NULL, NULL)")
        .await
        .unwrap();
    assert_same(&reference, &answers(&ts).await, "plain vs TimescaleDB after a refresh");
    assert_eq!(buy_volume_00_05(&ts).await, 91.569);
}
