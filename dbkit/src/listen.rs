//! LISTEN that survives disconnects.
//!
//! Notifications sent while a listener is disconnected are lost, so every (re)connect is
//! reported as `ListenEvent::Connected`: consumers re-read whatever state they track.

use crate::backoff::Backoff;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

#[derive(Debug, Clone)]
pub enum ListenEvent {
    /// (Re)connected and listening: re-read state, notifications may have been missed.
    Connected,
    Notification {
        channel: String,
        payload: String,
    },
    /// The connection was lost; a reconnect is under way (and `Connected` follows it).
    Disconnected,
}

/// Listens on `channels` in a background task, reconnecting with backoff; events arrive on
/// the returned receiver until it is dropped.
pub fn listen(url: String, channels: Vec<String>) -> mpsc::Receiver<ListenEvent> {
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(async move {
        // Jittered, so that the listeners of many clients do not all come back at once after a
        // server restart; from the minimum again after a connection that worked.
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            match run_once(&url, &channels, &tx, &mut backoff).await {
                Ok(()) => return, // receiver dropped
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "LISTEN connection lost");
                    if tx.send(ListenEvent::Disconnected).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

async fn run_once(
    url: &str,
    channels: &[String],
    tx: &mpsc::Sender<ListenEvent>,
    backoff: &mut Backoff,
) -> anyhow::Result<()> {
    let (client, mut connection) = crate::connect_once(url).await?;
    let (msg_tx, mut msg_rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = msg_tx.send(Ok((n.channel().to_string(), n.payload().to_string())));
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = msg_tx.send(Err(e));
                    return;
                }
            }
        }
    });
    let sql: String = channels.iter().map(|c| format!("LISTEN \"{}\";", c.replace('"', ""))).collect();
    client.batch_execute(&sql).await?;
    backoff.reset();
    if tx.send(ListenEvent::Connected).await.is_err() {
        driver.abort();
        return Ok(());
    }
    let result = loop {
        match msg_rx.recv().await {
            Some(Ok((channel, payload))) => {
                if tx.send(ListenEvent::Notification { channel, payload }).await.is_err() {
                    break Ok(());
                }
            }
            Some(Err(e)) => break Err(anyhow::anyhow!("{e}")),
            None => break Err(anyhow::anyhow!("connection closed")),
        }
    };
    driver.abort();
    drop(client);
    result
}
