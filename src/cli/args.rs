//! The command line's shape (clap), in the library so that tests parse exactly what the binary
//! parses. [`parse_from`] first rewrites Metacontroller-style arguments (see [`super::goflags`]).
//!
//! `kubelambda run` takes every flag of Metacontroller's binary. Those with a meaning here act;
//! the rest are accepted, checked as Metacontroller would check them, and logged once at startup
//! as having no effect ([`RunArgs::notices`]).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use super::flag_values::{self, ZapLevel};
use super::goflags::{self, ArgvError, FlagTable};
use super::{EvalOptions, RunOptions};
use crate::client_limit::RateLimit;
use crate::engine::children::ApplyStrategy;
use crate::hooks::Limits;
use crate::hooks::jsonnet::JsonnetOptions;
use crate::telemetry::LogFormat;

/// Heading of the flags taken from Metacontroller that change nothing in kubelambda.
const NO_EFFECT: &str = "Accepted for Metacontroller compatibility, no effect";
/// Heading of controller-runtime's zap logging flags.
const ZAP: &str = "Metacontroller (zap) logging";

#[derive(Parser, Debug)]
#[command(
    name = "kubelambda",
    version,
    about = "Turn a small declarative hook into a full Kubernetes controller",
    after_help = "With no subcommand but flags (a Metacontroller container's args), kubelambda runs `run`.",
    args_override_self = true
)]
pub struct Cli {
    /// Log level when RUST_LOG is not set: error, warn, info, debug, trace, or a filter such as
    /// `info,kubelambda=debug` [default: info, or what --zap-log-level says]
    #[arg(long, global = true, env = crate::telemetry::LOG_LEVEL_ENV)]
    pub log_level: Option<String>,
    /// Log format [default: text, or what --zap-encoder says]
    #[arg(long, global = true, value_enum, env = crate::telemetry::LOG_FORMAT_ENV)]
    pub log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
        limits: crate::httpd::LimitArgs,
        #[command(flatten)]
        eval: EvalArgs,
        /// Hook files (.jsonnet or .tera), or directories: every hook file under a directory is
        /// served at its relative path, new files included (as jsonnetd served its directory).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Evaluate one hook once, offline, and print the response JSON.
    Render {
        /// The hook file (.jsonnet or .tera).
        #[arg(required_unless_present = "controller", conflicts_with = "controller")]
        hook: Option<PathBuf>,
        /// The request JSON: a file, or - for stdin.
        #[arg(
            long,
            value_name = "FILE|-",
            required_unless_present = "controller",
            conflicts_with = "controller"
        )]
        request: Option<PathBuf>,
        #[command(flatten)]
        controller: ControllerRenderArgs,
        #[command(flatten)]
        eval: EvalArgs,
    },
    /// Run the controller: watch CompositeControllers and run each one. Takes Metacontroller's
    /// flags too, with one or two dashes.
    #[command(args_override_self = true)]
    Run(Box<RunArgs>),
    /// Print the CRDs (CompositeController, DecoratorController, ControllerRevision) as YAML.
    Crds,
    /// Internal: a sandbox worker process, started by kubelambda itself.
    #[command(name = "__worker", hide = true)]
    Worker,
}

/// `kubelambda render --controller`: a whole controller's answer for one parent, offline.
#[derive(Args, Debug)]
pub struct ControllerRenderArgs {
    /// A CompositeController or DecoratorController (YAML): render what it does for --parent,
    /// its request built, its hook evaluated (inline, file, configMapRef read from the file of
    /// that key next to the controller file, or webhook URL) and its answer validated as the
    /// controller would.
    #[arg(long, value_name = "FILE", requires = "parent")]
    pub controller: Option<PathBuf>,
    /// The parent (or decorator target) object (YAML or JSON).
    #[arg(long, value_name = "FILE")]
    pub parent: Option<PathBuf>,
    /// The children the parent has now (a YAML stream or a `kind: List`).
    #[arg(long, value_name = "FILE", requires = "controller")]
    pub observed: Option<PathBuf>,
    /// The related objects the customize hook would select (a YAML stream or a `kind: List`).
    #[arg(long, value_name = "FILE", requires = "controller")]
    pub related: Option<PathBuf>,
    /// The parent's namespace when its file names none (as `kubectl apply -n`); without it such
    /// a parent counts as cluster-scoped, unless it is a built-in namespaced kind (then
    /// `default`).
    #[arg(long, short = 'n', value_name = "NAMESPACE", requires = "controller")]
    pub namespace: Option<String>,
    /// Print what would change against --observed instead of the desired children.
    #[arg(long, requires = "controller")]
    pub diff: bool,
}

/// `--apply-strategy`, with Metacontroller's value names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ApplyStrategyArg {
    /// Server-side apply, as field manager `--field-manager`.
    ServerSideApply,
    /// Metacontroller's three-way merge with its last-applied annotation.
    DynamicApply,
}

/// `kubelambda run`: kubelambda's flags and every flag of Metacontroller's binary.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<String>,
    /// Sync workers per controller.
    #[arg(long, default_value = "5", value_parser = flag_values::workers)]
    pub workers: usize,
    /// How long discovered API resources are trusted before asking again (Go duration).
    #[arg(long, default_value = "30s", value_parser = flag_values::positive_go_duration)]
    pub discovery_interval: Duration,
    /// Sync every parent of every controller again this often, changed or not (Go duration;
    /// 0 or absent: only on changes, resyncPeriodSeconds and resyncAfterSeconds).
    #[arg(long, value_name = "DURATION", value_parser = flag_values::go_duration)]
    pub cache_flush_interval: Option<Duration>,
    /// How children are written: server-side-apply or dynamic-apply (Metacontroller's merge;
    /// Metacontroller's default).
    #[arg(long, value_enum, default_value_t = ApplyStrategyArg::ServerSideApply)]
    pub apply_strategy: ApplyStrategyArg,
    /// Field manager for server-side apply (Metacontroller: --apply-strategy-ssa-field-manager,
    /// default "metacontroller").
    #[arg(
        long,
        visible_alias = "apply-strategy-ssa-field-manager",
        default_value = "kubelambda"
    )]
    pub field_manager: String,
    /// Address of the /metrics endpoint ("0" disables it).
    #[arg(long, default_value = ":9999")]
    pub metrics_address: String,
    /// Address of /healthz and /readyz ("0" disables them).
    #[arg(long, default_value = ":8081")]
    pub health_probe_bind_address: String,
    /// Only run controllers whose labels match this selector (API server syntax, e.g.
    /// `instance=a,tier in (x,y)`).
    #[arg(long, value_parser = flag_values::label_selector)]
    pub target_label_selector: Option<String>,
    /// Client-side limit on Kubernetes API requests per second, shared by all controllers; a
    /// negative rate means none. Off unless this or --client-go-burst is given: Metacontroller's
    /// default of 5 (burst 10) made 300 parents take 238 s to sync instead of 2.5 s.
    #[arg(long, value_name = "QPS", allow_negative_numbers = true, value_parser = flag_values::client_qps)]
    pub client_go_qps: Option<f64>,
    /// Requests allowed at once by the client-side limit [default with --client-go-qps: 10].
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = flag_values::client_burst)]
    pub client_go_burst: Option<u32>,

    /// Log level: debug, info, warn, error, or a verbosity N (0 info; 1-4 debug; 5 and up
    /// trace). Verbosity applies to kubelambda's own logs.
    #[arg(long, value_name = "LEVEL", help_heading = ZAP, allow_negative_numbers = true, value_parser = flag_values::zap_level)]
    pub zap_log_level: Option<ZapLevel>,
    /// Development mode: text logs (and debug level unless --zap-log-level says otherwise).
    #[arg(long, value_name = "BOOL", help_heading = ZAP, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = flag_values::go_bool)]
    pub zap_devel: Option<bool>,
    /// Log encoding: json or console (text).
    #[arg(long, value_name = "ENCODER", help_heading = ZAP, value_parser = ["json", "console"])]
    pub zap_encoder: Option<String>,
    /// Level from which zap adds stack traces.
    #[arg(long, value_name = "LEVEL", help_heading = NO_EFFECT, value_parser = ["debug", "info", "warn", "error", "dpanic", "panic", "fatal"])]
    pub zap_stacktrace_level: Option<String>,
    /// zap's time encoding.
    #[arg(long, value_name = "ENCODING", help_heading = NO_EFFECT, value_parser = ["epoch", "millis", "nano", "iso8601", "rfc3339", "rfc3339nano"])]
    pub zap_time_encoding: Option<String>,

    /// Event rate per object.
    #[arg(long, value_name = "QPS", help_heading = NO_EFFECT, allow_negative_numbers = true, value_parser = flag_values::events_qps)]
    pub events_qps: Option<f64>,
    /// Event burst per object.
    #[arg(long, value_name = "N", help_heading = NO_EFFECT, allow_negative_numbers = true, value_parser = flag_values::events_burst)]
    pub events_burst: Option<i64>,
    /// Go's pprof endpoint.
    #[arg(long, value_name = "ADDRESS", help_heading = NO_EFFECT)]
    pub pprof_address: Option<String>,
    /// Leader election: only the replica holding a coordination.k8s.io/v1 Lease runs the
    /// controllers; the others wait to take over. A leader that loses its Lease exits (status 1).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = flag_values::go_bool)]
    pub leader_election: Option<bool>,
    /// Leader election lock type (only `leases`).
    #[arg(long, value_name = "LOCK", value_parser = ["leases"])]
    pub leader_election_resource_lock: Option<String>,
    /// The Lease's namespace [default: the pod's namespace in a cluster, else `default`].
    #[arg(long, value_name = "NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// The Lease's name.
    #[arg(long, value_name = "NAME", default_value = "kubelambda")]
    pub leader_election_id: String,
    /// How long standbys wait for a Lease that is not renewed before taking it (Go duration).
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = flag_values::positive_go_duration)]
    pub leader_election_lease_duration: Duration,
    /// How long the leader keeps leading without a successful renew (Go duration).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = flag_values::positive_go_duration)]
    pub leader_election_renew_deadline: Duration,
    /// How often to try to take or renew the Lease (Go duration).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = flag_values::positive_go_duration)]
    pub leader_election_retry_period: Duration,

    /// A directory whose files controller specs may name in a hook's `file` and `jpath`
    /// (repeatable). Without one, specs may only use inline code and configMapRef.
    #[arg(long = "hook-dir", value_name = "DIR")]
    pub hook_dirs: Vec<PathBuf>,

    #[command(flatten)]
    pub eval: EvalArgs,
}

/// Flags for commands that evaluate Jsonnet or Tera hooks.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Library search path for Jsonnet imports (after the hook's own directory).
    #[arg(short = 'J', long = "jpath", value_name = "DIR")]
    pub jpath: Vec<PathBuf>,
    /// Jsonnet external string variable NAME=VALUE (or NAME to read $NAME).
    #[arg(short = 'V', long = "ext-str", value_name = "NAME[=VALUE]")]
    pub ext_str: Vec<String>,
    /// Jsonnet external variable NAME=CODE.
    #[arg(long = "ext-code", value_name = "NAME[=CODE]")]
    pub ext_code: Vec<String>,
    /// Extra top-level string argument NAME=VALUE passed with `request`.
    #[arg(short = 'A', long = "tla-str", value_name = "NAME[=VALUE]")]
    pub tla_str: Vec<String>,
    /// Extra top-level argument NAME=CODE passed with `request`.
    #[arg(long = "tla-code", value_name = "NAME[=CODE]")]
    pub tla_code: Vec<String>,
    /// Wall-clock limit for one evaluation.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub deadline: Duration,
    /// Jsonnet call depth limit.
    #[arg(long, default_value_t = 500, value_parser = positive_count)]
    pub max_stack: usize,
    /// Largest response a hook may produce.
    #[arg(long, default_value = "16MiB", value_parser = positive_size)]
    pub max_output: u64,
    /// Memory (address space) limit of each evaluation worker process.
    #[arg(long, default_value = "2GiB", value_parser = positive_size)]
    pub max_memory: u64,
    /// Hook evaluation worker processes (default: one more than the CPUs).
    #[arg(long, value_parser = positive_count)]
    pub eval_workers: Option<usize>,
    /// Memory for reusing Jsonnet responses to identical requests while the hook's files are
    /// unchanged (0 turns it off).
    #[arg(long, default_value = "64MiB", value_parser = size)]
    pub response_cache: u64,
    /// An environment variable Tera templates may read with get_env (repeatable; its value when
    /// kubelambda starts). Hooks see no other variable.
    #[arg(long = "tera-env-allow", value_name = "NAME", value_parser = env_name)]
    pub tera_env_allow: Vec<String>,
}

fn env_name(text: &str) -> Result<String, String> {
    if text.is_empty() || text.contains(['=', '\0']) {
        return Err(format!("{text:?} is not an environment variable name"));
    }
    Ok(text.to_owned())
}

fn size(text: &str) -> Result<u64, String> {
    super::parse_size(text)
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration (e.g. 500ms, 10s): {e}"))
}

/// A limit of zero could never be met: every evaluation would fail, so it is refused at startup.
fn positive_duration(text: &str) -> Result<Duration, String> {
    duration(text).and_then(|d| {
        if d.is_zero() {
            Err("must be more than 0: every evaluation would fail".into())
        } else {
            Ok(d)
        }
    })
}

fn positive_size(text: &str) -> Result<u64, String> {
    size(text).and_then(|n| {
        if n == 0 {
            Err("must be more than 0: every evaluation would fail".into())
        } else {
            Ok(n)
        }
    })
}

fn positive_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a whole number")),
    }
}

/// Why the command line was refused.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag Metacontroller removed.
    #[error("{0}")]
    Argv(#[from] ArgvError),
    /// Anything clap refuses (also `--help` and `--version`, which clap prints and exits 0 for).
    #[error("{0}")]
    Clap(#[from] clap::Error),
}

/// Parses `argv` (program name first) after rewriting Metacontroller-style arguments.
pub fn parse_from(argv: impl IntoIterator<Item = OsString>) -> Result<Cli, CliError> {
    let command = Cli::command();
    let argv = goflags::normalise(argv, &FlagTable::from_command(&command))?;
    let matches = command.try_get_matches_from(argv)?;
    Ok(Cli::from_arg_matches(&matches)?)
}

/// The logging set up before anything runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// An `EnvFilter` directive, used unless `RUST_LOG` is set.
    pub filter: String,
    pub format: LogFormat,
}

impl Cli {
    /// `--log-level` wins over `--zap-log-level`, which wins over `--zap-devel`'s debug level;
    /// `--log-format` wins over `--zap-encoder`, which wins over `--zap-devel`'s text format.
    pub fn log_settings(&self) -> LogSettings {
        let run = match &self.command {
            Command::Run(run) => Some(run),
            _ => None,
        };
        let devel = run.and_then(|r| r.zap_devel).unwrap_or(false);
        let filter = match (&self.log_level, run.and_then(|r| r.zap_log_level)) {
            (Some(level), _) => level.clone(),
            (None, Some(zap)) => zap.filter().to_owned(),
            (None, None) if devel => ZapLevel::Debug(1).filter().to_owned(),
            (None, None) => "info".to_owned(),
        };
        let format = match (self.log_format, run.and_then(|r| r.zap_encoder.as_deref())) {
            (Some(LogFormatArg::Json), _) => LogFormat::Json,
            (Some(LogFormatArg::Text), _) => LogFormat::Text,
            (None, Some("json")) => LogFormat::Json,
            (None, Some(_)) => LogFormat::Text,
            (None, None) => LogFormat::Text,
        };
        LogSettings { filter, format }
    }
}

/// A startup message about a flag that kubelambda accepts but does not act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Worth a warning rather than an info line: the flag asked for something that matters.
    pub warn: bool,
    pub message: String,
}

impl RunArgs {
    /// The settings `run` acts on. Values were checked while parsing.
    pub fn options(&self) -> RunOptions {
        let apply = match self.apply_strategy {
            ApplyStrategyArg::DynamicApply => ApplyStrategy::Dynamic,
            ApplyStrategyArg::ServerSideApply => ApplyStrategy::ServerSide {
                field_manager: self.field_manager.clone(),
            },
        };
        RunOptions {
            kubeconfig: self
                .kubeconfig
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            workers: self.workers,
            discovery_interval: self.discovery_interval,
            cache_flush_interval: self.cache_flush_interval.filter(|d| !d.is_zero()),
            apply,
            metrics_address: self.metrics_address.clone(),
            health_address: self.health_probe_bind_address.clone(),
            target_label_selector: self
                .target_label_selector
                .clone()
                .filter(|s| !s.trim().is_empty()),
            client_rate_limit: self.rate_limit(),
            notices: self.notices(),
            hook_dirs: self.hook_dirs.clone(),
            leader_election: self.election(),
        }
    }

    /// The election settings with `--leader-election`, else `None`.
    fn election(&self) -> Option<crate::leader::ElectionConfig> {
        self.leader_election
            .unwrap_or(false)
            .then(|| crate::leader::ElectionConfig {
                namespace: crate::leader::namespace(self.leader_election_namespace.as_deref()),
                name: self.leader_election_id.clone(),
                identity: crate::leader::identity(),
                lease_duration: self.leader_election_lease_duration,
                renew_deadline: self.leader_election_renew_deadline,
                retry_period: self.leader_election_retry_period,
            })
    }

    /// The client-side limit: on when either flag is given, off for a negative rate.
    fn rate_limit(&self) -> Option<RateLimit> {
        if self.client_go_qps.is_none() && self.client_go_burst.is_none() {
            return None;
        }
        let qps = self.client_go_qps.unwrap_or(RateLimit::DEFAULT_QPS);
        (qps > 0.0).then(|| RateLimit {
            qps,
            burst: self.client_go_burst.unwrap_or(RateLimit::DEFAULT_BURST),
        })
    }

    /// One message for each Metacontroller flag given that has no effect here.
    pub fn notices(&self) -> Vec<Notice> {
        fn info(flag: &str, value: impl std::fmt::Display, why: &str) -> Notice {
            Notice {
                warn: false,
                message: format!(
                    "--{flag}={value} is accepted for Metacontroller compatibility and has no effect: {why}"
                ),
            }
        }
        let mut out = Vec::new();
        if let Some(v) = self.events_qps {
            out.push(info(
                "events-qps",
                v,
                "kubelambda's event recorder folds repeated events into event series instead of rate-limiting them",
            ));
        }
        if let Some(v) = self.events_burst {
            out.push(info(
                "events-burst",
                v,
                "kubelambda's event recorder folds repeated events into event series instead of rate-limiting them",
            ));
        }
        if let Some(v) = &self.pprof_address {
            out.push(info(
                "pprof-address",
                v,
                "pprof is Go's profiler and kubelambda is not a Go program; use the /metrics endpoint or perf",
            ));
        }
        if let Some(v) = &self.zap_stacktrace_level {
            out.push(info(
                "zap-stacktrace-level",
                v,
                "kubelambda's logs carry no stack traces; errors name their cause instead",
            ));
        }
        if let Some(v) = &self.zap_time_encoding {
            out.push(info(
                "zap-time-encoding",
                v,
                "kubelambda writes timestamps in RFC 3339",
            ));
        }
        out
    }
}

impl EvalArgs {
    /// The evaluation options, with `NAME` variables read from the environment.
    pub fn resolve(self) -> Result<EvalOptions, String> {
        let vars = |list: &[String], flag: &str| -> Result<Vec<(String, String)>, String> {
            list.iter().map(|e| super::parse_var(e, flag)).collect()
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
            tera_env: self
                .tera_env_allow
                .into_iter()
                .map(|name| {
                    let value = std::env::var(&name).ok();
                    (name, value)
                })
                .collect(),
        })
    }
}
