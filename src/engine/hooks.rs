//! Turns a controller's hook spec into a callable [`Hook`]: inline or file Jsonnet/Tera go to the
//! sandbox, `configMapRef` is read once when the controller starts, webhooks get an HTTP client
//! with their TLS settings and credentials, also read once when the controller starts
//! ([`connection`]).

mod connection;

use std::path::PathBuf;

use kube::Client;

use crate::api::ApiError;
use crate::api::{self as spec, EndpointConfig, HookBackend, HookVersion, ResponseUnmarshallMode};
use crate::hooks::protocol::{DecodeMode, ProtocolVersion};
use crate::hooks::sandbox::Sandbox;
use crate::hooks::webhook::tls::ClientPool;
use crate::hooks::webhook::{DEFAULT_MAX_RESPONSE_BYTES, EtagSettings, Webhook, WebhookConfig};
use crate::hooks::{Hook, HookSource, SpecPathError};
use connection::{Connection, ConnectionSpec, Reader};

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
    /// A `file` or `jpath` outside the operator's `--hook-dir`s.
    #[error(transparent)]
    HookPath(#[from] SpecPathError),
    /// A Secret or ConfigMap could not be read (other than not existing).
    #[error("{path}: cannot read {kind} {namespace}/{name}: {source}")]
    Read {
        path: String,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{path}: {kind} {namespace}/{name} not found")]
    NotFound {
        path: String,
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("{path}: {kind} {namespace}/{name} has no key {key:?}")]
    MissingKey {
        path: String,
        kind: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
    /// A value that is there but unusable: a bad PEM, an empty token, a ':' in a user name.
    #[error("{path}: {kind} {namespace}/{name} key {key:?} {problem}")]
    BadValue {
        path: String,
        kind: &'static str,
        namespace: String,
        name: String,
        key: String,
        problem: String,
    },
    /// An unusable inline value (`caBundle.inline`).
    #[error("{path}: {problem}")]
    Inline { path: String, problem: String },
    /// The HTTP client for the TLS settings at `path` could not be made.
    #[error("{path}: cannot create the HTTP client: {source}")]
    Client {
        path: String,
        #[source]
        source: reqwest::Error,
    },
}

#[derive(Clone)]
pub struct HookFactory {
    client: Client,
    sandbox: Sandbox,
    clients: ClientPool,
    max_response_bytes: usize,
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
    /// A factory whose webhooks accept responses up to [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub fn new(client: Client, sandbox: Sandbox) -> Self {
        Self {
            client,
            sandbox,
            clients: ClientPool::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// Caps webhook response bodies at `bytes`; pass `--max-output`, so a webhook answer is
    /// bounded like an evaluated hook's.
    pub fn with_max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Builds the hook at `path` (e.g. `spec.hooks.sync`) of controller `owner` (for error
    /// names). `endpoint_configs` is the controller's `spec.endpointConfigs`, the connection
    /// settings of webhooks that set none of their own.
    pub async fn build(
        &self,
        hook: &spec::Hook,
        path: &str,
        owner: &str,
        endpoint_configs: &[EndpointConfig],
    ) -> Result<BuiltHook, HookBuildError> {
        let version = protocol(hook.version());
        let built = match hook.backend(path)? {
            HookBackend::Webhook(webhook) => {
                let wpath = format!("{path}.webhook");
                let decode = match webhook.unmarshall_mode(hook.version()) {
                    ResponseUnmarshallMode::Loose => DecodeMode::Loose,
                    ResponseUnmarshallMode::Strict => DecodeMode::Strict,
                };
                BuiltHook {
                    hook: Hook::Webhook(self.webhook(webhook, &wpath, endpoint_configs).await?),
                    version,
                    decode,
                }
            }
            HookBackend::Jsonnet(jsonnet) => {
                let spath = format!("{path}.jsonnet");
                let dirs = self.sandbox.hook_dirs();
                let jpath = jsonnet
                    .jpath
                    .iter()
                    .enumerate()
                    .map(|(i, dir)| dirs.confine(dir, &format!("{spath}.jpath[{i}]")))
                    .collect::<Result<Vec<PathBuf>, _>>()?;
                let source = match self.code(jsonnet.source(&spath)?, &spath, owner).await? {
                    Code::Inline { name, text } => HookSource::JsonnetInline {
                        name,
                        code: text,
                        jpath,
                    },
                    Code::File(path) => HookSource::JsonnetFile { path, jpath },
                };
                self.evaluated(source, version, owner)
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
                self.evaluated(source, version, owner)
            }
        };
        Ok(built)
    }

    /// The webhook at `path`, with its connection settings resolved.
    async fn webhook(
        &self,
        webhook: &spec::Webhook,
        path: &str,
        endpoint_configs: &[EndpointConfig],
    ) -> Result<Webhook, HookBuildError> {
        webhook.validate(path)?;
        let url = webhook.parsed_url(path)?;
        let (connection, settings_path) =
            match ConnectionSpec::select(webhook, path, &url, endpoint_configs)? {
                Some(spec) => (Reader::new(&self.client).resolve(&spec).await?, spec.path),
                None => (Connection::default(), path.to_string()),
            };
        let client =
            self.clients
                .client(&connection.tls)
                .map_err(|source| HookBuildError::Client {
                    path: settings_path,
                    source,
                })?;
        let etag = webhook
            .etag
            .as_ref()
            .filter(|etag| etag.is_enabled())
            .map(|etag| EtagSettings {
                timeout: etag.cache_timeout(),
                cleanup: etag.cache_cleanup(),
            });
        Ok(Webhook::new(
            client,
            WebhookConfig {
                url: webhook.effective_url(path)?,
                timeout: webhook.timeout(path)?,
                authorization: connection.authorization,
                etag,
                max_response_bytes: self.max_response_bytes,
            },
        ))
    }

    /// An evaluated hook whose requests count for the controller `owner`, so one controller
    /// cannot take every worker of the sandbox.
    fn evaluated(&self, source: HookSource, version: ProtocolVersion, owner: &str) -> BuiltHook {
        BuiltHook {
            hook: Hook::Evaluated {
                sandbox: self.sandbox.for_tenant(owner),
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
            spec::HookSource::File(file) => Code::File(
                self.sandbox
                    .hook_dirs()
                    .confine(file, &format!("{path}.file"))?,
            ),
            spec::HookSource::ConfigMap(r) => {
                let bytes = Reader::new(&self.client)
                    .config_map_key(path, &r.namespace, &r.name, &r.key)
                    .await?;
                let text = String::from_utf8(bytes).map_err(|_| HookBuildError::BadValue {
                    path: path.to_owned(),
                    kind: "ConfigMap",
                    namespace: r.namespace.clone(),
                    name: r.name.clone(),
                    key: r.key.clone(),
                    problem: "is not UTF-8 text".to_string(),
                })?;
                Code::Inline {
                    name: format!("configmap {}/{} key {}", r.namespace, r.name, r.key),
                    text,
                }
            }
        })
    }
}
