//! A fake Alpha Vantage `/query` server for `TIME_SERIES_INTRADAY` at one minute, replaying the
//! captures in `shared/data/c_protocol/alphavantage/` (see `fake_alphavantage.md` beside this
//! file for which fact came from where, and what is assumed).
//!
//! The latest bars (no `month`) are the 2017 MSFT capture; a month of history (`month=YYYY-MM`)
//! is the 2020 extended CSV capture's 19 sessions laid onto that month's weekdays at their
//! local New York clock times, so any month can be asked for, daylight-saving changes
//! included. Refusals are the captured bodies with HTTP 200. Tests switch on hostile answers
//! per request: throttle `Note`/`Information`, malformed JSON, nulls, a stalled body, a huge
//! body, an HTTP error.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::{Datelike, NaiveDate, NaiveDateTime, Weekday};
use serde_json::Value;
use std::collections::HashMap;

/// Which minute the fake's time stamps name (the service changed from the end to the start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Labels {
    /// A bar is stamped with its first minute (current answers): 04:00 … 19:59.
    Start,
    /// Stamped with its end, as in the captures: 04:01 … 20:00.
    End,
}

/// One bar of the fake's data: the local New York start of its minute and OHLCV.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalBar {
    pub start: NaiveDateTime,
    pub ohlcv: [f64; 5],
}

/// What the next matching request gets instead of its normal answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The older free tier's throttle body (captured, `Note`).
    ThrottleNote,
    /// The current free tier's throttle body (captured, `Information`).
    ThrottleInformation,
    /// The normal answer cut in the middle.
    Malformed,
    /// The normal answer with one bar's `1. open` null and another bar null.
    Nulls,
    /// Headers at once, then the body's first bytes, then nothing for this long.
    Stall(Duration),
    /// A JSON answer of about this many bytes (a long series of made-up minutes).
    Huge(usize),
    /// This HTTP status with a short text body.
    Status(u16),
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    pub function: String,
    pub symbol: String,
    pub interval: String,
    pub outputsize: Option<String>,
    pub month: Option<String>,
    pub datatype: Option<String>,
    pub extended_hours: Option<String>,
    pub adjusted: Option<String>,
    pub key_ok: bool,
    /// The fault served, if any.
    pub fault: Option<String>,
}

struct Data {
    /// The capture's 100 bars, oldest first.
    latest: Vec<LocalBar>,
    /// The CSV capture's sessions, oldest first, each its bars oldest first.
    sessions: Vec<Vec<LocalBar>>,
    throttle_note: String,
    throttle_information: String,
    invalid_call: String,
}

/// A queued fault: (symbol, month, fault), None matching any.
type Queued = (Option<String>, Option<String>, Fault);

struct Shared {
    key: String,
    labels: Mutex<Labels>,
    known: Mutex<HashSet<String>>,
    faults: Mutex<VecDeque<Queued>>,
    requests: Mutex<Vec<Request>>,
    data: Data,
}

/// The running fake; dropping it stops the server.
pub struct FakeAlphaVantage {
    /// `http://127.0.0.1:<port>` (requests go to `/query`).
    pub base_url: String,
    pub api_key: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAlphaVantage {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The bad-key body (not in the captures; the text public clients quote, see the .md).
pub const BAD_KEY: &str = "the parameter apikey is invalid or missing. Please claim your free API key on (https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds.";

fn capture(name: &str) -> String {
    let path = crate::ground_truth::data_dir().join("c_protocol/alphavantage").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load() -> Data {
    let json: Value =
        serde_json::from_str(&capture("time_series_intraday_1min_MSFT_2017-12-18.json")).unwrap();
    let mut latest: Vec<LocalBar> = json["Time Series (1min)"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let end = NaiveDateTime::parse_from_str(k, "%Y-%m-%d %H:%M:%S").unwrap();
            let f = |n: &str| v[n].as_str().unwrap().parse::<f64>().unwrap();
            LocalBar {
                start: end - chrono::Duration::minutes(1),
                ohlcv: [f("1. open"), f("2. high"), f("3. low"), f("4. close"), f("5. volume")],
            }
        })
        .collect();
    latest.sort_by_key(|b| b.start);
    let csv = capture("time_series_intraday_extended_2020-12.csv");
    let mut all: Vec<LocalBar> = csv
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let end = NaiveDateTime::parse_from_str(f[0], "%Y-%m-%d %H:%M:%S").unwrap();
            let n = |i: usize| f[i].parse::<f64>().unwrap();
            LocalBar { start: end - chrono::Duration::minutes(1), ohlcv: [n(1), n(2), n(3), n(4), n(5)] }
        })
        .collect();
    all.sort_by_key(|b| b.start);
    let mut sessions: Vec<Vec<LocalBar>> = Vec::new();
    for b in all {
        // A session is a trading date; its last bar (19:59-20:00) belongs to it.
        match sessions.last_mut() {
            Some(s) if s[0].start.date() == b.start.date() => s.push(b),
            _ => sessions.push(vec![b]),
        }
    }
    let control: Value = serde_json::from_str(&capture("control_messages.json")).unwrap();
    let body = |kind: &str, member: &str| {
        control
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["kind"].as_str().unwrap().starts_with(kind))
            .and_then(|c| c["body"][member].as_str())
            .unwrap()
            .to_string()
    };
    Data {
        latest,
        sessions,
        throttle_note: body("throttle (older", "Note"),
        throttle_information: body("throttle (current", "Information"),
        invalid_call: body("bad symbol", "Error Message"),
    }
}

impl FakeAlphaVantage {
    /// Starts the fake with `key` as the only valid key and `symbols` known.
    pub async fn start(key: &str, symbols: &[&str], labels: Labels) -> FakeAlphaVantage {
        let shared = Arc::new(Shared {
            key: key.to_string(),
            labels: Mutex::new(labels),
            known: Mutex::new(symbols.iter().map(|s| s.to_string()).collect()),
            faults: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            data: load(),
        });
        let app = Router::new().route("/query", axum::routing::get(query)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeAlphaVantage { base_url: format!("http://{addr}"), api_key: key.to_string(), shared, server }
    }

    /// The next request (for `symbol`, or any when None) gets `fault`; faults queue in order.
    pub fn push_fault(&self, symbol: Option<&str>, fault: Fault) {
        lock(&self.shared.faults).push_back((symbol.map(str::to_string), None, fault));
    }

    /// The next request for `month` (`YYYY-MM`) gets `fault`.
    pub fn push_month_fault(&self, month: &str, fault: Fault) {
        lock(&self.shared.faults).push_back((None, Some(month.to_string()), fault));
    }

    pub fn faults_left(&self) -> usize {
        lock(&self.shared.faults).len()
    }

    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.requests).clone()
    }

    pub fn set_labels(&self, labels: Labels) {
        *lock(&self.shared.labels) = labels;
    }

    /// The bars a request without `month` answers (the capture's), oldest first.
    pub fn latest_bars(&self) -> Vec<LocalBar> {
        self.shared.data.latest.clone()
    }

    /// The bars of `month` (`YYYY-MM`), oldest first: the captured sessions on its weekdays.
    pub fn month_bars(&self, month: &str) -> Vec<LocalBar> {
        month_bars(&self.shared.data, month).unwrap_or_default()
    }

    /// The captured throttle texts (`Note`, `Information`).
    pub fn throttle_texts(&self) -> (String, String) {
        (self.shared.data.throttle_note.clone(), self.shared.data.throttle_information.clone())
    }
}

fn month_bars(d: &Data, month: &str) -> Option<Vec<LocalBar>> {
    let first = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").ok()?;
    if first.year() < 2000 {
        return None;
    }
    let mut out = Vec::new();
    let mut day = first;
    let mut k = 0;
    while day.month() == first.month() {
        if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            for b in &d.sessions[k % d.sessions.len()] {
                out.push(LocalBar { start: day.and_time(b.start.time()), ohlcv: b.ohlcv });
            }
            k += 1;
        }
        day = day.succ_opt()?;
    }
    Some(out)
}

fn label(b: &LocalBar, labels: Labels) -> String {
    let t = match labels {
        Labels::Start => b.start,
        Labels::End => b.start + chrono::Duration::minutes(1),
    };
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The JSON answer as the service writes it: meta data, then the series newest first, values
/// as strings with four decimals.
fn json_answer(symbol: &str, bars: &[LocalBar], labels: Labels, full: bool, nulls: bool) -> String {
    let last = bars.last().map(|b| label(b, labels)).unwrap_or_default();
    let mut s = format!(
        "{{\n    \"Meta Data\": {{\n        \"1. Information\": \"Intraday (1min) open, high, low, close prices and volume\",\n        \"2. Symbol\": \"{symbol}\",\n        \"3. Last Refreshed\": \"{last}\",\n        \"4. Interval\": \"1min\",\n        \"5. Output Size\": \"{}\",\n        \"6. Time Zone\": \"US/Eastern\"\n    }},\n    \"Time Series (1min)\": {{",
        if full { "Full size" } else { "Compact" }
    );
    for (i, b) in bars.iter().rev().enumerate() {
        let [o, h, l, c, v] = b.ohlcv;
        if i > 0 {
            s.push(',');
        }
        let key = label(b, labels);
        if nulls && i == 1 {
            s.push_str(&format!("\n        \"{key}\": null"));
            continue;
        }
        let open = if nulls && i == 0 { "null".to_string() } else { format!("\"{}\"", px(o)) };
        let (h, l, c) = (px(h), px(l), px(c));
        s.push_str(&format!(
            "\n        \"{key}\": {{\n            \"1. open\": {open},\n            \"2. high\": \"{h}\",\n            \"3. low\": \"{l}\",\n            \"4. close\": \"{c}\",\n            \"5. volume\": \"{v}\"\n        }}"
        ));
    }
    s.push_str("\n    }\n}");
    s
}

/// A price as the service writes it: four decimals, more where the value has them (the CSV
/// capture holds adjusted prices such as 212.155004).
fn px(x: f64) -> String {
    let four = format!("{x:.4}");
    if four.parse::<f64>() == Ok(x) {
        four
    } else {
        format!("{x}")
    }
}

fn csv_answer(bars: &[LocalBar], labels: Labels) -> String {
    let mut s = String::from("timestamp,open,high,low,close,volume\r\n");
    for b in bars.iter().rev() {
        let [o, h, l, c, v] = b.ohlcv;
        s.push_str(&format!("{},{},{},{},{},{v}\r\n", label(b, labels), px(o), px(h), px(l), px(c)));
    }
    s
}

fn message(member: &str, text: &str) -> Response {
    json_response(serde_json::json!({ member: text }).to_string())
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn query(State(sh): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let get = |k: &str| q.get(k).cloned();
    let symbol = get("symbol").unwrap_or_default();
    let key_ok = get("apikey").as_deref() == Some(sh.key.as_str());
    let fault = if key_ok {
        let mut faults = lock(&sh.faults);
        let month = get("month");
        let i = faults.iter().position(|(s, m, _)| {
            s.as_ref().is_none_or(|s| s == &symbol) && m.as_ref().is_none_or(|m| Some(m) == month.as_ref())
        });
        i.and_then(|i| faults.remove(i)).map(|f| f.2)
    } else {
        None
    };
    lock(&sh.requests).push(Request {
        at: Instant::now(),
        function: get("function").unwrap_or_default(),
        symbol: symbol.clone(),
        interval: get("interval").unwrap_or_default(),
        outputsize: get("outputsize"),
        month: get("month"),
        datatype: get("datatype"),
        extended_hours: get("extended_hours"),
        adjusted: get("adjusted"),
        key_ok,
        fault: fault.as_ref().map(|f| format!("{f:?}")),
    });
    if !key_ok {
        return message("Error Message", BAD_KEY);
    }
    let d = &sh.data;
    let invalid = || message("Error Message", &d.invalid_call);
    if get("function").as_deref() != Some("TIME_SERIES_INTRADAY")
        || get("interval").as_deref() != Some("1min")
        || !lock(&sh.known).contains(&symbol)
    {
        return invalid();
    }
    let full = get("outputsize").as_deref() == Some("full");
    let bars = match get("month") {
        Some(m) => match month_bars(d, &m) {
            Some(b) => b,
            None => return invalid(),
        },
        None if full => d.latest.clone(),
        None => d.latest[d.latest.len().saturating_sub(100)..].to_vec(),
    };
    let labels = *lock(&sh.labels);
    let csv = get("datatype").as_deref() == Some("csv");
    let normal = |nulls: bool| {
        if csv {
            ([(header::CONTENT_TYPE, "application/x-download")], csv_answer(&bars, labels)).into_response()
        } else {
            json_response(json_answer(&symbol, &bars, labels, full, nulls))
        }
    };
    match fault {
        None => normal(false),
        Some(Fault::ThrottleNote) => message("Note", &d.throttle_note),
        Some(Fault::ThrottleInformation) => message("Information", &d.throttle_information),
        Some(Fault::Nulls) => json_response(json_answer(&symbol, &bars, labels, full, true)),
        Some(Fault::Malformed) => {
            let body = json_answer(&symbol, &bars, labels, full, false);
            json_response(body[..body.len() / 2].to_string())
        }
        Some(Fault::Status(code)) => {
            (StatusCode::from_u16(code).unwrap(), format!("fake status {code}")).into_response()
        }
        Some(Fault::Stall(d)) => {
            let body = json_answer(&symbol, &bars, labels, full, false);
            let head = body[..body.len().min(64)].to_string();
            let stream = futures_util::stream::unfold(0u8, move |step| {
                let head = head.clone();
                async move {
                    match step {
                        0 => Some((Ok::<_, std::io::Error>(head), 1)),
                        _ => {
                            tokio::time::sleep(d).await;
                            None
                        }
                    }
                }
            });
            ([(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream)).into_response()
        }
        Some(Fault::Huge(bytes)) => {
            // Minutes counted on from the capture's day, as many as it takes.
            let per_bar = 190;
            let n = bytes / per_bar + 1;
            let base = d.latest[0].start;
            let many: Vec<LocalBar> = (0..n)
                .map(|i| LocalBar {
                    start: base + chrono::Duration::minutes(i as i64),
                    ohlcv: d.latest[0].ohlcv,
                })
                .collect();
            json_response(json_answer(&symbol, &many, labels, true, false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    #[test]
    fn months_lay_the_captured_sessions_on_weekdays() {
        let d = load();
        assert_eq!(d.sessions.len(), 19);
        assert_eq!(d.latest.len(), 100);
        let march = month_bars(&d, "2024-03").unwrap();
        let days: std::collections::BTreeSet<NaiveDate> = march.iter().map(|b| b.start.date()).collect();
        assert_eq!(days.len(), 21); // the weekdays of March 2024
        assert!(days.iter().all(|d| !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)));
        // The captured clock: extended hours, the first bar starting 04:00, the last 19:59.
        assert!(march.iter().all(|b| b.start.hour() >= 4 && b.start.hour() < 20));
        assert!(month_bars(&d, "1999-12").is_none());
        let json = json_answer("AAPL", &march, Labels::Start, true, false);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["Time Series (1min)"].as_object().unwrap().len(), march.len());
    }
}
