//! The executor's configuration, from the environment (documented in the README).

use std::time::Duration;

/// Which venue orders go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Sim,
    Alpaca,
}

/// A point where the executor kills itself with SIGKILL, for crash-injection tests
/// (`TAPEFLOW_EXEC_FAULT`; never set in production).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The signal is claimed (committed), nothing else happened.
    AfterClaim,
    /// The order is recorded as `pending_submit`, not yet sent.
    BeforeSend,
    /// The broker accepted the order; the acknowledgement is not recorded.
    AfterSend,
    /// The acknowledgement is recorded; the signal is not yet marked submitted.
    AfterRecord,
    /// A fill arrived from the broker and is not recorded.
    OnFill,
    /// Arbitrage: the trade and its legs are recorded (signed), nothing is sent.
    ArbAfterRecord,
    /// Arbitrage: the venue answered one leg; nothing is recorded, the other may be in flight.
    ArbAfterLeg1,
    /// Arbitrage: every leg was answered; no answer is recorded.
    ArbAfterSend,
    /// Arbitrage: the answers are recorded; the fills are not.
    ArbBeforeFills,
}

impl Fault {
    pub fn parse(s: &str) -> anyhow::Result<Option<Fault>> {
        Ok(Some(match s {
            "" | "none" => return Ok(None),
            "after_claim" => Fault::AfterClaim,
            "before_send" => Fault::BeforeSend,
            "after_send" => Fault::AfterSend,
            "after_record" => Fault::AfterRecord,
            "on_fill" => Fault::OnFill,
            "arb_after_record" => Fault::ArbAfterRecord,
            "arb_after_leg1" => Fault::ArbAfterLeg1,
            "arb_after_send" => Fault::ArbAfterSend,
            "arb_before_fills" => Fault::ArbBeforeFills,
            other => anyhow::bail!(
                "TAPEFLOW_EXEC_FAULT: unknown fault point {other:?} (after_claim, before_send, after_send, after_record, on_fill, arb_after_record, arb_after_leg1, arb_after_send, arb_before_fills)"
            ),
        }))
    }
}

#[derive(Debug, Clone)]
pub struct ExecConfig {
    pub database_url: String,
    /// `TAPEFLOW_BROKER`: `sim` (default) or `alpaca`.
    pub broker: BrokerKind,
    /// `TAPEFLOW_EXEC_ID`: names this executor on the signals it claims (default `exec-<pid>`).
    pub id: String,
    /// `TAPEFLOW_EXEC_METRICS_ADDR`: Prometheus `/metrics` (default `127.0.0.1:9102`; `off`).
    pub metrics_addr: Option<String>,
    /// `TAPEFLOW_EXEC_SWEEP_MS`: how often pending work is re-read without a notification (1000).
    pub sweep: Duration,
    /// `TAPEFLOW_EXEC_RETRIES`: attempts for a transient broker error before the signal waits
    /// for the next sweep (5).
    pub retries: u32,
    pub fault: Option<Fault>,
    /// `TAPEFLOW_EXEC_FAULT_SIGNAL`: only fault on this signal id (default: the first one).
    pub fault_signal: Option<i64>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}")),
    }
}

impl ExecConfig {
    pub fn from_env() -> anyhow::Result<ExecConfig> {
        let broker = match var("TAPEFLOW_BROKER").as_deref().unwrap_or("sim") {
            "sim" => BrokerKind::Sim,
            "alpaca" => BrokerKind::Alpaca,
            other => anyhow::bail!("TAPEFLOW_BROKER: unknown broker {other:?} (sim, alpaca)"),
        };
        let metrics_addr =
            tapeflow_db::telemetry::metrics_addr("TAPEFLOW_EXEC_METRICS_ADDR", "127.0.0.1:9102");
        Ok(ExecConfig {
            database_url: tapeflow_db::database_url(),
            broker,
            id: var("TAPEFLOW_EXEC_ID").unwrap_or_else(|| format!("exec-{}", std::process::id())),
            metrics_addr,
            sweep: Duration::from_millis(parse("TAPEFLOW_EXEC_SWEEP_MS", 1000u64)?.max(10)),
            retries: parse("TAPEFLOW_EXEC_RETRIES", 5u32)?.max(1),
            fault: Fault::parse(var("TAPEFLOW_EXEC_FAULT").as_deref().unwrap_or(""))?,
            fault_signal: var("TAPEFLOW_EXEC_FAULT_SIGNAL").map(|v| v.parse()).transpose()?,
        })
    }
}

/// Settings of the simulated broker (`TAPEFLOW_SIM_*`), the backtest's fill model.
pub fn sim_fill_model() -> anyhow::Result<tapeflow_analytics::backtest::FillModel> {
    let d = tapeflow_analytics::backtest::FillModel::default();
    Ok(tapeflow_analytics::backtest::FillModel {
        slippage_ticks: parse("TAPEFLOW_SIM_SLIPPAGE_TICKS", d.slippage_ticks)?,
        slippage_bps: parse("TAPEFLOW_SIM_SLIPPAGE_BPS", d.slippage_bps)?,
        commission_per_share: parse("TAPEFLOW_SIM_COMMISSION_PER_SHARE", d.commission_per_share)?,
        commission_pct: parse("TAPEFLOW_SIM_COMMISSION_PCT", d.commission_pct)?,
        same_bar_stop_first: parse("TAPEFLOW_SIM_SAME_BAR_STOP_FIRST", d.same_bar_stop_first)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse() {
        assert_eq!(Fault::parse("").unwrap(), None);
        assert_eq!(Fault::parse("after_send").unwrap(), Some(Fault::AfterSend));
        assert!(Fault::parse("later").unwrap_err().to_string().contains("later"));
        assert_eq!(Fault::parse("arb_after_leg1").unwrap(), Some(Fault::ArbAfterLeg1));
    }
}
