use super::{Context, Rule, RuleMeta};
use crate::diagnostic::{Finding, Severity};
use crate::kustomize::{KustomizeFile, is_remote};

/// Flags remote bases (URLs) in kustomization.yaml `resources`, `bases` and `components`.
pub struct RemoteKustomizeBase;

static META: RuleMeta = RuleMeta {
    code: "FF130",
    name: "remote-kustomize-base",
    summary: "A kustomization.yaml pulls a remote base",
    default_severity: Severity::Deny,
    fixable: super::Fixable::No,
    exemption: super::Exemption::Everywhere,
    doc: "\
## What it does
Reports entries of a kustomization.yaml's `resources`, `bases` and `components` that are
URLs or Git remotes (`https://…`, `git@…`, `github.com/…?ref=…`).

## Why is this bad?
kustomize-controller runs with `--no-remote-bases=true` in multi-tenant installations: the
build fails at reconcile time. Remote bases also fetch code that no Flux source, and so no
policy on source URLs, ever saw.

## Example
```yaml
resources:
  - https://github.com/example/app//deploy?ref=v1.0.0
```

## Use instead
Declare a GitRepository (or OCIRepository) for the remote and a Flux Kustomization with
`sourceRef` and `path` pointing into it.
",
};

impl Rule for RemoteKustomizeBase {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check_kustomize(&self, file: &KustomizeFile, _cx: &Context, out: &mut Vec<Finding>) {
        for entry in file.entries.iter().filter(|e| is_remote(&e.value)) {
            out.push(META.finding(
                format!("/{}/{}", entry.field, entry.index),
                entry.span,
                format!("`{}` is a remote kustomize base", entry.value),
                "kustomize-controller refuses remote bases (--no-remote-bases); use a Flux source and Kustomization".into(),
            ));
        }
    }
}
