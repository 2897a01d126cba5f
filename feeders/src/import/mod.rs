//! `tapeflow-feed import`: trade and quote files into `tapeflow.ticks` and `tapeflow.quotes`.
//!
//! A reader thread decompresses (gzip, zstd: by the file's magic bytes, streaming), parses
//! and classifies rows and hands batches of about 10,000 to the writer, which creates the
//! symbols they need and writes them with the idempotent COPY of `tapeflow_db::copy`. So a
//! re-run, or a run after an interruption, stores only what is missing. See README
//! "Importing files".

mod formats;

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, NaiveTime, Utc};
use formats::reader::{CsvRows, Row};
use formats::{Format, Options, Parsed, TimeUnit};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tapeflow_analytics::{Side, SideSource};
use tapeflow_db::copy::{write_quotes, write_ticks, QuoteRow, TickRow};
use tapeflow_feeders::ingest_side::IngestClassifier;
use tapeflow_feeders::progress::Progress;
use tokio::sync::mpsc;
use tokio_postgres::Client;

const USAGE: &str = "usage: tapeflow-feed import [options] FILE...

Loads trades and quotes into tapeflow.ticks and tapeflow.quotes (DATABASE_URL); re-running
stores nothing twice. Files may be gzip or zstd compressed.

  --format F         auto (default: from the header), tardis, databento, binance, taq, csv
  --symbol NAME      store the file's symbol under NAME (required for binance dumps, which name none)
  --columns MAP      for --format csv: time=COL,price=COL,size=COL[,symbol=,side=,buyer_maker=,id=,
                     exchange=,conditions=,bid=,ask=,bid_size=,ask_size=]
  --delimiter C      field separator (default ,)
  --time-unit U      unit of numeric times: s, ms, us, ns (default: judged by size)
  --local-time TZ    text times are wall-clock times in TZ (e.g. America/New_York), whatever zone they carry
  --asset-class C    for new symbols: us_equity, etf, crypto, fx, future, index, prediction
                     (default: crypto for tardis and binance, future for CME in databento, else us_equity)
  --tick-size X      for new symbols (default: inferred from the file's prices)
  --timezone TZ      for new symbols (default by asset class: UTC for crypto, America/Chicago for
                     futures, America/New_York otherwise)
  --session HH:MM-HH:MM|24h   regular session of new symbols (default by asset class)
  --no-infer-sides   store trades without a venue side as unknown instead of classifying them
  --batch N          rows per write (default 10000)
  --strict           exit with an error when any line was bad (they are skipped either way)";

/// Prices per symbol read before its tick size is inferred (its rows wait until then).
const TICK_SAMPLE: usize = 10_000;
/// Rows waiting for their symbols' tick sizes, all symbols together; past it the symbol with
/// the most rows is created from what it has.
const MAX_PENDING_ROWS: usize = 200_000;
/// Bad lines printed per file; the rest are only counted.
const SHOWN_ERRORS: u64 = 20;
const ASSET_CLASSES: [&str; 7] = ["us_equity", "etf", "crypto", "fx", "future", "index", "prediction"];

#[derive(Debug, Clone)]
struct Args {
    files: Vec<PathBuf>,
    format: Option<Format>,
    opts: Options,
    delimiter: u8,
    asset_class: Option<String>,
    tick_size: Option<f64>,
    timezone: Option<String>,
    session: Option<(String, String)>,
    infer_sides: bool,
    batch: usize,
    strict: bool,
}

fn parse_args(args: &[String]) -> anyhow::Result<Args> {
    let mut a = Args {
        files: Vec::new(),
        format: None,
        opts: Options::default(),
        delimiter: b',',
        asset_class: None,
        tick_size: None,
        timezone: None,
        session: None,
        infer_sides: true,
        batch: 10_000,
        strict: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> anyhow::Result<String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it.next().cloned().ok_or_else(|| anyhow!("{flag} needs a value\n\n{USAGE}")),
            }
        };
        match flag {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--format" => a.format = Format::parse(&value()?).map_err(|e| anyhow!(e))?,
            "--symbol" => a.opts.symbol = Some(value()?),
            "--columns" => {
                a.opts.columns = Some(formats::generic::ColumnMap::parse(&value()?).map_err(|e| anyhow!(e))?)
            }
            "--delimiter" => {
                let v = value()?;
                let v = if v == "\\t" || v == "tab" { "\t".to_string() } else { v };
                match v.as_bytes() {
                    [b] => a.delimiter = *b,
                    _ => bail!("--delimiter: one character, got '{v}'"),
                }
            }
            "--time-unit" => a.opts.time.unit = Some(TimeUnit::parse(&value()?).map_err(|e| anyhow!(e))?),
            "--local-time" => {
                let v = value()?;
                a.opts.time.local =
                    Some(v.parse().map_err(|_| anyhow!("--local-time: unknown time zone '{v}'"))?);
            }
            "--asset-class" => {
                let v = value()?;
                if !ASSET_CLASSES.contains(&v.as_str()) {
                    bail!("--asset-class: '{v}' is not one of {}", ASSET_CLASSES.join(", "));
                }
                a.asset_class = Some(v);
            }
            "--tick-size" => {
                let v = value()?;
                match v.parse::<f64>() {
                    Ok(t) if t.is_finite() && t > 0.0 => a.tick_size = Some(t),
                    _ => bail!("--tick-size: '{v}' is not a positive number"),
                }
            }
            "--timezone" => {
                let v = value()?;
                v.parse::<chrono_tz::Tz>().map_err(|_| anyhow!("--timezone: unknown time zone '{v}'"))?;
                a.timezone = Some(v);
            }
            "--session" => a.session = Some(parse_session(&value()?)?),
            "--no-infer-sides" => a.infer_sides = false,
            "--batch" => {
                let v = value()?;
                a.batch = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| anyhow!("--batch: '{v}' is not a count"))?;
            }
            "--strict" => a.strict = true,
            f if f.starts_with("--") => bail!("unknown option {f}\n\n{USAGE}"),
            file => a.files.push(PathBuf::from(file)),
        }
    }
    if a.files.is_empty() {
        bail!("no file given\n\n{USAGE}");
    }
    Ok(a)
}

/// `HH:MM-HH:MM`, or `24h` (open = close, a 24-hour market).
fn parse_session(s: &str) -> anyhow::Result<(String, String)> {
    if s.eq_ignore_ascii_case("24h") {
        return Ok(("00:00".into(), "00:00".into()));
    }
    let (open, close) =
        s.split_once('-').ok_or_else(|| anyhow!("--session: '{s}' is not HH:MM-HH:MM or 24h"))?;
    for t in [open, close] {
        NaiveTime::parse_from_str(t, "%H:%M").map_err(|_| anyhow!("--session: '{t}' is not HH:MM"))?;
    }
    Ok((open.to_string(), close.to_string()))
}

/// The calendar of a new symbol of `asset_class`: time zone, session open and close.
fn default_calendar(asset_class: &str) -> (&'static str, &'static str, &'static str) {
    match asset_class {
        "crypto" | "prediction" => ("UTC", "00:00", "00:00"),
        // Spot FX trades around the clock from Sunday 17:00 New York.
        "fx" => ("America/New_York", "17:00", "17:00"),
        // CME Globex: 17:00 to 16:00 Chicago.
        "future" => ("America/Chicago", "17:00", "16:00"),
        _ => ("America/New_York", "09:30", "16:00"),
    }
}

/// A symbol to create, as the import found it.
#[derive(Debug, Clone)]
struct SymbolSpec {
    symbol: String,
    asset_class: String,
    tick_size: f64,
    /// How the tick size was found, for the report.
    tick_origin: String,
    timezone: String,
    session_open: String,
    session_close: String,
    provider_ref: String,
}

enum Msg {
    Symbol(SymbolSpec),
    Batch { ticks: Vec<TickRow>, quotes: Vec<QuoteRow> },
    Done(ReadStats),
}

#[derive(Debug, Default, Clone)]
struct ReadStats {
    rows: u64,
    trades: u64,
    quotes: u64,
    bad: u64,
    filtered: u64,
    /// Rows that are neither (book events of Databento files).
    other: u64,
    format: &'static str,
    /// A read error that ended the file early.
    fatal: Option<String>,
}

/// Rows waiting for their symbol, and the batch being filled.
struct Stage {
    args: Args,
    format: Format,
    released: HashSet<String>,
    pending: HashMap<String, Pending>,
    pending_rows: usize,
    ticks: Vec<TickRow>,
    quotes: Vec<QuoteRow>,
    specs: Vec<SymbolSpec>,
}

#[derive(Default)]
struct Pending {
    prices: Vec<f64>,
    ticks: Vec<TickRow>,
    quotes: Vec<QuoteRow>,
    exchange: Option<String>,
    file_symbol: String,
}

impl Stage {
    /// Adds a row's tick and quote; `file_symbol` is the symbol's name in the file when
    /// `--symbol` renamed it.
    fn add(&mut self, tick: Option<TickRow>, quote: Option<QuoteRow>, file_symbol: Option<&str>) {
        let symbol = match (&tick, &quote) {
            (Some(t), _) => t.symbol.clone(),
            (_, Some(q)) => q.symbol.clone(),
            _ => return,
        };
        if self.released.contains(&symbol) {
            self.ticks.extend(tick);
            self.quotes.extend(quote);
            return;
        }
        let p = self.pending.entry(symbol.clone()).or_default();
        if p.file_symbol.is_empty() {
            p.file_symbol = file_symbol.unwrap_or(&symbol).to_string();
        }
        if let Some(t) = tick {
            if p.prices.len() < TICK_SAMPLE {
                p.prices.push(t.price);
            }
            p.exchange = p.exchange.take().or_else(|| t.exchange.clone());
            p.ticks.push(t);
            self.pending_rows += 1;
        }
        if let Some(q) = quote {
            for px in [q.bid, q.ask] {
                if px > 0.0 && p.prices.len() < TICK_SAMPLE {
                    p.prices.push(px);
                }
            }
            p.exchange = p.exchange.take().or_else(|| q.exchange.clone());
            p.quotes.push(q);
            self.pending_rows += 1;
        }
        if self.args.tick_size.is_some() || p.prices.len() >= TICK_SAMPLE {
            self.release(&symbol);
        }
        while self.pending_rows > MAX_PENDING_ROWS {
            let largest = self
                .pending
                .iter()
                .max_by_key(|(_, p)| p.ticks.len() + p.quotes.len())
                .map(|(s, _)| s.clone());
            match largest {
                Some(s) => self.release(&s),
                None => break,
            }
        }
    }

    /// Creates the symbol's spec and moves its waiting rows into the batch.
    fn release(&mut self, symbol: &str) {
        let Some(p) = self.pending.remove(symbol) else { return };
        self.pending_rows -= p.ticks.len() + p.quotes.len();
        let asset_class = self.args.asset_class.clone().unwrap_or_else(|| {
            match self.format {
                Format::Tardis | Format::Binance => "crypto",
                // Publisher 1 is CME Globex (GLBX.MDP3).
                Format::Databento if p.exchange.as_deref() == Some("1") => "future",
                _ => "us_equity",
            }
            .to_string()
        });
        let (tz, open, close) = default_calendar(&asset_class);
        let equity = matches!(asset_class.as_str(), "us_equity" | "etf");
        let inferred = if equity {
            formats::tick_size::us_equity(&p.prices)
        } else {
            formats::tick_size::infer(&p.prices)
        };
        let (tick_size, tick_origin) = match (self.args.tick_size, inferred) {
            (Some(t), _) => (t, "from --tick-size".to_string()),
            (None, Some(t)) if equity => {
                (t, format!("Reg NMS, from {} prices", thousands(p.prices.len() as u64)))
            }
            (None, Some(t)) => (t, format!("inferred from {} prices", thousands(p.prices.len() as u64))),
            (None, None) => (0.01, "0.01: no price to infer from".to_string()),
        };
        let (session_open, session_close) =
            self.args.session.clone().unwrap_or_else(|| (open.to_string(), close.to_string()));
        self.specs.push(SymbolSpec {
            symbol: symbol.to_string(),
            asset_class,
            tick_size,
            tick_origin,
            timezone: self.args.timezone.clone().unwrap_or_else(|| tz.to_string()),
            session_open,
            session_close,
            provider_ref: format!("{}:{}", self.format.name(), p.file_symbol),
        });
        self.released.insert(symbol.to_string());
        self.ticks.extend(p.ticks);
        self.quotes.extend(p.quotes);
    }

    fn release_all(&mut self) {
        let mut waiting: Vec<String> = self.pending.keys().cloned().collect();
        waiting.sort();
        for s in waiting {
            self.release(&s);
        }
    }

    fn full(&self) -> bool {
        self.ticks.len() >= self.args.batch || self.quotes.len() >= self.args.batch
    }

    /// Sends the new symbols, then the batch; false once the writer has gone.
    fn send(&mut self, tx: &mpsc::Sender<Msg>) -> bool {
        for spec in self.specs.drain(..) {
            if tx.blocking_send(Msg::Symbol(spec)).is_err() {
                return false;
            }
        }
        if self.ticks.is_empty() && self.quotes.is_empty() {
            return true;
        }
        let batch =
            Msg::Batch { ticks: std::mem::take(&mut self.ticks), quotes: std::mem::take(&mut self.quotes) };
        tx.blocking_send(batch).is_ok()
    }
}

/// Counts the bytes read from the file (compressed), for the progress bar.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The file's bytes, decompressed by its magic number (gzip, zstd) as they are read.
fn open_input(path: &Path, count: Arc<AtomicU64>) -> anyhow::Result<Box<dyn Read + Send>> {
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut buffered = BufReader::with_capacity(1 << 16, Counting { inner: file, count });
    let magic = buffered.fill_buf().with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::with_capacity(1 << 16, flate2::bufread::MultiGzDecoder::new(buffered)))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .with_context(|| format!("{}: zstd", path.display()))?,
        )
    } else {
        Box::new(buffered)
    })
}

fn to_time(us: i64) -> DateTime<Utc> {
    // parse_time keeps times within 1970–2200, which chrono represents.
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::UNIX_EPOCH)
}

/// The reader thread: parses, classifies and batches `path`, sending to the writer.
fn read_file(
    path: PathBuf,
    args: Args,
    tx: mpsc::Sender<Msg>,
    progress: Arc<Progress>,
    count: Arc<AtomicU64>,
) -> ReadStats {
    let shown = path.display().to_string();
    let mut stats = ReadStats::default();
    let input = match open_input(&path, count.clone()) {
        Ok(i) => i,
        Err(e) => {
            stats.fatal = Some(format!("{e:#}"));
            let _ = tx.blocking_send(Msg::Done(stats.clone()));
            return stats;
        }
    };
    let mut rows = match CsvRows::open(input, args.format, &args.opts, args.delimiter) {
        Ok(r) => r,
        Err(e) => {
            stats.fatal = Some(format!("{shown}: {e}"));
            let _ = tx.blocking_send(Msg::Done(stats.clone()));
            return stats;
        }
    };
    let format = rows.parser.format;
    stats.format = format.name();
    let mut classifier = IngestClassifier::default();
    let mut stage = Stage {
        args: args.clone(),
        format,
        released: HashSet::new(),
        pending: HashMap::new(),
        pending_rows: 0,
        ticks: Vec::with_capacity(args.batch),
        quotes: Vec::new(),
        specs: Vec::new(),
    };
    loop {
        let row = match rows.next_row() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => {
                stats.fatal = Some(format!("{shown}:{e}"));
                break;
            }
        };
        stats.rows += 1;
        match row {
            Row::Bad { line, error } => {
                stats.bad += 1;
                if stats.bad <= SHOWN_ERRORS {
                    eprintln!("warning: {shown}:{line}: {error} (line skipped)");
                }
            }
            Row::Parsed(parsed) => {
                let Parsed { trade, quote, filtered } = parsed;
                stats.filtered += u64::from(filtered.is_some());
                stats.other += u64::from(trade.is_none() && quote.is_none() && filtered.is_none());
                let quote = quote.map(|q| {
                    stats.quotes += 1;
                    classifier.on_quote(&q.symbol, q.bid, q.ask);
                    QuoteRow {
                        time: to_time(q.time_us),
                        symbol: q.symbol,
                        bid: q.bid,
                        ask: q.ask,
                        bid_size: q.bid_size,
                        ask_size: q.ask_size,
                        exchange: q.exchange,
                    }
                });
                let tick = trade.map(|t| {
                    stats.trades += 1;
                    let venue = (t.side != Side::Unknown).then_some(t.side);
                    let (side, source) = if args.infer_sides {
                        classifier.classify(&t.symbol, t.price, venue)
                    } else {
                        match venue {
                            Some(s) => (s, SideSource::Venue),
                            None => (Side::Unknown, SideSource::None),
                        }
                    };
                    TickRow {
                        time: to_time(t.time_us),
                        symbol: t.symbol,
                        price: t.price,
                        size: t.size,
                        side: side.code(),
                        side_source: source.as_str(),
                        trade_id: t.trade_id,
                        exchange: t.exchange,
                        conditions: t.conditions,
                    }
                });
                stage.add(tick, quote, rows.parser.file_symbol());
            }
        }
        if stats.rows % 4096 == 0 {
            progress.set_position(count.load(Ordering::Relaxed));
        }
        if (stage.full() || !stage.specs.is_empty()) && !stage.send(&tx) {
            return stats;
        }
    }
    stage.release_all();
    if stage.send(&tx) {
        let _ = tx.blocking_send(Msg::Done(stats.clone()));
    }
    stats
}

/// What the writer did with one file.
#[derive(Debug, Default)]
struct FileReport {
    read: ReadStats,
    new_ticks: u64,
    new_quotes: u64,
    symbols: Vec<String>,
    elapsed: Duration,
}

/// Creates the symbol unless it exists; returns a line for the report.
async fn register(client: &Client, s: &SymbolSpec) -> anyhow::Result<String> {
    let created = client
        .query_opt(
            "INSERT INTO tapeflow.symbols (symbol, asset_class, tick_size, timezone, session_open, session_close,
                                           provider, provider_ref)
             VALUES ($1, $2, $3, $4, $5::text::time, $6::text::time, 'file', $7)
             ON CONFLICT (symbol) DO NOTHING RETURNING symbol",
            &[&s.symbol, &s.asset_class, &s.tick_size, &s.timezone, &s.session_open, &s.session_close, &s.provider_ref],
        )
        .await
        .with_context(|| format!("creating symbol {}", s.symbol))?;
    if created.is_some() {
        let session = if s.session_open == s.session_close {
            "24h".to_string()
        } else {
            format!("{}–{}", s.session_open, s.session_close)
        };
        return Ok(format!(
            "{}: created ({}, tick {} {}, {} {session})",
            s.symbol, s.asset_class, s.tick_size, s.tick_origin, s.timezone
        ));
    }
    let row = client
        .query_one("SELECT tick_size, provider FROM tapeflow.symbols WHERE symbol = $1", &[&s.symbol])
        .await
        .with_context(|| format!("reading symbol {}", s.symbol))?;
    let (tick, provider): (f64, String) = (row.get(0), row.get(1));
    let note = if (tick - s.tick_size).abs() > 1e-12 * tick.max(s.tick_size) {
        format!("; this file gives {} ({})", s.tick_size, s.tick_origin)
    } else {
        String::new()
    };
    Ok(format!("{}: exists (provider {provider}, tick {tick}{note}), kept", s.symbol))
}

async fn import_file(client: &mut Client, path: &Path, args: &Args) -> anyhow::Result<FileReport> {
    let started = Instant::now();
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let label = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let progress = Arc::new(Progress::new(&label, len, "bytes"));
    let count = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = mpsc::channel(2);
    let reader = {
        let (path, args, progress, count) =
            (path.to_path_buf(), args.clone(), progress.clone(), count.clone());
        std::thread::spawn(move || read_file(path, args, tx, progress, count))
    };
    let mut report = FileReport::default();
    let mut written = 0u64;
    let shown = path.display();
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Symbol(spec) => {
                let line = register(client, &spec).await.with_context(|| format!("{shown}"))?;
                report.symbols.push(line);
            }
            Msg::Batch { ticks, quotes } => {
                written += (ticks.len() + quotes.len()) as u64;
                report.new_quotes += write_quotes(client, &quotes).await.with_context(|| {
                    format!("{shown}: writing quotes (re-run to resume: imports are idempotent)")
                })?;
                report.new_ticks += write_ticks(client, &ticks).await.with_context(|| {
                    format!("{shown}: writing ticks (re-run to resume: imports are idempotent)")
                })?;
                progress.set_position(count.load(Ordering::Relaxed));
                progress.set_message(format!(
                    "{} rows written, {} new",
                    thousands(written),
                    thousands(report.new_ticks + report.new_quotes)
                ));
            }
            Msg::Done(stats) => report.read = stats,
        }
    }
    let stats = reader.join().map_err(|_| anyhow!("{shown}: the reader thread panicked"))?;
    if report.read.format.is_empty() {
        report.read = stats;
    }
    progress.finish(format!("{} rows read", thousands(report.read.rows)));
    report.elapsed = started.elapsed();
    Ok(report)
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let args = parse_args(args)?;
    let url = tapeflow_db::database_url();
    let mut client = tapeflow_db::connect(&url, Duration::from_secs(10)).await?;
    let (mut bad, mut failed) = (0u64, Vec::new());
    for path in &args.files {
        let r = import_file(&mut client, path, &args).await?;
        let s = &r.read;
        let secs = r.elapsed.as_secs_f64();
        println!(
            "{}: {} rows ({}) in {secs:.2} s, {} rows/s",
            path.display(),
            thousands(s.rows),
            if s.format.is_empty() { "unread" } else { s.format },
            thousands((s.rows as f64 / secs.max(1e-9)) as u64)
        );
        println!(
            "  trades: {} read, {} new; quotes: {} read, {} new; bad lines: {}; left out: {}; other rows: {}",
            thousands(s.trades),
            thousands(r.new_ticks),
            thousands(s.quotes),
            thousands(r.new_quotes),
            thousands(s.bad),
            thousands(s.filtered),
            thousands(s.other)
        );
        for line in &r.symbols {
            println!("  {line}");
        }
        bad += s.bad;
        if let Some(e) = &s.fatal {
            eprintln!("error: {e}");
            failed.push(path.display().to_string());
        }
    }
    if !failed.is_empty() {
        bail!(
            "could not read {} to the end: {}",
            if failed.len() == 1 { "a file" } else { "files" },
            failed.join(", ")
        );
    }
    if args.strict && bad > 0 {
        bail!("{bad} bad lines (--strict)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> anyhow::Result<Args> {
        parse_args(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn flags() {
        let a = args("--format=taq --symbol X --tick-size 0.01 --session 24h --local-time America/New_York f.csv g.csv")
            .unwrap();
        assert_eq!(a.format, Some(Format::Taq));
        assert_eq!(a.opts.symbol.as_deref(), Some("X"));
        assert_eq!(a.tick_size, Some(0.01));
        assert_eq!(a.session, Some(("00:00".into(), "00:00".into())));
        assert_eq!(a.files.len(), 2);
        assert!(a.infer_sides);
        for bad in [
            "",
            "--format xml f",
            "--tick-size -1 f",
            "--session 9-16 f",
            "--timezone Mars/Base f",
            "--bogus f",
            "--batch 0 f",
            "--symbol",
        ] {
            assert!(args(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn calendars_and_numbers() {
        assert_eq!(default_calendar("crypto"), ("UTC", "00:00", "00:00"));
        assert_eq!(default_calendar("future"), ("America/Chicago", "17:00", "16:00"));
        assert_eq!(default_calendar("us_equity"), ("America/New_York", "09:30", "16:00"));
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(100), "100");
    }

    fn tick(symbol: &str, price: f64) -> TickRow {
        TickRow {
            time: DateTime::UNIX_EPOCH,
            symbol: symbol.into(),
            price,
            size: 1.0,
            side: b'N',
            side_source: "none",
            trade_id: String::new(),
            exchange: None,
            conditions: None,
        }
    }

    #[test]
    fn rows_wait_for_their_symbols_tick_size() {
        let mut a = args("f").unwrap();
        a.batch = 3;
        let mut stage = Stage {
            args: a,
            format: Format::Tardis,
            released: HashSet::new(),
            pending: HashMap::new(),
            pending_rows: 0,
            ticks: Vec::new(),
            quotes: Vec::new(),
            specs: Vec::new(),
        };
        for p in [100.5, 101.0, 100.0] {
            stage.add(Some(tick("BTC", p)), None, Some("BTCUSDT"));
        }
        assert!(stage.ticks.is_empty() && stage.specs.is_empty(), "held until the sample is complete");
        stage.release_all();
        assert_eq!(stage.ticks.len(), 3);
        let spec = &stage.specs[0];
        assert_eq!(
            (spec.tick_size, spec.asset_class.as_str(), spec.timezone.as_str()),
            (0.5, "crypto", "UTC")
        );
        assert_eq!(spec.provider_ref, "tardis:BTCUSDT");
        // Once created, a symbol's rows go straight to the batch.
        stage.add(Some(tick("BTC", 99.0)), None, None);
        assert_eq!(stage.ticks.len(), 4);
        assert!(stage.full());
    }
}
