//! Fixes of the core (bars, sessions, classification, ingest, rollups, the watchlist) against
//! the project cluster: each test shows a defect's behaviour fixed.

use tapeflow_tests::*;
use tokio_postgres::Client;

async fn connect(db: &TestDb) -> Client {
    db.client().await
}

/// Rows of a query as text, one per row (for comparing whole rows).
async fn texts(c: &Client, sql: &str) -> Vec<String> {
    c.query(sql, &[]).await.unwrap().iter().map(|r| r.get::<_, String>(0)).collect()
}

/// Daily bars are trading sessions: a Euro FX future trading 17:00–16:00 New York has one
/// daily bar per session, starting at its 17:00 open and labelled with its own session, in
/// candles, order flow, footprints, developing profiles, market state and the watchlist; a US
/// stock's daily bar starts at its 09:30 open.
#[tokio::test]
async fn daily_bars_are_trading_sessions() {
    let db = TestDb::create("daily", false).await;
    let c = connect(&db).await;
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, asset_class, tick_size, timezone, session_open, session_close)
         VALUES ('6E', 'future', 0.00005, 'America/New_York', '17:00', '16:00'),
                ('XYZ', 'us_equity', 0.01, 'America/New_York', '09:30', '16:00');
         -- 6E: Monday's session opens 2024-01-08 17:00 EST (22:00Z) and runs to Tuesday's open.
         INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id) VALUES
             ('2024-01-08 23:00+00', '6E', 1.0950, 10, 'B', 'a'),   -- Mon 18:00: session 2024-01-08
             ('2024-01-08 23:30+00', '6E', 1.0955, 3, 'B', 'a2'),
             ('2024-01-09 15:00+00', '6E', 1.0960, 20, 'S', 'b'),   -- Tue 10:00: still session 2024-01-08
             ('2024-01-09 22:30+00', '6E', 1.0970, 5, 'B', 'c'),    -- Tue 17:30: session 2024-01-09
             ('2024-01-10 14:00+00', '6E', 1.0980, 7, 'B', 'd'),    -- Wed 09:00: session 2024-01-09
             ('2024-01-09 13:00+00', 'XYZ', 50.00, 100, 'B', 'x1'), -- 08:00 before the open: session 2024-01-08
             ('2024-01-09 15:00+00', 'XYZ', 51.00, 200, 'S', 'x2'); -- 10:00: session 2024-01-09",
    )
    .await
    .unwrap();
    let candles = texts(
        &c,
        "SELECT format('%s %s %s %s', to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), open, close, volume)
         FROM tapeflow.candles('6E', '1d', '2024-01-08 00:00+00', '2024-01-11 00:00+00')",
    )
    .await;
    assert_eq!(candles, ["2024-01-08 22:00 1.095 1.096 33", "2024-01-09 22:00 1.097 1.098 12"]);
    let stock = texts(
        &c,
        "SELECT format('%s %s', to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), volume)
         FROM tapeflow.candles('XYZ', '1d', '2024-01-08 00:00+00', '2024-01-11 00:00+00')",
    )
    .await;
    assert_eq!(stock, ["2024-01-08 14:30 100", "2024-01-09 14:30 200"]);

    // Each daily bar is labelled with its own session; the CVD restarts with each.
    let flow = texts(
        &c,
        "SELECT format('%s %s %s %s', to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), session, delta, cvd)
         FROM tapeflow.order_flow('6E', '1d', '2024-01-08 00:00+00', '2024-01-11 00:00+00')",
    )
    .await;
    assert_eq!(flow, ["2024-01-08 22:00 2024-01-08 -7 -7", "2024-01-09 22:00 2024-01-09 12 12"]);
    // A range starting mid-session starts with that session's bar.
    let flow = texts(
        &c,
        "SELECT format('%s %s', session, volume) FROM tapeflow.order_flow('6E', '1d', '2024-01-09 12:00+00', '2024-01-11 00:00+00')",
    )
    .await;
    assert_eq!(flow, ["2024-01-08 33", "2024-01-09 12"]);

    let footprint = texts(
        &c,
        "SELECT format('%s %s', to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), sum(volume))
         FROM tapeflow.footprint('6E', '1d', '2024-01-08 00:00+00', '2024-01-11 00:00+00') GROUP BY time ORDER BY time",
    )
    .await;
    assert_eq!(footprint, ["2024-01-08 22:00 33", "2024-01-09 22:00 12"]);
    let imbalance_bars = texts(
        &c,
        "SELECT DISTINCT to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')
         FROM tapeflow.footprint_imbalances('6E', '1d', '2024-01-08 00:00+00', '2024-01-11 00:00+00', min_rows => 1)
         ORDER BY 1",
    )
    .await;
    assert_eq!(imbalance_bars, ["2024-01-08 22:00", "2024-01-09 22:00"]);
    let developing = texts(
        &c,
        "SELECT format('%s %s', to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), volume)
         FROM tapeflow.developing_profile('6E', '2024-01-08', '1d')",
    )
    .await;
    assert_eq!(developing, ["2024-01-08 22:00 33"]);
    let state = texts(
        &c,
        "SELECT format('%s %s %s', to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), delta, cvd)
         FROM tapeflow.market_state_history('6E', '2024-01-08 22:00+00', '2024-01-11 00:00+00', '{}', '1d')",
    )
    .await;
    assert_eq!(state, ["2024-01-08 22:00 -7 -7", "2024-01-09 22:00 12 12"]);

    // The watchlist's trading day is the session: its volume, and the change against the
    // previous session's last price.
    let watch = texts(
        &c,
        "SELECT format('%s %s %s', symbol, volume, change_pct) FROM tapeflow.watchlist ORDER BY symbol",
    )
    .await;
    let change = ((1.098f64 / 1.096 - 1.0) * 100.0 * 100.0).round() / 100.0;
    assert_eq!(watch, [format!("6E 12 {change}"), "XYZ 200 2".to_string()]);
}
