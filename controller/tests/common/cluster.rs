//! etcd and kube-apiserver on loopback, as envtest runs them (no controllers, no garbage
//! collector, no nodes), a kube Client for them, and the fluxfence-controller binary.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::Deserialize;
use serde_json::{Value, json};

pub const TOKEN: &str = "fluxfence-controller-e2e-admin-token";
/// The controller binary authenticates as its own user (as in a cluster, where it is its
/// ServiceAccount), so that a webhook can tell its writes from the tests'.
pub const CONTROLLER_USER: &str = "fluxfence-controller";
const CONTROLLER_TOKEN: &str = "fluxfence-controller-e2e-controller-token";

/// `(KUBE_APISERVER, ETCD)` when both name binaries.
pub fn binaries() -> Option<(PathBuf, PathBuf)> {
    let apiserver = std::env::var_os("KUBE_APISERVER").filter(|v| !v.is_empty())?;
    let etcd = std::env::var_os("ETCD").filter(|v| !v.is_empty())?;
    Some((apiserver.into(), etcd.into()))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A started process, killed when dropped, with its log file.
pub struct Process {
    pub name: &'static str,
    child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(name: &'static str, command: &mut Command, log: PathBuf) -> Process {
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process { name, child, log }
    }

    /// Fails the test at once, with the end of the log, when the process has exited.
    pub fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}); the end of its log:\n{}",
                self.name,
                tail(&self.log)
            );
        }
    }

    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    /// The kubeconfig the controller binary runs with (as `CONTROLLER_USER`).
    pub controller_kubeconfig: PathBuf,
    pub client: Client,
    // Dropped in reverse order of start: the API server before etcd.
    pub apiserver: Process,
    pub etcd: Process,
}

impl Cluster {
    pub async fn start(apiserver: &Path, etcd: &Path) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let (client_port, peer_port, secure_port) = (free_port(), free_port(), free_port());
        let etcd = Process::spawn(
            "etcd",
            Command::new(etcd)
                .arg(format!("--data-dir={}", root.join("etcd").display()))
                .arg(format!(
                    "--listen-client-urls=http://127.0.0.1:{client_port}"
                ))
                .arg(format!(
                    "--advertise-client-urls=http://127.0.0.1:{client_port}"
                ))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
                ))
                .arg(format!(
                    "--initial-cluster=default=http://127.0.0.1:{peer_port}"
                )),
            root.join("etcd.log"),
        );
        let sa_key = root.join("sa.key");
        std::fs::write(&sa_key, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
        let tokens = root.join("tokens.csv");
        std::fs::write(
            &tokens,
            format!(
                "{TOKEN},admin,admin,\"system:masters\"\n\
                 {CONTROLLER_TOKEN},{CONTROLLER_USER},{CONTROLLER_USER},\"system:masters\"\n"
            ),
        )
        .unwrap();
        let apiserver = Process::spawn(
            "kube-apiserver",
            Command::new(apiserver)
                .arg(format!("--etcd-servers=http://127.0.0.1:{client_port}"))
                .arg(format!("--cert-dir={}", root.join("certs").display()))
                .arg("--bind-address=127.0.0.1")
                .arg("--advertise-address=127.0.0.1")
                .arg(format!("--secure-port={secure_port}"))
                .arg("--service-cluster-ip-range=10.96.0.0/24")
                .arg(format!(
                    "--service-account-issuer=https://127.0.0.1:{secure_port}"
                ))
                .arg(format!("--service-account-key-file={}", sa_key.display()))
                .arg(format!(
                    "--service-account-signing-key-file={}",
                    sa_key.display()
                ))
                .arg(format!("--token-auth-file={}", tokens.display()))
                .arg("--authorization-mode=RBAC")
                // Webhooks are called by URL on loopback, never through a Service.
                .arg("--enable-aggregator-routing=true")
                .arg("--disable-admission-plugins=ServiceAccount"),
            root.join("kube-apiserver.log"),
        );
        // The API server generates a self-signed serving certificate in --cert-dir; the
        // client skips its verification (loopback only, a throwaway server).
        let kubeconfig = root.join("kubeconfig");
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "e2e", "cluster": {
                "server": format!("https://127.0.0.1:{secure_port}"),
                "insecure-skip-tls-verify": true,
            }}],
            "users": [{"name": "admin", "user": {"token": TOKEN}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin", "namespace": "default"}}],
            "current-context": "e2e",
        });
        std::fs::write(&kubeconfig, config.to_string()).unwrap();
        let mut controller_config = config.clone();
        controller_config["users"][0]["user"]["token"] = json!(CONTROLLER_TOKEN);
        let controller_kubeconfig = root.join("controller.kubeconfig");
        std::fs::write(&controller_kubeconfig, controller_config.to_string()).unwrap();
        let options = KubeConfigOptions::default();
        let parsed = Kubeconfig::read_from(&kubeconfig).unwrap();
        let client_config = Config::from_custom_kubeconfig(parsed, &options)
            .await
            .unwrap();
        let client = Client::try_from(client_config).unwrap();
        let mut cluster = Cluster {
            dir,
            controller_kubeconfig,
            client,
            apiserver,
            etcd,
        };
        let started = Instant::now();
        while cluster.client.apiserver_version().await.is_err() {
            cluster.check_alive();
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "kube-apiserver not ready after 90 s:\n{}",
                tail(&cluster.apiserver.log)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        cluster
    }

    pub fn check_alive(&mut self) {
        self.etcd.check_alive();
        self.apiserver.check_alive();
    }

    /// Every CRD of the chart (Flux's and the FluxConfig CRD), applied and Established.
    pub async fn install_crds(&mut self) {
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/flux-multitenancy/crds");
        let paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().and_then(|e| e.to_str()) == Some("yaml"))
            .collect();
        self.install_crd_files(&paths).await;
    }

    /// The CRDs in `paths`, applied and Established.
    pub async fn install_crd_files(&mut self, paths: &[PathBuf]) {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let mut names = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(path).unwrap();
            for document in serde_yaml_ng::Deserializer::from_str(&text) {
                let value = Value::deserialize(document).unwrap();
                if value.is_null() {
                    continue;
                }
                let name = value["metadata"]["name"].as_str().unwrap().to_owned();
                api.patch(
                    &name,
                    &PatchParams::apply("e2e").force(),
                    &Patch::Apply(&value),
                )
                .await
                .unwrap_or_else(|e| panic!("the API server refused the CRD {name}: {e}"));
                names.push(name);
            }
        }
        for name in names {
            let started = Instant::now();
            loop {
                let crd = api.get(&name).await.unwrap();
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if established {
                    break;
                }
                self.check_alive();
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "CRD {name} not Established"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// The controller binary, talking to this API server, and the port of its HTTP endpoints.
    pub fn start_controller(&self, extra: &[&str]) -> (Process, u16) {
        let port = free_port();
        let process = Process::spawn(
            "fluxfence-controller",
            Command::new(env!("CARGO_BIN_EXE_fluxfence-controller"))
                .arg("run")
                .arg(format!("--http-addr=127.0.0.1:{port}"))
                .arg("--log-format=text")
                .args(extra)
                .env("KUBECONFIG", &self.controller_kubeconfig)
                .env("RUST_LOG", "info"),
            self.dir.path().join(format!("controller-{port}.log")),
        );
        (process, port)
    }
}
