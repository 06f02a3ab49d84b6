//! The shared-source reconciler: one policy entry in, its published objects applied
//! server-side in the tenant namespaces that reference it, the ones no longer wanted deleted.
//!
//! [`shared::desired`](crate::shared::desired) decides what to publish; this file only reads
//! what it needs (the source, and its Secrets when the entry copies them) and writes.

use std::collections::{BTreeMap, BTreeSet};

use fluxfence::Policy;
use fluxfence::shared::{self as sharing, Form};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::Value;
use tracing::info;

use crate::owned::FIELD_MANAGER;
use crate::shared::{self, Inputs, PublishedObject, SHARED_SOURCE_KIND_LABEL, SHARED_SOURCE_LABEL};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("Kubernetes API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("cannot read {what}: {source}")]
    Decode {
        what: String,
        source: serde_json::Error,
    },
}

/// What one reconcile of an entry did, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// `namespace/name` of every object applied (changed or not), in order.
    pub applied: Vec<String>,
    /// `Kind namespace/name` of every object deleted.
    pub deleted: Vec<String>,
}

/// The API resource of a source kind that can be shared, of ExternalArtifact, or of Secret.
pub fn api_resource(kind: &str) -> Option<ApiResource> {
    let plural = match kind {
        "GitRepository" => "gitrepositories",
        "OCIRepository" => "ocirepositories",
        "Bucket" => "buckets",
        "HelmRepository" => "helmrepositories",
        sharing::EXTERNAL_ARTIFACT => "externalartifacts",
        "Secret" => return Some(secret_resource()),
        _ => return None,
    };
    Some(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("source.toolkit.fluxcd.io", "v1", kind),
        plural,
    ))
}

fn secret_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Secret"), "secrets")
}

/// The kinds a published object of a source of `kind` can have.
fn published_kinds(kind: &str) -> [&str; 3] {
    [sharing::EXTERNAL_ARTIFACT, kind, "Secret"]
}

/// Publishes policy entry `entry` for the Kustomizations and HelmReleases in `referrers`
/// (every one the controller knows; those that do not reference the source are skipped).
pub async fn publish(
    client: &Client,
    policy: &Policy,
    entry: usize,
    referrers: &[Value],
) -> Result<Outcome, PublishError> {
    let Some(source_entry) = policy.shared_sources.get(entry) else {
        return Ok(Outcome::default());
    };
    let Some(source_resource) = api_resource(&source_entry.kind) else {
        return Ok(Outcome::default());
    };
    let sources = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        &source_entry.namespace,
        &source_resource,
    );
    let source = match sources.get_opt(&source_entry.name).await? {
        Some(object) => Some(to_value(&object, "the shared source")?),
        None => None,
    };
    let needs_copy = shared::referrers(policy, entry, referrers)
        .keys()
        .any(|(_, form)| *form == Form::Copy);
    let mut secrets = BTreeMap::new();
    if let Some(source) = &source
        && source_entry.copy_secrets
        && needs_copy
    {
        let api = Api::<DynamicObject>::namespaced_with(
            client.clone(),
            &source_entry.namespace,
            &secret_resource(),
        );
        for name in shared::secret_names(&source_entry.kind, source) {
            if let Some(secret) = api.get_opt(&name).await? {
                secrets.insert(name, to_value(&secret, "a Secret of the shared source")?);
            }
        }
    }
    let desired = shared::desired(&Inputs {
        policy,
        entry,
        source: source.as_ref(),
        referrers,
        secrets: &secrets,
    });
    let mut outcome = Outcome::default();
    for object in &desired {
        apply(client, &source_entry.kind, object).await?;
        outcome
            .applied
            .push(format!("{}/{}", object.namespace, object.name));
    }
    let wanted: BTreeSet<(String, String, String)> = desired
        .iter()
        .map(|o| {
            (
                o.object["kind"].as_str().unwrap_or_default().to_owned(),
                o.namespace.clone(),
                o.name.clone(),
            )
        })
        .collect();
    let published_name = sharing::published_name(&source_entry.namespace, &source_entry.name);
    let selector = format!(
        "{SHARED_SOURCE_LABEL}={published_name},{SHARED_SOURCE_KIND_LABEL}={}",
        source_entry.kind
    );
    for kind in published_kinds(&source_entry.kind) {
        let Some(resource) = api_resource(kind) else {
            continue;
        };
        prune(
            client,
            &resource,
            &selector,
            |ns, name| !wanted.contains(&(kind.to_owned(), ns.to_owned(), name.to_owned())),
            &mut outcome,
        )
        .await?;
    }
    Ok(outcome)
}

/// Deletes what an earlier policy published and the current one no longer lists: an entry
/// removed (or changed to another source) leaves no reconcile of its own behind.
pub async fn sweep(client: &Client, policy: &Policy) -> Result<Outcome, PublishError> {
    let listed: BTreeSet<(String, String)> = policy
        .shared_sources
        .iter()
        .map(|s| {
            (
                s.kind.clone(),
                sharing::published_name(&s.namespace, &s.name),
            )
        })
        .collect();
    let mut outcome = Outcome::default();
    let mut kinds = vec![sharing::EXTERNAL_ARTIFACT, "Secret"];
    kinds.extend(sharing::SHAREABLE_KINDS);
    for kind in kinds {
        let Some(resource) = api_resource(kind) else {
            continue;
        };
        let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
        let list = api
            .list_metadata(&ListParams::default().labels(SHARED_SOURCE_KIND_LABEL))
            .await?;
        for object in list.items {
            let labels = object.labels();
            let (Some(source_kind), Some(published)) = (
                labels.get(SHARED_SOURCE_KIND_LABEL),
                labels.get(SHARED_SOURCE_LABEL),
            ) else {
                continue;
            };
            if listed.contains(&(source_kind.clone(), published.clone())) {
                continue;
            }
            delete(
                client,
                &resource,
                &object.namespace().unwrap_or_default(),
                &object.name_any(),
                &mut outcome,
            )
            .await?;
        }
    }
    Ok(outcome)
}

async fn apply(
    client: &Client,
    source_kind: &str,
    object: &PublishedObject,
) -> Result<(), PublishError> {
    let kind = object.object["kind"].as_str().unwrap_or(source_kind);
    let Some(resource) = api_resource(kind) else {
        return Ok(());
    };
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), &object.namespace, &resource);
    // Not forced: an object of that name that someone else wrote is theirs, and the conflict
    // says so rather than taking it over.
    let params = PatchParams::apply(FIELD_MANAGER);
    api.patch(&object.name, &params, &Patch::Apply(&object.object))
        .await?;
    if let Some(status) = &object.status {
        api.patch_status(&object.name, &params, &Patch::Apply(status))
            .await?;
    }
    Ok(())
}

async fn prune(
    client: &Client,
    resource: &ApiResource,
    selector: &str,
    unwanted: impl Fn(&str, &str) -> bool,
    outcome: &mut Outcome,
) -> Result<(), PublishError> {
    let api = Api::<DynamicObject>::all_with(client.clone(), resource);
    let list = api
        .list_metadata(&ListParams::default().labels(selector))
        .await?;
    for object in list.items {
        let namespace = object.namespace().unwrap_or_default();
        let name = object.name_any();
        if unwanted(&namespace, &name) {
            delete(client, resource, &namespace, &name, outcome).await?;
        }
    }
    Ok(())
}

async fn delete(
    client: &Client,
    resource: &ApiResource,
    namespace: &str,
    name: &str,
    outcome: &mut Outcome,
) -> Result<(), PublishError> {
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, resource);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {}
        // Already gone (garbage-collected with its last referrer): what was wanted.
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(error) => return Err(error.into()),
    }
    info!(kind = %resource.kind, %namespace, %name, "deleted a published shared source object");
    outcome
        .deleted
        .push(format!("{} {namespace}/{name}", resource.kind));
    Ok(())
}

fn to_value(object: &DynamicObject, what: &str) -> Result<Value, PublishError> {
    serde_json::to_value(object).map_err(|source| PublishError::Decode {
        what: what.to_owned(),
        source,
    })
}
