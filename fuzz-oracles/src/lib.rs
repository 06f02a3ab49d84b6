//! What fuzzing holds fluxfence to, one module per input boundary.
//!
//! Each module's `check` takes the fuzzer's bytes and panics when fluxfence answers wrongly:
//! libFuzzer reports a panic as a crash and keeps the input. The targets in `fuzz/` are thin
//! wrappers around these functions, and `tests/regressions.rs` replays the inputs kept under
//! `testdata/fuzz/<target>/` through them on a stable toolchain.

pub mod admission_review;
pub mod fix_roundtrip;
pub mod kustomize_build;
pub mod lint_bytes;
pub mod policy_file;
pub mod yaml_block_vs_parser;

/// The names of the targets, as `fuzz/Cargo.toml` and `testdata/fuzz/` spell them.
pub const TARGETS: [&str; 6] = [
    "yaml_block_vs_parser",
    "lint_bytes",
    "fix_roundtrip",
    "admission_review",
    "policy_file",
    "kustomize_build",
];

/// Runs the oracle of `target` on `data`; `false` for an unknown target.
pub fn check(target: &str, data: &[u8]) -> bool {
    let check: fn(&[u8]) = match target {
        "yaml_block_vs_parser" => yaml_block_vs_parser::check,
        "lint_bytes" => lint_bytes::check,
        "fix_roundtrip" => fix_roundtrip::check,
        "admission_review" => admission_review::check,
        "policy_file" => policy_file::check,
        "kustomize_build" => kustomize_build::check,
        _ => return false,
    };
    check(data);
    true
}

/// Whether `(line, column)`, 1-based with the column counted in characters, names a place
/// in `text`: a line it has, a column at most one past that line's end.
pub fn is_position_in(text: &str, line: usize, column: usize) -> bool {
    if line == 0 || column == 0 {
        return false;
    }
    // `split('\n')` yields one more piece than there are line breaks: the last line.
    match text.split('\n').nth(line - 1) {
        Some(content) => column <= content.chars().count() + 1,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_within_the_text() {
        let text = "ab\ncé\r\n";
        assert!(is_position_in(text, 1, 3));
        assert!(is_position_in(text, 2, 4), "at the CR");
        assert!(is_position_in(text, 3, 1), "the empty last line");
        assert!(!is_position_in(text, 1, 4));
        assert!(!is_position_in(text, 4, 1));
        assert!(!is_position_in(text, 0, 1));
        assert!(!is_position_in(text, 1, 0));
    }
}
