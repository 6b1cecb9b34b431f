use serde_json::json;

use super::*;

fn obj(namespace: Option<&str>, name: &str, labels: Value) -> Arc<DynamicObject> {
    let mut meta = json!({"name": name, "labels": labels});
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    Arc::new(
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}))
            .expect("object"),
    )
}

fn namespace(name: &str, labels: Value) -> Arc<DynamicObject> {
    Arc::new(
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}))
            .expect("namespace"),
    )
}

/// ConfigMaps `a` (role=x) and `b` in `home`, `c` (role=x) and `d` in `away`.
fn objects() -> Vec<Arc<DynamicObject>> {
    vec![
        obj(Some("home"), "a", json!({"role": "x"})),
        obj(Some("home"), "b", json!({})),
        obj(Some("away"), "c", json!({"role": "x"})),
        obj(Some("away"), "d", json!({})),
    ]
}

fn rule(value: Value) -> RelatedResourceRule {
    let mut value = value;
    value["apiVersion"] = json!("v1");
    value["resource"] = json!("configmaps");
    serde_json::from_value(value).expect("rule")
}

fn scope(customize: ProtocolVersion, parent_ns: Option<&str>) -> Scope<'_> {
    Scope {
        customize,
        parent_ns,
        related_namespaced: true,
    }
}

/// The selected objects as `namespace/name`, sorted.
fn names(rule_json: Value, scope: &Scope<'_>) -> Result<Vec<String>, String> {
    let namespaces = [
        namespace("home", json!({"team": "red"})),
        namespace("away", json!({"team": "blue"})),
    ];
    let mut out: Vec<String> = select(0, &rule(rule_json), scope, &objects(), &namespaces)
        .map_err(|e| e.to_string())?
        .iter()
        .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
        .collect();
    out.sort();
    Ok(out)
}

const V1: ProtocolVersion = ProtocolVersion::V1;
const V2: ProtocolVersion = ProtocolVersion::V2;

#[test]
fn customize_v1_keeps_a_namespaced_parent_to_its_namespace() {
    let home = scope(V1, Some("home"));
    let by_label = json!({"labelSelector": {"matchLabels": {"role": "x"}}});
    assert_eq!(names(by_label.clone(), &home), Ok(vec!["home/a".into()]));
    assert_eq!(
        names(json!({}), &home),
        Ok(vec!["home/a".into(), "home/b".into()])
    );
    assert_eq!(
        names(json!({"namespace": "away", "names": ["c"]}), &home),
        Err("relatedResources[0]: namespace \"away\" is not the parent's (\"home\"); a customize hook of version v1 reads only the parent's namespace (use version v2)".into())
    );
    assert!(
        names(json!({"namespace": "away", "labelSelector": {}}), &home)
            .expect_err("other namespace")
            .contains("version v1")
    );
    assert_eq!(
        names(json!({"namespaceSelector": {"matchLabels": {"team": "blue"}}}), &home),
        Err("relatedResources[0]: namespaceSelector needs a customize hook of version v2 for a namespaced parent".into())
    );
    // A cluster-scoped parent has no such limit, even under v1.
    assert_eq!(
        names(by_label, &scope(V1, None)),
        Ok(vec!["away/c".into(), "home/a".into()])
    );
}

#[test]
fn customize_v2_reads_any_namespace() {
    let home = scope(V2, Some("home"));
    assert_eq!(
        names(
            json!({"labelSelector": {"matchLabels": {"role": "x"}}}),
            &home
        ),
        Ok(vec!["away/c".into(), "home/a".into()])
    );
    assert_eq!(
        names(json!({"namespace": "away", "names": ["c", "zz"]}), &home),
        Ok(vec!["away/c".into()])
    );
    assert_eq!(
        names(
            json!({"namespace": "away", "labelSelector": {"matchLabels": {"role": "x"}}}),
            &home
        ),
        Ok(vec!["away/c".into()])
    );
    // Names alone look in every namespace.
    assert_eq!(
        names(json!({"names": ["a", "d"]}), &home),
        Ok(vec!["away/d".into(), "home/a".into()])
    );
    assert_eq!(
        names(
            json!({"namespaceSelector": {"matchLabels": {"team": "blue"}}}),
            &home
        ),
        Ok(vec!["away/c".into(), "away/d".into()])
    );
    assert_eq!(
        names(
            json!({"namespaceSelector": {}, "labelSelector": {"matchLabels": {"role": "x"}}}),
            &home
        ),
        Ok(vec!["away/c".into(), "home/a".into()])
    );
    // An empty namespace is no namespace (Metacontroller tests its length).
    assert_eq!(
        names(
            json!({"namespace": "", "namespaceSelector": {"matchLabels": {"team": "red"}}}),
            &home
        ),
        Ok(vec!["home/a".into(), "home/b".into()])
    );
}

#[test]
fn invalid_rules_are_named() {
    let s = scope(V2, Some("home"));
    assert_eq!(
        names(json!({"names": ["a"], "labelSelector": {}}), &s),
        Err(
            "relatedResources[0]: names cannot be combined with labelSelector or namespaceSelector"
                .into()
        )
    );
    assert_eq!(
        names(json!({"namespace": "home", "namespaceSelector": {}}), &s),
        Err("relatedResources[0]: namespace cannot be combined with namespaceSelector".into())
    );
    let cluster = Scope {
        customize: V2,
        parent_ns: Some("home"),
        related_namespaced: false,
    };
    assert_eq!(
        names(json!({"namespaceSelector": {}}), &cluster),
        Err("relatedResources[0]: namespaceSelector needs a namespaced resource, and configmaps is cluster-scoped".into())
    );
    assert!(
        names(
            json!({"labelSelector": {"matchExpressions": [{"key": "k", "operator": "Bogus"}]}}),
            &s
        )
        .expect_err("bad operator")
        .starts_with("relatedResources[0]: labelSelector: ")
    );
}

#[test]
fn a_namespace_does_not_limit_a_cluster_scoped_type() {
    let cluster_objects = vec![obj(None, "n1", json!({})), obj(None, "n2", json!({}))];
    let scope = Scope {
        customize: V1,
        parent_ns: Some("home"),
        related_namespaced: false,
    };
    let pick = |r: Value| -> Vec<String> {
        select(0, &rule(r), &scope, &cluster_objects, &[])
            .expect("valid")
            .iter()
            .map(|o| o.name_any())
            .collect()
    };
    assert_eq!(pick(json!({"namespace": "away", "names": ["n2"]})), ["n2"]);
    assert_eq!(pick(json!({})).len(), 2);
}

fn keyed(version: ProtocolVersion, parent_ns: Option<&str>) -> ObjectMap {
    let mut all = objects();
    all.push(obj(None, "cluster-wide", json!({})));
    let mut map = ObjectMap::new();
    insert_keyed(&mut map, "ConfigMap.v1", version, parent_ns, &all);
    insert_keyed(&mut map, "Secret.v1", version, parent_ns, &[]);
    map
}

fn keys(map: &ObjectMap, ty: &str) -> Vec<String> {
    map[ty].keys().cloned().collect()
}

#[test]
fn sync_v2_keys_every_namespaced_object_by_namespace_and_name() {
    for parent_ns in [Some("home"), None] {
        let map = keyed(V2, parent_ns);
        assert_eq!(
            keys(&map, "ConfigMap.v1"),
            ["away/c", "away/d", "cluster-wide", "home/a", "home/b"]
        );
        assert_eq!(map["ConfigMap.v1"]["home/a"]["metadata"]["name"], "a");
        assert!(map["Secret.v1"].is_empty(), "every rule's type is present");
    }
}

#[test]
fn sync_v1_keeps_only_the_namespaced_parents_namespace() {
    let map = keyed(V1, Some("home"));
    assert_eq!(keys(&map, "ConfigMap.v1"), ["a", "b"]);
    assert!(map["Secret.v1"].is_empty());
    // A cluster-scoped parent sees everything, namespaced objects as namespace/name.
    let map = keyed(V1, None);
    assert_eq!(
        keys(&map, "ConfigMap.v1"),
        ["away/c", "away/d", "cluster-wide", "home/a", "home/b"]
    );
}
