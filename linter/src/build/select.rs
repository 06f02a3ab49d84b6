//! kustomize's resource selectors (`patches[].target`, `replacements[].targets[].select`):
//! group, version and kind compared exactly, name and namespace as anchored regular
//! expressions matched against the current *or* the original value, label and annotation
//! selectors in Kubernetes' syntax.

use regex::Regex;

use super::tree;
use super::{BuildError, Object};
use crate::yaml::Node;

/// What kustomize's `ResId.EffectiveNamespace` calls a namespaced object without one.
const DEFAULT_NAMESPACE: &str = "default";

#[derive(Debug)]
pub struct Selector {
    group: Option<String>,
    version: Option<String>,
    kind: Option<String>,
    name: Option<Regex>,
    namespace: Option<Regex>,
    labels: Vec<Requirement>,
    annotations: Vec<Requirement>,
}

impl Selector {
    /// Reads a selector mapping; names and namespaces are regular expressions.
    pub fn from_node(node: &Node) -> Result<Selector, BuildError> {
        let field = |key: &str| node.get(key).and_then(Node::as_str).map(str::to_owned);
        let pattern = |key: &str| -> Result<Option<Regex>, BuildError> {
            field(key)
                .map(|p| {
                    Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                        BuildError::at(
                            node.span,
                            format!("selector {key} `{p}` is not a regular expression: {e}"),
                        )
                    })
                })
                .transpose()
        };
        Ok(Selector {
            group: field("group"),
            version: field("version"),
            kind: field("kind"),
            name: pattern("name")?,
            namespace: pattern("namespace")?,
            labels: requirements(field("labelSelector").as_deref(), node)?,
            annotations: requirements(field("annotationSelector").as_deref(), node)?,
        })
    }

    pub fn matches(&self, object: &Object) -> bool {
        let root = &object.root;
        let (group, version) = tree::group_version(tree::api_version(root));
        let kind = tree::kind(root);
        let exact =
            |wanted: &Option<String>, value: &str| wanted.as_deref().is_none_or(|w| w == value);
        if !exact(&self.group, group) || !exact(&self.version, version) || !exact(&self.kind, kind)
        {
            return false;
        }
        if let Some(name) = &self.name
            && !name.is_match(tree::name(root))
            && !name.is_match(&object.original_name)
        {
            return false;
        }
        if let Some(namespace) = &self.namespace {
            let current = effective_namespace(kind, tree::namespace(root));
            let original = effective_namespace(kind, object.original_namespace.as_deref());
            if !namespace.is_match(current) && !namespace.is_match(original) {
                return false;
            }
        }
        self.labels
            .iter()
            .all(|r| r.holds(|key| tree::metadata_entry(root, "labels", key)))
            && self
                .annotations
                .iter()
                .all(|r| r.holds(|key| tree::metadata_entry(root, "annotations", key)))
    }
}

/// The namespace a selector sees: kustomize's "default" for a namespaced object without one,
/// nothing a pattern can match for a cluster-scoped one.
fn effective_namespace<'a>(kind: &str, namespace: Option<&'a str>) -> &'a str {
    if tree::is_cluster_scoped(kind) {
        "\u{0}cluster-scoped"
    } else {
        namespace.unwrap_or(DEFAULT_NAMESPACE)
    }
}

/// One requirement of a label selector (`a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`).
#[derive(Debug, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

impl Requirement {
    fn holds<'a>(&self, value_of: impl Fn(&str) -> Option<&'a str>) -> bool {
        match self {
            Requirement::Equals(k, v) => value_of(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => value_of(k) != Some(v.as_str()),
            Requirement::In(k, values) => {
                value_of(k).is_some_and(|x| values.iter().any(|v| v == x))
            }
            Requirement::NotIn(k, values) => {
                value_of(k).is_none_or(|x| values.iter().all(|v| v != x))
            }
            Requirement::Exists(k) => value_of(k).is_some(),
            Requirement::Absent(k) => value_of(k).is_none(),
        }
    }
}

/// Parses a label selector string; an empty or missing one selects everything.
fn requirements(text: Option<&str>, node: &Node) -> Result<Vec<Requirement>, BuildError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(Vec::new());
    };
    let invalid = |part: &str| {
        BuildError::at(
            node.span,
            format!("cannot read the label selector `{text}` at `{part}`"),
        )
    };
    split_requirements(text)
        .into_iter()
        .map(|part| parse_requirement(part).ok_or_else(|| invalid(part)))
        .collect()
}

/// Splits at the commas that are not inside `( … )`.
fn split_requirements(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(text[start..].trim());
    parts
}

fn parse_requirement(part: &str) -> Option<Requirement> {
    let set = |rest: &str| -> Option<Vec<String>> {
        let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
        Some(
            inner
                .split(',')
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect(),
        )
    };
    if let Some(key) = part.strip_prefix('!') {
        return Some(Requirement::Absent(key.trim().to_owned()));
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Some(Requirement::NotEquals(
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Some(Requirement::Equals(
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let key = words.next()?.trim().to_owned();
    let rest = words.next().map(str::trim).unwrap_or("");
    if rest.is_empty() {
        return Some(Requirement::Exists(key));
    }
    if let Some(values) = rest.strip_prefix("notin") {
        return Some(Requirement::NotIn(key, set(values)?));
    }
    if let Some(values) = rest.strip_prefix("in") {
        return Some(Requirement::In(key, set(values)?));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_read_as_kubernetes_writes_them() {
        let parsed: Vec<Option<Requirement>> =
            split_requirements("a=b, c!=d,e in (x, y),f notin (z),g,!h")
                .into_iter()
                .map(parse_requirement)
                .collect();
        assert_eq!(
            parsed,
            [
                Some(Requirement::Equals("a".into(), "b".into())),
                Some(Requirement::NotEquals("c".into(), "d".into())),
                Some(Requirement::In("e".into(), vec!["x".into(), "y".into()])),
                Some(Requirement::NotIn("f".into(), vec!["z".into()])),
                Some(Requirement::Exists("g".into())),
                Some(Requirement::Absent("h".into())),
            ]
        );
        assert_eq!(parse_requirement("a in x"), None);
    }

    #[test]
    fn requirements_hold_as_selectors_do() {
        let labels = |key: &str| match key {
            "app" => Some("web"),
            _ => None,
        };
        assert!(Requirement::In("app".into(), vec!["web".into()]).holds(labels));
        assert!(Requirement::NotIn("tier".into(), vec!["db".into()]).holds(labels));
        assert!(!Requirement::Exists("tier".into()).holds(labels));
        assert!(Requirement::NotEquals("tier".into(), "x".into()).holds(labels));
    }
}
