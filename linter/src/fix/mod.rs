//! `fluxfence fix`: rewrites files into the multi-tenant layout with byte-range edits, so every
//! byte outside an edit (comments, quoting, key order, anchors, line ends) survives.
//!
//! Fixes are planned (`plan`) as `(object, JSON pointer, value)` operations on the built
//! objects, lowered (`lower`) to text edits, and the linter is run again on the result until
//! nothing is left to fix; the result is then checked (`verify`) before the caller writes it
//! (`write`), all files or none.

use std::collections::{HashMap, HashSet};

use crate::input::{Inventory, Source};
use crate::policy::Policy;
use crate::yaml::Span;

mod crds;
mod lower;
mod patches;
mod plan;
pub mod references;
mod verify;
mod write;

pub use lower::lower;
pub use verify::check as check_postcondition;
pub use write::write_all;

use plan::{Planned, lower_planned};

/// Passes before giving up: each pass can only enable edits the previous one made possible.
const MAX_PASSES: usize = 4;

#[derive(Debug, Clone)]
pub struct FixOptions {
    /// Also apply fixes that change behaviour (the namespace move).
    pub unsafe_fixes: bool,
    /// Overrides the policy's `configNamespace`.
    pub config_namespace: Option<String>,
}

/// A replacement of `span` in one file's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextEdit {
    pub span: Span,
    pub text: String,
}

/// What the fixer did and did not do.
#[derive(Default)]
pub struct FixOutcome {
    /// `(file path, original text, fixed text)` of every changed file.
    pub changed: Vec<(String, String, String)>,
    /// One line per applied fix.
    pub applied: Vec<String>,
    /// Fixes that exist but were not applied (unsafe without `--unsafe-fixes`, or impossible),
    /// each with the reason.
    pub skipped: Vec<String>,
    /// The inventory after the last pass (what `lint --fix` reports on).
    pub inventory: Inventory,
}

/// Fixes `inventory` until stable. Never writes: the caller decides (write or show a diff).
pub fn fix(
    inventory: Inventory,
    policy: &Policy,
    options: &FixOptions,
) -> Result<FixOutcome, String> {
    if !inventory.is_complete() {
        // Moving an object needs its neighbours: which kinds a kustomization applies decides
        // whether its `namespace:` may change.
        return Err(
            "the input was loaded for linting, which skips documents no rule reads; \
                    load it with `Inventory::load_for_fix` to fix it"
                .into(),
        );
    }
    let mut policy = policy.clone();
    if let Some(ns) = &options.config_namespace {
        check_namespace_name(ns)?;
        policy.config_namespace = ns.clone();
        if let Some(sa) = policy.default_service_account.as_mut()
            && !sa.namespaces.contains(ns)
        {
            sa.namespaces.push(ns.clone());
        }
    }
    check_namespace_name(&policy.config_namespace)?;
    let originals = sources_of(&inventory);
    let texts: HashMap<&str, &str> = originals
        .iter()
        .map(|s| (s.path.as_str(), s.text.as_str()))
        .collect();
    let mut inventory = inventory;
    let mut outcome = FixOutcome::default();
    for pass in 0..=MAX_PASSES {
        let plan::Plan {
            apply: plan,
            not_fixed,
        } = plan::plan(&inventory, &policy, options);
        if pass == 0 {
            outcome.skipped = not_fixed;
        }
        let (plan, refused) = crds::without_refused(&inventory, plan);
        for reason in refused {
            if !outcome.skipped.contains(&reason) {
                outcome.skipped.push(reason);
            }
        }
        if plan.is_empty() {
            outcome.changed = inventory
                .files
                .iter()
                .filter_map(|f| {
                    let original = texts.get(f.path.as_str())?;
                    (*original != f.text)
                        .then(|| (f.path.clone(), (*original).to_owned(), f.text.clone()))
                })
                .collect();
            if !outcome.changed.is_empty() {
                let fixed = sources_of(&inventory);
                verify::check(inventory.root.clone(), originals.clone(), fixed, &policy)?;
            }
            outcome.inventory = inventory;
            return Ok(outcome);
        }
        if pass == MAX_PASSES {
            break;
        }
        outcome.applied.extend(
            plan.iter()
                .map(|p| format!("{}: {}", inventory.files[p.file].path, p.description)),
        );
        inventory = apply(inventory, &plan)?;
    }
    Err(format!(
        "fixes did not converge after {MAX_PASSES} passes; please report this with the input"
    ))
}

fn apply(inventory: Inventory, plan: &[Planned]) -> Result<Inventory, String> {
    let mut inventory = inventory;
    let mut pending: Vec<&Planned> = plan.iter().collect();
    while !pending.is_empty() {
        // Edits that each create the same missing mapping (`spec:` for `spec.releaseName`
        // and `spec.targetNamespace`) would each write it: one goes now, the others are
        // lowered again on the text it wrote.
        let mut created: HashSet<(Option<usize>, String)> = HashSet::new();
        let (now, later): (Vec<&Planned>, Vec<&Planned>) =
            pending.into_iter().partition(|planned| {
                missing_parent(&inventory, planned)
                    .is_none_or(|parent| created.insert((planned.resource, parent)))
            });
        inventory = apply_together(inventory, &now)?;
        pending = later;
    }
    Ok(inventory)
}

/// The pointer of the first mapping a planned `Set` must create before it can write its
/// value (`/spec` for `/spec/releaseName` when the object has no `spec`), if any.
fn missing_parent(inventory: &Inventory, planned: &Planned) -> Option<String> {
    let root = inventory.resources[planned.resource?].root()?;
    let crate::diagnostic::FixOp::Set { pointer, .. } = &planned.op;
    let keys: Vec<&str> = pointer.split('/').skip(1).collect();
    let mut node = root;
    for (depth, key) in keys.iter().enumerate() {
        let unescaped = key.replace("~1", "/").replace("~0", "~");
        match node.get(&unescaped) {
            Some(next) => node = next,
            None if depth + 1 < keys.len() => {
                return Some(format!("/{}", keys[..=depth].join("/")));
            }
            None => return None,
        }
    }
    None
}

/// Applies changes whose edits do not overlap, in one splice per file.
fn apply_together(inventory: Inventory, plan: &[&Planned]) -> Result<Inventory, String> {
    let mut edits: HashMap<usize, Vec<TextEdit>> = HashMap::new();
    for planned in plan {
        let file = &inventory.files[planned.file];
        match lower_planned(&inventory, planned) {
            Some(lowered) => edits.entry(planned.file).or_default().extend(lowered),
            None => {
                return Err(format!(
                    "{}: cannot apply `{}`",
                    file.path, planned.description
                ));
            }
        }
    }
    let (root, mut sources) = inventory.into_sources();
    for (file, mut file_edits) in edits {
        let source = &mut sources[file];
        source.text = splice(&source.text, &mut file_edits)?;
    }
    Ok(Inventory::from_sources(root, sources))
}

/// Applies edits back to front. Overlapping edits are a bug in the plan, not user error.
pub fn splice(text: &str, edits: &mut Vec<TextEdit>) -> Result<String, String> {
    edits.sort_by_key(|e| (e.span.start, e.span.end));
    edits.dedup();
    for pair in edits.windows(2) {
        if pair[0].span.end > pair[1].span.start {
            return Err(format!(
                "overlapping edits at bytes {} and {}",
                pair[0].span.start, pair[1].span.start
            ));
        }
    }
    let mut out = text.to_owned();
    for edit in edits.iter().rev() {
        out.replace_range(edit.span.start..edit.span.end, &edit.text);
    }
    Ok(out)
}

/// A unified diff of one file, for `--diff`.
pub fn unified_diff(path: &str, before: &str, after: &str) -> String {
    let path = path.trim_start_matches("./").trim_start_matches('/');
    let mut diff = similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string();
    if !diff.is_empty() && !diff.ends_with('\n') {
        diff.push('\n');
    }
    diff
}

/// A copy of the inventory's files, to build the original and the fixed repository again.
fn sources_of(inventory: &Inventory) -> Vec<Source> {
    inventory
        .files
        .iter()
        .map(|f| Source {
            path: f.path.clone(),
            rel: f.rel.clone(),
            text: f.text.clone(),
            reported: f.reported,
        })
        .collect()
}

/// The config namespace must be a namespace name (an RFC 1123 label, as Kubernetes
/// validates `metadata.name` of a Namespace): it is written into manifests as it is.
pub fn check_namespace_name(namespace: &str) -> Result<(), String> {
    let valid = !namespace.is_empty()
        && namespace.len() <= 63
        && namespace
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !namespace.starts_with('-')
        && !namespace.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "config namespace {namespace:?} is not a valid namespace name: at most 63 \
             characters, lowercase letters, digits and `-`, starting and ending with a letter \
             or digit (RFC 1123 label)"
        ))
    }
}
