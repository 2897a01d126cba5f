-- Feed watermarks: how far each symbol's stored trades are complete, as its feeder declares.
--
-- tapeflow.feed_watermarks: one row per symbol whose feed reports it; "every trade of the
-- symbol before complete_until is stored". A feeder writes it only after the trades before it
-- are committed, and refreshes updated_at while it is alive (the demo feed with each write,
-- a stream provider with a heartbeat), so a row not updated for risk_limits.bar_max_wait
-- belongs to a feeder that is gone.
CREATE TABLE IF NOT EXISTS tapeflow.feed_watermarks (
    symbol         text PRIMARY KEY REFERENCES tapeflow.symbols (symbol) ON DELETE CASCADE,
    complete_until timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tapeflow.feed_watermarks IS 'Per symbol, as its feeder declares: every trade before complete_until is stored; updated_at shows the feeder is alive.';

-- How long the scheduler holds a closed bar for a feed whose watermark is behind it: a
-- watermark not refreshed within this time is stale and bars close by the wall clock again.
ALTER TABLE tapeflow.risk_limits
    ADD COLUMN IF NOT EXISTS bar_max_wait interval NOT NULL DEFAULT '30 seconds'
        CHECK (bar_max_wait >= '0' AND bar_max_wait <= '1 hour');
COMMENT ON COLUMN tapeflow.risk_limits.bar_grace IS 'A minute bar is closed once its end is this far in the past (the wall-clock rule), and, for a symbol with a fresh watermark, once its feed''s complete_until has passed its end.';
COMMENT ON COLUMN tapeflow.risk_limits.bar_max_wait IS 'A symbol''s watermark (tapeflow.feed_watermarks) counts while updated within this time; a stale or absent one leaves its bars to the wall-clock rule (bar_grace).';
