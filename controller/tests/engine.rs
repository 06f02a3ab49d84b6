//! Everything the controller writes is clean under the fluxfence engine with the default policy:
//! the desired objects of FluxConfigs of every shape, linted as one repository would be.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fluxfence::{Inventory, Policy, Severity};
use fluxfence_controller::crd::FluxConfig;
use fluxfence_controller::desired::{Auth, Desired, DesiredObject, Settings, desired, ssh_secret};
use fluxfence_controller::engine::{denials, render};
use serde_json::{Value, json};

fn config(namespace: &str, spec: Value) -> FluxConfig {
    serde_json::from_value(json!({
        "apiVersion": "fluxfence.dev/v1alpha1",
        "kind": "FluxConfig",
        "metadata": { "name": "demo", "namespace": namespace, "uid": "0b8a0c2e-uid" },
        "spec": spec,
    }))
    .unwrap()
}

fn settings() -> Settings {
    Settings {
        service_account: "flux-applier".into(),
    }
}

fn specs() -> Vec<Value> {
    let kustomizations = json!({
        "infra": { "path": "./infrastructure", "prune": true, "wait": true },
        "apps": {
            "path": "./apps/staging",
            "prune": true,
            "dependsOn": ["infra"],
            "targetNamespace": "podinfo",
            "postBuild": { "substitute": { "cluster": "staging" }, "substituteFrom": [{ "kind": "ConfigMap", "name": "vars" }] },
        },
    });
    vec![
        json!({
            "gitRepository": { "url": "https://github.com/fluxcd/flux2-kustomize-helm-example", "repositoryRef": { "branch": "main" } },
            "kustomizations": kustomizations,
        }),
        json!({
            "scope": "cluster",
            "suspend": true,
            "gitRepository": {
                "url": "ssh://git@github.com/fluxcd/flux2-kustomize-helm-example",
                "repositoryRef": { "tag": "v1.0.0" },
                "sshKnownHosts": "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
            },
            "kustomizations": kustomizations,
        }),
        json!({
            "sourceKind": "Bucket",
            "bucket": { "url": "https://s3.example.com", "bucketName": "manifests", "localAuthRef": "s3-keys" },
            "kustomizations": kustomizations,
        }),
        json!({
            "sourceKind": "OCIRepository",
            "ociRepository": { "url": "oci://ghcr.io/org/manifests", "ref": { "semver": ">=1.0.0" } },
            "kustomizations": kustomizations,
        }),
    ]
}

/// What a reconcile writes: the desired objects plus the generated Secret when there is one.
fn written(config: &FluxConfig) -> Vec<DesiredObject> {
    let Desired { mut objects, auth } = desired(config, &settings()).unwrap();
    if let Auth::GeneratedSsh {
        secret_name,
        known_hosts,
    } = auth
    {
        let pair = fluxfence_controller::keys::generate("fluxfence:test").unwrap();
        objects.push(
            ssh_secret(
                config,
                &secret_name,
                &pair.private_openssh,
                &pair.public_openssh,
                &known_hosts,
            )
            .unwrap(),
        );
    }
    objects
}

#[test]
fn the_default_policy_denies_nothing_the_controller_writes() {
    let policy = Policy::azure_default();
    // The config namespace the policy knows, and a tenant namespace it does not: there the
    // written ServiceAccount is what makes `flux-applier` exist.
    for namespace in ["cluster-config", "team-a"] {
        for spec in specs() {
            let config = config(namespace, spec.clone());
            let objects = written(&config);
            let report = fluxfence::lint(
                Inventory::from_text("written.yaml", render(&objects)),
                &policy,
            );
            assert!(report.errors().is_empty(), "{:?}", report.errors());
            let denied: Vec<String> = report
                .diagnostics
                .iter()
                .filter(|d| d.finding.severity == Severity::Deny)
                .map(|d| format!("{}: {}", d.finding.code, d.finding.message))
                .collect();
            assert!(denied.is_empty(), "{namespace} {spec}: {denied:?}");
            assert!(
                report.objects_checked >= 3,
                "the engine judged {} objects: it did not see the Flux objects",
                report.objects_checked
            );
        }
    }
}

#[test]
fn the_engine_check_fails_on_what_the_policy_denies() {
    // The same objects with one change the rules forbid: a cross-namespace sourceRef.
    let config = config("team-a", specs().remove(0));
    let mut objects = written(&config);
    let kustomization = objects
        .iter_mut()
        .find(|o| o.body["kind"] == "Kustomization")
        .unwrap();
    kustomization.body["spec"]["sourceRef"]["namespace"] = json!("flux-system");
    let found = denials(&objects, &Policy::azure_default());
    assert!(found.iter().any(|d| d.starts_with("FF101")), "{found:?}");
}
