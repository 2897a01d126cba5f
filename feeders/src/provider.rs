//! What every market-data provider implements, and what it is given to work with.
//!
//! A provider turns its venue's protocol into [`Record`]s. It does not write to the database
//! (the [`Sink`] does, batched and idempotent, buffering while the database is away) and does
//! not decide which symbols it serves (routing does, from `tapeflow.symbols`).

use crate::sink::Sink;
use crate::status::StatusRegistry;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
pub use tapeflow_db::amend::{TickAmend, TickReplacement};
pub use tapeflow_db::bars::BarRow;
pub use tapeflow_db::copy::{QuoteRow, TickRow};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A row of `tapeflow.symbols` routed to a provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Instrument {
    /// Tapeflow's name (`tapeflow.symbols.symbol`).
    pub symbol: String,
    /// The provider's own id (`provider_ref`, else the symbol): an IG epic, a token id, ...
    pub provider_ref: String,
    pub tick_size: f64,
    pub timezone: String,
    pub asset_class: String,
}

/// One thing a provider observed, already in Tapeflow's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Tick(TickRow),
    Quote(QuoteRow),
    /// A ready-made one-minute bar, for `tapeflow.bars_1m_imported`.
    Bar(BarRow),
    /// A trade sent before, cancelled or corrected by its provider: applied after the records
    /// queued before it, by the writer of its symbol.
    Amend(TickAmend),
    /// Not data: acknowledged by the writer once everything queued before it is written
    /// (see [`Sink::flush`]).
    Flush(crate::sink::FlushAck),
    /// The provider's claim that every trade of `symbol` before `complete_until` has been sent
    /// (`tapeflow.feed_watermarks`): the writer stores it after the records queued before it,
    /// and the scheduler holds the symbol's bars until it passes them. Sent again while
    /// nothing changes, so that it stays fresh (`risk_limits.bar_max_wait`).
    Watermark {
        symbol: String,
        complete_until: DateTime<Utc>,
    },
}

/// What a running provider gets: where to put records, where to report health, when to stop.
#[derive(Clone)]
pub struct FeedCtx {
    pub sink: Sink,
    pub status: StatusRegistry,
    pub shutdown: CancellationToken,
    pub database_url: String,
}

/// One market-data provider (`tapeflow.symbols.provider`).
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Its name in `tapeflow.symbols.provider`.
    fn name(&self) -> &'static str;

    /// Streams live data for the instruments in `instruments` until `ctx.shutdown` fires.
    /// The set changes while it runs (routing); the provider follows it (resubscribes).
    /// Disconnects, throttling and bad frames are the provider's to survive and report in
    /// `ctx.status`; an `Err` means it cannot go on at all (refused credentials, say), and
    /// routing starts it again after a long pause.
    async fn stream(&self, ctx: FeedCtx, instruments: watch::Receiver<Vec<Instrument>>)
        -> anyhow::Result<()>;

    /// Loads history for `instruments` between `from` and `to` into `ctx.sink`, resuming
    /// where an interrupted run stopped.
    async fn backfill(
        &self,
        ctx: FeedCtx,
        instruments: Vec<Instrument>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let _ = (ctx, instruments, from, to);
        anyhow::bail!("provider {} has no historical backfill", self.name())
    }
}
