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
        ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        // Errors raised by our SQL functions (unknown symbol, bad timeframe) are the caller's.
        match e.as_db_error() {
            Some(db) if db.code().code() == "P0001" => {
                ApiError(StatusCode::BAD_REQUEST, db.message().to_string())
            }
            Some(db) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, db.message().to_string()),
            None => ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
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
