//! Market discovery from the Gamma REST API: `GET /markets?active=true&closed=false` with the
//! configured filters (one query per tag, one for the slugs, or one for everything), paginated
//! by `limit`/`offset`, read into [`GammaMarket`]s.
//!
//! Gamma writes several list fields as JSON *inside a string* (`outcomes`,
//! `clobTokenIds`: `"[\"Yes\", \"No\"]"`) and numbers now as numbers, now as strings; both forms
//! are read. A market is kept only when it is a tradable binary market: two outcomes with a
//! token each, an order book, active and not closed.

use super::frames::decimal_text;
use super::PolymarketConfig;
use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;

/// A market as Tapeflow stores it (`tapeflow.polymarket_markets` and its two tokens).
#[derive(Debug, Clone, PartialEq)]
pub struct GammaMarket {
    pub condition_id: String,
    pub gamma_id: Option<String>,
    pub question: String,
    pub slug: Option<String>,
    pub description: Option<String>,
    /// Tag slugs (`include_tag=true`), and their Gamma ids.
    pub tags: Vec<String>,
    pub tag_ids: Vec<String>,
    pub end_date: Option<DateTime<Utc>>,
    pub event_id: Option<String>,
    pub event_slug: Option<String>,
    pub neg_risk: bool,
    pub neg_risk_market_id: Option<String>,
    pub neg_risk_augmented: bool,
    pub min_order_size: Decimal,
    pub tick_size: Option<Decimal>,
    pub fees: Fees,
    pub active: bool,
    pub closed: bool,
    pub accepting_orders: bool,
    pub enable_order_book: Option<bool>,
    /// (token id, outcome label), in Gamma's order (index 0 is YES of a Yes/No market).
    pub tokens: Vec<(String, String)>,
    /// Gamma's object verbatim.
    pub raw: Value,
}

/// A market's taker fee parameters, and where they came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fees {
    /// Fees disabled: free.
    Free,
    /// Gamma's `feeSchedule` {rate, exponent}.
    Schedule { rate: Decimal, exponent: u32 },
    /// Fees enabled without a schedule: the rate published for the market's `feeType`.
    Published { rate: Decimal, exponent: u32 },
    /// Fees enabled and neither a schedule nor a known `feeType`: the arbitrage scan must not
    /// watch the market (it would understate costs).
    Unknown,
}

impl Fees {
    /// (rate, exponent) to store; `Unknown` stores 0 and the market unwatched.
    pub fn parameters(self) -> (Decimal, i32) {
        match self {
            Fees::Free | Fees::Unknown => (Decimal::ZERO, 1),
            Fees::Schedule { rate, exponent } | Fees::Published { rate, exponent } => (rate, exponent as i32),
        }
    }
}

/// The rates Polymarket publishes per fee type (exponent 1), for markets whose Gamma object
/// enables fees without a schedule: crypto 0.072, sports 0.03, politics 0.04, culture 0.05.
fn published_rate(fee_type: &str) -> Option<Decimal> {
    let t = fee_type.to_ascii_lowercase();
    let rate = if t.starts_with("crypto") {
        Decimal::new(72, 3)
    } else if t.starts_with("sports") {
        Decimal::new(3, 2)
    } else if t.starts_with("politic") {
        Decimal::new(4, 2)
    } else if t.starts_with("culture") {
        Decimal::new(5, 2)
    } else {
        return None;
    };
    Some(rate)
}

/// Why a Gamma market was not read or not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GammaError(pub String);

impl std::fmt::Display for GammaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GammaError {}

fn gerr(msg: impl Into<String>) -> GammaError {
    GammaError(msg.into())
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().chars().take(10_000).collect()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn flag(v: &Value, key: &str) -> Option<bool> {
    match v.get(key) {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => match s.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn number(v: &Value, key: &str) -> Result<Option<Decimal>, GammaError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => decimal_text(s.trim()).map(Some).map_err(|e| gerr(format!("{key}: {e}"))),
        Some(Value::Number(n)) => {
            let s = n.to_string();
            decimal_text(&s)
                .or_else(|_| {
                    Decimal::from_scientific(&s).map_err(|e| super::frames::FrameError(e.to_string()))
                })
                .map(Some)
                .map_err(|e| gerr(format!("{key}: {e}")))
        }
        Some(other) => Err(gerr(format!("{key} is {other}"))),
    }
}

/// A list field given as an array or as JSON text of an array.
fn string_list(v: &Value, key: &str) -> Result<Vec<String>, GammaError> {
    let parsed;
    let list = match v.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(Vec::new()),
        Some(Value::String(s)) => {
            parsed = serde_json::from_str::<Value>(s)
                .map_err(|e| gerr(format!("{key} is not a JSON list: {e}")))?;
            &parsed
        }
        Some(other) => other,
    };
    let Value::Array(items) = list else { return Err(gerr(format!("{key} is not a list"))) };
    items
        .iter()
        .map(|i| match i {
            Value::String(s) => Ok(s.trim().to_string()),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(gerr(format!("an element of {key} is {other}"))),
        })
        .collect()
}

fn time(v: &Value, key: &str) -> Result<Option<DateTime<Utc>>, GammaError> {
    let Some(s) = text(v, key) else { return Ok(None) };
    if let Ok(t) = DateTime::parse_from_rfc3339(&s) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    // "2024-11-05" (endDateIso) or "2024-11-05 00:00:00+00".
    if let Ok(d) = chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d") {
        return Ok(Some(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc()));
    }
    if let Ok(t) = DateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%#z") {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    Err(gerr(format!("{key} {s:?} is not a time")))
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Reads one Gamma market object. `Err` for what is not a market Tapeflow can trade: no
/// condition id, not exactly two outcomes with a token each, no order book.
pub fn parse_market(v: &Value) -> Result<GammaMarket, GammaError> {
    if !v.is_object() {
        return Err(gerr("not an object"));
    }
    let condition_id =
        text(v, "conditionId").or_else(|| text(v, "condition_id")).ok_or_else(|| gerr("no conditionId"))?;
    if !is_id(&condition_id) {
        return Err(gerr(format!("conditionId {condition_id:?} is not an id")));
    }
    let question = text(v, "question").ok_or_else(|| gerr(format!("market {condition_id}: no question")))?;
    let outcomes = string_list(v, "outcomes")?;
    let token_ids = string_list(v, "clobTokenIds")?;
    if token_ids.len() != 2 || outcomes.len() != 2 {
        return Err(gerr(format!(
            "market {condition_id}: {} outcomes and {} tokens, not a binary market",
            outcomes.len(),
            token_ids.len()
        )));
    }
    if let Some(bad) = token_ids.iter().find(|t| !is_id(t)) {
        return Err(gerr(format!("market {condition_id}: token id {bad:?} is not an id")));
    }
    if token_ids[0] == token_ids[1] {
        return Err(gerr(format!("market {condition_id}: both outcomes have token {}", token_ids[0])));
    }
    let events = v.get("events").and_then(Value::as_array);
    let event = events.and_then(|e| e.first());
    let mut tags = Vec::new();
    let mut tag_ids = Vec::new();
    if let Some(Value::Array(list)) = v.get("tags") {
        for t in list {
            match t {
                Value::Object(_) => {
                    if let Some(s) = text(t, "slug").or_else(|| text(t, "label")) {
                        tags.push(s);
                    }
                    if let Some(i) = text(t, "id") {
                        tag_ids.push(i);
                    }
                }
                Value::String(s) => tags.push(s.clone()),
                _ => {}
            }
        }
    }
    let fees = match flag(v, "feesEnabled") {
        Some(true) => match v.get("feeSchedule") {
            Some(s @ Value::Object(_)) => {
                let rate = number(s, "rate")?.ok_or_else(|| gerr("feeSchedule without a rate"))?;
                let exponent = number(s, "exponent")?.unwrap_or(Decimal::ONE);
                let exp = u32::try_from(exponent.trunc().mantissa())
                    .ok()
                    .filter(|e| *e <= 8 && exponent.fract().is_zero());
                match exp {
                    Some(exponent) if rate >= Decimal::ZERO && rate < Decimal::ONE => {
                        Fees::Schedule { rate, exponent }
                    }
                    _ => {
                        return Err(gerr(format!("feeSchedule rate {rate} exponent {exponent} out of range")))
                    }
                }
            }
            _ => match text(v, "feeType").as_deref().and_then(published_rate) {
                Some(rate) => Fees::Published { rate, exponent: 1 },
                None => Fees::Unknown,
            },
        },
        _ => Fees::Free,
    };
    let min_order_size = number(v, "orderMinSize")?.unwrap_or_default();
    if min_order_size < Decimal::ZERO {
        return Err(gerr(format!("orderMinSize {min_order_size} is negative")));
    }
    let tick_size = number(v, "orderPriceMinTickSize")?.filter(|t| *t > Decimal::ZERO && *t < Decimal::ONE);
    let neg_risk_market_id = text(v, "negRiskMarketID").filter(|s| is_id(s));
    Ok(GammaMarket {
        gamma_id: text(v, "id"),
        question,
        slug: text(v, "slug").or_else(|| text(v, "market_slug")),
        description: text(v, "description"),
        tags,
        tag_ids,
        end_date: time(v, "endDate")?.or(time(v, "endDateIso")?),
        event_id: event.and_then(|e| text(e, "id")),
        event_slug: event.and_then(|e| text(e, "slug")),
        neg_risk: flag(v, "negRisk").unwrap_or(false),
        neg_risk_market_id,
        neg_risk_augmented: event.and_then(|e| flag(e, "negRiskAugmented")).unwrap_or(false),
        min_order_size,
        tick_size,
        fees,
        active: flag(v, "active").unwrap_or(true),
        closed: flag(v, "closed").unwrap_or(false),
        accepting_orders: flag(v, "acceptingOrders").unwrap_or(true),
        enable_order_book: flag(v, "enableOrderBook"),
        tokens: token_ids.into_iter().zip(outcomes).collect(),
        raw: v.clone(),
        condition_id,
    })
}

/// Reads a page of `GET /markets` (a JSON array): the markets, and the elements not read.
#[allow(clippy::type_complexity)]
pub fn parse_markets_page(
    body: &str,
) -> Result<(Vec<GammaMarket>, Vec<(GammaError, String)>, usize), GammaError> {
    let v: Value = serde_json::from_str(body).map_err(|e| gerr(format!("not JSON: {e}")))?;
    let items = match v {
        Value::Array(items) => items,
        // Some deployments wrap lists: {"data": [...]}.
        Value::Object(mut o) => match o.remove("data") {
            Some(Value::Array(items)) => items,
            _ => return Err(gerr("an object where a list of markets was expected")),
        },
        other => return Err(gerr(format!("{other} where a list of markets was expected"))),
    };
    let n = items.len();
    let mut markets = Vec::new();
    let mut bad = Vec::new();
    for item in items {
        match parse_market(&item) {
            Ok(m) => markets.push(m),
            Err(e) => bad.push((e, item.to_string().chars().take(300).collect())),
        }
    }
    Ok((markets, bad, n))
}

/// What the configuration selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Every active market (no tag or slug configured).
    All,
    /// The markets of one tag (Gamma's numeric tag id).
    Tag(String),
    /// The markets of these slugs.
    Slugs(Vec<String>),
}

/// Whether a market read from Gamma is one to trade and store: the filters of the
/// configuration, applied again to whatever Gamma answered.
pub fn keep(
    m: &GammaMarket,
    cfg: &PolymarketConfig,
    tag_ids: &[String],
    now: DateTime<Utc>,
) -> Result<(), String> {
    if !m.active || m.closed {
        return Err("not active or closed".into());
    }
    if m.enable_order_book == Some(false) {
        return Err("no order book".into());
    }
    if let Some(before) = cfg.end_before.resolve(now) {
        if m.end_date.is_none_or(|e| e > before) {
            return Err(format!("ends {:?}, after {before}", m.end_date));
        }
    }
    if let Some(after) = cfg.end_after.resolve(now) {
        if m.end_date.is_some_and(|e| e < after) {
            return Err(format!("ended {:?}, before {after}", m.end_date));
        }
    }
    if cfg.tags.is_empty() && cfg.slugs.is_empty() {
        return Ok(());
    }
    let by_slug = m.slug.as_ref().is_some_and(|s| cfg.slugs.iter().any(|c| c == s));
    let by_tag = m.tag_ids.iter().any(|t| tag_ids.contains(t));
    if by_slug || by_tag {
        Ok(())
    } else {
        Err("matches no configured tag or slug".into())
    }
}

/// The Gamma REST client.
#[derive(Clone)]
pub struct Gamma {
    http: reqwest::Client,
    base: String,
    page_limit: usize,
}

impl Gamma {
    pub fn new(cfg: &PolymarketConfig) -> anyhow::Result<Gamma> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .user_agent(concat!("tapeflow-feed/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the Gamma HTTP client")?;
        Ok(Gamma { http, base: cfg.gamma_url.clone(), page_limit: cfg.page_limit })
    }

    async fn get(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> anyhow::Result<(reqwest::StatusCode, String)> {
        let url = format!("{}{path}", self.base);
        let resp = self.http.get(&url).query(query).send().await.with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let body = resp.text().await.with_context(|| format!("reading GET {url}"))?;
        Ok((status, body))
    }

    /// The numeric id of a tag given as an id or a slug (`GET /tags/slug/{slug}`).
    pub async fn tag_id(&self, tag: &str) -> anyhow::Result<String> {
        if !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(tag.to_string());
        }
        let path = format!(
            "/tags/slug/{}",
            url::form_urlencoded::byte_serialize(tag.as_bytes()).collect::<String>()
        );
        let (status, body) = self.get(&path, &[]).await?;
        anyhow::ensure!(status.is_success(), "tag {tag:?}: GET {path} answered {status}: {}", snippet(&body));
        let v: Value =
            serde_json::from_str(&body).with_context(|| format!("tag {tag:?}: {}", snippet(&body)))?;
        text(&v, "id").with_context(|| format!("tag {tag:?}: no id in {}", snippet(&body)))
    }

    /// One market by its slug (else its condition id), whatever its state: for a `new_market`
    /// message, which lacks the fees, end date and neg-risk facts.
    pub async fn lookup(&self, slug: Option<&str>, condition_id: &str) -> anyhow::Result<Vec<GammaMarket>> {
        let mut q: Vec<(String, String)> = vec![("include_tag".into(), "true".into())];
        match slug {
            Some(s) => q.push(("slug".into(), s.to_string())),
            None => q.push(("condition_ids".into(), condition_id.to_string())),
        }
        let (status, body) = self.get("/markets", &q).await?;
        anyhow::ensure!(
            status.is_success(),
            "GET /markets for {condition_id} answered {status}: {}",
            snippet(&body)
        );
        let (markets, _, _) = parse_markets_page(&body)
            .map_err(|e| anyhow::anyhow!("GET /markets for {condition_id}: {e}: {}", snippet(&body)))?;
        Ok(markets.into_iter().filter(|m| m.condition_id == condition_id).collect())
    }

    /// Every page of one query, up to `max` markets; `skipped` collects what was not read.
    pub async fn markets(
        &self,
        query: &Query,
        cfg: &PolymarketConfig,
        max: usize,
        skipped: &mut Vec<(GammaError, String)>,
    ) -> anyhow::Result<(Vec<GammaMarket>, bool)> {
        let now = Utc::now();
        let mut base: Vec<(String, String)> = vec![
            ("active".into(), "true".into()),
            ("closed".into(), "false".into()),
            ("include_tag".into(), "true".into()),
        ];
        match query {
            Query::All => {}
            Query::Tag(id) => base.push(("tag_id".into(), id.clone())),
            Query::Slugs(slugs) => base.extend(slugs.iter().map(|s| ("slug".into(), s.clone()))),
        }
        if let Some(t) = cfg.end_before.resolve(now) {
            base.push(("end_date_max".into(), t.to_rfc3339_opts(SecondsFormat::Secs, true)));
        }
        if let Some(t) = cfg.end_after.resolve(now) {
            base.push(("end_date_min".into(), t.to_rfc3339_opts(SecondsFormat::Secs, true)));
        }
        let mut out = Vec::new();
        let mut offset = 0usize;
        loop {
            let limit = self.page_limit.min(max.saturating_sub(out.len()).max(1));
            let mut q = base.clone();
            q.push(("limit".into(), limit.to_string()));
            q.push(("offset".into(), offset.to_string()));
            let (status, body) = self.get("/markets", &q).await?;
            anyhow::ensure!(
                status.is_success(),
                "GET /markets ({query:?}, offset {offset}) answered {status}: {}",
                snippet(&body)
            );
            let (markets, bad, n) = parse_markets_page(&body).map_err(|e| {
                anyhow::anyhow!("GET /markets ({query:?}, offset {offset}): {e}: {}", snippet(&body))
            })?;
            skipped.extend(bad);
            out.extend(markets);
            offset += n;
            if out.len() >= max {
                out.truncate(max);
                return Ok((out, n == limit));
            }
            if n < limit || n == 0 {
                return Ok((out, false));
            }
        }
    }
}

fn snippet(body: &str) -> String {
    body.chars().take(200).collect()
}

/// Discovers the configured markets: every query, paginated, merged by condition id, kept by
/// [`keep`]; at most `cfg.max_markets`. Returns them and whether the cap cut the list.
pub async fn discover(
    gamma: &Gamma,
    cfg: &PolymarketConfig,
    tag_ids: &[String],
    skipped: &mut Vec<(GammaError, String)>,
) -> anyhow::Result<(BTreeMap<String, GammaMarket>, bool)> {
    let mut queries = Vec::new();
    if cfg.tags.is_empty() && cfg.slugs.is_empty() {
        queries.push(Query::All);
    }
    queries.extend(tag_ids.iter().map(|t| Query::Tag(t.clone())));
    // Slugs in groups, so that a long list stays within URL limits.
    for chunk in cfg.slugs.chunks(50) {
        queries.push(Query::Slugs(chunk.to_vec()));
    }
    let now = Utc::now();
    let mut found = BTreeMap::new();
    let mut capped = false;
    for q in &queries {
        let room = cfg.max_markets.saturating_sub(found.len());
        if room == 0 {
            capped = true;
            break;
        }
        let (markets, more) = gamma.markets(q, cfg, room, skipped).await?;
        capped |= more;
        for m in markets {
            match keep(&m, cfg, tag_ids, now) {
                Ok(()) => {
                    found.entry(m.condition_id.clone()).or_insert(m);
                }
                Err(why) => {
                    tracing::debug!(provider = super::NAME, market = %m.condition_id, %why, "polymarket: market not kept")
                }
            }
        }
    }
    Ok((found, capped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(rel: &str) -> String {
        let data = std::env::var_os("TAPEFLOW_SHARED_DATA")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
        let path = data.join("c_protocol/polymarket").join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn real_gamma_markets() {
        let v: Value = serde_json::from_str(&capture("nautilus_crates_test_data/gamma_market.json")).unwrap();
        let m = parse_market(&v).unwrap();
        assert_eq!(m.condition_id, "0x78443f961b9a65869dcb39359de9960165c7e5cbad0904eac7f29cd77872a63b");
        assert_eq!(m.tokens[0].1, "Up");
        assert_eq!(
            m.tokens[1].0,
            "71183960810705820955071415844881728181970340514894896943812046065452395013351"
        );
        assert_eq!(m.end_date.unwrap().to_rfc3339(), "2026-03-12T09:25:00+00:00");
        assert_eq!((m.min_order_size, m.tick_size), (d("5"), Some(d("0.01"))));
        assert_eq!(m.event_slug.as_deref(), Some("btc-updown-5m-1773307200"));
        // Fees enabled, no schedule: the crypto rate.
        assert_eq!(m.fees, Fees::Published { rate: d("0.072"), exponent: 1 });
        assert!(m.active && !m.closed && !m.neg_risk);

        let v: Value = serde_json::from_str(&capture(
            "nautilus_crates_test_data/gamma_market_sports_market_money_line.json",
        ))
        .unwrap();
        let m = parse_market(&v).unwrap();
        assert_eq!(m.fees, Fees::Schedule { rate: d("0.03"), exponent: 1 });
        assert!(m.closed);

        let events: Value =
            serde_json::from_str(&capture("nautilus_crates_test_data/gamma_event.json")).unwrap();
        let m = parse_market(&events[0]["markets"][0]).unwrap();
        assert!(m.neg_risk);
        assert_eq!(
            m.neg_risk_market_id.as_deref(),
            Some("0x2c3d7e0eee6f058be3006baabf0d54a07da254ba47fe6e3e095e7990c7814700")
        );
        assert_eq!(m.fees, Fees::Free);
    }

    #[test]
    fn pages_keep_what_reads_and_report_the_rest() {
        // markets_list.json gives the token ids as real arrays, and has no outcomes.
        let (markets, bad, n) =
            parse_markets_page(&capture("nautilus_py_tests_http_responses/markets_list.json")).unwrap();
        assert_eq!((markets.len(), bad.len(), n), (0, 3, 3));
        let good = capture("nautilus_crates_test_data/gamma_market.json");
        let page = format!(r#"[{good}, {{"conditionId": "0x1"}}, 5, {good}]"#);
        let (markets, bad, n) = parse_markets_page(&page).unwrap();
        assert_eq!((markets.len(), bad.len(), n), (2, 2, 4));
        assert!(parse_markets_page("<html>").is_err());
        assert!(parse_markets_page(r#"{"error": "x"}"#).is_err());
    }

    #[test]
    fn unknown_fees_and_bad_schedules() {
        let mut v: Value =
            serde_json::from_str(&capture("nautilus_crates_test_data/gamma_market.json")).unwrap();
        v["feeType"] = Value::String("weather_fees".into());
        assert_eq!(parse_market(&v).unwrap().fees, Fees::Unknown);
        v["feeSchedule"] = serde_json::json!({"rate": 1.5, "exponent": 1});
        assert!(parse_market(&v).is_err());
        v["feeSchedule"] = serde_json::json!({"rate": "0.04", "exponent": 2});
        assert_eq!(parse_market(&v).unwrap().fees, Fees::Schedule { rate: d("0.04"), exponent: 2 });
        v["feesEnabled"] = Value::Bool(false);
        assert_eq!(parse_market(&v).unwrap().fees, Fees::Free);
    }
}
