//! What Flux applies: the builds of the input's Flux Kustomizations.
//!
//! kustomize-controller builds each Flux Kustomization's `spec.path` with kustomize (see
//! [`kustomize`]), adding its own `targetNamespace`, `patches`, `components` and name prefix
//! or suffix to the kustomization there, then substitutes `${VAR}`s (see [`substitute`]);
//! only what that build gives reaches the cluster. This module finds every Flux
//! Kustomization the input applies and builds it:
//!
//! 1. Every kustomization directory that no other kustomization includes is built as
//!    `kustomize build` would, and every file no such build reads stands alone: this is what
//!    the input says before Flux is involved, and where the first Flux Kustomizations are
//!    found.
//! 2. Each Flux Kustomization found is built; the Flux Kustomizations its build gives are
//!    built in turn (with the namespace, patches and substitutions that build gave them),
//!    until no new one appears.
//! 3. An object that some Flux build gives is judged as that build gives it, once per
//!    build; what no Flux build reaches is judged as step 1 gave it.
//!
//! Every node of a built object carries the span (file included) that wrote its value.

use std::cell::RefCell;
use std::collections::HashMap as StdHashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use foldhash::{HashMap, HashSet};

use crate::input::Inventory;
use crate::kinds::FluxKind;
use crate::kustomize::{is_kustomization_file, is_remote, normalize};
use crate::model::{EffectiveNamespace, NamespaceOrigin};
use crate::yaml::{self, Node, Span};

mod inline;
pub mod kustomize;
mod patch;
mod replace;
mod select;
pub mod substitute;
pub mod tree;

use kustomize::{Accumulator, FluxOverrides, Generated, Kustomizer};
use substitute::Variables;

/// A resource as a build carries it.
#[derive(Clone, Debug)]
pub struct Object {
    /// The object as built so far; every node's span names the file that wrote it. Shared
    /// between the builds that carry it unchanged (a base in several overlays, a directory's
    /// build in its parent's); a transformer copies it when it writes (`Arc::make_mut`).
    pub root: Arc<Node>,
    /// The inventory resource (document) it was read from.
    pub resource: usize,
    /// Its name and namespace as first read (kustomize selects by either).
    pub original_name: String,
    pub original_namespace: Option<String>,
    /// Where its `metadata.namespace` was last written, when it has one.
    pub origin: Option<NamespaceOrigin>,
    /// Carried with its identity only (`apiVersion`, `kind`, `metadata`): no rule reads an
    /// object of its kind, and a Deployment or a dashboard ConfigMap is most of the bytes a
    /// build would otherwise copy at every step. Patches and replacements leave what they
    /// cannot see of it alone; a replacement copying from it reads its file's version.
    pub light: bool,
}

impl Object {
    /// `Kind/name` for messages.
    pub fn label(&self) -> String {
        format!("{}/{}", tree::kind(&self.root), tree::name(&self.root))
    }

    pub fn namespace(&self) -> Option<&str> {
        tree::namespace(&self.root)
    }
}

/// Why (part of) a build fails, where that is known.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildError {
    /// In a file when `span.file` says so; a detached error has none.
    pub span: Span,
    pub message: String,
}

impl BuildError {
    pub fn at(span: Span, message: String) -> BuildError {
        BuildError { span, message }
    }

    pub fn detached(message: String) -> BuildError {
        BuildError {
            span: Span::default(),
            message,
        }
    }

    /// Places the error in `file` when it has no file yet.
    fn in_file(mut self, file: Option<usize>) -> BuildError {
        if let (0, Some(file)) = (self.span.file, file) {
            self.span = self.span.in_file(file);
        }
        self
    }

    /// Names the object the error happened on.
    fn about(mut self, object: &Object) -> BuildError {
        self.message = format!("{} (on {})", self.message, object.label());
        self
    }
}

/// What produced a built object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Producer {
    /// The build of a Flux Kustomization ([`Builds::flux`] index).
    Flux(usize),
    /// `kustomize build` of a kustomization that nothing else includes (its file's index).
    Kustomize(usize),
    /// A file no kustomization includes, on its own.
    File,
}

/// An object as some build gives it.
#[derive(Clone, Debug)]
pub struct Built {
    pub object: Object,
    pub producer: Producer,
    /// Why some of its values cannot be known offline (a `${VAR}` whose value lives in a
    /// ConfigMap or Secret the input does not hold).
    pub unknown: Option<String>,
}

/// One Flux Kustomization that is built.
#[derive(Clone, Debug)]
pub struct FluxBuild {
    pub resource: usize,
    /// `namespace/name`.
    pub name: String,
    /// `file:line` of the Flux Kustomization.
    pub location: String,
    /// Files that shape its build and its own definition: the Flux Kustomization's file, its
    /// parents' shaping files, the kustomization files, patches, components and replacement
    /// sources of its build.
    pub shaped_by: Vec<usize>,
    /// Why it is not built (its path is not in the input, or not knowable offline).
    pub not_built: Option<String>,
}

/// Whether a build carries objects of `resource`'s kind whole: what the rules read (Flux
/// objects, ServiceAccounts), what substitution reads (ConfigMaps, Secrets), and what
/// replacements most often copy from (Namespaces).
fn carried_whole(api_version: &str, kind: &str, flux: bool) -> bool {
    flux || (api_version == "v1"
        && matches!(
            kind,
            "ServiceAccount" | "ConfigMap" | "Secret" | "Namespace"
        ))
}

/// `apiVersion`, `kind` and `metadata` of an object: all that selectors read.
fn identity_of(root: &Node) -> Node {
    let entries = root
        .as_map()
        .unwrap_or_default()
        .iter()
        .filter(|(k, _)| matches!(k.as_scalar(), Some("apiVersion" | "kind" | "metadata")))
        .cloned()
        .collect();
    Node {
        value: yaml::Value::Map(entries),
        span: root.span,
    }
}

/// Every build of the input.
#[derive(Default)]
pub struct Builds {
    pub objects: Vec<Built>,
    pub flux: Vec<FluxBuild>,
    pub problems: Vec<BuildError>,
    /// Shaping files of each kustomization built on its own ([`Producer::Kustomize`]).
    pub kustomize_shaped_by: HashMap<usize, Vec<usize>>,
}

impl Builds {
    /// Whether the build of `object` reads `file` as a kustomization, patch, component,
    /// replacement source or Flux Kustomization (a change to it can change the object).
    pub fn shaped_by(&self, built: &Built, file: usize) -> bool {
        match built.producer {
            Producer::Flux(i) => self.flux[i].shaped_by.contains(&file),
            Producer::Kustomize(k) => self
                .kustomize_shaped_by
                .get(&k)
                .is_some_and(|s| s.contains(&file)),
            Producer::File => false,
        }
    }
}

/// Builds every Flux Kustomization of the input (see the module documentation).
pub fn build(inventory: &Inventory) -> Builds {
    let repo = Repository::new(inventory);
    // What `kubectl kustomize` of the checkout gives, and what Flux builds from its source
    // artifact (without what `.sourceignore` leaves out).
    let mut checkout = Kustomizer::new(&repo, false);
    let standalone = standalone_builds(&repo, &mut checkout);
    let mut kustomizer = Kustomizer::new(&repo, true);
    let mut store = ConfigStore::of(standalone.objects.iter().map(|b| &b.object));
    let mut flux = FluxPhase::run(&repo, &mut kustomizer, &standalone, &store);
    // A substitution source that only a Flux build gives is found on a second run.
    let more = ConfigStore::of(flux.outputs.iter().flatten().map(|b| &b.object));
    if flux
        .missing
        .iter()
        .any(|key| more.entries.contains_key(key))
    {
        store.merge(more);
        flux = FluxPhase::run(&repo, &mut kustomizer, &standalone, &store);
    }
    flux.finish(standalone)
}

/// Step 1: kustomizations nothing includes, and files no kustomization reads.
struct Standalone {
    objects: Vec<Built>,
    problems: Vec<BuildError>,
    shaped_by: HashMap<usize, Vec<usize>>,
}

fn standalone_builds(repo: &Repository, kustomizer: &mut Kustomizer) -> Standalone {
    let inventory = repo.inventory;
    // `KustomizeFile::entries` holds every `resources`/`bases`/`components` entry already.
    let included: HashSet<PathBuf> = inventory
        .kustomize_files
        .iter()
        .flat_map(|k| k.entries.iter().map(move |e| (k, e)))
        .filter(|(_, e)| !is_remote(&e.value))
        .filter_map(|(k, e)| normalize(&k.dir, &e.value))
        .collect();
    let mut out = Standalone {
        objects: Vec::new(),
        problems: Vec::new(),
        shaped_by: HashMap::default(),
    };
    let mut reached: HashSet<usize> = HashSet::default();
    for k in &inventory.kustomize_files {
        if included.contains(&k.dir) {
            continue;
        }
        let built = kustomizer.build_dir(&k.dir);
        reached.extend(built.objects.iter().map(|o| o.resource));
        out.objects.extend(built.objects.iter().map(|object| Built {
            object: object.clone(),
            producer: Producer::Kustomize(k.file),
            unknown: None,
        }));
        out.problems.extend(built.problems.iter().cloned());
        out.shaped_by.insert(k.file, built.shaped_by.clone());
    }
    let patch_files = inventory.patch_files();
    for (index, file) in inventory.files.iter().enumerate() {
        if is_kustomization_file(&file.rel) || patch_files.contains(&file.rel) {
            continue;
        }
        let unreached = |resource: usize| !reached.contains(&resource);
        for object in repo.objects_of_file_where(index, unreached) {
            out.objects.push(Built {
                object,
                producer: Producer::File,
                unknown: None,
            });
        }
    }
    out
}

/// A Flux Kustomization met in some build, before it is known whether it is kept.
struct Instance {
    object: Object,
    /// Found in step 1, not in a Flux build.
    standalone: bool,
    /// Flux builds that gave it.
    found_in: Vec<usize>,
    build: FluxBuild,
}

/// Step 2.
struct FluxPhase {
    instances: Vec<Instance>,
    /// Per instance: what its build gives.
    outputs: Vec<Vec<Built>>,
    problems: Vec<BuildError>,
    /// Substitution sources looked up and not found.
    missing: HashSet<ConfigKey>,
}

/// The Flux Kustomizations met so far, by resource. Two meetings are one instance when they
/// give the same object (the same JSON). Builds share an object they leave unchanged, and
/// that one is the same without a look; the others' JSON is written only when their
/// resource is met again.
#[derive(Default)]
struct Met {
    /// Per resource: its instances, with their JSON once written.
    by_resource: HashMap<usize, Vec<(usize, Option<String>)>>,
}

impl Met {
    /// The instance that `object` is, if it was met before; else the JSON written to tell.
    fn find(&mut self, instances: &[Instance], object: &Object) -> (Option<usize>, Option<String>) {
        let Some(known) = self.by_resource.get_mut(&object.resource) else {
            return (None, None);
        };
        let shared = known
            .iter()
            .find(|(i, _)| Arc::ptr_eq(&instances[*i].object.root, &object.root));
        if let Some((i, _)) = shared {
            return (Some(*i), None);
        }
        let json = object.root.to_json().to_string();
        for (i, written) in known.iter_mut() {
            let theirs =
                written.get_or_insert_with(|| instances[*i].object.root.to_json().to_string());
            if *theirs == json {
                return (Some(*i), None);
            }
        }
        (None, Some(json))
    }

    fn add(&mut self, resource: usize, instance: usize, json: Option<String>) {
        self.by_resource
            .entry(resource)
            .or_default()
            .push((instance, json));
    }
}

/// Most Flux Kustomizations a run builds: a generous bound, met only by input that makes new
/// ones without end.
const MAX_FLUX_BUILDS: usize = 20_000;

impl FluxPhase {
    fn run(
        repo: &Repository,
        kustomizer: &mut Kustomizer,
        standalone: &Standalone,
        store: &ConfigStore,
    ) -> FluxPhase {
        let mut phase = FluxPhase {
            instances: Vec::new(),
            outputs: Vec::new(),
            problems: Vec::new(),
            missing: HashSet::default(),
        };
        let mut met = Met::default();
        for built in &standalone.objects {
            let shaped_by = match built.producer {
                Producer::Kustomize(k) => {
                    standalone.shaped_by.get(&k).map_or(&[][..], Vec::as_slice)
                }
                _ => &[],
            };
            phase.meet(repo, &built.object, None, shaped_by, &mut met);
        }
        let mut next = 0;
        while next < phase.instances.len() {
            if next >= MAX_FLUX_BUILDS {
                phase.problems.push(BuildError::detached(format!(
                    "more than {MAX_FLUX_BUILDS} Flux Kustomizations are built; the rest are not"
                )));
                break;
            }
            let outputs = phase.build_one(repo, kustomizer, next, store);
            let shaped_by = phase.instances[next].build.shaped_by.clone();
            for built in &outputs {
                phase.meet(repo, &built.object, Some(next), &shaped_by, &mut met);
            }
            phase.outputs.push(outputs);
            next += 1;
        }
        phase.outputs.resize_with(phase.instances.len(), Vec::new);
        phase
    }

    /// Records `object` when it is a Flux Kustomization: a new instance, or one more build
    /// that gives a known one.
    fn meet(
        &mut self,
        repo: &Repository,
        object: &Object,
        found_in: Option<usize>,
        parent_shaped_by: &[usize],
        met: &mut Met,
    ) {
        let is_flux_kustomization =
            FluxKind::from_type(tree::api_version(&object.root), tree::kind(&object.root))
                == Some(FluxKind::Kustomization);
        if !is_flux_kustomization {
            return;
        }
        let (known, json) = met.find(&self.instances, object);
        if let Some(known) = known {
            if let Some(parent) = found_in
                && !self.instances[known].found_in.contains(&parent)
            {
                self.instances[known].found_in.push(parent);
            }
            return;
        }
        let file = repo.inventory.resources[object.resource].file;
        let mut shaped_by = parent_shaped_by.to_vec();
        if !shaped_by.contains(&file) {
            shaped_by.push(file);
        }
        let name = format!(
            "{}/{}",
            object.namespace().unwrap_or(""),
            tree::name(&object.root)
        );
        let build = FluxBuild {
            resource: object.resource,
            name: name.trim_start_matches('/').to_owned(),
            location: repo.location(object.root.span.in_file(file)),
            shaped_by,
            not_built: None,
        };
        met.add(object.resource, self.instances.len(), json);
        self.instances.push(Instance {
            object: object.clone(),
            standalone: found_in.is_none(),
            found_in: found_in.into_iter().collect(),
            build,
        });
    }

    /// Builds instance `index`: kustomize with Flux's additions, then substitution.
    fn build_one(
        &mut self,
        repo: &Repository,
        kustomizer: &mut Kustomizer,
        index: usize,
        store: &ConfigStore,
    ) -> Vec<Built> {
        let object = self.instances[index].object.clone();
        let (_, version) = tree::group_version(tree::api_version(&object.root));
        if FluxKind::Kustomization.info().is_removed_version(version) {
            // The API server refuses the object: nothing of it is ever built.
            self.instances[index].build.not_built = Some(format!(
                "its API version {version} is no longer served (FF002)"
            ));
            return Vec::new();
        }
        let dir = match flux_build_dir(repo, &object.root) {
            Ok(dir) => dir,
            Err(reason) => {
                self.instances[index].build.not_built = Some(reason);
                return Vec::new();
            }
        };
        let overrides = overrides(repo, &object);
        let acc: Accumulator = kustomizer.build_flux(&dir, &overrides);
        let variables = self.variables(&object, store);
        let build = &mut self.instances[index].build;
        for &file in &acc.shaped_by {
            if !build.shaped_by.contains(&file) {
                build.shaped_by.push(file);
            }
        }
        self.problems.extend(acc.problems);
        acc.objects
            .into_iter()
            .map(|mut built| {
                let outcome = substitute::substitute(&mut built.root, &variables);
                let unknown = if outcome.unknown.is_empty() {
                    None
                } else {
                    let vars: Vec<String> = outcome.unknown.iter().map(|v| format!("${{{v}}}")).collect();
                    Some(format!(
                        "{} cannot be known offline: post-build substitution may take {} from {}, which the input does not hold",
                        vars.join(", "),
                        if vars.len() == 1 { "it" } else { "them" },
                        variables.unknown_sources.join(", ")
                    ))
                };
                Built {
                    object: built,
                    producer: Producer::Flux(index),
                    unknown,
                }
            })
            .collect()
    }

    /// The post-build variables of a Flux Kustomization.
    fn variables(&mut self, object: &Object, store: &ConfigStore) -> Variables {
        let mut variables = Variables::default();
        let Some(post_build) = object.root.path(&["spec", "postBuild"]) else {
            return variables;
        };
        let namespace = object.namespace().unwrap_or("").to_owned();
        for source in post_build
            .get("substituteFrom")
            .and_then(Node::as_seq)
            .unwrap_or_default()
        {
            let kind = source.get("kind").and_then(Node::as_str).unwrap_or("");
            let name = source.get("name").and_then(Node::as_str).unwrap_or("");
            let key = (namespace.clone(), kind.to_owned(), name.to_owned());
            match store.entries.get(&key) {
                Some(Ok(values)) => variables.values.extend(values.clone()),
                Some(Err(why)) => variables
                    .unknown_sources
                    .push(format!("{kind}/{name} ({why})")),
                None => {
                    let optional = source.get("optional").and_then(Node::as_scalar) == Some("true");
                    self.missing.insert(key);
                    if !optional {
                        variables
                            .unknown_sources
                            .push(format!("{kind} {namespace}/{name}"));
                    }
                }
            }
        }
        for (key, value) in post_build
            .get("substitute")
            .and_then(Node::as_map)
            .unwrap_or_default()
        {
            if let (Some(key), Some(value)) = (key.as_scalar(), value.as_scalar()) {
                variables
                    .values
                    .insert(key.to_owned(), value.replace('\n', ""));
            }
        }
        variables
    }

    /// Step 3: which instances are kept, and the objects judged.
    fn finish(self, standalone: Standalone) -> Builds {
        let count = self.instances.len();
        let mut reached: Vec<HashSet<usize>> = vec![HashSet::default(); count];
        for (i, outputs) in self.outputs.iter().enumerate() {
            reached[i].extend(outputs.iter().map(|b| b.object.resource));
        }
        // Kept: given by a kept Flux build, or found on its own where no other kept build
        // gives its document (that build's version of it is the one Flux applies).
        let mut kept = vec![true; count];
        for _ in 0..count.min(64) {
            let mut changed = false;
            for i in 0..count {
                let instance = &self.instances[i];
                let given = instance.found_in.iter().any(|&j| j != i && kept[j]);
                let superseded = (0..count)
                    .any(|j| j != i && kept[j] && reached[j].contains(&instance.object.resource));
                let keep = given || (instance.standalone && !superseded);
                if keep != kept[i] {
                    kept[i] = keep;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut flux_reached: HashSet<usize> = HashSet::default();
        for i in (0..count).filter(|&i| kept[i]) {
            flux_reached.extend(reached[i].iter().copied());
        }
        let mut builds = Builds {
            objects: Vec::new(),
            flux: Vec::with_capacity(count),
            problems: standalone.problems,
            kustomize_shaped_by: standalone.shaped_by,
        };
        builds.problems.extend(self.problems);
        // A directory built on its own and by a Flux Kustomization fails alike: said once.
        let mut seen = Vec::new();
        builds.problems.retain(|p| {
            let key = (p.span, p.message.clone());
            let new = !seen.contains(&key);
            if new {
                seen.push(key);
            }
            new
        });
        // Instances keep their numbers (producers name them); dropped ones give nothing.
        for (i, (instance, outputs)) in self.instances.into_iter().zip(self.outputs).enumerate() {
            builds.flux.push(instance.build);
            if kept[i] {
                builds.objects.extend(outputs);
            }
        }
        builds.objects.extend(
            standalone
                .objects
                .into_iter()
                .filter(|b| !flux_reached.contains(&b.object.resource)),
        );
        builds
    }
}

/// The directory a Flux Kustomization builds, or why it builds none offline.
fn flux_build_dir(repo: &Repository, root: &Node) -> Result<PathBuf, String> {
    let source_ref = root.path(&["spec", "sourceRef"]);
    let source_kind = source_ref
        .and_then(|r| r.get("kind"))
        .and_then(Node::as_str)
        .unwrap_or("GitRepository");
    let dir = spec_path(root)?;
    let source_name = source_ref
        .and_then(|r| r.get("name"))
        .and_then(Node::as_str)
        .unwrap_or("");
    let dir = match source_kind {
        // The whole tree of a source other than the bootstrap one is most likely another
        // repository (a tenant's); a sub-directory that exists here is taken to be this one.
        "GitRepository" | "OCIRepository" | "Bucket"
            if dir.as_os_str().is_empty() && source_name != "flux-system" =>
        {
            return Err(format!(
                "it builds the whole of {source_kind} {source_name}, taken to be another repository than this one"
            ));
        }
        "GitRepository" | "OCIRepository" | "Bucket" => dir,
        "ExternalArtifact" => {
            let name = source_ref
                .and_then(|r| r.get("name"))
                .and_then(Node::as_str)
                .unwrap_or("");
            artifact_dir(repo, name, &dir).ok_or_else(|| {
                format!(
                    "it builds ExternalArtifact {name}, which no ArtifactGenerator of the input makes from this repository"
                )
            })?
        }
        other => {
            return Err(format!(
                "it builds the artifact of a {other}, not this repository"
            ));
        }
    };
    if repo.is_dir(&dir) {
        Ok(dir)
    } else {
        Err(format!(
            "its spec.path leads to `{}`, which is not a directory of this repository (another source's?)",
            dir.display()
        ))
    }
}

/// Where, in this repository, the directory `path` of ExternalArtifact `name` comes from: the
/// ArtifactGenerator (Flux 2.7, `source.extensions.fluxcd.io`) that makes the artifact copies
/// `@alias/<dir>/**` of a Git source to `@artifact/<to>/`; `path` under `<to>` is then
/// `<dir>` plus the rest of `path`. The most specific copy wins.
fn artifact_dir(repo: &Repository, name: &str, path: &Path) -> Option<PathBuf> {
    let generators = repo.inventory.resources.iter().filter(|r| {
        r.kind == "ArtifactGenerator" && r.api_version.starts_with("source.extensions.fluxcd.io/")
    });
    let mut best: Option<(usize, PathBuf)> = None;
    for generator in generators {
        let Some(root) = generator.root() else {
            continue;
        };
        let artifacts = root
            .path(&["spec", "artifacts"])
            .and_then(Node::as_seq)
            .unwrap_or_default();
        let Some(artifact) = artifacts
            .iter()
            .find(|a| a.get("name").and_then(Node::as_str) == Some(name))
        else {
            continue;
        };
        for copy in artifact
            .get("copy")
            .and_then(Node::as_seq)
            .unwrap_or_default()
        {
            let field = |key: &str| copy.get(key).and_then(Node::as_str).unwrap_or("");
            let Some(to) = field("to")
                .strip_prefix("@artifact/")
                .map(|t| t.trim_matches('/'))
            else {
                continue;
            };
            let Some(from) = field("from")
                .strip_prefix('@')
                .and_then(|f| f.split_once('/'))
            else {
                continue;
            };
            let Some(from_dir) = from
                .1
                .strip_suffix("/**")
                .or_else(|| (from.1 == "**").then_some(""))
            else {
                continue;
            };
            let to = Path::new(to);
            let Ok(rest) = path.strip_prefix(to) else {
                continue;
            };
            let specificity = to.components().count();
            if best.as_ref().is_none_or(|(s, _)| specificity > *s) {
                best = Some((specificity, Path::new(from_dir).join(rest)));
            }
        }
    }
    best.and_then(|(_, dir)| normalize(Path::new(""), dir.to_str()?))
}

/// What Flux adds to the kustomization it builds.
fn overrides<'a>(repo: &Repository, object: &'a Object) -> FluxOverrides<'a> {
    let spec = object.root.get("spec");
    let field = |key: &str| spec.and_then(|s| s.get(key));
    let file = repo.inventory.resources[object.resource].file;
    let target_namespace = field("targetNamespace").and_then(|node| {
        let value = node.as_str()?;
        let origin = NamespaceOrigin::FluxKustomization {
            kustomization: {
                let name = format!(
                    "{}/{}",
                    object.namespace().unwrap_or(""),
                    tree::name(&object.root)
                );
                name.trim_start_matches('/').to_owned()
            },
            location: repo.location(node.span),
        };
        Some((value.to_owned(), node.span, origin))
    });
    FluxOverrides {
        target_namespace,
        patches: field("patches")
            .and_then(Node::as_seq)
            .unwrap_or_default()
            .iter()
            .collect(),
        components: field("components")
            .and_then(Node::as_seq)
            .unwrap_or_default()
            .iter()
            .collect(),
        name_prefix: field("namePrefix"),
        name_suffix: field("nameSuffix"),
        file: object.root.span.file_index().or(Some(file)),
    }
}

/// `(namespace, kind, name)` of a ConfigMap or Secret.
type ConfigKey = (String, String, String);

/// The data of the ConfigMaps and Secrets the builds give, for `substituteFrom`.
#[derive(Default)]
struct ConfigStore {
    entries: StdHashMap<ConfigKey, Result<StdHashMap<String, String>, String>>,
}

impl ConfigStore {
    fn of<'a>(objects: impl Iterator<Item = &'a Object>) -> ConfigStore {
        let mut store = ConfigStore::default();
        for object in objects {
            let kind = tree::kind(&object.root);
            if !matches!(kind, "ConfigMap" | "Secret") || tree::api_version(&object.root) != "v1" {
                continue;
            }
            let key = (
                object.namespace().unwrap_or("").to_owned(),
                kind.to_owned(),
                tree::name(&object.root).to_owned(),
            );
            store
                .entries
                .entry(key)
                .or_insert_with(|| config_data(&object.root));
        }
        store
    }

    fn merge(&mut self, other: ConfigStore) {
        for (key, value) in other.entries {
            self.entries.entry(key).or_insert(value);
        }
    }
}

/// A ConfigMap's `data`, a Secret's `stringData` and decoded `data`, with line breaks taken
/// out as Flux does; an encrypted Secret cannot be read offline.
fn config_data(root: &Node) -> Result<StdHashMap<String, String>, String> {
    if root.get("sops").is_some() {
        return Err("SOPS-encrypted".into());
    }
    let mut values = StdHashMap::new();
    let is_secret = tree::kind(root) == "Secret";
    for field in ["data", "stringData"] {
        for (key, value) in root.get(field).and_then(Node::as_map).unwrap_or_default() {
            let (Some(key), Some(text)) = (key.as_scalar(), value.as_scalar()) else {
                continue;
            };
            let text = if is_secret && field == "data" {
                match decode_base64(text) {
                    Some(decoded) => decoded,
                    None => return Err(format!("its data `{key}` is not base64 text")),
                }
            } else {
                text.to_owned()
            };
            values.insert(key.to_owned(), text.replace('\n', ""));
        }
    }
    Ok(values)
}

/// Standard base64 (with or without padding) as UTF-8 text.
fn decode_base64(text: &str) -> Option<String> {
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut bytes = Vec::with_capacity(text.len() * 3 / 4);
    for c in text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
    {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The input as a file tree: what builds look up.
pub struct Repository<'a> {
    pub inventory: &'a Inventory,
    file_by_path: HashMap<PathBuf, usize>,
    dirs: HashMap<PathBuf, Directory>,
    resources_by_file: Vec<Vec<usize>>,
    kustomize_by_file: HashMap<usize, usize>,
    /// Files the source artifact leaves out (`.sourceignore`): a Flux build does not see
    /// them, `kubectl kustomize` of the checkout does.
    source_ignored: Vec<bool>,
    /// Documents of files read as patches or replacements, parsed once.
    parsed: RefCell<HashMap<usize, Result<Vec<Node>, BuildError>>>,
}

#[derive(Default)]
struct Directory {
    files: Vec<usize>,
    subdirs: Vec<PathBuf>,
    kustomization: Option<usize>,
}

impl<'a> Repository<'a> {
    pub fn new(inventory: &'a Inventory) -> Repository<'a> {
        let mut repo = Repository {
            inventory,
            file_by_path: HashMap::default(),
            dirs: HashMap::default(),
            resources_by_file: vec![Vec::new(); inventory.files.len()],
            kustomize_by_file: HashMap::default(),
            source_ignored: source_ignored(inventory),
            parsed: RefCell::new(HashMap::default()),
        };
        for (index, file) in inventory.files.iter().enumerate() {
            repo.file_by_path.insert(file.rel.clone(), index);
            let dir = file.rel.parent().unwrap_or(Path::new("")).to_path_buf();
            repo.add_dir(&dir);
            if let Some(entry) = repo.dirs.get_mut(&dir) {
                entry.files.push(index);
            }
        }
        for (k, kustomization) in inventory.kustomize_files.iter().enumerate() {
            repo.kustomize_by_file.insert(kustomization.file, k);
            if let Some(entry) = repo.dirs.get_mut(&kustomization.dir) {
                // kustomize refuses a directory with two kustomization files; keep the first.
                entry.kustomization.get_or_insert(kustomization.file);
            }
        }
        for (index, resource) in inventory.resources.iter().enumerate() {
            if let Some(list) = repo.resources_by_file.get_mut(resource.file) {
                list.push(index);
            }
        }
        for entry in repo.dirs.values_mut() {
            entry.subdirs.sort();
            entry
                .files
                .sort_by(|a, b| inventory.files[*a].rel.cmp(&inventory.files[*b].rel));
        }
        repo
    }

    fn add_dir(&mut self, dir: &Path) {
        if self.dirs.contains_key(dir) {
            return;
        }
        self.dirs.insert(dir.to_path_buf(), Directory::default());
        if let Some(parent) = dir.parent() {
            self.add_dir(parent);
            if let Some(entry) = self.dirs.get_mut(parent) {
                entry.subdirs.push(dir.to_path_buf());
            }
        }
    }

    pub fn is_dir(&self, path: &Path) -> bool {
        self.dirs.contains_key(path)
    }

    /// The file at `path` (relative to the root), when the input has one there.
    pub fn file_at(&self, path: &Path) -> Option<usize> {
        self.file_by_path.get(path).copied()
    }

    /// Whether the source artifact Flux builds from leaves `file` out.
    pub fn is_source_ignored(&self, file: usize) -> bool {
        self.source_ignored.get(file).copied().unwrap_or(false)
    }

    /// The kustomization file (its file index) kustomize reads in `dir`.
    pub fn kustomization_of(&self, dir: &Path) -> Option<usize> {
        self.dirs.get(dir).and_then(|d| d.kustomization)
    }

    /// The parsed kustomization of file `file`.
    pub fn kustomization_root(&self, file: usize) -> Option<&'a Node> {
        let k = *self.kustomize_by_file.get(&file)?;
        Some(&self.inventory.kustomize_files[k].root)
    }

    /// The `kustomize_files` index of file `file`.
    pub fn kustomize_index(&self, file: usize) -> Option<usize> {
        self.kustomize_by_file.get(&file).copied()
    }

    pub fn text(&self, file: usize) -> &'a str {
        &self.inventory.files[file].text
    }

    /// `path:line` of a span placed in a file.
    pub fn location(&self, span: Span) -> String {
        let Some(file) = span.file_index().and_then(|i| self.inventory.files.get(i)) else {
            return "(unknown)".into();
        };
        let (line, _) = file.lines.position(&file.text, span.start);
        format!("{}:{line}", file.path)
    }

    /// The resources of a file, as a build starts from them.
    pub fn objects_of_file(&self, file: usize) -> Vec<Object> {
        self.objects_of_file_where(file, |_| true)
    }

    /// The resources of a file that `wanted` (given their index) keeps.
    fn objects_of_file_where(&self, file: usize, wanted: impl Fn(usize) -> bool) -> Vec<Object> {
        let Some(resources) = self.resources_by_file.get(file) else {
            return Vec::new();
        };
        resources
            .iter()
            .filter(|&&index| wanted(index))
            .filter_map(|&index| {
                let resource = &self.inventory.resources[index];
                let full = resource.root()?;
                let light = !carried_whole(
                    &resource.api_version,
                    &resource.kind,
                    resource.flux.is_some(),
                );
                let mut root = if light {
                    identity_of(full)
                } else {
                    full.clone()
                };
                tree::place_in_file(&mut root, file);
                Some(Object {
                    light,
                    original_name: resource.name.clone(),
                    original_namespace: resource.declared_namespace.clone(),
                    origin: resource
                        .declared_namespace
                        .as_ref()
                        .map(|_| NamespaceOrigin::Metadata),
                    root: Arc::new(root),
                    resource: index,
                })
            })
            .collect()
    }

    /// A resource's tree as its file writes it, placed in the file (a replacement's source
    /// that the build carries by its identity only).
    pub fn file_version(&self, resource: usize) -> Option<Node> {
        let resource = self.inventory.resources.get(resource)?;
        let mut root = resource.root()?.clone();
        tree::place_in_file(&mut root, resource.file);
        Some(root)
    }

    /// Every document of a file (a patch, a replacement list), placed in it.
    pub fn documents_of(&self, file: usize) -> Result<Vec<Node>, BuildError> {
        if let Some(done) = self.parsed.borrow().get(&file) {
            return done.clone();
        }
        let text = self.text(file);
        let mut documents = Vec::new();
        let parsed = yaml::load_documents(text, |d| documents.push(d.root))
            .map(|()| {
                for document in &mut documents {
                    tree::place_in_file(document, file);
                }
                documents
            })
            .map_err(|e| BuildError::at(Span::new(e.offset, e.offset).in_file(file), e.message));
        self.parsed.borrow_mut().insert(file, parsed.clone());
        parsed
    }

    /// The entries of the kustomization kustomize-controller generates for `dir`.
    pub fn walk_generated(&self, dir: &Path) -> Vec<Generated> {
        let mut out = Vec::new();
        self.walk_into(dir, &mut out);
        out
    }

    fn walk_into(&self, dir: &Path, out: &mut Vec<Generated>) {
        let Some(entry) = self.dirs.get(dir) else {
            return;
        };
        // A walk visits a directory's entries in name order, files and directories alike.
        enum Item<'p> {
            File(usize, &'p Path),
            Dir(&'p Path),
        }
        let files = &self.inventory.files;
        let mut items: Vec<Item> = entry
            .files
            .iter()
            .filter(|&&f| {
                let ext = files[f].rel.extension().and_then(|e| e.to_str());
                matches!(ext, Some("yaml" | "yml")) && !is_kustomization_file(&files[f].rel)
            })
            .map(|&f| Item::File(f, files[f].rel.as_path()))
            .chain(entry.subdirs.iter().map(|d| Item::Dir(d.as_path())))
            .collect();
        let name = |item: &Item| match item {
            Item::File(_, p) | Item::Dir(p) => p.file_name().map(|n| n.to_os_string()),
        };
        items.sort_by_key(|item| name(item));
        for item in items {
            match item {
                Item::File(file, _) => out.push(Generated::File(file)),
                Item::Dir(sub) => {
                    if self.kustomization_of(sub).is_some() {
                        out.push(Generated::Kustomization(sub.to_path_buf()));
                    } else {
                        self.walk_into(sub, out);
                    }
                }
            }
        }
    }
}

/// The effective namespaces of every resource (indexed like `inventory.resources`), as the
/// builds place it: one per distinct placement, in build order; a resource no build gives is
/// where its own metadata puts it.
pub fn effective_namespaces(
    inventory: &Inventory,
    builds: &Builds,
) -> Vec<Vec<EffectiveNamespace>> {
    let mut out: Vec<Vec<EffectiveNamespace>> = vec![Vec::new(); inventory.resources.len()];
    for built in &builds.objects {
        let namespace = placement(&built.object);
        if let Some(list) = out.get_mut(built.object.resource)
            && !list.contains(&namespace)
        {
            list.push(namespace);
        }
    }
    for (resource, list) in inventory.resources.iter().zip(out.iter_mut()) {
        if list.is_empty() {
            list.push(match &resource.declared_namespace {
                Some(ns) => EffectiveNamespace::from_value(ns, NamespaceOrigin::Metadata),
                None => EffectiveNamespace::Unknown {
                    reason: NO_NAMESPACE.into(),
                },
            });
        }
    }
    out
}

const NO_NAMESPACE: &str = "no namespace is set: no metadata.namespace, no kustomization.yaml namespace and no \
                            Flux Kustomization targetNamespace applies to it";

/// The namespace a built object lands in.
pub fn placement(object: &Object) -> EffectiveNamespace {
    match object.namespace() {
        Some(ns) => EffectiveNamespace::from_value(
            ns,
            object.origin.clone().unwrap_or(NamespaceOrigin::Metadata),
        ),
        None => EffectiveNamespace::Unknown {
            reason: NO_NAMESPACE.into(),
        },
    }
}

/// `spec.path` of a Flux Kustomization, relative to its source's root, or why it has none
/// offline.
fn spec_path(root: &Node) -> Result<PathBuf, String> {
    let path = root
        .path(&["spec", "path"])
        .and_then(Node::as_scalar)
        .unwrap_or("");
    if path.contains("${") {
        return Err(format!("its spec.path `{path}` is a substitution variable"));
    }
    normalize(Path::new(""), path)
        .ok_or_else(|| format!("its spec.path `{path}` leaves the repository"))
}

/// `spec.path` of a Flux Kustomization that builds from this repository, relative to its root.
pub fn flux_path(root: &Node) -> Option<PathBuf> {
    let source_kind = root
        .path(&["spec", "sourceRef", "kind"])
        .and_then(Node::as_str)
        .unwrap_or("GitRepository");
    if !matches!(source_kind, "GitRepository" | "OCIRepository" | "Bucket") {
        return None;
    }
    spec_path(root).ok()
}

/// Which files of the input the root's `.sourceignore` leaves out of the source artifact
/// (gitignore syntax, paths from the repository root, as source-controller reads it).
fn source_ignored(inventory: &Inventory) -> Vec<bool> {
    let none = || vec![false; inventory.files.len()];
    let Some(root) = inventory.root.as_deref() else {
        return none();
    };
    let file = root.join(".sourceignore");
    if !file.is_file() {
        return none();
    }
    let (matcher, _error) = ignore::gitignore::Gitignore::new(&file);
    inventory
        .files
        .iter()
        .map(|f| {
            matcher
                .matched_path_or_any_parents(&f.rel, false)
                .is_ignore()
        })
        .collect()
}

/// `kustomize build` of one directory of the input (relative to its root), as a resource of
/// another kustomization would be built: what `kubectl kustomize DIR` gives.
pub fn kustomize_build(inventory: &Inventory, dir: &Path) -> (Vec<Object>, Vec<BuildError>) {
    let repo = Repository::new(inventory);
    let mut kustomizer = Kustomizer::new(&repo, false);
    let built = kustomizer.build_dir(dir);
    (built.objects.clone(), built.problems.clone())
}

/// The inventory resources that `kustomize build` of each directory gives (the directories
/// relative to the input's root), with one memo of the builds they share.
pub fn resources_built_from(inventory: &Inventory, dirs: &[&Path]) -> Vec<Vec<usize>> {
    let repo = Repository::new(inventory);
    let mut kustomizer = Kustomizer::new(&repo, false);
    dirs.iter()
        .map(|dir| {
            let built = kustomizer.build_dir(dir);
            built.objects.iter().map(|o| o.resource).collect()
        })
        .collect()
}

/// The first document of a YAML text, for tests.
#[cfg(test)]
pub(crate) fn first_document(text: &str) -> Node {
    let mut roots = Vec::new();
    let loaded = yaml::load_documents(text, |d| roots.push(d.root));
    assert!(loaded.is_ok(), "{loaded:?}");
    roots.remove(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_as_secrets_are_written() {
        assert_eq!(decode_base64("dGVhbS1h").as_deref(), Some("team-a"));
        assert_eq!(decode_base64("YQ==").as_deref(), Some("a"));
        assert_eq!(decode_base64("not base64!"), None);
    }

    fn object(resource: usize, text: &str) -> Object {
        Object {
            root: Arc::new(first_document(text)),
            resource,
            original_name: "apps".into(),
            original_namespace: None,
            origin: None,
            light: false,
        }
    }

    fn instance(object: &Object) -> Instance {
        Instance {
            object: object.clone(),
            standalone: true,
            found_in: Vec::new(),
            build: FluxBuild {
                resource: object.resource,
                name: "apps".into(),
                location: String::new(),
                shaped_by: Vec::new(),
                not_built: None,
            },
        }
    }

    #[test]
    fn a_flux_kustomization_met_again_is_the_same_instance_only_when_it_is_the_same_object() {
        let text = "kind: Kustomization\nmetadata:\n  name: apps\nspec:\n  path: ./apps\n";
        let first = object(3, text);
        let mut met = Met::default();
        let mut instances = Vec::new();
        assert_eq!(met.find(&instances, &first), (None, None));
        met.add(3, 0, None);
        instances.push(instance(&first));
        // Shared unchanged by another build: the same tree.
        assert_eq!(met.find(&instances, &first.clone()).0, Some(0));
        // Read again with other positions (the same values, written elsewhere): the same.
        let spaced = object(3, &format!("\n\n{text}"));
        assert_eq!(met.find(&instances, &spaced).0, Some(0));
        // A build that changed a value: another instance, its JSON written.
        let moved = object(3, &text.replace("./apps", "./other"));
        let (known, json) = met.find(&instances, &moved);
        assert_eq!(known, None);
        assert!(json.is_some_and(|j| j.contains("./other")));
        // The same values in another document: another instance.
        assert_eq!(met.find(&instances, &object(4, text)), (None, None));
    }
}
