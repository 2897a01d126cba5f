-- One-minute summaries (candle and volume profile), the timeframes built from them, and live
-- announcements.
--
-- Plain PostgreSQL: tapeflow.bars_1m is a table kept current by statement-level triggers on
-- ticks (transition tables give the statement's rows, so a 10,000-row COPY costs one
-- aggregate query, not 10,000 trigger calls). With TimescaleDB it is a continuous aggregate
-- over the same tapeflow.candle_agg and tapeflow.profile_agg. Either way queries read
-- tapeflow.bars_1m, and on both paths the same statement-level trigger announces the newest
-- changed minute of each symbol an insert touched (hypertables have transition tables since
-- TimescaleDB 2.18, which 001_core requires).

CREATE OR REPLACE FUNCTION tapeflow.minute(ts timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN date_bin('1 minute', ts, timestamptz '2000-01-01 00:00+00');

-- The TimescaleDB path is taken when 001_core made ticks a hypertable.
DO $$
DECLARE
    hypertable boolean := false;
    what text := 'One-minute summaries per symbol: candle (OHLCV, buy/sell volume) and profile (volume per price row at the symbol''s tick size). Every timeframe, session and composite profile is a rollup() of these.';
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        hypertable := EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                              WHERE hypertable_schema = 'tapeflow' AND hypertable_name = 'ticks');
    END IF;
    IF hypertable THEN
        IF to_regclass('tapeflow.bars_1m') IS NULL THEN
            -- The profile is binned on the symbol's tick size, so the aggregate joins symbols
            -- (continuous aggregates may join one plain table on equality). TimescaleDB only
            -- tracks changes to ticks, not to the joined table; that is sound because
            -- symbols_check (001_core) refuses to change a tick size once the symbol has ticks,
            -- and the foreign key keeps a symbol with ticks from being deleted. time_bucket()
            -- gives the same whole minutes as tapeflow.minute().
            --
            -- materialized_only = false: minutes the refresh has not reached yet (the last
            -- five at least, see end_offset below) are aggregated from ticks at query time, so
            -- a tick is visible at once, as on the plain path.
            CREATE MATERIALIZED VIEW tapeflow.bars_1m
                WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
                SELECT t.symbol, time_bucket('1 minute', t.time) AS bucket,
                       tapeflow.candle_agg(t.time, t.price, t.size, t.side) AS candle,
                       tapeflow.profile_agg(t.price, t.size, t.side, s.tick_size) AS profile
                FROM tapeflow.ticks t JOIN tapeflow.symbols s ON s.symbol = t.symbol
                GROUP BY t.symbol, time_bucket('1 minute', t.time)
                WITH NO DATA;
            -- No start_offset: the refresh then covers all history, and as TimescaleDB logs
            -- which ranges of ticks changed, each run recomputes only those. A bounded start
            -- would leave a late or corrected trade older than it out of bars_1m for good
            -- (the plain path's triggers take trades of any age), and, on a view created over
            -- stored ticks, would hide everything older once the first run moved the
            -- materialization watermark past it. The five-minute end_offset keeps the newest
            -- minutes real-time, so a trade a few minutes late (a polled provider, a feed
            -- reconnecting) still shows at once; a trade for a minute already materialized
            -- shows in bars_1m after the next refresh (its announcement is immediate).
            PERFORM add_continuous_aggregate_policy('tapeflow.bars_1m',
                start_offset => NULL, end_offset => interval '5 minutes',
                schedule_interval => interval '1 minute');
        END IF;
        EXECUTE format('COMMENT ON VIEW tapeflow.bars_1m IS %L', what || ' A TimescaleDB continuous aggregate over ticks.');
    ELSE
        CREATE TABLE IF NOT EXISTS tapeflow.bars_1m (
            symbol text NOT NULL,
            bucket timestamptz NOT NULL,
            candle tapeflow.candle NOT NULL,
            profile tapeflow.profile NOT NULL,
            PRIMARY KEY (symbol, bucket)
        );
        EXECUTE format('COMMENT ON TABLE tapeflow.bars_1m IS %L', what);
    END IF;
END $$;

-- Announces the newest changed minute of each symbol touched by a statement.
CREATE OR REPLACE FUNCTION tapeflow.announce_candles(changed tapeflow.bars_1m[]) RETURNS void
    LANGUAGE sql AS $$
    SELECT count(pg_notify('tapeflow_candles', json_build_object(
               'symbol', c.symbol, 'bucket', c.bucket,
               'open', tapeflow.open(c.candle), 'high', tapeflow.high(c.candle),
               'low', tapeflow.low(c.candle), 'close', tapeflow.close(c.candle),
               'volume', tapeflow.volume(c.candle), 'buy_volume', tapeflow.buy_volume(c.candle),
               'sell_volume', tapeflow.sell_volume(c.candle), 'trades', tapeflow.trades(c.candle))::text))
    FROM (SELECT DISTINCT ON (symbol) * FROM unnest(changed) ORDER BY symbol, bucket DESC) c;
$$;

CREATE OR REPLACE FUNCTION tapeflow.ticks_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed tapeflow.bars_1m[];
BEGIN
    IF to_regclass('tapeflow.bars_1m') IS NOT NULL AND
       (SELECT relkind FROM pg_class WHERE oid = 'tapeflow.bars_1m'::regclass) = 'r' THEN
        WITH agg AS (
            SELECT n.symbol, tapeflow.minute(n.time) AS bucket,
                   tapeflow.candle_agg(n.time, n.price, n.size, n.side) AS candle,
                   tapeflow.profile_agg(n.price, n.size, n.side, s.tick_size) AS profile
            FROM new_rows n JOIN tapeflow.symbols s ON s.symbol = n.symbol GROUP BY 1, 2
        ), up AS (
            INSERT INTO tapeflow.bars_1m AS b (symbol, bucket, candle, profile)
            SELECT symbol, bucket, candle, profile FROM agg
            ON CONFLICT (symbol, bucket) DO UPDATE
                SET candle = tapeflow.candle_merge(b.candle, EXCLUDED.candle),
                    profile = tapeflow.profile_merge(b.profile, EXCLUDED.profile)
            RETURNING b.*
        )
        SELECT array_agg(up) INTO changed FROM up;
    ELSE
        -- Continuous aggregate: nothing is stored here, so each symbol's newest changed minute
        -- is aggregated from its trades: those stored before this statement plus this
        -- statement's own, taken from the transition table. That is what the view shows for a
        -- minute not materialized yet and what the next refresh stores for one that is (a
        -- late trade), so no announcement carries a stale candle. The statement's rows are
        -- not read back from ticks because a chunk that was compressed is only marked as
        -- holding uncompressed rows when the statement ends, after this trigger: until then a
        -- scan of it misses them. The aggregate inside LATERAL keeps the scan of ticks a
        -- per-symbol index range scan of the one chunk holding the minute (a plain join is
        -- planned as a hash join over every chunk). The profile is not announced.
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

-- Deletes and updates are rare (corrections); the affected minutes are recomputed from ticks.
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
    DELETE FROM tapeflow.bars_1m b USING tapeflow_touched t WHERE b.symbol = t.symbol AND b.bucket = t.bucket;
    INSERT INTO tapeflow.bars_1m (symbol, bucket, candle, profile)
    SELECT k.symbol, tapeflow.minute(k.time), tapeflow.candle_agg(k.time, k.price, k.size, k.side),
           tapeflow.profile_agg(k.price, k.size, k.side, s.tick_size)
    FROM tapeflow.ticks k JOIN (SELECT DISTINCT * FROM tapeflow_touched) t
      ON k.symbol = t.symbol AND k.time >= t.bucket AND k.time < t.bucket + interval '1 minute'
    JOIN tapeflow.symbols s ON s.symbol = k.symbol
    GROUP BY 1, 2;
    RETURN NULL;
END $$;

-- Inserts are announced on both paths (a hypertable's transition table holds the rows of
-- every chunk the statement wrote, COPY included). Deletes and updates need triggers only on
-- the plain path: TimescaleDB records them for the next refresh itself, and refuses DELETE
-- triggers with transition tables once compression is enabled.
DROP TRIGGER IF EXISTS ticks_inserted ON tapeflow.ticks;
CREATE TRIGGER ticks_inserted AFTER INSERT ON tapeflow.ticks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tapeflow.ticks_inserted();
DO $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'tapeflow.bars_1m'::regclass) = 'r' THEN
        DROP TRIGGER IF EXISTS ticks_deleted ON tapeflow.ticks;
        CREATE TRIGGER ticks_deleted AFTER DELETE ON tapeflow.ticks
            REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tapeflow.ticks_changed();
        DROP TRIGGER IF EXISTS ticks_updated ON tapeflow.ticks;
        CREATE TRIGGER ticks_updated AFTER UPDATE ON tapeflow.ticks
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tapeflow.ticks_changed();
    END IF;
END $$;

-- Interval of a timeframe name.
CREATE OR REPLACE FUNCTION tapeflow.timeframe_interval(timeframe text) RETURNS interval
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN CASE timeframe
        WHEN '1m' THEN interval '1 minute' WHEN '5m' THEN interval '5 minutes'
        WHEN '15m' THEN interval '15 minutes' WHEN '30m' THEN interval '30 minutes'
        WHEN '1h' THEN interval '1 hour' WHEN '1d' THEN interval '1 day'
        ELSE NULL END;
END $$;

-- The start of the bar containing ts. Intraday bars are aligned to the session open in the
-- symbol's timezone (a 1h bar of a US stock runs 09:30-10:30 ET, as on trading terminals);
-- daily bars are the trading day in that timezone.
CREATE OR REPLACE FUNCTION tapeflow.bar_start(ts timestamptz, timeframe text, tz text, session_open time)
    RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN timeframe = '1d'
        THEN date_trunc('day', ts AT TIME ZONE tz) AT TIME ZONE tz
        ELSE date_bin(tapeflow.timeframe_interval(timeframe), ts AT TIME ZONE tz,
                      date_trunc('day', ts AT TIME ZONE tz) + session_open) AT TIME ZONE tz
    END;
$$;

-- What candles() and backtests read; 007 adds imported bars to it.
CREATE OR REPLACE VIEW tapeflow.minute_bars AS SELECT symbol, bucket, candle, profile FROM tapeflow.bars_1m;

CREATE OR REPLACE FUNCTION tapeflow.candles(
    symbol text, timeframe text, "from" timestamptz, "to" timestamptz)
RETURNS TABLE ("time" timestamptz, open double precision, high double precision, low double precision,
               close double precision, volume double precision, buy_volume double precision,
               sell_volume double precision, trades bigint, vwap double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s tapeflow.symbols;
BEGIN
    IF tapeflow.timeframe_interval(timeframe) IS NULL THEN
        RAISE EXCEPTION 'unknown timeframe %', coalesce(timeframe, 'NULL')
            USING HINT = 'use one of 1m, 5m, 15m, 30m, 1h, 1d';
    END IF;
    SELECT * INTO s FROM tapeflow.symbols WHERE symbols.symbol = candles.symbol;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown symbol %', coalesce(candles.symbol, 'NULL')
            USING HINT = 'see tapeflow.symbols';
    END IF;
    RETURN QUERY
    SELECT r.t, tapeflow.open(r.c), tapeflow.high(r.c), tapeflow.low(r.c), tapeflow.close(r.c),
           tapeflow.volume(r.c), tapeflow.buy_volume(r.c), tapeflow.sell_volume(r.c),
           tapeflow.trades(r.c), tapeflow.vwap(r.c)
    FROM (
        SELECT tapeflow.bar_start(b.bucket, timeframe, s.timezone, s.session_open) AS t,
               tapeflow.rollup(b.candle) AS c
        FROM tapeflow.minute_bars b
        WHERE b.symbol = candles.symbol
          AND b.bucket >= tapeflow.bar_start("from", timeframe, s.timezone, s.session_open)
          AND b.bucket < "to"
        GROUP BY 1
    ) r
    ORDER BY r.t;
END $$;
COMMENT ON FUNCTION tapeflow.candles(text, text, timestamptz, timestamptz) IS
'Bars of a symbol for timeframe 1m, 5m, 15m, 30m, 1h or 1d whose start lies in [from, to), rolled up from the one-minute bars (tapeflow.minute_bars). Errors: unknown symbol, unknown timeframe.';

-- Recomputes every one-minute summary from ticks (after a bulk load with triggers disabled,
-- or after the extension was recreated). Returns the number of minutes written (with
-- TimescaleDB: the number of minutes in the view, see below).
CREATE OR REPLACE FUNCTION tapeflow.rebuild_rollups() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'tapeflow.bars_1m'::regclass) <> 'r' THEN
        -- Continuous aggregate: there is nothing to recompute here. TimescaleDB records every
        -- change to ticks while executing it (no trigger a bulk load could disable) and the
        -- view aggregates what is not materialized yet from ticks; recorded changes to
        -- materialized minutes are applied by the refresh policy, which is asked to run now.
        -- The refresh itself cannot run here: refresh_continuous_aggregate() is a procedure
        -- that TimescaleDB refuses inside a function or transaction block.
        PERFORM alter_job(j.job_id, next_start => now())
        FROM timescaledb_information.jobs j
        WHERE j.proc_name = 'policy_refresh_continuous_aggregate'
          AND j.hypertable_schema = 'tapeflow' AND j.hypertable_name = 'bars_1m';
        RAISE NOTICE 'tapeflow.bars_1m is a continuous aggregate: its refresh policy will apply pending changes'
            USING HINT = 'to materialize everything now, or after a load with timescaledb.skip_cagg_invalidation, '
                         'run CALL refresh_continuous_aggregate(''tapeflow.bars_1m'', NULL, NULL, force => true) '
                         'outside a transaction block';
        SELECT count(*) INTO n FROM tapeflow.bars_1m;
        RETURN n;
    END IF;
    TRUNCATE tapeflow.bars_1m;
    INSERT INTO tapeflow.bars_1m (symbol, bucket, candle, profile)
    SELECT k.symbol, tapeflow.minute(k.time), tapeflow.candle_agg(k.time, k.price, k.size, k.side),
           tapeflow.profile_agg(k.price, k.size, k.side, s.tick_size)
    FROM tapeflow.ticks k JOIN tapeflow.symbols s ON s.symbol = k.symbol GROUP BY 1, 2;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
