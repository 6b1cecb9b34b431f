//! OpenTelemetry traces of the controller: a span per sync (controller, parent), with child spans
//! for the hook call and for each write to a child or the parent. Off by default; on when the
//! standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, exported
//! over OTLP/HTTP (protobuf) by a batch processor on its own thread. `OTEL_SERVICE_NAME` names the
//! service (default `kubelambda`); the other `OTEL_*` exporter variables apply as usual.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

/// The environment variables that turn traces on.
pub const ENDPOINT_ENV: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Flushes and stops the exporter when dropped (at exit), so the last spans are sent.
pub struct TracesGuard(SdkTracerProvider);

impl Drop for TracesGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("kubelambda: flushing traces: {e}");
        }
    }
}

/// Whether the environment asks for traces.
pub fn requested() -> bool {
    ENDPOINT_ENV
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()))
}

/// The layer that sends kubelambda's spans to `exporter`, and the provider that owns it.
pub fn layer_with<S, E>(exporter: E) -> (impl Layer<S> + Send + Sync, SdkTracerProvider)
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    E: SpanExporter + 'static,
{
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "kubelambda".into());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let tracer = provider.tracer("kubelambda");
    // Only kubelambda's own spans: the HTTP client's and the runtime's would drown them.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(Targets::new().with_target("kubelambda", tracing::Level::INFO));
    (layer, provider)
}

/// The OTLP/HTTP layer, when the environment asks for traces.
pub fn otlp_layer<S>() -> Result<Option<(impl Layer<S> + Send + Sync, TracesGuard)>, String>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    if !requested() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("cannot start the OTLP trace exporter: {e}"))?;
    let (layer, provider) = layer_with(exporter);
    Ok(Some((layer, TracesGuard(provider))))
}
