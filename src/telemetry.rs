//! Logging setup. Logs go to stderr, as text or as one JSON object per line; `RUST_LOG` (or
//! `--log-level`, or Metacontroller's `--zap-log-level`) picks what is shown. `std.trace` output
//! is logged at info level, so it is visible with the defaults.

pub mod engine_metrics;
pub mod traces;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `message`, `target` and the event's
    /// fields), for log pipelines that parse Metacontroller's zap JSON output.
    Json,
}

/// Environment variables that carry the log level and format (`--log-level`, `--log-format`) to
/// the hook worker processes, which are started with only their subcommand as argument and log
/// to the same stderr: `std.trace` output must come out in the same format as the rest.
pub const LOG_LEVEL_ENV: &str = "KUBELAMBDA_LOG_LEVEL";
pub const LOG_FORMAT_ENV: &str = "KUBELAMBDA_LOG_FORMAT";

/// Sets [`LOG_LEVEL_ENV`] and [`LOG_FORMAT_ENV`] for the processes this one starts.
///
/// # Safety
///
/// No other thread may be running (it changes the process environment); call it from `main`
/// before the async runtime starts.
pub unsafe fn export_to_workers(filter: &str, format: LogFormat) {
    let format = match format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    };
    // SAFETY: the caller guarantees that this process has one thread.
    unsafe {
        std::env::set_var(LOG_LEVEL_ENV, filter);
        std::env::set_var(LOG_FORMAT_ENV, format);
    }
}

/// Text logs; `default_filter` applies unless `RUST_LOG` is set.
pub fn init_logging(default_filter: &str) {
    init_logging_as(default_filter, LogFormat::Text);
}

/// Logs in `format`; `default_filter` (an `EnvFilter` directive such as `info` or
/// `info,kubelambda=debug`) applies unless `RUST_LOG` is set. Only the first call in a process
/// takes effect.
pub fn init_logging_as(default_filter: &str, format: LogFormat) {
    init_observability(default_filter, format, false);
}

/// Logs as [`init_logging_as`], and with `traces`, OpenTelemetry traces when the environment
/// asks for them ([`traces::requested`]). Keep the returned guard until exit: dropping it sends
/// the last spans.
pub fn init_observability(
    default_filter: &str,
    format: LogFormat,
    traces: bool,
) -> Option<traces::TracesGuard> {
    use tracing_subscriber::prelude::*;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        // Colours only on a terminal: a container's log collector would keep the escape codes.
        LogFormat::Text => fmt
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .boxed(),
    };
    let otlp = if traces {
        match traces::otlp_layer() {
            Ok(found) => found,
            Err(e) => {
                eprintln!("kubelambda: {e}; continuing without traces");
                None
            }
        }
    } else {
        None
    };
    let (layer, guard) = match otlp {
        Some((layer, guard)) => (Some(layer), Some(guard)),
        None => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(layer)
        .try_init();
    guard
}

/// Counts the requests kubelambda's Kubernetes client sends, by HTTP verb, so that "no write when
/// nothing changed" can be checked from the controller's own metrics (`kubelambda_api_requests`).
pub mod api_metrics {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::registry::Registry;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    pub struct VerbLabels {
        pub verb: String,
    }

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    pub struct VerbCodeLabels {
        pub verb: String,
        /// The HTTP status code, or `error` when no response came.
        pub code: String,
    }

    #[derive(Clone, Default)]
    pub struct ApiMetrics {
        writes: Arc<AtomicU64>,
        event_writes: Arc<AtomicU64>,
        syncs: Arc<AtomicU64>,
        requests: Family<VerbLabels, Counter>,
        responses: Family<VerbCodeLabels, Counter>,
        /// The engine's hook, sync, queue and child metrics, served with these.
        pub engine: super::engine_metrics::EngineMetrics,
    }

    impl ApiMetrics {
        /// Registers every metric: kubelambda's under the prefix `kubelambda`, Metacontroller's
        /// webhook metrics under their own names.
        pub fn register(&self, registry: &mut Registry) {
            self.engine.register(registry);
            let ours = registry.sub_registry_with_prefix("kubelambda");
            ours.register(
                "api_requests",
                "Requests sent to the Kubernetes API server, by verb",
                self.requests.clone(),
            );
            ours.register(
                "api_responses",
                "Responses of the Kubernetes API server, by verb and status code",
                self.responses.clone(),
            );
        }

        /// Counts an answer (or its absence) to a request of `verb`.
        pub fn answered(&self, verb: &str, code: Option<u16>) {
            self.responses
                .get_or_create(&VerbCodeLabels {
                    verb: verb.to_owned(),
                    code: code.map_or_else(|| "error".to_owned(), |c| c.to_string()),
                })
                .inc();
        }

        /// Parent syncs completed (successfully or not) so far.
        pub fn syncs(&self) -> u64 {
            self.syncs.load(Ordering::Relaxed)
        }

        pub fn record_sync(&self) {
            self.syncs.fetch_add(1, Ordering::Relaxed);
        }

        /// Events created or updated so far (not counted in [`ApiMetrics::writes`]: an event is
        /// a report about an object, not a change to it).
        pub fn event_writes(&self) -> u64 {
            self.event_writes.load(Ordering::Relaxed)
        }

        /// Creates, updates, patches and deletes of objects (events excepted) sent so far.
        pub fn writes(&self) -> u64 {
            self.writes.load(Ordering::Relaxed)
        }

        /// Counts a request; returns its verb, for [`ApiMetrics::answered`].
        pub fn observe(&self, method: &http::Method, uri: &http::Uri) -> &'static str {
            let verb = match *method {
                http::Method::GET if uri.query().is_some_and(|q| q.contains("watch=true")) => {
                    "watch"
                }
                http::Method::GET => "get",
                http::Method::POST => "create",
                http::Method::PUT => "update",
                http::Method::PATCH => "patch",
                http::Method::DELETE => "delete",
                _ => "other",
            };
            if matches!(verb, "create" | "update" | "patch" | "delete") {
                if uri.path().starts_with("/apis/events.k8s.io/") {
                    self.event_writes.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.writes.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.requests
                .get_or_create(&VerbLabels {
                    verb: verb.to_owned(),
                })
                .inc();
            verb
        }
    }

    /// Counts every request by verb, and every answer by verb and status code.
    #[derive(Clone)]
    struct CountLayer(ApiMetrics);

    impl<S> tower::Layer<S> for CountLayer {
        type Service = Count<S>;
        fn layer(&self, inner: S) -> Count<S> {
            Count {
                inner,
                metrics: self.0.clone(),
            }
        }
    }

    #[derive(Clone)]
    struct Count<S> {
        inner: S,
        metrics: ApiMetrics,
    }

    impl<S, B, R> tower::Service<http::Request<B>> for Count<S>
    where
        S: tower::Service<http::Request<B>, Response = http::Response<R>>,
        S::Future: Send + 'static,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Future = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>,
        >;

        fn poll_ready(
            &mut self,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), S::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, req: http::Request<B>) -> Self::Future {
            let verb = self.metrics.observe(req.method(), req.uri());
            let metrics = self.metrics.clone();
            let future = self.inner.call(req);
            Box::pin(async move {
                let result = future.await;
                let code = result.as_ref().ok().map(|r| r.status().as_u16());
                metrics.answered(verb, code);
                result
            })
        }
    }

    /// Builds a kube client that reports every request to `metrics` and, when `limit` is given,
    /// holds requests to that rate (see [`crate::client_limit`]).
    pub fn client(
        config: kube::Config,
        metrics: ApiMetrics,
        limit: Option<crate::client_limit::RateLimit>,
    ) -> Result<kube::Client, kube::Error> {
        fenced_client(config, metrics, limit, None)
    }

    /// Like [`client`], refusing writes while `fence` is closed (leader election: only the
    /// leader writes). Refused writes are neither counted nor held by the rate limit.
    pub fn fenced_client(
        config: kube::Config,
        metrics: ApiMetrics,
        limit: Option<crate::client_limit::RateLimit>,
        fence: Option<crate::leader::Fence>,
    ) -> Result<kube::Client, kube::Error> {
        let count = CountLayer(metrics);
        let limit = tower::util::option_layer(limit.map(crate::client_limit::RateLimitLayer::new));
        Ok(kube::client::ClientBuilder::try_from(config)?
            .with_layer(&limit)
            .with_layer(&count)
            .with_layer(&tower::util::option_layer(
                fence.map(crate::leader::FenceLayer),
            ))
            .build())
    }
}
