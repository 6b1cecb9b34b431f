//! Metacontroller's webhook contract end to end on the real control plane: TLS with a CA
//! bundle (inline, Secret, ConfigMap), mutual TLS, Bearer and Basic credentials from Secrets,
//! `spec.endpointConfigs`, ETag caching, 429 backoff, the response size cap, and the start-up
//! checks that name the field at fault.
//!
//! Each test runs its own hook server on 127.0.0.1 (HTTPS with a CA and certificates made by the
//! test) and a CompositeController whose webhook returns one ConfigMap child per parent.

mod common;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

// ---------------------------------------------------------------------------------------------
// The shared engine harness (tests/common/harness.rs), with what these tests add to it.

trait WebhookHarness {
    async fn webhook_controller(&self, webhook: Value, extra: Value) -> String;
    async fn webhook_parent(&self, name: &str);
    async fn child(&self, parent: &str) -> ConfigMap;
    async fn has_child(&self, parent: &str) -> bool;
    async fn secret(&self, name: &str, data: &[(&str, &str)]);
    async fn config_map(&self, name: &str, data: &[(&str, &str)]);
}

impl WebhookHarness for Harness {
    /// Creates a CompositeController (name made unique) whose sync hook is `webhook`, owning
    /// ConfigMaps, for TestParents labelled for this test. Returns its name.
    async fn webhook_controller(&self, webhook: Value, extra: Value) -> String {
        let mut spec = json!({
            "generateSelector": true,
            "childResources": [{"apiVersion": "v1", "resource": "configmaps"}],
            "hooks": {"sync": {"webhook": webhook}},
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        self.controller("wh", spec).await
    }

    async fn webhook_parent(&self, name: &str) {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "test.kubelambda.io/v1",
            "kind": "TestParent",
            "metadata": {"name": name, "labels": {"kubelambda-test": self.label}},
            "spec": {"generation": 1},
        }))
        .expect("parent");
        Api::<DynamicObject>::namespaced_with(self.client.clone(), &self.ns, &common::parent_ar())
            .create(&PostParams::default(), &obj)
            .await
            .expect("create parent");
    }

    /// Waits for the child ConfigMap of parent `parent`.
    async fn child(&self, parent: &str) -> ConfigMap {
        let api: Api<ConfigMap> = self.api();
        let name = child_name(parent);
        wait_until(&format!("ConfigMap {name}"), || {
            let (api, name) = (api.clone(), name.clone());
            async move { api.get_opt(&name).await.ok().flatten() }
        })
        .await
    }

    async fn has_child(&self, parent: &str) -> bool {
        let api: Api<ConfigMap> = self.api();
        api.get_opt(&child_name(parent))
            .await
            .expect("get ConfigMap")
            .is_some()
    }

    /// A Secret in this test's namespace.
    async fn secret(&self, name: &str, data: &[(&str, &str)]) {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name},
            "stringData": data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        }))
        .expect("secret");
        self.api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .expect("create Secret");
    }

    async fn config_map(&self, name: &str, data: &[(&str, &str)]) {
        let config_map: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": name},
            "data": data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        }))
        .expect("config map");
        self.api::<ConfigMap>()
            .create(&PostParams::default(), &config_map)
            .await
            .expect("create ConfigMap");
    }
}

fn child_name(parent: &str) -> String {
    format!("{parent}-child")
}

// ---------------------------------------------------------------------------------------------
// Test PKI.

struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

struct Leaf {
    cert: String,
    key: String,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("key");
        Self {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).expect("CA"),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn leaf(&self, names: &[&str], usage: rcgen::ExtendedKeyUsagePurpose) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params.extended_key_usages = vec![usage];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn server(&self) -> Leaf {
        self.leaf(
            &["127.0.0.1", "localhost"],
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The hook server.

/// What the hook server does on a call.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// Answer with one ConfigMap child per parent.
    Children = 0,
    /// 429 without Retry-After.
    TooManyRequests = 1,
    /// A 20 MiB answer.
    Huge = 2,
}

#[derive(Default)]
struct HookState {
    /// The `Authorization` header the server requires, if any (else 401).
    authorization: Option<String>,
    /// Answer with an ETag over the request, and 304 when If-None-Match matches it.
    etag: bool,
    mode: AtomicU8,
    calls: AtomicUsize,
    unauthorized: AtomicUsize,
    if_none_match: AtomicUsize,
    not_modified: AtomicUsize,
}

impl HookState {
    fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            1 => Mode::TooManyRequests,
            2 => Mode::Huge,
            _ => Mode::Children,
        }
    }
}

async fn hook(State(state): State<Arc<HookState>>, headers: HeaderMap, body: Bytes) -> Response {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(expected) = &state.authorization
        && header("authorization") != Some(expected.as_str())
    {
        state.unauthorized.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::UNAUTHORIZED, "wrong or missing credentials").into_response();
    }
    match state.mode() {
        Mode::TooManyRequests => return StatusCode::TOO_MANY_REQUESTS.into_response(),
        Mode::Huge => {
            let mut huge = b"{\"pad\":\"".to_vec();
            huge.resize(20 << 20, b'x');
            huge.extend_from_slice(b"\"}");
            return ([("content-type", "application/json")], huge).into_response();
        }
        Mode::Children => {}
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let parent = request
        .pointer("/parent/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let children = request
        .pointer("/children/ConfigMap.v1")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len());
    let answer = json!({
        "children": [{
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": child_name(parent)},
            "data": {"parent": parent},
        }],
        "status": {"children": children},
        // Keep calling, so the ETag test sees repeated identical requests.
        "resyncAfterSeconds": if state.etag { 0.3 } else { 0.0 },
    });
    if !state.etag {
        return axum::Json(answer).into_response();
    }
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    let tag = format!("\"{:x}\"", hasher.finish());
    if let Some(sent) = header("if-none-match") {
        state.if_none_match.fetch_add(1, Ordering::SeqCst);
        if sent == tag {
            state.not_modified.fetch_add(1, Ordering::SeqCst);
            return StatusCode::NOT_MODIFIED.into_response();
        }
    }
    ([("etag", tag)], axum::Json(answer)).into_response()
}

struct HookServer {
    addr: SocketAddr,
    state: Arc<HookState>,
    /// Handshakes the server refused, with the reason.
    failed_handshakes: mpsc::UnboundedReceiver<String>,
}

impl HookServer {
    fn url(&self) -> String {
        format!("https://{}/sync", self.addr)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An HTTPS hook server with `server`'s certificate; with `client_ca`, it requires a client
/// certificate signed by that CA.
async fn https_hook(state: HookState, server: &Leaf, client_ca: Option<&TestCa>) -> HookServer {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(server.cert.as_bytes())
            .collect::<Result<_, _>>()
            .expect("chain");
    let key = PrivateKeyDer::from_pem_slice(server.key.as_bytes()).expect("key");
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.issuer.der().clone()).expect("root");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider(),
            )
            .build()
            .expect("verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(chain, key).expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let (streams, accepted) = mpsc::unbounded_channel();
    let (failures, failed_handshakes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = tcp.accept().await {
            let (acceptor, streams, failures) =
                (acceptor.clone(), streams.clone(), failures.clone());
            tokio::spawn(async move {
                match acceptor.accept(stream).await {
                    Ok(tls) => drop(streams.send((tls, peer))),
                    Err(e) => drop(failures.send(e.to_string())),
                }
            });
        }
    });
    let state = Arc::new(state);
    let app = Router::new()
        .route("/sync", post(hook))
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(TlsListener { accepted, addr }, app).await });
    HookServer {
        addr,
        state,
        failed_handshakes,
    }
}

/// Plain HTTP, for the tests about status codes and sizes.
async fn http_hook(state: HookState) -> (String, Arc<HookState>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = Arc::new(state);
    let app = Router::new()
        .route("/sync", post(hook))
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/sync"), state)
}

struct TlsListener {
    accepted: mpsc::UnboundedReceiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

// ---------------------------------------------------------------------------------------------
// TLS: CA bundles and client certificates.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_bundle_inline_verifies_the_hook_server() {
    let h = Harness::new("wh-ca-inline").await;
    let ca = TestCa::new("hooks CA");
    let server = https_hook(HookState::default(), &ca.server(), None).await;
    h.webhook_controller(
        json!({"url": server.url(), "caBundle": {"inline": ca.pem()}}),
        json!({}),
    )
    .await;
    h.webhook_parent("p1").await;
    let child = h.child("p1").await;
    assert_eq!(
        child.data.and_then(|d| d.get("parent").cloned()).as_deref(),
        Some("p1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_bundle_from_a_secret() {
    let h = Harness::new("wh-ca-secret").await;
    let ca = TestCa::new("hooks CA");
    let server = https_hook(HookState::default(), &ca.server(), None).await;
    h.secret("hook-ca", &[("ca.crt", &ca.pem())]).await;
    h.webhook_controller(
        json!({"url": server.url(), "caBundle": {"secretRef": {"name": "hook-ca", "namespace": h.ns}}}),
        json!({}),
    )
    .await;
    h.webhook_parent("p1").await;
    h.child("p1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_bundle_from_a_config_map_with_its_own_key() {
    let h = Harness::new("wh-ca-cm").await;
    let ca = TestCa::new("hooks CA");
    let server = https_hook(HookState::default(), &ca.server(), None).await;
    // A bundle of two CAs: the hook's is the second.
    let bundle = format!("{}{}", TestCa::new("unrelated CA").pem(), ca.pem());
    h.config_map("hook-ca", &[("bundle.pem", &bundle)]).await;
    h.webhook_controller(
        json!({"url": server.url(), "caBundle": {"configMapRef": {"name": "hook-ca", "namespace": h.ns, "key": "bundle.pem"}}}),
        json!({}),
    )
    .await;
    h.webhook_parent("p1").await;
    h.child("p1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_a_tls_error_event_and_no_child() {
    let h = Harness::new("wh-ca-wrong").await;
    let ca = TestCa::new("hooks CA");
    let mut server = https_hook(HookState::default(), &ca.server(), None).await;
    let other = TestCa::new("some other CA");
    h.webhook_controller(
        json!({"url": server.url(), "caBundle": {"inline": other.pem()}}),
        json!({}),
    )
    .await;
    h.webhook_parent("p1").await;
    let note = h
        .warning(
            "p1",
            "TLS handshake failed: invalid peer certificate: UnknownIssuer",
        )
        .await;
    assert!(note.contains(&server.url()), "{note}");
    assert!(
        server.failed_handshakes.recv().await.is_some(),
        "the server saw the rejected handshake"
    );
    assert_eq!(server.state.calls.load(Ordering::SeqCst), 0);
    assert!(!h.has_child("p1").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_presents_the_client_certificate_from_a_secret() {
    let h = Harness::new("wh-mtls").await;
    let ca = TestCa::new("hooks CA");
    let server = https_hook(HookState::default(), &ca.server(), Some(&ca)).await;
    let client = ca.leaf(&["kubelambda"], rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    h.secret(
        "hook-client",
        &[
            ("ca.crt", &ca.pem()),
            ("client.pem", &client.cert),
            ("client.key", &client.key),
        ],
    )
    .await;
    h.webhook_controller(
        json!({
            "url": server.url(),
            "caBundle": {"secretRef": {"name": "hook-client", "namespace": h.ns}},
            "clientTLS": {
                "secretRef": {"name": "hook-client", "namespace": h.ns},
                "certKey": "client.pem",
                "privateKeyKey": "client.key",
            },
        }),
        json!({}),
    )
    .await;
    h.webhook_parent("p1").await;
    h.child("p1").await;
}

// ---------------------------------------------------------------------------------------------
// Credentials.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_from_a_secret_is_sent_trimmed() {
    let h = Harness::new("wh-bearer").await;
    let ca = TestCa::new("hooks CA");
    let state = HookState {
        authorization: Some("Bearer s3cret".to_string()),
        ..HookState::default()
    };
    let server = https_hook(state, &ca.server(), None).await;
    h.secret("hook-token", &[("token", "s3cret\n")]).await;
    h.webhook_controller(
        json!({
            "url": server.url(),
            "caBundle": {"inline": ca.pem()},
            "authorization": {"secretRef": {"name": "hook-token", "namespace": h.ns, "key": "token"}},
        }),
        json!({}),
    )
    .await;
    h.webhook_parent("p1").await;
    h.child("p1").await;
    assert_eq!(server.state.unauthorized.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_bearer_token_gets_401_an_event_and_no_child() {
    let h = Harness::new("wh-bearer-wrong").await;
    let ca = TestCa::new("hooks CA");
    let state = HookState {
        authorization: Some("Bearer s3cret".to_string()),
        ..HookState::default()
    };
    let server = https_hook(state, &ca.server(), None).await;
    h.secret("hook-token", &[("token", "guess")]).await;
    h.webhook_controller(
        json!({
            "url": server.url(),
            "caBundle": {"inline": ca.pem()},
            "authorization": {"secretRef": {"name": "hook-token", "namespace": h.ns, "key": "token"}},
        }),
        json!({}),
    )
    .await;
    h.webhook_parent("p1").await;
    let note = h.warning("p1", "unsupported status code 401").await;
    assert!(note.contains("wrong or missing credentials"), "{note}");
    assert!(server.state.unauthorized.load(Ordering::SeqCst) > 0);
    assert!(!h.has_child("p1").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_a_secret() {
    let h = Harness::new("wh-basic").await;
    let ca = TestCa::new("hooks CA");
    let state = HookState {
        authorization: Some(basic("kubelambda", "pa:ss")),
        ..HookState::default()
    };
    let server = https_hook(state, &ca.server(), None).await;
    h.secret(
        "hook-basic",
        &[("user", "kubelambda\n"), ("password", "pa:ss")],
    )
    .await;
    h.webhook_controller(
        json!({
            "url": server.url(),
            "caBundle": {"inline": ca.pem()},
            "basicAuth": {"secretRef": {"name": "hook-basic", "namespace": h.ns}, "usernameKey": "user"},
        }),
        json!({}),
    )
    .await;
    h.webhook_parent("p1").await;
    h.child("p1").await;
    assert_eq!(server.state.unauthorized.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_configs_supply_the_ca_and_credentials_for_their_host() {
    let h = Harness::new("wh-endpoints").await;
    let ca = TestCa::new("hooks CA");
    let state = HookState {
        authorization: Some("Token from-endpoint-config".to_string()),
        ..HookState::default()
    };
    let server = https_hook(state, &ca.server(), None).await;
    h.secret(
        "endpoint",
        &[("ca.crt", &ca.pem()), ("token", "from-endpoint-config")],
    )
    .await;
    let endpoint = json!({
        "caBundle": {"secretRef": {"name": "endpoint", "namespace": h.ns}},
        "authorization": {"type": "Token", "secretRef": {"name": "endpoint", "namespace": h.ns, "key": "token"}},
    });
    let mut matching = endpoint.clone();
    matching["host"] = json!(format!("127.0.0.1:{}", server.addr.port()));
    // An entry for another port comes first and must not be used (it has no CA).
    let other = json!({"host": "127.0.0.1:1", "authorization": {"secretRef": {"name": "nope", "namespace": h.ns, "key": "x"}}});
    h.webhook_controller(
        json!({"url": server.url()}),
        json!({"endpointConfigs": [other, matching]}),
    )
    .await;
    h.webhook_parent("p1").await;
    h.child("p1").await;
    assert_eq!(server.state.unauthorized.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_stops_the_controller_naming_the_field_and_the_secret() {
    let h = Harness::new("wh-no-secret").await;
    let name = h
        .webhook_controller(
            json!({
                "url": "https://127.0.0.1:1/sync",
                "authorization": {"secretRef": {"name": "absent", "namespace": h.ns, "key": "token"}},
            }),
            json!({}),
        )
        .await;
    let note = h
        .warning_in(
            "default",
            &name,
            "spec.hooks.sync.webhook.authorization.secretRef",
        )
        .await;
    assert!(
        note.contains(&format!("Secret {}/absent not found", h.ns)),
        "{note}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unparsable_url_is_refused_when_the_controller_starts() {
    let h = Harness::new("wh-bad-url").await;
    let name = h
        .webhook_controller(json!({"url": "ht!tp://"}), json!({}))
        .await;
    let note = h
        .warning_in(
            "default",
            &name,
            "spec.hooks.sync.webhook.url: \"ht!tp://\" is not a valid URL",
        )
        .await;
    assert!(note.starts_with("Cannot start controller: "), "{note}");
}

// ---------------------------------------------------------------------------------------------
// ETag, 429, size cap.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etag_304_answers_reuse_the_cached_response() {
    let h = Harness::new("wh-etag").await;
    let ca = TestCa::new("hooks CA");
    let state = HookState {
        etag: true,
        ..HookState::default()
    };
    let server = https_hook(state, &ca.server(), None).await;
    h.webhook_controller(
        json!({
            "url": server.url(),
            "caBundle": {"inline": ca.pem()},
            "etag": {"enabled": true, "cacheTimeoutSeconds": 60},
        }),
        json!({}),
    )
    .await;
    h.webhook_parent("p1").await;
    h.child("p1").await;
    let state = server.state.clone();
    wait_until("the hook server answering 304 twice", || {
        let state = state.clone();
        async move { (state.not_modified.load(Ordering::SeqCst) >= 2).then_some(()) }
    })
    .await;
    assert!(state.if_none_match.load(Ordering::SeqCst) >= 2);
    // The cached answer still drives the parent: status converged, child kept.
    let parents = Api::<DynamicObject>::namespaced_with(h.client.clone(), &h.ns, &parent_ar());
    wait_until("status.children == 1", || {
        let parents = parents.clone();
        async move {
            let parent = parents.get("p1").await.ok()?;
            (parent.data.pointer("/status/children") == Some(&json!(1))).then_some(())
        }
    })
    .await;
    assert!(h.has_child("p1").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_without_retry_after_backs_off() {
    let h = Harness::new("wh-429").await;
    let (url, state) = http_hook(HookState::default()).await;
    state.set_mode(Mode::TooManyRequests);
    h.webhook_controller(json!({"url": url}), json!({})).await;
    h.webhook_parent("p1").await;
    h.warning("p1", "429 Too Many Requests").await;
    let before = state.calls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let calls = state.calls.load(Ordering::SeqCst) - before;
    // Requeued at once, this was ~550 calls; with per-key exponential backoff it is a handful.
    assert!(calls < 30, "{calls} calls in 5 s after a bare 429");
    assert!(!h.has_child("p1").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_response_is_refused_naming_the_limit_and_children_stay() {
    let h = Harness::new("wh-huge").await;
    let (url, state) = http_hook(HookState::default()).await;
    h.webhook_controller(json!({"url": url}), json!({})).await;
    h.webhook_parent("p1").await;
    let child = h.child("p1").await;
    state.set_mode(Mode::Huge);
    h.patch_parent("p1", json!({"generation": 2})).await;
    let note = h
        .warning(
            "p1",
            "response body exceeds the 16 MiB limit (--max-output)",
        )
        .await;
    assert!(note.contains(&url), "{note}");
    let still = h.child("p1").await;
    assert_eq!(
        still.uid(),
        child.uid(),
        "the child was neither deleted nor replaced"
    );
}
