//! tapeflow-exec: turns the signals the database announces into broker orders, exactly once,
//! under the risk limits in `tapeflow.risk_limits`, and trades Polymarket arbitrage
//! opportunities (paper unless live is configured) beside it (see the README for both).

use std::sync::Arc;
use tapeflow_executor::arbitrage::{ArbConfig, Arbitrage};
use tapeflow_executor::broker::alpaca::{AlpacaBroker, AlpacaConfig};
use tapeflow_executor::broker::sim::{spawn_stepper, SimBroker};
use tapeflow_executor::config::{sim_fill_model, BrokerKind, ExecConfig};
use tapeflow_executor::exec::Executor;
use tokio::sync::watch;

/// Resolves once `rx` says the process is shutting down.
async fn stopping(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tapeflow_db::init_tracing();
    let cfg = ExecConfig::from_env()?;
    let arb = ArbConfig::from_env(&cfg)?;
    tapeflow_db::telemetry::serve_metrics("TAPEFLOW_EXEC_METRICS_ADDR", cfg.metrics_addr.as_deref())?;
    let (stop, rx) = watch::channel(false);
    tokio::spawn(async move {
        tapeflow_db::shutdown_signal().await;
        let _ = stop.send(true);
    });
    // The arbitrage loop runs beside the signal executor on its own connection; it fails the
    // process only when it cannot start (a live configuration the venue refuses).
    let arbitrage = if arb.enabled {
        let loop_ = Arbitrage::connect(arb).await?;
        let rx = rx.clone();
        Some(tokio::spawn(async move { loop_.run(stopping(rx)).await }))
    } else {
        None
    };
    let signals = async {
        match cfg.broker {
            BrokerKind::Sim => {
                let sweep = cfg.sweep;
                let broker = Arc::new(SimBroker::connect(&cfg.database_url, sim_fill_model()?, sweep).await?);
                spawn_stepper(broker.clone());
                Executor::connect(cfg, broker).await?.run(stopping(rx)).await
            }
            BrokerKind::Alpaca => {
                let broker = Arc::new(AlpacaBroker::new(AlpacaConfig::from_env()?)?);
                Executor::connect(cfg, broker).await?.run(stopping(rx)).await
            }
        }
    };
    let result = signals.await;
    if let Some(task) = arbitrage {
        if result.is_err() {
            // The signal executor failed: the process ends (and is restarted) as before.
            task.abort();
            return result;
        }
        match task.await {
            Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "arbitrage loop ended with an error"),
            Err(e) => tracing::warn!(error = %e, "arbitrage loop panicked"),
            Ok(Ok(())) => {}
        }
    }
    result
}
