-- Core fixes. Every statement here can run again (the extension refresh re-applies the
-- migrations after 001 on an existing database).

-- Daily bars are trading sessions: a 1d bar starts at the session open in the symbol's
-- timezone (a Euro FX future's at 17:00 New York, a US stock's at 09:30) and holds the trades
-- up to the next open, as tapeflow.session_date() and session_bounds() define the session.
-- Candles, order flow (whose session column then names the bar's own session), footprints,
-- developing profiles, the bar engine's 1d bars and the watchlist's trading day all take
-- their bars from here. Intraday bars are aligned to the session open as before.
CREATE OR REPLACE FUNCTION tapeflow.bar_start(ts timestamptz, timeframe text, tz text, session_open time)
    RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN timeframe = '1d'
        THEN (tapeflow.session_date(ts, tz, session_open) + session_open) AT TIME ZONE tz
        ELSE date_bin(tapeflow.timeframe_interval(timeframe), ts AT TIME ZONE tz,
                      date_trunc('day', ts AT TIME ZONE tz) + session_open) AT TIME ZONE tz
    END;
$$;
COMMENT ON FUNCTION tapeflow.bar_start(timestamptz, text, text, time) IS
'Start of the bar of timeframe holding ts for a symbol with timezone tz and session_open: intraday bars are aligned to the session open in tz; a 1d bar is the trading session (from one session open to the next).';

-- Quotes are stored once. None of the project's providers numbers its quotes (the demo's,
-- Alpaca's, TAQ's: a time, a venue and the book), and one venue can publish two different
-- books within a microsecond, so a quote is identified by all it says: symbol, time, exchange
-- (NULL equal to NULL) and bid, ask and their sizes. Two identical quotes of one instant and
-- venue carry nothing the first did not, so a replayed batch (a feed retrying after a lost
-- connection, or restarting) is a no-op under INSERT ... ON CONFLICT DO NOTHING, as for ticks.
-- Duplicates stored before the key are removed, keeping one of each. The key leads with
-- (symbol, time), so it also serves the as-of lookups the old quotes_symbol_time index did.
DO $$
BEGIN
    IF to_regclass('tapeflow.quotes_unique') IS NULL THEN
        DELETE FROM tapeflow.quotes q
        USING (SELECT tableoid, ctid,
                      row_number() OVER (PARTITION BY symbol, time, exchange, bid, ask, bid_size, ask_size) AS n
               FROM tapeflow.quotes) d
        WHERE q.tableoid = d.tableoid AND q.ctid = d.ctid AND d.n > 1;
        CREATE UNIQUE INDEX quotes_unique ON tapeflow.quotes (symbol, time, exchange, bid, ask, bid_size, ask_size)
            NULLS NOT DISTINCT;
        DROP INDEX IF EXISTS tapeflow.quotes_symbol_time;
    END IF;
END $$;
COMMENT ON TABLE tapeflow.quotes IS 'Top of book. A quote is stored once: (symbol, time, exchange, bid, ask, bid_size, ask_size) is unique, exchange NULL counting as one venue, so a replayed batch adds nothing.';
