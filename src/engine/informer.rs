//! Shared informers: exactly one watch per resource type for the whole process, whatever the number
//! of controllers that need it. Each informer keeps its own cache, indexed by controller-owner UID,
//! and broadcasts changes to its subscribers. The watch stops when the last subscriber lets go.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, TypeMeta};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use tokio::sync::{broadcast, watch};

/// Namespace (empty for cluster-scoped objects) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: Option<&str>, name: &str) -> Self {
        Self {
            namespace: namespace.unwrap_or_default().to_owned(),
            name: name.to_owned(),
        }
    }

    pub fn of(obj: &DynamicObject) -> Self {
        Self::new(obj.metadata.namespace.as_deref(), &obj.name_any())
    }

    pub fn namespace(&self) -> Option<&str> {
        (!self.namespace.is_empty()).then_some(self.namespace.as_str())
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.namespace() {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A change seen by an informer.
#[derive(Clone, Debug)]
pub enum Change {
    Applied(Arc<DynamicObject>),
    Deleted(Arc<DynamicObject>),
}

/// The UID of an object's controller owner, if it has one.
pub fn controller_uid(obj: &DynamicObject) -> Option<&str> {
    obj.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

/// How long a watch waits before trying again after a failure: 200 ms doubling up to 2 s, back
/// to 200 ms once the server delivers something.
///
/// Why not kube's default (800 ms doubling up to 30 s, client-go's reflector): after an API
/// server restart of a few seconds, or a CRD deleted and created again, that backoff has already
/// grown to 10–30 s, and every change waits for it (recovery took 22 s and 74 s). A watch retried
/// every 2 s costs one request per type and 2 s, which even a struggling API server takes.
#[derive(Debug, Clone, Default)]
pub struct WatchBackoff {
    failures: u32,
}

impl WatchBackoff {
    pub const BASE: Duration = Duration::from_millis(200);
    pub const MAX: Duration = Duration::from_secs(2);
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = Self::BASE
            .saturating_mul(1u32 << self.failures.min(16))
            .min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        Some(delay)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A watch failing again and again reports an error at least every [`WatchBackoff::MAX`] plus the
/// time the request takes; one that reported none for this long has been re-established.
const ESTABLISHED_AFTER_QUIET: Duration = Duration::from_secs(10);

/// Whether a watch is established: listed, and not failing since.
#[derive(Debug, Default)]
struct WatchHealth {
    listed: bool,
    /// The last error, unless something was received after it.
    failing_since: Option<(Instant, String)>,
}

impl WatchHealth {
    fn received(&mut self) {
        self.failing_since = None;
    }

    fn failed(&mut self, error: String) {
        self.failing_since = Some((Instant::now(), error));
    }

    /// `None` when established, else why not.
    fn problem(&self) -> Option<String> {
        if let Some((at, error)) = &self.failing_since
            && at.elapsed() < ESTABLISHED_AFTER_QUIET
        {
            return Some(error.clone());
        }
        (!self.listed).then(|| "not listed yet".to_owned())
    }
}

#[derive(Default)]
struct Cache {
    objects: HashMap<ObjectKey, Arc<DynamicObject>>,
    /// Controller-owner UID → owned objects. Orphans live under the empty string.
    by_owner: HashMap<String, HashSet<ObjectKey>>,
}

impl Cache {
    fn insert(&mut self, obj: Arc<DynamicObject>) -> Option<Arc<DynamicObject>> {
        let key = ObjectKey::of(&obj);
        let old = self.remove(&key);
        let owner = controller_uid(&obj).unwrap_or_default().to_owned();
        self.by_owner.entry(owner).or_default().insert(key.clone());
        self.objects.insert(key, obj);
        old
    }

    fn remove(&mut self, key: &ObjectKey) -> Option<Arc<DynamicObject>> {
        let old = self.objects.remove(key)?;
        let owner = controller_uid(&old).unwrap_or_default();
        if let Some(set) = self.by_owner.get_mut(owner) {
            set.remove(key);
            if set.is_empty() {
                self.by_owner.remove(owner);
            }
        }
        Some(old)
    }
}

/// One watch over one resource type, shared.
pub struct Informer {
    cache: RwLock<Cache>,
    health: Mutex<WatchHealth>,
    changes: broadcast::Sender<Change>,
    ready: watch::Receiver<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Informer {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().ok().and_then(|mut t| t.take()) {
            task.abort();
        }
    }
}

impl Informer {
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Waits until the first full list has been received.
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// `None` while the watch is established (listed, and not failing); else why it is not,
    /// e.g. the last watch error.
    pub fn watch_problem(&self) -> Option<String> {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .problem()
    }

    fn health(&self) -> std::sync::MutexGuard<'_, WatchHealth> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Arc<DynamicObject>> {
        self.read().objects.get(key).cloned()
    }

    /// Every cached object, optionally only those in `namespace`.
    pub fn list(&self, namespace: Option<&str>) -> Vec<Arc<DynamicObject>> {
        self.read()
            .objects
            .iter()
            .filter(|(k, _)| namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Objects whose controller owner has this UID.
    pub fn owned_by(&self, uid: &str) -> Vec<Arc<DynamicObject>> {
        let cache = self.read();
        cache
            .by_owner
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|k| cache.objects.get(k).cloned())
            .collect()
    }

    /// Objects without a controller owner, optionally only in `namespace`.
    pub fn orphans(&self, namespace: Option<&str>) -> Vec<Arc<DynamicObject>> {
        let cache = self.read();
        cache
            .by_owner
            .get("")
            .into_iter()
            .flatten()
            .filter(|k| namespace.is_none_or(|ns| k.namespace == ns))
            .filter_map(|k| cache.objects.get(k).cloned())
            .collect()
    }

    fn apply(&self, obj: DynamicObject) {
        let obj = Arc::new(obj);
        let old = self
            .cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(obj.clone());
        // A re-delivery of the same version (e.g. after a relist) is not a change.
        if old.is_some_and(|o| o.metadata.resource_version == obj.metadata.resource_version) {
            return;
        }
        let _ = self.changes.send(Change::Applied(obj));
    }

    fn delete(&self, obj: DynamicObject) {
        let key = ObjectKey::of(&obj);
        let old = self
            .cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        let _ = self
            .changes
            .send(Change::Deleted(old.unwrap_or_else(|| Arc::new(obj))));
    }

    /// A relist finished: drop what the server no longer has.
    fn replace_all(&self, listed: Vec<DynamicObject>) {
        let listed_keys: HashSet<ObjectKey> = listed.iter().map(ObjectKey::of).collect();
        let gone: Vec<ObjectKey> = self
            .read()
            .objects
            .keys()
            .filter(|k| !listed_keys.contains(k))
            .cloned()
            .collect();
        for key in gone {
            let old = self
                .cache
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            if let Some(old) = old {
                let _ = self.changes.send(Change::Deleted(old));
            }
        }
        for obj in listed {
            self.apply(obj);
        }
    }
}

/// Hands out shared informers, one per resource type, and forgets them when unused.
#[derive(Clone)]
pub struct InformerFactory {
    client: Client,
    informers: Arc<Mutex<HashMap<String, Weak<Informer>>>>,
}

fn resource_id(ar: &ApiResource) -> String {
    format!("{}/{}", ar.api_version, ar.plural)
}

impl InformerFactory {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            informers: Arc::default(),
        }
    }

    /// How many watches are open now.
    pub fn active(&self) -> usize {
        self.informers
            .lock()
            .map(|m| m.values().filter(|w| w.strong_count() > 0).count())
            .unwrap_or(0)
    }

    /// The watches that are not established (not listed yet, or failing), each with the reason:
    /// empty when every watch this process needs works. For readiness (`/readyz`): a watch that
    /// fails means changes of its type are not seen.
    pub fn unestablished(&self) -> Vec<(String, String)> {
        let informers: Vec<(String, Arc<Informer>)> = self
            .informers
            .lock()
            .map(|m| {
                m.iter()
                    .filter_map(|(id, w)| Some((id.clone(), w.upgrade()?)))
                    .collect()
            })
            .unwrap_or_default();
        let mut problems: Vec<(String, String)> = informers
            .into_iter()
            .filter_map(|(id, informer)| Some((id, informer.watch_problem()?)))
            .collect();
        problems.sort();
        problems
    }

    /// The informer for `ar`, started on first use. Keep the `Arc` for as long as you need it.
    pub fn informer(&self, ar: &ApiResource) -> Arc<Informer> {
        let id = resource_id(ar);
        let mut informers = self.informers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = informers.get(&id).and_then(Weak::upgrade) {
            return existing;
        }
        let (ready_tx, ready_rx) = watch::channel(false);
        let (changes, _) = broadcast::channel(16384);
        let informer = Arc::new(Informer {
            cache: RwLock::default(),
            health: Mutex::default(),
            changes,
            ready: ready_rx,
            task: Mutex::new(None),
        });
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), ar);
        let weak = Arc::downgrade(&informer);
        let task = tokio::spawn(run_watch(api, ar.clone(), weak, ready_tx, id.clone()));
        if let Ok(mut slot) = informer.task.lock() {
            *slot = Some(task);
        }
        informers.insert(id, Arc::downgrade(&informer));
        informer
    }
}

/// Items of a list response have no `apiVersion` and `kind` (watch events have them); every
/// cached object gets them from the informer's type, so hooks are sent whole objects, as
/// Metacontroller's informers give them.
fn with_types(mut obj: DynamicObject, ar: &ApiResource) -> DynamicObject {
    if obj
        .types
        .as_ref()
        .is_none_or(|t| t.api_version.is_empty() || t.kind.is_empty())
    {
        obj.types = Some(TypeMeta {
            api_version: ar.api_version.clone(),
            kind: ar.kind.clone(),
        });
    }
    obj
}

async fn run_watch(
    api: Api<DynamicObject>,
    ar: ApiResource,
    informer: Weak<Informer>,
    ready: watch::Sender<bool>,
    id: String,
) {
    // No `StreamBackoff`: it resets on every item, `Event::Init` included, which the watcher sends
    // before each list attempt, so a list that keeps failing (a deleted CRD) would be retried
    // at the smallest delay forever. Here only what comes from the server resets it.
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    let mut backoff = WatchBackoff::default();
    let mut relist: Option<Vec<DynamicObject>> = None;
    while let Some(event) = stream.next().await {
        let Some(informer) = informer.upgrade() else {
            return;
        };
        match event {
            Ok(Event::Init) => relist = Some(Vec::new()),
            Ok(event) => {
                backoff.reset();
                informer.health().received();
                match event {
                    Event::Apply(obj) => informer.apply(with_types(obj, &ar)),
                    Event::Delete(obj) => informer.delete(with_types(obj, &ar)),
                    Event::InitApply(obj) => match relist.as_mut() {
                        Some(buffer) => buffer.push(with_types(obj, &ar)),
                        None => informer.apply(with_types(obj, &ar)),
                    },
                    Event::InitDone => {
                        informer.replace_all(relist.take().unwrap_or_default());
                        informer.health().listed = true;
                        let _ = ready.send(true);
                    }
                    Event::Init => {}
                }
            }
            Err(e) => {
                tracing::warn!("watch {id}: {e}");
                informer.health().failed(e.to_string());
                drop(informer);
                let delay = backoff.next().unwrap_or(WatchBackoff::MAX);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_backoff_doubles_to_two_seconds_and_resets() {
        let mut backoff = WatchBackoff::default();
        let delays: Vec<u128> = (0..7)
            .map(|_| backoff.next().expect("never ends").as_millis())
            .collect();
        assert_eq!(delays, [200, 400, 800, 1600, 2000, 2000, 2000]);
        backoff.reset();
        assert_eq!(backoff.next(), Some(WatchBackoff::BASE));
    }

    #[test]
    fn a_watch_is_established_once_listed_and_not_failing() {
        let mut health = WatchHealth::default();
        assert_eq!(health.problem().as_deref(), Some("not listed yet"));
        health.listed = true;
        assert_eq!(health.problem(), None);
        health.failed("404 Not Found".into());
        assert_eq!(health.problem().as_deref(), Some("404 Not Found"));
        health.received();
        assert_eq!(health.problem(), None);
        // A failure long enough ago was followed by a successful retry (a failing watch
        // reports again within `WatchBackoff::MAX`).
        health.failing_since = Some((
            Instant::now() - ESTABLISHED_AFTER_QUIET - Duration::from_secs(1),
            "old".into(),
        ));
        assert_eq!(health.problem(), None);
    }

    #[test]
    fn listed_objects_get_their_api_version_and_kind() {
        let ar = ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
        };
        let listed: DynamicObject =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "a"}})).expect("object");
        let typed = serde_json::to_value(with_types(listed, &ar)).expect("json");
        assert_eq!(typed["apiVersion"], "v1");
        assert_eq!(typed["kind"], "ConfigMap");
        // What the server said is kept.
        let watched: DynamicObject = serde_json::from_value(
            serde_json::json!({"apiVersion": "v1", "kind": "Other", "metadata": {"name": "a"}}),
        )
        .expect("object");
        assert_eq!(
            with_types(watched, &ar).types.map(|t| t.kind).as_deref(),
            Some("Other")
        );
    }
}
