//! The metrics a known workload leaves behind: Metacontroller's webhook metrics under their own
//! names and labels (so existing dashboards keep working), and kubelambda's own per controller
//! (syncs, queue, hook calls, child writes) and per API verb and status code.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use serde_json::json;

/// Every sample of `name` whose labels include each of `labels`, summed.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn scrape(h: &Harness) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    h.engine().metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_workload_is_counted_under_metacontrollers_names_and_ours() {
    let h = Harness::new("metrics").await;
    // Two ConfigMaps per parent; fails with 500 while `failing` is set.
    let failing = Arc::new(AtomicBool::new(true));
    let server = {
        let failing = failing.clone();
        HookServer::start(move |request| {
            if failing.load(Ordering::SeqCst) {
                return json!("not a response");
            }
            let name = request["parent"]["metadata"]["name"].as_str().unwrap_or_default();
            json!({"children": [
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("{name}-a")}},
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("{name}-b")}},
            ], "status": {"children": 2}})
        })
        .await
    };
    let cc = h
        .controller(
            "metrics",
            json!({
                "generateSelector": true,
                "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
                "hooks": {"sync": {"webhook": {"url": server.url}}},
            }),
        )
        .await;
    h.parent("p1", json!({})).await;
    wait_until("a failed call", || async {
        (server.calls() > 0).then_some(())
    })
    .await;
    failing.store(false, Ordering::SeqCst);
    for p in ["p2", "p3"] {
        h.parent(p, json!({})).await;
    }
    let cms: Api<ConfigMap> = h.api();
    for p in ["p1", "p2", "p3"] {
        for c in ["a", "b"] {
            wait_until(&format!("{p}-{c}"), || async {
                cms.get_opt(&format!("{p}-{c}")).await.ok().flatten()
            })
            .await;
        }
    }
    wait_until("every parent's status", || async {
        let list = h.parents().list(&Default::default()).await.ok()?;
        (list
            .items
            .iter()
            .filter(|p| p.data.pointer("/status/children") == Some(&json!(2)))
            .count()
            == 3)
            .then_some(())
    })
    .await;

    let text = scrape(&h);
    let ours = [
        ("controller_name", cc.as_str()),
        ("controller_type", "CompositeController"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        ours.iter().copied().chain(extra.iter().copied()).collect()
    };
    // Metacontroller's webhook metrics: every call the server saw, by code, with the URL.
    let url = server.url.clone();
    let mut webhook = with(&[("code", "200"), ("method", "post")]);
    webhook.push(("url", url.as_str()));
    let calls = server.calls() as f64;
    let answered = sample(&text, "metacontroller_sync_requests_total", &webhook);
    assert_eq!(answered, calls, "every webhook answer is counted:\n{text}");
    assert!(
        text.contains("# TYPE metacontroller_sync_request_duration_histogram_seconds histogram"),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "metacontroller_sync_request_duration_histogram_seconds_count",
            &with(&[])
        ),
        calls
    );
    assert_eq!(
        sample(&text, "metacontroller_sync_in_flight_requests", &with(&[])),
        0.0
    );
    // A 200 whose body is not a response counts as a call with an error result.
    let bad = sample(
        &text,
        "kubelambda_hook_calls_total",
        &with(&[("hook", "sync"), ("backend", "webhook"), ("result", "ok")]),
    );
    assert_eq!(
        bad, calls,
        "the hook call itself succeeded; the response was invalid"
    );
    // Ours: syncs by result, six children created, the queue.
    let failed = sample(
        &text,
        "kubelambda_syncs_total",
        &with(&[("result", "error")]),
    );
    assert!(failed >= 1.0, "the failing calls are failed syncs:\n{text}");
    let ok = sample(&text, "kubelambda_syncs_total", &with(&[("result", "ok")]));
    assert!(ok >= 3.0);
    assert_eq!(
        ok + failed,
        sample(&text, "kubelambda_sync_duration_seconds_count", &with(&[]))
    );
    assert_eq!(
        sample(
            &text,
            "kubelambda_child_writes_total",
            &with(&[("action", "created")])
        ),
        6.0
    );
    assert_eq!(
        sample(
            &text,
            "kubelambda_child_writes_total",
            &with(&[("action", "deleted")])
        ),
        0.0
    );
    assert!(sample(&text, "kubelambda_queue_adds_total", &with(&[])) >= 3.0);
    assert!(sample(&text, "kubelambda_queue_retries_total", &with(&[])) >= failed);
    assert_eq!(
        sample(&text, "kubelambda_queue_wait_seconds_count", &with(&[])),
        ok + failed,
        "every sync waited in the queue first"
    );
    // API answers by verb and code: at least the six ConfigMaps (server-side apply: patch, 201
    // or 200).
    let patched = sample(
        &text,
        "kubelambda_api_responses_total",
        &[("verb", "patch")],
    );
    assert!(patched >= 6.0, "{text}");
    assert!(sample(&text, "kubelambda_api_requests_total", &[("verb", "watch")]) >= 1.0);
}
