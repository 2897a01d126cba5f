-- Volume-profile benchmark: profile_agg against the equivalent plain-SQL GROUP BY over the
-- same ticks, in the same run, and a full-day session profile read from one-minute rollups.
-- Run with bench/run.sh (it creates a scratch database). Rows: :ticks (default 10M).
\set ON_ERROR_STOP on
\pset pager off
SET client_min_messages = warning;
\if :{?ticks}
\else
  \set ticks 10000000
\endif

DROP TABLE IF EXISTS bench_ticks;
CREATE UNLOGGED TABLE bench_ticks AS
SELECT timestamptz '2024-03-04 14:30+00' + i * interval '2 ms' AS time,
       -- A price on a 0.01 grid that drifts over the day and swings within minutes (a few
       -- cents of noise per trade, like a liquid stock), with heavy-tailed sizes.
       round((100 + 3 * sin(i / 400000.0) + 0.4 * sin(i / 9000.0) + ((i * 7919) % 9 - 4) / 100.0)::numeric, 2)::float8 AS price,
       (1 + (i % 7) * (i % 13) + CASE WHEN i % 97 = 0 THEN 500 ELSE 0 END)::float8 AS size,
       (CASE WHEN (i * 31) % 5 < 3 THEN 'B' ELSE 'S' END)::"char" AS side
FROM generate_series(1::bigint, :ticks) i;
VACUUM ANALYZE bench_ticks;

CREATE TEMP TABLE bench_results (name text, run int, ms float8);

-- One timed run of a query: EXPLAIN ANALYZE's execution time, result discarded.
CREATE OR REPLACE FUNCTION pg_temp.timed(q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
    plan json;
BEGIN
    EXECUTE 'EXPLAIN (ANALYZE, FORMAT JSON, TIMING OFF) ' || q INTO plan;
    RETURN (plan -> 0 ->> 'Execution Time')::float8;
END $$;

DO $$
DECLARE
    r int;
BEGIN
    FOR r IN 1..3 LOOP
        INSERT INTO bench_results SELECT 'plain SQL GROUP BY', r, pg_temp.timed(
            $q$SELECT round(price / 0.01)::bigint AS row, sum(size) AS total,
                      sum(size) FILTER (WHERE side = 'B') AS buy, sum(size) FILTER (WHERE side = 'S') AS sell,
                      count(*) AS trades
               FROM bench_ticks GROUP BY 1$q$);
        INSERT INTO bench_results SELECT 'tapeflow.profile_agg', r, pg_temp.timed(
            $q$SELECT tapeflow.profile_agg(price, size, side, 0.01) FROM bench_ticks$q$);
    END LOOP;
END $$;

\echo
\echo 'profile over' :ticks 'ticks (median of 3 runs; both may use parallel workers)'
SELECT name, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS median_ms,
       round((:ticks / (percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) / 1000) / 1e6)::numeric, 2) AS million_ticks_per_s
FROM bench_results GROUP BY name ORDER BY name;
SELECT round((max(m) FILTER (WHERE name = 'plain SQL GROUP BY') / max(m) FILTER (WHERE name = 'tapeflow.profile_agg'))::numeric, 2)
       AS "profile_agg speed vs GROUP BY (x)"
FROM (SELECT name, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS m FROM bench_results GROUP BY name) s;

-- A full trading day (390 minutes) through the real ingest path: ticks -> one-minute rollups.
INSERT INTO tapeflow.symbols (symbol, tick_size) VALUES ('BENCH', 0.01) ON CONFLICT DO NOTHING;
DELETE FROM tapeflow.ticks WHERE symbol = 'BENCH';
INSERT INTO tapeflow.ticks (time, symbol, price, size, side, trade_id)
SELECT timestamptz '2024-03-04 14:30+00' + (i * 390 * 60 / 200000.0) * interval '1 second', 'BENCH', price, size, side, i::text
FROM (SELECT row_number() OVER () AS i, price, size, side FROM bench_ticks LIMIT 200000) t;

TRUNCATE bench_results;
DO $$
DECLARE
    r int;
BEGIN
    FOR r IN 1..20 LOOP
        INSERT INTO bench_results SELECT 'session profile from minute rollups', r, pg_temp.timed(
            $q$SELECT tapeflow.poc(p), (tapeflow.value_area(p)).vah FROM (SELECT tapeflow.session_profile('BENCH', date '2024-03-04') p) s$q$);
        INSERT INTO bench_results SELECT 'same profile rescanning the ticks', r, pg_temp.timed(
            $q$SELECT tapeflow.poc(p) FROM (SELECT tapeflow.profile_agg(price, size, side, 0.01) p FROM tapeflow.ticks
               WHERE symbol = 'BENCH' AND time >= '2024-03-04 14:30+00' AND time < '2024-03-05 14:30+00') s$q$);
    END LOOP;
END $$;
\echo
\echo 'full-day session profile (390 one-minute rollups, 200,000 ticks; median of 20 runs)'
SELECT name, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2) AS median_ms
FROM bench_results GROUP BY name ORDER BY name;
DELETE FROM tapeflow.ticks WHERE symbol = 'BENCH';
DROP TABLE bench_ticks;
