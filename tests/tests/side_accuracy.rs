//! Classification accuracy on real trades with the venue's aggressor side.
//!
//! Floors are the values measured by `examples/side_accuracy.rs` minus a margin of about
//! three points, so they catch a broken rule or loader without pinning exact figures. The
//! data must be present: a missing directory fails loudly rather than skipping.

use tapeflow_analytics::classify::Rule;
use tapeflow_analytics::Side;
use tapeflow_tests::ground_truth::{
    buy_volume_recovered, bvc_buy_estimates, data_dir, evaluate, volume_bars, Accuracy, GroundTruthSet,
    GroundTruthTrade, DATA_DIR_ENV,
};

const MINUTE_US: i64 = 60_000_000;

fn load(set: GroundTruthSet) -> Vec<GroundTruthTrade> {
    let dir = data_dir();
    assert!(
        dir.is_dir(),
        "ground-truth data directory {} not found; set {DATA_DIR_ENV} to the shared data directory",
        dir.display()
    );
    set.load(&dir).unwrap_or_else(|e| panic!("cannot load {}: {e}", set.name()))
}

fn accuracy(set: GroundTruthSet, rule: Rule) -> Accuracy {
    evaluate(&load(set), rule).1
}

fn count(trades: &[GroundTruthTrade], side: Side) -> usize {
    trades.iter().filter(|t| t.side == side).count()
}

#[test]
fn loaders_read_every_row() {
    let tardis = load(GroundTruthSet::TardisBinanceFutures);
    assert_eq!((tardis.len(), count(&tardis, Side::Buy), count(&tardis, Side::Sell)), (9999, 5267, 4732));
    let spot = load(GroundTruthSet::BinanceSpot);
    assert_eq!((spot.len(), count(&spot, Side::Buy), count(&spot, Side::Sell)), (2001, 1087, 914));
    let es = load(GroundTruthSet::CmeEs);
    assert_eq!(
        (es.len(), count(&es, Side::Buy), count(&es, Side::Sell), count(&es, Side::Unknown)),
        (2973, 1542, 1430, 1)
    );
    assert!(es.iter().all(|t| t.quote.is_some()));
    assert!(tardis.iter().chain(&spot).all(|t| t.quote.is_none()));
    // Times are µs since 2000-01-01: 2020-02-22 00:00:02.111 UTC is Unix 1582329602.111.
    assert_eq!(tardis[0].time, 1_582_329_602_111_000 - 946_684_800_000_000);
    assert!(es.windows(2).all(|w| w[0].time <= w[1].time));
}

#[test]
fn tick_rule_on_binance_futures() {
    let acc = accuracy(GroundTruthSet::TardisBinanceFutures, Rule::Tick);
    assert!(acc.classified_pct() > 99.5, "{acc:?}");
    assert!(acc.accuracy_pct() > 84.0, "measured 86.78%: {acc:?}");
    assert!(acc.volume_accuracy_pct() > 88.0, "measured 91.25%: {acc:?}");
}

#[test]
fn tick_rule_on_binance_spot() {
    let acc = accuracy(GroundTruthSet::BinanceSpot, Rule::Tick);
    assert!(acc.classified_pct() > 99.5, "{acc:?}");
    assert!(acc.accuracy_pct() > 86.0, "measured 89.26%: {acc:?}");
    assert!(acc.volume_accuracy_pct() > 91.0, "measured 94.12%: {acc:?}");
}

#[test]
fn tick_rule_on_es() {
    let acc = accuracy(GroundTruthSet::CmeEs, Rule::Tick);
    assert!(acc.accuracy_pct() > 72.0, "measured 74.76%: {acc:?}");
    assert!(acc.volume_accuracy_pct() > 78.0, "measured 80.99%: {acc:?}");
}

/// On these venues one aggressive order fills at several successive prices, so the next
/// different price tends to continue the move and the reverse tick test reads it backwards.
#[test]
fn reverse_tick_is_worse_than_tick_everywhere() {
    for set in GroundTruthSet::ALL {
        let trades = load(set);
        let tick = evaluate(&trades, Rule::Tick).1;
        let reverse = evaluate(&trades, Rule::ReverseTick).1;
        assert!(reverse.classified_pct() > 99.5, "{}: {reverse:?}", set.name());
        assert!(
            reverse.accuracy_pct() + 10.0 < tick.accuracy_pct(),
            "{}: reverse {:.2}% vs tick {:.2}%",
            set.name(),
            reverse.accuracy_pct(),
            tick.accuracy_pct()
        );
    }
}

/// The ES file's BBO is the book just before each trade and every buy is at or above the ask
/// (every sell at or below the bid), so the quote-based rules must be essentially exact. The
/// one unclassified trade is the opening print, against a crossed book and with no previous
/// trade for the tick test.
#[test]
fn quote_rules_near_perfect_on_es() {
    let trades = load(GroundTruthSet::CmeEs);
    for rule in [Rule::Quote, Rule::LeeReady, Rule::Emo, Rule::Clnv] {
        let acc = evaluate(&trades, rule).1;
        assert!(acc.accuracy_pct() > 99.9, "{rule}: measured 100.00%: {acc:?}");
        assert!(acc.volume_accuracy_pct() > 99.9, "{rule}: {acc:?}");
        assert!(acc.trades - acc.classified <= 1, "{rule}: {acc:?}");
    }
}

#[test]
fn bvc_recovers_buy_volume_on_minute_bars() {
    for (set, floor, measured) in
        [(GroundTruthSet::TardisBinanceFutures, 78.0, 82.52), (GroundTruthSet::CmeEs, 78.0, 82.25)]
    {
        let trades = load(set);
        let (tick_sides, _) = evaluate(&trades, Rule::Tick);
        let bars = volume_bars(&trades, &tick_sides, MINUTE_US);
        assert!(bars.len() >= 50, "{}: {} bars", set.name(), bars.len());
        let bvc = 100.0 * buy_volume_recovered(&bars, &bvc_buy_estimates(&bars));
        assert!(bvc > floor, "{}: BVC recovered {bvc:.2}%, measured {measured}%", set.name());
        // As Chakrabarty, Pascual & Shkilko found, summing tick-rule sides beats BVC.
        let tick_est: Vec<f64> = bars.iter().map(|b| b.predicted_buy).collect();
        let tick = 100.0 * buy_volume_recovered(&bars, &tick_est);
        assert!(tick > bvc, "{}: tick {tick:.2}% vs BVC {bvc:.2}%", set.name());
    }
}
