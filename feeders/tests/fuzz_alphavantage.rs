//! Fuzz targets of the Alpha Vantage answer parsers (`parse_json`, `parse_csv` through
//! `parse_body`): every answer the provider gets goes through them, so they must return an
//! error, never panic, and whatever they accept must be bars the database takes. The harness
//! is the analytics crate's (`analytics/tests/fuzz_common`); `make fuzz` runs it long.

#[path = "../../analytics/tests/fuzz_common/mod.rs"]
mod fuzz_common;

use chrono::{Duration, NaiveDate, Timelike};
use fuzz_common::{dictionary, fuzz, keys_of, mutated_bytes, mutated_json};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tapeflow_feeders::providers::alphavantage::answer::{parse_body, parse_json, Answer, BarTime, Series};

/// Checks what every accepted series must hold: one bar per minute, oldest first, on the minute,
/// with prices and volume `tapeflow.bars_1m_imported` accepts.
fn check(s: &Series) {
    for w in s.bars.windows(2) {
        assert!(w[0].bucket < w[1].bucket, "{:?} then {:?}", w[0], w[1]);
    }
    for b in &s.bars {
        assert_eq!(b.bucket.timestamp() % 60, 0, "{b:?}");
        assert_eq!(b.bucket.nanosecond(), 0, "{b:?}");
        for p in [b.open, b.high, b.low, b.close] {
            assert!(p.is_finite() && p > 0.0, "{b:?}");
        }
        assert!(b.low <= b.open.min(b.close) && b.high >= b.open.max(b.close), "{b:?}");
        assert!(b.volume.is_finite() && b.volume >= 0.0, "{b:?}");
    }
}

/// Local time stamps around the daylight-saving changes of 2024 and in plain weeks.
fn stamp() -> impl Strategy<Value = String> + Clone {
    let days = prop::sample::select(vec![
        NaiveDate::from_ymd_opt(2024, 3, 8).unwrap(),
        NaiveDate::from_ymd_opt(2024, 3, 10).unwrap(),
        NaiveDate::from_ymd_opt(2024, 3, 11).unwrap(),
        NaiveDate::from_ymd_opt(2024, 11, 3).unwrap(),
        NaiveDate::from_ymd_opt(2024, 11, 4).unwrap(),
        NaiveDate::from_ymd_opt(2017, 12, 18).unwrap(),
    ]);
    (days, 0u32..1440).prop_map(|(d, m)| {
        (d.and_hms_opt(0, 0, 0).unwrap() + Duration::minutes(m.into()))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    })
}

fn price() -> impl Strategy<Value = f64> + Clone {
    (1u32..5_000_000).prop_map(|n| f64::from(n) / 10_000.0)
}

/// A JSON answer: a series (meta data in some zone, bars with strings or numbers), or one of the
/// refusals.
fn answer() -> impl Strategy<Value = Value> + Clone {
    let zone =
        prop::sample::select(vec!["US/Eastern", "America/New_York", "UTC", "Europe/London", "Asia/Tokyo"]);
    let bar = (stamp(), price(), price(), price(), 0u32..10_000_000, any::<bool>()).prop_map(
        |(t, a, b, c, v, numbers)| {
            let (lo, hi) = (a.min(b).min(c), a.max(b).max(c));
            let f = |x: f64| if numbers { json!(x) } else { json!(format!("{x:.4}")) };
            (
                t,
                json!({"1. open": f(a), "2. high": f(hi), "3. low": f(lo), "4. close": f(b),
                       "5. volume": if numbers { json!(v) } else { json!(v.to_string()) }}),
            )
        },
    );
    let series = (zone, prop::collection::vec(bar, 0..12)).prop_map(|(zone, bars)| {
        let mut s = Map::new();
        for (t, b) in bars {
            s.insert(t, b);
        }
        json!({
            "Meta Data": {"1. Information": "Intraday (1min) open, high, low, close prices and volume",
                          "2. Symbol": "MSFT", "3. Last Refreshed": "2024-03-11 19:59:00", "4. Interval": "1min",
                          "5. Output Size": "Compact", "6. Time Zone": zone},
            "Time Series (1min)": s
        })
    });
    let refusal = prop::sample::select(vec![
        json!({"Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and 500 calls per day."}),
        json!({"Information": "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day."}),
        json!({"Information": "The demo API key is for demo purposes only."}),
        json!({"Error Message": "Invalid API call. Please retry or visit the documentation for TIME_SERIES_INTRADAY."}),
        json!({"Error Message": "the parameter apikey is invalid or missing."}),
    ]);
    prop_oneof![6 => series, 1 => refusal]
}

#[test]
fn fuzz_alphavantage_json() {
    let mut keys = keys_of(&answer_sample());
    keys.extend(
        ["Note", "Information", "Error Message", "Time Series (5min)", "US/Eastern"].map(String::from),
    );
    let keys = dictionary(keys);
    fuzz("alphavantage_json", mutated_json(answer(), keys), |text| {
        for bar_time in [BarTime::Start, BarTime::End] {
            match parse_json(text, bar_time) {
                Ok(Answer::Series(s)) => check(&s),
                Ok(Answer::Refused(r)) => assert!(!r.text().is_empty() || text.contains("\"\"")),
                Err(_) => return false,
            }
        }
        true
    });
}

/// A JSON answer holding every member the parser reads.
fn answer_sample() -> Value {
    json!({
        "Meta Data": {"1. Information": "Intraday (1min)", "2. Symbol": "MSFT", "3. Last Refreshed": "2024-03-11 19:59:00",
                      "4. Interval": "1min", "5. Output Size": "Compact", "6. Time Zone": "US/Eastern"},
        "Time Series (1min)": {"2024-03-11 09:30:00": {"1. open": "1.0", "2. high": "1.0", "3. low": "1.0",
                                                       "4. close": "1.0", "5. volume": "1"}}
    })
}

/// CSV answers as the service writes them (`timestamp,…`, newest first, CRLF) and as the former
/// extended series did (`time,…`, LF).
fn csv_answer() -> impl Strategy<Value = Vec<u8>> + Clone {
    let row = (stamp(), price(), price(), price(), 0u32..10_000_000).prop_map(|(t, a, b, c, v)| {
        let (lo, hi) = (a.min(b).min(c), a.max(b).max(c));
        format!("{t},{a},{hi},{lo},{b},{v}")
    });
    (any::<bool>(), prop::collection::vec(row, 0..12)).prop_map(|(current, rows)| {
        let (head, eol) = if current { ("timestamp", "\r\n") } else { ("time", "\n") };
        let mut s = format!("{head},open,high,low,close,volume{eol}");
        for r in rows {
            s.push_str(&r);
            s.push_str(eol);
        }
        s.into_bytes()
    })
}

#[test]
fn fuzz_alphavantage_csv() {
    fuzz("alphavantage_csv", mutated_bytes(csv_answer()), |bytes| {
        let text = String::from_utf8_lossy(bytes);
        match parse_body(&text, BarTime::End, chrono_tz::America::New_York) {
            Ok(Answer::Series(s)) => {
                check(&s);
                true
            }
            Ok(Answer::Refused(_)) => true,
            Err(_) => false,
        }
    });
}
