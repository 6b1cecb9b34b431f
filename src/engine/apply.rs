//! Dynamic apply: Metacontroller's client-side emulation of `kubectl apply` for children.
//!
//! Hooks return *partial* children (only the fields they care about). Writing those verbatim with
//! a PUT would wipe every field set by someone else (defaulting, admission webhooks, HPAs,
//! `kubectl edit`), so Metacontroller computes the full new object locally with a 3-way merge
//! between the observed object, the configuration it applied last time (kept in the
//! [`LAST_APPLIED_ANNOTATION`] annotation) and the new desired configuration. The merge has no
//! schema knowledge, so it *guesses* which arrays are associative lists ("list-maps").
//!
//! Everything here is a pure function over [`serde_json::Value`], mirroring
//! `pkg/dynamic/apply/apply.go` and `ApplyUpdate` in `pkg/controller/common/manage_children.go`
//! so that a cluster managed by Metacontroller can be taken over without spurious updates: the
//! merge result and the annotation bytes are the ones Metacontroller would have produced.
//!
//! Deliberate deviations from the Go code (all in cases where Go produces a broken object):
//! - When desired changes a field's *type* from object or array to something else (including
//!   `null`), the desired value is taken. Go's type assertion silently treats the mismatching
//!   desired value as an empty object/array, which keeps the stale observed value.
//! - [`with_last_applied`] strips a last-applied annotation the hook itself put into `desired`
//!   before recording it, so the annotation never nests a previous copy of itself.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::gocompat::fmt::sprint_v;
/// Re-exported: the annotation and revision hashes are `json.Marshal` bytes, written by the one
/// Go-JSON writer in [`crate::gocompat::json`].
pub use crate::gocompat::json::to_json_compact_go;

/// The annotation in which dynamic apply records the configuration it applied last, so that the
/// next merge knows which fields it owns (and may delete) and which were set by others.
pub const LAST_APPLIED_ANNOTATION: &str = "metacontroller.k8s.io/last-applied-configuration";

/// `ObjectMeta` fields that are read-only and system-populated. A hook cannot meaningfully set
/// them, so they are reverted to the observed values after a merge (otherwise every sync would
/// see a diff and issue a no-op update, GCP metacontroller#76) and stripped before server-side
/// apply (they would cause cache misses or field-manager conflicts).
pub const SYSTEM_METADATA_FIELDS: [&str; 8] = [
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
];

/// Merge keys that mark an array of objects as a list-map, in priority order. Same list and order
/// as Metacontroller's `knownMergeKeys`; changing it changes how existing children are merged.
const KNOWN_MERGE_KEYS: [&str; 7] = [
    "containerPort",
    "port",
    "mountPath",
    "name",
    "uid",
    "ip",
    "path",
];

/// Why an apply computation could not be done. Every variant names the object concerned, because
/// the error ends up in a `SyncError` event on the parent, where "which child?" is the first
/// question.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// `observed` or `desired` is not a JSON object, so it cannot be a Kubernetes object.
    #[error("{role} object {object} must be a JSON object, got {found}")]
    NotAnObject {
        /// `"observed"` or `"desired"`.
        role: &'static str,
        /// Description of the object (`Kind namespace/name`, as far as known).
        object: String,
        /// JSON type actually found.
        found: &'static str,
    },
    /// The last-applied annotation is present but not a string.
    #[error("{object}: annotation {annotation} must be a string, got {found}", annotation = LAST_APPLIED_ANNOTATION)]
    LastAppliedNotString {
        /// Description of the observed object.
        object: String,
        /// JSON type actually found.
        found: &'static str,
    },
    /// The last-applied annotation is not valid JSON (someone edited it by hand, or it was
    /// truncated).
    #[error("{object}: can't parse annotation {annotation}: {source}", annotation = LAST_APPLIED_ANNOTATION)]
    InvalidLastApplied {
        /// Description of the observed object.
        object: String,
        /// The JSON parse error.
        source: serde_json::Error,
    },
    /// The last-applied annotation is valid JSON but not an object.
    #[error("{object}: annotation {annotation} must hold a JSON object, got {found}", annotation = LAST_APPLIED_ANNOTATION)]
    LastAppliedNotObject {
        /// Description of the observed object.
        object: String,
        /// JSON type actually found.
        found: &'static str,
    },
    /// A field on the way to one that must be read or written (`metadata`, `annotations`) holds
    /// something other than an object.
    #[error("{object}: field {path} must be a JSON object, got {found}")]
    FieldNotObject {
        /// Description of the object.
        object: String,
        /// Dotted path of the offending field.
        path: String,
        /// JSON type actually found.
        found: &'static str,
    },
}

/// Metacontroller's 3-way merge: applies the change from `last_applied` to `desired` onto
/// `observed` and returns the result (the inputs are not modified).
///
/// Rules (`pkg/dynamic/apply/apply.go`):
/// - objects: keys in `last_applied` but absent from `desired` are deleted (we set them before and
///   no longer want them); keys in `desired` are merged recursively; keys only others set are
///   kept;
/// - scalars and `null` in the destination: the desired value wins;
/// - arrays: if every item of the three arrays is an object and all share one of the keys
///   `containerPort`, `port`, `mountPath`, `name`, `uid`, `ip`, `path` (first match wins), the
///   arrays are merged as maps keyed by that field (values stringified like Go's `%v`), keeping
///   the observed order and appending new items in desired order; otherwise desired replaces the
///   array wholesale.
///
/// A `last_applied` that is not an object (e.g. `null` for "none recorded") counts as empty.
pub fn merge(observed: &Value, last_applied: &Value, desired: &Value) -> Value {
    merge_value(observed.clone(), Some(last_applied), desired)
}

/// Merges `desired` into `destination` (owned, so unchanged subtrees are moved, not copied).
fn merge_value(destination: Value, last_applied: Option<&Value>, desired: &Value) -> Value {
    match (destination, desired) {
        (Value::Object(dest), Value::Object(des)) => {
            let last = last_applied.and_then(Value::as_object);
            Value::Object(merge_object(dest, last, des))
        }
        (Value::Array(dest), Value::Array(des)) => {
            let last = last_applied.and_then(Value::as_array);
            Value::Array(merge_array(dest, last, des))
        }
        // Scalars and null take the desired value. So does a type change (see the module docs
        // for how this differs from Go).
        _ => desired.clone(),
    }
}

fn merge_object(
    mut destination: Map<String, Value>,
    last_applied: Option<&Map<String, Value>>,
    desired: &Map<String, Value>,
) -> Map<String, Value> {
    // Fields we applied before but no longer want are ours to remove.
    if let Some(last) = last_applied {
        for key in last.keys() {
            if !desired.contains_key(key) {
                destination.remove(key);
            }
        }
    }
    for (key, des) in desired {
        let dest = destination.remove(key).unwrap_or(Value::Null);
        let last = last_applied.and_then(|l| l.get(key));
        destination.insert(key.clone(), merge_value(dest, last, des));
    }
    destination
}

fn merge_array(
    destination: Vec<Value>,
    last_applied: Option<&Vec<Value>>,
    desired: &[Value],
) -> Vec<Value> {
    let empty = Vec::new();
    let last = last_applied.unwrap_or(&empty);
    match detect_list_map_key(&[&destination, last, desired]) {
        Some(key) => merge_list_map(key, destination, last, desired),
        // Not a recognisable list-map: replace wholesale, as Metacontroller does.
        None => desired.to_vec(),
    }
}

/// Guesses whether the arrays are a Kubernetes-style list-map and returns the merge key: every
/// item must be an object and all of them must carry the key.
fn detect_list_map_key(lists: &[&[Value]]) -> Option<&'static str> {
    let mut common: Option<HashSet<&str>> = None;
    for item in lists.iter().flat_map(|list| list.iter()) {
        let obj = item.as_object()?;
        match &mut common {
            None => common = Some(obj.keys().map(String::as_str).collect()),
            Some(keys) => keys.retain(|k| obj.contains_key(*k)),
        }
    }
    let common = common?;
    let key = KNOWN_MERGE_KEYS.into_iter().find(|k| common.contains(k))?;
    // A list whose items repeat a key is not a map: merged by key it would collapse differently
    // on every write and never settle (found by tests/hostile_input.rs). Replaced wholesale.
    let unique = lists.iter().all(|list| {
        let mut seen = HashSet::new();
        list.iter().all(|item| seen.insert(list_map_key(item, key)))
    });
    unique.then_some(key)
}

/// The value of `item[key]` as a list-map key. Only called after [`detect_list_map_key`] checked
/// that every item is an object carrying `key`.
fn list_map_key(item: &Value, key: &str) -> String {
    item.get(key).map(string_merge_key).unwrap_or_default()
}

fn merge_list_map(
    key: &str,
    destination: Vec<Value>,
    last: &[Value],
    desired: &[Value],
) -> Vec<Value> {
    // Later duplicates overwrite earlier ones, as with Go's map assignment.
    let last_map: BTreeMap<String, &Value> =
        last.iter().map(|i| (list_map_key(i, key), i)).collect();
    let desired_keys: Vec<String> = desired.iter().map(|i| list_map_key(i, key)).collect();
    let desired_map: BTreeMap<&str, &Value> = desired_keys
        .iter()
        .map(String::as_str)
        .zip(desired)
        .collect();
    let dest_keys: Vec<String> = destination.iter().map(|i| list_map_key(i, key)).collect();
    let mut dest_map: BTreeMap<String, Value> =
        dest_keys.iter().cloned().zip(destination).collect();

    // The object merge rules, applied to the items as map entries.
    for k in last_map.keys() {
        if !desired_map.contains_key(k.as_str()) {
            dest_map.remove(k);
        }
    }
    for (k, des) in &desired_map {
        let dest = dest_map.remove(*k).unwrap_or(Value::Null);
        let merged = merge_value(dest, last_map.get(*k).copied(), des);
        dest_map.insert((*k).to_string(), merged);
    }

    // Back to a list: observed order first (so that reordering by others, or by the API server,
    // does not cause churn), then new items in desired order. Like Go, an observed duplicate key
    // yields the merged item once per occurrence.
    let mut out = Vec::with_capacity(dest_map.len());
    let mut added: HashSet<&str> = HashSet::new();
    for k in &dest_keys {
        if let Some(item) = dest_map.get(k) {
            out.push(item.clone());
            added.insert(k);
        }
    }
    for k in &desired_keys {
        if added.insert(k)
            && let Some(merged) = dest_map.get(k)
        {
            out.push(merged.clone());
        }
    }
    out
}

/// A merge key value as a string: strings as they are, anything else formatted like Go's `%v`
/// so that keys collide (or not) exactly as they do in Metacontroller (port `80` and `"80"` are
/// the same item).
fn string_merge_key(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => sprint_v(other),
    }
}

/// Metacontroller's `ApplyUpdate`: the full object to PUT for an existing child.
///
/// 1. read the last-applied configuration from `observed` (none recorded: `{}`);
/// 2. strip the annotation from `desired` (a hook echoing it back must not feed it into itself);
/// 3. [`merge`];
/// 4. revert the [`SYSTEM_METADATA_FIELDS`] and `status` to the observed values (or remove them if
///    observed has none): children's status is never written, and system fields must not cause
///    a diff;
/// 5. record the stripped `desired` in the annotation, as compact Go-compatible JSON.
///
/// If the result equals `observed` the caller skips the update.
pub fn apply_update(observed: &Value, desired: &Value) -> Result<Value, ApplyError> {
    apply_update_or(observed, desired, &Value::Object(Map::new()))
}

/// [`apply_update`], with `unrecorded` standing in for the last-applied configuration when the
/// observed object has no annotation (e.g. the fields a server-side apply owned, after switching
/// back from SSA), so that fields the hook dropped meanwhile are still removed.
pub fn apply_update_or(
    observed: &Value,
    desired: &Value,
    unrecorded: &Value,
) -> Result<Value, ApplyError> {
    let observed_map = as_object("observed", observed)?;

    let last_applied = match read_last_applied(observed_map)? {
        Value::Object(map) if map.is_empty() && !has_last_applied(observed_map) => {
            unrecorded.clone()
        }
        recorded => recorded,
    };
    let mut desired = desired.clone();
    strip_last_applied(&mut desired, false);

    let object = describe(observed);
    // Both sides are objects (checked above), so this is `merge` without the type dispatch.
    let mut merged_map = merge_object(
        observed_map.clone(),
        last_applied.as_object(),
        as_object("desired", &desired)?,
    );
    for field in SYSTEM_METADATA_FIELDS {
        revert_field(&mut merged_map, observed_map, &["metadata", field], &object)?;
    }
    revert_field(&mut merged_map, observed_map, &["status"], &object)?;
    let mut merged = Value::Object(merged_map);
    set_last_applied(&mut merged, &desired, &object)?;
    Ok(merged)
}

/// What to create for a new child: `desired` with the annotation recording `desired` itself, so
/// that the first update already knows which fields this controller owns.
///
/// A last-applied annotation the hook put into `desired` is dropped first (Go would record it
/// nested inside the new one).
pub fn with_last_applied(desired: &Value) -> Result<Value, ApplyError> {
    as_object("desired", desired)?;
    let mut out = desired.clone();
    strip_last_applied(&mut out, false);
    let recorded = out.clone();
    set_last_applied(&mut out, &recorded, &describe(desired))?;
    Ok(out)
}

/// The object to send as a server-side apply patch: without the system metadata fields (they
/// would conflict or be rejected), without `status` (children's status is not ours to write) and
/// without the dynamic-apply annotation (SSA tracks ownership in `managedFields` instead; keeping
/// the annotation would make us own a stale copy). An `annotations` map left empty is removed so
/// that the field manager does not claim an empty map.
pub fn sanitize_for_ssa(desired: &Value) -> Value {
    let mut out = desired.clone();
    if let Some(map) = out.as_object_mut() {
        map.remove("status");
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            for field in SYSTEM_METADATA_FIELDS {
                meta.remove(field);
            }
        }
    }
    strip_last_applied(&mut out, true);
    out
}

/// True when writing `desired` could not change `observed`: every field set in `desired` has the
/// same value in `observed`. Objects are compared recursively and extra observed fields (set by
/// others, or defaulted) are fine; arrays must have the same length and match element by element;
/// numbers compare numerically (`1 == 1.0`), because the hook and the API server may spell them
/// differently. A `null` in desired matches an absent field, since the API server drops nulls.
///
/// Used to skip writes (and API round-trips) when nothing changed.
pub fn is_subset(observed: &Value, desired: &Value) -> bool {
    match (observed, desired) {
        (Value::Object(obs), Value::Object(des)) => des.iter().all(|(k, d)| match obs.get(k) {
            Some(o) => is_subset(o, d),
            None => d.is_null(),
        }),
        (Value::Array(obs), Value::Array(des)) => {
            obs.len() == des.len() && obs.iter().zip(des).all(|(o, d)| is_subset(o, d))
        }
        (Value::Number(o), Value::Number(d)) => numbers_equal(o, d),
        (o, d) => o == d,
    }
}

fn numbers_equal(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    // A float is involved (or one side is negative and the other beyond i64): compare as f64.
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// A hash of `value` that is stable across runs, processes and versions: the first 8 bytes
/// (big-endian) of the SHA-256 of its canonical JSON (sorted keys, compact). Used to remember
/// what was last applied (e.g. the server-side-apply cache) without keeping the object.
pub fn content_hash(value: &Value) -> u64 {
    let digest = Sha256::digest(to_json_compact_go(value).as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Whether the object carries the last-applied annotation at all (even an empty one).
fn has_last_applied(observed: &Map<String, Value>) -> bool {
    observed
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(LAST_APPLIED_ANNOTATION))
        .is_some_and(|v| !v.is_null())
}

/// Whether `object` carries the last-applied annotation of dynamic apply.
pub fn records_last_applied(object: &Value) -> bool {
    object.as_object().is_some_and(has_last_applied)
}

/// Reads the last-applied configuration; `{}` when there is none (a child created by someone
/// else, or before dynamic apply), so that the merge then only adds and overwrites.
fn read_last_applied(observed: &Map<String, Value>) -> Result<Value, ApplyError> {
    let raw = match observed
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(LAST_APPLIED_ANNOTATION))
    {
        None | Some(Value::Null) => return Ok(Value::Object(Map::new())),
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(ApplyError::LastAppliedNotString {
                object: describe_map(observed),
                found: json_type(other),
            });
        }
    };
    // Go treats an empty annotation as "none recorded".
    if raw.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(v @ Value::Object(_)) => Ok(v),
        // Go unmarshals `null` into a nil map without complaint.
        Ok(Value::Null) => Ok(Value::Object(Map::new())),
        Ok(other) => Err(ApplyError::LastAppliedNotObject {
            object: describe_map(observed),
            found: json_type(&other),
        }),
        Err(source) => Err(ApplyError::InvalidLastApplied {
            object: describe_map(observed),
            source,
        }),
    }
}

/// Removes the last-applied annotation. Go leaves an emptied `annotations` map in place (it then
/// shows up as `"annotations":{}` in the recorded JSON), so that is the default; server-side apply
/// wants it gone.
fn strip_last_applied(obj: &mut Value, drop_empty: bool) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let Some(Value::Object(annotations)) = meta.get_mut("annotations") else {
        return;
    };
    if annotations.remove(LAST_APPLIED_ANNOTATION).is_some() && drop_empty && annotations.is_empty()
    {
        meta.remove("annotations");
    }
}

/// Sets the annotation on `obj` to the compact Go JSON of `recorded`, creating `metadata` and
/// `annotations` as needed.
fn set_last_applied(obj: &mut Value, recorded: &Value, object: &str) -> Result<(), ApplyError> {
    let json = to_json_compact_go(recorded);
    let map = obj.as_object_mut().ok_or_else(|| ApplyError::NotAnObject {
        role: "desired",
        object: object.to_string(),
        found: "non-object",
    })?;
    let meta = child_object(map, "metadata", "metadata", object)?;
    let annotations = child_object(meta, "annotations", "metadata.annotations", object)?;
    annotations.insert(LAST_APPLIED_ANNOTATION.to_string(), Value::String(json));
    Ok(())
}

/// `map[key]` as an object, inserting an empty one if absent (or null).
fn child_object<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
    path: &str,
    object: &str,
) -> Result<&'a mut Map<String, Value>, ApplyError> {
    let slot = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    let found = json_type(slot);
    slot.as_object_mut()
        .ok_or_else(|| ApplyError::FieldNotObject {
            object: object.to_string(),
            path: path.to_string(),
            found,
        })
}

/// Makes the field at `path` in `new_obj` what it is in `orig`: copied if present there (creating
/// parents), removed if absent (a no-op if a parent is missing), like Go's `revertField`.
fn revert_field(
    new_obj: &mut Map<String, Value>,
    orig: &Map<String, Value>,
    path: &[&str],
    object: &str,
) -> Result<(), ApplyError> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    // Look the field up in the original; a non-object parent is an error, as in Go.
    let mut cursor = Some(orig);
    for (depth, parent) in parents.iter().enumerate() {
        cursor = match cursor.and_then(|m| m.get(*parent)) {
            None => None,
            Some(Value::Object(m)) => Some(m),
            Some(other) => {
                return Err(ApplyError::FieldNotObject {
                    object: object.to_string(),
                    path: path[..=depth].join("."),
                    found: json_type(other),
                });
            }
        };
    }
    let original = cursor.and_then(|m| m.get(*last));

    match original {
        Some(value) => {
            let mut target = new_obj;
            for (depth, parent) in parents.iter().enumerate() {
                target = child_object(target, parent, &path[..=depth].join("."), object)?;
            }
            target.insert((*last).to_string(), value.clone());
        }
        None => {
            let mut target = Some(new_obj);
            for parent in parents {
                target = target
                    .and_then(|m| m.get_mut(*parent))
                    .and_then(Value::as_object_mut);
            }
            if let Some(m) = target {
                m.remove(*last);
            }
        }
    }
    Ok(())
}

fn as_object<'a>(
    role: &'static str,
    value: &'a Value,
) -> Result<&'a Map<String, Value>, ApplyError> {
    value.as_object().ok_or_else(|| ApplyError::NotAnObject {
        role,
        object: describe(value),
        found: json_type(value),
    })
}

/// `Kind namespace/name` (or `Kind name` for cluster-scoped objects) for error messages.
fn describe(value: &Value) -> String {
    match value.as_object() {
        Some(map) => describe_map(map),
        None => "<not an object>".to_string(),
    }
}

fn describe_map(map: &Map<String, Value>) -> String {
    let kind = map
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("<unknown kind>");
    let meta = map.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    match meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
    {
        Some(ns) if !ns.is_empty() => format!("{kind} {ns}/{name}"),
        _ => format!("{kind} {name}"),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn annotation(obj: &Value) -> &str {
        obj["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
            .as_str()
            .expect("annotation present")
    }

    // ----- merge: objects and scalars -----

    #[test]
    fn merge_empty() {
        assert_eq!(merge(&json!({}), &json!({}), &json!({})), json!({}));
    }

    #[test]
    fn merge_scalars_delete_replace_add_keep() {
        let observed = json!({"keep": "other", "remove": "other", "replace": "other"});
        let last = json!({"remove": "old", "replace": "old"});
        let desired = json!({"replace": "new", "add": "new"});
        assert_eq!(
            merge(&observed, &last, &desired),
            json!({"replace": "new", "add": "new", "keep": "other"})
        );
    }

    #[test]
    fn merge_nested_objects() {
        let observed = json!({"update": {"keep": "other", "remove": "other"}});
        let last = json!({"update": {"remove": "old", "replace": "old"}});
        let desired = json!({"update": {"replace": "new", "add": "new"}});
        assert_eq!(
            merge(&observed, &last, &desired),
            json!({"update": {"replace": "new", "add": "new", "keep": "other"}})
        );
    }

    #[test]
    fn merge_deletes_whole_subtree_last_applied_had() {
        let observed = json!({"spec": {"a": {"x": 1}, "b": 2}, "other": true});
        let last = json!({"spec": {"a": {"x": 1}, "b": 2}});
        let desired = json!({"spec": {"b": 3}});
        assert_eq!(
            merge(&observed, &last, &desired),
            json!({"spec": {"b": 3}, "other": true})
        );
    }

    #[test]
    fn merge_without_last_applied_never_deletes() {
        let observed = json!({"a": 1, "b": 2});
        assert_eq!(
            merge(&observed, &Value::Null, &json!({"b": 3})),
            json!({"a": 1, "b": 3})
        );
        assert_eq!(merge(&observed, &json!({}), &json!({})), observed);
    }

    #[test]
    fn merge_null_and_scalar_destinations_take_desired() {
        let observed = json!({"n": null, "s": "x", "o": {"k": 1}});
        let desired = json!({"n": {"a": 1}, "s": [1, 2], "o": {"k": null}});
        assert_eq!(
            merge(&observed, &json!({}), &desired),
            json!({"n": {"a": 1}, "s": [1, 2], "o": {"k": null}})
        );
    }

    #[test]
    fn merge_type_change_takes_desired() {
        // Deviation from Go (which would keep the stale object): see the module docs.
        let observed = json!({"a": {"x": 1}, "b": [{"name": "n"}]});
        let desired = json!({"a": "scalar", "b": null});
        assert_eq!(
            merge(&observed, &json!({}), &desired),
            json!({"a": "scalar", "b": null})
        );
    }

    #[test]
    fn merge_does_not_modify_inputs() {
        let observed = json!({"a": 1});
        let last = json!({"a": 1});
        let desired = json!({"b": 2});
        let _ = merge(&observed, &last, &desired);
        assert_eq!(observed, json!({"a": 1}));
    }

    // ----- merge: arrays -----

    #[test]
    fn merge_replaces_plain_lists() {
        let observed = json!({"list": [1, 2, 3, {"a": true}]});
        let last = json!({"list": [4, 5, 6]});
        let desired = json!({"list": [7, 8, 9, {"b": false}]});
        assert_eq!(
            merge(&observed, &last, &desired),
            json!({"list": [7, 8, 9, {"b": false}]})
        );
    }

    #[test]
    fn merge_list_map_by_name_port_and_container_port() {
        let observed = json!({
            "listMap": [
                {"name": "keep", "value": "other"},
                {"name": "remove", "value": "other"},
                {"name": "merge", "nested": {"keep": "other"}}
            ],
            "ports1": [{"port": 80, "keep": "other"}],
            "ports2": [{"containerPort": 80, "keep": "other"}]
        });
        let last = json!({
            "listMap": [{"name": "remove", "value": "old"}],
            "ports1": [{"port": 80, "remove": "old"}]
        });
        let desired = json!({
            "listMap": [
                {"name": "add", "value": "new"},
                {"name": "merge", "nested": {"add": "new"}}
            ],
            "ports1": [{"port": 80, "add": "new"}, {"port": 90}],
            "ports2": [{"containerPort": 80}, {"containerPort": 90}]
        });
        assert_eq!(
            merge(&observed, &last, &desired),
            json!({
                "listMap": [
                    {"name": "keep", "value": "other"},
                    {"name": "merge", "nested": {"keep": "other", "add": "new"}},
                    {"name": "add", "value": "new"}
                ],
                "ports1": [{"port": 80, "keep": "other", "add": "new"}, {"port": 90}],
                "ports2": [{"containerPort": 80, "keep": "other"}, {"containerPort": 90}]
            })
        );
    }

    #[test]
    fn merge_list_map_keeps_observed_order() {
        // Metacontroller keeps the destination order; a reordering in desired alone does not
        // reorder the observed list.
        let observed = json!({"env": [
            {"name": "VAR1", "value": "val1"},
            {"name": "VAR3", "value": "val3"},
            {"name": "VAR2", "value": "val2"}
        ]});
        let desired = json!({"env": [
            {"name": "VAR4", "value": "val4"},
            {"name": "VAR1", "value": "val1"},
            {"name": "VAR2", "value": "val2"},
            {"name": "VAR3", "value": "val3"}
        ]});
        let merged = merge(&observed, &observed, &desired);
        let names: Vec<&str> = merged["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["VAR1", "VAR3", "VAR2", "VAR4"]);
    }

    #[test]
    fn merge_list_map_key_priority() {
        // Items share both `containerPort` and `name`: containerPort wins, so renaming the port
        // updates the item in place instead of adding a second one.
        let observed = json!({"ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}]});
        let desired = json!({"ports": [{"containerPort": 80, "name": "web"}]});
        assert_eq!(
            merge(&observed, &json!({}), &desired),
            json!({"ports": [{"containerPort": 80, "name": "web", "protocol": "TCP"}]})
        );
        // mountPath is preferred over name.
        let observed = json!({"m": [{"mountPath": "/a", "name": "v1", "readOnly": true}]});
        let desired = json!({"m": [{"mountPath": "/a", "name": "v2"}]});
        assert_eq!(
            merge(&observed, &json!({}), &desired),
            json!({"m": [{"mountPath": "/a", "name": "v2", "readOnly": true}]})
        );
    }

    #[test]
    fn merge_mixed_arrays_are_replaced() {
        // One item lacks the common key: not a list-map.
        let observed = json!({"l": [
            {"name": "keep", "value": "other"},
            {"notName": "x"},
            {"name": "merge", "nested": {"keep": "other"}}
        ]});
        let last = json!({"l": [{"name": "remove", "value": "old"}]});
        let desired = json!({"l": [{"name": "add"}, {"name": "merge", "nested": {"add": "new"}}]});
        assert_eq!(merge(&observed, &last, &desired), desired);
        // Objects mixed with scalars: replaced.
        let observed = json!({"l": [{"name": "a", "x": 1}]});
        let desired = json!({"l": [{"name": "a"}, "b"]});
        assert_eq!(merge(&observed, &json!({}), &desired), desired);
        // Objects without any conventional key: replaced.
        let observed = json!({"l": [{"key": "a", "x": 1}]});
        let desired = json!({"l": [{"key": "a"}]});
        assert_eq!(merge(&observed, &json!({}), &desired), desired);
    }

    #[test]
    fn merge_list_map_detection_uses_last_applied_items_too() {
        // The last-applied item lacks `name`, so the three lists share no key: replace.
        let observed = json!({"l": [{"name": "a", "x": 1}]});
        let last = json!({"l": [{"other": 1}]});
        let desired = json!({"l": [{"name": "a"}]});
        assert_eq!(merge(&observed, &last, &desired), desired);
    }

    #[test]
    fn merge_empty_desired_list_only_removes_our_items() {
        let observed = json!({"l": [{"name": "ours"}, {"name": "theirs"}]});
        let last = json!({"l": [{"name": "ours"}]});
        let desired = json!({"l": []});
        assert_eq!(
            merge(&observed, &last, &desired),
            json!({"l": [{"name": "theirs"}]})
        );
        // All three empty: plain replacement.
        assert_eq!(
            merge(&json!({"l": []}), &json!({}), &json!({"l": []})),
            json!({"l": []})
        );
    }

    #[test]
    fn merge_list_map_number_and_string_keys_collide_like_go() {
        let observed = json!({"ports": [{"port": 80, "targetPort": 8080}]});
        let desired = json!({"ports": [{"port": "80", "name": "x"}]});
        assert_eq!(
            merge(&observed, &json!({}), &desired),
            json!({"ports": [{"port": "80", "targetPort": 8080, "name": "x"}]})
        );
    }

    #[test]
    fn a_list_repeating_a_merge_key_is_replaced_not_merged() {
        // Merged by key, repeated keys collapse differently on every write (Go's map-based merge
        // never settles on them); as an atomic list it converges in one write.
        let observed = json!({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]});
        let desired = json!({"env": [{"name": "A"}]});
        assert_eq!(merge(&observed, &json!({}), &desired), desired);
        let desired = json!({"env": [{"name": "B", "value": "1"}, {"name": "B", "value": "2"}]});
        let once = merge(&json!({"env": []}), &json!({}), &desired);
        assert_eq!(once, desired);
        assert_eq!(merge(&once, &desired, &desired), once, "a fixed point");
    }

    #[test]
    fn go_v_formatting_of_merge_keys() {
        assert_eq!(string_merge_key(&json!("s")), "s");
        assert_eq!(string_merge_key(&json!(80)), "80");
        assert_eq!(string_merge_key(&json!(-3)), "-3");
        assert_eq!(string_merge_key(&json!(80.0)), "80");
        assert_eq!(string_merge_key(&json!(1e6)), "1e+06");
        assert_eq!(string_merge_key(&json!(0.5)), "0.5");
        assert_eq!(string_merge_key(&json!(true)), "true");
        assert_eq!(string_merge_key(&Value::Null), "<nil>");
        assert_eq!(string_merge_key(&json!(["a", 1])), "[a 1]");
        assert_eq!(string_merge_key(&json!({"b": 1, "a": "x"})), "map[a:x b:1]");
    }

    // ----- apply_update -----

    fn observed_deployment() -> Value {
        let last = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "labels": {"app": "web", "old": "x"}},
            "spec": {"replicas": 1}
        });
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "ns",
                "uid": "u-1",
                "resourceVersion": "42",
                "generation": 3,
                "creationTimestamp": "2024-01-01T00:00:00Z",
                "managedFields": [{"manager": "kubectl"}],
                "labels": {"app": "web", "old": "x", "added-by-others": "y"},
                "annotations": {
                    "deployment.kubernetes.io/revision": "3",
                    LAST_APPLIED_ANNOTATION: to_json_compact_go(&last)
                }
            },
            "spec": {"replicas": 1, "progressDeadlineSeconds": 600},
            "status": {"readyReplicas": 1}
        })
    }

    #[test]
    fn apply_update_merges_and_keeps_fields_others_set() {
        let desired = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"replicas": 2}
        });
        let out = apply_update(&observed_deployment(), &desired).unwrap();
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "web", "added-by-others": "y"})
        );
        assert_eq!(
            out["spec"],
            json!({"replicas": 2, "progressDeadlineSeconds": 600})
        );
        assert_eq!(
            out["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
            json!("3")
        );
        assert_eq!(annotation(&out), to_json_compact_go(&desired));
    }

    #[test]
    fn apply_update_reverts_system_metadata_and_status() {
        let desired = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "ns",
                "labels": {"app": "web", "old": "x"},
                "uid": "forged",
                "resourceVersion": "1",
                "generation": 99,
                "selfLink": "/forged",
                "deletionTimestamp": "2030-01-01T00:00:00Z",
                "deletionGracePeriodSeconds": 5,
                "managedFields": []
            },
            "spec": {"replicas": 1},
            "status": {"readyReplicas": 7, "extra": true}
        });
        let observed = observed_deployment();
        let out = apply_update(&observed, &desired).unwrap();
        let meta = &out["metadata"];
        for field in [
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "managedFields",
        ] {
            assert_eq!(meta[field], observed["metadata"][field], "{field}");
        }
        // Absent in observed: removed from the result.
        for field in [
            "selfLink",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            assert!(meta.get(field).is_none(), "{field}");
        }
        assert_eq!(out["status"], json!({"readyReplicas": 1}));
        // Nothing else changed except the annotation: a no-op update is detectable.
        let mut expected = observed.clone();
        expected["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] =
            Value::String(to_json_compact_go(&desired));
        assert_eq!(out, expected);
    }

    #[test]
    fn apply_update_removes_status_observed_lacks() {
        let mut observed = observed_deployment();
        observed.as_object_mut().unwrap().remove("status");
        let desired = json!({"kind": "Deployment", "status": {"x": 1}});
        let out = apply_update(&observed, &desired).unwrap();
        assert!(out.get("status").is_none());
    }

    #[test]
    fn apply_update_is_a_fixed_point() {
        // Applying the same desired twice yields the same object: no update loop.
        let desired = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "ns"},
            "data": {"k": "<v&>"}
        });
        let created = with_last_applied(&desired).unwrap();
        let once = apply_update(&created, &desired).unwrap();
        assert_eq!(once, created);
        assert_eq!(apply_update(&once, &desired).unwrap(), once);
    }

    #[test]
    fn apply_update_without_annotation_treats_last_applied_as_empty() {
        let observed =
            json!({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        let desired = json!({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "3"}});
        let out = apply_update(&observed, &desired).unwrap();
        assert_eq!(out["data"], json!({"a": "3", "b": "2"}));
        assert_eq!(
            annotation(&out),
            r#"{"data":{"a":"3"},"kind":"ConfigMap","metadata":{"name":"c"}}"#
        );
    }

    #[test]
    fn apply_update_strips_annotation_from_desired() {
        let observed = json!({"kind": "ConfigMap", "metadata": {"name": "c"}});
        let desired = json!({
            "kind": "ConfigMap",
            "metadata": {"name": "c", "annotations": {LAST_APPLIED_ANNOTATION: "{\"bogus\":1}", "x": "y"}}
        });
        let out = apply_update(&observed, &desired).unwrap();
        assert_eq!(
            annotation(&out),
            r#"{"kind":"ConfigMap","metadata":{"annotations":{"x":"y"},"name":"c"}}"#
        );
        assert_eq!(out["metadata"]["annotations"]["x"], json!("y"));
    }

    #[test]
    fn apply_update_rejects_unparsable_annotation_naming_the_object() {
        let observed = json!({
            "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "ns", "annotations": {LAST_APPLIED_ANNOTATION: "{not json"}}
        });
        let err = apply_update(&observed, &json!({})).unwrap_err();
        assert!(matches!(err, ApplyError::InvalidLastApplied { .. }));
        let msg = err.to_string();
        assert!(msg.contains("ConfigMap ns/c"), "{msg}");
        assert!(msg.contains(LAST_APPLIED_ANNOTATION), "{msg}");

        let observed = json!({
            "kind": "ConfigMap",
            "metadata": {"name": "c", "annotations": {LAST_APPLIED_ANNOTATION: "[1]"}}
        });
        assert!(matches!(
            apply_update(&observed, &json!({})),
            Err(ApplyError::LastAppliedNotObject { .. })
        ));
        // Empty annotation or `null`: nothing recorded.
        for raw in ["", "null"] {
            let observed =
                json!({"metadata": {"annotations": {LAST_APPLIED_ANNOTATION: raw}}, "a": 1});
            let out = apply_update(&observed, &json!({})).unwrap();
            assert_eq!(out["a"], json!(1));
        }
    }

    #[test]
    fn apply_update_rejects_non_objects() {
        assert!(matches!(
            apply_update(&json!([]), &json!({})),
            Err(ApplyError::NotAnObject {
                role: "observed",
                ..
            })
        ));
        assert!(matches!(
            apply_update(&json!({}), &json!("x")),
            Err(ApplyError::NotAnObject {
                role: "desired",
                ..
            })
        ));
    }

    // ----- annotation content / with_last_applied -----

    #[test]
    fn annotation_is_go_compact_json() {
        let desired = json!({
            "metadata": {"name": "n", "labels": {"b": "2", "a": "1"}},
            "data": {"html": "<a href=\"x\">&</a>", "ctl": "\u{1}\n", "sep": "\u{2028}"},
            "n": [1, 1.5, -0.0, 1e21, 100000000000000000000.0, true, null]
        });
        let out = with_last_applied(&desired).unwrap();
        assert_eq!(
            annotation(&out),
            concat!(
                r#"{"data":{"ctl":"\u0001\n","html":"\u003ca href=\"x\"\u003e\u0026\u003c/a\u003e","#,
                r#""sep":"\u2028"},"metadata":{"labels":{"a":"1","b":"2"},"name":"n"},"#,
                r#""n":[1,1.5,-0,1e+21,100000000000000000000,true,null]}"#
            )
        );
    }

    #[test]
    fn with_last_applied_records_desired_and_keeps_other_annotations() {
        let desired =
            json!({"kind": "ConfigMap", "metadata": {"name": "c", "annotations": {"keep": "me"}}});
        let out = with_last_applied(&desired).unwrap();
        assert_eq!(out["metadata"]["annotations"]["keep"], json!("me"));
        assert_eq!(
            annotation(&out),
            r#"{"kind":"ConfigMap","metadata":{"annotations":{"keep":"me"},"name":"c"}}"#
        );
        // Round trip: the recorded configuration parses back to desired.
        let parsed: Value = serde_json::from_str(annotation(&out)).unwrap();
        assert_eq!(parsed, desired);
        // No metadata at all: created.
        let out = with_last_applied(&json!({"kind": "X"})).unwrap();
        assert_eq!(annotation(&out), r#"{"kind":"X"}"#);
        // metadata that is not an object cannot hold the annotation.
        assert!(matches!(
            with_last_applied(&json!({"metadata": 1})),
            Err(ApplyError::FieldNotObject { .. })
        ));
    }

    // ----- sanitize_for_ssa -----

    #[test]
    fn sanitize_removes_system_fields_status_and_annotation() {
        let observed = observed_deployment();
        let out = sanitize_for_ssa(&observed);
        let meta = out["metadata"].as_object().unwrap();
        for field in SYSTEM_METADATA_FIELDS {
            assert!(!meta.contains_key(field), "{field}");
        }
        assert!(out.get("status").is_none());
        assert_eq!(
            out["metadata"]["annotations"],
            json!({"deployment.kubernetes.io/revision": "3"})
        );
        assert_eq!(out["metadata"]["labels"], observed["metadata"]["labels"]);
        assert_eq!(out["spec"], observed["spec"]);
    }

    #[test]
    fn sanitize_drops_emptied_annotations_only() {
        let obj =
            json!({"metadata": {"name": "a", "annotations": {LAST_APPLIED_ANNOTATION: "{}"}}});
        assert_eq!(sanitize_for_ssa(&obj), json!({"metadata": {"name": "a"}}));
        // An empty map the hook set on purpose is left alone.
        let obj = json!({"metadata": {"name": "a", "annotations": {}}});
        assert_eq!(sanitize_for_ssa(&obj), obj);
        // Non-objects pass through.
        assert_eq!(sanitize_for_ssa(&json!(3)), json!(3));
    }

    // ----- is_subset -----

    #[test]
    fn subset_objects_allow_extra_observed_fields() {
        let observed = json!({"a": 1, "b": {"c": "x", "d": "y"}, "e": true});
        assert!(is_subset(&observed, &json!({})));
        assert!(is_subset(&observed, &json!({"b": {"c": "x"}})));
        assert!(is_subset(&observed, &observed));
        assert!(!is_subset(&observed, &json!({"b": {"c": "z"}})));
        assert!(!is_subset(&observed, &json!({"missing": 1})));
        assert!(!is_subset(&observed, &json!({"b": "x"})));
    }

    #[test]
    fn subset_numbers_compare_numerically() {
        assert!(is_subset(&json!({"n": 1}), &json!({"n": 1.0})));
        assert!(is_subset(&json!({"n": 1.0}), &json!({"n": 1})));
        assert!(is_subset(&json!(-5), &json!(-5.0)));
        assert!(is_subset(&json!(u64::MAX), &json!(u64::MAX)));
        assert!(!is_subset(&json!(1), &json!(1.5)));
        assert!(!is_subset(&json!(-1), &json!(u64::MAX)));
        assert!(!is_subset(&json!(1), &json!("1")));
    }

    #[test]
    fn subset_arrays_need_same_length_and_pairwise_subset() {
        let observed = json!({"l": [{"name": "a", "x": 1}, {"name": "b"}]});
        assert!(is_subset(
            &observed,
            &json!({"l": [{"name": "a"}, {"name": "b"}]})
        ));
        assert!(!is_subset(&observed, &json!({"l": [{"name": "a"}]})));
        assert!(!is_subset(
            &observed,
            &json!({"l": [{"name": "b"}, {"name": "a"}]})
        ));
        assert!(!is_subset(
            &observed,
            &json!({"l": [{"name": "a"}, {"name": "b"}, {"name": "c"}]})
        ));
        assert!(is_subset(&json!([]), &json!([])));
        assert!(!is_subset(&json!({"l": {}}), &json!({"l": []})));
    }

    #[test]
    fn subset_null_matches_absent_or_null() {
        assert!(is_subset(&json!({"a": 1}), &json!({"b": null})));
        assert!(is_subset(&json!({"b": null}), &json!({"b": null})));
        assert!(!is_subset(&json!({"b": 1}), &json!({"b": null})));
        assert!(!is_subset(&json!({"b": null}), &json!({"b": 1})));
    }

    // ----- content_hash -----

    #[test]
    fn content_hash_is_stable_and_canonical() {
        let a = json!({"a": 1, "b": [1, 2], "c": {"x": "y"}});
        let b: Value = serde_json::from_str(r#"{"c":{"x":"y"},"b":[1,2],"a":1}"#).unwrap();
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(
            content_hash(&a),
            content_hash(&json!({"a": 2, "b": [1, 2], "c": {"x": "y"}}))
        );
        // Pinned: SHA-256("{}") starts with 44136fa355b3678a.
        assert_eq!(content_hash(&json!({})), 0x4413_6fa3_55b3_678a);
    }
}
