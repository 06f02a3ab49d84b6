//! Shared sources: what a tenant references instead of a source the policy shares with it.
//!
//! Flux refuses every cross-namespace source reference under `--no-cross-namespace-refs`, so a
//! shared source is useful to a tenant only through an object in the tenant's own namespace.
//! `fluxfence-controller` publishes that object; the webhook rewrites a tenant's reference to
//! it; FF101 names it. All three ask this module which object that is, so they cannot disagree.
//!
//! Which form a reference gets follows the Flux CRDs' reference kinds:
//! - Kustomization `spec.sourceRef` (GitRepository, OCIRepository, Bucket, ExternalArtifact)
//!   and HelmRelease `spec.chartRef` (OCIRepository, HelmChart, ExternalArtifact) accept an
//!   **ExternalArtifact**: one whose `status.artifact` mirrors the shared source's, so the
//!   tenant's controllers fetch the artifact source-controller already stored (no second
//!   download, no credentials in the tenant namespace). A HelmRelease `chartRef` needs a chart
//!   tarball as the artifact: an OCIRepository holding a chart has one.
//! - HelmRelease `spec.chart.spec.sourceRef` (HelmRepository, GitRepository, Bucket) accepts no
//!   ExternalArtifact: helm-controller makes a HelmChart in the source's namespace. A **copy**
//!   of the source object, of the same kind, goes into the tenant namespace (its own download;
//!   Secrets it names are copied only with `copySecrets: true`).
//! - Anything else (ImageUpdateAutomation `spec.sourceRef`, which pushes with the source's
//!   credentials; ImagePolicy) is never published: FF101 flags it as for any other source.

use crate::model::FluxObject;
use crate::policy::{Policy, SharedSource};

/// The kind of the published object for references Flux resolves through an artifact.
pub const EXTERNAL_ARTIFACT: &str = "ExternalArtifact";
/// The API version of ExternalArtifact (and of every source kind that can be shared).
pub const SOURCE_API_VERSION: &str = "source.toolkit.fluxcd.io/v1";
/// Source kinds a policy may share.
pub const SHAREABLE_KINDS: [&str; 4] =
    ["GitRepository", "OCIRepository", "Bucket", "HelmRepository"];

/// On every published object: its published name, `<source namespace>.<source name>`.
pub const SHARED_SOURCE_LABEL: &str = "fluxfence.dev/shared-source";
/// On every published object: the shared source's kind.
pub const SHARED_SOURCE_KIND_LABEL: &str = "fluxfence.dev/shared-source-kind";

/// The fields that say where a source object downloads from (FF140's URL fields of the
/// shareable kinds, and what picks a Bucket endpoint's scheme). A copy reaches the place its
/// source reaches when each of these is the same in both.
pub const LOCATION_POINTERS: [&str; 4] = [
    "/spec/url",
    "/spec/endpoint",
    "/spec/sts/endpoint",
    "/spec/insecure",
];

/// Whether `copy` downloads from where `source` does (both JSON objects of the same kind).
pub fn same_location(copy: &serde_json::Value, source: &serde_json::Value) -> bool {
    copy.get("kind") == source.get("kind")
        && LOCATION_POINTERS
            .iter()
            .all(|pointer| copy.pointer(pointer) == source.pointer(pointer))
}

/// How a shared source reaches a tenant namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Form {
    /// An ExternalArtifact whose status mirrors the source's artifact.
    ExternalArtifact,
    /// A copy of the source object, of the same kind.
    Copy,
}

/// The object a tenant references instead of the shared source itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub form: Form,
    pub kind: String,
    pub name: String,
}

/// The form a reference from `referrer_kind` at `pointer` (a JSON pointer such as
/// `/spec/chartRef`) to a source of `source_kind` needs; `None` when Flux can use neither.
pub fn form_for(referrer_kind: &str, pointer: &str, source_kind: &str) -> Option<Form> {
    match (referrer_kind, pointer, source_kind) {
        ("Kustomization", "/spec/sourceRef", "GitRepository" | "OCIRepository" | "Bucket") => {
            Some(Form::ExternalArtifact)
        }
        ("HelmRelease", "/spec/chartRef", "OCIRepository") => Some(Form::ExternalArtifact),
        (
            "HelmRelease",
            "/spec/chart/spec/sourceRef",
            "HelmRepository" | "GitRepository" | "Bucket",
        ) => Some(Form::Copy),
        _ => None,
    }
}

/// The name every published object of a shared source carries in every tenant namespace:
/// `<namespace>.<name>`. Namespaces hold no dots, so no two sources share one, and a tenant's
/// own objects rarely have such names.
pub fn published_name(source_namespace: &str, source_name: &str) -> String {
    format!("{source_namespace}.{source_name}")
}

/// What a reference in the form `form` to the shared `source` points at.
pub fn published(source: &SharedSource, form: Form) -> Published {
    let kind = match form {
        Form::ExternalArtifact => EXTERNAL_ARTIFACT.to_owned(),
        Form::Copy => source.kind.clone(),
    };
    Published {
        form,
        kind,
        name: published_name(&source.namespace, &source.name),
    }
}

/// The policy's answer for one cross-namespace reference to a listed shared source.
#[derive(Clone, Debug, PartialEq)]
pub enum Sharing<'a> {
    /// Shared with the referrer's namespace: reference `published` instead.
    Allowed {
        entry: usize,
        source: &'a SharedSource,
        published: Published,
    },
    /// Listed, but not for this namespace.
    NotForNamespace {
        entry: usize,
        source: &'a SharedSource,
    },
    /// Listed and allowed, but Flux can use no published form for this reference.
    NoForm {
        entry: usize,
        source: &'a SharedSource,
    },
}

impl<'a> Sharing<'a> {
    /// `sharedSources[N] (Kind namespace/name)`, how messages name the policy entry.
    pub fn entry_name(&self) -> String {
        let (entry, source) = match self {
            Sharing::Allowed { entry, source, .. }
            | Sharing::NotForNamespace { entry, source }
            | Sharing::NoForm { entry, source } => (entry, source),
        };
        format!(
            "sharedSources[{entry}] ({} {}/{})",
            source.kind, source.namespace, source.name
        )
    }
}

impl Policy {
    /// The entry listing source `kind` `namespace`/`name`, with its index.
    pub fn shared_source_entry(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<(usize, &SharedSource)> {
        self.shared_sources
            .iter()
            .enumerate()
            .find(|(_, s)| s.kind == kind && s.namespace == namespace && s.name == name)
    }

    /// Whether shared source `source` may be used from `namespace`: a tenant the entry names
    /// owns it, or one of its namespace patterns matches. An entry naming neither tenants nor
    /// namespaces (or tenant `*`) is shared with every namespace.
    pub fn shares_with(&self, source: &SharedSource, namespace: &str) -> bool {
        if namespace == source.namespace {
            return false;
        }
        if source.tenants.is_empty() && source.namespaces.is_empty() {
            return true;
        }
        let tenant = self.tenant_of(namespace).map(|t| t.name.as_str());
        source
            .tenants
            .iter()
            .any(|t| t == "*" || Some(t.as_str()) == tenant)
            || source
                .namespaces
                .iter()
                .any(|p| crate::policy::glob_match(p, namespace))
    }

    /// How the policy treats a reference from `referrer_kind` at `pointer` in `namespace` to
    /// source `kind` `source_namespace`/`name`; `None` when the policy does not list the source.
    pub fn sharing(
        &self,
        referrer_kind: &str,
        pointer: &str,
        kind: &str,
        source_namespace: &str,
        name: &str,
        namespace: &str,
    ) -> Option<Sharing<'_>> {
        let (entry, source) = self.shared_source_entry(kind, source_namespace, name)?;
        if !self.shares_with(source, namespace) {
            return Some(Sharing::NotForNamespace { entry, source });
        }
        Some(match form_for(referrer_kind, pointer, kind) {
            Some(form) => Sharing::Allowed {
                entry,
                source,
                published: published(source, form),
            },
            None => Sharing::NoForm { entry, source },
        })
    }

    /// The entry whose copy `object` says it is, in `namespace`: it carries the published-copy
    /// labels and name of a shared source of its own kind, and the entry shares that source
    /// with `namespace`. This is the object's word only: whoever may write the object may write
    /// its labels. Trust it only knowing who wrote it (the webhook: the request's user) or
    /// having compared it with the source ([`same_location`], the audit).
    pub fn claimed_copy(
        &self,
        object: &FluxObject,
        namespace: &str,
    ) -> Option<(usize, &SharedSource)> {
        let label = |key: &str| {
            object
                .root
                .path(&["metadata", "labels", key])
                .and_then(crate::yaml::Node::as_str)
        };
        let kind = object.kind.as_str();
        if label(SHARED_SOURCE_KIND_LABEL) != Some(kind)
            || label(SHARED_SOURCE_LABEL) != Some(object.name.as_str())
        {
            return None;
        }
        self.shared_sources.iter().enumerate().find(|(_, s)| {
            s.kind == kind
                && published_name(&s.namespace, &s.name) == object.name
                && self.shares_with(s, namespace)
        })
    }

    /// The shared source that a reference in `namespace` to `kind`/`name` in the same namespace
    /// names through its published object, with the form; `None` for any other reference.
    pub fn shared_source_published_as(
        &self,
        referrer_kind: &str,
        pointer: &str,
        kind: &str,
        name: &str,
        namespace: &str,
    ) -> Option<(usize, &SharedSource, Form)> {
        self.shared_sources.iter().enumerate().find_map(|(i, s)| {
            let form = form_for(referrer_kind, pointer, &s.kind)?;
            let published = published(s, form);
            (published.kind == kind && published.name == name && self.shares_with(s, namespace))
                .then_some((i, s, form))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::parse(
            "tenants:
  - {name: team-a, namespaces: [team-a]}
  - {name: team-b, namespaces: [team-b]}
sharedSources:
  - {kind: OCIRepository, namespace: flux-system, name: podinfo}
  - {kind: HelmRepository, namespace: flux-system, name: bitnami, tenants: [team-b], namespaces: [apps-*]}
",
            "p.yaml",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_form_follows_the_reference_kinds_flux_accepts() {
        let cases = [
            (
                "Kustomization",
                "/spec/sourceRef",
                "GitRepository",
                Some(Form::ExternalArtifact),
            ),
            (
                "Kustomization",
                "/spec/sourceRef",
                "OCIRepository",
                Some(Form::ExternalArtifact),
            ),
            (
                "Kustomization",
                "/spec/sourceRef",
                "Bucket",
                Some(Form::ExternalArtifact),
            ),
            (
                "HelmRelease",
                "/spec/chartRef",
                "OCIRepository",
                Some(Form::ExternalArtifact),
            ),
            (
                "HelmRelease",
                "/spec/chart/spec/sourceRef",
                "HelmRepository",
                Some(Form::Copy),
            ),
            (
                "HelmRelease",
                "/spec/chart/spec/sourceRef",
                "GitRepository",
                Some(Form::Copy),
            ),
            // A HelmRepository holds an index, not a chart: no ExternalArtifact can stand for it.
            ("HelmRelease", "/spec/chartRef", "HelmRepository", None),
            ("Kustomization", "/spec/sourceRef", "HelmRepository", None),
            (
                "ImageUpdateAutomation",
                "/spec/sourceRef",
                "GitRepository",
                None,
            ),
        ];
        for (referrer, pointer, kind, form) in cases {
            assert_eq!(
                form_for(referrer, pointer, kind),
                form,
                "{referrer} {pointer} {kind}"
            );
        }
    }

    #[test]
    fn an_entry_shares_by_tenant_name_or_namespace_pattern() {
        let policy = policy();
        let bitnami = &policy.shared_sources[1];
        assert!(policy.shares_with(bitnami, "team-b"));
        assert!(policy.shares_with(bitnami, "apps-web"));
        assert!(!policy.shares_with(bitnami, "team-a"));
        assert!(!policy.shares_with(bitnami, "apps"));
        // No tenants and no namespaces: everyone, but never its own namespace.
        let podinfo = &policy.shared_sources[0];
        assert!(policy.shares_with(podinfo, "team-a"));
        assert!(!policy.shares_with(podinfo, "flux-system"));
    }

    #[test]
    fn sharing_names_the_published_object_or_the_entry_that_refuses() {
        let policy = policy();
        let allowed = policy
            .sharing(
                "HelmRelease",
                "/spec/chartRef",
                "OCIRepository",
                "flux-system",
                "podinfo",
                "team-a",
            )
            .unwrap();
        let Sharing::Allowed { published, .. } = &allowed else {
            panic!("{allowed:?}");
        };
        assert_eq!(
            published,
            &Published {
                form: Form::ExternalArtifact,
                kind: "ExternalArtifact".into(),
                name: "flux-system.podinfo".into()
            }
        );
        let refused = policy
            .sharing(
                "HelmRelease",
                "/spec/chart/spec/sourceRef",
                "HelmRepository",
                "flux-system",
                "bitnami",
                "team-a",
            )
            .unwrap();
        assert!(matches!(refused, Sharing::NotForNamespace { entry: 1, .. }));
        assert_eq!(
            refused.entry_name(),
            "sharedSources[1] (HelmRepository flux-system/bitnami)"
        );
        assert_eq!(
            policy.sharing(
                "Kustomization",
                "/spec/sourceRef",
                "GitRepository",
                "flux-system",
                "other",
                "team-a"
            ),
            None
        );
    }

    #[test]
    fn a_published_reference_is_traced_back_to_its_source() {
        let policy = policy();
        let (entry, _, form) = policy
            .shared_source_published_as(
                "Kustomization",
                "/spec/sourceRef",
                "ExternalArtifact",
                "flux-system.podinfo",
                "team-a",
            )
            .unwrap();
        assert_eq!((entry, form), (0, Form::ExternalArtifact));
        // The copy's kind is the source's; another namespace than allowed finds nothing.
        assert!(
            policy
                .shared_source_published_as(
                    "HelmRelease",
                    "/spec/chart/spec/sourceRef",
                    "HelmRepository",
                    "flux-system.bitnami",
                    "team-a",
                )
                .is_none()
        );
        assert!(
            policy
                .shared_source_published_as(
                    "HelmRelease",
                    "/spec/chart/spec/sourceRef",
                    "HelmRepository",
                    "flux-system.bitnami",
                    "team-b",
                )
                .is_some()
        );
    }
}
