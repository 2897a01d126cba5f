//! Fuzz target of the Alpaca `trade_updates` stream parser (`parse_frame`): every frame the
//! broker's WebSocket delivers goes through it, so it must return an error, never panic. The
//! harness is the analytics crate's (`analytics/tests/fuzz_common`); `make fuzz` runs it long.

#[path = "../../analytics/tests/fuzz_common/mod.rs"]
mod fuzz_common;

use fuzz_common::{dictionary, fuzz, keys_of, mutated_json};
use proptest::prelude::*;
use serde_json::{json, Value};
use tapeflow_executor::broker::alpaca::{parse_frame, StreamMessage};

/// An order as the stream sends it, a bracket with its two legs or a plain one.
fn order(bracket: bool, qty: Value, price: Value) -> Value {
    let leg = |id: &str, coid: &str, kind: &str, limit: Value, stop: Value| {
        json!({"id": id, "client_order_id": coid, "symbol": "AAPL", "side": "sell", "qty": qty,
               "filled_qty": "0", "order_class": "bracket", "type": kind, "limit_price": limit,
               "stop_price": stop, "status": "held", "legs": null})
    };
    let legs = if bracket {
        json!([
            leg("l-1", "tf-7-tp", "limit", json!("110.5"), Value::Null),
            leg("l-2", "", "stop", Value::Null, json!("95"))
        ])
    } else {
        Value::Null
    };
    json!({
        "id": "a5be8f5e-fdfa-41f5-a644-7a74fe947a8f", "client_order_id": "tf-7-entry", "symbol": "AAPL",
        "asset_class": "us_equity", "side": "buy", "qty": qty, "filled_qty": qty, "filled_avg_price": price,
        "order_class": if bracket { "bracket" } else { "" }, "type": "market", "order_type": "market",
        "status": "filled", "limit_price": null, "stop_price": null, "time_in_force": "day",
        "created_at": "2024-01-02T14:30:00.123456789-05:00", "submitted_at": "2024-01-02T14:30:00.1Z",
        "updated_at": "2024-01-02T14:30:01Z", "filled_at": "2024-01-02T19:30:01Z", "legs": legs
    })
}

/// Frames of every kind the client reads: authorization, listening and trade updates of
/// every event, amounts as strings or numbers.
fn frame() -> impl Strategy<Value = Value> + Clone {
    let event = prop::sample::select(vec![
        "new",
        "fill",
        "partial_fill",
        "canceled",
        "expired",
        "replaced",
        "rejected",
    ]);
    let amount = prop_oneof![
        (1u32..100_000).prop_map(|n| json!(format!("{}", f64::from(n) / 100.0))),
        (1u32..1000).prop_map(|n| json!(n)),
        Just(json!("1790.86")),
    ];
    let update = (event, any::<bool>(), amount.clone(), amount, any::<bool>()).prop_map(
        |(event, bracket, qty, price, id)| {
            let mut data = json!({"event": event, "order": order(bracket, qty.clone(), price.clone()),
                              "timestamp": "2024-01-02T19:30:01.024916716Z", "position_qty": "10"});
            if matches!(event, "fill" | "partial_fill") {
                data["qty"] = qty;
                data["price"] = price;
            }
            if id {
                data["execution_id"] = json!("2f63ea93-423d-4169-b3f6-3fdafc10c418");
            }
            json!({"stream": "trade_updates", "data": data})
        },
    );
    prop_oneof![
        1 => any::<bool>().prop_map(|ok| json!({"stream": "authorization",
            "data": {"status": if ok { "authorized" } else { "unauthorized" }, "action": "authenticate"}})),
        1 => Just(json!({"stream": "listening", "data": {"streams": ["trade_updates"]}})),
        6 => update,
    ]
}

#[test]
fn fuzz_alpaca_frames() {
    let mut keys = keys_of(&frame_sample());
    keys.extend(["account_updates", "authorized", "trade_updates", "fill", "partial_fill"].map(String::from));
    let keys = dictionary(keys);
    let frames = mutated_json(frame(), keys).prop_map(String::into_bytes);
    fuzz("alpaca_frames", frames, |bytes| {
        let Ok(m) = parse_frame(bytes) else { return false };
        if let StreamMessage::TradeUpdate(u) = &m {
            assert_eq!(u.fill.is_some(), matches!(u.event.as_str(), "fill" | "partial_fill"), "{u:?}");
            assert!(!u.order.client_order_id.is_empty());
            for leg in &u.order.legs {
                assert!(!leg.client_order_id.is_empty());
            }
        }
        true
    });
}

/// A frame holding every key the parser reads.
fn frame_sample() -> Value {
    let mut data = json!({"event": "fill", "order": order(true, json!("10"), json!("100.5")), "qty": "10",
                          "price": "100.5", "execution_id": "e", "timestamp": "2024-01-02T19:30:01Z"});
    data["order"]["legs"][0]["legs"] = json!([]);
    json!({"stream": "trade_updates", "data": data, "streams": []})
}
