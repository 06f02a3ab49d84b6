//! The ServiceAccount cache: a reflector over an in-memory API server behind kube's `Client`
//! (a `tower-test` mock pair) that answers the first list when the test says so, and the real
//! router judging against it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body as AxumBody;
use axum::http::StatusCode;
use fluxfence::Policy;
use fluxfence_webhook::accounts::ServiceAccountCache;
use fluxfence_webhook::app::router;
use fluxfence_webhook::metrics::Metrics;
use fluxfence_webhook::state::AppState;
use http::{Request, Response};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tower::ServiceExt;

/// An API server whose ServiceAccount list is answered once `release` is called; watches are
/// held open and never answered, as a quiet cluster's are.
struct FakeApi {
    release: Option<oneshot::Sender<()>>,
}

impl FakeApi {
    fn start(accounts: &[(&str, &str)]) -> (FakeApi, Client) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let accounts = Arc::new(Mutex::new(
            accounts
                .iter()
                .map(|(ns, name)| ((*ns).to_owned(), (*name).to_owned()))
                .collect::<Vec<_>>(),
        ));
        let (release, released) = oneshot::channel::<()>();
        let listed = accounts;
        tokio::spawn(async move {
            let mut released = Some(released);
            let mut held = Vec::new();
            while let Some((request, send)) = handle.next_request().await {
                let query = request.uri().query().unwrap_or_default().to_owned();
                assert!(
                    request.uri().path() == "/api/v1/serviceaccounts",
                    "{}",
                    request.uri()
                );
                if query.contains("watch=true") {
                    held.push(send);
                    continue;
                }
                if let Some(released) = released.take() {
                    let _ = released.await;
                }
                let items: Vec<Value> = listed
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(ns, name)| {
                        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                               "metadata": {"name": name, "namespace": ns, "resourceVersion": "1"}})
                    })
                    .collect();
                let list = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                                  "metadata": {"resourceVersion": "1"}, "items": items});
                send.send_response(
                    Response::builder()
                        .status(200)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&list).unwrap()))
                        .unwrap(),
                );
            }
        });
        (
            FakeApi {
                release: Some(release),
            },
            Client::new(service, "default"),
        )
    }

    fn answer_the_list(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
    }
}

fn app(cache: Option<Arc<ServiceAccountCache>>) -> Router {
    let state = AppState::new(
        Policy::azure_default(),
        Arc::new(Metrics::new()),
        Some("fluxfence-system".into()),
        3 << 20,
    )
    .with_service_accounts(cache);
    state.set_ready();
    router(Arc::new(state))
}

async fn get(app: &Router, path: &str) -> (StatusCode, String) {
    let request = axum::http::Request::get(path)
        .body(AxumBody::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// `allowed` and the message of /validate's answer to a CREATE of `object` in `namespace`.
async fn validate(app: &Router, namespace: &str, object: &Value) -> (bool, String) {
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "4b1d8f5e-0000-4000-8000-000000000001",
            "kind": {"group": "helm.toolkit.fluxcd.io", "version": "v2", "kind": "HelmRelease"},
            "resource": {"group": "helm.toolkit.fluxcd.io", "version": "v2", "resource": "helmreleases"},
            "requestKind": {"group": "helm.toolkit.fluxcd.io", "version": "v2", "kind": "HelmRelease"},
            "requestResource": {"group": "helm.toolkit.fluxcd.io", "version": "v2", "resource": "helmreleases"},
            "name": object["metadata"]["name"], "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "alice"}, "object": object, "oldObject": null, "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    });
    let request = axum::http::Request::post("/validate")
        .header("content-type", "application/json")
        .body(AxumBody::from(serde_json::to_vec(&review).unwrap()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let response = &answer["response"];
    (
        response["allowed"].as_bool().unwrap(),
        response["status"]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    )
}

fn release(namespace: &str, account: Option<&str>) -> Value {
    let mut object = json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": "app", "namespace": namespace},
        "spec": {"interval": "10m", "chart": {"spec": {"chart": "app",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}}
    });
    if let Some(account) = account {
        object["spec"]["serviceAccountName"] = json!(account);
    }
    object
}

async fn synced(cache: &ServiceAccountCache) {
    for _ in 0..200 {
        if cache.is_synced() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the cache never synced");
}

#[tokio::test]
async fn readyz_waits_for_the_first_list() {
    let (mut api, client) = FakeApi::start(&[("team-a", "deployer")]);
    let cache = ServiceAccountCache::start(client);
    let app = app(Some(Arc::clone(&cache)));

    let (status, body) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("ServiceAccount cache"), "{body}");

    api.answer_the_list();
    synced(&cache).await;
    assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn an_account_missing_from_the_namespace_is_denied_and_one_that_exists_admitted() {
    let (mut api, client) =
        FakeApi::start(&[("team-a", "deployer"), ("cluster-config", "flux-applier")]);
    let cache = ServiceAccountCache::start(client);
    api.answer_the_list();
    synced(&cache).await;
    let app = app(Some(cache));

    let (allowed, _) = validate(&app, "team-a", &release("team-a", Some("deployer"))).await;
    assert!(allowed, "deployer exists in team-a");
    let (allowed, message) = validate(&app, "team-b", &release("team-b", Some("deployer"))).await;
    assert!(!allowed, "no deployer in team-b");
    assert!(
        message.contains("FF111") && message.contains("does not exist"),
        "{message}"
    );
    // The default account, where the cluster has it.
    let (allowed, _) = validate(&app, "cluster-config", &release("cluster-config", None)).await;
    assert!(allowed);
}

#[tokio::test]
async fn the_policy_cannot_vouch_for_a_default_account_the_cluster_lacks() {
    // The built-in policy places flux-applier in cluster-config; this cluster has none.
    let (mut api, client) = FakeApi::start(&[]);
    let cache = ServiceAccountCache::start(client);
    api.answer_the_list();
    synced(&cache).await;
    let app = app(Some(cache));

    let (allowed, message) =
        validate(&app, "cluster-config", &release("cluster-config", None)).await;
    assert!(!allowed, "{message}");
}

#[tokio::test]
async fn without_the_cache_an_explicit_account_is_trusted_as_before() {
    let app = app(None);
    assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);
    let (allowed, _) = validate(&app, "team-b", &release("team-b", Some("deployer"))).await;
    assert!(allowed);
}
