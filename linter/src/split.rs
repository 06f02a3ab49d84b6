//! Cheap work before the YAML parser: cutting a stream into its documents, reading a
//! document's top-level `apiVersion:` and `kind:` lines, and finding a HelmRelease's Helm
//! values, all without parsing.
//!
//! They let the linter spend the parser only where a verdict can come from. A `---` line at
//! column 0 always starts a new document (YAML forbids it inside any scalar), so documents can
//! be parsed apart, on several threads. Most documents of a repository are Deployments,
//! ConfigMaps, dashboards and the like, which no tenancy rule reads: when a document's kind
//! can be read off its lines with certainty, such a document is not parsed at all. Every
//! answer here errs towards parsing: when in doubt, the parser decides.

use std::ops::Range;
use std::sync::LazyLock;

use memchr::memmem::Finder;

use crate::yaml::Excision;

/// A `---` (`DOCUMENT_START`) or `...` (`DOCUMENT_END`) at the start of a line after the
/// first, followed by anything: callers check with [`is_document_start`] or
/// [`is_document_end`]. Searchers are built once: one costs about as much to build as to run
/// over a small file.
pub(crate) static DOCUMENT_START: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\n---"));
pub(crate) static DOCUMENT_END: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n..."));

/// Byte ranges of the documents of `text`, in order, covering it whole: each starts at its
/// `---` line (the first at 0). A stream with a `%` directive stays one range: a directive
/// belongs to the document after it, which the cut would separate it from.
pub fn documents(text: &str) -> Vec<Range<usize>> {
    static DIRECTIVE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n%"));
    let bytes = text.as_bytes();
    if bytes.first() == Some(&b'%') || DIRECTIVE.find(bytes).is_some() {
        return std::iter::once(0..text.len()).collect();
    }
    let mut starts = vec![0];
    starts.extend(
        DOCUMENT_START
            .find_iter(bytes)
            .map(|at| at + 1)
            .filter(|&line| is_document_start(&bytes[line..])),
    );
    let mut ranges: Vec<Range<usize>> = starts.windows(2).map(|pair| pair[0]..pair[1]).collect();
    if let Some(&last) = starts.last() {
        ranges.push(last..text.len());
    }
    ranges
}

/// `---` followed by a blank or the end of the line.
pub(crate) fn is_document_start(line: &[u8]) -> bool {
    line.starts_with(b"---") && ends_marker(line)
}

/// `...` followed by a blank or the end of the line.
pub(crate) fn is_document_end(line: &[u8]) -> bool {
    line.starts_with(b"...") && ends_marker(line)
}

/// Whether the three characters of a marker at the start of `line` stand alone.
fn ends_marker(line: &[u8]) -> bool {
    matches!(line.get(3), None | Some(b' ' | b'\t' | b'\r' | b'\n'))
}

/// Index of the next `\n` at or after `from`, or the length of `bytes`.
fn memchr_newline(bytes: &[u8], from: usize) -> usize {
    memchr::memchr(b'\n', &bytes[from..]).map_or(bytes.len(), |i| from + i)
}

/// What the lines of a document say about its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff<'a> {
    /// A block mapping at column 0 with exactly one `kind:` key whose value is a one-line
    /// plain or quoted word, and its `apiVersion` when that is written the same simple way.
    Object {
        kind: &'a str,
        api_version: Option<&'a str>,
    },
    /// Comments only, or a block mapping at column 0 without a `kind` key: not an object.
    NoKind,
    /// Anything else (flow or JSON style, `kind` written another way, twice or not at all):
    /// only the parser can tell.
    Unsure,
}

/// Reads the top-level `kind:` (and `apiVersion:`) of a document from its lines.
///
/// Every column-0 line of a document whose root is a block mapping is one of its keys (or a
/// comment or marker), so a single `kind: Word` line there is the document's kind. Lines that
/// could mean something else (flow collections, tags, anchors, complex keys, a value that
/// continues on the next line) make the answer [`Sniff::Unsure`]. Reading stops once `kind`
/// and `apiVersion` are known, unless another document may follow in the text.
pub fn sniff_kind(document: &str) -> Sniff<'_> {
    let content = document.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    if content.starts_with('{') {
        return sniff_json(content);
    }
    let bytes = document.as_bytes();
    let mut kind: Option<&str> = None;
    let mut api_version: Option<Option<&str>> = None;
    let mut kind_line_end = None;
    let mut line_start = 0;
    let mut rest_looked_at = false;
    while let Some(&first) = bytes.get(line_start) {
        // With `apiVersion` and `kind` read (and the line after `kind`), the lines left can
        // only be more keys of this mapping, unless another document follows in this piece: a
        // second `kind` there would be a duplicate key, which the parser refuses, and what
        // lint skips it does not validate. Most of a manifest is below its first lines.
        if !rest_looked_at && kind.is_some() && api_version.is_some() && kind_line_end.is_none() {
            rest_looked_at = true;
            if !has_document_marker(&bytes[line_start - 1..]) {
                break;
            }
        }
        let line_end = memchr_newline(bytes, line_start);
        let after_kind = kind_line_end.take() == Some(line_start);
        let this_line = line_start..line_end;
        line_start = line_end + 1;
        // Most lines are indented: they are looked at byte-wise, never sliced as text.
        match first {
            b'\n' | b'\r' | b'#' => continue,
            b' ' | b'\t' => {
                if after_kind && has_content(&bytes[this_line]) {
                    // `kind: Helm` continued on an indented line: a multi-line scalar.
                    return Sniff::Unsure;
                }
                continue;
            }
            _ => {}
        }
        let line = &document[this_line];
        if is_document_start(line.as_bytes()) {
            if line.trim_end().len() > 3 {
                // `--- value` or `--- !tag`: content on the marker line.
                return Sniff::Unsure;
            }
            continue;
        }
        if line.starts_with("...") {
            // A document end may be followed by another document: not one document.
            return Sniff::Unsure;
        }
        if !starts_plain_key(line) {
            return Sniff::Unsure;
        }
        if line.starts_with("kind ") || line.starts_with("kind\t") {
            // `kind : Deployment` is a `kind` key too.
            return Sniff::Unsure;
        }
        if let Some(rest) = line.strip_prefix("kind:") {
            if kind.is_some() {
                return Sniff::Unsure;
            }
            let Some(value) = one_word_value(rest, |b| b.is_ascii_alphanumeric()) else {
                return Sniff::Unsure;
            };
            kind = Some(value);
            kind_line_end = Some(line_end + 1);
        } else if let Some(rest) = line.strip_prefix("apiVersion:") {
            if api_version.is_some() {
                return Sniff::Unsure;
            }
            // Written otherwise (or continued on the next line), it is only left unknown.
            api_version = Some(
                one_word_value(rest, |b| b.is_ascii_alphanumeric() || b"./-".contains(&b))
                    .filter(|_| !continues(&document[line_end..])),
            );
        }
    }
    kind.map_or(Sniff::NoKind, |kind| Sniff::Object {
        kind,
        api_version: api_version.flatten(),
    })
}

/// Whether `text` has a `---` or `...` line after its first.
fn has_document_marker(text: &[u8]) -> bool {
    DOCUMENT_START.find(text).is_some() || DOCUMENT_END.find(text).is_some()
}

/// The top-level `kind` and `apiVersion` of a JSON object, its other members skipped without
/// being built. Text that is not plain JSON (comments, YAML flow style, a `kind` that is not a
/// string, a duplicate key, an escape in the kind) is left to the parser.
fn sniff_json(document: &str) -> Sniff<'_> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        kind: Option<&'a str>,
        #[serde(rename = "apiVersion", borrow)]
        api_version: Option<&'a str>,
    }
    match serde_json::from_str::<Head<'_>>(document) {
        Ok(Head {
            kind: Some(kind),
            api_version,
        }) => Sniff::Object { kind, api_version },
        Ok(Head { kind: None, .. }) => Sniff::NoKind,
        Err(_) => Sniff::Unsure,
    }
}

/// Whether the text after a line's end (its `\n`, or nothing) continues that line's value
/// (an indented line).
fn continues(after: &str) -> bool {
    let Some(rest) = after.as_bytes().strip_prefix(b"\n") else {
        return false;
    };
    let next = &rest[..memchr::memchr(b'\n', rest).unwrap_or(rest.len())];
    matches!(next.first(), Some(b' ' | b'\t')) && has_content(next)
}

/// Whether a line holds more than blanks and a comment.
fn has_content(line: &[u8]) -> bool {
    line.iter()
        .find(|b| !matches!(b, b' ' | b'\t'))
        .is_some_and(|b| !matches!(b, b'#' | b'\r'))
}

/// A column-0 line that starts a plain block-mapping key (`apiVersion:`, `metadata:`).
fn starts_plain_key(line: &str) -> bool {
    line.as_bytes()
        .first()
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// The value of `kind:` when it is one word, plain or quoted, optionally followed by a
/// comment: `kind: HelmRelease`, `kind: "HelmRelease" # why`.
fn one_word_value(rest: &str, word_byte: impl Fn(u8) -> bool) -> Option<&str> {
    let rest = rest.trim_end_matches(['\r', ' ', '\t']);
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let rest = rest.trim_start_matches([' ', '\t']);
    let (quote, body) = match rest.as_bytes().first()? {
        b'"' | b'\'' => (Some(&rest[..1]), &rest[1..]),
        _ => (None, rest),
    };
    let end = body
        .bytes()
        .position(|b| !word_byte(b))
        .unwrap_or(body.len());
    let (word, tail) = body.split_at(end);
    let tail = match quote {
        Some(q) => tail.strip_prefix(q)?,
        None => tail,
    };
    let tail_ok = tail.is_empty()
        || (tail.starts_with([' ', '\t']) && tail.trim_start_matches([' ', '\t']).starts_with('#'));
    (!word.is_empty() && tail_ok).then_some(word)
}

/// Whether some line of `document` reads `kind: <kind>`, however spaced or quoted (a CRD
/// declares its kind under `spec.names` so).
pub fn has_kind_line(document: &str, kind: &str) -> bool {
    memchr::memmem::find_iter(document.as_bytes(), kind.as_bytes()).any(|at| {
        let line_start = document[..at].rfind('\n').map_or(0, |i| i + 1);
        let before = document[line_start..at].trim_end_matches(['"', '\'']);
        let after = document[at + kind.len()..].trim_start_matches(['"', '\'']);
        before.trim() == "kind:"
            && (after.is_empty() || after.starts_with([' ', '\t', '\r', '\n', '#']))
    })
}

/// Where a HelmRelease's `spec.values` block lies, as an [`Excision`] so the parser can leave
/// it out: from just after `values:` to the end of the block's last line (its line break
/// excluded), the content starting on the first line after the key. Offsets are relative to
/// `document`.
///
/// Helm values are most of a repository's HelmRelease bytes, and no rule reads them: the CRD
/// declares them free-form (`x-kubernetes-preserve-unknown-fields`). The block is found by
/// indentation: `values:` alone on its line at the indentation of `spec`'s keys, followed by
/// lines indented deeper.
pub fn helm_values_block(document: &str) -> Option<Excision> {
    let mut lines = Lines::new(document);
    lines.find(|l| l.indent == 0 && is_key_line(l.content, "spec"))?;
    let mut spec_indent = None;
    let mut block: Option<Excision> = None;
    for line in lines {
        if line.blank_or_comment() {
            continue;
        }
        if line.tab_indented {
            return None;
        }
        if let Some(found) = block.as_mut() {
            if line.indent <= spec_indent? {
                break;
            }
            if found.content_start == 0 {
                // A deeper block mapping; a `-` would make the values a list.
                if line.content.starts_with('-') {
                    return None;
                }
                found.content_start = line.start + line.indent;
            }
            found.end = line.end;
            continue;
        }
        let indent = *spec_indent.get_or_insert(line.indent);
        if line.indent == 0 || line.indent < indent {
            return None;
        }
        if line.indent == indent && is_key_line(line.content, "values") {
            block = Some(Excision {
                at: line.start + indent + "values:".len(),
                content_start: 0,
                end: 0,
            });
        }
    }
    block.filter(|b| b.content_start != 0)
}

/// A CRD document without the values of its `description:` keys, for the schema check alone:
/// descriptions are two thirds of the bytes of Flux's CRDs, and no validator reads them.
///
/// Only a `description:` key whose value starts on its own line is left out, with the lines
/// that continue that value (indented deeper, or blank). A property *named* `description` has
/// its schema on the lines below its key and stays, and so does an entry written
/// `- description: …`. `None` when nothing was left out, or when tabs indent the document.
/// Offsets into the result mean nothing in the original: only the parsed tree is of use.
pub fn without_descriptions(document: &str) -> Option<String> {
    let mut kept = String::with_capacity(document.len() / 2);
    let mut dropping_deeper_than: Option<usize> = None;
    let mut dropped = false;
    for line in Lines::new(document) {
        if let Some(indent) = dropping_deeper_than {
            if line.indent > indent || line.content.trim_end_matches('\r').is_empty() {
                continue;
            }
            dropping_deeper_than = None;
        }
        if line.tab_indented {
            return None;
        }
        if has_scalar_description(line.content) {
            dropping_deeper_than = Some(line.indent);
            dropped = true;
            continue;
        }
        kept.push_str(&document[line.start..line.end]);
        kept.push('\n');
    }
    dropped.then_some(kept)
}

/// `description: value` (a value, not a comment, after the blank).
fn has_scalar_description(content: &str) -> bool {
    content
        .strip_prefix("description:")
        .filter(|rest| rest.starts_with([' ', '\t']))
        .map(|rest| rest.trim_matches([' ', '\t', '\r']))
        .is_some_and(|value| !value.is_empty() && !value.starts_with('#'))
}

/// `key:` alone on its line, maybe followed by blanks and a comment.
fn is_key_line(content: &str, key: &str) -> bool {
    let Some(rest) = content.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
        return false;
    };
    let value = rest.trim_matches([' ', '\t', '\r']);
    // `#` starts a comment only after a blank.
    value.is_empty() || (value.starts_with('#') && rest.starts_with([' ', '\t']))
}

struct Line<'a> {
    start: usize,
    end: usize,
    indent: usize,
    tab_indented: bool,
    /// The line after its indentation, line break excluded.
    content: &'a str,
}

impl Line<'_> {
    fn blank_or_comment(&self) -> bool {
        // Byte-wise: Helm values are thousands of deeply indented lines.
        let first = self
            .content
            .bytes()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\r'));
        matches!(first, None | Some(b'#'))
    }
}

struct Lines<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines { text, at: 0 }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        let bytes = self.text.as_bytes();
        if self.at >= bytes.len() {
            return None;
        }
        let start = self.at;
        let end = memchr_newline(bytes, start);
        self.at = end + 1;
        let indent = bytes[start..end].iter().take_while(|&&b| b == b' ').count();
        // Spaces are one byte each: `start + indent` is a character boundary.
        let content = &self.text[start + indent..end];
        Some(Line {
            start,
            end,
            indent,
            tab_indented: content.starts_with('\t'),
            content,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str) -> Vec<&str> {
        documents(text).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn documents_are_cut_at_column_0_markers_only() {
        let text = "a: 1\n---\nb: |\n  ---\n  x\n--- # c\nc: 3\n----\n---\n";
        assert_eq!(
            pieces(text),
            [
                "a: 1\n",
                "---\nb: |\n  ---\n  x\n",
                "--- # c\nc: 3\n----\n",
                "---\n"
            ]
        );
        assert_eq!(pieces("---\na: 1\n"), ["---\na: 1\n"]);
        assert_eq!(pieces("a: 1\r\n---\r\nb: 2"), ["a: 1\r\n", "---\r\nb: 2"]);
        assert_eq!(pieces(""), [""]);
    }

    #[test]
    fn a_directive_keeps_the_stream_whole() {
        let text = "a: 1\n...\n%YAML 1.2\n---\nb: 2\n";
        assert_eq!(pieces(text), [text]);
    }

    #[test]
    fn the_kind_line_is_read_in_its_plain_and_quoted_forms() {
        let object = |kind, api_version| Sniff::Object { kind, api_version };
        let doc = "# header\napiVersion: apps/v1\nkind: Deployment # why\nmetadata:\n  kind: x\n";
        assert_eq!(sniff_kind(doc), object("Deployment", Some("apps/v1")));
        assert_eq!(
            sniff_kind("---\nkind: \"ConfigMap\"\r\n"),
            object("ConfigMap", None)
        );
        assert_eq!(
            sniff_kind("kind: 'Secret'\n\n  # c\nb: 1"),
            object("Secret", None)
        );
        let flux = "apiVersion: \"kustomize.toolkit.fluxcd.io/v1\"\r\nkind: Kustomization\r\n";
        assert_eq!(
            sniff_kind(flux),
            object("Kustomization", Some("kustomize.toolkit.fluxcd.io/v1"))
        );
        // An apiVersion that is not one simple word is unknown, not a reason to give up.
        for (doc, kind) in [
            ("apiVersion: &v v1\nkind: Secret\n", "Secret"),
            (
                "apiVersion: kustomize.config.k8s.io/\n  v1beta1\nkind: Kustomization\n",
                "Kustomization",
            ),
        ] {
            assert_eq!(sniff_kind(doc), object(kind, None), "{doc:?}");
        }
    }

    #[test]
    fn a_json_object_is_read_for_its_top_level_kind_only() {
        let review = r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"object": {"apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease", "spec": {"values": [1, {"kind": "x"}]}}}}"#;
        assert_eq!(
            sniff_kind(review),
            Sniff::Object {
                kind: "AdmissionReview",
                api_version: Some("admission.k8s.io/v1")
            }
        );
        assert_eq!(
            sniff_kind("\u{feff}\n {\"kind\": \"HelmRelease\"}\n"),
            Sniff::Object {
                kind: "HelmRelease",
                api_version: None
            }
        );
        let schema = r#"{"$schema": "x", "properties": {"kind": {"type": "string"}}}"#;
        assert_eq!(sniff_kind(schema), Sniff::NoKind);
        assert_eq!(sniff_kind(r#"{"kind": null}"#), Sniff::NoKind);
    }

    #[test]
    fn crd_descriptions_are_left_out_and_properties_named_description_kept() {
        let crd = "\
spec:
  versions:
  - name: v1
    schema:
      openAPIV3Schema:
        description: HelmRelease is the Schema for the helmreleases API
        properties:
          description:
            description: |-
              A property that is itself called description.

              It keeps its schema.
            type: string
          interval:
            description: Interval at which to reconcile,
              written over two lines.
            pattern: ^([0-9]+s)+$
            type: string
        type: object
";
        let expected = "\
spec:
  versions:
  - name: v1
    schema:
      openAPIV3Schema:
        properties:
          description:
            type: string
          interval:
            pattern: ^([0-9]+s)+$
            type: string
        type: object
";
        assert_eq!(without_descriptions(crd).as_deref(), Some(expected));
        for untouched in [
            "spec:\n  description:\n    type: string\n",
            "spec:\n  description: # a comment\n    type: string\n",
            "spec:\n  description:x\n",
            "spec:\n\tdescription: x\n",
            "spec:\n  columns:\n  - description: x\n    name: y\n",
        ] {
            assert_eq!(without_descriptions(untouched), None, "{untouched:?}");
        }
    }

    #[test]
    fn lines_below_the_kind_and_api_version_are_not_read_unless_a_document_follows() {
        let object = |kind| Sniff::Object {
            kind,
            api_version: Some("v1"),
        };
        // A second `kind` key is a duplicate (an error for the parser): not looked for.
        let doc = "apiVersion: v1\nkind: ConfigMap\ndata:\n  a: b\n[x]\nkind: HelmRelease\n";
        assert_eq!(sniff_kind(doc), object("ConfigMap"));
        // Still read: the line after `kind` (a continued value) and whatever is above.
        assert_eq!(
            sniff_kind("apiVersion: v1\nkind: Config\n  Map\ndata: {}\n"),
            Sniff::Unsure
        );
        assert_eq!(
            sniff_kind("- a\napiVersion: v1\nkind: ConfigMap\n"),
            Sniff::Unsure
        );
        // Another document in the same piece (an end marker, or a stream kept whole for a
        // directive) is read to the end.
        for doc in [
            "apiVersion: v1\nkind: ConfigMap\n...\nkind: HelmRelease\n",
            "apiVersion: v1\nkind: ConfigMap\ndata: {}\n---\nkind: HelmRelease\n",
        ] {
            assert_eq!(sniff_kind(doc), Sniff::Unsure, "{doc:?}");
        }
    }

    #[test]
    fn anything_the_lines_cannot_settle_is_unsure() {
        for doc in [
            "{kind: Deployment}",
            "{\"kind\": \"Deployment\"} # a comment",
            "{\"kind\": \"Deployment\", \"kind\": \"HelmRelease\"}",
            "{\"kind\": \"Helm\\u0052elease\"}",
            "{\"kind\": 7}",
            "{\"kind\": \"Deployment\"",
            "kind: Deployment\nkind: HelmRelease\n",
            "apiVersion: v1\napiVersion: v2\nkind: Deployment\n",
            "kind: Helm\n  Release\n",
            "kind: !!str Deployment\n",
            "kind: &k Deployment\n",
            "kind: *k\n",
            "kind: [Deployment]\n",
            "kind: \"Deploy ment\"\n",
            "kind:Deployment\n",
            "--- {kind: Deployment}\n",
            "? kind\n: Deployment\n",
            "- kind: Deployment\n",
            "kind: Deployment\n...\n---\nkind: HelmRelease\n",
            "\"kind\": Deployment\n",
            "kind : Deployment\n",
            "<<: *base\n",
        ] {
            assert_eq!(sniff_kind(doc), Sniff::Unsure, "{doc:?}");
        }
    }

    fn values_of(doc: &str) -> Option<(&str, &str)> {
        helm_values_block(doc).map(|b| (&doc[b.at..b.end], &doc[b.content_start..b.end]))
    }

    #[test]
    fn the_values_block_is_found_by_indentation() {
        let doc = "kind: HelmRelease\nspec:\n  chart: {}\n  values: # free-form\n    a: 1\n\n    # c\n    b:\n      - x\n  # next\n  interval: 1h\n";
        assert_eq!(
            values_of(doc),
            Some((
                " # free-form\n    a: 1\n\n    # c\n    b:\n      - x",
                "a: 1\n\n    # c\n    b:\n      - x"
            ))
        );
        let last = "spec:\n    values:\n      a: |\n        x\n\n       y\nstatus: {}\n";
        assert_eq!(
            values_of(last).map(|v| v.1),
            Some("a: |\n        x\n\n       y")
        );
        assert_eq!(
            values_of("spec:\r\n  values:\r\n    a: 1\r\n").map(|v| v.1),
            Some("a: 1\r")
        );
    }

    #[test]
    fn values_written_otherwise_are_left_to_the_parser() {
        for doc in [
            "spec:\n  values: {a: 1}\n",
            "spec:\n  values: &v\n    a: 1\n",
            "spec:\n  values:\n  - a\n",
            "spec:\n  values:\n    - a\n",
            "spec:\n  values:\n  next: 1\n",
            "spec:\n  chart:\n    values:\n      a: 1\n",
            "metadata:\n  values:\n    a: 1\n",
            "spec:\n  values:\n\ta: 1\n",
            "spec: {values: {a: 1}}\n",
            "spec:\n  values:\n",
            "spec:\n  values:#c\n    a: 1\n",
        ] {
            assert_eq!(values_of(doc), None, "{doc:?}");
        }
    }

    #[test]
    fn a_block_mapping_without_kind_and_a_comment_are_no_objects() {
        for doc in ["", "# only\n\n", "---\n", "image:\n  kind: x\nkinds: [a]\n"] {
            assert_eq!(sniff_kind(doc), Sniff::NoKind, "{doc:?}");
        }
    }

    #[test]
    fn a_kind_line_is_found_however_spaced_or_quoted() {
        for document in [
            "spec:\n  names:\n    kind: HelmRelease\n",
            "names: {plural: x}\n    kind:  \"HelmRelease\" # why\n",
            "kind: 'HelmRelease'",
        ] {
            assert!(has_kind_line(document, "HelmRelease"), "{document:?}");
        }
        for document in [
            "listKind: HelmReleaseList\n",
            "    kind: HelmReleaseList\n",
            "description: the kind: HelmRelease of it\n",
            "enum: [HelmRelease]\n",
        ] {
            assert!(!has_kind_line(document, "HelmRelease"), "{document:?}");
        }
    }
}
