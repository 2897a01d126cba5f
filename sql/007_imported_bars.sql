-- Ready-made one-minute bars (e.g. a vendor's history) for symbols or periods without ticks.
-- They carry no aggressor split and no volume profile; the bar engine estimates both from the
-- bar. tapeflow.minute_bars is what candles() and backtests read: tick-built minutes and
-- imported ones (a minute present in both is rolled up from both).
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

CREATE OR REPLACE FUNCTION tapeflow.candles(
    symbol text, timeframe text, "from" timestamptz, "to" timestamptz)
RETURNS TABLE ("time" timestamptz, open double precision, high double precision, low double precision,
               close double precision, volume double precision, buy_volume double precision,
               sell_volume double precision, trades bigint, vwap double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s tapeflow.symbols;
BEGIN
    IF tapeflow.timeframe_interval(timeframe) IS NULL THEN
        RAISE EXCEPTION 'unknown timeframe %', coalesce(timeframe, 'NULL')
            USING HINT = 'use one of 1m, 5m, 15m, 30m, 1h, 1d';
    END IF;
    SELECT * INTO s FROM tapeflow.symbols WHERE symbols.symbol = candles.symbol;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown symbol %', coalesce(candles.symbol, 'NULL')
            USING HINT = 'see tapeflow.symbols';
    END IF;
    RETURN QUERY
    SELECT r.t, tapeflow.open(r.c), tapeflow.high(r.c), tapeflow.low(r.c), tapeflow.close(r.c),
           tapeflow.volume(r.c), tapeflow.buy_volume(r.c), tapeflow.sell_volume(r.c),
           tapeflow.trades(r.c), tapeflow.vwap(r.c)
    FROM (
        SELECT tapeflow.bar_start(b.bucket, timeframe, s.timezone, s.session_open) AS t,
               tapeflow.rollup(b.candle) AS c
        FROM tapeflow.minute_bars b
        WHERE b.symbol = candles.symbol
          AND b.bucket >= tapeflow.bar_start("from", timeframe, s.timezone, s.session_open)
          AND b.bucket < "to"
        GROUP BY 1
    ) r
    ORDER BY r.t;
END $$;
