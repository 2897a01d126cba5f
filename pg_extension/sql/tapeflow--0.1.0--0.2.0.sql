-- tapeflow 0.1.0 -> 0.2.0. Applied by ALTER EXTENSION tapeflow UPDATE, with the 0.2.0 library
-- already installed.
--
-- Stored values: candles and profiles are now written in version 2 of their binary forms
-- (exact sums of volume and notional). Version 1 values written by 0.1.0 stay as they are and
-- are read by the 0.2.0 library as the exact values of their stored doubles, so nothing is
-- rewritten here; a value is written again in version 2 when it is next changed (a late
-- trade merged into a minute, a rollup stored anew).
--
-- Objects: what 0.2.0 adds to 0.1.0's. tests/tests/extension_upgrade.rs checks that a database
-- upgraded with this script has exactly the objects of a fresh 0.2.0 install.

-- Buy/sell pressure and the session cumulative delta, as the bar engine computes them.
CREATE FUNCTION "buy_pressure"(
	"buy_volume" double precision,
	"sell_volume" double precision
) RETURNS double precision
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'buy_pressure_wrapper';

CREATE FUNCTION "sell_pressure"(
	"buy_volume" double precision,
	"sell_volume" double precision
) RETURNS double precision
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'sell_pressure_wrapper';

CREATE FUNCTION "session_cvd_trans"(
	"state" internal,
	"session" date,
	"buy_volume" double precision,
	"sell_volume" double precision
) RETURNS internal
IMMUTABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'session_cvd_trans_wrapper';

CREATE FUNCTION "session_cvd_final"(
	"state" internal
) RETURNS double precision
IMMUTABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'session_cvd_final_wrapper';

CREATE AGGREGATE session_cvd(session date, buy_volume double precision, sell_volume double precision) (
    SFUNC = session_cvd_trans, STYPE = internal, FINALFUNC = session_cvd_final, FINALFUNC_MODIFY = READ_ONLY
);
COMMENT ON AGGREGATE session_cvd(date, double precision, double precision) IS
'Cumulative delta (buy - sell volume) restarting whenever session differs from the previous row''s, as a window aggregate: session_cvd(session, buy_volume, sell_volume) OVER (ORDER BY time ROWS UNBOUNDED PRECEDING). A NULL session is a session too (a constant NULL never restarts); NULL volumes count as 0. Order by a unique key with ROWS framing, or peers share one answer. Errors: a volume that is NaN, infinite or negative.';

-- Exact sums: the aggregates say so.
COMMENT ON AGGREGATE candle_agg(timestamptz, double precision, double precision, "char") IS
'OHLCV summary of trades (time, price, size, aggressor side B/S/N). Rows with NULL time/price/size are skipped; NaN, infinite or non-positive prices and negative sizes raise an error. Read with open(), high(), low(), close(), volume(), buy_volume(), sell_volume(), trades(), vwap(), delta(); combine with rollup(). Volumes and notional are exact sums, read as their correctly rounded doubles: the same bits in any plan or grouping.';
COMMENT ON AGGREGATE rollup(candle) IS 'Re-aggregates candle summaries, e.g. one-minute candles into hours; exactly, so any grouping gives the same candle.';
COMMENT ON AGGREGATE profile_agg(double precision, double precision, "char", double precision) IS
'Volume profile of trades: rows are exact tick bins (row = round(price / tick_size) / ticks_per_row), volume split into buy/sell/unknown by side B/S/N. tick_size must be > 0 and the same on every row. Read with poc(), value_area(), levels(), lvns(), hvns(), total_volume(), delta(); combine with rollup() or profile_merge(). Volumes are exact sums, read as their correctly rounded doubles: the same bits in any plan or grouping.';

-- Polymarket arbitrage over the current books (pg_extension/src/polymarket.rs).
CREATE FUNCTION "arbitrage"(
	"condition_id" TEXT,
	"min_edge" NUMERIC DEFAULT NULL,
	"min_size" NUMERIC DEFAULT NULL,
	"max_size" NUMERIC DEFAULT NULL
) RETURNS TABLE (
	"kind" TEXT,
	"market_key" TEXT,
	"condition_id" TEXT,
	"size" NUMERIC,
	"edge" NUMERIC,
	"profit" NUMERIC,
	"notional" NUMERIC,
	"fees" NUMERIC,
	"legs" jsonb
)
STABLE
LANGUAGE c
AS 'MODULE_PATHNAME', 'arbitrage_wrapper';

CREATE FUNCTION "arbitrage_scan"(
	"markets" TEXT[] DEFAULT NULL,
	"min_edge" NUMERIC DEFAULT NULL,
	"min_size" NUMERIC DEFAULT NULL,
	"max_size" NUMERIC DEFAULT NULL
) RETURNS TABLE (
	"kind" TEXT,
	"market_key" TEXT,
	"condition_id" TEXT,
	"size" NUMERIC,
	"edge" NUMERIC,
	"profit" NUMERIC,
	"notional" NUMERIC,
	"fees" NUMERIC,
	"legs" jsonb
)
STABLE
LANGUAGE c
AS 'MODULE_PATHNAME', 'arbitrage_scan_wrapper';

