//! The demo as a new user starts it, at whatever hour the test runs: the demo feed (always
//! open, its own strategy configs), the scheduler's cycle and tapeflow-exec with the sim
//! broker. Within five minutes there must be an entry signal, the order derived from it, its
//! fill and an open position.

use rust_decimal::Decimal;
use std::time::{Duration, Instant};
use tapeflow_tests::*;

/// What a user of `make demo` is promised.
const DEADLINE: Duration = Duration::from_secs(300);

/// Seconds since the start at which each step was first seen: signal, order, fill, position.
#[derive(Debug, Default)]
struct Seen {
    signal: Option<u64>,
    order: Option<u64>,
    fill: Option<u64>,
    position: Option<u64>,
}

/// The state of the loop, for a timeout's message.
const DIAGNOSE: &str = "
    SELECT format('signals %s/%s: %s', kind, coalesce(reject_code, status), count(*)) FROM tapeflow.signals GROUP BY kind, status, reject_code
    UNION ALL SELECT format('orders %s/%s: %s', leg, status, count(*)) FROM tapeflow.orders GROUP BY leg, status
    UNION ALL SELECT format('fills: %s', count(*)) FROM tapeflow.fills
    UNION ALL SELECT format('config %s: extended_hours %s, error %s', symbol, extended_hours, last_error) FROM tapeflow.strategy_configs
    UNION ALL SELECT format('market_state_log: %s bars, last %s', count(*), max(bar)) FROM tapeflow.market_state_log
    UNION ALL SELECT format('ticks: %s, last %s', count(*), max(time)) FROM tapeflow.ticks";

#[tokio::test]
async fn demo_trades_within_five_minutes_at_any_hour() {
    let db = TestDb::create("demoloop", false).await;
    let c = db.client().await;
    let started = Instant::now();
    let _feed = Proc::spawn(
        "tapeflow-feed",
        &["demo"],
        &[
            ("DATABASE_URL", db.url.clone()),
            ("TAPEFLOW_DEMO_BACKFILL_DAYS", "1".into()),
            ("TAPEFLOW_DEMO_ALWAYS_OPEN", "true".into()),
            ("TAPEFLOW_DEMO_QUOTES", "false".into()),
        ],
    );
    let _exec = Proc::spawn(
        "tapeflow-exec",
        &[],
        &[("DATABASE_URL", db.url.clone()), ("TAPEFLOW_EXEC_METRICS_ADDR", "off".into())],
    );

    // The scheduler's background worker runs in the `tapeflow` database only: this test runs
    // its cycle here, once a second, as the worker would.
    let mut seen = Seen::default();
    let mut cycle_errors = std::collections::BTreeSet::new();
    let mut next_cycle = Instant::now();
    let position: (String, String, Decimal, Option<i64>) = loop {
        if Instant::now() >= next_cycle {
            for r in c.query("SELECT symbol, error FROM tapeflow.run_cycle()", &[]).await.unwrap() {
                if let Some(e) = r.get::<_, Option<String>>(1) {
                    cycle_errors.insert(format!("{}: {e}", r.get::<_, String>(0)));
                }
            }
            next_cycle += Duration::from_secs(1);
        }
        let r = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM tapeflow.signals WHERE kind = 'entry'),
                        EXISTS (SELECT 1 FROM tapeflow.orders WHERE leg = 'entry'),
                        EXISTS (SELECT 1 FROM tapeflow.fills)",
                &[],
            )
            .await
            .unwrap();
        // The position is read with its details: a bracket leg may close it at the next bar.
        let open = c
            .query_opt(
                "SELECT symbol, side, quantity, entry_signal FROM tapeflow.positions ORDER BY opened_at LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        let at = started.elapsed().as_secs();
        for (i, slot) in [&mut seen.signal, &mut seen.order, &mut seen.fill].into_iter().enumerate() {
            if slot.is_none() && r.get::<_, bool>(i) {
                *slot = Some(at);
            }
        }
        if let Some(p) = open {
            // A position implies the rest (a step may have come between the two reads).
            for slot in [&mut seen.signal, &mut seen.order, &mut seen.fill] {
                slot.get_or_insert(at);
            }
            seen.position = Some(at);
            break (p.get(0), p.get(1), p.get(2), p.get(3));
        }
        if started.elapsed() > DEADLINE {
            let state: Vec<String> = c.query(DIAGNOSE, &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
            panic!(
                "the demo did not trade within {DEADLINE:?} of its start (first seen, seconds: {seen:?});\n\
                 run_cycle errors: {cycle_errors:#?}\n{state:#?}\n\
                 logs: target/tapeflow-feed-{pid}.log, target/tapeflow-exec-{pid}.log",
                pid = std::process::id()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("first seen after start, in seconds: {seen:?}");

    // Always open, the demo's configs trade outside the regular session.
    let configs: Vec<(String, bool)> = c
        .query("SELECT symbol, extended_hours FROM tapeflow.strategy_configs ORDER BY symbol", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(configs.len(), 10, "the default watchlist is traded: {configs:?}");
    assert!(configs.iter().all(|(_, ext)| *ext), "always open sets extended_hours: {configs:?}");

    // The open position comes from a filled entry signal through the orders derived from it.
    let (symbol, side, qty, signal_id) = position;
    let signal_id = signal_id.expect("an open position names its entry signal");
    let s = c
        .query_one("SELECT symbol, kind, status, side FROM tapeflow.signals WHERE id = $1", &[&signal_id])
        .await
        .unwrap();
    let signal: (String, String, String, String) = (s.get(0), s.get(1), s.get(2), s.get(3));
    let order_side = if side == "long" { "buy" } else { "sell" };
    assert_eq!(
        signal,
        (symbol, "entry".into(), "filled".into(), order_side.into()),
        "the position's entry signal"
    );
    let orders: Vec<(String, String, String, Decimal, Decimal)> = c
        .query(
            "SELECT client_order_id, leg, status, qty, filled_qty FROM tapeflow.orders WHERE signal_id = $1 ORDER BY id",
            &[&signal_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let entry = orders.iter().find(|o| o.1 == "entry").expect("the signal's entry order");
    assert_eq!(entry.0, format!("tf-{signal_id}-entry"), "client order id derived from the signal");
    assert_eq!((entry.2.as_str(), entry.4), ("filled", qty), "{orders:?}");
    for (coid, leg, ..) in &orders {
        let suffix = match leg.as_str() {
            "entry" => "",
            "take_profit" => "-tp",
            "stop_loss" => "-sl",
            other => panic!("unexpected leg {other} of an entry: {orders:?}"),
        };
        assert_eq!(coid, &format!("tf-{signal_id}-entry{suffix}"));
    }
    let filled: Decimal = c
        .query_one(
            "SELECT coalesce(sum(f.qty), 0) FROM tapeflow.fills f JOIN tapeflow.orders o ON o.id = f.order_id
             WHERE o.signal_id = $1 AND o.leg = 'entry'",
            &[&signal_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(filled, qty, "the position is its entry's fills");
}
