-- Ready-made one-minute bars (e.g. a vendor's history) for symbols or periods without ticks.
-- They carry no aggressor split and no volume profile; the bar engine estimates both from the
-- bar. tapeflow.minute_bars, what candles() and backtests read, now holds tick-built minutes
-- and imported ones (a minute present in both is rolled up from both).
-- Plain columns (no extension types), so the table is base data that survives any upgrade.
CREATE TABLE IF NOT EXISTS tapeflow.bars_1m_imported (
    symbol text NOT NULL REFERENCES tapeflow.symbols (symbol),
    bucket timestamptz NOT NULL,
    open   double precision NOT NULL,
    high   double precision NOT NULL,
    low    double precision NOT NULL,
    close  double precision NOT NULL,
    volume double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (symbol, bucket),
    CHECK (bucket = date_bin('1 minute', bucket, timestamptz '2000-01-01 00:00+00')),
    CHECK (low > 0 AND low <= least(open, close) AND high >= greatest(open, close) AND high < 'Infinity'),
    CHECK (volume >= 0 AND volume < 'Infinity')
);
COMMENT ON TABLE tapeflow.bars_1m_imported IS 'Imported one-minute OHLCV bars (bucket = the minute''s start) for periods without ticks.';

CREATE OR REPLACE VIEW tapeflow.minute_bars AS
SELECT symbol, bucket, candle, profile FROM tapeflow.bars_1m
UNION ALL
SELECT symbol, bucket, tapeflow.candle_of(bucket, open, high, low, close, volume), NULL::tapeflow.profile
FROM tapeflow.bars_1m_imported;
