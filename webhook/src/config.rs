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

    /// A user (`system:serviceaccount:NAMESPACE:NAME`) whose copies of shared sources are
    /// fluxfence-controller's: a copy it writes into a namespace the policy shares the source
    /// with is not judged by FF140 (its URL is the shared source's). Repeat, or separate with
    /// commas; none by default.
    #[arg(
        long = "trusted-publisher",
        env = "FLUXFENCE_TRUSTED_PUBLISHERS",
        value_delimiter = ','
    )]
    pub trusted_publishers: Vec<String>,

    /// Log format (level from RUST_LOG, default info).
    #[arg(long, env = "FLUXFENCE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub limits: Limits,

    #[command(flatten)]
    pub shutdown: Shutdown,
}

/// What one connection may hold. The API server keeps a few long-lived connections and sends
/// small reviews; anything slower or idler than that is closed, so no client can hold the
/// webhook's file descriptors or tasks.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// A TLS handshake not done in this long closes the connection.
    #[arg(long, env = "FLUXFENCE_HANDSHAKE_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub handshake_timeout_seconds: u64,

    /// HTTP/1.1: a request whose headers are not all read this long after its first byte
    /// closes the connection (an idle connection is the idle timeout's).
    #[arg(long, env = "FLUXFENCE_HEADER_READ_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_seconds: u64,

    /// A request body not read in full in this long is answered 408.
    #[arg(long, env = "FLUXFENCE_BODY_READ_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_seconds: u64,

    /// A connection (HTTP/1.1 or HTTP/2) with no request in flight for this long is closed
    /// (HTTP/2 with GOAWAY), before its first request or between requests. Longer than the
    /// API server keeps idle connections (90 s), so that it is the one to close them: a
    /// review sent on a connection the server is closing fails.
    #[arg(long, env = "FLUXFENCE_IDLE_TIMEOUT_SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_seconds: u64,

    /// HTTP/2: a PING is sent on a connection quiet for this long (0: never).
    #[arg(
        long,
        env = "FLUXFENCE_HTTP2_KEEPALIVE_INTERVAL_SECONDS",
        default_value_t = 20
    )]
    pub http2_keepalive_interval_seconds: u64,

    /// HTTP/2: a PING not answered in this long closes the connection.
    #[arg(long, env = "FLUXFENCE_HTTP2_KEEPALIVE_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub http2_keepalive_timeout_seconds: u64,

    /// HTTP/2: most requests in flight on one connection.
    #[arg(long, env = "FLUXFENCE_HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = 250, value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_concurrent_streams: u32,

    /// Most connections open at once; more wait in the listen queue until one closes. Never
    /// more than the open-file limit leaves room for (see the log line at start).
    #[arg(long, env = "FLUXFENCE_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            handshake_timeout_seconds: 10,
            header_read_timeout_seconds: 10,
            body_read_timeout_seconds: 10,
            idle_timeout_seconds: 120,
            http2_keepalive_interval_seconds: 20,
            http2_keepalive_timeout_seconds: 10,
            http2_max_concurrent_streams: 250,
            max_connections: 1024,
        }
    }
}

/// What happens on SIGTERM: `/readyz` turns 503 and the server keeps serving for the drain
/// period (callers move to other replicas), then stops accepting and finishes what is open.
#[derive(Debug, Clone, clap::Args)]
pub struct Shutdown {
    /// Seconds to keep serving after SIGTERM, with `/readyz` answering 503.
    #[arg(long, env = "FLUXFENCE_DRAIN_SECONDS", default_value_t = 5)]
    pub drain_seconds: u64,

    /// Seconds open requests get to finish once the listener is closed.
    #[arg(long, env = "FLUXFENCE_SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 15)]
    pub shutdown_timeout_seconds: u64,
}

impl Default for Shutdown {
    fn default() -> Shutdown {
        Shutdown {
            drain_seconds: 5,
            shutdown_timeout_seconds: 15,
        }
    }
}
