-- tapeflow 0.2.0 -> 0.3.0. Applied by ALTER EXTENSION tapeflow UPDATE, with the 0.3.0 library
-- already installed.
--
-- profile_agg, candle_agg and their rollup() aggregates get a transition state of an SQL type
-- (profile_state, candle_state) instead of `internal`, so that Citus aggregates them partially
-- on the workers and combines the states on the coordinator. The aggregates are recreated;
-- nothing in the schema's migrations depends on them but function bodies, which name them and
-- are not bound to them. Stored candles and profiles are untouched. The library keeps the
-- functions of the `internal` states dropped here, for databases not yet upgraded.
--
-- tests/tests/extension_upgrade.rs checks that a database upgraded with this script has exactly
-- the objects of a fresh 0.3.0 install.

DROP AGGREGATE profile_agg(double precision, double precision, "char", double precision, integer);
DROP AGGREGATE profile_agg(double precision, double precision, "char", double precision);
DROP AGGREGATE rollup(profile);
DROP AGGREGATE candle_agg(timestamptz, double precision, double precision, "char");
DROP AGGREGATE candle_agg(timestamptz, double precision, double precision);
DROP AGGREGATE rollup(candle);

DROP FUNCTION profile_trans(internal, double precision, double precision, "char", double precision, integer);
DROP FUNCTION profile_trans_default_rows(internal, double precision, double precision, "char", double precision);
DROP FUNCTION profile_rollup_trans(internal, profile);
DROP FUNCTION profile_combine(internal, internal);
DROP FUNCTION profile_serialize(internal);
DROP FUNCTION profile_deserialize(bytea, internal);
DROP FUNCTION profile_final(internal);
DROP FUNCTION candle_trans(internal, timestamptz, double precision, double precision, "char");
DROP FUNCTION candle_trans_noside(internal, timestamptz, double precision, double precision);
DROP FUNCTION candle_rollup_trans(internal, candle);
DROP FUNCTION candle_combine(internal, internal);
DROP FUNCTION candle_serialize(internal);
DROP FUNCTION candle_deserialize(bytea, internal);
DROP FUNCTION candle_final(internal);

-- As a fresh 0.3.0 install creates them.
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
