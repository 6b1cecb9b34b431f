//! `kubelambda httpd` and `kubelambda render`, run as the real binary.

use std::io::{Read, Write};
use std::net::TcpStream;
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
    port: u16,
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
        Self::start_with(dir, args, None)
    }

    /// Starts the server with its open-file limit (soft and hard) set to `open_files`, if given.
    fn start_with(dir: &Path, args: &[&str], open_files: Option<u64>) -> Self {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut command = Command::new(BIN);
        command
            .current_dir(dir)
            .arg("httpd")
            .args(["-l", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log"));
        if let Some(limit) = open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
            unsafe {
                command.pre_exec(move || {
                    let rlimit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command.spawn().expect("start httpd");
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "httpd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            base,
            log,
        }
    }

    /// A raw connection, for what well-behaved clients never send. Reads give up after 30 s.
    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        stream
    }

    /// Waits (up to 30 s) for the process to exit after a signal.
    fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "httpd did not exit within 30 s\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to a child process we own.
        unsafe {
            libc::kill(self.pid() as i32, signal);
        }
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
        (
            413,
            "request body exceeds the limit of 8192 bytes (--max-body)\n"
        )
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

/// A jsonnetd deployment swaps its image: `kubelambda httpd DIR` serves every hook file of the
/// directory (a ConfigMap mount, `..data` links and all) with jsonnetd's natives, and picks up a
/// file added later.
#[tokio::test]
async fn a_directory_is_served_like_jsonnetd() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Laid out as a mounted ConfigMap: the files are links into a hidden, versioned directory.
    let data = dir.path().join("..2026_11_29_00_00_00.1");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(
        data.join("sync-ports.jsonnet"),
        r#"function(request) {
  local spec = request.parent.spec,
  local settings = std.native('jsonUnmarshal')(spec.settings),
  status: {
    ports: [std.native('parseInt')(p) for p in std.split(spec.ports, ',')],
    replicas: settings.replicas,
  },
}"#,
    )
    .expect("write");
    std::os::unix::fs::symlink(&data, dir.path().join("..data")).expect("link");
    std::os::unix::fs::symlink(
        "..data/sync-ports.jsonnet",
        dir.path().join("sync-ports.jsonnet"),
    )
    .expect("link");
    let server = Httpd::start(dir.path(), &["."]);
    let request = r#"{"parent": {"spec": {"ports": "80,443", "settings": "{\"replicas\": 3}"}}}"#;
    let (code, body) = post(&server.url("/sync-ports"), request).await;
    assert_eq!(code, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        answer,
        serde_json::json!({"status": {"ports": [80, 443], "replicas": 3}})
    );
    // Hidden directories are not routes.
    let (code, body) = post(&server.url("/..data/sync-ports"), request).await;
    assert_eq!(code, 404, "{body}");

    // A file added while running is served (the directory is rescanned on an unknown route).
    std::fs::write(
        dir.path().join("finalize.jsonnet"),
        "function(request) { finalized: true }",
    )
    .expect("write");
    let started = Instant::now();
    loop {
        let (code, body) = post(&server.url("/finalize"), "{}").await;
        if code == 200 {
            assert!(body.contains("\"finalized\": true"), "{body}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{code} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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

/// Everything the server sends until it closes the connection; fails if that takes 30 s.
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    stream
        .read_to_end(&mut out)
        .expect("the server answers and closes the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// One response with a `content-length`, leaving the connection open.
fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    while !received.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).expect("read the head"),
            1,
            "closed early"
        );
        received.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&received).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no content-length in {head}"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("read the body");
    head + &String::from_utf8_lossy(&body)
}

/// One request on its own connection, `Connection: close`; the whole answer.
fn raw_request(server: &Httpd, request: &str) -> String {
    let mut stream = server.connect();
    stream.write_all(request.as_bytes()).expect("send");
    read_to_close(&mut stream)
}

fn healthz(server: &Httpd) -> String {
    raw_request(
        server,
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
}

/// The value of a `kubelambda_httpd_rejected_total` series, 0 if it does not exist yet.
async fn rejected(server: &Httpd, reason: &str) -> u64 {
    let page = metrics_page(server).await;
    let series = format!("kubelambda_httpd_rejected_total{{reason=\"{reason}\"}} ");
    page.lines()
        .find_map(|line| line.strip_prefix(&series)?.parse().ok())
        .unwrap_or(0)
}

/// Asserts that `reason` is counted `expected` times. A connection is counted when the server
/// is done with it, which can be just after the client saw it close: waits up to 30 s for the
/// count to get there, and fails if it goes past it.
async fn assert_rejected(server: &Httpd, reason: &str, expected: u64) {
    let started = Instant::now();
    loop {
        let count = rejected(server, reason).await;
        if count >= expected {
            assert_eq!(count, expected, "{reason}");
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{reason}: {count} of {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to 30 s) until the server's log contains `needle`.
fn wait_for_log(server: &Httpd, needle: &str) {
    let started = Instant::now();
    while !server.log_text().contains(needle) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no {needle:?} in the log:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (up to 30 s) until the server has `count` connections open.
fn wait_for_connections(server: &Httpd, count: u64) {
    let started = Instant::now();
    loop {
        let page = raw_request(
            server,
            "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        );
        // The connection asking counts too.
        let open = page.lines().find_map(|l| {
            l.strip_prefix("kubelambda_httpd_connections ")?
                .parse::<u64>()
                .ok()
        });
        if open == Some(count + 1) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{open:?} connections open, expected {count} besides /metrics"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_slowloris_client_gets_408_and_the_server_keeps_serving() {
    let server = Httpd::start(
        &example_dir(),
        &["--header-timeout", "500ms", "sync.jsonnet"],
    );
    // A request head that never ends.
    let mut stalled = server.connect();
    stalled
        .write_all(b"POST /sync HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n")
        .expect("send");
    // A connection that never sends anything.
    let mut silent = server.connect();

    // Meanwhile, good requests are served.
    let (status, body) = post(&server.url("/sync"), example_request()).await;
    assert_eq!(status, 200, "{body}");

    let answer = read_to_close(&mut stalled);
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("\r\n\r\nrequest head not complete within --header-timeout 500ms\n"),
        "{answer}"
    );
    assert_eq!(read_to_close(&mut silent), "", "closed without an answer");

    assert!(healthz(&server).starts_with("HTTP/1.1 200 OK"));
    assert_rejected(&server, "header_timeout", 2).await;
}

#[tokio::test]
async fn a_partial_body_gets_408_naming_the_limit() {
    let server = Httpd::start(&example_dir(), &["--body-timeout", "500ms", "sync.jsonnet"]);
    let answer = raw_request(
        &server,
        "POST /sync HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"parent\":",
    );
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("\r\n\r\nrequest body not received within --body-timeout 500ms\n"),
        "{answer}"
    );
    let (status, body) = post(&server.url("/sync"), example_request()).await;
    assert_eq!(status, 200, "{body}");
    assert_rejected(&server, "body_timeout", 1).await;
    let metrics = metrics_page(&server).await;
    assert!(
        metrics.contains("kubelambda_httpd_errors_total{hook=\"/sync\",kind=\"body_timeout\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = Httpd::start(&example_dir(), &["--idle-timeout", "500ms", "sync.jsonnet"]);
    let mut stream = server.connect();
    let request = example_request();
    let head = format!(
        "POST /sync HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        request.len()
    );
    // Two requests on the same connection, then silence.
    for _ in 0..2 {
        stream.write_all(head.as_bytes()).expect("send head");
        stream.write_all(request.as_bytes()).expect("send body");
        let answer = read_response(&mut stream);
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    }
    assert_eq!(read_to_close(&mut stream), "", "closed without more data");
    assert_rejected(&server, "idle_timeout", 1).await;
}

#[tokio::test]
async fn body_errors_other_than_size_are_400_with_the_cause() {
    let server = Httpd::start(&example_dir(), &["--max-body", "1KiB", "sync.jsonnet"]);
    // The client stops sending mid-body (closes its side).
    let mut stream = server.connect();
    stream
        .write_all(b"POST /sync HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n\r\n{\"parent\":")
        .expect("send");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    let answer = read_to_close(&mut stream);
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("cannot read the request body: error reading a body from connection: end of file before message length reached\n"),
        "{answer}"
    );

    // The client disconnects mid-body without waiting for an answer.
    let mut gone = server.connect();
    gone.write_all(b"POST /sync HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n\r\n{")
        .expect("send");
    drop(gone);

    let answer = raw_request(
        &server,
        "POST /sync HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    );
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(answer.contains("Invalid chunk size line"), "{answer}");

    // Only the size limit is 413, also for a body that does not declare its length.
    let big = "x".repeat(2048);
    let answer = raw_request(
        &server,
        &format!(
            "POST /sync HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n800\r\n{big}\r\n0\r\n\r\n"
        ),
    );
    assert!(
        answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("request body exceeds the limit of 1024 bytes (--max-body)\n"),
        "{answer}"
    );

    let started = Instant::now();
    loop {
        let metrics = metrics_page(&server).await;
        let count = |code: &str| {
            metrics
                .lines()
                .find_map(|l| {
                    l.strip_prefix(&format!(
                        "kubelambda_httpd_requests_total{{hook=\"/sync\",code=\"{code}\"}} "
                    ))?
                    .parse::<u64>()
                    .ok()
                })
                .unwrap_or(0)
        };
        // The disconnected client is counted once the server notices it left.
        if count("400") == 3 {
            assert_eq!(count("413"), 1, "{metrics}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "expected three 400s:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads every socket that has something to say until `expected` of them were closed by the
/// server (giving up after 30 s); returns what each closed one received, by index.
fn collect_refusals(sockets: &mut [TcpStream], expected: usize) -> Vec<(usize, String)> {
    for socket in sockets.iter() {
        socket.set_nonblocking(true).expect("nonblocking");
    }
    let mut received = vec![Vec::new(); sockets.len()];
    let mut closed = vec![false; sockets.len()];
    let started = Instant::now();
    while closed.iter().filter(|c| **c).count() < expected {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "only {} of {expected} connections were refused",
            closed.iter().filter(|c| **c).count()
        );
        let mut progress = false;
        for (i, socket) in sockets.iter_mut().enumerate() {
            if closed[i] {
                continue;
            }
            let mut chunk = [0u8; 1024];
            match socket.read(&mut chunk) {
                Ok(0) => {
                    closed[i] = true;
                    progress = true;
                }
                Ok(n) => {
                    received[i].extend_from_slice(&chunk[..n]);
                    progress = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("connection {i}: {e}"),
            }
        }
        if !progress {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for socket in sockets.iter() {
        socket.set_nonblocking(false).expect("blocking");
    }
    closed
        .iter()
        .enumerate()
        .filter(|(_, c)| **c)
        .map(|(i, _)| (i, String::from_utf8_lossy(&received[i]).into_owned()))
        .collect()
}

fn open_files_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd list")
        .count()
}

/// Opens `count` idle connections; the server holds `cap` of them and refuses the rest with 503.
fn assert_cap_holds(server: &Httpd, count: usize, cap: usize) -> Vec<TcpStream> {
    let mut sockets: Vec<TcpStream> = (0..count).map(|_| server.connect()).collect();
    let refused = collect_refusals(&mut sockets, count - cap);
    assert_eq!(refused.len(), count - cap);
    for (i, answer) in &refused {
        assert!(
            answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "connection {i}: {answer:?}"
        );
        assert!(answer.contains("\r\nretry-after: 1\r\n"), "{answer:?}");
        assert!(
            answer.ends_with("too many connections (--max-connections); retry later\n"),
            "{answer:?}"
        );
    }
    let refused: std::collections::BTreeSet<usize> = refused.iter().map(|(i, _)| *i).collect();
    let held: Vec<TcpStream> = sockets
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !refused.contains(i))
        .map(|(_, s)| s)
        .collect();
    // Refused connections cost no descriptor once answered.
    assert!(
        open_files_of(server.pid()) < cap + 100,
        "{} descriptors open",
        open_files_of(server.pid())
    );
    held
}

/// Sends good requests until one is answered 200 (up to 30 s), as a client honouring
/// Retry-After would.
fn healthz_eventually(server: &Httpd) -> String {
    let started = Instant::now();
    loop {
        let answer = healthz(server);
        if answer.starts_with("HTTP/1.1 200 OK") {
            return answer;
        }
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never served: {answer}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn connections_past_the_cap_get_503_and_the_server_keeps_serving() {
    let server = Httpd::start(
        &example_dir(),
        &[
            "--max-connections",
            "50",
            "--header-timeout",
            "60s",
            "sync.jsonnet",
        ],
    );
    let mut held = assert_cap_holds(&server, 300, 50);
    let answer = healthz(&server);
    assert!(answer.starts_with("HTTP/1.1 503"), "still full: {answer}");

    held.truncate(40);
    healthz_eventually(&server);
    let (status, body) = post(&server.url("/sync"), example_request()).await;
    assert_eq!(status, 200, "{body}");
    assert!(rejected(&server, "connections").await >= 251);
    let log = server.log_text();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(
        log.contains("connection limit reached: 50 connections open (--max-connections)"),
        "{log}"
    );
    drop(held);
}

#[tokio::test]
async fn the_default_cap_fits_a_low_open_file_limit() {
    // 256 descriptors, 2 workers: 64 for the server, 8 for the workers, 64 for refusals in
    // progress leave 120, under half the limit (128).
    let mut server = Httpd::start_with(
        &example_dir(),
        &[
            "--eval-workers",
            "2",
            "--header-timeout",
            "60s",
            "sync.jsonnet",
        ],
        Some(256),
    );
    wait_for_log(&server, "--max-connections 120 (open-file limit 256)");
    let mut held = assert_cap_holds(&server, 300, 120);
    held.truncate(100);
    healthz_eventually(&server);
    let (status, body) = post(&server.url("/sync"), example_request()).await;
    assert_eq!(status, 200, "{body}");
    assert!(!server.log_text().contains("Too many open files"));
    drop(held);
    server.signal(libc::SIGTERM);
    assert!(server.wait_for_exit().success());
}

#[test]
fn sigterm_exits_despite_partial_requests_and_idle_connections() {
    let mut server = Httpd::start(
        &example_dir(),
        &[
            "--header-timeout",
            "60s",
            "--body-timeout",
            "60s",
            "--shutdown-grace",
            "1s",
            "sync.jsonnet",
        ],
    );
    let mut partial_head = server.connect();
    partial_head
        .write_all(b"POST /sync HTTP/1.1\r\nhost: x\r\n")
        .expect("send");
    let mut partial_body = server.connect();
    partial_body
        .write_all(b"POST /sync HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")
        .expect("send");
    let mut idle = server.connect();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .expect("send");
    let mut answer = [0u8; 1024];
    let n = idle.read(&mut answer).expect("healthz answer");
    assert!(answer[..n].starts_with(b"HTTP/1.1 200 OK"));
    let silent = server.connect();
    // Every connection is in the server's hands before the signal.
    wait_for_connections(&server, 4);

    server.signal(libc::SIGTERM);
    let status = server.wait_for_exit();
    assert!(status.success(), "exit status {status}");
    let log = server.log_text();
    assert!(
        log.contains("shutdown grace of 1s ran out; closing 2 connection(s) still open"),
        "the requests with a partial head and a partial body are in flight:\n{log}"
    );
    // The connections waiting for a request were closed at once.
    assert_eq!(read_to_close(&mut idle), "");
    drop((partial_head, partial_body, silent));
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish() {
    let mut server = Httpd::start(
        &hooks_dir(),
        &[
            "--shutdown-grace",
            "60s",
            "--deadline",
            "60s",
            "slow.jsonnet",
        ],
    );
    let mut stream = server.connect();
    stream
        .write_all(b"POST /slow HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        .expect("send");
    // Wait until the request is being evaluated: the server started a worker for it.
    let started = Instant::now();
    while children_of(server.pid()).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "no worker");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.signal(libc::SIGTERM);
    let answer = read_to_close(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\"sum\""), "{answer}");
    let status = server.wait_for_exit();
    assert!(status.success(), "exit status {status}");
    let log = server.log_text();
    assert!(
        log.contains("stopped accepting; waiting up to 1m for 1 open connection(s)"),
        "{log}"
    );
    assert!(!log.contains("grace of 1m ran out"), "{log}");
}

#[tokio::test]
async fn a_client_that_stops_reading_a_response_is_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Far more than the socket buffers between client and server hold.
    std::fs::write(
        dir.path().join("large.jsonnet"),
        "function(request) { value: std.repeat('y', 16 * 1024 * 1024) }",
    )
    .expect("write hook");
    let server = Httpd::start(
        dir.path(),
        &[
            "--max-output",
            "64MiB",
            "--idle-timeout",
            "500ms",
            "large.jsonnet",
        ],
    );
    let mut stream = server.connect();
    stream
        .write_all(b"POST /large HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        .expect("send");
    // The client reads nothing; the server gives up on the response.
    assert_rejected(&server, "write_timeout", 1).await;
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    assert!(
        received.len() < 16 * 1024 * 1024,
        "the whole response was sent"
    );
    assert!(healthz(&server).starts_with("HTTP/1.1 200 OK"));
}

#[test]
fn limit_flags_are_validated() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .current_dir(hooks_dir())
            .arg("httpd")
            .args(["-l", "127.0.0.1:0"])
            .args(args)
            .arg("static.jsonnet")
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (flag, value, message) in [
        ("--header-timeout", "0s", "must be greater than 0"),
        ("--body-timeout", "0", "must be greater than 0"),
        ("--idle-timeout", "soon", "is not a duration"),
        ("--shutdown-grace", "0ms", "must be greater than 0"),
        ("--max-connections", "0", "must be greater than 0"),
        ("--max-connections", "many", "is not a whole number"),
    ] {
        let (code, err) = run(&[flag, value]);
        assert_eq!(code, Some(2), "{flag} {value}: {err}");
        assert!(
            err.contains(flag) && err.contains(message),
            "{flag} {value}: {err}"
        );
    }
    let (code, err) = run(&["--max-connections", "100000000"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--max-connections 100000000 needs 100000000 file descriptors"),
        "{err}"
    );
}

/// Arbitrary bytes on the wire (random request lines, headers, bodies and truncations) never
/// crash the server: every connection gets an answer or is closed, and a good request still
/// succeeds afterwards, with no panic in the log.
#[test]
fn arbitrary_requests_never_crash_the_server() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let server = Httpd::start(
        &example_dir(),
        &[
            "--header-timeout",
            "1s",
            "--body-timeout",
            "1s",
            "sync.jsonnet",
        ],
    );
    let port = server.port;
    let part = prop_oneof![
        Just("POST /sync HTTP/1.1\r\n".to_owned()),
        Just("GET /metrics HTTP/1.1\r\n".to_owned()),
        Just("Host: x\r\n".to_owned()),
        Just("Content-Type: application/json\r\n".to_owned()),
        Just("Transfer-Encoding: chunked\r\n".to_owned()),
        "Content-Length: [0-9]{1,12}\r\n",
        Just("\r\n".to_owned()),
        Just("{\"parent\":".to_owned()),
        Just("0\r\n\r\n".to_owned()),
        "[ -~]{0,40}",
        "[\\x00-\\xff]{0,16}",
    ];
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(part, 0..12), |parts| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let _ = stream.write_all(parts.concat().as_bytes());
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            prop_assert!(
                answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
                "not an HTTP answer: {:?}",
                String::from_utf8_lossy(&answer)
            );
            Ok(())
        })
        .expect("every connection answered or closed");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (status, _) = runtime.block_on(post(&server.url("/sync"), example_request()));
    assert_eq!(status, 200, "the server still serves");
    let log = server.log_text();
    assert!(!log.contains("panicked"), "{log}");
}
