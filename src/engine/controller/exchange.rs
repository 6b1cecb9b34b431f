//! The hook call: the request each kind sends (composite `parent`/`children`, decorator
//! `object`/`attachments`), and its answer decoded into one shape the rest of the pipeline uses.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{CONTROLLER_UID_LABEL, DECORATOR_ANNOTATION, Kind};
use crate::hooks::protocol::{
    COMPOSITE_RESPONSE_FIELDS, CompositeRequest, CompositeResponse, DECORATOR_RESPONSE_FIELDS,
    DecodeMode, DecoratorRequest, DecoratorResponse, ObjectMap, ResponseError, decode,
};

/// What a sync or finalize hook answered, whichever kind of controller asked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HookOutcome {
    /// `children` (composite) or `attachments` (decorator).
    pub children: Vec<Value>,
    /// Composite: replaces the status (`None` means `{}`). Decorator: merged (`None` leaves it).
    pub status: Option<Value>,
    /// Decorator only: label changes, `None` deletes the key.
    pub labels: BTreeMap<String, Option<String>>,
    /// Decorator only: annotation changes, `None` deletes the key.
    pub annotations: BTreeMap<String, Option<String>>,
    pub resync_after_seconds: f64,
    pub finalized: bool,
}

/// The request body for a sync or finalize call.
pub fn request(
    kind: &Kind,
    controller: &Value,
    parent: &Value,
    observed: ObjectMap,
    related: ObjectMap,
    finalizing: bool,
) -> Value {
    let request = match kind {
        Kind::Composite { .. } => serde_json::to_value(CompositeRequest {
            controller: controller.clone(),
            parent: parent.clone(),
            children: observed,
            related,
            finalizing,
        }),
        Kind::Decorator => serde_json::to_value(DecoratorRequest {
            controller: controller.clone(),
            object: parent.clone(),
            attachments: observed,
            related,
            finalizing,
        }),
    };
    request.unwrap_or(Value::Null)
}

/// Decodes an answer as `kind`'s response, in `mode` (strict for protocol v2).
pub fn decode_response(
    kind: &Kind,
    response: Value,
    mode: DecodeMode,
) -> Result<HookOutcome, ResponseError> {
    Ok(match kind {
        Kind::Composite { .. } => {
            let r: CompositeResponse = decode(response, mode, COMPOSITE_RESPONSE_FIELDS)?;
            HookOutcome {
                children: r.children,
                status: r.status,
                resync_after_seconds: r.resync_after_seconds,
                finalized: r.finalized,
                ..HookOutcome::default()
            }
        }
        Kind::Decorator => {
            let r: DecoratorResponse = decode(response, mode, DECORATOR_RESPONSE_FIELDS)?;
            HookOutcome {
                children: r.attachments,
                status: r.status,
                labels: r.labels,
                annotations: r.annotations,
                resync_after_seconds: r.resync_after_seconds,
                finalized: r.finalized,
            }
        }
    })
}

/// Marks desired children as this controller's before validation: generateSelector's
/// `controller-uid` label (unless the hook set it), or the decorator's annotation (always ours).
pub fn mark_children(kind: &Kind, controller: &str, parent_uid: &str, children: &mut [Value]) {
    let (field, key, value, overwrite) = match kind {
        Kind::Composite {
            generate_selector: true,
        } => ("labels", CONTROLLER_UID_LABEL, parent_uid, false),
        Kind::Composite { .. } => return,
        Kind::Decorator => ("annotations", DECORATOR_ANNOTATION, controller, true),
    };
    for child in children {
        let Some(meta) = child.get_mut("metadata").and_then(Value::as_object_mut) else {
            continue;
        };
        let map = meta.entry(field).or_insert_with(|| json!({}));
        if map.is_null() {
            *map = json!({});
        }
        if let Some(map) = map.as_object_mut()
            && (overwrite || !map.contains_key(key))
        {
            map.insert(key.to_owned(), Value::String(value.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decorator_answers_keep_labels_annotations_and_attachments() {
        let answer = json!({
            "labels": {"a": "1", "gone": null},
            "annotations": {"b": "2"},
            "status": {"x": 1},
            "attachments": [{"apiVersion": "v1", "kind": "Service"}],
            "resyncAfterSeconds": 2.5,
            "finalized": true,
        });
        let outcome = decode_response(&Kind::Decorator, answer, DecodeMode::Loose).expect("valid");
        assert_eq!(outcome.labels.get("a"), Some(&Some("1".to_owned())));
        assert_eq!(outcome.labels.get("gone"), Some(&None));
        assert_eq!(outcome.annotations.len(), 1);
        assert_eq!(outcome.children.len(), 1);
        assert_eq!(outcome.status, Some(json!({"x": 1})));
        assert!(outcome.finalized);
        assert_eq!(outcome.resync_after_seconds, 2.5);
    }

    #[test]
    fn a_composite_answer_with_decorator_fields_is_refused_when_strict() {
        let answer = json!({"children": [], "labels": {"a": "1"}});
        let composite = Kind::Composite {
            generate_selector: false,
        };
        assert!(decode_response(&composite, answer.clone(), DecodeMode::Strict).is_err());
        let outcome = decode_response(&composite, answer, DecodeMode::Loose).expect("lenient");
        assert!(
            outcome.labels.is_empty(),
            "labels are not a composite field"
        );
    }

    #[test]
    fn requests_use_each_kinds_keys() {
        let controller = json!({"kind": "X"});
        let parent = json!({"metadata": {"name": "p"}});
        let composite = request(
            &Kind::Composite {
                generate_selector: false,
            },
            &controller,
            &parent,
            ObjectMap::new(),
            ObjectMap::new(),
            false,
        );
        assert_eq!(composite["parent"], parent);
        assert!(composite.get("children").is_some() && composite.get("object").is_none());
        let decorator = request(
            &Kind::Decorator,
            &controller,
            &parent,
            ObjectMap::new(),
            ObjectMap::new(),
            true,
        );
        assert_eq!(decorator["object"], parent);
        assert_eq!(decorator["finalizing"], json!(true));
        assert!(decorator.get("attachments").is_some() && decorator.get("parent").is_none());
    }

    #[test]
    fn marks_are_added_without_overwriting_a_hooks_own_label() {
        let mut children = vec![
            json!({"metadata": {"name": "a"}}),
            json!({"metadata": {"name": "b", "labels": {"controller-uid": "mine"}}}),
            json!({"metadata": {"name": "c", "annotations": null}}),
        ];
        let generate = Kind::Composite {
            generate_selector: true,
        };
        mark_children(&generate, "ctl", "uid-1", &mut children);
        assert_eq!(children[0]["metadata"]["labels"]["controller-uid"], "uid-1");
        assert_eq!(children[1]["metadata"]["labels"]["controller-uid"], "mine");
        mark_children(&Kind::Decorator, "ctl", "uid-1", &mut children);
        for child in &children {
            assert_eq!(
                child["metadata"]["annotations"][DECORATOR_ANNOTATION],
                "ctl"
            );
        }
    }
}
