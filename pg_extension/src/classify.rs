//! Trade-side classification in SQL: the rules of `tapeflow_analytics::classify` per trade,
//! and `tick_side`, a window aggregate for the tick rule over ordered trades.

use crate::aggstate::{state_mut, state_ref};
use pgrx::prelude::*;
use pgrx::Internal;
use tapeflow_analytics::classify::{self, Quote, Rule, TickRule};
use tapeflow_analytics::Side;

#[derive(Default)]
struct TickState {
    rule: TickRule,
    last: Side,
}

#[pg_extern(immutable, parallel_safe)]
fn tick_side_trans(mut state: Internal, price: Option<f64>, fcinfo: pg_sys::FunctionCallInfo) -> Internal {
    let st = unsafe { state_mut::<TickState>(&mut state, fcinfo, TickState::default) };
    st.last = match price {
        Some(p) if p.is_finite() => st.rule.classify(p),
        _ => Side::Unknown,
    };
    state
}

#[pg_extern(immutable, parallel_safe)]
fn tick_side_final(state: Internal) -> i8 {
    unsafe { state_ref::<TickState>(&state) }.map(|s| s.last).unwrap_or_default().code() as i8
}

extension_sql!(
    r#"
CREATE AGGREGATE tick_side(price double precision) (
    SFUNC = tick_side_trans, STYPE = internal, FINALFUNC = tick_side_final, FINALFUNC_MODIFY = READ_ONLY
);
COMMENT ON AGGREGATE tick_side(double precision) IS
'Tick rule as a window aggregate: tick_side(price) OVER (PARTITION BY symbol ORDER BY time, trade_id ROWS UNBOUNDED PRECEDING) gives B for an uptick, S for a downtick, and continues the last non-zero direction on a zero tick; N before the first price change. Order by a unique key with ROWS framing, or peers share one answer.';
"#,
    name = "tick_side_aggregate",
    requires = [tick_side_trans, tick_side_final]
);

/// Raises an error naming `arg` of `func` unless `x` is finite and `>= min` (`> min` when
/// `strict`).
pub(crate) fn check_finite(func: &str, arg: &str, x: f64, min: f64, strict: bool) {
    let ok = x.is_finite() && if strict { x > min } else { x >= min };
    if !ok {
        let rule = if strict { ">" } else { ">=" };
        error!("{func}: {arg} must be a finite number {rule} {min}, got {x}");
    }
}

/// The quote in force, or none when a side is unknown (NULL). A bid or ask given as NaN,
/// infinite or negative is an error naming it (0 means no bid or no ask: the quote is unusable
/// and the tick side decides).
fn quote(bid: Option<f64>, ask: Option<f64>) -> Option<Quote> {
    for (name, v) in [("bid", bid), ("ask", ask)] {
        if let Some(v) = v {
            check_finite("classify_trade", name, v, 0.0, false);
        }
    }
    match (bid, ask) {
        (Some(b), Some(a)) => Some(Quote::new(b, a)),
        _ => None,
    }
}

/// Classifies one trade with `rule` ('tick', 'quote', 'lee_ready', 'emo', 'clnv'), given the
/// quote in force (NULL when unknown) and the tick-rule side of the trade (from tick_side).
/// Quote rules fall back to the tick side when the quote is missing, crossed or locked.
/// 'reverse_tick' needs the next trade and is available through classify_ticks().
/// Errors: unknown rule; price not a finite number > 0; bid or ask NaN, infinite or negative.
#[pg_extern(immutable, parallel_safe)]
fn classify_trade(rule: &str, price: f64, bid: Option<f64>, ask: Option<f64>, tick_side: Option<i8>) -> i8 {
    let rule: Rule = rule.parse().unwrap_or_else(|e| error!("classify_trade: {e}"));
    check_finite("classify_trade", "price", price, 0.0, true);
    let tick = crate::candle::side_arg(tick_side);
    let q = quote(bid, ask);
    let side = match rule {
        Rule::Tick => tick,
        Rule::Quote => classify::quote_rule(price, q, tick),
        Rule::LeeReady => classify::lee_ready(price, q, tick),
        Rule::Emo => classify::emo(price, q, tick),
        Rule::Clnv => classify::clnv(price, q, tick),
        Rule::ReverseTick => {
            error!("classify_trade: reverse_tick needs the following trades; use tapeflow.classify_ticks()")
        }
    };
    side.code() as i8
}

/// Bulk volume classification (Easley, López de Prado, O'Hara): splits a bar's volume into
/// buy = V·Φ(Δp/σ) and sell = V − buy. σ <= 0 gives an even split. Errors: volume not a finite
/// number >= 0; price_change or sigma NaN or infinite.
#[pg_extern(immutable, parallel_safe)]
fn bvc_split(
    volume: f64,
    price_change: f64,
    sigma: f64,
) -> TableIterator<'static, (name!(buy_volume, f64), name!(sell_volume, f64))> {
    check_finite("bvc_split", "volume", volume, 0.0, false);
    for (name, v) in [("price_change", price_change), ("sigma", sigma)] {
        if !v.is_finite() {
            error!("bvc_split: {name} must be a finite number, got {v}");
        }
    }
    TableIterator::once(classify::bvc_split(volume, price_change, sigma))
}
