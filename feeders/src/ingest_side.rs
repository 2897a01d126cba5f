//! Trade-side classification at ingest, for feeds whose trades carry no aggressor flag.
//!
//! Per symbol it keeps the tick-rule state and the latest quote, and classifies each trade with
//! Lee-Ready (the quote rule, the tick rule for midpoint trades or without a usable quote).
//! A side given by the venue is never replaced.

use std::collections::HashMap;
use tapeflow_analytics::classify::{self, Quote, TickRule};
use tapeflow_analytics::{Side, SideSource};

#[derive(Default)]
struct SymbolState {
    tick: TickRule,
    quote: Option<Quote>,
}

#[derive(Default)]
pub struct IngestClassifier {
    symbols: HashMap<String, SymbolState>,
}

impl IngestClassifier {
    /// Records the top of book in force for the symbol's next trades.
    pub fn on_quote(&mut self, symbol: &str, bid: f64, ask: f64) {
        self.state(symbol).quote = Some(Quote::new(bid, ask));
    }

    /// The side of a trade: the venue's when known, else Lee-Ready on the latest quote.
    pub fn classify(&mut self, symbol: &str, price: f64, venue_side: Option<Side>) -> (Side, SideSource) {
        let st = self.state(symbol);
        // The tick rule sees every trade, so its state stays right for later unknown ones.
        let tick = st.tick.classify(price);
        match venue_side {
            Some(s) if s != Side::Unknown => (s, SideSource::Venue),
            _ => match classify::lee_ready(price, st.quote, tick) {
                Side::Unknown => (Side::Unknown, SideSource::None),
                s => (s, SideSource::Inferred),
            },
        }
    }

    fn state(&mut self, symbol: &str) -> &mut SymbolState {
        if !self.symbols.contains_key(symbol) {
            self.symbols.insert(symbol.to_string(), SymbolState::default());
        }
        self.symbols.get_mut(symbol).expect("inserted above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn venue_side_wins_and_quotes_decide_the_rest() {
        let mut c = IngestClassifier::default();
        assert_eq!(c.classify("X", 10.00, Some(Side::Sell)), (Side::Sell, SideSource::Venue));
        // No quote yet: tick rule (uptick).
        assert_eq!(c.classify("X", 10.01, None), (Side::Buy, SideSource::Inferred));
        c.on_quote("X", 10.00, 10.02);
        // At the bid: a sell, even on an uptick from nothing; at the ask: a buy.
        assert_eq!(c.classify("X", 10.00, None), (Side::Sell, SideSource::Inferred));
        assert_eq!(c.classify("X", 10.02, None), (Side::Buy, SideSource::Inferred));
        // At the midpoint: the tick rule (a downtick from 10.02).
        assert_eq!(c.classify("X", 10.01, None), (Side::Sell, SideSource::Inferred));
        // Symbols are independent: the first trade of another symbol has no reference.
        assert_eq!(c.classify("Y", 5.0, None), (Side::Unknown, SideSource::None));
    }
}
