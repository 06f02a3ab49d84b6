use super::{Rule, RuleMeta};
use crate::diagnostic::{Applicability, Finding, Fix, FixOp, Severity};
use crate::kinds::FluxKind;
use crate::model::FluxObject;
use crate::yaml::Node;

/// Flags Flux objects written in an API version that current Flux no longer serves.
pub struct RemovedApiVersion;

static META: RuleMeta = RuleMeta {
    code: "FF002",
    name: "removed-api-version",
    summary: "A Flux object uses an API version that current Flux no longer serves",
    default_severity: Severity::Deny,
    fixable: super::Fixable::Safe,
    exemption: super::Exemption::Everywhere,
    doc: "\
## What it does
Compares each Flux object's `apiVersion` with the versions current Flux serves: HelmRelease
`v2`, Kustomization `v1`, the source kinds `v1`, Alert and Provider `v1beta3`, Receiver `v1`,
and the image kinds `v1`. The betas that Flux 2.4 still served (HelmRelease
`v2beta1`/`v2beta2`, Kustomization and source kinds `v1beta1`/`v1beta2`, Alert and Provider
`v1beta1`/`v1beta2`, image kinds `v1beta1`/`v1beta2`) are reported at the `apiVersion` value,
with the version to use. The facts are built in; no CRD is needed. This rule runs whatever the
policy's `enforce` and in every namespace, exempt ones included.

The fix sets the current `apiVersion`. It is safe when the object uses no field that changed
between the versions. It is unsafe (applied only with unsafe fixes) when the object uses a
field the current version no longer has, which must then be rewritten by hand:
Kustomization `spec.patchesStrategicMerge` and `spec.patchesJson6902` (use `spec.patches`) and
`spec.validation` (gone: the controller always validates server-side); HelmRelease
`spec.chart.spec.valuesFile` (use `valuesFiles`) and `spec.postRenderers[].kustomize`
`patchesStrategicMerge`/`patchesJson6902` (use `patches`); GitRepository `spec.gitImplementation`
(gone: only go-git remains); HelmChart `spec.valuesFile` (use `valuesFiles`); `spec.accessFrom`
of GitRepository, Bucket and HelmChart (gone).

## Why is this bad?
The apiserver refuses an object in a version its CRD no longer serves (`no matches for kind
\"HelmRelease\" in version \"helm.toolkit.fluxcd.io/v2beta1\"`), and upgrading Flux to a release
without the beta fails while stored objects still use it (`flux migrate` rewrites those; the
files in Git must change too, or the next reconcile brings the old version back).

## Example
```yaml
apiVersion: helm.toolkit.fluxcd.io/v2beta1
kind: HelmRelease
metadata:
  name: nginx
spec:
  chart:
    spec:
      chart: nginx-ingress-controller
      sourceRef:
        kind: HelmRepository
        name: bitnami
```

## Use instead
```yaml
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: nginx
spec:
  chart:
    spec:
      chart: nginx-ingress-controller
      sourceRef:
        kind: HelmRepository
        name: bitnami
```
",
};

pub fn meta() -> &'static RuleMeta {
    &META
}

impl Rule for RemovedApiVersion {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }
}

/// A field of a removed version that the current version does not have (from comparing the
/// Flux 2.4 CRDs with the current ones), and what to write instead.
struct RemovedField {
    kind: FluxKind,
    /// Path from the object's root; `*` matches every item of a list.
    path: &'static [&'static str],
    instead: &'static str,
}

const REMOVED_FIELDS: &[RemovedField] = &[
    RemovedField {
        kind: FluxKind::Kustomization,
        path: &["spec", "patchesStrategicMerge"],
        instead: "move each patch into spec.patches[].patch",
    },
    RemovedField {
        kind: FluxKind::Kustomization,
        path: &["spec", "patchesJson6902"],
        instead: "move each entry into spec.patches[] (target, and the operations as a YAML string in patch)",
    },
    RemovedField {
        kind: FluxKind::Kustomization,
        path: &["spec", "validation"],
        instead: "delete it: the controller always validates server-side",
    },
    RemovedField {
        kind: FluxKind::HelmRelease,
        path: &["spec", "chart", "spec", "valuesFile"],
        instead: "list the file in spec.chart.spec.valuesFiles",
    },
    RemovedField {
        kind: FluxKind::HelmRelease,
        path: &[
            "spec",
            "postRenderers",
            "*",
            "kustomize",
            "patchesStrategicMerge",
        ],
        instead: "move each patch into postRenderers[].kustomize.patches",
    },
    RemovedField {
        kind: FluxKind::HelmRelease,
        path: &["spec", "postRenderers", "*", "kustomize", "patchesJson6902"],
        instead: "move each entry into postRenderers[].kustomize.patches",
    },
    RemovedField {
        kind: FluxKind::GitRepository,
        path: &["spec", "gitImplementation"],
        instead: "delete it: only go-git remains",
    },
    RemovedField {
        kind: FluxKind::GitRepository,
        path: &["spec", "accessFrom"],
        instead: "delete it",
    },
    RemovedField {
        kind: FluxKind::Bucket,
        path: &["spec", "accessFrom"],
        instead: "delete it",
    },
    RemovedField {
        kind: FluxKind::HelmChart,
        path: &["spec", "accessFrom"],
        instead: "delete it",
    },
    RemovedField {
        kind: FluxKind::HelmChart,
        path: &["spec", "valuesFile"],
        instead: "list the file in spec.valuesFiles",
    },
];

/// FF002 for one object (the schema pass in [`crate::schema`] calls this).
pub fn check(object: &FluxObject, out: &mut Vec<Finding>) {
    let info = object.kind.info();
    let Some((_, version)) = object.api_version.split_once('/') else {
        return;
    };
    if !info.is_removed_version(version) {
        return;
    }
    let Some(api_version) = object.root.get("apiVersion") else {
        return;
    };
    let current = info.current_api_version();
    let used: Vec<(String, &'static str)> = REMOVED_FIELDS
        .iter()
        .filter(|f| f.kind == object.kind)
        .flat_map(|f| {
            present(&object.root, f.path, String::new())
                .into_iter()
                .map(move |field| (field, f.instead))
        })
        .collect();
    let mut help = format!("use apiVersion: {current}");
    for (field, instead) in &used {
        help.push_str(&format!("; {field} is gone in {current}: {instead}"));
    }
    let mut finding = META.finding(
        "/apiVersion".into(),
        api_version.span,
        format!(
            "{} uses {}, which current Flux no longer serves",
            object.display_name(),
            object.api_version
        ),
        help,
    );
    finding.fix = Some(Fix {
        applicability: if used.is_empty() {
            Applicability::Safe
        } else {
            Applicability::Unsafe
        },
        description: if used.is_empty() {
            format!("set apiVersion: {current}")
        } else {
            let fields: Vec<&str> = used.iter().map(|(f, _)| f.as_str()).collect();
            format!(
                "set apiVersion: {current}, then rewrite {} by hand",
                fields.join(", ")
            )
        },
        ops: vec![FixOp::Set {
            pointer: "/apiVersion".into(),
            value: current,
        }],
    });
    out.push(finding);
}

/// The dotted names of the fields at `path` that exist in `node` (`*` = every list item).
fn present(node: &Node, path: &[&str], prefix: String) -> Vec<String> {
    let Some((first, rest)) = path.split_first() else {
        return vec![prefix];
    };
    if *first == "*" {
        return node
            .as_seq()
            .unwrap_or_default()
            .iter()
            .enumerate()
            .flat_map(|(i, item)| present(item, rest, format!("{prefix}[{i}]")))
            .collect();
    }
    match node.get(first) {
        Some(child) if !child.is_null() => {
            let name = if prefix.is_empty() {
                (*first).to_owned()
            } else {
                format!("{prefix}.{first}")
            };
            present(child, rest, name)
        }
        _ => Vec::new(),
    }
}
