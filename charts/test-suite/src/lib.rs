//! Helpers for the chart tests: find `helm`, render a chart with values, and read the rendered
//! manifests with fluxfence's own YAML loader.
//!
//! `helm` is taken from `$HELM`, else `<workspace>/.tools/bin/helm` (what
//! `scripts/install-helm.sh` installs), else `PATH`. Without it the tests print
//! `skipped: no helm` and pass, unless `FLUXFENCE_REQUIRE_HELM=1` (CI), where they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The workspace root (this crate lives in `charts/test-suite`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

pub fn chart_dir(name: &str) -> PathBuf {
    workspace_root().join("charts").join(name)
}

/// Finds an executable: `$env_var`, then `<workspace>/.tools/bin/<name>`, then `PATH`.
pub fn find_tool(env_var: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let local = workspace_root().join(".tools/bin").join(name);
    if local.is_file() {
        return Some(local);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// `helm`, or `None` after printing why the calling test is skipped. Panics when helm is
/// missing but required (`FLUXFENCE_REQUIRE_HELM=1`).
pub fn helm() -> Option<Helm> {
    match find_tool("HELM", "helm") {
        Some(path) => Some(Helm { path }),
        None if std::env::var("FLUXFENCE_REQUIRE_HELM").as_deref() == Ok("1") => {
            panic!(
                "FLUXFENCE_REQUIRE_HELM=1 but no helm was found ($HELM, .tools/bin/helm, PATH); \
                 run scripts/install-helm.sh"
            )
        }
        None => {
            // Past the test harness's capture: `cargo test` shows what it could not check.
            let _ = std::io::Write::write_all(&mut std::io::stderr(), b"skipped: no helm\n");
            None
        }
    }
}

/// A `helm` executable.
#[derive(Debug, Clone)]
pub struct Helm {
    pub path: PathBuf,
}

/// What `helm template` produced: the manifests, or helm's error output.
pub type Rendered = Result<Vec<Value>, String>;

impl Helm {
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.path)
            .args(args)
            .env("HELM_CACHE_HOME", scratch_dir().join("cache"))
            .env("HELM_CONFIG_HOME", scratch_dir().join("config"))
            .env("HELM_DATA_HOME", scratch_dir().join("data"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.path.display()))
    }

    /// `helm lint --strict` with the given values; the combined output on failure.
    pub fn lint_strict(&self, chart: &Path, values_yaml: &str) -> Result<(), String> {
        let values = ValuesFile::new(values_yaml);
        let chart = chart.to_string_lossy();
        let output = self.run(&["lint", "--strict", &chart, "-f", values.path_str()]);
        if output.status.success() {
            Ok(())
        } else {
            Err(combined(&output))
        }
    }

    /// `helm template` of `chart` as `release` in `namespace`, with values given
    /// as YAML; `extra` are further arguments (`--include-crds`, ...).
    pub fn template(
        &self,
        chart: &Path,
        release: &str,
        namespace: &str,
        values_yaml: &str,
        extra: &[&str],
    ) -> Rendered {
        let values = ValuesFile::new(values_yaml);
        let chart = chart.to_string_lossy();
        let mut args = vec![
            "template",
            release,
            &chart,
            "--namespace",
            namespace,
            "-f",
            values.path_str(),
        ];
        args.extend_from_slice(extra);
        let output = self.run(&args);
        if !output.status.success() {
            return Err(combined(&output));
        }
        let text = String::from_utf8(output.stdout).map_err(|e| e.to_string())?;
        parse_manifests(&text)
    }

    /// A copy of the companion chart with its `fluxfence` dependency built from
    /// `charts/fluxfence` by `helm dependency build` (offline: the repository is `file://`).
    /// The copy keeps concurrent test runs from racing on `charts/flux-multitenancy/charts/`.
    pub fn companion_chart(&self) -> BuiltChart {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        for name in ["fluxfence", "flux-multitenancy"] {
            copy_dir(&chart_dir(name), &dir.path().join(name), &["charts"]);
        }
        let chart = dir.path().join("flux-multitenancy");
        let output = self.run(&["dependency", "build", &chart.to_string_lossy()]);
        assert!(
            output.status.success(),
            "helm dependency build failed:\n{}",
            combined(&output)
        );
        BuiltChart { dir, chart }
    }
}

/// A chart in a temporary directory; removed on drop.
pub struct BuiltChart {
    dir: tempfile::TempDir,
    pub chart: PathBuf,
}

impl BuiltChart {
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// Parses multi-document YAML into JSON values, skipping empty documents.
pub fn parse_manifests(text: &str) -> Rendered {
    let mut docs = Vec::new();
    fluxfence::yaml::load_documents(text, |doc| {
        let value = doc.root.to_json();
        if !value.is_null() {
            docs.push(value);
        }
    })
    .map_err(|e| {
        format!(
            "rendered YAML does not parse at byte {}: {}",
            e.offset, e.message
        )
    })?;
    Ok(docs)
}

/// Objects of a kind.
pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The one object of a kind with a name; panics with the list of what exists otherwise.
pub fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} among {:?}", names(docs)))
}

/// `Kind/name` of every object, for messages.
pub fn names(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or("?"),
                d["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// The strings of a JSON array (empty for anything else).
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn combined(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Helm's cache/config/data homes, kept out of the user's home directory.
fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join("fluxfence-charts-test-helm")
}

/// A values file in a temporary directory.
struct ValuesFile {
    _dir: tempfile::TempDir,
    path: String,
}

impl ValuesFile {
    fn new(yaml: &str) -> ValuesFile {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("values.yaml");
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("write values: {e}"));
        ValuesFile {
            path: path.to_string_lossy().into_owned(),
            _dir: dir,
        }
    }

    fn path_str(&self) -> &str {
        &self.path
    }
}

/// Copies a directory tree, leaving out top-level entries named in `skip`.
pub fn copy_dir(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
    for entry in entries.flatten() {
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let source = entry.path();
        let target = to.join(&name);
        if source.is_dir() {
            copy_dir(&source, &target, &[]);
        } else {
            std::fs::copy(&source, &target)
                .unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
        }
    }
}
