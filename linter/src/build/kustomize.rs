//! `kustomize build`, natively, for what the rules read.
//!
//! A kustomization is run as kustomize v5 runs it: its `resources` (and the deprecated
//! `bases`, after them) are accumulated — files as their documents, directories as their own
//! complete builds —, then its `components` are applied to what was accumulated (a component
//! adds its resources and runs its transformers over everything so far), then its
//! transformers run in kustomize's fixed order: `patchesStrategicMerge`, `patches`,
//! `namespace`, `namePrefix`, `nameSuffix`, labels, `commonAnnotations`,
//! `patchesJson6902`, `replacements`. A directory without a kustomization file gets the one
//! kustomize-controller generates: every `.yaml`/`.yml` file below it, where a
//! sub-directory with its own kustomization file is taken whole.
//!
//! Every value a transformer writes keeps the position it was written at (the
//! kustomization's `namespace:` line, the patch, the replacement's source), so a finding on a
//! built object points at the line that gave it its value.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use foldhash::HashMap;

use super::patch::{self, Merged};
use super::select::Selector;
use super::{BuildError, Object, Repository, inline, replace, tree};
use crate::kustomize::{is_remote, normalize};
use crate::model::NamespaceOrigin;
use crate::yaml::{Node, Span};

/// What a build accumulates: objects, the problems met, and the files that shape it
/// (kustomization files, patches, components, replacement sources), which a pre-commit run
/// follows from a changed file to the objects it changes.
#[derive(Clone, Default)]
pub struct Accumulator {
    pub objects: Vec<Object>,
    pub problems: Vec<BuildError>,
    pub shaped_by: Vec<usize>,
}

impl Accumulator {
    fn shaped_by(&mut self, file: usize) {
        if !self.shaped_by.contains(&file) {
            self.shaped_by.push(file);
        }
    }

    fn extend(&mut self, other: &Accumulator) {
        self.objects.extend(other.objects.iter().cloned());
        self.problems.extend(other.problems.iter().cloned());
        for &file in &other.shaped_by {
            self.shaped_by(file);
        }
    }
}

/// What Flux adds to the kustomization at a Flux Kustomization's `spec.path`.
#[derive(Default)]
pub struct FluxOverrides<'a> {
    /// `spec.targetNamespace`, where it is written, and the origin findings name.
    pub target_namespace: Option<(String, Span, NamespaceOrigin)>,
    /// `spec.patches` items, and the file of the Flux Kustomization.
    pub patches: Vec<&'a Node>,
    /// `spec.components`, relative to `spec.path`.
    pub components: Vec<&'a Node>,
    pub name_prefix: Option<&'a Node>,
    pub name_suffix: Option<&'a Node>,
    /// The file the Flux Kustomization is written in (inline patches are parsed from it).
    pub file: Option<usize>,
}

/// Builds kustomizations, remembering each directory's build (a base is built once however
/// many overlays and Flux Kustomizations include it).
pub struct Kustomizer<'r> {
    repo: &'r Repository<'r>,
    /// Building from Flux's source artifact: files `.sourceignore` leaves out are not there.
    from_artifact: bool,
    built: HashMap<PathBuf, Rc<Accumulator>>,
    /// Directories being built, to stop at a cycle.
    stack: Vec<PathBuf>,
}

/// How a kustomization is read: as written in a file, or generated for a plain directory.
enum Plan<'n> {
    File { index: usize, root: &'n Node },
    Generated,
}

impl<'r> Kustomizer<'r> {
    pub fn new(repo: &'r Repository<'r>, from_artifact: bool) -> Kustomizer<'r> {
        Kustomizer {
            repo,
            from_artifact,
            built: HashMap::default(),
            stack: Vec::new(),
        }
    }

    /// The build of `dir` as a resource of another kustomization (no Flux overrides).
    pub fn build_dir(&mut self, dir: &Path) -> Rc<Accumulator> {
        if let Some(done) = self.built.get(dir) {
            return Rc::clone(done);
        }
        let mut acc = Accumulator::default();
        self.run(dir, &mut acc, &FluxOverrides::default(), false);
        let acc = Rc::new(acc);
        self.built.insert(dir.to_path_buf(), Rc::clone(&acc));
        acc
    }

    /// The build of a Flux Kustomization's `spec.path`, with Flux's additions.
    pub fn build_flux(&mut self, dir: &Path, overrides: &FluxOverrides) -> Accumulator {
        let mut acc = Accumulator::default();
        self.run(dir, &mut acc, overrides, false);
        acc
    }

    /// Runs the kustomization of `dir` (its file, or the generated one) into `acc`. As a
    /// component it works on the accumulator it is given; otherwise `acc` starts empty.
    fn run(
        &mut self,
        dir: &Path,
        acc: &mut Accumulator,
        overrides: &FluxOverrides,
        component: bool,
    ) {
        if self.stack.iter().any(|d| d == dir) {
            acc.problems.push(BuildError::detached(format!(
                "kustomization cycle: {} includes itself",
                display_dir(dir)
            )));
            return;
        }
        self.stack.push(dir.to_path_buf());
        let repo = self.repo;
        let plan = match repo.kustomization_of(dir) {
            Some(index) => match repo.kustomization_root(index) {
                Some(root) => Plan::File { index, root },
                None => Plan::Generated,
            },
            None => Plan::Generated,
        };
        match plan {
            Plan::File { index, root } => {
                acc.shaped_by(index);
                self.resources(dir, index, root, acc);
                self.components(dir, Some(index), root.get("components"), acc);
                self.override_components(dir, overrides, acc);
                self.transform(dir, Some((index, root)), overrides, acc);
            }
            Plan::Generated => {
                if !component {
                    self.generated_resources(dir, acc);
                }
                self.override_components(dir, overrides, acc);
                self.transform(dir, None, overrides, acc);
            }
        }
        self.stack.pop();
    }

    /// `resources`, then `bases`: files give their documents, directories their builds.
    fn resources(&mut self, dir: &Path, file: usize, root: &Node, acc: &mut Accumulator) {
        for field in ["resources", "bases"] {
            for entry in root.get(field).and_then(Node::as_seq).unwrap_or_default() {
                let Some(reference) = entry.as_str() else {
                    continue;
                };
                if is_remote(reference) {
                    continue; // FF130 reports it; its objects cannot be known offline
                }
                self.resource(dir, reference, entry.span.in_file(file), acc);
            }
        }
    }

    fn resource(&mut self, dir: &Path, reference: &str, at: Span, acc: &mut Accumulator) {
        let Some(path) = normalize(dir, reference) else {
            acc.problems.push(BuildError::at(
                at,
                format!("resource `{reference}` lies outside the repository"),
            ));
            return;
        };
        if let Some(file) = self.file_at(&path) {
            acc.objects.extend(self.repo.objects_of_file(file));
        } else if self.repo.is_dir(&path) {
            if self.repo.kustomization_of(&path).is_none() {
                acc.problems.push(BuildError::at(
                    at,
                    format!(
                        "resource `{reference}` is a directory without a kustomization file; kustomize refuses it"
                    ),
                ));
                return;
            }
            let built = self.build_dir(&path);
            acc.extend(&built);
        } else {
            acc.problems.push(BuildError::at(
                at,
                format!("resource `{reference}` is not in the repository"),
            ));
        }
    }

    /// What kustomize-controller's generated kustomization lists: the manifests under `dir`,
    /// sub-directories with a kustomization file taken whole, in the order of a walk.
    fn generated_resources(&mut self, dir: &Path, acc: &mut Accumulator) {
        for entry in self.repo.walk_generated(dir) {
            match entry {
                Generated::File(file)
                    if self.from_artifact && self.repo.is_source_ignored(file) => {}
                Generated::File(file) => acc.objects.extend(self.repo.objects_of_file(file)),
                Generated::Kustomization(sub) => {
                    let built = self.build_dir(&sub);
                    acc.extend(&built);
                }
            }
        }
    }

    fn components(
        &mut self,
        dir: &Path,
        file: Option<usize>,
        list: Option<&Node>,
        acc: &mut Accumulator,
    ) {
        for entry in list.and_then(Node::as_seq).unwrap_or_default() {
            let Some(reference) = entry.as_str() else {
                continue;
            };
            if is_remote(reference) {
                continue;
            }
            let at = file.map_or(entry.span, |f| entry.span.in_file(f));
            self.component(dir, reference, at, acc);
        }
    }

    fn override_components(
        &mut self,
        dir: &Path,
        overrides: &FluxOverrides,
        acc: &mut Accumulator,
    ) {
        for entry in &overrides.components {
            if let Some(reference) = entry.as_str() {
                self.component(dir, reference, entry.span, acc);
            }
        }
    }

    fn component(&mut self, dir: &Path, reference: &str, at: Span, acc: &mut Accumulator) {
        match normalize(dir, reference) {
            Some(path) if self.repo.kustomization_of(&path).is_some() => {
                self.run(&path, acc, &FluxOverrides::default(), true);
            }
            _ => acc.problems.push(BuildError::at(
                at,
                format!("component `{reference}` is not a directory with a kustomization file in the repository"),
            )),
        }
    }

    /// The file at `path`, as the build sees the tree.
    fn file_at(&self, path: &Path) -> Option<usize> {
        self.repo
            .file_at(path)
            .filter(|&f| !(self.from_artifact && self.repo.is_source_ignored(f)))
    }

    /// The transformers, in kustomize's order.
    fn transform(
        &mut self,
        dir: &Path,
        kustomization: Option<(usize, &Node)>,
        overrides: &FluxOverrides,
        acc: &mut Accumulator,
    ) {
        let field = |key: &str| kustomization.and_then(|(_, root)| root.get(key));
        let file = kustomization.map(|(index, _)| index);
        let items = |key: &str| field(key).and_then(Node::as_seq).unwrap_or_default();
        for item in items("patchesStrategicMerge") {
            self.strategic_merge_entry(dir, file, item, acc);
        }
        for item in items("patches") {
            self.patch_entry(dir, file, item, acc);
        }
        for item in &overrides.patches {
            self.patch_entry(dir, overrides.file, item, acc);
        }
        self.namespace(kustomization, overrides, acc);
        let prefix = overrides.name_prefix.or(field("namePrefix"));
        let suffix = overrides.name_suffix.or(field("nameSuffix"));
        rename(
            prefix.and_then(Node::as_str),
            suffix.and_then(Node::as_str),
            acc,
        );
        labels(kustomization, acc);
        for item in items("patchesJson6902") {
            self.patch_entry(dir, file, item, acc);
        }
        for item in items("replacements") {
            self.replacement_entry(dir, file, item, acc);
        }
    }

    /// The documents a patch entry applies: its `path:` file's, or its inline text's.
    fn patch_documents(
        &self,
        dir: &Path,
        file: Option<usize>,
        item: &Node,
        acc: &mut Accumulator,
    ) -> Option<Vec<Node>> {
        let at = |span: Span| file.map_or(span, |f| span.in_file(f));
        let path = item
            .as_str()
            .filter(|p| !p.contains('\n'))
            .or_else(|| item.get("path").and_then(Node::as_str));
        if let Some(path) = path {
            let Some(found) = normalize(dir, path).and_then(|p| self.file_at(&p)) else {
                acc.problems.push(BuildError::at(
                    at(item.span),
                    format!("patch file `{path}` is not in the repository"),
                ));
                return None;
            };
            acc.shaped_by(found);
            return match self.repo.documents_of(found) {
                Ok(documents) => Some(documents),
                Err(problem) => {
                    acc.problems.push(problem);
                    None
                }
            };
        }
        let text = item.get("patch").or_else(|| item.as_str().map(|_| item))?;
        let file = file?;
        match inline::documents(text, self.repo.text(file), file) {
            Ok(documents) => Some(documents),
            Err(e) => {
                acc.problems.push(BuildError::at(
                    Span::new(e.offset, e.offset).in_file(file),
                    e.message,
                ));
                None
            }
        }
    }

    fn strategic_merge_entry(
        &self,
        dir: &Path,
        file: Option<usize>,
        item: &Node,
        acc: &mut Accumulator,
    ) {
        let Some(documents) = self.patch_documents(dir, file, item, acc) else {
            return;
        };
        for document in documents {
            merge_by_identity(&document, acc);
        }
    }

    /// A `patches` (or `patchesJson6902`) entry: a strategic merge or a JSON 6902 patch,
    /// applied to what its `target` selects, or (a strategic merge without one) to the
    /// object it names.
    fn patch_entry(&self, dir: &Path, file: Option<usize>, item: &Node, acc: &mut Accumulator) {
        let Some(documents) = self.patch_documents(dir, file, item, acc) else {
            return;
        };
        let target = match item.get("target").map(Selector::from_node).transpose() {
            Ok(target) => target,
            Err(problem) => {
                acc.problems.push(problem.in_file(file));
                return;
            }
        };
        let is_json6902 = documents.first().is_some_and(|d| d.as_seq().is_some());
        if is_json6902 {
            let Some(target) = target else {
                acc.problems.push(
                    BuildError::at(item.span, "a JSON 6902 patch needs a `target`".into())
                        .in_file(file),
                );
                return;
            };
            let operations = match patch::operations(&documents[0]) {
                Ok(ops) => ops,
                Err(problem) => {
                    acc.problems.push(problem);
                    return;
                }
            };
            let mut problems = Vec::new();
            for object in acc.objects.iter_mut().filter(|o| target.matches(o)) {
                // A HelmRelease's values are not kept (free-form, read by no rule): what a
                // patch does there cannot be checked, and changes nothing a rule reads.
                let is_release = tree::kind(&object.root) == "HelmRelease";
                let light = object.light;
                // Of an object carried by its identity only, only its metadata is patched.
                let skip = |op: &patch::Operation| {
                    (is_release && op.touches(&["spec", "values"]))
                        || (light && !op.touches(&["metadata"]))
                };
                if let Err(problem) =
                    patch::apply_operations(Arc::make_mut(&mut object.root), &operations, skip)
                {
                    problems.push(problem.about(object));
                }
            }
            acc.problems.extend(problems);
            return;
        }
        for document in &documents {
            match &target {
                Some(target) => {
                    let mut document = document.clone();
                    // With a target, the patch's own name and namespace select nothing.
                    if let Some(metadata) = tree::get_mut(&mut document, "metadata") {
                        tree::remove(metadata, "name");
                        tree::remove(metadata, "namespace");
                    }
                    let mut kept = Vec::with_capacity(acc.objects.len());
                    for mut object in std::mem::take(&mut acc.objects) {
                        let deleted = target.matches(&object)
                            && matches!(
                                patch::strategic_merge(Arc::make_mut(&mut object.root), &document),
                                Merged::Deleted
                            );
                        if !deleted {
                            kept.push(object);
                        }
                    }
                    acc.objects = kept;
                }
                None => merge_by_identity(document, acc),
            }
        }
    }

    fn replacement_entry(
        &self,
        dir: &Path,
        file: Option<usize>,
        item: &Node,
        acc: &mut Accumulator,
    ) {
        let entries: Vec<Node> = match item.get("path").and_then(Node::as_str) {
            Some(path) => {
                let Some(found) = normalize(dir, path).and_then(|p| self.file_at(&p)) else {
                    acc.problems.push(
                        BuildError::at(
                            item.span,
                            format!("replacement file `{path}` is not in the repository"),
                        )
                        .in_file(file),
                    );
                    return;
                };
                acc.shaped_by(found);
                match self.repo.documents_of(found) {
                    Ok(documents) => documents
                        .into_iter()
                        .flat_map(|d| match d.as_seq() {
                            Some(items) => items.to_vec(),
                            None => vec![d],
                        })
                        .collect(),
                    Err(problem) => {
                        acc.problems.push(problem);
                        return;
                    }
                }
            }
            None => {
                let mut entry = item.clone();
                if let Some(file) = file {
                    tree::place_in_file(&mut entry, file);
                }
                vec![entry]
            }
        };
        for entry in &entries {
            let locate = |span: Span| self.repo.location(span);
            let file_version = |resource: usize| self.repo.file_version(resource);
            match replace::apply(entry, &mut acc.objects, &locate, &file_version) {
                // The source's file shapes the build too: a renamed Namespace renames targets.
                Ok(source) => source.into_iter().for_each(|f| acc.shaped_by(f)),
                Err(problem) => acc.problems.push(problem),
            }
        }
    }

    /// `namespace:` (or Flux's `targetNamespace`, which replaces it): set on every namespaced
    /// object; a `Namespace` object is renamed to it, as kustomize does.
    fn namespace(
        &self,
        kustomization: Option<(usize, &Node)>,
        overrides: &FluxOverrides,
        acc: &mut Accumulator,
    ) {
        let from_file = kustomization.and_then(|(index, root)| {
            let node = root.get("namespace")?;
            let value = node.as_str()?;
            let span = node.span.in_file(index);
            let origin = NamespaceOrigin::KustomizeFile {
                location: self.repo.location(span),
                kustomization: self.repo.kustomize_index(index).unwrap_or(usize::MAX),
            };
            Some((value.to_owned(), span, origin))
        });
        let Some((namespace, span, origin)) = overrides.target_namespace.clone().or(from_file)
        else {
            return;
        };
        for object in &mut acc.objects {
            let kind = tree::kind(&object.root);
            if kind == "Namespace" {
                if let Some(metadata) =
                    tree::child_map(Arc::make_mut(&mut object.root), "metadata", span)
                {
                    tree::set(metadata, "name", tree::string(&namespace, span));
                }
                continue;
            }
            if tree::is_cluster_scoped(kind) {
                continue;
            }
            if let Some(metadata) =
                tree::child_map(Arc::make_mut(&mut object.root), "metadata", span)
            {
                tree::set(metadata, "namespace", tree::string(&namespace, span));
            }
            object.origin = Some(origin.clone());
        }
    }
}

/// A strategic-merge patch without a target patches the object it names (group, version,
/// kind, name and namespace, current or original); kustomize fails when there is none.
fn merge_by_identity(document: &Node, acc: &mut Accumulator) {
    let wanted_kind = tree::kind(document);
    let wanted_api = tree::api_version(document);
    let wanted_name = tree::name(document);
    let wanted_namespace = tree::namespace(document).unwrap_or("default");
    let same_namespace = |ns: Option<&str>| ns.unwrap_or("default") == wanted_namespace;
    let position = acc.objects.iter().position(|o| {
        tree::kind(&o.root) == wanted_kind
            && tree::api_version(&o.root) == wanted_api
            && (tree::name(&o.root) == wanted_name || o.original_name == wanted_name)
            && (same_namespace(tree::namespace(&o.root))
                || same_namespace(o.original_namespace.as_deref()))
    });
    let Some(at) = position else {
        acc.problems.push(BuildError::at(
            document.span,
            format!(
                "no object matches the strategic-merge patch of {wanted_kind}/{wanted_name}; kustomize fails the build"
            ),
        ));
        return;
    };
    if matches!(
        patch::strategic_merge(Arc::make_mut(&mut acc.objects[at].root), document),
        Merged::Deleted
    ) {
        acc.objects.remove(at);
    }
}

/// `namePrefix`/`nameSuffix` on every object but Namespaces and CRDs.
fn rename(prefix: Option<&str>, suffix: Option<&str>, acc: &mut Accumulator) {
    if prefix.is_none() && suffix.is_none() {
        return;
    }
    for object in &mut acc.objects {
        if matches!(
            tree::kind(&object.root),
            "Namespace" | "CustomResourceDefinition"
        ) {
            continue;
        }
        let name = format!(
            "{}{}{}",
            prefix.unwrap_or(""),
            tree::name(&object.root),
            suffix.unwrap_or("")
        );
        let span = object
            .root
            .path(&["metadata", "name"])
            .map_or(object.root.span, |n| n.span);
        if let Some(metadata) = tree::child_map(Arc::make_mut(&mut object.root), "metadata", span) {
            tree::set(metadata, "name", tree::string(&name, span));
        }
    }
}

/// `labels`, `commonLabels` and `commonAnnotations`: on every object's metadata (selectors
/// match them; no rule reads the selector fields kustomize also sets).
fn labels(kustomization: Option<(usize, &Node)>, acc: &mut Accumulator) {
    let Some((file, root)) = kustomization else {
        return;
    };
    let mut pairs: Vec<(&str, &Node, &Node)> = Vec::new();
    for (field, target) in [
        ("commonLabels", "labels"),
        ("commonAnnotations", "annotations"),
    ] {
        for (key, value) in root.get(field).and_then(Node::as_map).unwrap_or_default() {
            pairs.push((target, key, value));
        }
    }
    for entry in root
        .get("labels")
        .and_then(Node::as_seq)
        .unwrap_or_default()
    {
        for (key, value) in entry
            .get("pairs")
            .and_then(Node::as_map)
            .unwrap_or_default()
        {
            pairs.push(("labels", key, value));
        }
    }
    if pairs.is_empty() {
        return;
    }
    for object in &mut acc.objects {
        for (target, key, value) in &pairs {
            let (Some(key), Some(text)) = (key.as_scalar(), value.as_scalar()) else {
                continue;
            };
            let span = value.span.in_file(file);
            let Some(metadata) = tree::child_map(Arc::make_mut(&mut object.root), "metadata", span)
            else {
                continue;
            };
            if let Some(map) = tree::child_map(metadata, target, span) {
                tree::set(map, key, tree::string(text, span));
            }
        }
    }
}

/// An entry of a generated kustomization.
pub enum Generated {
    File(usize),
    Kustomization(PathBuf),
}

fn display_dir(dir: &Path) -> String {
    if dir.as_os_str().is_empty() {
        ".".to_owned()
    } else {
        dir.display().to_string()
    }
}
