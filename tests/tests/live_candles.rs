//! The live path end to end: ticks inserted into PostgreSQL become one-minute candles in the
//! extension, are announced with NOTIFY, and reach a browser over SSE through tapeflow-web.

use std::time::{Duration, Instant};
use tapeflow_tests::*;

#[tokio::test]
async fn tick_insert_reaches_sse_within_two_seconds() {
    let db = TestDb::create("sse", false).await;
    let client = db.client().await;
    client
        .batch_execute("INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('TEST', 0.01)")
        .await
        .unwrap();
    let (_web, base, http) = start_web(&db).await;
    let mut sse = SseReader::connect_with(&http, &format!("{base}/events")).await;

    let inserted = Instant::now();
    client
        .batch_execute(
            "INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
             VALUES (now(), 'TEST', 101.25, 300, 'B', 'a1'), (now(), 'TEST', 101.20, 100, 'S', 'a2')",
        )
        .await
        .unwrap();
    let candle = sse
        .wait_for("candle", Duration::from_secs(2), |v| v["symbol"] == "TEST")
        .await
        .expect("a candle event within 2 s of the insert");
    assert!(inserted.elapsed() < Duration::from_secs(2));
    assert_eq!(candle["volume"], 400.0);
    assert_eq!(candle["buy_volume"], 300.0);
    assert_eq!(candle["sell_volume"], 100.0);
    assert_eq!(candle["trades"], 2);
    assert_eq!(candle["high"], 101.25);

    // A replayed trade id adds nothing and the stored minute is unchanged.
    client
        .batch_execute(
            "INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
             SELECT time, symbol, price, size, side, trade_id FROM tapeflow.ticks ON CONFLICT DO NOTHING",
        )
        .await
        .unwrap();
    let vol: f64 = client
        .query_one("SELECT sum(tapeflow.volume(candle)) FROM tapeflow.bars_1m WHERE symbol = 'TEST'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(vol, 400.0);
}

#[tokio::test]
async fn one_notification_per_symbol_per_statement() {
    let db = TestDb::create("notify", false).await;
    let client = db.client().await;
    client
        .batch_execute("INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('AAA', 0.01), ('BBB', 0.01)")
        .await
        .unwrap();
    let (_web, base, http) = start_web(&db).await;
    let mut sse = SseReader::connect_with(&http, &format!("{base}/events")).await;
    // 600 ticks over 10 minutes for two symbols in one statement.
    client
        .batch_execute(
            "INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
             SELECT timestamptz '2024-03-04 15:00+00' + i * interval '1 second', s, 50 + i * 0.01, 1, 'B', i::text
             FROM generate_series(0, 599) i, (VALUES ('AAA'), ('BBB')) v(s)",
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Some((event, data)) = sse.next(Duration::from_millis(1500)).await {
        if event == "candle" {
            seen.push(serde_json::from_str::<serde_json::Value>(&data).unwrap());
        }
    }
    assert_eq!(seen.len(), 2, "one per symbol: {seen:?}");
    for c in &seen {
        // The newest changed minute is announced.
        assert_eq!(c["bucket"], "2024-03-04T15:09:00+00:00");
        assert_eq!(c["trades"], 60);
    }
}

#[tokio::test]
async fn candles_api_rolls_minutes_into_timeframes() {
    let db = TestDb::create("tf", false).await;
    let client = db.client().await;
    client
        .batch_execute(
            "INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('XYZ', 0.01);
             INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
             SELECT timestamptz '2024-03-04 14:30+00' + i * interval '1 minute', 'XYZ', 100 + i, 10, 'B', i::text
             FROM generate_series(0, 119) i;",
        )
        .await
        .unwrap();
    let (_web, base, http) = start_web(&db).await;
    let bars: serde_json::Value = http
        .get(format!("{base}/api/candles?symbol=XYZ&tf=1h&from=2024-03-04T00:00:00Z&to=2024-03-05T00:00:00Z"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bars = bars.as_array().unwrap();
    // Hourly bars are aligned to the 09:30 New York open (14:30 UTC in March before DST).
    assert_eq!(bars.len(), 2, "{bars:?}");
    assert_eq!(bars[0]["time"], "2024-03-04T14:30:00+00:00");
    assert_eq!(bars[0]["open"], 100.0);
    assert_eq!(bars[0]["close"], 159.0);
    assert_eq!(bars[0]["volume"], 600.0);
    assert_eq!(bars[1]["high"], 219.0);

    let bad = http.get(format!("{base}/api/candles?symbol=XYZ&tf=7m")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("unknown timeframe 7m"), "{body}");
    let unknown = http.get(format!("{base}/api/candles?symbol=NOPE&tf=1m")).send().await.unwrap();
    assert_eq!(unknown.status(), 400);

    let watch: serde_json::Value =
        http.get(format!("{base}/api/symbols")).send().await.unwrap().json().await.unwrap();
    assert_eq!(watch[0]["symbol"], "XYZ");
    assert_eq!(watch[0]["last"], 219.0);
}
