//! The arbitrage page's API (read-only) over what the polymarket feed, the database and the
//! polymarket broker record (`sql/021_polymarket.sql`, `sql/022_polymarket_exec.sql`): the
//! watched markets with their tops of book and YES + NO sums, the opportunities the triggers
//! keep, paper and live trades with their legs, positions by market, and the measurement view
//! `tapeflow.arbitrage_report`.
//!
//! Every price, size and amount is numeric in the database and leaves it as exact decimal
//! text (trailing zeros trimmed); sums and fees are computed in SQL, never in floating point.

use crate::api::{json_query, ApiError};
use crate::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

/// `numeric expression` as exact decimal text.
fn dec(expr: &str) -> String {
    format!("trim_scale({expr})::text")
}

/// The taker fee per share at price `p` of market `m`: fee_rate × (p × (1 − p))^fee_exponent,
/// as the arbitrage functions charge it (NULL when there is no price).
fn fee_at(p: &str, m: &str) -> String {
    format!("({m}.fee_rate * power({p} * (1 - {p}), {m}.fee_exponent))")
}

/// A whole-number query parameter within 1..=`max` (`default` when absent); taken as text so
/// that a bad value is refused with a message naming the parameter.
fn bounded(name: &str, value: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    match value.map(|v| (v, v.trim().parse::<i64>())) {
        None => Ok(default),
        Some((_, Ok(n))) if (1..=max).contains(&n) => Ok(n),
        Some((v, _)) => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("{name}: expected a whole number from 1 to {max}, got {v:?}"),
        )),
    }
}

/// `paper`, `live`, or `all` (NULL in SQL: both).
fn mode(value: Option<&str>) -> Result<Option<&'static str>, ApiError> {
    match value {
        None | Some("all") => Ok(None),
        Some("paper") => Ok(Some("paper")),
        Some("live") => Ok(Some("live")),
        Some(other) => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("mode: expected paper, live or all, got {other:?}"),
        )),
    }
}

/// `{"markets": [...], "groups": [...]}`. Each watched open market with its tokens' tops of
/// book (best ask/bid and their sizes) and, for a YES/NO market, `ask_sum` (YES ask + NO ask:
/// below 1 is a pair bought for less than it pays) and `ask_sum_after_fees` (plus the taker fee
/// of one share at each ask), `bid_sum` and `bid_sum_after_fees` (less the fees: above 1 pays
/// to sell a pair). `groups`: neg-risk events with the sum of their markets' YES asks (with and
/// without fees), complete only when every market has an ask.
pub async fn markets(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let sql = format!(
        "WITH m AS (
             SELECT m.*, y.best_ask AS yes_ask, n.best_ask AS no_ask, y.best_bid AS yes_bid, n.best_bid AS no_bid
             FROM tapeflow.polymarket_markets m
             LEFT JOIN tapeflow.polymarket_tokens yt ON yt.condition_id = m.condition_id AND yt.outcome_index = 0
             LEFT JOIN tapeflow.polymarket_books y ON y.token_id = yt.token_id
             LEFT JOIN tapeflow.polymarket_tokens nt ON nt.condition_id = m.condition_id AND nt.outcome_index = 1
             LEFT JOIN tapeflow.polymarket_books n ON n.token_id = nt.token_id
             WHERE m.watched AND NOT m.closed
         )
         SELECT json_build_object(
             'markets', coalesce((SELECT json_agg(json_build_object(
                     'condition_id', m.condition_id, 'question', m.question, 'slug', m.slug,
                     'end_date', m.end_date, 'neg_risk', m.neg_risk, 'neg_risk_market_id', m.neg_risk_market_id,
                     'accepting_orders', m.accepting_orders, 'fee_rate', {fee_rate}, 'fee_exponent', m.fee_exponent,
                     'tick_size', {tick}, 'min_order_size', {min_size},
                     'tokens', coalesce((SELECT json_agg(json_build_object(
                             'token_id', t.token_id, 'outcome', t.outcome, 'outcome_index', t.outcome_index,
                             'best_ask', {best_ask}, 'ask_size', {ask_size},
                             'best_bid', {best_bid}, 'bid_size', {bid_size},
                             'ask_levels', coalesce(cardinality(b.ask_prices), 0),
                             'bid_levels', coalesce(cardinality(b.bid_prices), 0),
                             'updated_at', b.updated_at) ORDER BY t.outcome_index)
                         FROM tapeflow.polymarket_tokens t
                         LEFT JOIN tapeflow.polymarket_books b ON b.token_id = t.token_id
                         WHERE t.condition_id = m.condition_id), '[]'),
                     'ask_sum', {ask_sum}, 'ask_sum_after_fees', {ask_sum_fees},
                     'bid_sum', {bid_sum}, 'bid_sum_after_fees', {bid_sum_fees},
                     'updated_at', (SELECT max(b.updated_at) FROM tapeflow.polymarket_books b
                                    WHERE b.condition_id = m.condition_id))
                 ORDER BY m.end_date NULLS LAST, m.question, m.condition_id) FROM m), '[]'),
             'groups', coalesce((SELECT json_agg(g ORDER BY g.neg_risk_market_id) FROM (
                 SELECT m.neg_risk_market_id, max(m.event_slug) AS event_slug,
                        bool_or(m.neg_risk_augmented) AS augmented, count(*) AS markets,
                        count(m.yes_ask) AS markets_with_ask,
                        {yes_sum} AS yes_ask_sum, {yes_sum_fees} AS yes_ask_sum_after_fees
                 FROM m WHERE m.neg_risk AND m.neg_risk_market_id IS NOT NULL
                 GROUP BY m.neg_risk_market_id) g), '[]'))",
        fee_rate = dec("m.fee_rate"),
        tick = dec("m.tick_size"),
        min_size = dec("m.min_order_size"),
        best_ask = dec("b.best_ask"),
        ask_size = dec("b.ask_sizes[1]"),
        best_bid = dec("b.best_bid"),
        bid_size = dec("b.bid_sizes[1]"),
        ask_sum = dec("m.yes_ask + m.no_ask"),
        ask_sum_fees = dec(&format!(
            "m.yes_ask + m.no_ask + {} + {}",
            fee_at("m.yes_ask", "m"),
            fee_at("m.no_ask", "m")
        )),
        bid_sum = dec("m.yes_bid + m.no_bid"),
        bid_sum_fees = dec(&format!(
            "m.yes_bid + m.no_bid - {} - {}",
            fee_at("m.yes_bid", "m"),
            fee_at("m.no_bid", "m")
        )),
        yes_sum = dec("CASE WHEN count(m.yes_ask) = count(*) THEN sum(m.yes_ask) END"),
        yes_sum_fees = dec(&format!(
            "CASE WHEN count(m.yes_ask) = count(*) THEN sum(m.yes_ask + {}) END",
            fee_at("m.yes_ask", "m")
        )),
    );
    json_query(&state, &sql, &[]).await
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    mode: Option<String>,
    days: Option<String>,
}

/// The label of an opportunity or trade: its market's question, or its neg-risk event's slug.
const LABEL: &str = "coalesce(
    (SELECT question FROM tapeflow.polymarket_markets WHERE condition_id = x.market_key),
    (SELECT max(event_slug) FROM tapeflow.polymarket_markets WHERE neg_risk_market_id = x.market_key),
    x.market_key)";

/// Opportunities, the open ones first, then the most recently closed (`limit`, default 100):
/// edge, size, profit, fees, legs (decimals as text, as the scan writes them), first and last
/// seen, closed.
pub async fn opportunities(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let limit = bounded("limit", q.limit.as_deref(), 100, 1000)?;
    let sql = format!(
        "SELECT coalesce(json_agg(json_build_object(
                 'id', x.id, 'kind', x.kind, 'market_key', x.market_key, 'condition_id', x.condition_id,
                 'label', {LABEL}, 'size', {size}, 'edge', {edge}, 'profit', {profit}, 'notional', {notional},
                 'fees', {fees}, 'max_profit', {max_profit}, 'legs', x.legs, 'first_seen', x.first_seen,
                 'last_seen', x.last_seen, 'updates', x.updates, 'closed_at', x.closed_at,
                 'open', x.closed_at IS NULL,
                 'trades', coalesce((SELECT json_agg(json_build_object('id', t.id, 'mode', t.mode, 'status', t.status,
                         'pnl', trim_scale(t.pnl)::text) ORDER BY t.id)
                     FROM tapeflow.arbitrage_trades t WHERE t.opportunity_id = x.id), '[]'))
             ORDER BY x.closed_at IS NOT NULL, coalesce(x.closed_at, x.last_seen) DESC, x.id DESC), '[]')
         FROM (SELECT * FROM tapeflow.arbitrage_opportunities o
               ORDER BY o.closed_at IS NOT NULL, o.closed_at DESC, o.id DESC LIMIT $1) x",
        size = dec("x.size"),
        edge = dec("x.edge"),
        profit = dec("x.profit"),
        notional = dec("x.notional"),
        fees = dec("x.fees"),
        max_profit = dec("x.max_profit"),
    );
    json_query(&state, &sql, &[&limit]).await
}

/// Trades newest first (`mode=paper|live|all`, `limit`, default 100) with their legs (entry,
/// unwind, settle) in order: status, sizes, cost, fees, leg-risk loss and P&L after fees.
pub async fn trades(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let limit = bounded("limit", q.limit.as_deref(), 100, 1000)?;
    let mode = mode(q.mode.as_deref())?;
    let leg_numbers = ["limit_price", "size", "filled_size", "avg_price", "notional", "fee"]
        .iter()
        .map(|c| format!("'{c}', {}", dec(&format!("l.{c}"))))
        .collect::<Vec<_>>()
        .join(", ");
    let trade_numbers = [
        "planned_size",
        "planned_edge",
        "planned_profit",
        "matched_size",
        "notional",
        "fees",
        "leg_risk_loss",
        "pnl",
        "matched_pnl",
        "unwind_pnl",
        "held_cost",
    ]
    .iter()
    .map(|c| format!("'{c}', {}", dec(&format!("x.{c}"))))
    .collect::<Vec<_>>()
    .join(", ");
    let sql = format!(
        "SELECT coalesce(json_agg(json_build_object(
                 'id', x.id, 'opportunity_id', x.opportunity_id, 'mode', x.mode, 'kind', x.kind,
                 'market_key', x.market_key, 'label', {LABEL}, 'status', x.status, {trade_numbers},
                 'held', x.held, 'reject_code', x.reject_code, 'error', x.error, 'created_at', x.created_at,
                 'filled_at', x.filled_at, 'closed_at', x.closed_at, 'settled_at', x.settled_at,
                 'legs', coalesce((SELECT json_agg(json_build_object(
                         'id', l.id, 'purpose', l.purpose, 'leg_index', l.leg_index, 'token_id', l.token_id,
                         'outcome', t.outcome, 'side', l.side, 'order_type', l.order_type, {leg_numbers},
                         'status', l.status, 'client_order_id', l.client_order_id, 'error', l.error,
                         'created_at', l.created_at) ORDER BY l.id)
                     FROM tapeflow.arbitrage_legs l
                     LEFT JOIN tapeflow.polymarket_tokens t ON t.token_id = l.token_id
                     WHERE l.trade_id = x.id), '[]'))
             ORDER BY x.id DESC), '[]')
         FROM (SELECT * FROM tapeflow.arbitrage_trades t WHERE $2::text IS NULL OR t.mode = $2
               ORDER BY t.id DESC LIMIT $1) x"
    );
    json_query(&state, &sql, &[&limit, &mode]).await
}

/// Positions per mode and market: each token's shares, cost, average price, fees and realised
/// P&L, marked to its best bid; the market's settlement once resolved. Markets still holding
/// shares first.
pub async fn positions(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let sql = format!(
        "SELECT coalesce(json_agg(x ORDER BY x.open DESC, x.mode, x.question, x.condition_id), '[]') FROM (
             SELECT p.mode, p.condition_id, m.question, m.end_date, m.closed, m.winning_outcome,
                    bool_or(p.shares > 0) AS open,
                    {cost} AS cost, {fees} AS fees, {realised} AS realised_pnl,
                    {mark} AS bid_value,
                    json_agg(json_build_object('token_id', p.token_id, 'outcome', t.outcome,
                        'shares', {shares}, 'cost', {tcost}, 'avg_price', {avg}, 'fees', {tfees},
                        'realised_pnl', {trealised}, 'best_bid', {bid}, 'updated_at', p.updated_at)
                        ORDER BY t.outcome_index) AS tokens,
                    (SELECT json_build_object('winning_token_id', s.winning_token_id, 'payout', {payout},
                         'cost', {scost}, 'pnl', {spnl}, 'settled_at', s.settled_at)
                     FROM tapeflow.polymarket_settlements s
                     WHERE s.mode = p.mode AND s.condition_id = p.condition_id) AS settlement
             FROM tapeflow.polymarket_positions p
             JOIN tapeflow.polymarket_markets m ON m.condition_id = p.condition_id
             LEFT JOIN tapeflow.polymarket_tokens t ON t.token_id = p.token_id
             LEFT JOIN tapeflow.polymarket_books b ON b.token_id = p.token_id
             GROUP BY p.mode, p.condition_id, m.question, m.end_date, m.closed, m.winning_outcome) x",
        cost = dec("sum(p.cost) FILTER (WHERE p.shares > 0)"),
        fees = dec("sum(p.fees)"),
        realised = dec("sum(p.realised_pnl)"),
        mark = dec("sum(p.shares * b.best_bid) FILTER (WHERE p.shares > 0)"),
        shares = dec("p.shares"),
        tcost = dec("p.cost"),
        avg = dec("CASE WHEN p.shares > 0 THEN round(p.cost / p.shares, 6) END"),
        tfees = dec("p.fees"),
        trealised = dec("p.realised_pnl"),
        bid = dec("b.best_bid"),
        payout = dec("s.payout"),
        scost = dec("s.cost"),
        spnl = dec("s.pnl"),
    );
    json_query(&state, &sql, &[]).await
}

/// `{"rows": tapeflow.arbitrage_report per day and market (newest day first), "days": per day
/// totals (oldest first, for the chart)}` over the last `days` (default 30) UTC days.
pub async fn report(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let days = bounded("days", q.days.as_deref(), 30, 3660)?;
    let row_numbers =
        ["detected_profit", "fill_rate", "paper_pnl", "paper_fees", "leg_risk_losses", "live_pnl"]
            .iter()
            .map(|c| format!("'{c}', {}", dec(&format!("r.{c}"))))
            .collect::<Vec<_>>()
            .join(", ");
    let sql = format!(
        "WITH r AS (
             SELECT * FROM tapeflow.arbitrage_report
             WHERE day > (now() AT TIME ZONE 'UTC')::date - $1::int
         )
         SELECT json_build_object(
             'rows', coalesce((SELECT json_agg(json_build_object(
                     'day', r.day, 'market_key', r.market_key, 'kind', r.kind, 'label', r.label,
                     'opportunities', r.opportunities, 'paper_trades', r.paper_trades,
                     'paper_filled', r.paper_filled, 'live_trades', r.live_trades, {row_numbers})
                 ORDER BY r.day DESC, r.label, r.market_key, r.kind) FROM r), '[]'),
             'days', coalesce((SELECT json_agg(d ORDER BY d.day) FROM (
                 SELECT r.day, sum(r.opportunities) AS opportunities, sum(r.paper_trades) AS paper_trades,
                        {pnl} AS paper_pnl, {fees} AS paper_fees, {loss} AS leg_risk_losses,
                        {live} AS live_pnl
                 FROM r GROUP BY r.day) d), '[]'))",
        pnl = dec("sum(r.paper_pnl)"),
        fees = dec("sum(r.paper_fees)"),
        loss = dec("sum(r.leg_risk_losses)"),
        live = dec("sum(r.live_pnl)"),
    );
    json_query(&state, &sql, &[&(days as i32)]).await
}
