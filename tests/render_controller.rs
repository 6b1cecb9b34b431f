//! `kubelambda render --controller`: a whole controller's answer for one parent, offline, for a
//! composite (inline Jsonnet, related objects, observed children, `--diff`), a decorator (hooks
//! read from the files a `configMapRef` names, finalizing), a webhook hook served by
//! `kubelambda httpd`, and a response the controller would refuse.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kubelambda");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

/// (exit code, stdout, stderr)
fn render(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("render")
        .args(args)
        .output()
        .expect("run render");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const PROPAGATION: &str = "apiVersion: example.com/v1
kind: ConfigMapPropagation
metadata: {name: settings, uid: u-1, generation: 4}
spec: {sourceName: settings, sourceNamespace: original, targetNamespaces: [one, two]}
";

#[test]
fn a_composite_renders_its_children_status_and_diff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let parent = write(dir.path(), "parent.yaml", PROPAGATION);
    let related = write(
        dir.path(),
        "related.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: original}\ndata: {color: green}\n",
    );
    // As `kubectl get -o yaml` prints them: a List.
    let observed = write(
        dir.path(),
        "observed.yaml",
        "apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings, namespace: one, labels: {controller-uid: u-1, configmap-propagation.example.com/from: original}}
  data: {color: blue}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings, namespace: three, labels: {controller-uid: u-1}}
  data: {color: blue}
",
    );
    let controller = root().join("examples/configmap-propagation/controller.yaml");
    let controller = controller.display().to_string();
    let base = [
        "--controller",
        &controller,
        "--parent",
        &parent,
        "--related",
        &related,
        "--observed",
        &observed,
    ];
    let (code, out, err) = render(&base);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("# CompositeController configmap-propagation: sync hook\n"),
        "{out}"
    );
    assert!(
        out.contains(r#"# status: {"actualCopies":2,"expectedCopies":2,"observedGeneration":4,"sourceFound":true}"#),
        "{out}"
    );
    let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&out)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
        .filter(|d: &serde_json::Value| !d.is_null())
        .collect();
    assert_eq!(docs.len(), 2, "{out}");
    for (doc, ns) in docs.iter().zip(["one", "two"]) {
        assert_eq!(doc["metadata"]["namespace"], ns);
        assert_eq!(doc["data"]["color"], "green");
        // generateSelector's label, as the controller adds it.
        assert_eq!(doc["metadata"]["labels"]["controller-uid"], "u-1");
    }

    let mut with_diff = base.to_vec();
    with_diff.push("--diff");
    let (code, out, err) = render(&with_diff);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("- delete ConfigMap three/settings\n"), "{out}");
    assert!(
        out.contains("~ update ConfigMap one/settings\n    /data/color: \"blue\" -> \"green\"\n"),
        "{out}"
    );
    assert!(out.contains("+ create ConfigMap two/settings\n"), "{out}");
}

#[test]
fn a_decorator_reads_its_configmap_hooks_from_files_and_finalizes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sts = "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: nginx
  namespace: web
  uid: u-s
  annotations: {service-per-pod-label: statefulset.kubernetes.io/pod-name, service-per-pod-ports: '80:8080'}
spec: {replicas: 2}
";
    let parent = write(dir.path(), "sts.yaml", sts);
    // controllers-inline.yaml names ConfigMap keys; they are read from the files of those names
    // next to it.
    let controller = root().join("examples/service-per-pod/controllers-inline.yaml");
    let controller = controller.display().to_string();
    let (code, out, err) = render(&["--controller", &controller, "--parent", &parent]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("# DecoratorController service-per-pod: sync hook\n"),
        "{out}"
    );
    assert!(out.contains("# status: unchanged\n"), "{out}");
    for i in 0..2 {
        assert!(out.contains(&format!("  name: nginx-{i}\n")), "{out}");
    }
    assert!(
        out.contains("metacontroller.k8s.io/decorator-controller: service-per-pod"),
        "{out}"
    );

    // Opting out (an annotation gone) calls finalize: no attachments, finalized once none is left.
    let opted_out = sts.replace(", service-per-pod-ports: '80:8080'", "");
    let parent = write(dir.path(), "sts-out.yaml", &opted_out);
    let svc = write(
        dir.path(),
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: nginx-0, namespace: web, annotations: {metacontroller.k8s.io/decorator-controller: service-per-pod}}\n",
    );
    let (code, out, err) = render(&[
        "--controller",
        &controller,
        "--parent",
        &parent,
        "--observed",
        &svc,
        "--diff",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("finalize hook"), "{out}");
    assert!(out.contains("# finalized: false\n"), "{out}");
    assert!(out.contains("- delete Service web/nginx-0\n"), "{out}");
}

#[test]
fn a_webhook_hook_is_called_and_a_bad_answer_is_refused_like_the_controller() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A hook that puts its child in another namespace: the controller refuses that.
    write(
        dir.path(),
        "sync.jsonnet",
        "function(request) { children: [{apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'x', namespace: 'elsewhere'}}] }",
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut httpd = Command::new(BIN)
        .current_dir(dir.path())
        .args(["httpd", "-l", &format!("127.0.0.1:{port}"), "sync.jsonnet"])
        .stderr(Stdio::null())
        .spawn()
        .expect("httpd");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "httpd did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let controller = write(
        dir.path(),
        "cc.yaml",
        &format!(
            "apiVersion: metacontroller.k8s.io/v1alpha1
kind: CompositeController
metadata: {{name: bad}}
spec:
  generateSelector: true
  parentResource: {{apiVersion: example.com/v1, resource: things}}
  childResources: [{{apiVersion: v1, resource: configmaps}}]
  hooks: {{sync: {{webhook: {{url: 'http://127.0.0.1:{port}/sync'}}}}}}
"
        ),
    );
    let parent = write(
        dir.path(),
        "parent.yaml",
        "apiVersion: example.com/v1\nkind: Thing\nmetadata: {name: p, namespace: home, uid: u}\n",
    );
    let (code, out, err) = render(&["--controller", &controller, "--parent", &parent]);
    let _ = httpd.kill();
    let _ = httpd.wait();
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("the response is refused as the controller would refuse it")
            && err.contains("children[0] (ConfigMap \"x\")")
            && err.contains("parent's namespace \"home\""),
        "{err}"
    );
}

#[test]
fn render_needs_a_hook_or_a_controller() {
    let (code, _, err) = render(&[]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = render(&["--controller", "x.yaml"]);
    assert_eq!(code, 2, "--parent is required: {err}");
    assert!(err.contains("--parent"), "{err}");
}

/// The command each example's README shows under "See it offline" works, and renders children.
#[test]
fn every_example_renders_offline_as_its_readme_shows() {
    for name in [
        "useless-controller",
        "service-per-pod",
        "configmap-propagation",
        "bluegreen",
        "indexedjob",
        "catset",
    ] {
        let readme = std::fs::read_to_string(root().join("examples").join(name).join("README.md"))
            .expect("README");
        let section = readme
            .split("## See it offline")
            .nth(1)
            .unwrap_or_else(|| panic!("{name}: no 'See it offline' section"));
        let command: String = section
            .split("```sh\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a sh block")
            .replace("\\\n", " ");
        let args: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(&args[..2], ["kubelambda", "render"], "{name}: {command}");
        let out = Command::new(BIN)
            .current_dir(root())
            .args(&args[1..])
            .output()
            .expect("run render");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {command}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("\n---\napiVersion: "),
            "{name}: no children\n{stdout}"
        );
    }
}
