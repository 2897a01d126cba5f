//! `bench/run.sh sse`: the SSE fan-out of the release `tapeflow-web` with many clients,
//! against the same events delivered to a single client, in the same run.
//!
//! A logged-in session opens `BENCH_SSE_CLIENTS` (500) `/events` streams (plus, in the
//! baseline, one alone); `BENCH_SSE_EVENTS` (300) notifications are sent one every
//! `BENCH_SSE_INTERVAL_MS` (20) ms with `pg_notify` on `tapeflow_risk`, each carrying its
//! sequence number and ~`BENCH_SSE_PAYLOAD` (200) bytes. Latency is from the moment this
//! process sends the `pg_notify` to the moment a client has parsed the event, both on this
//! process's monotonic clock; so it includes PostgreSQL's NOTIFY, the web app's LISTEN, the
//! broadcast and the HTTP write, and (with many clients) this process's own reading of
//! every stream on the same two cores. Every client must get every event, in order.
//!
//! Needs the project cluster (`make db`) and `cargo build --release --bin tapeflow-web`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tapeflow_tests::{add_user, free_port, login, spawn_web, SseReader, TestDb};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

struct Dist {
    n: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

fn dist(mut v: Vec<f64>) -> Dist {
    v.sort_by(|a, b| a.total_cmp(b));
    Dist { n: v.len(), p50: pct(&v, 0.5), p99: pct(&v, 0.99), max: *v.last().unwrap() }
}

/// Send instants by sequence number.
type Sent = Arc<Mutex<Vec<Option<Instant>>>>;

/// One client: reads `events` bench events, returns their latencies in ms (in order, none lost).
async fn client(mut sse: SseReader, events: usize, sent: Sent, run: u64) -> Vec<f64> {
    let mut out = Vec::with_capacity(events);
    let mut next = 0usize;
    while next < events {
        let Some((name, data)) = sse.next(Duration::from_secs(30)).await else {
            panic!("a client got {next} of {events} events");
        };
        let got = Instant::now();
        if name != "risk" {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&data).unwrap();
        if v["run"].as_u64() != Some(run) {
            continue;
        }
        let n = v["n"].as_u64().unwrap() as usize;
        assert_eq!(n, next, "events in order, none lost");
        let at = sent.lock().unwrap()[n].expect("sent before received");
        out.push((got - at).as_secs_f64() * 1e3);
        next += 1;
    }
    out
}

/// The web app under test and how events are sent.
struct Setup {
    base: String,
    http: reqwest::Client,
    pg: tokio_postgres::Client,
    interval: Duration,
    payload: String,
}

/// Opens `clients` streams, sends `events` events, returns every client's latencies and how
/// long opening the streams took.
async fn round(s: &Setup, clients: usize, events: usize, run: u64) -> (Dist, Duration) {
    let Setup { base, http, pg, interval, payload } = s;
    let sent: Sent = Arc::new(Mutex::new(vec![None; events]));
    let connect_start = Instant::now();
    let mut readers = Vec::with_capacity(clients);
    for _ in 0..clients {
        readers.push(SseReader::connect_with(http, &format!("{base}/events")).await);
    }
    let connected = connect_start.elapsed();
    // Let every stream settle before the first event.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tasks: Vec<_> =
        readers.into_iter().map(|r| tokio::spawn(client(r, events, sent.clone(), run))).collect();
    let mut tick = tokio::time::interval(*interval);
    for n in 0..events {
        tick.tick().await;
        let body = format!("{{\"run\": {run}, \"n\": {n}, \"pad\": \"{payload}\"}}");
        sent.lock().unwrap()[n] = Some(Instant::now());
        pg.execute("SELECT pg_notify('tapeflow_risk', $1)", &[&body]).await.unwrap();
    }
    let mut all = Vec::with_capacity(clients * events);
    for t in tasks {
        all.extend(t.await.expect("a client failed"));
    }
    (dist(all), connected)
}

async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let clients = env_usize("BENCH_SSE_CLIENTS", 500);
    let events = env_usize("BENCH_SSE_EVENTS", 300);
    let interval = Duration::from_millis(env_usize("BENCH_SSE_INTERVAL_MS", 20) as u64);
    let payload = "x".repeat(env_usize("BENCH_SSE_PAYLOAD", 200));
    let db = TestDb::create("ssebench", false).await;
    add_user(&db, "bench", "viewer", "bench-password");
    let (_web, base) = spawn_web(
        &db,
        free_port(),
        &[("TAPEFLOW_WEB_MAX_SSE", (clients + 10).to_string()), ("RUST_LOG", "warn".into())],
    )
    .await;
    let http = login(&base, "bench", "bench-password").await;
    let setup = Setup { base: base.clone(), http, pg: db.client().await, interval, payload: payload.clone() };

    // Warm-up (not counted): connections, the LISTEN, the session.
    round(&setup, 1, 20, 0).await;
    let (single, _) = round(&setup, 1, events, 1).await;
    let (many, connected) = round(&setup, clients, events, 2).await;
    let dropped = metric(&base, "tapeflow_web_slow_clients_dropped_total{reason=\"lagged\"}").await
        + metric(&base, "tapeflow_web_slow_clients_dropped_total{reason=\"write_stalled\"}").await;

    println!();
    println!(
        "SSE fan-out of tapeflow-web (release): {events} events, one every {} ms, ~{} bytes each; \
         pg_notify sent -> event parsed by the client",
        interval.as_millis(),
        payload.len() + 30
    );
    println!("{:<40} {:>10} {:>9} {:>9} {:>9}", "", "deliveries", "p50 ms", "p99 ms", "max ms");
    let row = |what: &str, d: &Dist| {
        println!("{what:<40} {:>10} {:>9.3} {:>9.3} {:>9.3}", d.n, d.p50, d.p99, d.max)
    };
    row("1 client (baseline)", &single);
    row(&format!("{clients} clients"), &many);
    println!(
        "{clients} clients vs 1: p50 x{:.2}, p99 x{:.2}; {clients} streams opened in {:.2} s; \
         every client got every event in order; slow clients dropped: {dropped}",
        many.p50 / single.p50,
        many.p99 / single.p99,
        connected.as_secs_f64()
    );
}
