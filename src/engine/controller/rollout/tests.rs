use std::sync::Arc;

use serde_json::json;

use super::*;

const NS: &str = "ns";

fn kinds(method: ChildUpdateMethod, checks: &[StatusConditionCheck]) -> Vec<KindRule<'_>> {
    vec![
        KindRule {
            api_group: "test.io",
            kind: "Thing",
            method,
            checks,
        },
        // Not rolling: always the latest desired state, never claimed.
        KindRule {
            api_group: "",
            kind: "ConfigMap",
            method: ChildUpdateMethod::InPlace,
            checks: &[],
        },
    ]
}

fn ready() -> Vec<StatusConditionCheck> {
    vec![StatusConditionCheck {
        type_: "Ready".into(),
        status: Some("True".into()),
        reason: None,
    }]
}

fn desired_in(ns: Option<&str>, type_index: usize, name: &str, version: &str) -> DesiredChild {
    let kind = ["Thing", "ConfigMap"][type_index];
    DesiredChild {
        type_index,
        namespace: ns.map(str::to_owned),
        name: name.into(),
        object: json!({"apiVersion": "test.io/v1", "kind": kind,
            "metadata": {"name": name, "namespace": ns}, "spec": {"v": version}}),
    }
}

fn desired(type_index: usize, name: &str, version: &str) -> DesiredChild {
    desired_in(Some(NS), type_index, name, version)
}

fn things(names: &[&str], version: &str) -> Vec<DesiredChild> {
    names.iter().map(|n| desired(0, n, version)).collect()
}

/// An observed Thing in `version`, with a Ready condition of `ready` (none when `None`).
fn thing_in(ns: &str, name: &str, version: &str, ready: Option<&str>) -> Arc<DynamicObject> {
    let conditions: Vec<Value> = ready
        .map(|s| json!({"type": "Ready", "status": s}))
        .into_iter()
        .collect();
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "test.io/v1", "kind": "Thing",
            "metadata": {"name": name, "namespace": ns, "generation": 2},
            "spec": {"v": version},
            "status": {"conditions": conditions},
        }))
        .expect("object"),
    )
}

fn thing(name: &str, version: &str, ready: Option<&str>) -> Arc<DynamicObject> {
    thing_in(NS, name, version, ready)
}

fn claims(names: &[&str]) -> Vec<ControllerRevisionChildren> {
    if names.is_empty() {
        return Vec::new();
    }
    vec![ControllerRevisionChildren {
        api_group: "test.io".into(),
        kind: "Thing".into(),
        names: names.iter().map(|n| (*n).to_owned()).collect(),
    }]
}

fn same_spec(observed: &DynamicObject, desired: &DesiredChild) -> bool {
    observed.data.get("spec") == desired.object.get("spec")
}

/// Runs the decision for a namespaced parent.
fn run(
    kinds: &[KindRule<'_>],
    revisions: &[Revision<'_>],
    observed: &Observed,
    status: Option<&Value>,
) -> Decision {
    decide(&Inputs {
        kinds,
        parent_namespaced: true,
        revisions,
        observed,
        up_to_date: &same_spec,
        current_status: status,
    })
}

fn versions(decision: &Decision) -> Vec<(String, String)> {
    decision
        .desired
        .iter()
        .map(|d| {
            (
                d.name.clone(),
                d.object["spec"]["v"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn a_new_parent_puts_every_child_on_the_latest_revision() {
    let checks = ready();
    let kinds = kinds(ChildUpdateMethod::RollingRecreate, &checks);
    let latest = things(&["a", "b"], "1");
    let decision = run(
        &kinds,
        &[Revision {
            name: "rev-1",
            claims: &[],
            desired: &latest,
        }],
        &vec![vec![], vec![]],
        None,
    );
    assert_eq!(decision.claims, vec![Some(claims(&["a", "b"]))]);
    assert_eq!(versions(&decision), pairs(&[("a", "1"), ("b", "1")]));
    assert_eq!(
        decision.condition,
        Condition {
            status: "True",
            reason: "OnLatestRevision",
            message: "latest ControllerRevision: rev-1".into(),
        }
    );
    assert_eq!(decision.stalled, None);
}

#[test]
fn one_child_moves_per_sync_in_the_hooks_order() {
    let checks = ready();
    let kinds = kinds(ChildUpdateMethod::RollingRecreate, &checks);
    // The hook lists c first: the order of the response, not of names, decides.
    let latest = things(&["c", "a", "b"], "2");
    let old = things(&["c", "a", "b"], "1");
    let observed = vec![
        vec![
            thing("a", "1", Some("True")),
            thing("b", "1", Some("True")),
            thing("c", "1", Some("True")),
        ],
        vec![],
    ];
    let old_claims = claims(&["a", "b", "c"]);
    let revisions = [
        Revision {
            name: "rev-2",
            claims: &[],
            desired: &latest,
        },
        Revision {
            name: "rev-1",
            claims: &old_claims,
            desired: &old,
        },
    ];
    let decision = run(&kinds, &revisions, &observed, None);
    assert_eq!(
        decision.claims,
        vec![Some(claims(&["c"])), Some(claims(&["a", "b"]))]
    );
    assert_eq!(
        versions(&decision),
        pairs(&[("c", "2"), ("a", "1"), ("b", "1")])
    );
    assert_eq!(decision.condition.reason, "RolloutProgressing");
    assert_eq!(decision.condition.message, "updating Thing c");
}

#[test]
fn the_next_child_waits_for_the_status_checks_of_the_moved_one() {
    let checks = ready();
    let kinds = kinds(ChildUpdateMethod::RollingRecreate, &checks);
    let latest = things(&["a", "b"], "2");
    let old = things(&["a", "b"], "1");
    let (on_latest, on_old) = (claims(&["a"]), claims(&["b"]));
    let revisions = [
        Revision {
            name: "rev-2",
            claims: &on_latest,
            desired: &latest,
        },
        Revision {
            name: "rev-1",
            claims: &on_old,
            desired: &old,
        },
    ];
    // a was re-created in the new version and reports no Ready condition yet.
    let observed = vec![
        vec![thing("a", "2", None), thing("b", "1", Some("True"))],
        vec![],
    ];
    let decision = run(&kinds, &revisions, &observed, None);
    assert_eq!(
        decision.claims,
        vec![Some(on_latest.clone()), Some(on_old.clone())]
    );
    assert_eq!(versions(&decision), pairs(&[("a", "2"), ("b", "1")]));
    let waiting = Condition {
        status: "False",
        reason: "RolloutWaiting",
        message: "child Thing a failed status check: required condition type missing: \"Ready\""
            .into(),
    };
    assert_eq!(decision.condition, waiting);
    assert_eq!(
        decision.stalled.as_deref(),
        Some(
            "rollout stopped: child Thing a failed status check: required condition type missing: \"Ready\""
        )
    );

    // Once the parent says so, the stall is not announced again.
    let mut status = Some(json!({"other": 1}));
    set_condition(&mut status, &waiting);
    let decision = run(&kinds, &revisions, &observed, status.as_ref());
    assert_eq!(decision.condition, waiting);
    assert_eq!(decision.stalled, None);

    // A wrong status is a failed check too, with what was wanted.
    let observed = vec![
        vec![
            thing("a", "2", Some("False")),
            thing("b", "1", Some("True")),
        ],
        vec![],
    ];
    let decision = run(&kinds, &revisions, &observed, status.as_ref());
    assert_eq!(
        decision.condition.message,
        "child Thing a failed status check: \"Ready\" condition status is \"False\" (want \"True\")"
    );
    assert!(decision.stalled.is_some(), "a different failure is news");

    // Ready: b moves.
    let observed = vec![
        vec![thing("a", "2", Some("True")), thing("b", "1", Some("True"))],
        vec![],
    ];
    let decision = run(&kinds, &revisions, &observed, status.as_ref());
    assert_eq!(decision.condition.message, "updating Thing b");
    assert_eq!(
        decision.claims,
        vec![Some(claims(&["a", "b"])), None],
        "rev-1 claims nothing: dropped"
    );
    assert_eq!(versions(&decision), pairs(&[("a", "2"), ("b", "2")]));
}

#[test]
fn a_moved_child_not_yet_written_or_not_yet_observed_holds_the_rollout() {
    let kinds = kinds(ChildUpdateMethod::RollingRecreate, &[]);
    let latest = things(&["a", "b"], "2");
    let old = things(&["a", "b"], "1");
    let (on_latest, on_old) = (claims(&["a"]), claims(&["b"]));
    let revisions = [
        Revision {
            name: "rev-2",
            claims: &on_latest,
            desired: &latest,
        },
        Revision {
            name: "rev-1",
            claims: &on_old,
            desired: &old,
        },
    ];
    let observed = vec![vec![thing("a", "1", None), thing("b", "1", None)], vec![]];
    let decision = run(&kinds, &revisions, &observed, None);
    assert_eq!(
        decision.condition.message,
        "child Thing a is not updated yet"
    );
    assert_eq!(
        decision.stalled, None,
        "waiting for our own write is no stall"
    );
    assert_eq!(versions(&decision), pairs(&[("a", "2"), ("b", "1")]));

    // Deleted for Recreate, not re-created yet.
    let observed = vec![vec![thing("b", "1", None)], vec![]];
    let decision = run(&kinds, &revisions, &observed, None);
    assert_eq!(decision.condition.message, "missing child Thing a");
    assert_eq!(versions(&decision), pairs(&[("a", "2"), ("b", "1")]));
}

#[test]
fn rolling_in_place_waits_for_the_child_to_observe_its_generation() {
    let kinds = kinds(ChildUpdateMethod::RollingInPlace, &[]);
    let latest = things(&["a", "b"], "2");
    let old = things(&["a", "b"], "1");
    let (on_latest, on_old) = (claims(&["a"]), claims(&["b"]));
    let revisions = [
        Revision {
            name: "rev-2",
            claims: &on_latest,
            desired: &latest,
        },
        Revision {
            name: "rev-1",
            claims: &on_old,
            desired: &old,
        },
    ];
    let with_observed_generation = |g: i64| {
        let mut a = (*thing("a", "2", None)).clone();
        a.data["status"]["observedGeneration"] = json!(g);
        Arc::new(a)
    };
    let observed = vec![
        vec![with_observed_generation(1), thing("b", "1", None)],
        vec![],
    ];
    let decision = run(&kinds, &revisions, &observed, None);
    assert_eq!(
        decision.condition.message,
        "child Thing a with RollingInPlace update strategy hasn't observed latest spec"
    );
    let observed = vec![
        vec![with_observed_generation(2), thing("b", "1", None)],
        vec![],
    ];
    assert_eq!(
        run(&kinds, &revisions, &observed, None).condition.message,
        "updating Thing b"
    );
    // A child that reports no observedGeneration is not waited for.
    let observed = vec![vec![thing("a", "2", None), thing("b", "1", None)], vec![]];
    assert_eq!(
        run(&kinds, &revisions, &observed, None).condition.message,
        "updating Thing b"
    );
}

#[test]
fn children_already_in_the_latest_state_move_at_once_and_a_rollback_reuses_the_old_revision() {
    let checks = ready();
    let kinds = kinds(ChildUpdateMethod::RollingRecreate, &checks);
    // Rolling back to "1" while a is already on "2": rev-1 is the latest again and still claims
    // b and c, which are in its state; a, on rev-2, is the one to move back.
    let latest = things(&["a", "b", "c"], "1");
    let newer = things(&["a", "b", "c"], "2");
    let (on_latest, on_newer) = (claims(&["b", "c"]), claims(&["a"]));
    let revisions = [
        Revision {
            name: "rev-1",
            claims: &on_latest,
            desired: &latest,
        },
        Revision {
            name: "rev-2",
            claims: &on_newer,
            desired: &newer,
        },
    ];
    let observed = vec![
        vec![
            thing("a", "2", None),
            thing("b", "1", Some("True")),
            thing("c", "1", Some("True")),
        ],
        vec![],
    ];
    let decision = run(&kinds, &revisions, &observed, None);
    assert_eq!(decision.condition.message, "updating Thing a");
    assert_eq!(decision.claims, vec![Some(claims(&["b", "c", "a"])), None]);
    assert_eq!(
        versions(&decision),
        pairs(&[("a", "1"), ("b", "1"), ("c", "1")])
    );

    // A child an older revision claims but that already has the latest state moves with no
    // check and no write.
    let on_newer = claims(&["a", "b"]);
    let revisions = [
        Revision {
            name: "rev-1",
            claims: &[],
            desired: &latest,
        },
        Revision {
            name: "rev-2",
            claims: &on_newer,
            desired: &newer,
        },
    ];
    let observed = vec![vec![thing("a", "2", None), thing("b", "1", None)], vec![]];
    let latest_ab = things(&["a", "b"], "1");
    let revisions = [
        Revision {
            desired: &latest_ab,
            ..revisions[0]
        },
        Revision {
            desired: &newer,
            ..revisions[1]
        },
    ];
    let decision = run(&kinds, &revisions, &observed, None);
    // b moved for free; a must wait for b's Ready check.
    assert_eq!(
        decision.claims,
        vec![Some(claims(&["b"])), Some(claims(&["a"]))]
    );
    assert_eq!(
        decision.condition.message,
        "child Thing b failed status check: required condition type missing: \"Ready\""
    );
    assert_eq!(versions(&decision), pairs(&[("a", "2"), ("b", "1")]));
}

#[test]
fn claims_on_undesired_children_or_kinds_that_stopped_rolling_are_dropped() {
    let kinds = kinds(ChildUpdateMethod::RollingRecreate, &[]);
    let latest = vec![desired(0, "a", "2"), desired(1, "cm", "2")];
    let old = vec![
        desired(0, "a", "1"),
        desired(0, "gone", "1"),
        desired(1, "cm", "1"),
    ];
    let mut old_claims = claims(&["a", "gone"]);
    old_claims.push(ControllerRevisionChildren {
        api_group: "".into(),
        kind: "ConfigMap".into(),
        names: vec!["cm".into()],
    });
    // The latest claims a too: it wins over the older claim.
    let latest_claims = claims(&["a"]);
    let revisions = [
        Revision {
            name: "rev-2",
            claims: &latest_claims,
            desired: &latest,
        },
        Revision {
            name: "rev-1",
            claims: &old_claims,
            desired: &old,
        },
    ];
    let observed = vec![vec![thing("a", "2", None)], vec![]];
    let decision = run(&kinds, &revisions, &observed, None);
    assert_eq!(decision.claims, vec![Some(claims(&["a"])), None]);
    assert_eq!(decision.condition.reason, "OnLatestRevision");
    // The ConfigMap (not rolling) always gets the latest state.
    assert_eq!(versions(&decision), pairs(&[("a", "2"), ("cm", "2")]));
}

#[test]
fn namespaced_parents_find_their_moved_children() {
    // Metacontroller's bug: observed children keyed `ns/name`, revisions by name, so a moved
    // child is "missing" for ever. Here both sides use the same key.
    let kinds = kinds(ChildUpdateMethod::RollingRecreate, &[]);
    let latest = things(&["a", "b"], "2");
    let old = things(&["a", "b"], "1");
    let (on_latest, on_old) = (claims(&["a"]), claims(&["b"]));
    let revisions = [
        Revision {
            name: "rev-2",
            claims: &on_latest,
            desired: &latest,
        },
        Revision {
            name: "rev-1",
            claims: &on_old,
            desired: &old,
        },
    ];
    let observed = vec![vec![thing("a", "2", None), thing("b", "1", None)], vec![]];
    assert_eq!(
        run(&kinds, &revisions, &observed, None).condition.message,
        "updating Thing b"
    );
}

#[test]
fn a_cluster_scoped_parent_keys_namespaced_children_by_namespace_and_name() {
    let kinds = kinds(ChildUpdateMethod::RollingRecreate, &[]);
    // Two children of the same name in two namespaces are two children.
    let latest = vec![
        desired_in(Some("x"), 0, "a", "2"),
        desired_in(Some("y"), 0, "a", "2"),
    ];
    let old = vec![
        desired_in(Some("x"), 0, "a", "1"),
        desired_in(Some("y"), 0, "a", "1"),
    ];
    let (on_latest, on_old) = (claims(&["x/a"]), claims(&["y/a"]));
    let revisions = [
        Revision {
            name: "rev-2",
            claims: &on_latest,
            desired: &latest,
        },
        Revision {
            name: "rev-1",
            claims: &on_old,
            desired: &old,
        },
    ];
    let observed = vec![
        vec![thing_in("x", "a", "2", None), thing_in("y", "a", "1", None)],
        vec![],
    ];
    let decision = decide(&Inputs {
        kinds: &kinds,
        parent_namespaced: false,
        revisions: &revisions,
        observed: &observed,
        up_to_date: &same_spec,
        current_status: None,
    });
    assert_eq!(decision.condition.message, "updating Thing y/a");
    assert_eq!(decision.claims, vec![Some(claims(&["x/a", "y/a"])), None]);
}

#[test]
fn a_reason_check_names_the_reason() {
    let checks = vec![StatusConditionCheck {
        type_: "Ready".into(),
        status: None,
        reason: Some("AllGood".into()),
    }];
    let mut a = (*thing("a", "2", Some("True"))).clone();
    a.data["status"]["conditions"][0]["reason"] = json!("Meh");
    assert_eq!(
        status_check(&checks, &a.data),
        Err("\"Ready\" condition reason is \"Meh\" (want \"AllGood\")".into())
    );
    a.data["status"]["conditions"][0]["reason"] = json!("AllGood");
    assert_eq!(status_check(&checks, &a.data), Ok(()));
}

#[test]
fn the_updated_condition_replaces_its_predecessor_and_keeps_the_rest() {
    let mut status = Some(json!({"conditions": [
        {"type": "Other", "status": "True"},
        {"type": "Updated", "status": "True", "reason": "OnLatestRevision", "message": "old"},
    ], "x": 1}));
    let waiting = Condition {
        status: "False",
        reason: "RolloutWaiting",
        message: "m".into(),
    };
    set_condition(&mut status, &waiting);
    assert_eq!(
        status,
        Some(json!({"conditions": [
            {"type": "Other", "status": "True"},
            {"type": "Updated", "status": "False", "reason": "RolloutWaiting", "message": "m"},
        ], "x": 1}))
    );
    let mut none = None;
    set_condition(&mut none, &waiting);
    assert_eq!(
        none,
        Some(json!({"conditions": [
            {"type": "Updated", "status": "False", "reason": "RolloutWaiting", "message": "m"},
        ]}))
    );
}
