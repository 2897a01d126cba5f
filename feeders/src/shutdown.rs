//! Ctrl-C / SIGTERM as a watch flag, so loops finish the batch in hand before exiting.

use tokio::sync::watch;

pub fn on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tapeflow_db::shutdown_signal().await;
        let _ = tx.send(true);
    });
    rx
}
