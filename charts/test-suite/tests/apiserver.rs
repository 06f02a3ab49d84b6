//! Applies the rendered charts to a real API server, the way envtest runs one: etcd and
//! kube-apiserver on loopback, no controllers, no nodes. Runs when `KUBE_APISERVER` and `ETCD`
//! name the two binaries (kubectl from `$KUBECTL`, `.tools/bin`, or `PATH`); skipped otherwise.
//!
//! Beyond "the API server accepts every object", it checks what only a real API server can: the
//! webhooks' namespaceSelector. No webhook pod runs, so with `failurePolicy: Fail` a Flux object
//! in a tenant namespace is refused (the call fails), while the release namespace and
//! kube-system, never sent to the webhook, accept it. kube-apiserver runs with
//! `--enable-aggregator-routing=true`, so the Service is resolved to (missing) endpoints and no
//! traffic leaves loopback.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fluxfence_charts_test::{find_tool, helm};
use serde_json::Value;

const TOKEN: &str = "fluxfence-charts-test-admin-token";
const FLUX_NS: &str = "flux-system";

/// Kills the servers when the test ends, however it ends.
struct Servers {
    children: Vec<Child>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn spawn(program: &Path, args: &[String], log: &Path) -> Child {
    let log_file = std::fs::File::create(log).unwrap_or_else(|e| panic!("{e}"));
    let err_file = log_file.try_clone().unwrap_or_else(|e| panic!("{e}"));
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()))
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

struct Kubectl {
    path: PathBuf,
    server: String,
}

impl Kubectl {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(&self.path);
        command
            .arg(format!("--server={}", self.server))
            .arg(format!("--token={TOKEN}"))
            .arg("--insecure-skip-tls-verify=true")
            .arg("--request-timeout=30s")
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run kubectl: {e}"));
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .unwrap_or_else(|e| panic!("kubectl stdin: {e}"));
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("kubectl: {e}"))
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let output = self.run(args, stdin);
        assert!(
            output.status.success(),
            "kubectl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

fn git_repository(namespace: &str) -> String {
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: probe
  namespace: {namespace}
spec:
  interval: 10m
  url: https://example.com/repo.git
  ref:
    branch: main
"
    )
}

#[test]
fn rendered_manifests_apply_to_a_real_api_server() {
    let (Some(apiserver), Some(etcd)) = (
        std::env::var_os("KUBE_APISERVER").filter(|v| !v.is_empty()),
        std::env::var_os("ETCD").filter(|v| !v.is_empty()),
    ) else {
        // Past the test harness's capture: `cargo test` shows what it could not check.
        let _ = std::io::Write::write_all(&mut std::io::stderr(), b"skipped: no KUBE_APISERVER\n");
        return;
    };
    let Some(helm) = helm() else { return };
    let kubectl_path = find_tool("KUBECTL", "kubectl")
        .unwrap_or_else(|| panic!("KUBE_APISERVER is set but no kubectl was found"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = dir.path();

    // Service-account signing key (required by kube-apiserver) and a static admin token.
    let key = root.join("sa.key");
    let status = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("openssl is needed for the service-account key: {e}"));
    assert!(status.success(), "openssl genrsa failed");
    let tokens = root.join("tokens.csv");
    std::fs::write(&tokens, format!("{TOKEN},admin,admin,\"system:masters\"\n"))
        .unwrap_or_else(|e| panic!("{e}"));

    let (client, peer, secure) = (free_port(), free_port(), free_port());
    let mut servers = Servers {
        children: Vec::new(),
    };
    let etcd_log = root.join("etcd.log");
    servers.children.push(spawn(
        Path::new(&etcd),
        &[
            format!("--data-dir={}", root.join("etcd").display()),
            format!("--listen-client-urls=http://127.0.0.1:{client}"),
            format!("--advertise-client-urls=http://127.0.0.1:{client}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-cluster=default=http://127.0.0.1:{peer}"),
        ],
        &etcd_log,
    ));
    let apiserver_log = root.join("kube-apiserver.log");
    servers.children.push(spawn(
        Path::new(&apiserver),
        &[
            format!("--etcd-servers=http://127.0.0.1:{client}"),
            format!("--cert-dir={}", root.join("certs").display()),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={secure}"),
            "--service-cluster-ip-range=10.96.0.0/24".into(),
            // Webhook Services are resolved to their endpoints instead of dialled at their
            // ClusterIP (10.96.0.x, off this machine): with no endpoints the call fails
            // without any traffic leaving loopback.
            "--enable-aggregator-routing=true".into(),
            format!("--service-account-issuer=https://127.0.0.1:{secure}"),
            format!("--service-account-key-file={}", key.display()),
            format!("--service-account-signing-key-file={}", key.display()),
            format!("--token-auth-file={}", tokens.display()),
            "--authorization-mode=RBAC".into(),
            "--allow-privileged=true".into(),
            // As envtest: no token controller runs to populate service-account tokens.
            "--disable-admission-plugins=ServiceAccount".into(),
        ],
        &apiserver_log,
    ));
    let kubectl = Kubectl {
        path: kubectl_path,
        server: format!("https://127.0.0.1:{secure}"),
    };

    let started = Instant::now();
    loop {
        if kubectl
            .run(&["get", "--raw", "/readyz"], None)
            .status
            .success()
        {
            break;
        }
        for child in &mut servers.children {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "a server exited ({status}):\netcd:\n{}\nkube-apiserver:\n{}",
                    tail(&etcd_log),
                    tail(&apiserver_log)
                );
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "kube-apiserver not ready after 90 s:\n{}",
            tail(&apiserver_log)
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Render the companion (which includes the fluxfence chart) with its CRDs.
    let companion = helm.companion_chart();
    let rendered = helm.run(&[
        "template",
        "flux",
        &companion.chart.to_string_lossy(),
        "--namespace",
        FLUX_NS,
        "--include-crds",
        "--skip-tests",
        "--set",
        "imageAutomation.enabled=true",
    ]);
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let text = String::from_utf8_lossy(&rendered.stdout).into_owned();
    let docs = fluxfence_charts_test::parse_manifests(&text).unwrap_or_else(|e| panic!("{e}"));
    let (crds, rest): (Vec<Value>, Vec<Value>) = docs
        .into_iter()
        .partition(|d| d["kind"] == "CustomResourceDefinition");
    let as_list = |items: Vec<Value>| {
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
    };

    kubectl.ok(&["create", "namespace", FLUX_NS], None);
    kubectl.ok(&["apply", "--server-side", "-f", "-"], Some(&as_list(crds)));
    kubectl.ok(
        &[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ],
        None,
    );
    // --server-side applies each object as the API server validates it (schemas, immutable
    // fields, webhook configurations' rules and selectors).
    kubectl.ok(&["apply", "--server-side", "-f", "-"], Some(&as_list(rest)));

    // The standalone chart's mutating webhook calls only when there is an account to
    // default (matchConditions): the API server compiles the CEL expression on create.
    let standalone = helm
        .template(
            &fluxfence_charts_test::chart_dir("fluxfence"),
            "standalone",
            FLUX_NS,
            "",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let mutating = standalone
        .into_iter()
        .find(|d| d["kind"] == "MutatingWebhookConfiguration")
        .unwrap_or_else(|| panic!("no MutatingWebhookConfiguration in the standalone chart"));
    assert!(
        mutating["webhooks"][0]["matchConditions"].is_array(),
        "{mutating}"
    );
    kubectl.ok(
        &["create", "--dry-run=server", "-f", "-"],
        Some(&mutating.to_string()),
    );

    let applied = kubectl.ok(
        &[
            "get",
            "validatingwebhookconfiguration,mutatingwebhookconfiguration",
            "-o",
            "name",
        ],
        None,
    );
    assert!(applied.contains("flux-fluxfence"), "{applied}");

    // Excluded namespaces never reach the (absent) webhook; a tenant namespace does and fails.
    for namespace in [FLUX_NS, "kube-system"] {
        kubectl.ok(
            &["create", "--dry-run=server", "-f", "-"],
            Some(&git_repository(namespace)),
        );
    }
    kubectl.ok(&["create", "namespace", "team-a"], None);
    // The API server picks up new webhook configurations asynchronously: retry for a while.
    let started = Instant::now();
    let stderr = loop {
        let refused = kubectl.run(
            &["create", "--dry-run=server", "-f", "-"],
            Some(&git_repository("team-a")),
        );
        if !refused.status.success() {
            break String::from_utf8_lossy(&refused.stderr).into_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a tenant's GitRepository bypassed the webhook for 30 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        stderr.contains("fluxfence.dev"),
        "not refused by the webhook:\n{stderr}"
    );
    // Refused for want of endpoints, never after dialling a ClusterIP. Endpoints-based API
    // servers say `endpoints "<svc>" not found`, EndpointSlice-based ones (1.33+) `no
    // endpoints available for service "<svc>"`.
    let service = "flux-fluxfence";
    assert!(
        stderr.contains(&format!("endpoints \"{service}\" not found"))
            || stderr.contains(&format!("no endpoints available for service \"{service}\"")),
        "refused, but not for want of endpoints (did the API server dial the Service?):\n{stderr}"
    );
    drop(servers);
}
