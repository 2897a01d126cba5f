//! End to end with the fake venue, every daemon real: the fake Gamma lists three binary markets
//! with a 4 % taker fee; `tapeflow-feed run` (provider `polymarket`) discovers them, makes
//! their tokens symbols and streams their books from the fake CLOB market channel into
//! `tapeflow.polymarket_books`; a `price_change` opens an opportunity in
//! `tapeflow.arbitrage_opportunities` (the database's trigger), announced on
//! `tapeflow_arbitrage`; `tapeflow-exec` (paper, its default) trades it, each leg walking the
//! streamed depth and paying shares × rate × p × (1 − p) per level. Then leg risk: while the
//! executor is paused (SIGSTOP: a slow executor), a second market's opportunity opens and its NO depth
//! is taken away again; the late paper trade fills YES only, kills NO and sells the YES back
//! into the bids, the loss recorded; `tapeflow.arbitrage_report` agrees with the trade rows.
//! Then held leg risk across a restart: with `leg_risk = 'hold'` a third market's vanished
//! opportunity is traded by the next executor, its YES kept and marked against the bids, and
//! settled by the venue's `market_resolved`, as are the first market's pairs.
//!
//! Every expected figure is computed here from the levels the fake was given, never typed in.

use std::io::Write;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rust_decimal::Decimal;
use serde_json::Value;
use tapeflow_tests::fake_polymarket::{FakeMarket, FakePolymarket};
use tapeflow_tests::*;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

const WAIT: Duration = Duration::from_secs(30);

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// (price, size) levels as the test gives them to the fake; best first when used for walks.
type Levels = [(&'static str, &'static str)];

fn levels(l: &Levels) -> Vec<(Decimal, Decimal)> {
    l.iter().map(|(p, s)| (d(p), d(s))).collect()
}

/// The taker fee of one share at price p (exponent 1).
fn unit_fee(rate: Decimal, p: Decimal) -> Decimal {
    rate * p * (Decimal::ONE - p)
}

/// What taking `shares` from `book` (best first) costs or fetches: Σ p × q, Σ fee, levels taken.
#[derive(Debug, Default)]
struct Walk {
    notional: Decimal,
    fee: Decimal,
    taken: Vec<(Decimal, Decimal)>,
}

fn walk(book: &[(Decimal, Decimal)], shares: Decimal, rate: Decimal) -> Walk {
    let mut w = Walk::default();
    let mut left = shares;
    for &(p, s) in book {
        if left.is_zero() {
            break;
        }
        let q = left.min(s);
        w.notional += p * q;
        w.fee += q * unit_fee(rate, p);
        w.taken.push((p, q));
        left -= q;
    }
    assert!(left.is_zero(), "the book has fewer than {shares} shares");
    w
}

/// The pairs worth buying: walk both ask books together while a pair (both prices with their
/// fees) costs less than the payout of 1. The cost of a share, p + rate × p(1 − p), rises with
/// p, so the first pair that costs 1 or more ends it.
fn pairs(yes: &[(Decimal, Decimal)], no: &[(Decimal, Decimal)], rate: Decimal) -> Decimal {
    let (mut i, mut j) = (0, 0);
    let (mut ry, mut rn) = (yes[0].1, no[0].1);
    let mut size = Decimal::ZERO;
    while i < yes.len() && j < no.len() {
        let (py, pn) = (yes[i].0, no[j].0);
        if py + unit_fee(rate, py) + pn + unit_fee(rate, pn) >= Decimal::ONE {
            break;
        }
        let q = ry.min(rn);
        size += q;
        ry -= q;
        rn -= q;
        if ry.is_zero() {
            i += 1;
            ry = yes.get(i).map_or(Decimal::ZERO, |l| l.1);
        }
        if rn.is_zero() {
            j += 1;
            rn = no.get(j).map_or(Decimal::ZERO, |l| l.1);
        }
    }
    size
}

/// A synthetic binary market of the politics tag with the 4 % fee schedule, exponent 1.
fn fee_market(n: u32) -> FakeMarket {
    FakeMarket {
        fee_schedule: Some(("0.04".into(), 1)),
        fees_enabled: true,
        ..FakeMarket::synthetic(n, ("2", "politics"))
    }
}

fn feed_env(db: &TestDb, fake: &FakePolymarket) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.url.clone()),
        ("TAPEFLOW_POLYMARKET_GAMMA_URL", fake.gamma_url.clone()),
        ("TAPEFLOW_POLYMARKET_WS_URL", fake.ws_url.clone()),
        ("TAPEFLOW_POLYMARKET_TAGS", "politics".into()),
        ("TAPEFLOW_POLYMARKET_REFRESH_SECS", "600".into()),
        ("TAPEFLOW_POLYMARKET_PING_MS", "1000".into()),
        ("TAPEFLOW_POLYMARKET_BOOK_MS", "50".into()),
        ("TAPEFLOW_POLYMARKET_RECONNECT_MIN_MS", "100".into()),
        ("TAPEFLOW_POLYMARKET_RECONNECT_MAX_MS", "500".into()),
        ("TAPEFLOW_FEED_RELOAD_SECS", "1".into()),
        ("TAPEFLOW_FEED_STATUS_MS", "200".into()),
        ("TAPEFLOW_FEED_RESTART_SECS", "1".into()),
        ("TAPEFLOW_FEED_METRICS_ADDR", "off".into()),
        ("RUST_LOG", "info".into()),
    ]
}

const STATE: &str = "SELECT format('opp %s %s size %s edge %s closed %s', o.id, o.market_key, o.size, o.edge, o.closed_at IS NOT NULL)
    FROM tapeflow.arbitrage_opportunities o
    UNION ALL
    SELECT format('trade %s opp %s %s %s matched %s pnl %s loss %s | %s', t.id, t.opportunity_id, t.status,
        coalesce(t.reject_code, ''), t.matched_size, t.pnl, t.leg_risk_loss,
        (SELECT string_agg(l.client_order_id || ' ' || l.status || ' ' || l.filled_size, ', ' ORDER BY l.id)
         FROM tapeflow.arbitrage_legs l WHERE l.trade_id = t.id))
    FROM tapeflow.arbitrage_trades t
    UNION ALL
    SELECT format('book %s bid %s ask %s', token_id, best_bid, best_ask) FROM tapeflow.polymarket_books";

async fn wait(c: &tokio_postgres::Client, sql: &str) {
    wait_until(c, sql, WAIT, Some(STATE)).await
}

/// A LISTEN client of `tapeflow_arbitrage`: the announcements' payloads, in order.
async fn listen(db: &TestDb) -> (tokio_postgres::Client, mpsc::UnboundedReceiver<String>) {
    let (client, mut conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = stream.next().await {
            if let AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_string());
            }
        }
    });
    client.batch_execute("LISTEN tapeflow_arbitrage").await.unwrap();
    (client, rx)
}

/// The next announcement of `event` for `condition`, skipping others (limits, other markets).
async fn announced(
    rx: &mut mpsc::UnboundedReceiver<String>,
    event: &str,
    condition: &str,
) -> (String, Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let payload = tokio::time::timeout(left, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {event} announcement of {condition} within {WAIT:?}"))
            .expect("the LISTEN connection ended");
        let v: Value = serde_json::from_str(&payload).unwrap();
        if v["event"] == event && v["condition_id"] == condition {
            return (payload, v);
        }
    }
}

/// One leg as stored: status, filled size, notional, fee, the levels its paper fill took.
async fn leg(
    c: &tokio_postgres::Client,
    coid: &str,
) -> (String, Decimal, Decimal, Decimal, Vec<(Decimal, Decimal)>) {
    let r = c
        .query_one(
            "SELECT status, filled_size, notional, fee, raw FROM tapeflow.arbitrage_legs WHERE client_order_id = $1",
            &[&coid],
        )
        .await
        .unwrap_or_else(|e| panic!("leg {coid}: {e}"));
    let raw: Value = r.get(4);
    let taken = raw["levels"]
        .as_array()
        .map(|a| {
            a.iter().map(|l| (d(l["price"].as_str().unwrap()), d(l["size"].as_str().unwrap()))).collect()
        })
        .unwrap_or_default();
    (r.get(0), r.get(1), r.get(2), r.get(3), taken)
}

fn signal(p: &Proc, sig: &str) {
    let ok = std::process::Command::new("kill").args([sig, &p.child.id().to_string()]).status().unwrap();
    assert!(ok.success(), "kill {sig} {}", p.child.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_streamed_detected_paper_traded_unwound_and_settled() {
    let db = TestDb::create("pm_e2e", false).await;
    let c = db.client().await;
    let (_listener, mut announcements) = listen(&db).await;
    let rate = d("0.04");

    // The venue. Market A: YES asks 0.45 × 40, 0.46 × 100; NO asks only 0.56 × 100 (a pair
    // costs more than 1 with fees). Market B, for leg risk: YES asks 0.40 × 50 with bids 0.38 × 20
    // and 0.36 × 100; NO asks 0.60 × 50. Bids sum below 1: nothing to sell either.
    let fake = FakePolymarket::start().await;
    let (a, b, h) = (fee_market(41), fee_market(42), fee_market(43));
    fake.add_market(a.clone());
    fake.add_market(b.clone());
    fake.add_market(h.clone());
    const A_YES_ASKS: &Levels = &[("0.45", "40"), ("0.46", "100")];
    const A_NO_ASKS: &Levels = &[("0.50", "60"), ("0.56", "100")];
    const B_YES_ASKS: &Levels = &[("0.40", "50")];
    const B_YES_BIDS: &Levels = &[("0.38", "20"), ("0.36", "100")];
    const B_NO_ASKS: &Levels = &[("0.55", "30"), ("0.60", "50")];
    // Market H, for held leg risk: YES asks 0.30 × 25, bids 0.28 × 10 and 0.25 × 100; NO asks 0.70 × 40.
    const H_YES_ASKS: &Levels = &[("0.30", "25")];
    const H_YES_BIDS: &Levels = &[("0.28", "10"), ("0.25", "100")];
    const H_NO_ASKS: &Levels = &[("0.65", "25"), ("0.70", "40")];
    fake.set_book(&a.tokens[0], &[("0.44", "50")], A_YES_ASKS);
    fake.set_book(&a.tokens[1], &[("0.49", "50")], &A_NO_ASKS[1..]);
    fake.set_book(&b.tokens[0], B_YES_BIDS, B_YES_ASKS);
    fake.set_book(&b.tokens[1], &[("0.50", "10")], &B_NO_ASKS[1..]);
    fake.set_book(&h.tokens[0], H_YES_BIDS, H_YES_ASKS);
    fake.set_book(&h.tokens[1], &[("0.60", "10")], &H_NO_ASKS[1..]);

    let mut exec = Proc::spawn("tapeflow-exec", &[], &exec_env(&db, &[]));
    let _feed = Proc::spawn("tapeflow-feed", &["run"], &feed_env(&db, &fake));

    // Discovery: both markets with their fee parameters, each token a prediction symbol.
    wait(
        &c,
        &format!(
            "SELECT count(*) = 3 FROM tapeflow.polymarket_markets WHERE condition_id IN ('{}', '{}', '{}')
               AND fee_rate = 0.04 AND fee_exponent = 1 AND watched AND NOT neg_risk",
            a.condition_id, b.condition_id, h.condition_id
        ),
    )
    .await;
    wait(
        &c,
        "SELECT count(*) = 6 FROM tapeflow.polymarket_tokens t JOIN tapeflow.symbols s ON s.symbol = t.symbol
         WHERE s.asset_class = 'prediction' AND s.provider = 'polymarket' AND s.provider_ref = t.token_id",
    )
    .await;
    // Streaming: the six books stored; no pair is cheap enough yet.
    let top = |t: &str, bid: &str, ask: &str| {
        format!(
            "SELECT coalesce((SELECT best_bid = {bid} AND best_ask = {ask} FROM tapeflow.polymarket_books WHERE token_id = '{t}'), false)"
        )
    };
    wait(&c, &top(&a.tokens[0], "0.44", "0.45")).await;
    wait(&c, &top(&a.tokens[1], "0.49", "0.56")).await;
    wait(&c, &top(&b.tokens[0], "0.38", "0.40")).await;
    wait(&c, &top(&b.tokens[1], "0.50", "0.60")).await;
    wait(&c, &top(&h.tokens[0], "0.28", "0.30")).await;
    wait(&c, &top(&h.tokens[1], "0.60", "0.70")).await;
    let opened: i64 =
        c.query_one("SELECT count(*) FROM tapeflow.arbitrage_opportunities", &[]).await.unwrap().get(0);
    assert_eq!(opened, 0, "no opportunity before the NO ask arrives");

    // The dashboard: tapeflow-web with a logged-in SSE client, as the arbitrage page has.
    let (_web, base, http) = start_web(&db).await;
    let mut sse = SseReader::connect_with(&http, &format!("{base}/events")).await;

    // A price_change adds NO asks 0.50 × 60: the trigger opens market A's opportunity.
    let sent = Instant::now();
    fake.price_change(&[(&a.tokens[1], "SELL", "0.50", "60")]);
    let (payload, ann) = announced(&mut announcements, "opened", &a.condition_id).await;
    let detect_ms = sent.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(ann["kind"], "buy_both");
    let opp_a: i64 = ann["id"].as_i64().unwrap();
    let (ya, na) = (levels(A_YES_ASKS), levels(A_NO_ASKS));
    let size_a = pairs(&ya, &na, rate);
    let (wy, wn) = (walk(&ya, size_a, rate), walk(&na, size_a, rate));
    let profit_a = size_a - wy.notional - wy.fee - wn.notional - wn.fee;
    assert!(size_a > Decimal::ZERO && profit_a > Decimal::ZERO, "{size_a} {profit_a}");
    // The row as announced, and as the books imply.
    let o = c
        .query_one(
            "SELECT size, profit, notional, fees, edge, ($2::text::json->>'size')::numeric = size AND ($2::text::json->>'edge')::numeric = edge,
                    legs->0->>'token_id', (legs->0->>'worst_price')::numeric, legs->1->>'token_id', (legs->1->>'worst_price')::numeric
             FROM tapeflow.arbitrage_opportunities WHERE id = $1",
            &[&opp_a, &payload],
        )
        .await
        .unwrap();
    assert_eq!(o.get::<_, Decimal>(0), size_a);
    assert_eq!(o.get::<_, Decimal>(1), profit_a);
    assert_eq!(o.get::<_, Decimal>(2), wy.notional + wn.notional);
    assert_eq!(o.get::<_, Decimal>(3), wy.fee + wn.fee);
    let edge_a: Decimal = o.get(4);
    assert!((edge_a * size_a - profit_a).abs() < d("0.000000001"), "edge {edge_a}");
    assert!(o.get::<_, bool>(5), "the announcement carries the row's size and edge: {payload}");
    assert_eq!(
        (o.get::<_, String>(6), o.get::<_, Decimal>(7)),
        (a.tokens[0].clone(), wy.taken.last().unwrap().0)
    );
    assert_eq!(
        (o.get::<_, String>(8), o.get::<_, Decimal>(9)),
        (a.tokens[1].clone(), wn.taken.last().unwrap().0)
    );

    // The paper trade: both legs walk the streamed depth and pay the fee on every level.
    wait(&c, &format!("SELECT EXISTS (SELECT 1 FROM tapeflow.arbitrage_trades WHERE opportunity_id = {opp_a} AND status = 'filled')")).await;
    for (i, w) in [&wy, &wn].into_iter().enumerate() {
        let l = leg(&c, &format!("arb-{opp_a}-paper-{i}-entry")).await;
        assert_eq!(l, ("filled".into(), size_a, w.notional, w.fee, w.taken.clone()), "leg {i}");
    }
    let t = c
        .query_one(
            "SELECT t.matched_size, t.notional, t.fees, t.pnl, t.leg_risk_loss,
                    extract(epoch FROM t.created_at - o.first_seen)::float8 * 1000
             FROM tapeflow.arbitrage_trades t JOIN tapeflow.arbitrage_opportunities o ON o.id = t.opportunity_id
             WHERE t.opportunity_id = $1 AND t.mode = 'paper'",
            &[&opp_a],
        )
        .await
        .unwrap();
    assert_eq!(
        (t.get::<_, Decimal>(0), t.get::<_, Decimal>(1), t.get::<_, Decimal>(2)),
        (size_a, wy.notional + wn.notional, wy.fee + wn.fee)
    );
    assert_eq!((t.get::<_, Option<Decimal>>(3), t.get::<_, Decimal>(4)), (Some(profit_a), Decimal::ZERO));
    let trade_ms: f64 = t.get(5);

    // The dashboard saw it live: the opening reached the browser's event stream, and the
    // arbitrage API shows the streamed books' sums, the opportunity and its paper trade as stored.
    let seen = sse
        .wait_for("arbitrage", Duration::from_secs(10), |v| {
            v["event"] == "opened" && v["id"].as_i64() == Some(opp_a)
        })
        .await;
    assert!(seen.is_some(), "no arbitrage SSE event for opportunity {opp_a}");
    let get = |path: &str| {
        let (http, url) = (http.clone(), format!("{base}{path}"));
        async move {
            http.get(url).send().await.unwrap().error_for_status().unwrap().json::<Value>().await.unwrap()
        }
    };
    let opps = get("/api/arbitrage/opportunities").await;
    let shown =
        opps.as_array().unwrap().iter().find(|o| o["id"].as_i64() == Some(opp_a)).expect("opportunity shown");
    assert_eq!(d(shown["size"].as_str().unwrap()), size_a);
    let shown_trade = &shown["trades"][0];
    assert_eq!(
        (shown_trade["mode"].as_str(), shown_trade["status"].as_str()),
        (Some("paper"), Some("filled"))
    );
    assert_eq!(d(shown_trade["pnl"].as_str().unwrap()), profit_a);
    let markets = get("/api/arbitrage/markets").await;
    let stored_sum: Decimal = c
        .query_one(
            "SELECT sum(best_ask) FROM tapeflow.polymarket_books WHERE condition_id = $1",
            &[&a.condition_id],
        )
        .await
        .unwrap()
        .get(0);
    let row = markets["markets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["condition_id"].as_str() == Some(a.condition_id.as_str()))
        .expect("market A on the page");
    assert_eq!(d(row["ask_sum"].as_str().unwrap()), stored_sum, "market A's YES + NO ask sum");

    // Leg risk. The executor stops (as a slow one would), market B's opportunity opens with NO
    // asks 0.55 × 30 and is gone again when that depth is taken, before the executor looks.
    signal(&exec, "-STOP");
    fake.price_change(&[(&b.tokens[1], "SELL", "0.55", "30")]);
    let (_, ann) = announced(&mut announcements, "opened", &b.condition_id).await;
    let opp_b: i64 = ann["id"].as_i64().unwrap();
    let (yb, nb) = (levels(B_YES_ASKS), levels(B_NO_ASKS));
    let size_b = pairs(&yb, &nb, rate);
    let size_row: Decimal = c
        .query_one("SELECT size FROM tapeflow.arbitrage_opportunities WHERE id = $1", &[&opp_b])
        .await
        .unwrap()
        .get(0);
    assert_eq!(size_row, size_b);
    fake.price_change(&[(&b.tokens[1], "SELL", "0.55", "0")]);
    let (_, closed) = announced(&mut announcements, "closed", &b.condition_id).await;
    assert_eq!(closed["id"].as_i64(), Some(opp_b));
    wait(&c, &top(&b.tokens[1], "0.50", "0.60")).await;
    let traded: i64 = c
        .query_one("SELECT count(*) FROM tapeflow.arbitrage_trades WHERE opportunity_id = $1", &[&opp_b])
        .await
        .unwrap()
        .get(0);
    assert_eq!(traded, 0, "the stopped executor traded nothing");
    signal(&exec, "-CONT");

    // Paper-trading every detected opportunity, it trades B late: YES fills from its asks, the
    // NO FOK finds nothing at 0.55 or better and is killed, the YES bought is sold back into the
    // YES bids (walking both levels), the loss recorded.
    wait(&c, &format!("SELECT EXISTS (SELECT 1 FROM tapeflow.arbitrage_trades WHERE opportunity_id = {opp_b} AND status = 'unwound')")).await;
    let by = walk(&yb, size_b, rate);
    let back = walk(&levels(B_YES_BIDS), size_b, rate);
    let loss = (by.notional + by.fee) - (back.notional - back.fee);
    assert!(loss > Decimal::ZERO);
    assert_eq!(
        leg(&c, &format!("arb-{opp_b}-paper-0-entry")).await,
        ("filled".into(), size_b, by.notional, by.fee, by.taken.clone())
    );
    let killed = leg(&c, &format!("arb-{opp_b}-paper-1-entry")).await;
    assert_eq!((killed.0.as_str(), killed.1), ("killed", Decimal::ZERO));
    assert_eq!(
        leg(&c, &format!("arb-{opp_b}-paper-0-unwind")).await,
        ("filled".into(), size_b, back.notional, back.fee, back.taken.clone())
    );
    let t = c
        .query_one(
            "SELECT matched_size, fees, pnl, leg_risk_loss, unwind_pnl FROM tapeflow.arbitrage_trades WHERE opportunity_id = $1 AND mode = 'paper'",
            &[&opp_b],
        )
        .await
        .unwrap();
    assert_eq!((t.get::<_, Decimal>(0), t.get::<_, Decimal>(1)), (Decimal::ZERO, by.fee));
    assert_eq!((t.get::<_, Option<Decimal>>(2), t.get::<_, Decimal>(3)), (Some(-loss), loss));
    assert_eq!(t.get::<_, Decimal>(4), -loss);
    let p = c
        .query_one(
            "SELECT shares, realised_pnl FROM tapeflow.polymarket_positions WHERE mode = 'paper' AND token_id = $1",
            &[&b.tokens[0]],
        )
        .await
        .unwrap();
    assert_eq!((p.get::<_, Decimal>(0), p.get::<_, Decimal>(1)), (Decimal::ZERO, -loss));

    // The report, per market, agrees with the trade rows.
    let report = |key: &str| {
        let (c, key) = (&c, key.to_string());
        async move {
            c.query_one(
                "SELECT opportunities, paper_trades, paper_filled, fill_rate, paper_pnl, paper_fees, leg_risk_losses
                 FROM tapeflow.arbitrage_report WHERE market_key = $1",
                &[&key],
            )
            .await
            .unwrap()
        }
    };
    let ra = report(&a.condition_id).await;
    assert_eq!((ra.get::<_, i64>(0), ra.get::<_, i64>(1), ra.get::<_, i64>(2)), (1, 1, 1));
    assert_eq!(ra.get::<_, Option<Decimal>>(3), Some(Decimal::ONE));
    assert_eq!(
        (ra.get::<_, Decimal>(4), ra.get::<_, Decimal>(5), ra.get::<_, Decimal>(6)),
        (profit_a, wy.fee + wn.fee, Decimal::ZERO)
    );
    let rb = report(&b.condition_id).await;
    assert_eq!((rb.get::<_, i64>(0), rb.get::<_, i64>(1), rb.get::<_, i64>(2)), (1, 1, 0));
    assert_eq!(rb.get::<_, Option<Decimal>>(3), Some(Decimal::ZERO));
    assert_eq!(
        (rb.get::<_, Decimal>(4), rb.get::<_, Decimal>(5), rb.get::<_, Decimal>(6)),
        (-loss, by.fee, loss)
    );
    let overall = c
        .query_one(
            "SELECT (SELECT sum(paper_trades) FROM tapeflow.arbitrage_report) = (SELECT count(*) FROM tapeflow.arbitrage_trades WHERE mode = 'paper'),
                    (SELECT sum(leg_risk_losses) FROM tapeflow.arbitrage_report) = (SELECT sum(leg_risk_loss) FROM tapeflow.arbitrage_trades),
                    (SELECT sum(paper_pnl) FROM tapeflow.arbitrage_report) = (SELECT sum(pnl) FROM tapeflow.arbitrage_trades)",
            &[],
        )
        .await
        .unwrap();
    assert!(overall.get::<_, bool>(0) && overall.get::<_, bool>(1) && overall.get::<_, bool>(2));
    // Fill rate over both trades: matched pairs / planned pairs.
    let fill_rate: Decimal = c
        .query_one(
            "SELECT round(sum(matched_size) / sum(planned_size), 4) FROM tapeflow.arbitrage_trades
             WHERE mode = 'paper' AND status <> 'rejected'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(fill_rate, (size_a / (size_a + size_b)).round_dp(4));

    // Held leg risk, across a restart: the executor stops (SIGTERM) and leg_risk turns to
    // 'hold'; market H's opportunity opens and vanishes while no executor runs; the next one
    // trades it (it is younger than max_age), fills YES only and keeps it, marked against the
    // bids. Nothing traded before is traded again.
    assert!(exec.terminate(WAIT), "the executor stops on SIGTERM");
    c.batch_execute("UPDATE tapeflow.arbitrage_limits SET leg_risk = 'hold'").await.unwrap();
    fake.price_change(&[(&h.tokens[1], "SELL", "0.65", "25")]);
    let (_, ann) = announced(&mut announcements, "opened", &h.condition_id).await;
    let opp_h: i64 = ann["id"].as_i64().unwrap();
    let (yh, nh) = (levels(H_YES_ASKS), levels(H_NO_ASKS));
    let size_h = pairs(&yh, &nh, rate);
    fake.price_change(&[(&h.tokens[1], "SELL", "0.65", "0")]);
    let (_, closed) = announced(&mut announcements, "closed", &h.condition_id).await;
    assert_eq!(closed["id"].as_i64(), Some(opp_h));
    wait(&c, &top(&h.tokens[1], "0.60", "0.70")).await;
    let _exec = Proc::spawn("tapeflow-exec", &[], &exec_env(&db, &[]));
    wait(&c, &format!("SELECT EXISTS (SELECT 1 FROM tapeflow.arbitrage_trades WHERE opportunity_id = {opp_h} AND status = 'held')")).await;
    let hy = walk(&yh, size_h, rate);
    let held_cost = hy.notional + hy.fee;
    let mark = walk(&levels(H_YES_BIDS), size_h, rate);
    let held_loss = held_cost - (mark.notional - mark.fee);
    assert!(held_loss > Decimal::ZERO);
    assert_eq!(
        leg(&c, &format!("arb-{opp_h}-paper-0-entry")).await,
        ("filled".into(), size_h, hy.notional, hy.fee, hy.taken.clone())
    );
    assert_eq!(leg(&c, &format!("arb-{opp_h}-paper-1-entry")).await.0, "killed");
    let held = |opp: i64| {
        let c = &c;
        async move {
            let r = c
                .query_one(
                    "SELECT held_cost, leg_risk_loss, pnl, (SELECT count(*) FROM tapeflow.arbitrage_legs l WHERE l.trade_id = t.id)
                     FROM tapeflow.arbitrage_trades t WHERE opportunity_id = $1 AND mode = 'paper'",
                    &[&opp],
                )
                .await
                .unwrap();
            (
                r.get::<_, Decimal>(0),
                r.get::<_, Decimal>(1),
                r.get::<_, Option<Decimal>>(2),
                r.get::<_, i64>(3),
            )
        }
    };
    assert_eq!(held(opp_h).await, (held_cost, held_loss, Some(-held_loss), 2), "held, no unwind leg");
    let trades: i64 =
        c.query_one("SELECT count(*) FROM tapeflow.arbitrage_trades", &[]).await.unwrap().get(0);
    assert_eq!(trades, 3, "one trade per opportunity across the restart");

    // market_resolved from the venue settles what is held. H resolves YES: the held YES pay 1
    // each, the marked loss is gone.
    fake.resolve(&h.condition_id, 0);
    wait(
        &c,
        &format!("SELECT status = 'settled' FROM tapeflow.arbitrage_trades WHERE opportunity_id = {opp_h}"),
    )
    .await;
    assert_eq!(held(opp_h).await, (held_cost, Decimal::ZERO, Some(size_h - held_cost), 2));
    let rh = report(&h.condition_id).await;
    assert_eq!((rh.get::<_, i64>(1), rh.get::<_, i64>(2)), (1, 0));
    assert_eq!((rh.get::<_, Decimal>(4), rh.get::<_, Decimal>(6)), (size_h - held_cost, Decimal::ZERO));
    // A resolves YES: its pairs pay 1 each.
    fake.resolve(&a.condition_id, 0);
    wait(
        &c,
        &format!("SELECT status = 'settled' FROM tapeflow.arbitrage_trades WHERE opportunity_id = {opp_a}"),
    )
    .await;
    let s = c
        .query_one(
            "SELECT payout, cost, pnl FROM tapeflow.polymarket_settlements WHERE mode = 'paper' AND condition_id = $1",
            &[&a.condition_id],
        )
        .await
        .unwrap();
    let cost_a = wy.notional + wy.fee + wn.notional + wn.fee;
    assert_eq!(
        (s.get::<_, Decimal>(0), s.get::<_, Decimal>(1), s.get::<_, Decimal>(2)),
        (size_a, cost_a, size_a - cost_a)
    );
    let settled: (Option<Decimal>, Decimal) = {
        let r = c
            .query_one(
                "SELECT t.pnl, (SELECT sum(realised_pnl) FROM tapeflow.polymarket_positions WHERE mode = 'paper' AND condition_id = $2)
                 FROM tapeflow.arbitrage_trades t WHERE t.opportunity_id = $1 AND t.mode = 'paper'",
                &[&opp_a, &a.condition_id],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(settled, (Some(profit_a), profit_a));

    // Straight to the process's stderr, which the test harness does not capture: the line
    // shows in the output of a passing `make test`.
    let n = |x: Decimal| x.normalize();
    let summary = format!(
        "polymarket e2e: market {} discovered, books streamed; opportunity of {} pairs at {} per pair after fees \
         (price_change -> announced {detect_ms:.0} ms, paper-traded {trade_ms:.0} ms after first sight): cost {} + fees {}, \
         pnl {}; leg risk on {}: {} YES bought for {} + fees {}, NO killed, sold back for {} less fees {}: unwind loss {}; \
         fill rate {}; held leg risk on {} (across a restart): {} YES at cost {}, marked loss {}, settled at resolution \
         for pnl {}; {} resolved: payout {}, pnl {}",
        a.slug,
        size_a,
        n(edge_a.round_dp(6)),
        n(wy.notional + wn.notional),
        n(wy.fee + wn.fee),
        n(profit_a),
        b.slug,
        size_b,
        n(by.notional),
        n(by.fee),
        n(back.notional),
        n(back.fee),
        n(loss),
        fill_rate,
        h.slug,
        size_h,
        n(held_cost),
        n(held_loss),
        n(size_h - held_cost),
        a.slug,
        size_a,
        n(size_a - cost_a),
    );
    writeln!(std::io::stderr(), "{summary}").unwrap();
}
