//! Prometheus metrics of the web app, rendered at `/metrics` (public, like `/healthz`):
//! requests, SSE clients, slow clients dropped, login failures, backtests running.

use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder once per process (later calls reuse it).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics shows only its own");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!("tapeflow_web_requests_total", "HTTP requests answered, by method and status");
    describe_gauge!("tapeflow_web_sse_clients", "Connected /events clients");
    describe_counter!("tapeflow_web_sse_refused_total", "/events clients refused over TAPEFLOW_WEB_MAX_SSE");
    describe_counter!(
        "tapeflow_web_slow_clients_dropped_total",
        "Clients dropped: fell behind the broadcast (lagged) or stopped reading (write_stalled)"
    );
    describe_counter!("tapeflow_web_login_failures_total", "Failed logins, by reason");
    describe_counter!(
        "tapeflow_web_csrf_refusals_total",
        "Mutating requests refused for a missing or wrong CSRF token"
    );
    describe_counter!("tapeflow_web_bad_host_total", "Requests refused for a Host header not allowed");
    describe_gauge!("tapeflow_web_backtests_running", "Backtests started from the dashboard still running");
    // Present from the start, so that a scrape shows zeros rather than nothing.
    metrics::gauge!("tapeflow_web_sse_clients").set(0.0);
    metrics::gauge!("tapeflow_web_backtests_running").set(0.0);
    metrics::counter!("tapeflow_web_sse_refused_total").absolute(0);
    metrics::counter!("tapeflow_web_csrf_refusals_total").absolute(0);
    metrics::counter!("tapeflow_web_bad_host_total").absolute(0);
    for reason in ["lagged", "write_stalled"] {
        metrics::counter!("tapeflow_web_slow_clients_dropped_total", "reason" => reason).absolute(0);
    }
    for reason in ["wrong_password", "locked", "disabled"] {
        metrics::counter!("tapeflow_web_login_failures_total", "reason" => reason).absolute(0);
    }
}

/// Counts each request by method and status class.
pub async fn count_requests(req: Request, next: Next) -> Response {
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    };
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("tapeflow_web_requests_total", "method" => method, "status" => status).increment(1);
    response
}

/// `GET /metrics` in the Prometheus text format.
pub async fn render() -> Response {
    let body = HANDLE.get().map(|h| h.render()).unwrap_or_default();
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}
