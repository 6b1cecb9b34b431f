//! The in-process engine harness shared by the engine's integration tests: a namespace, a
//! label that ties a test's controllers and parents together (so parallel tests never meet), the
//! engine started with that label as its target selector, and helpers to create controllers and
//! parents and to wait for results.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kubelambda::engine::children::ApplyStrategy;
use kubelambda::engine::{Engine, EngineConfig};
use kubelambda::hooks::jsonnet::JsonnetOptions;
use kubelambda::hooks::sandbox::{
    DEFAULT_RESPONSE_CACHE_BYTES, Sandbox, SandboxConfig, SandboxPolicy,
};
use kubelambda::hooks::{HookDirs, Limits};
use serde_json::{Value, json};

use super::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_kubelambda");

pub fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A parent type for tests: any spec, status subresource.
pub fn test_parent_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "testparents.test.kubelambda.io"},
        "spec": {
            "group": "test.kubelambda.io",
            "scope": "Namespaced",
            "names": {"kind": "TestParent", "plural": "testparents", "singular": "testparent"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    })
}

pub fn parent_ar() -> ApiResource {
    ApiResource {
        group: "test.kubelambda.io".into(),
        version: "v1".into(),
        api_version: "test.kubelambda.io/v1".into(),
        kind: "TestParent".into(),
        plural: "testparents".into(),
    }
}

pub struct Harness {
    pub client: Client,
    pub engine: Option<Engine>,
    pub ns: String,
    /// Ties this test's controllers and parents together, so parallel tests do not meet.
    pub label: String,
    pub config: EngineConfig,
    pub kube_config: kube::Config,
}

pub fn sandbox() -> Sandbox {
    sandbox_with(HookDirs::default())
}

/// The test sandbox, with controllers' `file` hooks and `jpath` allowed inside `hook_dirs`.
pub fn sandbox_with(hook_dirs: HookDirs) -> Sandbox {
    Sandbox::with_policy(
        SandboxConfig {
            program: BIN.into(),
            workers: 2,
            limits: Limits::default(),
            jsonnet: JsonnetOptions::default(),
            response_cache_bytes: DEFAULT_RESPONSE_CACHE_BYTES,
        },
        SandboxPolicy {
            hook_dirs,
            ..SandboxPolicy::default()
        },
    )
}

impl Harness {
    pub async fn new(test: &str) -> Self {
        Self::with_strategy(
            test,
            ApplyStrategy::ServerSide {
                field_manager: "kubelambda".into(),
            },
        )
        .await
    }

    pub async fn with_strategy(test: &str, apply: ApplyStrategy) -> Self {
        Self::on_env(TestEnv::shared(), test, apply).await
    }

    /// The harness on `env` (a private control plane, for tests that restart or pause its
    /// components) instead of the shared one.
    pub async fn on_env(env: &TestEnv, test: &str, apply: ApplyStrategy) -> Self {
        kubelambda::telemetry::init_logging("kubelambda=info");
        let client = env.client().await;
        create_crd(&client, test_parent_crd()).await;
        let useless: Value = serde_yaml::from_str(
            &std::fs::read_to_string(root().join("examples/useless-controller/crd.yaml"))
                .expect("crd.yaml"),
        )
        .expect("crd yaml");
        create_crd(&client, useless).await;
        let ns = create_namespace(&client, test).await;
        let label = ns.clone();
        let config = EngineConfig {
            workers: 4,
            discovery_interval: Duration::from_secs(2),
            cache_flush_interval: None,
            apply,
            target_label_selector: Some(format!("kubelambda-test={label}")),
            client_rate_limit: None,
            sandbox: sandbox(),
        };
        let kube_config = env.config().await;
        let engine = Engine::start(kube_config.clone(), config.clone()).expect("engine starts");
        Self {
            client,
            engine: Some(engine),
            ns,
            label,
            config,
            kube_config,
        }
    }

    /// Restarts the engine with controllers' hook files allowed inside `dirs` (`--hook-dir`).
    pub fn allow_hook_dirs(&mut self, dirs: &[std::path::PathBuf]) {
        self.config.sandbox = sandbox_with(HookDirs::new(dirs));
        self.restart();
    }

    pub fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("engine running")
    }

    pub fn restart(&mut self) {
        self.engine = None;
        self.engine = Some(
            Engine::start(self.kube_config.clone(), self.config.clone()).expect("engine restarts"),
        );
    }

    pub fn parents(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.ns, &parent_ar())
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates a CompositeController (its name made unique) for TestParents labelled for this test.
    pub async fn controller(&self, name: &str, mut spec: Value) -> String {
        let name = format!("{name}-{}", self.label);
        spec["parentResource"] = json!({
            "apiVersion": "test.kubelambda.io/v1",
            "resource": "testparents",
            "labelSelector": {"matchLabels": {"kubelambda-test": self.label}},
        });
        let cc = json!({
            "apiVersion": "metacontroller.k8s.io/v1alpha1",
            "kind": "CompositeController",
            "metadata": {"name": name, "labels": {"kubelambda-test": self.label}},
            "spec": spec,
        });
        create_cc(&self.client, cc).await;
        name
    }

    pub async fn parent(&self, name: &str, spec: Value) -> DynamicObject {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "test.kubelambda.io/v1",
            "kind": "TestParent",
            "metadata": {"name": name, "labels": {"kubelambda-test": self.label}},
            "spec": spec,
        }))
        .expect("parent");
        self.parents()
            .create(&PostParams::default(), &obj)
            .await
            .expect("create parent")
    }

    pub async fn patch_parent(&self, name: &str, spec: Value) {
        self.parents()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": spec})),
            )
            .await
            .expect("patch parent");
    }

    pub async fn configmap(&self, name: &str) -> ConfigMap {
        let api: Api<ConfigMap> = self.api();
        wait_until(&format!("ConfigMap {name}"), || {
            let api = api.clone();
            let name = name.to_owned();
            async move { api.get_opt(&name).await.ok().flatten() }
        })
        .await
    }

    /// Waits until `n` parents report `status.children == 1` (the ConfigMap hook's status).
    pub async fn wait_converged(&self, n: usize) {
        let parents = self.parents();
        wait_until(
            &format!("{n} parents with one child in their status"),
            || {
                let parents = parents.clone();
                async move {
                    let list = parents.list(&Default::default()).await.ok()?;
                    let done = list
                        .items
                        .iter()
                        .filter(|p| p.data.pointer("/status/children") == Some(&json!(1)))
                        .count();
                    (done == n).then_some(())
                }
            },
        )
        .await
    }

    /// Waits for a Warning event on `object` (in this test's namespace) whose message contains
    /// `text`.
    pub async fn warning(&self, object: &str, text: &str) -> String {
        self.warning_in(&self.ns, object, text).await
    }

    /// Waits for a Warning event in `namespace` on `object` whose message contains `text`
    /// (events about cluster-scoped objects, such as controllers, are in `default`).
    pub async fn warning_in(&self, namespace: &str, object: &str, text: &str) -> String {
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        wait_until(
            &format!("a Warning event on {object} containing {text:?}"),
            || {
                let events = events.clone();
                let (object, text) = (object.to_owned(), text.to_owned());
                async move {
                    let list = events.list(&Default::default()).await.ok()?;
                    list.items.into_iter().find_map(|e| {
                        let note = e.note.clone().unwrap_or_default();
                        (e.type_.as_deref() == Some("Warning")
                            && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                                == Some(object.as_str())
                            && note.contains(&text))
                        .then_some(note)
                    })
                }
            },
        )
        .await
    }
}

pub fn cc_ar() -> ApiResource {
    ApiResource {
        group: "metacontroller.k8s.io".into(),
        version: "v1alpha1".into(),
        api_version: "metacontroller.k8s.io/v1alpha1".into(),
        kind: "CompositeController".into(),
        plural: "compositecontrollers".into(),
    }
}

/// Installs kubelambda's CRDs (CompositeController, DecoratorController, ControllerRevision).
pub async fn install_crds(client: &Client) {
    for crd in kubelambda::api::crds() {
        create_crd(client, serde_json::to_value(crd).expect("crd json")).await;
    }
}

/// Creates a DecoratorController named `name-<label>`, labelled for this test, with `spec`.
pub async fn create_decorator(h: &Harness, name: &str, spec: Value) -> String {
    let name = format!("{name}-{}", h.label);
    let dc = json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1",
        "kind": "DecoratorController",
        "metadata": {"name": name, "labels": {"kubelambda-test": h.label}},
        "spec": spec,
    });
    install_crds(&h.client).await;
    let obj: DynamicObject = serde_json::from_value(dc).expect("decorator");
    Api::<DynamicObject>::all_with(h.client.clone(), &dc_ar())
        .create(&PostParams::default(), &obj)
        .await
        .expect("create DecoratorController");
    name
}

pub fn dc_ar() -> ApiResource {
    ApiResource {
        kind: "DecoratorController".into(),
        plural: "decoratorcontrollers".into(),
        ..cc_ar()
    }
}

pub async fn create_cc(client: &Client, cc: Value) {
    let ar = cc_ar();
    install_crds(client).await;
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let obj: DynamicObject = serde_json::from_value(cc).expect("cc");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create CompositeController");
}

pub fn owner_uid(obj: &impl ResourceExt) -> Option<String> {
    obj.owner_references()
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}
