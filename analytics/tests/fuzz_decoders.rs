//! Fuzz targets of the stored forms the extension decodes: `candle` and `profile` values in
//! their binary form (`from_bytes`, what every stored value goes through, and the bar engine's
//! `BarProfile::from_bytes`) and their text form (JSON, the types' input function). A decoder
//! must return an error, never panic, and whatever it accepts must survive every operation the
//! SQL functions apply to it. See `fuzz_common` for the harness; `make fuzz` runs these long.

mod fuzz_common;

use fuzz_common::{dictionary, fuzz, keys_of, mutated_bytes, mutated_json};
use proptest::prelude::*;
use tapeflow_analytics::backtest::bar_profile_on_grid;
use tapeflow_analytics::profile::{BarProfile, NodeParams, Profile, VaMethod};
use tapeflow_analytics::{Candle, Side};

fn side() -> impl Strategy<Value = Side> + Clone {
    prop_oneof![Just(Side::Buy), Just(Side::Sell), Just(Side::Unknown)]
}

/// Candles built from trades, as `candle_agg` builds them.
fn candle() -> impl Strategy<Value = Candle> + Clone {
    prop::collection::vec((-1_000_000i64..1_000_000, 1u32..100_000, 0u32..10_000, side()), 1..20).prop_map(
        |trades| {
            let mut c: Option<Candle> = None;
            for (t, p, s, side) in trades {
                let one = Candle::from_trade(t, f64::from(p) / 100.0, f64::from(s), side).unwrap();
                c = Candle::merge_opt(c, Some(&one)).unwrap();
            }
            c.unwrap()
        },
    )
}

/// The version 1 binary form of a candle (sums as doubles), which decoders still read.
fn candle_v1(c: &Candle) -> Vec<u8> {
    let mut out = vec![1];
    for v in [c.open, c.high, c.low, c.close, c.volume, c.buy_volume, c.sell_volume, c.notional] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for t in [c.open_time, c.high_time, c.low_time, c.close_time, c.trades] {
        out.extend_from_slice(&t.to_le_bytes());
    }
    out
}

/// The version 1 binary form of a profile (volumes as doubles).
fn profile_v1(p: &Profile) -> Vec<u8> {
    let rows = p.rows();
    let mut out = vec![1];
    out.extend_from_slice(&p.tick_size().to_le_bytes());
    out.extend_from_slice(&p.ticks_per_row().to_le_bytes());
    out.extend_from_slice(&(rows.len() as u64).to_le_bytes());
    for (r, l) in rows {
        out.extend_from_slice(&r.to_le_bytes());
        for v in [l.buy, l.sell, l.unknown] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&l.trades.to_le_bytes());
    }
    out
}

/// Profiles built from trades on the grids the symbols use.
fn profile() -> impl Strategy<Value = Profile> + Clone {
    let tick = prop::sample::select(vec![0.01, 0.25, 1.0, 0.0001, 0.05, 5.0, 1e-8, 0.1]);
    let trades = prop::collection::vec((0i64..300, 0u32..10_000, side()), 0..40);
    (tick, 1u32..6, 1i64..100_000, trades).prop_map(|(tick, tpr, base, trades)| {
        // Sizes in thousandths, so sums carry bits no double holds.
        let trades =
            trades.into_iter().map(|(t, s, side)| ((base + t) as f64 * tick, f64::from(s) / 1000.0, side));
        Profile::from_trades(tick, tpr, trades).unwrap()
    })
}

/// Everything SQL does with a candle: accessors, merging, the binary and text forms.
fn exercise_candle(c: &Candle) {
    let _ = (c.vwap(), c.delta());
    let mut m = *c;
    // Decoded sums may be anywhere in the exact range: a merge may be refused, never panic.
    let _ = m.merge(c);
    let _ = Candle::merge_opt(Some(m), Some(c));
    let b = c.to_bytes();
    let back = Candle::from_bytes(&b).expect("a candle's own bytes decode");
    assert_eq!(back.to_bytes(), b, "binary round trip");
    let _ = serde_json::to_string(c).expect("candles serialize to JSON");
}

/// Everything SQL does with a profile: the readings, re-binning, merging, both forms.
fn exercise_profile(p: &Profile) {
    let _ = (p.total_volume(), p.buy_volume(), p.sell_volume(), p.delta(), p.trades(), p.range(), p.poc());
    let _ = (p.levels(), p.row_count(), p.is_empty());
    for method in VaMethod::ALL {
        for pct in [0.7, 1.0, 1e-9] {
            let _ = p.try_value_area(pct, method).expect("pct is valid");
        }
    }
    // Node detection works on a dense copy of the range (at most MAX_NODE_ROWS rows, a bound
    // the unit tests check); a wide range costs milliseconds, so here only narrow ones.
    let narrow = match (p.rows().first(), p.rows().last()) {
        (Some(lo), Some(hi)) => hi.0.abs_diff(lo.0) <= 4096,
        _ => true,
    };
    if narrow {
        let _ = p.nodes(&NodeParams::default()).expect("default node params are valid");
        let _ = p.nodes(&NodeParams { smooth_rows: 1, hvn_ratio: 0.0, lvn_ratio: 1.0, min_prominence: 0.0 });
    }
    let tpr = p.ticks_per_row();
    for k in [1, 2, 7] {
        if let Some(coarser) = tpr.checked_mul(k) {
            let _ = bar_profile_on_grid(p, coarser);
        }
    }
    let mut twice = p.clone();
    // Same grid; the total may leave the exact range, which is refused.
    if twice.merge(p).is_ok() {
        let _ = (twice.total_volume(), twice.trades(), twice.poc());
    }
    let b = p.to_bytes();
    let back = Profile::from_bytes(&b).expect("a profile's own bytes decode");
    assert_eq!(&back, p, "binary round trip");
    let bar = BarProfile::from_bytes(&b).expect("a profile's own bytes decode as a bar profile");
    assert_eq!(bar, BarProfile::from(p));
    let mut bars = bar.clone();
    bars.merge(&bar).expect("same grid");
    if let Ok(rebinned) = p.rebinned(p.ticks_per_row().saturating_mul(3)) {
        assert_eq!(rebinned.total_volume(), p.total_volume());
    }
    let json = serde_json::to_string(p).expect("profiles serialize to JSON");
    let _ = serde_json::from_str::<Profile>(&json);
}

#[test]
fn fuzz_candle_binary() {
    let seeds = prop_oneof![candle().prop_map(|c| c.to_bytes()), candle().prop_map(|c| candle_v1(&c))];
    fuzz("candle_binary", mutated_bytes(seeds), |b| {
        let Ok(c) = Candle::from_bytes(b) else { return false };
        // Every byte is kept: what is stored is what is read (an older version is read as the
        // same candle, written back in the current form).
        if b[0] == Candle::VERSION {
            assert_eq!(&c.to_bytes(), b);
        } else {
            // Compared as bytes: a decoded price may be NaN.
            let again = c.to_bytes();
            assert_eq!(Candle::from_bytes(&again).unwrap().to_bytes(), again);
            // A stored volume reads back as it was, unless below 2^-60 (rounded to 2^-112).
            let stored = f64::from_le_bytes(b[33..41].try_into().unwrap());
            if stored.abs() >= 2f64.powi(-60) {
                assert_eq!(c.volume.to_bits(), stored.to_bits());
            }
        }
        exercise_candle(&c);
        true
    });
}

#[test]
fn fuzz_candle_text() {
    let keys = dictionary(keys_of(
        &serde_json::to_value(Candle::from_trade(1, 1.0, 1.0, Side::Buy).unwrap()).unwrap(),
    ));
    let seeds = candle().prop_map(|c| serde_json::to_value(c).unwrap());
    fuzz("candle_text", mutated_json(seeds, keys), |text| {
        let Ok(c) = serde_json::from_str::<Candle>(text) else { return false };
        exercise_candle(&c);
        true
    });
}

#[test]
fn fuzz_profile_binary() {
    let seeds = prop_oneof![profile().prop_map(|p| p.to_bytes()), profile().prop_map(|p| profile_v1(&p))];
    fuzz("profile_binary", mutated_bytes(seeds), |b| {
        let p = Profile::from_bytes(b);
        let bar = BarProfile::from_bytes(b);
        // Both decoders check the same things.
        assert_eq!(p.is_ok(), bar.is_ok(), "{p:?} vs {bar:?}");
        let Ok(p) = p else { return false };
        if b[0] == Profile::VERSION {
            assert_eq!(&p.to_bytes(), b);
        } else {
            assert_eq!(Profile::from_bytes(&p.to_bytes()).unwrap(), p);
        }
        exercise_profile(&p);
        true
    });
}

#[test]
fn fuzz_profile_text() {
    let sample = Profile::from_trades(0.01, 1, [(1.0, 1.0, Side::Buy)]).unwrap();
    let mut keys = keys_of(&serde_json::to_value(&sample).unwrap());
    keys.extend(["buy", "sell", "unknown", "trades"].map(String::from));
    let keys = dictionary(keys);
    let seeds = profile().prop_map(|p| serde_json::to_value(p).unwrap());
    fuzz("profile_text", mutated_json(seeds, keys), |text| {
        let Ok(p) = serde_json::from_str::<Profile>(text) else { return false };
        exercise_profile(&p);
        true
    });
}
