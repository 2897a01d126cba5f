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

fn quote(bid: Option<f64>, ask: Option<f64>) -> Option<Quote> {
    match (bid, ask) {
        (Some(b), Some(a)) => Some(Quote::new(b, a)),
        _ => None,
    }
}

/// Classifies one trade with `rule` ('tick', 'quote', 'lee_ready', 'emo', 'clnv'), given the
/// quote in force (NULL when unknown) and the tick-rule side of the trade (from tick_side).
/// Quote rules fall back to the tick side when the quote is missing, crossed or locked.
/// 'reverse_tick' needs the next trade and is available through classify_ticks().
#[pg_extern(immutable, parallel_safe)]
fn classify_trade(rule: &str, price: f64, bid: Option<f64>, ask: Option<f64>, tick_side: Option<i8>) -> i8 {
    let rule: Rule = rule.parse().unwrap_or_else(|e| error!("classify_trade: {e}"));
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
/// buy = V·Φ(Δp/σ) and sell = V − buy. σ <= 0 gives an even split.
#[pg_extern(immutable, parallel_safe)]
fn bvc_split(
    volume: f64,
    price_change: f64,
    sigma: f64,
) -> TableIterator<'static, (name!(buy_volume, f64), name!(sell_volume, f64))> {
    if !volume.is_finite() || volume < 0.0 {
        error!("bvc_split: volume must be a finite number >= 0, got {volume}");
    }
    TableIterator::once(classify::bvc_split(volume, price_change, sigma))
}
