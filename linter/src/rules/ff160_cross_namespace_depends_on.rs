use super::{Context, Rule, RuleMeta, Subject};
use crate::diagnostic::{Finding, Severity};
use crate::kinds::FluxKind;
use crate::yaml::Node;

/// Flags `spec.dependsOn[]` entries in another namespace (opt-in: Flux allows them).
pub struct CrossNamespaceDependsOn;

static META: RuleMeta = RuleMeta {
    code: "FF160",
    name: "cross-namespace-depends-on",
    summary: "A Kustomization or HelmRelease depends on an object in another namespace",
    default_severity: Severity::Off,
    fixable: super::Fixable::No,
    exemption: super::Exemption::OutsideExemptNamespaces,
    doc: "\
## What it does
Off unless the policy turns it on (`rules: {FF160: warn}` or `deny`). Checks each
`namespace` of a Kustomization's or HelmRelease's `spec.dependsOn`: empty or the object's own
namespace is fine, another one is flagged. A `${VAR:-default}` is judged as its default; a
`${VAR}` without one is not judged. Exempt namespaces are not checked.

## Why is this bad?
Flux allows it: `--no-cross-namespace-refs` does not cover `dependsOn`, so this is not a
reconcile failure, which is why the rule is off by default. But the controller reads the other
namespace's object with its own rights to decide whether the dependency is ready, and
evaluates a `readyExpr` (a CEL expression the tenant writes) against it: a tenant learns,
through its own object's readiness, whether another tenant's Kustomization or HelmRelease
exists and what its status says. A platform that keeps tenants blind to each other turns this
rule on.

## Example
```yaml
kind: Kustomization
metadata:
  name: apps
  namespace: team-a
spec:
  dependsOn:
    - name: database
      namespace: team-b
      readyExpr: status.lastAppliedRevision.startsWith('main@sha1:abc')
```

## Use instead
Depend on objects of the tenant's own namespace; let the platform order tenants from an
exempt namespace.
",
};

impl Rule for CrossNamespaceDependsOn {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check_object(&self, subject: &Subject, cx: &Context, out: &mut Vec<Finding>) {
        let object = subject.object;
        if !matches!(object.kind, FluxKind::Kustomization | FluxKind::HelmRelease) {
            return;
        }
        let Some(items) = object
            .root
            .path(&["spec", "dependsOn"])
            .and_then(Node::as_seq)
        else {
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let Some(node) = item.get("namespace") else {
                continue;
            };
            let Some(namespace) = node.as_str().and_then(|written| cx.resolve(written)) else {
                continue;
            };
            if namespace.is_empty() || namespace == subject.namespace {
                continue;
            }
            let name = item.get("name").and_then(Node::as_str).unwrap_or("");
            let probe = if item.get("readyExpr").is_some() {
                " and evaluates its readyExpr against it"
            } else {
                ""
            };
            out.push(META.finding(
                format!("/spec/dependsOn/{i}/namespace"),
                node.span,
                format!(
                    "{} in namespace `{}` waits on {} {namespace}/{name} in another namespace{probe}",
                    object.display_name(),
                    subject.namespace,
                    object.kind,
                ),
                format!(
                    "depend on an object of `{}`, or order tenants from an exempt namespace",
                    subject.namespace
                ),
            ));
        }
    }
}
