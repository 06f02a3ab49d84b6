//! rustc/ruff-style code frames.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::diagnostic::{Applicability, Diagnostic, Severity};
use crate::lint::Report;
use crate::output::Options;

/// A source line longer than this (in characters) is shown as a window around the finding:
/// a minified or generated line can be megabytes.
const FRAME_WIDTH: usize = 120;
/// Characters kept before the finding's column when a line is cut.
const FRAME_LEAD: usize = 40;

pub fn render(report: &Report, options: &Options) -> String {
    let style = Style { on: options.color };
    let mut out = String::new();
    for error in report.errors() {
        let _ = writeln!(out, "{}: {error}\n", style.error("error"));
    }
    if options.statistics {
        statistics(&mut out, report);
    } else {
        for diagnostic in &report.diagnostics {
            frame(&mut out, &style, report, diagnostic);
        }
    }
    if options.show_unresolved {
        for u in &report.unresolved {
            let _ = writeln!(
                out,
                "{}: {}:{}:{}: {}: {}",
                style.bold("note"),
                u.file,
                u.line,
                u.column,
                u.object,
                u.reason
            );
        }
    }
    if !options.quiet {
        summary(&mut out, report, options.show_unresolved);
    }
    out
}

/// ANSI SGR colours, or none.
struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, sgr: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn error(&self, text: &str) -> String {
        self.paint("1;31", text)
    }

    fn warning(&self, text: &str) -> String {
        self.paint("1;33", text)
    }

    fn gutter(&self, text: &str) -> String {
        self.paint("1;34", text)
    }

    fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    fn level(&self, severity: Severity, text: &str) -> String {
        match severity {
            Severity::Deny => self.error(text),
            _ => self.warning(text),
        }
    }
}

/// `[*]` marks a finding `fluxfence fix` fixes as it is (ruff's mark); unsafe-only fixes
/// need `--unsafe-fixes` and are counted apart.
fn has_safe_fix(d: &Diagnostic) -> bool {
    d.finding
        .fix
        .as_ref()
        .is_some_and(|f| f.applicability == Applicability::Safe)
}

fn frame(out: &mut String, style: &Style, report: &Report, d: &Diagnostic) {
    let label = match d.finding.severity {
        Severity::Deny => "error",
        _ => "warning",
    };
    let fixable = if has_safe_fix(d) { " [*]" } else { "" };
    let _ = writeln!(
        out,
        "{}{fixable}: {}",
        style.level(d.finding.severity, &format!("{label}[{}]", d.finding.code)),
        style.bold(&d.finding.message)
    );
    let Some(file) = report.inventory.files.iter().find(|f| f.path == d.file) else {
        let _ = writeln!(
            out,
            "  {} {}:{}:{}\n",
            style.gutter("-->"),
            d.file,
            d.line,
            d.column
        );
        return;
    };
    let gutter = d.line.to_string().len();
    let pad = " ".repeat(gutter);
    let bar = style.gutter("|");
    let _ = writeln!(
        out,
        "{pad}{} {}:{}:{}",
        style.gutter("-->"),
        d.file,
        d.line,
        d.column
    );
    let range = file.lines.line_range(&file.text, d.line);
    let source = &file.text[range.start..range.end];
    let width = if d.end_line == d.line {
        d.end_column.saturating_sub(d.column).max(1)
    } else {
        source.chars().count().saturating_sub(d.column - 1).max(1)
    };
    let shown = Window::of(source, d.column.saturating_sub(1), width);
    let _ = writeln!(out, "{pad} {bar}");
    let _ = writeln!(
        out,
        "{} {bar} {}",
        style.gutter(&d.line.to_string()),
        shown.text
    );
    let _ = writeln!(
        out,
        "{pad} {bar} {}{}",
        " ".repeat(shown.column),
        style.level(
            d.finding.severity,
            &format!("{} {}", "^".repeat(shown.width), d.finding.rule)
        )
    );
    let _ = writeln!(out, "{pad} {bar}");
    if let Some(origin) = &d.namespace_origin {
        let namespace = d
            .object
            .as_deref()
            .and_then(|o| o.split('/').nth(1))
            .unwrap_or("");
        let _ = writeln!(
            out,
            "{pad} {} namespace `{namespace}` comes from {origin}",
            style.bold("= note:")
        );
    }
    for note in &d.notes {
        let _ = writeln!(out, "{pad} {} {note}", style.bold("= note:"));
    }
    let _ = writeln!(out, "{pad} {} {}", style.bold("= help:"), d.finding.help);
    out.push('\n');
}

/// The part of a source line a frame shows, and where the carets go in it.
struct Window {
    text: String,
    /// Characters before the first caret.
    column: usize,
    width: usize,
}

impl Window {
    /// `column` (0-based) and `width` in characters of `line`.
    fn of(line: &str, column: usize, width: usize) -> Window {
        let length = line.chars().count();
        if length <= FRAME_WIDTH {
            return Window {
                text: line.to_owned(),
                column,
                width,
            };
        }
        let start = column.saturating_sub(FRAME_LEAD);
        let end = (start + FRAME_WIDTH).min(length);
        let mut text = String::new();
        if start > 0 {
            text.push('…');
        }
        text.extend(line.chars().skip(start).take(end - start));
        if end < length {
            text.push('…');
        }
        let lead = usize::from(start > 0);
        Window {
            text,
            column: column - start + lead,
            width: width.min(end.saturating_sub(column)).max(1),
        }
    }
}

/// Findings per rule, most frequent first (ruff's `--statistics`).
fn statistics(out: &mut String, report: &Report) {
    let mut counts: BTreeMap<(&str, &str), (usize, usize)> = BTreeMap::new();
    for d in &report.diagnostics {
        let entry = counts.entry((d.finding.code, d.finding.rule)).or_default();
        entry.0 += 1;
        entry.1 += usize::from(has_safe_fix(d));
    }
    let mut rows: Vec<_> = counts.into_iter().collect();
    rows.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(&b.0)));
    let digits = rows.first().map_or(1, |r| r.1.0.to_string().len());
    for ((code, rule), (count, safe)) in rows {
        let mark = if safe > 0 { "[*] " } else { "" };
        let _ = writeln!(out, "{count:>digits$}  {code}  {mark}{rule}");
    }
    if !report.diagnostics.is_empty() {
        out.push('\n');
    }
}

fn summary(out: &mut String, report: &Report, show_unresolved: bool) {
    let errors = report
        .diagnostics
        .iter()
        .filter(|d| d.finding.severity == Severity::Deny)
        .count();
    let warnings = report.diagnostics.len() - errors;
    let safe = report
        .diagnostics
        .iter()
        .filter(|d| has_safe_fix(d))
        .count();
    let unsafe_only = report
        .diagnostics
        .iter()
        .filter(|d| d.finding.fix.is_some())
        .count()
        - safe;
    let files = report.inventory.files.iter().filter(|f| f.reported).count();
    let unreadable = report.errors().len();
    let judged = format!(
        "{} from {}",
        plural(report.objects_checked, "Flux object"),
        plural(files, "file")
    );
    if !report.diagnostics.is_empty() {
        let _ = writeln!(
            out,
            "Found {} ({}, {}) in {judged}.",
            plural(report.diagnostics.len(), "problem"),
            plural(errors, "error"),
            plural(warnings, "warning"),
        );
    } else if unreadable == 0 {
        let _ = writeln!(out, "No problems in {judged}.");
    } else if files > 0 {
        // Not "No problems": what could not be read was not judged.
        let _ = writeln!(out, "No problems in what could be read: {judged}.");
    }
    if safe > 0 {
        let _ = writeln!(out, "[*] {safe} fixable with `fluxfence fix`.");
    }
    if unsafe_only > 0 {
        let _ = writeln!(
            out,
            "{} fixable with `fluxfence fix --unsafe-fixes` (it moves objects between namespaces).",
            if safe > 0 {
                format!("{unsafe_only} more")
            } else {
                unsafe_only.to_string()
            }
        );
    }
    if !report.unresolved.is_empty() && !show_unresolved {
        let count = report.unresolved.len();
        let have = if count == 1 {
            "1 Flux object has a namespace or values".to_owned()
        } else {
            format!("{count} Flux objects have namespaces or values")
        };
        let _ = writeln!(
            out,
            "note: {have} that cannot be known offline; the rules that read them skipped them. \
             List them, with the reason, with --show-unresolved."
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
    if unreadable > 0 {
        let _ = writeln!(
            out,
            "{} could not be read or parsed.",
            plural(unreadable, "file")
        );
    }
}

pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_is_cut_around_the_finding() {
        let line = format!("{}key: value{}", "x".repeat(1000), "y".repeat(1000));
        let window = Window::of(&line, 1000, 3);
        assert_eq!(window.text.chars().count(), FRAME_WIDTH + 2);
        assert!(window.text.starts_with('…') && window.text.ends_with('…'));
        let before: String = window.text.chars().skip(window.column).take(3).collect();
        assert_eq!(before, "key");
        let short = Window::of("  namespace: x", 13, 1);
        assert_eq!((short.text.as_str(), short.column), ("  namespace: x", 13));
        // A finding spanning the rest of a long line is cut to the window.
        let wide = Window::of(&line, 0, 2010);
        assert_eq!((wide.column, wide.width), (0, FRAME_WIDTH));
    }
}
