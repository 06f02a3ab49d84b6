//! What the HTTP handlers share: the current policy, the metrics and fixed settings.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use fluxfence::Policy;

use crate::metrics::Metrics;

pub struct AppState {
    /// Swapped whole by the reloader; a review clones the `Arc` and keeps one policy throughout.
    policy: RwLock<Arc<Policy>>,
    pub metrics: Arc<Metrics>,
    /// The webhook's own namespace, never blocked.
    pub own_namespace: Option<String>,
    pub max_body_bytes: usize,
    ready: AtomicBool,
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
            ready: AtomicBool::new(false),
        }
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

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
