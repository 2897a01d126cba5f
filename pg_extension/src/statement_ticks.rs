//! The TimescaleDB path's insert triggers (sql/026): each symbol's newest minute among a
//! statement's ticks, gathered row by row instead of from a transition table.
//!
//! TimescaleDB 2.28 copies into a hypertable row by row when it has a trigger with a transition
//! table, and that path records no continuous-aggregate invalidation; with row triggers it keeps
//! its batched inserts and records them. So a BEFORE statement trigger opens a frame, an AFTER
//! row trigger (on every chunk) adds each stored row to it, and the AFTER statement trigger
//! takes it with [`statement_newest_minutes`]. Frames form a stack, since a statement can run
//! inside another (a function inserting ticks, called by an insert); an aborted (sub)transaction
//! drops the frames it opened. A row inserted straight into a chunk, with no statement on the
//! hypertable around it, is not gathered (no statement trigger fires for it either).

use crate::candle::{side_arg, timestamptz, Candle};
use pgrx::prelude::*;
use std::cell::RefCell;
use std::num::NonZeroUsize;
use tapeflow_analytics::newest_minute::NewestMinutes;

/// The columns read from a stored tick, in this order.
const COLUMNS: [&str; 6] = ["symbol", "time", "price", "size", "side", "trade_id"];

struct Frame {
    /// The subtransaction that opened it: aborting that one (or an enclosing one) drops it.
    subxact: pg_sys::SubTransactionId,
    minutes: NewestMinutes,
    /// The columns' numbers per relation: chunks created after a column was dropped number
    /// them differently from the hypertable.
    columns: Vec<(pg_sys::Oid, [NonZeroUsize; 6])>,
}

thread_local! {
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

unsafe extern "C-unwind" fn xact_ended(_event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    // Commit, abort or prepare alike: no statement outlives its transaction.
    FRAMES.with_borrow_mut(Vec::clear);
}

unsafe extern "C-unwind" fn subxact_event(
    event: pg_sys::SubXactEvent::Type,
    subxact: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        // Subtransaction ids grow within a transaction: frames opened in it or in one nested
        // inside it have ids at least its own.
        FRAMES.with_borrow_mut(|f| f.retain(|frame| frame.subxact < subxact));
    }
}

/// Registers the transaction callbacks; called once per process from `_PG_init`.
pub(crate) fn init() {
    // SAFETY: registering callbacks is allowed at any time; they touch this module's frames only.
    unsafe {
        pg_sys::RegisterXactCallback(Some(xact_ended), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_event), std::ptr::null_mut());
    }
}

/// BEFORE INSERT FOR EACH STATEMENT on `tapeflow.ticks`: opens the statement's frame.
#[pg_trigger]
fn ticks_statement_begin<'a>(
    _trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgHeapTupleError> {
    // SAFETY: plain accessor of the current transaction state.
    let subxact = unsafe { pg_sys::GetCurrentSubTransactionId() };
    FRAMES.with_borrow_mut(|f| {
        f.push(Frame { subxact, minutes: NewestMinutes::default(), columns: Vec::new() })
    });
    Ok(None)
}

/// The numbers of [`COLUMNS`] in `rel`'s rows.
///
/// # Safety
/// `rel` is an open relation.
unsafe fn column_numbers(rel: pg_sys::Relation) -> [NonZeroUsize; 6] {
    // SAFETY: an open relation has a valid tuple descriptor, and a name while it is open.
    let (desc, relname) = unsafe {
        let name = std::ffi::CStr::from_ptr(pg_sys::get_rel_name((*rel).rd_id));
        (pgrx::PgTupleDesc::from_pg_unchecked((*rel).rd_att), name.to_string_lossy().into_owned())
    };
    COLUMNS.map(|name| {
        desc.iter()
            .position(|a| !a.is_dropped() && a.name() == name)
            .and_then(|i| NonZeroUsize::new(i + 1))
            .unwrap_or_else(|| error!("tapeflow.ticks_row_gather: {relname} has no column {name}"))
    })
}

/// AFTER INSERT FOR EACH ROW on `tapeflow.ticks` (and so on each chunk): adds the stored row to
/// the innermost open statement's frame.
#[pg_trigger]
fn ticks_row_gather<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgHeapTupleError> {
    let data = trigger.trigger_data();
    FRAMES.with_borrow_mut(|frames| {
        let Some(frame) = frames.last_mut() else { return };
        // SAFETY: a row trigger's relation is open and its tuple is a row of that relation;
        // the columns read are NOT NULL (`get` refuses a NULL).
        unsafe {
            let rel = data.tg_relation;
            let relid = (*rel).rd_id;
            let cols = match frame.columns.iter().find(|(oid, _)| *oid == relid) {
                Some((_, cols)) => *cols,
                None => {
                    let cols = column_numbers(rel);
                    frame.columns.push((relid, cols));
                    cols
                }
            };
            let tuple = data.tg_trigtuple;
            let desc = (*rel).rd_att;
            let get = |i: usize| {
                pgrx::heap_getattr_raw(tuple, cols[i], desc)
                    .unwrap_or_else(|| error!("tapeflow.ticks_row_gather: a tick without {}", COLUMNS[i]))
            };
            let symbol = <&str>::from_datum(get(0), false).unwrap_or_default();
            let time = get(1).value() as i64;
            let price = f64::from_datum(get(2), false).unwrap_or_default();
            let size = f64::from_datum(get(3), false).unwrap_or_default();
            let side = side_arg(Some(get(4).value() as i8));
            let trade_id = <&str>::from_datum(get(5), false).unwrap_or_default();
            frame
                .minutes
                .add(symbol, time, price, size, side, trade_id)
                .unwrap_or_else(|e| error!("tapeflow.ticks_row_gather: trade {trade_id} of {symbol}: {e}"));
        }
    });
    Ok(None)
}

/// Each symbol's newest minute among the statement's stored ticks, in symbol order: its start,
/// the candle of the statement's trades in it and their keys. Takes (and closes) the innermost
/// open statement's frame; for the tick insert trigger of the TimescaleDB path only.
#[pg_extern(volatile, parallel_unsafe)]
fn statement_newest_minutes() -> TableIterator<
    'static,
    (
        name!(symbol, String),
        name!(bucket, TimestampWithTimeZone),
        name!(candle, Candle),
        name!(times, Vec<TimestampWithTimeZone>),
        name!(trade_ids, Vec<String>),
    ),
> {
    let frame = FRAMES.with_borrow_mut(Vec::pop).unwrap_or_else(|| {
        error!("tapeflow.statement_newest_minutes() is called by the TimescaleDB path's tick insert trigger only, after an insert into tapeflow.ticks")
    });
    TableIterator::new(frame.minutes.into_sorted().into_iter().map(|m| {
        let (times, ids) = m.keys.into_iter().map(|(t, id)| (timestamptz(t), id)).unzip();
        (m.symbol, timestamptz(m.bucket), Candle(m.candle), times, ids)
    }))
}
