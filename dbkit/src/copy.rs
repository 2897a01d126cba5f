//! Batched, idempotent writes of ticks and quotes.
//!
//! Rows are streamed with binary COPY into a temporary staging table and then moved with
//! `INSERT … ON CONFLICT DO NOTHING`: COPY is the fastest way in, and the conflict clause makes
//! a replayed batch (after a crash or reconnect) a no-op instead of a duplicate or an error.

use chrono::{DateTime, Utc};
use futures_util::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

#[derive(Debug, Clone, PartialEq)]
pub struct TickRow {
    pub time: DateTime<Utc>,
    pub symbol: String,
    pub price: f64,
    pub size: f64,
    /// `B`, `S` or `N`.
    pub side: u8,
    /// `venue`, `inferred`, `simulated` or `none`.
    pub side_source: &'static str,
    pub trade_id: String,
    pub exchange: Option<String>,
    pub conditions: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QuoteRow {
    pub time: DateTime<Utc>,
    pub symbol: String,
    pub bid: f64,
    pub ask: f64,
    pub bid_size: f64,
    pub ask_size: f64,
    pub exchange: Option<String>,
}

const TICK_COLUMNS: &str = "time, symbol, price, size, side, side_source, trade_id, exchange, conditions";

/// Writes ticks in one transaction; returns how many were new (duplicates are skipped).
pub async fn write_ticks(client: &mut Client, rows: &[TickRow]) -> anyhow::Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let tx = client.transaction().await?;
    tx.batch_execute(
        "SET LOCAL client_min_messages = warning;
         CREATE TEMP TABLE IF NOT EXISTS staging_ticks (LIKE tapeflow.ticks INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
    )
    .await?;
    let sink = tx.copy_in(&format!("COPY staging_ticks ({TICK_COLUMNS}) FROM STDIN BINARY")).await?;
    let types = [
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::CHAR,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT_ARRAY,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for r in rows {
        let side = r.side as i8;
        writer
            .as_mut()
            .write(&[
                &r.time,
                &r.symbol,
                &r.price,
                &r.size,
                &side,
                &r.side_source,
                &r.trade_id,
                &r.exchange,
                &r.conditions,
            ])
            .await?;
    }
    writer.finish().await?;
    // Sorted by time so the one-minute rollup sees each minute's trades together, and then by
    // the rest of the key, so two writers of the same trades (a replay racing the original)
    // wait for each other on the unique key instead of deadlocking.
    let inserted = tx
        .execute(
            &format!(
                "INSERT INTO tapeflow.ticks ({TICK_COLUMNS}) SELECT {TICK_COLUMNS} FROM staging_ticks
                 ORDER BY time, symbol, trade_id ON CONFLICT DO NOTHING"
            ),
            &[],
        )
        .await?;
    tx.commit().await?;
    Ok(inserted)
}

const QUOTE_COLUMNS: &str = "time, symbol, bid, ask, bid_size, ask_size, exchange";

/// Writes top-of-book quotes in one transaction, as ticks are written; returns how many were
/// new. A quote already stored (the same symbol, time, exchange and book) is skipped, so a
/// replayed batch adds nothing.
pub async fn write_quotes(client: &mut Client, rows: &[QuoteRow]) -> anyhow::Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let tx = client.transaction().await?;
    tx.batch_execute(
        "SET LOCAL client_min_messages = warning;
         CREATE TEMP TABLE IF NOT EXISTS staging_quotes (LIKE tapeflow.quotes INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
    )
    .await?;
    let sink = tx.copy_in(&format!("COPY staging_quotes ({QUOTE_COLUMNS}) FROM STDIN BINARY")).await?;
    let types =
        [Type::TIMESTAMPTZ, Type::TEXT, Type::FLOAT8, Type::FLOAT8, Type::FLOAT8, Type::FLOAT8, Type::TEXT];
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for q in rows {
        writer
            .as_mut()
            .write(&[&q.time, &q.symbol, &q.bid, &q.ask, &q.bid_size, &q.ask_size, &q.exchange])
            .await?;
    }
    writer.finish().await?;
    // In key order, so two writers of the same quotes wait for each other instead of deadlocking.
    let inserted = tx
        .execute(
            &format!(
                "INSERT INTO tapeflow.quotes ({QUOTE_COLUMNS}) SELECT {QUOTE_COLUMNS} FROM staging_quotes
                 ORDER BY symbol, time ON CONFLICT DO NOTHING"
            ),
            &[],
        )
        .await?;
    tx.commit().await?;
    Ok(inserted)
}
