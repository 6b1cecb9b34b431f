//! Parent status writes: Metacontroller replaces the whole status, so the patch sets every new
//! field and nulls every field that disappeared.

use serde_json::{Map, Value};

/// A JSON merge patch that turns `old` into `new` exactly (objects recursively; anything else is
/// replaced). Returns `None` when they are already equal.
pub fn replace_patch(old: &Value, new: &Value) -> Option<Value> {
    if old == new {
        return None;
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = Map::new();
            for (k, ov) in o {
                match n.get(k) {
                    None => {
                        patch.insert(k.clone(), Value::Null);
                    }
                    Some(nv) => {
                        if let Some(p) = replace_patch(ov, nv) {
                            patch.insert(k.clone(), p);
                        }
                    }
                }
            }
            for (k, nv) in n {
                if !o.contains_key(k) {
                    patch.insert(k.clone(), nv.clone());
                }
            }
            Some(Value::Object(patch))
        }
        _ => Some(new.clone()),
    }
}

/// The status Metacontroller writes: the hook's status (null → `{}`) plus `observedGeneration`.
pub fn desired_status(hook_status: Option<&Value>, generation: Option<i64>) -> Value {
    let mut status = match hook_status {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    if let Some(generation) = generation {
        status.insert("observedGeneration".into(), Value::from(generation));
    }
    Value::Object(status)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn patch_replaces_exactly() {
        let old = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        let new = json!({"b": {"c": 2, "f": 4}, "e": [2], "g": null});
        let patch = replace_patch(&old, &new).expect("differs");
        assert_eq!(
            patch,
            json!({"a": null, "b": {"d": null, "f": 4}, "e": [2], "g": null})
        );
        assert_eq!(replace_patch(&new, &new), None);
    }

    #[test]
    fn status_gets_observed_generation_and_null_means_empty() {
        assert_eq!(
            desired_status(None, Some(3)),
            json!({"observedGeneration": 3})
        );
        assert_eq!(
            desired_status(Some(&json!({"ready": true})), Some(1)),
            json!({"ready": true, "observedGeneration": 1})
        );
        assert_eq!(desired_status(Some(&json!("x")), None), json!({}));
    }
}
