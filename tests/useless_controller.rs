//! The useless-controller example (examples/useless-controller), for real: on the test cluster a
//! Deployment rolls out, so the UselessPod's Deployment becomes Available (what
//! `kubectl rollout status deployment/useless-alpha` waits for) and the parent's status reports it
//! from the observed child. Both modes: the hook inline (controller-inline.yaml) and served by
//! `kubelambda httpd sync.jsonnet` as Metacontroller's webhook (controller-webhook.yaml).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};

fn example_dir() -> PathBuf {
    root().join("examples/useless-controller")
}

fn read_yaml(file: &str) -> Value {
    let path = example_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn uselesspod_ar() -> ApiResource {
    ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "UselessPod".into(),
        plural: "uselesspods".into(),
    }
}

/// One of the example's CompositeControllers, as it is, scoped to this test's parents.
fn example_controller(h: &Harness, file: &str) -> Value {
    let mut cc = read_yaml(file);
    cc["metadata"]["name"] = json!(format!("useless-{}", h.label));
    cc["metadata"]["labels"] = json!({"kubelambda-test": h.label});
    cc["spec"]["parentResource"]["labelSelector"] =
        json!({"matchLabels": {"kubelambda-test": h.label}});
    cc
}

/// Creates the example's UselessPod (uselesspod.yaml) and follows it until its status says the
/// Deployment is ready; checks the status was derived from the observed Deployment all along.
async fn useless_pod_rolls_out(h: &Harness) {
    let pods: Api<DynamicObject> = Api::namespaced_with(h.client.clone(), &h.ns, &uselesspod_ar());
    // Watch from before the parent exists: every status the engine writes is seen, in order.
    let mut events = pods
        .watch(
            &WatchParams::default().labels(&format!("kubelambda-test={}", h.label)),
            "0",
        )
        .await
        .expect("watch UselessPods")
        .boxed();
    let mut parent = read_yaml("uselesspod.yaml");
    parent["metadata"]["labels"] = json!({"kubelambda-test": h.label});
    let parent: DynamicObject = serde_json::from_value(parent).expect("UselessPod");
    let parent = pods
        .create(&PostParams::default(), &parent)
        .await
        .expect("create UselessPod");

    let mut statuses: Vec<Value> = Vec::new();
    let follow = async {
        loop {
            let event = events.try_next().await.expect("UselessPod watch");
            let Some(WatchEvent::Added(p) | WatchEvent::Modified(p)) = event else {
                assert!(event.is_some(), "the UselessPod watch ended early");
                continue;
            };
            let Some(status) = p.data.get("status").cloned() else {
                continue;
            };
            if statuses.last() != Some(&status) {
                statuses.push(status.clone());
            }
            if status["ready"] == json!(true) {
                return status;
            }
        }
    };
    let Ok(status) = tokio::time::timeout(default_timeout(), follow).await else {
        panic!("timed out waiting for the UselessPod to report ready; statuses: {statuses:?}");
    };
    assert_eq!(
        status,
        json!({"observedGeneration": 1, "ready": true, "availableReplicas": 1}),
        "final status"
    );
    // The first sync saw no Deployment yet: the status starts not ready, and only turns ready from
    // what the hook observed.
    assert_eq!(
        statuses.first().map(|s| &s["ready"]),
        Some(&json!(false)),
        "the first status reported is not ready: {statuses:?}"
    );

    // Once the parent says ready, `kubectl rollout status deployment/useless-alpha` succeeds.
    let deployments: Api<Deployment> = h.api();
    let d = deployments
        .get("useless-alpha")
        .await
        .expect("Deployment useless-alpha");
    assert_eq!(owner_uid(&d), parent.uid(), "owned by the UselessPod");
    deployment_rolled_out(&d).expect("the Deployment has rolled out");
    assert!(deployment_available(&d), "Available: {:?}", d.status);
    assert_eq!(
        d.status.as_ref().and_then(|s| s.available_replicas),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_mode_reports_the_deployment_rolled_out() {
    let h = Harness::new("useless-inline").await;
    create_cc(&h.client, example_controller(&h, "controller-inline.yaml")).await;
    useless_pod_rolls_out(&h).await;
}

/// A running `kubelambda httpd`, killed on drop.
struct Httpd(Child);

impl Drop for Httpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mode_served_by_kubelambda_httpd_reports_the_deployment_rolled_out() {
    let h = Harness::new("useless-webhook").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // As hooks.yaml runs it, on the host: the example's directory, `httpd sync.jsonnet`.
    let _httpd = Httpd(
        Command::new(BIN)
            .current_dir(example_dir())
            .args(["httpd", "-l", &format!("127.0.0.1:{port}"), "sync.jsonnet"])
            .stdin(Stdio::null())
            .spawn()
            .expect("start kubelambda httpd"),
    );
    let mut cc = example_controller(&h, "controller-webhook.yaml");
    // The Service URL of controller-webhook.yaml, pointed at the server on the host.
    assert_eq!(
        cc["spec"]["hooks"]["sync"]["webhook"]["url"],
        json!("http://useless-hooks.kubelambda/sync")
    );
    cc["spec"]["hooks"]["sync"]["webhook"]["url"] = json!(format!("http://127.0.0.1:{port}/sync"));
    create_cc(&h.client, cc).await;
    useless_pod_rolls_out(&h).await;
}

#[test]
fn inline_controller_embeds_sync_jsonnet_verbatim() {
    let cc = read_yaml("controller-inline.yaml");
    let inline = cc["spec"]["hooks"]["sync"]["jsonnet"]["source"]
        .as_str()
        .expect("spec.hooks.sync.jsonnet.source is a string");
    let file = std::fs::read_to_string(example_dir().join("sync.jsonnet")).expect("sync.jsonnet");
    assert_eq!(
        inline, file,
        "controller-inline.yaml and sync.jsonnet differ"
    );
}

/// `kubelambda render HOOK --request <request>`: the hook's response.
fn render(hook: &Path, request: &Value, dir: &Path) -> Value {
    let req = dir.join("request.json");
    std::fs::write(&req, serde_json::to_vec(request).expect("json")).expect("write request");
    let out = Command::new(BIN)
        .arg("render")
        .arg(hook)
        .arg("--request")
        .arg(&req)
        .stdin(Stdio::null())
        .output()
        .expect("run kubelambda render");
    assert!(
        out.status.success(),
        "render {}: {}",
        hook.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("render prints JSON")
}

#[test]
fn status_is_ready_only_once_the_observed_deployment_has_rolled_out() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base: Value = serde_json::from_str(
        &std::fs::read_to_string(example_dir().join("request.json")).expect("request.json"),
    )
    .expect("request.json is JSON");
    let rolled_out = |status: Value| {
        let mut r = base.clone();
        let child = &mut r["children"]["Deployment.apps/v1"]["useless-alpha"];
        child["metadata"]["generation"] = json!(2);
        child["spec"]["replicas"] = json!(1);
        child["status"] = status;
        r
    };
    let mut absent = base.clone();
    absent["children"]["Deployment.apps/v1"] = json!({});
    let cases = [
        ("no Deployment yet", absent, false, 0),
        ("no status yet", rolled_out(json!({})), false, 0),
        (
            "latest spec not observed",
            rolled_out(
                json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}),
            ),
            false,
            1,
        ),
        (
            "replica not updated",
            rolled_out(
                json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 0, "availableReplicas": 1}),
            ),
            false,
            1,
        ),
        (
            "old replica pending termination",
            rolled_out(
                json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1}),
            ),
            false,
            1,
        ),
        (
            "updated replica not available",
            rolled_out(
                json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 0}),
            ),
            false,
            0,
        ),
        (
            "rolled out",
            rolled_out(
                json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}),
            ),
            true,
            1,
        ),
    ];
    let inline = tmp.path().join("inline.jsonnet");
    let cc = read_yaml("controller-inline.yaml");
    std::fs::write(
        &inline,
        cc["spec"]["hooks"]["sync"]["jsonnet"]["source"]
            .as_str()
            .expect("inline source"),
    )
    .expect("write inline source");
    for hook in [example_dir().join("sync.jsonnet"), inline] {
        for (case, request, ready, available) in &cases {
            let response = render(&hook, request, tmp.path());
            assert_eq!(
                response["status"],
                json!({"observedGeneration": 2, "ready": ready, "availableReplicas": available}),
                "{case} ({})",
                hook.display()
            );
        }
    }
}
