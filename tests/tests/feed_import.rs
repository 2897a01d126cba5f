//! `tapeflow-feed import` against a real database with the shared data files: every row
//! stored once with the side the file gives, a re-run (and a renamed copy) stores nothing,
//! bad lines are reported with file:line and skipped, and the SQL API (candles, profiles,
//! backtests) runs on what was imported.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use tapeflow_tests::ground_truth::data_dir;
use tapeflow_tests::*;

fn shared(rel: &str) -> PathBuf {
    data_dir().join(rel)
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn import(db: &TestDb, args: &[&str]) -> Run {
    let out = Command::new(binary("tapeflow-feed"))
        .arg("import")
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run tapeflow-feed import");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn import_ok(db: &TestDb, args: &[&str]) -> String {
    let r = import(db, args);
    assert!(r.ok, "import {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
    r.stdout
}

/// The data lines of a file (gzip read with zcat), split at commas.
fn rows(path: &Path) -> Vec<Vec<String>> {
    let text = if path.extension().is_some_and(|e| e == "gz") {
        let out = Command::new("zcat").arg(path).output().expect("zcat");
        String::from_utf8(out.stdout).unwrap()
    } else {
        std::fs::read_to_string(path).unwrap()
    };
    text.lines().skip(1).filter(|l| !l.is_empty()).map(|l| l.split(',').map(String::from).collect()).collect()
}

async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(c: &tokio_postgres::Client, sql: &str) -> T {
    c.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

#[tokio::test]
async fn tardis_trades_with_taker_sides_then_candles_profile_and_backtest() {
    let db = TestDb::create("import_tardis", false).await;
    let c = db.client().await;
    let path = shared("a_trades_ground_truth/tardis_binance-futures_BTCUSDT_trades_2020-02-22.csv");
    let file = path.to_str().unwrap();
    let lines = rows(&path);
    let out = import_ok(&db, &[file]);
    assert!(out.contains(&format!("trades: {} read", thousands(lines.len()))), "{out}");

    let stored: i64 = one(&c, "SELECT count(*) FROM tapeflow.ticks WHERE symbol = 'BTCUSDT'").await;
    assert_eq!(stored as usize, lines.len());
    // Sides as the file gives them (column 5: the taker's side), all from the venue.
    let buys = lines.iter().filter(|r| r[5] == "buy").count() as i64;
    let sells = lines.iter().filter(|r| r[5] == "sell").count() as i64;
    let (b, s, venue): (i64, i64, i64) = {
        let r = c
            .query_one(
                "SELECT count(*) FILTER (WHERE side = 'B'), count(*) FILTER (WHERE side = 'S'),
                        count(*) FILTER (WHERE side_source = 'venue') FROM tapeflow.ticks WHERE symbol = 'BTCUSDT'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!((b, s, venue), (buys, sells, buys + sells));
    // The trade ids are the file's own.
    let ids: i64 =
        one(&c, "SELECT count(*) FROM tapeflow.ticks WHERE symbol = 'BTCUSDT' AND trade_id ~ '^[0-9]+$'")
            .await;
    assert_eq!(ids as usize, lines.len());

    // A 24/7 crypto symbol with the inferred tick.
    let r = c
        .query_one(
            "SELECT asset_class, tick_size, timezone, session_open = session_close, provider, provider_ref
             FROM tapeflow.symbols WHERE symbol = 'BTCUSDT'",
            &[],
        )
        .await
        .unwrap();
    let (class, tick, tz, h24, provider, pref): (String, f64, String, bool, String, String) =
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
    assert_eq!(
        (class.as_str(), tick, tz.as_str(), h24, provider.as_str()),
        ("crypto", 0.01, "UTC", true, "file")
    );
    assert_eq!(pref, "tardis:BTCUSDT");

    // A re-run, and the same file under another name, store nothing.
    let again = import_ok(&db, &[file]);
    assert!(again.contains(&format!("trades: {} read, 0 new", thousands(lines.len()))), "{again}");
    let dir = std::env::temp_dir().join(format!("tapeflow-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let renamed = dir.join("renamed.csv");
    std::fs::copy(&path, &renamed).unwrap();
    let again = import_ok(&db, &[renamed.to_str().unwrap()]);
    assert!(nothing_new(&again), "{again}");
    let stored_again: i64 = one(&c, "SELECT count(*) FROM tapeflow.ticks").await;
    assert_eq!(stored_again, stored);

    // Candles and the session profile carry the file's volume and its buy/sell split.
    let volume: f64 = lines.iter().map(|r| r[7].parse::<f64>().unwrap()).sum();
    let buy_volume: f64 = lines.iter().filter(|r| r[5] == "buy").map(|r| r[7].parse::<f64>().unwrap()).sum();
    let r = c
        .query_one(
            "SELECT sum(volume), sum(buy_volume), count(*) FROM tapeflow.candles('BTCUSDT', '1m', '2020-02-22', '2020-02-23')",
            &[],
        )
        .await
        .unwrap();
    let (v, bv, bars): (f64, f64, i64) = (r.get(0), r.get(1), r.get(2));
    assert!((v - volume).abs() < 1e-6 * volume, "{v} vs {volume}");
    assert!((bv - buy_volume).abs() < 1e-6 * volume, "{bv} vs {buy_volume}");
    assert!(bars > 100, "{bars} one-minute bars over two hours");
    let r = c
        .query_one(
            "SELECT tapeflow.total_volume(p), tapeflow.poc(p), v.vah, v.val
             FROM tapeflow.session_profile('BTCUSDT', '2020-02-22') p, tapeflow.value_area(p) v",
            &[],
        )
        .await
        .unwrap();
    let (total, poc, vah, val): (f64, f64, f64, f64) = (r.get(0), r.get(1), r.get(2), r.get(3));
    assert!((total - volume).abs() < 1e-6 * volume);
    let prices: Vec<f64> = lines.iter().map(|r| r[6].parse().unwrap()).collect();
    let (lo, hi) = prices.iter().fold((f64::MAX, f64::MIN), |(l, h), p| (l.min(*p), h.max(*p)));
    assert!(lo <= val && val <= poc && poc <= vah && vah <= hi, "{lo} {val} {poc} {vah} {hi}");

    // A persisted backtest over the imported bars completes.
    let run: i64 = one(
        &c,
        "SELECT tapeflow.backtest_run(ARRAY['BTCUSDT'], '2020-02-22', '2020-02-23',
                                      '{\"engine\": {\"warmup_bars\": 10, \"strategy\": {\"min_aggression_score\": 30}}}')",
    )
    .await;
    let (status, error): (String, Option<String>) = {
        let r = c
            .query_one("SELECT status, error FROM tapeflow.backtest_runs WHERE id = $1", &[&run])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(status, "completed", "{error:?}");
    let equity: i64 =
        one(&c, &format!("SELECT count(*) FROM tapeflow.backtest_equity WHERE run_id = {run}")).await;
    assert_eq!(equity, bars, "one equity point per bar");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn databento_mbp1_trades_and_quotes_and_the_trades_schema_agree() {
    let db = TestDb::create("import_databento", false).await;
    let c = db.client().await;
    let mbp = shared("a_trades_ground_truth/databento_esu4_glbx_mbp-1_2024-07-01T2358_0002.csv");
    let lines = rows(&mbp);
    import_ok(&db, &[mbp.to_str().unwrap()]);
    // Trades: the T rows (column 5), side (column 6) the aggressor, B buy and A sell.
    let trades: Vec<&Vec<String>> = lines.iter().filter(|r| r[5] == "T").collect();
    let r = c
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE side = 'B'), count(*) FILTER (WHERE side = 'S'),
                    count(*) FILTER (WHERE side_source = 'venue') FROM tapeflow.ticks WHERE symbol = 'ESU4'",
            &[],
        )
        .await
        .unwrap();
    let got: (i64, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
    let buys = trades.iter().filter(|r| r[6] == "B").count() as i64;
    let sells = trades.iter().filter(|r| r[6] == "A").count() as i64;
    assert_eq!(got, (trades.len() as i64, buys, sells, buys + sells));
    // Quotes: the book after each event that ends with F_LAST (flags column 10) and changes it.
    let mut last = None;
    let mut changes = 0;
    for r in &lines {
        if r[10].parse::<u64>().unwrap() & 0x80 == 0 {
            continue;
        }
        let book = (r[13].clone(), r[14].clone(), r[15].clone(), r[16].clone());
        if last.as_ref() != Some(&book) {
            changes += 1;
            last = Some(book);
        }
    }
    let quotes: i64 = one(&c, "SELECT count(*) FROM tapeflow.quotes WHERE symbol = 'ESU4'").await;
    assert_eq!(quotes, changes);
    let (class, tick, tz): (String, f64, String) = {
        let r = c
            .query_one(
                "SELECT asset_class, tick_size, timezone FROM tapeflow.symbols WHERE symbol = 'ESU4'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!((class.as_str(), tick, tz.as_str()), ("future", 0.25, "America/Chicago"));
    // The trades schema of the same minutes has the same trade ids: nothing new.
    let trades_file = shared("a_trades_ground_truth/databento_esu4_glbx_trades_2024-07-01T2358_0002.csv");
    let out = import_ok(&db, &[trades_file.to_str().unwrap(), mbp.to_str().unwrap()]);
    assert!(nothing_new(&out), "{out}");
    assert!(
        out.contains("quotes: 0 read, 0 new")
            && out.contains(&format!("quotes: {} read, 0 new", thousands(changes as usize))),
        "{out}"
    );
    // Every stored buy is at or above the stored quote's bid, every sell at or below its ask.
    let off: i64 = one(
        &c,
        "SELECT count(*) FROM tapeflow.ticks t CROSS JOIN LATERAL (SELECT bid, ask FROM tapeflow.quotes q
            WHERE q.symbol = t.symbol AND q.time <= t.time ORDER BY q.time DESC LIMIT 1) q
         WHERE t.symbol = 'ESU4' AND ((t.side = 'B' AND t.price < q.bid) OR (t.side = 'S' AND t.price > q.ask))",
    )
    .await;
    assert_eq!(off, 0);
}

#[tokio::test]
async fn taq_trades_and_quotes_without_ids_or_sides() {
    let db = TestDb::create("import_taq", false).await;
    let c = db.client().await;
    let trades = shared("a_equities_taq/taq_XXX_trades_raw_2018-01-02_03.csv.gz");
    let quotes = shared("a_equities_taq/taq_XXX_quotes_raw_2018-01-02_03.csv.gz");
    let out = import_ok(&db, &[trades.to_str().unwrap(), quotes.to_str().unwrap()]);
    // Every trade but the corrected or cancelled ones (CORR, column 6, not 0).
    let t = rows(&trades);
    let kept = t.iter().filter(|r| r[6] == "0").count() as i64;
    assert!(out.contains(&format!("left out: {}", t.len() as i64 - kept)), "{out}");
    let r = c
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE side_source = 'inferred'), count(DISTINCT exchange),
                    count(*) FILTER (WHERE conditions IS NOT NULL) FROM tapeflow.ticks WHERE symbol = 'XXX'",
            &[],
        )
        .await
        .unwrap();
    let (n, inferred, exchanges, with_conditions): (i64, i64, i64, i64) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    assert_eq!(n, kept);
    // No side in TAQ: the tick rule classifies all but the first trades, before any price change.
    let none: i64 =
        one(&c, "SELECT count(*) FROM tapeflow.ticks WHERE symbol = 'XXX' AND side_source = 'none'").await;
    assert_eq!(inferred + none, n);
    assert!(none < 10, "{none} unclassified");
    assert_eq!(exchanges, t.iter().map(|r| r[1].as_str()).collect::<HashSet<_>>().len() as i64);
    assert_eq!(with_conditions, t.iter().filter(|r| r[6] == "0" && !r[3].trim().is_empty()).count() as i64);
    // A quote is stored once: identical rows of one instant are one quote.
    let q = rows(&quotes);
    let distinct = q.iter().map(|r| r[..6].join(",")).collect::<HashSet<_>>().len() as i64;
    let stored: i64 = one(&c, "SELECT count(*) FROM tapeflow.quotes WHERE symbol = 'XXX'").await;
    assert_eq!(stored, distinct);
    let (class, tick, tz, open): (String, f64, String, String) = {
        let r = c
            .query_one(
                "SELECT asset_class, tick_size, timezone, session_open::text FROM tapeflow.symbols WHERE symbol = 'XXX'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3))
    };
    assert_eq!(
        (class.as_str(), tick, tz.as_str(), open.as_str()),
        ("us_equity", 0.01, "America/New_York", "09:30:00")
    );
    // Content ids: a re-run stores nothing.
    let again = import_ok(&db, &[trades.to_str().unwrap(), quotes.to_str().unwrap()]);
    assert!(nothing_new(&again), "{again}");
    let n_again: i64 = one(&c, "SELECT count(*) FROM tapeflow.ticks").await;
    assert_eq!(n_again, n);
    // Lee-Ready on the imported quotes classifies the regular session's trades.
    let classified: f64 = one(
        &c,
        "SELECT (count(*) FILTER (WHERE inferred_side IN ('B', 'S')))::float8 / count(*)
         FROM tapeflow.classify_ticks('XXX', '2018-01-02 14:30+00', '2018-01-02 21:00+00')",
    )
    .await;
    assert!(classified > 0.9, "{classified}");
}

#[tokio::test]
async fn bad_lines_are_reported_with_their_line_and_skipped() {
    let db = TestDb::create("import_bad", false).await;
    let c = db.client().await;
    let dir = std::env::temp_dir().join(format!("tapeflow-import-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bitmex.csv");
    let good =
        std::fs::read_to_string(shared("a_trades_ground_truth/tardis_bitmex_XBTUSD_trades_2020-03-01.csv"))
            .unwrap();
    let mut lines: Vec<String> = good.lines().map(String::from).collect();
    let n_good = lines.len() - 1;
    lines.insert(3, "bitmex,XBTUSD,1583020803276000,1583020803336743,x1,hold,8531.5,1".into());
    lines.insert(5, "bitmex,XBTUSD,1583020803276000,1583020803336743,x2,buy,-5,1".into());
    lines.insert(7, "\"an unterminated quote,".into());
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let file = path.to_str().unwrap();
    let r = import(&db, &[file]);
    assert!(r.ok, "bad lines are skipped, not fatal:\n{}", r.stderr);
    assert!(r.stdout.contains("bad lines: 3"), "{}", r.stdout);
    assert!(
        r.stderr.contains(&format!("{file}:4: side: 'hold' is not buy, sell or unknown")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(&format!("{file}:6: price: price must be positive, got -5")), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("{file}:8: ")), "{}", r.stderr);
    let stored: i64 = one(&c, "SELECT count(*) FROM tapeflow.ticks WHERE symbol = 'XBTUSD'").await;
    assert_eq!(stored as usize, n_good, "every good line after the bad ones is stored");
    // --strict: the same, and a failing exit.
    let r = import(&db, &["--strict", file]);
    assert!(!r.ok && r.stderr.contains("3 bad lines (--strict)"), "{}", r.stderr);
    // A file that names no symbol needs --symbol, and says so before reading anything.
    let binance = shared("a_trades_ground_truth/binance_spot_BTCUSDT_trades_2021-01-08.csv");
    let r = import(&db, &[binance.to_str().unwrap()]);
    assert!(!r.ok && r.stderr.contains("pass --symbol"), "{}", r.stderr);
    let out = import_ok(&db, &["--symbol", "BTCUSDT-SPOT", binance.to_str().unwrap()]);
    assert!(out.contains("2,001 new"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The counts of new rows in an import's report ("9,999 new").
fn news(out: &str) -> Vec<u64> {
    out.match_indices(" new")
        .map(|(at, _)| {
            let digits: String =
                out[..at].chars().rev().take_while(|c| c.is_ascii_digit() || *c == ',').collect();
            digits.chars().rev().filter(char::is_ascii_digit).collect::<String>().parse().unwrap()
        })
        .collect()
}

fn nothing_new(out: &str) -> bool {
    let n = news(out);
    !n.is_empty() && n.iter().all(|x| *x == 0)
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
