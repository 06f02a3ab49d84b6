use super::{Context, Rule, RuleMeta, Subject, key_span};
use crate::diagnostic::{Finding, Severity};

/// Flags `spec.kubeConfig` on tenant Kustomizations and HelmReleases.
pub struct RemoteClusterKubeconfig;

static META: RuleMeta = RuleMeta {
    code: "FF120",
    name: "remote-cluster-kubeconfig",
    summary: "A tenant object applies to another cluster through spec.kubeConfig",
    default_severity: Severity::Deny,
    fixable: super::Fixable::No,
    exemption: super::Exemption::OutsideExemptNamespaces,
    doc: "\
## What it does
Reports `spec.kubeConfig` on Kustomizations and HelmReleases outside the exempt (platform)
namespaces.

## Why is this bad?
With a kubeconfig the controller applies the object to another cluster with whatever
credentials the Secret holds: this cluster's impersonation and RBAC no longer constrain the
tenant. Remote clusters are the platform's business (keep such objects in an exempt namespace
such as `flux-system`).

## Example
```yaml
spec:
  kubeConfig:
    secretRef:
      name: prod-cluster
```

## Use instead
Remove `kubeConfig`; ask the platform team to deliver to the other cluster.
",
};

impl Rule for RemoteClusterKubeconfig {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check_object(&self, subject: &Subject, _cx: &Context, out: &mut Vec<Finding>) {
        let object = subject.object;
        if !object.kind.impersonates() {
            return;
        }
        let Some(spec) = object.spec() else { return };
        let Some(value) = spec.get("kubeConfig").filter(|v| !v.is_null()) else {
            return;
        };
        out.push(META.finding(
            "/spec/kubeConfig".into(),
            key_span(spec, "kubeConfig").unwrap_or(value.span),
            format!(
                "{} in namespace `{}` applies to a remote cluster (spec.kubeConfig)",
                object.display_name(),
                subject.namespace
            ),
            "remove spec.kubeConfig; remote clusters are managed from an exempt platform namespace".to_owned(),
        ));
    }
}
