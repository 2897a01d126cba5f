//! Loading bars for the bar engine: one query over the one-minute summaries, rolled up to the
//! requested timeframe, with each bar's session key from the symbol's calendar. Live market
//! state, the scheduler and backtests all read bars through here.

use crate::candle::{micros, Candle};
use crate::profile::Profile;
use pgrx::prelude::*;
use tapeflow_analytics::engine::BarInput;

/// A bar with its calendar context.
pub struct Bar {
    pub input: BarInput,
    /// Inside the symbol's regular session.
    pub in_session: bool,
}

/// The symbol's tick size; errors name an unknown symbol.
pub fn tick_size(symbol: &str) -> f64 {
    Spi::get_one_with_args::<f64>(
        "SELECT tick_size FROM tapeflow.symbols WHERE symbol = $1",
        &[symbol.into()],
    )
    .unwrap_or_else(|e| error!("{e}"))
    .unwrap_or_else(|| error!("unknown symbol {symbol}"))
}

/// Bars of `symbol` for `timeframe` overlapping [from, to), oldest first.
pub fn load(
    symbol: &str,
    timeframe: &str,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
) -> Vec<Bar> {
    let sql = "
        WITH s AS (SELECT * FROM tapeflow.symbol_row($1)),
        bars AS (
            SELECT tapeflow.bar_start(b.bucket, $2, s.timezone, s.session_open) AS t,
                   tapeflow.rollup(b.candle) AS candle, tapeflow.rollup(b.profile) AS profile
            FROM s, tapeflow.minute_bars b
            WHERE b.symbol = $1 AND b.bucket >= tapeflow.bar_start($3, $2, s.timezone, s.session_open) AND b.bucket < $4
            GROUP BY 1
        )
        SELECT bars.t, bars.candle, bars.profile,
               (tapeflow.session_date(bars.t, s.timezone, s.session_open) - date '2000-01-01')::bigint AS session,
               CASE WHEN s.session_open = s.session_close THEN true
                    WHEN s.session_open < s.session_close
                    THEN (bars.t AT TIME ZONE s.timezone)::time >= s.session_open
                         AND (bars.t AT TIME ZONE s.timezone)::time < s.session_close
                    -- A session through midnight (futures: 17:00-16:00 Chicago).
                    ELSE (bars.t AT TIME ZONE s.timezone)::time >= s.session_open
                         OR (bars.t AT TIME ZONE s.timezone)::time < s.session_close END AS in_session
        FROM bars, s ORDER BY bars.t";
    if Spi::get_one_with_args::<bool>("SELECT tapeflow.timeframe_interval($1) IS NULL", &[timeframe.into()])
        .unwrap_or_default()
        .unwrap_or(true)
    {
        error!("unknown timeframe {timeframe}: use one of 1m, 5m, 15m, 30m, 1h, 1d");
    }
    Spi::connect(|client| {
        let table = client
            .select(sql, None, &[symbol.into(), timeframe.into(), from.into(), to.into()])
            .unwrap_or_else(|e| error!("loading bars of {symbol}: {e}"));
        let mut out = Vec::with_capacity(table.len());
        for row in table {
            let t: TimestampWithTimeZone = row.get(1).ok().flatten().expect("bar time");
            let candle: Candle = row.get(2).ok().flatten().expect("candle");
            let profile: Option<Profile> = row.get(3).ok().flatten();
            let session: i64 = row.get(4).ok().flatten().expect("session");
            let in_session: bool = row.get(5).ok().flatten().unwrap_or(true);
            out.push(Bar {
                input: BarInput {
                    time: micros(t),
                    session,
                    candle: candle.0,
                    profile: profile.map(|p| p.0),
                    position: None,
                },
                in_session,
            });
        }
        out
    })
}
