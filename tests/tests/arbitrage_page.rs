//! The dashboard's arbitrage page against a throw-away database: two Polymarket markets seeded
//! through SQL, one of whose books offers a buy_both (the triggers open the opportunity), the
//! real tapeflow-exec paper-trading it with fees, tapeflow-web serving the page. The API is
//! checked against SQL here; `web/browser-test/arbitrage.test.mjs` then opens the page in
//! headless chromium as a trader and as a viewer, compares what it shows with SQL, changes a
//! book while the page is open (it must follow over SSE) and writes target/arbitrage.png.

use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use tapeflow_tests::*;

const VIEWER: &str = "watcher";
const VIEWER_PASSWORD: &str = "watcher-password-1";

/// A binary market `cond` with tokens `<n>1` (YES) and `<n>2` (NO), 4 % taker fee rate.
async fn market(c: &tokio_postgres::Client, cond: &str, n: &str, question: &str) {
    c.execute(
        "INSERT INTO tapeflow.polymarket_markets (condition_id, question, fee_rate, fee_exponent, tick_size, min_order_size, end_date)
         VALUES ($1, $2, 0.04, 1, 0.01, 5, now() + interval '20 days')",
        &[&cond, &question],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO tapeflow.polymarket_tokens (token_id, condition_id, outcome, outcome_index)
         VALUES ($1 || '1', $2, 'Yes', 0), ($1 || '2', $2, 'No', 1)",
        &[&n, &cond],
    )
    .await
    .unwrap();
}

async fn get(http: &reqwest::Client, base: &str, path: &str) -> Value {
    let r = http.get(format!("{base}{path}")).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(r.status().as_u16(), 200, "GET {path}");
    r.json().await.unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}"))
}

/// One text value from SQL.
async fn text(c: &tokio_postgres::Client, sql: &str) -> Option<String> {
    c.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrage_page_shows_markets_opportunities_trades_and_report_live() {
    let db = TestDb::create("arbpage", false).await;
    let c = db.client().await;
    market(&c, "0xa1", "1", "Will the first thing happen?").await;
    market(&c, "0xa2", "2", "Will the second thing happen?").await;
    let _exec = Proc::spawn("tapeflow-exec", &[], &exec_env(&db, &[]));
    // 0xa1: YES asks 0.45 × 100, 0.47 × 200; NO asks 0.50 × 60, 0.52 × 100 — buying both pays
    // after fees for 100 pairs. 0xa2: 0.55 + 0.50 = 1.05, nothing.
    c.batch_execute(
        "INSERT INTO tapeflow.polymarket_books (token_id, condition_id, ask_prices, ask_sizes, bid_prices, bid_sizes, tick_size) VALUES
           ('11', '0xa1', '{0.45,0.47}', '{100,200}', '{0.44}', '{50}', 0.01),
           ('12', '0xa1', '{0.50,0.52}', '{60,100}', '{0.49}', '{50}', 0.01),
           ('21', '0xa2', '{0.55}', '{100}', '{0.53}', '{50}', 0.01),
           ('22', '0xa2', '{0.50}', '{60}', '{0.38}', '{50}', 0.01)",
    )
    .await
    .unwrap();
    wait_until(
        &c,
        "SELECT EXISTS (SELECT 1 FROM tapeflow.arbitrage_trades WHERE market_key = '0xa1' AND mode = 'paper' AND status = 'filled')",
        Duration::from_secs(30),
        Some("SELECT format('%s %s %s %s', id, market_key, status, coalesce(error, reject_code, '')) FROM tapeflow.arbitrage_trades"),
    )
    .await;

    // Leg risk, as in polymarket_exec.rs: with detection off, an opportunity written by hand
    // for 20 pairs where the NO asks hold only 10; the FOK NO leg is killed, the YES leg filled
    // and sold back into the bids at a loss.
    c.batch_execute("UPDATE tapeflow.arbitrage_settings SET enabled = false").await.unwrap();
    market(&c, "0xa3", "3", "Will the third thing happen?").await;
    c.batch_execute(
        r#"INSERT INTO tapeflow.polymarket_books (token_id, condition_id, ask_prices, ask_sizes, bid_prices, bid_sizes, tick_size) VALUES
           ('31', '0xa3', '{0.40}', '{50}', '{0.38,0.36}', '{100,100}', 0.01),
           ('32', '0xa3', '{0.55}', '{10}', '{0.50}', '{10}', 0.01);
         INSERT INTO tapeflow.arbitrage_opportunities (kind, market_key, condition_id, size, edge, profit, notional, fees, legs, max_profit)
         VALUES ('buy_both', '0xa3', '0xa3', 20, 0.0305, 0.61, 19, 0.39, '[
             {"token_id": "31", "condition_id": "0xa3", "outcome": "Yes", "side": "buy", "shares": "20",
              "avg_price": "0.40", "worst_price": "0.40", "notional": "8", "fee": "0.192", "levels": 1},
             {"token_id": "32", "condition_id": "0xa3", "outcome": "No", "side": "buy", "shares": "20",
              "avg_price": "0.55", "worst_price": "0.55", "notional": "11", "fee": "0.198", "levels": 1}]', 0.61)"#,
    )
    .await
    .unwrap();
    wait_until(
        &c,
        "SELECT EXISTS (SELECT 1 FROM tapeflow.arbitrage_trades WHERE market_key = '0xa3' AND status = 'unwound' AND leg_risk_loss > 0)",
        Duration::from_secs(30),
        Some("SELECT format('%s %s %s %s', id, market_key, status, coalesce(error, reject_code, '')) FROM tapeflow.arbitrage_trades"),
    )
    .await;
    c.batch_execute("UPDATE tapeflow.arbitrage_settings SET enabled = true").await.unwrap();

    add_user(&db, VIEWER, "viewer", VIEWER_PASSWORD);
    let (_web, base, http) = start_web(&db).await;

    // The API against SQL: exact decimal text, the sums and the fees of one share at each ask.
    let markets = get(&http, &base, "/api/arbitrage/markets").await;
    let m1 = markets["markets"].as_array().unwrap().iter().find(|m| m["condition_id"] == "0xa1").unwrap();
    let sums = c
        .query_one(
            "SELECT trim_scale(y.best_ask + n.best_ask)::text,
                    trim_scale(y.best_ask + n.best_ask + 0.04 * y.best_ask * (1 - y.best_ask) + 0.04 * n.best_ask * (1 - n.best_ask))::text,
                    trim_scale(y.best_bid + n.best_bid)::text
             FROM tapeflow.polymarket_books y, tapeflow.polymarket_books n WHERE y.token_id = '11' AND n.token_id = '12'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(m1["ask_sum"].as_str(), Some(sums.get::<_, String>(0).as_str()));
    assert_eq!(m1["ask_sum_after_fees"].as_str(), Some(sums.get::<_, String>(1).as_str()));
    assert_eq!(m1["bid_sum"].as_str(), Some(sums.get::<_, String>(2).as_str()));
    assert_eq!(
        m1["tokens"][0]["best_ask"].as_str(),
        text(&c, "SELECT trim_scale(best_ask)::text FROM tapeflow.polymarket_books WHERE token_id = '11'")
            .await
            .as_deref()
    );

    let opps = get(&http, &base, "/api/arbitrage/opportunities").await;
    let open: Vec<&Value> =
        opps.as_array().unwrap().iter().filter(|o| o["open"] == true && o["market_key"] == "0xa1").collect();
    assert_eq!(open.len(), 1, "{opps}");
    let o = open[0];
    let id = o["id"].as_i64().unwrap();
    let want = c
        .query_one(
            "SELECT trim_scale(size)::text, trim_scale(edge)::text, trim_scale(profit)::text, trim_scale(fees)::text, legs
             FROM tapeflow.arbitrage_opportunities WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    for (i, f) in ["size", "edge", "profit", "fees"].iter().enumerate() {
        assert_eq!(o[*f].as_str(), Some(want.get::<_, String>(i).as_str()), "opportunity {f}");
    }
    assert_eq!(o["legs"], want.get::<_, Value>(4));

    let trades = get(&http, &base, "/api/arbitrage/trades?mode=paper").await;
    let t = trades.as_array().unwrap().iter().find(|t| t["market_key"] == "0xa1").unwrap();
    assert_eq!(t["opportunity_id"].as_i64(), Some(id));
    let want = c
        .query_one(
            "SELECT status, trim_scale(fees)::text, trim_scale(pnl)::text, (SELECT count(*) FROM tapeflow.arbitrage_legs l WHERE l.trade_id = t.id)
             FROM tapeflow.arbitrage_trades t WHERE opportunity_id = $1 AND mode = 'paper'",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(t["status"].as_str(), Some(want.get::<_, String>(0).as_str()));
    assert_eq!(t["fees"].as_str(), Some(want.get::<_, String>(1).as_str()));
    assert_eq!(t["pnl"].as_str(), Some(want.get::<_, String>(2).as_str()));
    assert_eq!(t["legs"].as_array().map(|l| l.len() as i64), Some(want.get::<_, i64>(3)));
    assert_ne!(t["fees"], "0", "the paper fills paid fees");
    let unwound = trades.as_array().unwrap().iter().find(|t| t["market_key"] == "0xa3").unwrap();
    assert_eq!(
        unwound["leg_risk_loss"].as_str(),
        text(
            &c,
            "SELECT trim_scale(leg_risk_loss)::text FROM tapeflow.arbitrage_trades WHERE market_key = '0xa3'"
        )
        .await
        .as_deref()
    );
    let purposes: Vec<&str> =
        unwound["legs"].as_array().unwrap().iter().map(|l| l["purpose"].as_str().unwrap()).collect();
    assert!(purposes.contains(&"unwind"), "the unwind order is among the legs: {purposes:?}");
    let live = get(&http, &base, "/api/arbitrage/trades?mode=live").await;
    assert_eq!(live.as_array().map(Vec::len), Some(0), "paper is the default");
    let r = http.get(format!("{base}/api/arbitrage/trades?mode=both")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400, "an unknown mode is refused");
    let r = http.get(format!("{base}/api/arbitrage/opportunities?limit=0")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400, "a limit out of range is refused");

    let report = get(&http, &base, "/api/arbitrage/report").await;
    let row = report["rows"].as_array().unwrap().iter().find(|r| r["market_key"] == "0xa1").unwrap();
    let want = c
        .query_one(
            "SELECT trim_scale(paper_pnl)::text, trim_scale(fill_rate)::text, trim_scale(leg_risk_losses)::text
             FROM tapeflow.arbitrage_report WHERE market_key = '0xa1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row["paper_pnl"].as_str(), Some(want.get::<_, String>(0).as_str()));
    assert_eq!(row["fill_rate"].as_str(), want.get::<_, Option<String>>(1).as_deref());
    assert_eq!(row["leg_risk_losses"].as_str(), Some(want.get::<_, String>(2).as_str()));

    let positions = get(&http, &base, "/api/arbitrage/positions").await;
    let p = positions.as_array().unwrap().iter().find(|p| p["condition_id"] == "0xa1").unwrap();
    assert_eq!(
        p["cost"].as_str(),
        text(&c, "SELECT trim_scale(sum(cost))::text FROM tapeflow.polymarket_positions WHERE condition_id = '0xa1' AND shares > 0")
            .await
            .as_deref()
    );

    // The browser: 0xa2's NO ask drops to 0.40, so YES + NO = 0.95 and buying both pays.
    let target = repo_root().join("target");
    let _ = std::fs::remove_file(target.join("arbitrage.png"));
    let status = Command::new("node")
        .args(["--test", "browser-test/arbitrage.test.mjs"])
        .current_dir(repo_root().join("web"))
        .env("TAPEFLOW_WEB_URL", &base)
        .env("TAPEFLOW_WEB_USER", TEST_USER)
        .env("TAPEFLOW_WEB_PASSWORD", TEST_PASSWORD)
        .env("TAPEFLOW_WEB_VIEWER", VIEWER)
        .env("TAPEFLOW_WEB_VIEWER_PASSWORD", VIEWER_PASSWORD)
        .env("TAPEFLOW_TEST_DATABASE_URL", &db.url)
        .env("TAPEFLOW_ARB_LIVE_MARKET", "0xa2")
        .env(
            "TAPEFLOW_ARB_LIVE_SQL",
            "UPDATE tapeflow.polymarket_books SET ask_prices = '{0.40}', ask_sizes = '{60}', updated_at = now() WHERE token_id = '22'",
        )
        .env("TAPEFLOW_SCREENSHOT_DIR", &target)
        .status()
        .expect("run node");
    assert!(status.success(), "browser test failed");
    assert!(target.join("arbitrage.png").exists(), "no screenshot");
}
