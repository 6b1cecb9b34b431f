//! The files of `examples/<name>/`, read as the tests of those examples apply them: YAML
//! documents as JSON, and the example's CompositeController scoped to one test's parents.

use kube::api::ApiResource;
use serde_json::{Value, json};

use super::harness::{Harness, root};

/// The YAML documents of `examples/<example>/<file>`, as JSON.
pub fn example_docs(example: &str, file: &str) -> Vec<Value> {
    let path = root().join("examples").join(example).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

/// The first document of `examples/<example>/<file>` whose `kind` is `kind`.
pub fn example_doc(example: &str, file: &str, kind: &str) -> Value {
    example_docs(example, file)
        .into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("examples/{example}/{file} has no {kind}"))
}

/// The example's CompositeController (from `controller.yaml`) as it is, but named for this test
/// and watching only the parents labelled `kubelambda-test: <h.label>`.
pub fn example_controller(h: &Harness, example: &str) -> Value {
    let mut cc = example_doc(example, "controller.yaml", "CompositeController");
    cc["metadata"]["name"] = json!(format!("{example}-{}", h.label));
    cc["metadata"]["labels"] = json!({"kubelambda-test": h.label});
    cc["spec"]["parentResource"]["labelSelector"] =
        json!({"matchLabels": {"kubelambda-test": h.label}});
    cc
}

/// The `ApiResource` of the first version of a CRD given as JSON.
pub fn example_resource(crd: &Value) -> ApiResource {
    let spec = &crd["spec"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let group = text(&spec["group"]);
    let version = text(&spec["versions"][0]["name"]);
    ApiResource {
        api_version: format!("{group}/{version}"),
        group,
        version,
        kind: text(&spec["names"]["kind"]),
        plural: text(&spec["names"]["plural"]),
    }
}
