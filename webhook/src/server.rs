//! The HTTPS listener: TLS handshakes, HTTP/1.1 and HTTP/2 connections, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::state::AppState;
use crate::tls::{self, CertStore};
use crate::{app, metrics};

/// A client that connects and never finishes the handshake must not hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// In-flight reviews get this long to finish after SIGTERM; the API server's webhook timeout
/// is at most 30 s, and Kubernetes' default grace period is 30 s.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

/// A bound, loaded server, not yet accepting.
pub struct Server {
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    state: Arc<AppState>,
    reloader: Reloader,
    reload_interval: Duration,
}

impl Server {
    /// Loads certificate, key, client CA and policy (any error is fatal here: better to fail
    /// the rollout than to serve a default), then binds the listener.
    pub async fn bind(config: Config, metrics: Arc<Metrics>) -> anyhow::Result<Server> {
        let certs = Arc::new(CertStore::new());
        let mut reloader = Reloader::new(
            config.tls_cert_file.clone(),
            config.tls_key_file.clone(),
            config.policy_file.clone(),
            Arc::clone(&certs),
            Arc::clone(&metrics),
        );
        reloader
            .load_certificate()
            .context("cannot load the serving certificate (--tls-cert-file, --tls-key-file)")?;
        let policy = reloader
            .load_policy()
            .context("cannot load the policy (--policy-file)")?;
        let client_cas = match &config.client_ca_file {
            Some(path) => Some(
                reloader
                    .load_client_ca(path.clone())
                    .context("cannot load the client CA (--client-ca-file)")?,
            ),
            None => None,
        };
        let tls = tls::server_config(certs, client_cas)?;
        let state = Arc::new(AppState::new(
            policy,
            metrics,
            config.namespace.clone(),
            config.max_body_bytes,
        ));
        state.set_ready();
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {} (--listen)", config.listen))?;
        Ok(Server {
            listener,
            tls,
            state,
            reloader,
            reload_interval: Duration::from_secs(config.reload_interval_seconds),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets open requests finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Server {
            listener,
            tls,
            state,
            reloader,
            reload_interval,
        } = self;
        tracing::info!(
            listen = %listener.local_addr()?,
            metrics = metrics::REQUESTS,
            "fluxfence webhook serving"
        );
        let reload = tokio::spawn(reloader.run(Arc::clone(&state), reload_interval));
        let app = app::router(state);
        let acceptor = TlsAcceptor::from(tls);
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let watcher = graceful.watcher();
                        let acceptor = acceptor.clone();
                        let app = app.clone();
                        tokio::spawn(async move {
                            serve_connection(stream, peer, acceptor, app, watcher).await;
                        });
                    }
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        reload.abort();
        tracing::info!("shutting down: finishing in-flight requests");
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("requests still open after {DRAIN_TIMEOUT:?}; closing them");
        }
        Ok(())
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let _ = stream.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(app));
    if let Err(e) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
