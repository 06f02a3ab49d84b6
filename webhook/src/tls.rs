//! TLS: the serving certificate and the client CA, both swappable while the server runs, and
//! the rustls config.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

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

/// When `certificate` (DER) stops being valid: its notAfter, in Unix seconds; `None` when
/// the DER cannot be read that far. Only the path to the validity field is walked:
/// Certificate → tbsCertificate → [version], serialNumber, signature, issuer, validity.
pub fn not_after(certificate: &[u8]) -> Option<i64> {
    const SEQUENCE: u8 = 0x30;
    let (tag, certificate, _) = der_element(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, mut tbs, _) = der_element(certificate)?;
    if tbs.first() == Some(&0xA0) {
        tbs = der_element(tbs)?.2; // the explicit version
    }
    for _ in 0..3 {
        tbs = der_element(tbs)?.2; // serialNumber, signature, issuer
    }
    let (_, validity, _) = der_element(tbs)?;
    let (_, _, after_not_before) = der_element(validity)?;
    let (tag, time, _) = der_element(after_not_before)?;
    let time = std::str::from_utf8(time).ok()?;
    match tag {
        0x17 => parse_asn1_time(time, false), // UTCTime
        0x18 => parse_asn1_time(time, true),  // GeneralizedTime
        _ => None,
    }
}

/// One DER element: its tag, its content and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let length = bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
        (length, rest)
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

/// `YYMMDDHHMMSSZ` (UTCTime: 50–99 are 19xx) or `YYYYMMDDHHMMSSZ`, as Unix seconds.
fn parse_asn1_time(text: &str, four_digit_year: bool) -> Option<i64> {
    let digits = text.strip_suffix('Z')?;
    let year_len = if four_digit_year { 4 } else { 2 };
    if digits.len() != year_len + 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |from: usize, len: usize| digits.get(from..from + len)?.parse::<i64>().ok();
    let mut year = number(0, year_len)?;
    if !four_digit_year {
        year += if year < 50 { 2000 } else { 1900 };
    }
    let at = year_len;
    let (month, day) = (number(at, 2)?, number(at + 2, 2)?);
    let (hour, minute, second) = (number(at + 4, 2)?, number(at + 6, 2)?, number(at + 8, 2)?);
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the well-known era arithmetic).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
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

/// Checks client certificates against the CA bundle loaded last: the reloader swaps it in
/// when the file changes, and every handshake after that uses the new one.
pub struct ClientCaStore {
    current: RwLock<Arc<dyn ClientCertVerifier>>,
}

impl ClientCaStore {
    /// A store checking against the CA bundle `pem`; `path` only names the file in errors.
    pub fn new(pem: &[u8], path: &Path) -> Result<ClientCaStore, TlsError> {
        Ok(ClientCaStore {
            current: RwLock::new(client_verifier(pem, path)?),
        })
    }

    /// Replaces the CA bundle; a bundle that does not load leaves the current one in place.
    pub fn set(&self, pem: &[u8], path: &Path) -> Result<(), TlsError> {
        let verifier = client_verifier(pem, path)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = verifier;
        Ok(())
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl fmt::Debug for ClientCaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientCaStore")
    }
}

/// The CA bundle's verifier, without root hints: a hint list would have to outlive a swap.
/// Go's TLS client, which the API server uses, sends its certificate when no hint is given.
fn client_verifier(pem: &[u8], path: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
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
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .clear_root_hint_subjects()
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))
}

impl ClientCertVerifier for ClientCaStore {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1, the certificate from `certs`, and the API server's
/// client certificate required when a client CA is given.
pub fn server_config(
    certs: Arc<CertStore>,
    client_cas: Option<Arc<ClientCaStore>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_cas {
        None => builder.with_no_client_auth(),
        Some(store) => builder.with_client_cert_verifier(store),
    };
    let mut config = builder.with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_become_unix_seconds() {
        assert_eq!(parse_asn1_time("700101000000Z", false), Some(0));
        assert_eq!(parse_asn1_time("000229120000Z", false), Some(951_825_600));
        assert_eq!(
            parse_asn1_time("20991231235959Z", true),
            Some(4_102_444_799)
        );
        assert_eq!(parse_asn1_time("2099123123595Z", true), None);
        assert_eq!(parse_asn1_time("991231235959+0100", false), None);
    }
}
