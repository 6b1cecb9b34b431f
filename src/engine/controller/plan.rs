//! The plan of one sync: a pure function of the parent, its observed children, the hook's
//! (validated) answer and the controller's settings. It decides every write; the executor in
//! `sync` only carries them out. Metacontroller's rules, in one place:
//! - `finalized` removes the finalizer before anything else is written;
//! - children are managed unless the parent is being deleted and this controller is not
//!   finalizing it (or the garbage collector is, with `foregroundDeletion`/`orphan`);
//! - observed children the hook did not return are deleted; a desired child whose name is taken
//!   by an object another controller owns is refused, never taken over;
//! - a composite's status is replaced by the hook's plus `observedGeneration`; a decorator's
//!   labels, annotations and status are merged into the target, keys set to null removed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::DynamicObject;
use serde_json::{Map, Value, json};

use super::Kind;
use super::exchange::HookOutcome;
use super::observe::Observed;
use crate::engine::children::ChildError;
use crate::engine::status;
use crate::hooks::protocol::DesiredChild;

/// Finalizers that mean the garbage collector is working on the parent.
const GC_FINALIZERS: &[&str] = &["foregroundDeletion", "orphan"];

/// (type index, namespace, name) → the controller-owner UID of such an existing object.
pub type OwnerOfExisting<'a> = dyn Fn(usize, Option<&str>, &str) -> Option<String> + 'a;

/// What the plan is made from.
pub struct Inputs<'a> {
    pub kind: &'a Kind,
    pub parent: &'a DynamicObject,
    pub observed: &'a Observed,
    pub desired: Vec<DesiredChild>,
    pub outcome: &'a HookOutcome,
    pub finalizing: bool,
    pub finalizer: &'a str,
    pub has_finalize_hook: bool,
    /// The controller-owner UID of an existing, unobserved object of (type index, namespace,
    /// name), if it has one.
    pub owner_of_existing: &'a OwnerOfExisting<'a>,
}

/// Every write one sync makes, in the order they are made.
#[derive(Debug, Default)]
pub struct Plan {
    /// A merge patch of the parent: `{"metadata": {...}}` (labels, annotations, finalizers with
    /// the observed resourceVersion as precondition).
    pub metadata: Option<Value>,
    /// `None`: leave the children alone.
    pub children: Option<ChildPlan>,
    pub status: Option<StatusWrite>,
    /// How many children a response without children deletes (said loudly: a hook that lost
    /// its `children` key by mistake does the same).
    pub deleting_all: Option<usize>,
    pub resync_after: Option<Duration>,
}

#[derive(Debug, Default)]
pub struct ChildPlan {
    /// (type index, child): observed, not desired, not already being deleted.
    pub deletes: Vec<(usize, Arc<DynamicObject>)>,
    pub writes: Vec<ChildWrite>,
    /// Desired children whose name another owner holds.
    pub refused: Vec<ChildError>,
}

#[derive(Debug)]
pub struct ChildWrite {
    pub desired: DesiredChild,
    pub observed: Option<Arc<DynamicObject>>,
}

/// A status change: the merge patch to send, and the status it produces (remembered, so that a
/// status the API server normalises is not written again).
#[derive(Debug, PartialEq)]
pub struct StatusWrite {
    pub patch: Value,
    pub desired: Value,
}

pub fn plan(inputs: Inputs<'_>) -> Plan {
    let parent = inputs.parent;
    let outcome = inputs.outcome;
    let deleting = parent.metadata.deletion_timestamp.is_some();
    let has_finalizer = parent.finalizers().iter().any(|f| f == inputs.finalizer);
    let removes_finalizer = inputs.finalizing && outcome.finalized && has_finalizer;

    let mut metadata = Map::new();
    if let Kind::Decorator = inputs.kind {
        let empty = BTreeMap::new();
        if let Some(p) = map_changes(
            parent.metadata.labels.as_ref().unwrap_or(&empty),
            &outcome.labels,
        ) {
            metadata.insert("labels".into(), p);
        }
        if let Some(p) = map_changes(
            parent.metadata.annotations.as_ref().unwrap_or(&empty),
            &outcome.annotations,
        ) {
            metadata.insert("annotations".into(), p);
        }
    }
    if removes_finalizer {
        let kept: Vec<&String> = parent
            .finalizers()
            .iter()
            .filter(|f| *f != inputs.finalizer)
            .collect();
        metadata.insert("finalizers".into(), json!(kept));
        metadata.insert("resourceVersion".into(), json!(parent.resource_version()));
    }

    let should_finalize =
        !removes_finalizer && should_finalize(parent, inputs.finalizer, inputs.has_finalize_hook);
    let manage = !deleting || should_finalize;

    let existing = inputs
        .observed
        .iter()
        .flatten()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .count();
    let deleting_all = (manage && !inputs.finalizing && existing > 0 && inputs.desired.is_empty())
        .then_some(existing);

    Plan {
        metadata: (!metadata.is_empty()).then(|| json!({ "metadata": metadata })),
        children: manage.then(|| children(&inputs)),
        status: status_write(inputs.kind, parent, outcome.status.as_ref()),
        deleting_all,
        resync_after: (outcome.resync_after_seconds > 0.0)
            .then(|| Duration::from_secs_f64(outcome.resync_after_seconds.min(1e9))),
    }
}

/// Metacontroller's `ShouldFinalize`: the finalize hook is on, the parent carries this
/// controller's finalizer, and the garbage collector is not working on it (not to fight it).
pub fn should_finalize(parent: &DynamicObject, finalizer: &str, has_finalize_hook: bool) -> bool {
    has_finalize_hook
        && parent.finalizers().iter().any(|f| f == finalizer)
        && !parent
            .finalizers()
            .iter()
            .any(|f| GC_FINALIZERS.contains(&f.as_str()))
}

fn children(inputs: &Inputs<'_>) -> ChildPlan {
    let wanted: HashSet<(usize, Option<&str>, &str)> = inputs
        .desired
        .iter()
        .map(|d| (d.type_index, d.namespace.as_deref(), d.name.as_str()))
        .collect();
    let mut plan = ChildPlan::default();
    for (index, observed) in inputs.observed.iter().enumerate() {
        for child in observed {
            if child.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let name = child.name_any();
            if !wanted.contains(&(index, child.metadata.namespace.as_deref(), name.as_str())) {
                plan.deletes.push((index, child.clone()));
            }
        }
    }
    let owner_uid = inputs.parent.uid().unwrap_or_default();
    for d in &inputs.desired {
        let observed = inputs.observed[d.type_index]
            .iter()
            .find(|o| o.name_any() == d.name && o.namespace() == d.namespace)
            .cloned();
        if observed.is_none()
            && (inputs.owner_of_existing)(d.type_index, d.namespace.as_deref(), &d.name)
                .is_some_and(|uid| uid != owner_uid)
        {
            let kind = d.object["kind"].as_str().unwrap_or_default().to_owned();
            plan.refused.push(ChildError::OwnedByOther {
                kind,
                name: d.name.clone(),
            });
            continue;
        }
        plan.writes.push(ChildWrite {
            desired: d.clone(),
            observed,
        });
    }
    plan
}

/// The merge patch that applies `changes` (null deletes) to `current`, or `None` if it would
/// change nothing.
fn map_changes(
    current: &BTreeMap<String, String>,
    changes: &BTreeMap<String, Option<String>>,
) -> Option<Value> {
    let patch: Map<String, Value> = changes
        .iter()
        .filter(|(k, v)| current.get(*k) != v.as_ref())
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    (!patch.is_empty()).then_some(Value::Object(patch))
}

fn status_write(
    kind: &Kind,
    parent: &DynamicObject,
    hook_status: Option<&Value>,
) -> Option<StatusWrite> {
    let current = parent
        .data
        .get("status")
        .cloned()
        .unwrap_or_else(|| json!({}));
    match kind {
        Kind::Composite { .. } => {
            let desired = status::desired_status(hook_status, parent.metadata.generation);
            status::replace_patch(&current, &desired).map(|patch| StatusWrite { patch, desired })
        }
        Kind::Decorator => {
            let patch = hook_status?.clone();
            let mut desired = current.clone();
            json_patch::merge(&mut desired, &patch);
            (desired != current).then_some(StatusWrite { patch, desired })
        }
    }
}

#[cfg(test)]
mod tests;
