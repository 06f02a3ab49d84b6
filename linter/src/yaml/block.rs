//! A fast reader for the plain block YAML that Kubernetes manifests are written in.
//!
//! Almost every manifest uses a small part of YAML: block mappings and sequences, quoted
//! scalars on one line, plain ones on one line or folded over several, `|` and `>` block
//! scalars, flow collections on one line, anchors and aliases, and comments. This reader takes
//! exactly that part, line by line, and builds the tree — spans included — that the general
//! loader builds from `saphyr-parser`'s events, for a fraction of the work. Anything else
//! (tags, tabs, directives, quoted scalars over several lines, complex, duplicate or merge
//! keys, and every error) makes it answer `None`: the general loader then reads the document,
//! so rare constructs and all error messages stay that loader's.
//!
//! The spans follow the event positions `saphyr-parser` reports: a block collection ends where
//! the token that closes it starts (or at the end of the text), a missing map value sits on its
//! `:`, a missing sequence item at the end of its `-` line, a block scalar starts at its first
//! content character. The differential tests below hold the two loaders to the same trees.

use std::collections::HashMap;

use memchr::memmem::Finder;

use crate::split;

use super::{
    Document, Excision, MAX_ALIAS_NODES, MAX_DEPTH, Node, Scalar, Span, Value, duplicate_key,
};

/// Keys longer than this are refused by YAML's implicit-key rule; leave them to the parser.
const MAX_KEY_LENGTH: usize = 1024;

/// Reads one document of `text`, the text handed to the parser: at offset `base` of the whole
/// text, with `excision` applied (see [`super::load_documents_in`]).
///
/// `None` when the document is not of the plain block kind this reader takes; `Some(None)` when
/// it holds no node (comments only).
pub(super) fn load(
    text: &str,
    base: usize,
    excision: Option<&Excision>,
) -> Option<Option<Document>> {
    if !has_only_plain_characters(text) || has_document_marker_after_start(text) {
        return None;
    }
    let mut reader = Reader {
        text,
        bytes: text.as_bytes(),
        base,
        excision,
        depth: 0,
        anchors: HashMap::new(),
        open_anchors: Vec::new(),
        alias_budget: MAX_ALIAS_NODES,
        entries: Vec::new(),
        items: Vec::new(),
    };
    reader.document()
}

/// No tabs (they change indentation rules), no control characters and no lone CR, none of
/// the characters that YAML reads as line breaks or byte-order marks or refuses.
fn has_only_plain_characters(text: &str) -> bool {
    let bytes = text.as_bytes();
    // Every byte the parser reads passes here: looked at a chunk at a time, with no exit inside
    // a chunk, which the compiler turns into vector instructions.
    let refused = |b: u8| (b < 0x20 && b != b'\n' && b != b'\r') | (b == 0x7f);
    let controls = bytes
        .chunks(64)
        .any(|chunk| chunk.iter().fold(false, |found, &b| found | refused(b)));
    if controls {
        return false;
    }
    let lone_cr = memchr::memchr_iter(b'\r', bytes).any(|at| bytes.get(at + 1) != Some(&b'\n'));
    if lone_cr {
        return false;
    }
    text.is_ascii()
        || !text.chars().any(|c| {
            matches!(
                c,
                '\u{80}'
                    ..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
            )
        })
}

/// A `...` line, or a `---` line after the first: the end of this document or another one.
/// Searched for as line breaks followed by a marker rather than line by line: documents run
/// to hundreds of lines and hold no marker. (A tab after a marker counts too, but a text with
/// a tab never gets here: [`has_only_plain_characters`] refuses it first.)
fn has_document_marker_after_start(text: &str) -> bool {
    let bytes = text.as_bytes();
    let marker_line_after = |finder: &Finder, is_marker: fn(&[u8]) -> bool| {
        finder
            .find_iter(bytes)
            .any(|at| is_marker(&bytes[at + 1..]))
    };
    split::is_document_end(bytes)
        || marker_line_after(&split::DOCUMENT_START, split::is_document_start)
        || marker_line_after(&split::DOCUMENT_END, split::is_document_end)
}

/// One line of the text.
#[derive(Clone, Copy, Debug)]
struct Line {
    start: usize,
    /// Offset of the first byte that is not a space.
    first: usize,
    /// Where the content ends: before `\r\n` or `\n`, or at the end of the text.
    end: usize,
    /// Where the next line starts (the end of the text after the last line).
    next: usize,
}

impl Line {
    fn indent(&self) -> usize {
        self.first - self.start
    }

    fn is_blank(&self) -> bool {
        self.first == self.end
    }
}

/// What a node follows: a key's `:` or a sequence item's `-`.
#[derive(Clone, Copy)]
enum Indicator {
    MapValue { colon: usize },
    SeqItem,
}

/// `&name` before a node.
struct Anchor<'t> {
    start: usize,
    name: &'t str,
    name_end: usize,
    /// Where the node's text starts on the line (or the line's end).
    after: usize,
}

/// Where plain text on a line stops (see [`Reader::plain_stop`]).
enum PlainStop {
    /// At a `:` that makes the text before it a mapping key.
    MappingColon(usize),
    /// At the `#` of a comment.
    Comment(usize),
    LineEnd,
}

/// A mapping key and where its `:` is.
struct Key {
    node: Node,
    colon: usize,
}

/// What a node read from a line leaves behind: the node, and the next line with content.
type Read = (Node, Option<Line>);

struct Reader<'t> {
    text: &'t str,
    bytes: &'t [u8],
    base: usize,
    excision: Option<&'t Excision>,
    depth: usize,
    /// The nodes anchored so far; a name defined again means its latest node.
    anchors: HashMap<&'t str, Node>,
    /// The anchors of the nodes being read, innermost last.
    open_anchors: Vec<&'t str>,
    /// How many more nodes aliases may copy (see [`MAX_ALIAS_NODES`]).
    alias_budget: usize,
    /// The entries and items of the block collections being read, innermost last: each
    /// collection moves its own into a vector of exactly their number when it ends, so that
    /// trees hold no spare capacity (memory is page faults, and those are slow).
    entries: Vec<(Node, Node)>,
    items: Vec<Node>,
}

impl<'t> Reader<'t> {
    fn document(&mut self) -> Option<Option<Document>> {
        let mut from = 0;
        let mut doc_start = 0;
        if self.bytes.starts_with(b"---") {
            let line = self.line_at(0)?;
            if !self.rest_is_blank(3, line.end) {
                return None;
            }
            doc_start = 3;
            from = line.next;
        }
        let Some(line) = self.content_line(from) else {
            return Some(None);
        };
        let (root, next) = self.block_node(line)?;
        if next.is_some() {
            return None;
        }
        let span = Span::new(self.offset(doc_start).min(root.span.start), root.span.end);
        Some(Some(Document { root, span }))
    }

    /// A block collection starting a line of its own: a sequence or a mapping.
    fn block_node(&mut self, line: Line) -> Option<Read> {
        if self.is_dash(line, line.first) {
            return self.block_seq(line, false);
        }
        let key = self.key(line.first, line.end)?;
        self.block_map(line, line.first, key)
    }

    fn block_map(&mut self, mut line: Line, at: usize, mut key: Key) -> Option<Read> {
        self.enter()?;
        let column = at - line.start;
        let first_entry = self.entries.len();
        let next = loop {
            if is_merge_key(&key.node) {
                return None;
            }
            let (value, next) = self.map_value(line, key.colon, column)?;
            self.entries.push((key.node, value));
            match next {
                Some(n) if n.indent() == column && !self.is_dash(n, n.first) => {
                    key = self.key(n.first, n.end)?;
                    line = n;
                }
                Some(n) if n.indent() < column => break Some(n),
                Some(_) => return None,
                None => break None,
            }
        };
        self.depth -= 1;
        let entries: Vec<_> = self.entries.drain(first_entry..).collect();
        if duplicate_key(&entries).is_some() {
            return None;
        }
        let end = self.end_before(next);
        Some((self.node(Value::Map(entries), at, end), next))
    }

    /// The value after a key's `:`, on the same line or on the lines below.
    fn map_value(&mut self, line: Line, colon: usize, column: usize) -> Option<Read> {
        let at = self.skip_spaces(colon + 1, line.end);
        self.node_after_indicator(line, at, column, Indicator::MapValue { colon })
    }

    /// The node after a key's `:` or an item's `-`, whose text starts at `at` on `line` (or
    /// that is on the lines below when `at` is the end of the line or a comment), with its
    /// anchor if it has one. `column` is the indentation of the collection it is in.
    fn node_after_indicator(
        &mut self,
        line: Line,
        at: usize,
        column: usize,
        indicator: Indicator,
    ) -> Option<Read> {
        let anchor = if at < line.end && self.bytes[at] == b'&' {
            Some(self.anchor(at, line.end)?)
        } else {
            None
        };
        let at = anchor.as_ref().map_or(at, |a| a.after);
        if let Some(a) = &anchor {
            self.open_anchors.push(a.name);
        }
        let in_map = matches!(indicator, Indicator::MapValue { .. });
        let (mut node, next) = if at == line.end || self.bytes[at] == b'#' {
            let next = self.content_line(line.next);
            match next {
                Some(n) if n.indent() > column => self.block_node(n)?,
                // A sequence may sit at its key's indentation.
                Some(n) if in_map && n.indent() == column && self.is_dash(n, n.first) => {
                    if anchor.is_some() {
                        return None;
                    }
                    self.block_seq(n, true)?
                }
                _ => {
                    let null = match (&anchor, indicator) {
                        (Some(a), _) => self.scalar("", true, a.start, a.name_end),
                        (None, Indicator::MapValue { colon }) => self.null(colon),
                        (None, Indicator::SeqItem) => self.null(line.end),
                    };
                    (null, next)
                }
            }
        } else if self.bytes[at] == b'*' {
            if anchor.is_some() {
                return None;
            }
            self.alias(line, at)?
        } else if !in_map && self.is_dash(line, at) {
            return None;
        } else if let Some(key) = (!in_map).then(|| self.key(at, line.end)).flatten() {
            if anchor.is_some() {
                // The anchor would be the key's.
                return None;
            }
            self.block_map(line, at, key)?
        } else {
            if anchor.is_some() && matches!(self.bytes[at], b'|' | b'>') {
                return None;
            }
            self.inline_value(line, at, column)?
        };
        if let Some(anchor) = anchor {
            self.open_anchors.pop();
            // A name defined again inside the node it anchors: an alias after both means the
            // inner node, defined later in the text, but this reader would record the outer
            // one last. Rare; left to the parser.
            if self.open_anchors.contains(&anchor.name) {
                return None;
            }
            node.span.start = self.offset(anchor.start);
            self.anchors.insert(anchor.name, node.clone());
        }
        Some((node, next))
    }

    /// `&name` at `at`, and the spaces after it.
    fn anchor(&self, at: usize, end: usize) -> Option<Anchor<'t>> {
        let name_end = self.name_end(at + 1, end)?;
        Some(Anchor {
            start: at,
            name: &self.text[at + 1..name_end],
            name_end,
            after: self.skip_spaces(name_end, end),
        })
    }

    /// `*name` at `at`: a copy of the node anchored so, spanning the alias.
    fn alias(&mut self, line: Line, at: usize) -> Option<Read> {
        let name_end = self.name_end(at + 1, line.end)?;
        if !self.rest_is_blank(name_end, line.end) {
            return None;
        }
        let node = self.anchors.get(&self.text[at + 1..name_end])?;
        // Left to the parser, which refuses it, past the budget.
        self.alias_budget = self.alias_budget.checked_sub(node.count())?;
        let node = Node {
            value: node.value.clone(),
            span: Span::new(self.offset(at), self.offset(name_end)),
        };
        Some((node, self.content_line(line.next)))
    }

    /// Where an anchor or alias name that starts at `at` ends; `None` when it is empty or holds
    /// a flow indicator.
    fn name_end(&self, at: usize, end: usize) -> Option<usize> {
        let length = self.bytes[at..end]
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(end - at);
        let name = &self.bytes[at..at + length];
        let plain = !name.is_empty() && !name.iter().any(|b| b",[]{}".contains(b));
        plain.then_some(at + length)
    }

    /// A block sequence whose first `-` starts `line`; `indentless` when it is a map value at
    /// its key's indentation (it then ends at the first line there that is not an item).
    fn block_seq(&mut self, mut line: Line, indentless: bool) -> Option<Read> {
        self.enter()?;
        let column = line.indent();
        let dash = line.first;
        let mut first_item = None;
        let first_item_index = self.items.len();
        let next = loop {
            let at = self.skip_spaces(line.first + 1, line.end);
            let empty = at == line.end || self.bytes[at] == b'#';
            first_item.get_or_insert(if empty { line.end } else { at });
            let (item, next) = self.node_after_indicator(line, at, column, Indicator::SeqItem)?;
            self.items.push(item);
            match next {
                Some(n) if n.indent() == column && self.is_dash(n, n.first) => line = n,
                Some(n) if n.indent() < column || (indentless && n.indent() == column) => {
                    break Some(n);
                }
                Some(_) => return None,
                None => break None,
            }
        };
        self.depth -= 1;
        // The parser starts an indentless sequence at its first item, not at the `-`.
        let start = if indentless {
            first_item.unwrap_or(dash)
        } else {
            dash
        };
        let end = self.end_before(next);
        let items = self.items.drain(first_item_index..).collect();
        Some((self.node(Value::Seq(items), start, end), next))
    }

    /// A value that starts at `at` on `line`, in a collection at `column`.
    fn inline_value(&mut self, line: Line, at: usize, column: usize) -> Option<Read> {
        let (node, after) = match self.bytes[at] {
            b'"' | b'\'' => self.quoted(at, line.end)?,
            b'[' | b'{' => self.flow(at, line.end, false)?,
            b'|' | b'>' => return self.block_scalar(line, at, column),
            _ => {
                let end = self.plain_end(at, line.end)?;
                if end == self.trim_end(at, line.end) {
                    return self.plain_lines(line, at, end, column);
                }
                (self.scalar(&self.text[at..end], true, at, end), end)
            }
        };
        if !self.rest_is_blank(after, line.end) {
            return None;
        }
        Some((node, self.content_line(line.next)))
    }

    /// A plain scalar that starts at `at` on `line` (its text there ending at `end`, with no
    /// comment after it) and may go on over the lines below that are indented deeper than its
    /// collection's `column`: line breaks fold into spaces, empty lines into `\n`s.
    fn plain_lines(&self, line: Line, at: usize, end: usize, column: usize) -> Option<Read> {
        let mut text: Option<String> = None;
        let mut last_end = end;
        let mut empty_lines = 0;
        let mut cursor = line.next;
        while let Some(next) = self.line_at(cursor) {
            if next.is_blank() {
                empty_lines += 1;
                cursor = next.next;
                continue;
            }
            if next.indent() <= column || self.bytes[next.first] == b'#' {
                break;
            }
            // A continuation that could be read another way is left to the parser.
            let continued_end = self.plain_continuation_end(next.first, next.end)?;
            let commented = continued_end != self.trim_end(next.first, next.end);
            let text = text.get_or_insert_with(|| self.text[at..end].to_owned());
            if empty_lines == 0 {
                text.push(' ');
            } else {
                text.extend(std::iter::repeat_n('\n', empty_lines));
            }
            text.push_str(&self.text[next.first..continued_end]);
            last_end = continued_end;
            empty_lines = 0;
            cursor = next.next;
            if commented {
                break;
            }
        }
        let node = match text {
            Some(text) => self.scalar_owned(text, true, at, last_end),
            None => self.scalar(&self.text[at..end], true, at, end),
        };
        let after = self
            .line_at(self.line_start(last_end))
            .map_or(self.bytes.len(), |l| l.next);
        Some((node, self.content_line(after)))
    }

    /// Where the line holding `at` starts.
    fn line_start(&self, at: usize) -> usize {
        memchr::memrchr(b'\n', &self.bytes[..at]).map_or(0, |i| i + 1)
    }

    /// A one-line plain scalar in block context: where it ends, comment and trailing spaces
    /// excluded. `None` when it is not one (an indicator first, or `: ` inside).
    fn plain_end(&self, at: usize, end: usize) -> Option<usize> {
        if !self.may_start_plain(at, end) {
            return None;
        }
        self.plain_continuation_end(at, end)
    }

    /// Like [`Reader::plain_end`] for a line that goes on with a plain scalar: any character
    /// may start it (`&&` of a wrapped CEL rule, say), but `-`, `?` or `:` and a space are left
    /// to the parser.
    fn plain_continuation_end(&self, at: usize, end: usize) -> Option<usize> {
        if matches!(self.bytes[at], b'-' | b'?' | b':') && !self.may_start_plain(at, end) {
            return None;
        }
        match self.plain_stop(at, end) {
            PlainStop::MappingColon(_) => None,
            PlainStop::Comment(stop) => Some(self.trim_end(at, stop)),
            PlainStop::LineEnd => Some(self.trim_end(at, end)),
        }
    }

    /// What ends plain text that starts at `at` on a line whose content ends at `end`: the
    /// first `:` followed by a space or the line's end, or a comment, whichever comes first.
    fn plain_stop(&self, at: usize, end: usize) -> PlainStop {
        let bytes = &self.bytes[..end];
        let mut from = at;
        while let Some(found) = memchr::memchr2(b':', b'#', &bytes[from..]) {
            let p = from + found;
            if bytes[p] == b'#' {
                if p == at || bytes[p - 1] == b' ' {
                    return PlainStop::Comment(p);
                }
            } else if p + 1 == end || bytes[p + 1] == b' ' {
                return PlainStop::MappingColon(p);
            }
            from = p + 1;
        }
        PlainStop::LineEnd
    }

    fn may_start_plain(&self, at: usize, end: usize) -> bool {
        match self.bytes[at] {
            b'&' | b'*' | b'!' | b'%' | b'@' | b'`' | b',' | b'[' | b']' | b'{' | b'}' | b'#'
            | b'|' | b'>' | b'"' | b'\'' => false,
            b'-' | b'?' | b':' => at + 1 < end && self.bytes[at + 1] != b' ',
            _ => true,
        }
    }

    /// A mapping key at `at`: a plain or quoted scalar followed by `:` and a space or the end
    /// of the line.
    fn key(&self, at: usize, end: usize) -> Option<Key> {
        let bytes = self.bytes;
        let (node, colon) = if matches!(bytes[at], b'"' | b'\'') {
            let (node, after) = self.quoted(at, end)?;
            let colon = self.skip_spaces(after, end);
            if colon == end || bytes[colon] != b':' {
                return None;
            }
            (node, colon)
        } else {
            if !self.may_start_plain(at, end) {
                return None;
            }
            let PlainStop::MappingColon(colon) = self.plain_stop(at, end) else {
                return None;
            };
            let key_end = self.trim_end(at, colon);
            (
                self.scalar(&self.text[at..key_end], true, at, key_end),
                colon,
            )
        };
        let separated = colon + 1 == end || bytes[colon + 1] == b' ';
        (separated && colon - at <= MAX_KEY_LENGTH).then_some(Key { node, colon })
    }

    /// A `|` or `>` scalar whose header is at `at`, in a collection at `column`.
    fn block_scalar(&mut self, header: Line, at: usize, column: usize) -> Option<Read> {
        let literal = self.bytes[at] == b'|';
        let mut i = at + 1;
        let chomp = match self.bytes.get(i).filter(|_| i < header.end) {
            Some(b'-') => Chomp::Strip,
            Some(b'+') => Chomp::Keep,
            _ => Chomp::Clip,
        };
        if chomp != Chomp::Clip {
            i += 1;
        }
        if !self.rest_is_blank(i, header.end) {
            // An indentation indicator, or anything else after the header.
            return None;
        }
        let mut text = String::new();
        let mut indent = None;
        let mut start = None;
        let mut empty_lines = 0;
        let mut last: Option<Line> = None;
        let mut cursor = header.next;
        let stop = loop {
            let Some(line) = self.line_at(cursor) else {
                break None;
            };
            if line.is_blank() {
                if indent.is_none_or(|n| line.end - line.start > n) || line.next == line.end {
                    // Leading empty lines, spaces that are content, or a last line without a
                    // break: left to the parser.
                    return None;
                }
                empty_lines += 1;
                cursor = line.next;
                continue;
            }
            let n = *indent.get_or_insert(line.indent());
            if n <= column {
                return None;
            }
            if line.indent() < n {
                break Some(line);
            }
            let content = &self.text[line.start + n..line.end];
            if last.is_some() {
                if literal {
                    text.extend(std::iter::repeat_n('\n', empty_lines + 1));
                } else if empty_lines == 0 {
                    text.push(' ');
                } else {
                    text.extend(std::iter::repeat_n('\n', empty_lines));
                }
            }
            if !literal && content.starts_with(' ') {
                // More-indented lines fold differently.
                return None;
            }
            text.push_str(content);
            start.get_or_insert(line.start + n);
            empty_lines = 0;
            last = Some(line);
            cursor = line.next;
        };
        let (start, last) = (start?, last?);
        if last.next == last.end {
            // The text ends without a line break after the content.
            return None;
        }
        match chomp {
            Chomp::Strip => {}
            Chomp::Clip => text.push('\n'),
            Chomp::Keep => text.extend(std::iter::repeat_n('\n', empty_lines + 1)),
        }
        let end = stop.map_or(self.bytes.len(), |line| line.first);
        let node = self.scalar_owned(text, false, start, end);
        let next = match stop {
            Some(line) => self.content_line(line.start),
            None => None,
        };
        Some((node, next))
    }

    /// A flow collection that opens at `at` and closes on the same line; `nested` in another.
    fn flow(&mut self, at: usize, end: usize, nested: bool) -> Option<(Node, usize)> {
        self.enter()?;
        let close = if self.bytes[at] == b'[' { b']' } else { b'}' };
        let mut items = Vec::new();
        let mut entries = Vec::new();
        let mut i = self.skip_spaces(at + 1, end);
        while i < end && self.bytes[i] != close {
            let (node, after) = self.flow_item(i, end)?;
            i = self.skip_spaces(after, end);
            let colon = i < end && self.bytes[i] == b':';
            if close == b'}' {
                if !colon || i + 1 == end || self.bytes[i + 1] != b' ' || is_merge_key(&node) {
                    return None;
                }
                let (value, after) = self.flow_item(self.skip_spaces(i + 1, end), end)?;
                entries.push((node, value));
                i = self.skip_spaces(after, end);
            } else if colon {
                return None;
            } else {
                items.push(node);
            }
            if i < end && self.bytes[i] == b',' {
                i = self.skip_spaces(i + 1, end);
                if close == b'}' && i < end && self.bytes[i] == close {
                    // The parser ends such a map at its trailing comma.
                    return None;
                }
            } else if i == end || self.bytes[i] != close {
                return None;
            }
        }
        if i == end {
            return None;
        }
        self.depth -= 1;
        let value = if close == b']' {
            Value::Seq(items)
        } else if duplicate_key(&entries).is_some() {
            return None;
        } else {
            Value::Map(entries)
        };
        // The parser's closing token takes the blanks after it: up to the next token inside
        // another flow collection, else to the end of the line (a comment included; the caller
        // makes sure nothing else follows).
        let node_end = if nested {
            self.skip_spaces(i + 1, end)
        } else {
            end
        };
        Some((self.node(value, at, node_end), i + 1))
    }

    fn flow_item(&mut self, at: usize, end: usize) -> Option<(Node, usize)> {
        match self.bytes.get(at).filter(|_| at < end)? {
            b'[' | b'{' => self.flow(at, end, true),
            b'"' | b'\'' => self.quoted(at, end),
            _ => {
                let bytes = &self.bytes[..end];
                // In flow, `-`, `?` and `:` start a plain scalar only before a safe character.
                let indicator_first = matches!(bytes[at], b'-' | b'?' | b':')
                    && matches!(bytes.get(at + 1), Some(b',' | b'[' | b']' | b'{' | b'}'));
                if indicator_first || !self.may_start_plain(at, end) {
                    return None;
                }
                let mut stop = at;
                while stop < end {
                    match bytes[stop] {
                        b',' | b']' | b'}' => break,
                        b'[' | b'{' | b'#' => return None,
                        // `a -,`: the parser refuses a `-` after a space when a flow
                        // indicator follows it, inside a scalar as at its start.
                        b'-' if bytes[stop - 1] == b' '
                            && matches!(
                                bytes.get(stop + 1),
                                Some(b',' | b'[' | b']' | b'{' | b'}')
                            ) =>
                        {
                            return None;
                        }
                        b':' if matches!(
                            bytes.get(stop + 1),
                            None | Some(b' ' | b',' | b']' | b'}')
                        ) =>
                        {
                            break;
                        }
                        _ => stop += 1,
                    }
                }
                let stop = self.trim_end(at, stop);
                Some((self.scalar(&self.text[at..stop], true, at, stop), stop))
            }
        }
    }

    /// A single- or double-quoted scalar that closes on its line: the node, and the offset
    /// after the closing quote.
    fn quoted(&self, at: usize, end: usize) -> Option<(Node, usize)> {
        let bytes = &self.bytes[..end];
        let quote = bytes[at];
        let mut text = String::new();
        let mut run = at + 1;
        let mut from = run;
        loop {
            let p = from
                + if quote == b'"' {
                    memchr::memchr2(b'"', b'\\', &bytes[from..])?
                } else {
                    memchr::memchr(b'\'', &bytes[from..])?
                };
            text.push_str(&self.text[run..p]);
            if bytes[p] == b'\\' {
                let (c, length) = escape(&bytes[p + 1..])?;
                text.push(c);
                from = p + 1 + length;
            } else if quote == b'\'' && bytes.get(p + 1) == Some(&b'\'') {
                text.push('\'');
                from = p + 2;
            } else {
                return Some((self.scalar_owned(text, false, at, p + 1), p + 1));
            }
            run = from;
        }
    }

    /// The line that starts at `start`, if the text goes on that far.
    fn line_at(&self, start: usize) -> Option<Line> {
        let rest = self.bytes.get(start..).filter(|rest| !rest.is_empty())?;
        let (end, next) = match memchr::memchr(b'\n', rest) {
            Some(i) if i > 0 && rest[i - 1] == b'\r' => (start + i - 1, start + i + 1),
            Some(i) => (start + i, start + i + 1),
            None => (self.bytes.len(), self.bytes.len()),
        };
        let first = self.skip_spaces(start, end);
        Some(Line {
            start,
            first,
            end,
            next,
        })
    }

    /// The first line at or after `start` that is neither blank nor only a comment.
    fn content_line(&self, mut start: usize) -> Option<Line> {
        loop {
            let line = self.line_at(start)?;
            if !line.is_blank() && self.bytes[line.first] != b'#' {
                return Some(line);
            }
            start = line.next;
        }
    }

    fn is_dash(&self, line: Line, at: usize) -> bool {
        self.bytes[at] == b'-' && (at + 1 == line.end || self.bytes[at + 1] == b' ')
    }

    /// Only spaces from `from` to `end`, or spaces and then a comment.
    fn rest_is_blank(&self, from: usize, end: usize) -> bool {
        let at = self.skip_spaces(from, end);
        at == end || (at > from && self.bytes[at] == b'#')
    }

    fn skip_spaces(&self, mut at: usize, end: usize) -> usize {
        while at < end && self.bytes[at] == b' ' {
            at += 1;
        }
        at
    }

    fn trim_end(&self, start: usize, mut end: usize) -> usize {
        while end > start && self.bytes[end - 1] == b' ' {
            end -= 1;
        }
        end
    }

    /// Where a block collection that `next` closes ends: where `next`'s content starts.
    fn end_before(&self, next: Option<Line>) -> usize {
        next.map_or(self.bytes.len(), |line| line.first)
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    fn offset(&self, at: usize) -> usize {
        let offset = self.base + at;
        self.excision.map_or(offset, |e| e.original_offset(offset))
    }

    fn node(&self, value: Value, start: usize, end: usize) -> Node {
        Node {
            value,
            span: Span::new(self.offset(start), self.offset(end)),
        }
    }

    fn scalar(&self, text: &str, plain: bool, start: usize, end: usize) -> Node {
        self.node(
            Value::Scalar(Scalar {
                text: text.into(),
                plain,
            }),
            start,
            end,
        )
    }

    fn scalar_owned(&self, text: String, plain: bool, start: usize, end: usize) -> Node {
        self.node(
            Value::Scalar(Scalar {
                text: text.into_boxed_str(),
                plain,
            }),
            start,
            end,
        )
    }

    fn null(&self, at: usize) -> Node {
        self.scalar("", true, at, at)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Chomp {
    Strip,
    Clip,
    Keep,
}

fn is_merge_key(key: &Node) -> bool {
    matches!(&key.value, Value::Scalar(s) if s.plain && &*s.text == "<<")
}

/// The character a double-quoted escape stands for (after its `\`), and how many bytes the
/// escape takes after the `\`.
fn escape(bytes: &[u8]) -> Option<(char, usize)> {
    let c = match bytes.first()? {
        b'0' => '\0',
        b'a' => '\u{7}',
        b'b' => '\u{8}',
        b't' => '\t',
        b'n' => '\n',
        b'v' => '\u{b}',
        b'f' => '\u{c}',
        b'r' => '\r',
        b'e' => '\u{1b}',
        b' ' => ' ',
        b'"' => '"',
        b'/' => '/',
        b'\\' => '\\',
        b'N' => '\u{85}',
        b'_' => '\u{a0}',
        b'L' => '\u{2028}',
        b'P' => '\u{2029}',
        b'x' => return hex_escape(bytes, 2),
        b'u' => return hex_escape(bytes, 4),
        b'U' => return hex_escape(bytes, 8),
        _ => return None,
    };
    Some((c, 1))
}

fn hex_escape(bytes: &[u8], digits: usize) -> Option<(char, usize)> {
    let hex = bytes.get(1..=digits)?;
    let hex = std::str::from_utf8(hex).ok()?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let code = u32::from_str_radix(hex, 16).ok()?;
    Some((char::from_u32(code)?, 1 + digits))
}

/// Reads one document (`text`, as [`crate::split::documents`] cuts them) with this reader and
/// with the general loader: `Ok(true)` when this reader took it and built the loader's tree,
/// spans included; `Ok(false)` when it left it to the loader; `Err` says where the two first
/// differ, or that this reader took a document the parser refuses.
pub(super) fn compare_with_parser(text: &str) -> Result<bool, String> {
    let Some(fast) = load(text, 0, None) else {
        return Ok(false);
    };
    let mut slow = Vec::new();
    super::parse_events(text, text, 0, None, |d| slow.push(d))
        .map_err(|e| format!("read a document the parser refuses ({e:?})"))?;
    let fast: Vec<Document> = fast.into_iter().collect();
    if fast.len() != slow.len() {
        return Err(format!(
            "read {} documents, the parser {}",
            fast.len(),
            slow.len()
        ));
    }
    for (fast, slow) in fast.iter().zip(&slow) {
        if let Some(difference) = first_difference(&fast.root, &slow.root, "") {
            return Err(difference);
        }
        if fast.span != slow.span {
            return Err(format!(
                "document span: read {:?} / parser {:?}",
                fast.span, slow.span
            ));
        }
    }
    Ok(true)
}

/// Where two trees first differ, as a path and both nodes' heads.
fn first_difference(fast: &Node, slow: &Node, path: &str) -> Option<String> {
    let head = |n: &Node| match &n.value {
        Value::Scalar(s) => format!("{:?} plain={} {:?}", s.text, s.plain, n.span),
        Value::Seq(items) => format!("seq of {} {:?}", items.len(), n.span),
        Value::Map(entries) => format!("map of {} {:?}", entries.len(), n.span),
    };
    let differs = || {
        Some(format!(
            "at {path}: read {} / parser {}",
            head(fast),
            head(slow)
        ))
    };
    if fast.span != slow.span {
        return differs();
    }
    match (&fast.value, &slow.value) {
        (Value::Seq(a), Value::Seq(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (a, b))| first_difference(a, b, &format!("{path}[{i}]"))),
        (Value::Map(a), Value::Map(b)) if a.len() == b.len() => {
            a.iter().zip(b).find_map(|((ka, va), (kb, vb))| {
                let at = format!("{path}.{}", kb.as_scalar().unwrap_or("?"));
                first_difference(ka, kb, &at).or_else(|| first_difference(va, vb, &at))
            })
        }
        (a, b) if a == b => None,
        _ => differs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    #[test]
    fn refuses_control_characters_wherever_they_fall_in_a_chunk() {
        assert!(has_only_plain_characters("a: 1\r\nb: 2\n"));
        assert!(has_only_plain_characters("a: \u{e9}t\u{e9}\n"));
        for bad in ['\t', '\u{0}', '\u{1b}', '\u{7f}'] {
            // First, last and middle byte of a chunk, and past the first chunk.
            for at in [0, 31, 63, 64, 100, 127, 128] {
                let mut text = "x".repeat(130);
                text.replace_range(at..=at, &bad.to_string());
                assert!(!has_only_plain_characters(&text), "{bad:?} at {at}");
            }
        }
        assert!(!has_only_plain_characters("a: 1\rb: 2\n"), "a lone CR");
        assert!(!has_only_plain_characters("a: \u{2028}\n"));
    }

    #[test]
    fn finds_document_markers_after_the_first_line() {
        for (text, found) in [
            ("a: 1\n---\nb: 2\n", true),
            ("a: 1\n--- b: 2\n", true),
            ("a: 1\r\n---\r\nb: 2\r\n", true),
            ("a: 1\n---", true),
            ("a: 1\n...\n", true),
            ("a: 1\n...", true),
            ("...\n", true),
            ("... \na: 1\n", true),
            ("---\na: 1\n", false),
            ("--- \na: 1\n", false),
            ("a: 1\n----\n", false),
            ("a: 1\n---x\n", false),
            ("a: 1\n....\n", false),
            ("a: 1\n --- \n", false),
            ("a: 1\n--\n", false),
            ("a: 1\n", false),
            ("a: ...\n", false),
        ] {
            assert_eq!(has_document_marker_after_start(text), found, "{text:?}");
        }
    }

    /// Whether this reader took `text`; when it did, its tree must be the general loader's.
    fn agrees(text: &str, origin: &str) -> bool {
        match compare_with_parser(text) {
            Ok(taken) => taken,
            Err(difference) => panic!("{origin}: {difference}\n{text}"),
        }
    }

    fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                yaml_files(&path, out);
            } else if path
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            {
                out.push(path);
            }
        }
    }

    /// Every document of the fixtures and of the corpus, or `None` (and a note) where
    /// `../shared` is not beside the repository: the thresholds below are about real
    /// repositories, which the fixtures alone (odd and broken on purpose) are not.
    fn documents() -> Option<Vec<(String, String)>> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        if !root.join("../shared/corpus").is_dir() {
            crate::test_skipped("no ../shared");
            return None;
        }
        let mut files = Vec::new();
        for dir in [
            "testdata",
            "charts",
            "../shared/corpus",
            "../shared/flux-crds",
        ] {
            yaml_files(&root.join(dir), &mut files);
        }
        files.sort();
        let mut documents = Vec::new();
        for path in files {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
            for range in crate::split::documents(text) {
                let document = &text[range];
                // CRDs of the repository are read without their descriptions.
                if let Some(shortened) = crate::split::without_descriptions(document) {
                    documents.push((format!("{} (shortened)", path.display()), shortened));
                }
                documents.push((path.display().to_string(), document.to_owned()));
            }
        }
        Some(documents)
    }

    /// The document this reader makes of `text`, which must be the parser's.
    fn read_as_the_parser_does(text: &str) -> Document {
        assert!(agrees(text, "inline"), "not taken: {text:?}");
        load(text, 0, None).flatten().expect("a document")
    }

    fn assert_left_to_the_parser(text: &str) {
        assert!(load(text, 0, None).is_none(), "taken: {text:?}");
    }

    #[test]
    fn reads_manifests_exactly_as_the_parser_does() {
        let Some(documents) = documents() else { return };
        let taken = documents
            .iter()
            .filter(|(origin, text)| agrees(text, origin))
            .count();
        // The reader is only worth having if it takes nearly everything real repositories hold.
        assert!(
            taken * 100 >= documents.len() * 95,
            "took {taken} of {} documents",
            documents.len()
        );
    }

    /// Small deterministic edits of real documents, so that the reader meets broken and odd
    /// YAML: whatever it takes must still be what the parser reads. A longer search:
    /// `FLUXFENCE_EDIT_SEED=N FLUXFENCE_EDIT_ROUNDS=60 cargo test --release edited_manifests`.
    #[test]
    fn edited_manifests_are_read_as_the_parser_does_or_left_to_it() {
        let setting = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let rounds = setting("FLUXFENCE_EDIT_ROUNDS", 12);
        // The default run edits every seventh short document; a longer one edits them all.
        let (step, longest) = if rounds > 12 { (1, 20_000) } else { (7, 4096) };
        const EDITS: [&str; 47] = [
            " ", "  ", "-", "- ", ":", ": ", "#", " #", "'", "\"", "|", ">", "|-", "\n", "\n  ",
            "[", "]", "{", "}", ", ", "&a ", "*a", "\\", "\r\n", "---", "...", "? ", "!", "%", "~",
            "<<: ", "\\u00e9", "é", "\r", "\\x4", ": |", ": >-", "- - ", "&b", "*b ", " &a",
            "\"\\", "''", "\n- ", "\n  - ", "\n    ", "\n\n",
        ];
        let Some(documents) = documents() else { return };
        let mut state: u64 = setting("FLUXFENCE_EDIT_SEED", 0x9e37_79b9_7f4a_7c15);
        let mut next = move |bound: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::try_from(state >> 33).unwrap_or(0) % bound.max(1)
        };
        let mut taken = 0;
        for (origin, text) in documents
            .iter()
            .step_by(step)
            .filter(|(_, t)| t.len() < longest)
        {
            for _ in 0..rounds {
                let mut edited = text.clone();
                for _ in 0..1 + next(3) {
                    let mut at = next(edited.len() + 1);
                    while !edited.is_char_boundary(at) {
                        at -= 1;
                    }
                    if next(3) == 0 {
                        let mut end = (at + 1 + next(3)).min(edited.len());
                        while !edited.is_char_boundary(end) {
                            end += 1;
                        }
                        edited.replace_range(at..end, "");
                    } else {
                        edited.insert_str(at, EDITS[next(EDITS.len())]);
                    }
                }
                taken += usize::from(agrees(&edited, origin));
            }
        }
        assert!(taken > 1000, "only {taken} edited documents were taken");
    }

    #[test]
    fn constructs_outside_the_plain_block_kind_are_left_to_the_parser() {
        for text in [
            "a: &x\n- y\n",
            "base: &b {x: 1}\nobj:\n  <<: *b\n",
            "a: *undefined\n",
            "a: !tag 1\n",
            "a:\n\tb: 1\n",
            "a: 'multi\n  line'\n",
            "? complex\n: key\n",
            "a: 1\na: 2\n",
            "<<: {a: 1}\n",
            "%YAML 1.2\n---\na: 1\n",
            "a: 1\n---\nb: 2\n",
            "a: |2\n   x\n",
            "a: >\n  x\n    more\n",
            "a: [1,\n  2]\n",
            "- - nested\n",
            "a: b: c\n",
            "plain scalar root\n",
            // Each of these once read differently from the parser.
            "a: |\n  x\n  ",
            "k: [-]\n",
            "a:\n...  b: 1\n",
            "a: {b: c, }\n",
            // An anchor defined again inside its own node: the alias means the inner one.
            "a: &r\n  b: &r\n  c: 1\nd: *r\n",
            // The parser refuses `-` then a flow indicator after a space, mid-scalar too.
            "m: {k: a -, n: p}\n",
        ] {
            assert_left_to_the_parser(text);
        }
    }

    #[test]
    fn anchors_and_aliases_are_read_as_the_parser_does() {
        let text = "a: &x 1 # c\nb: *x\nc: &m\n  k: v\nd: *m\ne:\n  - &s\n    - 1\n  - &q 'q'\n  - *q\n  - *s\nf: &f [1]\ng: &n\nh: *n\ni: &x 2\nj: *x\n";
        let document = read_as_the_parser_does(text);
        assert_eq!(
            document.root.path(&["d", "k"]).and_then(Node::as_str),
            Some("v")
        );
        assert_eq!(document.root.get("j").and_then(Node::as_str), Some("2"));
    }

    #[test]
    fn a_quoted_value_spans_its_quotes_even_after_an_anchor_name_with_one() {
        let text = "a: &d\"x 'v' # c\n";
        let document = read_as_the_parser_does(text);
        let value = document.root.get("a").expect("a");
        assert_eq!(&text[value.span.start..value.span.end], "&d\"x 'v'");
    }

    #[test]
    fn plain_scalars_over_several_lines_fold_as_the_parser_folds_them() {
        // controller-gen wraps long CEL rules and messages so in every CRD it writes.
        let text = "a: one\n  two\n\n   three  \nb:\n- x\n  y # c\n- k: p\n    q\n\nc: d\n";
        let document = read_as_the_parser_does(text);
        assert_eq!(
            document.root.get("a").and_then(Node::as_str),
            Some("one two\nthree")
        );
        let rule = "rule: (has(self.chart) && !has(self.chartRef)) || (!has(self.chart)\n  && has(self.chartRef))\n";
        assert!(agrees(rule, "inline"));
        for text in [
            "a: x\n  y: z\n",
            "a: x # c\n  y\n",
            "a: x\n  - y\n",
            "a: x\n  #c\n  y\n",
        ] {
            assert_left_to_the_parser(text);
        }
    }

    #[test]
    fn offsets_are_those_of_the_whole_text() {
        let text = "---\nmetadata:\n  name: n # c\nspec:\n  values: {}\n  list:\n  - 'q'\n";
        let document = load(text, 100, None).flatten().expect("plain block YAML");
        let name = document.root.path(&["metadata", "name"]).expect("name");
        assert_eq!(name.span, Span::new(122, 123));
        assert_eq!(document.span.start, 103);
        assert!(agrees(text, "inline"));
    }
}
