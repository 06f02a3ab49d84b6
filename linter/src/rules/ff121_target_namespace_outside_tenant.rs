use super::{Context, Rule, RuleMeta, Subject};
use crate::diagnostic::{Finding, Severity};
use crate::kinds::FluxKind;
use crate::policy::glob_match;

/// Flags `spec.targetNamespace` and HelmRelease `spec.storageNamespace` outside the namespaces
/// the object's tenant may deploy into.
pub struct TargetNamespaceOutsideTenant;

static META: RuleMeta = RuleMeta {
    code: "FF121",
    name: "target-namespace-outside-tenant",
    summary: "targetNamespace or storageNamespace is outside the tenant's namespaces",
    default_severity: Severity::Deny,
    fixable: super::Fixable::No,
    exemption: super::Exemption::OutsideExemptNamespaces,
    doc: "\
## What it does
For objects in a namespace the policy assigns to a tenant, checks Kustomization and
HelmRelease `spec.targetNamespace` and HelmRelease `spec.storageNamespace` against the
tenant's `namespaces` and `targetNamespaces` patterns. Objects outside any tenant (such as
the configuration namespace) are not restricted.

## Why is this bad?
Only the impersonated account's RBAC stops a tenant from deploying into someone else's
namespace, and only at apply time, hours after the merge. The policy states the intent; this
rule enforces it before the commit lands.

## Example
```yaml
metadata:
  namespace: team-a
spec:
  targetNamespace: team-b
```

## Use instead
```yaml
spec:
  targetNamespace: team-a-frontend   # matches team-a-*
```
",
};

impl Rule for TargetNamespaceOutsideTenant {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check_object(&self, subject: &Subject, cx: &Context, out: &mut Vec<Finding>) {
        let object = subject.object;
        let Some(tenant) = cx.policy.tenant_of(subject.namespace) else {
            return;
        };
        let fields: &[&str] = match object.kind {
            FluxKind::HelmRelease => &["targetNamespace", "storageNamespace"],
            FluxKind::Kustomization => &["targetNamespace"],
            _ => return,
        };
        for field in fields {
            let Some(node) = object.root.path(&["spec", field]) else {
                continue;
            };
            let Some(target) = node.as_str() else {
                continue;
            };
            let allowed = target.contains("${")
                || tenant
                    .namespaces
                    .iter()
                    .chain(&tenant.target_namespaces)
                    .any(|p| glob_match(p, target));
            if allowed {
                continue;
            }
            out.push(META.finding(
                format!("/spec/{field}"),
                node.span,
                format!(
                    "{} deploys into `{target}`, outside tenant `{}`",
                    object.display_name(),
                    tenant.name
                ),
                format!(
                        "use a namespace matching {}",
                        tenant
                            .namespaces
                            .iter()
                            .chain(&tenant.target_namespaces)
                            .fold(Vec::<&str>::new(), |mut unique, p| {
                                if !unique.contains(&p.as_str()) {
                                    unique.push(p);
                                }
                                unique
                            })
                            .join(", ")
                    ),
            ));
        }
    }
}
