//! Fuzz targets of the IG provider's parsers: every WebSocket message of the Lightstreamer
//! stream goes through `tlcp::lines`, `tlcp::parse_line`, `ItemState::apply` and the
//! conversions to quotes and ticks; every REST answer through `rest::parse_prices`,
//! `rest::bar_of`, `rest::parse_session` and `rest::answer_error`. None may panic; what they
//! accept must be what `tapeflow.quotes`, `tapeflow.ticks` and `tapeflow.bars_1m_imported`
//! take, and an update that is refused must leave the item's values as they were. The harness
//! is the analytics crate's (`analytics/tests/fuzz_common`); `make fuzz` runs it long.

#[path = "../../analytics/tests/fuzz_common/mod.rs"]
mod fuzz_common;

use chrono::{DateTime, Utc};
use chrono_tz::Europe::London;
use fuzz_common::{dictionary, fuzz, keys_of, mutated_bytes, mutated_json};
use proptest::prelude::*;
use serde_json::{json, Value};
use tapeflow_feeders::providers::ig::convert::{self, TickIds};
use tapeflow_feeders::providers::ig::rest;
use tapeflow_feeders::providers::ig::tlcp::{self, encode_update_values, Field, ItemState, ServerMessage};

/// A field value as IG sends them: prices, times of day, epoch milliseconds, states, nulls,
/// empties, and text that needs escaping.
fn field() -> impl Strategy<Value = Field> + Clone {
    prop_oneof![
        2 => Just(Field::Null),
        1 => Just(Field::Text(String::new())),
        4 => (1u32..2_000_000).prop_map(|n| Field::Text(format!("{}", f64::from(n) / 1000.0))),
        2 => (0u32..86_400).prop_map(|s| Field::Text(format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60))),
        2 => (1_600_000_000_000i64..1_800_000_000_000).prop_map(|ms| Field::Text(ms.to_string())),
        1 => prop::sample::select(vec!["TRADEABLE", "CLOSED", "EDIT", "0", "1", "-0", "1e309", "NaN"])
            .prop_map(|s| Field::Text(s.to_string())),
        1 => "[#$^|%,\r\n a-z0-9.:]{1,8}".prop_map(Field::Text),
    ]
}

/// One update's value list for a 5-field item: full, or compacted (unchanged fields empty,
/// runs as `^N`).
fn values() -> impl Strategy<Value = String> + Clone {
    let full = prop::collection::vec(field(), 5).prop_map(|v| encode_update_values(&v));
    let token = prop_oneof![
        3 => field().prop_map(|f| encode_update_values(&[f])),
        2 => Just(String::new()),
        1 => (1u8..6).prop_map(|n| format!("^{n}")),
    ];
    let compact = prop::collection::vec(token, 1..7).prop_map(|t| t.join("|"));
    prop_oneof![3 => full, 2 => compact]
}

/// A server line of every kind the client reads.
fn line() -> impl Strategy<Value = String> + Clone {
    let sub = 1u64..4;
    prop_oneof![
        8 => (sub.clone(), values()).prop_map(|(s, v)| format!("U,{s},1,{v}")),
        1 => Just("PROBE".to_string()),
        1 => (0u64..100_000).prop_map(|k| format!("CONOK,S1d7c802482843a26T5626355,50000,{k},*")),
        1 => (sub.clone(), 0u64..3, 0u64..7).prop_map(|(s, i, f)| format!("SUBOK,{s},{i},{f}")),
        1 => (1u64..9, -3i64..70).prop_map(|(r, c)| format!("REQERR,{r},{c},Invalid group")),
        1 => (-3i64..70).prop_map(|c| format!("END,{c},Session closed, by the server")),
        1 => (-3i64..70).prop_map(|c| format!("CONERR,{c},User/password check failed")),
        1 => (0u64..10_000).prop_map(|d| format!("LOOP,{d}")),
        1 => (sub.clone(), 0u64..1000).prop_map(|(s, n)| format!("OV,{s},1,{n}")),
        1 => sub.clone().prop_map(|s| format!("EOS,{s},1")),
        1 => sub.prop_map(|s| format!("UNSUB,{s}")),
        1 => prop::sample::select(vec!["WSOK", "NOOP,x", "SYNC,5", "CONS,unlimited", "REQOK,1", "REQOK", "CONF,1,unlimited,filtered"])
            .prop_map(str::to_string),
    ]
}

/// A WebSocket message: lines joined by CRLF.
fn message() -> impl Strategy<Value = Vec<u8>> + Clone {
    prop::collection::vec(line(), 1..6).prop_map(|l| (l.join("\r\n") + "\r\n").into_bytes())
}

fn check_quote(q: &convert::QuoteRow) {
    assert!(q.bid.is_finite() && q.bid > 0.0 && q.ask.is_finite() && q.ask > 0.0, "{q:?}");
    assert!(q.bid_size == 0.0 && q.ask_size == 0.0);
}

fn check_tick(t: &convert::ChartTick) {
    assert!(t.price.is_finite() && t.price > 0.0, "{t:?}");
    assert!(t.size.is_finite() && t.size >= 0.0, "{t:?}");
    let (lo, hi) = (
        DateTime::from_timestamp(946_684_800, 0).unwrap(),
        DateTime::from_timestamp(4_102_444_800, 0).unwrap(),
    );
    assert!(t.time >= lo && t.time < hi, "{t:?}");
    assert!(!t.trade_id.is_empty() && t.trade_id.len() <= 48, "{t:?}");
    assert!(t.trade_id.starts_with(&t.time.timestamp_millis().to_string()), "{t:?}");
    if let Some((b, o)) = t.quote {
        assert!(b.is_finite() && b > 0.0 && o.is_finite() && o > 0.0, "{t:?}");
    }
}

#[test]
fn fuzz_ig_tlcp_frames() {
    let received: DateTime<Utc> = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    fuzz("ig_tlcp_frames", mutated_bytes(message()), |bytes| {
        let text = String::from_utf8_lossy(bytes);
        // Sub 1 is a MARKET item, sub 2 a CHART TICK item; others are unknown.
        let mut market = ItemState::new(convert::MARKET_FIELDS.len());
        let mut ticks = ItemState::new(convert::TICK_FIELDS.len());
        let mut ids = TickIds::default();
        let mut accepted = false;
        for l in tlcp::lines(&text) {
            assert!(!l.contains('\n') && !l.is_empty(), "{l:?}");
            let Ok(msg) = tlcp::parse_line(l) else { continue };
            accepted = true;
            if let ServerMessage::Update { sub_id, values, .. } = msg {
                let item = match sub_id {
                    1 => &mut market,
                    2 => &mut ticks,
                    _ => continue,
                };
                let before = item.clone();
                match item.apply(&values) {
                    Ok(changed) => {
                        assert_eq!(changed.len(), item.len());
                        if sub_id == 1 {
                            if let Ok(Some(q)) = convert::market_quote("X", item, &changed, London, received)
                            {
                                check_quote(&q);
                                assert!((q.time - received).abs() <= chrono::Duration::hours(13), "{q:?}");
                            }
                        } else if let Ok(Some(t)) = convert::chart_tick(item, &mut ids) {
                            check_tick(&t);
                        }
                    }
                    Err(_) => assert_eq!(*item, before, "a refused update changed the item"),
                }
            }
        }
        accepted
    });
}

/// A page of historic prices in the version-3 shape, with nulls where IG puts them.
fn prices_page() -> impl Strategy<Value = Value> + Clone {
    let px =
        prop_oneof![3 => (1u32..400_000).prop_map(|n| json!(f64::from(n) / 100.0)), 1 => Just(Value::Null)];
    let triple =
        (px.clone(), px.clone(), px).prop_map(|(b, a, l)| json!({"bid": b, "ask": a, "lastTraded": l}));
    let point = (
        0u32..2880,
        triple.clone(),
        triple.clone(),
        triple.clone(),
        triple,
        prop::option::of(0u32..1_000_000),
    )
        .prop_map(|(m, o, h, l, c, v)| {
            let t = DateTime::from_timestamp(1_602_535_800 + i64::from(m) * 60, 0).unwrap();
            json!({
                "snapshotTime": t.with_timezone(&London).format("%Y/%m/%d %H:%M:%S").to_string(),
                "snapshotTimeUTC": t.format("%Y-%m-%dT%H:%M:%S").to_string(),
                "openPrice": o, "highPrice": h, "lowPrice": l, "closePrice": c,
                "lastTradedVolume": v,
            })
        });
    (prop::collection::vec(point, 0..6), 1u32..5).prop_map(|(prices, pages)| {
        json!({
            "prices": prices,
            "instrumentType": "COMMODITIES",
            "metadata": {
                "allowance": {"remainingAllowance": 9644, "totalAllowance": 10000, "allowanceExpiry": 69976},
                "size": 10,
                "pageData": {"pageSize": 20, "pageNumber": 1, "totalPages": pages}
            }
        })
    })
}

#[test]
fn fuzz_ig_rest_prices() {
    let sample: Value =
        serde_json::from_str(include_str!("../../../shared/data/c_protocol/ig/historic_prices.json"))
            .expect("the capture is JSON");
    let mut keys = keys_of(&sample);
    keys.push("allowance".into());
    let pages = prop_oneof![
        4 => mutated_json(prices_page(), dictionary(keys.clone())),
        1 => mutated_json(Just(sample), dictionary(keys)),
    ];
    fuzz("ig_rest_prices", pages, |text| {
        let Ok(page) = rest::parse_prices(text.as_bytes(), London) else { return false };
        for p in &page.points {
            if let Ok(b) = rest::bar_of("X", p) {
                for x in [b.open, b.high, b.low, b.close] {
                    assert!(x.is_finite() && x > 0.0, "{b:?}");
                }
                assert!(b.low <= b.open.min(b.close) && b.high >= b.open.max(b.close), "{b:?}");
                assert!(b.volume.is_finite() && b.volume >= 0.0, "{b:?}");
                assert_eq!(b.bucket.timestamp() % 60, 0, "{b:?}");
            }
        }
        true
    });
}

/// Session answers (version 2 and `GET /session`) and error answers.
fn rest_answer() -> impl Strategy<Value = Value> + Clone {
    let session = (any::<bool>(), -14i32..15).prop_map(|(v2, tz)| {
        if v2 {
            json!({"currentAccountId": "ABC123", "accounts": [{"accountId": "ABC123"}, {"accountId": "XYZ"}],
                   "lightstreamerEndpoint": "https://demo-apd.marketdatasystems.com", "timezoneOffset": tz,
                   "clientId": "100112233"})
        } else {
            json!({"clientId": "100112233", "accountId": "ABC123", "timezoneOffset": tz, "locale": "en_GB",
                   "currency": "GBP", "lightstreamerEndpoint": "https://demo-apd.marketdatasystems.com"})
        }
    });
    let code = prop::sample::select(vec![
        "error.security.invalid-details",
        "error.security.client-token-invalid",
        "error.public-api.exceeded-account-historical-data-allowance",
        "error.security.api-key-invalid",
        "error.switch.accountId-invalid",
    ]);
    prop_oneof![2 => session, 1 => code.prop_map(|c| json!({"errorCode": c}))]
}

#[test]
fn fuzz_ig_rest_session() {
    let keys = dictionary(
        ["currentAccountId", "accountId", "accounts", "lightstreamerEndpoint", "timezoneOffset", "errorCode"]
            .map(String::from)
            .to_vec(),
    );
    let answers = (
        mutated_json(rest_answer(), keys),
        prop::sample::select(vec![200u16, 400, 401, 403, 404, 429, 500, 503]),
    );
    fuzz("ig_rest_session", answers, |(text, status)| {
        let body = text.as_bytes();
        let err = rest::answer_error("the login", *status, body, true);
        assert!(err.message.starts_with("IG refused the login: HTTP"), "{err:?}");
        assert!(err.message.chars().count() < 600, "{err:?}");
        if let Some(c) = rest::error_code(body) {
            assert!(c.chars().count() <= 200);
        }
        let Ok(s) = rest::parse_session(body) else { return false };
        assert!(s.account_id.as_ref().is_none_or(|a| !a.is_empty()), "{s:?}");
        assert!(s.timezone_offset.is_none_or(|x| x.is_finite() && x.abs() <= 24.0), "{s:?}");
        true
    });
}
