-- Arbitrage scan throughput: 5,000 synthetic binary markets (BENCH_MARKETS), two tokens each,
-- 20 levels a side on a 0.001 grid, fee rates of the published schedules; one market in ten
-- priced so that buying both pays after fees, one in twenty so that selling both does.
-- tapeflow.arbitrage_scan() over all of them, timed, beside plain SQL over the same books in
-- the same run: (a) the top-of-book sum of asks per market (what the predecessor looked at),
-- (b) every level of every book read and summed. Markets per second = markets / seconds.
\set ON_ERROR_STOP on
\pset pager off
SET client_min_messages = warning;
\if :{?markets}
\else
\set markets 5000
\endif

-- Loading without the trigger: the scan is what is measured here (the latency of the trigger
-- path is measured by tests/examples/arbitrage_bench.rs).
UPDATE tapeflow.arbitrage_settings SET enabled = false;

INSERT INTO tapeflow.polymarket_markets (condition_id, question, fee_rate)
SELECT 'bench-' || k, 'Synthetic market ' || k || '?', (ARRAY[0, 0.03, 0.04, 0.072])[1 + k % 4]
FROM generate_series(1, :markets) k;
INSERT INTO tapeflow.polymarket_tokens (token_id, condition_id, outcome, outcome_index)
SELECT 'bench-' || k || '-' || o, 'bench-' || k, (ARRAY['Yes', 'No'])[o + 1], o
FROM generate_series(1, :markets) k, generate_series(0, 1) o;

-- YES best ask q (0.100 … 0.869), NO best ask 1 − q + gap: gap −0.012 for one market in ten
-- (a buy-both edge of 0.012 a pair before fees), else 0.005 … 0.020. Bids 0.012 under the
-- asks (bid sums below 1), except one market in twenty whose YES bid is q − 0.002 and NO bid
-- 1 − q + 0.012 (bids summing to 1.010). Sizes 10 … 499 shares, deterministic.
WITH m AS (
    SELECT k, 0.100 + ((k * 7919) % 770) / 1000.0 AS q,
           CASE WHEN k % 10 = 0 THEN -0.012 WHEN k % 20 = 5 THEN 0.020
                ELSE 0.005 + ((k * 31) % 16) / 1000.0 END AS gap
    FROM generate_series(1, :markets) k
), tops AS (
    SELECT k, 0 AS o, q AS ask, CASE WHEN k % 20 = 5 THEN q - 0.002 ELSE q - 0.012 END AS bid FROM m
    UNION ALL
    SELECT k, 1, 1 - q + gap, CASE WHEN k % 20 = 5 THEN 1 - q + 0.012 ELSE 1 - q + gap - 0.012 END FROM m
)
INSERT INTO tapeflow.polymarket_books (token_id, condition_id, bid_prices, bid_sizes, ask_prices, ask_sizes)
SELECT 'bench-' || k || '-' || o, 'bench-' || k,
       array(SELECT round(bid - i * 0.001, 3) FROM generate_series(0, 19) i ORDER BY i),
       array(SELECT (10 + (k * 13 + i * 97 + o * 7) % 490)::numeric FROM generate_series(0, 19) i ORDER BY i),
       array(SELECT round(ask + i * 0.001, 3) FROM generate_series(0, 19) i ORDER BY i),
       array(SELECT (10 + (k * 17 + i * 89 + o * 5) % 490)::numeric FROM generate_series(0, 19) i ORDER BY i)
FROM tops;
ANALYZE tapeflow.polymarket_markets, tapeflow.polymarket_tokens, tapeflow.polymarket_books;
UPDATE tapeflow.arbitrage_settings SET enabled = true, min_edge = 0;

CREATE TEMP TABLE bench_results (what text, seconds float8, rows bigint);
DO $$
DECLARE
    t0 timestamptz;
    n bigint;
    best float8;
    runs int := 5;
BEGIN
    -- Best of five runs each, after one warm-up run of each.
    PERFORM count(*) FROM tapeflow.arbitrage_scan();
    PERFORM sum(p) FROM tapeflow.polymarket_books, unnest(bid_prices || ask_prices || bid_sizes || ask_sizes) p;
    best := 'Infinity';
    FOR i IN 1 .. runs LOOP
        t0 := clock_timestamp();
        SELECT count(*) INTO n FROM tapeflow.arbitrage_scan();
        best := least(best, extract(epoch FROM clock_timestamp() - t0));
    END LOOP;
    INSERT INTO bench_results VALUES ('tapeflow.arbitrage_scan()', best, n);

    best := 'Infinity';
    FOR i IN 1 .. runs LOOP
        t0 := clock_timestamp();
        SELECT count(*) INTO n FROM (
            SELECT condition_id FROM tapeflow.polymarket_books GROUP BY condition_id
            HAVING sum(best_ask) < 1) s;
        best := least(best, extract(epoch FROM clock_timestamp() - t0));
    END LOOP;
    INSERT INTO bench_results VALUES ('plain SQL: best-ask sum per market', best, n);

    best := 'Infinity';
    FOR i IN 1 .. runs LOOP
        t0 := clock_timestamp();
        SELECT count(*) INTO n FROM tapeflow.polymarket_books b,
            unnest(b.bid_prices || b.ask_prices || b.bid_sizes || b.ask_sizes) p WHERE p > 0;
        best := least(best, extract(epoch FROM clock_timestamp() - t0));
    END LOOP;
    INSERT INTO bench_results VALUES ('plain SQL: every level of every book read', best, n);
END $$;

\echo
\echo Arbitrage scan over :markets markets, 20 levels a side (best of 5 runs)
SELECT what, round(seconds::numeric * 1000, 1) AS ms, rows,
       round(:markets / seconds) AS markets_per_s,
       round((seconds / (SELECT seconds FROM bench_results WHERE what LIKE 'plain SQL: every%'))::numeric, 2)
           AS x_full_read
FROM bench_results;
SELECT kind, count(*) AS opportunities, round(avg(size), 1) AS avg_size, round(avg(edge), 4) AS avg_edge,
       round(sum(profit), 2) AS total_profit
FROM tapeflow.arbitrage_scan() GROUP BY kind ORDER BY kind;
