//! JUnit XML: one test case per reported file, failing with its deny-severity diagnostics.

use std::fmt::Write;

use crate::diagnostic::Severity;
use crate::lint::Report;

pub fn render(report: &Report) -> String {
    let files: Vec<&str> = report
        .inventory
        .files
        .iter()
        .filter(|f| f.reported)
        .map(|f| f.path.as_str())
        .collect();
    let failing = |file: &str| {
        report
            .diagnostics
            .iter()
            .any(|d| d.file == file && d.finding.severity == Severity::Deny)
            || report.errors().iter().any(|e| e.file == file)
    };
    let failures = files.iter().filter(|f| failing(f)).count()
        + report
            .errors()
            .iter()
            .filter(|e| !files.contains(&e.file.as_str()))
            .count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"fluxfence\" tests=\"{}\" failures=\"{failures}\">",
        files.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"fluxfence\" tests=\"{}\" failures=\"{failures}\">",
        files.len()
    );
    for file in &files {
        let _ = write!(
            out,
            "    <testcase classname=\"fluxfence\" name=\"{}\"",
            escape(file)
        );
        let errors: Vec<String> = report
            .errors()
            .iter()
            .filter(|e| e.file == *file)
            .map(|e| e.to_string())
            .collect();
        let findings: Vec<_> = report
            .diagnostics
            .iter()
            .filter(|d| d.file == *file)
            .collect();
        if errors.is_empty() && findings.is_empty() {
            out.push_str("/>\n");
            continue;
        }
        out.push_str(">\n");
        for error in &errors {
            let _ = writeln!(out, "      <error message=\"{}\"/>", escape(error));
        }
        let denied: Vec<_> = findings
            .iter()
            .filter(|d| d.finding.severity == Severity::Deny)
            .collect();
        if !denied.is_empty() {
            let body: Vec<String> = denied
                .iter()
                .map(|d| {
                    format!(
                        "{}:{}:{}: {} {}\nhelp: {}",
                        d.file, d.line, d.column, d.finding.code, d.finding.message, d.finding.help
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "      <failure type=\"{}\" message=\"{}\">{}</failure>",
                denied[0].finding.code,
                escape(&format!("{} problem(s)", denied.len())),
                escape(&body.join("\n"))
            );
        }
        let warned: Vec<String> = findings
            .iter()
            .filter(|d| d.finding.severity != Severity::Deny)
            .map(|d| {
                format!(
                    "warning {}:{}:{}: {} {}",
                    d.file, d.line, d.column, d.finding.code, d.finding.message
                )
            })
            .collect();
        if !warned.is_empty() {
            let _ = writeln!(
                out,
                "      <system-out>{}</system-out>",
                escape(&warned.join("\n"))
            );
        }
        out.push_str("    </testcase>\n");
    }
    for e in report
        .errors()
        .iter()
        .filter(|e| !files.contains(&e.file.as_str()))
    {
        let _ = writeln!(
            out,
            "    <testcase classname=\"fluxfence\" name=\"{}\">",
            escape(&e.file)
        );
        let _ = writeln!(out, "      <error message=\"{}\"/>", escape(&e.to_string()));
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot carry most control characters at all.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}
