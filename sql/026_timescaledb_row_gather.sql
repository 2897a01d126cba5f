-- TimescaleDB: tick statements are announced from what row triggers gather, not from a
-- transition table, so that TimescaleDB copies ticks into the hypertable in batches and
-- records every continuous-aggregate invalidation. Every statement can run again; on plain
-- PostgreSQL and on a Citus coordinator (where bars_1m is a table) only the type and the
-- function below are created and nothing uses them.
--
-- TimescaleDB 2.28.3 copies row by row into a hypertable that has a trigger with a transition
-- table, and that row-by-row path records no invalidation, so a COPY of a late trade never
-- reached its materialized minute: every TimescaleDB batch went through a staging table and
-- INSERT (about 1.6x the cost of the plain path's COPY per tick, README "Ingest speed"). Row
-- triggers keep its batched COPY. The extension's ticks_statement_begin (BEFORE, per
-- statement) opens a frame, ticks_row_gather (AFTER, per stored row, on every chunk) adds the
-- row to it, keeping per symbol only its newest minute's candle and trade keys, and the
-- statement trigger below takes the frame with tapeflow.statement_newest_minutes(). The rest is
-- 025's function unchanged: the same locks in the same order, the same kept minutes, the same
-- announcement. A row inserted straight into a chunk (not through tapeflow.ticks) is not
-- gathered, as no statement trigger of ticks fired for it before either.

DO $$
BEGIN
    IF to_regtype('tapeflow.statement_minute') IS NULL THEN
        CREATE TYPE tapeflow.statement_minute AS (
            symbol text, bucket timestamptz, candle tapeflow.candle, times timestamptz[], trade_ids text[]);
    END IF;
END $$;

CREATE OR REPLACE FUNCTION tapeflow.ticks_inserted_timescaledb() RETURNS trigger LANGUAGE plpgsql
SET enable_sort = off SET jit = off AS $$
DECLARE
    mins tapeflow.statement_minute[];
    syms text[];
    buckets timestamptz[];
    own tapeflow.candle[];
    locked text[];
    kept_syms text[];
    kept_buckets timestamptz[];
    kept_candles tapeflow.candle[];
    was timestamptz[];      -- per symbol: its kept minute as locked below (NULL: none)
    merged tapeflow.candle[];
    inserted text[];
    i int;
    now_bucket timestamptz;
    now_candle tapeflow.candle;
BEGIN
    -- Each symbol's newest minute in this statement, the statement's own trades of it and
    -- their keys, in symbol order (the order every lock below is taken in), as the row
    -- triggers gathered them.
    SELECT array_agg(ROW(m.*)::tapeflow.statement_minute ORDER BY m.symbol),
           array_agg(m.symbol ORDER BY m.symbol), array_agg(m.bucket ORDER BY m.symbol),
           array_agg(m.candle ORDER BY m.symbol)
      INTO mins, syms, buckets, own
    FROM tapeflow.statement_newest_minutes() m;
    IF syms IS NULL THEN
        RETURN NULL;  -- no row inserted (every one a duplicate)
    END IF;

    -- Known symbols only, locked until commit (as 013's ticks_inserted).
    SELECT array_agg(l.symbol) INTO locked
    FROM (SELECT symbol FROM tapeflow.symbols WHERE symbol = ANY (syms) ORDER BY symbol FOR SHARE) l;
    PERFORM tapeflow.refuse_unknown_symbols(syms, locked);

    -- The kept minutes, locked before anything is decided (and before the ticks are read), and
    -- used as read here: a row another statement creates after this lock is not among them and
    -- goes through the key below, never through an update computed from an unlocked read.
    SELECT array_agg(k.symbol), array_agg(k.bucket), array_agg(k.candle)
      INTO kept_syms, kept_buckets, kept_candles
    FROM (SELECT symbol, bucket, candle FROM tapeflow.newest_minutes
          WHERE symbol = ANY (syms) ORDER BY symbol FOR UPDATE) k;

    -- Each symbol's candle: its kept minute merged with its own trades, or, when the kept one
    -- is another minute or none, the stored trades of the minute without this statement's
    -- (which a compressed chunk may not show yet) merged with its own. The NOT IN is hashed
    -- once over the statement's rows of those minutes; the key's columns are never NULL, so it
    -- is exact. Inside LATERAL the scan of ticks is a per-symbol range scan of one chunk.
    WITH s AS (
        SELECT * FROM unnest(syms, buckets, own) s(symbol, bucket, own)
    ), j AS (
        SELECT s.*, k.bucket AS kept_bucket, k.candle AS kept
        FROM s LEFT JOIN unnest(kept_syms, kept_buckets, kept_candles) k(symbol, bucket, candle)
          ON k.symbol = s.symbol
    ), need AS (
        SELECT symbol, bucket FROM j WHERE kept_bucket IS DISTINCT FROM bucket
    ), fresh AS (
        SELECT m.symbol, k.time, k.trade_id FROM unnest(mins) m JOIN need t ON t.symbol = m.symbol
        CROSS JOIN LATERAL unnest(m.times, m.trade_ids) k(time, trade_id)
    ), stored AS (
        SELECT t.symbol, st.candle FROM need t
        CROSS JOIN LATERAL (
            SELECT tapeflow.candle_agg(k.time, k.price, k.size, k.side) AS candle
            FROM tapeflow.ticks k
            WHERE k.symbol = t.symbol AND k.time >= t.bucket AND k.time < t.bucket + interval '1 minute'
              AND (k.symbol, k.time, k.trade_id) NOT IN (SELECT f.symbol, f.time, f.trade_id FROM fresh f)
        ) st
    )
    SELECT array_agg(j.kept_bucket ORDER BY j.symbol),
           array_agg(CASE WHEN j.kept_bucket = j.bucket THEN tapeflow.candle_merge(j.kept, j.own)
                          ELSE tapeflow.candle_merge(st.candle, j.own) END ORDER BY j.symbol)
      INTO was, merged
    FROM j LEFT JOIN stored st ON st.symbol = j.symbol;

    -- Kept: the same minute merged, an older one replaced. A newer one (late trades) stays.
    UPDATE tapeflow.newest_minutes m SET bucket = r.bucket, candle = r.candle
    FROM unnest(syms, buckets, merged, was) r(symbol, bucket, candle, was)
    WHERE m.symbol = r.symbol AND r.was <= r.bucket;
    -- None kept yet: created, unless another statement created it meanwhile (its commit was
    -- waited for on the key).
    WITH created AS (
        INSERT INTO tapeflow.newest_minutes (symbol, bucket, candle)
        SELECT r.symbol, r.bucket, r.candle FROM unnest(syms, buckets, merged, was) r(symbol, bucket, candle, was)
        WHERE r.was IS NULL ORDER BY r.symbol
        ON CONFLICT (symbol) DO NOTHING
        RETURNING symbol
    )
    SELECT coalesce(array_agg(symbol), '{}') INTO inserted FROM created;
    -- Rows another statement created meanwhile (rare): its trades are in them, so this
    -- statement merges only its own into the same minute.
    FOR i IN 1 .. cardinality(syms) LOOP
        CONTINUE WHEN was[i] IS NOT NULL OR syms[i] = ANY (inserted);
        SELECT k.bucket, k.candle INTO now_bucket, now_candle
        FROM tapeflow.newest_minutes k WHERE k.symbol = syms[i] FOR UPDATE;
        IF now_bucket = buckets[i] THEN
            merged[i] := tapeflow.candle_merge(now_candle, own[i]);
            UPDATE tapeflow.newest_minutes SET candle = merged[i] WHERE symbol = syms[i];
        ELSIF now_bucket < buckets[i] THEN
            UPDATE tapeflow.newest_minutes SET bucket = buckets[i], candle = merged[i] WHERE symbol = syms[i];
        END IF;
    END LOOP;

    PERFORM tapeflow.announce_candles(ARRAY(
        SELECT ROW(r.symbol, r.bucket, r.candle, NULL::tapeflow.profile)::tapeflow.bars_1m
        FROM unnest(syms, buckets, merged) r(symbol, bucket, candle)));
    RETURN NULL;
END $$;

DO $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'tapeflow.bars_1m'::regclass) <> 'r' THEN
        DROP TRIGGER IF EXISTS ticks_inserted ON tapeflow.ticks;
        DROP TRIGGER IF EXISTS ticks_gather_begin ON tapeflow.ticks;
        DROP TRIGGER IF EXISTS ticks_gather_row ON tapeflow.ticks;
        CREATE TRIGGER ticks_gather_begin BEFORE INSERT ON tapeflow.ticks
            FOR EACH STATEMENT EXECUTE FUNCTION tapeflow.ticks_statement_begin();
        CREATE TRIGGER ticks_gather_row AFTER INSERT ON tapeflow.ticks
            FOR EACH ROW EXECUTE FUNCTION tapeflow.ticks_row_gather();
        CREATE TRIGGER ticks_inserted AFTER INSERT ON tapeflow.ticks
            FOR EACH STATEMENT EXECUTE FUNCTION tapeflow.ticks_inserted_timescaledb();
    END IF;
END $$;
