//! The ETag response cache of one webhook.
//!
//! A hook that answers 200 with an `ETag` has its (etag, body) remembered under the request's
//! root object, the parent (composite) or the object (decorator), by kind, namespace and name.
//! The next call for that object sends `If-None-Match`, and a 304 or 412 answer means "use the
//! cached body", so the hook server can skip rendering and sending a response it already sent.
//! The key ignores the rest of the request (Metacontroller's contract): a hook must compute its
//! ETag over the whole request.
//!
//! Entries stop being used `timeout` after they were stored, and are removed in a sweep that
//! runs during normal calls at most once per `cleanup` interval, so no background task is
//! needed and an idle controller holds only what it held before.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use http::HeaderValue;
use serde_json::Value;

/// The object a request is about: `request.parent`, or `request.object` for decorators.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RootKey {
    kind: String,
    namespace: String,
    name: String,
}

impl RootKey {
    /// The key of `request`, or `None` when it names no root object (then nothing is cached).
    pub fn of(request: &Value) -> Option<Self> {
        let root = ["parent", "object"]
            .iter()
            .find_map(|field| request.get(field).filter(|v| v.is_object()))?;
        let text = |pointer: &str| root.pointer(pointer).and_then(Value::as_str);
        Some(Self {
            kind: text("/kind")?.to_string(),
            namespace: text("/metadata/namespace").unwrap_or_default().to_string(),
            name: text("/metadata/name")?.to_string(),
        })
    }
}

/// A cached answer: the tag to send as `If-None-Match` and the body to reuse.
#[derive(Clone, Debug, PartialEq)]
pub struct Cached {
    pub etag: HeaderValue,
    pub body: Value,
}

struct Entry {
    cached: Cached,
    stored: Instant,
}

struct State {
    entries: HashMap<RootKey, Entry>,
    last_sweep: Instant,
}

/// Cached answers by root object, with expiry.
pub struct EtagCache {
    timeout: Duration,
    cleanup: Duration,
    state: Mutex<State>,
}

impl EtagCache {
    /// An empty cache whose entries live `timeout` and are swept at most every `cleanup`.
    pub fn new(timeout: Duration, cleanup: Duration, now: Instant) -> Self {
        Self {
            timeout,
            cleanup,
            state: Mutex::new(State {
                entries: HashMap::new(),
                last_sweep: now,
            }),
        }
    }

    /// The entry for `key` if it has not expired at `now`.
    pub fn get(&self, key: &RootKey, now: Instant) -> Option<Cached> {
        let mut state = self.lock();
        self.sweep_if_due(&mut state, now);
        state
            .entries
            .get(key)
            .filter(|entry| !self.expired(entry, now))
            .map(|entry| entry.cached.clone())
    }

    /// Remembers `cached` for `key`, replacing an older entry.
    pub fn insert(&self, key: RootKey, cached: Cached, now: Instant) {
        let mut state = self.lock();
        self.sweep_if_due(&mut state, now);
        state.entries.insert(
            key,
            Entry {
                cached,
                stored: now,
            },
        );
    }

    /// Forgets `key`: its hook answered 200 without an ETag, so the old tag is stale.
    pub fn remove(&self, key: &RootKey) {
        self.lock().entries.remove(key);
    }

    /// Entries held, expired or not (expired ones go at the next sweep).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expired(&self, entry: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(entry.stored) >= self.timeout
    }

    fn sweep_if_due(&self, state: &mut State, now: Instant) {
        if now.saturating_duration_since(state.last_sweep) < self.cleanup {
            return;
        }
        state.last_sweep = now;
        state.entries.retain(|_, entry| !self.expired(entry, now));
    }

    /// The state; a panic while it was held cannot leave it inconsistent (every change is a
    /// single map operation), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parent(name: &str) -> Value {
        json!({"parent": {"kind": "TestParent", "metadata": {"namespace": "ns", "name": name}}})
    }

    fn key(name: &str) -> RootKey {
        RootKey::of(&parent(name)).expect("a parent")
    }

    fn cached(tag: &'static str) -> Cached {
        Cached {
            etag: HeaderValue::from_static(tag),
            body: json!({"children": [], "tag": tag}),
        }
    }

    #[test]
    fn the_key_is_the_root_object_whatever_else_the_request_holds() {
        let mut with_children = parent("p");
        with_children["children"] = json!({"ConfigMap.v1": {"a": {}}});
        assert_eq!(RootKey::of(&with_children), Some(key("p")));
        let decorator =
            json!({"object": {"kind": "TestParent", "metadata": {"namespace": "ns", "name": "p"}}});
        assert_eq!(RootKey::of(&decorator), Some(key("p")));
        let cluster = json!({"parent": {"kind": "Thing", "metadata": {"name": "p"}}});
        assert!(RootKey::of(&cluster).is_some());
        assert_ne!(key("p"), key("q"));
        assert_eq!(RootKey::of(&json!({"parent": {"kind": "X"}})), None);
        assert_eq!(RootKey::of(&json!({})), None);
    }

    #[test]
    fn entries_expire_after_the_timeout() {
        let start = Instant::now();
        let cache = EtagCache::new(Duration::from_secs(60), Duration::from_secs(300), start);
        cache.insert(key("p"), cached("\"v1\""), start);
        assert_eq!(
            cache.get(&key("p"), start + Duration::from_secs(59)),
            Some(cached("\"v1\""))
        );
        assert_eq!(cache.get(&key("p"), start + Duration::from_secs(60)), None);
        assert_eq!(cache.get(&key("q"), start), None);
        // A newer answer replaces the entry and restarts its clock.
        cache.insert(key("p"), cached("\"v2\""), start + Duration::from_secs(61));
        assert_eq!(
            cache.get(&key("p"), start + Duration::from_secs(100)),
            Some(cached("\"v2\""))
        );
        cache.remove(&key("p"));
        assert_eq!(cache.get(&key("p"), start + Duration::from_secs(100)), None);
    }

    #[test]
    fn expired_entries_are_swept_at_most_once_per_cleanup_interval() {
        let start = Instant::now();
        let cache = EtagCache::new(Duration::from_secs(10), Duration::from_secs(300), start);
        cache.insert(key("a"), cached("\"a\""), start);
        cache.insert(key("b"), cached("\"b\""), start + Duration::from_secs(200));
        // Expired but not yet swept: it is not served, and still held.
        assert_eq!(cache.get(&key("a"), start + Duration::from_secs(299)), None);
        assert_eq!(cache.len(), 2);
        // The first call after the interval sweeps every expired entry.
        assert_eq!(cache.get(&key("z"), start + Duration::from_secs(300)), None);
        assert_eq!(cache.len(), 0);
        cache.insert(key("c"), cached("\"c\""), start + Duration::from_secs(301));
        assert_eq!(cache.get(&key("z"), start + Duration::from_secs(400)), None);
        assert_eq!(cache.len(), 1, "no second sweep within the interval");
        assert_eq!(cache.get(&key("z"), start + Duration::from_secs(600)), None);
        assert!(cache.is_empty());
    }
}
