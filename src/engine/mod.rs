//! The shared reconcile engine: discovery, shared informers, work queues, and the one sync
//! pipeline both CompositeControllers and DecoratorControllers run on.
//!
//! ```text
//! API server ─watch─▶ informer (one per type) ─changes─▶ per-controller queue ─▶ sync
//!   sync: observe children ─▶ hook ─▶ validate ─▶ plan ─▶ parent metadata, children, status
//! ```

pub mod apply;
pub mod children;
pub mod controller;
pub mod discovery;
pub mod events;
pub mod hooks;
pub mod informer;
pub mod managed_fields;
pub mod manager;
pub mod overlap;
pub mod queue;
pub mod related;
pub mod status;
pub mod support;

use std::sync::Arc;
use std::time::Duration;

use kube::Client;

use crate::client_limit::RateLimit;
use crate::hooks::sandbox::Sandbox;
use crate::telemetry::api_metrics::{self, ApiMetrics};
use children::ApplyStrategy;
use discovery::Discovery;
use hooks::HookFactory;
use informer::InformerFactory;

/// What `kubelambda run` is configured with.
#[derive(Clone)]
pub struct EngineConfig {
    pub workers: usize,
    pub discovery_interval: Duration,
    /// Enqueue every parent of every controller this often (`--cache-flush-interval`);
    /// `None`: only on changes and the controller's own resync period.
    pub cache_flush_interval: Option<Duration>,
    pub apply: ApplyStrategy,
    pub target_label_selector: Option<String>,
    /// Client-side limit on API requests (`--client-go-qps`); `None`: no limit.
    pub client_rate_limit: Option<RateLimit>,
    pub sandbox: Sandbox,
}

/// Everything the controllers of one process share.
#[derive(Clone)]
pub struct Shared {
    pub client: Client,
    pub discovery: Arc<Discovery>,
    pub informers: InformerFactory,
    pub hooks: HookFactory,
    pub recorder: Arc<events::EventRecorder>,
    pub apply: ApplyStrategy,
    pub workers: usize,
    /// [`EngineConfig::cache_flush_interval`], for each controller to resync its parents on.
    pub cache_flush_interval: Option<Duration>,
    pub metrics: ApiMetrics,
}

/// A running engine; dropping it stops everything it started.
pub struct Engine {
    pub metrics: ApiMetrics,
    pub shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Engine {
    /// Connects with `kube_config` (its requests counted in [`Engine::metrics`], and held to
    /// [`EngineConfig::client_rate_limit`]) and starts watching CompositeControllers.
    pub fn start(kube_config: kube::Config, config: EngineConfig) -> Result<Self, kube::Error> {
        Self::start_fenced(kube_config, config, ApiMetrics::default(), None)
    }

    /// Like [`Engine::start`], counting requests in `metrics` (served before the engine starts)
    /// and, with leader election, refusing writes while `fence` is closed: a replica that lost
    /// its Lease cannot write even before it has stopped.
    pub fn start_fenced(
        kube_config: kube::Config,
        config: EngineConfig,
        metrics: ApiMetrics,
        fence: Option<crate::leader::Fence>,
    ) -> Result<Self, kube::Error> {
        let client = api_metrics::fenced_client(
            kube_config,
            metrics.clone(),
            config.client_rate_limit,
            fence,
        )?;
        let shared = Shared {
            discovery: Arc::new(Discovery::new(client.clone(), config.discovery_interval)),
            informers: InformerFactory::new(client.clone()),
            hooks: HookFactory::new(client.clone(), config.sandbox.clone())
                .with_max_response_bytes(config.sandbox.limits().max_output_bytes)
                .with_metrics(metrics.engine.clone()),
            recorder: Arc::new(events::EventRecorder::new(client.clone())),
            apply: config.apply.clone(),
            workers: config.workers,
            cache_flush_interval: config.cache_flush_interval,
            metrics: metrics.clone(),
            client,
        };
        let target = config.target_label_selector.clone();
        let task = tokio::spawn({
            let shared = shared.clone();
            async move {
                tokio::join!(
                    manager::run::<crate::api::CompositeController>(shared.clone(), target.clone()),
                    manager::run::<crate::api::DecoratorController>(shared, target),
                );
            }
        });
        Ok(Self {
            metrics,
            shared,
            task,
        })
    }
}
