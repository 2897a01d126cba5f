use super::*;
use crate::candle::TradeError;
use proptest::prelude::*;

fn prof(tick: f64, trades: &[(f64, f64)]) -> Profile {
    Profile::from_trades(tick, 1, trades.iter().map(|&(p, s)| (p, s, Side::Unknown))).unwrap()
}

/// The predecessor's fixture.
fn bell() -> Profile {
    prof(0.01, &[(1.00, 10.0), (1.01, 20.0), (1.02, 30.0), (1.03, 20.0), (1.04, 10.0)])
}

fn va(p: &Profile, pct: f64, m: VaMethod) -> (f64, f64, f64) {
    let v = p.value_area(pct, m).unwrap();
    (v.val, v.vah, v.volume)
}

#[test]
fn grid_bins_on_integer_ticks_and_prices_rows_by_their_lowest_tick() {
    let p = Profile::new(0.25, 4).unwrap();
    assert_eq!([100.0, 100.25, 100.5, 100.75, 100.85].map(|x| p.row_of(x)), [100; 5]);
    assert_eq!(p.row_of(101.0), 101);
    assert_eq!(p.row_price(101), 101.0);
    // Euclidean: tick -1 is in row -1 whose lowest tick is -4.
    assert_eq!(p.row_of(-0.3), -1);
    assert_eq!(p.row_price(-1), -1.0);
    assert_eq!(p.row_of(-0.1), 0);

    let p = Profile::new(0.1, 1).unwrap();
    assert_eq!(p.row_price(3), 0.3);
    assert_ne!(3.0 * 0.1, 0.3);
    let p = Profile::new(0.01, 5).unwrap();
    assert_eq!(p.row_of(1.0249), 20);
    assert_eq!(p.row_price(20), 1.0);
    // A tick with no short decimal form falls back to multiplication.
    let third = Profile::new(1.0 / 3.0, 1).unwrap();
    assert_eq!(third.row_of(third.row_price(7)), 7);
}

#[test]
fn bad_grid_and_bad_trades_are_refused_naming_the_value() {
    assert!(Profile::new(0.0, 1).unwrap_err().to_string().contains("tick_size must be"));
    assert!(Profile::new(f64::NAN, 1).unwrap_err().to_string().contains("NaN"));
    assert!(Profile::new(0.01, 0).unwrap_err().to_string().contains("ticks_per_row"));
    let mut p = Profile::new(0.01, 1).unwrap();
    assert!(matches!(p.add(-1.0, 1.0, Side::Buy), Err(ProfileError::Trade(TradeError::NonPositivePrice(_)))));
    assert!(p.add(1.0, -2.0, Side::Buy).unwrap_err().to_string().contains("-2"));
    let e = p.add(1e300, 1.0, Side::Buy).unwrap_err();
    assert!(matches!(e, ProfileError::PriceOutOfRange { .. }), "{e}");
    assert!(p.is_empty());
}

#[test]
fn levels_split_volume_by_side() {
    let mut p = Profile::new(0.01, 1).unwrap();
    for (price, size, side) in
        [(1.0, 5.0, Side::Buy), (1.0, 3.0, Side::Sell), (1.0, 2.0, Side::Unknown), (1.01, 7.0, Side::Sell)]
    {
        p.add(price, size, side).unwrap();
    }
    let l = p.levels();
    assert_eq!(l[0], (1.0, Level::of(5.0, 3.0, 2.0, 3)));
    assert_eq!(l[1], (1.01, Level::of(0.0, 7.0, 0.0, 1)));
    assert_eq!((p.total_volume(), p.delta(), p.trades()), (17.0, -5.0, 4));
    assert_eq!((p.buy_volume(), p.sell_volume()), (5.0, 10.0));
    assert_eq!(p.level_at(1.0).unwrap().total(), 10.0);
    assert_eq!(p.range(), Some((1.0, 1.01)));
}

#[test]
fn predecessor_fixture() {
    let p = bell();
    assert_eq!(p.poc(), Some(1.02));
    // One row at a time: 30; above 20 = below 20, a tie goes up: 50 (1.02-1.03); above 10 <
    // below 20: 70 >= 63 = 0.7 × 90.
    assert_eq!(va(&p, 0.7, VaMethod::Single), (1.01, 1.03, 70.0));
    // By pairs: 30; above 20+10 = below 20+10, a tie goes up: 60 < 63; only the pair below
    // is left: 90. Adding whole pairs is why the Dalton area is wider on so few rows.
    assert_eq!(va(&p, 0.7, VaMethod::Dalton), (1.00, 1.04, 90.0));
    assert_eq!(p.hvns(&NodeParams::default()), vec![1.02]);
    assert!(p.lvns(&NodeParams::default()).is_empty());
}

#[test]
fn value_area_tie_goes_up() {
    // {1.00:20, 1.01:30, 1.02:20}: 30, then 20 above = 20 below, up: 50 >= 49.
    let p = prof(0.01, &[(1.00, 20.0), (1.01, 30.0), (1.02, 20.0)]);
    for m in VaMethod::ALL {
        assert_eq!(va(&p, 0.7, m), (1.01, 1.02, 50.0));
    }
}

#[test]
fn dalton_value_area_worked_step_by_step() {
    // row:  100 101 102 103 104 105 106 107 108 109 110    (tick 1, price = row)
    // volume: 4   6  10  25  30  45  50  10  20  12   8    total 220, 70% = 154
    //
    // Dalton: start at the POC, row 106: 50.
    //   above 107+108 = 30, below 105+104 = 75 -> below:  125, rows 104..=106
    //   above 107+108 = 30, below 103+102 = 35 -> below:  160 >= 154, rows 102..=106. Stop.
    // Single: start at 106: 50.
    //   107 (10) < 105 (45) -> 95; 107 (10) < 104 (30) -> 125; 107 (10) < 103 (25) -> 150;
    //   107 (10) = 102 (10) -> tie, up: 160 >= 154, rows 103..=107.
    let vols = [4.0, 6.0, 10.0, 25.0, 30.0, 45.0, 50.0, 10.0, 20.0, 12.0, 8.0];
    let trades: Vec<(f64, f64)> = vols.iter().enumerate().map(|(i, &v)| (100.0 + i as f64, v)).collect();
    let p = prof(1.0, &trades);
    assert_eq!(p.poc(), Some(106.0));
    let d = p.value_area(0.7, VaMethod::Dalton).unwrap();
    assert_eq!((d.val, d.vah, d.volume), (102.0, 106.0, 160.0));
    assert_eq!(d.pct_of_total, 160.0 / 220.0);
    assert_eq!(va(&p, 0.7, VaMethod::Single), (103.0, 107.0, 160.0));
    // The whole range at 100%.
    assert_eq!(va(&p, 1.0, VaMethod::Dalton), (100.0, 110.0, 220.0));
}

#[test]
fn poc_ties_go_to_the_centre_then_down() {
    // Rows 100..=105, centre 102.5: of the 30s, 102 (0.5 away) beats 100 and 105 (2.5).
    let p = prof(0.01, &[(1.0, 30.0), (1.01, 10.0), (1.02, 30.0), (1.03, 10.0), (1.04, 10.0), (1.05, 30.0)]);
    assert_eq!(p.poc(), Some(1.02));
    // Rows 100..=102, centre 101: 100 and 102 are equidistant, the lower wins.
    let p = prof(0.01, &[(1.0, 30.0), (1.01, 10.0), (1.02, 30.0)]);
    assert_eq!(p.poc(), Some(1.0));
    // Zero-size prints do not move the centre.
    let mut p = prof(0.01, &[(1.0, 30.0), (1.01, 10.0), (1.02, 30.0), (1.03, 30.0)]);
    assert_eq!(p.poc(), Some(1.02));
    p.add(5.0, 0.0, Side::Buy).unwrap();
    assert_eq!(p.poc(), Some(1.02));
    assert_eq!(p.range(), Some((1.0, 1.03)));
}

#[test]
fn value_area_walks_over_empty_rows() {
    // A stray print a million rows away: the walk jumps the gap instead of crawling it.
    // At 80%: 50; above 1.02+1.03 = 10 = below 1.00 (the edge), up: 60 >= 56.8. The pair
    // ends on the empty row 1.03, so VAH is the last traded row, 1.02.
    let p = prof(0.01, &[(1.0, 10.0), (1.01, 50.0), (1.02, 10.0), (10_001.0, 1.0)]);
    assert_eq!(va(&p, 0.8, VaMethod::Dalton), (1.01, 1.02, 60.0));
    for m in VaMethod::ALL {
        assert_eq!(va(&p, 1.0, m), (1.0, 10_001.0, 71.0));
    }
    // Empty rows count as zero: {1:40, 2:-, 3:-, 4:100, 5:10, 6:10}, Dalton 80% of 160 = 128:
    // 100; above 5+6 = 20 > below 3+2 = 0 -> 120; nothing above, below 3+2 = 0 is skipped,
    // then below only row 1 is left: 40 -> 160.
    let p = prof(1.0, &[(1.0, 40.0), (4.0, 100.0), (5.0, 10.0), (6.0, 10.0)]);
    assert_eq!(va(&p, 0.8, VaMethod::Dalton), (1.0, 6.0, 160.0));
    // Single: 100; 10 > 0 -> 110; 10 > 0 -> 120; down through rows 3, 2 (zero), then 1: 160.
    assert_eq!(va(&p, 0.8, VaMethod::Single), (1.0, 6.0, 160.0));
}

#[test]
fn value_area_rejects_bad_pct_and_empty_profiles() {
    let p = bell();
    for pct in [0.0, -0.1, 1.5, 70.0, f64::NAN] {
        assert!(p.value_area(pct, VaMethod::Dalton).is_none());
        assert!(matches!(p.try_value_area(pct, VaMethod::Dalton), Err(ProfileError::BadParameter { .. })));
    }
    assert!(p.try_value_area(70.0, VaMethod::Single).unwrap_err().to_string().contains("0.7 means 70%"));
    let empty = Profile::new(0.01, 1).unwrap();
    assert_eq!(empty.try_value_area(0.7, VaMethod::Dalton), Ok(None));
    assert_eq!((empty.poc(), empty.total_volume()), (None, 0.0));
    let zero = prof(0.01, &[(1.0, 0.0)]);
    assert_eq!((zero.poc(), zero.value_area(0.7, VaMethod::Dalton)), (None, None));
}

#[test]
fn method_names_parse_and_errors_list_the_valid_ones() {
    assert_eq!("dalton".parse::<VaMethod>(), Ok(VaMethod::Dalton));
    assert_eq!(" Single ".parse::<VaMethod>(), Ok(VaMethod::Single));
    let e = "cbot".parse::<VaMethod>().unwrap_err().to_string();
    assert_eq!(e, "unknown value-area method 'cbot' (valid: dalton, single)");
    assert_eq!(VaMethod::Single.to_string(), "single");
}

#[test]
fn merge_refuses_other_grids() {
    let mut a = Profile::new(0.01, 1).unwrap();
    let e = a.merge(&Profile::new(0.05, 2).unwrap()).unwrap_err().to_string();
    assert!(e.contains("0.01 × 1") && e.contains("0.05 × 2"), "{e}");
    assert!(a.check_grid(0.01, 1).is_ok());
}

/// Gaussian bumps (modes at row c, height h) on rows priced 1..=60, with optional
/// deterministic jitter of ± jitter / 2.
fn bumps(modes: &[(f64, f64)], jitter: f64) -> Profile {
    let mut seed = 12345u64;
    let trades: Vec<(f64, f64)> = (0..60)
        .map(|r| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let noise = 1.0 + jitter * (((seed >> 33) as f64 / (1u64 << 31) as f64) - 0.5);
            let v: f64 = modes.iter().map(|&(c, h)| h * (-((r as f64 - c) / 5.0).powi(2) / 2.0).exp()).sum();
            (1.0 + r as f64, ((5.0 + v) * noise).round())
        })
        .collect();
    prof(1.0, &trades)
}

#[test]
fn bimodal_profile_has_two_hvns_and_one_lvn_between() {
    let np = NodeParams::default();
    for jitter in [0.0, 0.3] {
        let p = bumps(&[(15.0, 400.0), (42.0, 300.0)], jitter);
        let n = p.nodes(&np).unwrap();
        assert_eq!(n.hvns.len(), 2, "jitter {jitter}: {n:?}");
        assert!((n.hvns[0] - 16.0).abs() <= 2.0 && (n.hvns[1] - 43.0).abs() <= 2.0, "{n:?}");
        assert_eq!(n.lvns.len(), 1, "{n:?}");
        assert!((26.0..=34.0).contains(&n.lvns[0]), "{n:?}");
    }
    // A single bell, or a flat profile, has no LVN; the flat one not even an HVN.
    let p = bumps(&[(30.0, 400.0)], 0.3);
    assert_eq!((p.hvns(&np).len(), p.lvns(&np).len()), (1, 0));
    let flat = prof(1.0, &(1..40).map(|r| (r as f64, 100.0)).collect::<Vec<_>>());
    assert_eq!(flat.nodes(&np).unwrap(), Nodes::default());
}

#[test]
fn lvn_in_an_empty_gap_is_its_middle_row() {
    // Two bells on rows 1..=5 and 26..=30 with nothing between: the trough is flat at zero,
    // so the LVN is the empty row nearest the midpoint 15.5 of the HVNs, the lower of 15, 16.
    let mut t = Vec::new();
    for base in [1, 26] {
        for (i, v) in [10.0, 30.0, 60.0, 30.0, 10.0].into_iter().enumerate() {
            t.push(((base + i) as f64, v));
        }
    }
    let p = prof(1.0, &t);
    let n = p.nodes(&NodeParams { smooth_rows: 1, ..NodeParams::default() }).unwrap();
    assert_eq!(n.hvns, vec![3.0, 28.0]);
    assert_eq!(n.lvns, vec![15.0]);
}

#[test]
fn node_params_are_checked() {
    let p = bell();
    for bad in [
        NodeParams { smooth_rows: 0, ..NodeParams::default() },
        NodeParams { lvn_ratio: 2.0, ..NodeParams::default() },
        NodeParams { hvn_ratio: f64::NAN, ..NodeParams::default() },
        NodeParams { min_prominence: -0.1, ..NodeParams::default() },
    ] {
        assert!(matches!(p.nodes(&bad), Err(ProfileError::BadParameter { .. })));
        assert!(p.hvns(&bad).is_empty());
    }
}

/// The version 1 form (volumes as doubles), as the previous release wrote it.
fn v1_bytes(p: &Profile) -> Vec<u8> {
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

#[test]
fn bytes_round_trip_and_version_is_checked() {
    let mut p = bell();
    p.add(0.99, 3.0, Side::Buy).unwrap();
    p.add(1.05, 0.1, Side::Sell).unwrap();
    p.add(1.05, 0.2, Side::Sell).unwrap();
    let b = p.to_bytes();
    assert_eq!(b[0], Profile::VERSION);
    assert_eq!(Profile::from_bytes(&b).unwrap(), p);
    assert_eq!(
        Profile::from_bytes(&Profile::new(0.5, 3).unwrap().to_bytes()).unwrap(),
        Profile::new(0.5, 3).unwrap()
    );

    let mut bad = b.clone();
    bad[0] = 9;
    assert_eq!(
        Profile::from_bytes(&bad).unwrap_err().to_string(),
        "profile: unsupported version 9 (this build reads 1 to 2)"
    );
    assert!(Profile::from_bytes(&[]).is_err());
    assert!(Profile::from_bytes(&b[..b.len() - 1]).unwrap_err().to_string().contains("input ends"));
    let mut long = b.clone();
    long.push(0);
    assert!(Profile::from_bytes(&long).unwrap_err().to_string().contains("rows announced"));
    // A row count far beyond the bytes is refused before anything is allocated for it.
    let mut many = b.clone();
    many[13..21].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(Profile::from_bytes(&many).unwrap_err().to_string().contains("rows announced"));
    // The first row's sell sum, zero, made negative zero: not canonical. The row (0.99) is its
    // number and trade count, then buy 3 = 3 × 2^112 in three bytes, then sell.
    let h = Profile::HEADER_LEN;
    let mut sum = b.clone();
    assert_eq!(&sum[h + 16..h + 20], &[1, 14, 3, 0]);
    sum[h + 19] = 0x80;
    assert!(Profile::from_bytes(&sum).unwrap_err().to_string().contains("row 99: exact sum: negative zero"));
    assert_eq!(BarProfile::from_bytes(&sum).unwrap_err(), Profile::from_bytes(&sum).unwrap_err());
    assert_eq!(BarProfile::from_bytes(&bad).unwrap_err(), Profile::from_bytes(&bad).unwrap_err());
    let other_grid = BarProfile::from(&Profile::new(0.05, 1).unwrap());
    assert!(BarProfile::from(&p).merge(&other_grid).unwrap_err().to_string().contains("different grids"));
    // A bad grid.
    let mut grid = b;
    grid[1..9].copy_from_slice(&0.0f64.to_le_bytes());
    assert!(Profile::from_bytes(&grid).unwrap_err().to_string().contains("tick_size"));
}

#[test]
fn version_1_bytes_read_back_as_stored() {
    // Volumes summed as doubles (0.1 + 0.2 at 1.05), as version 1 stored them.
    let mut p = bell();
    p.add(1.05, 0.1, Side::Sell).unwrap();
    p.add(1.05, 0.2, Side::Sell).unwrap();
    let b = v1_bytes(&p);
    let old = Profile::from_bytes(&b).unwrap();
    assert_eq!(old.levels(), p.levels(), "every stored double reads back as it was");
    assert_ne!(old, p, "the exact 0.1 + 0.2 is not a double: what was stored is what is read");
    assert_eq!(BarProfile::from_bytes(&b).unwrap(), BarProfile::from(&p));
    // Written again it is version 2, the same profile.
    assert_eq!(Profile::from_bytes(&old.to_bytes()).unwrap(), old);

    let (h, r) = (Profile::HEADER_LEN, Profile::V1_ROW_LEN);
    assert!(Profile::from_bytes(&b[..b.len() - 1]).unwrap_err().to_string().contains("rows announced"));
    // Swap the first two rows: out of order.
    let mut swapped = b.clone();
    let first: Vec<u8> = swapped[h..h + r].to_vec();
    swapped.copy_within(h + r..h + 2 * r, h);
    swapped[h + r..h + 2 * r].copy_from_slice(&first);
    assert!(Profile::from_bytes(&swapped).unwrap_err().to_string().contains("ascending"));
    assert_eq!(BarProfile::from_bytes(&swapped).unwrap_err(), Profile::from_bytes(&swapped).unwrap_err());
    // A negative, a NaN and an out-of-range volume.
    for v in [-1.0f64, f64::NAN, 1e30] {
        let mut neg = b.clone();
        neg[h + 8..h + 16].copy_from_slice(&v.to_le_bytes());
        assert!(Profile::from_bytes(&neg).unwrap_err().to_string().contains("finite and >= 0"), "{v}");
    }
}

#[test]
fn sums_are_exact_and_out_of_range_is_refused() {
    // 0.1 + 0.2 and 0.2 + 0.1 at one row: the same bits.
    let a =
        Profile::from_trades(0.01, 1, [(1.0, 0.1, Side::Buy), (1.0, 0.2, Side::Buy), (1.0, 0.3, Side::Sell)])
            .unwrap();
    let b =
        Profile::from_trades(0.01, 1, [(1.0, 0.3, Side::Sell), (1.0, 0.2, Side::Buy), (1.0, 0.1, Side::Buy)])
            .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.to_bytes(), b.to_bytes());
    assert_eq!((a.total_volume(), a.buy_volume(), a.sell_volume()), (0.6, 0.30000000000000004, 0.3));
    let l = a.level_at(1.0).unwrap();
    assert_eq!((l.total(), l.buy, l.sell), (0.6, 0.30000000000000004, 0.3));
    assert_eq!(l.delta(), a.delta());
    let mut p = Profile::new(0.01, 1).unwrap();
    p.add(1.0, 5e23, Side::Buy).unwrap();
    let e = p.add(2.0, 2e23, Side::Sell).unwrap_err();
    assert!(matches!(e, ProfileError::SumOutOfRange { .. }), "{e}");
    assert!(e.to_string().contains("2^79"), "{e}");
    assert_eq!(p.row_count(), 1, "a refused trade adds nothing");
    assert!(p.clone().merge(&p).is_err());
}

#[test]
fn text_form_carries_the_exact_sums() {
    let p = Profile::from_trades(
        0.01,
        1,
        [(1.0, 0.1, Side::Buy), (1.0, 0.2, Side::Buy), (1.01, 2.0, Side::Sell)],
    )
    .unwrap();
    let json = serde_json::to_string(&p).unwrap();
    assert!(json.contains("\"buy\":0.30000000000000004"), "{json}");
    assert!(json.contains("\"exact\":{\"buy\":\"0x0.4cccccccccccce\"}"), "{json}");
    assert_eq!(json.matches("exact").count(), 1, "only the inexact sum is spelled out: {json}");
    assert_eq!(serde_json::from_str::<Profile>(&json).unwrap(), p);
    // The previous form (no exact part) reads as exact numbers.
    let old = r#"{"tick_size":0.01,"ticks_per_row":1,"rows":[[100,{"buy":1.5,"sell":0.0,"unknown":0.0,"trades":2}]]}"#;
    let q = serde_json::from_str::<Profile>(old).unwrap();
    assert_eq!((q.total_volume(), q.trades()), (1.5, 2));
    let wrong = json.replace("\"buy\":0.30000000000000004", "\"buy\":0.3");
    let e = serde_json::from_str::<Profile>(&wrong).unwrap_err().to_string();
    assert!(e.contains("row 100: buy 0.3 is not its exact value"), "{e}");
}

#[test]
fn rebinning_is_exact() {
    let trades =
        [(1.0, 0.1, Side::Buy), (1.01, 0.2, Side::Buy), (1.02, 0.3, Side::Sell), (1.07, 1.5, Side::Unknown)];
    let fine = Profile::from_trades(0.01, 1, trades).unwrap();
    assert_eq!(fine.rebinned(5).unwrap(), Profile::from_trades(0.01, 5, trades).unwrap());
    assert_eq!(fine.rebinned(1).unwrap(), fine);
    assert!(fine.rebinned(0).is_err());
    assert!(Profile::from_trades(0.01, 2, trades)
        .unwrap()
        .rebinned(5)
        .unwrap_err()
        .to_string()
        .contains("multiple"));
}

/// Found by the `profile_binary` and `profile_text` fuzz targets: stored trade counts near
/// i64::MAX overflowed when summed or merged (a panic in debug builds, a wrapped count in
/// release).
#[test]
fn decoded_trade_counts_saturate() {
    let p = bell();
    let mut b = v1_bytes(&p);
    let (h, r) = (Profile::HEADER_LEN, Profile::V1_ROW_LEN);
    for row in 0..p.row_count() {
        b[h + row * r + 32..h + row * r + 40].copy_from_slice(&i64::MAX.to_le_bytes());
    }
    let mut big = Profile::from_bytes(&b).unwrap();
    assert_eq!(big.trades(), i64::MAX);
    big.merge(&big.clone()).unwrap();
    big.add(1.0, 1.0, Side::Buy).unwrap();
    assert_eq!(big.trades(), i64::MAX);
    assert!(big.levels().iter().all(|(_, l)| l.trades == i64::MAX));
    assert_eq!(Profile::from_bytes(&big.to_bytes()).unwrap().trades(), i64::MAX);
    let json = serde_json::to_string(&big).unwrap();
    assert_eq!(serde_json::from_str::<Profile>(&json).unwrap().trades(), i64::MAX);
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell), Just(Side::Unknown)]
}

/// Trades on a 0.01 grid, mostly near 1.00-1.60 with the odd print far away.
fn trade() -> impl Strategy<Value = (f64, f64, Side)> {
    (prop_oneof![9 => 100i64..160, 1 => 1i64..100_000], 0u32..100, side())
        .prop_map(|(t, s, side)| (t as f64 / 100.0, s as f64, side))
}

fn build(trades: &[(f64, f64, Side)]) -> Profile {
    Profile::from_trades(0.01, 1, trades.iter().copied()).unwrap()
}

/// The value area the slow way: a dense array and one step per loop.
fn reference_va(p: &Profile, pct: f64, step: i64) -> Option<(i64, i64)> {
    let vols = p.volume_rows();
    let (min, max) = (vols.first()?.0, vols.last()?.0);
    let mut dense = vec![0.0; (max - min + 1) as usize];
    for (r, v) in &vols {
        dense[(r - min) as usize] = *v;
    }
    let at = |r: i64| dense[(r - min) as usize];
    let target = pct * vols.iter().map(|e| e.1).sum::<f64>();
    let (mut lo, mut hi) = (p.poc_row()?, p.poc_row()?);
    let mut vol = at(lo);
    while vol < target && (lo > min || hi < max) {
        let up: Vec<i64> = (hi + 1..=(hi + step).min(max)).collect();
        let down: Vec<i64> = ((lo - step).max(min)..lo).collect();
        let (us, ds) = (up.iter().map(|&r| at(r)).sum::<f64>(), down.iter().map(|&r| at(r)).sum::<f64>());
        if down.is_empty() || (!up.is_empty() && us >= ds) {
            hi += up.len() as i64;
            vol += us;
        } else {
            lo -= down.len() as i64;
            vol += ds;
        }
    }
    while at(lo) == 0.0 {
        lo += 1;
    }
    while at(hi) == 0.0 {
        hi -= 1;
    }
    Some((lo, hi))
}

proptest! {
    #[test]
    fn volume_is_conserved_across_levels(trades in prop::collection::vec(trade(), 0..80)) {
        let p = build(&trades);
        let sum = |side: Side| trades.iter().filter(|t| t.2 == side).map(|t| t.1).sum::<f64>();
        let levels = p.levels();
        prop_assert_eq!(levels.iter().map(|l| l.1.buy).sum::<f64>(), sum(Side::Buy));
        prop_assert_eq!(levels.iter().map(|l| l.1.sell).sum::<f64>(), sum(Side::Sell));
        prop_assert_eq!(levels.iter().map(|l| l.1.unknown).sum::<f64>(), sum(Side::Unknown));
        prop_assert_eq!(p.total_volume(), trades.iter().map(|t| t.1).sum::<f64>());
        prop_assert_eq!(p.trades(), trades.len() as i64);
        prop_assert!(levels.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn merge_of_parts_equals_whole(trades in prop::collection::vec(trade(), 0..80), cut in 0usize..80) {
        let cut = cut.min(trades.len());
        let mut merged = build(&trades[..cut]);
        merged.merge(&build(&trades[cut..])).unwrap();
        prop_assert_eq!(merged, build(&trades));
    }

    #[test]
    fn merge_is_associative_and_commutative(
        a in prop::collection::vec(trade(), 0..30),
        b in prop::collection::vec(trade(), 0..30),
        c in prop::collection::vec(trade(), 0..30),
    ) {
        let (pa, pb, pc) = (build(&a), build(&b), build(&c));
        let mut ab = pa.clone();
        ab.merge(&pb).unwrap();
        let mut ba = pb.clone();
        ba.merge(&pa).unwrap();
        prop_assert_eq!(&ab, &ba);
        let mut ab_c = ab;
        ab_c.merge(&pc).unwrap();
        let mut bc = pb;
        bc.merge(&pc).unwrap();
        let mut a_bc = pa;
        a_bc.merge(&bc).unwrap();
        prop_assert_eq!(ab_c, a_bc);
    }

    #[test]
    fn value_area_contains_poc_and_enough_volume(
        trades in prop::collection::vec(trade(), 1..80),
        pct in 0.05f64..=1.0,
        single in any::<bool>(),
    ) {
        let p = build(&trades);
        let m = if single { VaMethod::Single } else { VaMethod::Dalton };
        let Some(v) = p.value_area(pct, m) else {
            prop_assert_eq!(p.total_volume(), 0.0);
            return Ok(());
        };
        prop_assert!(v.val <= v.poc && v.poc <= v.vah);
        prop_assert_eq!(Some(v.poc), p.poc());
        let inside: f64 = p.levels().iter().filter(|l| l.0 >= v.val && l.0 <= v.vah).map(|l| l.1.total()).sum();
        prop_assert_eq!(inside, v.volume);
        prop_assert!(v.volume >= pct * p.total_volume());
        let (lo, hi) = reference_va(&p, pct, m.step()).unwrap();
        prop_assert_eq!((v.val, v.vah), (p.row_price(lo), p.row_price(hi)));
    }

    #[test]
    fn bytes_round_trip(trades in prop::collection::vec(trade(), 0..80), tpr in 1u32..7) {
        let p = Profile::from_trades(0.01, tpr, trades.iter().copied()).unwrap();
        prop_assert_eq!(Profile::from_bytes(&p.to_bytes()).unwrap(), p.clone());
        // A bar profile decoded from the bytes is the profile's reduction: row totals,
        // buy and sell volume.
        let bar = BarProfile::from_bytes(&p.to_bytes()).unwrap();
        prop_assert_eq!(&bar, &BarProfile::from(&p));
        let totals: Vec<(i64, f64)> = p.rows().iter().map(|(r, l)| (*r, l.total())).collect();
        prop_assert_eq!(bar.rows(), totals.as_slice());
        prop_assert_eq!((bar.buy_volume(), bar.sell_volume()), (p.buy_volume(), p.sell_volume()));
        // Merging two halves gives the rows of the whole (integer sizes: exact sums).
        let (a, b) = trades.split_at(trades.len() / 2);
        let mut merged = BarProfile::from(&Profile::from_trades(0.01, tpr, a.iter().copied()).unwrap());
        merged.merge(&BarProfile::from(&Profile::from_trades(0.01, tpr, b.iter().copied()).unwrap())).unwrap();
        prop_assert_eq!(merged.rows(), totals.as_slice());
    }

    #[test]
    fn a_row_price_bins_back_to_its_row(
        row in -1_000_000i64..1_000_000,
        tick in prop::sample::select(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 0.0001, 1e-8, 1.0 / 3.0, 0.3]),
        tpr in 1u32..10,
    ) {
        let p = Profile::new(tick, tpr).unwrap();
        prop_assert_eq!(p.row_of(p.row_price(row)), row);
    }
}

/// Trades with decimal sizes (three decimals, as crypto venues print them) on a 0.01 grid.
fn decimal_trade() -> impl Strategy<Value = (f64, f64, Side)> {
    (100i64..140, 0u32..50_000, side()).prop_map(|(t, s, side)| (t as f64 / 100.0, s as f64 / 1000.0, side))
}

proptest! {
    #[test]
    fn any_order_and_grouping_gives_the_same_bits(
        trades in prop::collection::vec(decimal_trade(), 0..80),
        seed in any::<u64>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
    ) {
        let whole = build(&trades);
        let mut v = trades.clone();
        let mut s = seed;
        for i in (1..v.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            v.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(v.len() + 1)).collect();
        bounds.extend([0, v.len()]);
        bounds.sort_unstable();
        let mut merged = Profile::new(0.01, 1).unwrap();
        for w in bounds.windows(2).rev() {
            merged.merge(&build(&v[w[0]..w[1]])).unwrap();
        }
        prop_assert_eq!(&merged, &whole);
        prop_assert_eq!(merged.to_bytes(), whole.to_bytes());
        prop_assert_eq!(serde_json::to_string(&merged).unwrap(), serde_json::to_string(&whole).unwrap());
        let readings = |p: &Profile| (p.total_volume().to_bits(), p.delta().to_bits(), p.poc(), p.value_area(0.7, VaMethod::Dalton));
        prop_assert_eq!(readings(&merged), readings(&whole));
        // The readings are the rounded exact sums of the sizes.
        let exact = |f: &dyn Fn(&(f64, f64, Side)) -> bool| trades.iter().filter(|t| f(t)).fold(ExactSum::ZERO, |a, t| a.checked_add(ExactSum::from_f64(t.1).unwrap()).unwrap());
        prop_assert_eq!(whole.total_volume(), exact(&|_| true).to_f64());
        prop_assert_eq!(whole.buy_volume(), exact(&|t| t.2 == Side::Buy).to_f64());
        prop_assert_eq!(BarProfile::from_bytes(&whole.to_bytes()).unwrap(), BarProfile::from(&whole));
    }
}
