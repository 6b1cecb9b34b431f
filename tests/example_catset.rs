//! `examples/catset` on the test cluster (KWOK's fake Nodes make Pods Ready; the
//! PersistentVolume controller binds the claims to PersistentVolumes the test makes beforehand,
//! since there is no provisioner). What Metacontroller's `catset/test.sh` checks (3 Ready, scale
//! to 4, scale to 2, deletion through the finalize hook down to 0 replicas), and the StatefulSet
//! behaviour it promises: Pods come up in order, each only once the one before is Ready; a new
//! template rolls Pods one at a time, highest first, each re-created Pod Ready before the next
//! goes, with the parent's `Updated` condition saying so; a scale down removes the highest first
//! and keeps the claims.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Service};
use kube::ResourceExt;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{Value, json};

const EXAMPLE: &str = "catset";
const NAME: &str = "nginx-backend";
const FINALIZER: &str = "example.com/catset-test";

/// What the Pod watch saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    /// A Pod (name, uid) first seen.
    Created(String, String),
    /// That Pod first seen Ready.
    Ready(String, String),
    /// That Pod deleted (gone from the API).
    Deleted(String, String),
}

struct CatSet {
    h: Harness,
    sets: Api<DynamicObject>,
    pods: Api<Pod>,
    claims: Api<PersistentVolumeClaim>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// `Updated` condition reasons the parent went through, in order, without repeats.
    reasons: Arc<Mutex<Vec<String>>>,
    volumes: Vec<String>,
}

fn pod_name(i: usize) -> String {
    format!("{NAME}-{i}")
}

impl CatSet {
    async fn new() -> Self {
        let h = Harness::new("catset").await;
        let crd = example_doc(EXAMPLE, "crd.yaml", "CustomResourceDefinition");
        create_crd(&h.client, crd.clone()).await;
        let mut cc = example_controller(&h, EXAMPLE);
        cc["spec"]["resyncPeriodSeconds"] = json!(1);
        create_cc(&h.client, cc).await;
        let sets: Api<DynamicObject> =
            Api::namespaced_with(h.client.clone(), &h.ns, &example_resource(&crd));
        let pods: Api<Pod> = h.api();

        // Every Pod event from before the CatSet exists: the order seen is the order of events.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut events = pods
            .watch(&WatchParams::default(), "0")
            .await
            .expect("watch Pods")
            .boxed();
        let sink = seen.clone();
        tokio::spawn(async move {
            let mut ready = BTreeSet::new();
            let mut known = BTreeSet::new();
            while let Ok(Some(event)) = events.try_next().await {
                let (pod, deleted) = match event {
                    WatchEvent::Added(p) | WatchEvent::Modified(p) => (p, false),
                    WatchEvent::Deleted(p) => (p, true),
                    _ => continue,
                };
                let id = (pod.name_any(), pod.uid().unwrap_or_default());
                let mut seen = sink.lock().expect("seen");
                if deleted {
                    seen.push(Seen::Deleted(id.0, id.1));
                    continue;
                }
                if known.insert(id.clone()) {
                    seen.push(Seen::Created(id.0.clone(), id.1.clone()));
                }
                if pod_ready(&pod) && ready.insert(id.clone()) {
                    seen.push(Seen::Ready(id.0, id.1));
                }
            }
        });

        let reasons = Arc::new(Mutex::new(Vec::new()));
        let mut parent_events = sets
            .watch(&WatchParams::default(), "0")
            .await
            .expect("watch CatSets")
            .boxed();
        let sink = reasons.clone();
        tokio::spawn(async move {
            while let Ok(Some(event)) = parent_events.try_next().await {
                let (WatchEvent::Added(p) | WatchEvent::Modified(p)) = event else {
                    continue;
                };
                let reason = p
                    .data
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "Updated"))
                    .and_then(|c| c["reason"].as_str())
                    .map(str::to_owned);
                let mut reasons = sink.lock().expect("reasons");
                if let Some(reason) = reason
                    && reasons.last() != Some(&reason)
                {
                    reasons.push(reason);
                }
            }
        });

        Self {
            claims: h.api(),
            sets,
            pods,
            seen,
            reasons,
            volumes: Vec::new(),
            h,
        }
    }

    /// PersistentVolumes bound in advance to the claims `www-nginx-backend-<i>`: with no
    /// provisioner, the PersistentVolume controller binds each claim to its volume.
    async fn make_volumes(&mut self, n: usize) {
        let api: Api<PersistentVolume> = Api::all(self.h.client.clone());
        for i in 0..n {
            let name = format!("{}-www-{i}", self.h.ns);
            let pv: PersistentVolume = serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "hostPath": {"path": format!("/tmp/kubelambda-catset/{name}")},
                    "claimRef": {"namespace": self.h.ns, "name": format!("www-{NAME}-{i}")},
                },
            }))
            .expect("PersistentVolume");
            api.create(&PostParams::default(), &pv)
                .await
                .expect("create PersistentVolume");
            self.volumes.push(name);
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    async fn status(&self) -> Option<Value> {
        self.sets.get(NAME).await.ok()?.data.get("status").cloned()
    }

    async fn wait_status(&self, replicas: i64, ready: i64) {
        wait_until(
            &format!("status replicas {replicas}, readyReplicas {ready}"),
            || async {
                let status = self.status().await?;
                (status["replicas"] == replicas && status["readyReplicas"] == ready).then_some(())
            },
        )
        .await
    }

    async fn patch_spec(&self, spec: Value) {
        self.sets
            .patch(
                NAME,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": spec})),
            )
            .await
            .expect("patch the CatSet");
    }

    /// The Pods there are, by name.
    async fn pods_now(&self) -> BTreeMap<String, Pod> {
        let list = self
            .pods
            .list(&Default::default())
            .await
            .expect("list Pods");
        list.items.into_iter().map(|p| (p.name_any(), p)).collect()
    }

    /// The Pod `name`'s uids, in order of creation.
    fn uids(&self, name: &str) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Created(n, uid) if n == name => Some(uid),
                _ => None,
            })
            .collect()
    }

    fn position(&self, what: &Seen) -> usize {
        let seen = self.seen();
        seen.iter()
            .position(|s| s == what)
            .unwrap_or_else(|| panic!("{what:?} not seen; seen: {seen:#?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comes_up_in_order_rolls_one_at_a_time_scales_and_tears_down_in_order() {
    let mut c = CatSet::new().await;
    c.make_volumes(4).await;
    let mut service: Service =
        serde_json::from_value(example_doc(EXAMPLE, "catset.yaml", "Service")).expect("Service");
    service.metadata.namespace = Some(c.h.ns.clone());
    c.h.api::<Service>()
        .create(&PostParams::default(), &service)
        .await
        .expect("create the headless Service");
    let mut parent = example_doc(EXAMPLE, "catset.yaml", "CatSet");
    parent["metadata"]["labels"] = json!({"kubelambda-test": c.h.label});
    let parent: DynamicObject = serde_json::from_value(parent).expect("CatSet");
    c.sets
        .create(&PostParams::default(), &parent)
        .await
        .expect("create the CatSet");

    // test.sh: 3 Pods Ready. Each created only once the one before it is Ready.
    c.wait_status(3, 3).await;
    let created_then_ready: Vec<(String, bool)> = c
        .seen()
        .into_iter()
        .filter_map(|s| match s {
            Seen::Created(n, _) => Some((n, false)),
            Seen::Ready(n, _) => Some((n, true)),
            Seen::Deleted(..) => None,
        })
        .collect();
    let expected: Vec<(String, bool)> = (0..3)
        .flat_map(|i| [(pod_name(i), false), (pod_name(i), true)])
        .collect();
    assert_eq!(created_then_ready, expected, "one after the other");
    let pods = c.pods_now().await;
    let zero = pods[&pod_name(0)].spec.clone().expect("spec");
    assert_eq!(
        (zero.hostname.as_deref(), zero.subdomain.as_deref()),
        (Some("nginx-backend-0"), Some("nginx-backend"))
    );
    let claim_names: Vec<_> = zero
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect();
    assert_eq!(claim_names, vec!["www-nginx-backend-0"]);
    for i in 0..3 {
        let claim = c
            .claims
            .get(&format!("www-{NAME}-{i}"))
            .await
            .expect("claim");
        assert_eq!(
            claim.status.and_then(|s| s.phase).as_deref(),
            Some("Bound"),
            "claim {i}"
        );
    }

    // test.sh: scale up to 4.
    c.patch_spec(json!({"replicas": 4})).await;
    c.wait_status(4, 4).await;

    // A new template: Pods roll one at a time, highest ordinal first, each re-created Pod
    // Ready before the next one is deleted.
    let before = c.seen().len();
    c.patch_spec(json!({"template": {"metadata": {"labels": {"version": "two"}}}}))
        .await;
    wait_until("every Pod on the new template and Ready", || async {
        let pods = c.pods_now().await;
        (pods.len() == 4
            && pods.values().all(|p| {
                p.labels().get("version").map(String::as_str) == Some("two") && pod_ready(p)
            }))
        .then_some(())
    })
    .await;
    let mut previous_ready = None;
    for i in (0..4).rev() {
        let name = pod_name(i);
        let uids = c.uids(&name);
        assert_eq!(uids.len(), 2, "{name} re-created once: {:#?}", c.seen());
        let deleted = c.position(&Seen::Deleted(name.clone(), uids[0].clone()));
        let created = c.position(&Seen::Created(name.clone(), uids[1].clone()));
        let ready = c.position(&Seen::Ready(name.clone(), uids[1].clone()));
        assert!(
            deleted >= before && deleted < created && created < ready,
            "{name}"
        );
        if let Some(previous) = previous_ready {
            assert!(
                previous < deleted,
                "{name} deleted only after the Pod above it was Ready again"
            );
        }
        previous_ready = Some(ready);
    }
    wait_until("Updated: OnLatestRevision", || async {
        (c.reasons
            .lock()
            .expect("reasons")
            .last()
            .map(String::as_str)
            == Some("OnLatestRevision"))
        .then_some(())
    })
    .await;
    let reasons = c.reasons.lock().expect("reasons").clone();
    assert!(
        reasons.iter().any(|r| r == "RolloutProgressing"),
        "the rollout progressed: {reasons:?}"
    );
    let status = c.status().await.expect("status");
    let updated = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Updated"))
        .cloned()
        .expect("Updated condition");
    assert_eq!(updated["status"], "True");
    let revisions: Api<kubelambda::api::ControllerRevision> = c.h.api();
    wait_until("one ControllerRevision left", || async {
        let list = revisions.list(&Default::default()).await.ok()?;
        (list.items.len() == 1).then_some(())
    })
    .await;

    // test.sh: scale down to 2: the highest goes first; the claims stay.
    let before = c.seen().len();
    c.patch_spec(json!({"replicas": 2})).await;
    c.wait_status(2, 2).await;
    wait_deleted(&c.pods, &pod_name(2)).await;
    let deletions: Vec<String> = c.seen()[before..]
        .iter()
        .filter_map(|s| match s {
            Seen::Deleted(n, _) => Some(n.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(deletions, vec![pod_name(3), pod_name(2)]);
    for i in 0..4 {
        assert!(
            c.claims
                .get_opt(&format!("www-{NAME}-{i}"))
                .await
                .expect("get claim")
                .is_some(),
            "claim {i} kept"
        );
    }

    // test.sh: deleted with a finalizer of our own, so the end state can be read: the finalize
    // hook scales to 0, then lets go.
    let set = c.sets.get(NAME).await.expect("the CatSet");
    let mut finalizers = set.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    // With the resourceVersion read: a finalizer the engine adds meanwhile is not lost.
    c.sets
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {
                "finalizers": finalizers,
                "resourceVersion": set.resource_version(),
            }})),
        )
        .await
        .expect("add our finalizer");
    c.sets
        .delete(NAME, &DeleteParams::default())
        .await
        .expect("delete the CatSet");
    wait_until("only our finalizer left, at 0 replicas", || async {
        let set = c.sets.get(NAME).await.ok()?;
        (set.finalizers() == [FINALIZER.to_owned()] && c.status().await?["replicas"] == 0)
            .then_some(())
    })
    .await;
    let deletions: Vec<String> = c
        .seen()
        .iter()
        .filter_map(|s| match s {
            Seen::Deleted(n, _) => Some(n.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        deletions[deletions.len() - 2..],
        [pod_name(1), pod_name(0)],
        "torn down highest first"
    );
    c.sets
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("remove our finalizer");
    wait_deleted(&c.sets, NAME).await;
    for i in 0..4 {
        wait_deleted(&c.claims, &format!("www-{NAME}-{i}")).await;
    }

    let volumes: Api<PersistentVolume> = Api::all(c.h.client.clone());
    for name in &c.volumes {
        volumes
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete PersistentVolume");
    }
    delete_namespace(&c.h.client, &c.h.ns).await;
}
