//! Hook wire protocol v2 (`version: v2` on a hook) end to end on the real control plane, for sync
//! and customize hooks, served by webhooks and by inline Jsonnet: Metacontroller's
//! `TestSyncWebhookV2` and `TestCustomizeWebhookV2` and more.
//!
//! v2 keys every namespaced object in `children` and `related` as `namespace/name` (v1 uses the bare
//! name for a namespaced parent), lets a namespaced parent's customize hook read other namespaces and
//! cluster-scoped objects, and decodes webhook responses strictly by default.
//!
//! The webhook servers check the exact shape of every request they get; a request of the wrong
//! shape is answered with an error and recorded, and the test fails on it as soon as it waits.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Hook servers that check what they are sent.

/// Problems the hook servers of one test found in the requests they were sent.
#[derive(Clone, Default)]
struct Failures(Arc<Mutex<Vec<String>>>);

impl Failures {
    fn push(&self, problem: String) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(problem);
    }

    /// Fails the test if a hook server was sent a request of the wrong shape.
    fn check(&self) {
        let found = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert!(
            found.is_empty(),
            "hook servers got bad requests: {found:#?}"
        );
    }

    /// [`wait_until`], failing at once if a hook server got a bad request meanwhile.
    async fn wait<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        wait_until(what, || {
            self.check();
            check()
        })
        .await
    }
}

impl Failures {
    /// [`wait_deleted`] for a ConfigMap, failing at once on a bad request.
    async fn wait_gone(&self, api: &Api<ConfigMap>, name: &str) {
        self.wait(&format!("ConfigMap {name} to be deleted"), || async {
            matches!(api.get_opt(name).await, Ok(None)).then_some(())
        })
        .await
    }
}

type Handler = dyn Fn(&Value) -> Result<Value, String> + Send + Sync;

/// A hook server on 127.0.0.1: answers with `handler`'s value, or with status 500 and records
/// the problem when the handler refuses the request.
struct HookServer {
    url: String,
    calls: Arc<AtomicUsize>,
}

impl HookServer {
    async fn start(
        failures: &Failures,
        handler: impl Fn(&Value) -> Result<Value, String> + Send + Sync + 'static,
    ) -> Self {
        let handler: Arc<Handler> = Arc::new(handler);
        let calls = Arc::new(AtomicUsize::new(0));
        let (failures, counter) = (failures.clone(), calls.clone());
        let app = Router::new().route(
            "/hook",
            post(move |body: Bytes| {
                let (handler, failures, counter) =
                    (handler.clone(), failures.clone(), counter.clone());
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let answer = serde_json::from_slice::<Value>(&body)
                        .map_err(|e| format!("the request is not JSON: {e}"))
                        .and_then(|request| handler(&request));
                    match answer {
                        Ok(answer) => axum::Json(answer).into_response(),
                        Err(problem) => {
                            failures.push(problem.clone());
                            (StatusCode::INTERNAL_SERVER_ERROR, problem).into_response()
                        }
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/hook"),
            calls,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn str_at<'v>(v: &'v Value, pointer: &str) -> &'v str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The v2 ("uniform") key of an object: `namespace/name`, or `name` when cluster-scoped.
fn uniform_key(obj: &Value) -> String {
    match str_at(obj, "/metadata/namespace") {
        "" => str_at(obj, "/metadata/name").to_owned(),
        ns => format!("{ns}/{}", str_at(obj, "/metadata/name")),
    }
}

/// The v1 key of an object of a namespaced parent: its name.
fn relative_key(obj: &Value) -> String {
    str_at(obj, "/metadata/name").to_owned()
}

/// Checks an object map (`children` or `related`) of a request: exactly the types `types`, each
/// object under its `"<Kind>.<apiVersion>"` and under the key `key_of` gives it.
fn check_map(
    request: &Value,
    field: &str,
    types: &[&str],
    key_of: fn(&Value) -> String,
) -> Result<(), String> {
    let Some(map) = request.get(field).and_then(Value::as_object) else {
        return Err(format!(
            "{field} is not an object: {:?}",
            request.get(field)
        ));
    };
    let got: BTreeSet<&str> = map.keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = types.iter().copied().collect();
    if got != want {
        return Err(format!("{field} has the types {got:?}, want {want:?}"));
    }
    for (ty, objects) in map {
        let Some(objects) = objects.as_object() else {
            return Err(format!("{field}[{ty:?}] is not an object"));
        };
        for (key, obj) in objects {
            let obj_type = format!("{}.{}", str_at(obj, "/kind"), str_at(obj, "/apiVersion"));
            if obj_type != *ty {
                return Err(format!("{field}[{ty:?}][{key:?}] is a {obj_type}"));
            }
            let want = key_of(obj);
            if *key != want {
                return Err(format!(
                    "{field}[{ty:?}] has the key {key:?} for {}, want {want:?}",
                    uniform_key(obj)
                ));
            }
        }
    }
    Ok(())
}

/// The keys of `request[field][ty]`, in order.
fn keys(request: &Value, field: &str, ty: &str) -> Vec<String> {
    request
        .pointer(&format!("/{field}/{ty}"))
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

async fn wait_status(h: &Harness, failures: &Failures, parent: &str, want: Value) {
    let parents = h.parents();
    failures
        .wait(&format!("status {want} on parent {parent}"), || {
            let (parents, want) = (parents.clone(), want.clone());
            async move {
                let p = parents.get(parent).await.ok()?;
                let status = p.data.get("status")?;
                want.as_object()?
                    .iter()
                    .all(|(k, v)| status.get(k) == Some(v))
                    .then_some(())
            }
        })
        .await
}

async fn wait_configmap(failures: &Failures, api: &Api<ConfigMap>, name: &str) -> ConfigMap {
    failures
        .wait(&format!("ConfigMap {name}"), || async {
            api.get_opt(name).await.ok().flatten()
        })
        .await
}

/// Checks that the request's parent is a whole object, `apiVersion` and `kind` included.
fn check_parent(request: &Value, api_version: &str, kind: &str) -> Result<(), String> {
    let got = (
        str_at(request, "/parent/apiVersion"),
        str_at(request, "/parent/kind"),
    );
    if got != (api_version, kind) {
        return Err(format!(
            "the parent is a {got:?}, want {kind} {api_version}"
        ));
    }
    Ok(())
}

async fn wait_configmap_data(
    failures: &Failures,
    api: &Api<ConfigMap>,
    name: &str,
    want: Value,
) -> ConfigMap {
    failures
        .wait(&format!("ConfigMap {name} with data {want}"), || {
            let (api, want) = (api.clone(), want.clone());
            async move {
                let cm = api.get_opt(name).await.ok().flatten()?;
                let data = serde_json::to_value(cm.data.clone().unwrap_or_default()).ok()?;
                (data == want).then_some(cm)
            }
        })
        .await
}

// ---------------------------------------------------------------------------------------------
// 1. Sync via webhook.

/// A sync webhook for TestParents with `spec.selector`: one ConfigMap per parent named after it,
/// and the keys it saw in `children["ConfigMap.v1"]` in the status. It checks that `children`
/// holds both declared types, keyed by `key_of`, and that `related` is empty.
async fn selector_sync_server(failures: &Failures, key_of: fn(&Value) -> String) -> HookServer {
    HookServer::start(failures, move |request| {
        check_parent(request, "test.kubelambda.io/v1", "TestParent")?;
        check_map(request, "children", &["ConfigMap.v1", "Secret.v1"], key_of)?;
        if request["related"] != json!({}) {
            return Err(format!("related is {}, want {{}}", request["related"]));
        }
        if request["finalizing"] != json!(false) {
            return Err(format!("finalizing is {}", request["finalizing"]));
        }
        let name = str_at(request, "/parent/metadata/name");
        let labels = request
            .pointer("/parent/spec/selector/matchLabels")
            .cloned()
            .unwrap_or(Value::Null);
        Ok(json!({
            "children": [{
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "labels": labels},
                "data": {"parent": name},
            }],
            "status": {"observedKeys": keys(request, "children", "ConfigMap.v1")},
        }))
    })
    .await
}

/// Metacontroller's `TestSyncWebhook(V2)` with the request shape checked: the child is created,
/// and the next sync sends it back under the key `key_of` gives it. The parent and an orphan
/// child exist before the controller, so both reach the hook from the informers' first list, and
/// the orphan is adopted (Metacontroller's `TestClaimAndOrphanChildren`, first half).
async fn sync_webhook(test: &str, version: Option<&str>, key_of: fn(&Value) -> String) {
    let h = Harness::new(test).await;
    let failures = Failures::default();
    let hook = selector_sync_server(&failures, key_of).await;
    let labels = json!({"test": h.label});
    let cms = h.api::<ConfigMap>();
    let orphan: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "orphan", "labels": labels}, "data": {"before": "controller"}}),
    )
    .expect("orphan");
    cms.create(&PostParams::default(), &orphan)
        .await
        .expect("create the orphan");
    let parent = h
        .parent("sync-webhook", json!({"selector": {"matchLabels": labels}}))
        .await;
    let mut sync = json!({"webhook": {"url": hook.url}});
    if let Some(version) = version {
        sync["version"] = json!(version);
    }
    h.controller(
        "sync",
        json!({
            "childResources": [
                {"apiVersion": "v1", "resource": "configmaps"},
                {"apiVersion": "v1", "resource": "secrets"},
            ],
            "hooks": {"sync": sync},
        }),
    )
    .await;
    let child = wait_configmap(&failures, &cms, "sync-webhook").await;
    assert_eq!(owner_uid(&child), parent.uid(), "the child is the parent's");
    assert_eq!(
        child.labels().get("test").map(String::as_str),
        Some(h.label.as_str())
    );
    // The orphan was adopted, then deleted as the hook did not ask for it; the next sync sees
    // the child under its key.
    failures.wait_gone(&cms, "orphan").await;
    let observed = key_of(&json!({"metadata": {"namespace": h.ns, "name": "sync-webhook"}}));
    wait_status(
        &h,
        &failures,
        "sync-webhook",
        json!({"observedKeys": [observed]}),
    )
    .await;
    failures.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_webhook_v2_keys_children_by_namespace_and_name() {
    sync_webhook("sync-webhook-v2", Some("v2"), uniform_key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_webhook_v1_keys_children_by_name() {
    sync_webhook("sync-webhook-v1", None, relative_key).await;
}

// ---------------------------------------------------------------------------------------------
// 2. Sync via inline Jsonnet.

/// Reads its own child back under its v2 key and reports it.
const JSONNET_SYNC_V2: &str = r#"
function(request)
  local meta = request.parent.metadata;
  local key = meta.namespace + '/' + meta.name;
  local cms = request.children['ConfigMap.v1'];
  {
    children: [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: meta.name }, data: { parent: meta.name } }],
    status: {
      keys: std.objectFields(cms),
      observedUid: if std.objectHas(cms, key) then cms[key].metadata.uid else null,
    },
  }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_jsonnet_v2_reads_children_by_namespace_and_name() {
    let h = Harness::new("sync-jsonnet-v2").await;
    let failures = Failures::default();
    h.controller(
        "jsonnet",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
            "hooks": {"sync": {"version": "v2", "jsonnet": {"source": JSONNET_SYNC_V2}}},
        }),
    )
    .await;
    h.parent("jp", json!({})).await;
    let child = h.configmap("jp").await;
    wait_status(
        &h,
        &failures,
        "jp",
        json!({"keys": [format!("{}/jp", h.ns)], "observedUid": child.uid()}),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 3. Customize and related objects.

const RELATED_CM: &str = "related-config-map";

/// Related objects the customize tests select, around namespace `ns` and a second namespace
/// `other` (labelled `kubelambda-related=<label>`):
/// - ConfigMap `related-config-map` in `ns` (by namespace and names), and a same-named one in
///   `other` that must not be selected;
/// - Secret `s1` labelled `role=<label>` in `other` (by labelSelector in another namespace), and
///   an unlabelled one there that must not be;
/// - ServiceAccount `sa1` labelled in `other` (by namespaceSelector and labelSelector);
/// - the Namespace `other` itself (cluster-scoped, by names).
struct RelatedFixture {
    other: String,
}

impl RelatedFixture {
    async fn create(h: &Harness) -> Self {
        let other = create_namespace(&h.client, &format!("{}-other", h.label)).await;
        let namespaces: Api<Namespace> = Api::all(h.client.clone());
        namespaces
            .patch(
                &other,
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"labels": {"kubelambda-related": h.label}}})),
            )
            .await
            .expect("label the other namespace");
        let role = json!({"role": h.label});
        let create_cm = |ns: &str, color: &str| {
            let api: Api<ConfigMap> = Api::namespaced(h.client.clone(), ns);
            let cm: ConfigMap = serde_json::from_value(
                json!({"metadata": {"name": RELATED_CM}, "data": {"color": color}}),
            )
            .expect("cm");
            async move { api.create(&PostParams::default(), &cm).await.expect("cm") }
        };
        create_cm(&h.ns, "blue").await;
        create_cm(&other, "wrong").await;
        let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &other);
        for (name, labels) in [("s1", role.clone()), ("unlabelled", json!({}))] {
            let s: Secret =
                serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
                    .expect("secret");
            secrets
                .create(&PostParams::default(), &s)
                .await
                .expect("secret");
        }
        let sas: Api<ServiceAccount> = Api::namespaced(h.client.clone(), &other);
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "sa1", "labels": role}}))
                .expect("sa");
        sas.create(&PostParams::default(), &sa).await.expect("sa");
        Self { other }
    }

    /// The customize rules, for a parent in `parent_ns`.
    fn rules(label: &str, parent_ns: &str, other: &str) -> Value {
        json!([
            {"apiVersion": "v1", "resource": "configmaps", "namespace": parent_ns, "names": [RELATED_CM]},
            {"apiVersion": "v1", "resource": "secrets", "namespace": other,
             "labelSelector": {"matchLabels": {"role": label}}},
            {"apiVersion": "v1", "resource": "serviceaccounts",
             "namespaceSelector": {"matchLabels": {"kubelambda-related": label}},
             "labelSelector": {"matchLabels": {"role": label}}},
            {"apiVersion": "v1", "resource": "namespaces", "names": [other]},
        ])
    }

    const TYPES: &[&str] = &[
        "ConfigMap.v1",
        "Secret.v1",
        "ServiceAccount.v1",
        "Namespace.v1",
    ];

    /// What the sync hooks report about the related objects: their keys, and the color of the
    /// related ConfigMap.
    fn report(&self, ns: &str, color: &str, secrets: &[&str]) -> Value {
        let secrets: Vec<String> = secrets
            .iter()
            .map(|s| format!("{}/{s}", self.other))
            .collect();
        json!({
            "color": color,
            "configMaps": format!("{ns}/{RELATED_CM}"),
            "secrets": secrets.join(","),
            "serviceAccounts": format!("{}/sa1", self.other),
            "namespaces": self.other,
        })
    }

    /// Changes the related ConfigMap's color and adds a second labelled Secret: both resync.
    async fn change(&self, h: &Harness) {
        h.api::<ConfigMap>()
            .patch(
                RELATED_CM,
                &PatchParams::default(),
                &Patch::Merge(&json!({"data": {"color": "green"}})),
            )
            .await
            .expect("patch the related ConfigMap");
        let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &self.other);
        let s: Secret = serde_json::from_value(
            json!({"metadata": {"name": "s2", "labels": {"role": h.label}}}),
        )
        .expect("secret");
        secrets
            .create(&PostParams::default(), &s)
            .await
            .expect("secret s2");
    }
}

/// Checks a customize request: exactly `controller` and `parent`.
fn check_customize_request(request: &Value) -> Result<(), String> {
    let fields: BTreeSet<&str> = request
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    if fields != BTreeSet::from(["controller", "parent"]) {
        return Err(format!("the customize request has the fields {fields:?}"));
    }
    if str_at(request, "/controller/kind") != "CompositeController" {
        return Err(format!("controller is {}", request["controller"]));
    }
    Ok(())
}

/// The summary of `request.related` that [`RelatedFixture::report`] describes.
fn related_report(request: &Value) -> Value {
    let join = |ty: &str| keys(request, "related", ty).join(",");
    let cm_key = keys(request, "related", "ConfigMap.v1")
        .into_iter()
        .next()
        .unwrap_or_default();
    let color = request
        .pointer("/related/ConfigMap.v1")
        .and_then(|m| m.get(&cm_key))
        .map(|cm| str_at(cm, "/data/color").to_owned())
        .unwrap_or_default();
    json!({
        "color": color,
        "configMaps": join("ConfigMap.v1"),
        "secrets": join("Secret.v1"),
        "serviceAccounts": join("ServiceAccount.v1"),
        "namespaces": join("Namespace.v1"),
    })
}

/// Metacontroller's `TestCustomizeWebhookV2`, with more rules: the customize webhook (v2) asks
/// for related objects by names, by labels in another namespace, by namespace selector, and a
/// cluster-scoped one; the sync webhook (v2) checks that `related` is keyed `namespace/name`
/// (`name` for the Namespace) and makes a child named after the parent and the related
/// ConfigMap, with what it saw in its data. A change to a related object resyncs the parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customize_webhook_v2_sends_related_objects_by_namespace_and_name() {
    let h = Harness::new("customize-webhook-v2").await;
    let failures = Failures::default();
    let fixture = RelatedFixture::create(&h).await;
    let (label, other) = (h.label.clone(), fixture.other.clone());
    let customize = HookServer::start(&failures, move |request| {
        check_customize_request(request)?;
        let ns = str_at(request, "/parent/metadata/namespace");
        Ok(json!({"relatedResources": RelatedFixture::rules(&label, ns, &other)}))
    })
    .await;
    let sync = HookServer::start(&failures, |request| {
        check_parent(request, "test.kubelambda.io/v1", "TestParent")?;
        check_map(request, "children", &["ConfigMap.v1"], uniform_key)?;
        check_map(request, "related", RelatedFixture::TYPES, uniform_key)?;
        let parent = str_at(request, "/parent/metadata/name");
        let related = request
            .pointer("/related/ConfigMap.v1")
            .and_then(Value::as_object)
            .and_then(|m| m.values().next());
        let children = match related {
            None => vec![],
            Some(cm) => vec![json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("{parent}-{}", str_at(cm, "/metadata/name"))},
                "data": related_report(request),
            })],
        };
        Ok(json!({"children": children}))
    })
    .await;
    h.controller(
        "customize",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}}],
            "hooks": {
                "sync": {"version": "v2", "webhook": {"url": sync.url}},
                "customize": {"version": "v2", "webhook": {"url": customize.url}},
            },
        }),
    )
    .await;
    h.parent("cw", json!({})).await;
    let cms = h.api::<ConfigMap>();
    let child = format!("cw-{RELATED_CM}");
    wait_configmap_data(
        &failures,
        &cms,
        &child,
        fixture.report(&h.ns, "blue", &["s1"]),
    )
    .await;
    let customize_calls = customize.calls();
    fixture.change(&h).await;
    wait_configmap_data(
        &failures,
        &cms,
        &child,
        fixture.report(&h.ns, "green", &["s1", "s2"]),
    )
    .await;
    assert_eq!(
        customize.calls(),
        customize_calls,
        "customize answers are kept per parent generation"
    );
    failures.check();
}

const JSONNET_CUSTOMIZE_V2: &str = r#"
function(request) {
  local spec = request.parent.spec,
  relatedResources: [
    { apiVersion: 'v1', resource: 'configmaps', namespace: request.parent.metadata.namespace, names: ['related-config-map'] },
    { apiVersion: 'v1', resource: 'secrets', namespace: spec.other, labelSelector: { matchLabels: { role: spec.label } } },
    { apiVersion: 'v1', resource: 'serviceaccounts',
      namespaceSelector: { matchLabels: { 'kubelambda-related': spec.label } },
      labelSelector: { matchLabels: { role: spec.label } } },
    { apiVersion: 'v1', resource: 'namespaces', names: [spec.other] },
  ],
}
"#;

/// Reads the related ConfigMap and Secret under their v2 keys and reports the keys it got.
const JSONNET_SYNC_RELATED_V2: &str = r#"
function(request)
  local meta = request.parent.metadata, spec = request.parent.spec;
  local related = request.related;
  local join(ty) = std.join(',', std.objectFields(related[ty]));
  local cm = related['ConfigMap.v1'][meta.namespace + '/related-config-map'];
  local s1 = related['Secret.v1'][spec.other + '/s1'];
  {
    children: [],
    status: {
      color: cm.data.color,
      s1: s1.metadata.name,
      configMaps: join('ConfigMap.v1'),
      secrets: join('Secret.v1'),
      serviceAccounts: join('ServiceAccount.v1'),
      namespaces: join('Namespace.v1'),
    },
  }
"#;

/// The same with inline Jsonnet hooks (`version: v2` on both): the sync hook reads
/// `request.related['ConfigMap.v1'][namespace + '/related-config-map']` and reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customize_jsonnet_v2_sends_related_objects_by_namespace_and_name() {
    let h = Harness::new("customize-jsonnet-v2").await;
    let failures = Failures::default();
    let fixture = RelatedFixture::create(&h).await;
    h.controller(
        "customize",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
            "hooks": {
                "sync": {"version": "v2", "jsonnet": {"source": JSONNET_SYNC_RELATED_V2}},
                "customize": {"version": "v2", "jsonnet": {"source": JSONNET_CUSTOMIZE_V2}},
            },
        }),
    )
    .await;
    h.parent("cj", json!({"other": fixture.other, "label": h.label}))
        .await;
    let mut want = fixture.report(&h.ns, "blue", &["s1"]);
    want["s1"] = json!("s1");
    wait_status(&h, &failures, "cj", want).await;
    fixture.change(&h).await;
    let mut want = fixture.report(&h.ns, "green", &["s1", "s2"]);
    want["s1"] = json!("s1");
    wait_status(&h, &failures, "cj", want).await;
}

/// Reports the keys of every related type.
const JSONNET_SYNC_RELATED_KEYS: &str = r#"
function(request) {
  children: [],
  status: { [std.strReplace(ty, '.', '-')]: std.objectFields(request.related[ty]) for ty in std.objectFields(request.related) },
}
"#;

/// The version is chosen per hook: a v2 customize hook may select objects in other namespaces
/// and cluster-scoped ones, but a v1 sync hook of a namespaced parent is sent only those in the
/// parent's namespace, keyed by name (Metacontroller converts the related map for v1 hooks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customize_v2_with_sync_v1_sends_only_the_parents_namespace_by_name() {
    let h = Harness::new("customize-v2-sync-v1").await;
    let failures = Failures::default();
    let fixture = RelatedFixture::create(&h).await;
    h.controller(
        "customize",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
            "hooks": {
                "sync": {"jsonnet": {"source": JSONNET_SYNC_RELATED_KEYS}},
                "customize": {"version": "v2", "jsonnet": {"source": JSONNET_CUSTOMIZE_V2}},
            },
        }),
    )
    .await;
    h.parent("mixed", json!({"other": fixture.other, "label": h.label}))
        .await;
    wait_status(
        &h,
        &failures,
        "mixed",
        json!({
            "ConfigMap-v1": [RELATED_CM],
            "Secret-v1": [],
            "ServiceAccount-v1": [],
            "Namespace-v1": [],
        }),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 3b. A cluster-scoped parent.

fn cluster_parent_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "testclusterparents.test.kubelambda.io"},
        "spec": {
            "group": "test.kubelambda.io",
            "scope": "Cluster",
            "names": {"kind": "TestClusterParent", "plural": "testclusterparents", "singular": "testclusterparent"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    })
}

fn cluster_parent_ar() -> ApiResource {
    ApiResource {
        group: "test.kubelambda.io".into(),
        version: "v1".into(),
        api_version: "test.kubelambda.io/v1".into(),
        kind: "TestClusterParent".into(),
        plural: "testclusterparents".into(),
    }
}

/// A cluster-scoped parent whose namespaced children and related objects are keyed
/// `namespace/name` (v2, and v1 too for such a parent). The sync webhook names the child's
/// namespace (there is no parent namespace to default to), checks the keys, and reports the keys
/// it saw in the status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_scoped_parent_v2_keys_namespaced_objects_by_namespace_and_name() {
    let h = Harness::new("cluster-parent-v2").await;
    let failures = Failures::default();
    create_crd(&h.client, cluster_parent_crd()).await;
    h.api::<ConfigMap>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": RELATED_CM}, "data": {"color": "blue"}}),
            )
            .expect("cm"),
        )
        .await
        .expect("related ConfigMap");
    let sync = HookServer::start(&failures, |request| {
        check_parent(request, "test.kubelambda.io/v1", "TestClusterParent")?;
        check_map(request, "children", &["ConfigMap.v1"], uniform_key)?;
        check_map(request, "related", &["ConfigMap.v1"], uniform_key)?;
        if !str_at(request, "/parent/metadata/namespace").is_empty() {
            return Err(format!("the parent has a namespace: {}", request["parent"]));
        }
        let ns = str_at(request, "/parent/spec/namespace");
        let name = str_at(request, "/parent/metadata/name");
        Ok(json!({
            "children": [{
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("{name}-child"), "namespace": ns},
            }],
            "status": {
                "children": keys(request, "children", "ConfigMap.v1"),
                "related": keys(request, "related", "ConfigMap.v1"),
            },
        }))
    })
    .await;
    let customize = r#"
function(request) {
  relatedResources: [{ apiVersion: 'v1', resource: 'configmaps', namespace: request.parent.spec.namespace, names: ['related-config-map'] }],
}
"#;
    create_cc(
        &h.client,
        json!({
            "apiVersion": "metacontroller.k8s.io/v1alpha1",
            "kind": "CompositeController",
            "metadata": {"name": format!("cluster-{}", h.label), "labels": {"kubelambda-test": h.label}},
            "spec": {
                "parentResource": {
                    "apiVersion": "test.kubelambda.io/v1", "resource": "testclusterparents",
                    "labelSelector": {"matchLabels": {"kubelambda-test": h.label}},
                },
                "generateSelector": true,
                "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
                "hooks": {
                    "sync": {"version": "v2", "webhook": {"url": sync.url}},
                    "customize": {"version": "v2", "jsonnet": {"source": customize}},
                },
            },
        }),
    )
    .await;
    let parents: Api<DynamicObject> = Api::all_with(h.client.clone(), &cluster_parent_ar());
    let name = format!("{}-cp", h.label);
    let parent: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.kubelambda.io/v1", "kind": "TestClusterParent",
        "metadata": {"name": name, "labels": {"kubelambda-test": h.label}},
        "spec": {"namespace": h.ns},
    }))
    .expect("parent");
    let parent = parents
        .create(&PostParams::default(), &parent)
        .await
        .expect("create the cluster-scoped parent");
    let child = wait_configmap(&failures, &h.api(), &format!("{name}-child")).await;
    assert_eq!(owner_uid(&child), parent.uid());
    let want = json!({
        "children": [format!("{}/{name}-child", h.ns)],
        "related": [format!("{}/{RELATED_CM}", h.ns)],
    });
    failures
        .wait("the cluster-scoped parent's status", || {
            let (parents, name, want) = (parents.clone(), name.clone(), want.clone());
            async move {
                let p = parents.get(&name).await.ok()?;
                (p.data.pointer("/status/children") == Some(&want["children"])
                    && p.data.pointer("/status/related") == Some(&want["related"]))
                .then_some(())
            }
        })
        .await;
    // The garbage collector deletes the namespaced child of the cluster-scoped parent.
    parents
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete the parent");
    failures.wait_gone(&h.api(), &format!("{name}-child")).await;
    failures.check();
}

// ---------------------------------------------------------------------------------------------
// 4. Strict decoding.

const NORMAL: u8 = 0;
/// Answer with no children and an unknown top-level field.
const EXTRA_FIELD: u8 = 1;

/// A sync webhook that returns a ConfigMap child named after the parent, or, in mode
/// [`EXTRA_FIELD`], no children and the unknown field `bogusField`.
async fn moody_server(failures: &Failures, mode: Arc<AtomicU8>) -> HookServer {
    HookServer::start(failures, move |request| {
        let name = str_at(request, "/parent/metadata/name");
        Ok(match mode.load(Ordering::SeqCst) {
            NORMAL => json!({
                "children": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}],
                "status": {},
            }),
            _ => json!({"children": [], "status": {}, "bogusField": true}),
        })
    })
    .await
}

async fn set_webhook(h: &Harness, controller: &str, webhook: Value) {
    Api::<DynamicObject>::all_with(h.client.clone(), &cc_ar())
        .patch(
            controller,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"hooks": {"sync": {"webhook": webhook}}}})),
        )
        .await
        .expect("patch the controller");
}

/// A v2 webhook's response with an unknown top-level field fails the sync: a Warning names the
/// field, and the child the answer left out is not deleted, however often the sync is retried.
/// `responseUnMarshallMode: loose` accepts the same answer (and the child goes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_webhook_is_strict_by_default_and_loose_on_request() {
    let h = Harness::new("strict-v2").await;
    let failures = Failures::default();
    let mode = Arc::new(AtomicU8::new(NORMAL));
    let hook = moody_server(&failures, mode.clone()).await;
    let controller = h
        .controller(
            "strict",
            json!({
                "generateSelector": true,
                "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
                "hooks": {"sync": {"version": "v2", "webhook": {"url": hook.url}}},
            }),
        )
        .await;
    h.parent("sp", json!({"round": 1})).await;
    let child = wait_configmap(&failures, &h.api(), "sp").await;

    mode.store(EXTRA_FIELD, Ordering::SeqCst);
    h.patch_parent("sp", json!({"round": 2})).await;
    let note = h.warning("sp", "bogusField").await;
    assert!(note.contains("unknown field"), "{note}");
    // The failed sync is retried; every retry fails the same way and deletes nothing.
    let calls = hook.calls();
    failures
        .wait("two more calls of the hook", || async {
            (hook.calls() >= calls + 2).then_some(())
        })
        .await;
    let still = h.api::<ConfigMap>().get("sp").await.expect("child kept");
    assert_eq!(still.uid(), child.uid());
    assert!(still.metadata.deletion_timestamp.is_none());

    set_webhook(
        &h,
        &controller,
        json!({"url": hook.url, "responseUnMarshallMode": "loose"}),
    )
    .await;
    failures.wait_gone(&h.api(), "sp").await;
    failures.check();
}

/// v1 decodes loosely by default: the same answer is used (here with a child). With
/// `responseUnMarshallMode: strict` a v1 webhook is strict too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_webhook_is_loose_by_default_and_strict_on_request() {
    let h = Harness::new("loose-v1").await;
    let failures = Failures::default();
    let hook = HookServer::start(&failures, |request| {
        let name = str_at(request, "/parent/metadata/name");
        let round = request
            .pointer("/parent/spec/round")
            .cloned()
            .unwrap_or(Value::Null);
        Ok(json!({
            "children": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                          "data": {"round": round.to_string()}}],
            "bogusField": true,
        }))
    })
    .await;
    let controller = h
        .controller(
            "loose",
            json!({
                "generateSelector": true,
                "childResources": [{"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}}],
                "hooks": {"sync": {"webhook": {"url": hook.url}}},
            }),
        )
        .await;
    h.parent("lp", json!({"round": 1})).await;
    let cms = h.api::<ConfigMap>();
    wait_configmap_data(&failures, &cms, "lp", json!({"round": "1"})).await;

    set_webhook(
        &h,
        &controller,
        json!({"url": hook.url, "responseUnMarshallMode": "strict"}),
    )
    .await;
    h.patch_parent("lp", json!({"round": 2})).await;
    let note = h.warning("lp", "bogusField").await;
    assert!(note.contains("unknown field"), "{note}");
    let cm = cms.get("lp").await.expect("child kept");
    assert_eq!(
        cm.data.and_then(|d| d.get("round").cloned()).as_deref(),
        Some("1"),
        "a refused answer changes nothing"
    );
    failures.check();
}

/// A v2 customize webhook is strict inside its rules too (Go's strict decoding reaches into the
/// RelatedResourceRule struct): a misspelt `names` is named in the Warning, and the sync hook
/// is never reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_customize_webhook_is_strict_inside_rules() {
    let h = Harness::new("strict-customize").await;
    let failures = Failures::default();
    let customize = HookServer::start(&failures, |request| {
        check_customize_request(request)?;
        Ok(json!({"relatedResources": [
            {"apiVersion": "v1", "resource": "configmaps", "nmes": ["x"]},
        ]}))
    })
    .await;
    let sync = r#"
function(request) {
  children: [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'never' } }],
}
"#;
    h.controller(
        "customize",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
            "hooks": {
                "sync": {"version": "v2", "jsonnet": {"source": sync}},
                "customize": {"version": "v2", "webhook": {"url": customize.url}},
            },
        }),
    )
    .await;
    h.parent("cs", json!({})).await;
    let note = h.warning("cs", "relatedResources[0].nmes").await;
    assert!(note.contains("customize"), "{note}");
    assert!(
        h.api::<ConfigMap>()
            .get_opt("never")
            .await
            .expect("get")
            .is_none(),
        "every sync stops at the customize hook"
    );
    failures.check();
}
