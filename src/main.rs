//! The `kubelambda` command line. Parses arguments and calls the library; nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kubelambda::cli::{self, EvalOptions};
use kubelambda::engine::children::ApplyStrategy;
use kubelambda::hooks::Limits;
use kubelambda::hooks::jsonnet::JsonnetOptions;

#[derive(Parser)]
#[command(
    name = "kubelambda",
    version,
    about = "Turn a small declarative hook into a full Kubernetes controller"
)]
struct Cli {
    /// Log level when RUST_LOG is not set (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve hook files as webhooks: sync.jsonnet → POST /sync (like kubecfg --alpha httpd).
    Httpd {
        /// Address to listen on (Go syntax: ":8080" is every interface).
        #[arg(short = 'l', long, default_value = ":8080")]
        listen_addr: String,
        /// Largest request body accepted (bytes, or with KiB/MiB/GiB).
        #[arg(long, default_value = "4MiB", value_parser = size)]
        max_body: u64,
        /// Threads serving HTTP (default: half the CPUs, at least 1; hooks run in the
        /// evaluation worker processes, not on these threads).
        #[arg(long)]
        http_threads: Option<usize>,
        #[command(flatten)]
        eval: EvalArgs,
        /// Hook files (.jsonnet or .tera).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Evaluate one hook once, offline, and print the response JSON.
    Render {
        /// The hook file (.jsonnet or .tera).
        hook: PathBuf,
        /// The request JSON: a file, or - for stdin.
        #[arg(long, value_name = "FILE|-")]
        request: PathBuf,
        #[command(flatten)]
        eval: EvalArgs,
    },
    /// Run the controller: watch CompositeControllers and run each one.
    Run {
        /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// Sync workers per controller.
        #[arg(long, default_value_t = 5)]
        workers: usize,
        /// How long discovered API resources are trusted before asking again.
        #[arg(long, default_value = "30s", value_parser = duration)]
        discovery_interval: Duration,
        /// How children are written: server-side-apply or dynamic-apply (Metacontroller's merge).
        #[arg(long, default_value = "server-side-apply", value_parser = ["server-side-apply", "dynamic-apply"])]
        apply_strategy: String,
        /// Field manager for server-side apply.
        #[arg(long, default_value = "kubelambda")]
        field_manager: String,
        /// Address of the /metrics endpoint ("0" disables it).
        #[arg(long, default_value = ":9999")]
        metrics_address: String,
        /// Address of /healthz and /readyz ("0" disables them).
        #[arg(long, default_value = ":8081")]
        health_probe_bind_address: String,
        /// Only run controllers whose labels match this selector.
        #[arg(long)]
        target_label_selector: Option<String>,
        #[command(flatten)]
        eval: EvalArgs,
    },
    /// Print the CRDs (CompositeController, DecoratorController, ControllerRevision) as YAML.
    Crds,
    /// Internal: a sandbox worker process, started by kubelambda itself.
    #[command(name = "__worker", hide = true)]
    Worker,
}

/// Flags for commands that evaluate Jsonnet or Tera hooks.
#[derive(Args)]
struct EvalArgs {
    /// Library search path for Jsonnet imports (after the hook's own directory).
    #[arg(short = 'J', long = "jpath", value_name = "DIR")]
    jpath: Vec<PathBuf>,
    /// Jsonnet external string variable NAME=VALUE (or NAME to read $NAME).
    #[arg(short = 'V', long = "ext-str", value_name = "NAME[=VALUE]")]
    ext_str: Vec<String>,
    /// Jsonnet external variable NAME=CODE.
    #[arg(long = "ext-code", value_name = "NAME[=CODE]")]
    ext_code: Vec<String>,
    /// Extra top-level string argument NAME=VALUE passed with `request`.
    #[arg(short = 'A', long = "tla-str", value_name = "NAME[=VALUE]")]
    tla_str: Vec<String>,
    /// Extra top-level argument NAME=CODE passed with `request`.
    #[arg(long = "tla-code", value_name = "NAME[=CODE]")]
    tla_code: Vec<String>,
    /// Wall-clock limit for one evaluation.
    #[arg(long, default_value = "10s", value_parser = duration)]
    deadline: Duration,
    /// Jsonnet call depth limit.
    #[arg(long, default_value_t = 500)]
    max_stack: usize,
    /// Largest response a hook may produce.
    #[arg(long, default_value = "16MiB", value_parser = size)]
    max_output: u64,
    /// Memory (address space) limit of each evaluation worker process.
    #[arg(long, default_value = "2GiB", value_parser = size)]
    max_memory: u64,
    /// Hook evaluation worker processes (default: one more than the CPUs).
    #[arg(long)]
    eval_workers: Option<usize>,
    /// Memory for reusing Jsonnet responses to identical requests while the hook's files are
    /// unchanged (0 turns it off).
    #[arg(long, default_value = "64MiB", value_parser = size)]
    response_cache: u64,
}

fn size(text: &str) -> Result<u64, String> {
    cli::parse_size(text)
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration (e.g. 500ms, 10s): {e}"))
}

impl EvalArgs {
    fn resolve(self) -> Result<EvalOptions, String> {
        let vars = |list: &[String], flag: &str| -> Result<Vec<(String, String)>, String> {
            list.iter().map(|e| cli::parse_var(e, flag)).collect()
        };
        Ok(EvalOptions {
            jsonnet: JsonnetOptions {
                jpath: self.jpath,
                ext_str: vars(&self.ext_str, "--ext-str")?,
                ext_code: vars(&self.ext_code, "--ext-code")?,
                tla_str: vars(&self.tla_str, "--tla-str")?,
                tla_code: vars(&self.tla_code, "--tla-code")?,
            },
            limits: Limits {
                deadline: self.deadline,
                max_stack: self.max_stack,
                max_output_bytes: usize::try_from(self.max_output).unwrap_or(usize::MAX),
                max_memory_bytes: self.max_memory,
            },
            workers: self.eval_workers,
            response_cache_bytes: self.response_cache,
        })
    }
}

/// Resolves the evaluation flags, then runs `job` on a Tokio runtime.
fn with_eval<F, Fut>(eval: EvalArgs, job: F) -> ExitCode
where
    F: FnOnce(EvalOptions) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    with_eval_on(eval, None, job)
}

/// Like [`with_eval`], with `threads` runtime worker threads (`None`: Tokio's default, one per
/// CPU).
fn with_eval_on<F, Fut>(eval: EvalArgs, threads: Option<usize>, job: F) -> ExitCode
where
    F: FnOnce(EvalOptions) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let eval = match eval.resolve() {
        Ok(eval) => eval,
        Err(e) => {
            eprintln!("kubelambda: {e}");
            return ExitCode::from(2);
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        runtime.worker_threads(threads.max(1));
    }
    match runtime.enable_all().build() {
        Ok(rt) => rt.block_on(job(eval)),
        Err(e) => {
            eprintln!("kubelambda: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    kubelambda::telemetry::init_logging(&cli.log_level);
    match cli.command {
        Command::Worker => match kubelambda::hooks::sandbox::worker::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kubelambda worker: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Httpd {
            listen_addr,
            max_body,
            http_threads,
            eval,
            files,
        } => with_eval_on(
            eval,
            Some(http_threads.unwrap_or_else(cli::default_http_threads)),
            |eval| async move {
                let body_limit = usize::try_from(max_body).unwrap_or(usize::MAX);
                cli::httpd(&listen_addr, &files, body_limit, &eval).await
            },
        ),
        Command::Render {
            hook,
            request,
            eval,
        } => with_eval(eval, |eval| async move {
            cli::render(&hook, &request, &eval).await
        }),
        Command::Crds => cli::crds(),
        Command::Run {
            kubeconfig,
            workers,
            discovery_interval,
            apply_strategy,
            field_manager,
            metrics_address,
            health_probe_bind_address,
            target_label_selector,
            eval,
        } => {
            let apply = if apply_strategy == "dynamic-apply" {
                ApplyStrategy::Dynamic
            } else {
                ApplyStrategy::ServerSide { field_manager }
            };
            let options = cli::RunOptions {
                kubeconfig,
                workers,
                discovery_interval,
                apply,
                metrics_address,
                health_address: health_probe_bind_address,
                target_label_selector,
            };
            with_eval(eval, |eval| async move { cli::run(options, &eval).await })
        }
    }
}
