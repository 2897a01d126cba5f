//! The scheduler: a background worker (started when the cluster preloads `tapeflow`) that
//! calls `tapeflow.run_cycle()` about every second in one database. A failing strategy config
//! does not fail the cycle (run_cycle evaluates each in its own subtransaction), and a cycle
//! that fails as a whole is rolled back, logged as a WARNING and tried again at the next
//! interval: the worker keeps running.
//!
//! Settings (postgresql.conf): `tapeflow.scheduler` on/off (reload), `tapeflow.scheduler_database`
//! (default `tapeflow`, restart), `tapeflow.scheduler_interval_ms` (default 1000, reload).

use crate::live::in_subtransaction;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;
use std::ffi::CString;
use std::time::Duration;

static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"tapeflow"));
static INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);

pub fn init() {
    GucRegistry::define_bool_guc(
        c"tapeflow.scheduler",
        c"Run the live strategy scheduler.",
        c"When off, the background worker idles; run_cycle() can still be called by hand.",
        &ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"tapeflow.scheduler_interval_ms",
        c"Milliseconds between scheduler cycles.",
        c"",
        &INTERVAL_MS,
        100,
        60_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    // The worker and its postmaster-level setting exist only when the library is preloaded.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        GucRegistry::define_string_guc(
            c"tapeflow.scheduler_database",
            c"Database the scheduler runs run_cycle() in.",
            c"The database must have the tapeflow schema; until it does the worker waits.",
            &DATABASE,
            GucContext::Postmaster,
            GucFlags::default(),
        );
        BackgroundWorkerBuilder::new("tapeflow scheduler")
            .set_function("tapeflow_scheduler_main")
            .set_library("tapeflow")
            .enable_spi_access()
            // A database that does not exist yet (or a crash) restarts the worker.
            .set_restart_time(Some(Duration::from_secs(5)))
            .load();
    }
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn tapeflow_scheduler_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let db = DATABASE.get().and_then(|c| c.into_string().ok()).unwrap_or_else(|| "tapeflow".into());
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    log!("tapeflow scheduler started in database {db}");
    loop {
        let interval = Duration::from_millis(INTERVAL_MS.get().max(100) as u64);
        if !BackgroundWorker::wait_latch(Some(interval)) {
            break; // SIGTERM
        }
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if !ENABLED.get() {
            continue;
        }
        BackgroundWorker::transaction(|| {
            let ready = Spi::get_one::<bool>(
                "SELECT to_regclass('tapeflow.strategy_configs') IS NOT NULL
                    AND EXISTS (SELECT 1 FROM tapeflow.strategy_configs WHERE enabled)",
            )
            .ok()
            .flatten()
            .unwrap_or(false);
            if ready {
                let cycle = in_subtransaction(|| {
                    Spi::run("SELECT count(*) FROM tapeflow.run_cycle()")
                        .unwrap_or_else(|e| error!("run_cycle: {e}"))
                });
                if let Err(e) = cycle {
                    warning!("tapeflow scheduler: the cycle failed and is retried at the next interval: {e}");
                }
            }
        });
    }
    log!("tapeflow scheduler stopped");
}
