//! Helpers for aggregates whose transition state is an `internal` Rust value.
//!
//! The state must live in the aggregate's memory context (not the per-call one), or it would be
//! freed between rows; serialize/deserialize give it a `bytea` form for parallel workers.

use pgrx::prelude::*;
use pgrx::Internal;

/// Runs `f` with the aggregate memory context current, so values allocated there survive rows.
pub fn in_agg_context<R>(fcinfo: pg_sys::FunctionCallInfo, f: impl FnOnce() -> R) -> R {
    unsafe {
        let mut ctx: pg_sys::MemoryContext = std::ptr::null_mut();
        if fcinfo.is_null() || pg_sys::AggCheckCallContext(fcinfo, &mut ctx) == 0 {
            error!("this function can only be called as part of an aggregate");
        }
        let old = pg_sys::MemoryContextSwitchTo(ctx);
        let r = f();
        pg_sys::MemoryContextSwitchTo(old);
        r
    }
}

/// The state inside `internal`, created with `init` on the first row.
///
/// # Safety
/// `state` must be null or hold a `T` created by this function for the same aggregate.
pub unsafe fn state_mut<T>(
    state: &mut Internal,
    fcinfo: pg_sys::FunctionCallInfo,
    init: impl FnOnce() -> T,
) -> &mut T {
    if !state.initialized() {
        let value = init();
        in_agg_context(fcinfo, || unsafe { state.insert(value) });
    }
    unsafe { state.get_mut::<T>().expect("initialized above") }
}

/// Reads the state of an `internal` argument, if any.
///
/// # Safety
/// As for [`state_mut`].
pub unsafe fn state_ref<T>(state: &Internal) -> Option<&T> {
    unsafe { state.get::<T>() }
}

/// Stores a new state value in the aggregate memory context.
pub fn new_state<T>(fcinfo: pg_sys::FunctionCallInfo, value: T) -> Internal {
    in_agg_context(fcinfo, || Internal::new(value))
}
