use serde_json::json;

use super::*;

fn types() -> Vec<ChildType> {
    vec![
        ChildType {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespaced: true,
        },
        ChildType {
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind: "ClusterRole".into(),
            namespaced: false,
        },
    ]
}

fn deployment(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": "x"}}})
}

fn check(
    children: Vec<Value>,
    parent_ns: Option<&str>,
    selector: Option<&Selector>,
) -> Result<Vec<DesiredChild>, ResponseError> {
    let types = types();
    validate_children(
        children,
        &ChildRules {
            parent_namespace: parent_ns,
            types: &types,
            selector,
            field: "children",
        },
    )
}

fn problem(children: Vec<Value>, parent_ns: Option<&str>) -> String {
    check(children, parent_ns, None)
        .expect_err("must fail")
        .to_string()
}

#[test]
fn map_keys_follow_v1_and_v2() {
    assert_eq!(type_key("StatefulSet", "apps/v1"), "StatefulSet.apps/v1");
    assert_eq!(type_key("Pod", "v1"), "Pod.v1");
    // v1: name for a namespaced parent, ns/name for a cluster-scoped parent's namespaced child.
    assert_eq!(object_key(ProtocolVersion::V1, true, Some("ns"), "a"), "a");
    assert_eq!(
        object_key(ProtocolVersion::V1, false, Some("ns"), "a"),
        "ns/a"
    );
    assert_eq!(object_key(ProtocolVersion::V1, false, None, "a"), "a");
    // v2: ns/name for every namespaced object.
    assert_eq!(
        object_key(ProtocolVersion::V2, true, Some("ns"), "a"),
        "ns/a"
    );
    assert_eq!(object_key(ProtocolVersion::V2, true, None, "a"), "a");
}

#[test]
fn namespace_is_defaulted_to_the_parents() {
    let out = check(vec![deployment("a")], Some("team"), None).expect("valid");
    assert_eq!(out[0].namespace.as_deref(), Some("team"));
    assert_eq!(out[0].object["metadata"]["namespace"], "team");
    assert_eq!(out[0].type_index, 0);
}

#[test]
fn invalid_children_are_named_precisely() {
    assert_eq!(
        problem(vec![json!("x")], Some("ns")),
        "children[0]: must be an object, got a string"
    );
    assert_eq!(
        problem(
            vec![json!({"apiVersion": "apps/v1", "metadata": {"name": "a"}})],
            Some("ns")
        ),
        "children[0]: kind is missing"
    );
    assert_eq!(
        problem(
            vec![json!({"kind": "Deployment", "metadata": {"name": "a"}})],
            Some("ns")
        ),
        "children[0] (Deployment \"a\"): apiVersion is missing"
    );
    assert_eq!(
        problem(
            vec![json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}})],
            Some("ns")
        ),
        "children[0]: metadata.name is missing"
    );
    assert_eq!(
        problem(
            vec![json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})],
            Some("ns")
        ),
        "children[0] (Secret \"s\"): type Secret.v1 is not declared by the controller (declared: Deployment.apps/v1, ClusterRole.rbac.authorization.k8s.io/v1)"
    );
    let mut other_ns = deployment("a");
    other_ns["metadata"]["namespace"] = json!("elsewhere");
    assert_eq!(
        problem(vec![deployment("ok"), other_ns], Some("ns")),
        "children[1] (Deployment \"a\"): metadata.namespace is \"elsewhere\", but children must be in the parent's namespace \"ns\""
    );
    assert_eq!(
        problem(vec![deployment("a")], None),
        "children[0] (Deployment \"a\"): metadata.namespace is missing: the parent is cluster-scoped, so a namespaced child must name its namespace"
    );
    assert_eq!(
        problem(
            vec![
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r", "namespace": "ns"}})
            ],
            Some("ns")
        ),
        "children[0] (ClusterRole \"r\"): metadata.namespace is \"ns\", but ClusterRole is cluster-scoped"
    );
    assert_eq!(
        problem(vec![deployment("a"), deployment("a")], Some("ns")),
        "children[1] (Deployment \"a\"): is a duplicate: the same child appears twice"
    );
}

#[test]
fn a_namespaced_parent_cannot_own_a_cluster_scoped_child() {
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}});
    assert_eq!(
        problem(vec![role.clone()], Some("ns")),
        "children[0] (ClusterRole \"r\"): ClusterRole is cluster-scoped, but children must be in the parent's namespace \"ns\": a namespaced parent cannot own a cluster-scoped object"
    );
    let out = check(vec![role], None, None).expect("a cluster-scoped parent may");
    assert_eq!(out[0].namespace, None);
}

#[test]
fn children_must_match_the_selector() {
    let sel = Selector::equals(&[("app", "y")]);
    let err = check(vec![deployment("a")], Some("ns"), Some(&sel)).expect_err("mismatch");
    assert_eq!(
        err.to_string(),
        "children[0] (Deployment \"a\"): metadata.labels {\"app\": \"x\"} do not match the parent's selector app=y"
    );
    let sel = Selector::equals(&[("app", "x")]);
    assert!(check(vec![deployment("a")], Some("ns"), Some(&sel)).is_ok());
}

#[test]
fn responses_decode_loose_and_strict() {
    let v = json!({"children": null, "status": {"a": 1}, "extra": true, "resyncAfterSeconds": 1.5});
    let r: CompositeResponse =
        decode(v.clone(), DecodeMode::Loose, COMPOSITE_RESPONSE_FIELDS).expect("loose");
    assert!(r.children.is_empty());
    assert_eq!(r.resync_after_seconds, 1.5);
    assert_eq!(r.status, Some(json!({"a": 1})));
    let err = decode::<CompositeResponse>(v, DecodeMode::Strict, COMPOSITE_RESPONSE_FIELDS)
        .expect_err("strict");
    assert_eq!(
        err.to_string(),
        "the hook response has unknown field(s) extra (strict decoding)"
    );
    let err = decode::<CompositeResponse>(json!([1]), DecodeMode::Loose, COMPOSITE_RESPONSE_FIELDS)
        .expect_err("array");
    assert_eq!(
        err.to_string(),
        "the hook response is not a JSON object (got an array)"
    );
    let err = decode::<CompositeResponse>(
        json!({"children": "x"}),
        DecodeMode::Loose,
        COMPOSITE_RESPONSE_FIELDS,
    )
    .expect_err("shape");
    assert!(
        err.to_string()
            .starts_with("the hook response does not fit the protocol: invalid type: string"),
        "{err}"
    );
}

#[test]
fn decorator_labels_null_means_delete() {
    let r: DecoratorResponse = decode(
        json!({"labels": {"keep": "v", "drop": null}, "status": null}),
        DecodeMode::Strict,
        DECORATOR_RESPONSE_FIELDS,
    )
    .expect("valid");
    assert_eq!(r.labels.get("keep"), Some(&Some("v".to_owned())));
    assert_eq!(r.labels.get("drop"), Some(&None));
    assert_eq!(r.status, None);
}

#[test]
fn request_shapes_match_metacontroller() {
    let req = CompositeRequest {
        controller: json!({"kind": "CompositeController"}),
        parent: json!({"kind": "P"}),
        children: [("Pod.v1".to_owned(), Default::default())]
            .into_iter()
            .collect(),
        related: Default::default(),
        finalizing: false,
    };
    assert_eq!(
        serde_json::to_value(&req).expect("serialize"),
        json!({"controller": {"kind": "CompositeController"}, "parent": {"kind": "P"},
               "children": {"Pod.v1": {}}, "related": {}, "finalizing": false})
    );
    let customize: CustomizeResponse = decode(
        json!({"relatedResources": [{"apiVersion": "v1", "resource": "configmaps", "namespace": "a", "names": ["x"]}]}),
        DecodeMode::Strict,
        CUSTOMIZE_RESPONSE_FIELDS,
    )
    .expect("valid");
    assert_eq!(customize.related_resources[0].names, vec!["x"]);
}

#[test]
fn strict_customize_decoding_names_unknown_fields_inside_rules() {
    let misspelt = json!({"relatedResources": [
        {"apiVersion": "v1", "resource": "configmaps", "names": ["x"]},
        {"apiVersion": "v1", "resource": "secrets", "nmes": ["x"],
         "labelSelector": {"matchLabel": {"a": "b"}, "matchExpressions": [{"key": "k", "operator": "Exists", "value": []}]}},
    ], "events": []});
    let err = decode::<CustomizeResponse>(
        misspelt.clone(),
        DecodeMode::Strict,
        CUSTOMIZE_RESPONSE_FIELDS,
    )
    .expect_err("strict");
    assert_eq!(
        err.to_string(),
        "the hook response has unknown field(s) events, relatedResources[1].labelSelector.matchExpressions[0].value, relatedResources[1].labelSelector.matchLabel, relatedResources[1].nmes (strict decoding)"
    );
    // Loose decoding ignores them: the misspelt rule selects everything, as in Metacontroller.
    let loose: CustomizeResponse =
        decode(misspelt, DecodeMode::Loose, CUSTOMIZE_RESPONSE_FIELDS).expect("loose");
    assert!(loose.related_resources[1].names.is_empty());
}

#[test]
fn strict_decoding_leaves_free_form_values_alone() {
    let r: CompositeResponse = decode(
        json!({"status": {"anything": {"deep": 1}}, "children": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "extra": 1}]}),
        DecodeMode::Strict,
        COMPOSITE_RESPONSE_FIELDS,
    )
    .expect("status and children are free-form");
    assert_eq!(r.children[0]["extra"], 1);
    let d: DecoratorResponse = decode(
        json!({"labels": {"any-key": "v"}, "annotations": {"other": null}}),
        DecodeMode::Strict,
        DECORATOR_RESPONSE_FIELDS,
    )
    .expect("label maps are free-form");
    assert_eq!(d.labels.len(), 1);
}

#[test]
fn a_status_that_is_not_an_object_fails_the_sync() {
    for mode in [DecodeMode::Loose, DecodeMode::Strict] {
        let err = decode::<CompositeResponse>(
            json!({"status": "ready", "children": []}),
            mode,
            COMPOSITE_RESPONSE_FIELDS,
        )
        .expect_err("a string status");
        assert_eq!(
            err.to_string(),
            "the hook response does not fit the protocol: status must be an object or null, got a string"
        );
        let err =
            decode::<DecoratorResponse>(json!({"status": [1]}), mode, DECORATOR_RESPONSE_FIELDS)
                .expect_err("a list status");
        assert!(err.to_string().ends_with("got an array"), "{err}");
    }
    let r: CompositeResponse = decode(
        json!({"status": null}),
        DecodeMode::Strict,
        COMPOSITE_RESPONSE_FIELDS,
    )
    .expect("null status");
    assert_eq!(r.status, None);
}
