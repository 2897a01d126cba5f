//! Logins, sessions, CSRF, roles and limits of tapeflow-web: API-level checks with reqwest,
//! a client that never reads its SSE stream, and the login flow in headless Chromium.

use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};
use tapeflow_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn status_and_json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn get(http: &reqwest::Client, url: String) -> (u16, Value) {
    status_and_json(http.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))).await
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    status_and_json(http.post(&url).json(&body).send().await.unwrap_or_else(|e| panic!("POST {url}: {e}")))
        .await
}

async fn metrics(base: &str) -> String {
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// The value of a metric line starting with `name` (labels included), or 0.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

#[tokio::test]
async fn api_and_sse_need_a_session_health_and_metrics_are_public_and_hosts_are_checked() {
    let db = TestDb::create("auth", false).await;
    let (_web, base, http) = start_web(&db).await;
    let anonymous = no_redirects();

    // No session: the API and the stream are refused, the dashboard sends to the login page.
    for path in ["/api/symbols", "/api/account", "/api/session", "/api/backtests", "/events"] {
        let (status, body) = get(&anonymous, format!("{base}{path}")).await;
        assert_eq!(status, 401, "GET {path}: {body}");
        assert_eq!(body["error"], "not logged in");
    }
    let (status, _) = post(&anonymous, format!("{base}/api/kill-switch"), json!({"enabled": false})).await;
    assert_eq!(status, 401);
    let root = anonymous.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()["location"], "/login");
    let page = anonymous.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("id=\"login-form\""));
    // Public: health, metrics, static files.
    assert_eq!(anonymous.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(anonymous.get(format!("{base}/static/js/api.js")).send().await.unwrap().status(), 200);
    let m = metrics(&base).await;
    for name in [
        "tapeflow_web_requests_total",
        "tapeflow_web_sse_clients",
        "tapeflow_web_slow_clients_dropped_total",
        "tapeflow_web_login_failures_total",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics:\n{m}");
    }

    // With the session: the API, the stream, and who is logged in.
    let (status, me) = get(&http, format!("{base}/api/session")).await;
    assert_eq!(status, 200);
    assert_eq!((me["name"].as_str(), me["role"].as_str()), (Some(TEST_USER), Some("trader")));
    assert_eq!(get(&http, format!("{base}/api/symbols")).await.0, 200);
    let _sse = SseReader::connect_with(&http, &format!("{base}/events")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = metrics(&base).await;
    assert_eq!(metric(&m, "tapeflow_web_sse_clients"), 1.0, "{m}");

    // The cookie: HttpOnly, SameSite=Strict, Secure only behind TLS.
    let (r, _) = try_login(&base, TEST_USER, TEST_PASSWORD).await;
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("tapeflow_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let r = reqwest::Client::new()
        .post(format!("{base}/login"))
        .header("x-forwarded-proto", "https")
        .json(&json!({"name": TEST_USER, "password": TEST_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("; Secure"));

    // CSRF: the session cookie alone does not make a mutation.
    let (_, jar) = try_login(&base, TEST_USER, TEST_PASSWORD).await;
    let cookie_only = reqwest::Client::builder().cookie_provider(jar).build().unwrap();
    assert_eq!(get(&cookie_only, format!("{base}/api/account")).await.0, 200);
    let (status, body) =
        post(&cookie_only, format!("{base}/api/kill-switch"), json!({"enabled": false})).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("CSRF"), "{body}");
    let bad = cookie_only
        .post(format!("{base}/api/kill-switch"))
        .header("x-csrf-token", "not-the-token")
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 403);
    let (status, body) = post(&http, format!("{base}/api/kill-switch"), json!({"enabled": true})).await;
    assert_eq!((status, body["trading_enabled"].clone()), (200, json!(true)));

    // A login form posted from another site is refused.
    let r = reqwest::Client::new()
        .post(format!("{base}/login"))
        .header("origin", "http://evil.example")
        .json(&json!({"name": TEST_USER, "password": TEST_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The Host header must be one of ours (DNS rebinding), on every path.
    for path in ["/healthz", "/api/symbols", "/login"] {
        let r = http.get(format!("{base}{path}")).header("host", "evil.example").send().await.unwrap();
        assert_eq!(r.status(), 421, "{path}");
        let port = base.rsplit(':').next().unwrap();
        let r = http
            .get(format!("{base}{path}"))
            .header("host", format!("rebind.example:{port}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 421, "{path}");
    }
    let port = base.rsplit(':').next().unwrap();
    let r = http
        .get(format!("{base}/api/symbols"))
        .header("host", format!("localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "localhost with the port is allowed by default");
    assert!(metric(&metrics(&base).await, "tapeflow_web_bad_host_total") >= 6.0);
}

#[tokio::test]
async fn roles_viewer_reads_trader_acts_admin_manages_users() {
    let db = TestDb::create("roles", false).await;
    db.client()
        .await
        .batch_execute("INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('ROLE', 0.01)")
        .await
        .unwrap();
    let (_web, base, trader) = start_web(&db).await;
    add_user(&db, "vera", "viewer", "viewer-password");
    add_user(&db, "ada", "admin", "admin-password");
    let viewer = login(&base, "vera", "viewer-password").await;
    let admin = login(&base, "ada", "admin-password").await;

    // A viewer reads everything and changes nothing.
    for path in ["/api/symbols", "/api/account", "/api/backtests", "/api/orders"] {
        assert_eq!(get(&viewer, format!("{base}{path}")).await.0, 200, "{path}");
    }
    for (path, body) in [
        ("/api/kill-switch", json!({"enabled": false})),
        ("/api/flatten", json!({})),
        (
            "/api/backtests",
            json!({"symbols": ["ROLE"], "from": "2024-03-04T00:00:00Z", "to": "2024-03-05T00:00:00Z"}),
        ),
    ] {
        let (status, reply) = post(&viewer, format!("{base}{path}"), body).await;
        assert_eq!(status, 403, "viewer POST {path}: {reply}");
        let msg = reply["error"].as_str().unwrap();
        assert!(msg.contains("vera is a viewer") && msg.contains("trader"), "{msg}");
    }
    let c = db.client().await;
    let enabled: bool =
        c.query_one("SELECT trading_enabled FROM tapeflow.risk_limits", &[]).await.unwrap().get(0);
    assert!(enabled, "the viewer's kill switch did nothing");
    // A trader acts, but does not manage users.
    let (status, _) = post(&trader, format!("{base}/api/flatten"), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(get(&trader, format!("{base}/api/users")).await.0, 403);
    assert_eq!(
        post(&trader, format!("{base}/api/users"), json!({"name": "x", "role": "admin"})).await.0,
        403
    );

    // An admin manages users: list, add (generated password), change role, disable, remove.
    let (status, list) = get(&admin, format!("{base}/api/users")).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ada", "tester", "vera"]);
    assert!(list.as_array().unwrap().iter().all(|u| u.get("password_hash").is_none()));
    let (status, made) =
        post(&admin, format!("{base}/api/users"), json!({"name": "bob", "role": "viewer"})).await;
    assert_eq!(status, 201, "{made}");
    let bob_password = made["password"].as_str().unwrap().to_string();
    assert_eq!(bob_password.len(), 20);
    let bob = login(&base, "bob", &bob_password).await;
    assert_eq!(post(&bob, format!("{base}/api/flatten"), json!({})).await.0, 403);
    let (status, _) = post(&admin, format!("{base}/api/users/bob"), json!({"role": "trader"})).await;
    assert_eq!(status, 200);
    assert_eq!(
        post(&bob, format!("{base}/api/flatten"), json!({})).await.0,
        200,
        "the new role applies at once"
    );
    let (status, _) = post(&admin, format!("{base}/api/users/bob"), json!({"disabled": true})).await;
    assert_eq!(status, 200);
    assert_eq!(get(&bob, format!("{base}/api/symbols")).await.0, 401, "disabling ends the sessions");
    let (r, _) = try_login(&base, "bob", &bob_password).await;
    assert_eq!(r.status(), 403);
    let (status, body) =
        post(&admin, format!("{base}/api/users"), json!({"name": "bad name", "role": "viewer"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) =
        post(&admin, format!("{base}/api/users"), json!({"name": "z", "role": "root"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) =
        post(&admin, format!("{base}/api/users"), json!({"name": "vera", "role": "viewer"})).await;
    assert_eq!(status, 409);
    let r = admin.delete(format!("{base}/api/users/bob")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The last admin stays.
    let (status, body) = post(&admin, format!("{base}/api/users/ada"), json!({"role": "viewer"})).await;
    assert_eq!(status, 409, "{body}");
    let r = admin.delete(format!("{base}/api/users/ada")).send().await.unwrap();
    assert_eq!(r.status(), 409);

    // The command line: passwd ends the sessions; remove; a bad role is refused.
    let web = binary("tapeflow-web");
    let out =
        Command::new(&web).args(["user", "passwd", "vera"]).env("DATABASE_URL", &db.url).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    let new_password = printed.split("new password of vera: ").nth(1).unwrap().split(' ').next().unwrap();
    assert_eq!(get(&viewer, format!("{base}/api/symbols")).await.0, 401);
    login(&base, "vera", new_password).await;
    let out = Command::new(&web)
        .args(["user", "add", "eve", "--role", "root"])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected viewer, trader or admin"));
    let out =
        Command::new(&web).args(["user", "remove", "vera"]).env("DATABASE_URL", &db.url).output().unwrap();
    assert!(out.status.success());
    let (r, _) = try_login(&base, "vera", new_password).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn repeated_failures_lock_a_user_and_an_address_out_with_retry_after() {
    let db = TestDb::create("lockout", false).await;
    let window = 4;
    let (_web, base, _http) = start_web_with(
        &db,
        &[
            ("TAPEFLOW_WEB_LOGIN_MAX_FAILURES", "3".into()),
            ("TAPEFLOW_WEB_LOGIN_MAX_FAILURES_PER_ADDRESS", "6".into()),
            ("TAPEFLOW_WEB_LOGIN_WINDOW_SECS", window.to_string()),
        ],
    )
    .await;
    let attempt = |name: &'static str, password: &'static str| {
        let base = base.clone();
        async move {
            let (r, _) = try_login(&base, name, password).await;
            let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            let (status, body) = status_and_json(r).await;
            (status, body["error"].as_str().unwrap_or_default().to_string(), retry)
        }
    };
    let started = Instant::now();
    for i in 0..3 {
        let (status, msg, _) = attempt(TEST_USER, "wrong-password").await;
        assert_eq!(status, 401, "attempt {i}: {msg}");
        assert!(msg.starts_with("Wrong user name or password"), "{msg}");
        if i == 2 {
            assert!(msg.contains("locked out"), "the failure that locks says so: {msg}");
        }
    }
    // Locked: even the right password is refused, with how long to wait.
    let (status, msg, retry) = attempt(TEST_USER, TEST_PASSWORD).await;
    assert_eq!(status, 429, "{msg}");
    assert!(
        msg.contains(&format!("Too many failed logins for {TEST_USER}")) && msg.contains("try again in"),
        "{msg}"
    );
    let retry = retry.expect("Retry-After");
    assert!((1..=window).contains(&retry), "Retry-After {retry}");
    let m = metrics(&base).await;
    assert_eq!(metric(&m, "tapeflow_web_login_failures_total{reason=\"wrong_password\"}"), 3.0, "{m}");
    assert!(metric(&m, "tapeflow_web_login_failures_total{reason=\"locked\"}") >= 1.0);

    // The address: failures under other names add up to its own limit (6).
    for name in ["nobody", "someone", "anyone"] {
        assert_eq!(attempt(name, "guess-password").await.0, 401);
    }
    let (status, msg, _) = attempt("other", "guess-password").await;
    assert_eq!(status, 429, "{msg}");
    assert!(msg.contains("from this address"), "{msg}");

    // Once the window has passed, the right password works again.
    tokio::time::sleep(Duration::from_secs(window + 1).saturating_sub(started.elapsed())).await;
    let (status, msg, _) = attempt(TEST_USER, TEST_PASSWORD).await;
    assert_eq!(status, 200, "after the lock-out: {msg}");
}

#[tokio::test]
async fn sessions_survive_a_restart_logout_ends_them_and_db_errors_are_not_leaked() {
    let db = TestDb::create("sess", false).await;
    let port = free_port();
    add_user(&db, TEST_USER, "trader", TEST_PASSWORD);
    let (web, base) = spawn_web(&db, port, &[]).await;
    let http = login(&base, TEST_USER, TEST_PASSWORD).await;
    assert_eq!(get(&http, format!("{base}/api/session")).await.0, 200);
    drop(web); // SIGKILL: nothing is kept in the process
    let (_web, base) = spawn_web(&db, port, &[]).await;
    let (status, me) = get(&http, format!("{base}/api/session")).await;
    assert_eq!(status, 200, "the session outlived the web app: {me}");
    assert_eq!(me["name"], TEST_USER);
    let stored: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM tapeflow.web_sessions WHERE user_name = $1", &[&TEST_USER])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);

    // A database error: logged in full, the browser gets a short message without SQL.
    let c = db.client().await;
    c.batch_execute("ALTER TABLE tapeflow.fills RENAME TO fills_hidden").await.unwrap();
    let (status, body) = get(&http, format!("{base}/api/fills")).await;
    assert_eq!(status, 500, "{body}");
    let msg = body["error"].as_str().unwrap();
    for leak in ["fills", "relation", "does not exist", "SELECT", "tapeflow."] {
        assert!(!msg.contains(leak), "{leak:?} leaked in {msg:?}");
    }
    assert!(msg.contains("internal database error"), "{msg}");
    c.batch_execute("ALTER TABLE tapeflow.fills_hidden RENAME TO fills").await.unwrap();
    assert_eq!(get(&http, format!("{base}/api/fills")).await.0, 200);
    // Errors of our own functions still explain themselves.
    let (status, body) = get(&http, format!("{base}/api/candles?symbol=NOPE&tf=1m")).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("unknown symbol NOPE"), "{body}");

    // Logout ends the session, here and in the database.
    let (status, _) = post(&http, format!("{base}/logout"), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(get(&http, format!("{base}/api/session")).await.0, 401);
    let stored: i64 = c.query_one("SELECT count(*) FROM tapeflow.web_sessions", &[]).await.unwrap().get(0);
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn first_start_creates_an_admin_with_a_generated_password() {
    let db = TestDb::create("first", false).await;
    let file = repo_root().join(format!("target/admin-password-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let (web, base) =
        spawn_web(&db, free_port(), &[("TAPEFLOW_WEB_ADMIN_PASSWORD_FILE", file.display().to_string())])
            .await;
    let password = std::fs::read_to_string(&file).expect("the password file").trim().to_string();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let admin = login(&base, "admin", &password).await;
    let (status, me) = get(&admin, format!("{base}/api/session")).await;
    assert_eq!((status, me["role"].as_str()), (200, Some("admin")));
    drop(web);
    // A second start with users present creates nothing and leaves the file alone.
    let _ = std::fs::remove_file(&file);
    let (_web, _) =
        spawn_web(&db, free_port(), &[("TAPEFLOW_WEB_ADMIN_PASSWORD_FILE", file.display().to_string())])
            .await;
    assert!(!file.exists());
    let users: i64 =
        db.client().await.query_one("SELECT count(*) FROM tapeflow.users", &[]).await.unwrap().get(0);
    assert_eq!(users, 1);
}

/// Ticks for a backtest of `symbol` over two days from 2024-03-04.
async fn backtest_data(c: &tokio_postgres::Client, symbol: &str) {
    c.batch_execute(&format!(
        "INSERT INTO tapeflow.symbols (symbol, tick_size, timezone, session_open, session_close)
         VALUES ('{symbol}', 0.01, 'UTC', '00:00', '00:00');
         INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
         SELECT timestamptz '2024-03-04 00:00+00' + i * interval '30 seconds', '{symbol}', 50 + 5 * sin(i / 300.0), 100,
                CASE WHEN i % 3 = 0 THEN 'S' ELSE 'B' END, i::text
         FROM generate_series(0, 5759) i;"
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn backtests_are_limited_per_user_in_range_and_symbols() {
    let db = TestDb::create("btlim", false).await;
    let c = db.client().await;
    backtest_data(&c, "LIM").await;
    let (_web, base, http) = start_web_with(
        &db,
        &[
            ("TAPEFLOW_WEB_BACKTESTS_PER_USER", "1".into()),
            ("TAPEFLOW_WEB_BACKTEST_MAX_DAYS", "30".into()),
            ("TAPEFLOW_WEB_BACKTEST_MAX_SYMBOLS", "2".into()),
        ],
    )
    .await;
    let run = |symbols: Vec<&str>, from: &str, to: &str| json!({"symbols": symbols, "from": from, "to": to});
    let url = format!("{base}/api/backtests");
    let (status, body) =
        post(&http, url.clone(), run(vec!["LIM"], "2024-01-01T00:00:00Z", "2024-03-06T00:00:00Z")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("at most 30 days"), "{body}");
    let (status, body) =
        post(&http, url.clone(), run(vec!["LIM", "A", "B"], "2024-03-04T00:00:00Z", "2024-03-06T00:00:00Z"))
            .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("at most 2 symbols"), "{body}");

    // Hold the first run at its first write of results, so that it is still running.
    let mut blocker = db.client().await;
    let tx = blocker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE tapeflow.backtest_equity IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let mut sse = SseReader::connect_with(&http, &format!("{base}/events")).await;
    let (status, first) =
        post(&http, url.clone(), run(vec!["LIM"], "2024-03-04T00:00:00Z", "2024-03-06T00:00:00Z")).await;
    assert_eq!(status, 202, "{first}");
    let (status, body) =
        post(&http, url.clone(), run(vec!["LIM"], "2024-03-04T00:00:00Z", "2024-03-05T00:00:00Z")).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"].as_str().unwrap().contains("already has 1 backtest(s) running"), "{body}");
    let m = metrics(&base).await;
    assert_eq!(metric(&m, "tapeflow_web_backtests_running"), 1.0, "{m}");
    // Another user has a place of their own.
    add_user(&db, "other", "trader", "other-password");
    let other = login(&base, "other", "other-password").await;
    let (status, second) =
        post(&other, url.clone(), run(vec!["LIM"], "2024-03-04T00:00:00Z", "2024-03-05T00:00:00Z")).await;
    assert_eq!(status, 202, "{second}");
    tx.rollback().await.unwrap();
    let mut finished = std::collections::HashMap::new();
    while finished.len() < 2 {
        let done = sse
            .wait_for("backtest", Duration::from_secs(60), |v| {
                (v["id"] == first["id"] || v["id"] == second["id"]) && v["status"] != "running"
            })
            .await
            .expect("both runs end");
        finished.insert(done["id"].as_i64().unwrap(), done);
    }
    for done in finished.values() {
        assert_eq!(done["status"], "completed", "{done}");
    }
    let who: Vec<String> = c
        .query("SELECT created_by FROM tapeflow.backtest_runs ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(who, [TEST_USER, "other"]);
    // The place is free again.
    let (status, body) =
        post(&http, url, run(vec!["LIM"], "2024-03-04T00:00:00Z", "2024-03-05T00:00:00Z")).await;
    assert_eq!(status, 202, "{body}");
}

/// The raw `tapeflow_session=…` cookie of a fresh login.
async fn session_cookie(base: &str) -> String {
    let (r, _) = try_login(base, TEST_USER, TEST_PASSWORD).await;
    r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn sse_clients_are_bounded_and_one_that_never_reads_is_dropped_while_others_receive() {
    let db = TestDb::create("slow", false).await;
    let (_web, base, http) = start_web_with(
        &db,
        &[("TAPEFLOW_WEB_WRITE_TIMEOUT_MS", "1000".into()), ("TAPEFLOW_WEB_MAX_SSE", "3".into())],
    )
    .await;
    let addr = base.trim_start_matches("http://").to_string();
    let cookie = session_cookie(&base).await;

    // A client that asks for the stream and then never reads (a small receive window).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(addr.parse().unwrap()).await.unwrap();
    slow.write_all(format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut fast = SseReader::connect_with(&http, &format!("{base}/events")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(metric(&metrics(&base).await, "tapeflow_web_sse_clients"), 2.0);

    // ~14 MB of events, far more than the slow client's socket buffers hold.
    let events = 2000;
    let publisher = {
        let c = db.client().await;
        tokio::spawn(async move {
            let filler = "x".repeat(7000);
            for batch in 0..events / 50 {
                let mut sql = String::from("BEGIN;");
                for i in 0..50 {
                    let n = batch * 50 + i;
                    sql.push_str(&format!("NOTIFY tapeflow_risk, '{{\"n\": {n}, \"pad\": \"{filler}\"}}';"));
                }
                sql.push_str("COMMIT;");
                c.batch_execute(&sql).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let mut received = 0;
    let mut last = -1i64;
    while received < events {
        let v = fast
            .wait_for("risk", Duration::from_secs(20), |_| true)
            .await
            .unwrap_or_else(|| panic!("the reading client stalled after {received} events"));
        let n = v["n"].as_i64().unwrap();
        assert_eq!(n, last + 1, "in order, none lost");
        last = n;
        received += 1;
    }
    publisher.await.unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(30), "fan-out took {elapsed:?}");

    // The slow one was closed by the write timeout and its place freed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics(&base).await;
        let dropped = metric(&m, "tapeflow_web_slow_clients_dropped_total{reason=\"write_stalled\"}");
        if dropped >= 1.0 && metric(&m, "tapeflow_web_sse_clients") == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the slow client was not dropped:\n{m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its socket ends (after what the kernel had buffered).
    let mut buf = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the slow client's connection is still open");

    // The cap: three streams at once, a fourth is refused with 503.
    let _second = SseReader::connect_with(&http, &format!("{base}/events")).await;
    let _third = SseReader::connect_with(&http, &format!("{base}/events")).await;
    let r = http.get(format!("{base}/events")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(metric(&metrics(&base).await, "tapeflow_web_sse_refused_total") >= 1.0);
}

#[tokio::test]
async fn login_flow_in_headless_chromium() {
    let db = TestDb::create("authui", false).await;
    let (_web, base, _http) = start_web_with(
        &db,
        &[("TAPEFLOW_WEB_LOGIN_MAX_FAILURES", "3".into()), ("TAPEFLOW_WEB_LOGIN_WINDOW_SECS", "120".into())],
    )
    .await;
    add_user(&db, "vera", "viewer", "viewer-password");
    add_user(&db, "locky", "viewer", "locky-password");
    add_user(&db, "ada", "admin", "admin-password");
    let screenshot = repo_root().join("target/login.png");
    let status = Command::new("node")
        .args(["--test", "browser-test/auth-flow.mjs"])
        .current_dir(repo_root().join("web"))
        .env("TAPEFLOW_WEB_URL", &base)
        .env("TAPEFLOW_WEB_USER", TEST_USER)
        .env("TAPEFLOW_WEB_PASSWORD", TEST_PASSWORD)
        .env("TAPEFLOW_VIEWER_USER", "vera")
        .env("TAPEFLOW_VIEWER_PASSWORD", "viewer-password")
        .env("TAPEFLOW_LOCKED_USER", "locky")
        .env("TAPEFLOW_ADMIN_USER", "ada")
        .env("TAPEFLOW_ADMIN_PASSWORD", "admin-password")
        .env("TAPEFLOW_MAX_FAILURES", "3")
        .env("TAPEFLOW_SCREENSHOT", &screenshot)
        .status()
        .expect("run node");
    assert!(status.success(), "browser test of the login flow failed");
    let trading: bool = db
        .client()
        .await
        .query_one("SELECT trading_enabled FROM tapeflow.risk_limits", &[])
        .await
        .unwrap()
        .get(0);
    assert!(trading, "the viewer could not turn trading off");
}
