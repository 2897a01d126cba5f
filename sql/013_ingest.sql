-- Tick ingest at COPY speed, with the same guarantees: no trade stored twice, none lost, only
-- known symbols. Every statement here can run again (the extension refresh re-applies the
-- migrations after 001 on an existing database).
--
-- What each per-row mechanism cost and what replaces it (1M ticks, 10 symbols, README
-- "Ingest speed"):
-- * The foreign key to symbols ran one trigger call and one index probe of symbols per tick.
--   Its guarantee, every tick names a known symbol, is now checked once per statement: the
--   insert trigger locks the statement's distinct symbols (FOR SHARE, as it already did for
--   the tick-size rule) and refuses the whole statement when one is missing; an update of a
--   tick's symbol is checked by a row trigger that fires only for such updates; and symbols
--   refuse to be deleted, truncated or renamed while ticks name them.
-- * Two text-keyed indexes, UNIQUE (symbol, trade_id, time) and (symbol, time), became one:
--   UNIQUE (symbol, time, trade_id) is the same identity (a unique constraint is on a set of
--   columns; their order only decides what the index can also serve) and, led by
--   (symbol, time), serves every per-symbol time-range read the second index served.
-- * The insert trigger read the statement's rows twice (once to lock their symbols, once to
--   aggregate them, sorted); it now aggregates them once, hashed, and takes the locks from
--   the aggregate's few rows.

-- Ticks name known symbols: checked per statement instead of per row. ------------------------
DO $$
DECLARE
    fk name;
BEGIN
    FOR fk IN SELECT conname FROM pg_constraint
              WHERE conrelid = 'tapeflow.ticks'::regclass AND contype = 'f'
                AND confrelid = 'tapeflow.symbols'::regclass
    LOOP
        EXECUTE format('ALTER TABLE tapeflow.ticks DROP CONSTRAINT %I', fk);
    END LOOP;
END $$;

-- One key: UNIQUE (symbol, time, trade_id), under the old constraint's name so that anything
-- naming it (ON CONFLICT ON CONSTRAINT, error handlers) keeps working. The stored ticks are
-- already unique on these columns, so building it cannot fail on data.
DO $$
DECLARE
    hypertable boolean := false;
    current_cols text;
BEGIN
    SELECT string_agg(a.attname, ', ' ORDER BY k.n) INTO current_cols
    FROM pg_constraint c
    CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY k(attnum, n)
    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
    WHERE c.conrelid = 'tapeflow.ticks'::regclass AND c.conname = 'ticks_trade_unique';
    IF current_cols IS DISTINCT FROM 'symbol, time, trade_id' THEN
        IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
            hypertable := EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                                  WHERE hypertable_schema = 'tapeflow' AND hypertable_name = 'ticks');
        END IF;
        IF hypertable THEN
            -- A hypertable's constraints are created on every chunk by TimescaleDB, which does
            -- not take a prebuilt index (ADD CONSTRAINT ... USING INDEX). Should this release
            -- refuse the new constraint (compressed chunks), the old key and index stay: the
            -- guarantees are the same, only the speed is not.
            BEGIN
                ALTER TABLE tapeflow.ticks DROP CONSTRAINT IF EXISTS ticks_trade_unique;
                ALTER TABLE tapeflow.ticks ADD CONSTRAINT ticks_trade_unique UNIQUE (symbol, time, trade_id);
                DROP INDEX IF EXISTS tapeflow.ticks_symbol_time;
            EXCEPTION WHEN feature_not_supported OR object_not_in_prerequisite_state THEN
                RAISE WARNING 'tapeflow.ticks keeps its two indexes: TimescaleDB refused the new key (%)', SQLERRM;
            END;
        ELSE
            -- Built before the old key is dropped, so the table is never without one.
            DROP INDEX IF EXISTS tapeflow.ticks_key_new;
            CREATE UNIQUE INDEX ticks_key_new ON tapeflow.ticks (symbol, time, trade_id);
            ALTER TABLE tapeflow.ticks DROP CONSTRAINT IF EXISTS ticks_trade_unique;
            ALTER TABLE tapeflow.ticks ADD CONSTRAINT ticks_trade_unique UNIQUE USING INDEX ticks_key_new;
            DROP INDEX IF EXISTS tapeflow.ticks_symbol_time;
        END IF;
    END IF;
END $$;
COMMENT ON TABLE tapeflow.ticks IS 'Trades. (symbol, time, trade_id) is unique so a replayed feed never duplicates a trade; its index also serves reads of a symbol''s trades by time. Every tick names a row of tapeflow.symbols (checked per statement by the insert trigger, see 013_ingest).';

-- The insert trigger: one pass over the statement's trades. ----------------------------------
--
-- Plain path: the trades are aggregated per symbol and minute in one hashed pass, joined to
-- their symbols for the tick size. Only then are the symbols locked, from the aggregate's few
-- rows, in symbol order: FOR SHARE until commit, which keeps a symbol from being deleted,
-- renamed or given another tick size while these trades are not committed (see symbols_check
-- and symbols_in_use). A symbol the lock does not find is unknown (or was deleted meanwhile)
-- and the whole statement is refused. A tick size changed by a transaction the lock had to
-- wait for was read before the change, so the minutes are then aggregated again on the size
-- now locked (the rare path; the old trigger took the lock first and so read its rows twice on
-- every statement). The minutes are upserted in (symbol, bucket) order, as before.
-- The aggregate is hashed: the planner, which cannot size the aggregates' states, would sort
-- every trade by text instead, for a statement's few hundred groups (hence enable_sort, for
-- this function only; and no JIT, which that setting's cost penalty would otherwise call in
-- to compile each small query for longer than it runs).
CREATE OR REPLACE FUNCTION tapeflow.ticks_inserted() RETURNS trigger LANGUAGE plpgsql
SET enable_sort = off SET jit = off AS $$
DECLARE
    syms text[];
    buckets timestamptz[];
    candles tapeflow.candle[];
    profiles tapeflow.profile[];
    sizes double precision[];
    wanted text[];
    locked text[];
    locked_sizes double precision[];
    unknown text;
    n_unknown bigint;
    changed tapeflow.bars_1m[];
    plain boolean := (SELECT relkind FROM pg_class WHERE oid = to_regclass('tapeflow.bars_1m')) = 'r';
BEGIN
    IF plain THEN
        SELECT array_agg(g.symbol), array_agg(g.bucket), array_agg(g.candle), array_agg(g.profile),
               array_agg(g.tick_size)
          INTO syms, buckets, candles, profiles, sizes
        FROM (SELECT n.symbol, tapeflow.minute(n.time) AS bucket,
                     tapeflow.candle_agg(n.time, n.price, n.size, n.side) AS candle,
                     tapeflow.profile_agg(n.price, n.size, n.side, s.tick_size) FILTER (WHERE s.tick_size IS NOT NULL) AS profile,
                     s.tick_size
              FROM new_rows n LEFT JOIN tapeflow.symbols s ON s.symbol = n.symbol
              GROUP BY n.symbol, 2, s.tick_size) g;
    ELSE
        -- Continuous aggregate: the newest minute of each symbol (announced below).
        SELECT array_agg(t.symbol), array_agg(t.bucket) INTO syms, buckets
        FROM (SELECT symbol, max(tapeflow.minute(time)) AS bucket FROM new_rows GROUP BY 1) t;
    END IF;
    IF syms IS NULL THEN
        RETURN NULL;  -- no row inserted (every one a duplicate)
    END IF;

    wanted := ARRAY(SELECT DISTINCT s FROM unnest(syms) s ORDER BY 1);
    SELECT array_agg(l.symbol ORDER BY l.symbol), array_agg(l.tick_size ORDER BY l.symbol)
      INTO locked, locked_sizes
    FROM (SELECT symbol, tick_size FROM tapeflow.symbols WHERE symbol = ANY (wanted) ORDER BY symbol FOR SHARE) l;
    SELECT string_agg(w, ', ' ORDER BY w), count(*) INTO unknown, n_unknown
    FROM unnest(wanted) w WHERE w <> ALL (coalesce(locked, '{}'));
    IF n_unknown > 0 THEN
        RAISE EXCEPTION 'unknown symbol%: %', CASE WHEN n_unknown > 1 THEN 's' ELSE '' END, unknown
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = 'Every tick must name a row of tapeflow.symbols; none of this statement''s ticks was stored.',
                  HINT = 'insert the symbol into tapeflow.symbols first';
    END IF;

    IF plain THEN
        IF EXISTS (SELECT 1 FROM unnest(syms, sizes) g(symbol, size)
                   JOIN unnest(locked, locked_sizes) l(symbol, size) ON l.symbol = g.symbol
                   WHERE g.size IS DISTINCT FROM l.size) THEN
            SELECT array_agg(g.symbol), array_agg(g.bucket), array_agg(g.candle), array_agg(g.profile)
              INTO syms, buckets, candles, profiles
            FROM (SELECT n.symbol, tapeflow.minute(n.time) AS bucket,
                         tapeflow.candle_agg(n.time, n.price, n.size, n.side) AS candle,
                         tapeflow.profile_agg(n.price, n.size, n.side, s.tick_size) AS profile
                  FROM new_rows n JOIN tapeflow.symbols s ON s.symbol = n.symbol
                  GROUP BY 1, 2) g;
            END IF;
        -- The announcement reads the candle only, and takes typed rows: an anonymous record
        -- would be converted to tapeflow.bars_1m through its text form, profile included.
        WITH up AS (
            INSERT INTO tapeflow.bars_1m AS b (symbol, bucket, candle, profile)
            SELECT * FROM unnest(syms, buckets, candles, profiles) ORDER BY 1, 2
            ON CONFLICT (symbol, bucket) DO UPDATE
                SET candle = tapeflow.candle_merge(b.candle, EXCLUDED.candle),
                    profile = tapeflow.profile_merge(b.profile, EXCLUDED.profile)
            RETURNING b.symbol, b.bucket, b.candle
        )
        SELECT array_agg(ROW(up.symbol, up.bucket, up.candle, NULL::tapeflow.profile)::tapeflow.bars_1m)
          INTO changed FROM up;
    ELSE
        -- As in 002_candles: each symbol's newest changed minute from the trades stored before
        -- this statement plus this statement's own (taken from the transition table). The
        -- stored ones leave out this statement's through a NOT IN over them, hashed once: the
        -- NOT EXISTS per stored trade was planned as a nested loop over the statement's rows,
        -- quadratic in a busy minute (1.3 s for a 1,000-tick statement into a minute of 5,000
        -- trades a symbol, 13 ms now). The key's columns are never NULL, so NOT IN is exact.
        WITH touched AS (
            SELECT * FROM unnest(syms, buckets) t(symbol, bucket)
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
              AND (k.symbol, k.time, k.trade_id) NOT IN (SELECT f.symbol, f.time, f.trade_id FROM fresh f)
        ) stored
        CROSS JOIN LATERAL (
            SELECT tapeflow.candle_agg(f.time, f.price, f.size, f.side) AS candle FROM fresh f WHERE f.symbol = t.symbol
        ) mine;
    END IF;
    PERFORM tapeflow.announce_candles(changed);
    RETURN NULL;
END $$;

-- A correction that moves ticks to another symbol names a known one. Fires only for updates
-- that set the symbol column (and change it), so inserts pay nothing for it.
CREATE OR REPLACE FUNCTION tapeflow.ticks_symbol_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM tapeflow.symbols WHERE symbol = NEW.symbol FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown symbol: %', coalesce(NEW.symbol, 'NULL')
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = 'Every tick must name a row of tapeflow.symbols.',
                  HINT = 'insert the symbol into tapeflow.symbols first';
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS ticks_symbol_check ON tapeflow.ticks;
CREATE TRIGGER ticks_symbol_check BEFORE UPDATE OF symbol ON tapeflow.ticks
    FOR EACH ROW WHEN (NEW.symbol IS DISTINCT FROM OLD.symbol) EXECUTE FUNCTION tapeflow.ticks_symbol_check();

-- Symbols named by ticks stay: what the foreign key refused, these triggers refuse. -----------
--
-- A tick writer holds FOR SHARE on its symbols until it commits (ticks_inserted), so a delete
-- or rename of one of them waits for every open writer before its trigger runs; at READ
-- COMMITTED the trigger's query then sees their ticks and refuses. A writer that comes second
-- finds the symbol gone and is refused itself. Under REPEATABLE READ or SERIALIZABLE the check
-- would read a snapshot taken before that wait, so there a symbol is not deleted or renamed.
CREATE OR REPLACE FUNCTION tapeflow.symbols_in_use() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        -- After the truncation (of every table the statement named): ticks truncated along with
        -- the symbols are gone by now.
        IF EXISTS (SELECT 1 FROM tapeflow.ticks) THEN
            RAISE EXCEPTION 'tapeflow.symbols cannot be truncated while tapeflow.ticks has rows'
                USING ERRCODE = 'foreign_key_violation', HINT = 'truncate tapeflow.ticks in the same statement';
        END IF;
        RETURN NULL;
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'symbol %: a symbol can only be deleted at READ COMMITTED isolation, not %',
            OLD.symbol, upper(current_setting('transaction_isolation'))
            USING HINT = 'a snapshot taken earlier in the transaction cannot see ticks committed since';
    END IF;
    IF EXISTS (SELECT 1 FROM tapeflow.ticks WHERE symbol = OLD.symbol) THEN
        RAISE EXCEPTION 'symbol % cannot be deleted: tapeflow.ticks has trades of it', OLD.symbol
            USING ERRCODE = 'foreign_key_violation', HINT = 'delete its ticks first';
    END IF;
    RETURN OLD;
END $$;
DROP TRIGGER IF EXISTS symbols_in_use ON tapeflow.symbols;
CREATE TRIGGER symbols_in_use BEFORE DELETE ON tapeflow.symbols
    FOR EACH ROW EXECUTE FUNCTION tapeflow.symbols_in_use();
DROP TRIGGER IF EXISTS symbols_in_use_truncate ON tapeflow.symbols;
CREATE TRIGGER symbols_in_use_truncate AFTER TRUNCATE ON tapeflow.symbols
    FOR EACH STATEMENT EXECUTE FUNCTION tapeflow.symbols_in_use();

-- 010's checks, plus: a symbol with ticks keeps its name.
CREATE OR REPLACE FUNCTION tapeflow.symbols_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = NEW.timezone) THEN
        RAISE EXCEPTION 'symbol %: unknown timezone %', NEW.symbol, NEW.timezone
            USING HINT = 'use an IANA name such as America/New_York or UTC';
    END IF;
    -- Minute profiles are binned on the tick size; changing it would split the history.
    IF TG_OP = 'UPDATE' AND (NEW.tick_size <> OLD.tick_size OR NEW.symbol <> OLD.symbol) THEN
        IF current_setting('transaction_isolation') <> 'read committed' THEN
            RAISE EXCEPTION 'symbol %: tick_size or symbol can only change at READ COMMITTED isolation, not %',
                OLD.symbol, upper(current_setting('transaction_isolation'))
                USING HINT = 'a snapshot taken earlier in the transaction cannot see ticks committed since';
        END IF;
        IF EXISTS (SELECT 1 FROM tapeflow.ticks WHERE symbol = OLD.symbol) THEN
            IF NEW.symbol <> OLD.symbol THEN
                RAISE EXCEPTION 'symbol % cannot be renamed to %: tapeflow.ticks has trades of it', OLD.symbol, NEW.symbol
                    USING ERRCODE = 'foreign_key_violation';
            END IF;
            RAISE EXCEPTION 'symbol %: tick_size cannot change from % to % once ticks are stored',
                NEW.symbol, OLD.tick_size, NEW.tick_size;
        END IF;
    END IF;
    RETURN NEW;
END $$;
