//! The PolicyReports of the live audit against an in-memory API server behind kube's `Client`
//! (a `tower-test` mock pair) that answers lists and watches.
//!
//! The writer: reports written only when their content changes, kept across a restart,
//! deleted with the namespace's last Flux object, nothing done without the CRD, and the same
//! reports `fluxfence audit --format policyreport` prints.
//!
//! The schedule (`reports::run` over the watch caches, in paused time): the first pass once
//! every cache is listed; events coalesce into one pass per interval; no event, no pass, no
//! list and no write; a pass whose reports are unchanged writes nothing; a cache whose list or
//! watch fails holds every report back until it is listed again; no watch before the
//! PolicyReport CRD is installed; a Flux kind served later is watched after the next
//! discovery.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use fluxfence::Policy;
use fluxfence::audit::cluster::{self, Scope};
use fluxfence::audit::{self, policy_report};
use fluxfence_controller::metrics::Metrics;
use fluxfence_controller::reports::{self, Pass, PolicyResults, Reporter};
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

type Chunk = Result<Frame<Bytes>, Infallible>;

/// One request as the fake saw it.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    method: String,
    path: String,
    watch: bool,
}

impl Seen {
    /// A list of a collection the audit reads (not a watch, not discovery, not a report).
    fn is_list(&self) -> bool {
        self.method == "GET"
            && !self.watch
            && [
                "/apis/helm.toolkit.fluxcd.io/v2/helmreleases",
                "/api/v1/serviceaccounts",
                "/api/v1/namespaces",
            ]
            .contains(&self.path.as_str())
    }

    fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "PATCH" | "DELETE")
    }
}

#[derive(Default)]
struct State {
    crd: bool,
    /// Whether helm.toolkit.fluxcd.io is served (discovery).
    helm: bool,
    releases: Vec<Value>,
    accounts: Vec<(String, String)>,
    namespaces: Vec<String>,
    /// Stored PolicyReports by namespace.
    reports: BTreeMap<String, Value>,
    /// `METHOD namespace` of every write, taken by `writes()`.
    writes: Vec<String>,
    requests: Vec<Seen>,
    resource_version: u64,
    /// Collections (their paths) whose lists and watches are refused with 403.
    forbidden: BTreeSet<String>,
    /// Open watches: their collection path and where their events go.
    watches: Vec<(String, mpsc::UnboundedSender<Chunk>)>,
}

impl State {
    fn next_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    fn items(&self, path: &str) -> Vec<Value> {
        match path {
            RELEASES => self.releases.clone(),
            ACCOUNTS => self
                .accounts
                .iter()
                .map(|(ns, name)| account(ns, name))
                .collect(),
            NAMESPACES => self.namespaces.iter().map(|ns| namespace(ns)).collect(),
            _ => Vec::new(),
        }
    }

    /// Sends a watch event to every open watch of `path`.
    fn notify(&mut self, path: &str, event: Value) {
        let line = Bytes::from(format!("{event}\n"));
        self.watches.retain(|(watched, events)| {
            watched != path || events.send(Ok(Frame::data(line.clone()))).is_ok()
        });
    }
}

const RELEASES: &str = "/apis/helm.toolkit.fluxcd.io/v2/helmreleases";
const ACCOUNTS: &str = "/api/v1/serviceaccounts";
const NAMESPACES: &str = "/api/v1/namespaces";
const INTERVAL: Duration = Duration::from_secs(60);

fn account(namespace: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount",
           "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"}})
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "resourceVersion": "1"}})
}

#[derive(Clone, Default)]
struct FakeApi {
    state: Arc<Mutex<State>>,
}

fn once(code: u16, body: &Value) -> Response<BoxBody<Bytes, Infallible>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())).boxed())
        .unwrap()
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
           "reason": reason, "message": reason})
}

impl FakeApi {
    fn client(&self) -> Client {
        let (service, mut handle) =
            tower_test::mock::pair::<Request<Body>, Response<BoxBody<Bytes, Infallible>>>();
        let fake = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                send.send_response(fake.answer(request).await);
            }
        });
        Client::new(service, "default")
    }

    fn with<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        change(&mut self.state.lock().unwrap())
    }

    async fn answer(&self, request: Request<Body>) -> Response<BoxBody<Bytes, Infallible>> {
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let watching = request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "watch=true"));
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        let mut state = self.state.lock().unwrap();
        state.requests.push(Seen {
            at: Instant::now(),
            method: method.clone(),
            path: path.clone(),
            watch: watching,
        });
        if [RELEASES, ACCOUNTS, NAMESPACES].contains(&path.as_str()) && method == "GET" {
            if state.forbidden.contains(&path) {
                return once(403, &status(403, "Forbidden"));
            }
            if watching {
                let (events, chunks) = mpsc::unbounded_channel::<Chunk>();
                state.watches.push((path, events));
                let stream = futures::stream::unfold(chunks, |mut chunks| async move {
                    chunks.recv().await.map(|chunk| (chunk, chunks))
                });
                return Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(StreamBody::new(stream).boxed())
                    .unwrap();
            }
            let list = json!({"apiVersion": "v1", "kind": "List",
                "metadata": {"resourceVersion": state.resource_version.to_string()},
                "items": state.items(&path)});
            return once(200, &list);
        }
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (code, body) = match (method.as_str(), parts.as_slice()) {
            ("GET", ["apis"]) if !state.helm => (
                200,
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
            ),
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
            ("GET", ["apis", "wgpolicyk8s.io", "v1alpha2"]) if state.crd => (
                200,
                json!({
                "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "wgpolicyk8s.io/v1alpha2",
                "resources": [{"name": "policyreports", "singularName": "policyreport", "namespaced": true,
                               "kind": "PolicyReport", "verbs": ["get", "list", "create", "patch", "delete"]}]}),
            ),
            ("GET", ["apis", "wgpolicyk8s.io", "v1alpha2", "policyreports"]) if state.crd => (
                200,
                json!({"apiVersion": "v1", "kind": "List", "metadata": {},
                       "items": state.reports.values().cloned().collect::<Vec<_>>()}),
            ),
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
                    None => (404, status(404, "NotFound")),
                }
            }
            _ => (404, status(404, "NotFound")),
        };
        once(code, &body)
    }

    fn writes(&self) -> Vec<String> {
        self.with(|s| std::mem::take(&mut s.writes))
    }

    /// The requests made after `since` (virtual time: those of one moment share it).
    fn requests_since(&self, since: Instant) -> Vec<Seen> {
        self.with(|s| {
            s.requests
                .iter()
                .filter(|r| r.at > since)
                .cloned()
                .collect()
        })
    }

    /// Replaces release `index` and tells the watches, as the API server would.
    fn update_release(&self, index: usize, mut release: Value) {
        self.with(|s| {
            release["metadata"]["resourceVersion"] = json!(s.next_version());
            s.releases[index] = release.clone();
            s.notify(RELEASES, json!({"type": "MODIFIED", "object": release}));
        });
    }

    /// Ends every watch of `path` with an error event that makes a watcher list again.
    fn break_watches(&self, path: &str) {
        self.with(|s| {
            s.notify(
                path,
                json!({"type": "ERROR", "object": status(500, "InternalError")}),
            );
        });
    }
}

fn release(namespace: &str, name: &str, source_namespace: &str) -> Value {
    json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"),
                     "resourceVersion": "1"},
        "spec": {"interval": "10m", "serviceAccountName": "deployer", "chart": {"spec": {"chart": "app",
            "sourceRef": {"kind": "HelmRepository", "name": "charts", "namespace": source_namespace}}}}
    })
}

fn cluster() -> FakeApi {
    let fake = FakeApi::default();
    fake.with(|s| {
        s.crd = true;
        s.helm = true;
        s.resource_version = 1;
        s.releases = vec![
            release("team-a", "app", "team-a"),
            release("team-b", "app", "flux-system"),
        ];
        s.accounts = vec![
            ("team-a".into(), "deployer".into()),
            ("team-b".into(), "deployer".into()),
        ];
        s.namespaces = vec!["team-a".into(), "team-b".into()];
    });
    fake
}

/// One pass of the writer over what the CLI would read.
async fn pass(reporter: &mut Reporter, client: &Client, results: &PolicyResults) -> Pass {
    let snapshot = cluster::read(client, "the cluster", &Scope::AllNamespaces)
        .await
        .unwrap();
    reporter
        .pass(client, snapshot, &Policy::azure_default(), results)
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

    // Nothing changed: nothing is written.
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
async fn nothing_is_written_without_the_policy_report_crd() {
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

/// `reports::run` on `fake`, in the background; stopped when the sender is dropped or sends.
fn start(fake: &FakeApi) -> (Arc<Metrics>, watch::Sender<bool>) {
    let metrics = Arc::new(Metrics::new());
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(reports::run(
        fake.client(),
        Policy::azure_default(),
        INTERVAL,
        metrics.clone(),
        stopped,
    ));
    (metrics, stop)
}

/// Lets (paused) time run until `done`, at most `limit` of it.
async fn run_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the loop and waits for its first pass and the writes of every report; returns when
/// that pass wrote.
async fn started(fake: &FakeApi) -> (Arc<Metrics>, watch::Sender<bool>, Instant) {
    let began = Instant::now();
    let (metrics, stop) = start(fake);
    run_until(INTERVAL, "the first pass", || {
        metrics.policy_report_passes() == 1
    })
    .await;
    assert_eq!(fake.writes(), ["PATCH team-a", "PATCH team-b"]);
    let written = fake
        .requests_since(began - Duration::from_millis(1))
        .iter()
        .rfind(|r| r.is_write())
        .map(|r| r.at)
        .unwrap();
    (metrics, stop, written)
}

#[tokio::test(start_paused = true)]
async fn the_controllers_reports_are_the_clis_and_the_gauges_count_the_findings() {
    let fake = cluster();
    let (metrics, _stop, _) = started(&fake).await;

    // What `fluxfence audit -A --format policyreport` prints for the same cluster.
    let snapshot = cluster::read(&fake.client(), "cli", &Scope::AllNamespaces)
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
    assert!(text.contains("fluxfence_policy_report_passes_total 1\n"));
}

#[tokio::test(start_paused = true)]
async fn events_within_an_interval_make_one_pass_and_one_write() {
    let fake = cluster();
    let (metrics, _stop, first) = started(&fake).await;

    // Three changes to team-a's release in quick succession, the last one a violation.
    fake.update_release(0, release("team-a", "app", "team-b"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    fake.update_release(0, release("team-a", "app", "team-a"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    fake.update_release(0, release("team-a", "app", "flux-system"));

    run_until(INTERVAL * 3, "the second pass", || {
        metrics.policy_report_passes() == 2
    })
    .await;
    let requests = fake.requests_since(first);
    let writes: Vec<&Seen> = requests.iter().filter(|r| r.is_write()).collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(
        writes[0].at >= first + INTERVAL,
        "written {:?} after the first pass, sooner than the interval",
        writes[0].at - first
    );
    assert_eq!(fake.writes(), ["PATCH team-a"]);
    let report = fake.with(|s| s.reports["team-a"].clone());
    assert_eq!(report["summary"]["fail"], 1, "{report}");
    // The change came by the watch: nothing was listed again.
    assert!(
        requests.iter().all(|r| !r.is_list()),
        "{:?}",
        requests.iter().filter(|r| r.is_list()).collect::<Vec<_>>()
    );

    // Another interval with no event: no third pass.
    tokio::time::sleep(INTERVAL * 3).await;
    assert_eq!(metrics.policy_report_passes(), 2);
}

#[tokio::test(start_paused = true)]
async fn no_event_no_pass_no_list_and_no_write() {
    let fake = cluster();
    let (metrics, _stop, first) = started(&fake).await;

    tokio::time::sleep(INTERVAL * 10).await;

    assert_eq!(metrics.policy_report_passes(), 1);
    let requests = fake.requests_since(first);
    let unexpected: Vec<&Seen> = requests
        .iter()
        .filter(|r| r.is_list() || r.is_write())
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
}

#[tokio::test(start_paused = true)]
async fn a_pass_whose_reports_are_unchanged_writes_nothing() {
    let fake = cluster();
    let (metrics, _stop, _) = started(&fake).await;

    // An event that changes no finding: the release's status, as its controller writes it.
    let mut reconciled = release("team-a", "app", "team-a");
    reconciled["status"] = json!({"observedGeneration": 1, "conditions": [
        {"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
         "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
    fake.update_release(0, reconciled);

    run_until(INTERVAL * 3, "the second pass", || {
        metrics.policy_report_passes() == 2
    })
    .await;
    assert!(fake.writes().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_cache_that_cannot_list_holds_every_report_back_until_it_can() {
    let fake = cluster();
    fake.with(|s| {
        s.forbidden.insert(ACCOUNTS.to_owned());
    });
    let (metrics, _stop) = start(&fake);

    // Without the accounts FF111 would find every release's account missing: no pass at all.
    tokio::time::sleep(INTERVAL * 5).await;
    assert_eq!(metrics.policy_report_passes(), 0);
    assert!(fake.writes().is_empty());
    let retries = fake
        .requests_since(Instant::now() - INTERVAL * 5)
        .iter()
        .filter(|r| r.path == ACCOUNTS)
        .count();
    assert!(retries > 1, "the failed list is retried: {retries}");

    // The rights come: the retry lists, and the reports are written from complete caches.
    fake.with(|s| s.forbidden.clear());
    run_until(INTERVAL * 2, "the first pass", || {
        metrics.policy_report_passes() == 1
    })
    .await;
    assert_eq!(fake.writes(), ["PATCH team-a", "PATCH team-b"]);
    let report = fake.with(|s| s.reports["team-a"].clone());
    assert_eq!(report["summary"]["fail"], 0, "{report}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_watch_lists_again_and_nothing_is_reported_until_it_has() {
    let fake = cluster();
    let (metrics, _stop, first) = started(&fake).await;

    // The release watch breaks, and its list is refused: a change meanwhile is not seen.
    fake.with(|s| {
        s.forbidden.insert(RELEASES.to_owned());
        s.releases[0] = release("team-a", "app", "flux-system");
    });
    fake.break_watches(RELEASES);
    // An account event makes a pass due; the broken cache holds it back.
    fake.with(|s| {
        s.accounts.push(("team-a".into(), "other".into()));
        let object = account("team-a", "other");
        s.notify(ACCOUNTS, json!({"type": "ADDED", "object": object}));
    });
    tokio::time::sleep(INTERVAL * 4).await;
    assert_eq!(metrics.policy_report_passes(), 1);
    assert!(fake.writes().is_empty());

    // The list comes back with the change, and the next pass reports it.
    // It was not resumed: it lists, again and again while refused.
    let lists = fake
        .requests_since(first)
        .iter()
        .filter(|r| r.path == RELEASES && r.is_list())
        .count();
    assert!(lists > 1, "the broken watch lists again: {lists}");
    fake.with(|s| s.forbidden.clear());
    run_until(INTERVAL * 2, "the pass after the list", || {
        metrics.policy_report_passes() == 2
    })
    .await;
    assert_eq!(fake.writes(), ["PATCH team-a"]);
}

#[tokio::test(start_paused = true)]
async fn nothing_is_watched_before_the_policy_report_crd_is_installed() {
    let fake = cluster();
    fake.with(|s| s.crd = false);
    let began = Instant::now() - Duration::from_millis(1);
    let (metrics, _stop) = start(&fake);

    tokio::time::sleep(INTERVAL * 5).await;
    let requests = fake.requests_since(began);
    assert!(
        requests
            .iter()
            .all(|r| r.path == "/apis/wgpolicyk8s.io/v1alpha2"),
        "only the CRD is looked for: {requests:?}"
    );
    assert!(requests.len() >= 5, "once an interval: {}", requests.len());
    assert_eq!(metrics.policy_report_passes(), 0);

    fake.with(|s| s.crd = true);
    run_until(INTERVAL * 2, "the first pass", || {
        metrics.policy_report_passes() == 1
    })
    .await;
    assert_eq!(fake.writes(), ["PATCH team-a", "PATCH team-b"]);
}

#[tokio::test(start_paused = true)]
async fn a_flux_kind_served_later_is_watched_from_the_next_discovery() {
    let fake = cluster();
    fake.with(|s| s.helm = false);
    let began = Instant::now() - Duration::from_millis(1);
    let (metrics, _stop) = start(&fake);

    // No Flux kind: the accounts and namespaces alone, and no report to write.
    run_until(INTERVAL, "the first pass", || {
        metrics.policy_report_passes() == 1
    })
    .await;
    assert!(fake.writes().is_empty());
    assert!(
        fake.requests_since(began)
            .iter()
            .all(|r| r.path != RELEASES),
        "HelmReleases are not served yet"
    );

    // The HelmRelease CRD is installed: the next discovery finds it and lists it.
    fake.with(|s| s.helm = true);
    run_until(INTERVAL * 2, "the reports of the releases", || {
        metrics.policy_report_passes() == 2
    })
    .await;
    assert_eq!(fake.writes(), ["PATCH team-a", "PATCH team-b"]);
}
