//! OpenTelemetry traces: a span per sync carrying the controller and the parent, with the hook
//! call, each child write and the status write as its children (checked with an in-memory
//! exporter); and the real binary sending them over OTLP/HTTP to a receiver on loopback when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and sending nothing when it is not.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use common::*;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;
use tracing_subscriber::prelude::*;

/// The in-memory exporter every span of this test binary goes to.
fn exporter() -> &'static (InMemorySpanExporter, SdkTracerProvider) {
    static EXPORTER: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let (layer, provider) = kubelambda::telemetry::traces::layer_with(exporter.clone());
        let _ = tracing_subscriber::registry().with(layer).try_init();
        (exporter, provider)
    })
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_is_a_span_with_its_hook_call_and_writes_as_children() {
    let (exporter, provider) = exporter();
    let h = Harness::new("traces").await;
    let server = HookServer::start(|request| {
        let name = request["parent"]["metadata"]["name"]
            .as_str()
            .unwrap_or_default();
        json!({"children": [{"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": format!("{name}-traced")}}],
               "status": {"traced": true}})
    })
    .await;
    let cc = h
        .controller(
            "traces",
            json!({
                "generateSelector": true,
                "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
                "hooks": {"sync": {"webhook": {"url": server.url}}},
            }),
        )
        .await;
    h.parent("t1", json!({})).await;
    h.configmap("t1-traced").await;
    let parent = format!("{}/t1", h.ns);
    let spans = wait_until("the sync's spans exported", || async {
        let _ = provider.force_flush();
        let spans = exporter.get_finished_spans().ok()?;
        let writes_status = spans
            .iter()
            .any(|s| s.name == "parent" && attr(s, "action").as_deref() == Some("write status of"));
        writes_status.then_some(spans)
    })
    .await;
    let sync = spans
        .iter()
        .find(|s| {
            s.name == "sync"
                && attr(s, "controller").as_deref() == Some(cc.as_str())
                && attr(s, "parent").as_deref() == Some(parent.as_str())
                && spans
                    .iter()
                    .any(|c| c.name == "child" && c.parent_span_id == s.span_context.span_id())
        })
        .expect("a sync span that wrote the child");
    assert_eq!(
        attr(sync, "controller_type").as_deref(),
        Some("CompositeController")
    );
    assert_eq!(attr(sync, "parent_kind").as_deref(), Some("TestParent"));
    let children: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.parent_span_id == sync.span_context.span_id())
        .collect();
    let hook = children
        .iter()
        .find(|s| s.name == "hook")
        .expect("hook span");
    assert_eq!(attr(hook, "hook").as_deref(), Some("sync"));
    assert_eq!(attr(hook, "backend").as_deref(), Some("webhook"));
    let child = children
        .iter()
        .find(|s| s.name == "child")
        .expect("child span");
    assert_eq!(attr(child, "action").as_deref(), Some("apply"));
    assert_eq!(attr(child, "kind").as_deref(), Some("ConfigMap"));
    assert_eq!(attr(child, "name").as_deref(), Some("t1-traced"));
    assert_eq!(attr(child, "namespace").as_deref(), Some(h.ns.as_str()));
    // One trace: the children share the sync's trace id, and start after it.
    for c in &children {
        assert_eq!(c.span_context.trace_id(), sync.span_context.trace_id());
        assert!(c.start_time >= sync.start_time);
    }
}

/// Kills the controller when the test ends.
struct Controller(std::process::Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A receiver on loopback that keeps every OTLP/HTTP body posted to `/v1/traces`.
async fn receiver() -> (String, Arc<Mutex<Vec<(String, Bytes)>>>) {
    let bodies: Arc<Mutex<Vec<(String, Bytes)>>> = Arc::default();
    let kept = bodies.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let kept = kept.clone();
            async move {
                let kind = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                kept.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((kind, body));
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), bodies)
}

fn run_controller(env: &TestEnv, label: &str, otlp: Option<&str>) -> Controller {
    let mut command = std::process::Command::new(BIN);
    command
        .args(["run", "--kubeconfig"])
        .arg(env.kubeconfig_path())
        .args([
            "--metrics-address=0",
            "--health-probe-bind-address=0",
            &format!("--target-label-selector=kubelambda-test={label}"),
        ])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(endpoint) = otlp {
        command
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .env("OTEL_SERVICE_NAME", "kubelambda-under-test");
    }
    Controller(command.spawn().expect("start kubelambda run"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exports_over_otlp_only_when_asked() {
    // The global subscriber of this test binary must be the traced one, whichever test runs
    // first (the harness would otherwise install plain logging).
    exporter();
    let h = Harness::new("otlp").await;
    let (endpoint, bodies) = receiver().await;
    // Its own label: the in-process engine of the harness does not run these controllers.
    let traced = format!("otlp-{}", h.ns);
    let quiet = format!("quiet-{}", h.ns);
    let env = TestEnv::shared();
    let _with = run_controller(env, &traced, Some(&endpoint));
    let _without = run_controller(env, &quiet, None);
    for label in [&traced, &quiet] {
        let cc = json!({
            "apiVersion": "metacontroller.k8s.io/v1alpha1",
            "kind": "CompositeController",
            "metadata": {"name": label, "labels": {"kubelambda-test": label}},
            "spec": {
                "generateSelector": true,
                "parentResource": {"apiVersion": "test.kubelambda.io/v1", "resource": "testparents",
                                   "labelSelector": {"matchLabels": {"kubelambda-test": label}}},
                "hooks": {"sync": {"jsonnet": {"source": "function(request) { status: { seen: true } }"}}},
            },
        });
        create_cc(&h.client, cc).await;
        let parent: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "test.kubelambda.io/v1", "kind": "TestParent",
            "metadata": {"name": label, "labels": {"kubelambda-test": label}}, "spec": {},
        }))
        .expect("parent");
        h.parents()
            .create(&kube::api::PostParams::default(), &parent)
            .await
            .expect("parent");
    }
    for label in [&traced, &quiet] {
        wait_until(&format!("{label} synced"), || async {
            let p = h.parents().get(label).await.ok()?;
            (p.data.pointer("/status/seen") == Some(&json!(true))).then_some(())
        })
        .await;
    }
    let found = wait_until(
        "a protobuf OTLP body naming the traced controller",
        || async {
            let bodies = bodies.lock().unwrap_or_else(|e| e.into_inner()).clone();
            bodies.into_iter().find(|(kind, body)| {
                kind == "application/x-protobuf"
                    && contains(body, traced.as_bytes())
                    && contains(body, b"kubelambda-under-test")
            })
        },
    )
    .await;
    assert!(contains(&found.1, b"sync"));
    // The controller without the variable sent nothing: no body names its controller.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bodies = bodies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(bodies.iter().all(|(_, b)| !contains(b, quiet.as_bytes())));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
