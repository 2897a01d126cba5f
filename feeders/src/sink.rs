//! The one writer of a feeder: records from every provider go through a bounded queue into
//! batched, idempotent writes.
//!
//! Batches form by themselves: each write takes everything queued meanwhile (up to
//! `TAPEFLOW_FEED_BATCH_ROWS`), so a quiet feed writes each trade at once and a busy one in
//! large batches. While PostgreSQL is away the batch is retried with backoff and the queue
//! fills; when it is full, providers wait on `send` (backpressure up to the socket) rather
//! than drop anything. Every write is idempotent (ticks and quotes skip stored keys, bars
//! replace a changed bar), so retrying a batch whose commit was not confirmed adds nothing.
//! A row the database refuses (an unknown symbol, a value out of range) is isolated by
//! splitting the batch, logged with the reason and kept in `tapeflow.feed_rejects`; the rest
//! of its batch is written.

use crate::provider::{BarRow, QuoteRow, Record, TickRow};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tapeflow_db::backoff::Backoff;
use tapeflow_db::config::env_parse;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// `TAPEFLOW_FEED_BUFFER`: records queued in memory at most (default 200,000).
    pub capacity: usize,
    /// `TAPEFLOW_FEED_BATCH_ROWS`: records per write at most (default 10,000).
    pub batch_rows: usize,
    /// `TAPEFLOW_FEED_SHUTDOWN_SECS`: how long a shutdown waits for the database to take the
    /// queue (default 10).
    pub shutdown_grace: Duration,
}

impl SinkConfig {
    pub fn from_env() -> anyhow::Result<SinkConfig> {
        Ok(SinkConfig {
            capacity: env_parse("TAPEFLOW_FEED_BUFFER")?.unwrap_or(200_000).max(1),
            batch_rows: env_parse("TAPEFLOW_FEED_BATCH_ROWS")?.unwrap_or(10_000).max(1),
            shutdown_grace: Duration::from_secs(env_parse("TAPEFLOW_FEED_SHUTDOWN_SECS")?.unwrap_or(10)),
        })
    }
}

/// Where providers put records; cheap to clone.
#[derive(Clone)]
pub struct Sink {
    tx: mpsc::Sender<Record>,
}

#[derive(Debug, thiserror::Error)]
#[error("the feed writer has stopped")]
pub struct SinkClosed;

impl Sink {
    /// Queues a record, waiting while the queue is full.
    pub async fn send(&self, record: Record) -> Result<(), SinkClosed> {
        self.tx.send(record).await.map_err(|_| SinkClosed)?;
        metrics::gauge!("tapeflow_feed_buffer_depth").set(self.depth() as f64);
        Ok(())
    }

    pub async fn send_all(&self, records: impl IntoIterator<Item = Record>) -> Result<(), SinkClosed> {
        for r in records {
            self.send(r).await?;
        }
        Ok(())
    }

    /// Waits until every record sent before this call is written (or refused into
    /// `tapeflow.feed_rejects`), so that a resume point may be recorded; `Err` when the writer
    /// stopped first.
    pub async fn flush(&self) -> Result<(), SinkClosed> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Record::Flush(FlushAck(Arc::new(Mutex::new(Some(tx))))))
            .await
            .map_err(|_| SinkClosed)?;
        rx.await.map_err(|_| SinkClosed)
    }

    /// Records queued and not yet written.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// The writer's answer to a [`Sink::flush`] marker: fires once, after the batch holding it.
#[derive(Clone)]
pub struct FlushAck(Arc<Mutex<Option<oneshot::Sender<()>>>>);

impl FlushAck {
    fn ack(&self) {
        if let Some(tx) = self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = tx.send(());
        }
    }
}

impl std::fmt::Debug for FlushAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlushAck")
    }
}

impl PartialEq for FlushAck {
    fn eq(&self, other: &FlushAck) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// What the writer did, returned when every `Sink` is gone and the queue is drained.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Written {
    pub ticks: u64,
    pub quotes: u64,
    pub bars: u64,
    pub rejected: u64,
    /// Records still queued when the shutdown grace ran out (the database was away).
    pub abandoned: u64,
}

/// Starts the writer. It ends once every `Sink` clone is dropped and the queue is written, or,
/// after `shutdown` fires, when the grace period runs out.
pub fn spawn(
    database_url: String,
    cfg: SinkConfig,
    shutdown: tokio_util::sync::CancellationToken,
) -> (Sink, tokio::task::JoinHandle<Written>) {
    let (tx, rx) = mpsc::channel(cfg.capacity);
    let task = tokio::spawn(writer(database_url, cfg, rx, shutdown));
    (Sink { tx }, task)
}

async fn writer(
    url: String,
    cfg: SinkConfig,
    mut rx: mpsc::Receiver<Record>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Written {
    let mut db =
        Db { url, client: None, backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)) };
    let mut total = Written::default();
    let mut batch = Vec::with_capacity(cfg.batch_rows);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if rx.recv_many(&mut batch, cfg.batch_rows).await == 0 {
            return total; // every sender gone, queue empty
        }
        metrics::gauge!("tapeflow_feed_buffer_depth").set(rx.len() as f64);
        loop {
            if deadline.is_none() && shutdown.is_cancelled() {
                deadline = Some(tokio::time::Instant::now() + cfg.shutdown_grace);
            }
            match db.write(&batch, &mut total).await {
                Ok(()) => {
                    for r in &batch {
                        if let Record::Flush(ack) = r {
                            ack.ack();
                        }
                    }
                    break;
                }
                Err(e) => {
                    let wait = db.backoff.next_delay();
                    tracing::warn!(error = %e, rows = batch.len(), queued = rx.len(), retry_in_ms = wait.as_millis() as u64,
                        "cannot write to the database; keeping the batch");
                    let give_up = deadline.map(|d| tokio::time::Instant::now() + wait >= d).unwrap_or(false);
                    if give_up {
                        rx.close();
                        total.abandoned = (batch.len() + rx.len()) as u64;
                        tracing::error!(
                            records = total.abandoned,
                            "shutting down with records the database did not take"
                        );
                        return total;
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
        batch.clear();
    }
}

struct Db {
    url: String,
    client: Option<Client>,
    backoff: Backoff,
}

/// Whether a failed write may succeed as it is later (the connection, the server's state) or
/// never will (the data itself was refused).
fn is_data_error(e: &tokio_postgres::Error) -> bool {
    let Some(code) = e.code() else { return false };
    let class = &code.code()[..2];
    // 22 data exception, 23 integrity constraint violation (a foreign key, a check), and a
    // trigger's own refusal (P0001 raise_exception), e.g. an unknown symbol.
    class == "22" || class == "23" || code == &SqlState::RAISE_EXCEPTION
}

impl Db {
    async fn client(&mut self) -> anyhow::Result<&mut Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = Some(tapeflow_db::connect(&self.url, Duration::ZERO).await?);
            tracing::info!("feed writer connected");
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Writes a batch; on a refused row, splits the batch to write the rest and reject it.
    async fn write(&mut self, batch: &[Record], total: &mut Written) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut pending = vec![batch];
        while let Some(part) = pending.pop() {
            match self.write_part(part).await {
                Ok((t, q, b)) => {
                    total.ticks += t;
                    total.quotes += q;
                    total.bars += b;
                    metrics::counter!("tapeflow_feed_rows_written_total", "kind" => "tick").increment(t);
                    metrics::counter!("tapeflow_feed_rows_written_total", "kind" => "quote").increment(q);
                    metrics::counter!("tapeflow_feed_rows_written_total", "kind" => "bar").increment(b);
                }
                Err(WriteError::Data(e)) if part.len() > 1 => {
                    let (a, b) = part.split_at(part.len() / 2);
                    tracing::debug!(error = %e, rows = part.len(), "batch refused; splitting it to find the row");
                    pending.push(b);
                    pending.push(a);
                }
                Err(WriteError::Data(e)) => {
                    total.rejected += 1;
                    self.reject(&part[0], &e).await?;
                }
                Err(WriteError::Other(e)) => {
                    self.client = None;
                    metrics::counter!("tapeflow_feed_db_errors_total").increment(1);
                    return Err(e);
                }
            }
        }
        self.backoff.reset();
        metrics::histogram!("tapeflow_feed_batch_seconds").record(started.elapsed().as_secs_f64());
        Ok(())
    }

    async fn write_part(&mut self, part: &[Record]) -> Result<(u64, u64, u64), WriteError> {
        let (mut ticks, mut quotes, mut bars) =
            (Vec::<TickRow>::new(), Vec::<QuoteRow>::new(), Vec::<BarRow>::new());
        // The newest watermark of each symbol in the part: a later one replaces an earlier.
        let mut marks = std::collections::BTreeMap::new();
        for r in part {
            match r {
                Record::Tick(t) => ticks.push(t.clone()),
                Record::Quote(q) => quotes.push(q.clone()),
                Record::Bar(b) => bars.push(b.clone()),
                Record::Watermark { symbol, complete_until } => {
                    marks.insert(symbol.as_str(), *complete_until);
                }
                Record::Flush(_) => {}
            }
        }
        let client = self.client().await.map_err(WriteError::Other)?;
        // Quotes first: a reader that sees a trade also sees the quote in force when it printed.
        let q = tapeflow_db::copy::write_quotes(client, &quotes).await.map_err(WriteError::from)?;
        let t = tapeflow_db::copy::write_ticks(client, &ticks).await.map_err(WriteError::from)?;
        let b = tapeflow_db::bars::write_bars(client, &bars).await.map_err(WriteError::from)?;
        if !marks.is_empty() {
            // Only once the rows sent before them are committed (above). A refused row earlier
            // in the part fails the part first, so no watermark passes a row not stored; a
            // symbol no longer registered is skipped, not refused.
            let (symbols, times): (Vec<&str>, Vec<chrono::DateTime<chrono::Utc>>) = marks.into_iter().unzip();
            client
                .execute(
                    "INSERT INTO tapeflow.feed_watermarks AS w (symbol, complete_until)
                     SELECT m.symbol, m.complete_until FROM unnest($1::text[], $2::timestamptz[]) AS m (symbol, complete_until)
                     WHERE EXISTS (SELECT 1 FROM tapeflow.symbols s WHERE s.symbol = m.symbol)
                     ON CONFLICT (symbol) DO UPDATE SET complete_until = EXCLUDED.complete_until, updated_at = now()",
                    &[&symbols, &times],
                )
                .await
                .map_err(|e| WriteError::from(anyhow::Error::from(e)))?;
        }
        Ok((t, q, b))
    }

    /// Keeps a refused record with the database's reason, so that nothing is silently lost.
    async fn reject(&mut self, record: &Record, reason: &str) -> anyhow::Result<()> {
        tracing::error!(record = ?record, %reason, "the database refused a record; kept in tapeflow.feed_rejects");
        metrics::counter!("tapeflow_feed_rows_rejected_total").increment(1);
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO tapeflow.feed_rejects (record, reason) VALUES ($1, $2)",
                &[&format!("{record:?}"), &reason],
            )
            .await?;
        Ok(())
    }
}

enum WriteError {
    /// The database refused the data; retrying the same rows cannot help.
    Data(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for WriteError {
    fn from(e: anyhow::Error) -> WriteError {
        match e.downcast_ref::<tokio_postgres::Error>() {
            Some(pg) if is_data_error(pg) => {
                let detail = match pg.as_db_error() {
                    Some(d) => match d.detail() {
                        Some(more) => format!("{}: {more}", d.message()),
                        None => d.message().to_string(),
                    },
                    None => pg.to_string(),
                };
                WriteError::Data(detail)
            }
            _ => WriteError::Other(e),
        }
    }
}
