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
use tracing::Instrument;

use super::apply;
use super::controller::ChildKind;
use super::controller::plan::ChildPlan;
use super::discovery::Resolved;
use super::managed_fields;
use crate::api::ChildUpdateMethod;
use crate::hooks::protocol::DesiredChild;
use crate::telemetry::engine_metrics::ControllerInstruments;

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
        source: Box<kube::Error>,
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

/// The span of one child write, under its sync's span.
fn child_span(
    action: &'static str,
    kind: &str,
    namespace: Option<String>,
    name: &str,
) -> tracing::Span {
    tracing::info_span!(
        "child",
        action,
        kind = %kind,
        namespace = namespace.as_deref().unwrap_or_default(),
        name = %name,
    )
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

    /// The child was deleted: its applied hash can never match again.
    pub fn forget(&self, uid: &str) {
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
    }

    /// Carries out the children part of a plan: deletes first (Metacontroller's order), then
    /// creates and updates. Every child is tried; the errors are joined.
    pub async fn manage(
        &self,
        kinds: &[ChildKind],
        plan: ChildPlan,
        owner: &OwnerReference,
        instruments: &ControllerInstruments,
    ) -> Result<(), String> {
        let mut errors: Vec<String> = plan.refused.iter().map(ToString::to_string).collect();
        let count = |outcome: Outcome| match outcome {
            Outcome::Created => instruments.child_written("created"),
            Outcome::Updated => instruments.child_written("updated"),
            Outcome::Deleted => instruments.child_written("deleted"),
            Outcome::Unchanged => {}
        };
        for (index, child) in &plan.deletes {
            let span = child_span(
                "delete",
                &kinds[*index].ty.ar.kind,
                child.namespace(),
                &child.name_any(),
            );
            match self.delete(&kinds[*index].ty, child).instrument(span).await {
                Ok(outcome) => count(outcome),
                Err(e) => errors.push(e.to_string()),
            }
        }
        for write in &plan.writes {
            let kind = &kinds[write.desired.type_index];
            let span = child_span(
                "apply",
                &kind.ty.ar.kind,
                write.desired.namespace.clone(),
                &write.desired.name,
            );
            match self
                .apply(
                    &kind.ty,
                    kind.method,
                    write.observed.as_ref(),
                    &write.desired,
                    owner,
                )
                .instrument(span)
                .await
            {
                // Recreate: the next sync (after the delete event) creates it again.
                Ok(Outcome::Deleted) => {
                    count(Outcome::Deleted);
                    tracing::debug!(child = %write.desired.name, "deleted for recreate")
                }
                Ok(outcome) => count(outcome),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
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
            source: Box::new(source),
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
                source: Box::new(source),
            }),
        }
    }

    /// Creates or updates one desired child, or deletes it so that the next sync re-creates it
    /// (`Recreate`). A child that is already as desired costs no write.
    pub async fn apply(
        &self,
        ty: &Resolved,
        method: ChildUpdateMethod,
        observed: Option<&Arc<DynamicObject>>,
        child: &DesiredChild,
        owner: &OwnerReference,
    ) -> Result<Outcome, ChildError> {
        if observed.is_some_and(|obs| obs.metadata.deletion_timestamp.is_some()) {
            return Ok(Outcome::Unchanged);
        }
        let method = method.immediate();
        let target = Target {
            api: api_for(&self.client, ty, child.namespace.as_deref()),
            ty,
            name: &child.name,
        };
        match &self.strategy {
            ApplyStrategy::ServerSide { field_manager } => {
                self.server_side_apply(&target, field_manager, method, observed, child, owner)
                    .await
            }
            ApplyStrategy::Dynamic => {
                self.dynamic_apply(&target, method, observed, child, owner)
                    .await
            }
        }
    }

    async fn server_side_apply(
        &self,
        target: &Target<'_>,
        field_manager: &str,
        method: ChildUpdateMethod,
        observed: Option<&Arc<DynamicObject>>,
        child: &DesiredChild,
        owner: &OwnerReference,
    ) -> Result<Outcome, ChildError> {
        let desired = ssa_body(child, owner);
        let hash = apply::content_hash(&desired);
        if let Some(obs) = observed {
            // Cheapest checks first: serialising the observed child is the costly one.
            if method == ChildUpdateMethod::OnDelete || self.applied_already(obs, hash) {
                return Ok(Outcome::Unchanged);
            }
            let obs_json = target.json(obs)?;
            let previous = previous_managers(field_manager);
            let migration = managed_fields::migrated_entries(&obs_json, field_manager, &previous);
            if migration.is_none() && ssa_up_to_date(&obs_json, &desired, field_manager) {
                self.remember(obs, hash);
                return Ok(Outcome::Unchanged);
            }
            if method == ChildUpdateMethod::Recreate {
                let params = PatchParams::apply(field_manager).force().dry_run();
                let dry = target
                    .api
                    .patch(target.name, &params, &Patch::Apply(&desired))
                    .await
                    .map_err(target.err("dry-run apply (before Recreate)"))?;
                return self
                    .recreate_if_changed(target, obs, &obs_json, &dry, hash)
                    .await;
            }
            if let Some(entries) = migration {
                self.take_over_fields(target, obs, entries).await?;
            }
        }
        let params = PatchParams::apply(field_manager).force();
        let written = target
            .api
            .patch(target.name, &params, &Patch::Apply(&desired))
            .await
            .map_err(target.err("apply"))?;
        // Applied without having observed the child (its watch had not delivered it): if earlier
        // dynamic-apply writes still own fields, the next sync must take them over, so this
        // apply is not remembered as the last word.
        let unobserved_legacy = observed.is_none()
            && managed_fields::migrated_entries(
                &target.json(&written)?,
                field_manager,
                &previous_managers(field_manager),
            )
            .is_some();
        if !unobserved_legacy {
            self.remember(&written, hash);
        }
        Ok(if observed.is_some() {
            Outcome::Updated
        } else {
            Outcome::Created
        })
    }

    /// Moves the field ownership of earlier dynamic-apply writes (ours or Metacontroller's) into
    /// our server-side-apply entry, so that the next apply removes what the hook no longer
    /// returns, the last-applied annotation included.
    async fn take_over_fields(
        &self,
        target: &Target<'_>,
        obs: &DynamicObject,
        entries: Vec<Value>,
    ) -> Result<(), ChildError> {
        let patch = json!({"metadata": {
            "managedFields": entries,
            "resourceVersion": obs.resource_version(),
        }});
        tracing::info!(kind = %target.ty.ar.kind, child = %target.name, "taking over the fields of earlier dynamic-apply writes for server-side apply");
        target
            .api
            .patch(target.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(target.err("take over field ownership of"))?;
        Ok(())
    }

    async fn dynamic_apply(
        &self,
        target: &Target<'_>,
        method: ChildUpdateMethod,
        observed: Option<&Arc<DynamicObject>>,
        child: &DesiredChild,
        owner: &OwnerReference,
    ) -> Result<Outcome, ChildError> {
        // Metacontroller records the last-applied configuration before it claims ownership: the
        // owner reference is ours to keep, never a field the hook could drop.
        let desired = &child.object;
        let params = PostParams {
            field_manager: Some(DYNAMIC_FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let Some(obs) = observed else {
            let mut body = apply::with_last_applied(desired).map_err(target.apply_err())?;
            set_owner(&mut body, owner);
            let obj = target.decode(body)?;
            return match target.api.create(&params, &obj).await {
                Ok(_) => Ok(Outcome::Created),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Outcome::Unchanged),
                Err(source) => Err(target.err("create")(source)),
            };
        };
        let hash = apply::content_hash(desired);
        if method == ChildUpdateMethod::OnDelete || self.applied_already(obs, hash) {
            return Ok(Outcome::Unchanged);
        }
        let obs_json = target.json(obs)?;
        let merged = dynamic_merge(&obs_json, desired, owner).map_err(target.apply_err())?;
        if merged == obs_json {
            self.remember(obs, hash);
            return Ok(Outcome::Unchanged);
        }
        let obj = target.decode(merged)?;
        if method == ChildUpdateMethod::Recreate {
            let dry_params = PostParams {
                dry_run: true,
                ..params
            };
            let dry = target
                .api
                .replace(target.name, &dry_params, &obj)
                .await
                .map_err(target.err("dry-run update (before Recreate)"))?;
            return self
                .recreate_if_changed(target, obs, &obs_json, &dry, hash)
                .await;
        }
        match target.api.replace(target.name, &params, &obj).await {
            Ok(written) => {
                self.remember(&written, hash);
                Ok(Outcome::Updated)
            }
            Err(e) if is_conflict_or_gone(&e) => Ok(Outcome::Unchanged),
            Err(source) => Err(target.err("update")(source)),
        }
    }

    /// Whether writing `child` over `observed` would change nothing, decided as the write itself
    /// decides it (without a request): what a rolling update asks of a child before it counts as
    /// on the latest revision.
    pub fn up_to_date(
        &self,
        observed: &DynamicObject,
        child: &DesiredChild,
        owner: &OwnerReference,
    ) -> bool {
        let Ok(obs_json) = serde_json::to_value(observed) else {
            return false;
        };
        match &self.strategy {
            ApplyStrategy::ServerSide { field_manager } => {
                let desired = ssa_body(child, owner);
                self.applied_already(observed, apply::content_hash(&desired))
                    || (managed_fields::migrated_entries(
                        &obs_json,
                        field_manager,
                        &previous_managers(field_manager),
                    )
                    .is_none()
                        && ssa_up_to_date(&obs_json, &desired, field_manager))
            }
            ApplyStrategy::Dynamic => {
                self.applied_already(observed, apply::content_hash(&child.object))
                    || dynamic_merge(&obs_json, &child.object, owner)
                        .is_ok_and(|merged| merged == obs_json)
            }
        }
    }

    /// `Recreate`: deletes the child only when the write the dry run simulated would change it.
    /// A desired object that the API server normalises (a quantity `0.5` stored as `500m`)
    /// differs from the observed one as text but not once written; deleting it would loop.
    async fn recreate_if_changed(
        &self,
        target: &Target<'_>,
        obs: &DynamicObject,
        obs_json: &Value,
        dry_run: &DynamicObject,
        hash: u64,
    ) -> Result<Outcome, ChildError> {
        if dry_run.resource_version() != obs.resource_version() {
            // The informer's copy is behind the server: the difference may be another writer's
            // newer change (a scheduler's nodeName, a kubelet's status), not ours to undo by
            // deleting the child. The watch event that brings the newer version syncs again.
            tracing::debug!(kind = %target.ty.ar.kind, child = %target.name, "cached child is stale; Recreate decided on the next sync");
            return Ok(Outcome::Unchanged);
        }
        let would_be = target.json(dry_run)?;
        if same_content(obs_json, &would_be) {
            self.remember(obs, hash);
            return Ok(Outcome::Unchanged);
        }
        tracing::info!(kind = %target.ty.ar.kind, child = %target.name, "deleting child to re-create it with the new desired state (update strategy Recreate)");
        self.delete(target.ty, obs).await
    }
}

/// The body server-side apply sends for `child`: sanitised, with our owner reference.
fn ssa_body(child: &DesiredChild, owner: &OwnerReference) -> Value {
    let mut desired = child.object.clone();
    if let Some(meta) = desired.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("ownerReferences".into(), json!([owner]));
    }
    apply::sanitize_for_ssa(&desired)
}

/// What dynamic apply would write over `observed`: Metacontroller's three-way merge.
fn dynamic_merge(
    observed: &Value,
    desired: &Value,
    owner: &OwnerReference,
) -> Result<Value, apply::ApplyError> {
    // After server-side apply there is no annotation: the fields our apply owned stand in.
    let unrecorded = ssa_field_manager_entry(observed)
        .map(|fields| managed_fields::project(fields, observed))
        .unwrap_or_else(|| json!({}));
    let mut merged = apply::apply_update_or(observed, desired, &unrecorded)?;
    // An annotation written by an older kubelambda recorded the owner reference, so the merge
    // would remove it: it always stays.
    keep_owner(&mut merged, owner);
    Ok(merged)
}

/// The field manager of dynamic-apply writes (creates and updates).
pub const DYNAMIC_FIELD_MANAGER: &str = "kubelambda";

/// Field managers whose writes count as ours when taking a child over for server-side apply:
/// Metacontroller's (its client's default manager name) and kubelambda's dynamic apply.
fn previous_managers(field_manager: &str) -> Vec<&'static str> {
    ["metacontroller", DYNAMIC_FIELD_MANAGER]
        .into_iter()
        .filter(|m| *m != field_manager)
        .collect()
}

/// The fields our server-side apply owns, whichever field manager name it used: any `Apply`
/// entry, since only an applier (ours, or Metacontroller's in SSA mode) writes with that
/// operation to a child we control.
fn ssa_field_manager_entry(object: &Value) -> Option<&Value> {
    managed_fields::entry_where(object, managed_fields::APPLY, |_| true)
}

/// Whether applying `desired` (sanitised, with our owner reference) would change nothing: every
/// desired field is there with its value, and nothing our field manager applied before is missing
/// from `desired` (server-side apply would remove it).
fn ssa_up_to_date(observed: &Value, desired: &Value, field_manager: &str) -> bool {
    apply::is_subset(observed, desired)
        && managed_fields::entry(observed, field_manager, managed_fields::APPLY)
            .is_none_or(|owned| managed_fields::first_unwanted(owned, desired).is_none())
}

/// Equal apart from what every write changes (resourceVersion, managedFields timestamps).
fn same_content(a: &Value, b: &Value) -> bool {
    fn strip(v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
            meta.remove("managedFields");
        }
        // A write to the main resource never changes the status.
        if let Some(map) = v.as_object_mut() {
            map.remove("status");
        }
        v
    }
    strip(a) == strip(b)
}

fn set_owner(object: &mut Value, owner: &OwnerReference) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("ownerReferences".into(), json!([owner]));
    }
}

/// Puts `owner` back into the merged object's owner references if the merge removed it.
fn keep_owner(object: &mut Value, owner: &OwnerReference) {
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let refs = meta
        .entry("ownerReferences")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !refs.is_array() {
        *refs = Value::Array(Vec::new());
    }
    if let Some(list) = refs.as_array_mut()
        && !list
            .iter()
            .any(|r| r.get("uid").and_then(Value::as_str) == Some(owner.uid.as_str()))
    {
        list.push(json!(owner));
    }
}

/// The child being written: its API, type and name, for requests and error messages.
struct Target<'a> {
    api: Api<DynamicObject>,
    ty: &'a Resolved,
    name: &'a str,
}

impl Target<'_> {
    fn err(&self, action: &'static str) -> impl FnOnce(kube::Error) -> ChildError + use<> {
        let (kind, name) = (self.ty.ar.kind.clone(), self.name.to_owned());
        move |source| ChildError::Api {
            action,
            kind,
            name,
            source: Box::new(source),
        }
    }

    fn apply_err(&self) -> impl FnOnce(apply::ApplyError) -> ChildError + use<> {
        let (kind, name) = (self.ty.ar.kind.clone(), self.name.to_owned());
        move |source| ChildError::Apply { kind, name, source }
    }

    fn encode_err(&self, reason: String) -> ChildError {
        ChildError::Encode {
            kind: self.ty.ar.kind.clone(),
            name: self.name.to_owned(),
            reason,
        }
    }

    fn json(&self, obj: &DynamicObject) -> Result<Value, ChildError> {
        serde_json::to_value(obj).map_err(|e| self.encode_err(e.to_string()))
    }

    fn decode(&self, value: Value) -> Result<DynamicObject, ChildError> {
        serde_json::from_value(value).map_err(|e| self.encode_err(e.to_string()))
    }
}
