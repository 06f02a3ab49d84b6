//! Rule fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used)]
//!
//! Every fixture states what it expects; these tests lint it through the library and compare
//! the exact multiset of `(code, line, column)` of the diagnostics.
//!
//! - `testdata/rules/<CODE>/*.yaml`: one file, linted alone (`Inventory::from_text`). Its
//!   leading comment block holds `# expect: FF101@16:20 FF111@8:1` (or `# expect: none`),
//!   optionally `# policy: <file>` (relative to the fixture; else the built-in policy) and
//!   `# unresolved: N` (objects whose namespace cannot be known). `*.json` fixtures carry
//!   the same lines in a sidecar `<name>.expect`. Files named `*.policy.yaml` are policies.
//!   Names say what a fixture is for: `fires-*` must expect the directory's rule,
//!   `ok-*` (near-misses) must not.
//! - `testdata/repos/<case>/` and directories under `testdata/rules/<CODE>/`: a repository,
//!   copied to a temporary directory and loaded with `Inventory::load` like the CLI does.
//!   Its `expect` file lists `FF101 path/in/case.yaml:12:20` lines (or `none`), optionally
//!   `unresolved N`; a `.fluxfence.yaml` at its root is its policy.
//!
//! The comparison covers the codes this suite was written for ([`SCOPE`]) plus any code an
//! expectation names, so that a new rule (say a deprecated-API-version check, which the many
//! beta-version fixtures here would trigger) does not silently rewrite these expectations;
//! a fixture opts in by naming the new code.
//!
//! The text output of every `fires-*` fixture is snapshot-tested as well.

use std::path::{Path, PathBuf};

use fluxfence::output::{self, Format};
use fluxfence::{Inventory, Policy, Report, lint};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn rules_dir(code: &str) -> PathBuf {
    workspace().join("testdata/rules").join(code)
}

/// The codes every comparison covers.
const SCOPE: &[&str] = &[
    "FF003", "FF101", "FF102", "FF110", "FF111", "FF120", "FF121", "FF130", "FF140", "FF150",
    "FF160",
];

/// `(code, file, line, column)`; `file` is empty for single-file fixtures.
type Hit = (String, String, usize, usize);

#[derive(Debug, Default)]
struct Expectation {
    hits: Vec<Hit>,
    saw_expect: bool,
    policy: Option<PathBuf>,
    unresolved: Option<usize>,
    /// `# known-bug: …`: the engine gets this fixture wrong today; it runs only in the
    /// `#[ignore]`d test named after it, so that the suite stays green and the bug visible.
    known_bug: Option<String>,
}

/// Parses `FF101@16:20` (file fixtures) or `FF101 path:16:20` (directory cases).
fn parse_hit(token: &str, file: &str) -> Hit {
    let (code, position) = token
        .split_once('@')
        .unwrap_or_else(|| panic!("`{token}`: expected CODE@LINE:COL"));
    let (line, column) = position
        .split_once(':')
        .unwrap_or_else(|| panic!("`{token}`: expected CODE@LINE:COL"));
    (
        code.to_owned(),
        file.to_owned(),
        line.parse()
            .unwrap_or_else(|_| panic!("bad line in `{token}`")),
        column
            .parse()
            .unwrap_or_else(|_| panic!("bad column in `{token}`")),
    )
}

/// Reads the leading `#` comment block of a file fixture (or its sidecar).
fn file_expectation(fixture: &Path, header: &str) -> Expectation {
    let mut expectation = Expectation::default();
    for line in header.lines() {
        let line = line.trim_start_matches('\u{feff}').trim();
        if line == "---" || line.is_empty() {
            continue;
        }
        let Some(comment) = line.strip_prefix('#') else {
            break;
        };
        let comment = comment.trim();
        if let Some(rest) = comment.strip_prefix("expect:") {
            expectation.saw_expect = true;
            for token in rest.split_whitespace() {
                if token != "none" {
                    expectation.hits.push(parse_hit(token, ""));
                }
            }
        } else if let Some(rest) = comment.strip_prefix("policy:") {
            let dir = fixture.parent().unwrap_or(Path::new("."));
            expectation.policy = Some(dir.join(rest.trim()));
        } else if let Some(rest) = comment.strip_prefix("known-bug:") {
            expectation.known_bug = Some(rest.trim().to_owned());
        } else if let Some(rest) = comment.strip_prefix("unresolved:") {
            expectation.unresolved = Some(rest.trim().parse().expect("unresolved: N"));
        }
    }
    expectation
}

fn dir_expectation(case: &Path) -> Expectation {
    let path = case.join("expect");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (every case directory needs one)", path.display()));
    let mut expectation = Expectation::default();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        expectation.saw_expect = true;
        if line == "none" {
            continue;
        }
        if let Some(n) = line.strip_prefix("unresolved ") {
            expectation.unresolved = Some(n.trim().parse().expect("unresolved N"));
            continue;
        }
        let (code, location) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("{}: `{line}`", path.display()));
        let mut parts = location.trim().rsplitn(3, ':');
        let column = parts.next().and_then(|c| c.parse().ok());
        let line_no = parts.next().and_then(|l| l.parse().ok());
        let file = parts.next();
        match (file, line_no, column) {
            (Some(file), Some(l), Some(c)) => {
                expectation
                    .hits
                    .push((code.to_owned(), file.to_owned(), l, c));
            }
            _ => panic!(
                "{}: `{line}`: expected `CODE path:line:col`",
                path.display()
            ),
        }
    }
    let policy = case.join(".fluxfence.yaml");
    if policy.is_file() {
        expectation.policy = Some(policy);
    }
    expectation
}

fn load_policy(path: Option<&Path>) -> Policy {
    match path {
        Some(p) => Policy::load(p).unwrap_or_else(|e| panic!("{e}")),
        None => Policy::azure_default(),
    }
}

/// The diagnostics as hits; `strip: None` drops file names (single-file fixtures).
fn actual_hits(report: &Report, strip: Option<&str>) -> Vec<Hit> {
    let mut hits: Vec<Hit> = report
        .diagnostics
        .iter()
        .map(|d| {
            let file = match strip {
                Some(prefix) => d
                    .file
                    .strip_prefix(prefix)
                    .unwrap_or(&d.file)
                    .trim_start_matches('/')
                    .to_owned(),
                None => String::new(),
            };
            (d.finding.code.to_owned(), file, d.line, d.column)
        })
        .collect();
    hits.sort();
    hits
}

fn show(hits: &[Hit]) -> String {
    if hits.is_empty() {
        return "none".into();
    }
    hits.iter()
        .map(|(code, file, line, col)| {
            if file.is_empty() {
                format!("{code}@{line}:{col}")
            } else {
                format!("{code} {file}:{line}:{col}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Lints one single-file fixture; the display name is its workspace-relative path.
fn lint_file(path: &Path, policy: &Policy) -> Report {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path
        .strip_prefix(workspace())
        .unwrap_or(path)
        .display()
        .to_string();
    lint(Inventory::from_text(&name, text), policy)
}

/// Copies a case directory into a fresh temporary directory (outside this repository, whose
/// other files would otherwise be loaded as context) and loads it like the CLI does.
fn lint_dir(case: &Path, policy: &Policy) -> (Report, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_tree(case, tmp.path());
    let inventory = Inventory::load(&[tmp.path().to_path_buf()]);
    (lint(inventory, policy), tmp)
}

pub fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_tree(&entry.path(), &target);
        } else if entry.file_name() != "expect" {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn check_unresolved(
    report: &Report,
    expectation: &Expectation,
    name: &str,
    failures: &mut Vec<String>,
) {
    let actual = report.unresolved.len();
    let expected = expectation.unresolved.unwrap_or(0);
    if actual != expected {
        failures.push(format!(
            "{name}: expected {expected} unresolved object(s), got {actual}: {:?}",
            report.unresolved
        ));
    }
    if !report.errors().is_empty() {
        failures.push(format!("{name}: input errors {:?}", report.errors()));
    }
}

/// Checks one fixture's hits; also that `fires-*`/`ok-*` names agree with the expectation.
fn compare(
    name: &str,
    code: Option<&str>,
    mut expected: Vec<Hit>,
    mut actual: Vec<Hit>,
    failures: &mut Vec<String>,
) {
    expected.sort();
    actual.retain(|hit| SCOPE.contains(&hit.0.as_str()) || expected.iter().any(|e| e.0 == hit.0));
    if let Some(code) = code {
        let base = Path::new(name)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        let expects_code = expected.iter().any(|h| h.0 == code);
        if base.starts_with("fires-") && !expects_code {
            failures.push(format!("{name}: a `fires-` fixture must expect {code}"));
        }
        if base.starts_with("ok-") && expects_code {
            failures.push(format!("{name}: an `ok-` fixture must not expect {code}"));
        }
        if !base.starts_with("fires-") && !base.starts_with("ok-") {
            failures.push(format!("{name}: name fixtures `fires-*` or `ok-*`"));
        }
    }
    if expected != actual {
        failures.push(format!(
            "{name}:\n    expected: {}\n    actual:   {}",
            show(&expected),
            show(&actual)
        ));
    }
}

/// Runs every fixture of one rule directory.
fn run_rule_dir(code: &str) -> usize {
    let dir = rules_dir(code);
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    let mut failures = Vec::new();
    let mut cases = 0;
    for path in entries {
        let name = path
            .strip_prefix(workspace())
            .unwrap_or(&path)
            .display()
            .to_string();
        if path.is_dir() {
            let expectation = dir_expectation(&path);
            let policy = load_policy(expectation.policy.as_deref());
            let (report, tmp) = lint_dir(&path, &policy);
            let strip = tmp.path().display().to_string();
            check_unresolved(&report, &expectation, &name, &mut failures);
            compare(
                &name,
                Some(code),
                expectation.hits.clone(),
                actual_hits(&report, Some(&strip)),
                &mut failures,
            );
            cases += 1;
            continue;
        }
        if run_file_fixture(&path, code, false, &mut failures) {
            cases += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} fixture(s) of {code} failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    cases
}

/// Lints one file fixture and records mismatches; false when it was skipped (a policy, a
/// sidecar, or a known engine bug outside `only_known_bug` runs).
fn run_file_fixture(
    path: &Path,
    code: &str,
    only_known_bug: bool,
    failures: &mut Vec<String>,
) -> bool {
    let name = path
        .strip_prefix(workspace())
        .unwrap_or(path)
        .display()
        .to_string();
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_owned();
    if file_name.ends_with(".policy.yaml") || file_name.ends_with(".expect") {
        return false;
    }
    let header = if file_name.ends_with(".json") {
        std::fs::read_to_string(path.with_file_name(format!("{file_name}.expect")))
            .unwrap_or_else(|e| panic!("{name}: sidecar .expect: {e}"))
    } else {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let expectation = file_expectation(path, &header);
    if !expectation.saw_expect {
        failures.push(format!("{name}: no `# expect:` header"));
        return true;
    }
    if expectation.known_bug.is_some() != only_known_bug {
        return false;
    }
    let policy = load_policy(expectation.policy.as_deref());
    let report = lint_file(path, &policy);
    check_unresolved(&report, &expectation, &name, failures);
    compare(
        &name,
        Some(code),
        expectation.hits,
        actual_hits(&report, None),
        failures,
    );
    true
}

macro_rules! rule_fixtures {
    ($($test:ident => $code:literal),* $(,)?) => {$(
        #[test]
        fn $test() {
            let cases = run_rule_dir($code);
            assert!(cases >= 2, "{}: only {cases} fixture(s)", $code);
        }
    )*};
}

rule_fixtures! {
    ff003_fixtures => "FF003",
    ff101_fixtures => "FF101",
    ff102_fixtures => "FF102",
    ff110_fixtures => "FF110",
    ff111_fixtures => "FF111",
    ff120_fixtures => "FF120",
    ff121_fixtures => "FF121",
    ff130_fixtures => "FF130",
    ff140_fixtures => "FF140",
    ff150_fixtures => "FF150",
    ff160_fixtures => "FF160",
}

/// Every rule this suite covers has fixtures that fire and near-misses; a rule added later
/// gets the same check as soon as it has a `testdata/rules/<CODE>/` directory.
#[test]
fn every_rule_has_fixtures_that_fire_and_that_must_not() {
    for rule in fluxfence::rules::ALL {
        let code = rule.meta().code;
        let dir = rules_dir(code);
        if !dir.is_dir() && !SCOPE.contains(&code) {
            continue;
        }
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        assert!(
            names.iter().any(|n| n.starts_with("fires-")),
            "{code}: no fires-* fixture"
        );
        assert!(
            names.iter().any(|n| n.starts_with("ok-")),
            "{code}: no ok-* fixture"
        );
    }
}

/// Fixture directories of rules outside [`SCOPE`] run too (they have no test of their own).
#[test]
fn fixtures_of_other_rules() {
    for rule in fluxfence::rules::ALL {
        let code = rule.meta().code;
        if !SCOPE.contains(&code) && rules_dir(code).is_dir() {
            run_rule_dir(code);
        }
    }
}

#[test]
fn repository_cases() {
    let root = workspace().join("testdata/repos");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("testdata/repos")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "only {} repository cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case
            .strip_prefix(workspace())
            .unwrap_or(case)
            .display()
            .to_string();
        let expectation = dir_expectation(case);
        assert!(expectation.saw_expect, "{name}: empty expect file");
        let policy = load_policy(expectation.policy.as_deref());
        let (report, tmp) = lint_dir(case, &policy);
        let strip = tmp.path().display().to_string();
        check_unresolved(&report, &expectation, &name, &mut failures);
        compare(
            &name,
            None,
            expectation.hits.clone(),
            actual_hits(&report, Some(&strip)),
            &mut failures,
        );
    }
    assert!(
        failures.is_empty(),
        "{} repository case(s) failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// Where each diagnostic's namespace came from, for the repository cases that are about it.
fn origins(case: &str) -> Vec<(String, String, String)> {
    let dir = workspace().join("testdata/repos").join(case);
    let expectation = dir_expectation(&dir);
    let policy = load_policy(expectation.policy.as_deref());
    let (report, tmp) = lint_dir(&dir, &policy);
    let strip = format!("{}/", tmp.path().display());
    let mut out: Vec<(String, String, String)> = report
        .diagnostics
        .iter()
        .map(|d| {
            (
                d.finding.code.to_owned(),
                d.object.clone().unwrap_or_default(),
                d.namespace_origin
                    .clone()
                    .unwrap_or_default()
                    .replace(&strip, ""),
            )
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn a_kustomization_namespace_overrides_metadata_namespace_and_is_reported_as_the_origin() {
    let found = origins("kustomize-namespace-overrides-metadata");
    assert!(
        found.contains(&(
            "FF101".into(),
            "HelmRelease/team-c/podinfo".into(),
            "namespace of apps/team-c/kustomization.yaml:3".into()
        )),
        "{found:?}"
    );
}

#[test]
fn a_flux_target_namespace_is_reported_as_the_origin() {
    let found = origins("flux-target-namespace");
    assert!(
        found.contains(&(
            "FF101".into(),
            "HelmRelease/team-b/redis".into(),
            "targetNamespace of Flux Kustomization flux-system/team-b (clusters/prod/team-b.yaml:11)"
                .into()
        )),
        "{found:?}"
    );
}

/// Keeps the diagnostics of [`SCOPE`] only, so that snapshots do not change with new rules.
fn in_scope(report: &mut Report) {
    report
        .diagnostics
        .retain(|d| SCOPE.contains(&d.finding.code));
}

/// The text output (code frames) of every `fires-*` fixture of a rule, in one snapshot.
fn text_of_firing_fixtures(code: &str) -> String {
    let dir = rules_dir(code);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("rule dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("fires-"))
        })
        .collect();
    paths.sort();
    let mut out = String::new();
    for path in paths {
        let name = path
            .strip_prefix(workspace())
            .unwrap_or(&path)
            .display()
            .to_string();
        let text = if path.is_dir() {
            let expectation = dir_expectation(&path);
            let policy = load_policy(expectation.policy.as_deref());
            let (report, tmp) = lint_dir(&path, &policy);
            output::render(
                &report,
                Format::Text,
                &output::Options::with_unresolved(false),
            )
            .replace(&format!("{}/", tmp.path().display()), &format!("{name}/"))
        } else {
            let header = std::fs::read_to_string(&path).expect("read");
            let expectation = file_expectation(&path, &header);
            let policy = load_policy(expectation.policy.as_deref());
            let mut report = lint_file(&path, &policy);
            in_scope(&mut report);
            output::render(
                &report,
                Format::Text,
                &output::Options::with_unresolved(true),
            )
        };
        out.push_str(&format!("===== {name}\n{text}\n"));
    }
    out
}

macro_rules! text_snapshots {
    ($($test:ident => $code:literal),* $(,)?) => {$(
        #[test]
        fn $test() {
            insta::assert_snapshot!(text_of_firing_fixtures($code));
        }
    )*};
}

text_snapshots! {
    text_ff003 => "FF003",
    text_ff101 => "FF101",
    text_ff102 => "FF102",
    text_ff110 => "FF110",
    text_ff111 => "FF111",
    text_ff120 => "FF120",
    text_ff121 => "FF121",
    text_ff130 => "FF130",
    text_ff140 => "FF140",
    text_ff150 => "FF150",
    text_ff160 => "FF160",
}
