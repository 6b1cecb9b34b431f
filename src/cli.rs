//! What the subcommands do once their arguments are parsed: build the sandbox, serve, render,
//! run. The command line's shape is in [`args`]; `main.rs` parses it and calls these.

pub mod args;
pub mod flag_values;
pub mod goflags;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::hooks::jsonnet::JsonnetOptions;
use crate::hooks::sandbox::{Sandbox, SandboxConfig, SandboxPolicy};
use crate::hooks::tera::TeraEnv;
use crate::hooks::{HookDirs, Limits};
use crate::httpd::{self, HttpdError};
use crate::render;

/// Options shared by every command that evaluates hooks.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub jsonnet: JsonnetOptions,
    pub limits: Limits,
    pub workers: Option<usize>,
    pub response_cache_bytes: u64,
    /// What Tera's `get_env` may read (`--tera-env-allow`).
    pub tera_env: TeraEnv,
}

impl EvalOptions {
    /// The sandbox for hooks the operator named (`httpd`, `render`).
    pub fn sandbox(&self) -> std::io::Result<Sandbox> {
        self.sandbox_for(HookDirs::default())
    }

    /// The sandbox for controllers, whose specs may name files inside `hook_dirs`.
    pub fn sandbox_for(&self, hook_dirs: HookDirs) -> std::io::Result<Sandbox> {
        Ok(Sandbox::with_policy(
            self.sandbox_config()?,
            self.policy(hook_dirs),
        ))
    }

    /// What hooks may read: the `--tera-env-allow` names and, for controllers, `hook_dirs`.
    pub fn policy(&self, hook_dirs: HookDirs) -> SandboxPolicy {
        SandboxPolicy {
            tera_env: self.tera_env.clone(),
            hook_dirs,
            per_tenant: None,
        }
    }

    /// The worker pool's configuration (`httpd` sizes its file-descriptor reserve by it).
    pub fn sandbox_config(&self) -> std::io::Result<SandboxConfig> {
        let mut config = SandboxConfig::for_current_exe(self.limits.clone(), self.jsonnet.clone())?;
        if let Some(workers) = self.workers {
            config.workers = workers;
        }
        config.response_cache_bytes = self.response_cache_bytes;
        Ok(config)
    }
}

/// HTTP threads for `httpd` when the user names none: half the CPUs, at least one. Hooks are
/// evaluated in worker processes (CPUs + 1 of them), so the HTTP side only parses, routes and
/// copies; fewer threads there mean fewer wake-ups and context switches. Measured on 2 CPUs with
/// the response cache answering (benches/httpd_vs_kubecfg.sh, 15 s): 1 thread gave p99 1.76 ms at
/// 33k requests/s, 2 threads p99 3.29 ms at 37k requests/s.
pub fn default_http_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// Resolves `NAME=VALUE`, or `NAME` alone from the environment (kubecfg's `--ext-str` rules).
pub fn parse_var(entry: &str, flag: &str) -> Result<(String, String), String> {
    match entry.split_once('=') {
        Some(("", _)) => Err(format!("{flag} {entry:?}: the name is empty")),
        Some((name, value)) => Ok((name.to_owned(), value.to_owned())),
        None => std::env::var(entry)
            .map(|value| (entry.to_owned(), value))
            .map_err(|_| format!("{flag} {entry}: missing environment variable {entry}")),
    }
}

/// Resolves a CLI limit like `16MiB`, `512k` or a plain byte count.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (examples: 4194304, 512KiB, 16MiB, 2GiB)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "KiB" | "KB" => 1 << 10,
        "m" | "M" | "MiB" | "MB" => 1 << 20,
        "g" | "G" | "GiB" | "GB" => 1 << 30,
        other => {
            return Err(format!(
                "{text:?}: unknown size unit {other:?} (use KiB, MiB or GiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Waits for SIGINT or SIGTERM.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    // Registered now, not on first poll: a SIGTERM that arrives between binding the port and
    // serving must shut down gracefully, not kill the process with the default action.
    #[cfg(unix)]
    let mut signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let (term, int) = (signals.0.take(), signals.1.take());
            tokio::select! {
                _ = wait(term) => {},
                _ = wait(int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}

/// `kubelambda httpd`. Startup problems exit with 2, as a usage error would.
pub async fn httpd(
    listen: &str,
    files: &[PathBuf],
    body_limit: usize,
    limits: &httpd::LimitArgs,
    eval: &EvalOptions,
) -> ExitCode {
    match run_httpd(listen, files, body_limit, limits, eval).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ HttpdError::Serve(_)) => {
            eprintln!("kubelambda httpd: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("kubelambda httpd: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run_httpd(
    listen: &str,
    files: &[PathBuf],
    body_limit: usize,
    limits: &httpd::LimitArgs,
    eval: &EvalOptions,
) -> Result<(), HttpdError> {
    let routes = httpd::Routes::build(files, &eval.jsonnet.jpath)?;
    let addr = httpd::parse_listen_addr(listen)?;
    let config = eval.sandbox_config().map_err(|e| HttpdError::Bind {
        addr: listen.to_owned(),
        source: e,
    })?;
    let open_files = httpd::limits::raise_open_file_limit();
    let limits = limits.resolve(open_files, config.workers)?;
    let sandbox = Sandbox::with_policy(config, eval.policy(HookDirs::default()));
    let shutdown = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HttpdError::Bind {
            addr: listen.to_owned(),
            source,
        })?;
    let local = listener.local_addr().map_err(HttpdError::Serve)?;
    for route in routes.list() {
        if let Some(source) = routes.get(&route) {
            tracing::info!("serving {} at POST {route}", source.display_name());
        }
    }
    tracing::info!(
        "kubelambda httpd listening on {local} ({})",
        httpd::listen_scope(&local)
    );
    let format = |d| humantime::format_duration(d).to_string();
    tracing::info!(
        "limits: --header-timeout {} --body-timeout {} --idle-timeout {} --max-connections {} \
         (open-file limit {}) --shutdown-grace {} --max-body {body_limit}",
        format(limits.header_timeout),
        format(limits.body_timeout),
        format(limits.idle_timeout),
        limits.max_connections,
        limits.open_files,
        format(limits.shutdown_grace),
    );
    let server = httpd::Server::new(routes, sandbox, body_limit, limits.body_timeout);
    httpd::serve(listener, server, &limits, shutdown).await
}

/// `kubelambda render`: prints the response on stdout, or the error on stderr and exits 1.
pub async fn render(hook: &Path, request: &Path, eval: &EvalOptions) -> ExitCode {
    let result = async {
        let body = render::read_request(request)?;
        let sandbox = eval
            .sandbox()
            .map_err(|source| render::RenderError::Request {
                from: "the sandbox".into(),
                source,
            })?;
        render::render(&sandbox, hook, &eval.jsonnet.jpath, &body).await
    }
    .await;
    match result {
        Ok(json) => {
            print!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kubelambda render: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `kubelambda render --controller`: prints the rendered answer, or the error and exit code 1.
pub async fn render_controller(args: &args::ControllerRenderArgs, eval: &EvalOptions) -> ExitCode {
    let (Some(controller), Some(parent)) = (&args.controller, &args.parent) else {
        eprintln!("kubelambda render: --controller and --parent are required together");
        return ExitCode::from(2);
    };
    let sandbox = match eval.sandbox() {
        Ok(sandbox) => sandbox,
        Err(e) => {
            eprintln!("kubelambda render: cannot start the sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    let inputs = render::controller::RenderInputs {
        controller,
        parent,
        observed: args.observed.as_deref(),
        related: args.related.as_deref(),
        namespace: args.namespace.as_deref(),
        jpath: &eval.jsonnet.jpath,
    };
    match render::controller::render_controller(&sandbox, &inputs, args.diff).await {
        Ok(rendered) => {
            print!("{}", rendered.text);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kubelambda render: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `kubelambda run` settings, parsed.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub kubeconfig: Option<PathBuf>,
    pub workers: usize,
    pub discovery_interval: std::time::Duration,
    /// Resync every parent this often (`--cache-flush-interval`); `None`: off.
    pub cache_flush_interval: Option<std::time::Duration>,
    pub apply: crate::engine::children::ApplyStrategy,
    pub metrics_address: String,
    pub health_address: String,
    pub target_label_selector: Option<String>,
    /// `--client-go-qps`/`--client-go-burst`; `None`: no client-side limit.
    pub client_rate_limit: Option<crate::client_limit::RateLimit>,
    /// Flags accepted for compatibility that change nothing, logged at startup.
    pub notices: Vec<args::Notice>,
    /// Where controller specs may point `file` and `jpath` (`--hook-dir`).
    pub hook_dirs: Vec<PathBuf>,
    /// `--leader-election`: run the engine only while holding the Lease; `None`: always.
    pub leader_election: Option<crate::leader::ElectionConfig>,
}

async fn kube_config(path: Option<&Path>) -> Result<kube::Config, String> {
    match path {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))
        }
        None => kube::Config::infer().await.map_err(|e| {
            format!("no cluster configuration (give --kubeconfig, set KUBECONFIG, or run in a cluster): {e}")
        }),
    }
}

/// Serves `/metrics` (the API, engine and Metacontroller-named metrics) on `addr`, unless it is
/// "0".
async fn serve_metrics(
    addr: &str,
    metrics: crate::telemetry::api_metrics::ApiMetrics,
) -> Result<(), String> {
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    httpd::endpoints::serve_endpoint(addr, httpd::endpoints::metrics_router(registry), "metrics")
        .await
}

/// Serves `/healthz` and `/readyz` on `addr`, unless it is "0". With leader election, `/readyz`
/// says whether this replica leads or stands by (both are ready: a standby is healthy).
async fn serve_health(
    addr: &str,
    role: Option<tokio::sync::watch::Receiver<crate::leader::Role>>,
    watches: Watches,
) -> Result<(), String> {
    let readyz = move || {
        let role = role.as_ref().map(|r| *r.borrow());
        let problems = watches
            .get()
            .map(|informers| informers.unestablished())
            .unwrap_or_default();
        async move {
            if !problems.is_empty() {
                let list: Vec<String> = problems
                    .iter()
                    .map(|(watch, why)| format!("{watch}: {why}"))
                    .collect();
                return (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: watches not established: {}\n", list.join("; ")),
                );
            }
            let text = match role {
                None => "ok\n",
                Some(crate::leader::Role::Leading) => "ok: leader\n",
                Some(crate::leader::Role::Standby) => "ok: standby\n",
                Some(crate::leader::Role::Lost) => "ok: leader election lost, exiting\n",
            };
            (axum::http::StatusCode::OK, text.to_owned())
        }
    };
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route("/readyz", axum::routing::get(readyz));
    httpd::endpoints::serve_endpoint(addr, app, "health probes").await
}

/// The running engine's informers, once it runs, for `/readyz`: a watch that is not listed or
/// keeps failing (a CRD deleted, the API server away) makes the replica not ready.
type Watches = std::sync::Arc<std::sync::OnceLock<crate::engine::informer::InformerFactory>>;

/// How `run` ended.
enum RunEnd {
    /// SIGINT or SIGTERM.
    Signal,
    /// The Lease was lost: the engine is stopped and the process must exit non-zero so that
    /// Kubernetes restarts it as a standby.
    LeadershipLost,
}

/// `kubelambda run`: the controller, until SIGINT or SIGTERM (or, with leader election, until
/// the Lease is lost).
pub async fn run(options: RunOptions, eval: &EvalOptions) -> ExitCode {
    for notice in &options.notices {
        if notice.warn {
            tracing::warn!("{}", notice.message);
        } else {
            tracing::info!("{}", notice.message);
        }
    }
    if let Some(limit) = options.client_rate_limit {
        tracing::info!(
            "client-side limit on API requests: {} per second, burst {}",
            limit.qps,
            limit.burst
        );
    }
    let result = async {
        if let Some(election) = &options.leader_election {
            election.validate().map_err(|e| e.to_string())?;
        }
        let config = kube_config(options.kubeconfig.as_deref()).await?;
        let sandbox = eval
            .sandbox_for(HookDirs::new(&options.hook_dirs))
            .map_err(|e| format!("cannot start the hook sandbox: {e}"))?;
        let engine_config = crate::engine::EngineConfig {
            workers: options.workers,
            discovery_interval: options.discovery_interval,
            cache_flush_interval: options.cache_flush_interval,
            apply: options.apply.clone(),
            target_label_selector: options.target_label_selector.clone(),
            client_rate_limit: options.client_rate_limit,
            sandbox,
        };
        let metrics = crate::telemetry::api_metrics::ApiMetrics::default();
        serve_metrics(&options.metrics_address, metrics.clone()).await?;
        let watches = Watches::default();
        let Some(election) = options.leader_election.clone() else {
            serve_health(&options.health_address, None, watches.clone()).await?;
            let engine = crate::engine::Engine::start_fenced(config, engine_config, metrics, None)
                .map_err(|e| format!("cannot create the Kubernetes client: {e}"))?;
            let _ = watches.set(engine.shared.informers.clone());
            tracing::info!("kubelambda controller running");
            shutdown_signal().await;
            drop(engine);
            return Ok(RunEnd::Signal);
        };
        let lease_client =
            crate::telemetry::api_metrics::client(config.clone(), metrics.clone(), None)
                .map_err(|e| format!("cannot create the Kubernetes client: {e}"))?;
        let fence = crate::leader::Fence::default();
        let elector =
            crate::leader::Elector::new(lease_client.clone(), election.clone(), fence.clone());
        let mut role = elector.subscribe();
        serve_health(&options.health_address, Some(role.clone()), watches.clone()).await?;
        tracing::info!(
            "leader election on Lease {}/{} as {}: standing by until it is ours",
            election.namespace,
            election.name,
            election.identity
        );
        let elector = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(elector.run()));
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        tokio::select! {
            _ = &mut shutdown => return Ok(RunEnd::Signal),
            led = role.wait_for(|r| *r != crate::leader::Role::Standby) => {
                if led.map(|r| *r).ok() != Some(crate::leader::Role::Leading) {
                    return Ok(RunEnd::LeadershipLost);
                }
            }
        }
        let engine =
            crate::engine::Engine::start_fenced(config, engine_config, metrics, Some(fence))
                .map_err(|e| format!("cannot create the Kubernetes client: {e}"))?;
        let _ = watches.set(engine.shared.informers.clone());
        tracing::info!("kubelambda controller running");
        let end = tokio::select! {
            _ = &mut shutdown => RunEnd::Signal,
            _ = role.wait_for(|r| *r == crate::leader::Role::Lost) => RunEnd::LeadershipLost,
        };
        // Stop every controller before anything else: a lost leader must not write again.
        drop(engine);
        drop(elector);
        if let RunEnd::Signal = end {
            let api = kube::Api::namespaced(lease_client, &election.namespace);
            match crate::leader::Elector::release(&api, &election).await {
                Ok(()) => tracing::info!(
                    "released the leader election Lease {}/{}",
                    election.namespace,
                    election.name
                ),
                Err(e) => tracing::warn!(
                    "cannot release the leader election Lease {}/{}: {e}",
                    election.namespace,
                    election.name
                ),
            }
        }
        Ok::<RunEnd, String>(end)
    }
    .await;
    match result {
        Ok(RunEnd::Signal) => ExitCode::SUCCESS,
        Ok(RunEnd::LeadershipLost) => {
            eprintln!("kubelambda run: leader election lost");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("kubelambda run: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `kubelambda crds`: every CRD as one YAML stream.
pub fn crds() -> ExitCode {
    match crate::api::crds_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kubelambda crds: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_units_and_name_bad_input() {
        assert_eq!(parse_size("4194304"), Ok(4 << 20));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(
            parse_size("12 parsecs"),
            Err("\"12 parsecs\": unknown size unit \"parsecs\" (use KiB, MiB or GiB)".into())
        );
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn vars_come_from_the_flag_or_the_environment() {
        assert_eq!(
            parse_var("a=b=c", "--ext-str"),
            Ok(("a".into(), "b=c".into()))
        );
        assert_eq!(
            parse_var("KUBELAMBDA_TEST_SURELY_UNSET", "--ext-str"),
            Err("--ext-str KUBELAMBDA_TEST_SURELY_UNSET: missing environment variable KUBELAMBDA_TEST_SURELY_UNSET".into())
        );
        assert_eq!(
            parse_var("=x", "--tla-str"),
            Err("--tla-str \"=x\": the name is empty".into())
        );
    }
}
