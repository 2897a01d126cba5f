use super::*;
use proptest::prelude::*;

fn exact(x: f64) -> ExactSum {
    ExactSum::from_f64(x).unwrap()
}

fn sum(xs: &[f64]) -> ExactSum {
    xs.iter().fold(ExactSum::ZERO, |acc, &x| acc.checked_add(exact(x)).unwrap())
}

/// The correctly rounded sum by Shewchuk's partials (the algorithm of Python's `math.fsum`):
/// an independent reference for the fixed-point sum and its rounding.
fn fsum(xs: &[f64]) -> f64 {
    let mut partials: Vec<f64> = Vec::new();
    for &value in xs {
        let mut x = value;
        let mut i = 0;
        for j in 0..partials.len() {
            let mut y = partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                partials[i] = lo;
                i += 1;
            }
            x = hi;
        }
        partials.truncate(i);
        partials.push(x);
    }
    let mut n = partials.len();
    if n == 0 {
        return 0.0;
    }
    n -= 1;
    let mut hi = partials[n];
    let mut lo = 0.0;
    while n > 0 {
        let x = hi;
        n -= 1;
        let y = partials[n];
        hi = x + y;
        lo = y - (hi - x);
        if lo != 0.0 {
            break;
        }
    }
    if n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0)) {
        let y = lo * 2.0;
        let x = hi + y;
        if y == x - hi {
            hi = x;
        }
    }
    hi
}

#[test]
fn decimal_sizes_sum_to_the_nearest_double_in_any_order() {
    let xs = [0.1, 0.2, 0.3];
    assert_ne!(0.1 + 0.2 + 0.3, 0.3 + 0.2 + 0.1, "floating-point addition depends on the order");
    assert_eq!(sum(&xs).to_f64(), 0.6);
    assert_eq!(sum(&[0.3, 0.2, 0.1]), sum(&xs));
    // 1e16 + 1 - 1e16 loses the 1 in floating point, not here.
    assert_eq!(sum(&[1e16, 1.0, -1e16]).to_f64(), 1.0);
}

#[test]
fn rounding_is_to_nearest_ties_to_even() {
    let two53 = 9_007_199_254_740_992.0;
    // 2^53 + 1 lies halfway between 2^53 and 2^53 + 2: the even one wins.
    assert_eq!(sum(&[two53, 1.0]).to_f64(), two53);
    assert_eq!(sum(&[two53, 3.0]).to_f64(), two53 + 4.0);
    // Just above halfway rounds up: a sticky bit far below the kept ones counts.
    assert_eq!(sum(&[two53, 1.0, 1e-30]).to_f64(), two53 + 2.0);
    assert_eq!(sum(&[-two53, -1.0, -1e-30]).to_f64(), -two53 - 2.0);
    // The same far below 2^-60: terms are rounded to 2^-112 on the way in, ties to even.
    let unit = 2f64.powi(-112);
    assert_eq!(exact(unit / 2.0), ExactSum::ZERO);
    assert_eq!(exact(1.5 * unit), exact(2.0 * unit));
    assert_eq!(exact(2.5 * unit), exact(2.0 * unit));
    assert_eq!(exact(-1.5 * unit), exact(-2.0 * unit));
    assert_eq!(exact(f64::MIN_POSITIVE), ExactSum::ZERO);
    assert_eq!(exact(-0.0), ExactSum::ZERO);
}

#[test]
fn the_range_is_checked() {
    let limit = MAX_MAGNITUDE;
    assert_eq!(limit, 2f64.powi(79));
    assert_eq!(ExactSum::from_f64(limit), Err(SumOverflow));
    assert_eq!(ExactSum::from_f64(-limit), Err(SumOverflow));
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MAX] {
        assert_eq!(ExactSum::from_f64(bad), Err(SumOverflow));
    }
    let below = f64::from_bits(limit.to_bits() - 1);
    let big = exact(below);
    assert_eq!(big.to_f64(), below);
    assert_eq!(exact(-below).to_f64(), -below);
    assert_eq!(big.checked_add(big), Err(SumOverflow));
    assert_eq!(exact(-below).checked_add(exact(-below)), Err(SumOverflow));
    assert_eq!(big.checked_add(exact(-below)), Ok(ExactSum::ZERO));
    assert!(SumOverflow.to_string().contains("2^79"));
}

#[test]
fn binary_form_is_compact_and_canonical() {
    for v in [0.0, 1.0, 91.569, -27.141, 1e-18, 3e20, 0.001] {
        let s = exact(v);
        let mut b = Vec::new();
        s.write(&mut b);
        let mut at = 0;
        assert_eq!(ExactSum::read(&b, &mut at), Ok(s), "{v}");
        assert_eq!(at, b.len());
    }
    let mut b = Vec::new();
    ExactSum::ZERO.write(&mut b);
    assert_eq!(b, [0]);
    b.clear();
    exact(1.0).write(&mut b);
    assert_eq!(b, [1, 14, 1], "2^112: one byte at position 14");
    let read = |b: &[u8]| ExactSum::read(b, &mut 0);
    assert!(read(&[]).unwrap_err().contains("ends"));
    assert!(read(&[0x80]).unwrap_err().contains("negative zero"));
    assert!(read(&[2, 3, 1]).unwrap_err().contains("ends inside"));
    assert!(read(&[2, 3, 0, 1]).unwrap_err().contains("not canonical"));
    assert!(read(&[2, 3, 1, 0]).unwrap_err().contains("not canonical"));
    assert!(read(&[2, 23, 1, 1]).unwrap_err().contains("do not fit"));
    assert!(read(&[1, 23, 0x80]).unwrap_err().contains("beyond the range"));
}

#[test]
fn text_form_is_hexadecimal_fixed_point() {
    assert_eq!(exact(91.5).to_string(), "0x5b.8");
    assert_eq!(exact(-2.0).to_string(), "-0x2");
    assert_eq!(ExactSum::ZERO.to_string(), "0x0");
    assert_eq!(exact(0.1).to_string(), "0x0.1999999999999a");
    assert_eq!("0x05b.80".parse::<ExactSum>(), Ok(exact(91.5)));
    for bad in ["", "5b", "0x", "0x.8", "0xg", "0x1.8.0", "0x1.00000000000000000000000000001"] {
        assert!(bad.parse::<ExactSum>().is_err(), "{bad}");
    }
    assert!("0x80000000000000000000".parse::<ExactSum>().unwrap_err().contains("2^79"));
    assert!("0x7ffffffffffffffffffff".parse::<ExactSum>().is_err());
    assert!("0x7fffffffffffffffffff".parse::<ExactSum>().is_ok());
}

/// Doubles across the whole exact range, positive and negative, of any bit pattern.
fn term() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-1e9f64..1e9),
        (0u64..1_000_000).prop_map(|n| n as f64 / 1000.0),
        any::<f64>().prop_filter("in range", |x| x.is_finite() && x.abs() < 1e23 && x.abs() > 1e-18),
    ]
}

proptest! {
    #[test]
    fn doubles_convert_exactly(x in term()) {
        prop_assert_eq!(exact(x).to_f64().to_bits(), x.to_bits());
        prop_assert!(exact(x).is_exact_f64());
        let text = exact(x).to_string();
        prop_assert_eq!(text.parse::<ExactSum>(), Ok(exact(x)));
    }

    #[test]
    fn sums_are_correctly_rounded(xs in prop::collection::vec(term(), 0..40)) {
        prop_assert_eq!(sum(&xs).to_f64().to_bits(), fsum(&xs).to_bits());
    }

    #[test]
    fn any_order_and_grouping_gives_the_same_bits(
        xs in prop::collection::vec(term(), 1..40),
        seed in any::<u64>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        // A shuffled copy, cut into groups summed separately and then merged in reverse.
        let mut shuffled = xs.clone();
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(shuffled.len() + 1)).collect();
        bounds.extend([0, shuffled.len()]);
        bounds.sort_unstable();
        let parts: Vec<ExactSum> = bounds.windows(2).map(|w| sum(&shuffled[w[0]..w[1]])).collect();
        let merged = parts.iter().rev().fold(ExactSum::ZERO, |acc, p| acc.checked_add(*p).unwrap());
        prop_assert_eq!(merged, sum(&xs));
        prop_assert_eq!(merged.to_f64().to_bits(), sum(&xs).to_f64().to_bits());
    }

    #[test]
    fn binary_form_round_trips(xs in prop::collection::vec(term(), 0..10)) {
        let s = sum(&xs);
        let mut b = vec![7];
        s.write(&mut b);
        let mut at = 1;
        prop_assert_eq!(ExactSum::read(&b, &mut at), Ok(s));
        prop_assert_eq!(at, b.len());
        prop_assert_eq!(s.checked_sub(s), Ok(ExactSum::ZERO));
        prop_assert_eq!(s.to_string().parse::<ExactSum>(), Ok(s));
    }
}
