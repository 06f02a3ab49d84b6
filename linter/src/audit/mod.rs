//! `fluxfence audit`: the Flux objects a cluster already holds, judged as the webhook judges
//! an admitted object — same engine, same policy, each object in its own namespace — against
//! the ServiceAccounts that really exist there.
//!
//! [`cluster`] reads a [`Snapshot`] from the API server; [`judge`] turns it into an [`Audit`]:
//! a lint [`Report`] (so every lint format renders it) whose "files" are the live objects
//! written as YAML, plus what enforcement would do to each object. [`policy_report`] renders
//! the audit as `wgpolicyk8s.io/v1alpha2` PolicyReports.

pub mod cluster;
pub mod policy_report;
mod yaml_text;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::ops::Range;
use std::path::PathBuf;

use serde_json::Value;

use crate::diagnostic::Severity;
use crate::input::{Inventory, Source};
use crate::kinds::FluxKind;
use crate::lint::{Report, locate};
use crate::model::NamespaceOrigin;
use crate::policy::Policy;
use crate::rules::{self, Context, Subject};
use crate::shared;

/// What the audit read from a cluster.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The cluster, for the summary: `context NAME (https://…)`.
    pub cluster: String,
    /// Flux objects, each once, as the API server serves them (`apiVersion` and `kind` set).
    pub objects: Vec<Value>,
    /// `(namespace, name)` of every ServiceAccount in the namespaces read.
    pub service_accounts: HashSet<(String, String)>,
    /// The namespaces read, with their labels.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

/// A judged cluster.
pub struct Audit {
    /// The findings, in every lint format. Each live object is a "file" named
    /// `NAMESPACE/Kind/NAME`, its text the object as YAML.
    pub report: Report,
    /// The Flux objects judged, by namespace, kind and name.
    pub objects: Vec<Audited>,
    pub cluster: String,
    pub namespaces: usize,
    /// The policy admits an update that keeps its violations as they are.
    pub ratchet_updates: bool,
}

/// One live Flux object and what enforcement would do to it.
#[derive(Debug, Clone)]
pub struct Audited {
    pub api_version: String,
    pub kind: FluxKind,
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    /// Its findings: `report.diagnostics[diagnostics]`.
    pub diagnostics: Range<usize>,
    /// Codes of the findings Flux itself acts on: the object fails (or its events are
    /// dropped) at its next reconcile when multi-tenancy is enforced.
    pub breaks: Vec<&'static str>,
    /// Codes of the deny findings: the webhook refuses the object's next update.
    pub denied: Vec<&'static str>,
}

impl Audited {
    /// `Kind namespace/name`.
    pub fn label(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The rules that mirror what Flux's own controllers do under multi-tenancy lockdown, and what
/// they do. The others (missing `serviceAccountName`, remote clusters, target namespaces,
/// source URLs) are the platform's policy: Flux reconciles such objects.
pub fn flux_consequence(code: &str) -> Option<&'static str> {
    match code {
        "FF101" => Some(
            "with --no-cross-namespace-refs the controller refuses the reference: \
             Ready=False, reason AccessDenied, not retried",
        ),
        "FF102" => Some(
            "with --no-cross-namespace-refs notification-controller drops the Alert's events \
             from that namespace and the Receiver refuses the request when it fires",
        ),
        "FF111" => Some(
            "the controller cannot impersonate the service account: the reconcile fails \
             until it exists",
        ),
        _ => None,
    }
}

/// `(namespace, name)` of the objects labelled as published copies of a shared source that
/// download from where that source does, the source being among `objects` (sorted by
/// namespace, kind and name). Anyone may write the labels; only the same location makes the
/// object reach no more than the platform shares.
fn vouched_copies(
    objects: &[(String, String, String, Value)],
    policy: &Policy,
) -> HashSet<(String, String)> {
    let label = |object: &Value, key: &str| {
        object
            .pointer("/metadata/labels")
            .and_then(|labels| labels.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut out = HashSet::new();
    for (namespace, kind, name, object) in objects {
        if label(object, shared::SHARED_SOURCE_LABEL).as_ref() != Some(name)
            || label(object, shared::SHARED_SOURCE_KIND_LABEL).as_ref() != Some(kind)
        {
            continue;
        }
        let Some(entry) = policy
            .shared_sources
            .iter()
            .find(|s| &s.kind == kind && &shared::published_name(&s.namespace, &s.name) == name)
        else {
            continue;
        };
        let source = objects
            .binary_search_by(|(ns, k, n, _)| {
                (ns.as_str(), k.as_str(), n.as_str()).cmp(&(
                    entry.namespace.as_str(),
                    kind.as_str(),
                    entry.name.as_str(),
                ))
            })
            .ok()
            .map(|i| &objects[i].3);
        if source.is_some_and(|source| shared::same_location(object, source)) {
            out.insert((namespace.clone(), name.clone()));
        }
    }
    out
}

/// Judges every Flux object of `snapshot` in its own namespace. `reports` says which rule
/// codes are reported (`--select`/`--ignore`); every rule runs.
pub fn judge(snapshot: Snapshot, policy: &Policy, reports: &dyn Fn(&str) -> bool) -> Audit {
    let mut objects: Vec<(String, String, String, Value)> = snapshot
        .objects
        .into_iter()
        .map(|mut object| {
            // Who wrote which field is noise in a code frame, and most of an object's bytes.
            if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.remove("managedFields");
            }
            let text = |pointer: &str| {
                object
                    .pointer(pointer)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            let (namespace, kind, name) = (
                text("/metadata/namespace"),
                text("/kind"),
                text("/metadata/name"),
            );
            (namespace, kind, name, object)
        })
        .collect();
    objects.sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
    let vouched_copies = vouched_copies(&objects, policy);
    let sources: Vec<Source> = objects
        .iter()
        .map(|(namespace, kind, name, object)| {
            let path = format!("{namespace}/{kind}/{name}");
            Source {
                rel: PathBuf::from(&path),
                path,
                text: yaml_text::document(object),
                reported: true,
            }
        })
        .collect();
    let uids: Vec<Option<String>> = objects
        .iter()
        .map(|(.., o)| {
            o.pointer("/metadata/uid")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    drop(objects);
    let inventory = Inventory::from_sources(None, sources);
    let cx = Context {
        policy,
        declared_service_accounts: &snapshot.service_accounts,
        trust_explicit_service_accounts: false,
        service_accounts_listed: true,
        // What the API server holds is what Flux applies: substitution happened before.
        values_are_final: true,
        vouched_copies: &vouched_copies,
    };
    let mut diagnostics = Vec::new();
    let mut audited = Vec::new();
    for resource in &inventory.resources {
        let Some(object) = &resource.flux else {
            continue;
        };
        let file = &inventory.files[resource.file];
        let namespace = object.declared_namespace.clone().unwrap_or_default();
        let subject = Subject {
            object,
            namespace: &namespace,
            origin: &NamespaceOrigin::Metadata,
        };
        let start = diagnostics.len();
        let mut breaks = Vec::new();
        let mut denied = Vec::new();
        for mut finding in rules::check_object(&subject, &cx) {
            if !reports(finding.code) {
                continue;
            }
            // Fixes edit files; a live object is changed where it is written, in Git.
            finding.fix = None;
            let mut notes = Vec::new();
            if let Some(consequence) = flux_consequence(finding.code) {
                notes.push(format!(
                    "at its next reconcile under enforcement: {consequence}"
                ));
                push_once(&mut breaks, finding.code);
            }
            if finding.severity == Severity::Deny {
                notes.push(denial_note(policy).to_owned());
                push_once(&mut denied, finding.code);
            }
            let mut diagnostic = locate(file, finding);
            diagnostic.object = Some(format!("{}/{namespace}/{}", object.kind, object.name));
            diagnostic.namespace_origin = Some(NamespaceOrigin::Metadata.describe());
            diagnostic.notes = notes;
            diagnostics.push(diagnostic);
        }
        audited.push(Audited {
            api_version: object.api_version.clone(),
            kind: object.kind,
            namespace,
            name: object.name.clone(),
            uid: uids.get(resource.file).cloned().flatten(),
            diagnostics: start..diagnostics.len(),
            breaks,
            denied,
        });
    }
    let objects_checked = audited.len();
    Audit {
        report: Report {
            inventory,
            diagnostics,
            unresolved: Vec::new(),
            objects_checked,
            objects_without_flux_build: 0,
        },
        objects: audited,
        cluster: snapshot.cluster,
        namespaces: snapshot.namespaces.len(),
        ratchet_updates: policy.ratchet_updates,
    }
}

fn push_once(codes: &mut Vec<&'static str>, code: &'static str) {
    if !codes.contains(&code) {
        codes.push(code);
    }
}

/// When the webhook refuses an object that violates already.
fn denial_note(policy: &Policy) -> &'static str {
    if policy.ratchet_updates {
        "the webhook denies its next update that changes a field this rule reads \
         (an update that keeps the violation as it is is admitted with a warning)"
    } else {
        "the webhook denies its next update"
    }
}

/// The audit's own summary: what would break under enforcement and what the webhook would
/// deny, object by object.
pub fn summary(audit: &Audit) -> String {
    let mut out = String::new();
    let plural = crate::output::plural;
    let _ = writeln!(
        out,
        "Audited {} in {} of {}: {}.",
        plural(audit.objects.len(), "Flux object"),
        plural(audit.namespaces, "namespace"),
        audit.cluster,
        plural(audit.report.diagnostics.len(), "finding"),
    );
    let breaking: Vec<&Audited> = audit
        .objects
        .iter()
        .filter(|o| !o.breaks.is_empty())
        .collect();
    let denied: Vec<&Audited> = audit
        .objects
        .iter()
        .filter(|o| !o.denied.is_empty())
        .collect();
    if breaking.is_empty() {
        let _ = writeln!(
            out,
            "No object would fail at its next reconcile with multi-tenancy enforced."
        );
    } else {
        let _ = writeln!(
            out,
            "{} would fail at {} next reconcile with multi-tenancy enforced:",
            plural(breaking.len(), "object"),
            if breaking.len() == 1 { "its" } else { "their" },
        );
        list(&mut out, &breaking, |o| &o.breaks);
    }
    if denied.is_empty() {
        let _ = writeln!(out, "The webhook would deny no object's next update.");
    } else {
        let its = if denied.len() == 1 { "its" } else { "their" };
        let when = if audit.ratchet_updates {
            format!(
                "at {its} next update that changes a field a rule reads (the policy ratchets: \
                 an update that keeps a violation as it is is admitted with a warning)"
            )
        } else {
            format!("at {its} next update")
        };
        let _ = writeln!(
            out,
            "The webhook would deny {} {when}:",
            plural(denied.len(), "object"),
        );
        list(&mut out, &denied, |o| &o.denied);
    }
    out
}

fn list(out: &mut String, objects: &[&Audited], codes: impl Fn(&Audited) -> &[&'static str]) {
    for object in objects {
        let _ = writeln!(out, "  {}: {}", object.label(), codes(object).join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn helm_release(namespace: &str, name: &str, source_namespace: &str) -> Value {
        json!({
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"),
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"interval": "10m", "chart": {"spec": {"chart": "app",
                "sourceRef": {"kind": "HelmRepository", "name": "charts", "namespace": source_namespace}}}}
        })
    }

    fn snapshot(objects: Vec<Value>, accounts: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            cluster: "context test".into(),
            objects,
            service_accounts: accounts
                .iter()
                .map(|(ns, name)| ((*ns).to_owned(), (*name).to_owned()))
                .collect(),
            namespaces: BTreeMap::new(),
        }
    }

    #[test]
    fn a_live_object_is_judged_in_its_namespace_against_the_accounts_that_exist() {
        let objects = vec![
            // Clean: its source and its service account are in its namespace.
            helm_release("cluster-config", "clean", "cluster-config"),
            // FF101, and FF111: no flux-applier in `apps`.
            helm_release("apps", "crossing", "flux-system"),
        ];
        let audit = judge(
            snapshot(objects, &[("cluster-config", "flux-applier")]),
            &Policy::azure_default(),
            &|_| true,
        );
        let found: Vec<(String, Vec<&str>, Vec<&str>)> = audit
            .objects
            .iter()
            .map(|o| (o.label(), o.breaks.clone(), o.denied.clone()))
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    "HelmRelease apps/crossing".into(),
                    vec!["FF101", "FF111"],
                    vec!["FF101", "FF111"]
                ),
                ("HelmRelease cluster-config/clean".into(), vec![], vec![]),
            ]
        );
        let first = &audit.report.diagnostics[0];
        assert_eq!(first.file, "apps/HelmRelease/crossing");
        // The code frame points at the sourceRef's namespace in the object's YAML.
        let file = &audit.report.inventory.files[0];
        let line = file.text.lines().nth(first.line - 1).unwrap();
        assert_eq!(line.trim(), "namespace: flux-system", "{}", file.text);
        assert!(!file.text.contains("managedFields"));
        assert_eq!(audit.report.exit_code(), 1);
    }

    fn helm_repository(namespace: &str, name: &str, url: &str, copy_of: Option<&str>) -> Value {
        let mut object = json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "HelmRepository",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"interval": "1h", "url": url}
        });
        if let Some(published) = copy_of {
            object["metadata"]["labels"] = json!({
                shared::SHARED_SOURCE_LABEL: published,
                shared::SHARED_SOURCE_KIND_LABEL: "HelmRepository",
            });
        }
        object
    }

    #[test]
    fn a_copy_of_a_shared_source_reaching_where_the_source_does_is_not_held_to_tenant_urls() {
        let policy = Policy::parse(
            "tenants:\n  - {name: team-a, namespaces: [team-a], sourceUrls: [https://github.com/org/team-a]}\n\
             sharedSources:\n  - {kind: HelmRepository, namespace: flux-system, name: bitnami}\n",
            "p.yaml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let bitnami = "https://charts.bitnami.com/bitnami";
        let copy = "flux-system.bitnami";
        let ff140 = |objects: Vec<Value>| -> Vec<String> {
            let audit = judge(snapshot(objects, &[]), &policy, &|code| code == "FF140");
            audit
                .objects
                .iter()
                .filter(|o| o.breaks.contains(&"FF140") || o.denied.contains(&"FF140"))
                .map(Audited::label)
                .collect()
        };
        let source = helm_repository("flux-system", "bitnami", bitnami, None);
        assert_eq!(
            ff140(vec![
                source.clone(),
                helm_repository("team-a", copy, bitnami, Some(copy)),
            ]),
            Vec::<String>::new()
        );
        // The labels do not make a tenant's own repository the platform's.
        assert_eq!(
            ff140(vec![
                source.clone(),
                helm_repository("team-a", copy, "https://evil.example/charts", Some(copy)),
            ]),
            ["HelmRepository team-a/flux-system.bitnami"]
        );
        // Nor does a source the audit did not see.
        assert_eq!(
            ff140(vec![helm_repository("team-a", copy, bitnami, Some(copy))]),
            ["HelmRepository team-a/flux-system.bitnami"]
        );
    }

    #[test]
    fn the_policy_cannot_vouch_for_an_account_the_cluster_lacks() {
        // The built-in policy says flux-applier exists in cluster-config; this cluster has none.
        let audit = judge(
            snapshot(
                vec![helm_release("cluster-config", "clean", "cluster-config")],
                &[],
            ),
            &Policy::azure_default(),
            &|_| true,
        );
        assert_eq!(audit.objects[0].breaks, vec!["FF111"]);
        let ff111 = audit
            .report
            .diagnostics
            .iter()
            .find(|d| d.finding.code == "FF111");
        assert!(ff111.unwrap().finding.message.contains("does not exist"));
    }

    #[test]
    fn unselected_rules_are_not_reported_and_warnings_are_not_denials() {
        let policy = Policy::parse(
            "enforce: true\ndefaultServiceAccount: {name: flux-applier, namespaces: [cluster-config]}\n\
             rules: {FF101: warn}\n",
            "policy.yaml",
        )
        .unwrap();
        let audit = judge(
            snapshot(
                vec![helm_release("apps", "crossing", "flux-system")],
                &[("apps", "flux-applier")],
            ),
            &policy,
            &|code| code != "FF111",
        );
        let object = &audit.objects[0];
        assert_eq!(
            object.breaks,
            vec!["FF101"],
            "a warning still breaks at reconcile"
        );
        assert!(object.denied.is_empty(), "a warning is not a denial");
        assert_eq!(audit.report.exit_code(), 0);
        let text = summary(&audit);
        assert!(
            text.contains("1 object would fail at its next reconcile"),
            "{text}"
        );
        assert!(
            text.contains("The webhook would deny no object's next update."),
            "{text}"
        );
    }

    #[test]
    fn exempt_namespaces_skip_the_service_account_rules_but_not_cross_namespace_references() {
        // No ServiceAccount exists: outside an exempt namespace FF111 would fire too.
        let audit = judge(
            snapshot(
                vec![
                    helm_release("flux-system", "platform", "flux-system"),
                    helm_release("flux-system", "other", "team-a"),
                ],
                &[],
            ),
            &Policy::azure_default(),
            &|_| true,
        );
        let codes: Vec<&str> = audit
            .report
            .diagnostics
            .iter()
            .map(|d| d.finding.code)
            .collect();
        assert_eq!(
            codes,
            ["FF101"],
            "--no-cross-namespace-refs has no exempt namespace"
        );
        assert_eq!(audit.objects.len(), 2);
    }
}
