//! The `metacontroller.k8s.io/v1alpha1` API: CompositeController, DecoratorController and
//! Metacontroller's own ControllerRevision, with Metacontroller's exact JSON field names so
//! existing objects deserialize unchanged, plus kubelambda's in-process hook backends
//! (`jsonnet`, `tera`) next to `webhook`.
//!
//! The CRDs are generated from these types ([`crds`], [`crds_yaml`]); `manifests/crds.yaml` is
//! that output, checked in, and a test keeps the two equal.

mod composite;
mod decorator;
mod hook;
mod revision;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceSubresourceStatus, CustomResourceSubresources,
};
use kube::CustomResourceExt;
use schemars::{Schema, SchemaGenerator, json_schema};

/// Go durations are parsed in [`crate::gocompat::duration`]; re-exported here because the API's
/// duration fields and the command line's duration flags use them.
pub use crate::gocompat::duration::{DurationError, parse_go_duration};
pub use composite::{
    ChildUpdateMethod, ChildUpdateStatusChecks, CompositeController,
    CompositeControllerChildResourceRule, CompositeControllerChildUpdateStrategy,
    CompositeControllerHooks, CompositeControllerParentResourceRule,
    CompositeControllerRevisionHistory, CompositeControllerSpec, CompositeControllerStatus,
    StatusConditionCheck,
};
pub use decorator::{
    AnnotationSelector, DecoratorController, DecoratorControllerAttachmentRule,
    DecoratorControllerAttachmentUpdateStrategy, DecoratorControllerHooks,
    DecoratorControllerResourceRule, DecoratorControllerSpec, DecoratorControllerStatus,
};
pub use hook::{
    Authorization, BasicAuth, CaBundle, CaBundleSource, ClientTls, ConfigMapKeyRef,
    DEFAULT_SERVICE_PORT, DEFAULT_SERVICE_PROTOCOL, DEFAULT_WEBHOOK_TIMEOUT, EndpointConfig, Hook,
    HookBackend, HookSource, HookVersion, JsonnetHook, ResourceKeyRef, ResponseUnmarshallMode,
    SecretKeyRef, SecretRef, ServiceReference, TeraHook, Webhook, WebhookEtagConfig,
};
pub use revision::{ControllerRevision, ControllerRevisionChildren, ControllerRevisionFields};

/// API group of all three kinds.
pub const GROUP: &str = "metacontroller.k8s.io";
/// The only version of the API. ("v2" elsewhere means the hook wire protocol, not this.)
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of all three kinds.
pub const API_VERSION: &str = "metacontroller.k8s.io/v1alpha1";

/// Annotation holding the last desired object, for Metacontroller's three-way "dynamic apply".
pub const LAST_APPLIED_ANNOTATION: &str = "metacontroller.k8s.io/last-applied-configuration";
/// Annotation set to the DecoratorController name on every attachment it manages.
pub const DECORATOR_CONTROLLER_ANNOTATION: &str = "metacontroller.k8s.io/decorator-controller";
/// Label injected into children and revisions when `generateSelector` is true.
pub const CONTROLLER_UID_LABEL: &str = "controller-uid";
/// ControllerRevision label naming the parent's API group.
pub const REVISION_API_GROUP_LABEL: &str = "metacontroller.k8s.io/apiGroup";
/// ControllerRevision label naming the parent's resource.
pub const REVISION_RESOURCE_LABEL: &str = "metacontroller.k8s.io/resource";
/// Metacontroller's server-side apply field manager, kept so both can manage the same fields.
pub const FIELD_MANAGER: &str = "metacontroller";

/// Annotation that marks these CRDs as outside the `*.k8s.io` API review process. The apiserver
/// refuses CRDs in a `k8s.io` group without it.
pub const API_APPROVED_ANNOTATION: (&str, &str) = (
    "api-approved.kubernetes.io",
    "unapproved, request not yet submitted",
);

/// Errors in API objects, each naming the offending field so the message can go straight into
/// an Event or a CLI error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// An "exactly one of" rule failed (hook backend, hook source, CA bundle source).
    #[error("{path}: exactly one of {expected} must be set, found {found}")]
    OneOf {
        /// Path of the object holding the fields, e.g. `spec.hooks.sync`.
        path: String,
        /// The candidate fields, comma separated.
        expected: String,
        /// The fields that were set ("none", "webhook and jsonnet").
        found: String,
    },
    /// A webhook has no usable address.
    #[error("{path}: webhook needs url, or both service and path")]
    WebhookUrl {
        /// Path of the webhook, e.g. `spec.hooks.sync.webhook`.
        path: String,
    },
    /// A duration field is not a Go duration.
    #[error("{path}: invalid duration {value:?}: {error}")]
    Duration {
        /// Path of the field, e.g. `spec.hooks.sync.webhook.timeout`.
        path: String,
        /// The text as written.
        value: String,
        /// What is wrong with it.
        error: DurationError,
    },
    /// An `apiVersion` that is not `<version>` or `<group>/<version>`. Inside an object the
    /// same problem is reported as [`ApiError::Invalid`] with the field's path.
    #[error("invalid apiVersion {value:?}: expected \"<version>\" or \"<group>/<version>\"")]
    ApiVersion {
        /// The text as written.
        value: String,
    },
    /// A controller without the hooks it needs.
    #[error("{path}: {message}")]
    MissingHook {
        /// Path of the hooks object, e.g. `spec.hooks`.
        path: String,
        /// What is missing.
        message: String,
    },
    /// Any other rule about a field's value.
    #[error("{path}: {message}")]
    Invalid {
        /// Path of the field.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A CRD could not be rendered as YAML.
    #[error("rendering CRD {name} as YAML: {source}")]
    Yaml {
        /// Name of the CRD.
        name: String,
        /// The serializer's error.
        source: serde_yaml::Error,
    },
}

/// Splits an `apiVersion` into (group, version): `"apps/v1"` → `("apps", "v1")`, and the core
/// group's `"v1"` → `("", "v1")`.
pub fn parse_api_version(api_version: &str) -> Result<(&str, &str), ApiError> {
    let invalid = || ApiError::ApiVersion {
        value: api_version.to_string(),
    };
    let (group, version) = match api_version.split_once('/') {
        Some((group, version)) if !group.is_empty() => (group, version),
        Some(_) => return Err(invalid()),
        None => ("", api_version),
    };
    if version.is_empty() || version.contains('/') || api_version.contains(char::is_whitespace) {
        return Err(invalid());
    }
    Ok((group, version))
}

/// [`parse_api_version`] with the field path in the error.
pub(crate) fn parse_api_version_at<'a>(
    path: &str,
    api_version: &'a str,
) -> Result<(&'a str, &'a str), ApiError> {
    parse_api_version(api_version).map_err(|error| ApiError::Invalid {
        path: path.to_string(),
        message: error.to_string(),
    })
}

/// `resyncPeriodSeconds` of either controller kind, raised to at least one second.
pub(crate) fn resync_period(seconds: Option<i32>) -> Option<std::time::Duration> {
    seconds.map(|s| std::time::Duration::from_secs(u64::try_from(s.max(1)).unwrap_or(1)))
}

/// The `hooks` of either controller kind, or Metacontroller's error for a controller without.
pub(crate) fn hooks_field<T>(hooks: Option<&T>) -> Result<&T, ApiError> {
    hooks.ok_or_else(|| ApiError::MissingHook {
        path: "spec.hooks".to_string(),
        message: "no hooks defined".to_string(),
    })
}

/// Checks a list of resource rules (`spec.childResources`, `spec.attachments`): each apiVersion
/// parses, and no type is declared twice (the second would be managed by two rules at once).
pub(crate) fn validate_resource_rules<'a>(
    list: &str,
    rules: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<(), ApiError> {
    let mut seen = std::collections::BTreeSet::new();
    for (index, (api_version, resource)) in rules.enumerate() {
        let path = format!("{list}[{index}]");
        parse_api_version_at(&format!("{path}.apiVersion"), api_version)?;
        if !seen.insert((api_version, resource)) {
            return Err(ApiError::Invalid {
                path,
                message: format!("{api_version} {resource} is declared more than once"),
            });
        }
    }
    Ok(())
}

/// Checks every hook (`spec.hooks.<name>`) and endpoint config of either controller kind.
pub(crate) fn validate_hooks_and_endpoints<'a>(
    hooks: impl Iterator<Item = (&'static str, &'a Hook)>,
    endpoint_configs: &[EndpointConfig],
) -> Result<(), ApiError> {
    for (path, hook) in hooks {
        hook.validate(path)?;
    }
    for (index, config) in endpoint_configs.iter().enumerate() {
        config.validate(&format!("spec.endpointConfigs[{index}]"))?;
    }
    Ok(())
}

/// Finalizer that a CompositeController with a finalize hook puts on its parents. The domain is
/// `metacontroller.io`, not `metacontroller.k8s.io`, exactly as Metacontroller writes it, so
/// parents finalized by Metacontroller are recognised.
pub fn composite_finalizer(controller_name: &str) -> String {
    format!("metacontroller.io/compositecontroller-{controller_name}")
}

/// Finalizer that a DecoratorController with a finalize hook puts on its targets (same domain
/// caveat as [`composite_finalizer`]).
pub fn decorator_finalizer(controller_name: &str) -> String {
    format!("metacontroller.io/decoratorcontroller-{controller_name}")
}

/// All CRDs of the API, in name order: compositecontrollers, controllerrevisions,
/// decoratorcontrollers.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut revision = ControllerRevision::crd();
    // Metacontroller declares a status subresource on its ControllerRevision although the kind
    // has no status; keep the declaration so the CRD is the same as the one being replaced.
    for version in &mut revision.spec.versions {
        version.subresources = Some(CustomResourceSubresources {
            status: Some(CustomResourceSubresourceStatus(serde_json::json!({}))),
            scale: None,
        });
    }
    vec![
        CompositeController::crd(),
        revision,
        DecoratorController::crd(),
    ]
}

/// All CRDs as one YAML stream, each document introduced by `---`, ready for
/// `kubectl apply -f -`. This is what `kubelambda crds` prints.
pub fn crds_yaml() -> Result<String, ApiError> {
    let mut out = String::new();
    for (index, crd) in crds().into_iter().enumerate() {
        let text = serde_yaml::to_string(&crd).map_err(|source| ApiError::Yaml {
            name: crd.metadata.name.clone().unwrap_or_default(),
            source,
        })?;
        out.push_str("---\n");
        if index == 0 {
            // Inside the first document rather than before it, so no tool sees an empty
            // (comment-only) document.
            out.push_str(
                "# Generated from the Rust API types (src/api) by `kubelambda crds`; do not edit.\n",
            );
        }
        out.push_str(&text);
    }
    Ok(out)
}

/// Schema of `metav1.LabelSelectorRequirement`, hand-written because k8s-openapi's types do
/// not implement `JsonSchema` without its `schemars` feature.
fn label_selector_requirement_schema() -> Schema {
    json_schema!({
        "description": "A selector requirement: a key, an operator (In, NotIn, Exists, DoesNotExist) and values.",
        "type": "object",
        "properties": {
            "key": {"type": "string", "description": "The key the selector applies to."},
            "operator": {
                "type": "string",
                "description": "How the key relates to the values: In, NotIn, Exists or DoesNotExist."
            },
            "values": {
                "type": "array",
                "description": "Values for In and NotIn; empty for Exists and DoesNotExist.",
                "items": {"type": "string"},
                "x-kubernetes-list-type": "atomic"
            }
        },
        "required": ["key", "operator"]
    })
}

/// Schema of a list of `metav1.LabelSelectorRequirement` (also used by annotation selectors).
pub(crate) fn match_expressions_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Requirements that must all hold (ANDed).",
        "type": "array",
        "items": label_selector_requirement_schema(),
        "x-kubernetes-list-type": "atomic"
    })
}

/// Schema of `metav1.LabelSelector`, matching the apiserver's own (atomic map and lists).
pub(crate) fn label_selector_schema(generator: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "A Kubernetes label selector: matchLabels and matchExpressions, ANDed. An empty selector matches everything.",
        "type": "object",
        "properties": {
            "matchExpressions": match_expressions_schema(generator),
            "matchLabels": {
                "type": "object",
                "description": "Labels that must all be present with these values.",
                "additionalProperties": {"type": "string"}
            }
        },
        "x-kubernetes-map-type": "atomic"
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::Value;

    #[test]
    fn api_versions_split_into_group_and_version() {
        assert_eq!(parse_api_version("apps/v1").ok(), Some(("apps", "v1")));
        assert_eq!(parse_api_version("v1").ok(), Some(("", "v1")));
        assert_eq!(
            parse_api_version("metacontroller.k8s.io/v1alpha1").ok(),
            Some((GROUP, VERSION))
        );
        for bad in ["", "/v1", "apps/", "a/b/c", "apps/ v1"] {
            match parse_api_version(bad) {
                Ok(parsed) => panic!("{bad:?} parsed as {parsed:?}"),
                Err(error) => assert_eq!(
                    error.to_string(),
                    format!(
                        "invalid apiVersion {bad:?}: expected \"<version>\" or \"<group>/<version>\""
                    )
                ),
            }
        }
    }

    #[test]
    fn finalizer_names_use_metacontroller_io() {
        assert_eq!(
            composite_finalizer("catset"),
            "metacontroller.io/compositecontroller-catset"
        );
        assert_eq!(
            decorator_finalizer("svc-per-pod"),
            "metacontroller.io/decoratorcontroller-svc-per-pod"
        );
    }

    #[test]
    fn crds_have_metacontroller_names_scopes_and_subresources() {
        let crds = crds();
        let summary: Vec<(String, &str, &str, Vec<String>)> = crds
            .iter()
            .map(|crd| {
                (
                    crd.metadata.name.clone().unwrap_or_default(),
                    crd.spec.names.kind.as_str(),
                    crd.spec.scope.as_str(),
                    crd.spec.names.short_names.clone().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "compositecontrollers.metacontroller.k8s.io".to_string(),
                    "CompositeController",
                    "Cluster",
                    vec!["cc".to_string(), "cctl".to_string()]
                ),
                (
                    "controllerrevisions.metacontroller.k8s.io".to_string(),
                    "ControllerRevision",
                    "Namespaced",
                    vec![]
                ),
                (
                    "decoratorcontrollers.metacontroller.k8s.io".to_string(),
                    "DecoratorController",
                    "Cluster",
                    vec!["dec".to_string(), "decorators".to_string()]
                ),
            ]
        );
        for crd in &crds {
            let name = crd.metadata.name.as_deref().unwrap_or_default();
            assert_eq!(crd.spec.group, GROUP);
            let annotations = crd.metadata.annotations.clone().unwrap_or_default();
            assert_eq!(
                annotations
                    .get(API_APPROVED_ANNOTATION.0)
                    .map(String::as_str),
                Some(API_APPROVED_ANNOTATION.1),
                "{name}"
            );
            assert_eq!(crd.spec.versions.len(), 1, "{name}");
            let version = &crd.spec.versions[0];
            assert_eq!(version.name, VERSION);
            assert!(version.served && version.storage, "{name}");
            let status = version
                .subresources
                .as_ref()
                .and_then(|subresources| subresources.status.as_ref());
            assert!(status.is_some(), "{name} lacks the status subresource");
        }
    }

    /// Walks a schema and collects violations of the apiserver's structural-schema rules that
    /// generated schemas can plausibly break: every node has a type (or keeps unknown fields),
    /// no references, and no types or properties inside the logical junctors.
    fn structural_problems(path: &str, schema: &Value, problems: &mut Vec<String>) {
        let Some(object) = schema.as_object() else {
            problems.push(format!("{path}: not an object"));
            return;
        };
        let preserves_unknown = object.get("x-kubernetes-preserve-unknown-fields")
            == Some(&Value::Bool(true))
            || object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
        if !object.contains_key("type") && !preserves_unknown {
            problems.push(format!("{path}: no type"));
        }
        for forbidden in ["$ref", "definitions", "$defs", "const", "additionalItems"] {
            if object.contains_key(forbidden) {
                problems.push(format!("{path}: uses {forbidden}"));
            }
        }
        for junctor in ["oneOf", "anyOf", "allOf", "not"] {
            let branches: Vec<&Value> = match object.get(junctor) {
                Some(Value::Array(items)) => items.iter().collect(),
                Some(other) => vec![other],
                None => vec![],
            };
            for branch in branches {
                for key in [
                    "type",
                    "properties",
                    "items",
                    "additionalProperties",
                    "default",
                ] {
                    if branch.get(key).is_some() {
                        problems.push(format!("{path}.{junctor}: declares {key}"));
                    }
                }
            }
        }
        if let Some(Value::Object(properties)) = object.get("properties") {
            for (name, property) in properties {
                structural_problems(&format!("{path}.{name}"), property, problems);
            }
        }
        if let Some(items) = object.get("items") {
            structural_problems(&format!("{path}[]"), items, problems);
        }
        if let Some(additional @ Value::Object(_)) = object.get("additionalProperties") {
            structural_problems(&format!("{path}{{}}"), additional, problems);
        }
    }

    #[test]
    fn schemas_are_structural() {
        for crd in crds() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let schema = crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|validation| validation.open_api_v3_schema.as_ref())
                .map(serde_json::to_value)
                .and_then(Result::ok)
                .unwrap_or(Value::Null);
            let mut problems = Vec::new();
            structural_problems(&name, &schema, &mut problems);
            assert!(problems.is_empty(), "{problems:#?}");
        }
    }

    /// Finds a schema node by a dotted path of property names ("[]" steps into array items).
    fn schema_at<'a>(schema: &'a Value, path: &str) -> &'a Value {
        path.split('.').fold(schema, |node, step| {
            if step == "[]" {
                &node["items"]
            } else {
                &node["properties"][step]
            }
        })
    }

    #[test]
    fn schema_enforces_one_backend_and_keeps_metacontroller_details() {
        let crd = serde_json::to_value(CompositeController::crd()).expect("CRD encodes");
        let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let sync = schema_at(root, "spec.hooks.sync");
        assert_eq!(
            sync["x-kubernetes-validations"][0]["message"],
            "exactly one of webhook, jsonnet, tera must be set"
        );
        assert_eq!(
            sync["x-kubernetes-validations"][0]["rule"],
            "(has(self.webhook) ? 1 : 0) + (has(self.jsonnet) ? 1 : 0) + (has(self.tera) ? 1 : 0) == 1"
        );
        assert_eq!(
            schema_at(sync, "jsonnet")["x-kubernetes-validations"][0]["message"],
            "exactly one of source, file, configMapRef must be set"
        );
        assert_eq!(
            schema_at(sync, "tera")["x-kubernetes-validations"][0]["message"],
            "exactly one of template, file, configMapRef must be set"
        );
        assert_eq!(schema_at(sync, "version")["default"], "v1");
        assert_eq!(
            schema_at(sync, "version")["enum"],
            serde_json::json!(["v1", "v2"])
        );
        let webhook = schema_at(sync, "webhook");
        assert_eq!(schema_at(webhook, "timeout")["format"], "duration");
        assert_eq!(
            schema_at(webhook, "responseUnMarshallMode")["enum"],
            serde_json::json!(["loose", "strict"])
        );
        assert_eq!(
            schema_at(webhook, "authorization.type")["default"],
            "Bearer"
        );
        assert_eq!(
            schema_at(webhook, "caBundle.secretRef.key")["default"],
            "ca.crt"
        );
        assert_eq!(
            schema_at(root, "spec.childResources.[].updateStrategy.method")["enum"],
            serde_json::json!([
                "OnDelete",
                "Recreate",
                "InPlace",
                "RollingRecreate",
                "RollingInPlace"
            ])
        );
        assert_eq!(
            schema_at(
                root,
                "spec.parentResource.labelSelector.matchExpressions.[]"
            )["required"],
            serde_json::json!(["key", "operator"])
        );
        assert_eq!(schema_at(root, "status")["type"], "object");
        for hook in ["finalize", "customize", "preUpdateChild", "postUpdateChild"] {
            let other = schema_at(root, &format!("spec.hooks.{hook}"));
            // Same shape and rules; only the description differs.
            for key in ["properties", "x-kubernetes-validations", "type"] {
                assert!(
                    other[key] == sync[key],
                    "spec.hooks.{hook}.{key} differs from sync"
                );
            }
        }

        let revision = serde_json::to_value(ControllerRevision::crd()).expect("CRD encodes");
        let root = &revision["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert_eq!(
            schema_at(root, "parentPatch")["x-kubernetes-preserve-unknown-fields"],
            true
        );
        assert_eq!(root["required"], serde_json::json!(["parentPatch"]));
        assert_eq!(
            schema_at(root, "children.[]")["required"],
            serde_json::json!(["apiGroup", "kind", "names"])
        );
    }

    #[test]
    fn yaml_stream_parses_back_to_the_same_crds() {
        let text = crds_yaml().expect("CRDs render");
        assert!(text.starts_with("---\n# Generated"));
        assert_eq!(text.matches("---\n").count(), 3);
        let parsed: Vec<CustomResourceDefinition> = serde_yaml::Deserializer::from_str(&text)
            .map(|document| CustomResourceDefinition::deserialize(document).expect("valid CRD"))
            .collect();
        assert_eq!(parsed, crds());
    }
}
