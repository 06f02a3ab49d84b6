use super::{Context, Rule, RuleMeta, Subject};
use crate::diagnostic::{Finding, Severity};
use crate::kinds::FluxKind;

/// Flags sources whose URL is outside the tenant's allowed prefixes.
pub struct SourceUrlNotAllowed;

static META: RuleMeta = RuleMeta {
    code: "FF140",
    name: "source-url-not-allowed",
    summary: "A tenant source fetches from a URL the policy does not allow",
    default_severity: Severity::Deny,
    fixable: super::Fixable::No,
    exemption: super::Exemption::OutsideExemptNamespaces,
    doc: "\
## What it does
For GitRepository, HelmRepository and OCIRepository `spec.url` and Bucket `spec.endpoint` in
a tenant namespace, checks the value against the tenant's `sourceUrls` prefixes. Tenants
without `sourceUrls` may use any URL.

## Why is this bad?
A source is code the cluster will run. Pinning each tenant to its own organisation's
repositories stops a typo-squatted or personal fork from being deployed.

## Example
```yaml
kind: GitRepository
metadata:
  namespace: team-a
spec:
  url: https://github.com/someone-else/app
```

## Use instead
```yaml
spec:
  url: https://github.com/example-org/team-a-app
```
",
};

impl Rule for SourceUrlNotAllowed {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check_object(&self, subject: &Subject, cx: &Context, out: &mut Vec<Finding>) {
        let object = subject.object;
        if !object.kind.is_source() {
            return;
        }
        let Some(tenant) = cx.policy.tenant_of(subject.namespace) else {
            return;
        };
        if tenant.source_urls.is_empty() {
            return;
        }
        let field = if object.kind == FluxKind::Bucket {
            "endpoint"
        } else {
            "url"
        };
        let Some(node) = object.root.path(&["spec", field]) else {
            return;
        };
        let Some(url) = node.as_str() else { return };
        if url.contains("${")
            || tenant
                .source_urls
                .iter()
                .any(|prefix| url.starts_with(prefix.as_str()))
        {
            return;
        }
        out.push(META.finding(
            format!("/spec/{field}"),
            node.span,
            format!(
                "{} fetches from `{url}`, outside tenant `{}`'s allowed sources",
                object.display_name(),
                tenant.name
            ),
            format!(
                "use a URL starting with one of: {}",
                tenant.source_urls.join(", ")
            ),
        ));
    }
}
