//! The linting pipeline: inventory → effective namespaces → rules → located diagnostics.

use std::collections::{HashMap, HashSet};

use crate::diagnostic::{Diagnostic, Finding, Severity};
use crate::input::{InputError, Inventory, Resource, SourceFile};
use crate::kustomize::PatchFiles;
use crate::model::{EffectiveNamespace, FluxObject};
use crate::policy::Policy;
use crate::rules::{self, Context, SUPPRESSION_WITHOUT_REASON, Subject};

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

pub fn lint(inventory: Inventory, policy: &Policy) -> Report {
    let namespaces = crate::resolve::effective_namespaces(&inventory);
    let declared_service_accounts = declared_service_accounts(&inventory, &namespaces);
    let cx = Context {
        policy,
        declared_service_accounts: &declared_service_accounts,
        trust_explicit_service_accounts: false,
    };

    // Patch files hold partial objects: neither the rules nor the schema check judge them.
    let patch_files = inventory.patch_files();
    let judge = Judge {
        inventory: &inventory,
        namespaces: &namespaces,
        patch_files: &patch_files,
        cx: &cx,
    };
    // Objects are judged in runs, on every core; the runs' results, joined in order, are what
    // one pass over the objects would give. Only reported objects count: a pre-commit run
    // judges one file's, however large the repository read for context.
    let judged_objects: Vec<usize> = (0..inventory.resources.len())
        .filter(|&i| judge.judges(&inventory.resources[i]))
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
    let schema_diagnostics = crate::schema::check_inventory(&inventory, policy, &patch_files);
    // Sized once: a diagnostic is a few hundred bytes, and growing the list copies all of it.
    let mut diagnostics = Vec::with_capacity(
        judged.iter().map(|j| j.diagnostics.len()).sum::<usize>()
            + kustomize_diagnostics.len()
            + schema_diagnostics.len(),
    );
    let mut unresolved = Vec::with_capacity(judged.iter().map(|j| j.unresolved.len()).sum());
    let mut objects_checked = 0;
    for run in judged {
        diagnostics.extend(run.diagnostics);
        unresolved.extend(run.unresolved);
        objects_checked += run.objects_checked;
    }
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
                .is_none_or(|&file| !is_suppressed(&inventory, file, d))
        });
    }
    diagnostics.extend(invalid_suppressions(&inventory, policy));
    Report {
        inventory,
        diagnostics: in_report_order(diagnostics),
        unresolved,
        objects_checked,
    }
}

/// Objects judged in one piece of work: few enough that a run on two cores splits evenly,
/// enough that handing them out costs nothing next to the rules.
const OBJECTS_PER_RUN: usize = 64;

/// What the rules need of a lint run, shared by every core.
struct Judge<'a> {
    inventory: &'a Inventory,
    namespaces: &'a [Vec<EffectiveNamespace>],
    patch_files: &'a PatchFiles,
    cx: &'a Context<'a>,
}

/// The findings on a run of resources, in resource order.
#[derive(Default)]
struct Judged {
    diagnostics: Vec<Diagnostic>,
    unresolved: Vec<Unresolved>,
    objects_checked: usize,
}

impl Judge<'_> {
    /// Whether `resource` is a Flux object to judge: one of a reported file that is not a
    /// patch (a patch's namespace only selects its target; the target itself is judged).
    fn judges(&self, resource: &Resource) -> bool {
        let file = &self.inventory.files[resource.file];
        resource.flux.is_some() && file.reported && !self.patch_files.contains(&file.rel)
    }

    /// Checks the objects (indices of resources) in every namespace they may live in.
    fn run(&self, objects: &[usize]) -> Judged {
        let mut judged = Judged::default();
        for &index in objects {
            let resource = &self.inventory.resources[index];
            let Some(object) = resource.flux.as_ref() else {
                continue;
            };
            let file = &self.inventory.files[resource.file];
            let checked = self.object(object, file, &self.namespaces[index], &mut judged);
            judged.objects_checked += usize::from(checked);
        }
        judged
    }

    /// Judges one object; false when none of its namespaces is known.
    fn object(
        &self,
        object: &FluxObject,
        file: &SourceFile,
        candidates: &[EffectiveNamespace],
        judged: &mut Judged,
    ) -> bool {
        // This object's diagnostics start here: the same finding in two namespaces (a file
        // applied twice) is reported once.
        let first = judged.diagnostics.len();
        let first_unresolved = judged.unresolved.len();
        let mut checked = false;
        for candidate in candidates {
            match candidate {
                EffectiveNamespace::Known { name, origin } => {
                    checked = true;
                    let subject = Subject {
                        object,
                        namespace: name,
                        origin,
                    };
                    // What the object's findings in this namespace say of it: made once.
                    let mut labels: Option<(String, String)> = None;
                    for finding in rules::check_object(&subject, self.cx) {
                        // An object has a handful of findings: a scan beats hashing them.
                        let repeated = judged.diagnostics[first..].iter().any(|d| {
                            let seen = &d.finding;
                            (seen.code, seen.span, &seen.message)
                                == (finding.code, finding.span, &finding.message)
                        });
                        if !repeated {
                            let (object_label, origin_label) = labels.get_or_insert_with(|| {
                                let label = format!("{}/{}/{}", object.kind, name, object.name);
                                (label, origin.describe())
                            });
                            let mut diagnostic = locate(file, finding);
                            diagnostic.object = Some(object_label.clone());
                            diagnostic.namespace_origin = Some(origin_label.clone());
                            judged.diagnostics.push(diagnostic);
                        }
                    }
                }
                EffectiveNamespace::Unknown { reason } => {
                    // Several paths may apply the file; one note per object and reason.
                    if judged.unresolved[first_unresolved..]
                        .iter()
                        .any(|seen| &seen.reason == reason)
                    {
                        continue;
                    }
                    let (line, column) = file.lines.position(&file.text, object.root.span.start);
                    judged.unresolved.push(Unresolved {
                        file: file.path.clone(),
                        line,
                        column,
                        object: object.display_name(),
                        reason: reason.clone(),
                    });
                }
            }
        }
        checked
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

/// ServiceAccounts of the input, in every namespace they would be created in.
pub(crate) fn declared_service_accounts(
    inventory: &Inventory,
    namespaces: &[Vec<EffectiveNamespace>],
) -> HashSet<(String, String)> {
    let mut found = HashSet::new();
    for (resource, candidates) in inventory.resources.iter().zip(namespaces) {
        if resource.kind != "ServiceAccount" || resource.api_version != "v1" {
            continue;
        }
        for candidate in candidates {
            if let EffectiveNamespace::Known { name, .. } = candidate {
                found.insert((name.clone(), resource.name.clone()));
            }
        }
    }
    found
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
    }
}

/// Whether a suppression comment of `diagnostic`'s file (`index`) silences it.
fn is_suppressed(inventory: &Inventory, index: usize, diagnostic: &Diagnostic) -> bool {
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
