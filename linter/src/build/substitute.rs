//! Flux's post-build substitution (`spec.postBuild`): `${VAR}` in every string of every
//! built object, from `substitute` and the ConfigMaps/Secrets of `substituteFrom`.
//!
//! As kustomize-controller does: nothing is substituted when no variable is defined; an
//! object labelled or annotated `kustomize.toolkit.fluxcd.io/substitute: disabled` is left
//! as it is; `${VAR:-default}` and `${VAR:=default}` (and their forms without the colon)
//! give the default when the variable is unset; `$${VAR}` is the literal `${VAR}`; an
//! undefined variable without a default becomes the empty string. Offline, a variable that
//! may come from a `substituteFrom` source that is not in the input is *unknown*: the text
//! stays as written, and the object says which source is missing.

use std::collections::HashMap;
use std::sync::Arc;

use crate::yaml::{Node, Value};

pub const DISABLE_KEY: &str = "kustomize.toolkit.fluxcd.io/substitute";

/// The variables of one Flux Kustomization, as far as the input tells.
#[derive(Debug, Default, Clone)]
pub struct Variables {
    pub values: HashMap<String, String>,
    /// `Kind/name` of `substituteFrom` sources the input does not have (or cannot be read:
    /// SOPS-encrypted): any variable may come from them.
    pub unknown_sources: Vec<String>,
}

impl Variables {
    /// Whether Flux substitutes at all: some variable is defined.
    pub fn any(&self) -> bool {
        !self.values.is_empty() || !self.unknown_sources.is_empty()
    }
}

/// What substituting one object found: the variables whose values cannot be known offline.
#[derive(Debug, Default)]
pub struct Outcome {
    pub unknown: Vec<String>,
}

/// Substitutes in every scalar of `root` (mapping keys too, as Flux works on the YAML text).
pub fn substitute(root: &mut Arc<Node>, variables: &Variables) -> Outcome {
    let mut outcome = Outcome::default();
    if !variables.any() || is_disabled(root) || !mentions_variable(root) {
        return outcome;
    }
    // Copied only here: most objects a build shares with others name no variable.
    walk(Arc::make_mut(root), variables, &mut outcome);
    outcome
}

fn mentions_variable(node: &Node) -> bool {
    match &node.value {
        Value::Scalar(scalar) => scalar.text.contains('$'),
        Value::Seq(items) => items.iter().any(mentions_variable),
        Value::Map(entries) => entries
            .iter()
            .any(|(k, v)| mentions_variable(k) || mentions_variable(v)),
    }
}

fn is_disabled(root: &Node) -> bool {
    ["labels", "annotations"].iter().any(|field| {
        root.path(&["metadata", field, DISABLE_KEY])
            .and_then(Node::as_scalar)
            == Some("disabled")
    })
}

fn walk(node: &mut Node, variables: &Variables, outcome: &mut Outcome) {
    match &mut node.value {
        Value::Scalar(scalar) => {
            if scalar.text.contains('$')
                && let Some(text) = expand(&scalar.text, variables, &mut outcome.unknown)
            {
                scalar.text = text.into_boxed_str();
            }
        }
        Value::Seq(items) => items.iter_mut().for_each(|n| walk(n, variables, outcome)),
        Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            walk(k, variables, outcome);
            walk(v, variables, outcome);
        }),
    }
}

/// The text with its variables expanded; `None` when it must stay as written (a variable
/// cannot be known, named in `unknown`).
fn expand(text: &str, variables: &Variables, unknown: &mut Vec<String>) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            // `$${VAR}`: the literal `${VAR}`.
            out.push_str("${");
            rest = escaped;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body.find('}') else {
            out.push_str(&rest[at..]);
            rest = "";
            break;
        };
        let expression = &body[..end];
        match value_of(expression, variables) {
            Lookup::Value(value) => out.push_str(&value),
            Lookup::Unknown(name) => {
                if !unknown.contains(&name) {
                    unknown.push(name);
                }
                return None;
            }
            Lookup::NotAVariable => out.push_str(&rest[at..at + 2 + end + 1]),
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

enum Lookup {
    Value(String),
    Unknown(String),
    /// Not `NAME`, `NAME:-x`, `NAME-x`, `NAME:=x` or `NAME=x`: left as written.
    NotAVariable,
}

fn value_of(expression: &str, variables: &Variables) -> Lookup {
    let name_end = expression
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(expression.len());
    let (name, operator) = expression.split_at(name_end);
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !starts_well {
        return Lookup::NotAVariable;
    }
    let default = [":-", ":=", "-", "="]
        .iter()
        .find_map(|op| operator.strip_prefix(op));
    if !operator.is_empty() && default.is_none() {
        return Lookup::NotAVariable;
    }
    let set = variables.values.get(name).filter(|v| {
        // `:-`/`:=` treat an empty value as unset.
        !(v.is_empty() && (operator.starts_with(":-") || operator.starts_with(":=")))
    });
    match (set, default) {
        (Some(value), _) => Lookup::Value(value.clone()),
        (None, _) if !variables.unknown_sources.is_empty() => Lookup::Unknown(name.to_owned()),
        (None, Some(default)) => Lookup::Value(default.to_owned()),
        (None, None) => Lookup::Value(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Variables {
        Variables {
            values: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            unknown_sources: Vec::new(),
        }
    }

    #[test]
    fn expands_as_flux_does() {
        let v = vars(&[("NS", "team-a"), ("EMPTY", "")]);
        let mut unknown = Vec::new();
        let cases = [
            ("${NS}", "team-a"),
            ("x-${NS}-y", "x-team-a-y"),
            ("${MISSING}", ""),
            ("${MISSING:-flux-system}", "flux-system"),
            ("${MISSING:=d}", "d"),
            ("${EMPTY:-d}", "d"),
            ("${EMPTY-d}", ""),
            ("$${NS}", "${NS}"),
            ("$NS", "$NS"),
            ("${NS^^}", "${NS^^}"),
        ];
        for (text, expected) in cases {
            assert_eq!(
                expand(text, &v, &mut unknown).as_deref(),
                Some(expected),
                "{text}"
            );
        }
        assert!(unknown.is_empty());
    }

    #[test]
    fn a_variable_from_a_missing_source_is_unknown() {
        let mut v = vars(&[("NS", "team-a")]);
        v.unknown_sources.push("ConfigMap/cluster-settings".into());
        let mut unknown = Vec::new();
        assert_eq!(expand("${NS}", &v, &mut unknown).as_deref(), Some("team-a"));
        assert_eq!(expand("${REGION:-eu}", &v, &mut unknown), None);
        assert_eq!(unknown, ["REGION"]);
    }

    #[test]
    fn nothing_is_substituted_without_variables_or_when_disabled() {
        let mut roots = Vec::new();
        crate::yaml::load_documents(
            "metadata:\n  annotations:\n    kustomize.toolkit.fluxcd.io/substitute: disabled\nspec: ${NS}\n",
            |d| roots.push(d.root),
        )
        .expect("yaml");
        let mut root = Arc::new(roots.remove(0));
        substitute(&mut root, &vars(&[("NS", "a")]));
        assert_eq!(root.get("spec").and_then(Node::as_str), Some("${NS}"));
        let mut root = Arc::new(
            crate::yaml::Node::from_json(&serde_json::json!({"spec": "${NS}"})).expect("json"),
        );
        substitute(&mut root, &Variables::default());
        assert_eq!(root.get("spec").and_then(Node::as_str), Some("${NS}"));
        substitute(&mut root, &vars(&[("NS", "a")]));
        assert_eq!(root.get("spec").and_then(Node::as_str), Some("a"));
        // An object without a variable is left shared, not copied.
        let shared = Arc::clone(&root);
        substitute(&mut root, &vars(&[("NS", "b")]));
        assert!(Arc::ptr_eq(&root, &shared));
    }
}
