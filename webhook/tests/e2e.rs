//! End to end: etcd + kube-apiserver on loopback, the Flux CRDs, the webhook registered by URL,
//! and real `kubectl` outcomes.
//!
//! Runs when `KUBE_APISERVER` and `ETCD` name the binaries (`KUBECTL` optional, else `kubectl`
//! on PATH; `FLUX_CRDS` optional, else `shared/flux-crds` found above the crate, else the
//! flux-multitenancy chart's CRDs). Otherwise it prints "skipped: no KUBE_APISERVER" and passes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Pki;
use fluxfence::kinds::FLUX_KINDS;
use fluxfence_webhook::config::{Config, Limits, LogFormat, Shutdown};
use fluxfence_webhook::metrics::Metrics;
use fluxfence_webhook::server::Server;
use serde_json::{Value, json};

const TOKEN: &str = "fluxfence-e2e-admin-token";
const OWN_NAMESPACE: &str = "fluxfence-system";

/// A started process and its log; killed when the test ends, however it ends.
struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Starts `command` with stdout and stderr into `log`.
    fn start(name: &'static str, mut command: Command, log: PathBuf) -> Process {
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process { name, child, log }
    }

    /// The last lines of the log, for a failure message (the temporary directory goes away).
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("--- last lines of {}'s log ---\n{tail}", self.name)
    }

    /// Fails the test at once, with the log's tail, when the process has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited with {status}\n{}", self.name, self.log_tail());
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn find_kubectl() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KUBECTL").filter(|v| !v.is_empty()) {
        return Some(path.into());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.is_file())
}

/// What to apply for the Flux CRDs: `FLUX_CRDS` (laid out as `shared/flux-crds`, a directory
/// per controller), else `shared/flux-crds` next to the repository, else the copy the
/// flux-multitenancy chart ships (a fresh clone has no `shared/`).
fn flux_crd_paths() -> Vec<PathBuf> {
    let start = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let per_controller = std::env::var_os("FLUX_CRDS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            start
                .ancestors()
                .map(|dir| dir.join("shared/flux-crds"))
                .find(|p| p.is_dir())
        });
    let Some(base) = per_controller else {
        return vec![start.join("../charts/flux-multitenancy/crds")];
    };
    [
        "source-controller",
        "kustomize-controller",
        "helm-controller",
        "notification-controller",
        "image-reflector-controller",
        "image-automation-controller",
    ]
    .iter()
    .map(|controller| base.join(controller))
    .collect()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write as _;
        let mut child = Command::new(&self.binary)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// Runs and requires success.
    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Applies a manifest given as JSON; returns (success, stdout + stderr).
    fn apply(&self, manifest: &Value, extra: &[&str]) -> (bool, String) {
        let mut args = vec!["apply", "-f", "-"];
        args.extend_from_slice(extra);
        let out = self.run(&args, Some(&manifest.to_string()));
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

/// Polls `check` until it holds; fails at once when a started process exits, and after
/// `limit` with every process's log tail.
fn wait_until(
    processes: &mut [&mut Process],
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
) {
    let started = Instant::now();
    loop {
        for process in processes.iter_mut() {
            process.assert_running();
        }
        if check() {
            return;
        }
        if started.elapsed() > limit {
            let logs: Vec<String> = processes.iter().map(|p| p.log_tail()).collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn start_etcd(etcd: &Path, dir: &Path) -> (Process, String) {
    let client = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let mut command = Command::new(etcd);
    command
        .args(["--name", "e2e", "--log-level", "error"])
        .arg("--data-dir")
        .arg(dir.join("etcd"))
        .args(["--listen-client-urls", &client])
        .args(["--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("e2e={peer}")]);
    (
        Process::start("etcd", command, dir.join("etcd.log")),
        client,
    )
}

fn start_apiserver(binary: &Path, dir: &Path, etcd_url: &str, pki: &Pki) -> (Process, u16) {
    let serving = pki.server("kube-apiserver");
    let write = |name: &str, content: &str| {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    let cert = write("apiserver.crt", &serving.cert_pem);
    let key = write("apiserver.key", &serving.key_pem);
    // Tokens are signed with the private key and checked with the public one: kube-apiserver
    // reads only public keys (or certificates) from --service-account-key-file.
    let sa = rcgen::KeyPair::generate().unwrap();
    let sa_key = write("sa.key", &sa.serialize_pem());
    let sa_pub = write("sa.pub", &sa.public_key_pem());
    let tokens = write(
        "tokens.csv",
        &format!("{TOKEN},e2e-admin,e2e-admin,\"system:masters\"\n"),
    );
    let port = free_port();
    let mut command = Command::new(binary);
    command
        .arg(format!("--etcd-servers={etcd_url}"))
        .arg(format!("--secure-port={port}"))
        .arg("--bind-address=127.0.0.1")
        .arg("--advertise-address=127.0.0.1")
        .arg("--service-cluster-ip-range=10.96.0.0/24")
        // A Service is resolved to its endpoints, never dialled at its ClusterIP: traffic
        // stays on loopback.
        .arg("--enable-aggregator-routing=true")
        .arg(format!("--cert-dir={}", dir.display()))
        .arg(format!("--tls-cert-file={}", cert.display()))
        .arg(format!("--tls-private-key-file={}", key.display()))
        .arg(format!("--token-auth-file={}", tokens.display()))
        .arg("--authorization-mode=RBAC")
        .arg("--service-account-issuer=https://kubernetes.default.svc")
        .arg(format!("--service-account-key-file={}", sa_pub.display()))
        .arg(format!(
            "--service-account-signing-key-file={}",
            sa_key.display()
        ));
    (
        Process::start("kube-apiserver", command, dir.join("apiserver.log")),
        port,
    )
}

fn write_kubeconfig(dir: &Path, port: u16, pki: &Pki) -> PathBuf {
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {
            "server": format!("https://127.0.0.1:{port}"),
            "certificate-authority": ca,
        }}],
        "users": [{"name": "admin", "user": {"token": TOKEN}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
        "current-context": "e2e",
    });
    let path = dir.join("kubeconfig");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// Validating and mutating registrations for every Flux kind, their status subresource and
/// deletes, so that the test sees those pass *through* the webhook rather than around it.
fn webhook_configurations(addr: SocketAddr, ca_pem: &str) -> Value {
    let mut groups: Vec<&str> = FLUX_KINDS.iter().map(|k| k.group).collect();
    groups.dedup();
    let rules: Vec<Value> = groups
        .iter()
        .map(|group| {
            let resources: Vec<String> = FLUX_KINDS
                .iter()
                .filter(|k| k.group == *group)
                .flat_map(|k| [k.plural.to_owned(), format!("{}/status", k.plural)])
                .collect();
            json!({
                "apiGroups": [group],
                "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE", "DELETE"],
                "resources": resources,
                "scope": "Namespaced",
            })
        })
        .collect();
    let hook = |name: &str, path: &str| {
        json!({
            "name": name,
            "clientConfig": {
                "url": format!("https://127.0.0.1:{}{path}", addr.port()),
                "caBundle": base64(ca_pem.as_bytes()),
            },
            "rules": rules,
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
            "namespaceSelector": {"matchExpressions": [{
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                // The chart also leaves out its own namespace; here it stays in so that the
                // webhook's own-namespace rule is exercised.
                "values": ["kube-system"],
            }]},
        })
    };
    let mut mutating = hook("mutate.fluxfence.dev", "/mutate");
    mutating["reinvocationPolicy"] = json!("IfNeeded");
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "fluxfence"},
                "webhooks": [hook("validate.fluxfence.dev", "/validate")],
            },
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": "fluxfence"},
                "webhooks": [mutating],
            },
        ],
    })
}

/// The Azure document's HelmRelease: in `nginx`, its chart source in `flux-system`.
fn seed_helmrelease() -> Value {
    json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": "nginx", "namespace": "nginx"},
        "spec": {
            "releaseName": "nginx-ingress-controller",
            "interval": "1h0m0s",
            "chart": {"spec": {
                "chart": "nginx-ingress-controller",
                "version": "5.6.14",
                "sourceRef": {"kind": "HelmRepository", "name": "bitnami", "namespace": "flux-system"},
            }},
        },
    })
}

fn kustomization(namespace: &str) -> Value {
    json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "apps", "namespace": namespace},
        "spec": {
            "interval": "10m",
            "path": "./apps",
            "prune": true,
            "sourceRef": {"kind": "GitRepository", "name": "cluster-config"},
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_against_a_real_api_server() {
    let (Some(apiserver), Some(etcd)) = (
        std::env::var_os("KUBE_APISERVER").filter(|v| !v.is_empty()),
        std::env::var_os("ETCD").filter(|v| !v.is_empty()),
    ) else {
        // Past the test harness's capture: `cargo test` shows what it could not check.
        let _ = std::io::Write::write_all(&mut std::io::stderr(), b"skipped: no KUBE_APISERVER\n");
        return;
    };
    let kubectl = find_kubectl().expect("KUBE_APISERVER is set but no kubectl: set KUBECTL");
    let crds = flux_crd_paths();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = Pki::new("fluxfence e2e CA");

    let (mut etcd, etcd_url) = start_etcd(Path::new(&etcd), dir);
    let (mut apiserver, port) = start_apiserver(Path::new(&apiserver), dir, &etcd_url, &pki);
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

    // The webhook, in-process, with the built-in policy.
    let tls_dir = dir.join("webhook-tls");
    let serving = pki.server("fluxfence-webhook");
    common::write_volume(
        &tls_dir,
        "1",
        &[
            ("tls.crt", serving.cert_pem.as_bytes()),
            ("tls.key", serving.key_pem.as_bytes()),
        ],
    );
    let server = Server::bind(
        Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls_cert_file: tls_dir.join("tls.crt"),
            tls_key_file: tls_dir.join("tls.key"),
            client_ca_file: None,
            policy_file: None,
            namespace: Some(OWN_NAMESPACE.into()),
            max_body_bytes: 3 * 1024 * 1024,
            reload_interval_seconds: 10,
            log_format: LogFormat::Text,
            limits: Limits::default(),
            shutdown: Shutdown {
                drain_seconds: 0,
                shutdown_timeout_seconds: 5,
            },
        },
        Arc::new(Metrics::new()),
    )
    .await
    .unwrap();
    let webhook_addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving_task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));

    // Flux CRDs (current versions), namespaces, and one object that predates the webhook.
    for path in &crds {
        kubectl.ok(
            &["apply", "--server-side", "-f", &path.display().to_string()],
            None,
        );
    }
    kubectl.ok(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ],
        None,
    );
    for namespace in ["nginx", "cluster-config", "flux-system", OWN_NAMESPACE] {
        kubectl.ok(&["create", "namespace", namespace], None);
    }
    let (created, output) = kubectl.apply(&seed_helmrelease(), &[]);
    assert!(
        created,
        "before registration the object is admitted: {output}"
    );

    kubectl.ok(
        &["apply", "-f", "-"],
        Some(&webhook_configurations(webhook_addr, &pki.ca_pem).to_string()),
    );
    // Registration takes effect asynchronously: wait for the first denial.
    let mut denied = seed_helmrelease();
    denied["metadata"]["name"] = json!("nginx-new");
    wait_until(
        &mut processes,
        Duration::from_secs(30),
        "the webhook to be called",
        || !kubectl.apply(&denied, &["--dry-run=server"]).0,
    );

    // A cross-namespace HelmRelease is denied, with the rule, the fix and the rewrite.
    let (ok, output) = kubectl.apply(&denied, &[]);
    assert!(!ok, "{output}");
    assert!(
        output.contains("admission webhook \"validate.fluxfence.dev\" denied the request"),
        "{output}"
    );
    assert!(
        output.contains("FF101 cross-namespace-source-ref at /spec/chart/spec/sourceRef/namespace"),
        "{output}"
    );
    assert!(output.contains("namespace: cluster-config"), "{output}");
    // And a server-side dry run gets the same answer.
    let (ok, dry) = kubectl.apply(&denied, &["--dry-run=server"]);
    assert!(!ok && dry.contains("FF101"), "{dry}");

    // A Kustomization in the config namespace is admitted with its service account defaulted.
    let (ok, output) = kubectl.apply(&kustomization("cluster-config"), &[]);
    assert!(ok, "{output}");
    assert!(
        output.contains("fluxfence: set spec.serviceAccountName: flux-applier"),
        "{output}"
    );
    let stored = kubectl.ok(
        &[
            "get",
            "kustomization",
            "apps",
            "-n",
            "cluster-config",
            "-o",
            "jsonpath={.spec.serviceAccountName}",
        ],
        None,
    );
    assert_eq!(stored.trim(), "flux-applier");
    // Applying it again changes nothing (the webhook is idempotent).
    let (ok, output) = kubectl.apply(&kustomization("cluster-config"), &[]);
    assert!(ok && output.contains("unchanged"), "{output}");

    // The object that violated before the webhook came in: a metadata-only update (a
    // label, a finalizer) is admitted with its violations as warnings; a change that adds one
    // is denied; a status update passes.
    let out = kubectl.run(
        &["label", "helmrelease", "nginx", "-n", "nginx", "team=web"],
        None,
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "a metadata-only update denied: {said}"
    );
    assert!(
        said.contains("Warning: FF101 (admitted: there before this update)"),
        "{said}"
    );
    let finalizer = r#"{"metadata":{"finalizers":["finalizers.fluxcd.io"]}}"#;
    kubectl.ok(
        &[
            "patch",
            "helmrelease",
            "nginx",
            "-n",
            "nginx",
            "--type=merge",
            "-p",
            finalizer,
        ],
        None,
    );
    let remote = r#"{"spec":{"kubeConfig":{"secretRef":{"name":"prod"}}}}"#;
    let out = kubectl.run(
        &[
            "patch",
            "helmrelease",
            "nginx",
            "-n",
            "nginx",
            "--type=merge",
            "-p",
            remote,
        ],
        None,
    );
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("FF120"),
        "a new violation admitted: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    kubectl.ok(
        &[
            "patch",
            "helmrelease",
            "nginx",
            "-n",
            "nginx",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"observedGeneration":1}}"#,
        ],
        None,
    );
    // Deleted, it waits for its finalizer; removing it (what Flux does) is admitted and the
    // object goes away instead of staying in Terminating.
    kubectl.ok(
        &[
            "delete",
            "helmrelease",
            "nginx",
            "-n",
            "nginx",
            "--wait=false",
        ],
        None,
    );
    kubectl.ok(
        &[
            "patch",
            "helmrelease",
            "nginx",
            "-n",
            "nginx",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ],
        None,
    );
    wait_until(
        &mut processes,
        Duration::from_secs(30),
        "the deleted object to go",
        || {
            let out = kubectl.run(&["get", "helmrelease", "nginx", "-n", "nginx"], None);
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound")
        },
    );

    // The webhook's own namespace is never blocked (even if registered for it).
    let mut own = seed_helmrelease();
    own["metadata"]["namespace"] = json!(OWN_NAMESPACE);
    let (ok, output) = kubectl.apply(&own, &[]);
    assert!(ok, "{output}");

    let _ = stop.send(());
    serving_task.await.unwrap().unwrap();
}

#[test]
fn the_registration_covers_every_kind_with_a_valid_ca_bundle() {
    assert_eq!(base64(b"M"), "TQ==");
    assert_eq!(base64(b"Ma"), "TWE=");
    assert_eq!(base64(b"Man"), "TWFu");
    assert_eq!(base64(b"fluxfence"), "Zmx1eGZlbmNl");
    let config = webhook_configurations("127.0.0.1:8443".parse().unwrap(), "CA");
    for item in config["items"].as_array().unwrap() {
        let hook = &item["webhooks"][0];
        assert_eq!(hook["clientConfig"]["caBundle"], "Q0E=");
        let resources: Vec<&str> = hook["rules"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["resources"].as_array().unwrap())
            .map(|r| r.as_str().unwrap())
            .collect();
        for kind in FLUX_KINDS {
            assert!(resources.contains(&kind.plural), "{}", kind.plural);
            assert!(resources.contains(&format!("{}/status", kind.plural).as_str()));
        }
    }
}
