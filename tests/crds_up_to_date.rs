//! The checked-in manifests must match the Rust API types: `manifests/crds.yaml` is generated,
//! and a stale copy would install a schema that disagrees with what the controller decodes.

use std::path::{Path, PathBuf};

use serde::Deserialize;

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

#[test]
fn checked_in_crds_match_the_api_types() {
    let expected = kubelambda::api::crds_yaml().expect("the CRDs render as YAML");
    let path = manifests_dir().join("crds.yaml");
    let actual = read(&path);
    if actual != expected {
        let first_difference = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .map_or_else(
                || "one file is a prefix of the other".to_string(),
                |index| {
                    format!(
                        "first difference at line {}:\n  checked in: {}\n  generated:  {}",
                        index + 1,
                        actual.lines().nth(index).unwrap_or_default(),
                        expected.lines().nth(index).unwrap_or_default()
                    )
                },
            );
        panic!(
            "{} is out of date with src/api ({first_difference}).\n\
             Regenerate it with:\n\n    cargo run -- crds > manifests/crds.yaml\n",
            path.display()
        );
    }
}

/// Every file the kustomization lists exists and holds Kubernetes objects, so
/// `kubectl apply -k manifests/` does not fail on a missing or mistyped file.
#[test]
fn kustomization_lists_existing_manifests() {
    let dir = manifests_dir();
    let kustomization: serde_yaml::Value =
        serde_yaml::from_str(&read(&dir.join("kustomization.yaml")))
            .expect("kustomization.yaml is YAML");
    let resources: Vec<&str> = kustomization["resources"]
        .as_sequence()
        .expect("kustomization.yaml has a resources list")
        .iter()
        .map(|resource| resource.as_str().expect("resources are file names"))
        .collect();
    assert_eq!(
        resources,
        [
            "namespace.yaml",
            "crds.yaml",
            "rbac.yaml",
            "deployment.yaml"
        ]
    );
    let mut kinds = Vec::new();
    for resource in resources {
        let text = read(&dir.join(resource));
        for document in serde_yaml::Deserializer::from_str(&text) {
            let object = serde_yaml::Value::deserialize(document)
                .unwrap_or_else(|error| panic!("{resource}: invalid YAML: {error}"));
            let kind = object["kind"].as_str().unwrap_or_default().to_string();
            assert!(
                object["apiVersion"].as_str().is_some() && !kind.is_empty(),
                "{resource}: every document needs apiVersion and kind"
            );
            kinds.push(kind);
        }
    }
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in manifests/");
    }
}
