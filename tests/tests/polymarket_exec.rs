//! tapeflow-exec's arbitrage loop: paper trades of opportunities (detected from book rows by the
//! database, or inserted by hand) with fees computed by hand, leg risk unwound or held and
//! settled at resolution, the risk gates; and live trades against the fake CLOB killed with
//! SIGKILL at each step of a paired order, which must end with exactly one order per leg.

use rust_decimal::Decimal;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};
use tapeflow_tests::*;

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// The token ids of market `0xcN`: `N1` (YES) and `N2` (NO) — decimal numbers like the venue's.
fn yes(cond: &str) -> String {
    format!("{}1", &cond[3..])
}

fn no(cond: &str) -> String {
    format!("{}2", &cond[3..])
}

/// A binary market `cond` with tokens [`yes`] and [`no`] at 4 % (exponent 1), tick 0.01.
async fn market(c: &tokio_postgres::Client, cond: &str) {
    c.execute(
        "INSERT INTO tapeflow.polymarket_markets (condition_id, question, fee_rate, fee_exponent, tick_size, min_order_size)
         VALUES ($1, 'Will ' || $1 || ' happen?', 0.04, 1, 0.01, 5)",
        &[&cond],
    )
    .await
    .unwrap();
    for (i, o) in ["Yes", "No"].iter().enumerate() {
        c.execute(
            "INSERT INTO tapeflow.polymarket_tokens (token_id, condition_id, outcome, outcome_index) VALUES ($1, $2, $3, $4)",
            &[&if i == 0 { yes(cond) } else { no(cond) }, &cond, o, &(i as i16)],
        )
        .await
        .unwrap();
    }
}

/// Writes a token's book (levels best first: asks ascending, bids descending).
async fn book(c: &tokio_postgres::Client, token: &str, asks: &[(&str, &str)], bids: &[(&str, &str)]) {
    let col = |v: &[(&str, &str)], i: usize| -> Vec<Decimal> {
        v.iter().map(|l| dec(if i == 0 { l.0 } else { l.1 })).collect()
    };
    c.execute(
        "INSERT INTO tapeflow.polymarket_books (token_id, condition_id, bid_prices, bid_sizes, ask_prices, ask_sizes, tick_size)
         SELECT $1, condition_id, $2, $3, $4, $5, 0.01 FROM tapeflow.polymarket_tokens WHERE token_id = $1
         ON CONFLICT (token_id) DO UPDATE SET bid_prices = EXCLUDED.bid_prices, bid_sizes = EXCLUDED.bid_sizes,
             ask_prices = EXCLUDED.ask_prices, ask_sizes = EXCLUDED.ask_sizes, updated_at = now()",
        &[&token, &col(bids, 0), &col(bids, 1), &col(asks, 0), &col(asks, 1)],
    )
    .await
    .unwrap();
}

/// A buy_both opportunity inserted by hand (the trigger is off): size, edge and the legs'
/// limit prices.
async fn opportunity(
    c: &tokio_postgres::Client,
    cond: &str,
    size: &str,
    edge: &str,
    yes_price: &str,
    no_price: &str,
) -> i64 {
    let legs = serde_json::json!([
        {"token_id": yes(cond), "condition_id": cond, "outcome": "Yes", "side": "buy", "shares": size,
         "avg_price": yes_price, "worst_price": yes_price, "notional": "0", "fee": "0", "levels": 1},
        {"token_id": no(cond), "condition_id": cond, "outcome": "No", "side": "buy", "shares": size,
         "avg_price": no_price, "worst_price": no_price, "notional": "0", "fee": "0", "levels": 1},
    ]);
    let (size, edge) = (dec(size), dec(edge));
    let notional = size * (dec(yes_price) + dec(no_price));
    c.query_one(
        "INSERT INTO tapeflow.arbitrage_opportunities (kind, market_key, condition_id, size, edge, profit, notional, fees, legs, max_profit)
         VALUES ('buy_both', $1, $1, $2::numeric, $3::numeric, $2::numeric * $3::numeric, $4::numeric, $2::numeric * (1 - $3::numeric) - $4::numeric, $5, $2::numeric * $3::numeric) RETURNING id",
        &[&cond, &size, &edge, &notional, &legs],
    )
    .await
    .unwrap()
    .get(0)
}

const STATE: &str = "SELECT format('trade %s opp %s %s %s %s matched %s pnl %s loss %s | %s', t.id, t.opportunity_id, t.mode, t.status,
        coalesce(t.reject_code, ''), t.matched_size, t.pnl, t.leg_risk_loss,
        (SELECT string_agg(l.client_order_id || ' ' || l.status || ' ' || l.filled_size, ', ' ORDER BY l.id)
         FROM tapeflow.arbitrage_legs l WHERE l.trade_id = t.id))
    FROM tapeflow.arbitrage_trades t ORDER BY t.id";

async fn wait(c: &tokio_postgres::Client, sql: &str) {
    wait_until(c, sql, Duration::from_secs(30), Some(STATE)).await
}

fn start_exec(db: &TestDb, extra: &[(&str, String)]) -> Proc {
    Proc::spawn("tapeflow-exec", &[], &exec_env(db, extra))
}

async fn trade(c: &tokio_postgres::Client, opp: i64, mode: &str) -> tokio_postgres::Row {
    c.query_one(
        "SELECT status, matched_size, notional, fees, pnl, leg_risk_loss, coalesce(reject_code, ''), planned_size, held_cost
         FROM tapeflow.arbitrage_trades WHERE opportunity_id = $1 AND mode = $2",
        &[&opp, &mode],
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paper_trades_a_detected_opportunity_with_fees_and_settles_it() {
    let db = TestDb::create("pm_paper", false).await;
    let c = db.client().await;
    market(&c, "0xc1").await;
    let _exec = start_exec(&db, &[]);
    // Both books in one statement: the trigger finds buy_both. YES asks 0.45 × 100, 0.47 × 200;
    // NO asks 0.50 × 60, 0.52 × 100. Per share with the 4 % fee rate × p(1 − p):
    // YES 0.45 + 0.0099, NO 0.50 + 0.01 → 0.9699 for 60; then NO 0.52 + 0.009984 → 0.989884
    // for 40 more; then YES 0.47 + 0.009964 makes it 1.009948 > 1. So 100 pairs.
    c.batch_execute(
        "INSERT INTO tapeflow.polymarket_books (token_id, condition_id, ask_prices, ask_sizes, bid_prices, bid_sizes, tick_size) VALUES
           ('11', '0xc1', '{0.45,0.47}', '{100,200}', '{0.44}', '{50}', 0.01),
           ('12', '0xc1', '{0.50,0.52}', '{60,100}', '{0.49}', '{50}', 0.01)",
    )
    .await
    .unwrap();
    let opp: i64 = c
        .query_one("SELECT id FROM tapeflow.arbitrage_opportunities WHERE kind = 'buy_both'", &[])
        .await
        .unwrap()
        .get(0);
    wait(&c, &format!("SELECT EXISTS (SELECT 1 FROM tapeflow.arbitrage_trades WHERE opportunity_id = {opp} AND status = 'filled')")).await;
    let t = trade(&c, opp, "paper").await;
    // YES: 100 × 0.45 = 45, fee 100 × 0.0099 = 0.99. NO: 60 × 0.50 + 40 × 0.52 = 50.8,
    // fee 60 × 0.01 + 40 × 0.009984 = 0.99936. Profit 100 − 95.8 − 1.98936 = 2.21064.
    assert_eq!(t.get::<_, Decimal>(1), dec("100"));
    assert_eq!(t.get::<_, Decimal>(2), dec("95.8"));
    assert_eq!(t.get::<_, Decimal>(3), dec("1.98936"));
    assert_eq!(t.get::<_, Decimal>(4), dec("2.21064"));
    assert_eq!(t.get::<_, Decimal>(5), dec("0"));
    let legs: Vec<(String, String, Decimal, Decimal, Decimal)> = c
        .query(
            "SELECT client_order_id, status, filled_size, notional, fee FROM tapeflow.arbitrage_legs ORDER BY leg_index",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        legs,
        vec![
            (format!("arb-{opp}-paper-0-entry"), "filled".into(), dec("100"), dec("45"), dec("0.99")),
            (format!("arb-{opp}-paper-1-entry"), "filled".into(), dec("100"), dec("50.8"), dec("0.99936")),
        ]
    );
    // Positions by token; then the market resolves YES and the pairs pay 100.
    let pos: Vec<(String, Decimal, Decimal, Decimal)> = c
        .query("SELECT token_id, shares, cost, fees FROM tapeflow.polymarket_positions WHERE mode = 'paper' ORDER BY token_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        pos,
        vec![
            ("11".into(), dec("100"), dec("45"), dec("0.99")),
            ("12".into(), dec("100"), dec("50.8"), dec("0.99936"))
        ]
    );
    c.batch_execute(
        "UPDATE tapeflow.polymarket_markets SET closed = true, resolved_at = now(), winning_token_id = '11', winning_outcome = 'Yes' WHERE condition_id = '0xc1'",
    )
    .await
    .unwrap();
    wait(
        &c,
        &format!("SELECT status = 'settled' FROM tapeflow.arbitrage_trades WHERE opportunity_id = {opp}"),
    )
    .await;
    let s = c
        .query_one("SELECT payout, cost, pnl FROM tapeflow.polymarket_settlements WHERE mode = 'paper' AND condition_id = '0xc1'", &[])
        .await
        .unwrap();
    assert_eq!(
        (s.get::<_, Decimal>(0), s.get::<_, Decimal>(1), s.get::<_, Decimal>(2)),
        (dec("100"), dec("97.78936"), dec("2.21064"))
    );
    let realised: Decimal = c
        .query_one(
            "SELECT sum(realised_pnl) FROM tapeflow.polymarket_positions WHERE mode = 'paper' AND shares = 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(realised, dec("2.21064"));
    assert_eq!(trade(&c, opp, "paper").await.get::<_, Decimal>(4), dec("2.21064"));
    // The measurement view.
    let r = c
        .query_one("SELECT opportunities, paper_trades, paper_filled, fill_rate, paper_pnl, paper_fees, leg_risk_losses FROM tapeflow.arbitrage_report WHERE market_key = '0xc1'", &[])
        .await
        .unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)), (1, 1, 1));
    assert_eq!(r.get::<_, Option<Decimal>>(3), Some(dec("1")));
    assert_eq!(
        (r.get::<_, Decimal>(4), r.get::<_, Decimal>(5), r.get::<_, Decimal>(6)),
        (dec("2.21064"), dec("1.98936"), dec("0"))
    );
}

/// Markets for the hand-inserted opportunities (no trigger), YES asks 0.40 × 50 with bids 0.38
/// × 100 and 0.36 × 100, NO asks 0.55 × 10 only: a 20-pair FOK fills YES, kills NO.
async fn one_legged(c: &tokio_postgres::Client, cond: &str) -> i64 {
    market(c, cond).await;
    book(c, &yes(cond), &[("0.40", "50")], &[("0.38", "100"), ("0.36", "100")]).await;
    book(c, &no(cond), &[("0.55", "10")], &[("0.50", "10")]).await;
    // 1 − 0.40 − 0.55 − 0.0096 − 0.0099 = 0.0305 per pair.
    opportunity(c, cond, "20", "0.0305", "0.40", "0.55").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_legged_fill_is_unwound_and_its_loss_recorded() {
    let db = TestDb::create("pm_unwind", false).await;
    let c = db.client().await;
    c.batch_execute("UPDATE tapeflow.arbitrage_settings SET enabled = false").await.unwrap();
    let _exec = start_exec(&db, &[]);
    let opp = one_legged(&c, "0xc2").await;
    wait(&c, &format!("SELECT EXISTS (SELECT 1 FROM tapeflow.arbitrage_trades WHERE opportunity_id = {opp} AND status = 'unwound')")).await;
    let t = trade(&c, opp, "paper").await;
    // YES 20 × 0.40 = 8 + fee 20 × 0.0096 = 0.192 → cost 8.192. NO killed (10 < 20 at ≤ 0.55).
    // Sold back 20 at 0.38: 7.6 less fee 20 × 0.04 × 0.38 × 0.62 = 0.18848 → 7.41152.
    // Loss 8.192 − 7.41152 = 0.78048.
    assert_eq!(t.get::<_, Decimal>(1), dec("0"));
    assert_eq!(t.get::<_, Decimal>(3), dec("0.192"));
    assert_eq!(t.get::<_, Decimal>(4), dec("-0.78048"));
    assert_eq!(t.get::<_, Decimal>(5), dec("0.78048"));
    let legs: Vec<(String, String, Decimal, Decimal, Decimal)> = c
        .query("SELECT client_order_id, status, filled_size, notional, fee FROM tapeflow.arbitrage_legs ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        legs,
        vec![
            (format!("arb-{opp}-paper-0-entry"), "filled".into(), dec("20"), dec("8"), dec("0.192")),
            (format!("arb-{opp}-paper-1-entry"), "killed".into(), dec("0"), dec("0"), dec("0")),
            (format!("arb-{opp}-paper-0-unwind"), "filled".into(), dec("20"), dec("7.6"), dec("0.18848")),
        ]
    );
    let p = c
        .query_one("SELECT shares, cost, realised_pnl FROM tapeflow.polymarket_positions WHERE mode = 'paper' AND token_id = '21'", &[])
        .await
        .unwrap();
    assert_eq!(
        (p.get::<_, Decimal>(0), p.get::<_, Decimal>(1), p.get::<_, Decimal>(2)),
        (dec("0"), dec("0"), dec("-0.78048"))
    );
    let r = c
        .query_one("SELECT paper_trades, paper_filled, fill_rate, leg_risk_losses, paper_pnl FROM tapeflow.arbitrage_report WHERE market_key = '0xc2'", &[])
        .await
        .unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1)), (1, 0));
    assert_eq!(r.get::<_, Option<Decimal>>(2), Some(dec("0")));
    assert_eq!((r.get::<_, Decimal>(3), r.get::<_, Decimal>(4)), (dec("0.78048"), dec("-0.78048")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_leg_risk_is_marked_then_settled_and_the_gates_refuse() {
    let db = TestDb::create("pm_hold", false).await;
    let c = db.client().await;
    c.batch_execute("UPDATE tapeflow.arbitrage_settings SET enabled = false; UPDATE tapeflow.arbitrage_limits SET leg_risk = 'hold'")
        .await
        .unwrap();
    let _exec = start_exec(&db, &[]);
    let opp = one_legged(&c, "0xc3").await;
    wait(&c, &format!("SELECT EXISTS (SELECT 1 FROM tapeflow.arbitrage_trades WHERE opportunity_id = {opp} AND status = 'held')")).await;
    let t = trade(&c, opp, "paper").await;
    // Held at cost 8.192, marked at the bids' 7.41152: loss 0.78048 until resolution.
    assert_eq!(
        (t.get::<_, Decimal>(8), t.get::<_, Decimal>(5), t.get::<_, Decimal>(4)),
        (dec("8.192"), dec("0.78048"), dec("-0.78048"))
    );
    // YES wins: the 20 held pay 20, so 20 − 8.192 = 11.808 and no leg-risk loss.
    c.batch_execute("UPDATE tapeflow.polymarket_markets SET closed = true, resolved_at = now(), winning_token_id = '31' WHERE condition_id = '0xc3'")
        .await
        .unwrap();
    wait(
        &c,
        &format!("SELECT status = 'settled' FROM tapeflow.arbitrage_trades WHERE opportunity_id = {opp}"),
    )
    .await;
    let t = trade(&c, opp, "paper").await;
    assert_eq!((t.get::<_, Decimal>(4), t.get::<_, Decimal>(5)), (dec("11.808"), dec("0")));

    // Gates: the kill switch, the minimum edge, the capital per trade (which shrinks the size).
    market(&c, "0xc4").await;
    book(&c, "41", &[("0.40", "500")], &[("0.38", "100")]).await;
    book(&c, "42", &[("0.55", "500")], &[("0.50", "100")]).await;
    c.batch_execute("UPDATE tapeflow.risk_limits SET trading_enabled = false").await.unwrap();
    let killed = opportunity(&c, "0xc4", "20", "0.0305", "0.40", "0.55").await;
    wait(
        &c,
        &format!("SELECT EXISTS (SELECT 1 FROM tapeflow.arbitrage_trades WHERE opportunity_id = {killed})"),
    )
    .await;
    assert_eq!(
        (
            trade(&c, killed, "paper").await.get::<_, String>(0),
            trade(&c, killed, "paper").await.get::<_, String>(6)
        ),
        ("rejected".into(), "kill_switch".into())
    );
    c.batch_execute("UPDATE tapeflow.risk_limits SET trading_enabled = true; UPDATE tapeflow.arbitrage_opportunities SET closed_at = now()").await.unwrap();
    let thin = opportunity(&c, "0xc4", "20", "0.001", "0.40", "0.55").await;
    wait(
        &c,
        &format!("SELECT EXISTS (SELECT 1 FROM tapeflow.arbitrage_trades WHERE opportunity_id = {thin})"),
    )
    .await;
    assert_eq!(trade(&c, thin, "paper").await.get::<_, String>(6), "min_edge");
    c.batch_execute("UPDATE tapeflow.arbitrage_limits SET max_trade_capital = 10; UPDATE tapeflow.arbitrage_opportunities SET closed_at = now() WHERE closed_at IS NULL")
        .await
        .unwrap();
    let big = opportunity(&c, "0xc4", "200", "0.0305", "0.40", "0.55").await;
    wait(&c, &format!("SELECT EXISTS (SELECT 1 FROM tapeflow.arbitrage_trades WHERE opportunity_id = {big} AND status = 'filled')")).await;
    // 10 of capital at 0.9695 per pair (cost and fees): 10.31 pairs.
    let t = trade(&c, big, "paper").await;
    assert_eq!((t.get::<_, Decimal>(7), t.get::<_, Decimal>(1)), (dec("10.31"), dec("10.31")));
}

/// The executor killed with SIGKILL at `fault`, restarted, must leave one order per leg at the
/// fake CLOB and both legs filled and recorded.
async fn live_crash_at(fault: &str) {
    use tapeflow_tests::fake_clob::{FakeClob, FakeClobOptions};
    let db = TestDb::create(&format!("pm_{fault}"), false).await;
    let c = db.client().await;
    c.batch_execute("UPDATE tapeflow.arbitrage_settings SET enabled = false; UPDATE tapeflow.arbitrage_limits SET paper_enabled = false")
        .await
        .unwrap();
    market(&c, "0xc5").await;
    let fake = FakeClob::start(FakeClobOptions::default()).await;
    // The venue's books: the same levels as the database's.
    fake.set_book("51", &[("0.40", "50")], &[("0.38", "100")]);
    fake.set_book("52", &[("0.55", "50")], &[("0.50", "100")]);
    book(&c, "51", &[("0.40", "50")], &[("0.38", "100")]).await;
    book(&c, "52", &[("0.55", "50")], &[("0.50", "100")]).await;
    let env = fake.exec_env();
    let mut with_fault = env.clone();
    with_fault.push(("TAPEFLOW_EXEC_FAULT", fault.to_string()));
    let mut exec = start_exec(&db, &with_fault);
    let opp = opportunity(&c, "0xc5", "20", "0.0305", "0.40", "0.55").await;
    let start = Instant::now();
    loop {
        if let Some(status) = exec.child.try_wait().unwrap() {
            assert_eq!(
                status.signal(),
                Some(9),
                "{fault}: the executor should die of SIGKILL, got {status:?}"
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{fault}: the fault point was never reached");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _exec = start_exec(&db, &env);
    wait(&c, &format!("SELECT EXISTS (SELECT 1 FROM tapeflow.arbitrage_trades WHERE opportunity_id = {opp} AND mode = 'live' AND status = 'filled')")).await;
    let orders = fake.orders();
    let per_token = |t: &str| orders.iter().filter(|o| o.token_id == t).count();
    assert_eq!((per_token("51"), per_token("52")), (1, 1), "{fault}: orders {orders:?}");
    assert!(orders.iter().all(|o| o.matched == dec("20") && o.posts == 1), "{fault}: {orders:?}");
    assert!(orders.iter().all(|o| o.signer_ok && o.hmac_ok), "{fault}: signatures {orders:?}");
    let t = trade(&c, opp, "live").await;
    // 20 pairs at 0.40 + 0.55 with fees 0.192 + 0.198: 20 − 19 − 0.39 = 0.61.
    assert_eq!(
        (t.get::<_, Decimal>(1), t.get::<_, Decimal>(3), t.get::<_, Decimal>(4)),
        (dec("20"), dec("0.39"), dec("0.61")),
        "{fault}"
    );
    let hashes: Vec<Option<String>> = c
        .query("SELECT broker_order_id FROM tapeflow.arbitrage_legs WHERE order_hash = broker_order_id ORDER BY leg_index", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(hashes.len(), 2, "{fault}: each leg's venue id is its recorded hash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_killed_after_recording() {
    live_crash_at("arb_after_record").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_killed_after_sending_leg_one() {
    live_crash_at("arb_after_leg1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_killed_after_sending_both() {
    live_crash_at("arb_after_send").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_killed_before_recording_fills() {
    live_crash_at("arb_before_fills").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_legs_re_sign_once_on_a_version_change_beat_while_open_and_check_fees() {
    use tapeflow_tests::fake_clob::{FakeClob, FakeClobOptions};
    let db = TestDb::create("pm_live", false).await;
    let c = db.client().await;
    c.batch_execute(
        "UPDATE tapeflow.arbitrage_settings SET enabled = false; UPDATE tapeflow.arbitrage_limits SET paper_enabled = false",
    )
    .await
    .unwrap();
    let fake = FakeClob::start(FakeClobOptions::default()).await;
    let _exec = start_exec(&db, &fake.exec_env());
    // The venue moves to exchange version 3 at the first order, and answers slowly.
    market(&c, "0xc6").await;
    for (cond, asks) in [("0xc6", ["0.40", "0.55"])] {
        fake.set_book(&yes(cond), &[(asks[0], "50")], &[("0.38", "100")]);
        fake.set_book(&no(cond), &[(asks[1], "50")], &[("0.50", "100")]);
        book(&c, &yes(cond), &[(asks[0], "50")], &[("0.38", "100")]).await;
        book(&c, &no(cond), &[(asks[1], "50")], &[("0.50", "100")]).await;
    }
    fake.switch_version_on_next_order("3");
    fake.set_order_delay(Duration::from_millis(500));
    let opp = opportunity(&c, "0xc6", "20", "0.0305", "0.40", "0.55").await;
    wait(&c, &format!("SELECT EXISTS (SELECT 1 FROM tapeflow.arbitrage_trades WHERE opportunity_id = {opp} AND status = 'filled')")).await;
    let orders = fake.orders();
    assert_eq!(orders.len(), 2, "one order per leg: {orders:?}");
    assert!(orders.iter().all(|o| o.posts == 1 && o.matched == dec("20")), "{orders:?}");
    let versions: Vec<String> = c
        .query("SELECT signed_order->>'version' FROM tapeflow.arbitrage_legs ORDER BY leg_index", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, ["3", "3"], "both legs re-signed for the new exchange");
    assert!(fake.heartbeats() >= 1, "heartbeats while the legs were open");
    assert!(fake.l1_derivations() >= 1, "API key derived with L1 headers");
    // Our fee rate differs from the venue's: refused before anything is sent.
    market(&c, "0xc7").await;
    c.batch_execute("UPDATE tapeflow.polymarket_markets SET fee_rate = 0.03 WHERE condition_id = '0xc7'")
        .await
        .unwrap();
    book(&c, &yes("0xc7"), &[("0.40", "50")], &[("0.38", "100")]).await;
    book(&c, &no("0xc7"), &[("0.55", "50")], &[("0.50", "100")]).await;
    let opp = opportunity(&c, "0xc7", "20", "0.0305", "0.40", "0.55").await;
    wait(
        &c,
        &format!("SELECT EXISTS (SELECT 1 FROM tapeflow.arbitrage_trades WHERE opportunity_id = {opp})"),
    )
    .await;
    assert_eq!(trade(&c, opp, "live").await.get::<_, String>(6), "fee_changed");
    assert_eq!(fake.orders().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_one_legged_fill_is_unwound_at_the_venue() {
    use tapeflow_tests::fake_clob::{FakeClob, FakeClobOptions};
    let db = TestDb::create("pm_live_unwind", false).await;
    let c = db.client().await;
    c.batch_execute(
        "UPDATE tapeflow.arbitrage_settings SET enabled = false; UPDATE tapeflow.arbitrage_limits SET paper_enabled = false",
    )
    .await
    .unwrap();
    let fake = FakeClob::start(FakeClobOptions::default()).await;
    market(&c, "0xc8").await;
    // The venue's NO side has 10 at 0.55: the 20-share FOK is killed there.
    fake.set_book(&yes("0xc8"), &[("0.40", "50")], &[("0.38", "100")]);
    fake.set_book(&no("0xc8"), &[("0.55", "10")], &[("0.50", "100")]);
    book(&c, &yes("0xc8"), &[("0.40", "50")], &[("0.38", "100")]).await;
    book(&c, &no("0xc8"), &[("0.55", "50")], &[("0.50", "100")]).await;
    let _exec = start_exec(&db, &fake.exec_env());
    let opp = opportunity(&c, "0xc8", "20", "0.0305", "0.40", "0.55").await;
    wait(&c, &format!("SELECT EXISTS (SELECT 1 FROM tapeflow.arbitrage_trades WHERE opportunity_id = {opp} AND status = 'unwound')")).await;
    let orders = fake.orders();
    // The entries went out together (in either order), the unwind after them.
    let mut summary: Vec<(String, String, Decimal)> =
        orders.iter().map(|o| (o.token_id.clone(), o.side.clone(), o.matched)).collect();
    assert_eq!(summary.last(), Some(&(yes("0xc8"), "SELL".to_string(), dec("20"))), "{orders:?}");
    summary.sort();
    let mut expected = vec![
        (yes("0xc8"), "BUY".to_string(), dec("20")),
        (no("0xc8"), "BUY".to_string(), dec("0")),
        (yes("0xc8"), "SELL".to_string(), dec("20")),
    ];
    expected.sort();
    assert_eq!(summary, expected);
    assert_eq!(orders.len(), 3, "{orders:?}");
    assert!(orders.iter().all(|o| o.posts == 1));
    // Bought 20 at 0.40 (fee 0.192), sold back at 0.38 (7.6, fee 0.18848): loss 0.78048.
    let t = trade(&c, opp, "live").await;
    assert_eq!(
        (t.get::<_, Decimal>(1), t.get::<_, Decimal>(4), t.get::<_, Decimal>(5)),
        (dec("0"), dec("-0.78048"), dec("0.78048"))
    );
    let unwind: (String, Decimal) = {
        let r = c
            .query_one(
                "SELECT order_type, filled_size FROM tapeflow.arbitrage_legs WHERE purpose = 'unwind'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(unwind, ("FAK".to_string(), dec("20")));
}
