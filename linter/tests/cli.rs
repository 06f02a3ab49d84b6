//! The `fluxfence` binary: exit codes, stdin, output formats, rule docs, policy discovery and
//! errors, and the pre-commit case (one file judged with its repository's context).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fluxfence"));
    command
        .current_dir(dir)
        .env_remove("FLUXFENCE_POLICY")
        .env_remove("FLUXFENCE_FORMAT")
        .stdin(Stdio::null());
    command
}

fn run_in(dir: &Path, args: &[&str]) -> Run {
    let output = command(dir).args(args).output().expect("run fluxfence");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    }
}

fn run_stdin(dir: &Path, args: &[&str], input: &[u8]) -> Run {
    let mut child = command(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fluxfence");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    }
}

fn fixture(rel: &str) -> String {
    std::fs::read_to_string(workspace().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A directory outside any Git repository, with files copied from the workspace.
fn temp_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (to, from) in files {
        write(tmp.path(), to, &fixture(from));
    }
    tmp
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_tree(&entry.path(), &target);
        } else if entry.file_name() != "expect" {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

const SEED: &str = "testdata/seed/before/nginx.yaml";

/// The seed on current API versions, so that these tests count only the tenancy findings
/// (its beta versions are another rule's business).
fn modern_seed() -> String {
    fixture(SEED)
        .replace(
            "helm.toolkit.fluxcd.io/v2beta1",
            "helm.toolkit.fluxcd.io/v2",
        )
        .replace(
            "source.toolkit.fluxcd.io/v1beta1",
            "source.toolkit.fluxcd.io/v1",
        )
}

/// A temporary directory holding the modern seed as `rel`, and more files from the workspace.
fn temp_with_seed(rel: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let tmp = temp_with(files);
    write(tmp.path(), rel, &modern_seed());
    tmp
}

// ---------------------------------------------------------------- exit codes

#[test]
fn exit_0_when_clean() {
    let tmp = temp_with(&[("ok.yaml", "testdata/rules/FF101/ok-same-namespace.yaml")]);
    let run = run_in(tmp.path(), &["lint", "ok.yaml"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "No problems in 2 Flux objects from 1 file.\n");
    assert_eq!(run.stderr, "");
}

#[test]
fn exit_0_when_there_are_only_warnings() {
    let tmp = temp_with(&[("apps.yaml", "testdata/rules/FF110/fires-no-spec.yaml")]);
    let run = run_in(tmp.path(), &["lint", "apps.yaml"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout
            .starts_with("warning[FF110] [*]: Kustomization/empty"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Found 1 problem (0 errors, 1 warning) in 1 Flux object from 1 file."),
        "{}",
        run.stdout
    );
}

#[test]
fn a_warning_made_deny_by_the_policy_fails() {
    let tmp = temp_with(&[
        ("apps.yaml", "testdata/rules/FF110/fires-no-spec.yaml"),
        ("policy.yaml", "testdata/rules/FF111/per-tenant.policy.yaml"),
    ]);
    let run = run_in(
        tmp.path(),
        &["lint", "--policy", "policy.yaml", "apps.yaml"],
    );
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.starts_with("error[FF110]"), "{}", run.stdout);
}

#[test]
fn exit_1_on_violations() {
    let tmp = temp_with_seed("nginx.yaml", &[]);
    let run = run_in(tmp.path(), &["lint", "nginx.yaml"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains(" --> nginx.yaml:8:1\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("  --> nginx.yaml:16:20\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Found 3 problems (2 errors, 1 warning) in 2 Flux objects from 1 file.\n"),
        "{}",
        run.stdout
    );
}

fn seed_findings_in_this_repository() -> (Run, serde_json::Value) {
    let run = run_in(
        &workspace(),
        &["lint", "--format", "json", "testdata/seed/before"],
    );
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    (run, json)
}

/// The README's demonstration, on the seed inside this repository: the rest of the repository
/// (every fixture here) is loaded as context and must not change the findings.
#[test]
fn the_seed_in_this_repository_keeps_its_three_findings() {
    let (_, json) = seed_findings_in_this_repository();
    let found: Vec<(String, u64, u64)> = json["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter(|d| d["code"] != "FF001" && d["code"] != "FF002")
        .map(|d| {
            (
                d["code"].as_str().unwrap_or("").to_owned(),
                d["line"].as_u64().unwrap_or(0),
                d["column"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            ("FF110".to_owned(), 8, 1),
            ("FF111".to_owned(), 8, 1),
            ("FF101".to_owned(), 16, 20),
        ]
    );
}

#[test]
fn the_seed_in_this_repository_exits_1_without_input_errors() {
    let (run, json) = seed_findings_in_this_repository();
    assert_eq!(json["errors"], serde_json::json!([]));
    assert_eq!(run.code, 1);
}

#[test]
fn an_unparsable_file_elsewhere_in_the_repository_does_not_fail_the_lint() {
    let repo = git_repo();
    write(repo.path(), "apps/nginx.yaml", &modern_seed());
    write(
        repo.path(),
        "charts/app/templates/deployment.yaml",
        "{{- if .Values.enabled }}\nkind: Deployment\n{{- end }}\n",
    );
    let run = run_in(repo.path(), &["lint", "apps/nginx.yaml"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(!run.stdout.contains("templates"), "{}", run.stdout);
}

#[test]
fn exit_2_on_usage_errors() {
    let dir = workspace();
    for args in [
        &["lint", "--format", "yaml", "x"][..],
        &["lint", "--no-such-flag"][..],
        &["frobnicate"][..],
        &[][..],
    ] {
        let run = run_in(&dir, args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        assert!(!run.stderr.is_empty(), "{args:?}");
    }
    let run = run_in(&dir, &["lint", "--format", "yaml", "x"]);
    assert!(
        run.stderr
            .contains("invalid value 'yaml' for '--format <FORMAT[=FILE]>'"),
        "{}",
        run.stderr
    );
}

#[test]
fn exit_2_on_a_missing_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = run_in(tmp.path(), &["lint", "nope.yaml"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stdout
            .starts_with("error: nope.yaml: no such file or directory\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn exit_2_on_a_parse_error_even_with_violations_elsewhere() {
    let tmp = temp_with_seed("nginx.yaml", &[]);
    write(tmp.path(), "broken.yaml", "kind: [unclosed\n");
    let run = run_in(tmp.path(), &["lint", "."]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stdout.starts_with("error: ./broken.yaml:2:1: "),
        "{}",
        run.stdout
    );
    // The readable file is still judged.
    assert!(run.stdout.contains("error[FF101]"), "{}", run.stdout);
    assert!(
        run.stdout.contains("1 file could not be read or parsed."),
        "{}",
        run.stdout
    );
}

// ---------------------------------------------------------------- stdin

#[test]
fn a_pipe_given_by_name_is_read_like_a_file() {
    // `fluxfence lint <(kustomize build …)` names a pipe; it reports no size and is no regular
    // file, and must not be passed over.
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = run_stdin(
        tmp.path(),
        &["lint", "/dev/stdin"],
        modern_seed().as_bytes(),
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("  --> /dev/stdin:16:20\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn stdin_is_linted_as_one_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = run_stdin(tmp.path(), &["lint", "-"], modern_seed().as_bytes());
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("  --> <stdin>:16:20\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("from 1 file."), "{}", run.stdout);

    let run = run_stdin(
        tmp.path(),
        &["lint", "-"],
        fixture("testdata/rules/FF101/ok-same-namespace.yaml").as_bytes(),
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
}

#[test]
fn stdin_with_invalid_utf8_is_a_located_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = run_stdin(
        tmp.path(),
        &["lint", "-"],
        b"kind: Kustomization\nmetadata:\n  name: a\xffb\n",
    );
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "error: <stdin>:3:10: invalid UTF-8; manifests must be UTF-8 text\n"
    );
}

#[test]
fn stdin_cannot_be_combined_with_paths() {
    let tmp = temp_with_seed("nginx.yaml", &[]);
    let run = run_stdin(tmp.path(), &["lint", "-", "nginx.yaml"], b"");
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "error: `-` (stdin) cannot be combined with other paths\n"
    );
}

#[test]
fn empty_stdin_is_clean() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = run_stdin(tmp.path(), &["lint", "-"], b"");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "No problems in 0 Flux objects from 1 file.\n");
}

// ---------------------------------------------------------------- formats

/// Two files, errors and warnings: the seed and a bare suppression.
/// A repository (`.git/`) with five findings in two files under `apps/`.
fn multi_finding_case() -> tempfile::TempDir {
    let tmp = temp_with_seed(
        "apps/nginx.yaml",
        &[(
            "apps/suppressed.yaml",
            "testdata/rules/FF003/fires-no-reason.yaml",
        )],
    );
    std::fs::create_dir(tmp.path().join(".git")).expect(".git");
    tmp
}

/// A report on [`multi_finding_case`], with the repository's temporary path as `<root>`.
fn formatted(format: &str) -> Run {
    let tmp = multi_finding_case();
    let mut run = run_in(tmp.path(), &["lint", "--format", format, "apps"]);
    let root = tmp.path().canonicalize().expect("root");
    run.stdout = run.stdout.replace(&root.display().to_string(), "<root>");
    run
}

fn snapshot_text(run: &Run) -> String {
    format!(
        "exit code: {}\n----- stdout -----\n{}----- stderr -----\n{}",
        run.code, run.stdout, run.stderr
    )
}

#[test]
fn format_text() {
    let run = formatted("text");
    assert_eq!(run.code, 1);
    insta::assert_snapshot!(snapshot_text(&run));
}

#[test]
fn format_json() {
    let run = formatted("json");
    assert_eq!(run.code, 1);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("valid json");
    assert_eq!(json["summary"]["errors"], 2 + 1);
    assert_eq!(json["summary"]["warnings"], 2);
    assert_eq!(json["summary"]["files"], 2);
    insta::assert_snapshot!(snapshot_text(&run));
}

#[test]
fn format_junit() {
    let run = formatted("junit");
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
    );
    assert_eq!(run.stdout.matches("<testcase ").count(), 2);
    assert_eq!(run.stdout.matches("<failure ").count(), 2);
    insta::assert_snapshot!(snapshot_text(&run));
}

#[test]
fn format_github() {
    let run = formatted("github");
    assert_eq!(run.code, 1);
    for line in run.stdout.lines() {
        assert!(
            line.starts_with("::error file=") || line.starts_with("::warning file="),
            "{line}"
        );
    }
    assert_eq!(run.stdout.lines().count(), 5);
    insta::assert_snapshot!(snapshot_text(&run));
}

/// The rule descriptors (every rule's doc) and the indexes into them are left out of the
/// snapshot: they change with each rule added, and
/// `sarif_is_valid_against_the_sarif_2_1_0_schema` checks them.
#[test]
fn format_sarif() {
    let mut run = formatted("sarif");
    assert_eq!(run.code, 1);
    let mut log: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    // Every rule links its documentation page.
    for rule in log["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .expect("rules")
    {
        let page = format!("/docs/rules/{}.md", rule["id"].as_str().expect("id"));
        let uri = rule["helpUri"].as_str().expect("helpUri");
        assert!(
            uri.starts_with("https://") && uri.ends_with(&page),
            "{rule}"
        );
    }
    log["runs"][0]["tool"]["driver"]["rules"] = serde_json::json!("<one descriptor per rule>");
    log["runs"][0]["tool"]["driver"]["version"] = serde_json::json!("<version>");
    for result in log["runs"][0]["results"].as_array_mut().expect("results") {
        result["ruleIndex"] = serde_json::json!("<index of ruleId>");
    }
    run.stdout = format!("{}\n", serde_json::to_string_pretty(&log).expect("json"));
    insta::assert_snapshot!(snapshot_text(&run));
}

/// The OASIS schema, with one repair: the `pattern` of `language` (run, toolComponent) upstream,
/// `^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$`, has a stray `]` that the `jsonschema` crate's
/// meta-schema check refuses as a regex. fluxfence never writes `run.language`, so replacing
/// that pattern with the intended `^[a-zA-Z]{2}(-[a-zA-Z]{2})?$` changes nothing we test.
fn sarif_schema() -> jsonschema::Validator {
    let mut schema: serde_json::Value =
        serde_json::from_str(&fixture("testdata/schemas/sarif-2.1.0-rtm.5.json"))
            .expect("schema json");
    for owner in ["run", "toolComponent"] {
        let pattern = &mut schema["definitions"][owner]["properties"]["language"]["pattern"];
        assert_eq!(pattern, "^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$");
        *pattern = serde_json::json!("^[a-zA-Z]{2}(-[a-zA-Z]{2})?$");
    }
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&schema)
        .expect("schema compiles")
}

fn assert_valid_sarif(text: &str) -> serde_json::Value {
    let log: serde_json::Value = serde_json::from_str(text).expect("sarif is json");
    let validator = sarif_schema();
    let errors: Vec<String> = validator
        .iter_errors(&log)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "SARIF schema violations:\n{}",
        errors.join("\n")
    );
    log
}

#[test]
fn sarif_is_valid_against_the_sarif_2_1_0_schema() {
    let run = formatted("sarif");
    let log = assert_valid_sarif(&run.stdout);
    assert_eq!(log["version"], "2.1.0");
    let run0 = &log["runs"][0];
    let rules = run0["tool"]["driver"]["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), fluxfence::rules::ALL.len());
    let results = run0["results"].as_array().expect("results");
    assert_eq!(results.len(), 5);
    for result in results {
        let index = result["ruleIndex"].as_u64().expect("ruleIndex") as usize;
        assert_eq!(rules[index]["id"], result["ruleId"], "{result}");
        let location = &result["locations"][0]["physicalLocation"];
        let uri = location["artifactLocation"]["uri"].as_str().expect("uri");
        assert!(uri.starts_with("apps/"), "{uri}");
        assert!(location["region"]["startLine"].as_u64() >= Some(1));
        assert!(location["region"]["startColumn"].as_u64() >= Some(1));
    }
    assert_eq!(run0["invocations"][0]["executionSuccessful"], true);
}

#[test]
fn sarif_with_input_errors_is_still_valid() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "broken.yaml", "kind: [\n");
    let run = run_in(tmp.path(), &["lint", "--format", "sarif", "."]);
    assert_eq!(run.code, 2);
    let log = assert_valid_sarif(&run.stdout);
    let invocation = &log["runs"][0]["invocations"][0];
    assert_eq!(invocation["executionSuccessful"], false);
    assert_eq!(
        invocation["toolExecutionNotifications"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
            ["uri"],
        "broken.yaml"
    );
}

#[test]
fn the_schema_check_rejects_broken_sarif() {
    // The validator is not vacuous: a result without a message is refused.
    let mut log: serde_json::Value =
        serde_json::from_str(&formatted("sarif").stdout).expect("json");
    log["runs"][0]["results"][0]
        .as_object_mut()
        .expect("result")
        .remove("message");
    assert!(!sarif_schema().is_valid(&log));
}

#[test]
fn format_from_the_environment() {
    let tmp = multi_finding_case();
    let output = command(tmp.path())
        .env("FLUXFENCE_FORMAT", "github")
        .args(["lint", "apps"])
        .output()
        .expect("run");
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("::"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

// ---------------------------------------------------------------- rule docs

#[test]
fn rule_prints_its_doc() {
    let run = run_in(&workspace(), &["rule", "FF101"]);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.starts_with(
            "# FF101 cross-namespace-source-ref\n\nA Flux object references a source in another namespace\n\nDefault severity: deny. Fixable: only with `fluxfence fix --unsafe-fixes` (the fix moves objects between namespaces). In exempt namespaces: judged too.\n\n## What it does\n"
        ),
        "{}",
        run.stdout
    );
    for section in ["## Why is this bad?", "## Example", "## Use instead"] {
        assert!(run.stdout.contains(section), "{section}");
    }
    // By name and in lower case, too.
    assert_eq!(
        run_in(&workspace(), &["rule", "cross-namespace-source-ref"]).stdout,
        run.stdout
    );
    assert_eq!(run_in(&workspace(), &["rule", "ff101"]).stdout, run.stdout);
}

#[test]
fn every_rule_has_a_doc_with_the_four_sections() {
    for rule in fluxfence::rules::ALL {
        let code = rule.meta().code;
        let run = run_in(&workspace(), &["rule", code]);
        assert_eq!(run.code, 0, "{code}");
        for section in [
            "## What it does",
            "## Why is this bad?",
            "## Example",
            "## Use instead",
        ] {
            assert!(run.stdout.contains(section), "{code}: {section}");
        }
    }
}

#[test]
fn rules_lists_every_code() {
    let run = run_in(&workspace(), &["rules"]);
    assert_eq!(run.code, 0);
    let codes: Vec<&str> = run
        .stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    let all: Vec<&str> = fluxfence::rules::ALL
        .iter()
        .map(|r| r.meta().code)
        .collect();
    assert_eq!(codes, all);
    for code in [
        "FF003", "FF101", "FF102", "FF110", "FF111", "FF120", "FF121", "FF130", "FF140",
    ] {
        assert!(codes.contains(&code), "{code} missing: {codes:?}");
    }
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    assert_eq!(codes, sorted, "rules are listed in code order");
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("FF110  missing-service-account")
                && l.contains(" warn ")
                && l.contains(" fix ")),
        "{}",
        run.stdout
    );
}

#[test]
fn an_unknown_rule_is_exit_2() {
    let run = run_in(&workspace(), &["rule", "FF999"]);
    assert_eq!(run.code, 2);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "error: no rule `FF999`; `fluxfence rules` lists them\n"
    );
}

#[test]
fn kinds_lists_the_flux_kinds() {
    let run = run_in(&workspace(), &["kinds"]);
    assert_eq!(run.code, 0);
    let kinds: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let kinds = kinds.as_array().expect("array");
    assert_eq!(kinds.len(), 15);
    assert!(kinds.iter().any(|k| k["kind"] == "HelmRelease"
        && k["versions"] == serde_json::json!(["v2beta1", "v2beta2", "v2"])));
}

// ---------------------------------------------------------------- policies

fn policy_error(policy: &str) -> Run {
    let tmp = temp_with_seed("nginx.yaml", &[]);
    write(tmp.path(), "policy.yaml", policy);
    run_in(
        tmp.path(),
        &["lint", "--policy", "policy.yaml", "nginx.yaml"],
    )
}

#[test]
fn an_unknown_policy_field_is_exit_2_at_its_key() {
    let run = policy_error("enforce: true\nexemptNamespace: [flux-system]\n");
    assert_eq!(run.code, 2);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "error: policy.yaml:2:1: invalid policy: exemptNamespace: unknown field `exemptNamespace`, \
         expected one of `apiVersion`, `kind`, `enforce`, `configNamespace`, \
         `defaultServiceAccount`, `exemptNamespaces`, `serviceAccounts`, `tenants`, \
         `sharedSources`, `rules`, `ratchetUpdates`, `suppressions`\n"
    );
}

#[test]
fn a_wrong_policy_type_is_exit_2_at_its_value() {
    let run = policy_error("# the Azure switch\nenforce: \"yes\"\n");
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "error: policy.yaml:2:10: invalid policy: enforce: invalid type: string \"yes\", expected a boolean\n"
    );
}

#[test]
fn an_unknown_rule_code_in_a_policy_is_exit_2() {
    let run = policy_error("rules:\n  FF110: deny\n  FF999: warn\n");
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "error: policy.yaml:3:10: invalid policy: unknown rule code `FF999`; `fluxfence rules` lists them\n"
    );
}

#[test]
fn a_bad_severity_in_a_policy_is_exit_2() {
    let run = policy_error("rules:\n  FF110: error\n");
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "error: policy.yaml:2:10: invalid policy: rules.FF110: unknown variant `error`, expected one of `off`, `warn`, `deny`\n"
    );
}

#[test]
fn malformed_or_empty_policies_are_exit_2() {
    let run = policy_error("tenants: [\n");
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .starts_with("error: policy.yaml:2:1: invalid policy: "),
        "{}",
        run.stderr
    );
    let run = policy_error("# nothing\n");
    assert_eq!(
        run.stderr,
        "error: policy.yaml:1:1: invalid policy: the file is empty; write at least `enforce: true`\n"
    );
    let run = policy_error("enforce: true\n---\nenforce: false\n");
    assert_eq!(
        run.stderr,
        "error: policy.yaml:2:4: invalid policy: a policy is one YAML document, found several\n"
    );
}

#[test]
fn a_missing_policy_file_is_exit_2() {
    let tmp = temp_with_seed("nginx.yaml", &[]);
    let run = run_in(
        tmp.path(),
        &["lint", "--policy", "absent.yaml", "nginx.yaml"],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .starts_with("error: absent.yaml:1:1: invalid policy: cannot read the file: "),
        "{}",
        run.stderr
    );
}

#[test]
fn the_policy_from_the_environment() {
    let tmp = temp_with_seed("nginx.yaml", &[]);
    write(tmp.path(), "off.yaml", "enforce: false\n");
    let output = command(tmp.path())
        .env("FLUXFENCE_POLICY", "off.yaml")
        .args(["lint", "nginx.yaml"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0));
}

/// A temporary Git repository (a `.git/` directory is all the linter looks for).
fn git_repo() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(tmp.path().join(".git")).expect(".git");
    tmp
}

#[test]
fn the_policy_is_discovered_at_the_repository_root() {
    let repo = git_repo();
    write(repo.path(), "apps/nginx/nginx.yaml", &modern_seed());
    // Without a policy: the built-in one, which the seed violates.
    let run = run_in(&repo.path().join("apps"), &["lint", "nginx/nginx.yaml"]);
    assert_eq!(run.code, 1, "{}", run.stdout);

    // A .fluxfence.yaml in a sub-directory is not the repository's policy.
    write(repo.path(), "apps/.fluxfence.yaml", "enforce: false\n");
    let run = run_in(&repo.path().join("apps"), &["lint", "nginx/nginx.yaml"]);
    assert_eq!(run.code, 1, "{}", run.stdout);

    // At the root it is, from any working directory and for any path inside the repository.
    write(repo.path(), ".fluxfence.yaml", "enforce: false\n");
    for (cwd, path) in [
        (repo.path().to_path_buf(), "apps/nginx/nginx.yaml"),
        (repo.path().join("apps"), "nginx/nginx.yaml"),
        (repo.path().join("apps/nginx"), "."),
    ] {
        let run = run_in(&cwd, &["lint", path]);
        assert_eq!(run.code, 0, "{path}: {}", run.stdout);
        assert_eq!(run.stdout, "No problems in 2 Flux objects from 1 file.\n");
    }

    // An explicit --policy wins over the discovered one.
    write(
        repo.path(),
        "strict.yaml",
        &fixture("policies/default.yaml"),
    );
    let run = run_in(
        repo.path(),
        &["lint", "--policy", "strict.yaml", "apps/nginx/nginx.yaml"],
    );
    assert_eq!(run.code, 1, "{}", run.stdout);
}

#[test]
fn an_invalid_discovered_policy_is_exit_2_not_a_silent_default() {
    let repo = git_repo();
    write(repo.path(), "nginx.yaml", &modern_seed());
    write(repo.path(), ".fluxfence.yaml", "enforce: maybe\n");
    let run = run_in(repo.path(), &["lint", "nginx.yaml"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr.ends_with(
            ".fluxfence.yaml:1:10: invalid policy: enforce: invalid type: string \"maybe\", expected a boolean\n"
        ),
        "{}",
        run.stderr
    );
}

// ---------------------------------------------------------------- pre-commit

/// Only what is said of Flux objects depends on the rest of the repository (their namespace,
/// service account and schema), so a pre-commit run over other manifests does not read it.
#[test]
fn a_changed_kustomization_reports_the_objects_of_the_builds_it_shapes() {
    let repo = git_repo();
    write(
        repo.path(),
        "apps/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n",
    );
    write(
        repo.path(),
        "apps/kustomization.yaml",
        "namespace: team-a\nresources: [deployment.yaml, nginx.yaml]\n",
    );
    write(repo.path(), "apps/nginx.yaml", &modern_seed());
    // Any file may shape a build (a patch, a replacement source): the repository is read
    // whatever file is given.
    let files_read = |rel: &str| {
        fluxfence::Inventory::load(&[repo.path().join(rel)])
            .files
            .len()
    };
    assert_eq!(files_read("apps/deployment.yaml"), 3);
    assert_eq!(files_read("apps/kustomization.yaml"), 3);
    // A changed Deployment changes no Flux object: nothing to judge.
    let run = run_in(repo.path(), &["lint", "apps/deployment.yaml"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.stdout, "No problems in 0 Flux objects from 1 file.\n");
    // A changed kustomization changes what it builds: the HelmRelease it places in team-a
    // is judged there, and reported at its own file.
    let run = run_in(repo.path(), &["lint", "apps/kustomization.yaml"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("HelmRelease/nginx in namespace `team-a`"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("apps/nginx.yaml:16:20"),
        "{}",
        run.stdout
    );
}

/// pre-commit passes the changed files only: a HelmRelease whose namespace comes from a
/// kustomization.yaml beside it is still judged in that namespace.
#[test]
fn one_file_in_a_repository_is_judged_with_its_kustomization_namespace() {
    let repo = git_repo();
    copy_tree(
        &workspace().join("testdata/repos/kustomize-namespace-overrides-metadata"),
        repo.path(),
    );
    let run = run_in(repo.path(), &["lint", "apps/team-c/podinfo.yaml"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let root = repo.path().display().to_string();
    let stdout = run.stdout.replace(&root, "<repo>");
    assert!(
        stdout.contains("  --> apps/team-c/podinfo.yaml:15:20\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "= note: namespace `team-c` comes from namespace of <repo>/apps/team-c/kustomization.yaml:3\n"
        ),
        "{stdout}"
    );
    // Only the given file is reported (the context files are not counted or judged).
    assert!(
        stdout.ends_with("Found 1 problem (1 error, 0 warnings) in 1 Flux object from 1 file.\n"),
        "{stdout}"
    );

    // Outside a Git repository there is no context: metadata.namespace (exempt) decides.
    let plain = tempfile::tempdir().expect("tempdir");
    copy_tree(
        &workspace().join("testdata/repos/kustomize-namespace-overrides-metadata"),
        plain.path(),
    );
    let run = run_in(plain.path(), &["lint", "apps/team-c/podinfo.yaml"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
}

fn redis_in_team_b(cwd: &str, path: &str) -> serde_json::Value {
    let repo = git_repo();
    copy_tree(
        &workspace().join("testdata/repos/flux-target-namespace"),
        repo.path(),
    );
    let run = run_in(&repo.path().join(cwd), &["lint", "--format", "json", path]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let diagnostics = json["diagnostics"].as_array().expect("diagnostics");
    assert_eq!(diagnostics.len(), 1, "{json:#}");
    assert_eq!(diagnostics[0]["code"], "FF101", "{json:#}");
    assert_eq!(diagnostics[0]["object"], "HelmRelease/team-b/redis");
    assert_eq!(
        diagnostics[0]["pointer"],
        "/spec/chart/spec/sourceRef/namespace"
    );
    diagnostics[0].clone()
}

#[test]
fn one_file_in_a_repository_is_judged_with_a_flux_target_namespace() {
    let found = redis_in_team_b("", "apps/team-b/redis.yaml");
    assert_eq!(found["file"], "apps/team-b/redis.yaml");
    assert_eq!(
        (found["line"].as_u64(), found["column"].as_u64()),
        (Some(14), Some(20))
    );
}

#[test]
fn an_absolute_path_in_a_repository_gets_its_context() {
    let repo = git_repo();
    copy_tree(
        &workspace().join("testdata/repos/kustomize-namespace-overrides-metadata"),
        repo.path(),
    );
    let file = repo.path().join("apps/team-c/podinfo.yaml");
    let run = run_in(repo.path(), &["lint", file.to_str().expect("utf-8 path")]);
    assert_eq!(run.code, 1, "{}", run.stdout);
}

#[test]
fn one_file_given_from_a_sub_directory_gets_its_flux_target_namespace() {
    redis_in_team_b("apps/team-b", "redis.yaml");
}

#[test]
fn a_dot_slash_path_gets_its_context() {
    redis_in_team_b("", "./apps/team-b/redis.yaml");
    // The allowed violation this causes: the HelmRelease written for (exempt) flux-system
    // passes although kustomize moves it into team-c.
    let repo = git_repo();
    copy_tree(
        &workspace().join("testdata/repos/kustomize-namespace-overrides-metadata"),
        repo.path(),
    );
    let run = run_in(repo.path(), &["lint", "./apps/team-c/podinfo.yaml"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let run = run_in(repo.path(), &["lint", "./apps"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
}

/// `fluxfence lint --format json FILE` run in `dir`: the report, and its diagnostics as
/// `CODE message` lines.
fn lint_json(dir: &Path, file: &str) -> (serde_json::Value, Vec<String>) {
    let run = run_in(dir, &["lint", "--format", "json", file]);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let findings = report["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .map(|d| {
            let text = |key: &str| d[key].as_str().unwrap_or_default().to_owned();
            format!("{} {}", text("code"), text("message"))
        })
        .collect();
    (report, findings)
}

#[test]
fn a_crd_elsewhere_in_the_repository_checks_the_one_file_linted() {
    let repo = git_repo();
    let crd = std::fs::read_to_string(
        workspace().join("testdata/rules/FF001/fires-each-error-kind.yaml"),
    )
    .expect("fixture");
    // The fixture's first document is the Kustomization CRD; a broken CRD of another kind
    // beside it is never needed, so never parsed.
    let crd_document = crd.split("\n---").nth(1).expect("a CRD document");
    write(
        repo.path(),
        "crds/kustomization.yaml.crd.yaml",
        crd_document,
    );
    write(
        repo.path(),
        "crds/other.yaml",
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nspec: {names: [\n",
    );
    write(
        repo.path(),
        "apps/ks.yaml",
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: a, namespace: cluster-config}\nspec:\n  serviceAccountName: flux-applier\n  interval: 10m\n  sourceRef: {kind: GitRepository, name: a}\n",
    );
    let (report, findings) = lint_json(repo.path(), "apps/ks.yaml");
    // The CRD found in crds/ requires `prune` and declares no `serviceAccountName`.
    assert_eq!(
        findings,
        [
            "FF001 Kustomization/a: missing required field `spec.prune`",
            "FF001 Kustomization/a: unknown field `spec.serviceAccountName`"
        ],
        "{report}"
    );
    assert_eq!(report["summary"]["inputErrors"], 0);
}

#[test]
fn a_context_crd_is_checked_without_its_descriptions_but_with_a_property_named_description() {
    let repo = git_repo();
    write(
        repo.path(),
        "crds/kustomizations.yaml",
        "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: kustomizations.kustomize.toolkit.fluxcd.io
spec:
  group: kustomize.toolkit.fluxcd.io
  names:
    kind: Kustomization
  versions:
  - name: v1
    served: true
    schema:
      openAPIV3Schema:
        description: Kustomization, with a description
          over two lines.
        type: object
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
          spec:
            description: |-
              The spec.

              With a blank line.
            type: object
            required: [interval]
            properties:
              description:
                description: A property that is called description.
                type: string
              interval:
                description: How often.
                type: string
",
    );
    write(
        repo.path(),
        "apps/ks.yaml",
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: a, namespace: cluster-config}\nspec:\n  description: 5\n",
    );
    let (report, findings) = lint_json(repo.path(), "apps/ks.yaml");
    let schema_findings: Vec<&String> =
        findings.iter().filter(|f| f.starts_with("FF001")).collect();
    assert_eq!(
        schema_findings,
        [
            "FF001 Kustomization/a: missing required field `spec.interval`",
            "FF001 Kustomization/a: `spec.description` must be a string, not a number (5)",
        ],
        "{report}"
    );
    assert_eq!(report["summary"]["inputErrors"], 0);
}

// ---------------------------------------------------------------- lint --fix

/// `lint --fix --crds DIR` reports schema violations after fixing, as `lint --crds DIR` does;
/// a `--crds` that cannot be read stops it before any file is written.
#[test]
fn lint_fix_checks_the_fixed_files_against_the_crds_given() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(
        tmp.path(),
        "crds/kustomizations.yaml",
        &fixture("charts/flux-multitenancy/crds/kustomize.toolkit.fluxcd.io_kustomizations.yaml"),
    );
    let app = "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  \
               name: app\n  namespace: team-a\nspec:\n  interval: 10m\n  prune: \"yes\"\n  \
               sourceRef:\n    kind: GitRepository\n    name: app\n---\napiVersion: v1\nkind: \
               ServiceAccount\nmetadata:\n  name: flux-applier\n  namespace: team-a\n";
    write(tmp.path(), "app.yaml", app);

    let run = run_in(
        tmp.path(),
        &["lint", "--fix", "--crds", "nowhere", "app.yaml"],
    );
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stderr,
        "error: --crds cannot be read:\nnowhere: no such CRD file or directory\n"
    );
    assert_eq!(fixture_in(tmp.path(), "app.yaml"), app);

    let run = run_in(
        tmp.path(),
        &[
            "lint", "--fix", "--crds", "crds", "--format", "json", "app.yaml",
        ],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json report");
    let findings: Vec<(String, String)> = report["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .map(|d| {
            let text = |key: &str| d[key].as_str().unwrap_or_default().to_owned();
            (text("code"), text("pointer"))
        })
        .collect();
    // The service account was set by the fix; the wrong type is left for a human.
    assert_eq!(
        findings,
        [("FF001".into(), "/spec/prune".into())],
        "{}",
        run.stdout
    );
    assert!(fixture_in(tmp.path(), "app.yaml").contains("serviceAccountName: flux-applier"));
}

fn fixture_in(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).expect("file")
}

// ---------------------------------------------------------------- the root and code scanning

/// A run in `dir` of `args`, with `root` (a temporary path) spelled `<root>` in its output.
fn run_redacted(dir: &Path, root: &Path, args: &[&str]) -> Run {
    let mut run = run_in(dir, args);
    let root = root.canonicalize().expect("root").display().to_string();
    run.stdout = run.stdout.replace(&root, "<root>");
    run.stderr = run.stderr.replace(&root, "<root>");
    run
}

/// `(uri, uriBaseId, fingerprint)` of every SARIF result, and the `%SRCROOT%` base.
fn sarif_locations(text: &str) -> (Vec<(String, String, String)>, serde_json::Value) {
    let log = assert_valid_sarif(text);
    let run = &log["runs"][0];
    let results = run["results"].as_array().expect("results");
    let locations = results
        .iter()
        .map(|r| {
            let artifact = &r["locations"][0]["physicalLocation"]["artifactLocation"];
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            (
                text(&artifact["uri"]),
                text(&artifact["uriBaseId"]),
                text(&r["partialFingerprints"]["fluxfence/v1"]),
            )
        })
        .collect();
    (locations, run["originalUriBaseIds"].clone())
}

#[test]
fn sarif_uris_are_the_same_from_the_root_a_subdirectory_and_absolute_paths() {
    let repo = multi_finding_case();
    let root = repo.path().canonicalize().expect("root");
    let apps = root.join("apps");
    let absolute = apps.display().to_string();
    let runs = [
        run_in(&root, &["lint", "--format", "sarif", "apps"]),
        run_in(&root, &["lint", "--format", "sarif", "./apps/"]),
        run_in(&apps, &["lint", "--format", "sarif"]),
        run_in(
            &apps,
            &["lint", "--format", "sarif", "nginx.yaml", "suppressed.yaml"],
        ),
        run_in(
            &apps,
            &[
                "lint",
                "--format",
                "sarif",
                "../apps/nginx.yaml",
                "suppressed.yaml",
            ],
        ),
        run_in(Path::new("/"), &["lint", "--format", "sarif", &absolute]),
    ];
    let (expected, base) = sarif_locations(&runs[0].stdout);
    assert_eq!(expected.len(), 5);
    for (uri, base_id, fingerprint) in &expected {
        assert!(uri.starts_with("apps/"), "{uri}");
        assert_eq!(base_id, "%SRCROOT%");
        assert_eq!(fingerprint.len(), 16, "{fingerprint}");
    }
    assert_eq!(
        base["%SRCROOT%"]["uri"],
        format!("file://{}/", root.display())
    );
    for run in &runs {
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert_eq!(
            sarif_locations(&run.stdout),
            (expected.clone(), base.clone())
        );
    }
}

#[test]
fn github_annotations_name_files_from_the_repository_root() {
    let repo = multi_finding_case();
    let apps = repo.path().join("apps");
    let from_root = run_in(repo.path(), &["lint", "--format", "github", "apps"]);
    let from_apps = run_in(&apps, &["lint", "--format", "github", "."]);
    assert_eq!(from_root.stdout, from_apps.stdout);
    assert!(
        from_apps
            .stdout
            .contains("::error file=apps/nginx.yaml,line=16")
    );
}

#[test]
fn a_fingerprint_survives_lines_added_above_the_finding() {
    let repo = multi_finding_case();
    let before = sarif_locations(&run_in(repo.path(), &["lint", "--format", "sarif"]).stdout).0;
    let nginx = repo.path().join("apps/nginx.yaml");
    let text = std::fs::read_to_string(&nginx).expect("read");
    std::fs::write(&nginx, format!("# a comment\n# and another\n{text}")).expect("write");
    let after = sarif_locations(&run_in(repo.path(), &["lint", "--format", "sarif"]).stdout).0;
    assert_eq!(before, after);
}

#[test]
fn every_rule_has_a_help_page_that_is_its_rule_text() {
    let run = formatted("sarif");
    let log: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    for descriptor in log["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .expect("rules")
    {
        let code = descriptor["id"].as_str().expect("id");
        let page = format!("docs/rules/{code}.md");
        assert_eq!(
            descriptor["helpUri"],
            format!("https://github.com/fluxfence/fluxfence/blob/main/{page}")
        );
        // The page is what `fluxfence rule CODE` prints (regenerate it with that command).
        assert_eq!(
            fixture(&page),
            run_in(&workspace(), &["rule", code]).stdout,
            "{page}"
        );
    }
}

/// A repository whose root applies `team/` into `cluster-config`, with the seed in `team/`.
fn repository_around_team() -> tempfile::TempDir {
    let repo = git_repo();
    write(repo.path(), "team/nginx.yaml", &modern_seed());
    write(
        repo.path(),
        "kustomization.yaml",
        "namespace: cluster-config\nresources:\n  - team/nginx.yaml\n",
    );
    repo
}

#[test]
fn root_makes_a_directory_its_own_repository() {
    let repo = repository_around_team();
    let origins = |run: &Run| -> Vec<String> {
        let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
        report["diagnostics"]
            .as_array()
            .expect("diagnostics")
            .iter()
            .filter_map(|d| d["namespaceOrigin"].as_str().map(str::to_owned))
            .collect()
    };
    // Found from `.git`: the root's kustomization.yaml sets the namespace.
    let found = run_redacted(
        repo.path(),
        repo.path(),
        &["lint", "--format", "json", "team"],
    );
    assert!(
        found.stdout.contains("\"root\": \"<root>\""),
        "{}",
        found.stdout
    );
    assert!(
        origins(&found)
            .iter()
            .all(|o| o.contains("kustomization.yaml"))
    );
    // Given: `team` is all there is, and the namespace is the file's own.
    let team = repo.path().join("team");
    let given = run_redacted(
        repo.path(),
        &team,
        &["lint", "--root", "team", "--format", "json", "team"],
    );
    assert_eq!(given.code, 1, "{}", given.stderr);
    assert!(
        given.stdout.contains("\"root\": \"<root>\""),
        "{}",
        given.stdout
    );
    let origins = origins(&given);
    assert!(!origins.is_empty() && origins.iter().all(|o| o == "metadata.namespace"));
    let sarif = run_in(
        repo.path(),
        &["lint", "--root", "team", "--format", "sarif", "team"],
    );
    let (locations, base) = sarif_locations(&sarif.stdout);
    assert!(
        locations.iter().all(|l| l.0 == "nginx.yaml"),
        "{locations:?}"
    );
    let team = team.canonicalize().expect("team");
    assert_eq!(
        base["%SRCROOT%"]["uri"],
        format!("file://{}/", team.display())
    );
}

#[test]
fn root_refuses_paths_outside_it_and_a_missing_directory() {
    let repo = repository_around_team();
    let outside = run_in(
        repo.path(),
        &["lint", "--root", "team", "kustomization.yaml"],
    );
    let missing = run_in(repo.path(), &["lint", "--root", "nowhere", "team"]);
    insta::assert_snapshot!(format!(
        "{}{}",
        snapshot_text(&outside),
        snapshot_text(&missing)
    ));
}

#[test]
fn show_settings_says_the_root_policy_rules_and_outputs() {
    let repo = repository_around_team();
    write(repo.path(), ".fluxfence.yaml", "enforce: true\n");
    let found = run_redacted(
        &repo.path().join("team"),
        repo.path(),
        &[
            "lint",
            "--show-settings",
            "--select",
            "FF1",
            "--ignore",
            "FF110",
        ],
    );
    let given = run_redacted(
        repo.path(),
        repo.path(),
        &[
            "lint",
            "--show-settings",
            "--root",
            "team",
            "--format",
            "text",
            "--format",
            "sarif=out.sarif",
            "--color",
            "always",
            "team",
        ],
    );
    let stdin = run_redacted(
        repo.path(),
        repo.path(),
        &["lint", "--show-settings", "--stdin-filename", "team/x.yaml"],
    );
    insta::assert_snapshot!(format!(
        "{}{}{}",
        snapshot_text(&found),
        snapshot_text(&given),
        snapshot_text(&stdin)
    ));
    assert!(
        !repo.path().join("out.sarif").exists(),
        "--show-settings writes nothing"
    );
}

#[test]
fn stdin_filename_names_stdin_in_every_format() {
    let repo = multi_finding_case();
    let apps = repo.path().join("apps");
    let seed = modern_seed();
    let text = run_stdin(
        &apps,
        &["lint", "--stdin-filename", "new.yaml"],
        seed.as_bytes(),
    );
    assert_eq!(text.code, 1, "{}", text.stderr);
    assert!(
        text.stdout.contains("  --> new.yaml:16:20\n"),
        "{}",
        text.stdout
    );
    let sarif = run_stdin(
        &apps,
        &[
            "lint",
            "--stdin-filename",
            "new.yaml",
            "--format",
            "sarif",
            "-",
        ],
        seed.as_bytes(),
    );
    let (locations, _) = sarif_locations(&sarif.stdout);
    assert!(
        locations
            .iter()
            .all(|l| l.0 == "apps/new.yaml" && l.1 == "%SRCROOT%")
    );
    let refused = run_in(repo.path(), &["lint", "--stdin-filename", "x.yaml", "apps"]);
    insta::assert_snapshot!(snapshot_text(&refused));
}

// ---------------------------------------------------------------- report flags

/// The codes of a JSON report's diagnostics.
fn codes(run: &Run) -> Vec<String> {
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    report["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .map(|d| d["code"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn select_and_ignore_take_codes_prefixes_and_names() {
    let repo = multi_finding_case();
    let lint = |extra: &[&str]| {
        let mut args = vec!["lint", "--format", "json", "apps"];
        args.extend_from_slice(extra);
        run_in(repo.path(), &args)
    };
    assert_eq!(
        codes(&lint(&[])),
        ["FF110", "FF111", "FF101", "FF101", "FF003"]
    );
    assert_eq!(codes(&lint(&["--select", "FF101"])), ["FF101", "FF101"]);
    assert_eq!(
        codes(&lint(&["--select", "cross-namespace-source-ref,ff003"])),
        ["FF101", "FF101", "FF003"]
    );
    assert_eq!(codes(&lint(&["--ignore", "FF1"])), ["FF003"]);
    assert_eq!(
        codes(&lint(&[
            "--select", "FF1", "--ignore", "FF101", "--ignore", "FF111"
        ])),
        ["FF110"]
    );
    // Only warnings left: the run passes.
    let warnings = lint(&["--select", "FF003,FF110"]);
    assert_eq!((warnings.code, codes(&warnings).len()), (0, 2));
    let unknown = run_in(repo.path(), &["lint", "--select", "FF9", "apps"]);
    let unknown_name = run_in(repo.path(), &["lint", "--ignore", "no-such-rule", "apps"]);
    insta::assert_snapshot!(format!(
        "{}{}",
        snapshot_text(&unknown),
        snapshot_text(&unknown_name)
    ));
}

#[test]
fn exit_zero_passes_on_findings_but_not_on_read_errors() {
    let repo = multi_finding_case();
    let run = run_in(repo.path(), &["lint", "--exit-zero", "apps"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("error[FF101]"), "{}", run.stdout);
    write(repo.path(), "apps/broken.yaml", "kind: [\n");
    assert_eq!(
        run_in(repo.path(), &["lint", "--exit-zero", "apps"]).code,
        2
    );
}

#[test]
fn statistics_count_findings_per_rule() {
    let repo = multi_finding_case();
    let run = run_in(repo.path(), &["lint", "--statistics", "apps"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!(snapshot_text(&run));
}

#[test]
fn quiet_prints_the_findings_only() {
    let repo = multi_finding_case();
    let run = run_in(repo.path(), &["lint", "--quiet", "apps"]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("error[FF101]"), "{}", run.stdout);
    assert!(!run.stdout.contains("Found "), "{}", run.stdout);
    let clean = temp_with(&[("ok.yaml", "testdata/rules/FF101/ok-same-namespace.yaml")]);
    let run = run_in(clean.path(), &["lint", "-q", "ok.yaml"]);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (0, "", "")
    );
    // `lint --fix --quiet` does not say what it fixed either.
    let run = run_in(repo.path(), &["lint", "--fix", "--quiet", "apps"]);
    assert_eq!(run.stderr, "");
    assert!(!run.stdout.contains("Found "), "{}", run.stdout);
}

#[test]
fn output_file_and_several_formats_in_one_run() {
    let repo = multi_finding_case();
    let run = run_in(
        repo.path(),
        &[
            "lint",
            "--format",
            "text",
            "--format",
            "sarif=out.sarif",
            "--format",
            "json=reports/out.json",
            "apps",
        ],
    );
    // The directory of a report is not created: that is an error that names the file.
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("reports/out.json"), "{}", run.stderr);
    std::fs::create_dir(repo.path().join("reports")).expect("mkdir");
    let run = run_in(
        repo.path(),
        &[
            "lint",
            "--format",
            "text",
            "--format",
            "sarif=out.sarif",
            "--format",
            "json=reports/out.json",
            "apps",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.stdout, formatted("text").stdout);
    let sarif = std::fs::read_to_string(repo.path().join("out.sarif")).expect("sarif");
    assert_eq!(sarif_locations(&sarif).0.len(), 5);
    let json = std::fs::read_to_string(repo.path().join("reports/out.json")).expect("json");
    assert_eq!(
        codes(&Run {
            code: 1,
            stdout: json,
            stderr: String::new()
        })
        .len(),
        5
    );

    let run = run_in(
        repo.path(),
        &[
            "lint",
            "--format",
            "github",
            "--output-file",
            "gh.txt",
            "apps",
        ],
    );
    assert_eq!((run.code, run.stdout.as_str()), (1, ""));
    let annotations = std::fs::read_to_string(repo.path().join("gh.txt")).expect("gh.txt");
    assert_eq!(annotations, formatted("github").stdout);

    let two_to_stdout = run_in(
        repo.path(),
        &["lint", "--format", "text", "--format", "json"],
    );
    let same_file = run_in(
        repo.path(),
        &["lint", "--format", "json=a.out", "--format", "sarif=a.out"],
    );
    let no_file = run_in(repo.path(), &["lint", "--format", "sarif="]);
    insta::assert_snapshot!(format!(
        "{}{}{}",
        snapshot_text(&two_to_stdout),
        snapshot_text(&same_file),
        snapshot_text(&no_file)
    ));
}

#[test]
fn color_on_request_or_on_a_terminal_without_no_color() {
    let repo = multi_finding_case();
    let lint = |color: &str, no_color: Option<&str>| {
        let mut command = command(repo.path());
        command.args(["lint", "--color", color, "apps"]);
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        } else {
            command.env_remove("NO_COLOR");
        }
        let output = command.output().expect("run");
        String::from_utf8(output.stdout).expect("utf-8")
    };
    let plain = formatted("text").stdout;
    let always = lint("always", None);
    assert!(always.contains("\x1b[1;31merror[FF101]\x1b[0m"), "{always}");
    // The colours are all that differs.
    let stripped = regex::Regex::new("\x1b\\[[0-9;]*m")
        .expect("regex")
        .replace_all(&always, "");
    assert_eq!(stripped, plain);
    // An explicit `always` wins over NO_COLOR; `auto` is off when stdout is no terminal.
    assert_eq!(lint("always", Some("1")), always);
    assert_eq!(lint("auto", None), plain);
    assert_eq!(lint("never", None), plain);
    // A report written to a file is never coloured.
    let run = run_in(
        repo.path(),
        &[
            "lint",
            "--color",
            "always",
            "--format",
            "text=out.txt",
            "apps",
        ],
    );
    assert_eq!(run.code, 1);
    let file = std::fs::read_to_string(repo.path().join("out.txt")).expect("out.txt");
    assert_eq!(file, plain);
    insta::assert_snapshot!(always);
}

// ---------------------------------------------------------------- fix and wording

#[test]
fn fix_help_lists_only_what_fix_uses() {
    let run = run_in(&workspace(), &["fix", "--help"]);
    assert_eq!(run.code, 0);
    for lint_only in [
        "--format",
        "--show-unresolved",
        "--crds",
        "--fix ",
        "stdin",
        "--select",
    ] {
        assert!(
            !run.stdout.contains(lint_only),
            "{lint_only}: {}",
            run.stdout
        );
    }
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn rules_mark_fixes_that_need_unsafe_fixes() {
    let run = run_in(&workspace(), &["rules"]);
    assert_eq!(run.code, 0);
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn counts_are_spelled_in_the_singular_for_one() {
    // One unresolved object.
    let tmp = tempfile::tempdir().expect("tempdir");
    write(
        tmp.path(),
        "hr.yaml",
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: a\n  \
         namespace: ${NS}\nspec:\n  interval: 5m\n  chart:\n    spec:\n      chart: a\n      \
         sourceRef:\n        kind: HelmRepository\n        name: a\n",
    );
    let run = run_in(tmp.path(), &["lint", "hr.yaml"]);
    assert!(
        run.stdout
            .contains("note: 1 Flux object has a namespace or values that cannot be known offline"),
        "{}",
        run.stdout
    );
    // One file fixed, with one edit.
    let tmp = temp_with(&[("apps.yaml", "testdata/rules/FF110/fires-no-spec.yaml")]);
    let before = fixture_in(tmp.path(), "apps.yaml");
    let run = run_in(tmp.path(), &["fix", "--diff", "apps.yaml"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.ends_with("Would fix 1 file (1 edit).\n"),
        "{}",
        run.stderr
    );
    assert_eq!(fixture_in(tmp.path(), "apps.yaml"), before);
}

#[test]
fn a_long_line_is_cut_in_its_code_frame() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let padding = "x".repeat(1 << 20);
    let seed = modern_seed().replacen(
        "namespace: flux-system",
        &format!("namespace: flux-system # {padding}"),
        1,
    );
    write(tmp.path(), "nginx.yaml", &seed);
    let run = run_in(tmp.path(), &["lint", "nginx.yaml"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stdout.len() < 8 * 1024, "{} bytes", run.stdout.len());
    assert!(
        run.stdout
            .contains("16 |         namespace: flux-system # xxx"),
        "{}",
        &run.stdout[..2000.min(run.stdout.len())]
    );
    assert!(run.stdout.contains("x…\n"), "the cut is marked");
}

#[test]
fn no_problems_is_not_said_when_a_file_could_not_be_read() {
    let tmp = temp_with(&[("ok.yaml", "testdata/rules/FF101/ok-same-namespace.yaml")]);
    std::fs::write(tmp.path().join("bad.yaml"), b"kind: a\xffb\n").expect("write");
    let both = run_in(tmp.path(), &["lint", "."]);
    let alone = run_in(tmp.path(), &["lint", "bad.yaml"]);
    assert_eq!((both.code, alone.code), (2, 2));
    insta::assert_snapshot!(format!("{}{}", snapshot_text(&both), snapshot_text(&alone)));
}

#[test]
fn crds_without_any_crd_is_an_error() {
    let tmp = temp_with(&[("ok.yaml", "testdata/rules/FF101/ok-same-namespace.yaml")]);
    std::fs::create_dir(tmp.path().join("crds")).expect("mkdir");
    let run = run_in(tmp.path(), &["lint", "--crds", "crds", "ok.yaml"]);
    assert_eq!(run.code, 2);
    insta::assert_snapshot!(snapshot_text(&run));
}

#[test]
fn the_readme_example_is_what_lint_prints() {
    let readme = fixture("README.md");
    let start = readme.find("```text\n").expect("an example") + "```text\n".len();
    let frame = &readme[start..start + readme[start..].find("```").expect("its end")];
    let run = run_in(&workspace(), &["lint", "testdata/seed/before"]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains(frame), "{}", run.stdout);
    let summary = "Found 5 problems (4 errors, 1 warning) in 2 Flux objects from 1 file.";
    assert!(run.stdout.contains(summary) && readme.contains(summary));
    assert!(run.stdout.contains("[*] 3 fixable with `fluxfence fix`."));
    // And what the README says is left after the document's own rewrite.
    let after = run_in(
        &workspace(),
        &["lint", "--format", "json", "testdata/seed/after"],
    );
    assert_eq!(codes(&after), ["FF002", "FF110", "FF002"]);
}

#[test]
fn a_held_move_is_one_not_fixed_line_per_object_with_its_edit_count() {
    // The seed with its chart source in the app's own namespace, so that the move is possible.
    let tmp = tempfile::tempdir().expect("tempdir");
    write(
        tmp.path(),
        "nginx.yaml",
        &modern_seed().replace("namespace: flux-system", "namespace: nginx"),
    );
    let run = run_in(tmp.path(), &["fix", "--diff", "nginx.yaml"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "not fixed: nginx.yaml: HelmRelease nginx/nginx: move from `nginx` to `cluster-config` \
         (4 edits; unsafe: run with --unsafe-fixes)\n\
         not fixed: nginx.yaml: HelmRepository nginx/bitnami: move from `nginx` to \
         `cluster-config` (unsafe: run with --unsafe-fixes)\n\
         Would fix 1 file (1 edit).\n"
    );
}

#[test]
fn fix_refuses_a_config_namespace_that_is_not_a_namespace_name() {
    let tmp = temp_with(&[("nginx.yaml", SEED)]);
    for bad in ["", "Bad_NS!", "a\nb", "-a", &"a".repeat(64)] {
        let flag = format!("--config-namespace={bad}");
        let run = run_in(tmp.path(), &["fix", "--unsafe-fixes", &flag, "nginx.yaml"]);
        assert_eq!(run.code, 2, "{bad:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("is not a valid namespace name"),
            "{bad:?}: {}",
            run.stderr
        );
        let text = std::fs::read_to_string(tmp.path().join("nginx.yaml")).expect("read");
        assert_eq!(text, fixture(SEED), "{bad:?}");
    }
}

#[test]
fn export_admission_policy_prints_the_policies_and_what_they_leave_out() {
    let dir = temp_with(&[]);
    let run = run_in(
        dir.path(),
        &["export", "admission-policy", "--name-prefix", "ff-"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("# fluxfence admission policies for the built-in policy.")
    );
    assert!(
        run.stdout
            .contains("# Not exported (what CEL cannot judge from the object, and what the policy turns off):\n# - FF111")
    );
    for name in [
        "ff-tenants",
        "ff-deny",
        "ff-warn",
        "ff-kept",
        "ff-default-service-account",
    ] {
        assert!(
            run.stdout.contains(&format!("  name: {name}\n")),
            "{name}\n{}",
            run.stdout
        );
    }
    assert!(
        run.stdout.contains(
            "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingAdmissionPolicy\n"
        )
    );

    let beta = run_in(
        dir.path(),
        &[
            "export",
            "admission-policy",
            "--mutating-api-version",
            "v1beta1",
        ],
    );
    assert!(beta.stdout.contains(
        "apiVersion: admissionregistration.k8s.io/v1beta1\nkind: MutatingAdmissionPolicy\n"
    ));
}

#[test]
fn export_admission_policy_refuses_a_bad_policy_or_prefix() {
    let dir = temp_with(&[]);
    write(
        dir.path(),
        "policy.yaml",
        "enforce: true\nexemptNamespace: [x]\n",
    );
    let run = run_in(
        dir.path(),
        &["export", "admission-policy", "--policy", "policy.yaml"],
    );
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr.contains("policy.yaml:2:1: invalid policy"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());

    let run = run_in(
        dir.path(),
        &["export", "admission-policy", "--name-prefix", "Bad_"],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("--name-prefix `Bad_`"),
        "{}",
        run.stderr
    );

    let tenant = temp_with(&[]);
    write(
        tenant.path(),
        "policy.yaml",
        "tenants:\n  - name: team a\n    namespaces: [team-a]\n",
    );
    let run = run_in(
        tenant.path(),
        &["export", "admission-policy", "--policy", "policy.yaml"],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("tenant name `team a`"),
        "{}",
        run.stderr
    );
}
