//! Machine-readable output.

use crate::diagnostic::Severity;
use crate::lint::Report;

pub fn render(report: &Report) -> String {
    let errors = report
        .diagnostics
        .iter()
        .filter(|d| d.finding.severity == Severity::Deny)
        .count();
    let value = serde_json::json!({
        "version": 1,
        "diagnostics": report.diagnostics,
        "errors": report.errors(),
        "unresolved": report.unresolved,
        "summary": {
            "files": report.inventory.files.iter().filter(|f| f.reported).count(),
            "objects": report.objects_checked,
            "errors": errors,
            "warnings": report.diagnostics.len() - errors,
            "unresolved": report.unresolved.len(),
            "inputErrors": report.errors().len(),
        },
    });
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}
