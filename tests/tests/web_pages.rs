//! The symbol, strategies and feeds pages: their API against a demo session (every number the
//! SQL functions', every refusal the SQL parsers' message naming the parameter or field), and
//! the pages in headless Chromium against the real tapeflow-web, compared with SQL
//! (`web/browser-test/pages.test.mjs`), with screenshots under `target/`.

use serde_json::{json, Value};
use std::process::Command;
use tapeflow_tests::*;

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

/// The message of the error `sql` raises.
async fn sql_error(c: &tokio_postgres::Client, sql: &str) -> String {
    let e = c.query(sql, &[]).await.expect_err(sql);
    e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}")).message().to_string()
}

/// A 400 naming `param` with exactly the message of `sql`.
async fn refused_as_sql(
    http: &reqwest::Client,
    base: &str,
    c: &tokio_postgres::Client,
    path: &str,
    param: &str,
    sql: &str,
) {
    let (status, body) = get(http, base, path).await;
    assert_eq!(status, 400, "GET {path}: {body}");
    assert_eq!(body["param"], param, "GET {path}: {body}");
    assert_eq!(body["error"], sql_error(c, sql).await, "GET {path}");
}

async fn put(http: &reqwest::Client, base: &str, path: &str, body: Value) -> (u16, Value) {
    let r = http
        .put(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {path}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_else(|e| panic!("PUT {path}: not JSON: {e}")))
}

#[tokio::test]
async fn symbol_and_strategy_api_answer_with_the_sql_functions() {
    let db = TestDb::create("pages_api", false).await;
    let c = demo_session(&db, "AAPL").await;
    let (_web, base, http) = start_web(&db).await;
    let day: chrono::NaiveDate = c
        .query_one(
            "SELECT tapeflow.session_date(max(b.bucket), 'America/New_York', '09:30') FROM tapeflow.bars_1m b",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    // The session profile and its value area, as SQL has them; re-binned by profile_agg.
    let p = ok(&http, &base, "/api/symbol/AAPL/profile").await;
    assert_eq!(p["day"], day.to_string());
    let va: Value = c
        .query_one(
            "SELECT row_to_json(v) FROM tapeflow.value_area(tapeflow.session_profile('AAPL', $1), 0.7, 'dalton') v",
            &[&day],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(p["value_area"], va);
    let levels: Value = c
        .query_one(
            "SELECT json_agg(json_build_object('price', price, 'total', total, 'buy', buy, 'sell', sell, 'delta', delta)
             ORDER BY price) FROM tapeflow.levels(tapeflow.session_profile('AAPL', $1))",
            &[&day],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(p["levels"], levels);
    let coarse =
        ok(&http, &base, "/api/symbol/AAPL/profile?ticks_per_row=10&va_pct=0.68&va_method=single").await;
    let expected: Value = c
        .query_one(
            "SELECT json_build_object('poc', tapeflow.poc(p), 'vah', tapeflow.vah(p, 0.68, 'single'),
                 'val', tapeflow.val(p, 0.68, 'single'), 'volume', tapeflow.total_volume(p))
             FROM (SELECT tapeflow.profile_agg(t.price, t.size, t.side, 0.01, 10) p FROM tapeflow.ticks t
                   WHERE t.symbol = 'AAPL' AND tapeflow.session_date(t.time, 'America/New_York', '09:30') = $1) x",
            &[&day],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        json!({ "poc": coarse["poc"], "vah": coarse["value_area"]["vah"], "val": coarse["value_area"]["val"],
                "volume": coarse["total_volume"] }),
        expected,
        "ten ticks per row: the profile of the same trades on that grid"
    );

    // Order flow, developing profile, footprint and states: the SQL functions' rows.
    let flow = ok(&http, &base, "/api/symbol/AAPL/flow?tf=15m&from=2026-01-01T00:00:00Z").await;
    let sql_flow: Value = c
        .query_one(
            "SELECT json_agg(f ORDER BY f.time) FROM tapeflow.order_flow('AAPL', '15m', '2026-01-01T00:00:00Z',
                 now() + interval '1 minute') f",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(flow, sql_flow);
    let dev = ok(&http, &base, &format!("/api/symbol/AAPL/developing?day={day}&tf=30m")).await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM tapeflow.developing_profile('AAPL', $1, '30m')", &[&day])
        .await
        .unwrap()
        .get(0);
    assert_eq!(dev.as_array().unwrap().len() as i64, n);
    let from = format!("{day}T15:00:00Z");
    let to = format!("{day}T15:30:00Z");
    let fp =
        ok(&http, &base, &format!("/api/symbol/AAPL/footprint?tf=5m&from={from}&to={to}&min_volume=200"))
            .await;
    let cells: i64 = c
        .query_one("SELECT count(*) FROM tapeflow.footprint('AAPL', '5m', $1::text::timestamptz, $2::text::timestamptz)", &[&from, &to])
        .await
        .unwrap()
        .get(0);
    let imbalances: i64 = c
        .query_one(
            "SELECT count(*) FROM tapeflow.footprint_imbalances('AAPL', '5m', $1::text::timestamptz, $2::text::timestamptz, 1.5, 200, 3)",
            &[&from, &to],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(fp["cells"].as_array().unwrap().len() as i64, cells);
    assert_eq!(fp["imbalances"].as_array().unwrap().len() as i64, imbalances);
    assert!(cells > 0 && imbalances > 0, "{cells} cells, {imbalances} imbalances");
    let states = ok(&http, &base, &format!("/api/symbol/AAPL/states?from={from}&to={to}")).await;
    assert_eq!(states["source"], "history", "no live log in this database: market_state_history");
    let history: Value = c
        .query_one(
            "SELECT json_agg(h.state ORDER BY h.time) FROM tapeflow.market_state_history('AAPL', $1::text::timestamptz,
                 $2::text::timestamptz, (SELECT params FROM tapeflow.strategy_configs WHERE symbol = 'AAPL'), '1m') h",
            &[&from, &to],
        )
        .await
        .unwrap()
        .get(0);
    let shown: Vec<_> = states["states"].as_array().unwrap().iter().map(|s| s["state"].clone()).collect();
    assert_eq!(
        Value::Array(shown),
        history,
        "the states of market_state_history with the symbol's parameters"
    );

    // Refusals: the SQL parsers' own messages, naming the parameter.
    let tiny = "(SELECT tapeflow.profile_agg(1, 1, 'B', 0.01) p) x";
    refused_as_sql(
        &http,
        &base,
        &c,
        "/api/symbol/ZZZZ/profile",
        "symbol",
        "SELECT tapeflow.symbol_row('ZZZZ')",
    )
    .await;
    refused_as_sql(
        &http,
        &base,
        &c,
        "/api/symbol/AAPL/flow?tf=7m",
        "tf",
        "SELECT * FROM tapeflow.candles('AAPL', '7m', now(), now())",
    )
    .await;
    refused_as_sql(
        &http,
        &base,
        &c,
        "/api/symbol/AAPL/profile?ticks_per_row=0",
        "ticks_per_row",
        "SELECT tapeflow.total_volume(tapeflow.profile_agg(1, 1, 'B', 0.01, 0))",
    )
    .await;
    refused_as_sql(
        &http,
        &base,
        &c,
        "/api/symbol/AAPL/profile?ticks_per_row=five",
        "ticks_per_row",
        "SELECT 'five'::integer",
    )
    .await;
    refused_as_sql(
        &http,
        &base,
        &c,
        "/api/symbol/AAPL/profile?va_pct=1.5",
        "va_pct",
        &format!("SELECT tapeflow.vah(p, 1.5, 'dalton') FROM {tiny}"),
    )
    .await;
    refused_as_sql(
        &http,
        &base,
        &c,
        "/api/symbol/AAPL/profile?va_method=widest",
        "va_method",
        &format!("SELECT tapeflow.vah(p, 0.7, 'widest') FROM {tiny}"),
    )
    .await;
    refused_as_sql(
        &http,
        &base,
        &c,
        "/api/symbol/AAPL/profile?day=2026-02-30",
        "day",
        "SELECT '2026-02-30'::date",
    )
    .await;
    refused_as_sql(
        &http,
        &base,
        &c,
        &format!("/api/symbol/AAPL/footprint?from={from}&to={to}&ratio=0.9"),
        "ratio",
        &format!("SELECT * FROM {tiny}, tapeflow.stacked_imbalances(x.p, 0.9, 0, 3)"),
    )
    .await;
    refused_as_sql(
        &http,
        &base,
        &c,
        &format!("/api/symbol/AAPL/footprint?from={from}&to={to}&min_rows=0"),
        "min_rows",
        &format!("SELECT * FROM {tiny}, tapeflow.stacked_imbalances(x.p, 1.5, 0, 0)"),
    )
    .await;
    refused_as_sql(
        &http,
        &base,
        &c,
        "/api/symbol/AAPL/flow?from=soonish",
        "from",
        "SELECT 'soonish'::timestamptz",
    )
    .await;
    let (status, body) = get(
        &http,
        &base,
        "/api/symbol/AAPL/footprint?tf=1m&from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z",
    )
    .await;
    assert_eq!((status, body["param"].as_str()), (400, Some("from")), "{body}");
    assert!(body["error"].as_str().unwrap().contains("at most 300 bars"), "{body}");

    // Strategy configurations: validate_params decides, and names the field.
    let list = ok(&http, &base, "/api/strategies").await;
    let aapl = list["configs"].as_array().unwrap().iter().find(|c| c["symbol"] == "AAPL").unwrap();
    assert_eq!(aapl["configured"], true, "the demo feed configured its symbols");
    let schema = list["schema"].as_array().unwrap();
    let defaults = schema.iter().fold(json!({}), |mut all, f| {
        let key = f["key"].as_str().unwrap();
        let mut at = &mut all;
        let parts: Vec<_> = key.split('.').collect();
        for p in &parts[..parts.len() - 1] {
            at = at.as_object_mut().unwrap().entry(p.to_string()).or_insert(json!({}));
        }
        at[parts[parts.len() - 1]] = f["default"].clone();
        all
    });
    let valid: bool = c.query_one("SELECT tapeflow.validate_params($1)", &[&defaults]).await.unwrap().get(0);
    assert!(valid, "every field of the form at its default is a valid parameter: {defaults}");

    let refused = |params: Value| {
        let http = http.clone();
        let base = base.clone();
        async move { put(&http, &base, "/api/strategies/AAPL/amt", json!({ "params": params })).await }
    };
    let (status, body) = refused(json!({"strategy": {"min_aggression_score": 200}})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "strategy.min_aggression_score");
    assert_eq!(
        body["error"],
        sql_error(&c, r#"SELECT tapeflow.validate_params('{"strategy": {"min_aggression_score": 200}}')"#)
            .await
    );
    let (status, body) = refused(json!({"atr_period": 3, "state": {"rolling_bars": "many"}})).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("state.rolling_bars")), "{body}");
    let own =
        sql_error(&c, r#"SELECT tapeflow.validate_params('{"state": {"rolling_bars": "many"}}')"#).await;
    assert_eq!(body["error"], format!("state.rolling_bars: {own}"), "a message without its key gets it");
    let (status, body) = refused(json!({"state": {"widest": true}})).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("state.widest")), "{body}");
    let before: Value = c
        .query_one("SELECT params FROM tapeflow.strategy_configs WHERE symbol = 'AAPL'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(&before, &aapl["params"], "refused changes store nothing");
    let (status, body) = put(
        &http,
        &base,
        "/api/strategies/AAPL/amt",
        json!({"enabled": false, "extended_hours": true, "params": {"strategy": {"min_aggression_score": 65}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let row = c
        .query_one(
            "SELECT enabled, extended_hours, params FROM tapeflow.strategy_configs WHERE symbol = 'AAPL'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, bool>(0), row.get::<_, bool>(1), row.get::<_, Value>(2)),
        (false, true, json!({"strategy": {"min_aggression_score": 65}}))
    );
    let (status, body) = put(&http, &base, "/api/strategies/AAPL/zigzag", json!({"enabled": true})).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("strategy")), "{body}");
    let (status, body) = put(&http, &base, "/api/strategies/ZZZZ/amt", json!({"enabled": true})).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unknown symbol ZZZZ")), "{body}");

    // Feed health: no feeder has reported; nothing refused.
    let feeds = ok(&http, &base, "/api/feeds").await;
    assert_eq!(feeds["feeds"].as_array().map(Vec::len), Some(0));
    assert_eq!(feeds["rejects"]["last_day"], 0);
    assert_eq!(feeds["symbols"][0]["symbol"], "AAPL");
}

#[tokio::test]
async fn symbol_strategies_and_feeds_pages_in_headless_chromium() {
    let db = TestDb::create("pages", false).await;
    let _c = demo_session(&db, "AAPL,MSFT").await;
    let (_web, base, _http) = start_web(&db).await;
    let target = repo_root().join("target");
    let shots = ["symbol.png", "symbol-footprint.png", "strategies.png", "feeds.png", "backtest-results.png"];
    for s in shots {
        let _ = std::fs::remove_file(target.join(s));
    }
    let status = Command::new("node")
        .args(["--test", "browser-test/pages.test.mjs"])
        .current_dir(repo_root().join("web"))
        .env("TAPEFLOW_WEB_URL", &base)
        .env("TAPEFLOW_WEB_USER", TEST_USER)
        .env("TAPEFLOW_WEB_PASSWORD", TEST_PASSWORD)
        .env("TAPEFLOW_TEST_DATABASE_URL", &db.url)
        .env("TAPEFLOW_SCREENSHOT_DIR", &target)
        .status()
        .expect("run node");
    assert!(status.success(), "browser test failed");
    for s in shots {
        assert!(target.join(s).exists(), "no screenshot {s}");
    }
}
