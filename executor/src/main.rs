//! tapeflow-exec: listens for signals announced by the database.
//!
//! Signals are an outbox (DESIGN.md): NOTIFY only wakes this process, and after every
//! (re)connect it re-reads pending rows because notifications sent while disconnected are lost.
//! Order placement arrives with the executor issue; today it connects, listens and logs.

use tapeflow_db::ListenEvent;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tapeflow_db::init_tracing();
    let url = tapeflow_db::database_url();
    let mut events = tapeflow_db::listen(url, vec!["tapeflow_signals".into()]);
    tracing::info!("tapeflow-exec listening on tapeflow_signals");
    loop {
        tokio::select! {
            _ = shutdown() => break,
            ev = events.recv() => match ev {
                Some(ListenEvent::Connected) => tracing::info!("connected; pending signals would be re-read here"),
                Some(ListenEvent::Notification { payload, .. }) => tracing::info!(%payload, "signal"),
                None => break,
            }
        }
    }
    tracing::info!("tapeflow-exec stopped");
    Ok(())
}

async fn shutdown() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
