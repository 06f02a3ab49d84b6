//! TLS: the serving certificate, swappable while the server runs, and the rustls config.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: no PEM certificate found; expected a `-----BEGIN CERTIFICATE-----` block")]
    NoCertificate { path: String },
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
    #[error("{path}: the private key cannot be used: {message}")]
    Key { path: String, message: String },
    #[error("the certificate in {cert} does not match the private key in {key}")]
    Mismatch { cert: String, key: String },
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM certificate chain and private key into a pair rustls can serve.
/// `cert_path`/`key_path` only name the files in errors.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, TlsError> {
    let cert_name = cert_path.display().to_string();
    let key_name = key_path.display().to_string();
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert_name.clone(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_name });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem {
        path: key_name.clone(),
        message: format!("no usable private key ({e}); expected PKCS#8, PKCS#1 or SEC1 PEM"),
    })?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key {
            path: key_name.clone(),
            message: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    // Catch a half-rotated pair (new certificate, old key) before serving it.
    certified.keys_match().map_err(|_| TlsError::Mismatch {
        cert: cert_name,
        key: key_name,
    })?;
    Ok(certified)
}

/// The certificate currently served; the reloader swaps it, handshakes read it.
#[derive(Default)]
pub struct CertStore {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl CertStore {
    pub fn new() -> CertStore {
        CertStore::default()
    }

    pub fn set(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(key));
    }

    pub fn is_loaded(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1, the certificate from `certs`, and the API server's
/// client certificate required when a client CA is given.
pub fn server_config(
    certs: Arc<CertStore>,
    client_ca_pem: Option<(&[u8], &Path)>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some((pem, path)) => {
            let name = path.display().to_string();
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| TlsError::Pem {
                    path: name.clone(),
                    message: e.to_string(),
                })?;
                roots.add(cert).map_err(|e| TlsError::Pem {
                    path: name.clone(),
                    message: format!("not a usable CA certificate: {e}"),
                })?;
            }
            if roots.is_empty() {
                return Err(TlsError::NoCertificate { path: name });
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
