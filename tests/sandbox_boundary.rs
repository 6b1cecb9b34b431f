//! The sandbox boundary end to end: hooks cannot read outside their import roots (through
//! `kubelambda render`, `kubelambda httpd`, the in-process sandbox and a controller on the real
//! control plane), Tera sees no environment it was not given, workers start with an empty
//! environment and confined, and one tenant's endless hooks do not starve another's.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kubelambda::cli::args::{self, Command as Sub};
use kubelambda::hooks::jsonnet::JsonnetOptions;
use kubelambda::hooks::sandbox::confine::PASSED_ENV;
use kubelambda::hooks::sandbox::{Sandbox, SandboxConfig};
use kubelambda::hooks::{EvalError, HookSource, LimitKind, Limits};
use serde_json::json;

/// A hook tree: `hooks/` (served, rendered), `outside/secret.txt` (must stay unread), and
/// `hooks/link.txt`, a symlink to the secret.
struct Tree {
    dir: tempfile::TempDir,
}

const SECRET: &str = "the-secret-content";

/// Each escape: hook file name, its code, and what the error must say (the path and the rule).
const ESCAPES: &[(&str, &str, &[&str])] = &[
    (
        "absolute.jsonnet",
        "function(request) { x: importstr '/etc/hostname' }",
        &[
            "import \"/etc/hostname\"",
            "/etc/hostname is outside the hook's import roots",
        ],
    ),
    (
        "dotdot.jsonnet",
        "function(request) { x: importstr '../outside/secret.txt' }",
        &[
            "import \"../outside/secret.txt\"",
            "outside/secret.txt is outside the hook's import roots",
        ],
    ),
    (
        "environ.jsonnet",
        "function(request) { x: importstr '/proc/self/environ' }",
        &[
            "import \"/proc/self/environ\"",
            "is under /proc, which hooks may never read",
        ],
    ),
    (
        "symlink.jsonnet",
        "function(request) { x: importstr 'link.txt' }",
        &[
            "import \"link.txt\"",
            "link.txt is a symlink to",
            "outside the hook's import roots",
        ],
    ),
];

impl Tree {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = Self { dir };
        std::fs::create_dir(tree.path("hooks")).expect("mkdir");
        std::fs::create_dir(tree.path("outside")).expect("mkdir");
        std::fs::write(tree.path("outside/secret.txt"), SECRET).expect("write");
        std::os::unix::fs::symlink(tree.path("outside/secret.txt"), tree.path("hooks/link.txt"))
            .expect("symlink");
        for (file, code, _) in ESCAPES {
            std::fs::write(tree.path("hooks").join(file), code).expect("write hook");
        }
        std::fs::write(tree.path("request.json"), "{}").expect("write");
        tree
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

fn assert_refused(what: &str, text: &str, wanted: &[&str]) {
    for fragment in wanted {
        assert!(
            text.contains(fragment),
            "{what}: expected {fragment:?} in:\n{text}"
        );
    }
    assert!(!text.contains(SECRET), "{what} leaked the secret:\n{text}");
}

fn render(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .current_dir(dir)
        .arg("render")
        .args(args)
        .output()
        .expect("run render")
}

#[test]
fn render_refuses_every_escape_naming_the_path_and_the_rule() {
    let tree = Tree::new();
    for (file, _, wanted) in ESCAPES {
        let hook = format!("hooks/{file}");
        let out = render(tree.dir.path(), &[&hook, "--request", "request.json"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {stderr}");
        assert!(out.stdout.is_empty(), "{file}: nothing on stdout");
        assert_refused(file, &stderr, wanted);
    }
}

#[test]
fn render_tera_get_env_is_refused_unless_allowed() {
    let tree = Tree::new();
    std::fs::write(
        tree.path("hooks/env.tera"),
        "home: {{ get_env(name=\"KUBELAMBDA_TEST_VAR\") }}\n",
    )
    .expect("write");
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .current_dir(tree.dir.path())
            .env("KUBELAMBDA_TEST_VAR", "visible")
            .arg("render")
            .args(extra)
            .args(["hooks/env.tera", "--request", "request.json"])
            .output()
            .expect("run render")
    };
    let refused = run(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("get_env(name=\"KUBELAMBDA_TEST_VAR\"): KUBELAMBDA_TEST_VAR is not an allowed environment variable; the operator can allow it with --tera-env-allow KUBELAMBDA_TEST_VAR"),
        "{stderr}"
    );
    let allowed = run(&["--tera-env-allow", "KUBELAMBDA_TEST_VAR"]);
    assert_eq!(
        allowed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    let out: serde_json::Value = serde_json::from_slice(&allowed.stdout).expect("json");
    assert_eq!(out, json!({"home": "visible"}));
}

/// A running `kubelambda httpd`, killed on drop.
struct Httpd {
    child: Child,
    port: u16,
}

impl Httpd {
    fn start(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(BIN)
            .current_dir(dir)
            .envs(env.iter().copied())
            .arg("httpd")
            .args(["-l", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start httpd");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "httpd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    async fn post(&self, route: &str, body: &str) -> (u16, String) {
        let response = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}{route}", self.port))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// The worker processes (the server's children).
    fn workers(&self) -> Vec<u32> {
        let mut out = Vec::new();
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id())).expect("tasks");
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            out.extend(
                children
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        out
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn httpd_refuses_every_escape_naming_the_path_and_the_rule() {
    let tree = Tree::new();
    let files: Vec<&str> = ESCAPES.iter().map(|(file, _, _)| *file).collect();
    let server = Httpd::start(&tree.path("hooks"), &[], &files);
    for (file, _, wanted) in ESCAPES {
        let route = format!("/{}", file.trim_end_matches(".jsonnet"));
        let (status, body) = server.post(&route, "{}").await;
        assert_eq!(status, 500, "{route}: {body}");
        assert_refused(&route, &body, wanted);
    }
}

#[tokio::test]
async fn workers_start_with_an_empty_environment_and_confined() {
    let tree = Tree::new();
    std::fs::write(
        tree.path("hooks/env.tera"),
        "allowed: {{ get_env(name=\"KUBELAMBDA_ALLOWED\") }}\n",
    )
    .expect("write");
    std::fs::write(
        tree.path("hooks/ok.jsonnet"),
        "function(request) { ok: true }",
    )
    .expect("write");
    let server = Httpd::start(
        &tree.path("hooks"),
        &[
            ("KUBELAMBDA_PARENT_SECRET", "hunter2"),
            ("KUBELAMBDA_ALLOWED", "passed-on"),
        ],
        &[
            "--eval-workers",
            "1",
            "--tera-env-allow",
            "KUBELAMBDA_ALLOWED",
            "ok.jsonnet",
            "env.tera",
        ],
    );
    let (status, body) = server.post("/ok", "{}").await;
    assert_eq!(status, 200, "{body}");
    // The allowed variable reaches the template through the pool, not the worker's environment.
    let (status, body) = server.post("/env", "{}").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("passed-on"), "{body}");

    let workers = server.workers();
    assert_eq!(workers.len(), 1, "one worker: {workers:?}");
    let pid = workers[0];
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("worker environ");
    let names: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let text = String::from_utf8_lossy(entry);
            text.split('=').next().unwrap_or_default().to_owned()
        })
        .collect();
    for name in &names {
        assert!(
            PASSED_ENV.contains(&name.as_str()),
            "the worker inherited {name} (all: {names:?})"
        );
    }
    assert!(
        !String::from_utf8_lossy(&environ).contains("hunter2"),
        "the parent's secret reached the worker"
    );
    // The test process has PATH and HOME; the worker must not.
    assert!(
        !names.iter().any(|n| n == "PATH" || n == "HOME"),
        "{names:?}"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_default()
    };
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    assert_eq!(
        field("Seccomp:"),
        "2",
        "a seccomp filter is installed: {status}"
    );
}

fn sandbox(workers: usize, deadline: Duration) -> Sandbox {
    Sandbox::new(SandboxConfig {
        program: BIN.into(),
        workers,
        limits: Limits {
            deadline,
            ..Limits::default()
        },
        jsonnet: JsonnetOptions::default(),
        response_cache_bytes: 0,
    })
}

#[tokio::test]
async fn inline_hooks_in_the_sandbox_refuse_every_escape() {
    let tree = Tree::new();
    let pool = sandbox(1, Duration::from_secs(10)).for_tenant("cc-escape");
    for (file, code, wanted) in ESCAPES {
        // An inline hook has no directory: relative paths are tried in its jpath (here the
        // hooks dir), so `link.txt` is the same symlink.
        let source = HookSource::JsonnetInline {
            name: format!("cc-escape spec.hooks.sync.jsonnet ({file})"),
            code: code.to_string(),
            jpath: vec![tree.path("hooks")],
        };
        match pool.evaluate(&source, b"{}").await {
            Err(EvalError::Hook(text)) => assert_refused(file, &text, wanted),
            other => panic!("{file}: {other:?}"),
        }
    }
    let confinement = pool.confinement().expect("a worker started");
    assert!(confinement.is_complete(), "{confinement:?}");
}

/// What the bad tenant's requests came to.
#[derive(Default)]
struct BadOutcome {
    deadline_errors: usize,
    waited_unevaluated: usize,
    other: Vec<String>,
    latencies: Vec<Duration>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_endless_hooks_do_not_starve_another() {
    let deadline = Duration::from_secs(2);
    let pool = sandbox(3, deadline);
    let bad = pool.for_tenant("controller-bad");
    let good = pool.for_tenant("controller-good");
    let endless = HookSource::JsonnetFile {
        path: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hooks/endless.jsonnet"),
        jpath: vec![],
    };
    let quick = HookSource::JsonnetInline {
        name: "good".into(),
        code: "function(request) { n: request.n }".into(),
        jpath: vec![],
    };

    // Six endless requests at all times, as six parents of one controller would send.
    let stop = Arc::new(AtomicBool::new(false));
    let outcome = Arc::new(std::sync::Mutex::new(BadOutcome::default()));
    let mut loops = Vec::new();
    for _ in 0..6 {
        let (bad, endless, stop, outcome) =
            (bad.clone(), endless.clone(), stop.clone(), outcome.clone());
        loops.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let result = bad.evaluate(&endless, b"{}").await;
                let mut outcome = outcome.lock().expect("outcome");
                outcome.latencies.push(started.elapsed());
                match result {
                    Err(EvalError::Limit {
                        limit: LimitKind::Deadline,
                        detail,
                    }) => {
                        outcome.deadline_errors += 1;
                        if detail.contains("for a worker and was not evaluated") {
                            outcome.waited_unevaluated += 1;
                        }
                    }
                    other => outcome.other.push(format!("{other:?}")),
                }
            }
        }));
    }
    // Let the bad requests take their workers first.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The good tenant keeps sending until it has made 20 requests and the bad tenant's requests
    // have hit their deadline at least 6 times meanwhile (three rounds of its two workers).
    let mut good_latencies = Vec::new();
    let bad_before = outcome.lock().expect("outcome").deadline_errors;
    let mut n = 0u64;
    while n < 20 || outcome.lock().expect("outcome").deadline_errors < bad_before + 6 {
        let started = Instant::now();
        let body = json!({ "n": n }).to_string();
        let result = good.evaluate(&quick, body.as_bytes()).await;
        good_latencies.push(started.elapsed());
        let text = result.unwrap_or_else(|e| panic!("good request {n} failed: {e}"));
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v, json!({ "n": n }));
        n += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.expect("bad loop");
    }

    let outcome = outcome.lock().expect("outcome");
    assert!(
        outcome.other.is_empty(),
        "bad requests: {:?}",
        outcome.other
    );
    assert!(outcome.deadline_errors >= 6);
    good_latencies.sort();
    let median = good_latencies[good_latencies.len() / 2];
    let max = good_latencies[good_latencies.len() - 1];
    let bad_max = outcome.latencies.iter().max().copied().unwrap_or_default();
    eprintln!(
        "fairness: {} good requests, all answered: median {median:?}, max {max:?}; \
         {} bad requests, all stopped at the {deadline:?} deadline (max {bad_max:?}), \
         {} of them without a worker",
        good_latencies.len(),
        outcome.deadline_errors,
        outcome.waited_unevaluated
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_counts_the_time_spent_waiting_for_a_worker() {
    // One worker, four endless requests at once: each waits for the one before it, so the
    // later ones reach their deadline while waiting or soon after starting, never 2-4 deadlines
    // later as when waiting was free.
    let deadline = Duration::from_secs(1);
    let pool = sandbox(1, deadline).for_tenant("waiting");
    let endless = HookSource::JsonnetFile {
        path: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hooks/endless.jsonnet"),
        jpath: vec![],
    };
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (pool, endless) = (pool.clone(), endless.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let result = pool.evaluate(&endless, b"{}").await;
                (started.elapsed(), result)
            })
        })
        .collect();
    let mut details = Vec::new();
    for task in tasks {
        let (took, result) = task.await.expect("task");
        match result {
            Err(EvalError::Limit {
                limit: LimitKind::Deadline,
                detail,
            }) => details.push((took, detail)),
            other => panic!("expected a deadline error, got {other:?}"),
        }
    }
    eprintln!("waiting: {details:#?}");
    // The first got the worker at once; the three others each waited a whole deadline for it
    // and say so, whether they never got it or got it with no time left.
    let waited = details
        .iter()
        .filter(|(_, d)| d.contains("for a worker"))
        .count();
    assert!(waited >= 3, "requests naming their wait: {details:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_whose_hook_imports_etc_hostname_gets_a_warning_and_no_child() {
    let h = Harness::new("boundary").await;
    let hook = r#"
function(request) {
  children: [{
    apiVersion: 'v1', kind: 'ConfigMap',
    metadata: { name: 'leak' },
    data: { hostname: importstr '/etc/hostname' },
  }],
}
"#;
    h.controller(
        "boundary",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
            "hooks": {"sync": {"jsonnet": {"source": hook}}},
        }),
    )
    .await;
    h.parent("p1", json!({})).await;
    let note = h
        .warning(
            "p1",
            "import \"/etc/hostname\": /etc/hostname is outside the hook's import roots (hook dir: none (inline hook)",
        )
        .await;
    assert!(note.starts_with("Sync error: "), "{note}");
    let cms: kube::Api<ConfigMap> = h.api();
    assert!(
        cms.get_opt("leak").await.expect("get").is_none(),
        "no child was created"
    );

    // A spec cannot point a hook at a file (or a jpath) outside the operator's --hook-dir; the
    // harness's sandbox names none.
    let name = h
        .controller(
            "boundary-file",
            json!({
                "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
                "hooks": {"sync": {"jsonnet": {"file": "/etc/hostname"}}},
            }),
        )
        .await;
    let note = h
        .warning_in(
            "default",
            &name,
            "spec.hooks.sync.jsonnet.file: /etc/hostname is outside the directories hook files may come from",
        )
        .await;
    assert!(note.contains("--hook-dir"), "{note}");
}

/// A hook read from a ConfigMap has no directory: it may import only its jpath and the bundled
/// library, like an inline hook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_hook_cannot_escape_either() {
    let h = Harness::new("boundary-cm").await;
    let hook = "function(request) { children: [{ apiVersion: 'v1', kind: 'ConfigMap', \
                metadata: { name: 'leak' }, data: { environ: importstr '../../../proc/self/environ', \
                hostname: importstr '/etc/hostname' } }] }";
    let hooks: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "hooks"},
        "data": {"sync.jsonnet": hook},
    }))
    .expect("config map");
    h.api::<ConfigMap>()
        .create(&Default::default(), &hooks)
        .await
        .expect("create the hook ConfigMap");
    h.controller(
        "boundary-cm",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
            "hooks": {"sync": {"jsonnet": {"configMapRef": {"namespace": h.ns, "name": "hooks", "key": "sync.jsonnet"}}}},
        }),
    )
    .await;
    h.parent("p1", json!({})).await;
    let note = h
        .warning("p1", "in the hook's import roots (hook dir: none")
        .await;
    assert!(
        note.contains("import \"../../../proc/self/environ\""),
        "{note}"
    );
    assert!(!note.contains("PATH="), "nothing of the file leaks: {note}");
    let cms: kube::Api<ConfigMap> = h.api();
    assert!(
        cms.get_opt("leak").await.expect("get").is_none(),
        "no child was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_may_use_files_and_jpath_inside_the_hook_dirs() {
    let tree = Tree::new();
    std::fs::create_dir(tree.path("hooks/lib")).expect("mkdir");
    std::fs::write(
        tree.path("hooks/lib/names.libsonnet"),
        "{ name(parent): parent.metadata.name + '-from-file' }",
    )
    .expect("write");
    std::fs::write(
        tree.path("hooks/sync.jsonnet"),
        "local names = import 'names.libsonnet';\n\
         function(request) { children: [{ apiVersion: 'v1', kind: 'ConfigMap', \
         metadata: { name: names.name(request.parent) } }] }",
    )
    .expect("write");
    let mut h = Harness::new("hookdir").await;
    h.allow_hook_dirs(&[tree.path("hooks")]);
    h.controller(
        "hookdir",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
            "hooks": {"sync": {"jsonnet": {
                "file": tree.path("hooks/sync.jsonnet"),
                "jpath": [tree.path("hooks/lib")],
            }}},
        }),
    )
    .await;
    h.parent("p1", json!({})).await;
    h.configmap("p1-from-file").await;
    // A jpath outside the hook dirs is refused like a file.
    let name = h
        .controller(
            "hookdir-jpath",
            json!({
                "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
                "hooks": {"sync": {"jsonnet": {"source": "{}", "jpath": ["/"]}}},
            }),
        )
        .await;
    h.warning_in(
        "default",
        &name,
        &format!(
            "spec.hooks.sync.jsonnet.jpath[0]: / is outside the directories hook files may come from (--hook-dir {})",
            tree.path("hooks").display()
        ),
    )
    .await;
}

#[test]
fn the_boundary_flags_parse() {
    let cli = args::parse_from(
        [
            "kubelambda",
            "run",
            "--hook-dir",
            "/hooks",
            "-hook-dir=/more",
            "--tera-env-allow",
            "PATH",
        ]
        .map(std::ffi::OsString::from),
    )
    .expect("parses");
    let Sub::Run(run) = cli.command else {
        panic!("run");
    };
    assert_eq!(
        run.options().hook_dirs,
        [PathBuf::from("/hooks"), PathBuf::from("/more")]
    );
    let eval = run.eval.resolve().expect("resolves");
    assert_eq!(
        eval.tera_env.get("PATH"),
        Some(&std::env::var("PATH").ok()),
        "the value is read when kubelambda starts"
    );
    for command in ["httpd", "render"] {
        let refused = args::parse_from(
            ["kubelambda", command, "--tera-env-allow", "A=B", "x.tera"]
                .map(std::ffi::OsString::from),
        );
        assert!(refused.is_err(), "{command}: A=B is not a name");
    }
}

/// A worker that dies while idle (the OOM killer, an operator's `kill -9`) never saw a request:
/// the next request gets a new worker and succeeds, instead of failing "mid-request".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_while_idle_is_replaced_without_failing_a_request() {
    let tree = Tree::new();
    std::fs::write(
        tree.path("hooks/ok.jsonnet"),
        "function(request) { n: request.n }",
    )
    .expect("write");
    let server = Httpd::start(
        &tree.path("hooks"),
        &[],
        &["--eval-workers", "1", "--response-cache", "0", "ok.jsonnet"],
    );
    let (status, body) = server.post("/ok", r#"{"n": 1}"#).await;
    assert_eq!(status, 200, "{body}");
    let workers = server.workers();
    assert_eq!(workers.len(), 1, "{workers:?}");
    // SAFETY: kill(2) on a pid this test just read; no memory is involved.
    let killed = unsafe { libc::kill(workers[0] as libc::pid_t, libc::SIGKILL) };
    assert_eq!(killed, 0, "kill the idle worker");
    // Reaped by nobody yet: wait until it is a zombie or gone.
    wait_until("the worker to die", || async {
        let state =
            std::fs::read_to_string(format!("/proc/{}/stat", workers[0])).unwrap_or_default();
        (state.is_empty() || state.contains(") Z ")).then_some(())
    })
    .await;
    let (status, body) = server.post("/ok", r#"{"n": 2}"#).await;
    assert_eq!(status, 200, "the next request is served: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer, serde_json::json!({"n": 2}));
}
