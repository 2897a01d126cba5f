//! The `tapeflow` PostgreSQL extension: thin SQL wrappers over `tapeflow-analytics`.

// pgrx reads a set-returning function's columns from a literal tuple in its signature, so
// those return types cannot be factored into aliases.
#![allow(clippy::type_complexity)]

::pgrx::pg_module_magic!();

mod aggstate;
pub mod backtest;
mod bars;
pub mod candle;
pub mod classify;
mod expanded;
pub mod flow;
pub mod live;
mod polymarket;
pub mod profile;
mod scheduler;
pub mod state;
mod statement_ticks;
mod varlena;

#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    scheduler::init();
    backtest::init();
    varlena::register_invalidation();
    statement_ticks::init();
}

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["max_worker_processes = 16", "max_parallel_workers = 8"]
    }
}
