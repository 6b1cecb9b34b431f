//! `examples/service-per-pod` on the real control plane, in both modes: the hooks evaluated
//! inside kubelambda (read from a ConfigMap made of the example's files), and served by
//! `kubelambda httpd` as webhooks, with a StatefulSet whose Pods really run (KWOK). What
//! Metacontroller's example test checks (a Service per StatefulSet Pod, a pod-name label), and
//! the edges: scaling down, opting out (finalize), and deleting the StatefulSet.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const HOOKS: [&str; 3] = [
    "sync-service-per-pod.jsonnet",
    "finalize-service-per-pod.jsonnet",
    "sync-pod-name-label.jsonnet",
];

fn example_dir() -> PathBuf {
    root().join("examples/service-per-pod")
}

fn yaml_docs(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(example_dir().join(file)).expect("example file");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("yaml"))
        .collect()
}

/// Kills `kubelambda httpd` when the test ends, passed or not.
struct Httpd(std::process::Child);

impl Drop for Httpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The example's controllers, made this test's own: unique names, the engine's target label,
/// and targets restricted to this test's objects (so parallel tests never share a target).
async fn install(h: &Harness, file: &str, rewrite_hook: impl Fn(&mut Value)) {
    install_crds(&h.client).await;
    let api = Api::<DynamicObject>::all_with(h.client.clone(), &dc_ar());
    for mut dc in yaml_docs(file) {
        let name = format!(
            "{}-{}",
            dc["metadata"]["name"].as_str().expect("name"),
            h.label
        );
        dc["metadata"]["name"] = json!(name);
        dc["metadata"]["labels"] = json!({"kubelambda-test": h.label});
        for rule in dc["spec"]["resources"].as_array_mut().expect("resources") {
            let exprs = rule["labelSelector"]["matchExpressions"].take();
            rule["labelSelector"] = json!({"matchLabels": {"kubelambda-test": h.label}});
            if !exprs.is_null() {
                rule["labelSelector"]["matchExpressions"] = exprs;
            }
        }
        for hook in dc["spec"]["hooks"]
            .as_object_mut()
            .expect("hooks")
            .values_mut()
        {
            rewrite_hook(hook);
        }
        let obj: DynamicObject = serde_json::from_value(dc).expect("decorator");
        api.create(&PostParams::default(), &obj)
            .await
            .expect("create decorator");
    }
}

async fn services(h: &Harness) -> BTreeMap<String, Service> {
    let api: Api<Service> = h.api();
    api.list(&Default::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter(|s| s.labels().get("app").map(String::as_str) == Some("service-per-pod"))
        .map(|s| (s.name_any(), s))
        .collect()
}

async fn wait_services(h: &Harness, names: &[&str]) -> BTreeMap<String, Service> {
    let want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    wait_until(&format!("Services {want:?}"), || async {
        let found = services(h).await;
        (found.keys().cloned().collect::<Vec<_>>() == want).then_some(found)
    })
    .await
}

async fn scenario(h: &Harness) {
    let sts_api: Api<StatefulSet> = h.api();
    let mut sts: Value = yaml_docs("statefulset.yaml").remove(0);
    sts["metadata"]["labels"] = json!({"kubelambda-test": h.label});
    // The test's decorators select only this test's objects, Pods included.
    sts["spec"]["template"]["metadata"]["labels"]["kubelambda-test"] = json!(h.label);
    let sts: StatefulSet = serde_json::from_value(sts).expect("statefulset");
    let sts = sts_api
        .create(&PostParams::default(), &sts)
        .await
        .expect("create");

    // A Service per Pod, each selecting its Pod, owned by the StatefulSet.
    let found = wait_services(h, &["nginx-0", "nginx-1", "nginx-2"]).await;
    for (i, svc) in found.values().enumerate() {
        let spec = svc.spec.as_ref().expect("spec");
        let selector = spec.selector.as_ref().expect("selector");
        assert_eq!(
            selector["statefulset.kubernetes.io/pod-name"],
            format!("nginx-{i}")
        );
        let port = &spec.ports.as_ref().expect("ports")[0];
        assert_eq!(
            (
                port.port,
                port.target_port.as_ref().map(|p| format!("{p:?}"))
            ),
            (80, Some("Int(8080)".into()))
        );
        assert_eq!(owner_uid(svc), sts.uid());
    }

    // The pod-name-label decorator labels the StatefulSet's Pods (their template asks for it),
    // made by the StatefulSet controller and run by KWOK's fake Nodes.
    let pods: Api<Pod> = h.api();
    wait_until("the pod-name label", || async {
        let pod = pods.get("nginx-0").await.ok()?;
        (pod.labels().get("pod-name").map(String::as_str) == Some("nginx-0")).then_some(())
    })
    .await;

    // Scale down: the Services of the Pods that went are deleted.
    sts_api
        .patch(
            "nginx",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 1}})),
        )
        .await
        .expect("scale");
    wait_services(h, &["nginx-0"]).await;

    // Steady state: nothing written while nothing changes.
    let writes = h.engine().metrics.writes();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        h.engine().metrics.writes(),
        writes,
        "no writes in a steady state"
    );

    // Opting out (an annotation removed) finalizes: the Services go, then the finalizer.
    sts_api
        .patch(
            "nginx",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"service-per-pod-ports": null}}})),
        )
        .await
        .expect("opt out");
    wait_services(h, &[]).await;
    wait_until(
        "the finalizer removed from the opted-out StatefulSet",
        || async {
            let sts = sts_api.get("nginx").await.ok()?;
            sts.finalizers().is_empty().then_some(())
        },
    )
    .await;

    // Opting in again, then deleting the StatefulSet: finalize removes the Service and lets the
    // StatefulSet go.
    sts_api
        .patch(
            "nginx",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"metadata": {"annotations": {"service-per-pod-ports": "80:8080"}}}),
            ),
        )
        .await
        .expect("opt in");
    wait_services(h, &["nginx-0"]).await;
    sts_api
        .delete("nginx", &DeleteParams::default())
        .await
        .expect("delete");
    wait_deleted(&sts_api, "nginx").await;
    assert!(services(h).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_hooks_from_a_configmap() {
    let h = Harness::new("spp-inline").await;
    let data: BTreeMap<String, String> = HOOKS
        .iter()
        .map(|f| {
            (
                f.to_string(),
                std::fs::read_to_string(example_dir().join(f)).expect("hook"),
            )
        })
        .collect();
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("service-per-pod-hooks".into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    h.api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await
        .expect("hooks configmap");
    let ns = h.ns.clone();
    install(&h, "controllers-inline.yaml", |hook| {
        hook["jsonnet"]["configMapRef"]["namespace"] = json!(ns);
    })
    .await;
    scenario(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_served_by_kubelambda_httpd() {
    let h = Harness::new("spp-httpd").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let _httpd = Httpd(
        std::process::Command::new(BIN)
            .current_dir(example_dir())
            .args(["httpd", "-l", &format!("127.0.0.1:{port}")])
            .args(HOOKS)
            .spawn()
            .expect("start httpd"),
    );
    install(&h, "controllers.yaml", |hook| {
        let url = hook["webhook"]["url"].as_str().expect("url").to_owned();
        let path = url.rsplit_once('/').expect("path").1;
        hook["webhook"]["url"] = json!(format!("http://127.0.0.1:{port}/{path}"));
    })
    .await;
    scenario(&h).await;
}
