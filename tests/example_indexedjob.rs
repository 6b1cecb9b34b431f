//! `examples/indexedjob` (a Tera hook) on the test cluster: what Metacontroller's
//! `indexedjob/test.sh` checks (ten completions counted in the status; Pod `print-index-9` is
//! told its index), and the edges: never more than `parallelism` unfinished Pods, a finished job
//! creates nothing more, a failed Pod is counted and not replaced.
//!
//! KWOK schedules the Pods and makes them Running and Ready, but its default `pod-complete` Stage
//! only finishes Pods owned by a `Job` (`.metadata.ownerReferences.[].kind In [Job]`). An
//! IndexedJob's Pods are owned by the IndexedJob, so the test plays their containers: it sets
//! each Running Pod's phase to `Succeeded` or `Failed` through the status subresource, as the
//! kubelet would.

mod common;

use std::collections::BTreeMap;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const EXAMPLE: &str = "indexedjob";

struct Jobs {
    h: Harness,
    jobs: Api<DynamicObject>,
    pods: Api<Pod>,
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn finished(p: &Pod) -> bool {
    matches!(phase(p), "Succeeded" | "Failed")
}

impl Jobs {
    async fn new(test: &str) -> Self {
        let h = Harness::new(test).await;
        let crd = example_doc(EXAMPLE, "crd.yaml", "CustomResourceDefinition");
        create_crd(&h.client, crd.clone()).await;
        let mut cc = example_controller(&h, EXAMPLE);
        cc["spec"]["resyncPeriodSeconds"] = json!(1);
        create_cc(&h.client, cc).await;
        Self {
            jobs: Api::namespaced_with(h.client.clone(), &h.ns, &example_resource(&crd)),
            pods: h.api(),
            h,
        }
    }

    /// Creates the example's IndexedJob with `spec` merged into its spec.
    async fn create(&self, spec: Value) -> String {
        let mut job = example_doc(EXAMPLE, "indexedjob.yaml", "IndexedJob");
        job["metadata"]["labels"] = json!({"kubelambda-test": self.h.label});
        if let (Some(to), Some(from)) = (job["spec"].as_object_mut(), spec.as_object()) {
            to.extend(from.clone());
        }
        let job: DynamicObject = serde_json::from_value(job).expect("IndexedJob");
        self.jobs
            .create(&PostParams::default(), &job)
            .await
            .expect("create the IndexedJob");
        job.name_any()
    }

    async fn pods_by_name(&self) -> Option<BTreeMap<String, Pod>> {
        let list = self.pods.list(&Default::default()).await.ok()?;
        Some(list.items.into_iter().map(|p| (p.name_any(), p)).collect())
    }

    async fn status(&self, job: &str) -> Option<Value> {
        self.jobs.get(job).await.ok()?.data.get("status").cloned()
    }

    /// Ends a Pod's only container as the kubelet would: `Succeeded` (exit 0) or `Failed`.
    async fn finish(&self, pod: &Pod, phase: &str) {
        let container = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .expect("a container");
        let (code, reason) = if phase == "Succeeded" {
            (0, "Completed")
        } else {
            (1, "Error")
        };
        let status = json!({"status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{
                "name": container.name, "image": container.image, "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code, "reason": reason}},
            }],
        }});
        self.pods
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await
            .unwrap_or_else(|e| panic!("finishing {}: {e}", pod.name_any()));
    }

    /// Waits until the engine has synced `n` more times (the controller resyncs every second).
    async fn let_it_sync(&self, n: u64) {
        let metrics = self.h.engine().metrics.clone();
        let start = metrics.syncs();
        wait_until(&format!("{n} more syncs"), || {
            let metrics = metrics.clone();
            async move { (metrics.syncs() >= start + n).then_some(()) }
        })
        .await
    }
}

/// The Pod's `JOB_INDEX` and its index label.
fn index_of(p: &Pod) -> (Option<String>, Option<String>) {
    let env = p
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.env.clone())
        .unwrap_or_default();
    let value = env
        .iter()
        .find(|e| e.name == "JOB_INDEX")
        .and_then(|e| e.value.clone());
    let label = p.labels().get("indexedjob.example.com/index").cloned();
    (value, label)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completes_ten_indexes_two_at_a_time_and_then_stops() {
    let j = Jobs::new("indexedjob").await;
    let job = j.create(json!({})).await;

    // The test runs each Pod once KWOK has it Running; it never sees more than two unfinished.
    let most_unfinished = std::cell::Cell::new(0);
    wait_until("10 succeeded and Complete", || async {
        let pods = j.pods_by_name().await?;
        let unfinished = pods.values().filter(|p| !finished(p)).count();
        most_unfinished.set(most_unfinished.get().max(unfinished));
        assert!(
            unfinished <= 2,
            "parallelism 2, unfinished: {:?}",
            pods.keys()
        );
        for (name, p) in &pods {
            if phase(p) == "Running" {
                let index = name.rsplit('-').next().map(str::to_owned);
                assert_eq!(
                    index_of(p),
                    (index.clone(), index),
                    "{name} knows its index"
                );
                j.finish(p, "Succeeded").await;
            }
        }
        let status = j.status(&job).await?;
        let complete = status["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Complete" && c["status"] == "True");
        (complete && status["succeeded"] == 10).then_some(())
    })
    .await;
    assert_eq!(most_unfinished.get(), 2, "two Pods ran at once");
    let status = j.status(&job).await.expect("status");
    assert_eq!(
        (status["active"].clone(), status["failed"].clone()),
        (json!(0), json!(0))
    );
    let pods = j.pods_by_name().await.expect("pods");
    let names: Vec<String> = (0..10).map(|i| format!("print-index-{i}")).collect();
    assert_eq!(pods.keys().cloned().collect::<Vec<_>>(), {
        let mut sorted = names.clone();
        sorted.sort();
        sorted
    });
    // test.sh's `kubectl logs print-index-9` is 9: the Pod is told its index.
    let nine = &pods["print-index-9"];
    assert_eq!(index_of(nine).0.as_deref(), Some("9"));
    assert_eq!(owner_uid(nine), j.jobs.get(&job).await.expect("job").uid());

    // Finished: a Pod deleted afterwards (by hand, or Pod garbage collection) does not run
    // again, and the status stays as it was.
    j.pods
        .delete("print-index-3", &DeleteParams::default())
        .await
        .expect("delete a finished Pod");
    wait_deleted(&j.pods, "print-index-3").await;
    let writes = j.h.engine().metrics.writes();
    j.let_it_sync(3).await;
    assert!(
        j.pods
            .get_opt("print-index-3")
            .await
            .expect("get")
            .is_none(),
        "not re-created"
    );
    assert_eq!(j.status(&job).await.expect("status")["succeeded"], 10);
    assert_eq!(
        j.h.engine().metrics.writes(),
        writes,
        "a finished job writes nothing"
    );

    // Deleted: its Pods go with it.
    j.jobs
        .delete(&job, &DeleteParams::default())
        .await
        .expect("delete the job");
    for name in names.iter().filter(|n| *n != "print-index-3") {
        wait_deleted(&j.pods, name).await;
    }
    delete_namespace(&j.h.client, &j.h.ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pod_is_counted_and_not_replaced() {
    let j = Jobs::new("indexedjob-failed").await;
    let mut template =
        example_doc(EXAMPLE, "indexedjob.yaml", "IndexedJob")["spec"]["template"].clone();
    template["spec"]["restartPolicy"] = json!("Never");
    let job = j
        .create(json!({"completions": 3, "parallelism": 3, "template": template}))
        .await;
    let running = wait_until("three Pods Running", || async {
        let pods = j.pods_by_name().await?;
        (pods.len() == 3 && pods.values().all(|p| phase(p) == "Running")).then_some(pods)
    })
    .await;
    let failed_uid = running["print-index-1"].uid();
    j.finish(&running["print-index-0"], "Succeeded").await;
    j.finish(&running["print-index-1"], "Failed").await;
    wait_until("one succeeded, one failed, one active", || async {
        let status = j.status(&job).await?;
        (status["succeeded"] == 1 && status["failed"] == 1 && status["active"] == 1).then_some(())
    })
    .await;
    j.finish(&running["print-index-2"], "Succeeded").await;
    let status = wait_until("the job Failed", || async {
        let status = j.status(&job).await?;
        let failed = status["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Failed" && c["status"] == "True");
        failed.then_some(status)
    })
    .await;
    assert_eq!(
        (
            status["succeeded"].clone(),
            status["failed"].clone(),
            status["active"].clone()
        ),
        (json!(2), json!(1), json!(0))
    );
    let complete = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Complete")
        .expect("Complete condition")
        .clone();
    assert_eq!(complete["status"], "False");
    j.let_it_sync(3).await;
    let pods = j.pods_by_name().await.expect("pods");
    assert_eq!(pods.len(), 3, "no Pod added: {:?}", pods.keys());
    assert_eq!(
        pods["print-index-1"].uid(),
        failed_uid,
        "the failed Pod is kept, not replaced"
    );
    assert_eq!(phase(&pods["print-index-1"]), "Failed");
    delete_namespace(&j.h.client, &j.h.ns).await;
}

#[test]
fn the_inline_template_is_sync_tera() {
    let cc = example_doc(EXAMPLE, "controller.yaml", "CompositeController");
    let inline = cc["spec"]["hooks"]["sync"]["tera"]["template"]
        .as_str()
        .expect("inline template");
    let file =
        std::fs::read_to_string(root().join("examples/indexedjob/sync.tera")).expect("sync.tera");
    assert_eq!(inline, file);
}
