//! The test cluster runs workloads: kube-controller-manager's workload controllers, kube-scheduler
//! and KWOK's fake Nodes together make a Deployment Available, a StatefulSet's Pods Ready one after
//! the other, and a Job complete, with no container runtime. What the examples' tests rely on.

mod common;

use std::collections::BTreeMap;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

/// A Pod template: one pause container, labelled `app: <app>`.
fn template(app: &str) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}]},
    })
}

/// The Pods selected by `app=<app>`, checked to run on the fake Nodes.
async fn pods_on_fake_nodes(pods: &Api<Pod>, app: &str) -> Vec<Pod> {
    let list = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list Pods");
    for p in &list.items {
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        assert!(
            node.as_deref().is_some_and(|n| n.starts_with("kwok-node-")),
            "Pod {:?} is scheduled on a fake Node: {node:?}",
            p.metadata.name
        );
    }
    list.items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_becomes_available() {
    let client = TestEnv::shared().client().await;
    let ns = create_namespace(&client, "deployment").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template("web")},
    }))
    .expect("Deployment");
    deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("create Deployment");

    let d = wait_until_ok("Deployment web to roll out", || async {
        let d = deployments
            .get("web")
            .await
            .map_err(|e| format!("get: {e}"))?;
        deployment_rolled_out(&d).map(|()| d)
    })
    .await;
    assert!(deployment_available(&d), "Available condition: {d:?}");
    let status = d.status.expect("status");
    assert_eq!(
        (status.ready_replicas, status.available_replicas),
        (Some(3), Some(3))
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let running = pods_on_fake_nodes(&pods, "web").await;
    assert_eq!(running.len(), 3, "one Pod per replica");
    for p in &running {
        assert!(pod_ready(p), "Pod {:?} is Ready", p.metadata.name);
        let status = p.status.as_ref().expect("Pod status");
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(status.pod_ip.is_some(), "KWOK gives the Pod an IP");
    }

    delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_pods_become_ready_in_order() {
    let client = TestEnv::shared().client().await;
    let ns = create_namespace(&client, "statefulset").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    // Watch from before the StatefulSet exists: events come in resourceVersion order, so the order
    // they are seen in is the order things happened in.
    let events = pods
        .watch(&WatchParams::default().labels("app=db"), "0")
        .await
        .expect("watch Pods");
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let s: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 3, "serviceName": "db", "podManagementPolicy": "OrderedReady",
            "selector": {"matchLabels": {"app": "db"}}, "template": template("db"),
        },
    }))
    .expect("StatefulSet");
    sets.create(&PostParams::default(), &s)
        .await
        .expect("create StatefulSet");

    // Each Pod's name as it is first seen (false) and first seen Ready (true).
    let mut history: Vec<(String, bool)> = Vec::new();
    let mut seen: BTreeMap<String, bool> = BTreeMap::new();
    let mut events = events.boxed();
    let follow = async {
        while seen.values().filter(|r| **r).count() < 3 {
            let event = events.try_next().await.expect("Pod watch");
            let Some(WatchEvent::Added(p) | WatchEvent::Modified(p)) = event else {
                assert!(event.is_some(), "the Pod watch ended early");
                continue;
            };
            let name = p.metadata.name.clone().unwrap_or_default();
            let ready = pod_ready(&p);
            let before = seen.insert(name.clone(), ready);
            if before.is_none() {
                history.push((name.clone(), false));
            }
            if ready && before != Some(true) {
                history.push((name, true));
            }
        }
    };
    if tokio::time::timeout(default_timeout(), follow)
        .await
        .is_err()
    {
        panic!("timed out waiting for three Ready StatefulSet Pods; seen: {history:?}");
    }

    // OrderedReady: db-1 is created only once db-0 is Ready, db-2 once db-1 is.
    let expected: Vec<(String, bool)> = ["db-0", "db-1", "db-2"]
        .iter()
        .flat_map(|n| [(n.to_string(), false), (n.to_string(), true)])
        .collect();
    assert_eq!(
        history, expected,
        "creation and Ready transitions, in order"
    );

    let set = wait_until_ok("StatefulSet status to count 3 ready replicas", || async {
        let s = sets.get("db").await.map_err(|e| format!("get: {e}"))?;
        let status = s.status.clone().unwrap_or_default();
        if status.ready_replicas == Some(3) && status.available_replicas == Some(3) {
            Ok(s)
        } else {
            Err(format!("status: {status:?}"))
        }
    })
    .await;
    assert_eq!(set.status.expect("status").replicas, 3);
    assert_eq!(pods_on_fake_nodes(&pods, "db").await.len(), 3);

    delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_completes() {
    let client = TestEnv::shared().client().await;
    let ns = create_namespace(&client, "job").await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let mut pod_template = template("batch");
    pod_template["spec"]["restartPolicy"] = json!("Never");
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "batch"},
        "spec": {"completions": 2, "parallelism": 1, "backoffLimit": 0, "template": pod_template},
    }))
    .expect("Job");
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("create Job");

    let job = wait_until_ok("Job batch to complete", || async {
        let j = jobs.get("batch").await.map_err(|e| format!("get: {e}"))?;
        let complete = j
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Complete" && c.status == "True")
            });
        if complete {
            Ok(j)
        } else {
            Err(format!("status: {:?}", j.status))
        }
    })
    .await;
    let status = job.status.expect("status");
    assert_eq!(status.succeeded, Some(2), "both completions succeeded");
    assert_eq!(status.failed.unwrap_or(0), 0, "no Pod failed");
    assert!(status.completion_time.is_some());

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let finished = pods_on_fake_nodes(&pods, "batch").await;
    assert_eq!(
        finished.len(),
        2,
        "one Pod per completion (parallelism 1, no retries)"
    );
    for p in &finished {
        assert_eq!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded"),
            "Pod {:?}",
            p.metadata.name
        );
    }

    delete_namespace(&client, &ns).await;
}
