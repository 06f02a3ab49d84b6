//! The reconciler against an in-memory API server: one test per outcome, each asserting the
//! requests sent (method, path, body) and what the server then holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{CONFIG_PATH, FakeApi, NS, Recorded};
use fluxfence_controller::crd::{ComplianceState, FluxConfig};
use fluxfence_controller::reconcile::{Error, error_policy, reconcile};
use serde_json::{Value, json};

const SA: &str = "/api/v1/namespaces/cluster-config/serviceaccounts/flux-applier";
const RB: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/cluster-config/rolebindings/demo";
const CRB: &str =
    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/fluxfence-cluster-config-demo";
const GIT: &str =
    "/apis/source.toolkit.fluxcd.io/v1/namespaces/cluster-config/gitrepositories/demo";
const SECRET: &str = "/api/v1/namespaces/cluster-config/secrets/demo-auth";
const KS: &str = "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/cluster-config/kustomizations";

/// The Azure document's example: the flux2-kustomize-helm-example repository, infrastructure
/// first, then the staging apps.
fn example_spec() -> Value {
    json!({
        "scope": "namespace",
        "sourceKind": "GitRepository",
        "gitRepository": {
            "url": "https://github.com/fluxcd/flux2-kustomize-helm-example",
            "repositoryRef": { "branch": "main" },
            "syncInterval": "1m",
        },
        "kustomizations": {
            "infra": { "path": "./infrastructure", "prune": true },
            "apps": { "path": "./apps/staging", "prune": true, "dependsOn": ["infra"] },
        },
    })
}

fn ssh_spec() -> Value {
    let mut spec = example_spec();
    spec["gitRepository"]["url"] =
        json!("ssh://git@github.com/fluxcd/flux2-kustomize-helm-example");
    spec["gitRepository"]["sshKnownHosts"] = json!(
        "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
    );
    spec
}

fn manifest(spec: Value) -> Value {
    json!({
        "apiVersion": "fluxfence.dev/v1alpha1",
        "kind": "FluxConfig",
        "metadata": { "name": "demo" },
        "spec": spec,
    })
}

fn lines(requests: &[Recorded]) -> Vec<String> {
    requests.iter().map(Recorded::line).collect()
}

fn prune_lists() -> Vec<String> {
    [
        "/apis/rbac.authorization.k8s.io/v1/namespaces/cluster-config/rolebindings",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "/api/v1/namespaces/cluster-config/secrets",
        "/apis/source.toolkit.fluxcd.io/v1/namespaces/cluster-config/gitrepositories",
        "/apis/source.toolkit.fluxcd.io/v1/namespaces/cluster-config/buckets",
        "/apis/source.toolkit.fluxcd.io/v1/namespaces/cluster-config/ocirepositories",
        KS,
    ]
    .iter()
    .map(|p| format!("GET {p}"))
    .collect()
}

async fn run(fake: &FakeApi, ctx: &Arc<fluxfence_controller::reconcile::Context>) -> FluxConfig {
    let config = fake.config("demo");
    reconcile(Arc::new(config), ctx.clone()).await.unwrap();
    fake.config("demo")
}

fn assert_owned(object: &Value) {
    assert_eq!(object["metadata"]["labels"]["fluxfence.dev/config"], "demo");
    let owner = &object["metadata"]["ownerReferences"][0];
    assert_eq!(owner["apiVersion"], "fluxfence.dev/v1alpha1");
    assert_eq!(owner["kind"], "FluxConfig");
    assert_eq!(owner["name"], "demo");
    assert_eq!(owner["uid"], "uid-1");
    assert_eq!(owner["controller"], true);
}

fn assert_applied(request: &Recorded) {
    assert_eq!(request.method, "PATCH");
    assert_eq!(request.content_type, "application/apply-patch+yaml");
    assert_eq!(
        request.query.get("fieldManager").map(String::as_str),
        Some("fluxfence-controller")
    );
    assert_eq!(request.query.get("force").map(String::as_str), Some("true"));
}

#[tokio::test]
async fn first_reconcile_creates_each_object_by_server_side_apply() {
    let (fake, ctx) = FakeApi::start();
    fake.create_config(manifest(example_spec()));
    let config = run(&fake, &ctx).await;

    let requests = fake.requests();
    let mut expected = vec![
        format!("PATCH {SA}"),
        format!("PATCH {RB}"),
        format!("PATCH {GIT}"),
        format!("PATCH {KS}/demo-apps"),
        format!("PATCH {KS}/demo-infra"),
    ];
    expected.extend(prune_lists());
    expected.push(format!("PATCH {CONFIG_PATH}/demo/status"));
    assert_eq!(lines(&requests), expected);
    for request in &requests[..5] {
        assert_applied(request);
        assert_eq!(request.body["metadata"]["namespace"], NS);
    }
    // The namespace's default service account is shared by its FluxConfigs: nobody's to own.
    let account = &requests[0].body["metadata"];
    assert!(account.get("ownerReferences").is_none());
    assert_eq!(
        account["labels"],
        json!({ "fluxfence.dev/default-service-account": "true" })
    );
    for request in &requests[1..5] {
        assert_owned(&request.body);
    }
    for list in &requests[5..12] {
        let selector = list.query.get("labelSelector").unwrap();
        assert!(
            selector.starts_with("fluxfence.dev/config=demo"),
            "{selector}"
        );
    }

    let binding = &requests[1].body;
    assert_eq!(binding["roleRef"]["name"], "admin");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(
        binding["subjects"],
        json!([{ "kind": "ServiceAccount", "name": "flux-applier", "namespace": NS }])
    );
    let source = &requests[2].body["spec"];
    assert_eq!(
        source["url"],
        "https://github.com/fluxcd/flux2-kustomize-helm-example"
    );
    assert_eq!(source["ref"], json!({ "branch": "main" }));
    assert_eq!(source["interval"], "1m");
    assert!(
        source.get("secretRef").is_none(),
        "a public HTTPS source needs no Secret"
    );
    let apps = &requests[3].body["spec"];
    assert_eq!(
        apps["sourceRef"],
        json!({ "kind": "GitRepository", "name": "demo" })
    );
    assert_eq!(apps["serviceAccountName"], "flux-applier");
    assert_eq!(apps["dependsOn"], json!([{ "name": "demo-infra" }]));
    assert_eq!(apps["path"], "./apps/staging");
    assert_eq!(apps["prune"], true);
    assert_eq!(apps["suspend"], false);

    let status_body = &requests[12].body;
    assert_eq!(status_body["status"]["complianceState"], "Pending");
    assert_eq!(status_body["status"]["observedGeneration"], 1);
    assert_eq!(status_body["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(status_body["status"]["conditions"][0]["status"], "Unknown");
    let status = config.status.unwrap();
    assert_eq!(status.statuses.len(), 3);
    assert_eq!(status.statuses[0].kind, "GitRepository");
    assert!(fake.get(&format!("{KS}/demo-infra")).is_some());
}

#[tokio::test]
async fn an_unchanged_config_is_written_again_without_any_change() {
    let (fake, ctx) = FakeApi::start();
    fake.create_config(manifest(example_spec()));
    run(&fake, &ctx).await;
    let changes = fake.changes();
    fake.clear_requests();

    run(&fake, &ctx).await;
    assert_eq!(fake.changes(), changes, "a resync changed something");
    let requests = fake.requests();
    // Only the no-op applies: no pruning lists (the generation was handled), no status write.
    assert_eq!(
        lines(&requests),
        vec![
            format!("PATCH {SA}"),
            format!("PATCH {RB}"),
            format!("PATCH {GIT}"),
            format!("PATCH {KS}/demo-apps"),
            format!("PATCH {KS}/demo-infra"),
        ]
    );
    requests.iter().for_each(assert_applied);
}

#[tokio::test]
async fn a_kustomization_dropped_from_the_spec_is_deleted() {
    let (fake, ctx) = FakeApi::start();
    fake.create_config(manifest(example_spec()));
    run(&fake, &ctx).await;
    // Labelled by hand, not owned: pruning must leave it.
    fake.put(
        &format!("{KS}/hand-made"),
        json!({ "metadata": { "name": "hand-made", "namespace": NS, "labels": { "fluxfence.dev/config": "demo" } } }),
    );
    let mut spec = example_spec();
    spec["kustomizations"]
        .as_object_mut()
        .unwrap()
        .remove("apps");
    fake.update_spec("demo", spec);
    fake.clear_requests();

    let config = run(&fake, &ctx).await;
    let requests = fake.requests();
    let deletes: Vec<String> = lines(&requests)
        .into_iter()
        .filter(|l| l.starts_with("DELETE"))
        .collect();
    assert_eq!(deletes, vec![format!("DELETE {KS}/demo-apps")]);
    assert!(fake.get(&format!("{KS}/demo-apps")).is_none());
    assert!(fake.get(&format!("{KS}/demo-infra")).is_some());
    assert!(fake.get(&format!("{KS}/hand-made")).is_some());
    let status = config.status.unwrap();
    assert_eq!(status.observed_generation, Some(2));
    assert!(status.statuses.iter().all(|s| s.name != "demo-apps"));
}

fn decoded(secret: &Value, key: &str) -> String {
    let bytes: k8s_openapi::ByteString =
        serde_json::from_value(secret["data"][key].clone()).unwrap();
    String::from_utf8(bytes.0).unwrap()
}

#[tokio::test]
async fn an_ssh_key_is_generated_once_and_kept() {
    let (fake, ctx) = FakeApi::start();
    fake.create_config(manifest(ssh_spec()));
    let config = run(&fake, &ctx).await;

    let requests = fake.requests();
    assert_eq!(requests[0].line(), format!("GET {SECRET}"));
    let secret_apply = requests
        .iter()
        .find(|r| r.line() == format!("PATCH {SECRET}"))
        .unwrap();
    assert_applied(secret_apply);
    assert_owned(&secret_apply.body);
    let public = decoded(&secret_apply.body, "identity.pub");
    assert!(public.starts_with("ssh-ed25519 "), "{public}");
    assert!(decoded(&secret_apply.body, "identity").contains("BEGIN OPENSSH PRIVATE KEY"));
    assert!(decoded(&secret_apply.body, "known_hosts").starts_with("github.com ssh-ed25519 "));
    let source = fake.get(GIT).unwrap();
    assert_eq!(source["spec"]["secretRef"], json!({ "name": "demo-auth" }));
    let status = config.status.unwrap();
    assert_eq!(
        status.repository_public_key.as_deref(),
        Some(public.as_str())
    );

    let stored = fake.get(SECRET).unwrap();
    let changes = fake.changes();
    fake.clear_requests();
    let config = run(&fake, &ctx).await;
    assert_eq!(fake.requests()[0].line(), format!("GET {SECRET}"));
    assert_eq!(
        fake.get(SECRET).unwrap(),
        stored,
        "the key pair was replaced"
    );
    assert_eq!(fake.changes(), changes);
    assert_eq!(
        config.status.unwrap().repository_public_key.as_deref(),
        Some(public.as_str())
    );
}

#[tokio::test]
async fn an_invalid_spec_writes_only_a_status_condition() {
    let (fake, ctx) = FakeApi::start();
    let mut spec = example_spec();
    spec["kustomizations"]["infra"]["dependsOn"] = json!(["apps"]);
    fake.create_config(manifest(spec));
    let config = run(&fake, &ctx).await;

    let requests = fake.requests();
    assert_eq!(
        lines(&requests),
        vec![format!("PATCH {CONFIG_PATH}/demo/status")]
    );
    assert_applied(&requests[0]);
    let condition = &requests[0].body["status"]["conditions"][0];
    assert_eq!(condition["type"], "Ready");
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "DependencyCycle");
    let message = condition["message"].as_str().unwrap();
    assert!(message.contains("apps -> infra -> apps"), "{message}");
    assert!(
        message.contains("remove one of these dependsOn"),
        "{message}"
    );
    assert_eq!(fake.paths(), vec![format!("{CONFIG_PATH}/demo")]);
    let status = config.status.unwrap();
    assert_eq!(status.observed_generation, None);
    assert_eq!(status.compliance_state, None);

    // Refused again: the same condition, nothing sent.
    fake.clear_requests();
    run(&fake, &ctx).await;
    assert!(fake.requests().is_empty(), "{:?}", lines(&fake.requests()));
}

#[tokio::test]
async fn unreadable_known_hosts_are_refused() {
    let (fake, ctx) = FakeApi::start();
    let mut spec = ssh_spec();
    spec["gitRepository"]["sshKnownHosts"] = json!("github.com ssh-ed25519 not-base64!\n");
    fake.create_config(manifest(spec));
    run(&fake, &ctx).await;
    let requests = fake.requests();
    assert_eq!(
        lines(&requests),
        vec![format!("PATCH {CONFIG_PATH}/demo/status")]
    );
    let condition = &requests[0].body["status"]["conditions"][0];
    assert_eq!(condition["reason"], "InvalidKnownHosts");
    assert!(condition["message"].as_str().unwrap().contains("line 1"));
}

#[tokio::test]
async fn what_the_policy_denies_is_refused_before_anything_is_written() {
    let policy = fluxfence::Policy::parse(
        "tenants:\n  - name: team-a\n    namespaces: [cluster-config]\n    sourceUrls: [\"https://github.com/team-a/\"]\n",
        "policy.yaml",
    )
    .unwrap();
    let (fake, ctx) = FakeApi::start_with(policy);
    fake.create_config(manifest(example_spec()));
    run(&fake, &ctx).await;
    let requests = fake.requests();
    assert_eq!(
        lines(&requests),
        vec![format!("PATCH {CONFIG_PATH}/demo/status")]
    );
    let condition = &requests[0].body["status"]["conditions"][0];
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "PolicyViolation");
    let message = condition["message"].as_str().unwrap();
    assert!(message.contains("FF140"), "{message}");
    assert_eq!(fake.paths(), vec![format!("{CONFIG_PATH}/demo")]);
}

fn ready(generation: i64, status: &str, reason: &str) -> Value {
    json!({
        "observedGeneration": generation,
        "conditions": [{ "type": "Ready", "status": status, "reason": reason, "message": format!("{reason} message") }],
        "artifact": { "revision": "main@sha1:0123456789abcdef" },
    })
}

#[tokio::test]
async fn compliance_follows_the_ready_conditions_of_the_flux_objects() {
    let (fake, ctx) = FakeApi::start();
    fake.create_config(manifest(example_spec()));
    run(&fake, &ctx).await;

    for path in [
        GIT.to_owned(),
        format!("{KS}/demo-apps"),
        format!("{KS}/demo-infra"),
    ] {
        fake.set_status(&path, ready(1, "True", "ReconciliationSucceeded"));
    }
    let config = run(&fake, &ctx).await;
    let status = config.status.unwrap();
    assert_eq!(status.compliance_state, Some(ComplianceState::Compliant));
    assert_eq!(
        status.source_synced_commit_id.as_deref(),
        Some("main@sha1:0123456789abcdef")
    );
    assert_eq!(status.conditions[0].status, "True");
    assert!(
        status
            .statuses
            .iter()
            .all(|s| s.compliance_state == ComplianceState::Compliant)
    );

    fake.set_status(&format!("{KS}/demo-apps"), ready(1, "False", "BuildFailed"));
    let config = run(&fake, &ctx).await;
    let status = config.status.unwrap();
    assert_eq!(status.compliance_state, Some(ComplianceState::NonCompliant));
    let apps = status
        .statuses
        .iter()
        .find(|s| s.name == "demo-apps")
        .unwrap();
    assert_eq!(apps.compliance_state, ComplianceState::NonCompliant);
    assert_eq!(apps.reason.as_deref(), Some("BuildFailed"));
    assert_eq!(apps.message.as_deref(), Some("BuildFailed message"));
    assert_eq!(apps.kind, "Kustomization");
    assert_eq!(apps.namespace, NS);

    // Ready=True for an older generation says nothing about the current spec.
    fake.set_status(
        &format!("{KS}/demo-apps"),
        ready(0, "True", "ReconciliationSucceeded"),
    );
    let config = run(&fake, &ctx).await;
    assert_eq!(
        config.status.unwrap().compliance_state,
        Some(ComplianceState::Pending)
    );
}

#[tokio::test]
async fn suspend_reaches_every_flux_object_and_the_state() {
    let (fake, ctx) = FakeApi::start();
    let mut spec = example_spec();
    spec["suspend"] = json!(true);
    fake.create_config(manifest(spec));
    let config = run(&fake, &ctx).await;
    assert_eq!(fake.get(GIT).unwrap()["spec"]["suspend"], true);
    assert_eq!(
        fake.get(&format!("{KS}/demo-apps")).unwrap()["spec"]["suspend"],
        true
    );
    assert_eq!(
        fake.get(&format!("{KS}/demo-infra")).unwrap()["spec"]["suspend"],
        true
    );
    let status = config.status.unwrap();
    assert_eq!(status.compliance_state, Some(ComplianceState::Suspended));
    assert_eq!(status.conditions[0].reason, "Suspended");

    let mut spec = example_spec();
    spec["suspend"] = json!(false);
    fake.update_spec("demo", spec);
    let config = run(&fake, &ctx).await;
    assert_eq!(fake.get(GIT).unwrap()["spec"]["suspend"], false);
    assert_eq!(
        config.status.unwrap().compliance_state,
        Some(ComplianceState::Pending)
    );
}

#[tokio::test]
async fn cluster_scope_binds_cluster_admin_and_cleans_up_on_deletion() {
    let (fake, ctx) = FakeApi::start();
    let mut spec = example_spec();
    spec["scope"] = json!("cluster");
    fake.create_config(manifest(spec));
    let config = run(&fake, &ctx).await;
    let requests = fake.requests();
    assert_eq!(requests[0].method, "PATCH");
    assert_eq!(requests[0].content_type, "application/merge-patch+json");
    assert_eq!(
        requests[0].body["metadata"]["finalizers"],
        json!(["fluxfence.dev/cluster-role-binding"])
    );
    let binding = fake.get(CRB).unwrap();
    assert_eq!(binding["roleRef"]["name"], "cluster-admin");
    assert_eq!(
        binding["metadata"]["labels"]["fluxfence.dev/config-namespace"],
        NS
    );
    assert!(binding["metadata"].get("ownerReferences").is_none());
    assert!(fake.get(RB).is_none());

    // Deleted: the API server sets deletionTimestamp and waits for the finalizer.
    let mut deleting = serde_json::to_value(&config).unwrap();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    fake.put(&format!("{CONFIG_PATH}/demo"), deleting);
    fake.clear_requests();
    let config = run(&fake, &ctx).await;
    assert!(fake.get(CRB).is_none());
    assert!(config.metadata.finalizers.unwrap_or_default().is_empty());
    assert_eq!(
        lines(&fake.requests()),
        vec![
            "GET /apis/rbac.authorization.k8s.io/v1/clusterrolebindings".to_owned(),
            format!("DELETE {CRB}"),
            format!("PATCH {CONFIG_PATH}/demo"),
        ]
    );
}

#[tokio::test]
async fn a_failed_request_is_an_error_retried_with_growing_backoff() {
    let (fake, ctx) = FakeApi::start();
    fake.create_config(manifest(example_spec()));
    fake.fail("PATCH", GIT, 500);
    let config = Arc::new(fake.config("demo"));
    let error = reconcile(config.clone(), ctx.clone()).await.unwrap_err();
    assert!(matches!(error, Error::Api(_)), "{error}");
    let first = error_policy(config.clone(), &error, ctx.clone());
    let second = error_policy(config.clone(), &error, ctx.clone());
    assert_ne!(first, second);
    assert_eq!(
        first,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(5))
    );
    assert_eq!(
        second,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(10))
    );
    // Nothing after the failed apply: no status claims the config was applied.
    assert_eq!(
        fake.requests().last().unwrap().line(),
        format!("PATCH {GIT}")
    );
    assert!(fake.config("demo").status.is_none());
    assert!(
        ctx.metrics
            .render()
            .contains("fluxfence_controller_reconcile_errors_total{reason=\"api\"} 2")
    );
}

#[tokio::test]
async fn events_say_what_was_applied_generated_and_deleted() {
    let (fake, ctx) = FakeApi::start_with_events();
    fake.create_config(manifest(ssh_spec()));
    run(&fake, &ctx).await;
    let mut spec = ssh_spec();
    spec["kustomizations"]
        .as_object_mut()
        .unwrap()
        .remove("apps");
    fake.update_spec("demo", spec);
    run(&fake, &ctx).await;

    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/cluster-config/events";
    let requests = fake.requests();
    let events: Vec<&Recorded> = requests.iter().filter(|r| r.path == EVENTS).collect();
    let reasons: Vec<&str> = events
        .iter()
        .map(|e| e.body["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["KeyGenerated", "Applied", "Deleted"]);
    for event in &events {
        assert_eq!(event.method, "POST");
        assert_eq!(event.body["type"], "Normal");
        assert_eq!(event.body["regarding"]["kind"], "FluxConfig");
        assert_eq!(event.body["regarding"]["name"], "demo");
        assert_eq!(event.body["reportingController"], "fluxfence-controller");
    }
    // The second "Applied" joins the first one's series, as kube's recorder does.
    assert!(
        requests
            .iter()
            .any(|r| r.method == "PATCH" && r.path.starts_with(&format!("{EVENTS}/"))),
        "{:?}",
        lines(&requests)
    );
    assert!(
        events[2].body["note"]
            .as_str()
            .unwrap()
            .contains("Kustomization demo-apps")
    );
}

#[tokio::test]
async fn what_cel_leaves_to_the_reconciler_is_refused_with_what_to_change() {
    for (change, reason, hint) in [
        (
            json!({ "self": { "dependsOn": ["self"] } }),
            "DependencyCycle",
            "self -> self",
        ),
        (
            json!({ "Apps_1": { "path": "./x" } }),
            "InvalidKustomizationName",
            "\"Apps_1\" is not a DNS label",
        ),
    ] {
        let (fake, ctx) = FakeApi::start();
        let mut spec = example_spec();
        for (name, entry) in change.as_object().unwrap() {
            spec["kustomizations"][name] = entry.clone();
        }
        fake.create_config(manifest(spec));
        run(&fake, &ctx).await;
        let requests = fake.requests();
        assert_eq!(
            lines(&requests),
            vec![format!("PATCH {CONFIG_PATH}/demo/status")]
        );
        let condition = &requests[0].body["status"]["conditions"][0];
        assert_eq!(condition["reason"], reason);
        let message = condition["message"].as_str().unwrap();
        assert!(message.contains(hint), "{message}");
    }
}
