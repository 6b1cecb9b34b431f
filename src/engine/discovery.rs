//! Resolves the `apiVersion` + plural `resource` that controllers name into API resources, through
//! the API server's discovery, cached for `--discovery-interval`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::ApiResource;
use kube::core::GroupVersion;
use kube::discovery::Scope;

/// A resource type as the engine needs it.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub ar: ApiResource,
    pub namespaced: bool,
    pub has_status: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("invalid apiVersion {api_version:?}: {reason}")]
    ApiVersion { api_version: String, reason: String },
    #[error("discovery: can't find resource {resource} in apiVersion {api_version}")]
    NotFound {
        api_version: String,
        resource: String,
    },
    #[error("discovery of {api_version} failed: {source}")]
    Api {
        api_version: String,
        #[source]
        source: kube::Error,
    },
}

pub struct Discovery {
    client: Client,
    interval: Duration,
    groups: Mutex<HashMap<String, (Instant, Vec<Resolved>)>>,
}

impl Discovery {
    pub fn new(client: Client, interval: Duration) -> Self {
        Self {
            client,
            interval,
            groups: Mutex::default(),
        }
    }

    /// Resolves `resource` (plural, lowercase) in `api_version` (`group/version`, or `v1`).
    pub async fn resolve(
        &self,
        api_version: &str,
        resource: &str,
    ) -> Result<Resolved, DiscoveryError> {
        let fresh = {
            let groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
            groups
                .get(api_version)
                .filter(|(at, _)| at.elapsed() < self.interval)
                .map(|(_, list)| list.clone())
        };
        let list = match fresh {
            Some(list) => list,
            None => self.fetch(api_version).await?,
        };
        list.into_iter()
            .find(|r| r.ar.plural == resource)
            .ok_or_else(|| DiscoveryError::NotFound {
                api_version: api_version.to_owned(),
                resource: resource.to_owned(),
            })
    }

    async fn fetch(&self, api_version: &str) -> Result<Vec<Resolved>, DiscoveryError> {
        let gv: GroupVersion =
            api_version
                .parse()
                .map_err(|e: kube::core::gvk::ParseGroupVersionError| {
                    DiscoveryError::ApiVersion {
                        api_version: api_version.to_owned(),
                        reason: e.to_string(),
                    }
                })?;
        let group = kube::discovery::pinned_group(&self.client, &gv)
            .await
            .map_err(|source| DiscoveryError::Api {
                api_version: api_version.to_owned(),
                source,
            })?;
        let list: Vec<Resolved> = group
            .versioned_resources(&gv.version)
            .into_iter()
            .map(|(ar, caps)| Resolved {
                namespaced: caps.scope == Scope::Namespaced,
                has_status: caps
                    .subresources
                    .iter()
                    .any(|(sub, _)| sub.plural == "status"),
                ar,
            })
            .collect();
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(api_version.to_owned(), (Instant::now(), list.clone()));
        Ok(list)
    }
}
