//! The shared-source reconciler against the in-memory API server: publish, follow a new
//! revision, remove on a policy change or when nothing references the source, and never copy a
//! Secret the policy does not let it copy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::FakeApi;
use fluxfence::Policy;
use fluxfence_controller::publish::{publish, sweep};
use serde_json::{Value, json};

const OCI: &str =
    "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/ocirepositories/podinfo";
const HELM_REPOSITORY: &str =
    "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/helmrepositories/bitnami";
const SOURCE_SECRET: &str = "/api/v1/namespaces/flux-system/secrets/bitnami-auth";
const EA_TEAM_A: &str =
    "/apis/source.toolkit.fluxcd.io/v1/namespaces/team-a/externalartifacts/flux-system.podinfo";
const COPY_TEAM_B: &str =
    "/apis/source.toolkit.fluxcd.io/v1/namespaces/team-b/helmrepositories/flux-system.bitnami";
const SECRET_COPY_TEAM_B: &str =
    "/api/v1/namespaces/team-b/secrets/flux-system.bitnami.bitnami-auth";

fn policy(podinfo_tenants: &str, copy_secrets: bool) -> Policy {
    Policy::parse(
        &format!(
            "tenants:
  - {{name: team-a, namespaces: [team-a]}}
  - {{name: team-b, namespaces: [team-b]}}
sharedSources:
  - {{kind: OCIRepository, namespace: flux-system, name: podinfo, tenants: {podinfo_tenants}}}
  - {{kind: HelmRepository, namespace: flux-system, name: bitnami, namespaces: [team-*], copySecrets: {copy_secrets}}}
"
        ),
        "policy.yaml",
    )
    .unwrap()
}

fn artifact(revision: &str) -> Value {
    json!({
        "digest": format!("sha256:{revision}"),
        "lastUpdateTime": "2026-01-01T00:01:00Z",
        "path": format!("ocirepository/flux-system/podinfo/{revision}.tar.gz"),
        "revision": format!("6.8.0@sha256:{revision}"),
        "size": 1234,
        "url": format!("http://source-controller.flux-system.svc.cluster.local./ocirepository/flux-system/podinfo/{revision}.tar.gz"),
    })
}

fn oci_status(revision: &str) -> Value {
    json!({
        "artifact": artifact(revision),
        "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "stored artifact", "lastTransitionTime": "2026-01-01T00:01:00Z"}],
    })
}

fn platform(fake: &FakeApi) {
    fake.put(
        OCI,
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
            "metadata": {"name": "podinfo", "namespace": "flux-system", "uid": "oci-uid"},
            "spec": {"url": "oci://ghcr.io/stefanprodan/charts/podinfo", "interval": "10m"},
            "status": oci_status("aaaa"),
        }),
    );
    fake.put(
        HELM_REPOSITORY,
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
            "metadata": {"name": "bitnami", "namespace": "flux-system", "uid": "helm-uid"},
            "spec": {"url": "https://charts.example.com/bitnami", "interval": "1h", "secretRef": {"name": "bitnami-auth"}},
        }),
    );
    fake.put(
        SOURCE_SECRET,
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "bitnami-auth", "namespace": "flux-system"},
            "type": "Opaque", "data": {"username": "dXNlcg==", "password": "cGFzcw=="},
        }),
    );
}

fn chart_ref_release(namespace: &str) -> Value {
    json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": "podinfo", "namespace": namespace, "uid": format!("hr-{namespace}")},
        "spec": {"chartRef": {"kind": "ExternalArtifact", "name": "flux-system.podinfo", "namespace": namespace}},
    })
}

fn chart_source_release(namespace: &str) -> Value {
    json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": "redis", "namespace": namespace, "uid": format!("redis-{namespace}")},
        "spec": {"chart": {"spec": {"chart": "redis", "sourceRef": {"kind": "HelmRepository", "name": "flux-system.bitnami"}}}},
    })
}

#[tokio::test]
async fn a_shared_oci_repository_is_published_with_its_artifact() {
    let (fake, client) = FakeApi::client();
    platform(&fake);
    let policy = policy("[team-a]", false);
    let outcome = publish(&client, &policy, 0, &[chart_ref_release("team-a")])
        .await
        .unwrap();
    assert_eq!(outcome.applied, ["team-a/flux-system.podinfo"]);
    let lines: Vec<String> = fake.requests().iter().map(|r| r.line()).collect();
    assert_eq!(
        lines[..3],
        [
            format!("GET {OCI}"),
            format!("PATCH {EA_TEAM_A}"),
            format!("PATCH {EA_TEAM_A}/status"),
        ]
    );
    let requests = fake.requests();
    assert!(
        requests[1]
            .content_type
            .starts_with("application/apply-patch")
    );
    assert_eq!(
        requests[1].query.get("fieldManager").map(String::as_str),
        Some("fluxfence-controller")
    );
    // Not forced: an object of that name someone else wrote is not taken over.
    assert_eq!(requests[1].query.get("force"), None);
    let ea = fake.get(EA_TEAM_A).unwrap();
    assert_eq!(ea["status"]["artifact"], artifact("aaaa"));
    assert_eq!(ea["spec"]["sourceRef"]["namespace"], "flux-system");
    assert_eq!(ea["metadata"]["ownerReferences"][0]["uid"], "hr-team-a");
    assert_eq!(
        ea["metadata"]["labels"]["fluxfence.dev/shared-source"],
        "flux-system.podinfo"
    );
    // Nothing is read or written anywhere else: no Secret for an artifact.
    assert!(
        !requests.iter().any(|r| r.path.contains("/secrets/")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_new_revision_reaches_the_published_artifact_in_one_reconcile() {
    let (fake, client) = FakeApi::client();
    platform(&fake);
    let policy = policy("[team-a]", false);
    let referrers = [chart_ref_release("team-a")];
    publish(&client, &policy, 0, &referrers).await.unwrap();

    // A resync of an unchanged source writes nothing that changes.
    let before = fake.changes();
    publish(&client, &policy, 0, &referrers).await.unwrap();
    assert_eq!(fake.changes(), before);

    fake.set_status(OCI, oci_status("bbbb"));
    publish(&client, &policy, 0, &referrers).await.unwrap();
    assert_eq!(fake.changes(), before + 1, "only the status changes");
    let ea = fake.get(EA_TEAM_A).unwrap();
    assert_eq!(ea["status"]["artifact"]["revision"], "6.8.0@sha256:bbbb");
}

#[tokio::test]
async fn a_published_artifact_goes_when_the_policy_or_the_last_referrer_does() {
    let (fake, client) = FakeApi::client();
    platform(&fake);
    let referrers = [chart_ref_release("team-a")];
    publish(&client, &policy("[team-a]", false), 0, &referrers)
        .await
        .unwrap();
    assert!(fake.get(EA_TEAM_A).is_some());

    // The entry now shares with team-b only.
    let outcome = publish(&client, &policy("[team-b]", false), 0, &referrers)
        .await
        .unwrap();
    assert_eq!(
        outcome.deleted,
        ["ExternalArtifact team-a/flux-system.podinfo"]
    );
    assert!(fake.get(EA_TEAM_A).is_none());

    // Published again, then no tenant object references it any more.
    publish(&client, &policy("[team-a]", false), 0, &referrers)
        .await
        .unwrap();
    assert!(fake.get(EA_TEAM_A).is_some());
    publish(&client, &policy("[team-a]", false), 0, &[])
        .await
        .unwrap();
    assert!(fake.get(EA_TEAM_A).is_none());

    // Published again, then the entry leaves the policy: the startup sweep deletes it, and
    // leaves what another entry still publishes.
    publish(&client, &policy("[team-a]", false), 0, &referrers)
        .await
        .unwrap();
    publish(
        &client,
        &policy("[team-a]", false),
        1,
        &[chart_source_release("team-b")],
    )
    .await
    .unwrap();
    let mut without_podinfo = policy("[team-a]", false);
    without_podinfo.shared_sources.remove(0);
    let outcome = sweep(&client, &without_podinfo).await.unwrap();
    assert_eq!(
        outcome.deleted,
        ["ExternalArtifact team-a/flux-system.podinfo"]
    );
    assert!(fake.get(EA_TEAM_A).is_none());
    assert!(fake.get(COPY_TEAM_B).is_some());
}

#[tokio::test]
async fn a_helm_repository_is_copied_and_its_secret_only_when_the_policy_allows() {
    let (fake, client) = FakeApi::client();
    platform(&fake);
    let referrers = [chart_source_release("team-b")];
    publish(&client, &policy("[team-a]", false), 1, &referrers)
        .await
        .unwrap();
    let copy = fake.get(COPY_TEAM_B).unwrap();
    assert_eq!(copy["spec"]["url"], "https://charts.example.com/bitnami");
    assert_eq!(copy["spec"]["secretRef"]["name"], "bitnami-auth");
    assert_eq!(copy["metadata"]["ownerReferences"][0]["name"], "redis");
    // The Secret is neither read nor written.
    assert!(
        !fake
            .requests()
            .iter()
            .any(|r| r.path.contains("/secrets") && r.method != "GET" || r.path == SOURCE_SECRET),
        "{:?}",
        fake.requests().iter().map(|r| r.line()).collect::<Vec<_>>()
    );
    assert!(fake.get(SECRET_COPY_TEAM_B).is_none());

    // copySecrets: true copies it under the source's name, and the copy names it.
    publish(&client, &policy("[team-a]", true), 1, &referrers)
        .await
        .unwrap();
    let secret = fake.get(SECRET_COPY_TEAM_B).unwrap();
    assert_eq!(secret["data"]["password"], "cGFzcw==");
    assert_eq!(
        secret["metadata"]["labels"]["fluxfence.dev/shared-source-kind"],
        "HelmRepository"
    );
    let copy = fake.get(COPY_TEAM_B).unwrap();
    assert_eq!(
        copy["spec"]["secretRef"]["name"],
        "flux-system.bitnami.bitnami-auth"
    );

    // Back to copySecrets: false: the copied Secret is deleted with the permission.
    let outcome = publish(&client, &policy("[team-a]", false), 1, &referrers)
        .await
        .unwrap();
    assert_eq!(
        outcome.deleted,
        ["Secret team-b/flux-system.bitnami.bitnami-auth"]
    );
    assert!(fake.get(SECRET_COPY_TEAM_B).is_none());
}

#[tokio::test]
async fn a_missing_source_publishes_nothing_and_removes_what_it_had() {
    let (fake, client) = FakeApi::client();
    platform(&fake);
    let policy = policy("[team-a]", false);
    let referrers = [chart_ref_release("team-a")];
    publish(&client, &policy, 0, &referrers).await.unwrap();
    fake.remove(OCI);
    let outcome = publish(&client, &policy, 0, &referrers).await.unwrap();
    assert!(outcome.applied.is_empty());
    assert!(fake.get(EA_TEAM_A).is_none());
}

#[tokio::test]
async fn an_api_failure_is_an_error_not_a_silent_success() {
    let (fake, client) = FakeApi::client();
    platform(&fake);
    fake.fail("PATCH", EA_TEAM_A, 500);
    let result = publish(
        &client,
        &policy("[team-a]", false),
        0,
        &[chart_ref_release("team-a")],
    )
    .await;
    assert!(result.is_err(), "{result:?}");
}
