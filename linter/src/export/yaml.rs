//! JSON values as block YAML, for the export. Strings that YAML could read as anything else
//! are written double-quoted (JSON's escapes are YAML's), so the output reads back as the
//! same values; `linter/tests/admission_policy.rs` reads every export back to check it.

use serde_json::Value;

/// `value` (a mapping) as a YAML document body.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, 0, &mut out);
    out
}

fn write_value(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                pad(indent, out);
                out.push_str(&scalar(key));
                out.push(':');
                write_child(item, indent, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                pad(indent, out);
                out.push('-');
                match item {
                    Value::Object(map) if !map.is_empty() => {
                        // The first entry goes on the dash's line, the rest below it.
                        let mut first = String::new();
                        write_value(item, indent + 2, &mut first);
                        out.push(' ');
                        out.push_str(first.trim_start());
                    }
                    _ => write_child(item, indent, out),
                }
            }
        }
        _ => {
            pad(indent, out);
            out.push_str(&inline(value));
            out.push('\n');
        }
    }
}

/// What follows `key:` or `-`: a nested block, or a value on the same line.
fn write_child(item: &Value, indent: usize, out: &mut String) {
    match item {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_value(item, indent + 2, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_value(item, indent + 2, out);
        }
        _ => {
            out.push(' ');
            out.push_str(&inline(item));
            out.push('\n');
        }
    }
}

fn pad(indent: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn inline(value: &Value) -> String {
    match value {
        Value::String(text) => scalar(text),
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
        other => other.to_string(),
    }
}

/// A string plain when YAML reads it back as that string, else double-quoted.
fn scalar(text: &str) -> String {
    let plain = text.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        text.to_owned()
    } else {
        serde_json::Value::String(text.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_values_read_back_as_themselves() {
        let value = json!({
            "a": {"b": ["x", "true", "it's: y", {"c": 1, "d": [true, null]}], "e": {}},
            "f": "",
            "g": [],
            "line\nbreak": "1.5",
        });
        let text = to_yaml(&value);
        let mut docs = Vec::new();
        crate::yaml::load_documents(&text, |d| docs.push(d)).unwrap();
        assert_eq!(docs.len(), 1, "{text}");
        assert_eq!(docs.remove(0).root.to_json(), value, "{text}");
    }
}
