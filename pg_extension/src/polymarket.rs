//! Polymarket arbitrage in SQL: `tapeflow.arbitrage(condition_id)` for one market and
//! `tapeflow.arbitrage_scan(markets)` over every watched market, both computed by
//! `tapeflow_analytics::polymarket::arbitrage` over the current books in
//! `tapeflow.polymarket_books`, with each market's fee parameters and the detection parameters
//! of `tapeflow.arbitrage_settings` (overridable per call). The trigger of sql/021 keeps
//! `tapeflow.arbitrage_opportunities` current from the scan of the markets whose books changed.

use std::collections::BTreeMap;
use std::str::FromStr;

use pgrx::prelude::*;
use pgrx::{AnyNumeric, JsonB};
use rust_decimal::Decimal;
use serde_json::json;
use tapeflow_analytics::polymarket::arbitrage::{self, LegBook, Opportunity, Params};
use tapeflow_analytics::polymarket::book::Level;
use tapeflow_analytics::polymarket::fees::FeeSchedule;

struct Token {
    token_id: String,
    outcome: String,
    outcome_index: i16,
    bids: Vec<Level>,
    asks: Vec<Level>,
}

struct Market {
    condition_id: String,
    /// The neg-risk group (neg_risk_market_id) of a neg-risk market.
    group: Option<String>,
    augmented: bool,
    fees: FeeSchedule,
    min_order: Decimal,
    seconds_left: Option<i64>,
    /// Active, not closed, accepting orders.
    tradable: bool,
    closed: bool,
    /// The winning token of a resolved market.
    winner: Option<String>,
    /// One of the markets asked for (the others are loaded as members of their groups).
    asked: bool,
    tokens: Vec<Token>,
}

fn decimal(what: &str, text: &str) -> Decimal {
    Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .unwrap_or_else(|e| error!("{what}: {text} is not a decimal this function can use ({e})"))
}

fn numeric(d: Decimal) -> AnyNumeric {
    AnyNumeric::try_from(d.normalize().to_string().as_str()).expect("decimals are valid numerics")
}

fn to_decimal(what: &str, n: Option<AnyNumeric>) -> Option<Decimal> {
    n.map(|n| decimal(what, &n.to_string()))
}

/// One side of a stored book: the space-separated prices and sizes, best first.
fn levels(token: &str, side: &str, prices: Option<String>, sizes: Option<String>) -> Vec<Level> {
    let (prices, sizes) = (prices.unwrap_or_default(), sizes.unwrap_or_default());
    let what = format!("polymarket_books {token} {side}");
    prices
        .split_ascii_whitespace()
        .zip(sizes.split_ascii_whitespace())
        .map(|(p, s)| Level::new(decimal(&what, p), decimal(&what, s)))
        .collect()
}

/// The settings row with the call's overrides.
fn params(
    min_edge: Option<AnyNumeric>,
    min_size: Option<AnyNumeric>,
    max_size: Option<AnyNumeric>,
) -> Params {
    let row = Spi::connect(|c| {
        let mut rows = c
            .select(
                "SELECT min_edge::text, min_size::text, max_size::text,
                        floor(extract(epoch FROM min_time_to_resolution))::bigint
                 FROM tapeflow.arbitrage_settings",
                Some(1),
                &[],
            )
            .unwrap_or_else(|e| error!("reading tapeflow.arbitrage_settings: {e}"));
        rows.next().map(|r| {
            (
                r.get::<String>(1).ok().flatten(),
                r.get::<String>(2).ok().flatten(),
                r.get::<String>(3).ok().flatten(),
                r.get::<i64>(4).ok().flatten(),
            )
        })
    });
    let (edge, size, max, secs) = row.unwrap_or((None, None, None, None));
    let setting =
        |name: &str, v: Option<String>| v.map(|t| decimal(&format!("arbitrage_settings.{name}"), &t));
    let p = Params {
        min_edge: to_decimal("min_edge", min_edge).or(setting("min_edge", edge)).unwrap_or_default(),
        min_size: to_decimal("min_size", min_size).or(setting("min_size", size)).unwrap_or_default(),
        max_size: to_decimal("max_size", max_size).or(setting("max_size", max)),
        min_seconds_to_resolution: secs.unwrap_or(0),
        ..Params::default()
    };
    if p.min_edge < Decimal::ZERO {
        error!("min_edge must not be negative (got {})", p.min_edge);
    }
    if p.min_size < Decimal::ZERO {
        error!("min_size must not be negative (got {})", p.min_size);
    }
    if p.max_size.is_some_and(|m| m <= Decimal::ZERO) {
        error!("max_size must be positive (got {})", p.max_size.unwrap_or_default());
    }
    p
}

/// The markets asked for (all watched open markets when `markets` is NULL), with every open
/// market of their neg-risk groups, their tokens and books, in condition-id order.
fn load(markets: Option<Vec<String>>) -> Vec<Market> {
    let mut out: Vec<Market> = Vec::new();
    Spi::connect(|c| {
        let rows = c
            .select(
                "WITH base AS (
                     SELECT condition_id, neg_risk_market_id, neg_risk FROM tapeflow.polymarket_markets
                     WHERE CASE WHEN $1::text[] IS NULL THEN watched AND NOT closed ELSE condition_id = ANY ($1) END),
                 wanted AS (
                     SELECT condition_id, true AS asked FROM base
                     UNION ALL
                     SELECT m.condition_id, false FROM tapeflow.polymarket_markets m
                     WHERE m.neg_risk
                       AND m.neg_risk_market_id IN (SELECT neg_risk_market_id FROM base WHERE neg_risk)
                       AND m.condition_id NOT IN (SELECT condition_id FROM base)),
                 -- Exact pruning: profit per pair falls as the books are walked, so buying both
                 -- pays only if the best asks sum below 1, selling both only if the best bids
                 -- sum above 1, buying every YES only if the best YES asks do. The levels of
                 -- other books are not read.
                 flags AS (
                     SELECT t.condition_id,
                            count(b.best_ask) = 2 AND sum(b.best_ask) < 1 AS buy,
                            count(b.best_bid) = 2 AND sum(b.best_bid) > 1 AS sell,
                            min(b.best_ask) FILTER (WHERE t.outcome_index = 0) AS yes_ask
                     FROM wanted w
                     JOIN tapeflow.polymarket_tokens t USING (condition_id)
                     LEFT JOIN tapeflow.polymarket_books b USING (token_id)
                     GROUP BY t.condition_id),
                 groups AS (
                     SELECT m.neg_risk_market_id, coalesce(sum(f.yes_ask), 0) < 1 AS buy_all
                     FROM wanted w
                     JOIN tapeflow.polymarket_markets m USING (condition_id)
                     JOIN flags f USING (condition_id)
                     WHERE m.neg_risk AND NOT (m.closed AND m.winning_token_id IS NOT NULL)
                     GROUP BY m.neg_risk_market_id)
                 SELECT m.condition_id, CASE WHEN m.neg_risk THEN m.neg_risk_market_id END, m.neg_risk_augmented,
                        m.fee_rate::text, m.fee_exponent, m.min_order_size::text,
                        floor(extract(epoch FROM m.end_date - now()))::bigint,
                        m.active AND NOT m.closed AND m.accepting_orders, w.asked,
                        t.token_id, t.outcome, t.outcome_index,
                        CASE WHEN f.sell THEN array_to_string(b.bid_prices, ' ') END,
                        CASE WHEN f.sell THEN array_to_string(b.bid_sizes, ' ') END,
                        CASE WHEN f.buy OR (t.outcome_index = 0 AND g.buy_all) THEN array_to_string(b.ask_prices, ' ') END,
                        CASE WHEN f.buy OR (t.outcome_index = 0 AND g.buy_all) THEN array_to_string(b.ask_sizes, ' ') END,
                        m.closed, m.winning_token_id
                 FROM wanted w
                 JOIN tapeflow.polymarket_markets m USING (condition_id)
                 JOIN tapeflow.polymarket_tokens t USING (condition_id)
                 LEFT JOIN tapeflow.polymarket_books b USING (token_id)
                 LEFT JOIN flags f ON f.condition_id = m.condition_id
                 LEFT JOIN groups g ON g.neg_risk_market_id = m.neg_risk_market_id AND m.neg_risk
                 ORDER BY m.condition_id, t.outcome_index",
                None,
                &[markets.into()],
            )
            .unwrap_or_else(|e| error!("reading the Polymarket books: {e}"));
        for r in rows {
            let condition_id: String = r.get(1).ok().flatten().unwrap_or_default();
            let token_id: String = r.get(10).ok().flatten().unwrap_or_default();
            let token = Token {
                outcome: r.get(11).ok().flatten().unwrap_or_default(),
                outcome_index: r.get(12).ok().flatten().unwrap_or_default(),
                bids: levels(&token_id, "bids", r.get(13).ok().flatten(), r.get(14).ok().flatten()),
                asks: levels(&token_id, "asks", r.get(15).ok().flatten(), r.get(16).ok().flatten()),
                token_id,
            };
            if out.last().is_none_or(|m| m.condition_id != condition_id) {
                let rate: String = r.get(4).ok().flatten().unwrap_or_else(|| "0".into());
                let exponent: i32 = r.get(5).ok().flatten().unwrap_or(1);
                let fees = FeeSchedule::new(decimal("fee_rate", &rate), exponent.max(0) as u32)
                    .unwrap_or_else(|e| error!("market {condition_id}: {e}"));
                let min_order: String = r.get(6).ok().flatten().unwrap_or_else(|| "0".into());
                out.push(Market {
                    group: r.get(2).ok().flatten(),
                    augmented: r.get(3).ok().flatten().unwrap_or(false),
                    fees,
                    min_order: decimal("min_order_size", &min_order),
                    seconds_left: r.get(7).ok().flatten(),
                    tradable: r.get(8).ok().flatten().unwrap_or(false),
                    asked: r.get(9).ok().flatten().unwrap_or(false),
                    closed: r.get(17).ok().flatten().unwrap_or(false),
                    winner: r.get(18).ok().flatten(),
                    tokens: Vec::new(),
                    condition_id,
                });
            }
            out.last_mut().expect("pushed above").tokens.push(token);
        }
    });
    out
}

/// One row of the functions' result.
type Row =
    (String, String, Option<String>, AnyNumeric, AnyNumeric, AnyNumeric, AnyNumeric, AnyNumeric, JsonB);

fn row(o: &Opportunity, market_key: &str, condition_id: Option<&str>, legs: &[(&Market, &Token)]) -> Row {
    // Decimals as JSON strings, exactly (as the venue writes them): ->> and ::numeric read them.
    let text = |d: Decimal| d.normalize().to_string();
    let legs = o
        .legs
        .iter()
        .zip(legs)
        .map(|(fill, (market, token))| {
            json!({
                "token_id": token.token_id,
                "condition_id": market.condition_id,
                "outcome": token.outcome,
                "side": fill.action.as_str(),
                "shares": text(fill.shares),
                "avg_price": text(fill.avg_price),
                "worst_price": text(fill.worst_price),
                "notional": text(fill.notional),
                "fee": text(fill.fee),
                "levels": fill.levels,
            })
        })
        .collect::<Vec<_>>();
    (
        o.kind.as_str().to_string(),
        market_key.to_string(),
        condition_id.map(str::to_string),
        numeric(o.size),
        numeric(o.edge),
        numeric(o.profit),
        numeric(o.notional),
        numeric(o.fees),
        JsonB(serde_json::Value::Array(legs)),
    )
}

fn fail(what: &str, e: arbitrage::ArbError) -> ! {
    error!("{what}: {e}")
}

/// Every opportunity of the markets loaded: buy_both and sell_both of each asked binary market,
/// buy_all_yes of each neg-risk group with an asked member.
fn opportunities(markets: &[Market], base: &Params) -> Vec<Row> {
    let mut rows = Vec::new();
    for m in markets.iter().filter(|m| m.asked && m.tradable) {
        if arbitrage::resolves_too_soon(base, m.seconds_left) {
            continue;
        }
        let (Some(yes), Some(no)) =
            (m.tokens.iter().find(|t| t.outcome_index == 0), m.tokens.iter().find(|t| t.outcome_index == 1))
        else {
            continue;
        };
        if m.tokens.len() != 2 {
            continue;
        }
        let p = Params { min_size: base.min_size.max(m.min_order), ..*base };
        let buy = arbitrage::buy_both(&yes.asks, &no.asks, m.fees, &p)
            .unwrap_or_else(|e| fail(&format!("market {}", m.condition_id), e));
        let sell = arbitrage::sell_both(&yes.bids, &no.bids, m.fees, &p)
            .unwrap_or_else(|e| fail(&format!("market {}", m.condition_id), e));
        for o in buy.iter().chain(sell.iter()) {
            rows.push(row(o, &m.condition_id, Some(&m.condition_id), &[(m, yes), (m, no)]));
        }
    }

    // Neg-risk groups: exactly one market of the event resolves YES. A member resolved NO
    // (closed, another token won) drops out; a member closed without a result, resolved YES,
    // untradable or augmented (the event may gain outcomes) makes buying every YES unsafe.
    let mut groups: BTreeMap<&str, Vec<&Market>> = BTreeMap::new();
    for m in markets {
        if let Some(g) = &m.group {
            groups.entry(g.as_str()).or_default().push(m);
        }
    }
    for (group, all) in groups {
        if !all.iter().any(|m| m.asked) {
            continue;
        }
        let yes_token =
            |m: &Market| m.tokens.iter().find(|t| t.outcome_index == 0).map(|t| t.token_id.clone());
        let resolved_no =
            |m: &Market| m.closed && m.winner.as_ref().is_some_and(|w| Some(w.clone()) != yes_token(m));
        let members: Vec<&Market> = all.iter().copied().filter(|m| !resolved_no(m)).collect();
        if members.len() < 2
            || members.iter().any(|m| m.augmented || !m.tradable)
            || members.iter().any(|m| arbitrage::resolves_too_soon(base, m.seconds_left))
        {
            continue;
        }
        let yes: Option<Vec<(&Market, &Token)>> =
            members.iter().map(|m| m.tokens.iter().find(|t| t.outcome_index == 0).map(|t| (*m, t))).collect();
        let Some(yes) = yes else { continue };
        let legs: Vec<LegBook> = yes.iter().map(|(m, t)| LegBook { levels: &t.asks, fees: m.fees }).collect();
        let min_order = members.iter().map(|m| m.min_order).max().unwrap_or_default();
        let p = Params { min_size: base.min_size.max(min_order), ..*base };
        if let Some(o) =
            arbitrage::buy_all_yes(&legs, &p).unwrap_or_else(|e| fail(&format!("neg-risk group {group}"), e))
        {
            rows.push(row(&o, group, None, &yes));
        }
    }
    rows
}

/// Arbitrage opportunities of one market from its current books: `buy_both` (buy YES and NO,
/// payout 1 a pair), `sell_both` (sell YES and NO into the bids, for more than 1 a pair) and,
/// when the market belongs to a neg-risk event, `buy_all_yes` over the event. Each at its
/// profit-maximising size after the market's taker fees; edge = profit per share; legs as
/// jsonb (token, side, shares, average and worst price, notional, fee as decimal strings, and
/// the number of levels taken).
/// `min_edge`, `min_size` and `max_size` default to tapeflow.arbitrage_settings; the market's
/// min_order_size applies as well. A closed market, or one resolving sooner than the settings'
/// min_time_to_resolution, has none. Errors: a NULL or unknown condition id, negative parameters.
#[pg_extern(stable)]
fn arbitrage(
    condition_id: Option<&str>,
    min_edge: default!(Option<AnyNumeric>, "NULL"),
    min_size: default!(Option<AnyNumeric>, "NULL"),
    max_size: default!(Option<AnyNumeric>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(kind, String),
        name!(market_key, String),
        name!(condition_id, Option<String>),
        name!(size, AnyNumeric),
        name!(edge, AnyNumeric),
        name!(profit, AnyNumeric),
        name!(notional, AnyNumeric),
        name!(fees, AnyNumeric),
        name!(legs, JsonB),
    ),
> {
    let Some(condition_id) = condition_id else {
        error!("tapeflow.arbitrage: condition_id must not be NULL")
    };
    let p = params(min_edge, min_size, max_size);
    let markets = load(Some(vec![condition_id.to_string()]));
    if !markets.iter().any(|m| m.asked) {
        error!("tapeflow.arbitrage: unknown Polymarket market {condition_id} (no row in tapeflow.polymarket_markets)");
    }
    TableIterator::new(opportunities(&markets, &p))
}

/// The opportunities of every watched, open market (or of `markets`, condition ids, when
/// given), as tapeflow.arbitrage returns them for one; neg-risk events once each.
#[pg_extern(stable)]
fn arbitrage_scan(
    markets: default!(Option<Vec<String>>, "NULL"),
    min_edge: default!(Option<AnyNumeric>, "NULL"),
    min_size: default!(Option<AnyNumeric>, "NULL"),
    max_size: default!(Option<AnyNumeric>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(kind, String),
        name!(market_key, String),
        name!(condition_id, Option<String>),
        name!(size, AnyNumeric),
        name!(edge, AnyNumeric),
        name!(profit, AnyNumeric),
        name!(notional, AnyNumeric),
        name!(fees, AnyNumeric),
        name!(legs, JsonB),
    ),
> {
    let p = params(min_edge, min_size, max_size);
    TableIterator::new(opportunities(&load(markets), &p))
}
