//! Limits on what browsers may ask of the server: backtests (each runs on its own database
//! connection with up to one thread per core) and SSE clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tapeflow_db::config::env_or;

/// From the environment (see the README for the defaults).
#[derive(Debug, Clone)]
pub struct Limits {
    /// `TAPEFLOW_WEB_BACKTESTS_PER_USER` (2): runs one user may have going at once.
    pub backtests_per_user: usize,
    /// `TAPEFLOW_WEB_BACKTESTS_TOTAL` (4): runs going at once for everybody together.
    pub backtests_total: usize,
    /// `TAPEFLOW_WEB_BACKTEST_MAX_DAYS` (400): the longest range of one run, in days.
    pub backtest_max_days: i64,
    /// `TAPEFLOW_WEB_BACKTEST_MAX_SYMBOLS` (20): symbols in one run.
    pub backtest_max_symbols: usize,
    /// `TAPEFLOW_WEB_BACKTEST_THREADS` (unset: the server's `tapeflow.backtest_threads`):
    /// threads of one run started from the dashboard.
    pub backtest_threads: Option<i32>,
    /// `TAPEFLOW_WEB_MAX_SSE` (1000): `/events` clients at once; more are refused with 503.
    pub max_sse: usize,
    /// `TAPEFLOW_WEB_WRITE_TIMEOUT_MS` (10000): a connection whose writes make no progress
    /// this long (a client that stopped reading) is closed.
    pub write_timeout: Duration,
}

impl Limits {
    pub fn from_env() -> anyhow::Result<Limits> {
        let threads: i32 = env_or("TAPEFLOW_WEB_BACKTEST_THREADS", -1)?;
        Ok(Limits {
            backtests_per_user: env_or("TAPEFLOW_WEB_BACKTESTS_PER_USER", 2usize)?.max(1),
            backtests_total: env_or("TAPEFLOW_WEB_BACKTESTS_TOTAL", 4usize)?.max(1),
            backtest_max_days: env_or("TAPEFLOW_WEB_BACKTEST_MAX_DAYS", 400i64)?.max(1),
            backtest_max_symbols: env_or("TAPEFLOW_WEB_BACKTEST_MAX_SYMBOLS", 20usize)?.max(1),
            backtest_threads: (threads >= 0).then_some(threads),
            max_sse: env_or("TAPEFLOW_WEB_MAX_SSE", 1000usize)?.max(1),
            write_timeout: Duration::from_millis(
                env_or("TAPEFLOW_WEB_WRITE_TIMEOUT_MS", 10_000u64)?.max(100),
            ),
        })
    }
}

/// Backtests running in this process, per user.
#[derive(Clone, Default)]
pub struct RunCounter {
    running: Arc<Mutex<HashMap<String, usize>>>,
}

/// One running backtest; dropping it frees its place.
pub struct RunSlot {
    counter: RunCounter,
    user: String,
}

impl RunCounter {
    /// A place for a new run of `user`, or why there is none.
    pub fn acquire(&self, user: &str, limits: &Limits) -> Result<RunSlot, String> {
        let mut running = self.running.lock().expect("run counter");
        let total: usize = running.values().sum();
        let mine = running.get(user).copied().unwrap_or(0);
        if mine >= limits.backtests_per_user {
            return Err(format!(
                "{user} already has {mine} backtest(s) running (at most {} at once): wait for one to finish",
                limits.backtests_per_user
            ));
        }
        if total >= limits.backtests_total {
            return Err(format!(
                "{total} backtests are running (at most {} at once): wait for one to finish",
                limits.backtests_total
            ));
        }
        *running.entry(user.to_string()).or_insert(0) += 1;
        metrics::gauge!("tapeflow_web_backtests_running").set((total + 1) as f64);
        Ok(RunSlot { counter: self.clone(), user: user.to_string() })
    }
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        let mut running = self.counter.running.lock().expect("run counter");
        if let Some(n) = running.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.user);
            }
        }
        metrics::gauge!("tapeflow_web_backtests_running").set(running.values().sum::<usize>() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_user: usize, total: usize) -> Limits {
        Limits {
            backtests_per_user: per_user,
            backtests_total: total,
            backtest_max_days: 400,
            backtest_max_symbols: 20,
            backtest_threads: None,
            max_sse: 10,
            write_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn runs_are_capped_per_user_and_in_total() {
        let c = RunCounter::default();
        let l = limits(2, 3);
        let a1 = c.acquire("a", &l).unwrap();
        let _a2 = c.acquire("a", &l).unwrap();
        let err = c.acquire("a", &l).err().unwrap();
        assert!(err.contains("a already has 2"), "{err}");
        let _b1 = c.acquire("b", &l).unwrap();
        assert!(c.acquire("b", &l).err().unwrap().contains("3 backtests are running"));
        drop(a1);
        assert!(c.acquire("b", &l).is_ok());
    }
}
