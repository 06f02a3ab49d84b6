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
        if let Some(at) = lost_outside_scalars(before, after) {
            panic!(
                "{path}: the fix lost byte {at} ({:?}), outside any value it replaces:\n\
                 --- before\n{before}\n--- after\n{after}",
                char::from(before.as_bytes()[at])
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

/// Where `before` first loses a byte outside its scalars on the way to `after`. A fix only
/// replaces values and inserts keys, so the bytes outside values must all be in `after`, in
/// their order (with new text between them), and every comment whole.
fn lost_outside_scalars(before: &str, after: &str) -> Option<usize> {
    let mut scalars = Vec::new();
    // The original lints, so it parses.
    let _ = load_documents(before, |document| {
        scalar_spans(&document.root, &mut scalars)
    });
    let inside = |at: usize| scalars.iter().any(|s: &Span| s.start <= at && at < s.end);
    let (old, new) = (before.as_bytes(), after.as_bytes());
    let mut next = 0;
    for (at, byte) in old.iter().enumerate() {
        if inside(at) {
            continue;
        }
        match new[next.min(new.len())..].iter().position(|b| b == byte) {
            Some(found) => next += found + 1,
            None => return Some(at),
        }
        let starts_comment = *byte == b'#' && (at == 0 || matches!(old[at - 1], b' ' | b'\n'));
        if starts_comment {
            let end = old[at..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(old.len(), |n| at + n);
            if !after.contains(&before[at..end]) {
                return Some(at);
            }
        }
    }
    None
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
        let before = "a: nginx # keep\nb: {c: 1}\n";
        // A value replaced, keys inserted, in a block and in a flow mapping.
        let after = "a: cluster-config # keep\nc: 2\nb: {c: 1, d: x}\n";
        assert_eq!(lost_outside_scalars(before, after), None);
        // A comment dropped, or cut short.
        assert_eq!(
            lost_outside_scalars(before, "a: nginx\nb: {c: 1}\n"),
            Some(9)
        );
        assert_eq!(
            lost_outside_scalars(before, "a: nginx # k\nb: {c: 1}\n # eep"),
            Some(9)
        );
        // Indentation of another key changed; a flow mapping's brace lost.
        assert_eq!(lost_outside_scalars("a:\n  b: 1\n", "a:\n b: 1\n"), Some(6));
        assert_eq!(
            lost_outside_scalars(before, "a: nginx # keep\nb: c: 1}\n"),
            Some(19)
        );
    }
}
