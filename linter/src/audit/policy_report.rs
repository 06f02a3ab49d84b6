//! An audit as `wgpolicyk8s.io/v1alpha2` PolicyReports: one per namespace that holds Flux
//! objects, named `fluxfence`, the format Kyverno's and Gatekeeper's background scans write
//! and that Policy Reporter and other dashboards read.
//!
//! `results` lists the findings (`fail` for deny, `warn` for warn); `summary.pass` counts the
//! objects without any, so that a namespace of thousands of clean objects stays a small
//! object. Nothing in a report depends on when it was made: the same cluster gives the same
//! text, and a writer can tell a changed report from an unchanged one by comparing them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Audit, Audited, flux_consequence};
use crate::diagnostic::Severity;

pub const API_VERSION: &str = "wgpolicyk8s.io/v1alpha2";
pub const KIND: &str = "PolicyReport";
/// Every report's name: one per namespace.
pub const NAME: &str = "fluxfence";
/// `source` of every result, and the label value that marks the reports as fluxfence's.
pub const SOURCE: &str = "fluxfence";

/// The reports, by namespace.
pub fn reports(audit: &Audit) -> BTreeMap<String, Value> {
    let mut by_namespace: BTreeMap<&str, Vec<&Audited>> = BTreeMap::new();
    for object in &audit.objects {
        by_namespace
            .entry(&object.namespace)
            .or_default()
            .push(object);
    }
    by_namespace
        .into_iter()
        .map(|(namespace, objects)| (namespace.to_owned(), report(audit, namespace, &objects)))
        .collect()
}

/// The reports as one YAML stream, for `kubectl apply -f -`.
pub fn render(audit: &Audit) -> String {
    let mut out = String::new();
    for report in reports(audit).values() {
        out.push_str("---\n");
        out.push_str(&super::yaml_text::document(report));
    }
    out
}

fn report(audit: &Audit, namespace: &str, objects: &[&Audited]) -> Value {
    let mut results = Vec::new();
    let (mut pass, mut fail, mut warn) = (0, 0, 0);
    for object in objects {
        let diagnostics = &audit.report.diagnostics[object.diagnostics.clone()];
        if diagnostics.is_empty() {
            pass += 1;
        }
        for diagnostic in diagnostics {
            let finding = &diagnostic.finding;
            let (result, severity) = match finding.severity {
                Severity::Deny => {
                    fail += 1;
                    ("fail", "high")
                }
                _ => {
                    warn += 1;
                    ("warn", "medium")
                }
            };
            let mut properties = serde_json::Map::new();
            properties.insert("name".into(), json!(finding.rule));
            properties.insert("field".into(), json!(finding.pointer));
            properties.insert("help".into(), json!(finding.help));
            if let Some(consequence) = flux_consequence(finding.code) {
                properties.insert("reconcile".into(), json!(consequence));
            }
            let mut resource = json!({
                "apiVersion": object.api_version,
                "kind": object.kind.as_str(),
                "namespace": object.namespace,
                "name": object.name,
            });
            if let Some(uid) = &object.uid {
                resource["uid"] = json!(uid);
            }
            results.push(json!({
                "source": SOURCE,
                "policy": SOURCE,
                "rule": finding.code,
                "category": "Flux multi-tenancy",
                "severity": severity,
                "result": result,
                "scored": true,
                "message": finding.message,
                "resources": [resource],
                "properties": properties,
            }));
        }
    }
    let mut report = json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": NAME,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": SOURCE},
        },
        "summary": {"pass": pass, "fail": fail, "warn": warn, "error": 0, "skip": 0},
    });
    if !results.is_empty() {
        report["results"] = Value::Array(results);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;
    use crate::audit::{Snapshot, judge};

    fn kustomization(namespace: &str, name: &str, source_namespace: &str) -> Value {
        json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}")},
            "spec": {"interval": "5m", "path": "./", "prune": true, "serviceAccountName": "deployer",
                "sourceRef": {"kind": "GitRepository", "name": "repo", "namespace": source_namespace}}
        })
    }

    #[test]
    fn one_report_per_namespace_with_its_findings_and_a_count_of_clean_objects() {
        let snapshot = Snapshot {
            cluster: "test".into(),
            objects: vec![
                kustomization("team-a", "clean", "team-a"),
                kustomization("team-a", "crossing", "flux-system"),
                kustomization("team-b", "also-clean", ""),
            ],
            service_accounts: [("team-a", "deployer"), ("team-b", "deployer")]
                .iter()
                .map(|(ns, n)| ((*ns).to_owned(), (*n).to_owned()))
                .collect(),
            namespaces: BTreeMap::new(),
        };
        let audit = judge(snapshot, &Policy::azure_default(), &|_| true);
        let reports = reports(&audit);
        assert_eq!(reports.keys().collect::<Vec<_>>(), ["team-a", "team-b"]);
        let team_a = &reports["team-a"];
        assert_eq!(
            team_a["summary"],
            json!({"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0})
        );
        let result = &team_a["results"][0];
        assert_eq!(result["rule"], "FF101");
        assert_eq!(result["result"], "fail");
        assert_eq!(result["resources"][0]["name"], "crossing");
        assert_eq!(result["resources"][0]["uid"], "uid-crossing");
        assert_eq!(result["properties"]["field"], "/spec/sourceRef/namespace");
        assert!(reports["team-b"].get("results").is_none());

        // The YAML stream reads back as the same reports, and says nothing of when it was made.
        let text = render(&audit);
        let mut documents = Vec::new();
        crate::yaml::load_documents(&text, |d| documents.push(d.root.to_json())).unwrap();
        assert_eq!(documents, reports.values().cloned().collect::<Vec<_>>());
        assert!(!text.contains("timestamp"));
    }
}
