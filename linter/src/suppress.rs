//! Inline suppressions: `# fluxfence:ignore FF101[,FF111] -- reason`.
//!
//! A trailing comment applies to its own line; a comment on a line of its own applies to the
//! next line that is not a comment; one in the comment block at the top of a document (before
//! its first field) applies to the whole document.

use std::sync::LazyLock;

use memchr::memmem::Finder;

use crate::yaml::{LineIndex, Span};

const MARKER: &str = "fluxfence:ignore";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// Byte range of the comment.
    pub span: Span,
    /// Whether the comment is alone on its line (so it may be a document-level suppression).
    pub own_line: bool,
    /// The 1-based line whose findings it silences.
    pub target_line: usize,
    pub codes: Vec<String>,
    pub reason: Option<String>,
}

impl Suppression {
    pub fn is_valid(&self) -> bool {
        !self.codes.is_empty() && self.reason.is_some()
    }

    pub fn covers(&self, code: &str) -> bool {
        self.codes.iter().any(|c| c.eq_ignore_ascii_case(code))
    }
}

/// Finds every suppression comment of a file.
pub fn parse(text: &str, lines: &LineIndex) -> Vec<Suppression> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut previous_line = None;
    // Built once: a searcher costs about as much to build as to run over a small file.
    static FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(MARKER));
    for at in FINDER.find_iter(bytes) {
        let line_start = memchr::memrchr(b'\n', &bytes[..at]).map_or(0, |i| i + 1);
        if previous_line.replace(line_start) == Some(line_start) {
            continue; // one suppression per line: the first marker
        }
        let line_end = memchr::memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |i| at + i);
        // The marker is on the line, so it is not empty.
        let range = Span::new(
            line_start,
            line_end - usize::from(bytes[line_end - 1] == b'\r'),
        );
        let line = &text[range.start..range.end];
        let marker_at = at - line_start;
        let (line_no, _) = lines.position(text, line_start);
        let Some(hash_at) = line[..marker_at].rfind('#') else {
            continue;
        };
        let own_line = line[..hash_at].trim().is_empty();
        let rest = &line[marker_at + MARKER.len()..];
        let (codes_text, reason) = match rest.split_once("--") {
            Some((codes, reason)) => (
                codes,
                Some(reason.trim().to_owned()).filter(|r| !r.is_empty()),
            ),
            None => (rest, None),
        };
        let codes = codes_text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        let target_line = if own_line {
            next_content_line(&text[line_end..], line_no)
        } else {
            line_no
        };
        found.push(Suppression {
            span: Span::new(range.start + hash_at, range.end),
            own_line,
            target_line,
            codes,
            reason,
        });
    }
    found
}

/// The number of the first line after `line_no` that is neither blank nor a comment, given
/// the text from the end of line `line_no` on (else `line_no`).
fn next_content_line(after: &str, line_no: usize) -> usize {
    after
        .split('\n')
        .skip(1)
        .position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .map_or(line_no, |i| line_no + 1 + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_and_own_line_comments() {
        let text = "a: 1 # fluxfence:ignore FF101 -- shared mirror\n# fluxfence:ignore FF110,FF111 -- legacy\n\nb: 2\n# fluxfence:ignore FF101\nc: 3\n";
        let found = parse(text, &LineIndex::new(text));
        assert_eq!(found.len(), 3);
        assert_eq!((found[0].target_line, found[0].own_line), (1, false));
        assert_eq!(found[0].reason.as_deref(), Some("shared mirror"));
        assert_eq!(found[1].codes, vec!["FF110", "FF111"]);
        assert_eq!(found[1].target_line, 4);
        assert!(!found[2].is_valid(), "no reason given");
    }
}
