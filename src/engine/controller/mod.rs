//! One running controller, composite or decorator, on one pipeline:
//!
//! ```text
//! informers ─▶ routing ─▶ queue ─▶ sync:
//!   observe (claim/adopt children, or find attachments) ─▶ exchange (call the hook, decode)
//!   ─▶ validate ─▶ plan (pure) ─▶ execute: parent metadata, children (ChildWriter::manage), status
//! ```
//!
//! A composite with a rolling child type (RollingRecreate, RollingInPlace) wraps the hook call in
//! `revisions` (ControllerRevisions claimed and written, the hook once per revision) and decides
//! which child moves next in `rollout` (pure); the rest of the pipeline is the same.
//!
//! What differs between the two kinds is small and named by [`Kind`]: how children are found
//! (a selector and adoption, or an ownerRef and an annotation), the request and response shapes,
//! and how the parent is written (status replaced with `observedGeneration`, or labels,
//! annotations and status merged into an object someone else owns).

pub mod build;
pub mod exchange;
pub mod observe;
pub mod parent;
pub mod plan;
pub mod revisions;
pub mod rollout;
pub mod routing;
pub mod state;
pub mod sync;

use std::sync::Arc;
use std::time::Duration;

use kube::api::DynamicObject;
use kube::{Api, Resource, ResourceExt};
use serde_json::Value;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::Shared;
use super::children::ChildWriter;
use super::discovery::Resolved;
use super::events::EventType;
use super::hooks::BuiltHook;
use super::informer::{Informer, ObjectKey};
use super::queue::WorkQueue;
use super::related::Related;
use crate::api::ChildUpdateMethod;
use crate::hooks::protocol::ChildType;
use crate::selector::Selector;

pub use build::{StartError, start_composite, start_decorator};
pub use sync::SyncError;

/// The label generateSelector puts on children.
pub use crate::api::CONTROLLER_UID_LABEL;

/// The annotation a DecoratorController puts on its attachments, naming itself: how it tells its
/// attachments from those of another decorator on the same target.
pub use crate::api::DECORATOR_CONTROLLER_ANNOTATION as DECORATOR_ANNOTATION;

/// What a controller of each kind does differently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Children match a selector (the parent's `spec.selector`, or `controller-uid` with
    /// generateSelector), orphans are adopted, and the hook's status replaces the parent's.
    Composite { generate_selector: bool },
    /// Attachments carry [`DECORATOR_ANNOTATION`]; nothing is adopted; the hook's labels,
    /// annotations and status are merged into the target.
    Decorator,
}

impl Kind {
    /// The controller kind, as Metacontroller's metrics and events name it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Composite { .. } => "CompositeController",
            Self::Decorator => "DecoratorController",
        }
    }
}

/// A parent type (a composite's one `parentResource`, or one of a decorator's `resources`).
pub struct ParentType {
    pub ty: Resolved,
    pub informer: Arc<Informer>,
    /// Parents must match it; `None` matches all.
    pub labels: Option<Selector>,
    /// Decorators only: targets must match it too.
    pub annotations: Option<Selector>,
    pub ignore_status_changes: bool,
}

impl ParentType {
    /// Whether `obj` is selected by this controller (a parent that is not, but carries the
    /// finalizer, is still synced: to finalize it).
    pub fn selects(&self, obj: &DynamicObject) -> bool {
        selected_by(self.labels.as_ref(), self.annotations.as_ref(), obj)
    }
}

/// Whether `obj` matches both selectors (a missing one matches everything). Shared by the
/// controller and `render --controller`.
pub fn selected_by(
    labels: Option<&Selector>,
    annotations: Option<&Selector>,
    obj: &DynamicObject,
) -> bool {
    let empty = Default::default();
    labels.is_none_or(|s| s.matches(obj.metadata.labels.as_ref().unwrap_or(&empty)))
        && annotations
            .is_none_or(|s| s.matches(obj.metadata.annotations.as_ref().unwrap_or(&empty)))
}

/// A declared child (or attachment) type, resolved.
pub struct ChildKind {
    pub ty: Resolved,
    /// The apiVersion as written in the controller (the map key uses it).
    pub api_version: String,
    pub method: ChildUpdateMethod,
    pub informer: Arc<Informer>,
}

/// Which parent: its type (an index into the controller's parent types) and its key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ParentKey {
    pub type_index: usize,
    pub object: ObjectKey,
}

impl std::fmt::Display for ParentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.object.fmt(f)
    }
}

/// The hooks of a controller. A decorator may have only `finalize` (Metacontroller #948).
pub struct Hooks {
    pub sync: Option<BuiltHook>,
    pub finalize: Option<BuiltHook>,
}

pub struct Controller {
    pub name: String,
    pub kind: Kind,
    /// The controller object, as the hooks receive it.
    controller_json: Value,
    parents: Vec<ParentType>,
    children: Vec<ChildKind>,
    child_types: Vec<ChildType>,
    hooks: Hooks,
    related: Option<Related>,
    /// Set when a child type rolls (RollingRecreate, RollingInPlace): ControllerRevisions.
    rolling: Option<revisions::RollingConfig>,
    finalizer: String,
    resync_period: Option<Duration>,
    queue: WorkQueue<ParentKey>,
    writer: ChildWriter,
    shared: Shared,
    state: state::ParentStates,
    instruments: crate::telemetry::engine_metrics::ControllerInstruments,
}

/// A started controller; dropping it stops its tasks (the informers stop once unused).
pub struct Running {
    pub controller: Arc<Controller>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.controller.queue.shutdown();
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Running {
    /// The controller object was deleted: stops it, and removes its finalizer from every parent
    /// that carries it, so that none is left undeletable (Metacontroller leaks them, #1062).
    pub async fn retire(self) {
        let controller = self.controller.clone();
        drop(self);
        controller.release_finalizers().await;
    }
}

impl Controller {
    fn run(self: Arc<Self>) -> Running {
        let mut tasks = routing::spawn(&self);
        for _ in 0..self.shared.workers.max(1) {
            let this = self.clone();
            tasks.push(tokio::spawn(async move {
                // A parent synced before every child type is listed would see children missing:
                // it would create what exists and claim nothing.
                this.wait_ready().await;
                this.work().await
            }));
        }
        Running {
            controller: self,
            tasks,
        }
    }

    async fn wait_ready(&self) {
        for p in &self.parents {
            p.informer.wait_ready().await;
        }
        for c in &self.children {
            c.informer.wait_ready().await;
        }
    }

    fn enqueue_all(&self) {
        for (type_index, p) in self.parents.iter().enumerate() {
            for parent in p.informer.list(None) {
                self.queue.add(ParentKey {
                    type_index,
                    object: ObjectKey::of(&parent),
                });
            }
        }
    }

    async fn work(&self) {
        while let Some(key) = self.queue.next().await {
            let started = std::time::Instant::now();
            let span = tracing::info_span!(
                "sync",
                controller = %self.name,
                controller_type = self.kind.type_name(),
                parent = %key,
                parent_kind = %self.parents[key.type_index].ty.ar.kind,
                error = tracing::field::Empty,
            );
            let result = self.sync(&key).instrument(span.clone()).await;
            if let Err(e) = &result {
                span.record("error", tracing::field::display(e));
            }
            self.shared.metrics.record_sync();
            self.instruments
                .sync_done(started.elapsed(), result.is_ok());
            match result {
                Ok(resync) => {
                    self.queue.forget(&key);
                    self.queue.done(&key);
                    if let Some(after) = resync {
                        self.queue.add_after(key, after);
                    }
                }
                Err(error) => {
                    self.queue.done(&key);
                    if let Some(after) = error.retry_after() {
                        self.queue.add_after(key.clone(), after);
                    } else {
                        let delay = self.queue.add_rate_limited(key.clone());
                        tracing::warn!(controller = %self.name, parent = %key, retry_in = ?delay, "sync failed: {error}");
                    }
                    self.warn(&key, "SyncError", &format!("Sync error: {error}"))
                        .await;
                }
            }
        }
    }

    async fn warn(&self, key: &ParentKey, reason: &str, note: &str) {
        let Some(p) = self.parents.get(key.type_index) else {
            return;
        };
        let Some(parent) = p.informer.get(&key.object) else {
            return;
        };
        let reference = parent.object_ref(&p.ty.ar);
        self.shared
            .recorder
            .publish(&reference, EventType::Warning, reason, "Sync", note)
            .await;
    }

    fn parent_api(&self, type_index: usize, namespace: Option<&str>) -> Api<DynamicObject> {
        let ty = &self.parents[type_index].ty;
        match namespace {
            Some(ns) if ty.namespaced => {
                Api::namespaced_with(self.shared.client.clone(), ns, &ty.ar)
            }
            _ => Api::all_with(self.shared.client.clone(), &ty.ar),
        }
    }

    /// Removes this controller's finalizer from every cached parent that carries it; a parent
    /// that changed meanwhile is read again (a few times) rather than skipped.
    async fn release_finalizers(&self) {
        for (type_index, p) in self.parents.iter().enumerate() {
            for cached in p.informer.list(None) {
                let mut current = Some((*cached).clone());
                for _ in 0..5 {
                    let Some(obj) = current.take() else { break };
                    if !obj.finalizers().contains(&self.finalizer) {
                        break;
                    }
                    match self.set_finalizer(type_index, &obj, false).await {
                        Ok(parent::Written::Done(_)) => {
                            tracing::info!(controller = %self.name, parent = %ObjectKey::of(&obj), "removed the finalizer of a deleted controller");
                        }
                        Ok(parent::Written::Stale) => {
                            current = self
                                .parent_api(type_index, obj.namespace().as_deref())
                                .get_opt(&obj.name_any())
                                .await
                                .ok()
                                .flatten();
                        }
                        Err(e) => {
                            tracing::warn!(controller = %self.name, "cannot remove the finalizer of a deleted controller: {e}")
                        }
                    }
                }
            }
        }
    }
}
