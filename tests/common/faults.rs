//! The workload and the four checks every fault test makes (tests/faults_*.rs): after a fault,
//! no parent has two children, no child was deleted (or replaced) because of the fault, every
//! parent's status converges to its latest spec, and the controller's writes stay within a
//! budget (a hot loop spends it at once).
//!
//! The workload: one child per parent, named `<parent>-child`, whose `data.v` copies the
//! parent's `spec.v`; the parent's status reports `v` and how many children it has.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::*;

/// The workload's sync hook, in Jsonnet.
pub const FAULT_HOOK: &str = r#"
function(request) {
  local parent = request.parent,
  local kind = std.objectFields(request.children)[0],
  children: [{
    apiVersion: std.extVar('childApiVersion'), kind: std.extVar('childKind'),
    metadata: { name: parent.metadata.name + '-child' },
    data: { v: std.toString(parent.spec.v) },
  }],
  status: { v: parent.spec.v, children: std.length(request.children[kind]) },
}
"#;

/// The hook for one child type: `FAULT_HOOK` with the child's apiVersion and kind filled in.
pub fn fault_hook(child_api_version: &str, child_kind: &str) -> String {
    FAULT_HOOK
        .replace(
            "std.extVar('childApiVersion')",
            &format!("'{child_api_version}'"),
        )
        .replace("std.extVar('childKind')", &format!("'{child_kind}'"))
}

/// A parent type and a child type, in one namespace.
#[derive(Clone)]
pub struct Workload {
    pub parents: Api<DynamicObject>,
    pub parent_ar: ApiResource,
    pub children: Api<DynamicObject>,
    pub labels: BTreeMap<String, String>,
}

/// Children by parent name: `(child name, child UID)` for every child whose controller owner
/// is that parent.
pub type Children = BTreeMap<String, Vec<(String, String)>>;

impl Workload {
    pub fn new(
        client: &Client,
        ns: &str,
        parent_ar: &ApiResource,
        child_ar: &ApiResource,
        labels: &[(&str, &str)],
    ) -> Self {
        Self {
            parents: Api::namespaced_with(client.clone(), ns, parent_ar),
            parent_ar: parent_ar.clone(),
            children: Api::namespaced_with(client.clone(), ns, child_ar),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Creates parents `<prefix>0` … `<prefix>{n-1}` with `spec.v = v`.
    pub async fn create_parents(&self, prefix: &str, n: usize, v: u64) -> Vec<String> {
        let mut names = Vec::new();
        for i in 0..n {
            let name = format!("{prefix}{i}");
            self.create_parent(&name, v).await;
            names.push(name);
        }
        names
    }

    pub async fn create_parent(&self, name: &str, v: u64) {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": self.parent_ar.api_version,
            "kind": self.parent_ar.kind,
            "metadata": {"name": name, "labels": self.labels},
            "spec": {"v": v},
        }))
        .expect("parent");
        wait_until_ok(&format!("parent {name} to be created"), || async {
            match self.parents.create(&PostParams::default(), &obj).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await;
    }

    /// Sets `spec.v` of every parent (retrying while the API server is unavailable).
    pub async fn set_v(&self, v: u64) {
        let list = wait_until_ok("listing parents", || async {
            self.parents.list(&ListParams::default()).await
        })
        .await;
        for p in list.items {
            let name = p.name_any();
            wait_until_ok(&format!("patching parent {name}"), || async {
                self.parents
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"spec": {"v": v}})),
                    )
                    .await
            })
            .await;
        }
    }

    /// Every parent's children, now.
    pub async fn children_by_parent(&self) -> Result<Children, kube::Error> {
        let parents = self.parents.list(&ListParams::default()).await?;
        let by_uid: BTreeMap<String, String> = parents
            .items
            .iter()
            .filter_map(|p| Some((p.uid()?, p.name_any())))
            .collect();
        let mut out: Children = by_uid.values().map(|n| (n.clone(), Vec::new())).collect();
        for child in self.children.list(&ListParams::default()).await?.items {
            let Some(owner) = owner_uid(&child) else {
                continue;
            };
            if let Some(parent) = by_uid.get(&owner) {
                out.entry(parent.clone())
                    .or_default()
                    .push((child.name_any(), child.uid().unwrap_or_default()));
            }
        }
        Ok(out)
    }

    /// `Ok` when every parent has exactly its one child with `data.v == v`, and a status for
    /// its latest generation saying `v` and one child; else what is not there yet.
    pub async fn check_converged(&self, v: u64) -> Result<(), String> {
        let parents = self
            .parents
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("list parents: {e}"))?;
        let children = self
            .children
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("list children: {e}"))?;
        let mut missing = Vec::new();
        for p in &parents.items {
            let name = p.name_any();
            let status = p.data.get("status").cloned().unwrap_or(Value::Null);
            let generation = p.metadata.generation.unwrap_or(0);
            if status.get("v") != Some(&json!(v))
                || status.get("children") != Some(&json!(1))
                || status.get("observedGeneration") != Some(&json!(generation))
            {
                missing.push(format!("{name}: status {status}"));
                continue;
            }
            let child = children
                .items
                .iter()
                .find(|c| c.name_any() == format!("{name}-child"));
            match child.and_then(|c| c.data.pointer("/data/v")) {
                Some(found) if found == &json!(v.to_string()) => {}
                other => missing.push(format!("{name}-child: data.v {other:?}")),
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} of {} parents not converged to v={v}, e.g. {:?}",
                missing.len(),
                parents.items.len(),
                &missing[..missing.len().min(3)]
            ))
        }
    }

    /// Waits until [`Workload::check_converged`]; returns how long it took (printed, never
    /// asserted on).
    pub async fn wait_converged(&self, v: u64, what: &str) -> Duration {
        let started = Instant::now();
        wait_until_ok(&format!("{what}: every parent converged to v={v}"), || {
            self.check_converged(v)
        })
        .await;
        let took = started.elapsed();
        eprintln!("RECOVERY {what}: converged to v={v} in {took:?}");
        took
    }

    /// The workload's state, for [`assert_intact`]; retried while the API server is away.
    pub async fn snapshot(&self) -> Children {
        wait_until_ok("listing parents and children", || self.children_by_parent()).await
    }
}

/// No parent has more than one child, and every child in `before` (of a parent that still
/// exists) is still there with the same UID: nothing was deleted or replaced because of a fault.
pub fn assert_intact(what: &str, before: &Children, after: &Children) {
    for (parent, children) in after {
        assert!(
            children.len() <= 1,
            "{what}: parent {parent} has {} children: {children:?}",
            children.len()
        );
    }
    for (parent, children) in before {
        let Some(now) = after.get(parent) else {
            continue;
        };
        for child in children {
            assert!(
                now.contains(child),
                "{what}: child {child:?} of {parent} was deleted or replaced; now {now:?}"
            );
        }
    }
}

/// Asserts that at most `budget` writes were made since `start` (reports the count).
pub fn assert_writes_within(what: &str, start: u64, now: u64, budget: u64) {
    let spent = now.saturating_sub(start);
    eprintln!("WRITES {what}: {spent} (budget {budget})");
    assert!(
        spent <= budget,
        "{what}: {spent} writes, more than the budget of {budget}: a hot loop?"
    );
}

/// The pid of a control-plane process of the environment in `dir` (`kube-apiserver`, `etcd`…).
pub fn component_pid(dir: &std::path::Path, process: &str) -> i32 {
    let file = dir.join(format!("{process}.pid"));
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{} holds no pid: {e}", file.display()))
}

/// Sends `signal` to `pid` (a control-plane process this test's environment started).
pub fn signal(pid: i32, signal: i32) {
    // SAFETY: `kill` has no memory effects.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
}

/// What [`FaultyHook`] does with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookMode {
    /// Answers as [`FAULT_HOOK`] does (children kind given at start).
    Ok,
    /// Answers correctly after `slow` (past the controller's webhook timeout).
    Slow,
    /// 500 with a text body.
    ServerError,
    /// 200 with a body that is not JSON.
    Garbage,
    /// 429 without Retry-After.
    TooManyRequests,
}

struct HookShared {
    mode: std::sync::Mutex<HookMode>,
    slow: Duration,
    calls: std::sync::atomic::AtomicUsize,
    /// Calls being answered now, by parent name.
    in_flight: std::sync::Mutex<Vec<String>>,
    child_api_version: String,
    child_kind: String,
}

/// A webhook on a fixed 127.0.0.1 port whose behaviour the test switches, and which can be taken
/// down (its port closed: connections refused) and brought back on the same port.
pub struct FaultyHook {
    pub url: String,
    addr: std::net::SocketAddr,
    shared: std::sync::Arc<HookShared>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl FaultyHook {
    pub async fn start(child_api_version: &str, child_kind: &str, slow: Duration) -> Self {
        let shared = std::sync::Arc::new(HookShared {
            mode: std::sync::Mutex::new(HookMode::Ok),
            slow,
            calls: Default::default(),
            in_flight: Default::default(),
            child_api_version: child_api_version.to_owned(),
            child_kind: child_kind.to_owned(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut hook = Self {
            url: format!("http://{addr}/sync"),
            addr,
            shared,
            server: None,
        };
        hook.serve(listener);
        hook
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        use axum::response::IntoResponse;
        let shared = self.shared.clone();
        let app = axum::Router::new().route(
            "/sync",
            axum::routing::post(move |body: axum::body::Bytes| {
                let shared = shared.clone();
                async move {
                    use std::sync::atomic::Ordering;
                    shared.calls.fetch_add(1, Ordering::SeqCst);
                    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let parent = request
                        .pointer("/parent/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown")
                        .to_owned();
                    let mode = *shared.mode.lock().unwrap_or_else(|e| e.into_inner());
                    match mode {
                        HookMode::ServerError => {
                            return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom")
                                .into_response();
                        }
                        HookMode::Garbage => return "this is { not json".into_response(),
                        HookMode::TooManyRequests => {
                            return axum::http::StatusCode::TOO_MANY_REQUESTS.into_response();
                        }
                        HookMode::Slow => {
                            shared
                                .in_flight
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(parent.clone());
                            tokio::time::sleep(shared.slow).await;
                            shared
                                .in_flight
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .retain(|p| p != &parent);
                        }
                        HookMode::Ok => {}
                    }
                    let v = request.pointer("/parent/spec/v").cloned().unwrap_or(Value::Null);
                    let children = request
                        .get("children")
                        .and_then(Value::as_object)
                        .and_then(|m| m.values().next())
                        .and_then(Value::as_object)
                        .map_or(0, |m| m.len());
                    axum::Json(json!({
                        "children": [{
                            "apiVersion": shared.child_api_version, "kind": shared.child_kind,
                            "metadata": {"name": format!("{parent}-child")},
                            "data": {"v": match &v { Value::Number(n) => n.to_string(), other => other.to_string() }},
                        }],
                        "status": {"v": v, "children": children},
                    }))
                    .into_response()
                }
            }),
        );
        // Connections are served by tasks this one owns, so that aborting it (`down`) closes
        // every kept-alive connection too, not only the port.
        self.server = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let app = app.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: http::Request<hyper::body::Incoming>| {
                            use tower::ServiceExt;
                            app.clone().oneshot(request.map(axum::body::Body::new))
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        }));
    }

    pub fn set_mode(&self, mode: HookMode) {
        *self.shared.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    pub fn calls(&self) -> usize {
        self.shared.calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Parents whose (slow) call is being answered now.
    pub fn in_flight(&self) -> Vec<String> {
        self.shared
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Closes the port: calls are refused until [`FaultyHook::up`].
    pub async fn down(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Listens on the same port again.
    pub async fn up(&mut self) {
        let listener = wait_until_ok("the hook's port to be free again", || {
            tokio::net::TcpListener::bind(self.addr)
        })
        .await;
        self.serve(listener);
    }
}
