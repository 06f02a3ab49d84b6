//! The audit's own cost, with no API server: 10,000 live Flux objects (HelmReleases and
//! Kustomizations over 50 namespaces, a tenth violating FF101, as the API server lists them,
//! `managedFields` included) judged, and rendered as text and as PolicyReports. What the
//! end-to-end benchmark (`webhook/tests/audit_scale.rs`) adds to this is the lists.
//!
//! `cargo bench -p fluxfence --bench audit_judge`; `FLUXFENCE_AUDIT_OBJECTS` sizes it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use fluxfence::Policy;
use fluxfence::audit::{self, Snapshot, policy_report};
use fluxfence::output::{self, Format};
use serde_json::{Value, json};

const NAMESPACES: usize = 50;
const ROUNDS: usize = 5;

fn object(i: usize) -> Value {
    let namespace = format!("tenant-{:02}", i % NAMESPACES);
    let source_namespace = if i.is_multiple_of(10) {
        "flux-system".to_owned()
    } else {
        namespace.clone()
    };
    let metadata = json!({
        "name": format!("object-{i:05}"), "namespace": namespace, "uid": format!("{i:08x}-uid"),
        "resourceVersion": "12345", "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z",
        "labels": {"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"},
        "managedFields": [{"manager": "kustomize-controller", "operation": "Apply", "fieldsV1": {"f:spec": {}}}],
    });
    let status = json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded",
        "message": "applied revision main@sha1:0123456789abcdef", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
    if i.is_multiple_of(2) {
        json!({"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease", "metadata": metadata,
            "spec": {"interval": "10m", "serviceAccountName": "deployer", "chart": {"spec": {"chart": "app",
                "version": "1.2.3", "sourceRef": {"kind": "HelmRepository", "name": "charts", "namespace": source_namespace}}},
                "values": {"replicas": 2, "image": {"repository": "ghcr.io/org/app", "tag": "1.2.3"}}},
            "status": status})
    } else {
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": metadata,
            "spec": {"interval": "10m", "path": "./apps", "prune": true, "serviceAccountName": "deployer",
                "sourceRef": {"kind": "GitRepository", "name": "repo", "namespace": source_namespace}},
            "status": status})
    }
}

fn main() {
    let count: usize = std::env::var("FLUXFENCE_AUDIT_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let objects: Vec<Value> = (0..count).map(object).collect();
    let accounts: HashSet<(String, String)> = (0..NAMESPACES)
        .map(|n| (format!("tenant-{n:02}"), "deployer".to_owned()))
        .collect();
    let policy = Policy::azure_default();
    let mut times: Vec<(Duration, Duration, Duration)> = Vec::new();
    for _ in 0..ROUNDS {
        let snapshot = Snapshot {
            cluster: "bench".into(),
            objects: objects.clone(),
            service_accounts: accounts.clone(),
            namespaces: BTreeMap::new(),
        };
        let started = Instant::now();
        let audit = audit::judge(snapshot, &policy, &|_| true);
        let judged = started.elapsed();
        let text = output::render(&audit.report, Format::Text, &output::Options::default());
        let texted = started.elapsed();
        let reports = policy_report::render(&audit);
        let reported = started.elapsed();
        assert_eq!(audit.objects.len(), count);
        assert_eq!(
            audit
                .objects
                .iter()
                .filter(|o| o.breaks == ["FF101"])
                .count(),
            count.div_ceil(10)
        );
        assert!(!text.is_empty() && !reports.is_empty());
        times.push((judged, texted - judged, reported - texted));
    }
    times.sort();
    let (judge, text, reports) = times[ROUNDS / 2];
    println!(
        "audit of {count} objects (median of {ROUNDS}): judge {judge:.1?}, text report {text:.1?}, policy reports {reports:.1?}"
    );
}
