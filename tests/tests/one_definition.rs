//! One definition each, whichever way it is read: order flow's pressures and session CVD are the
//! bar engine's (`tapeflow_analytics::flow`), and every statistic of a backtest (stored,
//! restated, swept, walked forward, listed by the web app) is annualised by the symbols'
//! calendars.

use serde_json::Value;
use tapeflow_tests::*;
use tokio_postgres::Client;

async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(c: &Client, sql: &str) -> T {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| {
            panic!("{sql}: {}", e.as_db_error().map_or_else(|| e.to_string(), |d| d.to_string()))
        })
        .get(0)
}

/// Equal up to the last bits: the stored statistics pass through JSON text, whose readers
/// need not round to the nearest double.
fn same(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() <= 1e-12 * b.abs())
}

async fn error_of(c: &Client, sql: &str) -> String {
    let e = c.query(sql, &[]).await.expect_err(sql);
    e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string())
}

/// The README's market (AAPL and NVDA, 4-6 March 2024), and BTCUSD: AAPL's trades on a
/// 24-hour crypto calendar.
async fn market(prefix: &str) -> (TestDb, Client) {
    let db = TestDb::create(prefix, false).await;
    let c = db.client().await;
    let fixture = std::fs::read_to_string(repo_root().join("tests/fixtures/readme.sql")).unwrap();
    c.batch_execute(&fixture).await.expect("load tests/fixtures/readme.sql");
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, asset_class, tick_size, timezone, session_open, session_close)
         VALUES ('BTCUSD', 'crypto', 0.01, 'UTC', '00:00', '00:00');
         INSERT INTO tapeflow.ticks (time, symbol, price, size, side, side_source, trade_id)
         SELECT time, 'BTCUSD', price, size, side, side_source, trade_id FROM tapeflow.ticks WHERE symbol = 'AAPL'",
    )
    .await
    .unwrap();
    (db, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_flow_reads_the_pressures_and_cvd_of_the_bar_engine() {
    let (_db, c) = market("one_flow").await;
    // Per one-minute bar over two sessions: the engine's pressure over a one-bar window, its
    // delta and its session CVD, against order_flow's.
    let rows = c
        .query(
            "SELECT f.time, f.buy_pressure, h.buy_pressure, f.sell_pressure, h.sell_pressure, f.delta, h.delta,
                    f.cvd, h.cvd, tapeflow.buy_pressure(b.candle), tapeflow.sell_pressure(b.candle)
             FROM tapeflow.order_flow('NVDA', '1m', '2024-03-04 15:00+00', '2024-03-06') f
             JOIN tapeflow.market_state_history('NVDA', '2024-03-04 15:00+00', '2024-03-06',
                                                '{\"aggression\": {\"flow_lookback\": 1}}', '1m') h USING (time)
             JOIN tapeflow.bars_1m b ON b.symbol = 'NVDA' AND b.bucket = f.time
             ORDER BY f.time",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 360 + 390, "bars from 10:00 on the 4th and the whole 5th");
    for r in &rows {
        let t: chrono::DateTime<chrono::Utc> = r.get(0);
        let v: Vec<f64> = (1..11).map(|i| r.get(i)).collect();
        assert_eq!((v[0], v[2], v[4], v[6]), (v[1], v[3], v[5], v[7]), "at {t}: order_flow vs the engine");
        assert_eq!((v[8], v[9]), (v[0], v[2]), "at {t}: buy/sell_pressure(candle)");
    }
    // The CVD restarts at the session open (the 5th's first bar is its own delta) and counts
    // from the session's start when the range begins later (10:00 on the 4th is not its delta).
    let first_of_5th = rows
        .iter()
        .find(|r| r.get::<_, chrono::DateTime<chrono::Utc>>(0).date_naive().to_string() == "2024-03-05")
        .unwrap();
    assert_eq!(first_of_5th.get::<_, f64>(7), first_of_5th.get::<_, f64>(5));
    assert_ne!(rows[0].get::<_, f64>(7), rows[0].get::<_, f64>(5));
    // Without the reset it accumulates from "from": the last bar's CVD is the sum of the deltas.
    let (sum, last): (f64, f64) = {
        let r = c
            .query_one(
                "SELECT sum(delta), (array_agg(cvd ORDER BY time DESC))[1]
                 FROM tapeflow.order_flow('NVDA', '5m', '2024-03-04', '2024-03-07', session_reset => false)",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!((sum - last).abs() < 1e-6 * sum.abs().max(1.0), "{sum} {last}");

    assert_eq!(one::<f64>(&c, "SELECT tapeflow.buy_pressure(30, 10)").await, 75.0);
    assert_eq!(one::<f64>(&c, "SELECT tapeflow.sell_pressure(0, 0)").await, 50.0);
    assert_eq!(
        error_of(&c, "SELECT tapeflow.buy_pressure('NaN', 1)").await,
        "buy_pressure: buy_volume must be a finite number >= 0, got NaN"
    );
    assert_eq!(
        error_of(
            &c,
            "SELECT tapeflow.session_cvd(NULL, b, s) OVER (ORDER BY b) FROM (VALUES (1.0, -2.0)) v (b, s)"
        )
        .await,
        "session_cvd: sell_volume must be a finite number >= 0, got -2"
    );
}

/// (trades, stored Sharpe, its year, backtest_stats' Sharpe) of a new run.
async fn run(c: &Client, symbol: &str, range: &str, params: &str) -> (i64, Value, f64) {
    let id: i64 =
        one(c, &format!("SELECT tapeflow.backtest_run(ARRAY['{symbol}'], {range}, '{params}')")).await;
    let stats: Value = one(c, &format!("SELECT stats FROM tapeflow.backtest_runs WHERE id = {id}")).await;
    let sharpe: f64 =
        one(c, &format!("SELECT number FROM tapeflow.backtest_stats({id}) WHERE statistic = 'Sharpe Ratio'"))
            .await;
    (id, stats, sharpe)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statistic_is_annualised_by_the_symbols_calendars() {
    let (db, c) = market("one_year").await;
    let range = "'2024-03-04', '2024-03-07'";
    let params = r#"{"engine": {"strategy": {"min_aggression_score": 60}}}"#;
    let (_, aapl, aapl_sharpe) = run(&c, "AAPL", range, params).await;
    let (btc_id, btc, btc_sharpe) = run(&c, "BTCUSD", range, params).await;
    assert_eq!(aapl["annual_trading_days"], 252.0, "a US stock: 252 days a year");
    assert_eq!(btc["annual_trading_days"], 365.0, "crypto trades every day: 365");
    assert!(aapl["trades"].as_u64() > Some(10) && btc["trades"].as_u64() > Some(10));
    // What is stored is what backtest_stats shows.
    assert!(same(aapl["sharpe"].as_f64(), aapl_sharpe), "{} {aapl_sharpe}", aapl["sharpe"]);
    assert!(same(btc["sharpe"].as_f64(), btc_sharpe), "{} {btc_sharpe}", btc["sharpe"]);
    // Restated from 252 days, as a run stored before the year was recorded would be.
    let as_252 = serde_json::json!(btc["sharpe"].as_f64().unwrap() * (252.0f64 / 365.0).sqrt());
    c.execute(
        "UPDATE tapeflow.backtest_runs SET stats = stats - 'annual_trading_days' || jsonb_build_object('sharpe', $2::jsonb)
         WHERE id = $1",
        &[&btc_id, &as_252],
    )
    .await
    .unwrap();
    let restated: f64 = one(
        &c,
        &format!("SELECT number FROM tapeflow.backtest_stats({btc_id}) WHERE statistic = 'Sharpe Ratio'"),
    )
    .await;
    assert!((restated - btc_sharpe).abs() < 1e-9 * btc_sharpe.abs(), "{restated} {btc_sharpe}");

    // A one-combination grid is the same run.
    let grid: f64 = one(
        &c,
        &format!(
            "SELECT sharpe FROM tapeflow.backtest_grid(ARRAY['BTCUSD'], {range},
                 '{{\"engine.strategy.min_aggression_score\": [60]}}')"
        ),
    )
    .await;
    assert!(same(Some(grid), btc_sharpe), "{grid} {btc_sharpe}");
    // Walk-forward: the out-of-sample window's statistics are those of a run over it.
    let w = c
        .query_one(
            &format!(
                "SELECT out_from, out_to, best_params, out_sharpe FROM tapeflow.backtest_walk_forward(ARRAY['BTCUSD'],
                     {range}, '{{\"engine.strategy.min_aggression_score\": [60, 70]}}', '1 day', '2 days')"
            ),
            &[],
        )
        .await
        .unwrap();
    let (from, to): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) = (w.get(0), w.get(1));
    let best: Value = w.get(2);
    let out_range = format!("'{}', '{}'", from.to_rfc3339(), to.to_rfc3339());
    let (_, out, out_sharpe) = run(&c, "BTCUSD", &out_range, &best.to_string()).await;
    assert_eq!(out["annual_trading_days"], 365.0);
    assert!(same(w.get(3), out_sharpe), "{:?} {out_sharpe}", w.get::<_, Option<f64>>(3));

    // The web app's list of runs shows the same Sharpe ratio as the run's page.
    let (_web, base, http) = start_web(&db).await;
    let list: Value = http.get(format!("{base}/api/backtests")).send().await.unwrap().json().await.unwrap();
    let listed = list.as_array().unwrap().iter().find(|r| r["symbols"][0] == "AAPL").expect("the AAPL run");
    assert!(same(listed["sharpe"].as_f64(), aapl_sharpe), "{listed}");
    let id = listed["id"].as_i64().unwrap();
    let page: Value =
        http.get(format!("{base}/api/backtests/{id}")).send().await.unwrap().json().await.unwrap();
    assert!(same(page["stats"]["Sharpe Ratio"].as_f64(), aapl_sharpe), "{}", page["stats"]);
}
