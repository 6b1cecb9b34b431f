//! One timed phase: in a fresh namespace, create a canary parent and wait until it converges
//! (the controller is up, its caches synced, its hook warm), then create N parents as fast as
//! `--concurrency` requests at a time allow and time until every one has converged: its status
//! says `desiredChildren: 2` and both of its ConfigMaps (`<parent>-a`, `<parent>-b`) exist. In
//! `--mode raw` this binary is the contender: for each parent it creates the two ConfigMaps and
//! writes the status itself (the physical limit: no controller, no watch latency).
//!
//! After convergence it waits until the API server has seen no new request on the counted
//! resources for `--settle-seconds` (writes a controller makes after convergence count too),
//! then reports API calls by verb (the API server's `apiserver_request_total`, before and after,
//! minus this binary's own N parent creates), CPU seconds and peak RSS of the controller's and
//! the hook server's process trees.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::BoxError;
use crate::apiserver_metrics::{self, Counts};
use crate::procfs::{self, PeakSampler};

pub const GROUP: &str = "bench.kubelambda.dev";
pub const VERSION: &str = "v1";
pub const KIND: &str = "BenchParent";
pub const PLURAL: &str = "benchparents";
const CANARY: &str = "canary";

#[derive(clap::Args)]
pub struct PhaseArgs {
    #[arg(long)]
    namespace: String,
    #[arg(long)]
    count: usize,
    /// controller: only create parents (a controller does the rest); raw: write children and
    /// status too.
    #[arg(long, value_parser = ["controller", "raw"])]
    mode: String,
    /// Requests in flight at once from this binary.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The controller's session id (its pid when started with setsid).
    #[arg(long)]
    controller_pid: Option<i64>,
    /// The hook server's session id.
    #[arg(long)]
    hook_pid: Option<i64>,
    #[arg(long, default_value_t = 180)]
    canary_timeout_seconds: u64,
    #[arg(long, default_value_t = 900)]
    timeout_seconds: u64,
    #[arg(long, default_value_t = 3)]
    settle_seconds: u64,
    /// Longest wait for the settle.
    #[arg(long, default_value_t = 60)]
    settle_max_seconds: u64,
}

#[derive(Serialize, Default)]
struct Tree {
    cpu_seconds: f64,
    peak_rss_bytes: u64,
    max_processes: u64,
}

#[derive(Serialize)]
pub struct PhaseResult {
    n: usize,
    mode: String,
    namespace: String,
    converge_seconds: f64,
    settle_seconds: f64,
    /// Requests by verb over the phase (converge + settle), this binary's parent creates removed.
    calls: BTreeMap<String, f64>,
    /// The same by "VERB resource[/subresource]".
    calls_detail: BTreeMap<String, f64>,
    /// Requests by verb counted up to convergence.
    calls_at_converge: BTreeMap<String, f64>,
    controller: Option<Tree>,
    hook: Option<Tree>,
    load_average: String,
}

fn parent_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

/// Convergence bookkeeping: per parent, bit 0 status written, bit 1 child a, bit 2 child b.
#[derive(Default)]
struct Progress {
    flags: HashMap<String, u8>,
    converged: usize,
    canary: bool,
    synced_watches: u8,
}

const DONE: u8 = 0b111;

impl Progress {
    fn set(&mut self, name: &str, bit: u8, on: bool) {
        let entry = self.flags.entry(name.to_string()).or_default();
        let was = *entry == DONE;
        if on {
            *entry |= bit
        } else {
            *entry &= !bit
        }
        let is = *entry == DONE;
        if was != is {
            if name == CANARY {
                self.canary = is;
            } else if is {
                self.converged += 1;
            } else {
                self.converged -= 1;
            }
        }
    }
}

/// Watches parents and ConfigMaps of the namespace; publishes progress on every change.
fn spawn_watches(client: &Client, ns: &str, progress: Arc<Mutex<Progress>>, tx: watch::Sender<()>) {
    let parents: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &parent_resource());
    let (p, t) = (progress.clone(), tx.clone());
    tokio::spawn(async move {
        let mut stream = watcher(parents, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
            match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    let ok = o
                        .data
                        .pointer("/status/desiredChildren")
                        .and_then(Value::as_i64)
                        == Some(2);
                    p.set(&o.name_any(), 1, ok);
                }
                Ok(watcher::Event::Delete(o)) => p.set(&o.name_any(), 1, false),
                Ok(watcher::Event::InitDone) => p.synced_watches |= 1,
                Ok(watcher::Event::Init) => {}
                Err(e) => eprintln!("convergence: parent watch: {e}"),
            }
            drop(p);
            let _ = t.send(());
        }
    });
    // Metadata only: the names are all this needs.
    let cms: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client.clone(), ns);
    tokio::spawn(async move {
        let mut stream = watcher(cms, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
            let (name, on) = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => (o.name_any(), true),
                Ok(watcher::Event::Delete(o)) => (o.name_any(), false),
                Ok(watcher::Event::InitDone) => {
                    p.synced_watches |= 2;
                    drop(p);
                    let _ = tx.send(());
                    continue;
                }
                Ok(watcher::Event::Init) => continue,
                Err(e) => {
                    eprintln!("convergence: ConfigMap watch: {e}");
                    continue;
                }
            };
            if let Some(parent) = name.strip_suffix("-a") {
                p.set(parent, 2, on);
            } else if let Some(parent) = name.strip_suffix("-b") {
                p.set(parent, 4, on);
            }
            drop(p);
            let _ = tx.send(());
        }
    });
}

/// Waits until `done` holds, or fails after `timeout` naming `what`.
async fn wait_for(
    progress: &Arc<Mutex<Progress>>,
    rx: &mut watch::Receiver<()>,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Progress) -> bool,
) -> Result<(), BoxError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        {
            let p = progress.lock().unwrap_or_else(|e| e.into_inner());
            if done(&p) {
                return Ok(());
            }
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            let p = progress.lock().unwrap_or_else(|e| e.into_inner());
            return Err(format!(
                "{what}: not done after {} s ({} parents converged, canary {})",
                timeout.as_secs(),
                p.converged,
                p.canary
            )
            .into());
        }
    }
}

fn parent_object(ns: &str, name: &str) -> Result<DynamicObject, BoxError> {
    let value = json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": KIND,
        "metadata": { "name": name, "namespace": ns },
        "spec": { "value": format!("value-of-{name}") },
    });
    Ok(serde_json::from_value(value).map_err(|e| format!("building parent {name}: {e}"))?)
}

/// What a controller writes for one parent, written directly: the raw contender.
async fn raw_children_and_status(
    client: &Client,
    ns: &str,
    parent: &DynamicObject,
) -> Result<(), BoxError> {
    let name = parent.name_any();
    let uid = parent
        .uid()
        .ok_or_else(|| format!("created parent {name} has no uid"))?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let child = |suffix: &str| -> Result<ConfigMap, BoxError> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": format!("{name}-{suffix}"),
                "labels": { "controller-uid": uid, "bench.kubelambda.dev/parent": name },
                "ownerReferences": [{
                    "apiVersion": format!("{GROUP}/{VERSION}"), "kind": KIND, "name": name,
                    "uid": uid, "controller": true, "blockOwnerDeletion": true,
                }],
            },
            "data": { "parent": name, "value": format!("value-of-{name}") },
        }))?)
    };
    let (a, b) = (child("a")?, child("b")?);
    let pp = PostParams::default();
    let (ra, rb) = futures::join!(cms.create(&pp, &a), cms.create(&pp, &b));
    ra.map_err(|e| format!("creating {name}-a: {e}"))?;
    rb.map_err(|e| format!("creating {name}-b: {e}"))?;
    let parents: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &parent_resource());
    parents
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"desiredChildren": 2}})),
        )
        .await
        .map_err(|e| format!("writing status of {name}: {e}"))?;
    Ok(())
}

fn by_verb(counts: &Counts) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for ((verb, _), v) in counts {
        *out.entry(verb.clone()).or_default() += v;
    }
    out
}

pub async fn run(client: &Client, args: &PhaseArgs) -> Result<PhaseResult, BoxError> {
    let ns = args.namespace.as_str();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .map_err(|e| format!("creating namespace {ns}: {e}"))?;

    let progress = Arc::new(Mutex::new(Progress::default()));
    let (tx, mut rx) = watch::channel(());
    spawn_watches(client, ns, progress.clone(), tx);
    wait_for(
        &progress,
        &mut rx,
        Duration::from_secs(60),
        "initial lists",
        |p| p.synced_watches == 3,
    )
    .await?;

    let parents: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &parent_resource());
    let raw = args.mode == "raw";
    let pp = PostParams::default();

    // Canary: proves the contender is running and warm before anything is timed.
    let canary = parents
        .create(&pp, &parent_object(ns, CANARY)?)
        .await
        .map_err(|e| format!("creating the canary parent: {e}"))?;
    if raw {
        raw_children_and_status(client, ns, &canary).await?;
    }
    wait_for(
        &progress,
        &mut rx,
        Duration::from_secs(args.canary_timeout_seconds),
        "canary",
        |p| p.canary,
    )
    .await?;

    let load_average = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let before = apiserver_metrics::scrape(client).await?;
    let cpu_before = (
        args.controller_pid.map(procfs::sample),
        args.hook_pid.map(procfs::sample),
    );
    let samplers = (
        args.controller_pid.map(PeakSampler::start),
        args.hook_pid.map(PeakSampler::start),
    );

    let t0 = Instant::now();
    let n = args.count;
    // Raw mode: each parent's children and status are written by a task of their own, at most
    // `concurrency` at a time besides the parent creates, as a controller writes while parents
    // are still being created (chaining them into the create slots made the raw client the
    // slowest contender, bound by three round trips per slot).
    let writers = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let raw_tasks = Arc::new(Mutex::new(Vec::new()));
    let load = futures::stream::iter(0..n)
        .map(|i| {
            let (client, parents, pp) = (client.clone(), parents.clone(), pp.clone());
            let (writers, raw_tasks) = (writers.clone(), raw_tasks.clone());
            async move {
                let name = format!("p-{i:05}");
                let created = parents
                    .create(&pp, &parent_object(ns, &name)?)
                    .await
                    .map_err(|e| format!("creating parent {name}: {e}"))?;
                if raw {
                    let ns = ns.to_string();
                    let task = tokio::spawn(async move {
                        let _permit = writers
                            .acquire_owned()
                            .await
                            .map_err(|e| format!("writer slots: {e}"))?;
                        raw_children_and_status(&client, &ns, &created).await
                    });
                    raw_tasks
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(task);
                }
                Ok::<(), BoxError>(())
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .try_collect::<Vec<()>>();
    let timeout = Duration::from_secs(args.timeout_seconds);
    let converge = wait_for(&progress, &mut rx, timeout, "convergence", |p| {
        p.converged == n
    });
    let (loaded, converged) = futures::join!(load, converge);
    loaded?;
    let tasks = std::mem::take(&mut *raw_tasks.lock().unwrap_or_else(|e| e.into_inner()));
    for task in tasks {
        task.await
            .map_err(|e| format!("a raw writer task: {e}"))??;
    }
    converged?;
    let converge_seconds = t0.elapsed().as_secs_f64();
    let at_converge = apiserver_metrics::scrape(client).await?;

    // Settle: until the counted requests stop for settle_seconds (or settle_max_seconds pass).
    let settle_start = Instant::now();
    let mut last = apiserver_metrics::total(&at_converge);
    let mut quiet_since = Instant::now();
    let mut after = at_converge.clone();
    while settle_start.elapsed() < Duration::from_secs(args.settle_max_seconds) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        after = apiserver_metrics::scrape(client).await?;
        let total = apiserver_metrics::total(&after);
        if (total - last).abs() > 0.5 {
            last = total;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_secs(args.settle_seconds) {
            break;
        }
    }
    let settle_seconds = settle_start.elapsed().as_secs_f64();

    let tree =
        |pid: Option<i64>, before: Option<procfs::TreeSample>, sampler: Option<PeakSampler>| {
            let (pid, before, sampler) = (pid?, before?, sampler?);
            let now = procfs::sample(pid);
            let (peak, procs) = sampler.finish();
            Some(Tree {
                cpu_seconds: now.cpu_seconds - before.cpu_seconds,
                peak_rss_bytes: peak.max(now.rss_bytes),
                max_processes: procs,
            })
        };
    let controller = tree(args.controller_pid, cpu_before.0, samplers.0);
    let hook = tree(args.hook_pid, cpu_before.1, samplers.1);

    let mut calls = apiserver_metrics::diff(&before, &after);
    let mut calls_converge = apiserver_metrics::diff(&before, &at_converge);
    for c in [&mut calls, &mut calls_converge] {
        let key = ("POST".to_string(), PLURAL.to_string());
        if let Some(v) = c.get_mut(&key) {
            *v -= n as f64;
            if v.abs() < 0.5 {
                c.remove(&key);
            }
        }
    }
    Ok(PhaseResult {
        n,
        mode: args.mode.clone(),
        namespace: ns.to_string(),
        converge_seconds,
        settle_seconds,
        calls: by_verb(&calls),
        calls_detail: calls
            .iter()
            .map(|((v, r), n)| (format!("{v} {r}"), *n))
            .collect(),
        calls_at_converge: by_verb(&calls_converge),
        controller,
        hook,
        load_average,
    })
}
