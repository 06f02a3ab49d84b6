//! kustomize `replacements`: copy one field of one object into fields of others.
//!
//! As kustomize v5 does: the source must match exactly one object (its `fieldPath` defaults
//! to `metadata.name`); each target's `select`/`reject` are selectors; a field path is
//! dot-separated, with `[key=value]` picking list items, `*` every item, a number an index and
//! `[a.b]` a key with dots; a target field that is missing fails the build unless
//! `options.create`. `delimiter`/`index` cut the source value, or put it into one part of the
//! target's. The copied value keeps the source's position: a finding on it points at the
//! object it was copied from.

use std::sync::Arc;

use super::select::Selector;
use super::tree;
use super::{BuildError, Object};
use crate::model::NamespaceOrigin;
use crate::yaml::{Node, Span, Value};

/// `path:line` of a span, as findings name places.
pub type Locate<'a> = &'a dyn Fn(Span) -> String;

/// The tree of a resource as its file writes it.
pub type FileVersion<'a> = &'a dyn Fn(usize) -> Option<Node>;

/// Applies one replacement entry (`source` + `targets`) to the objects; gives the file of the
/// source object (it shapes the build: renaming it renames the targets' fields).
pub fn apply(
    entry: &Node,
    objects: &mut [Object],
    locate: Locate,
    file_version: FileVersion,
) -> Result<Option<usize>, BuildError> {
    let source = entry
        .get("source")
        .ok_or_else(|| BuildError::at(entry.span, "a replacement has no `source`".into()))?;
    let (value, source_file) = source_value(source, objects, file_version)?;
    for target in entry
        .get("targets")
        .and_then(Node::as_seq)
        .unwrap_or_default()
    {
        apply_target(target, &value, objects, locate)?;
    }
    Ok(source_file)
}

fn source_value(
    source: &Node,
    objects: &[Object],
    file_version: FileVersion,
) -> Result<(Node, Option<usize>), BuildError> {
    let field = |key: &str| source.get(key).and_then(Node::as_str);
    let matching: Vec<&Object> = objects
        .iter()
        .filter(|o| {
            let root = &o.root;
            let (group, version) = tree::group_version(tree::api_version(root));
            let same = |key: &str, value: &str| field(key).is_none_or(|wanted| wanted == value);
            same("kind", tree::kind(root))
                && same("group", group)
                && same("version", version)
                && field("name").is_none_or(|n| n == tree::name(root) || n == o.original_name)
                && field("namespace").is_none_or(|n| {
                    Some(n) == tree::namespace(root) || Some(n) == o.original_namespace.as_deref()
                })
        })
        .collect();
    let [object] = matching.as_slice() else {
        return Err(BuildError::at(
            source.span,
            format!(
                "a replacement source must match exactly one object, and {} match",
                matching.len()
            ),
        ));
    };
    let path = field("fieldPath").unwrap_or("metadata.name");
    let segments = split_path(path);
    let whole = if object.light && segments.first() != Some(&"metadata") {
        file_version(object.resource)
    } else {
        None
    };
    let found = find(whole.as_ref().unwrap_or(&object.root), &segments).ok_or_else(|| {
        BuildError::at(
            source.span,
            format!("the replacement source has no field `{path}`"),
        )
    })?;
    let options = source.get("options");
    let value = match cut(found, options)? {
        Some(part) => tree::string(&part, found.span),
        None => found.clone(),
    };
    Ok((value, object.root.span.file_index()))
}

/// The `index`-th part of a scalar cut at `delimiter`, when the options say so.
fn cut(value: &Node, options: Option<&Node>) -> Result<Option<String>, BuildError> {
    let Some(delimiter) = options
        .and_then(|o| o.get("delimiter"))
        .and_then(Node::as_str)
    else {
        return Ok(None);
    };
    let index = options
        .and_then(|o| o.get("index"))
        .and_then(Node::as_scalar)
        .and_then(|i| i.parse::<usize>().ok())
        .unwrap_or(0);
    let text = value.as_scalar().unwrap_or("");
    let part = text.split(delimiter).nth(index).ok_or_else(|| {
        BuildError::at(
            value.span,
            format!("`{text}` has no part {index} cut at `{delimiter}`"),
        )
    })?;
    Ok(Some(part.to_owned()))
}

fn apply_target(
    target: &Node,
    value: &Node,
    objects: &mut [Object],
    locate: Locate,
) -> Result<(), BuildError> {
    let select = target.get("select").map(Selector::from_node).transpose()?;
    let rejects = target
        .get("reject")
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .map(Selector::from_node)
        .collect::<Result<Vec<_>, _>>()?;
    let options = target.get("options");
    let create = options
        .and_then(|o| o.get("create"))
        .and_then(Node::as_scalar)
        .is_some_and(|c| c == "true");
    let paths: Vec<&str> = target
        .get("fieldPaths")
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .filter_map(Node::as_str)
        .collect();
    for object in objects.iter_mut() {
        let selected = select.as_ref().is_some_and(|s| s.matches(object))
            && !rejects.iter().any(|r| r.matches(object));
        if !selected {
            continue;
        }
        for path in &paths {
            let segments = split_path(path);
            if object.light && segments.first() != Some(&"metadata") {
                continue; // not carried: nothing a rule reads
            }
            let written = write(
                Arc::make_mut(&mut object.root),
                &segments,
                value,
                options,
                create,
            )?;
            if written && segments == ["metadata", "namespace"] {
                object.origin = Some(NamespaceOrigin::Replacement {
                    location: locate(value.span),
                });
            }
            if !written {
                return Err(BuildError::at(
                    target.span,
                    format!(
                        "unable to find field `{path}` in replacement target {}",
                        object.label()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A field path's segments: dots split, except inside `[…]`.
fn split_path(path: &str) -> Vec<&str> {
    let mut segments = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in path.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                segments.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    segments.push(&path[start..]);
    segments.into_iter().filter(|s| !s.is_empty()).collect()
}

/// What one segment names.
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
    Every,
    /// `[key=value]`: the list items whose `key` is `value`.
    Item(&'a str, &'a str),
}

fn segment(text: &str) -> Segment<'_> {
    if text == "*" {
        return Segment::Every;
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return match inner.split_once('=') {
            Some((key, value)) => Segment::Item(key, value),
            None => Segment::Key(inner),
        };
    }
    match text.parse::<usize>() {
        Ok(index) => Segment::Index(index),
        Err(_) => Segment::Key(text),
    }
}

fn find<'a>(node: &'a Node, segments: &[&str]) -> Option<&'a Node> {
    let Some((first, rest)) = segments.split_first() else {
        return Some(node);
    };
    match (segment(first), &node.value) {
        (Segment::Key(key), Value::Map(_)) => find(node.get(key)?, rest),
        (Segment::Index(i), Value::Seq(items)) => find(items.get(i)?, rest),
        (Segment::Item(key, value), Value::Seq(items)) => items
            .iter()
            .find(|item| item.get(key).and_then(Node::as_scalar) == Some(value))
            .and_then(|item| find(item, rest)),
        (Segment::Every, Value::Seq(items)) => items.first().and_then(|item| find(item, rest)),
        _ => None,
    }
}

/// Writes `value` at `segments` under `node`; whether any field was written.
fn write(
    node: &mut Node,
    segments: &[&str],
    value: &Node,
    options: Option<&Node>,
    create: bool,
) -> Result<bool, BuildError> {
    let Some((first, rest)) = segments.split_first() else {
        write_leaf(node, value, options)?;
        return Ok(true);
    };
    match segment(first) {
        Segment::Key(key) => {
            if node.is_null() && create {
                *node = tree::mapping(value.span);
            }
            if node.as_map().is_none() {
                return Ok(false);
            }
            if node.get(key).is_none() {
                if !create {
                    return Ok(false);
                }
                let fresh = if rest.is_empty() {
                    value.clone()
                } else {
                    tree::mapping(value.span)
                };
                tree::set(node, key, fresh);
            }
            match tree::get_mut(node, key) {
                Some(child) => write(child, rest, value, options, create),
                None => Ok(false),
            }
        }
        Segment::Index(i) => match &mut node.value {
            Value::Seq(items) => match items.get_mut(i) {
                Some(item) => write(item, rest, value, options, create),
                None => Ok(false),
            },
            _ => Ok(false),
        },
        Segment::Item(key, wanted) => {
            let Value::Seq(items) = &mut node.value else {
                return Ok(false);
            };
            let mut written = false;
            for item in items
                .iter_mut()
                .filter(|item| item.get(key).and_then(Node::as_scalar) == Some(wanted))
            {
                written |= write(item, rest, value, options, create)?;
            }
            Ok(written)
        }
        Segment::Every => {
            let Value::Seq(items) = &mut node.value else {
                return Ok(false);
            };
            let mut written = false;
            for item in items.iter_mut() {
                written |= write(item, rest, value, options, create)?;
            }
            Ok(written)
        }
    }
}

/// Puts the value in place of the target field, or (with a delimiter) in place of one part of
/// the target's text.
fn write_leaf(target: &mut Node, value: &Node, options: Option<&Node>) -> Result<(), BuildError> {
    let delimiter = options
        .and_then(|o| o.get("delimiter"))
        .and_then(Node::as_str);
    let Some(delimiter) = delimiter else {
        *target = value.clone();
        return Ok(());
    };
    let index = options
        .and_then(|o| o.get("index"))
        .and_then(Node::as_scalar)
        .and_then(|i| i.parse::<usize>().ok())
        .unwrap_or(0);
    let current = target.as_scalar().unwrap_or("");
    let mut parts: Vec<&str> = current.split(delimiter).collect();
    let replacement = value.as_scalar().unwrap_or("");
    if index < parts.len() {
        parts[index] = replacement;
    } else {
        parts.push(replacement);
    }
    *target = tree::string(&parts.join(delimiter), value.span);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_split_at_dots_outside_brackets() {
        assert_eq!(
            split_path("metadata.annotations.[config.kubernetes.io/x]"),
            ["metadata", "annotations", "[config.kubernetes.io/x]"]
        );
        assert_eq!(
            split_path("spec.containers.[name=app].image"),
            ["spec", "containers", "[name=app]", "image"]
        );
    }
}
