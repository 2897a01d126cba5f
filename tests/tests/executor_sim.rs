//! tapeflow-exec with the sim broker against a real cluster: every risk gate's rejection, a
//! bracket round trip into fills and positions, the kill switch, two executors at once, and a
//! demo session traded live through the scheduler and the executor giving the backtest's trades.

use std::time::Duration;
use tapeflow_db::ListenEvent;
use tapeflow_tests::*;

fn start_exec(db: &TestDb, extra: &[(&str, &str)]) -> Proc {
    let mut more = vec![("TAPEFLOW_BROKER", "sim".to_string())];
    more.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    Proc::spawn("tapeflow-exec", &[], &exec_env(db, &more))
}

/// Inserts an entry signal and waits until the executor has decided it; returns (status, reject_code).
async fn decide(
    c: &tokio_postgres::Client,
    strategy: &str,
    symbol: &str,
    side: &str,
    entry: f64,
    stop: f64,
    bar_ago_min: i32,
) -> (String, Option<String>) {
    let id: i64 = c
        .query_one(
            "INSERT INTO tapeflow.signals (bar, symbol, strategy, kind, side, entry, stop, target, reason)
             VALUES (tapeflow.minute(now()) - make_interval(mins => $5::int), $1, $6, 'entry', $2, $3::float8, $4::float8,
                     $3::float8 + ($3::float8 - $4::float8) * 2, 'test') RETURNING id",
            &[&symbol, &side, &entry, &stop, &bar_ago_min, &strategy],
        )
        .await
        .unwrap()
        .get(0);
    let status = wait_for_value(
        c,
        "SELECT status FROM tapeflow.signals WHERE id = $1 AND status NOT IN ('new', 'claimed')",
        id,
        Duration::from_secs(20),
    )
    .await;
    let code: Option<String> =
        c.query_one("SELECT reject_code FROM tapeflow.signals WHERE id = $1", &[&id]).await.unwrap().get(0);
    (status, code)
}

async fn wait_for_value(c: &tokio_postgres::Client, sql: &str, id: i64, timeout: Duration) -> String {
    let start = std::time::Instant::now();
    loop {
        if let Some(r) = c.query_opt(sql, &[&id]).await.unwrap() {
            return r.get(0);
        }
        assert!(start.elapsed() < timeout, "timed out: {sql} ({id})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Our orders beside the venue's, for a timeout's message.
const ORDERS_STATE: &str =
    "SELECT format('%s venue %s/%s ours %s/%s', coalesce(s.client_order_id, o.client_order_id),
        s.status, s.filled_qty, o.status, o.filled_qty)
    FROM tapeflow.sim_orders s FULL JOIN tapeflow.orders o USING (client_order_id) ORDER BY 1";

async fn wait_true(c: &tokio_postgres::Client, sql: &str, timeout: Duration) {
    wait_until(c, sql, timeout, Some(ORDERS_STATE)).await
}

async fn setup(db: &TestDb) -> tokio_postgres::Client {
    let c = db.client().await;
    // A 24-hour market with trades at 100 over the last minutes, and one whose regular
    // session is two hours away whatever the time.
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size, timezone, session_open, session_close) VALUES ('GT', 0.01, 'UTC', '00:00', '00:00');
         INSERT INTO tapeflow.symbols (symbol, tick_size, timezone, session_open, session_close)
           VALUES ('SHUT', 0.01, 'UTC', ((now() AT TIME ZONE 'UTC') + interval '2 hours')::time, ((now() AT TIME ZONE 'UTC') + interval '3 hours')::time);
         INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
         SELECT now() - interval '10 minutes' + i * interval '1 second', s, 100, 10, 'B', s || i
         FROM generate_series(0, 300) i, unnest(array['GT', 'SHUT']) s;
         UPDATE tapeflow.risk_limits SET signal_ttl = '10 minutes';",
    )
    .await
    .unwrap();
    c
}

/// An account of 50 whose day also started at 50. The running executor snapshots the account
/// beside the test: a snapshot of the 100,000 account read before the change and written after
/// it would otherwise start the day at 100,000 and fail the order on the daily loss instead.
const SMALL_ACCOUNT: &str = "UPDATE tapeflow.risk_limits SET account_equity = 50;
     INSERT INTO tapeflow.account_snapshots (broker, day, start_equity, equity, cash, buying_power)
     VALUES ('sim', (now() AT TIME ZONE 'UTC')::date, 50, 50, 50, 50)
     ON CONFLICT (broker, day) DO UPDATE SET start_equity = 50";

#[tokio::test]
async fn every_risk_gate_rejects_with_its_reason() {
    let db = TestDb::create("gates", false).await;
    let c = setup(&db).await;
    let _exec = start_exec(&db, &[]);
    let reset = "UPDATE tapeflow.risk_limits SET trading_enabled = true, max_positions = 3, max_daily_loss_pct = 3,
                 max_order_notional = 1000000, account_equity = 100000, price_band_pct = 1, allow_short = true;
                 DELETE FROM tapeflow.account_snapshots; DELETE FROM tapeflow.position_book;";
    // (case, setup SQL, (symbol, entry, stop, bar minutes ago), expected reject_code)
    type Case<'a> = (&'a str, &'a str, (&'a str, f64, f64, i32), &'a str);
    let cases: Vec<Case> = vec![
        ("kill switch", "UPDATE tapeflow.risk_limits SET trading_enabled = false", ("GT", 100.0, 99.0, 2), "kill_switch"),
        ("stale", "", ("GT", 100.0, 99.0, 30), "stale"),
        ("shorts", "UPDATE tapeflow.risk_limits SET allow_short = false", ("GT", 100.0, 101.0, 2), "shorts_disabled"),
        ("market hours", "", ("SHUT", 100.0, 99.0, 2), "market_hours"),
        (
            "max positions",
            "UPDATE tapeflow.risk_limits SET max_positions = 1;
             INSERT INTO tapeflow.position_book (symbol, strategy, qty, avg_price) VALUES ('SHUT', 'other', 5, 100)",
            ("GT", 100.0, 99.0, 2),
            "max_positions",
        ),
        (
            "daily loss",
            "INSERT INTO tapeflow.account_snapshots (broker, day, start_equity, equity, cash, buying_power)
             VALUES ('sim', (now() AT TIME ZONE 'UTC')::date, 110000, 100000, 100000, 100000)
             ON CONFLICT (broker, day) DO UPDATE SET start_equity = 110000",
            ("GT", 100.0, 99.0, 2),
            "daily_loss",
        ),
        ("price band", "", ("GT", 102.0, 101.0, 2), "price_band"),
        ("notional", "UPDATE tapeflow.risk_limits SET max_order_notional = 50", ("GT", 100.0, 99.0, 2), "max_notional"),
        ("buying power", SMALL_ACCOUNT, ("GT", 100.0, 99.99, 2), "buying_power"),
        ("risk budget", SMALL_ACCOUNT, ("GT", 100.0, 99.0, 2), "size"),
    ];
    let side = |entry: f64, stop: f64| if stop < entry { "buy" } else { "sell" };
    for (i, (name, sql, (sym, entry, stop, ago), want)) in cases.into_iter().enumerate() {
        c.batch_execute(reset).await.unwrap();
        if !sql.is_empty() {
            c.batch_execute(sql).await.unwrap();
        }
        let (status, code) = decide(&c, &format!("case{i}"), sym, side(entry, stop), entry, stop, ago).await;
        assert_eq!((status.as_str(), code.as_deref()), ("rejected", Some(want)), "{name}");
        let error: String = c
            .query_one("SELECT error FROM tapeflow.signals ORDER BY id DESC LIMIT 1", &[])
            .await
            .unwrap()
            .get(0);
        assert!(!error.is_empty(), "{name}: the reason is recorded");
    }
    // An exit with nothing to close.
    c.batch_execute(reset).await.unwrap();
    c.batch_execute(
        "INSERT INTO tapeflow.signals (bar, symbol, strategy, kind, side, entry, reason)
         VALUES (tapeflow.minute(now()), 'GT', 'amt', 'exit', 'sell', 100, 'test')",
    )
    .await
    .unwrap();
    wait_true(
        &c,
        "SELECT EXISTS (SELECT 1 FROM tapeflow.signals WHERE kind = 'exit' AND reject_code = 'no_position')",
        Duration::from_secs(10),
    )
    .await;
    // Nothing reached the broker.
    let sent: i64 = c.query_one("SELECT count(*) FROM tapeflow.sim_orders", &[]).await.unwrap().get(0);
    assert_eq!(sent, 0);
}

#[tokio::test]
async fn bracket_round_trip_fills_positions_and_announces() {
    let db = TestDb::create("bracket", false).await;
    let c = setup(&db).await;
    c.batch_execute("UPDATE tapeflow.risk_limits SET max_order_notional = 1000000").await.unwrap();
    let mut events = tapeflow_db::listen(db.url.clone(), vec!["tapeflow_orders".into()]);
    assert!(matches!(events.recv().await, Some(ListenEvent::Connected)));
    let _exec = start_exec(
        &db,
        &[("TAPEFLOW_SIM_SLIPPAGE_TICKS", "1"), ("TAPEFLOW_SIM_COMMISSION_PER_SHARE", "0.01")],
    );
    // Entry 100, stop 99, target 102, on the bar 4 minutes ago.
    let (status, _) = decide(&c, "amt", "GT", "buy", 100.0, 99.0, 4).await;
    assert_eq!(status, "submitted");
    let legs: Vec<(String, String, String)> = c
        .query("SELECT leg, client_order_id, status FROM tapeflow.orders ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let id: i64 = c.query_one("SELECT max(id) FROM tapeflow.signals", &[]).await.unwrap().get(0);
    assert_eq!(legs.len(), 3, "{legs:?}");
    assert_eq!(legs[0].1, format!("tf-{id}-entry"));
    // Risk 1 % of 100000 over a 1.00 stop: 1000 shares; notional 100k > cash, so cash caps it:
    // 100000 / (100.01 + 0.01) = 999.8 → 999.
    let qty: rust_decimal::Decimal =
        c.query_one("SELECT qty FROM tapeflow.orders WHERE leg = 'entry'", &[]).await.unwrap().get(0);
    assert_eq!(qty, rust_decimal::Decimal::from(999));

    // The next bar opens at 100.00 (fill 100.01 with a tick of slippage); the one after
    // reaches the target 102 (a limit: no slippage).
    c.batch_execute(
        "INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id) VALUES
           (tapeflow.minute(now()) - interval '3 minutes' + interval '1 second', 'GT', 100.00, 10, 'B', 'n1'),
           (tapeflow.minute(now()) - interval '3 minutes' + interval '30 seconds', 'GT', 100.60, 10, 'B', 'n2'),
           (tapeflow.minute(now()) - interval '2 minutes' + interval '1 second', 'GT', 101.00, 10, 'B', 'n3'),
           (tapeflow.minute(now()) - interval '2 minutes' + interval '20 seconds', 'GT', 102.10, 10, 'B', 'n4')",
    )
    .await
    .unwrap();
    // Earlier ticks at 100 fall on the signal's bar and before; the bars after it are ours.
    c.batch_execute("DELETE FROM tapeflow.ticks WHERE symbol = 'GT' AND time >= tapeflow.minute(now()) - interval '3 minutes' AND trade_id NOT LIKE 'n%'")
        .await
        .unwrap();
    wait_true(&c, "SELECT count(*) = 2 FROM tapeflow.fills", Duration::from_secs(20)).await;
    use rust_decimal::Decimal;
    let d = |x: &str| x.parse::<Decimal>().unwrap();
    let fills: Vec<(String, Decimal, Decimal, Decimal)> = c
        .query("SELECT side, qty, price, fee FROM tapeflow.fills ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(fills[0], ("buy".into(), d("999"), d("100.01"), d("9.99")));
    assert_eq!(fills[1], ("sell".into(), d("999"), d("102"), d("9.99")));
    // Flat, with (102 − 100.01) × 999 − 2 × 9.99 realised.
    wait_true(&c, "SELECT NOT EXISTS (SELECT 1 FROM tapeflow.positions)", Duration::from_secs(5)).await;
    let pnl: Decimal =
        c.query_one("SELECT realised_pnl FROM tapeflow.position_book", &[]).await.unwrap().get(0);
    assert_eq!(pnl, d("1968.03"));
    // The target's fill and the stop's cancel are two updates, recorded one after the other
    // (as Alpaca sends them): the flat position can be read before the cancel lands.
    wait_true(
        &c,
        "SELECT NOT EXISTS (SELECT 1 FROM tapeflow.orders WHERE leg = 'stop_loss' AND status = 'new')",
        Duration::from_secs(5),
    )
    .await;
    let statuses: Vec<(String, String)> = c
        .query("SELECT leg, status FROM tapeflow.orders ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("entry".into(), "filled".into()),
            ("take_profit".into(), "filled".into()),
            ("stop_loss".into(), "canceled".into())
        ]
    );
    let sig: String =
        c.query_one("SELECT status FROM tapeflow.signals WHERE id = $1", &[&id]).await.unwrap().get(0);
    assert_eq!(sig, "filled");
    // Every order event was announced.
    let stored: i64 = c.query_one("SELECT count(*) FROM tapeflow.order_events", &[]).await.unwrap().get(0);
    let mut announced = 0;
    while let Ok(Some(ListenEvent::Notification { payload, .. })) =
        tokio::time::timeout(Duration::from_millis(500), events.recv()).await
    {
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(v["symbol"], "GT");
        announced += 1;
    }
    assert_eq!(announced, stored);
    // order_events is append-only.
    assert!(c.batch_execute("DELETE FROM tapeflow.order_events").await.is_err());
}

#[tokio::test]
async fn kill_switch_cancels_open_entries() {
    let db = TestDb::create("kill", false).await;
    let c = setup(&db).await;
    let _exec = start_exec(&db, &[]);
    // A signal on the current bar: its fill waits for the next bar to close.
    let (status, _) = decide(&c, "amt", "GT", "buy", 100.0, 99.0, 0).await;
    assert_eq!(status, "submitted");
    c.batch_execute("UPDATE tapeflow.risk_limits SET trading_enabled = false").await.unwrap();
    wait_true(&c, "SELECT bool_and(status = 'canceled') FROM tapeflow.orders", Duration::from_secs(10)).await;
    let sig: String = c.query_one("SELECT status FROM tapeflow.signals", &[]).await.unwrap().get(0);
    assert_eq!(sig, "cancelled");
    let venue: i64 = c
        .query_one("SELECT count(*) FROM tapeflow.sim_orders WHERE status <> 'canceled'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(venue, 0);
}

#[tokio::test]
async fn two_executors_never_double_submit() {
    let db = TestDb::create("twoexec", false).await;
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size, timezone, session_open, session_close)
         SELECT 'S' || i, 0.01, 'UTC', '00:00', '00:00' FROM generate_series(1, 40) i;
         INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
         SELECT now() - interval '1 minute', 'S' || i, 50, 1, 'B', 'x' FROM generate_series(1, 40) i;
         INSERT INTO tapeflow.strategy_configs (symbol, enabled, params)
         SELECT 'S' || i, false, '{\"strategy\": {\"max_positions\": 100}}' FROM generate_series(1, 40) i;
         UPDATE tapeflow.risk_limits SET max_positions = 1000, max_order_notional = 1000000, account_equity = 1000000000,
                                         signal_ttl = '10 minutes';",
    )
    .await
    .unwrap();
    let _a = start_exec(&db, &[("TAPEFLOW_EXEC_ID", "a")]);
    let _b = start_exec(&db, &[("TAPEFLOW_EXEC_ID", "b")]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.batch_execute(
        "INSERT INTO tapeflow.signals (bar, symbol, strategy, kind, side, entry, stop, target, reason)
         SELECT tapeflow.minute(now()), 'S' || i, 'amt', 'entry', 'buy', 50, 49.5, 51, 'test' FROM generate_series(1, 40) i",
    )
    .await
    .unwrap();
    wait_true(
        &c,
        "SELECT count(*) = 40 FROM tapeflow.signals WHERE status = 'submitted'",
        Duration::from_secs(30),
    )
    .await;
    let (orders, distinct, claimers): (i64, i64, i64) = {
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM tapeflow.sim_orders WHERE leg = 'entry'),
                        (SELECT count(DISTINCT client_order_id) FROM tapeflow.sim_orders WHERE leg = 'entry'),
                        (SELECT count(DISTINCT claimed_by) FROM tapeflow.signals)",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!((orders, distinct), (40, 40), "one order per signal");
    assert!(claimers >= 1);
}

/// A demo session replayed minute by minute: ticks inserted, the sim broker steps over the
/// closed bar, the scheduler's cycle evaluates it, the executor works the signal. The round
/// trips it records equal `tapeflow.backtest` over the same stored bars, trade by trade.
#[tokio::test]
async fn live_session_through_sim_broker_equals_backtest() {
    let db = TestDb::create("simreplay", false).await;
    let c = demo_session(&db, "AAPL").await;
    let params = r#"{"strategy": {"min_aggression_score": 50, "max_daily_loss_pct": 100}}"#;
    c.batch_execute(&format!(
        "CREATE TABLE recorded AS SELECT * FROM tapeflow.ticks;
         DELETE FROM tapeflow.ticks;
         INSERT INTO tapeflow.strategy_configs (symbol, params) VALUES ('AAPL', '{params}')
           ON CONFLICT (symbol, strategy) DO UPDATE SET params = EXCLUDED.params;
         UPDATE tapeflow.risk_limits SET signal_ttl = '36500 days', max_order_notional = 1000000000000,
                max_daily_loss_pct = 100, price_band_pct = 100;"
    ))
    .await
    .unwrap();
    let _exec = start_exec(&db, &[("TAPEFLOW_EXEC_SWEEP_MS", "20")]);
    let minutes: Vec<chrono::DateTime<chrono::Utc>> = c
        .query("SELECT DISTINCT tapeflow.minute(time) m FROM recorded ORDER BY m", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(minutes.len() > 300);
    let synced = "SELECT (SELECT count(*) FROM tapeflow.sim_orders) = (SELECT count(*) FROM tapeflow.orders)
                    AND NOT EXISTS (SELECT 1 FROM tapeflow.sim_orders s JOIN tapeflow.orders o USING (client_order_id)
                                    WHERE o.status <> s.status)
                    AND (SELECT count(*) FROM tapeflow.sim_orders WHERE filled_qty > 0) = (SELECT count(*) FROM tapeflow.fills)";
    for m in &minutes {
        c.execute(
            "INSERT INTO tapeflow.ticks SELECT * FROM recorded WHERE time >= $1 AND time < $1::timestamptz + interval '1 minute'",
            &[m],
        )
        .await
        .unwrap();
        let stepped = c
            .prepare("SELECT NOT EXISTS (SELECT 1 FROM tapeflow.sim_orders WHERE status IN ('new', 'held') AND checked_through < $1)")
            .await
            .unwrap();
        let start = std::time::Instant::now();
        while !c.query_one(&stepped, &[m]).await.unwrap().get::<_, bool>(0) {
            assert!(start.elapsed() < Duration::from_secs(20), "sim broker did not step over {m}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        wait_true(&c, synced, Duration::from_secs(20)).await;
        c.execute("SELECT count(*) FROM tapeflow.run_cycle($1::timestamptz + interval '62 seconds')", &[m])
            .await
            .unwrap();
        wait_true(
            &c,
            "SELECT NOT EXISTS (SELECT 1 FROM tapeflow.signals WHERE status IN ('new', 'claimed'))",
            Duration::from_secs(20),
        )
        .await;
        wait_true(&c, synced, Duration::from_secs(20)).await;
    }

    // Round trips from the fills: each entry fill with the exit fill that followed it.
    let live: Vec<String> = c
        .query(
            "WITH f AS (SELECT f.*, o.purpose, o.leg, row_number() OVER (ORDER BY f.time, f.id) n
                        FROM tapeflow.fills f JOIN tapeflow.orders o ON o.id = f.order_id WHERE f.symbol = 'AAPL')
             SELECT format('%s %s %s @ %s -> %s @ %s pnl %s', CASE e.side WHEN 'buy' THEN 'long' ELSE 'short' END,
                           trim_scale(e.qty), e.time, trim_scale(e.price), x.time, trim_scale(x.price),
                           trim_scale(x.realised_pnl))
             FROM f e JOIN f x ON x.n = e.n + 1
             WHERE e.leg = 'entry' ORDER BY e.time",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let first = minutes[0];
    let end = *minutes.last().unwrap() + chrono::Duration::minutes(1);
    let backtest: Vec<String> = c
        .query(
            &format!(
                "SELECT format('%s %s %s @ %s -> %s @ %s pnl %s', side, quantity, entry_time, trim_scale(entry_price),
                               exit_time, trim_scale(exit_price), trim_scale(pnl))
                 FROM tapeflow.backtest(ARRAY['AAPL'], $1, $2, '{{\"initial_cash\": 100000, \"engine\": {params}}}')
                 WHERE exit_reason <> 'end_of_data' ORDER BY entry_time"
            ),
            &[&first, &end],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!backtest.is_empty(), "the session should trade");
    assert_eq!(live, backtest, "live trades through the sim broker differ from the backtest");
    // Positions equal the fills.
    let open: i64 = c
        .query_one("SELECT count(*) FROM tapeflow.signals WHERE kind = 'entry' AND status = 'filled'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(open as usize >= live.len());
}

#[tokio::test]
async fn metrics_flatten_and_session_end() {
    let db = TestDb::create("execmetrics", false).await;
    let c = setup(&db).await;
    c.batch_execute("UPDATE tapeflow.risk_limits SET max_order_notional = 1000000").await.unwrap();
    let port = free_port();
    let _exec = start_exec(&db, &[("TAPEFLOW_EXEC_METRICS_ADDR", &format!("127.0.0.1:{port}"))]);
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    wait_http_ok(&metrics, Duration::from_secs(20)).await;
    // A filled entry, then flatten_all() closes it through the executor.
    let (status, _) = decide(&c, "amt", "GT", "buy", 100.0, 99.0, 4).await;
    assert_eq!(status, "submitted");
    c.batch_execute(
        "INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id) VALUES
           (tapeflow.minute(now()) - interval '3 minutes' + interval '1 second', 'GT', 100.00, 10, 'B', 'n1'),
           (tapeflow.minute(now()) - interval '2 minutes' + interval '1 second', 'GT', 100.20, 10, 'B', 'n2')",
    )
    .await
    .unwrap();
    wait_true(&c, "SELECT EXISTS (SELECT 1 FROM tapeflow.positions)", Duration::from_secs(20)).await;
    let flat: i64 = c.query_one("SELECT count(*) FROM tapeflow.flatten_all()", &[]).await.unwrap().get(0);
    assert_eq!(flat, 1);
    // The exit waits for the next closed bar: the legs are cancelled at once, the market
    // order is at the broker.
    wait_true(
        &c,
        "SELECT EXISTS (SELECT 1 FROM tapeflow.orders WHERE purpose = 'exit' AND status = 'new')
            AND NOT EXISTS (SELECT 1 FROM tapeflow.orders WHERE leg IN ('take_profit', 'stop_loss') AND status <> 'canceled')",
        Duration::from_secs(20),
    )
    .await;
    let body = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    for name in
        ["tapeflow_exec_signals_total", "tapeflow_exec_orders_submitted_total", "tapeflow_exec_equity"]
    {
        assert!(body.contains(name), "{name} missing from /metrics:\n{body}");
    }
    // Session end: a position opened in a session that ends within the minute gets an exit.
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size, timezone, session_open, session_close)
           VALUES ('END', 0.01, 'UTC', ((now() AT TIME ZONE 'UTC') - interval '2 hours')::time, ((now() AT TIME ZONE 'UTC') + interval '30 seconds')::time);
         INSERT INTO tapeflow.position_book (symbol, strategy, qty, avg_price, opened_at) VALUES ('END', 'amt', 10, 100, now() - interval '1 hour');
         UPDATE tapeflow.risk_limits SET flat_at_session_end = true;",
    )
    .await
    .unwrap();
    wait_true(
        &c,
        "SELECT EXISTS (SELECT 1 FROM tapeflow.signals WHERE symbol = 'END' AND origin = 'session_end' AND side = 'sell')",
        Duration::from_secs(10),
    )
    .await;
}

/// The executor's connections (its own, LISTEN, the sim broker's) are killed by the server;
/// it reconnects, re-reads what it missed, and trades on.
#[tokio::test]
async fn survives_lost_database_connections() {
    let db = TestDb::create("execreconnect", false).await;
    let c = setup(&db).await;
    c.batch_execute("UPDATE tapeflow.risk_limits SET max_order_notional = 1000000").await.unwrap();
    let _exec = start_exec(&db, &[]);
    let (status, _) = decide(&c, "amt", "GT", "buy", 100.0, 99.0, 4).await;
    assert_eq!(status, "submitted");
    let killed: i64 = c
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()) k",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 3, "the executor holds its own, the LISTEN and the sim broker's connection ({killed})");
    // The next bar: the entry fills once the executor is back.
    c.batch_execute(
        "INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id) VALUES
           (tapeflow.minute(now()) - interval '3 minutes' + interval '1 second', 'GT', 100.00, 10, 'B', 'n1')",
    )
    .await
    .unwrap();
    wait_true(
        &c,
        "SELECT EXISTS (SELECT 1 FROM tapeflow.positions WHERE symbol = 'GT')",
        Duration::from_secs(30),
    )
    .await;
    // And a signal written while it was reconnecting is worked too.
    let (status, code) = decide(&c, "other", "GT", "buy", 100.0, 99.0, 4).await;
    // The open position holds the cash: no buying power is left.
    assert_eq!((status.as_str(), code.as_deref()), ("rejected", Some("buying_power")));
}
