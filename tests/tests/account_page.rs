//! The account page's API and live events over what the executor records: a signal, a bracket
//! order with its legs, order events and fills written directly in SQL (the fills trigger keeps
//! the position book), read back through tapeflow-web with exact decimal strings.

use serde_json::{json, Value};
use std::time::Duration;
use tapeflow_tests::*;

const LIVE: Duration = Duration::from_secs(10);

async fn get(http: &reqwest::Client, base: &str, path: &str) -> (u16, Value) {
    let r = http.get(format!("{base}{path}")).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}")))
}

async fn ok(http: &reqwest::Client, base: &str, path: &str) -> Value {
    let (status, body) = get(http, base, path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

async fn post(http: &reqwest::Client, base: &str, path: &str, body: &str) -> (u16, Value) {
    let r = http
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_else(|e| panic!("POST {path}: not JSON: {e}")))
}

/// A 400 whose JSON body explains itself.
async fn refused(http: &reqwest::Client, base: &str, path: &str, needle: &str) {
    let (status, body) = get(http, base, path).await;
    assert_eq!(status, 400, "GET {path}: {body}");
    let error = body["error"].as_str().unwrap_or_else(|| panic!("GET {path}: no error message in {body}"));
    assert!(error.contains(needle), "GET {path}: {error:?} should mention {needle:?}");
}

/// One row of `tapeflow.orders`, numbers as decimal text.
struct Order {
    signal: i64,
    parent: Option<i64>,
    coid: String,
    broker_id: Option<String>,
    purpose: &'static str,
    leg: &'static str,
    side: &'static str,
    qty: &'static str,
    limit: Option<&'static str>,
    stop: Option<&'static str>,
    status: &'static str,
    filled: &'static str,
    avg: Option<&'static str>,
}

impl Default for Order {
    fn default() -> Order {
        Order {
            signal: 0,
            parent: None,
            coid: String::new(),
            broker_id: None,
            purpose: "entry",
            leg: "entry",
            side: "buy",
            qty: "10",
            limit: None,
            stop: None,
            status: "new",
            filled: "0",
            avg: None,
        }
    }
}

impl Order {
    async fn insert(&self, c: &tokio_postgres::Client) -> i64 {
        c.query_one(
            "INSERT INTO tapeflow.orders (signal_id, parent_id, broker, client_order_id, broker_order_id, symbol,
                 strategy, purpose, leg, side, qty, limit_price, stop_price, status, filled_qty, filled_avg_price)
             VALUES ($1, $2, 'paper', $3, $4, 'ACME', 'amt', $5, $6, $7, $8::text::numeric, $9::text::numeric,
                     $10::text::numeric, $11, $12::text::numeric, $13::text::numeric)
             RETURNING id",
            &[&self.signal, &self.parent, &self.coid, &self.broker_id, &self.purpose, &self.leg, &self.side,
              &self.qty, &self.limit, &self.stop, &self.status, &self.filled, &self.avg],
        )
        .await
        .unwrap_or_else(|e| panic!("insert order {}: {e}", self.coid))
        .get(0)
    }
}

/// A signal, its bracket (entry filled, take-profit partly filled, stop-loss working), an older
/// cancelled order, two account snapshots and two refused signals. Returns the order ids
/// (entry, take profit, stop loss, cancelled).
async fn record_trading(c: &tokio_postgres::Client) -> [i64; 4] {
    c.batch_execute(
        "INSERT INTO tapeflow.symbols (symbol, name, tick_size) VALUES ('ACME', 'Acme Corp.', 0.01);
         INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
         VALUES (now() - interval '2 minutes', 'ACME', 100.5, 100, 'B', '1'),
                (now() - interval '1 minute', 'ACME', 101.25, 200, 'B', '2');
         INSERT INTO tapeflow.signals (bar, symbol, strategy, kind, side, entry, stop, target, quantity, reason, status)
         VALUES (tapeflow.minute(now()) - interval '10 minutes', 'ACME', 'amt', 'entry', 'buy', 100.10, 99.50, 102.00, 10,
                 'Upward imbalance', 'filled');
         INSERT INTO tapeflow.signals (bar, symbol, strategy, kind, side, entry, quantity, reason, status, reject_code, error)
         VALUES (tapeflow.minute(now()) - interval '8 minutes', 'ACME', 'amt', 'entry', 'sell', 120, 5, 'Downward imbalance',
                 'rejected', 'price_band', 'entry 120 is 18.52% from the last trade 101.25 (band 1%)'),
                (tapeflow.minute(now()) - interval '6 minutes', 'ACME', 'amt', 'entry', 'buy', 101, 5, 'Upward imbalance',
                 'expired', NULL, NULL);
         INSERT INTO tapeflow.account_snapshots (broker, day, start_equity, equity, cash, buying_power, realised_pnl, unrealised_pnl)
         VALUES ('paper', (now() AT TIME ZONE 'UTC')::date - 1, 99000, 100000.00, 100000.00, 200000.00, 0, 0),
                ('paper', (now() AT TIME ZONE 'UTC')::date, 100000.00, 100010.46, 98998.60, 197997.20, 3.56, 6.90);",
    )
    .await
    .unwrap();
    let signal: i64 =
        c.query_one("SELECT id FROM tapeflow.signals WHERE status = 'filled'", &[]).await.unwrap().get(0);
    let rejected: i64 =
        c.query_one("SELECT id FROM tapeflow.signals WHERE status = 'rejected'", &[]).await.unwrap().get(0);
    let entry = Order {
        signal,
        coid: format!("tf-{signal}-entry"),
        broker_id: Some(format!("b-{signal}-entry")),
        limit: Some("100.10"),
        status: "filled",
        filled: "10",
        avg: Some("100.10"),
        ..Order::default()
    };
    let entry = entry.insert(c).await;
    let tp = Order {
        signal,
        parent: Some(entry),
        coid: format!("tf-{signal}-tp"),
        purpose: "exit",
        leg: "take_profit",
        side: "sell",
        limit: Some("101.00"),
        status: "partially_filled",
        filled: "4",
        avg: Some("101.00"),
        ..Order::default()
    };
    let sl = Order {
        signal,
        parent: Some(entry),
        coid: format!("tf-{signal}-sl"),
        purpose: "exit",
        leg: "stop_loss",
        side: "sell",
        stop: Some("99.50"),
        ..Order::default()
    };
    let (tp, sl) = (tp.insert(c).await, sl.insert(c).await);
    let cancelled = Order {
        signal: rejected,
        coid: format!("tf-{rejected}-entry"),
        side: "sell",
        qty: "5",
        limit: Some("120"),
        status: "canceled",
        ..Order::default()
    };
    let cancelled = cancelled.insert(c).await;
    let ids = [entry, tp, sl];
    c.execute(
        "INSERT INTO tapeflow.order_events (order_id, event, status, raw) VALUES ($1, 'fill', 'filled', '{\"qty\": \"10\"}')",
        &[&ids[0]],
    )
    .await
    .unwrap();
    // Buy 10 @ 100.10 (fee 0.05), then sell 4 @ 101.00 (fee 0.02) through the take-profit leg:
    // realised (101.00 - 100.10) × 4 - 0.02 (the closed part of the entry fee) - 0.02 = 3.56.
    c.execute(
        "INSERT INTO tapeflow.fills (order_id, broker, execution_id, symbol, strategy, side, qty, price, fee, time)
         VALUES ($1, 'paper', 'x-1', 'ACME', 'amt', 'buy', 10, 100.10, 0.05, now() - interval '9 seconds'),
                ($2, 'paper', 'x-2', 'ACME', 'amt', 'sell', 4, 101.00, 0.02, now() - interval '3 seconds')",
        &[&ids[0], &ids[1]],
    )
    .await
    .unwrap();
    [ids[0], ids[1], ids[2], cancelled]
}

#[tokio::test]
async fn account_api_live_events_and_controls() {
    let db = TestDb::create("acct", false).await;
    let c = db.client().await;
    let (_web, base, http) = start_web(&db).await;

    // Before the executor has done anything: empty lists, no snapshot, nothing traded.
    let account = ok(&http, &base, "/api/account").await;
    assert_eq!(account["trading_enabled"], true);
    assert_eq!(account["accounts"], json!([]));
    assert_eq!(account["total"], Value::Null);
    assert_eq!((account["orders"].clone(), account["fills"].clone()), (json!(0), json!(0)));
    assert_eq!(
        (account["realised_pnl"].clone(), account["unrealised_pnl"].clone()),
        (json!("0"), json!("0"))
    );
    for path in ["/api/positions", "/api/orders", "/api/orders?status=all", "/api/fills", "/api/rejections"] {
        assert_eq!(ok(&http, &base, path).await, json!([]), "{path}");
    }

    let [entry, tp, sl, cancelled] = record_trading(&c).await;

    // The latest snapshot per broker, with its day P&L; totals from the position book.
    let account = ok(&http, &base, "/api/account").await;
    let today: String =
        c.query_one("SELECT ((now() AT TIME ZONE 'UTC')::date)::text", &[]).await.unwrap().get(0);
    let a = &account["accounts"][0];
    assert_eq!(account["accounts"].as_array().unwrap().len(), 1, "{account}");
    assert_eq!(a["broker"], "paper");
    assert_eq!(a["day"], today.as_str());
    assert_eq!(
        [&a["start_equity"], &a["equity"], &a["cash"], &a["buying_power"], &a["day_pnl"]],
        [&json!("100000"), &json!("100010.46"), &json!("98998.6"), &json!("197997.2"), &json!("10.46")]
    );
    assert_eq!(account["total"]["equity"], "100010.46");
    assert_eq!(account["total"]["day_pnl"], "10.46");
    assert_eq!(account["realised_pnl"], "3.56");
    assert_eq!(account["realised_pnl_today"], "3.56");
    // 6 left at an average of 100.10, marked to the last trade 101.25.
    assert_eq!(account["unrealised_pnl"], "6.9");
    assert_eq!(
        [&account["open_positions"], &account["open_orders"], &account["orders"], &account["fills"]],
        [&json!(1), &json!(2), &json!(4), &json!(2)]
    );

    let positions = ok(&http, &base, "/api/positions").await;
    assert_eq!(
        positions,
        json!([{
            "symbol": "ACME", "strategy": "amt", "side": "long", "quantity": "6", "avg_price": "100.1",
            "last_price": "101.25", "unrealised_pnl": "6.9", "realised_pnl": "3.56", "open_fees": "0.03",
            "stop": "99.5", "target": "102", "opened_at": positions[0]["opened_at"],
            "entry_signal": positions[0]["entry_signal"],
        }])
    );
    assert!(positions[0]["entry_signal"].is_i64());

    // Open orders: the filled entry stays because its legs still work; the cancelled one does not.
    let open = ok(&http, &base, "/api/orders?status=open").await;
    assert_eq!(open.as_array().unwrap().len(), 1, "{open}");
    let o = &open[0];
    assert_eq!(
        (o["id"].as_i64(), o["leg"].as_str(), o["status"].as_str()),
        (Some(entry), Some("entry"), Some("filled"))
    );
    assert_eq!(
        (o["qty"].as_str(), o["filled_qty"].as_str(), o["filled_avg_price"].as_str()),
        (Some("10"), Some("10"), Some("100.1"))
    );
    assert_eq!(
        (o["limit_price"].as_str(), &o["stop_price"], &o["open"]),
        (Some("100.1"), &Value::Null, &json!(false))
    );
    let legs: Vec<_> = o["legs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["id"].as_i64().unwrap(),
                l["leg"].as_str().unwrap().to_string(),
                l["status"].as_str().unwrap().to_string(),
                l["filled_qty"].as_str().unwrap().to_string(),
                l["limit_price"].clone(),
                l["stop_price"].clone(),
                l["open"].clone(),
            )
        })
        .collect();
    assert_eq!(
        legs,
        vec![
            (
                tp,
                "take_profit".into(),
                "partially_filled".into(),
                "4".into(),
                json!("101"),
                Value::Null,
                json!(true)
            ),
            (sl, "stop_loss".into(), "new".into(), "0".into(), Value::Null, json!("99.5"), json!(true)),
        ]
    );
    assert_eq!(o["legs"][0]["parent_id"].as_i64(), Some(entry));
    let all = ok(&http, &base, "/api/orders?status=all").await;
    let ids: Vec<_> = all.as_array().unwrap().iter().map(|o| o["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![cancelled, entry], "newest first, legs inside their entry");
    assert_eq!(all[0]["broker_order_id"], Value::Null);
    assert_eq!(ok(&http, &base, "/api/orders?status=all&limit=1").await.as_array().unwrap().len(), 1);

    // Fills, newest first, with their leg.
    let fills = ok(&http, &base, "/api/fills?symbol=ACME").await;
    let shown: Vec<_> = fills
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            [&f["execution_id"], &f["side"], &f["qty"], &f["price"], &f["fee"], &f["realised_pnl"], &f["leg"]]
                .map(|v| v.as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            ["x-2", "sell", "4", "101", "0.02", "3.56", "take_profit"].map(String::from),
            ["x-1", "buy", "10", "100.1", "0.05", "0", "entry"].map(String::from),
        ]
    );
    assert_eq!(fills[1]["order_id"].as_i64(), Some(entry));
    assert_eq!(ok(&http, &base, "/api/fills?limit=1").await.as_array().unwrap().len(), 1);

    // Refused signals with the gate's code and message; expired ones too.
    let rejections = ok(&http, &base, "/api/rejections").await;
    let shown: Vec<_> = rejections
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["status"].clone(), s["reject_code"].clone(), s["error"].clone(), s["entry"].clone()))
        .collect();
    assert_eq!(
        shown,
        vec![
            (json!("expired"), Value::Null, Value::Null, json!("101")),
            (
                json!("rejected"),
                json!("price_band"),
                json!("entry 120 is 18.52% from the last trade 101.25 (band 1%)"),
                json!("120")
            ),
        ]
    );

    // Bad input: 400 with a message, as JSON.
    refused(&http, &base, "/api/orders?status=closed", "status").await;
    refused(&http, &base, "/api/orders?limit=0", "limit").await;
    refused(&http, &base, "/api/orders?limit=lots", "limit").await;
    refused(&http, &base, "/api/fills?symbol=NOPE", "unknown symbol NOPE").await;
    refused(&http, &base, "/api/fills?limit=5001", "limit").await;
    refused(&http, &base, "/api/rejections?limit=-1", "limit").await;

    // The kill switch: the row changes, and browsers hear of it as a `risk` event.
    let mut sse = SseReader::connect_with(&http, &format!("{base}/events")).await;
    let (status, body) = post(&http, &base, "/api/kill-switch", r#"{"enabled": false}"#).await;
    assert_eq!((status, body), (200, json!({ "trading_enabled": false })));
    let enabled: bool =
        c.query_one("SELECT trading_enabled FROM tapeflow.risk_limits", &[]).await.unwrap().get(0);
    assert!(!enabled);
    let risk = sse.wait_for("risk", LIVE, |v| v["trading_enabled"] == false).await;
    assert!(risk.is_some(), "no risk event after the kill switch");
    assert_eq!(ok(&http, &base, "/api/account").await["trading_enabled"], false);
    for bad in [r#"{"enabled": "no"}"#, r#"{}"#, "not json"] {
        let (status, body) = post(&http, &base, "/api/kill-switch", bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{bad}: {body}");
    }
    let (status, body) = post(&http, &base, "/api/kill-switch", r#"{"enabled": true}"#).await;
    assert_eq!((status, body), (200, json!({ "trading_enabled": true })));
    assert!(sse.wait_for("risk", LIVE, |v| v["trading_enabled"] == true).await.is_some());

    // Every order event is relayed as an `order` event.
    c.execute(
        "INSERT INTO tapeflow.order_events (order_id, event, status) VALUES ($1, 'accepted', 'new')",
        &[&sl],
    )
    .await
    .unwrap();
    let event = sse.wait_for("order", LIVE, |v| v["order_id"] == sl).await.expect("no order event");
    assert_eq!(
        (event["leg"].as_str(), event["event"].as_str(), event["symbol"].as_str()),
        (Some("stop_loss"), Some("accepted"), Some("ACME"))
    );

    // Flatten all: one exit signal per open position, none twice while it is pending.
    let (status, body) = post(&http, &base, "/api/flatten", "{}").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 1);
    let s = &body["signals"][0];
    assert_eq!(
        [&s["symbol"], &s["kind"], &s["side"], &s["quantity"], &s["entry"], &s["origin"], &s["status"]],
        [
            &json!("ACME"),
            &json!("exit"),
            &json!("sell"),
            &json!("6"),
            &json!("101.25"),
            &json!("flatten"),
            &json!("new")
        ]
    );
    let written: i64 = c
        .query_one("SELECT count(*) FROM tapeflow.signals WHERE origin = 'flatten' AND kind = 'exit' AND quantity = 6", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 1);
    assert!(sse.wait_for("signal", LIVE, |v| v["kind"] == "exit" && v["symbol"] == "ACME").await.is_some());
    let (status, body) = post(&http, &base, "/api/flatten", "").await;
    assert_eq!((status, body["count"].clone()), (200, json!(0)));
}
