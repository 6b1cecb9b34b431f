//! Writes to the parent: its finalizer, the metadata a plan changes (labels, annotations,
//! finalizers), and its status. A write that meets a newer parent (409) or none (404) stops the
//! sync without error: the watch event that made it stale syncs again.

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use tracing::Instrument;

use super::plan::StatusWrite;
use super::sync::SyncError;
use super::{Controller, ParentKey};
use crate::engine::informer::ObjectKey;

/// How a parent write ended.
pub enum Written {
    /// The parent as the API server returned it.
    Done(Box<DynamicObject>),
    /// The parent changed or went away meanwhile.
    Stale,
}

fn stale(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
}

impl Controller {
    /// Adds or removes this controller's finalizer, with the observed resourceVersion as
    /// precondition.
    pub(super) async fn set_finalizer(
        &self,
        type_index: usize,
        parent: &DynamicObject,
        add: bool,
    ) -> Result<Written, SyncError> {
        let mut finalizers: Vec<&String> = parent
            .finalizers()
            .iter()
            .filter(|f| **f != self.finalizer)
            .collect();
        if add {
            finalizers.push(&self.finalizer);
        }
        let patch = json!({"metadata": {
            "finalizers": finalizers,
            "resourceVersion": parent.resource_version(),
        }});
        let action = if add {
            "add finalizer to"
        } else {
            "remove finalizer from"
        };
        self.patch_parent(type_index, parent, &patch, action).await
    }

    /// Sends a merge patch to the parent's main resource.
    pub(super) async fn patch_parent(
        &self,
        type_index: usize,
        parent: &DynamicObject,
        patch: &Value,
        action: &'static str,
    ) -> Result<Written, SyncError> {
        let result = self
            .parent_api(type_index, parent.namespace().as_deref())
            .patch(
                &parent.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .instrument(tracing::info_span!("parent", action))
            .await;
        match result {
            Ok(written) => Ok(Written::Done(Box::new(written))),
            Err(e) if stale(&e) => Ok(Written::Stale),
            Err(source) => Err(SyncError::Parent {
                action,
                parent: ObjectKey::of(parent).to_string(),
                source,
            }),
        }
    }

    /// Writes a planned status: to the status subresource when the type has one, else with the
    /// rest of the object (a decorator's target may have none).
    pub(super) async fn write_status(
        &self,
        key: &ParentKey,
        parent: &DynamicObject,
        write: StatusWrite,
    ) -> Result<(), SyncError> {
        let uid = parent.uid().unwrap_or_default();
        let rv = parent.resource_version().unwrap_or_default();
        if self.state.wrote_status(key, &uid, &write.desired, &rv) {
            return Ok(());
        }
        let api: Api<DynamicObject> =
            self.parent_api(key.type_index, parent.namespace().as_deref());
        let body = json!({ "status": write.patch });
        let span = tracing::info_span!("parent", action = "write status of");
        let params = PatchParams::default();
        let result = if self.parents[key.type_index].ty.has_status {
            api.patch_status(&parent.name_any(), &params, &Patch::Merge(&body))
                .instrument(span)
                .await
        } else {
            api.patch(&parent.name_any(), &params, &Patch::Merge(&body))
                .instrument(span)
                .await
        };
        match result {
            Ok(written) => {
                self.state.record_status(
                    key,
                    &uid,
                    write.desired,
                    written.resource_version().unwrap_or_default(),
                );
                Ok(())
            }
            Err(e) if stale(&e) => Ok(()),
            Err(source) => Err(SyncError::Parent {
                action: "write status of",
                parent: ObjectKey::of(parent).to_string(),
                source,
            }),
        }
    }
}
