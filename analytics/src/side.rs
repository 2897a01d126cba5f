//! The aggressor side of a trade and how it was obtained.

use serde::{Deserialize, Serialize};

/// Who initiated a trade: the buyer lifting the ask, the seller hitting the bid, or unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Side {
    Buy,
    Sell,
    #[default]
    Unknown,
}

impl Side {
    /// The one-byte code stored in SQL (`"char"`): `B`, `S` or `N`.
    pub fn code(self) -> u8 {
        match self {
            Side::Buy => b'B',
            Side::Sell => b'S',
            Side::Unknown => b'N',
        }
    }

    /// Parses the SQL code; accepts `B`/`S`/`N` in either case.
    pub fn from_code(c: u8) -> Option<Side> {
        match c.to_ascii_uppercase() {
            b'B' => Some(Side::Buy),
            b'S' => Some(Side::Sell),
            b'N' | b'U' => Some(Side::Unknown),
            _ => None,
        }
    }

    /// +1 for a buy, -1 for a sell, 0 when unknown: the sign of the trade's delta.
    pub fn sign(self) -> f64 {
        match self {
            Side::Buy => 1.0,
            Side::Sell => -1.0,
            Side::Unknown => 0.0,
        }
    }

    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
            Side::Unknown => Side::Unknown,
        }
    }
}

/// How a tick's side was obtained. Stored in `tapeflow.ticks.side_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SideSource {
    /// Given by the venue (exchange aggressor flag, taker side).
    Venue,
    /// Inferred by a classification rule (tick, quote, Lee-Ready, ...).
    Inferred,
    /// The truth in a simulated market (demo feed).
    Simulated,
    /// Not classified.
    None,
}

impl SideSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SideSource::Venue => "venue",
            SideSource::Inferred => "inferred",
            SideSource::Simulated => "simulated",
            SideSource::None => "none",
        }
    }
}
