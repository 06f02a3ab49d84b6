//! Reloads the serving certificate, the client CA and the policy when their files change.
//!
//! Kubernetes updates Secret and ConfigMap volumes by writing a new directory and swapping the
//! `..data` symlink; a watch on the old files never fires again. So we poll: read the files
//! through their paths (following the symlinks as they are now), hash the contents, and reload
//! when the hash changes. A new certificate or policy that does not load is logged and counted,
//! and the last good one keeps serving.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fluxfence::Policy;

use crate::metrics::{Metrics, ReloadResult};
use crate::state::AppState;
use crate::tls::{self, CertStore, ClientCaStore};

pub struct Reloader {
    cert_file: PathBuf,
    key_file: PathBuf,
    policy_file: Option<PathBuf>,
    certs: Arc<CertStore>,
    /// The client CA file and what checks against it, when client certificates are required.
    client_ca: Option<(PathBuf, Arc<ClientCaStore>)>,
    metrics: Arc<Metrics>,
    /// Hashes of the contents last tried, loaded or not: a broken file is reported once, not
    /// on every poll, and a fix to it is picked up as a change.
    cert_hash: Option<u64>,
    client_ca_hash: Option<u64>,
    policy_hash: Option<u64>,
    /// Whether the last poll found the policy file missing or unreadable.
    policy_unreadable: bool,
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn hash(parts: &[&[u8]]) -> u64 {
    let mut hasher = DefaultHasher::new();
    parts.hash(&mut hasher);
    hasher.finish()
}

/// The contents of `paths` when they changed since `last` (their hash when last tried, which
/// this updates); `None` while they are unchanged, or while one cannot be read (mid-rotation
/// or a transient volume problem: tried again next poll).
fn changed<const N: usize>(
    paths: [&Path; N],
    last: &mut Option<u64>,
    what: &str,
) -> Option<[Vec<u8>; N]> {
    let mut contents: [Vec<u8>; N] = std::array::from_fn(|_| Vec::new());
    for (content, path) in contents.iter_mut().zip(paths) {
        match read(path) {
            Ok(bytes) => *content = bytes,
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "{what} not readable this poll");
                return None;
            }
        }
    }
    let fingerprint = hash(&contents.each_ref().map(Vec::as_slice));
    if *last == Some(fingerprint) {
        return None;
    }
    *last = Some(fingerprint);
    Some(contents)
}

impl Reloader {
    pub fn new(
        cert_file: PathBuf,
        key_file: PathBuf,
        policy_file: Option<PathBuf>,
        certs: Arc<CertStore>,
        metrics: Arc<Metrics>,
    ) -> Reloader {
        Reloader {
            cert_file,
            key_file,
            policy_file,
            certs,
            client_ca: None,
            metrics,
            cert_hash: None,
            client_ca_hash: None,
            policy_hash: None,
            policy_unreadable: false,
        }
    }

    /// Loads the CA bundle that client certificates must chain to, and watches it from then
    /// on; an error here is a startup error.
    pub fn load_client_ca(&mut self, path: PathBuf) -> anyhow::Result<Arc<ClientCaStore>> {
        let pem = read(&path)?;
        let store = Arc::new(ClientCaStore::new(&pem, &path)?);
        self.client_ca_hash = Some(hash(&[&pem]));
        self.client_ca = Some((path, Arc::clone(&store)));
        Ok(store)
    }

    /// Loads the certificate; an error here is a startup error.
    pub fn load_certificate(&mut self) -> anyhow::Result<()> {
        let cert = read(&self.cert_file)?;
        let key = read(&self.key_file)?;
        self.cert_hash = Some(hash(&[&cert, &key]));
        let pair = tls::certified_key(&cert, &key, &self.cert_file, &self.key_file)?;
        self.serve(pair);
        Ok(())
    }

    /// Serves `pair` from the next handshake on, and says when it expires.
    fn serve(&self, pair: rustls::sign::CertifiedKey) {
        let expiry = pair.cert.first().and_then(|leaf| tls::not_after(leaf));
        self.metrics.set_certificate_expiry(expiry);
        self.certs.set(pair);
    }

    /// Loads the policy (the built-in default without a file); an error here is a startup error.
    pub fn load_policy(&mut self) -> anyhow::Result<Policy> {
        let Some(path) = &self.policy_file else {
            return Ok(Policy::azure_default());
        };
        let text = read(path)?;
        self.policy_hash = Some(hash(&[&text]));
        Ok(parse_policy(&text, path)?)
    }

    /// One poll: reloads whatever changed.
    pub fn poll(&mut self, state: &AppState) {
        self.poll_certificate();
        self.poll_client_ca();
        self.poll_policy(state);
    }

    fn poll_certificate(&mut self) {
        let files = [self.cert_file.as_path(), self.key_file.as_path()];
        let Some([cert, key]) = changed(files, &mut self.cert_hash, "certificate") else {
            return;
        };
        match tls::certified_key(&cert, &key, &self.cert_file, &self.key_file) {
            Ok(pair) => {
                self.serve(pair);
                self.metrics.certificate_reload(ReloadResult::Success);
                tracing::info!(cert = %self.cert_file.display(), "serving certificate reloaded");
            }
            Err(e) => {
                self.metrics.certificate_reload(ReloadResult::Error);
                tracing::error!(error = %e, "new serving certificate rejected; still serving the previous one");
            }
        }
    }

    /// A new CA bundle applies to the handshakes after it; a bundle that does not load is
    /// counted as a failed certificate reload and the previous one keeps checking.
    fn poll_client_ca(&mut self) {
        let Some((path, store)) = &self.client_ca else {
            return;
        };
        let Some([pem]) = changed([path], &mut self.client_ca_hash, "client CA") else {
            return;
        };
        match store.set(&pem, path) {
            Ok(()) => {
                self.metrics.certificate_reload(ReloadResult::Success);
                tracing::info!(client_ca = %path.display(), "client CA reloaded");
            }
            Err(e) => {
                self.metrics.certificate_reload(ReloadResult::Error);
                tracing::error!(error = %e, "new client CA rejected; still checking against the previous one");
            }
        }
    }

    fn poll_policy(&mut self, state: &AppState) {
        let Some(path) = &self.policy_file else {
            return;
        };
        // A policy file that goes away (a deleted ConfigMap, a broken mount) is said once,
        // and shown by a gauge until it is back; the policy loaded last stays in force.
        match std::fs::metadata(path) {
            Err(e) if !self.policy_unreadable => {
                self.policy_unreadable = true;
                self.metrics.set_policy_file_unreadable(true);
                tracing::error!(policy = %path.display(), error = %e, "policy file cannot be read; still enforcing the policy loaded last");
                return;
            }
            Err(_) => return,
            Ok(_) if self.policy_unreadable => {
                self.policy_unreadable = false;
                self.metrics.set_policy_file_unreadable(false);
                tracing::info!(policy = %path.display(), "policy file readable again");
            }
            Ok(_) => {}
        }
        let Some([text]) = changed([path], &mut self.policy_hash, "policy") else {
            return;
        };
        match parse_policy(&text, path) {
            Ok(policy) => {
                state.set_policy(policy);
                self.metrics.policy_reload(ReloadResult::Success);
                tracing::info!(policy = %path.display(), "policy reloaded");
            }
            Err(e) => {
                self.metrics.policy_reload(ReloadResult::Error);
                tracing::error!(error = %e, "new policy rejected; still enforcing the previous one");
            }
        }
    }

    /// Polls every `interval` until the task is dropped.
    pub async fn run(mut self, state: Arc<AppState>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate; everything was just loaded
        loop {
            ticker.tick().await;
            self.poll(&state);
        }
    }
}

/// Parses policy bytes; the error carries file:line:column.
fn parse_policy(text: &[u8], path: &Path) -> Result<Policy, fluxfence::policy::PolicyError> {
    let display = path.display().to_string();
    match std::str::from_utf8(text) {
        Ok(text) => Policy::parse(text, &display),
        Err(e) => Err(fluxfence::policy::PolicyError {
            path: display,
            line: 1,
            column: 1,
            message: format!("the file is not UTF-8 ({e})"),
        }),
    }
}
