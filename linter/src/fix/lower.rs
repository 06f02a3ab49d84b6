//! Lowering: one `FixOp` on a document becomes byte-range edits of its file's text, written in
//! the file's own style (quoting, indentation, line ends; JSON syntax in a JSON document).

use crate::diagnostic::FixOp;
use crate::yaml::{Node, Span, Value};

use super::TextEdit;

/// Lowers one operation on the document spanning `document` to text edits.
pub fn lower(text: &str, document: Span, root: &Node, op: &FixOp) -> Option<Vec<TextEdit>> {
    let FixOp::Set { pointer, value } = op;
    if has_bare_carriage_return(&text[document.start.min(text.len())..document.end.min(text.len())])
    {
        // YAML ends a line at a lone `\r` too; the edits here count lines by `\n`. Such a
        // document is left alone rather than edited at the wrong place.
        return None;
    }
    let keys: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|k| k.replace("~1", "/").replace("~0", "~"))
        .collect();
    // Walk down as far as the path exists.
    let mut node = root;
    let mut depth = 0;
    for key in &keys {
        let next = match &node.value {
            Value::Map(_) => node.get(key),
            Value::Seq(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            Value::Scalar(_) => None,
        };
        match next {
            Some(n) => {
                node = n;
                depth += 1;
            }
            None => break,
        }
    }
    if depth == keys.len() {
        return replace_scalar(text, document, root, &keys, node, value);
    }
    insert_keys(text, node, &keys[depth..], value).map(|e| vec![e])
}

/// Whether `text` has a `\r` that is not the first half of `\r\n`.
fn has_bare_carriage_return(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
}

fn replace_scalar(
    text: &str,
    document: Span,
    root: &Node,
    keys: &[String],
    node: &Node,
    value: &str,
) -> Option<Vec<TextEdit>> {
    let Value::Scalar(_) = &node.value else {
        return None;
    };
    if node.span.start == node.span.end {
        // `key:` with nothing after it: write after the colon.
        let parent_keys: Vec<&str> = keys[..keys.len() - 1].iter().map(String::as_str).collect();
        let parent = root.path(&parent_keys)?;
        let (key, _) = parent.entry(keys.last()?)?;
        let colon = key.span.end + text[key.span.end..].find(':')?;
        let span = Span::new(colon + 1, colon + 1);
        return Some(vec![TextEdit {
            span,
            text: format!(" {}", quote_like("", value)),
        }]);
    }
    let original = &text[node.span.start..node.span.end];
    if node.span.start < node.span.end && text.as_bytes()[node.span.start] == b'*' {
        // An alias: the edit must not change the anchored value, so write a literal instead.
        return Some(vec![TextEdit {
            span: node.span,
            text: quote_like("", value),
        }]);
    }
    let Some(anchored) = original.strip_prefix('&') else {
        return Some(vec![TextEdit {
            span: node.span,
            text: quote_like(original, value),
        }]);
    };
    // `&name old`: other fields may alias the old value (`targetNamespace: *name`). They keep
    // it: each alias becomes the old literal, and the anchor moves along with the new value.
    let (anchor, old) = anchored.split_once(char::is_whitespace)?;
    let old = old.trim_start();
    let mut edits = vec![TextEdit {
        span: node.span,
        text: format!("&{anchor} {}", quote_like(old, value)),
    }];
    edits.extend(
        alias_sites(text, document, root, node.span.end, anchor)
            .into_iter()
            .map(|span| TextEdit {
                span,
                text: old.to_owned(),
            }),
    );
    Some(edits)
}

/// The aliases `*anchor` after `from` in the document, up to a redefinition of the anchor:
/// nodes of the tree whose text is the alias, so that `*anchor` in a comment or inside a
/// scalar is left alone.
fn alias_sites(text: &str, document: Span, root: &Node, from: usize, anchor: &str) -> Vec<Span> {
    let end = document.end.min(text.len());
    let redefined = text
        .get(from..end)
        .and_then(|body| body.find(&format!("&{anchor}")))
        .map_or(end, |i| from + i);
    let alias = format!("*{anchor}");
    let mut sites = Vec::new();
    let mut todo = vec![root];
    while let Some(node) = todo.pop() {
        let span = node.span;
        if from <= span.start
            && span.end <= redefined
            && text.get(span.start..span.end) == Some(alias.as_str())
        {
            sites.push(span);
            continue;
        }
        match &node.value {
            Value::Scalar(_) => {}
            Value::Seq(items) => todo.extend(items),
            Value::Map(entries) => todo.extend(entries.iter().flat_map(|(k, v)| [k, v])),
        }
    }
    sites.sort_by_key(|s| s.start);
    sites
}

/// `value` written in the quoting style of `original` (and quoted when YAML needs it).
pub(super) fn quote_like(original: &str, value: &str) -> String {
    match original.chars().next() {
        Some('"') => format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")),
        Some('\'') => format!("'{}'", value.replace('\'', "''")),
        _ if needs_quotes(value) => {
            format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
        }
        _ => value.to_owned(),
    }
}

fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@` ".contains(c))
        || value.contains(": ")
        || value.contains(" #")
        || matches!(
            value,
            "true" | "false" | "null" | "~" | "yes" | "no" | "on" | "off"
        )
        || value.parse::<f64>().is_ok()
}

/// Inserts `keys` (the missing tail of a path) into mapping `parent`.
fn insert_keys(text: &str, parent: &Node, keys: &[String], value: &str) -> Option<TextEdit> {
    let entries = parent.as_map()?;
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    if is_json_mapping(text, parent) {
        return insert_json_keys(text, parent, keys, value, newline);
    }
    let value = quote_like("", value);
    let content = after_properties(text, parent.span.start);
    if text[content..].starts_with('{') {
        // Flow mapping: prepend inside the braces, nesting as flow too.
        let mut inner = value;
        for key in keys[1..].iter().rev() {
            inner = format!("{{{key}: {inner}}}");
        }
        let sep = if entries.is_empty() { "" } else { ", " };
        let at = content + 1;
        return Some(TextEdit {
            span: Span::new(at, at),
            text: format!("{}: {inner}{sep}", keys[0]),
        });
    }
    // Block mapping: a new first entry at the siblings' indentation, so it lands inside the
    // mapping whatever follows it.
    let (first_key, _) = entries.first()?;
    let line_start = text[..first_key.span.start]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let indent = &text[line_start..first_key.span.start];
    if let Some(question) = explicit_key_column(indent) {
        // `? key`: the entry starts at the indicator, and a plain key line there is a sibling.
        // After `- ? key` no plain line can be one: leave the document alone.
        let before = &indent[..question];
        if !before.chars().all(|c| c == ' ') {
            return None;
        }
        return Some(TextEdit {
            span: Span::new(line_start, line_start),
            text: key_lines(before, keys, &value, newline),
        });
    }
    if indent.contains(['{', '[']) {
        // The first key sits inside a flow collection that this mapping is not: no line
        // written here would belong to the mapping.
        return None;
    }
    if !indent.chars().all(|c| c == ' ') {
        // `- key: value` list item or a key after other content: not a plain indented line.
        return insert_after_key_line(text, first_key, keys, &value, newline);
    }
    Some(TextEdit {
        span: Span::new(line_start, line_start),
        text: key_lines(indent, keys, &value, newline),
    })
}

/// Where a node's content starts, past the properties (`!tag`, `&anchor`) written before it
/// at `start`.
fn after_properties(text: &str, start: usize) -> usize {
    let mut at = start;
    while text[at..].starts_with(['!', '&']) {
        let token = text[at..]
            .find([' ', '\t', '\r', '\n'])
            .map_or(text.len(), |end| at + end);
        at = token + text[token..].len() - text[token..].trim_start().len();
    }
    at
}

/// Where the explicit-key indicator `?` stands in `prefix` (what precedes a mapping's first key
/// on its line), when it is the last thing there.
fn explicit_key_column(prefix: &str) -> Option<usize> {
    let trimmed = prefix.trim_end_matches([' ', '\t']);
    trimmed
        .ends_with('?')
        .then(|| trimmed.len() - 1)
        .filter(|&at| at == 0 || prefix[..at].ends_with([' ', '\t', '-']))
}

/// For mappings whose first key shares its line with other text (`- name: x`), insert after
/// the end of that first entry's line at the column of the first key.
fn insert_after_key_line(
    text: &str,
    first_key: &Node,
    keys: &[String],
    value: &str,
    newline: &str,
) -> Option<TextEdit> {
    let line_start = text[..first_key.span.start]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let column = text[line_start..first_key.span.start].chars().count();
    let line_end = text[first_key.span.start..]
        .find('\n')
        .map_or(text.len(), |i| first_key.span.start + i + 1);
    let indent = " ".repeat(column);
    let mut lines = String::new();
    if line_end == text.len() && !text.ends_with('\n') {
        lines.push_str(newline);
    }
    lines.push_str(&key_lines(&indent, keys, value, newline));
    Some(TextEdit {
        span: Span::new(line_end, line_end),
        text: lines,
    })
}

/// `keys` as nested block-mapping lines at `indent`, the last one holding `value`.
fn key_lines(indent: &str, keys: &[String], value: &str, newline: &str) -> String {
    let mut lines = String::new();
    for (depth, key) in keys.iter().enumerate() {
        let pad = format!("{indent}{}", "  ".repeat(depth));
        if depth + 1 == keys.len() {
            lines.push_str(&format!("{pad}{key}: {value}{newline}"));
        } else {
            lines.push_str(&format!("{pad}{key}:{newline}"));
        }
    }
    lines
}

/// Whether `mapping` is written as JSON: braces and a quoted first key (`{"spec": …}`). An
/// empty `{}` counts when the document it is in is JSON.
fn is_json_mapping(text: &str, mapping: &Node) -> bool {
    if !text[mapping.span.start..].starts_with('{') {
        return false;
    }
    match mapping.as_map().and_then(|entries| entries.first()) {
        Some((key, _)) => text[key.span.start..].starts_with('"'),
        None => text
            .trim_start_matches('\u{feff}')
            .trim_start()
            .starts_with('{'),
    }
}

/// Inserts `keys` into a JSON object as JSON: quoted keys and values, one member a line at the
/// indentation of its siblings (nested objects one indentation step deeper), or on the same
/// line when the object is written on one line.
fn insert_json_keys(
    text: &str,
    parent: &Node,
    keys: &[String],
    value: &str,
    newline: &str,
) -> Option<TextEdit> {
    let entries = parent.as_map()?;
    let quoted = |s: &str| serde_json::Value::from(s).to_string();
    let open = parent.span.start + 1;
    let Some((first_key, _)) = entries.first() else {
        // `{}`: the member goes between the braces.
        let mut inner = quoted(value);
        for key in keys[1..].iter().rev() {
            inner = format!("{{{}: {inner}}}", quoted(key));
        }
        return Some(TextEdit {
            span: Span::new(open, open),
            text: format!("{}: {inner}", quoted(&keys[0])),
        });
    };
    let between = &text[open..first_key.span.start];
    if !between.contains('\n') {
        // `{"a": 1}` on one line: stay on it.
        let mut inner = quoted(value);
        for key in keys[1..].iter().rev() {
            inner = format!("{{{}: {inner}}}", quoted(key));
        }
        return Some(TextEdit {
            span: Span::new(open, open),
            text: format!("{}: {inner},{between}", quoted(&keys[0])),
        });
    }
    // Members on lines of their own: a new first member at the first one's indentation.
    let indent = &between[between.rfind('\n').map_or(0, |i| i + 1)..];
    let line_start = text[..parent.span.start].rfind('\n').map_or(0, |i| i + 1);
    let outer: String = text[line_start..parent.span.start]
        .chars()
        .take_while(|c| c.is_whitespace())
        .collect();
    let step = indent
        .strip_prefix(outer.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("  ");
    let mut member = quoted(value);
    for (depth, key) in keys.iter().enumerate().skip(1).rev() {
        let inner = format!("{indent}{}", step.repeat(depth));
        let close = format!("{indent}{}", step.repeat(depth - 1));
        member = format!(
            "{{{newline}{inner}{}: {member}{newline}{close}}}",
            quoted(key)
        );
    }
    let at = first_key.span.start;
    Some(TextEdit {
        span: Span::new(at, at),
        text: format!("{}: {member},{newline}{indent}", quoted(&keys[0])),
    })
}
