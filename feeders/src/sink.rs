//! The writers of a feeder: records from every provider go through a bounded queue into
//! batched, idempotent writes, over `TAPEFLOW_FEED_WRITERS` connections in parallel.
//!
//! Each symbol is given to one writer the first time it is sent (the writer with the fewest
//! symbols) and stays on it, so a symbol's records are written in the order they were sent,
//! a watermark after the rows sent before it, and the writers never touch the same rows (the
//! ticks' key, the rollups and the watermarks all lead with the symbol): they cannot deadlock
//! on each other. A COPY is one backend on one core; several writers use the server's cores.
//!
//! Batches form by themselves: each write takes everything queued for its writer meanwhile (up
//! to `TAPEFLOW_FEED_BATCH_ROWS`), so a quiet feed writes each trade at once and a busy one in
//! large batches. While PostgreSQL is away the batches are retried with backoff and the queue
//! fills; `TAPEFLOW_FEED_BUFFER` bounds the records queued for all writers together, and when
//! it is full, providers wait on `send` (backpressure up to the socket) rather than drop
//! anything. Every write is idempotent (ticks and quotes skip stored keys, bars replace a
//! changed bar), so retrying a batch whose commit was not confirmed adds nothing. A row the
//! database refuses (an unknown symbol, a value out of range) is isolated by splitting the
//! batch, logged with the reason and kept in `tapeflow.feed_rejects`; the rest of its batch is
//! written. A flush goes to every writer and is answered when all of them have written what
//! was queued before it.

use crate::provider::{BarRow, QuoteRow, Record, TickAmend, TickRow};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tapeflow_db::amend::{self, HeldIndex};
use tapeflow_db::backoff::Backoff;
use tapeflow_db::config::env_parse;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// `TAPEFLOW_FEED_BUFFER`: records queued in memory at most, for all writers together
    /// (default 200,000).
    pub capacity: usize,
    /// `TAPEFLOW_FEED_BATCH_ROWS`: records per write at most (default 10,000).
    pub batch_rows: usize,
    /// `TAPEFLOW_FEED_SHUTDOWN_SECS`: how long a shutdown waits for the database to take the
    /// queue (default 10).
    pub shutdown_grace: Duration,
    /// `TAPEFLOW_FEED_WRITERS`: database connections writing in parallel (default one per core,
    /// at most 4: a writer's COPY and triggers keep one backend busy on one core).
    pub writers: usize,
}

impl SinkConfig {
    pub fn from_env() -> anyhow::Result<SinkConfig> {
        Ok(SinkConfig {
            capacity: env_parse("TAPEFLOW_FEED_BUFFER")?.unwrap_or(200_000).max(1),
            batch_rows: env_parse("TAPEFLOW_FEED_BATCH_ROWS")?.unwrap_or(10_000).max(1),
            shutdown_grace: Duration::from_secs(env_parse("TAPEFLOW_FEED_SHUTDOWN_SECS")?.unwrap_or(10)),
            writers: env_parse::<usize>("TAPEFLOW_FEED_WRITERS")?
                .map_or_else(default_writers, |n| n.clamp(1, 64)),
        })
    }
}

/// One writer per core, at most 4.
pub fn default_writers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(4)
}

/// Where providers put records; cheap to clone.
#[derive(Clone)]
pub struct Sink {
    shared: Arc<Shared>,
}

struct Shared {
    /// One queue per writer. Unbounded: `room` bounds them together.
    queues: Vec<mpsc::UnboundedSender<Record>>,
    /// One permit per record that may still be queued; a record holds its permit until its
    /// writer takes it into a batch.
    room: Arc<Semaphore>,
    capacity: usize,
    /// Which writer each symbol seen so far goes to, and how many symbols each writer has.
    /// (foldhash: it is looked up once per record sent.)
    routes: Mutex<(foldhash::HashMap<String, usize>, Vec<usize>)>,
}

#[derive(Debug, thiserror::Error)]
#[error("the feed writer has stopped")]
pub struct SinkClosed;

impl Sink {
    /// Queues a record, waiting while the queue is full.
    pub async fn send(&self, record: Record) -> Result<(), SinkClosed> {
        let s = &self.shared;
        match record {
            Record::Flush(ack) => {
                // To every writer; the ack fires once all of them have passed it.
                let n = s.queues.len() as u32;
                s.room.acquire_many(n).await.map_err(|_| SinkClosed)?.forget();
                for q in &s.queues {
                    q.send(Record::Flush(ack.clone())).map_err(|_| SinkClosed)?;
                }
            }
            record => {
                let to = self.route(&record);
                // No await between taking the permit and queueing: a send cancelled while it
                // waits for room has queued nothing.
                s.room.acquire().await.map_err(|_| SinkClosed)?.forget();
                s.queues[to].send(record).map_err(|_| SinkClosed)?;
            }
        }
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
    /// `tapeflow.feed_rejects`) by every writer, so that a resume point may be recorded; `Err`
    /// when a writer stopped first.
    pub async fn flush(&self) -> Result<(), SinkClosed> {
        let (tx, rx) = oneshot::channel();
        let ack = FlushAck(Arc::new(Mutex::new((self.shared.queues.len(), Some(tx)))));
        self.send(Record::Flush(ack)).await?;
        rx.await.map_err(|_| SinkClosed)
    }

    /// Records queued and not yet taken by a writer.
    pub fn depth(&self) -> usize {
        queued(&self.shared.room, self.shared.capacity)
    }

    /// The writer of the record's symbol: fixed once chosen, the one with the fewest symbols.
    fn route(&self, record: &Record) -> usize {
        let s = &self.shared;
        if s.queues.len() == 1 {
            return 0;
        }
        let symbol = match record {
            Record::Tick(t) => &t.symbol,
            Record::Quote(q) => &q.symbol,
            Record::Bar(b) => &b.symbol,
            Record::Amend(a) => &a.symbol,
            Record::Watermark { symbol, .. } => symbol,
            Record::Flush(_) => return 0,
        };
        let mut routes = s.routes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&w) = routes.0.get(symbol.as_str()) {
            return w;
        }
        let (map, load) = &mut *routes;
        let w = (0..load.len()).min_by_key(|&i| load[i]).unwrap_or(0);
        load[w] += 1;
        map.insert(symbol.clone(), w);
        w
    }
}

/// The writers' answer to a [`Sink::flush`] marker: fires once, after the last writer has
/// written the batch holding its copy.
#[derive(Clone)]
pub struct FlushAck(Arc<Mutex<(usize, Option<oneshot::Sender<()>>)>>);

impl FlushAck {
    fn ack(&self) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.0 = state.0.saturating_sub(1);
        if state.0 == 0 {
            if let Some(tx) = state.1.take() {
                let _ = tx.send(());
            }
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

/// What the writers did, returned when every `Sink` is gone and the queues are drained.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Written {
    pub ticks: u64,
    pub quotes: u64,
    pub bars: u64,
    pub rejected: u64,
    /// Trades removed by cancels and corrections, at once or when written after their notice
    /// (see [`tapeflow_db::amend`]).
    pub amended: u64,
    /// Records still queued when the shutdown grace ran out (the database was away).
    pub abandoned: u64,
}

impl std::ops::AddAssign for Written {
    fn add_assign(&mut self, o: Written) {
        self.ticks += o.ticks;
        self.quotes += o.quotes;
        self.bars += o.bars;
        self.rejected += o.rejected;
        self.amended += o.amended;
        self.abandoned += o.abandoned;
    }
}

/// Starts `cfg.writers` writers, each with its own connection. They end once every `Sink`
/// clone is dropped and the queues are written, or, after `shutdown` fires, when the grace
/// period runs out; the handle sums what they wrote.
pub fn spawn(
    database_url: String,
    cfg: SinkConfig,
    shutdown: tokio_util::sync::CancellationToken,
) -> (Sink, tokio::task::JoinHandle<Written>) {
    let writers = cfg.writers.max(1);
    // A flush takes a place in every writer's queue, so there is room for one at least.
    let cfg = SinkConfig { capacity: cfg.capacity.max(writers), ..cfg };
    let room = Arc::new(Semaphore::new(cfg.capacity));
    let mut queues = Vec::with_capacity(writers);
    let mut tasks = Vec::with_capacity(writers);
    for index in 0..writers {
        let (tx, rx) = mpsc::unbounded_channel();
        queues.push(tx);
        let queue = Queue { rx, room: room.clone(), capacity: cfg.capacity };
        tasks.push(tokio::spawn(writer(database_url.clone(), cfg.clone(), index, queue, shutdown.clone())));
    }
    let shared = Shared {
        queues,
        room,
        capacity: cfg.capacity,
        routes: Mutex::new((foldhash::HashMap::default(), vec![0; writers])),
    };
    let all = tokio::spawn(async move {
        let mut total = Written::default();
        for t in tasks {
            match t.await {
                Ok(w) => total += w,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => tracing::error!(error = %e, "a feed writer was cancelled"),
            }
        }
        total
    });
    (Sink { shared: Arc::new(shared) }, all)
}

/// Records queued for all writers: the permits of `room` (of `capacity`) taken.
fn queued(room: &Semaphore, capacity: usize) -> usize {
    capacity.saturating_sub(room.available_permits())
}

/// One writer's end of the queue.
struct Queue {
    rx: mpsc::UnboundedReceiver<Record>,
    room: Arc<Semaphore>,
    capacity: usize,
}

impl Queue {
    /// Takes up to `max` records (waiting for one), giving their room back.
    async fn take(&mut self, batch: &mut Vec<Record>, max: usize) -> usize {
        let n = self.rx.recv_many(batch, max).await;
        self.room.add_permits(n);
        metrics::gauge!("tapeflow_feed_buffer_depth").set(queued(&self.room, self.capacity) as f64);
        n
    }
}

async fn writer(
    url: String,
    cfg: SinkConfig,
    index: usize,
    mut queue: Queue,
    shutdown: tokio_util::sync::CancellationToken,
) -> Written {
    let mut db = Db {
        url,
        index,
        client: None,
        held: HeldIndex::default(),
        backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
    };
    let mut total = Written::default();
    let mut batch = Vec::with_capacity(cfg.batch_rows);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if queue.take(&mut batch, cfg.batch_rows).await == 0 {
            return total; // every sender gone, queue empty
        }
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
                    tracing::warn!(error = %e, writer = index, rows = batch.len(), queued = queue.rx.len(),
                        retry_in_ms = wait.as_millis() as u64, "cannot write to the database; keeping the batch");
                    let give_up = deadline.map(|d| tokio::time::Instant::now() + wait >= d).unwrap_or(false);
                    if give_up {
                        // Every sender is told, not only this writer's: the feed is stopping.
                        queue.room.close();
                        queue.rx.close();
                        total.abandoned = (batch.len() + queue.rx.len()) as u64;
                        tracing::error!(
                            writer = index,
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
    index: usize,
    client: Option<Client>,
    /// The trades that notices held in the database wait for (read at each connect).
    held: HeldIndex,
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
            let client = tapeflow_db::connect(&self.url, Duration::ZERO).await?;
            let (held, dropped) = amend::held_trades(&client).await?;
            if dropped > 0 {
                tracing::warn!(
                    writer = self.index,
                    notices = dropped,
                    "dropped cancels and corrections held a week without their trade"
                );
            }
            self.held = HeldIndex::default();
            self.held.add(held);
            self.client = Some(client);
            tracing::info!(writer = self.index, held = self.held.len(), "feed writer connected");
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Writes a batch; on a refused row, splits the batch to write the rest and reject it.
    async fn write(&mut self, batch: &[Record], total: &mut Written) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut pending = vec![batch];
        while let Some(part) = pending.pop() {
            // Counted as each step commits: quotes committed before the part's ticks were
            // refused are stored, and its halves will find them stored.
            let mut done = Written::default();
            let result = self.write_part(part, &mut done).await;
            metrics::counter!("tapeflow_feed_rows_written_total", "kind" => "tick").increment(done.ticks);
            metrics::counter!("tapeflow_feed_rows_written_total", "kind" => "quote").increment(done.quotes);
            metrics::counter!("tapeflow_feed_rows_written_total", "kind" => "bar").increment(done.bars);
            metrics::counter!("tapeflow_feed_rows_written_total", "kind" => "amendment")
                .increment(done.amended);
            *total += done;
            match result {
                Ok(()) => {}
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

    async fn write_part(&mut self, part: &[Record], done: &mut Written) -> Result<(), WriteError> {
        // References into the batch, which is kept for a retry: no row is copied.
        let (mut ticks, mut quotes, mut bars, mut amends) =
            (Vec::<&TickRow>::new(), Vec::<&QuoteRow>::new(), Vec::<BarRow>::new(), Vec::<&TickAmend>::new());
        // The newest watermark of each symbol in the part: a later one replaces an earlier.
        let mut marks = std::collections::BTreeMap::new();
        for r in part {
            match r {
                Record::Tick(t) => ticks.push(t),
                Record::Quote(q) => quotes.push(q),
                Record::Bar(b) => bars.push(b.clone()),
                Record::Amend(a) => amends.push(a),
                Record::Watermark { symbol, complete_until } => {
                    marks.insert(symbol.as_str(), *complete_until);
                }
                Record::Flush(_) => {}
            }
        }
        if ticks.is_empty() && quotes.is_empty() && bars.is_empty() && amends.is_empty() && marks.is_empty() {
            return Ok(()); // flush markers only: what came before them is written
        }
        let writer = self.index;
        self.client().await.map_err(WriteError::Other)?;
        let due = self.held.due(&ticks);
        let client = self.client.as_mut().expect("connected above");
        // Quotes first: a reader that sees a trade also sees the quote in force when it printed.
        done.quotes += tapeflow_db::copy::write_quotes(client, &quotes).await.map_err(WriteError::from)?;
        done.ticks += tapeflow_db::copy::write_ticks(client, &ticks).await.map_err(WriteError::from)?;
        done.bars += tapeflow_db::bars::write_bars(client, &bars).await.map_err(WriteError::from)?;
        // After the ticks: a notice may amend a trade of this very batch, and notices held
        // before wait for trades it may hold.
        let amended = amend::amend_ticks(client, &amends).await.map_err(WriteError::from)?;
        if !amended.held.is_empty() {
            tracing::info!(writer, notices = amended.held.len(),
                "a cancel or correction names a trade that is not stored; held until it is written (or a replay)");
        }
        let applied = amend::apply_held(client, &due).await.map_err(WriteError::from)?;
        if applied.removed > 0 {
            tracing::info!(
                writer,
                trades = applied.removed,
                "held cancels and corrections applied to trades written after them"
            );
        }
        done.amended += amended.removed + applied.removed;
        // Both have committed: the index follows what is held now.
        if !due.is_empty() || !amended.held.is_empty() {
            self.held.remove(&due);
            self.held.add(amended.held.into_iter().chain(applied.held));
            metrics::gauge!("tapeflow_feed_held_amendments", "writer" => writer.to_string())
                .set(self.held.len() as f64);
        }
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
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use tokio_util::sync::CancellationToken;

    /// Nothing listens there: every write fails and is retried, so records stay queued.
    const NOWHERE: &str = "postgresql://postgres@127.0.0.1:1/none?connect_timeout=1";

    fn tick(symbol: &str, i: i64) -> Record {
        Record::Tick(TickRow {
            time: Utc.timestamp_opt(1_700_000_000 + i, 0).unwrap(),
            symbol: symbol.into(),
            price: 1.0,
            size: 1.0,
            side: b'N',
            side_source: "none",
            trade_id: i.to_string(),
            exchange: None,
            conditions: None,
        })
    }

    fn config(capacity: usize, writers: usize) -> SinkConfig {
        SinkConfig { capacity, batch_rows: 5, shutdown_grace: Duration::from_secs(1), writers }
    }

    #[tokio::test]
    async fn a_symbol_stays_on_one_writer_and_symbols_spread_evenly() {
        let (sink, _writers) = spawn(NOWHERE.into(), config(100, 3), CancellationToken::new());
        let symbols = ["A", "B", "C", "D", "E", "F", "G"];
        let first: Vec<usize> = symbols.iter().map(|s| sink.route(&tick(s, 0))).collect();
        let mut load = [0; 3];
        for &w in &first {
            load[w] += 1;
        }
        assert_eq!(load.iter().max().unwrap() - load.iter().min().unwrap(), 1, "{first:?}");
        for (s, &w) in symbols.iter().zip(&first).rev() {
            let wm = Record::Watermark { symbol: s.to_string(), complete_until: Utc::now() };
            assert_eq!(sink.route(&tick(s, 9)), w, "{s} moved");
            assert_eq!(sink.route(&wm), w, "{s}'s watermark goes to another writer than its rows");
        }
    }

    #[tokio::test]
    async fn a_flush_waits_for_every_writer() {
        let (sink, _writers) = spawn(NOWHERE.into(), config(100, 2), CancellationToken::new());
        // Nothing queued: every writer passes the marker at once.
        tokio::time::timeout(Duration::from_secs(5), sink.flush()).await.expect("an empty flush").unwrap();
        // One writer holds a tick it cannot write; the other has nothing.
        sink.send(tick("A", 1)).await.unwrap();
        let stuck = sink.route(&tick("A", 1));
        assert_eq!(sink.route(&tick("B", 1)), 1 - stuck, "B on the other writer");
        let flushed = tokio::time::timeout(Duration::from_millis(1500), sink.flush()).await;
        assert!(flushed.is_err(), "a flush returned while a writer still held a record");
    }

    #[tokio::test]
    async fn the_bound_holds_for_all_writers_together() {
        let capacity = 20;
        let (sink, _writers) = spawn(NOWHERE.into(), config(capacity, 2), CancellationToken::new());
        let mut sent = 0;
        loop {
            let symbol = if sent % 2 == 0 { "A" } else { "B" };
            match tokio::time::timeout(Duration::from_millis(300), sink.send(tick(symbol, sent))).await {
                Ok(r) => {
                    r.unwrap();
                    sent += 1;
                }
                Err(_) => break,
            }
            assert!(sent < 1000, "the queue is not bounded");
        }
        // The queues are full; each writer also holds one batch (5 records) it keeps retrying.
        assert_eq!(sink.depth(), capacity);
        assert_eq!(sent as usize, capacity + 2 * 5, "sent {sent}");
    }

    #[tokio::test]
    async fn records_still_queued_when_the_grace_runs_out_are_counted_and_senders_told() {
        let shutdown = CancellationToken::new();
        let (sink, writers) = spawn(NOWHERE.into(), config(100, 2), shutdown.clone());
        for i in 0..30 {
            sink.send(tick(if i % 2 == 0 { "A" } else { "B" }, i)).await.unwrap();
        }
        shutdown.cancel();
        let w =
            tokio::time::timeout(Duration::from_secs(20), writers).await.expect("writers stopped").unwrap();
        assert_eq!((w.ticks, w.abandoned), (0, 30), "{w:?}");
        assert!(sink.send(tick("A", 99)).await.is_err(), "a send after the writers stopped");
    }
}
