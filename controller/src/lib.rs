//! `fluxfence-controller`: a `FluxConfig` becomes the service account, RBAC, source, auth Secret
//! and Flux Kustomizations of one tenant configuration, applied server-side and owned by it,
//! with compliance reported from the Flux objects' Ready conditions; and the policy's shared
//! sources published into the tenant namespaces that reference them.

pub mod audit_cache;
pub mod config;
pub mod crd;
pub mod desired;
pub mod engine;
pub mod http;
pub mod keys;
pub mod leader;
pub mod metrics;
pub mod owned;
pub mod publish;
pub mod reconcile;
pub mod reports;
pub mod run;
pub mod shared;
pub mod shared_watch;
pub mod status;
