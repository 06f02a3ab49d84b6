//! Span-aware YAML (and JSON) loading.
//!
//! `saphyr-parser` yields events with character positions; this module turns them into a small
//! tree whose every node carries its UTF-8 *byte* range in the original text. Positions are
//! converted here, once, so the rest of the engine only deals in byte ranges.
//!
//! The loader accepts what kubectl accepts where the YAML spec leaves room: anchors may be
//! redefined (the last definition wins, as in Go's yaml.v3), `<<` merge keys are expanded, a
//! leading byte-order mark is skipped, CRLF line ends are fine. It refuses what would hurt us:
//! nesting deeper than [`MAX_DEPTH`] and alias expansion beyond [`MAX_ALIAS_NODES`].

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span as EventSpan};

mod block;

/// Deepest nesting accepted. Kubernetes objects rarely go past 20; this bounds recursion when
/// nodes are cloned or dropped.
pub const MAX_DEPTH: usize = 200;
/// Upper bound on nodes produced by alias expansion in one file (a "billion laughs" guard).
pub const MAX_ALIAS_NODES: usize = 200_000;

/// A byte range in a source text, and which text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    /// 1 + the inventory index of the file the range lies in; 0 while not known (a tree just
    /// parsed, an admission request). A build marks every node it places, so that a built
    /// object's field says which file wrote it, whatever file the object came from.
    pub file: u32,
}

impl Span {
    /// A range in a text that is not yet tied to a file.
    pub const fn new(start: usize, end: usize) -> Span {
        Span {
            start,
            end,
            file: 0,
        }
    }

    /// The inventory index of the file the range lies in, when known.
    pub fn file_index(self) -> Option<usize> {
        (self.file as usize).checked_sub(1)
    }

    /// The same range, in the inventory's file `index`.
    pub fn in_file(self, index: usize) -> Span {
        Span {
            file: u32::try_from(index + 1).unwrap_or(0),
            ..self
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    /// Boxed rather than a `String`: trees are many and never grow.
    pub text: Box<str>,
    /// Plain (unquoted) scalars may mean null, booleans or numbers; quoted ones are strings.
    pub plain: bool,
}

impl Node {
    fn scalar(text: String, plain: bool, span: Span) -> Node {
        Node {
            value: Value::Scalar(Scalar {
                text: text.into_boxed_str(),
                plain,
            }),
            span,
        }
    }

    /// The value under `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, value)| value)
    }

    /// The key node and value node under `key` when this node is a mapping.
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_scalar() == Some(key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// Follows a path of mapping keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Node> {
        keys.iter().try_fold(self, |node, key| node.get(key))
    }

    /// The text of a scalar, null included (as `""` when written `~`, `null` or empty).
    pub fn as_scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) if s.is_null() => Some(""),
            Value::Scalar(s) => Some(&*s.text),
            _ => None,
        }
    }

    /// A non-empty string value; null, empty and non-scalars give `None`.
    pub fn as_str(&self) -> Option<&str> {
        self.as_scalar().filter(|s| !s.is_empty())
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(s) if s.is_null())
    }

    /// The name of the node's YAML type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::Scalar(s) if s.is_null() => "null",
            Value::Scalar(_) => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Converts to JSON the way the API server would see the object (plain scalars typed).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Scalar(s) => s.to_json(),
            Value::Seq(items) => items.iter().map(Node::to_json).collect(),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.as_scalar().unwrap_or_default().to_owned(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    /// Builds a node from JSON (admission requests); spans are empty. Depth is bounded like
    /// YAML input: deeper values become an error rather than a stack overflow.
    pub fn from_json(value: &serde_json::Value) -> Result<Node, LoadError> {
        Node::from_json_at(value, 0)
    }

    fn from_json_at(value: &serde_json::Value, depth: usize) -> Result<Node, LoadError> {
        use serde_json::Value as J;
        if depth > MAX_DEPTH {
            return Err(LoadError {
                offset: 0,
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        let span = Span::default();
        let value = match value {
            J::Null => Value::Scalar(Scalar {
                text: Box::default(),
                plain: true,
            }),
            J::Bool(b) => Value::Scalar(Scalar {
                text: b.to_string().into(),
                plain: true,
            }),
            J::Number(n) => Value::Scalar(Scalar {
                text: n.to_string().into(),
                plain: true,
            }),
            J::String(s) => Value::Scalar(Scalar {
                text: s.as_str().into(),
                plain: false,
            }),
            J::Array(items) => Value::Seq(
                items
                    .iter()
                    .map(|v| Node::from_json_at(v, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            J::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| {
                        Ok((
                            Node::scalar(k.clone(), false, span),
                            Node::from_json_at(v, depth + 1)?,
                        ))
                    })
                    .collect::<Result<_, LoadError>>()?,
            ),
        };
        Ok(Node { value, span })
    }

    fn count(&self) -> usize {
        1 + match &self.value {
            Value::Scalar(_) => 0,
            Value::Seq(items) => items.iter().map(Node::count).sum(),
            Value::Map(entries) => entries.iter().map(|(k, v)| k.count() + v.count()).sum(),
        }
    }
}

impl Scalar {
    pub fn is_null(&self) -> bool {
        self.plain && matches!(&*self.text, "" | "~" | "null" | "Null" | "NULL")
    }

    fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        if !self.plain {
            return J::String(self.text.to_string());
        }
        match &*self.text {
            "" | "~" | "null" | "Null" | "NULL" => J::Null,
            "true" | "True" | "TRUE" => J::Bool(true),
            "false" | "False" | "FALSE" => J::Bool(false),
            text => {
                if let Ok(i) = text.parse::<i64>() {
                    J::from(i)
                } else if let Some(f) = parse_yaml_float(text) {
                    J::from(f)
                } else {
                    J::String(text.to_owned())
                }
            }
        }
    }
}

fn parse_yaml_float(text: &str) -> Option<f64> {
    let looks_numeric = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if !looks_numeric || !text.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// One `---`-separated document of a file.
#[derive(Debug)]
pub struct Document {
    pub root: Node,
    /// Byte range of the whole document, separators excluded.
    pub span: Span,
}

/// Why a text could not be loaded, with the byte offset it was detected at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub offset: usize,
    pub message: String,
}

/// Maps the parser's character indices in `text` to byte offsets of the whole original text
/// (`text` starts at `base` of it, and may have an excision applied) without a per-character
/// table: a checkpoint every [`CHECKPOINT`] characters, then a short walk.
struct ByteOffsets<'a> {
    text: &'a str,
    ascii: bool,
    checkpoints: Vec<usize>,
    base: usize,
    excision: Option<&'a Excision>,
}

const CHECKPOINT: usize = 64;

impl<'a> ByteOffsets<'a> {
    fn new(text: &'a str, base: usize, excision: Option<&'a Excision>) -> Self {
        let ascii = text.is_ascii();
        let checkpoints = if ascii {
            Vec::new()
        } else {
            text.char_indices()
                .step_by(CHECKPOINT)
                .map(|(byte, _)| byte)
                .collect()
        };
        ByteOffsets {
            text,
            ascii,
            checkpoints,
            base,
            excision,
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        if self.ascii {
            return char_index.min(self.text.len());
        }
        let Some(&base) = self.checkpoints.get(char_index / CHECKPOINT) else {
            return self.text.len();
        };
        let rest = char_index % CHECKPOINT;
        self.text[base..]
            .char_indices()
            .nth(rest)
            .map_or(self.text.len(), |(b, _)| base + b)
    }

    /// The offset in the original text of the character at `char_index`.
    fn offset(&self, char_index: usize) -> usize {
        let offset = self.base + self.byte(char_index);
        self.excision.map_or(offset, |e| e.original_offset(offset))
    }

    fn span(&self, span: &EventSpan) -> Span {
        Span::new(
            self.offset(span.start.index()),
            self.offset(span.end.index()),
        )
    }
}

enum Frame {
    Seq {
        anchor: usize,
        start: Span,
        items: Vec<Node>,
    },
    Map {
        anchor: usize,
        start: Span,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
    },
}

/// Parses every document of `text`, calling `on_document` for each non-empty one.
///
/// Streams: only one document's tree is alive at a time unless the callback keeps it.
pub fn load_documents(text: &str, on_document: impl FnMut(Document)) -> Result<(), LoadError> {
    load_documents_in(text, 0..text.len(), None, on_document)
}

/// Holds the block reader to the parser on one document (`text`, as [`crate::split::documents`]
/// cuts them): `Ok(true)` when the block reader took it and built the parser's tree, spans
/// included; `Ok(false)` when it left the document to the parser; `Err` says where the two
/// first differ. For differential tests and fuzzing: loading never needs it.
pub fn compare_block_reader_with_parser(text: &str) -> Result<bool, String> {
    block::compare_with_parser(text)
}

/// A part of a text the parser is not to read (see [`crate::split::helm_values_block`]):
/// it reads an empty mapping in its place, whose node spans the part's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Excision {
    /// Where the part starts; like `content_start` and `end`, an offset into the text handed
    /// to [`load_documents_in`] (see [`Excision::shifted`]).
    pub at: usize,
    /// Where the replaced node's content starts.
    pub content_start: usize,
    pub end: usize,
}

/// What the parser reads instead of an excised part.
const EXCISED: &str = " {}";

impl Excision {
    /// The same part, for offsets counted from `base` earlier (a document's to its file's).
    pub fn shifted(self, base: usize) -> Excision {
        Excision {
            at: base + self.at,
            content_start: base + self.content_start,
            end: base + self.end,
        }
    }

    /// Maps an offset of the text with the part replaced back to the original text.
    fn original_offset(&self, offset: usize) -> usize {
        if offset >= self.at + EXCISED.len() {
            offset - EXCISED.len() + (self.end - self.at)
        } else if offset > self.at {
            self.content_start
        } else {
            offset
        }
    }
}

/// Like [`load_documents`] for the part `range` of `text` (whole documents, as
/// [`crate::split::documents`] cuts them); spans and errors stay offsets into `text`.
///
/// With an `excision` inside `range`, which must then hold one document, the parser skips
/// that part; should the document not load so (an anchor defined in the part and used
/// outside it), it is loaded whole.
pub fn load_documents_in(
    text: &str,
    range: std::ops::Range<usize>,
    excision: Option<Excision>,
    on_document: impl FnMut(Document),
) -> Result<(), LoadError> {
    let part = text.get(range.clone()).unwrap_or_default();
    // A byte-order mark is not content; skip it but keep offsets relative to the full text.
    let (body, base) = match part.strip_prefix('\u{feff}').filter(|_| range.start == 0) {
        Some(rest) => (rest, part.len() - rest.len()),
        None => (part, range.start),
    };
    if let Some(excision) = excision.filter(|e| base <= e.at && e.end <= base + body.len()) {
        let (head, tail) = (&body[..excision.at - base], &body[excision.end - base..]);
        let mut shortened = String::with_capacity(head.len() + EXCISED.len() + tail.len());
        shortened.extend([head, EXCISED, tail]);
        let mut documents = Vec::new();
        if load_body(body, &shortened, base, Some(&excision), |d| {
            documents.push(d)
        })
        .is_ok()
        {
            documents.into_iter().for_each(on_document);
            return Ok(());
        }
    }
    load_body(body, body, base, None, on_document)
}

/// Loads `parsed`, which is `body` (at offset `base` of the whole text) or `body` with
/// `excision` applied; spans and quoted scalars are read against `body`.
fn load_body(
    body: &str,
    parsed: &str,
    base: usize,
    excision: Option<&Excision>,
    on_document: impl FnMut(Document),
) -> Result<(), LoadError> {
    if let Some(document) = block::load(parsed, base, excision) {
        document.into_iter().for_each(on_document);
        return Ok(());
    }
    parse_events(body, parsed, base, excision, on_document)
}

/// [`load_body`] by `saphyr-parser`'s events: every YAML document, and the errors.
fn parse_events(
    body: &str,
    parsed: &str,
    base: usize,
    excision: Option<&Excision>,
    mut on_document: impl FnMut(Document),
) -> Result<(), LoadError> {
    let offsets = ByteOffsets::new(parsed, base, excision);
    let mut parser = Parser::new_from_str(parsed);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut alias_budget = MAX_ALIAS_NODES;
    let mut root: Option<Node> = None;
    let mut doc_start = base;
    let mut previous_end = base;

    while let Some(next) = parser.next_event() {
        let (event, event_span) = next.map_err(|e| LoadError {
            offset: offsets.offset(e.marker().index()),
            message: e.info().to_owned(),
        })?;
        let span = offsets.span(&event_span);
        let finished: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::Nothing => None,
            Event::StreamEnd => break,
            Event::DocumentStart(explicit) => {
                anchors.clear();
                // An implicit document starts where the previous one ended, so the comments
                // above its first key belong to it.
                doc_start = if explicit { span.end } else { previous_end };
                None
            }
            Event::DocumentEnd => {
                previous_end = span.end.max(doc_start);
                if let Some(root) = root.take().filter(|r| !r.is_null()) {
                    let span = Span::new(doc_start.min(root.span.start), root.span.end);
                    previous_end = previous_end.max(span.end);
                    on_document(Document { root, span });
                }
                None
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == ScalarStyle::Plain;
                let span = match style {
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
                        quoted_span(body, base, span)
                    }
                    _ => span,
                };
                Some((Node::scalar(cow_string(text), plain, span), anchor))
            }
            Event::Alias(id) => {
                let node = anchors.get(&id).cloned().ok_or_else(|| LoadError {
                    offset: span.start,
                    message: "alias refers to an anchor that is not defined".into(),
                })?;
                let cost = node.count();
                alias_budget = alias_budget.checked_sub(cost).ok_or_else(|| LoadError {
                    offset: span.start,
                    message: format!(
                        "aliases expand to more than {MAX_ALIAS_NODES} nodes; refusing (alias bomb?)"
                    ),
                })?;
                // The copy points at the alias, not at the anchored original.
                Some((Node { span, ..node }, 0))
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(LoadError {
                        offset: span.start,
                        message: format!("nesting deeper than {MAX_DEPTH} levels"),
                    });
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq {
                        anchor,
                        start: span,
                        items: Vec::new(),
                    }
                } else {
                    Frame::Map {
                        anchor,
                        start: span,
                        entries: Vec::new(),
                        pending_key: None,
                    }
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq {
                    anchor,
                    start,
                    items,
                }) => {
                    let span = Span::new(start.start, span.end.max(start.end));
                    Some((
                        Node {
                            value: Value::Seq(items),
                            span,
                        },
                        anchor,
                    ))
                }
                Some(Frame::Map {
                    anchor,
                    start,
                    entries,
                    ..
                }) => {
                    if let Some(duplicate) = duplicate_key(&entries) {
                        return Err(LoadError {
                            offset: duplicate.span.start,
                            message: format!(
                                "mapping key `{}` is defined twice (kubectl refuses this too)",
                                duplicate.as_scalar().unwrap_or_default()
                            ),
                        });
                    }
                    let span = Span::new(start.start, span.end.max(start.end));
                    Some((
                        Node {
                            value: Value::Map(merge_keys(entries)),
                            span,
                        },
                        anchor,
                    ))
                }
                None => None,
            },
        };
        if let Some((node, anchor)) = finished {
            if anchor != 0 {
                anchors.insert(anchor, node.clone());
            }
            attach(&mut stack, &mut root, node);
        }
    }
    Ok(())
}

/// The parser reports a quoted scalar as running on over trailing blanks and a comment; cut it
/// at the closing quote so edits and carets cover the value only.
fn quoted_span(body: &str, base: usize, span: Span) -> Span {
    let Some(slice) = body.get(span.start - base..span.end - base) else {
        return span;
    };
    // The span starts at the node's anchor or tag, if it has one, whose name may hold quotes
    // and ends at white space (a tab or a line break as well as a space).
    let mut properties = 0;
    while slice[properties..].starts_with(['&', '!']) {
        let name_end = slice[properties..]
            .find([' ', '\t', '\r', '\n'])
            .map_or(slice.len(), |i| properties + i);
        properties = name_end + slice[name_end..].len() - slice[name_end..].trim_start().len();
    }
    let Some(open) = slice[properties..]
        .find(['"', '\''])
        .map(|i| properties + i)
    else {
        return span;
    };
    let quote = slice.as_bytes()[open];
    let bytes = slice.as_bytes();
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 2,
            b'\'' if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b if b == quote => {
                return Span::new(span.start, span.start + i + 1);
            }
            _ => i += 1,
        }
    }
    span
}

fn cow_string(text: Cow<'_, str>) -> String {
    text.into_owned()
}

fn attach(stack: &mut [Frame], root: &mut Option<Node>, node: Node) {
    match stack.last_mut() {
        None => *root = Some(node),
        Some(Frame::Seq { items, .. }) => items.push(node),
        Some(Frame::Map {
            entries,
            pending_key,
            ..
        }) => match pending_key.take() {
            None => *pending_key = Some(node),
            Some(key) => entries.push((key, node)),
        },
    }
}

/// The second occurrence of a repeated scalar key, if any (`<<` merge keys may repeat).
fn duplicate_key(entries: &[(Node, Node)]) -> Option<&Node> {
    fn key(entry: &(Node, Node)) -> Option<&str> {
        entry.0.as_scalar().filter(|s| *s != "<<")
    }
    if entries.len() <= 16 {
        // At most 120 comparisons, most of them of lengths alone: cheaper than hashing every
        // key into a new set (most mappings are this small).
        return entries.iter().enumerate().find_map(|(i, entry)| {
            let text = key(entry)?;
            entries[..i]
                .iter()
                .any(|earlier| key(earlier) == Some(text))
                .then_some(&entry.0)
        });
    }
    let mut seen = std::collections::HashSet::new();
    entries
        .iter()
        .find(|entry| key(entry).is_some_and(|text| !seen.insert(text)))
        .map(|entry| &entry.0)
}

/// Expands `<<: *anchor` (and `<<: [*a, *b]`): merged entries never override explicit ones.
fn merge_keys(entries: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    let is_merge = |k: &Node| matches!(&k.value, Value::Scalar(s) if s.plain && &*s.text == "<<");
    if !entries.iter().any(|(k, _)| is_merge(k)) {
        return entries;
    }
    let (merges, mut own): (Vec<_>, Vec<_>) = entries.into_iter().partition(|(k, _)| is_merge(k));
    for (_, source) in merges {
        let maps: Vec<Node> = match source.value {
            Value::Map(_) => vec![source],
            Value::Seq(items) => items,
            Value::Scalar(_) => Vec::new(),
        };
        for map in maps {
            if let Value::Map(merged) = map.value {
                for (k, v) in merged {
                    if !own
                        .iter()
                        .any(|(existing, _)| existing.as_scalar() == k.as_scalar())
                    {
                        own.push((k, v));
                    }
                }
            }
        }
    }
    own
}

/// Line and column (both 1-based; the column counts characters) of byte offsets.
///
/// It keeps how many line breaks precede each [`LINE_BLOCK`]-byte block rather than where
/// every line starts: a large file has millions of lines and a report needs a few positions,
/// so building it is one vectorised count and a lookup counts within one block.
pub struct LineIndex {
    /// Line breaks before each block, and the total as the last element.
    breaks_before_block: Vec<usize>,
}

const LINE_BLOCK: usize = 1024;

fn count_breaks(bytes: &[u8]) -> usize {
    // Byte-wide counters (at most 255 per run) let the compiler compare a vector at a time.
    bytes
        .chunks(255)
        .map(|run| usize::from(run.iter().fold(0u8, |n, &b| n + u8::from(b == b'\n'))))
        .sum()
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut breaks_before_block = Vec::with_capacity(text.len() / LINE_BLOCK + 2);
        let mut breaks = 0;
        for block in text.as_bytes().chunks(LINE_BLOCK) {
            breaks_before_block.push(breaks);
            breaks += count_breaks(block);
        }
        breaks_before_block.push(breaks);
        LineIndex {
            breaks_before_block,
        }
    }

    /// `(line, column)`, 1-based.
    pub fn position(&self, text: &str, offset: usize) -> (usize, usize) {
        let bytes = text.as_bytes();
        let offset = offset.min(bytes.len());
        let block = offset / LINE_BLOCK;
        let before = self
            .breaks_before_block
            .get(block)
            .or(self.breaks_before_block.last())
            .copied()
            .unwrap_or(0);
        let block_start = (block * LINE_BLOCK).min(offset);
        let line = before + count_breaks(&bytes[block_start..offset]) + 1;
        let start = memchr::memrchr(b'\n', &bytes[..offset]).map_or(0, |i| i + 1);
        let prefix = text.get(start..offset).unwrap_or_default();
        // A byte-order mark is not a column.
        let prefix = if line == 1 {
            prefix.strip_prefix('\u{feff}').unwrap_or(prefix)
        } else {
            prefix
        };
        (line, prefix.chars().count() + 1)
    }

    /// Byte offset where a 1-based line starts (the text's length past the last line).
    fn line_start(&self, text: &str, line: usize) -> usize {
        let wanted = line.saturating_sub(1);
        if wanted == 0 {
            return 0;
        }
        let bytes = text.as_bytes();
        // The last block with fewer than `wanted` breaks before it holds the break we want.
        let block = self
            .breaks_before_block
            .partition_point(|&b| b < wanted)
            .saturating_sub(1);
        let mut seen = self.breaks_before_block.get(block).copied().unwrap_or(0);
        let from = (block * LINE_BLOCK).min(bytes.len());
        for i in memchr::memchr_iter(b'\n', &bytes[from..]) {
            seen += 1;
            if seen == wanted {
                return from + i + 1;
            }
        }
        bytes.len()
    }

    /// Byte range of a 1-based line, without its line break.
    pub fn line_range(&self, text: &str, line: usize) -> Span {
        let bytes = text.as_bytes();
        let start = if line == 0 {
            bytes.len()
        } else {
            self.line_start(text, line)
        };
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
        let end = if end > start && bytes.get(end - 1) == Some(&b'\r') {
            end - 1
        } else {
            end
        };
        Span::new(start, end)
    }

    pub fn line_count(&self) -> usize {
        self.breaks_before_block.last().copied().unwrap_or(0) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index_agrees_with_counting_lines_across_blocks() {
        // Lines of every length up to past a block, CRLF and multi-byte characters among them.
        let mut text = String::from("\u{feff}");
        for i in 0..3_000 {
            text.push_str(&"é".repeat(i % 7));
            text.push_str(&"x".repeat((i * 37) % 5_000));
            text.push_str(if i % 3 == 0 { "\r\n" } else { "\n" });
        }
        text.push_str("last");
        let index = LineIndex::new(&text);
        let starts: Vec<usize> = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        assert_eq!(index.line_count(), starts.len());
        for (n, &start) in starts.iter().enumerate() {
            let line = n + 1;
            let end = starts.get(line).map_or(text.len(), |next| next - 1);
            let end = end - usize::from(text[..end].ends_with('\r'));
            assert_eq!(
                index.line_range(&text, line),
                Span::new(start, end),
                "line {line}"
            );
            let column_of_end = text[start..end]
                .trim_start_matches('\u{feff}')
                .chars()
                .count()
                + 1;
            assert_eq!(
                index.position(&text, end),
                (line, column_of_end),
                "line {line}"
            );
        }
        assert_eq!(index.position(&text, 0), (1, 1));
        assert_eq!(
            index.position(&text, 3),
            (1, 1),
            "after the byte-order mark"
        );
        assert_eq!(index.position(&text, usize::MAX), (starts.len(), 5));
        assert_eq!(index.line_range(&text, starts.len() + 1).start, text.len());
        assert_eq!(index.line_range(&text, 0).start, text.len());
    }

    fn load(text: &str) -> Result<Vec<Document>, LoadError> {
        let mut docs = Vec::new();
        load_documents(text, |d| docs.push(d))?;
        Ok(docs)
    }

    #[test]
    fn spans_are_byte_ranges_even_after_multibyte_text() {
        let text = "# é ü\nkind: Kustomization\nmetadata:\n  name: ñame\n  namespace: team-a\n";
        let docs = load(text).unwrap();
        let ns = docs[0].root.path(&["metadata", "namespace"]).unwrap();
        assert_eq!(&text[ns.span.start..ns.span.end], "team-a");
        let name = docs[0].root.path(&["metadata", "name"]).unwrap();
        assert_eq!(&text[name.span.start..name.span.end], "ñame");
    }

    #[test]
    fn multi_document_files_and_empty_documents() {
        let docs = load("---\na: 1\n---\n---\n# only a comment\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].root.get("b").and_then(Node::as_str), Some("2"));
    }

    #[test]
    fn a_quoted_value_after_an_anchor_or_tag_ends_at_its_closing_quote() {
        // A tab sends the document to the parser, whose spans run on over the comment.
        for (text, value) in [
            ("a: &x\t\"v w\" # note\n", "&x\t\"v w\""),
            ("a: !!str\t'v w' # note\n", "!!str\t'v w'"),
            ("a: &x !!str \"v w\"  # note\n", "&x !!str \"v w\""),
        ] {
            let docs = load(text).unwrap();
            let node = docs[0].root.get("a").unwrap();
            assert_eq!(&text[node.span.start..node.span.end], value, "{text:?}");
        }
    }

    #[test]
    fn a_repeated_key_is_found_in_mappings_of_every_size() {
        let scalar = |text: &str| Node::scalar(text.to_owned(), true, Span::default());
        for size in [2, 8, 9, 16, 17, 40] {
            let mut entries: Vec<(Node, Node)> = (0..size)
                .map(|i| (scalar(&format!("k{i}")), scalar("v")))
                .collect();
            assert!(duplicate_key(&entries).is_none(), "{size} distinct keys");
            entries.push((scalar("<<"), scalar("a")));
            entries.push((scalar("<<"), scalar("b")));
            assert!(
                duplicate_key(&entries).is_none(),
                "{size} keys and two merges"
            );
            entries.push((scalar(&format!("k{}", size / 2)), scalar("again")));
            let repeated = duplicate_key(&entries).and_then(Node::as_scalar);
            assert_eq!(repeated, Some(format!("k{}", size / 2).as_str()), "{size}");
        }
    }

    #[test]
    fn redefined_anchors_take_the_latest_definition() {
        let text = "a: &x 1\nb: *x\nc: &x 2\nd: *x\n";
        let docs = load(text).unwrap();
        assert_eq!(docs[0].root.get("b").and_then(Node::as_str), Some("1"));
        assert_eq!(docs[0].root.get("d").and_then(Node::as_str), Some("2"));
    }

    #[test]
    fn merge_keys_fill_in_but_never_override() {
        let text = "base: &b {x: 1, y: 2}\nobj:\n  <<: *b\n  y: 3\n";
        let docs = load(text).unwrap();
        let obj = docs[0].root.get("obj").unwrap();
        assert_eq!(obj.get("x").and_then(Node::as_str), Some("1"));
        assert_eq!(obj.get("y").and_then(Node::as_str), Some("3"));
        assert!(obj.get("<<").is_none());
    }

    #[test]
    fn byte_order_mark_and_crlf_keep_offsets_right() {
        let text = "\u{feff}kind: A\r\nmetadata:\r\n  name: n\r\n";
        let docs = load(text).unwrap();
        let name = docs[0].root.path(&["metadata", "name"]).unwrap();
        assert_eq!(&text[name.span.start..name.span.end], "n");
        let index = LineIndex::new(text);
        assert_eq!(index.position(text, name.span.start), (3, 9));
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = load(&text).unwrap_err();
        assert!(err.message.contains("alias bomb"), "{}", err.message);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // Flow nesting: the parser's own limit answers first.
        let err = load(&"[".repeat(100_000)).unwrap_err();
        assert_eq!(err.message, "recursion limit exceeded");
        // Block nesting: ours.
        let text: String = (0..300)
            .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
            .collect();
        let err = load(&text).unwrap_err();
        assert_eq!(err.message, "nesting deeper than 200 levels");
    }

    #[test]
    fn json_is_yaml() {
        let docs = load(r#"{"kind": "List", "items": [{"kind": "A"}]}"#).unwrap();
        assert_eq!(
            docs[0]
                .root
                .get("items")
                .and_then(Node::as_seq)
                .map(<[Node]>::len),
            Some(1)
        );
    }

    #[test]
    fn plain_scalars_get_json_types() {
        let docs = load("a: 1\nb: 'x'\nc: true\nd: ~\ne: 1.5\nf: '1'\n").unwrap();
        let json = docs[0].root.to_json();
        assert_eq!(
            json,
            serde_json::json!({"a": 1, "b": "x", "c": true, "d": null, "e": 1.5, "f": "1"})
        );
    }
}
