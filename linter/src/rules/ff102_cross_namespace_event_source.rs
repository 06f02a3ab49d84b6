use super::{Context, Rule, RuleMeta, Subject};
use crate::diagnostic::{Finding, Severity};
use crate::kinds::FluxKind;

/// Flags Receiver `spec.resources[]` and Alert `spec.eventSources[]` in another namespace.
pub struct CrossNamespaceEventSource;

static META: RuleMeta = RuleMeta {
    code: "FF102",
    name: "cross-namespace-event-source",
    summary: "A Receiver or Alert points at objects in another namespace",
    default_severity: Severity::Deny,
    fixable: super::Fixable::No,
    exemption: super::Exemption::Everywhere,
    doc: "\
## What it does
Checks each `namespace` in a Receiver's `spec.resources` and an Alert's `spec.eventSources`.
Empty or equal to the object's own namespace is fine. Another namespace is flagged, and so is
`namespace: '*'`: only `name: '*'` is a wildcard in Flux, a `*` namespace never matches.
Exempt namespaces are judged too: notification-controller drops an event whose object is in
another namespace than the Alert whatever the Alert's namespace, so a platform Alert in
`flux-system` watching tenants' Kustomizations is silently broken under lockdown.
A namespace written as `${VAR:-default}` is judged as its default; a `${VAR}` without one is
listed as unresolved (`--show-unresolved`), not judged.

## Why is this bad?
With `--no-cross-namespace-refs=true` the notification-controller rejects a Receiver's
cross-namespace resources when the webhook fires, and an Alert silently drops the events of
sources in other namespaces: the alert you rely on never comes.

## Example
```yaml
kind: Alert
metadata:
  namespace: team-a
spec:
  eventSources:
    - kind: Kustomization
      name: '*'
      namespace: flux-system
```

## Use instead
```yaml
  eventSources:
    - kind: Kustomization
      name: '*'
```
",
};

impl Rule for CrossNamespaceEventSource {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check_object(&self, subject: &Subject, cx: &Context, out: &mut Vec<Finding>) {
        let field = match subject.object.kind {
            FluxKind::Receiver => "resources",
            FluxKind::Alert => "eventSources",
            _ => return,
        };
        let Some(items) = subject
            .object
            .root
            .path(&["spec", field])
            .and_then(|n| n.as_seq())
        else {
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let Some(ns_node) = item.get("namespace") else {
                continue;
            };
            let Some(written) = ns_node.as_str() else {
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
            let kind = item
                .get("kind")
                .and_then(|n| n.as_str())
                .unwrap_or("object");
            let name = item.get("name").and_then(|n| n.as_str()).unwrap_or("");
            let (message, help) = if namespace == "*" {
                (
                    format!("{} uses namespace '*' for {kind} {name}: it matches no namespace", subject.object.display_name()),
                    "only `name: '*'` is a wildcard; drop `namespace` to match the object's own namespace".to_owned(),
                )
            } else {
                (
                    format!(
                        "{} in namespace `{}` watches {kind} {namespace}/{name} in another namespace",
                        subject.object.display_name(),
                        subject.namespace
                    ),
                    format!(
                        "drop `namespace` or set it to `{}`; create the {} in `{namespace}` instead",
                        subject.namespace, subject.object.kind
                    ),
                )
            };
            out.push(META.finding(
                format!("/spec/{field}/{i}/namespace"),
                ns_node.span,
                message,
                help,
            ));
        }
    }
}
