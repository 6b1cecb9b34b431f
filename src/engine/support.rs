//! Which parts of Metacontroller's API this engine runs. Everything the CRD schema accepts either
//! works or stops the controller from starting with an error that names the field: a controller
//! that silently ignored `preUpdateChild` would skip a gate the user relies on.
//!
//! `preUpdateChild` and `postUpdateChild` are in Metacontroller's schema but Metacontroller never
//! calls them (dead fields since its GCP days): no behaviour to be compatible with, so they are
//! refused rather than given a meaning of our own.

use crate::api::CompositeControllerSpec;

/// A field of a controller's spec that is set but not supported by this version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {what} is not supported{hint}")]
pub struct Unsupported {
    /// Where it is, e.g. `spec.hooks.preUpdateChild`.
    pub field: String,
    /// What is set there.
    pub what: String,
    /// What to use instead, starting with `" ("`, or empty.
    pub hint: &'static str,
}

/// The first field of `spec` this engine cannot run, if any.
pub fn unsupported_in_composite(spec: &CompositeControllerSpec) -> Option<Unsupported> {
    let hooks = spec.hooks.as_ref()?;
    for (name, hook) in [
        ("preUpdateChild", &hooks.pre_update_child),
        ("postUpdateChild", &hooks.post_update_child),
    ] {
        if hook.is_some() {
            return Some(Unsupported {
                field: format!("spec.hooks.{name}"),
                what: format!("the {name} hook"),
                hint: " (Metacontroller never calls it either; remove it)",
            });
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
        let s = spec(json!({
            "parentResource": {"apiVersion": "v1", "resource": "things", "revisionHistory": {"fieldPaths": ["spec.template"]}},
            "childResources": [
                {"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": "InPlace"}},
                {"apiVersion": "v1", "resource": "secrets", "updateStrategy": {"method": "RollingRecreate",
                    "statusChecks": {"conditions": [{"type": "Ready", "status": "True"}]}}},
                {"apiVersion": "v1", "resource": "pods", "updateStrategy": {"method": "RollingInPlace"}},
            ],
        }));
        assert_eq!(unsupported_in_composite(&s), None);
    }

    #[test]
    fn the_update_child_hooks_are_named() {
        for name in ["preUpdateChild", "postUpdateChild"] {
            let s = spec(
                json!({"hooks": {"sync": {"webhook": {"url": "http://x"}}, name: {"webhook": {"url": "http://y"}}}}),
            );
            let found = unsupported_in_composite(&s).expect("unsupported");
            assert_eq!(
                found.to_string(),
                format!(
                    "spec.hooks.{name}: the {name} hook is not supported (Metacontroller never calls it either; remove it)"
                )
            );
        }
    }
}
