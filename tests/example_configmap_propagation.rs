//! `examples/configmap-propagation` on the real control plane: a cluster-scoped parent copying a
//! ConfigMap (a related object, named by a Tera customize hook) into namespaces with an inline
//! Jsonnet sync hook. Each step of the example's README, and the edge the hook guards: a missing
//! source keeps every copy.

mod common;

use std::collections::BTreeMap;

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

fn example(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("examples/configmap-propagation").join(file))
        .expect("example file");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("yaml"))
        .collect()
}

fn propagation_ar() -> ApiResource {
    ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "ConfigMapPropagation".into(),
        plural: "configmappropagations".into(),
    }
}

async fn data_in(client: &kube::Client, ns: &str) -> Option<BTreeMap<String, String>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    api.get_opt("settings").await.ok().flatten()?.data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagates_follows_the_source_and_never_deletes_on_missing_input() {
    let h = Harness::new("cm-propagation").await;
    create_crd(&h.client, example("crd.yaml").remove(0)).await;
    let mut cc = example("controller.yaml").remove(0);
    cc["metadata"]["name"] = json!(format!("configmap-propagation-{}", h.label));
    cc["metadata"]["labels"] = json!({"kubelambda-test": h.label});
    cc["spec"]["parentResource"]["labelSelector"] =
        json!({"matchLabels": {"kubelambda-test": h.label}});
    create_cc(&h.client, cc).await;

    // The example's objects, with this test's namespaces (the source is the harness namespace).
    let targets: Vec<String> = ["one", "two", "three"]
        .iter()
        .map(|n| format!("{}-{n}", h.ns))
        .collect();
    for ns in &targets {
        let namespace: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns");
        Api::all(h.client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace");
    }
    let objects = example("propagation.yaml");
    let mut source: ConfigMap = serde_json::from_value(
        objects
            .iter()
            .find(|o| o["kind"] == "ConfigMap")
            .expect("source")
            .clone(),
    )
    .expect("configmap");
    source.metadata.namespace = Some(h.ns.clone());
    let sources: Api<ConfigMap> = h.api();
    sources
        .create(&PostParams::default(), &source)
        .await
        .expect("source");
    let mut parent = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMapPropagation")
        .expect("parent")
        .clone();
    let name = format!("settings-{}", h.label);
    parent["metadata"] = json!({"name": name, "labels": {"kubelambda-test": h.label}});
    parent["spec"]["sourceNamespace"] = json!(h.ns);
    parent["spec"]["targetNamespaces"] = json!(targets);
    let parents: Api<DynamicObject> = Api::all_with(h.client.clone(), &propagation_ar());
    let parent: DynamicObject = serde_json::from_value(parent).expect("parent");
    parents
        .create(&PostParams::default(), &parent)
        .await
        .expect("create parent");

    let status = |want: Value| {
        let (parents, name) = (parents.clone(), name.clone());
        async move {
            wait_until(&format!("status {want}"), || async {
                let p = parents.get(&name).await.ok()?;
                let status = p.data.get("status")?;
                want.as_object()?
                    .iter()
                    .all(|(k, v)| status.get(k) == Some(v))
                    .then_some(())
            })
            .await
        }
    };
    let expected = |color: &str| -> BTreeMap<String, String> {
        [("color", color), ("size", "large")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    };
    for ns in &targets {
        let data = wait_until(&format!("the copy in {ns}"), || data_in(&h.client, ns)).await;
        assert_eq!(data, expected("blue"));
    }
    status(json!({"sourceFound": true, "expectedCopies": 3, "actualCopies": 3})).await;

    // An edit of the source reaches every copy.
    sources
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(&json!({"data": {"color": "green"}})),
        )
        .await
        .expect("edit source");
    for ns in &targets {
        wait_until(&format!("the edit in {ns}"), || async {
            (data_in(&h.client, ns).await? == expected("green")).then_some(())
        })
        .await;
    }

    // A namespace removed from the list loses its copy.
    parents
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"targetNamespaces": [targets[0], targets[1]]}})),
        )
        .await
        .expect("shrink");
    wait_until("the third copy deleted", || async {
        data_in(&h.client, &targets[2])
            .await
            .is_none()
            .then_some(())
    })
    .await;
    status(json!({"expectedCopies": 2, "actualCopies": 2})).await;

    // The source deleted: the copies stay, and the status says why nothing changes.
    let writes = h.engine().metrics.writes();
    sources
        .delete("settings", &DeleteParams::default())
        .await
        .expect("delete source");
    status(json!({"sourceFound": false, "actualCopies": 2})).await;
    for ns in &targets[..2] {
        assert_eq!(
            data_in(&h.client, ns).await,
            Some(expected("green")),
            "{ns}"
        );
    }
    assert!(
        h.engine().metrics.writes() <= writes + 1,
        "only the status was written"
    );

    // The parent deleted: the garbage collector takes the copies.
    parents
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete parent");
    for ns in &targets[..2] {
        wait_until(&format!("the copy in {ns} collected"), || async {
            data_in(&h.client, ns).await.is_none().then_some(())
        })
        .await;
    }
    for ns in &targets {
        delete_namespace(&h.client, ns).await;
    }
}
