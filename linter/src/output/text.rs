//! rustc/ruff-style code frames.

use std::fmt::Write;

use crate::diagnostic::{Diagnostic, Severity};
use crate::lint::Report;

pub fn render(report: &Report, show_unresolved: bool) -> String {
    let mut out = String::new();
    for error in report.errors() {
        let _ = writeln!(out, "error: {error}\n");
    }
    for diagnostic in &report.diagnostics {
        frame(&mut out, report, diagnostic);
    }
    if show_unresolved {
        for u in &report.unresolved {
            let _ = writeln!(
                out,
                "note: {}:{}:{}: {}: {}",
                u.file, u.line, u.column, u.object, u.reason
            );
        }
    }
    summary(&mut out, report, show_unresolved);
    out
}

fn frame(out: &mut String, report: &Report, d: &Diagnostic) {
    let label = match d.finding.severity {
        Severity::Deny => "error",
        _ => "warning",
    };
    let fixable = if d.finding.fix.is_some() { " [*]" } else { "" };
    let _ = writeln!(
        out,
        "{label}[{}]{fixable}: {}",
        d.finding.code, d.finding.message
    );
    let Some(file) = report.inventory.files.iter().find(|f| f.path == d.file) else {
        let _ = writeln!(out, "  --> {}:{}:{}\n", d.file, d.line, d.column);
        return;
    };
    let gutter = d.line.to_string().len();
    let pad = " ".repeat(gutter);
    let _ = writeln!(out, "{pad}--> {}:{}:{}", d.file, d.line, d.column);
    let range = file.lines.line_range(&file.text, d.line);
    let source = &file.text[range.start..range.end];
    let _ = writeln!(out, "{pad} |");
    let _ = writeln!(out, "{} | {}", d.line, source);
    let width = if d.end_line == d.line {
        d.end_column.saturating_sub(d.column).max(1)
    } else {
        source.chars().count().saturating_sub(d.column - 1).max(1)
    };
    let _ = writeln!(
        out,
        "{pad} | {}{} {}",
        " ".repeat(d.column - 1),
        "^".repeat(width),
        d.finding.rule
    );
    let _ = writeln!(out, "{pad} |");
    if let Some(origin) = &d.namespace_origin {
        let namespace = d
            .object
            .as_deref()
            .and_then(|o| o.split('/').nth(1))
            .unwrap_or("");
        let _ = writeln!(
            out,
            "{pad} = note: namespace `{namespace}` comes from {origin}"
        );
    }
    for note in &d.notes {
        let _ = writeln!(out, "{pad} = note: {note}");
    }
    let _ = writeln!(out, "{pad} = help: {}", d.finding.help);
    out.push('\n');
}

fn summary(out: &mut String, report: &Report, show_unresolved: bool) {
    let errors = report
        .diagnostics
        .iter()
        .filter(|d| d.finding.severity == Severity::Deny)
        .count();
    let warnings = report.diagnostics.len() - errors;
    let fixable = report
        .diagnostics
        .iter()
        .filter(|d| d.finding.fix.is_some())
        .count();
    let files = report.inventory.files.iter().filter(|f| f.reported).count();
    if report.diagnostics.is_empty() {
        let _ = writeln!(
            out,
            "No problems in {} from {}.",
            plural(report.objects_checked, "Flux object"),
            plural(files, "file")
        );
    } else {
        let _ = writeln!(
            out,
            "Found {} ({}, {}) in {} from {}.",
            plural(report.diagnostics.len(), "problem"),
            plural(errors, "error"),
            plural(warnings, "warning"),
            plural(report.objects_checked, "Flux object"),
            plural(files, "file"),
        );
    }
    if fixable > 0 {
        let _ = writeln!(out, "[*] {fixable} fixable with `fluxfence fix`.");
    }
    if !report.unresolved.is_empty() && !show_unresolved {
        let _ = writeln!(
            out,
            "note: {} Flux objects have a namespace or values that cannot be known offline; \
             the rules that read them skipped them. List them, with the reason, with --show-unresolved.",
            report.unresolved.len()
        );
    }
    if report.objects_without_flux_build > 0
        && report.objects_without_flux_build < report.objects_checked
    {
        let _ = writeln!(
            out,
            "note: {} applied by no Flux Kustomization of the input: judged as kustomize builds them.",
            plural(report.objects_without_flux_build, "Flux object")
        );
    }
    if !report.errors().is_empty() {
        let _ = writeln!(
            out,
            "{} could not be read or parsed.",
            plural(report.errors().len(), "file")
        );
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
