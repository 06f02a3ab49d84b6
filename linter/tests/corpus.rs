//! The public Flux repositories of `../shared/corpus`: every file parses (as kubectl would
//! accept it) and the findings per repository are the ones we verified by reading samples.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fluxfence::{Inventory, Policy, lint};

/// `../shared/corpus` beside the repository, or `None` (and a note) where a clone has none.
fn corpus() -> Option<PathBuf> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
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

/// `(code counts, unresolved objects, build errors)` of one repository under the default
/// policy. Each repository is its own root: `../shared` may lie inside another Git
/// repository, whose root is not the corpus repository's.
fn findings(corpus: &Path, repo: &str) -> (BTreeMap<&'static str, usize>, usize, usize) {
    let dir = corpus.join(repo);
    let report = lint(
        Inventory::load_in_root(&dir, std::slice::from_ref(&dir)),
        &Policy::azure_default(),
    );
    // Every file parses; what fails is a kustomize build that names a file the corpus copy
    // does not hold (it keeps YAML files only, and not all of them).
    let build_errors = report
        .errors()
        .iter()
        .filter(|e| e.message.starts_with("kustomize build fails: resource `"))
        .count();
    assert_eq!(
        build_errors,
        report.errors().len(),
        "{repo}: {:?}",
        report.errors()
    );
    let mut counts = BTreeMap::new();
    for d in &report.diagnostics {
        *counts.entry(d.finding.code).or_insert(0) += 1;
    }
    (counts, report.unresolved.len(), build_errors)
}

/// Repository, its findings per rule code, its unresolved count and its build errors.
type Expected = (&'static str, &'static [(&'static str, usize)], usize, usize);

// Samples read and confirmed (default policy = Azure multiTenancy.enforce=true):
// - FF101 auricom kubernetes/apps/cert-manager/cert-manager/ks.yaml:29: a Flux Kustomization
//   whose namespace `cert-manager` comes from apps/cert-manager/kustomization.yaml references
//   GitRepository flux-system/flux-system — refused by --no-cross-namespace-refs.
// - FF111 on the same objects: no serviceAccountName, so `flux-applier` is impersonated in
//   `cert-manager`, where the platform does not create it.
// - FF110 warns on every Kustomization/HelmRelease without serviceAccountName outside
//   flux-system; the three in flux2-kustomize-helm-example are apps/base's HelmReleases
//   rendered into `podinfo` by the staging/production overlays' namespace.
// - FF130 auricom apps/database/dragonfly/app/kustomization.yaml:8 (a raw.githubusercontent
//   CRD URL) and bootstrap/flux/kustomization.yaml:7 (github.com/fluxcd/flux2/...?ref=).
// - FF120 hub-spoke hub/production.yaml:22 and siblings: hub Kustomizations with
//   spec.kubeConfig (remote spoke clusters) in the non-exempt namespaces `production`/`staging`;
//   and hub/production.yaml:55/110 (staging alike): those Kustomizations' `spec.patches` add
//   `kubeConfig` and `serviceAccountName: flux-cluster-admin` to every HelmRelease they build,
//   so the six built HelmReleases apply remotely (FF120) and name an account (no FF110/FF111,
//   which the files alone had reported).
// - FF102 billimek kubernetes/flux-system/discord-notifications/alerts.yaml:45 and four more:
//   Alert flux-system/helmreleases lists HelmReleases of cert-manager, default, kube-system,
//   monitoring and rook-ceph as event sources. flux-system is exempt, but notification-
//   controller drops an event whose object is in another namespace than the Alert under
//   --no-cross-namespace-refs whatever the namespace, so those five never alert (its
//   `flux-system` entry does). No other Alert of the corpus names another namespace.
// - FF002 hub-spoke and multi-tenancy: v1beta2 objects current Flux no longer serves.
// - d1-fleet/d1-infra: tenants live in their own namespaces with their own service accounts
//   and same-namespace sources: clean, as that reference architecture intends.
// - FF110/FF111 bjw-s dev/forgejo-anubis: the `anubis` component (components/anubis,
//   `${APP}-anubis`) that forgejo's kustomization includes, built by Flux Kustomization
//   dev/forgejo with `APP: forgejo` and targetNamespace `dev` (the file alone was unresolved).
// - Unresolved: HelmReleases with no namespace anywhere (auricom
//   apps/observability/nut-exporter, buroa and onedr0p actions-runner-controller/runners):
//   the Flux Kustomization that would apply them is not in the corpus copy.
// - Build errors: auricom apps/observability/kustomization.yaml names `nut-exporter/ks.yaml`,
//   buroa runners/home-operations/kustomization.yaml names `rbac.yaml`: neither file is in the
//   corpus copy, and kustomize-controller would fail those builds just the same.
#[test]
fn per_repository_findings_are_the_verified_ones() {
    let Some(corpus) = corpus() else { return };
    let expected: &[Expected] = &[
        (
            "auricom__home-ops",
            &[("FF101", 112), ("FF110", 215), ("FF111", 215), ("FF130", 2)],
            1,
            1,
        ),
        (
            "billimek__k8s-gitops",
            &[("FF101", 42), ("FF102", 5), ("FF110", 72), ("FF111", 72)],
            0,
            0,
        ),
        (
            "bjw-s-labs__home-ops",
            &[("FF101", 89), ("FF110", 165), ("FF111", 165)],
            0,
            0,
        ),
        (
            "buroa__k8s-gitops",
            &[("FF101", 94), ("FF110", 125), ("FF111", 125)],
            1,
            1,
        ),
        (
            "controlplaneio-fluxcd__d1-apps",
            &[("FF110", 3), ("FF111", 3)],
            0,
            0,
        ),
        ("controlplaneio-fluxcd__d1-fleet", &[], 0, 0),
        ("controlplaneio-fluxcd__d1-infra", &[], 0, 0),
        (
            "fluxcd__flux2-hub-spoke-example",
            &[
                ("FF002", 8),
                ("FF101", 8),
                ("FF110", 8),
                ("FF111", 8),
                ("FF120", 10),
            ],
            0,
            0,
        ),
        (
            "fluxcd__flux2-kustomize-helm-example",
            &[("FF110", 3), ("FF111", 3)],
            0,
            0,
        ),
        (
            "fluxcd__flux2-monitoring-example",
            &[("FF110", 3), ("FF111", 3)],
            0,
            0,
        ),
        ("fluxcd__flux2-multi-tenancy", &[("FF002", 1)], 0, 0),
        (
            "onedr0p__home-ops",
            &[("FF101", 74), ("FF110", 139), ("FF111", 139)],
            2,
            0,
        ),
        (
            "zhorvath83__home-ops",
            &[("FF101", 70), ("FF110", 131), ("FF111", 131)],
            0,
            0,
        ),
    ];
    let mut failures = Vec::new();
    for (repo, codes, unresolved, build_errors) in expected {
        let want: BTreeMap<&str, usize> = codes.iter().copied().collect();
        let got = findings(&corpus, repo);
        if got != (want.clone(), *unresolved, *build_errors) {
            failures.push(format!(
                "{repo}: expected {want:?} + {unresolved} unresolved + {build_errors} build errors, got {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// FF160 is off by default; turned on, it finds the home-ops repositories' Kustomizations that
/// wait on other namespaces' ones. Sample read: onedr0p apps/default/home-assistant/ks.yaml:12,
/// a Kustomization of `default` (the namespace of apps/default/kustomization.yaml) with
/// `dependsOn: [{name: multus-networks, namespace: kube-system}]`.
#[test]
fn cross_namespace_depends_on_when_the_policy_turns_it_on() {
    let Some(corpus) = corpus() else { return };
    let mut policy = Policy::azure_default();
    policy
        .rules
        .insert("FF160".into(), fluxfence::Severity::Warn);
    let expected = [
        ("auricom__home-ops", 102),
        ("bjw-s-labs__home-ops", 46),
        ("buroa__k8s-gitops", 26),
        ("controlplaneio-fluxcd__d1-fleet", 0),
        ("onedr0p__home-ops", 3),
        ("zhorvath83__home-ops", 76),
    ];
    for (repo, count) in expected {
        let dir = corpus.join(repo);
        let report = lint(
            Inventory::load_in_root(&dir, std::slice::from_ref(&dir)),
            &policy,
        );
        let found = report
            .diagnostics
            .iter()
            .filter(|d| d.finding.code == "FF160")
            .count();
        assert_eq!(found, count, "{repo}");
    }
}

#[test]
fn every_repository_of_the_corpus_is_linted() {
    let Some(corpus) = corpus() else { return };
    let repos = std::fs::read_dir(corpus)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(repos, 13, "the corpus changed: update the expected counts");
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
