//! JSON values written as block YAML, the way `kubectl get -o yaml` shows objects: the text a
//! live object's code frame points into, and the PolicyReports `fluxfence audit` prints.
//!
//! Strings are plain only when no YAML reader could take them for anything else (a number, a
//! boolean, null, an indicator); every other string is written as a JSON string, which is a
//! valid YAML double-quoted scalar. Reading the text back gives the same value.

use std::fmt::Write as _;

use serde_json::Value;

/// One YAML document for `value` (a mapping, as Kubernetes objects are), ending in a newline.
pub fn document(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => mapping(&mut out, map, 0),
        other => {
            out.push_str(&flow(other));
            out.push('\n');
        }
    }
    out
}

fn mapping(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (i, (key, value)) in map.iter().enumerate() {
        // The first entry of a sequence item's mapping follows its `- ` on the same line.
        if i > 0 || !out.ends_with("- ") {
            pad(out, indent);
        }
        out.push_str(&scalar_text(key));
        out.push(':');
        nested(out, value, indent);
    }
}

/// A mapping's or a sequence item's value, after its `key:` or `-`.
fn nested(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            mapping(out, map, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            for item in items {
                pad(out, indent + 2);
                out.push_str("- ");
                match item {
                    Value::Object(map) if !map.is_empty() => mapping(out, map, indent + 4),
                    // A sequence in a sequence is rare in Kubernetes objects: flow style.
                    other => {
                        out.push_str(&flow(other));
                        out.push('\n');
                    }
                }
            }
        }
        other => {
            out.push(' ');
            out.push_str(&flow(other));
            out.push('\n');
        }
    }
}

fn pad(out: &mut String, indent: usize) {
    let _ = write!(out, "{:indent$}", "");
}

/// A value on one line: a scalar, or a collection as JSON (YAML's flow style).
fn flow(value: &Value) -> String {
    match value {
        Value::String(text) => scalar_text(text),
        other => other.to_string(),
    }
}

/// `text` as a YAML scalar that reads back as this very string.
fn scalar_text(text: &str) -> String {
    if is_plain(text) {
        text.to_owned()
    } else {
        Value::String(text.to_owned()).to_string()
    }
}

/// Letters, digits and `-_./@`, starting with a letter (so never a number, `.inf` or an
/// indicator), and none of the words YAML 1.1 or 1.2 read as booleans or null.
fn is_plain(text: &str) -> bool {
    const RESERVED: &[&str] = &["true", "false", "null", "yes", "no", "on", "off", "y", "n"];
    text.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./@".contains(&b))
        && !RESERVED.iter().any(|word| text.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read_back(text: &str) -> Value {
        let mut documents = Vec::new();
        crate::yaml::load_documents(text, |d| documents.push(d.root.to_json())).unwrap();
        assert_eq!(documents.len(), 1, "{text}");
        documents.remove(0)
    }

    #[test]
    fn objects_read_back_as_the_same_value() {
        let object = json!({
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {
                "name": "podinfo",
                "namespace": "apps",
                "labels": {"kustomize.toolkit.fluxcd.io/name": "apps", "app": "true"},
                "annotations": {"note": "a: b # c\nsecond line", "empty": ""},
                "finalizers": ["finalizers.fluxcd.io"],
                "generation": 3
            },
            "spec": {
                "interval": "10m",
                "values": {"replicas": 2, "ratio": 0.5, "on": true, "nothing": null,
                           "list": [[1, 2], [], {}], "yes": "no", "number": "0123", "~": "~"},
                "chart": {"spec": {"chart": "podinfo", "version": ">=6.0.0",
                    "sourceRef": {"kind": "HelmRepository", "name": "podinfo", "namespace": "flux-system"}}},
                "dependsOn": [{"name": "infra"}, {"name": "db", "namespace": "data"}],
                "emptyMap": {},
                "emptyList": [],
                "url": "https://github.com/org/repo",
                "unicode": "héllo – ✓",
                "dash": "-leading",
                "dot": ".inf"
            }
        });
        let text = document(&object);
        assert_eq!(read_back(&text), object, "{text}");
    }

    #[test]
    fn block_layout_is_what_kubectl_shows() {
        // Keys in order, as kubectl prints them.
        let object =
            json!({"spec": {"list": [{"name": "x", "count": 1}, "y"]}, "metadata": {"name": "a"}});
        assert_eq!(
            document(&object),
            "metadata:\n  name: a\nspec:\n  list:\n    - count: 1\n      name: x\n    - \"y\"\n"
        );
    }

    #[test]
    fn strings_yaml_would_read_as_something_else_are_quoted() {
        for text in [
            "true", "No", "null", "1.5", "0x1F", "-", "a: b", "", " a", "@x", "a#b",
        ] {
            assert_ne!(scalar_text(text), text, "{text} must be quoted");
        }
        for text in [
            "podinfo",
            "flux-system",
            "kustomize.toolkit.fluxcd.io/name",
            "v1beta2",
        ] {
            assert_eq!(scalar_text(text), text);
        }
    }
}
