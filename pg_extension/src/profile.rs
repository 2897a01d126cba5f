//! `tapeflow.profile`: volume profile / footprint summaries, `profile_agg`, `rollup`,
//! accessors (POC, value area, levels, LVN/HVN, imbalances).

use crate::aggstate::{new_state, state_mut, state_ref};
use crate::candle::side_arg;
use crate::expanded::{self, expanded_methods, FlatState};
use crate::varlena::binary_varlena_type;
use pgrx::prelude::*;
use pgrx::Internal;
use std::ffi::CStr;
use tapeflow_analytics::footprint::{self, ImbalanceParams};
use tapeflow_analytics::profile::{NodeParams, Nodes, Profile as P, VaMethod};
use tapeflow_analytics::Side;

/// A volume profile: volume per price row (exact integer tick bins), split by aggressor side.
#[derive(Debug, Clone, PostgresType)]
#[bikeshed_postgres_type_manually_impl_from_into_datum]
#[inoutfuncs]
pub struct Profile(pub P);

binary_varlena_type!(Profile, P, "tapeflow.profile");

// The `internal`-state functions of releases before 0.3.0: no longer in the extension's SQL,
// kept in the library for databases not yet upgraded (their aggregates still name them).
type State = Option<P>;

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    error!("{what}: {e}")
}

/// profile_agg's grid arguments, checked: the tick size (required) and rows per tick (1 if NULL).
fn grid_args(tick_size: Option<f64>, ticks_per_row: Option<i32>) -> (f64, u32) {
    let tick_size = tick_size.unwrap_or_else(|| error!("profile_agg: tick_size must not be NULL"));
    let rows = ticks_per_row.unwrap_or(1);
    if rows < 1 {
        error!("profile_agg: ticks_per_row must be >= 1, got {rows}");
    }
    (tick_size, rows as u32)
}

#[pg_extern(immutable, parallel_safe, sql = false)]
fn profile_trans(
    mut state: Internal,
    price: Option<f64>,
    size: Option<f64>,
    side: Option<i8>,
    tick_size: Option<f64>,
    ticks_per_row: Option<i32>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    let (Some(price), Some(size)) = (price, size) else { return state };
    let (tick_size, rows) = grid_args(tick_size, ticks_per_row);
    let st = unsafe {
        state_mut::<State>(&mut state, fcinfo, || {
            Some(P::new(tick_size, rows).unwrap_or_else(|e| fail("profile_agg", e)))
        })
    };
    let p = st.as_mut().expect("created with a profile");
    p.check_grid(tick_size, rows).unwrap_or_else(|e| fail("profile_agg", e));
    p.add(price, size, side_arg(side)).unwrap_or_else(|e| fail("profile_agg", e));
    state
}

#[pg_extern(immutable, parallel_safe, sql = false)]
fn profile_trans_default_rows(
    state: Internal,
    price: Option<f64>,
    size: Option<f64>,
    side: Option<i8>,
    tick_size: Option<f64>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    profile_trans(state, price, size, side, tick_size, Some(1), fcinfo)
}

fn merge_into(st: &mut State, other: &P) {
    match st {
        Some(p) => p.merge(other).unwrap_or_else(|e| fail("profile rollup", e)),
        None => *st = Some(other.clone()),
    }
}

#[pg_extern(immutable, parallel_safe, sql = false)]
fn profile_rollup_trans(
    mut state: Internal,
    value: Option<Profile>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    if let Some(v) = value {
        let st = unsafe { state_mut::<State>(&mut state, fcinfo, || None) };
        merge_into(st, &v.0);
    }
    state
}

#[pg_extern(immutable, parallel_safe, sql = false)]
fn profile_final(state: Internal) -> Option<Profile> {
    unsafe { state_ref::<State>(&state) }.cloned().flatten().map(Profile)
}

#[pg_extern(immutable, parallel_safe, sql = false)]
fn profile_combine(a: Internal, b: Internal, fcinfo: pg_sys::FunctionCallInfo) -> Internal {
    let mut out: State = unsafe { state_ref::<State>(&a) }.cloned().flatten();
    if let Some(y) = unsafe { state_ref::<State>(&b) }.and_then(|s| s.as_ref()) {
        merge_into(&mut out, y);
    }
    new_state(fcinfo, out)
}

#[pg_extern(immutable, parallel_safe, strict, sql = false)]
fn profile_serialize(state: Internal) -> Vec<u8> {
    match unsafe { state_ref::<State>(&state) }.and_then(|s| s.as_ref()) {
        Some(p) => p.to_bytes(),
        None => vec![],
    }
}

#[pg_extern(immutable, parallel_safe, strict, sql = false)]
fn profile_deserialize(bytes: &[u8], _internal: Internal, fcinfo: pg_sys::FunctionCallInfo) -> Internal {
    let st: State = if bytes.is_empty() {
        None
    } else {
        Some(P::from_bytes(bytes).unwrap_or_else(|e| fail("profile state", e)))
    };
    new_state(fcinfo, st)
}

/// Merges two profiles on the same grid (NULL-tolerant).
#[pg_extern(immutable, parallel_safe)]
fn profile_merge(a: Option<Profile>, b: Option<Profile>) -> Option<Profile> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(mut x), Some(y)) => {
            x.0.merge(&y.0).unwrap_or_else(|e| fail("profile_merge", e));
            Some(x)
        }
    }
}

impl FlatState for P {
    const NAME: &'static str = "tapeflow.profile_state";
    fn to_flat(&self) -> Vec<u8> {
        self.to_bytes()
    }
    fn from_flat(bytes: &[u8]) -> Result<P, String> {
        P::from_bytes(bytes).map_err(|e| e.to_string())
    }
    fn methods() -> &'static pg_sys::ExpandedObjectMethods {
        expanded_methods!(P)
    }
}

// The aggregates' functions over `profile_state` (SQL below, written by hand: pgrx would type
// the state `internal`).

#[pg_extern(immutable, parallel_safe, strict, sql = false)]
fn profile_state_in(input: &CStr) -> Internal {
    Internal::from(Some(expanded::input::<P>(input)))
}

#[pg_extern(immutable, parallel_safe, strict, sql = false)]
fn profile_state_out(state: Internal) -> Internal {
    Internal::from(state.unwrap().map(|d| unsafe { expanded::output::<P>(d) }))
}

#[pg_extern(immutable, parallel_safe, sql = false)]
fn profile_state_trans(
    state: Internal,
    price: Option<f64>,
    size: Option<f64>,
    side: Option<i8>,
    tick_size: Option<f64>,
    ticks_per_row: Option<i32>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    let (Some(price), Some(size)) = (price, size) else { return state };
    let (tick_size, rows) = grid_args(tick_size, ticks_per_row);
    let side = side_arg(side);
    let datum = match state.unwrap() {
        Some(d) => unsafe {
            let (d, p) = expanded::for_update::<P>(fcinfo, d, "profile_agg");
            p.check_grid(tick_size, rows).unwrap_or_else(|e| fail("profile_agg", e));
            p.add(price, size, side).unwrap_or_else(|e| fail("profile_agg", e));
            d
        },
        None => {
            let mut p = P::new(tick_size, rows).unwrap_or_else(|e| fail("profile_agg", e));
            p.add(price, size, side).unwrap_or_else(|e| fail("profile_agg", e));
            unsafe { expanded::create(fcinfo, p, "profile_agg") }
        }
    };
    Internal::from(Some(datum))
}

#[pg_extern(immutable, parallel_safe, sql = false)]
fn profile_state_trans_default_rows(
    state: Internal,
    price: Option<f64>,
    size: Option<f64>,
    side: Option<i8>,
    tick_size: Option<f64>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    profile_state_trans(state, price, size, side, tick_size, Some(1), fcinfo)
}

#[pg_extern(immutable, parallel_safe, sql = false)]
fn profile_state_rollup_trans(
    state: Internal,
    value: Option<Profile>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    let Some(v) = value else { return state };
    let datum = match state.unwrap() {
        Some(d) => unsafe {
            let (d, p) = expanded::for_update::<P>(fcinfo, d, "profile rollup");
            p.merge(&v.0).unwrap_or_else(|e| fail("profile rollup", e));
            d
        },
        None => unsafe { expanded::create(fcinfo, v.0, "profile rollup") },
    };
    Internal::from(Some(datum))
}

/// (state, state) -> state: `a` merged with `b`, in place when `a` is the aggregate's own.
#[pg_extern(immutable, parallel_safe, sql = false)]
fn profile_state_combine(a: Internal, b: Internal, fcinfo: pg_sys::FunctionCallInfo) -> Internal {
    let Some(b) = b.unwrap() else { return a };
    let datum = match a.unwrap() {
        Some(a) => unsafe {
            let (d, p) = expanded::for_update::<P>(fcinfo, a, "profile_agg");
            expanded::read::<P, _>(b, |y| p.merge(y)).unwrap_or_else(|e| fail("profile rollup", e));
            d
        },
        None => unsafe { expanded::create(fcinfo, expanded::owned::<P>(b), "profile_agg") },
    };
    Internal::from(Some(datum))
}

/// The profile of a state: its flat form is the profile's stored form.
#[pg_extern(immutable, parallel_safe, sql = false)]
fn profile_state_final(state: Internal) -> Internal {
    let bytes = state.unwrap().map(|d| unsafe { expanded::read::<P, _>(d, P::to_bytes) });
    Internal::from(bytes.map(|b| pg_sys::Datum::from(pgrx::varlena::rust_byte_slice_to_bytea(&b).into_pg())))
}

extension_sql!(
    r#"
CREATE TYPE profile_state;
CREATE FUNCTION profile_state_in(input cstring) RETURNS profile_state
IMMUTABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'profile_state_in_wrapper';
CREATE FUNCTION profile_state_out(state profile_state) RETURNS cstring
IMMUTABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'profile_state_out_wrapper';
CREATE TYPE profile_state (
    INPUT = profile_state_in, OUTPUT = profile_state_out, INTERNALLENGTH = VARIABLE, STORAGE = extended
);
COMMENT ON TYPE profile_state IS
'Transition state of profile_agg() and rollup(profile): a profile being built. Its text form is the hex of its binary form (the profile''s), which Citus ships from the workers'' partial aggregates to the coordinator''s combine.';
CREATE FUNCTION profile_state_trans(state profile_state, price double precision, size double precision, side "char", tick_size double precision, ticks_per_row integer) RETURNS profile_state
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'profile_state_trans_wrapper';
CREATE FUNCTION profile_state_trans_default_rows(state profile_state, price double precision, size double precision, side "char", tick_size double precision) RETURNS profile_state
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'profile_state_trans_default_rows_wrapper';
CREATE FUNCTION profile_state_rollup_trans(state profile_state, value profile) RETURNS profile_state
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'profile_state_rollup_trans_wrapper';
CREATE FUNCTION profile_state_combine(a profile_state, b profile_state) RETURNS profile_state
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'profile_state_combine_wrapper';
CREATE FUNCTION profile_state_final(state profile_state) RETURNS profile
IMMUTABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'profile_state_final_wrapper';
-- SSPACE: what the planner assumed of the internal states, so that plans stay as they were.
CREATE AGGREGATE profile_agg(price double precision, size double precision, side "char", tick_size double precision, ticks_per_row integer) (
    SFUNC = profile_state_trans, STYPE = profile_state, FINALFUNC = profile_state_final,
    COMBINEFUNC = profile_state_combine, SSPACE = 8192, PARALLEL = SAFE
);
CREATE AGGREGATE profile_agg(price double precision, size double precision, side "char", tick_size double precision) (
    SFUNC = profile_state_trans_default_rows, STYPE = profile_state, FINALFUNC = profile_state_final,
    COMBINEFUNC = profile_state_combine, SSPACE = 8192, PARALLEL = SAFE
);
COMMENT ON AGGREGATE profile_agg(double precision, double precision, "char", double precision) IS
'Volume profile of trades: rows are exact tick bins (row = round(price / tick_size) / ticks_per_row), volume split into buy/sell/unknown by side B/S/N. tick_size must be > 0 and the same on every row. Read with poc(), value_area(), levels(), lvns(), hvns(), total_volume(), delta(); combine with rollup() or profile_merge(). Volumes are exact sums, read as their correctly rounded doubles: the same bits in any plan or grouping.';
CREATE AGGREGATE rollup(profile) (
    SFUNC = profile_state_rollup_trans, STYPE = profile_state, FINALFUNC = profile_state_final,
    COMBINEFUNC = profile_state_combine, SSPACE = 8192, PARALLEL = SAFE
);
"#,
    name = "profile_aggregates",
    requires = [Profile]
);

fn method(m: &str) -> VaMethod {
    m.parse().unwrap_or_else(|e| fail("value_area", e))
}

/// Point of control: the price row with the most volume (ties: nearest the profile's centre).
#[pg_extern(immutable, parallel_safe)]
fn poc(p: Profile) -> Option<f64> {
    p.0.poc()
}

/// Value area holding at least `pct` of the volume, built from the POC outwards.
/// `method` 'dalton' adds the larger two-row sum above/below the POC at each step (a tie goes
/// up); 'single' adds one row at a time. Errors: pct outside (0, 1], unknown method.
#[pg_extern(immutable, parallel_safe)]
fn value_area(
    p: Profile,
    pct: default!(f64, 0.70),
    method: default!(&str, "'dalton'"),
) -> TableIterator<
    'static,
    (name!(vah, f64), name!(val, f64), name!(poc, f64), name!(volume, f64), name!(pct_of_total, f64)),
> {
    let va = p.0.try_value_area(pct, self::method(method)).unwrap_or_else(|e| fail("value_area", e));
    TableIterator::new(va.map(|v| (v.vah, v.val, v.poc, v.volume, v.pct_of_total)))
}

/// Value area high (see value_area).
#[pg_extern(immutable, parallel_safe)]
fn vah(p: Profile, pct: default!(f64, 0.70), method: default!(&str, "'dalton'")) -> Option<f64> {
    p.0.try_value_area(pct, self::method(method)).unwrap_or_else(|e| fail("vah", e)).map(|v| v.vah)
}

/// Value area low (see value_area).
#[pg_extern(immutable, parallel_safe)]
fn val(p: Profile, pct: default!(f64, 0.70), method: default!(&str, "'dalton'")) -> Option<f64> {
    p.0.try_value_area(pct, self::method(method)).unwrap_or_else(|e| fail("val", e)).map(|v| v.val)
}

/// POC, VAH, VAL and total volume of a profile in one call (one decode of the profile), as
/// poc(), vah(), val() and total_volume() give them; one row, the value area NULL when the
/// profile holds no volume. Errors: pct outside (0, 1], unknown method.
#[pg_extern(immutable, parallel_safe)]
fn profile_summary(
    p: Profile,
    pct: default!(f64, 0.70),
    method: default!(&str, "'dalton'"),
) -> TableIterator<
    'static,
    (name!(poc, Option<f64>), name!(vah, Option<f64>), name!(val, Option<f64>), name!(volume, f64)),
> {
    let va = p.0.try_value_area(pct, self::method(method)).unwrap_or_else(|e| fail("profile_summary", e));
    TableIterator::once((p.0.poc(), va.map(|v| v.vah), va.map(|v| v.val), p.0.total_volume()))
}

/// One row per price level, ascending.
#[pg_extern(immutable, parallel_safe)]
fn levels(
    p: Profile,
) -> TableIterator<
    'static,
    (
        name!(price, f64),
        name!(total, f64),
        name!(buy, f64),
        name!(sell, f64),
        name!(delta, f64),
        name!(trades, i64),
    ),
> {
    TableIterator::new(
        p.0.levels().into_iter().map(|(price, l)| (price, l.total(), l.buy, l.sell, l.delta(), l.trades)),
    )
}

/// HVNs and LVNs of `p` with the SQL arguments checked; errors are prefixed with `what`.
fn nodes(
    p: &Profile,
    what: &str,
    smooth_rows: i32,
    hvn_ratio: f64,
    lvn_ratio: f64,
    min_prominence: f64,
) -> Nodes {
    if smooth_rows < 1 {
        error!("{what}: smooth_rows must be >= 1, got {smooth_rows}");
    }
    let params = NodeParams { smooth_rows: smooth_rows as u32, hvn_ratio, lvn_ratio, min_prominence };
    p.0.nodes(&params).unwrap_or_else(|e| fail(what, e))
}

/// High-volume nodes: prominent peaks of the profile smoothed over `smooth_rows` rows whose
/// volume is at least `hvn_ratio` × the mean row volume.
#[pg_extern(immutable, parallel_safe)]
fn hvns(
    p: Profile,
    smooth_rows: default!(i32, 3),
    hvn_ratio: default!(f64, 1.25),
    lvn_ratio: default!(f64, 0.5),
    min_prominence: default!(f64, 0.25),
) -> Vec<f64> {
    nodes(&p, "hvns", smooth_rows, hvn_ratio, lvn_ratio, min_prominence).hvns
}

/// Low-volume nodes: the lowest smoothed row between two neighbouring HVNs, when it is at most
/// `lvn_ratio` × the lower of the two.
#[pg_extern(immutable, parallel_safe)]
fn lvns(
    p: Profile,
    smooth_rows: default!(i32, 3),
    hvn_ratio: default!(f64, 1.25),
    lvn_ratio: default!(f64, 0.5),
    min_prominence: default!(f64, 0.25),
) -> Vec<f64> {
    nodes(&p, "lvns", smooth_rows, hvn_ratio, lvn_ratio, min_prominence).lvns
}

#[pg_extern(immutable, parallel_safe)]
fn total_volume(p: Profile) -> f64 {
    p.0.total_volume()
}

#[pg_extern(immutable, parallel_safe, name = "delta")]
fn profile_delta(p: Profile) -> f64 {
    p.0.delta()
}

#[pg_extern(immutable, parallel_safe, name = "trades")]
fn profile_trades(p: Profile) -> i64 {
    p.0.trades()
}

fn side_name(s: Side) -> &'static str {
    match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
        Side::Unknown => "none",
    }
}

fn imbalance_params(ratio: f64, min_volume: f64, min_rows: i32) -> ImbalanceParams {
    if min_rows < 1 {
        error!("min_rows must be >= 1, got {min_rows}");
    }
    let p = ImbalanceParams { ratio, min_volume, stack_rows: min_rows as u32 };
    p.validate().unwrap_or_else(|e| fail("imbalance parameters", e));
    p
}

/// Diagonal footprint imbalances of a bar's profile: buy at p when ask-side (buy) volume at p
/// is >= ratio × bid-side (sell) volume at the row below; sell at p when sell volume at p is
/// >= ratio × buy volume at the row above; both need at least `min_volume`.
#[pg_extern(immutable, parallel_safe)]
fn imbalances(
    p: Profile,
    ratio: default!(f64, 1.5),
    min_volume: default!(f64, 0.0),
) -> TableIterator<
    'static,
    (name!(side, String), name!(price, f64), name!(volume, f64), name!(opposite, f64), name!(ratio, f64)),
> {
    let params = imbalance_params(ratio, min_volume, 3);
    let rows = footprint::imbalances(&p.0, &params).unwrap_or_else(|e| fail("imbalances", e));
    TableIterator::new(
        rows.into_iter().map(|r| (side_name(r.side).to_string(), r.price, r.volume, r.opposite, r.ratio())),
    )
}

/// Stacked imbalances: runs of at least `min_rows` consecutive rows imbalanced the same way.
#[pg_extern(immutable, parallel_safe)]
fn stacked_imbalances(
    p: Profile,
    ratio: default!(f64, 1.5),
    min_volume: default!(f64, 0.0),
    min_rows: default!(i32, 3),
) -> TableIterator<'static, (name!(side, String), name!(low, f64), name!(high, f64), name!(rows, i32))> {
    let params = imbalance_params(ratio, min_volume, min_rows);
    let stacks =
        footprint::stacked_imbalances(&p.0, &params).unwrap_or_else(|e| fail("stacked_imbalances", e));
    TableIterator::new(
        stacks.into_iter().map(|s| (side_name(s.side).to_string(), s.low, s.high, s.rows as i32)),
    )
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// Builds a profile from (price, volume) rows with tick 0.01.
    fn profile_sql(rows: &str) -> String {
        format!("(SELECT tapeflow.profile_agg(p, v, 'B', 0.01) FROM (VALUES {rows}) AS t(p, v))")
    }

    #[pg_test]
    fn dalton_value_area_worked_example() {
        // Volumes by price: 10.00:5, 10.01:10, 10.02:20, 10.03:40 (POC), 10.04:30, 10.05:25,
        // 10.06:10, 10.07:5 -> total 145, 70% target 101.5.
        // Step 0: POC 10.03 -> 40.
        // Step 1: two above 10.04+10.05 = 55 vs two below 10.02+10.01 = 30 -> add above: 95.
        // Step 2: two above 10.06+10.07 = 15 vs two below 30 -> add below: 125 >= 101.5.
        // VA = 10.01 .. 10.05, volume 125.
        let p = profile_sql(
            "(10.00,5),(10.01,10),(10.02,20),(10.03,40),(10.04,30),(10.05,25),(10.06,10),(10.07,5)",
        );
        let (vah, val) =
            Spi::get_two::<f64, f64>(&format!("SELECT vah, val FROM tapeflow.value_area({p})")).unwrap();
        assert_eq!((vah, val), (Some(10.05), Some(10.01)));
        let vol = Spi::get_one::<f64>(&format!("SELECT volume FROM tapeflow.value_area({p})")).unwrap();
        assert_eq!(vol, Some(125.0));
        // One row at a time: 40, +30 (10.04 vs 20) = 70, +25 (10.05 vs 20) = 95, +20 (10.02 vs 10) = 115.
        let (vah, val) = Spi::get_two::<f64, f64>(&format!(
            "SELECT vah, val FROM tapeflow.value_area({p}, pct => 0.70, method => 'single')"
        ))
        .unwrap();
        assert_eq!((vah, val), (Some(10.05), Some(10.02)));
    }

    #[pg_test]
    fn poc_tie_goes_to_the_row_nearest_the_centre() {
        // 10.00 and 10.03 both hold 50; the range 10.00..10.04 has its centre at 10.02.
        let p = profile_sql("(10.00,50),(10.01,10),(10.02,5),(10.03,50),(10.04,10)");
        assert_eq!(Spi::get_one::<f64>(&format!("SELECT tapeflow.poc({p})")).unwrap(), Some(10.03));
    }

    #[pg_test]
    fn levels_conserve_volume_and_split_sides() {
        Spi::run(
            "CREATE TEMP TABLE tr(p float8, v float8, s \"char\");
             INSERT INTO tr VALUES (100.00, 10, 'B'), (100.004, 5, 'S'), (100.01, 7, 'N'), (100.02, 3, 'B');",
        )
        .unwrap();
        let n = Spi::get_one::<i64>(
            "SELECT count(*) FROM tapeflow.levels((SELECT tapeflow.profile_agg(p, v, s, 0.01) FROM tr))",
        )
        .unwrap();
        assert_eq!(n, Some(3));
        let (buy, sell) = Spi::get_two::<f64, f64>(
            "SELECT buy, sell FROM tapeflow.levels((SELECT tapeflow.profile_agg(p, v, s, 0.01) FROM tr)) WHERE price = 100.00",
        )
        .unwrap();
        assert_eq!((buy, sell), (Some(10.0), Some(5.0)));
        let total = Spi::get_one::<f64>(
            "SELECT sum(total) FROM tapeflow.levels((SELECT tapeflow.profile_agg(p, v, s, 0.01) FROM tr))",
        )
        .unwrap();
        assert_eq!(total, Some(25.0));
    }

    #[pg_test(error = "profile_agg: price must be positive, got -1")]
    fn negative_price_is_an_error() {
        Spi::run("SELECT tapeflow.profile_agg(-1, 1, 'B', 0.01)").unwrap();
    }

    #[pg_test(error = "value_area: unknown value-area method 'cbot' (valid: dalton, single)")]
    fn unknown_method_is_an_error() {
        let p = profile_sql("(10.00,5)");
        Spi::run(&format!("SELECT * FROM tapeflow.value_area({p}, 0.7, 'cbot')")).unwrap();
    }

    #[pg_test]
    fn rollup_of_parts_equals_whole_and_parallel_equals_serial() {
        // Decimal sizes (thousandths): float sums of these depend on the order they are added
        // in, exact sums do not, so the text forms must match to the last bit.
        Spi::run(
            "CREATE TABLE pt AS SELECT 50 + ((i::bigint * 7919) % 400) / 100.0 AS price, ((1 + i % 13) / 1000.0)::float8 AS size,
                    (CASE WHEN i % 2 = 0 THEN 'B' ELSE 'S' END)::\"char\" AS side, i % 60 AS minute
             FROM generate_series(1, 200000) i; ANALYZE pt;",
        )
        .unwrap();
        let whole_q = "SELECT tapeflow.profile_agg(price, size, side, 0.01)::text FROM pt";
        Spi::run("SET max_parallel_workers_per_gather = 0").unwrap();
        let whole = Spi::get_one::<String>(whole_q).unwrap().unwrap();
        let parts = Spi::get_one::<String>(
            "SELECT tapeflow.rollup(p)::text FROM (SELECT tapeflow.profile_agg(price, size, side, 0.01) p FROM pt GROUP BY minute) m",
        )
        .unwrap()
        .unwrap();
        assert_eq!(whole, parts);
        Spi::run(
            "SET max_parallel_workers_per_gather = 4; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
             SET min_parallel_table_scan_size = 0;",
        )
        .unwrap();
        let plan = Spi::get_one::<pgrx::Json>(&format!("EXPLAIN (FORMAT JSON) {whole_q}")).unwrap().unwrap();
        assert!(plan.0.to_string().contains("\"Partial Mode\":\"Partial\""), "not parallel: {}", plan.0);
        let parallel = Spi::get_one::<String>(whole_q).unwrap().unwrap();
        assert_eq!(whole, parallel);
    }

    #[pg_test]
    fn profile_state_text_form_round_trips_through_the_combine() {
        // What Citus does: partial states shipped as text, read back and combined.
        Spi::run(
            "CREATE AGGREGATE pstate(float8, float8, \"char\", float8) (
                 SFUNC = tapeflow.profile_state_trans_default_rows, STYPE = tapeflow.profile_state);
             CREATE AGGREGATE pcombine(tapeflow.profile_state) (SFUNC = tapeflow.profile_state_combine,
                 STYPE = tapeflow.profile_state, FINALFUNC = tapeflow.profile_state_final);
             CREATE TEMP TABLE tr AS SELECT (10 + (i % 50) / 100.0)::float8 AS p, ((i % 7 + 1) / 1000.0)::float8 AS v,
                    (CASE WHEN i % 2 = 0 THEN 'B' ELSE 'S' END)::\"char\" AS s, i % 3 AS k
             FROM generate_series(1, 3000) i;",
        )
        .unwrap();
        let via_text = Spi::get_one::<String>(
            "SELECT pcombine(t::tapeflow.profile_state)::text FROM (SELECT pstate(p, v, s, 0.01)::text t FROM tr GROUP BY k) parts",
        )
        .unwrap()
        .unwrap();
        let whole = Spi::get_one::<String>("SELECT tapeflow.profile_agg(p, v, s, 0.01)::text FROM tr")
            .unwrap()
            .unwrap();
        assert_eq!(via_text, whole);
    }

    #[pg_test]
    fn stacked_buy_imbalance() {
        // Buy volume at 10.01..10.03 each >= 150% of sell volume one row below.
        Spi::run(
            "CREATE TEMP TABLE fp(p float8, v float8, s \"char\");
             INSERT INTO fp VALUES (10.00, 10, 'S'), (10.01, 30, 'B'), (10.01, 10, 'S'), (10.02, 30, 'B'),
                                   (10.02, 10, 'S'), (10.03, 30, 'B'), (10.03, 50, 'S'), (10.04, 5, 'B');",
        )
        .unwrap();
        let (low, high) = Spi::get_two::<f64, f64>(
            "SELECT low, high FROM tapeflow.stacked_imbalances((SELECT tapeflow.profile_agg(p, v, s, 0.01) FROM fp)) WHERE side = 'buy'",
        )
        .unwrap();
        assert_eq!((low, high), (Some(10.01), Some(10.03)));
    }
}
