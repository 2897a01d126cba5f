//! `tapeflow.candle`: the OHLCV summary type, `candle_agg`, `rollup` and accessors.

use crate::aggstate::{new_state, state_mut, state_ref};
use crate::expanded::{self, expanded_methods, FlatState};
use crate::varlena::binary_varlena_type;
use pgrx::prelude::*;
use pgrx::Internal;
use std::ffi::CStr;
use tapeflow_analytics::candle::Candle as C;
use tapeflow_analytics::{Micros, Side};

/// A candle summary: open/high/low/close with their times, volume split by aggressor side,
/// trade count and notional (for VWAP). Produced by `candle_agg`, re-aggregated by `rollup`.
#[derive(Debug, Clone, Copy, PostgresType)]
#[bikeshed_postgres_type_manually_impl_from_into_datum]
#[inoutfuncs]
pub struct Candle(pub C);

binary_varlena_type!(Candle, C, "tapeflow.candle");

pub fn micros(t: TimestampWithTimeZone) -> Micros {
    t.into_inner()
}

pub fn timestamptz(us: Micros) -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(us).unwrap_or_else(|e| error!("timestamp {us} out of range: {e:?}"))
}

/// Decodes a `"char"` side argument; NULL is an unknown side.
pub fn side_arg(side: Option<i8>) -> Side {
    match side {
        None | Some(0) => Side::Unknown,
        Some(c) => Side::from_code(c as u8).unwrap_or_else(|| {
            error!("invalid side {:?}: expected 'B' (buy), 'S' (sell) or 'N' (unknown)", (c as u8) as char)
        }),
    }
}

type State = Option<C>;

fn add_trade(state: &mut State, time: Micros, price: f64, size: f64, side: Side) {
    match state {
        Some(c) => c.add(time, price, size, side),
        None => C::from_trade(time, price, size, side).map(|c| *state = Some(c)),
    }
    .unwrap_or_else(|e| error!("candle_agg: {e}"));
}

/// `a` merged with `b`; a sum leaving the exact range is an error naming `what`.
fn merge(a: Option<C>, b: Option<&C>, what: &str) -> Option<C> {
    C::merge_opt(a, b).unwrap_or_else(|e| error!("{what}: candle volume or notional {e}"))
}

// The `internal`-state functions of releases before 0.3.0: no longer in the extension's SQL,
// kept in the library for databases not yet upgraded (their aggregates still name them).
#[pg_extern(immutable, parallel_safe, sql = false)]
fn candle_trans(
    mut state: Internal,
    time: Option<TimestampWithTimeZone>,
    price: Option<f64>,
    size: Option<f64>,
    side: Option<i8>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    // Rows with a NULL time, price or size are skipped, like NULLs in sum().
    if let (Some(t), Some(p), Some(s)) = (time, price, size) {
        let st = unsafe { state_mut::<State>(&mut state, fcinfo, || None) };
        add_trade(st, micros(t), p, s, side_arg(side));
    }
    state
}

#[pg_extern(immutable, parallel_safe, sql = false)]
fn candle_trans_noside(
    state: Internal,
    time: Option<TimestampWithTimeZone>,
    price: Option<f64>,
    size: Option<f64>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    candle_trans(state, time, price, size, None, fcinfo)
}

#[pg_extern(immutable, parallel_safe, sql = false)]
fn candle_rollup_trans(
    mut state: Internal,
    value: Option<Candle>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    if let Some(v) = value {
        let st = unsafe { state_mut::<State>(&mut state, fcinfo, || None) };
        *st = merge(st.take(), Some(&v.0), "candle rollup");
    }
    state
}

#[pg_extern(immutable, parallel_safe, sql = false)]
fn candle_final(state: Internal) -> Option<Candle> {
    unsafe { state_ref::<State>(&state) }.copied().flatten().map(Candle)
}

#[pg_extern(immutable, parallel_safe, sql = false)]
fn candle_combine(a: Internal, b: Internal, fcinfo: pg_sys::FunctionCallInfo) -> Internal {
    let x = unsafe { state_ref::<State>(&a) }.copied().flatten();
    let y = unsafe { state_ref::<State>(&b) }.copied().flatten();
    new_state::<State>(fcinfo, merge(x, y.as_ref(), "candle_agg"))
}

#[pg_extern(immutable, parallel_safe, strict, sql = false)]
fn candle_serialize(state: Internal) -> Vec<u8> {
    match unsafe { state_ref::<State>(&state) }.copied().flatten() {
        Some(c) => c.to_bytes(),
        None => vec![],
    }
}

#[pg_extern(immutable, parallel_safe, strict, sql = false)]
fn candle_deserialize(bytes: &[u8], _internal: Internal, fcinfo: pg_sys::FunctionCallInfo) -> Internal {
    let st: State = if bytes.is_empty() {
        None
    } else {
        Some(C::from_bytes(bytes).unwrap_or_else(|e| error!("candle state: {e}")))
    };
    new_state(fcinfo, st)
}

impl FlatState for C {
    const NAME: &'static str = "tapeflow.candle_state";
    fn to_flat(&self) -> Vec<u8> {
        self.to_bytes()
    }
    fn from_flat(bytes: &[u8]) -> Result<C, String> {
        C::from_bytes(bytes)
    }
    fn methods() -> &'static pg_sys::ExpandedObjectMethods {
        expanded_methods!(C)
    }
}

// The aggregates' functions over `candle_state` (SQL below, written by hand: pgrx would type
// the state `internal`).

#[pg_extern(immutable, parallel_safe, strict, sql = false)]
fn candle_state_in(input: &CStr) -> Internal {
    Internal::from(Some(expanded::input::<C>(input)))
}

#[pg_extern(immutable, parallel_safe, strict, sql = false)]
fn candle_state_out(state: Internal) -> Internal {
    Internal::from(state.unwrap().map(|d| unsafe { expanded::output::<C>(d) }))
}

#[pg_extern(immutable, parallel_safe, sql = false)]
fn candle_state_trans(
    state: Internal,
    time: Option<TimestampWithTimeZone>,
    price: Option<f64>,
    size: Option<f64>,
    side: Option<i8>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    // Rows with a NULL time, price or size are skipped, like NULLs in sum().
    let (Some(t), Some(p), Some(s)) = (time, price, size) else { return state };
    let side = side_arg(side);
    let datum = match state.unwrap() {
        Some(d) => unsafe {
            let (d, c) = expanded::for_update::<C>(fcinfo, d, "candle_agg");
            c.add(micros(t), p, s, side).unwrap_or_else(|e| error!("candle_agg: {e}"));
            d
        },
        None => {
            let c = C::from_trade(micros(t), p, s, side).unwrap_or_else(|e| error!("candle_agg: {e}"));
            unsafe { expanded::create(fcinfo, c, "candle_agg") }
        }
    };
    Internal::from(Some(datum))
}

#[pg_extern(immutable, parallel_safe, sql = false)]
fn candle_state_trans_noside(
    state: Internal,
    time: Option<TimestampWithTimeZone>,
    price: Option<f64>,
    size: Option<f64>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    candle_state_trans(state, time, price, size, None, fcinfo)
}

/// `a` merged with `b` in place; a sum leaving the exact range is an error naming `what`.
fn merge_into(a: &mut C, b: &C, what: &str) {
    a.merge(b).unwrap_or_else(|e| error!("{what}: candle volume or notional {e}"));
}

#[pg_extern(immutable, parallel_safe, sql = false)]
fn candle_state_rollup_trans(
    state: Internal,
    value: Option<Candle>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    let Some(v) = value else { return state };
    let datum = match state.unwrap() {
        Some(d) => unsafe {
            let (d, c) = expanded::for_update::<C>(fcinfo, d, "candle rollup");
            merge_into(c, &v.0, "candle rollup");
            d
        },
        None => unsafe { expanded::create(fcinfo, v.0, "candle rollup") },
    };
    Internal::from(Some(datum))
}

/// (state, state) -> state: `a` merged with `b`, in place when `a` is the aggregate's own.
#[pg_extern(immutable, parallel_safe, sql = false)]
fn candle_state_combine(a: Internal, b: Internal, fcinfo: pg_sys::FunctionCallInfo) -> Internal {
    let Some(b) = b.unwrap() else { return a };
    let datum = match a.unwrap() {
        Some(a) => unsafe {
            let (d, c) = expanded::for_update::<C>(fcinfo, a, "candle_agg");
            expanded::read::<C, _>(b, |y| merge_into(c, y, "candle_agg"));
            d
        },
        None => unsafe { expanded::create(fcinfo, expanded::owned::<C>(b), "candle_agg") },
    };
    Internal::from(Some(datum))
}

/// The candle of a state: its flat form is the candle's stored form.
#[pg_extern(immutable, parallel_safe, sql = false)]
fn candle_state_final(state: Internal) -> Internal {
    let bytes = state.unwrap().map(|d| unsafe { expanded::read::<C, _>(d, C::to_bytes) });
    Internal::from(bytes.map(|b| pg_sys::Datum::from(pgrx::varlena::rust_byte_slice_to_bytea(&b).into_pg())))
}

/// Merges two candles (NULL-tolerant), e.g. to fold a new minute into a stored one.
#[pg_extern(immutable, parallel_safe, name = "candle_merge")]
fn candle_merge(a: Option<Candle>, b: Option<Candle>) -> Option<Candle> {
    merge(a.map(|c| c.0), b.map(|c| c.0).as_ref(), "candle_merge").map(Candle)
}

extension_sql!(
    r#"
CREATE TYPE candle_state;
CREATE FUNCTION candle_state_in(input cstring) RETURNS candle_state
IMMUTABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'candle_state_in_wrapper';
CREATE FUNCTION candle_state_out(state candle_state) RETURNS cstring
IMMUTABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'candle_state_out_wrapper';
CREATE TYPE candle_state (
    INPUT = candle_state_in, OUTPUT = candle_state_out, INTERNALLENGTH = VARIABLE, STORAGE = extended
);
COMMENT ON TYPE candle_state IS
'Transition state of candle_agg() and rollup(candle): a candle being built. Its text form is the hex of its binary form (the candle''s), which Citus ships from the workers'' partial aggregates to the coordinator''s combine.';
CREATE FUNCTION candle_state_trans(state candle_state, ts timestamptz, price double precision, size double precision, side "char") RETURNS candle_state
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'candle_state_trans_wrapper';
CREATE FUNCTION candle_state_trans_noside(state candle_state, ts timestamptz, price double precision, size double precision) RETURNS candle_state
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'candle_state_trans_noside_wrapper';
CREATE FUNCTION candle_state_rollup_trans(state candle_state, value candle) RETURNS candle_state
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'candle_state_rollup_trans_wrapper';
CREATE FUNCTION candle_state_combine(a candle_state, b candle_state) RETURNS candle_state
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'candle_state_combine_wrapper';
CREATE FUNCTION candle_state_final(state candle_state) RETURNS candle
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'candle_state_final_wrapper';
-- SSPACE: what the planner assumed of the internal states, so that plans stay as they were.
CREATE AGGREGATE candle_agg(ts timestamptz, price double precision, size double precision, side "char") (
    SFUNC = candle_state_trans, STYPE = candle_state, FINALFUNC = candle_state_final,
    COMBINEFUNC = candle_state_combine, SSPACE = 8192, PARALLEL = SAFE
);
COMMENT ON AGGREGATE candle_agg(timestamptz, double precision, double precision, "char") IS
'OHLCV summary of trades (time, price, size, aggressor side B/S/N). Rows with NULL time/price/size are skipped; NaN, infinite or non-positive prices and negative sizes raise an error. Read with open(), high(), low(), close(), volume(), buy_volume(), sell_volume(), trades(), vwap(), delta(); combine with rollup(). Volumes and notional are exact sums, read as their correctly rounded doubles: the same bits in any plan or grouping.';
CREATE AGGREGATE candle_agg(ts timestamptz, price double precision, size double precision) (
    SFUNC = candle_state_trans_noside, STYPE = candle_state, FINALFUNC = candle_state_final,
    COMBINEFUNC = candle_state_combine, SSPACE = 8192, PARALLEL = SAFE
);
CREATE AGGREGATE rollup(candle) (
    SFUNC = candle_state_rollup_trans, STYPE = candle_state, FINALFUNC = candle_state_final,
    COMBINEFUNC = candle_state_combine, SSPACE = 8192, PARALLEL = SAFE
);
COMMENT ON AGGREGATE rollup(candle) IS 'Re-aggregates candle summaries, e.g. one-minute candles into hours; exactly, so any grouping gives the same candle.';
"#,
    name = "candle_aggregates",
    requires = [Candle]
);

#[pg_extern(immutable, parallel_safe)]
fn open(c: Candle) -> f64 {
    c.0.open
}
#[pg_extern(immutable, parallel_safe)]
fn high(c: Candle) -> f64 {
    c.0.high
}
#[pg_extern(immutable, parallel_safe)]
fn low(c: Candle) -> f64 {
    c.0.low
}
#[pg_extern(immutable, parallel_safe)]
fn close(c: Candle) -> f64 {
    c.0.close
}
#[pg_extern(immutable, parallel_safe)]
fn open_time(c: Candle) -> TimestampWithTimeZone {
    timestamptz(c.0.open_time)
}
#[pg_extern(immutable, parallel_safe)]
fn high_time(c: Candle) -> TimestampWithTimeZone {
    timestamptz(c.0.high_time)
}
#[pg_extern(immutable, parallel_safe)]
fn low_time(c: Candle) -> TimestampWithTimeZone {
    timestamptz(c.0.low_time)
}
#[pg_extern(immutable, parallel_safe)]
fn close_time(c: Candle) -> TimestampWithTimeZone {
    timestamptz(c.0.close_time)
}
#[pg_extern(immutable, parallel_safe)]
fn volume(c: Candle) -> f64 {
    c.0.volume
}
#[pg_extern(immutable, parallel_safe)]
fn buy_volume(c: Candle) -> f64 {
    c.0.buy_volume
}
#[pg_extern(immutable, parallel_safe)]
fn sell_volume(c: Candle) -> f64 {
    c.0.sell_volume
}
#[pg_extern(immutable, parallel_safe)]
fn trades(c: Candle) -> i64 {
    c.0.trades
}
#[pg_extern(immutable, parallel_safe)]
fn vwap(c: Candle) -> Option<f64> {
    c.0.vwap()
}
#[pg_extern(immutable, parallel_safe)]
fn delta(c: Candle) -> f64 {
    c.0.delta()
}

/// A candle from a ready-made OHLCV bar (imported minute bars): the open/close times are the
/// bar's time, the aggressor split is unknown (the bar engine estimates it from the bar), the
/// notional uses the typical price (H+L+C)/3 for VWAP. Errors name an inconsistent bar.
#[pg_extern(immutable, parallel_safe)]
fn candle_of(time: TimestampWithTimeZone, open: f64, high: f64, low: f64, close: f64, volume: f64) -> Candle {
    C::checked_ohlcv(micros(time), open, high, low, close, volume)
        .map(Candle)
        .unwrap_or_else(|e| error!("candle_of: {e}"))
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn setup() {
        Spi::run(
            "CREATE TEMP TABLE t(ts timestamptz, price float8, size float8, side \"char\");
             INSERT INTO t VALUES
               ('2024-01-02 14:30:03+00', 100.0, 10, 'B'),
               ('2024-01-02 14:30:01+00', 101.0, 5, 'S'),
               ('2024-01-02 14:30:02+00', 99.0, 20, 'B'),
               ('2024-01-02 14:30:04+00', 100.5, 5, 'N'),
               ('2024-01-02 14:31:00+00', 102.0, 10, 'S');",
        )
        .unwrap();
    }

    #[pg_test]
    fn candle_agg_accessors() {
        setup();
        let row = Spi::get_two::<f64, f64>(
            "SELECT tapeflow.open(c), tapeflow.close(c) FROM (SELECT tapeflow.candle_agg(ts, price, size, side) c FROM t WHERE ts < '2024-01-02 14:31+00') s",
        )
        .unwrap();
        assert_eq!(row, (Some(101.0), Some(100.5)));
        let hl = Spi::get_three::<f64, f64, f64>(
            "SELECT tapeflow.high(c), tapeflow.low(c), tapeflow.volume(c) FROM (SELECT tapeflow.candle_agg(ts, price, size, side) c FROM t WHERE ts < '2024-01-02 14:31+00') s",
        )
        .unwrap();
        assert_eq!(hl, (Some(101.0), Some(99.0), Some(40.0)));
        let flow = Spi::get_three::<f64, f64, i64>(
            "SELECT tapeflow.buy_volume(c), tapeflow.sell_volume(c), tapeflow.trades(c) FROM (SELECT tapeflow.candle_agg(ts, price, size, side) c FROM t WHERE ts < '2024-01-02 14:31+00') s",
        )
        .unwrap();
        assert_eq!(flow, (Some(30.0), Some(5.0), Some(4)));
        let vwap = Spi::get_one::<f64>(
            "SELECT tapeflow.vwap(tapeflow.candle_agg(ts, price, size, side)) FROM t WHERE ts < '2024-01-02 14:31+00'",
        )
        .unwrap()
        .unwrap();
        assert!((vwap - (1000.0 + 505.0 + 1980.0 + 502.5) / 40.0).abs() < 1e-9);
    }

    #[pg_test]
    fn rollup_of_minutes_equals_whole() {
        setup();
        let whole = Spi::get_one::<String>("SELECT tapeflow.candle_agg(ts, price, size, side)::text FROM t")
            .unwrap()
            .unwrap();
        let rolled = Spi::get_one::<String>(
            "SELECT tapeflow.rollup(c)::text FROM (SELECT tapeflow.candle_agg(ts, price, size, side) c FROM t GROUP BY date_trunc('minute', ts)) m",
        )
        .unwrap()
        .unwrap();
        assert_eq!(whole, rolled);
        assert!(whole.contains("\"close\":102.0"), "{whole}");
    }

    #[pg_test]
    fn text_round_trip() {
        setup();
        let same = Spi::get_one::<bool>(
            "SELECT c::text::tapeflow.candle::text = c::text FROM (SELECT tapeflow.candle_agg(ts, price, size, side) c FROM t) s",
        )
        .unwrap();
        assert_eq!(same, Some(true));
    }

    #[pg_test(error = "candle_agg: price must be a finite number, got NaN")]
    fn nan_price_is_an_error() {
        Spi::run("SELECT tapeflow.candle_agg(now(), 'NaN'::float8, 1, 'B')").unwrap();
    }

    #[pg_test(error = "invalid side 'X': expected 'B' (buy), 'S' (sell) or 'N' (unknown)")]
    fn bad_side_is_an_error() {
        Spi::run("SELECT tapeflow.candle_agg(now(), 1.0, 1, 'X')").unwrap();
    }

    #[pg_test]
    fn empty_input_gives_null() {
        let v = Spi::get_one::<bool>(
            "SELECT tapeflow.candle_agg(now(), 1.0, 1.0) IS NULL FROM (SELECT 1 WHERE false) s",
        )
        .unwrap();
        assert_eq!(v, Some(true));
    }

    #[pg_test]
    fn candle_state_text_form_round_trips_through_the_combine() {
        // What Citus does: partial states shipped as text, read back and combined.
        setup();
        Spi::run(
            "CREATE AGGREGATE cstate(timestamptz, float8, float8, \"char\") (
                 SFUNC = tapeflow.candle_state_trans, STYPE = tapeflow.candle_state);
             CREATE AGGREGATE ccombine(tapeflow.candle_state) (SFUNC = tapeflow.candle_state_combine,
                 STYPE = tapeflow.candle_state, FINALFUNC = tapeflow.candle_state_final);",
        )
        .unwrap();
        let via_text = Spi::get_one::<String>(
            "SELECT ccombine(x::tapeflow.candle_state)::text
             FROM (SELECT cstate(ts, price, size, side)::text x FROM t GROUP BY side) parts",
        )
        .unwrap()
        .unwrap();
        let whole = Spi::get_one::<String>("SELECT tapeflow.candle_agg(ts, price, size, side)::text FROM t")
            .unwrap()
            .unwrap();
        assert_eq!(via_text, whole);
    }

    #[pg_test]
    fn parallel_plan_equals_serial() {
        Spi::run(
            "CREATE TABLE big AS SELECT timestamptz '2024-01-02 14:30+00' + (i * interval '10 ms') AS ts,
                    100 + ((i::bigint * 7919) % 1000) / 100.0 AS price, ((1 + i % 17) / 1000.0)::float8 AS size,
                    (CASE WHEN i % 3 = 0 THEN 'B' WHEN i % 3 = 1 THEN 'S' ELSE 'N' END)::\"char\" AS side
             FROM generate_series(1, 300000) i;
             ANALYZE big;",
        )
        .unwrap();
        let q = "SELECT tapeflow.candle_agg(ts, price, size, side)::text FROM big";
        Spi::run("SET max_parallel_workers_per_gather = 0").unwrap();
        let serial = Spi::get_one::<String>(q).unwrap().unwrap();
        Spi::run(
            "SET max_parallel_workers_per_gather = 4; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
             SET min_parallel_table_scan_size = 0;",
        )
        .unwrap();
        let plan = Spi::get_one::<pgrx::Json>(&format!("EXPLAIN (FORMAT JSON) {q}")).unwrap().unwrap();
        let plan = plan.0.to_string();
        assert!(
            plan.contains("\"Partial Mode\":\"Partial\"") && plan.contains("Gather"),
            "not a parallel plan: {plan}"
        );
        let parallel = Spi::get_one::<String>(q).unwrap().unwrap();
        assert_eq!(serial, parallel);
    }
}
