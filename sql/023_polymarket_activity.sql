-- Polymarket activity announced for the dashboard: book writes, arbitrage trades (paper and
-- live, new or changed) and settlements, once per statement on tapeflow_polymarket as json
-- {event: <table>, rows: <count>}. Opportunities keep their own channel (tapeflow_arbitrage),
-- which the executor listens to; this one only nudges readers, so a burst is one small message
-- per statement, never one per row.

CREATE OR REPLACE FUNCTION tapeflow.polymarket_activity() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT count(*) INTO n FROM old_rows;
    ELSE
        SELECT count(*) INTO n FROM new_rows;
    END IF;
    IF n > 0 THEN
        PERFORM pg_notify('tapeflow_polymarket', json_build_object('event', TG_TABLE_NAME, 'op', lower(TG_OP), 'rows', n)::text);
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION tapeflow.polymarket_activity() IS 'Announces book, arbitrage trade and settlement writes on tapeflow_polymarket, once per statement: {event: table, op, rows}.';

DO $$
DECLARE
    t text;
    op text;
BEGIN
    FOREACH t IN ARRAY ARRAY['polymarket_books', 'arbitrage_trades', 'polymarket_settlements'] LOOP
        FOREACH op IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
            EXECUTE format('DROP TRIGGER IF EXISTS %I ON tapeflow.%I', t || '_announce_' || op, t);
            EXECUTE format(
                'CREATE TRIGGER %I AFTER %s ON tapeflow.%I REFERENCING %s TABLE AS %s FOR EACH STATEMENT EXECUTE FUNCTION tapeflow.polymarket_activity()',
                t || '_announce_' || op, upper(op), t,
                CASE op WHEN 'delete' THEN 'OLD' ELSE 'NEW' END,
                CASE op WHEN 'delete' THEN 'old_rows' ELSE 'new_rows' END);
        END LOOP;
    END LOOP;
END $$;
