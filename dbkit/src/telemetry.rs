//! Prometheus `/metrics` for the daemons that have no HTTP server of their own.

/// Serves the process's metrics at `http://<addr>/metrics`. `None` (configured `off`) serves
/// nothing; a port already taken is logged and the daemon goes on without metrics, since its
/// work matters more than its telemetry.
pub fn serve_metrics(var: &str, addr: Option<&str>) -> anyhow::Result<()> {
    let Some(addr) = addr else { return Ok(()) };
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| anyhow::anyhow!("{var}={addr:?}: {e}"))?;
    if let Err(e) = std::net::TcpListener::bind(addr) {
        tracing::error!(%addr, error = %e, "{var}: cannot listen; metrics are not served");
        return Ok(());
    }
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| anyhow::anyhow!("metrics on {addr}: {e}"))?;
    tracing::info!(%addr, "metrics at /metrics");
    Ok(())
}

/// `off` disables, unset takes the default.
pub fn metrics_addr(var: &str, default: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if v == "off" => None,
        Ok(v) if !v.is_empty() => Some(v),
        _ => Some(default.to_string()),
    }
}
