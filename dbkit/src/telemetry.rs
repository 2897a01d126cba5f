//! Prometheus `/metrics` for the daemons that have no HTTP server of their own.

/// Serves the process's metrics at `http://<addr>/metrics`. `None` (configured `off`) serves
/// nothing; a port already taken is logged and the daemon goes on without metrics, since its
/// work matters more than its telemetry.
pub fn serve_metrics(var: &str, addr: Option<&str>) -> anyhow::Result<()> {
    let Some(addr) = addr else { return Ok(()) };
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| anyhow::anyhow!("{var}={addr:?}: {e}"))?;
    // The exporter binds the port itself; a process that takes it first (another daemon, a
    // second instance) makes that fail, which is logged like any other port already taken.
    match metrics_exporter_prometheus::PrometheusBuilder::new().with_http_listener(addr).install() {
        Ok(()) => tracing::info!(%addr, "metrics at /metrics"),
        Err(e) => tracing::error!(%addr, error = %e, "{var}: cannot listen; metrics are not served"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_already_taken_is_logged_not_fatal() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        assert!(serve_metrics("TAPEFLOW_TEST_METRICS_ADDR", Some(&addr)).is_ok());
        assert!(serve_metrics("TAPEFLOW_TEST_METRICS_ADDR", Some("not an address")).is_err());
    }
}
