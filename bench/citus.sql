-- Scale-out benchmark (bench/run.sh citus): the same :ticks ticks of 10 symbols written into
-- tapeflow.ticks (the tick triggers maintain bars_1m) and the same profiles read back, on the
-- database psql is connected to; run.sh runs it on one server and on the Citus coordinator.
\set ON_ERROR_STOP on
\pset pager off
SET client_min_messages = warning;
\if :{?ticks}
\else
  \set ticks 10000000
\endif

INSERT INTO tapeflow.symbols (symbol, tick_size, asset_class, timezone, session_open, session_close)
SELECT 'S' || s, 0.01, 'crypto', 'UTC', '00:00', '00:00' FROM generate_series(0, 9) s;

-- One statement per symbol and hour-long slice: 10 symbols, a trade every 2 ms each.
\timing on
DO $$
DECLARE
    per_symbol bigint := current_setting('bench.ticks')::bigint / 10;
    chunk bigint := 200000;
    s int;
    lo bigint;
BEGIN
    FOR s IN 0..9 LOOP
        lo := 0;
        WHILE lo < per_symbol LOOP
            INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
            SELECT timestamptz '2024-03-04 00:00+00' + i * interval '2 ms', 'S' || s,
                   round((100 + s + 3 * sin(i / 400000.0) + 0.4 * sin(i / 9000.0) + ((i * 7919) % 9 - 4) / 100.0)::numeric, 2)::float8,
                   (1 + (i % 7) * (i % 13) + CASE WHEN i % 97 = 0 THEN 500 ELSE 0 END)::float8,
                   (CASE WHEN (i * 31) % 5 < 3 THEN 'B' ELSE 'S' END)::"char", i::text
            FROM generate_series(lo, least(lo + chunk, per_symbol) - 1) i;
            lo := lo + chunk;
            COMMIT;
        END LOOP;
    END LOOP;
END $$;
\timing off
ANALYZE tapeflow.ticks;

CREATE TEMP TABLE bench_results (name text, run int, ms float8);
CREATE OR REPLACE FUNCTION pg_temp.timed(q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
BEGIN
    t0 := clock_timestamp();
    EXECUTE q;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END $$;

DO $$
DECLARE
    r int;
BEGIN
    FOR r IN 1..3 LOOP
        INSERT INTO bench_results SELECT 'one symbol: profile_agg over its ticks', r, pg_temp.timed(
            $q$SELECT tapeflow.poc(tapeflow.profile_agg(price, size, side, 0.01)) FROM tapeflow.ticks WHERE symbol = 'S3'$q$);
        INSERT INTO bench_results SELECT 'one symbol: composite profile from bars_1m', r, pg_temp.timed(
            $q$SELECT tapeflow.poc(tapeflow.composite_profile('S3', '2024-03-04', '2024-03-06'))$q$);
        INSERT INTO bench_results SELECT 'every symbol: profile_agg ... GROUP BY symbol', r, pg_temp.timed(
            $q$SELECT symbol, tapeflow.poc(tapeflow.profile_agg(price, size, side, 0.01)) FROM tapeflow.ticks GROUP BY symbol$q$);
        INSERT INTO bench_results SELECT 'across symbols: rollup of per-symbol profiles', r, pg_temp.timed(
            $q$SELECT tapeflow.poc(tapeflow.rollup(p)) FROM (SELECT symbol, tapeflow.profile_agg(price, size, side, 0.01) p
                                                         FROM tapeflow.ticks GROUP BY symbol) s$q$);
        INSERT INTO bench_results SELECT 'across symbols: one profile_agg', r, pg_temp.timed(
            $q$SELECT tapeflow.poc(tapeflow.profile_agg(price, size, side, 0.01)) FROM tapeflow.ticks$q$);
        INSERT INTO bench_results SELECT 'across symbols: rollup of bars_1m profiles', r, pg_temp.timed(
            $q$SELECT tapeflow.poc(tapeflow.rollup(profile)) FROM tapeflow.bars_1m$q$);
    END LOOP;
END $$;
SELECT name, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS median_ms,
       round(min(ms)::numeric, 1) AS min_ms
FROM bench_results GROUP BY name ORDER BY min(run), name;
-- The answers, for comparing the two runs.
SELECT md5(string_agg(p, '' ORDER BY symbol)) AS profiles_md5 FROM (
    SELECT symbol, tapeflow.profile_agg(price, size, side, 0.01)::text AS p FROM tapeflow.ticks GROUP BY symbol) s;
SELECT md5(tapeflow.rollup(profile)::text) AS all_bars_md5, count(*) AS minutes FROM tapeflow.bars_1m;
