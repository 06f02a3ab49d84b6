use super::{Context, Rule, RuleMeta, Subject, key_span};
use crate::diagnostic::{Finding, Severity};
use crate::kinds::FluxKind;
use crate::yaml::Node;

/// Flags tenant Kustomizations that decrypt with what the platform holds: no
/// `spec.decryption.secretRef` (the controller's own keys), or a decryption service account the
/// tenant may not use.
pub struct DecryptionWithPlatformKey;

static META: RuleMeta = RuleMeta {
    code: "FF150",
    name: "decryption-with-platform-key",
    summary: "A tenant Kustomization decrypts with the platform's keys",
    default_severity: Severity::Deny,
    fixable: super::Fixable::No,
    exemption: super::Exemption::OutsideExemptNamespaces,
    doc: "\
## What it does
Checks a Kustomization's `spec.decryption` outside the exempt namespaces. Flagged: a
`decryption` without `secretRef`, and a `decryption.serviceAccountName` that the tenant's
`serviceAccounts` do not list (for tenants that list some).

## Why is this bad?
kustomize-controller decrypts SOPS files with the keys of the Secret that `secretRef` names,
in the Kustomization's own namespace. Without one it falls back to what the controller itself
holds: since Flux 2.7 a controller-wide age key (`--sops-age-secret`), and the controller's
own cloud identity for KMS. A tenant who writes `decryption: {provider: sops}` then decrypts,
and applies into its namespace, any Secret the platform encrypted for the cluster — it only
has to copy the encrypted file into its repository. `decryption.serviceAccountName` is the
identity used for KMS (object-level workload identity): a tenant naming another tenant's or the
platform's account borrows its KMS rights.

## Example
```yaml
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: apps
  namespace: team-a
spec:
  decryption:
    provider: sops
```

## Use instead
Give the tenant its own key, in its own namespace:
```yaml
spec:
  decryption:
    provider: sops
    secretRef:
      name: team-a-sops-age
```
",
};

impl Rule for DecryptionWithPlatformKey {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check_object(&self, subject: &Subject, cx: &Context, out: &mut Vec<Finding>) {
        let object = subject.object;
        if object.kind != FluxKind::Kustomization {
            return;
        }
        let Some(spec) = object.spec() else { return };
        let Some(decryption) = spec.get("decryption").filter(|d| d.as_map().is_some()) else {
            return;
        };
        let has_secret = decryption
            .path(&["secretRef", "name"])
            .and_then(Node::as_str)
            .is_some();
        if !has_secret {
            out.push(META.finding(
                "/spec/decryption".into(),
                key_span(spec, "decryption").unwrap_or(decryption.span),
                format!(
                    "{} in namespace `{}` decrypts without spec.decryption.secretRef: with the controller's own keys (--sops-age-secret, its KMS identity)",
                    object.display_name(),
                    subject.namespace
                ),
                format!(
                    "set spec.decryption.secretRef.name to a Secret of `{}`'s own keys, in that namespace",
                    subject.namespace
                ),
            ));
        }
        let Some(tenant) = cx.policy.tenant_of(subject.namespace) else {
            return;
        };
        let Some(account_node) = decryption.get("serviceAccountName") else {
            return;
        };
        let Some(account) = account_node.as_str().filter(|a| !a.contains("${")) else {
            return;
        };
        if tenant.service_accounts.is_empty()
            || tenant.service_accounts.iter().any(|a| a == account)
        {
            return;
        }
        out.push(META.finding(
            "/spec/decryption/serviceAccountName".into(),
            account_node.span,
            format!(
                "{} decrypts with the KMS identity of service account `{account}`, which tenant `{}` may not use",
                object.display_name(),
                tenant.name
            ),
            format!("use one of: {}", tenant.service_accounts.join(", ")),
        ));
    }
}
