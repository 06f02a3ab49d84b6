//! The real server over real TLS: certificate and policy rotation the way Kubernetes does it
//! (a `..data` symlink swap), client-certificate checks and shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Client, Pair, Pki, once, repo_root, write_volume};
use fluxfence_webhook::config::{Config, Limits, LogFormat, Shutdown};
use fluxfence_webhook::metrics::Metrics;
use fluxfence_webhook::server::Server;
use serde_json::Value;
use tokio::sync::oneshot;

fn config(tls_dir: &Path, policy: Option<PathBuf>, client_ca: Option<PathBuf>) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert_file: tls_dir.join("tls.crt"),
        tls_key_file: tls_dir.join("tls.key"),
        client_ca_file: client_ca,
        policy_file: policy,
        namespace: Some("fluxfence-system".into()),
        max_body_bytes: 3 * 1024 * 1024,
        reload_interval_seconds: 1,
        log_format: LogFormat::Text,
        trusted_publishers: Vec::new(),
        limits: Limits::default(),
        shutdown: Shutdown {
            drain_seconds: 0,
            shutdown_timeout_seconds: 5,
        },
    }
}

fn write_pair(dir: &Path, version: &str, pair: &Pair) {
    write_volume(
        dir,
        version,
        &[
            ("tls.crt", pair.cert_pem.as_bytes()),
            ("tls.key", pair.key_pem.as_bytes()),
        ],
    );
}

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(config: Config) -> Running {
    let server = Server::bind(config, Arc::new(Metrics::new()))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    Running { addr, stop, done }
}

fn review(name: &str) -> Vec<u8> {
    std::fs::read(
        repo_root()
            .join("testdata/admission")
            .join(format!("{name}.json")),
    )
    .unwrap()
}

fn allowed(answer: &common::Answer) -> bool {
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let json: Value = serde_json::from_slice(&answer.body).unwrap();
    json["response"]["allowed"].as_bool().unwrap()
}

/// Polls `check` every 50 ms until it holds, failing after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metrics(addr: SocketAddr, pki: &Pki) -> String {
    let answer = once(addr, pki.roots(), None, "GET", "/metrics", Vec::new())
        .await
        .unwrap();
    String::from_utf8(answer.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_without_a_failed_request() {
    let pki = Pki::new("test CA");
    let first = pki.server("webhook-1");
    let second = pki.server("webhook-2");
    let tmp = tempfile::tempdir().unwrap();
    let tls_dir = tmp.path().join("tls");
    write_pair(&tls_dir, "2026_01_01_00_00_00.1", &first);
    let server = start(config(&tls_dir, None, None)).await;
    let addr = server.addr;

    // Ready, and serving the first certificate.
    let answer = once(addr, pki.roots(), None, "GET", "/readyz", Vec::new())
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.server_cert, first.der());

    // Load during the rotation: fresh connections and one kept-alive connection.
    let failures = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for keep_alive in [false, true] {
        let (failures, served, stop) = (failures.clone(), served.clone(), stop.clone());
        let roots = pki.roots();
        load.push(tokio::spawn(async move {
            let mut client = Client::connect(addr, roots.clone(), None).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                let body = review("helmrelease-cross-namespace");
                let result = if keep_alive {
                    client.send("POST", "/validate", body).await
                } else {
                    once(addr, roots.clone(), None, "POST", "/validate", body).await
                };
                match result {
                    Ok(answer) if answer.status == 200 && !allowed(&answer) => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        eprintln!("request failed: {:?}", other.map(|a| a.status));
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(200)).await;
    write_pair(&tls_dir, "2026_02_01_00_00_00.2", &second);
    eventually(Duration::from_secs(5), "the new certificate", || async {
        let answer = once(addr, pki.roots(), None, "GET", "/healthz", Vec::new())
            .await
            .unwrap();
        answer.server_cert == second.der()
    })
    .await;

    // A broken rotation (certificate and key from different pairs) is refused; the good
    // certificate keeps serving and the error is counted.
    let mismatched = Pair {
        cert_pem: pki.server("webhook-3").cert_pem,
        key_pem: first.key_pem.clone(),
    };
    write_pair(&tls_dir, "2026_03_01_00_00_00.3", &mismatched);
    eventually(Duration::from_secs(5), "the refused reload", || async {
        metrics(addr, &pki)
            .await
            .contains("fluxfence_webhook_certificate_reloads_total{result=\"error\"} 1")
    })
    .await;
    let answer = once(addr, pki.roots(), None, "GET", "/healthz", Vec::new())
        .await
        .unwrap();
    assert_eq!(answer.server_cert, second.der());
    let text = metrics(addr, &pki).await;
    assert!(
        text.contains("fluxfence_webhook_certificate_reloads_total{result=\"success\"} 1"),
        "{text}"
    );

    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during rotation"
    );
    assert!(
        served.load(Ordering::Relaxed) > 10,
        "too little load to mean anything"
    );

    server.stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server.done)
        .await
        .expect("shutdown took too long")
        .unwrap()
        .unwrap();
    assert!(
        once(addr, pki.roots(), None, "GET", "/healthz", Vec::new())
            .await
            .is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_reloads_and_a_broken_one_is_ignored() {
    let pki = Pki::new("test CA");
    let tmp = tempfile::tempdir().unwrap();
    let tls_dir = tmp.path().join("tls");
    let policy_dir = tmp.path().join("policy");
    write_pair(&tls_dir, "1", &pki.server("webhook"));
    write_volume(&policy_dir, "1", &[("policy.yaml", b"enforce: true\n")]);
    let server = start(config(&tls_dir, Some(policy_dir.join("policy.yaml")), None)).await;
    let addr = server.addr;
    let judge = || async {
        let body = review("helmrelease-cross-namespace");
        allowed(
            &once(addr, pki.roots(), None, "POST", "/validate", body)
                .await
                .unwrap(),
        )
    };
    assert!(!judge().await, "enforcing policy denies");

    write_volume(&policy_dir, "2", &[("policy.yaml", b"enforce: false\n")]);
    eventually(Duration::from_secs(5), "the new policy", || async {
        judge().await
    })
    .await;

    // An invalid policy keeps the last good one (still not enforcing) and is counted.
    write_volume(
        &policy_dir,
        "3",
        &[("policy.yaml", b"enforce: true\nexemptNamespace: [x]\n")],
    );
    eventually(Duration::from_secs(5), "the refused policy", || async {
        metrics(addr, &pki)
            .await
            .contains("fluxfence_webhook_policy_reloads_total{result=\"error\"} 1")
    })
    .await;
    assert!(judge().await, "the last good policy still applies");
    let _ = server.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ca_requires_the_api_servers_certificate() {
    let pki = Pki::new("serving CA");
    let clients = Pki::new("front-proxy CA");
    let strangers = Pki::new("someone else");
    let tmp = tempfile::tempdir().unwrap();
    let tls_dir = tmp.path().join("tls");
    write_pair(&tls_dir, "1", &pki.server("webhook"));
    let ca_file = tmp.path().join("client-ca.crt");
    std::fs::write(&ca_file, &clients.ca_pem).unwrap();
    let server = start(config(&tls_dir, None, Some(ca_file))).await;

    let apiserver = clients.client("kube-apiserver");
    let answer = once(
        server.addr,
        pki.roots(),
        Some(&apiserver),
        "POST",
        "/validate",
        review("helmrelease-cross-namespace"),
    )
    .await
    .unwrap();
    assert!(!allowed(&answer));

    for identity in [None, Some(strangers.client("intruder"))] {
        let result = once(
            server.addr,
            pki.roots(),
            identity.as_ref(),
            "POST",
            "/validate",
            review("helmrelease-cross-namespace"),
        )
        .await;
        assert!(
            result.is_err(),
            "served without a trusted client certificate"
        );
    }
    let _ = server.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_ca_rotates_like_the_serving_certificate() {
    let pki = Pki::new("serving CA");
    let old_clients = Pki::new("old front-proxy CA");
    let new_clients = Pki::new("new front-proxy CA");
    let tmp = tempfile::tempdir().unwrap();
    let tls_dir = tmp.path().join("tls");
    write_pair(&tls_dir, "1", &pki.server("webhook"));
    let ca_dir = tmp.path().join("client-ca");
    write_volume(&ca_dir, "1", &[("ca.crt", old_clients.ca_pem.as_bytes())]);
    let server = start(config(&tls_dir, None, Some(ca_dir.join("ca.crt")))).await;
    let (old_apiserver, new_apiserver) = (
        old_clients.client("kube-apiserver"),
        new_clients.client("kube-apiserver"),
    );
    let served = |identity| {
        let roots = pki.roots();
        async move {
            once(
                server.addr,
                roots,
                Some(identity),
                "GET",
                "/healthz",
                Vec::new(),
            )
            .await
            .is_ok_and(|answer| answer.status == 200)
        }
    };
    assert!(served(&old_apiserver).await);
    assert!(!served(&new_apiserver).await);

    write_volume(&ca_dir, "2", &[("ca.crt", new_clients.ca_pem.as_bytes())]);
    eventually(Duration::from_secs(5), "the new client CA", || {
        served(&new_apiserver)
    })
    .await;
    assert!(!served(&old_apiserver).await, "the old CA still trusted");

    // A bundle without a certificate is refused; the last good one keeps checking.
    write_volume(
        &ca_dir,
        "3",
        &[("ca.crt", b"not a certificate\n".as_slice())],
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(served(&new_apiserver).await);
    assert!(!served(&old_apiserver).await);
    let _ = server.stop.send(());
}

#[tokio::test]
async fn startup_fails_clearly_on_a_bad_certificate_or_policy() {
    let pki = Pki::new("test CA");
    let tmp = tempfile::tempdir().unwrap();
    let tls_dir = tmp.path().join("tls");
    let missing = config(&tls_dir, None, None);
    let error = format!(
        "{:#}",
        Server::bind(missing, Arc::new(Metrics::new()))
            .await
            .err()
            .unwrap()
    );
    assert!(error.contains("--tls-cert-file"), "{error}");
    assert!(error.contains("tls.crt"), "{error}");

    write_pair(&tls_dir, "1", &pki.server("webhook"));
    let policy = tmp.path().join("policy.yaml");
    std::fs::write(&policy, "enforce: true\nrules:\n  FF999: deny\n").unwrap();
    let error = format!(
        "{:#}",
        Server::bind(
            config(&tls_dir, Some(policy.clone()), None),
            Arc::new(Metrics::new())
        )
        .await
        .err()
        .unwrap()
    );
    assert!(error.contains("policy.yaml:3:"), "{error}");
    assert!(error.contains("unknown rule code `FF999`"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_build_the_certificate_expiry_and_a_missing_policy_file() {
    let pki = Pki::new("test CA");
    let tmp = tempfile::tempdir().unwrap();
    let tls_dir = tmp.path().join("tls");
    let policy_dir = tmp.path().join("policy");
    write_pair(&tls_dir, "1", &pki.server("webhook"));
    write_volume(&policy_dir, "1", &[("policy.yaml", b"enforce: true\n")]);
    let server = start(config(&tls_dir, Some(policy_dir.join("policy.yaml")), None)).await;
    let addr = server.addr;

    let text = metrics(addr, &pki).await;
    // rcgen's default notAfter: 4096-01-01T00:00:00Z.
    for line in [
        "fluxfence_webhook_certificate_expiry_timestamp_seconds 67090118400",
        "fluxfence_webhook_policy_file_unreadable 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    for family in [
        "fluxfence_build_info{",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(family)),
            "no {family} in\n{text}"
        );
    }

    // The ConfigMap goes away: said by the gauge, and the policy loaded last still denies.
    std::fs::remove_file(policy_dir.join("..data")).unwrap();
    eventually(
        Duration::from_secs(5),
        "the unreadable-policy gauge",
        || async {
            metrics(addr, &pki)
                .await
                .contains("fluxfence_webhook_policy_file_unreadable 1")
        },
    )
    .await;
    let answer = once(
        addr,
        pki.roots(),
        None,
        "POST",
        "/validate",
        review("helmrelease-cross-namespace"),
    )
    .await
    .unwrap();
    assert!(!allowed(&answer), "the last policy no longer enforced");
    // And it comes back.
    write_volume(&policy_dir, "2", &[("policy.yaml", b"enforce: true\n")]);
    eventually(Duration::from_secs(5), "the policy file back", || async {
        metrics(addr, &pki)
            .await
            .contains("fluxfence_webhook_policy_file_unreadable 0")
    })
    .await;
    let _ = server.stop.send(());
}
