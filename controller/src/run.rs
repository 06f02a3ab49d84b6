//! Wiring: the HTTP endpoints, the Lease, and the kube-runtime Controller that calls
//! [`reconcile`](crate::reconcile::reconcile) for every change of a FluxConfig or of a Flux
//! object it owns; beside it, the shared-source loop ([`shared_watch`](crate::shared_watch)).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::DynamicObject;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::config::RunConfig;
use crate::crd::FluxConfig;
use crate::desired::Settings;
use crate::http::{HttpState, router};
use crate::leader::Elector;
use crate::metrics::Metrics;
use crate::owned::{CONFIG_LABEL, OwnedKind};
use crate::reconcile::{Context, error_policy, reconcile};

/// Runs until `shutdown` resolves (then returns Ok) or the Lease is lost (an error: the process
/// exits and its pod restarts as a candidate).
pub async fn run(
    config: RunConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let policy = match &config.policy {
        Some(path) => fluxfence::Policy::load(path)?,
        None => fluxfence::Policy::azure_default(),
    };
    let service_account = config
        .default_service_account
        .clone()
        .or_else(|| policy.default_service_account.as_ref().map(|sa| sa.name.clone()))
        .context("the policy names no defaultServiceAccount: the controller creates that account and has every Kustomization impersonate it, so set defaultServiceAccount.name in the policy or pass --default-service-account")?;

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: pass a free --http-addr",
                config.http_addr
            )
        })?;
    let app = router(HttpState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    });
    let mut http_stop = stop_rx.clone();
    tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = http_stop.wait_for(|stop| *stop).await;
        });
        if let Err(error) = serve.await {
            error!(%error, "the HTTP server stopped");
        }
    });

    let client = Client::try_default()
        .await
        .context("cannot configure the Kubernetes client: run in a pod or set KUBECONFIG")?;
    client
        .apiserver_version()
        .await
        .context("the API server does not answer")?;
    ready.store(true, Ordering::Relaxed);

    let mut elector = config.leader_elect.then(|| {
        Elector::new(
            Api::<Lease>::namespaced(client.clone(), &config.lease_namespace),
            &config.lease_name,
            &config.identity,
            config.lease_duration(),
        )
    });
    if let Some(elector) = elector.as_mut()
        && !acquire(elector, stop_rx.clone()).await?
    {
        return Ok(());
    }
    metrics.set_leader(true);
    info!(identity = %config.identity, "leading; starting the controller");
    if config.reports.policy_reports {
        tokio::spawn(crate::reports::run(
            client.clone(),
            policy.clone(),
            std::time::Duration::from_secs(config.reports.policy_report_interval_seconds),
            metrics.clone(),
            stop_rx.clone(),
        ));
    }

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "fluxfence-controller".into(),
            instance: Some(config.identity.clone()),
        },
    );
    // Shared sources have watches and a loop of their own; they run while this replica leads.
    let shared_sources = tokio::spawn(crate::shared_watch::run(
        client.clone(),
        policy.clone(),
        stop_rx.clone(),
    ));
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            Settings { service_account },
            policy,
            metrics.clone(),
        )
        .with_recorder(recorder),
    );
    let mut controller_stop = stop_rx.clone();
    let controller = controller(client)
        .graceful_shutdown_on(async move {
            let _ = controller_stop.wait_for(|stop| *stop).await;
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(config = %object, "reconciled"),
                // Already counted and logged by error_policy.
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
                // A watch failing (e.g. the Flux CRDs are not installed) is retried with backoff.
                Err(error) => warn!(%error, "controller"),
            }
        });
    let result = match elector.as_mut() {
        Some(elector) => {
            tokio::select! {
                () = controller => Ok(()),
                lost = hold(elector, stop_rx.clone()) => lost,
            }
        }
        None => {
            controller.await;
            Ok(())
        }
    };
    metrics.set_leader(false);
    shared_sources.abort();
    if let Some(elector) = &elector {
        elector.release().await;
    }
    result
}

fn controller(client: Client) -> Controller<FluxConfig> {
    let configs: Api<FluxConfig> = Api::all(client.clone());
    let mut controller = Controller::new(configs, watcher::Config::default().any_semantic());
    // Only what the controller wrote carries the label: the watches hold nothing else.
    for kind in OwnedKind::FLUX {
        let resource = kind.api_resource();
        controller = controller.owns_with(
            Api::<DynamicObject>::all_with(client.clone(), &resource),
            resource,
            watcher::Config::default()
                .labels(CONFIG_LABEL)
                .any_semantic(),
        );
    }
    controller
}

/// Waits for the Lease; `false` when shutdown came first.
async fn acquire(elector: &mut Elector, mut stop: watch::Receiver<bool>) -> anyhow::Result<bool> {
    loop {
        match elector.try_acquire_or_renew().await {
            Ok(true) => return Ok(true),
            Ok(false) => debug!("another replica holds the Lease"),
            Err(error) => warn!(%error, "cannot read or write the leader Lease"),
        }
        tokio::select! {
            () = tokio::time::sleep(elector.retry_period()) => {}
            _ = stop.wait_for(|stop| *stop) => return Ok(false),
        }
    }
}

/// Renews the Lease until shutdown (Ok) or until it is lost: another replica holds it, or no
/// renewal got through for a whole lease duration.
async fn hold(elector: &mut Elector, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut renewed = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(elector.retry_period()) => {}
            _ = stop.wait_for(|stop| *stop) => return Ok(()),
        }
        match elector.try_acquire_or_renew().await {
            Ok(true) => renewed = Instant::now(),
            Ok(false) => anyhow::bail!(
                "lost the leader Lease to another replica; exiting so this one restarts as a candidate"
            ),
            Err(error) => warn!(%error, "cannot renew the leader Lease"),
        }
        if renewed.elapsed() > elector.retry_period() * 3 {
            anyhow::bail!(
                "could not renew the leader Lease for a whole lease duration; exiting so no two replicas act at once"
            );
        }
    }
}
