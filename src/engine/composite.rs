//! One running CompositeController: watches its parents and children through the shared
//! informers, queues parents, and syncs each one (claim children, call the hook, manage children,
//! write status), following Metacontroller's algorithm (reference §3.5 to §3.12).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use super::Shared;
use super::children::{ChildError, ChildWriter, Outcome, owner_reference};
use super::discovery::Resolved;
use super::events::EventType;
use super::hooks::{BuiltHook, HookOwner};
use super::informer::{Change, Informer, ObjectKey, controller_uid};
use super::queue::{Backoff, WorkQueue};
use super::status;
use crate::api::{ChildUpdateMethod, CompositeController};
use crate::hooks::HookError;
use crate::hooks::protocol::{
    COMPOSITE_RESPONSE_FIELDS, ChildRules, ChildType, CompositeRequest, CompositeResponse,
    ObjectMap, ResponseError, decode, object_key, type_key, validate_children,
};
use crate::selector::{LabelSelector, Selector};

/// The label generateSelector puts on children.
pub const CONTROLLER_UID_LABEL: &str = "controller-uid";

/// Finalizers that mean the garbage collector is working on the parent.
const GC_FINALIZERS: &[&str] = &["foregroundDeletion", "orphan"];

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Spec(String),
    /// `field` is the controller's field that names the resource, e.g.
    /// `spec.childResources[1]`.
    #[error("{field}: {source}")]
    Discovery {
        field: String,
        #[source]
        source: Box<super::discovery::DiscoveryError>,
    },
    #[error(transparent)]
    Hook(Box<super::hooks::HookBuildError>),
    /// Metacontroller refuses such parents; the controller is not started and not retried.
    #[error("CRD {crd} does not have subresource 'Status' enabled")]
    NoStatusSubresource { crd: String },
    /// A field this engine does not run yet: refused rather than ignored.
    #[error(transparent)]
    Unsupported(#[from] super::support::Unsupported),
}

impl StartError {
    fn discovery(field: String) -> impl FnOnce(super::discovery::DiscoveryError) -> Self {
        move |source| Self::Discovery {
            field,
            source: Box::new(source),
        }
    }
}

impl From<super::hooks::HookBuildError> for StartError {
    fn from(e: super::hooks::HookBuildError) -> Self {
        Self::Hook(Box::new(e))
    }
}

impl StartError {
    /// Whether trying again later can help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::NoStatusSubresource { .. } | Self::Spec(_) | Self::Unsupported(_)
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync hook failed: {0}")]
    Hook(#[from] HookError),
    #[error("invalid hook response: {0}")]
    Response(#[from] ResponseError),
    #[error("parent {parent}: {message}")]
    Selector { parent: String, message: String },
    #[error(transparent)]
    Child(#[from] ChildError),
    #[error("{action} parent {parent}: {source}")]
    Parent {
        action: &'static str,
        parent: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Related(#[from] super::related::RelatedError),
    #[error("managing children: {0}")]
    Children(String),
}

impl SyncError {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Hook(h) => h.retry_after(),
            _ => None,
        }
    }
}

/// A declared child type, resolved.
pub struct ChildKind {
    pub ty: Resolved,
    /// The apiVersion as written in the controller (the map key uses it).
    pub api_version: String,
    pub method: ChildUpdateMethod,
    pub informer: Arc<Informer>,
}

pub struct Composite {
    name: String,
    controller_json: Value,
    parent: Resolved,
    parent_informer: Arc<Informer>,
    children: Vec<ChildKind>,
    child_types: Vec<ChildType>,
    sync_hook: BuiltHook,
    finalize_hook: Option<BuiltHook>,
    related: Option<super::related::Related>,
    parent_selector: Option<Selector>,
    generate_selector: bool,
    finalizer: String,
    resync_period: Option<Duration>,
    ignore_status_changes: bool,
    queue: WorkQueue<ObjectKey>,
    writer: ChildWriter,
    shared: Shared,
    /// What this controller last wrote as a parent's status: UID → (status, resourceVersion after).
    written_status: Mutex<HashMap<String, (Value, String)>>,
    /// Last seen (generation, labels, annotations, deleting) per parent, for ignoreStatusChanges.
    seen: Mutex<HashMap<ObjectKey, (Option<i64>, u64)>>,
}

/// A started controller; dropping it stops its tasks (the informers stop once unused).
pub struct Running {
    pub controller: Arc<Composite>,
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

fn parent_selector_of(cc: &CompositeController) -> Result<Option<Selector>, StartError> {
    let Some(sel) = &cc.spec.parent_resource.label_selector else {
        return Ok(None);
    };
    let json = serde_json::to_value(sel).map_err(|e| StartError::Spec(e.to_string()))?;
    let sel: LabelSelector =
        serde_json::from_value(json).map_err(|e| StartError::Spec(e.to_string()))?;
    Selector::from_label_selector(&sel)
        .map(Some)
        .map_err(|e| StartError::Spec(format!("spec.parentResource.labelSelector: {e}")))
}

pub async fn start(cc: &CompositeController, shared: &Shared) -> Result<Running, StartError> {
    let name = cc.name_any();
    cc.spec
        .validate()
        .map_err(|e| StartError::Spec(e.to_string()))?;
    if let Some(unsupported) = super::support::unsupported_in_composite(&cc.spec) {
        return Err(unsupported.into());
    }
    let pr = &cc.spec.parent_resource;
    let parent = shared
        .discovery
        .resolve(&pr.api_version, &pr.resource)
        .await
        .map_err(StartError::discovery("spec.parentResource".into()))?;
    if !parent.has_status {
        let group = if parent.ar.group.is_empty() {
            "core"
        } else {
            &parent.ar.group
        };
        return Err(StartError::NoStatusSubresource {
            crd: format!("{}.{group}", parent.ar.plural),
        });
    }
    let mut children = Vec::new();
    for (index, rule) in cc.spec.child_resources.iter().enumerate() {
        let ty = shared
            .discovery
            .resolve(&rule.api_version, &rule.resource)
            .await
            .map_err(StartError::discovery(format!(
                "spec.childResources[{index}]"
            )))?;
        let informer = shared.informers.informer(&ty.ar);
        children.push(ChildKind {
            api_version: rule.api_version.clone(),
            method: rule.update_method(),
            ty,
            informer,
        });
    }
    let hooks = cc
        .spec
        .hooks()
        .map_err(|e| StartError::Spec(e.to_string()))?;
    let sync_spec = cc
        .spec
        .sync_hook()
        .map_err(|e| StartError::Spec(e.to_string()))?;
    let eps = &cc.spec.endpoint_configs;
    let parent_informer = shared.informers.informer(&parent.ar);
    let queue = WorkQueue::new(Backoff::default());
    // A followed hook source (configMapRef, file) that changes resyncs every parent.
    let owner = HookOwner::new(cc.object_ref(&()), {
        let (parents, queue) = (parent_informer.clone(), queue.clone());
        move || {
            parents
                .list(None)
                .iter()
                .for_each(|p| queue.add(ObjectKey::of(p)))
        }
    });
    let sync_hook = shared
        .hooks
        .build(sync_spec, "spec.hooks.sync", &owner, eps)
        .await?;
    let finalize_hook = match &hooks.finalize {
        Some(h) => Some(
            shared
                .hooks
                .build(h, "spec.hooks.finalize", &owner, eps)
                .await?,
        ),
        None => None,
    };
    let customize_hook = match &hooks.customize {
        Some(h) => Some(
            shared
                .hooks
                .build(h, "spec.hooks.customize", &owner, eps)
                .await?,
        ),
        None => None,
    };
    let child_types = children
        .iter()
        .map(|c| ChildType {
            api_version: c.api_version.clone(),
            kind: c.ty.ar.kind.clone(),
            namespaced: c.ty.namespaced,
        })
        .collect();
    let controller_json = serde_json::to_value(cc).unwrap_or(Value::Null);
    let related = customize_hook.map(|hook| {
        super::related::Related::new(
            hook,
            controller_json.clone(),
            shared.clone(),
            parent.namespaced,
            parent_informer.clone(),
            queue.clone(),
        )
    });
    let controller = Arc::new(Composite {
        controller_json,
        parent_informer,
        related,
        parent,
        children,
        child_types,
        sync_hook,
        finalize_hook,
        parent_selector: parent_selector_of(cc)?,
        generate_selector: cc.spec.generate_selector(),
        finalizer: cc.finalizer_name(),
        resync_period: cc.spec.resync_period(),
        ignore_status_changes: pr.ignore_status_changes.unwrap_or(false),
        queue,
        writer: ChildWriter::new(shared.client.clone(), shared.apply.clone()),
        shared: shared.clone(),
        written_status: Mutex::default(),
        seen: Mutex::default(),
        name,
    });
    Ok(controller.run())
}

fn labels_of(obj: &DynamicObject) -> BTreeMap<String, String> {
    obj.metadata.labels.clone().unwrap_or_default()
}

fn fingerprint(obj: &DynamicObject) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.metadata.labels.hash(&mut h);
    obj.metadata.annotations.hash(&mut h);
    obj.metadata.deletion_timestamp.is_some().hash(&mut h);
    obj.metadata.finalizers.hash(&mut h);
    h.finish()
}

impl Composite {
    fn run(self: Arc<Self>) -> Running {
        let mut tasks = Vec::new();
        // Subscribe before waiting, so nothing that happens during start-up is missed.
        let parent_rx = self.parent_informer.subscribe();
        let child_rxs: Vec<_> = self
            .children
            .iter()
            .map(|c| c.informer.subscribe())
            .collect();
        let this = self.clone();
        tasks.push(tokio::spawn(async move {
            this.parent_informer.wait_ready().await;
            for c in &this.children {
                c.informer.wait_ready().await;
            }
            this.enqueue_all();
        }));
        let this = self.clone();
        tasks.push(tokio::spawn(
            async move { this.watch_parents(parent_rx).await },
        ));
        for rx in child_rxs {
            let this = self.clone();
            tasks.push(tokio::spawn(async move { this.watch_children(rx).await }));
        }
        // resyncPeriodSeconds, and `--cache-flush-interval` for every controller.
        for period in [self.resync_period, self.shared.cache_flush_interval]
            .into_iter()
            .flatten()
        {
            let this = self.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    this.enqueue_all();
                }
            }));
        }
        for _ in 0..self.shared.workers.max(1) {
            let this = self.clone();
            tasks.push(tokio::spawn(async move {
                // A parent synced before every child type is listed would see children missing:
                // it would create what exists and claim nothing.
                this.parent_informer.wait_ready().await;
                for c in &this.children {
                    c.informer.wait_ready().await;
                }
                this.work().await
            }));
        }
        Running {
            controller: self,
            tasks,
        }
    }

    fn enqueue_all(&self) {
        for parent in self.parent_informer.list(None) {
            self.queue.add(ObjectKey::of(&parent));
        }
    }

    async fn watch_parents(&self, mut rx: tokio::sync::broadcast::Receiver<Change>) {
        loop {
            match rx.recv().await {
                Ok(Change::Applied(obj)) => {
                    let key = ObjectKey::of(&obj);
                    let now = (obj.metadata.generation, fingerprint(&obj));
                    let before = self
                        .seen
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key.clone(), now);
                    if self.ignore_status_changes && before == Some(now) {
                        continue;
                    }
                    self.queue.add(key);
                }
                Ok(Change::Deleted(obj)) => {
                    let key = ObjectKey::of(&obj);
                    self.seen
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&key);
                    self.queue.add(key);
                }
                Err(RecvError::Lagged(_)) => self.enqueue_all(),
                Err(RecvError::Closed) => return,
            }
        }
    }

    async fn watch_children(&self, mut rx: tokio::sync::broadcast::Receiver<Change>) {
        loop {
            let (obj, deleted) = match rx.recv().await {
                Ok(Change::Applied(obj)) => (obj, false),
                Ok(Change::Deleted(obj)) => (obj, true),
                Err(RecvError::Lagged(_)) => {
                    self.enqueue_all();
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            if let Some(owner) = obj
                .owner_references()
                .iter()
                .find(|r| r.controller == Some(true))
            {
                if owner.kind != self.parent.ar.kind
                    || api_group(&owner.api_version) != self.parent.ar.group
                {
                    continue;
                }
                let ns = if self.parent.namespaced {
                    obj.namespace()
                } else {
                    None
                };
                let key = ObjectKey::new(ns.as_deref(), &owner.name);
                if self
                    .parent_informer
                    .get(&key)
                    .is_some_and(|p| p.uid().as_deref() == Some(owner.uid.as_str()))
                {
                    self.queue.add(key);
                }
            } else if !deleted {
                // An orphan: every parent whose selector matches it may want to adopt it.
                let ns = if self.parent.namespaced {
                    obj.namespace()
                } else {
                    None
                };
                let labels = labels_of(&obj);
                for parent in self.parent_informer.list(ns.as_deref()) {
                    if let Ok(sel) = self.selector_for(&parent)
                        && !sel.is_empty()
                        && sel.matches(&labels)
                    {
                        self.queue.add(ObjectKey::of(&parent));
                    }
                }
            }
        }
    }

    async fn work(&self) {
        while let Some(key) = self.queue.next().await {
            let result = self.sync(&key).await;
            self.shared.metrics.record_sync();
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

    async fn warn(&self, key: &ObjectKey, reason: &str, note: &str) {
        let Some(parent) = self.parent_informer.get(key) else {
            return;
        };
        let reference = parent.object_ref(&self.parent.ar);
        self.shared
            .recorder
            .publish(&reference, EventType::Warning, reason, "Sync", note)
            .await;
    }

    fn parent_api(&self, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) if self.parent.namespaced => {
                Api::namespaced_with(self.shared.client.clone(), ns, &self.parent.ar)
            }
            _ => Api::all_with(self.shared.client.clone(), &self.parent.ar),
        }
    }

    /// The selector children must match: `controller-uid` with generateSelector, else the
    /// parent's `spec.selector`.
    fn selector_for(&self, parent: &DynamicObject) -> Result<Selector, String> {
        if self.generate_selector {
            let uid = parent.uid().unwrap_or_default();
            return Ok(Selector::equals(&[(CONTROLLER_UID_LABEL, &uid)]));
        }
        let Some(raw) = parent.data.pointer("/spec/selector") else {
            return Err("has no spec.selector (set generateSelector: true on the controller, or give parents a selector)".into());
        };
        let sel: LabelSelector = serde_json::from_value(raw.clone())
            .map_err(|e| format!("spec.selector is not a label selector: {e}"))?;
        let sel = Selector::from_label_selector(&sel).map_err(|e| format!("spec.selector: {e}"))?;
        if sel.is_empty() {
            return Err(
                "spec.selector must have either matchLabels, matchExpressions, or both".into(),
            );
        }
        Ok(sel)
    }

    async fn set_finalizer(
        &self,
        parent: &DynamicObject,
        add: bool,
    ) -> Result<DynamicObject, SyncError> {
        let mut finalizers: Vec<String> = parent
            .finalizers()
            .iter()
            .filter(|f| **f != self.finalizer)
            .cloned()
            .collect();
        if add {
            finalizers.push(self.finalizer.clone());
        }
        let patch = json!({"metadata": {
            "finalizers": finalizers,
            "resourceVersion": parent.resource_version(),
        }});
        self.parent_api(parent.namespace().as_deref())
            .patch(
                &parent.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|source| SyncError::Parent {
                action: if add {
                    "add finalizer to"
                } else {
                    "remove finalizer from"
                },
                parent: ObjectKey::of(parent).to_string(),
                source,
            })
    }

    /// Claims children: owned ones that match, orphans that match (adopted), and releases owned
    /// ones that stopped matching.
    async fn claim(
        &self,
        parent: &DynamicObject,
        selector: &Selector,
        deleting: bool,
    ) -> Result<Vec<Vec<Arc<DynamicObject>>>, SyncError> {
        let uid = parent.uid().unwrap_or_default();
        let ns = if self.parent.namespaced {
            parent.namespace()
        } else {
            None
        };
        let owner = owner_reference(parent, &self.parent.ar);
        let mut can_adopt: Option<bool> = None;
        let mut claimed = Vec::with_capacity(self.children.len());
        for kind in &self.children {
            let mut mine = Vec::new();
            for child in kind.informer.owned_by(&uid) {
                if ns.is_some() && child.namespace() != ns {
                    continue;
                }
                if selector.matches(&labels_of(&child)) {
                    mine.push(child);
                } else if !deleting {
                    self.writer.release(&kind.ty, &child, &uid).await?;
                }
            }
            if !deleting {
                for orphan in kind.informer.orphans(ns.as_deref()) {
                    if orphan.metadata.deletion_timestamp.is_some()
                        || !selector.matches(&labels_of(&orphan))
                    {
                        continue;
                    }
                    if can_adopt.is_none() {
                        can_adopt = Some(self.can_adopt(parent).await?);
                    }
                    if can_adopt == Some(true) {
                        let adopted = self.writer.adopt(&kind.ty, &orphan, &owner).await?;
                        mine.push(Arc::new(adopted));
                    }
                }
            }
            claimed.push(mine);
        }
        Ok(claimed)
    }

    /// A live read: adopt only for a parent that still exists, is the same object, and is not
    /// being deleted.
    async fn can_adopt(&self, parent: &DynamicObject) -> Result<bool, SyncError> {
        let live = self
            .parent_api(parent.namespace().as_deref())
            .get_opt(&parent.name_any())
            .await
            .map_err(|source| SyncError::Parent {
                action: "read",
                parent: ObjectKey::of(parent).to_string(),
                source,
            })?;
        Ok(
            live.is_some_and(|l| {
                l.uid() == parent.uid() && l.metadata.deletion_timestamp.is_none()
            }),
        )
    }

    fn observed_map(&self, claimed: &[Vec<Arc<DynamicObject>>]) -> ObjectMap {
        let version = self.sync_hook.version;
        let mut map = ObjectMap::new();
        for (kind, objs) in self.children.iter().zip(claimed) {
            let entry = map
                .entry(type_key(&kind.ty.ar.kind, &kind.api_version))
                .or_default();
            for obj in objs {
                let key = object_key(
                    version,
                    self.parent.namespaced,
                    obj.namespace().as_deref(),
                    &obj.name_any(),
                );
                entry.insert(
                    key,
                    serde_json::to_value(obj.as_ref()).unwrap_or(Value::Null),
                );
            }
        }
        map
    }

    /// Syncs one parent. Returns when to sync it again, if the hook asked.
    pub async fn sync(&self, key: &ObjectKey) -> Result<Option<Duration>, SyncError> {
        let Some(mut parent) = self.parent_informer.get(key).map(|p| (*p).clone()) else {
            return Ok(None);
        };
        let matches = self
            .parent_selector
            .as_ref()
            .is_none_or(|s| s.matches(&labels_of(&parent)));
        let has_finalizer = parent.finalizers().contains(&self.finalizer);
        if !matches && !has_finalizer {
            return Ok(None);
        }
        let deleting = parent.metadata.deletion_timestamp.is_some();

        // Finalizer first: add it before anything else happens, strip it if finalize went away.
        if self.finalize_hook.is_some() && !has_finalizer && !deleting && matches {
            parent = self.set_finalizer(&parent, true).await?;
        } else if self.finalize_hook.is_none() && has_finalizer {
            self.set_finalizer(&parent, false).await?;
            return Ok(None);
        }
        let has_finalizer = parent.finalizers().contains(&self.finalizer);

        let selector = self
            .selector_for(&parent)
            .map_err(|message| SyncError::Selector {
                parent: key.to_string(),
                message,
            })?;
        let claimed = self.claim(&parent, &selector, deleting).await?;

        let finalizing = self.finalize_hook.is_some() && (deleting || !matches);
        let hook = if finalizing {
            self.finalize_hook.as_ref().unwrap_or(&self.sync_hook)
        } else {
            &self.sync_hook
        };
        let request = CompositeRequest {
            controller: self.controller_json.clone(),
            parent: serde_json::to_value(&parent).unwrap_or(Value::Null),
            children: self.observed_map(&claimed),
            related: match &self.related {
                Some(related) => related.objects(&parent, hook.version).await?,
                None => ObjectMap::new(),
            },
            finalizing,
        };
        let request = serde_json::to_value(&request).unwrap_or(Value::Null);
        let response = hook.hook.call(&request).await?;
        let response: CompositeResponse = decode(response, hook.decode, COMPOSITE_RESPONSE_FIELDS)?;

        let mut desired_children = response.children;
        if self.generate_selector {
            let uid = parent.uid().unwrap_or_default();
            for child in &mut desired_children {
                if let Some(meta) = child.get_mut("metadata").and_then(Value::as_object_mut) {
                    let labels = meta.entry("labels").or_insert_with(|| json!({}));
                    if let Some(labels) = labels.as_object_mut() {
                        labels
                            .entry(CONTROLLER_UID_LABEL)
                            .or_insert_with(|| Value::String(uid.clone()));
                    }
                }
            }
        }
        let ns = if self.parent.namespaced {
            parent.namespace()
        } else {
            None
        };
        let desired = validate_children(
            desired_children,
            &ChildRules {
                parent_namespace: ns.as_deref(),
                types: &self.child_types,
                selector: Some(&selector),
                field: "children",
            },
        )?;

        if finalizing && response.finalized && has_finalizer {
            parent = self.set_finalizer(&parent, false).await?;
        }

        let gc_running = parent
            .finalizers()
            .iter()
            .any(|f| GC_FINALIZERS.contains(&f.as_str()));
        let should_finalize = self.finalize_hook.is_some()
            && parent.finalizers().contains(&self.finalizer)
            && !gc_running;
        let manage_result = if !deleting || should_finalize {
            if !finalizing {
                self.warn_if_deleting_all(key, &claimed, &desired).await;
            }
            self.manage(&parent, &claimed, &desired).await
        } else {
            Ok(())
        };

        self.write_status(&parent, response.status.as_ref()).await?;
        manage_result?;
        let resync = (response.resync_after_seconds > 0.0)
            .then(|| Duration::from_secs_f64(response.resync_after_seconds.min(1e9)));
        Ok(resync)
    }

    /// A response without children deletes every child (Metacontroller's meaning, kept), which
    /// is also what a hook that lost its `children` key by mistake does: say so loudly.
    async fn warn_if_deleting_all(
        &self,
        key: &ObjectKey,
        claimed: &[Vec<Arc<DynamicObject>>],
        desired: &[crate::hooks::protocol::DesiredChild],
    ) {
        let existing = claimed
            .iter()
            .flatten()
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .count();
        if existing == 0 || !desired.is_empty() {
            return;
        }
        let note = format!(
            "the sync hook returned no children, so all {existing} children are deleted (a response without `children` means none)"
        );
        tracing::warn!(controller = %self.name, parent = %key, "{note}");
        self.warn(key, "DeletingAllChildren", &note).await;
    }

    async fn manage(
        &self,
        parent: &DynamicObject,
        claimed: &[Vec<Arc<DynamicObject>>],
        desired: &[crate::hooks::protocol::DesiredChild],
    ) -> Result<(), SyncError> {
        let owner = owner_reference(parent, &self.parent.ar);
        let wanted: HashSet<(usize, Option<String>, String)> = desired
            .iter()
            .map(|d| (d.type_index, d.namespace.clone(), d.name.clone()))
            .collect();
        let mut errors = Vec::new();
        // Deletes first (Metacontroller order), then creates and updates.
        for (index, (kind, observed)) in self.children.iter().zip(claimed).enumerate() {
            for child in observed {
                if child.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let id = (index, child.namespace(), child.name_any());
                if !wanted.contains(&id)
                    && let Err(e) = self.writer.delete(&kind.ty, child).await
                {
                    errors.push(e.to_string());
                }
            }
        }
        for d in desired {
            let kind = &self.children[d.type_index];
            let observed = claimed[d.type_index]
                .iter()
                .find(|o| o.name_any() == d.name && o.namespace() == d.namespace);
            // A same-named object we do not control must not be overwritten.
            if observed.is_none() {
                let existing = kind
                    .informer
                    .get(&ObjectKey::new(d.namespace.as_deref(), &d.name));
                if existing.is_some_and(|e| controller_uid(&e).is_some_and(|u| u != owner.uid)) {
                    errors.push(
                        ChildError::OwnedByOther {
                            kind: kind.ty.ar.kind.clone(),
                            name: d.name.clone(),
                        }
                        .to_string(),
                    );
                    continue;
                }
            }
            match self
                .writer
                .apply(&kind.ty, kind.method, observed, d, &owner)
                .await
            {
                Ok(Outcome::Deleted) => {
                    // Recreate: the next sync (after the delete event) creates it again.
                    tracing::debug!(controller = %self.name, child = %d.name, "deleted for recreate");
                }
                Ok(_) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SyncError::Children(errors.join("; ")))
        }
    }

    async fn write_status(
        &self,
        parent: &DynamicObject,
        hook_status: Option<&Value>,
    ) -> Result<(), SyncError> {
        let desired = status::desired_status(hook_status, parent.metadata.generation);
        let current = parent
            .data
            .get("status")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let uid = parent.uid().unwrap_or_default();
        let rv = parent.resource_version().unwrap_or_default();
        let already = self
            .written_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&uid)
            .is_some_and(|(s, r)| *s == desired && *r == rv);
        if already {
            return Ok(());
        }
        let Some(patch) = status::replace_patch(&current, &desired) else {
            return Ok(());
        };
        let result = self
            .parent_api(parent.namespace().as_deref())
            .patch_status(
                &parent.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": patch })),
            )
            .await;
        match result {
            Ok(written) => {
                self.written_status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(
                        uid,
                        (desired, written.resource_version().unwrap_or_default()),
                    );
                Ok(())
            }
            // Gone or changed under us: the next event syncs again.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(source) => Err(SyncError::Parent {
                action: "write status of",
                parent: ObjectKey::of(parent).to_string(),
                source,
            }),
        }
    }
}

fn api_group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}
