//! Faults in the objects a running engine works on (issue 13's fault suite), on the shared
//! control plane (each test has its own namespace, label and CRDs): an external writer fighting
//! a managed field, a parent deleted while its hook call is in flight, the namespace deleted,
//! a child type's CRD deleted and re-created, the parent CRD deleted and re-created.
//!
//! Each asserts the four outcomes of the suite (no duplicate child, no child deleted because of
//! the fault, status converged afterwards, writes within a budget) and prints recovery times
//! (`RECOVERY …` lines with `--nocapture`), never asserting on them.

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

const PARENTS: usize = 5;

fn configmaps() -> ApiResource {
    ApiResource::erase::<ConfigMap>(&())
}

/// A namespaced CRD `<plural>.<group>` (any fields kept), with a status subresource.
fn crd(group: &str, kind: &str, plural: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase()},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    })
}

fn crd_ar(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: "v1".into(),
        api_version: format!("{group}/v1"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Deletes a CRD and waits until it (and so every object of its type) is gone.
async fn delete_crd(h: &Harness, name: &str) {
    let crds: Api<CustomResourceDefinition> = Api::all(h.client.clone());
    crds.delete(name, &DeleteParams::default())
        .await
        .expect("delete CRD");
    wait_deleted(&crds, name).await;
}

/// The ConfigMap controller the workload runs, for TestParents of this test.
async fn configmap_controller(h: &Harness) {
    h.controller(
        "faults",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}}],
            "hooks": {"sync": {"jsonnet": {"source": fault_hook("v1", "ConfigMap")}}},
        }),
    )
    .await;
}

fn workload(h: &Harness, ns: &str, parent: &ApiResource, child: &ApiResource) -> Workload {
    Workload::new(
        &h.client,
        ns,
        parent,
        child,
        &[("kubelambda-test", &h.label)],
    )
}

/// Waits `quiet` and asserts the engine wrote nothing meanwhile (a converged controller idles).
async fn assert_quiet(h: &Harness, what: &str) {
    let settled = h.engine().metrics.writes();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_writes_within(
        &format!("{what}, steady state"),
        settled,
        h.engine().metrics.writes(),
        0,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_writer_fighting_a_managed_field_is_undone_with_bounded_writes() {
    let h = Harness::new("fault-fight").await;
    configmap_controller(&h).await;
    let w = workload(&h, &h.ns, &parent_ar(), &configmaps());
    w.create_parents("p", 1, 1).await;
    w.wait_converged(1, "start").await;
    let before = w.snapshot().await;
    let writes = h.engine().metrics.writes();
    let cms: Api<ConfigMap> = h.api();
    const ROUNDS: u64 = 5;
    for round in 0..ROUNDS {
        cms.patch(
            "p0-child",
            &PatchParams {
                field_manager: Some("intruder".into()),
                ..Default::default()
            },
            &Patch::Merge(&json!({"data": {"v": format!("intruder-{round}")}})),
        )
        .await
        .expect("the intruder's write");
        let started = Instant::now();
        wait_until(&format!("round {round}: data.v restored"), || async {
            let cm = cms.get("p0-child").await.ok()?;
            (cm.data?.get("v")? == "1").then_some(())
        })
        .await;
        eprintln!(
            "RECOVERY fight round {round}: restored in {:?}",
            started.elapsed()
        );
    }
    w.wait_converged(1, "after the fight").await;
    assert_intact("fight", &before, &w.snapshot().await);
    // One child write per round; the status does not change.
    assert_writes_within("fight", writes, h.engine().metrics.writes(), ROUNDS * 2);
    assert_quiet(&h, "fight").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_deleted_while_its_hook_runs_leaves_no_child_and_no_retry_loop() {
    let h = Harness::new("fault-deleted-mid-sync").await;
    let hook = FaultyHook::start("v1", "ConfigMap", Duration::from_secs(2)).await;
    h.controller(
        "mid-sync",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}}],
            "hooks": {"sync": {"webhook": {"url": hook.url, "timeout": "10s"}}},
        }),
    )
    .await;
    let w = workload(&h, &h.ns, &parent_ar(), &configmaps());
    w.create_parents("p", PARENTS, 1).await;
    w.wait_converged(1, "start").await;
    let before = w.snapshot().await;

    hook.set_mode(HookMode::Slow);
    let writes = h.engine().metrics.writes();
    w.create_parent("doomed", 1).await;
    wait_until("the doomed parent's hook call to be in flight", || async {
        hook.in_flight()
            .contains(&"doomed".to_string())
            .then_some(())
    })
    .await;
    w.parents
        .delete("doomed", &DeleteParams::default())
        .await
        .expect("delete the parent");
    wait_deleted(&w.parents, "doomed").await;
    // Whatever the in-flight sync wrote, no child of the deleted parent stays.
    let cms: Api<ConfigMap> = h.api();
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_deleted(&cms, "doomed-child").await;
    // And it is not retried forever: the hook is not called for it any more.
    let calls = hook.calls();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        hook.calls(),
        calls,
        "no more hook calls after the parent is gone"
    );

    hook.set_mode(HookMode::Ok);
    w.set_v(2).await;
    w.wait_converged(2, "after a parent deleted mid-sync").await;
    let after = w.snapshot().await;
    assert_intact("parent deleted mid-sync", &before, &after);
    assert_eq!(after.len(), PARENTS);
    // The doomed parent: at most its child and status; the others: a child update and a
    // status write each, plus a retry each.
    assert_writes_within(
        "parent deleted mid-sync",
        writes,
        h.engine().metrics.writes(),
        2 + (PARENTS as u64) * 4,
    );
    assert_quiet(&h, "parent deleted mid-sync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_namespace_costs_no_retry_loop_and_other_namespaces_carry_on() {
    let h = Harness::new("fault-ns").await;
    configmap_controller(&h).await;
    let doomed_ns = create_namespace(&h.client, "fault-ns-doomed").await;
    let kept = workload(&h, &h.ns, &parent_ar(), &configmaps());
    let doomed = workload(&h, &doomed_ns, &parent_ar(), &configmaps());
    kept.create_parents("p", PARENTS, 1).await;
    doomed.create_parents("p", PARENTS, 1).await;
    kept.wait_converged(1, "start").await;
    doomed.wait_converged(1, "start, doomed namespace").await;
    let before = kept.snapshot().await;
    let writes = h.engine().metrics.writes();

    delete_namespace(&h.client, &doomed_ns).await;
    let namespaces: Api<Namespace> = Api::all(h.client.clone());
    wait_deleted(&namespaces, &doomed_ns).await;
    kept.set_v(2).await;
    kept.wait_converged(2, "after a namespace was deleted")
        .await;
    let after = kept.snapshot().await;
    assert_intact("namespace deleted", &before, &after);
    assert_eq!(after.len(), PARENTS);
    // The kept parents' change; for the deleted ones, children re-created in vain while the
    // namespace terminates (refused), retried with the sync backoff (5 ms doubling): a
    // logarithmic number of attempts, about ten per parent for a few seconds of termination.
    assert_writes_within(
        "namespace deleted",
        writes,
        h.engine().metrics.writes(),
        (PARENTS as u64) * 4 + (PARENTS as u64) * 12,
    );
    assert_quiet(&h, "namespace deleted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_crd_deleted_and_recreated_gets_its_children_back() {
    let h = Harness::new("fault-child-crd").await;
    let group = format!("{}.faults.kubelambda.io", h.label);
    let child = crd_ar(&group, "FaultChild", "faultchildren");
    create_crd(&h.client, crd(&group, "FaultChild", "faultchildren")).await;
    h.controller(
        "child-crd",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": child.api_version, "resource": "faultchildren", "updateStrategy": {"method": "InPlace"}}],
            "hooks": {"sync": {"jsonnet": {"source": fault_hook(&child.api_version, "FaultChild")}}},
        }),
    )
    .await;
    let w = workload(&h, &h.ns, &parent_ar(), &child);
    w.create_parents("p", PARENTS, 1).await;
    w.wait_converged(1, "start").await;

    let writes = h.engine().metrics.writes();
    let crd_name = format!("faultchildren.{group}");
    delete_crd(&h, &crd_name).await;
    // While the type is gone: parents changed, children cannot be written.
    w.set_v(2).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let while_gone = h.engine().metrics.writes() - writes;
    eprintln!("WRITES while the child CRD is gone: {while_gone}");

    let recreated = Instant::now();
    create_crd(&h.client, crd(&group, "FaultChild", "faultchildren")).await;
    w.set_v(3).await;
    w.wait_converged(3, "after the child CRD was re-created")
        .await;
    eprintln!(
        "RECOVERY child CRD re-created: converged {:?} after the CRD was created again",
        recreated.elapsed()
    );
    let after = w.snapshot().await;
    assert_intact("child CRD re-created", &after, &after);
    assert!(
        after.values().all(|c| c.len() == 1),
        "one child per parent: {after:?}"
    );
    // Failed creates while the type is gone back off (5 ms doubling: 13 or so per parent in
    // those 5 s, measured, then fewer and fewer); then a child create and a status write per parent,
    // twice over.
    assert_writes_within(
        "child CRD gone",
        writes,
        writes + while_gone,
        (PARENTS as u64) * 20,
    );
    assert_writes_within(
        "child CRD deleted and re-created",
        writes,
        h.engine().metrics.writes(),
        (PARENTS as u64) * (20 + 4),
    );
    assert_quiet(&h, "child CRD re-created").await;
    delete_crd(&h, &crd_name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_crd_deleted_and_recreated_is_watched_again() {
    let h = Harness::new("fault-parent-crd").await;
    let group = format!("{}.faults.kubelambda.io", h.label);
    let parent = crd_ar(&group, "FaultParent", "faultparents");
    create_crd(&h.client, crd(&group, "FaultParent", "faultparents")).await;
    create_cc(
        &h.client,
        json!({
            "apiVersion": "metacontroller.k8s.io/v1alpha1",
            "kind": "CompositeController",
            "metadata": {"name": format!("parent-crd-{}", h.label), "labels": {"kubelambda-test": h.label}},
            "spec": {
                "generateSelector": true,
                "parentResource": {"apiVersion": parent.api_version, "resource": "faultparents"},
                "childResources": [{"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}}],
                "hooks": {"sync": {"jsonnet": {"source": fault_hook("v1", "ConfigMap")}}},
            },
        }),
    )
    .await;
    let w = workload(&h, &h.ns, &parent, &configmaps());
    w.create_parents("p", PARENTS, 1).await;
    w.wait_converged(1, "start").await;

    let writes = h.engine().metrics.writes();
    let crd_name = format!("faultparents.{group}");
    delete_crd(&h, &crd_name).await;
    // Readiness says which watch fails while its type is gone.
    let informers = h.engine().shared.informers.clone();
    let problem = wait_until(
        "the parent watch to be reported as not established",
        || async {
            informers
                .unestablished()
                .into_iter()
                .find(|(id, _)| id.contains("faultparents"))
        },
    )
    .await;
    eprintln!("READINESS while the parent CRD is gone: {problem:?}");
    let recreated = Instant::now();
    create_crd(&h.client, crd(&group, "FaultParent", "faultparents")).await;
    // New parents (new names: the old ones' children may still wait for the garbage collector).
    w.create_parents("q", PARENTS, 2).await;
    wait_until_ok("the new parents to converge", || async {
        let children = w.children_by_parent().await.map_err(|e| e.to_string())?;
        let mut missing = Vec::new();
        for i in 0..PARENTS {
            let name = format!("q{i}");
            let p: DynamicObject = w.parents.get(&name).await.map_err(|e| e.to_string())?;
            let converged = p.data.pointer("/status/v") == Some(&json!(2))
                && p.data.pointer("/status/children") == Some(&json!(1))
                && children.get(&name).is_some_and(|c| c.len() == 1);
            if !converged {
                missing.push(name);
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("not converged: {missing:?}"))
        }
    })
    .await;
    eprintln!(
        "RECOVERY parent CRD re-created: new parents converged {:?} after the CRD was created again",
        recreated.elapsed()
    );
    let after = w.snapshot().await;
    assert!(
        after.values().all(|c| c.len() == 1),
        "one child per parent: {after:?}"
    );
    assert_eq!(
        informers.unestablished(),
        Vec::<(String, String)>::new(),
        "every watch is established again"
    );
    // A child create and a status write or two per new parent.
    assert_writes_within(
        "parent CRD deleted and re-created",
        writes,
        h.engine().metrics.writes(),
        (PARENTS as u64) * 6,
    );
    assert_quiet(&h, "parent CRD re-created").await;
    delete_crd(&h, &crd_name).await;
}
