//! Turns a controller's hook spec into a callable [`EngineHook`]: inline Jsonnet/Tera go to the
//! sandbox as they are; `configMapRef` and `file` code is read when the controller starts and
//! then followed, a good new version replacing the old one and resyncing the controller's
//! parents, a broken one refused with a Warning Event on the controller ([`followed`]);
//! webhooks get an HTTP client with their TLS settings and credentials, read once when the
//! controller starts ([`connection`]).

mod connection;
mod followed;

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use serde_json::Value;
use tracing::Instrument;

use super::events::EventRecorder;
use crate::api::ApiError;
use crate::api::{self as spec, EndpointConfig, HookBackend, HookVersion, ResponseUnmarshallMode};
use crate::hooks::protocol::{DecodeMode, ProtocolVersion};
use crate::hooks::sandbox::Sandbox;
use crate::hooks::webhook::tls::ClientPool;
use crate::hooks::webhook::{DEFAULT_MAX_RESPONSE_BYTES, EtagSettings, Webhook, WebhookConfig};
use crate::hooks::{Hook, HookError, HookSource, SpecPathError};
use crate::telemetry::engine_metrics::{
    CallResult, ControllerLabels, EngineMetrics, HookInstruments,
};
use connection::{Connection, ConnectionSpec, Reader};
use followed::{Follow, FollowedHook, Language, Origin};
pub use followed::{REJECTED, UPDATED};

/// A hook ready to call, with how to read its answers.
#[derive(Clone)]
pub struct BuiltHook {
    pub hook: EngineHook,
    pub version: ProtocolVersion,
    pub decode: DecodeMode,
    /// Where its calls are counted and timed.
    pub instruments: Option<HookInstruments>,
}

impl BuiltHook {
    /// Calls the hook, counted and timed in the engine's metrics.
    pub async fn call(&self, request: &Value) -> Result<Value, HookError> {
        let Some(instruments) = &self.instruments else {
            return self.hook.call(request).await;
        };
        let _in_flight = instruments.start();
        let started = std::time::Instant::now();
        let span = tracing::info_span!(
            "hook",
            hook = instruments.hook_type(),
            backend = instruments.backend(),
        );
        let result = self.hook.call(request).instrument(span).await;
        instruments.finish(started.elapsed(), call_result(&result));
        result
    }
}

/// How a call ended, as the metrics count it.
fn call_result(result: &Result<Value, HookError>) -> CallResult {
    use crate::hooks::webhook::WebhookError as W;
    match result {
        Ok(_) => CallResult::Ok,
        Err(HookError::Webhook(e)) => match e {
            W::Status { status, .. } => CallResult::Answered {
                status: *status,
                result: "webhook_error",
            },
            W::TooManyRequests { .. } => CallResult::Answered {
                status: 429,
                result: "webhook_error",
            },
            W::TooLarge { .. } | W::NotJson { .. } => CallResult::Answered {
                status: 200,
                result: "webhook_error",
            },
            _ => CallResult::Failed {
                result: "webhook_error",
            },
        },
        Err(HookError::Eval(_)) => CallResult::Failed {
            result: "eval_error",
        },
        Err(HookError::NotJson(_)) => CallResult::Failed { result: "not_json" },
    }
}

/// What the engine calls: a hook fixed when its controller started (inline code, a webhook),
/// or one that follows its ConfigMap key or file.
#[derive(Clone)]
pub enum EngineHook {
    Fixed(Hook),
    Followed(FollowedHook),
}

impl EngineHook {
    pub async fn call(&self, request: &Value) -> Result<Value, HookError> {
        match self {
            Self::Fixed(hook) => hook.call(request).await,
            Self::Followed(hook) => hook.call(request).await,
        }
    }
}

/// The controller a hook belongs to: named in errors, told (by a Warning Event) when a
/// followed source is refused, and resynced when one changes.
#[derive(Clone)]
pub struct HookOwner {
    reference: ObjectReference,
    resync: Arc<dyn Fn() + Send + Sync>,
}

impl HookOwner {
    /// `resync` enqueues every parent of the controller `reference` names.
    pub fn new(reference: ObjectReference, resync: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            reference,
            resync: Arc::new(resync),
        }
    }

    pub fn name(&self) -> &str {
        self.reference.name.as_deref().unwrap_or_default()
    }

    pub fn reference(&self) -> &ObjectReference {
        &self.reference
    }

    pub fn resync(&self) {
        (self.resync)()
    }
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
    /// A `file` hook's file could not be read when its controller started.
    #[error("{path}: hook file {file}: {problem}")]
    File {
        path: String,
        file: String,
        problem: String,
    },
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
    /// Reports refused and updated hook sources on their controllers.
    recorder: Arc<EventRecorder>,
    metrics: Option<EngineMetrics>,
}

fn protocol(version: HookVersion) -> ProtocolVersion {
    match version {
        HookVersion::V1 => ProtocolVersion::V1,
        HookVersion::V2 => ProtocolVersion::V2,
    }
}

impl HookFactory {
    /// A factory whose webhooks accept responses up to [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub fn new(client: Client, sandbox: Sandbox) -> Self {
        Self {
            recorder: Arc::new(EventRecorder::new(client.clone())),
            client,
            sandbox,
            clients: ClientPool::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            metrics: None,
        }
    }

    /// Counts and times every hook call in `metrics`.
    pub fn with_metrics(mut self, metrics: EngineMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Caps webhook response bodies at `bytes`; pass `--max-output`, so a webhook answer is
    /// bounded like an evaluated hook's.
    pub fn with_max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Builds the hook at `path` (e.g. `spec.hooks.sync`) of controller `owner`.
    /// `endpoint_configs` is the controller's `spec.endpointConfigs`, the connection settings
    /// of webhooks that set none of their own. A `configMapRef` or `file` hook follows its
    /// source until the returned hook (and every clone) is dropped.
    pub async fn build(
        &self,
        hook: &spec::Hook,
        path: &str,
        owner: &HookOwner,
        endpoint_configs: &[EndpointConfig],
    ) -> Result<BuiltHook, HookBuildError> {
        let version = protocol(hook.version());
        let mut url = None;
        let built = match hook.backend(path)? {
            HookBackend::Webhook(webhook) => {
                let wpath = format!("{path}.webhook");
                url = webhook.effective_url(&wpath).ok();
                let decode = match webhook.unmarshall_mode(hook.version()) {
                    ResponseUnmarshallMode::Loose => DecodeMode::Loose,
                    ResponseUnmarshallMode::Strict => DecodeMode::Strict,
                };
                BuiltHook {
                    hook: EngineHook::Fixed(Hook::Webhook(
                        self.webhook(webhook, &wpath, endpoint_configs).await?,
                    )),
                    version,
                    decode,
                    instruments: None,
                }
            }
            HookBackend::Jsonnet(jsonnet) => {
                let field = format!("{path}.jsonnet");
                let dirs = self.sandbox.hook_dirs();
                let jpath = jsonnet
                    .jpath
                    .iter()
                    .enumerate()
                    .map(|(i, dir)| dirs.confine(dir, &format!("{field}.jpath[{i}]")))
                    .collect::<Result<Vec<PathBuf>, _>>()?;
                let code = jsonnet.source(&field)?;
                self.evaluated(code, Language::Jsonnet { jpath }, field, owner, version)
                    .await?
            }
            HookBackend::Tera(tera) => {
                let field = format!("{path}.tera");
                let code = tera.source(&field)?;
                self.evaluated(code, Language::Tera, field, owner, version)
                    .await?
            }
        };
        let backend = if url.is_some() {
            "webhook"
        } else if hook.tera.is_some() {
            "tera"
        } else {
            "jsonnet"
        };
        let instruments = self.metrics.as_ref().map(|metrics| {
            let reference = owner.reference();
            let controller = ControllerLabels {
                controller_name: owner.name().to_owned(),
                controller_type: reference.kind.clone().unwrap_or_default(),
            };
            let hook_type = path.rsplit('.').next().unwrap_or(path);
            metrics.hook(&controller, hook_type, backend, url)
        });
        Ok(BuiltHook {
            instruments,
            ..built
        })
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

    /// A Jsonnet or Tera hook whose code is at `field`: inline code as it is, a ConfigMap key
    /// or file followed. Its requests count for the controller `owner`, so one controller
    /// cannot take every worker of the sandbox.
    async fn evaluated(
        &self,
        code: spec::HookSource<'_>,
        language: Language,
        field: String,
        owner: &HookOwner,
        version: ProtocolVersion,
    ) -> Result<BuiltHook, HookBuildError> {
        let sandbox = self.sandbox.for_tenant(owner.name());
        let origin = match code {
            spec::HookSource::Inline(text) => {
                let name = format!("{} {field}", owner.name());
                let source = match language {
                    Language::Jsonnet { jpath } => HookSource::JsonnetInline {
                        name,
                        code: text.to_owned(),
                        jpath,
                    },
                    Language::Tera => HookSource::TeraInline {
                        name,
                        template: text.to_owned(),
                    },
                };
                return Ok(self.built(
                    EngineHook::Fixed(Hook::Evaluated { sandbox, source }),
                    version,
                ));
            }
            spec::HookSource::File(file) => {
                let confined = self
                    .sandbox
                    .hook_dirs()
                    .confine(file, &format!("{field}.file"))?;
                Origin::file(&confined.to_string_lossy())
            }
            spec::HookSource::ConfigMap(r) => Origin::ConfigMap {
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                key: r.key.clone(),
            },
        };
        let followed = FollowedHook::start(Follow {
            client: self.client.clone(),
            sandbox,
            recorder: self.recorder.clone(),
            owner: owner.clone(),
            field,
            language,
            origin,
        })
        .await?;
        Ok(self.built(EngineHook::Followed(followed), version))
    }

    fn built(&self, hook: EngineHook, version: ProtocolVersion) -> BuiltHook {
        BuiltHook {
            hook,
            version,
            decode: version.default_decode_mode(),
            instruments: None,
        }
    }
}
