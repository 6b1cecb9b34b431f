//! Shared helpers for integration tests that run against a real control plane: etcd,
//! kube-apiserver, kube-controller-manager (its default controllers), kube-scheduler and KWOK
//! (fake Nodes where Pods become Running and Ready), started on loopback by
//! `tests/testenv/testenv` (`TESTENV_MODE=minimal`: the first three, with the namespace,
//! garbagecollector and serviceaccount controllers only).
//!
//! Use it from a test file with `mod common;` and `use common::*;`. One environment per test
//! binary: [`TestEnv::shared`] brings it up on first use (building the binaries first if the cache
//! is empty) and a watchdog started by the script stops it when the test binary exits, even when it
//! panics or is killed.
//!
//! Set `KUBELAMBDA_TESTENV_DIR=/some/dir` to use an environment already started with
//! `tests/testenv/testenv up /some/dir` instead (faster when iterating; it is left running).
//! Set `KUBELAMBDA_TEST_TIMEOUT_SECS` to change the default wait timeout (120 s: the garbage collector learns a CRD created after it started only every 30 s, and CI machines are loaded).
#![allow(dead_code, unused_imports)]

pub mod examples;
pub mod faults;
pub mod harness;
pub mod hook_server;
pub use examples::*;
pub use faults::*;
pub use harness::*;
pub use hook_server::HookServer;
pub mod workloads;
pub use workloads::*;

use std::fmt::Debug;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind, ObjectMeta};
use kube::{Client, Config};
use serde::de::DeserializeOwned;

/// How often the `wait_*` helpers poll.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Default timeout of the `wait_*` helpers: 120 s, or `KUBELAMBDA_TEST_TIMEOUT_SECS`.
pub fn default_timeout() -> Duration {
    std::env::var("KUBELAMBDA_TEST_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(120))
}

/// The control-plane script, `tests/testenv/testenv`.
pub fn testenv_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testenv/testenv")
}

/// A running control plane: its state directory and admin kubeconfig.
#[derive(Debug)]
pub struct TestEnv {
    dir: PathBuf,
    kubeconfig: PathBuf,
    /// Started by this process (stopped on drop) rather than reused from `KUBELAMBDA_TESTENV_DIR`.
    owned: bool,
}

static SHARED: OnceLock<Result<TestEnv, String>> = OnceLock::new();

impl TestEnv {
    /// The environment shared by every test of this test binary, started on first use.
    ///
    /// Blocks while it starts (a few seconds; the first run on a machine also builds the binaries,
    /// which takes minutes). Panics with the script's error if it cannot start.
    pub fn shared() -> &'static TestEnv {
        let env = SHARED.get_or_init(|| {
            if let Some(dir) = std::env::var_os("KUBELAMBDA_TESTENV_DIR") {
                return TestEnv::existing(PathBuf::from(dir));
            }
            let dir = tempfile::Builder::new()
                .prefix("kubelambda-testenv-")
                .tempdir()
                .map_err(|e| format!("cannot create a temporary directory: {e}"))?
                .keep();
            // Never dropped (a static): the watchdog (--owner-pid) stops it when this process exits.
            TestEnv::start(&dir)
        });
        match env {
            Ok(env) => env,
            Err(e) => panic!("the test control plane is not available:\n{e}"),
        }
    }

    /// Starts a new, private environment in `dir` (`testenv up DIR --owner-pid <this process>`).
    /// It is stopped when the returned value is dropped, or when this process exits.
    pub fn start(dir: &Path) -> Result<TestEnv, String> {
        let script = testenv_script();
        let mut child = Command::new(&script)
            .arg("up")
            .arg(dir)
            .arg("--owner-pid")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        // Forward the script's progress to the terminal as it comes (a cold build takes minutes)
        // and keep it for the error message.
        let mut output = String::new();
        if let Some(stderr) = child.stderr.take() {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(std::io::stderr(), "{line}");
                output.push_str(&line);
                output.push('\n');
            }
        }
        let status = child
            .wait()
            .map_err(|e| format!("waiting for {}: {e}", script.display()))?;
        if !status.success() {
            return Err(format!(
                "`{} up {}` failed ({status}):\n{output}",
                script.display(),
                dir.display()
            ));
        }
        let env = TestEnv {
            dir: dir.to_path_buf(),
            kubeconfig: dir.join("kubeconfig"),
            owned: true,
        };
        if !env.kubeconfig.is_file() {
            return Err(format!(
                "`testenv up` succeeded but wrote no {}",
                env.kubeconfig.display()
            ));
        }
        Ok(env)
    }

    /// An environment started elsewhere with `testenv up DIR`; never stopped by this process.
    pub fn existing(dir: PathBuf) -> Result<TestEnv, String> {
        let kubeconfig = dir.join("kubeconfig");
        if !kubeconfig.is_file() {
            return Err(format!(
                "{} does not exist: start the environment with `{} up {}`",
                kubeconfig.display(),
                testenv_script().display(),
                dir.display()
            ));
        }
        Ok(TestEnv {
            dir,
            kubeconfig,
            owned: false,
        })
    }

    /// Stops the environment now (`testenv down DIR`). Only for environments this process started.
    pub fn stop(&self) {
        if self.owned {
            let _ = Command::new(testenv_script())
                .arg("down")
                .arg(&self.dir)
                .stdin(Stdio::null())
                .status();
        }
    }

    /// Restarts one component (`testenv restart DIR COMPONENT`: `etcd`, `apiserver`,
    /// `controller-manager`, `scheduler` or `kwok`), keeping its data, ports, certificates and
    /// tokens, and waits until it serves again (the API server: until it accepts writes).
    pub fn restart(&self, component: &str) -> Result<(), String> {
        let script = testenv_script();
        let out = Command::new(&script)
            .arg("restart")
            .arg(&self.dir)
            .arg(component)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{} restart {} {component}` failed ({}):\n{}",
                script.display(),
                self.dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// The state directory (logs: `etcd.log`, `kube-apiserver.log`, `kube-controller-manager.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The admin kubeconfig (bearer token in `system:masters`, server CA included).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The parsed admin kubeconfig.
    pub fn kubeconfig(&self) -> Kubeconfig {
        Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.kubeconfig.display()))
    }

    /// The client configuration for the admin kubeconfig.
    pub async fn config(&self) -> Config {
        Config::from_custom_kubeconfig(self.kubeconfig(), &KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("loading {}: {e}", self.kubeconfig.display()))
    }

    /// A new admin client. Create one per test: a `kube::Client` is bound to the tokio runtime
    /// it was created on, and every `#[tokio::test]` has its own runtime.
    pub async fn client(&self) -> Client {
        Client::try_from(self.config().await)
            .expect("building a kube::Client from the test kubeconfig")
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Turns any text (e.g. a test name) into a prefix usable in `metadata.generateName`.
pub fn name_prefix(prefix: &str) -> String {
    let mut p: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let trimmed = p.trim_matches('-').len();
    if trimmed == 0 {
        p = "test".into();
    } else {
        p = p.trim_matches('-').to_string();
    }
    p.push('-');
    p
}

/// Creates a namespace with a unique name starting with `prefix` (sanitized) and returns its name.
pub async fn create_namespace(client: &Client, prefix: &str) -> String {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            generate_name: Some(name_prefix(prefix)),
            ..Default::default()
        },
        ..Default::default()
    };
    let created = api
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating a namespace with prefix {prefix:?}: {e}"));
    created
        .metadata
        .name
        .expect("the created namespace has a name")
}

/// Deletes a namespace (without waiting for it to go away); a missing namespace is fine.
pub async fn delete_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => panic!("deleting namespace {name}: {e}"),
    }
}

/// Polls `check` every [`POLL_INTERVAL`] until it returns `Some`, for at most
/// [`default_timeout()`]; panics with "timed out ... waiting for {what}" otherwise.
pub async fn wait_until<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_until_timeout(what, default_timeout(), check).await
}

/// [`wait_until`] with an explicit timeout.
pub async fn wait_until_timeout<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls `check` every [`POLL_INTERVAL`] until it returns `Ok`, for at most
/// [`default_timeout()`]; the panic message names `what` and the last `Err` seen.
pub async fn wait_until_ok<T, E, F, Fut>(what: &str, check: F) -> T
where
    E: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    wait_until_ok_timeout(what, default_timeout(), check).await
}

/// [`wait_until_ok`] with an explicit timeout.
pub async fn wait_until_ok_timeout<T, E, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    E: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(v) => return v,
            Err(e) if start.elapsed() >= timeout => {
                panic!("timed out after {timeout:?} waiting for {what}; last result: {e:?}")
            }
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

/// Waits until `api.get_opt(name)` finds nothing (the object is gone, finalizers included).
pub async fn wait_deleted<K>(api: &Api<K>, name: &str)
where
    K: Clone + DeserializeOwned + Debug,
{
    let what = format!("{} {name} to be deleted", std::any::type_name::<K>());
    wait_until_ok(&what, || async {
        match api.get_opt(name).await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("still present".to_string()),
            Err(e) => Err(format!("get failed: {e}")),
        }
    })
    .await
}

/// Creates a CustomResourceDefinition (given as JSON) and waits until it is `Established`.
/// If it already exists (e.g. another test created it), waits for that one instead.
pub async fn create_crd(client: &Client, crd: serde_json::Value) -> CustomResourceDefinition {
    let crd: CustomResourceDefinition =
        serde_json::from_value(crd).expect("the CRD JSON is a valid CustomResourceDefinition");
    let name = crd
        .metadata
        .name
        .clone()
        .expect("the CRD has metadata.name");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    match api.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating CRD {name}: {e}"),
    }
    wait_until_ok(&format!("CRD {name} to be Established"), || async {
        let crd = api
            .get(&name)
            .await
            .map_err(|e| format!("get failed: {e}"))?;
        let established = crd
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        if established {
            Ok(crd)
        } else {
            Err(format!(
                "conditions: {:?}",
                crd.status.and_then(|s| s.conditions)
            ))
        }
    })
    .await
}

/// The `ApiResource` of a CRD's storage version (for `Api::<DynamicObject>::namespaced_with`).
pub fn crd_api_resource(crd: &CustomResourceDefinition) -> ApiResource {
    let version = crd
        .spec
        .versions
        .iter()
        .find(|v| v.storage)
        .or_else(|| crd.spec.versions.first())
        .expect("the CRD has a version");
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&crd.spec.group, &version.name, &crd.spec.names.kind),
        &crd.spec.names.plural,
    )
}

/// Collects a child process's stderr (it must be piped) into a shared string as it comes, so a
/// test can read the logs of a process that is still running.
pub fn collect_stderr(
    child: &mut std::process::Child,
) -> (
    std::sync::Arc<std::sync::Mutex<String>>,
    std::thread::JoinHandle<()>,
) {
    use std::io::Read;
    let collected = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut pipe = child.stderr.take().expect("stderr piped");
    let sink = collected.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = sink.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
    (collected, reader)
}
