//! `fluxfence fix`: the Azure document's rewrite, byte-range edits that keep everything else,
//! idempotence, and the whole corpus surviving it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use fluxfence::fix::{FixOptions, fix, unified_diff};
use fluxfence::input::Source;
use fluxfence::{Inventory, Policy, lint};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn unsafe_fixes() -> FixOptions {
    FixOptions {
        unsafe_fixes: true,
        config_namespace: None,
    }
}

/// Every manifest under `dir`, with paths relative to it (stable diff headers).
fn sources(dir: &Path) -> Vec<Source> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files);
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    files
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<Source>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            out.push(Source {
                path: rel.display().to_string(),
                rel,
                text: std::fs::read_to_string(&path).unwrap(),
                reported: true,
            });
        }
    }
}

/// An inventory of one in-memory file.
fn single_file(name: &str, text: String) -> Inventory {
    Inventory::from_sources(None, vec![reported(name, text)])
}

fn fixed_case(case: &str, policy: &Policy, options: &FixOptions) -> fluxfence::fix::FixOutcome {
    let inventory =
        Inventory::from_sources(None, sources(&workspace().join("testdata/fix").join(case)));
    fix(inventory, policy, options).unwrap()
}

fn diff_of(outcome: &fluxfence::fix::FixOutcome) -> String {
    outcome
        .changed
        .iter()
        .map(|(path, before, after)| unified_diff(path, before, after))
        .collect()
}

fn documents(text: &str) -> Vec<serde_json::Value> {
    let mut docs = Vec::new();
    fluxfence::yaml::load_documents(text, |d| docs.push(d.root.to_json())).unwrap();
    docs
}

#[test]
fn the_seed_before_becomes_the_documents_after() {
    // The document's "after" carries no serviceAccountName (the default applies) and keeps the
    // beta API versions, so FF110's and FF002's own fixes are off to compare like with like.
    // The document moves the HelmRepository out of `flux-system`: no namespace is exempt here.
    let policy = Policy::parse(
        "exemptNamespaces: []\nrules:\n  FF110: off\n  FF002: off\n",
        "p.yaml",
    )
    .unwrap();
    let before =
        std::fs::read_to_string(workspace().join("testdata/seed/before/nginx.yaml")).unwrap();
    let after =
        std::fs::read_to_string(workspace().join("testdata/seed/after/nginx.yaml")).unwrap();
    let inventory = single_file("nginx.yaml", before);
    let outcome = fix(inventory, &policy, &unsafe_fixes()).unwrap();
    let fixed = &outcome.changed[0].2;
    let mut expected = documents(&after);
    // Plus the one field the document forgets: Helm's storage stays where the release is.
    expected[0]["spec"]["storageNamespace"] = "nginx".into();
    assert_eq!(documents(fixed), expected, "{fixed}");
    // The rewritten file is clean under the default policy, bar FF110's warning.
    let report = lint(outcome.inventory, &Policy::azure_default());
    let codes: Vec<_> = report.diagnostics.iter().map(|d| d.finding.code).collect();
    assert!(
        codes.iter().all(|c| *c == "FF110" || *c == "FF002"),
        "{codes:?}"
    );
}

#[test]
fn under_the_default_policy_the_seed_release_stays_with_its_exempt_source() {
    // `flux-system` is exempt by default: fix moves nothing out of it, so the release, whose
    // source is there, stays too; the served API versions and the service account are fixed.
    let before =
        std::fs::read_to_string(workspace().join("testdata/seed/before/nginx.yaml")).unwrap();
    let inventory = single_file("nginx.yaml", before);
    let outcome = fix(inventory, &Policy::azure_default(), &unsafe_fixes()).unwrap();
    let docs = documents(&outcome.changed[0].2);
    assert_eq!(docs[0]["apiVersion"], "helm.toolkit.fluxcd.io/v2");
    assert_eq!(docs[1]["apiVersion"], "source.toolkit.fluxcd.io/v1");
    assert_eq!(docs[0]["spec"]["serviceAccountName"], "flux-applier");
    assert_eq!(docs[0]["metadata"]["namespace"], "nginx");
    assert_eq!(docs[1]["metadata"]["namespace"], "flux-system");
    assert_eq!(
        outcome.skipped,
        vec![
            "nginx.yaml: HelmRelease nginx/nginx: not moved: it reads \
             (spec.chart.spec.sourceRef) HelmRepository flux-system/bitnami (nginx.yaml), in the \
             exempt namespace `flux-system`, which fix moves nothing out of; move them together \
             by hand, or make `flux-system` not exempt"
        ]
    );
    // What is left is what the input had: the move it could not make.
    let report = lint(outcome.inventory, &Policy::azure_default());
    let codes: Vec<_> = report.diagnostics.iter().map(|d| d.finding.code).collect();
    assert_eq!(codes, ["FF111", "FF101"]);
}

#[test]
fn the_move_is_unsafe_and_needs_the_flag() {
    let outcome = fixed_case(
        "comments",
        &Policy::azure_default(),
        &FixOptions {
            unsafe_fixes: false,
            config_namespace: None,
        },
    );
    let diff = diff_of(&outcome);
    assert!(
        diff.contains("+  serviceAccountName: flux-applier"),
        "{diff}"
    );
    assert!(!diff.contains("cluster-config"), "{diff}");
    assert!(
        outcome
            .skipped
            .iter()
            .any(|s| s.contains("unsafe: run with --unsafe-fixes")),
        "{:?}",
        outcome.skipped
    );
}

#[test]
fn config_namespace_option_overrides_the_policy() {
    let options = FixOptions {
        unsafe_fixes: true,
        config_namespace: Some("gitops".into()),
    };
    let diff = diff_of(&fixed_case("crlf", &Policy::azure_default(), &options));
    assert!(diff.contains("+  namespace: gitops\r\n"), "{diff}");
}

macro_rules! diff_snapshots {
    ($($test:ident => $case:literal),* $(,)?) => {$(
        #[test]
        fn $test() {
            let outcome = fixed_case($case, &Policy::azure_default(), &unsafe_fixes());
            insta::assert_snapshot!(concat!("fix_diff_", $case), diff_of(&outcome));
            // Idempotent: fixing the result changes nothing.
            let again = fix(outcome.inventory, &Policy::azure_default(), &unsafe_fixes()).unwrap();
            assert!(again.changed.is_empty(), "second fix changed {:?}", again.changed);
            assert!(again.inventory.errors.is_empty(), "{:?}", again.inventory.errors);
        }
    )*};
}

diff_snapshots! {
    fix_keeps_comments_and_quoting => "comments",
    fix_keeps_anchors_and_their_aliases_meaning => "anchors",
    fix_edits_flow_mappings_in_flow_style => "flow",
    fix_keeps_crlf_line_ends => "crlf",
    fix_moves_dependencies_together_in_multi_document_files => "multi-doc",
    fix_edits_the_kustomization_that_sets_the_namespace => "kustomize-namespace",
    fix_explains_why_it_cannot_edit_a_shared_kustomization => "kustomize-blocked",
}

#[test]
fn a_kustomization_that_also_applies_a_namespace_is_not_edited() {
    // kustomize's namespace transformer also renames Namespace objects: changing it would rename
    // the app's namespace. The fixer explains instead.
    let outcome = fixed_case(
        "kustomize-blocked",
        &Policy::azure_default(),
        &unsafe_fixes(),
    );
    assert!(
        outcome
            .changed
            .iter()
            .all(|(path, _, _)| !path.ends_with("kustomization.yaml"))
    );
    // One line per Flux object held, naming what the kustomization places.
    assert_eq!(outcome.skipped.len(), 2, "{:?}", outcome.skipped);
    for (line, object) in outcome.skipped.iter().zip([
        "apps/web/release.yaml: HelmRelease web/web: ",
        "apps/web/repository.yaml: HelmRepository web/charts: ",
    ]) {
        assert!(line.starts_with(object), "{line}");
        assert!(
            line.contains("which also places Namespace web (apps/web/namespace.yaml)"),
            "{line}"
        );
    }
}

/// The `spec.interval` of each object `kubectl kustomize dir` builds, by kind: the fixture's
/// patches set it, so it tells whether they still apply.
fn built_intervals(kubectl: &Path, dir: &Path) -> Vec<(String, String)> {
    let built = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}: {}",
        dir.display(),
        String::from_utf8_lossy(&built.stderr)
    );
    documents(&String::from_utf8(built.stdout).unwrap())
        .iter()
        .map(|d| {
            let kind = d["kind"].as_str().unwrap_or_default().to_owned();
            (
                kind,
                d["spec"]["interval"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

#[test]
fn moves_that_would_strand_a_patch_are_held_back() {
    // Each app: a HelmRelease and its HelmRepository in the app namespace (FF111), and a patch.
    let case = workspace().join("testdata/fix/patch-selects-namespace");
    let outcome = fixed_case(
        "patch-selects-namespace",
        &Policy::azure_default(),
        &unsafe_fixes(),
    );
    let namespace_of = |path: &str| {
        let (_, _, text) = outcome
            .changed
            .iter()
            .find(|(p, _, _)| p == path)
            .unwrap_or_else(|| panic!("{path} unchanged"));
        documents(text)[0]["metadata"]["namespace"].clone()
    };
    let unchanged = |path: &str| outcome.changed.iter().all(|(p, _, _)| p != path);

    // Held: a selector of an overlay, a strategic-merge patch of the source, and a
    // patchesJson6902 entry of the kustomization whose `namespace:` would change.
    let held = [
        (
            "apps/podinfo/base/release.yaml",
            "patches[0] of apps/podinfo/production/kustomization.yaml selects it in `podinfo`",
        ),
        (
            "apps/blog/base/repository.yaml",
            "patches[0] of apps/blog/production/kustomization.yaml selects it in `blog`",
        ),
        (
            "apps/docs/release.yaml",
            "patchesJson6902[0] of apps/docs/kustomization.yaml selects it in `docs`",
        ),
    ];
    // One line for each held Flux object: the three above and the objects held with them.
    assert_eq!(
        outcome.skipped.len(),
        2 * held.len(),
        "{:#?}",
        outcome.skipped
    );
    for (file, reason) in held {
        assert!(
            outcome
                .skipped
                .iter()
                .any(|s| s.starts_with(file) && s.contains(reason)),
            "{file}: {:#?}",
            outcome.skipped
        );
    }
    // Neither the held object nor the one it moves with changed namespace.
    for file in [
        "apps/podinfo/base/repository.yaml",
        "apps/blog/base/repository.yaml",
        "apps/docs/kustomization.yaml",
        "apps/docs/repository.yaml",
    ] {
        assert!(unchanged(file), "{file} changed");
    }
    for file in [
        "apps/podinfo/base/release.yaml",
        "apps/blog/base/release.yaml",
    ] {
        assert_ne!(namespace_of(file), "cluster-config", "{file}");
    }
    // Moved: a selector without a namespace, and a `patches` entry of the kustomization whose
    // `namespace:` changes (kustomize applies it before that field).
    assert_eq!(
        namespace_of("apps/shop/base/release.yaml"),
        "cluster-config"
    );
    assert_eq!(
        namespace_of("apps/shop/base/repository.yaml"),
        "cluster-config"
    );
    assert!(
        outcome
            .changed
            .iter()
            .any(|(p, _, after)| p == "apps/wiki/kustomization.yaml"
                && after.contains("namespace: cluster-config"))
    );

    // Every patch still applies: kustomize builds the same intervals before and after.
    let Some(kubectl) = kubectl() else {
        assert!(
            std::env::var_os("FLUXFENCE_REQUIRE_KUBECTL").is_none(),
            "kubectl is required but not found"
        );
        skipped("no kubectl (the kustomize builds)");
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    copy_tree(&case, temp.path());
    let overlays = [
        "apps/podinfo/production",
        "apps/blog/production",
        "apps/shop/production",
        "apps/wiki",
        "apps/docs",
    ];
    let before: Vec<_> = overlays
        .iter()
        .map(|o| built_intervals(&kubectl, &temp.path().join(o)))
        .collect();
    for (path, _, after) in &outcome.changed {
        std::fs::write(temp.path().join(path), after).unwrap();
    }
    for (overlay, before) in overlays.iter().zip(before) {
        assert!(
            before.iter().any(|(_, interval)| interval == "5m"),
            "{overlay}: {before:?}"
        );
        assert_eq!(
            built_intervals(&kubectl, &temp.path().join(overlay)),
            before,
            "{overlay}"
        );
    }
}

/// A HelmRelease and the HelmRepository it reads, both in the app namespace `podinfo`
/// (FF111: no `flux-applier` there), so that `fix` moves them.
const PODINFO: &str = "\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: podinfo
spec:
  chart:
    spec:
      chart: podinfo
      sourceRef:
        kind: HelmRepository
        name: podinfo
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: podinfo
  namespace: podinfo
spec:
  url: https://charts.example.com
";

/// A reported file of an in-memory repository.
fn reported(rel: &str, text: impl Into<String>) -> Source {
    Source {
        path: rel.into(),
        rel: rel.into(),
        text: text.into(),
        reported: true,
    }
}

/// Fixes an in-memory repository (unsafe fixes, default policy): whether `path` was moved to
/// `cluster-config`, and what was skipped.
fn moved_to_config(sources: Vec<Source>, path: &str) -> (bool, Vec<String>) {
    let inventory = Inventory::from_sources(None, sources);
    let outcome = fix(inventory, &Policy::azure_default(), &unsafe_fixes()).unwrap();
    let moved = outcome
        .changed
        .iter()
        .any(|(p, _, after)| p == path && after.contains("namespace: cluster-config"));
    (moved, outcome.skipped)
}

/// A kustomization that applies `resources` and patches what `target` selects.
fn patching_kustomization(resources: &str, target: &str) -> String {
    format!(
        "resources: [{resources}]
patches:
  - target: {target}
    patch: |
      - op: add
        path: /spec/suspend
        value: true
"
    )
}

#[test]
fn only_a_patch_of_a_kustomization_that_builds_the_object_holds_it() {
    let moved = |overlay_resources: &str| {
        let target = "{kind: HelmRelease, name: podinfo, namespace: podinfo}";
        moved_to_config(
            vec![
                reported("app/kustomization.yaml", "resources: [release.yaml]\n"),
                reported("app/release.yaml", PODINFO),
                reported(
                    "other/config.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
                ),
                reported(
                    "other/kustomization.yaml",
                    patching_kustomization(overlay_resources, target),
                ),
            ],
            "app/release.yaml",
        )
    };
    // `other` patches its own resources only: the release moves.
    let (moved_alone, skipped) = moved("config.yaml");
    assert!(moved_alone, "{skipped:?}");
    // `other` builds the app as well: its patch would no longer apply, so nothing moves.
    let (moved_with, skipped) = moved("config.yaml, ../app");
    assert!(!moved_with);
    assert!(
        skipped
            .iter()
            .any(|s| s.contains("patches[0] of other/kustomization.yaml selects it in `podinfo`")),
        "{skipped:?}"
    );
}

#[test]
fn selectors_are_read_as_kustomize_reads_them() {
    // kustomize reads a selector's fields as regular expressions that match the whole value.
    let moved = |target: &str| {
        let sources = vec![
            reported("app/kustomization.yaml", "resources: [release.yaml]\n"),
            reported("app/release.yaml", PODINFO),
            reported(
                "overlay/kustomization.yaml",
                patching_kustomization("../app", target),
            ),
        ];
        moved_to_config(sources, "app/release.yaml").0
    };
    for (target, moves) in [
        (
            "{kind: HelmRelease, name: podinfo, namespace: 'pod.*'}",
            false,
        ),
        (
            "{kind: HelmRelease, name: podinfo, namespace: 'other|podinfo'}",
            false,
        ),
        ("{kind: 'Helm.*', namespace: podinfo}", false),
        // Anchored: `pod` alone does not match `podinfo`.
        ("{kind: HelmRelease, namespace: pod}", true),
        // Matches the new namespace as well: the patch still applies after the move.
        ("{kind: HelmRelease, namespace: '.*'}", true),
        ("{kind: HelmRelease, name: other, namespace: podinfo}", true),
        ("{kind: Kustomization, namespace: podinfo}", true),
    ] {
        assert_eq!(moved(target), moves, "{target}");
    }
}

#[test]
fn a_flux_kustomization_patch_holds_a_move_of_what_it_applies() {
    let flux_kustomization = |path: &str, target: &str| {
        format!(
            "apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: apps
  namespace: flux-system
spec:
  path: {path}
  sourceRef:
    kind: GitRepository
    name: flux-system
  patches:
    - target: {target}
      patch: |
        - op: add
          path: /spec/suspend
          value: true
"
        )
    };
    let moved = |path: &str, target: &str| {
        moved_to_config(
            vec![
                reported("app/podinfo.yaml", PODINFO),
                reported("clusters/apps.yaml", flux_kustomization(path, target)),
            ],
            "app/podinfo.yaml",
        )
    };
    let by_namespace = "{kind: HelmRelease, name: podinfo, namespace: podinfo}";
    let (moved_held, skipped) = moved("./app", by_namespace);
    assert!(!moved_held);
    assert!(
        skipped.iter().any(|s| s.contains(
            "spec.patches[0] of Flux Kustomization flux-system/apps (clusters/apps.yaml) \
             selects it in `podinfo`"
        )),
        "{skipped:?}"
    );
    // Near misses: a selector without a namespace, and a Kustomization applying another path.
    let (moved_anywhere, skipped) = moved("./app", "{kind: HelmRelease, name: podinfo}");
    assert!(moved_anywhere, "{skipped:?}");
    let (moved_elsewhere, skipped) = moved("./other", by_namespace);
    assert!(moved_elsewhere, "{skipped:?}");
}

#[test]
fn a_source_declared_once_per_cluster_moves_in_every_cluster() {
    // Each cluster's directory declares the same HelmRepository: the release of each refers
    // to "its" copy by the same identity, and every copy must move with the releases.
    let release = "\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: podinfo
spec:
  chart:
    spec:
      chart: podinfo
      sourceRef:
        kind: HelmRepository
        name: podinfo
        namespace: charts
";
    let repository = "\
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: podinfo
  namespace: charts
spec:
  url: https://charts.example.com
";
    let mut sources = Vec::new();
    for cluster in ["production", "staging"] {
        for (name, text) in [("release.yaml", release), ("repository.yaml", repository)] {
            sources.push(reported(&format!("clusters/{cluster}/{name}"), text));
        }
    }
    let outcome = fix(
        Inventory::from_sources(None, sources),
        &Policy::azure_default(),
        &unsafe_fixes(),
    )
    .unwrap();
    for cluster in ["production", "staging"] {
        for name in ["release.yaml", "repository.yaml"] {
            let path = format!("clusters/{cluster}/{name}");
            let (_, _, after) = outcome
                .changed
                .iter()
                .find(|(p, _, _)| *p == path)
                .unwrap_or_else(|| panic!("{path} unchanged: {:?}", outcome.skipped));
            assert_eq!(
                documents(after)[0]["metadata"]["namespace"],
                "cluster-config",
                "{path}"
            );
        }
    }
}

#[test]
fn aliases_of_a_moved_namespace_keep_the_old_value() {
    let outcome = fixed_case("anchors", &Policy::azure_default(), &unsafe_fixes());
    let docs = documents(&outcome.changed[0].2);
    assert_eq!(docs[0]["metadata"]["namespace"], "cluster-config");
    assert_eq!(docs[0]["spec"]["targetNamespace"], "default");
    assert_eq!(
        docs[0]["spec"]["postBuild"]["substitute"]["NAMESPACE"],
        "default"
    );
}

// ---------------------------------------------------------------------------------------------
// The corpus: copy each repository, fix it, and check that nothing broke.

#[test]
fn an_inventory_loaded_for_linting_is_refused() {
    let dir = workspace().join("testdata/seed/before");
    let error = fix(
        Inventory::load(std::slice::from_ref(&dir)),
        &Policy::azure_default(),
        &unsafe_fixes(),
    )
    .err()
    .expect("a lint inventory skips documents the fixer needs");
    assert!(error.contains("Inventory::load_for_fix"), "{error}");
    let outcome = fix(
        Inventory::load_for_fix(&[dir]),
        &Policy::azure_default(),
        &unsafe_fixes(),
    )
    .expect("complete inventory");
    assert!(!outcome.changed.is_empty());
}

/// `../shared/corpus` beside the repository, or `None` (and a note) where a clone has none.
fn corpus() -> Option<PathBuf> {
    let corpus = workspace().join("../shared/corpus");
    if corpus.is_dir() {
        return Some(corpus);
    }
    assert!(
        std::env::var_os("FLUXFENCE_REQUIRE_SHARED").is_none(),
        "../shared is required (FLUXFENCE_REQUIRE_SHARED) but {} is missing",
        corpus.display()
    );
    skipped("no ../shared");
    None
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn kubectl() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("KUBECTL").map(PathBuf::from),
        Some(workspace().join(".tools/bin/kubectl")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .or_else(|| {
            let found = Command::new("kubectl")
                .arg("version")
                .arg("--client")
                .output()
                .ok()?;
            found.status.success().then(|| PathBuf::from("kubectl"))
        })
}

/// Directories with a kustomization file whose build reads one of `changed`, following
/// `resources`/`bases`/`components` references to other directories.
fn affected_kustomizations(inventory: &Inventory, changed: &HashSet<PathBuf>) -> Vec<PathBuf> {
    let dirs: BTreeMap<PathBuf, Vec<PathBuf>> = inventory
        .kustomize_files
        .iter()
        .map(|k| {
            let refs = k
                .entries
                .iter()
                .filter_map(|e| fluxfence::kustomize::normalize(&k.dir, &e.value))
                .collect();
            (k.dir.clone(), refs)
        })
        .collect();
    let touches = |dir: &Path| {
        let mut stack = vec![dir.to_path_buf()];
        let mut seen = HashSet::new();
        while let Some(d) = stack.pop() {
            if !seen.insert(d.clone()) {
                continue;
            }
            if changed.iter().any(|c| c.starts_with(&d)) {
                return true;
            }
            stack.extend(
                dirs.get(&d)
                    .into_iter()
                    .flatten()
                    .filter(|r| dirs.contains_key(*r))
                    .cloned(),
            );
        }
        false
    };
    dirs.keys().filter(|d| touches(d)).cloned().collect()
}

/// `kubectl kustomize` of each directory: its documents, or `None` where the build fails.
fn builds(kubectl: &Path, dirs: &[PathBuf]) -> BTreeMap<PathBuf, Option<Vec<serde_json::Value>>> {
    let half = dirs.len().div_ceil(2).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = dirs
            .chunks(half)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|d| {
                            let built = Command::new(kubectl)
                                .arg("kustomize")
                                .arg(d)
                                .output()
                                .ok()
                                .filter(|o| o.status.success())
                                .and_then(|o| String::from_utf8(o.stdout).ok())
                                .map(|text| documents(&text));
                            (d.clone(), built)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

fn is_flux(doc: &serde_json::Value) -> bool {
    doc["apiVersion"]
        .as_str()
        .is_some_and(|v| v.contains(".toolkit.fluxcd.io/"))
}

/// `(kind, namespace, name)` of a built document.
fn identity_of(doc: &serde_json::Value) -> (String, String, String) {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    (
        text(&doc["kind"]),
        text(&doc["metadata"]["namespace"]),
        text(&doc["metadata"]["name"]),
    )
}

/// The objects a built Flux document references, read from kubectl's output by their field
/// names alone (not with the linter's code): `(field, kind, namespace, name)`.
fn built_references(doc: &serde_json::Value) -> Vec<(String, String, String, String)> {
    let own = identity_of(doc).1;
    let kind = doc["kind"].as_str().unwrap_or_default();
    let mut out = Vec::new();
    let mut add = |field: String, kind: &str, reference: &serde_json::Value| {
        if let Some(name) = reference["name"].as_str() {
            let namespace = reference["namespace"].as_str().unwrap_or(&own).to_owned();
            out.push((field, kind.to_owned(), namespace, name.to_owned()));
        }
    };
    let spec = &doc["spec"];
    for (field, reference) in [
        ("sourceRef", &spec["sourceRef"]),
        ("chart.spec.sourceRef", &spec["chart"]["spec"]["sourceRef"]),
        ("chartRef", &spec["chartRef"]),
    ] {
        if let Some(kind) = reference["kind"].as_str() {
            add(field.to_owned(), kind, reference);
        }
    }
    for (i, item) in spec["dependsOn"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        add(format!("dependsOn[{i}]"), kind, item);
    }
    for list in ["valuesFrom", "substituteFrom"] {
        let items = spec[list]
            .as_array()
            .or(spec["postBuild"][list].as_array())
            .into_iter()
            .flatten();
        for (i, item) in items.enumerate() {
            if let Some(kind) = item["kind"].as_str() {
                add(
                    format!("{list}[{i}]"),
                    kind,
                    &serde_json::json!({"name": item["name"]}),
                );
            }
        }
    }
    for (field, reference) in [
        ("secretRef", &spec["secretRef"]),
        ("kubeConfig.secretRef", &spec["kubeConfig"]["secretRef"]),
        ("decryption.secretRef", &spec["decryption"]["secretRef"]),
    ] {
        add(
            field.to_owned(),
            "Secret",
            &serde_json::json!({"name": reference["name"]}),
        );
    }
    out
}

/// A built document without what the fix means to change: the namespace move (namespace,
/// `targetNamespace`, `storageNamespace`, the pinned `releaseName`, the namespaces of
/// references), FF110's `serviceAccountName` and FF002's `apiVersion`.
fn without_intended_changes(doc: &serde_json::Value) -> serde_json::Value {
    let mut doc = doc.clone();
    let moves = is_flux(&doc) || matches!(doc["kind"].as_str(), Some("ConfigMap" | "Secret"));
    if !moves {
        // Nothing else is meant to change at all.
        return doc;
    }
    doc.as_object_mut().map(|d| d.remove("apiVersion"));
    doc["metadata"]
        .as_object_mut()
        .map(|m| m.remove("namespace"));
    if let Some(spec) = doc.get_mut("spec").and_then(|s| s.as_object_mut()) {
        for field in [
            "targetNamespace",
            "storageNamespace",
            "releaseName",
            "serviceAccountName",
        ] {
            spec.remove(field);
        }
    }
    fn strip_reference_namespaces(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                if map.contains_key("name") && map.contains_key("namespace") {
                    map.remove("namespace");
                }
                map.values_mut().for_each(strip_reference_namespaces);
            }
            serde_json::Value::Array(items) => {
                items.iter_mut().for_each(strip_reference_namespaces)
            }
            _ => {}
        }
    }
    if let Some(spec) = doc.get_mut("spec") {
        strip_reference_namespaces(spec);
    }
    doc
}

/// The lint findings of a tree, counted by rule.
fn finding_counts(root: &Path, policy: &Policy) -> BTreeMap<&'static str, usize> {
    let report = lint(Inventory::load_in_root(root, &[root.to_path_buf()]), policy);
    let mut counts = BTreeMap::new();
    for d in &report.diagnostics {
        *counts.entry(d.finding.code).or_default() += 1;
    }
    counts
}

/// The corpus root: `FLUXFENCE_SHARED` when set (a checkout elsewhere), else `../shared`.
fn shared_corpus() -> Option<PathBuf> {
    if let Some(shared) = std::env::var_os("FLUXFENCE_SHARED") {
        return Some(PathBuf::from(shared).join("corpus"));
    }
    corpus()
}

#[test]
fn every_corpus_repository_survives_fix() {
    let Some(corpus) = shared_corpus() else {
        return;
    };
    let kubectl = kubectl();
    if kubectl.is_none() {
        assert!(
            std::env::var_os("FLUXFENCE_REQUIRE_KUBECTL").is_none(),
            "kubectl is required but not found"
        );
        skipped("no kubectl (the kustomize builds)");
    }
    let policy = Policy::azure_default();
    let mut repos: Vec<PathBuf> = std::fs::read_dir(corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    repos.sort();
    assert_eq!(repos.len(), 13);
    let mut total_changed = 0;
    let mut total_moved = 0;
    for repo in repos {
        let name = repo.file_name().unwrap().to_string_lossy().to_string();
        let temp = tempfile::tempdir().unwrap();
        copy_tree(&repo, temp.path());
        let root = temp.path().to_path_buf();
        let before = Inventory::load_for_fix_in_root(&root, std::slice::from_ref(&root));
        assert!(before.errors.is_empty(), "{name}: {:?}", before.errors);
        let findings_before = finding_counts(&root, &policy);
        // (b) and (c), as the fixer checks them itself: it refuses to finish otherwise.
        let outcome =
            fix(before, &policy, &unsafe_fixes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let changed: HashSet<PathBuf> = outcome
            .changed
            .iter()
            .map(|(path, _, _)| Path::new(path).strip_prefix(&root).unwrap().to_path_buf())
            .collect();
        total_changed += changed.len();
        total_moved += outcome
            .changed
            .iter()
            .filter(|(_, _, after)| after.contains("cluster-config"))
            .count();

        let affected = affected_kustomizations(&outcome.inventory, &changed);
        let dirs: Vec<PathBuf> = affected.iter().map(|d| root.join(d)).collect();
        let built_before = kubectl.as_deref().map(|k| builds(k, &dirs));
        fluxfence::fix::write_all(&outcome.changed).unwrap();
        // (a) every file still parses; JSON as JSON.
        let reloaded = Inventory::load_in_root(&root, std::slice::from_ref(&root));
        assert!(
            reloaded.errors.is_empty(),
            "{name}: fixed files no longer parse: {:?}",
            reloaded.errors
        );
        for (path, _, after) in &outcome.changed {
            if path.ends_with(".json") {
                serde_json::from_str::<serde_json::Value>(after)
                    .unwrap_or_else(|e| panic!("{name}: {path}: {e}"));
            }
        }
        // (c) lint finds no more of any rule than before.
        let findings_after = finding_counts(&root, &policy);
        for (code, count) in &findings_after {
            let had = findings_before.get(code).copied().unwrap_or(0);
            assert!(
                *count <= had,
                "{name}: {code}: {had} findings before the fix, {count} after"
            );
        }
        // (d) a second fix is a no-op.
        let again = fix(
            Inventory::load_for_fix_in_root(&root, std::slice::from_ref(&root)),
            &policy,
            &unsafe_fixes(),
        )
        .unwrap();
        assert!(
            again.changed.is_empty(),
            "{name}: second fix changed {:?}",
            again.changed.iter().map(|c| &c.0).collect::<Vec<_>>()
        );
        let (Some(kubectl), Some(built_before)) = (kubectl.as_deref(), built_before) else {
            continue;
        };
        let built_after = builds(kubectl, &dirs);
        // Everything any build gives, before and after: where references may point.
        let everything = |built: &BTreeMap<PathBuf, Option<Vec<serde_json::Value>>>| {
            built
                .values()
                .flatten()
                .flatten()
                .map(identity_of)
                .collect::<HashSet<_>>()
        };
        let (existed, exists) = (everything(&built_before), everything(&built_after));
        for (dir, before) in &built_before {
            let Some(before) = before else { continue };
            // (e) what built before still builds, and differs only where the move means it to.
            let after = built_after[dir]
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: {} built before fix, not after", dir.display()));
            let stripped = |docs: &[serde_json::Value]| {
                let mut docs: Vec<String> = docs
                    .iter()
                    .map(|d| without_intended_changes(d).to_string())
                    .collect();
                docs.sort();
                docs
            };
            assert_eq!(
                stripped(before),
                stripped(after),
                "{name}: {}",
                dir.display()
            );
            // (b) independently: every reference of a built Flux object that named an
            // existing object still does.
            let refs_of = |docs: &[serde_json::Value]| {
                docs.iter()
                    .filter(|d| is_flux(d))
                    .map(|d| {
                        let (kind, _, object) = identity_of(d);
                        ((kind, object), built_references(d))
                    })
                    .collect::<BTreeMap<_, _>>()
            };
            let (refs_before, refs_after) = (refs_of(before), refs_of(after));
            for (object, references) in &refs_after {
                for (i, (field, kind, namespace, target)) in references.iter().enumerate() {
                    let resolved_before =
                        refs_before.get(object).and_then(|r| r.get(i)).is_some_and(
                            |(_, k, ns, n)| existed.contains(&(k.clone(), ns.clone(), n.clone())),
                        );
                    let resolves =
                        exists.contains(&(kind.clone(), namespace.clone(), target.clone()));
                    assert!(
                        resolves || !resolved_before,
                        "{name}: {}: {object:?} {field} names {kind} {namespace}/{target}, \
                         which no build gives after the fix",
                        dir.display()
                    );
                }
            }
        }
    }
    // The corpus is full of the pattern the document describes: the fix must find work.
    eprintln!(
        "every_corpus_repository_survives_fix: {total_changed} files changed, {total_moved} of \
         them by a move"
    );
    assert!(total_changed > 500, "only {total_changed} files changed");
    assert!(total_moved > 0, "nothing moved");
}

/// Says on the terminal that the running test skipped (part of) its work and why: written past
/// the test harness's capture, so that `cargo test` shows what a machine could not check.
fn skipped(reason: &str) {
    use std::io::Write as _;
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    // One write, so that the notes of tests running at once do not interleave.
    let line = format!("{test}: skipped: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

// ---------------------------------------------------------------------------------------------
// The move plan: a group moves whole or stays, and never leaves a reference Flux cannot resolve.

/// Fixes an in-memory repository with the unsafe fixes and the default policy.
fn fixed(sources: Vec<Source>) -> fluxfence::fix::FixOutcome {
    fix(
        Inventory::from_sources(None, sources),
        &Policy::azure_default(),
        &unsafe_fixes(),
    )
    .unwrap()
}

/// The documents of `path` after the fix (as they were when unchanged).
fn after(outcome: &fluxfence::fix::FixOutcome, path: &str) -> Vec<serde_json::Value> {
    let file = outcome
        .inventory
        .files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no {path}"));
    documents(&file.text)
}

fn helm_release(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: {name}\n  \
         namespace: {namespace}\nspec:\n  chart:\n    spec:\n      chart: {name}\n      \
         sourceRef:\n        kind: HelmRepository\n        name: charts\n{spec}"
    )
}

fn helm_repository(namespace: &str, extra: &str) -> String {
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: charts\n  \
         namespace: {namespace}\nspec:\n  url: https://charts.example.com\n{extra}"
    )
}

fn config_object(kind: &str, namespace: &str, name: &str) -> String {
    format!("apiVersion: v1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {namespace}\n")
}

#[test]
fn a_group_moves_with_the_config_maps_and_secrets_it_reads() {
    let outcome = fixed(vec![
        reported(
            "release.yaml",
            helm_release(
                "apps",
                "web",
                "  valuesFrom:\n    - kind: ConfigMap\n      name: web-values\n    - kind: Secret\n      \
                 name: web-extra\n      optional: true\n",
            ),
        ),
        reported(
            "repository.yaml",
            helm_repository("apps", "  secretRef:\n    name: charts-auth\n"),
        ),
        reported(
            "values.yaml",
            config_object("ConfigMap", "apps", "web-values"),
        ),
        reported("auth.yaml", config_object("Secret", "apps", "charts-auth")),
    ]);
    assert!(outcome.skipped.is_empty(), "{:?}", outcome.skipped);
    for path in [
        "release.yaml",
        "repository.yaml",
        "values.yaml",
        "auth.yaml",
    ] {
        assert_eq!(
            after(&outcome, path)[0]["metadata"]["namespace"],
            "cluster-config",
            "{path}"
        );
    }
    assert_eq!(
        after(&outcome, "release.yaml")[0]["spec"]["targetNamespace"],
        "apps"
    );
}

#[test]
fn a_group_that_reads_a_secret_the_repository_lacks_stays() {
    let outcome = fixed(vec![
        reported(
            "release.yaml",
            helm_release(
                "apps",
                "web",
                "  valuesFrom:\n    - kind: Secret\n      name: web-values\n",
            ),
        ),
        reported("repository.yaml", helm_repository("apps", "")),
    ]);
    assert_eq!(
        outcome.skipped,
        [
            "release.yaml: HelmRelease apps/web: not moved: it reads (spec.valuesFrom.0) Secret \
             apps/web-values, which is not in the repository; fix moves nothing whose references \
             it cannot check",
            "repository.yaml: HelmRepository apps/charts: not moved with HelmRelease apps/web \
             (release.yaml): it reads (spec.valuesFrom.0) Secret apps/web-values, which is not in \
             the repository; fix moves nothing whose references it cannot check"
        ]
    );
    assert_eq!(
        after(&outcome, "release.yaml")[0]["metadata"]["namespace"],
        "apps"
    );
    assert_eq!(
        after(&outcome, "repository.yaml")[0]["metadata"]["namespace"],
        "apps"
    );
}

#[test]
fn a_kustomization_whose_source_is_not_in_the_repository_stays() {
    // flux2-hub-spoke-example: the bootstrap source is created by `flux bootstrap`, not
    // committed; retargeting to `cluster-config/flux-system` would point at nothing, and the
    // kubeConfig Secret would be looked up in `cluster-config`.
    let kustomization = "\
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: spoke
  namespace: spokes
spec:
  path: ./deploy
  sourceRef:
    kind: GitRepository
    name: flux-system
    namespace: flux-system
  kubeConfig:
    secretRef:
      name: spoke-kubeconfig
";
    let outcome = fixed(vec![reported("spoke.yaml", kustomization)]);
    assert_eq!(
        outcome.skipped,
        [
            "spoke.yaml: Kustomization spokes/spoke: not moved: it reads (spec.sourceRef) \
             GitRepository flux-system/flux-system, which is not in the repository; fix moves \
             nothing whose references it cannot check"
        ]
    );
    let docs = after(&outcome, "spoke.yaml");
    assert_eq!(docs[0]["metadata"]["namespace"], "spokes");
    assert_eq!(docs[0]["spec"]["sourceRef"]["namespace"], "flux-system");
}

#[test]
fn nothing_moves_out_of_an_exempt_namespace() {
    // The bootstrap sync of gotk-sync.yaml, and an app that reads its source.
    let sync = "\
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: flux-system
  namespace: flux-system
spec:
  url: ssh://git@example.com/fleet
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: flux-system
  namespace: flux-system
spec:
  path: ./clusters/production
  sourceRef:
    kind: GitRepository
    name: flux-system
";
    let app = "\
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: podinfo
  namespace: podinfo
spec:
  path: ./apps/podinfo
  sourceRef:
    kind: GitRepository
    name: flux-system
    namespace: flux-system
";
    let outcome = fixed(vec![
        reported("clusters/production/flux-system/gotk-sync.yaml", sync),
        reported("clusters/production/podinfo.yaml", app),
    ]);
    assert_eq!(
        outcome.skipped,
        [
            "clusters/production/podinfo.yaml: Kustomization podinfo/podinfo: not moved: it \
             reads (spec.sourceRef) GitRepository flux-system/flux-system \
             (clusters/production/flux-system/gotk-sync.yaml), in the exempt namespace \
             `flux-system`, which fix moves nothing out of; move them together by hand, or make \
             `flux-system` not exempt"
        ]
    );
    let sync = after(&outcome, "clusters/production/flux-system/gotk-sync.yaml");
    assert_eq!(sync[0]["metadata"]["namespace"], "flux-system");
    assert_eq!(sync[1]["metadata"]["namespace"], "flux-system");
    assert_eq!(
        after(&outcome, "clusters/production/podinfo.yaml")[0]["metadata"]["namespace"],
        "podinfo"
    );
}

#[test]
fn a_source_that_an_object_staying_behind_reads_does_not_move() {
    // The HelmRepository would move with `apps/web`, but `apps/dashboard`, in a file outside
    // the fix, reads it in its own namespace: it would be left with a reference to nothing.
    let context = Source {
        reported: false,
        ..reported(
            "other/dashboard.yaml",
            helm_release("apps", "dashboard", ""),
        )
    };
    let outcome = fixed(vec![
        reported("web.yaml", helm_release("apps", "web", "")),
        reported("repository.yaml", helm_repository("apps", "")),
        context,
    ]);
    assert!(
        outcome
            .changed
            .iter()
            .all(|(_, _, after)| !after.contains("cluster-config"))
    );
    assert!(
        outcome.skipped.contains(
            &"web.yaml: HelmRelease apps/web: not moved with HelmRepository apps/charts \
              (repository.yaml): HelmRelease apps/dashboard (other/dashboard.yaml) reads \
              (spec.chart.spec.sourceRef) it, and is not among the files to fix"
                .to_owned()
        ),
        "{:#?}",
        outcome.skipped
    );
}

#[test]
fn a_reference_that_crossed_namespaces_already_follows_the_move() {
    // `flux-system/dashboard` stays (exempt) and reads the chart across namespaces, which
    // Flux refuses already: pointed at where the chart moves, it is no worse, and the move of
    // `apps/web` goes on.
    let outcome = fixed(vec![
        reported("web.yaml", helm_release("apps", "web", "")),
        reported("repository.yaml", helm_repository("apps", "")),
        reported(
            "dashboard.yaml",
            helm_release("flux-system", "dashboard", "")
                .replace("name: charts", "name: charts\n        namespace: apps"),
        ),
    ]);
    assert!(outcome.skipped.is_empty(), "{:#?}", outcome.skipped);
    assert_eq!(
        after(&outcome, "repository.yaml")[0]["metadata"]["namespace"],
        "cluster-config"
    );
    let dashboard = after(&outcome, "dashboard.yaml");
    assert_eq!(dashboard[0]["metadata"]["namespace"], "flux-system");
    assert_eq!(
        dashboard[0]["spec"]["chart"]["spec"]["sourceRef"]["namespace"],
        "cluster-config"
    );
}

#[test]
fn depends_on_is_never_pointed_at_an_object_that_stays() {
    // buroa: `web` depends on `db`; `db` cannot move (its values Secret is not in the
    // repository), so `web`, which moves with what it depends on, stays as well, and no
    // `dependsOn` is rewritten.
    let web = helm_release("apps", "web", "  dependsOn:\n    - name: db\n");
    let db = helm_release(
        "apps",
        "db",
        "  valuesFrom:\n    - kind: Secret\n      name: db-values\n",
    );
    let outcome = fixed(vec![
        reported("web.yaml", web.clone()),
        reported("db.yaml", db),
        reported("repository.yaml", helm_repository("apps", "")),
    ]);
    assert!(
        outcome
            .changed
            .iter()
            .all(|(_, _, after)| !after.contains("cluster-config"))
    );
    assert!(
        outcome.skipped.contains(
            &"web.yaml: HelmRelease apps/web: not moved with HelmRelease apps/db (db.yaml): it \
              reads (spec.valuesFrom.0) Secret apps/db-values, which is not in the repository; \
              fix moves nothing whose references it cannot check"
                .to_owned()
        ),
        "{:#?}",
        outcome.skipped
    );
    // Near miss: a dependsOn that names the namespace of an object that stays resolves
    // wherever `web` is: `web` moves, the entry is left as it is.
    let infra = helm_release("infra", "db", "")
        .replace("name: charts", "name: charts\n        namespace: infra");
    let outcome = fixed(vec![
        reported(
            "web.yaml",
            web.replace("- name: db\n", "- name: db\n      namespace: infra\n"),
        ),
        reported("repository.yaml", helm_repository("apps", "")),
        reported("db.yaml", infra),
        reported("infra-repository.yaml", helm_repository("infra", "")),
        reported(
            "infra-sa.yaml",
            config_object("ServiceAccount", "infra", "flux-applier"),
        ),
    ]);
    let web = after(&outcome, "web.yaml");
    assert_eq!(
        web[0]["metadata"]["namespace"], "cluster-config",
        "{:?}",
        outcome.skipped
    );
    assert_eq!(web[0]["spec"]["dependsOn"][0]["namespace"], "infra");
    assert_eq!(
        after(&outcome, "db.yaml")[0]["metadata"]["namespace"],
        "infra"
    );
}

#[test]
fn depends_on_that_names_a_moved_object_follows_it() {
    // `infra/db` reads a chart in its own namespace and lacks the service account (FF111):
    // it moves; `flux-system/web` stays (exempt) and its dependsOn follows `db`.
    let outcome = fixed(vec![
        reported("db.yaml", helm_release("infra", "db", "")),
        reported("repository.yaml", helm_repository("infra", "")),
        reported(
            "web.yaml",
            helm_release(
                "flux-system",
                "web",
                "  dependsOn:\n    - name: db\n      namespace: infra\n",
            )
            .replace(
                "name: charts",
                "name: charts\n        namespace: flux-system",
            ),
        ),
        reported("web-repository.yaml", helm_repository("flux-system", "")),
    ]);
    assert_eq!(
        after(&outcome, "db.yaml")[0]["metadata"]["namespace"],
        "cluster-config"
    );
    let web = after(&outcome, "web.yaml");
    assert_eq!(web[0]["metadata"]["namespace"], "flux-system");
    assert_eq!(
        web[0]["spec"]["dependsOn"][0]["namespace"],
        "cluster-config"
    );
}

#[test]
fn a_document_that_cannot_be_edited_is_skipped_and_the_rest_is_fixed() {
    let broken = "\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: broken
  namespace: team
spec:
";
    let outcome = fixed(vec![
        reported("broken.yaml", broken),
        reported("web.yaml", helm_release("apps", "web", "")),
        reported("repository.yaml", helm_repository("apps", "")),
    ]);
    assert_eq!(
        after(&outcome, "web.yaml")[0]["metadata"]["namespace"],
        "cluster-config"
    );
    assert!(outcome.changed.iter().all(|(p, _, _)| p != "broken.yaml"));
    assert!(
        outcome.skipped.iter().any(|s| s
            .starts_with("broken.yaml: HelmRelease team/broken: not fixed: `spec.")
            && s.contains("cannot be written there")),
        "{:#?}",
        outcome.skipped
    );
}

#[test]
fn json_files_are_edited_as_json() {
    let release = r#"{
    "apiVersion": "helm.toolkit.fluxcd.io/v2",
    "kind": "HelmRelease",
    "metadata": {
        "name": "web",
        "namespace": "apps"
    },
    "spec": {
        "chart": {
            "spec": {
                "chart": "web",
                "sourceRef": {"kind": "HelmRepository", "name": "charts"}
            }
        }
    }
}
"#;
    let outcome = fixed(vec![
        reported("release.json", release),
        reported("repository.yaml", helm_repository("apps", "")),
    ]);
    let (_, before, fixed) = outcome
        .changed
        .iter()
        .find(|(p, _, _)| p == "release.json")
        .expect("release.json changed");
    let parsed: serde_json::Value =
        serde_json::from_str(fixed).unwrap_or_else(|e| panic!("{e}: {fixed}"));
    assert_eq!(parsed["metadata"]["namespace"], "cluster-config");
    assert_eq!(parsed["spec"]["targetNamespace"], "apps");
    assert_eq!(parsed["spec"]["serviceAccountName"], "flux-applier");
    insta::assert_snapshot!("fix_diff_json", unified_diff("release.json", before, fixed));
}

#[test]
fn an_empty_json_object_takes_its_first_member_in_json() {
    let text = r#"{"kind": "HelmRelease", "spec": {}}"#;
    let mut roots = Vec::new();
    fluxfence::yaml::load_documents(text, |d| roots.push(d.root)).unwrap();
    let op = fluxfence::diagnostic::FixOp::Set {
        pointer: "/spec/install/crds".into(),
        value: "Create".into(),
    };
    let doc = fluxfence::yaml::Span::new(0, text.len());
    let mut edits = fluxfence::fix::lower(text, doc, &roots[0], &op).unwrap();
    let out = fluxfence::fix::splice(text, &mut edits).unwrap();
    assert_eq!(
        out,
        r#"{"kind": "HelmRelease", "spec": {"install": {"crds": "Create"}}}"#
    );
    serde_json::from_str::<serde_json::Value>(&out).unwrap();
}

#[test]
#[cfg(unix)]
fn writes_are_all_or_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let first = temp.path().join("first.yaml");
    std::fs::write(&first, "before\n").unwrap();
    // The second file's directory does not exist: its temporary file cannot be made.
    let second = temp.path().join("gone/second.yaml");
    let changes = vec![
        (
            first.display().to_string(),
            "before\n".to_owned(),
            "after\n".to_owned(),
        ),
        (
            second.display().to_string(),
            "x\n".to_owned(),
            "y\n".to_owned(),
        ),
    ];
    let error = fluxfence::fix::write_all(&changes).unwrap_err();
    assert!(
        error.contains("gone/second.yaml") && error.contains("no file was changed"),
        "{error}"
    );
    assert_eq!(std::fs::read_to_string(&first).unwrap(), "before\n");
    let left: Vec<_> = std::fs::read_dir(temp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["first.yaml"]);
    // And when every file can be written, every file is; a symbolic link stays one.
    let link = temp.path().join("link.yaml");
    std::os::unix::fs::symlink(&first, &link).unwrap();
    let changes = [(
        link.display().to_string(),
        "before\n".to_owned(),
        "after\n".to_owned(),
    )];
    fluxfence::fix::write_all(&changes).unwrap();
    assert_eq!(std::fs::read_to_string(&first).unwrap(), "after\n");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn the_postcondition_refuses_a_broken_reference_and_a_new_finding() {
    let release = helm_release("apps", "web", "  serviceAccountName: flux-applier\n");
    let repository = helm_repository("apps", "");
    let before = vec![
        reported("release.yaml", release.clone()),
        reported("repository.yaml", repository.clone()),
    ];
    let policy = Policy::azure_default();
    // The source moved without its reader.
    let moved_source = vec![
        reported("release.yaml", release.clone()),
        reported(
            "repository.yaml",
            repository.replace("namespace: apps", "namespace: elsewhere"),
        ),
    ];
    let error = fluxfence::fix::check_postcondition(None, before.clone(), moved_source, &policy)
        .unwrap_err();
    assert!(
        error.contains(
            "HelmRelease apps/web (release.yaml) spec.chart.spec.sourceRef names HelmRepository \
             apps/charts, which does not exist"
        ),
        "{error}"
    );
    // A reference made cross-namespace: it still resolves, but FF101 is new.
    let cross = vec![
        reported(
            "release.yaml",
            release.replace("name: charts", "name: charts\n        namespace: elsewhere"),
        ),
        reported("repository.yaml", repository.clone()),
        reported("other.yaml", helm_repository("elsewhere", "")),
    ];
    let error =
        fluxfence::fix::check_postcondition(None, before.clone(), cross, &policy).unwrap_err();
    assert!(
        error.contains("would add a finding") && error.contains("FF101"),
        "{error}"
    );
    // The input itself passes.
    fluxfence::fix::check_postcondition(None, before.clone(), before, &policy).unwrap();
}

#[test]
fn a_kustomization_moves_with_the_secrets_and_config_maps_it_reads() {
    let kustomization = "\
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: apps
  namespace: team
spec:
  path: ./deploy
  sourceRef:
    kind: GitRepository
    name: team
  decryption:
    provider: sops
    secretRef:
      name: sops-age
  postBuild:
    substituteFrom:
      - kind: ConfigMap
        name: cluster-settings
      - kind: Secret
        name: cluster-secrets
";
    let source = "\
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: team
  namespace: team
spec:
  url: https://example.com/team.git
  secretRef:
    name: git-auth
";
    let mut sources = vec![
        reported("apps.yaml", kustomization),
        reported("source.yaml", source),
    ];
    let needed = [
        ("Secret", "sops-age"),
        ("ConfigMap", "cluster-settings"),
        ("Secret", "cluster-secrets"),
        ("Secret", "git-auth"),
    ];
    for (kind, name) in needed {
        sources.push(reported(
            &format!("{name}.yaml"),
            config_object(kind, "team", name),
        ));
    }
    let outcome = fixed(sources.clone());
    assert!(outcome.skipped.is_empty(), "{:#?}", outcome.skipped);
    for path in ["apps.yaml", "source.yaml"]
        .into_iter()
        .map(str::to_owned)
        .chain(needed.iter().map(|(_, name)| format!("{name}.yaml")))
    {
        assert_eq!(
            after(&outcome, &path)[0]["metadata"]["namespace"],
            "cluster-config",
            "{path}"
        );
    }
    // Without the decryption Secret in the repository, nothing moves, and the reason says which.
    sources.retain(|s| s.path != "sops-age.yaml");
    let outcome = fixed(sources);
    assert!(
        outcome
            .changed
            .iter()
            .all(|(_, _, after)| !after.contains("cluster-config"))
    );
    assert!(
        outcome.skipped.iter().any(|s| s.starts_with("apps.yaml: Kustomization team/apps: ")
            && s.contains("(spec.decryption.secretRef) Secret team/sops-age, which is not in the repository")),
        "{:#?}",
        outcome.skipped
    );
}

#[test]
fn a_namespace_the_kustomization_does_not_apply_does_not_hold_its_namespace_field() {
    // `namespace.yaml` lies beside the kustomization but is not among its resources: the
    // kustomization's `namespace:` does not rename it, so it may change.
    let outcome = fixed(vec![
        reported(
            "apps/web/kustomization.yaml",
            "namespace: web\nresources: [release.yaml, repository.yaml]\n",
        ),
        reported(
            "apps/web/namespace.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n",
        ),
        reported(
            "apps/web/release.yaml",
            helm_release("web", "web", "").replace("  namespace: web\n", ""),
        ),
        reported(
            "apps/web/repository.yaml",
            helm_repository("web", "").replace("  namespace: web\n", ""),
        ),
    ]);
    assert!(outcome.skipped.is_empty(), "{:#?}", outcome.skipped);
    let kustomization = after(&outcome, "apps/web/kustomization.yaml");
    assert_eq!(kustomization[0]["namespace"], "cluster-config");
    assert!(
        outcome
            .changed
            .iter()
            .all(|(p, _, _)| p != "apps/web/namespace.yaml")
    );
}

#[test]
fn a_sops_encrypted_secret_is_not_edited() {
    // SOPS's MAC covers the clear values too: a new metadata.namespace would fail decryption.
    let secret = "\
apiVersion: v1
kind: Secret
metadata:
  name: charts-auth
  namespace: apps
stringData:
  password: ENC[AES256_GCM,data:c2VjcmV0,type:str]
sops:
  mac: ENC[AES256_GCM,data:bWFj,type:str]
  version: 3.8.1
";
    let outcome = fixed(vec![
        reported("web.yaml", helm_release("apps", "web", "")),
        reported(
            "repository.yaml",
            helm_repository("apps", "  secretRef:\n    name: charts-auth\n"),
        ),
        reported("auth.sops.yaml", secret),
    ]);
    assert!(
        outcome
            .changed
            .iter()
            .all(|(_, _, after)| !after.contains("cluster-config"))
    );
    assert!(
        outcome
            .skipped
            .iter()
            .any(|s| s.starts_with("web.yaml: HelmRelease apps/web: ")
                && s.contains("Secret apps/charts-auth (auth.sops.yaml)")
                && s.contains("it is SOPS-encrypted")),
        "{:#?}",
        outcome.skipped
    );
}

#[test]
fn an_edit_the_text_cannot_take_holds_its_object_back_and_the_rest_applies() {
    // `spec: []` cannot take the move's `spec.releaseName`: said and skipped, and the run goes
    // on instead of aborting.
    let manifest = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  \
                    name: list-spec\nspec: []\n---\napiVersion: helm.toolkit.fluxcd.io/v2\n\
                    kind: HelmRelease\nmetadata:\n  name: web\nspec:\n  chart:\n    spec:\n      \
                    chart: web\n      sourceRef:\n        kind: HelmRepository\n        \
                    name: charts\n---\napiVersion: source.toolkit.fluxcd.io/v1\n\
                    kind: HelmRepository\nmetadata:\n  name: charts\nspec:\n  \
                    url: https://charts.example.com\n";
    let kustomization = "namespace: team-a\nresources:\n  - manifest.yaml\n";
    let inventory = Inventory::from_sources(
        None,
        vec![
            reported("apps/manifest.yaml", manifest),
            reported("apps/kustomization.yaml", kustomization),
        ],
    );
    let outcome = fix(inventory, &Policy::azure_default(), &unsafe_fixes()).unwrap();
    let skipped = outcome.skipped.join("\n");
    assert!(
        skipped.contains("HelmRelease team-a/list-spec") && skipped.contains("cannot be written"),
        "{skipped}"
    );
    // The release that would move with it (one kustomization's `namespace:` places both) is
    // not moved alone: half a move would leave `web` reading its source across namespaces.
    let moved = outcome
        .changed
        .iter()
        .any(|(_, _, after)| after.contains("cluster-config"));
    assert!(!moved, "{:#?}", outcome.changed);
}

#[test]
fn edits_that_need_the_same_missing_mapping_create_it_once() {
    // No `spec` at all (a misspelt key): the move's `spec.releaseName`, `targetNamespace`
    // and `storageNamespace` and FF110's `spec.serviceAccountName` all need it. Written
    // together they made four `spec:` keys, which no YAML loader accepts.
    let text = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  \
                name: podinfo\n  namespace: team-a\nsp~ec:\n  interval: 10m\n";
    let outcome = fix(
        single_file("release.yaml", text.into()),
        &Policy::azure_default(),
        &unsafe_fixes(),
    )
    .unwrap();
    let fixed = &outcome.changed[0].2;
    assert_eq!(fixed.matches("spec:").count(), 1, "{fixed}");
    let docs = documents(fixed);
    assert_eq!(docs[0]["metadata"]["namespace"], "cluster-config");
    assert_eq!(
        docs[0]["spec"],
        serde_json::json!({
            "releaseName": "podinfo",
            "targetNamespace": "team-a",
            "storageNamespace": "team-a",
            "serviceAccountName": "flux-applier",
        }),
        "{fixed}"
    );
    assert_eq!(docs[0]["sp~ec"]["interval"], "10m", "the rest is kept");
}

#[test]
fn aliases_pinned_to_the_old_value_are_aliases_of_the_tree_not_text_in_comments() {
    let text = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  \
                name: web\n  namespace: &ns team-a\nspec:\n  releaseName: web\n  \
                targetNamespace: *ns\n  # storageNamespace: *ns\n  values:\n    \
                note: \"see *ns\"\n  chart:\n    spec:\n      chart: web\n      sourceRef:\n        \
                kind: HelmRepository\n        name: charts\n---\n\
                apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  \
                name: charts\n  namespace: team-a\nspec:\n  url: https://charts.example.com\n";
    let outcome = fix(
        single_file("release.yaml", text.into()),
        &Policy::azure_default(),
        &unsafe_fixes(),
    )
    .unwrap();
    let fixed = &outcome.changed[0].2;
    assert!(fixed.contains("  targetNamespace: team-a\n"), "{fixed}");
    assert!(fixed.contains("  # storageNamespace: *ns\n"), "{fixed}");
    assert!(fixed.contains("note: \"see *ns\"\n"), "{fixed}");
    let docs = documents(fixed);
    assert_eq!(docs[0]["metadata"]["namespace"], "cluster-config");
}

/// A repository that ships an older Flux's Kustomization CRD: it serves `v1beta2` only, and
/// its schema has no `serviceAccountName` (a field of later versions).
const OLD_KUSTOMIZATION_CRD: &str = "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: kustomizations.kustomize.toolkit.fluxcd.io
spec:
  group: kustomize.toolkit.fluxcd.io
  names: {kind: Kustomization, plural: kustomizations}
  scope: Namespaced
  versions:
    - name: v1beta2
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            metadata: {type: object}
            spec:
              type: object
              properties:
                interval: {type: string}
                path: {type: string}
                prune: {type: boolean}
                sourceRef:
                  type: object
                  properties:
                    kind: {type: string}
                    name: {type: string}
";

const OLD_KUSTOMIZATION: &str = "\
apiVersion: kustomize.toolkit.fluxcd.io/v1beta2
kind: Kustomization
metadata:
  name: apps
  namespace: cluster-config
spec:
  interval: 10m
  path: ./apps
  prune: true
  sourceRef:
    kind: GitRepository
    name: fleet
";

#[test]
fn a_fix_the_repositorys_own_crds_would_refuse_is_left_out_with_the_reason() {
    let policy = Policy::azure_default();
    let with_crd = Inventory::from_sources(
        None,
        vec![
            reported("crds.yaml", OLD_KUSTOMIZATION_CRD),
            reported("apps.yaml", OLD_KUSTOMIZATION),
        ],
    );
    let outcome = fix(with_crd, &policy, &unsafe_fixes()).unwrap_or_else(|e| panic!("{e}"));
    // Neither the v1 upgrade (not served) nor the default service account (no such field)
    // would be accepted while these CRDs are applied: nothing is written.
    assert!(outcome.changed.is_empty(), "{}", diff_of(&outcome));
    let refused: Vec<&String> = outcome
        .skipped
        .iter()
        .filter(|s| {
            s.starts_with("apps.yaml: ") && s.contains("the repository's CRDs would refuse it")
        })
        .collect();
    assert!(
        refused.iter().any(|s| s.contains("serviceAccountName")),
        "{:#?}",
        outcome.skipped
    );

    // Without the old CRDs in the repository, the same object gets both fixes.
    let alone = single_file("apps.yaml", OLD_KUSTOMIZATION.to_owned());
    let outcome = fix(alone, &policy, &unsafe_fixes()).unwrap_or_else(|e| panic!("{e}"));
    let (_, _, after) = &outcome.changed[0];
    assert!(
        after.contains("serviceAccountName: flux-applier"),
        "{after}"
    );
    assert!(
        after.contains("kustomize.toolkit.fluxcd.io/v1\n"),
        "{after}"
    );
}

#[test]
fn a_key_goes_beside_explicit_keys_not_into_them() {
    let text = "\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: web
  namespace: cluster-config
spec:
  ? chart
  : spec: {chart: web, sourceRef: {kind: HelmRepository, name: charts}}
";
    let policy = Policy::azure_default();
    let outcome = fix(
        single_file("web.yaml", text.to_owned()),
        &policy,
        &unsafe_fixes(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (_, _, after) = &outcome.changed[0];
    assert!(
        after.contains("spec:\n  serviceAccountName: flux-applier\n  ? chart\n"),
        "{after}"
    );
    let again = fix(
        single_file("web.yaml", after.clone()),
        &policy,
        &unsafe_fixes(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(again.changed.is_empty(), "{}", diff_of(&again));
}

#[test]
fn a_key_goes_inside_a_tagged_flow_mapping() {
    let text = "\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: web
  namespace: cluster-config
spec: !!map {chart: {spec: {chart: web, sourceRef: {kind: HelmRepository, name: charts}}}}
";
    let policy = Policy::azure_default();
    let outcome = fix(
        single_file("web.yaml", text.to_owned()),
        &policy,
        &unsafe_fixes(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (_, _, after) = &outcome.changed[0];
    assert!(
        after.contains("spec: !!map {serviceAccountName: flux-applier, chart: "),
        "{after}"
    );
}

#[test]
fn a_document_with_bare_carriage_returns_is_left_alone_with_the_reason() {
    // YAML ends a line at a lone `\r` too.
    let text = "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  \
                name: apps\n  namespace: cluster-config\nspec:\r  interval: 10m\n  path: ./apps\n";
    let policy = Policy::azure_default();
    let outcome = fix(
        single_file("apps.yaml", text.to_owned()),
        &policy,
        &unsafe_fixes(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(outcome.changed.is_empty(), "{}", diff_of(&outcome));
    assert!(
        outcome
            .skipped
            .iter()
            .any(|s| s.contains("spec.serviceAccountName") && s.contains("carriage return")),
        "{:#?}",
        outcome.skipped
    );
}
