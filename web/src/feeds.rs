//! Feed health: what the feeders report in `tapeflow.feed_status`, once that table exists
//! (no migration creates it yet), and, from the stored data itself, each symbol's newest
//! one-minute bar.

use crate::api::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

/// `{"table": bool, "feeds": [rows of tapeflow.feed_status as objects], "symbols": [{symbol,
/// provider, last_bar, last_trade, age_seconds}]}`; `feeds` is empty while the table is missing or empty.
pub async fn feeds(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let client = state.db.client().await?;
    let table: bool =
        client.query_one("SELECT to_regclass('tapeflow.feed_status') IS NOT NULL", &[]).await?.get(0);
    let feeds: Value = if table {
        client
            .query_one("SELECT coalesce(json_agg(to_jsonb(f)), '[]') FROM tapeflow.feed_status f", &[])
            .await?
            .get(0)
    } else {
        json!([])
    };
    let symbols: Value = client
        .query_one(
            "SELECT coalesce(json_agg(x ORDER BY x.symbol), '[]') FROM (
                 SELECT s.symbol, s.provider, l.bucket AS last_bar, tapeflow.close_time(l.candle) AS last_trade,
                        extract(epoch FROM now() - tapeflow.close_time(l.candle))::float8 AS age_seconds
                 FROM tapeflow.symbols s
                 LEFT JOIN LATERAL (SELECT b.bucket, b.candle FROM tapeflow.bars_1m b WHERE b.symbol = s.symbol
                                    ORDER BY b.bucket DESC LIMIT 1) l ON true
                 WHERE s.active) x",
            &[],
        )
        .await?
        .get(0);
    Ok(Json(json!({ "table": table, "feeds": feeds, "symbols": symbols })))
}
