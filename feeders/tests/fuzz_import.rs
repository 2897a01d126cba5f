//! Fuzz targets of `tapeflow-feed import`'s parsers (`feeders/src/import/formats`, built here
//! as they are): whole files of every format, valid and mutated, timestamps, tick-size
//! inference and the column map. A file must never panic the reader; every row is parsed or
//! reported bad with its line, a bad line costs nothing but itself, what is accepted is
//! storable (prices positive and finite, sizes finite and not negative, times in range, ids
//! unique), and re-reading gives the same ids. The harness is the analytics crate's
//! (`analytics/tests/fuzz_common`); `make fuzz` runs it long.

#[allow(dead_code, unused_imports)]
#[path = "../src/import/formats/mod.rs"]
mod formats;
#[path = "../../analytics/tests/fuzz_common/mod.rs"]
mod fuzz_common;

use formats::reader::{CsvRows, Row};
use formats::time::{parse_time, MAX_US, MIN_US};
use formats::{generic::ColumnMap, tick_size, Format, Options, Parsed, TimeOptions};
use fuzz_common::{fuzz, mutated_bytes};
use proptest::prelude::*;
use std::collections::HashSet;
use tapeflow_analytics::Side;

/// A trade or quote to write in some format.
#[derive(Debug, Clone)]
struct Event {
    time_ns: i64,
    /// Price in ticks.
    ticks: u32,
    size: u32,
    side: Side,
    /// Bid and ask in ticks below and above the price, for quote rows.
    spread: (u32, u32),
}

#[derive(Debug, Clone, Copy)]
enum Layout {
    Tardis,
    DatabentoTrades,
    DatabentoMbp1,
    Binance,
    BinanceDump,
    TaqTrades,
    TaqQuotes,
    Generic,
}

const LAYOUTS: [Layout; 8] = [
    Layout::Tardis,
    Layout::DatabentoTrades,
    Layout::DatabentoMbp1,
    Layout::Binance,
    Layout::BinanceDump,
    Layout::TaqTrades,
    Layout::TaqQuotes,
    Layout::Generic,
];

const TICK: f64 = 0.25;
/// 2020-02-22T00:00:00Z in ns.
const BASE_NS: i64 = 1_582_329_600_000_000_000;

fn events() -> impl Strategy<Value = Vec<Event>> + Clone {
    let side = prop::sample::select(vec![Side::Buy, Side::Sell, Side::Unknown]);
    // Few distinct times and prices, so repeats (same time, same trade) are common.
    let event = (0i64..40, 1u32..40_000, 0u32..5_000, side, (1u32..4, 1u32..4)).prop_map(
        |(t, ticks, size, side, spread)| Event {
            time_ns: BASE_NS + t * 1_000_123,
            ticks,
            size,
            side,
            spread,
        },
    );
    prop::collection::vec(event, 1..30).prop_map(|mut v| {
        v.sort_by_key(|e| e.time_ns);
        v
    })
}

fn price(e: &Event) -> f64 {
    f64::from(e.ticks) * TICK
}

fn iso_ns(ns: i64) -> String {
    let t = chrono::DateTime::from_timestamp_nanos(ns);
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

fn iso_us(ns: i64) -> String {
    let t = chrono::DateTime::from_timestamp_nanos(ns);
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The file and the options it is read with.
fn render(layout: Layout, events: &[Event]) -> (String, Option<Format>, Options) {
    let mut opts = Options::default();
    let mut out = String::new();
    let side_word = |s: Side| match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
        Side::Unknown => "unknown",
    };
    let format = match layout {
        Layout::Tardis => {
            out.push_str("exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n");
            for (i, e) in events.iter().enumerate() {
                let us = e.time_ns / 1000;
                out.push_str(&format!(
                    "bitmex,XBTUSD,{us},{},t{i},{},{},{}\n",
                    us + 5,
                    side_word(e.side),
                    price(e),
                    e.size
                ));
            }
            None
        }
        Layout::DatabentoTrades | Layout::DatabentoMbp1 => {
            let mbp = matches!(layout, Layout::DatabentoMbp1);
            out.push_str("ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,depth,price,size,flags,ts_in_delta,sequence");
            out.push_str(if mbp {
                ",bid_px_00,ask_px_00,bid_sz_00,ask_sz_00,bid_ct_00,ask_ct_00,symbol\n"
            } else {
                ",symbol\n"
            });
            for (i, e) in events.iter().enumerate() {
                let side = match e.side {
                    Side::Buy => "B",
                    Side::Sell => "A",
                    Side::Unknown => "N",
                };
                // Every third row a book event (MBP-1 only), the rest trades; sequences repeat.
                let (action, flags) = if mbp && i % 3 == 2 { ("A", 130) } else { ("T", 0) };
                out.push_str(&format!(
                    "{},{},1,1,118,{action},{side},0,{:.9},{},{flags},100,{}",
                    iso_ns(e.time_ns + 500),
                    iso_ns(e.time_ns),
                    price(e),
                    e.size,
                    9_000 + i / 2
                ));
                if mbp {
                    let bid = f64::from(e.ticks.saturating_sub(e.spread.0).max(1)) * TICK;
                    let ask = f64::from(e.ticks + e.spread.1) * TICK;
                    out.push_str(&format!(",{bid:.9},{ask:.9},{},{},1,1", e.size + 1, e.size + 2));
                }
                out.push_str(",ESU4\n");
            }
            None
        }
        Layout::Binance | Layout::BinanceDump => {
            let dump = matches!(layout, Layout::BinanceDump);
            if !dump {
                out.push_str("timestamp,trade_id,price,quantity,buyer_maker,aggressor_side\n");
            }
            for (i, e) in events.iter().enumerate() {
                // Binance trades always have a side.
                let maker = e.side == Side::Sell;
                let p = price(e);
                if dump {
                    out.push_str(&format!(
                        "{},{p},{},{},{},{},True\n",
                        553_287_559 + i,
                        e.size,
                        p * f64::from(e.size),
                        e.time_ns / 1_000_000,
                        if maker { "True" } else { "False" }
                    ));
                } else {
                    let t =
                        chrono::DateTime::from_timestamp_nanos(e.time_ns).format("%Y-%m-%dT%H:%M:%S%.3fZ");
                    out.push_str(&format!(
                        "{t},{},{p},{},{},{}\n",
                        553_287_559 + i,
                        e.size,
                        if maker { "True" } else { "False" },
                        if maker { "sell" } else { "buy" }
                    ));
                }
            }
            opts.symbol = Some("BTCUSDT".into());
            None
        }
        Layout::TaqTrades => {
            out.push_str("DT,EX,SYMBOL,COND,SIZE,PRICE,CORR\n");
            for e in events {
                out.push_str(&format!("{},N,XXX,F I,{},{},0\n", iso_us(e.time_ns), e.size, price(e)));
            }
            None
        }
        Layout::TaqQuotes => {
            out.push_str("DT,EX,BID,BIDSIZ,OFR,OFRSIZ,SYMBOL\n");
            for e in events {
                let bid = f64::from(e.ticks.saturating_sub(e.spread.0)) * TICK;
                out.push_str(&format!(
                    "{},P,{bid},{},{},{},XXX\n",
                    iso_us(e.time_ns),
                    e.size,
                    f64::from(e.ticks + e.spread.1) * TICK,
                    e.size + 1
                ));
            }
            None
        }
        Layout::Generic => {
            out.push_str("when;px;qty;who\n");
            for e in events {
                let who = match e.side {
                    Side::Buy => "b",
                    Side::Sell => "S",
                    Side::Unknown => "",
                };
                out.push_str(&format!("{};{};{};{who}\n", e.time_ns / 1000, price(e), e.size));
            }
            opts.symbol = Some("GEN".into());
            opts.columns = Some(ColumnMap::parse("time=when,price=px,size=qty,side=who").unwrap());
            Some(Format::Csv)
        }
    };
    (out, format, opts)
}

fn delimiter(layout: Layout) -> u8 {
    if matches!(layout, Layout::Generic) {
        b';'
    } else {
        b','
    }
}

/// Every row of `bytes`, or the error that stopped the file.
fn read_all(bytes: &[u8], format: Option<Format>, opts: &Options, delim: u8) -> Result<Vec<Row>, String> {
    let mut rows = CsvRows::open(bytes, format, opts, delim)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next_row()? {
        out.push(row);
    }
    Ok(out)
}

/// What the database requires of a stored trade or quote.
fn assert_storable(p: &Parsed) {
    if let Some(t) = &p.trade {
        assert!(t.price.is_finite() && t.price > 0.0, "{t:?}");
        assert!(t.size.is_finite() && t.size >= 0.0, "{t:?}");
        assert!((MIN_US..MAX_US).contains(&t.time_us), "{t:?}");
        assert!(!t.symbol.is_empty() && !t.trade_id.is_empty(), "{t:?}");
    }
    if let Some(q) = &p.quote {
        for v in [q.bid, q.ask, q.bid_size, q.ask_size] {
            assert!(v.is_finite() && v >= 0.0, "{q:?}");
        }
        assert!((MIN_US..MAX_US).contains(&q.time_us), "{q:?}");
        assert!(!q.symbol.is_empty(), "{q:?}");
    }
}

/// The stored key of every accepted trade: never two alike unless the venue's id repeats.
fn keys(rows: &[Row]) -> Vec<(String, String, i64)> {
    rows.iter()
        .filter_map(|r| match r {
            Row::Parsed(Parsed { trade: Some(t), .. }) => {
                Some((t.symbol.clone(), t.trade_id.clone(), t.time_us))
            }
            _ => None,
        })
        .collect()
}

fn layout_and_events() -> impl Strategy<Value = (Layout, Vec<Event>)> + Clone {
    (prop::sample::select(LAYOUTS.to_vec()), events())
}

#[test]
fn fuzz_import_files() {
    // Valid files of every layout, mutated; read with the layout's own options.
    let seeds = layout_and_events().prop_map(|(layout, ev)| {
        let (text, _, _) = render(layout, &ev);
        let mut b = vec![layout as u8];
        b.extend_from_slice(text.as_bytes());
        b
    });
    fuzz("import_files", mutated_bytes(seeds), |bytes| {
        let Some((&tag, body)) = bytes.split_first() else { return false };
        let layout = LAYOUTS[usize::from(tag) % LAYOUTS.len()];
        let (_, format, opts) = render(layout, &[]);
        let Ok(rows) = read_all(body, format, &opts, delimiter(layout)) else { return false };
        let lines = body.iter().filter(|b| matches!(**b, b'\n' | b'\r')).count() as u64 + 1;
        let mut accepted = false;
        for r in &rows {
            match r {
                Row::Parsed(parsed) => {
                    assert_storable(parsed);
                    accepted = true;
                }
                Row::Bad { line, error } => {
                    assert!(*line >= 1 && *line <= lines, "line {line} of {lines}");
                    assert!(!error.is_empty());
                }
            }
        }
        let k = keys(&rows);
        if !matches!(layout, Layout::Tardis | Layout::Binance | Layout::BinanceDump) {
            // Ids the importer derives never collide.
            assert_eq!(k.iter().collect::<HashSet<_>>().len(), k.len(), "{k:?}");
        }
        // Reading again gives the same ids.
        let again = read_all(body, format, &opts, delimiter(layout)).expect("read twice");
        assert_eq!(keys(&again), k);
        accepted
    });
}

#[test]
fn fuzz_import_round_trip() {
    // Valid files read back to what was written; a garbage line inserted anywhere is the one
    // bad row, with its line number, and every other row still arrives.
    let input = (layout_and_events(), any::<prop::sample::Index>(), "[^\n\r\"]{0,40}");
    fuzz("import_round_trip", input, |((layout, ev), at, garbage)| {
        let layout = *layout;
        let (text, format, opts) = render(layout, ev);
        let rows = read_all(text.as_bytes(), format, &opts, delimiter(layout)).expect("a valid file reads");
        let parsed: Vec<&Parsed> = rows
            .iter()
            .map(|r| match r {
                Row::Parsed(parsed) => parsed,
                Row::Bad { line, error } => panic!("{layout:?} line {line}: {error}\n{text}"),
            })
            .collect();
        assert_eq!(parsed.len(), ev.len());
        for (p, e) in parsed.iter().zip(ev) {
            assert_storable(p);
            let quote_row = matches!(layout, Layout::TaqQuotes);
            let book_row = matches!(layout, Layout::DatabentoMbp1) && p.trade.is_none();
            if quote_row || book_row {
                // An MBP-1 book row that leaves the book as it was gives no quote.
                if let Some(q) = &p.quote {
                    assert_eq!(q.ask, f64::from(e.ticks + e.spread.1) * TICK);
                } else {
                    assert!(book_row, "{layout:?}: no quote in {p:?}");
                }
                continue;
            }
            let t = p.trade.as_ref().unwrap_or_else(|| panic!("{layout:?}: no trade in {p:?}"));
            assert_eq!(t.price, price(e), "{layout:?}");
            assert_eq!(t.size, f64::from(e.size), "{layout:?}");
            let expected_us = match layout {
                Layout::Binance | Layout::BinanceDump => e.time_ns / 1_000_000 * 1000,
                _ => e.time_ns / 1000,
            };
            assert_eq!(t.time_us, expected_us, "{layout:?}");
            let expected_side = match layout {
                Layout::Binance | Layout::BinanceDump if e.side != Side::Sell => Side::Buy,
                Layout::TaqTrades => Side::Unknown,
                _ => e.side,
            };
            assert_eq!(t.side, expected_side, "{layout:?}");
        }
        // One garbage line: exactly one bad row, at that line; the others unchanged. (A
        // garbage line may happen to parse, or be blank; then it is not a bad row.)
        let mut lines: Vec<&str> = text.lines().collect();
        let pos = 1 + at.index(lines.len());
        let garbage = format!("{garbage},~");
        lines.insert(pos, &garbage);
        let damaged = lines.join("\n");
        let rows2 = read_all(damaged.as_bytes(), format, &opts, delimiter(layout)).expect("reads");
        let bad: Vec<u64> = rows2
            .iter()
            .filter_map(|r| if let Row::Bad { line, .. } = r { Some(*line) } else { None })
            .collect();
        assert!(bad.len() <= 1, "{bad:?}");
        if let [line] = bad[..] {
            assert_eq!(line, pos as u64 + 1);
            let good: Vec<&Parsed> = rows2
                .iter()
                .filter_map(|r| if let Row::Parsed(parsed) = r { Some(parsed) } else { None })
                .collect();
            assert_eq!(good.len(), parsed.len());
            // MBP-1 quotes depend on the book before them, which a bad line does not change.
            assert_eq!(good, parsed);
        }
        true
    });
}

#[test]
fn fuzz_import_times() {
    let iso = (0i64..7_000_000_000_000_000, 0usize..4).prop_map(|(us, style)| {
        let t = chrono::DateTime::from_timestamp_micros(us).unwrap();
        match style {
            0 => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            1 => t.format("%Y-%m-%d %H:%M:%S%.9f+00:00").to_string(),
            2 => us.to_string(),
            _ => (us * 1000).to_string(),
        }
        .into_bytes()
    });
    fuzz("import_times", mutated_bytes(iso), |bytes| {
        let Ok(s) = std::str::from_utf8(bytes) else { return false };
        match parse_time(s, TimeOptions::default()) {
            Ok(us) => {
                assert!((MIN_US..MAX_US).contains(&us), "{s} -> {us}");
                true
            }
            Err(e) => {
                assert!(!e.is_empty());
                false
            }
        }
    });
    // Unmutated, every form reads back to its µs.
    // Unmutated, every form reads back to its µs (2001–2191, where the sizes of µs and ns
    // counts tell their units apart).
    fuzz("import_times_exact", 1_000_000_000_000_000i64..7_000_000_000_000_000, |us| {
        let t = chrono::DateTime::from_timestamp_micros(*us).unwrap();
        let forms = [
            t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            t.format("%Y-%m-%d %H:%M:%S%.9f+00:00").to_string(),
            us.to_string(),
            (us * 1000 + 999).to_string(),
        ];
        for s in forms {
            assert_eq!(parse_time(&s, TimeOptions::default()), Ok(*us), "{s}");
        }
        true
    });
}

#[test]
fn fuzz_import_tick_size() {
    let ticks =
        prop::sample::select(vec![0.25, 0.5, 0.01, 0.005, 0.0001, 0.00005, 1.0, 10.0, 0.1, 2.5, 1e-9]);
    let input = (ticks, prop::collection::vec(1u64..2_000_000, 1..200));
    fuzz("import_tick_size", input, |(tick, multiples)| {
        let prices: Vec<f64> =
            multiples.iter().map(|k| format!("{:.9}", *k as f64 * tick).parse().unwrap()).collect();
        let inferred = tick_size::infer(&prices).expect("positive prices give a step");
        // The step is on the true grid (a multiple of the tick) and every price is on it.
        let on = |x: f64, step: f64| ((x / step).round() - x / step).abs() < 1e-6;
        assert!(on(inferred, *tick), "tick {tick}, inferred {inferred}");
        for p in &prices {
            assert!(on(*p, inferred), "price {p} off the inferred {inferred} (tick {tick})");
        }
        // When the multiples share no factor, it is the tick itself.
        let g = multiples.iter().fold(0u64, |a, b| num_gcd(a, *b));
        if g == 1 {
            assert!((inferred - tick).abs() < tick * 1e-9, "tick {tick}, inferred {inferred}");
        }
        true
    });
    fuzz(
        "import_tick_size_any",
        prop::collection::vec(any::<f64>(), 0..50),
        |prices| match tick_size::infer(prices) {
            Some(t) => {
                assert!(t.is_finite() && t > 0.0, "{t}");
                true
            }
            None => false,
        },
    );
}

fn num_gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        num_gcd(b, a % b)
    }
}

#[test]
fn fuzz_import_column_map() {
    let seed = Just(b"time=ts,price=px,size=qty,side=s,id=tid,bid=b,ask=a".to_vec());
    fuzz("import_column_map", mutated_bytes(seed), |bytes| {
        let Ok(s) = std::str::from_utf8(bytes) else { return false };
        ColumnMap::parse(s).is_ok()
    });
}
