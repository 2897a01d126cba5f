-- TimescaleDB: the announcement of a statement's ticks no longer re-reads the minute they fell
-- in. Every statement can run again; on plain PostgreSQL and on a Citus coordinator (where
-- bars_1m is a table) only the table below is created and nothing uses it.
--
-- With the continuous aggregate nothing stores a minute as it forms, so 013's insert trigger
-- aggregated each symbol's newest changed minute from all its stored trades, on every
-- statement: the cost of a statement grew with the minute. Writing 10,000 ticks/s of 10
-- symbols in 1,000-tick statements, one took 100 ms by the end of a minute (4.5 ms without the
-- trigger) and the writer fell behind (8,200 ticks/s). Now each symbol's newest minute is kept
-- here as its candle so far, and a statement into that minute merges its own trades into it:
-- the minute is read from the ticks once, when a statement first reaches it (or after a
-- correction), not on every statement.
--
-- Why the kept candle stays equal to the minute's trades:
-- * A statement locks its symbols' rows here (FOR UPDATE, in symbol order) before deciding, so
--   statements into one symbol's minute merge one after the other, each its own trades once.
-- * A statement that finds no row, or an older minute, reads the minute from the ticks (the
--   stored trades without its own, which a compressed chunk may not show yet, plus its own).
--   Two statements creating the same symbol's row meet on its key: the second waits for the
--   first to commit, then finds the minute kept and merges only its own trades.
-- * A statement whose newest minute is older than the kept one (late trades) is announced from
--   the ticks as before and leaves the kept minute alone.
-- * An update, delete or truncate of ticks (a correction) forgets every kept minute. It locks
--   this table first, so a writer that kept a minute before it has committed, and one that
--   comes after waits for the correction's commit and then reads the minute afresh.

CREATE TABLE IF NOT EXISTS tapeflow.newest_minutes (
    symbol text PRIMARY KEY,
    bucket timestamptz NOT NULL,
    candle tapeflow.candle NOT NULL
);
COMMENT ON TABLE tapeflow.newest_minutes IS
    'TimescaleDB path: each symbol''s newest minute as announced (its candle from every stored trade of it), kept by the tick insert trigger so that a statement merges its own trades instead of re-reading the minute. Forgotten on any update, delete or truncate of ticks. See 025_timescaledb_newest_minutes.';

-- The refusal of a tick statement naming symbols that tapeflow.symbols does not hold (present:
-- those the statement's lock found). 013's and 020's triggers, applied before this, spell out
-- the same refusal.
CREATE OR REPLACE FUNCTION tapeflow.refuse_unknown_symbols(wanted text[], present text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    unknown text;
    n bigint;
BEGIN
    SELECT string_agg(w, ', ' ORDER BY w), count(*) INTO unknown, n
    FROM unnest(wanted) w WHERE w <> ALL (coalesce(present, '{}'));
    IF n > 0 THEN
        RAISE EXCEPTION 'unknown symbol%: %', CASE WHEN n > 1 THEN 's' ELSE '' END, unknown
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = 'Every tick must name a row of tapeflow.symbols; none of this statement''s ticks was stored.',
                  HINT = 'insert the symbol into tapeflow.symbols first';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION tapeflow.ticks_inserted_timescaledb() RETURNS trigger LANGUAGE plpgsql
SET enable_sort = off SET jit = off AS $$
DECLARE
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
    -- Each symbol's newest minute in this statement and the statement's own trades of it, in
    -- symbol order (the order every lock below is taken in).
    SELECT array_agg(m.symbol ORDER BY m.symbol), array_agg(m.bucket ORDER BY m.symbol),
           array_agg(m.candle ORDER BY m.symbol)
      INTO syms, buckets, own
    FROM (SELECT n.symbol, t.bucket, tapeflow.candle_agg(n.time, n.price, n.size, n.side) AS candle
          FROM new_rows n
          JOIN (SELECT symbol, max(tapeflow.minute(time)) AS bucket FROM new_rows GROUP BY 1) t
            ON n.symbol = t.symbol AND n.time >= t.bucket AND n.time < t.bucket + interval '1 minute'
          GROUP BY 1, 2) m;
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
        SELECT n.symbol, n.time, n.trade_id FROM new_rows n JOIN need t
          ON n.symbol = t.symbol AND n.time >= t.bucket AND n.time < t.bucket + interval '1 minute'
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

-- A correction forgets every kept minute (see the header for the lock).
CREATE OR REPLACE FUNCTION tapeflow.newest_minutes_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE tapeflow.newest_minutes IN EXCLUSIVE MODE;
    DELETE FROM tapeflow.newest_minutes;
    RETURN NULL;
END $$;

DO $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'tapeflow.bars_1m'::regclass) <> 'r' THEN
        DROP TRIGGER IF EXISTS ticks_inserted ON tapeflow.ticks;
        CREATE TRIGGER ticks_inserted AFTER INSERT ON tapeflow.ticks
            REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tapeflow.ticks_inserted_timescaledb();
        DROP TRIGGER IF EXISTS ticks_forget_newest ON tapeflow.ticks;
        CREATE TRIGGER ticks_forget_newest AFTER UPDATE OR DELETE OR TRUNCATE ON tapeflow.ticks
            FOR EACH STATEMENT EXECUTE FUNCTION tapeflow.newest_minutes_forget();
    END IF;
END $$;
