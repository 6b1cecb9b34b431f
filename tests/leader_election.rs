//! `kubelambda run --leader-election` against the real control plane: two replicas of the built
//! binary share one Lease; only the holder runs controllers, a standby takes over when the leader
//! dies, and a leader frozen past its lease never writes again when it wakes (it exits non-zero).
//!
//! Each replica's hook writes its own name (`--ext-str replica=…`) into the child ConfigMap, so
//! the child says which replica wrote it last.

mod common;

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use serde_json::json;

/// One ConfigMap per parent, naming the replica that wrote it.
const HOOK: &str = r#"
function(request) {
  children: [{
    apiVersion: 'v1', kind: 'ConfigMap',
    metadata: { name: request.parent.metadata.name + '-child' },
    data: { from: std.extVar('replica') },
  }],
}
"#;

/// A `kubelambda run --leader-election` process with its stderr collected.
struct Replica {
    name: &'static str,
    child: Child,
    stderr: Arc<Mutex<String>>,
    health: String,
    /// Reaped: its pid may belong to another process now, so it gets no more signals.
    exited: bool,
}

impl Replica {
    fn start(name: &'static str, test: &Test) -> Self {
        let health = free_address();
        let mut child = Command::new(BIN)
            .args([
                "run",
                "--kubeconfig",
                &TestEnv::shared().kubeconfig_path().display().to_string(),
                "--metrics-address=0",
                "--health-probe-bind-address",
                &health,
                "--target-label-selector",
                &format!("kubelambda-test={}", test.label),
                "--eval-workers=1",
                "--ext-str",
                &format!("replica={name}"),
                "--leader-election",
                "--leader-election-namespace",
                &test.ns,
                "--leader-election-id",
                &test.lease,
                "--leader-election-lease-duration=3s",
                "--leader-election-renew-deadline=2s",
                "--leader-election-retry-period=500ms",
            ])
            .env_remove("RUST_LOG")
            .env("POD_NAME", format!("replica-{name}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kubelambda");
        let (stderr, _reader) = collect_stderr(&mut child);
        Self {
            name,
            child,
            stderr,
            health,
            exited: false,
        }
    }

    fn logs(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The identity it logged when it took the Lease, if it did.
    fn leader_identity(&self) -> Option<String> {
        let logs = self.logs();
        let line = logs
            .lines()
            .find(|l| l.contains("acquired the leader election Lease"))?;
        line.rsplit(" as ").next().map(|s| s.trim().to_owned())
    }

    fn signal(&self, signal: i32) {
        if self.exited {
            return;
        }
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: `kill` has no memory effects; the pid is our own child, not yet reaped.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    async fn readyz(&self) -> String {
        wait_until_ok(&format!("/readyz of replica {}", self.name), || async {
            let response = reqwest::get(format!("http://{}/readyz", self.health)).await?;
            response.error_for_status()?.text().await
        })
        .await
    }

    /// Waits for the process to exit by itself.
    async fn exit_status(&mut self) -> ExitStatus {
        let what = format!("replica {} to exit", self.name);
        let child = &mut self.child;
        let status = wait_until(&what, || {
            let status = child.try_wait().expect("wait");
            async move { status }
        })
        .await;
        self.exited = true;
        status
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("replica {} logged:\n{}", self.name, self.logs());
        }
        if self.exited {
            return;
        }
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    listener.local_addr().expect("local address").to_string()
}

/// A namespace, a label for this test's controller and parents, and a Lease name.
struct Test {
    client: kube::Client,
    ns: String,
    label: String,
    lease: String,
    controller: String,
}

impl Test {
    async fn new(prefix: &str) -> Self {
        let client = TestEnv::shared().client().await;
        install_crds(&client).await;
        create_crd(&client, test_parent_crd()).await;
        let ns = create_namespace(&client, prefix).await;
        let label = ns.clone();
        let controller = format!("le-{ns}");
        create_cc(
            &client,
            json!({
                "apiVersion": "metacontroller.k8s.io/v1alpha1",
                "kind": "CompositeController",
                "metadata": {"name": controller, "labels": {"kubelambda-test": label}},
                "spec": {
                    "parentResource": {
                        "apiVersion": "test.kubelambda.io/v1",
                        "resource": "testparents",
                        "labelSelector": {"matchLabels": {"kubelambda-test": label}},
                    },
                    "generateSelector": true,
                    "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
                    "hooks": {"sync": {"jsonnet": {"source": HOOK}}},
                },
            }),
        )
        .await;
        Self {
            client,
            lease: format!("lock-{ns}"),
            ns,
            label,
            controller,
        }
    }

    async fn parent(&self, name: &str) {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "test.kubelambda.io/v1",
            "kind": "TestParent",
            "metadata": {"name": name, "labels": {"kubelambda-test": self.label}},
            "spec": {},
        }))
        .expect("parent");
        Api::<DynamicObject>::namespaced_with(self.client.clone(), &self.ns, &parent_ar())
            .create(&PostParams::default(), &obj)
            .await
            .expect("create parent");
    }

    /// Waits until the parent's child was written by `replica`.
    async fn child_from(&self, parent: &str, replica: &str) -> ConfigMap {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.ns);
        let name = format!("{parent}-child");
        wait_until_ok(&format!("{name} written by replica {replica}"), || async {
            match api.get_opt(&name).await {
                Ok(Some(child))
                    if child
                        .data
                        .as_ref()
                        .and_then(|d| d.get("from"))
                        .map(String::as_str)
                        == Some(replica) =>
                {
                    Ok(child)
                }
                other => Err(format!("{other:?}")),
            }
        })
        .await
    }

    async fn holder(&self) -> Option<String> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.ns);
        leases
            .get_opt(&self.lease)
            .await
            .ok()
            .flatten()?
            .spec?
            .holder_identity
    }

    /// Waits until one of `replicas` logs that it took the Lease; returns its index.
    async fn leader_of(&self, replicas: &[&Replica]) -> usize {
        wait_until("a replica to take the Lease", || async {
            replicas.iter().position(|r| r.leader_identity().is_some())
        })
        .await
    }

    async fn cleanup(self) {
        let ccs: Api<DynamicObject> = Api::all_with(self.client.clone(), &cc_ar());
        let _ = ccs.delete(&self.controller, &DeleteParams::default()).await;
        delete_namespace(&self.client, &self.ns).await;
    }
}

/// Two replicas: exactly one takes the Lease and runs the controller; the other stands by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_replica_leads_and_syncs() {
    let test = Test::new("leader-one").await;
    let a = Replica::start("a", &test);
    let b = Replica::start("b", &test);
    let replicas = [&a, &b];
    let first = test.leader_of(&replicas).await;
    let (leader, standby) = (replicas[first], replicas[1 - first]);
    let identity = leader.leader_identity().expect("leader identity");
    assert!(
        identity.starts_with(&format!("replica-{}_", leader.name)),
        "{identity}"
    );
    assert_eq!(test.holder().await.as_deref(), Some(identity.as_str()));

    test.parent("p1").await;
    test.child_from("p1", leader.name).await;
    wait_until("the leader to log its controller", || async {
        leader
            .logs()
            .contains(&format!("started CompositeController {}", test.controller))
            .then_some(())
    })
    .await;
    // The standby has seen the Lease held and never started anything.
    wait_until("the standby to see the Lease held", || async {
        standby
            .logs()
            .contains(&format!("held by {identity}"))
            .then_some(())
    })
    .await;
    let logs = standby.logs();
    assert!(
        !logs.contains("acquired the leader election Lease"),
        "{logs}"
    );
    assert!(!logs.contains("started CompositeController"), "{logs}");
    assert_eq!(leader.readyz().await, "ok: leader\n");
    assert_eq!(standby.readyz().await, "ok: standby\n");
    assert_eq!(
        test.holder().await.as_deref(),
        Some(identity.as_str()),
        "the leader kept the Lease"
    );
    drop((a, b));
    test.cleanup().await;
}

/// `kill -9` the leader: the standby takes the Lease once it runs out and syncs new parents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_when_the_leader_is_killed() {
    let test = Test::new("leader-kill").await;
    let mut a = Replica::start("a", &test);
    let mut b = Replica::start("b", &test);
    let first = test.leader_of(&[&a, &b]).await;
    let (leader, standby) = if first == 0 {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    test.parent("p1").await;
    test.child_from("p1", leader.name).await;

    leader.signal(libc::SIGKILL);
    let status = leader.exit_status().await;
    assert!(!status.success(), "{status}");
    let identity = wait_until("the standby to take the Lease", || async {
        standby.leader_identity()
    })
    .await;
    assert_eq!(test.holder().await.as_deref(), Some(identity.as_str()));
    test.parent("p2").await;
    test.child_from("p2", standby.name).await;
    let leases: Api<Lease> = Api::namespaced(test.client.clone(), &test.ns);
    let spec = leases
        .get(&test.lease)
        .await
        .expect("Lease")
        .spec
        .expect("spec");
    assert_eq!(spec.lease_transitions, Some(1), "{spec:?}");
    assert_eq!(standby.readyz().await, "ok: leader\n");
    drop((a, b));
    test.cleanup().await;
}

/// SIGSTOP the leader past its lease, let the standby take over, SIGCONT the old leader: it
/// notices it lost the Lease and exits non-zero without writing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_that_wakes_after_losing_the_lease_exits_without_writing() {
    let test = Test::new("leader-stop").await;
    let mut a = Replica::start("a", &test);
    let mut b = Replica::start("b", &test);
    let first = test.leader_of(&[&a, &b]).await;
    let (leader, standby) = if first == 0 {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    test.parent("p1").await;
    test.child_from("p1", leader.name).await;

    leader.signal(libc::SIGSTOP);
    let identity = wait_until("the standby to take the Lease", || async {
        standby.leader_identity()
    })
    .await;
    // A parent created while the old leader sleeps: when it wakes, its watch delivers p2 and it
    // would write p2's child as its own if anything let it.
    test.parent("p2").await;
    let p2_child = test.child_from("p2", standby.name).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(test.client.clone(), &test.ns);
    let p1_child = configmaps.get("p1-child").await.expect("p1-child");

    leader.signal(libc::SIGCONT);
    let status = leader.exit_status().await;
    let logs = leader.logs();
    assert!(!status.success(), "{status}:\n{logs}");
    assert!(logs.contains("leader election lost"), "{logs}");

    for before in [p1_child, p2_child] {
        let name = before.metadata.name.clone().expect("name");
        let after = configmaps.get(&name).await.expect("child");
        assert_eq!(
            (after.metadata.resource_version, after.data),
            (before.metadata.resource_version, before.data),
            "the old leader wrote {name} after waking:\n{logs}"
        );
    }
    assert_eq!(test.holder().await.as_deref(), Some(identity.as_str()));
    drop((a, b));
    test.cleanup().await;
}

/// The engine's client refuses writes while the fence is closed (a leader past its renew
/// deadline), whichever task sends them, and reads still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fenced_client_refuses_writes_unless_the_lease_is_held() {
    use kubelambda::leader::Fence;
    use kubelambda::telemetry::api_metrics::{self, ApiMetrics};

    let env = TestEnv::shared();
    let admin = env.client().await;
    let ns = create_namespace(&admin, "leader-fence").await;
    let fence = Fence::default();
    let metrics = ApiMetrics::default();
    let client = api_metrics::fenced_client(env.config().await, metrics, None, Some(fence.clone()))
        .expect("client");
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns);
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "fenced"}})).expect("cm");

    let refused = configmaps
        .create(&PostParams::default(), &cm)
        .await
        .expect_err("closed fence");
    assert!(
        refused
            .to_string()
            .contains("does not hold the leader election Lease"),
        "{refused}"
    );
    assert!(
        configmaps.list(&Default::default()).await.is_ok(),
        "reads pass"
    );

    fence.open_until(std::time::Instant::now() + std::time::Duration::from_secs(60));
    configmaps
        .create(&PostParams::default(), &cm)
        .await
        .expect("open fence");

    fence.close();
    let refused = configmaps
        .delete("fenced", &DeleteParams::default())
        .await
        .expect_err("closed again");
    assert!(refused.to_string().contains("DELETE"), "{refused}");
    let admin_configmaps: Api<ConfigMap> = Api::namespaced(admin.clone(), &ns);
    assert!(
        admin_configmaps
            .get_opt("fenced")
            .await
            .expect("get")
            .is_some()
    );
    delete_namespace(&admin, &ns).await;
}

/// SIGTERM: the leader stops, gives the Lease up (no holder) and exits 0, so a standby need not
/// wait for the lease to run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_leader_releases_the_lease() {
    let test = Test::new("leader-term").await;
    let mut a = Replica::start("a", &test);
    test.leader_of(&[&a]).await;
    test.parent("p1").await;
    test.child_from("p1", "a").await;
    a.signal(libc::SIGTERM);
    let status = a.exit_status().await;
    let logs = a.logs();
    assert!(status.success(), "{status}:\n{logs}");
    assert!(
        logs.contains("released the leader election Lease"),
        "{logs}"
    );
    assert_eq!(test.holder().await, None, "{logs}");

    let b = Replica::start("b", &test);
    let identity = wait_until("b to take the released Lease", || async {
        b.leader_identity()
    })
    .await;
    assert_eq!(test.holder().await.as_deref(), Some(identity.as_str()));
    let leases: Api<Lease> = Api::namespaced(test.client.clone(), &test.ns);
    let spec = leases
        .get(&test.lease)
        .await
        .expect("Lease")
        .spec
        .expect("spec");
    assert_eq!(spec.lease_transitions, Some(1), "{spec:?}");
    test.parent("p2").await;
    test.child_from("p2", "b").await;
    drop((a, b));
    test.cleanup().await;
}
