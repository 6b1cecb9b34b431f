//! `kubelambda httpd` and `kubelambda render`, run as the real binary.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kubelambda");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn hooks_dir() -> PathBuf {
    root().join("tests/fixtures/hooks")
}

fn example_dir() -> PathBuf {
    root().join("examples/useless-controller")
}

fn example_request() -> String {
    std::fs::read_to_string(example_dir().join("request.json")).expect("request.json")
}

/// A running `kubelambda httpd`, killed on drop; its stderr goes to a file the test can read.
struct Httpd {
    child: Child,
    base: String,
    log: tempfile::NamedTempFile,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Httpd {
    fn start(dir: &Path, args: &[&str]) -> Self {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().expect("log file");
        let child = Command::new(BIN)
            .current_dir(dir)
            .arg("httpd")
            .args(["-l", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log"))
            .spawn()
            .expect("start httpd");
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "httpd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, base, log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log_text(&self) -> String {
        let mut text = String::new();
        std::fs::File::open(self.log.path())
            .and_then(|mut f| f.read_to_string(&mut text))
            .expect("read log");
        text
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

fn render(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .current_dir(dir)
        .arg("render")
        .args(args)
        .output()
        .expect("run render")
}

#[tokio::test]
async fn serves_the_example_and_answers_every_status() {
    let server = Httpd::start(&example_dir(), &["--max-body", "8KiB", "sync.jsonnet"]);
    let expected = std::fs::read_to_string(example_dir().join("response.json")).expect("response");

    let (status, body) = post(&server.url("/sync"), example_request()).await;
    assert_eq!((status, body.as_str()), (200, expected.as_str()));

    // A body that would read a file if it were evaluated as Jsonnet: refused as non-JSON.
    let (status, body) = post(&server.url("/sync"), "importstr \"/etc/passwd\"").await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        "request body is not valid JSON: expected value at line 1 column 1\n"
    );

    let (status, body) = post(&server.url("/nope"), "{}").await;
    assert_eq!(
        (status, body.as_str()),
        (404, "no hook at /nope; served hooks: /sync\n")
    );
    let (status, _) = post(&server.url("/sync/"), "{}").await;
    assert_eq!(status, 404, "routes match exactly");

    let response = reqwest::get(server.url("/sync")).await.expect("GET");
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(
        response.text().await.expect("body"),
        "method GET not allowed: hooks take POST\n"
    );

    let (status, body) = post(&server.url("/sync"), vec![b' '; 9 * 1024]).await;
    assert_eq!(
        (status, body.as_str()),
        (413, "request body exceeds the limit of 8192 bytes\n")
    );

    let (status, body) = post(&server.url("/sync"), r#"{"parent": {"metadata": {}}}"#).await;
    assert_eq!(status, 500);
    assert!(body.starts_with("no such field: spec"), "{body}");
    assert!(body.contains("sync.jsonnet"), "{body}");

    let health = reqwest::get(server.url("/healthz")).await.expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    let metrics = metrics_page(&server).await;
    for line in [
        "kubelambda_httpd_requests_total{hook=\"/sync\",code=\"200\"} 1",
        "kubelambda_httpd_requests_total{hook=\"/sync\",code=\"400\"} 1",
        "kubelambda_httpd_requests_total{hook=\"/sync\",code=\"413\"} 1",
        "kubelambda_httpd_errors_total{hook=\"/sync\",kind=\"evaluation\"} 1",
        "kubelambda_httpd_request_duration_seconds_count{hook=\"/sync\"}",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    assert!(
        server.log_text().contains("no such field: spec"),
        "evaluation errors are logged"
    );
}

#[tokio::test]
async fn each_limit_stops_its_hook_and_the_next_request_succeeds() {
    let server = Httpd::start(
        &hooks_dir(),
        &[
            "--deadline",
            "2s",
            "--max-memory",
            "768MiB",
            "--max-output",
            "1MiB",
            "--eval-workers",
            "1",
            "recursive.jsonnet",
            "endless.jsonnet",
            "huge.jsonnet",
            "big-output.jsonnet",
            "static.jsonnet",
        ],
    );
    let ok = || async {
        let (status, body) = post(&server.url("/static"), "{}").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"static\": true"), "{body}");
    };
    ok().await;
    let worker_before = children_of(server.pid());
    assert_eq!(worker_before.len(), 1, "one worker after the first request");

    let cases = [
        ("/recursive", "hook exceeded its stack depth limit"),
        (
            "/endless",
            "hook exceeded its deadline limit: the evaluation ran longer than 2s",
        ),
        (
            "/huge",
            "hook exceeded its memory limit: the evaluation needed more than 768 MiB",
        ),
        ("/big-output", "hook exceeded its output size limit"),
    ];
    for (route, expected) in cases {
        let started = Instant::now();
        let (status, body) = post(&server.url(route), "{}").await;
        assert_eq!(status, 500, "{route}: {body}");
        assert!(body.starts_with(expected), "{route}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{route} took {:?}",
            started.elapsed()
        );
        ok().await;
    }
    // The worker that ran for ever was killed, not abandoned.
    for pid in worker_before {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} still exists"
        );
    }
    assert_eq!(
        children_of(server.pid()).len(),
        1,
        "exactly one live worker"
    );
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
    {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out
}

#[tokio::test]
async fn an_edited_hook_is_served_fresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = dir.path().join("edit.jsonnet");
    std::fs::write(&hook, "function(request) { version: 1 }").expect("write");
    let server = Httpd::start(dir.path(), &["edit.jsonnet"]);
    let (_, body) = post(&server.url("/edit"), "{}").await;
    assert!(body.contains("\"version\": 1"), "{body}");
    std::fs::write(&hook, "function(request) { version: 2, edited: true }").expect("rewrite");
    let (_, body) = post(&server.url("/edit"), "{}").await;
    assert!(body.contains("\"version\": 2"), "{body}");
    assert!(body.contains("\"edited\": true"), "{body}");
}

#[tokio::test]
async fn render_prints_what_httpd_serves() {
    let server = Httpd::start(
        &hooks_dir(),
        &["sync.tera", "natives.jsonnet", "trace.jsonnet"],
    );
    let request = example_request();
    for hook in ["sync.tera", "natives.jsonnet"] {
        let route = format!("/{}", hook.rsplit_once('.').expect("ext").0);
        let (status, served) = post(&server.url(&route), request.clone()).await;
        assert_eq!(status, 200, "{served}");
        let rendered = render(
            &hooks_dir(),
            &[
                hook,
                "--request",
                example_dir().join("request.json").to_str().expect("utf8"),
            ],
        );
        assert!(
            rendered.status.success(),
            "{}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&rendered.stdout), served, "{hook}");
    }
    // std.trace reaches the log at the default level, with file and line.
    let (status, _) = post(&server.url("/trace"), request).await;
    assert_eq!(status, 200);
    let log = server.log_text();
    assert!(
        log.contains("TRACE: ") && log.contains("trace.jsonnet:1 parent is demo"),
        "{log}"
    );
}

#[test]
fn render_reads_stdin_and_reports_errors_on_stderr() {
    let mut child = Command::new(BIN)
        .current_dir(example_dir())
        .args(["render", "sync.jsonnet", "--request", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(example_request().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let expected = std::fs::read_to_string(example_dir().join("response.json")).expect("response");
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);

    let out = render(
        &hooks_dir(),
        &[
            "broken.jsonnet",
            "--request",
            example_dir().join("request.json").to_str().expect("utf8"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kubelambda render: broken.jsonnet: no such field: missing"),
        "{err}"
    );

    let out = render(
        &hooks_dir(),
        &["static.jsonnet", "--request", "/no/such/request.json"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot read the request from /no/such/request.json"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_startup_input_is_refused_with_exit_code_2() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .current_dir(hooks_dir())
            .arg("httpd")
            .args(["-l", "127.0.0.1:0"])
            .args(args)
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["static.jsonnet", "./static.jsonnet"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("static.jsonnet and ./static.jsonnet would both be served at /static"),
        "{err}"
    );
    let (code, err) = run(&["missing.jsonnet"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("missing.jsonnet: cannot read hook file"),
        "{err}"
    );
    let (code, err) = run(&["helper.libsonnet", "notes.txt"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("notes.txt: cannot read hook file")
            || err.contains("notes.txt: unknown hook type"),
        "{err}"
    );
    let (code, err) = run(&["--ext-str", "SURELY_UNSET_VARIABLE_X", "static.jsonnet"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("missing environment variable SURELY_UNSET_VARIABLE_X"),
        "{err}"
    );
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let server = Httpd::start(&hooks_dir(), &["static.jsonnet"]);
    let pid = server.pid();
    // SAFETY: sending a signal to a child process we own.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let mut server = server;
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.log_text().contains("shutting down"));
}

#[tokio::test]
async fn a_client_that_gives_up_does_not_cost_a_worker() {
    let server = Httpd::start(
        &hooks_dir(),
        &[
            "--eval-workers",
            "1",
            "--deadline",
            "60s",
            "slow.jsonnet",
            "static.jsonnet",
        ],
    );
    let (status, _) = post(&server.url("/static"), "{}").await;
    assert_eq!(status, 200);
    let workers = children_of(server.pid());
    assert_eq!(workers.len(), 1);
    // The client hangs up long before the slow hook answers.
    let gave_up = reqwest::Client::new()
        .post(server.url("/slow"))
        .body("{}")
        .timeout(Duration::from_millis(10))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client should have timed out");
    // The evaluation finishes, the worker returns to the pool, and serves the next request.
    let (status, body) = post(&server.url("/static"), "{}").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        children_of(server.pid()),
        workers,
        "the same worker process, not a replacement"
    );
}

async fn metrics_page(server: &Httpd) -> String {
    reqwest::get(server.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

async fn metric(server: &Httpd, name: &str) -> u64 {
    let page = metrics_page(server).await;
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{page}"))
}

const HITS: &str = "kubelambda_httpd_response_cache_hits_total";
const MISSES: &str = "kubelambda_httpd_response_cache_misses_total";

#[tokio::test]
async fn identical_requests_are_answered_from_the_cache_until_a_file_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("hook.jsonnet"),
        "local lib = import 'lib.libsonnet';\nfunction(request) { v: lib.v, name: request.name }",
    )
    .expect("write hook");
    let lib = dir.path().join("lib.libsonnet");
    std::fs::write(&lib, "{ v: 1 }").expect("write lib");
    let server = Httpd::start(dir.path(), &["hook.jsonnet"]);
    let url = server.url("/hook");

    let (status, first) = post(&url, r#"{"name": "a"}"#).await;
    assert_eq!(status, 200, "{first}");
    let (_, second) = post(&url, r#"{"name": "a"}"#).await;
    assert_eq!(first, second);
    assert_eq!(
        (metric(&server, HITS).await, metric(&server, MISSES).await),
        (1, 1)
    );

    // Another body is another evaluation.
    let (_, other) = post(&url, r#"{"name": "b"}"#).await;
    assert!(other.contains("\"name\": \"b\""), "{other}");
    assert_eq!(metric(&server, MISSES).await, 2);

    // An edit of an imported file makes the cached response stale.
    std::fs::write(&lib, "{ v: 22 }").expect("rewrite lib");
    let (_, edited) = post(&url, r#"{"name": "a"}"#).await;
    assert!(edited.contains("\"v\": 22"), "{edited}");
    assert_eq!(
        (metric(&server, HITS).await, metric(&server, MISSES).await),
        (1, 3)
    );
}

#[tokio::test]
async fn traced_evaluations_and_a_disabled_cache_evaluate_every_time() {
    let request = r#"{"parent": {"metadata": {"name": "p"}}}"#;
    let traced = Httpd::start(&hooks_dir(), &["trace.jsonnet"]);
    for _ in 0..2 {
        let (status, body) = post(&traced.url("/trace"), request).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(metric(&traced, HITS).await, 0);
    assert_eq!(traced.log_text().matches("parent is p").count(), 2);

    let uncached = Httpd::start(&example_dir(), &["--response-cache", "0", "sync.jsonnet"]);
    for _ in 0..2 {
        let (status, body) = post(&uncached.url("/sync"), example_request()).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        (
            metric(&uncached, HITS).await,
            metric(&uncached, MISSES).await
        ),
        (0, 0)
    );
}

/// Names of the server's threads that serve HTTP (Tokio's runtime workers).
fn http_threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task list")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "tokio-rt-worker")
        .count()
}

#[tokio::test]
async fn http_threads_follow_the_flag() {
    let server = Httpd::start(&example_dir(), &["--http-threads", "3", "sync.jsonnet"]);
    let (status, body) = post(&server.url("/sync"), example_request()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(http_threads_of(server.pid()), 3);

    let expected = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
    let default = Httpd::start(&example_dir(), &["sync.jsonnet"]);
    let (status, body) = post(&default.url("/sync"), example_request()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(http_threads_of(default.pid()), expected);
}
