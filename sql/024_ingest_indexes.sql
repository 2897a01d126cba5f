-- Tick ingest, per-row costs (README "Ingest speed"). Every statement here can run again (the
-- extension refresh re-applies the migrations after 001), on plain PostgreSQL, with TimescaleDB
-- and on a Citus coordinator.
--
-- * TimescaleDB: create_hypertable (001_core) gave ticks and quotes a b-tree on (time DESC)
--   besides their keys, one more index entry and its WAL per row. No query of ours reads ticks
--   or quotes by time alone except the continuous aggregate's refresh (bars_1m over ticks):
--   every other read leads with the symbol, which the keys (symbol, time, ...) serve, and the
--   aggregate's real-time part joins symbols and probes that key per symbol. Without any time
--   index the refresh of one minute would scan its whole day chunk (90 ms on a million-tick
--   chunk here against 15 ms), so on ticks the b-tree becomes a BRIN on time: a few pages that
--   the time-ordered inserts barely touch, and that serve the refresh's ranges as well. Quotes
--   keep no time index.

DO $$
DECLARE
    hypertables text[] := '{}';
    tbl text;
    idx regclass;
    time_attnum smallint;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        SELECT coalesce(array_agg(hypertable_name::text), '{}') INTO hypertables
        FROM timescaledb_information.hypertables
        WHERE hypertable_schema = 'tapeflow' AND hypertable_name IN ('ticks', 'quotes');
    END IF;
    FOREACH tbl IN ARRAY hypertables LOOP
        SELECT attnum INTO time_attnum FROM pg_attribute
        WHERE attrelid = format('tapeflow.%I', tbl)::regclass AND attname = 'time';
        IF tbl = 'ticks' AND to_regclass('tapeflow.ticks_time_brin') IS NULL THEN
            -- Built before the b-tree goes, so the refresh always has a time index. Should this
            -- release refuse it (compressed chunks), the b-tree stays: slower, not wrong.
            BEGIN
                CREATE INDEX ticks_time_brin ON tapeflow.ticks USING brin (time) WITH (autosummarize = on);
            EXCEPTION WHEN feature_not_supported OR object_not_in_prerequisite_state THEN
                RAISE WARNING 'tapeflow.ticks keeps its (time DESC) index: TimescaleDB refused a BRIN (%)', SQLERRM;
                CONTINUE;
            END;
        END IF;
        -- TimescaleDB's default index: a plain b-tree on time alone, no predicate, no constraint.
        FOR idx IN
            SELECT i.indexrelid::regclass FROM pg_index i
            JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
            WHERE i.indrelid = format('tapeflow.%I', tbl)::regclass
              AND am.amname = 'btree' AND NOT i.indisunique AND i.indnkeyatts = 1 AND i.indnatts = 1
              AND i.indkey[0] = time_attnum AND i.indpred IS NULL AND i.indexprs IS NULL
              AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
        LOOP
            EXECUTE format('DROP INDEX %s', idx);
        END LOOP;
    END LOOP;
END $$;
