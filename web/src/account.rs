//! The account page's API over what the executor records (`sql/008_execution.sql`): account
//! snapshots, positions marked to the last trade, orders with their bracket legs, fills,
//! refused signals, and the two controls, the kill switch and "flatten all".
//!
//! Money and quantities stay exact: numeric columns are sent as decimal strings (trailing
//! zeros trimmed), formatted by the browser.

use crate::api::{json_query, ApiError};
use crate::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError(StatusCode::BAD_REQUEST, e.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError(StatusCode::BAD_REQUEST, e.body_text())
    }
}

/// Order statuses after which an order no longer works at the broker: the list of the
/// `orders_open` partial index, spelled the same so that the planner can use it.
const FINAL_STATUSES: &str = "('filled', 'canceled', 'expired', 'rejected', 'replaced', 'done_for_day')";

/// `column` of `alias` as exact decimal text, e.g. `trim_scale(o.qty)::text AS qty`.
fn dec(alias: &str, columns: &[&str]) -> String {
    columns.iter().map(|c| format!("trim_scale({alias}.{c})::text AS {c}")).collect::<Vec<_>>().join(", ")
}

/// A `limit` query parameter: `default` when absent, else a whole number within 1..=`max`.
/// (Taken as text, so that a bad value is refused with a message naming the parameter.)
fn limit(value: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    match value.map(|v| (v, v.trim().parse::<i64>())) {
        None => Ok(default),
        Some((_, Ok(n))) if (1..=max).contains(&n) => Ok(n),
        Some((v, _)) => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("limit: expected a whole number from 1 to {max}, got {v:?}"),
        )),
    }
}

/// The latest snapshot per broker with its day P&L, the realised and unrealised totals, the
/// kill switch, and counts that tell whether the executor has done anything yet.
pub async fn account(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    json_query(
        &state,
        &format!(
            "WITH latest AS (
                 SELECT DISTINCT ON (broker) * FROM tapeflow.account_snapshots ORDER BY broker, day DESC
             )
             SELECT json_build_object(
                 'trading_enabled', (SELECT trading_enabled FROM tapeflow.risk_limits),
                 'accounts', coalesce((SELECT json_agg(json_build_object('broker', a.broker, 'day', a.day,
                         'start_equity', trim_scale(a.start_equity)::text, 'equity', trim_scale(a.equity)::text,
                         'cash', trim_scale(a.cash)::text, 'buying_power', trim_scale(a.buying_power)::text,
                         'day_pnl', trim_scale(a.equity - a.start_equity)::text,
                         'realised_pnl', trim_scale(a.realised_pnl)::text,
                         'unrealised_pnl', trim_scale(a.unrealised_pnl)::text, 'updated_at', a.updated_at)
                     ORDER BY a.broker) FROM latest a), '[]'),
                 'total', (SELECT json_build_object('start_equity', trim_scale(sum(a.start_equity))::text,
                         'equity', trim_scale(sum(a.equity))::text, 'cash', trim_scale(sum(a.cash))::text,
                         'buying_power', trim_scale(sum(a.buying_power))::text,
                         'day_pnl', trim_scale(sum(a.equity - a.start_equity))::text,
                         'updated_at', max(a.updated_at))
                     FROM latest a HAVING count(*) > 0),
                 'realised_pnl', (SELECT trim_scale(coalesce(sum(realised_pnl), 0))::text FROM tapeflow.position_book),
                 'realised_pnl_today', (SELECT trim_scale(coalesce(sum(realised_pnl), 0))::text FROM tapeflow.fills
                     WHERE time >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
                 'unrealised_pnl', (SELECT trim_scale(coalesce(sum(unrealised_pnl), 0))::text FROM tapeflow.positions),
                 'open_positions', (SELECT count(*) FROM tapeflow.positions),
                 'open_orders', (SELECT count(*) FROM tapeflow.orders WHERE status NOT IN {FINAL_STATUSES}),
                 'orders', (SELECT count(*) FROM tapeflow.orders),
                 'fills', (SELECT count(*) FROM tapeflow.fills))"
        ),
        &[],
    )
    .await
}

/// Open positions with their unrealised P&L marked to the last trade.
pub async fn positions(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let numbers = dec(
        "p",
        &[
            "quantity",
            "avg_price",
            "last_price",
            "unrealised_pnl",
            "realised_pnl",
            "open_fees",
            "stop",
            "target",
        ],
    );
    json_query(
        &state,
        &format!(
            "SELECT json_agg(x ORDER BY x.symbol, x.strategy) FROM (
                 SELECT p.symbol, p.strategy, p.side, {numbers}, p.opened_at, p.entry_signal
                 FROM tapeflow.positions p) x"
        ),
        &[],
    )
    .await
}

#[derive(Deserialize)]
pub struct OrderQuery {
    status: Option<String>,
    limit: Option<String>,
}

/// Orders newest first, each bracket entry with its take-profit and stop-loss legs in `legs`.
/// `status=open` (the default) keeps those still working, or whose legs still are.
pub async fn orders(
    State(state): State<AppState>,
    q: Result<Query<OrderQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let open = match q.status.as_deref() {
        None | Some("open") => true,
        Some("all") => false,
        Some(other) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("status: expected open or all, got {other:?}"),
            ))
        }
    };
    let limit = limit(q.limit.as_deref(), 100, 1000)?;
    let fields = |alias: &str| {
        format!(
            "{alias}.id, {alias}.signal_id, {alias}.parent_id, {alias}.broker, {alias}.client_order_id,
             {alias}.broker_order_id, {alias}.symbol, {alias}.strategy, {alias}.purpose, {alias}.leg, {alias}.side,
             {}, {alias}.status, {alias}.status NOT IN {FINAL_STATUSES} AS open, {alias}.error,
             {alias}.created_at, {alias}.updated_at",
            dec(alias, &["qty", "limit_price", "stop_price", "filled_qty", "filled_avg_price"])
        )
    };
    json_query(
        &state,
        &format!(
            "SELECT json_agg(x ORDER BY x.id DESC) FROM (
                 SELECT {}, coalesce((SELECT json_agg(l ORDER BY l.id) FROM (
                         SELECT {} FROM tapeflow.orders c WHERE c.parent_id = o.id) l), '[]') AS legs
                 FROM tapeflow.orders o
                 WHERE o.parent_id IS NULL
                   AND (NOT $1 OR o.status NOT IN {FINAL_STATUSES} OR EXISTS (
                        SELECT 1 FROM tapeflow.orders c WHERE c.parent_id = o.id AND c.status NOT IN {FINAL_STATUSES}))
                 ORDER BY o.id DESC LIMIT $2) x",
            fields("o"),
            fields("c")
        ),
        &[&open, &limit],
    )
    .await
}

#[derive(Deserialize)]
pub struct FillQuery {
    symbol: Option<String>,
    limit: Option<String>,
}

/// Fills newest first, of one symbol or all, with the leg of the order each belongs to.
pub async fn fills(
    State(state): State<AppState>,
    q: Result<Query<FillQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let limit = limit(q.limit.as_deref(), 200, 5000)?;
    let symbol = q.symbol.filter(|s| !s.is_empty());
    if let Some(symbol) = &symbol {
        let client = state.db.client().await?;
        let known = client.query_opt("SELECT 1 FROM tapeflow.symbols WHERE symbol = $1", &[symbol]).await?;
        if known.is_none() {
            return Err(ApiError(StatusCode::BAD_REQUEST, format!("unknown symbol {symbol}")));
        }
    }
    json_query(
        &state,
        &format!(
            "SELECT json_agg(x ORDER BY x.time DESC, x.id DESC) FROM (
                 SELECT f.id, f.order_id, f.broker, f.execution_id, f.symbol, f.strategy, f.side,
                        {}, f.time, o.client_order_id, o.purpose, o.leg, o.signal_id
                 FROM tapeflow.fills f JOIN tapeflow.orders o ON o.id = f.order_id
                 WHERE $1::text IS NULL OR f.symbol = $1
                 ORDER BY f.time DESC, f.id DESC LIMIT $2) x",
            dec("f", &["qty", "price", "fee", "realised_pnl"])
        ),
        &[&symbol, &limit],
    )
    .await
}

#[derive(Deserialize)]
pub struct LimitQuery {
    limit: Option<String>,
}

/// Signals the executor refused (`rejected`, with the gate's `reject_code` and the message in
/// `error`) or that expired unclaimed, newest first.
pub async fn rejections(
    State(state): State<AppState>,
    q: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let limit = limit(q.limit.as_deref(), 100, 1000)?;
    json_query(
        &state,
        &format!(
            "SELECT json_agg(x ORDER BY x.id DESC) FROM (
                 SELECT s.id, s.time, s.bar, s.symbol, s.strategy, s.kind, s.side, {}, s.reason, s.status,
                        s.reject_code, s.error, s.origin, s.closed_at
                 FROM tapeflow.signals s WHERE s.status IN ('rejected', 'expired')
                 ORDER BY s.id DESC LIMIT $1) x",
            dec("s", &["entry", "stop", "target", "quantity"])
        ),
        &[&limit],
    )
    .await
}

#[derive(Deserialize)]
pub struct KillSwitch {
    enabled: bool,
}

/// Turns trading on or off (`risk_limits.trading_enabled`); the change is announced on
/// `tapeflow_risk`, which wakes the executor and reaches browsers as a `risk` event.
pub async fn kill_switch(
    State(state): State<AppState>,
    body: Result<Json<KillSwitch>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let client = state.db.client().await?;
    let row = client
        .query_opt(
            "UPDATE tapeflow.risk_limits SET trading_enabled = $1 RETURNING trading_enabled",
            &[&body.enabled],
        )
        .await?
        .ok_or_else(|| {
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, "tapeflow.risk_limits has no row".into())
        })?;
    Ok(Json(json!({ "trading_enabled": row.get::<_, bool>(0) })))
}

/// Closes every open position through the executor: one exit signal per position.
pub async fn flatten(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let Json(signals) = json_query(
        &state,
        &format!(
            "SELECT json_agg(x ORDER BY x.id) FROM (
                 SELECT s.id, s.symbol, s.strategy, s.kind, s.side, {}, s.origin, s.status
                 FROM tapeflow.flatten_all() s) x",
            dec("s", &["quantity", "entry"])
        ),
        &[],
    )
    .await?;
    let count = signals.as_array().map_or(0, Vec::len);
    Ok(Json(json!({ "signals": signals, "count": count })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_columns_are_trimmed_text() {
        assert_eq!(
            dec("o", &["qty", "price"]),
            "trim_scale(o.qty)::text AS qty, trim_scale(o.price)::text AS price"
        );
    }

    #[test]
    fn limits_default_and_refuse_out_of_range() {
        assert_eq!(limit(None, 100, 1000).ok(), Some(100));
        assert_eq!(limit(Some("1000"), 100, 1000).ok(), Some(1000));
        let ApiError(status, message) = limit(Some("0"), 100, 1000).err().unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(message, r#"limit: expected a whole number from 1 to 1000, got "0""#);
        assert!(limit(Some("1001"), 100, 1000).is_err());
        assert!(limit(Some("lots"), 100, 1000).is_err());
    }
}
