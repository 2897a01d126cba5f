//! The event loop and the portfolio; the rules are in the parent module's documentation.

use super::evaluate::evaluate_data;
use super::fills::{bracket_exit, FillModel};
use super::{
    money, round_money, to_f64, BacktestData, BacktestError, BacktestParams, BacktestResult, BarContext,
    BlockedSignals, DailyStat, DayBoundary, Direction, EquityPoint, ExitReason, Progress, SignalSource,
    SymbolSummary, Trade, DAY,
};
use crate::candle::{Candle, Micros};
use crate::sizing::{position_size, SizeBlock, SizeInputs};
use crate::strategy::{Signal, SignalKind};
use rust_decimal::Decimal;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Runs the live strategy over `data`: every symbol's bars through its own bar engine (on
/// the data's threads, see [`BacktestData::with_threads`]), then the simulator in time order
/// asking the strategy at each bar with the position it holds.
///
/// `progress` is called while the engines run and every `progress_every` bars of the
/// simulation (see [`BacktestData::with_progress_every`]) and once at the end; returning
/// `false` (except at the end) stops the run with [`BacktestError::Cancelled`]. `data` is only
/// changed in its bars' `input.position`, which the simulator sets before each evaluation; the
/// data can be run again.
pub fn run(
    data: &mut BacktestData,
    params: &BacktestParams,
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<BacktestResult, BacktestError> {
    params.validate()?;
    let mut readings = evaluate_data(data, &params.engine, progress)?;
    run_with(data, params, &mut readings, progress)
}

/// Like [`run`] with any signal source (a fresh one per run: sources keep state).
pub fn run_with<S: SignalSource + ?Sized>(
    data: &mut BacktestData,
    params: &BacktestParams,
    source: &mut S,
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<BacktestResult, BacktestError> {
    params.validate()?;
    let mut sim = Sim::new(data, params);
    let total = data.bars;
    let every = data.progress_every;

    // The global cursor: the next bar of every symbol, smallest (time, symbol index) first.
    let mut heap: BinaryHeap<Reverse<(Micros, usize)>> = data
        .symbols
        .iter()
        .enumerate()
        .filter_map(|(s, series)| series.bars.first().map(|b| Reverse((b.input.time, s))))
        .collect();
    let mut next = vec![0usize; data.symbols.len()];
    let mut current: Option<Micros> = None;
    let mut processed = 0u64;
    let mut until_report = every;
    while let Some(Reverse((time, s))) = heap.pop() {
        if current != Some(time) {
            if let Some(t) = current {
                sim.record_point(t);
            }
            current = Some(time);
        }
        let i = next[s];
        next[s] += 1;
        let series = &mut data.symbols[s];
        if let Some(b) = series.bars.get(i + 1) {
            heap.push(Reverse((b.input.time, s)));
        }
        sim.on_bar(s, i, series, source)?;
        processed += 1;
        until_report -= 1;
        if until_report == 0 {
            until_report = every;
            let p = Progress::simulating(processed, total, data.symbols.len(), time, sim.trades.len());
            if !progress(p) {
                return Err(BacktestError::Cancelled { bars_processed: processed });
            }
        }
    }
    if let Some(t) = current {
        sim.record_point(t);
    }
    sim.finish(data);
    if until_report != every || processed == 0 {
        let p = Progress::simulating(
            processed,
            total,
            data.symbols.len(),
            current.unwrap_or(0),
            sim.trades.len(),
        );
        // The run is complete: a late cancellation has nothing left to stop.
        let _ = progress(p);
    }
    Ok(sim.into_result(data, processed))
}

struct Position {
    dir: Direction,
    qty: u64,
    entry_price: Decimal,
    entry_fee: Decimal,
    entry_time: Micros,
    stop: f64,
    target: Option<f64>,
    signal: Signal,
    signal_time: Micros,
    /// Latest close, as money.
    mark: Decimal,
    /// Most favourable and most adverse market prices seen while held (start: entry price).
    best: f64,
    worst: f64,
    bars: u32,
    exit_pending: bool,
}

impl Position {
    fn value(&self) -> Decimal {
        let q = Decimal::from(self.qty);
        match self.dir {
            Direction::Long => q * self.mark,
            Direction::Short => q * (self.entry_price + self.entry_price - self.mark),
        }
    }

    /// Widens the excursions with market prices seen while held.
    fn see(&mut self, prices: &[f64]) {
        for &p in prices {
            let (fav, adv) = match self.dir {
                Direction::Long => (p > self.best, p < self.worst),
                Direction::Short => (p < self.best, p > self.worst),
            };
            if fav {
                self.best = p;
            }
            if adv {
                self.worst = p;
            }
        }
    }
}

/// Why an entry signal was refused.
#[derive(Clone, Copy)]
enum Block {
    OutOfSession,
    ShortsDisabled,
    DailyLoss,
    MaxPositions,
    Size,
    Cash,
}

impl Block {
    fn counter(self, b: &mut BlockedSignals) -> &mut u64 {
        match self {
            Block::OutOfSession => &mut b.out_of_session,
            Block::ShortsDisabled => &mut b.shorts_disabled,
            Block::DailyLoss => &mut b.daily_loss,
            Block::MaxPositions => &mut b.max_positions,
            Block::Size => &mut b.size,
            Block::Cash => &mut b.cash,
        }
    }
}

struct Pending {
    signal: Signal,
    signal_time: Micros,
    dir: Direction,
    qty: u64,
    reserved: Decimal,
}

#[derive(Default)]
struct SymState {
    position: Option<Position>,
    pending: Option<Pending>,
    first: Option<(Micros, f64)>,
    last: Option<(Micros, f64)>,
    bars: u64,
    trades: u64,
}

/// How an exit fills.
#[derive(Clone, Copy)]
struct ExitFill {
    time: Micros,
    /// The market price that triggered the exit (open, stop, target or close).
    price: f64,
    /// Market-like (slippage applies) rather than a limit.
    slipped: bool,
    reason: ExitReason,
}

struct Sim<'p> {
    p: &'p BacktestParams,
    /// Per symbol: `slippage_ticks × tick_size`, in money.
    slip_abs: Vec<Decimal>,
    /// `slippage_bps / 10000`.
    slip_frac: Decimal,
    /// `commission_pct / 100`.
    fee_frac: Decimal,
    max_positions: usize,
    daily_loss_frac: Decimal,

    cash: Decimal,
    /// Cash set aside by pending entries.
    reserved: Decimal,
    pending_count: usize,
    /// Symbols with an open position, in the order they were opened.
    held: Vec<usize>,
    states: Vec<SymState>,
    peak: Decimal,
    in_market: bool,

    day: Option<i64>,
    day_start: Decimal,
    day_entries: u32,
    day_trades: u32,

    trades: Vec<Trade>,
    equity: Vec<EquityPoint>,
    daily: Vec<DailyStat>,
    signals_seen: u64,
    blocked: BlockedSignals,
}

impl<'p> Sim<'p> {
    fn new(data: &BacktestData, p: &'p BacktestParams) -> Sim<'p> {
        let model = FillModel::from_params(p);
        let slip_abs = data.symbols.iter().map(|s| model.slip_abs(s.tick_size)).collect();
        let strategy = &p.engine.strategy;
        Sim {
            p,
            slip_abs,
            slip_frac: model.slip_frac(),
            fee_frac: model.fee_frac(),
            max_positions: strategy.max_positions as usize,
            daily_loss_frac: money(strategy.max_daily_loss_pct) / Decimal::ONE_HUNDRED,
            cash: p.initial_cash,
            reserved: Decimal::ZERO,
            pending_count: 0,
            held: Vec::with_capacity(strategy.max_positions as usize),
            states: data.symbols.iter().map(|_| SymState::default()).collect(),
            peak: p.initial_cash,
            in_market: false,
            day: None,
            day_start: p.initial_cash,
            day_entries: 0,
            day_trades: 0,
            trades: Vec::new(),
            equity: Vec::new(),
            daily: Vec::new(),
            signals_seen: 0,
            blocked: BlockedSignals::default(),
        }
    }

    /// `price` moved against an order on `buy`'s side by the slippage, as money.
    fn slipped(&self, s: usize, price: Decimal, buy: bool) -> Decimal {
        FillModel::slipped(self.slip_abs[s], self.slip_frac, price, buy)
    }

    fn fee(&self, qty: u64, price: Decimal) -> Decimal {
        FillModel::fee_with(self.p.commission_per_share, self.fee_frac, qty, price)
    }

    /// Cash plus open positions at their latest marks.
    fn equity_now(&self) -> Decimal {
        self.cash
            + self
                .held
                .iter()
                .filter_map(|&s| self.states[s].position.as_ref())
                .map(Position::value)
                .sum::<Decimal>()
    }

    fn on_bar<S: SignalSource + ?Sized>(
        &mut self,
        s: usize,
        i: usize,
        series: &mut super::SymbolSeries,
        source: &mut S,
    ) -> Result<(), BacktestError> {
        let tick_size = series.tick_size;
        let bar = &mut series.bars[i];
        let c: Candle = bar.input.candle;
        let time = bar.input.time;
        let key = match self.p.day_boundary {
            DayBoundary::Session => bar.input.session,
            DayBoundary::Utc => time.div_euclid(DAY),
        };
        self.roll_day(key);

        let mut exit_now = false;
        if let Some(pos) = self.states[s].position.as_mut() {
            pos.bars += 1;
            self.in_market = true;
            if pos.exit_pending {
                pos.see(&[c.open]);
                exit_now = true;
            }
        }
        if exit_now {
            let fill = ExitFill { time, price: c.open, slipped: true, reason: ExitReason::Signal };
            self.close(s, &series.symbol, fill);
        }
        if let Some(pending) = self.states[s].pending.take() {
            self.reserved -= pending.reserved;
            self.pending_count -= 1;
            if bar.in_session {
                self.fill_entry(s, pending, time, c.open);
            } else {
                self.blocked.out_of_session += 1;
            }
        }
        if let Some(fill) = self.states[s].position.as_mut().and_then(|pos| bracket(pos, &c, time, self.p)) {
            self.close(s, &series.symbol, fill);
        }

        let st = &mut self.states[s];
        st.bars += 1;
        st.first.get_or_insert((time, c.close));
        st.last = Some((time, c.close));
        if let Some(pos) = st.position.as_mut() {
            pos.mark = money(c.close);
        }

        // Flattening comes before the evaluation, so the source sees the book as it is at
        // the close; an entry signal here fills at the next session's first bar.
        if self.p.flat_at_session_end && bar.session_last_bar && st.position.is_some() {
            let fill = ExitFill { time, price: c.close, slipped: true, reason: ExitReason::SessionEnd };
            self.close(s, &series.symbol, fill);
        }

        let st = &self.states[s];
        bar.input.position = st.position.as_ref().map(|p| p.dir.side());
        let ctx = BarContext {
            bar_index: i,
            in_session: bar.in_session,
            session_last_bar: bar.session_last_bar,
            tick_size,
        };
        let signal = source.on_bar(s, &bar.input, &ctx).map_err(|error| BacktestError::Engine {
            symbol: series.symbol.clone(),
            time,
            error,
        })?;
        if let Some(signal) = signal {
            self.on_signal(s, signal, time, bar.in_session);
        }

        Ok(())
    }

    fn on_signal(&mut self, s: usize, signal: Signal, time: Micros, in_session: bool) {
        let st = &mut self.states[s];
        match (signal.kind, st.position.as_mut()) {
            (SignalKind::Exit, Some(pos)) if pos.dir.side() == signal.side => {
                self.signals_seen += 1;
                pos.exit_pending = true;
            }
            (SignalKind::Entry, None) if st.pending.is_none() => {
                let Some(dir) = Direction::from_side(signal.side) else { return };
                self.signals_seen += 1;
                if let Err(reason) = self.admit(s, signal, dir, time, in_session) {
                    *reason.counter(&mut self.blocked) += 1;
                }
            }
            _ => {}
        }
    }

    /// Gates and sizes an entry signal; on success it becomes the symbol's pending entry.
    fn admit(
        &mut self,
        s: usize,
        signal: Signal,
        dir: Direction,
        time: Micros,
        in_session: bool,
    ) -> Result<(), Block> {
        if !in_session {
            return Err(Block::OutOfSession);
        }
        if dir == Direction::Short && !self.p.allow_short {
            return Err(Block::ShortsDisabled);
        }
        let equity = self.equity_now();
        if self.day_start - equity > self.day_start * self.daily_loss_frac {
            return Err(Block::DailyLoss);
        }
        if self.held.len() + self.pending_count >= self.max_positions {
            return Err(Block::MaxPositions);
        }
        let estimate = self.slipped(s, money(signal.price), dir == Direction::Long);
        let per_share = estimate * (Decimal::ONE + self.fee_frac) + self.p.commission_per_share;
        let available = self.cash - self.reserved;
        let qty = position_size(&SizeInputs {
            equity,
            risk_pct: self.p.engine.strategy.risk_per_trade_pct,
            entry: signal.price,
            stop: signal.stop,
            cost_per_share: per_share,
            available,
            max_notional: self.p.max_order_notional,
        })
        .map_err(|block| match block {
            SizeBlock::Risk | SizeBlock::Notional => Block::Size,
            SizeBlock::Cash => Block::Cash,
        })?;
        let reserved = round_money(Decimal::from(qty) * per_share).min(available);
        self.reserved += reserved;
        self.pending_count += 1;
        self.states[s].pending = Some(Pending { signal, signal_time: time, dir, qty, reserved });
        Ok(())
    }

    fn fill_entry(&mut self, s: usize, pending: Pending, time: Micros, open: f64) {
        let long = pending.dir == Direction::Long;
        let price = self.slipped(s, money(open), long);
        let available = self.cash - self.reserved;
        // The open gapped: buy what the cash allows, as a broker's buying-power check would.
        let qty = FillModel::affordable_with(
            self.p.commission_per_share,
            self.fee_frac,
            pending.qty,
            price,
            available,
        );
        if qty == 0 {
            self.blocked.cash += 1;
            return;
        }
        let fee = self.fee(qty, price);
        self.cash -= Decimal::from(qty) * price + fee;
        let entry_f = to_f64(price);
        self.states[s].position = Some(Position {
            dir: pending.dir,
            qty,
            entry_price: price,
            entry_fee: fee,
            entry_time: time,
            stop: pending.signal.stop.unwrap_or(f64::NAN),
            target: pending.signal.target,
            signal: pending.signal,
            signal_time: pending.signal_time,
            mark: money(open),
            best: entry_f,
            worst: entry_f,
            bars: 1,
            exit_pending: false,
        });
        self.held.push(s);
        self.day_entries += 1;
        self.in_market = true;
    }

    fn close(&mut self, s: usize, symbol: &str, fill: ExitFill) {
        let Some(pos) = self.states[s].position.take() else { return };
        self.held.retain(|&h| h != s);
        let long = pos.dir == Direction::Long;
        let market = money(fill.price);
        let price = if fill.slipped { self.slipped(s, market, !long) } else { market };
        let fee = self.fee(pos.qty, price);
        let q = Decimal::from(pos.qty);
        let gross = match pos.dir {
            Direction::Long => (price - pos.entry_price) * q,
            Direction::Short => (pos.entry_price - price) * q,
        };
        // Long: the sale proceeds; short: the collateral back plus the price P&L.
        self.cash += match pos.dir {
            Direction::Long => q * price,
            Direction::Short => q * pos.entry_price + gross,
        } - fee;
        let pnl = gross - pos.entry_fee - fee;
        let notional = q * pos.entry_price;
        let entry_f = to_f64(pos.entry_price);
        let sign = pos.dir.sign();
        let mae_price = ((entry_f - pos.worst) * sign).max(0.0);
        let mfe_price = ((pos.best - entry_f) * sign).max(0.0);
        self.trades.push(Trade {
            symbol: symbol.to_string(),
            direction: pos.dir,
            qty: pos.qty,
            signal_time: pos.signal_time,
            signal_price: pos.signal.price,
            entry_time: pos.entry_time,
            entry_price: pos.entry_price,
            entry_fee: pos.entry_fee,
            exit_time: fill.time,
            exit_price: price,
            exit_fee: fee,
            exit_reason: fill.reason,
            stop: pos.stop,
            target: pos.target,
            pnl,
            return_pct: if notional > Decimal::ZERO { to_f64(pnl) / to_f64(notional) * 100.0 } else { 0.0 },
            mae_price,
            mfe_price,
            mae: round_money(money(mae_price) * q),
            mfe: round_money(money(mfe_price) * q),
            bars: pos.bars,
            entry_reason: pos.signal.reason,
            state: pos.signal.state,
            aggression: pos.signal.aggression,
            atr: pos.signal.atr,
        });
        self.states[s].trades += 1;
        self.day_trades += 1;
    }

    fn roll_day(&mut self, key: i64) {
        match self.day {
            None => self.day = Some(key),
            Some(d) if key > d => {
                let end = self.equity_now();
                self.push_day(d, end);
                self.day = Some(key);
                self.day_start = end;
            }
            Some(_) => {}
        }
    }

    fn push_day(&mut self, day: i64, end: Decimal) {
        let start = self.day_start;
        self.daily.push(DailyStat {
            day,
            start_equity: start,
            end_equity: end,
            pnl: end - start,
            return_pct: if start > Decimal::ZERO { (to_f64(end) / to_f64(start) - 1.0) * 100.0 } else { 0.0 },
            entries: self.day_entries,
            trades: self.day_trades,
        });
        self.day_entries = 0;
        self.day_trades = 0;
    }

    fn point(&mut self, time: Micros) -> EquityPoint {
        let equity = self.equity_now();
        if equity > self.peak {
            self.peak = equity;
        }
        let drawdown = equity - self.peak;
        let peak = to_f64(self.peak);
        let exposure = self
            .held
            .iter()
            .filter_map(|&s| self.states[s].position.as_ref())
            .map(|p| Decimal::from(p.qty) * p.mark)
            .sum();
        EquityPoint {
            time,
            equity,
            cash: self.cash,
            drawdown,
            drawdown_pct: if peak > 0.0 { (to_f64(equity) / peak - 1.0) * 100.0 } else { 0.0 },
            open_positions: self.held.len() as u32,
            exposure,
            in_market: self.in_market,
        }
    }

    fn record_point(&mut self, time: Micros) {
        let p = self.point(time);
        self.equity.push(p);
        self.in_market = !self.held.is_empty();
    }

    /// Closes what is still open at each symbol's last close, drops pending entries, and
    /// brings the last equity point and day up to date.
    fn finish(&mut self, data: &BacktestData) {
        for s in 0..self.states.len() {
            if self.states[s].pending.take().is_some() {
                self.blocked.end_of_data += 1;
            }
            if let (Some(_), Some((time, close))) = (&self.states[s].position, self.states[s].last) {
                let fill = ExitFill { time, price: close, slipped: true, reason: ExitReason::EndOfData };
                self.close(s, &data.symbols[s].symbol, fill);
            }
        }
        self.reserved = Decimal::ZERO;
        self.pending_count = 0;
        if let Some(last) = self.equity.last() {
            let (time, in_market) = (last.time, last.in_market);
            let mut p = self.point(time);
            p.in_market = in_market;
            *self.equity.last_mut().expect("checked above") = p;
        }
        if let Some(d) = self.day {
            let end = self.equity_now();
            self.push_day(d, end);
        }
    }

    fn into_result(self, data: &BacktestData, processed: u64) -> BacktestResult {
        let symbols = data
            .symbols
            .iter()
            .zip(&self.states)
            .map(|(series, st)| SymbolSummary {
                symbol: series.symbol.clone(),
                bars: st.bars,
                first_time: st.first.map(|f| f.0),
                last_time: st.last.map(|l| l.0),
                first_close: st.first.map(|f| f.1),
                last_close: st.last.map(|l| l.1),
                trades: st.trades,
            })
            .collect();
        BacktestResult {
            initial_cash: self.p.initial_cash,
            final_equity: self.cash,
            trades: self.trades,
            equity: self.equity,
            daily: self.daily,
            signals_seen: self.signals_seen,
            signals_blocked: self.blocked,
            bars_processed: processed,
            symbols,
        }
    }
}

/// The stop or target exit of `pos` in bar `c`, if any (the fill model's
/// [`bracket_exit`]), after widening its excursions with what the bar showed before the exit
/// (or with the whole bar when it stays open).
fn bracket(pos: &mut Position, c: &Candle, time: Micros, p: &BacktestParams) -> Option<ExitFill> {
    let long = pos.dir == Direction::Long;
    let Some(hit) = bracket_exit(long, pos.stop, pos.target, c, p.same_bar_stop_first) else {
        pos.see(&[c.high, c.low]);
        return None;
    };
    let fill = ExitFill { time, price: hit.price, slipped: hit.slipped, reason: hit.reason };
    pos.see(&[c.open, fill.price]);
    Some(fill)
}
