-- The dashboard's watchlist: last price, change since the previous session's close and the
-- session's volume, per active symbol.
CREATE OR REPLACE VIEW tapeflow.watchlist AS
SELECT s.symbol, s.name, s.exchange, s.asset_class,
       tapeflow.close(l.candle) AS last,
       round(((tapeflow.close(l.candle) / p.prev_close - 1) * 100)::numeric, 2)::float8 AS change_pct,
       d.volume,
       l.bucket AS updated,
       NULL::text AS state,
       NULL::float8 AS aggression
FROM tapeflow.symbols s
LEFT JOIN LATERAL (
    SELECT b.bucket, b.candle FROM tapeflow.bars_1m b WHERE b.symbol = s.symbol ORDER BY b.bucket DESC LIMIT 1
) l ON true
LEFT JOIN LATERAL (
    SELECT sum(tapeflow.volume(b.candle)) AS volume FROM tapeflow.bars_1m b
    WHERE b.symbol = s.symbol AND b.bucket >= tapeflow.bar_start(l.bucket, '1d', s.timezone, s.session_open)
) d ON true
LEFT JOIN LATERAL (
    SELECT tapeflow.close(b.candle) AS prev_close FROM tapeflow.bars_1m b
    WHERE b.symbol = s.symbol AND b.bucket < tapeflow.bar_start(l.bucket, '1d', s.timezone, s.session_open)
    ORDER BY b.bucket DESC LIMIT 1
) p ON true
WHERE s.active;
COMMENT ON VIEW tapeflow.watchlist IS 'Per active symbol: last price, % change vs the previous trading day''s last price, the trading day''s volume.';
