//! The `FluxConfig` custom resource (`fluxconfigs.fluxfence.dev`, `v1alpha1`).
//!
//! Field names follow the parameters of Azure's `fluxConfigurations` so that a user of
//! `az k8s-configuration flux` recognises them. Every rule that CEL can check is in the CRD as an
//! `x-kubernetes-validations` entry, so the API server refuses such a spec before the controller
//! sees it; [`crate::desired`] refuses the rest (a `dependsOn` cycle, an entry name that is not
//! a DNS label, unreadable known hosts). Rules stay within the API server's CEL cost budget:
//! every string a rule reads has a `maxLength`, every list and map a bound.

use std::collections::BTreeMap;

use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "fluxfence.dev";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "FluxConfig";
pub const API_VERSION: &str = "fluxfence.dev/v1alpha1";

/// Kustomizations per FluxConfig; keeps the CEL cost of the `dependsOn` rule bounded.
pub const MAX_KUSTOMIZATIONS: usize = 64;

/// One GitOps configuration: a source and the Flux Kustomizations applied from it, all in the
/// FluxConfig's namespace (the configuration namespace, e.g. `cluster-config`).
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "fluxfence.dev",
    version = "v1alpha1",
    kind = "FluxConfig",
    plural = "fluxconfigs",
    shortname = "fc",
    namespaced,
    status = "FluxConfigStatus",
    doc = "A tenant's GitOps configuration: the source, its auth Secret, the service account and RBAC Flux applies it as, and one Flux Kustomization per entry, all written by fluxfence-controller in this namespace.",
    printcolumn = r#"{"name":"Compliance","type":"string","jsonPath":".status.complianceState"}"#,
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".spec.sourceKind"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.sourceSyncedCommitId"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("size(self.metadata.name) <= 63").message("metadata.name is also the value of the fluxfence.dev/config label: use at most 63 characters"),
    validation = Rule::new("!has(self.spec.kustomizations) || self.spec.kustomizations.all(k, size(self.metadata.name) + 1 + size(k) <= 253)").message("each Kustomization is named <config>-<name>, at most 253 characters: shorten metadata.name or the kustomization's name"),
)]
#[x_kube(
    validation = Rule::new("[has(self.gitRepository), has(self.bucket), has(self.ociRepository)].filter(x, x).size() == 1").message("set exactly one source: spec.gitRepository, spec.bucket or spec.ociRepository"),
    validation = Rule::new("self.sourceKind == 'GitRepository' ? has(self.gitRepository) : self.sourceKind == 'Bucket' ? has(self.bucket) : has(self.ociRepository)").message("spec.sourceKind names the source that is set: GitRepository with spec.gitRepository, Bucket with spec.bucket, OCIRepository with spec.ociRepository"),
)]
#[serde(rename_all = "camelCase")]
pub struct FluxConfigSpec {
    /// `namespace`: the Kustomizations are applied as the default service account bound to the
    /// ClusterRole `admin` in this namespace only. `cluster`: bound to `cluster-admin`.
    #[serde(default)]
    pub scope: Scope,
    /// Suspends the source and every Kustomization (`spec.suspend: true` on each).
    #[serde(default)]
    pub suspend: bool,
    #[serde(default)]
    pub source_kind: SourceKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_repository: Option<GitRepositorySource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<BucketSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci_repository: Option<OciRepositorySource>,
    /// One Flux Kustomization per entry, named `<config>-<name>`.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 64))]
    // Map keys have no length limit a schema can state, so CEL rules that read them char by
    // char (a name pattern) would exceed the API server's cost budget: the key format is the
    // reconciler's check. Membership is cheap.
    #[x_kube(
        validation = Rule::new("self.all(k, !has(self[k].dependsOn) || self[k].dependsOn.all(d, d in self))").message("dependsOn names another kustomization of this FluxConfig (a key of spec.kustomizations)"),
    )]
    pub kustomizations: BTreeMap<String, KustomizationEntry>,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Cluster,
    #[default]
    Namespace,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SourceKind {
    #[default]
    GitRepository,
    Bucket,
    #[serde(rename = "OCIRepository")]
    OciRepository,
}

/// A Flux `GitRepository`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("!self.url.startsWith('ssh://') || has(self.sshKnownHosts) || has(self.localAuthRef)").message("an ssh:// URL needs spec.gitRepository.sshKnownHosts (the output of `ssh-keyscan HOST`), or a localAuthRef Secret that holds known_hosts"),
    validation = Rule::new("!has(self.httpsUser) || (self.url.startsWith('https://') && has(self.localAuthRef))").message("httpsUser needs an https:// URL and a localAuthRef Secret holding `username` and `password`"),
)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositorySource {
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://') || self.startsWith('ssh://')").message("gitRepository.url starts with https://, http:// or ssh:// (write git@github.com:org/repo as ssh://git@github.com/org/repo)"))]
    #[schemars(extend("maxLength" = 2048))]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_ref: Option<RepositoryRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = DURATION_PATTERN))]
    pub sync_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = DURATION_PATTERN))]
    pub timeout: Option<String>,
    /// known_hosts lines for the SSH host (`ssh-keyscan HOST`), stored in the auth Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 65536))]
    pub ssh_known_hosts: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 253))]
    pub https_user: Option<String>,
    /// A Secret in this namespace used as the source's auth Secret as it is; nothing is generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 253))]
    pub local_auth_ref: Option<String>,
}

/// Which revision of the repository to fetch: exactly one of the four.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("[has(self.branch), has(self.tag), has(self.semver), has(self.commit)].filter(x, x).size() == 1").message("repositoryRef sets exactly one of branch, tag, semver, commit"))]
#[serde(rename_all = "camelCase")]
pub struct RepositoryRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// A Flux `Bucket` (S3-compatible, provider `generic`).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!self.url.startsWith('http://') || (has(self.insecure) && self.insecure)").message("an http:// bucket URL needs spec.bucket.insecure: true"))]
#[serde(rename_all = "camelCase")]
pub struct BucketSource {
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("bucket.url is the endpoint, starting with https:// or http://"))]
    #[schemars(extend("maxLength" = 2048))]
    pub url: String,
    #[schemars(extend("maxLength" = 253))]
    pub bucket_name: String,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = DURATION_PATTERN))]
    pub sync_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = DURATION_PATTERN))]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 253))]
    pub local_auth_ref: Option<String>,
}

/// A Flux `OCIRepository`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OciRepositorySource {
    #[x_kube(validation = Rule::new("self.startsWith('oci://')").message("ociRepository.url starts with oci://"))]
    #[schemars(extend("maxLength" = 2048))]
    pub url: String,
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<OciRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = DURATION_PATTERN))]
    pub sync_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = DURATION_PATTERN))]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 253))]
    pub local_auth_ref: Option<String>,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("[has(self.tag), has(self.semver), has(self.digest)].filter(x, x).size() == 1").message("ref sets exactly one of tag, semver, digest"))]
#[serde(rename_all = "camelCase")]
pub struct OciRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// One Flux Kustomization applied from the source.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KustomizationEntry {
    /// Path in the source; `..` is refused (it would leave the artifact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 4096))]
    #[x_kube(validation = Rule::new("!self.matches('(^|/)[.][.](/|$)')").message("path stays inside the source: remove the `..` segments"))]
    pub path: Option<String>,
    /// Names of sibling kustomizations (keys of spec.kustomizations) applied first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 64, "items" = {"type": "string", "maxLength": 63}))]
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = DURATION_PATTERN))]
    pub sync_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = DURATION_PATTERN))]
    pub retry_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = DURATION_PATTERN))]
    pub timeout: Option<String>,
    #[serde(default)]
    pub prune: bool,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub wait: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 63))]
    pub target_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_build: Option<PostBuild>,
}

/// Flux's post-build variable substitution.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PostBuild {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub substitute: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub substitute_from: Vec<SubstituteReference>,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SubstituteReference {
    #[x_kube(validation = Rule::new("self == 'ConfigMap' || self == 'Secret'").message("substituteFrom kind is ConfigMap or Secret"))]
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub optional: bool,
}

/// Go durations as Flux accepts them (`1m`, `1h30m`, `500ms`).
const DURATION_PATTERN: &str = "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$";

/// What the controller reports, as Azure's fluxConfigurations do.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FluxConfigStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance_state: Option<ComplianceState>,
    /// One entry per Flux object the FluxConfig owns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<ObjectStatus>,
    /// The source's `status.artifact.revision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_synced_commit_id: Option<String>,
    /// The generated deploy key, in OpenSSH `authorized_keys` form: add it to the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ComplianceState {
    Compliant,
    #[serde(rename = "Non-Compliant")]
    NonCompliant,
    Pending,
    Suspended,
}

impl ComplianceState {
    pub const ALL: [ComplianceState; 4] = [
        ComplianceState::Compliant,
        ComplianceState::NonCompliant,
        ComplianceState::Pending,
        ComplianceState::Suspended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ComplianceState::Compliant => "Compliant",
            ComplianceState::NonCompliant => "Non-Compliant",
            ComplianceState::Pending => "Pending",
            ComplianceState::Suspended => "Suspended",
        }
    }
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub compliance_state: ComplianceState,
    /// The object's Ready condition's reason and message, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A `metav1.Condition`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The CRD as the chart ships it: YAML, with a header saying where it comes from.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    let body = serde_yaml_ng::to_string(&FluxConfig::crd())?;
    Ok(format!(
        "# Generated by `fluxfence-controller crd`; do not edit (a test compares the two).\n{body}"
    ))
}
