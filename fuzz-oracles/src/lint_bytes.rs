//! Any bytes as one file of a small repository (a Flux Kustomization building `apps/`, whose
//! `kustomization.yaml` sets a namespace and lists a HelmRelease) → `lint` as the CLI runs it
//! ends with a report: exit 0, 1 or 2, never a panic. Hangs and memory are bounded by the
//! fuzzer (`-timeout`, `-rss_limit_mb`). Beyond not crashing:
//! - every input error it reports names a line and column of the file it names;
//! - the JSON and SARIF reports are JSON.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use fluxfence::output::{self, Format, Options};
use fluxfence::{Inventory, Policy, lint};

/// The repository around the fuzzed file: path and text of every file.
pub const TREE: [(&str, &str); 3] = [
    (
        "clusters/prod/apps.yaml",
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  \
         name: apps\n  namespace: flux-system\nspec:\n  interval: 10m\n  path: ./apps\n  \
         prune: true\n  targetNamespace: team-a\n  sourceRef:\n    kind: GitRepository\n    \
         name: flux-system\n",
    ),
    (
        "apps/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: team-a\n\
         resources:\n  - release.yaml\n",
    ),
    (
        "apps/release.yaml",
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: podinfo\n\
         spec:\n  interval: 10m\n  chart:\n    spec:\n      chart: podinfo\n      sourceRef:\n        \
         kind: HelmRepository\n        name: podinfo\n        namespace: flux-system\n",
    ),
];

/// The first byte picks which file of [`TREE`] the rest replaces.
pub fn check(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let replaced = usize::from(selector) % TREE.len();
    let root = repository();
    for (i, (rel, text)) in TREE.iter().enumerate() {
        let contents = if i == replaced {
            bytes
        } else {
            text.as_bytes()
        };
        if let Err(e) = std::fs::write(root.join(rel), contents) {
            panic!(
                "cannot write the fuzzing repository under {}: {e}",
                root.display()
            );
        }
    }
    let file = root.join(TREE[replaced].0);
    let report = lint(
        Inventory::load_in_root(root, &[file]),
        &Policy::azure_default(),
    );
    let exit = report.exit_code();
    assert!((0..=2).contains(&exit), "exit code {exit}");
    for error in report.errors() {
        if error.line == 0 {
            continue; // about the file as a whole (unreadable, a build with no place)
        }
        let Some(file) = report.inventory.files.iter().find(|f| f.path == error.file) else {
            continue; // a file of the tree that was not reported on
        };
        assert!(
            crate::is_position_in(&file.text, error.line, error.column),
            "input error outside its file: {error}"
        );
    }
    let options = Options {
        root: Some(root.to_path_buf()),
        ..Options::default()
    };
    for format in [Format::Json, Format::Sarif] {
        let rendered = output::render(&report, format, &options);
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&rendered) {
            panic!(
                "the {} report is not JSON ({e}):\n{rendered}",
                format.as_str()
            );
        }
    }
    for format in [Format::Text, Format::Junit, Format::Github] {
        output::render(&report, format, &options);
    }
}

/// A directory of this process's own, made once, holding [`TREE`]'s directories.
fn repository() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("fluxfence-fuzz-lint-{}", std::process::id()));
        for (rel, _) in TREE {
            if let Some(parent) = root.join(rel).parent()
                && let Err(e) = std::fs::create_dir_all(parent)
            {
                panic!(
                    "cannot make the fuzzing repository {}: {e}",
                    parent.display()
                );
            }
        }
        root
    })
}
