//! DecoratorController: adds attachments (and labels, annotations, status) to existing objects
//! of any type selected by labels and annotations, without owning them.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::composite::ChildUpdateMethod;
use super::hook::{EndpointConfig, Hook};
use super::{
    ApiError, decorator_finalizer, hooks_field, label_selector_schema, match_expressions_schema,
    parse_api_version_at, resync_period, validate_hooks_and_endpoints, validate_resource_rules,
};

/// Declares a controller that decorates existing objects (its targets) with attachments.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "metacontroller.k8s.io",
    version = "v1alpha1",
    kind = "DecoratorController",
    plural = "decoratorcontrollers",
    shortname = "dec",
    shortname = "decorators",
    status = "DecoratorControllerStatus",
    derive = "PartialEq",
    annotation("api-approved.kubernetes.io", "unapproved, request not yet submitted"),
    doc = "DecoratorController: runs a controller that adds attachments to existing objects selected by labels and annotations, driven by hooks."
)]
#[serde(rename_all = "camelCase")]
pub struct DecoratorControllerSpec {
    /// The target resource types and how to select their objects.
    pub resources: Vec<DecoratorControllerResourceRule>,
    /// The attachment resource types the hooks may create for a target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<DecoratorControllerAttachmentRule>,
    /// The hooks; sync is required in practice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<DecoratorControllerHooks>,
    /// Connection settings (TLS, auth) for webhooks, keyed by webhook host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoint_configs: Vec<EndpointConfig>,
    /// Resync every target this often, in seconds. Values below 1 are raised to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resync_period_seconds: Option<i32>,
}

/// Metacontroller's status for its controller objects: present for the status subresource,
/// always empty.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct DecoratorControllerStatus {}

/// A target resource type of a DecoratorController. An object is a target when it matches
/// both selectors; a missing selector matches everything.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecoratorControllerResourceRule {
    /// The API group and version, e.g. "apps/v1", or just the version ("v1") for the core group.
    pub api_version: String,
    /// Lowercase plural resource name, e.g. "statefulsets".
    pub resource: String,
    /// Label selector on targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "label_selector_schema")]
    pub label_selector: Option<LabelSelector>,
    /// Annotation selector on targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_selector: Option<AnnotationSelector>,
    /// Skip syncs triggered by target updates that change only its status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_status_changes: Option<bool>,
}

/// A selector on annotations, with the semantics of a label selector.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnnotationSelector {
    /// Annotations that must all be present with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_annotations: BTreeMap<String, String>,
    /// Requirements on annotations (In, NotIn, Exists, DoesNotExist), ANDed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "match_expressions_schema")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// An attachment resource type of a DecoratorController.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecoratorControllerAttachmentRule {
    /// The API group and version, e.g. "apps/v1", or just the version ("v1") for the core group.
    pub api_version: String,
    /// Lowercase plural resource name, e.g. "services".
    pub resource: String,
    /// How existing attachments are updated. Default OnDelete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<DecoratorControllerAttachmentUpdateStrategy>,
}

impl DecoratorControllerAttachmentRule {
    /// The update method, defaulting to OnDelete. Decorators keep no revisions, so a Rolling*
    /// method acts as its immediate counterpart (RollingRecreate as Recreate, RollingInPlace
    /// as InPlace), which is what Metacontroller's shared apply code does with it.
    pub fn update_method(&self) -> ChildUpdateMethod {
        match self
            .update_strategy
            .as_ref()
            .and_then(|strategy| strategy.method)
            .unwrap_or_default()
        {
            ChildUpdateMethod::RollingRecreate => ChildUpdateMethod::Recreate,
            ChildUpdateMethod::RollingInPlace => ChildUpdateMethod::InPlace,
            method => method,
        }
    }
}

/// Update strategy of an attachment type. Decorators keep no revisions, so only OnDelete,
/// Recreate and InPlace are meaningful; Rolling* values are accepted for compatibility.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecoratorControllerAttachmentUpdateStrategy {
    /// OnDelete, Recreate or InPlace (RollingRecreate and RollingInPlace act as Recreate and
    /// InPlace). Default OnDelete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<ChildUpdateMethod>,
}

/// The hooks of a DecoratorController.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecoratorControllerHooks {
    /// Computes desired attachments (and labels, annotations, status) for a target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<Hook>,
    /// Called instead of sync while the target is being deleted or stops matching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalize: Option<Hook>,
    /// Names related objects to send to sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customize: Option<Hook>,
}

impl DecoratorControllerHooks {
    /// Every configured hook with its path (e.g. `spec.hooks.sync`).
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Hook)> {
        [
            ("spec.hooks.sync", &self.sync),
            ("spec.hooks.finalize", &self.finalize),
            ("spec.hooks.customize", &self.customize),
        ]
        .into_iter()
        .filter_map(|(path, hook)| hook.as_ref().map(|hook| (path, hook)))
    }
}

impl DecoratorControllerSpec {
    /// The hooks, or the error Metacontroller gives for a controller without them.
    pub fn hooks(&self) -> Result<&DecoratorControllerHooks, ApiError> {
        hooks_field(self.hooks.as_ref())
    }

    /// The hooks, which need a sync or a finalize hook: a decorator with only `finalize`
    /// (cleanup when a target goes away) is valid (Metacontroller #948 panicked on it).
    fn sync_or_finalize(&self) -> Result<(), ApiError> {
        let hooks = self.hooks()?;
        if hooks.sync.is_none() && hooks.finalize.is_none() {
            return Err(ApiError::MissingHook {
                path: "spec.hooks".to_string(),
                message: "a sync or a finalize hook is required".to_string(),
            });
        }
        Ok(())
    }

    /// The periodic resync interval, raised to at least one second.
    pub fn resync_period(&self) -> Option<Duration> {
        resync_period(self.resync_period_seconds)
    }

    /// Checks what can be checked without the cluster: at least one target type, apiVersions
    /// parse, a sync or finalize hook exists, and every hook and endpoint config is well formed.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.resources.is_empty() {
            return Err(ApiError::Invalid {
                path: "spec.resources".to_string(),
                message: "at least one resource rule is required".to_string(),
            });
        }
        for (index, rule) in self.resources.iter().enumerate() {
            parse_api_version_at(
                &format!("spec.resources[{index}].apiVersion"),
                &rule.api_version,
            )?;
        }
        validate_resource_rules(
            "spec.attachments",
            self.attachments
                .iter()
                .map(|a| (a.api_version.as_str(), a.resource.as_str())),
        )?;
        self.sync_or_finalize()?;
        validate_hooks_and_endpoints(self.hooks()?.iter(), &self.endpoint_configs)?;
        Ok(())
    }
}

impl DecoratorController {
    /// The finalizer this controller puts on targets when it has a finalize hook.
    pub fn finalizer_name(&self) -> String {
        decorator_finalizer(&self.name_any())
    }

    /// Whether the controller has a finalize hook (and so manages a finalizer on targets).
    pub fn has_finalize_hook(&self) -> bool {
        self.spec
            .hooks
            .as_ref()
            .is_some_and(|hooks| hooks.finalize.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECORATOR_YAML: &str = r#"
apiVersion: metacontroller.k8s.io/v1alpha1
kind: DecoratorController
metadata:
  name: service-per-pod
spec:
  resources:
  - apiVersion: apps/v1
    resource: statefulsets
    labelSelector:
      matchExpressions:
      - {key: app, operator: Exists}
    annotationSelector:
      matchAnnotations: {service-per-pod-label: statefulset.kubernetes.io/pod-name}
      matchExpressions:
      - {key: service-per-pod-ports, operator: Exists}
    ignoreStatusChanges: false
  attachments:
  - apiVersion: v1
    resource: services
    updateStrategy: {method: InPlace}
  - apiVersion: v1
    resource: configmaps
    updateStrategy: {method: RollingRecreate}
  resyncPeriodSeconds: 10
  hooks:
    sync:
      webhook:
        url: http://service-per-pod.metacontroller/sync-service-per-pod
    finalize:
      tera:
        file: /hooks/finalize.tera
    customize:
      version: v2
      jsonnet:
        file: /hooks/customize.jsonnet
status: {}
"#;

    #[test]
    fn decorator_round_trips() {
        let original: serde_json::Value =
            serde_yaml::from_str(DECORATOR_YAML).expect("test YAML is valid");
        let controller: DecoratorController =
            serde_yaml::from_str(DECORATOR_YAML).expect("decodes as a DecoratorController");
        assert_eq!(
            serde_json::to_value(&controller).expect("encodes"),
            original
        );
        let spec = &controller.spec;
        assert!(spec.validate().is_ok(), "{:?}", spec.validate());
        let selector = spec.resources[0]
            .annotation_selector
            .as_ref()
            .expect("annotation selector");
        assert_eq!(selector.match_expressions[0].operator, "Exists");
        assert_eq!(
            spec.attachments[0].update_method(),
            ChildUpdateMethod::InPlace
        );
        // Decorators keep no revisions: a rolling method acts immediately.
        assert_eq!(
            spec.attachments[1].update_method(),
            ChildUpdateMethod::Recreate
        );
        assert_eq!(spec.resync_period(), Some(Duration::from_secs(10)));
        assert_eq!(
            controller.finalizer_name(),
            "metacontroller.io/decoratorcontroller-service-per-pod"
        );
        assert!(controller.has_finalize_hook());
    }

    #[test]
    fn validate_names_the_field() {
        let text = |spec: &DecoratorControllerSpec| match spec.validate() {
            Ok(()) => panic!("expected an error"),
            Err(error) => error.to_string(),
        };
        let mut spec = DecoratorControllerSpec::default();
        assert_eq!(
            text(&spec),
            "spec.resources: at least one resource rule is required"
        );
        spec.resources.push(DecoratorControllerResourceRule {
            api_version: "/v1".to_string(),
            resource: "pods".to_string(),
            ..Default::default()
        });
        assert_eq!(
            text(&spec),
            "spec.resources[0].apiVersion: invalid apiVersion \"/v1\": expected \"<version>\" or \"<group>/<version>\""
        );
        spec.resources[0].api_version = "v1".to_string();
        assert_eq!(text(&spec), "spec.hooks: no hooks defined");
        spec.hooks = Some(DecoratorControllerHooks::default());
        assert_eq!(
            text(&spec),
            "spec.hooks: a sync or a finalize hook is required"
        );
        // A finalize hook alone is enough (Metacontroller #948).
        spec.hooks = Some(DecoratorControllerHooks {
            finalize: Some(Hook {
                webhook: Some(crate::api::Webhook {
                    url: Some("http://hooks/finalize".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(spec.validate().map_err(|e| e.to_string()), Ok(()));
        let services = DecoratorControllerAttachmentRule {
            api_version: "v1".into(),
            resource: "services".into(),
            ..Default::default()
        };
        spec.attachments = vec![services.clone(), services];
        assert_eq!(
            text(&spec),
            "spec.attachments[1]: v1 services is declared more than once"
        );
        spec.attachments.clear();
        spec.hooks = Some(DecoratorControllerHooks {
            sync: Some(Hook {
                jsonnet: Some(Default::default()),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            text(&spec),
            "spec.hooks.sync.jsonnet: exactly one of source, file, configMapRef must be set, found none"
        );
    }
}
