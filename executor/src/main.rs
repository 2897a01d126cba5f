//! tapeflow-exec: turns the signals the database announces into broker orders, exactly once,
//! under the risk limits in `tapeflow.risk_limits` (see the README for its configuration).

use std::sync::Arc;
use tapeflow_executor::broker::alpaca::{AlpacaBroker, AlpacaConfig};
use tapeflow_executor::broker::sim::{spawn_stepper, SimBroker};
use tapeflow_executor::config::{sim_fill_model, BrokerKind, ExecConfig};
use tapeflow_executor::exec::Executor;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tapeflow_db::init_tracing();
    let cfg = ExecConfig::from_env()?;
    tapeflow_db::telemetry::serve_metrics("TAPEFLOW_EXEC_METRICS_ADDR", cfg.metrics_addr.as_deref())?;
    match cfg.broker {
        BrokerKind::Sim => {
            let sweep = cfg.sweep;
            let broker = Arc::new(SimBroker::connect(&cfg.database_url, sim_fill_model()?, sweep).await?);
            spawn_stepper(broker.clone());
            Executor::connect(cfg, broker).await?.run(tapeflow_db::shutdown_signal()).await
        }
        BrokerKind::Alpaca => {
            let broker = Arc::new(AlpacaBroker::new(AlpacaConfig::from_env()?)?);
            Executor::connect(cfg, broker).await?.run(tapeflow_db::shutdown_signal()).await
        }
    }
}
