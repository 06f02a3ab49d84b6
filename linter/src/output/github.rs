//! GitHub Actions workflow commands: each diagnostic becomes an annotation on the diff.
//! Paths are relative to the repository root, which is what GitHub places annotations by
//! (the checkout is the workspace), whatever directory the linter ran in.

use std::collections::HashMap;
use std::fmt::Write;

use crate::diagnostic::Severity;
use crate::lint::Report;
use crate::output::Options;

pub fn render<'a>(report: &'a Report, options: &Options) -> String {
    let mut known: HashMap<&str, String> = HashMap::new();
    let mut path = |file: &'a str| -> String {
        let rel = known.entry(file).or_insert_with(|| {
            options
                .repository_relative(file)
                .unwrap_or_else(|| file.to_owned())
        });
        property(rel)
    };
    let mut out = String::new();
    for e in report.errors() {
        let _ = writeln!(
            out,
            "::error file={},line={},col={},title={}::{}",
            path(&e.file),
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
            path(&d.file),
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
