//! A throwaway cluster on loopback for the tests that need a real API server: etcd,
//! kube-apiserver, kubectl, the Flux CRDs and the webhook in process.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fluxfence_webhook::accounts::ServiceAccountCache;
use fluxfence_webhook::config::{Config, Limits, LogFormat, Shutdown};
use fluxfence_webhook::metrics::Metrics;
use fluxfence_webhook::server::Server;
use serde_json::{Value, json};

use super::Pki;

pub const TOKEN: &str = "fluxfence-e2e-admin-token";

/// The kube-apiserver and etcd binaries the envtest convention names, or `None` (after
/// printing the skip note) when they are not set.
pub fn binaries_or_skip() -> Option<(PathBuf, PathBuf)> {
    let found = (
        std::env::var_os("KUBE_APISERVER").filter(|v| !v.is_empty()),
        std::env::var_os("ETCD").filter(|v| !v.is_empty()),
    );
    match found {
        (Some(apiserver), Some(etcd)) => Some((apiserver.into(), etcd.into())),
        _ => {
            // Past the test harness's capture: `cargo test` shows what it could not check.
            let _ =
                std::io::Write::write_all(&mut std::io::stderr(), b"skipped: no KUBE_APISERVER\n");
            None
        }
    }
}

/// A started process and its log; killed when the test ends, however it ends.
pub struct Process {
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Starts `command` with stdout and stderr into `log`.
    pub fn start(name: &'static str, mut command: Command, log: PathBuf) -> Process {
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
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("--- last lines of {}'s log ---\n{tail}", self.name)
    }

    /// Fails the test at once, with the log's tail, when the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited with {status}\n{}", self.name, self.log_tail());
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn find_kubectl() -> Option<PathBuf> {
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
pub fn flux_crd_paths() -> Vec<PathBuf> {
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

pub fn base64(bytes: &[u8]) -> String {
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

pub struct Kubectl {
    pub binary: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
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
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
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
    pub fn apply(&self, manifest: &Value, extra: &[&str]) -> (bool, String) {
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
pub fn wait_until(
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

pub fn start_etcd(etcd: &Path, dir: &Path) -> (Process, String) {
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

pub fn start_apiserver(binary: &Path, dir: &Path, etcd_url: &str, pki: &Pki) -> (Process, u16) {
    start_apiserver_with(binary, dir, etcd_url, pki, &[])
}

/// [`start_apiserver`] with extra flags (feature gates, `--runtime-config`).
pub fn start_apiserver_with(
    binary: &Path,
    dir: &Path,
    etcd_url: &str,
    pki: &Pki,
    extra: &[String],
) -> (Process, u16) {
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
        ))
        .args(extra);
    (
        Process::start("kube-apiserver", command, dir.join("apiserver.log")),
        port,
    )
}

/// etcd and kube-apiserver on loopback in `dir`, with a kubectl for them, once the API server
/// answers `/readyz`.
pub struct Cluster {
    pub etcd: Process,
    pub apiserver: Process,
    pub kubectl: Kubectl,
    pub port: u16,
}

impl Cluster {
    pub fn start(
        etcd: &Path,
        apiserver: &Path,
        kubectl: PathBuf,
        dir: &Path,
        pki: &Pki,
    ) -> Cluster {
        let (mut etcd, etcd_url) = start_etcd(etcd, dir);
        let (mut apiserver, port) = start_apiserver(apiserver, dir, &etcd_url, pki);
        let kubectl = Kubectl {
            binary: kubectl,
            kubeconfig: write_kubeconfig(dir, port, pki),
        };
        wait_until(
            &mut [&mut etcd, &mut apiserver],
            Duration::from_secs(90),
            "kube-apiserver /readyz",
            || {
                kubectl
                    .run(&["get", "--raw", "/readyz"], None)
                    .status
                    .success()
            },
        );
        Cluster {
            etcd,
            apiserver,
            kubectl,
            port,
        }
    }
}

pub fn write_kubeconfig(dir: &Path, port: u16, pki: &Pki) -> PathBuf {
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

/// The running in-process webhook: its address, and how to stop it.
pub struct Webhook {
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Webhook {
    /// Starts the webhook on a loopback port with the built-in policy, serving a certificate
    /// from `pki` out of a Kubernetes-style volume under `dir`.
    pub async fn start(dir: &Path, pki: &Pki, own_namespace: &str) -> Webhook {
        Webhook::start_with_accounts(dir, pki, own_namespace, None).await
    }

    /// [`Webhook::start`], with the ServiceAccount cache when `accounts` is given.
    pub async fn start_with_accounts(
        dir: &Path,
        pki: &Pki,
        own_namespace: &str,
        accounts: Option<Arc<ServiceAccountCache>>,
    ) -> Webhook {
        let any_port = "127.0.0.1:0".parse().unwrap();
        Webhook::start_on(dir, pki, own_namespace, any_port, accounts).await
    }

    /// [`Webhook::start_with_accounts`] on `listen`: a webhook started again on the address
    /// of one stopped is called by the same webhook configuration.
    pub async fn start_on(
        dir: &Path,
        pki: &Pki,
        own_namespace: &str,
        listen: SocketAddr,
        accounts: Option<Arc<ServiceAccountCache>>,
    ) -> Webhook {
        let tls_dir = dir.join("webhook-tls");
        let serving = pki.server("fluxfence-webhook");
        super::write_volume(
            &tls_dir,
            "1",
            &[
                ("tls.crt", serving.cert_pem.as_bytes()),
                ("tls.key", serving.key_pem.as_bytes()),
            ],
        );
        let server = Server::bind_with_accounts(
            Config {
                listen,
                tls_cert_file: tls_dir.join("tls.crt"),
                tls_key_file: tls_dir.join("tls.key"),
                client_ca_file: None,
                policy_file: None,
                namespace: Some(own_namespace.into()),
                max_body_bytes: 3 * 1024 * 1024,
                reload_interval_seconds: 10,
                log_format: LogFormat::Text,
                trusted_publishers: Vec::new(),
                limits: Limits::default(),
                shutdown: Shutdown {
                    drain_seconds: 0,
                    shutdown_timeout_seconds: 5,
                },
            },
            Arc::new(Metrics::new()),
            accounts,
        )
        .await
        .unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        Webhook {
            addr,
            stop,
            serving,
        }
    }

    /// Stops the webhook and requires a clean shutdown.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.serving.await.unwrap().unwrap();
    }
}

/// Applies the Flux CRDs and waits until they are served.
pub fn install_flux_crds(kubectl: &Kubectl) {
    for path in &flux_crd_paths() {
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
}
