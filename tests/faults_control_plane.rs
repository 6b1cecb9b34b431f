//! Faults of the control plane under a running engine (issue 13's fault suite): kube-apiserver
//! restarted, kube-apiserver paused (SIGSTOP) past the client's connect timeout, etcd
//! restarted. One PRIVATE control plane (restarting the shared one would break the tests that
//! run beside this one), the faults one after another on the same workload.
//!
//! After each fault, a change made to every parent must converge; the test asserts the
//! outcome (no duplicate child, no child deleted or replaced, status converged, writes within a
//! budget, none in the steady state after) and prints how long recovery took (`RECOVERY …`
//! lines; `cargo test --test faults_control_plane -- --nocapture`), never asserting on time.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ApiResource;
use kubelambda::engine::children::ApplyStrategy;
use serde_json::json;

/// Parents in the workload.
const PARENTS: usize = 20;

/// How long kube-apiserver stays frozen: longer than the client's 30 s connect timeout (kube's
/// default; the engine sets no read timeout, so requests sent meanwhile wait for the server).
const PAUSE: Duration = Duration::from_secs(35);

/// Writes a fault may cost: one child update and one status write per parent for the change,
/// three times over for retries of writes the fault interrupted.
const BUDGET: u64 = (PARENTS as u64) * 2 * 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_faults_lose_nothing_and_recover() {
    let dir = tempfile::Builder::new()
        .prefix("kubelambda-faults-")
        .tempdir()
        .expect("tempdir");
    let env = TestEnv::start(dir.path()).expect("a private control plane starts");
    let h = Harness::on_env(
        &env,
        "cp-faults",
        ApplyStrategy::ServerSide {
            field_manager: "kubelambda".into(),
        },
    )
    .await;
    h.controller(
        "faults",
        json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}}],
            "hooks": {"sync": {"jsonnet": {"source": fault_hook("v1", "ConfigMap")}}},
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
    for fault in ["apiserver restart", "apiserver pause", "etcd restart"] {
        let before = w.snapshot().await;
        let writes = h.engine().metrics.writes();
        match fault {
            "apiserver restart" => env.restart("apiserver").expect("restart kube-apiserver"),
            "apiserver pause" => {
                let pid = component_pid(env.dir(), "kube-apiserver");
                signal(pid, libc::SIGSTOP);
                tokio::time::sleep(PAUSE).await;
                signal(pid, libc::SIGCONT);
            }
            "etcd restart" => env.restart("etcd").expect("restart etcd"),
            _ => unreachable!(),
        }
        // A change made once the component is back must converge.
        v += 1;
        w.set_v(v).await;
        w.wait_converged(v, &format!("after {fault}")).await;
        let after = w.snapshot().await;
        assert_intact(fault, &before, &after);
        assert_eq!(after.len(), PARENTS, "{fault}: every parent is still there");
        assert_writes_within(fault, writes, h.engine().metrics.writes(), BUDGET);
        assert_eq!(
            h.engine().shared.informers.unestablished(),
            Vec::<(String, String)>::new(),
            "{fault}: every watch is established again"
        );

        // Converged means quiet: no write while nothing changes.
        let settled = h.engine().metrics.writes();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_writes_within(
            &format!("{fault}, steady state"),
            settled,
            h.engine().metrics.writes(),
            0,
        );
    }
}
