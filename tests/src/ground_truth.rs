//! Real trades whose aggressor side the venue published, for measuring the classification
//! rules in [`tapeflow_analytics::classify`], and the scoring used by the benchmark and its tests.
//!
//! The files live in the team's shared data directory (see [`data_dir`]); their origin and
//! columns are described in that directory's README.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use tapeflow_analytics::candle::Micros;
use tapeflow_analytics::classify::{bvc_series, classify_series, ClassifyInput, Quote, Rule};
use tapeflow_analytics::side::Side;

/// Environment variable that overrides the shared data directory.
pub const DATA_DIR_ENV: &str = "TAPEFLOW_SHARED_DATA";

/// Microseconds between the Unix epoch and the PostgreSQL epoch (2000-01-01 UTC), from which
/// [`Micros`] are counted.
const UNIX_TO_PG_EPOCH_US: i64 = 946_684_800 * 1_000_000;

/// The shared data directory: `$TAPEFLOW_SHARED_DATA` if set, else `shared/data` beside the
/// repository root.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(DATA_DIR_ENV) {
        return PathBuf::from(dir);
    }
    // This crate sits one level below the repository root.
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo_root = crate_dir.parent().unwrap_or(crate_dir);
    repo_root.join("..").join("shared").join("data")
}

/// One trade with its true aggressor side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroundTruthTrade {
    pub time: Micros,
    pub price: f64,
    pub size: f64,
    /// The side the venue published; `Unknown` where it published none.
    pub side: Side,
    /// The best bid and ask just before the trade, where the data set has them.
    pub quote: Option<Quote>,
}

/// The ground-truth data sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroundTruthSet {
    /// Binance USDT-M futures BTCUSDT, 2020-02-22, via Tardis.dev: taker side, no quotes.
    TardisBinanceFutures,
    /// Binance spot BTCUSDT, 2021-01-08: side from the buyer-is-maker flag, no quotes.
    BinanceSpot,
    /// CME E-mini S&P Mar-24, 2023-12-25: aggressor side and the BBO rebuilt from MBO.
    CmeEs,
}

impl GroundTruthSet {
    pub const ALL: [GroundTruthSet; 3] =
        [GroundTruthSet::TardisBinanceFutures, GroundTruthSet::BinanceSpot, GroundTruthSet::CmeEs];

    /// A short label for tables.
    pub fn name(self) -> &'static str {
        match self {
            GroundTruthSet::TardisBinanceFutures => "binance-futures BTCUSDT",
            GroundTruthSet::BinanceSpot => "binance-spot BTCUSDT",
            GroundTruthSet::CmeEs => "CME ESH4",
        }
    }

    /// The file, relative to the data directory.
    pub fn relative_path(self) -> &'static str {
        match self {
            GroundTruthSet::TardisBinanceFutures => {
                "a_trades_ground_truth/tardis_binance-futures_BTCUSDT_trades_2020-02-22.csv"
            }
            GroundTruthSet::BinanceSpot => "a_trades_ground_truth/binance_spot_BTCUSDT_trades_2021-01-08.csv",
            GroundTruthSet::CmeEs => {
                "a_trades_ground_truth/derived_esh4_2023-12-25_trades_with_bbo_from_mbo.csv"
            }
        }
    }

    pub fn has_quotes(self) -> bool {
        self == GroundTruthSet::CmeEs
    }

    /// The rules worth measuring: quote-based ones only where the set has quotes, since
    /// without them they reduce to the tick rule.
    pub fn rules(self) -> Vec<Rule> {
        Rule::ALL.into_iter().filter(|r| self.has_quotes() || !r.uses_quotes()).collect()
    }

    /// Loads the set from `dir` (normally [`data_dir`]).
    pub fn load(self, dir: &Path) -> Result<Vec<GroundTruthTrade>, LoadError> {
        let path = dir.join(self.relative_path());
        match self {
            GroundTruthSet::TardisBinanceFutures => load_tardis_trades(&path),
            GroundTruthSet::BinanceSpot => load_binance_spot_trades(&path),
            GroundTruthSet::CmeEs => load_es_trades_with_bbo(&path),
        }
    }
}

/// Why a file could not be loaded; names the file and, for bad rows, the 1-based line.
#[derive(Debug)]
pub struct LoadError {
    pub file: PathBuf,
    /// 0 when the error is not about one line (the file could not be read).
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

impl std::error::Error for LoadError {}

/// A comma-separated file without quoting (none of the ground-truth files quote), with
/// columns looked up by header name so column order does not matter.
struct Csv {
    path: PathBuf,
    text: String,
}

struct Row<'a> {
    path: &'a Path,
    line: usize,
    fields: Vec<&'a str>,
}

impl Csv {
    fn read(path: &Path) -> Result<Csv, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError {
            file: path.to_path_buf(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        Ok(Csv { path: path.to_path_buf(), text })
    }

    fn error(&self, line: usize, message: String) -> LoadError {
        LoadError { file: self.path.clone(), line, message }
    }

    /// The header's index of each of `names`, and the data rows.
    fn rows<const N: usize>(&self, names: [&str; N]) -> Result<([usize; N], Vec<Row<'_>>), LoadError> {
        let mut lines = self.text.lines();
        let header: Vec<&str> = lines
            .next()
            .ok_or_else(|| self.error(1, "empty file".into()))?
            .split(',')
            .map(str::trim)
            .collect();
        let mut idx = [0; N];
        for (slot, name) in idx.iter_mut().zip(names) {
            *slot = header
                .iter()
                .position(|h| *h == name)
                .ok_or_else(|| self.error(1, format!("missing column '{name}' in header")))?;
        }
        let rows = lines
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| Row {
                path: &self.path,
                line: i + 2,
                fields: l.split(',').map(str::trim).collect(),
            })
            .collect();
        Ok((idx, rows))
    }
}

impl Row<'_> {
    fn error(&self, message: String) -> LoadError {
        LoadError { file: self.path.to_path_buf(), line: self.line, message }
    }

    fn get(&self, col: usize) -> Result<&str, LoadError> {
        self.fields.get(col).copied().ok_or_else(|| {
            self.error(format!("expected at least {} fields, found {}", col + 1, self.fields.len()))
        })
    }

    fn f64(&self, col: usize, what: &str) -> Result<f64, LoadError> {
        let s = self.get(col)?;
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(self.error(format!("bad {what} '{s}'"))),
        }
    }

    fn positive(&self, col: usize, what: &str) -> Result<f64, LoadError> {
        let v = self.f64(col, what)?;
        if v > 0.0 {
            Ok(v)
        } else {
            Err(self.error(format!("{what} must be positive, got {v}")))
        }
    }
}

/// Tardis trades CSV: `timestamp` (µs since the Unix epoch), `side` (taker: buy/sell/unknown),
/// `price`, `amount`.
pub fn load_tardis_trades(path: &Path) -> Result<Vec<GroundTruthTrade>, LoadError> {
    let csv = Csv::read(path)?;
    let ([ts, side, price, amount], rows) = csv.rows(["timestamp", "side", "price", "amount"])?;
    rows.iter()
        .map(|r| {
            let t = r.get(ts)?;
            let unix_us: i64 = t.parse().map_err(|_| r.error(format!("bad timestamp '{t}'")))?;
            let side = match r.get(side)? {
                "buy" => Side::Buy,
                "sell" => Side::Sell,
                "unknown" | "" => Side::Unknown,
                s => return Err(r.error(format!("bad side '{s}' (expected buy, sell or unknown)"))),
            };
            Ok(GroundTruthTrade {
                time: unix_us - UNIX_TO_PG_EPOCH_US,
                price: r.positive(price, "price")?,
                size: r.positive(amount, "amount")?,
                side,
                quote: None,
            })
        })
        .collect()
}

/// Binance spot trades CSV: `timestamp` (ISO 8601), `price`, `quantity`, `buyer_maker`,
/// `aggressor_side`. The two side columns must agree: a maker buyer means a selling taker.
pub fn load_binance_spot_trades(path: &Path) -> Result<Vec<GroundTruthTrade>, LoadError> {
    let csv = Csv::read(path)?;
    let ([ts, price, qty, maker, aggressor], rows) =
        csv.rows(["timestamp", "price", "quantity", "buyer_maker", "aggressor_side"])?;
    rows.iter()
        .map(|r| {
            let t = r.get(ts)?;
            let time = parse_utc_micros(t).map_err(|e| r.error(format!("bad timestamp '{t}': {e}")))?;
            let side = match r.get(aggressor)? {
                "buy" => Side::Buy,
                "sell" => Side::Sell,
                s => return Err(r.error(format!("bad aggressor_side '{s}' (expected buy or sell)"))),
            };
            let buyer_maker = match r.get(maker)? {
                "True" | "true" => true,
                "False" | "false" => false,
                s => return Err(r.error(format!("bad buyer_maker '{s}'"))),
            };
            if buyer_maker != (side == Side::Sell) {
                return Err(r.error(format!("aggressor_side {side:?} contradicts buyer_maker {buyer_maker}")));
            }
            Ok(GroundTruthTrade {
                time,
                price: r.positive(price, "price")?,
                size: r.positive(qty, "quantity")?,
                side,
                quote: None,
            })
        })
        .collect()
}

/// CME trades with the BBO before each trade: `ts_event` (ISO 8601, ns, truncated to µs),
/// `price`, `size`, `aggressor_side` (B buy, A ask side = sell, N none), `bid_px`, `ask_px`.
/// The quote is kept even when crossed, so the rules' own fallback is what gets measured.
pub fn load_es_trades_with_bbo(path: &Path) -> Result<Vec<GroundTruthTrade>, LoadError> {
    let csv = Csv::read(path)?;
    let ([ts, price, size, aggressor, bid, ask], rows) =
        csv.rows(["ts_event", "price", "size", "aggressor_side", "bid_px", "ask_px"])?;
    rows.iter()
        .map(|r| {
            let t = r.get(ts)?;
            let time = parse_utc_micros(t).map_err(|e| r.error(format!("bad ts_event '{t}': {e}")))?;
            let side = match r.get(aggressor)? {
                "B" => Side::Buy,
                "A" => Side::Sell,
                "N" => Side::Unknown,
                s => return Err(r.error(format!("bad aggressor_side '{s}' (expected B, A or N)"))),
            };
            // An empty side of the book means no quote.
            let quote = match (r.get(bid)?, r.get(ask)?) {
                ("", _) | (_, "") => None,
                _ => Some(Quote::new(r.f64(bid, "bid_px")?, r.f64(ask, "ask_px")?)),
            };
            Ok(GroundTruthTrade {
                time,
                price: r.positive(price, "price")?,
                size: r.positive(size, "size")?,
                side,
                quote,
            })
        })
        .collect()
}

/// Parses `YYYY-MM-DD[T ]HH:MM:SS[.fraction](Z|±HH:MM)` into µs since 2000-01-01 UTC.
/// Digits beyond microseconds are truncated, as PostgreSQL's timestamptz does not keep them.
fn parse_utc_micros(s: &str) -> Result<Micros, String> {
    let num = |part: &str, what: &str| -> Result<i64, String> {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("bad {what}"));
        }
        part.parse::<i64>().map_err(|_| format!("bad {what}"))
    };
    if s.len() < 19 || !s.is_char_boundary(10) || !s.is_char_boundary(19) {
        return Err("too short".into());
    }
    let (date, rest) = s.split_at(10);
    let sep = rest.as_bytes()[0];
    if sep != b'T' && sep != b' ' {
        return Err("expected 'T' or ' ' between date and time".into());
    }
    let (clock, mut rest) = rest[1..].split_at(8);
    let d: Vec<&str> = date.split('-').collect();
    let c: Vec<&str> = clock.split(':').collect();
    if d.len() != 3 || c.len() != 3 {
        return Err("expected YYYY-MM-DD HH:MM:SS".into());
    }
    let (year, month, day) = (num(d[0], "year")?, num(d[1], "month")?, num(d[2], "day")?);
    let (hour, minute, second) = (num(c[0], "hour")?, num(c[1], "minute")?, num(c[2], "second")?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return Err("field out of range".into());
    }
    let mut micros = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err("empty fraction".into());
        }
        let kept = &frac[..digits.min(6)];
        micros = num(kept, "fraction")? * 10_i64.pow(6 - kept.len() as u32);
        rest = &frac[digits..];
    }
    let offset_s = match rest {
        "Z" => 0,
        _ if rest.len() == 6
            && rest.is_ascii()
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':' =>
        {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (num(&rest[1..3], "offset")? * 3600 + num(&rest[4..6], "offset")? * 60)
        }
        _ => return Err("expected 'Z' or a ±HH:MM offset".into()),
    };
    let days = days_from_civil(year, month, day) - days_from_civil(2000, 1, 1);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    Ok(seconds * 1_000_000 + micros)
}

/// Days since 1970-01-01 of a proleptic Gregorian date, counting in 400-year eras that start
/// on 1 March so the leap day falls at the end of each year.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// How well predicted sides match the truth.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Accuracy {
    pub trades: usize,
    /// Trades the rule gave a side (not `Unknown`).
    pub classified: usize,
    /// Trades with a known true side.
    pub known: usize,
    /// Trades with a known true side that the rule classified.
    pub known_classified: usize,
    /// Trades whose predicted side equals the known true side.
    pub correct: usize,
    pub known_volume: f64,
    pub correct_volume: f64,
}

impl Accuracy {
    pub fn classified_pct(&self) -> f64 {
        pct(self.classified as f64, self.trades as f64)
    }

    /// Over trades with a known true side; an `Unknown` prediction counts as wrong.
    pub fn accuracy_pct(&self) -> f64 {
        pct(self.correct as f64, self.known as f64)
    }

    /// Over trades with a known true side that the rule classified.
    pub fn accuracy_classified_pct(&self) -> f64 {
        pct(self.correct as f64, self.known_classified as f64)
    }

    /// Share of the known-side volume classified correctly; `Unknown` counts as wrong.
    pub fn volume_accuracy_pct(&self) -> f64 {
        pct(self.correct_volume, self.known_volume)
    }
}

fn pct(num: f64, den: f64) -> f64 {
    if den > 0.0 {
        100.0 * num / den
    } else {
        f64::NAN
    }
}

/// Runs `rule` over the trades in file order and scores it.
pub fn evaluate(trades: &[GroundTruthTrade], rule: Rule) -> (Vec<Side>, Accuracy) {
    let inputs: Vec<ClassifyInput> = trades.iter().map(|t| ClassifyInput::new(t.price, t.quote)).collect();
    let predicted = classify_series(rule, &inputs);
    let accuracy = score(trades, &predicted);
    (predicted, accuracy)
}

/// Scores `predicted` (one side per trade, in order) against the trades' true sides.
pub fn score(trades: &[GroundTruthTrade], predicted: &[Side]) -> Accuracy {
    assert_eq!(trades.len(), predicted.len(), "one prediction per trade");
    let mut acc = Accuracy { trades: trades.len(), ..Accuracy::default() };
    for (t, &p) in trades.iter().zip(predicted) {
        let classified = p != Side::Unknown;
        acc.classified += classified as usize;
        if t.side == Side::Unknown {
            continue;
        }
        acc.known += 1;
        acc.known_volume += t.size;
        acc.known_classified += classified as usize;
        if p == t.side {
            acc.correct += 1;
            acc.correct_volume += t.size;
        }
    }
    acc
}

/// One time bar of trades, with the true buy volume and a rule's estimate of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VolumeBar {
    pub start: Micros,
    pub open: f64,
    pub close: f64,
    pub volume: f64,
    /// Volume of trades whose true side is buy.
    pub true_buy: f64,
    /// Volume of trades predicted buy, plus half of those predicted `Unknown`.
    pub predicted_buy: f64,
}

/// Groups trades into bars of `bar_us` microseconds aligned to the epoch; open and close are
/// the first and last trade of the bar in input order. Bars without trades are left out.
pub fn volume_bars(trades: &[GroundTruthTrade], predicted: &[Side], bar_us: Micros) -> Vec<VolumeBar> {
    assert!(bar_us > 0, "bar length must be positive");
    assert_eq!(trades.len(), predicted.len(), "one prediction per trade");
    let mut bars: BTreeMap<Micros, VolumeBar> = BTreeMap::new();
    for (t, &p) in trades.iter().zip(predicted) {
        let start = t.time.div_euclid(bar_us) * bar_us;
        let bar = bars.entry(start).or_insert(VolumeBar {
            start,
            open: t.price,
            close: t.price,
            volume: 0.0,
            true_buy: 0.0,
            predicted_buy: 0.0,
        });
        bar.close = t.price;
        bar.volume += t.size;
        if t.side == Side::Buy {
            bar.true_buy += t.size;
        }
        bar.predicted_buy += match p {
            Side::Buy => t.size,
            Side::Sell => 0.0,
            Side::Unknown => 0.5 * t.size,
        };
    }
    bars.into_values().collect()
}

/// 1 - sum |estimated buy - true buy| / total volume: the share of volume put on the right side.
pub fn buy_volume_recovered(bars: &[VolumeBar], estimated_buy: &[f64]) -> f64 {
    assert_eq!(bars.len(), estimated_buy.len(), "one estimate per bar");
    let total: f64 = bars.iter().map(|b| b.volume).sum();
    let error: f64 = bars.iter().zip(estimated_buy).map(|(b, e)| (e - b.true_buy).abs()).sum();
    if total > 0.0 {
        1.0 - error / total
    } else {
        f64::NAN
    }
}

/// BVC's buy-volume estimate per bar: close-to-close price changes (the first bar uses its own
/// open), sigma estimated over all bars.
pub fn bvc_buy_estimates(bars: &[VolumeBar]) -> Vec<f64> {
    let inputs: Vec<(f64, f64)> = bars
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let prev = if i == 0 { b.open } else { bars[i - 1].close };
            (b.volume, b.close - prev)
        })
        .collect();
    bvc_series(&inputs).into_iter().map(|(buy, _)| buy).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iso_timestamps_to_pg_epoch() {
        assert_eq!(parse_utc_micros("2000-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_utc_micros("2000-01-01 00:00:01.5+00:00"), Ok(1_500_000));
        // Nanoseconds are truncated; offsets are subtracted.
        assert_eq!(parse_utc_micros("2000-01-01 00:00:00.000001999+00:00"), Ok(1));
        assert_eq!(parse_utc_micros("2000-01-01T01:00:00+01:00"), Ok(0));
        assert_eq!(parse_utc_micros("1999-12-31T23:00:00-01:00"), Ok(0));
        // 2021-01-08 is 7678 days after 2000-01-01 (Unix 1610064000).
        assert_eq!(
            parse_utc_micros("2021-01-08T00:00:00.278Z"),
            Ok((1_610_064_000 * 1_000_000 + 278_000) - UNIX_TO_PG_EPOCH_US)
        );
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2024, 3, 1) - days_from_civil(2024, 2, 28), 2);
        for bad in ["2021-01-08", "2021-01-08T00:00:00", "2021-13-08T00:00:00Z", "2021-01-08X00:00:00Z", "x"]
        {
            assert!(parse_utc_micros(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scoring_counts_unknown_as_wrong() {
        let t = |side, size| GroundTruthTrade { time: 0, price: 1.0, size, side, quote: None };
        let trades = [t(Side::Buy, 1.0), t(Side::Sell, 3.0), t(Side::Buy, 2.0), t(Side::Unknown, 9.0)];
        let acc = score(&trades, &[Side::Buy, Side::Unknown, Side::Sell, Side::Buy]);
        assert_eq!(
            (acc.trades, acc.classified, acc.known, acc.known_classified, acc.correct),
            (4, 3, 3, 2, 1)
        );
        assert!((acc.accuracy_pct() - 100.0 / 3.0).abs() < 1e-12);
        assert_eq!(acc.accuracy_classified_pct(), 50.0);
        assert!((acc.volume_accuracy_pct() - 100.0 / 6.0).abs() < 1e-12);
        assert_eq!(acc.classified_pct(), 75.0);
    }

    #[test]
    fn bars_and_recovery() {
        let t = |time, price, size, side| GroundTruthTrade { time, price, size, side, quote: None };
        let trades = [t(0, 10.0, 1.0, Side::Buy), t(5, 11.0, 3.0, Side::Sell), t(12, 9.0, 2.0, Side::Buy)];
        let bars = volume_bars(&trades, &[Side::Buy, Side::Buy, Side::Unknown], 10);
        assert_eq!(bars.len(), 2);
        assert_eq!((bars[0].open, bars[0].close, bars[0].volume, bars[0].true_buy), (10.0, 11.0, 4.0, 1.0));
        assert_eq!((bars[0].predicted_buy, bars[1].predicted_buy), (4.0, 1.0));
        let predicted: Vec<f64> = bars.iter().map(|b| b.predicted_buy).collect();
        // Errors 3 and 1 over 6 units of volume.
        assert!((buy_volume_recovered(&bars, &predicted) - (1.0 - 4.0 / 6.0)).abs() < 1e-12);
        assert_eq!(bvc_buy_estimates(&bars).len(), 2);
    }

    #[test]
    fn load_errors_name_file_and_line() {
        let dir = std::env::temp_dir().join(format!("tapeflow-gt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.csv");
        std::fs::write(&path, "timestamp,side,price,amount\n1,buy,10,1\n2,hold,10,1\n").unwrap();
        let err = load_tardis_trades(&path).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.to_string().contains("bad.csv:3: bad side 'hold'"), "{err}");
        std::fs::write(&path, "timestamp,price\n").unwrap();
        let err = load_tardis_trades(&path).unwrap_err().to_string();
        assert!(err.contains("bad.csv:1: missing column 'side'"), "{err}");
        let err = load_tardis_trades(&dir.join("absent.csv")).unwrap_err().to_string();
        assert!(err.contains("absent.csv: cannot read"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
