//! Integration-test harness: a throw-away database on the project cluster with the schema
//! migrated, the project's real binaries started as child processes, and free ports.

pub mod citus_cluster;
pub mod fake_alpaca;
pub mod fake_alpaca_data;
pub mod fake_alphavantage;
pub mod fake_clob;
pub mod fake_ig;
pub mod fake_polymarket;
pub mod ground_truth;
pub mod private_cluster;
pub mod tcp_proxy;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the repo").to_path_buf()
}

/// The cluster's URL for a database name (the project cluster unless `TAPEFLOW_PGPORT` says otherwise).
pub fn cluster_url(db: &str) -> String {
    let base = tapeflow_db::database_url();
    let cut = base.rfind('/').expect("URL has a database");
    format!("{}/{db}", &base[..cut])
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh database with the migrations applied; dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// Creates and migrates a database; `timescaledb` false forces the plain-PostgreSQL path.
    pub async fn create(prefix: &str, timescaledb: bool) -> TestDb {
        let name = format!("t_{prefix}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let admin = tapeflow_db::connect(&cluster_url("postgres"), Duration::from_secs(10))
            .await
            .expect("the project cluster is running (make test starts it)");
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let url = cluster_url(&name);
        let status = Command::new("bash")
            .arg(repo_root().join("scripts/migrate.sh"))
            .arg(&url)
            .env("TAPEFLOW_TIMESCALEDB", if timescaledb { "on" } else { "off" })
            .stdout(Stdio::null())
            .status()
            .expect("run migrate.sh");
        assert!(status.success(), "migrations failed for {name}");
        TestDb { name, url }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        tapeflow_db::connect(&self.url, Duration::from_secs(10)).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Best effort, synchronously: tests may end inside or outside a runtime.
        let _ = Command::new("psql")
            .arg(cluster_url("postgres"))
            .args(["-X", "-q", "-c", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether the cluster can take the TimescaleDB path: the extension is installed and the
/// server preloads it (the migrations use TimescaleDB only then).
pub async fn timescaledb_available() -> bool {
    let client = tapeflow_db::connect(&cluster_url("postgres"), Duration::from_secs(10))
        .await
        .expect("the project cluster is running (make test starts it)");
    let installed: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')", &[])
        .await
        .unwrap()
        .get(0);
    let preload: String = client.query_one("SHOW shared_preload_libraries", &[]).await.unwrap().get(0);
    installed && preload.split(',').any(|lib| lib.trim() == "timescaledb")
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Path of a release binary built by `make test` (override the directory with `TAPEFLOW_BIN_DIR`).
pub fn binary(name: &str) -> PathBuf {
    let dir = std::env::var("TAPEFLOW_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target/release"));
    let path = dir.join(name);
    assert!(path.exists(), "{} not built; run `make binaries` first", path.display());
    path
}

/// A child process killed (SIGKILL) when dropped, unless stopped gracefully first.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, args: &[&str], env: &[(&str, String)]) -> Proc {
        let log = std::fs::File::create(repo_root().join(format!(
            "target/{name}-{}-{}.log",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        )))
        .expect("create log");
        let mut cmd = Command::new(binary(name));
        cmd.args(args).stdout(log.try_clone().unwrap()).stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc { child: cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}")), name: name.to_string() }
    }

    /// Sends SIGTERM and waits; returns whether it exited successfully within `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.wait_exit(timeout)
    }

    /// Waits for the process to end by itself; returns whether it exited successfully within
    /// `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `url` until it answers 200 or `timeout` passes.
pub async fn wait_http_ok(url: &str, timeout: Duration) {
    let start = Instant::now();
    let client = reqwest::Client::new();
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(start.elapsed() < timeout, "{url} did not become ready within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads Server-Sent Events from a response: yields (event, data) pairs.
pub struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    /// Connects without a session (tapeflow-web refuses that with 401: see [`connect_with`]).
    ///
    /// [`connect_with`]: SseReader::connect_with
    pub async fn connect(url: &str) -> SseReader {
        SseReader::connect_with(&reqwest::Client::new(), url).await
    }

    /// Connects with `client`'s cookies (a logged-in client from [`start_web`]).
    pub async fn connect_with(client: &reqwest::Client, url: &str) -> SseReader {
        let resp = client.get(url).send().await.expect("connect SSE");
        assert!(resp.status().is_success(), "SSE status {}", resp.status());
        SseReader { resp, buf: String::new() }
    }

    /// The next event, or None if none arrives within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<(String, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = "message".to_string();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((event, data.join("\n")));
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }

    /// Waits for an event named `name` whose data satisfies `pred`.
    pub async fn wait_for(
        &mut self,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let (event, data) = self.next(left).await?;
            if event == name {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&data) {
                    if pred(&v) {
                        return Some(v);
                    }
                }
            }
        }
        None
    }
}

/// The user [`start_web`] creates (role `trader`) and its password.
pub const TEST_USER: &str = "tester";
pub const TEST_PASSWORD: &str = "tester-password-1";

/// Creates a dashboard user through the real `tapeflow-web user add NAME --role ROLE
/// --password-stdin`.
pub fn add_user(db: &TestDb, name: &str, role: &str, password: &str) {
    use std::io::Write;
    let mut child = Command::new(binary("tapeflow-web"))
        .args(["user", "add", name, "--role", role, "--password-stdin"])
        .env("DATABASE_URL", &db.url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tapeflow-web user add");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "user add {name}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `POST /login` as `name` with a fresh cookie store: the response and the store.
pub async fn try_login(
    base: &str,
    name: &str,
    password: &str,
) -> (reqwest::Response, std::sync::Arc<reqwest::cookie::Jar>) {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder().cookie_provider(jar.clone()).build().unwrap();
    let r = client
        .post(format!("{base}/login"))
        .json(&serde_json::json!({ "name": name, "password": password }))
        .send()
        .await
        .expect("POST /login");
    (r, jar)
}

/// A client logged in to `base` as `name` (its session cookie in a cookie store, its CSRF
/// token sent on every request); panics if the login fails.
pub async fn login(base: &str, name: &str, password: &str) -> reqwest::Client {
    let (r, jar) = try_login(base, name, password).await;
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    assert!(status.is_success(), "login as {name}: {status} {body}");
    let csrf =
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["csrf"].as_str().unwrap().to_string();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-csrf-token", csrf.parse().unwrap());
    reqwest::Client::builder().cookie_provider(jar).default_headers(headers).build().unwrap()
}

/// Starts tapeflow-web on a free port against `db` with the user [`TEST_USER`] (a trader);
/// returns it, its base URL and a client logged in as that user, once ready.
pub async fn start_web(db: &TestDb) -> (Proc, String, reqwest::Client) {
    start_web_with(db, &[]).await
}

/// [`start_web`] with more settings of tapeflow-web.
pub async fn start_web_with(db: &TestDb, extra: &[(&str, String)]) -> (Proc, String, reqwest::Client) {
    add_user(db, TEST_USER, "trader", TEST_PASSWORD);
    let (web, base) = spawn_web(db, free_port(), extra).await;
    let http = login(&base, TEST_USER, TEST_PASSWORD).await;
    (web, base, http)
}

/// Starts tapeflow-web on `port` (no user created); returns it and its base URL once ready.
pub async fn spawn_web(db: &TestDb, port: u16, extra: &[(&str, String)]) -> (Proc, String) {
    let mut env = vec![
        ("DATABASE_URL", db.url.clone()),
        ("TAPEFLOW_WEB_ADDR", format!("127.0.0.1:{port}")),
        ("TAPEFLOW_WEB_ROOT", repo_root().join("web").display().to_string()),
    ];
    for (k, v) in extra {
        env.retain(|(e, _)| e != k);
        env.push((k, v.clone()));
    }
    let web = Proc::spawn("tapeflow-web", &[], &env);
    let base = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{base}/healthz"), Duration::from_secs(20)).await;
    (web, base)
}

/// Stores the previous regular session of the demo market for `symbols` (comma-separated)
/// through the real feed (backfill only, `TAPEFLOW_DEMO_LIVE=false`), and returns a client once it has exited.
pub async fn demo_session(db: &TestDb, symbols: &str) -> tokio_postgres::Client {
    demo_session_with(db, symbols, &[]).await
}

/// [`demo_session`] with more feed settings.
pub async fn demo_session_with(
    db: &TestDb,
    symbols: &str,
    extra: &[(&str, String)],
) -> tokio_postgres::Client {
    let c = db.client().await;
    let mut env = vec![
        ("DATABASE_URL", db.url.clone()),
        ("TAPEFLOW_DEMO_SYMBOLS", symbols.into()),
        ("TAPEFLOW_DEMO_BACKFILL_DAYS", "1".into()),
        ("TAPEFLOW_DEMO_ALWAYS_OPEN", "false".into()),
        ("TAPEFLOW_DEMO_QUOTES", "false".into()),
        // Whole past sessions only: the same rows at any hour of the day.
        ("TAPEFLOW_DEMO_LIVE", "false".into()),
    ];
    env.extend_from_slice(extra);
    let mut feed = Proc::spawn("tapeflow-feed", &["demo"], &env);
    assert!(feed.wait_exit(Duration::from_secs(180)), "the backfill-only demo feed did not finish");
    let n: i64 = c.query_one("SELECT count(*) FROM tapeflow.ticks", &[]).await.unwrap().get(0);
    assert!(n > 1000, "backfill wrote {n} ticks");
    c
}

/// Polls `sql` (a query returning one boolean) until it is true; after `timeout` panics naming
/// the query, with the rows of `diagnose` (a query returning one text column) when given.
pub async fn wait_until(c: &tokio_postgres::Client, sql: &str, timeout: Duration, diagnose: Option<&str>) {
    let start = Instant::now();
    loop {
        if c.query_one(sql, &[]).await.unwrap().get::<_, bool>(0) {
            return;
        }
        if start.elapsed() > timeout {
            let mut state = Vec::<String>::new();
            if let Some(d) = diagnose {
                state = c.query(d, &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
            }
            panic!("timed out after {timeout:?} waiting for: {sql}\n{state:#?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The environment of a `tapeflow-exec` under test: no metrics port, a fast sweep, plus `extra`.
pub fn exec_env(db: &TestDb, extra: &[(&str, String)]) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = vec![
        ("DATABASE_URL", db.url.clone()),
        ("TAPEFLOW_EXEC_METRICS_ADDR", "off".into()),
        ("TAPEFLOW_EXEC_SWEEP_MS", "50".into()),
    ];
    for (k, v) in extra {
        let k: &'static str = Box::leak(k.to_string().into_boxed_str());
        env.retain(|(e, _)| *e != k);
        env.push((k, v.clone()));
    }
    env
}
