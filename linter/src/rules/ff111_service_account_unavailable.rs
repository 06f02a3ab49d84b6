use super::{Context, Rule, RuleMeta, Subject, missing_field_span};
use crate::diagnostic::{Finding, Severity};
use crate::yaml::Node;

/// Flags Kustomizations and HelmReleases applied as a service account that the tenant may not
/// use or that does not exist in the object's namespace.
pub struct ServiceAccountUnavailable;

static META: RuleMeta = RuleMeta {
    code: "FF111",
    name: "service-account-unavailable",
    summary: "The service account an object is applied as is not allowed or not in its namespace",
    default_severity: Severity::Deny,
    fixable: super::Fixable::UnsafeOnly,
    exemption: super::Exemption::OutsideExemptNamespaces,
    doc: "\
## What it does
Works out the service account a Kustomization or HelmRelease is applied as:
`spec.serviceAccountName`, else the policy's default (Azure: `flux-applier`). It is flagged when
the tenant's policy does not allow it, or when it does not exist in the object's own
namespace. It exists when the policy says so (the default exists in the configuration
namespaces) or when the linted input declares that ServiceAccount in that namespace.
`fluxfence audit` (and the webhook with its ServiceAccount cache) checks the ServiceAccounts
that really exist in the cluster instead.

## Why is this bad?
Flux impersonates the account **in the object's namespace** — helm-controller uses the
HelmRelease's namespace, not `targetNamespace`. Azure creates `flux-applier` only in the
configuration namespace, so a HelmRelease in `nginx` fails with
`cannot ... system:serviceaccount:nginx:flux-applier`.

## Example
```yaml
kind: HelmRelease
metadata:
  name: nginx
  namespace: nginx   # no flux-applier here
```

## Fix
`fluxfence fix --unsafe-fixes` performs the move (unsafe: the object is deleted from its old
namespace and created in the new one; helm-controller uninstalls a deleted HelmRelease's
release before the moved one installs it again — plan the switch).

## Use instead
```yaml
metadata:
  name: nginx
  namespace: cluster-config
spec:
  targetNamespace: nginx
```
or create the ServiceAccount (and its RoleBinding) in `nginx`.
",
};

impl Rule for ServiceAccountUnavailable {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check_object(&self, subject: &Subject, cx: &Context, out: &mut Vec<Finding>) {
        let object = subject.object;
        if !object.kind.impersonates() {
            return;
        }
        let explicit = object
            .root
            .path(&["spec", "serviceAccountName"])
            .filter(|n| n.as_str().is_some());
        let default = cx
            .policy
            .default_service_account
            .as_ref()
            .map(|sa| sa.name.as_str());
        let Some(account) = explicit.and_then(Node::as_str).or(default) else {
            return;
        };
        if account.contains("${") {
            return;
        }
        let span = explicit.map_or_else(|| missing_field_span(object), |n| n.span);
        let how = if explicit.is_some() {
            "spec.serviceAccountName"
        } else {
            "the policy's default service account"
        };
        let ns = subject.namespace;

        if let Some(tenant) = cx.policy.tenant_of(ns) {
            let allowed =
                Some(account) == default || tenant.service_accounts.iter().any(|a| a == account);
            if !tenant.service_accounts.is_empty() && !allowed {
                out.push(META.finding(
                    "/spec/serviceAccountName".into(),
                    span,
                    format!(
                        "{} is applied as service account `{account}` ({how}), which tenant `{}` may not use",
                        object.display_name(),
                        tenant.name
                    ),
                    format!("use one of: {}", tenant.service_accounts.join(", ")),
                ));
                return;
            }
        }

        let listed = cx
            .declared_service_accounts
            .contains(&(ns.to_owned(), account.to_owned()));
        let exists = if cx.service_accounts_listed {
            listed
        } else {
            listed
                || cx.policy.provides_service_account(ns, account)
                || (explicit.is_some()
                    && cx.trust_explicit_service_accounts
                    && !cx.policy.knows_service_account(account))
        };
        if exists {
            return;
        }
        let config_ns = &cx.policy.config_namespace;
        out.push(META.finding(
            "/spec/serviceAccountName".into(),
            span,
            format!(
                "{} is applied as service account `{account}` ({how}), which does not exist in its namespace `{ns}`",
                object.display_name()
            ),
            format!(
                "Flux impersonates {ns}:{account}; move the object to `{config_ns}` with spec.targetNamespace: {ns} \
                 (`fluxfence fix --unsafe-fixes`), or declare ServiceAccount {account} in `{ns}`"
            ),
        ));
    }
}
