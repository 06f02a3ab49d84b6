//! The Flux kinds fluxfence understands: the one table that the engine, the webhook and the
//! charts' webhook rules are all checked against.

/// A Flux custom resource kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum FluxKind {
    Kustomization,
    HelmRelease,
    GitRepository,
    HelmRepository,
    HelmChart,
    OCIRepository,
    Bucket,
    ExternalArtifact,
    ArtifactGenerator,
    Alert,
    Provider,
    Receiver,
    ImageRepository,
    ImagePolicy,
    ImageUpdateAutomation,
}

/// One Flux kind with its API group, plural resource name and every API version that Flux has
/// served for it (beta versions included: repositories still carry them, and FF002 reports them).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct KindInfo {
    pub kind: FluxKind,
    pub group: &'static str,
    pub plural: &'static str,
    pub versions: &'static [&'static str],
    /// The one version current Flux serves (its controllers' CRDs on main, mid-2026); every
    /// other entry of `versions` has been removed upstream.
    pub current_version: &'static str,
}

pub const KUSTOMIZE_GROUP: &str = "kustomize.toolkit.fluxcd.io";
pub const HELM_GROUP: &str = "helm.toolkit.fluxcd.io";
pub const SOURCE_GROUP: &str = "source.toolkit.fluxcd.io";
pub const NOTIFICATION_GROUP: &str = "notification.toolkit.fluxcd.io";
pub const IMAGE_GROUP: &str = "image.toolkit.fluxcd.io";
/// source-watcher's API (Flux 2.7+): ArtifactGenerators compose ExternalArtifacts from sources.
pub const SOURCE_EXTENSIONS_GROUP: &str = "source.extensions.fluxcd.io";

const BETAS_AND_V1: &[&str] = &["v1beta1", "v1beta2", "v1"];

pub const FLUX_KINDS: &[KindInfo] = &[
    KindInfo {
        kind: FluxKind::Kustomization,
        group: KUSTOMIZE_GROUP,
        plural: "kustomizations",
        versions: BETAS_AND_V1,
        current_version: "v1",
    },
    KindInfo {
        kind: FluxKind::HelmRelease,
        group: HELM_GROUP,
        plural: "helmreleases",
        versions: &["v2beta1", "v2beta2", "v2"],
        current_version: "v2",
    },
    KindInfo {
        kind: FluxKind::GitRepository,
        group: SOURCE_GROUP,
        plural: "gitrepositories",
        versions: BETAS_AND_V1,
        current_version: "v1",
    },
    KindInfo {
        kind: FluxKind::HelmRepository,
        group: SOURCE_GROUP,
        plural: "helmrepositories",
        versions: BETAS_AND_V1,
        current_version: "v1",
    },
    KindInfo {
        kind: FluxKind::HelmChart,
        group: SOURCE_GROUP,
        plural: "helmcharts",
        versions: BETAS_AND_V1,
        current_version: "v1",
    },
    KindInfo {
        kind: FluxKind::OCIRepository,
        group: SOURCE_GROUP,
        plural: "ocirepositories",
        versions: &["v1beta2", "v1"],
        current_version: "v1",
    },
    KindInfo {
        kind: FluxKind::Bucket,
        group: SOURCE_GROUP,
        plural: "buckets",
        versions: BETAS_AND_V1,
        current_version: "v1",
    },
    KindInfo {
        kind: FluxKind::ExternalArtifact,
        group: SOURCE_GROUP,
        plural: "externalartifacts",
        versions: &["v1"],
        current_version: "v1",
    },
    KindInfo {
        kind: FluxKind::ArtifactGenerator,
        group: SOURCE_EXTENSIONS_GROUP,
        plural: "artifactgenerators",
        versions: &["v1beta1"],
        current_version: "v1beta1",
    },
    KindInfo {
        kind: FluxKind::Alert,
        group: NOTIFICATION_GROUP,
        plural: "alerts",
        versions: &["v1beta1", "v1beta2", "v1beta3"],
        current_version: "v1beta3",
    },
    KindInfo {
        kind: FluxKind::Provider,
        group: NOTIFICATION_GROUP,
        plural: "providers",
        versions: &["v1beta1", "v1beta2", "v1beta3"],
        current_version: "v1beta3",
    },
    KindInfo {
        kind: FluxKind::Receiver,
        group: NOTIFICATION_GROUP,
        plural: "receivers",
        versions: BETAS_AND_V1,
        current_version: "v1",
    },
    KindInfo {
        kind: FluxKind::ImageRepository,
        group: IMAGE_GROUP,
        plural: "imagerepositories",
        versions: BETAS_AND_V1,
        current_version: "v1",
    },
    KindInfo {
        kind: FluxKind::ImagePolicy,
        group: IMAGE_GROUP,
        plural: "imagepolicies",
        versions: BETAS_AND_V1,
        current_version: "v1",
    },
    KindInfo {
        kind: FluxKind::ImageUpdateAutomation,
        group: IMAGE_GROUP,
        plural: "imageupdateautomations",
        versions: BETAS_AND_V1,
        current_version: "v1",
    },
];

impl KindInfo {
    /// Whether Flux once served `version` of this kind and current Flux no longer does.
    pub fn is_removed_version(&self, version: &str) -> bool {
        version != self.current_version && self.versions.contains(&version)
    }

    /// `group/current_version`, the `apiVersion` to write today.
    pub fn current_api_version(&self) -> String {
        format!("{}/{}", self.group, self.current_version)
    }
}

impl FluxKind {
    /// The Flux kind for an `apiVersion` + `kind` pair; any version of a Flux group counts, so
    /// that objects in versions newer than this table are still judged.
    pub fn from_type(api_version: &str, kind: &str) -> Option<FluxKind> {
        let group = api_version.split_once('/').map_or("", |(group, _)| group);
        FLUX_KINDS
            .iter()
            .find(|info| info.group == group && info.kind.as_str() == kind)
            .map(|info| info.kind)
    }

    /// The Flux kind of a reference, which names only the kind (`sourceRef.kind`): every Flux
    /// kind name is unique across the groups.
    pub fn from_name(kind: &str) -> Option<FluxKind> {
        FLUX_KINDS
            .iter()
            .map(|info| info.kind)
            .find(|k| k.as_str() == kind)
    }

    pub fn info(self) -> &'static KindInfo {
        // The table lists every variant; `position` cannot fail, but fall back rather than panic.
        FLUX_KINDS
            .iter()
            .find(|i| i.kind == self)
            .unwrap_or(&FLUX_KINDS[0])
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FluxKind::Kustomization => "Kustomization",
            FluxKind::HelmRelease => "HelmRelease",
            FluxKind::GitRepository => "GitRepository",
            FluxKind::HelmRepository => "HelmRepository",
            FluxKind::HelmChart => "HelmChart",
            FluxKind::OCIRepository => "OCIRepository",
            FluxKind::Bucket => "Bucket",
            FluxKind::ExternalArtifact => "ExternalArtifact",
            FluxKind::ArtifactGenerator => "ArtifactGenerator",
            FluxKind::Alert => "Alert",
            FluxKind::Provider => "Provider",
            FluxKind::Receiver => "Receiver",
            FluxKind::ImageRepository => "ImageRepository",
            FluxKind::ImagePolicy => "ImagePolicy",
            FluxKind::ImageUpdateAutomation => "ImageUpdateAutomation",
        }
    }

    /// Whether the kind's controller is one `flux install` runs by default (and the companion
    /// chart with it). source-watcher, which serves ArtifactGenerator, is an extra component
    /// (`--components-extra=source-watcher`): its CRD comes with it, not with Flux's.
    pub fn in_default_install(self) -> bool {
        self != FluxKind::ArtifactGenerator
    }

    /// Kinds applied by impersonating a service account (`spec.serviceAccountName`).
    pub fn impersonates(self) -> bool {
        matches!(self, FluxKind::Kustomization | FluxKind::HelmRelease)
    }

    /// Kinds that fetch from a URL (FF140 checks those against the tenant's prefixes).
    pub fn is_source(self) -> bool {
        matches!(
            self,
            FluxKind::GitRepository
                | FluxKind::HelmRepository
                | FluxKind::OCIRepository
                | FluxKind::Bucket
        )
    }
}

impl std::fmt::Display for FluxKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_in_the_table_once() {
        for info in FLUX_KINDS {
            assert_eq!(FLUX_KINDS.iter().filter(|i| i.kind == info.kind).count(), 1);
            assert_eq!(info.kind.info().plural, info.plural);
            assert_eq!(info.versions.last(), Some(&info.current_version));
            assert!(!info.is_removed_version(info.current_version));
        }
        assert!(FluxKind::HelmRelease.info().is_removed_version("v2beta1"));
        assert!(!FluxKind::HelmRelease.info().is_removed_version("v3"));
        assert_eq!(FLUX_KINDS.len(), 15);
    }

    #[test]
    fn kinds_are_matched_by_group_not_by_kind_alone() {
        assert_eq!(
            FluxKind::from_type("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
            Some(FluxKind::Kustomization)
        );
        assert_eq!(
            FluxKind::from_type("kustomize.config.k8s.io/v1beta1", "Kustomization"),
            None
        );
        assert_eq!(
            FluxKind::from_type("helm.toolkit.fluxcd.io/v2beta1", "HelmRelease"),
            Some(FluxKind::HelmRelease)
        );
        assert_eq!(FluxKind::from_type("v1", "ServiceAccount"), None);
    }
}
