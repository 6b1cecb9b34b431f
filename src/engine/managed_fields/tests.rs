use serde_json::json;

use super::*;

fn object_with(entries: Value) -> Value {
    json!({"metadata": {"name": "x", "managedFields": entries}})
}

fn cm_fields() -> Value {
    json!({
        "f:data": {".": {}, "f:a": {}, "f:b": {}},
        "f:metadata": {
            "f:labels": {"f:tier": {}, "f:team": {}},
            "f:ownerReferences": {".": {}, "k:{\"uid\":\"u1\"}": {}},
        },
        "f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}},
                   "f:finalizers": {"v:\"a\"": {}}},
    })
}

fn cm_desired() -> Value {
    json!({
        "data": {"a": "1", "b": "2"},
        "metadata": {
            "labels": {"tier": "gold", "team": "blue"},
            "ownerReferences": [{"uid": "u1", "name": "p"}],
        },
        "spec": {"ports": [{"port": 80.0, "protocol": "TCP"}], "finalizers": ["a"]},
    })
}

#[test]
fn nothing_unwanted_when_desired_covers_the_owned_fields() {
    assert_eq!(first_unwanted(&cm_fields(), &cm_desired()), None);
}

#[test]
fn a_dropped_label_data_key_list_item_or_set_item_is_unwanted() {
    let cases = [
        ("/metadata/labels/team", ".metadata.labels.team"),
        ("/data/b", ".data.b"),
    ];
    for (pointer, path) in cases {
        let mut desired = cm_desired();
        let (parent, key) = pointer.rsplit_once('/').expect("pointer");
        desired
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .expect("parent")
            .remove(key);
        assert_eq!(
            first_unwanted(&cm_fields(), &desired).as_deref(),
            Some(path)
        );
    }
    let mut desired = cm_desired();
    desired["spec"]["ports"] = json!([{"port": 81, "protocol": "TCP"}]);
    assert_eq!(
        first_unwanted(&cm_fields(), &desired).as_deref(),
        Some(".spec.ports[{\"port\":80,\"protocol\":\"TCP\"}]")
    );
    let mut desired = cm_desired();
    desired["spec"]["finalizers"] = json!(["b"]);
    assert_eq!(
        first_unwanted(&cm_fields(), &desired).as_deref(),
        Some(".spec.finalizers[\"a\"]")
    );
    let mut desired = cm_desired();
    desired["metadata"]["labels"]["team"] = Value::Null;
    assert!(
        first_unwanted(&cm_fields(), &desired).is_some(),
        "null removes"
    );
}

#[test]
fn unknown_keys_and_indexes() {
    let fields = json!({"f:list": {"i:1": {}, "z:weird": {}}});
    assert_eq!(first_unwanted(&fields, &json!({"list": [1, 2]})), None);
    assert_eq!(
        first_unwanted(&fields, &json!({"list": [1]})).as_deref(),
        Some(".list[1]")
    );
}

#[test]
fn entry_picks_manager_operation_and_main_resource() {
    let obj = object_with(json!([
        {"manager": "kubelambda", "operation": "Apply", "subresource": "status", "fieldsV1": {"f:status": {}}},
        {"manager": "kubelambda", "operation": "Update", "fieldsV1": {"f:a": {}}},
        {"manager": "kubelambda", "operation": "Apply", "fieldsV1": {"f:b": {}}},
    ]));
    assert_eq!(entry(&obj, "kubelambda", APPLY), Some(&json!({"f:b": {}})));
    assert_eq!(
        entry(&obj, "kubelambda", "Update"),
        Some(&json!({"f:a": {}}))
    );
    assert_eq!(entry(&obj, "other", APPLY), None);
}

#[test]
fn project_keeps_owned_fields_with_observed_values() {
    let observed = json!({
        "data": {"a": "1", "b": "2", "c": "others"},
        "metadata": {"labels": {"tier": "gold", "team": "blue", "x": "y"},
                     "ownerReferences": [{"uid": "u1", "name": "p"}, {"uid": "u2"}]},
        "spec": {"ports": [{"port": 80, "protocol": "TCP", "name": "web"}, {"port": 9}],
                 "finalizers": ["z", "a"]},
    });
    assert_eq!(
        project(&cm_fields(), &observed),
        json!({
            "data": {"a": "1", "b": "2"},
            "metadata": {"labels": {"tier": "gold", "team": "blue"},
                         "ownerReferences": [{"uid": "u1", "name": "p"}]},
            "spec": {"ports": [{"port": 80}], "finalizers": ["a"]},
        })
    );
}

#[test]
fn union_is_deep() {
    let mut a = json!({"f:a": {"f:x": {}}, "f:b": {}});
    union(&mut a, &json!({"f:a": {"f:y": {}}, "f:c": {}}));
    assert_eq!(
        a,
        json!({"f:a": {"f:x": {}, "f:y": {}}, "f:b": {}, "f:c": {}})
    );
}

#[test]
fn migration_moves_update_entries_of_ours_and_previous_into_one_apply_entry() {
    let obj = object_with(json!([
        {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:k": {}}},
        {"manager": "metacontroller", "operation": "Update", "fieldsV1": {"f:a": {}}},
        {"manager": "kubelambda", "operation": "Update", "time": "t1", "fieldsV1": {"f:b": {}}},
        {"manager": "kubelambda", "operation": "Apply", "time": "t2", "fieldsV1": {"f:c": {}}},
        {"manager": "kubelambda", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {}}},
    ]));
    let out = migrated_entries(&obj, "kubelambda", &["metacontroller"]).expect("migrates");
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(out[0]["manager"], "kube-controller-manager");
    assert_eq!(out[1]["subresource"], "status");
    assert_eq!(
        out[2],
        json!({"manager": "kubelambda", "operation": "Apply", "time": "t2",
               "fieldsType": "FieldsV1", "fieldsV1": {"f:a": {}, "f:b": {}, "f:c": {}}})
    );
}

#[test]
fn no_migration_when_only_our_apply_entry_exists() {
    let obj = object_with(json!([
        {"manager": "kubelambda", "operation": "Apply", "fieldsV1": {"f:c": {}}},
        {"manager": "someone", "operation": "Update", "fieldsV1": {"f:d": {}}},
    ]));
    assert_eq!(
        migrated_entries(&obj, "kubelambda", &["metacontroller"]),
        None
    );
    assert_eq!(migrated_entries(&json!({}), "kubelambda", &[]), None);
}

/// The server records a port's key with the `protocol` it defaulted; a desired port without
/// `protocol` is still the same item (catset's Pods were recreated in a loop without this).
#[test]
fn a_key_field_the_server_defaulted_still_matches() {
    let mut desired = cm_desired();
    desired["spec"]["ports"] = json!([{"port": 80}]);
    assert_eq!(first_unwanted(&cm_fields(), &desired), None);
    // Two items whose present fields both match are ambiguous: not the same item.
    desired["spec"]["ports"] = json!([{"port": 81}]);
    assert!(first_unwanted(&cm_fields(), &desired).is_some());
    desired["spec"]["ports"] = json!([{"protocol": "TCP"}, {"protocol": "TCP", "name": "x"}]);
    assert!(first_unwanted(&cm_fields(), &desired).is_some());
}
