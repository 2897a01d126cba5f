//! Fuzz targets of the Alpaca market data parsers: every stream frame goes through
//! `parse_stream_frame` and every history page through `parse_trades_page` /
//! `parse_quotes_page`, so they must return an error, never panic, account for every element
//! of a frame, and accept only what `tapeflow.ticks`, `tapeflow.quotes` and
//! `tapeflow.vendor_bars_1m` take. The harness is the analytics crate's
//! (`analytics/tests/fuzz_common`); `make fuzz` runs it long.

#[path = "../../analytics/tests/fuzz_common/mod.rs"]
mod fuzz_common;

use fuzz_common::{dictionary, fuzz, keys_of, mutated_json};
use proptest::prelude::*;
use serde_json::{json, Value};
use tapeflow_analytics::Side;
use tapeflow_feeders::providers::alpaca::frames::{
    parse_quotes_page, parse_stream_frame, parse_trades_page, Bar, Quote, StreamMessage, Trade,
};
use tapeflow_feeders::providers::alpaca::rest::{quote_row, tick_amend, tick_row};

fn check_trade(t: &Trade) {
    assert!(t.price.is_finite() && t.price > 0.0, "{t:?}");
    assert!(t.size.is_finite() && t.size >= 0.0, "{t:?}");
    assert!(!t.symbol.is_empty() && t.symbol.len() <= 64, "{t:?}");
    assert!(t.conditions.len() <= 32 && t.conditions.iter().all(|c| c.len() <= 8), "{t:?}");
    let row = tick_row(&t.symbol, t, Side::Buy, "inferred");
    assert!(!row.trade_id.is_empty() && row.trade_id.len() <= 40, "{row:?}");
    assert_eq!(row.trade_id, t.trade_id());
}

fn check_quote(q: &Quote) {
    for x in [q.bid, q.ask, q.bid_size, q.ask_size] {
        assert!(x.is_finite() && x >= 0.0, "{q:?}");
    }
    let row = quote_row(&q.symbol, q);
    assert!(row.exchange.as_ref().is_none_or(|e| e.len() <= 33), "{row:?}");
}

fn check_bar(b: &Bar) {
    assert!(b.low > 0.0 && b.low <= b.open.min(b.close) && b.high >= b.open.max(b.close), "{b:?}");
    assert!(b.volume.is_finite() && b.volume >= 0.0, "{b:?}");
    assert_eq!(b.time.timestamp().rem_euclid(60), 0, "{b:?}");
    assert!(b.trades.is_none_or(|n| n >= 0), "{b:?}");
}

/// A cancel or correction names a stored trade id of the trades' form; a correction's trade is
/// one `tapeflow.ticks` takes.
fn check_amend(a: &tapeflow_feeders::provider::TickAmend) {
    assert!(!a.trade_id.is_empty() && a.trade_id.len() <= 40, "{a:?}");
    if let Some(r) = &a.replacement {
        assert!(r.price.is_finite() && r.price > 0.0 && r.size.is_finite() && r.size >= 0.0, "{a:?}");
        assert!(
            r.conditions.as_ref().is_none_or(|c| c.len() <= 32 && c.iter().all(|c| c.len() <= 8)),
            "{a:?}"
        );
    }
}

fn time() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        Just("2021-02-22T15:51:44.208Z".to_string()),
        Just("2021-02-22T15:51:45.335689322Z".to_string()),
        Just("2024-03-10T06:59:59.999999999-05:00".to_string()),
        (0u32..60).prop_map(|m| format!("2021-02-22T19:{m:02}:00Z")),
    ]
}

fn price() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        (1u32..1_000_000).prop_map(|n| json!(f64::from(n) / 100.0)),
        Just(json!(126.55)),
        Just(json!(0))
    ]
}

/// Stream messages of every type the feeder reads, as the docs show them.
fn message() -> impl Strategy<Value = Value> + Clone {
    let trade = (time(), price(), 0u32..100_000, any::<u32>()).prop_map(
        |(t, p, s, i)| json!({"T":"t","i":i,"S":"AAPL","x":"D","p":p,"s":s,"t":t,"c":["@","I"],"z":"C"}),
    );
    let quote = (time(), price(), price()).prop_map(|(t, b, a)| {
        json!({"T":"q","S":"AMD","bx":"U","bp":b,"bs":1,"ax":"Q","ap":a,"as":4,"t":t,"c":["R"],"z":"C"})
    });
    let bar = (time(), price())
        .prop_map(|(t, p)| json!({"T":"b","S":"SPY","o":p,"h":p,"l":p,"c":p,"v":49378,"t":t,"n":12,"vw":p}));
    let cancel = (time(), price(), any::<u32>())
        .prop_map(|(t, p, i)| json!({"T":"x","S":"AAPL","i":i,"x":"D","p":p,"s":1,"a":"C","z":"C","t":t}));
    let correction = (time(), price(), any::<u32>(), any::<u32>()).prop_map(|(t, p, oi, ci)| {
        json!({"T":"c","S":"AAPL","x":"D","oi":oi,"op":p,"os":1,"oc":["@"],"ci":ci,"cp":p,"cs":3,"cc":["@","I"],"z":"C","t":t})
    });
    prop_oneof![
        4 => trade,
        3 => quote,
        1 => bar,
        1 => cancel,
        1 => correction,
        1 => prop::sample::select(vec![
            json!({"T":"success","msg":"connected"}),
            json!({"T":"success","msg":"authenticated"}),
            json!({"T":"error","code":406,"msg":"connection limit exceeded"}),
            json!({"T":"subscription","trades":["AAPL"],"quotes":["AMD","CLDR"],"bars":["IBM"]}),
            json!({"T":"s","S":"AAPL","sc":"H","sm":"Trading Halt","t":"2021-02-22T19:15:00Z","z":"C"}),
        ]),
    ]
}

fn frame() -> impl Strategy<Value = Value> + Clone {
    prop::collection::vec(message(), 1..5).prop_map(Value::Array)
}

#[test]
fn fuzz_alpaca_data_frames() {
    let sample = json!([
        {"T":"t","i":1,"S":"A","x":"D","p":1,"s":1,"t":"2021-02-22T15:51:44Z","c":["@"],"z":"C"},
        {"T":"q","S":"A","bx":"U","bp":1,"bs":1,"ax":"Q","ap":1,"as":1,"t":"2021-02-22T15:51:44Z"},
        {"T":"b","S":"A","o":1,"h":1,"l":1,"c":1,"v":1,"n":1,"vw":1,"t":"2021-02-22T15:51:00Z"},
        {"T":"error","code":1,"msg":"m"},{"T":"subscription","trades":[],"quotes":[],"bars":[]},
        {"T":"c","S":"A","x":"D","oi":1,"op":1,"os":1,"oc":[],"ci":2,"cp":1,"cs":1,"cc":[],"t":"2021-02-22T15:51:44Z"},
        {"T":"x","S":"A","i":1,"x":"D","p":1,"s":1,"a":"C","t":"2021-02-22T15:51:44Z"}
    ]);
    let mut keys = keys_of(&sample);
    keys.extend(
        ["t", "q", "b", "u", "d", "c", "x", "success", "error", "subscription", "authenticated"]
            .map(String::from),
    );
    let frames = mutated_json(frame(), dictionary(keys));
    fuzz("alpaca_data_frames", frames, |text| {
        let Ok((msgs, bad)) = parse_stream_frame(text) else { return false };
        // Every element is read or reported.
        let elements = match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(a)) => a.len(),
            _ => 1,
        };
        assert_eq!(msgs.len() + bad.len(), elements, "{text}");
        for m in &msgs {
            match m {
                StreamMessage::Trade(t) => check_trade(t),
                StreamMessage::Quote(q) => check_quote(q),
                StreamMessage::Bar(b) => check_bar(b),
                StreamMessage::Amend(a) => check_amend(&tick_amend(a.symbol(), a)),
                _ => {}
            }
        }
        bad.is_empty()
    });
}

fn page(kind: &'static str) -> impl Strategy<Value = Value> + Clone {
    let trade = (time(), price(), any::<u32>())
        .prop_map(|(t, p, i)| json!({"t":t,"x":"V","p":p,"s":50,"c":["@","T","I"],"i":i,"z":"C"}))
        .prop_flat_map(|item| {
            prop::sample::select(vec![None, Some("canceled"), Some("incorrect"), Some("corrected")]).prop_map(
                move |u| {
                    let mut item = item.clone();
                    if let Some(u) = u {
                        item["u"] = json!(u);
                    }
                    item
                },
            )
        });
    let quote = (time(), price(), price())
        .prop_map(|(t, b, a)| json!({"t":t,"ax":"Q","ap":a,"as":4,"bx":"K","bp":b,"bs":2,"c":["R"],"z":"C"}));
    let item = if kind == "trades" { trade.boxed() } else { quote.boxed() };
    (prop::collection::vec(item, 0..4), any::<bool>(), any::<bool>()).prop_map(
        move |(items, multi, token)| {
            let token =
                if token { json!("QUFQTHwyMDIyLTAzLTA5VDA1OjAwOjE2LjkxWnxEfDE2OA==") } else { Value::Null };
            if multi {
                json!({ kind: {"AAPL": items}, "next_page_token": token })
            } else {
                json!({ kind: items, "symbol": "AAPL", "next_page_token": token })
            }
        },
    )
}

#[test]
fn fuzz_alpaca_data_pages() {
    let mut keys = keys_of(&json!({"trades": {"AAPL": [{"t":"","x":"","p":1,"s":1,"c":[],"i":1,"z":""}]},
        "quotes": [{"ax":"","ap":1,"as":1,"bx":"","bp":1,"bs":1}], "symbol": "", "next_page_token": ""}));
    keys.push("AAPL".into());
    let keys = dictionary(keys);
    let pages = prop_oneof![mutated_json(page("trades"), keys), mutated_json(page("quotes"), keys)];
    fuzz("alpaca_data_pages", pages, |text| {
        let trades = parse_trades_page(text.as_bytes());
        let quotes = parse_quotes_page(text.as_bytes());
        for p in [
            &trades.as_ref().ok().map(|p| &p.next_page_token),
            &quotes.as_ref().ok().map(|p| &p.next_page_token),
        ]
        .into_iter()
        .flatten()
        {
            assert!(p.as_ref().is_none_or(|t| !t.is_empty() && t.len() <= 4096));
        }
        let mut ok = false;
        if let Ok(p) = &trades {
            p.items.iter().for_each(check_trade);
            ok |= !p.items.is_empty() && p.bad.is_empty();
        }
        if let Ok(p) = &quotes {
            p.items.iter().for_each(check_quote);
            ok |= !p.items.is_empty() && p.bad.is_empty();
        }
        ok
    });
}
