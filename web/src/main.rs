//! tapeflow-web: serves the dashboard, a JSON API over the database, and `/events`, one
//! Server-Sent-Events stream fed by a single LISTEN connection; `tapeflow-web user …`
//! manages the dashboard's users.

use std::time::Duration;
use tapeflow_web::{app, cli, server, AppState, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("serve") => {}
        Some("user") => std::process::exit(cli::user(&args[1..]).await?),
        Some("-h") | Some("--help") | Some("help") => {
            println!("{}", cli::USAGE);
            return Ok(());
        }
        Some(other) => {
            eprintln!("unknown command {other:?}\n{}", cli::USAGE);
            std::process::exit(2);
        }
    }
    tapeflow_db::init_tracing();
    let config = Config::try_from_env()?;
    let state = AppState::start(&config).await?;
    let listener = tokio::net::TcpListener::bind(&config.addr).await?;
    tracing::info!(
        addr = %listener.local_addr()?,
        allowed_hosts = ?config.auth.allowed_hosts,
        "tapeflow-web listening"
    );
    let hub = state.hub.clone();
    server::serve(
        listener,
        app(state),
        config.limits.write_timeout,
        shutdown(),
        move || hub.close_streams(),
        Duration::from_secs(5),
    )
    .await?;
    Ok(())
}

/// SIGINT or SIGTERM.
async fn shutdown() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
