//! The controller killed with `kill -9` in the middle of converging 200 parents, then started
//! again (issue 13's fault suite): the `kubelambda run` binary on the shared control plane.
//!
//! Asserts: every parent converges with exactly one child, no child written before the kill is
//! deleted or replaced, and the restarted process writes within a budget (its own
//! `kubelambda_api_requests_total` write verbs, events included). Prints the times.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ApiResource;
use serde_json::json;

const PARENTS: usize = 200;

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    listener.local_addr().expect("local address").to_string()
}

/// `kubelambda run` for this test's label, its metrics on `metrics`.
fn run(label: &str, metrics: &str) -> Child {
    Command::new(BIN)
        .args([
            "run",
            "--kubeconfig",
            &TestEnv::shared().kubeconfig_path().display().to_string(),
            &format!("--metrics-address={metrics}"),
            "--health-probe-bind-address=0",
            &format!("--target-label-selector=kubelambda-test={label}"),
            "--eval-workers=1",
        ])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kubelambda")
}

/// Creates, updates, patches and deletes the process at `metrics` sent (events included).
async fn writes(metrics: &str) -> u64 {
    let page = wait_until_ok("GET /metrics", || async {
        reqwest::get(format!("http://{metrics}/metrics"))
            .await?
            .error_for_status()?
            .text()
            .await
    })
    .await;
    page.lines()
        .filter(|l| l.starts_with("kubelambda_api_requests_total{"))
        .filter(|l| {
            ["create", "update", "patch", "delete"]
                .iter()
                .any(|verb| l.contains(&format!("verb=\"{verb}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_convergence_the_restarted_controller_finishes_without_duplicates() {
    let env = TestEnv::shared();
    let client = env.client().await;
    install_crds(&client).await;
    create_crd(&client, test_parent_crd()).await;
    let ns = create_namespace(&client, "fault-kill").await;
    let label = ns.clone();
    create_cc(
        &client,
        json!({
            "apiVersion": "metacontroller.k8s.io/v1alpha1",
            "kind": "CompositeController",
            "metadata": {"name": format!("kill-{label}"), "labels": {"kubelambda-test": label}},
            "spec": {
                "parentResource": {
                    "apiVersion": "test.kubelambda.io/v1",
                    "resource": "testparents",
                    "labelSelector": {"matchLabels": {"kubelambda-test": label}},
                },
                "generateSelector": true,
                "childResources": [{"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}}],
                "hooks": {"sync": {"jsonnet": {"source": fault_hook("v1", "ConfigMap")}}},
            },
        }),
    )
    .await;
    let w = Workload::new(
        &client,
        &ns,
        &parent_ar(),
        &ApiResource::erase::<ConfigMap>(&()),
        &[("kubelambda-test", &label)],
    );
    w.create_parents("p", PARENTS, 1).await;

    let metrics = free_address();
    let mut first = run(&label, &metrics);
    // Kill it once some, not all, children exist.
    let started = Instant::now();
    let done = wait_until("some children to be written", || async {
        let children = w.children_by_parent().await.ok()?;
        let done = children.values().filter(|c| !c.is_empty()).count();
        (done >= PARENTS / 10).then_some(done)
    })
    .await;
    first.kill().expect("kill -9 the controller");
    first.wait().expect("reap it");
    let before = w.snapshot().await;
    let written = before.values().filter(|c| !c.is_empty()).count();
    eprintln!(
        "KILL after {:?}: {written} of {PARENTS} parents had their child ({done} seen)",
        started.elapsed()
    );
    assert_intact("killed", &before, &before);

    let metrics = free_address();
    let mut second = run(&label, &metrics);
    let restarted = Instant::now();
    w.wait_converged(1, "after kill -9 and restart").await;
    eprintln!(
        "RECOVERY kill -9: the restarted controller converged {PARENTS} parents in {:?}",
        restarted.elapsed()
    );
    let after = w.snapshot().await;
    assert_intact("kill -9 and restart", &before, &after);
    assert!(
        after.values().all(|c| c.len() == 1),
        "exactly one child per parent"
    );
    // At most a child create and two status writes per parent, plus events.
    let spent = writes(&metrics).await;
    assert_writes_within("restarted controller", 0, spent, (PARENTS as u64) * 4);
    second.kill().expect("stop the controller");
    let _ = second.wait();
    delete_namespace(&client, &ns).await;
}
