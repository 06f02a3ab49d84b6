//! Lint judges what Flux applies: the objects of each build, with their values where the
//! build wrote them. Each test lints a repository-shaped tree of `testdata/build` or a
//! kustomization of `testdata/kustomize` (which `kustomize_diff.rs` holds to kubectl).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use fluxfence::{Diagnostic, Inventory, Policy, Report, lint};

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata")
        .join(rel)
}

/// Lints `given` (paths in the tree, or the whole tree) with the tree as the repository.
fn lint_tree(tree: &str, given: &[&str]) -> Report {
    let root = testdata(tree);
    let paths: Vec<PathBuf> = if given.is_empty() {
        vec![root.clone()]
    } else {
        given.iter().map(|g| root.join(g)).collect()
    };
    lint(
        Inventory::load_in_root(&root, &paths),
        &Policy::azure_default(),
    )
}

/// `CODE file:line:column` of each diagnostic, the file relative to the tree.
fn located(report: &Report) -> Vec<String> {
    report
        .diagnostics
        .iter()
        .map(|d| {
            let file = d
                .file
                .rsplit_once("testdata/")
                .map_or(d.file.as_str(), |(_, f)| f);
            format!("{} {file}:{}:{}", d.finding.code, d.line, d.column)
        })
        .collect()
}

fn with_code<'a>(report: &'a Report, code: &str) -> Vec<&'a Diagnostic> {
    report
        .diagnostics
        .iter()
        .filter(|d| d.finding.code == code)
        .collect()
}

#[test]
fn a_patch_that_adds_a_forbidden_value_is_caught_at_the_patch() {
    let report = lint_tree("kustomize/patch-bypass", &[]);
    assert!(report.errors().is_empty(), "{:?}", report.errors());
    assert_eq!(
        located(&report),
        [
            // flux-applier (named in the file) exists only in the config namespace.
            "FF111 kustomize/patch-bypass/hr.yaml:8:23",
            "FF101 kustomize/patch-bypass/kustomization.yaml:8:16",
            "FF120 kustomize/patch-bypass/kustomization.yaml:11:16",
        ]
    );
    let cross = with_code(&report, "FF101")[0];
    assert_eq!(cross.object.as_deref(), Some("HelmRelease/team-a/podinfo"));
    assert!(
        cross
            .notes
            .iter()
            .any(|n| n.contains("kustomization.yaml:8, for HelmRelease/podinfo of")),
        "{:?}",
        cross.notes
    );
}

#[test]
fn a_patch_that_sets_a_correct_value_leaves_no_finding() {
    // The file references flux-system and names no account; the build references its own
    // namespace and a declared account.
    let report = lint_tree("kustomize/smp-by-name", &[]);
    assert!(report.errors().is_empty(), "{:?}", report.errors());
    assert_eq!(located(&report), Vec::<String>::new());
    assert_eq!(report.objects_checked, 1);
}

#[test]
fn a_flux_kustomizations_patches_and_target_namespace_shape_what_it_builds() {
    let report = lint_tree("build/flux-patches", &[]);
    assert!(report.errors().is_empty(), "{:?}", report.errors());
    let cross = with_code(&report, "FF101");
    assert_eq!(cross.len(), 1, "{:#?}", report.diagnostics);
    let d = cross[0];
    assert!(
        d.file.ends_with("flux-patches/clusters/apps.yaml"),
        "{}",
        d.file
    );
    assert_eq!((d.line, d.column), (19, 18));
    assert_eq!(d.object.as_deref(), Some("HelmRelease/team-a/podinfo"));
    assert!(
        d.namespace_origin.as_deref().is_some_and(
            |o| o.starts_with("targetNamespace of Flux Kustomization cluster-config/apps")
        ),
        "{:?}",
        d.namespace_origin
    );
    assert!(
        d.notes
            .iter()
            .any(|n| n.starts_with("built by Flux Kustomization cluster-config/apps (")),
        "{:?}",
        d.notes
    );
    // The account is declared beside the release, and built into team-a with it.
    assert!(
        with_code(&report, "FF111").is_empty(),
        "{:#?}",
        report.diagnostics
    );
}

#[test]
fn a_replacement_gives_child_kustomizations_their_namespace() {
    let report = lint_tree("build/replacements", &[]);
    assert!(report.errors().is_empty(), "{:?}", report.errors());
    assert!(report.unresolved.is_empty(), "{:?}", report.unresolved);
    let cross = with_code(&report, "FF101");
    assert_eq!(cross.len(), 1, "{:#?}", report.diagnostics);
    assert_eq!(cross[0].object.as_deref(), Some("Kustomization/team-c/web"));
    assert!(
        cross[0]
            .namespace_origin
            .as_deref()
            .is_some_and(|o| o.starts_with("a kustomize replacement, copied from")
                && o.ends_with("apps/namespace.yaml:4")),
        "{:?}",
        cross[0].namespace_origin
    );
    // The child builds the release into team-c (its targetNamespace, created by the
    // replacement), where no flux-applier exists.
    let unavailable: Vec<_> = with_code(&report, "FF111")
        .into_iter()
        .filter_map(|d| d.object.as_deref())
        .collect();
    assert!(
        unavailable.contains(&"HelmRelease/team-c/web"),
        "{unavailable:?}"
    );
}

#[test]
fn substitution_places_objects_and_what_cannot_be_known_is_said() {
    let report = lint_tree("build/substitution", &[]);
    assert!(report.errors().is_empty(), "{:?}", report.errors());
    // `apps` substitutes TEAM: the release lands in team-g, its source defaults to flux-system.
    let cross = with_code(&report, "FF101");
    assert_eq!(cross.len(), 1, "{:#?}", report.diagnostics);
    assert_eq!(cross[0].object.as_deref(), Some("HelmRelease/team-g/web"));
    // `settings` takes its variables from a ConfigMap the repository does not hold.
    assert_eq!(report.unresolved.len(), 1, "{:?}", report.unresolved);
    let reason = &report.unresolved[0].reason;
    assert!(
        reason.contains("ConfigMap flux-system/cluster-settings"),
        "{reason}"
    );
}

#[test]
fn a_changed_flux_kustomization_reports_what_its_build_gives() {
    // pre-commit passes the changed file only: the release it builds is judged, and
    // reported where the offending value is written (the Kustomization's own patch).
    let report = lint_tree("build/flux-patches", &["clusters/apps.yaml"]);
    assert_eq!(
        located(&report)
            .into_iter()
            .filter(|l| l.starts_with("FF101"))
            .collect::<Vec<_>>(),
        ["FF101 build/flux-patches/clusters/apps.yaml:19:18"]
    );
    // The release's own file, given alone, is judged as that build places it too.
    let report = lint_tree("build/flux-patches", &["apps/release.yaml"]);
    assert_eq!(
        with_code(&report, "FF101").len(),
        1,
        "{:#?}",
        report.diagnostics
    );
}

#[test]
fn kustomize_features_build_the_objects_kustomize_builds() {
    // Spot checks of the fixtures' built values (the differential test compares all of
    // them with kubectl when it is installed).
    let built = |dir: &str| {
        let root = testdata("kustomize");
        let inventory = Inventory::load_in_root(&root, std::slice::from_ref(&root));
        let (objects, problems) = fluxfence::build::kustomize_build(&inventory, Path::new(dir));
        assert!(problems.is_empty(), "{dir}: {problems:?}");
        objects
            .iter()
            .map(|o| o.root.to_json())
            .collect::<Vec<serde_json::Value>>()
    };
    let names = |objects: &[serde_json::Value]| {
        objects
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    let deleted = built("patch-delete");
    assert_eq!(names(&deleted), ["keep"]);
    assert_eq!(
        deleted[0]["spec"]["upgrade-like"],
        serde_json::json!({"retries": 1})
    );
    assert!(deleted[0]["spec"].get("path").is_none());
    let regex = built("regex-target");
    assert_eq!(regex[0]["spec"]["serviceAccountName"], "team-a-applier");
    assert_eq!(regex[1]["spec"]["targetNamespace"], "team-a-db");
    assert!(regex[2]["spec"].get("serviceAccountName").is_none());
    let listed = built("json6902-list-index");
    assert_eq!(
        listed[0]["spec"]["dependsOn"],
        serde_json::json!([{"name": "first"}, {"name": "between"}])
    );
    assert_eq!(listed[0]["spec"]["targetNamespace"], "team-a");
    let replaced = built("replacements-create");
    assert_eq!(replaced[1]["metadata"]["namespace"], "team-c");
    assert_eq!(replaced[2]["spec"]["targetNamespace"], "team-c");
    assert_eq!(replaced[2]["spec"]["images"][0]["name"], "web:1.0");
    let prefixed = built("labels-prefix");
    assert_eq!(
        names(&prefixed),
        ["team-e-repo-v1", "team-e-applier-v1", "team-e-apps-v1"]
    );
    assert_eq!(prefixed[2]["metadata"]["labels"]["team"], "e");
    let composed = built("components/overlay");
    assert_eq!(composed[0]["spec"]["serviceAccountName"], "web-applier");
    assert_eq!(composed[1]["metadata"]["namespace"], "team-d");
}

#[test]
fn builds_sharing_a_cycle_report_it_as_one_build_in_file_order_would() {
    // `first` reaches the cycle at `b`, the others at `c`. Built in file order with one memo,
    // `c`'s build is remembered from inside `first`'s (where `b` is being built), so the
    // cycle is met once, at `b`; a build of `c` started afresh would meet it at `c`.
    let dir = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("a-first/kustomization.yaml", "resources: [../b]\n");
    write("b/kustomization.yaml", "resources: [../c]\n");
    write("c/kustomization.yaml", "resources: [../b, cm.yaml]\n");
    write(
        "c/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
    );
    for i in 0..24 {
        write(
            &format!("r{i:02}/kustomization.yaml"),
            "resources: [../c]\n",
        );
    }
    let cycles = |report: &Report| -> Vec<String> {
        report
            .errors()
            .iter()
            .map(ToString::to_string)
            .filter(|e| e.contains("kustomization cycle"))
            .collect()
    };
    for _ in 0..5 {
        let report = lint(
            Inventory::load_in_root(dir.path(), &[dir.path().to_path_buf()]),
            &Policy::azure_default(),
        );
        let cycles = cycles(&report);
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        assert!(cycles[0].contains("b includes itself"), "{cycles:?}");
    }
}

#[test]
fn a_kustomization_cycle_and_a_missing_resource_are_build_errors() {
    let dir = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("a/kustomization.yaml", "resources: [../b]\n");
    write("b/kustomization.yaml", "resources: [../a, missing.yaml]\n");
    // Flux builds `a`: kustomize-controller's build fails, and so does lint.
    write(
        "clusters/apps.yaml",
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: apps\n  namespace: flux-system\nspec:\n  interval: 10m\n  path: ./a\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n",
    );
    let inventory = Inventory::load_in_root(dir.path(), &[dir.path().to_path_buf()]);
    let (_, problems) = fluxfence::build::kustomize_build(&inventory, Path::new("a"));
    let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    assert!(messages.iter().any(|m| m.contains("cycle")), "{messages:?}");
    assert!(
        messages
            .iter()
            .any(|m| m.contains("`missing.yaml` is not in the repository")),
        "{messages:?}"
    );
    let report = lint(
        Inventory::load_in_root(dir.path(), &[dir.path().to_path_buf()]),
        &Policy::azure_default(),
    );
    assert_eq!(report.exit_code(), 2);
    let errors: Vec<String> = report.errors().iter().map(ToString::to_string).collect();
    assert!(
        errors.iter().any(|e| e.contains("kustomization cycle")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("b/kustomization.yaml:1:") && e.contains("missing.yaml")),
        "{errors:?}"
    );
}
