//! The real server over real TLS, held to its connection limits and its drain: clients that
//! send nothing, never finish a body or hold every connection, and a shutdown under load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Client, H2Client, Pki, once, repo_root, tls_connect, write_volume};
use fluxfence_webhook::config::{Config, Limits, LogFormat, Shutdown};
use fluxfence_webhook::metrics::Metrics;
use fluxfence_webhook::server::Server;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// Limits short enough for a test to watch them act.
fn short_limits() -> Limits {
    Limits {
        handshake_timeout_seconds: 2,
        header_read_timeout_seconds: 1,
        body_read_timeout_seconds: 1,
        idle_timeout_seconds: 1,
        ..Limits::default()
    }
}

fn config(tls_dir: &Path, limits: Limits, shutdown: Shutdown) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert_file: tls_dir.join("tls.crt"),
        tls_key_file: tls_dir.join("tls.key"),
        client_ca_file: None,
        policy_file: None,
        namespace: Some("fluxfence-system".into()),
        max_body_bytes: 4096,
        reload_interval_seconds: 10,
        log_format: LogFormat::Text,
        trusted_publishers: Vec::new(),
        limits,
        shutdown,
    }
}

const QUICK_SHUTDOWN: Shutdown = Shutdown {
    drain_seconds: 0,
    shutdown_timeout_seconds: 5,
};

struct Running {
    addr: SocketAddr,
    pki: Pki,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start(limits: Limits, shutdown: Shutdown) -> Running {
    let pki = Pki::new("test CA");
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("tls");
    let pair = pki.server("webhook");
    write_volume(
        &tls_dir,
        "1",
        &[
            ("tls.crt", pair.cert_pem.as_bytes()),
            ("tls.key", pair.key_pem.as_bytes()),
        ],
    );
    let server = Server::bind(config(&tls_dir, limits, shutdown), Arc::new(Metrics::new()))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        pki,
        stop,
        done,
        _dir: dir,
    }
}

fn review(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join(format!("testdata/admission/{name}.json"))).unwrap()
}

/// Reads until the server closes the connection (or `limit` passes); returns what was read
/// and how long the server took to close.
async fn read_until_closed(
    tls: &mut (impl AsyncReadExt + Unpin),
    limit: Duration,
) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), tls.read(&mut buf))
            .await
        {
            Ok(Ok(0) | Err(_)) => return (read, started.elapsed()),
            Ok(Ok(n)) => read.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the server kept the connection open past {limit:?}; read {:?}",
                String::from_utf8_lossy(&read)
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_connection_that_sends_nothing_is_closed() {
    let server = start(short_limits(), QUICK_SHUTDOWN).await;
    let (mut tls, _) = tls_connect(server.addr, server.pki.roots(), None, b"http/1.1")
        .await
        .unwrap();
    let (_, after) = read_until_closed(&mut tls, Duration::from_secs(5)).await;
    assert!(
        after >= Duration::from_millis(800),
        "closed too early: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_before_and_between_requests() {
    let server = start(short_limits(), QUICK_SHUTDOWN).await;

    let never_used = H2Client::connect(server.addr, server.pki.roots())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), never_used.closed)
        .await
        .expect("an HTTP/2 connection without a request stayed open")
        .unwrap();

    let mut used = H2Client::connect(server.addr, server.pki.roots())
        .await
        .unwrap();
    for _ in 0..3 {
        // Requests closer together than the idle timeout keep the connection.
        let answer = used.send("GET", "/healthz", Vec::new()).await.unwrap();
        assert_eq!(answer.status, 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let last = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), used.closed)
        .await
        .expect("an HTTP/2 connection idle after its requests stayed open")
        .unwrap();
    assert!(
        last.elapsed() >= Duration::from_millis(500),
        "{:?}",
        last.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_finishes_gets_a_408() {
    let server = start(short_limits(), QUICK_SHUTDOWN).await;
    let (mut tls, _) = tls_connect(server.addr, server.pki.roots(), None, b"http/1.1")
        .await
        .unwrap();
    tls.write_all(
        b"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
          content-length: 1000\r\n\r\n{\"apiVersion\":",
    )
    .await
    .unwrap();
    let (answer, after) = read_until_closed(&mut tls, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("--body-read-timeout-seconds"), "{answer}");
    assert!(after < Duration::from_secs(3), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_over_http2_gets_the_413_message() {
    let server = start(short_limits(), QUICK_SHUTDOWN).await;
    let mut client = H2Client::connect(server.addr, server.pki.roots())
        .await
        .unwrap();
    for size in [8 << 10, 1 << 20] {
        let mut review: Value =
            serde_json::from_slice(&review("helmrelease-cluster-config")).unwrap();
        review["request"]["object"]["spec"]["values"] =
            serde_json::json!({"blob": "x".repeat(size)});
        let answer = client
            .send("POST", "/validate", serde_json::to_vec(&review).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{size} bytes: {e}"));
        assert_eq!(answer.status, 413, "{size} bytes");
        let error: Value = serde_json::from_slice(&answer.body).unwrap();
        assert!(
            error["error"].as_str().unwrap().contains("4096 bytes"),
            "{error}"
        );
    }
    // The connection is still good for the next review.
    let answer = client
        .send("POST", "/validate", review("helmrelease-cluster-config"))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_413_over_http2_arrives_whole_and_the_stream_ends_without_error() {
    let server = start(short_limits(), QUICK_SHUTDOWN).await;
    let (tls, _) = tls_connect(server.addr, server.pki.roots(), None, b"h2")
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = hyper::Request::post("https://localhost/validate")
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (response, mut upload) = client.send_request(request, false).unwrap();
    // Over the 4096-byte limit, and the body never ends: the server answers before it has
    // read everything, as a caller sending a huge object would see.
    upload
        .send_data(hyper::body::Bytes::from(vec![b' '; 4 << 20]), false)
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 413);
    let mut body = response.into_body();
    let mut read = Vec::new();
    while let Some(chunk) = body.data().await {
        read.extend_from_slice(&chunk.expect("the 413's body was cut by a reset"));
    }
    let error: Value = serde_json::from_slice(&read).unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("4096 bytes"),
        "{error}"
    );
    // The server tells the client to stop sending without calling it an error.
    let reason = std::future::poll_fn(|cx| upload.poll_reset(cx))
        .await
        .unwrap();
    assert_eq!(reason, h2::Reason::NO_ERROR);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_new_connections_wait_until_one_closes() {
    let limits = Limits {
        max_connections: 3,
        header_read_timeout_seconds: 2,
        idle_timeout_seconds: 2,
        ..short_limits()
    };
    let server = start(limits, QUICK_SHUTDOWN).await;
    let (addr, roots) = (server.addr, server.pki.roots());
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            tls_connect(addr, roots.clone(), None, b"http/1.1")
                .await
                .unwrap(),
        );
    }
    // A fourth is not taken on while three are open...
    let refused = tokio::time::timeout(
        Duration::from_millis(700),
        once(addr, roots.clone(), None, "GET", "/healthz", Vec::new()),
    )
    .await;
    assert!(
        refused.is_err(),
        "served a fourth connection at a cap of three"
    );
    // ...and is served once the idle ones are closed.
    let answer = tokio::time::timeout(
        Duration::from_secs(6),
        once(addr, roots.clone(), None, "GET", "/healthz", Vec::new()),
    )
    .await
    .expect("/healthz still waiting after the idle connections closed")
    .unwrap();
    assert_eq!(answer.status, 200);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_under_load_fails_no_request() {
    let drain = Duration::from_secs(2);
    let shutdown = Shutdown {
        drain_seconds: drain.as_secs(),
        shutdown_timeout_seconds: 5,
    };
    let limits = Limits {
        body_read_timeout_seconds: 5,
        ..Limits::default()
    };
    let server = start(limits, shutdown).await;
    let (addr, roots) = (server.addr, server.pki.roots());

    // Bounded load: three keep-alive HTTP/1.1 clients, one HTTP/2 client, one client opening
    // a connection per request, until told to stop.
    let failures = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for client in 0..5 {
        let (failures, served, stop, roots) = (
            failures.clone(),
            served.clone(),
            stop.clone(),
            roots.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut h1 = Client::connect(addr, roots.clone(), None).await.unwrap();
            let mut h2 = H2Client::connect(addr, roots.clone()).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                let body = review("helmrelease-cross-namespace");
                let result = match client {
                    0..=2 => h1.send("POST", "/validate", body).await,
                    3 => h2.send("POST", "/validate", body).await,
                    _ => once(addr, roots.clone(), None, "POST", "/validate", body).await,
                };
                match result {
                    Ok(answer) if answer.status == 200 => {
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    server.stop.send(()).unwrap();

    // Readiness turns 503 at once, while reviews are still answered.
    let readyz = once(addr, roots.clone(), None, "GET", "/readyz", Vec::new())
        .await
        .unwrap();
    assert_eq!(
        readyz.status,
        503,
        "{}",
        String::from_utf8_lossy(&readyz.body)
    );

    // A request that starts inside the drain period and ends after the listener closed.
    let (mut slow, _) = tls_connect(addr, roots.clone(), None, b"http/1.1")
        .await
        .unwrap();
    let body = review("helmrelease-cross-namespace");
    let (head, tail) = body.split_at(body.len() / 2);
    tokio::time::sleep_until((signalled + drain - Duration::from_millis(300)).into()).await;
    slow.write_all(
        format!(
            "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    slow.write_all(head).await.unwrap();

    // The callers move away within the drain period, as the API server does once the
    // endpoint is gone.
    tokio::time::sleep_until((signalled + drain - Duration::from_millis(500)).into()).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }

    tokio::time::sleep_until((signalled + drain + Duration::from_millis(500)).into()).await;
    assert!(
        tokio::time::timeout(
            Duration::from_millis(500),
            once(addr, roots.clone(), None, "GET", "/healthz", Vec::new())
        )
        .await
        .map_or(true, |result| result.is_err()),
        "still accepting after the drain period"
    );
    slow.write_all(tail).await.unwrap();
    let (answer, _) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"allowed\":false"), "{answer}");

    tokio::time::timeout(Duration::from_secs(5), server.done)
        .await
        .expect("shutdown took too long")
        .unwrap()
        .unwrap();
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during the drain"
    );
    assert!(
        served.load(Ordering::Relaxed) > 20,
        "too little load to mean anything"
    );
}

/// An idle HTTP/1.1 keep-alive connection lives for the idle timeout, not the header-read
/// timeout: the API server keeps idle HTTP/1.1 connections 90 s and must be the one to close
/// them. Headers that start to arrive and stall are the header-read timeout's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_idles_for_the_idle_timeout_and_slow_headers_for_the_header_timeout() {
    let limits = Limits {
        header_read_timeout_seconds: 1,
        idle_timeout_seconds: 3,
        ..short_limits()
    };
    let server = start(limits, QUICK_SHUTDOWN).await;
    let (mut tls, _) = tls_connect(server.addr, server.pki.roots(), None, b"http/1.1")
        .await
        .unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 1024];
    let n = tls.read(&mut answer).await.unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer[..n])
    );
    let (_, after) = read_until_closed(&mut tls, Duration::from_secs(6)).await;
    assert!(
        after >= Duration::from_millis(2500) && after < Duration::from_secs(5),
        "an idle HTTP/1.1 connection closed after {after:?}, not at the 3 s idle timeout"
    );

    let (mut slow, _) = tls_connect(server.addr, server.pki.roots(), None, b"http/1.1")
        .await
        .unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: loc")
        .await
        .unwrap();
    let (_, after) = read_until_closed(&mut slow, Duration::from_secs(6)).await;
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_millis(2500),
        "stalled headers closed after {after:?}, not at the 1 s header-read timeout"
    );
}
