//! What a controller remembers per parent between syncs, in one place, dropped when the parent is
//! deleted: the fingerprint behind ignoreStatusChanges, and the status last written.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use super::ParentKey;

#[derive(Default)]
struct ParentState {
    /// (generation, hash of labels, annotations, finalizers and deletion) last seen.
    seen: Option<(Option<i64>, u64)>,
    /// The status this controller last wrote, for the parent of this UID, and the
    /// resourceVersion the write produced: a status the API server normalises (a field pruned
    /// by the schema) is not written again and again.
    written_status: Option<WrittenStatus>,
}

#[derive(Clone, PartialEq)]
struct WrittenStatus {
    uid: String,
    status: Value,
    resource_version: String,
}

#[derive(Default)]
pub struct ParentStates(Mutex<HashMap<ParentKey, ParentState>>);

impl ParentStates {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<ParentKey, ParentState>) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Records the fingerprint of a parent update; `true` when it is the same as the last one.
    pub fn saw(&self, key: &ParentKey, fingerprint: (Option<i64>, u64)) -> bool {
        self.with(|map| {
            let entry = map.entry(key.clone()).or_default();
            let same = entry.seen == Some(fingerprint);
            entry.seen = Some(fingerprint);
            same
        })
    }

    /// Whether `status` is what this controller wrote to this parent at `resource_version`.
    pub fn wrote_status(&self, key: &ParentKey, uid: &str, status: &Value, rv: &str) -> bool {
        self.with(|map| {
            map.get(key)
                .and_then(|s| s.written_status.as_ref())
                .is_some_and(|w| w.uid == uid && w.status == *status && w.resource_version == rv)
        })
    }

    pub fn record_status(&self, key: &ParentKey, uid: &str, status: Value, rv: String) {
        self.with(|map| {
            map.entry(key.clone()).or_default().written_status = Some(WrittenStatus {
                uid: uid.to_owned(),
                status,
                resource_version: rv,
            });
        })
    }

    /// The parent was deleted.
    pub fn forget(&self, key: &ParentKey) {
        self.with(|map| map.remove(key));
    }

    /// How many parents have state (for tests: it must not grow with deleted parents).
    pub fn len(&self) -> usize {
        self.with(|map| map.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::informer::ObjectKey;

    fn key(name: &str) -> ParentKey {
        ParentKey {
            type_index: 0,
            object: ObjectKey::new(Some("ns"), name),
        }
    }

    #[test]
    fn a_deleted_parent_leaves_nothing_behind() {
        let states = ParentStates::default();
        assert!(!states.saw(&key("a"), (Some(1), 7)));
        assert!(states.saw(&key("a"), (Some(1), 7)));
        assert!(!states.saw(&key("a"), (Some(2), 7)));
        states.record_status(&key("a"), "u1", json!({"x": 1}), "10".into());
        assert!(states.wrote_status(&key("a"), "u1", &json!({"x": 1}), "10"));
        assert!(!states.wrote_status(&key("a"), "u1", &json!({"x": 1}), "11"));
        // A new object under the same name is a different parent.
        assert!(!states.wrote_status(&key("a"), "u2", &json!({"x": 1}), "10"));
        states.forget(&key("a"));
        assert!(states.is_empty());
        assert!(!states.saw(&key("a"), (Some(2), 7)));
    }
}
