//! The `tapeflow` PostgreSQL extension: thin SQL wrappers over `tapeflow-analytics`.

use pgrx::prelude::*;

::pgrx::pg_module_magic!();

mod aggstate;
pub mod candle;
mod varlena;

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["max_worker_processes = 16", "max_parallel_workers = 8"]
    }
}
