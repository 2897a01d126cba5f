//! tapeflow-web: serves the dashboard, a JSON API over the database, and `/events`, one
//! Server-Sent-Events stream fed by a single LISTEN connection.

use tapeflow_web::{app, AppState, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tapeflow_db::init_tracing();
    let config = Config::from_env();
    let state = AppState::start(&config).await?;
    let listener = tokio::net::TcpListener::bind(&config.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "tapeflow-web listening");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
