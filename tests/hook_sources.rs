//! Hooks whose code lives in a ConfigMap key (`configMapRef`) or a file (`file`) follow their
//! source on the real control plane: an edit is used and every parent resynced without touching
//! the parents; a broken edit, a deleted key or ConfigMap keeps the last good version and says
//! why in a Warning Event on the controller; a fix is used again. Each change costs a bounded
//! number of syncs and writes, and then nothing more happens.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// A Jsonnet hook: one ConfigMap child per parent, named `spec.name`, whose data says which
/// version of the hook made it and echoes the parent's `spec.extra`.
fn jsonnet_hook(version: &str) -> String {
    format!(
        r#"function(request) {{
  local spec = request.parent.spec,
  children: [{{
    apiVersion: 'v1', kind: 'ConfigMap',
    metadata: {{ name: spec.name }},
    data: {{ version: '{version}', extra: std.get(spec, 'extra', '') }},
  }}],
  status: {{ children: std.length(request.children['ConfigMap.v1']) }},
}}
"#
    )
}

/// A syntax error on line 2.
const BROKEN_JSONNET: &str = "function(request) {\n  children: [}\n";

/// The Tera version of [`jsonnet_hook`].
fn tera_hook(version: &str) -> String {
    format!(
        r#"children:
  - apiVersion: v1
    kind: ConfigMap
    metadata:
      name: {{{{ parent.spec.name }}}}
    data:
      version: "{version}"
      extra: "{{{{ parent.spec.extra | default(value='') }}}}"
status: {{}}
"#
    )
}

/// A template that does not compile: an unclosed tag on line 5.
const BROKEN_TERA: &str = "children:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: {{ parent.spec.name }\n";

fn controller_spec(hook: Value) -> Value {
    json!({
        "generateSelector": true,
        "childResources": [{"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}}],
        "hooks": {"sync": hook},
    })
}

/// Waits until child ConfigMap `name` was made by hook `version` for a parent whose
/// `spec.extra` is `extra`.
async fn wait_child(h: &Harness, name: &str, version: &str, extra: &str) {
    let cms: Api<ConfigMap> = h.api();
    wait_until(
        &format!("child {name} at version {version} with extra {extra:?}"),
        || {
            let cms = cms.clone();
            async move {
                let data = cms.get_opt(name).await.ok()??.data?;
                (data.get("version")? == version && data.get("extra")? == extra).then_some(())
            }
        },
    )
    .await;
}

/// Counts of what this test's engine did: (hook evaluations, writes, event writes). Hook
/// evaluations (the sandbox's, answered from its cache or not, checks of new versions
/// included) count this test's work only: the engine's syncs also count other tests' parents,
/// which its informer sees and skips.
fn counts(h: &Harness) -> (u64, u64, u64) {
    let m = &h.engine().metrics;
    let calls = h
        .config
        .sandbox
        .cache_stats()
        .map_or(0, |s| s.hits + s.misses);
    (calls, m.writes(), m.event_writes())
}

/// After a change has been applied: the change cost at most `max_calls` hook evaluations since
/// `before`, and then nothing more happens (no hot loop between the source, the hook and the
/// parents).
async fn settles(h: &Harness, what: &str, before: (u64, u64, u64), max_calls: u64) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = counts(h);
    println!(
        "{what}: {} hook evaluations, {} writes, {} event writes",
        after.0 - before.0,
        after.1 - before.1,
        after.2 - before.2
    );
    assert!(
        after.0 - before.0 <= max_calls,
        "{what}: {} hook evaluations, expected at most {max_calls}",
        after.0 - before.0
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(counts(h), after, "{what}: nothing more happens afterwards");
}

/// The Warning events on controller `controller` whose note contains `text`.
async fn warnings(h: &Harness, controller: &str, text: &str) -> usize {
    let events: Api<K8sEvent> = Api::namespaced(h.client.clone(), "default");
    let list = events.list(&Default::default()).await.expect("list events");
    list.items
        .iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(controller)
                && e.note.as_deref().is_some_and(|n| n.contains(text))
        })
        .count()
}

async fn create_hook_configmap(h: &Harness, name: &str, key: &str, text: &str) {
    let api: Api<ConfigMap> = h.api();
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": name},
        "data": {key: text},
    }))
    .expect("configmap");
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create the hook's ConfigMap");
}

/// Sets (or with `None` removes) `key` of ConfigMap `name`.
async fn edit_hook_configmap(h: &Harness, name: &str, key: &str, text: Option<&str>) {
    let api: Api<ConfigMap> = h.api();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"data": {key: text}})),
    )
    .await
    .expect("edit the hook's ConfigMap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_jsonnet_hook_follows_edits_and_keeps_the_last_good_version() {
    let h = Harness::new("cmref").await;
    create_hook_configmap(&h, "hooks", "sync.jsonnet", &jsonnet_hook("A")).await;
    let controller = h
        .controller(
            "cmref",
            controller_spec(json!({"jsonnet": {"configMapRef": {
                "namespace": h.ns, "name": "hooks", "key": "sync.jsonnet",
            }}})),
        )
        .await;
    h.parent("p1", json!({"name": "c1"})).await;
    h.parent("p2", json!({"name": "c2"})).await;
    wait_child(&h, "c1", "A", "").await;
    wait_child(&h, "c2", "A", "").await;
    settles(&h, "start", counts(&h), u64::MAX).await;

    // An edit reaches every parent's children, though no parent changed.
    let before = counts(&h);
    edit_hook_configmap(&h, "hooks", "sync.jsonnet", Some(&jsonnet_hook("B"))).await;
    wait_child(&h, "c1", "B", "").await;
    wait_child(&h, "c2", "B", "").await;
    settles(&h, "edit A to B", before, 7).await;

    // A broken edit is refused on the controller, naming the ConfigMap, the key, the error and
    // its line; B stays in use, for parents that change too.
    let before = counts(&h);
    edit_hook_configmap(&h, "hooks", "sync.jsonnet", Some(BROKEN_JSONNET)).await;
    let note = h
        .warning_in("default", &controller, "still using the last good version")
        .await;
    let origin = format!("ConfigMap {}/hooks key \"sync.jsonnet\"", h.ns);
    assert!(note.starts_with("spec.hooks.sync.jsonnet: "), "{note}");
    assert!(note.contains(&origin), "{note}");
    assert!(note.contains("syntax error"), "{note}");
    assert!(
        note.contains(&format!("configmap {}/hooks key sync.jsonnet:2:", h.ns)),
        "the error's line: {note}"
    );
    settles(&h, "broken edit", before, 1).await;
    h.patch_parent("p1", json!({"extra": "x"})).await;
    wait_child(&h, "c1", "B", "x").await;
    assert_eq!(
        warnings(&h, &controller, "syntax error").await,
        1,
        "the refusal is reported once"
    );

    // Fixed: C is used.
    let before = counts(&h);
    edit_hook_configmap(&h, "hooks", "sync.jsonnet", Some(&jsonnet_hook("C"))).await;
    wait_child(&h, "c1", "C", "x").await;
    wait_child(&h, "c2", "C", "").await;
    settles(&h, "fix to C", before, 7).await;

    // The key removed: refused, C kept.
    edit_hook_configmap(&h, "hooks", "sync.jsonnet", None).await;
    let note = h
        .warning_in("default", &controller, "has no key \"sync.jsonnet\"")
        .await;
    assert!(note.contains(&origin), "{note}");
    h.patch_parent("p2", json!({"extra": "y"})).await;
    wait_child(&h, "c2", "C", "y").await;

    // The ConfigMap deleted: refused, C kept; recreated with D: D is used.
    let cms: Api<ConfigMap> = h.api();
    cms.delete("hooks", &DeleteParams::default())
        .await
        .expect("delete the hook's ConfigMap");
    h.warning_in("default", &controller, "the ConfigMap was deleted")
        .await;
    h.patch_parent("p2", json!({"extra": "z"})).await;
    wait_child(&h, "c2", "C", "z").await;
    let before = counts(&h);
    create_hook_configmap(&h, "hooks", "sync.jsonnet", &jsonnet_hook("D")).await;
    wait_child(&h, "c1", "D", "x").await;
    wait_child(&h, "c2", "D", "z").await;
    settles(&h, "recreated as D", before, 7).await;
}

/// Replaces `dir/name` the way the kubelet updates a mounted ConfigMap: the file is a symlink
/// through `..data`, which is swapped atomically to a new directory.
fn swap_mounted(dir: &Path, files: &[(&str, &str)], version: u32) {
    let target = dir.join(format!("..v{version}"));
    std::fs::create_dir(&target).expect("version dir");
    for (name, text) in files {
        std::fs::write(target.join(name), text).expect("write file");
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link).expect("link");
        }
    }
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..v{version}"), &tmp).expect("new ..data");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_jsonnet_hook_follows_a_mounted_configmap_with_relative_imports() {
    let mut h = Harness::new("file").await;
    let dir = tempfile::tempdir().expect("temp dir");
    h.allow_hook_dirs(&[dir.path().to_path_buf()]);
    // The hook imports a library beside it, so a version is the library's and the hook's.
    let hook = |version: &str| {
        format!(
            "local lib = import 'lib.libsonnet';\nfunction(request) lib.sync(request, '{version}')\n"
        )
    };
    let lib = format!(
        "{{ sync(request, version):: ({})(request) }}\n",
        jsonnet_hook("' + version + '")
    );
    swap_mounted(
        dir.path(),
        &[("sync.jsonnet", &hook("A")), ("lib.libsonnet", &lib)],
        1,
    );
    let file = dir.path().join("sync.jsonnet");
    let controller = h
        .controller(
            "file",
            controller_spec(json!({"jsonnet": {"file": file.display().to_string()}})),
        )
        .await;
    h.parent("p1", json!({"name": "f1"})).await;
    wait_child(&h, "f1", "A", "").await;
    settles(&h, "start", counts(&h), u64::MAX).await;

    let before = counts(&h);
    swap_mounted(
        dir.path(),
        &[("sync.jsonnet", &hook("B")), ("lib.libsonnet", &lib)],
        2,
    );
    wait_child(&h, "f1", "B", "").await;
    settles(&h, "file edit A to B", before, 4).await;

    // A broken file: refused, naming the file and the line; B (the text read before) stays.
    let before = counts(&h);
    swap_mounted(
        dir.path(),
        &[("sync.jsonnet", BROKEN_JSONNET), ("lib.libsonnet", &lib)],
        3,
    );
    let note = h
        .warning_in("default", &controller, "still using the last good version")
        .await;
    let shown = file.display().to_string();
    assert!(note.contains(&format!("file {shown}")), "{note}");
    assert!(
        note.contains(&format!("{shown}:2:")),
        "the error's line: {note}"
    );
    settles(&h, "broken file", before, 1).await;
    h.patch_parent("p1", json!({"extra": "x"})).await;
    wait_child(&h, "f1", "B", "x").await;

    // The file removed: refused, B kept.
    std::fs::remove_file(&file).expect("remove the hook file");
    h.warning_in("default", &controller, "cannot read the file")
        .await;
    h.patch_parent("p1", json!({"extra": "y"})).await;
    wait_child(&h, "f1", "B", "y").await;

    // Fixed (written in place this time): C is used.
    let before = counts(&h);
    std::fs::write(&file, hook("C")).expect("write the hook file");
    wait_child(&h, "f1", "C", "y").await;
    settles(&h, "file fixed to C", before, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_tera_hook_follows_edits_and_refuses_templates_that_do_not_compile() {
    let h = Harness::new("tera").await;
    create_hook_configmap(&h, "tera-hooks", "sync.tera", &tera_hook("A")).await;
    let controller = h
        .controller(
            "tera",
            controller_spec(json!({"tera": {"configMapRef": {
                "namespace": h.ns, "name": "tera-hooks", "key": "sync.tera",
            }}})),
        )
        .await;
    h.parent("p1", json!({"name": "t1"})).await;
    wait_child(&h, "t1", "A", "").await;
    settles(&h, "start", counts(&h), u64::MAX).await;

    let before = counts(&h);
    edit_hook_configmap(&h, "tera-hooks", "sync.tera", Some(BROKEN_TERA)).await;
    let note = h
        .warning_in("default", &controller, "still using the last good version")
        .await;
    assert!(note.starts_with("spec.hooks.sync.tera: "), "{note}");
    assert!(
        note.contains(&format!("ConfigMap {}/tera-hooks key \"sync.tera\"", h.ns)),
        "{note}"
    );
    assert!(note.contains("5:"), "the error's line: {note}");
    settles(&h, "broken template", before, 1).await;
    h.patch_parent("p1", json!({"extra": "x"})).await;
    wait_child(&h, "t1", "A", "x").await;

    let before = counts(&h);
    edit_hook_configmap(&h, "tera-hooks", "sync.tera", Some(&tera_hook("B"))).await;
    wait_child(&h, "t1", "B", "x").await;
    settles(&h, "template fixed to B", before, 4).await;
}
