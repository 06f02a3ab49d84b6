//! Patches that select an object by the namespace a move takes it out of: kustomize would no
//! longer apply them after the move, so they hold the move back.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::build::{Builds, Producer};
use crate::input::Inventory;
use crate::kustomize::{Selects, normalize};
use crate::model::{EffectiveNamespace, NamespaceOrigin};
use crate::yaml::Node;

use super::plan::known;

/// A patch that selects objects by namespace (a `target:` with a namespace, or a
/// strategic-merge patch), with the files its build reads: only objects in those can be
/// selected by it.
pub(super) struct ScopedPatch {
    /// The kustomization file that declares it, whose own `namespace:` a move may rewrite;
    /// `None` for a Flux Kustomization's `spec.patches`.
    kustomization: Option<usize>,
    /// Whether kustomize matches it after the kustomization's own `namespace:` is applied.
    after_namespace: bool,
    selects: Selecting,
    /// The patch, named for the user: `patches[0] of apps/kustomization.yaml`.
    named: String,
    builds: HashSet<usize>,
}

/// What a [`ScopedPatch`] selects, its patterns compiled and its file found once.
enum Selecting {
    Matching {
        kind: Option<Pattern>,
        name: Option<Pattern>,
        namespace: Pattern,
    },
    /// The objects a strategic-merge patch file names: the resources of that file.
    NamedIn(Vec<usize>),
}

impl Selecting {
    /// What `selects`, written in a kustomization in `dir`, selects. `None` when it cannot
    /// select an object by namespace: a selector without one selects the object wherever it
    /// is, and a patch file outside the input names nothing here.
    fn of(inventory: &Inventory, selects: &Selects, dir: &Path) -> Option<Selecting> {
        match selects {
            Selects::Matching {
                kind,
                name,
                namespace,
            } => Some(Selecting::Matching {
                kind: kind.as_deref().map(Pattern::new),
                name: name.as_deref().map(Pattern::new),
                namespace: Pattern::new(namespace.as_deref()?),
            }),
            Selects::NamedIn(path) => {
                let rel = normalize(dir, path)?;
                let named = (inventory.resources.iter().enumerate())
                    .filter(|(_, named)| inventory.files[named.file].rel == rel)
                    .map(|(i, _)| i)
                    .collect();
                Some(Selecting::NamedIn(named))
            }
        }
    }
}

/// A selector field as kustomize reads it: a regular expression that must match all of the
/// value. A pattern that does not compile fails kustomize's build anyway; it matches
/// everything here, so that a move is held back rather than risked.
struct Pattern {
    text: String,
    regex: Option<regex::Regex>,
}

impl Pattern {
    fn new(text: &str) -> Pattern {
        Pattern {
            text: text.to_owned(),
            regex: regex::Regex::new(&format!("^(?:{text})$")).ok(),
        }
    }

    fn matches(&self, value: &str) -> bool {
        self.text == value || self.regex.as_ref().is_none_or(|re| re.is_match(value))
    }
}

/// The inventory's files and kustomization files by path, to follow what a build reads.
struct BuildIndex<'a> {
    file_at: HashMap<&'a Path, usize>,
    /// kustomize refuses a directory with two kustomization files; the first is kept, as
    /// namespace resolution keeps it.
    kustomization_in: HashMap<&'a Path, usize>,
}

impl<'a> BuildIndex<'a> {
    fn new(inventory: &'a Inventory) -> BuildIndex<'a> {
        let mut kustomization_in = HashMap::new();
        for (k, kustomization) in inventory.kustomize_files.iter().enumerate() {
            kustomization_in
                .entry(kustomization.dir.as_path())
                .or_insert(k);
        }
        BuildIndex {
            file_at: inventory
                .files
                .iter()
                .enumerate()
                .map(|(i, f)| (f.rel.as_path(), i))
                .collect(),
            kustomization_in,
        }
    }

    /// The files kustomization `k` builds: its `resources`/`bases`/`components`, following
    /// the kustomizations of the directories they name.
    fn built_files(&self, inventory: &Inventory, k: usize) -> HashSet<usize> {
        let mut files = HashSet::new();
        let mut seen = HashSet::new();
        let mut pending = vec![k];
        while let Some(k) = pending.pop() {
            if !seen.insert(k) {
                continue;
            }
            let kustomization = &inventory.kustomize_files[k];
            for entry in &kustomization.entries {
                let Some(path) = normalize(&kustomization.dir, &entry.value) else {
                    continue;
                };
                if let Some(&file) = self.file_at.get(path.as_path()) {
                    files.insert(file);
                } else if let Some(&inner) = self.kustomization_in.get(path.as_path()) {
                    pending.push(inner);
                }
            }
        }
        files
    }

    /// The files a Flux Kustomization with `spec.path: dir` applies: the build of the
    /// directory's kustomization file, or (kustomize-controller generates one) every file
    /// under it.
    fn applied_files(&self, inventory: &Inventory, dir: &Path) -> HashSet<usize> {
        match self.kustomization_in.get(dir) {
            Some(&k) => self.built_files(inventory, k),
            None => inventory
                .files
                .iter()
                .enumerate()
                .filter(|(_, file)| file.rel.starts_with(dir))
                .map(|(i, _)| i)
                .collect(),
        }
    }
}

/// The patches of every kustomization file, and those of every Flux Kustomization
/// (kustomize-controller adds `spec.patches` to the kustomization it builds `spec.path` with).
pub(super) fn scoped_patches(inventory: &Inventory, built: &Builds) -> Vec<ScopedPatch> {
    let index = BuildIndex::new(inventory);
    let files_of = |resources: &[usize]| -> HashSet<usize> {
        resources
            .iter()
            .map(|&r| inventory.resources[r].file)
            .collect()
    };
    let mut scoped = Vec::new();
    // What each patching kustomization builds, as the build model builds it.
    let patching: Vec<usize> = (0..inventory.kustomize_files.len())
        .filter(|&k| !inventory.kustomize_files[k].patch_selectors.is_empty())
        .collect();
    let dirs: Vec<&Path> = patching
        .iter()
        .map(|&k| inventory.kustomize_files[k].dir.as_path())
        .collect();
    let reached = crate::build::resources_built_from(inventory, &dirs);
    for (&k, resources) in patching.iter().zip(&reached) {
        let kustomization = &inventory.kustomize_files[k];
        let file = &inventory.files[kustomization.file];
        let builds = files_of(resources);
        for patch in &kustomization.patch_selectors {
            let Some(selects) = Selecting::of(inventory, &patch.selects, &kustomization.dir) else {
                continue;
            };
            scoped.push(ScopedPatch {
                kustomization: Some(k),
                after_namespace: patch.after_namespace,
                selects,
                named: format!("{}[{}] of {}", patch.field, patch.index, file.path),
                builds: builds.clone(),
            });
        }
    }
    for (r, resource) in inventory.resources.iter().enumerate() {
        let Some(object) = resource.flux_kustomization() else {
            continue;
        };
        let Some(items) = object
            .root
            .path(&["spec", "patches"])
            .and_then(Node::as_seq)
        else {
            continue;
        };
        // Where namespace resolution follows the Kustomization, its patches apply.
        let Some(dir) = crate::build::flux_path(&object.root) else {
            continue;
        };
        // What its Flux build gives; where it cannot be built offline, every file its path
        // may apply (a move is held back rather than risked).
        let flux_builds: Vec<usize> = (built.flux.iter().enumerate())
            .filter(|(_, b)| b.resource == r && b.not_built.is_none())
            .map(|(i, _)| i)
            .collect();
        let builds = if flux_builds.is_empty() {
            index.applied_files(inventory, &dir)
        } else {
            let resources: Vec<usize> = (built.objects.iter())
                .filter(|b| matches!(b.producer, Producer::Flux(i) if flux_builds.contains(&i)))
                .map(|b| b.object.resource)
                .collect();
            files_of(&resources)
        };
        for (index, item) in items.iter().enumerate() {
            let Some(selects) = crate::kustomize::patch_selects(item, None)
                .and_then(|selects| Selecting::of(inventory, &selects, Path::new("")))
            else {
                continue;
            };
            scoped.push(ScopedPatch {
                kustomization: None,
                after_namespace: false,
                selects,
                named: format!(
                    "spec.patches[{index}] of Flux Kustomization {}{} ({})",
                    resource
                        .declared_namespace
                        .as_deref()
                        .map_or(String::new(), |ns| format!("{ns}/")),
                    object.name,
                    inventory.files[resource.file].path
                ),
                builds: builds.clone(),
            });
        }
    }
    scoped
}

/// The patch that selects resource `r` by `namespace`, the namespace it is leaving, described
/// for the user. kustomize would not apply it after the move: a `target:` selector silently
/// matches nothing, a strategic-merge patch fails the build. A kustomization whose own
/// `namespace:` the move rewrites applies its `patches` before that field, to the namespace
/// the object had then, so those still apply. `config` is where the object moves to.
pub(super) fn patch_selecting(
    inventory: &Inventory,
    scoped: &[ScopedPatch],
    r: usize,
    namespace: &str,
    config: &str,
    candidates: &[EffectiveNamespace],
) -> Option<String> {
    let resource = &inventory.resources[r];
    let rewritten = match known(candidates) {
        Some((_, NamespaceOrigin::KustomizeFile { kustomization, .. })) => Some(*kustomization),
        _ => None,
    };
    let selects = |scoped: &ScopedPatch| match &scoped.selects {
        Selecting::Matching {
            kind,
            name,
            namespace: selected,
        } => {
            // A selector that matches the new namespace as well still applies after the move.
            selected.matches(namespace)
                && !selected.matches(config)
                && kind.as_ref().is_none_or(|k| k.matches(&resource.kind))
                && name.as_ref().is_none_or(|n| n.matches(&resource.name))
        }
        Selecting::NamedIn(named) => named.iter().any(|&n| {
            let named = &inventory.resources[n];
            named.kind == resource.kind
                && named.name == resource.name
                && named.declared_namespace.as_deref() == Some(namespace)
        }),
    };
    let found = scoped.iter().find(|scoped| {
        let sees_old_namespace =
            rewritten.is_none() || rewritten != scoped.kustomization || scoped.after_namespace;
        sees_old_namespace && scoped.builds.contains(&resource.file) && selects(scoped)
    })?;
    Some(found.named.clone())
}
