//! Reading Alpha Vantage's answers to `TIME_SERIES_INTRADAY`: a series of one-minute bars (JSON
//! with its meta data, or CSV), or one of the refusals it sends with HTTP 200 instead of data.
//!
//! Times in an answer are wall-clock times without an offset. A JSON answer names their zone
//! in its meta data (`"6. Time Zone": "US/Eastern"`); a CSV answer names none, so its caller
//! supplies one. Each local time is converted with the zone's rules for that date, so the UTC
//! offset follows daylight saving time (−05:00 in winter, −04:00 in summer for New York). A
//! local time that does not exist (skipped at the spring change) or exists twice (repeated at
//! the autumn change) is refused rather than guessed: placing a bar an hour off is the error
//! this module exists to prevent.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};
use tapeflow_analytics::candle::Candle;

/// The JSON member holding the one-minute series.
pub const SERIES_KEY: &str = "Time Series (1min)";

/// Which minute a bar's time stamp names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarTime {
    /// The bar's first minute: a day of extended hours runs 04:00 … 19:59 (current answers).
    Start,
    /// The bar's end: 04:01 … 20:00 (answers recorded before the service changed its labels,
    /// such as the 2017 and 2020 captures).
    End,
}

impl std::str::FromStr for BarTime {
    type Err = String;
    fn from_str(s: &str) -> Result<BarTime, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "start" => Ok(BarTime::Start),
            "end" => Ok(BarTime::End),
            other => Err(format!("{other:?} is neither start nor end")),
        }
    }
}

/// One bar, in Tapeflow's terms: `bucket` is the UTC start of its minute.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub bucket: DateTime<Utc>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

/// A bar of the answer that could not be taken, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct BadBar {
    /// Its time stamp as written in the answer.
    pub key: String,
    pub reason: String,
}

/// A series as answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// `2. Symbol` of the meta data (JSON only).
    pub symbol: Option<String>,
    /// The zone the times were read in.
    pub zone: Tz,
    /// Oldest first, one per minute.
    pub bars: Vec<Bar>,
    /// Entries that were skipped (reported, never fatal for the rest).
    pub bad: Vec<BadBar>,
}

/// What the service said instead of data. It answers these with HTTP 200, told apart only by
/// the member (`Note`, `Information`, `Error Message`) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Too many requests (per minute or per day): wait and ask again.
    Throttled(String),
    /// The key is missing, invalid or the demo key: nothing will work until it is changed.
    BadKey(String),
    /// The key's plan does not include this request (a premium endpoint or entitlement).
    NotEntitled(String),
    /// The request itself was refused (`Invalid API call`): for a well-formed request, an
    /// unknown symbol.
    InvalidCall(String),
}

impl Refusal {
    pub fn text(&self) -> &str {
        match self {
            Refusal::Throttled(t)
            | Refusal::BadKey(t)
            | Refusal::NotEntitled(t)
            | Refusal::InvalidCall(t) => t,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Series(Series),
    Refused(Refusal),
}

/// An answer that is neither a series nor a refusal the client knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("a JSON {0} where an object was expected")]
    NotAnObject(&'static str),
    #[error("no \"{SERIES_KEY}\" and no message in the answer (members: {0})")]
    NoSeries(String),
    #[error("a series of another interval ({0}) where {SERIES_KEY} was asked for")]
    OtherInterval(String),
    #[error("the meta data names no time zone")]
    NoZone,
    #[error("unknown time zone {0:?} in the meta data")]
    UnknownZone(String),
    #[error("CSV: {0}")]
    Csv(String),
    #[error("CSV header {0:?} lacks {1}")]
    CsvHeader(String, &'static str),
}

/// Sorts a message into the refusal it is. Order matters: the daily-limit text mentions
/// premium plans, and a bad-key text can arrive under `Information` as well as `Error Message`.
pub fn classify(member: &str, text: &str) -> Refusal {
    let t = text.to_ascii_lowercase();
    let text = text.to_string();
    if t.contains("apikey is invalid") || t.contains("api key is invalid") || t.contains("demo api key") {
        return Refusal::BadKey(text);
    }
    let throttle = ["call frequency", "rate limit", "requests per", "calls per", "spreading out"];
    if throttle.iter().any(|w| t.contains(w)) {
        return Refusal::Throttled(text);
    }
    if t.contains("premium endpoint") || t.contains("entitlement") {
        return Refusal::NotEntitled(text);
    }
    if member == "Error Message" {
        Refusal::InvalidCall(text)
    } else {
        // Any other `Note`/`Information` is the service asking us to slow down.
        Refusal::Throttled(text)
    }
}

/// Reads an answer whatever its format: JSON (refusals always are), else CSV with its times in
/// `csv_zone`.
pub fn parse_body(body: &str, bar_time: BarTime, csv_zone: Tz) -> Result<Answer, AnswerError> {
    let trimmed = body.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') || trimmed.is_empty() {
        parse_json(trimmed, bar_time)
    } else {
        parse_csv(trimmed, csv_zone, bar_time).map(Answer::Series)
    }
}

/// Reads a JSON answer.
pub fn parse_json(body: &str, bar_time: BarTime) -> Result<Answer, AnswerError> {
    let v: Value = serde_json::from_str(body).map_err(|e| AnswerError::Json(e.to_string()))?;
    let Value::Object(top) = v else { return Err(AnswerError::NotAnObject(kind(&v))) };
    let Some(series) = top.get(SERIES_KEY) else {
        for member in ["Error Message", "Information", "Note"] {
            if let Some(m) = top.get(member) {
                let text = m.as_str().map(str::to_string).unwrap_or_else(|| m.to_string());
                return Ok(Answer::Refused(classify(member, &text)));
            }
        }
        if let Some(k) = top.keys().find(|k| k.starts_with("Time Series")) {
            return Err(AnswerError::OtherInterval(k.clone()));
        }
        let members: Vec<&str> = top.keys().map(String::as_str).take(8).collect();
        return Err(AnswerError::NoSeries(members.join(", ")));
    };
    let meta = match top.get("Meta Data") {
        Some(Value::Object(m)) => m,
        Some(other) => return Err(AnswerError::NotAnObject(kind(other))),
        None => return Err(AnswerError::NoZone),
    };
    let zone = zone_of(meta)?;
    let symbol = meta_field(meta, "Symbol").and_then(Value::as_str).map(str::to_string);
    let Value::Object(entries) = series else { return Err(AnswerError::NotAnObject(kind(series))) };
    let mut bars = Vec::with_capacity(entries.len());
    let mut bad = Vec::new();
    for (key, fields) in entries {
        match json_bar(key, fields, zone, bar_time) {
            Ok(b) => bars.push(b),
            Err(reason) => bad.push(BadBar { key: key.clone(), reason }),
        }
    }
    Ok(Answer::Series(finish(symbol, zone, bars, bad)))
}

/// Reads a CSV answer (`timestamp,open,high,low,close,volume`; the former extended series
/// called the first column `time`), its times in `zone`.
pub fn parse_csv(body: &str, zone: Tz, bar_time: BarTime) -> Result<Series, AnswerError> {
    let mut reader =
        csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(body.as_bytes());
    let header = reader.headers().map_err(|e| AnswerError::Csv(e.to_string()))?.clone();
    let find = |names: &[&str], what: &'static str| {
        header
            .iter()
            .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
            .ok_or_else(|| AnswerError::CsvHeader(header.iter().collect::<Vec<_>>().join(","), what))
    };
    let cols = [
        find(&["timestamp", "time"], "timestamp")?,
        find(&["open"], "open")?,
        find(&["high"], "high")?,
        find(&["low"], "low")?,
        find(&["close"], "close")?,
        find(&["volume"], "volume")?,
    ];
    let mut bars = Vec::new();
    let mut bad = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                bad.push(BadBar { key: format!("line {}", i + 2), reason: e.to_string() });
                continue;
            }
        };
        let key = record.get(cols[0]).unwrap_or("").to_string();
        let field = |j: usize, name: &str| -> Result<f64, String> {
            let s = record.get(cols[j]).ok_or_else(|| format!("no {name} column"))?;
            number(s).ok_or_else(|| format!("{name} {s:?} is not a number"))
        };
        let bar = (|| {
            let bucket = bucket_of(&key, zone, bar_time)?;
            bar(
                bucket,
                field(1, "open")?,
                field(2, "high")?,
                field(3, "low")?,
                field(4, "close")?,
                field(5, "volume")?,
            )
        })();
        match bar {
            Ok(b) => bars.push(b),
            Err(reason) => bad.push(BadBar { key, reason }),
        }
    }
    Ok(finish(None, zone, bars, bad))
}

/// The UTC start of the minute a local time stamp names.
pub fn bucket_of(key: &str, zone: Tz, bar_time: BarTime) -> Result<DateTime<Utc>, String> {
    let naive = NaiveDateTime::parse_from_str(key, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(key, "%Y-%m-%d %H:%M"))
        .map_err(|_| format!("time {key:?} is not YYYY-MM-DD HH:MM:SS"))?;
    if naive.second() != 0 || naive.nanosecond() != 0 {
        return Err(format!("time {key:?} is not on a minute"));
    }
    let at = match zone.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => {
            return Err(format!(
                "time {key:?} occurs twice in {zone} (daylight saving time ends): {} or {}",
                a.with_timezone(&Utc),
                b.with_timezone(&Utc)
            ))
        }
        LocalResult::None => {
            return Err(format!("time {key:?} does not exist in {zone} (daylight saving time begins)"))
        }
    };
    // Before standard time a zone's offset is its local mean time (New York: −4:56:02).
    if at.timestamp().rem_euclid(60) != 0 {
        return Err(format!(
            "time {key:?} is not on a UTC minute in {zone} (offset {})",
            zone.offset_from_utc_datetime(&at.naive_utc())
        ));
    }
    match bar_time {
        BarTime::Start => Ok(at),
        BarTime::End => {
            at.checked_sub_signed(Duration::minutes(1)).ok_or_else(|| format!("time {key:?} is out of range"))
        }
    }
}

fn json_bar(key: &str, fields: &Value, zone: Tz, bar_time: BarTime) -> Result<Bar, String> {
    let Value::Object(f) = fields else {
        return Err(format!("a {} instead of the bar's fields", kind(fields)));
    };
    let get = |name: &str| -> Result<f64, String> {
        let v = meta_field(f, name).ok_or_else(|| format!("no {name}"))?;
        match v {
            Value::String(s) => number(s).ok_or_else(|| format!("{name} {s:?} is not a number")),
            Value::Number(n) => n.as_f64().ok_or_else(|| format!("{name} {n} is out of range")),
            other => Err(format!("{name} is {}", kind(other))),
        }
    };
    let bucket = bucket_of(key, zone, bar_time)?;
    bar(bucket, get("open")?, get("high")?, get("low")?, get("close")?, get("volume")?)
}

/// A bar the database will take: the same rules as `tapeflow.bars_1m_imported`'s checks and
/// `candle_of` (positive finite prices, open and close within low … high, volume ≥ 0).
fn bar(
    bucket: DateTime<Utc>,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
) -> Result<Bar, String> {
    Candle::checked_ohlcv(0, open, high, low, close, volume)?;
    Ok(Bar { bucket, open, high, low, close, volume })
}

fn number(s: &str) -> Option<f64> {
    let x: f64 = s.trim().parse().ok()?;
    x.is_finite().then_some(x)
}

/// The member of an Alpha Vantage object by its name without the "N. " numbering
/// (`"6. Time Zone"`, `"1. open"`); case is ignored.
fn meta_field<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    m.iter()
        .find(|(k, _)| {
            let bare = k
                .split_once(". ")
                .filter(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
                .map_or(k.as_str(), |p| p.1);
            bare.trim().eq_ignore_ascii_case(name)
        })
        .map(|(_, v)| v)
}

fn zone_of(meta: &Map<String, Value>) -> Result<Tz, AnswerError> {
    let name = meta_field(meta, "Time Zone").and_then(Value::as_str).ok_or(AnswerError::NoZone)?;
    name.trim().parse::<Tz>().map_err(|_| AnswerError::UnknownZone(name.to_string()))
}

/// Oldest first, one bar per minute (two keys naming the same minute — "09:30" and
/// "09:30:00" — keep the first read and report the other).
fn finish(symbol: Option<String>, zone: Tz, mut bars: Vec<Bar>, mut bad: Vec<BadBar>) -> Series {
    bars.sort_by_key(|b| b.bucket);
    let mut kept: Vec<Bar> = Vec::with_capacity(bars.len());
    for b in bars {
        if kept.last().is_some_and(|k| k.bucket == b.bucket) {
            bad.push(BadBar { key: b.bucket.to_rfc3339(), reason: "a second bar for this minute".into() });
        } else {
            kept.push(b);
        }
    }
    Series { symbol, zone, bars: kept, bad }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A capture of `shared/data/c_protocol/alphavantage` (`$TAPEFLOW_SHARED_DATA` overrides
    /// the data directory).
    pub(crate) fn capture(name: &str) -> String {
        let dir = std::env::var_os("TAPEFLOW_SHARED_DATA")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
        let path = dir.join("c_protocol/alphavantage").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    static CAPTURE_JSON: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| capture("time_series_intraday_1min_MSFT_2017-12-18.json"));

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn series(a: Answer) -> Series {
        match a {
            Answer::Series(s) => s,
            other => panic!("not a series: {other:?}"),
        }
    }

    #[test]
    fn the_capture_is_read_in_new_york_winter_time() {
        let s = series(parse_json(&CAPTURE_JSON, BarTime::Start).unwrap());
        assert_eq!(s.symbol.as_deref(), Some("MSFT"));
        assert_eq!(s.zone, chrono_tz::US::Eastern);
        assert_eq!(s.bars.len(), 100);
        assert!(s.bad.is_empty(), "{:?}", s.bad);
        // 13:17 … 14:56 EST is 18:17 … 19:56 UTC, not 13:17 UTC as the predecessor stored it.
        assert_eq!(s.bars[0].bucket, utc("2017-12-18T18:17:00Z"));
        let last = s.bars.last().unwrap();
        assert_eq!(last.bucket, utc("2017-12-18T19:56:00Z"));
        assert_eq!(
            (last.open, last.high, last.low, last.close, last.volume),
            (86.49, 86.5, 86.475, 86.5, 10494.0)
        );
        assert!(s.bars.windows(2).all(|w| w[0].bucket < w[1].bucket));
        // Labelled by their end, the same bars start a minute earlier.
        let end = series(parse_json(&CAPTURE_JSON, BarTime::End).unwrap());
        assert_eq!(end.bars.last().unwrap().bucket, utc("2017-12-18T19:55:00Z"));
    }

    /// The capture's bars moved onto the days around each daylight-saving change of 2024.
    fn redated(day: &str) -> String {
        CAPTURE_JSON.replace("2017-12-18", day)
    }

    #[test]
    fn offsets_follow_daylight_saving_time_on_both_sides_of_each_change() {
        // DST began on Sunday 2024-03-10 and ended on Sunday 2024-11-03 in New York.
        for (day, offset_hours) in
            [("2024-03-08", 5), ("2024-03-11", 4), ("2024-11-01", 4), ("2024-11-04", 5), ("2024-07-01", 4)]
        {
            let s = series(parse_json(&redated(day), BarTime::Start).unwrap());
            assert_eq!(s.bars.len(), 100, "{day}");
            let want = utc(&format!("{day}T14:56:00Z")) + Duration::hours(offset_hours);
            assert_eq!(s.bars.last().unwrap().bucket, want, "{day}");
        }
    }

    #[test]
    fn times_that_do_not_exist_or_exist_twice_are_refused_not_guessed() {
        let z = chrono_tz::US::Eastern;
        assert!(bucket_of("2024-03-10 02:30:00", z, BarTime::Start).unwrap_err().contains("does not exist"));
        assert!(bucket_of("2024-11-03 01:30:00", z, BarTime::Start).unwrap_err().contains("occurs twice"));
        // Either side of the gap and after the repeated hour are exact.
        assert_eq!(bucket_of("2024-03-10 01:59:00", z, BarTime::Start).unwrap(), utc("2024-03-10T06:59:00Z"));
        assert_eq!(bucket_of("2024-03-10 03:00:00", z, BarTime::Start).unwrap(), utc("2024-03-10T07:00:00Z"));
        assert_eq!(bucket_of("2024-11-03 02:00:00", z, BarTime::Start).unwrap(), utc("2024-11-03T07:00:00Z"));
        // An end label just after the gap starts its bar before it, which is a real minute.
        assert_eq!(bucket_of("2024-03-10 03:00:00", z, BarTime::End).unwrap(), utc("2024-03-10T06:59:00Z"));
        assert!(bucket_of("2024-03-10 09:30:30", z, BarTime::Start).unwrap_err().contains("minute"));
        // A date before the zone kept standard time (found by the fuzz target).
        assert!(bucket_of("0024-03-08 02:30:00", z, BarTime::End)
            .unwrap_err()
            .contains("not on a UTC minute"));
        // A zone other than New York is read by its own rules.
        let s =
            series(parse_json(&CAPTURE_JSON.replace("US/Eastern", "Europe/London"), BarTime::Start).unwrap());
        assert_eq!(s.bars.last().unwrap().bucket, utc("2017-12-18T14:56:00Z"));
    }

    #[test]
    fn the_extended_csv_is_read_in_the_zone_given() {
        let csv = capture("time_series_intraday_extended_2020-12.csv");
        let s = parse_csv(&csv, chrono_tz::America::New_York, BarTime::End).unwrap();
        assert_eq!(s.bars.len(), 11_190);
        assert!(s.bad.is_empty(), "{:?}", &s.bad[..s.bad.len().min(3)]);
        // First line: 2020-12-18 20:00 EST, the end of the 19:59 minute = 00:59 UTC the next day.
        let last = s.bars.last().unwrap();
        assert_eq!(last.bucket, utc("2020-12-19T00:59:00Z"));
        assert_eq!((last.open, last.close, last.volume), (218.79, 218.75, 1102.0));
        // Last line: 2020-11-23 04:01 EST.
        assert_eq!(s.bars[0].bucket, utc("2020-11-23T09:00:00Z"));
        // Through parse_body too, which tells CSV from JSON.
        let b = series(parse_body(&csv, BarTime::End, chrono_tz::America::New_York).unwrap());
        assert_eq!(b.bars.len(), 11_190);
    }

    #[test]
    fn every_captured_control_message_is_told_apart() {
        let control: Value = serde_json::from_str(&capture("control_messages.json")).unwrap();
        let mut kinds = Vec::new();
        for c in control.as_array().unwrap() {
            let body = c["body"].to_string();
            match parse_json(&body, BarTime::Start).unwrap() {
                Answer::Refused(r) => kinds.push((c["kind"].as_str().unwrap().to_string(), r)),
                other => panic!("{other:?}"),
            }
        }
        let want = |k: &str| kinds.iter().find(|(n, _)| n.starts_with(k)).unwrap().1.clone();
        assert!(matches!(want("throttle (older"), Refusal::Throttled(_)));
        assert!(matches!(want("throttle (current"), Refusal::Throttled(_)));
        assert!(matches!(want("demo key"), Refusal::BadKey(_)));
        assert!(matches!(want("bad symbol"), Refusal::InvalidCall(_)));
        // Texts seen in public clients besides the captures.
        let bad_key = "the parameter apikey is invalid or missing. Please claim your free API key on (https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds.";
        assert!(matches!(classify("Error Message", bad_key), Refusal::BadKey(_)));
        assert!(matches!(classify("Information", bad_key), Refusal::BadKey(_)));
        let daily = "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day. Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly remove all daily rate limits.";
        assert!(matches!(classify("Information", daily), Refusal::Throttled(_)));
        let premium = "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly unlock all premium endpoints";
        assert!(matches!(classify("Information", premium), Refusal::NotEntitled(_)));
    }

    #[test]
    fn bad_bars_are_reported_and_the_rest_kept() {
        let mut v: Value = serde_json::from_str(&CAPTURE_JSON).unwrap();
        let s = v[SERIES_KEY].as_object_mut().unwrap();
        s["2017-12-18 14:56:00"]["1. open"] = Value::Null;
        s["2017-12-18 14:55:00"]["2. high"] = Value::String("86.40".into()); // below the close
        s["2017-12-18 14:54:00"]["5. volume"] = Value::String("-3".into());
        s["2017-12-18 14:53:00"]["4. close"] = Value::String("NaN".into());
        s["2017-12-18 14:52:00"] = Value::Null;
        s.insert("yesterday".into(), s["2017-12-18 14:51:00"].clone());
        let got = series(parse_json(&v.to_string(), BarTime::Start).unwrap());
        assert_eq!(got.bars.len(), 95);
        assert_eq!(got.bad.len(), 6, "{:?}", got.bad);
        assert!(got.bad.iter().any(|b| b.key == "2017-12-18 14:56:00" && b.reason.contains("open is null")));
        assert!(got.bad.iter().any(|b| b.key == "yesterday"));
    }

    #[test]
    fn answers_that_are_neither_are_errors_naming_what_they_hold() {
        assert!(matches!(parse_json("{\"Meta Data\": {}", BarTime::Start), Err(AnswerError::Json(_))));
        assert!(matches!(parse_json("[]", BarTime::Start), Err(AnswerError::NotAnObject("array"))));
        assert_eq!(parse_json("{\"foo\": 1}", BarTime::Start), Err(AnswerError::NoSeries("foo".into())));
        assert!(matches!(
            parse_json(&CAPTURE_JSON.replace("(1min)", "(5min)"), BarTime::Start),
            Err(AnswerError::OtherInterval(_))
        ));
        assert_eq!(
            parse_json(&CAPTURE_JSON.replace("US/Eastern", "Mars/Olympus"), BarTime::Start),
            Err(AnswerError::UnknownZone("Mars/Olympus".into()))
        );
        assert_eq!(
            parse_json(&CAPTURE_JSON.replace("6. Time Zone", "6. Zone"), BarTime::Start),
            Err(AnswerError::NoZone)
        );
        assert!(matches!(
            parse_body("when,open\n", BarTime::Start, chrono_tz::UTC),
            Err(AnswerError::CsvHeader(_, "timestamp"))
        ));
        assert!(matches!(parse_body("", BarTime::Start, chrono_tz::UTC), Err(AnswerError::Json(_))));
    }

    #[test]
    fn bar_time_parses() {
        assert_eq!("start".parse::<BarTime>().unwrap(), BarTime::Start);
        assert_eq!(" END ".parse::<BarTime>().unwrap(), BarTime::End);
        assert!("middle".parse::<BarTime>().is_err());
    }
}
