//! `fluxfence audit` against an in-memory API server behind kube's `Client` (a `tower-test`
//! mock pair): discovery, paging with `continue` tokens, several served versions of one kind,
//! and failures that must fail the read rather than leave a partial report.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use fluxfence::Policy;
use fluxfence::audit::cluster::{self, PAGE_SIZE, Scope};
use fluxfence::audit::{self, policy_report};
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// A served Flux group: its versions (most preferred first, as the API server lists them) and,
/// per version, the kinds served there as `(plural, Kind)`.
struct Group {
    name: &'static str,
    preferred: &'static str,
    versions: Vec<(&'static str, Vec<(&'static str, &'static str)>)>,
}

#[derive(Default)]
struct State {
    groups: Vec<Group>,
    /// Collection path without version (`helm.toolkit.fluxcd.io/helmreleases`, `v1/serviceaccounts`)
    /// → objects, as stored.
    objects: BTreeMap<String, Vec<Value>>,
    requests: Vec<(String, BTreeMap<String, String>)>,
    /// Paths answered with this HTTP status.
    failures: Vec<(String, u16)>,
}

#[derive(Clone, Default)]
struct FakeCluster {
    state: Arc<Mutex<State>>,
}

impl FakeCluster {
    fn client(&self) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                send.send_response(server.answer(&request));
            }
        });
        Client::new(service, "default")
    }

    fn serve(&self, group: Group) {
        self.state.lock().unwrap().groups.push(group);
    }

    fn add(&self, collection: &str, object: Value) {
        let mut state = self.state.lock().unwrap();
        state
            .objects
            .entry(collection.to_owned())
            .or_default()
            .push(object);
    }

    fn fail(&self, path: &str, code: u16) {
        self.state
            .lock()
            .unwrap()
            .failures
            .push((path.to_owned(), code));
    }

    /// `path?query` of every request, in order.
    fn requests(&self) -> Vec<(String, BTreeMap<String, String>)> {
        self.state.lock().unwrap().requests.clone()
    }

    fn answer(&self, request: &Request<Body>) -> Response<Body> {
        let (code, value) = self.answer_uri(request.uri());
        json_response(code, &value)
    }

    /// The HTTP status and JSON body for a GET of `uri`.
    fn answer_uri(&self, uri: &http::Uri) -> (u16, Value) {
        let path = uri.path().to_owned();
        let query: BTreeMap<String, String> = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let mut state = self.state.lock().unwrap();
        state.requests.push((path.clone(), query.clone()));
        if let Some((_, code)) = state.failures.iter().find(|(p, _)| *p == path) {
            return status(*code, &format!("injected failure of {path}"));
        }
        match route(&state, &path, &query) {
            Some(value) => (200, value),
            None => status(404, "the server could not find the requested resource"),
        }
    }

    /// Serves the fake over plain HTTP on a loopback port, for the `fluxfence` binary; returns
    /// a kubeconfig that points at it.
    fn serve_http(&self, dir: &Path) -> PathBuf {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cluster = self.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let cluster = cluster.clone();
                std::thread::spawn(move || serve_connection(&cluster, stream.unwrap()));
            }
        });
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  \
                 cluster: {{server: 'http://127.0.0.1:{port}'}}\nusers:\n- name: me\n  user: {{token: t}}\n\
                 contexts:\n- name: fake\n  context: {{cluster: fake, user: me, namespace: team-a}}\n"
            ),
        )
        .unwrap();
        kubeconfig
    }
}

/// Answers the GET requests of one HTTP/1.1 connection (no bodies, keep-alive).
fn serve_connection(cluster: &FakeCluster, stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
        }
        let target = request_line.split(' ').nth(1).unwrap_or("/");
        let (code, value) = cluster.answer_uri(&target.parse().unwrap());
        let body = serde_json::to_vec(&value).unwrap();
        let head = format!(
            "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        if writer
            .write_all(head.as_bytes())
            .and_then(|()| writer.write_all(&body))
            .is_err()
        {
            return;
        }
    }
}

fn route(state: &State, path: &str, query: &BTreeMap<String, String>) -> Option<Value> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["apis"] => Some(json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": state.groups.iter().map(|g| json!({
                "name": g.name,
                "versions": g.versions.iter().map(|(v, _)| json!({
                    "groupVersion": format!("{}/{v}", g.name), "version": v
                })).collect::<Vec<_>>(),
                "preferredVersion": {"groupVersion": format!("{}/{}", g.name, g.preferred),
                                     "version": g.preferred},
            })).collect::<Vec<_>>(),
        })),
        ["apis", group, version] => {
            let group = state.groups.iter().find(|g| g.name == *group)?;
            let (_, kinds) = group.versions.iter().find(|(v, _)| v == version)?;
            let mut resources = Vec::new();
            for (plural, kind) in kinds {
                let verbs = [
                    "get", "list", "watch", "create", "update", "patch", "delete",
                ];
                resources.push(
                    json!({"name": plural, "singularName": "", "namespaced": true,
                                      "kind": kind, "verbs": verbs}),
                );
                resources.push(
                    json!({"name": format!("{plural}/status"), "singularName": "",
                                      "namespaced": true, "kind": kind, "verbs": ["get", "patch"]}),
                );
            }
            Some(json!({"kind": "APIResourceList", "apiVersion": "v1",
                        "groupVersion": format!("{}/{version}", group.name), "resources": resources}))
        }
        ["api", "v1", "namespaces", name] => {
            let namespaces = state.objects.get("v1/namespaces")?;
            namespaces
                .iter()
                .find(|n| n["metadata"]["name"] == *name)
                .cloned()
        }
        ["apis", group, version, rest @ ..] => {
            let (namespace, plural) = scope_of(rest)?;
            let kinds = &state.groups.iter().find(|g| g.name == *group)?.versions;
            let (_, served) = kinds.iter().find(|(v, _)| v == version)?;
            let (_, kind) = served.iter().find(|(p, _)| *p == plural)?;
            let items = state.objects.get(&format!("{group}/{plural}"));
            let items: Vec<Value> = in_namespace(items, namespace)
                .into_iter()
                .map(|mut o| {
                    o["apiVersion"] = json!(format!("{group}/{version}"));
                    o["kind"] = json!(kind);
                    o
                })
                .collect();
            Some(page(items, query))
        }
        ["api", "v1", rest @ ..] => {
            let (namespace, plural) = scope_of(rest)?;
            let items = state.objects.get(&format!("v1/{plural}"));
            Some(page(in_namespace(items, namespace), query))
        }
        _ => None,
    }
}

/// `[plural]` or `["namespaces", ns, plural]`.
fn scope_of<'a>(rest: &[&'a str]) -> Option<(Option<&'a str>, &'a str)> {
    match rest {
        [plural] => Some((None, plural)),
        ["namespaces", namespace, plural] => Some((Some(namespace), plural)),
        _ => None,
    }
}

fn in_namespace(items: Option<&Vec<Value>>, namespace: Option<&str>) -> Vec<Value> {
    items
        .into_iter()
        .flatten()
        .filter(|o| namespace.is_none_or(|ns| o["metadata"]["namespace"] == ns))
        .cloned()
        .collect()
}

/// One page of `items`, as `limit` and `continue` (here: the offset) ask.
fn page(items: Vec<Value>, query: &BTreeMap<String, String>) -> Value {
    let limit: usize = query
        .get("limit")
        .map_or(usize::MAX, |l| l.parse().unwrap());
    let start: usize = query.get("continue").map_or(0, |c| c.parse().unwrap());
    let end = start.saturating_add(limit).min(items.len());
    let mut metadata = json!({"resourceVersion": "42"});
    if end < items.len() {
        metadata["continue"] = json!(end.to_string());
    }
    json!({"kind": "List", "apiVersion": "v1", "metadata": metadata, "items": items[start..end]})
}

fn json_response(code: u16, value: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(value).unwrap()))
        .unwrap()
}

fn status(code: u16, message: &str) -> (u16, Value) {
    let reason = match code {
        403 => "Forbidden",
        404 => "NotFound",
        410 => "Expired",
        _ => "InternalError",
    };
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

fn flux_groups() -> Vec<Group> {
    vec![
        Group {
            name: "helm.toolkit.fluxcd.io",
            preferred: "v2",
            versions: vec![
                ("v2", vec![("helmreleases", "HelmRelease")]),
                ("v2beta2", vec![("helmreleases", "HelmRelease")]),
                ("v2beta1", vec![("helmreleases", "HelmRelease")]),
            ],
        },
        Group {
            name: "kustomize.toolkit.fluxcd.io",
            preferred: "v1",
            versions: vec![("v1", vec![("kustomizations", "Kustomization")])],
        },
        // As notification-controller serves them: the group prefers v1, where only Receiver
        // is; Alert and Provider are served in v1beta3 only.
        Group {
            name: "notification.toolkit.fluxcd.io",
            preferred: "v1",
            versions: vec![
                ("v1", vec![("receivers", "Receiver")]),
                (
                    "v1beta3",
                    vec![("alerts", "Alert"), ("providers", "Provider")],
                ),
            ],
        },
    ]
}

fn cluster_with_flux() -> FakeCluster {
    let cluster = FakeCluster::default();
    for group in flux_groups() {
        cluster.serve(group);
    }
    for (namespace, labels) in [
        ("cluster-config", json!({})),
        ("team-a", json!({"tenant": "a"})),
        ("team-b", json!({"tenant": "b"})),
    ] {
        cluster.add(
            "v1/namespaces",
            json!({"metadata": {"name": namespace, "labels": labels}}),
        );
    }
    cluster
}

fn helm_release(namespace: &str, name: &str, source_namespace: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}")},
        "spec": {"interval": "10m", "serviceAccountName": "deployer", "chart": {"spec": {
            "chart": "app",
            "sourceRef": {"kind": "HelmRepository", "name": "charts", "namespace": source_namespace}}}}
    })
}

fn service_account(namespace: &str, name: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": namespace}})
}

fn list_requests(cluster: &FakeCluster, path: &str) -> Vec<BTreeMap<String, String>> {
    cluster
        .requests()
        .into_iter()
        .filter(|(p, _)| p == path)
        .map(|(_, q)| q)
        .collect()
}

#[tokio::test]
async fn every_object_is_read_page_by_page_and_judged_once() {
    let cluster = cluster_with_flux();
    let releases = 2 * PAGE_SIZE as usize + 3;
    for i in 0..releases {
        cluster.add(
            "helm.toolkit.fluxcd.io/helmreleases",
            helm_release("team-a", &format!("app-{i:04}"), "team-a"),
        );
    }
    cluster.add(
        "helm.toolkit.fluxcd.io/helmreleases",
        helm_release("team-b", "crossing", "flux-system"),
    );
    cluster.add("v1/serviceaccounts", service_account("team-a", "deployer"));
    cluster.add("v1/serviceaccounts", service_account("team-b", "deployer"));

    let snapshot = cluster::read(&cluster.client(), "test", &Scope::AllNamespaces)
        .await
        .unwrap();

    let pages = list_requests(&cluster, "/apis/helm.toolkit.fluxcd.io/v2/helmreleases");
    let tokens: Vec<Option<&str>> = pages
        .iter()
        .map(|q| q.get("continue").map(String::as_str))
        .collect();
    assert_eq!(tokens, [None, Some("500"), Some("1000")]);
    assert!(pages.iter().all(|q| q["limit"] == "500"));
    assert_eq!(snapshot.objects.len(), releases + 1);
    assert_eq!(snapshot.namespaces["team-a"]["tenant"], "a");

    let audit = audit::judge(snapshot, &Policy::azure_default(), &|_| true);
    assert_eq!(audit.objects.len(), releases + 1);
    let failing: Vec<(String, Vec<&str>)> = audit
        .objects
        .iter()
        .filter(|o| !o.diagnostics.is_empty())
        .map(|o| (o.label(), o.breaks.clone()))
        .collect();
    assert_eq!(
        failing,
        [("HelmRelease team-b/crossing".to_owned(), vec!["FF101"])]
    );
    assert_eq!(audit.report.exit_code(), 1);
}

#[tokio::test]
async fn a_kind_served_in_several_versions_is_read_once_in_the_preferred_one() {
    let cluster = cluster_with_flux();
    cluster.add(
        "helm.toolkit.fluxcd.io/helmreleases",
        helm_release("team-a", "app", "team-a"),
    );
    cluster.add(
        "notification.toolkit.fluxcd.io/alerts",
        json!({"metadata": {"name": "on-call", "namespace": "team-a"},
               "spec": {"providerRef": {"name": "slack"},
                        "eventSources": [{"kind": "Kustomization", "name": "*", "namespace": "team-b"}]}}),
    );
    let client = cluster.client();

    let kinds = cluster::discover(&client).await.unwrap();
    let read: Vec<(String, String, Vec<String>)> = kinds
        .iter()
        .map(|k| (k.resource(), k.version.clone(), k.served.clone()))
        .collect();
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        read,
        [
            (
                "kustomizations.kustomize.toolkit.fluxcd.io".into(),
                "v1".into(),
                strings(&["v1"])
            ),
            (
                "helmreleases.helm.toolkit.fluxcd.io".into(),
                "v2".into(),
                strings(&["v2", "v2beta2", "v2beta1"])
            ),
            (
                "alerts.notification.toolkit.fluxcd.io".into(),
                "v1beta3".into(),
                strings(&["v1beta3"])
            ),
            (
                "providers.notification.toolkit.fluxcd.io".into(),
                "v1beta3".into(),
                strings(&["v1beta3"])
            ),
            (
                "receivers.notification.toolkit.fluxcd.io".into(),
                "v1".into(),
                strings(&["v1"])
            ),
        ]
    );

    let snapshot = cluster::read(&client, "test", &Scope::AllNamespaces)
        .await
        .unwrap();
    // The API server serves the same stored objects in every version (Flux's CRDs convert
    // with `None`): a second version would list every object again.
    let beta_lists = cluster
        .requests()
        .into_iter()
        .filter(|(p, q)| p.contains("/v2beta") && q.contains_key("limit"))
        .count();
    assert_eq!(beta_lists, 0);
    let versions: Vec<&str> = snapshot
        .objects
        .iter()
        .map(|o| o["apiVersion"].as_str().unwrap())
        .collect();
    assert_eq!(
        versions,
        [
            "helm.toolkit.fluxcd.io/v2",
            "notification.toolkit.fluxcd.io/v1beta3"
        ]
    );

    let audit = audit::judge(snapshot, &Policy::azure_default(), &|_| true);
    let codes: Vec<&str> = audit
        .report
        .diagnostics
        .iter()
        .map(|d| d.finding.code)
        .collect();
    assert_eq!(
        codes,
        ["FF102", "FF111"],
        "the Alert's event source, the release's account"
    );
}

#[tokio::test]
async fn a_forbidden_list_fails_the_audit_naming_the_verb_and_the_resource() {
    let cluster = cluster_with_flux();
    cluster.add(
        "helm.toolkit.fluxcd.io/helmreleases",
        helm_release("team-a", "app", "team-a"),
    );
    cluster.fail("/apis/kustomize.toolkit.fluxcd.io/v1/kustomizations", 403);

    let error = cluster::read(&cluster.client(), "test", &Scope::AllNamespaces)
        .await
        .unwrap_err();

    assert_eq!(error.verb, "list");
    assert_eq!(error.resource, "kustomizations.kustomize.toolkit.fluxcd.io");
    let message = error.to_string();
    assert!(
        message.starts_with(
            "cannot list kustomizations.kustomize.toolkit.fluxcd.io in all namespaces: forbidden by RBAC (HTTP 403"
        ),
        "{message}"
    );
    assert!(
        message.contains("-n"),
        "says how to narrow the audit: {message}"
    );
}

#[tokio::test]
async fn forbidden_service_accounts_fail_the_audit_too() {
    let cluster = cluster_with_flux();
    cluster.fail("/api/v1/namespaces/team-a/serviceaccounts", 403);
    let scope = Scope::Namespace("team-a".into());

    let error = cluster::read(&cluster.client(), "test", &scope)
        .await
        .unwrap_err();

    assert_eq!(
        (error.verb, error.resource.as_str(), error.scope.as_str()),
        ("list", "serviceaccounts", "in namespace team-a")
    );
}

#[tokio::test]
async fn a_list_that_expires_between_pages_fails_rather_than_reporting_part_of_it() {
    let cluster = cluster_with_flux();
    for i in 0..=PAGE_SIZE {
        cluster.add(
            "helm.toolkit.fluxcd.io/helmreleases",
            helm_release("team-a", &format!("app-{i}"), "team-a"),
        );
    }
    // Every request of this path fails, the first page's included, so the failure is sure;
    // a later page failing takes the same path through the code.
    cluster.fail("/apis/helm.toolkit.fluxcd.io/v2/helmreleases", 410);

    let error = cluster::read(&cluster.client(), "test", &Scope::AllNamespaces)
        .await
        .unwrap_err();

    assert!(error.to_string().contains("run the audit again"), "{error}");
}

#[tokio::test]
async fn one_namespace_reads_only_that_namespace() {
    let cluster = cluster_with_flux();
    cluster.add(
        "helm.toolkit.fluxcd.io/helmreleases",
        helm_release("team-a", "mine", "team-a"),
    );
    cluster.add(
        "helm.toolkit.fluxcd.io/helmreleases",
        helm_release("team-b", "theirs", "flux-system"),
    );
    cluster.add("v1/serviceaccounts", service_account("team-a", "deployer"));

    let snapshot = cluster::read(
        &cluster.client(),
        "test",
        &Scope::Namespace("team-a".into()),
    )
    .await
    .unwrap();

    let paths: Vec<String> = cluster.requests().into_iter().map(|(p, _)| p).collect();
    assert!(
        paths.contains(&"/apis/helm.toolkit.fluxcd.io/v2/namespaces/team-a/helmreleases".into())
    );
    assert!(paths.contains(&"/api/v1/namespaces/team-a/serviceaccounts".into()));
    assert!(paths.contains(&"/api/v1/namespaces/team-a".into()));
    assert!(
        !paths.iter().any(|p| p == "/api/v1/namespaces"),
        "{paths:?}"
    );
    assert_eq!(snapshot.objects.len(), 1);
    assert_eq!(snapshot.namespaces.keys().collect::<Vec<_>>(), ["team-a"]);
    let audit = audit::judge(snapshot, &Policy::azure_default(), &|_| true);
    assert!(audit.report.diagnostics.is_empty());
    assert_eq!(audit.report.exit_code(), 0);
}

#[tokio::test]
async fn impersonation_is_judged_against_the_accounts_that_exist() {
    let cluster = cluster_with_flux();
    // Same release in two namespaces; only team-a has the account it is applied as.
    cluster.add(
        "helm.toolkit.fluxcd.io/helmreleases",
        helm_release("team-a", "app", "team-a"),
    );
    cluster.add(
        "helm.toolkit.fluxcd.io/helmreleases",
        helm_release("team-b", "app", "team-b"),
    );
    cluster.add("v1/serviceaccounts", service_account("team-a", "deployer"));
    cluster.add("v1/serviceaccounts", service_account("team-b", "default"));

    let snapshot = cluster::read(&cluster.client(), "test", &Scope::AllNamespaces)
        .await
        .unwrap();
    let audit = audit::judge(snapshot, &Policy::azure_default(), &|_| true);

    let found: Vec<(&str, &str)> = audit
        .report
        .diagnostics
        .iter()
        .map(|d| (d.file.as_str(), d.finding.code))
        .collect();
    assert_eq!(found, [("team-b/HelmRelease/app", "FF111")]);
    let reports = policy_report::reports(&audit);
    assert_eq!(reports["team-a"]["summary"]["pass"], 1);
    assert_eq!(reports["team-b"]["summary"]["fail"], 1);
    assert_eq!(
        reports["team-b"]["results"][0]["resources"][0]["uid"],
        "uid-team-b-app"
    );
}

#[tokio::test]
async fn a_cluster_that_cannot_be_reached_is_an_error_naming_the_request() {
    // Nothing listens on port 1 of the loopback interface.
    let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
    let client = Client::try_from(config).unwrap();

    let error = cluster::read(&client, "test", &Scope::AllNamespaces)
        .await
        .unwrap_err();

    let message = error.to_string();
    assert!(
        message.starts_with(
            "cannot get the API groups (/apis) for discovery: the API server cannot be reached"
        ),
        "{message}"
    );
    assert!(message.contains("--kubeconfig"), "{message}");
}

/// A cluster with a clean release in team-a and a crossing one in team-b.
fn mixed_cluster() -> FakeCluster {
    let cluster = cluster_with_flux();
    cluster.add(
        "helm.toolkit.fluxcd.io/helmreleases",
        helm_release("team-a", "app", "team-a"),
    );
    cluster.add(
        "helm.toolkit.fluxcd.io/helmreleases",
        helm_release("team-b", "crossing", "flux-system"),
    );
    cluster.add("v1/serviceaccounts", service_account("team-a", "deployer"));
    cluster.add("v1/serviceaccounts", service_account("team-b", "deployer"));
    cluster
}

fn fluxfence(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_fluxfence"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn the_command_reports_in_text_and_exits_as_lint_does() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = mixed_cluster().serve_http(dir.path());
    let kubeconfig = kubeconfig.to_str().unwrap();

    let (code, stdout, stderr) = fluxfence(&["audit", "--kubeconfig", kubeconfig, "-A"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("team-b/HelmRelease/crossing:"), "{stdout}");
    assert!(
        stdout
            .contains("Audited 2 Flux objects in 3 namespaces of context fake (http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 object would fail at its next reconcile with multi-tenancy enforced:\n  HelmRelease team-b/crossing: FF101\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("The webhook would deny 1 object"),
        "{stdout}"
    );

    // The context's namespace (team-a) by default: clean.
    let (code, stdout, _) = fluxfence(&["audit", "--kubeconfig", kubeconfig]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("Audited 1 Flux object in 1 namespace"),
        "{stdout}"
    );

    let (code, _, _) = fluxfence(&["audit", "--kubeconfig", kubeconfig, "-A", "--exit-zero"]);
    assert_eq!(code, 0);
}

#[test]
fn policy_reports_go_to_stdout_and_the_summary_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = mixed_cluster().serve_http(dir.path());
    let sarif = dir.path().join("audit.sarif");
    let sarif_arg = format!("sarif={}", sarif.display());

    let (code, stdout, stderr) = fluxfence(&[
        "audit",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "-A",
        "--format",
        "policyreport",
        "--format",
        &sarif_arg,
    ]);

    assert_eq!(code, 1, "{stderr}");
    let mut reports = Vec::new();
    fluxfence::yaml::load_documents(&stdout, |d| reports.push(d.root.to_json())).unwrap();
    let namespaces: Vec<&str> = reports
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, ["team-a", "team-b"]);
    assert_eq!(reports[1]["results"][0]["rule"], "FF101");
    assert!(
        stderr.contains("would fail at its next reconcile"),
        "{stderr}"
    );
    let sarif: Value = serde_json::from_str(&std::fs::read_to_string(&sarif).unwrap()).unwrap();
    assert_eq!(sarif["runs"][0]["results"][0]["ruleId"], "FF101");
}

#[test]
fn a_forbidden_list_exits_2_with_no_report() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = mixed_cluster();
    cluster.fail("/apis/helm.toolkit.fluxcd.io/v2/helmreleases", 403);
    let kubeconfig = cluster.serve_http(dir.path());

    let (code, stdout, stderr) = fluxfence(&[
        "audit",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "-A",
        "--format",
        "json",
    ]);

    assert_eq!(code, 2);
    assert_eq!(stdout, "", "no partial report");
    assert!(
        stderr.starts_with("error: cannot list helmreleases.helm.toolkit.fluxcd.io in all namespaces: forbidden by RBAC"),
        "{stderr}"
    );
}
