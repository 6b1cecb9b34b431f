//! `kubelambda httpd`: serves hook files as webhooks, like `kubecfg --alpha httpd`.
//!
//! `sync.jsonnet` is served at `POST /sync`, `hooks/x.tera` at `POST /hooks/x`: the route is the
//! path as given minus its extension, matched exactly. A directory serves every hook file under
//! it, at its path relative to the directory (as jsonnetd did), new files included. Evaluation happens in the sandbox worker
//! pool, the same code path as `render` and the controller. How connections are accepted and
//! bounded (timeouts, connection cap, shutdown) is in the `serve` and [`limits`] modules.

mod conn_metrics;
pub mod endpoints;
pub mod limits;
mod routes;
mod serve;
mod timed_io;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::hooks::sandbox::Sandbox;
use crate::hooks::{EvalError, HookSource, SourceError};
use conn_metrics::{ConnMetrics, Reason};
pub use limits::{HttpdLimits, LimitArgs, LimitError};
pub use routes::Routes;

/// Paths the server answers itself; a hook file may not shadow them.
const RESERVED: &[&str] = &["/healthz", "/metrics"];

/// Default request body limit.
pub const DEFAULT_BODY_LIMIT: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpdError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{first} and {second} would both be served at {route}")]
    DuplicateRoute {
        route: String,
        first: String,
        second: String,
    },
    #[error("{file} would be served at {route}, which kubelambda httpd serves itself")]
    ReservedRoute { route: String, file: String },
    #[error("no hook files given")]
    NoFiles,
    #[error("invalid listen address {addr:?}: {reason}")]
    ListenAddr { addr: String, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Limits(#[from] LimitError),
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// The route of a hook file: `/` + the path as given, minus `.jsonnet` or `.tera`. A leading `./`
/// is dropped and an absolute path keeps its single leading slash, so every route is reachable
/// (kubecfg registers `/./x` and `//x`, which its router can never match).
pub fn route_for(arg: &str) -> String {
    let trimmed = arg
        .strip_suffix(".jsonnet")
        .or_else(|| arg.strip_suffix(".tera"))
        .unwrap_or(arg);
    let mut rest = trimmed;
    while let Some(r) = rest.strip_prefix("./") {
        rest = r;
    }
    format!("/{}", rest.trim_start_matches('/'))
}

/// Says which interfaces an address listens on, for the startup log line.
pub fn listen_scope(addr: &std::net::SocketAddr) -> &'static str {
    let ip = addr.ip();
    if ip.is_unspecified() {
        "all interfaces"
    } else if ip.is_loopback() {
        "loopback only"
    } else {
        "this address only"
    }
}

/// Parses Go-style listen addresses: `:8080` means every interface.
pub fn parse_listen_addr(addr: &str) -> Result<std::net::SocketAddr, HttpdError> {
    let full = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_owned()
    };
    full.parse()
        .map_err(|e: std::net::AddrParseError| HttpdError::ListenAddr {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    hook: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    hook: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    hook: String,
}

struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    latency: Family<HookLabels, Histogram>,
    conns: ConnMetrics,
    /// Copied from the sandbox's response cache when /metrics is read.
    cache_hits: Counter,
    cache_misses: Counter,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("kubelambda_httpd");
        let requests = Family::<RequestLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let latency = Family::<HookLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        registry.register(
            "requests",
            "Hook requests by route and HTTP status",
            requests.clone(),
        );
        registry.register(
            "errors",
            "Failed hook requests by route and cause",
            errors.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a hook request",
            latency.clone(),
        );
        let conns = ConnMetrics::new(&mut registry);
        let cache_hits = Counter::default();
        let cache_misses = Counter::default();
        registry.register(
            "response_cache_hits",
            "Requests answered from the response cache (an identical earlier request)",
            cache_hits.clone(),
        );
        registry.register(
            "response_cache_misses",
            "Requests evaluated while the response cache was on",
            cache_misses.clone(),
        );
        Self {
            registry,
            requests,
            errors,
            latency,
            conns,
            cache_hits,
            cache_misses,
        }
    }
}

pub struct Server {
    routes: Routes,
    sandbox: Sandbox,
    body_limit: usize,
    body_timeout: Duration,
    metrics: Metrics,
}

impl Server {
    pub fn new(
        routes: Routes,
        sandbox: Sandbox,
        body_limit: usize,
        body_timeout: Duration,
    ) -> Self {
        Self {
            routes,
            sandbox,
            body_limit,
            body_timeout,
            metrics: Metrics::new(),
        }
    }

    pub fn router(self) -> axum::Router {
        axum::Router::new()
            .fallback(dispatch)
            .with_state(Arc::new(self))
    }

    fn route_list(&self) -> String {
        self.routes.list().join(", ")
    }
}

fn text(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn dispatch(
    State(server): State<Arc<Server>>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    let path = uri.path();
    let Some(source) = server.routes.get(path) else {
        return match (path, &method) {
            ("/healthz", &Method::GET) => text(StatusCode::OK, "ok\n".into()),
            ("/metrics", &Method::GET) => metrics_page(&server),
            _ => text(
                StatusCode::NOT_FOUND,
                format!("no hook at {path}; served hooks: {}\n", server.route_list()),
            ),
        };
    };
    let route = &path.to_owned();
    let started = Instant::now();
    let response = handle_hook(&server, route, &source, &method, &headers, body).await;
    let code = response.status().as_u16();
    server
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            hook: route.clone(),
            code,
        })
        .inc();
    server
        .metrics
        .latency
        .get_or_create(&HookLabels {
            hook: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    tracing::debug!(hook = %route, code, elapsed = ?started.elapsed(), "hook request");
    response
}

fn count_error(server: &Server, route: &str, kind: &str) {
    server
        .metrics
        .errors
        .get_or_create(&ErrorLabels {
            hook: route.to_owned(),
            kind: kind.to_owned(),
        })
        .inc();
}

async fn handle_hook(
    server: &Server,
    route: &str,
    source: &HookSource,
    method: &Method,
    headers: &axum::http::HeaderMap,
    body: Body,
) -> Response {
    if method != Method::POST {
        count_error(server, route, "method");
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} not allowed: hooks take POST\n"),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body exceeds the limit of {} bytes (--max-body)\n",
                server.body_limit
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > server.body_limit) {
        count_error(server, route, "body_too_large");
        return too_large();
    }
    let read = tokio::time::timeout(server.body_timeout, read_body(body, server.body_limit));
    let body = match read.await {
        Ok(Ok(body)) => body,
        Ok(Err(BodyError::TooLarge)) => {
            count_error(server, route, "body_too_large");
            return too_large();
        }
        Ok(Err(BodyError::Read(cause))) => {
            count_error(server, route, "body_read");
            tracing::debug!(hook = %route, "cannot read the request body: {cause}");
            return closing(text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {cause}\n"),
            ));
        }
        Err(_) => {
            count_error(server, route, "body_timeout");
            server.metrics.conns.rejected(Reason::BodyTimeout);
            let limit = humantime::format_duration(server.body_timeout);
            tracing::info!(hook = %route, "request body not received within --body-timeout {limit}");
            return closing(text(
                StatusCode::REQUEST_TIMEOUT,
                format!("request body not received within --body-timeout {limit}\n"),
            ));
        }
    };
    match server.sandbox.evaluate(source, &body).await {
        Ok(json) => {
            let mut response = (StatusCode::OK, json).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(error) => {
            let (status, kind) = match &error {
                EvalError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
                EvalError::Limit { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "limit"),
                EvalError::Hook(_) => (StatusCode::INTERNAL_SERVER_ERROR, "evaluation"),
                EvalError::Load { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "load"),
                EvalError::Worker(_) => (StatusCode::INTERNAL_SERVER_ERROR, "worker"),
            };
            count_error(server, route, kind);
            tracing::warn!(hook = %route, "{error}");
            text(status, format!("{error}\n"))
        }
    }
}

/// Why a request body could not be read.
#[derive(Debug)]
enum BodyError {
    /// Longer than `--max-body`.
    TooLarge,
    /// The connection failed or the framing was invalid; the text names the cause.
    Read(String),
}

/// Reads a whole body, stopping as soon as it passes `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut collected = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(error_chain(&e)))?;
        if collected.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(collected))
}

/// An error and its causes, `outer: inner`, without repeating a message a wrapper copied.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.ends_with(&message) {
            text = format!("{text}: {message}");
        }
        source = cause.source();
    }
    text
}

/// The request's body was not read to its end, so the connection cannot carry another request.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn metrics_page(server: &Server) -> Response {
    if let Some(stats) = server.sandbox.cache_stats() {
        let metrics = &server.metrics;
        metrics
            .cache_hits
            .inner()
            .store(stats.hits, Ordering::Relaxed);
        metrics
            .cache_misses
            .inner()
            .store(stats.misses, Ordering::Relaxed);
    }
    endpoints::metrics_response(&server.metrics.registry)
}

/// Serves until `shutdown` resolves, then lets the requests in flight finish for
/// `--shutdown-grace` (see the `serve` module).
pub async fn serve(
    listener: tokio::net::TcpListener,
    server: Server,
    limits: &HttpdLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), HttpdError> {
    let metrics = server.metrics.conns.clone();
    serve::run(listener, server.router(), limits, metrics, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_strip_the_extension_and_keep_directories() {
        assert_eq!(route_for("sync.jsonnet"), "/sync");
        assert_eq!(route_for("hooks/sync.jsonnet"), "/hooks/sync");
        assert_eq!(route_for("sync-pods.tera"), "/sync-pods");
        assert_eq!(route_for("./sync.jsonnet"), "/sync");
        assert_eq!(route_for("/abs/hooks/x.jsonnet"), "/abs/hooks/x");
        assert_eq!(route_for("foo.libsonnet"), "/foo.libsonnet");
    }

    #[test]
    fn listen_addresses_follow_go() {
        assert_eq!(
            parse_listen_addr(":8080").expect("valid").to_string(),
            "0.0.0.0:8080"
        );
        assert_eq!(
            parse_listen_addr("127.0.0.1:9").expect("valid").to_string(),
            "127.0.0.1:9"
        );
        let err = parse_listen_addr("localhost").expect_err("invalid");
        assert!(
            err.to_string()
                .starts_with("invalid listen address \"localhost\""),
            "{err}"
        );
    }
}
