//! Fuzz targets of the Polymarket parsers: every market-channel frame goes through
//! `parse_frame` and every Gamma page through `parse_markets_page`, so they must return an
//! error, never panic, account for every element, and hand on only what the book, the writers
//! and `tapeflow.polymarket_*` take: prices inside (0, 1), positive trade sizes, ids of
//! bounded length, timestamps a `timestamptz` holds, fee parameters in range, two distinct
//! tokens per market. The harness is the analytics crate's (`analytics/tests/fuzz_common`);
//! `make fuzz` runs it long.

#[path = "../../analytics/tests/fuzz_common/mod.rs"]
mod fuzz_common;

use fuzz_common::{dictionary, fuzz, keys_of, mutated_json};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tapeflow_analytics::polymarket::book::Book;
use tapeflow_feeders::providers::polymarket::frames::{parse_frame, time_of, trade_id, MarketEvent};
use tapeflow_feeders::providers::polymarket::gamma::{parse_markets_page, Fees};
use tapeflow_feeders::providers::polymarket::store::symbol_name;

fn check_id(s: &str) {
    assert!(!s.is_empty() && s.len() <= 100 && !s.chars().any(char::is_whitespace), "{s:?}");
}

fn check_event(e: &MarketEvent) {
    let check_ms = |ms: i64| {
        assert!((0..=7_258_118_400_000).contains(&ms), "{ms}");
        assert_eq!(time_of(ms).timestamp_millis(), ms);
    };
    match e {
        MarketEvent::Book(b) => {
            check_id(&b.market);
            check_id(&b.asset_id);
            check_ms(b.timestamp_ms);
            assert!(b.tick_size.is_none_or(|t| t > Decimal::ZERO && t < Decimal::ONE));
            // The book takes it or says why; it never panics, and what it takes is ordered.
            if let Ok(book) = Book::from_snapshot(b.bids.clone(), b.asks.clone()) {
                let bids: Vec<Decimal> = book.bids().map(|l| l.price).collect();
                assert!(bids.windows(2).all(|w| w[0] > w[1]));
                let _ = book.venue_hash(&b.market, &b.asset_id);
            }
        }
        MarketEvent::PriceChange(p) => {
            check_id(&p.market);
            check_ms(p.timestamp_ms);
            let mut book = Book::new();
            let changes: Vec<_> = p.changes.iter().map(|c| c.change).collect();
            for c in &p.changes {
                check_id(&c.asset_id);
            }
            let _ = book.apply_message(p.timestamp_ms, &changes, None);
        }
        MarketEvent::LastTrade(t) => {
            check_id(&t.asset_id);
            check_ms(t.timestamp_ms);
            assert!(t.price > Decimal::ZERO && t.price < Decimal::ONE, "{t:?}");
            assert!(t.size > Decimal::ZERO, "{t:?}");
            let id = trade_id(t, 1);
            assert!(!id.is_empty() && id.len() <= 200, "{id}");
            assert_eq!(id, trade_id(&t.clone(), 1), "the id is a function of the message");
            assert_ne!(id, trade_id(t, 2));
        }
        MarketEvent::TickSize(t) => {
            check_ms(t.timestamp_ms);
            assert!(t.new_tick_size > Decimal::ZERO && t.new_tick_size < Decimal::ONE);
        }
        MarketEvent::BestBidAsk(b) => check_ms(b.timestamp_ms),
        MarketEvent::NewMarket(m) => {
            check_id(&m.condition_id);
            m.asset_ids.iter().for_each(|a| check_id(a));
        }
        MarketEvent::Resolved(r) => {
            check_id(&r.condition_id);
            check_id(&r.winning_asset_id);
            check_ms(r.timestamp_ms);
        }
        MarketEvent::Pong => {}
    }
}

fn ms() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        (1_600_000_000_000i64..1_900_000_000_000).prop_map(|t| json!(t.to_string())),
        Just(json!("1728799418260")),
        Just(json!(1729084877448i64)),
    ]
}

fn price() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        (1u32..1000).prop_map(|p| json!(format!("0.{p:03}"))),
        Just(json!(".48")),
        Just(json!("0.50")),
        Just(json!("1")),
        Just(json!("0")),
    ]
}

fn size() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        (0u32..1_000_000).prop_map(|s| json!(format!("{}.{:02}", s / 100, s % 100))),
        Just(json!("219.217767"))
    ]
}

fn side() -> impl Strategy<Value = Value> + Clone {
    prop::sample::select(vec![json!("BUY"), json!("SELL"), json!("buy")])
}

const MARKET: &str = "0xdd22472e552920b8438158ea7238bfadfa4f736aa4cee91a6b86c39ead110917";
const ASSET: &str = "48331043336612883890938759509493159234755048973500640148014422747788308965732";

/// Market-channel messages of every type, in the captured shapes.
fn message() -> impl Strategy<Value = Value> + Clone {
    let level = (price(), size()).prop_map(|(p, s)| json!({"price": p, "size": s}));
    let book = (prop::collection::vec(level.clone(), 0..6), prop::collection::vec(level, 0..6), ms())
        .prop_map(|(bids, asks, t)| {
            json!({"event_type":"book","asset_id":ASSET,"market":MARKET,"bids":bids,"asks":asks,"timestamp":t,
                   "hash":"655a38d4977427b086c25b985993691b753ed166"})
        });
    let entry = (price(), size(), side(), price(), price()).prop_map(|(p, s, sd, bb, ba)| {
        json!({"asset_id":ASSET,"price":p,"size":s,"side":sd,"hash":"bf32b3746fff40c76c98021b7f3f07261169dd26",
               "best_bid":bb,"best_ask":ba})
    });
    let v2 = (prop::collection::vec(entry, 1..4), ms()).prop_map(
        |(e, t)| json!({"market":MARKET,"price_changes":e,"timestamp":t,"event_type":"price_change"}),
    );
    let v1 = (price(), size(), side(), ms()).prop_map(|(p, s, sd, t)| {
        json!({"asset_id":ASSET,"event_type":"price_change","hash":"h","market":MARKET,"price":p,"side":sd,"size":s,"timestamp":t})
    });
    let trade = (price(), size(), side(), ms()).prop_map(|(p, s, sd, t)| {
        json!({"asset_id":ASSET,"event_type":"last_trade_price","fee_rate_bps":"0","market":MARKET,"price":p,"side":sd,
               "size":s,"timestamp":t})
    });
    prop_oneof![
        2 => book,
        3 => v2,
        1 => v1,
        3 => trade,
        1 => ms().prop_map(|t| json!({"asset_id":ASSET,"event_type":"tick_size_change","market":MARKET,
                                      "new_tick_size":"0.001","old_tick_size":"0.01","timestamp":t})),
        1 => (price(), price(), ms()).prop_map(|(b, a, t)| json!({"event_type":"best_bid_ask","market":MARKET,
                                      "asset_id":ASSET,"best_bid":b,"best_ask":a,"spread":"0.04","timestamp":t})),
        1 => Just(json!({"event_type":"new_market","id":"1031769","question":"q","market":MARKET,"slug":"s",
                         "assets_ids":[ASSET, "1"],"outcomes":["Yes","No"],"timestamp":"1766790415550","tags":["stocks"],
                         "condition_id":MARKET,"clob_token_ids":[ASSET, "1"]})),
        1 => Just(json!({"event_type":"market_resolved","id":"1","market":MARKET,"assets_ids":[ASSET, "1"],
                         "winning_asset_id":ASSET,"winning_outcome":"Yes","timestamp":"1766790415550"})),
    ]
}

fn frame() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        2 => prop::collection::vec(message(), 1..5).prop_map(Value::Array),
        1 => message(),
    ]
}

#[test]
fn fuzz_polymarket_frames() {
    let sample = json!([
        {"event_type":"book","asset_id":"","market":"","bids":[{"price":"","size":""}],"asks":[],"timestamp":"","hash":"","tick_size":""},
        {"market":"","price_changes":[{"asset_id":"","price":"","size":"","side":"","hash":"","best_bid":"","best_ask":""}],"timestamp":"","event_type":""},
        {"changes":[{"price":"","side":"","size":""}],"fee_rate_bps":"","transaction_hash":"","new_tick_size":"","old_tick_size":"",
         "spread":"","winning_asset_id":"","winning_outcome":"","assets_ids":[],"clob_token_ids":[],"outcomes":[],"tags":[],"condition_id":""}
    ]);
    let mut keys = keys_of(&sample);
    keys.extend(
        [
            "book",
            "price_change",
            "last_trade_price",
            "tick_size_change",
            "best_bid_ask",
            "new_market",
            "market_resolved",
            "BUY",
            "SELL",
        ]
        .map(String::from),
    );
    let frames = prop_oneof![
        20 => mutated_json(frame(), dictionary(keys)),
        1 => Just("PONG".to_string()),
    ];
    fuzz("polymarket_frames", frames, |text| {
        let Ok((events, bad)) = parse_frame(text) else { return false };
        // Every element is read or reported.
        let elements = match serde_json::from_str::<Value>(text.trim()) {
            Ok(Value::Array(a)) => a.len(),
            _ => 1,
        };
        assert_eq!(events.len() + bad.len(), elements, "{text}");
        events.iter().for_each(check_event);
        bad.is_empty()
    });
}

fn gamma_market() -> impl Strategy<Value = Value> + Clone {
    let tokens = prop_oneof![
        Just(json!("[\"104239898038807136052399800151408521467737075933964991162589336683346093173875\", \"71183960810705820955071415844881728181970340514894896943812046065452395013351\"]")),
        Just(json!(["1", "2"])),
        Just(json!("[\"1\"]")),
    ];
    let fees = prop_oneof![
        Just(json!({"feesEnabled": false})),
        Just(json!({"feesEnabled": true, "feeType": "crypto_fees"})),
        Just(
            json!({"feesEnabled": true, "feeSchedule": {"exponent": 1, "rate": 0.03, "rebateRate": 0.25, "takerOnly": true}})
        ),
        Just(json!({"feesEnabled": true, "feeType": "other"})),
    ];
    (tokens, fees, 0u32..3, any::<bool>()).prop_map(|(t, f, tick, neg)| {
        let ticks = [0.01, 0.001, 0.1];
        let mut m = json!({
            "id": "1557558", "question": "Bitcoin Up or Down?", "conditionId": "0x78443f961b9a65869dcb39359de9960165c7e5cbad0904eac7f29cd77872a63b",
            "slug": "btc-updown-5m-1773307200", "endDate": "2026-03-12T09:25:00Z", "outcomes": "[\"Up\", \"Down\"]",
            "clobTokenIds": t, "active": true, "closed": false, "orderPriceMinTickSize": ticks[tick as usize],
            "orderMinSize": 5, "negRisk": neg, "negRiskMarketID": "0x2c3d", "acceptingOrders": true, "enableOrderBook": true,
            "events": [{"id": "260654", "slug": "btc-updown", "negRiskAugmented": false}],
            "tags": [{"id": "2", "label": "Politics", "slug": "politics"}]
        });
        for (k, v) in f.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    })
}

#[test]
fn fuzz_polymarket_gamma_pages() {
    let page = prop::collection::vec(gamma_market(), 0..4).prop_map(Value::Array);
    let mut keys = keys_of(&gamma_market_sample());
    keys.push("data".into());
    let pages = mutated_json(page, dictionary(keys));
    fuzz("polymarket_gamma_pages", pages, |text| {
        let Ok((markets, bad, n)) = parse_markets_page(text) else { return false };
        assert_eq!(markets.len() + bad.len(), n, "{text}");
        for m in &markets {
            assert!(!m.condition_id.is_empty() && m.condition_id.len() <= 100);
            assert_eq!(m.tokens.len(), 2);
            assert_ne!(m.tokens[0].0, m.tokens[1].0);
            m.tokens.iter().for_each(|(t, _)| check_id(t));
            let (rate, exp) = m.fees.parameters();
            assert!(rate >= Decimal::ZERO && rate < Decimal::ONE && (0..=8).contains(&exp), "{:?}", m.fees);
            assert!(m.fees != Fees::Unknown || rate.is_zero());
            assert!(m.min_order_size >= Decimal::ZERO);
            assert!(m.tick_size.is_none_or(|t| t > Decimal::ZERO && t < Decimal::ONE));
            for (_, outcome) in &m.tokens {
                let s = symbol_name(m.slug.as_deref().unwrap_or(""), outcome);
                assert!(s.starts_with("pm-") && s.len() <= 124, "{s}");
                assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "{s}");
            }
        }
        bad.is_empty() && !markets.is_empty()
    });
}

fn gamma_market_sample() -> Value {
    json!({"id": "", "question": "", "conditionId": "", "slug": "", "endDate": "", "endDateIso": "", "outcomes": "",
           "clobTokenIds": "", "active": true, "closed": false, "orderPriceMinTickSize": 0, "orderMinSize": 0,
           "negRisk": false, "negRiskMarketID": "", "acceptingOrders": true, "enableOrderBook": true, "feesEnabled": true,
           "feeType": "", "feeSchedule": {"exponent": 1, "rate": 0}, "description": "",
           "events": [{"id": "", "slug": "", "negRiskAugmented": false}], "tags": [{"id": "", "label": "", "slug": ""}]})
}
