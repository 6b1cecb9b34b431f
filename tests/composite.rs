//! CompositeController end to end on the real control plane (kube-apiserver, etcd,
//! kube-controller-manager), with the engine running in-process. Metacontroller's composite
//! scenarios plus kubelambda's own: inline Jsonnet and Tera hooks, update strategies, fail-safe
//! behaviour, restart, and no writes in a steady state.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kubelambda::engine::children::ApplyStrategy;
use serde_json::{Value, json};

/// A ConfigMap child per parent, named by `spec.name`, data from `spec.data`.
const CONFIGMAP_HOOK: &str = r#"
function(request) {
  local spec = request.parent.spec,
  children: [{
    apiVersion: 'v1', kind: 'ConfigMap',
    metadata: { name: spec.name },
    data: std.get(spec, 'data', {}),
  }],
  status: { children: std.length(request.children['ConfigMap.v1']) },
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_jsonnet_creates_updates_recreates_and_deletes_children() {
    let h = Harness::new("jsonnet").await;
    h.controller(
        "cm",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}}],
            "hooks": {"sync": {"jsonnet": {"source": CONFIGMAP_HOOK}}},
        }),
    )
    .await;
    let parent = h
        .parent("p1", json!({"name": "one", "data": {"k": "v1"}}))
        .await;
    let cm = h.configmap("one").await;
    assert_eq!(
        owner_uid(&cm),
        parent.uid(),
        "child is controlled by its parent"
    );
    assert_eq!(
        cm.labels().get("controller-uid"),
        parent.uid().as_ref(),
        "generateSelector label"
    );
    assert_eq!(
        cm.data
            .as_ref()
            .and_then(|d| d.get("k"))
            .map(String::as_str),
        Some("v1")
    );

    // Status is written through /status with observedGeneration.
    let parents = h.parents();
    wait_until("parent status", || {
        let parents = parents.clone();
        async move {
            let p = parents.get("p1").await.ok()?;
            let status = p.data.get("status")?.clone();
            (status == json!({"children": 1, "observedGeneration": 1})).then_some(())
        }
    })
    .await;

    // Spec change: InPlace updates the same object.
    h.patch_parent("p1", json!({"data": {"k": "v2"}})).await;
    let cms: Api<ConfigMap> = h.api();
    let updated = wait_until("ConfigMap updated in place", || {
        let cms = cms.clone();
        async move {
            let cm = cms.get("one").await.ok()?;
            (cm.data.as_ref()?.get("k")? == "v2").then_some(cm)
        }
    })
    .await;
    assert_eq!(updated.uid(), cm.uid(), "InPlace keeps the object");

    // A child deleted by hand comes back.
    cms.delete("one", &DeleteParams::default())
        .await
        .expect("delete child");
    let recreated = wait_until("ConfigMap recreated", || {
        let cms = cms.clone();
        let old = cm.uid();
        async move {
            cms.get_opt("one")
                .await
                .ok()
                .flatten()
                .filter(|c| c.uid() != old)
        }
    })
    .await;
    assert_eq!(owner_uid(&recreated), parent.uid());

    // A renamed child: the new one is created, the undesired one deleted.
    h.patch_parent("p1", json!({"name": "two"})).await;
    h.configmap("two").await;
    wait_deleted(&cms, "one").await;

    // Deleting the parent garbage-collects its children (kube-controller-manager).
    parents
        .delete("p1", &DeleteParams::default())
        .await
        .expect("delete parent");
    wait_deleted(&cms, "two").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_tera_hook() {
    let h = Harness::new("tera").await;
    let template = r#"children:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: {{ parent.metadata.name }}-rendered
  data:
    greeting: {{ parent.spec.greeting | quote }}
    encoded: {{ parent.spec.greeting | b64encode }}
status:
  rendered: true
"#;
    h.controller(
        "tera",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
            "hooks": {"sync": {"tera": {"template": template}}},
        }),
    )
    .await;
    h.parent("t1", json!({"greeting": "hello: world"})).await;
    let cm = h.configmap("t1-rendered").await;
    let data = cm.data.expect("data");
    assert_eq!(data["greeting"], "hello: world");
    assert_eq!(data["encoded"], "aGVsbG86IHdvcmxk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_strategies_in_place_recreate_on_delete() {
    let h = Harness::new("strategies").await;
    let hook = r#"
function(request) {
  local v = request.parent.spec.version,
  local meta(name) = { name: name, annotations: { version: v } },
  children: [
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: meta('inplace') },
    { apiVersion: 'v1', kind: 'Secret', metadata: meta('recreate') },
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta('ondelete') },
  ],
}
"#;
    h.controller(
        "strategies",
        json!({
            "generateSelector": true,
            "childResources": [
                {"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}},
                {"apiVersion": "v1", "resource": "secrets", "updateStrategy": {"method": "Recreate"}},
                {"apiVersion": "v1", "resource": "serviceaccounts"},
            ],
            "hooks": {"sync": {"jsonnet": {"source": hook}}},
        }),
    )
    .await;
    h.parent("s1", json!({"version": "1"})).await;
    let cm = h.configmap("inplace").await;
    let secrets: Api<Secret> = h.api();
    let sas: Api<ServiceAccount> = h.api();
    let secret = wait_until("Secret", || {
        let s = secrets.clone();
        async move { s.get_opt("recreate").await.ok().flatten() }
    })
    .await;
    let sa = wait_until("ServiceAccount", || {
        let s = sas.clone();
        async move { s.get_opt("ondelete").await.ok().flatten() }
    })
    .await;

    h.patch_parent("s1", json!({"version": "2"})).await;
    let cms: Api<ConfigMap> = h.api();
    let cm2 = wait_until("ConfigMap at version 2", || {
        let c = cms.clone();
        async move {
            let cm = c.get("inplace").await.ok()?;
            (cm.annotations().get("version").map(String::as_str) == Some("2")).then_some(cm)
        }
    })
    .await;
    assert_eq!(cm2.uid(), cm.uid(), "InPlace updates the same object");
    let secret2 = wait_until("Secret recreated at version 2", || {
        let s = secrets.clone();
        async move {
            let sec = s.get_opt("recreate").await.ok().flatten()?;
            (sec.annotations().get("version").map(String::as_str) == Some("2")).then_some(sec)
        }
    })
    .await;
    assert_ne!(secret2.uid(), secret.uid(), "Recreate replaces the object");
    // OnDelete: still the old object at the old version.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sa2 = sas.get("ondelete").await.expect("sa");
    assert_eq!(sa2.uid(), sa.uid());
    assert_eq!(
        sa2.annotations().get("version").map(String::as_str),
        Some("1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_responses_and_failing_hooks_change_nothing() {
    let h = Harness::new("failsafe").await;
    let hook = r#"
function(request)
  local mode = request.parent.spec.mode;
  local good = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'keep' }, data: { mode: 'ok' } };
  if mode == 'fail' then error 'the hook gave up'
  else {
    children: [good] + (
      if mode == 'nokind' then [{ apiVersion: 'v1', metadata: { name: 'x' } }]
      else if mode == 'undeclared' then [{ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's' } }]
      else if mode == 'wrongns' then [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'y', namespace: 'kube-system' } }]
      else if mode == 'mismatch' then [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'z', labels: { 'controller-uid': 'someone-else' } } }]
      else if mode == 'cluster' then [{ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'kubelambda-failsafe-' + request.parent.metadata.namespace } }]
      else []
    ),
  }
"#;
    h.controller(
        "failsafe",
        json!({
            "generateSelector": true,
            "childResources": [
                {"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}},
                {"apiVersion": "rbac.authorization.k8s.io/v1", "resource": "clusterroles"},
            ],
            "hooks": {"sync": {"jsonnet": {"source": hook}}},
        }),
    )
    .await;
    h.parent("f1", json!({"mode": "ok"})).await;
    let keep = h.configmap("keep").await;
    let cases = [
        ("nokind", "children[1]: kind is missing"),
        (
            "undeclared",
            "type Secret.v1 is not declared by the controller",
        ),
        (
            "wrongns",
            "metadata.namespace is \"kube-system\", but children must be in the parent's namespace",
        ),
        ("mismatch", "do not match the parent's selector"),
        (
            "cluster",
            "ClusterRole is cluster-scoped, but children must be in the parent's namespace",
        ),
        ("fail", "the hook gave up"),
    ];
    let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(h.client.clone());
    let cms: Api<ConfigMap> = h.api();
    for (mode, text) in cases {
        h.patch_parent("f1", json!({"mode": mode})).await;
        let note = h.warning("f1", text).await;
        assert!(note.starts_with("Sync error: "), "{note}");
        let still = cms.get("keep").await.expect("the existing child survives");
        assert_eq!(still.uid(), keep.uid(), "{mode}: child untouched");
        for name in ["x", "s", "y", "z"] {
            assert!(
                cms.get_opt(name).await.expect("get").is_none(),
                "{mode}: nothing created"
            );
        }
        let role = format!("kubelambda-failsafe-{}", h.ns);
        assert!(
            roles.get_opt(&role).await.expect("get").is_none(),
            "{mode}: no cluster-scoped child"
        );
    }
    // The hook keeps failing with the same error: retried with growing backoff, and the repeats
    // fold into the event series already written instead of one write each.
    h.parent("f2", json!({"mode": "fail"})).await;
    h.warning("f2", "the hook gave up").await;
    let metrics = &h.engine().metrics;
    let (events, syncs) = (metrics.event_writes(), metrics.syncs());
    wait_until("six more failed syncs", || async {
        (metrics.syncs() >= syncs + 6).then_some(())
    })
    .await;
    assert_eq!(
        metrics.event_writes(),
        events,
        "repeated identical errors are aggregated"
    );
    let note = h.warning("f1", "the hook gave up").await;
    assert!(
        note.contains("f1") || note.contains("spec.hooks.sync"),
        "the error names where it happened: {note}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_hook_then_children_are_garbage_collected() {
    let h = Harness::new("finalize").await;
    let hook = r#"
function(request)
  if request.finalizing then { finalized: true, children: [] }
  else {
    children: [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'fin-child' } }],
  }
"#;
    let name = h
        .controller(
            "finalize",
            json!({
                "generateSelector": true,
                "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
                "hooks": {"sync": {"jsonnet": {"source": hook}}, "finalize": {"jsonnet": {"source": hook}}},
            }),
        )
        .await;
    h.parent("fz", json!({})).await;
    h.configmap("fin-child").await;
    let parents = h.parents();
    let finalizer = format!("metacontroller.io/compositecontroller-{name}");
    wait_until("finalizer on the parent", || {
        let parents = parents.clone();
        let finalizer = finalizer.clone();
        async move {
            parents
                .get("fz")
                .await
                .ok()?
                .finalizers()
                .contains(&finalizer)
                .then_some(())
        }
    })
    .await;
    parents
        .delete("fz", &DeleteParams::default())
        .await
        .expect("delete");
    wait_deleted(&parents, "fz").await;
    let cms: Api<ConfigMap> = h.api();
    wait_deleted(&cms, "fin-child").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_after_calls_the_hook_again() {
    use axum::routing::post;
    let h = Harness::new("resync").await;
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let app = axum::Router::new().route(
        "/sync",
        post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                axum::Json(json!({"children": [], "status": {}, "resyncAfterSeconds": 0.1}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    h.controller(
        "resync",
        json!({
            "generateSelector": true,
            "childResources": [],
            "hooks": {"sync": {"webhook": {"url": format!("http://127.0.0.1:{port}/sync")}}},
        }),
    )
    .await;
    h.parent("r1", json!({})).await;
    wait_until("the hook called 5 times", || {
        let calls = calls.clone();
        async move { (calls.load(Ordering::SeqCst) >= 5).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_crd_without_status_subresource_is_refused() {
    let h = Harness::new("nostatus").await;
    create_crd(
        &h.client,
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "nostatusparents.test.kubelambda.io"},
            "spec": {
                "group": "test.kubelambda.io",
                "scope": "Namespaced",
                "names": {"kind": "NoStatusParent", "plural": "nostatusparents"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
            }
        }),
    )
    .await;
    let name = format!("nostatus-{}", h.label);
    create_cc(
        &h.client,
        json!({
            "apiVersion": "metacontroller.k8s.io/v1alpha1",
            "kind": "CompositeController",
            "metadata": {"name": name, "labels": {"kubelambda-test": h.label}},
            "spec": {
                "parentResource": {"apiVersion": "test.kubelambda.io/v1", "resource": "nostatusparents"},
                "hooks": {"sync": {"jsonnet": {"source": "{}"}}},
            },
        }),
    )
    .await;
    let events: Api<K8sEvent> = Api::namespaced(h.client.clone(), "default");
    let note = wait_until("a Warning event on the CompositeController", || {
        let events = events.clone();
        let name = name.clone();
        async move {
            let list = events.list(&Default::default()).await.ok()?;
            list.items.into_iter().find_map(|e| {
                (e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str())
                    && e.type_.as_deref() == Some("Warning"))
                .then(|| e.note.unwrap_or_default())
            })
        }
    })
    .await;
    assert_eq!(
        note,
        "Cannot start controller: CRD nostatusparents.test.kubelambda.io does not have subresource 'Status' enabled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_and_orphan_children() {
    let h = Harness::new("claim").await;
    let hook = r#"
function(request) {
  children: [
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: n, labels: request.parent.spec.selector.matchLabels } }
    for n in request.parent.spec.want
  ],
}
"#;
    h.controller(
        "claim",
        json!({
            "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
            "hooks": {"sync": {"jsonnet": {"source": hook}}},
        }),
    )
    .await;
    // An orphan that matches the parent's selector, created before the parent.
    let cms: Api<ConfigMap> = h.api();
    let orphan: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "stray", "labels": {"app": "x"}}, "data": {"origin": "by hand"}
    }))
    .expect("cm");
    let orphan = cms
        .create(&PostParams::default(), &orphan)
        .await
        .expect("create orphan");
    let parent = h
        .parent(
            "c1",
            json!({"selector": {"matchLabels": {"app": "x"}}, "want": ["stray"]}),
        )
        .await;
    let adopted = wait_until("the orphan adopted", || {
        let cms = cms.clone();
        let uid = parent.uid();
        async move {
            let cm = cms.get("stray").await.ok()?;
            (owner_uid(&cm) == uid).then_some(cm)
        }
    })
    .await;
    assert_eq!(adopted.uid(), orphan.uid(), "adopted, not recreated");
    assert_eq!(adopted.data.expect("data")["origin"], "by hand");

    // The parent's selector moves on: the child no longer matches and is released, not deleted.
    h.patch_parent(
        "c1",
        json!({"selector": {"matchLabels": {"app": "z"}}, "want": []}),
    )
    .await;
    let released = wait_until("the child released", || {
        let cms = cms.clone();
        async move {
            let cm = cms.get("stray").await.ok()?;
            owner_uid(&cm).is_none().then_some(cm)
        }
    })
    .await;
    assert_eq!(released.uid(), orphan.uid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_way_converges_without_duplicates() {
    let mut h = Harness::new("restart").await;
    h.controller(
        "restart",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
            "hooks": {"sync": {"jsonnet": {"source": CONFIGMAP_HOOK}}},
        }),
    )
    .await;
    for i in 0..20 {
        h.parent(&format!("r{i}"), json!({"name": format!("child-{i}")}))
            .await;
    }
    // Stop as soon as some, but probably not all, children exist; then start again.
    h.configmap("child-0").await;
    h.restart();
    let cms: Api<ConfigMap> = h.api();
    let list = wait_until("20 children", || {
        let cms = cms.clone();
        async move {
            let list = cms.list(&Default::default()).await.ok()?;
            let owned: Vec<ConfigMap> = list
                .items
                .into_iter()
                .filter(|c| owner_uid(c).is_some())
                .collect();
            (owned.len() >= 20).then_some(owned)
        }
    })
    .await;
    assert_eq!(list.len(), 20, "exactly one child per parent");
    let mut owners: BTreeMap<String, usize> = BTreeMap::new();
    for cm in &list {
        *owners.entry(owner_uid(cm).expect("owner")).or_default() += 1;
    }
    assert!(owners.values().all(|n| *n == 1), "{owners:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_costs_no_writes() {
    let h = Harness::new("steady").await;
    h.controller(
        "steady",
        json!({
            "generateSelector": true,
            "resyncPeriodSeconds": 1,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}}],
            "hooks": {"sync": {"jsonnet": {"source": CONFIGMAP_HOOK}}},
        }),
    )
    .await;
    for i in 0..5 {
        h.parent(
            &format!("s{i}"),
            json!({"name": format!("steady-{i}"), "data": {"n": i.to_string()}}),
        )
        .await;
    }
    h.wait_converged(5).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let metrics = &h.engine().metrics;
    let cache = || h.config.sandbox.cache_stats().expect("the cache is on");
    let (writes, syncs, before) = (metrics.writes(), metrics.syncs(), cache());
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (writes_after, syncs_after, after) = (metrics.writes(), metrics.syncs(), cache());
    println!(
        "steady state over 30 s: {} syncs, {} writes, {} hook responses from the cache, {} evaluated",
        syncs_after - syncs,
        writes_after - writes,
        after.hits - before.hits,
        after.misses - before.misses,
    );
    // A resync of an unchanged parent sends the same request, so the hook is not evaluated again.
    assert_eq!(
        after.misses, before.misses,
        "nothing changed, so nothing needed evaluating"
    );
    assert!(
        after.hits - before.hits >= 100,
        "resyncs are answered from the cache ({} hits)",
        after.hits - before.hits
    );
    assert!(
        syncs_after - syncs >= 100,
        "the parents were resynced every second ({} syncs)",
        syncs_after - syncs
    );
    assert_eq!(writes_after, writes, "no writes while nothing changes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_apply_strategy_works_too() {
    let h = Harness::with_strategy("dynamic", ApplyStrategy::Dynamic).await;
    h.controller(
        "dynamic",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}}],
            "hooks": {"sync": {"jsonnet": {"source": CONFIGMAP_HOOK}}},
        }),
    )
    .await;
    h.parent("d1", json!({"name": "dyn", "data": {"a": "1", "b": "2"}}))
        .await;
    let cm = h.configmap("dyn").await;
    let annotation = cm
        .annotations()
        .get("metacontroller.k8s.io/last-applied-configuration")
        .cloned()
        .expect("last-applied");
    assert!(
        annotation.contains("\"data\":{\"a\":\"1\",\"b\":\"2\"}"),
        "{annotation}"
    );
    // A field removed from the desired state is removed from the child (three-way merge).
    h.patch_parent("d1", json!({"data": {"a": "1", "b": null}}))
        .await;
    let cms: Api<ConfigMap> = h.api();
    wait_until("b removed", || {
        let cms = cms.clone();
        async move {
            let cm = cms.get("dyn").await.ok()?;
            let data = cm.data?;
            (!data.contains_key("b") && data.get("a").map(String::as_str) == Some("1"))
                .then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_parents_converge() {
    let h = Harness::new("scale").await;
    h.controller(
        "scale",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}}],
            "hooks": {"sync": {"jsonnet": {"source": CONFIGMAP_HOOK}}},
        }),
    )
    .await;
    let writes_before = h.engine().metrics.writes();
    let started = Instant::now();
    for i in 0..100 {
        h.parent(&format!("p{i}"), json!({"name": format!("scale-{i}")}))
            .await;
    }
    h.wait_converged(100).await;
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = h.engine().metrics.writes() - writes_before;
    println!(
        "100 parents converged in {elapsed:?} (including creating them); {writes} writes, {:.2} per parent",
        writes as f64 / 100.0
    );
    // One child apply and two status writes (children: 0, then 1) per parent. A parent synced
    // again before its just-created child reaches the informer re-applies that child (a no-op at
    // the server, but a request), so allow a few of those in a burst of 100.
    assert!(
        writes >= 300,
        "every parent needs a child and its status: {writes} writes"
    );
    assert!(writes <= 310, "{writes} writes for 100 parents");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customize_hook_sends_a_related_configmap() {
    let h = Harness::new("customize").await;
    let customize = r#"
function(request) {
  relatedResources: [{
    apiVersion: 'v1', resource: 'configmaps',
    namespace: request.parent.metadata.namespace, names: ['settings'],
  }],
}
"#;
    let sync = r#"
function(request)
  local settings = std.get(request.related['ConfigMap.v1'], 'settings', { data: { color: 'none' } });
  {
    children: [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'derived' }, data: { color: settings.data.color } }],
  }
"#;
    h.controller(
        "customize",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}}],
            "hooks": {"sync": {"jsonnet": {"source": sync}}, "customize": {"jsonnet": {"source": customize}}},
        }),
    )
    .await;
    let cms: Api<ConfigMap> = h.api();
    let settings: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "settings"}, "data": {"color": "blue"}}),
    )
    .expect("cm");
    cms.create(&PostParams::default(), &settings)
        .await
        .expect("create settings");
    h.parent("c1", json!({})).await;
    let color = |want: &'static str| {
        let cms = cms.clone();
        async move {
            wait_until(&format!("derived color {want}"), || {
                let cms = cms.clone();
                async move {
                    let cm = cms.get("derived").await.ok()?;
                    (cm.data?.get("color")? == want).then_some(())
                }
            })
            .await
        }
    };
    color("blue").await;
    // A change to the related object resyncs the parent.
    cms.patch(
        "settings",
        &PatchParams::default(),
        &Patch::Merge(&json!({"data": {"color": "green"}})),
    )
    .await
    .expect("patch settings");
    color("green").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_restarts_on_spec_change_and_stops_when_deleted() {
    let h = Harness::new("lifecycle").await;
    let hook = |suffix: &str| {
        format!(
            "function(request) {{ children: [{{ apiVersion: 'v1', kind: 'ConfigMap', metadata: {{ name: 'gen-{suffix}' }} }}] }}"
        )
    };
    let name = h
        .controller(
            "lifecycle",
            json!({
                "generateSelector": true,
                "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
                "hooks": {"sync": {"jsonnet": {"source": hook("one")}}},
            }),
        )
        .await;
    h.parent("l1", json!({})).await;
    h.configmap("gen-one").await;
    let ar = cc_ar();
    let ccs: Api<DynamicObject> = Api::all_with(h.client.clone(), &ar);
    ccs.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"hooks": {"sync": {"jsonnet": {"source": hook("two")}}}}})),
    )
    .await
    .expect("patch controller");
    // The restarted controller runs the new hook: the new child appears, the old one goes.
    h.configmap("gen-two").await;
    let cms: Api<ConfigMap> = h.api();
    wait_deleted(&cms, "gen-one").await;

    ccs.delete(&name, &DeleteParams::default())
        .await
        .expect("delete controller");
    wait_deleted(&ccs, &name).await;
    // Give the engine time to see the deletion, then show nothing acts on new parents.
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.parent("l2", json!({})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let parent = h.parents().get("l2").await.expect("parent");
    assert!(
        parent.data.get("status").is_none(),
        "no controller wrote status: {:?}",
        parent.data
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tera_example_renders_a_configmap() {
    let h = Harness::new("greeting").await;
    let dir = root().join("examples/tera-greeting");
    let read = |f: &str| -> Value {
        serde_yaml::from_str(&std::fs::read_to_string(dir.join(f)).expect("example file"))
            .expect("yaml")
    };
    create_crd(&h.client, read("crd.yaml")).await;
    let mut cc = read("controller.yaml");
    // The inline template and the sample file stay the same.
    assert_eq!(
        cc["spec"]["hooks"]["sync"]["tera"]["template"]
            .as_str()
            .expect("template"),
        std::fs::read_to_string(dir.join("sync.tera")).expect("sync.tera")
    );
    cc["metadata"]["name"] = json!(format!("greeting-{}", h.label));
    cc["metadata"]["labels"] = json!({"kubelambda-test": h.label});
    cc["spec"]["parentResource"]["labelSelector"] =
        json!({"matchLabels": {"kubelambda-test": h.label}});
    create_cc(&h.client, cc).await;
    let mut greeting = read("greeting.yaml");
    greeting["metadata"]["labels"] = json!({"kubelambda-test": h.label});
    let ar = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Greeting".into(),
        plural: "greetings".into(),
    };
    let greetings: Api<DynamicObject> = Api::namespaced_with(h.client.clone(), &h.ns, &ar);
    greetings
        .create(
            &PostParams::default(),
            &serde_json::from_value(greeting).expect("greeting"),
        )
        .await
        .expect("create greeting");
    let cm = h.configmap("hello-greeting").await;
    let data = cm.data.expect("data");
    assert_eq!(data["message"], "Hello: world");
    assert_eq!(data["audience.yaml"], "- platform\n- sre\n");
    wait_until("Greeting status.rendered", || {
        let greetings = greetings.clone();
        async move {
            let g = greetings.get("hello").await.ok()?;
            (g.data.get("status")? == &json!({"configMap": "hello-greeting", "rendered": true, "observedGeneration": 1}))
                .then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_share_one_watch_per_resource_type() {
    let h = Harness::new("shared").await;
    let before = h.engine().shared.informers.active();
    for name in ["shared-a", "shared-b"] {
        h.controller(
            name,
            json!({
                "generateSelector": true,
                "childResources": [
                    {"apiVersion": "v1", "resource": "configmaps"},
                    {"apiVersion": "v1", "resource": "secrets"},
                ],
                "hooks": {"sync": {"jsonnet": {"source": "function(request) { children: [] }"}}},
            }),
        )
        .await;
    }
    let informers = h.engine().shared.informers.clone();
    // Parents (testparents), ConfigMaps and Secrets: three watches for two controllers.
    wait_until("three shared watches", || {
        let informers = informers.clone();
        async move { (informers.active() == before + 3).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        informers.active(),
        before + 3,
        "one watch per resource type, not per controller"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_fields_stop_the_controller_naming_the_field() {
    let h = Harness::new("preupdate").await;
    let name = h
        .controller(
            "preupdate",
            json!({
                "generateSelector": true,
                "childResources": [{"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "RollingRecreate"}}],
                "hooks": {
                    "sync": {"jsonnet": {"source": CONFIGMAP_HOOK}},
                    "preUpdateChild": {"webhook": {"url": "http://127.0.0.1:1/pre"}},
                },
            }),
        )
        .await;
    h.parent("roll", json!({"name": "rolled"})).await;
    let note = h.warning_in("default", &name, "is not supported").await;
    assert_eq!(
        note,
        "Cannot start controller: spec.hooks.preUpdateChild: the preUpdateChild hook is not supported (Metacontroller never calls it either; remove it)"
    );
    // Not started, so nothing syncs the parent.
    let cms: Api<ConfigMap> = h.api();
    assert!(
        cms.get_opt("rolled").await.expect("get").is_none(),
        "nothing was created"
    );
    assert_eq!(h.engine().metrics.syncs(), 0, "the controller never ran");
}

/// `--cache-flush-interval` resyncs every parent of every controller, with no
/// resyncPeriodSeconds set, and writes nothing when nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_flush_interval_resyncs_every_parent() {
    let mut h = Harness::new("flush").await;
    h.config.cache_flush_interval = Some(Duration::from_millis(500));
    h.restart();
    h.controller(
        "flush",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
            "hooks": {"sync": {"jsonnet": {"source": CONFIGMAP_HOOK}}},
        }),
    )
    .await;
    h.parent("f", json!({"name": "flushed"})).await;
    h.wait_converged(1).await;
    let metrics = &h.engine().metrics;
    let (syncs, writes) = (metrics.syncs(), metrics.writes());
    wait_until("four resyncs from the flush interval", || async {
        (metrics.syncs() >= syncs + 4).then_some(())
    })
    .await;
    assert_eq!(metrics.writes(), writes, "resyncs of an unchanged parent");
}

/// A response without `children` deletes every child (Metacontroller's meaning), and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_every_child_is_reported() {
    let h = Harness::new("delete-all").await;
    let hook = r#"
function(request)
  if request.parent.spec.keep then {
    children: [
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'one' } },
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'two' } },
    ],
  } else { status: { lost: 'children' } }
"#;
    h.controller(
        "delete-all",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
            "hooks": {"sync": {"jsonnet": {"source": hook}}},
        }),
    )
    .await;
    h.parent("d", json!({"keep": true})).await;
    h.configmap("one").await;
    h.configmap("two").await;
    h.patch_parent("d", json!({"keep": false})).await;
    let note = h.warning("d", "children are deleted").await;
    assert_eq!(
        note,
        "the sync hook returned no children, so all 2 children are deleted (a response without `children` means none)"
    );
    let cms: Api<ConfigMap> = h.api();
    wait_deleted(&cms, "one").await;
    wait_deleted(&cms, "two").await;
}

/// A resource the API server does not serve is named with the controller's field that refers to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_resource_is_named_by_its_field() {
    let h = Harness::new("unknown-resource").await;
    let name = h
        .controller(
            "unknown",
            json!({
                "childResources": [
                    {"apiVersion": "v1", "resource": "configmaps"},
                    {"apiVersion": "v1", "resource": "nosuchthings"},
                ],
                "hooks": {"sync": {"jsonnet": {"source": CONFIGMAP_HOOK}}},
            }),
        )
        .await;
    let note = h.warning_in("default", &name, "nosuchthings").await;
    assert_eq!(
        note,
        "Cannot start controller: spec.childResources[1]: discovery: can't find resource nosuchthings in apiVersion v1"
    );
}

/// Two controllers whose parents can be the same objects are reported on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_claiming_the_same_parents_are_reported() {
    let h = Harness::new("overlap").await;
    let spec = json!({
        "generateSelector": true,
        "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
        "hooks": {"sync": {"jsonnet": {"source": CONFIGMAP_HOOK}}},
    });
    let first = h.controller("first", spec.clone()).await;
    let second = h.controller("second", spec).await;
    for (on, other) in [(&first, &second), (&second, &first)] {
        let note = h.warning_in("default", on, "both manage testparents").await;
        assert!(note.contains(other.as_str()), "{note}");
    }
}

/// Triggering a sync now (Metacontroller #675): any annotation change syncs the parent, so
/// `kubectl annotate --overwrite <parent> kubelambda.dev/sync-requested-at=$(date +%s)` calls the
/// hook again with nothing else changed (annotations count under ignoreStatusChanges too), and
/// writes nothing when the hook's answer is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_annotation_triggers_a_sync_now() {
    let h = Harness::new("trigger").await;
    let server = HookServer::start(|_| json!({"status": {"synced": true}})).await;
    let spec = json!({
        "generateSelector": true,
        "hooks": {"sync": {"webhook": {"url": server.url}}},
    });
    h.controller("trigger", spec).await;
    h.parent("poked", json!({})).await;
    wait_until("the first sync's status", || async {
        let p = h.parents().get("poked").await.ok()?;
        (p.data.pointer("/status/synced") == Some(&json!(true))).then_some(())
    })
    .await;
    let (calls, writes) = (server.calls(), h.engine().metrics.writes());
    for at in ["1", "2"] {
        h.parents()
            .patch(
                "poked",
                &PatchParams::default(),
                &Patch::Merge(
                    &json!({"metadata": {"annotations": {"kubelambda.dev/sync-requested-at": at}}}),
                ),
            )
            .await
            .expect("annotate");
    }
    wait_until("the hook called again", || async {
        (server.calls() > calls).then_some(())
    })
    .await;
    assert_eq!(h.engine().metrics.writes(), writes, "same answer, no write");
}
