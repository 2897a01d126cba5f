-- History loads that resume, and vendor bars kept as a completeness check.
--
-- tapeflow.backfill_progress: one row per history load of a provider for one symbol: a
-- `tapeflow-feed backfill` range ('range') or a gap the live feed fills after a reconnect or a
-- restart ('gap'). done_until advances only after the writer confirmed that every trade up to
-- it is stored, so an interrupted load (a crash, a kill, a lost database) resumes there and
-- loses nothing; re-reading from done_until (inclusive) stores nothing twice, since ticks are
-- unique on (symbol, trade_id, time). A finished load has finished_at.
CREATE TABLE IF NOT EXISTS tapeflow.backfill_progress (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider    text NOT NULL,
    symbol      text NOT NULL REFERENCES tapeflow.symbols (symbol) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('range', 'gap')),
    range_from  timestamptz NOT NULL,
    range_to    timestamptz NOT NULL,
    done_until  timestamptz,
    -- Trades read from the provider so far (stored or already there).
    trades      bigint NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    last_error  text,
    CHECK (range_to > range_from),
    CHECK (done_until IS NULL OR done_until >= range_from)
);
CREATE INDEX IF NOT EXISTS backfill_progress_open
    ON tapeflow.backfill_progress (provider, symbol, kind) WHERE finished_at IS NULL;
COMMENT ON TABLE tapeflow.backfill_progress IS 'History loads per provider and symbol (a backfill range or a live gap): everything up to done_until is stored; unfinished loads resume there.';

-- tapeflow.vendor_bars_1m: a provider's own one-minute bars (Alpaca's stream bars), kept apart
-- from tapeflow.bars_1m_imported on purpose: tapeflow.minute_bars rolls imported bars up with
-- the tick-built ones, so a vendor bar of a minute whose trades are stored would count that
-- minute's volume twice. Here they only check the stored ticks (tapeflow.feed_completeness).
CREATE TABLE IF NOT EXISTS tapeflow.vendor_bars_1m (
    provider    text NOT NULL,
    symbol      text NOT NULL REFERENCES tapeflow.symbols (symbol) ON DELETE CASCADE,
    bucket      timestamptz NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      double precision NOT NULL CHECK (volume >= 0),
    trade_count bigint CHECK (trade_count >= 0),
    vwap        double precision,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, symbol, bucket),
    CHECK (bucket = date_bin('1 minute', bucket, timestamptz '2000-01-01 00:00+00'))
);
COMMENT ON TABLE tapeflow.vendor_bars_1m IS 'Providers'' own one-minute bars, for checking stored ticks against (not rolled into candles).';

-- Per vendor bar: the vendor's volume and trade count beside those of the stored ticks of the
-- same minute. A vendor's bar may leave out trades whose conditions do not update a bar (odd
-- lots, some off-exchange prints), so stored >= vendor is normal; stored < vendor means ticks
-- are missing for that minute.
CREATE OR REPLACE VIEW tapeflow.feed_completeness AS
SELECT v.provider, v.symbol, v.bucket,
       v.volume AS vendor_volume, v.trade_count AS vendor_trades,
       coalesce(t.volume, 0) AS stored_volume, coalesce(t.trades, 0) AS stored_trades,
       coalesce(t.volume, 0) < v.volume OR coalesce(t.trades, 0) < coalesce(v.trade_count, 0) AS missing_ticks
FROM tapeflow.vendor_bars_1m v
LEFT JOIN LATERAL (
    SELECT sum(k.size) AS volume, count(*) AS trades
    FROM tapeflow.ticks k
    WHERE k.symbol = v.symbol AND k.time >= v.bucket AND k.time < v.bucket + interval '1 minute'
) t ON true;
COMMENT ON VIEW tapeflow.feed_completeness IS 'Vendor one-minute bars beside the stored ticks of the same minute (volume, trade count, missing_ticks).';
