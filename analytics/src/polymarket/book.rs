//! A full L2 book of one Polymarket outcome token, as the CLOB market channel describes it:
//! a `book` message is a snapshot, each `price_change` entry sets one level's size (absolute,
//! not a delta; size 0 removes the level). Best bid is the HIGHEST bid and best ask the LOWEST
//! ask, whatever order the venue lists them in (its `book` messages list bids ascending and
//! asks descending, best last — the predecessor read the first element and kept the worst).
//!
//! The venue's `hash` of a book message is the SHA-1 (hex) of the compact JSON
//! `{"market":…,"asset_id":…,"hash":"","bids":[{"price":…,"size":…},…],"asks":[…]}` with bids
//! ascending and asks descending, numbers as the venue's decimal strings (no trailing zeros):
//! [`Book::venue_hash`] computes it, and a snapshot whose hash differs is corrupt. Whether the
//! hashes carried by `price_change` entries use the same form is not established by any capture
//! we have, so [`Book::check_top`] (the entries' `best_bid`/`best_ask` against ours) is the
//! divergence check after updates.

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// One price level: price in collateral per share (0 < p < 1), size in shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Level {
    pub price: Decimal,
    pub size: Decimal,
}

impl Level {
    pub fn new(price: Decimal, size: Decimal) -> Level {
        Level { price, size }
    }
}

/// Which side of the book a `price_change` entry touches: the venue's BUY is a bid, SELL an ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BookSide {
    #[serde(rename = "BUY", alias = "buy", alias = "bid")]
    Bid,
    #[serde(rename = "SELL", alias = "sell", alias = "ask")]
    Ask,
}

/// One `price_change` entry: the new size of the level at `price` (0 removes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriceChange {
    pub side: BookSide,
    pub price: Decimal,
    pub size: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BookError {
    /// A price outside (0, 1).
    Price(Decimal),
    /// A negative size.
    Size(Decimal),
    /// The same price twice on one side of a snapshot.
    Duplicate(BookSide, Decimal),
    /// A snapshot's hash is not the hash of its levels.
    Hash { expected: String, computed: String },
}

impl fmt::Display for BookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BookError::Price(p) => write!(f, "price {p} is outside (0, 1)"),
            BookError::Size(s) => write!(f, "size {s} is negative"),
            BookError::Duplicate(side, p) => write!(f, "price {p} appears twice among the {side:?} levels"),
            BookError::Hash { expected, computed } => {
                write!(f, "book hash mismatch: the venue sent {expected}, the levels hash to {computed}")
            }
        }
    }
}

impl std::error::Error for BookError {}

/// What applying a batch of changes did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The changes were applied.
    Applied,
    /// The batch is older than the book's last message and was ignored (out-of-order delivery).
    Stale,
}

/// The book's top disagrees with the venue's `best_bid`/`best_ask`: re-snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    pub side: BookSide,
    pub ours: Option<Decimal>,
    pub venue: Option<Decimal>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<Decimal>| v.map_or("none".to_string(), |d| d.normalize().to_string());
        write!(f, "best {:?}: ours {}, the venue's {}", self.side, show(&self.ours), show(&self.venue))
    }
}

/// The depth of one token. Levels are keyed by price (numerically: 0.5 and 0.50 are one level).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Book {
    bids: BTreeMap<Decimal, Decimal>,
    asks: BTreeMap<Decimal, Decimal>,
    /// The venue's timestamp (ms) of the last message applied.
    pub timestamp_ms: Option<i64>,
    /// The venue's hash of the last message applied, as sent.
    pub hash: Option<String>,
    /// The venue's current order tick, when known (it changes at run time).
    pub tick_size: Option<Decimal>,
}

fn check_price(price: Decimal) -> Result<(), BookError> {
    if price <= Decimal::ZERO || price >= Decimal::ONE {
        return Err(BookError::Price(price));
    }
    Ok(())
}

impl Book {
    pub fn new() -> Book {
        Book::default()
    }

    /// A book from a `book` message's levels, in any order; levels of size 0 are dropped.
    pub fn from_snapshot(
        bids: impl IntoIterator<Item = Level>,
        asks: impl IntoIterator<Item = Level>,
    ) -> Result<Book, BookError> {
        let mut book = Book::new();
        for (side, levels) in [
            (BookSide::Bid, bids.into_iter().collect::<Vec<_>>()),
            (BookSide::Ask, asks.into_iter().collect()),
        ] {
            let map = book.side_mut(side);
            for l in levels {
                check_price(l.price)?;
                if l.size < Decimal::ZERO {
                    return Err(BookError::Size(l.size));
                }
                if map.insert(l.price, l.size).is_some() {
                    return Err(BookError::Duplicate(side, l.price));
                }
            }
            map.retain(|_, s| !s.is_zero());
        }
        Ok(book)
    }

    /// Replaces the whole book with a snapshot (a `book` message), keeping the tick size.
    pub fn replace(&mut self, snapshot: Book) {
        let tick = self.tick_size;
        *self = snapshot;
        self.tick_size = self.tick_size.or(tick);
    }

    fn side_mut(&mut self, side: BookSide) -> &mut BTreeMap<Decimal, Decimal> {
        match side {
            BookSide::Bid => &mut self.bids,
            BookSide::Ask => &mut self.asks,
        }
    }

    /// Sets one level; size 0 removes it. The book is unchanged on error.
    pub fn apply(&mut self, change: PriceChange) -> Result<(), BookError> {
        check_price(change.price)?;
        if change.size < Decimal::ZERO {
            return Err(BookError::Size(change.size));
        }
        let map = self.side_mut(change.side);
        if change.size.is_zero() {
            map.remove(&change.price);
        } else {
            map.insert(change.price, change.size);
        }
        Ok(())
    }

    /// Applies the entries of one `price_change` message for this token, stamped `timestamp_ms`.
    /// A message older than the last one applied is ignored ([`Applied::Stale`]); a bad entry
    /// leaves the book as it was before the message.
    pub fn apply_message(
        &mut self,
        timestamp_ms: i64,
        changes: &[PriceChange],
        hash: Option<&str>,
    ) -> Result<Applied, BookError> {
        if self.timestamp_ms.is_some_and(|t| timestamp_ms < t) {
            return Ok(Applied::Stale);
        }
        for c in changes {
            check_price(c.price)?;
            if c.size < Decimal::ZERO {
                return Err(BookError::Size(c.size));
            }
        }
        for c in changes {
            self.apply(*c)?;
        }
        self.timestamp_ms = Some(timestamp_ms);
        if let Some(h) = hash {
            self.hash = Some(h.to_string());
        }
        Ok(Applied::Applied)
    }

    /// The highest bid.
    pub fn best_bid(&self) -> Option<Level> {
        self.bids.iter().next_back().map(|(p, s)| Level::new(*p, *s))
    }

    /// The lowest ask.
    pub fn best_ask(&self) -> Option<Level> {
        self.asks.iter().next().map(|(p, s)| Level::new(*p, *s))
    }

    /// Bids best first (descending price).
    pub fn bids(&self) -> impl DoubleEndedIterator<Item = Level> + ExactSizeIterator + '_ {
        self.bids.iter().rev().map(|(p, s)| Level::new(*p, *s))
    }

    /// Asks best first (ascending price).
    pub fn asks(&self) -> impl DoubleEndedIterator<Item = Level> + ExactSizeIterator + '_ {
        self.asks.iter().map(|(p, s)| Level::new(*p, *s))
    }

    /// One side best first.
    pub fn levels(&self, side: BookSide) -> Vec<Level> {
        match side {
            BookSide::Bid => self.bids().collect(),
            BookSide::Ask => self.asks().collect(),
        }
    }

    /// One side best first as (prices, sizes): the arrays of tapeflow.polymarket_books.
    pub fn columns(&self, side: BookSide) -> (Vec<Decimal>, Vec<Decimal>) {
        self.levels(side).into_iter().map(|l| (l.price.normalize(), l.size.normalize())).unzip()
    }

    pub fn is_empty(&self) -> bool {
        self.bids.is_empty() && self.asks.is_empty()
    }

    /// Best bid at or above best ask (a transient venue state, or a diverged book).
    pub fn is_crossed(&self) -> bool {
        matches!((self.best_bid(), self.best_ask()), (Some(b), Some(a)) if b.price >= a.price)
    }

    /// The same levels (prices compared numerically, sizes too), metadata aside.
    pub fn same_levels(&self, other: &Book) -> bool {
        self.bids == other.bids && self.asks == other.asks
    }

    /// Compares our top with a `price_change` entry's `best_bid`/`best_ask`. The venue shows an
    /// empty side as a missing value, "0" (bids), or "0"/"1" (asks); all read as no level.
    pub fn check_top(&self, best_bid: Option<Decimal>, best_ask: Option<Decimal>) -> Result<(), Divergence> {
        let bid = best_bid.filter(|p| *p > Decimal::ZERO && *p < Decimal::ONE);
        let ask = best_ask.filter(|p| *p > Decimal::ZERO && *p < Decimal::ONE);
        let ours_bid = self.best_bid().map(|l| l.price);
        let ours_ask = self.best_ask().map(|l| l.price);
        if ours_bid != bid {
            return Err(Divergence { side: BookSide::Bid, ours: ours_bid, venue: bid });
        }
        if ours_ask != ask {
            return Err(Divergence { side: BookSide::Ask, ours: ours_ask, venue: ask });
        }
        Ok(())
    }

    /// The venue's hash of this book for `market` (condition id) and `asset_id` (token id).
    pub fn venue_hash(&self, market: &str, asset_id: &str) -> String {
        fn push_levels<'a>(out: &mut String, levels: impl Iterator<Item = (&'a Decimal, &'a Decimal)>) {
            out.push('[');
            for (i, (p, s)) in levels.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!(r#"{{"price":"{}","size":"{}"}}"#, p.normalize(), s.normalize()));
            }
            out.push(']');
        }
        let quote = |s: &str| serde_json::to_string(s).expect("a string serialises");
        let mut text =
            format!(r#"{{"market":{},"asset_id":{},"hash":"","bids":"#, quote(market), quote(asset_id));
        push_levels(&mut text, self.bids.iter());
        text.push_str(r#","asks":"#);
        push_levels(&mut text, self.asks.iter().rev());
        text.push('}');
        let digest = Sha1::digest(text.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Refuses a snapshot whose hash is not the hash of its levels.
    pub fn verify_hash(&self, market: &str, asset_id: &str, expected: &str) -> Result<(), BookError> {
        let computed = self.venue_hash(market, asset_id);
        if computed.eq_ignore_ascii_case(expected.trim_start_matches("0x")) {
            Ok(())
        } else {
            Err(BookError::Hash { expected: expected.to_string(), computed })
        }
    }

    /// The changes that turn this book into `target` (removed levels with size 0), bids first.
    pub fn diff(&self, target: &Book) -> Vec<PriceChange> {
        let mut out = Vec::new();
        for (side, from, to) in
            [(BookSide::Bid, &self.bids, &target.bids), (BookSide::Ask, &self.asks, &target.asks)]
        {
            for (p, s) in to {
                if from.get(p) != Some(s) {
                    out.push(PriceChange { side, price: *p, size: *s });
                }
            }
            for p in from.keys().filter(|p| !to.contains_key(*p)) {
                out.push(PriceChange { side, price: *p, size: Decimal::ZERO });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn lv(p: &str, s: &str) -> Level {
        Level::new(d(p), d(s))
    }

    #[derive(Deserialize)]
    struct Msg {
        market: String,
        asset_id: String,
        hash: String,
        bids: Vec<Level>,
        asks: Vec<Level>,
    }

    // The shared captures: $TAPEFLOW_SHARED_DATA, else shared/data beside the repository.
    fn capture(rel: &str) -> String {
        let data = std::env::var_os("TAPEFLOW_SHARED_DATA")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
        let path = data.join("c_protocol/polymarket").join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    #[test]
    fn best_bid_is_the_highest_whatever_the_order() {
        // The venue lists bids ascending and asks descending: best last.
        let b = Book::from_snapshot(
            [lv("0.01", "1000"), lv("0.48", "10"), lv("0.5", "7")],
            [lv("0.98", "5000"), lv("0.53", "3"), lv("0.52", "4")],
        )
        .unwrap();
        assert_eq!(b.best_bid(), Some(lv("0.5", "7")));
        assert_eq!(b.best_ask(), Some(lv("0.52", "4")));
        let bids: Vec<_> = b.bids().map(|l| l.price).collect();
        assert_eq!(bids, vec![d("0.5"), d("0.48"), d("0.01")]);
        let asks: Vec<_> = b.asks().map(|l| l.price).collect();
        assert_eq!(asks, vec![d("0.52"), d("0.53"), d("0.98")]);
        assert_eq!(
            b.columns(BookSide::Ask),
            (vec![d("0.52"), d("0.53"), d("0.98")], vec![d("4"), d("3"), d("5000")])
        );
        assert!(!b.is_crossed());
    }

    #[test]
    fn price_change_sets_and_removes_levels() {
        let mut b = Book::from_snapshot([lv("0.4", "10"), lv("0.45", "0")], [lv("0.6", "5")]).unwrap();
        assert_eq!(b.bids().len(), 1, "a zero-size level of a snapshot is dropped");
        b.apply(PriceChange { side: BookSide::Bid, price: d("0.45"), size: d("3") }).unwrap();
        assert_eq!(b.best_bid(), Some(lv("0.45", "3")));
        // Absolute, not a delta; 0.450 is the same level as 0.45.
        b.apply(PriceChange { side: BookSide::Bid, price: d("0.450"), size: d("8") }).unwrap();
        assert_eq!(b.best_bid().unwrap().size, d("8"));
        b.apply(PriceChange { side: BookSide::Bid, price: d("0.45"), size: d("0") }).unwrap();
        assert_eq!(b.best_bid(), Some(lv("0.4", "10")));
        b.apply(PriceChange { side: BookSide::Ask, price: d("0.6"), size: d("0") }).unwrap();
        assert_eq!(b.best_ask(), None);
        // Removing a level that is not there is harmless.
        b.apply(PriceChange { side: BookSide::Ask, price: d("0.7"), size: d("0") }).unwrap();
        assert_eq!(b.asks().len(), 0);
    }

    #[test]
    fn bad_input_is_refused_and_changes_nothing() {
        assert_eq!(Book::from_snapshot([lv("1", "1")], []), Err(BookError::Price(d("1"))));
        assert_eq!(Book::from_snapshot([lv("0", "1")], []), Err(BookError::Price(d("0"))));
        assert_eq!(Book::from_snapshot([], [lv("0.5", "-1")]), Err(BookError::Size(d("-1"))));
        assert_eq!(
            Book::from_snapshot([lv("0.5", "1"), lv("0.50", "2")], []),
            Err(BookError::Duplicate(BookSide::Bid, d("0.50")))
        );
        let mut b = Book::from_snapshot([lv("0.4", "10")], []).unwrap();
        let before = b.clone();
        let batch = [
            PriceChange { side: BookSide::Bid, price: d("0.41"), size: d("1") },
            PriceChange { side: BookSide::Bid, price: d("1.5"), size: d("1") },
        ];
        assert!(b.apply_message(10, &batch, Some("h")).is_err());
        assert_eq!(b, before, "a bad entry rolls back the whole message");
    }

    #[test]
    fn out_of_order_messages_are_ignored() {
        let mut b = Book::new();
        let up = |p: &str, s: &str| PriceChange { side: BookSide::Ask, price: d(p), size: d(s) };
        assert_eq!(b.apply_message(100, &[up("0.6", "5")], Some("a")).unwrap(), Applied::Applied);
        assert_eq!(b.apply_message(90, &[up("0.6", "0")], Some("b")).unwrap(), Applied::Stale);
        assert_eq!(b.best_ask(), Some(lv("0.6", "5")));
        assert_eq!(b.hash.as_deref(), Some("a"));
        // Equal timestamps are not stale: the venue sends several messages per millisecond.
        assert_eq!(b.apply_message(100, &[up("0.6", "7")], None).unwrap(), Applied::Applied);
        assert_eq!(b.best_ask(), Some(lv("0.6", "7")));
    }

    #[test]
    fn check_top_reads_the_venues_empty_forms() {
        let b = Book::from_snapshot([lv("0.6", "1")], []).unwrap();
        assert_eq!(b.check_top(Some(d("0.6")), None), Ok(()));
        assert_eq!(b.check_top(Some(d("0.6")), Some(d("1"))), Ok(()));
        assert_eq!(b.check_top(Some(d("0.6")), Some(d("0"))), Ok(()));
        let e = b.check_top(Some(d("0.61")), None).unwrap_err();
        assert_eq!(e, Divergence { side: BookSide::Bid, ours: Some(d("0.6")), venue: Some(d("0.61")) });
        assert!(b.check_top(Some(d("0.6")), Some(d("0.7"))).is_err());
        assert_eq!(Book::new().check_top(Some(d("0")), Some(d("1"))), Ok(()));
    }

    #[test]
    fn venue_hash_of_real_book_messages() {
        // A real WS book message and a real REST book: their hashes are the SHA-1 of the
        // compact form documented above, whatever order the levels are given in.
        for rel in ["nautilus_py_tests_ws_messages/book.json", "nautilus_py_tests_http_responses/book.json"] {
            let m: Msg = serde_json::from_str(&capture(rel)).unwrap();
            let mut bids = m.bids.clone();
            bids.reverse();
            let b = Book::from_snapshot(bids, m.asks.clone()).unwrap();
            assert!(b.bids().len() > 2 && b.asks().len() > 2);
            b.verify_hash(&m.market, &m.asset_id, &m.hash).unwrap();
            let mut changed = b.clone();
            let top = changed.best_bid().unwrap();
            changed
                .apply(PriceChange { side: BookSide::Bid, price: top.price, size: top.size + Decimal::ONE })
                .unwrap();
            assert!(matches!(
                changed.verify_hash(&m.market, &m.asset_id, &m.hash),
                Err(BookError::Hash { .. })
            ));
            assert!(b.verify_hash(&m.market, "another asset", &m.hash).is_err());
        }
    }

    #[test]
    fn venue_hash_ignores_trailing_zeros() {
        let a = Book::from_snapshot([lv("0.50", "10.00")], [lv("0.6", "1")]).unwrap();
        let b = Book::from_snapshot([lv("0.5", "10")], [lv("0.600", "1.0")]).unwrap();
        assert_eq!(a.venue_hash("m", "t"), b.venue_hash("m", "t"));
        assert_ne!(a.venue_hash("m", "t"), Book::new().venue_hash("m", "t"));
    }

    // Books on a 0.01 grid with integer-cent sizes, as the venue's.
    fn arb_side() -> impl Strategy<Value = BTreeMap<Decimal, Decimal>> {
        prop::collection::btree_map(1u32..100, 0u32..500, 0..12).prop_map(|m| {
            m.into_iter().map(|(p, s)| (Decimal::new(p as i64, 2), Decimal::new(s as i64, 1))).collect()
        })
    }

    fn to_levels(m: &BTreeMap<Decimal, Decimal>) -> Vec<Level> {
        m.iter().map(|(p, s)| Level::new(*p, *s)).collect()
    }

    proptest! {
        // Book maintenance: snapshot A, then the changes from A to B (in any order, with
        // redundant repeats), equals snapshot B — levels, best prices and the venue hash.
        #[test]
        fn snapshot_plus_updates_is_the_next_snapshot(
            a_bids in arb_side(), a_asks in arb_side(), b_bids in arb_side(), b_asks in arb_side(),
            seed in any::<u64>(), repeats in 0usize..4,
        ) {
            let a = Book::from_snapshot(to_levels(&a_bids), to_levels(&a_asks)).unwrap();
            let b = Book::from_snapshot(to_levels(&b_bids), to_levels(&b_asks)).unwrap();
            let mut changes = a.diff(&b);
            // Re-sending a level's final value is idempotent.
            let n = changes.len();
            for i in 0..repeats.min(n) {
                changes.push(changes[(seed as usize + i) % n]);
            }
            // Entries of distinct levels commute, and a repeat carries the same final size:
            // any order gives the same book. Shuffle deterministically from the seed.
            let mut x = seed | 1;
            for i in (1..changes.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                changes.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut book = a.clone();
            book.apply_message(1, &changes, None).unwrap();
            prop_assert!(book.same_levels(&b));
            prop_assert_eq!(book.best_bid(), b.best_bid());
            prop_assert_eq!(book.best_ask(), b.best_ask());
            prop_assert_eq!(book.venue_hash("m", "t"), b.venue_hash("m", "t"));
            prop_assert!(book.bids().all(|l| !l.size.is_zero()) && book.asks().all(|l| !l.size.is_zero()));
        }

        // Best bid is the maximum of the non-empty bid levels, best ask the minimum ask, and
        // depth iterates strictly best-first.
        #[test]
        fn tops_and_iteration_order(bids in arb_side(), asks in arb_side()) {
            let book = Book::from_snapshot(to_levels(&bids), to_levels(&asks)).unwrap();
            let max_bid = bids.iter().filter(|(_, s)| !s.is_zero()).map(|(p, _)| *p).max();
            let min_ask = asks.iter().filter(|(_, s)| !s.is_zero()).map(|(p, _)| *p).min();
            prop_assert_eq!(book.best_bid().map(|l| l.price), max_bid);
            prop_assert_eq!(book.best_ask().map(|l| l.price), min_ask);
            let bp: Vec<_> = book.bids().map(|l| l.price).collect();
            prop_assert!(bp.windows(2).all(|w| w[0] > w[1]));
            let ap: Vec<_> = book.asks().map(|l| l.price).collect();
            prop_assert!(ap.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
