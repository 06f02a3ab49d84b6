use super::{Rule, RuleMeta};
use crate::diagnostic::{Finding, Severity};
use crate::kinds::FluxKind;
use crate::model::FluxObject;
use crate::schema::{Schemas, Verdict, ViolationKind};

/// Flags Flux objects that the apiserver would refuse: not valid against the
/// `openAPIV3Schema` of their CustomResourceDefinition and version.
pub struct SchemaViolation;

static META: RuleMeta = RuleMeta {
    code: "FF001",
    name: "schema-violation",
    summary: "A Flux object is not valid against its CustomResourceDefinition schema",
    default_severity: Severity::Deny,
    fixable: super::Fixable::No,
    exemption: super::Exemption::Everywhere,
    doc: "\
## What it does
Validates every Flux object against the `openAPIV3Schema` of its CustomResourceDefinition for
the object's `apiVersion`: field types, required fields, allowed values (`enum`), patterns
(durations such as `interval: 10m`), formats, lengths, and fields the schema does not know.
Kubernetes' schema extensions are applied as the apiserver applies them:
`x-kubernetes-int-or-string` accepts an integer or a string,
`x-kubernetes-preserve-unknown-fields` allows any field below it (HelmRelease `spec.values`),
`nullable` allows null, and so does an optional field (the apiserver prunes a null field before
it validates; a required field left empty is an error). `metadata` is checked as ObjectMeta: labels and
annotations must be strings. `status` is ignored. Files that a kustomization.yaml applies as
patches (`patches[].path`, `patchesStrategicMerge`) are partial objects: the fields they lack
are not reported, everything else is.

The CRDs come from the input itself (any `apiextensions.k8s.io/v1` CustomResourceDefinition,
e.g. the `gotk-components.yaml` that `flux bootstrap` commits) and from
`fluxfence lint --crds DIR` (CRD YAML files, searched recursively; these win over the input's).
**Without any CRD this rule checks nothing**: fluxfence ships no schemas, so that the schemas
match the Flux version of your cluster. A CRD that does not serve the object's version is
reported here unless FF002 already reports that version as removed.

Unknown fields are reported as errors. The apiserver *prunes* unknown fields of a structural
schema rather than storing them; what it does besides depends on the request's field
validation (`fieldValidation`, server-side since Kubernetes 1.25, GA in 1.27): `Strict`
rejects the object, `Warn` (what the apiserver does when the client asks for nothing) drops the
field with a warning, `Ignore` drops it silently. `kubectl apply` and `kubectl create` ask for
`Strict` (`--validate=strict` is their default), so the object is refused; when a controller
applies it without asking for strict validation the field is dropped, which is never what its
author meant: typically a misspelled or misplaced field.

Not evaluated: CEL rules (`x-kubernetes-validations`, e.g. HelmRelease \"either chart or
chartRef must be set\"), list uniqueness (`x-kubernetes-list-type`), and values Flux fills in
later (`${VAR}` post-build substitutions) or decrypts (SOPS `ENC[...]`). This rule runs
whatever the policy's `enforce` and in every namespace, exempt ones included.

## Why is this bad?
The object never reaches a controller: `kubectl apply` fails, `flux bootstrap` stops, and a
parent Kustomization goes `Ready=False` with the apiserver's validation error, blocking every
other object it applies. A dropped unknown field fails silently instead.

## Example
```yaml
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: apps
spec:
  interval: 10
  sourceRef:
    kind: GitRepo
    name: flux-system
  prune: true
  pathh: ./apps
```

## Use instead
```yaml
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: apps
spec:
  interval: 10m
  sourceRef:
    kind: GitRepository
    name: flux-system
  prune: true
  path: ./apps
```
",
};

pub fn meta() -> &'static RuleMeta {
    &META
}

impl Rule for SchemaViolation {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }
}

/// FF001 for one object (the schema pass in [`crate::schema`] calls this). A `patch` (a file a
/// kustomization.yaml applies as a patch) is a partial object: missing fields are not reported.
pub fn check(object: &FluxObject, schemas: &Schemas, patch: bool, out: &mut Vec<Finding>) {
    let version_span = object
        .root
        .get("apiVersion")
        .map_or(object.root.span, |n| n.span);
    match schemas.validate(object) {
        Verdict::NoSchema => {}
        Verdict::NotServed { served, source } => {
            let version = object
                .api_version
                .split_once('/')
                .map_or("", |(_, v)| v);
            if object.kind.info().is_removed_version(version) {
                return; // FF002 says it, with the replacement.
            }
            out.push(META.finding(
                "/apiVersion".into(),
                version_span,
                format!(
                    "{} uses {}, which the {} CustomResourceDefinition (from {source}) does not serve",
                    object.display_name(),
                    object.api_version,
                    object.kind,
                ),
                format!("use one of the served versions: {}", served.join(", ")),
            ));
        }
        Verdict::BrokenSchema { source, reason } => out.push(META.finding(
            "/apiVersion".into(),
            version_span,
            format!(
                "the {} schema (from {source}) could not be compiled, so {} was not checked: {reason}",
                object.kind,
                object.display_name()
            ),
            "check the CustomResourceDefinition given with --crds or found in the input".into(),
        )),
        Verdict::Checked(violations) => {
            for violation in violations {
                if patch && violation.kind == ViolationKind::MissingField {
                    continue;
                }
                let help = help(object.kind, violation.kind, &object.api_version);
                out.push(META.finding(
                    violation.pointer,
                    violation.span,
                    format!("{}: {}", object.display_name(), violation.message),
                    help,
                ));
            }
        }
    }
}

fn help(kind: FluxKind, violation: ViolationKind, api_version: &str) -> String {
    match violation {
        ViolationKind::UnknownField => format!(
            "the {api_version} {kind} schema has no such field: fix its spelling or place; \
             `kubectl apply` rejects it and Flux drops it"
        ),
        ViolationKind::MissingField => {
            "add the field: the apiserver rejects the object without it".into()
        }
        ViolationKind::WrongType => {
            "write the value with the type the schema expects (quote numbers meant as strings)"
                .into()
        }
        ViolationKind::NotInEnum => "use one of the listed values (they are case-sensitive)".into(),
        ViolationKind::PatternMismatch => {
            "write the value in the expected form (durations are Go durations such as 30s, 5m, 1h)"
                .into()
        }
        ViolationKind::BadFormat | ViolationKind::Other => {
            format!("make the value valid against the {api_version} {kind} schema")
        }
    }
}
