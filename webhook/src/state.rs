//! What the HTTP handlers share: the current policy, the metrics and fixed settings.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use fluxfence::Policy;

use crate::accounts::ServiceAccountCache;
use crate::metrics::Metrics;

pub struct AppState {
    /// Swapped whole by the reloader; a review clones the `Arc` and keeps one policy throughout.
    policy: RwLock<Arc<Policy>>,
    pub metrics: Arc<Metrics>,
    /// The webhook's own namespace, never blocked.
    pub own_namespace: Option<String>,
    pub max_body_bytes: usize,
    /// A body not read in full in this long is answered 408.
    pub body_read_timeout: Duration,
    ready: AtomicBool,
    /// Set on SIGTERM: `/readyz` answers 503 so callers move to other replicas.
    draining: AtomicBool,
    /// The live ServiceAccounts FF111 checks, when the cache is on.
    pub service_accounts: Option<Arc<ServiceAccountCache>>,
    /// Users whose copies of shared sources are fluxfence-controller's.
    pub trusted_publishers: Vec<String>,
}

impl AppState {
    pub fn new(
        policy: Policy,
        metrics: Arc<Metrics>,
        own_namespace: Option<String>,
        max_body_bytes: usize,
    ) -> AppState {
        AppState {
            policy: RwLock::new(Arc::new(policy)),
            metrics,
            own_namespace,
            max_body_bytes,
            body_read_timeout: Duration::from_secs(10),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            service_accounts: None,
            trusted_publishers: Vec::new(),
        }
    }

    pub fn with_trusted_publishers(mut self, users: Vec<String>) -> AppState {
        self.trusted_publishers = users;
        self
    }

    pub fn with_service_accounts(mut self, cache: Option<Arc<ServiceAccountCache>>) -> AppState {
        self.service_accounts = cache;
        self
    }

    /// Whether the ServiceAccount cache (if on) still waits for its first list.
    pub fn awaits_service_accounts(&self) -> bool {
        self.service_accounts
            .as_ref()
            .is_some_and(|cache| !cache.is_synced())
    }

    pub fn with_body_read_timeout(mut self, timeout: Duration) -> AppState {
        self.body_read_timeout = timeout;
        self
    }

    pub fn policy(&self) -> Arc<Policy> {
        // A panic while holding the lock cannot leave a half-written Arc behind: keep serving.
        Arc::clone(&self.policy.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn set_policy(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(policy);
    }

    /// Ready once a certificate and a policy are loaded.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Ready once a certificate and a policy are loaded and the ServiceAccount cache (if on)
    /// has its first list.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.awaits_service_accounts()
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}
