-- Buy/sell pressure and the session cumulative delta have one definition: the extension's
-- (tapeflow_analytics::flow, which the bar engine uses for market_state and the strategy).
-- 004 wrote them out again in SQL; here the SQL functions call the extension instead, so
-- order_flow() and market_state_history() cannot drift apart. Results are unchanged.

CREATE OR REPLACE FUNCTION tapeflow.buy_pressure(c tapeflow.candle) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN tapeflow.buy_pressure(tapeflow.buy_volume(c), tapeflow.sell_volume(c));
COMMENT ON FUNCTION tapeflow.buy_pressure(tapeflow.candle) IS 'Buy volume as % of classified (buy + sell) volume; 50 when none is classified.';
CREATE OR REPLACE FUNCTION tapeflow.sell_pressure(c tapeflow.candle) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN tapeflow.sell_pressure(tapeflow.buy_volume(c), tapeflow.sell_volume(c));
COMMENT ON FUNCTION tapeflow.sell_pressure(tapeflow.candle) IS 'Sell volume as % of classified (buy + sell) volume; 50 when none is classified.';

-- Order flow per bar: volume split, delta, pressures and cumulative delta. With
-- session_reset (the default) the CVD restarts at each session open and counts from the
-- session's start even when "from" is mid-session; without it, it accumulates from "from".
CREATE OR REPLACE FUNCTION tapeflow.order_flow(
    symbol text, timeframe text, "from" timestamptz, "to" timestamptz, session_reset boolean DEFAULT true)
RETURNS TABLE ("time" timestamptz, session date, volume double precision, buy_volume double precision,
               sell_volume double precision, delta double precision, buy_pressure double precision,
               sell_pressure double precision, cvd double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s tapeflow.symbols := tapeflow.symbol_row(symbol);
    start_at timestamptz := "from";
BEGIN
    IF session_reset THEN
        start_at := (tapeflow.session_bounds(symbol, tapeflow.session_date("from", s.timezone, s.session_open))).session_start;
    END IF;
    RETURN QUERY
    SELECT c.time, c.session, c.volume, c.buy_volume, c.sell_volume, c.buy_volume - c.sell_volume,
           tapeflow.buy_pressure(c.buy_volume, c.sell_volume), tapeflow.sell_pressure(c.buy_volume, c.sell_volume),
           c.cvd
    FROM (
        SELECT k.*, d.session,
               tapeflow.session_cvd(CASE WHEN session_reset THEN d.session END, k.buy_volume, k.sell_volume)
                   OVER (ORDER BY k.time ROWS UNBOUNDED PRECEDING) AS cvd
        FROM tapeflow.candles(symbol, timeframe, start_at, "to") k,
             LATERAL (SELECT tapeflow.session_date(k.time, s.timezone, s.session_open) AS session) d
    ) c
    WHERE c.time >= tapeflow.bar_start("from", timeframe, s.timezone, s.session_open)
    ORDER BY c.time;
END $$;
COMMENT ON FUNCTION tapeflow.order_flow(text, text, timestamptz, timestamptz, boolean) IS
'Per bar: volume, buy/sell volume, delta, buy/sell pressure (% of classified volume; tapeflow.buy_pressure) and cumulative delta (tapeflow.session_cvd), reset at each session open unless session_reset is false. Errors: unknown symbol or timeframe.';
