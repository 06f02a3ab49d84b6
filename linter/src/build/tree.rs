//! Editing built trees: the few mutations kustomize's transformers need, and the identity
//! (kind, name, namespace, labels) they select objects by.

use crate::yaml::{Node, Scalar, Span, Value};

/// A string scalar node (quoted: a value a transformer writes is a string, never a number).
pub fn string(text: &str, span: Span) -> Node {
    Node {
        value: Value::Scalar(Scalar {
            text: text.into(),
            plain: false,
        }),
        span,
    }
}

/// An empty mapping node.
pub fn mapping(span: Span) -> Node {
    Node {
        value: Value::Map(Vec::new()),
        span,
    }
}

/// Marks every node of `node` (that no build marked before) as written in file `index`.
pub fn place_in_file(node: &mut Node, index: usize) {
    if node.span.file == 0 {
        node.span = node.span.in_file(index);
    }
    match &mut node.value {
        Value::Scalar(_) => {}
        Value::Seq(items) => items.iter_mut().for_each(|n| place_in_file(n, index)),
        Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            place_in_file(k, index);
            place_in_file(v, index);
        }),
    }
}

/// Gives every node of `node` the span `span` (a value written inside a text whose own
/// positions cannot be mapped back to the file: all of it points at that text).
pub fn respan(node: &mut Node, span: Span) {
    node.span = span;
    match &mut node.value {
        Value::Scalar(_) => {}
        Value::Seq(items) => items.iter_mut().for_each(|n| respan(n, span)),
        Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            respan(k, span);
            respan(v, span);
        }),
    }
}

pub fn get_mut<'a>(node: &'a mut Node, key: &str) -> Option<&'a mut Node> {
    match &mut node.value {
        Value::Map(entries) => entries
            .iter_mut()
            .find(|(k, _)| k.as_scalar() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// Sets `key` of a mapping to `value`, keeping the key's place (and its key node) when it is
/// there already. The key node of a new entry takes the value's span.
pub fn set(node: &mut Node, key: &str, value: Node) {
    let Value::Map(entries) = &mut node.value else {
        return;
    };
    if let Some((_, slot)) = entries.iter_mut().find(|(k, _)| k.as_scalar() == Some(key)) {
        *slot = value;
    } else {
        let key_node = string(key, value.span);
        entries.push((key_node, value));
    }
}

/// Removes `key` from a mapping; whether it was there.
pub fn remove(node: &mut Node, key: &str) -> Option<Node> {
    let Value::Map(entries) = &mut node.value else {
        return None;
    };
    let at = entries
        .iter()
        .position(|(k, _)| k.as_scalar() == Some(key))?;
    Some(entries.remove(at).1)
}

/// The mapping under `key`, created (spanning `span`) when it is missing or null.
pub fn child_map<'a>(node: &'a mut Node, key: &str, span: Span) -> Option<&'a mut Node> {
    let missing = node.get(key).is_none_or(Node::is_null);
    if missing {
        set(node, key, mapping(span));
    }
    get_mut(node, key).filter(|n| n.as_map().is_some())
}

/// A resource's identity, as kustomize selects by it.
pub fn kind(root: &Node) -> &str {
    root.get("kind").and_then(Node::as_str).unwrap_or("")
}

pub fn api_version(root: &Node) -> &str {
    root.get("apiVersion").and_then(Node::as_str).unwrap_or("")
}

/// `(group, version)` of an `apiVersion` (`v1` is the core group, `""`).
pub fn group_version(api_version: &str) -> (&str, &str) {
    match api_version.rsplit_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

pub fn name(root: &Node) -> &str {
    root.path(&["metadata", "name"])
        .and_then(Node::as_str)
        .unwrap_or("")
}

pub fn namespace(root: &Node) -> Option<&str> {
    root.path(&["metadata", "namespace"]).and_then(Node::as_str)
}

/// A `metadata.labels` or `metadata.annotations` value.
pub fn metadata_entry<'a>(root: &'a Node, field: &str, key: &str) -> Option<&'a str> {
    root.path(&["metadata", field, key])
        .and_then(Node::as_scalar)
}

/// Kinds kustomize knows to be cluster-scoped: its namespace transformer leaves them be, and
/// selectors see them in no namespace. Any other kind (every custom resource) is namespaced.
pub fn is_cluster_scoped(kind: &str) -> bool {
    matches!(
        kind,
        "Namespace"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "CustomResourceDefinition"
            | "APIService"
            | "PersistentVolume"
            | "StorageClass"
            | "PriorityClass"
            | "MutatingWebhookConfiguration"
            | "ValidatingWebhookConfiguration"
            | "ValidatingAdmissionPolicy"
            | "ValidatingAdmissionPolicyBinding"
            | "MutatingAdmissionPolicy"
            | "MutatingAdmissionPolicyBinding"
            | "PodSecurityPolicy"
            | "RuntimeClass"
            | "CSIDriver"
            | "CSINode"
            | "VolumeAttachment"
            | "IngressClass"
            | "Node"
            | "ComponentStatus"
            | "CertificateSigningRequest"
            | "TokenReview"
            | "SelfSubjectAccessReview"
            | "SelfSubjectRulesReview"
            | "SubjectAccessReview"
            | "FlowSchema"
            | "PriorityLevelConfiguration"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::build::first_document as parse;

    #[test]
    fn set_keeps_an_existing_key_in_place_and_appends_a_new_one() {
        let mut root = parse("a: 1\nb: 2\n");
        set(&mut root, "a", string("x", Span::new(0, 0)));
        set(&mut root, "c", string("y", Span::new(0, 0)));
        let keys: Vec<&str> = root
            .as_map()
            .unwrap_or_default()
            .iter()
            .filter_map(|(k, _)| k.as_scalar())
            .collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(root.get("a").and_then(Node::as_str), Some("x"));
        assert!(remove(&mut root, "b").is_some());
        assert!(remove(&mut root, "b").is_none());
    }

    #[test]
    fn placing_in_a_file_keeps_what_was_placed_before() {
        let mut root = parse("a:\n  b: 1\n");
        if let Some(a) = get_mut(&mut root, "a") {
            place_in_file(a, 4);
        }
        place_in_file(&mut root, 1);
        assert_eq!(root.span.file_index(), Some(1));
        assert_eq!(
            root.path(&["a", "b"]).map(|n| n.span.file_index()),
            Some(Some(4))
        );
    }

    #[test]
    fn group_and_version_of_api_versions() {
        assert_eq!(group_version("v1"), ("", "v1"));
        assert_eq!(
            group_version("helm.toolkit.fluxcd.io/v2"),
            ("helm.toolkit.fluxcd.io", "v2")
        );
    }
}
