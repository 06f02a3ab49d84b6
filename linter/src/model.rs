//! The object model the rules see: a Flux object, the namespace it will live in and where that
//! namespace came from. Files and admission requests are both turned into these.

use crate::kinds::FluxKind;
use crate::yaml::{Node, Span, Value};

#[cfg(test)]
mod tests {
    use super::with_substitution_defaults;

    #[test]
    fn substitution_defaults_stand_in_for_unset_variables() {
        for (value, expected) in [
            ("team-a", Some("team-a")),
            ("${SRC_NS:-flux-system}", Some("flux-system")),
            ("${SRC_NS:=flux-system}", Some("flux-system")),
            ("${SRC_NS-flux-system}", Some("flux-system")),
            ("team-${ENV:-dev}", Some("team-dev")),
            ("${SRC_NS}", None),
            ("${SRC_NS:-a}-${OTHER}", None),
            ("${UNCLOSED", None),
        ] {
            assert_eq!(
                with_substitution_defaults(value).as_deref(),
                expected,
                "{value}"
            );
        }
    }
}

/// A Flux object, as written (minus HelmRelease `spec.values`, which no rule reads and which
/// is most of a large repository's bytes).
#[derive(Debug, Clone)]
pub struct FluxObject {
    pub kind: FluxKind,
    pub api_version: String,
    pub name: String,
    /// `metadata.namespace` as written, if any.
    pub declared_namespace: Option<String>,
    pub root: Node,
}

impl FluxObject {
    /// Reads the identity of a Flux object; `None` when the document is not a Flux kind.
    pub fn from_node(mut root: Node) -> Option<FluxObject> {
        let api_version = root.get("apiVersion")?.as_str()?.to_owned();
        let kind = FluxKind::from_type(&api_version, root.get("kind")?.as_str()?)?;
        let (name, declared_namespace) = name_and_namespace(&root);
        if kind == FluxKind::HelmRelease {
            drop_values(&mut root);
        }
        Some(FluxObject {
            kind,
            api_version,
            name,
            declared_namespace,
            root,
        })
    }

    /// `spec.<field>` as a non-empty string.
    pub fn spec_str(&self, field: &str) -> Option<&str> {
        self.root.path(&["spec", field]).and_then(Node::as_str)
    }

    pub fn spec(&self) -> Option<&Node> {
        self.root.get("spec")
    }

    /// `Kind/name` for messages.
    pub fn display_name(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// `metadata.name` (empty when missing) and `metadata.namespace` of a document.
pub fn name_and_namespace(root: &Node) -> (String, Option<String>) {
    let metadata = root.get("metadata");
    let field = |key| metadata.and_then(|m| m.get(key)).and_then(Node::as_str);
    (
        field("name").unwrap_or("").to_owned(),
        field("namespace").map(str::to_owned),
    )
}

fn drop_values(root: &mut Node) {
    let Value::Map(entries) = &mut root.value else {
        return;
    };
    let Some((_, spec)) = entries
        .iter_mut()
        .find(|(k, _)| k.as_scalar() == Some("spec"))
    else {
        return;
    };
    let Value::Map(spec_entries) = &mut spec.value else {
        return;
    };
    for (key, value) in spec_entries.iter_mut() {
        if key.as_scalar() == Some("values") {
            *value = Node {
                value: Value::Scalar(crate::yaml::Scalar {
                    text: Box::default(),
                    plain: true,
                }),
                span: value.span,
            };
        }
    }
}

/// Where an object's effective namespace came from. Kustomize and Flux both *override* the
/// namespace of what they apply, so the order of precedence is the order of these variants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NamespaceOrigin {
    /// `spec.targetNamespace` of the Flux Kustomization whose `spec.path` applies the file.
    FluxKustomization {
        kustomization: String,
        location: String,
    },
    /// `namespace:` of the outermost kustomization.yaml that includes the file
    /// (`kustomization` indexes `Inventory::kustomize_files`).
    KustomizeFile {
        location: String,
        kustomization: usize,
    },
    /// A kustomize replacement that copied the namespace from another object's field
    /// (`location` is where the copied value is written).
    Replacement { location: String },
    /// The object's own `metadata.namespace`.
    Metadata,
    /// The namespace of an admission request.
    AdmissionRequest,
}

impl NamespaceOrigin {
    pub fn describe(&self) -> String {
        match self {
            NamespaceOrigin::FluxKustomization {
                kustomization,
                location,
            } => {
                format!("targetNamespace of Flux Kustomization {kustomization} ({location})")
            }
            NamespaceOrigin::KustomizeFile { location, .. } => format!("namespace of {location}"),
            NamespaceOrigin::Replacement { location } => {
                format!("a kustomize replacement, copied from {location}")
            }
            NamespaceOrigin::Metadata => "metadata.namespace".to_owned(),
            NamespaceOrigin::AdmissionRequest => "the admission request".to_owned(),
        }
    }
}

/// The namespace an object will be created in, or why that cannot be known offline.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EffectiveNamespace {
    Known {
        name: String,
        origin: NamespaceOrigin,
    },
    /// A `${VAR}` substitution, or no namespace anywhere: namespace rules cannot judge it.
    Unknown { reason: String },
}

impl EffectiveNamespace {
    /// A namespace value from `origin`, unknown when it is a Flux post-build substitution.
    pub fn from_value(name: &str, origin: NamespaceOrigin) -> EffectiveNamespace {
        if name.contains("${") {
            EffectiveNamespace::Unknown {
                reason: format!(
                    "namespace `{name}` (from {}) is a substitution variable",
                    origin.describe()
                ),
            }
        } else {
            EffectiveNamespace::Known {
                name: name.to_owned(),
                origin,
            }
        }
    }
}

/// `value` as Flux's post-build substitution leaves it when no variable is set: every
/// `${NAME:-default}` (and `:=`, `-`, `=`) becomes its default. `None` when a `${NAME}` has
/// no default, so only the substitution (unknown here) can say what the value is.
pub fn with_substitution_defaults(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let expression = &rest[start + 2..];
        let end = expression.find('}')?;
        let expression = &expression[..end];
        let name_end = expression
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expression.len());
        let operator = &expression[name_end..];
        let default = [":-", ":=", "-", "="]
            .iter()
            .find_map(|op| operator.strip_prefix(op))?;
        out.push_str(default);
        rest = &rest[start + 2 + end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// A reference field of an object: where it is and what it points at.
#[derive(Debug, Clone)]
pub struct Reference<'a> {
    /// JSON pointer of the reference mapping (`/spec/sourceRef`).
    pub pointer: String,
    pub node: &'a Node,
}

impl Reference<'_> {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.node.get(name).and_then(Node::as_str)
    }

    /// The span of `name` inside the reference, else of the reference itself.
    pub fn span_of(&self, name: &str) -> Span {
        self.node.get(name).map_or(self.node.span, |n| n.span)
    }
}
