//! The strategies page's API: the live strategy's configuration per symbol
//! (`tapeflow.strategy_configs`: enabled, extended hours, parameters, the last evaluation
//! error) and changes to it, validated by `tapeflow.validate_params` — the check the table's
//! trigger and the scheduler apply — before anything is written.
//!
//! A refused parameter comes back as a 400 naming it: `{"error": "...", "field":
//! "strategy.min_aggression_score"}`. The field is found by validating each parameter on its
//! own, so even a message that does not name its key (a wrong type) lands beside its field.

use crate::api::{ApiError, Refusal};
use crate::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

/// Strategies the scheduler knows (`strategy_configs.strategy`'s check).
pub const STRATEGIES: [&str; 1] = ["amt"];

/// One field of the parameter form: its dotted key, kind, the engine's default (as the README
/// documents it; a key left out takes it), the allowed values or range, and what it does.
struct Field {
    key: &'static str,
    kind: &'static str,
    default: Value,
    choices: &'static [&'static str],
    range: &'static str,
    help: &'static str,
}

fn field(
    key: &'static str,
    kind: &'static str,
    default: Value,
    range: &'static str,
    help: &'static str,
) -> Field {
    Field { key, kind, default, choices: &[], range, help }
}

/// The engine's parameters (`analytics/src/engine.rs`, `state.rs`, `strategy.rs`), grouped as
/// in the jsonb.
fn schema() -> Vec<Field> {
    vec![
        field("atr_period", "integer", json!(14), "1 to 1000", "Wilder ATR period, in bars"),
        field("warmup_bars", "integer", json!(20), "0 to 100000", "Session bars before any signal"),
        field("ticks_per_row", "integer", json!(1), "1 to 1000000", "Ticks per profile row"),
        field(
            "state.value_area_pct",
            "number",
            json!(0.7),
            "above 0 up to 1",
            "Value area share of volume (0.70 = 70 %)",
        ),
        Field {
            key: "state.va_method",
            kind: "choice",
            default: json!("dalton"),
            choices: &["dalton", "single"],
            range: "dalton or single",
            help: "How the value area grows from the POC",
        },
        Field {
            key: "state.profile_scope",
            kind: "choice",
            default: json!("session"),
            choices: &["session", "rolling"],
            range: "session or rolling",
            help: "Value area of the session profile or of the last rolling_bars bars",
        },
        field("state.rolling_bars", "integer", json!(60), "1 to 10000", "Bars of the rolling profile"),
        field(
            "state.momentum_lookback",
            "integer",
            json!(20),
            "1 to 10000",
            "Momentum compares with the close this many bars back",
        ),
        field(
            "state.momentum_threshold_pct",
            "number",
            json!(0.2),
            "above 0 up to 100",
            "Momentum, %, that counts as directional",
        ),
        field(
            "state.pressure_threshold",
            "number",
            json!(20.0),
            "above 0 up to 100",
            "Buy % − sell % that counts as directional",
        ),
        field(
            "state.lvn_proximity_pct",
            "number",
            json!(0.1),
            "0 to 100",
            "An LVN this close to the price, %, is reported",
        ),
        field(
            "aggression.volume_lookback",
            "integer",
            json!(20),
            "1 to 10000",
            "Bars whose mean volume is the average bar",
        ),
        field(
            "aggression.flow_lookback",
            "integer",
            json!(5),
            "1 to 1000",
            "Bars over which delta and pressure are summed",
        ),
        field(
            "aggression.spike_full_ratio",
            "number",
            json!(3.0),
            "above 1 up to 100",
            "Volume ratio at which the spike component is full",
        ),
        field(
            "aggression.delta_full_bars",
            "number",
            json!(2.0),
            "above 0 up to 1000",
            "Net delta, in average bars, at which the delta component is full",
        ),
        field(
            "aggression.pressure_full_pct",
            "number",
            json!(80.0),
            "above 50 up to 100",
            "Side share, %, at which the pressure component is full",
        ),
        field(
            "aggression.direction_threshold",
            "number",
            json!(0.25),
            "0 to 1",
            "|bias| needed for a buy or sell direction",
        ),
        field(
            "strategy.min_aggression_score",
            "number",
            json!(70.0),
            "0 to 100",
            "Minimum aggression for an entry",
        ),
        field(
            "strategy.atr_stop_multiplier",
            "number",
            json!(1.5),
            "above 0 up to 20",
            "Stop distance, in ATRs",
        ),
        field(
            "strategy.atr_target_multiplier",
            "number",
            json!(3.0),
            "above 0 up to 50",
            "Target distance, in ATRs",
        ),
        field(
            "strategy.allow_balance_trades",
            "boolean",
            json!(false),
            "true or false",
            "Balance bars may enter in the flow's direction",
        ),
        field(
            "strategy.balance_min_aggression",
            "number",
            json!(80.0),
            "0 to 100",
            "Minimum aggression for a balance entry",
        ),
        field(
            "strategy.exit_on_reversal",
            "boolean",
            json!(true),
            "true or false",
            "Exit on an opposite imbalance with opposite flow",
        ),
        field(
            "strategy.risk_per_trade_pct",
            "number",
            json!(1.0),
            "above 0 up to 10",
            "Equity risked per trade, %",
        ),
        field("strategy.max_positions", "integer", json!(3), "1 to 100", "Most simultaneous positions"),
        field(
            "strategy.max_daily_loss_pct",
            "number",
            json!(3.0),
            "above 0 up to 100",
            "Daily loss, %, that blocks new entries",
        ),
    ]
}

fn schema_json() -> Value {
    Value::Array(
        schema()
            .into_iter()
            .map(|f| {
                json!({ "key": f.key, "kind": f.kind, "default": f.default, "choices": f.choices,
                        "range": f.range, "help": f.help })
            })
            .collect(),
    )
}

/// Every active symbol (and any configured one) with its configuration for each strategy, or
/// `configured: false` and the defaults; the parameter form's fields; the strategies.
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let client = state.db.client().await?;
    let row = client
        .query_one(
            "SELECT coalesce(json_agg(x ORDER BY x.symbol, x.strategy), '[]') FROM (
                 SELECT s.symbol, s.name, st.strategy, c.symbol IS NOT NULL AS configured,
                        coalesce(c.enabled, false) AS enabled, coalesce(c.extended_hours, false) AS extended_hours,
                        coalesce(c.params, '{}') AS params, c.updated_at, c.last_error, c.last_error_at
                 FROM tapeflow.symbols s CROSS JOIN unnest($1::text[]) st(strategy)
                 LEFT JOIN tapeflow.strategy_configs c ON c.symbol = s.symbol AND c.strategy = st.strategy
                 WHERE s.active OR c.symbol IS NOT NULL) x",
            &[&STRATEGIES.to_vec()],
        )
        .await?;
    let configs: Value = row.get(0);
    Ok(Json(json!({ "configs": configs, "schema": schema_json(), "strategies": STRATEGIES })))
}

/// Every leaf of a parameter object with its dotted key, in order; an empty object counts as
/// a leaf (the engine refuses it like any value of the wrong shape).
fn leaves(value: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaves(v, &key, out);
            }
        }
        _ => out.push((prefix.to_string(), value.clone())),
    }
}

/// `{"a": {"b": value}}` for the key `a.b`.
fn nested(key: &str, value: Value) -> Value {
    key.rsplit('.').fold(value, |inner, k| {
        let mut m = Map::new();
        m.insert(k.to_string(), inner);
        Value::Object(m)
    })
}

fn db_message(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().map(|d| d.message().to_string())
}

/// `tapeflow.validate_params` on the whole object; when it refuses, on each parameter alone
/// to find the one to blame (the first that fails on its own, in the object's order).
async fn validate(client: &Client, params: &Value) -> Result<(), Refusal> {
    const SQL: &str = "SELECT tapeflow.validate_params($1)";
    let Err(e) = client.query_one(SQL, &[params]).await else { return Ok(()) };
    let Some(message) = db_message(&e) else { return Err(e.into()) };
    let mut all = Vec::new();
    leaves(params, "", &mut all);
    let singles: Vec<Value> = all.iter().map(|(k, v)| nested(k, v.clone())).collect();
    let args: Vec<[&(dyn ToSql + Sync); 1]> = singles.iter().map(|p| [p as &(dyn ToSql + Sync)]).collect();
    let results = futures_util::future::join_all(args.iter().map(|a| client.query_one(SQL, a))).await;
    let field = all.iter().zip(results).find(|(_, r)| r.is_err()).map(|((k, _), r)| (k.clone(), r));
    Err(match field {
        Some((key, Err(e))) => {
            let own = db_message(&e).unwrap_or(message);
            // A message that does not name the key (a wrong type, say) gets it in front.
            let last = key.rsplit('.').next().unwrap_or(&key);
            let message = if own.contains(last) { own } else { format!("{key}: {own}") };
            Refusal::Field { field: Some(key), message }
        }
        _ => Refusal::Field { field: None, message },
    })
}

#[derive(Deserialize)]
pub struct Change {
    enabled: Option<bool>,
    extended_hours: Option<bool>,
    params: Option<Value>,
}

/// Creates or changes the configuration of `strategy` on `symbol`: any of `enabled`,
/// `extended_hours` and `params` (the whole parameter object, replacing the stored one).
/// A new configuration starts disabled unless `enabled` says otherwise.
pub async fn update(
    State(state): State<AppState>,
    Path((symbol, strategy)): Path<(String, String)>,
    body: Result<Json<Change>, JsonRejection>,
) -> Result<Json<Value>, Refusal> {
    let Json(change) = body.map_err(ApiError::from)?;
    let client = state.db.client().await?;
    if let Err(e) = client.query_one("SELECT (tapeflow.symbol_row($1)).symbol", &[&symbol]).await {
        let message = db_message(&e).ok_or(e)?;
        return Err(Refusal::Field { field: Some("symbol".into()), message });
    }
    if !STRATEGIES.contains(&strategy.as_str()) {
        return Err(Refusal::Field {
            field: Some("strategy".into()),
            message: format!("unknown strategy {strategy:?} (known: {})", STRATEGIES.join(", ")),
        });
    }
    if let Some(params) = &change.params {
        if !params.is_object() {
            return Err(Refusal::Field {
                field: Some("params".into()),
                message: format!("params must be a JSON object, got {params}"),
            });
        }
        validate(&client, params).await?;
    }
    let row = client
        .query_one(
            "INSERT INTO tapeflow.strategy_configs AS c (symbol, strategy, enabled, extended_hours, params)
             VALUES ($1, $2, coalesce($3::boolean, false), coalesce($4::boolean, false), coalesce($5::jsonb, '{}'))
             ON CONFLICT (symbol, strategy) DO UPDATE SET enabled = coalesce($3::boolean, c.enabled),
                 extended_hours = coalesce($4::boolean, c.extended_hours), params = coalesce($5::jsonb, c.params)
             RETURNING json_build_object('symbol', c.symbol, 'strategy', c.strategy, 'configured', true,
                 'enabled', c.enabled, 'extended_hours', c.extended_hours, 'params', c.params,
                 'updated_at', c.updated_at, 'last_error', c.last_error, 'last_error_at', c.last_error_at)",
            &[&symbol, &strategy, &change.enabled, &change.extended_hours, &change.params],
        )
        .await
        .map_err(|e| match db_message(&e) {
            // The table's trigger validates as well; should it refuse, the message is the user's.
            Some(message) if e.code().is_some_and(|c| c.code() == "XX000") => {
                Refusal::Field { field: None, message }
            }
            _ => e.into(),
        })?;
    Ok(Json(row.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_are_dotted_keys_in_order() {
        let mut out = Vec::new();
        leaves(&json!({"atr_period": 14, "strategy": {"min_aggression_score": 60, "x": {}}}), "", &mut out);
        let keys: Vec<_> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["atr_period", "strategy.min_aggression_score", "strategy.x"]);
    }

    #[test]
    fn a_key_nests_back_into_an_object() {
        assert_eq!(
            nested("strategy.min_aggression_score", json!(60)),
            json!({"strategy": {"min_aggression_score": 60}})
        );
        assert_eq!(nested("atr_period", json!(3)), json!({"atr_period": 3}));
    }

    #[test]
    fn the_schema_has_unique_keys_and_defaults_of_its_kind() {
        let fields = schema();
        let mut keys: Vec<_> = fields.iter().map(|f| f.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), fields.len());
        for f in &fields {
            let ok = match f.kind {
                "integer" => f.default.is_u64(),
                "number" => f.default.is_number(),
                "boolean" => f.default.is_boolean(),
                "choice" => f.default.as_str().is_some_and(|d| f.choices.contains(&d)),
                _ => false,
            };
            assert!(ok, "{}: default {} is not a {}", f.key, f.default, f.kind);
        }
    }
}
