-- Cancels and corrections that arrived before their trade.
--
-- A provider's notice names a trade it sent earlier. It can reach the feeder first: a gap's
-- history page fetched before the cancel and delivered after the stream's notice, a backfill
-- run after the live feed, or a trade refused and then replayed. A notice whose trade is not
-- stored is kept here (in the same transaction that found nothing) and applied by the feeder's
-- writer as soon as a trade with that id is written. A notice already applied that comes again
-- is kept too: should its trade ever be written again (a replay of a history fetched before the
-- notice), it is removed again. Kept for a week after it was received (the feeder purges older
-- ones when its writers connect); a person may read or delete rows here at any time.
-- A plain table on every engine: on a Citus coordinator it stays a local table, like
-- feed_rejects.
CREATE TABLE IF NOT EXISTS tapeflow.held_amendments (
    symbol       text NOT NULL,
    -- The stored trade's id, and the notice's time: the trade is looked for in
    -- [at - 16 hours, at + 1 minute] (tapeflow_db::amend::AMEND_LOOKBACK).
    trade_id     text NOT NULL,
    at           timestamptz NOT NULL,
    -- A correction's new trade; all NULL for a cancel.
    new_trade_id text,
    price        double precision,
    size         double precision,
    conditions   text[],
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, trade_id, at),
    CHECK ((new_trade_id IS NULL) = (price IS NULL) AND (price IS NULL) = (size IS NULL))
);
COMMENT ON TABLE tapeflow.held_amendments IS
    'Cancels and corrections whose trade was not stored when they arrived, applied when it is written (kept a week).';
