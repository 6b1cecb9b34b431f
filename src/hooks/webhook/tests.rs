//! The webhook client against real HTTP(S) servers on loopback: status handling, the ETag
//! cache, the size cap, and transport errors that name their cause.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

use super::*;
use crate::hooks::HookError;
use crate::hooks::webhook::tls::TlsSettings;

fn parent_request(name: &str) -> Value {
    json!({"parent": {"kind": "TestParent", "metadata": {"namespace": "ns", "name": name}}, "children": {}})
}

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn webhook(addr: SocketAddr, tweak: impl FnOnce(&mut WebhookConfig)) -> Webhook {
    let mut config = WebhookConfig::new(format!("http://{addr}/sync"));
    tweak(&mut config);
    Webhook::new(reqwest::Client::new(), config)
}

fn error_text<T: std::fmt::Debug>(result: Result<T, WebhookError>) -> String {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn retry_after_accepts_seconds_dates_and_junk() {
    assert_eq!(parse_retry_after("7"), Duration::from_secs(7));
    assert_eq!(parse_retry_after("soon"), Duration::ZERO);
    let later = std::time::SystemTime::now() + Duration::from_secs(120);
    let secs = parse_retry_after(&httpdate::fmt_http_date(later)).as_secs();
    assert!((100..=120).contains(&secs), "{secs}");
}

#[tokio::test]
async fn status_429_asks_for_a_delay_only_when_it_is_positive() {
    let app = Router::new()
        .route("/sync", post(|| async { StatusCode::TOO_MANY_REQUESTS }))
        .route(
            "/zero",
            post(|| async { (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")]) }),
        )
        .route(
            "/later",
            post(|| async { (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "3")]) }),
        );
    let addr = serve(app).await;
    let call = |path: &'static str| async move {
        let hook = Webhook::new(
            reqwest::Client::new(),
            WebhookConfig::new(format!("http://{addr}{path}")),
        );
        HookError::from(
            hook.call(&parent_request("p"))
                .await
                .expect_err("429 is an error"),
        )
    };
    let bare = call("/sync").await;
    assert_eq!(bare.retry_after(), None, "no Retry-After: engine backoff");
    assert_eq!(
        bare.to_string(),
        format!(
            "webhook http://{addr}/sync: 429 Too Many Requests, without a usable Retry-After; backing off"
        )
    );
    assert_eq!(call("/zero").await.retry_after(), None, "Retry-After: 0");
    let later = call("/later").await;
    assert_eq!(later.retry_after(), Some(Duration::from_secs(3)));
    assert!(later.to_string().ends_with("retry after 3s"), "{later}");
}

#[tokio::test]
async fn other_statuses_quote_the_start_of_the_body() {
    let app = Router::new().route(
        "/sync",
        post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "x".repeat(100_000)) }),
    );
    let addr = serve(app).await;
    let text = error_text(webhook(addr, |_| {}).call(&parent_request("p")).await);
    let prefix = format!("webhook http://{addr}/sync: unsupported status code 500 body: ");
    assert!(text.starts_with(&prefix), "{text}");
    assert_eq!(text.len() - prefix.len(), ERROR_BODY_QUOTE_BYTES);
}

#[tokio::test]
async fn the_authorization_header_is_sent() {
    let app = Router::new().route(
        "/sync",
        post(|headers: HeaderMap| async move {
            let seen = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_string();
            axum::Json(json!({ "seen": seen }))
        }),
    );
    let addr = serve(app).await;
    let header = auth::authorization_header("Bearer", b"t0ken\n").expect("header");
    let hook = webhook(addr, |c| c.authorization = Some(header));
    let answer = hook.call(&parent_request("p")).await.expect("200");
    assert_eq!(answer, json!({"seen": "Bearer t0ken"}));
}

/// An ETag server: answers 304 when If-None-Match matches the current tag, else 200 with the
/// tag. Counts the 304s.
fn etag_app(not_modified: Arc<AtomicUsize>, status_for_match: StatusCode) -> Router {
    Router::new().route(
        "/sync",
        post(move |headers: HeaderMap| {
            let not_modified = not_modified.clone();
            async move {
                if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some("\"v1\"") {
                    not_modified.fetch_add(1, Ordering::SeqCst);
                    return status_for_match.into_response();
                }
                (
                    [("etag", "\"v1\"")],
                    axum::Json(json!({"status": {"n": 1}})),
                )
                    .into_response()
            }
        }),
    )
}

#[tokio::test]
async fn etag_answers_reuse_the_cached_body() {
    for status in [StatusCode::NOT_MODIFIED, StatusCode::PRECONDITION_FAILED] {
        let hits = Arc::new(AtomicUsize::new(0));
        let addr = serve(etag_app(hits.clone(), status)).await;
        let hook = webhook(addr, |c| {
            c.etag = Some(EtagSettings {
                timeout: Duration::from_secs(60),
                cleanup: Duration::from_secs(300),
            });
        });
        let expected = json!({"status": {"n": 1}});
        assert_eq!(
            hook.call(&parent_request("p")).await.ok(),
            Some(expected.clone())
        );
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "first call has no tag to send"
        );
        assert_eq!(
            hook.call(&parent_request("p")).await.ok(),
            Some(expected.clone())
        );
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "second call answered {status}"
        );
        // Another parent has no entry yet, so it sends no If-None-Match.
        assert_eq!(hook.call(&parent_request("q")).await.ok(), Some(expected));
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }
}

#[tokio::test]
async fn without_etag_caching_304_is_an_error() {
    let app = Router::new().route("/sync", post(|| async { StatusCode::NOT_MODIFIED }));
    let addr = serve(app).await;
    let text = error_text(webhook(addr, |_| {}).call(&parent_request("p")).await);
    assert!(text.contains("unsupported status code 304"), "{text}");
    // With caching on but nothing cached, If-None-Match is not sent, so 304 is still wrong.
    let hook = webhook(addr, |c| {
        c.etag = Some(EtagSettings {
            timeout: Duration::from_secs(60),
            cleanup: Duration::from_secs(300),
        });
    });
    let text = error_text(hook.call(&parent_request("p")).await);
    assert!(text.contains("unsupported status code 304"), "{text}");
}

/// A body of `size` bytes sent in 64 KiB chunks without Content-Length; `sent` counts what the
/// client actually pulled.
fn streamed_body(size: usize, sent: Arc<AtomicUsize>) -> Body {
    let chunk = bytes_of(64 << 10);
    let stream = futures::stream::iter((0..size / chunk.len()).map(move |_| {
        sent.fetch_add(chunk.len(), Ordering::SeqCst);
        Ok::<_, std::io::Error>(chunk.clone())
    }));
    Body::from_stream(stream)
}

fn bytes_of(n: usize) -> axum::body::Bytes {
    axum::body::Bytes::from(vec![b' '; n])
}

#[tokio::test]
async fn oversized_bodies_are_cut_off_at_the_cap() {
    let sent = Arc::new(AtomicUsize::new(0));
    let streamed = sent.clone();
    let app = Router::new()
        .route(
            "/sync",
            post(move || {
                let sent = streamed.clone();
                async move { Response::new(streamed_body(20 << 20, sent)) }
            }),
        )
        .route(
            "/announced",
            post(|| async { ([("content-type", "application/json")], bytes_of(2 << 20)) }),
        );
    let addr = serve(app).await;
    let limit = 1 << 20;
    let hook = webhook(addr, |c| c.max_response_bytes = limit);
    let text = error_text(hook.call(&parent_request("p")).await);
    assert_eq!(
        text,
        format!("webhook http://{addr}/sync: response body exceeds the 1 MiB limit (--max-output)")
    );
    // The server may have buffered a little ahead, but far from the 20 MiB it had to send.
    let pulled = sent.load(Ordering::SeqCst);
    assert!(pulled < 8 << 20, "read {pulled} bytes for a 1 MiB cap");

    let announced = Webhook::new(
        reqwest::Client::new(),
        WebhookConfig {
            max_response_bytes: limit,
            ..WebhookConfig::new(format!("http://{addr}/announced"))
        },
    );
    let text = error_text(announced.call(&parent_request("p")).await);
    assert!(
        text.ends_with("exceeds the 1 MiB limit (--max-output)"),
        "{text}"
    );

    // The default cap is the evaluator's 16 MiB default; a body under it is read.
    let small = Router::new().route(
        "/sync",
        post(|| async { axum::Json(json!({"pad": " ".repeat(2 << 20)})) }),
    );
    let addr = serve(small).await;
    assert!(
        webhook(addr, |_| {})
            .call(&parent_request("p"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn refused_connections_say_so() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let text = error_text(webhook(addr, |_| {}).call(&parent_request("p")).await);
    assert_eq!(
        text,
        format!("webhook http://{addr}/sync: connection refused")
    );
}

#[tokio::test]
async fn unresolvable_hosts_say_dns() {
    let hook = Webhook::new(
        reqwest::Client::new(),
        WebhookConfig::new("http://no-such-host.invalid/sync"),
    );
    let text = error_text(hook.call(&parent_request("p")).await);
    assert!(
        text.starts_with("webhook http://no-such-host.invalid/sync: DNS lookup failed: "),
        "{text}"
    );
}

#[tokio::test]
async fn slow_hooks_time_out_with_the_hook_timeout() {
    let app = Router::new().route(
        "/sync",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "{}"
        }),
    );
    let addr = serve(app).await;
    let hook = webhook(addr, |c| c.timeout = Duration::from_millis(200));
    let text = error_text(hook.call(&parent_request("p")).await);
    assert_eq!(
        text,
        format!("webhook http://{addr}/sync: timed out after 200ms")
    );
}

#[tokio::test]
async fn non_json_bodies_are_errors() {
    let app = Router::new().route("/sync", post(|| async { "<html>" }));
    let addr = serve(app).await;
    let text = error_text(webhook(addr, |_| {}).call(&parent_request("p")).await);
    assert!(
        text.starts_with(&format!(
            "webhook http://{addr}/sync: response is not JSON: "
        )),
        "{text}"
    );
}

/// A test certificate authority.
struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A certificate and its key, PEM.
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
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Serves `app` over TLS with `server`'s certificate; with `client_ca`, a client certificate
/// signed by it is required. Failed handshakes are sent on the returned channel.
async fn serve_tls(
    app: Router,
    server: &Leaf,
    client_ca: Option<&TestCa>,
) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
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
    let (failures, failed) = mpsc::unbounded_channel();
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
    tokio::spawn(async move { axum::serve(TlsListener { accepted, addr }, app).await });
    (addr, failed)
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

fn ok_app() -> Router {
    Router::new().route("/sync", post(|| async { axum::Json(json!({"ok": true})) }))
}

fn tls_hook(addr: SocketAddr, settings: &TlsSettings) -> Webhook {
    let client = tls::ClientPool::default().client(settings).expect("client");
    Webhook::new(client, WebhookConfig::new(format!("https://{addr}/sync")))
}

fn roots_of(ca: &TestCa) -> Option<Vec<Vec<u8>>> {
    Some(tls::parse_ca_bundle(ca.pem().as_bytes()).expect("CA bundle"))
}

#[tokio::test]
async fn the_ca_bundle_replaces_the_system_roots() {
    let ca = TestCa::new("hooks CA");
    let server = ca.leaf(
        &["127.0.0.1", "localhost"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (addr, _) = serve_tls(ok_app(), &server, None).await;
    let trusted = TlsSettings {
        roots: roots_of(&ca),
        identity: None,
    };
    assert_eq!(
        tls_hook(addr, &trusted)
            .call(&parent_request("p"))
            .await
            .ok(),
        Some(json!({"ok": true}))
    );
    let other = TlsSettings {
        roots: roots_of(&TestCa::new("another CA")),
        identity: None,
    };
    let text = error_text(tls_hook(addr, &other).call(&parent_request("p")).await);
    assert_eq!(
        text,
        format!(
            "webhook https://{addr}/sync: TLS handshake failed: invalid peer certificate: UnknownIssuer"
        )
    );
    // The system roots do not know the test CA either.
    let text = error_text(
        tls_hook(addr, &TlsSettings::default())
            .call(&parent_request("p"))
            .await,
    );
    assert!(
        text.contains("TLS handshake failed: invalid peer certificate: UnknownIssuer"),
        "{text}"
    );
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let ca = TestCa::new("hooks CA");
    let server = ca.leaf(&["127.0.0.1"], rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let client = ca.leaf(&["kubelambda"], rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    let (addr, mut failed) = serve_tls(ok_app(), &server, Some(&ca)).await;
    let with_identity = TlsSettings {
        roots: roots_of(&ca),
        identity: Some(
            tls::parse_identity(client.cert.as_bytes(), client.key.as_bytes()).expect("identity"),
        ),
    };
    assert_eq!(
        tls_hook(addr, &with_identity)
            .call(&parent_request("p"))
            .await
            .ok(),
        Some(json!({"ok": true}))
    );
    let without = TlsSettings {
        roots: roots_of(&ca),
        identity: None,
    };
    let text = error_text(tls_hook(addr, &without).call(&parent_request("p")).await);
    assert!(
        text.starts_with(&format!(
            "webhook https://{addr}/sync: TLS handshake failed: "
        )),
        "{text}"
    );
    let server_side = failed
        .recv()
        .await
        .expect("the server saw a failed handshake");
    assert!(server_side.contains("certificate"), "{server_side}");
}
