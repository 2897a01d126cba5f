//! The bar evaluator: one symbol's rolling state, advanced one closed bar at a time.
//!
//! Live trading (inside PostgreSQL, as each bar closes) and backtests (over stored bars) both
//! feed bars to a [`BarEngine`], so a signal in a backtest is exactly the signal the live
//! system would have produced on the same bars. The engine is deterministic: the same
//! parameters and the same bars give bit-identical outputs.
//!
//! Per bar ([`BarEngine::on_bar`]), in order:
//!
//! 1. The bar is checked (finite positive prices, `low ≤ open, close ≤ high`, volumes ≥ 0,
//!    time after the previous bar's, profile on the engine's grid). A refused bar changes
//!    nothing.
//! 2. A new session key resets the session's state: session profile, CVD, ATR, volume
//!    average, momentum and flow windows and the session bar count. Each session is thus
//!    evaluated from its own bars only, which is what makes the live path (evaluating from
//!    the session open) and a backtest (running through many sessions) agree bit for bit.
//!    The one exception is the rolling profile (`state.profile_scope = "rolling"`), which
//!    holds the last `state.rolling_bars` bars across session boundaries: a live evaluation
//!    with it starts that many bars before the session open (their readings are discarded),
//!    and then equals the run through many sessions too.
//! 3. The bar's order flow is the candle's classified buy/sell volume; without any, the
//!    bar profile's; without that either, the close-location estimate
//!    ([`crate::flow::clv_split`]).
//! 4. The bar's profile is the one given, or an estimate: the volume spread evenly over the
//!    profile rows from low to high with the buy/sell split of step 3 (volume conserved).
//! 5. ATR, session/rolling profile, CVD, aggression ([`crate::state::aggression`]), momentum
//!    and the AMT state ([`crate::state::classify`]) are updated; LVN proximity is read from
//!    the session profile.
//! 6. Once warmed up, the strategy ([`crate::strategy::evaluate`]) turns the reading into an
//!    entry (flat) or a reversal exit (in a position).

use crate::atr::Atr;
use crate::candle::{Candle, Micros};
use crate::flow::{BarFlow, SessionCvd};
use crate::ladder::RowLadder;
use crate::profile::{node_rows, BarProfile, NodeParams, Profile, ProfileError};
use crate::side::Side;
use crate::state::{
    aggression, classify, momentum_pct, nearest_lvn, AggressionParams, FlowBar, FlowDirection, LvnProximity,
    MarketState, ProfileScope, StateInput, StateParams, ValueLevels,
};
use crate::strategy::{check_range, evaluate, ParamError, Signal, StrategyInput, StrategyParams};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;

/// Most profile rows one estimated bar is spread over; wider bars use every k-th row so a bad
/// print or a far too fine grid cannot allocate without bound.
pub const MAX_ESTIMATED_ROWS: i64 = 10_000;

/// Everything that configures a [`BarEngine`]. Missing keys take the defaults given with each field;
/// unknown keys are errors. Call [`EngineParams::validate`] after deserializing (the engine's
/// constructor does).
///
/// As jsonb: `{"atr_period": 14, "state": {"profile_scope": "rolling"}, "strategy":
/// {"min_aggression_score": 60}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineParams {
    /// Wilder ATR period in bars (default `14`); 1–1000.
    pub atr_period: u32,
    /// Bars of the current session, the current one included, before any signal (default `20`);
    /// 0–100000. Imbalance states also need `state.momentum_lookback + 1` session bars.
    pub warmup_bars: u32,
    /// Ticks per profile row for the session and estimated profiles (default `1`); given bar profiles
    /// must be on the same grid. 1–1000000.
    pub ticks_per_row: u32,
    pub state: StateParams,
    pub aggression: AggressionParams,
    pub strategy: StrategyParams,
}

impl Default for EngineParams {
    fn default() -> Self {
        EngineParams {
            atr_period: crate::atr::DEFAULT_ATR_PERIOD as u32,
            warmup_bars: 20,
            ticks_per_row: 1,
            state: StateParams::default(),
            aggression: AggressionParams::default(),
            strategy: StrategyParams::default(),
        }
    }
}

impl EngineParams {
    /// Checks every field's range; the error names the field (dotted for nested groups, e.g.
    /// `strategy.atr_stop_multiplier`) and the allowed range.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("atr_period", f64::from(self.atr_period), 1.0, 1_000.0, "1 to 1000")?;
        check_range("warmup_bars", f64::from(self.warmup_bars), 0.0, 100_000.0, "0 to 100000")?;
        check_range("ticks_per_row", f64::from(self.ticks_per_row), 1.0, 1_000_000.0, "1 to 1000000")?;
        self.state.validate().map_err(|e| e.within("state"))?;
        self.aggression.validate().map_err(|e| e.within("aggression"))?;
        self.strategy.validate().map_err(|e| e.within("strategy"))
    }
}

/// Why the engine could not be built or refused a bar.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineError {
    /// A parameter out of range.
    Params(ParamError),
    /// A bad tick size, or a bar profile on another grid.
    Profile(ProfileError),
    /// A malformed bar; the text names the field and value.
    BadBar(String),
    /// A bar not after the previous one.
    OutOfOrder { time: Micros, previous: Micros },
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Params(e) => e.fmt(f),
            EngineError::Profile(e) => e.fmt(f),
            EngineError::BadBar(s) => write!(f, "bad bar: {s}"),
            EngineError::OutOfOrder { time, previous } => {
                write!(
                    f,
                    "bar at {time} is not after the previous bar at {previous}; feed bars in time order"
                )
            }
        }
    }
}

impl std::error::Error for EngineError {}

impl From<ParamError> for EngineError {
    fn from(e: ParamError) -> Self {
        EngineError::Params(e)
    }
}

impl From<ProfileError> for EngineError {
    fn from(e: ProfileError) -> Self {
        EngineError::Profile(e)
    }
}

/// One closed bar.
#[derive(Debug, Clone, PartialEq)]
pub struct BarInput {
    /// Start of the bar.
    pub time: Micros,
    /// Session key (e.g. the session's trading date); a change starts a new session.
    pub session: i64,
    pub candle: Candle,
    /// The bar's volume by price row, when trades are available; `None` estimates it.
    pub profile: Option<BarProfile>,
    /// The caller's open position in this symbol after the previous bar, if any (`Buy` for
    /// long, `Sell` for short).
    pub position: Option<Side>,
}

/// The engine's reading of one bar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BarOutput {
    /// Start of the bar.
    pub time: Micros,
    pub session: i64,
    /// 1 for the session's first bar.
    pub bar_in_session: u32,
    pub close: f64,
    pub state: MarketState,
    /// 0–100; see [`crate::state::classify`].
    pub confidence: f64,
    /// True when the state differs from the previous bar's (always on the first bar).
    pub state_changed: bool,
    /// Close-to-close change over `state.momentum_lookback` session bars, %.
    pub momentum_pct: Option<f64>,
    pub atr: Option<f64>,
    /// Aggression score 0–100; see [`crate::state::aggression`].
    pub aggression: f64,
    pub direction: FlowDirection,
    /// Bar volume / average bar volume.
    pub volume_ratio: f64,
    /// Net delta over the flow window, in average bars of volume.
    pub delta_momentum: f64,
    /// Buy share of the flow window's classified volume, %.
    pub buy_pressure: f64,
    /// Sell share of the flow window's classified volume, %.
    pub sell_pressure: f64,
    /// This bar's buy − sell volume.
    pub delta: f64,
    /// Cumulative delta since the session's first bar, this bar included.
    pub cvd: f64,
    /// True when this bar's buy/sell split is the close-location estimate.
    pub flow_estimated: bool,
    /// POC/VAH/VAL of the profile selected by `state.profile_scope`.
    pub value_area: Option<ValueLevels>,
    /// The session LVN within `state.lvn_proximity_pct` of the close, if any.
    pub lvn: Option<LvnProximity>,
    /// True once the warm-up is over and the ATR is known: signals are possible.
    pub ready: bool,
    pub signal: Option<Signal>,
}

impl BarOutput {
    /// What the strategy decides on, once the bar is [`BarOutput::ready`].
    pub fn strategy_input(&self) -> Option<StrategyInput> {
        self.ready.then_some(StrategyInput {
            price: self.close,
            state: self.state,
            confidence: self.confidence,
            aggression: self.aggression,
            direction: self.direction,
            atr: self.atr,
        })
    }
}

/// Rolling state of one symbol; see the module documentation.
#[derive(Debug, Clone)]
pub struct BarEngine {
    params: EngineParams,
    tick_size: f64,
    node_params: NodeParams,
    atr: Atr,
    session: Option<i64>,
    last_time: Option<Micros>,
    bars_in_session: u32,
    /// An empty profile: the engine's price grid (rows and their prices).
    grid: Profile,
    /// The session profile's row volumes.
    session_rows: RowLadder,
    /// Row volumes of the bars of the rolling scope, oldest first, across sessions (empty for
    /// the session scope), and their sum.
    rolling: VecDeque<Vec<(i64, f64)>>,
    rolling_rows: RowLadder,
    /// The current bar's row volumes.
    bar_rows: Vec<(i64, f64)>,
    cvd: SessionCvd<i64>,
    /// Session bars of the flow window, oldest first.
    flow_window: VecDeque<FlowBar>,
    /// Volumes of the bars before the current one, across sessions, oldest first.
    volumes: VecDeque<f64>,
    /// Session closes, oldest first, at most `momentum_lookback + 1`.
    closes: VecDeque<f64>,
    last_state: Option<MarketState>,
    /// Whether LVN proximity is read (see [`BarEngine::without_lvns`]).
    track_lvns: bool,
    /// The session profile's LVNs and the session volume when they were computed.
    lvns: Vec<f64>,
    lvn_volume: f64,
}

impl BarEngine {
    /// A fresh engine for a symbol whose prices move in steps of `tick_size`.
    pub fn new(params: EngineParams, tick_size: f64) -> Result<BarEngine, EngineError> {
        params.validate()?;
        let grid = Profile::new(tick_size, params.ticks_per_row)?;
        Ok(BarEngine {
            atr: Atr::new(params.atr_period as usize),
            tick_size,
            node_params: NodeParams::default(),
            session: None,
            last_time: None,
            bars_in_session: 0,
            grid,
            session_rows: RowLadder::default(),
            rolling: VecDeque::new(),
            rolling_rows: RowLadder::default(),
            bar_rows: Vec::new(),
            cvd: SessionCvd::new(),
            flow_window: VecDeque::new(),
            volumes: VecDeque::new(),
            closes: VecDeque::new(),
            last_state: None,
            track_lvns: true,
            lvns: Vec::new(),
            lvn_volume: 0.0,
            params,
        })
    }

    /// An engine that does not look for LVNs: [`BarOutput::lvn`] stays `None`, everything else
    /// is unchanged (no state or strategy rule reads it). Node detection scans the session
    /// profile, so backtests, which only need the signals, leave it out.
    pub fn without_lvns(mut self) -> BarEngine {
        self.track_lvns = false;
        self
    }

    /// The parameters the engine runs with.
    pub fn params(&self) -> &EngineParams {
        &self.params
    }

    /// Evaluates one closed bar. On error the engine is left exactly as it was.
    pub fn on_bar(&mut self, bar: &BarInput) -> Result<BarOutput, EngineError> {
        if bar.position == Some(Side::Unknown) {
            return Err(EngineError::BadBar("position must be Buy (long), Sell (short) or none".into()));
        }
        let mut out = self.observe(bar)?;
        out.signal =
            out.strategy_input().and_then(|input| evaluate(&input, bar.position, &self.params.strategy));
        Ok(out)
    }

    /// Evaluates one closed bar like [`BarEngine::on_bar`] but leaves out the signal, the only
    /// output that depends on the position: a backtest reads every bar here first (on several
    /// threads) and asks the strategy later, once it knows the position
    /// ([`BarOutput::strategy_input`]).
    pub fn observe(&mut self, bar: &BarInput) -> Result<BarOutput, EngineError> {
        // Everything fallible first, so a refused bar leaves no trace.
        check_candle(&bar.candle)?;
        if let Some(previous) = self.last_time {
            if bar.time <= previous {
                return Err(EngineError::OutOfOrder { time: bar.time, previous });
            }
        }
        let c = &bar.candle;
        let flow = bar_flow(c, bar.profile.as_ref())?;
        // The bar's row volumes, given or estimated (a scratch buffer, refilled every bar).
        self.bar_rows.clear();
        match &bar.profile {
            Some(given) => {
                given.check_grid(self.tick_size, self.params.ticks_per_row)?;
                self.bar_rows.extend_from_slice(given.rows());
            }
            None => self.bar_rows.extend(Spread::new(c, &flow, &self.grid)?.row_totals()),
        }
        // From here on nothing can fail.

        let p = &self.params;
        if self.session != Some(bar.session) {
            // Everything restarts with the session, so the readings of a bar depend only on
            // its own session's bars: a live evaluation that starts at the session open gives
            // exactly what a backtest running through many sessions gives. The rolling profile
            // alone carries on (it is the last `rolling_bars` bars, whichever session they
            // belong to), so it depends on the last `rolling_bars` bars before the session too.
            self.atr = Atr::new(p.atr_period as usize);
            self.volumes.clear();
            self.last_state = None;
            self.lvns.clear();
            self.lvn_volume = 0.0;
            self.session_rows.clear();
            self.session = Some(bar.session);
            self.bars_in_session = 0;
            self.flow_window.clear();
            self.closes.clear();
        }
        self.bars_in_session += 1;
        self.last_time = Some(bar.time);

        let atr = self.atr.update(c);
        self.session_rows.add_ascending(&self.bar_rows);
        if p.state.profile_scope == ProfileScope::Rolling {
            let mut rows = if self.rolling.len() >= p.state.rolling_bars as usize {
                self.rolling.pop_front().unwrap_or_default()
            } else {
                Vec::new()
            };
            rows.clone_from(&self.bar_rows);
            self.rolling.push_back(rows);
            // Rebuilt from the window's bars, oldest first, so the sums never carry the
            // rounding of bars that left the window.
            self.rolling_rows.clear();
            for rows in &self.rolling {
                self.rolling_rows.add_ascending(rows);
            }
        }

        // Average volume of the bars before this one; then this bar joins the history.
        let avg_volume =
            (!self.volumes.is_empty()).then(|| self.volumes.iter().sum::<f64>() / self.volumes.len() as f64);
        push_capped(&mut self.volumes, c.volume, p.aggression.volume_lookback as usize);
        push_capped(
            &mut self.flow_window,
            FlowBar { volume: c.volume, buy: flow.buy, sell: flow.sell },
            p.aggression.flow_lookback as usize,
        );
        let aggr = aggression(self.flow_window.make_contiguous(), avg_volume, &p.aggression);
        let cvd = self.cvd.push(bar.session, flow.delta());

        let lookback = p.state.momentum_lookback as usize;
        push_capped(&mut self.closes, c.close, lookback + 1);
        let momentum = match self.closes.front() {
            Some(&base) if self.closes.len() == lookback + 1 => momentum_pct(base, c.close),
            _ => None,
        };

        let va_rows = match p.state.profile_scope {
            ProfileScope::Session => &mut self.session_rows,
            ProfileScope::Rolling => &mut self.rolling_rows,
        };
        let value_area = va_rows.value_area(p.state.value_area_pct, p.state.va_method).map(|r| ValueLevels {
            poc: self.grid.row_price(r.poc),
            vah: self.grid.row_price(r.hi),
            val: self.grid.row_price(r.lo),
        });
        // VAH and VAL are row prices (each row's lowest tick), so the close is compared on
        // the same grid: a close inside the VAH row is inside value.
        let grid_price = self.grid.row_price(self.grid.row_of(c.close));
        let reading = classify(
            &StateInput {
                price: grid_price,
                value_area,
                momentum_pct: momentum,
                pressure: aggr.buy_pressure - aggr.sell_pressure,
            },
            &p.state,
        );
        // Node detection scans the whole session profile; the nodes of a session only move
        // once enough new volume arrives, so they are refreshed when the session's volume has
        // grown by 5 % (and on its first bars). Deterministic: it depends only on the bars.
        let lvn = if self.track_lvns {
            let volume = self.session_rows.total();
            if self.bars_in_session <= 5 || volume > self.lvn_volume * 1.05 {
                let (_, rows) = node_rows(&self.session_rows.rows(), &self.node_params);
                self.lvns = rows.into_iter().map(|r| self.grid.row_price(r)).collect();
                self.lvn_volume = volume;
            }
            nearest_lvn(c.close, &self.lvns, p.state.lvn_proximity_pct)
        } else {
            None
        };

        let ready = self.bars_in_session >= p.warmup_bars && atr.is_some();
        let state_changed = self.last_state != Some(reading.state);
        self.last_state = Some(reading.state);

        Ok(BarOutput {
            time: bar.time,
            session: bar.session,
            bar_in_session: self.bars_in_session,
            close: c.close,
            state: reading.state,
            confidence: reading.confidence,
            state_changed,
            momentum_pct: momentum,
            atr,
            aggression: aggr.score,
            direction: aggr.direction,
            volume_ratio: aggr.volume_ratio,
            delta_momentum: aggr.delta_momentum,
            buy_pressure: aggr.buy_pressure,
            sell_pressure: aggr.sell_pressure,
            delta: flow.delta(),
            cvd,
            flow_estimated: flow.estimated,
            value_area,
            lvn,
            ready,
            signal: None,
        })
    }
}

/// Runs a fresh engine over `bars` (each with its own `position`) and collects the outputs.
pub fn run_bars(
    params: EngineParams,
    tick_size: f64,
    bars: &[BarInput],
) -> Result<Vec<BarOutput>, EngineError> {
    let mut engine = BarEngine::new(params, tick_size)?;
    bars.iter().map(|b| engine.on_bar(b)).collect()
}

fn push_capped<T>(q: &mut VecDeque<T>, v: T, cap: usize) {
    q.push_back(v);
    while q.len() > cap {
        q.pop_front();
    }
}

fn check_candle(c: &Candle) -> Result<(), EngineError> {
    let bad = |s: String| Err(EngineError::BadBar(s));
    for (name, v) in [("open", c.open), ("high", c.high), ("low", c.low), ("close", c.close)] {
        if !(v.is_finite() && v > 0.0) {
            return bad(format!("{name} must be a finite number > 0, got {v}"));
        }
    }
    for (name, v) in [("volume", c.volume), ("buy_volume", c.buy_volume), ("sell_volume", c.sell_volume)] {
        if !(v.is_finite() && v >= 0.0) {
            return bad(format!("{name} must be a finite number >= 0, got {v}"));
        }
    }
    if c.low > c.open.min(c.close) || c.high < c.open.max(c.close) {
        return bad(format!(
            "open {} and close {} must lie within low {} and high {}",
            c.open, c.close, c.low, c.high
        ));
    }
    Ok(())
}

/// The bar's buy/sell split: counted on the candle, else counted in the profile, else the
/// close-location estimate.
fn bar_flow(c: &Candle, profile: Option<&BarProfile>) -> Result<BarFlow, EngineError> {
    if c.buy_volume + c.sell_volume > 0.0 {
        return Ok(BarFlow::from_candle(c));
    }
    if let Some(p) = profile {
        let (buy, sell) = (p.buy_volume(), p.sell_volume());
        if buy + sell > 0.0 {
            return Ok(BarFlow::new(buy, sell));
        }
    }
    BarFlow::estimate(c).map_err(|e| EngineError::BadBar(e.to_string()))
}

/// A profile for a bar without one: its volume spread evenly over the rows from low to high,
/// each row getting the same shares of `flow.buy`, `flow.sell` and the unclassified rest. The
/// last row takes what division left over, so the rows add up to the bar's volume.
pub fn estimate_profile(
    c: &Candle,
    flow: &BarFlow,
    tick_size: f64,
    ticks_per_row: u32,
) -> Result<Profile, ProfileError> {
    let mut p = Profile::new(tick_size, ticks_per_row)?;
    let spread = Spread::new(c, flow, &p)?;
    for (k, side) in [Side::Buy, Side::Sell, Side::Unknown].into_iter().enumerate() {
        for i in 0..spread.n {
            let size = spread.share(k, i);
            if size > 0.0 {
                p.add(p.row_price(spread.row(i)), size, side)?;
            }
        }
    }
    Ok(p)
}

/// How [`estimate_profile`] spreads a bar: `n` rows from `lo`, `stride` rows apart (1 unless
/// the bar spans more than [`MAX_ESTIMATED_ROWS`] rows), and the shares of the buy, sell and
/// unclassified volume. The engine reads the row totals straight from here, without building
/// the profile.
struct Spread {
    lo: i64,
    stride: i64,
    n: i64,
    /// Per volume (buy, sell, unclassified): every row's share but the last, and the last's.
    shares: [(f64, f64); 3],
}

impl Spread {
    fn new(c: &Candle, flow: &BarFlow, grid: &Profile) -> Result<Spread, ProfileError> {
        let (lo, hi) = (grid.checked_row_of(c.low)?, grid.checked_row_of(c.high)?);
        let span = hi - lo + 1;
        let stride = (span + MAX_ESTIMATED_ROWS - 1) / MAX_ESTIMATED_ROWS;
        let n = (span + stride - 1) / stride;
        let unknown = (c.volume - flow.buy - flow.sell).max(0.0);
        let shares = [flow.buy, flow.sell, unknown].map(|total| {
            if total <= 0.0 {
                return (0.0, 0.0);
            }
            let each = total / n as f64;
            (each, total - each * (n - 1) as f64)
        });
        Ok(Spread { lo, stride, n, shares })
    }

    fn row(&self, i: i64) -> i64 {
        self.lo + i * self.stride
    }

    /// Row `i`'s share of volume `k` (0 buy, 1 sell, 2 unclassified); ≤ 0 means none.
    fn share(&self, k: usize, i: i64) -> f64 {
        let (each, last) = self.shares[k];
        if i == self.n - 1 {
            last
        } else {
            each
        }
    }

    /// `(row, volume)` of every row, each volume the sum of the row's shares in the order a
    /// profile level adds them (buy + sell + unclassified), so it equals the estimated
    /// profile's row total.
    fn row_totals(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        let total = |i| self.share(0, i).max(0.0) + self.share(1, i).max(0.0) + self.share(2, i).max(0.0);
        let (each, last) = (total(0), total(self.n - 1));
        (0..self.n).map(move |i| (self.row(i), if i == self.n - 1 { last } else { each }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::SignalKind;
    use serde::de::value::{Error as DeError, MapDeserializer};

    use crate::MINUTE;

    fn candle(open: f64, high: f64, low: f64, close: f64, volume: f64) -> Candle {
        Candle::from_ohlcv(0, open, high, low, close, volume)
    }

    fn cents(x: f64) -> f64 {
        (x * 100.0).round() / 100.0
    }

    fn bars_from(closes: &[f64], session: i64, start: Micros) -> Vec<BarInput> {
        let mut prev = closes[0];
        closes
            .iter()
            .enumerate()
            .map(|(i, &close)| {
                let open = prev;
                prev = close;
                BarInput {
                    time: start + i as Micros * MINUTE,
                    session,
                    candle: candle(
                        open,
                        cents(open.max(close) + 0.01),
                        cents(open.min(close) - 0.01),
                        close,
                        1000.0,
                    ),
                    profile: None,
                    position: None,
                }
            })
            .collect()
    }

    /// 0.05 up per bar from 100: a clean one-sided trend.
    fn trend(n: usize) -> Vec<f64> {
        (0..n).map(|i| cents(100.0 + 0.05 * i as f64)).collect()
    }

    /// Rotation of ±0.5 around 100 every 10 bars with a little deterministic noise.
    fn rotation(n: usize) -> Vec<f64> {
        let mut seed: u64 = 7;
        (0..n)
            .map(|i| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let noise = ((seed >> 33) % 7) as f64 / 100.0 - 0.03;
                let phase = (i % 10) as f64 / 10.0 * std::f64::consts::TAU;
                cents(100.0 + 0.5 * phase.sin() + noise)
            })
            .collect()
    }

    #[test]
    fn trending_series_reaches_imbalance_up_and_goes_long() {
        let bars = bars_from(&trend(60), 1, 0);
        let out = run_bars(EngineParams::default(), 0.01, &bars).unwrap();
        // Momentum needs 21 bars; from then on the trend is accepted above value.
        assert!(out[..20].iter().all(|o| o.state == MarketState::Balance));
        assert!(out[25..].iter().all(|o| o.state == MarketState::ImbalanceUp), "{:?}", out[25]);
        let first = out.iter().find_map(|o| o.signal.clone()).expect("a long signal");
        assert_eq!((first.kind, first.side), (SignalKind::Entry, Side::Buy));
        assert!(first.aggression >= 70.0);
        let atr = first.atr.unwrap();
        assert!((first.stop.unwrap() - (first.price - 1.5 * atr)).abs() < 1e-9);
        assert!((first.target.unwrap() - (first.price + 3.0 * atr)).abs() < 1e-9);
        assert!(first.reason.starts_with("imbalance_up"), "{}", first.reason);
        // No signal before the warm-up.
        assert!(out[..19].iter().all(|o| o.signal.is_none() && !o.ready));
        // Momentum is in percent: 20 bars × 0.05 on ~101 is about 1%.
        let m = out[40].momentum_pct.unwrap();
        assert!((m - 100.0 / cents(100.0 + 0.05 * 20.0)).abs() < 0.01, "{m}");

        // The mirror image goes short.
        let down: Vec<f64> = trend(60).iter().map(|c| cents(200.0 - c)).collect();
        let out = run_bars(EngineParams::default(), 0.01, &bars_from(&down, 1, 0)).unwrap();
        assert!(out[25..].iter().all(|o| o.state == MarketState::ImbalanceDown));
        assert_eq!(out.iter().find_map(|o| o.signal.clone()).unwrap().side, Side::Sell);
    }

    #[test]
    fn rotational_series_stays_in_balance() {
        let bars = bars_from(&rotation(200), 1, 0);
        let out = run_bars(EngineParams::default(), 0.01, &bars).unwrap();
        assert!(out.iter().all(|o| o.state == MarketState::Balance));
        assert!(out.iter().all(|o| o.signal.is_none()));
        // Price does leave the value area at the extremes: balance there is the momentum rule.
        let va = out[150].value_area.unwrap();
        assert!(va.val < va.poc && va.poc < va.vah, "{va:?}");
        assert!(out[100..].iter().any(|o| o.close > o.value_area.unwrap().vah));
    }

    #[test]
    fn same_bars_give_bit_identical_outputs() {
        let mut closes = trend(40);
        closes.extend(rotation(40));
        let mut bars = bars_from(&closes, 1, 0);
        bars.extend(bars_from(&trend(30), 2, 100 * MINUTE));
        // Some bars come with a counted profile and sides.
        for b in bars.iter_mut().step_by(3) {
            let c = &mut b.candle;
            let mut p = Profile::new(0.01, 1).unwrap();
            p.add(c.close, 600.0, Side::Buy).unwrap();
            p.add(c.low, 400.0, Side::Sell).unwrap();
            c.buy_volume = 600.0;
            c.sell_volume = 400.0;
            b.profile = Some(BarProfile::from(&p));
        }
        bars[50].position = Some(Side::Buy);
        let params = EngineParams {
            state: StateParams { profile_scope: ProfileScope::Rolling, ..StateParams::default() },
            ..EngineParams::default()
        };
        for params in [EngineParams::default(), params] {
            let a = run_bars(params.clone(), 0.01, &bars).unwrap();
            let b = run_bars(params, 0.01, &bars).unwrap();
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
            assert_eq!(a, b);
        }
    }

    #[test]
    fn a_new_session_resets_profile_cvd_and_momentum() {
        let mut bars = bars_from(&trend(30), 1, 0);
        bars.extend(bars_from(&[150.0, 150.05, 150.1], 2, 100 * MINUTE));
        let out = run_bars(EngineParams::default(), 0.01, &bars).unwrap();
        let last_of_first = &out[29];
        assert!(last_of_first.cvd > 10_000.0);
        let first = &out[30];
        assert_eq!((first.session, first.bar_in_session), (2, 1));
        assert_eq!(first.cvd, first.delta);
        assert_eq!(first.momentum_pct, None);
        assert!(!first.ready);
        // The session profile holds only the new bar: its value area is inside the bar.
        let va = first.value_area.unwrap();
        assert!(va.val >= 149.99 && va.vah <= 150.01, "{va:?}");
        assert_eq!(out[31].cvd, out[30].delta + out[31].delta);
        // The ATR restarts with the session: unknown until `atr_period` bars of it.
        assert_eq!(first.atr, None);
        assert!(last_of_first.atr.is_some());
    }

    #[test]
    fn a_session_evaluated_alone_equals_the_same_session_after_others() {
        let mut bars = bars_from(&trend(40), 1, 0);
        let second = bars_from(&trend(45), 2, 100 * MINUTE);
        bars.extend(second.clone());
        let through = run_bars(EngineParams::default(), 0.01, &bars).unwrap();
        let alone = run_bars(EngineParams::default(), 0.01, &second).unwrap();
        assert_eq!(&through[40..], &alone[..]);
    }

    #[test]
    fn the_rolling_profile_rolls_across_sessions() {
        let params = EngineParams {
            state: StateParams {
                profile_scope: ProfileScope::Rolling,
                rolling_bars: 30,
                ..StateParams::default()
            },
            ..EngineParams::default()
        };
        let mut bars = bars_from(&rotation(50), 1, 0);
        let higher: Vec<f64> = trend(40).iter().map(|c| cents(c + 10.0)).collect();
        bars.extend(bars_from(&higher, 2, 100 * MINUTE));
        let through = run_bars(params.clone(), 0.01, &bars).unwrap();
        // The new session's first value area still holds the previous session's bars (around
        // 100), not only its own first bar (at 110).
        let first = &through[50];
        assert_eq!(first.bar_in_session, 1);
        let va = first.value_area.unwrap();
        assert!(va.val < 101.0, "{va:?}");
        // Everything else restarted with the session.
        assert_eq!((first.cvd, first.atr, first.momentum_pct), (first.delta, None, None));
        // The session evaluated from the last `rolling_bars` bars before it gives the same
        // readings as the run through both sessions (live ≡ history).
        let from_window = run_bars(params.clone(), 0.01, &bars[50 - 30..]).unwrap();
        assert_eq!(&from_window[30..], &through[50..]);
        // Fewer bars before the session: a different rolling profile.
        let short = run_bars(params, 0.01, &bars[50 - 10..]).unwrap();
        assert_ne!(short[10].value_area, through[50].value_area);
    }

    #[test]
    fn reversal_exit_for_an_open_long() {
        let mut closes = trend(40);
        let top = *closes.last().unwrap();
        closes.extend((1..40).map(|i| cents(top - 0.08 * i as f64)));
        let mut bars = bars_from(&closes, 1, 0);
        for b in &mut bars {
            b.position = Some(Side::Buy);
        }
        let out = run_bars(EngineParams::default(), 0.01, &bars).unwrap();
        let exit = out.iter().find_map(|o| o.signal.clone()).expect("an exit");
        assert_eq!(
            (exit.kind, exit.side, exit.state),
            (SignalKind::Exit, Side::Buy, MarketState::ImbalanceDown)
        );
        assert!(out.iter().filter_map(|o| o.signal.as_ref()).all(|s| s.kind == SignalKind::Exit));
    }

    #[test]
    fn estimated_profile_conserves_volume_and_split() {
        let c = candle(100.0, 100.1, 99.9, 100.05, 1001.0);
        let flow = BarFlow::estimate(&c).unwrap();
        let p = estimate_profile(&c, &flow, 0.01, 1).unwrap();
        assert_eq!(p.row_count(), 21);
        // The engine reads the same row volumes straight from the spread.
        let grid = Profile::new(0.01, 1).unwrap();
        let totals: Vec<(i64, f64)> = p.rows().iter().map(|(r, l)| (*r, l.total())).collect();
        assert_eq!(Spread::new(&c, &flow, &grid).unwrap().row_totals().collect::<Vec<_>>(), totals);
        assert!((p.total_volume() - 1001.0).abs() < 1e-9);
        assert!((p.buy_volume() - flow.buy).abs() < 1e-9);
        assert!((p.sell_volume() - flow.sell).abs() < 1e-9);
        assert_eq!(p.range(), Some((99.9, 100.1)));
        // Coarser rows: 0.05 per row gives 5 rows for 99.90..100.10.
        let p = estimate_profile(&c, &flow, 0.01, 5).unwrap();
        assert_eq!(p.row_count(), 5);
        // A bar far wider than the row cap still conserves volume.
        let wide = candle(10.0, 1000.0, 1.0, 500.0, 7.0);
        let f = BarFlow::estimate(&wide).unwrap();
        let p = estimate_profile(&wide, &f, 0.01, 1).unwrap();
        assert!(p.row_count() as i64 <= MAX_ESTIMATED_ROWS);
        assert!((p.total_volume() - 7.0).abs() < 1e-9);
    }

    #[test]
    fn refused_bars_name_the_problem_and_change_nothing() {
        let bars = bars_from(&trend(30), 1, 0);
        let mut e = BarEngine::new(EngineParams::default(), 0.01).unwrap();
        let mut reference = BarEngine::new(EngineParams::default(), 0.01).unwrap();
        for b in &bars[..10] {
            e.on_bar(b).unwrap();
            reference.on_bar(b).unwrap();
        }
        let err = e.on_bar(&bars[5]).unwrap_err();
        assert!(matches!(err, EngineError::OutOfOrder { .. }), "{err}");
        let mut bad = bars[10].clone();
        bad.candle.close = f64::NAN;
        assert!(e.on_bar(&bad).unwrap_err().to_string().contains("close must be a finite number"));
        let mut bad = bars[10].clone();
        bad.candle.high = bad.candle.low - 1.0;
        assert!(e.on_bar(&bad).unwrap_err().to_string().contains("within low"));
        let mut bad = bars[10].clone();
        bad.profile = Some(BarProfile::from(&Profile::new(0.05, 1).unwrap()));
        assert!(e.on_bar(&bad).unwrap_err().to_string().contains("different grids"));
        let mut bad = bars[10].clone();
        bad.position = Some(Side::Unknown);
        assert!(e.on_bar(&bad).is_err());
        for b in &bars[10..] {
            assert_eq!(e.on_bar(b).unwrap(), reference.on_bar(b).unwrap());
        }
    }

    #[test]
    fn params_validate_with_dotted_names_and_deserialize_with_defaults() {
        assert_eq!(EngineParams::default().validate(), Ok(()));
        let mut p = EngineParams::default();
        p.state.momentum_lookback = 0;
        let e = BarEngine::new(p, 0.01).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameter state.momentum_lookback = 0 is out of range (allowed: 1 to 10000)"
        );
        let mut p = EngineParams::default();
        p.strategy.atr_target_multiplier = -1.0;
        assert_eq!(p.validate().unwrap_err().field, "strategy.atr_target_multiplier");
        assert!(matches!(BarEngine::new(EngineParams::default(), 0.0), Err(EngineError::Profile(_))));

        let d: MapDeserializer<_, DeError> = MapDeserializer::new(vec![("warmup_bars", 5u32)].into_iter());
        let p = EngineParams::deserialize(d).unwrap();
        assert_eq!(p, EngineParams { warmup_bars: 5, ..EngineParams::default() });
        let d: MapDeserializer<_, DeError> = MapDeserializer::new(vec![("warmup", 5u32)].into_iter());
        assert!(EngineParams::deserialize(d).unwrap_err().to_string().contains("unknown field `warmup`"));
        let d: MapDeserializer<_, DeError> =
            MapDeserializer::new(vec![("profile_scope", "rolling"), ("va_method", "SINGLE")].into_iter());
        let s = StateParams::deserialize(d).unwrap();
        assert_eq!((s.profile_scope, s.va_method), (ProfileScope::Rolling, crate::profile::VaMethod::Single));
        let d: MapDeserializer<_, DeError> = MapDeserializer::new(vec![("va_method", "widest")].into_iter());
        assert!(StateParams::deserialize(d).unwrap_err().to_string().contains("widest"));
    }

    #[test]
    fn readings_do_not_depend_on_the_volume_scale() {
        // A thin feed and a consolidated one differ by a volume factor, not by order flow.
        let mut closes = trend(40);
        closes.extend(rotation(40));
        let bars = bars_from(&closes, 1, 0);
        let scaled: Vec<BarInput> = bars
            .iter()
            .map(|b| {
                let mut b = b.clone();
                b.candle.volume *= 100.0;
                b
            })
            .collect();
        let a = run_bars(EngineParams::default(), 0.01, &bars).unwrap();
        let b = run_bars(EngineParams::default(), 0.01, &scaled).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                (x.state, x.direction, x.signal.is_some()),
                (y.state, y.direction, y.signal.is_some())
            );
            assert!((x.aggression - y.aggression).abs() < 1e-9);
            assert!((x.cvd * 100.0 - y.cvd).abs() < 1e-6 * y.cvd.abs().max(1.0));
        }
    }

    #[test]
    fn a_first_bar_is_balance_and_not_ready() {
        let out = run_bars(EngineParams::default(), 0.01, &bars_from(&[100.0], 1, 0)).unwrap();
        let o = &out[0];
        assert_eq!((o.state, o.state_changed, o.ready, o.atr), (MarketState::Balance, true, false, None));
        assert_eq!((o.volume_ratio, o.flow_estimated), (1.0, true));
        assert!(o.value_area.is_some());
    }
}
