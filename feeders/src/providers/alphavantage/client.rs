//! Requests to Alpha Vantage's `/query`: one pacer for every request of the process (the limit
//! is per key, whatever the symbol), a bounded answer size, and errors that never carry the key
//! (it travels in the query string, which transport errors would otherwise quote).

use super::answer::{self, Answer, AnswerError, BarTime};
use super::Config;
use chrono_tz::Tz;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// `outputsize`: the latest 100 bars, or everything (the trailing 30 days, or the whole month
/// asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Compact,
    Full,
}

/// One request of the intraday series.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    /// Alpha Vantage's symbol (`provider_ref`).
    pub symbol: &'a str,
    pub size: Size,
    /// `YYYY-MM`: that month of history.
    pub month: Option<String>,
    /// Ask for CSV (no zone in it: read in `csv_zone`).
    pub csv: bool,
    pub csv_zone: Tz,
}

/// A request that got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connection refused or reset, time-out, an HTTP error status: worth retrying.
    #[error("{0}")]
    Transport(String),
    /// An answer that is neither a series nor a known refusal; `body` is its beginning.
    #[error("{error}")]
    Unreadable { error: AnswerError, body: String },
    #[error("the answer is larger than {0} bytes (TAPEFLOW_ALPHAVANTAGE_MAX_BYTES); refused")]
    TooLarge(usize),
}

/// Spaces requests to at most `rpm` a minute, across every task of the process, and holds them
/// all back after a throttle answer.
#[derive(Debug)]
pub struct Pacer {
    every: Duration,
    next: std::sync::Mutex<Instant>,
}

impl Pacer {
    pub fn new(rpm: f64) -> Pacer {
        Pacer { every: Duration::from_secs_f64(60.0 / rpm), next: std::sync::Mutex::new(Instant::now()) }
    }

    pub fn interval(&self) -> Duration {
        self.every
    }

    /// Waits for this request's turn; false if `cancel` fired first.
    pub async fn turn(&self, cancel: &CancellationToken) -> bool {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let at = (*next).max(Instant::now());
            *next = at + self.every;
            at
        };
        tokio::select! {
            _ = tokio::time::sleep_until(at) => true,
            _ = cancel.cancelled() => false,
        }
    }

    /// No request before `until` (after a throttle answer or an outage).
    pub fn hold(&self, until: Instant) {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        *next = (*next).max(until);
    }
}

pub struct Client {
    http: reqwest::Client,
    url: String,
    key: String,
    bar_time: BarTime,
    adjusted: bool,
    entitlement: Option<String>,
    max_bytes: usize,
}

impl Client {
    pub fn new(cfg: &Config) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("tapeflow-feed/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client {
            http,
            url: format!("{}/query", cfg.url.trim_end_matches('/')),
            key: cfg.api_key.clone(),
            bar_time: cfg.bar_time,
            adjusted: cfg.adjusted,
            entitlement: cfg.entitlement.clone(),
            max_bytes: cfg.max_bytes,
        })
    }

    /// One request; the answer parsed.
    pub async fn fetch(&self, q: &Query<'_>) -> Result<Answer, FetchError> {
        let mut params: Vec<(&str, &str)> = vec![
            ("function", "TIME_SERIES_INTRADAY"),
            ("symbol", q.symbol),
            ("interval", "1min"),
            ("outputsize", if q.size == Size::Full { "full" } else { "compact" }),
            ("extended_hours", "true"),
            ("adjusted", if self.adjusted { "true" } else { "false" }),
            ("datatype", if q.csv { "csv" } else { "json" }),
        ];
        if let Some(m) = &q.month {
            params.push(("month", m));
        }
        if let Some(e) = &self.entitlement {
            params.push(("entitlement", e));
        }
        params.push(("apikey", &self.key));
        let mut resp = self
            .http
            .get(&self.url)
            .query(&params)
            .send()
            .await
            .map_err(|e| FetchError::Transport(describe(e)))?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::Transport(describe(e)))? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::TooLarge(self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&body);
        let parsed = answer::parse_body(&text, self.bar_time, q.csv_zone);
        match parsed {
            // Refusals come with 200, but a 4xx may carry one too; a refusal says more than the status.
            Ok(a @ Answer::Refused(_)) => Ok(a),
            _ if status.as_u16() == 429 => {
                Ok(Answer::Refused(answer::Refusal::Throttled(format!("HTTP 429 {}", snippet(&text)))))
            }
            _ if !status.is_success() => {
                Err(FetchError::Transport(format!("HTTP {} {}", status.as_u16(), snippet(&text))))
            }
            Ok(a) => Ok(a),
            Err(error) => Err(FetchError::Unreadable { error, body: text.chars().take(2000).collect() }),
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("url", &self.url).field("key", &"<redacted>").finish()
    }
}

/// A transport error with its causes, without the request URL (which holds the key).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else {
        "request failed"
    };
    let mut text = format!("{what}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

fn snippet(text: &str) -> String {
    let t: String = text.chars().take(200).collect();
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}
