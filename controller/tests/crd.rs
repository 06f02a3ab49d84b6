//! The CRD: the chart ships exactly what `fluxfence-controller crd` prints, and its CEL rules
//! refuse what they say they refuse (evaluated client-side by kube's CEL validator, with the
//! Kubernetes extension libraries the API server has).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use fluxfence_controller::crd::{FluxConfig, crd_yaml};
use serde_json::{Value, json};

const CHART_COPY: &str = "charts/flux-multitenancy/crds/fluxfence.dev_fluxconfigs.yaml";

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn the_chart_ships_the_generated_crd() {
    let generated = crd_yaml().unwrap();
    let path = workspace_root().join(CHART_COPY);
    let shipped = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        shipped == generated,
        "{CHART_COPY} differs from the CRD the code generates: regenerate it with \
         `cargo run -q -p fluxfence-controller -- crd > {CHART_COPY}`"
    );
}

fn crd() -> Value {
    serde_json::to_value(<FluxConfig as kube::CustomResourceExt>::crd()).unwrap()
}

#[test]
fn the_crd_is_namespaced_v1alpha1_with_a_status_subresource() {
    let crd = crd();
    assert_eq!(crd["metadata"]["name"], "fluxconfigs.fluxfence.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["kind"], "FluxConfig");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], json!({}));
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    for field in [
        "scope",
        "suspend",
        "sourceKind",
        "gitRepository",
        "bucket",
        "ociRepository",
        "kustomizations",
    ] {
        assert!(spec.get(field).is_some(), "spec.{field} missing");
    }
    assert_eq!(spec["scope"]["enum"], json!(["cluster", "namespace"]));
    assert_eq!(
        spec["sourceKind"]["enum"],
        json!(["GitRepository", "Bucket", "OCIRepository"])
    );
    let entry = &spec["kustomizations"]["additionalProperties"]["properties"];
    for field in [
        "path",
        "dependsOn",
        "syncInterval",
        "retryInterval",
        "timeout",
        "prune",
        "force",
        "wait",
        "targetNamespace",
        "postBuild",
    ] {
        assert!(
            entry.get(field).is_some(),
            "kustomizations.*.{field} missing"
        );
    }
}

fn config(spec: Value) -> FluxConfig {
    serde_json::from_value(json!({
        "apiVersion": "fluxfence.dev/v1alpha1",
        "kind": "FluxConfig",
        "metadata": { "name": "demo", "namespace": "cluster-config" },
        "spec": spec,
    }))
    .unwrap()
}

fn valid_spec() -> Value {
    json!({
        "gitRepository": {
            "url": "https://github.com/fluxcd/flux2-kustomize-helm-example",
            "repositoryRef": { "branch": "main" },
        },
        "kustomizations": {
            "infra": { "path": "./infrastructure" },
            "apps": { "path": "./apps/staging", "dependsOn": ["infra"] },
        },
    })
}

/// The CEL messages the spec fails with; empty when it passes.
fn refusals(spec: Value) -> String {
    match kube::core::cel::validate_cel(&config(spec)) {
        Ok(()) => String::new(),
        Err(errors) => format!("{errors:?}"),
    }
}

fn assert_refused(spec: Value, expected: &str) {
    let refusals = refusals(spec);
    assert!(
        refusals.contains(expected),
        "expected a refusal containing {expected:?}, got: {refusals}"
    );
}

#[test]
fn the_example_passes_every_rule() {
    assert_eq!(refusals(valid_spec()), "");
    let mut ssh = valid_spec();
    ssh["gitRepository"]["url"] = json!("ssh://git@github.com/fluxcd/flux2-kustomize-helm-example");
    ssh["gitRepository"]["sshKnownHosts"] = json!("github.com ssh-ed25519 AAAA");
    assert_eq!(refusals(ssh), "");
    let bucket = json!({
        "sourceKind": "Bucket",
        "bucket": { "url": "http://minio.minio:9000", "bucketName": "b", "insecure": true },
    });
    assert_eq!(refusals(bucket), "");
    let oci = json!({
        "sourceKind": "OCIRepository",
        "ociRepository": { "url": "oci://ghcr.io/org/manifests", "ref": { "tag": "latest" } },
    });
    assert_eq!(refusals(oci), "");
}

#[test]
fn exactly_one_source_of_the_named_kind() {
    let mut two = valid_spec();
    two["bucket"] = json!({ "url": "https://s3.example.com", "bucketName": "b" });
    assert_refused(two, "set exactly one source");
    assert_refused(json!({ "kustomizations": {} }), "set exactly one source");
    let mut mismatch = valid_spec();
    mismatch["sourceKind"] = json!("Bucket");
    assert_refused(mismatch, "spec.sourceKind names the source that is set");
}

#[test]
fn urls_need_a_scheme_flux_reads() {
    let mut scp = valid_spec();
    scp["gitRepository"]["url"] = json!("git@github.com:fluxcd/flux2-kustomize-helm-example");
    assert_refused(
        scp,
        "gitRepository.url starts with https://, http:// or ssh://",
    );
    let mut no_known_hosts = valid_spec();
    no_known_hosts["gitRepository"]["url"] = json!("ssh://git@github.com/org/repo");
    assert_refused(
        no_known_hosts,
        "an ssh:// URL needs spec.gitRepository.sshKnownHosts",
    );
    assert_refused(
        json!({ "sourceKind": "OCIRepository", "ociRepository": { "url": "https://ghcr.io/org/x" } }),
        "ociRepository.url starts with oci://",
    );
    assert_refused(
        json!({ "sourceKind": "Bucket", "bucket": { "url": "http://minio:9000", "bucketName": "b" } }),
        "needs spec.bucket.insecure: true",
    );
}

#[test]
fn paths_stay_inside_the_source() {
    for path in ["../other", "./apps/../../etc", "apps/..", ".."] {
        let mut spec = valid_spec();
        spec["kustomizations"]["infra"]["path"] = json!(path);
        assert_refused(spec, "remove the `..` segments");
    }
    let mut dots = valid_spec();
    dots["kustomizations"]["infra"]["path"] = json!("./apps/..hidden/x..y");
    assert_eq!(refusals(dots), "");
}

#[test]
fn depends_on_names_a_sibling() {
    let mut unknown = valid_spec();
    unknown["kustomizations"]["apps"]["dependsOn"] = json!(["infrastructure"]);
    assert_refused(
        unknown,
        "dependsOn names another kustomization of this FluxConfig",
    );
    // A kustomization depending on itself is a cycle of one: the reconciler refuses it.
}

#[test]
fn one_repository_ref_and_bounded_names() {
    let mut refs = valid_spec();
    refs["gitRepository"]["repositoryRef"] = json!({ "branch": "main", "tag": "v1" });
    assert_refused(
        refs,
        "repositoryRef sets exactly one of branch, tag, semver, commit",
    );
    let crd = crd();
    let depends_on = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["kustomizations"]["additionalProperties"]["properties"]["dependsOn"];
    assert_eq!(depends_on["items"]["maxLength"], 63);
}
