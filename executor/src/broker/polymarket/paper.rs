//! Paper fills and the accounting of paired legs (pure).
//!
//! A paper leg walks the token's current book (`tapeflow.polymarket_books`) best first at
//! prices no worse than its limit, less the depth earlier paper fills took from the same
//! version of that book, and pays the market's exact taker fee on every level
//! (`analytics::polymarket::arbitrage::fill`, the same walk the detection uses). FOK fills
//! the whole size or nothing; FAK fills what there is and cancels the rest.
//!
//! A paired trade's legs can fill unequally (one leg killed, or FAK legs of different depth).
//! [`unmatched`] says how many shares of each leg are left without a partner; they are sold
//! back into the bids (unwind) or held to resolution, and [`Pnl`] splits the result into the
//! matched sets, the unwind and the held part.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use tapeflow_analytics::polymarket::arbitrage::{fill, Action, LegBook};
use tapeflow_analytics::polymarket::book::Level;
use tapeflow_analytics::polymarket::fees::{FeeError, FeeSchedule};

/// FOK: all or nothing; FAK: what the book has, the rest cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderType {
    Fok,
    Fak,
}

impl OrderType {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Fok => "FOK",
            OrderType::Fak => "FAK",
        }
    }
    pub fn parse(s: &str) -> Option<OrderType> {
        match s.to_ascii_uppercase().as_str() {
            "FOK" => Some(OrderType::Fok),
            "FAK" => Some(OrderType::Fak),
            _ => None,
        }
    }
}

/// What one leg filled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filled {
    pub shares: Decimal,
    /// Σ price × shares.
    pub notional: Decimal,
    pub fee: Decimal,
    /// The levels taken, best first.
    pub levels: Vec<Level>,
}

impl Filled {
    pub fn avg_price(&self) -> Option<Decimal> {
        (!self.shares.is_zero()).then(|| (self.notional / self.shares).round_dp(12).normalize())
    }
}

/// Depth already taken by paper fills from one version of a token's book, by price.
pub type Taken = BTreeMap<Decimal, Decimal>;

/// Walks `levels` (best first: asks to buy, bids to sell) for `size` shares at prices no worse
/// than `limit` (None: any price), leaving out what `taken` holds, and adds what it takes to
/// `taken`.
pub fn walk(
    action: Action,
    levels: &[Level],
    taken: &mut Taken,
    size: Decimal,
    limit: Option<Decimal>,
    order_type: OrderType,
    fees: FeeSchedule,
) -> Result<Filled, FeeError> {
    let within = |p: Decimal| match (action, limit) {
        (_, None) => true,
        (Action::Buy, Some(l)) => p <= l,
        (Action::Sell, Some(l)) => p >= l,
    };
    let available: Vec<Level> = levels
        .iter()
        .take_while(|l| within(l.price))
        .map(|l| {
            Level::new(
                l.price,
                (l.size - taken.get(&l.price).copied().unwrap_or_default()).max(Decimal::ZERO),
            )
        })
        .filter(|l| l.size > Decimal::ZERO)
        .collect();
    let depth: Decimal = available.iter().map(|l| l.size).sum();
    let shares = match order_type {
        OrderType::Fok if depth < size => Decimal::ZERO,
        OrderType::Fok => size,
        OrderType::Fak => size.min(depth),
    };
    if shares <= Decimal::ZERO {
        return Ok(Filled::default());
    }
    let f =
        fill(action, &LegBook { levels: &available, fees }, shares)?.expect("the depth covers the shares");
    let mut left = shares;
    let mut took = Vec::with_capacity(f.levels);
    for l in &available {
        if left <= Decimal::ZERO {
            break;
        }
        let q = left.min(l.size);
        *taken.entry(l.price).or_default() += q;
        took.push(Level::new(l.price, q));
        left -= q;
    }
    Ok(Filled { shares, notional: f.notional, fee: f.fee, levels: took })
}

/// Shares in matched sets, and each leg's shares without a partner. Buying: every leg's fill
/// beyond the smallest. Selling both (the pairs minted at 1 each beforehand): the sold pairs
/// are the smaller fill; of the other token, the shares minted for the larger fill but not
/// sold are left (minted pairs neither leg sold merge back into collateral at no cost).
pub fn unmatched(action: Action, fills: &[Decimal]) -> (Decimal, Vec<Decimal>) {
    let min = fills.iter().copied().min().unwrap_or_default();
    let max = fills.iter().copied().max().unwrap_or_default();
    let excess = fills
        .iter()
        .map(|&f| match action {
            Action::Buy => f - min,
            Action::Sell => max - f,
        })
        .collect();
    (min, excess)
}

/// The cost basis of each leg's unmatched shares. Buying: their share of the leg's cost and
/// fees. Selling both (two legs): a left-over share of one token is half of a minted pair
/// (cost 1) whose other half was sold at the other leg's net price.
pub fn unmatched_cost(action: Action, fills: &[Filled], excess: &[Decimal]) -> Vec<Decimal> {
    let per_share = |f: &Filled| {
        if f.shares.is_zero() {
            return Decimal::ZERO;
        }
        match action {
            Action::Buy => (f.notional + f.fee) / f.shares,
            Action::Sell => (f.notional - f.fee) / f.shares,
        }
    };
    match action {
        Action::Buy => fills.iter().zip(excess).map(|(f, &x)| x * per_share(f)).collect(),
        Action::Sell => (0..fills.len())
            .map(|i| {
                let others: Decimal =
                    fills.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, f)| per_share(f)).sum();
                excess[i] * (Decimal::ONE - others)
            })
            .collect(),
    }
}

/// P&L of the matched sets: buying, one pays 1 each at resolution, less every leg's cost and
/// fees for those shares; selling both, what the legs fetched for them net of fees, less 1
/// minted per set.
pub fn matched_pnl(action: Action, fills: &[Filled], matched: Decimal) -> Decimal {
    let part =
        |f: &Filled, net: Decimal| if f.shares.is_zero() { Decimal::ZERO } else { net * matched / f.shares };
    match action {
        Action::Buy => matched - fills.iter().map(|f| part(f, f.notional + f.fee)).sum::<Decimal>(),
        Action::Sell => fills.iter().map(|f| part(f, f.notional - f.fee)).sum::<Decimal>() - matched,
    }
}

/// A trade's figures once its legs (and any unwinds) are known.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pnl {
    pub matched: Decimal,
    pub matched_pnl: Decimal,
    /// Unwind proceeds net of fees less the cost of the shares sold back.
    pub unwind_pnl: Decimal,
    /// Cost of the unmatched shares still held, and what they would fetch in the bids now.
    pub held_cost: Decimal,
    pub held_mark: Decimal,
    pub leg_risk_loss: Decimal,
    pub pnl: Decimal,
}

/// `unwinds[i]` is what selling back leg i's unmatched shares did (shares sold, proceeds net
/// of fees); `marks[i]` what its shares still held would fetch now. The held part is carried
/// at the lower of cost and mark until settlement.
pub fn pnl(
    action: Action,
    fills: &[Filled],
    unwinds: &[(Decimal, Decimal)],
    marks: &[Decimal],
) -> (Pnl, Vec<Decimal>, Vec<Decimal>) {
    let shares: Vec<Decimal> = fills.iter().map(|f| f.shares).collect();
    let (matched, excess) = unmatched(action, &shares);
    let cost = unmatched_cost(action, fills, &excess);
    let mut out = Pnl { matched, matched_pnl: matched_pnl(action, fills, matched), ..Pnl::default() };
    let (mut held_shares, mut held_costs) = (Vec::new(), Vec::new());
    for i in 0..fills.len() {
        let (sold, proceeds) = unwinds.get(i).copied().unwrap_or_default();
        let (x, c) = (excess[i], cost[i]);
        let sold_cost = if x.is_zero() { Decimal::ZERO } else { c * sold / x };
        out.unwind_pnl += proceeds - sold_cost;
        held_shares.push(x - sold);
        held_costs.push(c - sold_cost);
        out.held_cost += c - sold_cost;
        out.held_mark += marks.get(i).copied().unwrap_or_default();
    }
    let held_loss = (out.held_cost - out.held_mark).max(Decimal::ZERO);
    out.leg_risk_loss = (-out.unwind_pnl).max(Decimal::ZERO) + held_loss;
    out.pnl = out.matched_pnl + out.unwind_pnl - held_loss;
    (out, held_shares, held_costs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn lv(p: &str, s: &str) -> Level {
        Level::new(d(p), d(s))
    }

    #[test]
    fn walks_consume_depth_and_respect_limit_and_type() {
        let fees = FeeSchedule::new(d("0.04"), 1).unwrap();
        let asks = [lv("0.40", "10"), lv("0.41", "5"), lv("0.45", "100")];
        let mut taken = Taken::new();
        // 12 shares: 10 at 0.40 + 2 at 0.41; fee 0.04 × (10 × 0.24 + 2 × 0.2419) = 0.115352.
        let f = walk(Action::Buy, &asks, &mut taken, d("12"), Some(d("0.41")), OrderType::Fok, fees).unwrap();
        assert_eq!((f.shares, f.notional, f.fee), (d("12"), d("4.82"), d("0.115352")));
        assert_eq!(f.levels, vec![lv("0.40", "10"), lv("0.41", "2")]);
        // Only 3 left at ≤ 0.41: FOK of 5 is killed, FAK takes the 3.
        let k = walk(Action::Buy, &asks, &mut taken, d("5"), Some(d("0.41")), OrderType::Fok, fees).unwrap();
        assert_eq!(k, Filled::default());
        let a = walk(Action::Buy, &asks, &mut taken, d("5"), Some(d("0.41")), OrderType::Fak, fees).unwrap();
        assert_eq!((a.shares, a.notional), (d("3"), d("1.23")));
        // Selling walks bids down to the limit; None takes any price.
        let bids = [lv("0.55", "1"), lv("0.50", "1")];
        let s = walk(Action::Sell, &bids, &mut Taken::new(), d("2"), Some(d("0.52")), OrderType::Fak, fees)
            .unwrap();
        assert_eq!(s.shares, d("1"));
        let s = walk(Action::Sell, &bids, &mut Taken::new(), d("2"), None, OrderType::Fok, fees).unwrap();
        assert_eq!((s.shares, s.notional), (d("2"), d("1.05")));
    }

    #[test]
    fn a_one_legged_buy_is_unwound_with_its_loss() {
        // YES filled 10 at 0.40 (fee 0.096), NO killed. The 10 YES cost 4.096 and sell back at
        // 0.38 for 3.8 less fee 10 × 0.04 × 0.38 × 0.62 = 0.09424: loss 0.39024.
        let yes = Filled { shares: d("10"), notional: d("4"), fee: d("0.096"), levels: vec![] };
        let no = Filled::default();
        let (p, held, _) = pnl(Action::Buy, &[yes, no], &[(d("10"), d("3.70576")), (d("0"), d("0"))], &[]);
        assert_eq!(p.matched, d("0"));
        assert_eq!(p.matched_pnl, d("0"));
        assert_eq!(p.unwind_pnl, d("-0.39024"));
        assert_eq!(p.leg_risk_loss, d("0.39024"));
        assert_eq!(p.pnl, d("-0.39024"));
        assert_eq!(held, vec![d("0"), d("0")]);
    }

    #[test]
    fn matched_sets_and_held_shares() {
        // FAK legs: YES 10 (4 + 0.096 fee), NO 6 at 0.55 (3.3 + 6 × 0.04 × 0.2475 = 0.0594).
        let yes = Filled { shares: d("10"), notional: d("4"), fee: d("0.096"), levels: vec![] };
        let no = Filled { shares: d("6"), notional: d("3.3"), fee: d("0.0594"), levels: vec![] };
        // 6 pairs: 6 − (6 × 0.4096 + 3.3594) = 0.1830; 4 YES held at cost 1.6384, marked 1.5.
        let (p, held, costs) = pnl(Action::Buy, &[yes, no], &[], &[d("1.5"), d("0")]);
        assert_eq!(p.matched, d("6"));
        assert_eq!(p.matched_pnl, d("0.183"));
        assert_eq!((p.held_cost, held[0], costs[0]), (d("1.6384"), d("4"), d("1.6384")));
        assert_eq!(p.leg_risk_loss, d("0.1384"));
        assert_eq!(p.pnl, d("0.0446"));
    }

    #[test]
    fn selling_both_from_minted_pairs() {
        // 10 pairs minted; YES sold 10 at 0.6 (fee 0.096), NO killed: 10 NO left, each half of
        // a pair that cost 1 with its YES half sold at 0.5904 net: cost 4.096.
        let yes = Filled { shares: d("10"), notional: d("6"), fee: d("0.096"), levels: vec![] };
        let (matched, excess) = unmatched(Action::Sell, &[d("10"), d("0")]);
        assert_eq!((matched, excess.clone()), (d("0"), vec![d("0"), d("10")]));
        let cost = unmatched_cost(Action::Sell, &[yes.clone(), Filled::default()], &excess);
        assert_eq!(cost, vec![d("0"), d("4.096")]);
        // Both sold 10: 6 + 4.5 − fees (0.096 + 0.099) − 10 = 0.305.
        let no = Filled { shares: d("10"), notional: d("4.5"), fee: d("0.099"), levels: vec![] };
        assert_eq!(matched_pnl(Action::Sell, &[yes, no], d("10")), d("0.305"));
    }
}
