//! API-server create latency with and without fluxfence: etcd + kube-apiserver on loopback,
//! the Flux CRDs, and N HelmRelease creates over one keep-alive HTTPS connection, half of
//! them violating FF101. Each round measures "no admission webhooks" and "the chart's webhook
//! configuration", and the same with the webhook's ServiceAccount cache (the order rotates
//! every round, so that drift hits all alike), and the test prints p50/p90/p99 per
//! configuration and the webhook's p99 with the cache over its p99 without. It asserts only
//! outcomes, never a timing.
//!
//! Runs when `KUBE_APISERVER` and `ETCD` name the binaries (`KUBECTL` and `FLUX_CRDS` as in the
//! e2e test); otherwise prints "skipped: no KUBE_APISERVER" and passes.
//! `FLUXFENCE_LATENCY_CREATES` (default 400) and `FLUXFENCE_LATENCY_ROUNDS` (default 3) size it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{
    Kubectl, Process, TOKEN, Webhook, base64, binaries_or_skip, find_kubectl, install_flux_crds,
    start_apiserver, start_etcd, wait_until, write_kubeconfig,
};
use common::{Client, Pki};
use fluxfence_webhook::accounts::ServiceAccountCache;
use serde_json::{Value, json};

/// The chart's release namespace, which its namespaceSelector leaves out.
const RELEASE_NAMESPACE: &str = "fluxfence-system";
/// Where allowed HelmReleases go: the policy's config namespace, their source beside them.
const ALLOWED_NAMESPACE: &str = "cluster-config";
/// Where violating HelmReleases go: an app namespace pointing at a source in flux-system.
const VIOLATING_NAMESPACE: &str = "nginx";
const CONFIG_NAME: &str = "fluxfence";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Admission {
    None,
    Chart,
    /// The chart's configuration, the webhook with its ServiceAccount cache.
    ChartWithCache,
}

impl Admission {
    fn label(self) -> &'static str {
        match self {
            Admission::None => "no admission webhooks",
            Admission::Chart => "fluxfence (chart's webhook configuration)",
            Admission::ChartWithCache => "fluxfence with the ServiceAccount cache",
        }
    }
}

/// Create latencies of one configuration, over all rounds.
#[derive(Default)]
struct Samples {
    allowed: Vec<Duration>,
    denied: Vec<Duration>,
}

fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value}: give a whole number")),
        _ => default,
    }
}

/// The nearest-rank percentile `p` (0-100) of `samples`.
fn percentile(samples: &[Duration], p: usize) -> Duration {
    assert!(!samples.is_empty(), "no samples");
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn millis(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn table(rows: &[(Admission, &Samples)]) -> String {
    let mut out = String::from(
        "| configuration | allowed p50 (ms) | allowed p90 | allowed p99 | violating p50 (ms) | violating p90 | violating p99 |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for (admission, samples) in rows {
        let cells: Vec<String> = [&samples.allowed, &samples.denied]
            .iter()
            .flat_map(|s| [50, 90, 99].map(|p| millis(percentile(s, p))))
            .collect();
        out.push_str(&format!(
            "| {} | {} |\n",
            admission.label(),
            cells.join(" | ")
        ));
    }
    out
}

/// The Flux kinds the chart registers for, as it reads them (`files/flux-kinds.json`).
fn chart_kinds() -> Vec<Value> {
    let path = common::repo_root().join("charts/fluxfence/files/flux-kinds.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; regenerate it with `fluxfence kinds`",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

/// What `charts/fluxfence/templates/admission/webhook-configurations.yaml` renders with the
/// default values (fluxfence.webhookCommon, fluxfence.rules, fluxfence.namespaceSelector and
/// the mutating webhook's matchConditions), with the Service replaced by a loopback URL.
fn chart_webhook_configurations(addr: SocketAddr, ca_pem: &str) -> (Value, Value) {
    let rules: Vec<Value> = chart_kinds()
        .iter()
        .map(|kind| {
            json!({
                "apiGroups": [kind["group"]],
                "apiVersions": kind["versions"],
                "resources": [kind["plural"]],
                "operations": ["CREATE", "UPDATE"],
                "scope": "Namespaced",
            })
        })
        .collect();
    let hook = |name: &str, path: &str| {
        json!({
            "name": name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "matchPolicy": "Equivalent",
            "timeoutSeconds": 5,
            "clientConfig": {
                "url": format!("https://127.0.0.1:{}{path}", addr.port()),
                "caBundle": base64(ca_pem.as_bytes()),
            },
            "namespaceSelector": {"matchExpressions": [{
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["kube-system", RELEASE_NAMESPACE],
            }]},
            "rules": rules,
        })
    };
    let mut mutating = hook("mutate.fluxfence.dev", "/mutate");
    mutating["reinvocationPolicy"] = json!("IfNeeded");
    mutating["matchConditions"] = json!([{
        "name": "service-account-to-default",
        "expression": "request.kind.kind in ['Kustomization', 'HelmRelease'] && \
            (!has(object.spec) || !has(object.spec.serviceAccountName) || \
            object.spec.serviceAccountName == '')",
    }]);
    let validating = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": CONFIG_NAME},
        "webhooks": [hook("validate.fluxfence.dev", "/validate")],
    });
    let mutating = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": CONFIG_NAME},
        "webhooks": [mutating],
    });
    (validating, mutating)
}

/// A HelmRelease named `name`: allowed (in the config namespace, its source beside it) or
/// violating FF101 (in an app namespace, its source in flux-system).
fn helmrelease(name: &str, violating: bool) -> (String, Vec<u8>) {
    let namespace = if violating {
        VIOLATING_NAMESPACE
    } else {
        ALLOWED_NAMESPACE
    };
    let mut source = json!({"kind": "HelmRepository", "name": "charts"});
    if violating {
        source["namespace"] = json!("flux-system");
    }
    let object = json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "interval": "1h",
            "chart": {"spec": {"chart": "podinfo", "version": "6.7.1", "sourceRef": source}},
        },
    });
    (
        format!("/apis/helm.toolkit.fluxcd.io/v2/namespaces/{namespace}/helmreleases"),
        object.to_string().into_bytes(),
    )
}

/// The outcome of one create, checked against what `admission` must do with it.
fn check_outcome(admission: Admission, violating: bool, status: u16, body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    if violating && admission != Admission::None {
        assert!(
            !(200..300).contains(&status) && text.contains("FF101"),
            "a violating create was not denied with FF101: {status} {text}"
        );
    } else {
        assert_eq!(
            status, 201,
            "a create under {admission:?} (violating: {violating}) failed: {text}"
        );
    }
}

/// Lets the API server settle on `admission`: removes the configurations and registers those
/// of `admission`'s webhook (`configurations`: the plain webhook's, then the one with the
/// cache), then waits until a server-side dry run of a violating object gets the answer it
/// must. A probe cannot tell the two webhooks apart; each answers the same.
async fn switch_to(
    client: &mut Client,
    processes: &mut [&mut Process],
    admission: Admission,
    configurations: &[(Value, Value); 2],
) {
    let paths = [
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
    ];
    let wanted = match admission {
        Admission::None => None,
        Admission::Chart => Some(&configurations[0]),
        Admission::ChartWithCache => Some(&configurations[1]),
    };
    for (i, collection) in paths.iter().enumerate() {
        let answer = client
            .send("DELETE", &format!("{collection}/{CONFIG_NAME}"), Vec::new())
            .await
            .unwrap();
        // Already gone (404) when a round starts where the last ended.
        assert!(
            (200..300).contains(&answer.status) || answer.status == 404,
            "{admission:?}: {collection}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        let Some(pair) = wanted else { continue };
        let object = if i == 0 { &pair.0 } else { &pair.1 };
        let answer = client
            .send("POST", collection, object.to_string().into_bytes())
            .await
            .unwrap();
        assert!(
            (200..300).contains(&answer.status),
            "{admission:?}: {collection}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    // The API server picks configurations up from its informer, a moment later.
    let (path, body) = helmrelease("dry-run-probe", true);
    let probe = format!("{path}?dryRun=All");
    let started = Instant::now();
    loop {
        for process in processes.iter_mut() {
            process.assert_running();
        }
        let answer = client.send("POST", &probe, body.clone()).await.unwrap();
        let denied = String::from_utf8_lossy(&answer.body).contains("FF101");
        if denied == (admission != Admission::None) && (denied || answer.status == 201) {
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let logs: Vec<String> = processes.iter().map(|p| p.log_tail()).collect();
            panic!(
                "{admission:?} not in effect after 60 s: {} {}\n{}",
                answer.status,
                String::from_utf8_lossy(&answer.body),
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `creates` creates under `admission`, alternating allowed and violating, each a fresh name.
async fn measure(
    client: &mut Client,
    admission: Admission,
    round: usize,
    creates: usize,
    samples: &mut Samples,
) {
    let tag = match admission {
        Admission::None => "none",
        Admission::Chart => "chart",
        Admission::ChartWithCache => "cache",
    };
    for i in 0..creates {
        let violating = i % 2 == 1;
        let (path, body) = helmrelease(&format!("{tag}-r{round}-{i}"), violating);
        let started = Instant::now();
        let answer = client.send("POST", &path, body).await.unwrap();
        let took = started.elapsed();
        check_outcome(admission, violating, answer.status, &answer.body);
        if violating {
            samples.denied.push(took);
        } else {
            samples.allowed.push(took);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_latency_without_and_with_the_webhook() {
    let Some((apiserver, etcd)) = binaries_or_skip() else {
        return;
    };
    let creates = env_count("FLUXFENCE_LATENCY_CREATES", 400).max(2);
    let rounds = env_count("FLUXFENCE_LATENCY_ROUNDS", 3).max(1);
    let kubectl = find_kubectl().expect("KUBE_APISERVER is set but no kubectl: set KUBECTL");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = Pki::new("fluxfence latency CA");

    let (mut etcd, etcd_url) = start_etcd(&etcd, dir);
    let (mut apiserver, port) = start_apiserver(&apiserver, dir, &etcd_url, &pki);
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
    install_flux_crds(&kubectl);
    for namespace in [
        ALLOWED_NAMESPACE,
        VIOLATING_NAMESPACE,
        "flux-system",
        RELEASE_NAMESPACE,
    ] {
        kubectl.ok(&["create", "namespace", namespace], None);
    }

    // With the cache, allowed releases are applied as an account that must exist.
    kubectl.ok(
        &[
            "create",
            "serviceaccount",
            "flux-applier",
            "-n",
            ALLOWED_NAMESPACE,
        ],
        None,
    );
    let webhook = Webhook::start(dir, &pki, RELEASE_NAMESPACE).await;
    let file = kube::config::Kubeconfig::read_from(&kubectl.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap();
    let cache = ServiceAccountCache::start(kube::Client::try_from(config).unwrap());
    std::fs::create_dir_all(dir.join("cached")).unwrap();
    let cached = Webhook::start_with_accounts(
        dir.join("cached").as_path(),
        &pki,
        RELEASE_NAMESPACE,
        Some(Arc::clone(&cache)),
    )
    .await;
    wait_until(
        &mut processes,
        Duration::from_secs(30),
        "the ServiceAccount cache's first list",
        || cache.is_synced(),
    );
    let configurations = [
        chart_webhook_configurations(webhook.addr, &pki.ca_pem),
        chart_webhook_configurations(cached.addr, &pki.ca_pem),
    ];
    // One keep-alive connection for every request, as a controller's client would hold.
    let apiserver_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut client = Client::connect(apiserver_addr, pki.roots(), None)
        .await
        .unwrap();
    client.bearer = Some(TOKEN.to_owned());

    let mut without = Samples::default();
    let mut with = Samples::default();
    let mut with_cache = Samples::default();
    for round in 0..rounds {
        // Each configuration goes first, second and third in turn, so that drift hits all alike.
        let mut order = [Admission::None, Admission::Chart, Admission::ChartWithCache];
        order.rotate_left(round % 3);
        for admission in order {
            switch_to(&mut client, &mut processes, admission, &configurations).await;
            let samples = match admission {
                Admission::None => &mut without,
                Admission::Chart => &mut with,
                Admission::ChartWithCache => &mut with_cache,
            };
            measure(&mut client, admission, round, creates, samples).await;
        }
    }

    println!(
        "\n{creates} HelmRelease creates per configuration and round (half violating FF101), \
         {rounds} rounds, one keep-alive HTTPS connection to kube-apiserver on loopback:\n"
    );
    println!(
        "{}",
        table(&[
            (Admission::None, &without),
            (Admission::Chart, &with),
            (Admission::ChartWithCache, &with_cache),
        ])
    );
    let p99 = |samples: &Samples| {
        let all: Vec<Duration> = samples
            .allowed
            .iter()
            .chain(&samples.denied)
            .copied()
            .collect();
        percentile(&all, 99).as_secs_f64()
    };
    println!(
        "p99 with the ServiceAccount cache / without: {:.2}x (target: at most 1.1x)",
        p99(&with_cache) / p99(&with)
    );
    webhook.stop().await;
    cached.stop().await;
}

#[test]
fn percentiles_are_nearest_rank() {
    let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
    assert_eq!(percentile(&samples, 50), Duration::from_millis(50));
    assert_eq!(percentile(&samples, 90), Duration::from_millis(90));
    assert_eq!(percentile(&samples, 99), Duration::from_millis(99));
    let one = [Duration::from_millis(7)];
    assert_eq!(percentile(&one, 50), Duration::from_millis(7));
    assert_eq!(percentile(&one, 99), Duration::from_millis(7));
}

#[test]
fn the_measured_configuration_is_the_charts() {
    let (validating, mutating) =
        chart_webhook_configurations("127.0.0.1:8443".parse().unwrap(), "CA");
    for (config, path) in [(&validating, "/validate"), (&mutating, "/mutate")] {
        let hook = &config["webhooks"][0];
        assert_eq!(hook["failurePolicy"], "Fail");
        assert_eq!(hook["sideEffects"], "None");
        assert_eq!(
            hook["clientConfig"]["url"],
            format!("https://127.0.0.1:8443{path}")
        );
        assert_eq!(hook["clientConfig"]["caBundle"], "Q0E=");
        let helmreleases = hook["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resources"][0] == "helmreleases")
            .expect("HelmReleases are registered");
        assert_eq!(helmreleases["apiGroups"][0], "helm.toolkit.fluxcd.io");
        assert!(
            helmreleases["apiVersions"]
                .as_array()
                .unwrap()
                .contains(&json!("v2"))
        );
    }
    assert!(validating["webhooks"][0]["matchConditions"].is_null());
    assert_eq!(
        mutating["webhooks"][0]["matchConditions"][0]["name"],
        "service-account-to-default"
    );
    // The measured objects land where the chart sends them to the webhook.
    let excluded = &validating["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]["values"];
    for namespace in [ALLOWED_NAMESPACE, VIOLATING_NAMESPACE] {
        assert!(!excluded.as_array().unwrap().contains(&json!(namespace)));
    }
}

#[test]
fn outcomes_are_checked_per_configuration() {
    check_outcome(Admission::None, true, 201, b"{}");
    check_outcome(Admission::Chart, false, 201, b"{}");
    check_outcome(
        Admission::Chart,
        true,
        403,
        br#"{"message":"admission webhook denied the request: FF101"}"#,
    );
    let admitted = std::panic::catch_unwind(|| check_outcome(Admission::Chart, true, 201, b"{}"));
    assert!(admitted.is_err(), "an admitted violation must fail the run");
    let refused = std::panic::catch_unwind(|| check_outcome(Admission::None, false, 403, b"{}"));
    assert!(refused.is_err(), "a refused create must fail the run");
}

/// The webhook's answer (the AdmissionResponse) to a CREATE of the measured `body`.
async fn review(path: &str, body: &[u8]) -> Value {
    use tower::ServiceExt as _;
    let object: Value = serde_json::from_slice(body).unwrap();
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "latency-workload",
            "kind": {"group": "helm.toolkit.fluxcd.io", "version": "v2", "kind": "HelmRelease"},
            "resource": {"group": "helm.toolkit.fluxcd.io", "version": "v2", "resource": "helmreleases"},
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": "CREATE",
            "userInfo": {"username": "e2e-admin"},
            "object": object,
            "dryRun": false,
        }
    });
    let app = fluxfence_webhook::app::router(std::sync::Arc::new(
        fluxfence_webhook::state::AppState::new(
            fluxfence::Policy::azure_default(),
            std::sync::Arc::new(fluxfence_webhook::metrics::Metrics::new()),
            Some(RELEASE_NAMESPACE.to_owned()),
            3 * 1024 * 1024,
        ),
    ));
    let request = axum::http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(review.to_string()))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    answer["response"].clone()
}

/// The workload is what the table says it is: with the policy the in-process webhook runs,
/// the allowed half is admitted (and defaulted) and the violating half denied with FF101.
#[tokio::test]
async fn the_workload_is_half_allowed_half_ff101() {
    let (_, allowed) = helmrelease("allowed", false);
    let (_, violating) = helmrelease("violating", true);
    let mutated = review("/mutate", &allowed).await;
    assert_eq!(mutated["allowed"], true, "{mutated}");
    let validated = review("/validate", &allowed).await;
    assert_eq!(validated["allowed"], true, "{validated}");
    // The API server calls /mutate first (no service account set): it must not be what
    // denies, so that the denial measured is the validating webhook's.
    let defaulted = review("/mutate", &violating).await;
    assert_eq!(defaulted["allowed"], true, "{defaulted}");
    let denied = review("/validate", &violating).await;
    assert_eq!(denied["allowed"], false, "{denied}");
    let message = denied["status"]["message"].as_str().unwrap_or("");
    assert!(message.contains("FF101"), "{denied}");
}
