//! From IG's streamed fields to Tapeflow's rows: pure functions, so that nulls, missing fields
//! and nonsense values are tested here rather than met in production.
//!
//! - `MARKET:<epic>` (MERGE) gives the top of book: `BID`, `OFFER` and `UPDATE_TIME`, a time of
//!   day (`HH:MM:SS`) in UK local time. The date and the zone are ours to supply: the time is
//!   read in the configured zone (Europe/London unless `TAPEFLOW_IG_TIME_ZONE` says otherwise)
//!   on whichever of yesterday, today and tomorrow puts it nearest to the moment it was
//!   received, so an update stamped 23:59:59 that arrives at 00:00:01 belongs to the day before,
//!   and in the repeated hour of October the reading nearest to the receipt time is taken.
//! - `CHART:<epic>:TICK` (DISTINCT) gives one event per price change: `BID`, `OFR`, `LTP`
//!   (last traded price), `LTV` (its volume) and `UTM` (epoch milliseconds, UTC). Exchange-
//!   traded markets fill `LTP`; CFDs on indices and FX often send no traded price at all, so the
//!   event is stored at the bid/offer midpoint and marked `mid` in `conditions`.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use std::collections::HashMap;
use std::fmt;

use super::tlcp::ItemState;
pub use tapeflow_db::copy::QuoteRow;

/// The `MARKET:<epic>` fields subscribed, in this order (IG's documented MARKET fields; a name
/// IG does not know would make it refuse the whole subscription).
pub const MARKET_FIELDS: [&str; 5] = ["UPDATE_TIME", "BID", "OFFER", "MARKET_STATE", "MARKET_DELAY"];
const M_TIME: usize = 0;
const M_BID: usize = 1;
const M_OFFER: usize = 2;
pub const M_STATE: usize = 3;
pub const M_DELAY: usize = 4;

/// The `CHART:<epic>:TICK` fields subscribed, in this order.
pub const TICK_FIELDS: [&str; 5] = ["BID", "OFR", "LTP", "LTV", "UTM"];
const T_BID: usize = 0;
const T_OFR: usize = 1;
const T_LTP: usize = 2;
const T_LTV: usize = 3;
const T_UTM: usize = 4;

/// The `exchange` column of IG's rows.
pub const EXCHANGE: &str = "IG";

/// A field with a value that is not what IG sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadField {
    pub field: &'static str,
    pub value: String,
    pub why: &'static str,
}

impl fmt::Display for BadField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {:?}: {}", self.field, self.value, self.why)
    }
}

impl std::error::Error for BadField {}

fn bad(field: &'static str, value: &str, why: &'static str) -> BadField {
    BadField { field, value: value.chars().take(40).collect(), why }
}

/// A price: finite and above zero.
pub fn price(field: &'static str, s: &str) -> Result<f64, BadField> {
    match s.trim().parse::<f64>() {
        Ok(p) if p.is_finite() && p > 0.0 => Ok(p),
        Ok(_) => Err(bad(field, s, "not a positive finite price")),
        Err(_) => Err(bad(field, s, "not a number")),
    }
}

/// A volume: finite and not negative.
pub fn volume(field: &'static str, s: &str) -> Result<f64, BadField> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err(bad(field, s, "not a finite volume of zero or more")),
        Err(_) => Err(bad(field, s, "not a number")),
    }
}

/// Epoch milliseconds between 2000 and 2100 (anything else is not a time IG would send).
pub fn epoch_ms(field: &'static str, s: &str) -> Result<DateTime<Utc>, BadField> {
    let ms: i64 = s.trim().parse().map_err(|_| bad(field, s, "not epoch milliseconds"))?;
    if !(946_684_800_000..4_102_444_800_000).contains(&ms) {
        return Err(bad(field, s, "epoch milliseconds outside 2000-2100"));
    }
    DateTime::from_timestamp_millis(ms).ok_or_else(|| bad(field, s, "not epoch milliseconds"))
}

/// A time of day (`HH:MM:SS`) in `zone` as the instant nearest to `received` (see the module
/// notes). `None` when the text is not a time of day.
pub fn time_of_day(hms: &str, zone: Tz, received: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let t = NaiveTime::parse_from_str(hms.trim(), "%H:%M:%S").ok()?;
    let today = received.with_timezone(&zone).date_naive();
    let mut best: Option<DateTime<Utc>> = None;
    for day in [today.pred_opt(), Some(today), today.succ_opt()].into_iter().flatten() {
        // A time that does not exist (the skipped spring hour) has no reading; one that occurs
        // twice (the autumn hour) has two.
        for local in zone
            .from_local_datetime(&day.and_time(t))
            .earliest()
            .into_iter()
            .chain(zone.from_local_datetime(&day.and_time(t)).latest())
        {
            let utc = local.with_timezone(&Utc);
            let nearer = best.is_none_or(|b| (utc - received).abs() < (b - received).abs());
            if nearer {
                best = Some(utc);
            }
        }
    }
    best
}

/// The quote a `MARKET` update makes, if it changed the book: `Ok(None)` when neither `BID` nor
/// `OFFER` changed, or when either is null (a closed market sends nulls) or unknown. The time is
/// `UPDATE_TIME` (see [`time_of_day`]), or the receipt time when IG sent none.
pub fn market_quote(
    symbol: &str,
    item: &ItemState,
    changed: &[bool],
    zone: Tz,
    received: DateTime<Utc>,
) -> Result<Option<QuoteRow>, BadField> {
    let book_changed =
        changed.get(M_BID).copied().unwrap_or(false) || changed.get(M_OFFER).copied().unwrap_or(false);
    if !book_changed {
        return Ok(None);
    }
    let (Some(b), Some(o)) = (item.text(M_BID), item.text(M_OFFER)) else {
        return Ok(None);
    };
    let (bid, ask) = (price("BID", b)?, price("OFFER", o)?);
    let time = match item.text(M_TIME) {
        Some(s) => time_of_day(s, zone, received)
            .ok_or_else(|| bad("UPDATE_TIME", s, "not a time of day HH:MM:SS"))?,
        None => received,
    };
    Ok(Some(QuoteRow {
        time,
        symbol: symbol.to_string(),
        bid,
        ask,
        bid_size: 0.0,
        ask_size: 0.0,
        exchange: Some(EXCHANGE.to_string()),
    }))
}

/// One `CHART:<epic>:TICK` event, ready to be classified and stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartTick {
    pub time: DateTime<Utc>,
    pub price: f64,
    /// `LTV` when IG sent it, else 0 (no traded volume is known).
    pub size: f64,
    /// The price is the bid/offer midpoint: IG sent no traded price.
    pub mid: bool,
    /// The bid and offer in force, when both are known.
    pub quote: Option<(f64, f64)>,
    pub trade_id: String,
}

/// Trade ids of one subscription's ticks: `<UTM>-<hash of the event's values>-<n>`, where `n`
/// counts earlier events of the same millisecond with the same values. The id depends only on
/// the event, never on when the connection started, so the snapshot a new subscription replays
/// after a reconnect produces the ids already stored and adds nothing; two identical events in
/// one millisecond still get two ids.
#[derive(Debug, Default, Clone)]
pub struct TickIds {
    utm: i64,
    seen: HashMap<u64, u32>,
}

impl TickIds {
    fn next(&mut self, utm: i64, content: &[Option<&str>]) -> String {
        if utm != self.utm {
            self.utm = utm;
            self.seen.clear();
        }
        let h = fnv1a(content);
        let n = self.seen.entry(h).or_insert(0);
        let id = format!("{utm}-{:08x}-{n}", h as u32);
        *n += 1;
        id
    }
}

/// The midpoint of two prices, rounded to one decimal more than the prices have, so that
/// 6224.9 and 6226.7 give 6225.8 and not the binary neighbour 6225.799999999999.
pub fn midpoint(a: f64, b: f64) -> f64 {
    // Halves first: the sum of two huge prices would overflow.
    let mid = a / 2.0 + b / 2.0;
    let places = decimals(a).max(decimals(b)) + 1;
    if places > 12 || !mid.is_finite() {
        return mid;
    }
    let scale = 10f64.powi(places as i32);
    let rounded = (mid * scale).round() / scale;
    if rounded.is_finite() {
        rounded
    } else {
        mid
    }
}

/// Decimal places of a number's shortest decimal form (what IG sent).
fn decimals(x: f64) -> u32 {
    let s = format!("{x}");
    if s.contains('e') {
        return 13;
    }
    s.split_once('.').map_or(0, |(_, f)| f.len() as u32)
}

/// FNV-1a, 64 bits: a hash fixed by its definition, so ids are the same in every build.
fn fnv1a(parts: &[Option<&str>]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.unwrap_or("#").bytes().chain(std::iter::once(b'|')) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The tick an event makes: the traded price (`LTP`) when IG sent one, else the bid/offer
/// midpoint; `Ok(None)` when it sent no price at all (nulls at the close).
pub fn chart_tick(item: &ItemState, ids: &mut TickIds) -> Result<Option<ChartTick>, BadField> {
    let (b, o, ltp, ltv, utm) =
        (item.text(T_BID), item.text(T_OFR), item.text(T_LTP), item.text(T_LTV), item.text(T_UTM));
    let quote = match (b, o) {
        (Some(b), Some(o)) => Some((price("BID", b)?, price("OFR", o)?)),
        _ => None,
    };
    let (price, mid) = match (ltp, quote) {
        (Some(p), _) => (price("LTP", p)?, false),
        (None, Some((b, o))) => (midpoint(b, o), true),
        (None, None) => return Ok(None),
    };
    let utm_text = utm.ok_or_else(|| bad("UTM", "", "a price without a time"))?;
    let time = epoch_ms("UTM", utm_text)?;
    let size = match ltv {
        Some(v) => volume("LTV", v)?,
        None => 0.0,
    };
    let trade_id = ids.next(time.timestamp_millis(), &[b, o, ltp, ltv]);
    Ok(Some(ChartTick { time, price, size, mid, quote, trade_id }))
}

/// How far apart two readings of a time may be and still count as one (clock skew, delayed
/// markets): used only to warn about a wrongly configured zone.
pub fn implausible_lag(t: DateTime<Utc>, received: DateTime<Utc>) -> bool {
    (received - t).abs() > Duration::minutes(30)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::London;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn item(values: &str, n: usize) -> (ItemState, Vec<bool>) {
        let mut s = ItemState::new(n);
        let changed = s.apply(values).unwrap();
        (s, changed)
    }

    #[test]
    fn update_time_is_uk_local_time_on_the_nearest_day() {
        // Summer: BST (UTC+1).
        assert_eq!(
            time_of_day("15:00:00", London, utc("2024-07-01T14:00:03Z")),
            Some(utc("2024-07-01T14:00:00Z"))
        );
        // Winter: GMT.
        assert_eq!(
            time_of_day("15:00:00", London, utc("2024-01-10T15:00:01Z")),
            Some(utc("2024-01-10T15:00:00Z"))
        );
        // Stamped just before midnight, received just after: the day before.
        assert_eq!(
            time_of_day("23:59:59", London, utc("2024-01-10T00:00:02Z")),
            Some(utc("2024-01-09T23:59:59Z"))
        );
        // Stamped just after midnight by a clock slightly ahead: the next day.
        assert_eq!(
            time_of_day("00:00:01", London, utc("2024-01-09T23:59:59Z")),
            Some(utc("2024-01-10T00:00:01Z"))
        );
        // The repeated hour (27 Oct 2024, 01:00-02:00 twice): the reading nearest to receipt.
        assert_eq!(
            time_of_day("01:30:00", London, utc("2024-10-27T00:30:05Z")),
            Some(utc("2024-10-27T00:30:00Z"))
        );
        assert_eq!(
            time_of_day("01:30:00", London, utc("2024-10-27T01:30:05Z")),
            Some(utc("2024-10-27T01:30:00Z"))
        );
        // The skipped hour (31 Mar 2024, 01:00-02:00 does not exist): nearest existing day.
        assert_eq!(
            time_of_day("01:30:00", London, utc("2024-03-31T01:00:00Z")),
            Some(utc("2024-03-30T01:30:00Z"))
        );
        assert_eq!(time_of_day("25:00:00", London, utc("2024-01-10T00:00:02Z")), None);
        assert_eq!(time_of_day("", London, utc("2024-01-10T00:00:02Z")), None);
    }

    #[test]
    fn market_updates_make_quotes_only_when_the_book_changes() {
        let now = utc("2016-08-09T14:00:02Z");
        let (s, ch) = item("15:00:00|1.11|1.12|TRADEABLE|0", 5);
        let q = market_quote("EURUSD", &s, &ch, London, now).unwrap().unwrap();
        assert_eq!(
            (q.time, q.bid, q.ask, q.exchange.as_deref()),
            (utc("2016-08-09T14:00:00Z"), 1.11, 1.12, Some("IG"))
        );
        // Only the state changed: no quote.
        let mut s2 = s.clone();
        let ch = s2.apply("||||1").unwrap();
        assert_eq!(market_quote("EURUSD", &s2, &ch, London, now).unwrap(), None);
        // Nulls at the close: no quote, no error.
        let ch = s2.apply("|#|#|CLOSED|").unwrap();
        assert_eq!(market_quote("EURUSD", &s2, &ch, London, now).unwrap(), None);
        // No UPDATE_TIME: stamped when received.
        let (s3, ch) = item("#|1.2|1.3|#|#", 5);
        assert_eq!(market_quote("X", &s3, &ch, London, now).unwrap().unwrap().time, now);
        // Nonsense is an error naming the field.
        let (s4, ch) = item("15:00:00|abc|1.3|#|#", 5);
        assert_eq!(market_quote("X", &s4, &ch, London, now).unwrap_err().field, "BID");
        let (s5, ch) = item("15h|1.2|1.3|#|#", 5);
        assert_eq!(market_quote("X", &s5, &ch, London, now).unwrap_err().field, "UPDATE_TIME");
        let (s6, ch) = item("15:00:00|-1|1.3|#|#", 5);
        assert!(market_quote("X", &s6, &ch, London, now).is_err());
    }

    #[test]
    fn ticks_take_the_traded_price_else_the_midpoint() {
        let mut ids = TickIds::default();
        let (s, _) = item("1.13|1.132|1.131|10|1470731056283", 5);
        let t = chart_tick(&s, &mut ids).unwrap().unwrap();
        assert_eq!((t.price, t.size, t.mid, t.quote), (1.131, 10.0, false, Some((1.13, 1.132))));
        assert_eq!(t.time, utc("2016-08-09T08:24:16.283Z"));
        // A CFD: no traded price or volume.
        let (s, _) = item("6224.9|6226.7|#|#|1658218747365", 5);
        let t = chart_tick(&s, &mut ids).unwrap().unwrap();
        assert_eq!((t.price, t.size, t.mid), (6225.8, 0.0, true));
        // Nulls at the close: nothing.
        let (s, _) = item("#|#|#|#|1658219998000", 5);
        assert_eq!(chart_tick(&s, &mut ids).unwrap(), None);
        // A price without a time, or a bad time, is an error.
        let (s, _) = item("1|2|#|#|#", 5);
        assert_eq!(chart_tick(&s, &mut ids).unwrap_err().field, "UTM");
        let (s, _) = item("1|2|#|#|12", 5);
        assert_eq!(chart_tick(&s, &mut ids).unwrap_err().field, "UTM");
        let (s, _) = item("1|2|3|-4|1658218747365", 5);
        assert_eq!(chart_tick(&s, &mut ids).unwrap_err().field, "LTV");
        // One side missing: the traded price still makes a tick, without a quote.
        let (s, _) = item("#|2|1.5|#|1658218747365", 5);
        let t = chart_tick(&s, &mut ids).unwrap().unwrap();
        assert_eq!((t.price, t.quote), (1.5, None));
    }

    #[test]
    fn trade_ids_depend_on_the_event_only() {
        let events = [
            "1.1|1.2|1.15|1|1700000000000",
            "1.1|1.2|1.15|1|1700000000000", // the same again in the same millisecond
            "1.1|1.2|1.16|1|1700000000000",
            "1.1|1.2|1.16|1|1700000000001",
        ];
        let ids = |from: usize| {
            let mut ids = TickIds::default();
            events[from..]
                .iter()
                .map(|e| chart_tick(&item(e, 5).0, &mut ids).unwrap().unwrap().trade_id)
                .collect::<Vec<_>>()
        };
        let all = ids(0);
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), 4, "{all:?}");
        assert!(all[0].starts_with("1700000000000-"));
        // A replay that starts at the third event (a snapshot after a reconnect) gives the
        // same ids to the events it repeats.
        assert_eq!(ids(2), all[2..]);
        assert_eq!(fnv1a(&[Some("a")]), fnv1a(&[Some("a")]));
        assert_ne!(fnv1a(&[Some("a"), None]), fnv1a(&[None, Some("a")]));
    }

    #[test]
    fn midpoints_are_decimal() {
        assert_eq!(midpoint(6224.9, 6226.7), 6225.8);
        assert_eq!(midpoint(1.13, 1.132), 1.131);
        assert_eq!(midpoint(1.5, 1.5), 1.5);
        assert_eq!(midpoint(1.0, 2.0), 1.5);
        // Numbers IG does not write in plain decimals are left as computed.
        assert!((midpoint(1e-20, 3e-20) - 2e-20).abs() < 1e-35);
        assert_eq!(midpoint(f64::MAX, f64::MAX), f64::MAX);
    }
}
