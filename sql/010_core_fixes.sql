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
