//! Trade and quote files: one parser per format, each turning a CSV row into trades and
//! quotes. Nothing here touches the database or the clock, so the fuzz targets build this
//! directory as it is (`feeders/tests/fuzz_import.rs`).
//!
//! A row either parses or fails with a message; the reader adds the line, the caller counts
//! and skips it, so one bad row never costs the rest of the file.

pub mod binance;
pub mod databento;
pub mod generic;
pub mod reader;
pub mod taq;
pub mod tardis;
pub mod tick_size;
pub mod time;

use csv::ByteRecord;
use std::collections::HashMap;
use tapeflow_analytics::Side;
pub use time::{TimeOptions, TimeUnit};

/// One trade of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    /// µs since the Unix epoch.
    pub time_us: i64,
    pub symbol: String,
    pub price: f64,
    pub size: f64,
    /// The aggressor as the file gives it; `Unknown` when it gives none.
    pub side: Side,
    /// Final once the trade leaves [`FileParser::parse`].
    pub trade_id: String,
    pub id_kind: IdKind,
    pub exchange: Option<String>,
    pub conditions: Option<Vec<String>>,
}

/// Where a trade id comes from, which decides how repeats within a file are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// The venue's own trade id: a repeat is the same trade written twice, stored once.
    Venue,
    /// A number the venue gives its messages (Databento's `sequence`): several trades of one
    /// message share it, so the k-th repeat at the same time gets `#k`.
    Sequence,
    /// None in the file: the id is a hash of what the trade says (see [`content_id`]), with
    /// `#k` for the k-th identical trade at the same time.
    Content,
}

/// One top-of-book quote of a file; a missing side is 0 with size 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub time_us: i64,
    pub symbol: String,
    pub bid: f64,
    pub ask: f64,
    pub bid_size: f64,
    pub ask_size: f64,
    pub exchange: Option<String>,
}

/// What one row holds: a trade, a quote, both (MBP-1) or neither (a book event that changes
/// no quote, a filtered trade).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub trade: Option<Trade>,
    pub quote: Option<Quote>,
    /// Why a well-formed row was left out on purpose (e.g. a cancelled TAQ trade).
    pub filtered: Option<&'static str>,
}

/// The formats `tapeflow-feed import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tardis,
    Databento,
    Binance,
    Taq,
    Csv,
}

impl Format {
    pub fn parse(s: &str) -> Result<Option<Format>, String> {
        Ok(Some(match s {
            "auto" => return Ok(None),
            "tardis" => Format::Tardis,
            "databento" => Format::Databento,
            "binance" => Format::Binance,
            "taq" => Format::Taq,
            "csv" => Format::Csv,
            _ => {
                return Err(format!(
                    "unknown format '{s}' (expected auto, tardis, databento, binance, taq or csv)"
                ))
            }
        }))
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Tardis => "tardis",
            Format::Databento => "databento",
            Format::Binance => "binance",
            Format::Taq => "taq",
            Format::Csv => "csv",
        }
    }

    /// The format a header belongs to, `None` when it matches none (then `--format csv`
    /// with a column map reads it).
    pub fn detect(header: &Header) -> Option<Format> {
        let has = |n: &str| header.find(n).is_some();
        if has("ts_event") && has("action") && has("price") {
            Some(Format::Databento)
        } else if has("exchange") && has("symbol") && has("timestamp") && has("local_timestamp") {
            Some(Format::Tardis)
        } else if has("dt") && (has("price") || (has("bid") && has("ofr"))) {
            Some(Format::Taq)
        } else if has("buyer_maker") || has("is_buyer_maker") || binance::is_headerless(header) {
            Some(Format::Binance)
        } else {
            None
        }
    }
}

/// Settings that change how rows are read.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--symbol`: the name to store the file's symbol under; required for files that name
    /// none. A file holding several symbols cannot be renamed to one.
    pub symbol: Option<String>,
    pub time: TimeOptions,
    /// `--columns` for the generic CSV format.
    pub columns: Option<generic::ColumnMap>,
}

/// A file's header: the column names, trimmed, compared without case.
#[derive(Debug, Clone)]
pub struct Header {
    pub names: Vec<String>,
}

impl Header {
    pub fn new(names: Vec<String>) -> Header {
        Header { names }
    }

    pub fn find(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|h| h.eq_ignore_ascii_case(name))
    }

    /// The first of `names` present.
    pub fn find_any(&self, names: &[&str]) -> Option<usize> {
        names.iter().find_map(|n| self.find(n))
    }

    /// A column the format cannot do without.
    pub fn require(&self, format: &str, names: &[&str]) -> Result<Col, String> {
        match self.find_any(names) {
            Some(i) => Ok(Col { idx: i, name: self.names[i].clone() }),
            None => Err(format!(
                "not a {format} file: no column {} in the header ({})",
                names.join(" or "),
                self.names.join(",")
            )),
        }
    }

    pub fn optional(&self, names: &[&str]) -> Option<Col> {
        self.find_any(names).map(|i| Col { idx: i, name: self.names[i].clone() })
    }
}

/// A column by position, with its name for error messages.
#[derive(Debug, Clone)]
pub struct Col {
    pub idx: usize,
    pub name: String,
}

impl Col {
    /// The trimmed text of this column in `row`.
    pub fn get<'a>(&self, row: &'a ByteRecord) -> Result<&'a str, String> {
        let raw = row.get(self.idx).ok_or_else(|| {
            format!("missing column {} ({} fields, expected at least {})", self.name, row.len(), self.idx + 1)
        })?;
        std::str::from_utf8(raw).map(str::trim).map_err(|_| format!("{}: not UTF-8 text", self.name))
    }

    /// A finite number.
    pub fn f64(&self, row: &ByteRecord) -> Result<f64, String> {
        let s = self.get(row)?;
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(format!("{}: '{s}' is not a finite number", self.name)),
        }
    }

    /// A price: finite and positive.
    pub fn price(&self, row: &ByteRecord) -> Result<f64, String> {
        let v = self.f64(row)?;
        if v > 0.0 {
            Ok(v)
        } else {
            Err(format!("{}: price must be positive, got {v}", self.name))
        }
    }

    /// A size: finite and not negative.
    pub fn size(&self, row: &ByteRecord) -> Result<f64, String> {
        let v = self.f64(row)?;
        if v >= 0.0 {
            Ok(v)
        } else {
            Err(format!("{}: size must not be negative, got {v}", self.name))
        }
    }

    /// A quote's price: empty (no price on that side) is 0, else finite and not negative.
    pub fn quote_price(&self, row: &ByteRecord) -> Result<f64, String> {
        if self.get(row)?.is_empty() {
            return Ok(0.0);
        }
        let v = self.f64(row)?;
        if v >= 0.0 {
            Ok(v)
        } else {
            Err(format!("{}: price must not be negative, got {v}", self.name))
        }
    }

    /// A quote's size: empty is 0, else finite and not negative.
    pub fn quote_size(&self, row: &ByteRecord) -> Result<f64, String> {
        if self.get(row)?.is_empty() {
            return Ok(0.0);
        }
        self.size(row)
    }

    pub fn time(&self, row: &ByteRecord, opts: TimeOptions) -> Result<i64, String> {
        time::parse_time(self.get(row)?, opts).map_err(|e| format!("{}: {e}", self.name))
    }

    /// Non-empty text, else `None`.
    pub fn text(&self, row: &ByteRecord) -> Result<Option<String>, String> {
        let s = self.get(row)?;
        Ok((!s.is_empty()).then(|| s.to_string()))
    }

    /// A non-empty symbol or id.
    pub fn required_text(&self, row: &ByteRecord) -> Result<String, String> {
        self.text(row)?.ok_or_else(|| format!("{}: empty", self.name))
    }
}

/// A true/false field as files write it.
pub fn parse_bool(col: &Col, s: &str) -> Result<bool, String> {
    match s {
        "True" | "true" | "TRUE" | "t" | "1" => Ok(true),
        "False" | "false" | "FALSE" | "f" | "0" => Ok(false),
        _ => Err(format!("{}: '{s}' is not true or false", col.name)),
    }
}

/// Parses one row of one format.
pub trait RowParser: Send {
    fn parse(&mut self, row: &ByteRecord) -> Result<Parsed, String>;
}

/// A format's parser with what every format shares: the `--symbol` rename and the final
/// trade ids.
pub struct FileParser {
    pub format: Format,
    inner: Box<dyn RowParser>,
    rename: Option<Rename>,
    ids: IdAssigner,
}

struct Rename {
    to: String,
    /// The file's own symbol, fixed by its first row.
    from: Option<String>,
}

impl FileParser {
    /// The parser of `format` (detected from the header when `None`).
    pub fn new(format: Option<Format>, header: &Header, opts: &Options) -> Result<FileParser, String> {
        let format = match format.or_else(|| Format::detect(header)) {
            Some(f) => f,
            None => {
                return Err(format!(
                    "unknown file format (header: {}); name it with --format, or read it as \
                     --format csv --columns time=...,price=...",
                    header.names.join(",")
                ))
            }
        };
        let inner: Box<dyn RowParser> = match format {
            Format::Tardis => Box::new(tardis::Parser::new(header, opts)?),
            Format::Databento => Box::new(databento::Parser::new(header, opts)?),
            Format::Binance => Box::new(binance::Parser::new(header, opts)?),
            Format::Taq => Box::new(taq::Parser::new(header, opts)?),
            Format::Csv => Box::new(generic::Parser::new(header, opts)?),
        };
        let names_symbols = match format {
            Format::Binance => false,
            Format::Taq => header.find_any(&["symbol", "sym_root"]).is_some(),
            Format::Csv => opts.columns.as_ref().is_some_and(|c| c.pairs.iter().any(|(k, _)| k == "symbol")),
            Format::Tardis | Format::Databento => true,
        };
        if !names_symbols && opts.symbol.is_none() {
            return Err(format!("{} file without a symbol column: pass --symbol NAME", format.name()));
        }
        let rename = opts.symbol.clone().map(|to| Rename { to, from: None });
        Ok(FileParser { format, inner, rename, ids: IdAssigner::default() })
    }

    /// The file's own name of the symbol `--symbol` renamed, once a row has shown it.
    pub fn file_symbol(&self) -> Option<&str> {
        self.rename.as_ref().and_then(|r| r.from.as_deref())
    }

    /// One data row, with the symbol renamed and trade ids final.
    pub fn parse(&mut self, row: &ByteRecord) -> Result<Parsed, String> {
        let mut parsed = self.inner.parse(row)?;
        if let Some(r) = &mut self.rename {
            for symbol in parsed
                .trade
                .iter_mut()
                .map(|t| &mut t.symbol)
                .chain(parsed.quote.iter_mut().map(|q| &mut q.symbol))
            {
                // Files without a symbol column give "" and take the name as it is.
                if !symbol.is_empty() {
                    match &r.from {
                        None => r.from = Some(symbol.clone()),
                        Some(from) if from == symbol => {}
                        Some(from) => {
                            return Err(format!(
                                "symbol '{symbol}' in a file renamed from '{from}' to '{}' by --symbol: \
                                 a file of several symbols cannot be renamed to one",
                                r.to
                            ))
                        }
                    }
                }
                symbol.clone_from(&r.to);
            }
        }
        if let Some(t) = &parsed.trade {
            if t.symbol.is_empty() {
                return Err(format!("{} files name no symbol: pass --symbol", self.format.name()));
            }
        }
        if let Some(q) = &parsed.quote {
            if q.symbol.is_empty() {
                return Err(format!("{} files name no symbol: pass --symbol", self.format.name()));
            }
        }
        if let Some(t) = &mut parsed.trade {
            self.ids.assign(t);
        }
        Ok(parsed)
    }
}

/// Final trade ids. A repeat of a derived id (same symbol, µs and base id) gets `#1`, `#2`, …
/// in file order, so identical trades stay distinct and a re-read of the same rows gives the
/// same ids. The counts of the last [`RECENT_TIMES`] distinct µs of each symbol are kept, so a
/// file may be out of order by that much (interleaved venues, clock jitter); identical trades
/// farther apart than that in an unordered file would be taken for one.
#[derive(Default)]
struct IdAssigner {
    symbols: HashMap<String, Recent>,
}

/// Distinct times per symbol whose id counts are remembered.
pub const RECENT_TIMES: usize = 1024;

#[derive(Default)]
struct Recent {
    counts: HashMap<i64, HashMap<String, u32>>,
    order: std::collections::VecDeque<i64>,
}

impl IdAssigner {
    fn assign(&mut self, t: &mut Trade) {
        if t.id_kind == IdKind::Venue {
            return;
        }
        if t.id_kind == IdKind::Content {
            t.trade_id = content_id(t);
        }
        if !self.symbols.contains_key(&t.symbol) {
            self.symbols.insert(t.symbol.clone(), Recent::default());
        }
        let recent = self.symbols.get_mut(&t.symbol).expect("inserted above");
        if !recent.counts.contains_key(&t.time_us) {
            if recent.order.len() == RECENT_TIMES {
                if let Some(oldest) = recent.order.pop_front() {
                    recent.counts.remove(&oldest);
                }
            }
            recent.order.push_back(t.time_us);
            recent.counts.insert(t.time_us, HashMap::new());
        }
        let seen = recent.counts.get_mut(&t.time_us).expect("inserted above");
        let n = seen.entry(t.trade_id.clone()).or_insert(0);
        if *n > 0 {
            t.trade_id = format!("{}#{n}", t.trade_id);
        }
        *n += 1;
    }
}

/// The id of a trade whose file gives none: `h` and 16 hex digits of FNV-1a (64-bit, a fixed
/// published function, so ids do not change between builds) over the trade's time in µs, its
/// price and size as IEEE bits (so `158.5` and `158.50` agree) and its exchange. Neither the
/// file name nor the row number enters, so the same trades read from a renamed, recompressed
/// or re-cut file get the same ids, and so does the same trade in two files (a subset or an
/// overlapping download). The symbol is not hashed: it is part of the stored key already.
pub fn content_id(t: &Trade) -> String {
    let mut h = Fnv::default();
    h.write(&t.time_us.to_le_bytes());
    h.write(&t.price.to_bits().to_le_bytes());
    h.write(&t.size.to_bits().to_le_bytes());
    if let Some(x) = &t.exchange {
        h.write(x.as_bytes());
    }
    format!("h{:016x}", h.0)
}

struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(time_us: i64, price: f64, kind: IdKind, id: &str) -> Trade {
        Trade {
            time_us,
            symbol: "X".into(),
            price,
            size: 1.0,
            side: Side::Unknown,
            trade_id: id.into(),
            id_kind: kind,
            exchange: Some("N".into()),
            conditions: None,
        }
    }

    #[test]
    fn repeats_of_derived_ids_are_numbered_and_venue_ids_kept() {
        let mut ids = IdAssigner::default();
        let mut got = Vec::new();
        for (t, kind, id) in [
            (1, IdKind::Sequence, "7"),
            (1, IdKind::Sequence, "7"),
            (1, IdKind::Sequence, "8"),
            (2, IdKind::Sequence, "7"),
            (2, IdKind::Venue, "v"),
            (2, IdKind::Venue, "v"),
        ] {
            let mut tr = trade(t, 10.0, kind, id);
            ids.assign(&mut tr);
            got.push(tr.trade_id);
        }
        assert_eq!(got, ["7", "7#1", "8", "7", "v", "v"]);
        // Out of order: a time seen before keeps its counts.
        let mut back = trade(1, 10.0, IdKind::Sequence, "7");
        ids.assign(&mut back);
        assert_eq!(back.trade_id, "7#2");
    }

    #[test]
    fn content_ids_depend_on_the_trade_only() {
        let a = trade(5, 158.5, IdKind::Content, "");
        assert_eq!(content_id(&a), content_id(&trade(5, "158.50".parse().unwrap(), IdKind::Content, "")));
        assert_ne!(content_id(&a), content_id(&trade(5, 158.51, IdKind::Content, "")));
        assert_ne!(content_id(&a), content_id(&trade(6, 158.5, IdKind::Content, "")));
        let mut ids = IdAssigner::default();
        let (mut x, mut y) = (a.clone(), a);
        ids.assign(&mut x);
        ids.assign(&mut y);
        assert!(x.trade_id.starts_with('h') && x.trade_id.len() == 17);
        assert_eq!(y.trade_id, format!("{}#1", x.trade_id));
        // FNV-1a of nothing is its offset basis.
        assert_eq!(Fnv::default().0, 0xcbf2_9ce4_8422_2325);
    }
}
