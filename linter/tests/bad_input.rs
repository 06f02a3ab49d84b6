//! Bad input (DESIGN §9): every case gives a located error or a correct verdict — never a
//! panic, a hang, or a violation let through.
//!
//! Files come from `testdata/bad-input/` or are generated here (deep nesting, alias bombs,
//! invalid UTF-8, CRLF/BOM variants, an oversized sparse file), are written to a temporary
//! directory outside this repository and loaded with `Inventory::load`, as the CLI does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use fluxfence::{Inventory, Policy, Report, lint};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn bad_input(name: &str) -> Vec<u8> {
    let path = workspace().join("testdata/bad-input").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What a lint found: `CODE@line:col` per diagnostic, `file:line:col: message` per error.
#[derive(Debug, PartialEq)]
struct Outcome {
    findings: Vec<String>,
    errors: Vec<String>,
    unresolved: usize,
    objects: usize,
}

/// The codes these tests were written for; later rules do not change their expectations.
const SCOPE: &[&str] = &[
    "FF003", "FF101", "FF102", "FF110", "FF111", "FF120", "FF121", "FF130", "FF140",
];

fn lint_bytes(files: &[(&str, &[u8])]) -> (Outcome, Report) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut paths = Vec::new();
    for (name, bytes) in files {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        paths.push(path);
    }
    let report = lint(Inventory::load(&paths), &Policy::azure_default());
    let prefix = format!("{}/", tmp.path().display());
    let outcome = Outcome {
        findings: report
            .diagnostics
            .iter()
            .filter(|d| SCOPE.contains(&d.finding.code))
            .map(|d| format!("{}@{}:{}", d.finding.code, d.line, d.column))
            .collect(),
        errors: report
            .errors()
            .iter()
            .map(|e| e.to_string().replace(&prefix, ""))
            .collect(),
        unresolved: report.unresolved.len(),
        objects: report.objects_checked,
    };
    (outcome, report)
}

fn lint_one(name: &str, bytes: &[u8]) -> Outcome {
    lint_bytes(&[(name, bytes)]).0
}

fn lint_fixture(name: &str) -> Outcome {
    lint_one(name, &bad_input(name))
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------- malformed

#[test]
fn malformed_yaml_is_a_located_error() {
    let outcome = lint_fixture("malformed.yaml");
    assert_eq!(
        outcome.errors,
        strings(&["malformed.yaml:6:5: illegal placement of ':' indicator"])
    );
    assert!(outcome.findings.is_empty());
}

#[test]
fn malformed_json_is_a_located_error() {
    let outcome = lint_fixture("malformed.json");
    assert_eq!(
        outcome.errors,
        strings(&["malformed.json:3:25: while parsing a node, did not find expected node content"])
    );
}

#[test]
fn a_malformed_file_does_not_hide_the_findings_of_the_others() {
    let (outcome, report) = lint_bytes(&[
        ("broken.yaml", &bad_input("malformed.yaml")),
        ("nginx.yaml", seed().as_bytes()),
    ]);
    assert_eq!(outcome.errors.len(), 1);
    assert_eq!(
        outcome.findings,
        strings(&["FF110@8:1", "FF111@8:1", "FF101@16:20"])
    );
    assert_eq!(report.exit_code(), 2);
}

#[test]
fn documents_before_a_syntax_error_are_still_judged() {
    let text = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: a, namespace: cluster-config}\nspec:\n  serviceAccountName: flux-applier\n  chartRef: {kind: OCIRepository, name: a, namespace: flux-system}\n---\nkind: [\n";
    let outcome = lint_one("partial.yaml", text.as_bytes());
    assert_eq!(outcome.findings, strings(&["FF101@6:55"]));
    assert_eq!(outcome.errors.len(), 1, "{:?}", outcome.errors);
    assert!(
        outcome.errors[0].starts_with("partial.yaml:9:1: "),
        "{:?}",
        outcome.errors
    );
}

#[test]
fn every_document_is_parsed_and_each_yaml_error_reported() {
    // kustomize-controller fails a whole build on one document that does not parse, whatever
    // its kind: the malformed ConfigMap is an error as much as the malformed document whose
    // kind cannot be read; the HelmRelease between them is still judged.
    let text = "apiVersion: v1\nkind: ConfigMap\ndata: {a: [\n---\napiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: a, namespace: cluster-config}\nspec:\n  serviceAccountName: flux-applier\n  chartRef: {kind: OCIRepository, name: a, namespace: flux-system}\n---\na: &a [x, x]\nb: [*a, *a, *a]\n---\nkind: ConfigMap\nkind: HelmRelease\n";
    let outcome = lint_one("mixed.yaml", text.as_bytes());
    assert_eq!(outcome.findings, strings(&["FF101@10:55"]));
    assert_eq!(
        outcome.errors,
        strings(&[
            "mixed.yaml:4:1: while parsing a node, did not find expected node content",
            "mixed.yaml:16:1: mapping key `kind` is defined twice (kubectl refuses this too)"
        ])
    );
}

#[test]
fn helm_values_are_not_parsed_but_positions_after_them_hold() {
    // The values block holds an unclosed flow sequence no rule would read; the reference after
    // it is still found at its own line and column.
    let text = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: a, namespace: cluster-config}\nspec:\n  serviceAccountName: flux-applier\n  values:\n    image: {tag: \"1.0\"}\n    broken: [\n\n    # comment\n    list:\n      - é\n  chartRef: {kind: OCIRepository, name: a, namespace: flux-system}\n";
    let outcome = lint_one("values.yaml", text.as_bytes());
    assert_eq!(outcome.findings, strings(&["FF101@13:55"]));
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
}

#[test]
fn an_anchor_defined_in_helm_values_and_used_outside_still_loads() {
    let text = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: a, namespace: cluster-config}\nspec:\n  serviceAccountName: flux-applier\n  values:\n    ns: &ns flux-system\n  chartRef: {kind: OCIRepository, name: a, namespace: *ns}\n";
    let outcome = lint_one("anchor.yaml", text.as_bytes());
    assert_eq!(outcome.findings, strings(&["FF101@8:55"]));
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
}

// ---------------------------------------------------------------- wrong types, unknown kinds

#[test]
fn wrong_types_in_known_fields_are_treated_as_absent() {
    let outcome = lint_fixture("wrong-types.yaml");
    // `spec: []`: no service account (FF110 at `spec`); `sourceRef: "flux-system"` and
    // `chartRef: flux-system/podinfo` are no references; a list `serviceAccountName` is none
    // (FF110); `namespace: 42` is namespace "42" (FF101); non-list event sources and
    // non-mapping items are skipped; `metadata` as a string leaves the namespace unknown; a
    // list `apiVersion` and non-mapping documents are not objects.
    assert_eq!(
        outcome.findings,
        strings(&["FF110@7:1", "FF110@26:1", "FF101@28:60"])
    );
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    assert_eq!(outcome.unresolved, 1);
    assert_eq!(outcome.objects, 5);
}

#[test]
fn unknown_versions_of_flux_kinds_are_judged_and_other_kinds_ignored() {
    let outcome = lint_fixture("unknown-kinds.yaml");
    assert_eq!(outcome.findings, strings(&["FF101@7:61"]));
    assert!(outcome.errors.is_empty());
    assert_eq!(outcome.objects, 1);
}

// ---------------------------------------------------------------- resource limits

#[test]
fn deep_block_nesting_is_an_error_not_a_stack_overflow() {
    // A `kind` the linter reads: documents of other kinds are not parsed at all.
    let text: String = std::iter::once("kind: HelmRelease\n".to_owned())
        .chain((0..5_000).map(|i| format!("{}k{i}:\n", " ".repeat(i))))
        .collect();
    let outcome = lint_one("deep.yaml", text.as_bytes());
    assert_eq!(
        outcome.errors,
        strings(&["deep.yaml:202:201: nesting deeper than 200 levels"])
    );
}

#[test]
fn deep_flow_nesting_is_an_error_not_a_stack_overflow() {
    let text = format!(
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nspec: {}\n",
        "[".repeat(1_000_000)
    );
    let outcome = lint_one("deep.yaml", text.as_bytes());
    assert_eq!(outcome.errors.len(), 1);
    assert!(
        outcome.errors[0].starts_with("deep.yaml:3:"),
        "{:?}",
        outcome.errors
    );
    assert!(
        outcome.errors[0].ends_with(": recursion limit exceeded"),
        "{:?}",
        outcome.errors
    );
}

#[test]
fn deep_json_nesting_is_an_error_not_a_stack_overflow() {
    let text = format!("{}{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    let outcome = lint_one("deep.json", text.as_bytes());
    assert_eq!(outcome.errors.len(), 1, "{:?}", outcome.errors);
    assert!(outcome.errors[0].starts_with("deep.json:1:"));
}

#[test]
fn an_alias_bomb_is_refused_quickly() {
    let mut text = String::from("kind: HelmRelease\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            vec![format!("*a{p}"); 10].join(", ")
        ));
    }
    let started = std::time::Instant::now();
    let outcome = lint_one("bomb.yaml", text.as_bytes());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // Aliases of a1..a4 cost 110 + 1 110 + 11 110 + 111 110 = 123 440 nodes; the first alias
    // in a5 (111 111 more) exceeds the budget of 200 000: line 7, the `*` at column 10.
    assert_eq!(
        outcome.errors,
        strings(&[
            "bomb.yaml:7:10: aliases expand to more than 200000 nodes; refusing (alias bomb?)"
        ])
    );
}

#[test]
fn a_file_over_the_size_limit_is_reported_not_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("huge.yaml");
    // A sparse file: its length is over the limit without writing the bytes.
    std::fs::File::create(&path)
        .and_then(|file| file.set_len(fluxfence::input::MAX_FILE_BYTES + 1))
        .expect("sparse file");
    // Named, it is read as any file (a pipe, say); walked, as a regular file.
    for given in [path, tmp.path().to_path_buf()] {
        let report = lint(
            Inventory::load(std::slice::from_ref(&given)),
            &Policy::azure_default(),
        );
        let errors: Vec<String> = report
            .errors()
            .iter()
            .map(|e| {
                e.to_string()
                    .replace(&format!("{}/", tmp.path().display()), "")
            })
            .collect();
        assert_eq!(
            errors,
            strings(&["huge.yaml: file is 268435457 bytes, over the 268435456-byte limit"]),
            "{}",
            given.display()
        );
        assert_eq!(report.exit_code(), 2);
    }
}

// ---------------------------------------------------------------- encodings

#[test]
fn invalid_utf8_is_located_at_the_bad_byte() {
    let outcome = lint_one(
        "latin1.yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: caf\xe9\n",
    );
    assert_eq!(
        outcome.errors,
        strings(&["latin1.yaml:4:12: invalid UTF-8; manifests must be UTF-8 text"])
    );
}

#[test]
fn invalid_utf8_column_counts_characters_not_bytes() {
    let mut bytes = "a: ü\nb: 日本".as_bytes().to_vec();
    bytes.push(0xff);
    bytes.extend_from_slice(b"\n");
    let outcome = lint_one("mixed.yaml", &bytes);
    assert_eq!(
        outcome.errors,
        strings(&["mixed.yaml:2:6: invalid UTF-8; manifests must be UTF-8 text"])
    );
}

/// The seed on current API versions (its beta versions are another rule's business).
fn seed() -> String {
    std::fs::read_to_string(workspace().join("testdata/seed/before/nginx.yaml"))
        .expect("seed")
        .replace(
            "helm.toolkit.fluxcd.io/v2beta1",
            "helm.toolkit.fluxcd.io/v2",
        )
        .replace(
            "source.toolkit.fluxcd.io/v1beta1",
            "source.toolkit.fluxcd.io/v1",
        )
}

const SEED_FINDINGS: [&str; 3] = ["FF110@8:1", "FF111@8:1", "FF101@16:20"];

#[test]
fn crlf_files_keep_positions_and_verdicts() {
    let crlf = seed().replace('\n', "\r\n");
    let (outcome, report) = lint_bytes(&[("crlf.yaml", crlf.as_bytes())]);
    assert_eq!(outcome.findings, strings(&SEED_FINDINGS));
    let ff101 = &report.diagnostics[2];
    assert_eq!((ff101.end_line, ff101.end_column), (16, 31));
}

#[test]
fn a_byte_order_mark_keeps_positions_and_verdicts() {
    let bom = format!("\u{feff}{}", seed());
    let outcome = lint_one("bom.yaml", bom.as_bytes());
    assert_eq!(outcome.findings, strings(&SEED_FINDINGS));
    assert!(outcome.errors.is_empty());
}

#[test]
fn a_cross_namespace_ref_in_a_crlf_bom_file_still_fires_at_its_position() {
    let both = format!("\u{feff}{}", seed().replace('\n', "\r\n"));
    let (outcome, report) = lint_bytes(&[("both.yaml", both.as_bytes())]);
    assert_eq!(outcome.findings, strings(&SEED_FINDINGS));
    assert_eq!(report.exit_code(), 1);
    // The code frame shows the line without its carriage return.
    let text = fluxfence::output::render(
        &report,
        fluxfence::output::Format::Text,
        &fluxfence::output::Options::default(),
    );
    assert!(
        text.contains("16 |         namespace: flux-system\n"),
        "{text}"
    );
}

#[test]
fn a_finding_on_the_first_line_after_a_bom_is_at_column_1() {
    // No spec: FF110 points at the object itself, which starts right after the BOM.
    let text = "\u{feff}apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: a, namespace: cluster-config}\n";
    let outcome = lint_one("bom-first-line.yaml", text.as_bytes());
    assert_eq!(outcome.findings, strings(&["FF110@1:1"]));
}

#[test]
fn a_multi_document_crlf_file_with_a_suppression() {
    let text = seed()
        .replace(
            "        namespace: flux-system\n",
            "        namespace: flux-system # fluxfence:ignore FF101 -- mirror\n",
        )
        .replace('\n', "\r\n");
    let outcome = lint_one("crlf-suppressed.yaml", text.as_bytes());
    assert_eq!(outcome.findings, strings(&["FF110@8:1", "FF111@8:1"]));
}

// ---------------------------------------------------------------- empty, SOPS, variables, anchors

#[test]
fn empty_files_and_documents_are_fine() {
    for name in ["empty.yaml", "empty-documents.yaml"] {
        let outcome = lint_fixture(name);
        assert_eq!(
            outcome,
            Outcome {
                findings: vec![],
                errors: vec![],
                unresolved: 0,
                objects: 0
            },
            "{name}"
        );
    }
    let outcome = lint_one("blank.yaml", b"\n\n   \n# comment\n");
    assert!(outcome.errors.is_empty() && outcome.findings.is_empty());
}

#[test]
fn sops_encrypted_values_do_not_crash_and_the_rest_is_judged() {
    let outcome = lint_fixture("sops.yaml");
    assert_eq!(outcome.findings, strings(&["FF101@35:16"]));
    assert!(outcome.errors.is_empty());
    assert_eq!(outcome.objects, 1);
}

#[test]
fn substitution_variables_are_never_judged_as_allowed_or_denied() {
    let outcome = lint_fixture("substitutions.yaml");
    // The HelmRelease's namespace is a variable: unresolved, not judged. The Kustomization
    // is in cluster-config; its `${SERVICE_ACCOUNT}` is not checked, its reference is.
    assert_eq!(outcome.findings, strings(&["FF101@30:16"]));
    assert_eq!(outcome.unresolved, 1);
}

#[test]
fn redefined_anchors_and_merge_keys_are_accepted() {
    let outcome = lint_fixture("duplicate-anchors.yaml");
    // The merged reference points into the anchored mapping it came from.
    assert_eq!(outcome.findings, strings(&["FF101@20:20", "FF101@33:67"]));
    assert!(outcome.errors.is_empty());
}

#[test]
fn duplicate_keys_are_an_error_or_judged_by_the_value_that_applies() {
    let outcome = lint_fixture("duplicate-keys.yaml");
    assert!(
        !outcome.errors.is_empty() || outcome.findings.contains(&"FF101@17:20".to_owned()),
        "{outcome:?}"
    );
}

#[test]
fn a_list_kind_with_bad_items_is_judged_item_by_item() {
    let text = "apiVersion: v1\nkind: List\nitems:\n  - just a string\n  - apiVersion: helm.toolkit.fluxcd.io/v2\n    kind: HelmRelease\n    metadata: {name: a, namespace: cluster-config}\n    spec:\n      serviceAccountName: flux-applier\n      chartRef: {kind: OCIRepository, name: a, namespace: flux-system}\n  - ~\n";
    let outcome = lint_one("list.yaml", text.as_bytes());
    assert_eq!(outcome.findings, strings(&["FF101@10:59"]));
    assert_eq!(outcome.objects, 1);
}
