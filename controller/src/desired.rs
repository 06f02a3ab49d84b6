//! What a FluxConfig should have written: a pure function of the FluxConfig and the policy's
//! default service account, with no I/O. The reconciler applies the result; tests judge it with
//! the fluxfence engine.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use serde_json::{Value, json};

use crate::crd::{
    API_VERSION, FluxConfig, FluxConfigSpec, GitRepositorySource, KIND, KustomizationEntry, Scope,
    SourceKind,
};
use crate::owned::{
    CONFIG_LABEL, CONFIG_NAMESPACE_LABEL, DEFAULT_SERVICE_ACCOUNT_LABEL, OwnedKind,
};

/// Flux's own default: Azure's `syncInterval` and `timeout` default to ten minutes.
const DEFAULT_INTERVAL: &str = "10m";

/// One object to apply, in the FluxConfig's namespace (or cluster-scoped).
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredObject {
    pub kind: OwnedKind,
    pub name: String,
    pub body: Value,
}

/// How the source authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Public source: no Secret.
    None,
    /// The user's own Secret, used as it is.
    Local(String),
    /// An SSH URL without a `localAuthRef`: the controller keeps a generated key pair in this
    /// Secret, with these known_hosts.
    GeneratedSsh {
        secret_name: String,
        known_hosts: String,
    },
}

/// Everything a valid FluxConfig should have written, in apply order, except the generated SSH
/// Secret, whose key is not a function of the spec (see [`ssh_secret`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub objects: Vec<DesiredObject>,
    pub auth: Auth,
}

impl Desired {
    /// The names that should exist, per kind: what pruning keeps.
    pub fn names(&self) -> BTreeMap<OwnedKind, BTreeSet<String>> {
        let mut names: BTreeMap<OwnedKind, BTreeSet<String>> = BTreeMap::new();
        for object in &self.objects {
            names
                .entry(object.kind)
                .or_default()
                .insert(object.name.clone());
        }
        if let Auth::GeneratedSsh { secret_name, .. } = &self.auth {
            names
                .entry(OwnedKind::Secret)
                .or_default()
                .insert(secret_name.clone());
        }
        names
    }
}

/// A spec the CRD's rules let through but the controller cannot carry out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Invalid {
    /// CamelCase, for the Ready condition's reason.
    pub reason: &'static str,
    /// What to change.
    pub message: String,
}

/// The settings the desired objects depend on besides the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The policy's default service account (`flux-applier`): created in the FluxConfig's
    /// namespace and impersonated by every Kustomization.
    pub service_account: String,
}

/// The name of the generated auth Secret of a FluxConfig.
pub fn auth_secret_name(config: &str) -> String {
    format!("{config}-auth")
}

/// The name of a `scope: cluster` FluxConfig's ClusterRoleBinding: cluster-wide, so it carries
/// the namespace too.
pub fn cluster_role_binding_name(namespace: &str, config: &str) -> String {
    format!("fluxfence-{namespace}-{config}")
}

/// The Kustomization written for entry `entry` of FluxConfig `config`.
pub fn kustomization_name(config: &str, entry: &str) -> String {
    format!("{config}-{entry}")
}

/// Works out what `config` should have written.
pub fn desired(config: &FluxConfig, settings: &Settings) -> Result<Desired, Invalid> {
    let spec = &config.spec;
    check_kustomization_names(spec)?;
    check_depends_on_cycles(spec)?;
    let auth = auth(config)?;
    let meta = Meta::of(config)?;

    let mut objects = vec![service_account(&meta, settings)];
    objects.push(match spec.scope {
        Scope::Namespace => role_binding(&meta, settings),
        Scope::Cluster => cluster_role_binding(&meta, settings),
    });
    objects.push(source(&meta, spec, &auth)?);
    for (entry, kustomization) in &spec.kustomizations {
        objects.push(flux_kustomization(
            &meta,
            spec,
            entry,
            kustomization,
            settings,
        ));
    }
    Ok(Desired { objects, auth })
}

/// The auth Secret holding a generated key pair.
pub fn ssh_secret(
    config: &FluxConfig,
    secret_name: &str,
    private_key: &str,
    public_key: &str,
    known_hosts: &str,
) -> Result<DesiredObject, Invalid> {
    let meta = Meta::of(config)?;
    Ok(DesiredObject {
        kind: OwnedKind::Secret,
        name: secret_name.to_owned(),
        body: json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta.namespaced(secret_name),
            "type": "Opaque",
            // `data`, not `stringData`: the API server folds stringData into data, so an
            // apply of stringData never matches what is stored and is never a no-op.
            "data": {
                "identity": base64(private_key),
                "identity.pub": base64(public_key),
                "known_hosts": base64(known_hosts),
            },
        }),
    })
}

fn base64(text: &str) -> Value {
    serde_json::to_value(k8s_openapi::ByteString(text.as_bytes().to_vec())).unwrap_or(Value::Null)
}

/// The FluxConfig's identity as every object it owns records it.
struct Meta {
    config: String,
    namespace: String,
    uid: String,
}

impl Meta {
    fn of(config: &FluxConfig) -> Result<Meta, Invalid> {
        let namespace = config.namespace().ok_or_else(|| Invalid {
            reason: "NoNamespace",
            message: "a FluxConfig is namespaced: create it in the configuration namespace".into(),
        })?;
        // The API server sets the uid; a FluxConfig read from it always has one.
        let uid = config.uid().ok_or_else(|| Invalid {
            reason: "NoUid",
            message: "the FluxConfig has no metadata.uid: apply it to the API server first".into(),
        })?;
        Ok(Meta {
            config: config.name_any(),
            namespace,
            uid,
        })
    }

    fn owner_reference(&self) -> Value {
        json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.config,
            "uid": self.uid,
            "controller": true,
            "blockOwnerDeletion": true,
        })
    }

    fn namespaced(&self, name: &str) -> Value {
        json!({
            "name": name,
            "namespace": self.namespace,
            "labels": { CONFIG_LABEL: self.config },
            "ownerReferences": [self.owner_reference()],
        })
    }

    /// Cluster-scoped objects may not name a namespaced owner (the garbage collector treats the
    /// reference as unresolvable): labels say whose it is, and a finalizer deletes it.
    fn cluster_scoped(&self, name: &str) -> Value {
        json!({
            "name": name,
            "labels": {
                CONFIG_LABEL: self.config,
                CONFIG_NAMESPACE_LABEL: self.namespace,
            },
        })
    }
}

/// The default service account is the namespace's, not one FluxConfig's: several FluxConfigs
/// (and the chart's own applier) share it. It carries no owner reference and no config label —
/// one apply would replace another's (they share the field manager), and deleting one
/// FluxConfig must not take the account from the others — so it is never pruned.
fn service_account(meta: &Meta, settings: &Settings) -> DesiredObject {
    DesiredObject {
        kind: OwnedKind::ServiceAccount,
        name: settings.service_account.clone(),
        body: json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": settings.service_account,
                "namespace": meta.namespace,
                // Not app.kubernetes.io/managed-by: the chart's own applier account carries
                // Helm's value there, and Helm refuses to upgrade an object whose value changed.
                "labels": { DEFAULT_SERVICE_ACCOUNT_LABEL: "true" },
            },
        }),
    }
}

fn subject(meta: &Meta, settings: &Settings) -> Value {
    json!([{
        "kind": "ServiceAccount",
        "name": settings.service_account,
        "namespace": meta.namespace,
    }])
}

/// `scope: namespace`: the ClusterRole `admin`, granted in this namespace only.
fn role_binding(meta: &Meta, settings: &Settings) -> DesiredObject {
    DesiredObject {
        kind: OwnedKind::RoleBinding,
        name: meta.config.clone(),
        body: json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta.namespaced(&meta.config),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "admin",
            },
            "subjects": subject(meta, settings),
        }),
    }
}

/// `scope: cluster`: `cluster-admin`, as Azure grants a cluster-scoped configuration.
fn cluster_role_binding(meta: &Meta, settings: &Settings) -> DesiredObject {
    let name = cluster_role_binding_name(&meta.namespace, &meta.config);
    DesiredObject {
        kind: OwnedKind::ClusterRoleBinding,
        body: json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta.cluster_scoped(&name),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": subject(meta, settings),
        }),
        name,
    }
}

fn auth(config: &FluxConfig) -> Result<Auth, Invalid> {
    let spec = &config.spec;
    let local = match spec.source_kind {
        SourceKind::GitRepository => spec
            .git_repository
            .as_ref()
            .and_then(|g| g.local_auth_ref.clone()),
        SourceKind::Bucket => spec.bucket.as_ref().and_then(|b| b.local_auth_ref.clone()),
        SourceKind::OciRepository => spec
            .oci_repository
            .as_ref()
            .and_then(|o| o.local_auth_ref.clone()),
    };
    if let Some(secret) = local {
        return Ok(Auth::Local(secret));
    }
    match (spec.source_kind, &spec.git_repository) {
        (SourceKind::GitRepository, Some(git)) if git.url.starts_with("ssh://") => {
            Ok(Auth::GeneratedSsh {
                secret_name: auth_secret_name(&config.name_any()),
                known_hosts: known_hosts(git)?,
            })
        }
        _ => Ok(Auth::None),
    }
}

/// The known_hosts of an SSH source, checked line by line: Flux refuses the whole Secret when
/// one line is unreadable, and says so only in the GitRepository's status.
fn known_hosts(git: &GitRepositorySource) -> Result<String, Invalid> {
    let Some(text) = git.ssh_known_hosts.as_deref() else {
        return Err(Invalid {
            reason: "MissingKnownHosts",
            message: "an ssh:// URL needs spec.gitRepository.sshKnownHosts: set it to the output of `ssh-keyscan HOST`".into(),
        });
    };
    let mut entries = 0;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        line.parse::<ssh_key::known_hosts::Entry>().map_err(|error| Invalid {
            reason: "InvalidKnownHosts",
            message: format!(
                "spec.gitRepository.sshKnownHosts line {}: {error}: each line is `HOST KEYTYPE KEY`, as `ssh-keyscan HOST` prints it",
                number + 1
            ),
        })?;
        entries += 1;
    }
    if entries == 0 {
        return Err(Invalid {
            reason: "InvalidKnownHosts",
            message: "spec.gitRepository.sshKnownHosts holds no host key: set it to the output of `ssh-keyscan HOST`".into(),
        });
    }
    Ok(text.to_owned())
}

fn secret_ref(auth: &Auth) -> Option<Value> {
    match auth {
        Auth::None => None,
        Auth::Local(name) => Some(json!({ "name": name })),
        Auth::GeneratedSsh { secret_name, .. } => Some(json!({ "name": secret_name })),
    }
}

fn source(meta: &Meta, spec: &FluxConfigSpec, auth: &Auth) -> Result<DesiredObject, Invalid> {
    let missing = |field: &str| Invalid {
        reason: "MissingSource",
        message: format!(
            "spec.sourceKind is {:?}: set spec.{field}",
            spec.source_kind
        ),
    };
    let (kind, mut source_spec) = match spec.source_kind {
        SourceKind::GitRepository => {
            let git = spec
                .git_repository
                .as_ref()
                .ok_or_else(|| missing("gitRepository"))?;
            let mut s = json!({
                "url": git.url,
                "interval": git.sync_interval.as_deref().unwrap_or(DEFAULT_INTERVAL),
                "timeout": git.timeout.as_deref().unwrap_or(DEFAULT_INTERVAL),
            });
            if let Some(reference) = &git.repository_ref {
                s["ref"] = serde_json::to_value(reference).unwrap_or(Value::Null);
            }
            (OwnedKind::GitRepository, s)
        }
        SourceKind::Bucket => {
            let bucket = spec.bucket.as_ref().ok_or_else(|| missing("bucket"))?;
            // Flux's Bucket takes the endpoint without its scheme; `insecure` says http.
            let endpoint = bucket
                .url
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            (
                OwnedKind::Bucket,
                json!({
                    "provider": "generic",
                    "bucketName": bucket.bucket_name,
                    "endpoint": endpoint,
                    "insecure": bucket.insecure,
                    "interval": bucket.sync_interval.as_deref().unwrap_or(DEFAULT_INTERVAL),
                    "timeout": bucket.timeout.as_deref().unwrap_or(DEFAULT_INTERVAL),
                }),
            )
        }
        SourceKind::OciRepository => {
            let oci = spec
                .oci_repository
                .as_ref()
                .ok_or_else(|| missing("ociRepository"))?;
            let mut s = json!({
                "url": oci.url,
                "interval": oci.sync_interval.as_deref().unwrap_or(DEFAULT_INTERVAL),
                "timeout": oci.timeout.as_deref().unwrap_or(DEFAULT_INTERVAL),
            });
            if let Some(reference) = &oci.reference {
                s["ref"] = serde_json::to_value(reference).unwrap_or(Value::Null);
            }
            (OwnedKind::OciRepository, s)
        }
    };
    source_spec["suspend"] = Value::Bool(spec.suspend);
    if let Some(reference) = secret_ref(auth) {
        source_spec["secretRef"] = reference;
    }
    Ok(DesiredObject {
        kind,
        name: meta.config.clone(),
        body: json!({
            "apiVersion": kind.api_version(),
            "kind": kind.kind(),
            "metadata": meta.namespaced(&meta.config),
            "spec": source_spec,
        }),
    })
}

fn flux_kustomization(
    meta: &Meta,
    spec: &FluxConfigSpec,
    entry: &str,
    kustomization: &KustomizationEntry,
    settings: &Settings,
) -> DesiredObject {
    let name = kustomization_name(&meta.config, entry);
    let source_kind = match spec.source_kind {
        SourceKind::GitRepository => OwnedKind::GitRepository,
        SourceKind::Bucket => OwnedKind::Bucket,
        SourceKind::OciRepository => OwnedKind::OciRepository,
    };
    let mut k = json!({
        "interval": kustomization.sync_interval.as_deref().unwrap_or(DEFAULT_INTERVAL),
        "timeout": kustomization.timeout.as_deref().unwrap_or(DEFAULT_INTERVAL),
        "path": kustomization.path.as_deref().unwrap_or("./"),
        "prune": kustomization.prune,
        "force": kustomization.force,
        "wait": kustomization.wait,
        "suspend": spec.suspend,
        // Same namespace as the source: no `namespace`, as `--no-cross-namespace-refs` wants.
        "sourceRef": { "kind": source_kind.kind(), "name": meta.config },
        "serviceAccountName": settings.service_account,
    });
    if let Some(retry) = &kustomization.retry_interval {
        k["retryInterval"] = Value::String(retry.clone());
    }
    if let Some(target) = &kustomization.target_namespace {
        k["targetNamespace"] = Value::String(target.clone());
    }
    if !kustomization.depends_on.is_empty() {
        k["dependsOn"] = kustomization
            .depends_on
            .iter()
            .map(|sibling| json!({ "name": kustomization_name(&meta.config, sibling) }))
            .collect();
    }
    if let Some(post_build) = &kustomization.post_build {
        k["postBuild"] = serde_json::to_value(post_build).unwrap_or(Value::Null);
    }
    DesiredObject {
        kind: OwnedKind::Kustomization,
        body: json!({
            "apiVersion": OwnedKind::Kustomization.api_version(),
            "kind": "Kustomization",
            "metadata": meta.namespaced(&name),
            "spec": k,
        }),
        name,
    }
}

/// Entry names become part of object names: DNS labels.
fn check_kustomization_names(spec: &FluxConfigSpec) -> Result<(), Invalid> {
    for name in spec.kustomizations.keys() {
        let bytes = name.as_bytes();
        let label_char = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
        let valid = !bytes.is_empty()
            && bytes.len() <= 63
            && bytes.iter().all(label_char)
            && bytes.first() != Some(&b'-')
            && bytes.last() != Some(&b'-');
        if !valid {
            return Err(Invalid {
                reason: "InvalidKustomizationName",
                message: format!(
                    "spec.kustomizations key {name:?} is not a DNS label: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
                ),
            });
        }
    }
    Ok(())
}

/// `dependsOn` naming siblings is the CRD's rule; a cycle among them is not something CEL can
/// see, and Flux would leave every Kustomization in it waiting forever.
fn check_depends_on_cycles(spec: &FluxConfigSpec) -> Result<(), Invalid> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        spec: &'a FluxConfigSpec,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Result<(), Invalid> {
        match marks.get(name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let start = path.iter().position(|n| *n == name).unwrap_or(0);
                let mut cycle: Vec<&str> = path[start..].to_vec();
                cycle.push(name);
                return Err(Invalid {
                    reason: "DependencyCycle",
                    message: format!(
                        "spec.kustomizations dependsOn forms a cycle ({}): remove one of these dependsOn entries",
                        cycle.join(" -> ")
                    ),
                });
            }
            None => {}
        }
        marks.insert(name, Mark::Visiting);
        path.push(name);
        if let Some(entry) = spec.kustomizations.get(name) {
            for dependency in &entry.depends_on {
                visit(dependency, spec, marks, path)?;
            }
        }
        path.pop();
        marks.insert(name, Mark::Done);
        Ok(())
    }
    let mut marks = BTreeMap::new();
    for name in spec.kustomizations.keys() {
        visit(name, spec, &mut marks, &mut Vec::new())?;
    }
    Ok(())
}
