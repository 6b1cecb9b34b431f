//! Applying and deleting YAML manifests without kubectl: the CRDs (`kubelambda crds`), the
//! bench's parent CRD and each phase's CompositeController.

use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Client, ResourceExt};
use serde::Deserialize;
use serde_json::Value;

use crate::BoxError;

const FIELD_MANAGER: &str = "convergence-bench";

/// Every non-empty document of a YAML file ("-": stdin).
pub fn read(file: &str) -> Result<Vec<Value>, BoxError> {
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("reading stdin: {e}"))?
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("reading {file}: {e}"))?
    };
    let mut docs = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| format!("{file}: document {i}: {e}"))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

fn str_at<'a>(doc: &'a Value, path: &str) -> Result<&'a str, BoxError> {
    doc.pointer(path)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("a document has no {path}").into())
}

/// The API for one document and its name.
async fn api_for(client: &Client, doc: &Value) -> Result<(Api<DynamicObject>, String), BoxError> {
    let (api_version, kind, name) = (
        str_at(doc, "/apiVersion")?,
        str_at(doc, "/kind")?,
        str_at(doc, "/metadata/name")?,
    );
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, caps) = discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| format!("{api_version} {kind} {name}: discovery: {e}"))?;
    let api = match caps.scope {
        Scope::Cluster => Api::all_with(client.clone(), &resource),
        Scope::Namespaced => {
            let ns = doc
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default");
            Api::namespaced_with(client.clone(), ns, &resource)
        }
    };
    Ok((api, name.to_string()))
}

pub async fn apply(client: &Client, docs: &[Value]) -> Result<(), BoxError> {
    for doc in docs {
        let (api, name) = api_for(client, doc).await?;
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(&name, &params, &Patch::Apply(doc))
            .await
            .map_err(|e| format!("applying {name}: {e}"))?;
        if doc.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition") {
            wait_established(&api, &name).await?;
        }
    }
    Ok(())
}

async fn wait_established(api: &Api<DynamicObject>, name: &str) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let crd = api
            .get(name)
            .await
            .map_err(|e| format!("reading CRD {name}: {e}"))?;
        let established = crd
            .data
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|conds| {
                conds.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some("Established")
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            });
        if established {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("CRD {name} not Established after 60 s").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn delete(client: &Client, docs: &[Value]) -> Result<(), BoxError> {
    for doc in docs {
        let (api, name) = api_for(client, doc).await?;
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(format!("deleting {name}: {e}").into()),
        }
    }
    Ok(())
}

/// Deletes a namespace and waits until it is gone, so that the next phase's controller sees no
/// parent of this one.
pub async fn delete_namespace(
    client: &Client,
    ns: &str,
    timeout_seconds: u64,
) -> Result<(), BoxError> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    match api.delete(ns, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(format!("deleting namespace {ns}: {e}").into()),
    }
    let deadline = Instant::now() + Duration::from_secs(timeout_seconds);
    loop {
        match api
            .get_opt(ns)
            .await
            .map_err(|e| format!("reading namespace {ns}: {e}"))?
        {
            None => return Ok(()),
            Some(n) if Instant::now() > deadline => {
                return Err(format!(
                    "namespace {ns} still there after {timeout_seconds} s (finalizers {:?})",
                    n.finalizers()
                )
                .into());
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
