//! Fuzz targets of the JSON parameters SQL callers pass in: strategy parameters
//! (`EngineParams`, read by `tapeflow.market_state*`, live evaluation and `validate_params`),
//! backtest parameters (`BacktestParams`, `params_from_json`), parameter grids (`Grid::new`,
//! `backtest_grid`) and walk-forward windows. Reading must return an error, never panic, and
//! parameters that pass validation must run the engine and the simulator without an error or
//! a panic. See `fuzz_common` for the harness; `make fuzz` runs these long.

mod fuzz_common;

use fuzz_common::{dictionary, fuzz, keys_of, mutated_json};
use proptest::prelude::*;
use serde_json::{json, Value};
use tapeflow_analytics::backtest::grid::{
    params_from_json, summary, walk_forward_windows, Grid, MAX_WINDOWS,
};
use tapeflow_analytics::backtest::{
    mark_session_ends, run, BacktestBar, BacktestData, BacktestParams, SymbolSeries,
};
use tapeflow_analytics::engine::{BarEngine, BarInput, EngineParams};
use tapeflow_analytics::profile::{BarProfile, Profile};
use tapeflow_analytics::stats::{CALENDAR_DAYS, TRADING_DAYS};
use tapeflow_analytics::{Candle, Micros, Side};

const MINUTE: Micros = 60_000_000;
const TICK: f64 = 0.01;
const BARS: i64 = 60;

/// Bar `i` of a two-session series that rises, then falls through the second session, with
/// volume and aggressor flow that follow the move; its profile on `ticks_per_row` rows when
/// asked for.
fn bar(i: i64, ticks_per_row: Option<u32>) -> BarInput {
    let trend = if i < 40 { i as f64 * 0.2 } else { 8.0 - (i - 40) as f64 * 0.5 };
    let open = 100.0 + trend;
    let close = open + if i < 40 { 0.15 } else { -0.4 };
    let (high, low) = (open.max(close) + 0.05, open.min(close) - 0.05);
    let volume = 1_000.0 + (i % 7) as f64 * 300.0;
    let mut candle = Candle::from_ohlcv(i * MINUTE, open, high, low, close, volume);
    if i % 2 == 0 {
        let buy = if close > open { 0.7 } else { 0.3 } * volume;
        (candle.buy_volume, candle.sell_volume) = (buy, volume - buy);
    }
    let profile = ticks_per_row.map(|tpr| {
        let trades = [(low, 0.2), (open, 0.3), (close, 0.3), (high, 0.2)]
            .map(|(p, share)| (p, volume * share, if close > open { Side::Buy } else { Side::Sell }));
        BarProfile::from(&Profile::from_trades(TICK, tpr, trades).expect("valid trades"))
    });
    BarInput { time: i * MINUTE, session: 1 + i / 30, candle, profile, position: None }
}

/// Valid strategy parameters with some fields changed, as JSON.
fn engine_seed() -> impl Strategy<Value = Value> + Clone {
    (0u32..40, 1u32..30, 1u32..4, 10.0f64..90.0, 0.5f64..3.0).prop_map(|(warmup, atr, tpr, score, stop)| {
        let mut v = serde_json::to_value(EngineParams::default()).unwrap();
        v["warmup_bars"] = json!(warmup);
        v["atr_period"] = json!(atr);
        v["ticks_per_row"] = json!(tpr);
        v["strategy"]["min_aggression_score"] = json!(score);
        v["strategy"]["atr_stop_multiplier"] = json!(stop);
        v
    })
}

fn backtest_seed() -> impl Strategy<Value = Value> + Clone {
    (engine_seed(), 0.0f64..20.0, 0.0f64..0.05, any::<bool>(), any::<bool>(), prop::option::of(100.0f64..1e6))
        .prop_map(|(engine, bps, per_share, flat, utc, cap)| {
            let mut v = serde_json::to_value(BacktestParams::default()).unwrap();
            v["engine"] = engine;
            v["slippage_bps"] = json!(bps);
            v["commission_per_share"] = json!(per_share);
            v["flat_at_session_end"] = json!(flat);
            v["day_boundary"] = json!(if utc { "utc" } else { "session" });
            v["max_order_notional"] = json!(cap);
            v
        })
}

/// Every key of both parameter objects, for the mutations to hit.
fn keys() -> &'static [String] {
    let mut keys = keys_of(&serde_json::to_value(BacktestParams::default()).unwrap());
    keys.extend(["utc", "session", "rolling", "dalton", "single"].map(String::from));
    dictionary(keys)
}

#[test]
fn fuzz_engine_params() {
    fuzz("engine_params", mutated_json(engine_seed(), keys()), |text| {
        let Ok(p) = serde_json::from_str::<EngineParams>(text) else { return false };
        let valid = p.validate().is_ok();
        let engine = BarEngine::new(p.clone(), TICK);
        assert_eq!(engine.is_ok(), valid, "the constructor validates as validate does: {p:?}");
        let Ok(mut engine) = engine else { return false };
        // What passed validation reads back the same and runs on well-formed bars. (As text a
        // float can come back one ulp off: serde_json's default float reader is not correctly
        // rounded for some 17-digit numbers far from 1; it still validates.)
        let again: EngineParams = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(again, p);
        let text_again: EngineParams = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert!(text_again.validate().is_ok(), "{text_again:?}");
        let tpr = p.ticks_per_row;
        for i in 0..BARS {
            let input = bar(i, (i % 3 != 0).then_some(tpr));
            if let Err(e) = engine.on_bar(&input) {
                panic!("bar {i} refused under validated parameters {p:?}: {e}");
            }
        }
        true
    });
}

#[test]
fn fuzz_backtest_params() {
    fuzz("backtest_params", mutated_json(backtest_seed(), keys()), |text| {
        let Ok(v) = serde_json::from_str::<Value>(text) else { return false };
        let Ok(p) = params_from_json(&v) else { return false };
        let tpr = p.engine.ticks_per_row;
        let series = |symbol: &str, shift: i64| {
            let mut bars: Vec<BacktestBar> = (0..BARS)
                .map(|i| {
                    let mut b = bar(i, (tpr == 1).then_some(1));
                    b.time += shift;
                    BacktestBar::new(b, i % 30 < 26)
                })
                .collect();
            mark_session_ends(&mut bars, true);
            SymbolSeries { symbol: symbol.into(), tick_size: TICK, bars }
        };
        let mut data = BacktestData::new(vec![series("A", 0), series("B", MINUTE / 2)])
            .expect("valid series")
            .with_threads(1);
        let result = match run(&mut data, &p, &mut |_| true) {
            Ok(r) => r,
            Err(e) => panic!("run refused validated parameters {p:?}: {e}"),
        };
        let stats = summary(&result, &p, 0, BARS * MINUTE, TRADING_DAYS);
        let equity: Vec<(Micros, f64)> =
            result.equity.iter().map(|e| (e.time, e.equity.to_string().parse().unwrap())).collect();
        let returns: Vec<f64> = result.trades.iter().map(|t| t.return_pct).collect();
        let _ = (stats.annualised(CALENDAR_DAYS), stats.backtesting_py(&equity, &returns));
        true
    });
}

fn grid_seed() -> impl Strategy<Value = Value> + Clone {
    let key = prop::sample::select(vec![
        "engine.strategy.min_aggression_score",
        "engine.strategy.atr_stop_multiplier",
        "engine.warmup_bars",
        "slippage_bps",
        "engine.state.profile_scope",
        "initial_cash",
    ]);
    prop::collection::vec((key, prop::collection::vec(0u32..100, 1..5)), 1..4)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect()))
}

#[test]
fn fuzz_backtest_grid() {
    let mut keys = keys_of(&serde_json::to_value(BacktestParams::default()).unwrap());
    keys.extend(
        ["engine.strategy.min_aggression_score", "engine.warmup_bars", "a.b.c", ".", ""].map(String::from),
    );
    let keys = dictionary(keys);
    let base = prop_oneof![Just(json!({})), backtest_seed()].prop_map(|v| v.to_string());
    fuzz("backtest_grid", (base, mutated_json(grid_seed(), keys)), |(base, grid)| {
        let (Ok(base), Ok(grid)) = (serde_json::from_str::<Value>(base), serde_json::from_str::<Value>(grid))
        else {
            return false;
        };
        let Ok(g) = Grid::new(base, grid) else { return false };
        let n = g.len();
        assert!(n >= 1 && !g.is_empty());
        for i in [0, n / 2, n - 1] {
            let _ = g.combination(i);
        }
        if n <= 16 {
            let _ = g.params();
        }
        true
    });
}

fn time() -> impl Strategy<Value = Micros> {
    prop_oneof![
        3 => -1_000_000 * MINUTE..1_000_000 * MINUTE,
        1 => any::<i64>(),
        1 => prop::sample::select(vec![i64::MIN, i64::MAX, 0, 1, -1, i64::MAX - 1, i64::MIN + 1]),
    ]
}

#[test]
fn fuzz_walk_forward_windows() {
    fuzz("walk_forward_windows", (time(), time(), time(), time()), |&(from, to, ins, outs)| {
        let Ok(w) = walk_forward_windows(from, to, ins, outs) else { return false };
        assert!(w.len() <= MAX_WINDOWS);
        for x in &w {
            assert!(from <= x.in_from && x.in_from < x.out_from && x.out_from < x.out_to && x.out_to <= to);
        }
        true
    });
}
