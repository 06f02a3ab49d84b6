//! GitHub Actions workflow commands: each diagnostic becomes an annotation on the diff.

use std::fmt::Write;

use crate::diagnostic::Severity;
use crate::lint::Report;

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for e in report.errors() {
        let _ = writeln!(
            out,
            "::error file={},line={},col={},title={}::{}",
            property(&e.file),
            e.line.max(1),
            e.column.max(1),
            property("fluxfence: input error"),
            data(&e.message)
        );
    }
    for d in &report.diagnostics {
        let level = if d.finding.severity == Severity::Deny {
            "error"
        } else {
            "warning"
        };
        let _ = writeln!(
            out,
            "::{level} file={},line={},col={},endLine={},endColumn={},title={}::{}",
            property(&d.file),
            d.line,
            d.column,
            d.end_line,
            d.end_column,
            property(&format!("{} {}", d.finding.code, d.finding.rule)),
            data(&format!("{}\nhelp: {}", d.finding.message, d.finding.help))
        );
    }
    out
}

/// Escaping of a command's message.
fn data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escaping of a command's property values.
fn property(text: &str) -> String {
    data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        assert_eq!(super::data("50%\nnext"), "50%25%0Anext");
        assert_eq!(super::property("a:b,c"), "a%3Ab%2Cc");
    }
}
