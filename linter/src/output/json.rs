//! Machine-readable output, written as it is produced (a large report is never held twice).
//!
//! The report is serde_json's pretty printing of a `{version, root, diagnostics, errors,
//! unresolved, summary}` document, byte for byte (the tests compare the two), but written
//! here: serde_json escapes every string, keys included, one byte at a time through a table,
//! which made the report an eighth of a corpus run. Keys are constants, and a value without a
//! byte to escape — almost all of them — is copied whole.

use std::io::Write;
use std::path::Path;

use crate::diagnostic::{Diagnostic, Fix, FixOp, Severity};
use crate::input::InputError;
use crate::lint::{Report, Unresolved};

/// The report's version: a change that breaks a consumer bumps it.
const VERSION: usize = 1;

/// Bytes gathered before they are handed on: writes to `dyn Write` are calls, not copies.
const CHUNK: usize = 64 * 1024;

/// `root`: the repository root the run used (absolute), `null` for stdin without one.
pub fn write(report: &Report, root: Option<&Path>, out: &mut dyn Write) -> std::io::Result<()> {
    let errors = report
        .diagnostics
        .iter()
        .filter(|d| d.finding.severity == Severity::Deny)
        .count();
    let mut json = Json {
        buf: Vec::with_capacity(CHUNK + CHUNK / 4),
        out,
        failed: None,
    };
    let mut document = json.object(0);
    document.key(b"version").number(VERSION);
    match root {
        Some(root) => document.key(b"root").string(&root.display().to_string()),
        None => document.key(b"root").null(),
    }
    document.array(b"diagnostics", &report.diagnostics, write_diagnostic);
    document.array(b"errors", report.errors(), write_input_error);
    document.array(b"unresolved", &report.unresolved, write_unresolved);
    let mut summary = document.object(b"summary");
    let files = report.inventory.files.iter().filter(|f| f.reported).count();
    summary.key(b"files").number(files);
    summary.key(b"objects").number(report.objects_checked);
    summary.key(b"errors").number(errors);
    summary
        .key(b"warnings")
        .number(report.diagnostics.len() - errors);
    summary.key(b"unresolved").number(report.unresolved.len());
    summary
        .key(b"withoutFluxBuild")
        .number(report.objects_without_flux_build);
    summary.key(b"inputErrors").number(report.errors().len());
    summary.end();
    document.end();
    json.buf.push(b'\n');
    json.finish()
}

pub fn render(report: &Report, root: Option<&Path>) -> String {
    let mut out = Vec::new();
    // Writing to memory cannot fail, and only UTF-8 is written.
    let _ = write(report, root, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn write_diagnostic(object: &mut Object, diagnostic: &Diagnostic) {
    let finding = &diagnostic.finding;
    object.key(b"code").string(finding.code);
    object.key(b"rule").string(finding.rule);
    object.key(b"severity").string(finding.severity.as_str());
    object.key(b"pointer").string(&finding.pointer);
    object.key(b"message").string(&finding.message);
    object.key(b"help").string(&finding.help);
    if let Some(fix) = &finding.fix {
        write_fix(object.object(b"fix"), fix);
    }
    object.key(b"file").string(&diagnostic.file);
    object.key(b"line").number(diagnostic.line);
    object.key(b"column").number(diagnostic.column);
    object.key(b"endLine").number(diagnostic.end_line);
    object.key(b"endColumn").number(diagnostic.end_column);
    if let Some(name) = &diagnostic.object {
        object.key(b"object").string(name);
    }
    if let Some(origin) = &diagnostic.namespace_origin {
        object.key(b"namespaceOrigin").string(origin);
    }
    if !diagnostic.notes.is_empty() {
        object.strings(b"notes", &diagnostic.notes);
    }
}

fn write_fix(mut object: Object, fix: &Fix) {
    object
        .key(b"applicability")
        .string(fix.applicability.as_str());
    object.key(b"description").string(&fix.description);
    object.array(b"ops", &fix.ops, |op, fix_op| match fix_op {
        FixOp::Set { pointer, value } => {
            op.key(b"op").string("set");
            op.key(b"pointer").string(pointer);
            op.key(b"value").string(value);
        }
    });
    object.end();
}

fn write_input_error(object: &mut Object, error: &InputError) {
    object.key(b"file").string(&error.file);
    object.key(b"line").number(error.line);
    object.key(b"column").number(error.column);
    object.key(b"message").string(&error.message);
}

fn write_unresolved(object: &mut Object, entry: &Unresolved) {
    object.key(b"file").string(&entry.file);
    object.key(b"line").number(entry.line);
    object.key(b"column").number(entry.column);
    object.key(b"object").string(&entry.object);
    object.key(b"reason").string(&entry.reason);
}

/// Pretty-printed JSON (two-space indent, `"key": value`, empty arrays as `[]`) into a buffer
/// that is handed to `out` in chunks.
struct Json<'w> {
    buf: Vec<u8>,
    out: &'w mut dyn Write,
    /// The first error `out` gave; nothing is written after it, and `finish` returns it.
    failed: Option<std::io::Error>,
}

impl<'w> Json<'w> {
    fn object(&mut self, depth: usize) -> Object<'_, 'w> {
        self.buf.push(b'{');
        Object {
            json: self,
            depth,
            empty: true,
        }
    }

    /// An array of objects, one per item, each written by `fields`.
    fn array<T>(&mut self, depth: usize, items: &[T], fields: impl Fn(&mut Object, &T)) {
        if items.is_empty() {
            self.buf.extend_from_slice(b"[]");
            return;
        }
        self.buf.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.line_at(depth + 1);
            let mut object = self.object(depth + 1);
            fields(&mut object, item);
            object.end();
            if self.buf.len() >= CHUNK {
                self.hand_on();
            }
        }
        self.line_at(depth);
        self.buf.push(b']');
    }

    fn line_at(&mut self, depth: usize) {
        self.buf.push(b'\n');
        self.buf.resize(self.buf.len() + 2 * depth, b' ');
    }

    /// Hands the buffer to `out`, unless `out` has failed already.
    fn hand_on(&mut self) {
        if self.failed.is_none()
            && let Err(error) = self.out.write_all(&self.buf)
        {
            self.failed = Some(error);
        }
        self.buf.clear();
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.hand_on();
        match self.failed {
            Some(error) => Err(error),
            None => self.out.flush(),
        }
    }

    fn string(&mut self, text: &str) {
        self.buf.push(b'"');
        let bytes = text.as_bytes();
        // A fold over every byte, not a search: the compiler turns it into a few wide
        // comparisons per 32 bytes.
        let plain = bytes.iter().fold(true, |plain, &b| {
            plain & (b >= 0x20 && b != b'"' && b != b'\\')
        });
        if plain {
            self.buf.extend_from_slice(bytes);
        } else {
            escape_into(&mut self.buf, bytes);
        }
        self.buf.push(b'"');
    }

    fn null(&mut self) {
        self.buf.extend_from_slice(b"null");
    }

    fn number(&mut self, n: usize) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = n;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.buf.extend_from_slice(&digits[at..]);
    }
}

/// JSON's escapes, as serde_json writes them: the short forms where JSON has one, `\u00xx`
/// (lower-case hex) for the other control characters, everything else as it is.
fn escape_into(buf: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &byte in bytes {
        match byte {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0x08 => buf.extend_from_slice(b"\\b"),
            0x0c => buf.extend_from_slice(b"\\f"),
            0x00..0x20 => {
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(byte >> 4)]);
                buf.push(HEX[usize::from(byte & 0xf)]);
            }
            _ => buf.push(byte),
        }
    }
}

/// An object being written: each `key` starts a member on its own line.
struct Object<'j, 'w> {
    json: &'j mut Json<'w>,
    depth: usize,
    empty: bool,
}

impl<'w> Object<'_, 'w> {
    /// Starts the member `key` (a constant without anything to escape); its value follows.
    fn key(&mut self, key: &[u8]) -> &mut Json<'w> {
        if !std::mem::replace(&mut self.empty, false) {
            self.json.buf.push(b',');
        }
        self.json.line_at(self.depth + 1);
        self.json.buf.push(b'"');
        self.json.buf.extend_from_slice(key);
        self.json.buf.extend_from_slice(b"\": ");
        self.json
    }

    /// Starts the member `key` whose value is an object, one level deeper.
    fn object(&mut self, key: &[u8]) -> Object<'_, 'w> {
        let depth = self.depth + 1;
        self.key(key).object(depth)
    }

    /// The member `key`: an array of objects, one per item, each written by `fields`.
    fn array<T>(&mut self, key: &[u8], items: &[T], fields: impl Fn(&mut Object, &T)) {
        let depth = self.depth + 1;
        self.key(key).array(depth, items, fields);
    }

    /// The member `key`: an array of strings.
    fn strings(&mut self, key: &[u8], items: &[String]) {
        let depth = self.depth + 1;
        let json = self.key(key);
        if items.is_empty() {
            json.buf.extend_from_slice(b"[]");
            return;
        }
        json.buf.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                json.buf.push(b',');
            }
            json.line_at(depth + 1);
            json.string(item);
        }
        json.line_at(depth);
        json.buf.push(b']');
    }

    fn end(self) {
        if !self.empty {
            self.json.line_at(self.depth);
        }
        self.json.buf.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::{Applicability, Finding};
    use crate::yaml::Span;

    /// The document as serde_json would print it: the reference the writer is held to.
    #[derive(serde::Serialize)]
    struct Document<'a> {
        version: usize,
        root: Option<String>,
        diagnostics: &'a [Diagnostic],
        errors: &'a [InputError],
        unresolved: &'a [Unresolved],
        summary: Summary,
    }

    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Summary {
        files: usize,
        objects: usize,
        errors: usize,
        warnings: usize,
        unresolved: usize,
        without_flux_build: usize,
        input_errors: usize,
    }

    /// A root that needs escaping.
    const ROOT: &str = "/work/a \"quoted\" \\ root";

    fn by_serde(report: &Report, root: Option<&str>) -> String {
        let errors = report
            .diagnostics
            .iter()
            .filter(|d| d.finding.severity == Severity::Deny)
            .count();
        let document = Document {
            version: VERSION,
            root: root.map(str::to_owned),
            diagnostics: &report.diagnostics,
            errors: report.errors(),
            unresolved: &report.unresolved,
            summary: Summary {
                files: report.inventory.files.iter().filter(|f| f.reported).count(),
                objects: report.objects_checked,
                errors,
                warnings: report.diagnostics.len() - errors,
                unresolved: report.unresolved.len(),
                without_flux_build: report.objects_without_flux_build,
                input_errors: report.errors().len(),
            },
        };
        serde_json::to_string_pretty(&document).unwrap() + "\n"
    }

    fn lint(paths: &[&str]) -> Report {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let paths: Vec<_> = paths.iter().map(|p| root.join(p)).collect();
        crate::lint(
            crate::Inventory::load(&paths),
            &crate::Policy::azure_default(),
        )
    }

    #[test]
    fn reports_match_serde_json_byte_for_byte() {
        // Fixtures: every rule, fixes, unresolved notes, input errors, suppressions.
        let report = lint(&["testdata"]);
        assert!(report.diagnostics.iter().any(|d| d.finding.fix.is_some()));
        assert!(!report.unresolved.is_empty() && !report.errors().is_empty());
        assert_eq!(
            render(&report, Some(Path::new(ROOT))),
            by_serde(&report, Some(ROOT))
        );

        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
        if !corpus.is_dir() {
            crate::test_skipped("no ../shared (the corpus half)");
            return;
        }
        // Its own root: `../shared` may lie inside another Git repository.
        let report = crate::lint(
            crate::Inventory::load_in_root(&corpus, std::slice::from_ref(&corpus)),
            &crate::Policy::azure_default(),
        );
        assert!(report.diagnostics.len() > 1000);
        assert_eq!(render(&report, None), by_serde(&report, None));
    }

    #[test]
    fn every_escape_matches_serde_json() {
        let every_byte: String = (0u8..0x80).map(char::from).collect();
        let texts = [
            every_byte.as_str(),
            "plain",
            "",
            "quote \" backslash \\ slash / tab \t",
            "ünïcödé ✓ and \u{7f} and \u{2028}",
            "line\r\nbreak",
        ];
        for text in texts {
            let mut report = lint(&[]);
            report.diagnostics.push(Diagnostic {
                finding: Finding {
                    code: "FF101",
                    rule: "cross-namespace-source-ref",
                    severity: Severity::Warn,
                    pointer: text.to_owned(),
                    span: Span::new(0, 0),
                    message: text.to_owned(),
                    help: text.to_owned(),
                    fix: Some(Fix {
                        applicability: Applicability::Unsafe,
                        description: text.to_owned(),
                        ops: vec![],
                    }),
                },
                file: text.to_owned(),
                line: 0,
                column: usize::MAX,
                end_line: 10,
                end_column: 1234567,
                object: Some(text.to_owned()),
                namespace_origin: None,
                notes: vec![text.to_owned(), "second".to_owned()],
            });
            assert_eq!(
                render(&report, Some(Path::new(text))),
                by_serde(&report, Some(text)),
                "{text:?}"
            );
        }
    }
}
