//! Reading the API server's field ownership (`metadata.managedFields`, format `FieldsV1`) to decide
//! what a field manager owns.
//!
//! Server-side apply removes a field only when the applying manager owned it before and no longer
//! sends it. So "the observed child already contains everything desired" is not enough to skip a
//! write: the child may still hold a field that we applied earlier and the hook has since dropped.
//! These functions answer, without a request, whether that is the case ([`first_unwanted`]), and
//! support switching between the two apply strategies:
//! - from dynamic apply to SSA, the field ownership recorded by earlier `create`/`update` writes
//!   (operation `Update`, ours or Metacontroller's) is moved into our `Apply` entry
//!   ([`migrated_entries`]), as `kubectl`'s client-side-apply upgrade does, so that SSA can remove
//!   what the hook no longer returns;
//! - from SSA to dynamic apply, the fields our `Apply` entry owns, with their observed values, stand
//!   in for the missing last-applied annotation ([`project`]).
//!
//! `FieldsV1` is a JSON object whose keys are `f:<field>` (a map field), `k:<json object>` (a list
//! item identified by its key fields), `v:<json value>` (a set item), `i:<index>` (an item of a list
//! known by position) and `.` (the node itself); leaves are `{}`.

use serde_json::{Map, Value};

/// The operation of a managedFields entry written by server-side apply.
pub const APPLY: &str = "Apply";

/// The `fieldsV1` of `manager`'s entry with `operation` on the main resource (not a subresource
/// such as `status`), if there is one.
pub fn entry<'a>(object: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    entry_where(object, operation, |name| name == manager)
}

/// The `fieldsV1` of the first entry with `operation` on the main resource whose manager
/// `manager` accepts.
pub fn entry_where<'a>(
    object: &'a Value,
    operation: &str,
    manager: impl Fn(&str) -> bool,
) -> Option<&'a Value> {
    entries(object).find_map(|e| {
        (e.get("manager")
            .and_then(Value::as_str)
            .is_some_and(&manager)
            && e.get("operation").and_then(Value::as_str) == Some(operation)
            && is_main_resource(e))
        .then(|| e.get("fieldsV1"))
        .flatten()
    })
}

fn entries(object: &Value) -> impl Iterator<Item = &Value> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn is_main_resource(entry: &Value) -> bool {
    entry
        .get("subresource")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
}

/// The first field (as a readable path) that `fields` owns but `desired` does not set, or `None`
/// when every owned field is still desired. Values are not compared: that is the subset check's
/// job; this one finds what an apply of `desired` would remove.
pub fn first_unwanted(fields: &Value, desired: &Value) -> Option<String> {
    walk_unwanted(fields, desired, &mut String::new())
}

fn walk_unwanted(fields: &Value, desired: &Value, path: &mut String) -> Option<String> {
    let fields = fields.as_object()?;
    for (key, sub) in fields {
        if key == "." {
            continue;
        }
        let mark = path.len();
        let found = match step(key, desired) {
            Step::Found(value) => {
                path.push_str(&describe_step(key));
                walk_unwanted(sub, value, path)
            }
            Step::Missing => {
                path.push_str(&describe_step(key));
                Some(path.clone())
            }
            Step::Unknown => None,
        };
        if found.is_some() {
            return found;
        }
        path.truncate(mark);
    }
    None
}

/// Where one `FieldsV1` key leads inside a JSON value.
enum Step<'a> {
    Found(&'a Value),
    Missing,
    /// A key of a kind this code does not know: never a reason to write.
    Unknown,
}

fn step<'a>(key: &str, value: &'a Value) -> Step<'a> {
    let found = |v: Option<&'a Value>| match v {
        Some(v) if !v.is_null() => Step::Found(v),
        _ => Step::Missing,
    };
    if let Some(name) = key.strip_prefix("f:") {
        return found(value.as_object().and_then(|m| m.get(name)));
    }
    let items = value.as_array();
    if let Some(json) = key.strip_prefix("k:") {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(json) else {
            return Step::Unknown;
        };
        let Some(items) = items else {
            return Step::Missing;
        };
        if let Some(exact) = items.iter().find(|i| has_key(i, &fields)) {
            return found(Some(exact));
        }
        // The server fills in key fields the applier left out (a container port's `protocol`),
        // so the recorded key has a field the desired item lacks: the item whose present key
        // fields match is the same item, if only one does.
        let mut partial = items.iter().filter(|i| has_key_where_present(i, &fields));
        return match (partial.next(), partial.next()) {
            (Some(item), None) => found(Some(item)),
            _ => Step::Missing,
        };
    }
    if let Some(json) = key.strip_prefix("v:") {
        let Ok(wanted) = serde_json::from_str::<Value>(json) else {
            return Step::Unknown;
        };
        return found(items.and_then(|items| items.iter().find(|i| same(i, &wanted))));
    }
    if let Some(index) = key.strip_prefix("i:") {
        let Ok(index) = index.parse::<usize>() else {
            return Step::Unknown;
        };
        return found(items.and_then(|items| items.get(index)));
    }
    Step::Unknown
}

/// Whether a list item carries all the key fields of a `k:` entry with the same values.
fn has_key(item: &Value, key: &Map<String, Value>) -> bool {
    key.iter()
        .all(|(name, want)| item.get(name).is_some_and(|have| same(have, want)))
}

/// Whether the key fields `item` has match, and it has at least one of them.
fn has_key_where_present(item: &Value, key: &Map<String, Value>) -> bool {
    let mut present = key
        .iter()
        .filter_map(|(name, want)| item.get(name).map(|have| same(have, want)))
        .peekable();
    present.peek().is_some() && present.all(|matched| matched)
}

/// JSON equality with numbers compared by value (`80` and `80.0` are one port).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| same(a, b)))
        }
        _ => a == b,
    }
}

fn describe_step(key: &str) -> String {
    match key.split_at_checked(2) {
        Some(("f:", name)) => format!(".{name}"),
        Some((_, item)) => format!("[{item}]"),
        None => format!("[{key}]"),
    }
}

/// The part of `observed` that `fields` owns, with the observed values: what a manager applied
/// last, as far as the server remembers. Lists keep the observed order.
pub fn project(fields: &Value, observed: &Value) -> Value {
    let Some(fields) = fields.as_object() else {
        return observed.clone();
    };
    let children: Vec<(&String, &Value)> = fields.iter().filter(|(k, _)| *k != ".").collect();
    if children.is_empty() {
        // A leaf, or a node owned as a whole.
        return observed.clone();
    }
    match observed {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, sub) in children {
                if let Some(name) = key.strip_prefix("f:")
                    && let Some(value) = map.get(name)
                {
                    out.insert(name.to_owned(), project(sub, value));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                let owned = children.iter().find(|(key, _)| match step(key, observed) {
                    Step::Found(found) => std::ptr::eq(found, item),
                    _ => false,
                });
                if let Some((_, sub)) = owned {
                    out.push(project(sub, item));
                }
            }
            Value::Array(out)
        }
        other => other.clone(),
    }
}

/// Adds every field of `more` to `into` (a deep union of two `FieldsV1` sets).
pub fn union(into: &mut Value, more: &Value) {
    let (Some(into), Some(more)) = (into.as_object_mut(), more.as_object()) else {
        return;
    };
    for (key, sub) in more {
        match into.get_mut(key) {
            Some(existing) => union(existing, sub),
            None => {
                into.insert(key.clone(), sub.clone());
            }
        }
    }
}

/// The managedFields list to write so that `manager` owns, through an `Apply` entry, every field
/// that was written to the main resource by `manager` itself with another operation or by one of
/// `previous` (e.g. `metacontroller`, when taking over its children), or `None` when there is
/// nothing to move. Entries of other managers, and subresource entries, are kept as they are.
pub fn migrated_entries(object: &Value, manager: &str, previous: &[&str]) -> Option<Vec<Value>> {
    let is_ours = |e: &Value| {
        let name = e.get("manager").and_then(Value::as_str).unwrap_or_default();
        is_main_resource(e) && (name == manager || previous.contains(&name))
    };
    let is_our_apply = |e: &Value| {
        e.get("manager").and_then(Value::as_str) == Some(manager)
            && e.get("operation").and_then(Value::as_str) == Some(APPLY)
            && is_main_resource(e)
    };
    let all: Vec<&Value> = entries(object).collect();
    if !all.iter().any(|e| is_ours(e) && !is_our_apply(e)) {
        return None;
    }
    let mut fields = Value::Object(Map::new());
    let mut template: Option<Value> = None;
    let mut out = Vec::with_capacity(all.len());
    for e in all {
        if is_ours(e) {
            if let Some(f) = e.get("fieldsV1") {
                union(&mut fields, f);
            }
            if template.is_none() || is_our_apply(e) {
                template = Some(e.clone());
            }
        } else {
            out.push(e.clone());
        }
    }
    let mut merged = template.unwrap_or_else(|| Value::Object(Map::new()));
    if let Some(map) = merged.as_object_mut() {
        map.insert("manager".into(), Value::String(manager.to_owned()));
        map.insert("operation".into(), Value::String(APPLY.to_owned()));
        map.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        map.insert("fieldsV1".into(), fields);
        map.remove("subresource");
    }
    out.push(merged);
    Some(out)
}

#[cfg(test)]
mod tests;
