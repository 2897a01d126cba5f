//! `tapeflow-feed run` against the fake Polymarket: markets discovered from Gamma (by tag,
//! paginated) with their tokens as symbols, books streamed into `tapeflow.polymarket_books`
//! with the right best bid and ask (the highest bid), quotes and venue-sided trades stored, a
//! replayed trade stored once, the venue's tick changing under candles that keep working,
//! re-snapshots after a hash mismatch, out-of-order delivery and a lasting top disagreement,
//! sharding and a reconnect with fresh snapshots, hostile frames counted while the feed goes on,
//! a `new_market` stored and streamed between refreshes, and a `market_resolved` closing its
//! market.

use std::time::Duration;
use tapeflow_tests::fake_polymarket::{
    capture, FakeMarket, FakePolymarket, Framing, GammaFault, TRUMP_CONDITION, TRUMP_NO, TRUMP_YES,
};
use tapeflow_tests::*;

const WAIT: Duration = Duration::from_secs(30);

const STATUS: &str = "SELECT provider || '/' || connection || ' ' || state || ' ' || coalesce(last_error, '') \
                      || ' parse_errors=' || parse_errors || ' reconnects=' || reconnects FROM tapeflow.feed_status";

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

fn feed_env(db: &TestDb, fake: &FakePolymarket, extra: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = vec![
        ("DATABASE_URL", db.url.clone()),
        ("TAPEFLOW_POLYMARKET_GAMMA_URL", fake.gamma_url.clone()),
        ("TAPEFLOW_POLYMARKET_WS_URL", fake.ws_url.clone()),
        ("TAPEFLOW_POLYMARKET_TAGS", "politics".into()),
        ("TAPEFLOW_POLYMARKET_REFRESH_SECS", "600".into()),
        ("TAPEFLOW_POLYMARKET_PAGE_LIMIT", "1".into()),
        ("TAPEFLOW_POLYMARKET_PING_MS", "300".into()),
        ("TAPEFLOW_POLYMARKET_BOOK_MS", "50".into()),
        ("TAPEFLOW_POLYMARKET_RECONNECT_MIN_MS", "100".into()),
        ("TAPEFLOW_POLYMARKET_RECONNECT_MAX_MS", "500".into()),
        ("TAPEFLOW_POLYMARKET_TIMEOUT_MS", "3000".into()),
        ("TAPEFLOW_FEED_RELOAD_SECS", "1".into()),
        ("TAPEFLOW_FEED_STATUS_MS", "100".into()),
        ("TAPEFLOW_FEED_RESTART_SECS", "1".into()),
        ("TAPEFLOW_FEED_METRICS_ADDR", "off".into()),
        ("RUST_LOG", "info,tapeflow_feeders=debug".into()),
    ];
    for (k, v) in extra {
        let k: &'static str = Box::leak(k.to_string().into_boxed_str());
        env.retain(|(e, _)| *e != k);
        env.push((k, v.to_string()));
    }
    env
}

fn run_feed(db: &TestDb, fake: &FakePolymarket, extra: &[(&str, &str)]) -> Proc {
    Proc::spawn("tapeflow-feed", &["run"], &feed_env(db, fake, extra))
}

/// The symbol the feed gave a token.
async fn symbol_of(c: &tokio_postgres::Client, token: &str) -> String {
    c.query_one("SELECT symbol FROM tapeflow.polymarket_tokens WHERE token_id = $1", &[&token])
        .await
        .unwrap()
        .get(0)
}

/// Waits until the stored book of `token` has these best prices (as numeric text).
async fn wait_top(c: &tokio_postgres::Client, token: &str, bid: &str, ask: &str) {
    wait_until(
        c,
        &format!(
            "SELECT coalesce((SELECT best_bid = {bid} AND best_ask = {ask} FROM tapeflow.polymarket_books
                              WHERE token_id = '{token}'), false)"
        ),
        WAIT,
        Some("SELECT token_id || ' ' || coalesce(best_bid::text, '-') || ' ' || coalesce(best_ask::text, '-') FROM tapeflow.polymarket_books"),
    )
    .await;
}

/// How many re-snapshots (an unsubscribe of the token followed by a subscribe) the fake saw.
fn resnapshots(fake: &FakePolymarket, token: &str) -> usize {
    fake.client_messages()
        .iter()
        .filter_map(|m| serde_json::from_str::<serde_json::Value>(m).ok())
        .filter(|v| {
            v["operation"] == "unsubscribe"
                && v["assets_ids"].as_array().is_some_and(|a| a.iter().any(|t| t == token))
        })
        .count()
}

/// The captured market (tag politics), its NO book seeded from the captured book, a YES book.
async fn captured_venue() -> FakePolymarket {
    let fake = FakePolymarket::start().await;
    fake.add_market(FakeMarket::captured());
    fake.seed_book_from_capture("nautilus_py_tests_ws_messages/book.json");
    fake.set_book(TRUMP_YES, &[("0.48", "500"), ("0.49", "350")], &[("0.52", "250"), ("0.53", "400")]);
    fake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markets_are_discovered_and_books_quotes_and_trades_stored() {
    let db = TestDb::create("polymarket", false).await;
    let c = db.client().await;
    let fake = captured_venue().await;
    // One more market of the tag, one of another tag (not discovered), one of the tag closed.
    fake.add_market(FakeMarket::synthetic(1, ("2", "politics")));
    fake.add_market(FakeMarket::synthetic(2, ("100", "sports")));
    fake.add_market(FakeMarket { closed: true, ..FakeMarket::synthetic(3, ("2", "politics")) });
    let _feed = run_feed(&db, &fake, &[]);

    wait_until(&c, "SELECT count(*) = 2 FROM tapeflow.polymarket_markets", WAIT, Some(STATUS)).await;
    let markets: Vec<String> = c
        .query("SELECT condition_id FROM tapeflow.polymarket_markets ORDER BY condition_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        markets.contains(&TRUMP_CONDITION.to_string())
            && markets.contains(&FakeMarket::synthetic(1, ("", "")).condition_id)
    );
    // The tag slug was resolved to its id, and the pages of one market each were all read.
    let requests = fake.gamma_requests();
    assert!(requests.iter().any(|r| r == "/tags/slug/politics"), "{requests:?}");
    let pages: Vec<&String> =
        requests.iter().filter(|r| r.starts_with("/markets") && r.contains("tag_id=2")).collect();
    assert!(pages.iter().any(|r| r.contains("offset=1")), "{pages:?}");
    assert!(pages
        .iter()
        .all(|r| r.contains("active=true") && r.contains("closed=false") && r.contains("limit=1")));

    // The market's facts, fees per market, the venue's tick.
    let m = c
        .query_one(
            "SELECT question, slug, tags, neg_risk, neg_risk_market_id IS NOT NULL, min_order_size::text, tick_size::text,
                    fee_rate::text, fee_exponent, watched, end_date > now(), event_slug
             FROM tapeflow.polymarket_markets WHERE condition_id = $1",
            &[&TRUMP_CONDITION],
        )
        .await
        .unwrap();
    assert_eq!(m.get::<_, String>(0), "Will Donald Trump win the 2024 US Presidential Election?");
    assert_eq!(m.get::<_, Vec<String>>(2), vec!["politics", "us-presidential-election"]);
    assert!(m.get::<_, bool>(3) && m.get::<_, bool>(4));
    assert_eq!(
        (m.get::<_, String>(5), m.get::<_, String>(6), m.get::<_, String>(7)),
        ("5".into(), "0.001".into(), "0.04".into())
    );
    assert_eq!(m.get::<_, i32>(8), 1);
    assert!(m.get::<_, bool>(9) && m.get::<_, bool>(10));

    // Each token is a 24/7 prediction symbol on the fixed binning tick, fed by this provider.
    let rows = c
        .query(
            "SELECT t.outcome, s.asset_class, s.tick_size, s.timezone, s.session_open = s.session_close, s.provider,
                    s.provider_ref = t.token_id, s.active
             FROM tapeflow.polymarket_tokens t JOIN tapeflow.symbols s ON s.symbol = t.symbol
             WHERE t.condition_id = $1 ORDER BY t.outcome_index",
            &[&TRUMP_CONDITION],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for (r, outcome) in rows.iter().zip(["Yes", "No"]) {
        assert_eq!(r.get::<_, String>(0), outcome);
        assert_eq!(r.get::<_, String>(1), "prediction");
        assert_eq!(r.get::<_, f64>(2), 0.001);
        assert_eq!(r.get::<_, String>(3), "UTC");
        assert!(r.get::<_, bool>(4) && r.get::<_, bool>(6) && r.get::<_, bool>(7));
        assert_eq!(r.get::<_, String>(5), "polymarket");
    }
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.symbols WHERE provider = 'polymarket'").await, 4);

    // Routing streams them: all four tokens subscribed, the real book stored best-first with
    // the HIGHEST bid and the lowest ask (the venue lists them the other way round).
    fake.wait("four tokens subscribed", WAIT, |f| f.subscribed().len() == 4).await;
    wait_top(&c, TRUMP_NO, "0.511", "0.514").await;
    let book = capture("nautilus_py_tests_ws_messages/book.json");
    let b = c
        .query_one(
            "SELECT cardinality(bid_prices), cardinality(ask_prices), bid_prices[cardinality(bid_prices)]::text,
                    ask_prices[cardinality(ask_prices)]::text, hash, condition_id, bid_sizes[1]::text
             FROM tapeflow.polymarket_books WHERE token_id = $1",
            &[&TRUMP_NO],
        )
        .await
        .unwrap();
    assert_eq!((b.get::<_, i32>(0), b.get::<_, i32>(1)), (76, 86));
    assert_eq!((b.get::<_, String>(2), b.get::<_, String>(3)), ("0.001".into(), "0.999".into()));
    assert_eq!(b.get::<_, String>(4), book["hash"].as_str().unwrap());
    assert_eq!(b.get::<_, String>(5), TRUMP_CONDITION);
    assert_eq!(b.get::<_, String>(6), "1304.72");
    wait_top(&c, TRUMP_YES, "0.49", "0.52").await;
    let no = symbol_of(&c, TRUMP_NO).await;
    let yes = symbol_of(&c, TRUMP_YES).await;
    wait_until(
        &c,
        &format!("SELECT count(*) = 1 FROM tapeflow.quotes WHERE symbol = '{no}' AND bid = 0.511 AND ask = 0.514 AND bid_size = 1304.72"),
        WAIT,
        None,
    )
    .await;

    // price_change v2 (a new best bid) and v1 (a new best ask): book and quotes follow.
    fake.price_change(&[(TRUMP_YES, "BUY", "0.5", "100")]);
    wait_top(&c, TRUMP_YES, "0.5", "0.52").await;
    fake.price_change_v1(TRUMP_YES, "SELL", "0.505", "7");
    wait_top(&c, TRUMP_YES, "0.5", "0.505").await;
    // A v2 message touching both tokens of the market at once.
    fake.price_change(&[(TRUMP_YES, "BUY", "0.5", "0"), (TRUMP_NO, "SELL", "0.514", "0")]);
    wait_top(&c, TRUMP_YES, "0.49", "0.505").await;
    wait_top(&c, TRUMP_NO, "0.511", "0.515").await;
    wait_until(
        &c,
        &format!("SELECT count(*) = 1 FROM tapeflow.quotes WHERE symbol = '{yes}' AND bid = 0.5 AND ask = 0.505 AND ask_size = 7"),
        WAIT,
        None,
    )
    .await;

    // Trades with the taker's side as the venue states it.
    let t1 = fake.trade(TRUMP_YES, "BUY", "0.505", "7");
    let t2 = fake.trade(TRUMP_YES, "SELL", "0.49", "12.5");
    let t3 = fake.trade(TRUMP_NO, "SELL", "0.511", "3");
    wait_until(&c, "SELECT count(*) = 3 FROM tapeflow.ticks", WAIT, None).await;
    let ticks = c
        .query(
            "SELECT symbol, side::text, side_source, price, size, trade_id, (extract(epoch FROM time) * 1000)::bigint
             FROM tapeflow.ticks ORDER BY time",
            &[],
        )
        .await
        .unwrap();
    let expect = [
        (&yes, "B", 0.505, 7.0, format!("{t1}-B-0.505-7"), t1),
        (&yes, "S", 0.49, 12.5, format!("{t2}-S-0.49-12.5"), t2),
        (&no, "S", 0.511, 3.0, format!("{t3}-S-0.511-3"), t3),
    ];
    for (r, e) in ticks.iter().zip(&expect) {
        assert_eq!(&r.get::<_, String>(0), e.0);
        assert_eq!(r.get::<_, String>(1), e.1);
        assert_eq!(r.get::<_, String>(2), "venue");
        assert_eq!((r.get::<_, f64>(3), r.get::<_, f64>(4)), (e.2, e.3));
        assert_eq!(r.get::<_, String>(5), e.4);
        assert_eq!(r.get::<_, i64>(6), e.5);
    }

    // The venue's tick changes: kept beside the book and the market, the symbol's binning
    // tick does not move, and candles go on across the change.
    fake.tick_size_change(TRUMP_YES, "0.001", "0.01");
    wait_until(
        &c,
        &format!(
            "SELECT (SELECT tick_size = 0.01 FROM tapeflow.polymarket_markets WHERE condition_id = '{TRUMP_CONDITION}')
                AND (SELECT tick_size = 0.01 FROM tapeflow.polymarket_books WHERE token_id = '{TRUMP_YES}')"
        ),
        WAIT,
        None,
    )
    .await;
    fake.trade(TRUMP_YES, "BUY", "0.52", "10");
    wait_until(&c, &format!("SELECT count(*) = 3 FROM tapeflow.ticks WHERE symbol = '{yes}'"), WAIT, None)
        .await;
    assert_eq!(
        c.query_one("SELECT tick_size FROM tapeflow.symbols WHERE symbol = $1", &[&yes])
            .await
            .unwrap()
            .get::<_, f64>(0),
        0.001
    );
    let candle = c
        .query_one(
            "SELECT sum(volume), sum(buy_volume), sum(sell_volume), sum(trades)::bigint
             FROM tapeflow.candles($1, '1m', now() - interval '1 hour', now() + interval '1 hour')",
            &[&yes],
        )
        .await
        .unwrap();
    assert_eq!(
        (candle.get::<_, f64>(0), candle.get::<_, f64>(1), candle.get::<_, f64>(2), candle.get::<_, i64>(3)),
        (29.5, 17.0, 12.5, 3)
    );

    // The heartbeat: text PING, answered PONG.
    fake.wait("PINGs", WAIT, |f| f.pings() >= 2).await;
    wait_until(
        &c,
        "SELECT count(*) = 1 AND bool_and(state = 'connected') AND sum(parse_errors) = 0 FROM tapeflow.feed_status
         WHERE provider = 'polymarket' AND connection LIKE 'stream-%'",
        WAIT,
        Some(STATUS),
    )
    .await;
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.feed_rejects").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_books_are_resnapshotted_not_used() {
    let db = TestDb::create("polymarket", false).await;
    let c = db.client().await;
    let fake = captured_venue().await;
    // The first snapshots carry a wrong hash.
    fake.corrupt_hashes(2);
    let _feed = run_feed(&db, &fake, &[("TAPEFLOW_POLYMARKET_DIVERGENCE_GRACE_MS", "200")]);
    wait_top(&c, TRUMP_NO, "0.511", "0.514").await;
    wait_top(&c, TRUMP_YES, "0.49", "0.52").await;
    assert_eq!(
        resnapshots(&fake, TRUMP_NO) + resnapshots(&fake, TRUMP_YES),
        2,
        "{:?}",
        fake.client_messages()
    );
    let subs = fake.client_messages().iter().filter(|m| m.contains("\"operation\":\"subscribe\"")).count();
    assert!((1..=2).contains(&subs), "{:?}", fake.client_messages());

    // Out-of-order delivery: the older update arrives last; the book is re-snapshotted and
    // ends as the venue's.
    let before = resnapshots(&fake, TRUMP_YES);
    fake.hold(true);
    fake.price_change(&[(TRUMP_YES, "BUY", "0.495", "10")]);
    fake.price_change(&[(TRUMP_YES, "SELL", "0.51", "20")]);
    fake.release_reversed();
    fake.wait("a re-snapshot of YES", WAIT, |f| resnapshots(f, TRUMP_YES) > before).await;
    wait_top(&c, TRUMP_YES, "0.495", "0.51").await;
    let (bids, asks) = fake.depth(TRUMP_YES);
    let stored = c
        .query_one(
            "SELECT bid_prices, ask_prices FROM tapeflow.polymarket_books WHERE token_id = $1",
            &[&TRUMP_YES],
        )
        .await
        .unwrap();
    assert_eq!(stored.get::<_, Vec<rust_decimal::Decimal>>(0), bids);
    assert_eq!(stored.get::<_, Vec<rust_decimal::Decimal>>(1), asks);

    // A best_bid_ask that keeps disagreeing: re-snapshot after the grace; one that agrees: none.
    let before = resnapshots(&fake, TRUMP_NO);
    fake.best_bid_ask(TRUMP_NO, None);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(resnapshots(&fake, TRUMP_NO), before);
    fake.best_bid_ask(TRUMP_NO, Some(("0.3", "0.9")));
    fake.wait("a re-snapshot of NO", WAIT, |f| resnapshots(f, TRUMP_NO) > before).await;
    wait_top(&c, TRUMP_NO, "0.511", "0.514").await;
    wait_until(
        &c,
        "SELECT count(*) = 1 FROM tapeflow.feed_status WHERE provider = 'polymarket' AND connection LIKE 'stream-%'
           AND state = 'connected' AND symbols = 2",
        WAIT,
        Some(STATUS),
    )
    .await;
    // The mismatch was reported; nothing was unreadable.
    let err: String = c
        .query_one(
            "SELECT string_agg(coalesce(last_error, ''), ' | ') FROM tapeflow.feed_status WHERE provider = 'polymarket'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(err.contains("re-snapshotting"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_sharded_and_a_drop_reconnects_with_fresh_snapshots() {
    let db = TestDb::create("polymarket", false).await;
    let c = db.client().await;
    let fake = captured_venue().await;
    let _feed = run_feed(&db, &fake, &[("TAPEFLOW_POLYMARKET_ASSETS_PER_CONNECTION", "1")]);
    // Two tokens, one per connection.
    fake.wait("two sessions of one token each", WAIT, |f| {
        let s = f.session_assets();
        s.len() == 2 && s.iter().all(|a| a.len() == 1)
    })
    .await;
    wait_top(&c, TRUMP_NO, "0.511", "0.514").await;
    wait_top(&c, TRUMP_YES, "0.49", "0.52").await;
    let t0 = fake.trade(TRUMP_NO, "BUY", "0.514", "2");
    wait_until(
        &c,
        &format!("SELECT count(*) = 1 FROM tapeflow.ticks WHERE trade_id = '{t0}-B-0.514-2'"),
        WAIT,
        None,
    )
    .await;

    // The connections drop; meanwhile the book changes (not announced) and the framing turns to
    // bare objects. After the reconnect the fresh snapshots carry the new book.
    fake.refuse_connections(true);
    fake.drop_connections();
    fake.wait("no session", WAIT, |f| f.sessions() == 0).await;
    fake.set_book(TRUMP_YES, &[("0.4", "10"), ("0.45", "5")], &[("0.47", "8")]);
    fake.set_framing(Framing::Object);
    let attempts = fake.connections();
    fake.wait("reconnect attempts refused", WAIT, |f| f.connections() >= attempts + 2).await;
    fake.refuse_connections(false);
    fake.wait("two sessions again", WAIT, |f| {
        f.session_assets().iter().filter(|a| a.len() == 1).count() == 2
    })
    .await;
    wait_top(&c, TRUMP_YES, "0.45", "0.47").await;
    fake.price_change(&[(TRUMP_YES, "SELL", "0.46", "3")]);
    wait_top(&c, TRUMP_YES, "0.45", "0.46").await;
    // The last trade sent again after the reconnect is the same trade: stored once.
    fake.replay_last_trade(TRUMP_NO);
    let t = fake.trade(TRUMP_NO, "SELL", "0.511", "4");
    wait_until(
        &c,
        &format!("SELECT count(*) = 1 FROM tapeflow.ticks WHERE trade_id = '{t}-S-0.511-4'"),
        WAIT,
        None,
    )
    .await;
    assert_eq!(count(&c, "SELECT count(*) FROM tapeflow.ticks").await, 2);
    wait_until(
        &c,
        "SELECT count(*) = 2 AND bool_and(state = 'connected') AND bool_and(reconnects >= 1) FROM tapeflow.feed_status
         WHERE provider = 'polymarket' AND connection LIKE 'stream-%'",
        WAIT,
        Some(STATUS),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_are_counted_and_the_feed_goes_on() {
    let db = TestDb::create("polymarket", false).await;
    let c = db.client().await;
    let fake = captured_venue().await;
    // The first discovery answer is garbage: the round is tried again.
    fake.push_gamma_fault(GammaFault::Garbage);
    let _feed = run_feed(&db, &fake, &[("TAPEFLOW_POLYMARKET_MAX_FRAME_BYTES", "100000")]);
    wait_top(&c, TRUMP_NO, "0.511", "0.514").await;
    let parse_errors = "SELECT coalesce(sum(parse_errors), 0)::bigint FROM tapeflow.feed_status WHERE provider = 'polymarket'";
    assert_eq!(count(&c, parse_errors).await, 0);

    fake.send_raw("{\"event_type\": \"book\", \"market\": ");
    fake.send_unknown_event();
    fake.send_raw(&format!("[{{\"event_type\":\"last_trade_price\",\"pad\":\"{}\"}}]", "x".repeat(200_000)));
    // An array with one bad element beside a good one: the good one is used.
    let good = {
        let mut v = capture("nautilus_py_tests_ws_messages/last_trade_price.json");
        v["asset_id"] = serde_json::json!(TRUMP_YES);
        v["market"] = serde_json::json!(TRUMP_CONDITION);
        v["timestamp"] = serde_json::json!(chrono::Utc::now().timestamp_millis().to_string());
        v
    };
    fake.send_raw(&format!(
        r#"[{{"event_type":"last_trade_price","asset_id":"{TRUMP_YES}","price":"2"}}, {good}]"#
    ));
    fake.send_raw("null");
    // Bare objects now: the feed reads both framings.
    fake.set_framing(Framing::Object);
    let t = fake.trade(TRUMP_YES, "SELL", "0.49", "1");
    wait_until(&c, "SELECT count(*) = 2 FROM tapeflow.ticks", WAIT, Some(STATUS)).await;
    assert_eq!(
        count(&c, &format!("SELECT count(*) FROM tapeflow.ticks WHERE trade_id = '{t}-S-0.49-1'")).await,
        1
    );
    wait_until(&c, &format!("SELECT ({parse_errors}) = 5"), WAIT, Some(STATUS)).await;
    // The feed went on, on the same connection.
    assert_eq!(fake.connections(), 1);
    fake.price_change(&[(TRUMP_NO, "BUY", "0.512", "9")]);
    wait_top(&c, TRUMP_NO, "0.512", "0.514").await;
    assert!(fake.gamma_requests().iter().filter(|r| r.starts_with("/markets")).count() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_markets_are_streamed_and_resolutions_close_markets() {
    let db = TestDb::create("polymarket", false).await;
    let c = db.client().await;
    let fake = captured_venue().await;
    let _feed = run_feed(&db, &fake, &[]);
    wait_top(&c, TRUMP_NO, "0.511", "0.514").await;

    // Listed between refreshes (the next is in ten minutes): stored at once and streamed.
    let fresh = FakeMarket::synthetic(7, ("2", "politics"));
    fake.new_market(fresh.clone());
    fake.set_book(&fresh.tokens[0], &[("0.3", "100")], &[("0.35", "50")]);
    wait_until(
        &c,
        &format!(
            "SELECT count(*) = 2 FROM tapeflow.polymarket_tokens WHERE condition_id = '{}'",
            fresh.condition_id
        ),
        WAIT,
        Some(STATUS),
    )
    .await;
    fake.wait("the new tokens subscribed", WAIT, |f| f.subscribed().contains(&fresh.tokens[1])).await;
    wait_top(&c, &fresh.tokens[0], "0.3", "0.35").await;
    // One outside the filters is not.
    let other = FakeMarket::synthetic(8, ("100", "sports"));
    fake.new_market(other.clone());

    // Resolution: the market closes with its winner, its tokens stop being fed.
    let at = fake.resolve(TRUMP_CONDITION, 0);
    wait_until(
        &c,
        &format!(
            "SELECT count(*) = 1 FROM tapeflow.polymarket_markets WHERE condition_id = '{TRUMP_CONDITION}' AND closed
               AND NOT accepting_orders AND winning_token_id = '{TRUMP_YES}' AND winning_outcome = 'Yes'
               AND (extract(epoch FROM resolved_at) * 1000)::bigint = {at}"
        ),
        WAIT,
        Some(STATUS),
    )
    .await;
    let winners: Vec<(String, Option<bool>)> = c
        .query(
            "SELECT token_id, winner FROM tapeflow.polymarket_tokens WHERE condition_id = $1 ORDER BY outcome_index",
            &[&TRUMP_CONDITION],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(winners, vec![(TRUMP_YES.to_string(), Some(true)), (TRUMP_NO.to_string(), Some(false))]);
    wait_until(
        &c,
        &format!(
            "SELECT count(*) = 2 FROM tapeflow.symbols s JOIN tapeflow.polymarket_tokens t ON t.symbol = s.symbol
             WHERE t.condition_id = '{TRUMP_CONDITION}' AND NOT s.active"
        ),
        WAIT,
        None,
    )
    .await;
    fake.wait("the resolved tokens unsubscribed", WAIT, |f| {
        let s = f.subscribed();
        !s.contains(TRUMP_YES) && !s.contains(TRUMP_NO) && s.contains(&fresh.tokens[0])
    })
    .await;
    assert_eq!(
        count(
            &c,
            &format!(
                "SELECT count(*) FROM tapeflow.polymarket_markets WHERE condition_id = '{}'",
                other.condition_id
            )
        )
        .await,
        0
    );
}

/// Book update → `tapeflow.polymarket_books` with the default throttle (100 ms per token): the
/// latency of single updates of a token not written within the interval, and a burst of 500
/// whose last state must be the one stored. Prints the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn book_updates_reach_the_database_throttled() {
    let db = TestDb::create("polymarket", false).await;
    let c = db.client().await;
    let fake = captured_venue().await;
    let _feed = run_feed(&db, &fake, &[("TAPEFLOW_POLYMARKET_BOOK_MS", "100")]);
    wait_top(&c, TRUMP_YES, "0.49", "0.52").await;
    let mut latencies = Vec::new();
    for i in 0..40u32 {
        let size = format!("{}", 100 + i);
        // Past the token's throttle interval: the update is written at once.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let start = std::time::Instant::now();
        fake.price_change(&[(TRUMP_YES, "BUY", "0.49", &size)]);
        wait_until(
            &c,
            &format!(
                "SELECT bid_sizes[1] = {size} FROM tapeflow.polymarket_books WHERE token_id = '{TRUMP_YES}'"
            ),
            WAIT,
            None,
        )
        .await;
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let start = std::time::Instant::now();
    for i in 0..500u32 {
        let price = format!("0.{:03}", 300 + (i % 150));
        fake.price_change(&[(TRUMP_YES, "BUY", &price, &format!("{}", 1 + i))]);
    }
    // The last update set 0.349 to 500.
    let (bids, asks) = fake.depth(TRUMP_YES);
    wait_until(
        &c,
        &format!(
            "SELECT cardinality(bid_prices) = {} AND bid_sizes[array_position(bid_prices, 0.349)] = 500
             FROM tapeflow.polymarket_books
             WHERE token_id = '{TRUMP_YES}'",
            bids.len()
        ),
        WAIT,
        None,
    )
    .await;
    let burst = start.elapsed().as_secs_f64() * 1000.0;
    let stored = c
        .query_one(
            "SELECT bid_prices, ask_prices FROM tapeflow.polymarket_books WHERE token_id = $1",
            &[&TRUMP_YES],
        )
        .await
        .unwrap();
    assert_eq!(stored.get::<_, Vec<rust_decimal::Decimal>>(0), bids);
    assert_eq!(stored.get::<_, Vec<rust_decimal::Decimal>>(1), asks);
    println!(
        "polymarket book update -> polymarket_books: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms (40 single updates \
         150 ms apart, 100 ms throttle); 500-update burst stored in {burst:.0} ms",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 9 / 10],
        latencies[latencies.len() - 1]
    );
}
