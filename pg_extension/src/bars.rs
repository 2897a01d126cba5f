//! Loading bars for the bar engine: one query over the one-minute summaries (rolled up to the
//! requested timeframe), with each bar's session key and regular-hours flag from the symbol's
//! calendar. Live market state, the scheduler and backtests all read bars through here.

use crate::candle::{micros, Candle};
use crate::profile::Profile;
use pgrx::datum::Timestamp;
use pgrx::prelude::*;
use tapeflow_analytics::engine::BarInput;
use tapeflow_analytics::Micros;

const DAY: Micros = 86_400_000_000;

/// Rows fetched from the cursor at a time: bounds the memory a long range holds in PostgreSQL.
const FETCH_ROWS: i64 = 10_000;

/// A bar with its calendar context.
pub struct Bar {
    pub input: BarInput,
    /// Inside the symbol's regular session.
    pub in_session: bool,
}

/// A symbol's tick size and calendar.
pub struct Calendar {
    pub tick_size: f64,
    /// Session open and close as local times of day, µs.
    open: Micros,
    close: Micros,
}

impl Calendar {
    /// The session key of a bar starting at `local` (local time, µs since 2000-01-01): the
    /// days since 2000-01-01 of its session date, which is `tapeflow.session_date`'s rule (the
    /// local date of the time minus the session open).
    fn session(&self, local: Micros) -> i64 {
        (local - self.open).div_euclid(DAY)
    }

    /// Inside regular hours: [open, close) in local time; a session through midnight (futures,
    /// 17:00-16:00) is outside only between close and open; open = close is always inside.
    fn in_session(&self, local: Micros) -> bool {
        let t = local.rem_euclid(DAY);
        match self.open.cmp(&self.close) {
            std::cmp::Ordering::Equal => true,
            std::cmp::Ordering::Less => t >= self.open && t < self.close,
            std::cmp::Ordering::Greater => t >= self.open || t < self.close,
        }
    }
}

/// The symbol's tick size and calendar; errors name an unknown symbol.
pub fn calendar(symbol: &str) -> Calendar {
    let (tick_size, open, close) = Spi::get_three_with_args::<f64, i64, i64>(
        "SELECT tick_size, (extract(epoch FROM session_open) * 1000000)::bigint,
                (extract(epoch FROM session_close) * 1000000)::bigint
         FROM tapeflow.symbols WHERE symbol = $1",
        &[symbol.into()],
    )
    .unwrap_or_else(|e| error!("{e}"));
    match (tick_size, open, close) {
        (Some(tick_size), Some(open), Some(close)) => Calendar { tick_size, open, close },
        _ => error!("unknown symbol {symbol}"),
    }
}

/// The symbol's tick size; errors name an unknown symbol.
pub fn tick_size(symbol: &str) -> f64 {
    calendar(symbol).tick_size
}

/// Bars of `symbol` for `timeframe` overlapping [from, to), oldest first.
pub fn load(
    symbol: &str,
    timeframe: &str,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
) -> Vec<Bar> {
    if Spi::get_one_with_args::<bool>("SELECT tapeflow.timeframe_interval($1) IS NULL", &[timeframe.into()])
        .unwrap_or_default()
        .unwrap_or(true)
    {
        error!("unknown timeframe {timeframe}: use one of 1m, 5m, 15m, 30m, 1h, 1d");
    }
    let cal = calendar(symbol);
    // One-minute bars are read as stored, in no particular order (sorted here, which is cheaper
    // than a sort in the query); longer ones are rolled up from them.
    let bars = if timeframe == "1m" {
        "SELECT b.bucket AS t, b.candle, b.profile"
    } else {
        "SELECT tapeflow.bar_start(b.bucket, $2, s.timezone, s.session_open) AS t,
                tapeflow.rollup(b.candle) AS candle, tapeflow.rollup(b.profile) AS profile"
    };
    let group_by = if timeframe == "1m" { "" } else { "GROUP BY 1" };
    let sql = format!(
        "WITH s AS (SELECT timezone, session_open FROM tapeflow.symbols WHERE symbol = $1)
         SELECT x.t, x.candle, x.profile, x.t AT TIME ZONE s.timezone
         FROM s, LATERAL (
            {bars}
            FROM tapeflow.minute_bars b
            WHERE b.symbol = $1 AND b.bucket >= tapeflow.bar_start($3, $2, s.timezone, s.session_open)
              AND b.bucket < $4
            {group_by}
         ) x"
    );
    let mut out: Vec<Bar> = Vec::new();
    Spi::connect(|client| {
        let mut cursor = client.open_cursor(&sql, &[symbol.into(), timeframe.into(), from.into(), to.into()]);
        loop {
            let table = cursor.fetch(FETCH_ROWS).unwrap_or_else(|e| error!("loading bars of {symbol}: {e}"));
            if table.is_empty() {
                break;
            }
            for row in table {
                let t: TimestampWithTimeZone = row.get(1).ok().flatten().expect("bar time");
                let candle: Candle = row.get(2).ok().flatten().expect("candle");
                let profile: Option<Profile> = row.get(3).ok().flatten();
                let local: Timestamp = row.get(4).ok().flatten().expect("local time");
                let local = local.into_inner();
                out.push(Bar {
                    input: BarInput {
                        time: micros(t),
                        session: cal.session(local),
                        candle: candle.0,
                        profile: profile.map(|p| p.0),
                        position: None,
                    },
                    in_session: cal.in_session(local),
                });
            }
            // SAFETY: the rows just read are copied out; freeing the chunk keeps memory flat
            // over a long range (pgrx would keep every chunk until the connection ends).
            unsafe { pg_sys::SPI_freetuptable(pg_sys::SPI_tuptable) };
        }
    });
    sort_and_merge(&mut out);
    out
}

/// Sorts bars by time; a minute present both as ticks and as an imported bar is one bar, rolled
/// up from both (as `tapeflow.minute_bars` is documented to be).
fn sort_and_merge(bars: &mut Vec<Bar>) {
    bars.sort_unstable_by_key(|b| b.input.time);
    bars.dedup_by(|later, kept| {
        if later.input.time != kept.input.time {
            return false;
        }
        kept.input.candle.merge(&later.input.candle);
        kept.input.profile = match (kept.input.profile.take(), later.input.profile.take()) {
            (Some(mut a), Some(b)) => {
                a.merge(&b).unwrap_or_else(|e| error!("bar at {}: {e}", later.input.time));
                Some(a)
            }
            (a, b) => a.or(b),
        };
        true
    });
}
