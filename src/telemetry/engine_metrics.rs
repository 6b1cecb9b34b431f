//! The engine's Prometheus metrics: Metacontroller's webhook metrics under their own names
//! (`metacontroller_<hook>_requests_total`, `..._request_duration_histogram_seconds`,
//! `..._in_flight_requests`, labelled `url`, `controller_name`, `controller_type`), so existing
//! dashboards and alerts keep working, and kubelambda's own, for every hook backend and every
//! controller: hook calls and their duration, syncs by result and their duration, queue depth,
//! adds, retries and time in queue, and child writes by action.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Prometheus' default buckets (what Metacontroller's histograms use).
const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Copy)]
pub struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

#[derive(Clone, Copy)]
pub struct Exponential;

impl MetricConstructor<Histogram> for Exponential {
    fn new_metric(&self) -> Histogram {
        // 100 µs to ~52 s.
        Histogram::new(exponential_buckets(0.0001, 2.0, 20))
    }
}

/// Which controller, as Metacontroller labels it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller_name: String,
    /// `CompositeController` or `DecoratorController`.
    pub controller_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookRequestLabels {
    code: String,
    method: String,
    url: String,
    controller_name: String,
    controller_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookDurationLabels {
    method: String,
    url: String,
    controller_name: String,
    controller_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    url: String,
    controller_name: String,
    controller_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    controller_name: String,
    controller_type: String,
    /// `sync`, `finalize` or `customize`.
    hook: String,
    /// `webhook`, `jsonnet` or `tera`.
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookResultLabels {
    controller_name: String,
    controller_type: String,
    hook: String,
    backend: String,
    /// `ok`, or what failed: `eval_error`, `webhook_error`, `not_json`, `invalid_response`.
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    controller_name: String,
    controller_type: String,
    /// `ok` or `error`.
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    controller_name: String,
    controller_type: String,
    /// `created`, `updated` or `deleted`.
    action: String,
}

/// Metacontroller's three webhook metrics of one hook type.
#[derive(Clone)]
struct WebhookFamilies {
    requests: Family<WebhookRequestLabels, Counter>,
    duration: Family<WebhookDurationLabels, Histogram, Buckets>,
    in_flight: Family<WebhookLabels, Gauge>,
}

impl WebhookFamilies {
    fn new() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(Buckets(&DEFAULT_BUCKETS)),
            in_flight: Family::default(),
        }
    }
}

#[derive(Clone)]
pub struct EngineMetrics {
    /// sync, finalize, customize.
    webhooks: Arc<[WebhookFamilies; 3]>,
    hook_calls: Family<HookResultLabels, Counter>,
    hook_duration: Family<HookLabels, Histogram, Exponential>,
    syncs: Family<ResultLabels, Counter>,
    sync_duration: Family<ControllerLabels, Histogram, Exponential>,
    queue_depth: Family<ControllerLabels, Gauge>,
    queue_adds: Family<ControllerLabels, Counter>,
    queue_retries: Family<ControllerLabels, Counter>,
    queue_wait: Family<ControllerLabels, Histogram, Exponential>,
    child_writes: Family<ActionLabels, Counter>,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        Self {
            webhooks: Arc::new([
                WebhookFamilies::new(),
                WebhookFamilies::new(),
                WebhookFamilies::new(),
            ]),
            hook_calls: Family::default(),
            hook_duration: Family::new_with_constructor(Exponential),
            syncs: Family::default(),
            sync_duration: Family::new_with_constructor(Exponential),
            queue_depth: Family::default(),
            queue_adds: Family::default(),
            queue_retries: Family::default(),
            queue_wait: Family::new_with_constructor(Exponential),
            child_writes: Family::default(),
        }
    }
}

const HOOK_TYPES: [&str; 3] = ["sync", "finalize", "customize"];

impl EngineMetrics {
    /// Registers Metacontroller's metrics at the root of `registry` and kubelambda's own under
    /// the prefix `kubelambda`.
    pub fn register(&self, registry: &mut Registry) {
        for (hook, families) in HOOK_TYPES.iter().zip(self.webhooks.iter()) {
            registry.register(
                format!("metacontroller_{hook}_requests"),
                format!("Requests to {hook} webhooks, by status code and method"),
                families.requests.clone(),
            );
            registry.register(
                format!("metacontroller_{hook}_request_duration_histogram_seconds"),
                format!("Duration of {hook} webhook requests"),
                families.duration.clone(),
            );
            registry.register(
                format!("metacontroller_{hook}_in_flight_requests"),
                format!("{hook} webhook requests in flight"),
                families.in_flight.clone(),
            );
        }
        let ours = registry.sub_registry_with_prefix("kubelambda");
        ours.register(
            "hook_calls",
            "Hook calls (every backend), by hook, backend and result",
            self.hook_calls.clone(),
        );
        ours.register(
            "hook_duration_seconds",
            "Duration of hook calls (every backend)",
            self.hook_duration.clone(),
        );
        ours.register(
            "syncs",
            "Parent syncs, by controller and result",
            self.syncs.clone(),
        );
        ours.register(
            "sync_duration_seconds",
            "Duration of parent syncs",
            self.sync_duration.clone(),
        );
        ours.register(
            "queue_depth",
            "Parents waiting in a controller's queue (ready or delayed)",
            self.queue_depth.clone(),
        );
        ours.register(
            "queue_adds",
            "Parents added to a controller's queue",
            self.queue_adds.clone(),
        );
        ours.register(
            "queue_retries",
            "Parents queued again after a failed sync",
            self.queue_retries.clone(),
        );
        ours.register(
            "queue_wait_seconds",
            "Time a parent waited in the queue before its sync started",
            self.queue_wait.clone(),
        );
        ours.register(
            "child_writes",
            "Children (and attachments) created, updated and deleted",
            self.child_writes.clone(),
        );
    }

    /// The instruments of one hook of one controller.
    pub fn hook(
        &self,
        controller: &ControllerLabels,
        hook: &str,
        backend: &'static str,
        url: Option<String>,
    ) -> HookInstruments {
        HookInstruments {
            metrics: self.clone(),
            controller: controller.clone(),
            hook_index: HOOK_TYPES.iter().position(|h| *h == hook),
            hook: hook.to_owned(),
            backend,
            url,
        }
    }

    /// The instruments of one controller's sync loop and queue.
    pub fn controller(&self, controller: &ControllerLabels) -> ControllerInstruments {
        ControllerInstruments {
            metrics: self.clone(),
            labels: controller.clone(),
        }
    }
}

/// What one call of a hook ended with, for the metrics.
pub enum CallResult {
    Ok,
    /// A webhook answered with this status (an error status, or an unusable body).
    Answered {
        status: u16,
        result: &'static str,
    },
    /// Failed without an HTTP answer (evaluation error, transport error, timeout).
    Failed {
        result: &'static str,
    },
}

#[derive(Clone)]
pub struct HookInstruments {
    metrics: EngineMetrics,
    controller: ControllerLabels,
    hook_index: Option<usize>,
    hook: String,
    backend: &'static str,
    /// For webhooks: Metacontroller's metrics are kept per URL.
    url: Option<String>,
}

impl HookInstruments {
    fn webhook_labels(&self) -> Option<(&WebhookFamilies, &str)> {
        let families = &self.metrics.webhooks[self.hook_index?];
        Some((families, self.url.as_deref()?))
    }

    /// `sync`, `finalize` or `customize`.
    pub fn hook_type(&self) -> &str {
        &self.hook
    }

    /// `webhook`, `jsonnet` or `tera`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Counts a call in flight until the returned guard is dropped.
    pub fn start(&self) -> InFlight {
        let gauge = self.webhook_labels().map(|(families, url)| {
            families
                .in_flight
                .get_or_create(&WebhookLabels {
                    url: url.to_owned(),
                    controller_name: self.controller.controller_name.clone(),
                    controller_type: self.controller.controller_type.clone(),
                })
                .clone()
        });
        if let Some(g) = &gauge {
            g.inc();
        }
        InFlight(gauge)
    }

    pub fn finish(&self, elapsed: Duration, result: CallResult) {
        let seconds = elapsed.as_secs_f64();
        let (status, name) = match result {
            CallResult::Ok => (Some(200), "ok"),
            CallResult::Answered { status, result } => (Some(status), result),
            CallResult::Failed { result } => (None, result),
        };
        let c = &self.controller;
        self.metrics
            .hook_calls
            .get_or_create(&HookResultLabels {
                controller_name: c.controller_name.clone(),
                controller_type: c.controller_type.clone(),
                hook: self.hook.clone(),
                backend: self.backend.to_owned(),
                result: name.to_owned(),
            })
            .inc();
        self.metrics
            .hook_duration
            .get_or_create(&HookLabels {
                controller_name: c.controller_name.clone(),
                controller_type: c.controller_type.clone(),
                hook: self.hook.clone(),
                backend: self.backend.to_owned(),
            })
            .observe(seconds);
        // Like Go's promhttp: a request without a response is not counted.
        if let (Some((families, url)), Some(status)) = (self.webhook_labels(), status) {
            families
                .requests
                .get_or_create(&WebhookRequestLabels {
                    code: status.to_string(),
                    method: "post".into(),
                    url: url.to_owned(),
                    controller_name: c.controller_name.clone(),
                    controller_type: c.controller_type.clone(),
                })
                .inc();
            families
                .duration
                .get_or_create(&WebhookDurationLabels {
                    method: "post".into(),
                    url: url.to_owned(),
                    controller_name: c.controller_name.clone(),
                    controller_type: c.controller_type.clone(),
                })
                .observe(seconds);
        }
    }
}

/// Decrements the in-flight gauge when the call ends, however it ends (a cancelled sync too).
pub struct InFlight(Option<Gauge>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.dec();
        }
    }
}

#[derive(Clone)]
pub struct ControllerInstruments {
    metrics: EngineMetrics,
    labels: ControllerLabels,
}

impl ControllerInstruments {
    pub fn sync_done(&self, elapsed: Duration, ok: bool) {
        self.metrics
            .syncs
            .get_or_create(&ResultLabels {
                controller_name: self.labels.controller_name.clone(),
                controller_type: self.labels.controller_type.clone(),
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
        self.metrics
            .sync_duration
            .get_or_create(&self.labels)
            .observe(elapsed.as_secs_f64());
    }

    pub fn child_written(&self, action: &str) {
        self.metrics
            .child_writes
            .get_or_create(&ActionLabels {
                controller_name: self.labels.controller_name.clone(),
                controller_type: self.labels.controller_type.clone(),
                action: action.to_owned(),
            })
            .inc();
    }

    /// The instruments a [`crate::engine::queue::WorkQueue`] reports to.
    pub fn queue(&self) -> crate::engine::queue::QueueMetrics {
        crate::engine::queue::QueueMetrics {
            depth: self.metrics.queue_depth.get_or_create(&self.labels).clone(),
            adds: self.metrics.queue_adds.get_or_create(&self.labels).clone(),
            retries: self
                .metrics
                .queue_retries
                .get_or_create(&self.labels)
                .clone(),
            wait: self.metrics.queue_wait.get_or_create(&self.labels).clone(),
        }
    }
}
