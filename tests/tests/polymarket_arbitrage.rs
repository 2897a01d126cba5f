//! Polymarket arbitrage in the database: book rows in tapeflow.polymarket_books become
//! opportunities in tapeflow.arbitrage_opportunities (kept by the trigger, announced on
//! tapeflow_arbitrage) with the edge, size and fees worked out by hand below; they are updated
//! and closed as the books change; tapeflow.arbitrage and tapeflow.arbitrage_scan answer the
//! same from SQL.

use rust_decimal::Decimal;
use std::time::Duration;
use tapeflow_db::ListenEvent;
use tapeflow_tests::*;
use tokio::sync::mpsc::Receiver;

const WAIT: Duration = Duration::from_secs(10);

async fn market(c: &tokio_postgres::Client, id: &str, fee_rate: &str, extra: &str) {
    c.batch_execute(&format!(
        "INSERT INTO tapeflow.polymarket_markets (condition_id, question, fee_rate{comma}{cols})
         VALUES ('{id}', 'Question {id}?', {fee_rate}{comma}{vals});
         INSERT INTO tapeflow.polymarket_tokens (token_id, condition_id, outcome, outcome_index)
         VALUES ('{id}-yes', '{id}', 'Yes', 0), ('{id}-no', '{id}', 'No', 1);",
        comma = if extra.is_empty() { "" } else { ", " },
        cols = extra.split(';').next().unwrap_or(""),
        vals = extra.split(';').nth(1).unwrap_or(""),
    ))
    .await
    .unwrap();
}

/// Writes a token's book as the feed does (replaced as a whole): sides as 'price×size, …'.
async fn book(c: &tokio_postgres::Client, token: &str, bids: &str, asks: &str) {
    // Decimal vectors, as the feed binds them.
    let side = |s: &str| -> (Vec<Decimal>, Vec<Decimal>) {
        s.split(',')
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().split_once('x').unwrap())
            .map(|(p, q)| (p.parse::<Decimal>().unwrap(), q.parse::<Decimal>().unwrap()))
            .unzip()
    };
    let ((bp, bs), (ap, a_s)) = (side(bids), side(asks));
    c.execute(
        "INSERT INTO tapeflow.polymarket_books (token_id, condition_id, bid_prices, bid_sizes, ask_prices, ask_sizes)
         SELECT $1, condition_id, $2, $3, $4, $5
         FROM tapeflow.polymarket_tokens WHERE token_id = $1
         ON CONFLICT (token_id) DO UPDATE SET bid_prices = EXCLUDED.bid_prices, bid_sizes = EXCLUDED.bid_sizes,
             ask_prices = EXCLUDED.ask_prices, ask_sizes = EXCLUDED.ask_sizes, updated_at = now()",
        &[&token, &bp, &bs, &ap, &a_s],
    )
    .await
    .unwrap_or_else(|e| panic!("book {token}: {e:?}"));
}

async fn notification(events: &mut Receiver<ListenEvent>) -> serde_json::Value {
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(ListenEvent::Notification { channel, payload })) if channel == "tapeflow_arbitrage" => {
                return serde_json::from_str(&payload).unwrap();
            }
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => panic!("no tapeflow_arbitrage notification within {WAIT:?}"),
        }
    }
}

async fn no_notification(events: &mut Receiver<ListenEvent>) {
    if let Ok(Some(ListenEvent::Notification { payload, .. })) =
        tokio::time::timeout(Duration::from_millis(500), events.recv()).await
    {
        panic!("unexpected notification {payload}");
    }
}

/// (kind, size, edge, profit, notional, fees) of the open opportunities, as text.
async fn open(c: &tokio_postgres::Client) -> Vec<Vec<String>> {
    c.query(
        "SELECT kind, market_key, size::text, edge::text, profit::text, notional::text, fees::text
         FROM tapeflow.arbitrage_opportunities WHERE closed_at IS NULL ORDER BY market_key, kind",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (0..7).map(|i| r.get::<_, String>(i)).collect())
    .collect()
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn book_rows_in_opportunity_out_updated_closed_and_announced() {
    let db = TestDb::create("pm_arb", false).await;
    let c = db.client().await;
    let mut events = tapeflow_db::listen(db.url.clone(), vec!["tapeflow_arbitrage".into()]);
    assert!(matches!(events.recv().await, Some(ListenEvent::Connected)));

    // Politics, fee rate 0.04: per share 0.04 × p × (1 − p) = 0.0096 at 0.40, 0.0099 at 0.45,
    // 0.0100 at 0.50, 0.009744 at 0.58.
    market(&c, "0xrain", "0.04", "").await;
    book(&c, "0xrain-yes", "0.39x50", "0.40x100, 0.45x200").await;
    // One book alone offers nothing.
    no_notification(&mut events).await;
    book(&c, "0xrain-no", "0.48x50", "0.50x150, 0.58x100").await;

    // Pairs cost 0.4096 + 0.51 on [0, 100) (profit 0.0804 each), 0.4599 + 0.51 on [100, 150)
    // (0.0301 each) and 0.4599 + 0.589744 > 1 after: 150 pairs, profit 8.04 + 1.505 = 9.545;
    // notional 62.5 + 75 = 137.5; fees 1.455 + 1.5 = 2.955; edge 9.545 / 150 = 0.0636333…
    let opened = notification(&mut events).await;
    assert_eq!(opened["event"], "opened");
    assert_eq!(opened["kind"], "buy_both");
    assert_eq!(opened["market_key"], "0xrain");
    assert_eq!(opened["profit"], serde_json::json!(9.545));
    let id = opened["id"].as_i64().unwrap();
    assert_eq!(
        open(&c).await,
        vec![row(&["buy_both", "0xrain", "150", "0.063633333333", "9.545", "137.5", "2.955"])]
    );
    let legs: Vec<(String, String, String, String, String, String, i32)> = c
        .query(
            "SELECT l->>'token_id', l->>'side', l->>'shares', l->>'worst_price', l->>'notional', l->>'fee', (l->>'levels')::int
             FROM tapeflow.arbitrage_opportunities o, jsonb_array_elements(o.legs) l WHERE o.id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)))
        .collect();
    let leg = |t: &str, w: &str, n: &str, f: &str, l| {
        (t.to_string(), "buy".to_string(), "150".to_string(), w.to_string(), n.to_string(), f.to_string(), l)
    };
    assert_eq!(
        legs,
        vec![leg("0xrain-yes", "0.45", "62.5", "1.455", 2), leg("0xrain-no", "0.5", "75", "1.5", 1)]
    );
    // The function answers the same.
    let f = c
        .query_one(
            "SELECT kind, size::text, profit::text, fees::text, legs FROM tapeflow.arbitrage('0xrain')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (f.get::<_, String>(1), f.get::<_, String>(2), f.get::<_, String>(3)),
        ("150".into(), "9.545".into(), "2.955".into())
    );
    let stored: serde_json::Value = c
        .query_one("SELECT legs FROM tapeflow.arbitrage_opportunities WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(f.get::<_, serde_json::Value>(4), stored);

    // Rewriting a book that changes nothing touches last_seen and announces nothing.
    book(&c, "0xrain-yes", "0.39x50", "0.40x100, 0.45x200").await;
    no_notification(&mut events).await;

    // NO's asks become 0.55 × 10: 10 pairs at 0.4096 + (0.55 + 0.0099) = 0.9695, profit 0.305.
    book(&c, "0xrain-no", "0.48x50", "0.55x10").await;
    let updated = notification(&mut events).await;
    assert_eq!((updated["event"].as_str(), updated["id"].as_i64()), (Some("updated"), Some(id)));
    assert_eq!(open(&c).await, vec![row(&["buy_both", "0xrain", "10", "0.0305", "0.305", "9.5", "0.195"])]);
    let (updates, max_profit): (i32, String) = c
        .query_one(
            "SELECT updates, max_profit::text FROM tapeflow.arbitrage_opportunities WHERE id = $1",
            &[&id],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((updates, max_profit.as_str()), (2, "9.545"));

    // 0.40 + 0.60 plus fees is above 1: closed.
    book(&c, "0xrain-no", "0.48x50", "0.60x10").await;
    let closed = notification(&mut events).await;
    assert_eq!((closed["event"].as_str(), closed["id"].as_i64()), (Some("closed"), Some(id)));
    assert!(open(&c).await.is_empty());
    let ordered: bool = c
        .query_one(
            "SELECT first_seen <= last_seen AND last_seen <= closed_at FROM tapeflow.arbitrage_opportunities WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ordered);

    // Coming back is a new opportunity; the closed one stays as it was.
    book(&c, "0xrain-no", "0.48x50", "0.50x150").await;
    let again = notification(&mut events).await;
    assert_eq!(again["event"], "opened");
    assert_ne!(again["id"].as_i64(), Some(id));
    let n: i64 =
        c.query_one("SELECT count(*) FROM tapeflow.arbitrage_opportunities", &[]).await.unwrap().get(0);
    assert_eq!(n, 2);

    // Closing the market closes its opportunity; deleting a book does too.
    c.batch_execute("UPDATE tapeflow.polymarket_markets SET closed = true WHERE condition_id = '0xrain'")
        .await
        .unwrap();
    assert_eq!(notification(&mut events).await["event"], "closed");
    c.batch_execute("UPDATE tapeflow.polymarket_markets SET closed = false WHERE condition_id = '0xrain'")
        .await
        .unwrap();
    assert_eq!(notification(&mut events).await["event"], "opened");
    c.batch_execute("DELETE FROM tapeflow.polymarket_books WHERE token_id = '0xrain-no'").await.unwrap();
    assert_eq!(notification(&mut events).await["event"], "closed");
    assert!(open(&c).await.is_empty());

    // With the trigger off nothing follows the books; arbitrage_refresh catches up and says
    // how many changes it announced.
    c.batch_execute("UPDATE tapeflow.arbitrage_settings SET enabled = false").await.unwrap();
    book(&c, "0xrain-no", "0.48x50", "0.50x150").await;
    no_notification(&mut events).await;
    assert!(open(&c).await.is_empty());
    let n: i32 = c.query_one("SELECT tapeflow.arbitrage_refresh('{0xrain}')", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    assert_eq!(notification(&mut events).await["event"], "opened");
    let n: i32 = c.query_one("SELECT tapeflow.arbitrage_refresh('{0xrain}')", &[]).await.unwrap().get(0);
    assert_eq!(n, 0, "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sell_both_neg_risk_and_the_scan() {
    let db = TestDb::create("pm_scan", false).await;
    let c = db.client().await;

    // Sports, 0.03. YES bids 0.62 × 80, 0.60 × 100; NO bids 0.45 × 50, 0.41 × 200. Per pair sold
    // (price − fee): 0.612932 + 0.442575 − 1 = 0.055507 on [0, 50), 0.612932 + 0.402743 − 1 =
    // 0.015675 on [50, 80), then 0.5928 + 0.402743 < 1: 80 pairs, profit 2.77535 + 0.47025 =
    // 3.2456, proceeds 49.6 + 34.8 = 84.4, fees 0.56544 + 0.58896 = 1.1544, edge 0.04057.
    market(&c, "0xgame", "0.03", "").await;
    book(&c, "0xgame-yes", "0.62x80, 0.60x100", "0.70x10").await;
    book(&c, "0xgame-no", "0.45x50, 0.41x200", "0.50x10").await;

    // A neg-risk event of three markets, A and B at 0.04, C free. YES asks A 0.30 × 50,
    // 0.33 × 100; B 0.25 × 80; C 0.38 × 60, 0.40 × 40. Per set: 1 − 0.3084 − 0.2575 − 0.38 =
    // 0.0541 on [0, 50), 1 − 0.338844 − 0.2575 − 0.38 = 0.023656 on [50, 60), 0.003656 on
    // [60, 80), B ends at 80: profit 2.705 + 0.23656 + 0.07312 = 3.01468, notional 24.9 + 20 +
    // 30.8 = 75.7, fees 0.68532 + 0.6 = 1.28532, edge 0.0376835.
    let neg = "neg_risk, neg_risk_market_id, event_slug;true, '0xevent', 'who-wins'";
    market(&c, "0xa", "0.04", neg).await;
    market(&c, "0xb", "0.04", neg).await;
    market(&c, "0xc", "0", neg).await;
    book(&c, "0xa-yes", "", "0.30x50, 0.33x100").await;
    book(&c, "0xb-yes", "", "0.25x80").await;
    book(&c, "0xc-yes", "", "0.38x60, 0.40x40").await;

    let expected = vec![
        row(&["buy_all_yes", "0xevent", "80", "0.0376835", "3.01468", "75.7", "1.28532"]),
        row(&["sell_both", "0xgame", "80", "0.04057", "3.2456", "84.4", "1.1544"]),
    ];
    assert_eq!(open(&c).await, expected);
    let scan = |sql: &'static str| {
        let c = &c;
        async move {
            c.query(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
                .iter()
                .map(|r| (0..7).map(|i| r.get::<_, String>(i)).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        }
    };
    let all = "SELECT kind, market_key, size::text, edge::text, profit::text, notional::text, fees::text
               FROM tapeflow.arbitrage_scan() ORDER BY market_key, kind";
    assert_eq!(scan(all).await, expected);
    // The group's row has no condition id; its legs are the three YES tokens.
    let g = c
        .query_one(
            "SELECT condition_id, jsonb_path_query_array(legs, '$[*].token_id') FROM tapeflow.arbitrage_scan() WHERE kind = 'buy_all_yes'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(g.get::<_, Option<String>>(0), None);
    assert_eq!(g.get::<_, serde_json::Value>(1), serde_json::json!(["0xa-yes", "0xb-yes", "0xc-yes"]));
    // One member's arbitrage(…) includes its group.
    let kinds: Vec<String> = c
        .query("SELECT kind FROM tapeflow.arbitrage('0xb')", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kinds, vec!["buy_all_yes"]);

    // Parameters: min_edge 0.05 cuts both where their edge falls to 0.05. The group's
    // D = profit − 0.05 x grows 50 × 0.0041 = 0.205, then falls 0.026344 a set: 0 at 57.78…;
    // the game's grows 50 × 0.005507 = 0.27535, then falls 0.034325 a pair: 0 at 58.02….
    let strict = c
        .query("SELECT kind, size::text FROM tapeflow.arbitrage_scan(min_edge => 0.05) ORDER BY kind", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect::<Vec<_>>();
    assert_eq!(
        strict,
        vec![
            ("buy_all_yes".to_string(), "57.78".to_string()),
            ("sell_both".to_string(), "58.02".to_string())
        ]
    );
    // max_size caps every leg: 30 pairs of the first segments.
    let capped: Vec<String> = c
        .query("SELECT profit::text FROM tapeflow.arbitrage_scan(max_size => 30) ORDER BY market_key", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(capped, vec!["1.623", "1.66521"]);
    // A market's minimum order size applies: 500 shares are deeper than the game's bids.
    c.batch_execute(
        "UPDATE tapeflow.polymarket_markets SET min_order_size = 500 WHERE condition_id = '0xgame'",
    )
    .await
    .unwrap();
    assert_eq!(scan(all).await, expected[..1].to_vec());
    assert_eq!(open(&c).await, expected[..1].to_vec());
    c.batch_execute(
        "UPDATE tapeflow.polymarket_markets SET min_order_size = 0 WHERE condition_id = '0xgame'",
    )
    .await
    .unwrap();
    assert_eq!(open(&c).await, expected);

    // Unwatched markets are left out of the scan and their opportunities closed.
    c.batch_execute("UPDATE tapeflow.polymarket_markets SET watched = false WHERE condition_id = '0xgame'")
        .await
        .unwrap();
    assert_eq!(scan(all).await, expected[..1].to_vec());
    assert_eq!(open(&c).await, expected[..1].to_vec());

    // Neg-risk safety: an augmented event, or a member closed without a result, has no
    // riskless set; a member resolved NO drops out (A and B alone: 0.3084 + 0.2575 a set up to
    // 50, then 0.338844 + 0.2575 up to 80: 50 × 0.4341 + 30 × 0.403656 = 33.81468).
    c.batch_execute(
        "UPDATE tapeflow.polymarket_markets SET neg_risk_augmented = true WHERE condition_id = '0xc'",
    )
    .await
    .unwrap();
    assert!(open(&c).await.is_empty());
    c.batch_execute(
        "UPDATE tapeflow.polymarket_markets SET neg_risk_augmented = false, closed = true WHERE condition_id = '0xc'",
    )
    .await
    .unwrap();
    assert!(open(&c).await.is_empty());
    c.batch_execute(
        "UPDATE tapeflow.polymarket_markets SET winning_token_id = '0xc-no', resolved_at = now() WHERE condition_id = '0xc'",
    )
    .await
    .unwrap();
    assert_eq!(
        open(&c).await,
        vec![row(&["buy_all_yes", "0xevent", "80", "0.4226835", "33.81468", "44.9", "1.28532"])]
    );

    // Time to resolution: markets ending within the setting are skipped.
    c.batch_execute(
        "UPDATE tapeflow.arbitrage_settings SET min_time_to_resolution = '1 day';
         UPDATE tapeflow.polymarket_markets SET end_date = now() + interval '1 hour' WHERE condition_id = '0xa'",
    )
    .await
    .unwrap();
    assert!(open(&c).await.is_empty());

    // Errors: an unknown market, a negative parameter.
    let e = c.query("SELECT * FROM tapeflow.arbitrage('0xnope')", &[]).await.unwrap_err();
    assert!(format!("{e:?}").contains("unknown Polymarket market 0xnope"), "{e:?}");
    let e = c.query("SELECT * FROM tapeflow.arbitrage(NULL)", &[]).await.unwrap_err();
    assert!(format!("{e:?}").contains("condition_id must not be NULL"), "{e:?}");
    let e = c.query("SELECT * FROM tapeflow.arbitrage_scan(min_edge => -0.01)", &[]).await.unwrap_err();
    assert!(format!("{e:?}").contains("min_edge must not be negative"), "{e:?}");
    // A book the table refuses: asks not best-first.
    let e = c
        .batch_execute("UPDATE tapeflow.polymarket_books SET ask_prices = '{0.5,0.4}', ask_sizes = '{1,1}' WHERE token_id = '0xa-yes'")
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("polymarket_books_asks_valid"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_counts_paper_trades() {
    let db = TestDb::create("pm_report", false).await;
    let c = db.client().await;
    market(&c, "0xrain", "0.04", "").await;
    book(&c, "0xrain-yes", "", "0.40x100, 0.45x200").await;
    book(&c, "0xrain-no", "", "0.50x150, 0.58x100").await;
    // Two paper trades as the broker records them: one filled whole, one one-legged and unwound
    // at a loss (the matched part of a trade is all the report counts as filled).
    c.batch_execute(
        "INSERT INTO tapeflow.arbitrage_trades (opportunity_id, mode, kind, market_key, status, planned_size, planned_edge,
                                                planned_profit, matched_size, notional, fees, leg_risk_loss, pnl)
         SELECT id, 'paper', kind, market_key, 'filled', 150, edge, profit, 150, 137.5, 2.955, 0, 9.545
         FROM tapeflow.arbitrage_opportunities;
         UPDATE tapeflow.polymarket_books SET ask_prices = '{0.6}', ask_sizes = '{10}' WHERE token_id = '0xrain-no';
         UPDATE tapeflow.polymarket_books SET ask_prices = '{0.5}', ask_sizes = '{50}' WHERE token_id = '0xrain-no';
         INSERT INTO tapeflow.arbitrage_trades (opportunity_id, mode, kind, market_key, status, planned_size, planned_edge,
                                                planned_profit, matched_size, notional, fees, leg_risk_loss, pnl)
         SELECT id, 'paper', kind, market_key, 'unwound', 50, edge, profit, 0, 20, 0.48, 0.75, -1.23
         FROM tapeflow.arbitrage_opportunities WHERE closed_at IS NULL;",
    )
    .await
    .unwrap();
    let r = c
        .query_one(
            "SELECT opportunities, detected_profit::text, paper_trades, paper_filled, fill_rate::text, paper_pnl::text,
                    paper_fees::text, leg_risk_losses::text, label
             FROM tapeflow.arbitrage_report WHERE market_key = '0xrain'",
            &[],
        )
        .await
        .unwrap();
    // 150 + 0 matched of 150 + 50 planned = 0.75; P&L 9.545 − 1.23; the second opportunity
    // (50 pairs at 0.0804) showed 4.02.
    assert_eq!(r.get::<_, i64>(0), 2);
    assert_eq!(r.get::<_, String>(1), "13.565");
    assert_eq!((r.get::<_, i64>(2), r.get::<_, i64>(3)), (2, 1));
    assert_eq!(r.get::<_, String>(4), "0.7500");
    assert_eq!(r.get::<_, String>(5), "8.315");
    assert_eq!(r.get::<_, String>(6), "3.435");
    assert_eq!(r.get::<_, String>(7), "0.75");
    assert_eq!(r.get::<_, String>(8), "Question 0xrain?");
}

/// The next tapeflow_polymarket announcement as (event, op, rows).
async fn activity(events: &mut Receiver<ListenEvent>) -> (String, String, i64) {
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(ListenEvent::Notification { channel, payload })) if channel == "tapeflow_polymarket" => {
                let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
                return (
                    v["event"].as_str().unwrap().into(),
                    v["op"].as_str().unwrap().into(),
                    v["rows"].as_i64().unwrap(),
                );
            }
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => panic!("no tapeflow_polymarket notification within {WAIT:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn books_trades_and_settlements_are_announced_once_per_statement() {
    let db = TestDb::create("pm_activity", false).await;
    let c = db.client().await;
    let mut events = tapeflow_db::listen(db.url.clone(), vec!["tapeflow_polymarket".into()]);
    assert!(matches!(events.recv().await, Some(ListenEvent::Connected)));
    market(&c, "0xsnow", "0.04", "").await;
    book(&c, "0xsnow-yes", "0.39x50", "0.40x100").await;
    assert_eq!(activity(&mut events).await, ("polymarket_books".into(), "insert".into(), 1));
    // Two books in one statement: one announcement counting both.
    c.batch_execute(
        "UPDATE tapeflow.polymarket_books SET ask_sizes = '{90}' WHERE condition_id = '0xsnow';
         INSERT INTO tapeflow.polymarket_books (token_id, condition_id, bid_prices, bid_sizes, ask_prices, ask_sizes)
         VALUES ('0xsnow-no', '0xsnow', '{}', '{}', '{0.5}', '{10}')",
    )
    .await
    .unwrap();
    assert_eq!(activity(&mut events).await, ("polymarket_books".into(), "update".into(), 1));
    assert_eq!(activity(&mut events).await, ("polymarket_books".into(), "insert".into(), 1));
    // YES 0.40 + NO 0.50 opened an opportunity; a paper and a live trade of it in one statement.
    assert_eq!(open(&c).await.len(), 1);
    c.batch_execute(
        "INSERT INTO tapeflow.arbitrage_trades (opportunity_id, mode, kind, market_key, status, planned_size, planned_edge,
                                                planned_profit, matched_size, notional, fees, leg_risk_loss, pnl)
         SELECT o.id, m.mode, o.kind, o.market_key, 'filled', 10, o.edge, o.profit, 10, 9, 0.1, 0, 0.9
         FROM tapeflow.arbitrage_opportunities o, (VALUES ('paper'), ('live')) m (mode)",
    )
    .await
    .unwrap();
    assert_eq!(activity(&mut events).await, ("arbitrage_trades".into(), "insert".into(), 2));
    c.batch_execute("UPDATE tapeflow.arbitrage_trades SET status = 'settled' WHERE mode = 'live'")
        .await
        .unwrap();
    assert_eq!(activity(&mut events).await, ("arbitrage_trades".into(), "update".into(), 1));
    // A statement that changes nothing says nothing.
    c.batch_execute("UPDATE tapeflow.arbitrage_trades SET status = 'settled' WHERE false").await.unwrap();
    c.batch_execute("DELETE FROM tapeflow.polymarket_books WHERE token_id = '0xsnow-no'").await.unwrap();
    assert_eq!(activity(&mut events).await, ("polymarket_books".into(), "delete".into(), 1));
}
