-- Core schema: the extension, instruments with their trading calendars, ticks and quotes.
-- TimescaleDB is used when the server has it preloaded, unless the session sets
-- tapeflow.timescaledb = off (the plain-PostgreSQL path, which tests also exercise).
DO $$
DECLARE
    version text;
BEGIN
    IF coalesce(current_setting('tapeflow.timescaledb', true), '') <> 'off'
       AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND current_setting('shared_preload_libraries') LIKE '%timescaledb%' THEN
        -- 2.18 is the first release with transition tables on hypertables, which the
        -- statement-level tick triggers of 002_candles need (and 2.10 the first whose
        -- continuous aggregates may join a table). Refuse older releases here, before
        -- anything is created, rather than half-way through the schema.
        SELECT coalesce((SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'), default_version)
          INTO version FROM pg_available_extensions WHERE name = 'timescaledb';
        IF string_to_array(substring(version FROM '^[0-9]+(?:\.[0-9]+)*'), '.')::int[] < '{2,18}' THEN
            RAISE EXCEPTION 'TimescaleDB % is too old for tapeflow: 2.18 or newer is needed', version
                USING HINT = 'upgrade TimescaleDB, or migrate with TAPEFLOW_TIMESCALEDB=off for the plain-PostgreSQL schema';
        END IF;
        CREATE EXTENSION IF NOT EXISTS timescaledb;
    END IF;
END $$;
CREATE EXTENSION IF NOT EXISTS tapeflow;

CREATE TABLE IF NOT EXISTS tapeflow.symbols (
    symbol        text PRIMARY KEY,
    name          text,
    asset_class   text NOT NULL DEFAULT 'us_equity'
                  CHECK (asset_class IN ('us_equity', 'etf', 'crypto', 'fx', 'future', 'index', 'prediction')),
    exchange      text,
    tick_size     double precision NOT NULL CHECK (tick_size > 0 AND tick_size < 'Infinity'),
    currency      text NOT NULL DEFAULT 'USD',
    timezone      text NOT NULL DEFAULT 'America/New_York',
    -- Regular session in the symbol's timezone; open = close means a 24-hour market.
    session_open  time NOT NULL DEFAULT '09:30',
    session_close time NOT NULL DEFAULT '16:00',
    provider      text NOT NULL DEFAULT 'demo',
    provider_ref  text,
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tapeflow.symbols IS 'Instruments: tick size, trading calendar and which provider feeds them (provider_ref = the provider''s own id: an epic, a token id, ...).';

-- A bad timezone name would only fail later, deep inside a rollup; refuse it on write.
CREATE OR REPLACE FUNCTION tapeflow.symbols_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = NEW.timezone) THEN
        RAISE EXCEPTION 'symbol %: unknown timezone %', NEW.symbol, NEW.timezone
            USING HINT = 'use an IANA name such as America/New_York or UTC';
    END IF;
    -- Minute profiles are binned on the tick size; changing it would split the history.
    IF TG_OP = 'UPDATE' AND NEW.tick_size <> OLD.tick_size
       AND EXISTS (SELECT 1 FROM tapeflow.ticks WHERE symbol = NEW.symbol) THEN
        RAISE EXCEPTION 'symbol %: tick_size cannot change from % to % once ticks are stored',
            NEW.symbol, OLD.tick_size, NEW.tick_size;
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS symbols_check ON tapeflow.symbols;
CREATE TRIGGER symbols_check BEFORE INSERT OR UPDATE ON tapeflow.symbols
    FOR EACH ROW EXECUTE FUNCTION tapeflow.symbols_check();

CREATE TABLE IF NOT EXISTS tapeflow.ticks (
    time        timestamptz NOT NULL,
    symbol      text NOT NULL REFERENCES tapeflow.symbols (symbol),
    price       double precision NOT NULL CHECK (price > 0 AND price < 'Infinity'),
    size        double precision NOT NULL CHECK (size >= 0 AND size < 'Infinity'),
    -- Aggressor: B buyer, S seller, N unknown.
    side        "char" NOT NULL DEFAULT 'N' CHECK (side IN ('B', 'S', 'N')),
    side_source text NOT NULL DEFAULT 'none' CHECK (side_source IN ('venue', 'inferred', 'simulated', 'none')),
    -- The provider's trade id or sequence; with the symbol (and time) it identifies the trade.
    trade_id    text NOT NULL,
    exchange    text,
    conditions  text[],
    CONSTRAINT ticks_trade_unique UNIQUE (symbol, trade_id, time)
);
CREATE INDEX IF NOT EXISTS ticks_symbol_time ON tapeflow.ticks (symbol, time);
COMMENT ON TABLE tapeflow.ticks IS 'Trades. (symbol, trade_id, time) is unique so a replayed feed never duplicates a trade.';

CREATE TABLE IF NOT EXISTS tapeflow.quotes (
    time     timestamptz NOT NULL,
    symbol   text NOT NULL REFERENCES tapeflow.symbols (symbol),
    bid      double precision NOT NULL CHECK (bid >= 0 AND bid < 'Infinity'),
    ask      double precision NOT NULL CHECK (ask >= 0 AND ask < 'Infinity'),
    bid_size double precision NOT NULL DEFAULT 0 CHECK (bid_size >= 0),
    ask_size double precision NOT NULL DEFAULT 0 CHECK (ask_size >= 0),
    exchange text
);
CREATE INDEX IF NOT EXISTS quotes_symbol_time ON tapeflow.quotes (symbol, time);
COMMENT ON TABLE tapeflow.quotes IS 'Top of book.';

-- With TimescaleDB, ticks and quotes become hypertables partitioned by day, compressed
-- (columnstore) after a week. Segmenting by symbol keeps a symbol's trades together, so a
-- query for one symbol decompresses only its own batches. Ordering by time and then trade_id
-- covers every column of ticks_trade_unique: a replayed trade that lands in a compressed
-- chunk is checked against only the batches whose min/max metadata may hold it.
DO $$
DECLARE
    saved_level text := current_setting('client_min_messages');
BEGIN
    IF coalesce(current_setting('tapeflow.timescaledb', true), '') <> 'off'
       AND EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        -- TimescaleDB warns about any "char" column, taking it for the blank-padded char(n);
        -- side is the one-byte "char" on purpose (the aggregates take it), so that warning
        -- is noise for whoever runs the migration.
        PERFORM set_config('client_min_messages', 'error', true);
        PERFORM create_hypertable('tapeflow.ticks', by_range('time', interval '1 day'),
                                  if_not_exists => true, migrate_data => true);
        PERFORM set_config('client_min_messages', saved_level, true);
        PERFORM create_hypertable('tapeflow.quotes', by_range('time', interval '1 day'),
                                  if_not_exists => true, migrate_data => true);
        ALTER TABLE tapeflow.ticks SET (timescaledb.enable_columnstore, timescaledb.segmentby = 'symbol',
                                        timescaledb.orderby = 'time, trade_id');
        ALTER TABLE tapeflow.quotes SET (timescaledb.enable_columnstore, timescaledb.segmentby = 'symbol',
                                         timescaledb.orderby = 'time');
        CALL add_columnstore_policy('tapeflow.ticks', after => interval '7 days', if_not_exists => true);
        CALL add_columnstore_policy('tapeflow.quotes', after => interval '7 days', if_not_exists => true);
    END IF;
END $$;
