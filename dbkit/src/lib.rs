//! Database plumbing shared by Tapeflow's daemons: where the database is, connecting with
//! backoff, a LISTEN stream that survives reconnects, and batched COPY of ticks.

pub mod amend;
pub mod backoff;
pub mod bars;
pub mod binary_copy;
pub mod config;
pub mod copy;
pub mod listen;
pub mod telemetry;

pub use config::database_url;
pub use listen::{listen, ListenEvent};

use std::time::Duration;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, NoTls};

/// Structured logs on stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// Resolves on SIGINT or SIGTERM: every daemon's graceful-shutdown trigger.
pub async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested");
}

/// Connects, retrying with jittered exponential backoff (capped at 10 s) until `give_up_after`.
pub async fn connect(url: &str, give_up_after: Duration) -> anyhow::Result<Client> {
    let started = tokio::time::Instant::now();
    let mut backoff = backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        match connect_once(url).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::warn!(error = %e, "database connection closed");
                    }
                });
                return Ok(client);
            }
            Err(e) if started.elapsed() < give_up_after => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot connect to database");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(anyhow::anyhow!("cannot connect to {}: {e}", redact(url))),
        }
    }
}

/// The connection settings of a URL, with dead-peer detection unless the URL sets its own:
/// TCP keepalives probe an idle connection after 20 s (every 10 s, 4 probes) and unacknowledged
/// writes give up after 60 s, so a server that vanished without a word (a cable pulled, a host
/// gone) is noticed within about a minute instead of the kernel's two hours.
pub fn pg_config(url: &str) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
    let mut cfg: tokio_postgres::Config = url.parse()?;
    let set = |key: &str| url.contains(key);
    if !set("keepalives_idle") {
        cfg.keepalives_idle(Duration::from_secs(20));
    }
    if !set("keepalives_interval") {
        cfg.keepalives_interval(Duration::from_secs(10));
    }
    if !set("keepalives_retries") {
        cfg.keepalives_retries(4);
    }
    if !set("tcp_user_timeout") {
        cfg.tcp_user_timeout(Duration::from_secs(60));
    }
    if !set("connect_timeout") {
        cfg.connect_timeout(Duration::from_secs(10));
    }
    Ok(cfg)
}

/// One connection attempt with [`pg_config`]'s settings; the connection is driven in the background.
pub async fn connect_once(
    url: &str,
) -> Result<(Client, tokio_postgres::Connection<tokio_postgres::Socket, NoTlsStream>), tokio_postgres::Error>
{
    pg_config(url)?.connect(NoTls).await
}

/// The URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_password_only() {
        assert_eq!(super::redact("postgresql://u:secret@h:1/d"), "postgresql://u:***@h:1/d");
        assert_eq!(super::redact("postgresql://u@h:1/d"), "postgresql://u@h:1/d");
    }
}
