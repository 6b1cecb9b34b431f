//! Evaluates Jsonnet and Tera hooks in a pool of worker processes.
//!
//! Why processes and not threads: jrsonnet cannot interrupt an evaluation, so a hook that never
//! ends would hold its thread, and its CPU, forever. A worker process can be killed when its
//! deadline passes and replaced, and its address space can be capped so a hook that builds
//! gigabytes fails alone. Each worker is single-threaded, which also suits jrsonnet's values (not
//! `Send`), and keeps its parsed hooks cached between requests.

pub mod wire;
pub mod worker;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;

use super::jsonnet::JsonnetOptions;
use super::response_cache::{CacheStats, ResponseCache};
use super::{EvalError, FileStamp, HookSource, LimitKind, Limits};
use wire::{TAG_ERR, TAG_OK, WorkerInit};

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
}

impl Worker {
    async fn spawn(config: &SandboxConfig) -> Result<Self, EvalError> {
        let mut child = Command::new(&config.program)
            .arg(WORKER_SUBCOMMAND)
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
        };
        let init = serde_json::to_vec(&WorkerInit {
            options: config.jsonnet.clone(),
            limits: config.limits.clone(),
            report_dependencies: config.response_cache_bytes > 0,
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
        let tag = self.stdout.read_u8().await?;
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

/// A pool of worker processes, started lazily and replaced when one breaks a limit.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    config: SandboxConfig,
    idle: Mutex<Vec<Worker>>,
    slots: Semaphore,
    cache: Option<ResponseCache>,
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Self {
        let workers = config.workers.max(1);
        Self {
            inner: Arc::new(Inner {
                cache: ResponseCache::new(config.response_cache_bytes),
                config,
                idle: Mutex::new(Vec::new()),
                slots: Semaphore::new(workers),
            }),
        }
    }

    /// Evaluates `source` for one JSON request and returns the response JSON text. A request
    /// identical to an earlier one is answered from the response cache while the hook's files
    /// are unchanged.
    ///
    /// The exchange with the worker runs in its own task, which owns the worker: if the caller
    /// goes away (an HTTP client disconnects), the evaluation still finishes within its deadline
    /// and the worker goes back to the pool, instead of being killed mid-request.
    pub async fn evaluate(&self, source: &HookSource, request: &[u8]) -> Result<String, EvalError> {
        let cache = self.inner.cache.as_ref();
        if let Some(response) = cache.and_then(|cache| cache.get(source, request)) {
            return Ok(response);
        }
        let header = serde_json::to_vec(source).map_err(|e| EvalError::Worker(e.to_string()))?;
        let inner = self.inner.clone();
        let body = request.to_vec();
        let answer = tokio::spawn(async move { inner.exchange(header, body).await })
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
    async fn exchange(
        self: Arc<Self>,
        header: Vec<u8>,
        request: Vec<u8>,
    ) -> Result<Answer, EvalError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| EvalError::Worker("sandbox closed".into()))?;
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut worker = match idle {
            Some(worker) => worker,
            None => Worker::spawn(&self.config).await?,
        };
        let limits = &self.config.limits;
        match tokio::time::timeout(limits.deadline, worker.exchange(&header, &request)).await {
            Ok(Ok(result)) => {
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(worker);
                }
                result
            }
            Ok(Err(io)) => Err(worker.diagnose(limits, io).await),
            Err(_) => {
                let _ = worker.child.start_kill();
                let _ = worker.child.wait().await;
                Err(EvalError::limit(
                    LimitKind::Deadline,
                    format!(
                        "the evaluation ran longer than {:?} and was stopped",
                        limits.deadline
                    ),
                ))
            }
        }
    }
}
