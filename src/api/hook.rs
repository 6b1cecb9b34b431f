//! The hook spec shared by CompositeController and DecoratorController.
//!
//! A hook names exactly one backend: Metacontroller's `webhook` (unchanged, so existing
//! controllers keep working), or `jsonnet` / `tera`, evaluated inside kubelambda. The
//! "exactly one" rules are enforced twice: by CEL rules in the CRD schema, so a bad object is
//! rejected by `kubectl apply`, and by [`Hook::backend`] and friends, so objects that reached
//! the cluster some other way (an older CRD, a Metacontroller CRD, a file on disk for
//! `kubelambda render`) still fail with an error that names the field.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::gocompat::duration::parse_signed_duration;

/// Webhook timeout used when `timeout` is unset, zero or negative (Metacontroller's default).
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Port used for `service` when `service.port` is unset.
pub const DEFAULT_SERVICE_PORT: i32 = 80;
/// URL scheme used for `service` when `service.protocol` is unset.
pub const DEFAULT_SERVICE_PROTOCOL: &str = "http";

/// One hook (sync, finalize, customize, ...): a wire-protocol version and exactly one backend.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.webhook) ? 1 : 0) + (has(self.jsonnet) ? 1 : 0) + (has(self.tera) ? 1 : 0) == 1",
    "message": "exactly one of webhook, jsonnet, tera must be set"
}]))]
pub struct Hook {
    /// Hook wire-protocol version, v1 (default) or v2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "v1"))]
    pub version: Option<HookVersion>,
    /// Call an HTTP(S) endpoint, exactly as Metacontroller does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    /// Evaluate a Jsonnet top-level function of `request` inside the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonnet: Option<JsonnetHook>,
    /// Render a Tera template inside the controller; the output is parsed as YAML (or JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tera: Option<TeraHook>,
}

/// Hook wire-protocol version: v1 (default) or v2. v2 keys every namespaced object in
/// children/attachments/related maps by "namespace/name" and decodes webhook responses strictly
/// by default. This is not a CRD version.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum HookVersion {
    /// Relative object-map keys; loose webhook response decoding.
    #[default]
    #[serde(rename = "v1")]
    V1,
    /// Uniform "namespace/name" object-map keys; strict webhook response decoding.
    #[serde(rename = "v2")]
    V2,
}

/// The backend a [`Hook`] selects, borrowed from it. Only valid hooks produce one, so the engine
/// can `match` without re-checking the one-of rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HookBackend<'a> {
    /// `webhook`
    Webhook(&'a Webhook),
    /// `jsonnet`
    Jsonnet(&'a JsonnetHook),
    /// `tera`
    Tera(&'a TeraHook),
}

/// Where a Jsonnet program or Tera template comes from, borrowed from its spec.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HookSource<'a> {
    /// Inline code (`jsonnet.source` or `tera.template`).
    Inline(&'a str),
    /// A path inside the controller's container (`file`), e.g. a mounted ConfigMap.
    File(&'a str),
    /// A key of a ConfigMap, read through the API (`configMapRef`).
    ConfigMap(&'a ConfigMapKeyRef),
}

/// Names a hook's field for error messages: "found webhook and jsonnet", "found none".
fn describe_found(found: &[&str]) -> String {
    match found {
        [] => "none".to_string(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The error for a violated "exactly one of `names`" rule.
fn one_of_error(path: &str, names: &[&str], found: &[&str]) -> ApiError {
    ApiError::OneOf {
        path: path.to_string(),
        expected: names.join(", "),
        found: describe_found(found),
    }
}

/// Shared by the "exactly one of" checks: `set[i]` tells whether `names[i]` is set.
fn exactly_one(path: &str, names: &[&str], set: &[bool]) -> Result<(), ApiError> {
    let found: Vec<&str> = names
        .iter()
        .zip(set)
        .filter_map(|(name, is_set)| is_set.then_some(*name))
        .collect();
    if found.len() == 1 {
        Ok(())
    } else {
        Err(one_of_error(path, names, &found))
    }
}

impl Hook {
    /// The wire-protocol version, defaulting to v1 like Metacontroller when unset.
    pub fn version(&self) -> HookVersion {
        self.version.unwrap_or_default()
    }

    /// The single backend this hook selects.
    ///
    /// `path` is where the hook sits in its object (e.g. `spec.hooks.sync`); it prefixes the
    /// error, which reads `spec.hooks.sync: exactly one of webhook, jsonnet, tera must be set,
    /// found webhook and jsonnet`.
    pub fn backend(&self, path: &str) -> Result<HookBackend<'_>, ApiError> {
        let set = [
            self.webhook.is_some(),
            self.jsonnet.is_some(),
            self.tera.is_some(),
        ];
        const NAMES: [&str; 3] = ["webhook", "jsonnet", "tera"];
        exactly_one(path, &NAMES, &set)?;
        match (&self.webhook, &self.jsonnet, &self.tera) {
            (Some(webhook), _, _) => Ok(HookBackend::Webhook(webhook)),
            (_, Some(jsonnet), _) => Ok(HookBackend::Jsonnet(jsonnet)),
            (_, _, Some(tera)) => Ok(HookBackend::Tera(tera)),
            (None, None, None) => Err(one_of_error(path, &NAMES, &[])),
        }
    }

    /// Checks everything that can be checked without the cluster: one backend, one source per
    /// backend, a usable webhook URL and timeout, and the webhook's TLS/auth one-of rules.
    pub fn validate(&self, path: &str) -> Result<(), ApiError> {
        match self.backend(path)? {
            HookBackend::Webhook(webhook) => webhook.validate(&format!("{path}.webhook")),
            HookBackend::Jsonnet(jsonnet) => jsonnet.source(&format!("{path}.jsonnet")).map(drop),
            HookBackend::Tera(tera) => tera.source(&format!("{path}.tera")).map(drop),
        }
    }
}

/// A Jsonnet hook: a program that is a top-level function of `request` (or a plain value,
/// returned as is). Exactly one of `source`, `file`, `configMapRef`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.source) ? 1 : 0) + (has(self.file) ? 1 : 0) + (has(self.configMapRef) ? 1 : 0) == 1",
    "message": "exactly one of source, file, configMapRef must be set"
}]))]
pub struct JsonnetHook {
    /// Inline Jsonnet code, e.g. `function(request) { children: [], status: {} }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Path of a Jsonnet file inside the controller's container (for example a mounted
    /// ConfigMap), read when the controller starts and then checked every second. A new
    /// version that loads is used and every parent resynced; a broken one, or a missing file,
    /// keeps the last good version and is reported in a Warning Event on the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A ConfigMap key holding the Jsonnet code, read when the controller starts and then
    /// watched. A new version that loads is used and every parent resynced; a broken one, a
    /// removed key or a deleted ConfigMap keeps the last good version and is reported in a
    /// Warning Event on the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
    /// Extra library search paths for `import`, searched in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jpath: Vec<String>,
}

impl JsonnetHook {
    /// The single source of the program. `path` is this object's path (e.g.
    /// `spec.hooks.sync.jsonnet`) and prefixes the error.
    pub fn source(&self, path: &str) -> Result<HookSource<'_>, ApiError> {
        pick_source(
            path,
            "source",
            self.source.as_deref(),
            self.file.as_deref(),
            self.config_map_ref.as_ref(),
        )
    }
}

/// A Tera hook: a template rendered with the request's fields as context; the output is parsed
/// as YAML (JSON is YAML). Exactly one of `template`, `file`, `configMapRef`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.template) ? 1 : 0) + (has(self.file) ? 1 : 0) + (has(self.configMapRef) ? 1 : 0) == 1",
    "message": "exactly one of template, file, configMapRef must be set"
}]))]
pub struct TeraHook {
    /// Inline template text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Path of a template file inside the controller's container, read when the controller
    /// starts and then checked every second. A new version that compiles is used and every
    /// parent resynced; a broken one, or a missing file, keeps the last good version and is
    /// reported in a Warning Event on the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A ConfigMap key holding the template, read when the controller starts and then
    /// watched. A new version that compiles is used and every parent resynced; a broken one, a
    /// removed key or a deleted ConfigMap keeps the last good version and is reported in a
    /// Warning Event on the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
}

impl TeraHook {
    /// The single source of the template. `path` is this object's path (e.g.
    /// `spec.hooks.sync.tera`) and prefixes the error.
    pub fn source(&self, path: &str) -> Result<HookSource<'_>, ApiError> {
        pick_source(
            path,
            "template",
            self.template.as_deref(),
            self.file.as_deref(),
            self.config_map_ref.as_ref(),
        )
    }
}

/// The one-of rule shared by Jsonnet and Tera; `inline_name` is the inline field's JSON name.
fn pick_source<'a>(
    path: &str,
    inline_name: &'static str,
    inline: Option<&'a str>,
    file: Option<&'a str>,
    config_map: Option<&'a ConfigMapKeyRef>,
) -> Result<HookSource<'a>, ApiError> {
    let names = [inline_name, "file", "configMapRef"];
    exactly_one(
        path,
        &names,
        &[inline.is_some(), file.is_some(), config_map.is_some()],
    )?;
    match (inline, file, config_map) {
        (Some(code), _, _) => Ok(HookSource::Inline(code)),
        (_, Some(file), _) => Ok(HookSource::File(file)),
        (_, _, Some(reference)) => Ok(HookSource::ConfigMap(reference)),
        (None, None, None) => Err(one_of_error(path, &names, &[])),
    }
}

/// A key in a ConfigMap. The namespace is required because controllers are cluster-scoped.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Namespace of the ConfigMap.
    pub namespace: String,
    /// Name of the ConfigMap.
    pub name: String,
    /// Key within the ConfigMap's data.
    pub key: String,
}

/// Metacontroller's webhook: where to POST the request and how to connect.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.url) || (has(self.service) && has(self.path))",
        "message": "set url, or both service and path"
    },
    {
        "rule": "!(has(self.authorization) && has(self.basicAuth))",
        "message": "authorization and basicAuth are mutually exclusive"
    }
]))]
pub struct Webhook {
    /// Full URL of the hook, http or https. Takes precedence over service and path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Per-request timeout as a Go duration ("10s", "500ms", "1m30s"). Default 10s; zero or
    /// negative also means 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "duration"))]
    pub timeout: Option<String>,
    /// URL path appended to the service address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// An in-cluster Service, reached as {protocol}://{name}.{namespace}:{port}{path}.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceReference>,
    /// How strictly to decode the response, loose or strict. The JSON spelling
    /// responseUnMarshallMode is Metacontroller's.
    #[serde(
        rename = "responseUnMarshallMode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub response_unmarshall_mode: Option<ResponseUnmarshallMode>,
    /// ETag caching of responses, keyed by the parent (or decorator target) object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<WebhookEtagConfig>,
    /// CA certificate(s) that verify the hook server; replaces the system roots. Overrides the
    /// matching endpointConfigs entry.
    #[serde(rename = "caBundle", default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundle>,
    /// Client certificate for mutual TLS. Overrides the matching endpointConfigs entry.
    #[serde(rename = "clientTLS", default, skip_serializing_if = "Option::is_none")]
    pub client_tls: Option<ClientTls>,
    /// Authorization header credential. Mutually exclusive with basicAuth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// HTTP Basic credentials. Mutually exclusive with authorization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
}

impl Webhook {
    /// The URL to POST to: `url` if set, otherwise built from `service` and `path` as
    /// `{protocol}://{name}.{namespace}:{port}{path}` (port 80 and protocol http by default),
    /// which resolves through cluster DNS. `path` is this webhook's path, for the error.
    pub fn effective_url(&self, path: &str) -> Result<String, ApiError> {
        if let Some(url) = &self.url {
            return Ok(url.clone());
        }
        match (&self.service, &self.path) {
            (Some(service), Some(url_path)) => Ok(format!(
                "{}://{}.{}:{}{}",
                service
                    .protocol
                    .as_deref()
                    .unwrap_or(DEFAULT_SERVICE_PROTOCOL),
                service.name,
                service.namespace,
                service.port.unwrap_or(DEFAULT_SERVICE_PORT),
                url_path
            )),
            _ => Err(ApiError::WebhookUrl {
                path: path.to_string(),
            }),
        }
    }

    /// The per-request timeout. Unset, zero and negative values give
    /// [`DEFAULT_WEBHOOK_TIMEOUT`], as in Metacontroller; text that is not a Go duration is an
    /// error naming `{path}.timeout`.
    pub fn timeout(&self, path: &str) -> Result<Duration, ApiError> {
        let Some(text) = &self.timeout else {
            return Ok(DEFAULT_WEBHOOK_TIMEOUT);
        };
        let invalid = |error| ApiError::Duration {
            path: format!("{path}.timeout"),
            value: text.clone(),
            error,
        };
        let (negative, duration) = parse_signed_duration(text).map_err(invalid)?;
        if negative || duration.is_zero() {
            Ok(DEFAULT_WEBHOOK_TIMEOUT)
        } else {
            Ok(duration)
        }
    }

    /// The response decoding mode: the explicit one, or Metacontroller's default for `version`.
    pub fn unmarshall_mode(&self, version: HookVersion) -> ResponseUnmarshallMode {
        self.response_unmarshall_mode.unwrap_or(match version {
            HookVersion::V1 => ResponseUnmarshallMode::Loose,
            HookVersion::V2 => ResponseUnmarshallMode::Strict,
        })
    }

    /// The effective URL, parsed and checked: it must be an absolute `http` or `https` URL
    /// with a host. The error names the field the URL came from (`{path}.url`, or
    /// `{path}.service` for a built one), so a typo stops the controller at start instead of
    /// failing every sync.
    pub fn parsed_url(&self, path: &str) -> Result<url::Url, ApiError> {
        let text = self.effective_url(path)?;
        let field = if self.url.is_some() {
            format!("{path}.url")
        } else {
            format!("{path}.service")
        };
        let invalid = |message: String| ApiError::Invalid {
            path: field.clone(),
            message,
        };
        let parsed = url::Url::parse(&text)
            .map_err(|e| invalid(format!("{text:?} is not a valid URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "{text:?} has scheme {:?}; only http and https are supported",
                parsed.scheme()
            )));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid(format!("{text:?} has no host")));
        }
        Ok(parsed)
    }

    /// Whether the webhook sets any connection setting itself. If it does, these settings
    /// are used as they are and `spec.endpointConfigs` is ignored for it (no field merge).
    pub fn has_connection_settings(&self) -> bool {
        self.ca_bundle.is_some()
            || self.client_tls.is_some()
            || self.authorization.is_some()
            || self.basic_auth.is_some()
    }

    /// Checks the URL, the timeout and the connection settings; `path` prefixes errors.
    pub fn validate(&self, path: &str) -> Result<(), ApiError> {
        self.parsed_url(path)?;
        self.timeout(path)?;
        validate_connection(
            path,
            self.ca_bundle.as_ref(),
            self.authorization.as_ref(),
            self.basic_auth.as_ref(),
        )
    }
}

/// The TLS/auth rules shared by webhooks and endpointConfigs entries.
fn validate_connection(
    path: &str,
    ca_bundle: Option<&CaBundle>,
    authorization: Option<&Authorization>,
    basic_auth: Option<&BasicAuth>,
) -> Result<(), ApiError> {
    if let Some(ca_bundle) = ca_bundle {
        ca_bundle.source(&format!("{path}.caBundle"))?;
    }
    if authorization.is_some() && basic_auth.is_some() {
        return Err(ApiError::Invalid {
            path: path.to_string(),
            message: "authorization and basicAuth are mutually exclusive".to_string(),
        });
    }
    if let Some(authorization) = authorization
        && authorization.scheme().eq_ignore_ascii_case("basic")
    {
        return Err(ApiError::Invalid {
            path: format!("{path}.authorization.type"),
            message: "type Basic is not supported, use basicAuth instead".to_string(),
        });
    }
    Ok(())
}

/// A Kubernetes Service that serves a webhook.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceReference {
    /// Service name.
    pub name: String,
    /// Service namespace.
    pub namespace: String,
    /// Service port, default 80.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// URL scheme, default "http".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// How strictly webhook responses are decoded: loose ignores unknown and duplicate fields,
/// strict rejects them. Default loose for hook version v1, strict for v2.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ResponseUnmarshallMode {
    /// Unknown and duplicate fields are ignored (logged).
    Loose,
    /// Unknown and duplicate fields are errors.
    Strict,
}

/// Cache lifetime used when `etag.cacheTimeoutSeconds` is unset, zero or negative.
pub const DEFAULT_ETAG_CACHE_TIMEOUT: Duration = Duration::from_secs(60);
/// Sweep interval used when `etag.cacheCleanupSeconds` is unset, zero or negative.
pub const DEFAULT_ETAG_CACHE_CLEANUP: Duration = Duration::from_secs(300);

/// Webhook response caching by ETag, keyed by the parent (or decorator target) object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEtagConfig {
    /// Cache 200 responses that carry an ETag, send If-None-Match with the cached tag, and
    /// take a 304 or 412 answer to mean "the cached body". Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How long a cached response stays usable, in seconds. Default 60; zero or negative
    /// also mean 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_timeout_seconds: Option<i32>,
    /// Expired entries are removed at most this often, in seconds. Default 300; zero or
    /// negative also mean 300. Either field may be set without the other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_cleanup_seconds: Option<i32>,
}

impl WebhookEtagConfig {
    /// Whether caching is on.
    pub fn is_enabled(&self) -> bool {
        self.enabled == Some(true)
    }

    /// How long an entry stays usable ([`DEFAULT_ETAG_CACHE_TIMEOUT`] unless positive).
    pub fn cache_timeout(&self) -> Duration {
        positive_seconds(self.cache_timeout_seconds).unwrap_or(DEFAULT_ETAG_CACHE_TIMEOUT)
    }

    /// The minimum time between sweeps of expired entries ([`DEFAULT_ETAG_CACHE_CLEANUP`]
    /// unless positive).
    pub fn cache_cleanup(&self) -> Duration {
        positive_seconds(self.cache_cleanup_seconds).unwrap_or(DEFAULT_ETAG_CACHE_CLEANUP)
    }
}

/// `Some(seconds)` for a positive number of seconds.
fn positive_seconds(seconds: Option<i32>) -> Option<Duration> {
    let seconds = u64::try_from(seconds?).ok()?;
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// Where the CA bundle comes from: exactly one of inline, secretRef, configMapRef. The
/// certificates replace the system roots for that hook (TLS 1.2 or later). A Secret or
/// ConfigMap is read once, when the controller starts; changing the controller's spec
/// restarts it and reads them again.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.inline) ? 1 : 0) + (has(self.secretRef) ? 1 : 0) + (has(self.configMapRef) ? 1 : 0) == 1",
    "message": "exactly one of inline, secretRef, configMapRef must be set"
}]))]
pub struct CaBundle {
    /// PEM-encoded CA certificate(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    /// A Secret key holding PEM-encoded CA certificate(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<ResourceKeyRef>,
    /// A ConfigMap key holding PEM-encoded CA certificate(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ResourceKeyRef>,
}

/// The source a [`CaBundle`] selects.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CaBundleSource<'a> {
    /// PEM text in the spec.
    Inline(&'a str),
    /// A Secret key.
    Secret(&'a ResourceKeyRef),
    /// A ConfigMap key.
    ConfigMap(&'a ResourceKeyRef),
}

impl CaBundle {
    /// The single configured source; `path` is this object's path and prefixes the error.
    pub fn source(&self, path: &str) -> Result<CaBundleSource<'_>, ApiError> {
        let set = [
            self.inline.is_some(),
            self.secret_ref.is_some(),
            self.config_map_ref.is_some(),
        ];
        const NAMES: [&str; 3] = ["inline", "secretRef", "configMapRef"];
        exactly_one(path, &NAMES, &set)?;
        match (&self.inline, &self.secret_ref, &self.config_map_ref) {
            (Some(pem), _, _) => Ok(CaBundleSource::Inline(pem)),
            (_, Some(secret), _) => Ok(CaBundleSource::Secret(secret)),
            (_, _, Some(config_map)) => Ok(CaBundleSource::ConfigMap(config_map)),
            (None, None, None) => Err(one_of_error(path, &NAMES, &[])),
        }
    }
}

/// A key in a Secret or ConfigMap; the key defaults to "ca.crt".
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceKeyRef {
    /// Name of the Secret or ConfigMap.
    pub name: String,
    /// Namespace of the Secret or ConfigMap.
    pub namespace: String,
    /// Key within the data map, default "ca.crt".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "ca.crt"))]
    pub key: Option<String>,
}

impl ResourceKeyRef {
    /// The key, or "ca.crt" when unset.
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or("ca.crt")
    }
}

/// A Secret, by name and namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    pub name: String,
    /// Namespace of the Secret.
    pub namespace: String,
}

/// One key of a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Namespace of the Secret.
    pub namespace: String,
    /// Key within the Secret's data.
    pub key: String,
}

/// Client certificate and key for mutual TLS, read from one Secret (PEM) when the controller
/// starts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientTls {
    /// The Secret holding the certificate and key.
    pub secret_ref: SecretRef,
    /// Key of the PEM certificate, default "tls.crt".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "tls.crt"))]
    pub cert_key: Option<String>,
    /// Key of the PEM private key, default "tls.key".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "tls.key"))]
    pub private_key_key: Option<String>,
}

impl ClientTls {
    /// The certificate's key, or "tls.crt".
    pub fn cert_key(&self) -> &str {
        self.cert_key.as_deref().unwrap_or("tls.crt")
    }

    /// The private key's key, or "tls.key".
    pub fn private_key_key(&self) -> &str {
        self.private_key_key.as_deref().unwrap_or("tls.key")
    }
}

/// An Authorization header: `"<type> <secret value>"`, the value trimmed of surrounding
/// whitespace (Secrets written from files often end in a newline). Read once when the
/// controller starts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// Header scheme, default "Bearer". "Basic" is rejected: use basicAuth.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Bearer"))]
    pub type_: Option<String>,
    /// The Secret key holding the credential.
    pub secret_ref: SecretKeyRef,
}

impl Authorization {
    /// The header scheme, or "Bearer".
    pub fn scheme(&self) -> &str {
        self.type_.as_deref().unwrap_or("Bearer")
    }
}

/// HTTP Basic credentials, read from one Secret when the controller starts. Both values are
/// trimmed; a username containing ':' is rejected (it cannot be told from the separator).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// The Secret holding username and password.
    pub secret_ref: SecretRef,
    /// Key of the username, default "username".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "username"))]
    pub username_key: Option<String>,
    /// Key of the password, default "password".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "password"))]
    pub password_key: Option<String>,
}

impl BasicAuth {
    /// The username's key, or "username".
    pub fn username_key(&self) -> &str {
        self.username_key.as_deref().unwrap_or("username")
    }

    /// The password's key, or "password".
    pub fn password_key(&self) -> &str {
        self.password_key.as_deref().unwrap_or("password")
    }
}

/// Connection defaults for every webhook whose URL host matches `host`, so TLS and auth
/// settings are written once per hook server rather than once per hook.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.authorization) && has(self.basicAuth))",
    "message": "authorization and basicAuth are mutually exclusive"
}]))]
pub struct EndpointConfig {
    /// Host or host:port matched case-insensitively against webhook URLs (":443" for https
    /// and ":80" for http match no port).
    pub host: String,
    /// CA certificate(s) that verify the hook server.
    #[serde(rename = "caBundle", default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundle>,
    /// Client certificate for mutual TLS.
    #[serde(rename = "clientTLS", default, skip_serializing_if = "Option::is_none")]
    pub client_tls: Option<ClientTls>,
    /// Authorization header credential. Mutually exclusive with basicAuth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// HTTP Basic credentials. Mutually exclusive with authorization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
}

impl EndpointConfig {
    /// Whether this entry applies to `url`: hosts compare case-insensitively, and a port that
    /// is the scheme's default (443 for https, 80 for http) is the same as no port, on either
    /// side. A host written without a port matches only the default port.
    pub fn matches(&self, url: &url::Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let default_port = match url.scheme() {
            "https" => Some(443),
            "http" => Some(80),
            _ => None,
        };
        let wanted = normalize_authority(&self.host, default_port);
        let actual = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        wanted == normalize_authority(&actual, default_port)
    }

    /// The first entry of `configs` that [matches](Self::matches) `url`, with its index.
    pub fn find<'a>(configs: &'a [EndpointConfig], url: &url::Url) -> Option<(usize, &'a Self)> {
        configs.iter().enumerate().find(|(_, c)| c.matches(url))
    }

    /// Checks the TLS/auth one-of rules; `path` (e.g. `spec.endpointConfigs[0]`) prefixes errors.
    pub fn validate(&self, path: &str) -> Result<(), ApiError> {
        validate_connection(
            path,
            self.ca_bundle.as_ref(),
            self.authorization.as_ref(),
            self.basic_auth.as_ref(),
        )
    }
}

/// `host[:port]` lower-cased, trimmed, with a trailing `:<default_port>` removed.
fn normalize_authority(authority: &str, default_port: Option<u16>) -> String {
    let lower = authority.trim().to_ascii_lowercase();
    if let Some(port) = default_port {
        let suffix = format!(":{port}");
        if let Some(host) = lower.strip_suffix(&suffix)
            && !host.is_empty()
            && !host.ends_with(':')
        {
            return host.to_string();
        }
    }
    lower
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook_url(url: &str) -> Webhook {
        Webhook {
            url: Some(url.to_string()),
            ..Webhook::default()
        }
    }

    fn jsonnet_inline(code: &str) -> JsonnetHook {
        JsonnetHook {
            source: Some(code.to_string()),
            ..JsonnetHook::default()
        }
    }

    fn tera_inline(template: &str) -> TeraHook {
        TeraHook {
            template: Some(template.to_string()),
            ..TeraHook::default()
        }
    }

    fn config_map_ref() -> ConfigMapKeyRef {
        ConfigMapKeyRef {
            namespace: "ns".to_string(),
            name: "hooks".to_string(),
            key: "sync.jsonnet".to_string(),
        }
    }

    fn error_text<T: std::fmt::Debug>(result: Result<T, ApiError>) -> String {
        match result {
            Ok(value) => panic!("expected an error, got {value:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn backend_selects_the_single_backend() {
        let webhook = Hook {
            webhook: Some(webhook_url("http://x/sync")),
            ..Hook::default()
        };
        assert!(matches!(
            webhook.backend("spec.hooks.sync"),
            Ok(HookBackend::Webhook(w)) if w.url.as_deref() == Some("http://x/sync")
        ));
        let jsonnet = Hook {
            jsonnet: Some(jsonnet_inline("{}")),
            ..Hook::default()
        };
        assert!(matches!(jsonnet.backend("p"), Ok(HookBackend::Jsonnet(_))));
        let tera = Hook {
            tera: Some(tera_inline("children: []")),
            ..Hook::default()
        };
        assert!(matches!(tera.backend("p"), Ok(HookBackend::Tera(_))));
    }

    #[test]
    fn backend_errors_name_the_hook_and_what_was_found() {
        let two = Hook {
            webhook: Some(webhook_url("http://x")),
            jsonnet: Some(jsonnet_inline("{}")),
            ..Hook::default()
        };
        assert_eq!(
            error_text(two.backend("spec.hooks.sync")),
            "spec.hooks.sync: exactly one of webhook, jsonnet, tera must be set, found webhook and jsonnet"
        );
        assert_eq!(
            error_text(Hook::default().backend("spec.hooks.finalize")),
            "spec.hooks.finalize: exactly one of webhook, jsonnet, tera must be set, found none"
        );
        let three = Hook {
            webhook: Some(webhook_url("http://x")),
            jsonnet: Some(jsonnet_inline("{}")),
            tera: Some(tera_inline("")),
            version: Some(HookVersion::V2),
        };
        assert_eq!(
            error_text(three.backend("spec.hooks.customize")),
            "spec.hooks.customize: exactly one of webhook, jsonnet, tera must be set, found webhook, jsonnet and tera"
        );
    }

    #[test]
    fn jsonnet_and_tera_need_exactly_one_source() {
        let both = JsonnetHook {
            source: Some("{}".to_string()),
            file: Some("/hooks/sync.jsonnet".to_string()),
            ..JsonnetHook::default()
        };
        assert_eq!(
            error_text(both.source("spec.hooks.sync.jsonnet")),
            "spec.hooks.sync.jsonnet: exactly one of source, file, configMapRef must be set, found source and file"
        );
        let none = JsonnetHook {
            jpath: vec!["/lib".to_string()],
            ..JsonnetHook::default()
        };
        assert_eq!(
            error_text(none.source("spec.hooks.sync.jsonnet")),
            "spec.hooks.sync.jsonnet: exactly one of source, file, configMapRef must be set, found none"
        );
        let tera = TeraHook {
            file: Some("/t.tera".to_string()),
            config_map_ref: Some(config_map_ref()),
            ..TeraHook::default()
        };
        assert_eq!(
            error_text(tera.source("spec.hooks.sync.tera")),
            "spec.hooks.sync.tera: exactly one of template, file, configMapRef must be set, found file and configMapRef"
        );

        assert_eq!(
            jsonnet_inline("{}").source("p").ok(),
            Some(HookSource::Inline("{}"))
        );
        let reference = config_map_ref();
        let from_config_map = TeraHook {
            config_map_ref: Some(reference.clone()),
            ..TeraHook::default()
        };
        assert_eq!(
            from_config_map.source("p").ok(),
            Some(HookSource::ConfigMap(&reference))
        );
    }

    #[test]
    fn hook_validate_reports_nested_paths() {
        let hook = Hook {
            tera: Some(TeraHook::default()),
            ..Hook::default()
        };
        assert_eq!(
            error_text(hook.validate("spec.hooks.sync")),
            "spec.hooks.sync.tera: exactly one of template, file, configMapRef must be set, found none"
        );
        let hook = Hook {
            webhook: Some(Webhook {
                url: Some("http://x".to_string()),
                timeout: Some("ten seconds".to_string()),
                ..Webhook::default()
            }),
            ..Hook::default()
        };
        assert_eq!(
            error_text(hook.validate("spec.hooks.sync")),
            "spec.hooks.sync.webhook.timeout: invalid duration \"ten seconds\": expected a number at byte 0"
        );
        let hook = Hook {
            webhook: Some(Webhook {
                url: Some("http://x".to_string()),
                ca_bundle: Some(CaBundle::default()),
                ..Webhook::default()
            }),
            ..Hook::default()
        };
        assert_eq!(
            error_text(hook.validate("spec.hooks.sync")),
            "spec.hooks.sync.webhook.caBundle: exactly one of inline, secretRef, configMapRef must be set, found none"
        );
    }

    #[test]
    fn hook_version_defaults_to_v1() {
        assert_eq!(Hook::default().version(), HookVersion::V1);
        let v2 = Hook {
            version: Some(HookVersion::V2),
            ..Hook::default()
        };
        assert_eq!(v2.version(), HookVersion::V2);
    }
    #[test]
    fn webhook_timeout_defaults_like_metacontroller() {
        let with = |timeout: Option<&str>| Webhook {
            url: Some("http://x".to_string()),
            timeout: timeout.map(str::to_string),
            ..Webhook::default()
        };
        assert_eq!(with(None).timeout("w").ok(), Some(DEFAULT_WEBHOOK_TIMEOUT));
        assert_eq!(
            with(Some("0s")).timeout("w").ok(),
            Some(DEFAULT_WEBHOOK_TIMEOUT)
        );
        assert_eq!(
            with(Some("-1s")).timeout("w").ok(),
            Some(DEFAULT_WEBHOOK_TIMEOUT)
        );
        assert_eq!(
            with(Some("2.5s")).timeout("w").ok(),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(
            error_text(with(Some("10x")).timeout("spec.hooks.sync.webhook")),
            "spec.hooks.sync.webhook.timeout: invalid duration \"10x\": unknown unit \"x\" (units: ns, us, ms, s, m, h)"
        );
    }

    #[test]
    fn webhook_url_prefers_url_then_builds_from_service() {
        let service = ServiceReference {
            name: "catset".to_string(),
            namespace: "metacontroller".to_string(),
            port: None,
            protocol: None,
        };
        let mut webhook = Webhook {
            url: Some("https://hooks.example.com/sync".to_string()),
            service: Some(service.clone()),
            path: Some("/ignored".to_string()),
            ..Webhook::default()
        };
        assert_eq!(
            webhook.effective_url("w").ok().as_deref(),
            Some("https://hooks.example.com/sync")
        );
        webhook.url = None;
        webhook.path = Some("/sync".to_string());
        assert_eq!(
            webhook.effective_url("w").ok().as_deref(),
            Some("http://catset.metacontroller:80/sync")
        );
        webhook.service = Some(ServiceReference {
            port: Some(8443),
            protocol: Some("https".to_string()),
            ..service
        });
        assert_eq!(
            webhook.effective_url("w").ok().as_deref(),
            Some("https://catset.metacontroller:8443/sync")
        );
        webhook.path = None;
        assert_eq!(
            error_text(webhook.effective_url("spec.hooks.sync.webhook")),
            "spec.hooks.sync.webhook: webhook needs url, or both service and path"
        );
        assert_eq!(
            error_text(Webhook::default().effective_url("spec.hooks.finalize.webhook")),
            "spec.hooks.finalize.webhook: webhook needs url, or both service and path"
        );
    }

    #[test]
    fn urls_must_parse_and_be_http_or_https() {
        let text = |webhook: &Webhook| error_text(webhook.parsed_url("spec.hooks.sync.webhook"));
        assert!(
            text(&webhook_url("ht!tp://"))
                .starts_with("spec.hooks.sync.webhook.url: \"ht!tp://\" is not a valid URL: "),
            "{}",
            text(&webhook_url("ht!tp://"))
        );
        assert_eq!(
            text(&webhook_url("ftp://hooks/sync")),
            "spec.hooks.sync.webhook.url: \"ftp://hooks/sync\" has scheme \"ftp\"; only http and https are supported"
        );
        assert!(
            text(&webhook_url("http://"))
                .starts_with("spec.hooks.sync.webhook.url: \"http://\" is not a valid URL"),
            "{}",
            text(&webhook_url("http://"))
        );
        let service = Webhook {
            service: Some(ServiceReference {
                name: "hooks".to_string(),
                namespace: "ns".to_string(),
                port: None,
                protocol: Some("gopher".to_string()),
            }),
            path: Some("/sync".to_string()),
            ..Webhook::default()
        };
        assert_eq!(
            text(&service),
            "spec.hooks.sync.webhook.service: \"gopher://hooks.ns:80/sync\" has scheme \"gopher\"; only http and https are supported"
        );
        let hook = Hook {
            webhook: Some(webhook_url("ht!tp://")),
            ..Hook::default()
        };
        assert!(
            error_text(hook.validate("spec.hooks.sync"))
                .starts_with("spec.hooks.sync.webhook.url: \"ht!tp://\" is not a valid URL"),
            "validate shares the URL check"
        );
        let good = webhook_url("HTTPS://Hooks.Example.com:8443/sync");
        assert_eq!(
            good.parsed_url("w").map(|u| u.to_string()).ok().as_deref(),
            Some("https://hooks.example.com:8443/sync")
        );
    }

    #[test]
    fn endpoint_hosts_match_case_insensitively_with_default_ports() {
        let config = |host: &str| EndpointConfig {
            host: host.to_string(),
            ..EndpointConfig::default()
        };
        let url = |text: &str| url::Url::parse(text).expect("valid URL");
        let cases = [
            ("hooks.ns", "https://HOOKS.ns/sync", true),
            ("Hooks.NS", "http://hooks.ns/sync", true),
            ("hooks.ns:443", "https://hooks.ns/sync", true),
            ("hooks.ns", "https://hooks.ns:443/sync", true),
            ("hooks.ns:80", "http://hooks.ns/sync", true),
            ("hooks.ns:443", "http://hooks.ns/sync", false),
            ("hooks.ns:80", "https://hooks.ns/sync", false),
            ("hooks.ns", "https://hooks.ns:8443/sync", false),
            ("hooks.ns:8443", "https://hooks.ns:8443/sync", true),
            ("127.0.0.1:9443", "https://127.0.0.1:9443/sync", true),
            ("other.ns", "https://hooks.ns/sync", false),
            ("hooks", "https://hooks.ns/sync", false),
            ("[::1]:443", "https://[::1]/sync", true),
        ];
        for (host, target, expected) in cases {
            assert_eq!(
                config(host).matches(&url(target)),
                expected,
                "{host} vs {target}"
            );
        }
        let configs = [config("a"), config("B:8080"), config("b:8080")];
        assert_eq!(
            EndpointConfig::find(&configs, &url("http://b:8080/x")).map(|(i, _)| i),
            Some(1),
            "the first matching entry wins"
        );
        assert!(EndpointConfig::find(&configs, &url("http://c/x")).is_none());
    }

    #[test]
    fn etag_settings_default_independently() {
        let etag = |timeout, cleanup| WebhookEtagConfig {
            enabled: Some(true),
            cache_timeout_seconds: timeout,
            cache_cleanup_seconds: cleanup,
        };
        let only_timeout = etag(Some(5), None);
        assert_eq!(
            (only_timeout.cache_timeout(), only_timeout.cache_cleanup()),
            (Duration::from_secs(5), DEFAULT_ETAG_CACHE_CLEANUP)
        );
        let only_cleanup = etag(None, Some(7));
        assert_eq!(
            (only_cleanup.cache_timeout(), only_cleanup.cache_cleanup()),
            (DEFAULT_ETAG_CACHE_TIMEOUT, Duration::from_secs(7))
        );
        let silly = etag(Some(0), Some(-3));
        assert_eq!(
            (silly.cache_timeout(), silly.cache_cleanup()),
            (DEFAULT_ETAG_CACHE_TIMEOUT, DEFAULT_ETAG_CACHE_CLEANUP)
        );
        assert!(only_timeout.is_enabled());
        assert!(!WebhookEtagConfig::default().is_enabled());
    }

    #[test]
    fn unmarshall_mode_defaults_follow_the_hook_version() {
        let webhook = webhook_url("http://x");
        assert_eq!(
            webhook.unmarshall_mode(HookVersion::V1),
            ResponseUnmarshallMode::Loose
        );
        assert_eq!(
            webhook.unmarshall_mode(HookVersion::V2),
            ResponseUnmarshallMode::Strict
        );
        let strict = Webhook {
            response_unmarshall_mode: Some(ResponseUnmarshallMode::Strict),
            ..webhook
        };
        assert_eq!(
            strict.unmarshall_mode(HookVersion::V1),
            ResponseUnmarshallMode::Strict
        );
    }

    #[test]
    fn connection_settings_are_checked() {
        let secret = SecretRef {
            name: "s".to_string(),
            namespace: "ns".to_string(),
        };
        let authorization = Authorization {
            type_: None,
            secret_ref: SecretKeyRef {
                name: "s".to_string(),
                namespace: "ns".to_string(),
                key: "token".to_string(),
            },
        };
        assert_eq!(authorization.scheme(), "Bearer");
        let both = EndpointConfig {
            host: "hooks.ns".to_string(),
            authorization: Some(authorization.clone()),
            basic_auth: Some(BasicAuth {
                secret_ref: secret,
                username_key: None,
                password_key: None,
            }),
            ..EndpointConfig::default()
        };
        assert_eq!(
            error_text(both.validate("spec.endpointConfigs[0]")),
            "spec.endpointConfigs[0]: authorization and basicAuth are mutually exclusive"
        );
        let basic = Webhook {
            url: Some("http://x".to_string()),
            authorization: Some(Authorization {
                type_: Some("basic".to_string()),
                ..authorization
            }),
            ..Webhook::default()
        };
        assert_eq!(
            error_text(basic.validate("spec.hooks.sync.webhook")),
            "spec.hooks.sync.webhook.authorization.type: type Basic is not supported, use basicAuth instead"
        );
    }

    #[test]
    fn defaulted_keys_have_metacontroller_defaults() {
        let reference: ResourceKeyRef =
            serde_json::from_str(r#"{"name":"ca","namespace":"ns"}"#).expect("valid JSON");
        assert_eq!(reference.key(), "ca.crt");
        let tls: ClientTls = serde_json::from_str(r#"{"secretRef":{"name":"c","namespace":"ns"}}"#)
            .expect("valid JSON");
        assert_eq!(
            (tls.cert_key(), tls.private_key_key()),
            ("tls.crt", "tls.key")
        );
        let basic: BasicAuth =
            serde_json::from_str(r#"{"secretRef":{"name":"c","namespace":"ns"}}"#)
                .expect("valid JSON");
        assert_eq!(
            (basic.username_key(), basic.password_key()),
            ("username", "password")
        );
    }

    #[test]
    fn json_field_spellings_match_metacontroller() {
        let webhook: Webhook = serde_json::from_str(
            r#"{"url":"http://x","responseUnMarshallMode":"strict","caBundle":{"inline":"pem"},
                "clientTLS":{"secretRef":{"name":"c","namespace":"ns"}},
                "etag":{"enabled":true,"cacheTimeoutSeconds":60,"cacheCleanupSeconds":300}}"#,
        )
        .expect("valid webhook");
        assert_eq!(
            webhook.response_unmarshall_mode,
            Some(ResponseUnmarshallMode::Strict)
        );
        assert_eq!(
            webhook.ca_bundle.as_ref().and_then(|c| c.inline.as_deref()),
            Some("pem")
        );
        assert!(webhook.client_tls.is_some());
        assert_eq!(
            webhook.etag,
            Some(WebhookEtagConfig {
                enabled: Some(true),
                cache_timeout_seconds: Some(60),
                cache_cleanup_seconds: Some(300),
            })
        );
        let bad = serde_json::from_str::<Hook>(r#"{"version":"v3"}"#);
        assert!(bad.is_err(), "unknown hook version must be rejected");
    }
}
