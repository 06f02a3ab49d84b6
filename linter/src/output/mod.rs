//! Renderers of a [`Report`]: they only format, never decide.

use crate::lint::Report;

mod github;
mod json;
mod junit;
mod sarif;
mod text;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Code frames for people (rustc style).
    Text,
    /// One JSON document: diagnostics, errors, unresolved namespaces, summary.
    Json,
    /// SARIF 2.1.0, for code-scanning services.
    Sarif,
    /// JUnit XML, for CI test reports.
    Junit,
    /// GitHub Actions workflow commands (annotations on the pull request).
    Github,
}

/// Writes the report to `out`; JSON is streamed, the other formats are rendered first.
pub fn write(
    report: &Report,
    format: Format,
    show_unresolved: bool,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    match format {
        Format::Json => json::write(report, out),
        _ => out.write_all(render(report, format, show_unresolved).as_bytes()),
    }
}

pub fn render(report: &Report, format: Format, show_unresolved: bool) -> String {
    match format {
        Format::Text => text::render(report, show_unresolved),
        Format::Json => json::render(report),
        Format::Sarif => sarif::render(report),
        Format::Junit => junit::render(report),
        Format::Github => github::render(report),
    }
}
