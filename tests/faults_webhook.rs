//! Faults of a webhook hook (issue 13's fault suite): the hook down (port closed), slow past the
//! controller's `timeout`, answering 500, answering something that is not JSON, answering 429.
//! One controller and one workload on the shared control plane, the faults one after another.
//!
//! For each fault a change is made to every parent while the hook fails; the test asserts that
//! nothing is written meanwhile (no child deleted, replaced or added, no status write), that the
//! failing parents are retried with backoff (calls bounded), and that once the hook answers
//! again every parent converges with a bounded number of writes.
//!
//! Related, elsewhere: tests/composite.rs `bad_responses_and_failing_hooks_change_nothing`
//! (invalid hook answers and hook errors change no child), tests/webhook_contract.rs
//! `too_many_requests_without_retry_after_backs_off` (a bare 429 is retried with backoff) and
//! `an_oversized_response_is_refused_naming_the_limit_and_children_stay`.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ApiResource;
use serde_json::json;

const PARENTS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_faults_change_nothing_and_recover() {
    let h = Harness::new("webhook-faults").await;
    let mut hook = FaultyHook::start("v1", "ConfigMap", Duration::from_secs(3)).await;
    h.controller(
        "wh-faults",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}}],
            "hooks": {"sync": {"webhook": {"url": hook.url, "timeout": "1s"}}},
        }),
    )
    .await;
    let w = Workload::new(
        &h.client,
        &h.ns,
        &parent_ar(),
        &ApiResource::erase::<ConfigMap>(&()),
        &[("kubelambda-test", &h.label)],
    );
    w.create_parents("p", PARENTS, 1).await;
    w.wait_converged(1, "start").await;

    let mut v = 1;
    for (fault, mode, event) in [
        ("hook down", None, "connection refused"),
        ("hook slow", Some(HookMode::Slow), "timed out after"),
        (
            "hook 500",
            Some(HookMode::ServerError),
            "unsupported status code 500",
        ),
        (
            "hook garbage",
            Some(HookMode::Garbage),
            "response is not JSON",
        ),
        (
            "hook 429",
            Some(HookMode::TooManyRequests),
            "429 Too Many Requests",
        ),
    ] {
        let before = w.snapshot().await;
        let writes = h.engine().metrics.writes();
        match mode {
            None => hook.down().await,
            Some(mode) => hook.set_mode(mode),
        }
        v += 1;
        w.set_v(v).await;
        // Every parent's sync fails (each gets a Warning), and keeps failing for a while.
        for i in 0..PARENTS {
            h.warning(&format!("p{i}"), event).await;
        }
        let calls = hook.calls();
        tokio::time::sleep(Duration::from_secs(4)).await;
        let retried = hook.calls() - calls;
        eprintln!("CALLS {fault}: {retried} in 4 s for {PARENTS} failing parents");
        // Per-parent backoff from 5 ms doubling: about a dozen calls per parent in the first
        // seconds, fewer and fewer after; a hot loop would make thousands.
        assert!(
            retried <= PARENTS * 12,
            "{fault}: {retried} hook calls in 4 s for {PARENTS} parents: not backing off"
        );
        let during = w.snapshot().await;
        assert_intact(fault, &before, &during);
        assert_eq!(during, before, "{fault}: no child created or deleted");
        assert_writes_within(
            &format!("{fault}, while failing"),
            writes,
            h.engine().metrics.writes(),
            0,
        );

        match mode {
            None => hook.up().await,
            Some(_) => hook.set_mode(HookMode::Ok),
        }
        w.wait_converged(v, &format!("after {fault}")).await;
        assert_intact(fault, &before, &w.snapshot().await);
        // A child update and a status write per parent, plus a retry each.
        assert_writes_within(
            fault,
            writes,
            h.engine().metrics.writes(),
            (PARENTS as u64) * 4,
        );
    }
}
