-- Order flow over stored summaries: sessions, order flow with session CVD, session /
-- composite / developing profiles, footprints, and trade classification over stored ticks.

-- The trading session a time belongs to: the date, in the symbol's timezone, of the last
-- session open at or before it. Cumulative delta and session profiles reset at each open.
CREATE OR REPLACE FUNCTION tapeflow.session_date(ts timestamptz, tz text, session_open time)
    RETURNS date LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ((ts AT TIME ZONE tz) - session_open)::date;

-- [start, end) of a symbol's session on a date: from its open to the next day's open.
CREATE OR REPLACE FUNCTION tapeflow.session_bounds(symbol text, day date,
    OUT session_start timestamptz, OUT session_end timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s tapeflow.symbols;
BEGIN
    SELECT * INTO s FROM tapeflow.symbols WHERE symbols.symbol = session_bounds.symbol;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown symbol %', coalesce(session_bounds.symbol, 'NULL') USING HINT = 'see tapeflow.symbols';
    END IF;
    session_start := (day + s.session_open) AT TIME ZONE s.timezone;
    session_end := (day + 1 + s.session_open) AT TIME ZONE s.timezone;
END $$;

CREATE OR REPLACE FUNCTION tapeflow.buy_pressure(c tapeflow.candle) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN tapeflow.buy_volume(c) + tapeflow.sell_volume(c) > 0
                THEN 100 * tapeflow.buy_volume(c) / (tapeflow.buy_volume(c) + tapeflow.sell_volume(c))
                ELSE 50 END;
COMMENT ON FUNCTION tapeflow.buy_pressure(tapeflow.candle) IS 'Buy volume as % of classified (buy + sell) volume; 50 when none is classified.';
CREATE OR REPLACE FUNCTION tapeflow.sell_pressure(c tapeflow.candle) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 100 - tapeflow.buy_pressure(c);

-- Looks a symbol up or fails with a clear message.
CREATE OR REPLACE FUNCTION tapeflow.symbol_row(sym text) RETURNS tapeflow.symbols
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s tapeflow.symbols;
BEGIN
    SELECT * INTO s FROM tapeflow.symbols WHERE symbol = sym;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown symbol %', coalesce(sym, 'NULL') USING HINT = 'see tapeflow.symbols';
    END IF;
    RETURN s;
END $$;

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
    SELECT c.time, tapeflow.session_date(c.time, s.timezone, s.session_open), c.volume, c.buy_volume, c.sell_volume,
           c.buy_volume - c.sell_volume,
           CASE WHEN c.buy_volume + c.sell_volume > 0 THEN 100 * c.buy_volume / (c.buy_volume + c.sell_volume) ELSE 50 END,
           CASE WHEN c.buy_volume + c.sell_volume > 0 THEN 100 * c.sell_volume / (c.buy_volume + c.sell_volume) ELSE 50 END,
           c.cvd
    FROM (
        SELECT k.*, sum(k.buy_volume - k.sell_volume) OVER (
                   PARTITION BY CASE WHEN session_reset THEN tapeflow.session_date(k.time, s.timezone, s.session_open) END
                   ORDER BY k.time) AS cvd
        FROM tapeflow.candles(symbol, timeframe, start_at, "to") k
    ) c
    WHERE c.time >= tapeflow.bar_start("from", timeframe, s.timezone, s.session_open)
    ORDER BY c.time;
END $$;
COMMENT ON FUNCTION tapeflow.order_flow(text, text, timestamptz, timestamptz, boolean) IS
'Per bar: volume, buy/sell volume, delta, buy/sell pressure (% of classified volume) and cumulative delta, reset at each session open unless session_reset is false. Errors: unknown symbol or timeframe.';

-- The volume profile of one session, rolled up from one-minute profiles.
CREATE OR REPLACE FUNCTION tapeflow.session_profile(symbol text, day date) RETURNS tapeflow.profile
LANGUAGE sql STABLE AS $$
    SELECT tapeflow.rollup(b.profile)
    FROM tapeflow.session_bounds(symbol, day) sb, tapeflow.bars_1m b
    WHERE b.symbol = session_profile.symbol AND b.bucket >= sb.session_start AND b.bucket < sb.session_end;
$$;

-- A composite profile over any range (many sessions).
CREATE OR REPLACE FUNCTION tapeflow.composite_profile(symbol text, "from" timestamptz, "to" timestamptz)
RETURNS tapeflow.profile LANGUAGE sql STABLE AS $$
    SELECT tapeflow.rollup(b.profile) FROM tapeflow.bars_1m b
    WHERE b.symbol = composite_profile.symbol AND b.bucket >= "from" AND b.bucket < "to";
$$;

-- The developing profile of a session: after each bar, the POC and value area of
-- everything traded since the session open.
CREATE OR REPLACE FUNCTION tapeflow.developing_profile(
    symbol text, day date, timeframe text DEFAULT '5m', pct double precision DEFAULT 0.70, method text DEFAULT 'dalton')
RETURNS TABLE ("time" timestamptz, poc double precision, vah double precision, val double precision,
               volume double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s tapeflow.symbols := tapeflow.symbol_row(symbol);
BEGIN
    RETURN QUERY
    SELECT d.t, tapeflow.poc(d.p), tapeflow.vah(d.p, pct, method), tapeflow.val(d.p, pct, method), tapeflow.total_volume(d.p)
    FROM (
        SELECT bars.t, tapeflow.rollup(bars.p) OVER (ORDER BY bars.t) AS p
        FROM (
            SELECT tapeflow.bar_start(b.bucket, timeframe, s.timezone, s.session_open) AS t, tapeflow.rollup(b.profile) AS p
            FROM tapeflow.session_bounds(symbol, day) sb, tapeflow.bars_1m b
            WHERE b.symbol = developing_profile.symbol AND b.bucket >= sb.session_start AND b.bucket < sb.session_end
            GROUP BY 1
        ) bars
    ) d
    ORDER BY d.t;
END $$;

-- Footprint: per bar and price level, bid (sell-initiated) and ask (buy-initiated) volume.
CREATE OR REPLACE FUNCTION tapeflow.footprint(symbol text, timeframe text, "from" timestamptz, "to" timestamptz)
RETURNS TABLE ("time" timestamptz, price double precision, bid_volume double precision, ask_volume double precision,
               delta double precision, volume double precision, trades bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s tapeflow.symbols := tapeflow.symbol_row(symbol);
BEGIN
    IF tapeflow.timeframe_interval(timeframe) IS NULL THEN
        RAISE EXCEPTION 'unknown timeframe %', coalesce(timeframe, 'NULL') USING HINT = 'use one of 1m, 5m, 15m, 30m, 1h, 1d';
    END IF;
    RETURN QUERY
    SELECT f.t, l.price, l.sell, l.buy, l.delta, l.total, l.trades
    FROM (
        SELECT tapeflow.bar_start(b.bucket, timeframe, s.timezone, s.session_open) AS t, tapeflow.rollup(b.profile) AS p
        FROM tapeflow.bars_1m b
        WHERE b.symbol = footprint.symbol AND b.bucket >= tapeflow.bar_start("from", timeframe, s.timezone, s.session_open)
          AND b.bucket < "to"
        GROUP BY 1
    ) f, tapeflow.levels(f.p) l
    ORDER BY f.t, l.price;
END $$;

-- Diagonal imbalances per bar, each flagged when it is part of a stack of min_rows or more.
CREATE OR REPLACE FUNCTION tapeflow.footprint_imbalances(
    symbol text, timeframe text, "from" timestamptz, "to" timestamptz,
    ratio double precision DEFAULT 1.5, min_volume double precision DEFAULT 0, min_rows integer DEFAULT 3)
RETURNS TABLE ("time" timestamptz, side text, price double precision, volume double precision,
               opposite double precision, imbalance_ratio double precision, stacked boolean)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s tapeflow.symbols := tapeflow.symbol_row(symbol);
BEGIN
    RETURN QUERY
    SELECT f.t, i.side, i.price, i.volume, i.opposite, i.ratio,
           EXISTS (SELECT 1 FROM tapeflow.stacked_imbalances(f.p, footprint_imbalances.ratio, min_volume, min_rows) st
                   WHERE st.side = i.side AND i.price BETWEEN st.low AND st.high)
    FROM (
        SELECT tapeflow.bar_start(b.bucket, timeframe, s.timezone, s.session_open) AS t, tapeflow.rollup(b.profile) AS p
        FROM tapeflow.bars_1m b
        WHERE b.symbol = footprint_imbalances.symbol
          AND b.bucket >= tapeflow.bar_start("from", timeframe, s.timezone, s.session_open) AND b.bucket < "to"
        GROUP BY 1
    ) f, tapeflow.imbalances(f.p, footprint_imbalances.ratio, min_volume) i
    ORDER BY f.t, i.price;
END $$;

-- Classifies stored trades: each trade is matched as-of to the last quote at or before
-- time - quote_lag (Lee-Ready's lag; 0 for modern feeds), the tick rule runs over the
-- trades in time order (the reverse tick rule over them in reverse), and `rule` decides.
-- The venue's side, when known, is returned beside the inferred one.
CREATE OR REPLACE FUNCTION tapeflow.classify_ticks(
    symbol text, "from" timestamptz, "to" timestamptz, rule text DEFAULT 'lee_ready', quote_lag interval DEFAULT '0')
RETURNS TABLE ("time" timestamptz, trade_id text, price double precision, size double precision,
               venue_side "char", inferred_side "char", bid double precision, ask double precision)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM tapeflow.symbol_row(symbol);
    RETURN QUERY
    SELECT t.time, t.trade_id, t.price, t.size, t.side,
           CASE WHEN lower(rule) IN ('reverse_tick', 'reverse-tick', 'rev_tick') THEN t.rev
                ELSE tapeflow.classify_trade(rule, t.price, q.bid, q.ask, t.tick) END,
           q.bid, q.ask
    FROM (
        SELECT k.*, tapeflow.tick_side(k.price) OVER (ORDER BY k.time, k.trade_id ROWS UNBOUNDED PRECEDING) AS tick,
               tapeflow.tick_side(k.price) OVER (ORDER BY k.time DESC, k.trade_id DESC ROWS UNBOUNDED PRECEDING) AS rev
        FROM tapeflow.ticks k
        WHERE k.symbol = classify_ticks.symbol AND k.time >= "from" AND k.time < "to"
    ) t
    LEFT JOIN LATERAL (
        SELECT qq.bid, qq.ask FROM tapeflow.quotes qq
        WHERE qq.symbol = classify_ticks.symbol AND qq.time <= t.time - quote_lag
        ORDER BY qq.time DESC LIMIT 1
    ) q ON true
    ORDER BY t.time, t.trade_id;
END $$;
COMMENT ON FUNCTION tapeflow.classify_ticks(text, timestamptz, timestamptz, text, interval) IS
'Trade-side classification of stored ticks with rule tick | reverse_tick | quote | lee_ready | emo | clnv, quotes matched as of time - quote_lag. Errors: unknown symbol, unknown rule.';
