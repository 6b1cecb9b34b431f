//! Evaluates Jsonnet and Tera hooks in a pool of worker processes.
//!
//! Why processes and not threads: jrsonnet cannot interrupt an evaluation, so a hook that never
//! ends would hold its thread, and its CPU, forever. A worker process can be killed when its
//! deadline passes and replaced, and its address space can be capped so a hook that builds
//! gigabytes fails alone. Each worker is single-threaded, which also suits jrsonnet's values (not
//! `Send`), and keeps its parsed hooks cached between requests.
//!
//! Workers start with an empty environment and confine themselves ([`confine`]). Each request
//! belongs to a tenant (a controller, an `httpd` route; see [`Sandbox::for_tenant`]); the workers
//! are shared fairly between tenants ([`fair`]), and the deadline counts from the moment the
//! request arrives, time spent waiting for a worker included.

pub mod confine;
pub mod fair;
pub mod wire;
pub mod worker;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::jsonnet::JsonnetOptions;
use super::response_cache::{CacheStats, ResponseCache};
use super::tera::TeraEnv;
use super::{EvalError, FileStamp, HookDirs, HookSource, LimitKind, Limits};
use confine::Confinement;
use fair::{FairSlots, Slot, Tenant};
use wire::{TAG_CONFINEMENT, TAG_ERR, TAG_OK, WorkerInit};

/// Default size of the response cache: thousands of typical sync requests and responses.
pub const DEFAULT_RESPONSE_CACHE_BYTES: u64 = 64 << 20;

/// The hidden subcommand that turns the binary into a worker.
pub const WORKER_SUBCOMMAND: &str = "__worker";

#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// The kubelambda binary to start workers from (usually the running one).
    pub program: PathBuf,
    /// How many hooks may be evaluated at once.
    pub workers: usize,
    pub limits: Limits,
    pub jsonnet: JsonnetOptions,
    /// Bytes of responses kept for identical requests (0: none); see [`ResponseCache`].
    pub response_cache_bytes: u64,
}

impl SandboxConfig {
    /// Workers run the binary this process was started from.
    pub fn for_current_exe(limits: Limits, jsonnet: JsonnetOptions) -> std::io::Result<Self> {
        Ok(Self {
            program: std::env::current_exe()?,
            // One more worker than CPUs: while a worker sends its answer and waits for the next
            // request, another can compute (measured: 2 CPUs, 3 workers = +26% requests/s over 2).
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()) + 1,
            limits,
            jsonnet,
            response_cache_bytes: DEFAULT_RESPONSE_CACHE_BYTES,
        })
    }
}

/// What the operator lets hooks reach beyond their own files, and how the workers are shared.
#[derive(Clone, Debug, Default)]
pub struct SandboxPolicy {
    /// The variables Tera's `get_env` may read (`--tera-env-allow`), with their values.
    pub tera_env: TeraEnv,
    /// Where controller specs may point `file` and `jpath` (`--hook-dir`).
    pub hook_dirs: HookDirs,
    /// The most evaluations one tenant may run at once; `None`: all workers but one (at least
    /// one), so a tenant whose hooks never end leaves a worker to the others.
    pub per_tenant: Option<usize>,
}

impl SandboxPolicy {
    fn per_tenant(&self, workers: usize) -> usize {
        self.per_tenant
            .unwrap_or(workers.saturating_sub(1))
            .clamp(1, workers.max(1))
    }
}

/// A worker's successful answer.
struct Answer {
    text: String,
    /// The files the response depends on, when it may be reused (see [`ResponseCache`]).
    dependencies: Option<Vec<FileStamp>>,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The confinement report, once read and until the pool takes it.
    confinement: Option<Confinement>,
}

impl Worker {
    async fn spawn(config: &SandboxConfig, tera_env: &TeraEnv) -> Result<Self, EvalError> {
        let mut child = Command::new(&config.program)
            .arg(WORKER_SUBCOMMAND)
            .env_clear()
            .envs(confine::worker_env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                EvalError::Worker(format!(
                    "cannot start {} {WORKER_SUBCOMMAND}: {e}",
                    config.program.display()
                ))
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(EvalError::Worker("worker pipes missing".into()));
        };
        let mut worker = Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            confinement: None,
        };
        let init = serde_json::to_vec(&WorkerInit {
            options: config.jsonnet.clone(),
            limits: config.limits.clone(),
            report_dependencies: config.response_cache_bytes > 0,
            tera_env: tera_env.clone(),
            report_confinement: true,
        })
        .map_err(|e| EvalError::Worker(e.to_string()))?;
        worker
            .send(&[&init])
            .await
            .map_err(|e| EvalError::Worker(format!("cannot initialise worker: {e}")))?;
        Ok(worker)
    }

    async fn send(&mut self, frames: &[&[u8]]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(frames.iter().map(|f| f.len() + 4).sum());
        for frame in frames {
            wire::write_frame(&mut buf, frame)?;
        }
        self.stdin.write_all(&buf).await?;
        self.stdin.flush().await
    }

    async fn read_frame(&mut self) -> std::io::Result<Vec<u8>> {
        let len = self.stdout.read_u32_le().await? as usize;
        if len > wire::MAX_FRAME {
            return Err(std::io::Error::other(format!(
                "worker answered with a {len}-byte frame"
            )));
        }
        let mut payload = vec![0u8; len];
        self.stdout.read_exact(&mut payload).await?;
        Ok(payload)
    }

    /// One request and its answer. An I/O error means the worker died.
    async fn exchange(
        &mut self,
        header: &[u8],
        request: &[u8],
    ) -> std::io::Result<Result<Answer, EvalError>> {
        self.send(&[header, request]).await?;
        let mut tag = self.stdout.read_u8().await?;
        if tag == TAG_CONFINEMENT {
            let report = self.read_frame().await?;
            self.confinement = Some(serde_json::from_slice(&report).unwrap_or_else(|e| {
                Confinement::unknown(format!("unreadable report from the worker: {e}"))
            }));
            tag = self.stdout.read_u8().await?;
        }
        let payload = self.read_frame().await?;
        match tag {
            TAG_OK => {
                // Unreadable dependencies only cost the reuse of this response.
                let dependencies = serde_json::from_slice(&self.read_frame().await?)
                    .ok()
                    .flatten();
                Ok(String::from_utf8(payload)
                    .map(|text| Answer { text, dependencies })
                    .map_err(|_| EvalError::Worker("response is not UTF-8".into())))
            }
            TAG_ERR => Ok(Err(serde_json::from_slice(&payload).unwrap_or_else(|e| {
                EvalError::Worker(format!("unreadable error from worker: {e}"))
            }))),
            other => Err(std::io::Error::other(format!("bad worker tag {other}"))),
        }
    }

    /// The worker, if its process is still running. One that exited while idle in the pool
    /// (killed by the OOM killer or an operator) never saw a request: it is replaced quietly
    /// rather than failing the next request as if it had died evaluating it.
    fn alive(mut self) -> Option<Self> {
        match self.child.try_wait() {
            Ok(None) => Some(self),
            Ok(Some(status)) => {
                tracing::info!("an idle hook worker had exited ({status}); starting a new one");
                None
            }
            Err(e) => {
                tracing::info!("an idle hook worker cannot be checked ({e}); starting a new one");
                None
            }
        }
    }

    /// Explains why a worker stopped answering.
    async fn diagnose(mut self, limits: &Limits, io: std::io::Error) -> EvalError {
        let status = self.child.wait().await;
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if matches!(&status, Ok(s) if s.signal() == Some(libc::SIGABRT)) {
                return EvalError::limit(
                    LimitKind::Memory,
                    format!(
                        "the evaluation needed more than {} MiB and its worker was stopped",
                        limits.max_memory_bytes >> 20
                    ),
                );
            }
        }
        match status {
            Ok(status) => EvalError::Worker(format!("worker exited ({status}) mid-request: {io}")),
            Err(e) => EvalError::Worker(format!("worker lost mid-request: {io}; {e}")),
        }
    }
}

/// A pool of worker processes, started lazily and replaced when one breaks a limit. Clones share
/// the pool; [`Sandbox::for_tenant`] gives a handle whose requests count for one tenant.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
    /// Who this handle's requests are for; `None`: each hook is its own tenant.
    tenant: Option<Tenant>,
}

struct Inner {
    config: SandboxConfig,
    policy: SandboxPolicy,
    idle: Mutex<Vec<Worker>>,
    slots: Arc<FairSlots>,
    cache: Option<ResponseCache>,
    /// What the first worker reported; later workers run the same binary on the same kernel.
    confinement: OnceLock<Confinement>,
}

impl Sandbox {
    /// A pool with the default policy: no environment for Tera, no spec hook directories.
    pub fn new(config: SandboxConfig) -> Self {
        Self::with_policy(config, SandboxPolicy::default())
    }

    pub fn with_policy(config: SandboxConfig, policy: SandboxPolicy) -> Self {
        let workers = config.workers.max(1);
        Self {
            inner: Arc::new(Inner {
                cache: ResponseCache::new(config.response_cache_bytes),
                slots: FairSlots::new(workers, policy.per_tenant(workers)),
                config,
                policy,
                idle: Mutex::new(Vec::new()),
                confinement: OnceLock::new(),
            }),
            tenant: None,
        }
    }

    /// A handle on the same pool whose requests count for `tenant` (a controller's name, an
    /// `httpd` route): a tenant gets at most its share of the workers, and waiting tenants are
    /// served in turn.
    pub fn for_tenant(&self, tenant: &str) -> Self {
        Self {
            inner: self.inner.clone(),
            tenant: Some(Arc::from(tenant)),
        }
    }

    /// Where controller specs may point `file` and `jpath`.
    pub fn hook_dirs(&self) -> &HookDirs {
        &self.inner.policy.hook_dirs
    }

    /// What the workers could give up (see [`confine`]); `None` until one has started.
    pub fn confinement(&self) -> Option<Confinement> {
        self.inner.confinement.get().cloned()
    }

    /// Evaluates `source` for one JSON request and returns the response JSON text. A request
    /// identical to an earlier one is answered from the response cache while the hook's files
    /// are unchanged.
    ///
    /// The deadline runs from this call: a request that waits for a worker has that much less
    /// time to evaluate, and one that waits past its deadline fails without being evaluated.
    /// The exchange with the worker runs in its own task, which owns the worker: if the caller
    /// goes away (an HTTP client disconnects), the evaluation still finishes within its deadline
    /// and the worker goes back to the pool, instead of being killed mid-request. A caller that
    /// goes away while waiting gives up its place in the queue.
    pub async fn evaluate(&self, source: &HookSource, request: &[u8]) -> Result<String, EvalError> {
        let arrived = Instant::now();
        let cache = self.inner.cache.as_ref();
        if let Some(response) = cache.and_then(|cache| cache.get(source, request)) {
            return Ok(response);
        }
        let header = serde_json::to_vec(source).map_err(|e| EvalError::Worker(e.to_string()))?;
        let tenant = self
            .tenant
            .clone()
            .unwrap_or_else(|| Arc::from(source.display_name()));
        let deadline = self.inner.config.limits.deadline;
        let patience = deadline.saturating_sub(arrived.elapsed());
        let slot = match tokio::time::timeout(patience, self.inner.slots.acquire(&tenant)).await {
            Ok(slot) => slot,
            Err(_) => return Err(self.inner.waited_too_long(&tenant)),
        };
        let waited = arrived.elapsed();
        let inner = self.inner.clone();
        let body = request.to_vec();
        let answer = tokio::spawn(async move { inner.exchange(slot, header, body, waited).await })
            .await
            .unwrap_or_else(|e| Err(EvalError::Worker(format!("evaluation task failed: {e}"))))?;
        if let (Some(cache), Some(dependencies)) = (cache, answer.dependencies) {
            cache.insert(source, request, &answer.text, dependencies);
        }
        Ok(answer.text)
    }

    /// Response cache hits and misses; `None` when the cache is off.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.inner.cache.as_ref().map(ResponseCache::stats)
    }

    /// The limits every evaluation runs under (`--deadline`, `--max-output`, ...).
    pub fn limits(&self) -> &Limits {
        &self.inner.config.limits
    }
}

impl Inner {
    /// The deadline error of a request that never got a worker.
    fn waited_too_long(&self, tenant: &Tenant) -> EvalError {
        let workers = self.config.workers.max(1);
        let seen = self.slots.occupancy(tenant, workers);
        EvalError::limit(
            LimitKind::Deadline,
            format!(
                "the request waited {:?} for a worker and was not evaluated (the deadline \
                 includes waiting; {tenant} held {} of {workers} workers, at most {} at once)",
                self.config.limits.deadline, seen.held, seen.per_tenant
            ),
        )
    }

    async fn exchange(
        self: Arc<Self>,
        slot: Slot,
        header: Vec<u8>,
        request: Vec<u8>,
        waited: Duration,
    ) -> Result<Answer, EvalError> {
        let limits = &self.config.limits;
        let remaining = limits.deadline.saturating_sub(waited);
        let work = async {
            let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            let mut worker = match idle.and_then(Worker::alive) {
                Some(worker) => worker,
                None => Worker::spawn(&self.config, &self.policy.tera_env).await?,
            };
            let exchanged = worker.exchange(&header, &request).await;
            if let Some(confinement) = worker.confinement.take() {
                self.record(confinement);
            }
            match exchanged {
                Ok(result) => {
                    if let Ok(mut idle) = self.idle.lock() {
                        idle.push(worker);
                    }
                    result
                }
                Err(io) => Err(worker.diagnose(limits, io).await),
            }
        };
        // On timeout the future is dropped, and with it the worker: kill_on_drop stops it.
        let result = tokio::time::timeout(remaining, work).await;
        drop(slot);
        result.unwrap_or_else(|_| {
            // A wait shorter than a millisecond is not worth a mention.
            let wait = if waited >= Duration::from_millis(1) {
                format!(" ({waited:?} of it spent waiting for a worker)")
            } else {
                String::new()
            };
            Err(EvalError::limit(
                LimitKind::Deadline,
                format!(
                    "the evaluation ran longer than {:?} and was stopped{wait}",
                    limits.deadline
                ),
            ))
        })
    }

    /// Keeps the first worker's report and logs it; later workers run the same binary on the
    /// same kernel, so one line says it for all.
    fn record(&self, confinement: Confinement) {
        if self.confinement.set(confinement.clone()).is_ok() {
            match confinement.shortfall() {
                Some(line) => tracing::warn!("{line}"),
                None => tracing::debug!(
                    "hook workers confined: empty environment, no new privileges, seccomp filter"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests;
