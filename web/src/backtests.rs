//! Backtests from the dashboard: list runs, start one (executed inside the database on its
//! own connection, its progress NOTICEs relayed to browsers as `backtest` events), and read a
//! run's statistics, equity curve and trades.

use crate::api::{db_error, json_query, ApiError};
use crate::auth::CurrentUser;
use crate::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_postgres::AsyncMessage;

const RUN_FIELDS: &str =
    "r.id, r.name, r.symbols, r.\"from\", r.\"to\", r.params, r.status, r.error, r.progress, r.bars,
    r.created_at, r.started_at, r.finished_at,
    (r.stats ->> 'trades')::bigint AS trades, (r.stats ->> 'return_pct')::float8 AS return_pct,
    (r.stats ->> 'sharpe')::float8 AS sharpe, (r.stats ->> 'max_drawdown_pct')::float8 AS max_drawdown_pct";

pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    json_query(
        &state,
        &format!("SELECT json_agg(x ORDER BY x.id DESC) FROM (SELECT {RUN_FIELDS} FROM tapeflow.backtest_runs r ORDER BY r.id DESC LIMIT 200) x"),
        &[],
    )
    .await
}

pub async fn detail(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    let client = state.db.client().await?;
    let run = client
        .query_opt(&format!("SELECT row_to_json(x) FROM (SELECT {RUN_FIELDS} FROM tapeflow.backtest_runs r WHERE r.id = $1) x"), &[&id])
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("backtest run {id} not found")))?;
    let run: Value = run.get(0);
    let stats: Option<Value> = if run["status"] == "completed" {
        client
            .query_one("SELECT json_object_agg(statistic, coalesce(to_json(number), to_json(value))) FROM tapeflow.backtest_stats($1)", &[&id])
            .await?
            .get(0)
    } else {
        None
    };
    Ok(Json(json!({ "run": run, "stats": stats })))
}

pub async fn equity(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    json_query(
        &state,
        "SELECT json_agg(json_build_object('time', time, 'equity', equity, 'drawdown_pct', drawdown_pct) ORDER BY time)
         FROM tapeflow.backtest_equity WHERE run_id = $1",
        &[&id],
    )
    .await
}

pub async fn trades(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    json_query(
        &state,
        "SELECT json_agg(json_build_object('symbol', symbol, 'side', side, 'quantity', quantity, 'entry_time', entry_time,
                 'entry_price', entry_price, 'exit_time', exit_time, 'exit_price', exit_price, 'pnl', pnl,
                 'return_pct', return_pct, 'fees', fees, 'exit_reason', exit_reason, 'mae', mae, 'mfe', mfe) ORDER BY n)
         FROM tapeflow.backtest_trades WHERE run_id = $1",
        &[&id],
    )
    .await
}

#[derive(Deserialize)]
pub struct StartRequest {
    symbols: Vec<String>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    #[serde(default)]
    params: Option<Value>,
}

/// Starts a run for the logged-in user within the limits (runs at once per user and in
/// total, days in the range, symbols): 202 `{id}`, else 400 or 429 with the reason.
pub async fn start(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    body: Result<Json<StartRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(req) = body?;
    let limits = &state.limits;
    if req.symbols.len() > limits.backtest_max_symbols {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "a backtest takes at most {} symbols (TAPEFLOW_WEB_BACKTEST_MAX_SYMBOLS), got {}",
                limits.backtest_max_symbols,
                req.symbols.len()
            ),
        ));
    }
    if req.to - req.from > chrono::Duration::days(limits.backtest_max_days) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "a backtest covers at most {} days (TAPEFLOW_WEB_BACKTEST_MAX_DAYS), got {}",
                limits.backtest_max_days,
                (req.to - req.from).num_days()
            ),
        ));
    }
    let slot =
        state.runs.acquire(&user.name, limits).map_err(|m| ApiError(StatusCode::TOO_MANY_REQUESTS, m))?;
    let client = state.db.client().await?;
    let params = req.params.unwrap_or_else(|| json!({}));
    let id: i64 = client
        .query_one(
            "SELECT tapeflow.backtest_create($1, $2, $3, $4)",
            &[&req.symbols, &req.from, &req.to, &params],
        )
        .await?
        .get(0);
    client
        .execute("UPDATE tapeflow.backtest_runs SET created_by = $2 WHERE id = $1", &[&id, &user.name])
        .await?;
    tracing::info!(id, user = user.name, "backtest started");
    tokio::spawn(async move {
        execute(state.clone(), id).await;
        drop(slot);
    });
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))))
}

/// Runs the backtest on a dedicated connection, relaying its progress NOTICEs.
async fn execute(state: AppState, id: i64) {
    let hub = state.hub.clone();
    let result = async {
        let (client, mut connection) = tapeflow_db::connect_once(&state.database_url).await?;
        if let Some(threads) = state.limits.backtest_threads {
            client.batch_execute(&format!("SET tapeflow.backtest_threads = {threads}")).await?;
        }
        let relay_hub = hub.clone();
        let prefix = format!("backtest {id}: ");
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(m)) = messages.next().await {
                if let AsyncMessage::Notice(n) = m {
                    // "backtest 7: 42% (…)" -> progress 0.42
                    if let Some(rest) = n.message().strip_prefix(&prefix) {
                        if let Some(pct) = rest.split('%').next().and_then(|p| p.trim().parse::<f64>().ok()) {
                            relay_hub.publish(
                                "backtest",
                                json!({ "id": id, "status": "running", "progress": pct / 100.0 }).to_string(),
                            );
                        }
                    }
                }
            }
        });
        hub.publish("backtest", json!({ "id": id, "status": "running", "progress": 0.0 }).to_string());
        let r = client.query_one("SELECT tapeflow.backtest_execute($1)", &[&id]).await;
        drop(client);
        let _ = driver.await;
        r.map(|_| ())
    }
    .await;
    if let Err(e) = result {
        // The database records how a run ended (failed or cancelled included) and announces
        // it. A run still pending was never started (no connection, or an error before the run
        // began, rolled back with its transaction): only then is the failure recorded here, in
        // the words the browser may see.
        let message = db_error(&e).1;
        tracing::warn!(id, error = %message, "backtest did not run");
        if let Ok(c) = state.db.client().await {
            let recorded = c
                .execute(
                    "UPDATE tapeflow.backtest_runs SET status = 'failed', error = $2, finished_at = now()
                     WHERE id = $1 AND status = 'pending'",
                    &[&id, &message],
                )
                .await;
            if matches!(recorded, Ok(1)) {
                hub.publish(
                    "backtest",
                    json!({ "id": id, "status": "failed", "error": message }).to_string(),
                );
            }
        }
    }
}
