//! Command-line flags, each with an environment fallback (the Helm chart sets the variables).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Validating and mutating admission webhook enforcing Flux multi-tenancy.
#[derive(Debug, Clone, Parser)]
#[command(name = "fluxfence-webhook", version, about)]
pub struct Config {
    /// Address of the HTTPS listener (admission, health, readiness and metrics).
    #[arg(long, env = "FLUXFENCE_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,

    /// PEM certificate chain served to the API server; reloaded when it changes.
    #[arg(long, env = "FLUXFENCE_TLS_CERT_FILE", default_value = "/tls/tls.crt")]
    pub tls_cert_file: PathBuf,

    /// PEM private key of the serving certificate; reloaded when it changes.
    #[arg(long, env = "FLUXFENCE_TLS_KEY_FILE", default_value = "/tls/tls.key")]
    pub tls_key_file: PathBuf,

    /// PEM CA bundle: when set, clients must present a certificate it signed (the API server's).
    #[arg(long, env = "FLUXFENCE_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,

    /// Policy YAML; the built-in Azure multi-tenancy default when absent. Reloaded when it changes.
    #[arg(long, env = "FLUXFENCE_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,

    /// The webhook's own namespace: requests there are never blocked.
    #[arg(long, env = "FLUXFENCE_NAMESPACE")]
    pub namespace: Option<String>,

    /// Largest AdmissionReview accepted, in bytes; larger bodies get 413.
    #[arg(long, env = "FLUXFENCE_MAX_BODY_BYTES", default_value_t = 3 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// How often the certificate, key and policy files are checked for changes.
    #[arg(
        long,
        env = "FLUXFENCE_RELOAD_INTERVAL_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub reload_interval_seconds: u64,

    /// Log format (level from RUST_LOG, default info).
    #[arg(long, env = "FLUXFENCE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}
