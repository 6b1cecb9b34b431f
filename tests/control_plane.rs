//! The test control plane itself (tests/testenv/testenv, tests/common): a real kube-apiserver,
//! etcd, kube-controller-manager, kube-scheduler and KWOK, checked through the behaviours the
//! engine tests rely on, and `testenv restart` of each component.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

fn versions_env(key: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testenv/versions.env");
    let text = std::fs::read_to_string(&path).expect("reading tests/testenv/versions.env");
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("{key}="))
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("{key} is not set in {}", path.display()))
}

#[tokio::test]
async fn apiserver_reports_the_pinned_version() {
    let env = TestEnv::shared();
    let client = env.client().await;
    let info = client.apiserver_version().await.expect("GET /version");
    let want = format!("v{}", versions_env("KUBERNETES_VERSION"));
    assert_eq!(
        info.git_version, want,
        "/version of the test apiserver: {info:?}"
    );
    assert_eq!(info.major, "1");
    assert_eq!(
        format!("v{}.{}.", info.major, info.minor),
        &want[..=want.rfind('.').unwrap()],
        "major/minor stamped into the binary"
    );
    // The kubeconfig verifies the server certificate against the generated CA (no skip-verify).
    let kubeconfig =
        std::fs::read_to_string(env.kubeconfig_path()).expect("reading the kubeconfig");
    assert!(
        kubeconfig.contains("certificate-authority-data:"),
        "{kubeconfig}"
    );
    assert!(
        !kubeconfig.contains("insecure-skip-tls-verify"),
        "{kubeconfig}"
    );
}

#[tokio::test]
async fn custom_resource_status_is_written_through_the_status_subresource() {
    let client = TestEnv::shared().client().await;
    let crd = create_crd(
        &client,
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.testenv.kubelambda.dev"},
            "spec": {
                "group": "testenv.kubelambda.dev",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                "versions": [{
                    "name": "v1",
                    "served": true,
                    "storage": true,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                        }
                    }}
                }]
            }
        }),
    )
    .await;
    let conditions = crd
        .status
        .clone()
        .and_then(|s| s.conditions)
        .unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True"),
        "CRD is Established: {conditions:?}"
    );

    let ns = create_namespace(&client, "widgets").await;
    let ar = crd_api_resource(&crd);
    assert_eq!(
        (ar.api_version.as_str(), ar.plural.as_str()),
        ("testenv.kubelambda.dev/v1", "widgets")
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);

    // The new resource can take a moment to be served after Established; retry the create.
    let obj = DynamicObject::new("w1", &ar)
        .within(&ns)
        .data(json!({"spec": {"size": 3}}));
    let created = wait_until_ok("the Widget w1 to be created", || async {
        widgets.create(&PostParams::default(), &obj).await
    })
    .await;
    assert_eq!(created.data["spec"]["size"], 3);
    assert!(
        created.data.get("status").is_none(),
        "no status yet: {:?}",
        created.data
    );
    let generation = created.metadata.generation;

    // Status through /status.
    let status = json!({"phase": "Ready", "observedGeneration": generation, "replicas": 3});
    let patched = widgets
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await
        .expect("PATCH widgets/w1/status");
    assert_eq!(patched.data["status"], status);
    assert_eq!(
        patched.metadata.generation, generation,
        "a status write does not bump generation"
    );

    let read = widgets
        .get_status("w1")
        .await
        .expect("GET widgets/w1/status");
    assert_eq!(read.data["status"], status);
    assert_eq!(
        read.data["spec"]["size"], 3,
        "the spec is unchanged by the status write"
    );

    // With the status subresource enabled, status sent to the main resource is ignored, and spec
    // changes bump generation.
    let main = widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"size": 4}, "status": {"phase": "Ignored"}})),
        )
        .await
        .expect("PATCH widgets/w1");
    assert_eq!(main.data["spec"]["size"], 4);
    assert_eq!(
        main.data["status"], status,
        "status is only writable through /status"
    );
    assert_eq!(main.metadata.generation, generation.map(|g| g + 1));

    // Server-side apply on /status (what the engine uses) also works.
    let applied = widgets
        .patch_status(
            "w1",
            &PatchParams::apply("kubelambda-test").force(),
            &Patch::Apply(&json!({
                "apiVersion": ar.api_version, "kind": ar.kind,
                "status": {"phase": "Applied"}
            })),
        )
        .await
        .expect("server-side apply on widgets/w1/status");
    assert_eq!(applied.data["status"]["phase"], "Applied");

    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_dependents() {
    let client = TestEnv::shared().client().await;
    let ns = create_namespace(&client, "gc").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);

    let owner = cms
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("owner".into()),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([("role".to_string(), "owner".to_string())])),
                ..Default::default()
            },
        )
        .await
        .expect("creating the owner ConfigMap");
    let owner_ref = OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.metadata.uid.clone().expect("owner uid"),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let owned = cms
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("owned".into()),
                    owner_references: Some(vec![owner_ref.clone()]),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("creating the owned ConfigMap");
    assert_eq!(owned.metadata.owner_references, Some(vec![owner_ref]));
    // An object without owner references must survive the owner's deletion.
    cms.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: ObjectMeta {
                name: Some("bystander".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .expect("creating the bystander ConfigMap");

    cms.delete("owner", &DeleteParams::background())
        .await
        .expect("deleting the owner ConfigMap");
    wait_deleted(&cms, "owner").await;
    // Only kube-controller-manager's garbage collector deletes dependents.
    wait_deleted(&cms, "owned").await;
    assert!(
        cms.get_opt("bystander")
            .await
            .expect("GET bystander")
            .is_some(),
        "an unrelated ConfigMap survives"
    );

    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn namespaces_are_populated_and_finalized_by_the_controller_manager() {
    let client = TestEnv::shared().client().await;
    let ns = create_namespace(&client, "Namespace_Lifecycle").await;
    assert!(
        ns.starts_with("namespace-lifecycle-"),
        "sanitized generateName prefix: {ns}"
    );

    // The serviceaccount controller creates `default` in every namespace.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let sa = wait_until(&format!("ServiceAccount {ns}/default"), || async {
        sas.get_opt("default").await.ok().flatten()
    })
    .await;
    assert_eq!(sa.metadata.namespace.as_deref(), Some(ns.as_str()));

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    cms.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: ObjectMeta {
                name: Some("content".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .expect("creating a ConfigMap in the namespace");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("deleting the namespace");
    // The namespace controller empties it and removes the `kubernetes` finalizer; without
    // kube-controller-manager it would stay Terminating forever.
    wait_deleted(&namespaces, &ns).await;
    assert!(
        namespaces
            .get_opt(&ns)
            .await
            .expect("GET namespace")
            .is_none(),
        "namespace {ns} is gone"
    );
}

/// Directories of `PATH` without a `go` executable; a directory that has one (e.g. /usr/bin when
/// Go came from the distribution) is replaced by a shadow directory of symlinks to everything else.
fn path_without_go(shadow_root: &Path) -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (i, dir) in std::env::split_paths(&path).enumerate() {
        if !dir.join("go").exists() {
            dirs.push(dir);
            continue;
        }
        let shadow = shadow_root.join(format!("path{i}"));
        std::fs::create_dir_all(&shadow).unwrap();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            if name != "go" && name != "gofmt" {
                let _ = std::os::unix::fs::symlink(entry.path(), shadow.join(&name));
            }
        }
        dirs.push(shadow);
    }
    std::env::join_paths(dirs).unwrap().into_string().unwrap()
}

#[test]
fn testenv_build_without_go_fails_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let path = path_without_go(tmp.path());

    let probe = Command::new("bash")
        .args(["-c", "command -v go || echo none"])
        .env("PATH", &path)
        .output()
        .expect("running bash");
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout).trim(),
        "none",
        "go still on PATH={path}"
    );

    let out = Command::new(testenv_script())
        .arg("build")
        .env("PATH", &path)
        .env("XDG_CACHE_HOME", &cache)
        .env_remove("TESTENV_BIN_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("running tests/testenv/testenv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status; stderr:\n{stderr}");
    assert!(stderr.contains("Go toolchain not found"), "{stderr}");
    assert!(
        stderr.contains("install Go >= "),
        "names what to install: {stderr}"
    );
    assert!(
        stderr.contains("https://go.dev/dl"),
        "says where to get it: {stderr}"
    );
    // Nothing was built or half-built in the cache.
    let leftovers: Vec<_> = walk(&cache);
    assert!(leftovers.is_empty(), "cache left untouched: {leftovers:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// The pid `testenv` recorded for a component of the environment in `dir`.
fn component_pid(dir: &Path, process: &str) -> String {
    let file = dir.join(format!("{process}.pid"));
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_each_component_keeps_data_certificates_and_tokens() {
    // A private environment: restarting the shared one would disturb the other tests.
    let dir = tempfile::Builder::new()
        .prefix("kubelambda-testenv-restart-")
        .tempdir()
        .expect("tempdir");
    let env = TestEnv::start(dir.path()).expect("a private control plane starts");
    let kubeconfig = std::fs::read_to_string(env.kubeconfig_path()).expect("kubeconfig");
    let ca = std::fs::read(env.dir().join("pki/ca.crt")).expect("CA certificate");

    let client = env.client().await;
    let ns = create_namespace(&client, "restart").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("kept".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
        ..Default::default()
    };
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create ConfigMap");

    for (component, process) in [
        ("etcd", "etcd"),
        ("apiserver", "kube-apiserver"),
        ("controller-manager", "kube-controller-manager"),
        ("scheduler", "kube-scheduler"),
        ("kwok", "kwok"),
    ] {
        let before = component_pid(env.dir(), process);
        env.restart(component)
            .unwrap_or_else(|e| panic!("restart {component}: {e}"));
        assert_ne!(
            component_pid(env.dir(), process),
            before,
            "{component} is a new process"
        );
        // Same kubeconfig (server address, token) and CA: a new client from it still works.
        assert_eq!(
            std::fs::read_to_string(env.kubeconfig_path()).expect("kubeconfig"),
            kubeconfig,
            "kubeconfig after restarting {component}"
        );
        assert_eq!(
            std::fs::read(env.dir().join("pki/ca.crt")).expect("CA"),
            ca,
            "CA after restarting {component}"
        );
        let cms: Api<ConfigMap> = Api::namespaced(env.client().await, &ns);
        let kept = wait_until_ok(
            &format!("the ConfigMap to be readable after restarting {component}"),
            || async { cms.get("kept").await },
        )
        .await;
        assert_eq!(kept.data, cm.data, "data after restarting {component}");
    }

    // Every restarted component does its job: a Deployment needs the controller manager, the
    // scheduler and KWOK.
    let client = env.client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "after-restarts"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "after-restarts"}},
            "template": {
                "metadata": {"labels": {"app": "after-restarts"}},
                "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }))
    .expect("Deployment");
    deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("create Deployment");
    wait_until_ok("the Deployment to roll out after the restarts", || async {
        let d = deployments
            .get("after-restarts")
            .await
            .map_err(|e| format!("get: {e}"))?;
        deployment_rolled_out(&d)
    })
    .await;

    let out = Command::new(testenv_script())
        .args(["restart"])
        .arg(env.dir())
        .arg("kubelet")
        .stdin(Stdio::null())
        .output()
        .expect("run testenv restart");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unknown component 'kubelet'"),
        "names the bad component: {stderr}"
    );
    env.stop();
}
