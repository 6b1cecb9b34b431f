//! Rolling updates around the hook (Metacontroller's `syncRevisions`), for a composite with a
//! child type whose method is RollingRecreate or RollingInPlace:
//!
//! 1. claim the parent's ControllerRevisions as children are claimed (the parent's selector, or
//!    `controller-uid` with generateSelector, plus the `metacontroller.k8s.io/apiGroup` and
//!    `/resource` labels): owned ones that match, orphans that match adopted, owned ones that
//!    stopped matching released;
//! 2. the revision whose `parentPatch` equals the parent's `revisionHistory.fieldPaths` is the
//!    latest (a new one if none is); every other revision stands for the parent with its patch
//!    applied;
//! 3. call the hook once per revision's parent;
//! 4. decide the rollout ([`super::rollout`]);
//! 5. write the revisions (delete those that claim nothing, update, create) before any child is
//!    touched, so that the progress of a rollout survives a restart;
//! 6. hand back one answer: the latest status with the `Updated` condition, the children of each
//!    revision, the smallest positive `resyncAfterSeconds`, `finalized` only if every revision
//!    says so.
//!
//! Revisions are listed from the API server, not a cache: each sync sees the revisions the
//! previous one wrote, so no rollout step is decided on a stale view.

use futures::future::try_join_all;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    Preconditions,
};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};

use super::exchange::HookOutcome;
use super::observe::Observed;
use super::rollout::{self, KindRule, Revision};
use super::sync::SyncError;
use super::{CONTROLLER_UID_LABEL, Controller, ParentKey};
use crate::api::{
    ControllerRevision, ControllerRevisionFields, REVISION_API_GROUP_LABEL,
    REVISION_RESOURCE_LABEL, StatusConditionCheck,
};
use crate::engine::children::owner_reference;
use crate::engine::events::EventType;
use crate::engine::hooks::BuiltHook;
use crate::hooks::protocol::DesiredChild;
use crate::selector::Selector;

/// What a composite with rolling child types needs besides the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollingConfig {
    /// `parentResource.revisionHistory.fieldPaths` (default `spec`), split at the dots.
    pub field_paths: Vec<Vec<String>>,
    /// `updateStrategy.statusChecks.conditions`, per child type.
    pub checks: Vec<Vec<StatusConditionCheck>>,
}

impl RollingConfig {
    pub fn new(field_paths: &[&str], checks: Vec<Vec<StatusConditionCheck>>) -> Self {
        Self {
            field_paths: field_paths
                .iter()
                .map(|p| p.split('.').map(str::to_owned).collect())
                .collect(),
            checks,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RevisionError {
    #[error("{action} ControllerRevision {name}: {source}")]
    Api {
        action: &'static str,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error(
        "ControllerRevision {name} exists but is not this parent's (not owned by it, or its labels do not match the parent's selector)"
    )]
    Taken { name: String },
    #[error("ControllerRevision {name}: parentPatch does not make a valid parent: {reason}")]
    BadPatch { name: String, reason: String },
    #[error(
        "no labels for a ControllerRevision match spec.selector (Metacontroller labels revisions with spec.template.metadata.labels; give them the selector's matchLabels, or set generateSelector)"
    )]
    NoLabels,
}

fn api_error(action: &'static str, name: &str) -> impl FnOnce(kube::Error) -> RevisionError {
    let name = name.to_owned();
    move |source| RevisionError::Api {
        action,
        name,
        source: Box::new(source),
    }
}

/// The value at a dot path, if every step is an object that has it.
fn field<'v>(object: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(object, |cur, step| cur.get(step))
}

/// Sets the value at a dot path, creating (or replacing non-object) steps on the way.
fn set_field(object: &mut Value, path: &[String], value: Value) {
    let Some((last, steps)) = path.split_last() else {
        return;
    };
    let mut cur = object;
    for step in steps {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        cur = map
            .entry(step.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    if let Some(map) = cur.as_object_mut() {
        map.insert(last.clone(), value);
    }
}

/// The versioned fields of `parent`: only the field paths that are there.
pub fn make_patch(parent: &Value, field_paths: &[Vec<String>]) -> Value {
    let mut patch = Value::Object(Map::new());
    for path in field_paths {
        if let Some(value) = field(parent, path) {
            set_field(&mut patch, path, value.clone());
        }
    }
    patch
}

/// The parent a revision stands for: `parent` with the revision's field paths set from `patch`
/// (a path the patch lacks keeps the parent's value, as in Metacontroller).
pub fn apply_patch(parent: &Value, patch: &Value, field_paths: &[Vec<String>]) -> Value {
    let mut out = parent.clone();
    for path in field_paths {
        if let Some(value) = field(patch, path) {
            set_field(&mut out, path, value.clone());
        }
    }
    out
}

/// `<resource>.<group or "core">-<hex sha1(parent UID, parentPatch as JSON)>`, the prefix cut to
/// fit 253 characters: Metacontroller's name, so that it and kubelambda create the same object
/// for the same state. The name only makes creation idempotent; revisions are found by their
/// patch.
pub fn revision_name(parent_ar: &ApiResource, parent_uid: &str, patch: &Value) -> String {
    let group = if parent_ar.group.is_empty() {
        "core"
    } else {
        &parent_ar.group
    };
    let mut prefix = format!("{}.{group}", parent_ar.plural);
    prefix.truncate(253 - 41);
    let mut hasher = Sha1::new();
    hasher.update(parent_uid.as_bytes());
    hasher.update(crate::engine::apply::to_json_compact_go(patch).as_bytes());
    format!("{prefix}-{}", hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The labels of a new revision: `controller-uid` with generateSelector; otherwise the parent's
/// `spec.template.metadata.labels` (Metacontroller's choice) with the selector's `matchLabels`
/// over them, so that the revision matches the selector it is claimed with. Plus the parent
/// type's two labels.
pub fn revision_labels(
    parent: &Value,
    parent_ar: &ApiResource,
    generate_selector: bool,
    selector: &Selector,
) -> Result<std::collections::BTreeMap<String, String>, RevisionError> {
    let mut labels = std::collections::BTreeMap::new();
    if generate_selector {
        let uid = parent
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        labels.insert(CONTROLLER_UID_LABEL.to_owned(), uid.to_owned());
    } else {
        let strings = |v: Option<&Value>| -> Vec<(String, String)> {
            v.and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                        .collect()
                })
                .unwrap_or_default()
        };
        labels.extend(strings(parent.pointer("/spec/template/metadata/labels")));
        labels.extend(strings(parent.pointer("/spec/selector/matchLabels")));
        if !selector.matches(&labels) {
            return Err(RevisionError::NoLabels);
        }
    }
    labels.insert(REVISION_API_GROUP_LABEL.to_owned(), parent_ar.group.clone());
    labels.insert(REVISION_RESOURCE_LABEL.to_owned(), parent_ar.plural.clone());
    Ok(labels)
}

/// What one rolling sync hands back to the rest of the pipeline.
pub struct Rolled {
    pub desired: Vec<DesiredChild>,
    pub outcome: HookOutcome,
}

impl Controller {
    fn revisions_api(&self, namespace: &str) -> Api<ControllerRevision> {
        Api::namespaced(self.shared.client.clone(), namespace)
    }

    /// Steps 1–6 of the module doc.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn roll(
        &self,
        key: &ParentKey,
        parent: &DynamicObject,
        observed: &Observed,
        hook: &BuiltHook,
        finalizing: bool,
        selector: &Selector,
        rolling: &RollingConfig,
    ) -> Result<Rolled, SyncError> {
        let deleting = parent.metadata.deletion_timestamp.is_some();
        let namespace = parent.namespace().unwrap_or_default();
        let claimed = self
            .claim_revisions(key, parent, &namespace, selector, deleting)
            .await?;
        let parent_json = serde_json::to_value(parent).unwrap_or(Value::Null);
        let latest_patch = make_patch(&parent_json, &rolling.field_paths);

        let mut latest: Option<ControllerRevision> = None;
        let mut older: Vec<(ControllerRevision, DynamicObject)> = Vec::new();
        for revision in &claimed {
            let patch = Value::Object(revision.spec.parent_patch.clone());
            if patch == latest_patch {
                if latest.is_none() {
                    latest = Some(revision.clone());
                }
                continue;
            }
            let materialised = apply_patch(&parent_json, &patch, &rolling.field_paths);
            let as_parent: DynamicObject =
                serde_json::from_value(materialised).map_err(|e| RevisionError::BadPatch {
                    name: revision.name_any(),
                    reason: e.to_string(),
                })?;
            older.push((revision.clone(), as_parent));
        }
        let latest = match latest {
            Some(revision) => revision,
            None => self.new_revision(key, parent, &parent_json, &latest_patch, selector)?,
        };

        // The hook, once per revision's parent.
        let calls = std::iter::once(parent)
            .chain(older.iter().map(|(_, p)| p))
            .map(|p| self.exchange(key, p, observed, hook, finalizing, Some(selector)));
        let answers = try_join_all(calls).await?;

        let kinds: Vec<KindRule<'_>> = self
            .children
            .iter()
            .zip(&rolling.checks)
            .map(|(kind, checks)| KindRule {
                api_group: &kind.ty.ar.group,
                kind: &kind.ty.ar.kind,
                method: kind.method,
                checks,
            })
            .collect();
        let revisions: Vec<Revision<'_>> = std::iter::once(&latest)
            .chain(older.iter().map(|(r, _)| r))
            .zip(&answers)
            .map(|(revision, (desired, _))| Revision {
                name: revision.metadata.name.as_deref().unwrap_or_default(),
                claims: &revision.spec.children,
                desired,
            })
            .collect();
        let owner = owner_reference(parent, &self.parents[key.type_index].ty.ar);
        let up_to_date =
            |obs: &DynamicObject, d: &DesiredChild| self.writer.up_to_date(obs, d, &owner);
        let decision = rollout::decide(&rollout::Inputs {
            kinds: &kinds,
            parent_namespaced: self.parents[key.type_index].ty.namespaced,
            revisions: &revisions,
            observed,
            up_to_date: &up_to_date,
            current_status: parent.data.get("status"),
        });

        // Revisions first: what the rollout decided is recorded before any child changes.
        let all = std::iter::once(&latest).chain(older.iter().map(|(r, _)| r));
        let mut wanted: Vec<ControllerRevision> = Vec::new();
        for (revision, claims) in all.zip(decision.claims) {
            if let Some(children) = claims {
                let mut revision = revision.clone();
                revision.spec.children = children;
                wanted.push(revision);
            }
        }
        self.write_revisions(&namespace, &claimed, &wanted)
            .await
            .map_err(SyncError::Revision)?;
        if let Some(note) = &decision.stalled {
            let reference = parent.object_ref(&self.parents[key.type_index].ty.ar);
            self.shared
                .recorder
                .publish(
                    &reference,
                    EventType::Warning,
                    "RolloutWaiting",
                    "Sync",
                    note,
                )
                .await;
        }

        let mut answers = answers.into_iter().map(|(_, outcome)| outcome);
        let mut outcome = answers.next().unwrap_or_default();
        rollout::set_condition(&mut outcome.status, &decision.condition);
        for other in answers {
            if other.resync_after_seconds > 0.0
                && (outcome.resync_after_seconds <= 0.0
                    || other.resync_after_seconds < outcome.resync_after_seconds)
            {
                outcome.resync_after_seconds = other.resync_after_seconds;
            }
            outcome.finalized &= other.finalized;
        }
        Ok(Rolled {
            desired: decision.desired,
            outcome,
        })
    }

    /// The ControllerRevision for the parent as it is, not yet written.
    fn new_revision(
        &self,
        key: &ParentKey,
        parent: &DynamicObject,
        parent_json: &Value,
        patch: &Value,
        selector: &Selector,
    ) -> Result<ControllerRevision, SyncError> {
        let ar = &self.parents[key.type_index].ty.ar;
        let generate_selector = matches!(
            self.kind,
            super::Kind::Composite {
                generate_selector: true
            }
        );
        let labels = revision_labels(parent_json, ar, generate_selector, selector)
            .map_err(SyncError::Revision)?;
        let uid = parent.uid().unwrap_or_default();
        Ok(ControllerRevision {
            metadata: ObjectMeta {
                name: Some(revision_name(ar, &uid, patch)),
                namespace: parent.namespace(),
                labels: Some(labels),
                owner_references: Some(vec![owner_reference(parent, ar)]),
                ..ObjectMeta::default()
            },
            spec: ControllerRevisionFields {
                parent_patch: patch.as_object().cloned().unwrap_or_default(),
                children: Vec::new(),
            },
        })
    }

    /// Claims the parent's revisions, as children are claimed (observe.rs), listed live.
    async fn claim_revisions(
        &self,
        key: &ParentKey,
        parent: &DynamicObject,
        namespace: &str,
        selector: &Selector,
        deleting: bool,
    ) -> Result<Vec<ControllerRevision>, SyncError> {
        let ar = &self.parents[key.type_index].ty.ar;
        let type_labels = Selector::equals(&[
            (REVISION_API_GROUP_LABEL, &ar.group),
            (REVISION_RESOURCE_LABEL, &ar.plural),
        ]);
        let api = self.revisions_api(namespace);
        let listed = api
            .list(&ListParams::default().labels(&type_labels.to_query()))
            .await
            .map_err(|e| SyncError::Revision(api_error("list", "(all)")(e)))?;
        let uid = parent.uid().unwrap_or_default();
        let owner = owner_reference(parent, ar);
        let mut can_adopt: Option<bool> = None;
        let mut claimed = Vec::new();
        for revision in listed.items {
            let matches =
                selector.matches(revision.labels()) && type_labels.matches(revision.labels());
            let controller = revision
                .owner_references()
                .iter()
                .find(|r| r.controller == Some(true))
                .map(|r| r.uid.clone());
            match controller {
                Some(owner_uid) if owner_uid == uid => {
                    if matches {
                        claimed.push(revision);
                    } else if !deleting {
                        self.set_revision_owners(&api, &revision, None, &uid)
                            .await?;
                    }
                }
                None if !deleting && matches && revision.metadata.deletion_timestamp.is_none() => {
                    if can_adopt.is_none() {
                        can_adopt = Some(self.can_adopt(key, parent).await?);
                    }
                    if can_adopt == Some(true) {
                        claimed.push(
                            self.set_revision_owners(&api, &revision, Some(&owner), &uid)
                                .await?,
                        );
                    }
                }
                _ => {}
            }
        }
        Ok(claimed)
    }

    /// Adopts (`owner` given) or releases a revision, with its resourceVersion as precondition.
    async fn set_revision_owners(
        &self,
        api: &Api<ControllerRevision>,
        revision: &ControllerRevision,
        owner: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
        parent_uid: &str,
    ) -> Result<ControllerRevision, SyncError> {
        let mut refs: Vec<_> = revision
            .owner_references()
            .iter()
            .filter(|r| r.uid != parent_uid)
            .cloned()
            .collect();
        refs.extend(owner.cloned());
        let patch = serde_json::json!({"metadata": {
            "ownerReferences": refs,
            "resourceVersion": revision.resource_version(),
        }});
        let action = if owner.is_some() { "adopt" } else { "release" };
        let name = revision.name_any();
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(written) => Ok(written),
            Err(kube::Error::Api(s)) if owner.is_none() && s.code == 404 => Ok(revision.clone()),
            Err(e) => Err(SyncError::Revision(api_error(action, &name)(e))),
        }
    }

    /// Deletes the observed revisions not wanted, updates the changed ones, creates the new one.
    async fn write_revisions(
        &self,
        namespace: &str,
        observed: &[ControllerRevision],
        wanted: &[ControllerRevision],
    ) -> Result<(), RevisionError> {
        let api = self.revisions_api(namespace);
        for old in observed {
            let name = old.name_any();
            if wanted
                .iter()
                .any(|w| w.metadata.name.as_deref() == Some(&name))
            {
                continue;
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: old.uid(),
                    resource_version: old.resource_version(),
                }),
                ..DeleteParams::default()
            };
            tracing::info!(controller = %self.name, revision = %name, "deleting a ControllerRevision that no child is on");
            match api.delete(&name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(api_error("delete", &name)(e)),
            }
        }
        for revision in wanted {
            let name = revision.name_any();
            match observed.iter().find(|o| o.name_any() == name) {
                Some(old) if old.spec == revision.spec => {}
                Some(_) => {
                    api.replace(&name, &PostParams::default(), revision)
                        .await
                        .map_err(api_error("update", &name))?;
                }
                None => match api.create(&PostParams::default(), revision).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        return Err(RevisionError::Taken { name });
                    }
                    Err(e) => return Err(api_error("create", &name)(e)),
                },
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(p: &[&str]) -> Vec<Vec<String>> {
        RollingConfig::new(p, Vec::new()).field_paths
    }

    #[test]
    fn the_patch_holds_only_the_versioned_fields_that_are_there() {
        let parent =
            json!({"metadata": {"name": "p"}, "spec": {"template": {"a": 1}, "replicas": 3}});
        assert_eq!(
            make_patch(
                &parent,
                &paths(&["spec.template", "spec.absent", "metadata.labels"])
            ),
            json!({"spec": {"template": {"a": 1}}})
        );
        assert_eq!(
            make_patch(&parent, &paths(&["spec"])),
            json!({"spec": {"template": {"a": 1}, "replicas": 3}})
        );
        // A step that is not an object: not there.
        assert_eq!(make_patch(&parent, &paths(&["spec.replicas.x"])), json!({}));
    }

    #[test]
    fn an_old_revisions_parent_is_the_parent_with_its_patch() {
        let parent =
            json!({"metadata": {"name": "p"}, "spec": {"template": {"a": 2}, "replicas": 5}});
        let patch = json!({"spec": {"template": {"a": 1}}});
        assert_eq!(
            apply_patch(&parent, &patch, &paths(&["spec.template", "spec.other"])),
            json!({"metadata": {"name": "p"}, "spec": {"template": {"a": 1}, "replicas": 5}}),
            "only the versioned paths change; a path the patch lacks is left as it is"
        );
    }

    #[test]
    fn names_are_metacontrollers() {
        let ar = ApiResource {
            group: "ctl.enisoc.com".into(),
            version: "v1".into(),
            api_version: "ctl.enisoc.com/v1".into(),
            kind: "CatSet".into(),
            plural: "catsets".into(),
        };
        let patch = json!({"spec": {"b": 1, "a": "<x>"}});
        let name = revision_name(&ar, "uid-1", &patch);
        // sha1("uid-1" + Go's json.Marshal of the patch: sorted keys, HTML escaped).
        let mut hasher = Sha1::new();
        hasher.update(br#"uid-1{"spec":{"a":"\u003cx\u003e","b":1}}"#);
        assert_eq!(
            name,
            format!("catsets.ctl.enisoc.com-{}", hex(&hasher.finalize()))
        );
        let core = ApiResource {
            group: String::new(),
            ..ar.clone()
        };
        assert!(revision_name(&core, "u", &patch).starts_with("catsets.core-"));
        let long = ApiResource {
            plural: "x".repeat(300),
            ..ar
        };
        assert_eq!(revision_name(&long, "u", &patch).len(), 253);
    }

    #[test]
    fn labels_follow_the_selector_rules() {
        let ar = ApiResource {
            group: "g".into(),
            version: "v1".into(),
            api_version: "g/v1".into(),
            kind: "K".into(),
            plural: "ks".into(),
        };
        let parent = json!({"metadata": {"uid": "u1"}, "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "a", "tier": "web"}}},
        }});
        let generated = Selector::equals(&[(CONTROLLER_UID_LABEL, "u1")]);
        let labels = revision_labels(&parent, &ar, true, &generated).expect("labels");
        assert_eq!(
            labels,
            [
                ("controller-uid", "u1"),
                (REVISION_API_GROUP_LABEL, "g"),
                (REVISION_RESOURCE_LABEL, "ks"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
        );
        let app = Selector::equals(&[("app", "a")]);
        let labels = revision_labels(&parent, &ar, false, &app).expect("labels");
        assert_eq!(labels.get("tier").map(String::as_str), Some("web"));
        assert_eq!(labels.get("app").map(String::as_str), Some("a"));
        // A selector the labels cannot satisfy is said, not worked around.
        let other = Selector::equals(&[("team", "x")]);
        assert!(matches!(
            revision_labels(&parent, &ar, false, &other),
            Err(RevisionError::NoLabels)
        ));
    }
}
