//! What a Flux object reads from other objects, as the controllers look each one up: the move
//! plan keeps an object and everything it reads together, and the postcondition checks that
//! every one of them still resolves after the fix.

use crate::kinds::FluxKind;
use crate::model::FluxObject;
use crate::rules::{pointer, source_references};
use crate::yaml::Node;

/// How a reference is read; only `dependsOn` may cross namespaces under
/// `--no-cross-namespace-refs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `sourceRef`, `chartRef`, `imageRepositoryRef`, `providerRef`, event sources.
    Source,
    /// `dependsOn`: readiness of another object, in any namespace.
    DependsOn,
    /// A ConfigMap or Secret read in the object's own namespace (`valuesFrom`,
    /// `substituteFrom`, every `secretRef`/`configMapRef`).
    Config,
}

/// One reference of an object to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    /// JSON pointer of the reference mapping (`/spec/sourceRef`).
    pub pointer: String,
    pub kind: String,
    /// `*` for every object of the kind (an Alert's or Receiver's wildcard).
    pub name: String,
    /// The namespace written in the reference; `None` reads the object's own.
    pub namespace: Option<String>,
    /// A missing target is no error (`optional: true`).
    pub optional: bool,
    pub role: Role,
    /// Whether the reference has a `namespace` field at all (a ConfigMap or Secret reference
    /// is always in the object's own namespace).
    pub namespaced: bool,
}

impl ObjectRef {
    /// The namespace the controllers look the target up in, for an object in `own`.
    pub fn target_namespace<'a>(&'a self, own: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(own)
    }

    /// The field named for the user: `spec.sourceRef`.
    pub fn field(&self) -> String {
        self.pointer.trim_start_matches('/').replace('/', ".")
    }
}

/// Every reference `object` makes to another object.
pub fn references(object: &FluxObject) -> Vec<ObjectRef> {
    let mut out = Vec::new();
    for reference in source_references(object) {
        let default_kind = match object.kind {
            FluxKind::ImagePolicy => "ImageRepository",
            FluxKind::ImageUpdateAutomation => "GitRepository",
            _ => "",
        };
        let kind = reference.field("kind").unwrap_or(default_kind);
        let namespace = reference.field("namespace");
        // A reference without a name still has a namespace FF101 judges: it holds the object
        // where it is (nothing in the repository can be its target).
        if let Some(name) = reference.field("name").or(namespace.map(|_| "")) {
            out.push(ObjectRef {
                pointer: reference.pointer.clone(),
                kind: kind.to_owned(),
                name: name.to_owned(),
                namespace: namespace.map(str::to_owned),
                optional: false,
                role: Role::Source,
                namespaced: true,
            });
        }
    }
    let spec = |path: &[&str]| object.root.path(&[&["spec"], path].concat());
    if object.kind.impersonates() {
        for (i, item) in items(spec(&["dependsOn"])) {
            let Some(name) = item.get("name").and_then(Node::as_str) else {
                continue;
            };
            out.push(ObjectRef {
                pointer: format!("/spec/dependsOn/{i}"),
                kind: object.kind.as_str().to_owned(),
                name: name.to_owned(),
                namespace: item
                    .get("namespace")
                    .and_then(Node::as_str)
                    .map(str::to_owned),
                optional: false,
                role: Role::DependsOn,
                namespaced: true,
            });
        }
    }
    let lists: &[(&[&str], &str)] = match object.kind {
        FluxKind::HelmRelease => &[(&["valuesFrom"], "/spec/valuesFrom")],
        FluxKind::Kustomization => &[(
            &["postBuild", "substituteFrom"],
            "/spec/postBuild/substituteFrom",
        )],
        _ => &[],
    };
    for (path, at) in lists {
        for (i, item) in items(spec(path)) {
            let (Some(kind), Some(name)) = (
                item.get("kind").and_then(Node::as_str),
                item.get("name").and_then(Node::as_str),
            ) else {
                continue;
            };
            out.push(ObjectRef {
                pointer: format!("{at}/{i}"),
                kind: kind.to_owned(),
                name: name.to_owned(),
                namespace: None,
                optional: item.get("optional").and_then(Node::as_str) == Some("true"),
                role: Role::Config,
                namespaced: false,
            });
        }
    }
    if let Some(provider) = spec(&["providerRef"]).filter(|_| object.kind == FluxKind::Alert)
        && let Some(name) = provider.get("name").and_then(Node::as_str)
    {
        out.push(ObjectRef {
            pointer: "/spec/providerRef".into(),
            kind: "Provider".into(),
            name: name.to_owned(),
            namespace: None,
            optional: false,
            role: Role::Source,
            namespaced: false,
        });
    }
    let sources: &[&str] = match object.kind {
        FluxKind::Alert => &["eventSources"],
        FluxKind::Receiver => &["resources"],
        _ => &[],
    };
    for list in sources {
        for (i, item) in items(spec(&[list])) {
            let (Some(kind), Some(name)) = (
                item.get("kind").and_then(Node::as_str),
                item.get("name").and_then(Node::as_str),
            ) else {
                continue;
            };
            out.push(ObjectRef {
                pointer: format!("/spec/{list}/{i}"),
                kind: kind.to_owned(),
                name: name.to_owned(),
                namespace: item
                    .get("namespace")
                    .and_then(Node::as_str)
                    .map(str::to_owned),
                optional: false,
                role: Role::Source,
                namespaced: true,
            });
        }
    }
    if let Some(spec) = object.root.get("spec") {
        let mut keys = vec!["spec".to_owned()];
        secret_and_config_map_refs(spec, &mut keys, &mut out);
    }
    out
}

/// The items of a sequence node, with their indexes.
fn items(node: Option<&Node>) -> impl Iterator<Item = (usize, &Node)> {
    node.and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .enumerate()
}

/// Fields whose values the controllers never read as references: Helm values (a chart's
/// own `secretRef`s), patches, and the lists read above.
const NOT_REFERENCES: &[&str] = &[
    "values",
    "valuesFrom",
    "substituteFrom",
    "patches",
    "postRenderers",
    "commonMetadata",
];

/// Every `…secretRef`/`…SecretRef` (a Secret) and `…configMapRef` (a ConfigMap) mapping with
/// a `name` under `node`: `secretRef`, `certSecretRef`, `proxySecretRef`,
/// `kubeConfig.secretRef`, `decryption.secretRef`, `verify.secretRef`, …
fn secret_and_config_map_refs(node: &Node, keys: &mut Vec<String>, out: &mut Vec<ObjectRef>) {
    if let Some(entries) = node.as_map() {
        for (key, value) in entries {
            let Some(key) = key.as_scalar() else { continue };
            if NOT_REFERENCES.contains(&key) {
                continue;
            }
            keys.push(key.to_owned());
            let kind = if key.ends_with("secretRef") || key.ends_with("SecretRef") {
                Some("Secret")
            } else if key.ends_with("configMapRef") || key.ends_with("ConfigMapRef") {
                Some("ConfigMap")
            } else {
                None
            };
            match (kind, value.get("name").and_then(Node::as_str)) {
                (Some(kind), Some(name)) => {
                    let path: Vec<&str> = keys.iter().map(String::as_str).collect();
                    out.push(ObjectRef {
                        pointer: pointer(&path),
                        kind: kind.to_owned(),
                        name: name.to_owned(),
                        namespace: None,
                        optional: false,
                        role: Role::Config,
                        namespaced: false,
                    });
                }
                _ => secret_and_config_map_refs(value, keys, out),
            }
            keys.pop();
        }
    } else if let Some(items) = node.as_seq() {
        for (i, item) in items.iter().enumerate() {
            keys.push(i.to_string());
            secret_and_config_map_refs(item, keys, out);
            keys.pop();
        }
    }
}
