//! End to end: `fluxfence audit` against etcd + kube-apiserver on loopback with the Flux CRDs
//! and the PolicyReport CRD: a mix of clean and violating Flux objects, a tenant's
//! ServiceAccount in one namespace and none in another. The audit must report exactly the
//! violations, and its PolicyReports must be accepted by the API server.
//!
//! A second test runs the webhook with its ServiceAccount cache against the same kind of
//! cluster: an object impersonating a missing account is denied, and admitted once the
//! account exists.
//!
//! Runs when `KUBE_APISERVER` and `ETCD` name the binaries (`KUBECTL`, `FLUX_CRDS` as in the
//! e2e test; `POLICY_REPORT_CRD` optional, else `testdata/crds/wgpolicyk8s.io_policyreports.yaml`).
//! Otherwise it prints "skipped: no KUBE_APISERVER" and passes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{
    Cluster, Webhook, base64, binaries_or_skip, find_kubectl, install_flux_crds, wait_until,
};
use common::{Pki, repo_root};
use fluxfence::Policy;
use fluxfence::audit::cluster::{self, Scope};
use fluxfence::audit::{self, policy_report};
use fluxfence_webhook::accounts::ServiceAccountCache;
use serde_json::{Value, json};

fn policy_report_crd() -> PathBuf {
    std::env::var_os("POLICY_REPORT_CRD")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || repo_root().join("testdata/crds/wgpolicyk8s.io_policyreports.yaml"),
            PathBuf::from,
        )
}

/// A kube client for the harness's kubeconfig, as `fluxfence audit --kubeconfig` makes one.
async fn client(kubeconfig: &Path) -> kube::Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_reports_exactly_the_violations_and_its_reports_are_accepted() {
    let Some((apiserver, etcd)) = binaries_or_skip() else {
        return;
    };
    let kubectl = find_kubectl().expect("KUBE_APISERVER is set but no kubectl: set KUBECTL");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = Pki::new("fluxfence audit e2e CA");
    let Cluster {
        etcd: _etcd,
        apiserver: _apiserver,
        kubectl,
        port: _,
    } = Cluster::start(Path::new(&etcd), Path::new(&apiserver), kubectl, dir, &pki);
    install_flux_crds(&kubectl);
    kubectl.ok(
        &["apply", "-f", &policy_report_crd().display().to_string()],
        None,
    );
    kubectl.ok(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/policyreports.wgpolicyk8s.io",
        ],
        None,
    );
    for namespace in ["cluster-config", "team-a", "team-b", "flux-system"] {
        kubectl.ok(&["create", "namespace", namespace], None);
    }

    let objects = [
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
        // flux-system is exempt: its cross-namespace Kustomization is the platform's.
        git_repository("flux-system"),
        kustomization("flux-system", "platform", "cluster-config", "flux-applier"),
    ];
    for object in &objects {
        let (created, output) = kubectl.apply(object, &[]);
        assert!(created, "{object}: {output}");
    }

    let client = client(&kubectl.kubeconfig).await;
    let snapshot = cluster::read(&client, "e2e", &Scope::AllNamespaces)
        .await
        .unwrap();
    let audit = audit::judge(snapshot, &Policy::azure_default(), &|_| true);

    let found: BTreeSet<(String, &str)> = audit
        .report
        .diagnostics
        .iter()
        .map(|d| (d.file.clone(), d.finding.code))
        .collect();
    let expected: BTreeSet<(String, &str)> = [
        ("team-a/Kustomization/crossing".to_owned(), "FF101"),
        ("team-b/HelmRelease/app".to_owned(), "FF111"),
    ]
    .into_iter()
    .collect();
    assert_eq!(found, expected);
    assert_eq!(audit.objects.len(), 9, "every Flux object, each once");
    assert_eq!(audit.report.exit_code(), 1);

    // `fluxfence audit -A --format policyreport | kubectl apply -f -`
    let reports = policy_report::render(&audit);
    kubectl.ok(&["apply", "-f", "-"], Some(&reports));
    let stored: Value = serde_json::from_str(&kubectl.ok(
        &["get", "policyreports.wgpolicyk8s.io", "-A", "-o", "json"],
        None,
    ))
    .unwrap();
    let summaries: Vec<(String, Value)> = stored["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metadata"]["namespace"].as_str().unwrap().to_owned(),
                r["summary"].clone(),
            )
        })
        .collect();
    let summary = |pass: u32, fail: u32| json!({"pass": pass, "fail": fail, "warn": 0, "error": 0, "skip": 0});
    assert_eq!(
        summaries,
        [
            ("cluster-config".to_owned(), summary(2, 0)),
            ("flux-system".to_owned(), summary(2, 0)),
            ("team-a".to_owned(), summary(2, 1)),
            ("team-b".to_owned(), summary(1, 1)),
        ]
    );

    // Once the missing account exists, the audit finds only the cross-namespace reference.
    kubectl.apply(&service_account("team-b", "deployer"), &[]);
    let snapshot = cluster::read(&client, "e2e", &Scope::AllNamespaces)
        .await
        .unwrap();
    let audit = audit::judge(snapshot, &Policy::azure_default(), &|_| true);
    let codes: Vec<&str> = audit
        .report
        .diagnostics
        .iter()
        .map(|d| d.finding.code)
        .collect();
    assert_eq!(codes, ["FF101"]);
}

/// A ValidatingWebhookConfiguration for HelmReleases, calling the in-process webhook.
fn validating_webhook(port: u16, ca_pem: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "fluxfence"},
        "webhooks": [{
            "name": "validate.fluxfence.dev",
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/validate"),
                             "caBundle": base64(ca_pem.as_bytes())},
            "rules": [{"apiGroups": ["helm.toolkit.fluxcd.io"], "apiVersions": ["*"],
                       "operations": ["CREATE", "UPDATE"], "resources": ["helmreleases"],
                       "scope": "Namespaced"}],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        }],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_with_the_cache_denies_a_missing_account_until_it_exists() {
    let Some((apiserver, etcd)) = binaries_or_skip() else {
        return;
    };
    let kubectl = find_kubectl().expect("KUBE_APISERVER is set but no kubectl: set KUBECTL");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = Pki::new("fluxfence cache e2e CA");
    let Cluster {
        mut etcd,
        mut apiserver,
        kubectl,
        port: _,
    } = Cluster::start(Path::new(&etcd), Path::new(&apiserver), kubectl, dir, &pki);
    install_flux_crds(&kubectl);
    for namespace in ["team-b", "fluxfence-system"] {
        kubectl.ok(&["create", "namespace", namespace], None);
    }

    let cache = ServiceAccountCache::start(client(&kubectl.kubeconfig).await);
    let webhook =
        Webhook::start_with_accounts(dir, &pki, "fluxfence-system", Some(Arc::clone(&cache))).await;
    wait_until(
        &mut [&mut etcd, &mut apiserver],
        Duration::from_secs(30),
        "the cache's first list",
        || cache.is_synced(),
    );
    kubectl.apply(&validating_webhook(webhook.addr.port(), &pki.ca_pem), &[]);

    let release = json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": "app", "namespace": "team-b"},
        "spec": {"interval": "10m", "serviceAccountName": "deployer", "chart": {"spec": {
            "chart": "app", "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}}
    });
    // The registration takes effect within a second or two: until the first denial.
    let mut denial = String::new();
    wait_until(
        &mut [&mut etcd, &mut apiserver],
        Duration::from_secs(30),
        "the webhook to deny",
        || {
            let (created, output) = kubectl.apply(&release, &["--dry-run=server"]);
            denial = output;
            !created
        },
    );
    assert!(
        denial.contains("FF111") && denial.contains("does not exist"),
        "{denial}"
    );

    kubectl.apply(&service_account("team-b", "deployer"), &[]);
    // The watch brings the new account within moments.
    wait_until(
        &mut [&mut etcd, &mut apiserver],
        Duration::from_secs(30),
        "the account to be admitted",
        || kubectl.apply(&release, &[]).0,
    );
    webhook.stop().await;
}
