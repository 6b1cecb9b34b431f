//! The customize hook and related objects: a controller asks, per parent, for other objects to be
//! sent to its sync hook (Metacontroller reference §2.5). Answers are cached per (parent UID,
//! generation); related types get shared informers, and any change to them resyncs the parents.

use std::collections::{BTreeMap, HashMap};
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
use super::informer::{Informer, ObjectKey};
use super::queue::WorkQueue;
use crate::hooks::HookError;
use crate::hooks::protocol::{
    CUSTOMIZE_RESPONSE_FIELDS, CustomizeRequest, CustomizeResponse, ObjectMap, ProtocolVersion,
    RelatedResourceRule, ResponseError, decode, object_key, type_key,
};
use crate::selector::Selector;

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
    parent_namespaced: bool,
    /// Parents to resync when a related object changes.
    parents: Arc<Informer>,
    queue: WorkQueue<ObjectKey>,
    answers: Mutex<HashMap<(String, i64), CachedAnswer>>,
    watched: tokio::sync::Mutex<HashMap<String, Arc<Watched>>>,
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
    pub fn new(
        hook: BuiltHook,
        controller_json: Value,
        shared: Shared,
        parent_namespaced: bool,
        parents: Arc<Informer>,
        queue: WorkQueue<ObjectKey>,
    ) -> Self {
        Self {
            hook,
            controller_json,
            shared,
            parent_namespaced,
            parents,
            queue,
            answers: Mutex::default(),
            watched: tokio::sync::Mutex::default(),
            tasks: Mutex::default(),
        }
    }

    /// The related objects for `parent`, keyed like children, for a sync hook of `version`.
    pub async fn objects(
        &self,
        parent: &DynamicObject,
        version: ProtocolVersion,
    ) -> Result<ObjectMap, RelatedError> {
        let rules = self.rules(parent).await?;
        let parent_ns = parent.namespace();
        let mut map = ObjectMap::new();
        for (index, rule) in rules.iter().enumerate() {
            let watched = self.watch(index, rule).await?;
            let entry = map
                .entry(type_key(&watched.ty.ar.kind, &rule.api_version))
                .or_default();
            for obj in self.select(index, rule, &watched, parent_ns.as_deref(), version)? {
                let key = object_key(
                    version,
                    self.parent_namespaced,
                    obj.namespace().as_deref(),
                    &obj.name_any(),
                );
                entry.insert(
                    key,
                    serde_json::to_value(obj.as_ref()).unwrap_or(Value::Null),
                );
            }
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
        let mut rx = informer.subscribe();
        let (parents, queue) = (self.parents.clone(), self.queue.clone());
        let task = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        for p in parents.list(None) {
                            queue.add(ObjectKey::of(&p));
                        }
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
        if tokio::time::timeout(READY_TIMEOUT, informer.wait_ready())
            .await
            .is_err()
        {
            return Err(RelatedError::NotReady {
                index,
                resource: id,
            });
        }
        let w = Arc::new(Watched { ty, informer });
        watched.insert(id, w.clone());
        Ok(w)
    }

    /// Metacontroller's four selection types, with v1's restrictions for namespaced parents.
    fn select(
        &self,
        index: usize,
        rule: &RelatedResourceRule,
        watched: &Watched,
        parent_ns: Option<&str>,
        version: ProtocolVersion,
    ) -> Result<Vec<Arc<DynamicObject>>, RelatedError> {
        let bad = |problem: &str| RelatedError::Rule {
            index,
            problem: problem.to_owned(),
        };
        let selector = |sel: &Option<crate::selector::LabelSelector>| -> Result<Option<Selector>, RelatedError> {
            sel.as_ref()
                .map(|s| Selector::from_label_selector(s).map_err(|e| bad(&e.to_string())))
                .transpose()
        };
        if !rule.names.is_empty()
            && (rule.label_selector.is_some() || rule.namespace_selector.is_some())
        {
            return Err(bad(
                "names cannot be combined with labelSelector or namespaceSelector",
            ));
        }
        if rule.namespace.is_some() && rule.namespace_selector.is_some() {
            return Err(bad("namespace cannot be combined with namespaceSelector"));
        }
        let v1_namespaced = version == ProtocolVersion::V1 && self.parent_namespaced;
        if v1_namespaced {
            if rule.namespace_selector.is_some() {
                return Err(bad(
                    "namespaceSelector needs hook version v2 for a namespaced parent",
                ));
            }
            if let (Some(ns), Some(parent)) = (rule.namespace.as_deref(), parent_ns)
                && !ns.is_empty()
                && ns != parent
            {
                return Err(bad(&format!(
                    "namespace {ns:?} is not the parent's ({parent:?}); use hook version v2 to read other namespaces"
                )));
            }
        }
        let labels = selector(&rule.label_selector)?;
        let matches = |o: &DynamicObject| {
            labels
                .as_ref()
                .is_none_or(|s| s.matches(&o.metadata.labels.clone().unwrap_or_default()))
        };
        let namespace = rule.namespace.as_deref().filter(|ns| !ns.is_empty());
        let mut objects: Vec<Arc<DynamicObject>> =
            if let Some(ns_sel) = selector(&rule.namespace_selector)? {
                // Namespaces are listed from the same shared informers (Metacontroller watches them too).
                let namespaces = self.namespaces_matching(&ns_sel);
                watched
                    .informer
                    .list(None)
                    .into_iter()
                    .filter(|o| o.namespace().is_some_and(|ns| namespaces.contains_key(&ns)))
                    .filter(|o| matches(o))
                    .collect()
            } else if labels.is_some() && namespace.is_some() {
                watched
                    .informer
                    .list(namespace)
                    .into_iter()
                    .filter(|o| matches(o))
                    .collect()
            } else if namespace.is_some() || !rule.names.is_empty() {
                watched
                    .informer
                    .list(namespace)
                    .into_iter()
                    .filter(|o| rule.names.is_empty() || rule.names.contains(&o.name_any()))
                    .collect()
            } else {
                let scope = if v1_namespaced { parent_ns } else { None };
                watched
                    .informer
                    .list(scope)
                    .into_iter()
                    .filter(|o| matches(o))
                    .collect()
            };
        if v1_namespaced {
            objects.retain(|o| o.namespace().as_deref() == parent_ns);
        }
        Ok(objects)
    }

    fn namespaces_matching(&self, selector: &Selector) -> BTreeMap<String, ()> {
        // A Namespace informer shared with everything else; it is created on first use and kept.
        let ar = kube::api::ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "Namespace".into(),
            plural: "namespaces".into(),
        };
        let informer = self.shared.informers.informer(&ar);
        informer
            .list(None)
            .into_iter()
            .filter(|ns| selector.matches(&ns.metadata.labels.clone().unwrap_or_default()))
            .map(|ns| (ns.name_any(), ()))
            .collect()
    }
}
