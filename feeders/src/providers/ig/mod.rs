//! The IG Markets provider: a REST session (`CST` and `X-SECURITY-TOKEN`), Lightstreamer
//! streaming of `MARKET:<epic>` (quotes) and `CHART:<epic>:TICK` (ticks), and historic prices
//! for backfill. `provider_ref` is the epic.
//!
//! The session is opened with `POST /session` (version 2) and renewed before IG's tokens can
//! expire (`TAPEFLOW_IG_SESSION_RENEW_SECS`); a 401 on a call made with them logs in again. A
//! refused login fails the provider with IG's error code (routing starts it again later; this
//! provider waits `TAPEFLOW_IG_LOGIN_RETRY_SECS` after a refusal before trying the same
//! credentials again, as repeated failed logins get an IG account suspended).
//!
//! Streaming speaks TLCP over a WebSocket ([`tlcp`]); each epic has two subscriptions of one
//! item each, so a bad epic refuses only itself. `LOOP` rebinds the same session on a new
//! socket; a lost or stalled socket, or `END`, opens a new session, whose fresh subscriptions
//! replay IG's snapshot: tick ids come from the events themselves ([`convert::TickIds`]), so
//! the replay stores only the ticks missed while away.

pub mod convert;
pub mod rest;
pub mod tlcp;

mod backfill;
mod stream;

use crate::provider::{FeedCtx, Instrument, Provider};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rest::{Failure, RestError};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tapeflow_db::config::{env_parse, env_string};
use tokio::sync::watch;

/// IG's demo gateway: the default, so that nothing reaches a live account unless configured.
pub const DEMO_URL: &str = "https://demo-api.ig.com/gateway/deal";
/// IG's live gateway, for `TAPEFLOW_IG_URL`.
pub const LIVE_URL: &str = "https://api.ig.com/gateway/deal";

/// A credential: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The provider's settings, from the environment (see the README's "Provider: IG").
#[derive(Debug, Clone)]
pub struct IgConfig {
    pub api_key: Secret,
    pub username: String,
    pub password: Secret,
    /// `IG_ACCOUNT_ID`: the account to stream as; the login's current account when unset.
    pub account_id: Option<String>,
    /// `TAPEFLOW_IG_URL`: the REST gateway, [`DEMO_URL`] by default.
    pub rest_url: String,
    /// `TAPEFLOW_IG_STREAM_URL`: the Lightstreamer server, instead of the session's
    /// `lightstreamerEndpoint`.
    pub stream_url: Option<String>,
    /// `TAPEFLOW_IG_TIME_ZONE`: the zone of IG's times of day (`UPDATE_TIME`) and of the
    /// history ranges it is asked for (default Europe/London).
    pub time_zone: Tz,
    /// `TAPEFLOW_IG_SESSION_RENEW_SECS`: log in again this long after the last login (default
    /// 3 hours; IG's tokens last 6 hours after their last use).
    pub renew_every: Duration,
    /// `TAPEFLOW_IG_LOGIN_RETRY_SECS`: after a refused login, wait this long before trying the
    /// same credentials again (default 300).
    pub login_retry: Duration,
    /// `TAPEFLOW_IG_STALL_GRACE_MS`: a stream silent for its keep-alive plus this long is taken
    /// as stalled and replaced (default 5000).
    pub stall_grace: Duration,
    /// `TAPEFLOW_IG_PAGE_SIZE`: bars per page of historic prices (default 1000).
    pub page_size: u32,
    /// `TAPEFLOW_IG_THROTTLE_MS`: first wait after an allowance refusal; doubles up to 5
    /// minutes (default 10000).
    pub throttle_wait: Duration,
    /// `TAPEFLOW_IG_MAX_SUBSCRIPTIONS`: subscriptions per stream connection (default 40, IG's
    /// limit); each epic takes two.
    pub max_subscriptions: usize,
}

fn required(name: &str) -> anyhow::Result<String> {
    env_string(name).ok_or_else(|| {
        anyhow::anyhow!("{name} is not set: the ig provider needs IG_API_KEY, IG_USERNAME and IG_PASSWORD")
    })
}

impl IgConfig {
    pub fn from_env() -> anyhow::Result<IgConfig> {
        let zone_name = env_string("TAPEFLOW_IG_TIME_ZONE").unwrap_or_else(|| "Europe/London".into());
        let time_zone: Tz = zone_name.parse().map_err(|e| {
            anyhow::anyhow!("TAPEFLOW_IG_TIME_ZONE={zone_name:?} is not an IANA time zone: {e}")
        })?;
        let rest_url = env_string("TAPEFLOW_IG_URL").unwrap_or_else(|| DEMO_URL.into());
        url::Url::parse(&rest_url)
            .map_err(|e| anyhow::anyhow!("TAPEFLOW_IG_URL={rest_url:?} is not a URL: {e}"))?;
        let stream_url = env_string("TAPEFLOW_IG_STREAM_URL");
        if let Some(s) = &stream_url {
            url::Url::parse(s)
                .map_err(|e| anyhow::anyhow!("TAPEFLOW_IG_STREAM_URL={s:?} is not a URL: {e}"))?;
        }
        Ok(IgConfig {
            api_key: Secret::new(required("IG_API_KEY")?),
            username: required("IG_USERNAME")?,
            password: Secret::new(required("IG_PASSWORD")?),
            account_id: env_string("IG_ACCOUNT_ID"),
            rest_url: rest_url.trim_end_matches('/').to_string(),
            stream_url,
            time_zone,
            renew_every: Duration::from_secs(
                env_parse("TAPEFLOW_IG_SESSION_RENEW_SECS")?.unwrap_or(3 * 3600).max(1),
            ),
            login_retry: Duration::from_secs(env_parse("TAPEFLOW_IG_LOGIN_RETRY_SECS")?.unwrap_or(300)),
            stall_grace: Duration::from_millis(env_parse("TAPEFLOW_IG_STALL_GRACE_MS")?.unwrap_or(5000)),
            page_size: env_parse("TAPEFLOW_IG_PAGE_SIZE")?.unwrap_or(1000).max(1),
            throttle_wait: Duration::from_millis(
                env_parse("TAPEFLOW_IG_THROTTLE_MS")?.unwrap_or(10_000).max(1),
            ),
            max_subscriptions: env_parse("TAPEFLOW_IG_MAX_SUBSCRIPTIONS")?.unwrap_or(40).max(2),
        })
    }

    /// Which gateway this is, for the logs.
    fn environment(&self) -> &'static str {
        match self.rest_url.as_str() {
            DEMO_URL => "demo",
            LIVE_URL => "live",
            _ => "custom",
        }
    }
}

pub fn from_env() -> anyhow::Result<Arc<dyn Provider>> {
    Ok(Arc::new(IgProvider::new(IgConfig::from_env()?)?))
}

/// An open IG session.
#[derive(Debug, Clone)]
pub(crate) struct IgSession {
    pub cst: Secret,
    pub security_token: Secret,
    pub account_id: String,
    pub stream_endpoint: Option<String>,
    pub obtained: Instant,
    /// Counts logins, so that a caller can tell whether the session it was refused with is
    /// still the current one.
    pub generation: u64,
}

impl IgSession {
    /// `LS_password`.
    pub fn stream_password(&self) -> Secret {
        Secret::new(format!("CST-{}|XST-{}", self.cst.expose(), self.security_token.expose()))
    }
}

struct SessionSlot {
    current: Option<Arc<IgSession>>,
    generation: u64,
}

pub(crate) struct Inner {
    pub cfg: IgConfig,
    http: reqwest::Client,
    session: tokio::sync::Mutex<SessionSlot>,
    /// When and why the last login was refused.
    refused: Mutex<Option<(Instant, String)>>,
}

pub struct IgProvider {
    inner: Arc<Inner>,
}

impl IgProvider {
    pub fn new(cfg: IgConfig) -> anyhow::Result<IgProvider> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()?;
        tracing::info!(environment = cfg.environment(), url = %cfg.rest_url, user = %cfg.username, "ig provider configured");
        Ok(IgProvider {
            inner: Arc::new(Inner {
                cfg,
                http,
                session: tokio::sync::Mutex::new(SessionSlot { current: None, generation: 0 }),
                refused: Mutex::new(None),
            }),
        })
    }
}

#[async_trait]
impl Provider for IgProvider {
    fn name(&self) -> &'static str {
        "ig"
    }

    async fn stream(
        &self,
        ctx: FeedCtx,
        instruments: watch::Receiver<Vec<Instrument>>,
    ) -> anyhow::Result<()> {
        stream::run(self.inner.clone(), ctx, instruments).await
    }

    async fn backfill(
        &self,
        ctx: FeedCtx,
        instruments: Vec<Instrument>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        backfill::run(self.inner.clone(), ctx, instruments, from, to).await
    }
}

impl Inner {
    /// The refusal still in its cooldown, if any: (time left, IG's reason).
    pub fn refusal(&self) -> Option<(Duration, String)> {
        let r = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        let (at, why) = r.as_ref()?;
        let left = self.cfg.login_retry.checked_sub(at.elapsed())?;
        (!left.is_zero()).then(|| (left, why.clone()))
    }

    /// Whether a session is open (its tokens not known to be refused).
    pub async fn has_session(&self) -> bool {
        self.session.lock().await.current.is_some()
    }

    /// The current session, logging in when there is none or it is due for renewal.
    pub async fn session(&self) -> Result<Arc<IgSession>, RestError> {
        let mut slot = self.session.lock().await;
        let current = slot.current.clone();
        match current {
            Some(s) if s.obtained.elapsed() < self.cfg.renew_every => Ok(s),
            // Due for renewal: the tokens still work for hours, so a renewal that fails for
            // a passing reason keeps them; a refusal is reported.
            Some(s) => match self.login_locked(&mut slot).await {
                Err(e) if e.kind != Failure::Refused => {
                    tracing::warn!(error = %e, "IG session renewal failed; the current tokens stay in use");
                    Ok(s)
                }
                r => r,
            },
            None => self.login_locked(&mut slot).await,
        }
    }

    /// Logs in again now (renewal), replacing the current session.
    pub async fn renew(&self) -> Result<Arc<IgSession>, RestError> {
        let mut slot = self.session.lock().await;
        self.login_locked(&mut slot).await
    }

    /// Forgets the session of this generation (its tokens were refused); a newer one stays.
    pub async fn invalidate(&self, generation: u64) {
        let mut slot = self.session.lock().await;
        if slot.current.as_ref().is_some_and(|s| s.generation == generation) {
            slot.current = None;
        }
    }

    async fn login_locked(&self, slot: &mut SessionSlot) -> Result<Arc<IgSession>, RestError> {
        let cfg = &self.cfg;
        let started = Instant::now();
        let resp = self
            .http
            .post(format!("{}/session", cfg.rest_url))
            .header("X-IG-API-KEY", cfg.api_key.expose())
            .header("Version", "2")
            .header("Accept", "application/json; charset=UTF-8")
            .json(&serde_json::json!({ "identifier": cfg.username, "password": cfg.password.expose() }))
            .send()
            .await
            .map_err(|e| {
                RestError::new(Failure::Transient, format!("cannot reach IG at {}: {e}", cfg.rest_url))
            })?;
        let status = resp.status().as_u16();
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (cst, xst) = (header("CST"), header("X-SECURITY-TOKEN"));
        let body = resp
            .bytes()
            .await
            .map_err(|e| RestError::new(Failure::Transient, format!("IG's login answer was cut: {e}")))?;
        if !(200..300).contains(&status) {
            let err = rest::answer_error("the login", status, &body, true);
            if err.kind == Failure::Refused {
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), err.message.clone()));
            }
            return Err(err);
        }
        let (Some(cst), Some(mut xst)) = (cst, xst) else {
            return Err(RestError::new(
                Failure::Transient,
                "IG's login answer has no CST or X-SECURITY-TOKEN header",
            ));
        };
        let info = rest::parse_session(&body).map_err(|e| RestError::new(Failure::Transient, e))?;
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let mut account = info.account_id.clone().unwrap_or_default();
        if let Some(wanted) = &cfg.account_id {
            if *wanted != account {
                xst = self.switch_account(&cst, &xst, wanted).await?;
                account = wanted.clone();
            }
        }
        check_zone(cfg.time_zone, info.timezone_offset);
        if account.is_empty() {
            return Err(RestError::new(
                Failure::Refused,
                "IG's login answer names no account: set IG_ACCOUNT_ID",
            ));
        }
        slot.generation += 1;
        let session = Arc::new(IgSession {
            cst: Secret::new(cst),
            security_token: Secret::new(xst),
            account_id: account,
            stream_endpoint: info.lightstreamer_endpoint,
            obtained: started,
            generation: slot.generation,
        });
        tracing::info!(account = %session.account_id, generation = session.generation, "logged in to IG");
        slot.current = Some(session.clone());
        Ok(session)
    }

    /// `PUT /session` to the configured account; returns the security token to use from then on.
    async fn switch_account(&self, cst: &str, xst: &str, account: &str) -> Result<String, RestError> {
        let resp = self
            .http
            .put(format!("{}/session", self.cfg.rest_url))
            .header("X-IG-API-KEY", self.cfg.api_key.expose())
            .header("CST", cst)
            .header("X-SECURITY-TOKEN", xst)
            .header("Version", "1")
            .header("Accept", "application/json; charset=UTF-8")
            .json(&serde_json::json!({ "accountId": account, "defaultAccount": false }))
            .send()
            .await
            .map_err(|e| {
                RestError::new(Failure::Transient, format!("cannot reach IG to switch account: {e}"))
            })?;
        let status = resp.status().as_u16();
        let token = resp.headers().get("X-SECURITY-TOKEN").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = resp.bytes().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            let mut err = rest::answer_error(
                &format!("the switch to account {account} (IG_ACCOUNT_ID)"),
                status,
                &body,
                true,
            );
            if err.kind == Failure::TokenInvalid {
                err.kind = Failure::Transient;
            }
            return Err(err);
        }
        Ok(token.unwrap_or_else(|| xst.to_string()))
    }

    /// A `GET` with the session's tokens; a 401 logs in again once. Returns the body.
    pub async fn get(&self, path_and_query: &str, version: &str, what: &str) -> Result<Vec<u8>, RestError> {
        let mut relogged = false;
        loop {
            let session = self.session().await?;
            let resp = self
                .http
                .get(format!("{}{path_and_query}", self.cfg.rest_url))
                .header("X-IG-API-KEY", self.cfg.api_key.expose())
                .header("CST", session.cst.expose())
                .header("X-SECURITY-TOKEN", session.security_token.expose())
                .header("Version", version)
                .header("Accept", "application/json; charset=UTF-8")
                .send()
                .await
                .map_err(|e| {
                    RestError::new(Failure::Transient, format!("cannot reach IG for {what}: {e}"))
                })?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await.map_err(|e| {
                RestError::new(Failure::Transient, format!("IG's answer for {what} was cut: {e}"))
            })?;
            if (200..300).contains(&status) {
                return Ok(body.to_vec());
            }
            let err = rest::answer_error(what, status, &body, false);
            if err.kind == Failure::TokenInvalid && !relogged {
                tracing::info!(error = %err, "IG refused the session tokens; logging in again");
                self.invalidate(session.generation).await;
                relogged = true;
                continue;
            }
            return Err(err);
        }
    }
}

/// Warns when the configured zone's offset now differs from the one IG reports for the account.
fn check_zone(zone: Tz, account_offset_hours: Option<f64>) {
    use chrono::Offset;
    let Some(hours) = account_offset_hours else { return };
    let ours = Utc::now().with_timezone(&zone).offset().fix().local_minus_utc();
    if (f64::from(ours) - hours * 3600.0).abs() > 60.0 {
        tracing::warn!(
            zone = %zone,
            zone_offset_hours = f64::from(ours) / 3600.0,
            account_offset_hours = hours,
            "the IG account's time zone offset differs from TAPEFLOW_IG_TIME_ZONE's: set TAPEFLOW_IG_TIME_ZONE to the account's zone (used for UPDATE_TIME and history ranges)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_never_printed() {
        let cfg = IgConfig {
            api_key: Secret::new("key-123"),
            username: "user".into(),
            password: Secret::new("pass-456"),
            account_id: None,
            rest_url: DEMO_URL.into(),
            stream_url: None,
            time_zone: chrono_tz::Europe::London,
            renew_every: Duration::from_secs(1),
            login_retry: Duration::from_secs(1),
            stall_grace: Duration::from_secs(1),
            page_size: 1,
            throttle_wait: Duration::from_secs(1),
            max_subscriptions: 40,
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("key-123") && !shown.contains("pass-456"), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert_eq!(cfg.environment(), "demo");
        let s = IgSession {
            cst: Secret::new("c"),
            security_token: Secret::new("x"),
            account_id: "A".into(),
            stream_endpoint: None,
            obtained: Instant::now(),
            generation: 1,
        };
        assert_eq!(s.stream_password().expose(), "CST-c|XST-x");
        assert!(!format!("{s:?}").contains("CST-c"));
    }
}
