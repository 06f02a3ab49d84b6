//! The linting pipeline: inventory → builds (what Flux applies) → rules → located diagnostics.

use std::collections::{HashMap, HashSet};

use crate::build::{Builds, Built, Object, Producer};
use crate::diagnostic::{Diagnostic, Finding, Severity};
use crate::input::{InputError, Inventory, SourceFile};
use crate::kinds::FluxKind;
use crate::model::{EffectiveNamespace, FluxObject};
use crate::policy::Policy;
use crate::rules::{self, Context, SUPPRESSION_NOT_ALLOWED, SUPPRESSION_WITHOUT_REASON, Subject};

/// A Flux object whose namespace cannot be known offline; namespace rules skipped it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unresolved {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub object: String,
    pub reason: String,
}

pub struct Report {
    pub inventory: Inventory,
    pub diagnostics: Vec<Diagnostic>,
    pub unresolved: Vec<Unresolved>,
    /// Flux objects judged (in at least one known namespace).
    pub objects_checked: usize,
    /// Of those, the ones no Flux build gives, judged as kustomize (or the file) gives them.
    pub objects_without_flux_build: usize,
}

impl Report {
    pub fn errors(&self) -> &[InputError] {
        &self.inventory.errors
    }

    /// 0 clean (warnings allowed), 1 a deny-severity finding, 2 an input error.
    pub fn exit_code(&self) -> i32 {
        if !self.inventory.errors.is_empty() {
            2
        } else if self
            .diagnostics
            .iter()
            .any(|d| d.finding.severity == Severity::Deny)
        {
            1
        } else {
            0
        }
    }
}

pub fn lint(mut inventory: Inventory, policy: &Policy) -> Report {
    let builds = crate::build::build(&inventory);
    let reported_files: Vec<usize> = (0..inventory.files.len())
        .filter(|&i| inventory.files[i].reported)
        .collect();
    // A build that fails fails for Flux too (kustomize-controller applies nothing of it).
    let build_errors: Vec<InputError> = builds
        .problems
        .iter()
        .filter(|p| {
            p.span
                .file_index()
                .is_none_or(|f| inventory.files.get(f).is_some_and(|f| f.reported))
        })
        .map(|p| build_error(&inventory, p))
        .collect();
    let declared_service_accounts = declared_service_accounts(&builds);
    // In files the published-copy labels are anybody's to write: no copy is vouched for.
    let no_copies = HashSet::new();
    let cx = Context {
        policy,
        declared_service_accounts: &declared_service_accounts,
        trust_explicit_service_accounts: false,
        values_are_final: false,
        service_accounts_listed: false,
        vouched_copies: &no_copies,
    };
    let every_file_reported = reported_files.len() == inventory.files.len();
    let judge = Judge {
        inventory: &inventory,
        builds: &builds,
        cx: &cx,
    };
    // Built objects are judged in runs, on every core; the runs' results, joined in order,
    // are what one pass would give. Only reported objects count: those of a reported file,
    // and those whose build a reported file shapes (a pre-commit run of a changed patch or
    // kustomization judges what it changes).
    let judged_objects: Vec<usize> = (0..builds.objects.len())
        .filter(|&i| {
            let built = &builds.objects[i];
            is_flux_object(&built.object)
                && (every_file_reported
                    || inventory.files[judge.file_of(built)].reported
                    || reported_files.iter().any(|&f| builds.shaped_by(built, f)))
        })
        .collect();
    let runs: Vec<&[usize]> = judged_objects.chunks(OBJECTS_PER_RUN).collect();
    let judged = crate::parallel::map(&runs, |run| judge.run(run));
    let kustomize_diagnostics: Vec<Diagnostic> = inventory
        .kustomize_files
        .iter()
        .filter(|k| inventory.files[k.file].reported)
        .flat_map(|k| {
            let file = &inventory.files[k.file];
            rules::check_kustomize(k, &cx)
                .into_iter()
                .map(move |f| locate(file, f))
        })
        .collect();
    let patch_files = inventory.patch_files();
    let schema_diagnostics = crate::schema::check_inventory(&inventory, policy, &patch_files);
    let mut diagnostics = Vec::with_capacity(
        judged.iter().map(|j| j.diagnostics.len()).sum::<usize>()
            + kustomize_diagnostics.len()
            + schema_diagnostics.len(),
    );
    let mut unresolved = Vec::with_capacity(judged.iter().map(|j| j.unresolved.len()).sum());
    let mut judged_resources: HashSet<usize> = HashSet::new();
    let mut judged_without_flux: HashSet<usize> = HashSet::new();
    for run in judged {
        diagnostics.extend(run.diagnostics);
        unresolved.extend(run.unresolved);
        judged_resources.extend(run.judged);
        judged_without_flux.extend(run.judged_without_flux);
    }
    dedup_in_place(&mut diagnostics);
    dedup_unresolved(&mut unresolved);
    diagnostics.extend(kustomize_diagnostics);
    diagnostics.extend(schema_diagnostics);
    let with_suppressions: HashMap<&str, usize> = inventory
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.suppressions.is_empty())
        .map(|(i, f)| (f.path.as_str(), i))
        .collect();
    if !with_suppressions.is_empty() {
        diagnostics.retain(|d| {
            with_suppressions
                .get(d.file.as_str())
                .is_none_or(|&file| !is_suppressed(&inventory, policy, file, d))
        });
    }
    diagnostics.extend(invalid_suppressions(&inventory, policy));
    diagnostics.extend(denied_suppressions(&inventory, policy));
    inventory.errors.extend(build_errors);
    Report {
        inventory,
        diagnostics: in_report_order(diagnostics),
        unresolved,
        objects_checked: judged_resources.len(),
        objects_without_flux_build: judged_without_flux.len(),
    }
}

/// A build's problem, located like an input error.
fn build_error(inventory: &Inventory, problem: &crate::build::BuildError) -> InputError {
    let Some(file) = problem
        .span
        .file_index()
        .and_then(|f| inventory.files.get(f))
    else {
        return InputError {
            file: "kustomize build".into(),
            line: 0,
            column: 0,
            message: problem.message.clone(),
        };
    };
    let (line, column) = file.lines.position(&file.text, problem.span.start);
    InputError {
        file: file.path.clone(),
        line,
        column,
        message: format!("kustomize build fails: {}", problem.message),
    }
}

fn is_flux_object(object: &Object) -> bool {
    FluxKind::from_type(
        crate::build::tree::api_version(&object.root),
        crate::build::tree::kind(&object.root),
    )
    .is_some()
}

/// The same finding on the same object in the same namespace, given by two builds (a
/// directory that two Flux Kustomizations apply alike), is reported once.
fn dedup_in_place(diagnostics: &mut Vec<Diagnostic>) {
    let mut seen = HashSet::new();
    diagnostics.retain(|d| {
        seen.insert((
            d.file.clone(),
            d.finding.span,
            d.finding.code,
            d.finding.message.clone(),
            d.object.clone(),
        ))
    });
}

fn dedup_unresolved(unresolved: &mut Vec<Unresolved>) {
    let mut seen = HashSet::new();
    unresolved.retain(|u| seen.insert((u.file.clone(), u.line, u.column, u.reason.clone())));
}

/// Objects judged in one piece of work: few enough that a run on two cores splits evenly,
/// enough that handing them out costs nothing next to the rules.
const OBJECTS_PER_RUN: usize = 64;

/// What the rules need of a lint run, shared by every core.
struct Judge<'a> {
    inventory: &'a Inventory,
    builds: &'a Builds,
    cx: &'a Context<'a>,
}

/// The findings on a run of built objects, in order.
#[derive(Default)]
struct Judged {
    diagnostics: Vec<Diagnostic>,
    unresolved: Vec<Unresolved>,
    /// Resources judged in a known namespace.
    judged: Vec<usize>,
    /// Of those, the ones judged as no Flux build gives them.
    judged_without_flux: Vec<usize>,
}

impl Judge<'_> {
    /// The file of the document a built object came from.
    fn file_of(&self, built: &Built) -> usize {
        self.inventory.resources[built.object.resource].file
    }

    fn run(&self, objects: &[usize]) -> Judged {
        let mut judged = Judged::default();
        for &index in objects {
            self.object(&self.builds.objects[index], &mut judged);
        }
        judged
    }

    /// Judges one built object in the namespace its build places it in.
    fn object(&self, built: &Built, judged: &mut Judged) {
        let file = &self.inventory.files[self.file_of(built)];
        let Some(object) = FluxObject::from_node(crate::yaml::Node::clone(&built.object.root))
        else {
            return;
        };
        let placed = crate::build::placement(&built.object);
        // One note per object: what substitution cannot know explains an unknown namespace
        // too.
        if let Some(reason) = &built.unknown {
            judged
                .unresolved
                .push(self.unresolved(file, &object, reason.clone()));
        }
        let (name, origin) = match placed {
            EffectiveNamespace::Known { name, origin } => (name, origin),
            EffectiveNamespace::Unknown { reason } => {
                if built.unknown.is_none() {
                    let reason = format!("namespace unknown: {reason}");
                    judged
                        .unresolved
                        .push(self.unresolved(file, &object, reason));
                }
                return;
            }
        };
        if self.cx.policy.enforce {
            for (span, reason) in rules::unresolved_reference_namespaces(&object) {
                judged
                    .unresolved
                    .push(self.unresolved_at(file, &object, span, reason));
            }
        }
        judged.judged.push(built.object.resource);
        if !matches!(built.producer, Producer::Flux(_)) {
            judged.judged_without_flux.push(built.object.resource);
        }
        let subject = Subject {
            object: &object,
            namespace: &name,
            origin: &origin,
        };
        let findings = rules::check_object(&subject, self.cx);
        if findings.is_empty() {
            return;
        }
        let object_label = format!("{}/{}/{}", object.kind, name, object.name);
        let origin_label = origin.describe();
        let built_by = match built.producer {
            Producer::Flux(i) => {
                let flux = &self.builds.flux[i];
                Some(format!(
                    "built by Flux Kustomization {} ({})",
                    flux.name, flux.location
                ))
            }
            Producer::Kustomize(_) | Producer::File => None,
        };
        for finding in findings {
            let written_in = finding
                .span
                .file_index()
                .and_then(|f| self.inventory.files.get(f))
                .unwrap_or(file);
            let mut notes = Vec::new();
            if !std::ptr::eq(written_in, file) {
                let (line, _) = written_in
                    .lines
                    .position(&written_in.text, finding.span.start);
                notes.push(format!(
                    "the value is set at {}:{line}, for {} of {}",
                    written_in.path,
                    object.display_name(),
                    file.path
                ));
            }
            notes.extend(built_by.clone());
            let mut diagnostic = locate(written_in, finding);
            diagnostic.object = Some(object_label.clone());
            diagnostic.namespace_origin = Some(origin_label.clone());
            diagnostic.notes = notes;
            judged.diagnostics.push(diagnostic);
        }
    }

    /// An unresolved value of `object`, at the file and line that wrote it.
    fn unresolved_at(
        &self,
        file: &SourceFile,
        object: &FluxObject,
        span: crate::yaml::Span,
        reason: String,
    ) -> Unresolved {
        let written_in = span
            .file_index()
            .and_then(|f| self.inventory.files.get(f))
            .unwrap_or(file);
        let (line, column) = written_in.lines.position(&written_in.text, span.start);
        Unresolved {
            file: written_in.path.clone(),
            line,
            column,
            object: object.display_name(),
            reason,
        }
    }

    fn unresolved(&self, file: &SourceFile, object: &FluxObject, reason: String) -> Unresolved {
        let resource_start = object.root.span.start;
        let (line, column) = file.lines.position(&file.text, resource_start);
        Unresolved {
            file: file.path.clone(),
            line,
            column,
            object: object.display_name(),
            reason,
        }
    }
}

/// Diagnostics by file, position and code; those that tie keep the order they were found in.
/// Their indices are sorted, not the diagnostics: a diagnostic is a few hundred bytes, which a
/// merge sort would move several times over.
fn in_report_order(mut diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    fn key(d: &Diagnostic) -> (&str, usize, usize, &str) {
        (&d.file, d.line, d.column, d.finding.code)
    }
    // The order is found on indices (a stable sort: equal keys keep their order), then the
    // diagnostics are swapped into place in the list they are in: no second list of them.
    let mut order: Vec<usize> = (0..diagnostics.len()).collect();
    order.sort_by(|&a, &b| key(&diagnostics[a]).cmp(&key(&diagnostics[b])));
    permute(&mut diagnostics, order);
    diagnostics
}

/// Rearranges `items` so that position `i` holds what was at `order[i]` (`order` being a
/// permutation), following each cycle of the permutation with swaps.
fn permute<T>(items: &mut [T], mut order: Vec<usize>) {
    const PLACED: usize = usize::MAX;
    for start in 0..order.len() {
        let mut at = start;
        while order[at] != PLACED {
            let from = std::mem::replace(&mut order[at], PLACED);
            if from == start {
                break;
            }
            items.swap(at, from);
            at = from;
        }
    }
}

/// ServiceAccounts of the builds, in every namespace they are built into.
pub(crate) fn declared_service_accounts(builds: &Builds) -> HashSet<(String, String)> {
    builds
        .objects
        .iter()
        .map(|b| &b.object)
        .filter(|o| {
            crate::build::tree::kind(&o.root) == "ServiceAccount"
                && crate::build::tree::api_version(&o.root) == "v1"
        })
        .filter_map(|o| {
            let namespace = o.namespace().filter(|ns| !ns.contains("${"))?;
            Some((
                namespace.to_owned(),
                crate::build::tree::name(&o.root).to_owned(),
            ))
        })
        .collect()
}

/// Places a finding in its file.
pub(crate) fn locate(file: &SourceFile, finding: Finding) -> Diagnostic {
    let (line, column) = file.lines.position(&file.text, finding.span.start);
    let (end_line, end_column) = file
        .lines
        .position(&file.text, finding.span.end.max(finding.span.start));
    Diagnostic {
        finding,
        file: file.path.clone(),
        line,
        column,
        end_line,
        end_column,
        object: None,
        namespace_origin: None,
        notes: Vec::new(),
    }
}

/// Whether a suppression comment of `diagnostic`'s file (`index`) silences it: one that
/// names its rule, when the policy lets that rule be suppressed.
fn is_suppressed(
    inventory: &Inventory,
    policy: &Policy,
    index: usize,
    diagnostic: &Diagnostic,
) -> bool {
    if !policy.suppressions.allows(diagnostic.finding.code) {
        return false;
    }
    let file = &inventory.files[index];
    let offset = diagnostic.finding.span.start;
    let document = inventory
        .resources
        .iter()
        .find(|r| r.file == index && r.span.start <= offset && offset <= r.span.end);
    file.suppressions
        .iter()
        .filter(|s| s.is_valid() && s.covers(diagnostic.finding.code))
        .any(|s| {
            s.target_line == diagnostic.line
                || (s.own_line
                    && document.is_some_and(|d| {
                        d.header.start <= s.span.start && s.span.start < d.header.end
                    }))
        })
}

/// Suppression comments naming rules the policy does not let be suppressed: shown, not
/// obeyed (the findings they name stay in the report).
fn denied_suppressions(inventory: &Inventory, policy: &Policy) -> Vec<Diagnostic> {
    let meta = &SUPPRESSION_NOT_ALLOWED;
    let severity = policy.severity(meta.code, meta.default_severity);
    if severity == Severity::Off || policy.suppressions == crate::policy::Suppressions::Allow {
        return Vec::new();
    }
    let mut out = Vec::new();
    for file in inventory.files.iter().filter(|f| f.reported) {
        for suppression in file.suppressions.iter().filter(|s| s.is_valid()) {
            let denied: Vec<&str> = suppression
                .codes
                .iter()
                .map(String::as_str)
                .filter(|code| !policy.suppressions.allows(code))
                .collect();
            if denied.is_empty() {
                continue;
            }
            let mut finding = meta.finding(
                String::new(),
                suppression.span,
                format!(
                    "the policy does not let {} be suppressed: this comment does not silence it",
                    denied.join(", ")
                ),
                "fix the finding, or have the platform list the rule under the policy's `suppressions`"
                    .into(),
            );
            finding.severity = severity;
            out.push(locate(file, finding));
        }
    }
    out
}

fn invalid_suppressions(inventory: &Inventory, policy: &Policy) -> Vec<Diagnostic> {
    let meta = &SUPPRESSION_WITHOUT_REASON;
    let severity = policy.severity(meta.code, meta.default_severity);
    if severity == Severity::Off {
        return Vec::new();
    }
    let mut out = Vec::new();
    for file in inventory.files.iter().filter(|f| f.reported) {
        for suppression in file.suppressions.iter().filter(|s| !s.is_valid()) {
            let missing = if suppression.codes.is_empty() {
                "names no rule code"
            } else {
                "gives no reason"
            };
            let mut finding = meta.finding(
                String::new(),
                suppression.span,
                format!("this fluxfence:ignore comment {missing}, so it silences nothing"),
                "write `# fluxfence:ignore FF101 -- why this exception is safe`".into(),
            );
            finding.severity = severity;
            out.push(locate(file, finding));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_puts_each_item_where_the_order_says() {
        let orders: [&[usize]; 6] = [
            &[],
            &[0],
            &[2, 0, 1],
            &[1, 0, 3, 2],
            &[0, 1, 2, 3],
            &[4, 3, 2, 1, 0, 5],
        ];
        for order in orders {
            let mut items: Vec<usize> = (0..order.len()).map(|i| i * 10).collect();
            permute(&mut items, order.to_vec());
            let expected: Vec<usize> = order.iter().map(|i| i * 10).collect();
            assert_eq!(items, expected, "{order:?}");
        }
    }

    /// Objects spread over several runs of every step done on every core (kustomization
    /// entries, namespaces, rules): what the runs report, joined, must be what one pass over
    /// the objects reports, in the same order.
    #[test]
    fn objects_judged_in_runs_report_as_one_pass_would() {
        let objects = 300;
        let mut inventory = Inventory::default();
        let mut expected_findings = Vec::new();
        let mut expected_unresolved = Vec::new();
        for i in 0..objects {
            // A third each: the namespace from metadata, from a kustomization.yaml, or none.
            let dir = format!("apps/{i:04}");
            let namespace = match i % 3 {
                0 => "namespace: team-a\n  ",
                _ => "",
            };
            let text = format!(
                "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  \
                 {namespace}name: release-{i}\nspec:\n  chart:\n    spec:\n      chart: app\n      \
                 sourceRef:\n        kind: HelmRepository\n        name: charts\n        \
                 namespace: flux-system\n"
            );
            inventory.add_text(&format!("{dir}/release.yaml"), text);
            match i % 3 {
                0 => expected_findings.push((
                    format!("HelmRelease/team-a/release-{i}"),
                    "metadata.namespace".to_owned(),
                )),
                1 => {
                    inventory.add_text(
                        &format!("{dir}/kustomization.yaml"),
                        "namespace: team-b\nresources:\n  - release.yaml\n".to_owned(),
                    );
                    expected_findings.push((
                        format!("HelmRelease/team-b/release-{i}"),
                        format!("namespace of {dir}/kustomization.yaml:1"),
                    ));
                }
                _ => expected_unresolved.push(format!("{dir}/release.yaml")),
            }
        }
        let policy = Policy::azure_default();
        let report = lint(inventory, &policy);

        assert_eq!(report.objects_checked, expected_findings.len());
        let unresolved: Vec<&str> = report.unresolved.iter().map(|u| u.file.as_str()).collect();
        assert_eq!(unresolved, expected_unresolved);
        let cross_namespace: Vec<(String, String)> = report
            .diagnostics
            .iter()
            .filter(|d| d.finding.code == "FF101")
            .map(|d| (d.object.clone(), d.namespace_origin.clone()))
            .map(|(object, origin)| (object.unwrap_or_default(), origin.unwrap_or_default()))
            .collect();
        assert_eq!(cross_namespace, expected_findings);
    }
}
