//! The feeders' one writer (feeders/src/sink.rs) against the real database: refused rows are
//! isolated and kept, replays add nothing, and while the network to PostgreSQL is cut the
//! records wait in the bounded queue (senders held back when it is full) and are all written,
//! once, when it comes back; a cancel or correction that comes before its trade is held, across
//! a restart, and applied when the trade is written.

use chrono::{DateTime, Duration as Span, TimeZone, Utc};
use std::time::Duration;
use tapeflow_feeders::provider::{BarRow, QuoteRow, Record, TickAmend, TickReplacement, TickRow};
use tapeflow_feeders::sink::{self, SinkConfig};
use tapeflow_tests::tcp_proxy::{Fault, TcpProxy};
use tapeflow_tests::TestDb;
use tokio_util::sync::CancellationToken;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 15, 0, 0).unwrap()
}

fn tick(symbol: &str, i: i64) -> Record {
    Record::Tick(TickRow {
        time: t0() + Span::milliseconds(i * 250),
        symbol: symbol.into(),
        price: 100.0 + (i % 7) as f64 * 0.01,
        size: 1.0 + (i % 3) as f64,
        side: if i % 2 == 0 { b'B' } else { b'S' },
        side_source: "venue",
        trade_id: format!("t{i}"),
        exchange: Some("V".into()),
        conditions: None,
    })
}

fn config(capacity: usize) -> SinkConfig {
    SinkConfig {
        capacity,
        batch_rows: 500,
        shutdown_grace: Duration::from_secs(5),
        writers: sink::default_writers(),
    }
}

async fn setup() -> (TestDb, tokio_postgres::Client) {
    let db = TestDb::create("sink", false).await;
    let c = db.client().await;
    c.batch_execute("INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('AAA', 0.01), ('BBB', 0.01)")
        .await
        .unwrap();
    (db, c)
}

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// The minute rollups' volume equals the stored trades'.
async fn assert_rollups_equal_ticks(c: &tokio_postgres::Client) {
    let r = c
        .query_one(
            "SELECT (SELECT sum(size) FROM tapeflow.ticks),
                    (SELECT sum(tapeflow.volume(candle)) FROM tapeflow.bars_1m)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, f64>(0), r.get::<_, f64>(1), "ticks' volume, rollups' volume");
}

#[tokio::test]
async fn refused_rows_are_isolated_and_kept_and_a_replay_adds_nothing() {
    let (db, c) = setup().await;
    let mut records: Vec<Record> =
        (0..2000).map(|i| tick(if i % 2 == 0 { "AAA" } else { "BBB" }, i)).collect();
    // Two trades of a symbol the database does not know, in the middle of the stream, a quote
    // and a bar.
    records.insert(700, tick("NOPE", 5000));
    records.insert(1500, tick("NOPE", 5001));
    records.push(Record::Quote(QuoteRow {
        time: t0(),
        symbol: "AAA".into(),
        bid: 99.99,
        ask: 100.01,
        bid_size: 3.0,
        ask_size: 4.0,
        exchange: None,
    }));
    records.push(Record::Bar(BarRow {
        symbol: "BBB".into(),
        bucket: t0() - Span::minutes(10),
        open: 10.0,
        high: 11.0,
        low: 9.5,
        close: 10.5,
        volume: 1200.0,
    }));
    for round in 0..2 {
        let (s, writer) = sink::spawn(db.url.clone(), config(10_000), CancellationToken::new());
        s.send_all(records.clone()).await.unwrap();
        drop(s);
        let w = writer.await.unwrap();
        if round == 0 {
            assert_eq!(
                (w.ticks, w.quotes, w.bars, w.rejected, w.abandoned),
                (2000, 1, 1, 2, 0),
                "first write: {w:?}"
            );
        } else {
            assert_eq!((w.ticks, w.quotes, w.bars, w.rejected), (0, 0, 0, 2), "a replay adds nothing: {w:?}");
        }
    }
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.ticks").await, 2000);
    assert_eq!(count(&c, "SELECT count(DISTINCT (symbol, trade_id)) FROM tapeflow.ticks").await, 2000);
    // The refused records are kept with the database's reason, once per attempt.
    let rows = c.query("SELECT record, reason FROM tapeflow.feed_rejects ORDER BY id", &[]).await.unwrap();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        let (record, reason): (String, String) = (r.get(0), r.get(1));
        assert!(record.contains("NOPE") && record.contains("t500"), "{record}");
        assert!(reason.contains("NOPE"), "the reason names the symbol: {reason}");
    }
    assert_rollups_equal_ticks(&c).await;
}

/// Writes `records` through a sink of its own (a feeder's run) and waits until it is drained.
async fn run_sink(db: &TestDb, records: Vec<Record>) -> sink::Written {
    let (s, writer) = sink::spawn(db.url.clone(), config(10_000), CancellationToken::new());
    s.send_all(records).await.unwrap();
    drop(s);
    writer.await.unwrap()
}

#[tokio::test]
async fn notices_before_their_trades_are_held_across_a_restart_and_applied_when_the_trades_come() {
    let (db, c) = setup().await;
    let notice = |i: i64, replacement: Option<TickReplacement>| {
        Record::Amend(TickAmend {
            symbol: "AAA".into(),
            trade_id: format!("t{i}"),
            at: t0() + Span::milliseconds(i * 250),
            replacement,
        })
    };
    let fixed = TickReplacement { trade_id: "t2-fixed".into(), price: 99.5, size: 7.0, conditions: None };
    // A cancel of t1 and a correction of t2 before either trade, then an unrelated trade.
    let w = run_sink(&db, vec![notice(1, None), notice(2, Some(fixed.clone())), tick("AAA", 10)]).await;
    assert_eq!((w.ticks, w.amended), (1, 0), "{w:?}");
    let held = "SELECT count(*) FROM tapeflow.held_amendments";
    assert_eq!(count(&c, held).await, 2);

    // The next run (a restart) writes the trades, and their notices are applied as they land:
    // in the same batch as other trades, and once more in a later one (a replay) that is
    // removed again.
    let mut trades: Vec<Record> = (0..6).map(|i| tick("AAA", i)).collect();
    trades.extend((0..6).map(|i| tick("BBB", i)));
    let w = run_sink(&db, trades).await;
    assert_eq!((w.ticks, w.amended), (12, 2), "{w:?}");
    let ids: Vec<String> = c
        .query("SELECT trade_id FROM tapeflow.ticks WHERE symbol = 'AAA' ORDER BY time, trade_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, ["t0", "t2-fixed", "t3", "t4", "t5", "t10"], "t1 cancelled, t2 corrected");
    let r = c
        .query_one(
            "SELECT price, size, side::text, time FROM tapeflow.ticks WHERE trade_id = 't2-fixed'",
            &[],
        )
        .await
        .unwrap();
    let Record::Tick(t2) = tick("AAA", 2) else { unreachable!() };
    assert_eq!((r.get::<_, f64>(0), r.get::<_, f64>(1)), (99.5, 7.0));
    assert_eq!(
        (r.get::<_, String>(2), r.get::<_, DateTime<Utc>>(3)),
        ("B".to_string(), t2.time),
        "the original's side and time"
    );
    // BBB's trades of the same ids are other trades.
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.ticks WHERE symbol = 'BBB'").await, 6);
    assert_eq!(count(&c, held).await, 0, "applied notices are no longer held");
    assert_rollups_equal_ticks(&c).await;

    // The same notice again, once its trade is gone, is held: should the trade be replayed, it
    // goes again.
    let w = run_sink(&db, vec![notice(1, None)]).await;
    assert_eq!(w.amended, 0);
    assert_eq!(count(&c, held).await, 1);
    let w = run_sink(&db, vec![tick("AAA", 1)]).await;
    assert_eq!((w.ticks, w.amended), (1, 1), "{w:?}");
    assert_eq!(
        count(&c, "SELECT count(*) FROM tapeflow.ticks WHERE symbol = 'AAA' AND trade_id = 't1'").await,
        0
    );

    // A notice held longer than a week is dropped when a writer connects: t4 replayed stays.
    let Record::Tick(t4) = tick("AAA", 4) else { unreachable!() };
    c.execute(
        "INSERT INTO tapeflow.held_amendments (symbol, trade_id, at, received_at)
         VALUES ('AAA', 't4', $1, now() - interval '8 days')",
        &[&t4.time],
    )
    .await
    .unwrap();
    run_sink(&db, vec![tick("AAA", 4)]).await;
    assert_eq!(count(&c, held).await, 0);
    assert_eq!(
        count(&c, "SELECT count(*) FROM tapeflow.ticks WHERE symbol = 'AAA' AND trade_id = 't4'").await,
        1
    );
}

#[tokio::test]
async fn a_network_cut_holds_records_in_the_bounded_queue_and_loses_none() {
    let (db, c) = setup().await;
    let pg_port =
        tapeflow_db::database_url().rsplit(':').next().unwrap().split('/').next().unwrap().parse().unwrap();
    let proxy = TcpProxy::start(pg_port).await;
    let url = format!("postgresql://postgres@127.0.0.1:{}/{}?connect_timeout=2", proxy.port, db.name);
    let capacity = 300;
    let (s, writer) = sink::spawn(url, config(capacity), CancellationToken::new());
    s.send_all((0..100).map(|i| tick("AAA", i))).await.unwrap();
    tapeflow_tests::wait_until(
        &c,
        "SELECT count(*) = 100 FROM tapeflow.ticks",
        Duration::from_secs(20),
        None,
    )
    .await;

    proxy.set(Fault::Refuse);
    // The queue takes `capacity` records (plus the batch in the writer's hands), then holds
    // the sender back instead of dropping anything.
    let mut sent = 100;
    loop {
        match tokio::time::timeout(Duration::from_millis(500), s.send(tick("AAA", sent))).await {
            Ok(r) => {
                r.unwrap();
                sent += 1;
            }
            Err(_) => break,
        }
        assert!(sent < 100 + 3 * capacity as i64 + 1000, "the queue is not bounded");
    }
    assert!(sent >= 100 + capacity as i64, "queued only {} records before blocking", sent - 100);
    assert!(s.depth() >= capacity - 1, "depth {} while blocked", s.depth());
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.ticks").await, 100, "nothing written while cut");
    // The record whose send timed out was never queued: send it again, as a provider would.
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set(Fault::None);
    s.send(tick("AAA", sent)).await.unwrap();
    sent += 1;
    drop(s);
    let w = writer.await.unwrap();
    assert_eq!(w.ticks as i64, sent, "{w:?}");
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.ticks").await, sent);
    assert_eq!(count(&c, "SELECT count(DISTINCT trade_id) FROM tapeflow.ticks").await, sent);
}
