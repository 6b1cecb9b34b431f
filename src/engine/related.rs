//! The customize hook and related objects: a controller asks, per parent, for other objects to be
//! sent to its sync hook (Metacontroller reference §2.5). Answers are cached per (parent UID,
//! generation); related types get shared informers, and any change to them resyncs the parents.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::DynamicObject;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use super::Shared;
use super::discovery::Resolved;
use super::hooks::BuiltHook;
use super::informer::Informer;
use crate::hooks::HookError;
use crate::hooks::protocol::{
    CUSTOMIZE_RESPONSE_FIELDS, CustomizeRequest, CustomizeResponse, ObjectMap, ProtocolVersion,
    RelatedResourceRule, ResponseError, decode, object_key, type_key,
};
use crate::selector::{LabelSelector, Selector};

/// Metacontroller keeps customize answers for 20 minutes.
const CACHE_TTL: Duration = Duration::from_secs(20 * 60);
/// How long a new related informer may take to list before the sync fails (and is retried).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RelatedError {
    #[error("customize hook failed: {0}")]
    Hook(#[from] HookError),
    #[error("invalid customize response: {0}")]
    Response(#[from] ResponseError),
    #[error("relatedResources[{index}]: {problem}")]
    Rule { index: usize, problem: String },
    #[error("relatedResources[{index}]: {source}")]
    Discovery {
        index: usize,
        #[source]
        source: super::discovery::DiscoveryError,
    },
    #[error("relatedResources[{index}]: {resource} not listed within {READY_TIMEOUT:?}")]
    NotReady { index: usize, resource: String },
}

/// Enqueues every parent of a controller.
pub type Resync = Arc<dyn Fn() + Send + Sync>;

/// When a customize answer was received, and the rules it gave.
type CachedAnswer = (Instant, Vec<RelatedResourceRule>);

struct Watched {
    ty: Resolved,
    informer: Arc<Informer>,
}

pub struct Related {
    hook: BuiltHook,
    controller_json: Value,
    shared: Shared,
    /// Enqueues every parent of the controller: a related object changed.
    resync: Resync,
    answers: Mutex<HashMap<(String, i64), CachedAnswer>>,
    watched: tokio::sync::Mutex<HashMap<String, Arc<Watched>>>,
    /// The Namespace informer, once a `namespaceSelector` rule needed it.
    namespaces: tokio::sync::Mutex<Option<Arc<Informer>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Related {
    fn drop(&mut self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

impl Related {
    pub fn new(hook: BuiltHook, controller_json: Value, shared: Shared, resync: Resync) -> Self {
        Self {
            hook,
            controller_json,
            shared,
            resync,
            answers: Mutex::default(),
            watched: tokio::sync::Mutex::default(),
            namespaces: tokio::sync::Mutex::default(),
            tasks: Mutex::default(),
        }
    }

    /// The related objects for `parent`, as a sync (or finalize) hook of `version` sees them.
    ///
    /// Which objects a rule selects follows the *customize* hook's version (v1 keeps a
    /// namespaced parent to its own namespace); how the map is keyed, and whether objects outside
    /// a namespaced parent's namespace are dropped, follows the *sync* hook's version, as in
    /// Metacontroller, which selects into a uniform map and converts it when it builds the sync
    /// request.
    pub async fn objects(
        &self,
        parent: &DynamicObject,
        parent_namespaced: bool,
        version: ProtocolVersion,
    ) -> Result<ObjectMap, RelatedError> {
        let rules = self.rules(parent).await?;
        let parent_ns = if parent_namespaced {
            parent.namespace()
        } else {
            None
        };
        let mut map = ObjectMap::new();
        for (index, rule) in rules.iter().enumerate() {
            let watched = self.watch(index, rule).await?;
            let namespaces = match rule.namespace_selector {
                Some(_) => self.namespaces(index).await?.list(None),
                None => Vec::new(),
            };
            let scope = Scope {
                customize: self.hook.version,
                parent_ns: parent_ns.as_deref(),
                related_namespaced: watched.ty.namespaced,
            };
            let selected = select(
                index,
                rule,
                &scope,
                &watched.informer.list(None),
                &namespaces,
            )?;
            insert_keyed(
                &mut map,
                &type_key(&watched.ty.ar.kind, &rule.api_version),
                version,
                parent_ns.as_deref(),
                &selected,
            );
        }
        Ok(map)
    }

    async fn rules(
        &self,
        parent: &DynamicObject,
    ) -> Result<Vec<RelatedResourceRule>, RelatedError> {
        let key = (
            parent.uid().unwrap_or_default(),
            parent.metadata.generation.unwrap_or_default(),
        );
        {
            let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
            answers.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if let Some((_, rules)) = answers.get(&key) {
                return Ok(rules.clone());
            }
        }
        let request = CustomizeRequest {
            controller: self.controller_json.clone(),
            parent: serde_json::to_value(parent).unwrap_or(Value::Null),
        };
        let response = self
            .hook
            .call(&serde_json::to_value(&request).unwrap_or(Value::Null))
            .await?;
        let response: CustomizeResponse =
            decode(response, self.hook.decode, CUSTOMIZE_RESPONSE_FIELDS)?;
        self.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (Instant::now(), response.related_resources.clone()));
        Ok(response.related_resources)
    }

    async fn watch(
        &self,
        index: usize,
        rule: &RelatedResourceRule,
    ) -> Result<Arc<Watched>, RelatedError> {
        self.watch_resource(index, &rule.api_version, &rule.resource)
            .await
    }

    async fn watch_resource(
        &self,
        index: usize,
        api_version: &str,
        resource: &str,
    ) -> Result<Arc<Watched>, RelatedError> {
        let id = format!("{api_version}/{resource}");
        let mut watched = self.watched.lock().await;
        if let Some(w) = watched.get(&id) {
            return Ok(w.clone());
        }
        let ty = self
            .shared
            .discovery
            .resolve(api_version, resource)
            .await
            .map_err(|source| RelatedError::Discovery { index, source })?;
        let informer = self.shared.informers.informer(&ty.ar);
        self.follow(&informer, index, &id).await?;
        let w = Arc::new(Watched { ty, informer });
        watched.insert(id, w.clone());
        Ok(w)
    }

    /// Resyncs the parents on every change in `informer` and waits until it has listed;
    /// `resource` (`apiVersion/resource`) names it if it does not list in time.
    async fn follow(
        &self,
        informer: &Informer,
        index: usize,
        resource: &str,
    ) -> Result<(), RelatedError> {
        self.resync_on_changes(informer);
        tokio::time::timeout(READY_TIMEOUT, informer.wait_ready())
            .await
            .map_err(|_| RelatedError::NotReady {
                index,
                resource: resource.to_owned(),
            })
    }

    /// Resyncs every parent of this controller when anything in `informer` changes.
    fn resync_on_changes(&self, informer: &Informer) {
        let mut rx = informer.subscribe();
        let resync = self.resync.clone();
        let task = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(_) | Err(RecvError::Lagged(_)) => resync(),
                    Err(RecvError::Closed) => return,
                }
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
    }

    /// The shared Namespace informer, listed, for `namespaceSelector` rules. Held for the life of
    /// this controller (the factory forgets unused informers); a namespace change resyncs the
    /// parents, so a newly labelled namespace brings its objects in.
    async fn namespaces(&self, index: usize) -> Result<Arc<Informer>, RelatedError> {
        let ar = kube::api::ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "Namespace".into(),
            plural: "namespaces".into(),
        };
        let mut slot = self.namespaces.lock().await;
        if let Some(informer) = slot.as_ref() {
            return Ok(informer.clone());
        }
        let informer = self.shared.informers.informer(&ar);
        self.follow(&informer, index, "v1/namespaces").await?;
        *slot = Some(informer.clone());
        Ok(informer)
    }
}

/// What limits the objects a rule may select.
struct Scope<'a> {
    /// The customize hook's version: under v1 a namespaced parent reads only its own namespace.
    customize: ProtocolVersion,
    /// The parent's namespace; `None` for a cluster-scoped parent.
    parent_ns: Option<&'a str>,
    /// Whether the rule's resource is namespaced.
    related_namespaced: bool,
}

/// The objects of `objects` (every cached object of the rule's type) that rule number `index`
/// selects: Metacontroller's four selection types (`namespaceSelector`; `labelSelector` with
/// `namespace`; `namespace` and/or `names`; `labelSelector` alone or nothing), with the customize
/// hook v1 restrictions for namespaced parents. `namespaces` are the cluster's namespaces, for a
/// `namespaceSelector`.
fn select(
    index: usize,
    rule: &RelatedResourceRule,
    scope: &Scope<'_>,
    objects: &[Arc<DynamicObject>],
    namespaces: &[Arc<DynamicObject>],
) -> Result<Vec<Arc<DynamicObject>>, RelatedError> {
    let bad = |problem: String| RelatedError::Rule { index, problem };
    let selector = |field: &str, sel: &Option<LabelSelector>| {
        sel.as_ref()
            .map(|s| Selector::from_label_selector(s).map_err(|e| bad(format!("{field}: {e}"))))
            .transpose()
    };
    let namespace = rule.namespace.as_deref().filter(|ns| !ns.is_empty());
    if !rule.names.is_empty()
        && (rule.label_selector.is_some() || rule.namespace_selector.is_some())
    {
        return Err(bad(
            "names cannot be combined with labelSelector or namespaceSelector".into(),
        ));
    }
    if namespace.is_some() && rule.namespace_selector.is_some() {
        return Err(bad(
            "namespace cannot be combined with namespaceSelector".into()
        ));
    }
    let labels = selector("labelSelector", &rule.label_selector)?;
    let labelled = |o: &DynamicObject| {
        labels
            .as_ref()
            .is_none_or(|s| s.matches(&o.metadata.labels.clone().unwrap_or_default()))
    };
    let in_namespace = |o: &DynamicObject, ns: Option<&str>| {
        ns.is_none_or(|ns| o.namespace().as_deref() == Some(ns))
    };
    // Customize v1 keeps a namespaced parent to its own namespace (for namespaced types).
    let v1_parent_ns = match (scope.customize, scope.related_namespaced) {
        (ProtocolVersion::V1, true) => scope.parent_ns,
        _ => None,
    };
    let own_namespace_only = |ns: &str| match v1_parent_ns {
        Some(parent) if parent != ns => Err(bad(format!(
            "namespace {ns:?} is not the parent's ({parent:?}); a customize hook of version v1 reads only the parent's namespace (use version v2)"
        ))),
        _ => Ok(()),
    };
    let chosen: Vec<Arc<DynamicObject>> = if let Some(ns_selector) =
        selector("namespaceSelector", &rule.namespace_selector)?
    {
        if v1_parent_ns.is_some() {
            return Err(bad(
                "namespaceSelector needs a customize hook of version v2 for a namespaced parent"
                    .into(),
            ));
        }
        if !scope.related_namespaced {
            return Err(bad(format!(
                "namespaceSelector needs a namespaced resource, and {} is cluster-scoped",
                rule.resource
            )));
        }
        let selected: HashSet<String> = namespaces
            .iter()
            .filter(|ns| ns_selector.matches(&ns.metadata.labels.clone().unwrap_or_default()))
            .map(|ns| ns.name_any())
            .collect();
        objects
            .iter()
            .filter(|o| o.namespace().is_some_and(|ns| selected.contains(&ns)) && labelled(o))
            .cloned()
            .collect()
    } else if let (Some(_), Some(ns)) = (&labels, namespace) {
        own_namespace_only(ns)?;
        let ns = Some(ns).filter(|_| scope.related_namespaced);
        objects
            .iter()
            .filter(|o| in_namespace(o, ns) && labelled(o))
            .cloned()
            .collect()
    } else if namespace.is_some() || !rule.names.is_empty() {
        if let Some(ns) = namespace {
            own_namespace_only(ns)?;
        }
        let ns = namespace.filter(|_| scope.related_namespaced);
        objects
            .iter()
            .filter(|o| {
                in_namespace(o, ns) && (rule.names.is_empty() || rule.names.contains(&o.name_any()))
            })
            .cloned()
            .collect()
    } else {
        objects
            .iter()
            .filter(|o| in_namespace(o, v1_parent_ns) && labelled(o))
            .cloned()
            .collect()
    };
    Ok(chosen)
}

/// Adds `objects` to `map` under `type_key` (present even when empty), keyed for a sync hook of
/// `version` ([`object_key`]). For a v1 hook and a namespaced parent (`parent_ns`), objects
/// outside the parent's namespace, cluster-scoped ones included, are left out: Metacontroller's
/// conversion to the v1 ("relative") map drops them.
fn insert_keyed(
    map: &mut ObjectMap,
    type_key: &str,
    version: ProtocolVersion,
    parent_ns: Option<&str>,
    objects: &[Arc<DynamicObject>],
) {
    let entry = map.entry(type_key.to_owned()).or_default();
    for obj in objects {
        let ns = obj.namespace();
        if version == ProtocolVersion::V1 && parent_ns.is_some() && ns.as_deref() != parent_ns {
            continue;
        }
        let key = object_key(version, parent_ns.is_some(), ns.as_deref(), &obj.name_any());
        entry.insert(
            key,
            serde_json::to_value(obj.as_ref()).unwrap_or(Value::Null),
        );
    }
}

#[cfg(test)]
mod tests;
