//! The demo watchlist: ten liquid US listings with their own price level, tick size,
//! volatility, liquidity and spread, plus the venue facts shared by all of them.
//!
//! The figures are round, plausible values for large US stocks and are only there to make
//! each symbol behave differently (a 600-dollar ETF with 16 % volatility does not look like a
//! 300-dollar stock with 60 %); they are not market data.

use chrono::NaiveTime;
use chrono_tz::Tz;

/// Exchange code written with every demo tick and quote.
pub const EXCHANGE: &str = "DEMO";
/// Quote currency of every demo symbol.
pub const CURRENCY: &str = "USD";
/// Timezone of the demo trading calendar.
pub const TIMEZONE: Tz = chrono_tz::America::New_York;
/// IANA name of [`TIMEZONE`], as stored in `tapeflow.symbols.timezone`.
pub const TIMEZONE_NAME: &str = "America/New_York";

/// Local time the regular session opens.
pub fn session_open() -> NaiveTime {
    NaiveTime::from_hms_opt(9, 30, 0).expect("valid time")
}

/// Local time the regular session closes (exclusive).
pub fn session_close() -> NaiveTime {
    NaiveTime::from_hms_opt(16, 0, 0).expect("valid time")
}

/// One instrument of the simulated market.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoSymbol {
    /// Ticker, e.g. `AAPL`.
    pub symbol: String,
    /// Company or fund name.
    pub name: String,
    /// Asset class as used by `tapeflow.symbols.asset_class` (`us_equity` or `etf`).
    pub asset_class: String,
    /// Reference price: the centre the multi-day price path wanders around.
    pub price: f64,
    /// Minimum price increment.
    pub tick_size: f64,
    /// Annualised volatility of returns (0.25 = 25 %).
    pub annual_vol: f64,
    /// Typical shares traded per day; sets the symbol's share of the simulated trade count.
    pub daily_volume: u64,
    /// Typical quoted spread in ticks (at least 1).
    pub spread_ticks: u32,
}

impl DemoSymbol {
    fn new(
        symbol: &str,
        name: &str,
        asset_class: &str,
        price: f64,
        annual_vol: f64,
        daily_volume: u64,
        spread_ticks: u32,
    ) -> DemoSymbol {
        DemoSymbol {
            symbol: symbol.to_string(),
            name: name.to_string(),
            asset_class: asset_class.to_string(),
            price,
            tick_size: 0.01,
            annual_vol,
            daily_volume,
            spread_ticks,
        }
    }
}

/// The default demo watchlist.
pub fn watchlist() -> Vec<DemoSymbol> {
    const EQ: &str = "us_equity";
    vec![
        DemoSymbol::new("AAPL", "Apple Inc.", EQ, 210.0, 0.28, 55_000_000, 1),
        DemoSymbol::new("MSFT", "Microsoft Corporation", EQ, 450.0, 0.24, 20_000_000, 2),
        DemoSymbol::new("NVDA", "NVIDIA Corporation", EQ, 140.0, 0.50, 220_000_000, 1),
        DemoSymbol::new("AMZN", "Amazon.com, Inc.", EQ, 210.0, 0.32, 40_000_000, 1),
        DemoSymbol::new("GOOGL", "Alphabet Inc. Class A", EQ, 175.0, 0.30, 30_000_000, 1),
        DemoSymbol::new("META", "Meta Platforms, Inc.", EQ, 650.0, 0.38, 14_000_000, 3),
        DemoSymbol::new("TSLA", "Tesla, Inc.", EQ, 320.0, 0.60, 100_000_000, 2),
        DemoSymbol::new("AMD", "Advanced Micro Devices, Inc.", EQ, 140.0, 0.50, 45_000_000, 1),
        DemoSymbol::new("JPM", "JPMorgan Chase & Co.", EQ, 270.0, 0.22, 9_000_000, 2),
        DemoSymbol::new("SPY", "SPDR S&P 500 ETF Trust", "etf", 600.0, 0.16, 70_000_000, 1),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchlist_is_sane() {
        let list = watchlist();
        assert_eq!(list.len(), 10);
        let mut names: Vec<&str> = list.iter().map(|s| s.symbol.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), list.len(), "symbols are unique");
        for s in &list {
            assert!(s.price > 1.0 && s.tick_size > 0.0 && s.spread_ticks >= 1, "{s:?}");
            assert!(s.annual_vol > 0.05 && s.annual_vol < 1.5, "{s:?}");
            assert!(s.daily_volume > 0, "{s:?}");
        }
        assert_eq!(TIMEZONE.name(), TIMEZONE_NAME);
        assert!(session_open() < session_close());
    }
}
