//! The backtest simulator: the live strategy replayed over stored bars of many symbols, with a
//! fill model that cannot see the future and a portfolio kept in exact decimal money.
//!
//! # Time
//!
//! All symbols' bars are walked by one cursor in `(time, symbol index)` order: bars at the same
//! time are taken in the order the symbols were given, which is therefore their priority for
//! position slots and cash. A symbol's bars must be strictly increasing in time.
//!
//! # One bar of one symbol, in order
//!
//! 1. A new day (see [`DayBoundary`]) closes the previous [`DailyStat`] and starts the next one
//!    from the current equity.
//! 2. A pending exit (exit signal on the previous bar) fills at this bar's open, reason
//!    [`ExitReason::Signal`].
//! 3. A pending entry (entry signal on the previous bar) fills at this bar's open, or is
//!    dropped when this bar is outside the regular session (counted as `out_of_session`) or no
//!    whole share is affordable any more (counted as `cash`).
//! 4. An open position is checked against its stop and target: an open at or beyond the stop
//!    (target) fills there, at the open; otherwise a low/high touching the stop (target) fills
//!    at the stop (target) price. When one bar touches both, `same_bar_stop_first` decides.
//!    This includes the bar whose open filled the entry.
//! 5. With `flat_at_session_end`, a position still open on a bar flagged `session_last_bar`
//!    closes at that bar's close, reason [`ExitReason::SessionEnd`].
//! 6. The signal source evaluates the bar at its close, told the symbol's position as it stands
//!    now, so the engine's repeated signals are de-duplicated: a held symbol only gets exit
//!    signals, a flat one entry signals.
//! 7. An entry signal passes the gates, in this order: bar in session, shorts allowed, daily
//!    loss limit, free position slot, size ≥ 1 share (risk budget, then cash). It becomes a
//!    pending entry that fills at the symbol's next bar; an exit signal becomes a pending exit.
//!
//! After the last bar at a time, one [`EquityPoint`] is recorded. After the last bar of all,
//! open positions close at their symbol's last close, reason [`ExitReason::EndOfData`], and the
//! last equity point and day are updated to include those exits.
//!
//! # Fills and costs
//!
//! * Market-like fills (entries, signal exits, stops, session end, end of data) move against
//!   the trade by `slippage_ticks × tick_size + price × slippage_bps / 10000`: a buy pays more,
//!   a sell receives less. Targets are limit orders: they fill at the target (or at a better
//!   open) without slippage.
//! * Commission on each leg: `qty × commission_per_share + notional × commission_pct / 100`,
//!   where notional = `qty × fill price`.
//! * Market prices are `f64`; a fill price becomes a `Decimal` rounded to [`DECIMAL_PLACES`]
//!   places (half away from zero) before slippage, and again after it; commissions are rounded
//!   the same way. Cash, P&L, fees and equity are exact `Decimal` arithmetic from there on.
//!
//! # Accounting
//!
//! No leverage: a long pays `qty × entry + fee` from cash; a short sets aside the same amount
//! as collateral. A long is worth `qty × mark`, a short `qty × (2 × entry − mark)` (collateral
//! plus unrealised P&L), so equity = cash + Σ position values, marked at each symbol's latest
//! close. A trade's P&L is `(exit − entry) × qty` long or `(entry − exit) × qty` short, minus
//! both legs' commissions.
//!
//! # Sizing
//!
//! At the signal bar's close, with [`crate::sizing::position_size`] (the function live trading
//! sizes with): risk money = equity × `risk_per_trade_pct` / 100; quantity = ⌊risk money /
//! |signal price − stop|⌋, capped by ⌊available cash / estimated cost per share⌋, where
//! available cash excludes what pending entries reserved and the estimate is the signal price
//! with adverse slippage plus commission, then by ⌊`max_order_notional` / signal price⌋ when
//! that is set. At the fill, if the actual open makes the quantity unaffordable it is cut to
//! what cash allows. Whole shares only.
//!
//! # Limits
//!
//! `max_positions` counts open positions and pending entries. The daily loss gate blocks
//! entries once the day's loss (equity now against the day's starting equity, so realised and
//! unrealised) exceeds `max_daily_loss_pct` of the day's starting equity.

mod evaluate;
pub mod fills;
pub mod grid;
mod sim;
#[cfg(test)]
mod tests;

use crate::candle::Micros;
use crate::engine::{BarInput, EngineError, EngineParams};
use crate::profile::{BarProfile, Profile};
use crate::side::Side;
use crate::state::MarketState;
use crate::strategy::{check_range, ParamError, Signal};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::fmt;

pub use evaluate::{evaluate_all, Readings};
pub use fills::{bracket_exit, BracketFill, FillModel};
pub use sim::{run, run_with};

/// Decimal places kept when a market price (`f64`) becomes money, and for commissions.
pub const DECIMAL_PLACES: u32 = 8;

/// Default number of bars between two progress reports.
pub const DEFAULT_PROGRESS_EVERY: u64 = 100_000;

/// Microseconds in a day.
const DAY: Micros = 86_400_000_000;

/// `x` as money: rounded to [`DECIMAL_PLACES`], half away from zero. Non-finite or huge
/// values (refused by validation before they get here) become zero.
pub fn money(x: f64) -> Decimal {
    Decimal::from_f64(x)
        .unwrap_or(Decimal::ZERO)
        .round_dp_with_strategy(DECIMAL_PLACES, RoundingStrategy::MidpointAwayFromZero)
}

/// `d` rounded to [`DECIMAL_PLACES`].
pub fn round_money(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(DECIMAL_PLACES, RoundingStrategy::MidpointAwayFromZero)
}

/// A decimal as `f64` for ratios and statistics.
pub(crate) fn to_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

/// What a "day" is for the daily loss limit and [`DailyStat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DayBoundary {
    /// The bars' session keys (days since 2000-01-01 of each symbol's session date). Across
    /// symbols the portfolio's day is the largest key seen so far, so it never goes back.
    #[default]
    Session,
    /// The UTC calendar day of the bar's start.
    Utc,
}

/// Everything that configures a backtest. Missing keys take the defaults given with each
/// field; unknown keys are errors. Call [`BacktestParams::validate`] after deserializing
/// ([`run`] does).
///
/// As jsonb: `{"initial_cash": 50000, "slippage_bps": 2, "commission_per_share": 0.005,
/// "engine": {"strategy": {"max_positions": 5}}}`.
///
/// Sizing and limits come from the strategy parameters: `engine.strategy.risk_per_trade_pct`,
/// `engine.strategy.max_positions` and `engine.strategy.max_daily_loss_pct`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BacktestParams {
    /// Starting cash (default `100000`); above 0 up to 1e15. A number or a decimal string.
    pub initial_cash: Decimal,
    /// The bar engine and strategy (default: [`EngineParams::default`]).
    pub engine: EngineParams,
    /// Adverse slippage in ticks on market-like fills (default `0`); 0–10000.
    pub slippage_ticks: f64,
    /// Adverse slippage in basis points of the price on market-like fills (default `0`);
    /// 0–10000. Adds to `slippage_ticks`.
    pub slippage_bps: f64,
    /// Commission per share on each leg, in money (default `0`); 0–1000.
    pub commission_per_share: Decimal,
    /// Commission on each leg, % of the leg's notional (default `0`); 0–100.
    pub commission_pct: f64,
    /// When a bar touches both the stop and the target, assume the stop came first (default
    /// `true`); `false` assumes the target did.
    pub same_bar_stop_first: bool,
    /// Close positions at the close of bars flagged `session_last_bar` (default `false`).
    pub flat_at_session_end: bool,
    /// Take short entry signals (default `true`).
    pub allow_short: bool,
    /// Day boundary for the daily loss limit and daily statistics (default `"session"`).
    pub day_boundary: DayBoundary,
    /// Cap on an entry's notional, quantity × signal price, as live trading's
    /// `risk_limits.max_order_notional` (default none: no cap); above 0 when given. An entry
    /// it leaves under one share is blocked (counted as `size`). A number or a decimal string.
    pub max_order_notional: Option<Decimal>,
}

impl Default for BacktestParams {
    fn default() -> Self {
        BacktestParams {
            initial_cash: Decimal::new(100_000, 0),
            engine: EngineParams::default(),
            slippage_ticks: 0.0,
            slippage_bps: 0.0,
            commission_per_share: Decimal::ZERO,
            commission_pct: 0.0,
            same_bar_stop_first: true,
            flat_at_session_end: false,
            allow_short: true,
            day_boundary: DayBoundary::Session,
            max_order_notional: None,
        }
    }
}

impl BacktestParams {
    /// Checks every field's range; the error names the field (dotted for the engine's nested
    /// groups, e.g. `engine.strategy.max_positions`) and the allowed range.
    pub fn validate(&self) -> Result<(), ParamError> {
        let cash = self.initial_cash;
        if !(cash > Decimal::ZERO && cash <= Decimal::new(1_000_000_000_000_000, 0)) {
            return Err(ParamError::out_of_range("initial_cash", cash, "above 0 up to 1e15"));
        }
        check_range("slippage_ticks", self.slippage_ticks, 0.0, 10_000.0, "0 to 10000")?;
        check_range("slippage_bps", self.slippage_bps, 0.0, 10_000.0, "0 to 10000")?;
        let per_share = self.commission_per_share;
        if !(per_share >= Decimal::ZERO && per_share <= Decimal::new(1000, 0)) {
            return Err(ParamError::out_of_range("commission_per_share", per_share, "0 to 1000"));
        }
        check_range("commission_pct", self.commission_pct, 0.0, 100.0, "0 to 100")?;
        if let Some(max) = self.max_order_notional {
            if max <= Decimal::ZERO {
                return Err(ParamError::out_of_range("max_order_notional", max, "above 0"));
            }
        }
        self.engine.validate().map_err(|e| e.within("engine"))
    }
}

// ---------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------

/// One bar of a backtest: the engine's input plus its calendar context.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestBar {
    /// The bar as the engine reads it. Its `position` is ignored: the simulator overwrites it
    /// with its own position before each evaluation.
    pub input: BarInput,
    /// Inside the symbol's regular trading hours; entries happen only on such bars.
    pub in_session: bool,
    /// The last regular-hours bar of its session (used by `flat_at_session_end`).
    pub session_last_bar: bool,
}

impl BacktestBar {
    /// A bar with `session_last_bar` unset (see [`mark_session_ends`]).
    pub fn new(input: BarInput, in_session: bool) -> BacktestBar {
        BacktestBar { input, in_session, session_last_bar: false }
    }
}

/// Sets `session_last_bar` on the last in-session bar of each session key (bars in time
/// order). The final session is marked only when `last_session_complete`, since data that ends
/// mid-session has not seen that session's last bar.
pub fn mark_session_ends(bars: &mut [BacktestBar], last_session_complete: bool) {
    let mut last_in_session: Option<usize> = None;
    for i in 0..bars.len() {
        bars[i].session_last_bar = false;
        if i > 0 && bars[i].input.session != bars[i - 1].input.session {
            if let Some(j) = last_in_session.take() {
                bars[j].session_last_bar = true;
            }
        }
        if bars[i].in_session {
            last_in_session = Some(i);
        }
    }
    if last_session_complete {
        if let Some(j) = last_in_session {
            bars[j].session_last_bar = true;
        }
    }
}

/// A stored bar profile on the grid of `ticks_per_row` ticks per row, as the engine reads it
/// (its `engine.ticks_per_row`): stored profiles have one tick per row, and a run on a coarser
/// grid re-bins them when it loads them.
///
/// Exact: every stored row's volume, by side, goes to the row that [`Profile`] itself assigns to
/// its price (the row's lowest tick, `floor(tick / ticks_per_row)`), so the result is the
/// profile `profile_agg(…, ticks_per_row)` builds from the same trades. `ticks_per_row` must
/// be a multiple of the profile's own (rows are never split); the profile's own gives it back
/// unchanged.
pub fn bar_profile_on_grid(profile: &Profile, ticks_per_row: u32) -> Result<BarProfile, String> {
    let own = profile.ticks_per_row();
    if own == ticks_per_row {
        return Ok(BarProfile::from(profile));
    }
    if ticks_per_row == 0 || !ticks_per_row.is_multiple_of(own) {
        return Err(format!(
            "a profile of {own} ticks per row cannot be re-binned to {ticks_per_row} ticks per row \
             (not a multiple)"
        ));
    }
    let tick_size = profile.tick_size();
    let mut binned = Profile::new(tick_size, ticks_per_row).map_err(|e| e.to_string())?;
    for (row, level) in profile.rows() {
        // The row's lowest tick, as a price `add` takes: tick 0 (a price under half a tick) is
        // priced inside it rather than at 0, which `add` refuses.
        let price = match profile.row_price(row) {
            p if row == 0 => p.max(tick_size / 4.0),
            p => p,
        };
        let sides = [(level.buy, Side::Buy), (level.sell, Side::Sell), (level.unknown, Side::Unknown)];
        for (size, side) in sides {
            if size > 0.0 {
                binned.add(price, size, side).map_err(|e| e.to_string())?;
            }
        }
        // A row of zero-size trades stays a (zero) row, as it would have been built.
        if level.total() == 0.0 {
            binned.add(price, 0.0, Side::Unknown).map_err(|e| e.to_string())?;
        }
    }
    Ok(BarProfile::from(&binned))
}

/// One symbol's bars.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolSeries {
    pub symbol: String,
    /// Price increment; finite and > 0.
    pub tick_size: f64,
    /// Strictly increasing in time.
    pub bars: Vec<BacktestBar>,
}

/// The bars of a backtest, checked once and reusable across runs (a parameter sweep runs the
/// same data many times).
#[derive(Debug, Clone)]
pub struct BacktestData {
    symbols: Vec<SymbolSeries>,
    bars: u64,
    progress_every: u64,
    threads: usize,
}

/// One evaluation thread per available core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Checks one series as [`BacktestData::new`] does; the error names the symbol and bar.
pub fn check_series(s: &SymbolSeries) -> Result<(), BacktestError> {
    if !(s.tick_size.is_finite() && s.tick_size > 0.0) {
        return Err(BacktestError::Data(format!(
            "{}: tick_size must be a finite number > 0, got {}",
            s.symbol, s.tick_size
        )));
    }
    let mut previous: Option<Micros> = None;
    for b in &s.bars {
        let c = &b.input.candle;
        let t = b.input.time;
        let ok_prices =
            [c.open, c.high, c.low, c.close].iter().all(|p| p.is_finite() && *p > 0.0 && *p < 1e15);
        if !ok_prices || c.low > c.open.min(c.close) || c.high < c.open.max(c.close) {
            return Err(BacktestError::Data(format!(
                "{}: bar at {t} has invalid prices (open {}, high {}, low {}, close {}): \
                 they must be finite, > 0 and within low..high",
                s.symbol, c.open, c.high, c.low, c.close
            )));
        }
        if let Some(p) = previous {
            if t <= p {
                return Err(BacktestError::Data(format!(
                    "{}: bar at {t} is not after the previous bar at {p}; bars must be in time order",
                    s.symbol
                )));
            }
        }
        previous = Some(t);
    }
    Ok(())
}

impl BacktestData {
    /// Checks the series: tick sizes finite and > 0; bars with finite positive prices,
    /// `low ≤ open, close ≤ high`, and strictly increasing times within each symbol. The
    /// error names the symbol and bar. The order of `symbols` is their priority.
    pub fn new(symbols: Vec<SymbolSeries>) -> Result<BacktestData, BacktestError> {
        for s in &symbols {
            check_series(s)?;
        }
        Ok(BacktestData::checked(symbols))
    }

    /// Series already checked with [`check_series`].
    fn checked(symbols: Vec<SymbolSeries>) -> BacktestData {
        let bars = symbols.iter().map(|s| s.bars.len() as u64).sum();
        BacktestData { symbols, bars, progress_every: DEFAULT_PROGRESS_EVERY, threads: default_threads() }
    }

    /// Evaluates the symbols on `n` threads (≥ 1) instead of one per available core.
    pub fn with_threads(mut self, n: usize) -> BacktestData {
        self.threads = n.max(1);
        self
    }

    /// Reports progress every `n` bars instead of every [`DEFAULT_PROGRESS_EVERY`] (`n` ≥ 1).
    pub fn with_progress_every(mut self, n: u64) -> BacktestData {
        self.progress_every = n.max(1);
        self
    }

    /// The series, in priority order.
    pub fn symbols(&self) -> &[SymbolSeries] {
        &self.symbols
    }

    /// Number of bars over all symbols.
    pub fn bar_count(&self) -> u64 {
        self.bars
    }
}

// ---------------------------------------------------------------------------------------------
// Signal sources
// ---------------------------------------------------------------------------------------------

/// What the simulator knows about a bar besides the engine input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarContext {
    /// Index of the bar in its symbol's series.
    pub bar_index: usize,
    pub in_session: bool,
    pub session_last_bar: bool,
    pub tick_size: f64,
}

/// Produces signals bar by bar, at each bar's close. `bar.position` is the simulator's
/// position in the symbol at that moment: a source should give entries only when it is `None`
/// and exits only for the side held; other signals are ignored.
pub trait SignalSource {
    /// The signal for `bar` of the symbol at index `symbol`, if any. Bars arrive in the global
    /// `(time, symbol)` order, each symbol's in time order.
    fn on_bar(
        &mut self,
        symbol: usize,
        bar: &BarInput,
        ctx: &BarContext,
    ) -> Result<Option<Signal>, EngineError>;
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

/// A position's direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Long,
    Short,
}

impl Direction {
    /// `"long"` or `"short"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Long => "long",
            Direction::Short => "short",
        }
    }

    /// The side of the opening order (and of [`BarInput::position`]).
    pub fn side(self) -> Side {
        match self {
            Direction::Long => Side::Buy,
            Direction::Short => Side::Sell,
        }
    }

    /// +1 long, −1 short.
    pub fn sign(self) -> f64 {
        match self {
            Direction::Long => 1.0,
            Direction::Short => -1.0,
        }
    }

    fn from_side(side: Side) -> Option<Direction> {
        match side {
            Side::Buy => Some(Direction::Long),
            Side::Sell => Some(Direction::Short),
            Side::Unknown => None,
        }
    }
}

/// Why a position was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// The stop was touched (or the bar opened beyond it).
    Stop,
    /// The target was touched (or the bar opened beyond it).
    Target,
    /// An exit signal, filled at the next bar's open.
    Signal,
    /// `flat_at_session_end` at the session's last bar.
    SessionEnd,
    /// Still open after the last bar.
    EndOfData,
}

impl ExitReason {
    /// `"stop"`, `"target"`, `"signal"`, `"session_end"` or `"end_of_data"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Stop => "stop",
            ExitReason::Target => "target",
            ExitReason::Signal => "signal",
            ExitReason::SessionEnd => "session_end",
            ExitReason::EndOfData => "end_of_data",
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One closed trade.
///
/// Excursions (MAE/MFE) are measured from the entry fill price with market highs and lows of
/// the bars held: the entry bar counts whole (its open is the fill); on an exit bar only its
/// open and the exit trigger price count (the order of high and low inside a bar is unknown),
/// except exits at the close (`session_end`, `end_of_data`), where the whole bar counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    pub symbol: String,
    pub direction: Direction,
    /// Whole shares, ≥ 1.
    pub qty: u64,
    /// Start of the bar whose close produced the entry signal.
    pub signal_time: Micros,
    /// That bar's close (the signal's price).
    pub signal_price: f64,
    /// Start of the bar whose open filled the entry.
    pub entry_time: Micros,
    /// Fill price, slippage included.
    pub entry_price: Decimal,
    pub entry_fee: Decimal,
    /// Start of the bar in which the exit filled.
    pub exit_time: Micros,
    /// Fill price, slippage included.
    pub exit_price: Decimal,
    pub exit_fee: Decimal,
    pub exit_reason: ExitReason,
    pub stop: f64,
    pub target: Option<f64>,
    /// Net P&L: price P&L in the trade's direction minus both fees.
    pub pnl: Decimal,
    /// `pnl / (entry_price × qty) × 100`.
    pub return_pct: f64,
    /// Largest move against the trade from the entry price, in price units (≥ 0).
    pub mae_price: f64,
    /// Largest move in favour of the trade from the entry price, in price units (≥ 0).
    pub mfe_price: f64,
    /// `mae_price × qty` in money (≥ 0).
    pub mae: Decimal,
    /// `mfe_price × qty` in money (≥ 0).
    pub mfe: Decimal,
    /// Bars of the symbol from the entry bar to the exit bar, both included.
    pub bars: u32,
    /// The entry signal's reason.
    pub entry_reason: String,
    /// Market state, aggression and ATR at the entry signal.
    pub state: MarketState,
    pub aggression: f64,
    pub atr: Option<f64>,
}

/// The portfolio after all bars at one time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EquityPoint {
    pub time: Micros,
    /// Cash plus open positions marked at each symbol's latest close.
    pub equity: Decimal,
    /// Free cash (short collateral excluded).
    pub cash: Decimal,
    /// `equity − peak equity so far` (≤ 0); the peak starts at the initial cash.
    pub drawdown: Decimal,
    /// `(equity / peak − 1) × 100` (≤ 0).
    pub drawdown_pct: f64,
    /// Positions open after this time's bars.
    pub open_positions: u32,
    /// Gross market value of open positions: Σ qty × latest close.
    pub exposure: Decimal,
    /// A position was held at some moment of this time's bars (entered, held or exited here).
    pub in_market: bool,
}

/// One day of the run (see [`DayBoundary`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyStat {
    /// Days since 2000-01-01: the session key, or the UTC day.
    pub day: i64,
    /// Equity when the day's first bar arrived (the previous day's end, or the initial cash).
    pub start_equity: Decimal,
    pub end_equity: Decimal,
    /// `end_equity − start_equity`.
    pub pnl: Decimal,
    /// `(end_equity / start_equity − 1) × 100`.
    pub return_pct: f64,
    /// Entries filled this day.
    pub entries: u32,
    /// Trades closed this day.
    pub trades: u32,
}

/// Entry signals that did not become positions, by the first reason that stopped them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BlockedSignals {
    /// Signal bar, or fill bar, outside regular trading hours.
    pub out_of_session: u64,
    /// A short entry with `allow_short` off.
    pub shorts_disabled: u64,
    /// The day's loss limit was exceeded.
    pub daily_loss: u64,
    /// All position slots were taken (open or pending).
    pub max_positions: u64,
    /// The risk budget (or `max_order_notional`) was under one share, or the stop was missing
    /// or at the price.
    pub size: u64,
    /// Not enough free cash for one share, at the signal or at the fill.
    pub cash: u64,
    /// Still pending when the data ended.
    pub end_of_data: u64,
}

impl BlockedSignals {
    /// All blocked entries.
    pub fn total(&self) -> u64 {
        self.out_of_session
            + self.shorts_disabled
            + self.daily_loss
            + self.max_positions
            + self.size
            + self.cash
            + self.end_of_data
    }
}

/// First and last close of one symbol over the run (for buy & hold).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymbolSummary {
    pub symbol: String,
    pub bars: u64,
    pub first_time: Option<Micros>,
    pub last_time: Option<Micros>,
    pub first_close: Option<f64>,
    pub last_close: Option<f64>,
    /// Trades closed in this symbol.
    pub trades: u64,
}

/// Everything a run produced. The same data and parameters give an identical result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestResult {
    pub initial_cash: Decimal,
    pub final_equity: Decimal,
    /// Closed trades in the order they closed (end-of-data exits last, by symbol priority).
    pub trades: Vec<Trade>,
    /// One point per distinct bar time over all symbols, in time order.
    pub equity: Vec<EquityPoint>,
    /// One row per day that had bars, in order.
    pub daily: Vec<DailyStat>,
    /// Bars that produced a signal (entry or exit); a signal repeated on several bars counts
    /// once per bar.
    pub signals_seen: u64,
    pub signals_blocked: BlockedSignals,
    pub bars_processed: u64,
    /// Per symbol, in priority order.
    pub symbols: Vec<SymbolSummary>,
}

/// The two stages of a run: the engine reads every bar (symbols in parallel), then the
/// simulator walks them in time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Evaluating,
    Simulating,
}

impl Stage {
    /// `"evaluating"` or `"simulating"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Evaluating => "evaluating",
            Stage::Simulating => "simulating",
        }
    }
}

/// Where a run is, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub stage: Stage,
    /// Bars through the current stage.
    pub bars_processed: u64,
    /// Bars of the run; while evaluating, of the symbols loaded so far.
    pub bars_total: u64,
    /// Symbols loaded and symbols fully evaluated, of `symbols`.
    pub symbols_loaded: usize,
    pub symbols_done: usize,
    pub symbols: usize,
    /// Start of the bar just processed.
    pub time: Micros,
    /// Trades closed so far.
    pub trades: u64,
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq)]
pub enum BacktestError {
    /// A parameter out of range.
    Params(ParamError),
    /// Malformed input data; the text names the symbol and bar.
    Data(String),
    /// The signal source refused a bar.
    Engine { symbol: String, time: Micros, error: EngineError },
    /// Evaluating the symbol panicked (a defect in the engine): the run stops with the panic's
    /// message instead of waiting for a worker that is gone.
    Panicked { symbol: String, message: String },
    /// The progress callback asked to stop.
    Cancelled { bars_processed: u64 },
}

impl Progress {
    /// A report of the simulation: `processed` of `total` bars (of all `symbols`, evaluated),
    /// at the bar starting `time`, with `trades` closed.
    fn simulating(processed: u64, total: u64, symbols: usize, time: Micros, trades: usize) -> Progress {
        Progress {
            stage: Stage::Simulating,
            bars_processed: processed,
            bars_total: total,
            symbols_loaded: symbols,
            symbols_done: symbols,
            symbols,
            time,
            trades: trades as u64,
        }
    }

    /// Share of the run done, 0–1: evaluation counts for 90 %, simulation for the rest, roughly
    /// their shares of the time. While symbols are still loading, the run's bars are estimated
    /// from those loaded so far (their mean per symbol).
    pub fn fraction(&self) -> f64 {
        match self.stage {
            Stage::Evaluating => {
                let expected =
                    self.bars_total as f64 * self.symbols as f64 / self.symbols_loaded.max(1) as f64;
                0.9 * (self.bars_processed as f64 / expected.max(1.0)).min(1.0)
            }
            Stage::Simulating => 0.9 + 0.1 * self.bars_processed as f64 / self.bars_total.max(1) as f64,
        }
    }
}

impl fmt::Display for BacktestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BacktestError::Params(e) => e.fmt(f),
            BacktestError::Data(s) => write!(f, "bad backtest data: {s}"),
            BacktestError::Engine { symbol, time, error } => write!(f, "{symbol}: bar at {time}: {error}"),
            BacktestError::Panicked { symbol, message } => {
                write!(f, "{symbol}: evaluating its bars failed unexpectedly: {message}")
            }
            BacktestError::Cancelled { bars_processed } => {
                write!(f, "backtest cancelled after {bars_processed} bars")
            }
        }
    }
}

impl std::error::Error for BacktestError {}

impl From<ParamError> for BacktestError {
    fn from(e: ParamError) -> Self {
        BacktestError::Params(e)
    }
}
