//! The executor's risk gates, as one pure decision over what the executor read from the
//! database and the broker at the moment of deciding. Each refusal has a stable code (stored
//! on the signal as `reject_code`) and a message naming the numbers that decided it.
//!
//! Gates, in order: kill switch, broker account blocked, stale signal, shorts allowed, market
//! hours, maximum open positions, daily loss limit, price sanity band. Sizing (risk budget,
//! buying power, notional) follows in [`crate::sizing`].

use crate::candle::{Micros, MINUTE};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use std::fmt;

/// The global limits (`tapeflow.risk_limits`) and the strategy's own.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub trading_enabled: bool,
    /// The smaller of `risk_limits.max_positions` and the strategy's `max_positions`.
    pub max_positions: u32,
    /// % of the day's starting equity.
    pub max_daily_loss_pct: Decimal,
    /// % distance of an entry from the last trade.
    pub price_band_pct: Decimal,
    pub allow_short: bool,
    /// An entry older than this (from its bar's close) is stale.
    pub signal_ttl_us: i64,
}

/// What is known about one entry signal when it is decided.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryCheck {
    pub now: Micros,
    /// Start of the minute bar that produced the signal.
    pub signal_bar: Micros,
    pub short: bool,
    /// The signal's bar lies in the symbol's regular session.
    pub in_session: bool,
    /// The strategy config allows entries outside the regular session.
    pub extended_hours: bool,
    /// Open positions plus open entry orders, this signal excluded.
    pub open_positions: u32,
    pub day_start_equity: Decimal,
    pub equity: Decimal,
    pub entry: f64,
    pub last_trade: Option<f64>,
    pub account_blocked: bool,
}

/// Why a signal was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Stable: `kill_switch`, `account_blocked`, `stale`, `shorts_disabled`, `market_hours`,
    /// `max_positions`, `daily_loss`, `price_band`, `no_last_trade` (and sizing's codes).
    pub code: &'static str,
    pub message: String,
}

impl Rejection {
    pub fn new(code: &'static str, message: impl Into<String>) -> Rejection {
        Rejection { code, message: message.into() }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Checks an entry against every gate; the first that refuses decides.
pub fn check_entry(l: &Limits, c: &EntryCheck) -> Result<(), Rejection> {
    if !l.trading_enabled {
        return Err(Rejection::new(
            "kill_switch",
            "trading is disabled (risk_limits.trading_enabled = false)",
        ));
    }
    if c.account_blocked {
        return Err(Rejection::new("account_blocked", "the broker reports the account or trading blocked"));
    }
    let age = c.now - (c.signal_bar + MINUTE);
    if age > l.signal_ttl_us {
        return Err(Rejection::new(
            "stale",
            format!(
                "signal is {:.1} s old, signal_ttl is {:.1} s",
                age as f64 / 1e6,
                l.signal_ttl_us as f64 / 1e6
            ),
        ));
    }
    if c.short && !l.allow_short {
        return Err(Rejection::new(
            "shorts_disabled",
            "short entries are disabled (risk_limits.allow_short = false)",
        ));
    }
    if !c.in_session && !c.extended_hours {
        return Err(Rejection::new(
            "market_hours",
            "the signal's bar is outside the symbol's regular session (strategy_configs.extended_hours is off)",
        ));
    }
    if c.open_positions >= l.max_positions {
        return Err(Rejection::new(
            "max_positions",
            format!("{} positions and entry orders open, limit {}", c.open_positions, l.max_positions),
        ));
    }
    let loss = c.day_start_equity - c.equity;
    if loss > c.day_start_equity * l.max_daily_loss_pct / Decimal::ONE_HUNDRED {
        return Err(Rejection::new(
            "daily_loss",
            format!(
                "day loss {} exceeds {}% of the day's starting equity {}",
                loss.round_dp(2),
                l.max_daily_loss_pct,
                c.day_start_equity.round_dp(2)
            ),
        ));
    }
    let Some(last) = c.last_trade else {
        return Err(Rejection::new(
            "no_last_trade",
            "the symbol has no trade to check the entry price against",
        ));
    };
    let band = l.price_band_pct.to_f64().unwrap_or(0.0);
    let distance = (c.entry - last).abs() / last * 100.0;
    // NaN (a bad entry or last price) is outside every band.
    if distance.is_nan() || distance > band {
        return Err(Rejection::new(
            "price_band",
            format!("entry {} is {distance:.3}% from the last trade {last}, band {band}%", c.entry),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            trading_enabled: true,
            max_positions: 3,
            max_daily_loss_pct: Decimal::new(3, 0),
            price_band_pct: Decimal::ONE,
            allow_short: true,
            signal_ttl_us: 120_000_000,
        }
    }

    fn check() -> EntryCheck {
        EntryCheck {
            now: 61_000_000,
            signal_bar: 0,
            short: false,
            in_session: true,
            extended_hours: false,
            open_positions: 0,
            day_start_equity: Decimal::new(100_000, 0),
            equity: Decimal::new(100_000, 0),
            entry: 100.0,
            last_trade: Some(100.1),
            account_blocked: false,
        }
    }

    fn code(l: &Limits, c: &EntryCheck) -> &'static str {
        check_entry(l, c).err().map_or("ok", |r| r.code)
    }

    #[test]
    fn each_gate_refuses() {
        let (l, c) = (limits(), check());
        assert_eq!(code(&l, &c), "ok");
        assert_eq!(code(&Limits { trading_enabled: false, ..l.clone() }, &c), "kill_switch");
        assert_eq!(code(&l, &EntryCheck { account_blocked: true, ..c.clone() }), "account_blocked");
        assert_eq!(code(&l, &EntryCheck { now: 182_000_000, ..c.clone() }), "stale");
        assert_eq!(
            code(&Limits { allow_short: false, ..l.clone() }, &EntryCheck { short: true, ..c.clone() }),
            "shorts_disabled"
        );
        assert_eq!(code(&l, &EntryCheck { in_session: false, ..c.clone() }), "market_hours");
        assert_eq!(code(&l, &EntryCheck { in_session: false, extended_hours: true, ..c.clone() }), "ok");
        assert_eq!(code(&l, &EntryCheck { open_positions: 3, ..c.clone() }), "max_positions");
        assert_eq!(code(&l, &EntryCheck { equity: Decimal::new(96_999, 0), ..c.clone() }), "daily_loss");
        assert_eq!(code(&l, &EntryCheck { equity: Decimal::new(97_000, 0), ..c.clone() }), "ok");
        assert_eq!(code(&l, &EntryCheck { last_trade: Some(102.0), ..c.clone() }), "price_band");
        assert_eq!(code(&l, &EntryCheck { last_trade: None, ..c.clone() }), "no_last_trade");
        assert_eq!(code(&l, &EntryCheck { entry: f64::NAN, ..c }), "price_band");
    }
}
