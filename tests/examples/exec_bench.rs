//! `bench/run.sh exec`: the release `tapeflow-exec` with the Alpaca broker against the fake
//! Alpaca server (in this process), next to a bare LISTEN/NOTIFY round trip on the same
//! cluster. Every signal is an entry on a symbol of its own that no gate refuses.
//!
//! 1. Latency: signals inserted one at a time, each once the previous one's order has been
//!    accepted (or, with `BENCH_EXEC_INTERVAL_MS`, on a fixed schedule of one every that many
//!    ms); measured from the moment the autocommit INSERT is sent (so its own execution and
//!    commit, printed apart, are included) to the fake storing the order of `POST /v2/orders`.
//!    Both instants are on this process's monotonic clock.
//! 2. Throughput: `BENCH_EXEC_SIGNALS` (1000) signals in one INSERT; from its commit until no
//!    signal is `new` or `claimed` (all submitted, or rejected), with a fresh database and
//!    executor.
//! 3. Baseline: `SELECT pg_notify(…)` sent (autocommit) → the notification received by a
//!    LISTEN client (`tapeflow_db::listen`, the executor's), paced the same way, as often.
//!
//! Needs the project cluster (`make db`) and `cargo build --release --bin tapeflow-exec`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tapeflow_db::ListenEvent;
use tapeflow_tests::fake_alpaca::{FakeAlpaca, FakeOptions};
use tapeflow_tests::{exec_env, Proc, TestDb};
use tokio_postgres::Client;

/// Signals sent before measuring (not counted): connections, caches and the executor's
/// LISTEN are up by then.
const WARMUP: usize = 20;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

struct Dist {
    p50: f64,
    p99: f64,
    max: f64,
}

fn dist(mut v: Vec<f64>) -> Dist {
    v.sort_by(f64::total_cmp);
    Dist { p50: pct(&v, 0.50), p99: pct(&v, 0.99), max: *v.last().unwrap() }
}

/// `symbols` symbols trading around the clock at 100 with a fresh trade, a disabled strategy
/// config each allowing 1000 positions, and room for 1000 open positions overall.
async fn setup(db: &TestDb, symbols: usize) -> Client {
    let c = db.client().await;
    c.execute(
        "INSERT INTO tapeflow.symbols (symbol, tick_size, timezone, session_open, session_close)
         SELECT 'BX' || lpad(g::text, 5, '0'), 0.01, 'UTC', '00:00', '00:00' FROM generate_series(1, $1::int) g",
        &[&(symbols as i32)],
    )
    .await
    .unwrap();
    // The strategy's own max_positions is validated to 1..100 on write (validate_params); the
    // bench needs 1000 open entries at once, so the configs are stored past that check. The
    // executor takes the smaller of this and risk_limits.max_positions (at most 1000).
    c.batch_execute(
        "INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
             SELECT now() - interval '30 seconds', symbol, 100, 1, 'B', 't1' FROM tapeflow.symbols;
         ALTER TABLE tapeflow.strategy_configs DISABLE TRIGGER strategy_configs_check;
         INSERT INTO tapeflow.strategy_configs (symbol, enabled, params)
             SELECT symbol, false, '{\"strategy\": {\"max_positions\": 1000}}' FROM tapeflow.symbols;
         ALTER TABLE tapeflow.strategy_configs ENABLE TRIGGER strategy_configs_check;
         UPDATE tapeflow.risk_limits SET signal_ttl = '10 minutes', max_positions = 1000;
         ANALYZE;",
    )
    .await
    .unwrap();
    c
}

const INSERT_ONE: &str = "INSERT INTO tapeflow.signals (bar, symbol, strategy, kind, side, entry, stop, target, reason)
     VALUES (tapeflow.minute(now()) - interval '1 minute', 'BX' || lpad($1::int::text, 5, '0'), 'amt', 'entry', 'buy',
             100, 99, 102, 'bench') RETURNING id";

fn coid(id: i64) -> String {
    format!("tf-{id}-entry")
}

fn start_exec(db: &TestDb, fake: &FakeAlpaca) -> Proc {
    let env = [
        ("TAPEFLOW_BROKER", "alpaca".to_string()),
        ("APCA_API_KEY_ID", fake.key_id.clone()),
        ("APCA_API_SECRET_KEY", fake.secret_key.clone()),
        ("TAPEFLOW_ALPACA_TRADING_URL", fake.base_url.clone()),
        ("TAPEFLOW_ALPACA_STREAM_URL", fake.stream_url.clone()),
        // The production default (exec_env's 50 ms is for tests).
        ("TAPEFLOW_EXEC_SWEEP_MS", "1000".to_string()),
        ("TAPEFLOW_EXEC_METRICS_ADDR", "off".to_string()),
    ];
    Proc::spawn("tapeflow-exec", &[], &exec_env(db, &env))
}

/// Why signals are not where they should be, for a failure's message.
async fn signal_states(c: &Client) -> String {
    c.query(
        "SELECT status || coalesce(' ' || reject_code, '') || coalesce(': ' || error, '') AS s, count(*)
         FROM tapeflow.signals GROUP BY 1 ORDER BY 2 DESC LIMIT 5",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| format!("{} × {}", r.get::<_, i64>(1), r.get::<_, String>(0)))
    .collect::<Vec<_>>()
    .join("; ")
}

/// Warm-up: `WARMUP` signals (symbols 1..=WARMUP) one after another, each waited for; their
/// orders are then cancelled at the broker (`DELETE /v2/orders/{id}`), so that they no longer
/// count as open entries against `max_positions`.
async fn warm_up(c: &Client, fake: &FakeAlpaca) {
    let mut ids = Vec::new();
    for i in 1..=WARMUP as i32 {
        let id: i64 = c.query_one(INSERT_ONE, &[&i]).await.unwrap().get(0);
        if fake.wait_accepted(&coid(id), Duration::from_secs(30)).await.is_none() {
            panic!("warm-up signal {id} never reached the broker: {}", signal_states(c).await);
        }
        ids.push(id);
    }
    wait_settled(c, Duration::from_secs(30)).await;
    let http = reqwest::Client::new();
    for id in &ids {
        let order = fake.order(&coid(*id)).expect("the fake holds the warm-up order");
        let r = http
            .delete(format!("{}/v2/orders/{}", fake.base_url, order["id"].as_str().unwrap()))
            .header("APCA-API-KEY-ID", &fake.key_id)
            .header("APCA-API-SECRET-KEY", &fake.secret_key)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "cancel of a warm-up order: {}", r.status());
    }
    let start = Instant::now();
    loop {
        let open: i64 = c
            .query_one("SELECT count(*) FROM tapeflow.signals WHERE status <> 'cancelled'", &[])
            .await
            .unwrap()
            .get(0);
        if open == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "warm-up orders not cancelled: {}",
            signal_states(c).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Until no signal is `new` or `claimed`.
async fn wait_settled(c: &Client, timeout: Duration) -> Instant {
    let start = Instant::now();
    loop {
        let open: i64 = c
            .query_one("SELECT count(*) FROM tapeflow.signals WHERE status IN ('new', 'claimed')", &[])
            .await
            .unwrap()
            .get(0);
        if open == 0 {
            return Instant::now();
        }
        assert!(
            start.elapsed() < timeout,
            "signals still open after {timeout:?}: {}",
            signal_states(c).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// REST calls the fake received, by method and path (queries cut off).
fn calls(fake: &FakeAlpaca) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in fake.requests() {
        *m.entry(r.split('?').next().unwrap_or("").to_string()).or_insert(0) += 1;
    }
    m
}

fn calls_per_signal(before: &BTreeMap<String, usize>, after: &BTreeMap<String, usize>, n: usize) -> String {
    after
        .iter()
        .map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, d)| *d > 0)
        .map(|(k, d)| format!("{k} {:.2}", d as f64 / n as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The baseline: `n` NOTIFYs, each timed from send to receipt, one after another or on the
/// schedule.
async fn listen_notify(db: &TestDb, n: usize, interval: Option<Duration>) -> Dist {
    let mut listen = tapeflow_db::listen(db.url.clone(), vec!["tapeflow_bench".into()]);
    match listen.recv().await {
        Some(ListenEvent::Connected) => {}
        other => panic!("LISTEN did not connect: {other:?}"),
    }
    let c = db.client().await;
    let mut lat = Vec::with_capacity(n);
    let start = tokio::time::Instant::now();
    for i in 0..(WARMUP + n) {
        if let Some(every) = interval {
            tokio::time::sleep_until(start + every * i as u32).await;
        }
        let payload = i.to_string();
        let t0 = Instant::now();
        c.execute("SELECT pg_notify('tapeflow_bench', $1)", &[&payload]).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), listen.recv()).await;
        let t1 = Instant::now();
        match got {
            Ok(Some(ListenEvent::Notification { payload: p, .. })) if p == payload => {}
            other => panic!("notification {i}: {other:?}"),
        }
        if i >= WARMUP {
            lat.push(ms(t1 - t0));
        }
    }
    dist(lat)
}

/// Milliseconds from `t0` until the broker accepted signal `id`'s order.
async fn accepted_after(fake: &FakeAlpaca, c: &Client, id: i64, t0: Instant) -> f64 {
    match fake.wait_accepted(&coid(id), Duration::from_secs(60)).await {
        Some(t) => ms(t.saturating_duration_since(t0)),
        None => panic!("signal {id} never reached the broker: {}", signal_states(c).await),
    }
}

struct Latency {
    accepted: Dist,
    insert: Dist,
    baseline: Dist,
    calls: String,
    first_half_p50: f64,
    second_half_p50: f64,
}

async fn latency(n: usize, interval: Option<Duration>) -> Latency {
    let db = TestDb::create("bench_exec_latency", false).await;
    let c = setup(&db, WARMUP + n).await;
    let baseline = listen_notify(&db, n, interval).await;
    let fake = FakeAlpaca::start(FakeOptions::default()).await;
    let _exec = start_exec(&db, &fake);
    assert!(
        fake.wait_listening(1, Duration::from_secs(20)).await,
        "the executor never listened to trade_updates"
    );
    warm_up(&c, &fake).await;
    let calls_before = calls(&fake);

    let mut sent = Vec::with_capacity(n);
    let mut insert = Vec::with_capacity(n);
    let mut lat = Vec::with_capacity(n);
    let start = tokio::time::Instant::now();
    for i in 0..n {
        if let Some(every) = interval {
            tokio::time::sleep_until(start + every * i as u32).await;
        }
        let t0 = Instant::now();
        let id: i64 = c.query_one(INSERT_ONE, &[&((WARMUP + 1 + i) as i32)]).await.unwrap().get(0);
        insert.push(ms(t0.elapsed()));
        if interval.is_none() {
            lat.push(accepted_after(&fake, &c, id, t0).await);
        }
        sent.push((id, t0));
    }
    if interval.is_some() {
        for &(id, t0) in &sent {
            lat.push(accepted_after(&fake, &c, id, t0).await);
        }
    }
    wait_settled(&c, Duration::from_secs(60)).await;
    let half = n / 2;
    Latency {
        first_half_p50: dist(lat[..half.max(1)].to_vec()).p50,
        second_half_p50: dist(lat[half..].to_vec()).p50,
        accepted: dist(lat),
        insert: dist(insert),
        baseline,
        calls: calls_per_signal(&calls_before, &calls(&fake), n),
    }
}

struct Throughput {
    seconds: f64,
    insert_ms: f64,
    last_accept_s: f64,
    rejected: i64,
    /// Orders accepted per second over the first and the last tenth of the burst.
    first_tenth_rate: f64,
    last_tenth_rate: f64,
}

async fn throughput(n: usize) -> Throughput {
    let db = TestDb::create("bench_exec_throughput", false).await;
    let c = setup(&db, WARMUP + n).await;
    let fake = FakeAlpaca::start(FakeOptions::default()).await;
    let _exec = start_exec(&db, &fake);
    assert!(
        fake.wait_listening(1, Duration::from_secs(20)).await,
        "the executor never listened to trade_updates"
    );
    warm_up(&c, &fake).await;
    let first: i64 = c.query_one("SELECT max(id) + 1 FROM tapeflow.signals", &[]).await.unwrap().get(0);
    let t0 = Instant::now();
    c.execute(
        "INSERT INTO tapeflow.signals (bar, symbol, strategy, kind, side, entry, stop, target, reason)
         SELECT tapeflow.minute(now()) - interval '1 minute', 'BX' || lpad(g::text, 5, '0'), 'amt', 'entry', 'buy',
                100, 99, 102, 'bench'
         FROM generate_series($1::int, $2::int) g",
        &[&((WARMUP + 1) as i32), &((WARMUP + n) as i32)],
    )
    .await
    .unwrap();
    let committed = Instant::now();
    let done = wait_settled(&c, Duration::from_secs(300)).await;
    let r = c
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'rejected'), count(*) FILTER (WHERE status = 'submitted'), array_agg(id)
             FROM tapeflow.signals WHERE id >= $1",
            &[&first],
        )
        .await
        .unwrap();
    let (rejected, submitted, ids): (i64, i64, Vec<i64>) = (r.get(0), r.get(1), r.get(2));
    assert_eq!(
        rejected + submitted,
        n as i64,
        "signals neither submitted nor rejected: {}",
        signal_states(&c).await
    );
    let accepted = fake.accepted_at();
    let mut times: Vec<Instant> = ids.iter().filter_map(|id| accepted.get(&coid(*id))).copied().collect();
    times.sort();
    let last = times.last().copied().unwrap_or(committed);
    let tenth = (times.len() / 10).max(1);
    let rate = |a: Instant, b: Instant| tenth as f64 / b.saturating_duration_since(a).as_secs_f64();
    let (first_tenth_rate, last_tenth_rate) = if times.len() > tenth {
        (rate(committed, times[tenth - 1]), rate(times[times.len() - 1 - tenth], last))
    } else {
        (f64::NAN, f64::NAN)
    };
    Throughput {
        seconds: (done - committed).as_secs_f64(),
        insert_ms: ms(committed - t0),
        last_accept_s: last.saturating_duration_since(committed).as_secs_f64(),
        rejected,
        first_tenth_rate,
        last_tenth_rate,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_usize("BENCH_EXEC_SIGNALS", 1000).max(2);
    // 0 (the default): each signal inserted once the previous one's order is accepted.
    let interval = match env_usize("BENCH_EXEC_INTERVAL_MS", 0) {
        0 => None,
        every => Some(Duration::from_millis(every as u64)),
    };
    let pace = match interval {
        None => "one after another, each once the previous order is accepted".to_string(),
        Some(every) => format!("one every {} ms", every.as_millis()),
    };
    tapeflow_tests::binary("tapeflow-exec"); // fails early, naming the build to run
    let l = latency(n, interval).await;
    let t = throughput(n).await;
    let rate = n as f64 / t.seconds;
    println!();
    println!(
        "tapeflow-exec (release, Alpaca broker against the fake Alpaca), {n} signals, each its own symbol"
    );
    println!("{:<58} {:>9} {:>9} {:>9}", "", "p50 ms", "p99 ms", "max ms");
    let row = |what: &str, d: &Dist| println!("{what:<58} {:>9.3} {:>9.3} {:>9.3}", d.p50, d.p99, d.max);
    println!("signals inserted {pace}");
    row("signal INSERT sent → order accepted by the broker", &l.accepted);
    row("  of which the INSERT's own round trip (commit)", &l.insert);
    row("baseline: NOTIFY sent → received by a LISTEN client", &l.baseline);
    println!(
        "{:<58} {:>8.1}× {:>8.1}×",
        "  executor / baseline",
        l.accepted.p50 / l.baseline.p50,
        l.accepted.p99 / l.baseline.p99
    );
    println!(
        "  p50 of the first / second half of the signals: {:.3} / {:.3} ms",
        l.first_half_p50, l.second_half_p50
    );
    println!("  broker REST calls per signal: {}", l.calls);
    println!(
        "burst: {n} signals in one INSERT ({:.1} ms), all settled {:.3} s after its commit → {rate:.0} signals/s \
         (last order accepted at {:.3} s; {} rejected)",
        t.insert_ms, t.seconds, t.last_accept_s, t.rejected
    );
    println!(
        "  orders accepted per second over the first / last tenth of the burst: {:.0} / {:.0}",
        t.first_tenth_rate, t.last_tenth_rate
    );
    println!(
        "exec: insert→accepted p50 {:.2} ms p99 {:.2} ms | throughput {rate:.0} signals/s | LISTEN/NOTIFY p50 {:.2} ms p99 {:.2} ms (ratio p50 {:.1}×)",
        l.accepted.p50,
        l.accepted.p99,
        l.baseline.p50,
        l.baseline.p99,
        l.accepted.p50 / l.baseline.p50
    );
}
