//! A webhook's connection settings, resolved when its controller starts: which settings apply
//! (the webhook's own, or the first `spec.endpointConfigs` entry for its host), and the
//! Secret and ConfigMap values they name, turned into TLS settings and an `Authorization`
//! header. Every error names the field path and the object and key it read.

use std::fmt::Display;

use http::HeaderValue;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use super::HookBuildError;
use crate::api::{
    ApiError, Authorization, BasicAuth, CaBundle, CaBundleSource, ClientTls, EndpointConfig,
    Webhook,
};
use crate::hooks::webhook::auth::{self, BasicField};
use crate::hooks::webhook::tls::{self, IdentityPart, TlsSettings};

/// The settings that apply to one webhook, borrowed from the spec, with the path they sit at.
#[derive(Debug, PartialEq)]
pub struct ConnectionSpec<'a> {
    /// `spec.hooks.sync.webhook` or `spec.endpointConfigs[i]`.
    pub path: String,
    pub ca_bundle: Option<&'a CaBundle>,
    pub client_tls: Option<&'a ClientTls>,
    pub authorization: Option<&'a Authorization>,
    pub basic_auth: Option<&'a BasicAuth>,
}

impl<'a> ConnectionSpec<'a> {
    /// The webhook's own settings if it sets any of them (they then replace the endpoint
    /// config entirely; fields are not merged), else the first endpoint config whose host
    /// matches `url`, else none. The chosen settings' one-of rules are checked.
    pub fn select(
        webhook: &'a Webhook,
        webhook_path: &str,
        url: &url::Url,
        endpoint_configs: &'a [EndpointConfig],
    ) -> Result<Option<Self>, ApiError> {
        if webhook.has_connection_settings() {
            webhook.validate(webhook_path)?;
            return Ok(Some(Self {
                path: webhook_path.to_string(),
                ca_bundle: webhook.ca_bundle.as_ref(),
                client_tls: webhook.client_tls.as_ref(),
                authorization: webhook.authorization.as_ref(),
                basic_auth: webhook.basic_auth.as_ref(),
            }));
        }
        let Some((index, config)) = EndpointConfig::find(endpoint_configs, url) else {
            return Ok(None);
        };
        let path = format!("spec.endpointConfigs[{index}]");
        config.validate(&path)?;
        Ok(Some(Self {
            path,
            ca_bundle: config.ca_bundle.as_ref(),
            client_tls: config.client_tls.as_ref(),
            authorization: config.authorization.as_ref(),
            basic_auth: config.basic_auth.as_ref(),
        }))
    }
}

/// What the settings resolve to.
#[derive(Debug, Default)]
pub struct Connection {
    pub tls: TlsSettings,
    pub authorization: Option<HeaderValue>,
}

/// Where a value was read, for errors.
struct Origin<'a> {
    path: String,
    kind: &'static str,
    namespace: &'a str,
    name: &'a str,
    key: &'a str,
}

impl Origin<'_> {
    fn bad(&self, problem: impl Display) -> HookBuildError {
        HookBuildError::BadValue {
            path: self.path.clone(),
            kind: self.kind,
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
            key: self.key.to_string(),
            problem: problem.to_string(),
        }
    }

    fn missing(&self) -> HookBuildError {
        HookBuildError::MissingKey {
            path: self.path.clone(),
            kind: self.kind,
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
            key: self.key.to_string(),
        }
    }
}

/// The value of `key` in a ConfigMap, from `data` or else `binaryData`.
pub fn config_map_value(config_map: ConfigMap, key: &str) -> Option<Vec<u8>> {
    let text = config_map
        .data
        .and_then(|mut data| data.remove(key))
        .map(String::into_bytes);
    let binary = || {
        config_map
            .binary_data
            .and_then(|mut data| data.remove(key))
            .map(|bytes| bytes.0)
    };
    text.or_else(binary)
}

/// Reads Secrets and ConfigMaps for one controller.
pub struct Reader<'c> {
    client: &'c Client,
}

impl<'c> Reader<'c> {
    pub fn new(client: &'c Client) -> Self {
        Self { client }
    }

    /// The Secret's data; `path` is the field that names it.
    /// The values of `keys` in one Secret, each with where it came from (for errors about the
    /// value); a missing key is an error naming it. `path` is the field that names the Secret.
    async fn secret_keys<'a, const N: usize>(
        &self,
        path: &str,
        namespace: &'a str,
        name: &'a str,
        keys: [&'a str; N],
    ) -> Result<[(Origin<'a>, Vec<u8>); N], HookBuildError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let data = get(&api, path, "Secret", namespace, name)
            .await?
            .data
            .unwrap_or_default();
        let origin = |key| Origin {
            path: path.to_string(),
            kind: "Secret",
            namespace,
            name,
            key,
        };
        if let Some(absent) = keys.iter().find(|key| !data.contains_key(**key)) {
            return Err(origin(absent).missing());
        }
        Ok(keys.map(|key| {
            let value = data.get(key).map(|v| v.0.clone()).unwrap_or_default();
            (origin(key), value)
        }))
    }

    /// One ConfigMap key, from `data` or `binaryData`; `path` is the field that names it.
    pub async fn config_map_key(
        &self,
        path: &str,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Vec<u8>, HookBuildError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let config_map = get(&api, path, "ConfigMap", namespace, name).await?;
        config_map_value(config_map, key).ok_or_else(|| {
            Origin {
                path: path.to_string(),
                kind: "ConfigMap",
                namespace,
                name,
                key,
            }
            .missing()
        })
    }

    /// Resolves every setting of `spec`.
    pub async fn resolve(&self, spec: &ConnectionSpec<'_>) -> Result<Connection, HookBuildError> {
        let roots = match spec.ca_bundle {
            Some(ca_bundle) => Some(
                self.ca_bundle(&format!("{}.caBundle", spec.path), ca_bundle)
                    .await?,
            ),
            None => None,
        };
        let identity = match spec.client_tls {
            Some(client_tls) => Some(
                self.identity(&format!("{}.clientTLS.secretRef", spec.path), client_tls)
                    .await?,
            ),
            None => None,
        };
        let authorization = match (spec.authorization, spec.basic_auth) {
            (Some(authorization), _) => Some(
                self.authorization(
                    &format!("{}.authorization.secretRef", spec.path),
                    authorization,
                )
                .await?,
            ),
            (None, Some(basic)) => Some(
                self.basic(&format!("{}.basicAuth.secretRef", spec.path), basic)
                    .await?,
            ),
            (None, None) => None,
        };
        Ok(Connection {
            tls: TlsSettings { roots, identity },
            authorization,
        })
    }

    async fn ca_bundle(
        &self,
        path: &str,
        ca_bundle: &CaBundle,
    ) -> Result<Vec<Vec<u8>>, HookBuildError> {
        match ca_bundle.source(path)? {
            CaBundleSource::Inline(pem) => {
                tls::parse_ca_bundle(pem.as_bytes()).map_err(|e| HookBuildError::Inline {
                    path: format!("{path}.inline"),
                    problem: e.to_string(),
                })
            }
            CaBundleSource::Secret(reference) => {
                let [(origin, pem)] = self
                    .secret_keys(
                        &format!("{path}.secretRef"),
                        &reference.namespace,
                        &reference.name,
                        [reference.key()],
                    )
                    .await?;
                tls::parse_ca_bundle(&pem).map_err(|e| origin.bad(e))
            }
            CaBundleSource::ConfigMap(reference) => {
                let field = format!("{path}.configMapRef");
                let pem = self
                    .config_map_key(
                        &field,
                        &reference.namespace,
                        &reference.name,
                        reference.key(),
                    )
                    .await?;
                tls::parse_ca_bundle(&pem).map_err(|e| {
                    Origin {
                        path: field.clone(),
                        kind: "ConfigMap",
                        namespace: &reference.namespace,
                        name: &reference.name,
                        key: reference.key(),
                    }
                    .bad(e)
                })
            }
        }
    }

    async fn identity(
        &self,
        path: &str,
        client_tls: &ClientTls,
    ) -> Result<Vec<u8>, HookBuildError> {
        let reference = &client_tls.secret_ref;
        let [(cert_origin, cert), (key_origin, key)] = self
            .secret_keys(
                path,
                &reference.namespace,
                &reference.name,
                [client_tls.cert_key(), client_tls.private_key_key()],
            )
            .await?;
        tls::parse_identity(&cert, &key).map_err(|(part, e)| match part {
            IdentityPart::Certificate => cert_origin.bad(e),
            IdentityPart::Key => key_origin.bad(e),
        })
    }

    async fn authorization(
        &self,
        path: &str,
        authorization: &Authorization,
    ) -> Result<HeaderValue, HookBuildError> {
        let reference = &authorization.secret_ref;
        let [(origin, value)] = self
            .secret_keys(
                path,
                &reference.namespace,
                &reference.name,
                [&reference.key],
            )
            .await?;
        auth::authorization_header(authorization.scheme(), &value).map_err(|e| origin.bad(e))
    }

    async fn basic(&self, path: &str, basic: &BasicAuth) -> Result<HeaderValue, HookBuildError> {
        let reference = &basic.secret_ref;
        let [(user_origin, username), (password_origin, password)] = self
            .secret_keys(
                path,
                &reference.namespace,
                &reference.name,
                [basic.username_key(), basic.password_key()],
            )
            .await?;
        auth::basic_header(&username, &password).map_err(|(field, e)| match field {
            BasicField::Username => user_origin.bad(e),
            BasicField::Password => password_origin.bad(e),
        })
    }
}

/// GETs one object; a 404 becomes "not found" rather than the API server's status text.
async fn get<K>(
    api: &Api<K>,
    path: &str,
    kind: &'static str,
    namespace: &str,
    name: &str,
) -> Result<K, HookBuildError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let located = || {
        (
            path.to_string(),
            kind,
            namespace.to_string(),
            name.to_string(),
        )
    };
    match api.get_opt(name).await {
        Ok(Some(object)) => Ok(object),
        Ok(None) => {
            let (path, kind, namespace, name) = located();
            Err(HookBuildError::NotFound {
                path,
                kind,
                namespace,
                name,
            })
        }
        Err(source) => {
            let (path, kind, namespace, name) = located();
            Err(HookBuildError::Read {
                path,
                kind,
                namespace,
                name,
                source,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{SecretKeyRef, SecretRef};

    fn url(text: &str) -> url::Url {
        url::Url::parse(text).expect("valid URL")
    }

    fn bearer(name: &str) -> Authorization {
        Authorization {
            type_: None,
            secret_ref: SecretKeyRef {
                name: name.to_string(),
                namespace: "ns".to_string(),
                key: "token".to_string(),
            },
        }
    }

    fn endpoint(host: &str, secret: &str) -> EndpointConfig {
        EndpointConfig {
            host: host.to_string(),
            ca_bundle: Some(CaBundle {
                inline: Some("pem".to_string()),
                ..CaBundle::default()
            }),
            authorization: Some(bearer(secret)),
            ..EndpointConfig::default()
        }
    }

    #[test]
    fn the_first_matching_endpoint_config_applies() {
        let webhook = Webhook {
            url: Some("https://hooks.ns/sync".to_string()),
            ..Webhook::default()
        };
        let configs = [
            endpoint("other.ns", "a"),
            endpoint("HOOKS.ns:443", "b"),
            endpoint("hooks.ns", "c"),
        ];
        let spec = ConnectionSpec::select(
            &webhook,
            "spec.hooks.sync.webhook",
            &url("https://hooks.ns/sync"),
            &configs,
        )
        .expect("valid")
        .expect("a match");
        assert_eq!(spec.path, "spec.endpointConfigs[1]");
        assert_eq!(spec.authorization, configs[1].authorization.as_ref());
        assert_eq!(spec.ca_bundle, configs[1].ca_bundle.as_ref());
        assert!(
            ConnectionSpec::select(&webhook, "w", &url("https://elsewhere/sync"), &configs)
                .expect("valid")
                .is_none()
        );
    }

    #[test]
    fn any_webhook_setting_replaces_the_endpoint_config_whole() {
        let webhook = Webhook {
            url: Some("https://hooks.ns/sync".to_string()),
            basic_auth: Some(BasicAuth {
                secret_ref: SecretRef {
                    name: "basic".to_string(),
                    namespace: "ns".to_string(),
                },
                ..BasicAuth::default()
            }),
            ..Webhook::default()
        };
        let configs = [endpoint("hooks.ns", "b")];
        let spec = ConnectionSpec::select(
            &webhook,
            "spec.hooks.sync.webhook",
            &url("https://hooks.ns/sync"),
            &configs,
        )
        .expect("valid")
        .expect("the webhook's own");
        assert_eq!(spec.path, "spec.hooks.sync.webhook");
        assert_eq!(spec.basic_auth, webhook.basic_auth.as_ref());
        assert_eq!(spec.ca_bundle, None, "no CA taken from the endpoint config");
        assert_eq!(spec.authorization, None);
    }
}
