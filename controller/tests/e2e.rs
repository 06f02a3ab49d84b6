//! End to end, in the envtest convention: etcd and kube-apiserver on loopback, the chart's CRDs,
//! the fluxfence webhook (in-process) registered by URL with `failurePolicy: Fail`, and the
//! fluxfence-controller binary. Runs when `KUBE_APISERVER` and `ETCD` name the binaries;
//! otherwise prints `skipped: no KUBE_APISERVER` and passes.
//!
//! No Flux controller runs: the test sets the Flux objects' status by hand. No garbage collector
//! runs either: owner references are asserted, not the cascade.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, Process, binaries};
use fluxfence_controller::crd::{ComplianceState, FluxConfig};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const NS: &str = "cluster-config";

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

fn flux(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: "v1".into(),
        api_version: format!("{group}/v1"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn kustomizations(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        NS,
        &flux(
            "kustomize.toolkit.fluxcd.io",
            "Kustomization",
            "kustomizations",
        ),
    )
}

fn git_repositories(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        NS,
        &flux(
            "source.toolkit.fluxcd.io",
            "GitRepository",
            "gitrepositories",
        ),
    )
}

/// The webhook, serving on loopback with a throwaway CA, and its registration.
async fn start_webhook(client: &Client, dir: &std::path::Path) -> tokio::sync::oneshot::Sender<()> {
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
            policy_file: None,
            namespace: Some("fluxfence-system".into()),
            max_body_bytes: 3 * 1024 * 1024,
            reload_interval_seconds: 10,
            log_format: LogFormat::Text,
            trusted_publishers: Vec::new(),
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
    let registration = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": { "name": "fluxfence" },
        "webhooks": [{
            "name": "validate.fluxfence.dev",
            "clientConfig": { "url": format!("https://127.0.0.1:{port}/validate"), "caBundle": ca_bundle },
            "rules": [
                { "apiGroups": ["source.toolkit.fluxcd.io"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
                  "resources": ["gitrepositories", "buckets", "ocirepositories"], "scope": "Namespaced" },
                { "apiGroups": ["kustomize.toolkit.fluxcd.io"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
                  "resources": ["kustomizations"], "scope": "Namespaced" },
            ],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        }],
    });
    let api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource {
            group: "admissionregistration.k8s.io".into(),
            version: "v1".into(),
            api_version: "admissionregistration.k8s.io/v1".into(),
            kind: "ValidatingWebhookConfiguration".into(),
            plural: "validatingwebhookconfigurations".into(),
        },
    );
    api.patch(
        "fluxfence",
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(&registration),
    )
    .await
    .unwrap();
    stop
}

/// A Kustomization the webhook must refuse: its source is in another namespace.
fn cross_namespace_kustomization() -> Value {
    json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": { "name": "probe", "namespace": NS },
        "spec": {
            "interval": "10m", "path": "./", "prune": true,
            "sourceRef": { "kind": "GitRepository", "name": "x", "namespace": "flux-system" },
        },
    })
}

fn example() -> Value {
    json!({
        "apiVersion": "fluxfence.dev/v1alpha1",
        "kind": "FluxConfig",
        "metadata": { "name": "demo", "namespace": NS },
        "spec": {
            "gitRepository": {
                "url": "ssh://git@github.com/fluxcd/flux2-kustomize-helm-example",
                "repositoryRef": { "branch": "main" },
                "sshKnownHosts": "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n",
            },
            "kustomizations": {
                "infra": { "path": "./infrastructure", "prune": true },
                "apps": { "path": "./apps/staging", "prune": true, "dependsOn": ["infra"] },
            },
        },
    })
}

fn assert_owned_by(
    object_refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
    uid: &str,
) {
    assert!(
        object_refs
            .iter()
            .any(|o| o.uid == uid && o.kind == "FluxConfig" && o.controller == Some(true)),
        "{object_refs:?}"
    );
}

async fn set_ready(api: &Api<DynamicObject>, name: &str) {
    let object = api.get(name).await.unwrap();
    let generation = object.metadata.generation.unwrap_or(1);
    let status = json!({ "status": {
        "observedGeneration": generation,
        "conditions": [{ "type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
            "message": "applied by hand", "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": generation }],
        "artifact": { "revision": "main@sha1:0123456789abcdef0123456789abcdef01234567", "path": "x", "url": "http://x",
            "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "lastUpdateTime": "2026-01-01T00:00:00Z" },
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("cannot set the status of {name}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flux_config_onboards_the_documents_example() {
    let Some((apiserver, etcd)) = binaries() else {
        println!("skipped: no KUBE_APISERVER");
        return;
    };
    let mut cluster = Cluster::start(&apiserver, &etcd).await;
    cluster.install_crds().await;
    let client = cluster.client.clone();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in [NS, "flux-system"] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
            .unwrap();
    }
    let _stop_webhook = start_webhook(&client, cluster.dir.path()).await;
    // Registration takes effect asynchronously: wait until the webhook refuses a violation.
    let probe: DynamicObject = serde_json::from_value(cross_namespace_kustomization()).unwrap();
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let mut processes: Vec<Process> = Vec::new();
    wait_for!("the webhook to refuse a violation", processes, {
        match kustomizations(&client).create(&dry_run, &probe).await {
            Err(kube::Error::Api(status)) if status.message.contains("FF101") => Some(()),
            _ => None,
        }
    });

    let (controller, _) = cluster.start_controller(&[
        "--leader-elect",
        "--lease-namespace=flux-system",
        "--identity=e2e-a",
    ]);
    processes.push(controller);
    let configs: Api<FluxConfig> = Api::namespaced(client.clone(), NS);
    let created = configs
        .create(
            &PostParams::default(),
            &serde_json::from_value(example()).unwrap(),
        )
        .await
        .unwrap();
    let uid = created.uid().unwrap();

    // Everything appears, owned by the FluxConfig (the webhook admitted each Flux object).
    let ks = kustomizations(&client);
    let apps = wait_for!(
        "Kustomization demo-apps",
        processes,
        ks.get_opt("demo-apps").await.unwrap()
    );
    let infra = wait_for!(
        "Kustomization demo-infra",
        processes,
        ks.get_opt("demo-infra").await.unwrap()
    );
    assert_owned_by(apps.owner_references(), &uid);
    assert_owned_by(infra.owner_references(), &uid);
    assert_eq!(apps.data["spec"]["serviceAccountName"], "flux-applier");
    assert_eq!(
        apps.data["spec"]["dependsOn"],
        json!([{ "name": "demo-infra" }])
    );
    let git = git_repositories(&client).get("demo").await.unwrap();
    assert_owned_by(git.owner_references(), &uid);
    assert_eq!(git.data["spec"]["secretRef"]["name"], "demo-auth");
    let secret = Api::<Secret>::namespaced(client.clone(), NS)
        .get("demo-auth")
        .await
        .unwrap();
    assert_owned_by(secret.owner_references(), &uid);
    let data = secret.data.unwrap();
    for key in ["identity", "identity.pub", "known_hosts"] {
        assert!(data.contains_key(key), "Secret demo-auth has no {key}");
    }
    let binding = Api::<RoleBinding>::namespaced(client.clone(), NS)
        .get("demo")
        .await
        .unwrap();
    assert_owned_by(binding.owner_references(), &uid);
    assert_eq!(binding.role_ref.name, "admin");
    Api::<ServiceAccount>::namespaced(client.clone(), NS)
        .get("flux-applier")
        .await
        .unwrap();
    let public_key = String::from_utf8(data["identity.pub"].0.clone()).unwrap();
    let config = wait_for!("status.repositoryPublicKey", processes, {
        let config = configs.get("demo").await.unwrap();
        config
            .status
            .as_ref()
            .filter(|s| s.repository_public_key.as_deref() == Some(public_key.as_str()))
            .map(|_| config.clone())
    });
    assert_eq!(
        config.status.unwrap().compliance_state,
        Some(ComplianceState::Pending)
    );

    // Flux's work, by hand: every object Ready at its generation, and the FluxConfig follows.
    set_ready(&git_repositories(&client), "demo").await;
    set_ready(&ks, "demo-infra").await;
    set_ready(&ks, "demo-apps").await;
    let status = wait_for!("complianceState Compliant", processes, {
        let status = configs
            .get("demo")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        (status.compliance_state == Some(ComplianceState::Compliant)).then_some(status)
    });
    assert_eq!(
        status.source_synced_commit_id.as_deref(),
        Some("main@sha1:0123456789abcdef0123456789abcdef01234567")
    );

    // A kustomization dropped from the spec is deleted by the controller.
    configs
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "kustomizations": { "apps": null } } })),
        )
        .await
        .unwrap();
    wait_for!("demo-apps to be deleted", processes, {
        ks.get_opt("demo-apps")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    });
    assert!(ks.get_opt("demo-infra").await.unwrap().is_some());
    // The key pair survived every reconcile.
    let again = Api::<Secret>::namespaced(client.clone(), NS)
        .get("demo-auth")
        .await
        .unwrap();
    assert_eq!(
        again.data.unwrap()["identity.pub"].0,
        public_key.into_bytes()
    );
    for process in processes.iter_mut() {
        process.check_alive();
    }
}
