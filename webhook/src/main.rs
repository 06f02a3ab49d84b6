use std::io::IsTerminal as _;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use fluxfence_webhook::accounts::ServiceAccountCache;
use fluxfence_webhook::config::{Config, LogFormat};
use fluxfence_webhook::metrics::Metrics;
use fluxfence_webhook::server::{Server, shutdown_signal};
use tracing_subscriber::EnvFilter;

/// The webhook's flags, and whether it keeps a ServiceAccount cache.
#[derive(Parser)]
#[command(name = "fluxfence-webhook", version, about)]
struct Cli {
    #[command(flatten)]
    config: Config,
    /// Keep a cache of the cluster's ServiceAccounts (list/watch on serviceaccounts in every
    /// namespace): FF111 then denies an object applied as an account that does not exist in
    /// its namespace, and /readyz waits for the cache's first list. Off: an explicit account
    /// the policy says nothing about is taken to exist.
    #[arg(long, env = "FLUXFENCE_SERVICE_ACCOUNT_CACHE")]
    service_account_cache: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli {
        config,
        service_account_cache,
    } = Cli::parse();
    init_tracing(config.log_format);
    let metrics = Arc::new(Metrics::new());
    let accounts = if service_account_cache {
        let client = kube::Client::try_default().await.context(
            "--service-account-cache needs the cluster's API: not in a pod, and no kubeconfig",
        )?;
        Some(ServiceAccountCache::start(client))
    } else {
        None
    };
    let server = Server::bind_with_accounts(config, metrics, accounts).await?;
    server.run_until(shutdown_signal()).await
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        // Colours only for a person at a terminal, never into a redirected log.
        LogFormat::Text => builder.with_ansi(std::io::stdout().is_terminal()).init(),
    }
}
