//! Metacontroller's hook wire protocol: requests and responses in its exact JSON shapes
//! (composite sync/finalize/customize, decorator sync/finalize), protocol versions v1 and v2, and
//! validation of the children a hook asks for.

use std::collections::{BTreeMap, HashSet};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::selector::{LabelSelector, Selector};

/// The hook wire-protocol version (`hooks.<name>.version`), not a CRD version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProtocolVersion {
    #[default]
    #[serde(rename = "v1")]
    V1,
    #[serde(rename = "v2")]
    V2,
}

impl ProtocolVersion {
    /// Metacontroller decodes v1 responses loosely and v2 responses strictly by default.
    pub fn default_decode_mode(self) -> DecodeMode {
        match self {
            Self::V1 => DecodeMode::Loose,
            Self::V2 => DecodeMode::Strict,
        }
    }
}

/// `responseUnMarshallMode`: whether unknown response fields are an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecodeMode {
    Loose,
    Strict,
}

/// Objects grouped by type (`"Pod.v1"`), then by object key (see [`object_key`]).
pub type ObjectMap = BTreeMap<String, BTreeMap<String, Value>>;

/// The outer key of children, attachments and related maps: `<Kind>.<apiVersion>`, e.g.
/// `Pod.v1` or `StatefulSet.apps/v1`.
pub fn type_key(kind: &str, api_version: &str) -> String {
    format!("{kind}.{api_version}")
}

/// The inner key of an object map.
///
/// v1 ("relative"): the name, unless the parent is cluster-scoped and the object namespaced, then
/// `namespace/name`. v2 ("uniform"): `namespace/name` for every namespaced object.
pub fn object_key(
    version: ProtocolVersion,
    parent_namespaced: bool,
    namespace: Option<&str>,
    name: &str,
) -> String {
    match (version, namespace.filter(|ns| !ns.is_empty())) {
        (_, None) => name.to_owned(),
        (ProtocolVersion::V1, Some(_)) if parent_namespaced => name.to_owned(),
        (_, Some(ns)) => format!("{ns}/{name}"),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompositeRequest {
    pub controller: Value,
    pub parent: Value,
    pub children: ObjectMap,
    pub related: ObjectMap,
    pub finalizing: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompositeResponse {
    /// Replaces the parent's status; `null` means `{}` (Metacontroller semantics).
    #[serde(default, deserialize_with = "object_or_null")]
    pub status: Option<Value>,
    /// `null` or missing means "no children": every observed child is deleted.
    #[serde(default, deserialize_with = "null_as_default")]
    pub children: Vec<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub resync_after_seconds: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub finalized: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecoratorRequest {
    pub controller: Value,
    pub object: Value,
    pub attachments: ObjectMap,
    pub related: ObjectMap,
    pub finalizing: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecoratorResponse {
    /// A `null` value deletes the label.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, Option<String>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, Option<String>>,
    /// `null` leaves the status unchanged (unlike the composite response).
    #[serde(default, deserialize_with = "object_or_null")]
    pub status: Option<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub attachments: Vec<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub resync_after_seconds: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub finalized: bool,
}

/// The customize request is the same for composite and decorator controllers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomizeRequest {
    pub controller: Value,
    pub parent: Value,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomizeResponse {
    #[serde(default, deserialize_with = "null_as_default")]
    pub related_resources: Vec<RelatedResourceRule>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelatedResourceRule {
    pub api_version: String,
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A status: an object or `null`. Metacontroller decodes it into a Go map, so anything else fails
/// the sync instead of being taken for "no status".
fn object_or_null<'de, D>(d: D) -> Result<Option<Value>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v)),
        Some(other) => Err(serde::de::Error::custom(format!(
            "status must be an object or null, got {}",
            json_type(&other)
        ))),
    }
}

/// A response that cannot be used. Nothing is changed in the cluster when a sync ends with one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("the hook response is not a JSON object (got {0})")]
    NotAnObject(&'static str),
    #[error("the hook response has unknown field(s) {0} (strict decoding)")]
    UnknownFields(String),
    #[error("the hook response does not fit the protocol: {0}")]
    Shape(String),
    #[error("{path}: {problem}")]
    Child { path: String, problem: String },
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The fields a response may have where Metacontroller decodes it into typed structs: Go's
/// strict decoding reports unknown fields at any depth there, but not inside free-form values
/// (status, children, label maps).
#[derive(Debug)]
pub enum Fields {
    /// An object with these fields, each with its own shape.
    Object(&'static [(&'static str, Fields)]),
    /// A list whose items have this shape.
    List(&'static Fields),
    /// Anything goes.
    Any,
}

impl Fields {
    /// Adds to `out` the path of every field of `value` that this shape does not know, `at`
    /// being the path of `value` itself (empty for the response).
    fn unknown(&self, value: &Value, at: &str, out: &mut Vec<String>) {
        match (self, value) {
            (Self::Object(known), Value::Object(fields)) => {
                for (name, inner) in fields {
                    let path = if at.is_empty() {
                        name.clone()
                    } else {
                        format!("{at}.{name}")
                    };
                    match known.iter().find(|(k, _)| k == name) {
                        Some((_, shape)) => shape.unknown(inner, &path, out),
                        None => out.push(path),
                    }
                }
            }
            (Self::List(item), Value::Array(items)) => {
                for (index, inner) in items.iter().enumerate() {
                    item.unknown(inner, &format!("{at}[{index}]"), out);
                }
            }
            // Anything else is free-form, or a type error that decoding reports.
            _ => {}
        }
    }
}

/// Decodes a response. In strict mode, fields that `known` does not list are an error.
pub fn decode<T: DeserializeOwned>(
    value: Value,
    mode: DecodeMode,
    known: &Fields,
) -> Result<T, ResponseError> {
    if !value.is_object() {
        return Err(ResponseError::NotAnObject(json_type(&value)));
    }
    if mode == DecodeMode::Strict {
        let mut unknown = Vec::new();
        known.unknown(&value, "", &mut unknown);
        if !unknown.is_empty() {
            return Err(ResponseError::UnknownFields(unknown.join(", ")));
        }
    }
    serde_json::from_value(value).map_err(|e| ResponseError::Shape(e.to_string()))
}

pub const COMPOSITE_RESPONSE_FIELDS: &Fields = &Fields::Object(&[
    ("status", Fields::Any),
    ("children", Fields::Any),
    ("resyncAfterSeconds", Fields::Any),
    ("finalized", Fields::Any),
]);
pub const DECORATOR_RESPONSE_FIELDS: &Fields = &Fields::Object(&[
    ("labels", Fields::Any),
    ("annotations", Fields::Any),
    ("status", Fields::Any),
    ("attachments", Fields::Any),
    ("resyncAfterSeconds", Fields::Any),
    ("finalized", Fields::Any),
]);
/// A `metav1.LabelSelector`.
const LABEL_SELECTOR_FIELDS: Fields = Fields::Object(&[
    ("matchLabels", Fields::Any),
    (
        "matchExpressions",
        Fields::List(&Fields::Object(&[
            ("key", Fields::Any),
            ("operator", Fields::Any),
            ("values", Fields::Any),
        ])),
    ),
]);
pub const CUSTOMIZE_RESPONSE_FIELDS: &Fields = &Fields::Object(&[(
    "relatedResources",
    Fields::List(&Fields::Object(&[
        ("apiVersion", Fields::Any),
        ("resource", Fields::Any),
        ("labelSelector", LABEL_SELECTOR_FIELDS),
        ("namespaceSelector", LABEL_SELECTOR_FIELDS),
        ("namespace", Fields::Any),
        ("names", Fields::Any),
    ])),
)]);

/// A child type a controller declares, resolved through discovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildType {
    pub api_version: String,
    pub kind: String,
    pub namespaced: bool,
}

/// What a desired child is checked against.
pub struct ChildRules<'a> {
    /// `Some(ns)` for a namespaced parent: children live in its namespace.
    pub parent_namespace: Option<&'a str>,
    pub types: &'a [ChildType],
    /// Children must match it (composite controllers); `None` for decorator attachments.
    pub selector: Option<&'a Selector>,
    /// `"children"` or `"attachments"`, for error paths.
    pub field: &'a str,
}

/// A desired child that passed validation, with its namespace defaulted.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredChild {
    /// Index into [`ChildRules::types`].
    pub type_index: usize,
    pub namespace: Option<String>,
    pub name: String,
    pub object: Value,
}

fn str_at<'v>(obj: &'v Value, path: &[&str]) -> Option<&'v str> {
    let mut cur = obj;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// Validates the children of a response and defaults their namespace, so that a bad child fails
/// the whole sync before anything is written.
pub fn validate_children(
    children: Vec<Value>,
    rules: &ChildRules<'_>,
) -> Result<Vec<DesiredChild>, ResponseError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(children.len());
    for (index, mut child) in children.into_iter().enumerate() {
        let mut path = format!("{}[{index}]", rules.field);
        let fail = |path: &str, problem: String| ResponseError::Child {
            path: path.to_owned(),
            problem,
        };
        if !child.is_object() {
            return Err(fail(
                &path,
                format!("must be an object, got {}", json_type(&child)),
            ));
        }
        let kind = str_at(&child, &["kind"]).unwrap_or_default().to_owned();
        let name = str_at(&child, &["metadata", "name"])
            .unwrap_or_default()
            .to_owned();
        let api_version = str_at(&child, &["apiVersion"])
            .unwrap_or_default()
            .to_owned();
        if !kind.is_empty() && !name.is_empty() {
            path = format!("{path} ({kind} {name:?})");
        }
        if api_version.is_empty() {
            return Err(fail(&path, "apiVersion is missing".into()));
        }
        if kind.is_empty() {
            return Err(fail(&path, "kind is missing".into()));
        }
        if name.is_empty() {
            return Err(fail(&path, "metadata.name is missing".into()));
        }
        let Some(type_index) = rules
            .types
            .iter()
            .position(|t| t.api_version == api_version && t.kind == kind)
        else {
            let declared: Vec<String> = rules
                .types
                .iter()
                .map(|t| type_key(&t.kind, &t.api_version))
                .collect();
            return Err(fail(
                &path,
                format!(
                    "type {} is not declared by the controller (declared: {})",
                    type_key(&kind, &api_version),
                    if declared.is_empty() {
                        "none".into()
                    } else {
                        declared.join(", ")
                    }
                ),
            ));
        };
        let given_ns = str_at(&child, &["metadata", "namespace"])
            .filter(|ns| !ns.is_empty())
            .map(str::to_owned);
        let namespace = if rules.types[type_index].namespaced {
            match (rules.parent_namespace, given_ns) {
                (Some(parent), Some(ns)) if ns != parent => {
                    return Err(fail(
                        &path,
                        format!(
                            "metadata.namespace is {ns:?}, but children must be in the parent's namespace {parent:?}"
                        ),
                    ));
                }
                (Some(parent), _) => Some(parent.to_owned()),
                (None, Some(ns)) => Some(ns),
                (None, None) => {
                    return Err(fail(
                        &path,
                        "metadata.namespace is missing: the parent is cluster-scoped, so a namespaced child must name its namespace".into(),
                    ));
                }
            }
        } else {
            if let Some(ns) = given_ns {
                return Err(fail(
                    &path,
                    format!("metadata.namespace is {ns:?}, but {kind} is cluster-scoped"),
                ));
            }
            // The garbage collector rejects an owner reference from a cluster-scoped object to a
            // namespaced one (OwnerRefInvalidNamespace): the child would outlive its parent.
            if let Some(parent) = rules.parent_namespace {
                return Err(fail(
                    &path,
                    format!(
                        "{kind} is cluster-scoped, but children must be in the parent's namespace {parent:?}: a namespaced parent cannot own a cluster-scoped object"
                    ),
                ));
            }
            None
        };
        if let (Some(ns), Some(meta)) = (
            &namespace,
            child.get_mut("metadata").and_then(Value::as_object_mut),
        ) {
            meta.insert("namespace".into(), Value::String(ns.clone()));
        }
        if let Some(selector) = rules.selector {
            let labels: BTreeMap<String, String> = child
                .pointer("/metadata/labels")
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_default();
            if !selector.matches(&labels) {
                return Err(fail(
                    &path,
                    format!(
                        "metadata.labels {labels:?} do not match the parent's selector {selector}"
                    ),
                ));
            }
        }
        if !seen.insert((type_index, namespace.clone(), name.clone())) {
            return Err(fail(
                &path,
                "is a duplicate: the same child appears twice".into(),
            ));
        }
        out.push(DesiredChild {
            type_index,
            namespace,
            name,
            object: child,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
