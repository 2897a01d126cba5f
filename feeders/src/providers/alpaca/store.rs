//! What the provider keeps in the database besides records: where its history loads stand
//! (`tapeflow.backfill_progress`) and the vendor's minute bars (`tapeflow.vendor_bars_1m`).
//!
//! Both use the provider's own connection, opened on first use and again after a failure. A
//! load goes on while the database is away (its records wait in the writer's queue); only its
//! resume point is not recorded meanwhile.

use super::frames::Bar;
use super::NAME;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tapeflow_db::backoff::Backoff;
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

pub struct Store {
    url: String,
    client: Option<Client>,
}

/// A load not finished yet: its row and where to resume.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenLoad {
    pub id: i64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub done_until: Option<DateTime<Utc>>,
    pub trades: i64,
}

impl Store {
    pub fn new(url: &str) -> Store {
        Store { url: url.to_string(), client: None }
    }

    async fn client(&mut self) -> anyhow::Result<&Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
            self.client = Some(tapeflow_db::connect(&self.url, Duration::ZERO).await?);
        }
        Ok(self.client.as_ref().expect("connected above"))
    }

    /// Runs `f` on the connection, dropping the connection when it failed.
    async fn with<T>(
        &mut self,
        f: impl for<'c> FnOnce(
            &'c Client,
        ) -> futures_util::future::BoxFuture<'c, Result<T, tokio_postgres::Error>>,
    ) -> anyhow::Result<T> {
        let c = self.client().await?;
        match f(c).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.as_db_error().is_none() {
                    self.client = None;
                }
                Err(e.into())
            }
        }
    }

    /// The time of the newest stored trade of `symbol` before `before`.
    pub async fn newest_tick(
        &mut self,
        symbol: &str,
        before: DateTime<Utc>,
    ) -> anyhow::Result<Option<DateTime<Utc>>> {
        let symbol = symbol.to_string();
        self.with(move |c| {
            Box::pin(async move {
                let row = c
                    .query_one(
                        "SELECT max(time) FROM tapeflow.ticks WHERE symbol = $1 AND time < $2",
                        &[&symbol, &before],
                    )
                    .await?;
                Ok(row.get(0))
            })
        })
        .await
    }

    /// Unfinished loads of `kind` for `symbol`, oldest first.
    pub async fn open_loads(&mut self, symbol: &str, kind: &'static str) -> anyhow::Result<Vec<OpenLoad>> {
        let symbol = symbol.to_string();
        self.with(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT id, range_from, range_to, done_until, trades FROM tapeflow.backfill_progress
                         WHERE provider = $1 AND symbol = $2 AND kind = $3 AND finished_at IS NULL ORDER BY range_from, id",
                        &[&NAME, &symbol, &kind],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| OpenLoad {
                        id: r.get(0),
                        from: r.get(1),
                        to: r.get(2),
                        done_until: r.get(3),
                        trades: r.get(4),
                    })
                    .collect())
            })
        })
        .await
    }

    /// Whether a finished range load covers `[from, to]` for `symbol`.
    pub async fn range_done(
        &mut self,
        symbol: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let symbol = symbol.to_string();
        self.with(move |c| {
            Box::pin(async move {
                let row = c
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM tapeflow.backfill_progress WHERE provider = $1 AND symbol = $2
                         AND kind = 'range' AND finished_at IS NOT NULL AND range_from <= $3 AND range_to >= $4)",
                        &[&NAME, &symbol, &from, &to],
                    )
                    .await?;
                Ok(row.get(0))
            })
        })
        .await
    }

    /// Records the start of a load; its id.
    pub async fn begin(
        &mut self,
        symbol: &str,
        kind: &'static str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> anyhow::Result<i64> {
        let symbol = symbol.to_string();
        self.with(move |c| {
            Box::pin(async move {
                let row = c
                    .query_one(
                        "INSERT INTO tapeflow.backfill_progress (provider, symbol, kind, range_from, range_to)
                         VALUES ($1, $2, $3, $4, $5) RETURNING id",
                        &[&NAME, &symbol, &kind, &from, &to],
                    )
                    .await?;
                Ok(row.get(0))
            })
        })
        .await
    }

    /// Everything up to `done_until` is stored; `trades` read so far in all.
    pub async fn checkpoint(
        &mut self,
        id: i64,
        done_until: DateTime<Utc>,
        trades: i64,
    ) -> anyhow::Result<()> {
        self.with(move |c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE tapeflow.backfill_progress SET done_until = greatest(done_until, $2), trades = $3,
                         updated_at = now(), last_error = NULL WHERE id = $1",
                    &[&id, &done_until, &trades],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    pub async fn finish(&mut self, id: i64, trades: i64) -> anyhow::Result<()> {
        self.with(move |c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE tapeflow.backfill_progress SET done_until = range_to, trades = $2, finished_at = now(),
                         updated_at = now(), last_error = NULL WHERE id = $1",
                    &[&id, &trades],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    pub async fn failed(&mut self, id: i64, error: &str) -> anyhow::Result<()> {
        let error = error.to_string();
        self.with(move |c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE tapeflow.backfill_progress SET last_error = $2, updated_at = now() WHERE id = $1",
                    &[&id, &error],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Inserts or revises vendor bars.
    pub async fn write_bars(&mut self, bars: &[(String, Bar)]) -> anyhow::Result<u64> {
        let symbols: Vec<String> = bars.iter().map(|(s, _)| s.clone()).collect();
        let buckets: Vec<DateTime<Utc>> = bars.iter().map(|(_, b)| b.time).collect();
        let col = |f: fn(&Bar) -> f64| bars.iter().map(|(_, b)| f(b)).collect::<Vec<f64>>();
        let (o, h, l, c, v) =
            (col(|b| b.open), col(|b| b.high), col(|b| b.low), col(|b| b.close), col(|b| b.volume));
        let n: Vec<Option<i64>> = bars.iter().map(|(_, b)| b.trades).collect();
        let vw: Vec<Option<f64>> = bars.iter().map(|(_, b)| b.vwap).collect();
        self.with(move |cl| {
            Box::pin(async move {
                cl.execute(
                    "INSERT INTO tapeflow.vendor_bars_1m AS b (provider, symbol, bucket, open, high, low, close, volume,
                         trade_count, vwap)
                     SELECT DISTINCT ON (symbol, bucket) $1, symbol, bucket, open, high, low, close, volume, n, vw
                     FROM unnest($2::text[], $3::timestamptz[], $4::float8[], $5::float8[], $6::float8[], $7::float8[],
                                 $8::float8[], $9::int8[], $10::float8[])
                          WITH ORDINALITY AS x(symbol, bucket, open, high, low, close, volume, n, vw, k)
                     JOIN tapeflow.symbols s USING (symbol)
                     ORDER BY symbol, bucket, k DESC
                     ON CONFLICT (provider, symbol, bucket) DO UPDATE
                        SET open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
                            volume = excluded.volume, trade_count = excluded.trade_count, vwap = excluded.vwap,
                            received_at = now()",
                    &[&NAME, &symbols, &buckets, &o, &h, &l, &c, &v, &n, &vw],
                )
                .await
            })
        })
        .await
    }
}

/// Whether the database refused the data (a data exception or a violated constraint).
fn refused(e: &anyhow::Error) -> bool {
    e.downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.code())
        .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"))
}

/// Vendor bars waiting to be written: bounded, since they only check the ticks; when the
/// database is away for long the oldest are dropped (and counted in the log).
const BAR_QUEUE: usize = 20_000;

/// Starts the bar writer; send `(tapeflow symbol, bar)`.
pub fn spawn_bar_writer(url: String, shutdown: CancellationToken) -> mpsc::Sender<(String, Bar)> {
    let (tx, mut rx) = mpsc::channel::<(String, Bar)>(BAR_QUEUE);
    tokio::spawn(async move {
        let mut store = Store::new(&url);
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut batch: Vec<(String, Bar)> = Vec::new();
        loop {
            if batch.is_empty() {
                tokio::select! {
                    n = rx.recv_many(&mut batch, 1000) => if n == 0 { return },
                    _ = shutdown.cancelled() => return,
                }
            } else {
                while let Ok(b) = rx.try_recv() {
                    if batch.len() >= BAR_QUEUE {
                        batch.remove(0);
                        tracing::warn!("alpaca: vendor bar queue full; dropping the oldest bar");
                    }
                    batch.push(b);
                }
            }
            match store.write_bars(&batch).await {
                Ok(_) => {
                    batch.clear();
                    backoff.reset();
                }
                Err(e) if refused(&e) => {
                    // The data itself was refused: retrying the same bars cannot help.
                    tracing::warn!(error = %format!("{e:#}"), bars = batch.len(), "alpaca: vendor bars refused; dropped");
                    batch.clear();
                }
                Err(e) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(error = %format!("{e:#}"), bars = batch.len(), retry_in_ms = wait.as_millis() as u64,
                        "alpaca: cannot write vendor bars; keeping them");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        }
    });
    tx
}
