//! Feed health: what the feeders report in `tapeflow.feed_status` (one row per provider
//! connection, rewritten about once a second), what the database refused from them
//! (`tapeflow.feed_rejects`), and, from the stored data itself, each symbol's newest bar.

use crate::api::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use serde_json::Value;

/// A feeder that has not rewritten its row for this long is gone (crashed or stopped without
/// recording it): its row no longer describes a live connection.
const REPORT_STALE_SECONDS: f64 = 10.0;

/// `{"feeds": [feed_status rows + message_age_seconds, report_age_seconds, stale],
///   "rejects": {"last_day": n, "recent": [{received_at, record, reason}]},
///   "symbols": [{symbol, provider, last_bar, last_trade, age_seconds}]}`.
pub async fn feeds(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let client = state.db.client().await?;
    let row = client
        .query_one(
            "SELECT
               (SELECT coalesce(json_agg(to_jsonb(f) || jsonb_build_object(
                    'message_age_seconds', extract(epoch FROM now() - f.last_message_at)::float8,
                    'report_age_seconds', extract(epoch FROM now() - f.updated_at)::float8,
                    'stale', now() - f.updated_at > make_interval(secs => $1))
                  ORDER BY f.provider, f.connection), '[]') FROM tapeflow.feed_status f),
               (SELECT json_build_object(
                    'last_day', (SELECT count(*) FROM tapeflow.feed_rejects WHERE received_at > now() - interval '1 day'),
                    'recent', coalesce((SELECT json_agg(r ORDER BY r.id DESC) FROM (
                        SELECT id, received_at, record, reason FROM tapeflow.feed_rejects ORDER BY id DESC LIMIT 5) r), '[]'))),
               (SELECT coalesce(json_agg(x ORDER BY x.symbol), '[]') FROM (
                 SELECT s.symbol, s.provider, l.bucket AS last_bar, tapeflow.close_time(l.candle) AS last_trade,
                        extract(epoch FROM now() - tapeflow.close_time(l.candle))::float8 AS age_seconds
                 FROM tapeflow.symbols s
                 LEFT JOIN LATERAL (SELECT b.bucket, b.candle FROM tapeflow.bars_1m b WHERE b.symbol = s.symbol
                                    ORDER BY b.bucket DESC LIMIT 1) l ON true
                 WHERE s.active) x)",
            &[&REPORT_STALE_SECONDS],
        )
        .await?;
    let (feeds, rejects, symbols): (Value, Value, Value) = (row.get(0), row.get(1), row.get(2));
    Ok(Json(serde_json::json!({ "feeds": feeds, "rejects": rejects, "symbols": symbols })))
}
