//! Metacontroller's own ControllerRevision (not `apps/v1`): one snapshot of the parent fields
//! that a rolling update versions, and which children are on that snapshot.

use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The fields of a ControllerRevision. They sit at the top level of the object, next to
/// metadata, as in Metacontroller (there is no `spec`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "metacontroller.k8s.io",
    version = "v1alpha1",
    kind = "ControllerRevision",
    root = "ControllerRevision",
    plural = "controllerrevisions",
    namespaced,
    no_spec,
    derive = "PartialEq",
    annotation("api-approved.kubernetes.io", "unapproved, request not yet submitted"),
    doc = "ControllerRevision: a snapshot of a parent's versioned fields and the children on that snapshot, used by rolling updates."
)]
#[serde(rename_all = "camelCase")]
pub struct ControllerRevisionFields {
    /// The versioned parent fields (revisionHistory.fieldPaths) as a partial parent object.
    #[schemars(schema_with = "parent_patch_schema")]
    pub parent_patch: Map<String, Value>,
    /// Children on this revision, grouped by API group and kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ControllerRevisionChildren>,
}

/// The children of one kind that are on a revision.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControllerRevisionChildren {
    /// API group of the children ("" for the core group).
    pub api_group: String,
    /// Kind of the children.
    pub kind: String,
    /// Names of the children.
    pub names: Vec<String>,
}

/// `parentPatch` holds arbitrary parent fields, so it keeps unknown fields (a RawExtension in
/// Metacontroller).
fn parent_patch_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "The versioned parent fields (revisionHistory.fieldPaths) as a partial parent object.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_round_trips_with_fields_at_top_level() {
        let yaml = r#"
apiVersion: metacontroller.k8s.io/v1alpha1
kind: ControllerRevision
metadata:
  name: catsets.ctl.enisoc.com-5463ba99b804a121d35d14a5ab74546d1e8ba953
  namespace: default
  labels: {controller-uid: 0b5e4b4c-0a4f-4d0e-9c39-5c1d2f7a6e10, metacontroller.k8s.io/apiGroup: ctl.enisoc.com}
parentPatch:
  spec:
    template: {metadata: {labels: {app: nginx}}, spec: {containers: [{name: nginx, image: nginx}]}}
children:
- apiGroup: ""
  kind: Pod
  names: [nginx-backend-0, nginx-backend-1]
"#;
        let original: serde_json::Value = serde_yaml::from_str(yaml).expect("test YAML is valid");
        let revision: ControllerRevision =
            serde_yaml::from_str(yaml).expect("decodes as a ControllerRevision");
        assert_eq!(revision.spec.children[0].names.len(), 2);
        assert!(revision.spec.parent_patch.contains_key("spec"));
        assert_eq!(serde_json::to_value(&revision).expect("encodes"), original);
    }
}
