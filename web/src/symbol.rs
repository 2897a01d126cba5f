//! The symbol page's API: an instrument's tick and calendar, its session or composite volume
//! profile (levels split by side, POC, value area, LVNs and HVNs), the developing POC and value
//! area through each session, order flow with the session CVD, footprints with their diagonal
//! and stacked imbalances, and the market-state history.
//!
//! Every number comes from the extension's SQL functions. Query parameters are taken as text
//! and checked by the database with the same parsers SQL users meet (the casts to
//! `timestamptz`, `date`, `integer` and `double precision`, `candles()` for timeframes,
//! `profile_agg` for ticks per row, `vah()` for the value-area share and method,
//! `stacked_imbalances()` for imbalance settings); a refusal is a 400 whose JSON carries the
//! database's message and names the parameter: `{"error": "...", "param": "va_pct"}`.

use crate::api::{ApiError, Refusal};
use crate::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

/// Most bars one footprint request may cover: each bar is a column of price levels.
pub const MAX_FOOTPRINT_BARS: i64 = 300;
/// Most sessions one developing-profile request may cover.
pub const MAX_SESSIONS: i64 = 31;

type Reply = Result<Json<Value>, Refusal>;

/// One parameter check: the parameter's name, a query over the SQL functions that raises for
/// a bad value, and its arguments.
struct Check<'a> {
    param: &'static str,
    sql: &'static str,
    args: Vec<&'a (dyn ToSql + Sync)>,
}

/// Runs the checks (pipelined on the one connection) and reports the first refusal in the
/// order given. Any database error of a check is the caller's: the check runs the parser
/// on the value alone.
async fn run_checks(client: &Client, checks: Vec<Check<'_>>) -> Result<(), Refusal> {
    let results = futures_util::future::join_all(checks.iter().map(|c| client.query(c.sql, &c.args))).await;
    for (check, result) in checks.iter().zip(results) {
        if let Err(e) = result {
            let message = match e.as_db_error() {
                Some(db) => db.message().to_string(),
                None => return Err(ApiError::from(e).into()),
            };
            return Err(Refusal::Param { param: check.param, message });
        }
    }
    Ok(())
}

fn present(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.trim().is_empty())
}

/// Empty query values count as absent.
fn given(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

const CHECK_SYMBOL: &str = "SELECT (tapeflow.symbol_row($1)).symbol";
const CHECK_TIMEFRAME: &str = "SELECT count(*) FROM tapeflow.candles($1, $2, now(), now())";
const CHECK_TIME: &str = "SELECT $1::text::timestamptz";
const CHECK_DATE: &str = "SELECT $1::text::date";
const CHECK_TICKS_PER_ROW: &str =
    "SELECT tapeflow.total_volume(tapeflow.profile_agg(1, 1, 'B', 0.01, $1::text::integer))";
const CHECK_VA_PCT: &str =
    "SELECT tapeflow.vah(p, $1::text::float8, 'dalton') FROM (SELECT tapeflow.profile_agg(1, 1, 'B', 0.01) p) x";
const CHECK_VA_METHOD: &str =
    "SELECT tapeflow.vah(p, 0.7, $1) FROM (SELECT tapeflow.profile_agg(1, 1, 'B', 0.01) p) x";
const CHECK_RATIO: &str = "SELECT count(*) FROM (SELECT tapeflow.profile_agg(1, 1, 'B', 0.01) p) x,
     tapeflow.stacked_imbalances(x.p, $1::text::float8, 0, 3)";
const CHECK_MIN_VOLUME: &str = "SELECT count(*) FROM (SELECT tapeflow.profile_agg(1, 1, 'B', 0.01) p) x,
     tapeflow.stacked_imbalances(x.p, 1.5, $1::text::float8, 3)";
const CHECK_MIN_ROWS: &str = "SELECT count(*) FROM (SELECT tapeflow.profile_agg(1, 1, 'B', 0.01) p) x,
     tapeflow.stacked_imbalances(x.p, 1.5, 0, $1::text::integer)";

/// Checks of the symbol and of whichever of the common parameters are present.
fn checks<'a>(symbol: &'a String, p: &'a Params) -> Vec<Check<'a>> {
    let mut out = vec![Check { param: "symbol", sql: CHECK_SYMBOL, args: vec![symbol] }];
    let mut add = |param: &'static str, sql: &'static str, value: &'a Option<String>| {
        if present(value) {
            out.push(Check { param, sql, args: vec![value] });
        }
    };
    add("from", CHECK_TIME, &p.from);
    add("to", CHECK_TIME, &p.to);
    add("day", CHECK_DATE, &p.day);
    add("ticks_per_row", CHECK_TICKS_PER_ROW, &p.ticks_per_row);
    add("va_pct", CHECK_VA_PCT, &p.va_pct);
    add("va_method", CHECK_VA_METHOD, &p.va_method);
    add("ratio", CHECK_RATIO, &p.ratio);
    add("min_volume", CHECK_MIN_VOLUME, &p.min_volume);
    add("min_rows", CHECK_MIN_ROWS, &p.min_rows);
    if present(&p.tf) {
        out.push(Check { param: "tf", sql: CHECK_TIMEFRAME, args: vec![symbol, &p.tf] });
    }
    out
}

/// Every query parameter of this API, as text (see the module's note on parsing).
#[derive(Deserialize, Default)]
pub struct Params {
    tf: Option<String>,
    from: Option<String>,
    to: Option<String>,
    day: Option<String>,
    ticks_per_row: Option<String>,
    va_pct: Option<String>,
    va_method: Option<String>,
    ratio: Option<String>,
    min_volume: Option<String>,
    min_rows: Option<String>,
    source: Option<String>,
}

impl Params {
    fn normalized(self) -> Params {
        Params {
            tf: given(self.tf),
            from: given(self.from),
            to: given(self.to),
            day: given(self.day),
            ticks_per_row: given(self.ticks_per_row),
            va_pct: given(self.va_pct),
            va_method: given(self.va_method),
            ratio: given(self.ratio),
            min_volume: given(self.min_volume),
            min_rows: given(self.min_rows),
            source: given(self.source),
        }
    }
}

/// The query string, checked; the client for the main query.
async fn prepare(
    state: &AppState,
    symbol: &String,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<(std::sync::Arc<Client>, Params), Refusal> {
    let Query(p) = q.map_err(ApiError::from)?;
    let p = p.normalized();
    let client = state.db.client().await?;
    run_checks(&client, checks(symbol, &p)).await?;
    Ok((client, p))
}

async fn one_json(client: &Client, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Reply {
    let row = client.query_one(sql, args).await?;
    Ok(Json(row.get::<_, Option<Value>>(0).unwrap_or(Value::Null)))
}

/// Every symbol with its tick size and trading calendar: what the browser needs to format
/// prices to the tick and to place sessions.
pub async fn instruments(State(state): State<AppState>) -> Reply {
    let client = state.db.client().await?;
    one_json(
        &client,
        &format!("SELECT coalesce(json_agg(x ORDER BY x.symbol), '[]') FROM ({INSTRUMENT} FROM tapeflow.symbols s) x"),
        &[],
    )
    .await
}

const INSTRUMENT: &str = "SELECT s.symbol, s.name, s.asset_class, s.exchange, s.tick_size, s.currency, s.timezone,
           to_char(s.session_open, 'HH24:MI') AS session_open, to_char(s.session_close, 'HH24:MI') AS session_close,
           s.active";

/// One symbol: its instrument row, the session of its newest bar, and the sessions with bars
/// in the 30 days before it (newest first), for the profile's session picker.
pub async fn symbol(State(state): State<AppState>, Path(symbol): Path<String>) -> Reply {
    let client = state.db.client().await?;
    run_checks(&client, vec![Check { param: "symbol", sql: CHECK_SYMBOL, args: vec![&symbol] }]).await?;
    one_json(
        &client,
        &format!(
            "WITH last AS (SELECT max(b.bucket) AS bucket FROM tapeflow.bars_1m b WHERE b.symbol = $1)
             SELECT row_to_json(x) FROM (
                 {INSTRUMENT}, last.bucket AS last_bar,
                 tapeflow.session_date(last.bucket, s.timezone, s.session_open) AS last_session,
                 coalesce((SELECT json_agg(d ORDER BY d DESC) FROM (
                     SELECT DISTINCT tapeflow.session_date(b.bucket, s.timezone, s.session_open) AS d
                     FROM tapeflow.bars_1m b
                     WHERE b.symbol = $1 AND b.bucket > last.bucket - interval '30 days') days), '[]') AS sessions
                 FROM tapeflow.symbols s, last WHERE s.symbol = $1) x"
        ),
        &[&symbol],
    )
    .await
}

/// The volume profile of one session (`day`, default the newest) or, given `from` and `to`,
/// the composite of every minute in [from, to); re-binned to `ticks_per_row` (default 1) by
/// `profile_agg` over the stored rows. Levels with buy and sell volume, the value area
/// (`va_pct`, default 0.70; `va_method`, default dalton), LVNs and HVNs, totals.
pub async fn profile(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
    q: Result<Query<Params>, QueryRejection>,
) -> Reply {
    let (client, p) = prepare(&state, &symbol, q).await?;
    // A session (`day`, or the newest) unless a range is given.
    let (from, to) = if p.day.is_some() { (None, None) } else { (p.from.clone(), p.to.clone()) };
    if from.is_some() != to.is_some() {
        let param = if from.is_none() { "from" } else { "to" };
        return Err(Refusal::Param {
            param,
            message: format!("a composite profile needs both from and to ({param} is missing)"),
        });
    }
    one_json(
        &client,
        r#"WITH s AS (SELECT * FROM tapeflow.symbol_row($1)),
           scope AS (
               SELECT CASE WHEN $3::text IS NOT NULL THEN NULL
                           ELSE coalesce($2::text::date, (SELECT tapeflow.session_date(max(b.bucket), s.timezone, s.session_open)
                                                          FROM tapeflow.bars_1m b WHERE b.symbol = $1)) END AS day,
                      $3::text::timestamptz AS "from", $4::text::timestamptz AS "to",
                      coalesce($5::text::integer, 1) AS ticks_per_row,
                      coalesce($6::text::float8, 0.70) AS va_pct, coalesce($7::text, 'dalton') AS va_method
               FROM s),
           base AS (
               SELECT CASE WHEN scope.day IS NOT NULL THEN tapeflow.session_profile($1, scope.day)
                           ELSE tapeflow.composite_profile($1, scope."from", scope."to") END AS p
               FROM scope),
           prof AS (
               SELECT CASE WHEN scope.ticks_per_row = 1 THEN base.p ELSE (
                   SELECT tapeflow.profile_agg(x.price, x.size, x.side, s.tick_size, scope.ticks_per_row)
                   FROM tapeflow.levels(base.p) l
                   CROSS JOIN LATERAL (VALUES (l.price, l.buy, 'B'::"char"), (l.price, l.sell, 'S'::"char"),
                                              (l.price, l.total - l.buy - l.sell, 'N'::"char")) x(price, size, side)
                   WHERE x.size > 0) END AS p
               FROM base, scope, s)
           SELECT json_build_object(
               'symbol', s.symbol, 'tick_size', s.tick_size,
               'scope', CASE WHEN $3::text IS NULL THEN 'session' ELSE 'composite' END,
               'day', scope.day, 'from', scope."from", 'to', scope."to",
               'ticks_per_row', scope.ticks_per_row, 'row_size', s.tick_size * scope.ticks_per_row,
               'va_pct', scope.va_pct, 'va_method', scope.va_method,
               'levels', coalesce((SELECT json_agg(json_build_object('price', l.price, 'total', l.total, 'buy', l.buy,
                                                                     'sell', l.sell, 'delta', l.delta) ORDER BY l.price)
                                   FROM tapeflow.levels(prof.p) l), '[]'),
               'value_area', (SELECT row_to_json(v) FROM tapeflow.value_area(prof.p, scope.va_pct, scope.va_method) v),
               'poc', tapeflow.poc(prof.p),
               'lvns', coalesce(to_json(tapeflow.lvns(prof.p)), '[]'), 'hvns', coalesce(to_json(tapeflow.hvns(prof.p)), '[]'),
               'total_volume', coalesce(tapeflow.total_volume(prof.p), 0), 'delta', coalesce(tapeflow.delta(prof.p), 0))
           FROM s, scope, prof"#,
        &[&symbol, &p.day, &from, &to, &p.ticks_per_row, &p.va_pct, &p.va_method],
    )
    .await
}

/// `tapeflow.developing_profile` of one session (`day`) or of every session from the one
/// holding `from` to the one holding `to` (default: the newest session), at timeframe `tf`
/// (default 5m): after each bar, the POC, VAH, VAL and volume since the session open.
pub async fn developing(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
    q: Result<Query<Params>, QueryRejection>,
) -> Reply {
    let (client, p) = prepare(&state, &symbol, q).await?;
    let sessions: i64 = client
        .query_one(
            "SELECT CASE WHEN $2::text IS NOT NULL OR $3::text IS NULL THEN 1
                    ELSE tapeflow.session_date(coalesce($4::text::timestamptz, now()), s.timezone, s.session_open)
                       - tapeflow.session_date($3::text::timestamptz, s.timezone, s.session_open) + 1 END
             FROM tapeflow.symbol_row($1) s",
            &[&symbol, &p.day, &p.from, &p.to],
        )
        .await?
        .get::<_, i32>(0)
        .into();
    if sessions > MAX_SESSIONS {
        return Err(Refusal::Param {
            param: "from",
            message: format!(
                "developing profiles of at most {MAX_SESSIONS} sessions at a time, asked for {sessions}"
            ),
        });
    }
    one_json(
        &client,
        "WITH s AS (SELECT * FROM tapeflow.symbol_row($1)),
         days AS (
             SELECT d::date AS day FROM s, generate_series(
                 coalesce($2::text::date,
                          tapeflow.session_date($3::text::timestamptz, s.timezone, s.session_open),
                          (SELECT tapeflow.session_date(max(b.bucket), s.timezone, s.session_open)
                           FROM tapeflow.bars_1m b WHERE b.symbol = $1)),
                 coalesce($2::text::date,
                          CASE WHEN $3::text IS NOT NULL
                               THEN tapeflow.session_date(coalesce($4::text::timestamptz, now()), s.timezone, s.session_open) END,
                          (SELECT tapeflow.session_date(max(b.bucket), s.timezone, s.session_open)
                           FROM tapeflow.bars_1m b WHERE b.symbol = $1)),
                 interval '1 day') d)
         SELECT coalesce(json_agg(json_build_object('session', days.day, 'time', d.time, 'poc', d.poc, 'vah', d.vah,
                                                    'val', d.val, 'volume', d.volume) ORDER BY d.time), '[]')
         FROM days, tapeflow.developing_profile($1, days.day, coalesce($5, '5m'), coalesce($6::text::float8, 0.70),
                                                 coalesce($7, 'dalton')) d",
        &[&symbol, &p.day, &p.from, &p.to, &p.tf, &p.va_pct, &p.va_method],
    )
    .await
}

/// `tapeflow.order_flow` per bar of [from, to) (default: the last day) at `tf` (default 5m):
/// volume, buy and sell volume, delta, pressures and the CVD reset at each session open.
pub async fn flow(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
    q: Result<Query<Params>, QueryRejection>,
) -> Reply {
    let (client, p) = prepare(&state, &symbol, q).await?;
    one_json(
        &client,
        "SELECT coalesce(json_agg(f ORDER BY f.time), '[]') FROM tapeflow.order_flow($1, coalesce($2, '5m'),
             coalesce($3::text::timestamptz, coalesce($4::text::timestamptz, now()) - interval '1 day'),
             coalesce($4::text::timestamptz, now() + interval '1 minute')) f",
        &[&symbol, &p.tf, &p.from, &p.to],
    )
    .await
}

/// The footprint of the bars of [from, to) at `tf` (default 5m): `cells` from
/// `tapeflow.footprint` (bid and ask volume per bar and price level) and `imbalances` from
/// `tapeflow.footprint_imbalances` (`ratio` default 1.5, `min_volume` 0, `min_rows` 3 for a
/// stack). With `ticks_per_row` above 1 each bar's levels are re-binned by `profile_agg`
/// and its imbalances are `tapeflow.imbalances` / `stacked_imbalances` of that profile (the
/// same diagonal comparison, row against row; trade counts are then unknown). At most
/// [`MAX_FOOTPRINT_BARS`] bars.
pub async fn footprint(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
    q: Result<Query<Params>, QueryRejection>,
) -> Reply {
    let (client, p) = prepare(&state, &symbol, q).await?;
    let (Some(from), Some(to)) = (&p.from, &p.to) else {
        let param = if p.from.is_none() { "from" } else { "to" };
        return Err(Refusal::Param {
            param,
            message: format!("a footprint needs from and to ({param} is missing)"),
        });
    };
    let bars: f64 = client
        .query_one(
            "SELECT (extract(epoch FROM $2::text::timestamptz - $1::text::timestamptz)
                     / extract(epoch FROM tapeflow.timeframe_interval(coalesce($3, '5m'))))::float8",
            &[from, to, &p.tf],
        )
        .await?
        .get::<_, Option<f64>>(0)
        .unwrap_or(0.0);
    if bars > MAX_FOOTPRINT_BARS as f64 {
        return Err(Refusal::Param {
            param: "from",
            message: format!(
                "a footprint covers at most {MAX_FOOTPRINT_BARS} bars at a time, asked for {}",
                bars.ceil()
            ),
        });
    }
    let args: [&(dyn ToSql + Sync); 8] =
        [&symbol, &p.tf, from, to, &p.ratio, &p.min_volume, &p.min_rows, &p.ticks_per_row];
    let one_tick = p.ticks_per_row.as_deref().is_none_or(|t| t.trim() == "1");
    if one_tick {
        one_json(&client, FOOTPRINT_SQL, &args[..7]).await
    } else {
        one_json(&client, FOOTPRINT_REBINNED_SQL, &args).await
    }
}

/// Footprint and imbalances straight from `tapeflow.footprint` and `footprint_imbalances`.
const FOOTPRINT_SQL: &str = "SELECT json_build_object(
    'ticks_per_row', 1,
    'cells', coalesce((SELECT json_agg(json_build_object('time', f.time, 'price', f.price,
            'bid', f.bid_volume, 'ask', f.ask_volume, 'delta', f.delta, 'volume', f.volume, 'trades', f.trades)
            ORDER BY f.time, f.price)
        FROM tapeflow.footprint($1, coalesce($2, '5m'), $3::text::timestamptz, $4::text::timestamptz) f), '[]'),
    'imbalances', coalesce((SELECT json_agg(json_build_object('time', i.time, 'side', i.side, 'price', i.price,
            'volume', i.volume, 'opposite', i.opposite, 'ratio', i.imbalance_ratio, 'stacked', i.stacked)
            ORDER BY i.time, i.price)
        FROM tapeflow.footprint_imbalances($1, coalesce($2, '5m'), $3::text::timestamptz, $4::text::timestamptz,
            coalesce($5::text::float8, 1.5), coalesce($6::text::float8, 0), coalesce($7::text::integer, 3)) i), '[]'))";

/// Each bar's footprint re-binned to `ticks_per_row` by `profile_agg`, read by `levels`,
/// `imbalances` and `stacked_imbalances`.
const FOOTPRINT_REBINNED_SQL: &str = r#"WITH s AS (SELECT * FROM tapeflow.symbol_row($1)),
    bars AS (
        SELECT f.time, tapeflow.profile_agg(x.price, x.size, x.side, s.tick_size, $8::text::integer) AS p
        FROM s, tapeflow.footprint($1, coalesce($2, '5m'), $3::text::timestamptz, $4::text::timestamptz) f
        CROSS JOIN LATERAL (VALUES (f.price, f.ask_volume, 'B'::"char"), (f.price, f.bid_volume, 'S'::"char"),
                                   (f.price, f.volume - f.ask_volume - f.bid_volume, 'N'::"char")) x(price, size, side)
        WHERE x.size > 0
        GROUP BY f.time)
    SELECT json_build_object(
        'ticks_per_row', $8::text::integer,
        'cells', coalesce((SELECT json_agg(json_build_object('time', b.time, 'price', l.price, 'bid', l.sell,
                'ask', l.buy, 'delta', l.delta, 'volume', l.total, 'trades', NULL) ORDER BY b.time, l.price)
            FROM bars b, tapeflow.levels(b.p) l), '[]'),
        'imbalances', coalesce((SELECT json_agg(json_build_object('time', b.time, 'side', i.side, 'price', i.price,
                'volume', i.volume, 'opposite', i.opposite, 'ratio', i.ratio,
                'stacked', EXISTS (SELECT 1 FROM tapeflow.stacked_imbalances(b.p, coalesce($5::text::float8, 1.5),
                                       coalesce($6::text::float8, 0), coalesce($7::text::integer, 3)) st
                                   WHERE st.side = i.side AND i.price BETWEEN st.low AND st.high))
                ORDER BY b.time, i.price)
            FROM bars b, tapeflow.imbalances(b.p, coalesce($5::text::float8, 1.5), coalesce($6::text::float8, 0)) i), '[]'))"#;

/// Market states of [from, to) (default: the last day), one per evaluated one-minute bar: the
/// live log (`tapeflow.market_state_log`, strategy amt) when it has rows there, otherwise
/// `tapeflow.market_state_history` with the symbol's configured parameters. `source=log` or
/// `source=history` forces one. `{source, states: [...]}`.
pub async fn states(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
    q: Result<Query<Params>, QueryRejection>,
) -> Reply {
    let (client, p) = prepare(&state, &symbol, q).await?;
    let source = p.source.as_deref().unwrap_or("auto");
    if !["auto", "log", "history"].contains(&source) {
        return Err(Refusal::Param {
            param: "source",
            message: format!("source: expected auto, log or history, got {source:?}"),
        });
    }
    let from = "coalesce($2::text::timestamptz, coalesce($3::text::timestamptz, now()) - interval '1 day')";
    let to = "coalesce($3::text::timestamptz, now() + interval '1 minute')";
    let use_log = match source {
        "log" => true,
        "history" => false,
        _ => client
            .query_one(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM tapeflow.market_state_log g
                      WHERE g.symbol = $1 AND g.strategy = 'amt' AND g.bar >= {from} AND g.bar < {to})"
                ),
                &[&symbol, &p.from, &p.to],
            )
            .await?
            .get(0),
    };
    let rows = if use_log {
        format!(
            "SELECT g.bar AS time, g.state, g.confidence, g.aggression, g.direction, g.momentum_pct, g.atr,
                    g.buy_pressure, g.sell_pressure, g.delta, g.cvd, g.poc, g.vah, g.val, g.lvn, g.signal, NULL AS reason
             FROM tapeflow.market_state_log g
             WHERE g.symbol = $1 AND g.strategy = 'amt' AND g.bar >= {from} AND g.bar < {to}"
        )
    } else {
        format!(
            "SELECT h.time, h.state, h.confidence, h.aggression, h.direction, h.momentum_pct, h.atr, h.buy_pressure,
                    h.sell_pressure, h.delta, h.cvd, h.poc, h.vah, h.val, h.lvn, h.signal, h.reason
             FROM tapeflow.market_state_history($1, {from}, {to},
                 coalesce((SELECT c.params FROM tapeflow.strategy_configs c WHERE c.symbol = $1 AND c.strategy = 'amt'),
                          '{{}}'), '1m') h"
        )
    };
    let Json(states) = one_json(
        &client,
        &format!("SELECT coalesce(json_agg(x ORDER BY x.time), '[]') FROM ({rows}) x"),
        &[&symbol, &p.from, &p.to],
    )
    .await?;
    Ok(Json(json!({ "source": if use_log { "log" } else { "history" }, "states": states })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    #[test]
    fn empty_values_are_absent() {
        let p = Params { tf: Some(" ".into()), va_pct: Some("0.7".into()), ..Params::default() }.normalized();
        assert!(p.tf.is_none());
        assert_eq!(p.va_pct.as_deref(), Some("0.7"));
    }

    #[test]
    fn only_given_parameters_are_checked_symbol_first() {
        let symbol = "AAPL".to_string();
        let p = Params {
            tf: Some("5m".into()),
            ticks_per_row: Some("0".into()),
            va_pct: Some("1.5".into()),
            ..Params::default()
        };
        let names: Vec<_> = checks(&symbol, &p).iter().map(|c| c.param).collect();
        assert_eq!(names, ["symbol", "ticks_per_row", "va_pct", "tf"]);
    }

    #[test]
    fn a_refusal_names_its_parameter() {
        let r = Refusal::Param { param: "va_pct", message: "bad".into() }.into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
}
