//! What `fix` would change: the rules' own fixes, and the document's namespace move planned
//! on the built objects (what Flux applies, each placed where its build places it).
//!
//! A move group is an object, everything it reads (sources, `dependsOn` targets, the
//! ConfigMaps and Secrets of `valuesFrom`, `substituteFrom` and every `secretRef`), and what
//! the `namespace:` of the kustomization that places one of them places with it. A group moves
//! whole or stays, with the reason naming the object (and file) that holds it.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::build::{Builds, tree};
use crate::diagnostic::{Applicability, FixOp, Severity};
use crate::input::{Inventory, Resource};
use crate::kinds::FluxKind;
use crate::kustomize::PatchFiles;
use crate::model::{EffectiveNamespace, FluxObject, NamespaceOrigin};
use crate::policy::Policy;
use crate::remedy::move_edits;
use crate::rules::{self, Context, Subject};

use super::lower::{lower, quote_like};
use super::patches::{patch_selecting, scoped_patches};
use super::references::{ObjectRef, Role, references};
use super::{FixOptions, TextEdit};

/// One planned change of one document.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub file: usize,
    /// Index into `inventory.resources`, or `None` for kustomization files.
    pub resource: Option<usize>,
    pub op: FixOp,
    pub applicability: Applicability,
    /// The edit, for the list of applied fixes.
    pub description: String,
    /// What is fixed, for the not-fixed list: one line per object and fix, however many edits.
    pub subject: String,
    pub summary: String,
    /// Edits of one unit apply together or not at all (a move group; a rule's fix).
    pub unit: Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Unit {
    Move(usize),
    RuleFix(usize, usize),
}

/// Everything `fix` would change now, and what it leaves undone with the reason.
pub(super) struct Plan {
    pub apply: Vec<Planned>,
    pub not_fixed: Vec<String>,
}

pub(super) fn plan(inventory: &Inventory, policy: &Policy, options: &FixOptions) -> Plan {
    let builds = crate::build::build(inventory);
    let namespaces = crate::build::effective_namespaces(inventory, &builds);
    let patches = inventory.patch_files();
    let mut not_fixed = Vec::new();
    let mut planned = plan_moves(
        &Facts::new(inventory, &builds, &namespaces, &patches, policy),
        &mut not_fixed,
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
    drop_what_cannot_be_edited(inventory, &mut planned, &mut not_fixed);
    let (apply, hold): (Vec<_>, Vec<_>) = planned.into_iter().partition(allowed);
    // One line per object and fix, with its number of edits.
    let mut held: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for p in &hold {
        let key = (
            inventory.files[p.file].path.clone(),
            p.subject.clone(),
            p.summary.clone(),
        );
        *held.entry(key).or_default() += 1;
    }
    for ((file, subject, summary), edits) in held {
        let count = if edits > 1 {
            format!("{edits} edits; ")
        } else {
            String::new()
        };
        not_fixed.push(format!(
            "{file}: {subject}: {summary} ({count}unsafe: run with --unsafe-fixes)"
        ));
    }
    let mut seen = HashSet::new();
    not_fixed.retain(|line| seen.insert(line.clone()));
    Plan { apply, not_fixed }
}

/// A unit with an edit that cannot be lowered onto its document (`spec: null`, a scalar
/// where a mapping is needed) is left out whole, with the reason; the rest goes on.
fn drop_what_cannot_be_edited(
    inventory: &Inventory,
    planned: &mut Vec<Planned>,
    not_fixed: &mut Vec<String>,
) {
    let mut failed: BTreeMap<Unit, String> = BTreeMap::new();
    for p in planned.iter() {
        if failed.contains_key(&p.unit) || lower_planned(inventory, p).is_some() {
            continue;
        }
        let FixOp::Set { pointer, .. } = &p.op;
        failed.insert(
            p.unit,
            format!(
                "{}: {}: not fixed: `{}` cannot be written there (a parent field that is \
                 not a mapping, or text the fixer does not edit: a `- ? ` key, a bare \
                 carriage return); {} needs it",
                inventory.files[p.file].path,
                p.subject,
                pointer.trim_start_matches('/').replace('/', "."),
                p.summary,
            ),
        );
    }
    planned.retain(|p| !failed.contains_key(&p.unit));
    not_fixed.extend(failed.into_values());
}

/// The text edits of one planned change, or `None` when its document cannot take it.
pub(super) fn lower_planned(inventory: &Inventory, planned: &Planned) -> Option<Vec<TextEdit>> {
    let file = &inventory.files[planned.file];
    match planned.resource {
        Some(r) => {
            let resource = &inventory.resources[r];
            lower(&file.text, resource.span, resource.root()?, &planned.op)
        }
        None => lower_kustomization(inventory, planned).map(|e| vec![e]),
    }
}

pub(super) fn known(candidates: &[EffectiveNamespace]) -> Option<(&str, &NamespaceOrigin)> {
    match candidates {
        [EffectiveNamespace::Known { name, origin }] => Some((name, origin)),
        _ => None,
    }
}

/// The rules' own fixes (FF110: name the service account; FF002: the served API version).
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
        values_are_final: false,
        service_accounts_listed: false,
        vouched_copies: &empty,
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
        for (f, finding) in findings.into_iter().enumerate() {
            let Some(fix) = finding.fix else { continue };
            let summary = format!("{} {}", finding.code, fix.description);
            for op in fix.ops {
                out.push(Planned {
                    file: resource.file,
                    resource: Some(r),
                    op,
                    applicability: fix.applicability,
                    description: format!("{} {}", object.display_name(), summary),
                    subject: identity(resource, known.map(|(ns, _)| ns)),
                    summary: summary.clone(),
                    unit: Unit::RuleFix(r, f),
                });
            }
        }
    }
    out
}

/// `Kind namespace/name` of a resource, in the namespace it is placed in.
fn identity(resource: &Resource, namespace: Option<&str>) -> String {
    match namespace.or(resource.declared_namespace.as_deref()) {
        Some(ns) => format!("{} {ns}/{}", resource.kind, resource.name),
        None => format!("{} {}", resource.kind, resource.name),
    }
}

/// The Flux object of a resource the fixer may edit: in a reported file that is not a patch.
fn editable<'a>(
    inventory: &Inventory,
    patches: &PatchFiles,
    resource: &'a Resource,
) -> Option<&'a FluxObject> {
    resource
        .flux
        .as_ref()
        .filter(|_| is_editable(inventory, patches, resource))
}

fn is_editable(inventory: &Inventory, patches: &PatchFiles, resource: &Resource) -> bool {
    let file = &inventory.files[resource.file];
    file.reported && !patches.contains(&file.rel)
}

/// What the plan reads, computed once per pass.
struct Facts<'a> {
    inventory: &'a Inventory,
    builds: &'a Builds,
    namespaces: &'a [Vec<EffectiveNamespace>],
    patches: &'a PatchFiles,
    policy: &'a Policy,
    config: &'a str,
    /// Every built object by `(kind, namespace, name)`: the resources that give it. A
    /// repository that serves several clusters declares one identity once per cluster.
    by_identity: HashMap<(String, String, String), Vec<usize>>,
    /// The resources a kustomization file's `namespace:` places (its index in
    /// `inventory.kustomize_files`), as the builds place them.
    placed_by: HashMap<usize, Vec<usize>>,
    /// Service accounts declared in the input, by `(namespace, name)`.
    service_accounts: HashSet<(String, String)>,
}

impl<'a> Facts<'a> {
    fn new(
        inventory: &'a Inventory,
        builds: &'a Builds,
        namespaces: &'a [Vec<EffectiveNamespace>],
        patches: &'a PatchFiles,
        policy: &'a Policy,
    ) -> Facts<'a> {
        let mut by_identity: HashMap<(String, String, String), Vec<usize>> = HashMap::new();
        let mut placed_by: HashMap<usize, Vec<usize>> = HashMap::new();
        // kustomize renames a Namespace object to the kustomization's `namespace:`: the
        // built name is written at that field.
        let namespace_fields: HashMap<(usize, usize), usize> = (inventory.kustomize_files)
            .iter()
            .enumerate()
            .filter_map(|(k, file)| Some(((file.file, file.namespace.as_ref()?.1.start), k)))
            .collect();
        let mut place = |k: usize, r: usize| {
            let placed = placed_by.entry(k).or_default();
            if !placed.contains(&r) {
                placed.push(r);
            }
        };
        for built in &builds.objects {
            let object = &built.object;
            if tree::kind(&object.root) == "Namespace" {
                let span = object.root.path(&["metadata", "name"]).map(|n| n.span);
                let site = span.and_then(|s| Some((s.file_index()?, s.start)));
                if let Some(&k) = site.and_then(|site| namespace_fields.get(&site)) {
                    place(k, object.resource);
                }
            }
            let Some(namespace) = object.namespace() else {
                continue;
            };
            let key = (
                tree::kind(&object.root).to_owned(),
                namespace.to_owned(),
                tree::name(&object.root).to_owned(),
            );
            let resources = by_identity.entry(key).or_default();
            if !resources.contains(&object.resource) {
                resources.push(object.resource);
            }
            if let Some(NamespaceOrigin::KustomizeFile { kustomization, .. }) = &object.origin {
                place(*kustomization, object.resource);
            }
        }
        Facts {
            inventory,
            builds,
            namespaces,
            patches,
            policy,
            config: policy.config_namespace.as_str(),
            by_identity,
            placed_by,
            service_accounts: crate::lint::declared_service_accounts(builds),
        }
    }

    fn namespace(&self, r: usize) -> Option<&str> {
        known(&self.namespaces[r]).map(|(ns, _)| ns)
    }

    fn file_of(&self, r: usize) -> &str {
        &self.inventory.files[self.inventory.resources[r].file].path
    }

    /// `Kind namespace/name (file)`, for reasons.
    fn named(&self, r: usize) -> String {
        let resource = &self.inventory.resources[r];
        format!(
            "{} ({})",
            identity(resource, self.namespace(r)),
            self.file_of(r)
        )
    }

    /// The resources a reference from an object in `own` resolves to: the copies in the files
    /// to fix when there are any (a repository that serves several clusters declares one
    /// identity in each cluster's directory; context files outside the fix keep theirs).
    fn targets(&self, reference: &ObjectRef, own: &str) -> Vec<usize> {
        let all = self.all_targets(reference, own);
        let editable: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&t| is_editable(self.inventory, self.patches, &self.inventory.resources[t]))
            .collect();
        if editable.is_empty() { all } else { editable }
    }

    fn all_targets(&self, reference: &ObjectRef, own: &str) -> Vec<usize> {
        let namespace = reference.target_namespace(own);
        if reference.name == "*" {
            let mut all: Vec<usize> = self
                .by_identity
                .iter()
                .filter(|((kind, ns, _), _)| *kind == reference.kind && ns == namespace)
                .flat_map(|(_, rs)| rs.iter().copied())
                .collect();
            all.sort_unstable();
            return all;
        }
        let key = (
            reference.kind.clone(),
            namespace.to_owned(),
            reference.name.clone(),
        );
        self.by_identity.get(&key).cloned().unwrap_or_default()
    }

    /// Whether `sa` is a service account the controllers find in the config namespace.
    fn service_account_in_config(&self, sa: &str) -> bool {
        let policy = self.policy;
        policy
            .default_service_account
            .as_ref()
            .is_some_and(|d| d.name == sa && d.namespaces.iter().any(|n| n == self.config))
            || policy
                .service_accounts
                .iter()
                .any(|s| s.namespace == self.config && s.name == sa)
            || self
                .service_accounts
                .contains(&(self.config.to_owned(), sa.to_owned()))
    }
}

/// Resources that move together (union-find over resource indices).
#[derive(Default)]
struct Groups {
    parent: HashMap<usize, usize>,
}

impl Groups {
    /// Adds `r`; whether it is new.
    fn add(&mut self, r: usize) -> bool {
        if self.parent.contains_key(&r) {
            return false;
        }
        self.parent.insert(r, r);
        true
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

    fn contains(&self, r: usize) -> bool {
        self.parent.contains_key(&r)
    }

    /// In resource order.
    fn members(&self) -> Vec<usize> {
        let mut members: Vec<usize> = self.parent.keys().copied().collect();
        members.sort_unstable();
        members
    }
}

/// What a reference makes of its target, for reasons: "reads", "depends on".
fn verb(reference: &ObjectRef) -> String {
    match reference.role {
        Role::DependsOn => format!("depends on ({})", reference.field()),
        Role::Source | Role::Config => format!("reads ({})", reference.field()),
    }
}

/// The document's rewrite: the Flux objects of app namespaces (where some object fails FF101
/// or FF111) move to the config namespace, each with its group.
fn plan_moves(facts: &Facts, not_fixed: &mut Vec<String>) -> Vec<Planned> {
    let inventory = facts.inventory;
    let config = facts.config;
    let policy = facts.policy;
    let app_namespaces = app_namespaces(facts);
    if app_namespaces.is_empty() {
        return Vec::new();
    }
    // 1. Seeds, then the closure of what they read and what moves with them.
    let mut groups = Groups::default();
    let mut queue: Vec<usize> = Vec::new();
    for (r, resource) in inventory.resources.iter().enumerate() {
        if editable(inventory, facts.patches, resource).is_none() {
            continue;
        }
        if facts
            .namespace(r)
            .is_some_and(|ns| app_namespaces.contains(ns))
            && groups.add(r)
        {
            queue.push(r);
        }
    }
    // Reasons a member cannot move, the first for each member.
    let mut blocked: BTreeMap<usize, String> = BTreeMap::new();
    let mut block = |r: usize, reason: String| {
        blocked.entry(r).or_insert(reason);
    };
    while let Some(r) = queue.pop() {
        let Some(own) = facts.namespace(r).map(str::to_owned) else {
            // Why it cannot move (its kind, when a kustomization's `namespace:` renames it)
            // is said by `member_blocker`.
            continue;
        };
        // What the same `namespace:` places moves by the same edit.
        if let Some((_, NamespaceOrigin::KustomizeFile { kustomization, .. })) =
            known(&facts.namespaces[r])
        {
            for &p in facts.placed_by.get(kustomization).into_iter().flatten() {
                if groups.add(p) {
                    queue.push(p);
                }
                groups.join(r, p);
            }
        }
        let Some(object) = inventory.resources[r].flux.as_ref() else {
            continue;
        };
        for reference in references(object) {
            let target_ns = reference.target_namespace(&own).to_owned();
            if target_ns == config {
                continue;
            }
            let targets = facts.targets(&reference, &own);
            if targets.is_empty() {
                if !reference.optional && reference.name != "*" {
                    block(
                        r,
                        format!(
                            "it {} {} {target_ns}/{}, which is not in the repository; fix \
                             moves nothing whose references it cannot check",
                            verb(&reference),
                            reference.kind,
                            reference.name
                        ),
                    );
                }
                continue;
            }
            // A `dependsOn` that names its namespace resolves wherever the object is.
            if reference.role == Role::DependsOn && reference.namespace.is_some() {
                continue;
            }
            for t in targets {
                if policy.is_exempt(&target_ns) {
                    block(
                        r,
                        format!(
                            "it {} {}, in the exempt namespace `{target_ns}`, which fix moves \
                             nothing out of; move them together by hand, or make `{target_ns}` \
                             not exempt",
                            verb(&reference),
                            facts.named(t)
                        ),
                    );
                    continue;
                }
                if !is_editable(inventory, facts.patches, &inventory.resources[t]) {
                    block(
                        r,
                        format!(
                            "it {} {}, which fix does not edit (not among the files to fix)",
                            verb(&reference),
                            facts.named(t)
                        ),
                    );
                    continue;
                }
                if groups.add(t) {
                    queue.push(t);
                }
                groups.join(r, t);
            }
        }
    }
    let members = groups.members();
    let scoped = scoped_patches(inventory, facts.builds);
    for &r in &members {
        if let Some(reason) = member_blocker(facts, &scoped, r) {
            block(r, reason);
        }
    }
    // 2. Readers that stay: a source or config object that another object reads in its own
    // namespace cannot leave it; a `dependsOn` can follow it.
    let readers = readers(facts, &groups);
    for (&t, list) in &readers {
        for (reader, reference) in list {
            let reader_ns = facts.namespace(*reader).unwrap_or_default();
            let editable_reader =
                is_editable(inventory, facts.patches, &inventory.resources[*reader]);
            // It follows the move where it crosses namespaces already (a `dependsOn` may;
            // another was refused before and is no worse pointed at the moved object) or
            // where it is in the config namespace; a same-namespace read would start to cross.
            let crosses = reference.target_namespace(reader_ns) != reader_ns;
            let follows = editable_reader
                && reference.namespaced
                && (reference.role == Role::DependsOn || reader_ns == config || crosses);
            if !follows {
                let stays = if editable_reader {
                    format!("stays in `{reader_ns}`")
                } else {
                    "is not among the files to fix".to_owned()
                };
                block(
                    t,
                    format!(
                        "{} {} it, and {stays}",
                        facts.named(*reader),
                        verb(reference)
                    ),
                );
            }
        }
    }
    // 3. A group with a blocked member stays; the reason names the member and why.
    let held = say_held(facts, &groups, &members, &blocked, not_fixed);
    let moving: BTreeMap<usize, String> = members
        .iter()
        .copied()
        .filter(|&r| !held.contains_key(&groups.group_of(r)))
        .filter_map(|r| Some((r, facts.namespace(r)?.to_owned())))
        .collect();

    // 4. The edits: each moving object, where its namespace is written, and every reference
    // to a moving object.
    let mut planned = move_group_edits(facts, &groups, &moving);
    planned.extend(retargets(facts, &groups, &moving));
    planned
}

/// One not-fixed line for each Flux object of a group that stays, naming the member that
/// holds it; the groups that stay.
fn say_held(
    facts: &Facts,
    groups: &Groups,
    members: &[usize],
    blocked: &BTreeMap<usize, String>,
    not_fixed: &mut Vec<String>,
) -> BTreeMap<usize, (usize, String)> {
    let inventory = facts.inventory;
    let mut held: BTreeMap<usize, (usize, String)> = BTreeMap::new();
    for (&r, reason) in blocked {
        held.entry(groups.group_of(r))
            .or_insert((r, reason.clone()));
    }
    for (&group, (r, reason)) in &held {
        let others: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&m| groups.group_of(m) == group)
            .collect();
        for &m in &others {
            let with = if m == *r {
                format!("not moved: {reason}")
            } else {
                format!("not moved with {}: {reason}", facts.named(*r))
            };
            let resource = &inventory.resources[m];
            if resource.flux.is_some() {
                not_fixed.push(format!(
                    "{}: {}: {with}",
                    facts.file_of(m),
                    identity(resource, facts.namespace(m))
                ));
            }
        }
    }
    held
}

/// The edits that move each moving object: its own fields, or the kustomization `namespace:`
/// that places it (once for all it places).
fn move_group_edits(
    facts: &Facts,
    groups: &Groups,
    moving: &BTreeMap<usize, String>,
) -> Vec<Planned> {
    let inventory = facts.inventory;
    let config = facts.config;
    let mut planned = Vec::new();
    let mut kustomization_edits: HashSet<usize> = HashSet::new();
    for (&r, namespace) in moving {
        let resource = &inventory.resources[r];
        let unit = Unit::Move(groups.group_of(r));
        let subject = identity(resource, Some(namespace));
        let summary = format!("move from `{namespace}` to `{config}`");
        let mut edits = match &resource.flux {
            Some(object) => object_move_edits(facts, object, r, namespace),
            None => vec![("/metadata/namespace".to_owned(), config.to_owned())],
        };
        if let Some((_, NamespaceOrigin::KustomizeFile { kustomization, .. })) =
            known(&facts.namespaces[r])
        {
            edits.retain(|(pointer, _)| pointer != "/metadata/namespace");
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
                    subject: format!("namespace `{namespace}`"),
                    summary: format!("set to `{config}` with the objects it places"),
                    unit,
                });
            }
        }
        for (pointer, value) in edits {
            planned.push(Planned {
                file: resource.file,
                resource: Some(r),
                description: format!(
                    "{subject}: {summary}: {} = {value}",
                    pointer.trim_start_matches('/').replace('/', ".")
                ),
                op: FixOp::Set { pointer, value },
                applicability: Applicability::Unsafe,
                subject: subject.clone(),
                summary: summary.clone(),
                unit,
            });
        }
    }
    planned
}

/// Namespaces where some Flux object the fixer may edit fails FF101 or FF111; never the
/// config namespace or an exempt one.
fn app_namespaces(facts: &Facts) -> HashSet<String> {
    let no_copies = HashSet::new();
    let cx = Context {
        policy: facts.policy,
        declared_service_accounts: &facts.service_accounts,
        trust_explicit_service_accounts: false,
        values_are_final: false,
        service_accounts_listed: false,
        vouched_copies: &no_copies,
    };
    let mut out = HashSet::new();
    for (r, resource) in facts.inventory.resources.iter().enumerate() {
        let Some(object) = editable(facts.inventory, facts.patches, resource) else {
            continue;
        };
        let Some((namespace, origin)) = known(&facts.namespaces[r]) else {
            continue;
        };
        if namespace == facts.config || facts.policy.is_exempt(namespace) || out.contains(namespace)
        {
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
            out.insert(namespace.to_owned());
        }
    }
    out
}

fn unknown_namespace(candidates: &[EffectiveNamespace]) -> String {
    match candidates {
        [EffectiveNamespace::Unknown { reason }] => format!("its namespace is not known: {reason}"),
        _ => {
            "the builds place it in more than one namespace; move each placement by hand".to_owned()
        }
    }
}

/// Why member `r` cannot move on its own account: where its namespace is written, a patch
/// that selects it there, a service account missing in the config namespace.
fn member_blocker(
    facts: &Facts,
    scoped: &[super::patches::ScopedPatch],
    r: usize,
) -> Option<String> {
    let inventory = facts.inventory;
    let config = facts.config;
    let resource = &inventory.resources[r];
    if resource.flux.is_none() && !matches!(resource.kind.as_str(), "ConfigMap" | "Secret") {
        // Only placed with the others by a kustomization's `namespace:`, which says why.
        return None;
    }
    let Some((namespace, origin)) = known(&facts.namespaces[r]) else {
        return Some(unknown_namespace(&facts.namespaces[r]));
    };
    if !is_editable(inventory, facts.patches, resource) {
        return Some("it is not among the files to fix".to_owned());
    }
    match origin {
        NamespaceOrigin::Metadata | NamespaceOrigin::AdmissionRequest => {
            if resource.declared_namespace.is_none() {
                return Some(unknown_namespace(&facts.namespaces[r]));
            }
            // SOPS's MAC covers the values it leaves in clear too: an edited namespace would
            // fail decryption in kustomize-controller.
            if resource
                .root()
                .is_some_and(|root| root.get("sops").is_some())
            {
                return Some(
                    "it is SOPS-encrypted, and an edit of its namespace would fail its MAC; \
                     decrypt it, move it, and encrypt it again by hand"
                        .to_owned(),
                );
            }
        }
        NamespaceOrigin::KustomizeFile {
            location,
            kustomization,
        } => {
            let file = &inventory.files[inventory.kustomize_files[*kustomization].file];
            if !file.reported {
                return Some(format!(
                    "its namespace comes from {location}, which is not among the files to fix"
                ));
            }
            // Only Flux objects and the ConfigMaps/Secrets they read may follow the
            // kustomization's `namespace:`: it also renames Namespace objects.
            let placed = facts.placed_by.get(kustomization).into_iter().flatten();
            for &p in placed {
                let other = &inventory.resources[p];
                if other.flux.is_none() && !matches!(other.kind.as_str(), "ConfigMap" | "Secret") {
                    return Some(format!(
                        "its namespace comes from {location}, which also places {}; give the \
                         Flux objects a kustomization of their own, then run fix again",
                        facts.named(p)
                    ));
                }
                if known(&facts.namespaces[p]).is_none() {
                    return Some(format!(
                        "its namespace comes from {location}, which also places {}, and the \
                         builds place that in more than one namespace",
                        facts.named(p)
                    ));
                }
            }
        }
        NamespaceOrigin::FluxKustomization {
            kustomization,
            location,
        } => {
            return Some(format!(
                "its namespace is the targetNamespace of Flux Kustomization {kustomization} \
                 ({location}); move the Flux objects out of that Kustomization's path by hand"
            ));
        }
        NamespaceOrigin::Replacement { location } => {
            return Some(format!(
                "a kustomize replacement copies its namespace from {location}; change the \
                 replacement's source by hand"
            ));
        }
    }
    if let Some(patch) = patch_selecting(
        inventory,
        scoped,
        r,
        namespace,
        config,
        &facts.namespaces[r],
    ) {
        return Some(format!(
            "{patch} selects it in `{namespace}`, and would no longer apply in `{config}`; \
             move them and change the patch together, by hand"
        ));
    }
    if let Some(object) = resource.flux.as_ref().filter(|o| o.kind.impersonates())
        && let Some(sa) = object.spec_str("serviceAccountName")
        && !facts.service_account_in_config(sa)
    {
        return Some(format!(
            "its service account `{sa}` does not exist in `{config}` (not declared \
                     there, nor in the policy)"
        ));
    }
    None
}

/// For every group member, the objects outside every group that reference it.
fn readers(facts: &Facts, groups: &Groups) -> BTreeMap<usize, Vec<(usize, ObjectRef)>> {
    let mut out: BTreeMap<usize, Vec<(usize, ObjectRef)>> = BTreeMap::new();
    for (reader, resource) in facts.inventory.resources.iter().enumerate() {
        if groups.contains(reader) {
            continue;
        }
        let (Some(object), Some(own)) = (&resource.flux, facts.namespace(reader)) else {
            continue;
        };
        for reference in references(object) {
            for t in facts.targets(&reference, own) {
                if groups.contains(t) {
                    out.entry(t).or_default().push((reader, reference.clone()));
                }
            }
        }
    }
    out
}

/// The edits of a moving Flux object: the document's move (namespace, `targetNamespace`,
/// pinned `releaseName`, `storageNamespace`, source references), for the kinds that
/// impersonate; the namespace alone for the others.
fn object_move_edits(
    facts: &Facts,
    object: &FluxObject,
    r: usize,
    namespace: &str,
) -> Vec<(String, String)> {
    let config = facts.config;
    let mut edits = move_edits(object, namespace, facts.policy);
    if edits.is_empty() {
        edits.push(("/metadata/namespace".into(), config.to_owned()));
    }
    if !object.kind.impersonates() {
        edits.retain(|(pointer, _)| pointer == "/metadata/namespace");
    }
    if object.kind == FluxKind::Kustomization && !places_in_own_namespace(facts, r, namespace) {
        // Its build keeps what it applies where each object says; a targetNamespace would
        // move all of it into one namespace.
        edits.retain(|(pointer, _)| pointer != "/spec/targetNamespace");
    }
    edits
}

/// Whether everything the build of Flux Kustomization `r` gives is in `namespace` already (or
/// cluster-scoped): then `targetNamespace: namespace` changes none of it.
fn places_in_own_namespace(facts: &Facts, r: usize, namespace: &str) -> bool {
    let Some(build) = facts.builds.flux.iter().position(|b| b.resource == r) else {
        return false;
    };
    if facts.builds.flux[build].not_built.is_some() {
        return false;
    }
    facts
        .builds
        .objects
        .iter()
        .filter(|b| b.producer == crate::build::Producer::Flux(build))
        .all(|b| match b.object.namespace() {
            Some(ns) => ns == namespace,
            None => tree::is_cluster_scoped(tree::kind(&b.object.root)),
        })
}

/// References to moving objects from objects that stay, and `dependsOn` entries of moving
/// objects that name a namespace: each points at where its target is after the move.
fn retargets(facts: &Facts, groups: &Groups, moving: &BTreeMap<usize, String>) -> Vec<Planned> {
    let inventory = facts.inventory;
    let config = facts.config;
    let mut out = Vec::new();
    for (r, resource) in inventory.resources.iter().enumerate() {
        let Some(object) = editable(inventory, facts.patches, resource) else {
            continue;
        };
        let Some(own) = facts.namespace(r) else {
            continue;
        };
        let stays = !moving.contains_key(&r);
        let final_ns = if stays { own } else { config };
        for reference in references(object) {
            if !reference.namespaced {
                continue;
            }
            let targets = facts.targets(&reference, own);
            let Some(&moved) = targets.iter().find(|t| moving.contains_key(t)) else {
                // A moving object's own references to what does not move are left as they
                // are: the plan only moves groups whose references hold.
                continue;
            };
            let target_ns = reference.target_namespace(own);
            if target_ns == config {
                continue;
            }
            // The move of a source group already points its members' references.
            let covered = !stays
                && reference.role == Role::Source
                && groups.group_of(r) == groups.group_of(moved);
            let written = reference.namespace.as_deref();
            let new_value = config;
            let needs = match written {
                Some(ns) => ns != new_value,
                None => final_ns != new_value,
            };
            if covered || !needs {
                continue;
            }
            let subject = identity(resource, Some(own));
            let summary = "point references at moved objects".to_owned();
            out.push(Planned {
                file: resource.file,
                resource: Some(r),
                description: format!("{subject}: point {} at `{new_value}`", reference.field()),
                op: FixOp::Set {
                    pointer: format!("{}/namespace", reference.pointer),
                    value: new_value.to_owned(),
                },
                applicability: Applicability::Unsafe,
                subject,
                summary,
                unit: Unit::Move(groups.group_of(moved)),
            });
        }
    }
    out
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
