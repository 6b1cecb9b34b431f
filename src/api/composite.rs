//! CompositeController: a parent resource, the child resources it owns, and the hooks that
//! compute the desired children and the parent's status.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::hook::{EndpointConfig, Hook};
use super::{
    ApiError, composite_finalizer, hooks_field, label_selector_schema, parse_api_version_at,
    resync_period, validate_hooks_and_endpoints, validate_resource_rules,
};

/// Declares a controller whose parents own children: the hooks receive a parent with its
/// children and return the desired children and the parent's status.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "metacontroller.k8s.io",
    version = "v1alpha1",
    kind = "CompositeController",
    plural = "compositecontrollers",
    shortname = "cc",
    shortname = "cctl",
    status = "CompositeControllerStatus",
    derive = "PartialEq",
    annotation("api-approved.kubernetes.io", "unapproved, request not yet submitted"),
    doc = "CompositeController: runs a controller for a parent resource and the child resources it owns, driven by hooks."
)]
#[serde(rename_all = "camelCase")]
pub struct CompositeControllerSpec {
    /// The parent resource (in practice a CRD with the status subresource).
    pub parent_resource: CompositeControllerParentResourceRule,
    /// The child resource types the parent may own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub child_resources: Vec<CompositeControllerChildResourceRule>,
    /// The hooks; sync is required in practice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<CompositeControllerHooks>,
    /// Connection settings (TLS, auth) for webhooks, keyed by webhook host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoint_configs: Vec<EndpointConfig>,
    /// Resync every parent this often, in seconds (from the cache, not a relist). Values below
    /// 1 are raised to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resync_period_seconds: Option<i32>,
    /// Ignore the parent's spec.selector and select children by a controller-uid label that is
    /// added to every child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_selector: Option<bool>,
}

/// Metacontroller's status for its controller objects: present for the status subresource,
/// always empty.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct CompositeControllerStatus {}

/// The parent resource of a CompositeController.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompositeControllerParentResourceRule {
    /// The API group and version, e.g. "apps/v1", or just the version ("v1") for the core group.
    pub api_version: String,
    /// Lowercase plural resource name, e.g. "catsets".
    pub resource: String,
    /// Which parent fields trigger a rolling update (only used with Rolling* child methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history: Option<CompositeControllerRevisionHistory>,
    /// Only parents matching this selector are managed (plus those still carrying this
    /// controller's finalizer, so they can be finalized).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "label_selector_schema")]
    pub label_selector: Option<LabelSelector>,
    /// Skip syncs triggered by parent updates that change only its status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_status_changes: Option<bool>,
}

impl CompositeControllerParentResourceRule {
    /// (group, version) of the parent, with the field path in the error.
    pub fn group_version(&self) -> Result<(&str, &str), ApiError> {
        parse_api_version_at("spec.parentResource.apiVersion", &self.api_version)
    }

    /// The parent fields whose changes are rolled out revision by revision; `["spec"]` when
    /// unset or empty, as in Metacontroller.
    pub fn revision_field_paths(&self) -> Vec<&str> {
        match &self.revision_history {
            Some(history) if !history.field_paths.is_empty() => {
                history.field_paths.iter().map(String::as_str).collect()
            }
            _ => vec!["spec"],
        }
    }
}

/// Which parent fields are versioned for rolling updates.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompositeControllerRevisionHistory {
    /// Dot-separated paths into the parent, e.g. "spec.template". Default ["spec"].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub field_paths: Vec<String>,
}

/// A child resource type of a CompositeController.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompositeControllerChildResourceRule {
    /// The API group and version, e.g. "apps/v1", or just the version ("v1") for the core group.
    pub api_version: String,
    /// Lowercase plural resource name, e.g. "pods".
    pub resource: String,
    /// How existing children are updated when the desired state changes. Default OnDelete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<CompositeControllerChildUpdateStrategy>,
}

impl CompositeControllerChildResourceRule {
    /// The update method, defaulting to OnDelete (existing children are never updated).
    pub fn update_method(&self) -> ChildUpdateMethod {
        self.update_strategy
            .as_ref()
            .and_then(|strategy| strategy.method)
            .unwrap_or_default()
    }
}

/// Update strategy of a child resource type.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompositeControllerChildUpdateStrategy {
    /// OnDelete, Recreate, InPlace, RollingRecreate or RollingInPlace. Default OnDelete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<ChildUpdateMethod>,
    /// Conditions a child must report before a rolling update moves on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_checks: Option<ChildUpdateStatusChecks>,
}

/// How existing children (or attachments) are updated when their desired state changes:
/// OnDelete (default: never, the change applies when the child is recreated), Recreate,
/// InPlace, RollingRecreate or RollingInPlace (one child at a time, gated by status checks).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ChildUpdateMethod {
    /// Never update an existing child; changes apply when it is deleted and recreated.
    #[default]
    OnDelete,
    /// Delete and recreate the child immediately.
    Recreate,
    /// Update the child in place immediately.
    InPlace,
    /// Recreate children one at a time, waiting for each to pass its status checks.
    RollingRecreate,
    /// Update children in place one at a time, waiting for each to pass its status checks.
    RollingInPlace,
}

impl ChildUpdateMethod {
    /// Rolling methods move children revision by revision and need ControllerRevisions.
    pub fn is_rolling(self) -> bool {
        matches!(self, Self::RollingRecreate | Self::RollingInPlace)
    }

    /// How one child is written once a rolling update has moved it to the latest revision:
    /// RollingRecreate as Recreate, RollingInPlace as InPlace (the "rolling" part is which
    /// revision's desired state a child gets, not how it is written).
    pub fn immediate(self) -> Self {
        match self {
            Self::RollingRecreate => Self::Recreate,
            Self::RollingInPlace => Self::InPlace,
            other => other,
        }
    }
}

/// Status checks for rolling updates.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChildUpdateStatusChecks {
    /// Conditions in the child's status.conditions that must all match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<StatusConditionCheck>,
}

/// One condition a child must have.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusConditionCheck {
    /// Condition type, e.g. "Ready".
    #[serde(rename = "type")]
    pub type_: String,
    /// Required condition status, e.g. "True"; any when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Required condition reason; any when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The hooks of a CompositeController.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompositeControllerHooks {
    /// Computes desired children and parent status from the observed parent and children.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<Hook>,
    /// Called instead of sync while the parent is being deleted; the controller keeps a
    /// finalizer on the parent until the hook reports finalized: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalize: Option<Hook>,
    /// Names related objects (beyond the children) to send to sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customize: Option<Hook>,
    /// Accepted for compatibility; Metacontroller never implemented it and neither does
    /// kubelambda.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_update_child: Option<Hook>,
    /// Accepted for compatibility; Metacontroller never implemented it and neither does
    /// kubelambda.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_update_child: Option<Hook>,
}

impl CompositeControllerHooks {
    /// Every configured hook with its path (e.g. `spec.hooks.sync`), for validation and
    /// error messages.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Hook)> {
        [
            ("spec.hooks.sync", &self.sync),
            ("spec.hooks.finalize", &self.finalize),
            ("spec.hooks.customize", &self.customize),
            ("spec.hooks.preUpdateChild", &self.pre_update_child),
            ("spec.hooks.postUpdateChild", &self.post_update_child),
        ]
        .into_iter()
        .filter_map(|(path, hook)| hook.as_ref().map(|hook| (path, hook)))
    }
}

impl CompositeControllerSpec {
    /// The hooks, or the error Metacontroller gives for a controller without them.
    pub fn hooks(&self) -> Result<&CompositeControllerHooks, ApiError> {
        hooks_field(self.hooks.as_ref())
    }

    /// The sync hook, which every CompositeController needs.
    pub fn sync_hook(&self) -> Result<&Hook, ApiError> {
        self.hooks()?
            .sync
            .as_ref()
            .ok_or_else(|| ApiError::MissingHook {
                path: "spec.hooks".to_string(),
                message: "sync hook is required".to_string(),
            })
    }

    /// The periodic resync interval, raised to at least one second as Metacontroller does.
    pub fn resync_period(&self) -> Option<Duration> {
        resync_period(self.resync_period_seconds)
    }

    /// Whether children are selected by the generated controller-uid label.
    pub fn generate_selector(&self) -> bool {
        self.generate_selector.unwrap_or(false)
    }

    /// Checks what can be checked without the cluster: apiVersions parse, child types are not
    /// declared twice, a sync hook exists, and every hook and endpoint config is well formed.
    /// Returns the first problem.
    pub fn validate(&self) -> Result<(), ApiError> {
        self.parent_resource.group_version()?;
        validate_resource_rules(
            "spec.childResources",
            self.child_resources
                .iter()
                .map(|c| (c.api_version.as_str(), c.resource.as_str())),
        )?;
        self.sync_hook()?;
        validate_hooks_and_endpoints(self.hooks()?.iter(), &self.endpoint_configs)?;
        Ok(())
    }
}

impl CompositeController {
    /// The finalizer this controller puts on parents when it has a finalize hook.
    pub fn finalizer_name(&self) -> String {
        composite_finalizer(&self.name_any())
    }

    /// Whether the controller has a finalize hook (and so manages a finalizer on parents).
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
    use crate::api::{HookBackend, HookSource, HookVersion};

    /// A CompositeController using every Metacontroller field (reference §1.2 and §1.4).
    const METACONTROLLER_YAML: &str = r#"
apiVersion: metacontroller.k8s.io/v1alpha1
kind: CompositeController
metadata:
  name: catset-controller
  labels: {app: catset}
spec:
  parentResource:
    apiVersion: ctl.enisoc.com/v1
    resource: catsets
    revisionHistory:
      fieldPaths: [spec.template]
    labelSelector:
      matchLabels: {tier: web}
      matchExpressions:
      - {key: env, operator: In, values: [prod, staging]}
    ignoreStatusChanges: true
  childResources:
  - apiVersion: v1
    resource: pods
    updateStrategy:
      method: RollingRecreate
      statusChecks:
        conditions:
        - type: Ready
          status: "True"
          reason: Foo
  - apiVersion: v1
    resource: persistentvolumeclaims
  resyncPeriodSeconds: 30
  generateSelector: true
  hooks:
    sync:
      version: v1
      webhook:
        url: http://catset-controller.metacontroller/sync
        timeout: 10s
        responseUnMarshallMode: loose
        etag: {enabled: true, cacheTimeoutSeconds: 60, cacheCleanupSeconds: 300}
        caBundle:
          secretRef: {name: hook-ca, namespace: metacontroller, key: ca.crt}
        clientTLS:
          secretRef: {name: hook-client, namespace: metacontroller}
          certKey: tls.crt
          privateKeyKey: tls.key
        authorization:
          type: Bearer
          secretRef: {name: hook-token, namespace: metacontroller, key: token}
    finalize:
      version: v2
      webhook:
        path: /finalize
        service: {name: catset-controller, namespace: metacontroller, port: 8080, protocol: http}
        responseUnMarshallMode: strict
        basicAuth:
          secretRef: {name: hook-basic, namespace: metacontroller}
          usernameKey: username
          passwordKey: password
    customize:
      webhook:
        url: http://catset-controller.metacontroller/customize
        caBundle:
          inline: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    preUpdateChild:
      webhook: {url: http://x/pre}
    postUpdateChild:
      webhook: {url: http://x/post}
  endpointConfigs:
  - host: catset-controller.metacontroller
    caBundle:
      configMapRef: {name: hook-ca, namespace: metacontroller}
    clientTLS:
      secretRef: {name: hook-client, namespace: metacontroller}
    authorization:
      secretRef: {name: hook-token, namespace: metacontroller, key: token}
status: {}
"#;

    const IN_PROCESS_YAML: &str = r#"
apiVersion: metacontroller.k8s.io/v1alpha1
kind: CompositeController
metadata:
  name: useless-controller
spec:
  parentResource: {apiVersion: example.com/v1, resource: uselesses}
  childResources:
  - {apiVersion: v1, resource: configmaps, updateStrategy: {method: InPlace}}
  hooks:
    sync:
      jsonnet:
        source: |
          function(request) { children: [], status: { seen: true } }
        jpath: [/hooks/lib, /usr/share/kubelambda]
    finalize:
      version: v2
      tera:
        template: |
          finalized: true
    customize:
      jsonnet:
        configMapRef: {namespace: hooks, name: useless-hooks, key: customize.jsonnet}
"#;

    /// Parses `yaml` into a CompositeController and back, and checks nothing was lost or added.
    fn round_trip(yaml: &str) -> CompositeController {
        let original: serde_json::Value = serde_yaml::from_str(yaml).expect("test YAML is valid");
        let controller: CompositeController =
            serde_yaml::from_str(yaml).expect("decodes as a CompositeController");
        let back = serde_json::to_value(&controller).expect("encodes");
        assert_eq!(back, original, "round trip changed the object");
        controller
    }

    #[test]
    fn metacontroller_object_round_trips() {
        let controller = round_trip(METACONTROLLER_YAML);
        let spec = &controller.spec;
        assert_eq!(
            spec.parent_resource.group_version().ok(),
            Some(("ctl.enisoc.com", "v1"))
        );
        assert_eq!(
            spec.parent_resource.revision_field_paths(),
            vec!["spec.template"]
        );
        assert_eq!(
            spec.child_resources[0].update_method(),
            ChildUpdateMethod::RollingRecreate
        );
        assert!(spec.child_resources[0].update_method().is_rolling());
        assert_eq!(
            spec.child_resources[1].update_method(),
            ChildUpdateMethod::OnDelete
        );
        assert_eq!(spec.resync_period(), Some(Duration::from_secs(30)));
        assert!(spec.generate_selector());
        assert_eq!(controller.status, Some(CompositeControllerStatus {}));
        assert!(spec.validate().is_ok(), "{:?}", spec.validate());

        let hooks = spec.hooks().expect("hooks are set");
        let paths: Vec<&str> = hooks.iter().map(|(path, _)| path).collect();
        assert_eq!(
            paths,
            [
                "spec.hooks.sync",
                "spec.hooks.finalize",
                "spec.hooks.customize",
                "spec.hooks.preUpdateChild",
                "spec.hooks.postUpdateChild"
            ]
        );
        let finalize = hooks.finalize.as_ref().expect("finalize hook");
        assert_eq!(finalize.version(), HookVersion::V2);
        match finalize.backend("spec.hooks.finalize") {
            Ok(HookBackend::Webhook(webhook)) => assert_eq!(
                webhook
                    .effective_url("spec.hooks.finalize.webhook")
                    .ok()
                    .as_deref(),
                Some("http://catset-controller.metacontroller:8080/finalize")
            ),
            other => panic!("expected a webhook, got {other:?}"),
        }
        assert_eq!(
            controller.finalizer_name(),
            "metacontroller.io/compositecontroller-catset-controller"
        );
        assert!(controller.has_finalize_hook());
    }

    #[test]
    fn jsonnet_and_tera_hooks_round_trip() {
        let controller = round_trip(IN_PROCESS_YAML);
        let hooks = controller.spec.hooks().expect("hooks are set");
        let sync = hooks.sync.as_ref().expect("sync hook");
        match sync.backend("spec.hooks.sync") {
            Ok(HookBackend::Jsonnet(jsonnet)) => {
                assert_eq!(jsonnet.jpath, ["/hooks/lib", "/usr/share/kubelambda"]);
                assert!(matches!(
                    jsonnet.source("spec.hooks.sync.jsonnet"),
                    Ok(HookSource::Inline(code)) if code.starts_with("function(request)")
                ));
            }
            other => panic!("expected jsonnet, got {other:?}"),
        }
        let finalize = hooks.finalize.as_ref().expect("finalize hook");
        assert!(matches!(
            finalize.backend("spec.hooks.finalize"),
            Ok(HookBackend::Tera(tera)) if tera.template.as_deref() == Some("finalized: true\n")
        ));
        assert!(controller.spec.validate().is_ok());
        assert_eq!(controller.status, None);
    }

    fn spec_with_sync(sync: Option<Hook>) -> CompositeControllerSpec {
        CompositeControllerSpec {
            parent_resource: CompositeControllerParentResourceRule {
                api_version: "example.com/v1".to_string(),
                resource: "things".to_string(),
                ..Default::default()
            },
            hooks: Some(CompositeControllerHooks {
                sync,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn error_text(result: Result<(), ApiError>) -> String {
        match result {
            Ok(()) => panic!("expected an error"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn validate_names_the_field() {
        let mut spec = spec_with_sync(Some(Hook::default()));
        assert_eq!(
            error_text(spec.validate()),
            "spec.hooks.sync: exactly one of webhook, jsonnet, tera must be set, found none"
        );

        spec.hooks = None;
        assert_eq!(error_text(spec.validate()), "spec.hooks: no hooks defined");
        let mut spec = spec_with_sync(None);
        assert_eq!(
            error_text(spec.validate()),
            "spec.hooks: sync hook is required"
        );

        let sync: Hook =
            serde_json::from_str(r#"{"tera":{"file":"/hooks/sync.tera"}}"#).expect("valid hook");
        spec = spec_with_sync(Some(sync));
        spec.parent_resource.api_version = "a/b/c".to_string();
        assert_eq!(
            error_text(spec.validate()),
            "spec.parentResource.apiVersion: invalid apiVersion \"a/b/c\": expected \"<version>\" or \"<group>/<version>\""
        );
        spec.parent_resource.api_version = "example.com/v1".to_string();
        let pods = CompositeControllerChildResourceRule {
            api_version: "v1".to_string(),
            resource: "pods".to_string(),
            update_strategy: None,
        };
        spec.child_resources = vec![pods.clone(), pods];
        assert_eq!(
            error_text(spec.validate()),
            "spec.childResources[1]: v1 pods is declared more than once"
        );
        spec.child_resources.pop();
        assert!(spec.validate().is_ok());
        spec.hooks = Some(CompositeControllerHooks {
            sync: spec.hooks.and_then(|hooks| hooks.sync),
            finalize: Some(Hook::default()),
            ..Default::default()
        });
        assert_eq!(
            error_text(spec.validate()),
            "spec.hooks.finalize: exactly one of webhook, jsonnet, tera must be set, found none"
        );
    }

    #[test]
    fn defaults_match_metacontroller() {
        let mut spec = spec_with_sync(None);
        assert_eq!(spec.parent_resource.revision_field_paths(), vec!["spec"]);
        assert_eq!(spec.resync_period(), None);
        spec.resync_period_seconds = Some(0);
        assert_eq!(spec.resync_period(), Some(Duration::from_secs(1)));
        spec.resync_period_seconds = Some(-5);
        assert_eq!(spec.resync_period(), Some(Duration::from_secs(1)));
        assert!(!spec.generate_selector());
        let controller = CompositeController::new("c", spec);
        assert!(!controller.has_finalize_hook());
    }
}
