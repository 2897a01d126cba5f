-- Feed health and routing.
--
-- tapeflow.feed_status: one row per provider connection of a running `tapeflow-feed run`
-- (and of the demo feed), rewritten by the feeder about once a second. A row whose
-- updated_at is old belongs to a feeder that is gone: readers judge staleness by it.
CREATE TABLE IF NOT EXISTS tapeflow.feed_status (
    provider         text NOT NULL,
    -- The connection within the provider: a stream name or shard ("stream", "rest", "shard-2").
    connection       text NOT NULL,
    state            text NOT NULL CHECK (state IN ('starting', 'connecting', 'connected', 'backfilling',
                                                    'reconnecting', 'throttled', 'stopped', 'failed')),
    symbols          integer NOT NULL DEFAULT 0,
    last_message_at  timestamptz,
    -- Receipt time minus the provider's own time stamp of the newest message that carried one.
    lag_ms           double precision,
    messages_per_sec double precision NOT NULL DEFAULT 0,
    messages         bigint NOT NULL DEFAULT 0,
    reconnects       bigint NOT NULL DEFAULT 0,
    parse_errors     bigint NOT NULL DEFAULT 0,
    last_error       text,
    last_error_at    timestamptz,
    feeder_pid       integer,
    started_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, connection)
);
COMMENT ON TABLE tapeflow.feed_status IS 'Health of each feeder connection (state, last message, lag, rate, reconnects, errors), refreshed by the feeder about once a second.';

-- Routing: `tapeflow-feed run` follows tapeflow.symbols; a change is announced so that it takes
-- effect at once (the feeder also re-reads the table periodically, in case a notification was
-- missed while it was reconnecting).
CREATE OR REPLACE FUNCTION tapeflow.symbols_announce() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tapeflow_symbols', lower(TG_OP));
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS symbols_announce ON tapeflow.symbols;
CREATE TRIGGER symbols_announce AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tapeflow.symbols
    FOR EACH STATEMENT EXECUTE FUNCTION tapeflow.symbols_announce();

-- Records a feeder received but the database refused (an unknown symbol, a value out of
-- range), with the reason: kept rather than lost, for a person to look at.
CREATE TABLE IF NOT EXISTS tapeflow.feed_rejects (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    record      text NOT NULL,
    reason      text NOT NULL
);
COMMENT ON TABLE tapeflow.feed_rejects IS 'Feeder records the database refused, with the reason (nothing a provider sent is silently dropped).';
