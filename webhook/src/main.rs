use std::io::IsTerminal as _;
use std::sync::Arc;

use clap::Parser;
use fluxfence_webhook::config::{Config, LogFormat};
use fluxfence_webhook::metrics::Metrics;
use fluxfence_webhook::server::{Server, shutdown_signal};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_tracing(config.log_format);
    let metrics = Arc::new(Metrics::new());
    let server = Server::bind(config, metrics).await?;
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
