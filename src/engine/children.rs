//! Children: claiming (adopt orphans that match, release owned ones that stop matching) and
//! managing them (delete the undesired, create the missing, update per update strategy), with
//! server-side apply or Metacontroller's dynamic apply. A child whose desired state is already
//! there costs no write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions,
    PropagationPolicy,
};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use super::apply;
use super::discovery::Resolved;
use crate::api::ChildUpdateMethod;
use crate::hooks::protocol::DesiredChild;

/// How children are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyStrategy {
    /// Server-side apply with a field manager (the default).
    ServerSide { field_manager: String },
    /// Metacontroller's three-way merge with its last-applied annotation.
    Dynamic,
}

#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("{action} {kind} {name}: {source}")]
    Api {
        action: &'static str,
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: apply::ApplyError,
    },
    #[error("{kind} {name}: not a valid object: {reason}")]
    Encode {
        kind: String,
        name: String,
        reason: String,
    },
    #[error(
        "{kind} {name}: update strategy {method:?} is not supported yet (use OnDelete, Recreate or InPlace)"
    )]
    Unsupported {
        kind: String,
        name: String,
        method: ChildUpdateMethod,
    },
    #[error("{kind} {name} exists but is controlled by another owner; refusing to take it over")]
    OwnedByOther { kind: String, name: String },
}

/// What happened to one child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Created,
    Updated,
    Deleted,
}

pub fn owner_reference(parent: &DynamicObject, parent_ar: &ApiResource) -> OwnerReference {
    OwnerReference {
        api_version: parent_ar.api_version.clone(),
        kind: parent_ar.kind.clone(),
        name: parent.name_any(),
        uid: parent.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn is_conflict_or_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
}

fn api_for(client: &Client, ty: &Resolved, namespace: Option<&str>) -> Api<DynamicObject> {
    match (ty.namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ty.ar),
        _ => Api::all_with(client.clone(), &ty.ar),
    }
}

/// Writes children for one controller. Remembers what it applied (per child UID) so that a
/// child the API server normalises differently from the desired text still costs no write.
pub struct ChildWriter {
    client: Client,
    strategy: ApplyStrategy,
    applied: Mutex<HashMap<String, (u64, String)>>,
}

impl ChildWriter {
    pub fn new(client: Client, strategy: ApplyStrategy) -> Self {
        Self {
            client,
            strategy,
            applied: Mutex::default(),
        }
    }

    fn remember(&self, obj: &DynamicObject, hash: u64) {
        if let (Some(uid), Some(rv)) = (obj.uid(), obj.resource_version()) {
            self.applied
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(uid, (hash, rv));
        }
    }

    fn applied_already(&self, observed: &DynamicObject, hash: u64) -> bool {
        let (Some(uid), Some(rv)) = (observed.uid(), observed.resource_version()) else {
            return false;
        };
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&uid)
            .is_some_and(|(h, r)| *h == hash && *r == rv)
    }

    /// Sets or replaces this parent's controller reference on an orphan, with the observed
    /// resourceVersion as precondition.
    pub async fn adopt(
        &self,
        ty: &Resolved,
        child: &DynamicObject,
        owner: &OwnerReference,
    ) -> Result<DynamicObject, ChildError> {
        let mut refs: Vec<OwnerReference> = child
            .owner_references()
            .iter()
            .filter(|r| r.uid != owner.uid)
            .cloned()
            .collect();
        refs.push(owner.clone());
        self.patch_owners(ty, child, refs, "adopt").await
    }

    /// Removes this parent's reference from a child that no longer matches its selector.
    pub async fn release(
        &self,
        ty: &Resolved,
        child: &DynamicObject,
        owner_uid: &str,
    ) -> Result<(), ChildError> {
        let refs: Vec<OwnerReference> = child
            .owner_references()
            .iter()
            .filter(|r| r.uid != owner_uid)
            .cloned()
            .collect();
        match self.patch_owners(ty, child, refs, "release").await {
            Err(ChildError::Api { source, .. }) if is_not_found(&source) => Ok(()),
            other => other.map(drop),
        }
    }

    async fn patch_owners(
        &self,
        ty: &Resolved,
        child: &DynamicObject,
        refs: Vec<OwnerReference>,
        action: &'static str,
    ) -> Result<DynamicObject, ChildError> {
        let api = api_for(&self.client, ty, child.namespace().as_deref());
        let patch = json!({"metadata": {
            "ownerReferences": refs,
            "resourceVersion": child.resource_version(),
        }});
        api.patch(
            &child.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|source| ChildError::Api {
            action,
            kind: ty.ar.kind.clone(),
            name: child.name_any(),
            source,
        })
    }

    /// Deletes a child, only if it is still the object we observed (UID precondition), letting
    /// the garbage collector take its own dependents in the background.
    pub async fn delete(
        &self,
        ty: &Resolved,
        child: &DynamicObject,
    ) -> Result<Outcome, ChildError> {
        let api = api_for(&self.client, ty, child.namespace().as_deref());
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions {
                uid: child.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&child.name_any(), &params).await {
            Ok(_) => Ok(Outcome::Deleted),
            Err(e) if is_conflict_or_gone(&e) => Ok(Outcome::Unchanged),
            Err(source) => Err(ChildError::Api {
                action: "delete",
                kind: ty.ar.kind.clone(),
                name: child.name_any(),
                source,
            }),
        }
    }

    /// Creates or updates one desired child.
    pub async fn apply(
        &self,
        ty: &Resolved,
        method: ChildUpdateMethod,
        observed: Option<&Arc<DynamicObject>>,
        child: &DesiredChild,
        owner: &OwnerReference,
    ) -> Result<Outcome, ChildError> {
        let (desired, name, namespace) = (
            &child.object,
            child.name.as_str(),
            child.namespace.as_deref(),
        );
        let kind = ty.ar.kind.clone();
        if observed.is_some_and(|obs| obs.metadata.deletion_timestamp.is_some()) {
            return Ok(Outcome::Unchanged);
        }
        if method.is_rolling() {
            return Err(ChildError::Unsupported {
                kind,
                name: name.to_owned(),
                method,
            });
        }
        let api = api_for(&self.client, ty, namespace);
        let api_err = |action: &'static str| {
            let kind = kind.clone();
            move |source| ChildError::Api {
                action,
                kind,
                name: name.to_owned(),
                source,
            }
        };
        let mut desired = desired.clone();
        if let Some(meta) = desired.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("ownerReferences".into(), json!([owner]));
        }
        match &self.strategy {
            ApplyStrategy::ServerSide { field_manager } => {
                let desired = apply::sanitize_for_ssa(&desired);
                let hash = apply::content_hash(&desired);
                if let Some(obs) = observed {
                    // Cheapest checks first: serialising the observed child is the costly one.
                    if method == ChildUpdateMethod::OnDelete
                        || self.applied_already(obs, hash)
                        || apply::is_subset(
                            &serde_json::to_value(obs.as_ref()).unwrap_or(Value::Null),
                            &desired,
                        )
                    {
                        return Ok(Outcome::Unchanged);
                    }
                    if method == ChildUpdateMethod::Recreate {
                        return self.delete(ty, obs).await;
                    }
                }
                let params = PatchParams::apply(field_manager).force();
                let written = api
                    .patch(name, &params, &Patch::Apply(&desired))
                    .await
                    .map_err(api_err("apply"))?;
                self.remember(&written, hash);
                Ok(if observed.is_some() {
                    Outcome::Updated
                } else {
                    Outcome::Created
                })
            }
            ApplyStrategy::Dynamic => match observed {
                None => {
                    let body =
                        apply::with_last_applied(&desired).map_err(|source| ChildError::Apply {
                            kind: kind.clone(),
                            name: name.to_owned(),
                            source,
                        })?;
                    let obj: DynamicObject =
                        serde_json::from_value(body).map_err(|e| ChildError::Encode {
                            kind: kind.clone(),
                            name: name.to_owned(),
                            reason: e.to_string(),
                        })?;
                    match api.create(&PostParams::default(), &obj).await {
                        Ok(_) => Ok(Outcome::Created),
                        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Outcome::Unchanged),
                        Err(source) => Err(api_err("create")(source)),
                    }
                }
                Some(obs) => {
                    let obs_json = serde_json::to_value(obs.as_ref()).unwrap_or(Value::Null);
                    // Metacontroller merges without the owner reference: it is already there.
                    if let Some(meta) = desired.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.remove("ownerReferences");
                    }
                    let merged = apply::apply_update(&obs_json, &desired).map_err(|source| {
                        ChildError::Apply {
                            kind: kind.clone(),
                            name: name.to_owned(),
                            source,
                        }
                    })?;
                    if merged == obs_json || method == ChildUpdateMethod::OnDelete {
                        return Ok(Outcome::Unchanged);
                    }
                    if method == ChildUpdateMethod::Recreate {
                        return self.delete(ty, obs).await;
                    }
                    let obj: DynamicObject =
                        serde_json::from_value(merged).map_err(|e| ChildError::Encode {
                            kind: kind.clone(),
                            name: name.to_owned(),
                            reason: e.to_string(),
                        })?;
                    match api.replace(name, &PostParams::default(), &obj).await {
                        Ok(_) => Ok(Outcome::Updated),
                        Err(e) if is_conflict_or_gone(&e) => Ok(Outcome::Unchanged),
                        Err(source) => Err(api_err("update")(source)),
                    }
                }
            },
        }
    }
}
