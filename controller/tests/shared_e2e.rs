//! Shared sources end to end, in the envtest convention: etcd and kube-apiserver on loopback,
//! the chart's CRDs, the fluxfence webhook in process (mutating and validating, registered by
//! URL), and the fluxfence-controller binary, all under one policy that shares an OCIRepository
//! of `flux-system` with tenant `team-a`. Runs when `KUBE_APISERVER` and `ETCD` name the
//! binaries; otherwise prints `skipped: no KUBE_APISERVER` and passes.
//!
//! No source-controller runs: the shared source's artifact is written by hand. No garbage
//! collector runs either: the controller's own pruning removes what no HelmRelease references.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{CONTROLLER_USER, Cluster, Process, binaries};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const POLICY: &str = "enforce: true
configNamespace: cluster-config
defaultServiceAccount:
  name: flux-applier
  namespaces: [cluster-config, team-a, team-b]
exemptNamespaces: [flux-system]
tenants:
  - {name: team-a, namespaces: [team-a]}
  - {name: team-b, namespaces: [team-b]}
sharedSources:
  - {kind: OCIRepository, namespace: flux-system, name: podinfo, tenants: [team-a]}
";

/// Polls `$check` (an async expression giving `Option<T>`) until it is `Some`, failing at once
/// when a started process exits.
macro_rules! wait_for {
    ($what:expr, $processes:expr, $check:expr) => {{
        let started = Instant::now();
        loop {
            if let Some(value) = $check {
                break value;
            }
            for process in $processes.iter_mut() {
                process.check_alive();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "timed out after 60 s waiting for {}",
                $what
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }};
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn helm_releases(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        namespace,
        &resource(
            "helm.toolkit.fluxcd.io",
            "v2",
            "HelmRelease",
            "helmreleases",
        ),
    )
}

fn oci_repositories(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        "flux-system",
        &resource(
            "source.toolkit.fluxcd.io",
            "v1",
            "OCIRepository",
            "ocirepositories",
        ),
    )
}

fn external_artifacts(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        namespace,
        &resource(
            "source.toolkit.fluxcd.io",
            "v1",
            "ExternalArtifact",
            "externalartifacts",
        ),
    )
}

/// The webhook under `policy`, serving on loopback with a throwaway CA, registered for
/// HelmReleases and HelmRepositories as both a mutating and a validating webhook, trusting
/// the copies of shared sources that `trusted_publishers` write.
async fn start_webhook(
    client: &Client,
    dir: &Path,
    policy: &Path,
    trusted_publishers: &[&str],
) -> tokio::sync::oneshot::Sender<()> {
    use fluxfence_webhook::config::{Config, Limits, LogFormat, Shutdown};
    use fluxfence_webhook::metrics::Metrics;
    use fluxfence_webhook::server::Server;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let tls = dir.join("webhook-tls");
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::write(tls.join("tls.crt"), leaf.pem()).unwrap();
    std::fs::write(tls.join("tls.key"), leaf_key.serialize_pem()).unwrap();
    let server = Server::bind(
        Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls_cert_file: tls.join("tls.crt"),
            tls_key_file: tls.join("tls.key"),
            client_ca_file: None,
            policy_file: Some(policy.to_owned()),
            namespace: Some("fluxfence-system".into()),
            max_body_bytes: 3 * 1024 * 1024,
            reload_interval_seconds: 10,
            log_format: LogFormat::Text,
            trusted_publishers: trusted_publishers.iter().map(|u| (*u).to_owned()).collect(),
            limits: Limits::default(),
            shutdown: Shutdown {
                drain_seconds: 0,
                shutdown_timeout_seconds: 5,
            },
        },
        Arc::new(Metrics::new()),
    )
    .await
    .unwrap();
    let port = server.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));

    let ca_bundle = serde_json::to_value(k8s_openapi::ByteString(ca.pem().into_bytes())).unwrap();
    for (kind, plural, name, endpoint) in [
        (
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            "mutate.fluxfence.dev",
            "mutate",
        ),
        (
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            "validate.fluxfence.dev",
            "validate",
        ),
    ] {
        let registration = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": { "name": "fluxfence" },
            "webhooks": [{
                "name": name,
                "clientConfig": { "url": format!("https://127.0.0.1:{port}/{endpoint}"), "caBundle": ca_bundle },
                "rules": [
                    { "apiGroups": ["helm.toolkit.fluxcd.io"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
                      "resources": ["helmreleases"], "scope": "Namespaced" },
                    { "apiGroups": ["source.toolkit.fluxcd.io"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
                      "resources": ["helmrepositories"], "scope": "Namespaced" },
                ],
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 5,
            }],
        });
        let api: Api<DynamicObject> = Api::all_with(
            client.clone(),
            &resource("admissionregistration.k8s.io", "v1", kind, plural),
        );
        api.patch(
            "fluxfence",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&registration),
        )
        .await
        .unwrap();
    }
    stop
}

fn release(namespace: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": { "name": "podinfo", "namespace": namespace },
        "spec": {
            "interval": "10m",
            "chartRef": { "kind": "OCIRepository", "name": "podinfo", "namespace": "flux-system" },
        },
    }))
    .unwrap()
}

fn source_status(revision: &str) -> Value {
    json!({ "status": {
        "observedGeneration": 1,
        "artifact": {
            "digest": format!("sha256:{revision}"),
            "lastUpdateTime": "2026-01-01T00:00:00Z",
            "path": format!("ocirepository/flux-system/podinfo/{revision}.tar.gz"),
            "revision": format!("6.8.0@sha256:{revision}"),
            "size": 4096,
            "url": format!("http://source-controller.flux-system.svc.cluster.local./ocirepository/flux-system/podinfo/{revision}.tar.gz"),
        },
        "conditions": [{ "type": "Ready", "status": "True", "reason": "Succeeded",
            "message": "stored artifact by hand", "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1 }],
    }})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_oci_repository_reaches_a_tenant_as_an_external_artifact() {
    let Some((apiserver, etcd)) = binaries() else {
        println!("skipped: no KUBE_APISERVER");
        return;
    };
    let mut cluster = Cluster::start(&apiserver, &etcd).await;
    cluster.install_crds().await;
    let client = cluster.client.clone();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in ["cluster-config", "flux-system", "team-a", "team-b"] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
            .unwrap();
    }
    let policy = cluster.dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let _stop_webhook = start_webhook(&client, cluster.dir.path(), &policy, &[]).await;

    // A tenant the entry does not name is denied, and the message names the entry. The first
    // such denial also says the registration took effect.
    let mut processes: Vec<Process> = Vec::new();
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let refusal = wait_for!("the webhook to refuse team-b", processes, {
        match helm_releases(&client, "team-b")
            .create(&dry_run, &release("team-b"))
            .await
        {
            Err(kube::Error::Api(status)) if status.message.contains("FF101") => {
                Some(status.message.clone())
            }
            _ => None,
        }
    });
    assert!(
        refusal.contains(
            "sharedSources[0] (OCIRepository flux-system/podinfo) is not shared with namespace `team-b`"
        ),
        "{refusal}"
    );

    // The platform's source, with the artifact source-controller would have stored.
    let sources = oci_repositories(&client);
    sources
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "OCIRepository",
                "metadata": { "name": "podinfo", "namespace": "flux-system" },
                "spec": { "interval": "10m", "url": "oci://ghcr.io/stefanprodan/charts/podinfo", "ref": { "semver": "6.x" } },
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    sources
        .patch_status(
            "podinfo",
            &PatchParams::default(),
            &Patch::Merge(&source_status("aaaa")),
        )
        .await
        .unwrap();

    let (controller, _) = cluster.start_controller(&[&format!("--policy={}", policy.display())]);
    processes.push(controller);

    // team-a's HelmRelease is admitted with its reference rewritten to the published object.
    let created = helm_releases(&client, "team-a")
        .create(&PostParams::default(), &release("team-a"))
        .await
        .unwrap();
    assert_eq!(
        created.data["spec"]["chartRef"],
        json!({ "kind": "ExternalArtifact", "name": "flux-system.podinfo", "namespace": "team-a" })
    );

    // The controller publishes it, mirroring the source's artifact, owned by the HelmRelease.
    let artifacts = external_artifacts(&client, "team-a");
    let published = wait_for!("ExternalArtifact team-a/flux-system.podinfo", processes, {
        artifacts
            .get_opt("flux-system.podinfo")
            .await
            .unwrap()
            .filter(|ea| ea.data["status"]["artifact"].is_object())
    });
    assert_eq!(
        published.data["status"]["artifact"],
        source_status("aaaa")["status"]["artifact"]
    );
    assert_eq!(published.data["status"]["conditions"][0]["status"], "True");
    assert_eq!(
        published
            .labels()
            .get("fluxfence.dev/shared-source")
            .map(String::as_str),
        Some("flux-system.podinfo")
    );
    assert!(
        published
            .owner_references()
            .iter()
            .any(|o| o.kind == "HelmRelease" && Some(&o.uid) == created.uid().as_ref()),
        "{:?}",
        published.owner_references()
    );
    assert!(
        external_artifacts(&client, "team-b")
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // A new revision of the source reaches the published artifact.
    sources
        .patch_status(
            "podinfo",
            &PatchParams::default(),
            &Patch::Merge(&source_status("bbbb")),
        )
        .await
        .unwrap();
    wait_for!("the new revision in team-a", processes, {
        let ea = artifacts.get("flux-system.podinfo").await.unwrap();
        (ea.data["status"]["artifact"]["revision"] == "6.8.0@sha256:bbbb").then_some(())
    });

    // Nothing references it any more: it is removed (no garbage collector runs here).
    helm_releases(&client, "team-a")
        .delete("podinfo", &DeleteParams::default())
        .await
        .unwrap();
    wait_for!("the published artifact to be removed", processes, {
        artifacts
            .get_opt("flux-system.podinfo")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    });
    for process in processes.iter_mut() {
        process.check_alive();
    }
}

/// team-a may pull only from its own repositories; the platform shares its chart repository.
const COPY_POLICY: &str = "enforce: true
configNamespace: cluster-config
defaultServiceAccount:
  name: flux-applier
  namespaces: [cluster-config, team-a]
exemptNamespaces: [flux-system]
tenants:
  - {name: team-a, namespaces: [team-a], sourceUrls: ['https://github.com/example-org/team-a-*']}
sharedSources:
  - {kind: HelmRepository, namespace: flux-system, name: bitnami, tenants: [team-a]}
";

const BITNAMI: &str = "https://charts.bitnami.com/bitnami";

fn helm_repositories(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        namespace,
        &resource(
            "source.toolkit.fluxcd.io",
            "v1",
            "HelmRepository",
            "helmrepositories",
        ),
    )
}

/// A HelmRepository in `namespace` labelled as the published copy of `flux-system/bitnami`.
fn labelled_copy(namespace: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmRepository",
        "metadata": {
            "name": "flux-system.bitnami",
            "namespace": namespace,
            "labels": {
                "fluxfence.dev/shared-source": "flux-system.bitnami",
                "fluxfence.dev/shared-source-kind": "HelmRepository",
            },
        },
        "spec": { "interval": "1h", "url": BITNAMI },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_helm_repository_reaches_a_tenant_as_a_copy_the_webhook_admits() {
    let Some((apiserver, etcd)) = binaries() else {
        println!("skipped: no KUBE_APISERVER");
        return;
    };
    let mut cluster = Cluster::start(&apiserver, &etcd).await;
    cluster.install_crds().await;
    let client = cluster.client.clone();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in ["cluster-config", "flux-system", "team-a"] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
            .unwrap();
    }
    let policy = cluster.dir.path().join("policy.yaml");
    std::fs::write(&policy, COPY_POLICY).unwrap();
    let _stop_webhook =
        start_webhook(&client, cluster.dir.path(), &policy, &[CONTROLLER_USER]).await;

    // The labels are anybody's to write: the same copy from the tests' own user is team-a's
    // HelmRepository, outside its sourceUrls. The first denial also says the registration
    // took effect.
    let mut processes: Vec<Process> = Vec::new();
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let refusal = wait_for!("the webhook to refuse a copy the tests write", processes, {
        match helm_repositories(&client, "team-a")
            .create(&dry_run, &labelled_copy("team-a"))
            .await
        {
            Err(kube::Error::Api(status)) if status.message.contains("FF140") => {
                Some(status.message.clone())
            }
            _ => None,
        }
    });
    assert!(refusal.contains("sourceUrls"), "{refusal}");

    // The platform's chart repository (exempt namespace: its URL is the platform's choice).
    helm_repositories(&client, "flux-system")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "HelmRepository",
                "metadata": { "name": "bitnami", "namespace": "flux-system" },
                "spec": { "interval": "1h", "url": BITNAMI },
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let (controller, _) = cluster.start_controller(&[&format!("--policy={}", policy.display())]);
    processes.push(controller);

    // team-a's HelmRelease is admitted with its chart's source rewritten to the copy.
    let release: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": { "name": "redis", "namespace": "team-a" },
        "spec": {
            "interval": "10m",
            "chart": { "spec": { "chart": "redis",
                "sourceRef": { "kind": "HelmRepository", "name": "bitnami", "namespace": "flux-system" } } },
        },
    }))
    .unwrap();
    let created = helm_releases(&client, "team-a")
        .create(&PostParams::default(), &release)
        .await
        .unwrap();
    assert_eq!(
        created.data["spec"]["chart"]["spec"]["sourceRef"],
        json!({ "kind": "HelmRepository", "name": "flux-system.bitnami", "namespace": "team-a" })
    );

    // The controller's copy passes the same webhook: its URL is the shared source's.
    let copies = helm_repositories(&client, "team-a");
    let copy = wait_for!("HelmRepository team-a/flux-system.bitnami", processes, {
        copies.get_opt("flux-system.bitnami").await.unwrap()
    });
    assert_eq!(copy.data["spec"]["url"], BITNAMI);
    assert_eq!(
        copy.labels()
            .get("fluxfence.dev/shared-source")
            .map(String::as_str),
        Some("flux-system.bitnami")
    );
    for process in processes.iter_mut() {
        process.check_alive();
    }
}
