//! Metacontroller's command line works unchanged with `kubelambda`: a Deployment that swaps only
//! its image keeps its `args`. Parses every flag of Metacontroller's binary in each form Go's
//! `flag` package takes, checks the refused values' messages, and runs the built binary with
//! Metacontroller's production arguments (no subcommand) against the real test control plane.

mod common;

use std::ffi::OsString;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kubelambda::cli::args::{self, Cli, CliError, Command as Sub, LogSettings, RunArgs};
use kubelambda::cli::flag_values::ZapLevel;
use kubelambda::client_limit::RateLimit;
use kubelambda::engine::children::ApplyStrategy;
use kubelambda::telemetry::LogFormat;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_kubelambda");

// ---------------------------------------------------------------------------------------------
// Parsing

fn parse(args: &[&str]) -> Result<Cli, CliError> {
    args::parse_from(
        std::iter::once("kubelambda")
            .chain(args.iter().copied())
            .map(OsString::from),
    )
}

fn parse_run(args: &[&str]) -> Box<RunArgs> {
    match parse(args)
        .unwrap_or_else(|e| panic!("{args:?} should parse:\n{e}"))
        .command
    {
        Sub::Run(run) => run,
        other => panic!("{args:?} should mean `run`, not {other:?}"),
    }
}

fn log_settings_of(args: &[&str]) -> LogSettings {
    parse(args)
        .unwrap_or_else(|e| panic!("{args:?} should parse:\n{e}"))
        .log_settings()
}

fn parse_error(args: &[&str]) -> String {
    match parse(args) {
        Ok(_) => panic!("{args:?} should be refused"),
        Err(e) => e.to_string(),
    }
}

/// Every flag of Metacontroller's binary (`pkg/cmd/metacontroller/main.go`, controller-runtime's
/// zap flags and `--kubeconfig`), with a value that is not its default. Booleans have `None`.
const METACONTROLLER_FLAGS: &[(&str, Option<&str>)] = &[
    ("discovery-interval", Some("1m30s")),
    ("cache-flush-interval", Some("10m")),
    ("metrics-address", Some(":9998")),
    ("client-go-qps", Some("150")),
    ("client-go-burst", Some("300")),
    ("workers", Some("50")),
    ("events-qps", Some("0.0033")),
    ("events-burst", Some("25")),
    ("pprof-address", Some(":6060")),
    ("leader-election", None),
    ("leader-election-resource-lock", Some("leases")),
    ("leader-election-namespace", Some("metacontroller")),
    ("leader-election-id", Some("metacontroller")),
    ("health-probe-bind-address", Some(":8082")),
    ("target-label-selector", Some("instance in (a,b),!legacy")),
    ("apply-strategy", Some("server-side-apply")),
    ("apply-strategy-ssa-field-manager", Some("metacontroller")),
    ("kubeconfig", Some("/etc/kube/config")),
    ("zap-log-level", Some("5")),
    ("zap-devel", None),
    ("zap-encoder", Some("json")),
    ("zap-stacktrace-level", Some("error")),
    ("zap-time-encoding", Some("iso8601")),
];

/// The flags in one of Go's forms: `--f=v`, `--f v`, `-f=v` or `-f v` (booleans: `--f`, `-f`).
fn metacontroller_args(dashes: &str, equals: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (flag, value) in METACONTROLLER_FLAGS {
        match value {
            None => out.push(format!("{dashes}{flag}")),
            Some(v) if equals => out.push(format!("{dashes}{flag}={v}")),
            Some(v) => {
                out.push(format!("{dashes}{flag}"));
                out.push((*v).to_owned());
            }
        }
    }
    out
}

fn assert_all_flags_applied(run: &RunArgs, form: &str) {
    let options = run.options();
    assert_eq!(
        options.discovery_interval,
        Duration::from_secs(90),
        "{form}"
    );
    assert_eq!(
        options.cache_flush_interval,
        Some(Duration::from_secs(600)),
        "{form}"
    );
    assert_eq!(options.metrics_address, ":9998", "{form}");
    assert_eq!(
        options.client_rate_limit,
        Some(RateLimit {
            qps: 150.0,
            burst: 300
        }),
        "{form}"
    );
    assert_eq!(options.workers, 50, "{form}");
    assert_eq!(options.health_address, ":8082", "{form}");
    assert_eq!(
        options.target_label_selector.as_deref(),
        Some("instance in (a,b),!legacy"),
        "{form}"
    );
    assert_eq!(
        options.apply,
        ApplyStrategy::ServerSide {
            field_manager: "metacontroller".into()
        },
        "{form}"
    );
    assert_eq!(
        options.kubeconfig.as_deref(),
        Some(std::path::Path::new("/etc/kube/config")),
        "{form}"
    );
    assert_eq!(run.zap_log_level, Some(ZapLevel::Debug(5)), "{form}");
    assert_eq!(run.zap_devel, Some(true), "{form}");
    assert_eq!(run.leader_election, Some(true), "{form}");
    let election = options
        .leader_election
        .as_ref()
        .expect("--leader-election acts");
    assert_eq!(
        (election.namespace.as_str(), election.name.as_str()),
        ("metacontroller", "metacontroller"),
        "{form}"
    );
    // One notice for each flag that has no effect, and none for the others.
    let flagged: Vec<String> = options
        .notices
        .iter()
        .map(|n| n.message.split('=').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        flagged,
        [
            "--events-qps",
            "--events-burst",
            "--pprof-address",
            "--zap-stacktrace-level",
            "--zap-time-encoding",
        ],
        "{form}"
    );
}

#[test]
fn every_metacontroller_flag_is_accepted_in_each_go_form_without_a_subcommand() {
    for (dashes, equals) in [("--", true), ("--", false), ("-", true), ("-", false)] {
        let args = metacontroller_args(dashes, equals);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let form = format!("{dashes}flag{}", if equals { "=value" } else { " value" });
        let run = parse_run(&args);
        assert_all_flags_applied(&run, &form);
        // The same after an explicit `run`.
        let explicit: Vec<&str> = std::iter::once("run").chain(args.iter().copied()).collect();
        let run = parse_run(&explicit);
        assert_all_flags_applied(&run, &format!("run {form}"));
    }
}

#[test]
fn metacontroller_manifests_arguments_parse() {
    // manifests/production (StatefulSet args), and the Helm chart's default commandArgs.
    let run = parse_run(&["--zap-log-level=4", "--discovery-interval=20s"]);
    assert_eq!(run.options().discovery_interval, Duration::from_secs(20));
    assert_eq!(
        run.options().client_rate_limit,
        None,
        "no limit unless asked"
    );
    assert!(run.options().notices.is_empty());
    assert_eq!(
        log_settings_of(&["--zap-log-level=4", "--discovery-interval=20s"]),
        LogSettings {
            filter: "info,kubelambda=debug".into(),
            format: LogFormat::Text
        }
    );
    let run = parse_run(&[
        "--zap-log-level=4",
        "--discovery-interval=20s",
        "--cache-flush-interval=30m",
        "--health-probe-bind-address=:8081",
    ]);
    assert_eq!(
        run.options().cache_flush_interval,
        Some(Duration::from_secs(1800))
    );
    // manifests/dev-ssa.
    let run = parse_run(&[
        "--zap-devel",
        "--zap-log-level=5",
        "--discovery-interval=5s",
        "--apply-strategy=server-side-apply",
    ]);
    assert_eq!(run.options().discovery_interval, Duration::from_secs(5));
    // The Helm chart's CI values with every tuning flag.
    let run = parse_run(&[
        "--zap-log-level=4",
        "--zap-devel=false",
        "--zap-encoder=json",
        "--zap-stacktrace-level=error",
        "--discovery-interval=1m",
        "--cache-flush-interval=10m",
        "--metrics-address=:9999",
        "--client-go-qps=150",
        "--client-go-burst=300",
        "--workers=50",
        "--events-qps=0.0033",
        "--events-burst=25",
        "--pprof-address=:6060",
    ]);
    assert_eq!(run.zap_devel, Some(false));
    assert_eq!(run.options().workers, 50);
    // Leader election values, and the Go bool's `=value` form.
    let run = parse_run(&["--leader-election"]);
    assert_eq!(run.leader_election, Some(true));
    let election = run.options().leader_election.expect("on");
    assert_eq!(election.name, "kubelambda");
    assert_eq!(
        (
            election.lease_duration,
            election.renew_deadline,
            election.retry_period
        ),
        (
            Duration::from_secs(15),
            Duration::from_secs(10),
            Duration::from_secs(2)
        )
    );
    assert!(run.options().notices.is_empty(), "leader election acts");
    let run = parse_run(&["-leader-election=F"]);
    assert_eq!(run.leader_election, Some(false));
    assert!(run.options().leader_election.is_none());
}

#[test]
fn kubelambda_defaults_stay_when_metacontroller_flags_are_absent() {
    let run = parse_run(&["run"]);
    let options = run.options();
    assert_eq!(
        options.apply,
        ApplyStrategy::ServerSide {
            field_manager: "kubelambda".into()
        }
    );
    assert_eq!(options.workers, 5);
    assert_eq!(options.discovery_interval, Duration::from_secs(30));
    assert_eq!(options.cache_flush_interval, None);
    assert_eq!(options.client_rate_limit, None);
    assert_eq!(options.metrics_address, ":9999");
    assert_eq!(options.health_address, ":8081");
    assert_eq!(options.kubeconfig, None);
    assert_eq!(options.target_label_selector, None);
    let run = parse_run(&["--apply-strategy=dynamic-apply"]);
    assert_eq!(run.options().apply, ApplyStrategy::Dynamic);
    // Metacontroller's empty defaults mean "not set".
    let run = parse_run(&[
        "--target-label-selector=",
        "--kubeconfig=",
        "--cache-flush-interval=0",
    ]);
    let options = run.options();
    assert_eq!(options.target_label_selector, None);
    assert_eq!(options.kubeconfig, None);
    assert_eq!(options.cache_flush_interval, None);
}

#[test]
fn the_rate_limit_is_on_when_either_flag_is_given() {
    let limit = |args: &[&str]| parse_run(args).options().client_rate_limit;
    assert_eq!(limit(&["--workers=1"]), None);
    assert_eq!(
        limit(&["--client-go-qps=20"]),
        Some(RateLimit {
            qps: 20.0,
            burst: 10
        })
    );
    assert_eq!(
        limit(&["--client-go-burst=30"]),
        Some(RateLimit {
            qps: 5.0,
            burst: 30
        })
    );
    // client-go: a negative rate is no limit; a zero burst is the default.
    assert_eq!(limit(&["--client-go-qps=-1", "--client-go-burst=30"]), None);
    assert_eq!(
        limit(&["--client-go-qps", "2.5", "--client-go-burst", "0"]),
        Some(RateLimit {
            qps: 2.5,
            burst: 10
        })
    );
}

#[test]
fn go_repeats_a_flag_and_the_last_one_wins() {
    let run = parse_run(&["--workers=2", "-workers", "7", "--field-manager=a"]);
    assert_eq!(run.options().workers, 7);
    let run = parse_run(&["--field-manager=a", "--apply-strategy-ssa-field-manager=b"]);
    assert_eq!(
        run.options().apply,
        ApplyStrategy::ServerSide {
            field_manager: "b".into()
        }
    );
}

#[test]
fn log_settings_follow_the_zap_flags_unless_kubelambdas_own_are_given() {
    let settings = |args: &[&str]| log_settings_of(args);
    let text = |filter: &str| LogSettings {
        filter: filter.into(),
        format: LogFormat::Text,
    };
    let json = |filter: &str| LogSettings {
        filter: filter.into(),
        format: LogFormat::Json,
    };
    assert_eq!(settings(&["run"]), text("info"));
    assert_eq!(settings(&["-zap-log-level=error"]), text("error"));
    assert_eq!(settings(&["--zap-log-level", "warn"]), text("warn"));
    assert_eq!(settings(&["--zap-log-level=0"]), text("info"));
    assert_eq!(
        settings(&["--zap-log-level=6"]),
        text("info,kubelambda=trace")
    );
    assert_eq!(settings(&["--zap-devel"]), text("info,kubelambda=debug"));
    assert_eq!(settings(&["--zap-encoder=json"]), json("info"));
    assert_eq!(settings(&["--zap-encoder", "console"]), text("info"));
    assert_eq!(settings(&["--log-format=json"]), json("info"));
    assert_eq!(
        settings(&["--zap-encoder=json", "--log-format", "text"]),
        text("info")
    );
    assert_eq!(
        settings(&["--zap-log-level=5", "--log-level=warn"]),
        text("warn")
    );
    assert_eq!(settings(&["--log-format", "json", "crds"]), json("info"));
}

#[test]
fn values_that_cannot_work_are_refused_naming_the_flag() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--workers", "0"],
            &["--workers", "at least 1 worker per controller"],
        ),
        (&["-workers=-3"], &["--workers", "at least 1 worker"]),
        (
            &["--client-go-qps", "0"],
            &["--client-go-qps", "0 requests per second cannot work"],
        ),
        (
            &["--client-go-qps=fast"],
            &["--client-go-qps", "not a finite number"],
        ),
        (
            &["--client-go-burst=-1"],
            &["--client-go-burst", "at least 1"],
        ),
        (
            &["--target-label-selector", "app in (a,b"],
            &[
                "--target-label-selector",
                "not a label selector",
                "expected `,` or `)`",
            ],
        ),
        (
            &["--target-label-selector=Bad_Prefix/x=y"],
            &["--target-label-selector", "DNS subdomain"],
        ),
        (
            &["--discovery-interval=20"],
            &["--discovery-interval", "not a duration", "missing unit"],
        ),
        (
            &["--discovery-interval=0"],
            &["--discovery-interval", "must be greater than 0"],
        ),
        (
            &["--cache-flush-interval=10 minutes"],
            &["--cache-flush-interval", "not a duration"],
        ),
        (
            &["--apply-strategy=merge"],
            &[
                "--apply-strategy",
                "possible values: server-side-apply, dynamic-apply",
            ],
        ),
        (
            &["--zap-log-level=loud"],
            &["--zap-log-level", "not a log level"],
        ),
        (
            &["--zap-log-level=-2"],
            &["--zap-log-level", "not a log level"],
        ),
        (&["--zap-encoder=xml"], &["--zap-encoder", "json, console"]),
        (&["--zap-devel=yes"], &["--zap-devel", "not a boolean"]),
        (&["--zap-time-encoding=unix"], &["--zap-time-encoding"]),
        (
            &["--events-qps=often"],
            &["--events-qps", "not a finite number"],
        ),
        (
            &["--events-burst=1.5"],
            &["--events-burst", "not an integer"],
        ),
        (
            &["--leader-election=maybe"],
            &["--leader-election", "not a boolean"],
        ),
        (
            &["--leader-election-resource-lock=configmaps"],
            &["--leader-election-resource-lock", "leases"],
        ),
        (
            &["--leader-election-retry-period=0s"],
            &["--leader-election-retry-period", "greater than 0"],
        ),
        (&["--log-format=yaml"], &["--log-format", "text, json"]),
        (
            &["-v=4"],
            &[
                "-v: this klog flag was removed from Metacontroller in v2.0",
                "--zap-log-level",
            ],
        ),
        (
            &["--logtostderr"],
            &["--logtostderr: this klog flag was removed"],
        ),
        (&["-vmodule=x=2"], &["-vmodule: this klog flag was removed"]),
        (
            &["--debug-addr=:9999"],
            &["--debug-addr", "use --metrics-address"],
        ),
        (
            &["-client-config-path", "/kc"],
            &["-client-config-path", "use --kubeconfig"],
        ),
        (&["-no-such-flag"], &["--no-such-flag"]),
        (&["--deadline", "0"], &["--deadline", "must be more than 0"]),
        (&["--deadline=10"], &["--deadline", "not a duration"]),
        (
            &["--max-output", "0"],
            &["--max-output", "must be more than 0"],
        ),
        (
            &["--max-memory=0MiB"],
            &["--max-memory", "must be more than 0"],
        ),
        (&["--max-stack", "0"], &["--max-stack", "at least 1"]),
        (&["--eval-workers=0"], &["--eval-workers", "at least 1"]),
        (
            &["--eval-workers=many"],
            &["--eval-workers", "not a whole number"],
        ),
    ];
    for (args, expected) in cases {
        let message = parse_error(args);
        for text in *expected {
            assert!(
                message.contains(text),
                "{args:?}: expected {text:?} in:\n{message}"
            );
        }
    }
}

#[test]
fn subcommands_help_and_version_keep_their_meaning() {
    assert!(matches!(parse(&["crds"]).map(|c| c.command), Ok(Sub::Crds)));
    assert!(matches!(
        parse(&["--log-level", "debug", "crds"]).map(|c| c.command),
        Ok(Sub::Crds)
    ));
    let help = parse_error(&["--help"]);
    assert!(
        help.contains("Usage: kubelambda [OPTIONS] <COMMAND>"),
        "{help}"
    );
    let help = parse_error(&["-help"]);
    assert!(
        help.contains("Usage: kubelambda [OPTIONS] <COMMAND>"),
        "{help}"
    );
    let run_help = parse_error(&["--workers=3", "--help"]);
    assert!(run_help.contains("--client-go-qps"), "{run_help}");
    assert!(parse_error(&["--version"]).starts_with("kubelambda "));
}

/// The binary exits 2 with the message, as for any usage error.
#[test]
fn the_binary_refuses_bad_arguments_with_exit_code_2() {
    for (args, expected) in [
        (&["-v=4"][..], "this klog flag was removed"),
        (&["--workers", "0"][..], "invalid value '0' for '--workers"),
        (
            &["--zap-log-level=4", "--target-label-selector=a in"][..],
            "--target-label-selector",
        ),
    ] {
        let out = Command::new(BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .expect("run kubelambda");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// The binary against the control plane

/// A `kubelambda` process with its stderr collected.
struct Process {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    fn start(args: &[String]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kubelambda");
        let (stderr, reader) = collect_stderr(&mut child);
        Self {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until `/healthz` answers, failing early if the process exits.
    async fn wait_healthy(&mut self, health: &str) {
        let url = format!("http://{health}/healthz");
        let deadline = Instant::now() + default_timeout();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "kubelambda exited with {status} before serving /healthz:\n{}",
                    self.stderr()
                );
            }
            if let Ok(response) = reqwest::get(&url).await
                && response.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no /healthz at {url}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// SIGTERM, then the exit status and everything it logged.
    async fn terminate(mut self) -> (ExitStatus, String) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: `kill` has no memory effects; the pid is our own child, not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + default_timeout();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "kubelambda did not exit after SIGTERM:\n{}",
                self.stderr()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (status, self.stderr())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on loopback (bound, then released for the process to take).
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    listener.local_addr().expect("local address").to_string()
}

fn parent_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "dropinparents.test.kubelambda.io"},
        "spec": {
            "group": "test.kubelambda.io",
            "scope": "Namespaced",
            "names": {"kind": "DropinParent", "plural": "dropinparents", "singular": "dropinparent"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    })
}

fn parent_ar() -> ApiResource {
    ApiResource {
        group: "test.kubelambda.io".into(),
        version: "v1".into(),
        api_version: "test.kubelambda.io/v1".into(),
        kind: "DropinParent".into(),
        plural: "dropinparents".into(),
    }
}

/// Installs kubelambda's CRDs (CompositeController, …) and the parent type.
async fn install_crds(client: &kube::Client) {
    for crd in kubelambda::api::crds() {
        create_crd(client, serde_json::to_value(crd).expect("crd json")).await;
    }
    create_crd(client, parent_crd()).await;
}

/// One ConfigMap per parent, named after it.
const HOOK: &str = r#"
function(request) {
  children: [{
    apiVersion: 'v1', kind: 'ConfigMap',
    metadata: { name: request.parent.metadata.name + '-child' },
    data: { from: 'kubelambda' },
  }],
}
"#;

/// Metacontroller's production StatefulSet args, unchanged, plus what a test needs: the control
/// plane's kubeconfig (in a cluster: the pod's service account) and loopback ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_manifest_args_without_a_subcommand_run_a_composite_controller() {
    let env = TestEnv::shared();
    let client = env.client().await;
    install_crds(&client).await;
    let ns = create_namespace(&client, "dropin").await;

    let (metrics, health) = (free_address(), free_address());
    let args: Vec<String> = [
        "--zap-log-level=4",
        "--discovery-interval=20s",
        "--kubeconfig",
        &env.kubeconfig_path().display().to_string(),
        &format!("-metrics-address={metrics}"),
        &format!("-health-probe-bind-address={health}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut process = Process::start(&args);
    process.wait_healthy(&health).await;

    let cc: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1",
        "kind": "CompositeController",
        "metadata": {"name": "dropin"},
        "spec": {
            "parentResource": {"apiVersion": "test.kubelambda.io/v1", "resource": "dropinparents"},
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
            "hooks": {"sync": {"jsonnet": {"source": HOOK}}},
        },
    }))
    .expect("cc");
    let ccs: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource {
            group: "metacontroller.k8s.io".into(),
            version: "v1alpha1".into(),
            api_version: "metacontroller.k8s.io/v1alpha1".into(),
            kind: "CompositeController".into(),
            plural: "compositecontrollers".into(),
        },
    );
    ccs.create(&PostParams::default(), &cc)
        .await
        .expect("create CompositeController");
    let parent: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.kubelambda.io/v1",
        "kind": "DropinParent",
        "metadata": {"name": "p1"},
        "spec": {},
    }))
    .expect("parent");
    Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &parent_ar())
        .create(&PostParams::default(), &parent)
        .await
        .expect("create parent");

    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let deadline = Instant::now() + default_timeout();
    let child = loop {
        if let Ok(Some(child)) = configmaps.get_opt("p1-child").await {
            break child;
        }
        assert!(
            Instant::now() < deadline,
            "no child ConfigMap p1-child; kubelambda logged:\n{}",
            process.stderr()
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    assert_eq!(
        child.data.and_then(|d| d.get("from").cloned()).as_deref(),
        Some("kubelambda")
    );
    let metrics_text = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    assert!(
        metrics_text.contains("kubelambda_api_requests_total{verb=\"create\"}"),
        "{metrics_text}"
    );

    let (status, logs) = process.terminate().await;
    assert!(status.success(), "exit status {status}:\n{logs}");
    assert!(
        logs.contains("started CompositeController dropin"),
        "{logs}"
    );
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "no colour codes when stderr is not a terminal:\n{logs}"
    );
    assert!(
        !logs.contains("has no effect"),
        "the production args have only flags that act:\n{logs}"
    );
    ccs.delete("dropin", &Default::default())
        .await
        .expect("delete CompositeController");
    delete_namespace(&client, &ns).await;
}

/// `--log-format json`: every line on stderr is one JSON object; the accepted-without-effect
/// flags are each logged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_writes_one_object_per_line() {
    let env = TestEnv::shared();
    let health = free_address();
    let args: Vec<String> = [
        "--log-format",
        "json",
        // Matches no controller, so this process leaves the other test's alone.
        "--target-label-selector=kubelambda-test=nothing-matches",
        "--kubeconfig",
        &env.kubeconfig_path().display().to_string(),
        "--metrics-address=0",
        "--health-probe-bind-address",
        &health,
        "--events-qps=0.0033",
        "-pprof-address=:6060",
        "--client-go-qps=50",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut process = Process::start(&args);
    process.wait_healthy(&health).await;
    let (status, logs) = process.terminate().await;
    assert!(status.success(), "exit status {status}:\n{logs}");

    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut messages = Vec::new();
    for line in &lines {
        let object: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line:?}\n{logs}"));
        assert!(object.is_object(), "{line}");
        assert!(object["level"].is_string(), "{line}");
        assert!(object["timestamp"].is_string(), "{line}");
        messages.push((
            object["level"].as_str().unwrap_or_default().to_owned(),
            object["message"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    let count = |prefix: &str| {
        messages
            .iter()
            .filter(|(_, m)| m.starts_with(prefix))
            .count()
    };
    assert_eq!(count("--events-qps=0.0033 is accepted"), 1, "{logs}");
    assert_eq!(count("--pprof-address=:6060 is accepted"), 1, "{logs}");
    assert_eq!(
        count("client-side limit on API requests: 50 per second, burst 10"),
        1,
        "{logs}"
    );
    assert_eq!(count("kubelambda controller running"), 1, "{logs}");
}

/// `std.trace` runs in a hook worker process, which inherits the log format: its line is JSON too.
#[test]
fn hook_workers_log_in_the_same_json_format() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("sync.jsonnet"),
        "function(request) std.trace('traced by the hook', {children: []})\n",
    )
    .expect("write hook");
    std::fs::write(dir.path().join("request.json"), r#"{"parent": {}}"#).expect("write request");
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "--log-format=json",
            "render",
            "sync.jsonnet",
            "--request",
            "request.json",
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("run kubelambda render");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let message = lines[0]["message"].as_str().unwrap_or_default();
    assert!(message.ends_with("traced by the hook"), "{stderr}");
}

/// The limit sits in the client's stack: a request beyond the burst is held before it is sent
/// (the client's own request counter does not see it), while an unlimited client goes ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_side_limit_holds_requests_before_they_are_sent() {
    use kubelambda::telemetry::api_metrics::{self, ApiMetrics};
    let env = TestEnv::shared();
    let metrics = ApiMetrics::default();
    // One request, then one every 1000 s.
    let limited = api_metrics::client(
        env.config().await,
        metrics.clone(),
        Some(RateLimit {
            qps: 0.001,
            burst: 1,
        }),
    )
    .expect("limited client");
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(limited);
    namespaces.get("default").await.expect("first request");
    let before = metrics_count(&metrics);

    let unlimited: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(env.client().await);
    tokio::select! {
        biased;
        _ = unlimited.get("default") => {}
        _ = namespaces.get("default") => panic!("the second request should wait for a token"),
    }
    assert_eq!(
        metrics_count(&metrics),
        before,
        "the held request was not sent"
    );
}

fn metrics_count(metrics: &kubelambda::telemetry::api_metrics::ApiMetrics) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    text.lines()
        .filter(|l| l.starts_with("kubelambda_api_requests_total"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `run`'s metrics and health endpoints are served with httpd's connection limits: connections
/// past the cap get 503 instead of piling up, and serving resumes once they go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_endpoints_have_a_connection_cap() {
    let env = TestEnv::shared();
    let (metrics, health) = (free_address(), free_address());
    let args: Vec<String> = [
        "run",
        "--kubeconfig",
        &env.kubeconfig_path().display().to_string(),
        &format!("--metrics-address={metrics}"),
        &format!("--health-probe-bind-address={health}"),
        "--target-label-selector=kubelambda-test=endpoint-limits",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut process = Process::start(&args);
    process.wait_healthy(&health).await;
    let page = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    // (Families without samples print nothing; tests/metrics.rs checks the engine's after a
    // workload.)
    assert!(page.contains("kubelambda_api_requests_total"), "{page}");

    // Sixteen connections that send nothing hold every slot.
    let idle: Vec<std::net::TcpStream> = (0..16)
        .map(|_| std::net::TcpStream::connect(&metrics).expect("connect"))
        .collect();
    let mut extra = std::net::TcpStream::connect(&metrics).expect("connect");
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    use std::io::{Read, Write};
    let _ = extra.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n");
    let mut answer = String::new();
    let _ = extra.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    drop(idle);
    let deadline = Instant::now() + default_timeout();
    loop {
        if let Ok(r) = reqwest::get(format!("http://{metrics}/metrics")).await
            && r.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "metrics did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = process.child.kill();
}

/// `/readyz` says not ready while a watch the controller needs is not established (its parent
/// CRD deleted), naming the watch, and ready again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_a_watch_that_is_not_established() {
    let env = TestEnv::shared();
    let client = env.client().await;
    install_crds(&client).await;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let label = format!("readyz{}x{nanos}", std::process::id());
    let group = format!("{label}.test.kubelambda.io");
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("readyzparents.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": "ReadyzParent", "plural": "readyzparents"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "subresources": {"status": {}},
                          "schema": {"openAPIV3Schema": {"type": "object",
                              "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    });
    create_crd(&client, crd.clone()).await;
    let health = free_address();
    let args: Vec<String> = [
        "run",
        "--kubeconfig",
        &env.kubeconfig_path().display().to_string(),
        "--metrics-address=0",
        &format!("--health-probe-bind-address={health}"),
        &format!("--target-label-selector=kubelambda-test={label}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut process = Process::start(&args);
    process.wait_healthy(&health).await;
    let cc: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1",
        "kind": "CompositeController",
        "metadata": {"name": label, "labels": {"kubelambda-test": label}},
        "spec": {
            "parentResource": {"apiVersion": format!("{group}/v1"), "resource": "readyzparents"},
            "generateSelector": true,
            "hooks": {"sync": {"jsonnet": {"source": "function(request) {}"}}},
        },
    }))
    .expect("cc");
    let ccs: Api<DynamicObject> = Api::all_with(client.clone(), &cc_ar());
    ccs.create(&PostParams::default(), &cc)
        .await
        .expect("create cc");
    let readyz = |want: u16, text: &'static str| {
        let url = format!("http://{health}/readyz");
        async move {
            wait_until(&format!("/readyz {want} {text:?}"), || async {
                let r = reqwest::get(&url).await.ok()?;
                let status = r.status().as_u16();
                let body = r.text().await.ok()?;
                (status == want && body.contains(text)).then_some(body)
            })
            .await
        }
    };
    // Ready once the controller runs and its parent watch has listed.
    readyz(200, "ok").await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.delete(&format!("readyzparents.{group}"), &Default::default())
        .await
        .expect("delete crd");
    let body = readyz(503, "readyzparents").await;
    assert!(
        body.starts_with("not ready: watches not established"),
        "{body}"
    );
    create_crd(&client, crd).await;
    readyz(200, "ok").await;
    ccs.delete(&label, &Default::default())
        .await
        .expect("delete cc");
    let _ = process.child.kill();
}
