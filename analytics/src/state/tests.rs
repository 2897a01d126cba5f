use super::*;
use proptest::prelude::*;

fn va() -> Option<ValueLevels> {
    Some(ValueLevels { poc: 100.0, vah: 101.0, val: 99.0 })
}

fn read(price: f64, mom: Option<f64>, pressure: f64) -> StateReading {
    classify(&StateInput { price, value_area: va(), momentum_pct: mom, pressure }, &StateParams::default())
}

#[test]
fn momentum_is_in_percent() {
    assert_eq!(momentum_pct(100.0, 100.3).map(|m| (m * 1e9).round() / 1e9), Some(0.3));
    assert_eq!(momentum_pct(100.0, 100.0), Some(0.0));
    assert_eq!(momentum_pct(0.0, 1.0), None);
    assert_eq!(momentum_pct(f64::NAN, 1.0), None);
    // 0.15% is below the default 0.2% threshold (the predecessor's "1.5" meant 0.15%).
    assert_eq!(read(102.0, momentum_pct(100.0, 100.15), 0.0).votes.momentum, Some(0));
    assert_eq!(read(102.0, momentum_pct(100.0, 100.25), 0.0).votes.momentum, Some(1));
}

#[test]
fn row1_no_value_area_is_balance_without_confidence() {
    let r = classify(
        &StateInput { price: 105.0, value_area: None, momentum_pct: Some(5.0), pressure: 90.0 },
        &StateParams::default(),
    );
    assert_eq!((r.state, r.confidence), (MarketState::Balance, 0.0));
    assert_eq!(r.votes.location, None);
}

#[test]
fn row2_imbalance_up_needs_location_and_momentum() {
    let r = read(102.0, Some(0.5), 0.0);
    assert_eq!((r.state, r.confidence, r.score), (MarketState::ImbalanceUp, 80.0, 4));
    let r = read(102.0, Some(0.5), 30.0);
    assert_eq!((r.state, r.confidence, r.score), (MarketState::ImbalanceUp, 100.0, 5));
}

#[test]
fn row3_imbalance_down_mirrors_row2() {
    let r = read(98.0, Some(-0.5), 0.0);
    assert_eq!((r.state, r.confidence, r.score), (MarketState::ImbalanceDown, 80.0, -4));
    let r = read(98.0, Some(-0.5), -30.0);
    assert_eq!((r.state, r.confidence), (MarketState::ImbalanceDown, 100.0));
}

#[test]
fn row4_everything_else_is_balance() {
    // Inside value, everything up: still balance, only the location vote is flat.
    let r = read(100.5, Some(1.0), 50.0);
    assert_eq!((r.state, r.confidence, r.score), (MarketState::Balance, 40.0, 3));
    // Inside value and quiet: full confidence.
    let r = read(100.0, Some(0.0), 0.0);
    assert_eq!((r.state, r.confidence), (MarketState::Balance, 100.0));
    // Outside value but no momentum: a probe, not acceptance.
    let r = read(102.0, Some(0.1), 40.0);
    assert_eq!((r.state, r.score), (MarketState::Balance, 3));
    // Outside value with momentum but pressure pushing back: the pressure vote is not
    // overridden, it cancels.
    let r = read(102.0, Some(0.5), -30.0);
    assert_eq!((r.state, r.confidence, r.score), (MarketState::Balance, 0.0, 3));
    // Missing momentum casts no vote: location and pressure alone cannot make an imbalance.
    let r = read(102.0, None, 90.0);
    assert_eq!((r.state, r.score), (MarketState::Balance, 3));
    // The VA bounds are inside value.
    assert_eq!(read(101.0, Some(1.0), 50.0).votes.location, Some(0));
    assert_eq!(read(99.0, Some(-1.0), -50.0).votes.location, Some(0));
}

#[test]
fn thresholds_are_inclusive() {
    let p = StateParams::default();
    assert_eq!(read(102.0, Some(p.momentum_threshold_pct), p.pressure_threshold).score, 5);
    assert_eq!(read(98.0, Some(-p.momentum_threshold_pct), -p.pressure_threshold).score, -5);
}

#[test]
fn state_names_round_trip() {
    for s in MarketState::ALL {
        assert_eq!(MarketState::parse(s.as_str()), Some(s));
    }
    assert_eq!(MarketState::parse("IMBALANCE_UP"), Some(MarketState::ImbalanceUp));
    assert_eq!(MarketState::parse("unknown"), None);
}

fn bar(volume: f64, buy: f64, sell: f64) -> FlowBar {
    FlowBar { volume, buy, sell }
}

#[test]
fn aggression_formula_by_hand() {
    let p = AggressionParams::default();
    // Average 100; current bar 200 (ratio 2 → spike 0.5); window buy 300, sell 100:
    // m = 2 avg bars (full), buy% 75 → pressure part 25/30.
    let w = [bar(100.0, 50.0, 50.0), bar(100.0, 50.0, 50.0), bar(200.0, 200.0, 0.0)];
    let a = aggression(&w, Some(100.0), &p);
    assert!((a.volume_ratio - 2.0).abs() < 1e-12);
    assert!((a.delta_momentum - 2.0).abs() < 1e-12);
    assert!((a.buy_pressure - 75.0).abs() < 1e-12);
    let want = 100.0 * (0.2 * 0.5 + 0.4 * 1.0 + 0.4 * (25.0 / 30.0));
    assert!((a.score - want).abs() < 1e-9, "{} vs {want}", a.score);
    assert_eq!(a.direction, FlowDirection::Buy);
}

#[test]
fn aggression_of_nothing_is_neutral() {
    let p = AggressionParams::default();
    let a = aggression(&[], None, &p);
    assert_eq!((a.score, a.direction, a.buy_pressure), (0.0, FlowDirection::Neutral, 50.0));
    let a = aggression(&[bar(0.0, 0.0, 0.0)], Some(0.0), &p);
    assert_eq!((a.score, a.direction), (0.0, FlowDirection::Neutral));
    // A first bar has no history: ratio 1, no spike.
    let a = aggression(&[bar(500.0, 250.0, 250.0)], None, &p);
    assert_eq!((a.volume_ratio, a.score), (1.0, 0.0));
}

#[test]
fn balanced_flow_is_neutral() {
    // Pressure and delta come from the same sided sums, so they cannot disagree in sign;
    // the predecessor's "80% buy but CVD −1500 → BUY" case cannot arise.
    let p = AggressionParams::default();
    let a = aggression(&[bar(100.0, 50.0, 50.0)], Some(100.0), &p);
    assert_eq!((a.direction, a.bias, a.score), (FlowDirection::Neutral, 0.0, 0.0));
    let a = aggression(&[bar(100.0, 45.0, 55.0)], Some(100.0), &p);
    assert_eq!(a.direction, FlowDirection::Neutral);
    let a = aggression(&[bar(100.0, 30.0, 70.0)], Some(100.0), &p);
    assert_eq!(a.direction, FlowDirection::Sell);
}

fn flow_bar() -> impl Strategy<Value = FlowBar> {
    (0u32..10_000, 0u32..=100, 0u32..=100).prop_map(|(v, b, s)| {
        let v = v as f64;
        let b = v * b as f64 / 100.0;
        let s = (v - b) * s as f64 / 100.0;
        FlowBar { volume: v, buy: b, sell: s }
    })
}

proptest! {
    #[test]
    fn aggression_is_scale_free(w in prop::collection::vec(flow_bar(), 1..10), avg in 1u32..10_000) {
        let p = AggressionParams::default();
        let a = aggression(&w, Some(avg as f64), &p);
        let scaled: Vec<FlowBar> =
            w.iter().map(|b| bar(b.volume * 100.0, b.buy * 100.0, b.sell * 100.0)).collect();
        let b = aggression(&scaled, Some(avg as f64 * 100.0), &p);
        prop_assert!((a.score - b.score).abs() < 1e-9);
        prop_assert!((a.bias - b.bias).abs() < 1e-9);
        prop_assert!((0.0..=100.0).contains(&a.score));
        prop_assert!((-1.0..=1.0).contains(&a.bias));
    }

    #[test]
    fn direction_is_symmetric(
        w in prop::collection::vec(flow_bar(), 1..10),
        avg in prop::option::of(0u32..10_000),
    ) {
        let p = AggressionParams::default();
        let avg = avg.map(f64::from);
        let a = aggression(&w, avg, &p);
        let mirrored: Vec<FlowBar> = w.iter().map(|b| bar(b.volume, b.sell, b.buy)).collect();
        let b = aggression(&mirrored, avg, &p);
        prop_assert_eq!(a.score, b.score);
        prop_assert_eq!(a.bias, -b.bias);
        let flipped = match a.direction {
            FlowDirection::Buy => FlowDirection::Sell,
            FlowDirection::Sell => FlowDirection::Buy,
            FlowDirection::Neutral => FlowDirection::Neutral,
        };
        prop_assert_eq!(b.direction, flipped);
    }

    #[test]
    fn state_is_symmetric(
        price in 95.0f64..105.0,
        mom in prop::option::of(-2.0f64..2.0),
        pr in -100.0f64..100.0,
    ) {
        let p = StateParams::default();
        let up = classify(&StateInput { price, value_area: va(), momentum_pct: mom, pressure: pr }, &p);
        let down = classify(
            &StateInput {
                price: 200.0 - price,
                value_area: va(),
                momentum_pct: mom.map(|m| -m),
                pressure: -pr,
            },
            &p,
        );
        let mirrored = match up.state {
            MarketState::ImbalanceUp => MarketState::ImbalanceDown,
            MarketState::ImbalanceDown => MarketState::ImbalanceUp,
            MarketState::Balance => MarketState::Balance,
        };
        prop_assert_eq!(down.state, mirrored);
        prop_assert_eq!(down.confidence, up.confidence);
        prop_assert!((0.0..=100.0).contains(&up.confidence));
    }
}

#[test]
fn lvn_proximity_reports_the_nearest_within_range() {
    let lvns = [99.0, 100.05, 99.95, 101.0];
    let n = nearest_lvn(100.0, &lvns, 0.1).unwrap();
    assert_eq!(n.lvn, 99.95); // tie with 100.05 goes to the lower
    assert!(!n.above);
    assert!((n.distance_pct - 0.05).abs() < 1e-9);
    let n = nearest_lvn(100.02, &lvns, 0.1).unwrap();
    assert_eq!((n.lvn, n.above), (100.05, true));
    assert_eq!(nearest_lvn(100.0, &[99.0, 101.0], 0.1), None);
    assert_eq!(nearest_lvn(100.0, &[], 0.1), None);
}

#[test]
fn durations_per_state() {
    use MarketState::*;
    let pts = [
        (0, Balance),
        (60, Balance),
        (120, ImbalanceUp),
        (180, ImbalanceUp),
        (240, Balance),
        (300, ImbalanceDown),
    ];
    let d = time_in_states(&pts, Some(360));
    assert_eq!((d.balance, d.imbalance_up, d.imbalance_down), (180, 120, 60));
    assert_eq!(d.total(), 360);
    assert_eq!(d.get(ImbalanceUp), 120);
    // Without an end the last point lasts nothing; order of input does not matter.
    let mut shuffled = pts;
    shuffled.reverse();
    let d = time_in_states(&shuffled, None);
    assert_eq!((d.balance, d.imbalance_up, d.imbalance_down), (180, 120, 0));
    assert_eq!(time_in_states(&[], Some(10)), StateDurations::default());
}
