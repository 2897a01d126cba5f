//! tapeflow-exec with the Alpaca broker against the fake Alpaca server (REST + trade_updates
//! stream): the executor is killed with SIGKILL at each step of an order's life and restarted;
//! the broker must then hold exactly one order per signal and positions must equal the fills.
//! Hostile answers (429, 500, an accepted order whose answer times out, a duplicate client
//! order id, the stream dropped in the middle of a fill, updates out of order) never
//! duplicate an order or lose a fill.

use rust_decimal::Decimal;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};
use tapeflow_tests::fake_alpaca::{FakeAlpaca, FakeOptions};
use tapeflow_tests::*;

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn start_exec(db: &TestDb, fake: &FakeAlpaca, extra: &[(&str, &str)]) -> Proc {
    let mut env = vec![
        ("TAPEFLOW_BROKER", "alpaca".to_string()),
        ("APCA_API_KEY_ID", fake.key_id.clone()),
        ("APCA_API_SECRET_KEY", fake.secret_key.clone()),
        ("TAPEFLOW_ALPACA_TRADING_URL", fake.base_url.clone()),
        ("TAPEFLOW_ALPACA_STREAM_URL", fake.stream_url.clone()),
        ("TAPEFLOW_ALPACA_TIMEOUT_MS", "700".to_string()),
        ("TAPEFLOW_EXEC_RETRIES", "6".to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    Proc::spawn("tapeflow-exec", &[], &exec_env(db, &env))
}

/// What the executor has recorded, for a timeout's message.
const STATE: &str = "SELECT format('signal %s %s %s | orders %s', s.id, s.status, coalesce(s.error, ''),
        (SELECT string_agg(o.client_order_id || ' ' || o.status || ' ' || o.filled_qty, ', ' ORDER BY o.id)
         FROM tapeflow.orders o WHERE o.signal_id = s.id))
    FROM tapeflow.signals s ORDER BY s.id";

async fn wait(c: &tokio_postgres::Client, sql: &str) {
    wait_until(c, sql, Duration::from_secs(30), Some(STATE)).await
}

/// Symbols trading around the clock at 100, fresh trades, room for many positions.
async fn setup(db: &TestDb, symbols: &[&str]) -> tokio_postgres::Client {
    let c = db.client().await;
    for s in symbols {
        c.execute(
            "INSERT INTO tapeflow.symbols (symbol, tick_size, timezone, session_open, session_close) VALUES ($1, 0.01, 'UTC', '00:00', '00:00')",
            &[s],
        )
        .await
        .unwrap();
        c.execute(
            "INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id) VALUES (now() - interval '30 seconds', $1, 100, 1, 'B', 't1')",
            &[s],
        )
        .await
        .unwrap();
        c.execute(
            "INSERT INTO tapeflow.strategy_configs (symbol, enabled, params) VALUES ($1, false, '{\"strategy\": {\"max_positions\": 100}}')",
            &[s],
        )
        .await
        .unwrap();
    }
    c.batch_execute("UPDATE tapeflow.risk_limits SET signal_ttl = '10 minutes', max_positions = 100")
        .await
        .unwrap();
    c
}

/// An entry: buy at 100, stop 99, target 102; returns its id.
async fn signal(c: &tokio_postgres::Client, symbol: &str, id: Option<i64>) -> i64 {
    c.query_one(
        "INSERT INTO tapeflow.signals (id, bar, symbol, strategy, kind, side, entry, stop, target, reason)
         VALUES (coalesce($2, nextval('tapeflow.signals_id_seq')), tapeflow.minute(now()) - interval '1 minute', $1, 'amt',
                 'entry', 'buy', 100, 99, 102, 'test') RETURNING id",
        &[&symbol, &id],
    )
    .await
    .unwrap()
    .get(0)
}

async fn wait_killed(p: &mut Proc) {
    let start = Instant::now();
    loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            assert_eq!(status.signal(), Some(9), "the executor should die of SIGKILL, got {status:?}");
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the fault point was never reached");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Positions equal the fills, and equal the broker's.
async fn assert_positions_match(c: &tokio_postgres::Client, fake: &FakeAlpaca, symbol: &str) {
    let (book, fills): (Decimal, Decimal) = {
        let r = c
            .query_one(
                "SELECT coalesce((SELECT qty FROM tapeflow.position_book WHERE symbol = $1), 0),
                        coalesce((SELECT sum(CASE side WHEN 'buy' THEN qty ELSE -qty END) FROM tapeflow.fills WHERE symbol = $1), 0)",
                &[&symbol],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(book, fills, "{symbol}: position vs fills");
    let broker: Decimal = reqwest::Client::new()
        .get(format!("{}/v2/positions", fake.base_url))
        .header("APCA-API-KEY-ID", &fake.key_id)
        .header("APCA-API-SECRET-KEY", &fake.secret_key)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["symbol"] == symbol)
        .map(|p| dec(p["qty"].as_str().unwrap()))
        .sum();
    assert_eq!(book, broker, "{symbol}: position vs the broker's");
}

/// Kills the executor at `fault`, restarts it, and checks exactly one order and matching
/// positions. `on_fill` dies when the entry's fill arrives; the restart finds it by
/// reconciliation.
async fn crash_at(fault: &str) {
    let db = TestDb::create(&format!("crash_{fault}"), false).await;
    let c = setup(&db, &["AC"]).await;
    let fake = FakeAlpaca::start(FakeOptions::default()).await;
    let mut exec = start_exec(&db, &fake, &[("TAPEFLOW_EXEC_FAULT", fault)]);
    assert!(fake.wait_listening(1, Duration::from_secs(20)).await, "executor never listened");
    let id = signal(&c, "AC", None).await;
    let coid = format!("tf-{id}-entry");
    // 1 % of 100000 over a 1.00 stop is 1000 shares; the 25000 notional cap makes it 250.
    if fault == "on_fill" {
        wait(&c, &format!("SELECT status = 'submitted' FROM tapeflow.signals WHERE id = {id}")).await;
        fake.fill(&coid, dec("250"), dec("100.05"));
    }
    wait_killed(&mut exec).await;
    let _exec = start_exec(&db, &fake, &[]);
    if fault != "on_fill" {
        wait(&c, &format!("SELECT status = 'submitted' FROM tapeflow.signals WHERE id = {id}")).await;
        fake.fill(&coid, dec("250"), dec("100.05"));
    }
    wait(&c, &format!("SELECT status = 'filled' FROM tapeflow.signals WHERE id = {id}")).await;
    wait(&c, "SELECT count(*) = 1 FROM tapeflow.fills").await;
    let counts = fake.count_by_client_id();
    assert_eq!(counts.get(&coid), Some(&1), "{fault}: orders per client id {counts:?}");
    assert_eq!(counts.len(), 1, "{fault}: one order in all {counts:?}");
    let rows: Vec<(String, Option<String>)> = c
        .query("SELECT leg, broker_order_id FROM tapeflow.orders ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows.len(), 3, "{fault}: entry and two legs {rows:?}");
    assert!(rows.iter().all(|(_, b)| b.is_some()), "{fault}: every row knows its broker id {rows:?}");
    let (qty, price): (Decimal, Decimal) = {
        let r = c.query_one("SELECT qty, price FROM tapeflow.fills", &[]).await.unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((qty, price), (dec("250"), dec("100.05")), "{fault}");
    assert_positions_match(&c, &fake, "AC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_claiming() {
    crash_at("after_claim").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_recording_before_sending() {
    crash_at("before_send").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_sending_before_recording() {
    crash_at("after_send").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_recording_before_acknowledging() {
    crash_at("after_record").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_a_fill_arrives() {
    crash_at("on_fill").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_broker_never_duplicates_nor_loses_a_fill() {
    let syms = ["R429", "R500", "SLOW", "DUP", "DROP", "OOO", "BLK"];
    let db = TestDb::create("hostile", false).await;
    let c = setup(&db, &syms).await;
    let fake = FakeAlpaca::start(FakeOptions::default()).await;
    let _exec = start_exec(&db, &fake, &[]);
    assert!(fake.wait_listening(1, Duration::from_secs(20)).await);
    let submitted = |id: i64| format!("SELECT status = 'submitted' FROM tapeflow.signals WHERE id = {id}");

    // Rate limited twice, then accepted.
    fake.rate_limit_next_orders(2);
    let a = signal(&c, "R429", None).await;
    wait(&c, &submitted(a)).await;
    // A server error, then accepted.
    fake.fail_next_orders(1);
    let b = signal(&c, "R500", None).await;
    wait(&c, &submitted(b)).await;
    // Accepted, but the answer comes after the client's timeout: found by its client id.
    fake.accept_then_delay_next_order(Duration::from_secs(3));
    let s = signal(&c, "SLOW", None).await;
    wait(&c, &submitted(s)).await;
    // The broker already holds this signal's client order id (sent by an earlier run whose
    // records were lost): the duplicate is refused and the existing order adopted.
    let dup_id = 900_001i64;
    let body = serde_json::json!({"symbol": "DUP", "qty": "5", "side": "buy", "type": "market", "time_in_force": "day",
        "order_class": "bracket", "client_order_id": format!("tf-{dup_id}-entry"),
        "take_profit": {"limit_price": "102"}, "stop_loss": {"stop_price": "99"}});
    let r = reqwest::Client::new()
        .post(format!("{}/v2/orders", fake.base_url))
        .header("APCA-API-KEY-ID", &fake.key_id)
        .header("APCA-API-SECRET-KEY", &fake.secret_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let d = signal(&c, "DUP", Some(dup_id)).await;
    wait(&c, &submitted(d)).await;
    let dup_qty: Decimal = c
        .query_one(
            "SELECT qty FROM tapeflow.orders WHERE client_order_id = $1",
            &[&format!("tf-{dup_id}-entry")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dup_qty, dec("5"), "the broker's order is adopted as it is");

    // The stream drops right after a partial fill; the rest is only visible over REST.
    let x = signal(&c, "DROP", None).await;
    wait(&c, &submitted(x)).await;
    fake.drop_stream_after("partial_fill");
    fake.fill(&format!("tf-{x}-entry"), dec("100"), dec("100.10"));
    fake.fill(&format!("tf-{x}-entry"), dec("150"), dec("100.20"));
    wait(&c, &format!("SELECT status = 'filled' FROM tapeflow.signals WHERE id = {x}")).await;
    let (q, avg): (Decimal, Decimal) = {
        let r = c
            .query_one(
                "SELECT sum(qty), sum(qty * price) / sum(qty) FROM tapeflow.fills WHERE symbol = 'DROP'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(q, dec("250"));
    assert_eq!(avg.round_dp(6), dec("100.16"));

    // Updates out of order (a fill before its new) and each sent twice.
    let o = signal(&c, "OOO", None).await;
    wait(&c, &submitted(o)).await;
    fake.deliver_out_of_order(true);
    fake.duplicate_events(true);
    fake.fill(&format!("tf-{o}-entry"), dec("250"), dec("100.01"));
    fake.deliver_out_of_order(false);
    wait(&c, &format!("SELECT status = 'filled' FROM tapeflow.signals WHERE id = {o}")).await;
    let status: String = c
        .query_one(
            "SELECT status FROM tapeflow.orders WHERE client_order_id = $1",
            &[&format!("tf-{o}-entry")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "filled", "a late new does not undo a fill");

    let counts = fake.count_by_client_id();
    assert_eq!(counts.len(), 6, "{counts:?}");
    assert!(counts.values().all(|&n| n == 1), "exactly one order per signal: {counts:?}");
    for s in ["DROP", "OOO"] {
        assert_positions_match(&c, &fake, s).await;
    }
    let events: i64 = c.query_one("SELECT count(*) FROM tapeflow.order_events", &[]).await.unwrap().get(0);
    assert!(events > 6);

    // The broker's account flags are a gate too.
    fake.set_account_blocked(true);
    let blocked = signal(&c, "BLK", None).await;
    wait(&c, &format!("SELECT status = 'rejected' FROM tapeflow.signals WHERE id = {blocked}")).await;
    let code: String = c
        .query_one("SELECT reject_code FROM tapeflow.signals WHERE id = $1", &[&blocked])
        .await
        .unwrap()
        .get(0);
    assert_eq!(code, "account_blocked");
}
