//! The PolicyReport writer against an in-memory API server behind kube's `Client` (a
//! `tower-test` mock pair): reports written only when their content changes, kept across a
//! restart, deleted with the namespace's last Flux object, nothing done without the CRD, and
//! the same reports `fluxfence audit --format policyreport` prints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use fluxfence::Policy;
use fluxfence::audit::cluster::{self, Scope};
use fluxfence::audit::{self, policy_report};
use fluxfence_controller::metrics::Metrics;
use fluxfence_controller::reports::{Pass, PolicyResults, Reporter};
use http::{Request, Response};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

#[derive(Default)]
struct State {
    crd: bool,
    releases: Vec<Value>,
    accounts: Vec<(String, String)>,
    /// Stored PolicyReports by namespace.
    reports: BTreeMap<String, Value>,
    /// `METHOD path` of every write.
    writes: Vec<String>,
}

#[derive(Clone, Default)]
struct FakeApi {
    state: Arc<Mutex<State>>,
}

impl FakeApi {
    fn client(&self) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (code, body) = fake.answer(request).await;
                send.send_response(
                    Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap(),
                );
            }
        });
        Client::new(service, "default")
    }

    fn with<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        change(&mut self.state.lock().unwrap())
    }

    async fn answer(&self, request: Request<Body>) -> (u16, Value) {
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        let mut state = self.state.lock().unwrap();
        let list = |items: Vec<Value>| json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items});
        let not_found = (
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound", "message": "not found"}),
        );
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method.as_str(), parts.as_slice()) {
            ("GET", ["apis"]) => (
                200,
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
                "name": "helm.toolkit.fluxcd.io",
                "versions": [{"groupVersion": "helm.toolkit.fluxcd.io/v2", "version": "v2"}],
                "preferredVersion": {"groupVersion": "helm.toolkit.fluxcd.io/v2", "version": "v2"}}]}),
            ),
            ("GET", ["apis", "helm.toolkit.fluxcd.io", "v2"]) => (
                200,
                json!({
                "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "helm.toolkit.fluxcd.io/v2",
                "resources": [{"name": "helmreleases", "singularName": "helmrelease", "namespaced": true,
                               "kind": "HelmRelease", "verbs": ["get", "list", "watch"]}]}),
            ),
            ("GET", ["apis", "helm.toolkit.fluxcd.io", "v2", "helmreleases"]) => {
                (200, list(state.releases.clone()))
            }
            ("GET", ["api", "v1", "serviceaccounts"]) => (
                200,
                list(
                    state
                        .accounts
                        .iter()
                        .map(|(ns, name)| json!({"metadata": {"name": name, "namespace": ns}}))
                        .collect(),
                ),
            ),
            ("GET", ["api", "v1", "namespaces"]) => (
                200,
                list(
                    ["team-a", "team-b"]
                        .iter()
                        .map(|ns| json!({"metadata": {"name": ns}}))
                        .collect(),
                ),
            ),
            ("GET", ["apis", "wgpolicyk8s.io", "v1alpha2"]) if state.crd => (
                200,
                json!({
                "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "wgpolicyk8s.io/v1alpha2",
                "resources": [{"name": "policyreports", "singularName": "policyreport", "namespaced": true,
                               "kind": "PolicyReport", "verbs": ["get", "list", "create", "patch", "delete"]}]}),
            ),
            ("GET", ["apis", "wgpolicyk8s.io", "v1alpha2", "policyreports"]) if state.crd => {
                (200, list(state.reports.values().cloned().collect()))
            }
            (
                "PATCH",
                [
                    "apis",
                    "wgpolicyk8s.io",
                    "v1alpha2",
                    "namespaces",
                    namespace,
                    "policyreports",
                    "fluxfence",
                ],
            ) => {
                let report: Value = serde_json::from_slice(&bytes).unwrap();
                state.writes.push(format!("PATCH {namespace}"));
                state
                    .reports
                    .insert((*namespace).to_owned(), report.clone());
                (200, report)
            }
            (
                "DELETE",
                [
                    "apis",
                    "wgpolicyk8s.io",
                    "v1alpha2",
                    "namespaces",
                    namespace,
                    "policyreports",
                    "fluxfence",
                ],
            ) => {
                state.writes.push(format!("DELETE {namespace}"));
                match state.reports.remove(*namespace) {
                    Some(_) => (
                        200,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}),
                    ),
                    None => not_found,
                }
            }
            _ => not_found,
        }
    }

    fn writes(&self) -> Vec<String> {
        self.with(|s| std::mem::take(&mut s.writes))
    }
}

fn release(namespace: &str, name: &str, source_namespace: &str) -> Value {
    json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}")},
        "spec": {"interval": "10m", "serviceAccountName": "deployer", "chart": {"spec": {"chart": "app",
            "sourceRef": {"kind": "HelmRepository", "name": "charts", "namespace": source_namespace}}}}
    })
}

fn cluster() -> FakeApi {
    let fake = FakeApi::default();
    fake.with(|s| {
        s.crd = true;
        s.releases = vec![
            release("team-a", "app", "team-a"),
            release("team-b", "app", "flux-system"),
        ];
        s.accounts = vec![
            ("team-a".into(), "deployer".into()),
            ("team-b".into(), "deployer".into()),
        ];
    });
    fake
}

async fn pass(reporter: &mut Reporter, client: &Client, results: &PolicyResults) -> Pass {
    reporter
        .pass(client, &Policy::azure_default(), results)
        .await
        .unwrap()
}

#[tokio::test]
async fn reports_are_written_when_their_content_changes_and_only_then() {
    let fake = cluster();
    let client = fake.client();
    let results = PolicyResults::default();
    let mut reporter = Reporter::default();

    let first = pass(&mut reporter, &client, &results).await;
    assert_eq!(first.written, ["team-a", "team-b"]);
    assert_eq!(fake.writes(), ["PATCH team-a", "PATCH team-b"]);

    // Nothing changed: the lists run, nothing is written.
    let second = pass(&mut reporter, &client, &results).await;
    assert!(second.written.is_empty() && second.deleted.is_empty());
    assert!(fake.writes().is_empty());

    // team-a's release now crosses namespaces: only team-a's report changes.
    fake.with(|s| s.releases[0] = release("team-a", "app", "flux-system"));
    pass(&mut reporter, &client, &results).await;
    assert_eq!(fake.writes(), ["PATCH team-a"]);

    // team-b's last Flux object goes: so does its report.
    fake.with(|s| s.releases.truncate(1));
    let last = pass(&mut reporter, &client, &results).await;
    assert_eq!(last.deleted, ["team-b"]);
    assert_eq!(fake.writes(), ["DELETE team-b"]);
}

#[tokio::test]
async fn a_restarted_controller_does_not_rewrite_the_reports_it_finds() {
    let fake = cluster();
    let client = fake.client();
    let results = PolicyResults::default();
    pass(&mut Reporter::default(), &client, &results).await;
    fake.writes();

    let restarted = pass(&mut Reporter::default(), &client, &results).await;

    assert!(restarted.written.is_empty(), "{restarted:?}");
    assert!(fake.writes().is_empty());
}

#[tokio::test]
async fn nothing_is_read_or_written_without_the_policy_report_crd() {
    let fake = cluster();
    fake.with(|s| s.crd = false);
    let pass = pass(
        &mut Reporter::default(),
        &fake.client(),
        &PolicyResults::default(),
    )
    .await;
    assert_eq!(pass, Pass::default());
    assert!(fake.writes().is_empty());
}

#[tokio::test]
async fn the_controllers_reports_are_the_clis_and_the_gauges_count_the_findings() {
    let fake = cluster();
    let client = fake.client();
    let metrics = Metrics::new();
    pass(&mut Reporter::default(), &client, &metrics.policy_results).await;

    // What `fluxfence audit -A --format policyreport` prints for the same cluster.
    let snapshot = cluster::read(&client, "cli", &Scope::AllNamespaces)
        .await
        .unwrap();
    let cli = policy_report::reports(&audit::judge(snapshot, &Policy::azure_default(), &|_| true));
    let stored = fake.with(|s| s.reports.clone());
    assert_eq!(stored, cli);

    let text = metrics.render();
    assert!(
        text.contains("# TYPE fluxfence_policy_results gauge"),
        "{text}"
    );
    assert!(
        text.contains(
            "fluxfence_policy_results{rule=\"FF101\",severity=\"deny\",namespace=\"team-b\"} 1"
        ),
        "{text}"
    );
    assert!(
        !text.contains("namespace=\"team-a\""),
        "team-a is clean: {text}"
    );
}
