//! The multi-tenancy rewrite of the Azure document, for one object: keep the Flux object in the
//! configuration namespace next to its source and deploy into the app namespace through
//! `targetNamespace`. `fluxfence fix` applies it to files; the webhook, which cannot move an
//! object, shows it in its denial.

use crate::kinds::FluxKind;
use crate::model::FluxObject;
use crate::policy::Policy;
use crate::rules::source_references;

/// The fields that change when `object`, now in `namespace`, moves to the config namespace:
/// `(JSON pointer, new value)`, in the order they appear in a manifest.
pub fn move_edits(object: &FluxObject, namespace: &str, policy: &Policy) -> Vec<(String, String)> {
    let config = policy.config_namespace.as_str();
    if namespace == config
        || !matches!(object.kind, FluxKind::HelmRelease | FluxKind::Kustomization)
    {
        return Vec::new();
    }
    let mut edits = vec![("/metadata/namespace".to_owned(), config.to_owned())];
    if object.kind == FluxKind::HelmRelease && object.spec_str("releaseName").is_none() {
        // helm-controller names the release `<targetNamespace>-<name>` once targetNamespace is
        // set; pin the name the release has today so Helm upgrades it instead of installing anew.
        let release = match object.spec_str("targetNamespace") {
            Some(target) => format!("{target}-{}", object.name),
            None => object.name.clone(),
        };
        edits.push(("/spec/releaseName".into(), release));
    }
    if object.spec_str("targetNamespace").is_none() {
        edits.push(("/spec/targetNamespace".into(), namespace.to_owned()));
    }
    if object.kind == FluxKind::HelmRelease && object.spec_str("storageNamespace").is_none() {
        // Helm keeps release secrets in the HelmRelease's namespace by default: keep them where
        // they are so the existing release is found.
        edits.push(("/spec/storageNamespace".into(), namespace.to_owned()));
    }
    for reference in source_references(object) {
        if reference.field("namespace").is_some_and(|ns| ns != config) {
            edits.push((
                format!("{}/namespace", reference.pointer),
                config.to_owned(),
            ));
        }
    }
    edits
}

/// A short YAML rendering of the moved object's identity and changed fields, for messages.
pub fn suggest_move(object: &FluxObject, namespace: &str, policy: &Policy) -> Option<String> {
    let edits = move_edits(object, namespace, policy);
    if edits.is_empty() {
        return None;
    }
    let mut out = format!(
        "apiVersion: {}\nkind: {}\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n",
        object.api_version, object.kind, object.name, policy.config_namespace
    );
    for (pointer, value) in edits.iter().filter(|(p, _)| p.starts_with("/spec/")) {
        let path: Vec<&str> = pointer.trim_start_matches("/spec/").split('/').collect();
        for (depth, key) in path.iter().enumerate() {
            let indent = "  ".repeat(depth + 1);
            if depth + 1 == path.len() {
                out.push_str(&format!("{indent}{key}: {value}\n"));
            } else {
                out.push_str(&format!("{indent}{key}:\n"));
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load_documents;

    fn object(text: &str) -> FluxObject {
        let mut docs = Vec::new();
        load_documents(text, |d| docs.push(d)).unwrap();
        FluxObject::from_node(docs.remove(0).root).unwrap()
    }

    #[test]
    fn the_seed_helmrelease_moves_to_cluster_config() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/seed/before/nginx.yaml"
        ))
        .unwrap();
        let release = object(&text);
        let edits = move_edits(&release, "nginx", &Policy::azure_default());
        assert_eq!(
            edits,
            vec![
                (
                    "/metadata/namespace".to_owned(),
                    "cluster-config".to_owned()
                ),
                ("/spec/targetNamespace".to_owned(), "nginx".to_owned()),
                ("/spec/storageNamespace".to_owned(), "nginx".to_owned()),
                (
                    "/spec/chart/spec/sourceRef/namespace".to_owned(),
                    "cluster-config".to_owned()
                ),
            ]
        );
        let shown = suggest_move(&release, "nginx", &Policy::azure_default()).unwrap();
        assert!(
            shown.contains("  namespace: cluster-config\nspec:\n  targetNamespace: nginx\n"),
            "{shown}"
        );
        assert!(
            shown.contains(
                "  chart:\n    spec:\n      sourceRef:\n        namespace: cluster-config\n"
            ),
            "{shown}"
        );
    }

    #[test]
    fn a_release_without_release_name_keeps_its_name() {
        let release = object(
            "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: podinfo\n  namespace: apps\nspec:\n  chart: {spec: {chart: podinfo}}\n",
        );
        let edits = move_edits(&release, "apps", &Policy::azure_default());
        assert!(
            edits.contains(&("/spec/releaseName".to_owned(), "podinfo".to_owned())),
            "{edits:?}"
        );
    }

    #[test]
    fn objects_already_in_the_config_namespace_do_not_move() {
        let release = object(
            "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: a\n  namespace: cluster-config\n",
        );
        assert!(move_edits(&release, "cluster-config", &Policy::azure_default()).is_empty());
    }
}
