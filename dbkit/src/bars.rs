//! Batched writes of ready-made one-minute bars into `tapeflow.bars_1m_imported`.
//!
//! A vendor may revise a bar it already sent (the minute still forming, a late correction), so
//! a bar already stored is replaced when it differs and left alone when it is the same: a
//! replayed batch writes nothing.

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

#[derive(Debug, Clone, PartialEq)]
pub struct BarRow {
    pub symbol: String,
    /// The minute's start.
    pub bucket: DateTime<Utc>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

/// Writes bars in one statement; returns how many were new or changed.
pub async fn write_bars(client: &mut Client, rows: &[BarRow]) -> anyhow::Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    // Arrays in; the batch's last version of a bar wins; in key order so concurrent writers
    // do not deadlock.
    let mut symbols = Vec::with_capacity(rows.len());
    let mut buckets = Vec::with_capacity(rows.len());
    let (mut o, mut h, mut l, mut c, mut v) = (vec![], vec![], vec![], vec![], vec![]);
    for r in rows {
        symbols.push(r.symbol.as_str());
        buckets.push(r.bucket);
        o.push(r.open);
        h.push(r.high);
        l.push(r.low);
        c.push(r.close);
        v.push(r.volume);
    }
    let n = client
        .execute(
            "INSERT INTO tapeflow.bars_1m_imported AS b (symbol, bucket, open, high, low, close, volume)
             SELECT DISTINCT ON (symbol, bucket) symbol, bucket, open, high, low, close, volume FROM unnest($1::text[], $2::timestamptz[], $3::float8[],
                    $4::float8[], $5::float8[], $6::float8[], $7::float8[])
                    WITH ORDINALITY AS x(symbol, bucket, open, high, low, close, volume, n)
             ORDER BY symbol, bucket, n DESC
             ON CONFLICT (symbol, bucket) DO UPDATE
                SET open = excluded.open, high = excluded.high, low = excluded.low,
                    close = excluded.close, volume = excluded.volume
                WHERE (b.open, b.high, b.low, b.close, b.volume)
                      IS DISTINCT FROM (excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume)",
            &[&symbols, &buckets, &o, &h, &l, &c, &v],
        )
        .await?;
    Ok(n)
}
