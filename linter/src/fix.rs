//! `fluxfence fix`: rewrites files into the multi-tenant layout with byte-range edits, so every
//! byte outside an edit (comments, quoting, key order, anchors, line ends) survives.
//!
//! Fixes are planned as `(object, JSON pointer, value)` operations and lowered here to text
//! edits; the linter is run again on the result until nothing is left to fix.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::diagnostic::{Applicability, FixOp, Severity};
use crate::input::{Inventory, Resource};
use crate::kinds::FluxKind;
use crate::kustomize::{PatchFiles, Selects, normalize};
use crate::model::{EffectiveNamespace, NamespaceOrigin};
use crate::policy::Policy;
use crate::remedy::move_edits;
use crate::rules::{self, Context, Subject, source_references};
use crate::yaml::{Node, Span, Value};

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

/// One planned change of one document.
#[derive(Debug, Clone)]
struct Planned {
    file: usize,
    /// Index into `inventory.resources`, or `None` for kustomization files.
    resource: Option<usize>,
    op: FixOp,
    applicability: Applicability,
    description: String,
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
        policy.config_namespace = ns.clone();
        if let Some(sa) = policy.default_service_account.as_mut() {
            if !sa.namespaces.contains(ns) {
                sa.namespaces.push(ns.clone());
            }
        }
    }
    let originals: HashMap<String, String> = inventory
        .files
        .iter()
        .map(|f| (f.path.clone(), f.text.clone()))
        .collect();
    let mut inventory = inventory;
    let mut outcome = FixOutcome::default();
    for pass in 0..=MAX_PASSES {
        let (plan, skipped) = plan(&inventory, &policy, options);
        if pass == 0 {
            outcome.skipped = skipped;
        }
        if plan.is_empty() {
            outcome.changed = inventory
                .files
                .iter()
                .filter_map(|f| {
                    let original = originals.get(&f.path)?;
                    (original != &f.text)
                        .then(|| (f.path.clone(), original.clone(), f.text.clone()))
                })
                .collect();
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
        // and `spec.targetNamespace`) would write it twice: one goes now, the others are
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

/// Applies changes whose edits do not overlap, in one splice per file.
fn apply_together(inventory: Inventory, plan: &[&Planned]) -> Result<Inventory, String> {
    let mut edits: HashMap<usize, Vec<TextEdit>> = HashMap::new();
    for planned in plan {
        let file = &inventory.files[planned.file];
        match lowered(&inventory, planned) {
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

/// The pointer of the first mapping a planned `Set` must create before it can write its
/// value (`/spec` for `/spec/releaseName` when the object has no `spec`), if any.
fn missing_parent(inventory: &Inventory, planned: &Planned) -> Option<String> {
    let root = &inventory.resources[planned.resource?].flux.as_ref()?.root;
    let FixOp::Set { pointer, .. } = &planned.op;
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

/// The text edits of one planned change, or `None` when its file cannot take it.
fn lowered(inventory: &Inventory, planned: &Planned) -> Option<Vec<TextEdit>> {
    match planned.resource {
        Some(r) => {
            let resource = &inventory.resources[r];
            let root = resource.flux.as_ref().map(|o| &o.root)?;
            let text = &inventory.files[planned.file].text;
            lower(text, resource.span, root, &planned.op)
        }
        None => lower_kustomization(inventory, planned).map(|e| vec![e]),
    }
}

/// Whether `op` can be written into the document of resource `r`.
fn writable(inventory: &Inventory, r: usize, op: &FixOp) -> bool {
    let resource = &inventory.resources[r];
    let text = &inventory.files[resource.file].text;
    resource
        .flux
        .as_ref()
        .is_some_and(|o| lower(text, resource.span, &o.root, op).is_some())
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

/// Everything `fix` would change now: `(applicable plan, skipped explanations)`.
fn plan(
    inventory: &Inventory,
    policy: &Policy,
    options: &FixOptions,
) -> (Vec<Planned>, Vec<String>) {
    let builds = crate::build::build(inventory);
    let namespaces = crate::build::effective_namespaces(inventory, &builds);
    let service_accounts = crate::lint::declared_service_accounts(&builds);
    let mut planned = Vec::new();
    let mut skipped = Vec::new();
    let patches = inventory.patch_files();
    plan_moves(
        inventory,
        &patches,
        &namespaces,
        &service_accounts,
        policy,
        &mut planned,
        &mut skipped,
    );
    let allowed = |p: &Planned| p.applicability == Applicability::Safe || options.unsafe_fixes;
    // An object that moves now is judged in its new namespace on the next pass.
    let moving: HashSet<usize> = planned
        .iter()
        .filter(|p| allowed(p))
        .filter_map(|p| p.resource)
        .collect();
    planned.extend(plan_rule_fixes(
        inventory,
        &patches,
        &namespaces,
        policy,
        &moving,
    ));
    // A fix the text cannot take (a field under a list or a scalar, as in `spec: []`) is said
    // and left out, with every other edit of its object (and every move, should it be one:
    // half a move breaks references), so that the rest still apply.
    let unwritable: Vec<&Planned> = planned
        .iter()
        .filter(|p| lowered(inventory, p).is_none())
        .collect();
    let unwritable_objects: HashSet<Option<usize>> =
        unwritable.iter().map(|p| p.resource).collect();
    let moves_unwritable = unwritable
        .iter()
        .any(|p| p.applicability == Applicability::Unsafe);
    let held_back = |p: &Planned| {
        unwritable_objects.contains(&p.resource)
            || (moves_unwritable && p.applicability == Applicability::Unsafe)
    };
    let (unwritten, planned): (Vec<_>, Vec<_>) = planned.into_iter().partition(held_back);
    skipped.extend(unwritten.iter().map(|p| {
        format!(
            "{}: {} (cannot be written: a field on its path is not a mapping)",
            inventory.files[p.file].path, p.description
        )
    }));
    let (apply, hold): (Vec<_>, Vec<_>) = planned.into_iter().partition(allowed);
    let mut held: Vec<String> = hold
        .iter()
        .map(|p| {
            format!(
                "{}: {} (unsafe: run with --unsafe-fixes)",
                inventory.files[p.file].path, p.description
            )
        })
        .collect();
    held.dedup();
    skipped.extend(held);
    (apply, skipped)
}

fn known(candidates: &[EffectiveNamespace]) -> Option<(&str, &NamespaceOrigin)> {
    match candidates {
        [EffectiveNamespace::Known { name, origin }] => Some((name, origin)),
        _ => None,
    }
}

/// FF110: name the service account explicitly.
fn plan_rule_fixes(
    inventory: &Inventory,
    patches: &PatchFiles,
    namespaces: &[Vec<EffectiveNamespace>],
    policy: &Policy,
    moving: &HashSet<usize>,
) -> Vec<Planned> {
    let empty = HashSet::new();
    let cx = Context {
        policy,
        declared_service_accounts: &empty,
        trust_explicit_service_accounts: true,
    };
    let version_meta = rules::ff002_removed_api_version::meta();
    let version_severity = policy.severity(version_meta.code, version_meta.default_severity);
    let mut out = Vec::new();
    for (r, resource) in inventory.resources.iter().enumerate() {
        let Some(object) = editable(inventory, patches, resource) else {
            continue;
        };
        let mut findings = Vec::new();
        // FF002 does not depend on the namespace: it runs everywhere, like the linter's pass.
        if version_severity != Severity::Off {
            rules::ff002_removed_api_version::check(object, &mut findings);
        }
        // The service account does not depend on which of several namespaces applies.
        let known = namespaces[r].iter().find_map(|c| match c {
            EffectiveNamespace::Known { name, origin } => Some((name.as_str(), origin)),
            EffectiveNamespace::Unknown { .. } => None,
        });
        if let Some((namespace, origin)) = known.filter(|_| !moving.contains(&r)) {
            let subject = Subject {
                object,
                namespace,
                origin,
            };
            findings.extend(rules::check_object(&subject, &cx));
        }
        for finding in findings {
            let Some(fix) = finding.fix else { continue };
            for op in fix.ops {
                out.push(Planned {
                    file: resource.file,
                    resource: Some(r),
                    op,
                    applicability: fix.applicability,
                    description: format!(
                        "{} {}: {}",
                        finding.code,
                        object.display_name(),
                        fix.description
                    ),
                });
            }
        }
    }
    out
}

/// The Flux object of a resource the fixer may edit: in a reported file that is not a patch.
fn editable<'a>(
    inventory: &Inventory,
    patches: &PatchFiles,
    resource: &'a Resource,
) -> Option<&'a crate::model::FluxObject> {
    let file = &inventory.files[resource.file];
    resource
        .flux
        .as_ref()
        .filter(|_| file.reported && !patches.contains(&file.rel))
}

/// The document's rewrite: Flux objects of app namespaces that break under multi-tenancy
/// (FF101/FF111) move to the config namespace with everything they reference.
fn plan_moves(
    inventory: &Inventory,
    patches: &PatchFiles,
    namespaces: &[Vec<EffectiveNamespace>],
    service_accounts: &HashSet<(String, String)>,
    policy: &Policy,
    planned: &mut Vec<Planned>,
    skipped: &mut Vec<String>,
) {
    let config = policy.config_namespace.as_str();
    let cx = Context {
        policy,
        declared_service_accounts: service_accounts,
        trust_explicit_service_accounts: false,
    };

    // 1. App namespaces: where some Flux object fails FF101 or FF111.
    let mut app_namespaces: HashSet<String> = HashSet::new();
    for (r, resource) in inventory.resources.iter().enumerate() {
        let Some(object) = editable(inventory, patches, resource) else {
            continue;
        };
        let Some((namespace, origin)) = known(&namespaces[r]) else {
            continue;
        };
        if namespace == config {
            continue;
        }
        let subject = Subject {
            object,
            namespace,
            origin,
        };
        let broken = rules::check_object(&subject, &cx)
            .iter()
            .any(|f| matches!(f.code, "FF101" | "FF111") && f.severity == Severity::Deny);
        if broken {
            app_namespaces.insert(namespace.to_owned());
        }
    }
    if app_namespaces.is_empty() {
        return;
    }

    // 2. What moves: every Flux object of those namespaces, and the sources they reference.
    // A repository that serves several clusters declares one identity once per cluster: a
    // reference names every copy, and they all move with it.
    let mut by_identity: HashMap<(FluxKind, &str, &str), Vec<usize>> = HashMap::new();
    for (r, resource) in inventory.resources.iter().enumerate() {
        // A patch names the object it patches: it is not a second one.
        if patches.contains(&inventory.files[resource.file].rel) {
            continue;
        }
        if let (Some(object), Some((ns, _))) = (&resource.flux, known(&namespaces[r])) {
            by_identity
                .entry((object.kind, ns, object.name.as_str()))
                .or_default()
                .push(r);
        }
    }
    // They move together or not at all: an object whose source stays behind (or the other way
    // round) would reference across namespaces, and the objects one kustomization's
    // `namespace:` places move by one edit of it.
    let mut groups = Groups::default();
    for (r, resource) in inventory.resources.iter().enumerate() {
        let Some(object) = editable(inventory, patches, resource) else {
            continue;
        };
        let Some((namespace, _)) = known(&namespaces[r]) else {
            continue;
        };
        if !app_namespaces.contains(namespace) {
            continue;
        }
        groups.add(r, namespace);
        for reference in source_references(object) {
            let Some(kind) = reference.field("kind").and_then(FluxKind::from_name) else {
                continue;
            };
            let ns = reference.field("namespace").unwrap_or(namespace);
            let Some(name) = reference.field("name") else {
                continue;
            };
            if ns == config {
                continue;
            }
            for &target in by_identity.get(&(kind, ns, name)).into_iter().flatten() {
                if editable(inventory, patches, &inventory.resources[target]).is_some() {
                    groups.add(target, ns);
                    groups.join(r, target);
                }
            }
        }
    }
    let mut placed_by: HashMap<usize, usize> = HashMap::new();
    for r in groups.members() {
        if let Some((_, NamespaceOrigin::KustomizeFile { kustomization, .. })) =
            known(&namespaces[r])
        {
            let first = *placed_by.entry(*kustomization).or_insert(r);
            groups.join(first, r);
        }
    }
    // A group stays where it is when a patch selects one of its objects by namespace.
    let scoped = scoped_patches(inventory);
    let mut held: HashMap<usize, String> = HashMap::new();
    for r in groups.members() {
        let namespace = groups.namespace(r).to_owned();
        let Some(patch) =
            patch_selecting(inventory, &scoped, r, &namespace, config, &namespaces[r])
        else {
            continue;
        };
        let group = groups.group_of(r);
        held.entry(group).or_insert_with(|| {
            let resource = &inventory.resources[r];
            let others = groups
                .members()
                .into_iter()
                .filter(|&m| m != r && groups.group_of(m) == group);
            let with = match others.count() {
                0 => String::new(),
                1 => " (nor the Flux object that moves with it)".to_owned(),
                n => format!(" (nor the {n} Flux objects that move with it)"),
            };
            format!(
                "{}: {}/{} not moved{with}: {patch} selects it in `{namespace}`, and would no \
                 longer apply in `{config}`; move them and change the patch together, by hand",
                inventory.files[resource.file].path, resource.kind, resource.name,
            )
        });
    }
    // A group stays where it is when one of its objects cannot take its edits: moving the
    // rest would leave a reference across namespaces.
    for r in groups.members() {
        let group = groups.group_of(r);
        if held.contains_key(&group) {
            continue;
        }
        let resource = &inventory.resources[r];
        let Some(object) = resource.flux.as_ref() else {
            continue;
        };
        let unwritable = move_edits(object, groups.namespace(r), policy)
            .into_iter()
            .map(|(pointer, value)| FixOp::Set { pointer, value })
            .find(|op| !writable(inventory, r, op));
        if let Some(FixOp::Set { pointer, .. }) = unwritable {
            held.insert(
                group,
                format!(
                    "{}: {}/{} not moved: `{pointer}` cannot be written, a field on its path is \
                     not a mapping; correct the object, then run fix again",
                    inventory.files[resource.file].path, resource.kind, resource.name,
                ),
            );
        }
    }
    let mut reasons: Vec<String> = held.values().cloned().collect();
    reasons.sort();
    skipped.extend(reasons);
    let moving: HashMap<usize, String> = groups
        .members()
        .into_iter()
        .filter(|&r| !held.contains_key(&groups.group_of(r)))
        .map(|r| (r, groups.namespace(r).to_owned()))
        .collect();

    // 3. Edits of each moving object, and where its namespace is written.
    let mut kustomization_edits: HashSet<usize> = HashSet::new();
    let mut ordered: Vec<(&usize, &String)> = moving.iter().collect();
    ordered.sort();
    for (&r, namespace) in ordered {
        let resource = &inventory.resources[r];
        let Some(object) = resource.flux.as_ref() else {
            continue;
        };
        let Some((_, origin)) = known(&namespaces[r]) else {
            continue;
        };
        let mut edits = move_edits(object, namespace, policy);
        if edits.is_empty() {
            // Sources: only their namespace changes.
            edits.push(("/metadata/namespace".into(), config.to_owned()));
        }
        if !object.kind.impersonates() {
            edits.retain(|(pointer, _)| pointer == "/metadata/namespace");
        }
        let describe = |what: &str| {
            format!(
                "move {} from `{namespace}` to `{config}`: {what}",
                object.display_name()
            )
        };
        match origin {
            NamespaceOrigin::Metadata => {}
            NamespaceOrigin::KustomizeFile {
                location,
                kustomization,
            } => {
                edits.retain(|(pointer, _)| pointer != "/metadata/namespace");
                match kustomization_blocker(inventory, *kustomization) {
                    None => {
                        if kustomization_edits.insert(*kustomization) {
                            planned.push(Planned {
                                file: inventory.kustomize_files[*kustomization].file,
                                resource: None,
                                op: FixOp::Set {
                                    pointer: "/namespace".into(),
                                    value: config.to_owned(),
                                },
                                applicability: Applicability::Unsafe,
                                description: format!("set namespace: {config} (was `{namespace}`)"),
                            });
                        }
                    }
                    Some(blocker) => {
                        skipped.push(format!(
                            "{}: not moved: its namespace comes from {location}, which also applies {blocker}; \
                             give the Flux objects a kustomization of their own, then run fix again",
                            inventory.files[resource.file].path
                        ));
                        continue;
                    }
                }
            }
            NamespaceOrigin::FluxKustomization {
                kustomization,
                location,
            } => {
                skipped.push(format!(
                    "{}: {} not moved: its namespace is the targetNamespace of Flux Kustomization {kustomization} \
                     ({location}); move the Flux objects out of that Kustomization's path by hand",
                    inventory.files[resource.file].path,
                    object.display_name()
                ));
                continue;
            }
            NamespaceOrigin::Replacement { location } => {
                skipped.push(format!(
                    "{}: {} not moved: a kustomize replacement copies its namespace from {location}; \
                     change the replacement's source by hand",
                    inventory.files[resource.file].path,
                    object.display_name()
                ));
                continue;
            }
            NamespaceOrigin::AdmissionRequest => continue,
        }
        for (pointer, value) in edits {
            planned.push(Planned {
                file: resource.file,
                resource: Some(r),
                description: describe(&format!(
                    "{} = {value}",
                    pointer.trim_start_matches('/').replace('/', ".")
                )),
                op: FixOp::Set { pointer, value },
                applicability: Applicability::Unsafe,
            });
        }
    }

    // 4. References into moved objects from objects that stay, and dependsOn everywhere.
    let moved_identity: HashMap<(FluxKind, String, String), ()> = moving
        .iter()
        .filter_map(|(&r, ns)| {
            inventory.resources[r]
                .flux
                .as_ref()
                .map(|o| ((o.kind, ns.clone(), o.name.clone()), ()))
        })
        .collect();
    for (r, resource) in inventory.resources.iter().enumerate() {
        let Some(object) = editable(inventory, patches, resource) else {
            continue;
        };
        let Some((namespace, _)) = known(&namespaces[r]) else {
            continue;
        };
        let stays = !moving.contains_key(&r);
        let final_ns = if stays { namespace } else { config };
        let mut retarget = |pointer: String, kind: FluxKind, ref_ns: Option<&str>, name: &str| {
            let target_ns = ref_ns.unwrap_or(namespace);
            let target_moves =
                moved_identity.contains_key(&(kind, target_ns.to_owned(), name.to_owned()));
            let new_target = if target_moves { config } else { target_ns };
            let needs = match ref_ns {
                Some(ns) => ns != new_target && (stays || target_moves),
                None => new_target != final_ns,
            };
            // Source references of moving objects are already covered by the move itself.
            if needs && (stays || !pointer.contains("Ref")) {
                planned.push(Planned {
                    file: resource.file,
                    resource: Some(r),
                    description: format!(
                        "{}: point {} at `{new_target}`",
                        object.display_name(),
                        pointer.trim_start_matches('/').replace('/', ".")
                    ),
                    op: FixOp::Set {
                        pointer: format!("{pointer}/namespace"),
                        value: new_target.to_owned(),
                    },
                    applicability: Applicability::Unsafe,
                });
            }
        };
        if stays {
            for reference in source_references(object) {
                let Some(kind) = reference.field("kind").and_then(FluxKind::from_name) else {
                    continue;
                };
                let Some(name) = reference.field("name") else {
                    continue;
                };
                retarget(
                    reference.pointer.clone(),
                    kind,
                    reference.field("namespace"),
                    name,
                );
            }
        }
        if let Some(items) = object
            .root
            .path(&["spec", "dependsOn"])
            .and_then(Node::as_seq)
        {
            for (i, item) in items.iter().enumerate() {
                let Some(name) = item.get("name").and_then(Node::as_str) else {
                    continue;
                };
                let ns = item.get("namespace").and_then(Node::as_str);
                retarget(format!("/spec/dependsOn/{i}"), object.kind, ns, name);
            }
        }
    }
}

/// Resources that move together: each with the namespace it leaves, joined into groups
/// (union-find over resource indices).
#[derive(Default)]
struct Groups {
    namespace: HashMap<usize, String>,
    parent: HashMap<usize, usize>,
}

impl Groups {
    fn add(&mut self, r: usize, namespace: &str) {
        self.namespace
            .entry(r)
            .or_insert_with(|| namespace.to_owned());
        self.parent.entry(r).or_insert(r);
    }

    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.group_of(a), self.group_of(b));
        self.parent.insert(a.max(b), a.min(b));
    }

    /// The group's smallest member: one name for the group, whatever the order of joins.
    fn group_of(&self, mut r: usize) -> usize {
        while let Some(&parent) = self.parent.get(&r).filter(|&&p| p != r) {
            r = parent;
        }
        r
    }

    /// In resource order.
    fn members(&self) -> Vec<usize> {
        let mut members: Vec<usize> = self.namespace.keys().copied().collect();
        members.sort_unstable();
        members
    }

    fn namespace(&self, r: usize) -> &str {
        self.namespace.get(&r).map_or("", String::as_str)
    }
}

/// A patch that selects objects by namespace (a `target:` with a namespace, or a
/// strategic-merge patch), with the files its build reads: only objects in those can be
/// selected by it.
struct ScopedPatch {
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
fn scoped_patches(inventory: &Inventory) -> Vec<ScopedPatch> {
    let index = BuildIndex::new(inventory);
    let mut scoped = Vec::new();
    for (k, kustomization) in inventory.kustomize_files.iter().enumerate() {
        let mut builds = None;
        let file = &inventory.files[kustomization.file];
        for patch in &kustomization.patch_selectors {
            let Some(selects) = Selecting::of(inventory, &patch.selects, &kustomization.dir) else {
                continue;
            };
            scoped.push(ScopedPatch {
                kustomization: Some(k),
                after_namespace: patch.after_namespace,
                selects,
                named: format!("{}[{}] of {}", patch.field, patch.index, file.path),
                builds: builds
                    .get_or_insert_with(|| index.built_files(inventory, k))
                    .clone(),
            });
        }
    }
    for resource in &inventory.resources {
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
        let builds = index.applied_files(inventory, &dir);
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
fn patch_selecting(
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

/// Why a kustomization's `namespace:` cannot simply be changed: it also applies resources that
/// must stay in the app namespace. Flux objects and the ConfigMaps/Secrets they read move along.
fn kustomization_blocker(inventory: &Inventory, kustomization: usize) -> Option<String> {
    let dir = &inventory.kustomize_files[kustomization].dir;
    inventory
        .resources
        .iter()
        .filter(|r| inventory.files[r.file].rel.starts_with(dir))
        .find(|r| r.flux.is_none() && !matches!(r.kind.as_str(), "ConfigMap" | "Secret"))
        .map(|r| format!("{} {}", r.kind, r.name))
}

fn lower_kustomization(inventory: &Inventory, planned: &Planned) -> Option<TextEdit> {
    let FixOp::Set { value, .. } = &planned.op;
    let kustomization = inventory
        .kustomize_files
        .iter()
        .find(|k| k.file == planned.file)?;
    let (_, span) = kustomization.namespace.as_ref()?;
    let text = &inventory.files[planned.file].text;
    Some(TextEdit {
        span: *span,
        text: quote_like(&text[span.start..span.end], value),
    })
}

/// Lowers one operation on the document spanning `document` to text edits.
pub fn lower(text: &str, document: Span, root: &Node, op: &FixOp) -> Option<Vec<TextEdit>> {
    let FixOp::Set { pointer, value } = op;
    let keys: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|k| k.replace("~1", "/").replace("~0", "~"))
        .collect();
    // Walk down as far as the path exists.
    let mut node = root;
    let mut depth = 0;
    for key in &keys {
        let next = match &node.value {
            Value::Map(_) => node.get(key),
            Value::Seq(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            Value::Scalar(_) => None,
        };
        match next {
            Some(n) => {
                node = n;
                depth += 1;
            }
            None => break,
        }
    }
    if depth == keys.len() {
        return replace_scalar(text, document, root, &keys, node, value);
    }
    insert_keys(text, node, &keys[depth..], value).map(|e| vec![e])
}

fn replace_scalar(
    text: &str,
    document: Span,
    root: &Node,
    keys: &[String],
    node: &Node,
    value: &str,
) -> Option<Vec<TextEdit>> {
    let Value::Scalar(_) = &node.value else {
        return None;
    };
    if node.span.start == node.span.end {
        // `key:` with nothing after it: write after the colon.
        let parent_keys: Vec<&str> = keys[..keys.len() - 1].iter().map(String::as_str).collect();
        let parent = root.path(&parent_keys)?;
        let (key, _) = parent.entry(keys.last()?)?;
        let colon = key.span.end + text[key.span.end..].find(':')?;
        let span = Span::new(colon + 1, colon + 1);
        return Some(vec![TextEdit {
            span,
            text: format!(" {}", quote_like("", value)),
        }]);
    }
    let original = &text[node.span.start..node.span.end];
    if node.span.start < node.span.end && text.as_bytes()[node.span.start] == b'*' {
        // An alias: the edit must not change the anchored value, so write a literal instead.
        return Some(vec![TextEdit {
            span: node.span,
            text: quote_like("", value),
        }]);
    }
    let Some(anchored) = original.strip_prefix('&') else {
        return Some(vec![TextEdit {
            span: node.span,
            text: quote_like(original, value),
        }]);
    };
    // `&name old`: other fields may alias the old value (`targetNamespace: *name`). They keep
    // it: each alias becomes the old literal, and the anchor moves along with the new value.
    let (anchor, old) = anchored.split_once(char::is_whitespace)?;
    let old = old.trim_start();
    let mut edits = vec![TextEdit {
        span: node.span,
        text: format!("&{anchor} {}", quote_like(old, value)),
    }];
    edits.extend(
        alias_sites(text, document, root, node.span.end, anchor)
            .into_iter()
            .map(|span| TextEdit {
                span,
                text: old.to_owned(),
            }),
    );
    Some(edits)
}

/// The aliases `*anchor` after `from` in the document, up to a redefinition of the anchor:
/// nodes of the tree whose text is the alias, so that `*anchor` in a comment or inside a
/// scalar is left alone.
fn alias_sites(text: &str, document: Span, root: &Node, from: usize, anchor: &str) -> Vec<Span> {
    let end = document.end.min(text.len());
    let redefined = text
        .get(from..end)
        .and_then(|body| body.find(&format!("&{anchor}")))
        .map_or(end, |i| from + i);
    let alias = format!("*{anchor}");
    let mut sites = Vec::new();
    let mut todo = vec![root];
    while let Some(node) = todo.pop() {
        let span = node.span;
        if from <= span.start
            && span.end <= redefined
            && text.get(span.start..span.end) == Some(&alias)
        {
            sites.push(span);
            continue;
        }
        match &node.value {
            Value::Scalar(_) => {}
            Value::Seq(items) => todo.extend(items),
            Value::Map(entries) => todo.extend(entries.iter().flat_map(|(k, v)| [k, v])),
        }
    }
    sites.sort_by_key(|s| s.start);
    sites
}

/// `value` written in the quoting style of `original` (and quoted when YAML needs it).
fn quote_like(original: &str, value: &str) -> String {
    match original.chars().next() {
        Some('"') => format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")),
        Some('\'') => format!("'{}'", value.replace('\'', "''")),
        _ if needs_quotes(value) => {
            format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
        }
        _ => value.to_owned(),
    }
}

fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@` ".contains(c))
        || value.contains(": ")
        || value.contains(" #")
        || matches!(
            value,
            "true" | "false" | "null" | "~" | "yes" | "no" | "on" | "off"
        )
        || value.parse::<f64>().is_ok()
}

/// Inserts `keys` (the missing tail of a path) into mapping `parent`.
fn insert_keys(text: &str, parent: &Node, keys: &[String], value: &str) -> Option<TextEdit> {
    let entries = parent.as_map()?;
    let value = quote_like("", value);
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    if text[parent.span.start..].starts_with('{') {
        // Flow mapping: prepend inside the braces, nesting as flow too.
        let mut inner = value;
        for key in keys[1..].iter().rev() {
            inner = format!("{{{key}: {inner}}}");
        }
        let sep = if entries.is_empty() { "" } else { ", " };
        let at = parent.span.start + 1;
        return Some(TextEdit {
            span: Span::new(at, at),
            text: format!("{}: {inner}{sep}", keys[0]),
        });
    }
    // Block mapping: a new first entry at the siblings' indentation, so it lands inside the
    // mapping whatever follows it.
    let (first_key, _) = entries.first()?;
    let line_start = text[..first_key.span.start]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let indent = &text[line_start..first_key.span.start];
    if !indent.chars().all(|c| c == ' ') {
        // `- key: value` list item or a key after other content: not a plain indented line.
        return insert_after_key_line(text, first_key, keys, &value, newline);
    }
    Some(TextEdit {
        span: Span::new(line_start, line_start),
        text: key_lines(indent, keys, &value, newline),
    })
}

/// For mappings whose first key shares its line with other text (`- name: x`), insert after
/// the end of that first entry's line at the column of the first key.
fn insert_after_key_line(
    text: &str,
    first_key: &Node,
    keys: &[String],
    value: &str,
    newline: &str,
) -> Option<TextEdit> {
    let line_start = text[..first_key.span.start]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let column = text[line_start..first_key.span.start].chars().count();
    let line_end = text[first_key.span.start..]
        .find('\n')
        .map_or(text.len(), |i| first_key.span.start + i + 1);
    let indent = " ".repeat(column);
    let mut lines = String::new();
    if line_end == text.len() && !text.ends_with('\n') {
        lines.push_str(newline);
    }
    lines.push_str(&key_lines(&indent, keys, value, newline));
    Some(TextEdit {
        span: Span::new(line_end, line_end),
        text: lines,
    })
}

/// `keys` as nested block-mapping lines at `indent`, the last one holding `value`.
fn key_lines(indent: &str, keys: &[String], value: &str, newline: &str) -> String {
    let mut lines = String::new();
    for (depth, key) in keys.iter().enumerate() {
        let pad = format!("{indent}{}", "  ".repeat(depth));
        if depth + 1 == keys.len() {
            lines.push_str(&format!("{pad}{key}: {value}{newline}"));
        } else {
            lines.push_str(&format!("{pad}{key}:{newline}"));
        }
    }
    lines
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
