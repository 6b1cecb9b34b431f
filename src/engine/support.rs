//! Which parts of Metacontroller's API this engine runs. Everything the CRD schema accepts either
//! works or stops the controller from starting with an error that names the field: a controller
//! that silently ignores `RollingRecreate` would update children in a way the user did not ask
//! for, and one that ignores `preUpdateChild` would skip a gate the user relies on.

use crate::api::CompositeControllerSpec;

/// A field of a controller's spec that is set but not supported by this version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {what} is not supported yet{hint}")]
pub struct Unsupported {
    /// Where it is, e.g. `spec.childResources[0].updateStrategy.method`.
    pub field: String,
    /// What is set there.
    pub what: String,
    /// What to use instead, starting with `" ("`, or empty.
    pub hint: &'static str,
}

/// The first field of `spec` this engine cannot run, if any.
pub fn unsupported_in_composite(spec: &CompositeControllerSpec) -> Option<Unsupported> {
    let unsupported =
        |field: String, what: String, hint: &'static str| Some(Unsupported { field, what, hint });
    for (i, child) in spec.child_resources.iter().enumerate() {
        let path = format!("spec.childResources[{i}].updateStrategy");
        let method = child.update_method();
        if method.is_rolling() {
            return unsupported(
                format!("{path}.method"),
                format!("update method {method:?}"),
                " (use OnDelete, Recreate or InPlace)",
            );
        }
        if child
            .update_strategy
            .as_ref()
            .is_some_and(|s| s.status_checks.is_some())
        {
            return unsupported(
                format!("{path}.statusChecks"),
                "statusChecks (used by rolling updates)".into(),
                " (remove it)",
            );
        }
    }
    if spec.parent_resource.revision_history.is_some() {
        return unsupported(
            "spec.parentResource.revisionHistory".into(),
            "revisionHistory (used by rolling updates)".into(),
            " (remove it)",
        );
    }
    if let Some(hooks) = &spec.hooks {
        for (name, hook) in [
            ("preUpdateChild", &hooks.pre_update_child),
            ("postUpdateChild", &hooks.post_update_child),
        ] {
            if hook.is_some() {
                return unsupported(
                    format!("spec.hooks.{name}"),
                    format!("the {name} hook (called by rolling updates)"),
                    " (remove it)",
                );
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(value: serde_json::Value) -> CompositeControllerSpec {
        let mut base = json!({
            "parentResource": {"apiVersion": "v1", "resource": "things"},
            "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
            "hooks": {"sync": {"webhook": {"url": "http://x"}}},
        });
        if let (Some(base), Some(more)) = (base.as_object_mut(), value.as_object()) {
            base.extend(more.clone());
        }
        serde_json::from_value(base).expect("spec")
    }

    #[test]
    fn supported_specs_pass() {
        assert_eq!(unsupported_in_composite(&spec(json!({}))), None);
        let s = spec(json!({"childResources": [
            {"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}},
            {"apiVersion": "v1", "resource": "secrets", "updateStrategy": {"method": "Recreate"}},
        ]}));
        assert_eq!(unsupported_in_composite(&s), None);
    }

    #[test]
    fn each_unsupported_field_is_named() {
        let cases = [
            (
                json!({"childResources": [
                    {"apiVersion": "v1", "resource": "configmaps"},
                    {"apiVersion": "v1", "resource": "secrets", "updateStrategy": {"method": "RollingInPlace"}},
                ]}),
                "spec.childResources[1].updateStrategy.method: update method RollingInPlace is not supported yet (use OnDelete, Recreate or InPlace)",
            ),
            (
                json!({"childResources": [{"apiVersion": "v1", "resource": "configmaps",
                    "updateStrategy": {"method": "InPlace", "statusChecks": {"conditions": [{"type": "Ready"}]}}}]}),
                "spec.childResources[0].updateStrategy.statusChecks: statusChecks (used by rolling updates) is not supported yet (remove it)",
            ),
            (
                json!({"parentResource": {"apiVersion": "v1", "resource": "things", "revisionHistory": {"fieldPaths": ["spec"]}}}),
                "spec.parentResource.revisionHistory: revisionHistory (used by rolling updates) is not supported yet (remove it)",
            ),
            (
                json!({"hooks": {"sync": {"webhook": {"url": "http://x"}}, "postUpdateChild": {"webhook": {"url": "http://y"}}}}),
                "spec.hooks.postUpdateChild: the postUpdateChild hook (called by rolling updates) is not supported yet (remove it)",
            ),
        ];
        for (value, text) in cases {
            let found = unsupported_in_composite(&spec(value)).expect("unsupported");
            assert_eq!(found.to_string(), text);
        }
    }
}
