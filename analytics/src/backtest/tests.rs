use super::*;
use crate::candle::Candle;
use crate::state::FlowDirection;
use crate::stats::{statistics, BuyAndHold};
use crate::strategy::SignalKind;
use serde::de::value::{Error as DeError, MapDeserializer};
use std::collections::HashMap;

use crate::MINUTE;

fn candle(open: f64, high: f64, low: f64, close: f64) -> Candle {
    Candle::from_ohlcv(0, open, high, low, close, 1000.0)
}

/// A regular-hours bar starting `minute` minutes after the epoch.
fn bar(minute: i64, session: i64, o: f64, h: f64, l: f64, c: f64) -> BacktestBar {
    BacktestBar::new(
        BarInput {
            time: minute * MINUTE,
            session,
            candle: candle(o, h, l, c),
            profile: None,
            position: None,
        },
        true,
    )
}

/// Bars one minute apart in session 1.
fn bars(ohlc: &[(f64, f64, f64, f64)]) -> Vec<BacktestBar> {
    ohlc.iter().enumerate().map(|(i, &(o, h, l, c))| bar(i as i64, 1, o, h, l, c)).collect()
}

fn series(symbol: &str, bars: Vec<BacktestBar>) -> SymbolSeries {
    SymbolSeries { symbol: symbol.into(), tick_size: 0.01, bars }
}

fn signal(kind: SignalKind, side: Side, price: f64, stop: Option<f64>, target: Option<f64>) -> Signal {
    Signal {
        kind,
        side,
        price,
        stop,
        target,
        atr: Some(1.0),
        reason: format!("scripted {} {side:?}", kind.as_str()),
        aggression: 80.0,
        direction: FlowDirection::Neutral,
        state: MarketState::Balance,
        confidence: 50.0,
    }
}

fn long(price: f64, stop: f64, target: Option<f64>) -> Signal {
    signal(SignalKind::Entry, Side::Buy, price, Some(stop), target)
}

fn short(price: f64, stop: f64, target: Option<f64>) -> Signal {
    signal(SignalKind::Entry, Side::Sell, price, Some(stop), target)
}

fn exit(side: Side, price: f64) -> Signal {
    signal(SignalKind::Exit, side, price, None, None)
}

/// Signals given by (symbol, bar index); logs every call.
#[derive(Default)]
struct Script {
    signals: HashMap<(usize, usize), Signal>,
    log: Vec<(usize, Micros, Option<Side>)>,
}

impl Script {
    fn at(mut self, symbol: usize, bar: usize, s: Signal) -> Script {
        self.signals.insert((symbol, bar), s);
        self
    }
}

impl SignalSource for Script {
    fn on_bar(
        &mut self,
        symbol: usize,
        bar: &BarInput,
        ctx: &BarContext,
    ) -> Result<Option<Signal>, EngineError> {
        self.log.push((symbol, bar.time, bar.position));
        Ok(self.signals.get(&(symbol, ctx.bar_index)).cloned())
    }
}

fn run_script(symbols: Vec<SymbolSeries>, params: &BacktestParams, script: &mut Script) -> BacktestResult {
    let mut data = BacktestData::new(symbols).unwrap();
    run_with(&mut data, params, script, &mut |_| true).unwrap()
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn costly() -> BacktestParams {
    BacktestParams {
        slippage_ticks: 2.0,
        slippage_bps: 10.0,
        commission_per_share: dec("0.01"),
        commission_pct: 0.05,
        ..BacktestParams::default()
    }
}

#[test]
fn long_trade_pnl_with_commission_and_slippage_by_hand() {
    let data = bars(&[
        (100.0, 100.5, 99.5, 100.0),  // 0: long signal at 100, stop 95, target 110
        (100.5, 101.0, 100.2, 100.8), // 1: entry at the open
        (101.0, 102.0, 100.9, 101.5), // 2: exit signal
        (102.0, 102.5, 101.8, 102.2), // 3: exit at the open
    ]);
    let mut script =
        Script::default().at(0, 0, long(100.0, 95.0, Some(110.0))).at(0, 2, exit(Side::Buy, 101.5));
    let r = run_script(vec![series("A", data)], &costly(), &mut script);
    assert_eq!(r.trades.len(), 1);
    let t = &r.trades[0];
    // Size: risk 1 % of 100000 = 1000 over |100 − 95| = 5 → 200 shares (cash allows ~998).
    assert_eq!((t.direction, t.qty), (Direction::Long, 200));
    // Entry: open 100.5 + 2 ticks 0.02 + 10 bps of 100.5 (0.1005) = 100.6205.
    assert_eq!(t.entry_price, dec("100.6205"));
    // Fee: 200 × 0.01 + 0.05 % of 200 × 100.6205 = 2 + 0.0005 × 20124.1 = 12.06205.
    assert_eq!(t.entry_fee, dec("12.06205"));
    // Exit: open 102 − 0.02 − 0.102 = 101.878; fee 2 + 0.0005 × 20375.6 = 12.1878.
    assert_eq!(t.exit_price, dec("101.878"));
    assert_eq!(t.exit_fee, dec("12.1878"));
    assert_eq!(t.exit_reason, ExitReason::Signal);
    // P&L: (101.878 − 100.6205) × 200 = 251.5, minus 12.06205 + 12.1878 = 227.25015.
    assert_eq!(t.pnl, dec("227.25015"));
    assert_eq!(r.final_equity, dec("100227.25015"));
    assert_eq!((t.signal_time, t.entry_time, t.exit_time, t.bars), (0, MINUTE, 3 * MINUTE, 3));
    assert!((t.return_pct - 227.25015 / 20124.1 * 100.0).abs() < 1e-9);
    // Excursions: lowest low 100.2 (bar 1), highest price 102 (bar 2's high and bar 3's open).
    assert!((t.mae_price - 0.4205).abs() < 1e-9 && (t.mfe_price - 1.3795).abs() < 1e-9);
    assert_eq!((t.mae, t.mfe), (dec("84.1"), dec("275.9")));
    // After bar 1: cash 100000 − 20124.1 − 12.06205 = 79863.83795, plus 200 × 100.8.
    let p = &r.equity[1];
    assert_eq!((p.cash, p.equity, p.open_positions), (dec("79863.83795"), dec("100023.83795"), 1));
    assert_eq!(p.exposure, dec("20160"));
    assert_eq!(r.equity.last().unwrap().equity, dec("100227.25015"));
    assert_eq!(r.signals_seen, 2);
}

#[test]
fn short_trade_pnl_with_commission_and_slippage_by_hand() {
    let data = bars(&[
        (100.0, 100.5, 99.5, 100.0), // 0: short signal at 100, stop 105, target 90
        (99.5, 99.8, 99.0, 99.2),    // 1: entry at the open
        (99.0, 99.3, 98.4, 98.6),    // 2: exit signal
        (98.0, 98.2, 97.8, 98.1),    // 3: exit at the open
    ]);
    let mut script =
        Script::default().at(0, 0, short(100.0, 105.0, Some(90.0))).at(0, 2, exit(Side::Sell, 98.6));
    let r = run_script(vec![series("A", data)], &costly(), &mut script);
    let t = &r.trades[0];
    assert_eq!((t.direction, t.qty), (Direction::Short, 200));
    // Entry (a sale): 99.5 − 0.02 − 0.0995 = 99.3805; fee 2 + 0.0005 × 19876.1 = 11.93805.
    assert_eq!((t.entry_price, t.entry_fee), (dec("99.3805"), dec("11.93805")));
    // Exit (a purchase): 98 + 0.02 + 0.098 = 98.118; fee 2 + 0.0005 × 19623.6 = 11.8118.
    assert_eq!((t.exit_price, t.exit_fee), (dec("98.118"), dec("11.8118")));
    // P&L: (99.3805 − 98.118) × 200 = 252.5, minus 11.93805 + 11.8118 = 228.75015.
    assert_eq!(t.pnl, dec("228.75015"));
    assert_eq!(r.final_equity, dec("100228.75015"));
    // After bar 1: collateral taken from cash; the short is worth 200 × (2 × 99.3805 − 99.2).
    let p = &r.equity[1];
    assert_eq!(p.cash, dec("80111.96195"));
    assert_eq!(p.equity, dec("100024.16195"));
    // Excursions: highest high 99.8 against, lowest price 98 (bar 3's open) in favour.
    assert!((t.mae_price - 0.4195).abs() < 1e-9 && (t.mfe_price - 1.3805).abs() < 1e-9);
}

#[test]
fn a_short_that_rises_loses() {
    let data = bars(&[
        (100.0, 100.0, 100.0, 100.0),
        (100.0, 100.0, 100.0, 100.0),
        (102.0, 102.0, 102.0, 102.0),
        (103.0, 103.0, 103.0, 103.0),
    ]);
    let mut script = Script::default().at(0, 0, short(100.0, 110.0, None)).at(0, 1, exit(Side::Sell, 100.0));
    let r = run_script(vec![series("A", data)], &BacktestParams::default(), &mut script);
    // 1000 / 10 = 100 shares, in at 100, out at 102: −200.
    let t = &r.trades[0];
    assert_eq!((t.qty, t.exit_price, t.pnl), (100, dec("102"), dec("-200")));
    assert_eq!(r.final_equity, dec("99800"));
    assert_eq!(r.equity.last().unwrap().cash, dec("99800"));
}

fn both_touched(stop_first: bool, long_side: bool) -> Trade {
    let data =
        bars(&[(100.0, 100.0, 100.0, 100.0), (100.0, 101.5, 98.5, 100.0), (100.0, 100.0, 100.0, 100.0)]);
    let entry = if long_side { long(100.0, 99.0, Some(101.0)) } else { short(100.0, 101.0, Some(99.0)) };
    let params = BacktestParams { same_bar_stop_first: stop_first, ..BacktestParams::default() };
    let r = run_script(vec![series("A", data)], &params, &mut Script::default().at(0, 0, entry));
    assert_eq!(r.trades.len(), 1);
    r.trades[0].clone()
}

#[test]
fn stop_and_target_in_one_bar() {
    // Risk 1000 over a 1.00 stop = 1000 shares; the entry bar itself touches both levels.
    let t = both_touched(true, true);
    assert_eq!((t.exit_reason, t.exit_price, t.pnl), (ExitReason::Stop, dec("99"), dec("-1000")));
    assert_eq!((t.entry_time, t.exit_time, t.bars), (MINUTE, MINUTE, 1));
    let t = both_touched(false, true);
    assert_eq!((t.exit_reason, t.exit_price, t.pnl), (ExitReason::Target, dec("101"), dec("1000")));
    let t = both_touched(true, false);
    assert_eq!((t.exit_reason, t.exit_price, t.pnl), (ExitReason::Stop, dec("101"), dec("-1000")));
    let t = both_touched(false, false);
    assert_eq!((t.exit_reason, t.exit_price, t.pnl), (ExitReason::Target, dec("99"), dec("1000")));
}

fn gap(open: f64, entry: Signal, params: &BacktestParams) -> Trade {
    let data = bars(&[
        (100.0, 100.0, 100.0, 100.0),
        (100.0, 100.5, 99.5, 100.2),
        (open, open + 0.5, open - 0.5, open),
        (open, open, open, open),
    ]);
    let r = run_script(vec![series("A", data)], params, &mut Script::default().at(0, 0, entry));
    r.trades[0].clone()
}

#[test]
fn gaps_through_stop_or_target_fill_at_the_open() {
    let p = BacktestParams::default();
    // Long, stop 99: bar 2 opens at 97.5, below the stop → out at 97.5, not 99.
    let t = gap(97.5, long(100.0, 99.0, Some(102.0)), &p);
    assert_eq!((t.exit_reason, t.exit_price, t.exit_time), (ExitReason::Stop, dec("97.5"), 2 * MINUTE));
    assert_eq!(t.pnl, dec("-2500"));
    // With one tick of slippage the stop sells at 97.49.
    let slip = BacktestParams { slippage_ticks: 1.0, ..BacktestParams::default() };
    let t = gap(97.5, long(100.0, 99.0, Some(102.0)), &slip);
    assert_eq!((t.entry_price, t.exit_price), (dec("100.01"), dec("97.49")));
    // Long, target 102: bar 2 opens at 103 → out at 103, better than the target.
    let t = gap(103.0, long(100.0, 99.0, Some(102.0)), &p);
    assert_eq!((t.exit_reason, t.exit_price, t.pnl), (ExitReason::Target, dec("103"), dec("3000")));
    // Short, stop 101: bar 2 opens at 102.5 → bought back at 102.5.
    let t = gap(102.5, short(100.0, 101.0, Some(98.0)), &p);
    assert_eq!((t.exit_reason, t.exit_price, t.pnl), (ExitReason::Stop, dec("102.5"), dec("-2500")));
    // Short, target 98: bar 2 opens at 97 → bought back at 97.
    let t = gap(97.0, short(100.0, 101.0, Some(98.0)), &p);
    assert_eq!((t.exit_reason, t.exit_price, t.pnl), (ExitReason::Target, dec("97"), dec("3000")));
}

#[test]
fn zero_trade_run_has_defined_statistics() {
    let data =
        bars(&[(100.0, 101.0, 99.0, 100.5), (100.5, 101.0, 100.0, 100.2), (100.2, 100.4, 99.8, 100.0)]);
    let r = run_script(vec![series("A", data)], &BacktestParams::default(), &mut Script::default());
    assert!(r.trades.is_empty());
    assert_eq!(r.equity.len(), 3);
    assert!(r.equity.iter().all(|p| p.equity == dec("100000") && p.drawdown.is_zero() && !p.in_market));
    assert_eq!(r.daily.len(), 1);
    assert_eq!((r.signals_seen, r.signals_blocked.total()), (0, 0));
    let s = statistics(&r, r.initial_cash, &BuyAndHold::from_result(&r), 0, 3 * MINUTE);
    assert_eq!((s.trades, s.return_pct, s.max_drawdown_pct), (0, 0.0, 0.0));
    assert_eq!((s.win_rate_pct, s.profit_factor, s.sqn, s.sharpe), (None, None, None, None));
    assert_eq!(s.exposure_time_pct, Some(0.0));
    // First close 100.5, last 100.
    assert!((s.buy_and_hold_return_pct.unwrap() - (100.0 / 100.5 - 1.0) * 100.0).abs() < 1e-12);
}

/// Peeks at the next bar's close: enters long when it is higher, exits on the bar after the
/// fill. Trading at the signal bar's close would win every time.
struct Peeker {
    closes: Vec<f64>,
}

impl SignalSource for Peeker {
    fn on_bar(&mut self, _: usize, bar: &BarInput, ctx: &BarContext) -> Result<Option<Signal>, EngineError> {
        let i = ctx.bar_index;
        let close = bar.candle.close;
        Ok(match bar.position {
            Some(side) => Some(exit(side, close)),
            None => match self.closes.get(i + 1) {
                Some(&next) if next > close => Some(long(close, close * 0.5, None)),
                _ => None,
            },
        })
    }
}

#[test]
fn peeking_at_the_next_close_gains_nothing() {
    // Flat bars that gap: 100, 101, 100, 101, ... Each next close is known to the peeker.
    let closes: Vec<f64> = (0..40).map(|i| if i % 2 == 0 { 100.0 } else { 101.0 }).collect();
    let data: Vec<_> = closes.iter().map(|&c| (c, c, c, c)).collect();
    let mut data = BacktestData::new(vec![series("A", bars(&data))]).unwrap();
    let mut peeker = Peeker { closes: closes.clone() };
    let r = run_with(&mut data, &BacktestParams::default(), &mut peeker, &mut |_| true).unwrap();
    assert!(!r.trades.is_empty());
    let mut close_fill_pnl = 0.0;
    for t in &r.trades {
        let i = (t.signal_time / MINUTE) as usize;
        // Filled at the next bar's open, out at the open of the bar after that.
        assert_eq!(t.entry_time, (i as i64 + 1) * MINUTE);
        assert_eq!(t.entry_price, money(closes[i + 1]));
        // Trading at the signal bar's close would have bought at 100 and sold at 101.
        close_fill_pnl += (closes[i + 1] - closes[i]) * t.qty as f64;
        assert_eq!(t.pnl, (t.exit_price - t.entry_price) * Decimal::from(t.qty));
        if t.exit_reason == ExitReason::EndOfData {
            assert_eq!(t.exit_price, money(closes[39]));
        } else {
            assert_eq!(t.exit_price, money(closes[i + 2]));
            assert!(t.pnl < Decimal::ZERO);
        }
    }
    assert!(close_fill_pnl > 0.0);
    assert!(r.final_equity < r.initial_cash);

    // On a random walk the fills are still exactly next-open to next-open.
    let mut seed: u64 = 11;
    let mut price = 100.0f64;
    let mut ohlc = Vec::new();
    for _ in 0..500 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let open = ((price + ((seed >> 33) % 41) as f64 / 100.0 - 0.2) * 100.0).round() / 100.0;
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let close = ((open + ((seed >> 33) % 41) as f64 / 100.0 - 0.2) * 100.0).round() / 100.0;
        ohlc.push((open, open.max(close), open.min(close), close));
        price = close;
    }
    let closes: Vec<f64> = ohlc.iter().map(|b| b.3).collect();
    let opens: Vec<f64> = ohlc.iter().map(|b| b.0).collect();
    let mut data = BacktestData::new(vec![series("A", bars(&ohlc))]).unwrap();
    let r = run_with(&mut data, &BacktestParams::default(), &mut Peeker { closes }, &mut |_| true).unwrap();
    assert!(r.trades.len() > 50);
    for t in r.trades.iter().filter(|t| t.exit_reason == ExitReason::Signal) {
        let i = (t.signal_time / MINUTE) as usize;
        assert_eq!((t.entry_price, t.exit_price), (money(opens[i + 1]), money(opens[i + 2])));
    }
}

#[test]
fn sizing_respects_risk_cash_and_max_positions() {
    let flat = |n: usize| bars(&vec![(100.0, 100.0, 100.0, 100.0); n]);
    // Risk sizing: 1000 / 5 = 200 shares each; max 2 positions: the third symbol is blocked.
    let params = BacktestParams {
        engine: EngineParams {
            strategy: crate::strategy::StrategyParams { max_positions: 2, ..Default::default() },
            ..EngineParams::default()
        },
        ..BacktestParams::default()
    };
    let symbols = vec![series("A", flat(3)), series("B", flat(3)), series("C", flat(3))];
    let mut script = Script::default()
        .at(0, 0, long(100.0, 95.0, None))
        .at(1, 0, long(100.0, 95.0, None))
        .at(2, 0, long(100.0, 95.0, None));
    let r = run_script(symbols, &params, &mut script);
    let names: Vec<_> = r.trades.iter().map(|t| (t.symbol.as_str(), t.qty, t.exit_reason)).collect();
    assert_eq!(names, [("A", 200, ExitReason::EndOfData), ("B", 200, ExitReason::EndOfData)]);
    assert_eq!(r.signals_blocked, BlockedSignals { max_positions: 1, ..Default::default() });
    assert_eq!(r.equity[1].open_positions, 2);

    // A tight stop asks for 1000 / 0.05 = 20000 shares; cash allows 1000. The first symbol's
    // reservation leaves nothing for the second.
    let symbols = vec![series("A", flat(3)), series("B", flat(3))];
    let mut script = Script::default().at(0, 0, long(100.0, 99.95, None)).at(1, 0, long(100.0, 99.95, None));
    let r = run_script(symbols, &BacktestParams::default(), &mut script);
    assert_eq!(r.trades.len(), 1);
    assert_eq!(r.trades[0].qty, 1000);
    assert_eq!(r.signals_blocked, BlockedSignals { cash: 1, ..Default::default() });
    assert_eq!(r.equity[1].cash, Decimal::ZERO);

    // The fill bar gaps up to 110: 1000 shares no longer fit, 909 do.
    let data = bars(&[(100.0, 100.0, 100.0, 100.0), (110.0, 110.0, 110.0, 110.0)]);
    let r = run_script(
        vec![series("A", data)],
        &BacktestParams::default(),
        &mut Script::default().at(0, 0, long(100.0, 99.95, None)),
    );
    assert_eq!(r.trades[0].qty, 909);

    // A risk budget under one share is no trade.
    let r = run_script(
        vec![series("A", flat(3))],
        &BacktestParams { initial_cash: dec("100"), ..BacktestParams::default() },
        &mut Script::default().at(0, 0, long(100.0, 95.0, None)),
    );
    assert!(r.trades.is_empty());
    assert_eq!(r.signals_blocked.size, 1);
}

#[test]
fn daily_loss_limit_blocks_entries_until_the_next_day() {
    let mut b = vec![
        bar(0, 1, 100.0, 100.0, 100.0, 100.0), // 0: long, stop 96
        bar(1, 1, 100.0, 100.0, 95.0, 96.0),   // 1: in at 100, stopped at 96: −4000 = −4 %
        bar(2, 1, 96.0, 96.0, 96.0, 96.0),     // 2: signal blocked by the 3 % limit
        bar(3, 1, 96.0, 96.0, 96.0, 96.0),
        bar(1440, 2, 96.0, 96.0, 96.0, 96.0), // 4: next session: allowed
        bar(1441, 2, 96.0, 96.0, 96.0, 96.0),
    ];
    b[3].in_session = false;
    let params = BacktestParams {
        engine: EngineParams {
            strategy: crate::strategy::StrategyParams { risk_per_trade_pct: 10.0, ..Default::default() },
            ..EngineParams::default()
        },
        ..BacktestParams::default()
    };
    let mut script = Script::default()
        .at(0, 0, long(100.0, 96.0, None))
        .at(0, 2, long(96.0, 90.0, None))
        .at(0, 3, long(96.0, 90.0, None))
        .at(0, 4, long(96.0, 90.0, None));
    let r = run_script(vec![series("A", b)], &params, &mut script);
    assert_eq!(r.trades.len(), 2);
    assert_eq!((r.trades[0].qty, r.trades[0].pnl), (1000, dec("-4000")));
    assert_eq!(r.trades[1].entry_time, 1441 * MINUTE);
    assert_eq!(r.signals_blocked, BlockedSignals { daily_loss: 1, out_of_session: 1, ..Default::default() });
    assert_eq!(r.signals_seen, 4);
    // Two days: −4 % on the first, the second starts where the first ended.
    assert_eq!(r.daily.len(), 2);
    assert_eq!((r.daily[0].day, r.daily[0].pnl, r.daily[0].trades), (1, dec("-4000"), 1));
    assert!((r.daily[0].return_pct + 4.0).abs() < 1e-12);
    assert_eq!(r.daily[1].start_equity, dec("96000"));
    assert_eq!((r.daily[1].entries, r.daily[1].trades), (1, 1));
}

#[test]
fn multi_symbol_processing_is_chronological() {
    let a: Vec<_> = [0, 2, 4, 6].iter().map(|&m| bar(m, 1, 10.0, 10.0, 10.0, 10.0)).collect();
    let b: Vec<_> = [1, 2, 3, 5].iter().map(|&m| bar(m, 1, 20.0, 20.0, 20.0, 20.0)).collect();
    let mut script = Script::default();
    let r = run_script(vec![series("A", a), series("B", b)], &BacktestParams::default(), &mut script);
    let order: Vec<(usize, i64)> = script.log.iter().map(|&(s, t, _)| (s, t / MINUTE)).collect();
    assert_eq!(order, [(0, 0), (1, 1), (0, 2), (1, 2), (1, 3), (0, 4), (1, 5), (0, 6)]);
    let times: Vec<i64> = r.equity.iter().map(|p| p.time / MINUTE).collect();
    assert_eq!(times, [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(r.bars_processed, 8);

    // Listing B first gives B priority at the shared minute 2.
    let a: Vec<_> = [0, 2].iter().map(|&m| bar(m, 1, 10.0, 10.0, 10.0, 10.0)).collect();
    let b: Vec<_> = [2, 3].iter().map(|&m| bar(m, 1, 20.0, 20.0, 20.0, 20.0)).collect();
    let mut script = Script::default();
    run_script(vec![series("B", b), series("A", a)], &BacktestParams::default(), &mut script);
    let order: Vec<(usize, i64)> = script.log.iter().map(|&(s, t, _)| (s, t / MINUTE)).collect();
    assert_eq!(order, [(1, 0), (0, 2), (1, 2), (0, 3)]);
}

#[test]
fn the_source_sees_the_simulators_position() {
    let data = bars(&[(100.0, 100.0, 100.0, 100.0); 5]);
    let mut script = Script::default().at(0, 0, long(100.0, 90.0, None)).at(0, 2, exit(Side::Buy, 100.0));
    run_script(vec![series("A", data)], &BacktestParams::default(), &mut script);
    let positions: Vec<_> = script.log.iter().map(|l| l.2).collect();
    assert_eq!(positions, [None, Some(Side::Buy), Some(Side::Buy), None, None]);
}

#[test]
fn sessions_out_of_hours_and_end_of_data() {
    // Session 1: minutes 0..3, the last regular bar is 2; minute 3 is after hours.
    let mut b = vec![
        bar(0, 1, 100.0, 100.0, 100.0, 100.0),
        bar(1, 1, 100.0, 101.0, 100.0, 101.0),
        bar(2, 1, 101.0, 102.0, 101.0, 102.0),
        bar(3, 1, 102.0, 102.0, 102.0, 102.0),
        bar(1440, 2, 103.0, 103.0, 103.0, 103.0),
        bar(1441, 2, 104.0, 104.0, 104.0, 104.0),
    ];
    b[3].in_session = false;
    mark_session_ends(&mut b, true);
    let ends: Vec<bool> = b.iter().map(|x| x.session_last_bar).collect();
    assert_eq!(ends, [false, false, true, false, false, true]);
    let mut open_last = b.clone();
    mark_session_ends(&mut open_last, false);
    assert!(!open_last[5].session_last_bar && open_last[2].session_last_bar);

    let script = || {
        Script::default()
            .at(0, 0, long(100.0, 90.0, None))
            .at(0, 2, long(102.0, 90.0, None)) // fills at bar 3: after hours → dropped
            .at(0, 4, long(103.0, 90.0, None))
    };
    let flat = BacktestParams { flat_at_session_end: true, ..BacktestParams::default() };
    let r = run_script(vec![series("A", b.clone())], &flat, &mut script());
    let got: Vec<_> = r.trades.iter().map(|t| (t.exit_reason, t.exit_time / MINUTE, t.exit_price)).collect();
    // Bar 5 ends session 2 as well.
    assert_eq!(got, [(ExitReason::SessionEnd, 2, dec("102")), (ExitReason::SessionEnd, 1441, dec("104"))]);
    assert_eq!(r.signals_blocked, BlockedSignals { out_of_session: 1, ..Default::default() });
    assert_eq!(r.equity.last().unwrap().open_positions, 0);
    assert_eq!(r.equity.last().unwrap().equity, r.final_equity);

    // Without flattening the first position is held through to the end of data.
    let r = run_script(vec![series("A", b)], &BacktestParams::default(), &mut script());
    let got: Vec<_> = r.trades.iter().map(|t| (t.exit_reason, t.exit_time / MINUTE)).collect();
    assert_eq!(got, [(ExitReason::EndOfData, 1441)]);
    assert_eq!(r.trades[0].bars, 5);
    // While held, the position's signals were not entries.
    assert_eq!(r.signals_seen, 1);
}

#[test]
fn shorts_can_be_disabled_and_pending_entries_expire() {
    let data = bars(&[(100.0, 100.0, 100.0, 100.0); 2]);
    let params = BacktestParams { allow_short: false, ..BacktestParams::default() };
    let mut script = Script::default().at(0, 0, short(100.0, 105.0, None)).at(0, 1, long(100.0, 95.0, None));
    let r = run_script(vec![series("A", data)], &params, &mut script);
    assert!(r.trades.is_empty());
    assert_eq!(
        r.signals_blocked,
        BlockedSignals { shorts_disabled: 1, end_of_data: 1, ..Default::default() }
    );
}

#[test]
fn progress_is_reported_and_can_cancel() {
    let data = bars(&vec![(100.0, 100.0, 100.0, 100.0); 10]);
    let mut d = BacktestData::new(vec![series("A", data)]).unwrap().with_progress_every(3);
    let mut seen = Vec::new();
    run_with(&mut d, &BacktestParams::default(), &mut Script::default(), &mut |p| {
        seen.push((p.bars_processed, p.bars_total));
        true
    })
    .unwrap();
    assert_eq!(seen, [(3, 10), (6, 10), (9, 10), (10, 10)]);
    let err =
        run_with(&mut d, &BacktestParams::default(), &mut Script::default(), &mut |p| p.bars_processed < 6)
            .unwrap_err();
    assert_eq!(err, BacktestError::Cancelled { bars_processed: 6 });
    // No second report when the last bar falls on the interval.
    let mut d = d.with_progress_every(5);
    let mut seen = Vec::new();
    run_with(&mut d, &BacktestParams::default(), &mut Script::default(), &mut |p| {
        seen.push(p.bars_processed);
        true
    })
    .unwrap();
    assert_eq!(seen, [5, 10]);
}

#[test]
fn bad_data_and_params_are_named() {
    let mut b = bars(&[(100.0, 100.0, 100.0, 100.0), (100.0, 100.0, 100.0, 100.0)]);
    b[1].input.time = 0;
    let e = BacktestData::new(vec![series("A", b)]).unwrap_err();
    assert!(e.to_string().contains("A: bar at 0 is not after"), "{e}");
    let b = bars(&[(100.0, 99.0, 98.0, 100.0)]);
    assert!(BacktestData::new(vec![series("A", b)]).unwrap_err().to_string().contains("invalid prices"));
    let s = SymbolSeries { symbol: "Z".into(), tick_size: 0.0, bars: vec![] };
    assert!(BacktestData::new(vec![s]).unwrap_err().to_string().contains("Z: tick_size"));

    assert_eq!(BacktestParams::default().validate(), Ok(()));
    let mut p = BacktestParams::default();
    p.engine.strategy.max_positions = 0;
    assert_eq!(p.validate().unwrap_err().field, "engine.strategy.max_positions");
    let p = BacktestParams { slippage_bps: -1.0, ..BacktestParams::default() };
    assert_eq!(p.validate().unwrap_err().field, "slippage_bps");
    let p = BacktestParams { initial_cash: Decimal::ZERO, ..BacktestParams::default() };
    assert_eq!(p.validate().unwrap_err().field, "initial_cash");
    let mut d = BacktestData::new(vec![]).unwrap();
    let e = run_with(
        &mut d,
        &BacktestParams { commission_pct: f64::NAN, ..BacktestParams::default() },
        &mut Script::default(),
        &mut |_| true,
    );
    assert!(matches!(e, Err(BacktestError::Params(ref pe)) if pe.field == "commission_pct"));

    let m: MapDeserializer<_, DeError> =
        MapDeserializer::new(vec![("initial_cash", 5000.5f64), ("slippage_ticks", 1.0)].into_iter());
    let p = BacktestParams::deserialize(m).unwrap();
    assert_eq!(
        p,
        BacktestParams { initial_cash: dec("5000.5"), slippage_ticks: 1.0, ..BacktestParams::default() }
    );
    let m: MapDeserializer<_, DeError> = MapDeserializer::new(vec![("slipage_bps", 1.0f64)].into_iter());
    assert!(BacktestParams::deserialize(m).unwrap_err().to_string().contains("unknown field `slipage_bps`"));
    let m: MapDeserializer<_, DeError> = MapDeserializer::new(vec![("day_boundary", "utc")].into_iter());
    assert_eq!(BacktestParams::deserialize(m).unwrap().day_boundary, DayBoundary::Utc);
}

#[test]
fn an_empty_run_is_fine() {
    let mut d = BacktestData::new(vec![series("A", vec![])]).unwrap();
    let r = run(&mut d, &BacktestParams::default(), &mut |_| true).unwrap();
    assert_eq!((r.trades.len(), r.equity.len(), r.daily.len()), (0, 0, 0));
    assert_eq!(r.final_equity, dec("100000"));
    let s = statistics(&r, r.initial_cash, &BuyAndHold::from_result(&r), 0, MINUTE);
    assert_eq!((s.trades, s.exposure_time_pct, s.buy_and_hold_return_pct), (0, None, None));
}

/// Bars of a steady up-trend, then a steady down-trend, in one session.
fn trend_then_reversal(n: usize) -> Vec<BacktestBar> {
    let cents = |x: f64| (x * 100.0).round() / 100.0;
    let mut closes: Vec<f64> = (0..n).map(|i| cents(100.0 + 0.05 * i as f64)).collect();
    let top = *closes.last().unwrap();
    closes.extend((1..n).map(|i| cents(top - 0.08 * i as f64)));
    let mut prev = closes[0];
    closes
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let o = prev;
            prev = c;
            bar(i as i64, 1, o, cents(o.max(c) + 0.01), cents(o.min(c) - 0.01), c)
        })
        .collect()
}

#[test]
fn the_live_engine_drives_the_default_run_deterministically() {
    let mut data = BacktestData::new(vec![
        series("UP", trend_then_reversal(60)),
        series("DOWN", {
            let mut b = trend_then_reversal(60);
            for x in &mut b {
                let c = &mut x.input.candle;
                let m = |p: f64| ((300.0 - p) * 100.0).round() / 100.0;
                (c.open, c.high, c.low, c.close) = (m(c.open), m(c.low), m(c.high), m(c.close));
            }
            b
        }),
    ])
    .unwrap();
    let params = BacktestParams::default();
    let a = run(&mut data, &params, &mut |_| true).unwrap();
    assert!(!a.trades.is_empty(), "{a:?}");
    assert!(a.trades.iter().any(|t| t.direction == Direction::Long));
    assert!(a.trades.iter().any(|t| t.direction == Direction::Short));
    for t in &a.trades {
        assert!(t.entry_time > t.signal_time && t.exit_time >= t.entry_time);
        assert!(t.entry_reason.contains("imbalance"), "{}", t.entry_reason);
    }
    // The same data run again (positions in the input are overwritten) gives the same result.
    let b = run(&mut data, &params, &mut |_| true).unwrap();
    assert_eq!(a, b);
    // Engine parameters reach the engine: an unreachable aggression threshold means no trades.
    let mut strict = params.clone();
    strict.engine.strategy.min_aggression_score = 100.0;
    strict.engine.aggression = crate::state::AggressionParams::default();
    strict.engine.warmup_bars = 100_000;
    let c = run(&mut data, &strict, &mut |_| true).unwrap();
    assert!(c.trades.is_empty() && c.signals_seen == 0);
}

/// What a run did before the engines were evaluated up front: each symbol's live engine
/// ([`BarEngine::on_bar`]) called in the simulator's order, told the simulator's position.
struct EnginesBarByBar(Vec<crate::engine::BarEngine>);

impl SignalSource for EnginesBarByBar {
    fn on_bar(&mut self, s: usize, bar: &BarInput, _: &BarContext) -> Result<Option<Signal>, EngineError> {
        Ok(self.0[s].on_bar(bar)?.signal)
    }
}

/// Five symbols over two sessions, trending up and down at different paces.
fn five_symbols() -> Vec<SymbolSeries> {
    (0..5)
        .map(|k| {
            let mut b = trend_then_reversal(40 + 7 * k);
            let mut second = trend_then_reversal(30 + 5 * k);
            let offset = b.len() as i64 + 600;
            for (i, x) in second.iter_mut().enumerate() {
                x.input.time = (offset + i as i64) * MINUTE;
                x.input.session = 2;
            }
            b.extend(second);
            // Every third bar comes with counted trades: a profile and a buy/sell split.
            for x in b.iter_mut().step_by(3) {
                let c = &mut x.input.candle;
                let trades = [(c.close, 600.0, Side::Buy), (c.low, 400.0, Side::Sell)];
                let p = crate::profile::Profile::from_trades(0.01, 1, trades).unwrap();
                (c.buy_volume, c.sell_volume) = (600.0, 400.0);
                x.input.profile = Some(crate::profile::BarProfile::from(&p));
            }
            if k % 2 == 1 {
                for x in &mut b {
                    let c = &mut x.input.candle;
                    let m = |p: f64| ((300.0 - p) * 100.0).round() / 100.0;
                    (c.open, c.high, c.low, c.close) = (m(c.open), m(c.low), m(c.high), m(c.close));
                }
            }
            series(&format!("S{k}"), b)
        })
        .collect()
}

#[test]
fn parallel_evaluation_equals_the_engine_bar_by_bar() {
    let params = BacktestParams::default();
    let symbols = five_symbols();
    let mut data = BacktestData::new(symbols.clone()).unwrap();
    let engines =
        symbols.iter().map(|s| crate::engine::BarEngine::new(params.engine.clone(), s.tick_size).unwrap());
    let reference =
        run_with(&mut data, &params, &mut EnginesBarByBar(engines.collect()), &mut |_| true).unwrap();
    assert!(reference.trades.len() >= 5, "{:?}", reference.trades.len());
    let profiles = |d: &BacktestData| {
        d.symbols().iter().flat_map(|s| &s.bars).filter(|b| b.input.profile.is_some()).count()
    };
    assert!(profiles(&data) > 100);
    for threads in [1, 2, 8] {
        let mut d = BacktestData::new(symbols.clone()).unwrap().with_threads(threads);
        assert_eq!(run(&mut d, &params, &mut |_| true).unwrap(), reference, "{threads} threads");
        // Data run in place keeps its profiles for the next run.
        assert_eq!(profiles(&d), profiles(&data), "{threads} threads");
    }
    // Symbols produced one by one while earlier ones are evaluated: the same run.
    let mut stages = Vec::new();
    let (mut d, mut readings) =
        evaluate_all(&params.engine, 2, symbols.len(), &mut |i| Ok(symbols[i].clone()), &mut |p| {
            stages.push((p.stage, p.symbols_done, p.symbols, p.fraction()));
            true
        })
        .unwrap();
    assert_eq!(stages.last().map(|s| (s.0, s.1, s.2, s.3)), Some((Stage::Evaluating, 5, 5, 0.9)));
    assert!(stages.iter().all(|s| (0.0..=0.9).contains(&s.3)), "{stages:?}");
    assert_eq!(d.bar_count(), data.bar_count());
    assert_eq!(run_with(&mut d, &params, &mut readings, &mut |_| true).unwrap(), reference);
    // The streamed data drops the profiles once evaluated (the simulator does not read them).
    assert_eq!(profiles(&d), 0);
}

#[test]
fn progress_fraction_extrapolates_from_the_symbols_loaded() {
    let p = Progress {
        stage: Stage::Evaluating,
        bars_processed: 50,
        bars_total: 100,
        symbols_loaded: 1,
        symbols_done: 0,
        symbols: 2,
        time: 0,
        trades: 0,
    };
    // 50 of an expected 2 × 100 bars evaluated: a quarter of the evaluation's 90 %.
    assert!((p.fraction() - 0.225).abs() < 1e-12);
    let simulating = Progress { stage: Stage::Simulating, bars_processed: 150, bars_total: 200, ..p };
    assert!((simulating.fraction() - 0.975).abs() < 1e-12);
}

#[test]
fn evaluation_errors_cancellation_and_load_failures() {
    let params = BacktestParams::default();
    // The engine refuses negative volume (the data check does not look at volume): the error is
    // the earliest refused bar over all symbols, as a run in time order would meet it.
    let mut symbols = five_symbols();
    symbols[3].bars[20].input.candle.volume = -1.0;
    symbols[1].bars[30].input.candle.volume = -1.0;
    let mut data = BacktestData::new(symbols.clone()).unwrap();
    match run(&mut data, &params, &mut |_| true).unwrap_err() {
        BacktestError::Engine { symbol, time, error } => {
            assert_eq!((symbol.as_str(), time), ("S3", symbols[3].bars[20].input.time));
            assert!(error.to_string().contains("volume"), "{error}");
        }
        other => panic!("{other:?}"),
    }

    // Cancelled while the engines run: the data is intact and runs again.
    let mut data = BacktestData::new(five_symbols()).unwrap();
    let err = run(&mut data, &params, &mut |p| p.stage != Stage::Evaluating).unwrap_err();
    assert!(matches!(err, BacktestError::Cancelled { .. }), "{err:?}");
    assert_eq!(data.symbols().len(), 5);
    assert!(run(&mut data, &params, &mut |_| true).is_ok());

    // A symbol that cannot be loaded, or is malformed, stops the run with its error.
    let symbols = five_symbols();
    let failing = |bad: usize| {
        move |i: usize| {
            if i == bad {
                Err(BacktestError::Data(format!("cannot load S{i}")))
            } else {
                Ok(symbols[i].clone())
            }
        }
    };
    let err = evaluate_all(&params.engine, 2, 5, &mut failing(2), &mut |_| true).unwrap_err();
    assert_eq!(err, BacktestError::Data("cannot load S2".into()));
    // A panic out of the loader (how PostgreSQL errors travel) comes out as itself.
    let symbols = five_symbols();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut produce = |i: usize| if i == 3 { panic!("load failed") } else { Ok(symbols[i].clone()) };
        evaluate_all(&params.engine, 2, 5, &mut produce, &mut |_| true)
    }))
    .unwrap_err();
    assert_eq!(panicked.downcast_ref::<&str>(), Some(&"load failed"));
    let mut unordered = five_symbols().remove(0);
    unordered.bars.swap(3, 4);
    let err = evaluate_all(&params.engine, 2, 1, &mut |_| Ok(unordered.clone()), &mut |_| true).unwrap_err();
    assert!(err.to_string().contains("not after the previous bar"), "{err}");
}

/// A worker that panics (a defect in the engine) ends the run with an error naming its symbol,
/// from the data already loaded or from symbols still being produced, instead of leaving the
/// caller waiting for a result that cannot come.
#[test]
fn a_panicking_worker_ends_the_run_with_an_error_naming_its_symbol() {
    use super::evaluate::{evaluate_all_with, evaluate_series};
    use std::sync::mpsc;
    use std::time::Duration;
    for threads in [1, 2, 8] {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let params = BacktestParams::default();
            let symbols = five_symbols();
            let r = evaluate_all_with(
                &params.engine,
                threads,
                symbols.len(),
                &mut |i| Ok(symbols[i].clone()),
                &mut |_| true,
                &|engine, series, evaluated, cancel| {
                    if series.symbol == "S2" {
                        panic!("engine defect on {}", series.bars.len());
                    }
                    evaluate_series(engine, series, evaluated, cancel)
                },
            );
            let _ = tx.send(r.map(|_| ()));
        });
        let err = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{threads} threads: the evaluation never ended"))
            .unwrap_err();
        match &err {
            BacktestError::Panicked { symbol, message } => {
                assert_eq!(symbol, "S2");
                assert!(message.starts_with("engine defect on "), "{message}");
            }
            other => panic!("{threads} threads: {other:?}"),
        }
        assert!(err.to_string().starts_with("S2: "), "{err}");
    }
}

/// 30 symbols × 252 sessions × 390 one-minute bars (≈2.9 M bars) of a random walk without
/// profiles, through the live engine. Run with
/// `cargo test --release -p tapeflow-analytics backtest_throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn backtest_throughput() {
    use std::time::Instant;
    const SYMBOLS: usize = 30;
    const BARS_PER_DAY: i64 = 390;
    // Fewer days for a quick look: TAPEFLOW_BENCH_DAYS=20.
    let days: i64 = std::env::var("TAPEFLOW_BENCH_DAYS").ok().and_then(|d| d.parse().ok()).unwrap_or(252);
    let started = Instant::now();
    let mut symbols = Vec::with_capacity(SYMBOLS);
    for s in 0..SYMBOLS {
        let mut rnd = splitmix(s as u64);
        let mut price = 50.0 + 10.0 * s as f64;
        let mut bars = Vec::with_capacity((days * BARS_PER_DAY) as usize);
        for day in 0..days {
            for m in 0..BARS_PER_DAY {
                let open = price;
                let close = ((open * (1.0 + (rnd() - 0.5) * 0.004)) * 100.0).round() / 100.0;
                let high = open.max(close) + (rnd() * 5.0).round() / 100.0;
                let low = open.min(close) - (rnd() * 5.0).round() / 100.0;
                let volume = (500.0 + rnd() * 1500.0).round();
                let minute = day * 1440 + 570 + m;
                let mut b = bar(minute, day, open, high, low, close);
                b.input.candle.volume = volume;
                b.session_last_bar = m == BARS_PER_DAY - 1;
                bars.push(b);
                price = close;
            }
        }
        symbols.push(series(&format!("S{s:02}"), bars));
    }
    let mut data = BacktestData::new(symbols).unwrap();
    let total = data.bar_count();
    println!("generated {total} bars in {:.2?}", started.elapsed());

    let params = BacktestParams { flat_at_session_end: true, ..BacktestParams::default() };
    let started = Instant::now();
    let r = run(&mut data, &params, &mut |_| true).unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "engine + simulator: {total} bars in {secs:.2} s = {:.0} bars/s; {} trades, {} signals, {} equity points",
        total as f64 / secs,
        r.trades.len(),
        r.signals_seen,
        r.equity.len()
    );
    let s = statistics(&r, r.initial_cash, &BuyAndHold::from_result(&r), 0, days * 1440 * MINUTE);
    println!("return {:.2} %, max drawdown {:.2} %, sharpe {:?}", s.return_pct, s.max_drawdown_pct, s.sharpe);
    for reason in [
        ExitReason::Stop,
        ExitReason::Target,
        ExitReason::Signal,
        ExitReason::SessionEnd,
        ExitReason::EndOfData,
    ] {
        let ts: Vec<_> = r.trades.iter().filter(|t| t.exit_reason == reason).collect();
        let pnl: Decimal = ts.iter().map(|t| t.pnl).sum();
        let risk: f64 = ts.iter().map(|t| (t.signal_price - t.stop).abs() * t.qty as f64).sum();
        println!("  {reason}: {} trades, pnl {pnl}, risked {risk:.0}", ts.len());
    }
    println!("  {}", mean_r(&r));

    // The simulator alone, with a source that enters every 50th bar of each symbol.
    struct Every50;
    impl SignalSource for Every50 {
        fn on_bar(
            &mut self,
            _: usize,
            bar: &BarInput,
            ctx: &BarContext,
        ) -> Result<Option<Signal>, EngineError> {
            let c = bar.candle.close;
            Ok(match (bar.position, ctx.bar_index % 50) {
                (None, 0) => Some(long(c, c * 0.99, Some(c * 1.01))),
                (Some(side), 25) => Some(exit(side, c)),
                _ => None,
            })
        }
    }
    let started = Instant::now();
    let r = run_with(&mut data, &params, &mut Every50, &mut |_| true).unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!("simulator alone: {:.0} bars/s; {} trades", total as f64 / secs, r.trades.len());

    // Coin-flip entries with a symmetric bracket: on a random walk the simulator must not
    // create an edge of its own (mean R ≈ 0).
    struct CoinFlip(Box<dyn FnMut() -> f64>);
    impl SignalSource for CoinFlip {
        fn on_bar(
            &mut self,
            _: usize,
            bar: &BarInput,
            _: &BarContext,
        ) -> Result<Option<Signal>, EngineError> {
            let c = bar.candle.close;
            let u = (self.0)();
            Ok(match bar.position {
                None if u < 0.01 => Some(long(c, c * 0.997, Some(c * 1.003))),
                None if u < 0.02 => Some(short(c, c * 1.003, Some(c * 0.997))),
                _ => None,
            })
        }
    }
    let r = run_with(&mut data, &params, &mut CoinFlip(Box::new(splitmix(999))), &mut |_| true).unwrap();
    println!("coin flip: {} trades, {}", r.trades.len(), mean_r(&r));
}

/// A splitmix64 stream of uniform numbers in [0, 1).
fn splitmix(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Mean R-multiple (P&L over the money at risk at the signal) with its standard error.
fn mean_r(r: &BacktestResult) -> String {
    let rs: Vec<f64> =
        r.trades.iter().map(|t| to_f64(t.pnl) / ((t.signal_price - t.stop).abs() * t.qty as f64)).collect();
    let n = rs.len() as f64;
    let m = rs.iter().sum::<f64>() / n;
    let sd = (rs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    format!("mean R {m:.4} ± {:.4} (standard error)", sd / n.sqrt())
}

// ---------------------------------------------------------------------------------------------
// Sweeps: grids and walk-forward analysis
// ---------------------------------------------------------------------------------------------

/// `s` with its bar profiles (one tick per row, rows of one side) re-binned to rows of
/// `ticks_per_row` ticks, as the loader re-bins stored profiles (which it decodes whole).
fn on_grid(mut s: SymbolSeries, ticks_per_row: u32) -> SymbolSeries {
    if ticks_per_row == 1 {
        return s;
    }
    for b in &mut s.bars {
        if let Some(p) = &b.input.profile {
            let rows = p.rows().iter().map(|&(r, v)| (r as f64 * s.tick_size, v, Side::Unknown));
            let full = crate::profile::Profile::from_trades(s.tick_size, 1, rows).unwrap();
            b.input.profile = Some(bar_profile_on_grid(&full, ticks_per_row).unwrap());
        }
    }
    s
}

mod sweeps {
    use super::super::grid::*;
    use super::*;
    use crate::stats::{CALENDAR_DAYS, TRADING_DAYS};
    use serde_json::json;

    #[test]
    fn a_grid_expands_over_the_base_with_the_last_key_fastest() {
        let base = json!({"initial_cash": 5000, "engine": {"atr_period": 10}});
        let grid = json!({"engine.strategy.min_aggression_score": [50, 60], "slippage_bps": [0, 1, 2]});
        let g = Grid::new(base.clone(), grid).unwrap();
        assert_eq!(g.len(), 6);
        let combos: Vec<serde_json::Value> = (0..g.len()).map(|i| g.combination(i).unwrap()).collect();
        assert_eq!(
            combos[0],
            json!({"initial_cash": 5000, "engine": {"atr_period": 10, "strategy": {"min_aggression_score": 50}},
                   "slippage_bps": 0})
        );
        let pairs: Vec<(i64, i64)> = combos
            .iter()
            .map(|c| {
                (
                    c["engine"]["strategy"]["min_aggression_score"].as_i64().unwrap(),
                    c["slippage_bps"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(pairs, [(50, 0), (50, 1), (50, 2), (60, 0), (60, 1), (60, 2)]);
        // Every combination is valid backtest parameters.
        let params = g.params().unwrap();
        assert_eq!(params.len(), 6);
        for (p, c) in params.iter().zip(&combos) {
            assert_eq!(p, &params_from_json(c).unwrap());
            assert_eq!((p.initial_cash, p.engine.atr_period), (Decimal::new(5000, 0), 10));
        }
        // An empty grid is the base alone.
        let g = Grid::new(base.clone(), json!({})).unwrap();
        assert_eq!((g.len(), g.combination(0).unwrap()), (1, base));
    }

    #[test]
    fn malformed_grids_and_params_are_named() {
        let base = json!({"initial_cash": 5000});
        let err = |grid: serde_json::Value| Grid::new(base.clone(), grid).unwrap_err();
        assert!(err(json!([1, 2])).contains("json object"));
        assert!(err(json!({"slippage_bps": 3})).contains("slippage_bps must map to an array"));
        assert!(err(json!({"slippage_bps": []})).contains("slippage_bps has no values"));
        let through = Grid::new(base.clone(), json!({"initial_cash.x": [1]})).unwrap();
        assert!(through.params().unwrap_err().contains("initial_cash.x goes through a non-object"));
        let bad = Grid::new(base.clone(), json!({"slippage_bps": [1, -1]})).unwrap();
        let e = bad.params().unwrap_err();
        assert!(
            e.contains("slippage_bps") && e.ends_with(r#"in {"initial_cash":5000,"slippage_bps":-1}"#),
            "{e}"
        );
        let e = params_from_json(&json!({"slipage_bps": 1})).unwrap_err();
        assert!(e.starts_with("invalid backtest params") && e.contains("slipage_bps"), "{e}");
        let e = params_from_json(&json!({"engine": {"strategy": {"max_positions": 0}}})).unwrap_err();
        assert!(e.contains("engine.strategy.max_positions"), "{e}");
    }

    /// The size of a grid is the product of its value counts, checked before any combination
    /// is built: two keys of 10,000 values are refused at once (not after building 10^8
    /// objects), and so is a product that overflows.
    #[test]
    fn a_grid_too_large_is_refused_before_anything_is_built() {
        let values = |n: usize| serde_json::Value::from((0..n).collect::<Vec<_>>());
        let e = Grid::new(json!({}), json!({"a": values(10_000), "b": values(10_000)})).unwrap_err();
        assert_eq!(e, "grid: 100000000 combinations (10000 × 10000 values), more than the 10000 allowed");
        let huge: serde_json::Map<String, serde_json::Value> =
            (0..8).map(|k| (format!("k{k}"), values(1000))).collect();
        let e = Grid::new(json!({}), serde_json::Value::Object(huge)).unwrap_err();
        assert!(e.starts_with(&format!("grid: more than {} combinations (1000 × 1000", usize::MAX)), "{e}");
        // At the limit it is fine, and a combination is built only when asked for.
        let g = Grid::new(json!({}), json!({"slippage_bps": values(100), "slippage_ticks": values(100)}))
            .unwrap();
        assert_eq!(g.len(), MAX_COMBINATIONS);
        assert_eq!(
            g.combination(MAX_COMBINATIONS - 1).unwrap(),
            json!({"slippage_bps": 99, "slippage_ticks": 99})
        );
        assert_eq!(g.combination(101).unwrap(), json!({"slippage_bps": 1, "slippage_ticks": 1}));
        assert!(Grid::new(json!({}), json!({"slippage_bps": values(10_001)})).is_err());
    }

    /// Windows are counted before they are built: a microsecond step over a year is refused.
    #[test]
    fn too_many_walk_forward_windows_are_refused_before_anything_is_built() {
        let year = 365 * 86_400_000_000;
        let e = walk_forward_windows(0, year, 1, 1).unwrap_err();
        assert!(
            e.starts_with(&format!("walk-forward: {} windows, more than the 10000 allowed", year - 1)),
            "{e}"
        );
        assert_eq!(walk_forward_windows(0, 10_001, 1, 1).unwrap().len(), MAX_WINDOWS);
        // Lengths whose sum overflows are just longer than the range.
        assert!(walk_forward_windows(0, year, Micros::MAX, Micros::MAX).unwrap().is_empty());
    }

    #[test]
    fn metrics_by_name_and_the_best_value() {
        for m in Metric::ALL {
            assert_eq!(m.as_str().parse::<Metric>(), Ok(m));
        }
        let e = "sharp".parse::<Metric>().unwrap_err();
        assert!(e.contains("unknown metric sharp") && e.contains("win_rate_pct"), "{e}");
        let mut data = BacktestData::new(five_symbols()).unwrap();
        let params = BacktestParams::default();
        let s = summary(&run(&mut data, &params, &mut |_| true).unwrap(), &params, 0, 1, TRADING_DAYS);
        assert_eq!(Metric::ReturnPct.of(&s), Some(s.return_pct));
        assert_eq!(Metric::Sharpe.of(&s), s.sharpe);
        assert_eq!(Metric::Sqn.of(&s), s.sqn);
        // The first of equals wins; undefined ranks below any value.
        assert_eq!(best_of([None, Some(-5.0), Some(2.0), Some(2.0)]), Some((2, Some(2.0))));
        assert_eq!(best_of([None, None]), Some((0, None)));
        assert_eq!(best_of([]), None);
    }

    #[test]
    fn walk_forward_windows_step_by_the_out_of_sample_length() {
        let w = walk_forward_windows(0, 100, 40, 20).unwrap();
        let spans: Vec<_> = w.iter().map(|w| (w.number, w.in_from, w.out_from, w.out_to)).collect();
        assert_eq!(spans, [(1, 0, 40, 60), (2, 20, 60, 80), (3, 40, 80, 100)]);
        assert!(walk_forward_windows(0, 59, 40, 20).unwrap().is_empty());
        assert!(walk_forward_windows(60, 60, 40, 20).unwrap().is_empty());
        assert_eq!(
            walk_forward_windows(100, 0, 40, 20).unwrap_err(),
            "walk-forward: from (100) is after to (0)"
        );
        assert!(walk_forward_windows(0, 100, 0, 20).unwrap_err().contains("positive"));
        assert!(walk_forward_windows(0, 100, 40, -1).unwrap_err().contains("positive"));
    }

    /// Bars of `symbols` in `[from, to)`.
    fn window_of(symbols: &[SymbolSeries], from: Micros, to: Micros) -> BacktestData {
        window_on_grid(symbols, from, to, 1)
    }

    /// Bars of `symbols` in `[from, to)` with profiles on rows of `ticks_per_row` ticks.
    fn window_on_grid(
        symbols: &[SymbolSeries],
        from: Micros,
        to: Micros,
        ticks_per_row: u32,
    ) -> BacktestData {
        let cut = symbols
            .iter()
            .map(|s| {
                let bars = s.bars.iter().filter(|b| (from..to).contains(&b.input.time)).cloned().collect();
                on_grid(SymbolSeries { bars, ..s.clone() }, ticks_per_row)
            })
            .collect();
        BacktestData::new(cut).unwrap()
    }

    /// A grid varying `engine.ticks_per_row` loads the bars once per grid, each combination
    /// reading profiles on its own grid.
    #[test]
    fn a_grid_over_ticks_per_row_loads_the_bars_once_per_profile_grid() {
        let symbols = five_symbols();
        let end = symbols.iter().flat_map(|s| s.bars.last()).map(|b| b.input.time).max().unwrap() + MINUTE;
        let grid = json!({"engine.ticks_per_row": [1, 4, 1, 10], "slippage_bps": [0, 3]});
        let params = Grid::new(json!({}), grid).unwrap().params().unwrap();
        let mut loaded = Vec::new();
        let mut load = |from, to, ticks_per_row| {
            loaded.push(ticks_per_row);
            Ok(window_on_grid(&symbols, from, to, ticks_per_row))
        };
        let mut simulate = |d: &mut BacktestData, p: &BacktestParams, _: SweepRun| run(d, p, &mut |_| true);
        let stats = grid_search(&params, 0, end, TRADING_DAYS, &mut load, &mut simulate).unwrap();
        assert_eq!(loaded, [1, 4, 10]);
        assert_eq!(stats.len(), 8);
        for (p, s) in params.iter().zip(&stats) {
            let alone = run(&mut window_on_grid(&symbols, 0, end, p.engine.ticks_per_row), p, &mut |_| true);
            assert_eq!(s, &summary(&alone.unwrap(), p, 0, end, TRADING_DAYS));
        }
    }

    #[test]
    fn grid_search_and_walk_forward_run_each_combination_on_its_window() {
        let symbols = five_symbols();
        let end = symbols.iter().flat_map(|s| s.bars.last()).map(|b| b.input.time).max().unwrap() + MINUTE;
        let grid = json!({"engine.strategy.min_aggression_score": [0, 100], "engine.warmup_bars": [5, 20]});
        let params = Grid::new(json!({}), grid).unwrap().params().unwrap();

        // A grid: each combination over the same data, as a run of its own would give.
        let mut runs = Vec::new();
        let mut simulate = |d: &mut BacktestData, p: &BacktestParams, which: SweepRun| {
            runs.push(which.to_string());
            run(d, p, &mut |_| true)
        };
        let mut load = |from, to, ticks_per_row| Ok(window_on_grid(&symbols, from, to, ticks_per_row));
        let stats = grid_search(&params, 0, end, CALENDAR_DAYS, &mut load, &mut simulate).unwrap();
        assert_eq!(
            runs,
            ["backtest_grid 1/4", "backtest_grid 2/4", "backtest_grid 3/4", "backtest_grid 4/4"]
        );
        for (p, s) in params.iter().zip(&stats) {
            let alone = run(&mut window_of(&symbols, 0, end), p, &mut |_| true).unwrap();
            assert_eq!(s, &summary(&alone, p, 0, end, CALENDAR_DAYS));
            assert_eq!(s.annual_trading_days, CALENDAR_DAYS);
        }
        assert!(stats[0].trades > 0 && stats[3].trades == 0, "{:?}", stats.iter().map(|s| s.trades));

        // Walk-forward: the in-sample winner by return, then its out-of-sample statistics.
        let windows = walk_forward_windows(0, end, end / 2, end / 4).unwrap();
        assert_eq!(windows.len(), 2);
        let mut loaded = Vec::new();
        let mut load = |from, to, _| {
            loaded.push((from, to));
            Ok(window_of(&symbols, from, to))
        };
        let mut runs = Vec::new();
        let mut simulate = |d: &mut BacktestData, p: &BacktestParams, which: SweepRun| {
            runs.push(which.to_string());
            run(d, p, &mut |_| true)
        };
        let results =
            walk_forward(&params, &windows, Metric::ReturnPct, CALENDAR_DAYS, &mut load, &mut simulate)
                .unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(
            loaded,
            windows
                .iter()
                .flat_map(|w| [(w.in_from, w.out_from), (w.out_from, w.out_to)])
                .collect::<Vec<_>>()
        );
        assert_eq!(runs.len(), 2 * (params.len() + 1));
        assert_eq!(runs[4], "walk-forward window 1 out-of-sample");
        assert_eq!(runs[5], "walk-forward window 2 in-sample 1");
        for r in &results {
            let w = r.window;
            let in_sample: Vec<Option<f64>> = params
                .iter()
                .map(|p| {
                    let res = run(&mut window_of(&symbols, w.in_from, w.out_from), p, &mut |_| true).unwrap();
                    Some(summary(&res, p, w.in_from, w.out_from, CALENDAR_DAYS).return_pct)
                })
                .collect();
            assert_eq!(best_of(in_sample.clone()), Some((r.best, r.in_sample_metric)));
            let p = &params[r.best];
            let out = run(&mut window_of(&symbols, w.out_from, w.out_to), p, &mut |_| true).unwrap();
            assert_eq!(r.out_of_sample, summary(&out, p, w.out_from, w.out_to, CALENDAR_DAYS));
            assert_eq!(r.out_of_sample.annual_trading_days, CALENDAR_DAYS);
        }
        // An error of a run stops the analysis with it.
        let mut failing =
            |_: &mut BacktestData, _: &BacktestParams, _: SweepRun| Err(BacktestError::Data("no".into()));
        let mut load = |from, to, _| Ok(window_of(&symbols, from, to));
        let e = walk_forward(&params, &windows, Metric::Sharpe, TRADING_DAYS, &mut load, &mut failing)
            .unwrap_err();
        assert_eq!(e, BacktestError::Data("no".into()));
    }

    /// A sweep's statistics are annualised over the year it is given, as backtest_stats
    /// annualises a stored run: the same run over 365 days a year has √(365/252) times the
    /// Sharpe ratio of 252, and equals the 252-day statistics restated for 365.
    #[test]
    fn sweeps_annualise_over_the_days_they_are_given() {
        let symbols = five_symbols();
        let end = symbols.iter().flat_map(|s| s.bars.last()).map(|b| b.input.time).max().unwrap() + MINUTE;
        let params = Grid::new(json!({}), json!({"engine.strategy.min_aggression_score": [0]}))
            .unwrap()
            .params()
            .unwrap();
        let mut simulate = |d: &mut BacktestData, p: &BacktestParams, _: SweepRun| run(d, p, &mut |_| true);
        let mut load = |from, to, _| Ok(window_of(&symbols, from, to));
        let weekdays =
            grid_search(&params, 0, end, TRADING_DAYS, &mut load, &mut simulate).unwrap().remove(0);
        let every_day =
            grid_search(&params, 0, end, CALENDAR_DAYS, &mut load, &mut simulate).unwrap().remove(0);
        assert!(weekdays.trades > 0 && weekdays.trading_days > 1, "{weekdays:?}");
        let (a, b) = (weekdays.sharpe.unwrap(), every_day.sharpe.unwrap());
        assert!((b / a - (CALENDAR_DAYS / TRADING_DAYS).sqrt()).abs() < 1e-12, "{a} {b}");
        assert_eq!(weekdays.return_pct, every_day.return_pct);
        let restated = weekdays.annualised(CALENDAR_DAYS);
        assert!((restated.sharpe.unwrap() - b).abs() < 1e-9 * b.abs());
        assert!((restated.annual_return_pct.unwrap() - every_day.annual_return_pct.unwrap()).abs() < 1e-9);
        assert_eq!(restated.annual_trading_days, every_day.annual_trading_days);
    }
}

// ---------------------------------------------------------------------------------------------
// Bar profiles re-binned to the engine's grid
// ---------------------------------------------------------------------------------------------

mod rebinning {
    use super::*;
    use crate::profile::{BarProfile, Profile};
    use proptest::prelude::*;

    fn trade(tick: f64) -> impl Strategy<Value = (f64, f64, Side)> {
        let side = prop::sample::select(vec![Side::Buy, Side::Sell, Side::Unknown]);
        // Integer sizes (zero included): sums are exact in any order.
        (0i64..5_000, 0u32..400, side)
            .prop_map(move |(t, size, side)| (t as f64 * tick, f64::from(size), side))
    }

    proptest! {
        /// A profile of d ticks per row (stored profiles: d = 1) re-binned to d × n ticks per
        /// row is the profile built from the same trades on rows of d × n ticks.
        #[test]
        fn a_rebinned_profile_is_the_profile_of_its_trades_on_the_coarser_grid(
            tick in prop::sample::select(vec![0.01, 0.25, 0.0001, 1.0 / 3.0, 0.3]),
            trades in prop::collection::vec(trade(0.01), 1..120),
            d in 1u32..4,
            n in 1u32..40,
        ) {
            let trades: Vec<(f64, f64, Side)> =
                trades.into_iter().map(|(p, s, side)| ((p / 0.01).round() * tick + tick, s, side)).collect();
            let fine = Profile::from_trades(tick, d, trades.iter().copied()).unwrap();
            let direct = BarProfile::from(&Profile::from_trades(tick, d * n, trades.iter().copied()).unwrap());
            let binned = bar_profile_on_grid(&fine, d * n).unwrap();
            prop_assert_eq!(&binned, &direct);
            binned.check_grid(tick, d * n).unwrap();
        }
    }

    #[test]
    fn rows_of_n_ticks_floor_and_keep_volume_by_side() {
        // Ticks 0 (a price under half a tick), 4, 5, 9 and 10 on rows of 5 ticks: rows 0, 0, 1, 1, 2.
        let trades = [
            (0.004, 7.0, Side::Buy),
            (0.04, 1.0, Side::Sell),
            (0.05, 2.0, Side::Buy),
            (0.09, 3.0, Side::Unknown),
            (0.10, 0.0, Side::Sell),
        ];
        let fine = Profile::from_trades(0.01, 1, trades).unwrap();
        let binned = bar_profile_on_grid(&fine, 5).unwrap();
        assert_eq!(binned.rows(), [(0, 8.0), (1, 5.0), (2, 0.0)]);
        assert_eq!((binned.buy_volume(), binned.sell_volume()), (9.0, 1.0));
        assert_eq!(binned, BarProfile::from(&Profile::from_trades(0.01, 5, trades).unwrap()));
        // Rows are never split.
        let five = Profile::from_trades(0.01, 5, trades).unwrap();
        assert!(bar_profile_on_grid(&five, 10).is_ok());
        assert!(bar_profile_on_grid(&five, 7)
            .unwrap_err()
            .contains("5 ticks per row cannot be re-binned to 7"));
    }

    /// Stored bar profiles (one tick per row) re-binned as the loader does run with
    /// `engine.ticks_per_row` above 1; the stored grid is refused.
    #[test]
    fn a_run_on_a_coarser_grid_reads_rebinned_profiles() {
        let mut params = BacktestParams::default();
        params.engine.ticks_per_row = 4;
        let stored = five_symbols();
        let mut data = BacktestData::new(stored.clone()).unwrap();
        let err = run(&mut data, &params, &mut |_| true).unwrap_err();
        assert!(err.to_string().contains("different grids"), "{err}");
        let rebinned: Vec<SymbolSeries> = stored.into_iter().map(|s| on_grid(s, 4)).collect();
        let r = run(&mut BacktestData::new(rebinned).unwrap(), &params, &mut |_| true).unwrap();
        assert_eq!(r.bars_processed, data.bar_count());
    }
}
