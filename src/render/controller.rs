//! `kubelambda render --controller`: what a whole controller would do for one parent, offline.
//! The request is built as the controller builds it (the hook's protocol version keys the maps,
//! `finalizing` follows the parent's deletion and selectors), the hook named in the controller is
//! evaluated (inline code, a file, a `configMapRef` read from a file of the same name next to the
//! controller file, or a webhook URL), and the answer is validated and planned by the engine's
//! own code. Nothing is read from or written to a cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::core::ResourceExt;
use serde_json::{Value, json};

use crate::api::{CompositeController, DecoratorController, Hook, HookSource as SpecSource};
use crate::engine::controller::exchange::{self, HookOutcome};
use crate::engine::controller::plan::{self, Inputs, Plan};
use crate::engine::controller::{Kind, build, observe, selected_by};
use crate::hooks::HookSource;
use crate::hooks::protocol::{
    ChildRules, ChildType, DecodeMode, ObjectMap, ProtocolVersion, object_key, type_key,
    validate_children,
};
use crate::hooks::sandbox::Sandbox;
use crate::selector::Selector;

#[derive(Debug, thiserror::Error)]
pub enum ControllerRenderError {
    #[error("{file}: {message}")]
    Input { file: String, message: String },
    #[error("{0}")]
    Controller(String),
    #[error("{hook}: {message}")]
    Hook { hook: String, message: String },
    #[error("the response is refused as the controller would refuse it: {0}")]
    Response(String),
}

/// The files `render --controller` reads.
pub struct RenderInputs<'a> {
    pub controller: &'a Path,
    pub parent: &'a Path,
    pub observed: Option<&'a Path>,
    pub related: Option<&'a Path>,
    /// The parent's namespace when its file names none (as `kubectl apply -n`).
    pub namespace: Option<&'a str>,
    pub jpath: &'a [PathBuf],
}

fn input_error(file: &Path, message: impl ToString) -> ControllerRenderError {
    ControllerRenderError::Input {
        file: file.display().to_string(),
        message: message.to_string(),
    }
}

fn read_docs(file: &Path) -> Result<Vec<Value>, ControllerRenderError> {
    let text = std::fs::read_to_string(file).map_err(|e| input_error(file, e))?;
    let docs = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).map_err(|e| input_error(file, e)))
        .collect::<Result<Vec<Value>, _>>()?;
    // A `kind: List` (kubectl get -o yaml) holds its objects in `items`.
    Ok(docs
        .into_iter()
        .filter(|d| !d.is_null())
        .flat_map(|d| match d.get("items").and_then(Value::as_array) {
            Some(items) if d["kind"] == "List" => items.clone(),
            _ => vec![d],
        })
        .collect())
}

/// A controller, as far as rendering needs it.
struct Shape {
    kind: Kind,
    name: String,
    json: Value,
    finalizer: String,
    /// (label selector, annotation selector) the parent must match.
    selects: (Option<Selector>, Option<Selector>),
    /// (apiVersion, resource) of each child type.
    children: Vec<(String, String)>,
    sync: Option<Hook>,
    finalize: Option<Hook>,
}

fn shape(controller: &Value, parent: &Value, file: &Path) -> Result<Shape, ControllerRenderError> {
    let spec_error = |e: String| ControllerRenderError::Controller(e);
    match controller["kind"].as_str() {
        Some("CompositeController") => {
            let cc: CompositeController =
                serde_json::from_value(controller.clone()).map_err(|e| input_error(file, e))?;
            cc.spec.validate().map_err(|e| spec_error(e.to_string()))?;
            let labels = cc
                .spec
                .parent_resource
                .label_selector
                .as_ref()
                .map(|s| build::selector_at("spec.parentResource.labelSelector", s))
                .transpose()
                .map_err(|e| spec_error(e.to_string()))?;
            let hooks = cc.spec.hooks().map_err(|e| spec_error(e.to_string()))?;
            Ok(Shape {
                kind: Kind::Composite {
                    generate_selector: cc.spec.generate_selector(),
                },
                name: cc.name_any(),
                json: controller.clone(),
                finalizer: cc.finalizer_name(),
                selects: (labels, None),
                children: cc
                    .spec
                    .child_resources
                    .iter()
                    .map(|r| (r.api_version.clone(), r.resource.clone()))
                    .collect(),
                sync: hooks.sync.clone(),
                finalize: hooks.finalize.clone(),
            })
        }
        Some("DecoratorController") => {
            let dc: DecoratorController =
                serde_json::from_value(controller.clone()).map_err(|e| input_error(file, e))?;
            dc.spec.validate().map_err(|e| spec_error(e.to_string()))?;
            // The resource rule for this parent: the first whose apiVersion matches.
            let (index, rule) = dc
                .spec
                .resources
                .iter()
                .enumerate()
                .find(|(_, r)| parent["apiVersion"] == json!(r.api_version))
                .ok_or_else(|| {
                    spec_error(format!(
                        "spec.resources: no rule for the parent's apiVersion {}",
                        parent["apiVersion"]
                    ))
                })?;
            let field = format!("spec.resources[{index}]");
            let labels = rule
                .label_selector
                .as_ref()
                .map(|s| build::selector_at(&format!("{field}.labelSelector"), s))
                .transpose()
                .map_err(|e| spec_error(e.to_string()))?;
            let annotations = rule
                .annotation_selector
                .as_ref()
                .map(|s| build::annotation_selector(&format!("{field}.annotationSelector"), s))
                .transpose()
                .map_err(|e| spec_error(e.to_string()))?;
            let hooks = dc.spec.hooks().map_err(|e| spec_error(e.to_string()))?;
            Ok(Shape {
                kind: Kind::Decorator,
                name: dc.name_any(),
                json: controller.clone(),
                finalizer: dc.finalizer_name(),
                selects: (labels, annotations),
                children: dc
                    .spec
                    .attachments
                    .iter()
                    .map(|r| (r.api_version.clone(), r.resource.clone()))
                    .collect(),
                sync: hooks.sync.clone(),
                finalize: hooks.finalize.clone(),
            })
        }
        other => Err(input_error(
            file,
            format!("expected a CompositeController or DecoratorController, found kind {other:?}"),
        )),
    }
}

/// Built-in resources that are cluster-scoped. Offline there is no discovery: any other type is
/// taken as namespaced.
const CLUSTER_SCOPED: &[&str] = &[
    "namespaces",
    "nodes",
    "persistentvolumes",
    "clusterroles",
    "clusterrolebindings",
    "storageclasses",
    "customresourcedefinitions",
    "priorityclasses",
    "mutatingwebhookconfigurations",
    "validatingwebhookconfigurations",
    "ingressclasses",
    "runtimeclasses",
    "apiservices",
    "csidrivers",
    "csinodes",
];

/// Built-in namespaced resources, for a parent file that names no namespace.
const NAMESPACED_BUILTINS: &[&str] = &[
    "pods",
    "services",
    "configmaps",
    "secrets",
    "serviceaccounts",
    "persistentvolumeclaims",
    "deployments",
    "statefulsets",
    "daemonsets",
    "replicasets",
    "jobs",
    "cronjobs",
    "ingresses",
    "roles",
    "rolebindings",
    "networkpolicies",
    "poddisruptionbudgets",
    "horizontalpodautoscalers",
];

fn plural_of(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind)).plural
}

/// The child types, their kinds found among the observed and desired objects (offline there is
/// no discovery: a kind is the one whose plural is the rule's resource).
fn child_types(shape: &Shape, objects: &[&Value]) -> Vec<Option<ChildType>> {
    shape
        .children
        .iter()
        .map(|(api_version, resource)| {
            let matching: Vec<&&Value> = objects
                .iter()
                .filter(|o| {
                    o["apiVersion"] == json!(api_version)
                        && o["kind"]
                            .as_str()
                            .is_some_and(|k| plural_of(api_version, k) == *resource)
                })
                .collect();
            let kind = match matching.first().and_then(|o| o["kind"].as_str()) {
                Some(kind) => kind.to_owned(),
                None => builtin_kind(api_version, resource)?.to_owned(),
            };
            Some(ChildType {
                api_version: api_version.clone(),
                kind,
                namespaced: !CLUSTER_SCOPED.contains(&resource.as_str()),
            })
        })
        .collect()
}

/// The kind of a built-in resource (from k8s-openapi's types), for child types no object names.
fn builtin_kind(api_version: &str, resource: &str) -> Option<&'static str> {
    use k8s_openapi::api::{apps, autoscaling, batch, core, networking, policy, rbac};
    macro_rules! table {
        ($($t:ty),* $(,)?) => {
            [$((
                <$t as k8s_openapi::Resource>::API_VERSION,
                <$t as k8s_openapi::Resource>::URL_PATH_SEGMENT,
                <$t as k8s_openapi::Resource>::KIND,
            )),*]
        };
    }
    let known = table![
        core::v1::Pod,
        core::v1::Service,
        core::v1::ConfigMap,
        core::v1::Secret,
        core::v1::ServiceAccount,
        core::v1::PersistentVolumeClaim,
        core::v1::PersistentVolume,
        core::v1::Namespace,
        core::v1::Endpoints,
        apps::v1::Deployment,
        apps::v1::StatefulSet,
        apps::v1::DaemonSet,
        apps::v1::ReplicaSet,
        batch::v1::Job,
        batch::v1::CronJob,
        networking::v1::Ingress,
        networking::v1::NetworkPolicy,
        rbac::v1::Role,
        rbac::v1::RoleBinding,
        rbac::v1::ClusterRole,
        rbac::v1::ClusterRoleBinding,
        policy::v1::PodDisruptionBudget,
        autoscaling::v2::HorizontalPodAutoscaler,
    ];
    known
        .into_iter()
        .find(|(v, plural, _)| *v == api_version && *plural == resource)
        .map(|(_, _, kind)| kind)
}

/// The hook's source: inline code as it is; a file at its path, or next to the controller file;
/// a ConfigMap key as the file of that name next to the controller file.
fn hook_source(
    hook: &Hook,
    path: &str,
    controller_dir: &Path,
    jpath: &[PathBuf],
) -> Result<Result<HookSource, String>, ControllerRenderError> {
    let fail = |message: String| ControllerRenderError::Hook {
        hook: path.to_owned(),
        message,
    };
    if let Some(webhook) = &hook.webhook {
        return webhook
            .effective_url(&format!("{path}.webhook"))
            .map(Err)
            .map_err(|e| fail(e.to_string()));
    }
    let (field, jsonnet, source) = match (&hook.jsonnet, &hook.tera) {
        (Some(j), _) => (
            format!("{path}.jsonnet"),
            true,
            j.source(&format!("{path}.jsonnet")),
        ),
        (None, Some(t)) => (
            format!("{path}.tera"),
            false,
            t.source(&format!("{path}.tera")),
        ),
        _ => return Err(fail("no hook backend".into())),
    };
    let source = source.map_err(|e| fail(e.to_string()))?;
    let local = |name: &str| -> Result<PathBuf, ControllerRenderError> {
        let given = PathBuf::from(name);
        if given.is_file() {
            return Ok(given);
        }
        let beside = controller_dir.join(given.file_name().unwrap_or_default());
        if beside.is_file() {
            return Ok(beside);
        }
        Err(fail(format!(
            "{field}: neither {name} nor {} exists",
            beside.display()
        )))
    };
    let source = match source {
        SpecSource::Inline(code) if jsonnet => HookSource::JsonnetInline {
            name: field,
            code: code.to_owned(),
            jpath: jpath.to_vec(),
        },
        SpecSource::Inline(template) => HookSource::TeraInline {
            name: field,
            template: template.to_owned(),
        },
        SpecSource::File(file) => {
            HookSource::from_file(&local(file)?, jpath).map_err(|e| fail(e.to_string()))?
        }
        SpecSource::ConfigMap(r) => {
            HookSource::from_file(&local(&r.key)?, jpath).map_err(|e| fail(e.to_string()))?
        }
    };
    Ok(Ok(source))
}

/// What `render --controller` found.
pub struct Rendered {
    pub text: String,
}

pub async fn render_controller(
    sandbox: &Sandbox,
    inputs: &RenderInputs<'_>,
    diff: bool,
) -> Result<Rendered, ControllerRenderError> {
    let controller = read_docs(inputs.controller)?
        .into_iter()
        .next()
        .ok_or_else(|| input_error(inputs.controller, "no document"))?;
    // The parent file may hold more (an example's namespaces and sources): the parent is the
    // first document of a type the controller takes as parent.
    let parent_versions: Vec<&Value> = match controller["kind"].as_str() {
        Some("DecoratorController") => controller["spec"]["resources"]
            .as_array()
            .map(|rules| rules.iter().map(|r| &r["apiVersion"]).collect())
            .unwrap_or_default(),
        _ => vec![&controller["spec"]["parentResource"]["apiVersion"]],
    };
    let parent_docs = read_docs(inputs.parent)?;
    let parent_json = parent_docs
        .iter()
        .find(|d| parent_versions.contains(&&d["apiVersion"]))
        .or(parent_docs.first())
        .cloned()
        .ok_or_else(|| input_error(inputs.parent, "no document"))?;
    let mut parent_json = parent_json;
    // Offline, a parent without a namespace is taken as cluster-scoped, unless `--namespace`
    // gives one, or it is a built-in namespaced kind, which `kubectl apply` would put in
    // `default`.
    let missing = parent_json.pointer("/metadata/namespace").is_none();
    if let (true, Some(ns), Some(meta)) = (
        missing,
        inputs.namespace,
        parent_json
            .get_mut("metadata")
            .and_then(Value::as_object_mut),
    ) {
        meta.insert("namespace".into(), json!(ns));
    }
    if parent_json.pointer("/metadata/namespace").is_none() {
        let plural = plural_of(
            parent_json["apiVersion"].as_str().unwrap_or_default(),
            parent_json["kind"].as_str().unwrap_or_default(),
        );
        if NAMESPACED_BUILTINS.contains(&plural.as_str())
            && let Some(meta) = parent_json
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
        {
            meta.insert("namespace".into(), json!("default"));
        }
    }
    let parent: DynamicObject =
        serde_json::from_value(parent_json.clone()).map_err(|e| input_error(inputs.parent, e))?;
    let observed_docs = match inputs.observed {
        Some(file) => read_docs(file)?,
        None => Vec::new(),
    };
    let related_docs = match inputs.related {
        Some(file) => read_docs(file)?,
        None => Vec::new(),
    };
    let shape = shape(&controller, &parent_json, inputs.controller)?;
    let parent_namespaced = parent.namespace().is_some();

    let selected = selected_by(shape.selects.0.as_ref(), shape.selects.1.as_ref(), &parent);
    let deleting = parent.metadata.deletion_timestamp.is_some();
    let finalizing = shape.finalize.is_some() && (deleting || !selected);
    let (hook_path, hook) = if finalizing {
        ("spec.hooks.finalize", shape.finalize.as_ref())
    } else {
        ("spec.hooks.sync", shape.sync.as_ref())
    };
    let Some(hook) = hook else {
        return Ok(Rendered {
            text:
                "# the controller has no sync hook: nothing to do until the parent is finalized\n"
                    .into(),
        });
    };
    let version = match hook.version() {
        crate::api::HookVersion::V1 => ProtocolVersion::V1,
        crate::api::HookVersion::V2 => ProtocolVersion::V2,
    };

    // Observed children, grouped by the controller's child types.
    let observed_refs: Vec<&Value> = observed_docs.iter().collect();
    let types_from_observed = child_types(&shape, &observed_refs);
    let map_of = |docs: &[Value], keyed: &mut ObjectMap| {
        for doc in docs {
            let kind = doc["kind"].as_str().unwrap_or_default();
            let api_version = doc["apiVersion"].as_str().unwrap_or_default();
            let key = object_key(
                version,
                parent_namespaced,
                doc.pointer("/metadata/namespace").and_then(Value::as_str),
                doc.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            );
            keyed
                .entry(type_key(kind, api_version))
                .or_default()
                .insert(key, doc.clone());
        }
    };
    let mut observed_map = ObjectMap::new();
    for ty in types_from_observed.iter().flatten() {
        observed_map
            .entry(type_key(&ty.kind, &ty.api_version))
            .or_default();
    }
    map_of(&observed_docs, &mut observed_map);
    let mut related_map = ObjectMap::new();
    map_of(&related_docs, &mut related_map);

    let request = exchange::request(
        &shape.kind,
        &shape.json,
        &parent_json,
        observed_map,
        related_map,
        finalizing,
    );
    let answer = call(
        sandbox,
        hook,
        hook_path,
        inputs.controller,
        inputs.jpath,
        &request,
    )
    .await?;
    let mode = match &hook.webhook {
        Some(webhook) => match webhook.unmarshall_mode(hook.version()) {
            crate::api::ResponseUnmarshallMode::Loose => DecodeMode::Loose,
            crate::api::ResponseUnmarshallMode::Strict => DecodeMode::Strict,
        },
        None => version.default_decode_mode(),
    };
    let mut outcome = exchange::decode_response(&shape.kind, answer, mode)
        .map_err(|e| ControllerRenderError::Response(e.to_string()))?;
    let uid = parent.uid().unwrap_or_default();
    exchange::mark_children(&shape.kind, &shape.name, &uid, &mut outcome.children);

    // Child types: now the desired children can name kinds the observed ones did not.
    let all: Vec<&Value> = observed_docs
        .iter()
        .chain(outcome.children.iter())
        .collect();
    let types: Vec<ChildType> = child_types(&shape, &all)
        .into_iter()
        .zip(&shape.children)
        .map(|(ty, (api_version, resource))| {
            ty.unwrap_or_else(|| ChildType {
                api_version: api_version.clone(),
                kind: format!("<{resource}>"),
                namespaced: !CLUSTER_SCOPED.contains(&resource.as_str()),
            })
        })
        .collect();
    let selector = observe::child_selector(&shape.kind, &parent)
        .map_err(|e| ControllerRenderError::Controller(format!("the parent {e}")))?;
    let desired = validate_children(
        std::mem::take(&mut outcome.children),
        &ChildRules {
            parent_namespace: parent.namespace().as_deref(),
            types: &types,
            selector: selector.as_ref(),
            field: match shape.kind {
                Kind::Composite { .. } => "children",
                Kind::Decorator => "attachments",
            },
        },
    )
    .map_err(|e| ControllerRenderError::Response(e.to_string()))?;

    let observed: Vec<Vec<std::sync::Arc<DynamicObject>>> = types
        .iter()
        .map(|ty| {
            observed_docs
                .iter()
                .filter(|d| d["apiVersion"] == json!(ty.api_version) && d["kind"] == json!(ty.kind))
                .filter_map(|d| {
                    serde_json::from_value(d.clone())
                        .ok()
                        .map(std::sync::Arc::new)
                })
                .collect()
        })
        .collect();
    let nobody = |_: usize, _: Option<&str>, _: &str| None;
    let planned = plan::plan(Inputs {
        kind: &shape.kind,
        parent: &parent,
        observed: &observed,
        desired: desired.clone(),
        outcome: &outcome,
        finalizing,
        finalizer: &shape.finalizer,
        has_finalize_hook: shape.finalize.is_some(),
        owner_of_existing: &nobody,
    });
    Ok(Rendered {
        text: report(&shape, &outcome, &planned, finalizing, diff),
    })
}

async fn call(
    sandbox: &Sandbox,
    hook: &Hook,
    path: &str,
    controller: &Path,
    jpath: &[PathBuf],
    request: &Value,
) -> Result<Value, ControllerRenderError> {
    let dir = controller.parent().unwrap_or(Path::new("."));
    let fail = |message: String| ControllerRenderError::Hook {
        hook: path.to_owned(),
        message,
    };
    match hook_source(hook, path, dir, jpath)? {
        Ok(source) => {
            let body = serde_json::to_vec(request).map_err(|e| fail(e.to_string()))?;
            let text = sandbox
                .evaluate(&source, &body)
                .await
                .map_err(|e| fail(e.to_string()))?;
            serde_json::from_str(&text).map_err(|e| fail(format!("not JSON: {e}")))
        }
        Err(url) => {
            let response = reqwest::Client::new()
                .post(&url)
                .json(request)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .map_err(|e| fail(format!("{url}: {e}")))?;
            let status = response.status();
            let text = response
                .text()
                .await
                .map_err(|e| fail(format!("{url}: {e}")))?;
            if !status.is_success() {
                return Err(fail(format!("{url}: status {status}: {text}")));
            }
            serde_json::from_str(&text).map_err(|e| fail(format!("{url}: not JSON: {e}")))
        }
    }
}

fn object_name(obj: &Value) -> String {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(ns) => format!("{} {ns}/{name}", obj["kind"].as_str().unwrap_or_default()),
        None => format!("{} {name}", obj["kind"].as_str().unwrap_or_default()),
    }
}

/// Every field of `desired` that `observed` lacks or holds differently, as `pointer: old -> new`.
fn changes(prefix: &str, observed: Option<&Value>, desired: &Value, out: &mut Vec<String>) {
    match desired {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let escaped = k.replace('~', "~0").replace('/', "~1");
                changes(
                    &format!("{prefix}/{escaped}"),
                    observed.and_then(|o| o.get(k)),
                    v,
                    out,
                );
            }
        }
        _ if observed == Some(desired) => {}
        _ => out.push(format!(
            "{prefix}: {} -> {desired}",
            observed.map_or_else(|| "(none)".to_owned(), Value::to_string)
        )),
    }
}

/// The rendered answer: what the parent gets, then each desired child as YAML, or (with `diff`)
/// what would change.
fn report(
    shape: &Shape,
    outcome: &HookOutcome,
    planned: &Plan,
    finalizing: bool,
    diff: bool,
) -> String {
    let mut text = String::new();
    let kind = match shape.kind {
        Kind::Composite { .. } => "CompositeController",
        Kind::Decorator => "DecoratorController",
    };
    text.push_str(&format!(
        "# {kind} {}: {} hook\n",
        shape.name,
        if finalizing { "finalize" } else { "sync" }
    ));
    if let Some(status) = &planned.status {
        text.push_str(&format!("# status: {}\n", status.desired));
    } else {
        text.push_str("# status: unchanged\n");
    }
    if let Some(meta) = &planned.metadata {
        text.push_str(&format!("# parent metadata patch: {}\n", meta["metadata"]));
    }
    if outcome.resync_after_seconds > 0.0 {
        text.push_str(&format!(
            "# resyncAfterSeconds: {}\n",
            outcome.resync_after_seconds
        ));
    }
    if finalizing {
        text.push_str(&format!("# finalized: {}\n", outcome.finalized));
    }
    let Some(children) = &planned.children else {
        text.push_str("# children are left alone (the parent is being deleted)\n");
        return text;
    };
    if diff {
        for (_, child) in &children.deletes {
            let value = serde_json::to_value(child.as_ref()).unwrap_or(Value::Null);
            text.push_str(&format!("- delete {}\n", object_name(&value)));
        }
        for write in &children.writes {
            let observed = write
                .observed
                .as_ref()
                .map(|o| serde_json::to_value(o.as_ref()).unwrap_or(Value::Null));
            let name = object_name(&write.desired.object);
            match &observed {
                None => text.push_str(&format!("+ create {name}\n")),
                Some(o) => {
                    let mut found = Vec::new();
                    changes("", Some(o), &write.desired.object, &mut found);
                    if found.is_empty() {
                        text.push_str(&format!("= unchanged {name}\n"));
                    } else {
                        text.push_str(&format!("~ update {name}\n"));
                        for line in found {
                            text.push_str(&format!("    {line}\n"));
                        }
                    }
                }
            }
        }
        for refused in &children.refused {
            text.push_str(&format!("! refused: {refused}\n"));
        }
        return text;
    }
    for write in &children.writes {
        text.push_str("---\n");
        text.push_str(&crate::yaml::to_yaml_go(&write.desired.object));
    }
    text
}
