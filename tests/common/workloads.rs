//! Workload readiness as Kubernetes' own tools judge it, for tests on the full test cluster (where
//! kube-scheduler places Pods on KWOK's fake Nodes and they become Running and Ready).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;

/// `Ok` when a Deployment has rolled out, by `kubectl rollout status`'s rules: the Deployment
/// controller has observed its latest generation, every desired replica is updated, no old replica
/// is left, and every updated replica is available. `Err` says what is still missing.
pub fn deployment_rolled_out(d: &Deployment) -> Result<(), String> {
    let name = d.metadata.name.as_deref().unwrap_or("?");
    let status = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    let observed = status.observed_generation.unwrap_or(0);
    if observed < generation {
        return Err(format!(
            "Deployment {name}: observedGeneration {observed} < generation {generation}"
        ));
    }
    if let Some(c) = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    }) {
        return Err(format!(
            "Deployment {name} exceeded its progress deadline: {:?}",
            c.message
        ));
    }
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let replicas = status.replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < desired {
        return Err(format!(
            "Deployment {name}: {updated} of {desired} replicas updated"
        ));
    }
    if replicas > updated {
        return Err(format!(
            "Deployment {name}: {} old replicas pending termination",
            replicas - updated
        ));
    }
    if available < updated {
        return Err(format!(
            "Deployment {name}: {available} of {updated} updated replicas available"
        ));
    }
    Ok(())
}

/// The Deployment's `Available` condition is `True`.
pub fn deployment_available(d: &Deployment) -> bool {
    d.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Available" && c.status == "True")
        })
}

/// The Pod's `Ready` condition is `True`.
pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
