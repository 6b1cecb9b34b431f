//! The children a parent has: for a composite, claimed (owned ones that match its selector,
//! orphans that match adopted, owned ones that stopped matching released); for a decorator, the
//! objects it controls that carry this decorator's annotation (no adoption, as in Metacontroller).

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::DynamicObject;
use serde_json::Value;

use super::sync::SyncError;
use super::{CONTROLLER_UID_LABEL, Controller, DECORATOR_ANNOTATION, Kind, ParentKey};
use crate::engine::children::owner_reference;
use crate::engine::informer::ObjectKey;
use crate::hooks::protocol::{ObjectMap, ProtocolVersion, object_key, type_key};
use crate::selector::{LabelSelector, Selector};

/// Observed children, one list per declared child type, in the controller's order.
pub type Observed = Vec<Vec<Arc<DynamicObject>>>;

impl Controller {
    /// The parent's namespace if its type is namespaced: where its children live.
    pub(super) fn child_namespace(
        &self,
        key: &ParentKey,
        parent: &DynamicObject,
    ) -> Option<String> {
        if self.parents[key.type_index].ty.namespaced {
            parent.namespace()
        } else {
            None
        }
    }

    pub(super) async fn observe(
        &self,
        key: &ParentKey,
        parent: &DynamicObject,
        selector: Option<&Selector>,
        deleting: bool,
    ) -> Result<Observed, SyncError> {
        match (&self.kind, selector) {
            (Kind::Composite { .. }, Some(selector)) => {
                self.claim(key, parent, selector, deleting).await
            }
            _ => Ok(self.attachments(key, parent)),
        }
    }

    fn attachments(&self, key: &ParentKey, parent: &DynamicObject) -> Observed {
        let uid = parent.uid().unwrap_or_default();
        let ns = self.child_namespace(key, parent);
        self.children
            .iter()
            .map(|kind| {
                kind.informer
                    .owned_by(&uid)
                    .into_iter()
                    .filter(|child| ns.is_none() || child.namespace() == ns)
                    .filter(|child| {
                        child.annotations().get(DECORATOR_ANNOTATION) == Some(&self.name)
                    })
                    .collect()
            })
            .collect()
    }

    /// Claims children: owned ones that match, orphans that match (adopted), and releases owned
    /// ones that stopped matching.
    async fn claim(
        &self,
        key: &ParentKey,
        parent: &DynamicObject,
        selector: &Selector,
        deleting: bool,
    ) -> Result<Observed, SyncError> {
        let uid = parent.uid().unwrap_or_default();
        let ns = self.child_namespace(key, parent);
        let owner = owner_reference(parent, &self.parents[key.type_index].ty.ar);
        let mut can_adopt: Option<bool> = None;
        let mut claimed = Vec::with_capacity(self.children.len());
        for kind in &self.children {
            let mut mine = Vec::new();
            for child in kind.informer.owned_by(&uid) {
                if ns.is_some() && child.namespace() != ns {
                    continue;
                }
                if selector.matches(child.labels()) {
                    mine.push(child);
                } else if !deleting {
                    self.writer.release(&kind.ty, &child, &uid).await?;
                }
            }
            if !deleting {
                for orphan in kind.informer.orphans(ns.as_deref()) {
                    if orphan.metadata.deletion_timestamp.is_some()
                        || !selector.matches(orphan.labels())
                    {
                        continue;
                    }
                    if can_adopt.is_none() {
                        can_adopt = Some(self.can_adopt(key, parent).await?);
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
    pub(super) async fn can_adopt(
        &self,
        key: &ParentKey,
        parent: &DynamicObject,
    ) -> Result<bool, SyncError> {
        let live = self
            .parent_api(key.type_index, parent.namespace().as_deref())
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

    /// The selector a composite's children must match (see [`child_selector`]).
    pub(super) fn selector_for(&self, parent: &DynamicObject) -> Result<Selector, String> {
        child_selector(&self.kind, parent).map(Option::unwrap_or_default)
    }

    /// The observed children as the hook sees them: keyed by type, then by name (protocol v1,
    /// relative to the parent) or namespace/name (v2).
    pub(super) fn observed_map(
        &self,
        key: &ParentKey,
        observed: &Observed,
        version: ProtocolVersion,
    ) -> ObjectMap {
        let parent_namespaced = self.parents[key.type_index].ty.namespaced;
        let mut map = ObjectMap::new();
        for (kind, objs) in self.children.iter().zip(observed) {
            let entry = map
                .entry(type_key(&kind.ty.ar.kind, &kind.api_version))
                .or_default();
            for obj in objs {
                let key = object_key(
                    version,
                    parent_namespaced,
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
}

/// The selector `kind`'s children of `parent` must match: `controller-uid` with
/// generateSelector, else the parent's `spec.selector`; `None` for a decorator, whose
/// attachments match no selector. Shared by the controller and `render --controller`.
pub fn child_selector(kind: &Kind, parent: &DynamicObject) -> Result<Option<Selector>, String> {
    match kind {
        Kind::Decorator => Ok(None),
        Kind::Composite {
            generate_selector: true,
        } => {
            let uid = parent.uid().unwrap_or_default();
            Ok(Some(Selector::equals(&[(CONTROLLER_UID_LABEL, &uid)])))
        }
        Kind::Composite { .. } => {
            let Some(raw) = parent.data.pointer("/spec/selector") else {
                return Err("has no spec.selector (set generateSelector: true on the controller, or give parents a selector)".into());
            };
            let sel: LabelSelector = serde_json::from_value(raw.clone())
                .map_err(|e| format!("spec.selector is not a label selector: {e}"))?;
            let sel =
                Selector::from_label_selector(&sel).map_err(|e| format!("spec.selector: {e}"))?;
            if sel.is_empty() {
                return Err(
                    "spec.selector must have either matchLabels, matchExpressions, or both".into(),
                );
            }
            Ok(Some(sel))
        }
    }
}
