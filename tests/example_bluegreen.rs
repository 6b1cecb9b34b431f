//! `examples/bluegreen` on the test cluster, where ReplicaSets' Pods become Ready on KWOK's fake
//! Nodes: what Metacontroller's `bluegreen/test.sh` checks (blue live; a template change rolls
//! out to green; another rolls back to blue; each time the parent's status and
//! `observedGeneration`), and the pattern's promise: the Service never selects a colour whose
//! ReplicaSet is not complete, and its endpoints follow it. Then a scale change, a quiet steady
//! state, and the parent's deletion.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const EXAMPLE: &str = "bluegreen";

struct BlueGreen {
    h: Harness,
    parents: Api<DynamicObject>,
    sets: Api<ReplicaSet>,
    services: Api<Service>,
}

/// A ReplicaSet's (spec.replicas, status.replicas, status.readyReplicas,
/// status.availableReplicas); absent counts are 0.
fn counts(rs: &ReplicaSet) -> (i32, i32, i32, i32) {
    let status = rs.status.clone().unwrap_or_default();
    (
        rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        status.replicas,
        status.ready_replicas.unwrap_or(0),
        status.available_replicas.unwrap_or(0),
    )
}

impl BlueGreen {
    async fn new(test: &str) -> Self {
        let h = Harness::new(test).await;
        let crd = example_doc(EXAMPLE, "crd.yaml", "CustomResourceDefinition");
        create_crd(&h.client, crd.clone()).await;
        let mut cc = example_controller(&h, EXAMPLE);
        // Resynced every second, so the steady state below is really tested for quiet.
        cc["spec"]["resyncPeriodSeconds"] = json!(1);
        create_cc(&h.client, cc).await;
        let parents = Api::namespaced_with(h.client.clone(), &h.ns, &example_resource(&crd));
        Self {
            parents,
            sets: h.api(),
            services: h.api(),
            h,
        }
    }

    async fn set(&self, color: &str) -> Option<ReplicaSet> {
        self.sets.get_opt(&format!("nginx-{color}")).await.ok()?
    }

    /// The colour the Service selects.
    async fn service_color(&self) -> Option<String> {
        let svc = self.services.get_opt("nginx-frontend").await.ok()??;
        svc.spec?.selector?.get("color").cloned()
    }

    /// Waits until `color` is live by every measure test.sh uses: its ReplicaSet has `replicas`
    /// Ready Pods, the other one none, the parent's status says so for its latest generation;
    /// and the Service selects it. When `switching` to it, checks on every look that the Service
    /// does not select it before its ReplicaSet has every replica Available.
    async fn wait_live(&self, color: &str, replicas: i32, switching: bool) {
        let other = if color == "blue" { "green" } else { "blue" };
        wait_until(
            &format!("{color} live with {replicas} replicas"),
            || async {
                // The Service first, then the ReplicaSet it selects: during a rollout the new side's
                // counts only grow, so a switch seen here was made on counts at most these.
                let live = self.service_color().await?;
                let (spec, _, ready, available) = counts(&self.set(color).await?);
                if switching && live == color {
                    assert!(
                        spec == replicas && available >= replicas,
                        "the Service selects {color} while its ReplicaSet has {available} of \
                     {replicas} replicas available"
                    );
                }
                let (other_spec, other_replicas, _, _) = counts(&self.set(other).await?);
                let parent = self.parents.get("nginx").await.ok()?;
                let status = parent.data.get("status")?;
                (live == color
                    && ready == replicas
                    && other_spec == 0
                    && other_replicas == 0
                    && status["activeColor"] == color
                    && status["active"]["availableReplicas"] == replicas
                    && status["observedGeneration"] == json!(parent.metadata.generation))
                .then_some(())
            },
        )
        .await;
        self.endpoints_follow(color, replicas).await;
    }

    /// The Service's endpoints (EndpointSlice controller) are the live colour's Pods, all Ready.
    async fn endpoints_follow(&self, color: &str, replicas: i32) {
        let slices: Api<EndpointSlice> = self.h.api();
        let prefix = format!("nginx-{color}-");
        wait_until(&format!("the Service's endpoints on {color}"), || async {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=nginx-frontend"))
                .await
                .ok()?;
            let pods: Vec<(String, bool)> = list
                .items
                .iter()
                .flat_map(|s| s.endpoints.iter())
                .map(|e| {
                    let name = e
                        .target_ref
                        .as_ref()
                        .and_then(|r| r.name.clone())
                        .unwrap_or_default();
                    let ready = e.conditions.as_ref().and_then(|c| c.ready) == Some(true);
                    (name, ready)
                })
                .collect();
            (pods.len() == replicas as usize
                && pods
                    .iter()
                    .all(|(n, ready)| n.starts_with(&prefix) && *ready))
            .then_some(())
        })
        .await;
    }

    /// Creates the example's BlueGreenDeployment, labelled for this test.
    async fn create(&self) {
        let mut parent = example_doc(EXAMPLE, "bluegreen.yaml", "BlueGreenDeployment");
        parent["metadata"]["labels"]["kubelambda-test"] = json!(self.h.label);
        let parent: DynamicObject = serde_json::from_value(parent).expect("BlueGreenDeployment");
        self.parents
            .create(&PostParams::default(), &parent)
            .await
            .expect("create the BlueGreenDeployment");
    }

    async fn patch_spec(&self, spec: Value) {
        self.parents
            .patch(
                "nginx",
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": spec})),
            )
            .await
            .expect("patch the BlueGreenDeployment");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switches_the_service_once_the_new_side_is_complete_and_back() {
    let bg = BlueGreen::new("bluegreen").await;
    bg.create().await;

    // test.sh: blue live, green empty.
    bg.wait_live("blue", 3, false).await;
    let blue = bg.set("blue").await.expect("blue");
    let labels = blue.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("color").map(String::as_str), Some("blue"));
    let green = bg.set("green").await.expect("green");
    assert_eq!(counts(&green).0, 0, "green exists, scaled to zero");

    // test.sh: a template change rolls out to green.
    bg.patch_spec(json!({"template": {"metadata": {"labels": {"new": "label"}}}}))
        .await;
    bg.wait_live("green", 3, true).await;
    let green = bg.set("green").await.expect("green");
    let template_labels = green
        .spec
        .and_then(|s| s.template)
        .and_then(|t| t.metadata)
        .and_then(|m| m.labels)
        .unwrap_or_default();
    assert_eq!(
        template_labels.get("new").map(String::as_str),
        Some("label"),
        "green runs the new template"
    );

    // test.sh: another template change rolls back to blue, which takes the newest template.
    bg.patch_spec(json!({"template": {"metadata": {"labels": {"new2": "label2"}}}}))
        .await;
    bg.wait_live("blue", 3, true).await;
    let blue = bg.set("blue").await.expect("blue");
    let template_labels = blue
        .spec
        .and_then(|s| s.template)
        .and_then(|t| t.metadata)
        .and_then(|m| m.labels)
        .unwrap_or_default();
    assert_eq!(
        template_labels.get("new2").map(String::as_str),
        Some("label2")
    );

    // A scale change with the same template scales the live side; no rollout.
    bg.patch_spec(json!({"replicas": 2})).await;
    bg.wait_live("blue", 2, false).await;

    // Steady: with a resync every second, nothing is written.
    let metrics = bg.h.engine().metrics.clone();
    let (writes, syncs) = (metrics.writes(), metrics.syncs());
    wait_until("three more syncs", || async {
        (metrics.syncs() >= syncs + 3).then_some(())
    })
    .await;
    assert_eq!(
        metrics.writes(),
        writes,
        "a steady BlueGreenDeployment writes nothing"
    );

    // Deleted: the garbage collector takes the ReplicaSets and the Service.
    bg.parents
        .delete("nginx", &DeleteParams::default())
        .await
        .expect("delete");
    wait_deleted(&bg.services, "nginx-frontend").await;
    wait_deleted(&bg.sets, "nginx-blue").await;
    wait_deleted(&bg.sets, "nginx-green").await;
    delete_namespace(&bg.h.client, &bg.h.ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_side_that_never_gets_ready_takes_no_traffic_and_a_fix_replaces_it() {
    let bg = BlueGreen::new("bluegreen-stuck").await;
    bg.create().await;
    bg.wait_live("blue", 3, false).await;

    // A template whose Pods can never be scheduled (no Node has this label): green is scaled up
    // and stays unready; the Service stays on blue, and says so in the status.
    bg.patch_spec(json!({"template": {"spec": {"nodeSelector": {"no-such-node": "true"}}}}))
        .await;
    wait_until("green scaled up, its Pods Pending", || async {
        let green = bg.set("green").await?;
        let status = green.status.clone().unwrap_or_default();
        (counts(&green).0 == 3 && status.replicas == 3).then_some(())
    })
    .await;
    let metrics = bg.h.engine().metrics.clone();
    let syncs = metrics.syncs();
    wait_until("three more syncs", || async {
        (metrics.syncs() >= syncs + 3).then_some(())
    })
    .await;
    assert_eq!(
        bg.service_color().await.as_deref(),
        Some("blue"),
        "no traffic to green"
    );
    let blue = bg.set("blue").await.expect("blue");
    assert_eq!(counts(&blue).0, 3, "blue keeps its replicas");
    let status = bg.parents.get("nginx").await.expect("parent").data["status"].clone();
    assert_eq!(status["activeColor"], "blue");
    assert_eq!(status["inactive"]["readyReplicas"].as_i64().unwrap_or(0), 0);

    // The template fixed mid-rollout: green is emptied first, then rolled out afresh with the
    // newest template, and takes over.
    bg.patch_spec(json!({"template": {
        "metadata": {"labels": {"fixed": "yes"}},
        "spec": {"nodeSelector": null},
    }}))
    .await;
    bg.wait_live("green", 3, true).await;
    let green = bg.set("green").await.expect("green");
    let template = green.spec.and_then(|s| s.template).expect("template");
    let labels = template.metadata.and_then(|m| m.labels).unwrap_or_default();
    assert_eq!(labels.get("fixed").map(String::as_str), Some("yes"));
    assert!(
        template.spec.and_then(|s| s.node_selector).is_none(),
        "green runs the fixed template"
    );
    delete_namespace(&bg.h.client, &bg.h.ns).await;
}
