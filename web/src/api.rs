//! JSON API: thin queries over the SQL functions and views of the schema.

use crate::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<tokio_postgres::Error>() {
            Ok(e) => db_error(&e),
            Err(e) => {
                // Connection failures name hosts and users: the log gets them, not the browser.
                tracing::warn!(error = %format!("{e:#}"), "database unavailable");
                ApiError(StatusCode::SERVICE_UNAVAILABLE, "database unavailable; try again shortly".into())
            }
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        db_error(&e)
    }
}

/// The one way a database error reaches a browser. The errors our SQL functions and the
/// extension raise for bad input (`RAISE EXCEPTION`, SQLSTATE P0001; the extension's
/// `error!`, XX000) explain themselves and are the caller's (400); any other error is logged
/// in full and the browser gets a short message without SQL text.
pub fn db_error(e: &tokio_postgres::Error) -> ApiError {
    match e.as_db_error() {
        Some(db) if matches!(db.code().code(), "P0001" | "XX000") => {
            let message = db.message().lines().next().unwrap_or_default();
            ApiError(StatusCode::BAD_REQUEST, message.chars().take(300).collect())
        }
        Some(db) => {
            tracing::error!(code = db.code().code(), error = %db, "database error");
            let message = match db.code().code() {
                c if c.starts_with("22") => "invalid input (see the server log)",
                "57014" => "the query was cancelled (timeout)",
                c if c.starts_with("53") || c.starts_with("57") || c.starts_with("08") => {
                    "the database is busy or unavailable; try again shortly"
                }
                _ => "internal database error (details are in the server log)",
            };
            let status = if db.code().code().starts_with("22") {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            ApiError(status, message.into())
        }
        None => {
            tracing::warn!(error = %e, "database connection error");
            ApiError(StatusCode::SERVICE_UNAVAILABLE, "database unavailable; try again shortly".into())
        }
    }
}

/// Runs a query whose single column is a JSON array built by the database.
pub async fn json_query(
    state: &AppState,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Json<Value>, ApiError> {
    let client = state.db.client().await?;
    let row = client.query_one(sql, params).await?;
    Ok(Json(row.get::<_, Option<Value>>(0).unwrap_or_else(|| json!([]))))
}

pub async fn symbols(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    json_query(&state, "SELECT json_agg(w ORDER BY w.symbol) FROM tapeflow.watchlist w", &[]).await
}

#[derive(Deserialize)]
pub struct CandleQuery {
    symbol: String,
    #[serde(default = "default_tf")]
    tf: String,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

fn default_tf() -> String {
    "1m".into()
}

pub async fn candles(
    State(state): State<AppState>,
    Query(q): Query<CandleQuery>,
) -> Result<Json<Value>, ApiError> {
    let to = q.to.unwrap_or_else(|| Utc::now() + Duration::minutes(1));
    let from =
        q.from.unwrap_or_else(|| to - if q.tf == "1d" { Duration::days(180) } else { Duration::days(3) });
    json_query(
        &state,
        "SELECT json_agg(c ORDER BY c.time) FROM tapeflow.candles($1, $2, $3, $4) c",
        &[&q.symbol, &q.tf, &from, &to],
    )
    .await
}

#[derive(Deserialize)]
pub struct SignalQuery {
    symbol: Option<String>,
    limit: Option<i64>,
}

pub async fn signals(
    State(state): State<AppState>,
    Query(q): Query<SignalQuery>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db.client().await?;
    // Signals arrive with the live-strategy migration; before that the log is simply empty.
    let exists: bool =
        client.query_one("SELECT to_regclass('tapeflow.signals') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(Json(json!([])));
    }
    json_query(
        &state,
        "SELECT json_agg(s ORDER BY s.id DESC) FROM (SELECT * FROM tapeflow.signals
           WHERE $1::text IS NULL OR symbol = $1 ORDER BY id DESC LIMIT $2) s",
        &[&q.symbol, &q.limit.unwrap_or(200).clamp(1, 5000)],
    )
    .await
}

/// A request the database refused (400 with its parser's message and what it refers to), or
/// any other API error. The symbol page names a query parameter, the strategies page a field
/// of the parameters (or none when the message names no single key).
pub enum Refusal {
    Param { param: &'static str, message: String },
    Field { field: Option<String>, message: String },
    Api(ApiError),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Param { param, message } => {
                (StatusCode::BAD_REQUEST, Json(json!({ "error": message, "param": param }))).into_response()
            }
            Refusal::Field { field, message } => {
                (StatusCode::BAD_REQUEST, Json(json!({ "error": message, "field": field }))).into_response()
            }
            Refusal::Api(e) => e.into_response(),
        }
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Api(e)
    }
}

impl From<tokio_postgres::Error> for Refusal {
    fn from(e: tokio_postgres::Error) -> Self {
        Refusal::Api(e.into())
    }
}

impl From<anyhow::Error> for Refusal {
    fn from(e: anyhow::Error) -> Self {
        Refusal::Api(e.into())
    }
}
