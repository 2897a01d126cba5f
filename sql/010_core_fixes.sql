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

-- Writers lock rollup rows in one order. Each statement's upsert into bars_1m locks every
-- minute it touches until commit; taken in the aggregate's (hash) order, two writers of
-- overlapping symbols could each hold a row the other waits for and deadlock. Upserting in
-- (symbol, bucket) order makes one wait for the other instead. Corrections (deletes and
-- updates of ticks) lock the minutes they recompute in the same order.
CREATE OR REPLACE FUNCTION tapeflow.ticks_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed tapeflow.bars_1m[];
BEGIN
    -- The tick sizes these trades are binned on cannot change before they commit (see
    -- symbols_check below). Taken before the tick sizes are read: a change not committed yet is
    -- waited for, and the trades are then binned on the new size.
    PERFORM 1 FROM tapeflow.symbols WHERE symbol IN (SELECT symbol FROM new_rows) ORDER BY symbol FOR SHARE;
    IF to_regclass('tapeflow.bars_1m') IS NOT NULL AND
       (SELECT relkind FROM pg_class WHERE oid = 'tapeflow.bars_1m'::regclass) = 'r' THEN
        WITH agg AS (
            SELECT n.symbol, tapeflow.minute(n.time) AS bucket,
                   tapeflow.candle_agg(n.time, n.price, n.size, n.side) AS candle,
                   tapeflow.profile_agg(n.price, n.size, n.side, s.tick_size) AS profile
            FROM new_rows n JOIN tapeflow.symbols s ON s.symbol = n.symbol GROUP BY 1, 2
        ), up AS (
            INSERT INTO tapeflow.bars_1m AS b (symbol, bucket, candle, profile)
            SELECT symbol, bucket, candle, profile FROM agg ORDER BY symbol, bucket
            ON CONFLICT (symbol, bucket) DO UPDATE
                SET candle = tapeflow.candle_merge(b.candle, EXCLUDED.candle),
                    profile = tapeflow.profile_merge(b.profile, EXCLUDED.profile)
            RETURNING b.*
        )
        SELECT array_agg(up) INTO changed FROM up;
    ELSE
        -- Continuous aggregate: see 002_candles (nothing is stored here, so nothing is locked).
        WITH touched AS (
            SELECT symbol, max(tapeflow.minute(time)) AS bucket FROM new_rows GROUP BY 1
        ), fresh AS (
            SELECT n.* FROM new_rows n JOIN touched t
              ON n.symbol = t.symbol AND n.time >= t.bucket AND n.time < t.bucket + interval '1 minute'
        )
        SELECT array_agg(ROW(t.symbol, t.bucket, tapeflow.candle_merge(stored.candle, mine.candle),
                             NULL::tapeflow.profile)::tapeflow.bars_1m)
          INTO changed
        FROM touched t
        CROSS JOIN LATERAL (
            SELECT tapeflow.candle_agg(k.time, k.price, k.size, k.side) AS candle
            FROM tapeflow.ticks k
            WHERE k.symbol = t.symbol AND k.time >= t.bucket AND k.time < t.bucket + interval '1 minute'
              AND NOT EXISTS (SELECT 1 FROM fresh f
                              WHERE f.symbol = k.symbol AND f.trade_id = k.trade_id AND f.time = k.time)
        ) stored
        CROSS JOIN LATERAL (
            SELECT tapeflow.candle_agg(f.time, f.price, f.size, f.side) AS candle FROM fresh f WHERE f.symbol = t.symbol
        ) mine;
    END IF;
    PERFORM tapeflow.announce_candles(changed);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION tapeflow.ticks_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'tapeflow.bars_1m'::regclass) <> 'r' THEN
        RETURN NULL;
    END IF;
    CREATE TEMP TABLE IF NOT EXISTS tapeflow_touched (symbol text, bucket timestamptz) ON COMMIT DROP;
    TRUNCATE tapeflow_touched;
    INSERT INTO tapeflow_touched SELECT DISTINCT symbol, tapeflow.minute(time) FROM old_rows;
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO tapeflow_touched SELECT DISTINCT symbol, tapeflow.minute(time) FROM new_rows;
    END IF;
    PERFORM 1 FROM tapeflow.symbols WHERE symbol IN (SELECT symbol FROM tapeflow_touched) ORDER BY symbol FOR SHARE;
    PERFORM 1 FROM tapeflow.bars_1m b
    WHERE (b.symbol, b.bucket) IN (SELECT symbol, bucket FROM tapeflow_touched)
    ORDER BY b.symbol, b.bucket FOR UPDATE OF b;
    DELETE FROM tapeflow.bars_1m b USING tapeflow_touched t WHERE b.symbol = t.symbol AND b.bucket = t.bucket;
    INSERT INTO tapeflow.bars_1m (symbol, bucket, candle, profile)
    SELECT k.symbol, tapeflow.minute(k.time), tapeflow.candle_agg(k.time, k.price, k.size, k.side),
           tapeflow.profile_agg(k.price, k.size, k.side, s.tick_size)
    FROM tapeflow.ticks k JOIN (SELECT DISTINCT * FROM tapeflow_touched) t
      ON k.symbol = t.symbol AND k.time >= t.bucket AND k.time < t.bucket + interval '1 minute'
    JOIN tapeflow.symbols s ON s.symbol = k.symbol
    GROUP BY 1, 2
    ORDER BY 1, 2;
    RETURN NULL;
END $$;

-- A symbol's tick size cannot change once it has ticks, including ticks not committed yet.
-- The check below cannot see another transaction's uncommitted ticks, so tick writers take
-- FOR SHARE on the symbols they write (ticks_inserted, ticks_changed above), held until they
-- commit. That conflicts with an UPDATE of the symbol, which therefore waits for every open
-- writer of its ticks before this trigger runs; at READ COMMITTED the check then sees their
-- ticks and refuses. A writer coming second waits for the change and bins on the new size.
-- Under REPEATABLE READ or SERIALIZABLE the check would read a snapshot taken before that
-- wait, so a change of tick size is refused there.
CREATE OR REPLACE FUNCTION tapeflow.symbols_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = NEW.timezone) THEN
        RAISE EXCEPTION 'symbol %: unknown timezone %', NEW.symbol, NEW.timezone
            USING HINT = 'use an IANA name such as America/New_York or UTC';
    END IF;
    -- Minute profiles are binned on the tick size; changing it would split the history.
    IF TG_OP = 'UPDATE' AND NEW.tick_size <> OLD.tick_size THEN
        IF current_setting('transaction_isolation') <> 'read committed' THEN
            RAISE EXCEPTION 'symbol %: tick_size can only change at READ COMMITTED isolation, not %',
                NEW.symbol, upper(current_setting('transaction_isolation'))
                USING HINT = 'a snapshot taken earlier in the transaction cannot see ticks committed since';
        END IF;
        IF EXISTS (SELECT 1 FROM tapeflow.ticks WHERE symbol = NEW.symbol) THEN
            RAISE EXCEPTION 'symbol %: tick_size cannot change from % to % once ticks are stored',
                NEW.symbol, OLD.tick_size, NEW.tick_size;
        END IF;
    END IF;
    RETURN NEW;
END $$;

-- The watchlist reads each symbol's newest market state by an index probe: the log's key is
-- (symbol, strategy, bar), which cannot give a symbol's newest bar over all its strategies
-- without reading and sorting the symbol's whole log; this index can.
CREATE INDEX IF NOT EXISTS market_state_log_symbol_bar ON tapeflow.market_state_log (symbol, bar DESC);

-- The developing profile reads POC, value area and volume of each bar's running profile with
-- one call (one decode of the profile) instead of four.
CREATE OR REPLACE FUNCTION tapeflow.developing_profile(
    symbol text, day date, timeframe text DEFAULT '5m', pct double precision DEFAULT 0.70, method text DEFAULT 'dalton')
RETURNS TABLE ("time" timestamptz, poc double precision, vah double precision, val double precision,
               volume double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s tapeflow.symbols := tapeflow.symbol_row(symbol);
BEGIN
    IF tapeflow.timeframe_interval(timeframe) IS NULL THEN
        RAISE EXCEPTION 'unknown timeframe %', coalesce(timeframe, 'NULL') USING HINT = 'use one of 1m, 5m, 15m, 30m, 1h, 1d';
    END IF;
    RETURN QUERY
    SELECT d.t, v.poc, v.vah, v.val, v.volume
    FROM (
        SELECT bars.t, tapeflow.rollup(bars.p) OVER (ORDER BY bars.t) AS p
        FROM (
            SELECT tapeflow.bar_start(b.bucket, timeframe, s.timezone, s.session_open) AS t, tapeflow.rollup(b.profile) AS p
            FROM tapeflow.session_bounds(symbol, day) sb, tapeflow.bars_1m b
            WHERE b.symbol = developing_profile.symbol AND b.bucket >= sb.session_start AND b.bucket < sb.session_end
            GROUP BY 1
        ) bars
    ) d
    CROSS JOIN LATERAL tapeflow.profile_summary(d.p, pct, method) v
    ORDER BY d.t;
END $$;
COMMENT ON FUNCTION tapeflow.developing_profile(text, date, text, double precision, text) IS
'The developing profile of a session: after each bar of timeframe, POC, VAH, VAL and volume of everything traded since the session open. Errors: unknown symbol or timeframe, pct outside (0, 1], unknown method.';
