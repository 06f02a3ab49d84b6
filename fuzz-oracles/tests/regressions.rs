//! Replays every input kept under `testdata/fuzz/<target>/` (crashes and disagreements the
//! fuzzers found, and inputs written by hand to pin an oracle) through the target's oracle, on
//! a stable toolchain: what the fuzzers once found stays fixed without nightly.

use std::path::{Path, PathBuf};

fn kept_inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/fuzz")
        .join(target);
    let mut inputs: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    inputs.sort();
    inputs
}

fn replay(target: &str) {
    let inputs = kept_inputs(target);
    assert!(!inputs.is_empty(), "no kept inputs for {target}");
    for input in inputs {
        let data = match std::fs::read(&input) {
            Ok(data) => data,
            Err(e) => panic!("{}: {e}", input.display()),
        };
        println!("{}", input.display());
        assert!(oracles::check(target, &data), "unknown target {target}");
    }
}

#[test]
fn yaml_block_vs_parser() {
    replay("yaml_block_vs_parser");
}

#[test]
fn lint_bytes() {
    replay("lint_bytes");
}

#[test]
fn fix_roundtrip() {
    replay("fix_roundtrip");
}

#[test]
fn admission_review() {
    replay("admission_review");
}

#[test]
fn policy_file() {
    replay("policy_file");
}

#[test]
fn kustomize_build() {
    replay("kustomize_build");
}
