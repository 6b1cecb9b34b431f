//! Turns a controller's hook spec into a callable [`Hook`]: inline or file Jsonnet/Tera go to the
//! sandbox, `configMapRef` is read once when the controller starts, webhooks get an HTTP client.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};

use crate::api::ApiError;
use crate::api::{self as spec, HookBackend, HookVersion, ResponseUnmarshallMode};
use crate::hooks::protocol::{DecodeMode, ProtocolVersion};
use crate::hooks::sandbox::Sandbox;
use crate::hooks::webhook::Webhook;
use crate::hooks::{Hook, HookSource};

/// A hook ready to call, with how to read its answers.
#[derive(Clone)]
pub struct BuiltHook {
    pub hook: Hook,
    pub version: ProtocolVersion,
    pub decode: DecodeMode,
}

#[derive(Debug, thiserror::Error)]
pub enum HookBuildError {
    #[error(transparent)]
    Spec(#[from] ApiError),
    #[error("{path}: cannot read ConfigMap {namespace}/{name}: {source}")]
    ConfigMap {
        path: String,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{path}: ConfigMap {namespace}/{name} has no key {key:?}")]
    ConfigMapKey {
        path: String,
        namespace: String,
        name: String,
        key: String,
    },
}

#[derive(Clone)]
pub struct HookFactory {
    client: Client,
    sandbox: Sandbox,
    http: reqwest::Client,
}

fn protocol(version: HookVersion) -> ProtocolVersion {
    match version {
        HookVersion::V1 => ProtocolVersion::V1,
        HookVersion::V2 => ProtocolVersion::V2,
    }
}

enum Code {
    Inline { name: String, text: String },
    File(PathBuf),
}

impl HookFactory {
    pub fn new(client: Client, sandbox: Sandbox) -> Self {
        Self {
            client,
            sandbox,
            http: reqwest::Client::new(),
        }
    }

    /// Builds the hook at `path` (e.g. `spec.hooks.sync`) of controller `owner` (for error names).
    pub async fn build(
        &self,
        hook: &spec::Hook,
        path: &str,
        owner: &str,
    ) -> Result<BuiltHook, HookBuildError> {
        let version = protocol(hook.version());
        let built = match hook.backend(path)? {
            HookBackend::Webhook(webhook) => {
                let wpath = format!("{path}.webhook");
                webhook.validate(&wpath)?;
                let url = webhook.effective_url(&wpath)?;
                let timeout = webhook.timeout(&wpath)?;
                let decode = match webhook.unmarshall_mode(hook.version()) {
                    ResponseUnmarshallMode::Loose => DecodeMode::Loose,
                    ResponseUnmarshallMode::Strict => DecodeMode::Strict,
                };
                BuiltHook {
                    hook: Hook::Webhook(Webhook::new(self.http.clone(), url, Some(timeout))),
                    version,
                    decode,
                }
            }
            HookBackend::Jsonnet(jsonnet) => {
                let jpath: Vec<PathBuf> = jsonnet.jpath.iter().map(PathBuf::from).collect();
                let spath = format!("{path}.jsonnet");
                let source = match self.code(jsonnet.source(&spath)?, &spath, owner).await? {
                    Code::Inline { name, text } => HookSource::JsonnetInline {
                        name,
                        code: text,
                        jpath,
                    },
                    Code::File(path) => HookSource::JsonnetFile { path, jpath },
                };
                self.evaluated(source, version)
            }
            HookBackend::Tera(tera) => {
                let spath = format!("{path}.tera");
                let source = match self.code(tera.source(&spath)?, &spath, owner).await? {
                    Code::Inline { name, text } => HookSource::TeraInline {
                        name,
                        template: text,
                    },
                    Code::File(path) => HookSource::TeraFile { path },
                };
                self.evaluated(source, version)
            }
        };
        Ok(built)
    }

    fn evaluated(&self, source: HookSource, version: ProtocolVersion) -> BuiltHook {
        BuiltHook {
            hook: Hook::Evaluated {
                sandbox: self.sandbox.clone(),
                source,
            },
            version,
            decode: version.default_decode_mode(),
        }
    }

    async fn code(
        &self,
        source: spec::HookSource<'_>,
        path: &str,
        owner: &str,
    ) -> Result<Code, HookBuildError> {
        Ok(match source {
            spec::HookSource::Inline(text) => Code::Inline {
                name: format!("{owner} {path}"),
                text: text.to_owned(),
            },
            spec::HookSource::File(file) => Code::File(PathBuf::from(file)),
            spec::HookSource::ConfigMap(r) => {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &r.namespace);
                let cm = api
                    .get(&r.name)
                    .await
                    .map_err(|source| HookBuildError::ConfigMap {
                        path: path.to_owned(),
                        namespace: r.namespace.clone(),
                        name: r.name.clone(),
                        source,
                    })?;
                let text = cm.data.and_then(|mut d| d.remove(&r.key)).ok_or_else(|| {
                    HookBuildError::ConfigMapKey {
                        path: path.to_owned(),
                        namespace: r.namespace.clone(),
                        name: r.name.clone(),
                        key: r.key.clone(),
                    }
                })?;
                Code::Inline {
                    name: format!("configmap {}/{} key {}", r.namespace, r.name, r.key),
                    text,
                }
            }
        })
    }
}
