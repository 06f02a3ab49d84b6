//! The fixer's postcondition, checked before anything is written: every reference of a built
//! Flux object that resolved before the fix still resolves after it, and the linter finds
//! nothing in the result that it did not find in the input.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::build::{Builds, tree};
use crate::input::{Inventory, Source};
use crate::lint::lint;
use crate::model::FluxObject;
use crate::policy::Policy;

use super::references::references;

/// Where a reference is written: `(file, document of the file, pointer)`; edits change values,
/// never which documents a file has.
type Site = (String, usize, String);

/// Checks the fixed sources against the original ones; the error says which reference or
/// finding is new.
pub fn check(
    root: Option<std::path::PathBuf>,
    before: Vec<Source>,
    after: Vec<Source>,
    policy: &Policy,
) -> Result<(), String> {
    let before = Inventory::from_sources(root.clone(), before);
    let after = Inventory::from_sources(root, after);
    let resolved_before = resolution(&before, &crate::build::build(&before));
    let resolved_after = resolution(&after, &crate::build::build(&after));
    let mut broken: Vec<String> = resolved_after
        .iter()
        .filter(|(site, (ok, _))| !ok && resolved_before.get(*site).is_some_and(|(ok, _)| *ok))
        .map(|(_, (_, what))| what.clone())
        .collect();
    broken.sort();
    if let Some(first) = broken.first() {
        return Err(format!(
            "the fix would break {} reference(s), so nothing was written; the first: {first}. \
             Please report this with the input",
            broken.len()
        ));
    }
    let (findings_before, errors_before) = findings(before, policy);
    let (findings_after, errors_after) = findings(after, policy);
    // Errors name lines, which the fix shifts: they are counted, not compared.
    if errors_after.len() > errors_before.len() {
        let first = errors_after
            .iter()
            .find(|e| !errors_before.contains(e))
            .or(errors_after.first())
            .map_or_else(String::new, |e| format!(": {e}"));
        return Err(format!(
            "the fixed files would not load, so nothing was written{first}. \
             Please report this with the input"
        ));
    }
    for (key, count) in &findings_after {
        if findings_before.get(key).copied().unwrap_or(0) < *count {
            let (code, file, pointer, object) = key;
            return Err(format!(
                "the fix would add a finding, so nothing was written: {code} at {file} \
                 ({object} {pointer}). Please report this with the input"
            ));
        }
    }
    Ok(())
}

/// Every reference site of every built Flux object: whether it resolves in every build that
/// gives the object, and the reference described for messages.
fn resolution(inventory: &Inventory, builds: &Builds) -> HashMap<Site, (bool, String)> {
    let existing: HashSet<(&str, &str, &str)> = builds
        .objects
        .iter()
        .filter_map(|b| {
            let root = &b.object.root;
            Some((tree::kind(root), b.object.namespace()?, tree::name(root)))
        })
        .collect();
    let mut ordinal: HashMap<usize, usize> = HashMap::new();
    let mut per_file: HashMap<usize, usize> = HashMap::new();
    for (r, resource) in inventory.resources.iter().enumerate() {
        let next = per_file.entry(resource.file).or_default();
        ordinal.insert(r, *next);
        *next += 1;
    }
    let mut out: HashMap<Site, (bool, String)> = HashMap::new();
    for built in &builds.objects {
        let Some(own) = built.object.namespace().filter(|ns| !ns.contains("${")) else {
            continue;
        };
        let Some(object) = FluxObject::from_node(crate::yaml::Node::clone(&built.object.root))
        else {
            continue;
        };
        let resource = &inventory.resources[built.object.resource];
        let path = &inventory.files[resource.file].path;
        for reference in references(&object) {
            if reference.optional || reference.name == "*" || reference.name.contains("${") {
                continue;
            }
            let namespace = reference.target_namespace(own);
            let ok = existing.contains(&(reference.kind.as_str(), namespace, &reference.name));
            let site = (
                path.clone(),
                ordinal[&built.object.resource],
                reference.pointer.clone(),
            );
            let what = format!(
                "{} {own}/{} ({path}) {} names {} {namespace}/{}, which does not exist",
                tree::kind(&built.object.root),
                tree::name(&built.object.root),
                reference.field(),
                reference.kind,
                reference.name
            );
            let entry = out.entry(site).or_insert((true, what.clone()));
            if !ok && entry.0 {
                *entry = (false, what);
            }
        }
    }
    out
}

/// The linter's findings, counted by `(code, file, pointer, Kind/name)`: a move changes the
/// namespace and the lines of an object, not what it is.
/// How many findings there are of one rule at one field of one object in one file:
/// `(rule, file, pointer, Kind/name)`.
type FindingCounts = BTreeMap<(String, String, String, String), usize>;

/// The findings of `inventory`, counted, and its input errors (without their positions, which
/// the fix shifts).
fn findings(inventory: Inventory, policy: &Policy) -> (FindingCounts, Vec<String>) {
    let report = lint(inventory, policy);
    let mut out = BTreeMap::new();
    for d in &report.diagnostics {
        let object = d.object.as_deref().map_or(String::new(), |o| {
            let mut parts = o.splitn(3, '/');
            let kind = parts.next().unwrap_or_default();
            let name = parts.last().unwrap_or_default();
            format!("{kind}/{name}")
        });
        let key = (
            d.finding.code.to_owned(),
            d.file.clone(),
            d.finding.pointer.clone(),
            object,
        );
        *out.entry(key).or_insert(0) += 1;
    }
    let errors = report
        .errors()
        .iter()
        .map(|e| format!("{}: {}", e.file, e.message))
        .collect();
    (out, errors)
}
