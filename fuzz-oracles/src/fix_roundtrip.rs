//! Any manifest that lints (no input error) → `fix` with unsafe fixes (the namespace move
//! included) succeeds, and:
//! - what it writes still parses and lints without an input error;
//! - a second fix of its output changes nothing (the fixer converged);
//! - every byte it removed lay inside a scalar of the original (the value it replaced):
//!   comments, quoting, indentation and every other key survive.
//!
//! The first byte picks whether the manifest stands alone or is listed by a
//! `kustomization.yaml` that sets its namespace (the move then edits that file).

use std::path::PathBuf;

use fluxfence::fix::{FixOptions, fix};
use fluxfence::input::Source;
use fluxfence::yaml::{Node, Span, Value, load_documents};
use fluxfence::{Inventory, Policy, lint};
use similar::{Algorithm, DiffOp, capture_diff_slices};

const MANIFEST: &str = "apps/manifest.yaml";
const KUSTOMIZATION: &str = "apps/kustomization.yaml";
const KUSTOMIZATION_TEXT: &str = "namespace: team-a\nresources:\n  - manifest.yaml\n";

pub fn check(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let Ok(manifest) = std::str::from_utf8(bytes) else {
        return; // does not lint: invalid UTF-8 is an input error
    };
    let mut files = vec![(MANIFEST, manifest.to_owned())];
    if selector % 2 == 1 {
        files.push((KUSTOMIZATION, KUSTOMIZATION_TEXT.to_owned()));
    }
    let policy = Policy::azure_default();
    if !lint(inventory(&files), &policy).errors().is_empty() {
        return;
    }
    let options = FixOptions {
        unsafe_fixes: true,
        config_namespace: None,
    };
    let outcome = match fix(inventory(&files), &policy, &options) {
        Ok(outcome) => outcome,
        Err(e) => panic!("fix failed on a manifest that lints: {e}"),
    };
    for (path, before, after) in &outcome.changed {
        if let Err(e) = load_documents(after, |_| {}) {
            panic!("{path}: the fixed text does not parse ({e:?}):\n{after}");
        }
        if let Some(span) = removed_outside_scalars(before, after) {
            panic!(
                "{path}: the fix removed {:?}, outside any value it replaces:\n--- before\n{before}\n--- after\n{after}",
                &before.as_bytes()[span.start..span.end]
            );
        }
    }
    let fixed: Vec<(&str, String)> = files
        .iter()
        .map(|(rel, text)| {
            let after = outcome
                .changed
                .iter()
                .find(|(path, _, _)| path == rel)
                .map_or_else(|| text.clone(), |(_, _, after)| after.clone());
            (*rel, after)
        })
        .collect();
    let relinted = lint(inventory(&fixed), &policy);
    if let Some(error) = relinted.errors().first() {
        panic!("the fixed files do not lint: {error}");
    }
    let again = match fix(inventory(&fixed), &policy, &options) {
        Ok(again) => again,
        Err(e) => panic!("a second fix failed: {e}"),
    };
    if let Some((path, before, after)) = again.changed.first() {
        panic!("a second fix changed {path}:\n--- first fix\n{before}\n--- second fix\n{after}");
    }
}

fn inventory(files: &[(&str, String)]) -> Inventory {
    let sources = files
        .iter()
        .map(|(rel, text)| Source {
            path: (*rel).to_owned(),
            rel: PathBuf::from(rel),
            text: text.clone(),
            reported: true,
        })
        .collect();
    Inventory::from_sources(None, sources)
}

/// The first run of bytes `before` lost on the way to `after` that no scalar of `before`
/// covers. A fix only replaces values and inserts keys, so nothing else may go.
fn removed_outside_scalars(before: &str, after: &str) -> Option<Span> {
    let mut scalars = Vec::new();
    // The original lints, so it parses.
    let _ = load_documents(before, |document| {
        scalar_spans(&document.root, &mut scalars)
    });
    let ops = capture_diff_slices(Algorithm::Myers, before.as_bytes(), after.as_bytes());
    ops.iter().find_map(|op| {
        let (start, len) = match *op {
            DiffOp::Delete {
                old_index, old_len, ..
            }
            | DiffOp::Replace {
                old_index, old_len, ..
            } => (old_index, old_len),
            _ => return None,
        };
        let removed = Span::new(start, start + len);
        let covered = scalars
            .iter()
            .any(|s| s.start <= removed.start && removed.end <= s.end);
        (!covered).then_some(removed)
    })
}

fn scalar_spans(node: &Node, out: &mut Vec<Span>) {
    match &node.value {
        Value::Scalar(_) => out.push(node.span),
        Value::Seq(items) => items.iter().for_each(|item| scalar_spans(item, out)),
        Value::Map(entries) => entries.iter().for_each(|(key, value)| {
            scalar_spans(key, out);
            scalar_spans(value, out);
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_replaced_values_may_lose_bytes() {
        let before = "a: nginx # keep\nb: 1\n";
        // A value replaced, a key inserted: nothing outside a scalar lost.
        assert_eq!(
            removed_outside_scalars(before, "a: cluster-config # keep\nc: 2\nb: 1\n"),
            None
        );
        // A comment dropped.
        assert_eq!(
            removed_outside_scalars(before, "a: nginx\nb: 1\n"),
            Some(Span::new(8, 15))
        );
        // Indentation of another key changed.
        assert!(removed_outside_scalars("a:\n  b: 1\n", "a:\n b: 1\n").is_some());
    }
}
