//! Logins, sessions, CSRF, roles and the `Host` allow-list.
//!
//! Users live in `tapeflow.users` (argon2id hashes); a login creates a row in
//! `tapeflow.web_sessions` keyed by the SHA-256 of a random cookie, so sessions survive a
//! restart of the web app. Every request passes [`guard`]: the `Host` header must be allowed
//! (no DNS rebinding), the JSON API and `/events` need a session, mutating requests need the
//! session's CSRF token in `X-CSRF-Token`, and the session's role must allow the request
//! ([`required_role`]). `/healthz`, `/metrics`, `/login` and the static files are public.

use crate::api::ApiError;
use crate::AppState;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{COOKIE, HOST, LOCATION, ORIGIN, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::Duration;
use tapeflow_db::config::env_or;

pub const SESSION_COOKIE: &str = "tapeflow_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What a user may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also starts backtests, edits strategies, uses the kill switch and flatten.
    Trader,
    /// Also manages users.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "trader" => Some(Role::Trader),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Trader => "trader",
            Role::Admin => "admin",
        }
    }
}

/// When cookies get the `Secure` attribute (`TAPEFLOW_WEB_SECURE_COOKIES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureCookies {
    /// `auto`: when the request came through a TLS proxy (`X-Forwarded-Proto: https`).
    Auto,
    Always,
    Never,
}

/// Security settings from the environment (see the README).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `TAPEFLOW_WEB_SECURE_COOKIES`: `auto` (default), `true` or `false`.
    pub secure_cookies: SecureCookies,
    /// `TAPEFLOW_WEB_SESSION_HOURS` (default 12): a session unused this long expires.
    pub session_ttl: Duration,
    /// `TAPEFLOW_WEB_LOGIN_WINDOW_SECS` (default 900): failures counted over this window,
    /// which is also how long a lock-out lasts after the last counted failure.
    pub login_window: Duration,
    /// `TAPEFLOW_WEB_LOGIN_MAX_FAILURES` (default 5): failed logins of one user name in the
    /// window (since its last success) before it is locked out.
    pub max_failures_user: i64,
    /// `TAPEFLOW_WEB_LOGIN_MAX_FAILURES_PER_ADDRESS` (default 20): the same per client address.
    pub max_failures_address: i64,
    /// `TAPEFLOW_WEB_TRUST_PROXY` (default false): take the client address from the last
    /// `X-Forwarded-For` entry (set it only behind a proxy that writes that header).
    pub trust_proxy: bool,
    /// `TAPEFLOW_WEB_ALLOWED_HOSTS`: `Host` values accepted (`host` for any port, or
    /// `host:port`); default the bind address and localhost / 127.0.0.1 / [::1] with its port.
    pub allowed_hosts: Vec<String>,
    /// `TAPEFLOW_WEB_ADMIN_PASSWORD_FILE`: where the generated first admin password is
    /// written (mode 0600); unset: only printed.
    pub admin_password_file: Option<std::path::PathBuf>,
}

impl AuthConfig {
    pub fn from_env(addr: &str) -> anyhow::Result<AuthConfig> {
        let secure_cookies = match std::env::var("TAPEFLOW_WEB_SECURE_COOKIES").as_deref().map(str::trim) {
            Err(_) | Ok("") | Ok("auto") => SecureCookies::Auto,
            Ok("true") | Ok("1") | Ok("on") => SecureCookies::Always,
            Ok("false") | Ok("0") | Ok("off") => SecureCookies::Never,
            Ok(other) => anyhow::bail!("TAPEFLOW_WEB_SECURE_COOKIES={other:?}: expected auto, true or false"),
        };
        let allowed_hosts = match std::env::var("TAPEFLOW_WEB_ALLOWED_HOSTS") {
            Ok(v) if !v.trim().is_empty() => {
                v.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect()
            }
            _ => default_hosts(addr),
        };
        let hours: f64 = env_or("TAPEFLOW_WEB_SESSION_HOURS", 12.0)?;
        anyhow::ensure!(hours > 0.0 && hours.is_finite(), "TAPEFLOW_WEB_SESSION_HOURS must be positive");
        let window: u64 = env_or("TAPEFLOW_WEB_LOGIN_WINDOW_SECS", 900)?;
        Ok(AuthConfig {
            secure_cookies,
            session_ttl: Duration::from_secs_f64(hours * 3600.0),
            login_window: Duration::from_secs(window.max(1)),
            max_failures_user: env_or("TAPEFLOW_WEB_LOGIN_MAX_FAILURES", 5i64)?.max(1),
            max_failures_address: env_or("TAPEFLOW_WEB_LOGIN_MAX_FAILURES_PER_ADDRESS", 20i64)?.max(1),
            trust_proxy: env_or("TAPEFLOW_WEB_TRUST_PROXY", false)?,
            allowed_hosts,
            admin_password_file: std::env::var("TAPEFLOW_WEB_ADMIN_PASSWORD_FILE")
                .ok()
                .filter(|p| !p.trim().is_empty())
                .map(Into::into),
        })
    }
}

/// The bind address and the loopback names with its port.
pub fn default_hosts(addr: &str) -> Vec<String> {
    let mut hosts = vec![addr.to_ascii_lowercase()];
    if let Some((_, port)) = addr.rsplit_once(':') {
        for h in ["localhost", "127.0.0.1", "[::1]"] {
            let h = format!("{h}:{port}");
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    }
    hosts
}

/// Whether `host` (a `Host` header value) is in `allowed`: an entry with a port must match
/// exactly, one without a port matches that host on any port.
pub fn host_allowed(allowed: &[String], host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = match host.rsplit_once(':') {
        Some((n, p)) if !n.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && !host.ends_with(']') => n,
        _ => host.as_str(),
    };
    allowed.iter().any(|a| a == &host || (a == name && !a.contains(':')) || a == "*")
}

// ---- passwords and tokens ----

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// Verified against for unknown user names, so that they take as long as known ones.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("not a password").expect("argon2 works"))
}

/// A password of 20 letters and digits (about 115 bits), without look-alikes.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20).map(|_| ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()] as char).collect()
}

/// Passwords need this many characters.
pub const MIN_PASSWORD_LEN: usize = 8;

pub fn check_password_policy(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!("a password needs at least {MIN_PASSWORD_LEN} characters"));
    }
    if password.len() > 1024 {
        return Err("a password has at most 1024 bytes".into());
    }
    Ok(())
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---- the request guard ----

/// The logged-in user of a request (an extension set by [`guard`]).
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub name: String,
    pub role: Role,
    pub csrf: String,
}

fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The role a request needs: reading needs `viewer`, managing users `admin`, any other
/// mutation (backtests, strategies, the kill switch, flatten) `trader`.
pub fn required_role(method: &Method, path: &str) -> Role {
    if path == "/api/users" || path.starts_with("/api/users/") {
        Role::Admin
    } else if !is_mutating(method) || path == "/logout" {
        Role::Viewer
    } else {
        Role::Trader
    }
}

/// Paths served without a session: health, metrics, the login page and static files.
fn needs_session(path: &str) -> bool {
    path.starts_with("/api/") || path == "/api" || path == "/events" || path == "/logout" || path == "/"
}

pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn request_host(req: &Request) -> Option<String> {
    req.headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()))
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Looks up the session of the request's cookie (and marks it seen, at most once a minute).
async fn session_of(state: &AppState, headers: &HeaderMap) -> Result<Option<CurrentUser>, ApiError> {
    let Some(token) = cookie(headers, SESSION_COOKIE).filter(|t| !t.is_empty() && t.len() < 200) else {
        return Ok(None);
    };
    let id = token_hash(token);
    let client = state.db.client().await?;
    let row = client
        .query_opt(
            "SELECT s.user_name, u.role, s.csrf_token, s.last_seen < now() - interval '60 seconds'
             FROM tapeflow.web_sessions s JOIN tapeflow.users u ON u.name = s.user_name
             WHERE s.id_hash = $1 AND s.expires_at > now() AND NOT u.disabled",
            &[&id],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    if row.get::<_, bool>(3) {
        let ttl = state.auth.session_ttl.as_secs_f64();
        tokio::spawn(async move {
            let _ = client
                .execute(
                    "UPDATE tapeflow.web_sessions SET last_seen = now(), expires_at = now() + make_interval(secs => $2)
                     WHERE id_hash = $1",
                    &[&id, &ttl],
                )
                .await;
        });
    }
    Ok(Some(CurrentUser {
        name: row.get(0),
        role: Role::parse(row.get(1)).unwrap_or(Role::Viewer),
        csrf: row.get(2),
    }))
}

/// The middleware in front of every route (see the module documentation).
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let host = request_host(&req);
    if !host.as_deref().is_some_and(|h| host_allowed(&state.auth.allowed_hosts, h)) {
        metrics::counter!("tapeflow_web_bad_host_total").increment(1);
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "host {:?} is not served here (allowed: TAPEFLOW_WEB_ALLOWED_HOSTS)",
                host.unwrap_or_default()
            ),
        );
    }
    let path = req.uri().path().to_string();
    if !needs_session(&path) {
        return next.run(req).await;
    }
    let user = match session_of(&state, req.headers()).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let Some(user) = user else {
        if path == "/" && req.method() == Method::GET {
            return (StatusCode::SEE_OTHER, [(LOCATION, "/login")]).into_response();
        }
        return error(StatusCode::UNAUTHORIZED, "not logged in");
    };
    if is_mutating(req.method()) {
        let sent = req.headers().get(CSRF_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
        if !constant_time_eq(sent, user.csrf.as_bytes()) {
            metrics::counter!("tapeflow_web_csrf_refusals_total").increment(1);
            return error(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token (X-CSRF-Token); reload the page",
            );
        }
    }
    let needed = required_role(req.method(), &path);
    if user.role < needed {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "forbidden: {} is a {}; this needs the {} role",
                user.name,
                user.role.as_str(),
                needed.as_str()
            ),
        );
    }
    req.extensions_mut().insert(user);
    next.run(req).await
}

// ---- login, logout, session ----

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
}

/// The client's address: the connection's peer, or behind a trusted proxy the last
/// `X-Forwarded-For` entry.
fn client_address(state: &AppState, headers: &HeaderMap, peer: Option<SocketAddr>) -> String {
    if state.auth.trust_proxy {
        if let Some(last) = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|s| !s.is_empty())
        {
            return last.to_string();
        }
    }
    peer.map(|p| p.ip().to_string()).unwrap_or_else(|| "unknown".into())
}

fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    match state.auth.secure_cookies {
        SecureCookies::Always => true,
        SecureCookies::Never => false,
        SecureCookies::Auto => headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').next().unwrap_or("").trim().eq_ignore_ascii_case("https")),
    }
}

fn session_cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("cookie is ASCII")
}

/// "4 min 12 s" for a wait.
pub fn human_wait(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{} min {} s", s / 60, s % 60),
    }
}

/// `POST /login` `{name, password}`: sets the session cookie, answers `{name, role, csrf}`.
/// Refused (429 with `Retry-After`) while the user name or the address is locked out.
pub async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Json<LoginForm>, axum::extract::rejection::JsonRejection>,
) -> Response {
    // A cross-site login form could log a victim into an attacker's account.
    if let (Some(origin), Some(host)) = (headers.get(ORIGIN), headers.get(HOST)) {
        let origin = origin.to_str().unwrap_or("");
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
        if !origin_host.eq_ignore_ascii_case(host.to_str().unwrap_or("")) {
            return error(StatusCode::FORBIDDEN, "login from another site refused");
        }
    }
    let Json(form) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let name = form.name.trim().to_string();
    if name.is_empty() || name.len() > 64 || form.password.len() > 1024 {
        return error(StatusCode::BAD_REQUEST, "give a user name and a password");
    }
    let address = client_address(&state, &headers, peer.map(|Extension(ConnectInfo(a))| a));
    match login_checked(&state, &name, &form.password, &address, secure(&state, &headers)).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn login_checked(
    state: &AppState,
    name: &str,
    password: &str,
    address: &str,
    secure: bool,
) -> Result<Response, ApiError> {
    let cfg = &state.auth;
    let window = cfg.login_window.as_secs_f64();
    let client = state.db.client().await?;
    // The failure that started the current lock-out, if any: the Nth newest failure within
    // the window (since the last success); the lock-out ends one window after it.
    let locked = client
        .query_one(
            "SELECT
               (SELECT ceil(extract(epoch FROM f.time + make_interval(secs => $5) - now()))::bigint
                  FROM tapeflow.login_attempts f
                 WHERE f.user_name = $1 AND NOT f.success AND f.time > now() - make_interval(secs => $5)
                   AND f.time > coalesce((SELECT max(time) FROM tapeflow.login_attempts
                                          WHERE user_name = $1 AND success), '-infinity')
                 ORDER BY f.time DESC OFFSET $3::bigint - 1 LIMIT 1),
               (SELECT ceil(extract(epoch FROM f.time + make_interval(secs => $5) - now()))::bigint
                  FROM tapeflow.login_attempts f
                 WHERE f.address = $2 AND NOT f.success AND f.time > now() - make_interval(secs => $5)
                 ORDER BY f.time DESC OFFSET $4::bigint - 1 LIMIT 1),
               (SELECT count(*) FROM tapeflow.login_attempts f
                 WHERE f.user_name = $1 AND NOT f.success AND f.time > now() - make_interval(secs => $5)
                   AND f.time > coalesce((SELECT max(time) FROM tapeflow.login_attempts
                                          WHERE user_name = $1 AND success), '-infinity'))",
            &[&name, &address, &cfg.max_failures_user, &cfg.max_failures_address, &window],
        )
        .await?;
    let user_wait: Option<i64> = locked.get(0);
    let address_wait: Option<i64> = locked.get(1);
    let failures: i64 = locked.get(2);
    if user_wait.is_some() || address_wait.is_some() {
        metrics::counter!("tapeflow_web_login_failures_total", "reason" => "locked").increment(1);
        let (wait, whom) = match (user_wait, address_wait) {
            (Some(u), Some(a)) if a > u => (a, "from this address".to_string()),
            (Some(u), _) => (u, format!("for {name}")),
            (None, Some(a)) => (a, "from this address".to_string()),
            (None, None) => unreachable!(),
        };
        let wait = wait.max(1);
        tracing::warn!(user = name, address, wait, "login refused: locked out");
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({
                "error": format!("Too many failed logins {whom}: locked out, try again in {}.", human_wait(wait)),
                "retry_after": wait,
            })),
        )
            .into_response();
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(wait as u64));
        return Ok(r);
    }

    let user = client
        .query_opt("SELECT password_hash, role, disabled FROM tapeflow.users WHERE name = $1", &[&name])
        .await?;
    let hash = user.as_ref().map(|r| r.get::<_, String>(0)).unwrap_or_else(|| dummy_hash().to_string());
    let given = password.to_string();
    let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &given)).await.unwrap_or(false)
        && user.is_some();
    if !ok {
        client
            .execute(
                "INSERT INTO tapeflow.login_attempts (address, user_name, success) VALUES ($1, $2, false)",
                &[&address, &name],
            )
            .await?;
        metrics::counter!("tapeflow_web_login_failures_total", "reason" => "wrong_password").increment(1);
        tracing::warn!(user = name, address, "login failed");
        let left = cfg.max_failures_user - failures - 1;
        let message = if left <= 0 {
            format!(
                "Wrong user name or password. Too many failures: {name} is locked out for {}.",
                human_wait(cfg.login_window.as_secs() as i64)
            )
        } else if left <= 2 {
            format!("Wrong user name or password ({left} more before a lock-out).")
        } else {
            "Wrong user name or password.".to_string()
        };
        return Ok(error(StatusCode::UNAUTHORIZED, message));
    }
    let user = user.expect("checked");
    if user.get::<_, bool>(2) {
        metrics::counter!("tapeflow_web_login_failures_total", "reason" => "disabled").increment(1);
        return Ok(error(StatusCode::FORBIDDEN, format!("user {name} is disabled")));
    }
    let role: String = user.get(1);
    let token = random_token();
    let csrf = random_token();
    let ttl = cfg.session_ttl.as_secs_f64();
    client
        .execute(
            "INSERT INTO tapeflow.web_sessions (id_hash, user_name, csrf_token, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
            &[&token_hash(&token), &name, &csrf, &ttl],
        )
        .await?;
    client
        .execute(
            "INSERT INTO tapeflow.login_attempts (address, user_name, success) VALUES ($1, $2, true)",
            &[&address, &name],
        )
        .await?;
    // Housekeeping: expired sessions and attempts older than any window.
    let _ = client
        .batch_execute(
            "DELETE FROM tapeflow.web_sessions WHERE expires_at < now();
             DELETE FROM tapeflow.login_attempts WHERE time < now() - interval '2 days'",
        )
        .await;
    tracing::info!(user = name, address, role, "logged in");
    let mut r = Json(json!({ "name": name, "role": role, "csrf": csrf })).into_response();
    r.headers_mut().insert(SET_COOKIE, session_cookie(&token, cfg.session_ttl.as_secs(), secure));
    Ok(r)
}

/// `POST /logout`: ends the session.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        let client = state.db.client().await?;
        client.execute("DELETE FROM tapeflow.web_sessions WHERE id_hash = $1", &[&token_hash(token)]).await?;
    }
    let mut r = Json(json!({ "logged_out": true })).into_response();
    r.headers_mut().insert(SET_COOKIE, session_cookie("", 0, secure(&state, &headers)));
    Ok(r)
}

/// `GET /api/session`: `{name, role, csrf}` of the logged-in user.
pub async fn session(Extension(user): Extension<CurrentUser>) -> Json<serde_json::Value> {
    Json(json!({ "name": user.name, "role": user.role.as_str(), "csrf": user.csrf }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_and_parse() {
        assert!(Role::Viewer < Role::Trader && Role::Trader < Role::Admin);
        for r in [Role::Viewer, Role::Trader, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn required_roles() {
        assert_eq!(required_role(&Method::GET, "/api/account"), Role::Viewer);
        assert_eq!(required_role(&Method::GET, "/events"), Role::Viewer);
        assert_eq!(required_role(&Method::POST, "/api/kill-switch"), Role::Trader);
        assert_eq!(required_role(&Method::POST, "/api/backtests"), Role::Trader);
        assert_eq!(required_role(&Method::PUT, "/api/strategies/AAPL"), Role::Trader);
        assert_eq!(required_role(&Method::GET, "/api/users"), Role::Admin);
        assert_eq!(required_role(&Method::DELETE, "/api/users/bob"), Role::Admin);
        assert_eq!(required_role(&Method::POST, "/logout"), Role::Viewer);
    }

    #[test]
    fn host_allow_list() {
        let allowed = default_hosts("127.0.0.1:8080");
        assert!(host_allowed(&allowed, "127.0.0.1:8080"));
        assert!(host_allowed(&allowed, "LOCALHOST:8080"));
        assert!(host_allowed(&allowed, "[::1]:8080"));
        assert!(!host_allowed(&allowed, "localhost:8081"));
        assert!(!host_allowed(&allowed, "evil.example:8080"));
        assert!(!host_allowed(&allowed, "127.0.0.1"));
        let named = vec!["tapeflow.example".to_string()];
        assert!(host_allowed(&named, "tapeflow.example"));
        assert!(host_allowed(&named, "tapeflow.example:443"));
        assert!(!host_allowed(&named, "tapeflow.example.evil"));
    }

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct horsf"));
        assert!(!verify_password("garbage", "correct horse"));
        let p = generate_password();
        assert_eq!(p.len(), 20);
        assert!(check_password_policy(&p).is_ok());
        assert!(check_password_policy("short").is_err());
    }

    #[test]
    fn cookies_are_read_and_written() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("a=1; tapeflow_session=abc; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        let c = session_cookie("abc", 60, true);
        let c = c.to_str().unwrap();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("; Secure"), "{c}");
        assert!(!session_cookie("abc", 60, false).to_str().unwrap().contains("Secure"));
    }

    #[test]
    fn waits_read_well() {
        assert_eq!(human_wait(42), "42 s");
        assert_eq!(human_wait(900), "15 min");
        assert_eq!(human_wait(252), "4 min 12 s");
    }
}
