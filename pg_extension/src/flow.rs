//! Order flow in SQL: buy/sell pressure and the session cumulative delta, as
//! `tapeflow_analytics::flow` defines them for the bar engine, so `order_flow()` and the market
//! state read the same numbers.

use crate::aggstate::{state_mut, state_ref};
use crate::classify::check_finite;
use pgrx::datum::Date;
use pgrx::prelude::*;
use pgrx::Internal;
use tapeflow_analytics::flow::{pressure, BarFlow, SessionCvd};

/// Raises an error naming `arg` of `func` unless `volume` is a finite number >= 0.
fn check_volume(func: &str, arg: &str, volume: f64) {
    check_finite(func, arg, volume, 0.0, false);
}

/// Buy volume as % of the classified (buy + sell) volume; 50 when none is classified.
/// Errors: a volume that is NaN, infinite or negative.
#[pg_extern(immutable, parallel_safe)]
fn buy_pressure(buy_volume: f64, sell_volume: f64) -> f64 {
    check_volume("buy_pressure", "buy_volume", buy_volume);
    check_volume("buy_pressure", "sell_volume", sell_volume);
    pressure(buy_volume, sell_volume).0
}

/// Sell volume as % of the classified (buy + sell) volume; 50 when none is classified.
/// Errors: a volume that is NaN, infinite or negative.
#[pg_extern(immutable, parallel_safe)]
fn sell_pressure(buy_volume: f64, sell_volume: f64) -> f64 {
    check_volume("sell_pressure", "buy_volume", buy_volume);
    check_volume("sell_pressure", "sell_volume", sell_volume);
    pressure(buy_volume, sell_volume).1
}

#[pg_extern(immutable, parallel_safe)]
fn session_cvd_trans(
    mut state: Internal,
    session: Option<Date>,
    buy_volume: Option<f64>,
    sell_volume: Option<f64>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    let (buy, sell) = (buy_volume.unwrap_or(0.0), sell_volume.unwrap_or(0.0));
    check_volume("session_cvd", "buy_volume", buy);
    check_volume("session_cvd", "sell_volume", sell);
    let cvd = unsafe { state_mut::<SessionCvd<Option<i32>>>(&mut state, fcinfo, SessionCvd::new) };
    cvd.push(session.map(|d| d.to_pg_epoch_days()), BarFlow::new(buy, sell).delta());
    state
}

#[pg_extern(immutable, parallel_safe)]
fn session_cvd_final(state: Internal) -> Option<f64> {
    unsafe { state_ref::<SessionCvd<Option<i32>>>(&state) }.map(SessionCvd::value)
}

extension_sql!(
    r#"
CREATE AGGREGATE session_cvd(session date, buy_volume double precision, sell_volume double precision) (
    SFUNC = session_cvd_trans, STYPE = internal, FINALFUNC = session_cvd_final, FINALFUNC_MODIFY = READ_ONLY
);
COMMENT ON AGGREGATE session_cvd(date, double precision, double precision) IS
'Cumulative delta (buy - sell volume) restarting whenever session differs from the previous row''s, as a window aggregate: session_cvd(session, buy_volume, sell_volume) OVER (ORDER BY time ROWS UNBOUNDED PRECEDING). A NULL session is a session too (a constant NULL never restarts); NULL volumes count as 0. Order by a unique key with ROWS framing, or peers share one answer. Errors: a volume that is NaN, infinite or negative.';
"#,
    name = "session_cvd_aggregate",
    requires = [session_cvd_trans, session_cvd_final]
);
