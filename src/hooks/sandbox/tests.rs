//! The pool's bookkeeping, without worker processes.

use std::time::Duration;

use super::*;

/// A pool whose workers could never start: any request that reached one would fail with a
/// worker error, so a deadline error proves the request never got that far.
fn unstartable(workers: usize, deadline: Duration) -> Sandbox {
    Sandbox::new(SandboxConfig {
        program: PathBuf::from("/nonexistent/kubelambda"),
        workers,
        limits: Limits {
            deadline,
            ..Limits::default()
        },
        jsonnet: JsonnetOptions::default(),
        response_cache_bytes: 0,
    })
}

fn hook() -> HookSource {
    HookSource::JsonnetInline {
        name: "h".into(),
        code: "{}".into(),
        jpath: vec![],
    }
}

#[tokio::test]
async fn a_request_that_waits_past_its_deadline_is_not_evaluated_and_says_why() {
    let pool = unstartable(1, Duration::from_millis(100)).for_tenant("cc-a");
    let tenant: Tenant = Arc::from("cc-a");
    let held = pool.inner.slots.acquire(&tenant).await;
    let err = pool
        .evaluate(&hook(), b"{}")
        .await
        .expect_err("no worker free");
    assert_eq!(
        err,
        EvalError::limit(
            LimitKind::Deadline,
            "the request waited 100ms for a worker and was not evaluated (the deadline includes \
             waiting; cc-a held 1 of 1 workers, at most 1 at once)"
        )
    );
    drop(held);
    // With the worker free, the request does reach it (and fails to start it).
    let err = pool
        .evaluate(&hook(), b"{}")
        .await
        .expect_err("unstartable");
    assert!(matches!(err, EvalError::Worker(_)), "{err}");
}

#[tokio::test]
async fn a_tenant_at_its_cap_waits_while_another_tenant_is_served() {
    let pool = unstartable(2, Duration::from_millis(100));
    let busy: Tenant = Arc::from("cc-busy");
    // The default cap with two workers is one per tenant.
    let held = pool.inner.slots.acquire(&busy).await;
    let err = pool
        .for_tenant("cc-busy")
        .evaluate(&hook(), b"{}")
        .await
        .expect_err("at its cap");
    assert!(
        err.to_string()
            .contains("cc-busy held 1 of 2 workers, at most 1 at once"),
        "{err}"
    );
    let err = pool
        .for_tenant("cc-other")
        .evaluate(&hook(), b"{}")
        .await
        .expect_err("unstartable");
    assert!(matches!(err, EvalError::Worker(_)), "served: {err}");
    drop(held);
}

#[test]
fn the_default_cap_leaves_a_worker_to_the_others() {
    let cap = |workers, per_tenant| {
        SandboxPolicy {
            per_tenant,
            ..SandboxPolicy::default()
        }
        .per_tenant(workers)
    };
    assert_eq!(cap(1, None), 1);
    assert_eq!(cap(2, None), 1);
    assert_eq!(cap(3, None), 2);
    assert_eq!(cap(8, None), 7);
    assert_eq!(cap(3, Some(0)), 1);
    assert_eq!(cap(3, Some(9)), 3);
}

#[test]
fn workers_inherit_only_the_logging_variables() {
    // Whatever this process has (PATH, HOME, CARGO_*), only PASSED_ENV names can come through.
    for (name, _) in confine::worker_env() {
        assert!(confine::PASSED_ENV.contains(&name.as_str()), "{name}");
    }
    assert!(std::env::var_os("PATH").is_some());
}
