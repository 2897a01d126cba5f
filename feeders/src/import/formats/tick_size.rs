//! A symbol's tick size inferred from the prices of a file.
//!
//! Prices are read as the decimals they are (the shortest text that gives back the same
//! `f64`), so no floating-point remainder enters. The step is the greatest common divisor of
//! the prices on the finest decimal grid that holds at least [`COVERAGE`] of them; prices off
//! that grid (sub-penny prints of US equities, float noise in a converted file) are left out
//! rather than dragging the step down. The divisor is then rounded down to a decimal step
//! (1, 2, 2.5 or 5 times a power of ten), because a step such as 0.03 only means the sample
//! was short; a tick of that kind is always a divisor of the true one, so binning stays exact.
//!
//! US equities are the exception ([`us_equity`]): about a fifth of their trades print at
//! sub-penny prices (midpoint and average-price executions), which no coverage rule tells
//! from a finer grid, while their quotes follow Reg NMS Rule 612: 0.01, or 0.0001 under $1.

/// Share of the sampled prices that must lie on the grid the step is read from.
pub const COVERAGE: f64 = 0.99;

/// Most decimals considered: Databento's fixed-point prices have nine.
const MAX_DECIMALS: usize = 9;

/// The tick size of `prices` (positive and finite ones; others are ignored), or `None` when
/// there is none.
pub fn infer(prices: &[f64]) -> Option<f64> {
    // Each price as (digits, decimals) with trailing zeros dropped, e.g. 5528.75 -> (552875, 2).
    let decimals: Vec<(u128, usize)> =
        prices.iter().filter(|p| p.is_finite() && **p > 0.0).filter_map(|p| as_decimal(*p)).collect();
    if decimals.is_empty() {
        return None;
    }
    // The finest grid that holds COVERAGE of the prices.
    let mut per_scale = [0usize; MAX_DECIMALS + 2];
    for &(_, d) in &decimals {
        per_scale[d.min(MAX_DECIMALS + 1)] += 1;
    }
    let needed = (COVERAGE * decimals.len() as f64).ceil() as usize;
    let mut covered = 0;
    let mut scale = MAX_DECIMALS;
    for (d, n) in per_scale.iter().enumerate().take(MAX_DECIMALS + 1) {
        covered += n;
        if covered >= needed {
            scale = d;
            break;
        }
    }
    // The gcd of those prices in units of 10^-scale.
    let mut g: u128 = 0;
    for &(digits, d) in &decimals {
        // A price too large for u128 at this scale (no real one is) is left out.
        if d <= scale {
            if let Some(units) = digits.checked_mul(10u128.pow((scale - d) as u32)) {
                g = gcd(g, units);
            }
        }
    }
    if g == 0 {
        return None;
    }
    let step = round_down_to_decimal_step(g);
    Some(step as f64 / 10f64.powi(scale as i32))
}

/// The Reg NMS tick of a US equity from its prices: 0.0001 when most are under $1, else 0.01.
pub fn us_equity(prices: &[f64]) -> Option<f64> {
    let valid: Vec<f64> = prices.iter().copied().filter(|p| p.is_finite() && *p > 0.0).collect();
    if valid.is_empty() {
        return None;
    }
    let under_a_dollar = valid.iter().filter(|p| **p < 1.0).count();
    Some(if 2 * under_a_dollar > valid.len() { 0.0001 } else { 0.01 })
}

/// The largest 1, 2, 2.5 or 5 × 10^k (in the same units, an integer) that divides `g`.
fn round_down_to_decimal_step(g: u128) -> u128 {
    let mut best = 1;
    let mut power: u128 = 1;
    while power <= g {
        for candidate in [Some(power), power.checked_mul(2), power.checked_mul(5)].into_iter().flatten() {
            if g.is_multiple_of(candidate) {
                best = best.max(candidate);
            }
        }
        // 2.5 × 10^k is an integer once k ≥ 1.
        if power >= 10 && g.is_multiple_of(power / 2 * 5) {
            best = best.max(power / 2 * 5);
        }
        match power.checked_mul(10) {
            Some(p) => power = p,
            None => break,
        }
    }
    best
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A positive finite price as (digits, decimals), trailing zeros dropped; `None` beyond u128
/// (no real price). More than [`MAX_DECIMALS`] decimals is reported as `MAX_DECIMALS + 1`.
fn as_decimal(p: f64) -> Option<(u128, usize)> {
    let text = format!("{p}");
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let frac = frac.trim_end_matches('0');
    if frac.len() > MAX_DECIMALS {
        return Some((0, MAX_DECIMALS + 1));
    }
    let mut digits: u128 = 0;
    for c in int.bytes().chain(frac.bytes()) {
        digits = digits.checked_mul(10)?.checked_add(u128::from(c - b'0'))?;
    }
    Some((digits, frac.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_of_real_grids() {
        assert_eq!(infer(&[5528.75, 5529.0, 5528.5, 5530.25]), Some(0.25));
        assert_eq!(infer(&[8531.5, 8532.0, 8531.5]), Some(0.5));
        assert_eq!(infer(&[39432.48, 39439.44, 39439.23]), Some(0.01));
        // Only even cents in a short sample: the step it shows is 0.02.
        assert_eq!(infer(&[39432.48, 39439.44, 39439.22]), Some(0.02));
        assert_eq!(infer(&[1.10005, 1.1001, 1.10015]), Some(0.00005));
        // Integers only: a whole-number step, rounded down to a decimal one (8 -> 5 is not a
        // divisor, so 2; 30 -> 10).
        assert_eq!(infer(&[9682.0, 9690.0]), Some(2.0));
        assert_eq!(infer(&[9660.0, 9690.0]), Some(10.0));
        // A short sample whose gcd is 0.03 gives the decimal step below it.
        assert_eq!(infer(&[10.03, 10.06]), Some(0.01));
        assert_eq!(infer(&[0.0, f64::NAN, -1.0]), None);
        // Prices beyond any grid's integers (found by the fuzz target) are left out, not overflowed.
        assert_eq!(infer(&[1e300, 3e38, 0.25, 0.5]), Some(0.25));
    }

    #[test]
    fn stray_prices_do_not_drag_the_step_down() {
        let mut prices: Vec<f64> = (0..1000).map(|i| 150.0 + f64::from(i) * 0.01).collect();
        prices.extend([157.1572, 156.7271, 0.1 + 0.2]);
        assert_eq!(infer(&prices), Some(0.01));
        // But a real sub-penny grid is found when it is the rule.
        let fine: Vec<f64> = (0..1000).map(|i| 0.5 + f64::from(i) * 0.0001).collect();
        assert_eq!(infer(&fine), Some(0.0001));
    }

    #[test]
    fn us_equities_take_the_reg_nms_tick() {
        assert_eq!(us_equity(&[158.5, 158.485, 157.1572]), Some(0.01));
        assert_eq!(us_equity(&[0.5123, 0.5, 1.2]), Some(0.0001));
        assert_eq!(us_equity(&[f64::NAN]), None);
    }

    #[test]
    fn decimal_steps() {
        assert_eq!(round_down_to_decimal_step(25), 25);
        assert_eq!(round_down_to_decimal_step(75), 25);
        assert_eq!(round_down_to_decimal_step(3), 1);
        assert_eq!(round_down_to_decimal_step(40), 20);
        assert_eq!(round_down_to_decimal_step(1_000_000), 1_000_000);
        assert_eq!(round_down_to_decimal_step(u128::MAX), 5);
    }
}
