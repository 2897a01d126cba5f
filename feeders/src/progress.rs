//! Progress of long loads (backfills, imports): a bar on a terminal, a log line every few
//! seconds otherwise (a CI log or a service journal has no use for a redrawn bar).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a progress line is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Progress towards `total` units (rows, bytes, seconds of history: the caller's choice).
pub struct Progress {
    bar: ProgressBar,
    label: String,
    unit: &'static str,
    interactive: bool,
    last_log: Mutex<Instant>,
}

impl Progress {
    /// A bar labelled `label` over `total` `unit`s, drawn on stderr when it is a terminal.
    pub fn new(label: &str, total: u64, unit: &'static str) -> Progress {
        let interactive = std::io::stderr().is_terminal();
        let bar = ProgressBar::with_draw_target(
            Some(total),
            if interactive { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg} (eta {eta})",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress { bar, label: label.to_string(), unit, interactive, last_log: Mutex::new(Instant::now()) }
    }

    /// Moves to `pos` units done (clamped to the total).
    pub fn set_position(&self, pos: u64) {
        self.bar.set_position(pos.min(self.bar.length().unwrap_or(u64::MAX)));
        self.maybe_log();
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        self.maybe_log();
    }

    /// The text after the bar (what is being loaded, counts so far).
    pub fn set_message(&self, msg: impl Into<String>) {
        self.bar.set_message(msg.into());
    }

    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Ends the bar with a last message (also logged).
    pub fn finish(&self, msg: impl Into<String>) {
        let msg = msg.into();
        self.bar.finish_with_message(msg.clone());
        tracing::info!(task = %self.label, %msg, "done");
    }

    fn maybe_log(&self) {
        if self.interactive {
            return;
        }
        let mut last = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() < LOG_EVERY {
            return;
        }
        *last = Instant::now();
        let total = self.bar.length().unwrap_or(0);
        let pct = if total == 0 { 100.0 } else { 100.0 * self.bar.position() as f64 / total as f64 };
        tracing::info!(task = %self.label, done = self.bar.position(), total, unit = self.unit,
            percent = format!("{pct:.1}"), msg = %self.bar.message(), "progress");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_is_clamped_and_counted() {
        let p = Progress::new("test", 100, "rows");
        p.inc(30);
        p.set_position(250);
        assert_eq!(p.position(), 100);
        p.set_position(40);
        assert_eq!(p.position(), 40);
        p.finish("ok");
    }
}
