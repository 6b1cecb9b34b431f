//! Building a running controller from a CompositeController or a DecoratorController: resolve its
//! types through discovery, build its hooks, and start it. Every error names the field it is
//! about.

use std::sync::Arc;

use kube::{Resource, ResourceExt};
use serde_json::Value;

use super::revisions::RollingConfig;
use super::{ChildKind, Controller, Hooks, Kind, ParentType, Running};
use crate::api::{
    AnnotationSelector, ChildUpdateMethod, CompositeController, DecoratorController,
    EndpointConfig, Hook,
};
use crate::engine::Shared;
use crate::engine::children::ChildWriter;
use crate::engine::discovery::{DiscoveryError, Resolved};
use crate::engine::hooks::{BuiltHook, HookBuildError, HookOwner};
use crate::engine::informer::ObjectKey;
use crate::engine::queue::{Backoff, WorkQueue};
use crate::engine::related::Related;
use crate::hooks::protocol::ChildType;
use crate::selector::{LabelSelector, Selector};
use crate::telemetry::engine_metrics::ControllerLabels;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Spec(String),
    /// `field` is the controller's field that names the resource, e.g.
    /// `spec.childResources[1]`.
    #[error("{field}: {source}")]
    Discovery {
        field: String,
        #[source]
        source: Box<DiscoveryError>,
    },
    #[error(transparent)]
    Hook(Box<HookBuildError>),
    /// Metacontroller refuses such parents; the controller is not started and not retried.
    #[error("CRD {crd} does not have subresource 'Status' enabled")]
    NoStatusSubresource { crd: String },
    /// A field this engine does not run yet: refused rather than ignored.
    #[error(transparent)]
    Unsupported(#[from] crate::engine::support::Unsupported),
}

impl StartError {
    fn discovery(field: String) -> impl FnOnce(DiscoveryError) -> Self {
        move |source| Self::Discovery {
            field,
            source: Box::new(source),
        }
    }

    /// Whether trying again later can help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::NoStatusSubresource { .. } | Self::Spec(_) | Self::Unsupported(_)
        )
    }
}

impl From<HookBuildError> for StartError {
    fn from(e: HookBuildError) -> Self {
        Self::Hook(Box::new(e))
    }
}

fn spec_error(e: impl ToString) -> StartError {
    StartError::Spec(e.to_string())
}

/// A selector from a spec's label selector, its errors naming `field`.
pub(crate) fn selector_at(field: &str, sel: &LabelSelector) -> Result<Selector, StartError> {
    Selector::from_label_selector(sel).map_err(|e| StartError::Spec(format!("{field}: {e}")))
}

/// An annotation selector is a label selector over annotations.
pub(crate) fn annotation_selector(
    field: &str,
    sel: &AnnotationSelector,
) -> Result<Selector, StartError> {
    let as_labels = LabelSelector {
        match_labels: Some(sel.match_annotations.clone()),
        match_expressions: Some(sel.match_expressions.clone()),
    };
    selector_at(field, &as_labels)
}

/// (field, apiVersion, resource, method) of a child type.
type ChildRule<'a> = (String, &'a str, &'a str, ChildUpdateMethod);

/// The parts both kinds are built from.
struct Parts<'a> {
    name: String,
    rolling: Option<RollingConfig>,
    kind: Kind,
    reference: k8s_openapi::api::core::v1::ObjectReference,
    controller_json: Value,
    children: Vec<ChildRule<'a>>,
    sync: Option<&'a Hook>,
    finalize: Option<&'a Hook>,
    customize: Option<&'a Hook>,
    endpoint_configs: &'a [EndpointConfig],
    finalizer: String,
    resync_period: Option<std::time::Duration>,
}

/// A child rule per (apiVersion, resource, method), named `<list>[<index>]`.
fn child_rules<'a>(
    list: &str,
    rules: impl Iterator<Item = (&'a str, &'a str, ChildUpdateMethod)>,
) -> Vec<ChildRule<'a>> {
    rules
        .enumerate()
        .map(|(i, (api_version, resource, method))| {
            (format!("{list}[{i}]"), api_version, resource, method)
        })
        .collect()
}

async fn resolve(
    shared: &Shared,
    field: String,
    api_version: &str,
    resource: &str,
) -> Result<Resolved, StartError> {
    shared
        .discovery
        .resolve(api_version, resource)
        .await
        .map_err(StartError::discovery(field))
}

pub async fn start_composite(
    cc: &CompositeController,
    shared: &Shared,
) -> Result<Running, StartError> {
    cc.spec.validate().map_err(spec_error)?;
    if let Some(unsupported) = crate::engine::support::unsupported_in_composite(&cc.spec) {
        return Err(unsupported.into());
    }
    let pr = &cc.spec.parent_resource;
    let ty = resolve(
        shared,
        "spec.parentResource".into(),
        &pr.api_version,
        &pr.resource,
    )
    .await?;
    if !ty.has_status {
        let group = if ty.ar.group.is_empty() {
            "core"
        } else {
            &ty.ar.group
        };
        return Err(StartError::NoStatusSubresource {
            crd: format!("{}.{group}", ty.ar.plural),
        });
    }
    let labels = pr
        .label_selector
        .as_ref()
        .map(|s| selector_at("spec.parentResource.labelSelector", s))
        .transpose()?;
    let namespaced = ty.namespaced;
    let parents = vec![ParentType {
        informer: shared.informers.informer(&ty.ar),
        ty,
        labels,
        annotations: None,
        ignore_status_changes: pr.ignore_status_changes.unwrap_or(false),
    }];
    let rolling = rolling_config(cc, namespaced, shared).await?;
    let hooks = cc.spec.hooks().map_err(spec_error)?;
    let parts = Parts {
        name: cc.name_any(),
        rolling,
        kind: Kind::Composite {
            generate_selector: cc.spec.generate_selector(),
        },
        reference: cc.object_ref(&()),
        controller_json: serde_json::to_value(cc).unwrap_or(Value::Null),
        children: child_rules(
            "spec.childResources",
            cc.spec.child_resources.iter().map(|r| {
                (
                    r.api_version.as_str(),
                    r.resource.as_str(),
                    r.update_method(),
                )
            }),
        ),
        sync: Some(cc.spec.sync_hook().map_err(spec_error)?),
        finalize: hooks.finalize.as_ref(),
        customize: hooks.customize.as_ref(),
        endpoint_configs: &cc.spec.endpoint_configs,
        finalizer: cc.finalizer_name(),
        resync_period: cc.spec.resync_period(),
    };
    build(parts, parents, shared).await
}

pub async fn start_decorator(
    dc: &DecoratorController,
    shared: &Shared,
) -> Result<Running, StartError> {
    dc.spec.validate().map_err(spec_error)?;
    let mut parents = Vec::new();
    for (i, rule) in dc.spec.resources.iter().enumerate() {
        let field = format!("spec.resources[{i}]");
        let ty = resolve(shared, field.clone(), &rule.api_version, &rule.resource).await?;
        let labels = rule
            .label_selector
            .as_ref()
            .map(|s| selector_at(&format!("{field}.labelSelector"), s))
            .transpose()?;
        let annotations = rule
            .annotation_selector
            .as_ref()
            .map(|s| annotation_selector(&format!("{field}.annotationSelector"), s))
            .transpose()?;
        parents.push(ParentType {
            informer: shared.informers.informer(&ty.ar),
            ty,
            labels,
            annotations,
            ignore_status_changes: rule.ignore_status_changes.unwrap_or(false),
        });
    }
    let hooks = dc.spec.hooks().map_err(spec_error)?;
    let parts = Parts {
        name: dc.name_any(),
        rolling: None,
        kind: Kind::Decorator,
        reference: dc.object_ref(&()),
        controller_json: serde_json::to_value(dc).unwrap_or(Value::Null),
        children: child_rules(
            "spec.attachments",
            dc.spec.attachments.iter().map(|r| {
                (
                    r.api_version.as_str(),
                    r.resource.as_str(),
                    r.update_method(),
                )
            }),
        ),
        sync: hooks.sync.as_ref(),
        finalize: hooks.finalize.as_ref(),
        customize: hooks.customize.as_ref(),
        endpoint_configs: &dc.spec.endpoint_configs,
        finalizer: dc.finalizer_name(),
        resync_period: dc.spec.resync_period(),
    };
    build(parts, parents, shared).await
}

/// The first child type that rolls (its method's field and the method), if any; refused for a
/// cluster-scoped parent.
fn rolling_rule(
    cc: &CompositeController,
    parent_namespaced: bool,
) -> Result<Option<(String, ChildUpdateMethod)>, StartError> {
    let Some(first) = cc
        .spec
        .child_resources
        .iter()
        .position(|c| c.update_method().is_rolling())
    else {
        return Ok(None);
    };
    let field = format!("spec.childResources[{first}].updateStrategy.method");
    let method = cc.spec.child_resources[first].update_method();
    if !parent_namespaced {
        return Err(StartError::Spec(format!(
            "{field}: {method:?} keeps ControllerRevisions in the parent's namespace, but {} parents are cluster-scoped",
            cc.spec.parent_resource.resource
        )));
    }
    Ok(Some((field, method)))
}

/// The rolling-update settings of a composite whose child types include a Rolling* one. Its
/// revisions live in the parent's namespace, so the parent must have one (Metacontroller would
/// try to create them in namespace "" and fail on every sync), and the ControllerRevision CRD
/// must be served.
async fn rolling_config(
    cc: &CompositeController,
    parent_namespaced: bool,
    shared: &Shared,
) -> Result<Option<RollingConfig>, StartError> {
    let Some((field, method)) = rolling_rule(cc, parent_namespaced)? else {
        return Ok(None);
    };
    resolve(
        shared,
        format!("{field} ({method:?} needs ControllerRevisions)"),
        crate::api::API_VERSION,
        "controllerrevisions",
    )
    .await?;
    let checks = cc
        .spec
        .child_resources
        .iter()
        .map(|c| {
            c.update_strategy
                .as_ref()
                .and_then(|s| s.status_checks.as_ref())
                .map(|s| s.conditions.clone())
                .unwrap_or_default()
        })
        .collect();
    Ok(Some(RollingConfig::new(
        &cc.spec.parent_resource.revision_field_paths(),
        checks,
    )))
}

async fn build(
    parts: Parts<'_>,
    parents: Vec<ParentType>,
    shared: &Shared,
) -> Result<Running, StartError> {
    let mut children = Vec::new();
    for (field, api_version, resource, method) in &parts.children {
        let ty = resolve(shared, field.clone(), api_version, resource).await?;
        children.push(ChildKind {
            informer: shared.informers.informer(&ty.ar),
            api_version: (*api_version).to_owned(),
            method: *method,
            ty,
        });
    }
    let instruments = shared.metrics.engine.controller(&ControllerLabels {
        controller_name: parts.name.clone(),
        controller_type: parts.reference.kind.clone().unwrap_or_default(),
    });
    let queue = WorkQueue::with_metrics(Backoff::default(), Some(instruments.queue()));
    // A followed hook source (configMapRef, file) or a related object that changes resyncs
    // every parent.
    let resync: Arc<dyn Fn() + Send + Sync> = {
        let informers: Vec<_> = parents.iter().map(|p| p.informer.clone()).collect();
        let queue = queue.clone();
        Arc::new(move || {
            for (type_index, informer) in informers.iter().enumerate() {
                for p in informer.list(None) {
                    queue.add(super::ParentKey {
                        type_index,
                        object: ObjectKey::of(&p),
                    });
                }
            }
        })
    };
    let owner = HookOwner::new(parts.reference.clone(), {
        let resync = resync.clone();
        move || resync()
    });
    let eps = parts.endpoint_configs;
    let mut built: [Option<BuiltHook>; 3] = [None, None, None];
    for (slot, (path, hook)) in built.iter_mut().zip([
        ("spec.hooks.sync", parts.sync),
        ("spec.hooks.finalize", parts.finalize),
        ("spec.hooks.customize", parts.customize),
    ]) {
        if let Some(hook) = hook {
            *slot = Some(shared.hooks.build(hook, path, &owner, eps).await?);
        }
    }
    let [sync, finalize, customize] = built;
    let child_types = children
        .iter()
        .map(|c| ChildType {
            api_version: c.api_version.clone(),
            kind: c.ty.ar.kind.clone(),
            namespaced: c.ty.namespaced,
        })
        .collect();
    let related = customize
        .map(|hook| Related::new(hook, parts.controller_json.clone(), shared.clone(), resync));
    let controller = Arc::new(Controller {
        name: parts.name,
        kind: parts.kind,
        controller_json: parts.controller_json,
        parents,
        children,
        child_types,
        hooks: Hooks { sync, finalize },
        related,
        rolling: parts.rolling,
        finalizer: parts.finalizer,
        resync_period: parts.resync_period,
        queue,
        writer: ChildWriter::new(shared.client.clone(), shared.apply.clone()),
        shared: shared.clone(),
        state: Default::default(),
        instruments,
    });
    Ok(controller.run())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cc(methods: &[&str]) -> CompositeController {
        let children: Vec<_> = methods
            .iter()
            .enumerate()
            .map(|(i, m)| json!({"apiVersion": "v1", "resource": format!("r{i}"), "updateStrategy": {"method": m}}))
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "metacontroller.k8s.io/v1alpha1",
            "kind": "CompositeController",
            "metadata": {"name": "c"},
            "spec": {
                "parentResource": {"apiVersion": "g/v1", "resource": "things"},
                "childResources": children,
                "hooks": {"sync": {"webhook": {"url": "http://x"}}},
            },
        }))
        .expect("controller")
    }

    #[test]
    fn rolling_needs_a_namespaced_parent() {
        assert!(matches!(rolling_rule(&cc(&["InPlace"]), false), Ok(None)));
        let (field, method) = rolling_rule(&cc(&["OnDelete", "RollingInPlace"]), true)
            .expect("fine")
            .expect("rolls");
        assert_eq!(field, "spec.childResources[1].updateStrategy.method");
        assert_eq!(method, ChildUpdateMethod::RollingInPlace);
        let refused = rolling_rule(&cc(&["RollingRecreate"]), false).expect_err("refused");
        assert_eq!(
            refused.to_string(),
            "spec.childResources[0].updateStrategy.method: RollingRecreate keeps ControllerRevisions in the parent's namespace, but things parents are cluster-scoped"
        );
        assert!(refused.is_permanent());
    }
}
