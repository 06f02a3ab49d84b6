use super::{Rule, RuleMeta};
use crate::diagnostic::Severity;

/// Reported by the engine itself when it reads the suppression comments of a file.
pub struct SuppressionWithoutReason;

pub static SUPPRESSION_WITHOUT_REASON: RuleMeta = RuleMeta {
    code: "FF003",
    name: "suppression-without-reason",
    summary: "A `fluxfence:ignore` comment names no rule or gives no reason",
    default_severity: Severity::Warn,
    fixable: super::Fixable::No,
    exemption: super::Exemption::Everywhere,
    doc: "\
## What it does
Reports `# fluxfence:ignore` comments that do not name the rule codes they silence or do not
give a reason after `--`. Such a comment silences nothing.

## Why is this bad?
A suppression is an exception to the tenancy policy. Reviewers need to know which rule is
waived and why, and a bare `ignore` would hide every future finding on that line.

## Example
```yaml
  sourceRef:
    kind: HelmRepository
    name: bitnami
    namespace: flux-system # fluxfence:ignore FF101
```

## Use instead
```yaml
    namespace: flux-system # fluxfence:ignore FF101 -- platform-approved shared chart mirror
```
A comment on its own line applies to the next line; one in the comment block at the top of a
document (before its first field) applies to the whole document.
",
};

impl Rule for SuppressionWithoutReason {
    fn meta(&self) -> &'static RuleMeta {
        &SUPPRESSION_WITHOUT_REASON
    }
}
