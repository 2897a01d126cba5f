//! The first stage of a run: every bar of every symbol through its own bar engine, on worker
//! threads.
//!
//! The engine's readings of a bar do not depend on the position; only the strategy's decision
//! does ([`BarEngine::observe`] and [`BarOutput::strategy_input`]). So the symbols are
//! independent here and run in parallel, while the caller's thread produces the next symbol's
//! bars (the database loads them). The simulator then walks all symbols in time order and asks
//! the strategy at each bar, with the position it holds ([`Readings`] as its signal source).

use super::{
    check_series, BacktestData, BacktestError, BarContext, Progress, SignalSource, Stage, SymbolSeries,
};
use crate::candle::Micros;
use crate::engine::{BarEngine, BarInput, EngineError, EngineParams};
use crate::strategy::{evaluate, Signal, StrategyInput, StrategyParams};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

/// Bars a worker evaluates between looks at the cancel flag.
const CHUNK: usize = 4096;

/// How often the calling thread reports progress while it waits for the workers.
const REPORT_EVERY: Duration = Duration::from_millis(100);

/// The engine's readings of every bar: per symbol, per bar, what the strategy decides on
/// (`None` before the warm-up ends).
#[derive(Debug, Clone, Default)]
pub struct Readings {
    symbols: Vec<Vec<Option<StrategyInput>>>,
    strategy: StrategyParams,
}

impl SignalSource for Readings {
    fn on_bar(
        &mut self,
        symbol: usize,
        bar: &BarInput,
        ctx: &BarContext,
    ) -> Result<Option<Signal>, EngineError> {
        let input = self.symbols[symbol][ctx.bar_index];
        Ok(input.and_then(|i| evaluate(&i, bar.position, &self.strategy)))
    }
}

/// One symbol's evaluation: its readings, or why there are none.
pub(super) type Outcome = Result<Vec<Option<StrategyInput>>, Failure>;

/// Why a symbol has no readings.
#[derive(Debug)]
pub(super) enum Failure {
    /// The engine refused the bar starting at this time.
    Engine(Micros, EngineError),
    /// The evaluation panicked (a defect), with the panic's message.
    Panicked(String),
}

/// How a worker evaluates one symbol: [`evaluate_series`]; tests substitute others.
pub(super) type Evaluator = dyn Fn(&EngineParams, &SymbolSeries, &AtomicU64, &AtomicBool) -> Outcome + Sync;

/// Evaluates `count` symbols produced one by one by `produce` (called on this thread, in
/// order, while workers evaluate the symbols already produced), on `threads` worker threads.
/// Returns the checked data (symbol priority = order produced) and the readings.
///
/// Memory stays bounded by the bars themselves: bar profiles are dropped once a symbol is
/// evaluated (the simulator does not read them), and at most `threads` symbols wait loaded
/// but not yet evaluated, so a long run over tick-built bars never holds all their profiles.
///
/// Errors: the first error of `produce`, a malformed series, a panic while evaluating a symbol
/// ([`BacktestError::Panicked`], naming it), or the engine's refusal of a bar (the earliest in
/// `(time, symbol)` order, which is where a run bar by bar would have stopped). `progress` is
/// called from this thread after each symbol produced, at least every 100 ms while it waits,
/// and once all are evaluated; returning `false` cancels.
pub fn evaluate_all(
    engine: &EngineParams,
    threads: usize,
    count: usize,
    produce: &mut dyn FnMut(usize) -> Result<SymbolSeries, BacktestError>,
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<(BacktestData, Readings), BacktestError> {
    evaluate_all_with(engine, threads, count, produce, progress, &evaluate_series)
}

/// [`evaluate_all`] with each symbol evaluated by `evaluator`.
pub(super) fn evaluate_all_with(
    engine: &EngineParams,
    threads: usize,
    count: usize,
    produce: &mut dyn FnMut(usize) -> Result<SymbolSeries, BacktestError>,
    progress: &mut dyn FnMut(Progress) -> bool,
    evaluator: &Evaluator,
) -> Result<(BacktestData, Readings), BacktestError> {
    let slots: Vec<Slot> = (0..count).map(|_| Mutex::new(None)).collect();
    let readings = evaluate_slots(engine, threads, &slots, true, produce, progress, evaluator)?;
    let series =
        slots.into_iter().map(|s| unpoisoned(s.into_inner()).expect("every symbol was produced")).collect();
    Ok((BacktestData::checked(series), readings))
}

/// Evaluates the series of `data` (which keeps them whole, whatever the outcome: sweeps run
/// the same data again).
pub(super) fn evaluate_data(
    data: &mut BacktestData,
    engine: &EngineParams,
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<Readings, BacktestError> {
    let slots: Vec<Slot> =
        std::mem::take(&mut data.symbols).into_iter().map(|s| Mutex::new(Some(s))).collect();
    let readings = evaluate_slots(
        engine,
        data.threads,
        &slots,
        false,
        &mut |_| unreachable!("data is loaded"),
        progress,
        &evaluate_series,
    );
    data.symbols = slots.into_iter().map(|s| unpoisoned(s.into_inner()).expect("loaded")).collect();
    readings
}

/// One symbol's series: filled by the calling thread, then evaluated by one worker.
type Slot = Mutex<Option<SymbolSeries>>;

/// A lock's value even if a thread panicked holding it (the panic itself is what gets
/// reported).
fn unpoisoned<T>(r: Result<T, std::sync::PoisonError<T>>) -> T {
    r.unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the workers finished, in symbol order.
struct Results {
    outcomes: Vec<Option<Outcome>>,
    received: usize,
    rx: mpsc::Receiver<(usize, Outcome)>,
}

impl Results {
    /// Takes one finished symbol, waiting up to `wait` for it (not at all for `None`); `false`
    /// when none came. Errors when none can come any more (every worker is gone) although
    /// some of the `queued` symbols are not finished, naming the first of them.
    fn take(&mut self, wait: Option<Duration>, queued: usize, slots: &[Slot]) -> Result<bool, BacktestError> {
        let got = match wait {
            Some(d) => self.rx.recv_timeout(d).map_err(|e| e == mpsc::RecvTimeoutError::Disconnected),
            None => self.rx.try_recv().map_err(|e| e == mpsc::TryRecvError::Disconnected),
        };
        match got {
            Ok((i, outcome)) => {
                self.outcomes[i] = Some(outcome);
                self.received += 1;
                Ok(true)
            }
            Err(true) if self.received < queued => {
                let i = (0..queued).find(|&i| self.outcomes[i].is_none()).unwrap_or(0);
                Err(BacktestError::Panicked {
                    symbol: symbol_of(&slots[i]),
                    message: "its worker thread stopped before evaluating it".into(),
                })
            }
            Err(_) => Ok(false),
        }
    }
}

fn symbol_of(slot: &Slot) -> String {
    unpoisoned(slot.lock()).as_ref().map(|s| s.symbol.clone()).unwrap_or_default()
}

/// The message of a panic's payload (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_string(),
        (None, Some(s)) => s.clone(),
        (None, None) => "a panic without a message".into(),
    }
}

/// The evaluation proper: empty slots are filled by `produce` (and checked), in order, on this
/// thread; workers evaluate each filled slot with `evaluator`, and drop its bar profiles after
/// with `drop_profiles`. A panic while evaluating a symbol is caught on its worker and becomes
/// that symbol's outcome, so every queued symbol reports back and the wait below ends.
fn evaluate_slots(
    engine: &EngineParams,
    threads: usize,
    slots: &[Slot],
    drop_profiles: bool,
    produce: &mut dyn FnMut(usize) -> Result<SymbolSeries, BacktestError>,
    progress: &mut dyn FnMut(Progress) -> bool,
    evaluator: &Evaluator,
) -> Result<Readings, BacktestError> {
    let count = slots.len();
    let workers = threads.clamp(1, count.max(1));
    let evaluated = AtomicU64::new(0);
    let cancel = AtomicBool::new(false);
    let (job_tx, job_rx) = mpsc::channel::<usize>();
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<(usize, Outcome)>();
    let mut results = Results { outcomes: (0..count).map(|_| None).collect(), received: 0, rx: done_rx };

    std::thread::scope(|scope| {
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let (job_rx, evaluated, cancel) = (&job_rx, &evaluated, &cancel);
            scope.spawn(move || {
                block_signals();
                loop {
                    let job = job_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok(i)) = job else { break };
                    let mut slot = unpoisoned(slots[i].lock());
                    let series = slot.as_mut().expect("filled before it is queued");
                    let outcome =
                        catch_unwind(AssertUnwindSafe(|| evaluator(engine, &*series, evaluated, cancel)))
                            .unwrap_or_else(|payload| Err(Failure::Panicked(panic_message(&*payload))));
                    if drop_profiles {
                        series.bars.iter_mut().for_each(|b| b.input.profile = None);
                    }
                    drop(slot);
                    if done_tx.send((i, outcome)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);

        let (mut loaded, mut bars_loaded) = (0usize, 0u64);
        let mut report = |loaded: usize, bars_loaded: u64, received: usize| {
            progress(Progress {
                stage: Stage::Evaluating,
                bars_processed: evaluated.load(Ordering::Relaxed),
                bars_total: bars_loaded,
                symbols_loaded: loaded,
                symbols_done: received,
                symbols: count,
                time: 0,
                trades: 0,
            })
        };
        let cancelled = || BacktestError::Cancelled { bars_processed: evaluated.load(Ordering::Relaxed) };
        // However this thread leaves (an error, or a panic out of `produce` or `progress`,
        // which is how PostgreSQL errors travel), busy workers stop at their next chunk; the
        // scope then joins them all.
        let _stop_workers = SetOnDrop(&cancel);
        let feed = || -> Result<(), BacktestError> {
            for (i, slot) in slots.iter().enumerate() {
                // At most `workers` symbols wait loaded but not evaluated.
                while loaded - results.received > workers {
                    if !results.take(Some(REPORT_EVERY), loaded, slots)?
                        && !report(loaded, bars_loaded, results.received)
                    {
                        return Err(cancelled());
                    }
                }
                let mut slot = unpoisoned(slot.lock());
                if slot.is_none() {
                    let series = produce(i)?;
                    check_series(&series)?;
                    *slot = Some(series);
                }
                loaded += 1;
                bars_loaded += slot.as_ref().map_or(0, |s| s.bars.len() as u64);
                drop(slot);
                // Workers hold the receiver as long as the scope runs, so this cannot fail.
                let _ = job_tx.send(i);
                while results.take(None, loaded, slots)? {}
                if !report(loaded, bars_loaded, results.received) {
                    return Err(cancelled());
                }
            }
            // No more symbols: idle workers stop.
            drop(job_tx);
            while results.received < count {
                if !results.take(Some(REPORT_EVERY), loaded, slots)?
                    && !report(loaded, bars_loaded, results.received)
                {
                    return Err(cancelled());
                }
            }
            // The stage's last report: every symbol evaluated.
            match report(loaded, bars_loaded, results.received) {
                true => Ok(()),
                false => Err(cancelled()),
            }
        };
        feed()
    })?;

    let mut readings = Vec::with_capacity(count);
    let mut first_error: Option<(Micros, usize, EngineError)> = None;
    for (i, outcome) in results.outcomes.into_iter().enumerate() {
        match outcome.expect("every symbol was evaluated") {
            Ok(r) => readings.push(r),
            // A defect, not a property of the data: reported first, whatever its time.
            Err(Failure::Panicked(message)) => {
                return Err(BacktestError::Panicked { symbol: symbol_of(&slots[i]), message })
            }
            Err(Failure::Engine(time, error)) => {
                if first_error.as_ref().is_none_or(|(t, _, _)| time < *t) {
                    first_error = Some((time, i, error));
                }
                readings.push(Vec::new());
            }
        }
    }
    if let Some((time, i, error)) = first_error {
        return Err(BacktestError::Engine { symbol: symbol_of(&slots[i]), time, error });
    }
    Ok(Readings { symbols: readings, strategy: engine.strategy.clone() })
}

struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One symbol through a fresh engine; stops early (with whatever it has) once cancelled.
pub(super) fn evaluate_series(
    engine: &EngineParams,
    series: &SymbolSeries,
    evaluated: &AtomicU64,
    cancel: &AtomicBool,
) -> Outcome {
    let mut e = BarEngine::new(engine.clone(), series.tick_size)
        .map_err(|error| Failure::Engine(series.bars.first().map_or(0, |b| b.input.time), error))?
        .without_lvns();
    let mut out = Vec::with_capacity(series.bars.len());
    for chunk in series.bars.chunks(CHUNK) {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        for b in chunk {
            let reading = e.observe(&b.input).map_err(|error| Failure::Engine(b.input.time, error))?;
            out.push(reading.strategy_input());
        }
        evaluated.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    Ok(out)
}

/// Keeps the host process's signals off worker threads: inside PostgreSQL, its handlers (cancel,
/// timeouts, latches) expect to run on the backend's own thread.
fn block_signals() {
    #[cfg(unix)]
    // SAFETY: an all-ones mask for this thread only; no memory is shared.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
