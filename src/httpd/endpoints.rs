//! The small HTTP endpoints of `kubelambda run` (metrics, health probes), served by the same
//! connection loop as `kubelambda httpd`, with its limits: a client that sends nothing is cut off
//! at the header deadline, an idle keep-alive connection is closed, and connections past a small
//! cap are answered 503, so a slow or flooding scraper cannot tie up the controller's descriptors.
//! The metrics page is encoded by one function for both commands.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;

use super::conn_metrics::ConnMetrics;
use super::limits::HttpdLimits;
use super::parse_listen_addr;

/// The limits of the endpoints: a scrape or a probe is one short request.
pub const ENDPOINT_LIMITS: HttpdLimits = HttpdLimits {
    header_timeout: Duration::from_secs(10),
    body_timeout: Duration::from_secs(10),
    idle_timeout: Duration::from_secs(60),
    max_connections: 16,
    shutdown_grace: Duration::from_secs(1),
    open_files: 0,
};

/// Serves `router` on `addr` (Go syntax, `:9999`) in the background, unless `addr` is `"0"`.
/// `what` names the endpoint in errors.
pub async fn serve_endpoint(addr: &str, router: axum::Router, what: &str) -> Result<(), String> {
    if addr == "0" {
        return Ok(());
    }
    let addr = parse_listen_addr(addr).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for {what}: {e}"))?;
    // The endpoint's own connection counters are not exported (the controller's registry holds
    // the controller's metrics).
    let conns = ConnMetrics::new(&mut Registry::default());
    tokio::spawn(super::serve::run(
        listener,
        router,
        &ENDPOINT_LIMITS,
        conns,
        std::future::pending::<()>(),
    ));
    Ok(())
}

/// A `/metrics` page: `registry` in the OpenMetrics text format.
pub fn metrics_response(registry: &Registry) -> Response {
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, registry) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}\n"),
        )
            .into_response();
    }
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

/// A router answering `/metrics` from `registry`.
pub fn metrics_router(registry: Registry) -> axum::Router {
    let registry = Arc::new(registry);
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move { metrics_response(&registry) }
        }),
    )
}
