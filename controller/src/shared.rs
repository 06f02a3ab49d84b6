//! Shared sources: the pure function policy entry + shared source + the tenant objects that
//! reference it → the objects to publish in tenant namespaces.
//!
//! Flux refuses cross-namespace source references (`--no-cross-namespace-refs`), so a source the
//! policy shares reaches a tenant as an object in the tenant's own namespace, named
//! `<source namespace>.<source name>` ([`fluxfence::shared`] decides the form, and the webhook
//! and FF101 ask it too):
//! - an **ExternalArtifact** whose `status.artifact` is the source's, for a Kustomization
//!   `spec.sourceRef` or a HelmRelease `spec.chartRef`: the tenant's controllers fetch the
//!   artifact source-controller already stored, and no credentials leave the platform;
//! - a **copy of the source object**, for a HelmRelease `spec.chart.spec.sourceRef` (helm-controller
//!   makes a HelmChart in the source's namespace, and no HelmChart can be made from an
//!   ExternalArtifact). The Secrets it names are copied only with `copySecrets: true`;
//!   otherwise the copy names the same Secrets, which the tenant namespace must hold.
//!
//! A namespace gets a published object only while the policy shares the source with it and a
//! Kustomization or HelmRelease there references the source (as written, or through the
//! published name); those referrers own it, so it is garbage-collected with the last of them.
//! Owner references cannot cross namespaces: the labels and the annotation say where it came
//! from.

use std::collections::BTreeMap;

use fluxfence::Policy;
use fluxfence::policy::SharedSource;
use fluxfence::shared::{self as sharing, Form};
use serde_json::{Map, Value, json};

/// On every published object: `<source namespace>.<source name>` (the published name).
pub const SHARED_SOURCE_LABEL: &str = "fluxfence.dev/shared-source";
/// On every published object: the shared source's kind.
pub const SHARED_SOURCE_KIND_LABEL: &str = "fluxfence.dev/shared-source-kind";
/// On every published object: `Kind namespace/name`, the source it was published from.
pub const SHARED_FROM_ANNOTATION: &str = "fluxfence.dev/shared-from";
/// On every published object: the policy entry that shares it, `sharedSources[N]`.
pub const POLICY_ENTRY_ANNOTATION: &str = "fluxfence.dev/policy-entry";
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
const MANAGED_BY: &str = "fluxfence-controller";

/// The fields that hold a source reference, per referring kind.
const REFERENCE_POINTERS: [(&str, &str); 3] = [
    ("Kustomization", "/spec/sourceRef"),
    ("HelmRelease", "/spec/chartRef"),
    ("HelmRelease", "/spec/chart/spec/sourceRef"),
];

/// The fields of each shareable kind that name a Secret in the source's namespace
/// (source-controller's v1 APIs).
fn secret_pointers(kind: &str) -> &'static [&'static str] {
    match kind {
        "GitRepository" => &[
            "/spec/secretRef/name",
            "/spec/proxySecretRef/name",
            "/spec/verify/secretRef/name",
        ],
        "HelmRepository" => &["/spec/secretRef/name", "/spec/certSecretRef/name"],
        "Bucket" => &[
            "/spec/secretRef/name",
            "/spec/certSecretRef/name",
            "/spec/proxySecretRef/name",
            "/spec/sts/secretRef/name",
            "/spec/sts/certSecretRef/name",
        ],
        "OCIRepository" => &[
            "/spec/secretRef/name",
            "/spec/certSecretRef/name",
            "/spec/proxySecretRef/name",
            "/spec/verify/secretRef/name",
        ],
        _ => &[],
    }
}

/// The names of the Secrets `source` (a source object of `kind`) reads, in field order.
pub fn secret_names(kind: &str, source: &Value) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for pointer in secret_pointers(kind) {
        if let Some(name) = source.pointer(pointer).and_then(Value::as_str)
            && !name.is_empty()
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_owned());
        }
    }
    names
}

/// What kind of object is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PublishedKind {
    ExternalArtifact,
    /// A copy of the source, of the source's kind.
    Copy,
    /// A copy of a Secret the source reads (`copySecrets: true`).
    Secret,
}

/// One object to apply in a tenant namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct PublishedObject {
    pub kind: PublishedKind,
    pub namespace: String,
    pub name: String,
    /// The whole object to apply (spec and metadata, no status).
    pub object: Value,
    /// The status to apply through the status subresource (ExternalArtifacts only).
    pub status: Option<Value>,
}

/// A Kustomization or HelmRelease that references the shared source.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Referrer {
    pub namespace: String,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// Which namespaces need which forms of the entry's source, and who there references it.
pub fn referrers(
    policy: &Policy,
    entry: usize,
    objects: &[Value],
) -> BTreeMap<(String, Form), Vec<Referrer>> {
    let mut found: BTreeMap<(String, Form), Vec<Referrer>> = BTreeMap::new();
    let Some(source) = policy.shared_sources.get(entry) else {
        return found;
    };
    for object in objects {
        let meta = &object["metadata"];
        if meta.get("deletionTimestamp").is_some_and(|t| !t.is_null()) {
            continue;
        }
        let (Some(kind), Some(namespace), Some(name), Some(uid)) = (
            object["kind"].as_str(),
            meta["namespace"].as_str(),
            meta["name"].as_str(),
            meta["uid"].as_str(),
        ) else {
            continue;
        };
        for (referrer_kind, pointer) in REFERENCE_POINTERS {
            if referrer_kind != kind {
                continue;
            }
            let Some(form) =
                referenced_form(policy, entry, source, kind, pointer, object, namespace)
            else {
                continue;
            };
            let referrer = Referrer {
                namespace: namespace.to_owned(),
                api_version: object["apiVersion"].as_str().unwrap_or_default().to_owned(),
                kind: kind.to_owned(),
                name: name.to_owned(),
                uid: uid.to_owned(),
            };
            let list = found.entry((namespace.to_owned(), form)).or_default();
            if !list.contains(&referrer) {
                list.push(referrer);
            }
        }
    }
    for list in found.values_mut() {
        list.sort();
    }
    found
}

/// The form in which the reference at `pointer` of `object` (in `namespace`) needs the entry's
/// source: it names the source itself in its namespace (no webhook rewrote it yet), or the
/// published object in its own namespace. `None`: it names something else, or the policy does
/// not share the source with this namespace.
fn referenced_form(
    policy: &Policy,
    entry: usize,
    source: &SharedSource,
    kind: &str,
    pointer: &str,
    object: &Value,
    namespace: &str,
) -> Option<Form> {
    let reference = object.pointer(pointer)?;
    let ref_kind = reference["kind"].as_str()?;
    let ref_name = reference["name"].as_str()?;
    let ref_namespace = reference["namespace"]
        .as_str()
        .filter(|ns| !ns.is_empty())
        .unwrap_or(namespace);
    if !policy.shares_with(source, namespace) {
        return None;
    }
    if ref_namespace == source.namespace && ref_kind == source.kind && ref_name == source.name {
        return sharing::form_for(kind, pointer, &source.kind);
    }
    if ref_namespace != namespace {
        return None;
    }
    let (found, _, form) =
        policy.shared_source_published_as(kind, pointer, ref_kind, ref_name, namespace)?;
    (found == entry).then_some(form)
}

/// Everything the pure function reads.
pub struct Inputs<'a> {
    pub policy: &'a Policy,
    pub entry: usize,
    /// The shared source as stored; `None` when it does not exist (nothing is published).
    pub source: Option<&'a Value>,
    /// The cluster's Kustomizations and HelmReleases.
    pub referrers: &'a [Value],
    /// The Secrets the source reads, by name, from its namespace (read only with `copySecrets`).
    pub secrets: &'a BTreeMap<String, Value>,
}

/// The objects to publish for one policy entry, sorted by namespace, kind and name.
pub fn desired(inputs: &Inputs) -> Vec<PublishedObject> {
    let (Some(entry), Some(source)) = (
        inputs.policy.shared_sources.get(inputs.entry),
        inputs.source,
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ((namespace, form), owners) in referrers(inputs.policy, inputs.entry, inputs.referrers) {
        let origin = Origin {
            entry,
            index: inputs.entry,
            namespace: &namespace,
            owners: &owners,
        };
        match form {
            Form::ExternalArtifact => out.push(external_artifact(&origin, source)),
            Form::Copy => {
                out.push(copy(&origin, source));
                if entry.copy_secrets {
                    for name in secret_names(&entry.kind, source) {
                        if let Some(secret) = inputs.secrets.get(&name) {
                            out.push(copied_secret(&origin, &name, secret));
                        }
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.namespace, a.kind, &a.name).cmp(&(&b.namespace, b.kind, &b.name)));
    out
}

/// Where a published object comes from and who owns it.
struct Origin<'a> {
    entry: &'a SharedSource,
    index: usize,
    namespace: &'a str,
    owners: &'a [Referrer],
}

impl Origin<'_> {
    fn published_name(&self) -> String {
        sharing::published_name(&self.entry.namespace, &self.entry.name)
    }

    fn metadata(&self, name: &str) -> Value {
        let owners: Vec<Value> = self
            .owners
            .iter()
            .map(|o| {
                json!({
                    "apiVersion": o.api_version,
                    "kind": o.kind,
                    "name": o.name,
                    "uid": o.uid,
                })
            })
            .collect();
        json!({
            "name": name,
            "namespace": self.namespace,
            "labels": {
                SHARED_SOURCE_LABEL: self.published_name(),
                SHARED_SOURCE_KIND_LABEL: self.entry.kind,
                MANAGED_BY_LABEL: MANAGED_BY,
            },
            "annotations": {
                SHARED_FROM_ANNOTATION: format!(
                    "{} {}/{}",
                    self.entry.kind, self.entry.namespace, self.entry.name
                ),
                POLICY_ENTRY_ANNOTATION: format!("sharedSources[{}]", self.index),
            },
            "ownerReferences": owners,
        })
    }
}

fn external_artifact(origin: &Origin, source: &Value) -> PublishedObject {
    let name = origin.published_name();
    let object = json!({
        "apiVersion": sharing::SOURCE_API_VERSION,
        "kind": sharing::EXTERNAL_ARTIFACT,
        "metadata": origin.metadata(&name),
        "spec": {
            "sourceRef": {
                "apiVersion": source["apiVersion"].as_str().unwrap_or(sharing::SOURCE_API_VERSION),
                "kind": origin.entry.kind,
                "name": origin.entry.name,
                "namespace": origin.entry.namespace,
            }
        },
    });
    PublishedObject {
        kind: PublishedKind::ExternalArtifact,
        namespace: origin.namespace.to_owned(),
        name: name.clone(),
        object,
        status: Some(mirrored_status(
            origin.entry,
            source,
            &name,
            origin.namespace,
        )),
    }
}

/// The source's artifact and Ready condition, as the ExternalArtifact's status. Copied, not
/// made up: an unchanged source gives an unchanged status (a no-op apply), and a new revision
/// reaches every tenant with the event that brought it.
fn mirrored_status(entry: &SharedSource, source: &Value, name: &str, namespace: &str) -> Value {
    let status = &source["status"];
    let ready = status["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == "Ready"));
    let from = format!("{} {}/{}", entry.kind, entry.namespace, entry.name);
    let condition = match ready {
        Some(ready) => json!({
            "type": "Ready",
            "status": ready["status"].as_str().unwrap_or("Unknown"),
            "reason": ready["reason"].as_str().filter(|r| !r.is_empty()).unwrap_or("Mirrored"),
            "message": format!("{from}: {}", ready["message"].as_str().unwrap_or_default()),
            "lastTransitionTime": ready["lastTransitionTime"]
                .as_str()
                .unwrap_or(EPOCH),
        }),
        None => json!({
            "type": "Ready",
            "status": "Unknown",
            "reason": "Progressing",
            "message": format!("{from} has no Ready condition yet"),
            "lastTransitionTime": source["metadata"]["creationTimestamp"].as_str().unwrap_or(EPOCH),
        }),
    };
    let mut mirrored = Map::new();
    if let Some(artifact) = status.get("artifact").filter(|a| a.is_object()) {
        mirrored.insert("artifact".into(), artifact.clone());
    }
    mirrored.insert("conditions".into(), json!([condition]));
    json!({
        "apiVersion": sharing::SOURCE_API_VERSION,
        "kind": sharing::EXTERNAL_ARTIFACT,
        "metadata": { "name": name, "namespace": namespace },
        "status": Value::Object(mirrored),
    })
}

/// A transition time for a source that says none (the field is required).
const EPOCH: &str = "1970-01-01T00:00:00Z";

fn copy(origin: &Origin, source: &Value) -> PublishedObject {
    let name = origin.published_name();
    let mut spec = source["spec"].clone();
    if let Some(map) = spec.as_object_mut() {
        // Not implemented by source-controller, and never the tenant's to grant.
        map.remove("accessFrom");
    }
    if origin.entry.copy_secrets {
        for pointer in secret_pointers(&origin.entry.kind) {
            let field = pointer.trim_start_matches("/spec");
            if let Some(Value::String(secret)) = spec.pointer_mut(field) {
                *secret = copied_secret_name(&name, secret);
            }
        }
    }
    let object = json!({
        "apiVersion": source["apiVersion"].as_str().unwrap_or(sharing::SOURCE_API_VERSION),
        "kind": origin.entry.kind,
        "metadata": origin.metadata(&name),
        "spec": spec,
    });
    PublishedObject {
        kind: PublishedKind::Copy,
        namespace: origin.namespace.to_owned(),
        name,
        object,
        status: None,
    }
}

/// `<published name>.<secret name>`: unique to the source, so two shared sources reading one
/// Secret each keep their own copy.
pub fn copied_secret_name(published: &str, secret: &str) -> String {
    format!("{published}.{secret}")
}

fn copied_secret(origin: &Origin, name: &str, secret: &Value) -> PublishedObject {
    let copied = copied_secret_name(&origin.published_name(), name);
    let mut object = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": origin.metadata(&copied),
        "type": secret["type"].as_str().unwrap_or("Opaque"),
    });
    if let Some(data) = secret.get("data").filter(|d| d.is_object()) {
        object["data"] = data.clone();
    }
    PublishedObject {
        kind: PublishedKind::Secret,
        namespace: origin.namespace.to_owned(),
        name: copied,
        object,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn policy(extra: &str) -> Policy {
        Policy::parse(
            &format!(
                "tenants:
  - {{name: team-a, namespaces: [team-a]}}
  - {{name: team-b, namespaces: [team-b]}}
sharedSources:
  - {{kind: OCIRepository, namespace: flux-system, name: podinfo, tenants: [team-a]}}
  - {{kind: HelmRepository, namespace: flux-system, name: bitnami, namespaces: [team-*]{extra}}}
"
            ),
            "p.yaml",
        )
        .unwrap()
    }

    fn oci() -> Value {
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "OCIRepository",
            "metadata": {"name": "podinfo", "namespace": "flux-system", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"url": "oci://ghcr.io/stefanprodan/charts/podinfo", "interval": "10m", "secretRef": {"name": "ghcr"}},
            "status": {
                "artifact": {
                    "digest": "sha256:aaaa", "lastUpdateTime": "2026-01-01T00:01:00Z",
                    "path": "ocirepository/flux-system/podinfo/aaaa.tar.gz",
                    "revision": "6.8.0@sha256:aaaa", "size": 1234,
                    "url": "http://source-controller.flux-system.svc.cluster.local./ocirepository/flux-system/podinfo/aaaa.tar.gz"
                },
                "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "stored artifact for digest 'aaaa'", "lastTransitionTime": "2026-01-01T00:01:00Z", "observedGeneration": 3}]
            }
        })
    }

    fn helm_repository() -> Value {
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "HelmRepository",
            "metadata": {"name": "bitnami", "namespace": "flux-system"},
            "spec": {
                "url": "https://charts.example.com/bitnami", "interval": "1h",
                "secretRef": {"name": "bitnami-auth"}, "certSecretRef": {"name": "bitnami-ca"},
                "accessFrom": {"namespaceSelectors": [{"matchLabels": {}}]}
            },
            "status": {"artifact": {"digest": "sha256:bbbb", "revision": "sha256:bbbb", "path": "x", "url": "http://x", "lastUpdateTime": "2026-01-01T00:00:00Z"}}
        })
    }

    fn helm_release(namespace: &str, name: &str, chart: Value) -> Value {
        json!({
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}")},
            "spec": chart,
        })
    }

    fn kustomization(namespace: &str, source_ref: Value) -> Value {
        json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": namespace, "uid": format!("uid-{namespace}-apps")},
            "spec": {"sourceRef": source_ref, "path": "./", "interval": "5m"},
        })
    }

    fn run(
        policy: &Policy,
        entry: usize,
        source: &Value,
        referrers: &[Value],
    ) -> Vec<PublishedObject> {
        let secrets = BTreeMap::from([
            (
                "bitnami-auth".to_owned(),
                json!({"type": "Opaque", "data": {"password": "cGFzcw=="}}),
            ),
            (
                "bitnami-ca".to_owned(),
                json!({"type": "Opaque", "data": {"ca.crt": "Y2E="}}),
            ),
        ]);
        desired(&Inputs {
            policy,
            entry,
            source: Some(source),
            referrers,
            secrets: &secrets,
        })
    }

    #[test]
    fn a_chart_ref_to_a_shared_oci_repository_gets_an_external_artifact_mirroring_it() {
        let policy = policy("");
        let written = helm_release(
            "team-a",
            "podinfo",
            json!({"chartRef": {"kind": "OCIRepository", "name": "podinfo", "namespace": "flux-system"}}),
        );
        let published = run(&policy, 0, &oci(), &[written]);
        assert_eq!(published.len(), 1, "{published:#?}");
        let ea = &published[0];
        assert_eq!(ea.kind, PublishedKind::ExternalArtifact);
        assert_eq!(
            (ea.namespace.as_str(), ea.name.as_str()),
            ("team-a", "flux-system.podinfo")
        );
        assert_eq!(ea.object["kind"], "ExternalArtifact");
        assert_eq!(
            ea.object["spec"]["sourceRef"],
            json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository", "name": "podinfo", "namespace": "flux-system"})
        );
        assert_eq!(
            ea.object["metadata"]["labels"][SHARED_SOURCE_LABEL],
            "flux-system.podinfo"
        );
        assert_eq!(
            ea.object["metadata"]["annotations"][SHARED_FROM_ANNOTATION],
            "OCIRepository flux-system/podinfo"
        );
        assert_eq!(
            ea.object["metadata"]["annotations"][POLICY_ENTRY_ANNOTATION],
            "sharedSources[0]"
        );
        assert_eq!(
            ea.object["metadata"]["ownerReferences"],
            json!([{"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease", "name": "podinfo", "uid": "uid-team-a-podinfo"}])
        );
        let status = &ea.status.as_ref().unwrap()["status"];
        assert_eq!(status["artifact"], oci()["status"]["artifact"]);
        assert_eq!(status["conditions"][0]["status"], "True");
        assert_eq!(
            status["conditions"][0]["lastTransitionTime"],
            "2026-01-01T00:01:00Z"
        );
        // The source's observedGeneration is its own, not the ExternalArtifact's.
        assert!(status["conditions"][0].get("observedGeneration").is_none());
        // An OCIRepository's credentials stay where they are: an artifact needs none.
        assert!(ea.object.get("data").is_none());
    }

    #[test]
    fn the_rewritten_reference_keeps_its_published_object_and_others_do_not() {
        let policy = policy("");
        let rewritten = helm_release(
            "team-a",
            "podinfo",
            json!({"chartRef": {"kind": "ExternalArtifact", "name": "flux-system.podinfo", "namespace": "team-a"}}),
        );
        // team-b is not in entry 0; a HelmRelease there gets nothing, written either way.
        let other_tenant = helm_release(
            "team-b",
            "podinfo",
            json!({"chartRef": {"kind": "OCIRepository", "name": "podinfo", "namespace": "flux-system"}}),
        );
        let unrelated = helm_release(
            "team-a",
            "mine",
            json!({"chartRef": {"kind": "OCIRepository", "name": "podinfo"}}),
        );
        let published = run(&policy, 0, &oci(), &[rewritten, other_tenant, unrelated]);
        let places: Vec<_> = published
            .iter()
            .map(|p| (p.namespace.as_str(), p.name.as_str()))
            .collect();
        assert_eq!(places, [("team-a", "flux-system.podinfo")]);
    }

    #[test]
    fn a_new_revision_changes_only_the_status() {
        let policy = policy("");
        let referrer = kustomization(
            "team-a",
            json!({"kind": "OCIRepository", "name": "podinfo", "namespace": "flux-system"}),
        );
        let before = run(&policy, 0, &oci(), std::slice::from_ref(&referrer));
        let mut newer = oci();
        newer["status"]["artifact"]["revision"] = json!("6.9.0@sha256:cccc");
        newer["status"]["artifact"]["digest"] = json!("sha256:cccc");
        let after = run(&policy, 0, &newer, &[referrer]);
        assert_eq!(before[0].object, after[0].object);
        assert_eq!(
            after[0].status.as_ref().unwrap()["status"]["artifact"]["revision"],
            "6.9.0@sha256:cccc"
        );
    }

    #[test]
    fn a_chart_source_ref_to_a_helm_repository_gets_a_copy_without_its_secrets() {
        let policy = policy("");
        let referrer = helm_release(
            "team-b",
            "redis",
            json!({"chart": {"spec": {"chart": "redis", "sourceRef": {"kind": "HelmRepository", "name": "bitnami", "namespace": "flux-system"}}}}),
        );
        let published = run(&policy, 1, &helm_repository(), &[referrer]);
        assert_eq!(published.len(), 1, "{published:#?}");
        let copy = &published[0];
        assert_eq!(copy.kind, PublishedKind::Copy);
        assert_eq!(copy.object["kind"], "HelmRepository");
        assert_eq!(
            (copy.namespace.as_str(), copy.name.as_str()),
            ("team-b", "flux-system.bitnami")
        );
        assert_eq!(
            copy.object["spec"]["url"],
            "https://charts.example.com/bitnami"
        );
        // Without copySecrets the copy names the same Secrets, which nothing copies.
        assert_eq!(copy.object["spec"]["secretRef"]["name"], "bitnami-auth");
        assert!(copy.object["spec"].get("accessFrom").is_none());
        assert!(copy.status.is_none());
    }

    #[test]
    fn copy_secrets_copies_each_secret_the_source_reads_under_its_own_name() {
        let policy = policy(", copySecrets: true");
        let referrer = helm_release(
            "team-b",
            "redis",
            json!({"chart": {"spec": {"chart": "redis", "sourceRef": {"kind": "HelmRepository", "name": "flux-system.bitnami"}}}}),
        );
        let published = run(&policy, 1, &helm_repository(), &[referrer]);
        let kinds: Vec<_> = published
            .iter()
            .map(|p| (p.kind, p.name.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (PublishedKind::Copy, "flux-system.bitnami"),
                (PublishedKind::Secret, "flux-system.bitnami.bitnami-auth"),
                (PublishedKind::Secret, "flux-system.bitnami.bitnami-ca"),
            ]
        );
        assert_eq!(
            published[0].object["spec"]["secretRef"]["name"],
            "flux-system.bitnami.bitnami-auth"
        );
        assert_eq!(
            published[0].object["spec"]["certSecretRef"]["name"],
            "flux-system.bitnami.bitnami-ca"
        );
        assert_eq!(published[1].object["data"], json!({"password": "cGFzcw=="}));
        assert_eq!(
            published[1].object["metadata"]["labels"][SHARED_SOURCE_KIND_LABEL],
            "HelmRepository"
        );
    }

    #[test]
    fn nothing_is_published_without_a_referrer_a_source_or_a_usable_field() {
        let policy = policy("");
        assert!(run(&policy, 1, &helm_repository(), &[]).is_empty());
        // A HelmRepository read through chartRef: no form Flux accepts.
        let chart_ref = helm_release(
            "team-a",
            "x",
            json!({"chartRef": {"kind": "HelmRepository", "name": "bitnami", "namespace": "flux-system"}}),
        );
        assert!(run(&policy, 1, &helm_repository(), &[chart_ref]).is_empty());
        // A referrer being deleted no longer holds the copy.
        let mut leaving = kustomization(
            "team-a",
            json!({"kind": "OCIRepository", "name": "podinfo", "namespace": "flux-system"}),
        );
        leaving["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(run(&policy, 0, &oci(), &[leaving]).is_empty());
        let missing = desired(&Inputs {
            policy: &policy,
            entry: 0,
            source: None,
            referrers: &[kustomization(
                "team-a",
                json!({"kind": "OCIRepository", "name": "podinfo", "namespace": "flux-system"}),
            )],
            secrets: &BTreeMap::new(),
        });
        assert!(missing.is_empty());
    }

    #[test]
    fn secret_names_are_read_from_the_kinds_own_fields() {
        assert_eq!(
            secret_names("HelmRepository", &helm_repository()),
            ["bitnami-auth", "bitnami-ca"]
        );
        assert_eq!(
            secret_names(
                "Bucket",
                &json!({"spec": {"secretRef": {"name": "a"}, "sts": {"secretRef": {"name": "b"}, "certSecretRef": {"name": "a"}}}})
            ),
            ["a", "b"]
        );
        assert!(secret_names("GitRepository", &json!({"spec": {"url": "https://x"}})).is_empty());
    }
}
