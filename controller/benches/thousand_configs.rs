//! 1,000 FluxConfigs against a real API server (envtest convention: etcd and kube-apiserver on
//! loopback, run when `KUBE_APISERVER` and `ETCD` name the binaries).
//!
//! Reports: the time from the first create until every object the configs own exists and every
//! status names its generation; the controller's peak RSS; and, after a restart of the
//! controller (a full resync of the unchanged 1,000), the server-side applies it sent and how
//! many of them changed an object (a changed resourceVersion).
//!
//! `cargo bench -p fluxfence-controller --bench thousand_configs` (CONFIGS=N for another count).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/cluster.rs"]
mod cluster;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cluster::{Cluster, Process, binaries};
use fluxfence_controller::crd::FluxConfig;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NAMESPACES: usize = 10;

fn kinds() -> Vec<(ApiResource, usize)> {
    let resource = |group: &str, version: &str, kind: &str, plural: &str| ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    };
    // (kind, objects per FluxConfig)
    vec![
        (
            resource(
                "kustomize.toolkit.fluxcd.io",
                "v1",
                "Kustomization",
                "kustomizations",
            ),
            2,
        ),
        (
            resource(
                "source.toolkit.fluxcd.io",
                "v1",
                "GitRepository",
                "gitrepositories",
            ),
            1,
        ),
        (
            resource(
                "rbac.authorization.k8s.io",
                "v1",
                "RoleBinding",
                "rolebindings",
            ),
            1,
        ),
    ]
}

/// `kind/namespace/name` → resourceVersion of everything the configs own, and the configs.
async fn versions(client: &Client) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    let labelled = ListParams::default().labels("fluxfence.dev/config");
    for (resource, _) in kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        for object in api.list_metadata(&labelled).await.unwrap().items {
            versions.insert(
                format!(
                    "{}/{}/{}",
                    resource.kind,
                    object.namespace().unwrap_or_default(),
                    object.name_any()
                ),
                object.resource_version().unwrap_or_default(),
            );
        }
    }
    let configs: Api<FluxConfig> = Api::all(client.clone());
    for config in configs.list(&ListParams::default()).await.unwrap().items {
        versions.insert(
            format!(
                "FluxConfig/{}/{}",
                config.namespace().unwrap_or_default(),
                config.name_any()
            ),
            config.resource_version().unwrap_or_default(),
        );
    }
    versions
}

async fn owned_counts(client: &Client) -> Vec<usize> {
    let mut counts = Vec::new();
    let labelled = ListParams::default().labels("fluxfence.dev/config");
    for (resource, _) in kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        counts.push(api.list_metadata(&labelled).await.unwrap().items.len());
    }
    counts
}

async fn all_observed(client: &Client, configs: usize) -> bool {
    let api: Api<FluxConfig> = Api::all(client.clone());
    let list = api.list(&ListParams::default()).await.unwrap();
    list.items.len() == configs
        && list
            .items
            .iter()
            .all(|c| c.status.as_ref().and_then(|s| s.observed_generation) == c.metadata.generation)
}

/// A counter of the controller's /metrics.
async fn controller_metric(port: u16, name: &str) -> f64 {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    metric(&text, name)
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Server-side applies the API server has served (its own request counter).
async fn apiserver_applies(client: &Client) -> f64 {
    let text = client
        .request_text(http::Request::get("/metrics").body(Vec::new()).unwrap())
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("apiserver_request_total{") && l.contains("verb=\"APPLY\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn wait_until<F, Fut>(
    what: &str,
    limit: Duration,
    processes: &mut [&mut Process],
    mut check: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        for process in processes.iter_mut() {
            process.check_alive();
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn spec(index: usize) -> serde_json::Value {
    json!({
        "apiVersion": "fluxfence.dev/v1alpha1",
        "kind": "FluxConfig",
        "metadata": { "name": format!("tenant-{index:04}"), "namespace": format!("bench-{}", index % NAMESPACES) },
        "spec": {
            "gitRepository": {
                "url": format!("https://git.example.com/org/tenant-{index:04}"),
                "repositoryRef": { "branch": "main" },
            },
            "kustomizations": {
                "infra": { "path": "./infrastructure", "prune": true },
                "apps": { "path": "./apps", "prune": true, "dependsOn": ["infra"] },
            },
        },
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some((apiserver, etcd)) = binaries() else {
        println!("skipped: no KUBE_APISERVER");
        return;
    };
    let configs: usize = std::env::var("CONFIGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut cluster = Cluster::start(&apiserver, &etcd).await;
    cluster.install_crds().await;
    let client = cluster.client.clone();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for i in 0..NAMESPACES {
        let namespace =
            serde_json::from_value(json!({"metadata": {"name": format!("bench-{i}")}})).unwrap();
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
    }

    let (mut controller, port) = cluster.start_controller(&[]);
    let started = Instant::now();
    futures::stream::iter(0..configs)
        .map(|i| {
            let client = client.clone();
            async move {
                let object: FluxConfig = serde_json::from_value(spec(i)).unwrap();
                let api: Api<FluxConfig> = Api::namespaced(client, &object.namespace().unwrap());
                api.create(&PostParams::default(), &object)
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
    let expected: Vec<usize> = kinds().iter().map(|(_, per)| per * configs).collect();
    wait_until(
        "every owned object",
        Duration::from_secs(600),
        &mut [&mut controller],
        || {
            let client = client.clone();
            let expected = expected.clone();
            async move { owned_counts(&client).await == expected }
        },
    )
    .await;
    let all_exist = started.elapsed();
    wait_until(
        "every status at its generation",
        Duration::from_secs(600),
        &mut [&mut controller],
        || {
            let client = client.clone();
            async move { all_observed(&client, configs).await }
        },
    )
    .await;
    let all_reported = started.elapsed();
    let rss_first = controller.peak_rss_kib();

    // A full resync of the unchanged configs: a new controller process reconciles each once.
    drop(controller);
    let before = versions(&client).await;
    let applies_before = apiserver_applies(&client).await;
    let (mut resync, resync_port) = cluster.start_controller(&[]);
    let resync_started = Instant::now();
    wait_until(
        "a reconcile of every config",
        Duration::from_secs(600),
        &mut [&mut resync],
        || async {
            controller_metric(resync_port, "fluxfence_controller_reconciles_total").await
                >= configs as f64
        },
    )
    .await;
    let resync_time = resync_started.elapsed();
    let after = versions(&client).await;
    let applies = apiserver_applies(&client).await - applies_before;
    let changed = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .count();
    let errors =
        controller_metric(resync_port, "fluxfence_controller_reconcile_errors_total").await;
    let rss_resync = resync.peak_rss_kib();
    let _ = port;

    println!(
        "configs: {configs} ({} owned objects)",
        expected.iter().sum::<usize>()
    );
    println!(
        "every owned object exists after: {:.2} s",
        all_exist.as_secs_f64()
    );
    println!(
        "every status at its generation after: {:.2} s",
        all_reported.as_secs_f64()
    );
    println!(
        "controller peak RSS (first run): {} KiB",
        rss_first.unwrap_or(0)
    );
    println!(
        "resync of the unchanged configs: {:.2} s, {applies} applies served, {changed} objects changed, {errors} reconcile errors",
        resync_time.as_secs_f64()
    );
    println!(
        "controller peak RSS (resync): {} KiB",
        rss_resync.unwrap_or(0)
    );
}
