//! TLS for webhooks: the CA bundle that verifies the hook server (instead of the system roots),
//! the client certificate for mutual TLS, and one shared HTTP client per distinct combination,
//! so hooks that talk to the same server with the same settings share connections.
//!
//! Certificates and keys are parsed when the controller starts, so a bad PEM is reported
//! against the field it came from rather than as a failure of every call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why PEM text is not usable. The caller adds the field and the object it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// Not PEM, or a damaged PEM section.
    #[error("is not valid PEM: {0}")]
    Syntax(String),
    /// PEM without a certificate in it.
    #[error("holds no PEM certificate")]
    NoCertificate,
    /// A certificate that cannot be a trust anchor (not X.509, unsupported key, ...).
    #[error("certificate {index} is not usable as a CA: {reason}")]
    BadCa { index: usize, reason: String },
    /// PEM without a private key in it.
    #[error("holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey,
}

/// The TLS side of one webhook connection. Equal settings share one HTTP client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    /// DER certificates that replace the system roots; `None` keeps the system roots.
    pub roots: Option<Vec<Vec<u8>>>,
    /// Certificate chain and key as normalized PEM, presented for mutual TLS.
    pub identity: Option<Vec<u8>>,
}

/// The certificates of a CA bundle, each checked to be usable as a trust anchor.
pub fn parse_ca_bundle(pem: &[u8]) -> Result<Vec<Vec<u8>>, PemError> {
    let certificates = parse_certificates(pem)?;
    for (index, der) in certificates.iter().enumerate() {
        rustls::RootCertStore::empty()
            .add(der.clone())
            .map_err(|e| PemError::BadCa {
                index,
                reason: e.to_string(),
            })?;
    }
    Ok(certificates.into_iter().map(|c| c.to_vec()).collect())
}

fn parse_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Syntax(e.to_string()))?;
    if certificates.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(certificates)
}

/// Which half of a client identity is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityPart {
    Certificate,
    Key,
}

/// The client certificate chain and key as one normalized PEM document (certificates first,
/// then the key), which is what the HTTP client takes. Other PEM sections (such as
/// `EC PARAMETERS`, which OpenSSL writes before EC keys) are dropped.
pub fn parse_identity(
    certificate_pem: &[u8],
    key_pem: &[u8],
) -> Result<Vec<u8>, (IdentityPart, PemError)> {
    let chain = parse_certificates(certificate_pem).map_err(|e| (IdentityPart::Certificate, e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        let error = match e {
            rustls_pki_types::pem::Error::NoItemsFound => PemError::NoKey,
            other => PemError::Syntax(other.to_string()),
        };
        (IdentityPart::Key, error)
    })?;
    let mut out = Vec::new();
    for certificate in &chain {
        write_pem(&mut out, "CERTIFICATE", certificate);
    }
    let label = match &key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    write_pem(&mut out, label, key.secret_der());
    Ok(out)
}

fn write_pem(out: &mut Vec<u8>, label: &str, der: &[u8]) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    out.extend_from_slice(format!("-----BEGIN {label}-----\n").as_bytes());
    for line in encoded.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(format!("-----END {label}-----\n").as_bytes());
}

/// One HTTP client per distinct [`TlsSettings`], made on first use. Every client requires
/// TLS 1.2 or later.
#[derive(Clone, Default)]
pub struct ClientPool {
    clients: Arc<Mutex<HashMap<TlsSettings, reqwest::Client>>>,
}

impl ClientPool {
    /// The client for `settings`, shared with every hook that uses the same settings.
    pub fn client(&self, settings: &TlsSettings) -> Result<reqwest::Client, reqwest::Error> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(settings) {
            return Ok(client.clone());
        }
        let client = build_client(settings)?;
        clients.insert(settings.clone(), client.clone());
        Ok(client)
    }

    /// How many distinct clients exist.
    pub fn len(&self) -> usize {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no client was made yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn build_client(settings: &TlsSettings) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder().min_tls_version(reqwest::tls::Version::TLS_1_2);
    if let Some(roots) = &settings.roots {
        builder = builder.tls_built_in_root_certs(false);
        for der in roots {
            builder = builder.add_root_certificate(reqwest::Certificate::from_der(der)?);
        }
    }
    if let Some(identity) = &settings.identity {
        builder = builder.identity(reqwest::Identity::from_pem(identity)?);
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        (params.self_signed(&key).expect("self-signed"), key)
    }

    #[test]
    fn ca_bundles_hold_one_or_more_certificates() {
        let (first, _) = ca();
        let (second, _) = ca();
        let bundle = format!("{}\n{}", first.pem(), second.pem());
        let roots = parse_ca_bundle(bundle.as_bytes()).expect("two CAs");
        assert_eq!(roots, vec![first.der().to_vec(), second.der().to_vec()]);
        assert_eq!(parse_ca_bundle(b"hello"), Err(PemError::NoCertificate));
        assert_eq!(parse_ca_bundle(b""), Err(PemError::NoCertificate));
        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_ca_bundle(broken.as_bytes()),
            Err(PemError::Syntax(_))
        ));
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_ca_bundle(garbage.as_bytes()),
            Err(PemError::BadCa { index: 0, .. })
        ));
    }

    #[test]
    fn identities_need_a_certificate_and_a_key() {
        let (certificate, key) = ca();
        let key_pem = format!(
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
            key.serialize_pem()
        );
        let identity =
            parse_identity(certificate.pem().as_bytes(), key_pem.as_bytes()).expect("identity");
        let text = String::from_utf8(identity.clone()).expect("PEM is text");
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"), "{text}");
        assert!(text.contains("-----BEGIN PRIVATE KEY-----\n"), "{text}");
        assert!(!text.contains("EC PARAMETERS"));
        assert!(reqwest::Identity::from_pem(&identity).is_ok());
        assert_eq!(
            parse_identity(b"", key_pem.as_bytes()),
            Err((IdentityPart::Certificate, PemError::NoCertificate))
        );
        assert_eq!(
            parse_identity(certificate.pem().as_bytes(), certificate.pem().as_bytes()),
            Err((IdentityPart::Key, PemError::NoKey))
        );
    }

    #[test]
    fn equal_settings_share_one_client() {
        let (certificate, _) = ca();
        let pool = ClientPool::default();
        let system = TlsSettings::default();
        let custom = TlsSettings {
            roots: Some(vec![certificate.der().to_vec()]),
            identity: None,
        };
        pool.client(&system).expect("client");
        pool.client(&custom).expect("client");
        pool.client(&custom.clone()).expect("client");
        pool.client(&system).expect("client");
        assert_eq!(pool.len(), 2);
    }
}
