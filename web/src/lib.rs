//! The dashboard's HTTP side: `fn app() -> Router` so tests can serve it on any port.

mod account;
mod api;
mod backtests;
mod db;
mod events;
mod feeds;
mod strategies;
mod symbol;

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
}

impl Config {
    pub fn from_env() -> Config {
        Config {
            addr: std::env::var("TAPEFLOW_WEB_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into()),
            database_url: tapeflow_db::database_url(),
            web_root: std::env::var("TAPEFLOW_WEB_ROOT")
                .map(PathBuf::from)
                .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub db: Arc<Db>,
    pub database_url: String,
    pub hub: Hub,
    pub web_root: PathBuf,
}

impl AppState {
    /// Connects to the database and starts the LISTEN fan-out.
    pub async fn start(config: &Config) -> anyhow::Result<AppState> {
        let db = Arc::new(Db::connect(config.database_url.clone()).await?);
        let hub = Hub::start(config.database_url.clone());
        Ok(AppState { db, hub, database_url: config.database_url.clone(), web_root: config.web_root.clone() })
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
        .route("/events", get(events::sse))
        .route("/healthz", get(events::healthz))
        .nest_service("/vendor/lightweight-charts", ServeDir::new(vendor))
        .nest_service("/static", ServeDir::new(&static_dir))
        .route_service("/", ServeFile::new(static_dir.join("index.html")))
        .fallback_service(ServeDir::new(&static_dir))
        .with_state(state)
}
