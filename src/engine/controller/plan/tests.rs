use std::sync::Arc;

use kube::api::DynamicObject;
use serde_json::{Value, json};

use super::*;

fn object(value: Value) -> DynamicObject {
    serde_json::from_value(value).expect("a valid object")
}

fn parent(extra: Value) -> DynamicObject {
    let mut base = json!({
        "apiVersion": "x.io/v1", "kind": "Thing",
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-p", "resourceVersion": "5", "generation": 2},
    });
    json_patch::merge(&mut base, &extra);
    object(base)
}

fn child(name: &str, extra: Value) -> Arc<DynamicObject> {
    let mut base = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns", "uid": format!("u-{name}")}});
    json_patch::merge(&mut base, &extra);
    Arc::new(object(base))
}

fn desired(name: &str) -> DesiredChild {
    DesiredChild {
        type_index: 0,
        namespace: Some("ns".into()),
        name: name.into(),
        object: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}),
    }
}

const COMPOSITE: Kind = Kind::Composite {
    generate_selector: false,
};

fn nobody(_: usize, _: Option<&str>, _: &str) -> Option<String> {
    None
}

fn run(
    kind: &Kind,
    parent: &DynamicObject,
    observed: &Observed,
    desired: Vec<DesiredChild>,
    outcome: &HookOutcome,
    finalizing: bool,
    has_finalize_hook: bool,
) -> Plan {
    plan(Inputs {
        kind,
        parent,
        observed,
        desired,
        outcome,
        finalizing,
        finalizer: "metacontroller.io/compositecontroller-c",
        has_finalize_hook,
        owner_of_existing: &nobody,
    })
}

fn names(plan: &Plan) -> (Vec<String>, Vec<String>) {
    let children = plan.children.as_ref().expect("children are managed");
    (
        children.deletes.iter().map(|(_, c)| c.name_any()).collect(),
        children
            .writes
            .iter()
            .map(|w| w.desired.name.clone())
            .collect(),
    )
}

#[test]
fn undesired_children_are_deleted_and_desired_ones_written() {
    let observed = vec![vec![
        child("keep", json!({})),
        child("drop", json!({})),
        child(
            "going",
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
        ),
    ]];
    let outcome = HookOutcome::default();
    let p = run(
        &COMPOSITE,
        &parent(json!({})),
        &observed,
        vec![desired("keep"), desired("new")],
        &outcome,
        false,
        false,
    );
    assert_eq!(
        names(&p),
        (vec!["drop".into()], vec!["keep".into(), "new".into()])
    );
    let writes = &p.children.as_ref().expect("managed").writes;
    assert!(writes[0].observed.is_some() && writes[1].observed.is_none());
    assert_eq!(p.deleting_all, None);
    assert_eq!(p.metadata, None);
}

#[test]
fn a_name_held_by_another_owner_is_refused_not_taken() {
    let other = |_: usize, _: Option<&str>, name: &str| (name == "taken").then(|| "u-other".into());
    let observed = vec![vec![]];
    let outcome = HookOutcome::default();
    let p = plan(Inputs {
        kind: &COMPOSITE,
        parent: &parent(json!({})),
        observed: &observed,
        desired: vec![desired("taken"), desired("free")],
        outcome: &outcome,
        finalizing: false,
        finalizer: "f",
        has_finalize_hook: false,
        owner_of_existing: &other,
    });
    let children = p.children.expect("managed");
    assert_eq!(children.writes.len(), 1);
    assert_eq!(
        children.refused[0].to_string(),
        "ConfigMap taken exists but is controlled by another owner; refusing to take it over"
    );
}

#[test]
fn an_empty_answer_deletes_all_and_says_so() {
    let observed = vec![vec![child("a", json!({})), child("b", json!({}))]];
    let outcome = HookOutcome::default();
    let p = run(
        &COMPOSITE,
        &parent(json!({})),
        &observed,
        vec![],
        &outcome,
        false,
        false,
    );
    assert_eq!(p.deleting_all, Some(2));
    assert_eq!(names(&p).0.len(), 2);
    // Finalizing is expected to clean up: no warning.
    let p = run(
        &COMPOSITE,
        &parent(json!({})),
        &observed,
        vec![],
        &outcome,
        true,
        true,
    );
    assert_eq!(p.deleting_all, None);
}

#[test]
fn composite_status_is_replaced_with_observed_generation() {
    let outcome = HookOutcome {
        status: Some(json!({"ready": true})),
        ..HookOutcome::default()
    };
    let p = run(
        &COMPOSITE,
        &parent(json!({"status": {"old": 1}})),
        &vec![vec![]],
        vec![],
        &outcome,
        false,
        false,
    );
    let status = p.status.expect("a status write");
    assert_eq!(
        status.desired,
        json!({"ready": true, "observedGeneration": 2})
    );
    assert_eq!(
        status.patch,
        json!({"old": null, "ready": true, "observedGeneration": 2})
    );
    // Already there: nothing to write.
    let p = run(
        &COMPOSITE,
        &parent(json!({"status": {"ready": true, "observedGeneration": 2}})),
        &vec![vec![]],
        vec![],
        &outcome,
        false,
        false,
    );
    assert_eq!(p.status, None);
}

#[test]
fn decorator_changes_are_merged_not_replaced() {
    let target = parent(json!({"metadata": {
        "labels": {"theirs": "1", "mine": "old", "gone": "x"},
        "annotations": {"a": "1"}},
        "status": {"replicas": 3, "decorated": false}}));
    let outcome = HookOutcome {
        labels: [
            ("mine".to_owned(), Some("new".to_owned())),
            ("gone".to_owned(), None),
            ("absent".to_owned(), None),
        ]
        .into(),
        annotations: [("a".to_owned(), Some("1".to_owned()))].into(),
        status: Some(json!({"decorated": true})),
        ..HookOutcome::default()
    };
    let p = run(
        &Kind::Decorator,
        &target,
        &vec![vec![]],
        vec![],
        &outcome,
        false,
        false,
    );
    // Only what changes: an annotation already set and a label already absent are not sent.
    assert_eq!(
        p.metadata,
        Some(json!({"metadata": {"labels": {"mine": "new", "gone": null}}}))
    );
    let status = p.status.expect("status changes");
    assert_eq!(status.patch, json!({"decorated": true}));
    assert_eq!(status.desired, json!({"replicas": 3, "decorated": true}));

    // A null status leaves it alone; labels already as asked cost nothing.
    let quiet = HookOutcome {
        labels: [("theirs".to_owned(), Some("1".to_owned()))].into(),
        ..HookOutcome::default()
    };
    let p = run(
        &Kind::Decorator,
        &target,
        &vec![vec![]],
        vec![],
        &quiet,
        false,
        false,
    );
    assert_eq!((p.metadata, p.status), (None, None));
}

#[test]
fn finalized_removes_only_our_finalizer_with_a_precondition_and_stops_managing() {
    let deleting = parent(json!({"metadata": {
        "deletionTimestamp": "2026-01-01T00:00:00Z",
        "finalizers": ["other", "metacontroller.io/compositecontroller-c"]}}));
    let observed = vec![vec![child("a", json!({}))]];
    let done = HookOutcome {
        finalized: true,
        ..HookOutcome::default()
    };
    let p = run(&COMPOSITE, &deleting, &observed, vec![], &done, true, true);
    assert_eq!(
        p.metadata,
        Some(json!({"metadata": {"finalizers": ["other"], "resourceVersion": "5"}}))
    );
    assert!(
        p.children.is_none(),
        "the finalizer is gone: the GC takes the children"
    );

    // Not finalized yet: children are managed (the hook cleans up), the finalizer stays.
    let p = run(
        &COMPOSITE,
        &deleting,
        &observed,
        vec![],
        &HookOutcome::default(),
        true,
        true,
    );
    assert_eq!(p.metadata, None);
    assert_eq!(names(&p).0, vec!["a".to_owned()]);
}

#[test]
fn a_parent_being_deleted_without_our_finalizer_or_under_gc_leaves_children_alone() {
    let observed = vec![vec![child("a", json!({}))]];
    let outcome = HookOutcome::default();
    let deleting = parent(json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}));
    assert!(
        run(
            &COMPOSITE,
            &deleting,
            &observed,
            vec![],
            &outcome,
            false,
            false
        )
        .children
        .is_none()
    );
    let foreground = parent(json!({"metadata": {
        "deletionTimestamp": "2026-01-01T00:00:00Z",
        "finalizers": ["foregroundDeletion", "metacontroller.io/compositecontroller-c"]}}));
    assert!(
        run(
            &COMPOSITE,
            &foreground,
            &observed,
            vec![],
            &outcome,
            true,
            true
        )
        .children
        .is_none()
    );
}

#[test]
fn resync_after_is_positive_and_capped() {
    let at = |seconds: f64| {
        let outcome = HookOutcome {
            resync_after_seconds: seconds,
            ..HookOutcome::default()
        };
        run(
            &COMPOSITE,
            &parent(json!({})),
            &vec![vec![]],
            vec![],
            &outcome,
            false,
            false,
        )
        .resync_after
    };
    assert_eq!(at(0.0), None);
    assert_eq!(at(-3.0), None);
    assert_eq!(at(0.5), Some(Duration::from_millis(500)));
    assert_eq!(at(1e300), Some(Duration::from_secs(1_000_000_000)));
}
