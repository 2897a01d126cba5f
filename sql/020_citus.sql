-- Scale-out on Citus: ticks, quotes and the one-minute rollups distributed by symbol
-- (co-located), symbols and configuration as reference tables. A no-op unless the citus
-- extension is installed in this database and this is its coordinator (scripts/citus.sh sets
-- that up); on a single server nothing here changes anything but adding the functions below.
--
-- Everything is done by tapeflow.citus_apply(), which is idempotent. Convention for later
-- migrations: one that (re)creates a trigger on tapeflow.ticks or on a reference table, or adds
-- a table keyed by symbol, ends with `SELECT tapeflow.citus_apply();` (a no-op on one server),
-- which puts the Citus layout back over whatever that migration did:
-- * the tick triggers become the shard-level ones defined here, and
-- * user triggers of reference tables run on the coordinator's placement only.
-- A new table keyed by symbol that should be distributed is added to the list in
-- citus_apply() (distributed tables need the symbol in every unique key).
--
-- Why the tick triggers differ from 002/013 on Citus:
-- * A trigger on a distributed table runs on each shard, on the workers, where Citus refuses
--   (or cannot plan) queries on distributed and reference tables. The shard-level trigger
--   therefore names the co-located shards directly: the bars_1m shard covering the same hash
--   range as the ticks shard that fired, and the local placement of symbols, both found from
--   Citus metadata (pg_dist_shard), which every worker holds.
-- * NOTIFY on a worker would reach no client of the coordinator, and makes the worker's
--   PREPARE TRANSACTION fail (a write spanning workers commits in two phases). The trigger
--   instead queues the announcement in tapeflow.candle_announcements (co-located, so in the
--   same shard transaction as the ticks) and tapeflow.citus_announcer() on the coordinator
--   sends it with pg_notify after the write committed, as tapeflow_candles, payload unchanged.
-- * The same two-phase rule holds for reference tables, whose triggers fire on every
--   placement: their user triggers are disabled on the workers' placements and run on the
--   coordinator's (Citus keeps one there), where they can query distributed tables and their
--   NOTIFY reaches the coordinator's listeners.

-- The placement, on this node, of relation rel's shard co-located with shard `shard` (for a
-- reference table: its only shard), as a qualified name.
CREATE OR REPLACE FUNCTION tapeflow.citus_colocated_shard(rel regclass, shard bigint) RETURNS text
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    name text;
BEGIN
    SELECT shard_name(rel, b.shardid) INTO name
    FROM pg_dist_shard b
    WHERE b.logicalrelid = rel
      AND (b.shardminvalue IS NULL
           OR b.shardminvalue = (SELECT t.shardminvalue FROM pg_dist_shard t WHERE t.shardid = shard));
    IF name IS NULL THEN
        RAISE EXCEPTION 'no shard of % co-located with shard %', rel, shard;
    END IF;
    RETURN name;
END $$;

-- The shard id of a trigger's table (a shard is named <table>_<shardid>).
CREATE OR REPLACE FUNCTION tapeflow.citus_shard_id(table_name name) RETURNS bigint
    LANGUAGE sql IMMUTABLE RETURN substring(table_name FROM '_([0-9]+)$')::bigint;

-- Inserted ticks, on a ticks shard: what 013's ticks_inserted does, on co-located shards. The
-- statement's symbols are locked FOR SHARE on this node's placement of symbols (an update of
-- a symbol from the coordinator writes every placement, so it waits for this writer), an
-- unknown one refuses the statement, and the minutes are upserted in (symbol, bucket) order.
CREATE OR REPLACE FUNCTION tapeflow.citus_ticks_inserted() RETURNS trigger LANGUAGE plpgsql
SET enable_sort = off SET jit = off AS $$
DECLARE
    shard bigint := tapeflow.citus_shard_id(TG_TABLE_NAME);
    symbols_shard text := tapeflow.citus_colocated_shard('tapeflow.symbols', shard);
    bars_shard text := tapeflow.citus_colocated_shard('tapeflow.bars_1m', shard);
    outbox_shard text := tapeflow.citus_colocated_shard('tapeflow.candle_announcements', shard);
    wanted text[];
    locked text[];
    unknown text;
    n_unknown bigint;
BEGIN
    wanted := ARRAY(SELECT DISTINCT symbol FROM new_rows ORDER BY 1);
    IF cardinality(wanted) = 0 THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT array_agg(symbol) FROM (SELECT symbol FROM %s WHERE symbol = ANY ($1) ORDER BY symbol FOR SHARE) l',
                   symbols_shard)
        INTO locked USING wanted;
    SELECT string_agg(w, ', ' ORDER BY w), count(*) INTO unknown, n_unknown
    FROM unnest(wanted) w WHERE w <> ALL (coalesce(locked, '{}'));
    IF n_unknown > 0 THEN
        RAISE EXCEPTION 'unknown symbol%: %', CASE WHEN n_unknown > 1 THEN 's' ELSE '' END, unknown
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = 'Every tick must name a row of tapeflow.symbols; none of this statement''s ticks was stored.',
                  HINT = 'insert the symbol into tapeflow.symbols first';
    END IF;
    EXECUTE format($q$
        WITH agg AS (
            SELECT n.symbol, tapeflow.minute(n.time) AS bucket,
                   tapeflow.candle_agg(n.time, n.price, n.size, n.side) AS candle,
                   tapeflow.profile_agg(n.price, n.size, n.side, s.tick_size) AS profile
            FROM new_rows n JOIN %1$s s ON s.symbol = n.symbol
            GROUP BY 1, 2
        ), up AS (
            INSERT INTO %2$s AS b (symbol, bucket, candle, profile)
            SELECT * FROM agg ORDER BY 1, 2
            ON CONFLICT (symbol, bucket) DO UPDATE
                SET candle = tapeflow.candle_merge(b.candle, EXCLUDED.candle),
                    profile = tapeflow.profile_merge(b.profile, EXCLUDED.profile)
            RETURNING b.symbol, b.bucket, b.candle
        )
        INSERT INTO %3$s (symbol, bucket, candle)
        SELECT DISTINCT ON (symbol) symbol, bucket, candle FROM up ORDER BY symbol, bucket DESC$q$,
        symbols_shard, bars_shard, outbox_shard);
    RETURN NULL;
END $$;

-- Deleted or updated ticks (corrections), on a ticks shard: the touched minutes are
-- recomputed from this shard's ticks, as 002's ticks_changed does from the table.
CREATE OR REPLACE FUNCTION tapeflow.citus_ticks_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    shard bigint := tapeflow.citus_shard_id(TG_TABLE_NAME);
    ticks_shard text := format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME);
    symbols_shard text := tapeflow.citus_colocated_shard('tapeflow.symbols', shard);
    bars_shard text := tapeflow.citus_colocated_shard('tapeflow.bars_1m', shard);
    touched_symbols text[];
    touched_buckets timestamptz[];
BEGIN
    IF TG_OP = 'UPDATE' THEN
        SELECT array_agg(symbol), array_agg(bucket) INTO touched_symbols, touched_buckets
        FROM (SELECT symbol, tapeflow.minute(time) AS bucket FROM old_rows
              UNION SELECT symbol, tapeflow.minute(time) FROM new_rows) t;
    ELSE
        SELECT array_agg(symbol), array_agg(bucket) INTO touched_symbols, touched_buckets
        FROM (SELECT DISTINCT symbol, tapeflow.minute(time) AS bucket FROM old_rows) t;
    END IF;
    IF touched_symbols IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('DELETE FROM %s b USING unnest($1, $2) t(symbol, bucket) WHERE b.symbol = t.symbol AND b.bucket = t.bucket',
                   bars_shard) USING touched_symbols, touched_buckets;
    EXECUTE format($q$
        INSERT INTO %1$s (symbol, bucket, candle, profile)
        SELECT k.symbol, tapeflow.minute(k.time), tapeflow.candle_agg(k.time, k.price, k.size, k.side),
               tapeflow.profile_agg(k.price, k.size, k.side, s.tick_size)
        FROM %2$s k JOIN unnest($1, $2) t(symbol, bucket)
          ON k.symbol = t.symbol AND k.time >= t.bucket AND k.time < t.bucket + interval '1 minute'
        JOIN %3$s s ON s.symbol = k.symbol
        GROUP BY 1, 2$q$, bars_shard, ticks_shard, symbols_shard) USING touched_symbols, touched_buckets;
    RETURN NULL;
END $$;

-- Sends the queued candle announcements (coordinator), oldest first, with the payload of
-- tapeflow.announce_candles; returns how many. They leave the queue in the same transaction,
-- so each is sent once, when that transaction commits.
CREATE OR REPLACE FUNCTION tapeflow.citus_announce_pending() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    r record;
    n bigint := 0;
BEGIN
    FOR r IN
        WITH sent AS (DELETE FROM tapeflow.candle_announcements RETURNING *)
        SELECT * FROM sent ORDER BY queued_at, symbol
    LOOP
        PERFORM tapeflow.announce_candles(ARRAY[ROW(r.symbol, r.bucket, r.candle, NULL::tapeflow.profile)::tapeflow.bars_1m]);
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

-- The coordinator's announcer: sends what the tick shards queued, every `poll`, until the
-- session ends (scripts/citus.sh runs it; CALL tapeflow.citus_announcer() by hand otherwise).
-- One transaction per round, so a notification leaves as soon as its round commits.
CREATE OR REPLACE PROCEDURE tapeflow.citus_announcer(poll interval DEFAULT '200 milliseconds')
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT citus_is_coordinator() THEN
        RAISE EXCEPTION 'tapeflow.citus_announcer runs on the Citus coordinator';
    END IF;
    LOOP
        PERFORM tapeflow.citus_announce_pending();
        COMMIT;
        PERFORM pg_sleep(extract(epoch FROM poll));
    END LOOP;
END $$;

-- Applies the Citus layout; returns false (and does nothing) without Citus or off the
-- coordinator. Safe to run again.
CREATE OR REPLACE FUNCTION tapeflow.citus_apply() RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    t text;
    shard text;
    f record;
    body text;
    def text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN false;
    END IF;
    IF NOT citus_is_coordinator() THEN
        RETURN false;
    END IF;
    -- Triggers on distributed tables run on their shards (see the header); later migrations
    -- that create such triggers need the setting too.
    PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
    EXECUTE format('ALTER DATABASE %I SET citus.enable_unsafe_triggers = on', current_database());
    -- A foreign key to a reference table needs every step over one connection per node.
    PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);

    CREATE TABLE IF NOT EXISTS tapeflow.candle_announcements (
        symbol    text NOT NULL,
        bucket    timestamptz NOT NULL,
        candle    tapeflow.candle NOT NULL,
        queued_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    COMMENT ON TABLE tapeflow.candle_announcements IS
        'Citus only: candle announcements queued by the tick shards, sent by tapeflow.citus_announcer() on the coordinator.';

    -- Distributed by symbol, co-located with ticks (shard count: citus.shard_count, 32 by
    -- default). Ticks first: tables referencing symbols depend on it.
    IF NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'tapeflow.ticks'::regclass) THEN
        PERFORM create_distributed_table('tapeflow.ticks', 'symbol');
    END IF;
    FOREACH t IN ARRAY ARRAY['tapeflow.bars_1m', 'tapeflow.candle_announcements'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = t::regclass) THEN
            PERFORM create_distributed_table(t, 'symbol', colocate_with => 'tapeflow.ticks');
        END IF;
    END LOOP;
    -- Reference tables: instruments and configuration, on every node. Local tables with a
    -- foreign key to them become Citus local tables (still on the coordinator only).
    FOREACH t IN ARRAY ARRAY['tapeflow.symbols', 'tapeflow.strategy_configs', 'tapeflow.risk_limits'] LOOP
        IF to_regclass(t) IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = t::regclass AND partmethod = 'n'
                           AND repmodel = 't') THEN
            PERFORM create_reference_table(t);
        END IF;
    END LOOP;
    FOREACH t IN ARRAY ARRAY['tapeflow.quotes', 'tapeflow.bars_1m_imported'] LOOP
        IF to_regclass(t) IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = t::regclass AND partmethod = 'h') THEN
            PERFORM create_distributed_table(t, 'symbol', colocate_with => 'tapeflow.ticks');
        END IF;
    END LOOP;

    -- The tick triggers, at shard level. A tick's symbol is its distribution column, which
    -- Citus does not let an update change, so 013's ticks_symbol_check has nothing to do.
    DROP TRIGGER IF EXISTS ticks_symbol_check ON tapeflow.ticks;
    DROP TRIGGER IF EXISTS ticks_inserted ON tapeflow.ticks;
    CREATE TRIGGER ticks_inserted AFTER INSERT ON tapeflow.ticks
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tapeflow.citus_ticks_inserted();
    DROP TRIGGER IF EXISTS ticks_deleted ON tapeflow.ticks;
    CREATE TRIGGER ticks_deleted AFTER DELETE ON tapeflow.ticks
        REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tapeflow.citus_ticks_changed();
    DROP TRIGGER IF EXISTS ticks_updated ON tapeflow.ticks;
    CREATE TRIGGER ticks_updated AFTER UPDATE ON tapeflow.ticks
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tapeflow.citus_ticks_changed();

    -- Reference tables' user triggers: on the coordinator's placement only. Disabling them on
    -- the table reaches every placement in this transaction; the coordinator's own placement
    -- is then enabled again, locally.
    FOR t, shard IN
        SELECT p.logicalrelid::regclass::text, shard_name(s.logicalrelid, s.shardid)
        FROM pg_dist_shard s JOIN pg_dist_partition p USING (logicalrelid)
        WHERE p.partmethod = 'n' AND p.repmodel = 't'
          AND p.logicalrelid::regclass::text LIKE 'tapeflow.%'
          AND EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = s.logicalrelid AND NOT g.tgisinternal)
    LOOP
        EXECUTE format('ALTER TABLE %s DISABLE TRIGGER USER', t);
        EXECUTE format('ALTER TABLE %s ENABLE TRIGGER USER', shard);
    END LOOP;
    -- SQL-language functions querying distributed tables: Citus cannot plan their statements
    -- (it does not see an SQL function's parameters). The same statement as PL/pgSQL, whose
    -- parameters it sees, with column names taking precedence over parameter names as in SQL
    -- functions.
    FOR f IN
        SELECT p.oid, p.proretset, p.prorettype, p.prosrc FROM pg_proc p
        WHERE p.pronamespace = 'tapeflow'::regnamespace
          AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'sql') AND p.prosqlbody IS NULL
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
          AND p.prosrc ~ 'tapeflow\.(ticks|quotes|bars_1m|bars_1m_imported|minute_bars)\M'
    LOOP
        body := regexp_replace(f.prosrc, ';\s*$', '');
        IF position(';' IN body) > 0 THEN
            RAISE EXCEPTION 'tapeflow.citus_apply: % has several statements; write it in PL/pgSQL', f.oid::regprocedure;
        END IF;
        body := CASE WHEN f.proretset
            THEN format(E'\n#variable_conflict use_column\nBEGIN\n    RETURN QUERY %s;\nEND\n', body)
            ELSE format(E'\n#variable_conflict use_column\nDECLARE\n    r %s;\nBEGIN\n    FOR r IN %s\n    LOOP\n        RETURN r;\n    END LOOP;\n    RETURN NULL;\nEND\n',
                        format_type(f.prorettype, NULL), body) END;
        def := pg_get_functiondef(f.oid);
        def := regexp_replace(def, '\n LANGUAGE sql\n', E'\n LANGUAGE plpgsql\n');
        def := replace(def, f.prosrc, body);
        EXECUTE def;
    END LOOP;
    -- Functions that read reference tables only (a symbol's calendar, say) may be pushed to a
    -- worker inside a query on a shard, where Citus refuses the nested read unless told that
    -- it is safe; it is, as every node holds a whole copy of a reference table.
    FOR f IN
        SELECT p.oid FROM pg_proc p
        WHERE p.pronamespace = 'tapeflow'::regnamespace AND p.prokind = 'f'
          AND p.prolang IN (SELECT oid FROM pg_language WHERE lanname IN ('sql', 'plpgsql'))
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
          AND p.prosrc ~ 'tapeflow\.(symbols|strategy_configs|risk_limits)\M'
          AND p.prosrc !~ 'tapeflow\.(ticks|quotes|bars_1m|bars_1m_imported|minute_bars|candle_announcements)\M'
          AND p.prorettype <> 'trigger'::regtype
          AND NOT coalesce('citus.allow_nested_distributed_execution=on' = ANY (p.proconfig), false)
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET citus.allow_nested_distributed_execution = on', f.oid::regprocedure);
    END LOOP;
    RETURN true;
END $$;

SELECT tapeflow.citus_apply();
