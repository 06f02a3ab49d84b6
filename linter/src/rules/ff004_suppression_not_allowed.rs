use super::{Rule, RuleMeta};
use crate::diagnostic::Severity;

/// Reported by the engine itself when a suppression comment names a rule the policy does not
/// let anyone suppress.
pub struct SuppressionNotAllowed;

pub static SUPPRESSION_NOT_ALLOWED: RuleMeta = RuleMeta {
    code: "FF004",
    name: "suppression-not-allowed",
    summary: "A `fluxfence:ignore` comment suppresses a rule the policy keeps on",
    default_severity: Severity::Warn,
    fixable: super::Fixable::No,
    exemption: super::Exemption::Everywhere,
    doc: "\
## What it does
Reports a `# fluxfence:ignore` comment that names a rule the policy's `suppressions` does not
let be suppressed (`suppressions: deny`, or a list of codes without it). The comment silences
nothing for that rule: its findings are reported as if the comment were not there.

## Why is this bad?
Tenants write their own manifests, comments included. If a comment could switch a tenancy
check off, every tenant could waive the policy the platform enforces; so the platform decides
which rules may be suppressed, and a comment that tries more is shown, not obeyed.

## Example
With `suppressions: [FF110]` in the policy:
```yaml
    namespace: flux-system # fluxfence:ignore FF101 -- we know
```

## Use instead
Fix the finding, or ask the platform to list the rule under `suppressions` (or to share the
source with `sharedSources`).
",
};

impl Rule for SuppressionNotAllowed {
    fn meta(&self) -> &'static RuleMeta {
        &SUPPRESSION_NOT_ALLOWED
    }
}
