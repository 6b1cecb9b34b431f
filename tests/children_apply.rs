//! Children exactly as the hook says, under both apply strategies and every non-rolling update
//! method, on the real control plane: fields the hook stops returning are removed, nothing is
//! written while nothing changes, fields others set are kept, managed fields edited by others are
//! restored (InPlace), left (OnDelete) or re-created once (Recreate), and switching the apply
//! strategy of a running controller converges. Every case bounds the number of writes, so a hot
//! loop fails the test instead of slowing it down.

mod common;

use std::collections::BTreeMap;

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kubelambda::engine::children::ApplyStrategy;
use serde_json::{Value, json};

/// A ConfigMap and a ServiceAccount per parent; labels, annotations, data and image pull secrets
/// come from the parent's spec.
const HOOK: &str = r#"
function(request) {
  local spec = request.parent.spec,
  local meta = { name: spec.name, labels: spec.labels, annotations: spec.annotations },
  children: [
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: meta, data: spec.data },
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta,
      imagePullSecrets: [{ name: s } for s in spec.pulls] },
  ],
  status: { version: spec.version },
}
"#;

fn ssa() -> ApplyStrategy {
    ApplyStrategy::ServerSide {
        field_manager: "kubelambda".into(),
    }
}

fn full_spec(name: &str) -> Value {
    json!({
        "name": name,
        "version": 1,
        "labels": {"tier": "gold", "team": "blue"},
        "annotations": {"a1": "x", "a2": "y"},
        "data": {"k1": "v1", "k2": "v2"},
        "pulls": ["s1", "s2"],
    })
}

/// The same spec with one label, one annotation, one data key and one list item removed.
fn reduced_spec(name: &str) -> Value {
    json!({
        "name": name,
        "version": 2,
        "labels": {"tier": "gold", "team": null},
        "annotations": {"a1": "x", "a2": null},
        "data": {"k1": "v1", "k2": null},
        "pulls": ["s1"],
    })
}

fn labels(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.labels().clone()
}

fn pulls(sa: &ServiceAccount) -> Vec<String> {
    sa.image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect()
}

fn has_full(cm: &ConfigMap, sa: &ServiceAccount) -> bool {
    labels(cm).get("team").map(String::as_str) == Some("blue")
        && cm.annotations().contains_key("a2")
        && cm.data.as_ref().is_some_and(|d| d.contains_key("k2"))
        && pulls(sa) == ["s1", "s2"]
}

fn has_reduced(cm: &ConfigMap, sa: &ServiceAccount) -> bool {
    !labels(cm).contains_key("team")
        && !cm.annotations().contains_key("a2")
        && cm
            .data
            .as_ref()
            .is_some_and(|d| !d.contains_key("k2") && d.contains_key("k1"))
        && labels(cm).get("tier").map(String::as_str) == Some("gold")
        && pulls(sa) == ["s1"]
        && !sa.annotations().contains_key("a2")
}

struct Children {
    cms: Api<ConfigMap>,
    sas: Api<ServiceAccount>,
    name: String,
}

impl Children {
    fn new(h: &Harness, name: &str) -> Self {
        Self {
            cms: h.api(),
            sas: h.api(),
            name: name.to_owned(),
        }
    }

    async fn get(&self) -> Option<(ConfigMap, ServiceAccount)> {
        let cm = self.cms.get_opt(&self.name).await.ok()??;
        let sa = self.sas.get_opt(&self.name).await.ok()??;
        Some((cm, sa))
    }

    async fn wait(
        &self,
        what: &str,
        pred: impl Fn(&ConfigMap, &ServiceAccount) -> bool,
    ) -> ConfigMap {
        wait_until(what, || async {
            let (cm, sa) = self.get().await?;
            (cm.metadata.deletion_timestamp.is_none() && pred(&cm, &sa)).then_some(cm)
        })
        .await
    }

    /// An edit by someone else (another field manager).
    async fn edit_labels(&self, labels: Value) {
        self.cms
            .patch(
                &self.name,
                &PatchParams {
                    field_manager: Some("someone-else".into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(&json!({"metadata": {"labels": labels}})),
            )
            .await
            .expect("edit the child");
    }
}

/// Waits until the engine has run `n` more syncs, so that a "nothing happened" check is made
/// after the controller has looked.
async fn after_syncs(h: &Harness, n: u64) {
    let start = h.engine().metrics.syncs();
    wait_until(&format!("{n} more syncs"), || async {
        (h.engine().metrics.syncs() >= start + n).then_some(())
    })
    .await;
}

/// Object and event writes during the next `syncs` syncs.
async fn writes_while_syncing(h: &Harness, syncs: u64) -> u64 {
    let metrics = &h.engine().metrics;
    let before = metrics.writes() + metrics.event_writes();
    after_syncs(h, syncs).await;
    metrics.writes() + metrics.event_writes() - before
}

async fn matrix_case(test: &str, strategy: ApplyStrategy, method: &str) {
    let h = Harness::with_strategy(test, strategy).await;
    h.controller(
        "apply",
        json!({
            "generateSelector": true,
            "resyncPeriodSeconds": 1,
            "childResources": [
                {"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": method}},
                {"apiVersion": "v1", "resource": "serviceaccounts", "updateStrategy": {"method": method}},
            ],
            "hooks": {"sync": {"jsonnet": {"source": HOOK}}},
        }),
    )
    .await;
    let children = Children::new(&h, "child");
    let writes_at_start = h.engine().metrics.writes();
    h.parent("p", full_spec("child")).await;
    let first = children.wait("children with every field", has_full).await;
    after_syncs(&h, 3).await;
    let created_writes = h.engine().metrics.writes() - writes_at_start;
    // Two creates and a status write, and at most a repeated create per child while the watch
    // has not yet delivered it (a no-op for the API server).
    assert!(
        created_writes <= 5,
        "{method}: {created_writes} writes to create two children"
    );
    // Nothing is written twice after creation: the child is as it was created.
    let (cm, sa) = children.get().await.expect("children exist");
    assert_eq!(cm.resource_version(), first.resource_version(), "{method}");
    assert_eq!(cm.owner_references().len(), 1, "{method}: {cm:?}");
    assert_eq!(sa.owner_references().len(), 1, "{method}: {sa:?}");

    // Nothing changes: no writes at all, across resyncs.
    assert_eq!(
        writes_while_syncing(&h, 4).await,
        0,
        "{method}: writes while nothing changed"
    );

    // A field someone else added is kept; no write answers it.
    children.edit_labels(json!({"extra": "mine"})).await;
    let writes = writes_while_syncing(&h, 4).await;
    let (cm, _) = children.get().await.expect("children exist");
    assert_eq!(labels(&cm).get("extra").map(String::as_str), Some("mine"));
    assert_eq!(cm.uid(), first.uid(), "{method}: not re-created");
    assert_eq!(writes, 0, "{method}: writes after an unmanaged edit");

    // The hook stops returning a label, an annotation, a data key and a list item.
    let before = h.engine().metrics.writes();
    h.patch_parent("p", reduced_spec("child")).await;
    match method {
        "OnDelete" => {
            after_syncs(&h, 4).await;
            let (cm, sa) = children.get().await.expect("children exist");
            assert!(
                has_full(&cm, &sa),
                "OnDelete leaves existing children alone"
            );
            assert_eq!(cm.uid(), first.uid());
            // Deleted by someone: re-created as now desired.
            children
                .cms
                .delete("child", &Default::default())
                .await
                .expect("delete");
            children
                .sas
                .delete("child", &Default::default())
                .await
                .expect("delete");
            children
                .wait("children re-created as desired", has_reduced)
                .await;
        }
        _ => {
            let cm = children
                .wait("the dropped fields removed", has_reduced)
                .await;
            if method == "InPlace" {
                assert_eq!(cm.uid(), first.uid(), "InPlace updates in place");
            } else {
                assert_ne!(cm.uid(), first.uid(), "Recreate re-creates");
            }
        }
    }
    let (cm, _) = children.get().await.expect("children exist");
    if method == "InPlace" {
        assert_eq!(
            labels(&cm).get("extra").map(String::as_str),
            Some("mine"),
            "{method}: a label someone else set survives the update"
        );
    }
    after_syncs(&h, 4).await;
    let writes = h.engine().metrics.writes() - before;
    // Two children updated, or deleted and created again, and a status write (plus a dry run
    // per child for Recreate).
    assert!(writes <= 9, "{method}: {writes} writes for one change");
    assert_eq!(
        writes_while_syncing(&h, 4).await,
        0,
        "{method}: writes after converging"
    );

    // Someone changes a field the hook manages.
    let uid = cm.uid();
    children.edit_labels(json!({"tier": "silver"})).await;
    let before = h.engine().metrics.writes();
    match method {
        "OnDelete" => {
            after_syncs(&h, 4).await;
            let (cm, _) = children.get().await.expect("children exist");
            assert_eq!(labels(&cm)["tier"], "silver", "OnDelete leaves it");
        }
        "InPlace" => {
            let cm = children
                .wait("the managed label restored", |cm, _| {
                    labels(cm).get("tier").map(String::as_str) == Some("gold")
                })
                .await;
            assert_eq!(cm.uid(), uid);
        }
        _ => {
            children
                .wait("the child re-created with the managed label", |cm, _| {
                    labels(cm).get("tier").map(String::as_str) == Some("gold")
                })
                .await;
        }
    }
    after_syncs(&h, 6).await;
    let writes = h.engine().metrics.writes() - before;
    assert!(
        writes <= 3,
        "{method}: {writes} writes after an edit of a managed field"
    );
    assert_eq!(
        writes_while_syncing(&h, 4).await,
        0,
        "{method}: no loop after an edit of a managed field"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssa_in_place() {
    matrix_case("ssa-inplace", ssa(), "InPlace").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssa_recreate() {
    matrix_case("ssa-recreate", ssa(), "Recreate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssa_on_delete() {
    matrix_case("ssa-ondelete", ssa(), "OnDelete").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_in_place() {
    matrix_case("dyn-inplace", ApplyStrategy::Dynamic, "InPlace").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_recreate() {
    matrix_case("dyn-recreate", ApplyStrategy::Dynamic, "Recreate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_on_delete() {
    matrix_case("dyn-ondelete", ApplyStrategy::Dynamic, "OnDelete").await;
}

/// A running controller switched from dynamic apply to server-side apply and back: each switch
/// converges with one child, and fields dropped after a switch are removed, the last-applied
/// annotation included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_apply_strategy_converges() {
    let mut h = Harness::with_strategy("switch", ApplyStrategy::Dynamic).await;
    h.controller(
        "switch",
        json!({
            "generateSelector": true,
            "resyncPeriodSeconds": 1,
            "childResources": [
                {"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}},
                {"apiVersion": "v1", "resource": "serviceaccounts", "updateStrategy": {"method": "InPlace"}},
            ],
            "hooks": {"sync": {"jsonnet": {"source": HOOK}}},
        }),
    )
    .await;
    let children = Children::new(&h, "sw");
    h.parent("p", full_spec("sw")).await;
    let first = children.wait("children with every field", has_full).await;
    assert!(
        first
            .annotations()
            .contains_key("metacontroller.k8s.io/last-applied-configuration")
    );

    // To server-side apply: the fields dynamic apply wrote become ours to remove.
    h.config.apply = ssa();
    h.restart();
    h.patch_parent("p", reduced_spec("sw")).await;
    let cm = children
        .wait(
            "dropped fields and the annotation removed under SSA",
            |cm, sa| {
                has_reduced(cm, sa)
                    && !cm
                        .annotations()
                        .contains_key("metacontroller.k8s.io/last-applied-configuration")
            },
        )
        .await;
    assert_eq!(cm.uid(), first.uid());
    assert_eq!(
        writes_while_syncing(&h, 3).await,
        0,
        "no writes after converging under SSA"
    );

    // And back: the fields SSA owned stand in for the missing annotation.
    h.config.apply = ApplyStrategy::Dynamic;
    h.restart();
    h.patch_parent(
        "p",
        json!({"labels": {"tier": null, "other": "x"}, "data": {"k3": "v3"}, "version": 3}),
    )
    .await;
    let cm = children
        .wait("a label dropped after switching back", |cm, _| {
            !labels(cm).contains_key("tier")
                && labels(cm).get("other").map(String::as_str) == Some("x")
                && cm.data.as_ref().is_some_and(|d| d.contains_key("k3"))
        })
        .await;
    assert_eq!(cm.uid(), first.uid());
    let all = children.cms.list(&Default::default()).await.expect("list");
    // kube-controller-manager publishes the cluster CA as `kube-root-ca.crt` in every namespace.
    let names: Vec<_> = all
        .items
        .iter()
        .map(|c| c.name_any())
        .filter(|n| n != "kube-root-ca.crt")
        .collect();
    assert_eq!(names, ["sw"], "no duplicate children");
}
