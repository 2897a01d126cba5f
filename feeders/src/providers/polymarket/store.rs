//! What the provider writes besides ticks and quotes (which go through the shared sink):
//! markets, tokens and their symbols (discovery), and the current depth of every book, tick
//! size changes and resolutions (the stream), each over a connection of its own that comes
//! back after the database does.
//!
//! Depth is throttled per token: the writer keeps the newest book of each token and writes a
//! token at most once per `TAPEFLOW_POLYMARKET_BOOK_MS` (a token quiet for that long is
//! written at once), every token due in one statement (the arbitrage trigger on
//! `polymarket_books` runs once per statement). A book we
//! stopped trusting (hash mismatch, divergence) is deleted until its new snapshot arrives, so
//! that nothing trades on it meanwhile.

use super::frames::MarketResolved;
use super::gamma::{Fees, GammaMarket};
use super::{PolymarketConfig, NAME};
use anyhow::Context;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tapeflow_db::backoff::Backoff;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

/// A lazily (re)connected client.
pub struct Db {
    url: String,
    client: Option<Client>,
}

impl Db {
    pub fn new(url: &str) -> Db {
        Db { url: url.to_string(), client: None }
    }

    pub async fn client(&mut self) -> anyhow::Result<&mut Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = Some(tapeflow_db::connect(&self.url, Duration::ZERO).await?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Forgets the connection after an error, so the next use connects again.
    pub fn reset(&mut self) {
        self.client = None;
    }
}

/// The symbol name of an outcome token: `pm-<market slug>-<outcome>`, lower case, letters,
/// digits and dashes.
pub fn symbol_name(slug: &str, outcome: &str) -> String {
    fn clean(s: &str, max: usize) -> String {
        let mut out = String::new();
        for c in s.chars().flat_map(char::to_lowercase) {
            if c.is_ascii_alphanumeric() {
                out.push(c);
            } else if !out.ends_with('-') && !out.is_empty() {
                out.push('-');
            }
            if out.len() >= max {
                break;
            }
        }
        out.trim_end_matches('-').to_string()
    }
    let slug = clean(slug, 90);
    let outcome = clean(outcome, 30);
    let outcome = if outcome.is_empty() { "x".to_string() } else { outcome };
    if slug.is_empty() {
        format!("pm-{outcome}")
    } else {
        format!("pm-{slug}-{outcome}")
    }
}

/// What storing a market did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub new_market: bool,
    pub changed: bool,
    pub new_tokens: usize,
}

/// Stores a discovered market, its two tokens and their symbols, in one transaction.
///
/// A market seen again is updated when a mapped field changed (not for Gamma's volumes alone,
/// so that a refresh does not wake the arbitrage trigger for nothing); one already resolved is
/// left as it is. A token keeps its symbol once it has one; a new symbol whose name is taken by
/// something else gets the token id's tail appended. New symbols are active; a user's
/// deactivation is never undone.
pub async fn store_market(
    client: &mut Client,
    m: &GammaMarket,
    cfg: &PolymarketConfig,
) -> anyhow::Result<Stored> {
    let tx = client.transaction().await?;
    let (fee_rate, fee_exponent) = m.fees.parameters();
    // Unknown fees: stored, but the arbitrage scan is told not to look at it.
    let watched = m.fees != Fees::Unknown;
    let row = tx
        .query_opt(
            "INSERT INTO tapeflow.polymarket_markets AS m (condition_id, gamma_id, question, slug, description, tags,
                 end_date, event_id, event_slug, neg_risk, neg_risk_market_id, neg_risk_augmented, min_order_size,
                 tick_size, fee_rate, fee_exponent, active, closed, accepting_orders, watched, raw)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
             ON CONFLICT (condition_id) DO UPDATE SET gamma_id = excluded.gamma_id, question = excluded.question,
                 slug = excluded.slug, description = excluded.description, tags = excluded.tags,
                 end_date = excluded.end_date, event_id = excluded.event_id, event_slug = excluded.event_slug,
                 neg_risk = excluded.neg_risk, neg_risk_market_id = excluded.neg_risk_market_id,
                 neg_risk_augmented = excluded.neg_risk_augmented, min_order_size = excluded.min_order_size,
                 tick_size = coalesce(excluded.tick_size, m.tick_size), fee_rate = excluded.fee_rate,
                 fee_exponent = excluded.fee_exponent, active = excluded.active, closed = excluded.closed,
                 accepting_orders = excluded.accepting_orders, raw = excluded.raw, updated_at = now()
             WHERE m.resolved_at IS NULL
               AND (m.gamma_id, m.question, m.slug, m.description, m.tags, m.end_date, m.event_id, m.event_slug,
                    m.neg_risk, m.neg_risk_market_id, m.neg_risk_augmented, m.min_order_size, m.fee_rate,
                    m.fee_exponent, m.active, m.closed, m.accepting_orders)
                   IS DISTINCT FROM
                   (excluded.gamma_id, excluded.question, excluded.slug, excluded.description, excluded.tags,
                    excluded.end_date, excluded.event_id, excluded.event_slug, excluded.neg_risk,
                    excluded.neg_risk_market_id, excluded.neg_risk_augmented, excluded.min_order_size,
                    excluded.fee_rate, excluded.fee_exponent, excluded.active, excluded.closed,
                    excluded.accepting_orders)
             RETURNING (xmax = 0)",
            &[
                &m.condition_id,
                &m.gamma_id,
                &m.question,
                &m.slug,
                &m.description,
                &m.tags,
                &m.end_date,
                &m.event_id,
                &m.event_slug,
                &m.neg_risk,
                &m.neg_risk_market_id,
                &m.neg_risk_augmented,
                &m.min_order_size,
                &m.tick_size,
                &fee_rate,
                &fee_exponent,
                &m.active,
                &m.closed,
                &m.accepting_orders,
                &watched,
                &m.raw,
            ],
        )
        .await
        .with_context(|| format!("storing market {}", m.condition_id))?;
    let mut out =
        Stored { new_market: row.as_ref().is_some_and(|r| r.get(0)), changed: row.is_some(), new_tokens: 0 };
    let base = m.slug.clone().unwrap_or_else(|| m.condition_id.chars().take(18).collect());
    for (index, (token, outcome)) in m.tokens.iter().enumerate() {
        let existing: Option<Option<String>> = tx
            .query_opt("SELECT symbol FROM tapeflow.polymarket_tokens WHERE token_id = $1", &[token])
            .await?
            .map(|r| r.get(0));
        let had_token = existing.is_some();
        let symbol = match existing.flatten() {
            Some(s) => s,
            None => {
                let wanted = symbol_name(&base, outcome);
                let taken = tx
                    .query_opt(
                        "SELECT 1 FROM tapeflow.symbols WHERE symbol = $1
                           AND NOT (provider = 'polymarket' AND provider_ref = $2)",
                        &[&wanted, token],
                    )
                    .await?
                    .is_some();
                let symbol = if taken {
                    let tail: String =
                        token.chars().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
                    format!("{wanted}-{tail}")
                } else {
                    wanted
                };
                let name: String = format!("{} — {outcome}", m.question).chars().take(300).collect();
                let inserted = tx
                    .execute(
                        "INSERT INTO tapeflow.symbols (symbol, name, asset_class, exchange, tick_size, currency,
                             timezone, session_open, session_close, provider, provider_ref, active)
                         VALUES ($1, $2, 'prediction', 'POLYMARKET', $3, 'USD', 'UTC', '00:00', '00:00',
                                 'polymarket', $4, true)
                         ON CONFLICT (symbol) DO NOTHING",
                        &[&symbol, &name, &cfg.symbol_tick, token],
                    )
                    .await
                    .with_context(|| format!("creating symbol {symbol} for token {token}"))?;
                if inserted == 1 {
                    tracing::info!(provider = NAME, %symbol, token = %token, market = %m.condition_id, "polymarket: new token symbol");
                }
                symbol
            }
        };
        let n = tx
            .execute(
                "INSERT INTO tapeflow.polymarket_tokens AS t (token_id, condition_id, outcome, outcome_index, symbol)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (token_id) DO UPDATE SET outcome = excluded.outcome, outcome_index = excluded.outcome_index,
                     symbol = coalesce(t.symbol, excluded.symbol)
                 WHERE (t.outcome, t.outcome_index, t.symbol) IS DISTINCT FROM
                       (excluded.outcome, excluded.outcome_index, coalesce(t.symbol, excluded.symbol))",
                &[token, &m.condition_id, outcome, &(index as i16), &symbol],
            )
            .await
            .with_context(|| format!("storing token {token} of {}", m.condition_id))?;
        if n == 1 && !had_token {
            out.new_tokens += 1;
        }
    }
    tx.commit().await.with_context(|| format!("committing market {}", m.condition_id))?;
    Ok(out)
}

/// The condition ids already stored.
pub async fn known_markets(client: &Client) -> anyhow::Result<Vec<String>> {
    Ok(client
        .query("SELECT condition_id FROM tapeflow.polymarket_markets", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// One token's current depth, best level first.
#[derive(Debug, Clone, PartialEq)]
pub struct BookRow {
    pub token_id: String,
    pub bid_prices: Vec<Decimal>,
    pub bid_sizes: Vec<Decimal>,
    pub ask_prices: Vec<Decimal>,
    pub ask_sizes: Vec<Decimal>,
    pub hash: Option<String>,
    pub tick_size: Option<Decimal>,
    pub venue_time: DateTime<Utc>,
}

/// What the stream asks the writer to do.
#[derive(Debug, Clone, PartialEq)]
pub enum DbOp {
    Book(BookRow),
    /// The token's book is not to be trusted until its next snapshot.
    Clear(String),
    TickSize {
        condition_id: String,
        tick: Decimal,
    },
    Resolved(MarketResolved),
}

fn array_text(v: &[Decimal]) -> String {
    let mut s = String::from("{");
    for (i, d) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&d.normalize().to_string());
    }
    s.push('}');
    s
}

/// Writes a round of books (and deletions) in one statement each.
async fn write_books(client: &mut Client, books: &[&BookRow], clears: &[String]) -> anyhow::Result<u64> {
    let tx = client.transaction().await?;
    if !clears.is_empty() {
        tx.execute("DELETE FROM tapeflow.polymarket_books WHERE token_id = ANY ($1)", &[&clears])
            .await
            .context("deleting untrusted books")?;
    }
    let mut written = 0;
    if !books.is_empty() {
        let ids: Vec<&str> = books.iter().map(|b| b.token_id.as_str()).collect();
        let bp: Vec<String> = books.iter().map(|b| array_text(&b.bid_prices)).collect();
        let bs: Vec<String> = books.iter().map(|b| array_text(&b.bid_sizes)).collect();
        let ap: Vec<String> = books.iter().map(|b| array_text(&b.ask_prices)).collect();
        let az: Vec<String> = books.iter().map(|b| array_text(&b.ask_sizes)).collect();
        let hash: Vec<Option<&str>> = books.iter().map(|b| b.hash.as_deref()).collect();
        let tick: Vec<Option<String>> =
            books.iter().map(|b| b.tick_size.map(|t| t.normalize().to_string())).collect();
        let vt: Vec<DateTime<Utc>> = books.iter().map(|b| b.venue_time).collect();
        written = tx
            .execute(
                "INSERT INTO tapeflow.polymarket_books AS b (token_id, condition_id, bid_prices, bid_sizes, ask_prices,
                     ask_sizes, hash, tick_size, venue_time, updated_at)
                 SELECT u.token_id, t.condition_id, u.bp::numeric[], u.bs::numeric[], u.ap::numeric[], u.az::numeric[],
                        u.hash, coalesce(u.tick::numeric, m.tick_size), u.vt, now()
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                             $8::timestamptz[]) AS u (token_id, bp, bs, ap, az, hash, tick, vt)
                 JOIN tapeflow.polymarket_tokens t ON t.token_id = u.token_id
                 JOIN tapeflow.polymarket_markets m ON m.condition_id = t.condition_id
                 ORDER BY u.token_id
                 ON CONFLICT (token_id) DO UPDATE SET bid_prices = excluded.bid_prices, bid_sizes = excluded.bid_sizes,
                     ask_prices = excluded.ask_prices, ask_sizes = excluded.ask_sizes, hash = excluded.hash,
                     tick_size = coalesce(excluded.tick_size, b.tick_size), venue_time = excluded.venue_time,
                     updated_at = now()",
                &[&ids, &bp, &bs, &ap, &az, &hash, &tick, &vt],
            )
            .await
            .context("writing books")?;
    }
    tx.commit().await?;
    Ok(written)
}

async fn apply_event(client: &mut Client, op: &DbOp) -> anyhow::Result<()> {
    match op {
        DbOp::TickSize { condition_id, tick } => {
            client
                .execute(
                    "UPDATE tapeflow.polymarket_markets SET tick_size = $2, updated_at = now()
                     WHERE condition_id = $1 AND tick_size IS DISTINCT FROM $2",
                    &[condition_id, tick],
                )
                .await
                .with_context(|| format!("recording the tick size of {condition_id}"))?;
        }
        DbOp::Resolved(r) => {
            let tx = client.transaction().await?;
            let at = super::frames::time_of(r.timestamp_ms);
            let n = tx
                .execute(
                    "UPDATE tapeflow.polymarket_markets SET closed = true, accepting_orders = false, resolved_at = $2,
                         winning_token_id = $3, winning_outcome = $4, updated_at = now()
                     WHERE condition_id = $1 AND resolved_at IS NULL",
                    &[&r.condition_id, &at, &r.winning_asset_id, &r.winning_outcome],
                )
                .await
                .with_context(|| format!("recording the resolution of {}", r.condition_id))?;
            if n > 0 {
                tx.execute(
                    "UPDATE tapeflow.polymarket_tokens SET winner = (token_id = $2) WHERE condition_id = $1",
                    &[&r.condition_id, &r.winning_asset_id],
                )
                .await?;
                // Nothing trades after resolution: routing unsubscribes the tokens.
                tx.execute(
                    "UPDATE tapeflow.symbols s SET active = false FROM tapeflow.polymarket_tokens t
                     WHERE t.condition_id = $1 AND s.symbol = t.symbol AND s.active",
                    &[&r.condition_id],
                )
                .await?;
                tracing::info!(provider = NAME, market = %r.condition_id, winner = %r.winning_asset_id,
                    outcome = ?r.winning_outcome, "polymarket: market resolved");
            }
            tx.commit().await?;
        }
        DbOp::Book(_) | DbOp::Clear(_) => {}
    }
    Ok(())
}

/// Starts the writer of books, tick sizes and resolutions; it ends when every sender is gone
/// (after writing what it holds) or at `shutdown`.
pub fn spawn_writer(
    url: String,
    every: Duration,
    shutdown: CancellationToken,
) -> (mpsc::UnboundedSender<DbOp>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(writer(url, every, rx, shutdown));
    (tx, task)
}

async fn writer(
    url: String,
    every: Duration,
    mut rx: mpsc::UnboundedReceiver<DbOp>,
    shutdown: CancellationToken,
) {
    let mut db = Db::new(&url);
    let mut w = Pending { every, ..Pending::default() };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    // After a failed write, nothing is tried before this.
    let mut retry_at: Option<Instant> = None;
    let mut closing = false;
    loop {
        let wake = match (w.next_due(), retry_at) {
            (Some(d), Some(r)) => Some(d.max(r)),
            (d, None) => d,
            (None, Some(_)) => None,
        };
        tokio::select! {
            op = rx.recv(), if !closing => match op {
                Some(op) => {
                    w.take(op);
                    // Take whatever else is queued before deciding what to write.
                    while let Ok(op) = rx.try_recv() {
                        w.take(op);
                    }
                }
                None => closing = true,
            },
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
            _ = shutdown.cancelled(), if !closing => {
                closing = true;
                while let Ok(op) = rx.try_recv() {
                    w.take(op);
                }
            }
        }
        if closing && w.is_empty() {
            return;
        }
        let now = Instant::now();
        if retry_at.is_some_and(|r| now < r) && !closing {
            continue;
        }
        // Closing: everything held is written now, throttle or not.
        let due = if closing { w.all() } else { w.due(now) };
        if due.is_empty() && w.events.is_empty() {
            continue;
        }
        match write_round(&mut db, &mut w, &due).await {
            Ok(()) => {
                backoff.reset();
                retry_at = None;
            }
            Err(e) => {
                db.reset();
                let wait = backoff.next_delay();
                tracing::warn!(provider = NAME, error = %format!("{e:#}"), books = w.books.len(), retry_in_ms = wait.as_millis() as u64,
                    "polymarket: cannot write books; keeping the newest of each");
                retry_at = Some(Instant::now() + wait);
                if closing {
                    // One more try at most: a shutdown does not wait for the database.
                    let _ = tokio::time::timeout(Duration::from_secs(3), async {
                        tokio::time::sleep(wait).await;
                        let due = w.all();
                        let _ = write_round(&mut db, &mut w, &due).await;
                    })
                    .await;
                    return;
                }
            }
        }
    }
}

/// What the writer holds: the newest state of each token not yet written (a book, or `None`
/// for a deletion), when each token was last written, and the other operations in order.
#[derive(Default)]
struct Pending {
    every: Duration,
    books: HashMap<String, Option<BookRow>>,
    written: HashMap<String, Instant>,
    events: VecDeque<DbOp>,
}

impl Pending {
    fn take(&mut self, op: DbOp) {
        match op {
            DbOp::Book(b) => {
                self.books.insert(b.token_id.clone(), Some(b));
            }
            DbOp::Clear(t) => {
                self.books.insert(t, None);
            }
            other => {
                if self.events.len() < 100_000 {
                    self.events.push_back(other);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.books.is_empty() && self.events.is_empty()
    }

    /// When a token may be written again: `every` after its last write.
    fn free_at(&self, token: &str) -> Option<Instant> {
        self.written.get(token).map(|t| *t + self.every)
    }

    /// The earliest time something held may be written (now when an operation waits).
    fn next_due(&self) -> Option<Instant> {
        if !self.events.is_empty() {
            return Some(Instant::now());
        }
        self.books.keys().map(|t| self.free_at(t).unwrap_or_else(Instant::now)).min()
    }

    /// The tokens whose last write is at least `every` ago.
    fn due(&self, now: Instant) -> Vec<String> {
        self.books.keys().filter(|t| self.free_at(t).is_none_or(|f| f <= now)).cloned().collect()
    }

    fn all(&self) -> Vec<String> {
        self.books.keys().cloned().collect()
    }
}

async fn write_round(db: &mut Db, w: &mut Pending, due: &[String]) -> anyhow::Result<()> {
    let client = db.client().await?;
    while let Some(op) = w.events.front() {
        apply_event(client, op).await?;
        w.events.pop_front();
    }
    if due.is_empty() {
        return Ok(());
    }
    let rows: Vec<&BookRow> = due.iter().filter_map(|t| w.books.get(t)).flatten().collect();
    let clears: Vec<String> = due.iter().filter(|t| matches!(w.books.get(*t), Some(None))).cloned().collect();
    let started = std::time::Instant::now();
    let written = write_books(client, &rows, &clears).await?;
    metrics::histogram!("tapeflow_polymarket_book_write_seconds").record(started.elapsed().as_secs_f64());
    metrics::counter!("tapeflow_polymarket_books_written_total").increment(written);
    if (written as usize) < rows.len() {
        tracing::debug!(
            provider = NAME,
            asked = rows.len(),
            written,
            "polymarket: books of tokens not in polymarket_tokens were skipped"
        );
    }
    let now = Instant::now();
    for t in due {
        w.books.remove(t);
        w.written.insert(t.clone(), now);
    }
    // Tokens quiet for a while need no record: they may be written at once again.
    let every = w.every;
    w.written.retain(|_, at| now.duration_since(*at) < every);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_names() {
        assert_eq!(
            symbol_name("will-donald-trump-win-the-2024-us-presidential-election", "Yes"),
            "pm-will-donald-trump-win-the-2024-us-presidential-election-yes"
        );
        assert_eq!(symbol_name("btc-updown-5m-1773307200", "Up"), "pm-btc-updown-5m-1773307200-up");
        assert_eq!(symbol_name("", "FaZe Clan!"), "pm-faze-clan");
        assert_eq!(symbol_name("Über  café", "??"), "pm-ber-caf-x");
        assert!(symbol_name(&"a".repeat(500), &"b".repeat(500)).len() <= 3 + 90 + 1 + 30);
    }

    fn row(token: &str) -> BookRow {
        BookRow {
            token_id: token.into(),
            bid_prices: vec![],
            bid_sizes: vec![],
            ask_prices: vec![],
            ask_sizes: vec![],
            hash: None,
            tick_size: None,
            venue_time: Utc::now(),
        }
    }

    #[test]
    fn the_throttle_is_per_token_and_keeps_the_newest_state() {
        let every = Duration::from_millis(100);
        let mut w = Pending { every, ..Pending::default() };
        let t0 = Instant::now();
        w.take(DbOp::Book(row("a")));
        assert_eq!(w.due(t0), vec!["a".to_string()], "a token never written is due at once");
        // "a" was just written; "b" was not: b is due, a only after the interval.
        w.books.clear();
        w.written.insert("a".into(), t0);
        w.take(DbOp::Book(row("a")));
        w.take(DbOp::Book(row("b")));
        assert_eq!(w.due(t0), vec!["b".to_string()]);
        assert!(w.due(t0 + every).contains(&"a".to_string()));
        // The newest state wins: a deletion after a book deletes.
        w.take(DbOp::Clear("a".into()));
        assert_eq!(w.books["a"], None);
        assert_eq!(w.books.len(), 2);
        // Other operations are due at once and kept in order.
        w.take(DbOp::TickSize { condition_id: "m".into(), tick: Decimal::new(1, 2) });
        assert!(w.next_due().unwrap() <= Instant::now());
        assert_eq!(w.events.len(), 1);
    }

    #[test]
    fn arrays_for_sql() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(array_text(&[d("0.50"), d("0.4"), d("10.000")]), "{0.5,0.4,10}");
        assert_eq!(array_text(&[]), "{}");
    }
}
