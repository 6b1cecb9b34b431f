//! One sync of one parent, the same steps for both kinds of controller:
//! finalizer → observe → hook → validate → plan → parent metadata → children → status.

use std::time::Duration;

use kube::ResourceExt;
use kube::api::DynamicObject;
use serde_json::Value;

use super::exchange::HookOutcome;
use super::observe::Observed;
use super::parent::Written;
use super::plan::{self, Inputs};
use super::{Controller, Kind, ParentKey, exchange};
use crate::engine::children::{ChildError, owner_reference};
use crate::engine::hooks::BuiltHook;
use crate::engine::informer::{ObjectKey, controller_uid};
use crate::hooks::HookError;
use crate::hooks::protocol::{ChildRules, DesiredChild, ResponseError, validate_children};
use crate::selector::Selector;

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
    Related(#[from] crate::engine::related::RelatedError),
    #[error("managing children: {0}")]
    Children(String),
    #[error("rolling update: {0}")]
    Revision(#[from] super::revisions::RevisionError),
}

impl SyncError {
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Hook(h) => h.retry_after(),
            _ => None,
        }
    }
}

impl Controller {
    /// Syncs one parent. Returns when to sync it again, if the hook asked.
    pub async fn sync(&self, key: &ParentKey) -> Result<Option<Duration>, SyncError> {
        let parent_type = &self.parents[key.type_index];
        let Some(mut parent) = parent_type.informer.get(&key.object).map(|p| (*p).clone()) else {
            return Ok(None);
        };
        let selected = parent_type.selects(&parent);
        let has_finalizer = parent.finalizers().contains(&self.finalizer);
        if !selected && !has_finalizer {
            return Ok(None);
        }
        let deleting = parent.metadata.deletion_timestamp.is_some();

        // Finalizer first: add it before anything else happens, strip it if finalize went away.
        let finalize_hook = self.hooks.finalize.is_some();
        if finalize_hook && !has_finalizer && !deleting && selected {
            match self.set_finalizer(key.type_index, &parent, true).await? {
                Written::Done(updated) => parent = *updated,
                Written::Stale => return Ok(None),
            }
        } else if !finalize_hook && has_finalizer {
            self.set_finalizer(key.type_index, &parent, false).await?;
            return Ok(None);
        }

        let finalizing = finalize_hook && (deleting || !selected);
        let hook = if finalizing {
            self.hooks.finalize.as_ref()
        } else {
            self.hooks.sync.as_ref()
        };
        // A decorator with only a finalize hook has nothing to do until it finalizes.
        let Some(hook) = hook else {
            return Ok(None);
        };

        let selector = match self.kind {
            Kind::Composite { .. } => {
                Some(
                    self.selector_for(&parent)
                        .map_err(|message| SyncError::Selector {
                            parent: key.to_string(),
                            message,
                        })?,
                )
            }
            Kind::Decorator => None,
        };
        let observed = self
            .observe(key, &parent, selector.as_ref(), deleting)
            .await?;

        // Rolling updates: the hook once per ControllerRevision (revisions.rs). Metacontroller
        // skips them for a parent being deleted that this controller does not finalize.
        let rolling = self.rolling.as_ref().filter(|_| {
            !deleting || plan::should_finalize(&parent, &self.finalizer, finalize_hook)
        });
        let (desired, outcome) = match (rolling, &selector) {
            (Some(rolling), Some(selector)) => {
                let rolled = self
                    .roll(key, &parent, &observed, hook, finalizing, selector, rolling)
                    .await?;
                (rolled.desired, rolled.outcome)
            }
            _ => {
                self.exchange(key, &parent, &observed, hook, finalizing, selector.as_ref())
                    .await?
            }
        };

        let owner_of_existing = |type_index: usize, ns: Option<&str>, name: &str| {
            self.children[type_index]
                .informer
                .get(&ObjectKey::new(ns, name))
                .and_then(|e| controller_uid(&e).map(str::to_owned))
        };
        let plan = plan::plan(Inputs {
            kind: &self.kind,
            parent: &parent,
            observed: &observed,
            desired,
            outcome: &outcome,
            finalizing,
            finalizer: &self.finalizer,
            has_finalize_hook: finalize_hook,
            owner_of_existing: &owner_of_existing,
        });
        self.execute(key, parent, plan).await
    }

    /// One hook call for `parent` (the parent as it is, or as one of its ControllerRevisions
    /// has it): related objects, request, answer, and its children marked and validated.
    pub(super) async fn exchange(
        &self,
        key: &ParentKey,
        parent: &DynamicObject,
        observed: &Observed,
        hook: &BuiltHook,
        finalizing: bool,
        selector: Option<&Selector>,
    ) -> Result<(Vec<DesiredChild>, HookOutcome), SyncError> {
        let parent_type = &self.parents[key.type_index];
        let parent_json = serde_json::to_value(parent).unwrap_or(Value::Null);
        let related = match &self.related {
            Some(related) => {
                related
                    .objects(parent, parent_type.ty.namespaced, hook.version)
                    .await?
            }
            None => Default::default(),
        };
        let request = exchange::request(
            &self.kind,
            &self.controller_json,
            &parent_json,
            self.observed_map(key, observed, hook.version),
            related,
            finalizing,
        );
        let answer = hook.call(&request).await?;
        let mut outcome = exchange::decode_response(&self.kind, answer, hook.decode)?;

        let uid = parent.uid().unwrap_or_default();
        exchange::mark_children(&self.kind, &self.name, &uid, &mut outcome.children);
        let namespace = self.child_namespace(key, parent);
        let desired = validate_children(
            std::mem::take(&mut outcome.children),
            &ChildRules {
                parent_namespace: namespace.as_deref(),
                types: &self.child_types,
                selector,
                field: match self.kind {
                    Kind::Composite { .. } => "children",
                    Kind::Decorator => "attachments",
                },
            },
        )?;
        Ok((desired, outcome))
    }

    /// Carries out a plan: parent metadata, then children, then status (written even when a
    /// child failed, as Metacontroller does; the child error is returned after).
    async fn execute(
        &self,
        key: &ParentKey,
        mut parent: DynamicObject,
        plan: plan::Plan,
    ) -> Result<Option<Duration>, SyncError> {
        if let Some(patch) = &plan.metadata {
            match self
                .patch_parent(key.type_index, &parent, patch, "update metadata of")
                .await?
            {
                Written::Done(updated) => parent = *updated,
                Written::Stale => return Ok(None),
            }
        }
        let managed = match plan.children {
            Some(children) => {
                if let Some(count) = plan.deleting_all {
                    self.warn_deleting_all(key, count).await;
                }
                let owner = owner_reference(&parent, &self.parents[key.type_index].ty.ar);
                self.writer
                    .manage(&self.children, children, &owner, &self.instruments)
                    .await
                    .map_err(SyncError::Children)
            }
            None => Ok(()),
        };
        if let Some(status) = plan.status {
            self.write_status(key, &parent, status).await?;
        }
        managed?;
        Ok(plan.resync_after)
    }

    /// A response without children deletes every child (Metacontroller's meaning, kept), which
    /// is also what a hook that lost its `children` key by mistake does: say so loudly.
    async fn warn_deleting_all(&self, key: &ParentKey, count: usize) {
        let what = match self.kind {
            Kind::Composite { .. } => "children",
            Kind::Decorator => "attachments",
        };
        let note = format!(
            "the sync hook returned no {what}, so all {count} {what} are deleted (a response without `{what}` means none)"
        );
        tracing::warn!(controller = %self.name, parent = %key, "{note}");
        self.warn(key, "DeletingAllChildren", &note).await;
    }
}
