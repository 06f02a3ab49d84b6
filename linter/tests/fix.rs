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
    let policy = Policy::parse("rules:\n  FF110: off\n  FF002: off\n", "p.yaml").unwrap();
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
fn the_seed_is_also_migrated_to_the_served_api_versions() {
    let before =
        std::fs::read_to_string(workspace().join("testdata/seed/before/nginx.yaml")).unwrap();
    let inventory = single_file("nginx.yaml", before);
    let outcome = fix(inventory, &Policy::azure_default(), &unsafe_fixes()).unwrap();
    let docs = documents(&outcome.changed[0].2);
    assert_eq!(docs[0]["apiVersion"], "helm.toolkit.fluxcd.io/v2");
    assert_eq!(docs[1]["apiVersion"], "source.toolkit.fluxcd.io/v1");
    assert_eq!(docs[0]["spec"]["serviceAccountName"], "flux-applier");
    let report = lint(outcome.inventory, &Policy::azure_default());
    assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
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
    assert_eq!(outcome.skipped.len(), 1, "{:?}", outcome.skipped);
    assert!(
        outcome.skipped[0].contains("which also applies Namespace web"),
        "{}",
        outcome.skipped[0]
    );
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
    assert_eq!(outcome.skipped.len(), held.len(), "{:#?}", outcome.skipped);
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
        namespace: flux-system
";
    let repository = "\
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: podinfo
  namespace: flux-system
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

fn builds(kubectl: &Path, dirs: &[PathBuf]) -> BTreeMap<PathBuf, bool> {
    let half = dirs.len().div_ceil(2).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = dirs
            .chunks(half)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|d| {
                            let ok = Command::new(kubectl)
                                .arg("kustomize")
                                .arg(d)
                                .output()
                                .is_ok_and(|o| o.status.success());
                            (d.clone(), ok)
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

#[test]
fn every_corpus_repository_survives_fix() {
    let Some(corpus) = corpus() else { return };
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
    for repo in repos {
        let name = repo.file_name().unwrap().to_string_lossy().to_string();
        let temp = tempfile::tempdir().unwrap();
        copy_tree(&repo, temp.path());
        let root = temp.path().to_path_buf();
        let before = Inventory::load_for_fix_in_root(&root, std::slice::from_ref(&root));
        assert!(before.errors.is_empty(), "{name}: {:?}", before.errors);
        let outcome =
            fix(before, &policy, &unsafe_fixes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let changed: HashSet<PathBuf> = outcome
            .changed
            .iter()
            .map(|(path, _, _)| Path::new(path).strip_prefix(&root).unwrap().to_path_buf())
            .collect();
        total_changed += changed.len();

        // (d) kustomize builds the affected directories before and after.
        let affected = affected_kustomizations(&outcome.inventory, &changed);
        let built_before = kubectl.as_deref().map(|k| {
            builds(
                k,
                &affected.iter().map(|d| root.join(d)).collect::<Vec<_>>(),
            )
        });
        for (path, _, after) in &outcome.changed {
            std::fs::write(path, after).unwrap();
        }
        // (a) every changed file still parses.
        let reloaded = Inventory::load_in_root(&root, std::slice::from_ref(&root));
        assert!(
            reloaded.errors.is_empty(),
            "{name}: fixed files no longer parse: {:?}",
            reloaded.errors
        );
        // (b) no fixable tenancy violation is left.
        let report = lint(reloaded, &policy);
        let fixable: Vec<_> = report
            .diagnostics
            .iter()
            .filter(|d| d.finding.fix.is_some() && d.finding.code.starts_with("FF1"))
            .map(|d| format!("{}:{} {}", d.file, d.line, d.finding.code))
            .collect();
        assert!(
            fixable.is_empty(),
            "{name}: fixable findings left: {fixable:?}"
        );
        // (c) a second fix is a no-op.
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
        if let (Some(kubectl), Some(built_before)) = (kubectl.as_deref(), built_before) {
            let built_after = builds(
                kubectl,
                &affected.iter().map(|d| root.join(d)).collect::<Vec<_>>(),
            );
            for (dir, ok) in built_before {
                assert!(
                    !ok || built_after[&dir],
                    "{name}: {} built before fix, not after",
                    dir.display()
                );
            }
        }
    }
    // The corpus is full of the pattern the document describes: the fix must find work.
    assert!(total_changed > 500, "only {total_changed} files changed");
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

#[test]
fn an_edit_the_text_cannot_take_holds_its_object_back_and_the_rest_applies() {
    // `spec: []` cannot take `spec.serviceAccountName` (FF110) nor the move's
    // `spec.targetNamespace`: both are said and skipped. The release that moves with it (one
    // kustomization's `namespace:` places both) stays too; its own FF110 fix applies.
    let manifest = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  \
                    name: list-spec\nspec: []\n---\napiVersion: helm.toolkit.fluxcd.io/v2\n\
                    kind: HelmRelease\nmetadata:\n  name: web\nspec:\n  chart:\n    spec:\n      \
                    chart: web\n      sourceRef:\n        kind: HelmRepository\n        \
                    name: charts\n        namespace: flux-system\n";
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
        skipped.contains("HelmRelease/list-spec not moved: `/spec/")
            && skipped.contains("not a mapping"),
        "{skipped}"
    );
    assert!(
        skipped.contains("set spec.serviceAccountName: flux-applier (cannot be written"),
        "{skipped}"
    );
    let changed: Vec<&str> = outcome.changed.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        changed,
        ["apps/manifest.yaml"],
        "the kustomization keeps its namespace"
    );
    let docs = documents(&outcome.changed[0].2);
    assert_eq!(docs[0]["spec"], serde_json::json!([]));
    assert_eq!(docs[1]["spec"]["serviceAccountName"], "flux-applier");
    assert_eq!(
        docs[1]["spec"]["chart"]["spec"]["sourceRef"]["namespace"],
        "flux-system"
    );
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
                kind: HelmRepository\n        name: charts\n        namespace: flux-system\n";
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
