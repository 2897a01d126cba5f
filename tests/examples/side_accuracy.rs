//! Measures every trade-side classification rule against trades whose aggressor side the venue
//! published, and bulk volume classification against the true buy volume of 1-minute bars.
//!
//! cargo run --release -p tapeflow-tests --example side_accuracy
//!
//! The data directory defaults to `shared/data` beside the repository; set
//! `TAPEFLOW_SHARED_DATA` to point elsewhere.

use std::process::ExitCode;
use tapeflow_analytics::classify::Rule;
use tapeflow_tests::ground_truth::{
    buy_volume_recovered, bvc_buy_estimates, data_dir, evaluate, volume_bars, GroundTruthSet,
};

const MINUTE_US: i64 = 60_000_000;

fn main() -> ExitCode {
    let dir = data_dir();
    let mut loaded = Vec::new();
    for set in GroundTruthSet::ALL {
        match set.load(&dir) {
            Ok(trades) => loaded.push((set, trades)),
            Err(e) => {
                eprintln!("error: {e}\n(set TAPEFLOW_SHARED_DATA to the shared data directory)");
                return ExitCode::FAILURE;
            }
        }
    }

    println!("Trade classification against the venue's aggressor side");
    println!(
        "accuracy: over trades with a known side, Unknown counted wrong; 'of classified': Unknown left out"
    );
    println!();
    println!(
        "{:<24} {:<13} {:>7} {:>13} {:>11} {:>10} {:>15} {:>14}",
        "data set",
        "rule",
        "trades",
        "correct/known",
        "classified%",
        "accuracy%",
        "of classified%",
        "vol-weighted%"
    );
    for (set, trades) in &loaded {
        for rule in set.rules() {
            let (_, acc) = evaluate(trades, rule);
            println!(
                "{:<24} {:<13} {:>7} {:>13} {:>11.2} {:>10.2} {:>15.2} {:>14.2}",
                set.name(),
                rule.name(),
                acc.trades,
                format!("{}/{}", acc.correct, acc.known),
                acc.classified_pct(),
                acc.accuracy_pct(),
                acc.accuracy_classified_pct(),
                acc.volume_accuracy_pct()
            );
        }
    }

    println!();
    println!("Buy volume recovered on 1-minute bars: 1 - sum|estimated - true buy volume| / volume");
    println!("(tick rule: volume of trades it calls buy, plus half of those it leaves unknown)");
    println!();
    println!("{:<24} {:>5} {:>10} {:>10}", "data set", "bars", "BVC%", "tick%");
    for (set, trades) in &loaded {
        let (tick_sides, _) = evaluate(trades, Rule::Tick);
        let bars = volume_bars(trades, &tick_sides, MINUTE_US);
        let tick_est: Vec<f64> = bars.iter().map(|b| b.predicted_buy).collect();
        let bvc = 100.0 * buy_volume_recovered(&bars, &bvc_buy_estimates(&bars));
        let tick = 100.0 * buy_volume_recovered(&bars, &tick_est);
        // BVC needs at least two bars to estimate sigma; with one it can only split evenly.
        let note = if bars.len() < 2 { "  (one bar: BVC splits evenly)" } else { "" };
        println!("{:<24} {:>5} {:>10.2} {:>10.2}{note}", set.name(), bars.len(), bvc, tick);
    }
    ExitCode::SUCCESS
}
