//! End to end, in the envtest convention: etcd and kube-apiserver on loopback, the chart's CRDs
//! and the PolicyReport CRD, a mix of clean and violating Flux objects, and the
//! fluxfence-controller binary with `--policy-reports`. The reports it keeps from its watch
//! caches must be the ones `fluxfence audit -A --format policyreport` gives for the same
//! cluster, follow a change within an interval, and not be written again by a pass whose
//! content is unchanged. Runs when `KUBE_APISERVER` and `ETCD` name the binaries; otherwise
//! prints `skipped: no KUBE_APISERVER` and passes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, Process, binaries};
use fluxfence::Policy;
use fluxfence::audit::cluster::{self, Scope};
use fluxfence::audit::{self, policy_report};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The controller's interval: the least it accepts.
const INTERVAL: Duration = Duration::from_secs(10);

/// Polls `$check` (an async expression giving `Option<T>`) until it is `Some`, failing at once
/// when a started process exits.
macro_rules! wait_for {
    ($what:expr, $processes:expr, $limit:expr, $check:expr) => {{
        let started = Instant::now();
        loop {
            if let Some(value) = $check {
                break value;
            }
            for process in $processes.iter_mut() {
                process.check_alive();
            }
            assert!(
                started.elapsed() < $limit,
                "timed out after {:?} waiting for {}",
                $limit,
                $what
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }};
}

fn resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn api_for(client: &Client, object: &Value) -> Api<DynamicObject> {
    let kind = object["kind"].as_str().unwrap();
    let plural = match kind {
        "GitRepository" => "gitrepositories",
        "HelmRepository" => "helmrepositories",
        "Kustomization" => "kustomizations",
        "HelmRelease" => "helmreleases",
        "ServiceAccount" => "serviceaccounts",
        other => panic!("no plural for {other}"),
    };
    let resource = resource(object["apiVersion"].as_str().unwrap(), kind, plural);
    let namespace = object["metadata"]["namespace"].as_str().unwrap();
    Api::namespaced_with(client.clone(), namespace, &resource)
}

async fn create(client: &Client, object: &Value) {
    let dynamic: DynamicObject = serde_json::from_value(object.clone()).unwrap();
    api_for(client, object)
        .create(&PostParams::default(), &dynamic)
        .await
        .unwrap_or_else(|e| panic!("cannot create {object}: {e}"));
}

fn git_repository(namespace: &str) -> Value {
    json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "repo", "namespace": namespace},
        "spec": {"interval": "5m", "url": "https://github.com/org/repo", "ref": {"branch": "main"}}
    })
}

fn helm_repository(namespace: &str) -> Value {
    json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
        "metadata": {"name": "charts", "namespace": namespace},
        "spec": {"interval": "1h", "url": "https://charts.example.com"}
    })
}

fn kustomization(namespace: &str, name: &str, source_namespace: &str, account: &str) -> Value {
    json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"interval": "10m", "path": "./deploy", "prune": true, "serviceAccountName": account,
                 "sourceRef": {"kind": "GitRepository", "name": "repo", "namespace": source_namespace}}
    })
}

fn helm_release(namespace: &str, name: &str, account: &str) -> Value {
    json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"interval": "10m", "serviceAccountName": account, "chart": {"spec": {
            "chart": "app", "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}}
    })
}

fn service_account(namespace: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount",
           "metadata": {"name": name, "namespace": namespace}})
}

fn reports_api(client: &Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &resource(policy_report::API_VERSION, "PolicyReport", "policyreports"),
    )
}

/// The stored reports, by namespace, as `(resourceVersion, what fluxfence wrote)`.
async fn stored(client: &Client) -> BTreeMap<String, (String, Value)> {
    let list = reports_api(client)
        .list(&ListParams::default())
        .await
        .unwrap();
    list.items
        .into_iter()
        .map(|report| {
            let version = report.resource_version().unwrap_or_default();
            let namespace = report.namespace().unwrap_or_default();
            let value = serde_json::to_value(&report).unwrap();
            (namespace, (version, written_part(&value)))
        })
        .collect()
}

/// What fluxfence writes of a report: the fields the API server adds left out.
fn written_part(report: &Value) -> Value {
    let mut part = report.clone();
    let metadata = &report["metadata"];
    part["metadata"] = json!({
        "name": metadata["name"],
        "namespace": metadata["namespace"],
        "labels": metadata["labels"],
    });
    part
}

/// What `fluxfence audit -A --format policyreport` gives for the cluster now.
async fn cli_reports(client: &Client) -> BTreeMap<String, Value> {
    let snapshot = cluster::read(client, "e2e", &Scope::AllNamespaces)
        .await
        .unwrap();
    policy_report::reports(&audit::judge(snapshot, &Policy::azure_default(), &|_| true))
        .into_iter()
        .map(|(namespace, report)| (namespace, written_part(&report)))
        .collect()
}

/// The controller's `/metrics`.
async fn metrics(port: u16) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

fn passes(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("fluxfence_policy_report_passes_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_reports_are_the_clis_and_follow_the_cluster() {
    let Some((apiserver, etcd)) = binaries() else {
        println!("skipped: no KUBE_APISERVER");
        return;
    };
    let mut cluster = Cluster::start(&apiserver, &etcd).await;
    cluster.install_crds().await;
    let policy_report_crd = std::env::var_os("POLICY_REPORT_CRD")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../testdata/crds/wgpolicyk8s.io_policyreports.yaml")
            },
            PathBuf::from,
        );
    cluster.install_crd_files(&[policy_report_crd]).await;
    let client = cluster.client.clone();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for name in ["cluster-config", "team-a", "team-b", "flux-system"] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
            .unwrap();
    }
    for object in [
        // The platform's: the default account, a release beside its source. Clean.
        service_account("cluster-config", "flux-applier"),
        helm_repository("cluster-config"),
        helm_release("cluster-config", "platform", "flux-applier"),
        // Tenant a has its account; one Kustomization is clean, one reaches into flux-system.
        service_account("team-a", "deployer"),
        git_repository("team-a"),
        kustomization("team-a", "apps", "team-a", "deployer"),
        kustomization("team-a", "crossing", "flux-system", "deployer"),
        // Tenant b has no account: its release cannot be impersonated (FF111).
        helm_repository("team-b"),
        helm_release("team-b", "app", "deployer"),
        // flux-system is exempt from the account rules; its Kustomization is clean.
        git_repository("flux-system"),
        kustomization("flux-system", "platform", "cluster-config", "flux-applier"),
    ] {
        create(&client, &object).await;
    }

    let interval = format!("--policy-report-interval-seconds={}", INTERVAL.as_secs());
    let (controller, port) = cluster.start_controller(&["--policy-reports", &interval]);
    let mut processes: Vec<Process> = vec![controller];

    // The first pass, once every cache is listed: the CLI's reports, one per namespace.
    let expected = cli_reports(&client).await;
    assert_eq!(expected.len(), 4, "{expected:?}");
    let first = wait_for!("the first reports", processes, INTERVAL * 3, {
        let now = stored(&client).await;
        (now.len() == expected.len()).then_some(now)
    });
    let contents: BTreeMap<String, Value> = first
        .iter()
        .map(|(namespace, (_, report))| (namespace.clone(), report.clone()))
        .collect();
    assert_eq!(contents, expected);
    let text = metrics(port).await;
    assert!(
        text.contains(
            "fluxfence_policy_results{rule=\"FF111\",severity=\"deny\",namespace=\"team-b\"} 1"
        ),
        "{text}"
    );

    // A change no finding sees (a label on a clean Kustomization): a pass, and no write.
    let before = passes(&metrics(port).await);
    api_for(
        &client,
        &kustomization("team-a", "apps", "team-a", "deployer"),
    )
    .patch(
        "apps",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
    )
    .await
    .unwrap();
    wait_for!("a pass after the label", processes, INTERVAL * 3, {
        (passes(&metrics(port).await) > before).then_some(())
    });
    let unchanged = stored(&client).await;
    for (namespace, (version, _)) in &first {
        assert_eq!(
            &unchanged[namespace].0, version,
            "the report of {namespace} was written again with the same content"
        );
    }

    // Tenant b's account appears: its report follows, as the CLI's does.
    create(&client, &service_account("team-b", "deployer")).await;
    let expected = cli_reports(&client).await;
    assert_eq!(expected["team-b"]["summary"]["fail"], 0);
    wait_for!("team-b's report without FF111", processes, INTERVAL * 3, {
        let now = stored(&client).await;
        (now.get("team-b").map(|(_, report)| report) == expected.get("team-b")).then_some(())
    });
    let now = stored(&client).await;
    assert_eq!(
        now["team-a"].0, first["team-a"].0,
        "team-a's report did not change and was not written"
    );
}
