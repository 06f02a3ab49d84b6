use super::{Context, Rule, RuleMeta, Subject, missing_field_span, set_service_account_fix};
use crate::diagnostic::{Finding, Severity};

/// Flags Kustomizations and HelmReleases without `spec.serviceAccountName`.
pub struct MissingServiceAccount;

static META: RuleMeta = RuleMeta {
    code: "FF110",
    name: "missing-service-account",
    summary: "A Kustomization or HelmRelease does not name the service account it is applied as",
    default_severity: Severity::Warn,
    fixable: super::Fixable::Safe,
    exemption: super::Exemption::OutsideExemptNamespaces,
    doc: "\
## What it does
Reports Kustomizations and HelmReleases without `spec.serviceAccountName`. The fix (and the
mutating webhook) sets it to the policy's default service account.

## Why is this bad?
Without it, the controllers impersonate their `--default-service-account` (Azure:
`flux-applier`), or, on a cluster without that flag, apply with their own cluster-admin
rights. Naming the account makes the object's permissions explicit and portable. It is a
warning by default: under the default policy the omission is correct, as the Azure
document's own manifests show.

## Example
```yaml
kind: Kustomization
metadata:
  name: apps
  namespace: cluster-config
spec:
  path: ./apps
```

## Use instead
```yaml
spec:
  serviceAccountName: flux-applier
  path: ./apps
```
",
};

impl Rule for MissingServiceAccount {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check_object(&self, subject: &Subject, cx: &Context, out: &mut Vec<Finding>) {
        let object = subject.object;
        if !object.kind.impersonates() || object.spec_str("serviceAccountName").is_some() {
            return;
        }
        let default = cx
            .policy
            .default_service_account
            .as_ref()
            .map(|sa| sa.name.as_str());
        let consequence = match default {
            Some(name) => {
                format!("it is applied as the controllers' default service account `{name}`")
            }
            None => "it is applied with the controller's own cluster-admin permissions".to_owned(),
        };
        let mut finding = META.finding(
            "/spec/serviceAccountName".into(),
            missing_field_span(object),
            format!(
                "{} has no spec.serviceAccountName: {consequence}",
                object.display_name()
            ),
            match default {
                Some(name) => format!("set spec.serviceAccountName: {name} (`fluxfence fix`)"),
                None => "set spec.serviceAccountName to the tenant's service account".to_owned(),
            },
        );
        finding.fix = default.map(set_service_account_fix);
        out.push(finding);
    }
}
