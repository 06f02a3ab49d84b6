//! The kinds of object a FluxConfig owns: one table of API versions, kinds and plurals.

use kube::core::{ApiResource, GroupVersionKind};

/// The label on everything the controller writes, with the FluxConfig's name.
pub const CONFIG_LABEL: &str = "fluxfence.dev/config";
/// On cluster-scoped objects (which cannot carry an owner reference to a namespaced FluxConfig):
/// the FluxConfig's namespace.
pub const CONFIG_NAMESPACE_LABEL: &str = "fluxfence.dev/config-namespace";
/// On the default service account, which the namespace's FluxConfigs share (no config label).
pub const DEFAULT_SERVICE_ACCOUNT_LABEL: &str = "fluxfence.dev/default-service-account";
/// Server-side apply field manager.
pub const FIELD_MANAGER: &str = "fluxfence-controller";
/// On a `scope: cluster` FluxConfig: its ClusterRoleBinding is deleted before it goes.
pub const FINALIZER: &str = "fluxfence.dev/cluster-role-binding";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OwnedKind {
    ServiceAccount,
    RoleBinding,
    ClusterRoleBinding,
    Secret,
    GitRepository,
    Bucket,
    OciRepository,
    Kustomization,
}

impl OwnedKind {
    /// Every kind, in the order objects are applied (a source before what reads it).
    pub const ALL: [OwnedKind; 8] = [
        OwnedKind::ServiceAccount,
        OwnedKind::RoleBinding,
        OwnedKind::ClusterRoleBinding,
        OwnedKind::Secret,
        OwnedKind::GitRepository,
        OwnedKind::Bucket,
        OwnedKind::OciRepository,
        OwnedKind::Kustomization,
    ];

    /// The Flux kinds, whose Ready conditions make up the compliance state.
    pub const FLUX: [OwnedKind; 4] = [
        OwnedKind::GitRepository,
        OwnedKind::Bucket,
        OwnedKind::OciRepository,
        OwnedKind::Kustomization,
    ];

    pub fn group(self) -> &'static str {
        match self {
            OwnedKind::ServiceAccount | OwnedKind::Secret => "",
            OwnedKind::RoleBinding | OwnedKind::ClusterRoleBinding => "rbac.authorization.k8s.io",
            OwnedKind::GitRepository | OwnedKind::Bucket | OwnedKind::OciRepository => {
                "source.toolkit.fluxcd.io"
            }
            OwnedKind::Kustomization => "kustomize.toolkit.fluxcd.io",
        }
    }

    pub fn version(self) -> &'static str {
        "v1"
    }

    pub fn api_version(self) -> &'static str {
        match self {
            OwnedKind::ServiceAccount | OwnedKind::Secret => "v1",
            OwnedKind::RoleBinding | OwnedKind::ClusterRoleBinding => {
                "rbac.authorization.k8s.io/v1"
            }
            OwnedKind::GitRepository | OwnedKind::Bucket | OwnedKind::OciRepository => {
                "source.toolkit.fluxcd.io/v1"
            }
            OwnedKind::Kustomization => "kustomize.toolkit.fluxcd.io/v1",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            OwnedKind::ServiceAccount => "ServiceAccount",
            OwnedKind::RoleBinding => "RoleBinding",
            OwnedKind::ClusterRoleBinding => "ClusterRoleBinding",
            OwnedKind::Secret => "Secret",
            OwnedKind::GitRepository => "GitRepository",
            OwnedKind::Bucket => "Bucket",
            OwnedKind::OciRepository => "OCIRepository",
            OwnedKind::Kustomization => "Kustomization",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            OwnedKind::ServiceAccount => "serviceaccounts",
            OwnedKind::RoleBinding => "rolebindings",
            OwnedKind::ClusterRoleBinding => "clusterrolebindings",
            OwnedKind::Secret => "secrets",
            OwnedKind::GitRepository => "gitrepositories",
            OwnedKind::Bucket => "buckets",
            OwnedKind::OciRepository => "ocirepositories",
            OwnedKind::Kustomization => "kustomizations",
        }
    }

    pub fn namespaced(self) -> bool {
        self != OwnedKind::ClusterRoleBinding
    }

    /// Kinds whose objects belong to one FluxConfig, carry its label and are pruned. The
    /// default service account is shared by the namespace's FluxConfigs.
    pub fn pruned(self) -> bool {
        self != OwnedKind::ServiceAccount
    }

    pub fn is_flux(self) -> bool {
        OwnedKind::FLUX.contains(&self)
    }

    pub fn api_resource(self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group(), self.version(), self.kind()),
            self.plural(),
        )
    }
}
