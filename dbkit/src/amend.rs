//! Cancels and corrections of stored trades, including the notices that arrive before their
//! trade (sql/027): those are held in `tapeflow.held_amendments` and applied when the trade is
//! written, so a cancelled trade never stays stored because its notice came first.

use anyhow::Context;
use chrono::{DateTime, Utc};
use std::borrow::Borrow;
use tokio_postgres::{Client, Transaction};

use crate::copy::TICK_COLUMNS;

/// A provider's notice that a trade it sent was cancelled (or reported in error), or corrected.
#[derive(Debug, Clone, PartialEq)]
pub struct TickAmend {
    pub symbol: String,
    /// The stored trade's `trade_id`.
    pub trade_id: String,
    /// The notice's time. The trade is looked for from [`AMEND_LOOKBACK`] before it to a minute
    /// after it, since a notice may carry the trade's time or its own.
    pub at: DateTime<Utc>,
    /// For a correction, the trade as it should have been; `None` for a cancel.
    pub replacement: Option<TickReplacement>,
}

/// A corrected trade: a new id, price, size and conditions. Its time, side, side source and
/// exchange are the original's (the side was classified at ingest, against the quotes then).
#[derive(Debug, Clone, PartialEq)]
pub struct TickReplacement {
    pub trade_id: String,
    pub price: f64,
    pub size: f64,
    pub conditions: Option<Vec<String>>,
}

/// How far before its notice a cancelled or corrected trade is looked for: one extended US
/// session (04:00-20:00 New York). Trade ids are unique per exchange and day, so the window
/// never reaches another day's trade with the same id.
pub const AMEND_LOOKBACK: chrono::Duration = chrono::Duration::hours(16);

/// How long a notice whose trade is not stored is held: a week covers a weekend's outage and
/// the backfill after it; a notice for a trade never received does not stay for ever.
pub const HELD_FOR: chrono::Duration = chrono::Duration::days(7);

/// What [`amend_ticks`] or [`apply_held`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Amended {
    /// Trades removed (cancelled, or replaced by their correction).
    pub removed: u64,
    /// Corrected trades stored in their place.
    pub replaced: u64,
    /// The symbol and trade id of each notice whose trade is not stored (not received yet, or
    /// already amended: a replay), held in `tapeflow.held_amendments`.
    pub held: Vec<(String, String)>,
}

/// Applies cancels and corrections to the stored ticks, in order, in one transaction, and holds
/// those whose trade is not stored. The ticks' delete and insert triggers keep the rollups
/// equal to the trades. Idempotent: a notice applied again finds its trade gone and changes
/// nothing (it is held, in case the trade is replayed).
pub async fn amend_ticks<R: Borrow<TickAmend> + Sync>(
    client: &mut Client,
    amends: &[R],
) -> anyhow::Result<Amended> {
    if amends.is_empty() {
        return Ok(Amended::default());
    }
    let tx = client.transaction().await?;
    let done = apply(&tx, amends.iter().map(|a| (a.borrow(), None))).await?;
    tx.commit().await?;
    Ok(done)
}

/// Applies the held notices of the trades just written (`trades`: their symbols and trade
/// ids), in the order they were received; a notice whose trade is still not in its window
/// stays held.
pub async fn apply_held(client: &mut Client, trades: &[(&str, &str)]) -> anyhow::Result<Amended> {
    if trades.is_empty() {
        return Ok(Amended::default());
    }
    let (symbols, ids): (Vec<&str>, Vec<&str>) = trades.iter().copied().unzip();
    let tx = client.transaction().await?;
    let rows = tx
        .query(
            "WITH due AS (
                 DELETE FROM tapeflow.held_amendments h
                 USING unnest($1::text[], $2::text[]) AS k (symbol, trade_id)
                 WHERE h.symbol = k.symbol AND h.trade_id = k.trade_id
                 RETURNING h.*)
             SELECT symbol, trade_id, at, new_trade_id, price, size, conditions, received_at
             FROM due ORDER BY received_at, at",
            &[&symbols, &ids],
        )
        .await
        .context("taking the held cancels and corrections of the trades written")?;
    let held: Vec<(TickAmend, DateTime<Utc>)> = rows
        .iter()
        .map(|r| {
            let new_id: Option<String> = r.get(3);
            let replacement = new_id.map(|trade_id| TickReplacement {
                trade_id,
                price: r.get(4),
                size: r.get(5),
                conditions: r.get(6),
            });
            (TickAmend { symbol: r.get(0), trade_id: r.get(1), at: r.get(2), replacement }, r.get(7))
        })
        .collect();
    let done = apply(&tx, held.iter().map(|(a, received)| (a, Some(*received)))).await?;
    tx.commit().await?;
    Ok(done)
}

/// The symbol and trade id of every held notice, after dropping those held longer than
/// [`HELD_FOR`]; and how many were dropped.
pub async fn held_trades(client: &Client) -> anyhow::Result<(Vec<(String, String)>, u64)> {
    let cutoff = Utc::now() - HELD_FOR;
    let dropped = client
        .execute("DELETE FROM tapeflow.held_amendments WHERE received_at < $1", &[&cutoff])
        .await
        .context("dropping expired held cancels and corrections")?;
    let rows = client
        .query("SELECT symbol, trade_id FROM tapeflow.held_amendments", &[])
        .await
        .context("reading the held cancels and corrections")?;
    Ok((rows.iter().map(|r| (r.get(0), r.get(1))).collect(), dropped))
}

/// Applies notices in order inside `tx`; each with its first receipt time when it was held
/// before (`None`: received now).
async fn apply<'a>(
    tx: &Transaction<'_>,
    notices: impl Iterator<Item = (&'a TickAmend, Option<DateTime<Utc>>)>,
) -> anyhow::Result<Amended> {
    let mut done = Amended::default();
    let remove = tx
        .prepare(
            "DELETE FROM tapeflow.ticks
             WHERE symbol = $1 AND trade_id = $2 AND time >= $3 AND time <= $4
             RETURNING time, side, side_source, exchange",
        )
        .await?;
    let insert = tx
        .prepare(&format!(
            "INSERT INTO tapeflow.ticks ({TICK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT DO NOTHING"
        ))
        .await?;
    // A notice met again keeps the latest content and its first receipt.
    let hold = tx
        .prepare(
            "INSERT INTO tapeflow.held_amendments AS h
                 (symbol, trade_id, at, new_trade_id, price, size, conditions, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, now()))
             ON CONFLICT (symbol, trade_id, at) DO UPDATE
             SET new_trade_id = EXCLUDED.new_trade_id, price = EXCLUDED.price, size = EXCLUDED.size,
                 conditions = EXCLUDED.conditions, received_at = least(h.received_at, EXCLUDED.received_at)",
        )
        .await?;
    for (a, received) in notices {
        let gone = tx
            .query(
                &remove,
                &[&a.symbol, &a.trade_id, &(a.at - AMEND_LOOKBACK), &(a.at + chrono::Duration::minutes(1))],
            )
            .await
            .with_context(|| format!("removing trade {} of {}", a.trade_id, a.symbol))?;
        let Some(old) = gone.first() else {
            let r = a.replacement.as_ref();
            tx.execute(
                &hold,
                &[
                    &a.symbol,
                    &a.trade_id,
                    &a.at,
                    &r.map(|r| &r.trade_id),
                    &r.map(|r| r.price),
                    &r.map(|r| r.size),
                    &r.and_then(|r| r.conditions.as_ref()),
                    &received,
                ],
            )
            .await
            .with_context(|| format!("holding the notice for trade {} of {}", a.trade_id, a.symbol))?;
            done.held.push((a.symbol.clone(), a.trade_id.clone()));
            continue;
        };
        done.removed += gone.len() as u64;
        let Some(r) = &a.replacement else { continue };
        let (time, side, source, exchange): (DateTime<Utc>, i8, String, Option<String>) =
            (old.get(0), old.get(1), old.get(2), old.get(3));
        done.replaced += tx
            .execute(
                &insert,
                &[&time, &a.symbol, &r.price, &r.size, &side, &source, &r.trade_id, &exchange, &r.conditions],
            )
            .await
            .with_context(|| {
                format!("storing the correction {} of {} {}", r.trade_id, a.symbol, a.trade_id)
            })?;
    }
    Ok(done)
}

/// The trades that held notices wait for, by symbol: a writer looks up each tick it wrote in
/// it, and only when it holds anything (the common case, nothing held, costs nothing).
#[derive(Debug, Default)]
pub struct HeldIndex(std::collections::HashMap<String, std::collections::HashSet<String>>);

impl HeldIndex {
    pub fn add(&mut self, trades: impl IntoIterator<Item = (String, String)>) {
        for (symbol, trade_id) in trades {
            self.0.entry(symbol).or_default().insert(trade_id);
        }
    }

    pub fn remove(&mut self, trades: &[(&str, &str)]) {
        for (symbol, trade_id) in trades {
            if let Some(ids) = self.0.get_mut(*symbol) {
                ids.remove(*trade_id);
                if ids.is_empty() {
                    self.0.remove(*symbol);
                }
            }
        }
    }

    /// The written ticks that a held notice waits for, as [`apply_held`] takes them.
    pub fn due<'a, R: Borrow<crate::copy::TickRow> + 'a>(
        &self,
        ticks: impl IntoIterator<Item = &'a R>,
    ) -> Vec<(&'a str, &'a str)> {
        if self.0.is_empty() {
            return Vec::new();
        }
        ticks
            .into_iter()
            .map(Borrow::borrow)
            .filter(|t| self.0.get(&t.symbol).is_some_and(|ids| ids.contains(&t.trade_id)))
            .map(|t| (t.symbol.as_str(), t.trade_id.as_str()))
            .collect()
    }

    /// Notices held, counted by trade.
    pub fn len(&self) -> usize {
        self.0.values().map(|ids| ids.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::TickRow;

    fn tick(symbol: &str, id: &str) -> TickRow {
        TickRow {
            time: Utc::now(),
            symbol: symbol.into(),
            price: 1.0,
            size: 1.0,
            side: b'N',
            side_source: "none",
            trade_id: id.into(),
            exchange: None,
            conditions: None,
        }
    }

    #[test]
    fn the_index_finds_exactly_the_held_trades_among_those_written() {
        let mut held = HeldIndex::default();
        let ticks = [tick("AAPL", "V-1"), tick("AAPL", "V-2"), tick("MSFT", "V-1")];
        assert!(held.due(&ticks).is_empty(), "nothing held, nothing due");
        held.add([("AAPL".to_string(), "V-2".to_string()), ("MSFT".to_string(), "V-9".to_string())]);
        assert_eq!(held.len(), 2);
        // The same id under another symbol is another trade.
        assert_eq!(held.due(&ticks), [("AAPL", "V-2")]);
        held.remove(&[("AAPL", "V-2")]);
        assert!(held.due(&ticks).is_empty());
        assert_eq!(held.len(), 1);
        held.remove(&[("MSFT", "V-9")]);
        assert!(held.is_empty());
    }
}
