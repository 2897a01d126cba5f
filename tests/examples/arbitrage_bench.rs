//! `bench/run.sh arbitrage`, latency part: a book update → its opportunity announced on
//! `tapeflow_arbitrage`, among the synthetic markets bench/arbitrage.sql loaded into
//! `BENCH_ARB_URL`, beside baselines measured in the same run.
//!
//! 1. Announced: the NO book of a market with an opportunity is replaced (autocommit UPDATE, as
//!    the feed writes it), alternating between two depths so that every write changes the
//!    opportunity's size; measured from the moment the UPDATE is sent to the moment the
//!    `updated` notification for that market reaches a LISTEN client (`tapeflow_db::listen`).
//!    Every write refreshes one market; the other markets' books are only there.
//! 2. The same writes with the arbitrage trigger off (`arbitrage_settings.enabled = false`):
//!    what the book write costs alone (sent → acknowledged).
//! 3. A bare `SELECT pg_notify(…)` sent → received by the same LISTEN client.
//!
//! `BENCH_ARB_UPDATES` (default 1000) writes each, after 20 not counted.

use std::time::{Duration, Instant};
use tapeflow_db::ListenEvent;
use tokio::sync::mpsc::Receiver;

const WARMUP: usize = 20;
// Fee-free, priced 0.012 a pair under 1 (bench/arbitrage.sql: k = 20).
const MARKET: &str = "bench-20";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn summary(name: &str, mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let (p50, p99, max) = (pct(&v, 0.5), pct(&v, 0.99), *v.last().unwrap());
    println!("{name:<52} {:>6} {p50:>9.3} {p99:>9.3} {max:>9.3}", v.len());
    (p50, p99)
}

async fn wait_for(events: &mut Receiver<ListenEvent>, channel: &str, pred: impl Fn(&str) -> bool) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(ListenEvent::Notification { channel: c, payload })) if c == channel && pred(&payload) => {
                return
            }
            Ok(Some(_)) => continue,
            _ => panic!("no notification on {channel} within 10 s"),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::var("BENCH_ARB_URL").expect("BENCH_ARB_URL: the database bench/arbitrage.sql loaded");
    let n: usize = std::env::var("BENCH_ARB_UPDATES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let c = tapeflow_db::connect(&url, Duration::from_secs(10)).await.expect("connect");
    let markets: i64 =
        c.query_one("SELECT count(*) FROM tapeflow.polymarket_markets", &[]).await.unwrap().get(0);
    c.batch_execute("UPDATE tapeflow.arbitrage_settings SET enabled = true, min_edge = 0").await.unwrap();
    let mut events = tapeflow_db::listen(url.clone(), vec!["tapeflow_arbitrage".into(), "bench_ping".into()]);
    assert!(matches!(events.recv().await, Some(ListenEvent::Connected)));

    // The market's NO book: its asks' first level alternates between two sizes, so the
    // opportunity (YES asks + these) changes size on every write.
    let no = format!("{MARKET}-1");
    let write = "UPDATE tapeflow.polymarket_books
                 SET ask_sizes = ask_sizes[1:0] || ($2::numeric) || ask_sizes[2:], updated_at = now()
                 WHERE token_id = $1";
    let size = |i: usize| rust_decimal::Decimal::from(if i.is_multiple_of(2) { 40 } else { 60 });
    // A size that neither alternate has, announced (or not) before measuring.
    c.execute(write, &[&no, &rust_decimal::Decimal::from(50)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    while events.try_recv().is_ok() {}
    let mut announced = Vec::with_capacity(n);
    for i in 0..WARMUP + n {
        let t0 = Instant::now();
        c.execute(write, &[&no, &size(i)]).await.unwrap();
        wait_for(&mut events, "tapeflow_arbitrage", |p| {
            let v: serde_json::Value = serde_json::from_str(p).unwrap_or_default();
            v["market_key"] == MARKET && v["event"] == "updated"
        })
        .await;
        if i >= WARMUP {
            announced.push(ms(t0.elapsed()));
        }
    }

    c.batch_execute("UPDATE tapeflow.arbitrage_settings SET enabled = false").await.unwrap();
    let mut alone = Vec::with_capacity(n);
    for i in 0..WARMUP + n {
        let t0 = Instant::now();
        c.execute(write, &[&no, &size(i)]).await.unwrap();
        if i >= WARMUP {
            alone.push(ms(t0.elapsed()));
        }
    }
    c.batch_execute("UPDATE tapeflow.arbitrage_settings SET enabled = true").await.unwrap();

    let mut ping = Vec::with_capacity(n);
    for i in 0..WARMUP + n {
        let t0 = Instant::now();
        c.execute("SELECT pg_notify('bench_ping', $1)", &[&i.to_string()]).await.unwrap();
        let key = i.to_string();
        wait_for(&mut events, "bench_ping", |p| p == key).await;
        if i >= WARMUP {
            ping.push(ms(t0.elapsed()));
        }
    }

    println!("\nBook update -> opportunity announced ({markets} markets in the database; ms)");
    println!("{:<52} {:>6} {:>9} {:>9} {:>9}", "", "n", "p50", "p99", "max");
    let (a50, a99) = summary("book UPDATE -> 'updated' on tapeflow_arbitrage", announced);
    let (w50, w99) = summary("the same UPDATE, arbitrage trigger off (acknowledged)", alone);
    let (p50, p99) = summary("bare pg_notify -> received", ping);
    println!(
        "ratios: announced / write alone p50 {:.2}, p99 {:.2}; announced / bare NOTIFY p50 {:.2}, p99 {:.2}",
        a50 / w50,
        a99 / w99,
        a50 / p50,
        a99 / p99
    );
}
