//! Patches as kustomize applies them to objects it has no schema for (every Flux kind):
//! strategic merge as kyaml's `merge2` does without a schema, and JSON 6902.
//!
//! Without a schema, `merge2` merges mappings key by key, deletes a key whose patch value is
//! null, honours `$patch: delete` and `$patch: replace` on a mapping, and *replaces* lists
//! whole: it knows no merge keys (checked against `kubectl kustomize`: a patch's
//! `dependsOn: [{name: c}]` replaces the object's two entries).

use super::BuildError;
use super::tree;
use crate::yaml::{Node, Value};

const DIRECTIVE: &str = "$patch";

/// What a strategic-merge patch does to an object.
pub enum Merged {
    Kept,
    /// `$patch: delete` at the top: the object leaves the build.
    Deleted,
}

/// Merges `patch` into `target`.
pub fn strategic_merge(target: &mut Node, patch: &Node) -> Merged {
    match directive(patch) {
        Some("delete") => return Merged::Deleted,
        Some("replace") => {
            *target = without_directives(patch);
            return Merged::Kept;
        }
        _ => {}
    }
    merge_map(target, patch);
    Merged::Kept
}

fn directive(node: &Node) -> Option<&str> {
    node.get(DIRECTIVE).and_then(Node::as_str)
}

fn merge_map(target: &mut Node, patch: &Node) {
    let Some(entries) = patch.as_map() else {
        *target = without_directives(patch);
        return;
    };
    if target.as_map().is_none() {
        *target = tree::mapping(patch.span);
    }
    for (key, value) in entries {
        let Some(key) = key.as_scalar() else { continue };
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            tree::remove(target, key);
            continue;
        }
        match directive(value) {
            Some("delete") => {
                tree::remove(target, key);
                continue;
            }
            Some("replace") => {
                tree::set(target, key, without_directives(value));
                continue;
            }
            _ => {}
        }
        let both_maps = value.as_map().is_some()
            && target
                .get(key)
                .is_some_and(|existing| existing.as_map().is_some());
        if both_maps {
            if let Some(existing) = tree::get_mut(target, key) {
                merge_map(existing, value);
            }
        } else {
            tree::set(target, key, without_directives(value));
        }
    }
}

/// A patch value as it lands in the object: `$patch` keys and null members of new mappings
/// dropped (a null can only delete, and there is nothing to delete in a new mapping).
fn without_directives(node: &Node) -> Node {
    let value = match &node.value {
        Value::Map(entries) => Value::Map(
            entries
                .iter()
                .filter(|(k, v)| !k.as_scalar().is_some_and(|k| k.starts_with('$')) && !v.is_null())
                .map(|(k, v)| (k.clone(), without_directives(v)))
                .collect(),
        ),
        Value::Seq(items) => Value::Seq(items.iter().map(without_directives).collect()),
        Value::Scalar(_) => node.value.clone(),
    };
    Node {
        value,
        span: node.span,
    }
}

/// One JSON 6902 operation, read from its patch node.
pub struct Operation<'a> {
    op: &'a str,
    path: Vec<String>,
    from: Option<Vec<String>>,
    value: Option<&'a Node>,
    node: &'a Node,
}

/// Reads the operations of a JSON 6902 patch (a list of `{op, path, value, from}`).
pub fn operations(patch: &Node) -> Result<Vec<Operation<'_>>, BuildError> {
    let Some(items) = patch.as_seq() else {
        return Err(BuildError::at(
            patch.span,
            "a JSON 6902 patch is a list of operations".into(),
        ));
    };
    items
        .iter()
        .map(|item| {
            let field = |key: &str| item.get(key).and_then(Node::as_scalar);
            let op = field("op").ok_or_else(|| {
                BuildError::at(item.span, "a JSON patch operation has no `op`".into())
            })?;
            let path = field("path").ok_or_else(|| {
                BuildError::at(item.span, format!("JSON patch `{op}` has no `path`"))
            })?;
            Ok(Operation {
                op,
                path: pointer(path).map_err(|m| BuildError::at(item.span, m))?,
                from: field("from")
                    .map(pointer)
                    .transpose()
                    .map_err(|m| BuildError::at(item.span, m))?,
                value: item.get("value"),
                node: item,
            })
        })
        .collect()
}

/// The tokens of a JSON pointer (RFC 6901).
fn pointer(text: &str) -> Result<Vec<String>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = text.strip_prefix('/') else {
        return Err(format!("JSON pointer `{text}` does not start with `/`"));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

impl Operation<'_> {
    /// Whether the operation reads or writes under `prefix`.
    pub fn touches(&self, prefix: &[&str]) -> bool {
        let under = |path: &[String]| {
            path.len() >= prefix.len() && path.iter().zip(prefix).all(|(a, b)| a == b)
        };
        under(&self.path) || self.from.as_deref().is_some_and(under)
    }
}

/// Applies JSON 6902 operations to an object, in order, but those `skip` says not to; the first
/// failing one fails the patch (kustomize fails the build).
pub fn apply_operations(
    target: &mut Node,
    operations: &[Operation],
    skip: impl Fn(&Operation) -> bool,
) -> Result<(), BuildError> {
    for operation in operations.iter().filter(|op| !skip(op)) {
        apply_operation(target, operation).map_err(|message| {
            BuildError::at(
                operation.node.span,
                format!(
                    "JSON patch `{}` at /{}: {message}",
                    operation.op,
                    operation.path.join("/")
                ),
            )
        })?;
    }
    Ok(())
}

fn apply_operation(target: &mut Node, operation: &Operation) -> Result<(), String> {
    let value = || {
        operation
            .value
            .cloned()
            .ok_or_else(|| "no `value`".to_owned())
    };
    match operation.op {
        "add" => add(target, &operation.path, value()?),
        "replace" => {
            let slot = find_mut(target, &operation.path).ok_or("the path does not exist")?;
            *slot = value()?;
            Ok(())
        }
        "remove" => remove(target, &operation.path).map(drop),
        "test" => {
            let found = find(target, &operation.path).ok_or("the path does not exist")?;
            if found.to_json() == value()?.to_json() {
                Ok(())
            } else {
                Err("the value differs from the one tested".into())
            }
        }
        "move" => {
            let from = operation.from.as_deref().ok_or("no `from`")?;
            let moved = remove(target, from)?;
            add(target, &operation.path, moved)
        }
        "copy" => {
            let from = operation.from.as_deref().ok_or("no `from`")?;
            let copied = find(target, from).ok_or("`from` does not exist")?.clone();
            add(target, &operation.path, copied)
        }
        other => Err(format!("unknown operation `{other}`")),
    }
}

fn find<'a>(node: &'a Node, path: &[String]) -> Option<&'a Node> {
    path.iter().try_fold(node, |node, token| match &node.value {
        Value::Map(_) => node.get(token),
        Value::Seq(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
        Value::Scalar(_) => None,
    })
}

fn find_mut<'a>(node: &'a mut Node, path: &[String]) -> Option<&'a mut Node> {
    let Some((first, rest)) = path.split_first() else {
        return Some(node);
    };
    let child = match &mut node.value {
        Value::Map(entries) => entries
            .iter_mut()
            .find(|(k, _)| k.as_scalar() == Some(first.as_str()))
            .map(|(_, v)| v)?,
        Value::Seq(items) => first.parse::<usize>().ok().and_then(|i| items.get_mut(i))?,
        Value::Scalar(_) => return None,
    };
    find_mut(child, rest)
}

fn add(target: &mut Node, path: &[String], value: Node) -> Result<(), String> {
    let Some((last, parent_path)) = path.split_last() else {
        *target = value;
        return Ok(());
    };
    let parent = find_mut(target, parent_path).ok_or("the parent of the path does not exist")?;
    match &mut parent.value {
        Value::Map(_) => {
            tree::set(parent, last, value);
            Ok(())
        }
        Value::Seq(items) => {
            let at = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>()
                    .map_err(|_| format!("`{last}` is not a list index"))?
            };
            if at > items.len() {
                return Err(format!("index {at} is past the end of the list"));
            }
            items.insert(at, value);
            Ok(())
        }
        Value::Scalar(_) => Err("the parent of the path is a scalar".into()),
    }
}

fn remove(target: &mut Node, path: &[String]) -> Result<Node, String> {
    let (last, parent_path) = path.split_last().ok_or("cannot remove the whole object")?;
    let parent = find_mut(target, parent_path).ok_or("the path does not exist")?;
    match &mut parent.value {
        Value::Map(_) => tree::remove(parent, last).ok_or_else(|| "the path does not exist".into()),
        Value::Seq(items) => {
            let at = last
                .parse::<usize>()
                .map_err(|_| format!("`{last}` is not a list index"))?;
            if at < items.len() {
                Ok(items.remove(at))
            } else {
                Err("the path does not exist".into())
            }
        }
        Value::Scalar(_) => Err("the path does not exist".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::build::first_document as parse;

    fn json(node: &Node) -> String {
        node.to_json().to_string()
    }

    #[test]
    fn strategic_merge_without_a_schema_merges_maps_and_replaces_lists() {
        let mut object = parse(
            "spec:\n  dependsOn: [{name: a}, {name: b}]\n  upgrade: {remediation: {retries: 3}, force: true}\n  keep: 1\n",
        );
        let patch = parse(
            "spec:\n  dependsOn: [{name: c}]\n  upgrade: {remediation: null}\n  added: {x: 1, y: null}\n",
        );
        assert!(matches!(strategic_merge(&mut object, &patch), Merged::Kept));
        assert_eq!(
            json(&object),
            r#"{"spec":{"added":{"x":1},"dependsOn":[{"name":"c"}],"keep":1,"upgrade":{"force":true}}}"#
        );
    }

    #[test]
    fn strategic_merge_directives() {
        let mut object = parse("spec:\n  upgrade: {force: true, crds: Create}\n");
        let patch = parse("spec:\n  upgrade:\n    $patch: replace\n    crds: Skip\n");
        strategic_merge(&mut object, &patch);
        assert_eq!(json(&object), r#"{"spec":{"upgrade":{"crds":"Skip"}}}"#);
        let delete = parse("$patch: delete\nkind: HelmRelease\n");
        assert!(matches!(
            strategic_merge(&mut object, &delete),
            Merged::Deleted
        ));
    }

    #[test]
    fn json_patch_operations() {
        let mut object = parse("spec:\n  list: [a, b]\n  m: {k: v}\n");
        let patch = parse(
            "- {op: add, path: /spec/list/1, value: x}\n- {op: add, path: /spec/list/-, value: z}\n\
             - {op: replace, path: /spec/m/k, value: w}\n- {op: copy, from: /spec/m, path: /spec/n}\n\
             - {op: move, from: /spec/list/0, path: /spec/first}\n- {op: remove, path: /spec/m}\n\
             - {op: test, path: /spec/first, value: a}\n- {op: add, path: /spec/a~1b, value: 1}\n",
        );
        let ops = operations(&patch).expect("operations");
        apply_operations(&mut object, &ops, |_| false).expect("applies");
        assert_eq!(
            json(&object),
            r#"{"spec":{"a/b":1,"first":"a","list":["x","b","z"],"n":{"k":"w"}}}"#
        );
    }

    #[test]
    fn json_patch_failures_say_why() {
        let mut object = parse("spec: {}\n");
        for (patch, why) in [
            ("- {op: replace, path: /spec/x, value: 1}", "does not exist"),
            (
                "- {op: add, path: /spec/x/y, value: 1}",
                "parent of the path does not exist",
            ),
            ("- {op: test, path: /spec, value: 1}", "differs"),
            ("- {op: frob, path: /spec}", "unknown operation"),
        ] {
            let patch = parse(patch);
            let ops = operations(&patch).expect("operations");
            let error = apply_operations(&mut object, &ops, |_| false)
                .err()
                .map(|e| e.message);
            assert!(
                error.as_deref().is_some_and(|m| m.contains(why)),
                "{error:?}"
            );
        }
    }
}
