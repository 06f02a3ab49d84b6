//! Effective namespaces, as Flux would apply them.
//!
//! Both transformers *override* what they apply: the `spec.targetNamespace` of the Flux
//! Kustomization whose `spec.path` applies a file wins; else the `namespace:` of the outermost
//! kustomization.yaml that includes it; else the object's `metadata.namespace`. A file applied
//! along several paths (a base shared by overlays) gets one namespace per path.
//!
//! Directory traversal follows kustomize-controller: a directory with a kustomization file is
//! built from its `resources`/`bases`/`components`; a directory without one gets a generated
//! kustomization of every manifest below it, where sub-directories that have their own
//! kustomization file are included as a whole.

// Paths and applications are hashed many times per run; no map here takes keys chosen to
// collide (they are the input's own paths), so a fast hash beats SipHash's flood resistance.
use foldhash::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::input::{Inventory, Resource};
use crate::kustomize::{PathKey, is_remote, normalize, path_key as key};
use crate::model::{EffectiveNamespace, NamespaceOrigin};
use crate::yaml::Node;

/// How one file is applied: by which Flux Kustomization (if any), under which kustomize namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Application {
    /// `(namespace value, origin)` from a Flux Kustomization's `spec.targetNamespace`.
    flux_target: Option<(String, NamespaceOrigin)>,
    /// `(namespace value, origin)` from the outermost kustomization.yaml setting one.
    kustomize_namespace: Option<(String, NamespaceOrigin)>,
}

/// The file tree. Directories (relative to the root) are numbered once; traversals then
/// follow numbers, not paths: a repository's Flux Kustomizations walk the same directories
/// many times over.
struct Tree<'a> {
    inventory: &'a Inventory,
    dir_ids: HashMap<PathKey<'a>, DirId>,
    dirs: Vec<Dir<'a>>,
    file_by_path: HashMap<PathKey<'a>, usize>,
    /// What each kustomization file's local entries name (indexed like `kustomize_files`),
    /// looked up once: a kustomization is reached by many Flux Kustomizations.
    targets: Vec<Vec<Target>>,
}

type DirId = usize;

/// Kustomization files whose entries are looked up in one piece of work.
const KUSTOMIZATIONS_PER_RUN: usize = 64;

/// What a local `resources`/`bases`/`components` entry names.
#[derive(Clone, Copy)]
enum Target {
    File(usize),
    Dir(DirId),
    /// Not in the input (a missing path, or one outside the repository).
    Absent,
}

/// A directory that holds input files, or is an ancestor of one that does.
struct Dir<'a> {
    path: &'a Path,
    files: Vec<usize>,
    /// In the order of their paths.
    subdirs: Vec<DirId>,
    /// The kustomization file kustomize reads here (index into `kustomize_files`).
    kustomization: Option<usize>,
}

impl<'a> Tree<'a> {
    fn new(inventory: &'a Inventory) -> Tree<'a> {
        let mut tree = Tree {
            inventory,
            // Sized up front: growing a map rehashes every key in it.
            dir_ids: HashMap::with_capacity_and_hasher(inventory.files.len(), Default::default()),
            dirs: Vec::new(),
            file_by_path: HashMap::with_capacity_and_hasher(
                inventory.files.len(),
                Default::default(),
            ),
            targets: Vec::new(),
        };
        let mut previous: Option<(&Path, DirId)> = None;
        for (i, file) in inventory.files.iter().enumerate() {
            let dir = file.rel.parent().unwrap_or(Path::new(""));
            // A walk gives a directory's files one after the other: look it up once.
            let id = match previous {
                Some((last, id)) if last.as_os_str() == dir.as_os_str() => id,
                _ => tree.add_dir(dir),
            };
            previous = Some((dir, id));
            tree.dirs[id].files.push(i);
            tree.file_by_path.insert(key(&file.rel), i);
        }
        for (k, kustomization) in inventory.kustomize_files.iter().enumerate() {
            let dir = inventory.files[kustomization.file]
                .rel
                .parent()
                .unwrap_or(Path::new(""));
            if let Some(id) = tree.dir(dir) {
                // kustomize refuses a directory with two kustomization files; keep the first.
                tree.dirs[id].kustomization.get_or_insert(k);
            }
        }
        for id in 0..tree.dirs.len() {
            let mut subdirs = std::mem::take(&mut tree.dirs[id].subdirs);
            subdirs.sort_by(|a, b| tree.dirs[*a].path.cmp(tree.dirs[*b].path));
            tree.dirs[id].subdirs = subdirs;
        }
        // Every entry is a path to normalise and look up: done on every core.
        tree.targets =
            crate::parallel::map_in_runs(&inventory.kustomize_files, KUSTOMIZATIONS_PER_RUN, |k| {
                k.entries
                    .iter()
                    .map(|e| tree.target(&k.dir, &e.value))
                    .collect()
            });
        tree
    }

    /// What the entry `reference` of a kustomization file in `dir` names.
    fn target(&self, dir: &Path, reference: &str) -> Target {
        if is_remote(reference) {
            return Target::Absent;
        }
        let Some(path) = normalize(dir, reference) else {
            return Target::Absent;
        };
        if let Some(&file) = self.file_by_path.get(&key(&path)) {
            Target::File(file)
        } else if let Some(dir) = self.dir(&path) {
            Target::Dir(dir)
        } else {
            Target::Absent
        }
    }

    /// Numbers `path` and, once, each of its ancestors.
    fn add_dir(&mut self, path: &'a Path) -> DirId {
        if let Some(id) = self.dir(path) {
            return id;
        }
        let id = self.dirs.len();
        self.dirs.push(Dir {
            path,
            files: Vec::new(),
            subdirs: Vec::new(),
            kustomization: None,
        });
        self.dir_ids.insert(key(path), id);
        if let Some(parent) = path.parent() {
            let parent = self.add_dir(parent);
            self.dirs[parent].subdirs.push(id);
        }
        id
    }

    fn dir(&self, path: &Path) -> Option<DirId> {
        self.dir_ids.get(&key(path)).copied()
    }
}

/// Works out every effective namespace of every resource (indexed like `inventory.resources`).
pub fn effective_namespaces(inventory: &Inventory) -> Vec<Vec<EffectiveNamespace>> {
    let tree = Tree::new(inventory);
    let mut applications = Applications::new(inventory.files.len());
    let mut reached_kustomizations: HashSet<usize> = HashSet::default();
    // Directories on the current traversal's path; each traversal leaves it all false.
    let mut visiting = vec![false; tree.dirs.len()];

    // Resolve the Flux Kustomizations in order: one applied by another takes its parent's
    // context for its own namespace, but its targetNamespace governs what *it* applies
    // regardless, so one pass over all of them is enough.
    for resource in &inventory.resources {
        let Some(object) = resource.flux_kustomization() else {
            continue;
        };
        let Some(dir) = flux_path(&object.root).and_then(|path| tree.dir(&path)) else {
            continue;
        };
        let file = &inventory.files[resource.file];
        let flux_target = object
            .root
            .path(&["spec", "targetNamespace"])
            .and_then(|n| {
                let value = n.as_str()?;
                let (line, _) = file.lines.position(&file.text, n.span.start);
                let owner = resource.declared_namespace.as_deref().unwrap_or("");
                Some((
                    value.to_owned(),
                    NamespaceOrigin::FluxKustomization {
                        kustomization: format!("{owner}/{}", object.name)
                            .trim_start_matches('/')
                            .to_owned(),
                        location: format!("{}:{line}", file.path),
                    },
                ))
            });
        let start = applications.intern(Application {
            flux_target,
            kustomize_namespace: None,
        });
        traverse(
            &tree,
            dir,
            start,
            &mut applications,
            &mut reached_kustomizations,
            &mut visiting,
        );
    }

    // kustomization.yaml trees that no Flux Kustomization in the input applies: their
    // outermost kustomization decides.
    let included: HashSet<usize> = tree
        .targets
        .iter()
        .flatten()
        .filter_map(|target| match target {
            Target::Dir(dir) => tree.dirs[*dir].kustomization,
            Target::File(_) | Target::Absent => None,
        })
        .collect();
    for (k, kustomization) in inventory.kustomize_files.iter().enumerate() {
        if included.contains(&k) || reached_kustomizations.contains(&k) {
            continue;
        }
        let Some(dir) = tree.dir(&kustomization.dir) else {
            continue;
        };
        let start = applications.intern(Application {
            flux_target: None,
            kustomize_namespace: None,
        });
        traverse(
            &tree,
            dir,
            start,
            &mut applications,
            &mut HashSet::default(),
            &mut visiting,
        );
    }

    // Each resource's namespaces are made on every core, in runs: a namespace is a few
    // strings to copy, for each of thousands of resources.
    crate::parallel::map_in_runs(&inventory.resources, RESOURCES_PER_RUN, |resource| {
        namespaces_of(resource, &applications)
    })
}

/// Resources whose namespaces are made in one piece of work.
const RESOURCES_PER_RUN: usize = 256;

/// The namespaces `resource` lives in: one per distinct way its file is applied, in a stable
/// order, or the one its own metadata gives when nothing applies the file.
fn namespaces_of(resource: &Resource, applications: &Applications) -> Vec<EffectiveNamespace> {
    let declared = resource.declared_namespace.as_deref();
    let ids = applications.of_file(resource.file);
    if ids.is_empty() {
        return vec![decide(None, declared)];
    }
    let mut ids = ids.to_vec();
    ids.sort_by(|a, b| applications.order(*a).cmp(applications.order(*b)));
    let mut result: Vec<EffectiveNamespace> = Vec::with_capacity(ids.len());
    for id in ids {
        let ns = decide(Some(&applications.distinct[id]), declared);
        if !result.contains(&ns) {
            result.push(ns);
        }
    }
    result
}

fn decide(application: Option<&Application>, declared: Option<&str>) -> EffectiveNamespace {
    if let Some(app) = application {
        if let Some((value, origin)) = &app.flux_target {
            return EffectiveNamespace::from_value(value, origin.clone());
        }
        if let Some((value, origin)) = &app.kustomize_namespace {
            return EffectiveNamespace::from_value(value, origin.clone());
        }
    }
    match declared {
        Some(ns) => EffectiveNamespace::from_value(ns, NamespaceOrigin::Metadata),
        None => EffectiveNamespace::Unknown {
            reason: "no namespace is set: no metadata.namespace, no kustomization.yaml namespace and no \
                     Flux Kustomization targetNamespace applies to it"
                .to_owned(),
        },
    }
}

/// `spec.path` of a Flux Kustomization that builds from this repository, relative to its root.
pub(crate) fn flux_path(root: &Node) -> Option<PathBuf> {
    let source_kind = root
        .path(&["spec", "sourceRef", "kind"])
        .and_then(Node::as_str)
        .unwrap_or("GitRepository");
    // ExternalArtifact and HelmChart artifacts are not this repository's tree.
    if !matches!(source_kind, "GitRepository" | "OCIRepository" | "Bucket") {
        return None;
    }
    let path = root
        .path(&["spec", "path"])
        .and_then(Node::as_scalar)
        .unwrap_or("");
    if path.contains("${") {
        return None;
    }
    normalize(Path::new(""), path)
}

/// The distinct ways files are applied (few), and which of them apply each file.
struct Applications {
    distinct: Vec<Application>,
    ids: HashMap<Application, usize>,
    by_file: Vec<Vec<usize>>,
    /// Each of `distinct` as debug text: the stable order in which a file's applications
    /// are reported.
    order_keys: Vec<String>,
}

impl Applications {
    fn new(files: usize) -> Self {
        Applications {
            distinct: Vec::new(),
            ids: HashMap::default(),
            by_file: vec![Vec::new(); files],
            order_keys: Vec::new(),
        }
    }

    fn intern(&mut self, application: Application) -> usize {
        if let Some(&id) = self.ids.get(&application) {
            return id;
        }
        let id = self.distinct.len();
        self.order_keys.push(format!("{application:?}"));
        self.distinct.push(application.clone());
        self.ids.insert(application, id);
        id
    }

    fn apply(&mut self, file: usize, id: usize) {
        if let Some(ids) = self.by_file.get_mut(file) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }

    fn of_file(&self, file: usize) -> &[usize] {
        self.by_file.get(file).map_or(&[], Vec::as_slice)
    }

    fn order(&self, id: usize) -> &str {
        &self.order_keys[id]
    }
}

fn traverse(
    tree: &Tree,
    dir: DirId,
    context: usize,
    applications: &mut Applications,
    reached: &mut HashSet<usize>,
    visiting: &mut [bool],
) {
    if std::mem::replace(&mut visiting[dir], true) {
        return; // a kustomization cycle; kustomize itself would fail on it
    }
    let node = &tree.dirs[dir];
    match node.kustomization {
        Some(k) => {
            reached.insert(k);
            let kustomization = &tree.inventory.kustomize_files[k];
            let mut inner = context;
            let outer = &applications.distinct[context];
            if outer.kustomize_namespace.is_none() {
                if let Some((ns, span)) = &kustomization.namespace {
                    let file = &tree.inventory.files[kustomization.file];
                    let (line, _) = file.lines.position(&file.text, span.start);
                    let mut application = outer.clone();
                    application.kustomize_namespace = Some((
                        ns.clone(),
                        NamespaceOrigin::KustomizeFile {
                            location: format!("{}:{line}", file.path),
                            kustomization: k,
                        },
                    ));
                    inner = applications.intern(application);
                }
            }
            for target in &tree.targets[k] {
                match *target {
                    Target::File(file) => applications.apply(file, inner),
                    Target::Dir(target) => {
                        traverse(tree, target, inner, applications, reached, visiting);
                    }
                    Target::Absent => {}
                }
            }
        }
        None => {
            for &file in &node.files {
                applications.apply(file, context);
            }
            for &child in &node.subdirs {
                traverse(tree, child, context, applications, reached, visiting);
            }
        }
    }
    visiting[dir] = false;
}
