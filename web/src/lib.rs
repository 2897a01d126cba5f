//! The dashboard's HTTP side: `fn app() -> Router` so tests can serve it on any port.

mod account;
mod api;
mod arbitrage;
pub mod auth;
mod backtests;
pub mod cli;
mod db;
mod events;
mod feeds;
pub mod limits;
pub mod server;
mod strategies;
mod symbol;
mod telemetry;
pub mod users;

use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum::Router;
use std::path::PathBuf;
use std::sync::Arc;
use tower_http::services::{ServeDir, ServeFile};

pub use db::Db;
pub use events::Hub;

/// Configuration from the environment (see README).
#[derive(Debug, Clone)]
pub struct Config {
    /// `TAPEFLOW_WEB_ADDR`, default `127.0.0.1:8080`.
    pub addr: String,
    /// `DATABASE_URL`, default the project cluster.
    pub database_url: String,
    /// `TAPEFLOW_WEB_ROOT`: the directory holding `static/` and `node_modules/`.
    pub web_root: PathBuf,
    /// Logins, sessions, cookies, the `Host` allow-list.
    pub auth: auth::AuthConfig,
    /// Backtests and SSE clients.
    pub limits: limits::Limits,
}

impl Config {
    /// [`Config::try_from_env`], panicking on a malformed setting.
    pub fn from_env() -> Config {
        Config::try_from_env().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// From the environment; a malformed setting is an error naming it.
    pub fn try_from_env() -> anyhow::Result<Config> {
        let addr = std::env::var("TAPEFLOW_WEB_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
        Ok(Config {
            auth: auth::AuthConfig::from_env(&addr)?,
            limits: limits::Limits::from_env()?,
            addr,
            database_url: tapeflow_db::database_url(),
            web_root: std::env::var("TAPEFLOW_WEB_ROOT")
                .map(PathBuf::from)
                .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
        })
    }
}

#[derive(Clone)]
pub struct AppState {
    pub db: Arc<Db>,
    pub database_url: String,
    pub hub: Hub,
    pub web_root: PathBuf,
    pub auth: Arc<auth::AuthConfig>,
    pub limits: Arc<limits::Limits>,
    /// Backtests running, per user.
    pub runs: limits::RunCounter,
    /// Places for `/events` clients (`TAPEFLOW_WEB_MAX_SSE`).
    pub sse_slots: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// Connects to the database, starts the LISTEN fan-out and the metrics recorder, and on a
    /// first start (no users) creates an admin with a generated password.
    pub async fn start(config: &Config) -> anyhow::Result<AppState> {
        telemetry::install();
        let db = Arc::new(Db::connect(config.database_url.clone()).await?);
        users::ensure_admin(&*db.client().await?, config.auth.admin_password_file.as_deref()).await?;
        let hub = Hub::start(config.database_url.clone());
        Ok(AppState {
            db,
            hub,
            database_url: config.database_url.clone(),
            web_root: config.web_root.clone(),
            auth: Arc::new(config.auth.clone()),
            limits: Arc::new(config.limits.clone()),
            runs: limits::RunCounter::default(),
            sse_slots: Arc::new(tokio::sync::Semaphore::new(config.limits.max_sse)),
        })
    }
}

pub fn app(state: AppState) -> Router {
    let static_dir = state.web_root.join("static");
    let vendor = state.web_root.join("node_modules/lightweight-charts/dist");
    Router::new()
        .route("/api/symbols", get(api::symbols))
        .route("/api/candles", get(api::candles))
        .route("/api/signals", get(api::signals))
        .route("/api/backtests", get(backtests::list).post(backtests::start))
        .route("/api/backtests/:id", get(backtests::detail))
        .route("/api/backtests/:id/equity", get(backtests::equity))
        .route("/api/backtests/:id/trades", get(backtests::trades))
        .route("/api/account", get(account::account))
        .route("/api/positions", get(account::positions))
        .route("/api/orders", get(account::orders))
        .route("/api/fills", get(account::fills))
        .route("/api/rejections", get(account::rejections))
        .route("/api/kill-switch", post(account::kill_switch))
        .route("/api/flatten", post(account::flatten))
        .route("/api/instruments", get(symbol::instruments))
        .route("/api/symbol/:sym", get(symbol::symbol))
        .route("/api/symbol/:sym/profile", get(symbol::profile))
        .route("/api/symbol/:sym/developing", get(symbol::developing))
        .route("/api/symbol/:sym/flow", get(symbol::flow))
        .route("/api/symbol/:sym/footprint", get(symbol::footprint))
        .route("/api/symbol/:sym/states", get(symbol::states))
        .route("/api/strategies", get(strategies::list))
        .route("/api/strategies/:symbol/:strategy", axum::routing::put(strategies::update))
        .route("/api/feeds", get(feeds::feeds))
        .route("/api/arbitrage/markets", get(arbitrage::markets))
        .route("/api/arbitrage/opportunities", get(arbitrage::opportunities))
        .route("/api/arbitrage/trades", get(arbitrage::trades))
        .route("/api/arbitrage/positions", get(arbitrage::positions))
        .route("/api/arbitrage/report", get(arbitrage::report))
        .route("/events", get(events::sse))
        .route("/healthz", get(events::healthz))
        .route("/metrics", get(telemetry::render))
        .route("/login", get(login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/api/session", get(auth::session))
        .route("/api/users", get(users::api_list).post(users::api_add))
        .route("/api/users/:name", post(users::api_update).delete(users::api_remove))
        .nest_service("/vendor/lightweight-charts", ServeDir::new(vendor))
        .nest_service("/static", ServeDir::new(&static_dir))
        .route_service("/", ServeFile::new(static_dir.join("index.html")))
        .fallback_service(ServeDir::new(&static_dir))
        // Outermost last: requests are counted, then the Host, session, CSRF and role checks.
        .layer(from_fn_with_state(state.clone(), auth::guard))
        .layer(from_fn(telemetry::count_requests))
        .with_state(state)
}

/// `GET /login`: the login page.
async fn login_page(axum::extract::State(state): axum::extract::State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::fs::read_to_string(state.web_root.join("static/login.html")).await {
        Ok(html) => axum::response::Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "login page missing");
            (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "login page missing").into_response()
        }
    }
}
