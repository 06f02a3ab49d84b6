//! The fluxfence engine over what the controller is about to write: a FluxConfig whose objects
//! the policy denies is refused before anything is applied.

use fluxfence::{Inventory, Policy, Severity};

use crate::desired::DesiredObject;

/// The objects as one YAML stream (each document is JSON, which is YAML).
pub fn render(objects: &[DesiredObject]) -> String {
    let mut text = String::new();
    for object in objects {
        text.push_str("---\n");
        text.push_str(&object.body.to_string());
        text.push('\n');
    }
    text
}

/// `CODE: message (help)` for every deny finding of the policy on `objects`.
pub fn denials(objects: &[DesiredObject], policy: &Policy) -> Vec<String> {
    let inventory = Inventory::from_text("fluxconfig.yaml", render(objects));
    let report = fluxfence::lint(inventory, policy);
    let mut denials: Vec<String> = report
        .errors()
        .iter()
        .map(|error| format!("the engine cannot read the objects: {error}"))
        .collect();
    denials.extend(
        report
            .diagnostics
            .iter()
            .filter(|d| d.finding.severity == Severity::Deny)
            .map(|d| {
                format!(
                    "{}: {} ({})",
                    d.finding.code, d.finding.message, d.finding.help
                )
            }),
    );
    denials
}
