//! The HTTPS listener: TLS handshakes, HTTP/1.1 and HTTP/2 connections, the limits that keep
//! one client from holding them, and the drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::accounts::ServiceAccountCache;
use crate::config::{Config, Limits, Shutdown};
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::state::AppState;
use crate::tls::{self, CertStore};
use crate::{app, metrics};

/// File descriptors kept free of connections: the listener, the files the reloader reads,
/// the runtime's own.
const RESERVED_FDS: u64 = 32;

/// A bound, loaded server, not yet accepting.
pub struct Server {
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    state: Arc<AppState>,
    reloader: Reloader,
    reload_interval: Duration,
    limits: Limits,
    shutdown: Shutdown,
    max_connections: usize,
}

impl Server {
    /// Loads certificate, key, client CA and policy (any error is fatal here: better to fail
    /// the rollout than to serve a default), then binds the listener.
    pub async fn bind(config: Config, metrics: Arc<Metrics>) -> anyhow::Result<Server> {
        Server::bind_with_accounts(config, metrics, None).await
    }

    /// [`Server::bind`], FF111 checking the accounts of `service_accounts` (the cache; not
    /// ready until its first list).
    pub async fn bind_with_accounts(
        config: Config,
        metrics: Arc<Metrics>,
        service_accounts: Option<Arc<ServiceAccountCache>>,
    ) -> anyhow::Result<Server> {
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
        let state = Arc::new(
            AppState::new(
                policy,
                metrics,
                config.namespace.clone(),
                config.max_body_bytes,
            )
            .with_body_read_timeout(Duration::from_secs(config.limits.body_read_timeout_seconds))
            .with_service_accounts(service_accounts)
            .with_trusted_publishers(trusted_publishers(&config.trusted_publishers)),
        );
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
            max_connections: connection_cap(config.limits.max_connections),
            limits: config.limits,
            shutdown: config.shutdown,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves; then drains: `/readyz` answers 503 while the server
    /// keeps serving for `--drain-seconds`, then the listener closes, every connection is
    /// asked to finish (HTTP/2 GOAWAY, HTTP/1.1 `Connection: close` after its request) and open
    /// requests get `--shutdown-timeout-seconds` to complete.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Server {
            listener,
            tls,
            state,
            reloader,
            reload_interval,
            limits,
            shutdown: timing,
            max_connections,
        } = self;
        tracing::info!(
            listen = %listener.local_addr()?,
            max_connections,
            metrics = metrics::REQUESTS,
            "fluxfence webhook serving"
        );
        let reload = tokio::spawn(reloader.run(Arc::clone(&state), reload_interval));
        let accepting = Accepting {
            listener,
            connections: Arc::new(Connections {
                acceptor: TlsAcceptor::from(tls),
                app: app::router(Arc::clone(&state)),
                limits,
                stop: watch::channel(false).0,
            }),
            permits: Arc::new(Semaphore::new(max_connections)),
        };
        accepting.accept_until(shutdown).await;

        state.set_draining();
        let drain = Duration::from_secs(timing.drain_seconds);
        tracing::info!(
            "shutting down: /readyz answers 503, still serving for {drain:?} (--drain-seconds)"
        );
        accepting.accept_until(tokio::time::sleep(drain)).await;

        let Accepting {
            listener,
            connections,
            permits,
        } = accepting;
        drop(listener);
        reload.abort();
        connections.stop.send_replace(true);
        let grace = Duration::from_secs(timing.shutdown_timeout_seconds);
        tracing::info!("listener closed: finishing in-flight requests");
        let all_closed = permits.acquire_many_owned(permits_of(max_connections));
        if tokio::time::timeout(grace, all_closed).await.is_err() {
            tracing::warn!(
                "connections still open after {grace:?} (--shutdown-timeout-seconds); closing them"
            );
        }
        Ok(())
    }
}

/// `--trusted-publisher` without empty entries (an empty variable is no user), logged so that
/// whoever reads the log knows whose copies skip FF140.
fn trusted_publishers(users: &[String]) -> Vec<String> {
    let users: Vec<String> = users
        .iter()
        .map(|user| user.trim().to_owned())
        .filter(|user| !user.is_empty())
        .collect();
    if !users.is_empty() {
        tracing::info!(users = ?users, "copies of shared sources written by these users are the controller's");
    }
    users
}

/// `--max-connections`, lowered to what the open-file limit leaves room for: a process out of
/// descriptors cannot even accept the kubelet's probe.
fn connection_cap(requested: u64) -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let cap = match limit {
        Some(files) if files.saturating_sub(RESERVED_FDS) < requested => {
            let lowered = files.saturating_sub(RESERVED_FDS).max(1);
            tracing::warn!(
                requested,
                open_file_limit = files,
                max_connections = lowered,
                "--max-connections lowered to fit the open-file limit"
            );
            lowered
        }
        _ => requested,
    };
    usize::try_from(cap)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS)
}

fn permits_of(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// The listener and what each accepted connection needs.
struct Accepting {
    listener: TcpListener,
    connections: Arc<Connections>,
    /// One permit per open connection; all of them back means every connection is closed.
    permits: Arc<Semaphore>,
}

struct Connections {
    acceptor: TlsAcceptor,
    app: Router,
    limits: Limits,
    /// Set once the listener is closed: every connection finishes and closes.
    stop: watch::Sender<bool>,
}

impl Accepting {
    /// Accepts connections until `until` resolves. At the connection cap nothing is accepted:
    /// new connections wait in the kernel's listen queue until one closes.
    async fn accept_until(&self, until: impl Future<Output = ()>) {
        tokio::pin!(until);
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&self.permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return, // never closed
                },
                () = &mut until => return,
            };
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let connections = Arc::clone(&self.connections);
                        tokio::spawn(connections.serve(stream, peer, permit));
                    }
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = &mut until => return,
            }
        }
    }
}

impl Connections {
    /// One connection, from handshake to close; the permit is given back when it ends.
    async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        _permit: OwnedSemaphorePermit,
    ) {
        let _ = stream.set_nodelay(true);
        let limits = &self.limits;
        let handshake = Duration::from_secs(limits.handshake_timeout_seconds);
        let tls = match tokio::time::timeout(handshake, self.acceptor.accept(stream)).await {
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
        let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // No hyper header timeout: it starts while hyper waits for the next request, so it
        // would also end idle keep-alive connections, long before the API server (which calls
        // admission webhooks over HTTP/1.1 and keeps idle connections 90 s) stops using them,
        // and a review sent just as one closes fails. The header clock below starts with the
        // first byte of a request instead.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None);
        let keepalive = Some(limits.http2_keepalive_interval_seconds)
            .filter(|seconds| *seconds > 0)
            .map(Duration::from_secs);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(keepalive)
            .keep_alive_timeout(Duration::from_secs(limits.http2_keepalive_timeout_seconds))
            .max_concurrent_streams(limits.http2_max_concurrent_streams);
        let activity = Arc::new(Activity::new());
        let service = tracked(self.app.clone(), Arc::clone(&activity));
        let io = Watched {
            inner: tls,
            activity: Arc::clone(&activity),
        };
        let connection =
            builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
        tokio::pin!(connection);
        let idle = Duration::from_secs(limits.idle_timeout_seconds);
        let header_read = Duration::from_secs(limits.header_read_timeout_seconds);
        let mut stop = self.stop.subscribe();
        let mut closing = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                // HTTP/2 frames (pings, settings) arrive between requests: headers are
                // HTTP/2's own business there, bounded by the stream cap and keep-alive.
                () = activity.request_overdue(header_read), if !http2 => {
                    tracing::debug!(%peer, "request headers too slow (--header-read-timeout-seconds)");
                    return;
                }
                () = activity.idle_for(idle), if !closing => {
                    tracing::debug!(%peer, "idle connection closed (--idle-timeout-seconds)");
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = stop.wait_for(|stopping| *stopping), if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// `app`, counting the requests in flight on one connection.
fn tracked(
    app: Router,
    activity: Arc<Activity>,
) -> impl tower::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    tower::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = activity.begin();
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await;
            drop(in_flight);
            response
        }
    })
}

/// Requests in flight on one connection, when the last one ended, and when bytes of the next
/// one began to arrive.
struct Activity {
    in_flight: AtomicUsize,
    last_ended: Mutex<Instant>,
    /// Set by the first byte read while no request is in flight; cleared when one starts.
    next_begun: Mutex<Option<Instant>>,
    changed: Notify,
}

/// The connection's stream, telling `activity` when bytes arrive.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.bytes_arrived();
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// One request in flight; ends when dropped (answered, or cancelled with its connection).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self
            .0
            .last_ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            last_ended: Mutex::new(Instant::now()),
            next_begun: Mutex::new(None),
            changed: Notify::new(),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        *self
            .next_begun
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.changed.notify_waiters();
        InFlight(Arc::clone(self))
    }

    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return;
        }
        let mut begun = self
            .next_begun
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if begun.is_none() {
            *begun = Some(Instant::now());
            drop(begun);
            self.changed.notify_waiters();
        }
    }

    /// Resolves once bytes of a request have been arriving for `timeout` without the request
    /// being complete enough to start (its headers, on HTTP/1.1).
    async fn request_overdue(&self, timeout: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let begun = *self
                .next_begun
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match begun {
                Some(begun) if Instant::now() >= begun + timeout => return,
                Some(begun) => tokio::select! {
                    () = tokio::time::sleep_until(begun + timeout) => {}
                    () = &mut changed => {}
                },
                None => changed.await,
            }
        }
    }

    /// Resolves once no request has been in flight for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.in_flight.load(Ordering::Acquire) > 0 {
                changed.await;
                continue;
            }
            let deadline = *self
                .last_ended
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = &mut changed => {}
            }
        }
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
