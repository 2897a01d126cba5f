//! Fee-aware arbitrage across the books of complementary outcome tokens.
//!
//! * **buy both** (binary market): buy the same number x of YES and NO shares, walking both
//!   ask books; one of them pays 1 at resolution, so the profit is
//!   `x − Σ (cost of the fills + their taker fees)`.
//! * **sell both**: sell x YES and x NO shares into the bids. The pairs are either held or minted
//!   (splitting 1 collateral into one YES and one NO), so the profit is
//!   `Σ (proceeds − fees) − x`.
//! * **buy all YES** (neg-risk event): buy x YES of every market of the event; exactly one
//!   resolves YES, so the profit is `x − Σ (cost + fees)` over every market.
//!
//! Each leg is walked best-first. Between two level boundaries (of any leg) every leg fills at
//! a fixed price, so the profit grows linearly there with the slope
//! `1 − Σ (p + fee(p))` (buying) or `Σ (p − fee(p)) − 1` (selling), fee(p) = rate × (p(1 − p))^e
//! per share. `p + fee(p)` and `p − fee(p)` rise with p (their slope is at least 1 − rate > 0),
//! and asks rise while bids fall as we walk, so the slope never increases: the profit is concave
//! in x and the per-share edge profit/x never increases. Hence the profit-maximising size is
//! where the slope stops being positive, the edge constraint (edge ≥ min_edge) is an upper bound
//! on x, and the best size on the lot grid within [min size, that bound] is one of the two lot
//! multiples around the clamped maximiser.

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};

use super::book::Level;
use super::fees::{FeeError, FeeSchedule};

/// Decimals of the reported edge and average prices (rounded toward zero).
pub const REPORT_DECIMALS: u32 = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    BuyBoth,
    SellBoth,
    BuyAllYes,
}

impl Kind {
    /// The name stored in tapeflow.arbitrage_opportunities.kind.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::BuyBoth => "buy_both",
            Kind::SellBoth => "sell_both",
            Kind::BuyAllYes => "buy_all_yes",
        }
    }

    pub fn action(&self) -> Action {
        match self {
            Kind::BuyBoth | Kind::BuyAllYes => Action::Buy,
            Kind::SellBoth => Action::Sell,
        }
    }
}

/// What every leg does: buy walks the asks, sell walks the bids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Buy,
    Sell,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Buy => "buy",
            Action::Sell => "sell",
        }
    }
}

/// Detection parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Minimum profit per share (per set) after fees.
    pub min_edge: Decimal,
    /// Minimum shares per leg (the venue's minimum order size, or more).
    pub min_size: Decimal,
    /// Maximum shares per leg (None: as deep as the books go).
    pub max_size: Option<Decimal>,
    /// Share granularity of orders (the venue rounds sizes down to 2 decimals: 0.01).
    pub lot: Decimal,
    /// Markets resolving in fewer seconds are skipped (see [`resolves_too_soon`]).
    pub min_seconds_to_resolution: i64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            min_edge: Decimal::ZERO,
            min_size: Decimal::ZERO,
            max_size: None,
            lot: Decimal::new(1, 2),
            min_seconds_to_resolution: 0,
        }
    }
}

/// One leg's book side, best first (asks ascending to buy, bids descending to sell), and its
/// market's fees.
#[derive(Clone, Copy, Debug)]
pub struct LegBook<'a> {
    pub levels: &'a [Level],
    pub fees: FeeSchedule,
}

/// What one leg fills at a size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegFill {
    pub action: Action,
    pub shares: Decimal,
    /// Σ price × shares of the fills.
    pub notional: Decimal,
    /// Σ exact taker fees of the fills.
    pub fee: Decimal,
    /// notional / shares.
    pub avg_price: Decimal,
    /// The last level's price: the limit price that fills the leg at once (FOK/FAK).
    pub worst_price: Decimal,
    /// How many levels it takes.
    pub levels: usize,
}

/// An opportunity at its reported (profit-maximising, admissible) size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opportunity {
    pub kind: Kind,
    /// Shares per leg.
    pub size: Decimal,
    /// Profit after fees.
    pub profit: Decimal,
    /// profit / size, rounded toward zero to [`REPORT_DECIMALS`].
    pub edge: Decimal,
    /// Σ notional over the legs.
    pub notional: Decimal,
    /// Σ fees over the legs.
    pub fees: Decimal,
    /// In the order the legs were given.
    pub legs: Vec<LegFill>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArbError {
    /// A parameter out of range (its name and why).
    Params(String),
    /// Fewer than two legs.
    Legs(usize),
    /// A level with a price outside (0, 1) or a negative size.
    Level {
        leg: usize,
        index: usize,
        level: Level,
    },
    /// Levels not strictly best-first (asks ascending, bids descending).
    Unsorted {
        leg: usize,
        index: usize,
    },
    Fee(FeeError),
}

impl fmt::Display for ArbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArbError::Params(m) => write!(f, "bad arbitrage parameter: {m}"),
            ArbError::Legs(n) => write!(f, "an arbitrage needs at least two legs, got {n}"),
            ArbError::Level { leg, index, level } => write!(
                f,
                "leg {leg}, level {index}: price {} must be inside (0, 1) and size {} not negative",
                level.price, level.size
            ),
            ArbError::Unsorted { leg, index } => {
                write!(
                    f,
                    "leg {leg}, level {index}: levels must run best first (asks ascending, bids descending)"
                )
            }
            ArbError::Fee(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ArbError {}

impl From<FeeError> for ArbError {
    fn from(e: FeeError) -> Self {
        ArbError::Fee(e)
    }
}

/// Whether a market resolving in `seconds_left` (None: no end date) is too close to resolution.
pub fn resolves_too_soon(params: &Params, seconds_left: Option<i64>) -> bool {
    seconds_left.is_some_and(|s| s < params.min_seconds_to_resolution)
}

/// Buy YES and NO of one binary market (both at `fees`).
pub fn buy_both(
    yes_asks: &[Level],
    no_asks: &[Level],
    fees: FeeSchedule,
    params: &Params,
) -> Result<Option<Opportunity>, ArbError> {
    let legs = [LegBook { levels: yes_asks, fees }, LegBook { levels: no_asks, fees }];
    best(Kind::BuyBoth, &legs, params)
}

/// Sell YES and NO of one binary market into their bids.
pub fn sell_both(
    yes_bids: &[Level],
    no_bids: &[Level],
    fees: FeeSchedule,
    params: &Params,
) -> Result<Option<Opportunity>, ArbError> {
    let legs = [LegBook { levels: yes_bids, fees }, LegBook { levels: no_bids, fees }];
    best(Kind::SellBoth, &legs, params)
}

/// Buy YES of every market of a neg-risk event (each leg with its market's fees). The caller
/// must pass every outcome of an event that cannot gain outcomes.
pub fn buy_all_yes(yes_asks: &[LegBook<'_>], params: &Params) -> Result<Option<Opportunity>, ArbError> {
    best(Kind::BuyAllYes, yes_asks, params)
}

fn check_params(p: &Params) -> Result<(), ArbError> {
    if p.min_edge < Decimal::ZERO {
        return Err(ArbError::Params(format!("min_edge {} is negative", p.min_edge)));
    }
    if p.min_size < Decimal::ZERO {
        return Err(ArbError::Params(format!("min_size {} is negative", p.min_size)));
    }
    if p.lot <= Decimal::ZERO {
        return Err(ArbError::Params(format!("lot {} is not positive", p.lot)));
    }
    if let Some(m) = p.max_size {
        if m <= Decimal::ZERO {
            return Err(ArbError::Params(format!("max_size {m} is not positive")));
        }
    }
    Ok(())
}

fn check_legs(action: Action, legs: &[LegBook<'_>]) -> Result<(), ArbError> {
    if legs.len() < 2 {
        return Err(ArbError::Legs(legs.len()));
    }
    for (leg, book) in legs.iter().enumerate() {
        for (index, level) in book.levels.iter().enumerate() {
            if level.price <= Decimal::ZERO || level.price >= Decimal::ONE || level.size < Decimal::ZERO {
                return Err(ArbError::Level { leg, index, level: *level });
            }
            if index > 0 {
                let prev = book.levels[index - 1].price;
                let ordered = match action {
                    Action::Buy => level.price > prev,
                    Action::Sell => level.price < prev,
                };
                if !ordered {
                    return Err(ArbError::Unsorted { leg, index });
                }
            }
        }
    }
    Ok(())
}

/// The value of one share at `price` to the arbitrage: what it costs with its fee (buying) or
/// brings net of its fee (selling).
fn unit(action: Action, fees: &FeeSchedule, price: Decimal) -> Result<Decimal, FeeError> {
    let fee = fees.per_share(price)?;
    Ok(match action {
        Action::Buy => price + fee,
        Action::Sell => price - fee,
    })
}

fn report(x: Decimal) -> Decimal {
    x.round_dp_with_strategy(REPORT_DECIMALS, RoundingStrategy::ToZero).normalize()
}

/// What one leg fills for `shares`, or None when its book is not that deep.
pub fn fill(action: Action, book: &LegBook<'_>, shares: Decimal) -> Result<Option<LegFill>, FeeError> {
    let mut left = shares;
    let (mut notional, mut fee, mut worst, mut levels) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, 0);
    for level in book.levels.iter().filter(|l| l.size > Decimal::ZERO) {
        if left <= Decimal::ZERO {
            break;
        }
        let take = left.min(level.size);
        notional += take * level.price;
        fee += book.fees.taker_fee(take, level.price)?;
        worst = level.price;
        levels += 1;
        left -= take;
    }
    if left > Decimal::ZERO {
        return Ok(None);
    }
    let avg_price = if shares.is_zero() { Decimal::ZERO } else { report(notional / shares) };
    Ok(Some(LegFill { action, shares, notional, fee, avg_price, worst_price: worst, levels }))
}

/// The opportunity of `kind` at exactly `size` shares per leg, whatever its profit; None when a
/// book is not deep enough. The basis of paper fills and of brute-force checks.
pub fn evaluate(kind: Kind, legs: &[LegBook<'_>], size: Decimal) -> Result<Option<Opportunity>, ArbError> {
    let action = kind.action();
    check_legs(action, legs)?;
    if size <= Decimal::ZERO {
        return Err(ArbError::Params(format!("size {size} is not positive")));
    }
    let mut fills = Vec::with_capacity(legs.len());
    for book in legs {
        match fill(action, book, size)? {
            Some(f) => fills.push(f),
            None => return Ok(None),
        }
    }
    let notional: Decimal = fills.iter().map(|f| f.notional).sum();
    let fees: Decimal = fills.iter().map(|f| f.fee).sum();
    let profit = match action {
        Action::Buy => size - notional - fees,
        Action::Sell => notional - fees - size,
    };
    Ok(Some(Opportunity { kind, size, profit, edge: report(profit / size), notional, fees, legs: fills }))
}

fn floor_lot(x: Decimal, lot: Decimal) -> Decimal {
    (x / lot).floor() * lot
}

fn ceil_lot(x: Decimal, lot: Decimal) -> Decimal {
    (x / lot).ceil() * lot
}

/// The profit-maximising admissible opportunity of `kind` over `legs`, if any: the size is a
/// multiple of the lot in [min_size, max_size], the profit positive and at least min_edge per
/// share; among sizes of equal profit the smallest.
pub fn best(kind: Kind, legs: &[LegBook<'_>], params: &Params) -> Result<Option<Opportunity>, ArbError> {
    check_params(params)?;
    let action = kind.action();
    check_legs(action, legs)?;

    // Walk all legs together, segment by segment (a segment ends at the next level boundary of
    // any leg), tracking the arg-max of the profit (x_star: the end of the last segment with a
    // positive slope) and the largest size whose edge is still ≥ min_edge (x_edge).
    let mut index = vec![0usize; legs.len()];
    let mut used = vec![Decimal::ZERO; legs.len()];
    let (mut x, mut x_star, mut x_edge) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    // D(x) = profit(x) − min_edge × x: concave, D(0) = 0, and D ≥ 0 exactly on [0, x_edge].
    let mut surplus = Decimal::ZERO;
    'walk: loop {
        let mut len: Option<Decimal> = None;
        let mut slope = match action {
            Action::Buy => Decimal::ONE,
            Action::Sell => -Decimal::ONE,
        };
        for (i, book) in legs.iter().enumerate() {
            while index[i] < book.levels.len() && book.levels[index[i]].size <= used[i] {
                index[i] += 1;
                used[i] = Decimal::ZERO;
            }
            let Some(level) = book.levels.get(index[i]) else { break 'walk };
            let room = level.size - used[i];
            len = Some(len.map_or(room, |l: Decimal| l.min(room)));
            let u = unit(action, &book.fees, level.price)?;
            match action {
                Action::Buy => slope -= u,
                Action::Sell => slope += u,
            }
        }
        let mut len = len.unwrap_or(Decimal::ZERO);
        if let Some(max) = params.max_size {
            len = len.min(max - x);
        }
        if len <= Decimal::ZERO {
            break;
        }
        if slope > Decimal::ZERO {
            x_star = x + len;
        }
        let over = slope - params.min_edge;
        if over >= Decimal::ZERO {
            surplus += over * len;
            x_edge = x + len;
        } else {
            let reach = surplus / -over;
            if reach < len {
                x_edge = x + reach;
                break;
            }
            surplus += over * len;
            x_edge = x + len;
        }
        x += len;
        for u in used.iter_mut() {
            *u += len;
        }
        if slope <= Decimal::ZERO && surplus <= Decimal::ZERO {
            break;
        }
    }
    if x_star.is_zero() {
        return Ok(None);
    }

    let lot = params.lot;
    let upper = floor_lot(x_edge, lot);
    let lower = ceil_lot(params.min_size, lot).max(lot);
    if lower > upper {
        return Ok(None);
    }
    let clamp = |v: Decimal| v.max(lower).min(upper);
    let mut found: Option<Opportunity> = None;
    for size in [clamp(floor_lot(x_star, lot)), clamp(ceil_lot(x_star, lot))] {
        let Some(o) = evaluate(kind, legs, size)? else { continue };
        if o.profit <= Decimal::ZERO || o.profit < params.min_edge * size {
            continue;
        }
        if found.as_ref().is_none_or(|f| o.profit > f.profit) {
            found = Some(o);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn lv(p: &str, s: &str) -> Level {
        Level::new(d(p), d(s))
    }

    fn fees(rate: &str) -> FeeSchedule {
        FeeSchedule::new(d(rate), 1).unwrap()
    }

    #[test]
    fn buy_both_hand_worked_with_fees() {
        // Politics, rate 0.04. Fee per share = 0.04 × p × (1 − p):
        //   0.40 → 0.0096, 0.45 → 0.0099, 0.50 → 0.0100, 0.58 → 0.009744.
        // YES asks 0.40 × 100, 0.45 × 200; NO asks 0.50 × 150, 0.58 × 100.
        // Segments (profit per pair = 1 − Σ (price + fee)):
        //   [0, 100):   1 − 0.4096 − 0.5100   =  0.0804
        //   [100, 150): 1 − 0.4599 − 0.5100   =  0.0301
        //   [150, 250): 1 − 0.4599 − 0.589744 = −0.049644  → stop at 150.
        // Profit = 100 × 0.0804 + 50 × 0.0301 = 8.04 + 1.505 = 9.545.
        // YES: 100 × 0.40 + 50 × 0.45 = 62.5, fee 0.96 + 0.495 = 1.455, worst 0.45.
        // NO: 150 × 0.50 = 75, fee 1.5. Cost 62.5 + 75 + 1.455 + 1.5 = 140.455; 150 − 140.455 = 9.545.
        // Edge 9.545 / 150 = 0.0636333…
        let yes = [lv("0.40", "100"), lv("0.45", "200")];
        let no = [lv("0.50", "150"), lv("0.58", "100")];
        let o = buy_both(&yes, &no, fees("0.04"), &Params::default()).unwrap().unwrap();
        assert_eq!(o.kind, Kind::BuyBoth);
        assert_eq!(o.size, d("150"));
        assert_eq!(o.profit, d("9.545"));
        assert_eq!(o.edge, d("0.063633333333"));
        assert_eq!(o.notional, d("137.5"));
        assert_eq!(o.fees, d("2.955"));
        assert_eq!(o.legs[0].notional, d("62.5"));
        assert_eq!(o.legs[0].fee, d("1.455"));
        assert_eq!(o.legs[0].worst_price, d("0.45"));
        assert_eq!(o.legs[0].avg_price, d("0.416666666666"));
        assert_eq!(o.legs[0].levels, 2);
        assert_eq!(o.legs[1].notional, d("75"));
        assert_eq!(o.legs[1].fee, d("1.5"));
        assert_eq!(o.legs[1].levels, 1);

        // min_edge 0.07: D(x) = profit − 0.07 x has slope 0.0104 on [0, 100) (D(100) = 1.04)
        // and −0.0399 after, so D = 0 at 100 + 1.04 / 0.0399 = 126.065…; on the 0.01 lot grid
        // 126.06. Profit there = 8.04 + 26.06 × 0.0301 = 8.824406 ≥ 0.07 × 126.06 = 8.8242.
        let strict = Params { min_edge: d("0.07"), ..Params::default() };
        let o = buy_both(&yes, &no, fees("0.04"), &strict).unwrap().unwrap();
        assert_eq!(o.size, d("126.06"));
        assert_eq!(o.profit, d("8.824406"));
        assert!(o.edge >= d("0.07"));
        // min_size above that bound: nothing admissible.
        let p = Params { min_size: d("130"), ..strict };
        assert_eq!(buy_both(&yes, &no, fees("0.04"), &p).unwrap(), None);
        // max_size caps the size: 60 pairs in the first segment, 60 × 0.0804 = 4.824.
        let p = Params { max_size: Some(d("60")), ..Params::default() };
        let o = buy_both(&yes, &no, fees("0.04"), &p).unwrap().unwrap();
        assert_eq!((o.size, o.profit), (d("60"), d("4.824")));
        // min_size beyond the arg-max still pays: 200 pairs = 9.545 − 50 × 0.049644 = 7.0628.
        let p = Params { min_size: d("200"), ..Params::default() };
        let o = buy_both(&yes, &no, fees("0.04"), &p).unwrap().unwrap();
        assert_eq!((o.size, o.profit), (d("200"), d("7.0628")));
    }

    #[test]
    fn fees_can_remove_an_opportunity() {
        // Crypto, rate 0.072: 0.49 + 0.50 = 0.99 < 1 would pay 0.01 a pair without fees, but the
        // fees are 0.072 × 0.49 × 0.51 = 0.0179928 and 0.072 × 0.25 = 0.018: the pair costs
        // 1.0259928.
        let yes = [lv("0.49", "100")];
        let no = [lv("0.50", "100")];
        assert_eq!(buy_both(&yes, &no, fees("0.072"), &Params::default()).unwrap(), None);
        let free = buy_both(&yes, &no, FeeSchedule::FREE, &Params::default()).unwrap().unwrap();
        assert_eq!((free.size, free.profit, free.edge), (d("100"), d("1"), d("0.01")));
        // A sum of exactly 1 is no opportunity.
        assert_eq!(buy_both(&[lv("0.5", "10")], &no, FeeSchedule::FREE, &Params::default()).unwrap(), None);
    }

    #[test]
    fn sell_both_hand_worked_with_fees() {
        // Sports, rate 0.03. Fee per share: 0.62 → 0.007068, 0.60 → 0.0072, 0.45 → 0.007425,
        // 0.41 → 0.007257. YES bids 0.62 × 80, 0.60 × 100; NO bids 0.45 × 50, 0.41 × 200.
        // Segments (profit per pair = Σ (price − fee) − 1):
        //   [0, 50):   0.612932 + 0.442575 − 1 =  0.055507
        //   [50, 80):  0.612932 + 0.402743 − 1 =  0.015675
        //   [80, 180): 0.5928   + 0.402743 − 1 = −0.004457  → stop at 80.
        // Profit = 50 × 0.055507 + 30 × 0.015675 = 2.77535 + 0.47025 = 3.2456.
        // YES 80 × 0.62 = 49.6, fee 0.56544; NO 22.5 + 12.3 = 34.8, fee 0.37125 + 0.21771 = 0.58896.
        // 84.4 − 1.1544 − 80 = 3.2456; edge 3.2456 / 80 = 0.04057.
        let yes = [lv("0.62", "80"), lv("0.60", "100")];
        let no = [lv("0.45", "50"), lv("0.41", "200")];
        let o = sell_both(&yes, &no, fees("0.03"), &Params::default()).unwrap().unwrap();
        assert_eq!(o.kind, Kind::SellBoth);
        assert_eq!((o.size, o.profit, o.edge), (d("80"), d("3.2456"), d("0.04057")));
        assert_eq!((o.notional, o.fees), (d("84.4"), d("1.1544")));
        assert_eq!((o.legs[0].fee, o.legs[1].fee), (d("0.56544"), d("0.58896")));
        assert_eq!(o.legs[1].worst_price, d("0.41"));
        assert_eq!(o.legs[1].action, Action::Sell);
    }

    #[test]
    fn buy_all_yes_hand_worked_with_per_market_fees() {
        // Three outcomes; A and B at 0.04, C fee-free.
        // A asks 0.30 × 50, 0.33 × 100 (fees 0.0084, 0.008844); B 0.25 × 80 (fee 0.0075);
        // C 0.38 × 60, 0.40 × 40.
        //   [0, 50):  1 − 0.3084   − 0.2575 − 0.38 = 0.0541
        //   [50, 60): 1 − 0.338844 − 0.2575 − 0.38 = 0.023656
        //   [60, 80): 1 − 0.338844 − 0.2575 − 0.40 = 0.003656; B ends at 80.
        // Profit = 2.705 + 0.23656 + 0.07312 = 3.01468.
        // Check: A 15 + 9.9 = 24.9 (fee 0.42 + 0.26532), B 20 (fee 0.6), C 22.8 + 8 = 30.8;
        // 80 − 75.7 − 1.28532 = 3.01468.
        let a = [lv("0.30", "50"), lv("0.33", "100")];
        let b = [lv("0.25", "80")];
        let c = [lv("0.38", "60"), lv("0.40", "40")];
        let legs = [
            LegBook { levels: &a, fees: fees("0.04") },
            LegBook { levels: &b, fees: fees("0.04") },
            LegBook { levels: &c, fees: FeeSchedule::FREE },
        ];
        let o = buy_all_yes(&legs, &Params::default()).unwrap().unwrap();
        assert_eq!((o.kind, o.size, o.profit), (Kind::BuyAllYes, d("80"), d("3.01468")));
        assert_eq!((o.notional, o.fees), (d("75.7"), d("1.28532")));
        assert_eq!(o.legs.iter().map(|l| l.levels).collect::<Vec<_>>(), vec![2, 1, 2]);
    }

    #[test]
    fn bad_input_is_refused() {
        let ok = [lv("0.4", "1")];
        let p = Params::default();
        assert_eq!(
            buy_both(&[lv("0.5", "1"), lv("0.4", "1")], &ok, FeeSchedule::FREE, &p),
            Err(ArbError::Unsorted { leg: 0, index: 1 })
        );
        assert_eq!(
            sell_both(&ok, &[lv("0.4", "1"), lv("0.5", "1")], FeeSchedule::FREE, &p),
            Err(ArbError::Unsorted { leg: 1, index: 1 })
        );
        assert!(matches!(buy_both(&[lv("1", "1")], &ok, FeeSchedule::FREE, &p), Err(ArbError::Level { .. })));
        assert!(matches!(
            buy_both(&[lv("0.3", "-1")], &ok, FeeSchedule::FREE, &p),
            Err(ArbError::Level { .. })
        ));
        assert_eq!(
            buy_all_yes(&[LegBook { levels: &ok, fees: FeeSchedule::FREE }], &p),
            Err(ArbError::Legs(1))
        );
        for bad in [
            Params { min_edge: d("-0.1"), ..p },
            Params { min_size: d("-1"), ..p },
            Params { lot: Decimal::ZERO, ..p },
            Params { max_size: Some(Decimal::ZERO), ..p },
        ] {
            assert!(matches!(buy_both(&ok, &ok, FeeSchedule::FREE, &bad), Err(ArbError::Params(_))));
        }
        // An empty side has no opportunity, and is no error.
        assert_eq!(buy_both(&[], &ok, FeeSchedule::FREE, &p).unwrap(), None);
    }

    #[test]
    fn time_to_resolution() {
        let p = Params { min_seconds_to_resolution: 3600, ..Params::default() };
        assert!(resolves_too_soon(&p, Some(60)));
        assert!(!resolves_too_soon(&p, Some(7200)));
        assert!(!resolves_too_soon(&p, None));
    }

    // Ask books on a 0.01 grid with whole-share sizes (small, for brute force).
    fn asks() -> impl Strategy<Value = Vec<Level>> {
        prop::collection::btree_map(1i64..100, 1i64..40, 0..6).prop_map(|m| {
            m.into_iter().map(|(p, s)| Level::new(Decimal::new(p, 2), Decimal::from(s))).collect()
        })
    }

    // Two ask books priced near complementary (sums within a few cents of 1), where the
    // profit's slope changes sign and crosses min_edge inside the books.
    fn near_pair() -> impl Strategy<Value = (Vec<Level>, Vec<Level>)> {
        let steps = || prop::collection::vec((0i64..3, 1i64..40), 1..6);
        (20i64..80, -4i64..3, steps(), steps()).prop_map(|(q, k, sa, sb)| {
            let side = |start: i64, steps: Vec<(i64, i64)>| {
                let mut p = start;
                let mut out: Vec<Level> = Vec::new();
                for (step, size) in steps {
                    p += step.max(if out.is_empty() { 0 } else { 1 });
                    if p >= 100 {
                        break;
                    }
                    out.push(Level::new(Decimal::new(p, 2), Decimal::from(size)));
                }
                out
            };
            (side(q, sa), side(100 - q + k, sb))
        })
    }

    fn books() -> impl Strategy<Value = (Vec<Level>, Vec<Level>)> {
        prop_oneof![(asks(), asks()), near_pair()]
    }

    fn rate() -> impl Strategy<Value = FeeSchedule> {
        prop_oneof![
            Just(FeeSchedule::FREE),
            (0i64..800).prop_map(|r| FeeSchedule::new(Decimal::new(r, 4), 1).unwrap())
        ]
    }

    fn mirror(levels: &[Level]) -> Vec<Level> {
        levels.iter().map(|l| Level::new(Decimal::ONE - l.price, l.size)).collect()
    }

    fn depth(legs: &[LegBook<'_>]) -> Decimal {
        legs.iter().map(|l| l.levels.iter().map(|l| l.size).sum::<Decimal>()).min().unwrap()
    }

    fn admissible(o: &Opportunity, p: &Params) -> bool {
        o.profit > Decimal::ZERO
            && o.profit >= p.min_edge * o.size
            && o.size >= p.min_size
            && p.max_size.is_none_or(|m| o.size <= m)
    }

    proptest! {
        // Brute force is cheap (books of at most 6 levels of under 40 shares), and the cases
        // where the edge bound cuts a profitable segment are a few percent: run many.
        #![proptest_config(ProptestConfig::with_cases(4000))]

        // The reported size is optimal against brute force over every lot multiple, with
        // positive profit, the edge constraint met, and every leg of the same size; None
        // exactly when no size is admissible.
        #[test]
        fn optimal_against_brute_force(
            (a, b) in books(), f in rate(), min_edge in 0i64..30, min_size in 0i64..40,
            max_size in prop::option::of(1i64..120), sell in any::<bool>(),
        ) {
            let p = Params {
                min_edge: Decimal::new(min_edge, 3),
                min_size: Decimal::from(min_size),
                max_size: max_size.map(Decimal::from),
                lot: Decimal::ONE,
                min_seconds_to_resolution: 0,
            };
            // Mirrored asks (1 − p, ascending p) are bids best first.
            let (kind, a, b) = if sell { (Kind::SellBoth, mirror(&a), mirror(&b)) } else { (Kind::BuyBoth, a, b) };
            let legs = [LegBook { levels: &a, fees: f }, LegBook { levels: &b, fees: f }];
            let got = best(kind, &legs, &p).unwrap();
            let mut brute: Option<Opportunity> = None;
            let mut x = Decimal::ONE;
            while x <= depth(&legs) {
                let o = evaluate(kind, &legs, x).unwrap().unwrap();
                if admissible(&o, &p) && brute.as_ref().is_none_or(|b| o.profit > b.profit) {
                    brute = Some(o);
                }
                x += Decimal::ONE;
            }
            match (&got, &brute) {
                (Some(g), Some(b)) => {
                    prop_assert_eq!(g.profit, b.profit);
                    prop_assert_eq!(g.size, b.size, "the smallest size of the best profit");
                    prop_assert!(admissible(g, &p));
                    prop_assert!(g.legs.iter().all(|l| l.shares == g.size));
                    prop_assert_eq!(Some(g.clone()), evaluate(kind, &legs, g.size).unwrap());
                }
                (None, None) => {}
                _ => prop_assert!(false, "best {:?} but brute force {:?}", got, brute),
            }
        }

    }

    proptest! {
        // Without constraints the optimum sits on a level boundary of one of the legs and
        // beats every other boundary.
        #[test]
        fn unconstrained_optimum_is_a_level_boundary((a, b) in books(), f in rate()) {
            let legs = [LegBook { levels: &a, fees: f }, LegBook { levels: &b, fees: f }];
            let Some(o) = best(Kind::BuyBoth, &legs, &Params::default()).unwrap() else { return Ok(()) };
            let cumulative = |l: &[Level]| l.iter().scan(Decimal::ZERO, |s, l| { *s += l.size; Some(*s) }).collect::<Vec<_>>();
            let mut bounds: Vec<Decimal> = cumulative(&a).into_iter().chain(cumulative(&b)).filter(|x| *x <= depth(&legs)).collect();
            bounds.sort();
            prop_assert!(bounds.contains(&o.size));
            for x in bounds {
                let e = evaluate(Kind::BuyBoth, &legs, x).unwrap().unwrap();
                prop_assert!(e.profit <= o.profit);
            }
        }

        // Selling both into bids b is buying both at asks 1 − b: same size, profit and fees.
        #[test]
        fn mirror_symmetry((a, b) in books(), f in rate(), min_edge in 0i64..20) {
            let p = Params { min_edge: Decimal::new(min_edge, 3), ..Params::default() };
            let buy = buy_both(&a, &b, f, &p).unwrap();
            let sell = sell_both(&mirror(&a), &mirror(&b), f, &p).unwrap();
            match (buy, sell) {
                (Some(x), Some(y)) => {
                    prop_assert_eq!((x.size, x.profit, x.fees, x.edge), (y.size, y.profit, y.fees, y.edge));
                    prop_assert_eq!(x.notional + y.notional, Decimal::TWO * x.size);
                }
                (None, None) => {}
                (x, y) => prop_assert!(false, "buy {:?} sell {:?}", x, y),
            }
        }

        // Higher fees never make an arbitrage pay more; a two-market neg-risk event is a
        // binary market.
        #[test]
        fn fees_monotone_and_neg_risk_of_two((a, b) in books(), r1 in 0i64..800, r2 in 0i64..800) {
            let (lo, hi) = (r1.min(r2), r1.max(r2));
            let low = FeeSchedule::new(Decimal::new(lo, 4), 1).unwrap();
            let high = FeeSchedule::new(Decimal::new(hi, 4), 1).unwrap();
            let p = Params::default();
            let profit = |f| buy_both(&a, &b, f, &p).unwrap().map_or(Decimal::ZERO, |o| o.profit);
            prop_assert!(profit(high) <= profit(low));
            let pair = buy_both(&a, &b, low, &p).unwrap().map(|o| (o.size, o.profit, o.fees));
            let legs = [LegBook { levels: &a, fees: low }, LegBook { levels: &b, fees: low }];
            let all = buy_all_yes(&legs, &p).unwrap().map(|o| (o.size, o.profit, o.fees));
            prop_assert_eq!(pair, all);
        }
    }
}
