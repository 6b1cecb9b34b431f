//! Controllers of controllers: watches CompositeControllers and DecoratorControllers and keeps
//! exactly one running instance per object, restarted when its spec changes and stopped when it
//! is deleted (its finalizers then removed from the parents, so none is left undeletable).

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::utils::Backoff as _;
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tokio_util::task::AbortOnDropHandle;

use super::Shared;
use super::controller::{self, Running, StartError};
use super::events::EventType;
use super::informer::WatchBackoff;
use super::overlap::may_share_parents;
use super::queue::{Backoff, WorkQueue};
use crate::api::{CompositeController, DecoratorController};

/// A kind of controller object this process runs.
pub trait ControllerObject:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    type Spec: PartialEq + Clone + Send + Sync + 'static;

    fn spec(&self) -> &Self::Spec;

    fn start(&self, shared: &Shared) -> impl Future<Output = Result<Running, StartError>> + Send;

    /// What both controllers manage, when `self` and a controller with `other` may sync the
    /// same parents (each would undo the other's writes).
    fn shares_parents_with(&self, _other: &Self::Spec) -> Option<String> {
        None
    }
}

impl ControllerObject for CompositeController {
    type Spec = crate::api::CompositeControllerSpec;

    fn spec(&self) -> &Self::Spec {
        &self.spec
    }

    fn start(&self, shared: &Shared) -> impl Future<Output = Result<Running, StartError>> + Send {
        controller::start_composite(self, shared)
    }

    fn shares_parents_with(&self, other: &Self::Spec) -> Option<String> {
        may_share_parents(&self.spec, other).then(|| {
            let parent = &self.spec.parent_resource;
            format!("{} ({})", parent.resource, parent.api_version)
        })
    }
}

impl ControllerObject for DecoratorController {
    type Spec = crate::api::DecoratorControllerSpec;

    fn spec(&self) -> &Self::Spec {
        &self.spec
    }

    fn start(&self, shared: &Shared) -> impl Future<Output = Result<Running, StartError>> + Send {
        controller::start_decorator(self, shared)
    }
}

struct Instance<S> {
    spec: S,
    /// `None` when the spec cannot run (a permanent error was reported); waits for a new spec.
    running: Option<Running>,
}

type Instances<K> = Mutex<HashMap<String, Instance<<K as ControllerObject>::Spec>>>;

/// Retries of a controller that could not start (a CRD not yet served by discovery, a Secret
/// not yet created): quick at first, and never more than 10 s apart, since nothing else will
/// start the controller once the cause is gone.
const START_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(200),
    max: Duration::from_secs(10),
};

/// Runs until the watch stream ends (it does not, short of the task being dropped).
pub async fn run<K: ControllerObject>(shared: Shared, target: Option<String>) {
    let kind = K::kind(&()).into_owned();
    let api: Api<K> = Api::all(shared.client.clone());
    let mut config = watcher::Config::default();
    if let Some(selector) = &target {
        config = config.labels(selector);
    }
    let latest: Arc<Mutex<HashMap<String, K>>> = Arc::default();
    let instances: Arc<Instances<K>> = Arc::default();
    let queue: WorkQueue<String> = WorkQueue::new(START_BACKOFF);

    let reconciler = {
        let (latest, instances, queue, shared) = (
            latest.clone(),
            instances.clone(),
            queue.clone(),
            shared.clone(),
        );
        // Aborted when this function's future is dropped (the engine stops): the reconciler owns
        // the running controllers, which must stop with it.
        AbortOnDropHandle::new(tokio::spawn(async move {
            while let Some(name) = queue.next().await {
                let want = latest.lock().await.get(&name).cloned();
                let result = reconcile(&shared, &instances, &name, want).await;
                queue.done(&name);
                match result {
                    Ok(()) => queue.forget(&name),
                    Err(()) => {
                        queue.add_rate_limited(name);
                    }
                }
            }
        }))
    };

    // Retried as the informers' watches are (see `WatchBackoff`): within 2 s of the API server
    // coming back.
    let mut stream = watcher::watcher(api, config).boxed();
    let mut backoff = WatchBackoff::default();
    let mut listing: Option<Vec<String>> = None;
    while let Some(event) = stream.next().await {
        if matches!(event, Ok(ref e) if !matches!(e, Event::Init)) {
            backoff.reset();
        }
        if event.is_err() {
            // After reporting it below.
            let delay = backoff.next().unwrap_or(WatchBackoff::MAX);
            report_watch_error::<K>(&kind, event);
            tokio::time::sleep(delay).await;
            continue;
        }
        match event {
            Ok(Event::Apply(cc)) | Ok(Event::InitApply(cc)) => {
                let name = cc.name_any();
                if let Some(list) = listing.as_mut() {
                    list.push(name.clone());
                }
                latest.lock().await.insert(name.clone(), cc);
                queue.add(name);
            }
            Ok(Event::Delete(cc)) => {
                let name = cc.name_any();
                latest.lock().await.remove(&name);
                queue.add(name);
            }
            Ok(Event::Init) => listing = Some(Vec::new()),
            Ok(Event::InitDone) => {
                let listed = listing.take().unwrap_or_default();
                let mut latest = latest.lock().await;
                let gone: Vec<String> = latest
                    .keys()
                    .filter(|k| !listed.contains(k))
                    .cloned()
                    .collect();
                for name in gone {
                    latest.remove(&name);
                    queue.add(name);
                }
            }
            Err(_) => {}
        }
    }
    queue.shutdown();
    let _ = reconciler.await;
}

fn report_watch_error<K: ControllerObject>(kind: &str, event: Result<Event<K>, watcher::Error>) {
    match event {
        Err(e) if is_missing_crd(&e) => tracing::warn!(
            "the {kind} CRD is not installed yet (install it with `kubelambda crds | kubectl apply -f -`); retrying"
        ),
        Err(e) => tracing::warn!("watching {kind}s: {e}"),
        Ok(_) => {}
    }
}

/// The API server answers 404 for a resource type it does not serve.
fn is_missing_crd(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s)) => s.code == 404,
        _ => false,
    }
}

async fn event<K: ControllerObject>(
    shared: &Shared,
    object: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let reference = object.object_ref(&());
    shared
        .recorder
        .publish(&reference, type_, reason, reason, &note)
        .await;
}

/// Both controllers may claim the same parents: say so on both, since each sync would undo the
/// other's.
async fn report_overlap<K: ControllerObject>(
    shared: &Shared,
    started: &K,
    other: &str,
    what: &str,
) {
    let kind = K::kind(&());
    let note = |a: &str, b: &str| {
        format!(
            "{kind}s {a} and {b} both manage {what} and their parent selectors can match the same objects: each will overwrite the other's children and status"
        )
    };
    let name = started.name_any();
    tracing::warn!("{}", note(&name, other));
    event(
        shared,
        started,
        EventType::Warning,
        "OverlappingParents",
        note(&name, other),
    )
    .await;
    let other_ref = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(kind.to_string()),
        name: Some(other.to_owned()),
        ..Default::default()
    };
    shared
        .recorder
        .publish(
            &other_ref,
            EventType::Warning,
            "OverlappingParents",
            "OverlappingParents",
            &note(other, &name),
        )
        .await;
}

/// Brings the running instance of `name` in line with `want`. `Err` means "retry later".
async fn reconcile<K: ControllerObject>(
    shared: &Shared,
    instances: &Instances<K>,
    name: &str,
    want: Option<K>,
) -> Result<(), ()> {
    let kind = K::kind(&());
    let mut instances = instances.lock().await;
    let Some(object) = want else {
        if let Some(running) = instances.remove(name).and_then(|i| i.running) {
            running.retire().await;
            tracing::info!("stopped {kind} {name}");
        }
        return Ok(());
    };
    if instances
        .get(name)
        .is_some_and(|i| i.spec == *object.spec())
    {
        return Ok(());
    }
    if let Some(old) = instances.remove(name) {
        drop(old);
        tracing::info!("stopping {kind} {name}: its spec changed");
    }
    match object.start(shared).await {
        Ok(running) => {
            tracing::info!("started {kind} {name}");
            event(
                shared,
                &object,
                EventType::Normal,
                "Started",
                format!("Started controller: {name}"),
            )
            .await;
            for (other, instance) in instances.iter() {
                if instance.running.is_some()
                    && let Some(what) = object.shares_parents_with(&instance.spec)
                {
                    report_overlap(shared, &object, other, &what).await;
                }
            }
            instances.insert(
                name.to_owned(),
                Instance {
                    spec: object.spec().clone(),
                    running: Some(running),
                },
            );
            Ok(())
        }
        Err(e) => {
            tracing::warn!("cannot start {kind} {name}: {e}");
            let reason = if e.is_permanent() {
                "SyncError"
            } else {
                "CreateError"
            };
            event(
                shared,
                &object,
                EventType::Warning,
                reason,
                format!("Cannot start controller: {e}"),
            )
            .await;
            if e.is_permanent() {
                instances.insert(
                    name.to_owned(),
                    Instance {
                        spec: object.spec().clone(),
                        running: None,
                    },
                );
                Ok(())
            } else {
                Err(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;
    use kube::runtime::watcher;

    use super::is_missing_crd;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            Status::failure("page not found", "NotFound").with_code(code),
        ))
    }

    #[test]
    fn a_404_while_listing_means_the_crd_is_missing() {
        assert!(is_missing_crd(&watcher::Error::InitialListFailed(
            api_error(404)
        )));
        assert!(is_missing_crd(&watcher::Error::WatchStartFailed(
            api_error(404)
        )));
        assert!(!is_missing_crd(&watcher::Error::InitialListFailed(
            api_error(403)
        )));
    }
}
