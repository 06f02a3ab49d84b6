use super::{Context, Rule, RuleMeta, Subject, source_references};
use crate::diagnostic::{Finding, Severity};
use crate::shared::Sharing;

/// Flags source references (`sourceRef`, `chartRef`, `imageRepositoryRef`) into another
/// namespace: with `--no-cross-namespace-refs=true` Flux refuses them at reconcile time.
pub struct CrossNamespaceSourceRef;

static META: RuleMeta = RuleMeta {
    code: "FF101",
    name: "cross-namespace-source-ref",
    summary: "A Flux object references a source in another namespace",
    default_severity: Severity::Deny,
    fixable: super::Fixable::UnsafeOnly,
    exemption: super::Exemption::Everywhere,
    doc: "\
## What it does
Checks Kustomization `spec.sourceRef`, HelmRelease `spec.chart.spec.sourceRef` and
`spec.chartRef`, ImagePolicy `spec.imageRepositoryRef`, ImageUpdateAutomation
`spec.sourceRef` and each of ArtifactGenerator `spec.sources[]` (source-watcher, which
composes ExternalArtifacts from them; a source without a namespace is the generator's own),
whatever kind they name (an `ExternalArtifact`, Flux 2.7's source made by
an ArtifactGenerator or another controller, included). A reference whose `namespace` is empty
or equal to the object's own namespace is fine; any other namespace is flagged. Exempt
namespaces are judged too: `--no-cross-namespace-refs` is a controller-wide flag with no
namespace exception, so a reference from `flux-system` into another namespace is refused like
any other. The object's namespace is the one Flux would apply: a parent Flux Kustomization's
`targetNamespace`, else the outermost kustomization.yaml `namespace:`, else
`metadata.namespace`. A namespace written as `${VAR:-default}` is judged as its default (what
Flux's post-build substitution gives when the variable is not set); a `${VAR}` without one is
listed as unresolved (`--show-unresolved`), not judged. At admission a value is final: Flux
substitutes before it applies.

A source the policy lists under `sharedSources` is flagged too, since Flux refuses the
reference as written; the message names the object fluxfence-controller publishes for it in
the tenant's namespace, `<namespace>.<name>` (an ExternalArtifact for a Kustomization
`sourceRef` or a HelmRelease `chartRef`, a copy of the source for a HelmRelease
`spec.chart.spec.sourceRef`), or the policy entry that does not share it with this namespace.

## Why is this bad?
Multi-tenant Flux (Azure's `multiTenancy.enforce=true`, upstream
`--no-cross-namespace-refs=true`) refuses such references: the object goes
`Ready=False` with reason `AccessDenied` and is not retried. A tenant could otherwise build
from a source it was never granted.

## Example
```yaml
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: nginx
  namespace: nginx
spec:
  chart:
    spec:
      chart: nginx-ingress-controller
      sourceRef:
        kind: HelmRepository
        name: bitnami
        namespace: flux-system
```

## Fix
`fluxfence fix --unsafe-fixes` performs the move (unsafe: the object is deleted from its old
namespace and created in the new one; helm-controller uninstalls a deleted HelmRelease's
release before the moved one installs it again — plan the switch).

## Use instead
Keep Flux objects in the configuration namespace with their sources, and deploy into the app
namespace with `targetNamespace` (`fluxfence fix` does this rewrite):
```yaml
metadata:
  name: nginx
  namespace: cluster-config
spec:
  releaseName: nginx
  targetNamespace: nginx
  storageNamespace: nginx
  chart:
    spec:
      sourceRef:
        kind: HelmRepository
        name: bitnami
        namespace: cluster-config
```
",
};

impl Rule for CrossNamespaceSourceRef {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check_object(&self, subject: &Subject, cx: &Context, out: &mut Vec<Finding>) {
        for reference in source_references(subject.object) {
            let Some(written) = reference.field("namespace") else {
                continue;
            };
            // An unset variable is reported as unresolved by the engine, not judged here.
            let Some(namespace) = cx.resolve(written) else {
                continue;
            };
            let namespace = namespace.as_ref();
            if namespace.is_empty() || namespace == subject.namespace {
                continue;
            }
            let kind = reference.field("kind").unwrap_or("source");
            let name = reference.field("name").unwrap_or("");
            let sharing = cx.policy.sharing(
                subject.object.kind.as_str(),
                &reference.pointer,
                kind,
                namespace,
                name,
                subject.namespace,
            );
            let help = match &sharing {
                Some(sharing) => shared_help(sharing, subject.namespace),
                None => help(cx, subject, kind),
            };
            out.push(META.finding(
                format!("{}/namespace", reference.pointer),
                reference.span_of("namespace"),
                format!(
                    "{} in namespace `{}` references {kind} {namespace}/{name} in another namespace",
                    subject.object.display_name(),
                    subject.namespace,
                ),
                help,
            ));
        }
    }
}

/// A reference to a source the policy shares: Flux still refuses it as written, so say which
/// object in the tenant's namespace to reference, or which policy entry refuses this namespace.
fn shared_help(sharing: &Sharing, namespace: &str) -> String {
    let entry = sharing.entry_name();
    match sharing {
        Sharing::Allowed { published, .. } => format!(
            "Flux refuses cross-namespace references (AccessDenied); {entry} is published in `{namespace}` \
             by fluxfence-controller: reference kind: {}, name: {} with no namespace \
             (the fluxfence webhook rewrites it so at admission)",
            published.kind, published.name
        ),
        Sharing::NotForNamespace { .. } => {
            format!(
                "{entry} is not shared with namespace `{namespace}`; add its tenant to the entry's `tenants` or the namespace to its `namespaces`"
            )
        }
        Sharing::NoForm { .. } => format!(
            "{entry} is shared, but Flux can read no published copy through this field; \
             declare the source in `{namespace}`"
        ),
    }
}

/// How to resolve the reference: from an app namespace, move next to the source (the document's
/// rewrite); from the config namespace itself, bring the source here. Only what Flux applies
/// (a Kustomization, a HelmRelease) can move and still deploy into the tenant's namespace.
fn help(cx: &Context, subject: &Subject, kind: &str) -> String {
    let namespace = subject.namespace;
    let config = &cx.policy.config_namespace;
    // The config namespace and the platform's exempt ones are where objects stay: the source
    // comes to them.
    if namespace == config || cx.policy.is_exempt(namespace) || !subject.object.kind.impersonates()
    {
        format!(
            "Flux refuses cross-namespace references (AccessDenied); declare the {kind} in `{namespace}`"
        )
    } else {
        format!(
            "Flux refuses cross-namespace references (AccessDenied); move this object and its source \
             into `{config}` with spec.targetNamespace: {namespace} (`fluxfence fix --unsafe-fixes`), \
             or put the {kind} in `{namespace}`"
        )
    }
}
