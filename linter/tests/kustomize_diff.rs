//! The native build against the real kustomize: for every kustomization directory of the
//! corpus (`../shared/corpus`) and of `testdata/kustomize`, the Flux objects and
//! ServiceAccounts fluxfence builds equal, in kind, name, namespace and every field (but Helm
//! values, which fluxfence does not keep), what `kubectl kustomize --load-restrictor
//! LoadRestrictionsNone DIR` prints. A directory kustomize refuses must be one fluxfence
//! reports a problem for.
//!
//! Needs kubectl (`$KUBECTL`, the workspace's `.tools/bin`, or `PATH`): `.ci/run` installs it
//! and sets `FLUXFENCE_REQUIRE_KUBECTL=1`, which turns a missing kubectl into a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use fluxfence::Inventory;
use fluxfence::kinds::FluxKind;
use fluxfence::yaml::Node;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kubectl() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KUBECTL").map(PathBuf::from) {
        return Some(path);
    }
    let local = workspace().join(".tools/bin/kubectl");
    if local.exists() {
        return Some(local);
    }
    let found = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output();
    found
        .ok()
        .filter(|o| o.status.success())
        .map(|_| PathBuf::from("kubectl"))
}

fn require_kubectl() -> Option<PathBuf> {
    let found = kubectl();
    if found.is_none() {
        assert!(
            std::env::var_os("FLUXFENCE_REQUIRE_KUBECTL").is_none(),
            "FLUXFENCE_REQUIRE_KUBECTL is set but no kubectl was found"
        );
        eprintln!("skipped: no kubectl");
    }
    found
}

/// `(kind, namespace, name)` → the object as JSON, for Flux kinds and ServiceAccounts.
type Objects = BTreeMap<(String, String, String), serde_json::Value>;

fn judged(root: &Node) -> Option<((String, String, String), serde_json::Value)> {
    let kind = root.get("kind")?.as_str()?;
    let api_version = root.get("apiVersion")?.as_str()?;
    let flux = FluxKind::from_type(api_version, kind).is_some();
    let service_account = kind == "ServiceAccount" && api_version == "v1";
    if !(flux || service_account) {
        return None;
    }
    let mut json = root.to_json();
    if let Some(spec) = json.get_mut("spec").and_then(|s| s.as_object_mut()) {
        // Helm values are not kept. `valuesFrom` names a generated ConfigMap by the name
        // kustomize gives it (with a content hash, through a `configurations:` name
        // reference): generators are not modelled, and no rule reads the name.
        spec.remove("values");
        spec.remove("valuesFrom");
    }
    let metadata = root.get("metadata");
    let field = |key: &str| {
        metadata
            .and_then(|m| m.get(key))
            .and_then(Node::as_str)
            .unwrap_or("")
            .to_owned()
    };
    Some(((kind.to_owned(), field("namespace"), field("name")), json))
}

/// What kubectl builds, or its error.
fn kubectl_build(kubectl: &Path, dir: &Path) -> Result<Objects, String> {
    let output = Command::new(kubectl)
        .args(["kustomize", "--load-restrictor", "LoadRestrictionsNone"])
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run kubectl: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut objects = Objects::new();
    fluxfence::yaml::load_documents(&text, |document| {
        objects.extend(judged(&document.root));
    })
    .map_err(|e| format!("kubectl printed YAML fluxfence cannot read: {}", e.message))?;
    Ok(objects)
}

/// What fluxfence builds for `dir` (relative to the inventory's root), and its problems.
fn native_build(inventory: &Inventory, dir: &Path) -> (Objects, Vec<String>) {
    let (objects, problems) = fluxfence::build::kustomize_build(inventory, dir);
    let objects = objects.iter().filter_map(|o| judged(&o.root)).collect();
    (objects, problems.into_iter().map(|p| p.message).collect())
}

/// Whether kustomize failed for a reason outside the build model: a generator's input file
/// (the corpus keeps YAML files only) or a remote resource (no network here; FF130 flags it).
fn fails_outside_the_model(error: &str) -> bool {
    error.contains("loading KV pairs")
        || error.contains("env source files")
        || error.contains("git fetch")
        || error.contains("https://")
}

/// Compares every kustomization directory under `root` (a repository); returns the
/// directories compared and the differences found.
fn compare_tree(kubectl: &Path, root: &Path) -> (Vec<String>, Vec<String>) {
    // Each tree is its own repository (testdata lies inside this one).
    let inventory = Inventory::load_in_root(root, &[root.to_path_buf()]);
    let dirs: Vec<&fluxfence::kustomize::KustomizeFile> =
        inventory.kustomize_files.iter().collect();
    // kubectl runs are most of the time: two at once.
    let theirs: Vec<Result<Objects, String>> = std::thread::scope(|scope| {
        let half = dirs.len().div_ceil(2);
        let workers: Vec<_> = dirs
            .chunks(half.max(1))
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|k| kubectl_build(kubectl, &root.join(&k.dir)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let mut compared = Vec::new();
    let mut differences = Vec::new();
    for (kustomization, theirs) in dirs.iter().zip(theirs) {
        let dir = &kustomization.dir;
        let label = format!("{}/{}", root.display(), dir.display());
        let (ours, problems) = native_build(&inventory, dir);
        match theirs {
            Err(error) => {
                // kustomize refuses it (a missing file, a failing patch): fluxfence must
                // not build it silently.
                let expected = is_component(&kustomization.root) || fails_outside_the_model(&error);
                if problems.is_empty() && !expected {
                    differences.push(format!(
                        "{label}: kustomize fails ({error}), fluxfence builds it without a problem"
                    ));
                }
            }
            Ok(theirs) => {
                compared.push(label.clone());
                if !problems.is_empty() {
                    differences.push(format!(
                        "{label}: kustomize builds it, fluxfence reports {problems:?}"
                    ));
                }
                for (key, value) in &theirs {
                    match ours.get(key) {
                        None => {
                            differences.push(format!("{label}: fluxfence does not build {key:?}"))
                        }
                        Some(mine) if mine != value => differences.push(format!(
                            "{label}: {key:?} differs:\n  kustomize: {value}\n  fluxfence: {mine}"
                        )),
                        Some(_) => {}
                    }
                }
                for key in ours.keys().filter(|k| !theirs.contains_key(*k)) {
                    differences.push(format!(
                        "{label}: fluxfence builds {key:?}, kustomize does not"
                    ));
                }
            }
        }
    }
    (compared, differences)
}

fn is_component(root: &Node) -> bool {
    root.get("kind").and_then(Node::as_str) == Some("Component")
}

/// The fixtures made for what the corpus does not exercise (replacements with `create`,
/// regex targets, `$patch: delete`, JSON 6902 on a list index, components, labels).
#[test]
fn the_fixtures_build_as_kustomize_builds_them() {
    let Some(kubectl) = require_kubectl() else {
        return;
    };
    let root = workspace().join("testdata/kustomize");
    let (compared, differences) = compare_tree(&kubectl, &root);
    println!(
        "compared {} directories:\n{}",
        compared.len(),
        compared.join("\n")
    );
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    assert!(compared.len() >= 6, "{compared:?}");
}

#[test]
fn the_corpus_builds_as_kustomize_builds_it() {
    let corpus = workspace().join("../shared/corpus");
    if !corpus.is_dir() {
        eprintln!("the_corpus_builds_as_kustomize_builds_it: skipped: no ../shared");
        return;
    }
    let Some(kubectl) = require_kubectl() else {
        return;
    };
    let mut repos: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    repos.sort();
    let mut all_compared = 0;
    let mut all_differences = Vec::new();
    for repo in repos {
        let (compared, differences) = compare_tree(&kubectl, &repo);
        println!(
            "{}: {} directories compared",
            repo.display(),
            compared.len()
        );
        for dir in &compared {
            println!("  {dir}");
        }
        all_compared += compared.len();
        all_differences.extend(differences);
    }
    assert!(
        all_differences.is_empty(),
        "{} differences:\n{}",
        all_differences.len(),
        all_differences.join("\n")
    );
    assert!(
        all_compared > 300,
        "only {all_compared} directories compared"
    );
}
