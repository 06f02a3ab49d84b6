//! API-server create latency with and without fluxfence: etcd + kube-apiserver on loopback,
//! the Flux CRDs, and N HelmRelease creates over one keep-alive HTTPS connection, half of
//! them violating FF101. Each round measures four configurations (the order rotates every
//! round, so that drift hits all alike) and the test prints p50/p90/p99 per configuration:
//! - no admission webhooks;
//! - the chart's webhook configuration, the webhook without its ServiceAccount cache;
//! - the same configuration, the webhook with its ServiceAccount cache
//!   (`--service-account-cache`: FF111 looks the impersonated account up in a reflector's
//!   store). The webhook is restarted on the same address with the cache on, so the two rows
//!   differ in that flag only; the table ends with the p99 ratio of cache on to cache off
//!   (target ≤ 1.1×);
//! - the exported admission policies (`fluxfence export admission-policy`, evaluated in the
//!   API server).
//!
//! It asserts only outcomes, never a timing. The mutating admission policy is left out, with a
//! note, when the API server does not serve `admissionregistration.k8s.io/v1`
//! MutatingAdmissionPolicies. The cache watches the cluster's ServiceAccounts from the start
//! (one idle watch in every row); the config namespace holds `flux-applier`, so the allowed
//! half stays allowed with the cache, and each switch waits until a probe only the cached
//! webhook denies (an unknown explicit account) shows which webhook answers.
//!
//! Runs when `KUBE_APISERVER` and `ETCD` name the binaries (`KUBECTL` and `FLUX_CRDS` as in the
//! e2e test); otherwise prints "skipped: no KUBE_APISERVER" and passes.
//! `FLUXFENCE_LATENCY_CREATES` (default 400) and `FLUXFENCE_LATENCY_ROUNDS` (default 3) size it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{
    Kubectl, Process, TOKEN, Webhook, base64, binaries_or_skip, find_kubectl, install_flux_crds,
    start_apiserver, start_etcd, wait_until, write_kubeconfig,
};
use common::{Client, Pki};
use fluxfence_webhook::accounts::{ServiceAccountCache, ServiceAccounts};
use serde_json::{Value, json};

/// The chart's release namespace, which its namespaceSelector leaves out.
const RELEASE_NAMESPACE: &str = "fluxfence-system";
/// Where allowed HelmReleases go: the policy's config namespace, their source beside them.
const ALLOWED_NAMESPACE: &str = "cluster-config";
/// Where violating HelmReleases go: an app namespace pointing at a source in flux-system.
const VIOLATING_NAMESPACE: &str = "nginx";
const CONFIG_NAME: &str = "fluxfence";
/// The policy's default account, which the mutating webhook sets on the measured objects.
const DEFAULT_ACCOUNT: &str = "flux-applier";
/// An account the policy does not know and no namespace holds: the webhook without the cache
/// takes it to exist, the webhook with it denies (FF111). Used by the switch's probe only.
const UNKNOWN_ACCOUNT: &str = "latency-probe";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Admission {
    None,
    Chart,
    ChartWithCache,
    Policies,
}

impl Admission {
    const ALL: [Admission; 4] = [
        Admission::None,
        Admission::Chart,
        Admission::ChartWithCache,
        Admission::Policies,
    ];

    fn label(self) -> &'static str {
        match self {
            Admission::None => "no admission webhooks",
            Admission::Chart => {
                "fluxfence, ServiceAccount cache off (chart's webhook configuration)"
            }
            Admission::ChartWithCache => {
                "fluxfence, ServiceAccount cache on (same configuration, --service-account-cache)"
            }
            Admission::Policies => "fluxfence export admission-policy (CEL in the API server)",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Admission::None => "none",
            Admission::Chart => "chart",
            Admission::ChartWithCache => "cache",
            Admission::Policies => "policies",
        }
    }

    /// The objects registered in the API server for this configuration (keys of the map
    /// `switch_to` is given): both webhook rows share the chart's configurations.
    fn registration(self) -> Option<&'static str> {
        match self {
            Admission::None => None,
            Admission::Chart | Admission::ChartWithCache => Some("chart"),
            Admission::Policies => Some("policies"),
        }
    }

    /// Whether the webhook behind the configuration keeps the ServiceAccount cache; `None`
    /// when no webhook is called.
    fn cache(self) -> Option<bool> {
        match self {
            Admission::Chart => Some(false),
            Admission::ChartWithCache => Some(true),
            Admission::None | Admission::Policies => None,
        }
    }
}

/// The webhook the chart's configuration calls: one process at a time on one address,
/// restarted to turn the ServiceAccount cache on or off.
struct Backend {
    dir: PathBuf,
    addr: SocketAddr,
    cache: Arc<ServiceAccountCache>,
    serving: Option<(Webhook, bool)>,
}

impl Backend {
    async fn start(dir: &Path, pki: &Pki, cache: Arc<ServiceAccountCache>) -> Backend {
        let webhook = Webhook::start(dir, pki, RELEASE_NAMESPACE).await;
        Backend {
            dir: dir.to_owned(),
            addr: webhook.addr,
            cache,
            serving: Some((webhook, false)),
        }
    }

    /// Serves with the cache on or off, restarting the webhook when it differs.
    async fn serve(&mut self, pki: &Pki, with_cache: bool) {
        if let Some((_, serving_cache)) = &self.serving
            && *serving_cache == with_cache
        {
            return;
        }
        if let Some((webhook, _)) = self.serving.take() {
            webhook.stop().await;
        }
        let accounts = with_cache.then(|| Arc::clone(&self.cache));
        let webhook =
            Webhook::start_on(&self.dir, pki, RELEASE_NAMESPACE, self.addr, accounts).await;
        self.serving = Some((webhook, with_cache));
    }

    async fn stop(mut self) {
        if let Some((webhook, _)) = self.serving.take() {
            webhook.stop().await;
        }
    }
}

/// The exported admission policies of the built-in policy, each with the collection it is
/// created in.
fn exported_policies() -> Vec<(String, Value)> {
    use fluxfence::export::admission_policy::{Options, export};
    let exported = export(&fluxfence::Policy::azure_default(), &Options::default()).unwrap();
    exported
        .objects
        .into_iter()
        .map(|object| {
            let collection = match object["kind"].as_str().unwrap() {
                "ConfigMap" => format!(
                    "/api/v1/namespaces/{}/configmaps",
                    object["metadata"]["namespace"].as_str().unwrap()
                ),
                kind => {
                    let kind = kind.to_ascii_lowercase();
                    // `…policy` → `…policies`, `…binding` → `…bindings`.
                    let plural = match kind.strip_suffix('y') {
                        Some(stem) => format!("{stem}ies"),
                        None => format!("{kind}s"),
                    };
                    format!("/apis/{}/{plural}", object["apiVersion"].as_str().unwrap())
                }
            };
            (collection, object)
        })
        .collect()
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

fn table(rows: &[(Admission, Samples)]) -> String {
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
    if let Some(ratios) = cache_ratios(rows) {
        out.push_str(&format!("\n{ratios}\n"));
    }
    out
}

/// The p99 of the webhook with the ServiceAccount cache against without it, allowed and
/// violating creates apart; `None` unless both rows were measured.
fn cache_ratios(rows: &[(Admission, Samples)]) -> Option<String> {
    let samples = |admission: Admission| {
        rows.iter()
            .find(|(a, s)| *a == admission && !s.allowed.is_empty() && !s.denied.is_empty())
            .map(|(_, s)| s)
    };
    let (off, on) = (
        samples(Admission::Chart)?,
        samples(Admission::ChartWithCache)?,
    );
    let ratio = |on: &[Duration], off: &[Duration]| {
        percentile(on, 99).as_secs_f64() / percentile(off, 99).as_secs_f64()
    };
    Some(format!(
        "p99 with the ServiceAccount cache ÷ without (target ≤ 1.1×): allowed {:.2}×, violating {:.2}×",
        ratio(&on.allowed, &off.allowed),
        ratio(&on.denied, &off.denied),
    ))
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

/// A HelmRelease that only the webhook with the ServiceAccount cache denies: in the config
/// namespace, its source beside it, applied as an account no namespace holds (FF111).
fn account_probe() -> (String, Vec<u8>) {
    let (path, body) = helmrelease("account-probe", false);
    let mut object: Value = serde_json::from_slice(&body).unwrap();
    object["spec"]["serviceAccountName"] = json!(UNKNOWN_ACCOUNT);
    (path, object.to_string().into_bytes())
}

/// Whether the answers to the two dry-run probes show `admission` in effect: the violating
/// HelmRelease (denied by any fluxfence, by a policy only under the exported policies) and
/// the [`account_probe`] (denied by the cached webhook only).
fn settled(admission: Admission, violating: (u16, &str), account: (u16, &str)) -> bool {
    let denied = violating.1.contains("FF101");
    let by_policy = violating.1.contains("ValidatingAdmissionPolicy");
    let account_denied = account.0 != 201 && account.1.contains("FF111");
    match admission {
        Admission::None => violating.0 == 201,
        Admission::Chart => denied && !by_policy && account.0 == 201,
        Admission::ChartWithCache => denied && !by_policy && account_denied,
        Admission::Policies => denied && by_policy,
    }
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

/// Creates (or deletes) the objects of `admission`: the webhook configurations or the
/// exported policies. Already there (409) or already gone (404) is fine: a round starts where
/// the last ended. A collection the API server does not serve (404 on create: the mutating
/// admission policy API before Kubernetes 1.36) is left out with a note.
async fn set_present(client: &mut Client, objects: &[(String, Value)], present: bool) {
    for (collection, object) in objects {
        let name = object["metadata"]["name"].as_str().unwrap();
        let answer = if present {
            client
                .send("POST", collection, object.to_string().into_bytes())
                .await
                .unwrap()
        } else {
            client
                .send("DELETE", &format!("{collection}/{name}"), Vec::new())
                .await
                .unwrap()
        };
        if present && answer.status == 404 {
            println!("note: {collection} is not served; {name} left out");
            continue;
        }
        assert!(
            (200..300).contains(&answer.status) || matches!(answer.status, 404 | 409),
            "{collection}/{name}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
}

/// Lets the API server settle on `admission`: the webhook behind the chart's configuration
/// serves with the cache on or off as the row needs, `admission`'s objects are registered and
/// the others' removed; then it waits until server-side dry runs of the probes get the
/// answers they must.
async fn switch_to(
    client: &mut Client,
    processes: &mut [&mut Process],
    admission: Admission,
    objects: &BTreeMap<&'static str, Vec<(String, Value)>>,
    backend: &mut Backend,
    pki: &Pki,
) {
    if let Some(with_cache) = admission.cache() {
        backend.serve(pki, with_cache).await;
    }
    for (registration, list) in objects {
        set_present(
            client,
            list,
            admission.registration() == Some(*registration),
        )
        .await;
    }
    // The API server picks configurations and policies up from its informers, a moment later.
    let dry_run = |(path, body): (String, Vec<u8>)| (format!("{path}?dryRun=All"), body);
    let violating = dry_run(helmrelease("dry-run-probe", true));
    let account = dry_run(account_probe());
    let started = Instant::now();
    loop {
        for process in processes.iter_mut() {
            process.assert_running();
        }
        let first = client
            .send("POST", &violating.0, violating.1.clone())
            .await
            .unwrap();
        let second = client
            .send("POST", &account.0, account.1.clone())
            .await
            .unwrap();
        let first_text = String::from_utf8_lossy(&first.body).into_owned();
        let second_text = String::from_utf8_lossy(&second.body).into_owned();
        if settled(
            admission,
            (first.status, &first_text),
            (second.status, &second_text),
        ) {
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let logs: Vec<String> = processes.iter().map(|p| p.log_tail()).collect();
            panic!(
                "{admission:?} not in effect after 60 s: {} {first_text}; account probe: {} {second_text}\n{}",
                first.status,
                second.status,
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
    let tag = admission.tag();
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
async fn create_latency_without_and_with_the_webhook_its_cache_and_the_admission_policies() {
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

    // The account the mutating webhook sets, where the allowed half goes: with the cache,
    // FF111 finds it listed; without, the policy says the config namespace holds it.
    kubectl.ok(
        &[
            "create",
            "serviceaccount",
            DEFAULT_ACCOUNT,
            "-n",
            ALLOWED_NAMESPACE,
        ],
        None,
    );
    let cache = ServiceAccountCache::start(kube_client(&kubectl.kubeconfig).await);
    wait_until(
        &mut processes,
        Duration::from_secs(30),
        "the ServiceAccount cache to list the default account",
        || cache.is_synced() && cache.exists(ALLOWED_NAMESPACE, DEFAULT_ACCOUNT),
    );
    let mut backend = Backend::start(dir, &pki, Arc::clone(&cache)).await;
    let (validating, mutating) = chart_webhook_configurations(backend.addr, &pki.ca_pem);
    let mut objects = BTreeMap::new();
    objects.insert(
        "chart",
        vec![
            (
                "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations".to_owned(),
                validating,
            ),
            (
                "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations".to_owned(),
                mutating,
            ),
        ],
    );
    objects.insert("policies", exported_policies());
    // One keep-alive connection for every request, as a controller's client would hold.
    let apiserver_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut client = Client::connect(apiserver_addr, pki.roots(), None)
        .await
        .unwrap();
    client.bearer = Some(TOKEN.to_owned());

    let mut samples: Vec<(Admission, Samples)> = Admission::ALL
        .iter()
        .map(|a| (*a, Samples::default()))
        .collect();
    for round in 0..rounds {
        // Rotate the order, so that drift during a round hits every configuration alike.
        for i in 0..Admission::ALL.len() {
            let index = (i + round) % Admission::ALL.len();
            let admission = Admission::ALL[index];
            switch_to(
                &mut client,
                &mut processes,
                admission,
                &objects,
                &mut backend,
                &pki,
            )
            .await;
            measure(
                &mut client,
                admission,
                round,
                creates,
                &mut samples[index].1,
            )
            .await;
        }
    }

    println!(
        "\n{creates} HelmRelease creates per configuration and round (half violating FF101), \
         {rounds} rounds, one keep-alive HTTPS connection to kube-apiserver on loopback:\n"
    );
    println!("{}", table(&samples));
    backend.stop().await;
}

/// A kube client for the harness's kubeconfig, as the webhook's `Client::try_default` makes
/// one in a pod.
async fn kube_client(kubeconfig: &Path) -> kube::Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

#[test]
fn exported_policies_go_to_their_collections() {
    let collections: Vec<String> = exported_policies().into_iter().map(|(c, _)| c).collect();
    for expected in [
        "/api/v1/namespaces/flux-system/configmaps",
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
        "/apis/admissionregistration.k8s.io/v1/mutatingadmissionpolicies",
        "/apis/admissionregistration.k8s.io/v1/mutatingadmissionpolicybindings",
    ] {
        assert!(collections.iter().any(|c| c == expected), "{collections:?}");
    }
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

/// The accounts the cache holds in the measured cluster: the default one in the config
/// namespace.
struct MeasuredCluster;

impl ServiceAccounts for MeasuredCluster {
    fn exists(&self, namespace: &str, name: &str) -> bool {
        (namespace, name) == (ALLOWED_NAMESPACE, DEFAULT_ACCOUNT)
    }
}

/// The engine's answer to a CREATE of `body` at `endpoint`, with or without the cache.
fn judged(
    endpoint: fluxfence_webhook::review::Endpoint,
    body: &[u8],
    accounts: Option<&dyn ServiceAccounts>,
) -> (bool, String) {
    use kube::api::DynamicObject;
    use kube_core::admission::{AdmissionRequest, AdmissionReview};
    let object: Value = serde_json::from_slice(body).unwrap();
    let review: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
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
    }))
    .unwrap();
    let request: AdmissionRequest<DynamicObject> = review.try_into().unwrap();
    let outcome = fluxfence_webhook::review::review_with(
        endpoint,
        &request,
        &fluxfence::Policy::azure_default(),
        Some(RELEASE_NAMESPACE),
        fluxfence_webhook::review::ClusterView {
            accounts,
            trusted_publishers: &[],
        },
    );
    (outcome.response.allowed, outcome.response.result.message)
}

/// With the cache the workload is the same: the allowed half admitted (its default account
/// is listed in the config namespace), the violating half denied with FF101. The probe that
/// tells the two webhook rows apart is admitted without the cache and denied (FF111) with it.
#[test]
fn the_cache_row_measures_the_same_workload_and_its_probe_tells_it_apart() {
    use fluxfence_webhook::review::Endpoint;
    let cache: Option<&dyn ServiceAccounts> = Some(&MeasuredCluster);
    let (_, allowed) = helmrelease("allowed", false);
    let (_, violating) = helmrelease("violating", true);
    for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
        let (admitted, message) = judged(endpoint, &allowed, cache);
        assert!(admitted, "{message}");
    }
    let (admitted, _) = judged(Endpoint::Mutate, &violating, cache);
    assert!(admitted, "the mutating webhook must not be what denies");
    let (admitted, message) = judged(Endpoint::Validate, &violating, cache);
    assert!(!admitted && message.contains("FF101"), "{message}");

    let (_, probe) = account_probe();
    let (admitted, message) = judged(Endpoint::Validate, &probe, None);
    assert!(admitted, "without the cache: {message}");
    let (admitted, message) = judged(Endpoint::Validate, &probe, cache);
    assert!(!admitted && message.contains("FF111"), "{message}");
}

#[test]
fn each_row_is_recognised_by_its_probes_answers() {
    let webhook_denial = (
        403,
        "admission webhook \"validate.fluxfence.dev\" denied: FF101",
    );
    let policy_denial = (
        422,
        "ValidatingAdmissionPolicy 'fluxfence-ff101' denied request: FF101",
    );
    let created = (201, "{}");
    let account_denial = (403, "admission webhook denied: FF111 does not exist");
    let cases = [
        (Admission::None, created, created, true),
        (Admission::None, webhook_denial, created, false),
        (Admission::Chart, webhook_denial, created, true),
        // The cached webhook still answers: not yet the row without the cache.
        (Admission::Chart, webhook_denial, account_denial, false),
        (
            Admission::ChartWithCache,
            webhook_denial,
            account_denial,
            true,
        ),
        (Admission::ChartWithCache, webhook_denial, created, false),
        (
            Admission::ChartWithCache,
            policy_denial,
            account_denial,
            false,
        ),
        (Admission::Policies, policy_denial, created, true),
        (Admission::Policies, webhook_denial, created, false),
    ];
    for (admission, violating, account, expected) in cases {
        assert_eq!(
            settled(admission, violating, account),
            expected,
            "{admission:?} {violating:?} {account:?}"
        );
    }
}

#[test]
fn the_table_names_every_row_and_compares_the_cache_rows_p99() {
    let samples = |ms: u64| Samples {
        allowed: vec![Duration::from_millis(ms); 10],
        denied: vec![Duration::from_millis(ms * 2); 10],
    };
    let rows: Vec<(Admission, Samples)> = vec![
        (Admission::None, samples(1)),
        (Admission::Chart, samples(10)),
        (Admission::ChartWithCache, samples(11)),
        (Admission::Policies, samples(2)),
    ];
    let text = table(&rows);
    for admission in Admission::ALL {
        assert!(text.contains(admission.label()), "{text}");
    }
    assert!(
        text.contains("cache ÷ without (target ≤ 1.1×): allowed 1.10×, violating 1.10×"),
        "{text}"
    );
    // Without both webhook rows there is nothing to compare.
    assert!(!table(&rows[..2]).contains('÷'));
}
