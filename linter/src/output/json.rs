//! Machine-readable output, written as it is serialised (a large report is never held twice).

use std::io::Write;

use serde::Serialize;

use crate::diagnostic::{Diagnostic, Severity};
use crate::input::InputError;
use crate::lint::{Report, Unresolved};

#[derive(Serialize)]
struct Document<'a> {
    version: u32,
    diagnostics: &'a [Diagnostic],
    errors: &'a [InputError],
    unresolved: &'a [Unresolved],
    summary: Summary,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    files: usize,
    objects: usize,
    errors: usize,
    warnings: usize,
    unresolved: usize,
    input_errors: usize,
}

pub fn write(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    let errors = report
        .diagnostics
        .iter()
        .filter(|d| d.finding.severity == Severity::Deny)
        .count();
    let document = Document {
        version: 1,
        diagnostics: &report.diagnostics,
        errors: report.errors(),
        unresolved: &report.unresolved,
        summary: Summary {
            files: report.inventory.files.iter().filter(|f| f.reported).count(),
            objects: report.objects_checked,
            errors,
            warnings: report.diagnostics.len() - errors,
            unresolved: report.unresolved.len(),
            input_errors: report.errors().len(),
        },
    };
    // serde_json writes a few bytes at a time; buffered here, those writes are plain copies
    // rather than calls through `dyn Write`.
    let mut buffered = std::io::BufWriter::with_capacity(64 * 1024, out);
    serde_json::to_writer_pretty(&mut buffered, &document)?;
    buffered.write_all(b"\n")?;
    buffered.flush()
}

pub fn render(report: &Report) -> String {
    let mut out = Vec::new();
    // Writing to memory cannot fail, and serde_json writes UTF-8.
    let _ = write(report, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}
