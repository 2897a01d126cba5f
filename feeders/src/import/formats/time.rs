//! Timestamps as trade files write them: ISO 8601 text or a number since the Unix epoch.
//! Everything becomes microseconds since the Unix epoch (what `timestamptz` keeps; finer
//! digits are truncated).

use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;

/// The unit of a numeric timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl TimeUnit {
    pub fn parse(s: &str) -> Result<TimeUnit, String> {
        match s {
            "s" => Ok(TimeUnit::Seconds),
            "ms" => Ok(TimeUnit::Millis),
            "us" | "µs" => Ok(TimeUnit::Micros),
            "ns" => Ok(TimeUnit::Nanos),
            _ => Err(format!("unknown time unit '{s}' (expected s, ms, us or ns)")),
        }
    }

    /// The unit of a count since the epoch, judged by its size: seconds until the year 5138,
    /// then milliseconds, microseconds and nanoseconds (files of 1970 in ms would be misread).
    fn guess(integer_digits: usize) -> TimeUnit {
        match integer_digits {
            0..=11 => TimeUnit::Seconds,
            12..=14 => TimeUnit::Millis,
            15..=17 => TimeUnit::Micros,
            _ => TimeUnit::Nanos,
        }
    }
}

/// 1970-01-01 and 2200-01-01 in µs: outside them a time is taken for a wrong unit or a typo.
pub const MIN_US: i64 = 0;
pub const MAX_US: i64 = 7_258_118_400 * 1_000_000;

/// How to read a file's timestamps.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeOptions {
    /// The unit of numeric times; guessed from their size when `None`.
    pub unit: Option<TimeUnit>,
    /// Text times are wall-clock times in this zone, whatever zone designator they carry
    /// (some exports write local times with a `Z`). `None`: the designator decides, UTC if none.
    pub local: Option<Tz>,
}

/// A timestamp in µs since the Unix epoch, inside [`MIN_US`, `MAX_US`).
pub fn parse_time(s: &str, opts: TimeOptions) -> Result<i64, String> {
    let s = s.trim();
    let b = s.as_bytes();
    let us = if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        parse_iso(s, opts.local)?
    } else {
        parse_epoch(s, opts.unit)?
    };
    if !(MIN_US..MAX_US).contains(&us) {
        return Err(format!("time '{s}' is outside 1970–2200 (wrong unit?)"));
    }
    Ok(us)
}

/// A decimal count since the epoch, e.g. `1582329602111000` or `1626992741.06217`.
fn parse_epoch(s: &str, unit: Option<TimeUnit>) -> Result<i64, String> {
    let bad = || format!("bad time '{s}' (expected ISO 8601 or a number since 1970)");
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.is_empty() || int.len() > 19 || !int.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let unit = unit.unwrap_or_else(|| TimeUnit::guess(int.trim_start_matches('0').len()));
    let whole: i64 = int.parse().map_err(|_| bad())?;
    // Digits of the fraction that still count at µs precision for this unit.
    let (per_unit, frac_digits) = match unit {
        TimeUnit::Seconds => (1_000_000, 6),
        TimeUnit::Millis => (1_000, 3),
        TimeUnit::Micros => (1, 0),
        TimeUnit::Nanos => return Ok(whole / 1_000),
    };
    let kept = &frac[..frac.len().min(frac_digits)];
    let mut frac_us = 0i64;
    if !kept.is_empty() {
        frac_us = kept.parse::<i64>().map_err(|_| bad())? * 10_i64.pow((frac_digits - kept.len()) as u32);
    }
    whole.checked_mul(per_unit).and_then(|w| w.checked_add(frac_us)).ok_or_else(bad)
}

/// `YYYY-MM-DD[T| ]HH:MM[:SS[.fraction]][Z|±HH[:MM]]`.
fn parse_iso(s: &str, local: Option<Tz>) -> Result<i64, String> {
    let bad = |why: &str| format!("bad time '{s}': {why}");
    let b = s.as_bytes();
    let digits = |from: usize, n: usize| -> Result<u32, String> {
        let part = b.get(from..from + n).ok_or_else(|| bad("too short"))?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(bad("expected digits"));
        }
        Ok(part.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
    };
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let date = NaiveDate::from_ymd_opt(year as i32, month, day).ok_or_else(|| bad("no such date"))?;
    let (mut hour, mut minute, mut second, mut micros) = (0, 0, 0, 0);
    let mut at = 10;
    if b.len() > 10 && (b[10] == b'T' || b[10] == b' ') {
        hour = digits(11, 2)?;
        if b.get(13) != Some(&b':') {
            return Err(bad("expected HH:MM"));
        }
        minute = digits(14, 2)?;
        at = 16;
        if b.get(16) == Some(&b':') {
            second = digits(17, 2)?;
            at = 19;
            if b.get(19) == Some(&b'.') {
                let n = b[20..].iter().take_while(|c| c.is_ascii_digit()).count();
                if n == 0 {
                    return Err(bad("empty fraction"));
                }
                let kept = n.min(6);
                micros = digits(20, kept)? * 10_u32.pow(6 - kept as u32);
                at = 20 + n;
            }
        }
    }
    let naive =
        date.and_hms_micro_opt(hour, minute, second, micros).ok_or_else(|| bad("time out of range"))?;
    let zone = &s[at..];
    let offset_s: i64 = match zone {
        "" | "Z" | "z" => 0,
        _ => {
            let zb = zone.as_bytes();
            let sign = match zb[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return Err(bad("expected Z or a ±HH:MM offset")),
            };
            let rest = &zone[1..];
            if !rest.is_ascii() {
                return Err(bad("expected Z or a ±HH:MM offset"));
            }
            let (h, m) = match rest.len() {
                2 => (rest, "00"),
                4 => (&rest[..2], &rest[2..]),
                5 if rest.as_bytes()[2] == b':' => (&rest[..2], &rest[3..]),
                _ => return Err(bad("expected Z or a ±HH:MM offset")),
            };
            let num = |p: &str| -> Result<i64, String> {
                if p.bytes().all(|c| c.is_ascii_digit()) {
                    p.parse().map_err(|_| bad("bad offset"))
                } else {
                    Err(bad("bad offset"))
                }
            };
            let (h, m) = (num(h)?, num(m)?);
            if h > 23 || m > 59 {
                return Err(bad("offset out of range"));
            }
            sign * (h * 3600 + m * 60)
        }
    };
    match local {
        Some(tz) => {
            // Daylight saving: an ambiguous wall time (the hour repeated in autumn) is taken
            // as its first occurrence; a time in the spring gap does not exist.
            let t = tz
                .from_local_datetime(&naive)
                .earliest()
                .ok_or_else(|| bad(&format!("does not exist in {tz} (daylight-saving gap)")))?;
            Ok(t.timestamp_micros())
        }
        None => Ok(naive.and_utc().timestamp_micros() - offset_s * 1_000_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> Result<i64, String> {
        parse_time(s, TimeOptions::default())
    }

    #[test]
    fn iso_forms() {
        // 2021-01-08T00:00:00Z is Unix 1610064000.
        let base = 1_610_064_000_000_000;
        assert_eq!(utc("2021-01-08T00:00:00.278Z"), Ok(base + 278_000));
        assert_eq!(utc("2021-01-08 00:00:00.000001999+00:00"), Ok(base + 1));
        assert_eq!(utc("2021-01-08T01:00:00+01:00"), Ok(base));
        assert_eq!(utc("2021-01-07T23:00:00-0100"), Ok(base));
        assert_eq!(utc("2021-01-08T00:00"), Ok(base));
        assert_eq!(utc("2021-01-08"), Ok(base));
        for bad in [
            "2021-13-08T00:00:00Z",
            "2021-02-30",
            "2021-01-08T24:00:00Z",
            "2021-01-08T00:00:00.Z",
            "2021-01-08X",
        ] {
            assert!(utc(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn local_wall_clock_overrides_the_designator() {
        let ny = TimeOptions { unit: None, local: Some(chrono_tz::America::New_York) };
        // 09:30 New York in September (EDT, UTC-4) is 13:30 UTC.
        assert_eq!(parse_time("2014-09-17T09:30:00Z", ny), utc("2014-09-17T13:30:00Z"));
        assert!(parse_time("2014-03-09T02:30:00", ny).unwrap_err().contains("gap"));
    }

    #[test]
    fn epoch_units_by_size_or_flag() {
        assert_eq!(utc("1582329602111000"), Ok(1_582_329_602_111_000));
        assert_eq!(utc("1582329602111"), Ok(1_582_329_602_111_000));
        assert_eq!(utc("1582329602"), Ok(1_582_329_602_000_000));
        assert_eq!(utc("1626992741.06217"), Ok(1_626_992_741_062_170));
        assert_eq!(utc("1582329602111000999"), Ok(1_582_329_602_111_000));
        let ms = TimeOptions { unit: Some(TimeUnit::Millis), local: None };
        assert_eq!(parse_time("1500.5", ms), Ok(1_500_500));
        for bad in ["", "-5", "1e9", "12a", "99999999999999999999", "9999999999"] {
            assert!(utc(bad).is_err(), "{bad}");
        }
    }
}
