//! Trade-side classification: inferring the aggressor of a trade when the venue does not say.
//!
//! Each rule from the literature is one function that classifies one trade, so that the
//! PostgreSQL extension and the feeders can apply a single rule per trade; [`classify_series`]
//! runs a [`Rule`] over a whole series. Rules that need the tick test take the tick-test side
//! of the same trade as an argument; [`TickRule`] produces it in a stream.
//!
//! Quote-based rules fall back to the tick test when the quote is unusable: missing, not
//! finite, non-positive, crossed or locked (bid >= ask). Such a quote says nothing about
//! which side was hit, and falling back keeps every rule defined on every trade.
//!
//! All rules are deterministic: no randomness is used to break ties.

use crate::candle::Micros;
use crate::side::Side;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Tolerance, as a fraction of the spread, for "at the midpoint", "at the ask" and the CLNV
/// 30% boundaries. Decimal prices are not exact in binary, so a trade at exactly 70% of the
/// spread can land one ulp either side of the boundary; the definitions put such a trade in
/// the tick-test zone, and this keeps it there. One price tick is far wider than this.
const SPREAD_EPS: f64 = 1e-9;

/// Lee-Ready's quote lag in microseconds. Lee and Ready used 5 s for 1980s NYSE reporting
/// delays; modern feeds stamp quotes and trades within milliseconds, so no lag by default.
pub const DEFAULT_QUOTE_LAG_US: i64 = 0;

/// The best bid and ask in force when a trade happened.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    pub bid: f64,
    pub ask: f64,
}

impl Quote {
    pub fn new(bid: f64, ask: f64) -> Quote {
        Quote { bid, ask }
    }

    /// A quote can classify trades only when both sides are finite and positive and the
    /// spread is positive; crossed or locked books carry no direction.
    pub fn is_usable(&self) -> bool {
        self.bid.is_finite()
            && self.ask.is_finite()
            && self.bid > 0.0
            && self.ask > 0.0
            && self.bid < self.ask
    }

    pub fn mid(&self) -> f64 {
        0.5 * (self.bid + self.ask)
    }

    /// Where `price` sits in the spread: 0 at the bid, 1 at the ask, outside [0, 1] beyond them.
    fn position(&self, price: f64) -> f64 {
        (price - self.bid) / (self.ask - self.bid)
    }
}

/// The usable quote, if any, together with the trade's position in its spread.
fn usable_position(price: f64, quote: Option<Quote>) -> Option<f64> {
    quote.filter(Quote::is_usable).map(|q| q.position(price))
}

/// One trade to classify: its price and the quote already aligned to it (see [`align_quotes`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassifyInput {
    pub price: f64,
    pub quote: Option<Quote>,
}

impl ClassifyInput {
    pub fn new(price: f64, quote: Option<Quote>) -> ClassifyInput {
        ClassifyInput { price, quote }
    }
}

/// A quote and the time it took effect, for [`align_quotes`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimedQuote {
    pub time: Micros,
    pub quote: Quote,
}

/// One step of the tick test (Lee & Ready 1991): uptick buy, downtick sell, zero tick keeps
/// `prev_side`, the side of the last non-zero tick. Non-finite prices give `prev_side`.
pub fn tick_test(price: f64, prev_price: f64, prev_side: Side) -> Side {
    if price > prev_price {
        Side::Buy
    } else if price < prev_price {
        Side::Sell
    } else {
        prev_side
    }
}

/// One step of the reverse tick test (Hasbrouck 1988): a trade above the next distinguishable
/// price is a buy, below it a sell; on a zero tick the side of the next trade, `next_side`.
pub fn reverse_tick_test(price: f64, next_price: f64, next_side: Side) -> Side {
    tick_test(price, next_price, next_side)
}

/// The tick rule as a stream (Lee & Ready 1991): uptick buy, downtick sell, zero tick
/// continues the last non-zero direction; the first trade, and zero ticks before any
/// non-zero tick, are `Unknown`.
///
/// The state is small and serializable so an aggregate can carry it between rows.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct TickRule {
    last_price: Option<f64>,
    last_side: Side,
}

impl TickRule {
    pub fn new() -> TickRule {
        TickRule::default()
    }

    /// Classifies the next trade of the series. A non-finite price is `Unknown` and leaves
    /// the state untouched, so one bad print does not break the chain.
    pub fn classify(&mut self, price: f64) -> Side {
        if !price.is_finite() {
            return Side::Unknown;
        }
        let side = match self.last_price {
            Some(prev) => tick_test(price, prev, self.last_side),
            None => Side::Unknown,
        };
        self.last_price = Some(price);
        self.last_side = side;
        side
    }

    /// The side of the last non-zero tick seen so far.
    pub fn last_side(&self) -> Side {
        self.last_side
    }
}

/// The reverse tick rule over a series (Hasbrouck 1988): each trade is compared with the next
/// distinguishable price; trades with no later different price are `Unknown`.
pub fn reverse_tick_series(prices: &[f64]) -> Vec<Side> {
    let mut sides = vec![Side::Unknown; prices.len()];
    let mut next: Option<(f64, Side)> = None;
    for (i, &price) in prices.iter().enumerate().rev() {
        if !price.is_finite() {
            continue;
        }
        let side = match next {
            Some((next_price, next_side)) => reverse_tick_test(price, next_price, next_side),
            None => Side::Unknown,
        };
        sides[i] = side;
        next = Some((price, side));
    }
    sides
}

/// Quote rule (Harris 1989): above the midpoint buy, below sell, at the midpoint `Unknown`;
/// with an unusable quote, the tick-test side `tick`.
pub fn quote_rule(price: f64, quote: Option<Quote>, tick: Side) -> Side {
    if !price.is_finite() {
        return Side::Unknown;
    }
    match usable_position(price, quote) {
        None => tick,
        Some(pos) if pos > 0.5 + SPREAD_EPS => Side::Buy,
        Some(pos) if pos < 0.5 - SPREAD_EPS => Side::Sell,
        Some(_) => Side::Unknown,
    }
}

/// Lee & Ready (1991): the quote rule, and the tick test `tick` for midpoint trades or when
/// the quote is unusable.
pub fn lee_ready(price: f64, quote: Option<Quote>, tick: Side) -> Side {
    match quote_rule(price, quote, tick) {
        Side::Unknown if price.is_finite() => tick,
        side => side,
    }
}

/// EMO, Ellis, Michaely & O'Hara (2000): at the ask buy, at the bid sell, everything else
/// (inside or outside the quotes, or an unusable quote) the tick test `tick`.
pub fn emo(price: f64, quote: Option<Quote>, tick: Side) -> Side {
    if !price.is_finite() {
        return Side::Unknown;
    }
    match usable_position(price, quote) {
        Some(pos) if (pos - 1.0).abs() <= SPREAD_EPS => Side::Buy,
        Some(pos) if pos.abs() <= SPREAD_EPS => Side::Sell,
        _ => tick,
    }
}

/// CLNV, Chakrabarty, Li, Nguyen & Van Ness (2007): buy for P in (0.3B + 0.7A, A], sell for
/// P in [B, 0.7B + 0.3A), else (middle 40%, outside the quotes, unusable quote) tick test.
pub fn clnv(price: f64, quote: Option<Quote>, tick: Side) -> Side {
    if !price.is_finite() {
        return Side::Unknown;
    }
    match usable_position(price, quote) {
        Some(pos) if pos > 0.7 + SPREAD_EPS && pos <= 1.0 + SPREAD_EPS => Side::Buy,
        Some(pos) if (-SPREAD_EPS..0.3 - SPREAD_EPS).contains(&pos) => Side::Sell,
        _ => tick,
    }
}

/// A classification rule, selectable by name (e.g. from SQL or a command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Tick,
    ReverseTick,
    Quote,
    LeeReady,
    Emo,
    Clnv,
}

impl Rule {
    pub const ALL: [Rule; 6] =
        [Rule::Tick, Rule::ReverseTick, Rule::Quote, Rule::LeeReady, Rule::Emo, Rule::Clnv];

    /// The canonical name accepted by `FromStr`.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Tick => "tick",
            Rule::ReverseTick => "reverse_tick",
            Rule::Quote => "quote",
            Rule::LeeReady => "lee_ready",
            Rule::Emo => "emo",
            Rule::Clnv => "clnv",
        }
    }

    /// Whether the rule looks at quotes (without them it is the tick rule).
    pub fn uses_quotes(self) -> bool {
        matches!(self, Rule::Quote | Rule::LeeReady | Rule::Emo | Rule::Clnv)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unrecognised rule name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseRuleError {
    pub input: String,
}

impl fmt::Display for ParseRuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
        write!(f, "unknown classification rule '{}'; valid rules: {}", self.input, names.join(", "))
    }
}

impl std::error::Error for ParseRuleError {}

impl FromStr for Rule {
    type Err = ParseRuleError;

    /// Case-insensitive; `-` and spaces count as `_`; `lr` and `rev_tick` are accepted too.
    fn from_str(s: &str) -> Result<Rule, ParseRuleError> {
        let norm: String = s
            .trim()
            .chars()
            .map(|c| if c == '-' || c == ' ' { '_' } else { c.to_ascii_lowercase() })
            .collect();
        match norm.as_str() {
            "tick" | "tick_test" => Ok(Rule::Tick),
            "reverse_tick" | "rev_tick" => Ok(Rule::ReverseTick),
            "quote" => Ok(Rule::Quote),
            "lee_ready" | "lr" => Ok(Rule::LeeReady),
            "emo" => Ok(Rule::Emo),
            "clnv" => Ok(Rule::Clnv),
            _ => Err(ParseRuleError { input: s.to_string() }),
        }
    }
}

/// Classifies a whole series, in order, with `rule`. Quotes must already be aligned to the
/// trades; trades without a usable quote get the tick test.
pub fn classify_series(rule: Rule, trades: &[ClassifyInput]) -> Vec<Side> {
    if rule == Rule::ReverseTick {
        let prices: Vec<f64> = trades.iter().map(|t| t.price).collect();
        return reverse_tick_series(&prices);
    }
    let mut ticks = TickRule::new();
    trades
        .iter()
        .map(|t| {
            let tick = ticks.classify(t.price);
            match rule {
                Rule::Tick | Rule::ReverseTick => tick,
                Rule::Quote => quote_rule(t.price, t.quote, tick),
                Rule::LeeReady => lee_ready(t.price, t.quote, tick),
                Rule::Emo => emo(t.price, t.quote, tick),
                Rule::Clnv => clnv(t.price, t.quote, tick),
            }
        })
        .collect()
}

/// As-of join of trades to quotes: each trade gets the latest quote with
/// `quote.time <= trade_time - lag_us` (Lee & Ready's quote lag; see [`DEFAULT_QUOTE_LAG_US`]),
/// or `None` when no quote is that old. `quotes` must be sorted by time; of quotes with equal
/// times the last one wins. `trade_times` may be in any order.
pub fn align_quotes(trade_times: &[Micros], quotes: &[TimedQuote], lag_us: i64) -> Vec<Option<Quote>> {
    debug_assert!(quotes.windows(2).all(|w| w[0].time <= w[1].time), "quotes must be sorted by time");
    trade_times
        .iter()
        .map(|&t| {
            let cutoff = t.saturating_sub(lag_us);
            let n = quotes.partition_point(|q| q.time <= cutoff);
            n.checked_sub(1).map(|i| quotes[i].quote)
        })
        .collect()
}

/// The error function, to about 1e-15 absolute: a series without cancellation below 3 and
/// Laplace's continued fraction for erfc above it, where the series would need many terms.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x.abs() < 3.0 {
        erf_series(x)
    } else {
        x.signum() * (1.0 - erfc_continued_fraction(x.abs()))
    }
}

/// The complementary error function 1 - erf(x), accurate in the tails.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        f64::NAN
    } else if x < 0.0 {
        2.0 - erfc(-x)
    } else if x < 3.0 {
        1.0 - erf_series(x)
    } else {
        erfc_continued_fraction(x)
    }
}

/// erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_n (2x^2)^n x / (1*3*...*(2n+1)); every term has the
/// sign of x, so no precision is lost to cancellation.
fn erf_series(x: f64) -> f64 {
    let two_x2 = 2.0 * x * x;
    let mut term = x;
    let mut sum = x;
    for n in 1..200 {
        term *= two_x2 / (2 * n + 1) as f64;
        sum += term;
        if term.abs() <= sum.abs() * 1e-17 {
            break;
        }
    }
    std::f64::consts::FRAC_2_SQRT_PI * (-x * x).exp() * sum
}

/// erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + (2/2)/(x + (3/2)/(x + ...)))) for x > 0,
/// evaluated bottom-up at a fixed depth that converges to double precision for x >= 3.
fn erfc_continued_fraction(x: f64) -> f64 {
    let mut t = x;
    for k in (1..=80).rev() {
        t = x + (k as f64 * 0.5) / t;
    }
    (-x * x).exp() / (std::f64::consts::PI.sqrt() * t)
}

/// The standard normal cumulative distribution function.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Bulk volume classification (Easley, López de Prado & O'Hara 2012): buy volume is
/// `volume * Phi(price_change / sigma)`, the rest is sell volume. A non-finite or non-positive
/// sigma, or a NaN price change, gives an even split. `buy + sell == volume` exactly.
pub fn bvc_split(volume: f64, price_change: f64, sigma: f64) -> (f64, f64) {
    let z =
        if sigma.is_finite() && sigma > 0.0 && !price_change.is_nan() { price_change / sigma } else { 0.0 };
    // Take the larger share by multiplication and the smaller as the difference: the
    // difference is then exact (Sterbenz), so the two add back to `volume` with no rounding,
    // and swapping the sign of the price change swaps the shares exactly.
    let major = volume * normal_cdf(z.abs());
    let minor = volume - major;
    if z >= 0.0 {
        (major, minor)
    } else {
        (minor, major)
    }
}

/// BVC over consecutive bars given as `(volume, price_change)`, with sigma the sample standard
/// deviation of the bars' price changes (fewer than two bars: even split).
pub fn bvc_series(bars: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let changes: Vec<f64> = bars.iter().map(|b| b.1).filter(|c| c.is_finite()).collect();
    let sigma = sample_std_dev(&changes);
    bars.iter().map(|&(volume, change)| bvc_split(volume, change, sigma)).collect()
}

fn sample_std_dev(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Side::{Buy, Sell, Unknown};

    const Q: Quote = Quote { bid: 100.0, ask: 110.0 };

    fn inputs(prices: &[f64], quote: Option<Quote>) -> Vec<ClassifyInput> {
        prices.iter().map(|&p| ClassifyInput::new(p, quote)).collect()
    }

    #[test]
    fn tick_rule_first_trade_unknown_and_zero_ticks_continue() {
        let mut t = TickRule::new();
        let got: Vec<Side> =
            [10.0, 10.0, 11.0, 11.0, 11.0, 10.5, 10.5, 12.0].iter().map(|&p| t.classify(p)).collect();
        assert_eq!(got, [Unknown, Unknown, Buy, Buy, Buy, Sell, Sell, Buy]);
        assert_eq!(t.last_side(), Buy);
    }

    #[test]
    fn tick_rule_skips_non_finite_prices() {
        let mut t = TickRule::new();
        assert_eq!(t.classify(10.0), Unknown);
        assert_eq!(t.classify(f64::NAN), Unknown);
        assert_eq!(t.classify(9.0), Sell);
        assert_eq!(t.classify(f64::INFINITY), Unknown);
        assert_eq!(t.classify(9.0), Sell);
    }

    #[test]
    fn reverse_tick_uses_next_distinguishable_price() {
        // 10 -> next different is 11: below it, sell. 11 -> 10.5 next: above, buy.
        // 10.5, 10.5 -> 12: sell. 12 is last: unknown.
        let got = reverse_tick_series(&[10.0, 10.0, 11.0, 10.5, 10.5, 12.0]);
        assert_eq!(got, [Sell, Sell, Buy, Sell, Sell, Unknown]);
        assert_eq!(reverse_tick_series(&[5.0, 5.0]), [Unknown, Unknown]);
        assert!(reverse_tick_series(&[]).is_empty());
        assert_eq!(classify_series(Rule::ReverseTick, &inputs(&[1.0, 2.0], None)), [Sell, Unknown]);
    }

    #[test]
    fn quote_rule_midpoint_is_unknown() {
        let q = Some(Q);
        assert_eq!(quote_rule(105.0, q, Buy), Unknown);
        assert_eq!(quote_rule(105.01, q, Sell), Buy);
        assert_eq!(quote_rule(104.99, q, Buy), Sell);
        // Outside the quotes the quote rule still classifies by the midpoint.
        assert_eq!(quote_rule(111.0, q, Sell), Buy);
        assert_eq!(quote_rule(99.0, q, Buy), Sell);
        // Midpoint of decimal quotes that are inexact in binary.
        assert_eq!(quote_rule(0.3, Some(Quote::new(0.1, 0.5)), Buy), Unknown);
    }

    #[test]
    fn quote_rules_fall_back_to_tick_on_unusable_quotes() {
        let bad = [
            None,
            Some(Quote::new(110.0, 100.0)), // crossed
            Some(Quote::new(105.0, 105.0)), // locked
            Some(Quote::new(0.0, 110.0)),
            Some(Quote::new(100.0, f64::NAN)),
        ];
        for q in bad {
            for rule in [quote_rule, lee_ready, emo, clnv] {
                assert_eq!(rule(110.0, q, Sell), Sell, "{q:?}");
                assert_eq!(rule(100.0, q, Buy), Buy, "{q:?}");
                assert_eq!(rule(100.0, q, Unknown), Unknown, "{q:?}");
            }
        }
        // Series: 100 then 101 with a crossed book: tick rule says unknown, then buy.
        let crossed = Some(Quote::new(110.0, 100.0));
        for rule in [Rule::Quote, Rule::LeeReady, Rule::Emo, Rule::Clnv] {
            assert_eq!(classify_series(rule, &inputs(&[100.0, 101.0], crossed)), [Unknown, Buy]);
        }
    }

    #[test]
    fn lee_ready_uses_tick_test_at_midpoint() {
        let q = Some(Q);
        assert_eq!(lee_ready(105.0, q, Buy), Buy);
        assert_eq!(lee_ready(105.0, q, Sell), Sell);
        assert_eq!(lee_ready(105.0, q, Unknown), Unknown);
        assert_eq!(lee_ready(106.0, q, Sell), Buy);
        assert_eq!(lee_ready(104.0, q, Buy), Sell);
        // 104 (below mid: sell), 105 (mid, uptick: buy), 105 (mid, zero tick: still buy),
        // 104.5 (below mid: sell), 105 (mid, uptick: buy).
        let got = classify_series(Rule::LeeReady, &inputs(&[104.0, 105.0, 105.0, 104.5, 105.0], q));
        assert_eq!(got, [Sell, Buy, Buy, Sell, Buy]);
        let got = classify_series(Rule::Quote, &inputs(&[104.0, 105.0, 105.0, 104.5, 105.0], q));
        assert_eq!(got, [Sell, Unknown, Unknown, Sell, Unknown]);
    }

    #[test]
    fn emo_only_trusts_trades_at_the_quotes() {
        let q = Some(Q);
        assert_eq!(emo(110.0, q, Sell), Buy);
        assert_eq!(emo(100.0, q, Buy), Sell);
        // Inside the spread, even close to a quote, and outside it: tick test.
        for p in [109.0, 101.0, 105.0, 111.0, 99.0] {
            assert_eq!(emo(p, q, Sell), Sell, "{p}");
            assert_eq!(emo(p, q, Buy), Buy, "{p}");
        }
        let got = classify_series(Rule::Emo, &inputs(&[105.0, 106.0, 110.0, 100.0, 100.0, 101.0], q));
        assert_eq!(got, [Unknown, Buy, Buy, Sell, Sell, Buy]);
    }

    #[test]
    fn clnv_boundaries_at_exactly_thirty_percent() {
        let q = Some(Q);
        // 107 is 0.3B + 0.7A, 103 is 0.7B + 0.3A: both open ends, so tick test.
        assert_eq!(clnv(107.0, q, Sell), Sell);
        assert_eq!(clnv(107.0, q, Unknown), Unknown);
        assert_eq!(clnv(103.0, q, Buy), Buy);
        // Just inside the zones, and the quotes themselves (closed ends).
        assert_eq!(clnv(107.01, q, Sell), Buy);
        assert_eq!(clnv(110.0, q, Sell), Buy);
        assert_eq!(clnv(102.99, q, Buy), Sell);
        assert_eq!(clnv(100.0, q, Buy), Sell);
        // Middle 40%: tick test.
        assert_eq!(clnv(105.0, q, Buy), Buy);
        assert_eq!(clnv(104.0, q, Sell), Sell);
        // Decimal quotes where 0.3B + 0.7A is inexact in binary: still the boundary.
        let dq = Some(Quote::new(0.1, 0.2));
        assert_eq!(clnv(0.17, dq, Sell), Sell);
        assert_eq!(clnv(0.13, dq, Buy), Buy);
        assert_eq!(clnv(0.18, dq, Sell), Buy);
        assert_eq!(clnv(0.12, dq, Buy), Sell);
    }

    #[test]
    fn clnv_outside_quotes_uses_tick_test() {
        let q = Some(Q);
        assert_eq!(clnv(111.0, q, Sell), Sell);
        assert_eq!(clnv(111.0, q, Buy), Buy);
        assert_eq!(clnv(99.0, q, Buy), Buy);
        // 105 (unknown: first), 111 (outside, uptick: buy), 99 (outside, downtick: sell).
        let got = classify_series(Rule::Clnv, &inputs(&[105.0, 111.0, 99.0, 108.0], q));
        assert_eq!(got, [Unknown, Buy, Sell, Buy]);
    }

    #[test]
    fn non_finite_price_is_unknown_for_every_rule() {
        for rule in [quote_rule, lee_ready, emo, clnv] {
            assert_eq!(rule(f64::NAN, Some(Q), Buy), Unknown);
        }
    }

    #[test]
    fn rule_names_round_trip_and_errors_list_names() {
        for r in Rule::ALL {
            assert_eq!(r.name().parse::<Rule>(), Ok(r));
            assert_eq!(r.to_string(), r.name());
        }
        assert_eq!("Lee-Ready".parse::<Rule>(), Ok(Rule::LeeReady));
        assert_eq!(" LR ".parse::<Rule>(), Ok(Rule::LeeReady));
        assert_eq!("rev_tick".parse::<Rule>(), Ok(Rule::ReverseTick));
        let err = "midpoint".parse::<Rule>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown classification rule 'midpoint'; valid rules: tick, reverse_tick, quote, lee_ready, emo, clnv"
        );
        assert!(!Rule::Tick.uses_quotes() && !Rule::ReverseTick.uses_quotes() && Rule::Clnv.uses_quotes());
    }

    #[test]
    fn tick_series_matches_streaming_rule() {
        let got = classify_series(Rule::Tick, &inputs(&[10.0, 10.0, 9.0, 9.0, 9.5], Some(Q)));
        assert_eq!(got, [Unknown, Unknown, Sell, Sell, Buy]);
    }

    #[test]
    fn align_quotes_as_of_with_lag() {
        let qs = [
            TimedQuote { time: 100, quote: Quote::new(1.0, 2.0) },
            TimedQuote { time: 200, quote: Quote::new(2.0, 3.0) },
            TimedQuote { time: 200, quote: Quote::new(2.5, 3.5) },
            TimedQuote { time: 300, quote: Quote::new(3.0, 4.0) },
        ];
        let trades = [50, 100, 199, 200, 250, 1000];
        let bid = |v: Vec<Option<Quote>>| v.into_iter().map(|q| q.map(|q| q.bid)).collect::<Vec<_>>();
        assert_eq!(
            bid(align_quotes(&trades, &qs, DEFAULT_QUOTE_LAG_US)),
            [None, Some(1.0), Some(1.0), Some(2.5), Some(2.5), Some(3.0)]
        );
        // With a 100 µs lag, a trade at t sees quotes up to t - 100.
        assert_eq!(bid(align_quotes(&trades, &qs, 100)), [None, None, None, Some(1.0), Some(1.0), Some(3.0)]);
        assert_eq!(align_quotes(&[i64::MIN], &qs, 5), [None]);
        assert!(align_quotes(&trades, &[], 0).iter().all(Option::is_none));
    }

    #[test]
    fn erf_and_normal_cdf_match_reference_values() {
        // Reference values to 16 digits (erf tables; Phi(1.959963984540054) = 0.975).
        let cases = [
            (erf(0.0), 0.0),
            (erf(0.5), 0.5204998778130465),
            (erf(1.0), 0.8427007929497149),
            (erf(-2.0), -0.9953222650189527),
            (erf(3.5), 0.9999992569016276),
            (erfc(3.0), 2.2090496998585438e-5),
            (erfc(4.0), 1.541725790028002e-8),
            (erfc(-1.0), 1.8427007929497148),
            (normal_cdf(0.0), 0.5),
            (normal_cdf(1.0), 0.8413447460685429),
            (normal_cdf(-1.959963984540054), 0.025),
            (normal_cdf(-6.0), 9.865876450377012e-10),
            (normal_cdf(40.0), 1.0),
        ];
        for (i, (got, want)) in cases.iter().enumerate() {
            assert!((got - want).abs() < 1e-13, "case {i}: {got} vs {want}");
        }
        assert!((erfc(5.0) / 1.537_459_794_428_035e-12 - 1.0).abs() < 1e-12);
        assert!(erf(f64::NAN).is_nan());
        assert_eq!(erf(f64::INFINITY), 1.0);
        assert_eq!(normal_cdf(f64::NEG_INFINITY), 0.0);
    }

    #[test]
    fn bvc_zero_change_is_even_and_sign_flip_swaps() {
        assert_eq!(bvc_split(10.0, 0.0, 1.0), (5.0, 5.0));
        for (v, dp, s) in [(10.0, 0.3, 0.7), (0.123, -2.0, 0.5), (7.0, 1e-9, 3.0), (1e6, 5.0, 0.1)] {
            let (b, s1) = bvc_split(v, dp, s);
            let (b2, s2) = bvc_split(v, -dp, s);
            assert_eq!((b, s1), (s2, b2));
            assert_eq!(b + s1, v);
            assert!(b >= 0.0 && s1 >= 0.0);
        }
        // One sigma up: Phi(1) of the volume is buying.
        let (b, _) = bvc_split(100.0, 2.0, 2.0);
        assert!((b - 84.13447460685429).abs() < 1e-10);
    }

    #[test]
    fn bvc_degenerate_sigma_is_even_split() {
        for s in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(bvc_split(8.0, 3.0, s), (4.0, 4.0));
        }
        assert_eq!(bvc_split(8.0, f64::NAN, 1.0), (4.0, 4.0));
        assert_eq!(bvc_split(0.0, 1.0, 1.0), (0.0, 0.0));
    }

    #[test]
    fn bvc_sums_are_exact_for_awkward_volumes() {
        let mut v = 0.1;
        for i in 0..1000 {
            let dp = (i as f64 * 0.37).sin() * 3.0;
            let (b, s) = bvc_split(v, dp, 1.3);
            assert_eq!(b + s, v, "volume {v}, change {dp}");
            v *= 1.0137;
        }
    }

    #[test]
    fn bvc_series_estimates_sigma_from_changes() {
        // Changes +1 and -1: sample sd sqrt(2), so z = ±1/sqrt(2).
        let got = bvc_series(&[(10.0, 1.0), (10.0, -1.0)]);
        let p = normal_cdf(1.0 / 2f64.sqrt());
        assert!((got[0].0 - 10.0 * p).abs() < 1e-12);
        assert_eq!(got[0], (got[1].1, got[1].0));
        assert_eq!(bvc_series(&[(4.0, 2.0)]), [(2.0, 2.0)]);
    }
}
