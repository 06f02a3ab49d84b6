//! fluxfence-webhook: Flux multi-tenancy enforced at admission.
//!
//! An adapter around the `fluxfence` rule engine: [`review`] turns an AdmissionRequest into an
//! AdmissionResponse, [`app`] is the HTTP surface, [`server`] the TLS listener, [`reload`]
//! keeps certificate and policy current.

pub mod accounts;
pub mod app;
pub mod config;
pub mod metrics;
pub mod reload;
pub mod review;
pub mod server;
pub mod state;
pub mod tls;

pub use config::Config;
pub use server::Server;
