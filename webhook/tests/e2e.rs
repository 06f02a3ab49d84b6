//! End to end: etcd + kube-apiserver on loopback, the Flux CRDs, the webhook registered by URL,
//! and real `kubectl` outcomes.
//!
//! Runs when `KUBE_APISERVER` and `ETCD` name the binaries (`KUBECTL` optional, else `kubectl`
//! on PATH; `FLUX_CRDS` optional, else `shared/flux-crds` found above the crate, else the
//! flux-multitenancy chart's CRDs). Otherwise it prints "skipped: no KUBE_APISERVER" and passes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::Pki;
use common::cluster::{
    Kubectl, Webhook, base64, binaries_or_skip, find_kubectl, install_flux_crds, start_apiserver,
    start_etcd, wait_until, write_kubeconfig,
};
use fluxfence::kinds::FLUX_KINDS;
use serde_json::{Value, json};

const OWN_NAMESPACE: &str = "fluxfence-system";

/// Validating and mutating registrations for every Flux kind, their status subresource and
/// deletes, so that the test sees those pass *through* the webhook rather than around it.
fn webhook_configurations(addr: SocketAddr, ca_pem: &str) -> Value {
    let mut groups: Vec<&str> = FLUX_KINDS.iter().map(|k| k.group).collect();
    groups.dedup();
    let rules: Vec<Value> = groups
        .iter()
        .map(|group| {
            let resources: Vec<String> = FLUX_KINDS
                .iter()
                .filter(|k| k.group == *group)
                .flat_map(|k| [k.plural.to_owned(), format!("{}/status", k.plural)])
                .collect();
            json!({
                "apiGroups": [group],
                "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE", "DELETE"],
                "resources": resources,
                "scope": "Namespaced",
            })
        })
        .collect();
    let hook = |name: &str, path: &str| {
        json!({
            "name": name,
            "clientConfig": {
                "url": format!("https://127.0.0.1:{}{path}", addr.port()),
                "caBundle": base64(ca_pem.as_bytes()),
            },
            "rules": rules,
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
            "namespaceSelector": {"matchExpressions": [{
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                // The chart also leaves out its own namespace; here it stays in so that the
                // webhook's own-namespace rule is exercised.
                "values": ["kube-system"],
            }]},
        })
    };
    let mut mutating = hook("mutate.fluxfence.dev", "/mutate");
    mutating["reinvocationPolicy"] = json!("IfNeeded");
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "fluxfence"},
                "webhooks": [hook("validate.fluxfence.dev", "/validate")],
            },
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": "fluxfence"},
                "webhooks": [mutating],
            },
        ],
    })
}

/// The Azure document's HelmRelease: in `nginx`, its chart source in `flux-system`.
fn seed_helmrelease() -> Value {
    json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": "nginx", "namespace": "nginx"},
        "spec": {
            "releaseName": "nginx-ingress-controller",
            "interval": "1h0m0s",
            "chart": {"spec": {
                "chart": "nginx-ingress-controller",
                "version": "5.6.14",
                "sourceRef": {"kind": "HelmRepository", "name": "bitnami", "namespace": "flux-system"},
            }},
        },
    })
}

fn kustomization(namespace: &str) -> Value {
    json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "apps", "namespace": namespace},
        "spec": {
            "interval": "10m",
            "path": "./apps",
            "prune": true,
            "sourceRef": {"kind": "GitRepository", "name": "cluster-config"},
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_against_a_real_api_server() {
    let Some((apiserver, etcd)) = binaries_or_skip() else {
        return;
    };
    let kubectl = find_kubectl().expect("KUBE_APISERVER is set but no kubectl: set KUBECTL");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = Pki::new("fluxfence e2e CA");

    let (mut etcd, etcd_url) = start_etcd(Path::new(&etcd), dir);
    let (mut apiserver, port) = start_apiserver(Path::new(&apiserver), dir, &etcd_url, &pki);
    let kubectl = Kubectl {
        binary: kubectl,
        kubeconfig: write_kubeconfig(dir, port, &pki),
    };
    let mut processes = [&mut etcd, &mut apiserver];
    wait_until(
        &mut processes,
        Duration::from_secs(90),
        "kube-apiserver /readyz",
        || {
            kubectl
                .run(&["get", "--raw", "/readyz"], None)
                .status
                .success()
        },
    );

    // The webhook, in-process, with the built-in policy.
    let webhook = Webhook::start(dir, &pki, OWN_NAMESPACE).await;
    let webhook_addr = webhook.addr;

    // Flux CRDs (current versions), namespaces, and one object that predates the webhook.
    install_flux_crds(&kubectl);
    for namespace in ["nginx", "cluster-config", "flux-system", OWN_NAMESPACE] {
        kubectl.ok(&["create", "namespace", namespace], None);
    }
    let (created, output) = kubectl.apply(&seed_helmrelease(), &[]);
    assert!(
        created,
        "before registration the object is admitted: {output}"
    );

    kubectl.ok(
        &["apply", "-f", "-"],
        Some(&webhook_configurations(webhook_addr, &pki.ca_pem).to_string()),
    );
    // Registration takes effect asynchronously: wait for the first denial.
    let mut denied = seed_helmrelease();
    denied["metadata"]["name"] = json!("nginx-new");
    wait_until(
        &mut processes,
        Duration::from_secs(30),
        "the webhook to be called",
        || !kubectl.apply(&denied, &["--dry-run=server"]).0,
    );

    // A cross-namespace HelmRelease is denied, with the rule, the fix and the rewrite.
    let (ok, output) = kubectl.apply(&denied, &[]);
    assert!(!ok, "{output}");
    assert!(
        output.contains("admission webhook \"validate.fluxfence.dev\" denied the request"),
        "{output}"
    );
    assert!(
        output.contains("FF101 cross-namespace-source-ref at /spec/chart/spec/sourceRef/namespace"),
        "{output}"
    );
    assert!(output.contains("namespace: cluster-config"), "{output}");
    // And a server-side dry run gets the same answer.
    let (ok, dry) = kubectl.apply(&denied, &["--dry-run=server"]);
    assert!(!ok && dry.contains("FF101"), "{dry}");

    // A Kustomization in the config namespace is admitted with its service account defaulted.
    let (ok, output) = kubectl.apply(&kustomization("cluster-config"), &[]);
    assert!(ok, "{output}");
    assert!(
        output.contains("fluxfence: set spec.serviceAccountName: flux-applier"),
        "{output}"
    );
    let stored = kubectl.ok(
        &[
            "get",
            "kustomization",
            "apps",
            "-n",
            "cluster-config",
            "-o",
            "jsonpath={.spec.serviceAccountName}",
        ],
        None,
    );
    assert_eq!(stored.trim(), "flux-applier");
    // Applying it again changes nothing (the webhook is idempotent).
    let (ok, output) = kubectl.apply(&kustomization("cluster-config"), &[]);
    assert!(ok && output.contains("unchanged"), "{output}");

    // The object that violated before the webhook came in: a metadata-only update (a
    // label, a finalizer) is admitted with its violations as warnings; a change that adds one
    // is denied; a status update passes.
    let out = kubectl.run(
        &["label", "helmrelease", "nginx", "-n", "nginx", "team=web"],
        None,
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "a metadata-only update denied: {said}"
    );
    assert!(
        said.contains("Warning: FF101 (admitted: there before this update)"),
        "{said}"
    );
    let finalizer = r#"{"metadata":{"finalizers":["finalizers.fluxcd.io"]}}"#;
    kubectl.ok(
        &[
            "patch",
            "helmrelease",
            "nginx",
            "-n",
            "nginx",
            "--type=merge",
            "-p",
            finalizer,
        ],
        None,
    );
    let remote = r#"{"spec":{"kubeConfig":{"secretRef":{"name":"prod"}}}}"#;
    let out = kubectl.run(
        &[
            "patch",
            "helmrelease",
            "nginx",
            "-n",
            "nginx",
            "--type=merge",
            "-p",
            remote,
        ],
        None,
    );
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("FF120"),
        "a new violation admitted: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    kubectl.ok(
        &[
            "patch",
            "helmrelease",
            "nginx",
            "-n",
            "nginx",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"observedGeneration":1}}"#,
        ],
        None,
    );
    // Deleted, it waits for its finalizer; removing it (what Flux does) is admitted and the
    // object goes away instead of staying in Terminating.
    kubectl.ok(
        &[
            "delete",
            "helmrelease",
            "nginx",
            "-n",
            "nginx",
            "--wait=false",
        ],
        None,
    );
    kubectl.ok(
        &[
            "patch",
            "helmrelease",
            "nginx",
            "-n",
            "nginx",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ],
        None,
    );
    wait_until(
        &mut processes,
        Duration::from_secs(30),
        "the deleted object to go",
        || {
            let out = kubectl.run(&["get", "helmrelease", "nginx", "-n", "nginx"], None);
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound")
        },
    );

    // The webhook's own namespace is never blocked (even if registered for it).
    let mut own = seed_helmrelease();
    own["metadata"]["namespace"] = json!(OWN_NAMESPACE);
    let (ok, output) = kubectl.apply(&own, &[]);
    assert!(ok, "{output}");

    webhook.stop().await;
}

#[test]
fn the_registration_covers_every_kind_with_a_valid_ca_bundle() {
    assert_eq!(base64(b"M"), "TQ==");
    assert_eq!(base64(b"Ma"), "TWE=");
    assert_eq!(base64(b"Man"), "TWFu");
    assert_eq!(base64(b"fluxfence"), "Zmx1eGZlbmNl");
    let config = webhook_configurations("127.0.0.1:8443".parse().unwrap(), "CA");
    for item in config["items"].as_array().unwrap() {
        let hook = &item["webhooks"][0];
        assert_eq!(hook["clientConfig"]["caBundle"], "Q0E=");
        let resources: Vec<&str> = hook["rules"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["resources"].as_array().unwrap())
            .map(|r| r.as_str().unwrap())
            .collect();
        for kind in FLUX_KINDS {
            assert!(resources.contains(&kind.plural), "{}", kind.plural);
            assert!(resources.contains(&format!("{}/status", kind.plural).as_str()));
        }
    }
}
