//! Texts written inside a YAML string (an inline `patch: |` of a kustomization file or of a
//! Flux Kustomization): parsed on their own, their positions mapped back to the file, so that
//! a finding on a value an inline patch wrote points at the line in the file that wrote it.

use super::tree;
use crate::yaml::{self, Node, Span, Value};

/// The documents of the text of `scalar` (a string node of file `file`, whose text is
/// `file_text`), with every span placed in the file. Errors are offsets in the file.
pub fn documents(
    scalar: &Node,
    file_text: &str,
    file: usize,
) -> Result<Vec<Node>, yaml::LoadError> {
    let text = scalar.as_scalar().unwrap_or("");
    let mut roots = Vec::new();
    let offsets = LiteralOffsets::of(scalar, file_text);
    let to_file = |offset: usize| match &offsets {
        Some(o) => o.file_offset(offset),
        None => scalar.span.start,
    };
    yaml::load_documents(text, |document| roots.push(document.root)).map_err(|e| {
        yaml::LoadError {
            offset: to_file(e.offset),
            message: format!("in the inline patch: {}", e.message),
        }
    })?;
    for root in &mut roots {
        match &offsets {
            Some(offsets) => offsets.remap(root),
            None => tree::respan(root, scalar.span),
        }
        tree::place_in_file(root, file);
    }
    Ok(roots)
}

/// Where each line of a literal block scalar's text starts in the file. Built only when the
/// scalar's lines, read back from the file without their indentation, give its text exactly;
/// any other scalar (folded, quoted, with escapes) has its values point at the whole scalar.
struct LiteralOffsets {
    /// `(offset in the text, offset in the file)` of each line start.
    lines: Vec<(usize, usize)>,
    scalar: Span,
}

impl LiteralOffsets {
    fn of(scalar: &Node, file_text: &str) -> Option<LiteralOffsets> {
        let text = scalar.as_scalar()?;
        let written = file_text.get(scalar.span.start..scalar.span.end)?;
        // A scalar's span starts at its `|` indicator or at its content, as the reader gives
        // it; either way the content's lines start on the line after the indicator.
        let body_start = if written.starts_with('|') {
            scalar.span.start + written.find('\n')? + 1
        } else {
            let line_start = file_text[..scalar.span.start]
                .rfind('\n')
                .map_or(0, |i| i + 1);
            let before = file_text[..line_start.saturating_sub(1)].trim_end();
            let indicator = before.rsplit(char::is_whitespace).next().unwrap_or("");
            if !indicator.starts_with('|') {
                return None;
            }
            line_start
        };
        let body = &file_text[body_start..scalar.span.end.max(body_start)];
        let indent = body
            .lines()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start_matches(' ').len())?;
        let mut lines = Vec::new();
        let mut rebuilt = String::with_capacity(text.len());
        let mut at = body_start;
        for line in body.split_inclusive('\n') {
            let content = line
                .get(indent..)
                .unwrap_or_else(|| line.trim_start_matches(' '));
            let skipped = line.len() - content.len();
            lines.push((rebuilt.len(), at + skipped));
            rebuilt.push_str(content.trim_end_matches('\r'));
            at += line.len();
        }
        // Chomping (`|`, `|-`, `|+`) changes only the trailing line breaks.
        let same =
            rebuilt.trim_end_matches('\n').replace("\r\n", "\n") == text.trim_end_matches('\n');
        same.then_some(LiteralOffsets {
            lines,
            scalar: scalar.span,
        })
    }

    fn file_offset(&self, offset: usize) -> usize {
        let line = self
            .lines
            .partition_point(|(start, _)| *start <= offset)
            .saturating_sub(1);
        self.lines
            .get(line)
            .map_or(self.scalar.start, |(start, file)| file + (offset - start))
            .min(self.scalar.end)
    }

    fn remap(&self, node: &mut Node) {
        node.span = Span::new(
            self.file_offset(node.span.start),
            self.file_offset(node.span.end),
        );
        match &mut node.value {
            Value::Scalar(_) => {}
            Value::Seq(items) => items.iter_mut().for_each(|n| self.remap(n)),
            Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                self.remap(k);
                self.remap(v);
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::build::first_document as parse;

    #[test]
    fn values_of_a_literal_block_point_at_their_place_in_the_file() {
        let file = "patches:\n  - patch: |\n      - op: add\n        path: /spec/x\n        value: flux-system\n";
        let root = parse(file);
        let scalar = root
            .get("patches")
            .and_then(|p| p.as_seq())
            .and_then(|p| p.first())
            .and_then(|p| p.get("patch"))
            .expect("patch");
        let documents = documents(scalar, file, 3).expect("parses");
        let value = documents[0]
            .as_seq()
            .and_then(|s| s[0].get("value"))
            .expect("value");
        assert_eq!(&file[value.span.start..value.span.end], "flux-system");
        assert_eq!(value.span.file_index(), Some(3));
    }

    #[test]
    fn a_quoted_patch_points_at_the_whole_string() {
        let file = "patch: \"- op: add\\n  path: /x\\n  value: 1\\n\"\n";
        let root = parse(file);
        let scalar = root.get("patch").expect("patch");
        let documents = documents(scalar, file, 0).expect("parses");
        let value = documents[0]
            .as_seq()
            .and_then(|s| s[0].get("value"))
            .expect("value");
        assert_eq!(value.span.start, scalar.span.start);
        assert_eq!(value.span.end, scalar.span.end);
    }
}
