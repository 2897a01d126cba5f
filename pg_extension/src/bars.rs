//! Loading bars for the bar engine, with each bar's session key and regular-hours flag from the
//! symbol's calendar, as the series a backtest runs over. Live market state, the scheduler and backtests all read bars through
//! here.
//!
//! One-minute bars are read straight from the two tables behind `tapeflow.minute_bars`
//! (tick-built `bars_1m` and `bars_1m_imported`, whose plain columns need no candle built and
//! decoded per row) and merged here as the view defines; longer timeframes are rolled up from
//! the view in SQL. Rows are handed over by the executor one by one and decoded straight from
//! its slots: a backtest reads millions of them.

use crate::candle::Candle;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use std::ffi::CString;
use tapeflow_analytics::backtest::{bar_profile_on_grid, BacktestBar, SymbolSeries};
use tapeflow_analytics::candle::Candle as C;
use tapeflow_analytics::engine::BarInput;
use tapeflow_analytics::profile::{BarProfile, Profile, ProfileError};
use tapeflow_analytics::Micros;

/// The symbol's tick size; errors name an unknown symbol.
fn tick_size(symbol: &str) -> f64 {
    Spi::get_one_with_args::<f64>(
        "SELECT tick_size FROM tapeflow.symbols WHERE symbol = $1",
        &[symbol.into()],
    )
    .unwrap_or_else(|e| error!("{e}"))
    .unwrap_or_else(|| error!("unknown symbol {symbol}"))
}

/// Bars of `symbol` for `timeframe` overlapping [from, to), oldest first, with the symbol's
/// tick size; each bar's `session_last_bar` is left unset (see `mark_session_ends`). Bar
/// profiles are as stored (one tick per row); see `load_on_grid` for engines on coarser rows.
pub fn load(
    symbol: &str,
    timeframe: &str,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
) -> SymbolSeries {
    load_on_grid(symbol, timeframe, from, to, 1)
}

/// `load` with bar profiles on rows of `ticks_per_row` ticks (an engine's `ticks_per_row`):
/// stored profiles are re-binned as they are decoded (`bar_profile_on_grid`: exactly the
/// profile of the same trades on that grid).
pub fn load_on_grid(
    symbol: &str,
    timeframe: &str,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
    ticks_per_row: u32,
) -> SymbolSeries {
    if Spi::get_one_with_args::<bool>("SELECT tapeflow.timeframe_interval($1) IS NULL", &[timeframe.into()])
        .unwrap_or_default()
        .unwrap_or(true)
    {
        error!("unknown timeframe {timeframe}: use one of 1m, 5m, 15m, 30m, 1h, 1d");
    }
    // Also what makes an unknown symbol an error rather than an empty result.
    let tick_size = tick_size(symbol);
    let args: [DatumWithOid; 4] = [symbol.into(), timeframe.into(), from.into(), to.into()];
    // The symbol's time zone and open, and the first bar's start (the bar containing `from`).
    let start = "WITH s AS (SELECT timezone, session_open, tapeflow.bar_start($3, $2, timezone, session_open) AS first
                            FROM tapeflow.symbols WHERE symbol = $1)";
    let mut bars: Vec<(Micros, C, Option<BarProfile>)> = Vec::new();
    if timeframe == "1m" {
        let imported = format!(
            "{start} SELECT b.bucket, b.open, b.high, b.low, b.close, b.volume FROM s, tapeflow.bars_1m_imported b
             WHERE b.symbol = $1 AND b.bucket >= s.first AND b.bucket < $4"
        );
        scan(&imported, &args, |v| {
            let t = timestamp(v[0]);
            let [o, h, l, c, vol] = [1, 2, 3, 4, 5].map(|i| float(v[i]));
            let candle = C::checked_ohlcv(t, o, h, l, c, vol)
                .unwrap_or_else(|e| error!("imported bar of {symbol} at {t}: {e}"));
            bars.push((t, candle, None));
        });
        let built = format!(
            "{start} SELECT b.bucket, b.candle, b.profile FROM s, tapeflow.bars_1m b
             WHERE b.symbol = $1 AND b.bucket >= s.first AND b.bucket < $4"
        );
        scan(&built, &args, |v| bars.push((timestamp(v[0]), candle(v[1]), profile(v[2], ticks_per_row))));
    } else {
        let rolled = format!(
            "{start} SELECT tapeflow.bar_start(b.bucket, $2, s.timezone, s.session_open),
                            tapeflow.rollup(b.candle), tapeflow.rollup(b.profile)
             FROM s, tapeflow.minute_bars b
             WHERE b.symbol = $1 AND b.bucket >= s.first AND b.bucket < $4
             GROUP BY 1"
        );
        scan(&rolled, &args, |v| bars.push((timestamp(v[0]), candle(v[1]), profile(v[2], ticks_per_row))));
    }
    sort_and_merge(&mut bars);
    let calendar = Calendar::load(symbol, bars.first().map(|b| b.0), bars.last().map(|b| b.0));
    SymbolSeries { symbol: symbol.to_string(), tick_size, bars: calendar.assign(bars) }
}

/// Sorts bars by time; a minute present both as ticks and as an imported bar is one bar, rolled
/// up from both (as `tapeflow.minute_bars` is documented to be).
fn sort_and_merge(bars: &mut Vec<(Micros, C, Option<BarProfile>)>) {
    bars.sort_unstable_by_key(|b| b.0);
    bars.dedup_by(|later, kept| {
        if later.0 != kept.0 {
            return false;
        }
        kept.1
            .merge(&later.1)
            .unwrap_or_else(|e| error!("bar at {}: candle volume or notional {e}", later.0));
        kept.2 = match (kept.2.take(), later.2.take()) {
            (Some(mut a), Some(b)) => {
                a.merge(&b).unwrap_or_else(|e| error!("bar at {}: {e}", later.0));
                Some(a)
            }
            (a, b) => a.or(b),
        };
        true
    });
}

/// One session of a symbol's calendar, as instants.
struct Session {
    /// Days since 2000-01-01 of the session date (`tapeflow.session_date`).
    key: i64,
    /// The session opens: local date + session open.
    start: Micros,
    /// Regular hours end: the session close (on the next day for a session through midnight),
    /// or the next session's start when open = close (always in session).
    regular_end: Micros,
}

/// A symbol's sessions over a range of bars, computed in SQL once per day instead of converting
/// every bar to local time.
struct Calendar(Vec<Session>);

impl Calendar {
    /// The sessions covering [first, last].
    fn load(symbol: &str, first: Option<Micros>, last: Option<Micros>) -> Calendar {
        let (Some(first), Some(last)) = (first, last) else {
            return Calendar(Vec::new());
        };
        let sql = "
            SELECT (d - date '2000-01-01')::bigint, (d + s.session_open) AT TIME ZONE s.timezone,
                   CASE WHEN s.session_open = s.session_close THEN (d + 1 + s.session_open) AT TIME ZONE s.timezone
                        WHEN s.session_open < s.session_close THEN (d + s.session_close) AT TIME ZONE s.timezone
                        ELSE (d + 1 + s.session_close) AT TIME ZONE s.timezone END
            FROM tapeflow.symbols s,
                 generate_series((tapeflow.session_date($2, s.timezone, s.session_open) - 1)::timestamp,
                                 tapeflow.session_date($3, s.timezone, s.session_open)::timestamp,
                                 interval '1 day') AS g,
                 LATERAL (SELECT g::date AS d) x
            WHERE s.symbol = $1 ORDER BY 1";
        let (first, last) = (crate::candle::timestamptz(first), crate::candle::timestamptz(last));
        let mut sessions = Vec::new();
        scan(sql, &[symbol.into(), first.into(), last.into()], |v| {
            sessions.push(Session {
                key: bigint(v[0]),
                start: timestamp(v[1]),
                regular_end: timestamp(v[2]),
            });
        });
        Calendar(sessions)
    }

    /// The bars (ascending) with their session key and regular-hours flag: the session is the
    /// last one started at or before the bar.
    fn assign(&self, bars: Vec<(Micros, C, Option<BarProfile>)>) -> Vec<BacktestBar> {
        let mut j = 0;
        bars.into_iter()
            .map(|(time, candle, profile)| {
                while j + 1 < self.0.len() && self.0[j + 1].start <= time {
                    j += 1;
                }
                let s = self
                    .0
                    .get(j)
                    .filter(|s| s.start <= time)
                    .unwrap_or_else(|| error!("no session of the calendar contains the bar at {time}"));
                let input = BarInput { time, session: s.key, candle, profile, position: None };
                BacktestBar::new(input, time < s.regular_end)
            })
            .collect()
    }
}

/// Runs a read-only query and calls `row` with each row's values (`None` for NULL), handed over
/// by the executor as it produces them: nothing is copied into an SPI result table, so memory
/// stays flat and a row costs little more than the executor's own work.
fn scan(sql: &str, args: &[DatumWithOid], mut row: impl FnMut(&[Option<pg_sys::Datum>])) {
    let query = CString::new(sql).expect("queries have no NUL bytes");
    Spi::connect(|_| {
        let mut receiver = RowReceiver {
            dest: pg_sys::DestReceiver {
                receiveSlot: Some(receive_slot),
                rStartup: Some(startup),
                rShutdown: Some(shutdown),
                rDestroy: Some(shutdown),
                mydest: pg_sys::CommandDest::DestNone,
            },
            row: &mut row,
            cells: Vec::new(),
        };
        // SAFETY: the parameter list is allocated for `args.len()` entries and filled with
        // datums that outlive the call; the receiver outlives the call that uses it.
        let rc = unsafe {
            let params = pg_sys::makeParamList(args.len() as i32);
            let slots = (*params).params.as_mut_slice(args.len());
            for (p, a) in slots.iter_mut().zip(args) {
                *p = pg_sys::ParamExternData {
                    value: a.datum().map_or(pg_sys::Datum::from(0), |d| d.sans_lifetime()),
                    isnull: a.datum().is_none(),
                    pflags: pg_sys::PARAM_FLAG_CONST as u16,
                    ptype: a.oid(),
                };
            }
            let options = pg_sys::SPIExecuteOptions {
                params,
                read_only: true,
                dest: &mut receiver.dest,
                ..Default::default()
            };
            pg_sys::SPI_execute_extended(query.as_ptr(), &options)
        };
        // A SELECT into a receiver of kind DestNone reports SPI_OK_UTILITY; failures are < 0.
        if rc < 0 {
            error!("reading bars failed (SPI code {rc}): {sql}");
        }
    });
}

/// A DestReceiver (PostgreSQL's row sink) that hands each row to a closure.
#[repr(C)]
struct RowReceiver<'a> {
    /// First, so a pointer to the receiver is a pointer to this.
    dest: pg_sys::DestReceiver,
    row: &'a mut dyn FnMut(&[Option<pg_sys::Datum>]),
    cells: Vec<Option<pg_sys::Datum>>,
}

#[pg_guard]
unsafe extern "C-unwind" fn receive_slot(
    slot: *mut pg_sys::TupleTableSlot,
    dest: *mut pg_sys::DestReceiver,
) -> bool {
    // SAFETY: `dest` is the first field of the RowReceiver that `scan` passed; the slot is
    // valid for this call and its values are deformed before they are read.
    unsafe {
        let me = &mut *(dest as *mut RowReceiver);
        pg_sys::slot_getallattrs(slot);
        let n = (*(*slot).tts_tupleDescriptor).natts as usize;
        let values = std::slice::from_raw_parts((*slot).tts_values, n);
        let nulls = std::slice::from_raw_parts((*slot).tts_isnull, n);
        me.cells.clear();
        me.cells.extend(values.iter().zip(nulls).map(|(&v, &null)| (!null).then_some(v)));
        (me.row)(&me.cells);
    }
    true
}

// Nothing to set up or tear down (and nothing that can fail).
unsafe extern "C-unwind" fn startup(_: *mut pg_sys::DestReceiver, _: std::ffi::c_int, _: pg_sys::TupleDesc) {}

unsafe extern "C-unwind" fn shutdown(_: *mut pg_sys::DestReceiver) {}

fn timestamp(d: Option<pg_sys::Datum>) -> Micros {
    // SAFETY: the column is a timestamptz (or timestamp): an int64 by value.
    unsafe { <TimestampWithTimeZone as FromDatum>::from_datum(d.expect("a time"), false) }
        .expect("not null")
        .into_inner()
}

fn bigint(d: Option<pg_sys::Datum>) -> i64 {
    // SAFETY: the column is a bigint.
    unsafe { i64::from_datum(d.expect("a bigint"), false) }.expect("not null")
}

fn float(d: Option<pg_sys::Datum>) -> f64 {
    // SAFETY: the column is a double precision (by value on 64-bit builds, which pgrx requires).
    unsafe { f64::from_datum(d.expect("a number"), false) }.expect("not null")
}

fn candle(d: Option<pg_sys::Datum>) -> C {
    // SAFETY: the column is a tapeflow.candle.
    unsafe { Candle::from_datum(d.expect("a candle"), false) }.expect("not null").0
}

/// A tapeflow.profile decoded straight into the engine's compact form (no hash map per bar),
/// on rows of `ticks_per_row` ticks: a profile on another grid is decoded whole and re-binned.
fn profile(d: Option<pg_sys::Datum>, ticks_per_row: u32) -> Option<BarProfile> {
    let d = d?;
    // SAFETY: the column is a tapeflow.profile (a varlena, possibly compressed or stored out of
    // line); a detoasted copy is freed once decoded, so a long scan does not accumulate them.
    unsafe {
        let raw = d.cast_mut_ptr::<pg_sys::varlena>();
        let v = pg_sys::pg_detoast_datum_packed(raw);
        let bytes = pgrx::varlena::varlena_to_byte_slice(v);
        let invalid = |e: ProfileError| format!("invalid tapeflow.profile value: {e}");
        let decoded = match ticks_per_row {
            1 => BarProfile::from_bytes(bytes).map_err(invalid),
            n => Profile::from_bytes(bytes)
                .map_err(invalid)
                .and_then(|p| bar_profile_on_grid(&p, n).map_err(|e| format!("bar profile: {e}"))),
        };
        if v != raw {
            pg_sys::pfree(v.cast());
        }
        Some(decoded.unwrap_or_else(|e| error!("{e}")))
    }
}
