//! DecoratorController end to end on the real control plane, with the engine in-process:
//! Metacontroller's decorator scenarios (sync via webhook, resyncAfter, customize, sync v2,
//! target label selector matching and not), each also with an inline Jsonnet hook; a decorator
//! on a built-in kind and on a cluster-scoped one; finalize-only decorators; and deleting a
//! controller, which removes the finalizers it put on parents.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// The hook of the sync scenarios, in Jsonnet: a label, an annotation, a status field and one
/// ConfigMap attachment per target, all of them dropped when `spec.attach` is false. The status
/// also lists the keys of the observed attachments (v1: name; v2: namespace/name).
const SYNC_JSONNET: &str = r#"
function(request) {
  local target = request.object,
  local want = std.get(target.spec, 'attach', true),
  labels: { decorated: if want then 'yes' else null },
  annotations: { 'decorated-by': request.controller.metadata.name },
  status: { attached: want, keys: std.objectFields(request.attachments['ConfigMap.v1']) },
  attachments: if want then [{
    apiVersion: 'v1', kind: 'ConfigMap',
    metadata: { name: target.metadata.name + '-att' },
    data: { target: target.metadata.name },
  }] else [],
}
"#;

/// [`SYNC_JSONNET`], as a webhook.
fn sync_answer(request: &Value) -> Value {
    let target = &request["object"];
    let want = target["spec"]["attach"].as_bool().unwrap_or(true);
    let name = target["metadata"]["name"].as_str().unwrap_or_default();
    let keys: Vec<&String> = request["attachments"]["ConfigMap.v1"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    json!({
        "labels": {"decorated": if want { json!("yes") } else { Value::Null }},
        "annotations": {"decorated-by": request["controller"]["metadata"]["name"]},
        "status": {"attached": want, "keys": keys},
        "attachments": if want {
            json!([{"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("{name}-att")}, "data": {"target": name}}])
        } else {
            json!([])
        },
    })
}

enum Backend {
    Webhook(HookServer),
    Jsonnet(&'static str),
}

impl Backend {
    fn hook(&self, version: Option<&str>) -> Value {
        let mut hook = match self {
            Backend::Webhook(server) => json!({"webhook": {"url": server.url}}),
            Backend::Jsonnet(source) => json!({"jsonnet": {"source": source}}),
        };
        if let Some(v) = version {
            hook["version"] = json!(v);
        }
        hook
    }
}

/// A decorator over this test's TestParents that also carry the annotation `decorate: "yes"`.
fn target_rule(h: &Harness) -> Value {
    json!({
        "apiVersion": "test.kubelambda.io/v1",
        "resource": "testparents",
        "labelSelector": {"matchLabels": {"kubelambda-test": h.label}},
        "annotationSelector": {"matchAnnotations": {"decorate": "yes"}},
    })
}

async fn target(h: &Harness, name: &str, annotations: Value, spec: Value) -> DynamicObject {
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.kubelambda.io/v1",
        "kind": "TestParent",
        "metadata": {"name": name, "labels": {"kubelambda-test": h.label}, "annotations": annotations},
        "spec": spec,
    }))
    .expect("target");
    h.parents()
        .create(&PostParams::default(), &obj)
        .await
        .expect("create target")
}

async fn wait_target(
    h: &Harness,
    name: &str,
    what: &str,
    check: impl Fn(&DynamicObject) -> bool,
) -> DynamicObject {
    let parents = h.parents();
    wait_until(&format!("{name}: {what}"), || {
        let parents = parents.clone();
        let found = async move { parents.get_opt(name).await.ok().flatten() };
        let check = &check;
        async move { found.await.filter(|t| check(t)) }
    })
    .await
}

async fn sync_scenario(test: &str, backend: Backend, version: Option<&str>) {
    let h = Harness::new(test).await;
    // Someone else's status on the target: kept, since the decorator's status is merged.
    let t = target(&h, "t1", json!({"decorate": "yes"}), json!({})).await;
    h.parents()
        .patch_status(
            "t1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"theirs": 1}})),
        )
        .await
        .expect("status");
    let ignored = target(&h, "ignored", json!({"decorate": "no"}), json!({})).await;
    let name = create_decorator(
        &h,
        "sync",
        json!({
            "resources": [target_rule(&h)],
            "attachments": [{"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}}],
            "hooks": {"sync": backend.hook(version)},
        }),
    )
    .await;

    let cms: Api<ConfigMap> = h.api();
    let att = h.configmap("t1-att").await;
    assert_eq!(
        owner_uid(&att),
        t.uid(),
        "the target controls its attachment"
    );
    assert_eq!(
        att.annotations()
            .get("metacontroller.k8s.io/decorator-controller"),
        Some(&name)
    );
    let key = match version {
        Some("v2") => format!("{}/t1-att", h.ns),
        _ => "t1-att".to_owned(),
    };
    let decorated = wait_target(
        &h,
        "t1",
        "decorated, status merged, attachment observed",
        |t| t.data.pointer("/status/keys") == Some(&json!([key])),
    )
    .await;
    assert_eq!(
        decorated.labels().get("decorated").map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        decorated.labels().get("kubelambda-test"),
        Some(&h.label),
        "labels merged"
    );
    assert_eq!(decorated.annotations().get("decorated-by"), Some(&name));
    assert_eq!(
        decorated.annotations().get("decorate").map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        decorated.data["status"]["theirs"],
        json!(1),
        "others' status kept"
    );
    assert_eq!(decorated.data["status"]["attached"], json!(true));
    assert_eq!(
        decorated.data.pointer("/spec"),
        t.data.pointer("/spec"),
        "spec untouched"
    );

    // A target that does not match the annotation selector is left alone.
    let ignored = h.parents().get(&ignored.name_any()).await.expect("get");
    assert!(ignored.labels().get("decorated").is_none());
    assert!(cms.get_opt("ignored-att").await.expect("get").is_none());

    // Steady state: syncs without writes.
    let writes = h.engine().metrics.writes();
    let syncs = h.engine().metrics.syncs();
    h.parents()
        .patch(
            "t1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"poke": "1"}}})),
        )
        .await
        .expect("poke");
    wait_until("a sync after the poke", || async {
        (h.engine().metrics.syncs() > syncs).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        h.engine().metrics.writes(),
        writes,
        "nothing changed, nothing written"
    );

    // The hook drops its label and attachment: both are removed, the rest stays.
    h.patch_parent("t1", json!({"attach": false})).await;
    wait_deleted(&cms, "t1-att").await;
    let t = wait_target(&h, "t1", "label removed", |t| {
        t.labels().get("decorated").is_none()
    })
    .await;
    assert_eq!(t.data["status"]["attached"], json!(false));
    assert_eq!(t.data["status"]["theirs"], json!(1));
    assert_eq!(t.annotations().get("decorated-by"), Some(&name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_webhook() {
    sync_scenario(
        "dec-sync-webhook",
        Backend::Webhook(HookServer::start(sync_answer).await),
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_inline_jsonnet() {
    sync_scenario("dec-sync-jsonnet", Backend::Jsonnet(SYNC_JSONNET), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_webhook_v2() {
    sync_scenario(
        "dec-sync-webhook-v2",
        Backend::Webhook(HookServer::start(sync_answer).await),
        Some("v2"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_inline_jsonnet_v2() {
    sync_scenario(
        "dec-sync-jsonnet-v2",
        Backend::Jsonnet(SYNC_JSONNET),
        Some("v2"),
    )
    .await;
}

/// resyncAfterSeconds calls the hook again with nothing changed, and writes nothing new.
async fn resync_after_scenario(test: &str, backend: Backend) {
    let h = Harness::new(test).await;
    target(&h, "again", json!({"decorate": "yes"}), json!({})).await;
    create_decorator(
        &h,
        "resync",
        json!({"resources": [target_rule(&h)], "hooks": {"sync": backend.hook(None)}}),
    )
    .await;
    wait_target(&h, "again", "status written", |t| {
        t.data.pointer("/status/resynced") == Some(&json!(true))
    })
    .await;
    let (syncs, writes) = (h.engine().metrics.syncs(), h.engine().metrics.writes());
    wait_until("three more syncs from resyncAfterSeconds alone", || async {
        (h.engine().metrics.syncs() >= syncs + 3).then_some(())
    })
    .await;
    assert_eq!(
        h.engine().metrics.writes(),
        writes,
        "resyncs of an unchanged target write nothing"
    );
    if let Backend::Webhook(server) = &backend {
        assert!(
            server.calls() >= 4,
            "the hook was called again: {}",
            server.calls()
        );
    }
}

const RESYNC_JSONNET: &str =
    "function(request) { status: { resynced: true }, resyncAfterSeconds: 0.3 }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_after_webhook() {
    let server =
        HookServer::start(|_| json!({"status": {"resynced": true}, "resyncAfterSeconds": 0.3}))
            .await;
    resync_after_scenario("dec-resync-webhook", Backend::Webhook(server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_after_inline_jsonnet() {
    resync_after_scenario("dec-resync-jsonnet", Backend::Jsonnet(RESYNC_JSONNET)).await;
}

/// The customize hook names a ConfigMap; sync copies its data into the target's status, and a
/// change to the ConfigMap resyncs the target.
async fn customize_scenario(test: &str, customize: Backend, sync: Backend) {
    let h = Harness::new(test).await;
    let cms: Api<ConfigMap> = h.api();
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "settings"}, "data": {"color": "blue"}
    }))
    .expect("cm");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    target(&h, "custom", json!({"decorate": "yes"}), json!({})).await;
    create_decorator(
        &h,
        "customize",
        json!({
            "resources": [target_rule(&h)],
            "hooks": {"sync": sync.hook(None), "customize": customize.hook(None)},
        }),
    )
    .await;
    wait_target(&h, "custom", "related color in status", |t| {
        t.data.pointer("/status/color") == Some(&json!("blue"))
    })
    .await;
    cms.patch(
        "settings",
        &PatchParams::default(),
        &Patch::Merge(&json!({"data": {"color": "red"}})),
    )
    .await
    .expect("patch");
    wait_target(&h, "custom", "the related change resynced", |t| {
        t.data.pointer("/status/color") == Some(&json!("red"))
    })
    .await;
}

const CUSTOMIZE_JSONNET: &str = r#"
function(request) { relatedResources: [{ apiVersion: 'v1', resource: 'configmaps', names: ['settings'] }] }
"#;
const RELATED_SYNC_JSONNET: &str = r#"
function(request) {
  local related = std.objectValues(request.related['ConfigMap.v1']),
  status: { color: if std.length(related) == 1 then related[0].data.color else 'none' },
}
"#;

fn related_answer(request: &Value) -> Value {
    let color = request["related"]["ConfigMap.v1"]
        .as_object()
        .and_then(|m| m.values().next())
        .map(|cm| cm["data"]["color"].clone())
        .unwrap_or(json!("none"));
    json!({"status": {"color": color}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customize_webhook() {
    let customize = HookServer::start(|request| {
        // The decorator's customize request uses the key `parent`, as Metacontroller's does.
        assert_eq!(request["parent"]["kind"], "TestParent");
        json!({"relatedResources": [{"apiVersion": "v1", "resource": "configmaps", "names": ["settings"]}]})
    })
    .await;
    let sync = HookServer::start(related_answer).await;
    customize_scenario(
        "dec-customize-webhook",
        Backend::Webhook(customize),
        Backend::Webhook(sync),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customize_inline_jsonnet() {
    customize_scenario(
        "dec-customize-jsonnet",
        Backend::Jsonnet(CUSTOMIZE_JSONNET),
        Backend::Jsonnet(RELATED_SYNC_JSONNET),
    )
    .await;
}

/// `--target-label-selector`: a DecoratorController without this engine's label is not run; one
/// with it is.
async fn target_label_selector_scenario(test: &str, backend: Backend) {
    let h = Harness::new(test).await;
    target(&h, "chosen", json!({"decorate": "yes"}), json!({})).await;
    // Not labelled for this engine: must never run.
    let other = format!("other-{}", h.label);
    let dc: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1",
        "kind": "DecoratorController",
        "metadata": {"name": other, "labels": {"kubelambda-test": "someone-else"}},
        "spec": {
            "resources": [target_rule(&h)],
            "hooks": {"sync": {"jsonnet": {"source": "function(request) { labels: { other: 'ran' } }"}}},
        },
    }))
    .expect("dc");
    install_crds(&h.client).await;
    Api::<DynamicObject>::all_with(h.client.clone(), &dc_ar())
        .create(&PostParams::default(), &dc)
        .await
        .expect("create");
    create_decorator(
        &h,
        "matching",
        json!({"resources": [target_rule(&h)],
               "attachments": [{"apiVersion": "v1", "resource": "configmaps"}],
               "hooks": {"sync": backend.hook(None)}}),
    )
    .await;
    let t = wait_target(&h, "chosen", "decorated by the matching controller", |t| {
        t.labels().get("decorated").map(String::as_str) == Some("yes")
    })
    .await;
    // The other controller had the same time to run; the matching one's sync is done.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = h.parents().get(&t.name_any()).await.expect("get");
    assert!(
        t.labels().get("other").is_none(),
        "the non-matching controller ran"
    );
    Api::<DynamicObject>::all_with(h.client.clone(), &dc_ar())
        .delete(&other, &DeleteParams::default())
        .await
        .expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_label_selector_webhook() {
    target_label_selector_scenario(
        "dec-target-webhook",
        Backend::Webhook(HookServer::start(sync_answer).await),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_label_selector_inline_jsonnet() {
    target_label_selector_scenario("dec-target-jsonnet", Backend::Jsonnet(SYNC_JSONNET)).await;
}

/// A decorator on Deployments (a built-in kind with a status the Deployment controller owns):
/// a Service attachment and a label, and the Deployment's status left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decorates_a_built_in_kind() {
    let h = Harness::new("dec-deployments").await;
    let deployments: Api<Deployment> = h.api();
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"kubelambda-test": h.label, "app": "web"},
                     "annotations": {"expose": "8080"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": "registry.invalid/web"}]}},
        },
    }))
    .expect("deployment");
    let d = deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    create_decorator(
        &h,
        "expose",
        json!({
            "resources": [{
                "apiVersion": "apps/v1", "resource": "deployments",
                "labelSelector": {"matchLabels": {"kubelambda-test": h.label}},
                "annotationSelector": {"matchExpressions": [{"key": "expose", "operator": "Exists"}]},
            }],
            "attachments": [{"apiVersion": "v1", "resource": "services"}],
            "hooks": {"sync": {"jsonnet": {"source": r#"
function(request) {
  local d = request.object,
  labels: { exposed: 'true' },
  attachments: [{
    apiVersion: 'v1', kind: 'Service',
    metadata: { name: d.metadata.name },
    spec: {
      selector: d.spec.selector.matchLabels,
      ports: [{ port: std.parseInt(d.metadata.annotations.expose) }],
    },
  }],
}
"#}}},
        }),
    )
    .await;
    let services: Api<Service> = h.api();
    let svc = wait_until("the Service attachment", || async {
        services.get_opt("web").await.ok().flatten()
    })
    .await;
    assert_eq!(owner_uid(&svc), d.uid());
    let port = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(|p| p[0].port);
    assert_eq!(port, Some(8080));
    let labelled = wait_until("the exposed label", || async {
        deployments
            .get_opt("web")
            .await
            .ok()
            .flatten()
            .filter(|d| d.labels().get("exposed").map(String::as_str) == Some("true"))
    })
    .await;
    assert_eq!(
        labelled.labels().get("app").map(String::as_str),
        Some("web")
    );
    // Deleting the Deployment takes its attachment with it (garbage collector).
    deployments
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    wait_deleted(&services, "web").await;
}

/// A cluster-scoped target (a Namespace) with a namespaced attachment, which must name its
/// namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decorates_a_cluster_scoped_kind() {
    let h = Harness::new("dec-namespaces").await;
    let namespaces: Api<Namespace> = Api::all(h.client.clone());
    namespaces
        .patch(
            &h.ns,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"kubelambda-test": h.label}}})),
        )
        .await
        .expect("label namespace");
    create_decorator(
        &h,
        "ns-welcome",
        json!({
            "resources": [{"apiVersion": "v1", "resource": "namespaces",
                           "labelSelector": {"matchLabels": {"kubelambda-test": h.label}}}],
            "attachments": [{"apiVersion": "v1", "resource": "configmaps"}],
            "hooks": {"sync": {"version": "v2", "jsonnet": {"source": r#"
function(request) {
  local ns = request.object.metadata.name,
  attachments: [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'welcome', namespace: ns }, data: { ns: ns } }],
  annotations: { welcomed: std.join(',', std.objectFields(request.attachments['ConfigMap.v1'])) },
}
"#}}},
        }),
    )
    .await;
    let cm = h.configmap("welcome").await;
    let ns = namespaces.get(&h.ns).await.expect("namespace");
    assert_eq!(owner_uid(&cm), ns.uid());
    wait_until(
        "the namespace annotated with its attachment's key",
        || async {
            let ns = namespaces.get(&h.ns).await.ok()?;
            (ns.annotations().get("welcomed") == Some(&format!("{}/welcome", h.ns))).then_some(())
        },
    )
    .await;
}

/// A decorator with only a finalize hook (Metacontroller #948 panicked): the finalizer is added,
/// nothing is called until the target goes, then finalize runs and lets it go. A target that
/// opts out (stops matching) is finalized too, and stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_only_decorator() {
    let h = Harness::new("dec-finalize-only").await;
    let server = HookServer::start(|request| {
        json!({"finalized": request["finalizing"] == json!(true), "labels": {"finalized": "yes"}})
    })
    .await;
    target(&h, "goes", json!({"decorate": "yes"}), json!({})).await;
    target(&h, "opts-out", json!({"decorate": "yes"}), json!({})).await;
    let name = create_decorator(
        &h,
        "cleanup",
        json!({"resources": [target_rule(&h)], "hooks": {"finalize": {"webhook": {"url": server.url}}}}),
    )
    .await;
    let finalizer = format!("metacontroller.io/decoratorcontroller-{name}");
    for t in ["goes", "opts-out"] {
        wait_target(&h, t, "finalizer added", |o| {
            o.finalizers().contains(&finalizer)
        })
        .await;
    }
    assert_eq!(
        server.calls(),
        0,
        "no sync hook: nothing is called before finalizing"
    );

    h.parents()
        .delete("goes", &DeleteParams::default())
        .await
        .expect("delete");
    wait_deleted(&h.parents(), "goes").await;
    h.parents()
        .patch(
            "opts-out",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"decorate": "no"}}})),
        )
        .await
        .expect("opt out");
    let t = wait_target(&h, "opts-out", "finalized and kept", |o| {
        o.finalizers().is_empty()
    })
    .await;
    assert_eq!(t.labels().get("finalized").map(String::as_str), Some("yes"));
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r["finalizing"] == json!(true))
    );
    assert!(server.calls() >= 2);
}

/// Deleting a DecoratorController or a CompositeController removes the finalizer it put on its
/// parents, so that they can be deleted (Metacontroller leaves them stuck, #1062).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_controller_removes_its_finalizers() {
    let h = Harness::new("dec-controller-deleted").await;
    // Never finalized: only the controller's deletion can free the targets.
    let never = "function(request) { finalized: false }";
    target(&h, "held", json!({"decorate": "yes"}), json!({})).await;
    let dec = create_decorator(
        &h,
        "holder",
        json!({"resources": [target_rule(&h)],
               "hooks": {"sync": {"jsonnet": {"source": "function(request) {}"}},
                         "finalize": {"jsonnet": {"source": never}}}}),
    )
    .await;
    let cc = h
        .controller(
            "holder",
            json!({"generateSelector": true,
                   "hooks": {"sync": {"jsonnet": {"source": "function(request) { children: [] }"}},
                             "finalize": {"jsonnet": {"source": never}}}}),
        )
        .await;
    let dec_finalizer = format!("metacontroller.io/decoratorcontroller-{dec}");
    let cc_finalizer = format!("metacontroller.io/compositecontroller-{cc}");
    wait_target(&h, "held", "both finalizers", |o| {
        o.finalizers().contains(&dec_finalizer) && o.finalizers().contains(&cc_finalizer)
    })
    .await;
    h.parents()
        .delete("held", &DeleteParams::default())
        .await
        .expect("delete");
    // Held while the controllers run.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(h.parents().get_opt("held").await.expect("get").is_some());

    Api::<DynamicObject>::all_with(h.client.clone(), &dc_ar())
        .delete(&dec, &DeleteParams::default())
        .await
        .expect("delete decorator");
    wait_target(&h, "held", "the decorator's finalizer gone", |o| {
        !o.finalizers().contains(&dec_finalizer)
    })
    .await;
    Api::<DynamicObject>::all_with(h.client.clone(), &cc_ar())
        .delete(&cc, &DeleteParams::default())
        .await
        .expect("delete composite");
    wait_deleted(&h.parents(), "held").await;
}
