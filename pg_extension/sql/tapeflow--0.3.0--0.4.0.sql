-- tapeflow 0.3.0 -> 0.4.0. Applied by ALTER EXTENSION tapeflow UPDATE, with the 0.4.0 library
-- already installed.
--
-- New: the TimescaleDB path's tick insert triggers gather each symbol's newest minute row by
-- row (ticks_statement_begin, ticks_row_gather) and hand it to the statement trigger
-- (statement_newest_minutes), instead of a transition table (sql/026). Nothing is dropped.
--
-- tests/tests/extension_upgrade.rs checks that a database upgraded with this script has exactly
-- the objects of a fresh 0.4.0 install.

CREATE FUNCTION "statement_newest_minutes"() RETURNS TABLE (
	"symbol" TEXT,
	"bucket" timestamp with time zone,
	"candle" Candle,
	"times" timestamp with time zone[],
	"trade_ids" TEXT[]
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'statement_newest_minutes_wrapper';

CREATE FUNCTION "ticks_statement_begin"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'ticks_statement_begin_wrapper';

CREATE FUNCTION "ticks_row_gather"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'ticks_row_gather_wrapper';
