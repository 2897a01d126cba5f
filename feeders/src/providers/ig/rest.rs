//! IG's REST API as the feeder uses it: the session (login, account switch), error answers and
//! historic prices. The answer parsers are pure and total (nulls, missing fields and nonsense
//! give errors or skipped rows, never a panic) and are fuzzed in `feeders/tests/fuzz_ig.rs`.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use std::fmt;

use tapeflow_db::bars::BarRow;

/// What kind of failure an IG answer is, which decides what the feeder does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The credentials, key or request are refused: retrying the same cannot help.
    Refused,
    /// An allowance is used up (IG answers 403 `error.public-api.exceeded-…`): wait.
    Throttled,
    /// The session tokens are no longer valid: log in again.
    TokenInvalid,
    /// The network or IG's servers: retry after a backoff.
    Transient,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestError {
    pub kind: Failure,
    pub message: String,
}

impl fmt::Display for RestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RestError {}

impl RestError {
    pub fn new(kind: Failure, message: impl Into<String>) -> RestError {
        RestError { kind, message: message.into() }
    }
}

/// IG's error answer `{"errorCode": "error.security.invalid-details"}`.
pub fn error_code(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("errorCode")?.as_str().map(|s| s.chars().take(200).collect())
}

/// Classifies a non-success answer. `login` tells whether it answered `POST /session` (where a
/// 401 means refused credentials) or a call made with session tokens (where it means the
/// tokens expired).
pub fn classify(status: u16, code: Option<&str>, login: bool) -> Failure {
    let code = code.unwrap_or("");
    if status == 429 || code.contains("exceeded") || code.contains("allowance") {
        return Failure::Throttled;
    }
    if code.contains("token-invalid") || code.contains("token-missing") {
        return Failure::TokenInvalid;
    }
    match status {
        401 if !login => Failure::TokenInvalid,
        400..=499 => Failure::Refused,
        _ => Failure::Transient,
    }
}

/// The error for a non-success answer, with IG's code and what it means for the operator.
pub fn answer_error(what: &str, status: u16, body: &[u8], login: bool) -> RestError {
    let code = error_code(body);
    let kind = classify(status, code.as_deref(), login);
    let detail = match &code {
        Some(c) => c.clone(),
        None => {
            let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
            if text.trim().is_empty() {
                "no error code".to_string()
            } else {
                text
            }
        }
    };
    let hint = match (kind, code.as_deref()) {
        (Failure::Refused, Some("error.security.invalid-details")) => {
            " (check IG_USERNAME and IG_PASSWORD, and that TAPEFLOW_IG_URL is the demo or live gateway the account belongs to)"
        }
        (Failure::Refused, Some(c)) if c.contains("api-key") => " (check IG_API_KEY)",
        (Failure::Refused, Some(c)) if c.contains("suspended") => " (IG has suspended the account or key: contact IG)",
        _ => "",
    };
    RestError::new(kind, format!("IG refused {what}: HTTP {status}, {detail}{hint}"))
}

/// What the feeder needs from `POST /session` (version 2).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    pub account_id: Option<String>,
    /// The accounts the login may switch to.
    pub accounts: Vec<String>,
    pub lightstreamer_endpoint: Option<String>,
    /// The account's offset from UTC in hours, as IG reports it now.
    pub timezone_offset: Option<f64>,
}

/// Reads the session answer (`currentAccountId`, or `accountId` as `GET /session` names it).
pub fn parse_session(body: &[u8]) -> Result<SessionInfo, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("session answer is not JSON: {e}"))?;
    if !v.is_object() {
        return Err("session answer is not a JSON object".into());
    }
    let text = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let accounts = v
        .get("accounts")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.get("accountId")?.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    Ok(SessionInfo {
        account_id: text("currentAccountId").or_else(|| text("accountId")),
        accounts,
        lightstreamer_endpoint: text("lightstreamerEndpoint"),
        timezone_offset: v
            .get("timezoneOffset")
            .and_then(Value::as_f64)
            .filter(|x| x.is_finite() && x.abs() <= 24.0),
    })
}

/// Bid, ask and last traded price of one of a bar's four prices; each may be null.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Prices {
    pub bid: Option<f64>,
    pub ask: Option<f64>,
    pub last: Option<f64>,
}

/// One bar of `GET /prices/{epic}`.
#[derive(Debug, Clone, PartialEq)]
pub struct PricePoint {
    /// The bar's start, UTC.
    pub time: DateTime<Utc>,
    pub open: Prices,
    pub high: Prices,
    pub low: Prices,
    pub close: Prices,
    pub volume: Option<f64>,
}

/// The historical-data allowance an answer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub remaining: i64,
    pub total: i64,
    /// Seconds until it is reset.
    pub expiry_secs: i64,
}

/// One page of `GET /prices/{epic}` (version 3).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PricesPage {
    pub points: Vec<PricePoint>,
    /// Entries that could not be read, with the reason (the rest of the page is kept).
    pub skipped: Vec<String>,
    pub page_number: Option<u32>,
    pub total_pages: Option<u32>,
    pub allowance: Option<Allowance>,
}

fn number(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64).filter(|x| x.is_finite())
}

fn prices(v: Option<&Value>) -> Prices {
    Prices {
        bid: number(v.and_then(|v| v.get("bid"))),
        ask: number(v.and_then(|v| v.get("ask"))),
        last: number(v.and_then(|v| v.get("lastTraded"))),
    }
}

/// The bar's start: `snapshotTimeUTC` (version 3), else `snapshotTime` read as local time in
/// `zone` (versions 1 and 2 give only the account's local time: `2020/10/12 21:50:00`, or
/// `2020:09:01-05:00:00`).
fn point_time(v: &Value, zone: Tz) -> Result<DateTime<Utc>, String> {
    if let Some(s) = v.get("snapshotTimeUTC").and_then(Value::as_str) {
        return NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
            .map(|t| t.and_utc())
            .map_err(|_| format!("snapshotTimeUTC {s:?} is not a time"));
    }
    let s = v.get("snapshotTime").and_then(Value::as_str).ok_or("no snapshotTimeUTC or snapshotTime")?;
    let local = NaiveDateTime::parse_from_str(s, "%Y/%m/%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y:%m:%d-%H:%M:%S"))
        .map_err(|_| format!("snapshotTime {s:?} is not a time"))?;
    zone.from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("snapshotTime {s:?} does not exist in {zone}"))
}

/// Reads a page of historic prices.
pub fn parse_prices(body: &[u8], zone: Tz) -> Result<PricesPage, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("prices answer is not JSON: {e}"))?;
    let list = v.get("prices").and_then(Value::as_array).ok_or("prices answer has no \"prices\" list")?;
    let mut page = PricesPage::default();
    for (i, p) in list.iter().enumerate() {
        if !p.is_object() {
            page.skipped.push(format!("entry {i} is not an object"));
            continue;
        }
        match point_time(p, zone) {
            Ok(time) => page.points.push(PricePoint {
                time,
                open: prices(p.get("openPrice")),
                high: prices(p.get("highPrice")),
                low: prices(p.get("lowPrice")),
                close: prices(p.get("closePrice")),
                volume: number(p.get("lastTradedVolume")),
            }),
            Err(e) => page.skipped.push(format!("entry {i}: {e}")),
        }
    }
    let meta = v.get("metadata");
    let page_data = meta.and_then(|m| m.get("pageData"));
    let small = |x: Option<&Value>| x.and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok());
    page.page_number = small(page_data.and_then(|p| p.get("pageNumber")));
    page.total_pages = small(page_data.and_then(|p| p.get("totalPages")));
    // Version 3 has it under metadata, version 1 at the top.
    let allowance = meta.and_then(|m| m.get("allowance")).or_else(|| v.get("allowance"));
    page.allowance = allowance.and_then(|a| {
        Some(Allowance {
            remaining: a.get("remainingAllowance")?.as_i64()?,
            total: a.get("totalAllowance")?.as_i64()?,
            expiry_secs: a.get("allowanceExpiry")?.as_i64()?,
        })
    });
    Ok(page)
}

/// A one-minute bar from a price point: the midpoint of bid and ask for each of open, high,
/// low and close (IG's own "mid" charts; for a CFD there is no traded price), else the last
/// traded prices when IG gives only those. Volume is `lastTradedVolume` (for a CFD IG's count
/// of price changes), 0 when absent. Refused: a bar not on a minute, missing or non-positive
/// prices, or a high below or a low above the open and close.
pub fn bar_of(symbol: &str, p: &PricePoint) -> Result<BarRow, String> {
    if p.time.timestamp() % 60 != 0 || p.time.timestamp_subsec_nanos() != 0 {
        return Err(format!("{} is not the start of a minute", p.time));
    }
    let mid = |x: &Prices| match (x.bid, x.ask) {
        (Some(b), Some(a)) => Some(super::convert::midpoint(b, a)),
        _ => None,
    };
    let four =
        |f: &dyn Fn(&Prices) -> Option<f64>| Some([f(&p.open)?, f(&p.high)?, f(&p.low)?, f(&p.close)?]);
    let [open, high, low, close] = four(&mid).or_else(|| four(&|x: &Prices| x.last)).ok_or_else(|| {
        format!("bar {} has neither bid and ask nor traded prices for all of its four prices", p.time)
    })?;
    if ![open, high, low, close].iter().all(|x| x.is_finite() && *x > 0.0) {
        return Err(format!("bar {} has a price that is not positive", p.time));
    }
    if high < open.max(close) || low > open.min(close) || low > high {
        return Err(format!(
            "bar {} is inconsistent: open {open}, high {high}, low {low}, close {close}",
            p.time
        ));
    }
    let volume = match p.volume {
        Some(v) if v >= 0.0 => v,
        Some(v) => return Err(format!("bar {} has a negative volume {v}", p.time)),
        None => 0.0,
    };
    Ok(BarRow { symbol: symbol.to_string(), bucket: p.time, open, high, low, close, volume })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::London;

    fn capture(name: &str) -> Vec<u8> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/c_protocol/ig");
        std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_captured_v3_prices_become_mid_bars_at_their_utc_minute() {
        let page = parse_prices(&capture("historic_prices.json"), London).unwrap();
        assert_eq!(page.points.len(), 10);
        assert!(page.skipped.is_empty());
        assert_eq!((page.page_number, page.total_pages), (Some(1), Some(1)));
        assert_eq!(page.allowance, Some(Allowance { remaining: 9644, total: 10000, expiry_secs: 69976 }));
        // "snapshotTime": "2020/10/12 21:50:00" is BST; the bar starts at 20:50 UTC.
        let bar = bar_of("GOLD", &page.points[0]).unwrap();
        assert_eq!(bar.bucket, utc("2020-10-12T20:50:00Z"));
        assert_eq!(
            (bar.open, bar.high, bar.low, bar.close, bar.volume),
            (1926.7, 1928.0, 1926.7, 1927.6, 60.0)
        );
    }

    #[test]
    fn older_versions_give_local_times() {
        // v2 ("2020/10/09 05:00:00", BST) and v1 ("2020:09:01-05:00:00").
        let v2 = parse_prices(&capture("historic_prices_v2.json"), London).unwrap();
        assert_eq!(v2.points[0].time, utc("2020-10-09T04:00:00Z"));
        let v1 = parse_prices(&capture("historic_prices_v1.json"), London).unwrap();
        assert_eq!(v1.points[0].time, utc("2020-09-01T04:00:00Z"));
        assert_eq!(v1.allowance.map(|a| a.remaining), Some(9986));
    }

    #[test]
    fn nulls_and_nonsense_skip_entries_without_failing_the_page() {
        let body = br#"{"prices":[
            {"snapshotTimeUTC":"2020-10-12T20:50:00","openPrice":{"bid":null,"ask":null,"lastTraded":null},
             "closePrice":null,"highPrice":{},"lowPrice":{"bid":1,"ask":2},"lastTradedVolume":null},
            {"snapshotTimeUTC":"2020-10-12T20:51:00","openPrice":{"bid":null,"ask":null,"lastTraded":5},
             "closePrice":{"lastTraded":6},"highPrice":{"lastTraded":7},"lowPrice":{"lastTraded":4}},
            {"snapshotTimeUTC":"yesterday"}, 7, {"snapshotTime":null}
        ],"metadata":null}"#;
        let page = parse_prices(body, London).unwrap();
        assert_eq!(page.points.len(), 2);
        assert_eq!(page.skipped.len(), 3, "{:?}", page.skipped);
        assert!(bar_of("X", &page.points[0]).is_err());
        let traded = bar_of("X", &page.points[1]).unwrap();
        assert_eq!(
            (traded.open, traded.high, traded.low, traded.close, traded.volume),
            (5.0, 7.0, 4.0, 6.0, 0.0)
        );
        assert!(parse_prices(b"{}", London).is_err());
        assert!(parse_prices(b"null", London).is_err());
        assert!(parse_prices(b"{\"prices\":", London).is_err());
        // A high below the close is refused rather than stored.
        let mut p = page.points[1].clone();
        p.high.last = Some(5.5);
        assert!(bar_of("X", &p).unwrap_err().contains("inconsistent"));
        p.time = utc("2020-10-12T20:51:30Z");
        assert!(bar_of("X", &p).unwrap_err().contains("minute"));
    }

    #[test]
    fn session_answers() {
        let s = parse_session(&capture("session.json")).unwrap();
        assert_eq!(s.account_id.as_deref(), Some("ABC123"));
        assert_eq!(s.lightstreamer_endpoint.as_deref(), Some("https://demo-apd.marketdatasystems.com"));
        assert_eq!(s.timezone_offset, Some(1.0));
        let v2 = br#"{"currentAccountId":"XYZ","accounts":[{"accountId":"XYZ"},{"accountId":"ABC"},{}],
                      "lightstreamerEndpoint":null,"timezoneOffset":"1"}"#;
        let s = parse_session(v2).unwrap();
        assert_eq!(
            (s.account_id.as_deref(), s.accounts.len(), s.lightstreamer_endpoint, s.timezone_offset),
            (Some("XYZ"), 2, None, None)
        );
        assert!(parse_session(b"[]").is_err());
        assert!(parse_session(b"").is_err());
    }

    #[test]
    fn error_answers_are_classified() {
        let refused =
            answer_error("the login", 401, br#"{"errorCode":"error.security.invalid-details"}"#, true);
        assert_eq!(refused.kind, Failure::Refused);
        assert!(
            refused.message.contains("error.security.invalid-details")
                && refused.message.contains("IG_PASSWORD")
        );
        let expired =
            answer_error("prices", 401, br#"{"errorCode":"error.security.client-token-invalid"}"#, false);
        assert_eq!(expired.kind, Failure::TokenInvalid);
        assert_eq!(answer_error("prices", 401, b"", false).kind, Failure::TokenInvalid);
        let allowance = br#"{"errorCode":"error.public-api.exceeded-account-historical-data-allowance"}"#;
        assert_eq!(answer_error("prices", 403, allowance, false).kind, Failure::Throttled);
        assert_eq!(
            answer_error(
                "the login",
                403,
                br#"{"errorCode":"error.public-api.exceeded-api-key-allowance"}"#,
                true
            )
            .kind,
            Failure::Throttled
        );
        assert_eq!(answer_error("prices", 503, b"<html>", false).kind, Failure::Transient);
        assert_eq!(
            answer_error("prices", 404, br#"{"errorCode":"error.error.instrument.epic.unavailable"}"#, false)
                .kind,
            Failure::Refused
        );
        assert_eq!(error_code(br#"{"errorCode":7}"#), None);
    }
}
