-- Backtest throughput: 30 symbols x one year of generated one-minute bars (regular US
-- sessions of 2023), run from psql through tapeflow.backtest(). Baseline in the same run:
-- reading the same bars and building their candles without simulating anything.
\set ON_ERROR_STOP on
\pset pager off
SET client_min_messages = warning;

INSERT INTO tapeflow.symbols (symbol, tick_size)
SELECT 'BT' || lpad(k::text, 2, '0'), 0.01 FROM generate_series(1, 30) k ON CONFLICT DO NOTHING;

-- A deterministic path per symbol: a slow trend, intraday swings and bar-to-bar noise.
CREATE OR REPLACE FUNCTION pg_temp.px(k int, d int, m int) RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
    SELECT round((50 + 2 * k + 8 * sin(d / 23.0 + k) + 1.5 * sin(m / 37.0 + d * 0.7 + k)
                  + 0.4 * sin(m * 1.9 + d + k * 3.1))::numeric, 2)::float8
$$;
INSERT INTO tapeflow.bars_1m_imported (symbol, bucket, open, high, low, close, volume)
SELECT 'BT' || lpad(k::text, 2, '0'),
       (day + time '09:30' + m * interval '1 minute') AT TIME ZONE 'America/New_York',
       o, greatest(o, c) + 0.03, least(o, c) - 0.03, c, 1000 + (m * 37 + k * 11) % 900
FROM generate_series(1, 30) k,
     (SELECT d::date AS day, row_number() OVER (ORDER BY d)::int AS dn
      FROM generate_series(date '2023-01-02', date '2023-12-29', interval '1 day') d
      WHERE extract(isodow FROM d) < 6) days,
     generate_series(0, 389) m,
     LATERAL (SELECT pg_temp.px(k, dn, m - 1) AS o, pg_temp.px(k, dn, m) AS c) p
ON CONFLICT DO NOTHING;
ANALYZE tapeflow.bars_1m_imported;

CREATE TEMP TABLE bench_results (what text, seconds float8, bars bigint, trades bigint);
DO $$
DECLARE
    t0 timestamptz;
    n bigint;
    tr bigint;
    closes float8;
    syms text[] := (SELECT array_agg(symbol ORDER BY symbol) FROM tapeflow.symbols WHERE symbol LIKE 'BT%');
BEGIN
    t0 := clock_timestamp();
    -- sum() makes every candle be built and read (a bare count(*) lets the planner skip them).
    SELECT count(*), sum(tapeflow.close(candle)) INTO n, closes FROM tapeflow.minute_bars WHERE symbol = ANY (syms);
    INSERT INTO bench_results VALUES ('baseline: read the bars and build their candles',
        extract(epoch FROM clock_timestamp() - t0), n, NULL);
    t0 := clock_timestamp();
    SELECT count(*) INTO tr FROM tapeflow.backtest(syms, '2023-01-01', '2024-01-01');
    INSERT INTO bench_results VALUES ('tapeflow.backtest, 30 symbols x 2023', extract(epoch FROM clock_timestamp() - t0), n, tr);
    -- The same run with the bar engines on one thread (tapeflow.backtest_threads; the default
    -- uses one per core).
    PERFORM set_config('tapeflow.backtest_threads', '1', true);
    t0 := clock_timestamp();
    SELECT count(*) INTO tr FROM tapeflow.backtest(syms, '2023-01-01', '2024-01-01');
    INSERT INTO bench_results VALUES ('the same, backtest_threads = 1', extract(epoch FROM clock_timestamp() - t0), n, tr);
END $$;
\echo
\echo 'backtest throughput (one-minute bars, end to end from psql)'
SELECT current_setting('tapeflow.backtest_threads') AS backtest_threads_setting;
SELECT what, bars, trades, round(seconds::numeric, 2) AS seconds, round((bars / seconds)::numeric) AS bars_per_second
FROM bench_results;
