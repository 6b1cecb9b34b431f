//! The rolling-update decision of one sync, a pure function (Metacontroller's
//! `syncRevisionClaims` + `syncRollingUpdate` + the desired-children merge):
//!
//! 1. every revision keeps its claims on children the latest revision still desires, of a kind
//!    that still rolls; a child claimed twice stays with the first claimant (latest first);
//! 2. a desired child nobody claims goes to the latest revision, and so does a child an older
//!    revision claims when the latest desired state is already there (writing it changes
//!    nothing);
//! 3. the first desired child, in the hook's order, not on the latest revision moves to it, but
//!    only when every child already on the latest revision is observed, up to date, has observed
//!    its generation (RollingInPlace) and passes the status checks; one child per sync;
//! 4. revisions other than the latest that claim nothing are dropped;
//! 5. each child gets the desired state of the revision that claims it.
//!
//! Children are identified by (child type, the key a v1 hook uses for them: the name, or
//! `namespace/name` for a namespaced child of a cluster-scoped parent) on both sides, observed and
//! desired. Metacontroller looks observed children up by `namespace/name` and revisions by name,
//! so for namespaced parents its rollouts stall after the first child; not here.

use std::collections::HashMap;
use std::fmt;

use kube::ResourceExt;
use kube::api::DynamicObject;
use serde_json::{Map, Value, json};

use super::observe::Observed;
use crate::api::{ChildUpdateMethod, ControllerRevisionChildren, StatusConditionCheck};
use crate::hooks::protocol::{DesiredChild, ProtocolVersion, object_key};

/// The parent status condition a rolling update maintains.
pub const UPDATED_CONDITION: &str = "Updated";

/// A declared child type, as the rollout sees it.
pub struct KindRule<'a> {
    /// API group of the type ("" for the core group): revisions name children by group and kind.
    pub api_group: &'a str,
    pub kind: &'a str,
    pub method: ChildUpdateMethod,
    pub checks: &'a [StatusConditionCheck],
}

/// One revision: its name, the children it claims, and what its parent's hook desires.
pub struct Revision<'a> {
    pub name: &'a str,
    pub claims: &'a [ControllerRevisionChildren],
    pub desired: &'a [DesiredChild],
}

/// Whether writing a desired child over the observed one would change nothing.
pub type UpToDate<'a> = dyn Fn(&DynamicObject, &DesiredChild) -> bool + 'a;

pub struct Inputs<'a> {
    /// Per child type index.
    pub kinds: &'a [KindRule<'a>],
    pub parent_namespaced: bool,
    /// The latest revision (the parent as it is) first, then the older ones.
    pub revisions: &'a [Revision<'a>],
    pub observed: &'a Observed,
    pub up_to_date: &'a UpToDate<'a>,
    /// The parent's status as it is, to announce a stall once rather than on every sync.
    pub current_status: Option<&'a Value>,
}

/// What the rollout decided.
#[derive(Debug)]
pub struct Decision {
    /// Per input revision, the children it claims after this sync; `None` when it claims none
    /// and is not the latest (it is deleted).
    pub claims: Vec<Option<Vec<ControllerRevisionChildren>>>,
    /// The latest revision's desired children, each claimed by an older revision replaced by
    /// that revision's desired state.
    pub desired: Vec<DesiredChild>,
    pub condition: Condition,
    /// The rollout waits on a failed status check and the parent does not say so yet: the text
    /// of the Event to send.
    pub stalled: Option<String>,
}

/// The `Updated` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

impl Condition {
    fn to_json(&self) -> Value {
        json!({
            "type": UPDATED_CONDITION,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
        })
    }
}

/// Why the rollout cannot move the next child yet.
#[derive(Debug, PartialEq, Eq)]
enum Wait {
    Missing {
        kind: String,
        key: String,
    },
    NotUpdated {
        kind: String,
        key: String,
    },
    GenerationNotObserved {
        kind: String,
        key: String,
    },
    CheckFailed {
        kind: String,
        key: String,
        problem: String,
    },
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { kind, key } => write!(f, "missing child {kind} {key}"),
            Self::NotUpdated { kind, key } => write!(f, "child {kind} {key} is not updated yet"),
            Self::GenerationNotObserved { kind, key } => write!(
                f,
                "child {kind} {key} with RollingInPlace update strategy hasn't observed latest spec"
            ),
            Self::CheckFailed { kind, key, problem } => {
                write!(f, "child {kind} {key} failed status check: {problem}")
            }
        }
    }
}

/// A child: its type index and its key (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ChildId {
    type_index: usize,
    key: String,
}

/// The current claims: who claims each child, and each revision's children in order.
struct Claims {
    owner: HashMap<ChildId, usize>,
    lists: Vec<Vec<ChildId>>,
}

impl Claims {
    fn claim(&mut self, id: ChildId, revision: usize) {
        if let Some(previous) = self.owner.insert(id.clone(), revision) {
            self.lists[previous].retain(|c| *c != id);
        }
        self.lists[revision].push(id);
    }
}

pub fn decide(inputs: &Inputs<'_>) -> Decision {
    let rolling = |type_index: usize| {
        inputs
            .kinds
            .get(type_index)
            .is_some_and(|k| k.method.is_rolling())
    };
    let id_of = |d: &DesiredChild| ChildId {
        type_index: d.type_index,
        key: object_key(
            ProtocolVersion::V1,
            inputs.parent_namespaced,
            d.namespace.as_deref(),
            &d.name,
        ),
    };
    let desired_by_revision: Vec<HashMap<ChildId, &DesiredChild>> = inputs
        .revisions
        .iter()
        .map(|r| r.desired.iter().map(|d| (id_of(d), d)).collect())
        .collect();
    let Some(latest_desired) = desired_by_revision.first() else {
        return Decision {
            claims: Vec::new(),
            desired: Vec::new(),
            condition: Condition {
                status: "True",
                reason: "OnLatestRevision",
                message: String::new(),
            },
            stalled: None,
        };
    };
    let observed: HashMap<ChildId, &DynamicObject> = inputs
        .observed
        .iter()
        .enumerate()
        .flat_map(|(type_index, objs)| {
            objs.iter().map(move |o| {
                let key = object_key(
                    ProtocolVersion::V1,
                    inputs.parent_namespaced,
                    o.metadata.namespace.as_deref(),
                    &o.name_any(),
                );
                (ChildId { type_index, key }, o.as_ref())
            })
        })
        .collect();

    // 1. Existing claims, on children the latest revision still desires, of rolling kinds.
    let mut claims = Claims {
        owner: HashMap::new(),
        lists: vec![Vec::new(); inputs.revisions.len()],
    };
    for (index, revision) in inputs.revisions.iter().enumerate() {
        for group in revision.claims {
            let Some(type_index) = inputs.kinds.iter().position(|k| {
                k.api_group == group.api_group && k.kind == group.kind && k.method.is_rolling()
            }) else {
                continue;
            };
            for name in &group.names {
                let id = ChildId {
                    type_index,
                    key: name.clone(),
                };
                if latest_desired.contains_key(&id) && !claims.owner.contains_key(&id) {
                    claims.claim(id, index);
                }
            }
        }
    }

    // 2. Unclaimed children, and children that need no change, go to the latest revision.
    let latest = inputs.revisions[0].desired;
    for d in latest.iter().filter(|d| rolling(d.type_index)) {
        let id = id_of(d);
        let take = match claims.owner.get(&id) {
            None => true,
            Some(0) => false,
            Some(_) => observed
                .get(&id)
                .is_some_and(|obs| (inputs.up_to_date)(obs, d)),
        };
        if take {
            claims.claim(id, 0);
        }
    }

    // 3. Move the next child, if the ones already moved are fine.
    let next = latest
        .iter()
        .filter(|d| rolling(d.type_index))
        .map(id_of)
        .find(|id| claims.owner.get(id) != Some(&0));
    let mut stalled = None;
    let condition = match next {
        None => Condition {
            status: "True",
            reason: "OnLatestRevision",
            message: format!("latest ControllerRevision: {}", inputs.revisions[0].name),
        },
        Some(id) => match check_latest(inputs, &claims.lists[0], latest_desired, &observed) {
            Err(wait) => {
                let condition = Condition {
                    status: "False",
                    reason: "RolloutWaiting",
                    message: wait.to_string(),
                };
                if matches!(wait, Wait::CheckFailed { .. })
                    && current_condition(inputs.current_status).as_ref() != Some(&condition)
                {
                    stalled = Some(format!("rollout stopped: {wait}"));
                }
                condition
            }
            Ok(()) => {
                let kind = inputs.kinds[id.type_index].kind;
                let message = format!("updating {kind} {}", id.key);
                claims.claim(id, 0);
                Condition {
                    status: "False",
                    reason: "RolloutProgressing",
                    message,
                }
            }
        },
    };

    // 5. Each child gets the desired state of the revision that claims it.
    let desired = latest
        .iter()
        .map(|d| {
            let id = id_of(d);
            match claims.owner.get(&id) {
                Some(&r) if r != 0 => desired_by_revision[r]
                    .get(&id)
                    .map_or_else(|| d.clone(), |old| (*old).clone()),
                _ => d.clone(),
            }
        })
        .collect();

    // 4. Revisions that claim nothing go, except the latest.
    let claims = claims
        .lists
        .iter()
        .enumerate()
        .map(|(index, list)| {
            (index == 0 || !list.is_empty()).then(|| group_claims(inputs.kinds, list))
        })
        .collect();
    Decision {
        claims,
        desired,
        condition,
        stalled,
    }
}

/// Whether every child on the latest revision lets the rollout go on.
fn check_latest(
    inputs: &Inputs<'_>,
    on_latest: &[ChildId],
    latest_desired: &HashMap<ChildId, &DesiredChild>,
    observed: &HashMap<ChildId, &DynamicObject>,
) -> Result<(), Wait> {
    for id in on_latest {
        let rule = &inputs.kinds[id.type_index];
        let (kind, key) = (rule.kind.to_owned(), id.key.clone());
        let Some(child) = observed.get(id) else {
            return Err(Wait::Missing { kind, key });
        };
        let Some(desired) = latest_desired.get(id) else {
            continue;
        };
        if !(inputs.up_to_date)(child, desired) {
            return Err(Wait::NotUpdated { kind, key });
        }
        if rule.method == ChildUpdateMethod::RollingInPlace {
            // Not every controller reports observedGeneration; without it there is nothing to
            // wait for.
            let observed_generation = child
                .data
                .pointer("/status/observedGeneration")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if observed_generation > 0
                && observed_generation < child.metadata.generation.unwrap_or(0)
            {
                return Err(Wait::GenerationNotObserved { kind, key });
            }
        }
        if let Err(problem) = status_check(rule.checks, &child.data) {
            return Err(Wait::CheckFailed { kind, key, problem });
        }
    }
    Ok(())
}

/// Every check: a condition of that type in `status.conditions`, with the status and reason
/// asked for (when asked).
fn status_check(checks: &[StatusConditionCheck], object: &Value) -> Result<(), String> {
    let conditions = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for check in checks {
        let Some(found) = conditions
            .iter()
            .find(|c| c.get("type").and_then(Value::as_str) == Some(check.type_.as_str()))
        else {
            return Err(format!(
                "required condition type missing: {:?}",
                check.type_
            ));
        };
        let field = |name: &str| found.get(name).and_then(Value::as_str).unwrap_or_default();
        if let Some(want) = &check.status
            && field("status") != want
        {
            return Err(format!(
                "{:?} condition status is {:?} (want {want:?})",
                check.type_,
                field("status")
            ));
        }
        if let Some(want) = &check.reason
            && field("reason") != want
        {
            return Err(format!(
                "{:?} condition reason is {:?} (want {want:?})",
                check.type_,
                field("reason")
            ));
        }
    }
    Ok(())
}

/// A revision's children as the ControllerRevision lists them: grouped by API group and kind,
/// in the order of first appearance.
fn group_claims(kinds: &[KindRule<'_>], list: &[ChildId]) -> Vec<ControllerRevisionChildren> {
    let mut groups: Vec<ControllerRevisionChildren> = Vec::new();
    for id in list {
        let rule = &kinds[id.type_index];
        match groups
            .iter_mut()
            .find(|g| g.api_group == rule.api_group && g.kind == rule.kind)
        {
            Some(group) => group.names.push(id.key.clone()),
            None => groups.push(ControllerRevisionChildren {
                api_group: rule.api_group.to_owned(),
                kind: rule.kind.to_owned(),
                names: vec![id.key.clone()],
            }),
        }
    }
    groups
}

/// The parent's `Updated` condition, as a [`Condition`] to compare with.
fn current_condition(status: Option<&Value>) -> Option<Condition> {
    let found = status?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(UPDATED_CONDITION))?;
    let field = |name: &str| found.get(name).and_then(Value::as_str).unwrap_or_default();
    let known =
        |value: &str, options: &[&'static str]| options.iter().find(|o| **o == value).copied();
    Some(Condition {
        status: known(field("status"), &["True", "False"])?,
        reason: known(
            field("reason"),
            &["RolloutWaiting", "RolloutProgressing", "OnLatestRevision"],
        )?,
        message: field("message").to_owned(),
    })
}

/// Puts `condition` into a hook's status (`None` or not an object: a new `{}`), replacing the
/// condition of the same type or appending it.
pub fn set_condition(status: &mut Option<Value>, condition: &Condition) {
    let status = status.get_or_insert_with(|| Value::Object(Map::new()));
    if !status.is_object() {
        *status = Value::Object(Map::new());
    }
    let Some(map) = status.as_object_mut() else {
        return;
    };
    let conditions = map
        .entry("conditions")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !conditions.is_array() {
        *conditions = Value::Array(Vec::new());
    }
    let Some(list) = conditions.as_array_mut() else {
        return;
    };
    let new = condition.to_json();
    match list
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(UPDATED_CONDITION))
    {
        Some(existing) => *existing = new,
        None => list.push(new),
    }
}

#[cfg(test)]
mod tests;
